/* Files the program opens for appending, written down for the coordinator.
 * A restart cuts back what was appended after the checkpoint, since the
 * restarted program appends it again; for a file open at the checkpoint
 * the descriptor says so (fds.c), but a shell loop's `echo ... >> out`, or
 * a log opened, appended to and closed at every step, is closed by then,
 * and its lines would come twice. So every successful open of a regular
 * file for appending (appends()) adds a line "DEV INO PATH" to the run
 * directory's journal (`appended`, docs/design.md), once per file and
 * process as far as a small table remembers; the coordinator records the
 * sizes of those files at each checkpoint, while the program is stopped
 * (coord/appended.c).
 *
 * The wrappers run in any thread, possibly between fork and exec: the
 * journal is written with raw system calls, nothing is allocated, errno is
 * kept, and the real functions are looked up once. Other opens only pass
 * through. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/rawsys.h"

#define EXPORT __attribute__((visibility("default")))
#define JOURNAL_NAME "appended"
#define SEEN_SLOTS 256

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef FILE *(*fopen_fn)(const char *, const char *);
typedef FILE *(*freopen_fn)(const char *, const char *, FILE *);

static open_fn next_open, next_open64;
static openat_fn next_openat, next_openat64;
static fopen_fn next_fopen, next_fopen64;
static freopen_fn next_freopen, next_freopen64;

static char journal[4096]; /* RUNDIR/appended; empty: not under ckpt */
/* (dev, ino) already written by this process; a collision only writes a
 * line twice */
static struct {
	unsigned long long dev, ino;
} seen[SEEN_SLOTS];

static void resolve(void)
{
	next_open = (open_fn)dlsym(RTLD_NEXT, "open");
	next_open64 = (open_fn)dlsym(RTLD_NEXT, "open64");
	next_openat = (openat_fn)dlsym(RTLD_NEXT, "openat");
	next_openat64 = (openat_fn)dlsym(RTLD_NEXT, "openat64");
	next_fopen = (fopen_fn)dlsym(RTLD_NEXT, "fopen");
	next_fopen64 = (fopen_fn)dlsym(RTLD_NEXT, "fopen64");
	next_freopen = (freopen_fn)dlsym(RTLD_NEXT, "freopen");
	next_freopen64 = (freopen_fn)dlsym(RTLD_NEXT, "freopen64");
}

/* The control socket lies in the run directory (docs/protocol.md, "Launch
 * contract"), and so does the journal. */
__attribute__((constructor)) static void appendlog_init(void)
{
	resolve();
	const char *ctl = getenv("CKPT_CTL");
	const char *slash = ctl ? strrchr(ctl, '/') : NULL;
	size_t dir = slash ? (size_t)(slash - ctl) : 0;
	if (!dir || dir + sizeof "/" JOURNAL_NAME > sizeof journal)
		return;
	memcpy(journal, ctl, dir);
	memcpy(journal + dir, "/" JOURNAL_NAME, sizeof "/" JOURNAL_NAME);
}

/* The len bytes of path at p (in a buffer of cap bytes from p) with "%"
 * and newline percent-encoded in place, so that one line holds any path;
 * the new length, or 0 if it does not fit. One buffer on the stack: the
 * wrappers may run on a thread with a small stack. */
static size_t encode_path(char *p, size_t len, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t specials = 0;
	for (size_t i = 0; i < len; i++)
		specials += p[i] == '%' || p[i] == '\n';
	size_t out = len + 2 * specials;
	if (out >= cap)
		return 0;
	for (size_t i = len, o = out; i-- > 0;) {
		unsigned char ch = (unsigned char)p[i];
		if (ch != '%' && ch != '\n') {
			p[--o] = (char)ch;
			continue;
		}
		p[--o] = hex[ch & 15];
		p[--o] = hex[ch >> 4];
		p[--o] = '%';
	}
	return out;
}

static size_t put_u64(char *out, unsigned long long v)
{
	char tmp[24];
	size_t n = 0, k = 0;
	do
		tmp[k++] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	while (k)
		out[n++] = tmp[--k];
	return n;
}

