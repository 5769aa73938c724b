/* clock STEPS SLEEP_MS: each step reads CLOCK_REALTIME, CLOCK_MONOTONIC
 * and gettimeofday (all through the vDSO), plus CLOCK_MONOTONIC and
 * CLOCK_REALTIME through the real system call, and prints whether they
 * are sane: monotonic never goes back, each step took at least SLEEP_MS,
 * the vDSO agrees with the kernel (a stale or misplaced vvar page after a
 * restart shows here), gettimeofday agrees with CLOCK_REALTIME, and the
 * wall clock is after 2020. Raw times are never printed: they differ
 * between runs. */
#include "common.h"
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

static int64_t ns(struct timespec t)
{
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int64_t sys_clock(clockid_t id)
{
	struct timespec t;
	if (syscall(SYS_clock_gettime, id, &t))
		die("clock_gettime syscall");
	return ns(t);
}

static int64_t vdso_clock(clockid_t id)
{
	struct timespec t;
	if (clock_gettime(id, &t))
		die("clock_gettime");
	return ns(t);
}

#define MS 1000000LL

int main(int argc, char **argv)
{
	long steps, sleep;
	steps_and_sleep(argc, argv, &steps, &sleep);

	int64_t prev_mono = vdso_clock(CLOCK_MONOTONIC);
	long failures = 0;
	for (long s = 0; s < steps; s++) {
		if (sleep)
			sleep_ms(sleep);
		int64_t mono = vdso_clock(CLOCK_MONOTONIC);
		int64_t real = vdso_clock(CLOCK_REALTIME);
		struct timeval tv;
		if (gettimeofday(&tv, NULL))
			die("gettimeofday");
		int64_t tod = (int64_t)tv.tv_sec * 1000000000 + (int64_t)tv.tv_usec * 1000;
		int64_t smono = sys_clock(CLOCK_MONOTONIC);
		int64_t sreal = sys_clock(CLOCK_REALTIME);
		time_t t = time(NULL);

		/* Generous bounds: a loaded machine may stall us for a while. */
		int monotonic = mono >= prev_mono;
		int slept = mono - prev_mono >= (int64_t)sleep * MS;
		int vdso_mono = smono >= mono && smono - mono < 2000 * MS;
		int vdso_real = sreal - real > -1 * MS && sreal - real < 2000 * MS;
		int tod_ok = tod - real > -1000 * MS && tod - real < 2000 * MS;
		int time_ok = t >= real / 1000000000 - 1 && t <= sreal / 1000000000 + 2;
		int sane = real > 1577836800LL * 1000000000; /* 2020-01-01 */
		int ok = monotonic && slept && vdso_mono && vdso_real && tod_ok && time_ok && sane;
		failures += !ok;
		printf("step %ld monotonic %s slept %s vdso-monotonic %s vdso-realtime %s "
		       "gettimeofday %s time %s "
		       "after-2020 %s\n",
		       s, monotonic ? "ok" : "BAD", slept ? "ok" : "BAD", vdso_mono ? "ok" : "BAD",
		       vdso_real ? "ok" : "BAD", tod_ok ? "ok" : "BAD", time_ok ? "ok" : "BAD",
		       sane ? "ok" : "BAD");
		prev_mono = mono;
	}
	printf("done steps=%ld failures=%ld\n", steps, failures);
	return failures ? 1 : 0;
}
