/* The run directory's control socket, ctl.sock. Socket addresses hold at
 * most 108 bytes and run directories on deep scratch paths are longer, so
 * both ends reach the socket through the short alias
 * /proc/self/fd/<O_PATH descriptor of the run directory>/ctl.sock. */
#ifndef CKPT_COORD_CTLSOCK_H
#define CKPT_COORD_CTLSOCK_H

#include <sys/types.h>

#define CKPT_CTL_NAME "ctl.sock"

/* Create and listen on DIR/ctl.sock (mode 0600; a stale socket left by a
 * dead supervisor is replaced: the caller holds the run directory's
 * lock). dirfd may be any descriptor of the directory. Returns a
 * non-blocking, close-on-exec listening socket or -1. */
int ctl_listen(int dirfd);
/* Connect to DIR/ctl.sock (blocking). Returns the socket or -1; errno is
 * kept (ENOENT, ECONNREFUSED: no supervisor running). */
int ctl_connect(int dirfd);
/* Accept one connection (non-blocking, close-on-exec) and read its peer's
 * credentials. Returns the socket, or -1 with errno (EAGAIN: none). */
int ctl_accept(int listen_fd, pid_t *pid, uid_t *uid);
/* Credentials of the process at the other end of a connected socket. */
int ctl_peer(int fd, pid_t *pid, uid_t *uid);

#endif
