/* The program's stdout and stderr: each read from its pipe is written to
 * the same stream of ckpt (the terminal, as it happens) and appended to
 * application.log. */
#include "coord/coord_int.h"

#include "coord/fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void tee_output(struct coord *c, int *fd, int termfd, int *term)
{
	char buf[65536];
	ssize_t n = read(*fd, buf, sizeof(buf));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		if (n < 0)
			ckpt_log(c->o->exec_log, "cannot read the program's %s: %s",
				 termfd == 1 ? "stdout" : "stderr", strerror(errno));
		close(*fd);
		*fd = -1;
		return;
	}
	if (c->o->app_log_fd >= 0 && write_all(c->o->app_log_fd, buf, (size_t)n) < 0) {
		static int warned;
		if (!warned++)
			ckpt_log(c->o->exec_log,
				 "cannot append to application.log: %s; output "
				 "still goes to the terminal",
				 strerror(errno));
	}
	if (!*term)
		return;
	restore_progress_end(c); /* the restorer's message, or the program's first line */
	if (write_all(termfd, buf, (size_t)n) == 0)
		return;
	*term = 0;
	if (errno == EPIPE) {
		/* Whoever read our output is gone (`ckpt start prog | head`).
		 * Without ckpt the program would get SIGPIPE now; closing its
		 * pipe gives it just that on its next write. */
		ckpt_log(c->o->exec_log,
			 "the reader of ckpt's %s went away: closing the program's %s",
			 termfd == 1 ? "stdout" : "stderr", termfd == 1 ? "stdout" : "stderr");
		close(*fd);
		*fd = -1;
		/* init holds a read end too (for the day the supervisor dies):
		 * it must let go of it as well. */
		if (c->cmd_fd >= 0 &&
		    write_all(c->cmd_fd, termfd == 1 ? "close 1\n" : "close 2\n", 8) < 0)
			ckpt_log(c->o->exec_log,
				 "cannot tell the namespace's init to close the program's "
				 "output: %s",
				 strerror(errno));
	} else {
		/* A terminal hung up (EIO) or similar: keep the program and the
		 * log going. */
		ckpt_log(c->o->exec_log,
			 "cannot write to ckpt's %s (%s): the program's output now "
			 "goes to application.log only",
			 termfd == 1 ? "stdout" : "stderr", strerror(errno));
	}
}
