/* affinity STEPS SLEEP_MS: threads that set their own scheduling, as
 * OpenMP with OMP_PROC_BIND and os.sched_setaffinity/os.nice do: worker 0
 * binds itself to the first CPU the process may use, worker 1 to the
 * last, worker 2 raises its nice value by 3. Each step the main thread
 * prints what every thread has: a restart must give each the same again
 * (on a machine with one CPU the bindings change nothing). */
#include "common.h"
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#define WORKERS 3

static cpu_set_t allowed;
static _Atomic int tids[WORKERS];

static int nth_allowed(int from_end)
{
	int found = -1;
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &allowed)) {
			found = c;
			if (!from_end)
				break;
		}
	return found;
}

static void *worker(void *arg)
{
	int i = (int)(intptr_t)arg;
	if (i < 2) {
		cpu_set_t one;
		CPU_ZERO(&one);
		CPU_SET(nth_allowed(i), &one);
		if (sched_setaffinity(0, sizeof one, &one) != 0)
			die("sched_setaffinity");
	} else if (setpriority(PRIO_PROCESS, 0, getpriority(PRIO_PROCESS, 0) + 3) != 0) {
		die("setpriority");
	}
	tids[i] = (int)syscall(SYS_gettid);
	for (;;)
		sleep_ms(1000);
	return NULL;
}

/* "0-1,3" */
static void describe(int tid, char *out, size_t cap)
{
	cpu_set_t s;
	out[0] = 0;
	if (sched_getaffinity(tid, sizeof s, &s) != 0)
		die("sched_getaffinity");
	size_t n = 0;
	for (int c = 0; c < CPU_SETSIZE && n + 16 < cap; c++) {
		if (!CPU_ISSET(c, &s))
			continue;
		int e = c;
		while (e + 1 < CPU_SETSIZE && CPU_ISSET(e + 1, &s))
			e++;
		n += (size_t)snprintf(out + n, cap - n, n ? ",%d" : "%d", c);
		if (e > c)
			n += (size_t)snprintf(out + n, cap - n, "-%d", e);
		c = e;
	}
	errno = 0;
	int nice = getpriority(PRIO_PROCESS, (id_t)tid);
	if (errno)
		die("getpriority");
	snprintf(out + n, cap - n, " nice %d", nice);
}

int main(int argc, char **argv)
{
	long steps, sleep;
	steps_and_sleep(argc, argv, &steps, &sleep);
	if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
		die("sched_getaffinity");
	pthread_t t[WORKERS];
	for (int i = 0; i < WORKERS; i++)
		if (pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) != 0)
			die("pthread_create");
	for (int i = 0; i < WORKERS; i++)
		while (!tids[i])
			sleep_ms(1);
	for (long s = 0; s < steps; s++) {
		char line[4096];
		size_t n = (size_t)snprintf(line, sizeof line, "step %ld:", s);
		for (int i = 0; i <= WORKERS; i++) {
			char d[1024];
			describe(i < WORKERS ? tids[i] : (int)syscall(SYS_gettid), d, sizeof d);
			n += (size_t)snprintf(line + n, sizeof line - n, " %s %s",
					      i < WORKERS ? (i == 0   ? "w0"
							     : i == 1 ? "w1"
								      : "w2")
							  : "main",
					      d);
		}
		printf("%s\n", line);
		sleep_ms(sleep);
	}
	printf("done steps=%ld\n", steps);
	return 0;
}
