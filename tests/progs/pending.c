/* Signals pending across a checkpoint: SIGUSR1 is pending for the main
 * thread (raise) and SIGUSR2 for the process (kill), both blocked from
 * the start; near the end they are unblocked and their handlers must run,
 * after a restart as in an uninterrupted run.
 * Usage: pending STEPS SLEEP_MS (unblocks at STEPS - 5) */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got1, got2;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		got1++;
	else
		got2++;
}

int main(int argc, char **argv)
{
	int steps = argc > 1 ? atoi(argv[1]) : 40, sleep_ms = argc > 2 ? atoi(argv[2]) : 50;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	sigset_t both;
	sigemptyset(&both);
	sigaddset(&both, SIGUSR1);
	sigaddset(&both, SIGUSR2);
	sigprocmask(SIG_BLOCK, &both, NULL);
	raise(SIGUSR1);
	kill(getpid(), SIGUSR2);
	for (int i = 0; i < steps; i++) {
		if (i == steps - 5)
			sigprocmask(SIG_UNBLOCK, &both, NULL);
		sigset_t pend;
		sigpending(&pend);
		printf("step %d pending usr1=%d usr2=%d handled usr1=%d usr2=%d\n", i,
		       sigismember(&pend, SIGUSR1), sigismember(&pend, SIGUSR2), (int)got1,
		       (int)got2);
		fflush(stdout);
		struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
		while (nanosleep(&ts, &ts) != 0)
			;
	}
	printf("done handled usr1=%d usr2=%d\n", (int)got1, (int)got2);
	return got1 == 1 && got2 == 1 ? 0 : 1;
}
