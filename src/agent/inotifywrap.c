/* Remember what inotify watches point at. The kernel shows a watch's
 * inode in /proc/self/fdinfo, not its path, and turning an inode back into
 * a path takes a privilege a user does not have (open_by_handle_at): the
 * path the program gave is kept here, so that a restart can watch it
 * again. The table lives in the program's memory and comes back with it.
 * Watches made with the system call directly are not seen; the capture
 * names them. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "agent/agent.h"
#include "common/rawsys.h"

#define EXPORT __attribute__((visibility("default")))

#define MAX_WATCHES 4096
#define PATH_POOL (256 * 1024)

struct watch {
	int fd, wd;    /* fd -1: a free slot */
	uint32_t path; /* offset in pool */
};

static struct watch watches[MAX_WATCHES];
static _Atomic uint32_t nwatches;
static char pool[PATH_POOL];
static uint32_t pool_used;
/* Between the program's threads only: the capture runs while they are
 * stopped, perhaps one of them inside, and reads without it (a slot is
 * filled before it is counted). */
static atomic_flag table_lock = ATOMIC_FLAG_INIT;

static void lock_table(void)
{
	while (atomic_flag_test_and_set_explicit(&table_lock, memory_order_acquire))
		raw_syscall0(SYS_sched_yield);
}

static void unlock_table(void)
{
	atomic_flag_clear_explicit(&table_lock, memory_order_release);
}

/* Moves the paths of the watches that are left to the start of the pool,
 * in the order they lie in it: a program that watches and unwatches
 * again and again would otherwise fill it. */
static void compact_pool(void)
{
	uint32_t n = atomic_load(&nwatches), to = 0, from = 0;
	for (;;) {
		int next = -1;
		for (uint32_t i = 0; i < n; i++)
			if (watches[i].fd >= 0 && watches[i].path != UINT32_MAX &&
			    watches[i].path >= from &&
			    (next < 0 || watches[i].path < watches[next].path))
				next = (int)i;
		if (next < 0)
			break;
		uint32_t at = watches[next].path, len = (uint32_t)str_len(pool + at) + 1;
		from = at + len;
		for (uint32_t i = 0; i < n; i++) /* a path shared by two slots moves once */
			if (watches[i].fd >= 0 && watches[i].path == at)
				watches[i].path = to;
		__builtin_memmove(pool + to, pool + at, len);
		to += len;
	}
	pool_used = to;
}

/* The path as the program's cwd makes it now, kept in the pool; -1 if it
 * does not fit. */
static int64_t keep_path(const char *path)
{
	char cwd[4096];
	size_t len = str_len(path), clen = 0;
	if (path[0] != '/') {
		long n = raw_syscall2(SYS_getcwd, cwd, sizeof cwd);
		if (n <= 0)
			return -1;
		clen = str_len(cwd);
	}
	size_t need = clen + (clen ? 1 : 0) + len + 1;
	if (need > PATH_POOL - pool_used)
		compact_pool();
	if (need > PATH_POOL - pool_used)
		return -1;
	char *p = pool + pool_used;
	if (clen) {
		mem_copy(p, cwd, clen);
		p[clen] = '/';
		mem_copy(p + clen + 1, path, len + 1);
	} else {
		mem_copy(p, path, len + 1);
	}
	uint32_t at = pool_used;
	pool_used += (uint32_t)need;
	return at;
}

static void note_watch(int fd, int wd, const char *path)
{
	lock_table();
	int64_t at = keep_path(path);
	uint32_t n = atomic_load(&nwatches), slot = n;
	for (uint32_t i = 0; i < n; i++) {
		if (watches[i].fd == fd && watches[i].wd == wd) {
			slot = i; /* the same inode again, or a stale entry */
			break;
		}
		if (watches[i].fd < 0 && slot == n)
			slot = i;
	}
	if (slot < MAX_WATCHES) {
		watches[slot].fd = -1;
		watches[slot].wd = wd;
		watches[slot].path = at < 0 ? UINT32_MAX : (uint32_t)at;
		__atomic_store_n(&watches[slot].fd, fd, __ATOMIC_RELEASE); /* filled: it counts */
		if (slot == n)
			atomic_store(&nwatches, n + 1);
	}
	unlock_table();
}

EXPORT int inotify_add_watch(int fd, const char *path, uint32_t mask)
{
	long wd = raw_syscall3(SYS_inotify_add_watch, fd, path, mask);
	if (wd < 0) {
		errno = (int)-wd;
		return -1;
	}
	note_watch(fd, (int)wd, path);
	return (int)wd;
}

EXPORT int inotify_rm_watch(int fd, int wd)
{
	long r = raw_syscall2(SYS_inotify_rm_watch, fd, wd);
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	lock_table();
	uint32_t n = atomic_load(&nwatches);
	for (uint32_t i = 0; i < n; i++)
		if (watches[i].fd == fd && watches[i].wd == wd)
			watches[i].fd = -1;
	unlock_table();
	return 0;
}

const char *inotify_watch_path(int fd, int wd, uint64_t dev, uint64_t ino, int follow)
{
	uint32_t n = atomic_load(&nwatches);
	/* the watch as it was made, then any path to the same inode (a
	 * descriptor duplicated since, or the same inode watched elsewhere) */
	for (int pass = 0; pass < 2; pass++)
		for (uint32_t i = 0; i < n && i < MAX_WATCHES; i++) {
			const struct watch *w = &watches[i];
			if (w->fd < 0 || w->path >= pool_used ||
			    (pass == 0 && (w->fd != fd || w->wd != wd)))
				continue;
			struct stat sb;
			const char *path = pool + w->path;
			long r = raw_syscall4(SYS_newfstatat, AT_FDCWD, path, &sb,
					      follow ? 0 : AT_SYMLINK_NOFOLLOW);
			if (r == 0 && sb.st_dev == dev && sb.st_ino == ino)
				return path;
		}
	return 0;
}
