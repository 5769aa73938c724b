/* ckpt: dispatch to the subcommands (see help.c). */
#include "cli/cli.h"

#include "coord/err.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct sig_state ckpt_orig_sigs;
char **ckpt_argv;

int report_error(int status)
{
	fflush(stdout);
	fprintf(stderr, "ckpt: %s\n", ckpt_error());
	return status;
}

/* With fd 0, 1 or 2 closed, the next open would take its place and the
 * program's output pipes could land on stdin: keep them occupied. */
static void ensure_std_fds(void)
{
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) >= 0)
			continue;
		int n = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
		if (n >= 0 && n != fd)
			close(n); /* cannot happen: open takes the lowest free fd */
	}
}

int main(int argc, char **argv)
{
	ckpt_argv = argv;
	sig_state_save(&ckpt_orig_sigs);
	ensure_std_fds();
	if (argc < 2) {
		print_help(NULL);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		print_help(NULL);
		return 0;
	}
	if (!strcmp(cmd, "help")) {
		if (argc > 2 && !has_help(argv[2])) {
			ckpt_fail("unknown command '%s' (see ckpt --help)", argv[2]);
			return report_error(EXIT_USAGE);
		}
		print_help(argc > 2 ? argv[2] : NULL);
		return 0;
	}
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
		printf("ckpt %s\n", CKPT_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "start"))
		return cmd_start(argc - 1, argv + 1);
	if (!strcmp(cmd, "restart"))
		return cmd_restart(argc - 1, argv + 1);
	if (!strcmp(cmd, "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(cmd, "checkpoint"))
		return cmd_checkpoint(argc - 1, argv + 1);
	if (!strcmp(cmd, "status"))
		return cmd_status(argc - 1, argv + 1);
	if (!strcmp(cmd, "verify"))
		return cmd_verify(argc - 1, argv + 1);
	if (cmd[0] == '-')
		ckpt_fail("unknown option '%s' (see ckpt --help)", cmd);
	else
		ckpt_fail("unknown command '%s' (see ckpt --help)", cmd);
	return report_error(EXIT_USAGE);
}
