#include "cli/supervise.h"

#include "cli/cli.h"
#include "cli/paths.h"
#include "coord/ctlsock.h"
#include "coord/err.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

int open_logs(struct coord_opts *co, struct ckpt_log *exec_log, struct ckpt_log *coord_log)
{
	co->exec_log = exec_log;
	co->coord_log = coord_log;
	exec_log->fd = coord_log->fd = co->app_log_fd = -1;
	if (ckpt_log_open(exec_log, co->dirfd, "execution.log") < 0 ||
	    ckpt_log_open(coord_log, co->dirfd, "coordinator.log") < 0)
		goto fail;
	co->app_log_fd = openat(co->dirfd, "application.log",
				O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (co->app_log_fd < 0) {
		ckpt_fail_errno("cannot open application.log");
		goto fail;
	}
	return 0;
fail:
	close_logs(co);
	return -1;
}

void close_logs(struct coord_opts *co)
{
	ckpt_log_close(co->exec_log);
	ckpt_log_close(co->coord_log);
	if (co->app_log_fd >= 0)
		close(co->app_log_fd);
	co->app_log_fd = -1;
}

/* The supervisor takes its signals through a signalfd, in the poll loop;
 * the program gets ckpt's original signal state back (launch.c). */
static int setup_signals(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return ckpt_fail_errno("sigprocmask");
	int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		return ckpt_fail_errno("signalfd");
	/* Writes to a vanished terminal or client must fail with EPIPE,
	 * not kill the supervisor. */
	signal(SIGPIPE, SIG_IGN);
	return fd;
}

static int output_pipe(int fds[2])
{
	if (pipe2(fds, O_CLOEXEC) < 0)
		return ckpt_fail_errno("pipe");
	int fl = fcntl(fds[0], F_GETFL);
	if (fl < 0 || fcntl(fds[0], F_SETFL, fl | O_NONBLOCK) < 0)
		return ckpt_fail_errno("fcntl");
	return 0;
}

int supervise(struct supervise_args *a)
{
	struct coord_opts *co = a->co;
	int out[2] = {-1, -1}, err[2] = {-1, -1};
	char **env = NULL;
	char *ctl = NULL;
	int rc = -1;
	co->listen_fd = -1;
	co->sig_fd = setup_signals();
	if (co->sig_fd < 0)
		return -1;
	co->listen_fd = ctl_listen(co->dirfd);
	if (co->listen_fd < 0)
		goto out;
	if (output_pipe(out) < 0 || output_pipe(err) < 0)
		goto out;
	if (asprintf(&ctl, "%s/%s", co->rundir, CKPT_CTL_NAME) < 0) {
		ctl = NULL;
		ckpt_fail("out of memory");
		goto out;
	}
	env = program_env(a->preload, ctl, co->token);
	if (!env)
		goto out;
	struct launch_spec spec = {
	    .path = a->exec_path,
	    .argv = a->argv,
	    .envp = env,
	    .pid = a->pid,
	    .out_fd = out[1],
	    .err_fd = err[1],
	    .keep_fd = a->lockfd,
	    .sigs = &ckpt_orig_sigs,
	};
	if (launch(&spec, &co->launch) < 0)
		goto out;
	/* Only the program holds the write ends now, so end of file on the
	 * read ends means it (and everything it started) has finished. */
	close(out[1]);
	close(err[1]);
	out[1] = err[1] = -1;
	co->out_fd = out[0];
	co->err_fd = err[0];
	rc = coord_run(co);
	out[0] = err[0] = -1; /* closed by coord_run */
out:
	if (co->listen_fd >= 0) {
		close(co->listen_fd);
		/* Nobody answers there any more: ckpt status then reads the
		 * files instead of meeting a refused connection. */
		unlinkat(co->dirfd, CKPT_CTL_NAME, 0);
	}
	close(co->sig_fd);
	for (int i = 0; i < 2; i++) {
		if (out[i] >= 0)
			close(out[i]);
		if (err[i] >= 0)
			close(err[i]);
	}
	if (env) {
		/* Only the entries we added were allocated: the last three or
		 * two (LD_PRELOAD, CKPT_CTL, CKPT_TOKEN). */
		size_t n = 0;
		while (env[n])
			n++;
		for (size_t i = n - (a->preload ? 3 : 2); i < n; i++)
			free(env[i]);
		free(env);
	}
	free(ctl);
	return rc;
}
