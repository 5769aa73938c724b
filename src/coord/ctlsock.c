#include "coord/ctlsock.h"

#include "coord/err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Fill addr with the /proc/self/fd alias of DIR/ctl.sock; returns an
 * O_PATH descriptor that must stay open until bind/connect is done. */
static int alias_addr(int dirfd, struct sockaddr_un *addr)
{
	/* A private O_PATH descriptor: the alias must name a directory, and
	 * the caller's descriptor may be of any kind. */
	int pfd = openat(dirfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (pfd < 0)
		return ckpt_fail_errno("cannot open the run directory");
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	snprintf(addr->sun_path, sizeof(addr->sun_path), "/proc/self/fd/%d/%s", pfd, CKPT_CTL_NAME);
	return pfd;
}

int ctl_listen(int dirfd)
{
	struct sockaddr_un addr;
	int pfd = alias_addr(dirfd, &addr);
	if (pfd < 0)
		return -1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ckpt_fail_errno("socket");
		goto fail;
	}
	/* The lock is ours, so any ctl.sock here is a dead supervisor's. */
	if (unlinkat(dirfd, CKPT_CTL_NAME, 0) < 0 && errno != ENOENT) {
		ckpt_fail_errno("cannot remove the stale %s", CKPT_CTL_NAME);
		goto fail;
	}
	/* The directory is 0700 already; 0600 on the socket too, without a
	 * window: bind creates it with the umask applied. */
	mode_t old = umask(077);
	int r = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
	umask(old);
	if (r < 0) {
		ckpt_fail_errno("cannot create the control socket %s", CKPT_CTL_NAME);
		goto fail;
	}
	if (listen(fd, 64) < 0) {
		ckpt_fail_errno("listen on %s", CKPT_CTL_NAME);
		goto fail;
	}
	close(pfd);
	return fd;
fail:
	if (fd >= 0)
		close(fd);
	close(pfd);
	return -1;
}

int ctl_connect(int dirfd)
{
	struct sockaddr_un addr;
	int pfd = alias_addr(dirfd, &addr);
	if (pfd < 0)
		return -1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int e = errno;
		close(pfd);
		errno = e;
		return ckpt_fail_errno("socket");
	}
	int r;
	do
		r = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
	while (r < 0 && errno == EINTR);
	int e = errno;
	close(pfd);
	if (r < 0) {
		close(fd);
		errno = e;
		return ckpt_fail_errno("cannot connect to %s", CKPT_CTL_NAME);
	}
	return fd;
}

int ctl_peer(int fd, pid_t *pid, uid_t *uid)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return ckpt_fail_errno("SO_PEERCRED");
	*pid = cred.pid;
	*uid = cred.uid;
	return 0;
}

int ctl_accept(int listen_fd, pid_t *pid, uid_t *uid)
{
	int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return ckpt_fail_errno("accept");
	if (ctl_peer(fd, pid, uid) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}
