/* pid 1 of the program's namespace (see launch.h). Runs in a fork of the
 * supervisor and never returns into it: every exit is _exit, and nothing
 * here touches stdio buffers that the supervisor owns. */
#include "coord/launch.h"

#include "coord/fsutil.h"

#include <errno.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <poll.h>
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

/* What the program inherits: the signal state ckpt itself was given. */
static void restore_signals(const struct sig_state *s)
{
	for (int sig = 1; sig < NSIG; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = s->ignored[sig] ? SIG_IGN : SIG_DFL;
		sigaction(sig, &sa, NULL); /* fails only for signals glibc reserves */
	}
	sigprocmask(SIG_SETMASK, &s->mask, NULL);
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
	int cap = prctl(PR_CAPBSET_READ, CAP_CHECKPOINT_RESTORE, 0, 0, 0) >= 0 ? CAP_CHECKPOINT_RESTORE
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
	restore_signals(spec->sigs);
	if (spec->pid && keep_restore_capability() < 0)
		dprintf(2, "ckpt: cannot pass CAP_CHECKPOINT_RESTORE to the restorer: %s\n",
			strerror(errno));
	size_t n = 0;
	while (spec->envp[n])
		n++;
	char **env = malloc((n + 2) * sizeof(char *));
	char rootpid[32];
	if (!env)
		_exit(127);
	memcpy(env, spec->envp, n * sizeof(char *));
	snprintf(rootpid, sizeof(rootpid), "CKPT_ROOT_PID=%d", (int)getpid());
	env[n] = rootpid;
	env[n + 1] = NULL;
	execve(spec->path, spec->argv, env);
	dprintf(2, "ckpt: cannot execute %s: %s\n", spec->path, strerror(errno));
	_exit(127);
}

/* fork, or at restart a fork that gets exactly spec->pid: clone3 with
 * set_tid, allowed because init holds CAP_SYS_ADMIN in the user
 * namespace that owns this pid namespace. */
static pid_t start_child(const struct launch_spec *spec)
{
	if (spec->pid == 0)
		return fork();
	pid_t want = spec->pid;
	struct clone_args args;
	memset(&args, 0, sizeof(args));
	args.exit_signal = SIGCHLD;
	args.set_tid = (uint64_t)(uintptr_t)&want;
	args.set_tid_size = 1;
	return (pid_t)syscall(SYS_clone3, &args, sizeof(args));
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
	int keep[] = {0, 1, 2, report_fd, cmd_fd, spec->out_fd, spec->err_fd, spec->keep_fd};
	close_all_except(keep, (int)(sizeof(keep) / sizeof(keep[0])));
	prctl(PR_SET_NAME, "ckpt-init", 0, 0, 0);
	/* A dead supervisor must not kill init through SIGPIPE (reports). */
	signal(SIGPIPE, SIG_IGN);

	/* Our mounts must not propagate back to the parent namespace, and
	 * the program needs a /proc that shows its own pid namespace. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		report(report_fd, "err cannot make the mounts of the program's namespace private: %s",
		       strerror(errno));
		_exit(1);
	}
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
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

	struct pollfd pfd[2] = {{.fd = sfd, .events = POLLIN}, {.fd = cmd_fd, .events = POLLIN}};
	char cmdbuf[256];
	size_t cmdlen = 0;
	for (;;) {
		int nfds = pfd[1].fd >= 0 ? 2 : 1;
		if (poll(pfd, (nfds_t)nfds, -1) < 0) {
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
			while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
				if (p == main_pid) {
					report(report_fd, "exit %d", status);
					_exit(0);
				}
			}
		}
		if (nfds == 2 && pfd[1].revents) {
			ssize_t got = read(cmd_fd, cmdbuf + cmdlen, sizeof(cmdbuf) - 1 - cmdlen);
			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0) {
				/* The supervisor is gone: keep the program running. */
				close(cmd_fd);
				pfd[1].fd = -1;
				continue;
			}
			cmdlen += (size_t)got;
			cmdbuf[cmdlen] = '\0';
			char *nl;
			while ((nl = strchr(cmdbuf, '\n'))) {
				*nl = '\0';
				int sig;
				if (sscanf(cmdbuf, "kill %d", &sig) == 1 && sig > 0 && sig < NSIG)
					kill(main_pid, sig);
				cmdlen -= (size_t)(nl + 1 - cmdbuf);
				memmove(cmdbuf, nl + 1, cmdlen + 1);
			}
			if (cmdlen == sizeof(cmdbuf) - 1)
				cmdlen = 0; /* garbage without newline: drop it */
		}
	}
}