static void note(int fd)
{
	if (fd < 0 || !journal[0])
		return;
	int saved_errno = errno;
	struct stat st;
	if (raw_syscall2(SYS_fstat, fd, &st) != 0 || !S_ISREG(st.st_mode))
		goto out;
	unsigned slot = (unsigned)((st.st_dev * 31 + st.st_ino) % SEEN_SLOTS);
	if (seen[slot].dev == st.st_dev && seen[slot].ino == st.st_ino)
		goto out;
	char self[40] = "/proc/self/fd/", line[4096 + 64];
	self[14 + put_u64(self + 14, (unsigned long long)fd)] = 0;
	size_t n = put_u64(line, st.st_dev);
	line[n++] = ' ';
	n += put_u64(line + n, st.st_ino);
	line[n++] = ' ';
	long len = raw_syscall4(SYS_readlinkat, AT_FDCWD, self, line + n, sizeof line - n - 1);
	if (len <= 0 || len >= (long)(sizeof line - n - 1) || line[n] != '/')
		goto out;
	size_t p = encode_path(line + n, (size_t)len, sizeof line - n - 1);
	if (!p)
		goto out;
	n += p;
	line[n++] = '\n';
	long j = raw_syscall4(SYS_openat, AT_FDCWD, journal,
			      O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (j < 0)
		goto out;
	/* one write: appends of several processes do not mix */
	if (raw_syscall3(SYS_write, j, line, n) == (long)n) {
		seen[slot].dev = st.st_dev;
		seen[slot].ino = st.st_ino;
	}
	raw_syscall1(SYS_close, j);
out:
	errno = saved_errno;
}

/* Opened to append: with O_APPEND, or write-only without truncating
 * (Fortran's position="append" opens so and seeks to the end). A file
 * written in place is opened read-write (a database) and left alone: its
 * bytes before the end are not restored by cutting it. */
static int appends(int flags)
{
	return (flags & O_APPEND) || ((flags & O_ACCMODE) == O_WRONLY && !(flags & O_TRUNC));
}

/* Without the real function (not found by dlsym): the system call. */
static int direct_open(int dirfd, const char *path, int flags, mode_t mode)
{
	return (int)syscall(SYS_openat, dirfd, path, flags, mode);
}

/* The mode argument of an open-like call, read only where it is passed. */
static mode_t mode_arg(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

/* The real function, looked up now if a wrapper runs before the
 * constructor (another library's constructor opening a file). */
#define REAL(next) (next ? next : (resolve(), next))

/* What every open wrapper does with the real call's result. */
static int opened(int fd, int flags)
{
	if (appends(flags))
		note(fd);
	return fd;
}

EXPORT int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	open_fn f = REAL(next_open);
	return opened(f ? f(path, flags, mode) : direct_open(AT_FDCWD, path, flags, mode), flags);
}

EXPORT int open64(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	open_fn f = REAL(next_open64);
	return opened(f ? f(path, flags, mode) : direct_open(AT_FDCWD, path, flags, mode), flags);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	openat_fn f = REAL(next_openat);
	return opened(f ? f(dirfd, path, flags, mode) : direct_open(dirfd, path, flags, mode),
		      flags);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	openat_fn f = REAL(next_openat64);
	return opened(f ? f(dirfd, path, flags, mode) : direct_open(dirfd, path, flags, mode),
		      flags);
}

static FILE *noted_stream(FILE *f, const char *mode)
{
	if (f && mode && strchr(mode, 'a'))
		note(fileno(f));
	return f;
}

EXPORT FILE *fopen(const char *path, const char *mode)
{
	return noted_stream(REAL(next_fopen)(path, mode), mode);
}

EXPORT FILE *fopen64(const char *path, const char *mode)
{
	return noted_stream(REAL(next_fopen64)(path, mode), mode);
}

EXPORT FILE *freopen(const char *path, const char *mode, FILE *stream)
{
	return noted_stream(REAL(next_freopen)(path, mode, stream), mode);
}

EXPORT FILE *freopen64(const char *path, const char *mode, FILE *stream)
{
	return noted_stream(REAL(next_freopen64)(path, mode, stream), mode);
}
