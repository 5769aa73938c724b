/* ckpt checkpoint RUNDIR: ask the supervisor for a checkpoint now. */
#include "cli/cli.h"
#include "cli/config.h"
#include "cli/rundir.h"
#include "coord/client.h"
#include "coord/err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "coord/gens.h"
#include "coord/log.h"

/* Open RUNDIR as given; -1 with a message when it is not a run dir. */
int open_rundir_arg(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return ckpt_fail_errno("%s", path);
	if (faccessat(fd, "config", F_OK, 0) < 0) {
		close(fd);
		return ckpt_fail("%s is not a ckpt run directory (it has no config)", path);
	}
	return fd;
}

/* Progress on a terminal: the bytes the images being written hold so
 * far, read from the partial generation directory. */
struct progress {
	int imagesfd;
	int64_t t0;
	int shown;
};

static uint64_t partial_bytes(int imagesfd)
{
	uint64_t total = 0;
	int fd = dup(imagesfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (n >= 8 && strcmp(e->d_name + n - 8, ".partial") == 0)
			total += gens_dir_bytes(imagesfd, e->d_name);
	}
	closedir(d);
	return total;
}

static void show_progress(void *arg)
{
	struct progress *p = arg;
	double mib = (double)partial_bytes(p->imagesfd) / (1 << 20);
	double s = (double)(ckpt_mono_ms() - p->t0) / 1000;
	fprintf(stderr, "\rckpt: checkpoint in progress, %.1f MiB written, %.1f s ", mib, s);
	p->shown = 1;
}

int cmd_checkpoint(int argc, char **argv)
{
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		print_help("checkpoint");
		return 0;
	}
	if (argc < 2)
		ckpt_fail("missing run directory: ckpt checkpoint RUNDIR");
	else if (argv[1][0] == '-')
		ckpt_fail("unknown option '%s' (see ckpt checkpoint --help)", argv[1]);
	else if (argc > 2)
		ckpt_fail("too many arguments: ckpt checkpoint RUNDIR");
	if (argc != 2 || argv[1][0] == '-')
		return report_error(EXIT_USAGE);
	const char *rundir = argv[1];
	int dfd = open_rundir_arg(rundir);
	if (dfd < 0)
		return report_error(EXIT_USAGE);
	int fd = client_connect(dfd);
	if (fd < 0) {
		pid_t holder = 0;
		int absent = errno == ENOENT || errno == ECONNREFUSED;
		if (absent && rundir_lock_held(dfd, &holder) == 1)
			/* init holds the lock while the program lives on after its
			 * supervisor died (docs/design.md, "Supervisor death"). */
			ckpt_fail(
			    "the supervisor of %s (pid %d) is gone and its program runs on "
			    "unsupervised, which cannot be checkpointed; let it finish, or end it "
			    "(execution.log says how) and resume from the last checkpoint with "
			    "ckpt "
			    "restart",
			    rundir, (int)holder);
		else if (absent)
			ckpt_fail("no supervisor is running for %s (ckpt restart resumes it)",
				  rundir);
		close(dfd);
		return report_error(1);
	}
	struct progress prog = {-1, ckpt_mono_ms(), 0};
	if (isatty(STDERR_FILENO))
		prog.imagesfd = openat(dfd, GENS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	close(dfd);
	struct ckpt_msg reply;
	/* No time limit here: the supervisor abandons a checkpoint that
	 * takes too long and answers ERR. */
	int r = prog.imagesfd >= 0 ? client_request_ticking(fd, "CHECKPOINT", &reply, -1,
							    show_progress, &prog, 500)
				   : client_request(fd, "CHECKPOINT", &reply, -1);
	if (prog.shown)
		fprintf(stderr, "\r\033[K");
	if (prog.imagesfd >= 0)
		close(prog.imagesfd);
	if (r < 0) {
		close(fd);
		return report_error(1);
	}
	close(fd);
	if (!ckpt_msg_is(&reply, "OK")) {
		const char *msg = ckpt_msg_get(&reply, "msg");
		ckpt_fail("%s", msg ? msg : "the checkpoint failed (no reason given)");
		return report_error(1);
	}
	const char *gen = ckpt_msg_get(&reply, "gen");
	printf("%s\n", gen ? gen : "?");
	return fflush(stdout) == 0 ? 0 : 1;
}
