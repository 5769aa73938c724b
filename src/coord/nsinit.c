/* pid 1 of the program's namespace (see launch.h). Runs in a fork of the
 * supervisor and never returns into it: every exit is _exit, and nothing
 * here touches stdio buffers that the supervisor owns. */
#include "coord/launch.h"

#include "coord/fsutil.h"
#include "coord/log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* One line to the supervisor. A write error means the supervisor is
 * gone; the program is left running all the same (docs/protocol.md). */
static void report(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(int fd, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* Lines are below PIPE_BUF, so each arrives whole. */
	write_all(fd, line, (size_t)n);
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* Close every descriptor but those in keep (negative entries ignored):
 * init must not hold the supervisor's listening socket, logs or client
 * connections, or they would outlive a dead supervisor. */
static void close_all_except(int *keep, int n)
{
	qsort(keep, (size_t)n, sizeof(int), cmp_int);
	unsigned lo = 0;
	for (int i = 0; i < n; i++) {
		if (keep[i] < 0 || (unsigned)keep[i] < lo)
			continue;
		if ((unsigned)keep[i] > lo)
			close_range(lo, (unsigned)keep[i] - 1, 0);
		lo = (unsigned)keep[i] + 1;
	}
	close_range(lo, ~0U, 0);
}

#ifndef CAP_CHECKPOINT_RESTORE
#define CAP_CHECKPOINT_RESTORE 40
#endif

/* The restorer recreates threads with their exact tids (clone3 set_tid)
 * and sets the exe link (PR_SET_MM_MAP), which need CAP_CHECKPOINT_RESTORE
 * in the user namespace owning the pid namespace. init has every
 * capability there; an exec by a uid other than 0 would drop them, so
 * the capability is passed through exec as an ambient one (older kernels
 * without CAP_CHECKPOINT_RESTORE: CAP_SYS_ADMIN). The restorer drops it
 * before the program resumes (docs/protocol.md). */
static int keep_restore_capability(void)
{
	int cap = prctl(PR_CAPBSET_READ, CAP_CHECKPOINT_RESTORE, 0, 0, 0) >= 0
		      ? CAP_CHECKPOINT_RESTORE
		      : CAP_SYS_ADMIN;
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2];
	if (syscall(SYS_capget, &hdr, data) < 0)
		return -1;
	data[cap / 32].inheritable |= 1u << (cap % 32);
	if (syscall(SYS_capset, &hdr, data) < 0)
		return -1;
	return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0);
}

/* In the program's process, before exec: stdio, signals, environment. */
__attribute__((noreturn)) static void exec_program(const struct launch_spec *spec)
{
	if (dup2(spec->out_fd, 1) < 0 || dup2(spec->err_fd, 2) < 0)
		_exit(127);
	/* The pipes' original descriptors and everything else of init's is
	 * close-on-exec. */
	sig_state_restore(spec->sigs);
	if (spec->pid && !spec->no_namespaces && keep_restore_capability() < 0)
		dprintf(2, "ckpt: cannot pass CAP_CHECKPOINT_RESTORE to the restorer: %s\n",
			strerror(errno));
	size_t n = 0;
	while (spec->envp[n])
		n++;
	char **env = malloc((n + 3) * sizeof(char *));
	char rootpid[32];
	if (!env)
		_exit(127);
	memcpy(env, spec->envp, n * sizeof(char *));
	snprintf(rootpid, sizeof(rootpid), "CKPT_ROOT_PID=%d", (int)getpid());
	env[n] = rootpid;
	env[n + 1] = NULL;
	/* tells the restorer it may not keep the saved pid and tids */
	if (spec->no_namespaces)
		env[n + 1] = "CKPT_NEW_IDS=1", env[n + 2] = NULL;
	execve(spec->path, spec->argv, env);
	dprintf(2, "ckpt: cannot execute %s: %s\n", spec->path, strerror(errno));
	_exit(127);
}

/* fork, or at restart a fork that gets exactly spec->pid: clone3 with
 * set_tid, allowed because init holds CAP_SYS_ADMIN in the user
 * namespace that owns this pid namespace. */
static pid_t clone_with_pid(pid_t want, uint64_t flags)
{
	struct clone_args args;
	memset(&args, 0, sizeof(args));
	args.flags = flags;
	args.exit_signal = flags & CLONE_PARENT ? 0 : SIGCHLD;
	args.set_tid = (uint64_t)(uintptr_t)&want;
	args.set_tid_size = 1;
	return (pid_t)syscall(SYS_clone3, &args, sizeof(args));
}

