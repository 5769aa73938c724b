/* The program's stdout and stderr: each read from its pipe is written to
 * the same stream of ckpt (the terminal, as it happens) and appended to
 * application.log. */
#include "coord/coord_int.h"

#include "coord/fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void to_terminal(struct coord *c, int *fd, int termfd, int *term, const char *buf, size_t n);

/* What the restorer says (its warnings: a file cut back, a descriptor that
 * comes back as /dev/null) goes to execution.log too: it is about the run,
 * not the program. The restorer writes each line at once. */
static void log_restorer_lines(struct coord *c, const char *buf, size_t n)
{
	static const char tag[] = "ckpt-restore: ";
	for (size_t i = 0; i < n;) {
		const char *nl = memchr(buf + i, '\n', n - i);
		size_t len = nl ? (size_t)(nl - (buf + i)) : n - i;
		if (len > sizeof tag - 1 && !memcmp(buf + i, tag, sizeof tag - 1))
			ckpt_log(c->o->exec_log, "restorer: %.*s", (int)(len - (sizeof tag - 1)),
				 buf + i + sizeof tag - 1);
		i += len + 1;
	}
}

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
	if (termfd == 2 && c->o->restored_gen && !c->nrestored)
		log_restorer_lines(c, buf, (size_t)n);
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
	if (termfd == 2 && c->hold_err) {
		if (c->nheld + (size_t)n <= sizeof(c->held)) {
			memcpy(c->held + c->nheld, buf, (size_t)n);
			c->nheld += (size_t)n;
			return;
		}
		tee_release(c, 1); /* more than a restorer says: the program's */
	}
	to_terminal(c, fd, termfd, term, buf, (size_t)n);
}

void tee_release(struct coord *c, int show)
{
	if (!c->hold_err)
		return;
	c->hold_err = 0;
	if (show && c->nheld && c->term_err)
		to_terminal(c, &c->err_fd, 2, &c->term_err, c->held, c->nheld);
	c->nheld = 0;
}

static void to_terminal(struct coord *c, int *fd, int termfd, int *term, const char *buf, size_t n)
{
	restore_progress_end(c); /* the restorer's message, or the program's first line */
	if (write_all(termfd, buf, n) == 0)
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
