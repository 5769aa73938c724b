/* ckpt checkpoint RUNDIR: ask the supervisor for a checkpoint now. */
#include "cli/cli.h"
#include "cli/config.h"
#include "cli/rundir.h"
#include "coord/client.h"
#include "coord/err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
	close(dfd);
	struct ckpt_msg reply;
	/* No time limit here: the supervisor abandons a checkpoint that
	 * takes too long and answers ERR. */
	if (client_request(fd, "CHECKPOINT", &reply, -1) < 0) {
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
