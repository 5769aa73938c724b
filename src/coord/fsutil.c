#include "coord/fsutil.h"

#include "coord/err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int fsync_dir(int dirfd, const char *what)
{
	/* fsync needs a descriptor opened for reading, not O_PATH. */
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return ckpt_fail_errno("cannot open %s to sync it", what);
	if (fsync(fd) < 0) {
		ckpt_fail_errno("cannot sync %s", what);
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* depth bounds the recursion: run and generation directories are
 * shallow, anything deeper is not ours to delete. */
static int rmtree_depth(int dirfd, const char *name, int depth)
{
	if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return ckpt_fail_errno("cannot remove %s", name);
	if (depth == 0)
		return ckpt_fail("cannot remove %s: nested too deeply", name);
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return ckpt_fail_errno("cannot open %s", name);
	DIR *d = fdopendir(fd);
	if (!d) {
		ckpt_fail_errno("cannot read %s", name);
		close(fd);
		return -1;
	}
	int rc = 0;
	struct dirent *e;
	while (rc == 0 && (errno = 0, e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		rc = rmtree_depth(fd, e->d_name, depth - 1);
	}
	if (rc == 0 && errno)
		rc = ckpt_fail_errno("cannot read %s", name);
	closedir(d);
	if (rc == 0 && unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		rc = ckpt_fail_errno("cannot remove %s", name);
	return rc;
}

int rmtree_at(int dirfd, const char *name)
{
	return rmtree_depth(dirfd, name, 4);
}

ssize_t read_small(int dirfd, const char *name, char *buf, size_t len)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	size_t got = 0;
	while (got + 1 < len) {
		ssize_t r = read(fd, buf + got, len - 1 - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			close(fd);
			errno = e;
			return -1;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	buf[got] = '\0';
	return (ssize_t)got;
}
