/* fork_exec_during STEPS SLEEP_MS: the main process keeps forking children
 * that exec other programs. Each step: a child runs
 * `/bin/sh -c 'read x; exit $((x % 256))'` with its stdin on a pipe and
 * stays blocked in read for the whole step; meanwhile one child execs
 * /bin/true and another `/bin/sh -c 'exit $1' sh N` (N from the parent's
 * state), half a step apart; at the end of the step the parent writes a
 * number to the reader's pipe. The parent reaps every child with waitpid
 * and prints their statuses, which depend on the values passed, so a
 * checkpoint very likely catches a child being created, exec'ing, running
 * or exiting. */
#include "common.h"
#include <sys/wait.h>
#include <unistd.h>

/* fork + exec argv; stdin_fd >= 0 becomes the child's stdin. */
static pid_t spawn(char *const argv[], int stdin_fd, int close_fd)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		if (stdin_fd >= 0) {
			if (dup2(stdin_fd, 0) < 0)
				_exit(126);
			close(stdin_fd);
		}
		if (close_fd >= 0)
			close(close_fd);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static int reap(pid_t pid)
{
	int st;
	pid_t r;
	while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
		;
	if (r != pid)
		die("waitpid");
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return 1000 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

int main(int argc, char **argv)
{
	long steps, sleep;
	steps_and_sleep(argc, argv, &steps, &sleep);

	uint64_t h = FNV_INIT, rng = 0x3c6ef372fe94f82bull;
	for (long s = 0; s < steps; s++) {
		int p[2];
		if (pipe(p))
			die("pipe");
		char *reader[] = {"/bin/sh", "-c", "read x; exit $((x % 256))", NULL};
		pid_t rd = spawn(reader, p[0], p[1]);
		close(p[0]);

		char *truth[] = {"/bin/true", NULL};
		int t = reap(spawn(truth, -1, p[1]));
		if (sleep)
			sleep_ms(sleep / 2);

		char num[32];
		int n = (int)(xorshift64(&rng) % 200) + (int)(h % 50);
		snprintf(num, sizeof num, "%d", n);
		char *exiter[] = {"/bin/sh", "-c", "exit $1", "sh", num, NULL};
		int e = reap(spawn(exiter, -1, p[1]));
		if (sleep)
			sleep_ms(sleep - sleep / 2);

		uint64_t v = xorshift64(&rng) ^ h;
		char msg[32];
		int len = snprintf(msg, sizeof msg, "%llu\n", (unsigned long long)(v % 1000000));
		write_full(p[1], msg, (size_t)len);
		close(p[1]);
		int r = reap(rd);

		h = fnv1a(h, &t, sizeof t);
		h = fnv1a(h, &e, sizeof e);
		h = fnv1a(h, &r, sizeof r);
		printf("step %ld true=%d exit=%d(%d) read=%d(%llu) h=%016llx\n", s, t, e, n, r,
		       (unsigned long long)(v % 1000000), (unsigned long long)h);
	}
	printf("done steps=%ld checksum=%016llx\n", steps, (unsigned long long)h);
	return 0;
}
