#include "coord/launch.h"

#include "coord/err.h"
#include "coord/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

void sig_state_save(struct sig_state *s)
{
	sigprocmask(SIG_SETMASK, NULL, &s->mask);
	memset(s->ignored, 0, sizeof(s->ignored));
	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction sa;
		if (sigaction(sig, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
			s->ignored[sig] = 1;
	}
}

void sig_state_restore(const struct sig_state *s)
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

static int write_proc_file(pid_t pid, const char *name, const char *text)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = write_all(fd, text, strlen(text));
	int e = errno;
	close(fd);
	errno = e;
	return rc;
}

/* Map ids so the program runs with the same uid and gid inside as
 * outside. root maps the whole id range (files of every user keep their
 * owners and root's access to them); anyone else may map only their own
 * ids, which needs setgroups denied first. */
static int write_id_maps(pid_t pid)
{
	uid_t uid = geteuid();
	gid_t gid = getegid();
	if (uid == 0 && write_proc_file(pid, "uid_map", "0 0 4294967295\n") == 0 &&
	    write_proc_file(pid, "gid_map", "0 0 4294967295\n") == 0)
		return 0;
	/* Not allowed the whole range (root without CAP_SETUID over the
	 * parent namespace, in some containers): map just ourselves. */
	char map[64];
	if (write_proc_file(pid, "setgroups", "deny\n") < 0 && errno != ENOENT)
		return ckpt_fail_errno("cannot write /proc/%d/setgroups", (int)pid);
	snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)uid, (unsigned)uid);
	if (write_proc_file(pid, "uid_map", map) < 0)
		return ckpt_fail_errno("cannot write /proc/%d/uid_map", (int)pid);
	snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)gid, (unsigned)gid);
	if (write_proc_file(pid, "gid_map", map) < 0)
		return ckpt_fail_errno("cannot write /proc/%d/gid_map", (int)pid);
	return 0;
}

static int namespaces_forced_off(void)
{
	const char *force = getenv("CKPT_NO_NAMESPACES");
	return force && strcmp(force, "1") == 0;
}

static long clone_into_namespaces(void)
{
	return syscall(SYS_clone,
		       (unsigned long)(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | SIGCHLD), NULL,
		       NULL, NULL, 0UL);
}

int launch_namespaces_usable(void)
{
	if (namespaces_forced_off())
		return 0;
	long pid = clone_into_namespaces(); /* the child only _exits: no stdio to flush */
	if (pid < 0)
		return 0;
	if (pid == 0)
		_exit(0);
	while (waitpid((pid_t)pid, NULL, 0) < 0 && errno == EINTR)
		;
	return 1;
}

int launch(struct launch_spec *spec, struct launch *out)
{
	int sync[2] = {-1, -1}, report[2] = {-1, -1}, cmd[2] = {-1, -1};
	if (pipe2(sync, O_CLOEXEC) < 0 || pipe2(report, O_CLOEXEC) < 0 ||
	    pipe2(cmd, O_CLOEXEC) < 0) {
		ckpt_fail_errno("pipe");
		goto fail;
	}
	/* init is a copy of this process: anything buffered in stdio would
	 * otherwise be written twice. */
	fflush(NULL);
	/* Raw clone: glibc has no wrapper that forks into new namespaces,
	 * and unshare(CLONE_NEWPID) would need a second fork to get pid 1. */
	spec->no_namespaces = namespaces_forced_off();
	long pid = -1;
	if (!spec->no_namespaces) {
		pid = clone_into_namespaces();
		/* Namespaces refused (disabled by the site): run without them;
		 * pids change at restart and execution.log says so. */
		if (pid < 0 &&
		    (errno == EPERM || errno == ENOSPC || errno == EINVAL || errno == EUSERS))
			spec->no_namespaces = 1;
	}
	if (spec->no_namespaces)
		pid = syscall(SYS_clone, (unsigned long)SIGCHLD, NULL, NULL, NULL, 0UL);
	if (pid < 0) {
		ckpt_fail_errno(
		    "cannot create the program's user, pid and mount namespaces (clone)");
		if (errno == EPERM || errno == ENOSPC || errno == EINVAL || errno == EUSERS)
			ckpt_fail("%s; unprivileged user namespaces look disabled on this machine "
				  "(see sysctl user.max_user_namespaces, "
				  "kernel.unprivileged_userns_clone, "
				  "kernel.apparmor_restrict_unprivileged_userns)",
				  ckpt_error());
		goto fail;
	}
	if (pid == 0) {
		close(sync[1]);
		close(report[0]);
		close(cmd[1]);
		nsinit_main(spec, sync[0], report[1], cmd[0]);
	}
	close(sync[0]);
	close(report[1]);
	close(cmd[0]);
	sync[0] = report[1] = cmd[0] = -1;
	if (!spec->no_namespaces && write_id_maps((pid_t)pid) < 0) {
		ckpt_fail("cannot set up the program's user namespace: %s", ckpt_error());
		goto fail_child;
	}
	/* Let init go on: its ids are mapped now. */
	if (write_all(sync[1], "g", 1) < 0) {
		ckpt_fail_errno("cannot start the namespace's init");
		goto fail_child;
	}
	close(sync[1]);
	out->init_pid = (pid_t)pid;
	out->no_namespaces = spec->no_namespaces;
	out->report_fd = report[0];
	out->cmd_fd = cmd[1];
	return 0;

fail_child:
	kill((pid_t)pid, SIGKILL);
	while (waitpid((pid_t)pid, NULL, 0) < 0 && errno == EINTR)
		;
fail:
	for (int i = 0; i < 2; i++) {
		if (sync[i] >= 0)
			close(sync[i]);
		if (report[i] >= 0)
			close(report[i]);
		if (cmd[i] >= 0)
			close(cmd[i]);
	}
	return -1;
}
