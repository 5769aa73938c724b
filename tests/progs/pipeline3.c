/* pipeline3 STEPS SLEEP_MS: a three-stage pipeline, producer | filter |
 * consumer, made with pipe() and fork(). The main process is the consumer;
 * it forks the producer and the filter. The producer writes STEPS records
 * in bursts of 5, a little faster than the consumer takes them; the
 * filter takes half a step per record. So records are usually queued in
 * both pipes. The filter transforms each record with a running hash that
 * only the filter holds. The consumer
 * prints one line per record (and sleeps SLEEP_MS) with a running
 * checksum; at the end it reaps both children, which exit with distinct
 * statuses derived from their own state, and prints their statuses. */
#include "common.h"
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

struct rec {
	uint64_t seq;
	uint64_t val;
	uint64_t tag; /* filter's running hash */
};

static pid_t xwaitpid(pid_t pid, int *st)
{
	pid_t r;
	while ((r = waitpid(pid, st, 0)) < 0 && errno == EINTR)
		;
	if (r < 0)
		die("waitpid");
	return r;
}

static void status_str(int st, char *buf, size_t n)
{
	if (WIFEXITED(st))
		snprintf(buf, n, "exit=%d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, n, "signal=%d", WTERMSIG(st));
	else
		snprintf(buf, n, "status=%#x", st);
}

#define BURST 5

static void producer(int out, long steps, long sleep)
{
	uint64_t rng = 0x2545f4914f6cdd1dull;
	uint64_t h = FNV_INIT;
	struct rec burst[BURST];
	for (long s = 0; s < steps;) {
		int n = 0;
		for (; n < BURST && s < steps; n++, s++) {
			burst[n].seq = (uint64_t)s;
			burst[n].val = xorshift64(&rng);
			burst[n].tag = 0;
			h = fnv1a(h, &burst[n].val, sizeof burst[n].val);
		}
		write_full(out, burst, n * sizeof burst[0]);
		/* a burst of 5 every 4 consumer steps: the pipes fill up slowly */
		if (sleep)
			sleep_ms(sleep * 4);
	}
	close(out);
	_exit(10 + (int)(h % 20)); /* 10..29 */
}

static void filter(int in, int out, long sleep)
{
	uint64_t h = FNV_INIT, prev = 0;
	long n = 0;
	struct rec r;
	while (read_record(in, &r, sizeof r)) {
		h = fnv1a(h, &r.val, sizeof r.val);
		h = fnv1a(h, &prev, sizeof prev);
		r.tag = h;
		r.val = (r.val ^ (prev >> 3)) * 0x9e3779b97f4a7c15ull;
		prev = r.val;
		write_full(out, &r, sizeof r);
		n++;
		/* slower than a burst, faster than the consumer: records wait
		 * in the first pipe too */
		if (sleep)
			sleep_ms(sleep / 2);
	}
	close(out);
	_exit(40 + (int)((h ^ (uint64_t)n) % 20)); /* 40..59 */
}

int main(int argc, char **argv)
{
	long steps, sleep;
	steps_and_sleep(argc, argv, &steps, &sleep);
	fflush(stdout);

	int p1[2], p2[2];
	if (pipe(p1) || pipe(p2))
		die("pipe");
	pid_t prod = fork();
	if (prod < 0)
		die("fork");
	if (prod == 0) {
		close(p1[0]);
		close(p2[0]);
		close(p2[1]);
		producer(p1[1], steps, sleep);
	}
	pid_t filt = fork();
	if (filt < 0)
		die("fork");
	if (filt == 0) {
		close(p1[1]);
		close(p2[0]);
		filter(p1[0], p2[1], sleep);
	}
	close(p1[0]);
	close(p1[1]);
	close(p2[1]);

	uint64_t sum = FNV_INIT;
	long got = 0;
	struct rec r;
	while (read_record(p2[0], &r, sizeof r)) {
		sum = fnv1a(sum, &r, sizeof r);
		printf("step %llu val=%016llx tag=%016llx sum=%016llx\n", (unsigned long long)r.seq,
		       (unsigned long long)r.val, (unsigned long long)r.tag,
		       (unsigned long long)sum);
		if ((long)r.seq != got) {
			printf("record %ld out of order (seq %llu)\n", got,
			       (unsigned long long)r.seq);
			return 1;
		}
		got++;
		if (sleep)
			sleep_ms(sleep);
	}
	int st_prod, st_filt;
	char a[32], b[32];
	xwaitpid(prod, &st_prod);
	xwaitpid(filt, &st_filt);
	status_str(st_prod, a, sizeof a);
	status_str(st_filt, b, sizeof b);
	printf("producer %s filter %s\n", a, b);
	printf("done records=%ld checksum=%016llx\n", got, (unsigned long long)sum);
	return got == steps ? 0 : 1;
}
