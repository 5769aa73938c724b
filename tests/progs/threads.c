/* threads STEPS SLEEP_MS: 8 threads take turns (step s belongs to thread
 * s % 8) under one mutex and condition variable. The thread whose turn it
 * is sleeps, on even steps holding the mutex (the others block in
 * pthread_mutex_lock) and on odd steps without it (the others wait in
 * pthread_cond_wait). Each turn updates shared counters, thread-local
 * storage and the thread's own stack, and prints them. */
#include "common.h"
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NTHREADS 8

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long steps, sleep_each;
static long step;		   /* next step to run; guarded by mu */
static uint64_t shared = FNV_INIT; /* digest of all turns so far */
static uint64_t turns[NTHREADS];   /* turns taken per thread */
static __thread uint64_t tls_acc;  /* per-thread, in TLS */

static void *worker(void *arg)
{
	int me = (int)(intptr_t)arg;
	pid_t tid0 = (pid_t)syscall(SYS_gettid);
	uint64_t local = 0x1000u * (uint64_t)(me + 1);
	uint64_t rng = 0x2545f4914f6cdd1dull * (uint64_t)(me + 1);
	tls_acc = (uint64_t)me;

	pthread_mutex_lock(&mu);
	for (;;) {
		while (step < steps && step % NTHREADS != me)
			pthread_cond_wait(&cv, &mu);
		if (step >= steps)
			break;
		long s = step;
		if (sleep_each) {
			if (s % 2 == 0) {
				sleep_ms(sleep_each);
			} else {
				pthread_mutex_unlock(&mu);
				sleep_ms(sleep_each);
				pthread_mutex_lock(&mu);
			}
		}
		uint64_t r = xorshift64(&rng);
		turns[me]++;
		tls_acc = tls_acc * 31 + r;
		local += r >> 7;
		shared = fnv1a(shared, &r, sizeof r);
		shared = fnv1a(shared, &s, sizeof s);
		int tid_ok = (pid_t)syscall(SYS_gettid) == tid0;
		printf("step %ld thread %d turns=%llu tls=%016llx local=%016llx shared=%016llx "
		       "tid=%s\n",
		       s, me, (unsigned long long)turns[me], (unsigned long long)tls_acc,
		       (unsigned long long)local, (unsigned long long)shared,
		       tid_ok ? "same" : "CHANGED");
		step++;
		pthread_cond_broadcast(&cv);
	}
	pthread_mutex_unlock(&mu);
	return (void *)(uintptr_t)(local ^ tls_acc);
}

int main(int argc, char **argv)
{
	if (argc != 3)
		usage_exit(argv[0], NULL);
	steps = parse_num(argv[1], argv[0], NULL);
	sleep_each = parse_num(argv[2], argv[0], NULL);
	setup_stdout();

	pthread_t th[NTHREADS];
	for (int i = 0; i < NTHREADS; i++) {
		int e = pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
		if (e) {
			errno = e;
			die("pthread_create");
		}
	}
	uint64_t h = FNV_INIT;
	for (int i = 0; i < NTHREADS; i++) {
		void *ret;
		pthread_join(th[i], &ret);
		uint64_t v = (uint64_t)(uintptr_t)ret;
		h = fnv1a(h, &v, sizeof v);
	}
	h = fnv1a(h, turns, sizeof turns);
	h = fnv1a(h, &shared, sizeof shared);
	printf("done steps=%ld threads=%d checksum=%016llx\n", steps, NTHREADS,
	       (unsigned long long)h);
	return 0;
}
