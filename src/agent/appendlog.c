/* Files the program opens for appending, or creates, written down for the
 * coordinator.
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
 * Likewise every regular file a process creates (an open with O_CREAT, a
 * file fopen'ed to write or append, mkstemp and its kin, which glibc
 * opens internally) goes to a second journal (`created`): the coordinator
 * keeps a link to each one still there at a checkpoint, so that a restart
 * can put back one the program deleted after it (coord/appended.c).
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
#define CREATED_NAME "created"
#define SEEN_SLOTS 256

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef FILE *(*fopen_fn)(const char *, const char *);
typedef FILE *(*freopen_fn)(const char *, const char *, FILE *);
typedef int (*mkstemp_fn)(char *);
typedef int (*mkostemp_fn)(char *, int);
typedef int (*mkstemps_fn)(char *, int);
typedef int (*mkostemps_fn)(char *, int, int);
typedef int (*creat_fn)(const char *, mode_t);

static open_fn next_open, next_open64;
static openat_fn next_openat, next_openat64;
static fopen_fn next_fopen, next_fopen64;
static freopen_fn next_freopen, next_freopen64;
static mkstemp_fn next_mkstemp, next_mkstemp64;
static mkostemp_fn next_mkostemp, next_mkostemp64;
static mkstemps_fn next_mkstemps, next_mkstemps64;
static mkostemps_fn next_mkostemps, next_mkostemps64;
static creat_fn next_creat, next_creat64;

/* One journal: RUNDIR/NAME (empty: not under ckpt), and the files this
 * process has written to it already (dev, ino and a hash of the path: an
 * inode number comes again for a new temporary file); a collision only
 * writes a line twice. */
struct journal {
	char path[4096];
	struct {
		unsigned long long dev, ino, name;
	} seen[SEEN_SLOTS];
};
static struct journal appended, created;

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
	next_mkstemp = (mkstemp_fn)dlsym(RTLD_NEXT, "mkstemp");
	next_mkstemp64 = (mkstemp_fn)dlsym(RTLD_NEXT, "mkstemp64");
	next_mkostemp = (mkostemp_fn)dlsym(RTLD_NEXT, "mkostemp");
	next_mkostemp64 = (mkostemp_fn)dlsym(RTLD_NEXT, "mkostemp64");
	next_mkstemps = (mkstemps_fn)dlsym(RTLD_NEXT, "mkstemps");
	next_mkstemps64 = (mkstemps_fn)dlsym(RTLD_NEXT, "mkstemps64");
	next_mkostemps = (mkostemps_fn)dlsym(RTLD_NEXT, "mkostemps");
	next_mkostemps64 = (mkostemps_fn)dlsym(RTLD_NEXT, "mkostemps64");
	next_creat = (creat_fn)dlsym(RTLD_NEXT, "creat");
	next_creat64 = (creat_fn)dlsym(RTLD_NEXT, "creat64");
}

/* The control socket lies in the run directory (docs/protocol.md, "Launch
 * contract"), and so does the journal. */
__attribute__((constructor)) static void appendlog_init(void)
{
	resolve();
	const char *ctl = getenv("CKPT_CTL");
	const char *slash = ctl ? strrchr(ctl, '/') : NULL;
	size_t dir = slash ? (size_t)(slash - ctl) : 0;
	if (!dir || dir + sizeof "/" JOURNAL_NAME > sizeof appended.path)
		return;
	memcpy(appended.path, ctl, dir);
	memcpy(appended.path + dir, "/" JOURNAL_NAME, sizeof "/" JOURNAL_NAME);
	memcpy(created.path, ctl, dir);
	memcpy(created.path + dir, "/" CREATED_NAME, sizeof "/" CREATED_NAME);
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

static unsigned long long name_hash(const char *p, size_t n)
{
	unsigned long long h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
	return h;
}

static void note(int fd, struct journal *jr)
{
	if (fd < 0 || !jr->path[0])
		return;
	int saved_errno = errno;
	struct stat st;
	if (raw_syscall2(SYS_fstat, fd, &st) != 0 || !S_ISREG(st.st_mode))
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
	unsigned long long name = name_hash(line + n, (size_t)len);
	unsigned slot = (unsigned)((st.st_dev * 31 + st.st_ino + name) % SEEN_SLOTS);
	if (jr->seen[slot].dev == st.st_dev && jr->seen[slot].ino == st.st_ino &&
	    jr->seen[slot].name == name)
		goto out;
	size_t p = encode_path(line + n, (size_t)len, sizeof line - n - 1);
	if (!p)
		goto out;
	n += p;
	line[n++] = '\n';
	long j = raw_syscall4(SYS_openat, AT_FDCWD, jr->path,
			      O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (j < 0)
		goto out;
	/* one write: appends of several processes do not mix */
	if (raw_syscall3(SYS_write, j, line, n) == (long)n) {
		jr->seen[slot].dev = st.st_dev;
		jr->seen[slot].ino = st.st_ino;
		jr->seen[slot].name = name;
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
		note(fd, &appended);
	if (flags & O_CREAT)
		note(fd, &created);
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
		note(fileno(f), &appended);
	if (f && mode && (strchr(mode, 'a') || strchr(mode, 'w')))
		note(fileno(f), &created);
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

/* mkstemp and its kin open the file inside glibc, past the wrappers above. */
static int made(int fd)
{
	note(fd, &created);
	return fd;
}

/* A real function glibc lacks: the call fails as an unknown one would. */
static int missing(void)
{
	errno = ENOSYS;
	return -1;
}

EXPORT int mkstemp(char *tmpl)
{
	mkstemp_fn f = REAL(next_mkstemp);
	return f ? made(f(tmpl)) : missing();
}

EXPORT int mkstemp64(char *tmpl)
{
	mkstemp_fn f = REAL(next_mkstemp64);
	return f ? made(f(tmpl)) : missing();
}

EXPORT int mkostemp(char *tmpl, int flags)
{
	mkostemp_fn f = REAL(next_mkostemp);
	return f ? made(f(tmpl, flags)) : missing();
}

EXPORT int mkostemp64(char *tmpl, int flags)
{
	mkostemp_fn f = REAL(next_mkostemp64);
	return f ? made(f(tmpl, flags)) : missing();
}

EXPORT int mkstemps(char *tmpl, int suffixlen)
{
	mkstemps_fn f = REAL(next_mkstemps);
	return f ? made(f(tmpl, suffixlen)) : missing();
}

EXPORT int mkstemps64(char *tmpl, int suffixlen)
{
	mkstemps_fn f = REAL(next_mkstemps64);
	return f ? made(f(tmpl, suffixlen)) : missing();
}

EXPORT int mkostemps(char *tmpl, int suffixlen, int flags)
{
	mkostemps_fn f = REAL(next_mkostemps);
	return f ? made(f(tmpl, suffixlen, flags)) : missing();
}

EXPORT int mkostemps64(char *tmpl, int suffixlen, int flags)
{
	mkostemps_fn f = REAL(next_mkostemps64);
	return f ? made(f(tmpl, suffixlen, flags)) : missing();
}

EXPORT int creat(const char *path, mode_t mode)
{
	creat_fn f = REAL(next_creat);
	return made(f ? f(path, mode)
		      : direct_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode));
}

EXPORT int creat64(const char *path, mode_t mode)
{
	creat_fn f = REAL(next_creat64);
	return made(f ? f(path, mode)
		      : direct_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode));
}
