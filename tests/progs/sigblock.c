/* A thread that blocks every signal with the raw system call (as some
 * runtimes do), so it can never reach ckpt's safe point, while the main
 * thread counts. A checkpoint must fail in bounded time, naming the
 * thread, and the program must run on undisturbed.
 * Usage: sigblock STEPS SLEEP_MS */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void *stubborn(void *arg)
{
	(void)arg;
	prctl(PR_SET_NAME, "stubborn", 0, 0, 0);
	uint64_t all = ~0ull;
	syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, NULL, 8);
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv)
{
	int steps = argc > 1 ? atoi(argv[1]) : 40, sleep_ms = argc > 2 ? atoi(argv[2]) : 50;
	pthread_t t;
	pthread_create(&t, NULL, stubborn, NULL);
	uint64_t x = 1;
	for (int i = 0; i < steps; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		printf("step %d %016llx\n", i, (unsigned long long)x);
		fflush(stdout);
		struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
		while (nanosleep(&ts, &ts) != 0)
			;
	}
	printf("done %016llx\n", (unsigned long long)x);
	return 0;
}
