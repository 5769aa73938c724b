/* exec_env: does the agent survive an exec with a cleared environment?
 * Run under the agent (LD_PRELOAD and CKPT_CTL set), it starts itself in
 * several ways, each with an empty or minimal environment, one at a time,
 * and each child prints "WAY: agent=yes ctl=yes" when LD_PRELOAD still
 * names libckpt-agent.so and CKPT_CTL is still set. Exit status 0 when
 * every child says yes to both, 1 otherwise.
 * Usage: exec_env (parent) | exec_env child WAY (what each child runs). */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int child(const char *way)
{
	const char *pre = getenv("LD_PRELOAD");
	int agent = pre && strstr(pre, "libckpt-agent.so");
	int ctl = getenv("CKPT_CTL") != NULL;
	printf("%s: agent=%s ctl=%s\n", way, agent ? "yes" : "no", ctl ? "yes" : "no");
	return agent && ctl ? 0 : 1;
}

static char self[4096];

/* In a forked child: replace it with "self child WAY" in the given way. */
static void start(const char *way)
{
	char *argv[] = {self, "child", (char *)way, NULL};
	char *empty[] = {NULL};
	char *minimal[] = {"A=1", NULL};
	if (strcmp(way, "execle") == 0) {
		execle(self, self, "child", way, (char *)NULL, empty);
	} else if (strcmp(way, "execve") == 0) {
		execve(self, argv, minimal);
	} else if (strcmp(way, "execvp") == 0) {
		clearenv();
		execvp(self, argv);
	} else if (strcmp(way, "execl") == 0) {
		clearenv();
		execl(self, self, "child", way, (char *)NULL);
	} else if (strcmp(way, "execvpe") == 0) {
		execvpe(self, argv, empty);
	} else if (strcmp(way, "fexecve") == 0) {
		int fd = open(self, O_RDONLY | O_CLOEXEC);
		fexecve(fd, argv, empty);
	} else if (strcmp(way, "execveat") == 0) {
		execveat(AT_FDCWD, self, argv, empty, 0);
	}
	fprintf(stderr, "%s: %s\n", way, strerror(errno));
	_exit(127);
}

/* Wait for one child; 0 when it said yes to both. */
static int reap(pid_t pid, const char *way)
{
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			perror("waitpid");
			return 1;
		}
	if (!WIFEXITED(status) || WEXITSTATUS(status) == 127)
		printf("%s: failed\n", way);
	return !WIFEXITED(status) || WEXITSTATUS(status) != 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "child") == 0)
		return child(argv[2]);
	if (argc != 1) {
		fprintf(stderr, "usage: %s\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
	if (len < 0) {
		perror("/proc/self/exe");
		return 99;
	}
	self[len] = 0;

	static const char *const forked[] = {"execle",	"execve",  "execvp",  "execl",
					     "execvpe", "fexecve", "execveat"};
	int bad = 0;
	for (size_t i = 0; i < sizeof forked / sizeof forked[0]; i++) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 99;
		}
		if (pid == 0)
			start(forked[i]);
		bad |= reap(pid, forked[i]);
	}

	/* posix_spawn and posix_spawnp, from this process, with an empty
	 * environment. */
	static const char *const spawned[] = {"posix_spawn", "posix_spawnp"};
	for (size_t i = 0; i < 2; i++) {
		char *args[] = {self, "child", (char *)spawned[i], NULL};
		char *empty[] = {NULL};
		pid_t pid;
		int err = i == 0 ? posix_spawn(&pid, self, NULL, NULL, args, empty)
				 : posix_spawnp(&pid, self, NULL, NULL, args, empty);
		if (err) {
			printf("%s: failed: %s\n", spawned[i], strerror(err));
			bad = 1;
			continue;
		}
		bad |= reap(pid, spawned[i]);
	}
	return bad;
}
