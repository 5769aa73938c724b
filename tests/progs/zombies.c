/* zombies STEPS SLEEP_MS: the parent forks one child per step for the
 * first NCHILD steps; each computes a value from the state it inherited,
 * writes it to a pipe shared by all of them and exits at once with its
 * own exit code (child 2 is killed by SIGTERM, default action, instead).
 * The parent leaves them as zombies and does not read the pipe for most
 * of the run: each step it looks at one zombie with
 * waitid(WEXITED|WNOWAIT), which does not reap it, and prints its status.
 * A further child sleeps, silent (in poll on a pipe nobody writes to),
 * until the parent kills it with SIGKILL near the end. After 70% of the
 * steps the parent reaps the zombies with waitpid on each pid, prints
 * each status and the values from the pipe; at 90% it kills and reaps the
 * sleeper. */
#include "common.h"
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define NCHILD 5
#define SIGNALED 2 /* the child that dies of SIGTERM */

struct rec {
	uint64_t index;
	uint64_t value;
};

static void describe(int st, char *buf, size_t n)
{
	if (WIFEXITED(st))
		snprintf(buf, n, "exit=%d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, n, "signal=%d", WTERMSIG(st));
	else
		snprintf(buf, n, "status=%#x", st);
}

static void describe_info(const siginfo_t *si, char *buf, size_t n)
{
	if (si->si_code == CLD_EXITED)
		snprintf(buf, n, "exit=%d", si->si_status);
	else if (si->si_code == CLD_KILLED || si->si_code == CLD_DUMPED)
		snprintf(buf, n, "signal=%d", si->si_status);
	else
		snprintf(buf, n, "code=%d status=%d", si->si_code, si->si_status);
}

static void run_child(int fd, int index, uint64_t state)
{
	struct rec r = {(uint64_t)index, state};
	for (int i = 0; i < 1000; i++)
		r.value = fnv1a(r.value, &i, sizeof i);
	write_full(fd, &r, sizeof r);
	if (index == SIGNALED) {
		signal(SIGTERM, SIG_DFL);
		raise(SIGTERM);
	}
	_exit(index * 50 + 1 + (int)(r.value % 49));
}

int main(int argc, char **argv)
{
	if (argc != 3)
		usage_exit(argv[0], NULL);
	long steps = parse_num(argv[1], argv[0], NULL);
	long sleep = parse_num(argv[2], argv[0], NULL);
	long reap_at = steps * 7 / 10, kill_at = steps * 9 / 10;
	if (reap_at <= NCHILD + 1 || kill_at <= reap_at)
		usage_exit(argv[0], NULL); /* needs at least 10 steps */
	setup_stdout();
	signal(SIGCHLD, SIG_DFL);

	int p[2];
	if (pipe(p))
		die("pipe");
	pid_t kids[NCHILD], sleeper = 0;
	int reaped = 0, sleeper_alive = 0, parent_end = -1;
	uint64_t rng = 0x6a09e667f3bcc908ull, h = FNV_INIT;
	for (long s = 0; s < steps; s++) {
		uint64_t x = xorshift64(&rng);
		h = fnv1a(h, &x, sizeof x);
		char what[160] = "";
		fflush(stdout);
		if (s < NCHILD) {
			pid_t pid = fork();
			if (pid < 0)
				die("fork");
			if (pid == 0) {
				close(p[0]);
				run_child(p[1], (int)s, h);
			}
			kids[s] = pid;
			snprintf(what, sizeof what, "forked child %ld", s);
		} else if (s == NCHILD) {
			/* the sleeper watches a pipe that only the parent can
			 * write to: it outlives the parent by at most a second
			 * should the parent die early */
			int life[2];
			if (pipe(life))
				die("pipe");
			sleeper = fork();
			if (sleeper < 0)
				die("fork");
			if (sleeper == 0) {
				close(p[0]);
				close(p[1]);
				close(life[1]);
				for (;;) {
					struct pollfd pf = {life[0], POLLIN, 0};
					if (poll(&pf, 1, 1000) > 0)
						_exit(97);
				}
			}
			close(life[0]);
			parent_end = life[1];
			sleeper_alive = 1;
			snprintf(what, sizeof what, "forked sleeper");
		} else if (s == reap_at) {
			int n = snprintf(what, sizeof what, "reaped");
			for (int i = 0; i < NCHILD; i++) {
				int st;
				pid_t r;
				while ((r = waitpid(kids[i], &st, 0)) < 0 && errno == EINTR)
					;
				if (r != kids[i])
					die("waitpid");
				char d[32];
				describe(st, d, sizeof d);
				h = fnv1a(h, &st, sizeof st);
				n += snprintf(what + n, sizeof what - (size_t)n, " %d:%s", i, d);
			}
			reaped = 1;
			uint64_t values[NCHILD] = {0};
			for (int i = 0; i < NCHILD; i++) {
				struct rec r;
				read_full(p[0], &r, sizeof r);
				if (r.index < NCHILD)
					values[r.index] = r.value;
			}
			for (int i = 0; i < NCHILD; i++) {
				printf("step %ld value %d=%016llx\n", s, i,
				       (unsigned long long)values[i]);
				h = fnv1a(h, &values[i], sizeof values[i]);
			}
		} else if (s == kill_at) {
			if (kill(sleeper, SIGKILL))
				die("kill");
			int st;
			pid_t r;
			while ((r = waitpid(sleeper, &st, 0)) < 0 && errno == EINTR)
				;
			if (r != sleeper)
				die("waitpid");
			sleeper_alive = 0;
			close(parent_end);
			char d[32];
			describe(st, d, sizeof d);
			snprintf(what, sizeof what, "killed sleeper %s", d);
		} else if (!reaped) {
			/* a zombie stays a zombie: look without reaping */
			int i = (int)(s % NCHILD);
			siginfo_t si;
			memset(&si, 0, sizeof si);
			while (waitid(P_PID, (id_t)kids[i], &si, WEXITED | WNOWAIT) < 0) {
				if (errno != EINTR)
					die("waitid");
			}
			char d[48];
			describe_info(&si, d, sizeof d);
			memset(&si, 0, sizeof si);
			while (waitid(P_PID, (id_t)sleeper, &si, WEXITED | WNOHANG | WNOWAIT) < 0) {
				if (errno != EINTR)
					die("waitid");
			}
			snprintf(what, sizeof what, "zombie %d %s sleeper %s", i, d,
				 si.si_pid == 0 ? "running" : "GONE");
		} else {
			siginfo_t si;
			memset(&si, 0, sizeof si);
			int r;
			while ((r = waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT)) < 0 &&
			       errno == EINTR)
				;
			const char *seen = "UNEXPECTED";
			if (sleeper_alive && r == 0 && si.si_pid == 0)
				seen = "sleeper only";
			else if (!sleeper_alive && r < 0 && errno == ECHILD)
				seen = "none";
			snprintf(what, sizeof what, "children %s", seen);
		}
		printf("step %ld x=%016llx h=%016llx %s\n", s, (unsigned long long)x,
		       (unsigned long long)h, what);
		if (sleep)
			sleep_ms(sleep);
	}
	int st;
	pid_t r = waitpid(-1, &st, WNOHANG);
	printf("done steps=%ld checksum=%016llx leftover=%s\n", steps, (unsigned long long)h,
	       r < 0 && errno == ECHILD ? "none" : "SOME");
	return 0;
}
