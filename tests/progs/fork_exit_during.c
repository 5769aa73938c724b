/* fork_exit_during STEPS SLEEP_MS: the main process forks short-lived
 * children all the time: PER_STEP children per step, one after the other,
 * each overlapping the next. Child k computes a value from the state it
 * inherited, spends about SLEEP_MS/PER_STEP ms, writes the value to a
 * pipe and exits with a status derived from it; the parent forks the next
 * child before it reaps the previous one, then reads the value, reaps
 * and folds both into its state. So a child is nearly always being
 * created, running or exiting, and a checkpoint very likely catches one.
 * One line per step. */
#include "common.h"
#include <sys/wait.h>
#include <unistd.h>

#define PER_STEP 4

struct child {
	pid_t pid;
	int fd; /* read end of its pipe */
};

static struct child spawn(uint64_t state, long ms)
{
	int p[2];
	if (pipe(p))
		die("pipe");
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		close(p[0]);
		uint64_t v = state;
		for (int i = 0; i < 2000; i++)
			v = fnv1a(v, &i, sizeof i);
		if (ms)
			sleep_ms(ms);
		write_full(p[1], &v, sizeof v);
		_exit((int)(v % 200) + 1);
	}
	close(p[1]);
	return (struct child){pid, p[0]};
}

/* Reads the child's value, reaps it; returns the value, *code its status. */
static uint64_t collect(struct child c, int *code)
{
	uint64_t v;
	read_full(c.fd, &v, sizeof v);
	close(c.fd);
	int st;
	pid_t r;
	while ((r = waitpid(c.pid, &st, 0)) < 0 && errno == EINTR)
		;
	if (r != c.pid)
		die("waitpid");
	*code = WIFEXITED(st) ? WEXITSTATUS(st) : 1000 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	return v;
}

int main(int argc, char **argv)
{
	long steps, sleep;
	steps_and_sleep(argc, argv, &steps, &sleep);

	uint64_t h = FNV_INIT, rng = 0xbb67ae8584caa73bull;
	long ms = sleep / PER_STEP, forks = 0;
	uint64_t seed = xorshift64(&rng);
	struct child cur = spawn(h ^ seed, ms);
	forks++;
	for (long s = 0; s < steps; s++) {
		char line[200];
		int n = snprintf(line, sizeof line, "step %ld codes", s);
		for (int k = 0; k < PER_STEP; k++) {
			struct child next = {0, -1};
			int last = s == steps - 1 && k == PER_STEP - 1;
			if (!last) {
				/* the next child starts while this one is finishing */
				seed = xorshift64(&rng);
				next = spawn(h ^ seed, ms);
				forks++;
			}
			int code;
			uint64_t v = collect(cur, &code);
			h = fnv1a(h, &v, sizeof v);
			h = fnv1a(h, &code, sizeof code);
			n += snprintf(line + n, sizeof line - (size_t)n, " %d", code);
			cur = next;
		}
		printf("%s h=%016llx\n", line, (unsigned long long)h);
	}
	printf("done steps=%ld children=%ld checksum=%016llx\n", steps, forks,
	       (unsigned long long)h);
	return 0;
}
