/* Files the program has open, or maps from its own files, kept for the
 * restart by a hard link in the generation's directory
 * (files/<dev>-<ino>, in hex).
 *
 * A program may delete or replace such a file after the checkpoint: GNU
 * sort merges temporary files and deletes each once it is read, a job
 * rotates its own output, a user reinstalls the package whose library
 * the program maps. The restart then needs the file as it was, and its
 * path no longer gives it. A hard link costs no copy and keeps the very
 * inode; what the program appended after the checkpoint is cut back at
 * restart as for a file still at its path. It can only be made to a file
 * on the run directory's filesystem that the user owns (EXDEV, and
 * protected_hardlinks otherwise): other files keep the rules they had
 * (docs/design.md, "Restart"). Made while the program is stopped, for
 * descriptors; for mappings, once it runs on, by whoever writes the
 * image (keep_flush). */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "agent/agent.h"
#include "common/rawsys.h"

#define KEEP_MAX 1024		   /* files per process and checkpoint */
#define PENDING_PATHS (256u << 10) /* bytes of paths of mapped files to link */

static struct {
	uint64_t dev, ino;
	uint32_t path; /* offset in pending + 1 while to be linked by keep_flush; 0: done */
} kept[KEEP_MAX];
static int nkept;
static char pending[PENDING_PATHS];
static uint32_t npending;
static int dir_state; /* 0: not made yet, 1: made, -1: cannot be */
static long uid = -1;

void keep_own_scratch(void)
{
	stage_own_scratch(kept, sizeof kept);
	stage_own_scratch(pending, sizeof pending);
}

void keep_begin(void)
{
	nkept = 0;
	npending = 0;
	dir_state = 0;
}

static void files_dir(char *buf, size_t cap)
{
	buf[0] = 0;
	str_append(buf, cap, agent.dir);
	str_append(buf, cap, "/files");
}

static void link_one(const char *from, int follow, uint64_t dev, uint64_t ino)
{
	char name[4200];
	files_dir(name, sizeof name);
	if (dir_state == 0) {
		long r = raw_syscall3(SYS_mkdirat, AT_FDCWD, name, 0700);
		dir_state = r == 0 || r == -EEXIST ? 1 : -1;
	}
	if (dir_state < 0)
		return;
	str_append(name, sizeof name, "/");
	str_append_hex(name, sizeof name, dev);
	str_append(name, sizeof name, "-");
	str_append_hex(name, sizeof name, ino);
	long r = raw_syscall5(SYS_linkat, AT_FDCWD, from, AT_FDCWD, name,
			      follow ? AT_SYMLINK_FOLLOW : 0);
	if (r != 0 || follow)
		return;
	/* linked by its path: the path may name another file by now */
	struct stat st;
	if (raw_syscall2(SYS_stat, name, &st) != 0 || st.st_dev != dev || st.st_ino != ino)
		raw_syscall1(SYS_unlink, name);
}

void keep_file(const char *from, int follow, uint64_t dev, uint64_t ino, uint32_t owner)
{
	if (uid < 0)
		uid = raw_syscall0(SYS_geteuid);
	if ((long)owner != uid || dir_state < 0 || nkept == KEEP_MAX)
		return;
	/* a library's areas come one after the other: the last one first */
	if (nkept && kept[nkept - 1].dev == dev && kept[nkept - 1].ino == ino)
		return;
	for (int i = 0; i < nkept; i++)
		if (kept[i].dev == dev && kept[i].ino == ino)
			return;
	kept[nkept].dev = dev;
	kept[nkept].ino = ino;
	kept[nkept].path = 0;
	if (follow) {
		/* an open file: linked at once, while the program is stopped,
		 * since it may delete the file as soon as it runs */
		nkept++;
		link_one(from, 1, dev, ino);
		return;
	}
	/* a mapped file: linked by keep_flush, once the program runs on (a
	 * system call each, hundreds for a program with its libraries in
	 * the user's own directories) */
	size_t len = str_len(from) + 1;
	if (npending + len > sizeof pending)
		return;
	str_copy(pending + npending, from, len);
	kept[nkept++].path = npending + 1;
	npending += (uint32_t)len;
}

void keep_flush(void)
{
	for (int i = 0; i < nkept; i++)
		if (kept[i].path) {
			link_one(pending + kept[i].path - 1, 0, kept[i].dev, kept[i].ino);
			kept[i].path = 0;
		}
}

void keep_sync(void)
{
	if (dir_state != 1)
		return;
	char name[4200];
	files_dir(name, sizeof name);
	long fd = raw_syscall4(SYS_openat, AT_FDCWD, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (fd < 0)
		return;
	raw_syscall1(SYS_fsync, fd);
	raw_syscall1(SYS_close, fd);
}
