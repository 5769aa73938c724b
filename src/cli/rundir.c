#include "cli/rundir.h"

#include "cli/sha256.h"
#include "coord/err.h"
#include "coord/fsutil.h"
#include "coord/kvfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* Bytes kept in names: safe in shells, on every file system, in URLs. */
static int name_safe(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       (c != 0 && strchr("._,+=@-", c));
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

char *rundir_name(const char *id, char *const *cmd, int ncmd)
{
	/* The parts: id, program name, arguments. */
	const char *prog = base_name(cmd[0]);
	size_t proglen = strlen(prog);
	size_t n = strlen(cmd[0]);
	if (n > 3 && strcmp(cmd[0] + n - 3, ".py") == 0)
		proglen -= 3;
	size_t total = (id ? strlen(id) + 1 : 0) + proglen + 1;
	for (int i = 1; i < ncmd; i++)
		total += strlen(cmd[i]) + 1;
	char *name = malloc(total + 1);
	if (!name) {
		ckpt_fail("out of memory");
		return NULL;
	}
	size_t len = 0;
	if (id) {
		len += (size_t)sprintf(name, "%s_", id);
	}
	memcpy(name + len, prog, proglen);
	len += proglen;
	for (int i = 1; i < ncmd; i++)
		len += (size_t)sprintf(name + len, "_%s", cmd[i]);
	name[len] = '\0';

	int lossy = len == 0;
	for (size_t i = 0; i < len; i++) {
		if (!name_safe((unsigned char)name[i])) {
			name[i] = '-';
			lossy = 1;
		}
	}
	/* Never ".", "..", a hidden name, or one that reads as an option. */
	if (len && (name[0] == '.' || name[0] == '-')) {
		name[0] = '_';
		lossy = 1;
	}
	if (!lossy && len <= RUNDIR_NAME_MAX)
		return name;

	/* The hash covers the exact command line, with separators that
	 * cannot occur inside an argument (NUL), and whether an id was
	 * given, so different command lines get different names. */
	struct sha256 h;
	unsigned char digest[32];
	sha256_init(&h);
	sha256_update(&h, id ? "ckpt-run-id" : "ckpt-run", id ? 12 : 9);
	if (id)
		sha256_update(&h, id, strlen(id) + 1);
	for (int i = 0; i < ncmd; i++)
		sha256_update(&h, cmd[i], strlen(cmd[i]) + 1);
	sha256_final(&h, digest);
	size_t keep = RUNDIR_NAME_MAX - 17;
	if (len > keep)
		len = keep;
	char *out = malloc(len + 18);
	if (!out) {
		free(name);
		ckpt_fail("out of memory");
		return NULL;
	}
	memcpy(out, name, len);
	out[len] = '_';
	for (int i = 0; i < 8; i++)
		sprintf(out + len + 1 + 2 * i, "%02x", digest[i]);
	free(name);
	return out;
}

char *rundir_path(const char *dir, const char *name)
{
	char cwd[PATH_MAX];
	char *r = NULL;
	if (!dir || dir[0] != '/') {
		if (!getcwd(cwd, sizeof(cwd))) {
			ckpt_fail_errno("cannot get the current directory");
			return NULL;
		}
	}
	int n;
	if (!dir)
		n = asprintf(&r, "%s/%s", cwd, name);
	else if (dir[0] == '/')
		n = asprintf(&r, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", name);
	else
		n = asprintf(&r, "%s/%s%s%s", cwd, dir, dir[strlen(dir) - 1] == '/' ? "" : "/",
			     name);
	if (n < 0) {
		ckpt_fail("out of memory");
		return NULL;
	}
	return r;
}

/* The process that took the flock on fd, from /proc/locks (0 when not
 * found). The pid written in the lock file is only claimed after a
 * restart's checks, so right after another ckpt took the lock the file
 * still names the previous, dead holder. */
static pid_t flock_owner(int fd)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return 0;
	FILE *f = fopen("/proc/locks", "re");
	if (!f)
		return 0;
	char line[256];
	pid_t owner = 0;
	while (!owner && fgets(line, sizeof(line), f)) {
		int pid;
		unsigned maj, min;
		unsigned long long ino;
		if (sscanf(line, "%*d: FLOCK %*s %*s %d %x:%x:%llu", &pid, &maj, &min, &ino) == 4 &&
		    ino == (unsigned long long)st.st_ino && maj == major(st.st_dev) &&
		    min == minor(st.st_dev))
			owner = pid;
	}
	fclose(f);
	return owner;
}

/* How long a lock whose supervisor is dead may stay held while no
 * process that holds it still runs: a program killed a moment ago (kill -9
 * of its group, then restart at once, as a requeued job does) keeps the
 * lock until the kernel has torn down its memory and closed its files,
 * which for a large process takes a while after it stopped running. */
#define RUNDIR_LOCK_EXIT_WAIT_MS 5000

/* The kernel's flag on a task that is in exit (include/linux/sched.h). */
#define TASK_FLAG_EXITING 0x4u

/* Whether the process pid is past the point of running: exiting or gone. */
static int process_exiting(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 1;
	buf[n] = '\0';
	/* after the command's closing parenthesis: state ppid pgrp session
	 * tty_nr tpgid flags */
	const char *rest = strrchr(buf, ')');
	char state;
	unsigned flags;
	if (!rest || sscanf(rest + 1, " %c %*d %*d %*d %*d %*d %u", &state, &flags) != 2)
		return 0;
	return state == 'Z' || state == 'X' || (flags & TASK_FLAG_EXITING);
}

/* Whether a process that still runs has the file st open (the processes
 * this user may look into; a holder in exit does not count). */
static int lock_held_by_running_process(const struct stat *st)
{
	DIR *proc = opendir("/proc");
	if (!proc)
		return 1; /* cannot tell: assume so */
	int running = 0;
	struct dirent *p;
	while (!running && (p = readdir(proc))) {
		if (p->d_name[0] < '1' || p->d_name[0] > '9')
			continue;
		pid_t pid = (pid_t)atoi(p->d_name);
		if (pid == getpid())
			continue; /* our own descriptor, the one that asks */
		char fds[64];
		snprintf(fds, sizeof(fds), "/proc/%d/fd", (int)pid);
		int dfd = open(fds, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0)
			continue;
		DIR *d = fdopendir(dfd);
		if (!d) {
			close(dfd);
			continue;
		}
		struct dirent *f;
		struct stat fst;
		while ((f = readdir(d)))
			if (f->d_name[0] != '.' && fstatat(dfd, f->d_name, &fst, 0) == 0 &&
			    fst.st_ino == st->st_ino && fst.st_dev == st->st_dev) {
				running = !process_exiting(pid);
				break;
			}
		closedir(d);
	}
	closedir(proc);
	return running;
}

/* The pid the lock file names as its holder, "" when none. */
static void lock_file_pid(int fd, char *pid, size_t size)
{
	ssize_t n = pread(fd, pid, size - 1, 0);
	pid[n > 0 ? n : 0] = '\0';
	pid[strcspn(pid, "\n")] = '\0';
}

int rundir_lock(int dirfd, const char *rundir)
{
	int fd = openat(dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return ckpt_fail_errno("cannot open %s/lock", rundir);
	for (int waited_ms = 0;; waited_ms += 50) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return fd;
		int e = errno;
		if (e != EWOULDBLOCK) {
			close(fd);
			errno = e;
			return ckpt_fail_errno("cannot lock %s/lock", rundir);
		}
		char pid[32];
		lock_file_pid(fd, pid, sizeof(pid));
		pid_t owner = flock_owner(fd);
		if (owner > 0 && owner != atoi(pid) && kill(owner, 0) == 0)
			snprintf(pid, sizeof(pid), "%d", (int)owner); /* a ckpt still starting */
		int supervisor_dead = pid[0] && kill(atoi(pid), 0) < 0 && errno == ESRCH;
		struct stat st;
		if (supervisor_dead && waited_ms < RUNDIR_LOCK_EXIT_WAIT_MS &&
		    fstat(fd, &st) == 0 && !lock_held_by_running_process(&st)) {
			struct timespec step = {0, 50 * 1000 * 1000};
			nanosleep(&step, NULL);
			continue;
		}
		close(fd);
		/* The namespace's init keeps the lock too, so a program whose
		 * supervisor died still guards its directory. */
		if (supervisor_dead)
			return ckpt_fail(
			    "run directory %s is locked: its supervisor (pid %s) has exited "
			    "but its program is still running; stop that program (for instance "
			    "with kill -9 -- -PGID of its process group) first",
			    rundir, pid);
		return ckpt_fail("run directory %s is in use by another ckpt%s%s%s (see: "
				 "ckpt status %s)",
				 rundir, pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "", rundir);
	}
}

int rundir_lock_claim(int fd, const char *rundir)
{
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n)
		return ckpt_fail_errno("cannot write %s/lock", rundir);
	return 0;
}

