/* Rebuilding the tree of processes of one generation. The first restorer
 * (started by init with the main process's pid) reads every image of the
 * generation, creates the kernel objects processes share (tree_shared in
 * fds.c and memory.c), then forks the tree: each process with its saved
 * pid (clone3 set_tid) under its saved parent, orphans under init
 * (CLONE_PARENT), zombies that exit at once with their saved status. Each
 * process then restores itself from its own image. No program code runs
 * until every process is ready: a barrier of two pipes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "restore/restore.h"

struct tree tree;

static int by_pid(const void *a, const void *b)
{
	const struct tree_proc *x = a, *y = b;
	return (x->pid > y->pid) - (x->pid < y->pid);
}

/* Every *.img of the root image's directory: one generation. */
int tree_load(const char *root_image)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", root_image);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	else
		snprintf(dir, sizeof dir, ".");
	snprintf(tree.dir, sizeof tree.dir, "%s", dir);
	DIR *d = opendir(dir);
	if (!d)
		return fail("cannot list %s: %s", dir, strerror(errno));
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (len < 5 || strcmp(e->d_name + len - 4, ".img") != 0)
			continue;
		if (tree.n == TREE_MAX) {
			closedir(d);
			return fail("more than %d processes in %s", TREE_MAX, dir);
		}
		char path[4400], err[512];
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		struct ckpt_image *img = ckpt_image_open(path, err, sizeof err);
		if (!img) {
			closedir(d);
			return fail("%s: %s", path, err);
		}
		img->drop_after_read = 1;
		struct tree_proc *p = &tree.procs[tree.n++];
		p->img = img;
		p->pid = img->hdr.pid;
		p->ppid = img->process.ppid;
	}
	closedir(d);
	if (!tree.n)
		return fail("no image in %s", dir);
	qsort(tree.procs, tree.n, sizeof tree.procs[0], by_pid);
	const char *base = slash ? slash + 1 : root_image;
	for (int i = 0; i < tree.n; i++) {
		char name[64];
		snprintf(name, sizeof name, "%d.img", (int)tree.procs[i].pid);
		if (!strcmp(name, base))
			tree.root = i;
		tree.procs[i].parent = -1;
		for (int k = 0; k < tree.n; k++)
			if (tree.procs[k].pid == tree.procs[i].ppid)
				tree.procs[i].parent = k;
	}
	for (int i = 0; i < tree.n; i++) {
		int fd_top = 2;
		for (uint32_t k = 0; k < tree.procs[i].img->nfds; k++)
			if (tree.procs[i].img->fds[k].fd > fd_top)
				fd_top = tree.procs[i].img->fds[k].fd;
		if (fd_top + 1 > tree.min_private)
			tree.min_private = fd_top + 1;
	}
	if (tree.min_private < 16)
		tree.min_private = 16;
	if (tree.n > 1 && getenv("CKPT_NEW_IDS"))
		return fail("the checkpoint holds %d processes, and restoring a tree of processes "
			    "needs their pids back, which needs user namespaces (unset "
			    "CKPT_NO_NAMESPACES, or allow unprivileged user namespaces)",
			    tree.n);
	/* the restorer's own descriptors go above every process's */
	struct rlimit nofile;
	getrlimit(RLIMIT_NOFILE, &nofile);
	for (int i = 0; i < tree.n; i++) {
		int fd = fcntl(tree.procs[i].img->fd, F_DUPFD_CLOEXEC, tree.min_private);
		if (fd < 0)
			return fail("cannot move an image descriptor: %s", strerror(errno));
		close(tree.procs[i].img->fd);
		tree.procs[i].img->fd = fd;
	}
	return 0;
}

static pid_t fork_with_pid(pid_t pid, int parent_too)
{
	struct clone_args args;
	memset(&args, 0, sizeof args);
	args.flags = parent_too ? CLONE_PARENT : 0;
	args.exit_signal = parent_too ? 0 : SIGCHLD;
	args.set_tid = (uint64_t)(uintptr_t)&pid;
	args.set_tid_size = 1;
	/* EEXIST: a restorer's thread holds the pid (see reserve_saved_ids);
	 * one that has ended gives it back within moments */
	for (int tries = 0;; tries++) {
		pid_t r = (pid_t)syscall(SYS_clone3, &args, sizeof args);
		if (r >= 0 || errno != EEXIST || tries == 200)
			return r;
		struct timespec ms = {0, 5000000};
		nanosleep(&ms, NULL);
	}
}

/* A child that had exited: it exits again at once with the same status,
 * and stays a zombie until the program waits for it. */