static pid_t start_child(const struct launch_spec *spec)
{
	if (spec->pid == 0 || spec->no_namespaces)
		return fork();
	if (spec->session_pid <= 0 || spec->session_pid == spec->pid)
		return clone_with_pid(spec->pid, 0);
	/* The session's leader had ended: a helper with its pid starts the
	 * session again and forks the process as our child (CLONE_PARENT). */
	pid_t helper = clone_with_pid(spec->session_pid, 0);
	if (helper < 0)
		return clone_with_pid(spec->pid, 0); /* without the session, then */
	if (helper == 0) {
		if (setsid() < 0)
			_exit(1);
		pid_t p = clone_with_pid(spec->pid, CLONE_PARENT);
		if (p == 0)
			return 0;
		_exit(p < 0 ? 1 : 0);
	}
	int status;
	if (waitpid(helper, &status, 0) != helper || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		errno = EAGAIN;
		return -1;
	}
	return spec->pid;
}

/* Supervisor death (docs/design.md): init keeps the program running and
 * its output flowing into application.log. Until then it holds the read
 * ends of the output pipes without reading them. */
struct orphan {
	int active;
	int fd[2]; /* read ends of the program's stdout and stderr; -1: closed */
	int app_log_fd, exec_log_fd;
	int term; /* still copying to ckpt's stdout/stderr */
	char host_pid[24];
};

static void orphan_log(const struct orphan *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void orphan_log(const struct orphan *o, const char *fmt, ...)
{
	if (o->exec_log_fd < 0)
		return;
	char line[1024];
	ckpt_format_time(line, sizeof(line), ckpt_now_ms());
	size_t n = strlen(line);
	line[n++] = ' ';
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		return;
	n += (size_t)m < sizeof(line) - n - 1 ? (size_t)m : sizeof(line) - n - 2;
	line[n++] = '\n';
	/* Nobody is left to tell about a failing write. */
	write_all(o->exec_log_fd, line, n);
}

/* One read from the program's stdout (i = 0) or stderr (1), appended to
 * application.log and copied to ckpt's own stream while that works.
 * Returns 1 after data, 0 at end of file, -1 when nothing is there. */
static int orphan_copy(struct orphan *o, int i)
{
	char buf[65536];
	ssize_t n = read(o->fd[i], buf, sizeof(buf));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return -1;
	if (n <= 0) {
		close(o->fd[i]);
		o->fd[i] = -1;
		return 0;
	}
	if (o->app_log_fd >= 0)
		write_all(o->app_log_fd, buf, (size_t)n);
	/* A terminal that went away with the supervisor (EPIPE, EIO) only
	 * ends the copy there; SIGPIPE is ignored in init. */
	if (o->term && write_all(i + 1, buf, (size_t)n) < 0)
		o->term = 0;
	return 1;
}

static void orphan_begin(struct orphan *o)
{
	o->active = 1;
	for (int i = 0; i < 2; i++)
		if (o->fd[i] >= 0 && fcntl(o->fd[i], F_SETFL, O_NONBLOCK) < 0) {
			close(o->fd[i]); /* cannot happen on a pipe we hold */
			o->fd[i] = -1;
		}
	orphan_log(o,
		   "the supervisor is gone (killed?): ckpt's init (host pid %s) keeps the program "
		   "running unsupervised and appends its output to application.log; no checkpoints "
		   "are taken and ckpt checkpoint/restart refuse until it ends. To go back to the "
		   "last checkpoint instead: kill %s (ends the program), then ckpt restart",
		   o->host_pid, o->host_pid);
}

/* "monotonic S NS" with NS in [0, 10^9), S negative for a clock set back */
static int offset_line(char *buf, size_t cap, const char *clock, int64_t off)
{
	int64_t sec = off / 1000000000, nsec = off % 1000000000;
	if (nsec < 0) {
		sec--;
		nsec += 1000000000;
	}
	return snprintf(buf, cap, "%s %lld %lld\n", clock, (long long)sec, (long long)nsec);
}

/* A restart's processes see CLOCK_MONOTONIC and CLOCK_BOOTTIME go on from
 * where they were when the program was stopped: deadlines it computed from
 * them (a condition wait's timeout, an event loop's timers) keep their
 * meaning on a node that booted later, where those clocks are days behind
 * and the program would wait that long. init's children enter a time
 * namespace whose offsets are set before any of them exists. */
static void continue_clocks(const struct launch_spec *spec, int report_fd)
{
	if (unshare(CLONE_NEWTIME) != 0) {
		report(report_fd,
		       "note no time namespace for the restored program (%s): its monotonic "
		       "clock goes on from this machine's",
		       strerror(errno));
		return;
	}
	struct timespec mono, boot;
	clock_gettime(CLOCK_MONOTONIC, &mono);
	clock_gettime(CLOCK_BOOTTIME, &boot);
	int64_t now_mono = (int64_t)mono.tv_sec * 1000000000 + mono.tv_nsec;
	int64_t now_boot = (int64_t)boot.tv_sec * 1000000000 + boot.tv_nsec;
	char lines[128];
	int n =
	    offset_line(lines, sizeof(lines), "monotonic", (int64_t)spec->monotonic_ns - now_mono);
	if (spec->boottime_ns)
		offset_line(lines + n, sizeof(lines) - (size_t)n, "boottime",
			    (int64_t)spec->boottime_ns - now_boot);
	int fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, lines, strlen(lines)) != (ssize_t)strlen(lines))
		report(report_fd,
		       "note cannot set the restored program's clocks (%s): its monotonic clock "
		       "goes on from this machine's",
		       strerror(errno));
	if (fd >= 0)
		close(fd);
}