int rundir_lock_held(int dirfd, pid_t *holder)
{
	*holder = 0;
	int fd = openat(dirfd, "lock", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n > 0) {
		buf[n] = '\0';
		*holder = (pid_t)atoi(buf);
	}
	int held = 0;
	if (flock(fd, LOCK_SH | LOCK_NB) < 0)
		held = errno == EWOULDBLOCK ? 1 : -1;
	close(fd); /* drops our shared lock, if we got it */
	return held;
}

int rundir_make_token(int dirfd, char *hex, size_t len)
{
	unsigned char raw[16];
	if (len < 2 * sizeof(raw) + 1)
		return ckpt_fail("token buffer too small");
	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		return ckpt_fail_errno("getrandom");
	for (size_t i = 0; i < sizeof(raw); i++)
		sprintf(hex + 2 * i, "%02x", raw[i]);
	int fd = openat(dirfd, "token", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return ckpt_fail_errno("cannot create the token file");
	char line[40];
	int n = snprintf(line, sizeof(line), "%s\n", hex);
	if (write_all(fd, line, (size_t)n) < 0 || fsync(fd) < 0) {
		ckpt_fail_errno("cannot write the token file");
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

int rundir_read_token(int dirfd, char *hex, size_t len)
{
	ssize_t n = read_small(dirfd, "token", hex, len);
	if (n < 0)
		return ckpt_fail_errno("cannot read the run directory's token");
	while (n > 0 && (hex[n - 1] == '\n' || hex[n - 1] == ' '))
		hex[--n] = '\0';
	if (n != 32)
		return ckpt_fail("the run directory's token file is damaged");
	return 0;
}

int rundir_finished(int dirfd, int *status, char *when, size_t cap)
{
	struct kvfile fin;
	if (kv_read(&fin, dirfd, "finished") != 0)
		return 0;
	const char *st = kv_get(&fin, "status"), *recorded = kv_get(&fin, "time");
	*status = st ? atoi(st) : 0;
	snprintf(when, cap, "%s", recorded ? recorded : "?");
	kv_free(&fin);
	return 1;
}