static int make_zombie(const struct ckpt_zombie *z)
{
	pid_t pid = fork_with_pid(z->pid, 0);
	if (pid < 0)
		return fail("cannot recreate zombie child %d: %s", (int)z->pid, strerror(errno));
	if (pid == 0) {
		/* without the restorer's capabilities, like every restored
		 * process: its parent must be allowed to read its status in
		 * /proc at the next checkpoint */
		struct {
			uint32_t version;
			int pid;
		} hdr = {0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0};
		uint32_t none[6] = {0};
		prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
		syscall(SYS_capset, &hdr, none);
		if (WIFSIGNALED(z->status)) {
			struct rlimit none = {0, 0};
			setrlimit(RLIMIT_CORE, &none);
			signal(WTERMSIG(z->status), SIG_DFL);
			sigset_t one;
			sigemptyset(&one);
			sigaddset(&one, WTERMSIG(z->status));
			sigprocmask(SIG_UNBLOCK, &one, NULL);
			raise(WTERMSIG(z->status));
		}
		_exit(WIFEXITED(z->status) ? WEXITSTATUS(z->status) : 0);
	}
	siginfo_t si;
	if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) != 0)
		return fail("zombie child %d did not exit: %s", (int)z->pid, strerror(errno));
	return 0;
}

/* Group and session: a leader makes its own at once; members join after
 * the barrier, when every leader exists. */
static int own_group_and_session(const struct ckpt_image *img)
{
	pid_t pid = getpid();
	if (img->tree.sid == pid && getsid(0) != pid && setsid() < 0)
		return fail("pid %d: cannot start its session again: %s", (int)pid,
			    strerror(errno));
	if (img->tree.pgid == pid && getpgid(0) != pid && setpgid(0, 0) < 0)
		return fail("pid %d: cannot lead its process group again: %s", (int)pid,
			    strerror(errno));
	return 0;
}

void tree_join_group(const struct ckpt_image *img)
{
	pid_t want = img->tree.pgid;
	if (want > 0 && want != getpid() && getpgid(0) != want && setpgid(0, want) < 0)
		warn("pid %d: cannot join process group %d again: %s", (int)getpid(), (int)want,
		     strerror(errno));
}

static int in_tree(int32_t pid)
{
	for (int i = 0; i < tree.n; i++)
		if (tree.procs[i].pid == pid)
			return 1;
	return 0;
}

int tree_gives_back(int32_t pid)
{
	if (in_tree(pid))
		return 1;
	for (int i = 0; i < tree.n; i++)
		for (uint32_t z = 0; z < tree.procs[i].img->nzombies; z++)
			if (tree.procs[i].img->zombies[z].pid == pid)
				return 1;
	return 0;
}

/* A process in a session whose leader has ended (a daemon: fork, setsid,
 * fork, exit) gets its session back from a short-lived helper that takes
 * the leader's pid, starts the session and forks the process, as its
 * parent would have. Returns 0 in the process, its pid in the caller, -1
 * (with a warning: the process is then restored in the caller's session)
 * if the helper cannot be made. */
static pid_t fork_in_session(int k, int parent_too, int32_t sid)
{
	pid_t h = fork_with_pid(sid, parent_too);
	if (h < 0) {
		warn("pid %d: cannot recreate its session %d: %s", (int)tree.procs[k].pid, (int)sid,
		     strerror(errno));
		return -1;
	}
	if (h == 0) {
		pid_t c = -1;
		if (setsid() < 0)
			fail("pid %d: cannot start its session %d again: %s",
			     (int)tree.procs[k].pid, (int)sid, strerror(errno));
		else if ((c = fork_with_pid(tree.procs[k].pid, 1)) < 0)
			fail("cannot recreate process %d in its session %d: %s",
			     (int)tree.procs[k].pid, (int)sid, strerror(errno));
		if (c == 0)
			return 0;
		if (c < 0)
			report_and_exit();
		_exit(0);
	}
	if (!parent_too)
		waitpid(h, NULL, 0); /* the helper was our child */
	return h;
}

/* Create the children of process i (and zombies), recursively. Returns
 * in each process with the index of the process it is to become. */
static int spawn(int i)
{
	const struct ckpt_image *img = tree.procs[i].img;
	if (own_group_and_session(img) != 0)
		return -1;
	for (uint32_t z = 0; z < img->nzombies; z++)
		if (make_zombie(&img->zombies[z]) != 0)
			return -1;
	for (int k = 0; k < tree.n; k++) {
		/* orphans were children of init: the first process makes them
		 * its siblings */
		int mine = tree.procs[k].parent == i ||
			   (i == tree.root && k != tree.root && tree.procs[k].parent < 0);
		if (!mine)
			continue;
		int parent_too = tree.procs[k].parent < 0;
		int32_t sid = tree.procs[k].img->tree.sid;
		pid_t pid = -1;
		if (sid > 0 && sid != tree.procs[k].pid && sid != img->tree.sid && !in_tree(sid))
			pid = fork_in_session(k, parent_too, sid);
		if (pid < 0)
			pid = fork_with_pid(tree.procs[k].pid, parent_too);
		if (pid < 0)
			return fail("cannot recreate process %d: %s", (int)tree.procs[k].pid,
				    strerror(errno));
		if (pid == 0) {
			close(tree.go[1]);
			tree.go[1] = -1;
			return spawn(k);
		}
	}
	return i;
}

