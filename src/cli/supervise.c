#include "cli/supervise.h"

#include "cli/cli.h"
#include "cli/paths.h"
#include "cli/slurm.h"
#include "coord/ctlsock.h"
#include "coord/err.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
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
static int setup_signals(int checkpoint_signal)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, checkpoint_signal);
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

int batch_opts_check(const struct run_opts *o)
{
	struct slurm_job j;
	if ((o->requeue || o->before_limit_ms >= 0) && !slurm_job(&j))
		return ckpt_fail("%s works inside a Slurm job only (SLURM_JOB_ID is not set)",
				 o->requeue ? "--requeue" : "--before-limit");
	return 0;
}

/* Inside a Slurm job: say which job and which run of it in
 * execution.log, and turn --before-limit into a time to stop. */
static int slurm_setup(struct supervise_args *a)
{
	struct coord_opts *co = a->co;
	struct slurm_job j;
	if (!slurm_job(&j))
		return 0;
	char what[256];
	slurm_describe(&j, what, sizeof(what));
	if (a->opts->before_limit_ms < 0) {
		ckpt_log(co->exec_log, "Slurm %s", what);
		return 0;
	}
	int64_t left;
	int r = slurm_time_left(j.job_id, &left);
	if (r < 0)
		return -1;
	int64_t before = a->opts->before_limit_ms;
	if (r == 0) {
		ckpt_log(co->exec_log,
			 "Slurm %s; the job has no time limit, so --before-limit does nothing",
			 what);
	} else if (left * 1000 <= before) {
		/* Stopping at once would requeue the job forever without
		 * progress: let it run, and say what to change. */
		ckpt_log(
		    co->exec_log,
		    "Slurm %s; only %lld s are left before the job's time limit, not more than "
		    "--before-limit %lld s: no stop before the limit; give the job a longer time "
		    "limit "
		    "or a smaller --before-limit",
		    what, (long long)left, (long long)(before / 1000));
	} else {
		co->stop_at_mono = ckpt_mono_ms() + left * 1000 - before;
		ckpt_log(co->exec_log,
			 "Slurm %s; %lld s left before the job's time limit: checkpoint and stop "
			 "in %lld s "
			 "(--before-limit %lld s)%s",
			 what, (long long)left, (long long)((left * 1000 - before) / 1000),
			 (long long)(before / 1000),
			 a->opts->requeue ? ", then requeue the job" : "");
	}
	return 0;
}

/* --requeue after a stop-checkpoint: the job runs again, and its ckpt run
 * resumes the run. */
static void requeue_job(struct coord_opts *co)
{
	struct slurm_job j;
	if (!slurm_job(&j))
		return;
	if (slurm_requeue(j.job_id) < 0) {
		ckpt_log(co->exec_log,
			 "cannot requeue Slurm job %s: %s; the checkpoint is good: submit the job "
			 "script "
			 "again, or run: scontrol requeue %s",
			 j.job_id, ckpt_error(), j.job_id);
		fprintf(stderr, "ckpt: cannot requeue Slurm job %s: %s\n", j.job_id, ckpt_error());
		return;
	}
	ckpt_log(co->exec_log,
		 "requeued Slurm job %s (scontrol requeue): it runs again and resumes "
		 "from this checkpoint",
		 j.job_id);
}

int supervise(struct supervise_args *a)
{
	struct coord_opts *co = a->co;
	int out[2] = {-1, -1}, err[2] = {-1, -1};
	char **env = NULL;
	char *ctl = NULL;
	int rc = -1;
	co->listen_fd = -1;
	co->checkpoint_signal =
	    a->opts && a->opts->checkpoint_signal ? a->opts->checkpoint_signal : SIGUSR1;
	co->sig_fd = setup_signals(co->checkpoint_signal);
	if (co->sig_fd < 0)
		return -1;
	if (a->opts && slurm_setup(a) < 0)
		goto out;
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
	    .monotonic_ns = a->monotonic_ns,
	    .boottime_ns = a->boottime_ns,
	    .path = a->exec_path,
	    .argv = a->argv,
	    .envp = env,
	    .pid = a->pid,
	    .session_pid = a->session_pid,
	    .out_fd = out[1],
	    .err_fd = err[1],
	    .keep_fd = a->lockfd,
	    .out_rd = out[0],
	    .err_rd = err[0],
	    .app_log_fd = co->app_log_fd,
	    .exec_log_fd = co->exec_log->fd,
	    .sigs = &ckpt_orig_sigs,
	    .exit_with_main = co->exit_with_main,
	};
	/* Where this run's output begins: restarts append, so a reader can
	 * tell the runs apart. */
	struct stat st;
	if (fstat(co->app_log_fd, &st) == 0)
		ckpt_log(co->exec_log,
			 "the program's output goes on at byte %lld of application.log",
			 (long long)st.st_size);
	/* The program runs again: whatever finished recorded is over. */
	if (unlinkat(co->dirfd, "finished", 0) < 0 && errno != ENOENT) {
		ckpt_fail_errno("cannot remove %s/finished", co->rundir);
		goto out;
	}
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
	if (rc == CKPT_EXIT_STOPPED && a->opts && a->opts->requeue)
		requeue_job(co);
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
