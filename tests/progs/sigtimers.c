/* sigtimers STEPS SLEEP_MS: timers that signal the process, which a
 * restart must make again with the ids the program holds:
 *   - ITIMER_REAL every 5 ms (SIGALRM) and ITIMER_PROF every 2 ms of CPU
 *     time (SIGPROF; each step spins a little; asked to be still armed);
 *   - a POSIX timer every 6 ms sending SIGRTMIN with a value the handler
 *     checks, and one made by glibc with SIGEV_THREAD (glibc's helper
 *     thread is signalled; the callback runs on a thread of its own);
 *   - a one-shot POSIX timer armed at the start to fire at 3/4 of the run
 *     (SIGUSR1), which the program waits for at the end: a timer lost at
 *     restart hangs it;
 *   - a stopped POSIX timer, whose id must still answer.
 * Timer signals pending at the checkpoint (the pause is longer than the
 * periods) must come back with their siginfo: the handlers count any
 * signal that is not the timer's, with its value.
 * Signals queued with values and kept blocked all along must come back
 * queued, with their values, as often as they were sent.
 * Each step checks that timer_gettime still knows every id. The last line
 * says whether each periodic timer kept firing in the last quarter of the
 * steps (counts vary with timing; output is deterministic). */
#include "common.h"
#include <signal.h>
#include <stdatomic.h>
#include <sys/time.h>
#include <time.h>

static atomic_long alarms, profs, rt_ticks, thread_ticks, bad_values, oneshot;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

static void on_prof(int sig)
{
	(void)sig;
	profs++;
}

static void on_rt(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (si->si_code != SI_TIMER || si->si_value.sival_int != 4242)
		bad_values++;
	rt_ticks++;
}

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (si->si_code != SI_TIMER || si->si_value.sival_int != 77)
		bad_values++;
	oneshot++;
}

/* signals queued at the start, blocked, taken at the end */
static int queued_values[8], nqueued;

static void on_queued(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (si->si_code != SI_QUEUE || nqueued == 8)
		bad_values++;
	else
		queued_values[nqueued++] = si->si_value.sival_int * 100 + (sig == SIGUSR2 ? 0 : 1);
}

static void on_thread_timer(union sigval v)
{
	if (v.sival_int != 99)
		bad_values++;
	thread_ticks++;
}

static void handle(int sig, void (*fn)(int, siginfo_t *, void *), void (*plain)(int))
{
	struct sigaction sa = {0};
	if (fn) {
		sa.sa_sigaction = fn;
		sa.sa_flags = SA_SIGINFO | SA_RESTART;
	} else {
		sa.sa_handler = plain;
		sa.sa_flags = SA_RESTART;
	}
	if (sigaction(sig, &sa, NULL))
		die("sigaction");
}

static timer_t make_timer(int notify, int sig, int value, long first_ms, long every_ms)
{
	struct sigevent ev = {0};
	ev.sigev_notify = notify;
	ev.sigev_signo = sig;
	ev.sigev_value.sival_int = value;
	if (notify == SIGEV_THREAD)
		ev.sigev_notify_function = on_thread_timer;
	timer_t id;
	if (timer_create(CLOCK_MONOTONIC, &ev, &id))
		die("timer_create");
	struct itimerspec its = {{every_ms / 1000, (every_ms % 1000) * 1000000L},
				 {first_ms / 1000, (first_ms % 1000) * 1000000L}};
	if (first_ms && timer_settime(id, 0, &its, NULL))
		die("timer_settime");
	return id;
}

static void spin_us(long us)
{
	struct timespec a, b;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
	do
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
	while ((b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000 < us);
}

int main(int argc, char **argv)
{
	if (argc != 3)
		usage_exit(argv[0], "");
	long steps = parse_num(argv[1], argv[0], "");
	long sleep = parse_num(argv[2], argv[0], "");
	setup_stdout();
	handle(SIGALRM, NULL, on_alarm);
	handle(SIGPROF, NULL, on_prof);
	handle(SIGRTMIN, on_rt, NULL);
	handle(SIGUSR1, on_usr1, NULL);

	struct itimerval real = {{0, 5000}, {0, 5000}}, prof = {{0, 2000}, {0, 2000}};
	if (setitimer(ITIMER_REAL, &real, NULL) || setitimer(ITIMER_PROF, &prof, NULL))
		die("setitimer");
	timer_t rt = make_timer(SIGEV_SIGNAL, SIGRTMIN, 4242, 6, 6);
	timer_t thr = make_timer(SIGEV_THREAD, 0, 99, 7, 7);
	timer_t shot = make_timer(SIGEV_SIGNAL, SIGUSR1, 77, steps * sleep * 3 / 4 + 1, 0);
	timer_t idle = make_timer(SIGEV_NONE, 0, 0, 0, 0);
	timer_t ids[4] = {rt, thr, shot, idle};

	/* pending through every checkpoint: a real-time signal queued three
	 * times and a standard one, each with its value */
	handle(SIGUSR2, on_queued, NULL);
	handle(SIGRTMIN + 1, on_queued, NULL);
	sigset_t held;
	sigemptyset(&held);
	sigaddset(&held, SIGUSR2);
	sigaddset(&held, SIGRTMIN + 1);
	sigprocmask(SIG_BLOCK, &held, NULL);
	for (int v = 1; v <= 3; v++)
		if (sigqueue(getpid(), SIGRTMIN + 1, (union sigval){.sival_int = v}))
			die("sigqueue");
	if (sigqueue(getpid(), SIGUSR2, (union sigval){.sival_int = 5}))
		die("sigqueue");

	uint64_t seed = 0x9e3779b97f4a7c15ull, sum = FNV_INIT;
	long late[4] = {0, 0, 0, 0};
	for (long s = 0; s < steps; s++) {
		if (s == steps - steps / 4) {
			late[0] = alarms, late[2] = rt_ticks;
			late[3] = thread_ticks;
		}
		for (int i = 0; i < 4; i++) {
			struct itimerspec its;
			if (timer_gettime(ids[i], &its))
				die("timer_gettime (a timer id the program holds is gone)");
		}
		uint64_t x = xorshift64(&seed);
		sum = fnv1a(sum, &x, sizeof x);
		printf("step %ld x=%016llx sum=%016llx\n", s, (unsigned long long)x,
		       (unsigned long long)sum);
		spin_us(1000);
		if (sleep)
			sleep_ms(sleep);
	}
	/* the one-shot timer is due at 3/4 of the run: wait for it */
	sigset_t none;
	sigemptyset(&none);
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL);
	while (!oneshot)
		sigsuspend(&none);
	sigprocmask(SIG_UNBLOCK, &usr1, NULL);
	sigprocmask(SIG_UNBLOCK, &held, NULL);
	printf("queued:");
	for (int i = 0; i < nqueued; i++)
		printf(" %d", queued_values[i]);
	printf("\n");
	const char *word[2] = {"STOPPED", "running"};
	/* SIGPROF follows CPU time as the scheduler tick samples it: how often
	 * it fires is too uneven here to ask for it in the last quarter */
	struct itimerval prof_now;
	if (getitimer(ITIMER_PROF, &prof_now))
		die("getitimer");
	printf("alarm=%s prof=%s posix=%s thread=%s oneshot=%ld bad=%ld\n",
	       word[steps < 8 || alarms > late[0]],
	       prof_now.it_interval.tv_usec == 2000 ? "armed" : "GONE",
	       word[steps < 8 || rt_ticks > late[2]], word[steps < 8 || thread_ticks > late[3]],
	       (long)oneshot, (long)bad_values);
	printf("done steps=%ld\n", steps);
	return 0;
}
