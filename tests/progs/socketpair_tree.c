/* socketpair_tree STEPS SLEEP_MS: a parent and a forked child talk over a
 * Unix SOCK_STREAM socketpair. The parent keeps WINDOW messages ahead: it
 * sends messages 0..WINDOW-1 first, then each step reads one reply and
 * sends the next message. The child answers messages in pairs (it waits
 * for the second of a pair before answering the first) with a running
 * hash only it holds, so messages usually wait in the child's direction
 * and several replies in the parent's. After its last message the parent
 * shuts down its sending side (a shutdown socket at the checkpoint, near
 * the end); the child answers what is left, sends a summary and exits
 * with a status derived from its hash, which the parent prints. */
#include "common.h"
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define WINDOW 4

struct msg {
	uint64_t seq;
	uint64_t a, b, c;
};

static void child(int fd)
{
	uint64_t h = FNV_INIT, count = 0;
	for (;;) {
		struct msg m[2];
		int n = read_record(fd, &m[0], sizeof m[0]);
		if (n)
			n += read_record(fd, &m[1], sizeof m[1]);
		for (int i = 0; i < n; i++) {
			h = fnv1a(h, &m[i], sizeof m[i]);
			count++;
			struct msg reply = {m[i].seq, h, m[i].a ^ m[i].b ^ m[i].c, count};
			write_full(fd, &reply, sizeof reply);
		}
		if (n < 2)
			break;
	}
	struct msg last = {UINT64_MAX, h, count, 0};
	write_full(fd, &last, sizeof last);
	_exit(30 + (int)(h % 60));
}

static struct msg make(uint64_t seq, uint64_t *rng)
{
	struct msg m = {seq, xorshift64(rng), xorshift64(rng), xorshift64(rng)};
	return m;
}

int main(int argc, char **argv)
{
	long steps, sleep;
	steps_and_sleep(argc, argv, &steps, &sleep);
	fflush(stdout);

	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		die("socketpair");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		close(sv[0]);
		child(sv[1]);
	}
	close(sv[1]);

	uint64_t rng = 0xa54ff53a5f1d36f1ull, total = FNV_INIT;
	long sent = 0;
	for (; sent < WINDOW && sent < steps; sent++) {
		struct msg m = make((uint64_t)sent, &rng);
		write_full(sv[0], &m, sizeof m);
	}
	/* all sent: the end of the stream lets the child answer an unpaired
	 * last message */
	if (sent == steps && shutdown(sv[0], SHUT_WR))
		die("shutdown");
	for (long s = 0; s < steps; s++) {
		struct msg r;
		if (!read_record(sv[0], &r, sizeof r)) {
			printf("step %ld: the child went away\n", s);
			return 1;
		}
		total = fnv1a(total, &r, sizeof r);
		printf("step %ld seq=%llu child=%016llx xor=%016llx count=%llu total=%016llx\n", s,
		       (unsigned long long)r.seq, (unsigned long long)r.a, (unsigned long long)r.b,
		       (unsigned long long)r.c, (unsigned long long)total);
		if (sent < steps) {
			struct msg m = make((uint64_t)sent, &rng);
			write_full(sv[0], &m, sizeof m);
			sent++;
			if (sent == steps && shutdown(sv[0], SHUT_WR))
				die("shutdown");
		}
		if (sleep)
			sleep_ms(sleep);
	}
	struct msg last;
	if (!read_record(sv[0], &last, sizeof last)) {
		printf("no summary from the child\n");
		return 1;
	}
	int st;
	pid_t w;
	while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
		;
	if (w != pid)
		die("waitpid");
	printf("child summary=%s hash=%016llx count=%llu exit=%d\n",
	       last.seq == UINT64_MAX ? "ok" : "BAD", (unsigned long long)last.a,
	       (unsigned long long)last.b, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	printf("done steps=%ld checksum=%016llx\n", steps, (unsigned long long)total);
	return 0;
}