/* The highest pid or tid the generation gives back (processes, threads,
 * zombies, session and group leaders). */
static int32_t highest_saved_id(void)
{
	int32_t top = 0;
	for (int i = 0; i < tree.n; i++) {
		const struct ckpt_image *img = tree.procs[i].img;
		int32_t ids[] = {tree.procs[i].pid, img->tree.sid, img->tree.pgid};
		for (size_t k = 0; k < sizeof ids / sizeof ids[0]; k++)
			if (ids[k] > top)
				top = ids[k];
		for (uint32_t t = 0; t < img->nthreads; t++)
			if (img->threads[t].tid > top)
				top = img->threads[t].tid;
		for (uint32_t z = 0; z < img->nzombies; z++)
			if (img->zombies[z].pid > top)
				top = img->zombies[z].pid;
	}
	return top;
}

/* Until the final stage has made the last thread, the pids and tids of
 * the checkpoint must stay free, but the restorers take pids of the
 * namespace meanwhile (their reading threads, while a sibling still
 * waits to be forked with its pid: clone3 then fails with EEXIST). New
 * pids are handed out above the last one given (ns_last_pid, writable
 * with CAP_CHECKPOINT_RESTORE in the namespace's owner): starting above
 * every saved id keeps them apart. Where it cannot be written, forks that
 * find their pid taken try again (fork_with_pid). */
static void reserve_saved_ids(void)
{
	if (getenv("CKPT_NEW_IDS"))
		return; /* pids are not given back */
	int32_t top = highest_saved_id();
	int fd = open("/proc/sys/kernel/ns_last_pid", O_RDWR | O_CLOEXEC);
	char now[32] = "";
	ssize_t n = fd >= 0 ? pread(fd, now, sizeof now - 1, 0) : -1;
	if (n > 0 && atoi(now) < top) {
		char want[32];
		int len = snprintf(want, sizeof want, "%d", (int)top);
		if (pwrite(fd, want, (size_t)len, 0) != len)
			warn("cannot keep the checkpoint's pids free (ns_last_pid: %s)",
			     strerror(errno));
	}
	if (fd >= 0)
		close(fd);
}

int tree_spawn(void)
{
	reserve_saved_ids();
	if (pipe2(tree.ready, O_CLOEXEC) != 0 || pipe2(tree.go, O_CLOEXEC) != 0)
		return fail("cannot create the restart barrier: %s", strerror(errno));
	for (int k = 0; k < 2; k++) {
		tree.ready[k] = fcntl(tree.ready[k], F_DUPFD_CLOEXEC, tree.min_private);
		tree.go[k] = fcntl(tree.go[k], F_DUPFD_CLOEXEC, tree.min_private);
	}
	/* the parent of a restored process must be in it before it runs */
	return spawn(tree.root);
}

/* Every process says it is ready; the first one then lets all go. A
 * process that failed closes its end without a byte, and then nobody
 * goes: they all exit, and the first one reports why. */
int tree_barrier(int self)
{
	char b = 'r';
	if (write(tree.ready[1], &b, 1) != 1)
		return fail("restart barrier: %s", strerror(errno));
	close(tree.ready[1]);
	if (self == tree.root) {
		int got = 0;
		while (got < tree.n) {
			ssize_t r = read(tree.ready[0], &b, 1);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			got++;
		}
		close(tree.ready[0]);
		if (got < tree.n)
			return fail(
			    "%d of the %d processes of the checkpoint could not be restored "
			    "(see the messages above)",
			    tree.n - got, tree.n);
		char go[256];
		memset(go, 'g', sizeof go);
		for (int left = tree.n - 1; left > 0;) {
			ssize_t w = write(tree.go[1], go, left < 256 ? (size_t)left : 256);
			if (w <= 0)
				return fail("restart barrier: %s", strerror(errno));
			left -= (int)w;
		}
		close(tree.go[1]);
		close(tree.go[0]);
		return 0;
	}
	close(tree.ready[0]);
	ssize_t r;
	do
		r = read(tree.go[0], &b, 1);
	while (r < 0 && errno == EINTR);
	close(tree.go[0]);
	if (r != 1)
		exit(2); /* the first process failed and says why */
	return 0;
}
