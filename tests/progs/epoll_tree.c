/* epoll_tree STEPS SLEEP_MS: the parent runs an epoll loop over a
 * non-blocking pipe fed by a forked child and a periodic timerfd (every
 * 7 ms). The child sends STEPS records of 24 bytes, each in two writes,
 * one record per SLEEP_MS, each carrying a running hash only the child
 * holds; the parent collects partial records in a buffer and prints one
 * line per complete record with its own running checksum. Timer
 * expirations are counted but not printed (their number depends on
 * timing); the last line only says whether the timer kept firing during
 * the last quarter of the records. At the end of the pipe the parent reaps
 * the child, which exits with a status derived from its hash. */
#include "common.h"
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

struct rec {
	uint64_t seq;
	uint64_t val;
	uint64_t hash;
};

static void child(int fd, long steps, long sleep)
{
	uint64_t rng = 0x510e527fade682d1ull, h = FNV_INIT;
	for (long s = 0; s < steps; s++) {
		struct rec r = {(uint64_t)s, xorshift64(&rng), 0};
		h = fnv1a(h, &r.val, sizeof r.val);
		r.hash = h;
		/* two halves: the parent sometimes sees half a record */
		write_full(fd, &r, 10);
		sleep_ms(1);
		write_full(fd, (char *)&r + 10, sizeof r - 10);
		if (sleep > 1)
			sleep_ms(sleep - 1);
	}
	close(fd);
	_exit(60 + (int)(h % 60));
}

int main(int argc, char **argv)
{
	long steps, sleep;
	steps_and_sleep(argc, argv, &steps, &sleep);
	fflush(stdout);

	int p[2];
	if (pipe(p))
		die("pipe");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		close(p[0]);
		child(p[1], steps, sleep);
	}
	close(p[1]);
	if (fcntl(p[0], F_SETFL, O_NONBLOCK))
		die("fcntl");

	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	if (tfd < 0)
		die("timerfd_create");
	struct itimerspec its = {{0, 7000000}, {0, 7000000}};
	if (timerfd_settime(tfd, 0, &its, NULL))
		die("timerfd_settime");
	int ep = epoll_create1(0);
	if (ep < 0)
		die("epoll_create1");
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = p[0]};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev))
		die("epoll_ctl");
	ev.data.fd = tfd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev))
		die("epoll_ctl");

	unsigned char buf[4096];
	size_t have = 0;
	long got = 0;
	uint64_t sum = FNV_INIT, ticks = 0, late_ticks = 0;
	int open_pipe = 1;
	while (open_pipe) {
		struct epoll_event evs[4];
		int n = epoll_wait(ep, evs, 4, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			if (evs[i].data.fd == tfd) {
				uint64_t t;
				ssize_t r = read(tfd, &t, sizeof t);
				if (r == (ssize_t)sizeof t) {
					ticks += t;
					if (got >= steps - steps / 4)
						late_ticks += t;
				} else if (r < 0 && errno != EAGAIN && errno != EINTR) {
					die("read timerfd");
				}
				continue;
			}
			ssize_t r = read(p[0], buf + have, sizeof buf - have);
			if (r < 0) {
				if (errno == EAGAIN || errno == EINTR)
					continue;
				die("read pipe");
			}
			if (r == 0) {
				open_pipe = 0;
				continue;
			}
			have += (size_t)r;
			size_t off = 0;
			while (have - off >= sizeof(struct rec)) {
				struct rec rec;
				memcpy(&rec, buf + off, sizeof rec);
				off += sizeof rec;
				sum = fnv1a(sum, &rec, sizeof rec);
				printf("step %llu val=%016llx child=%016llx sum=%016llx%s\n",
				       (unsigned long long)rec.seq, (unsigned long long)rec.val,
				       (unsigned long long)rec.hash, (unsigned long long)sum,
				       (long)rec.seq == got ? "" : " OUT OF ORDER");
				got++;
			}
			memmove(buf, buf + off, have - off);
			have -= off;
		}
	}
	int st;
	pid_t w;
	while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
		;
	if (w != pid)
		die("waitpid");
	printf("child exit=%d leftover=%zu timer=%s\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1, have,
	       steps < 8 || (ticks >= late_ticks && late_ticks > 0) ? "running" : "STOPPED");
	printf("done records=%ld checksum=%016llx\n", got, (unsigned long long)sum);
	return got == steps ? 0 : 1;
}