void nsinit_main(const struct launch_spec *spec, int sync_fd, int report_fd, int cmd_fd)
{
	/* Wait until the supervisor has written our uid/gid maps; EOF means
	 * it failed and is killing us. */
	char go;
	ssize_t r;
	do
		r = read(sync_fd, &go, 1);
	while (r < 0 && errno == EINTR);
	if (r != 1)
		_exit(1);
	int keep[] = {0,
		      1,
		      2,
		      report_fd,
		      cmd_fd,
		      spec->out_fd,
		      spec->err_fd,
		      spec->keep_fd,
		      spec->out_rd,
		      spec->err_rd,
		      spec->app_log_fd,
		      spec->exec_log_fd};
	close_all_except(keep, (int)(sizeof(keep) / sizeof(keep[0])));
	struct orphan orphan = {.fd = {spec->out_rd, spec->err_rd},
				.app_log_fd = spec->app_log_fd,
				.exec_log_fd = spec->exec_log_fd,
				.term = 1,
				.host_pid = "?"};
	/* Our pid as the supervisor's namespace sees it, for messages: the
	 * /proc mounted there still answers for /proc/self until ours is
	 * mounted below. */
	ssize_t hn = readlink("/proc/self", orphan.host_pid, sizeof(orphan.host_pid) - 1);
	orphan.host_pid[hn > 0 ? hn : 1] = '\0';
	prctl(PR_SET_NAME, "ckpt-init", 0, 0, 0);
	/* A dead supervisor must not kill init through SIGPIPE (reports). */
	signal(SIGPIPE, SIG_IGN);

	/* Without namespaces init is no pid 1: it must still inherit the
	 * program's orphans to reap them. */
	if (spec->no_namespaces && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
		report(report_fd, "err cannot make init a subreaper: %s", strerror(errno));
		_exit(1);
	}
	/* Our mounts must not propagate back to the parent namespace, and
	 * the program needs a /proc that shows its own pid namespace. */
	if (spec->no_namespaces) {
		/* ckpt's own mounts and /proc stay */
	} else if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		report(report_fd,
		       "err cannot make the mounts of the program's namespace private: %s",
		       strerror(errno));
		_exit(1);
	}
	if (!spec->no_namespaces &&
	    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
		report(report_fd, "err cannot mount /proc for the program's pid namespace: %s",
		       strerror(errno));
		_exit(1);
	}

	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		report(report_fd, "err signalfd in the namespace's init: %s", strerror(errno));
		_exit(1);
	}

	if (spec->monotonic_ns && !spec->no_namespaces)
		continue_clocks(spec, report_fd);
	pid_t main_pid = start_child(spec);
	if (main_pid < 0) {
		if (spec->pid)
			report(report_fd, "err cannot create the restored process with pid %d: %s",
			       (int)spec->pid, strerror(errno));
		else
			report(report_fd, "err cannot fork the program: %s", strerror(errno));
		_exit(1);
	}
	if (main_pid == 0)
		exec_program(spec);
	close(spec->out_fd);
	close(spec->err_fd);
	report(report_fd, "pid %d", (int)main_pid);

	/* poll ignores negative descriptors: the output pipes count only
	 * once the supervisor is gone. */
	struct pollfd pfd[4] = {{.fd = sfd, .events = POLLIN},
				{.fd = cmd_fd, .events = POLLIN},
				{.fd = -1, .events = POLLIN},
				{.fd = -1, .events = POLLIN}};
	char cmdbuf[256];
	size_t cmdlen = 0;
	int main_done = 0, main_status = 0, main_reported = 0;
	for (;;) {
		for (int i = 0; i < 2; i++)
			pfd[2 + i].fd = orphan.active ? orphan.fd[i] : -1;
		if (poll(pfd, 4, -1) < 0) {
			if (errno == EINTR)
				continue;
			report(report_fd, "err poll in the namespace's init: %s", strerror(errno));
			_exit(1);
		}
		if (pfd[0].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) > 0)
				;
			/* Reap everything: the program's children and orphans
			 * re-parented to us. */
			int status;
			pid_t p;
			while ((p = waitpid(-1, &status, WNOHANG)) > 0 || (p < 0 && main_done)) {
				if (p == main_pid) {
					main_done = 1;
					main_status = status;
					/* the other processes of the computation (daemons,
					 * orphans) are supervised until they end too */
					if (!spec->exit_with_main)
						continue;
				}
				if (!main_done || (p > 0 && p != main_pid))
					continue;
				/* the first program ended (--exit-with-main) or, now,
				 * the last process of the computation */
				status = main_status;
				p = main_pid;
				{
					report(report_fd, "exit %d", status);
					if (orphan.active) {
						/* What the program wrote last, then the
						 * line the supervisor would have written. */
						for (int i = 0; i < 2; i++)
							while (orphan.fd[i] >= 0 &&
							       orphan_copy(&orphan, i) > 0)
								;
						if (WIFSIGNALED(status))
							orphan_log(&orphan,
								   "exit: the program (pid %d) was "
								   "killed by "
								   "signal %d while unsupervised",
								   (int)p, WTERMSIG(status));
						else
							orphan_log(&orphan,
								   "exit: the program (pid %d) "
								   "exited with "
								   "status %d while unsupervised",
								   (int)p, WEXITSTATUS(status));
					}
					_exit(0);
				}
			}
			/* others run on: say the first program has ended */
			if (main_done && !main_reported) {
				report(report_fd, "main %d", main_status);
				main_reported = 1;
			}
		}
		for (int i = 0; i < 2; i++)
			if (orphan.active && pfd[2 + i].fd >= 0 && pfd[2 + i].revents)
				orphan_copy(&orphan, i);
		if (pfd[1].fd >= 0 && pfd[1].revents) {
			ssize_t got = read(cmd_fd, cmdbuf + cmdlen, sizeof(cmdbuf) - 1 - cmdlen);
			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0) {
				/* The supervisor is gone: keep the program running. */
				close(cmd_fd);
				pfd[1].fd = -1;
				orphan_begin(&orphan);
				continue;
			}
			cmdlen += (size_t)got;
			cmdbuf[cmdlen] = '\0';
			char *nl;
			while ((nl = strchr(cmdbuf, '\n'))) {
				*nl = '\0';
				int sig;
				/* once the first program has ended, the signal is for
				 * every process left (in our own pid namespace only) */
				if (sscanf(cmdbuf, "kill %d", &sig) == 1 && sig > 0 && sig < NSIG)
					kill(main_done && !spec->no_namespaces ? -1 : main_pid,
					     sig);
				/* a stop that no checkpoint could serve: every process
				 * of the computation gets it, as a batch system would
				 * send it to the whole job */
				if (sscanf(cmdbuf, "killall %d", &sig) == 1 && sig > 0 &&
				    sig < NSIG)
					kill(spec->no_namespaces ? main_pid : -1, sig);
				/* The supervisor closed its read end so that the
				 * program gets SIGPIPE (tee.c): so must we. */
				int which;
				if (sscanf(cmdbuf, "close %d", &which) == 1 &&
				    (which == 1 || which == 2) && orphan.fd[which - 1] >= 0) {
					close(orphan.fd[which - 1]);
					orphan.fd[which - 1] = -1;
				}
				cmdlen -= (size_t)(nl + 1 - cmdbuf);
				memmove(cmdbuf, nl + 1, cmdlen + 1);
			}
			if (cmdlen == sizeof(cmdbuf) - 1)
				cmdlen = 0; /* garbage without newline: drop it */
		}
	}
}
