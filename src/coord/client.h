/* The client side of the control socket, for `ckpt checkpoint` and
 * `ckpt status`. */
#ifndef CKPT_COORD_CLIENT_H
#define CKPT_COORD_CLIENT_H

#include "coord/proto.h"

/* Connect to the supervisor of the run directory dirfd and say HELLO with
 * the token read from RUNDIR/token. Returns the socket, or -1 with a
 * message; errno is ENOENT or ECONNREFUSED when no supervisor runs. */
int client_connect(int dirfd);
/* Send one request line (a bare verb) and wait for the one-line reply,
 * at most timeout_ms (-1: no limit). Returns 0 with the reply parsed
 * (OK or ERR), or -1 with a message (timeout, connection closed...). */
int client_request(int fd, const char *verb, struct ckpt_msg *reply, int timeout_ms);
/* The same, calling tick(arg) every tick_ms while it waits. */
int client_request_ticking(int fd, const char *verb, struct ckpt_msg *reply, int timeout_ms,
			   void (*tick)(void *), void *arg, int tick_ms);

#endif
