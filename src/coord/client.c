#include "coord/client.h"

#include "coord/ctlsock.h"
#include "coord/err.h"
#include "coord/fsutil.h"
#include "coord/log.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int client_connect(int dirfd)
{
	char token[128];
	ssize_t n = read_small(dirfd, "token", token, sizeof(token));
	if (n < 0)
		return ckpt_fail_errno("cannot read the run directory's token");
	while (n > 0 && (token[n - 1] == '\n' || token[n - 1] == ' '))
		token[--n] = '\0';
	int fd = ctl_connect(dirfd);
	if (fd < 0)
		return -1;
	pid_t pid;
	uid_t uid;
	/* Only our own supervisor gets the token (it cannot be anyone else's
	 * in a 0700 directory, but a check is cheap). */
	if (ctl_peer(fd, &pid, &uid) < 0 || uid != geteuid()) {
		close(fd);
		return ckpt_fail("the control socket belongs to another user");
	}
	struct ckpt_line l;
	ckpt_line_begin(&l, "HELLO");
	ckpt_line_u64(&l, "proto", CKPT_PROTO_VERSION);
	ckpt_line_str(&l, "role", "client");
	ckpt_line_str(&l, "token", token);
	ckpt_line_i64(&l, "pid", getpid());
	if (ckpt_line_end(&l) < 0 || write_all(fd, l.buf, l.len) < 0) {
		ckpt_fail_errno("cannot talk to the supervisor");
		close(fd);
		return -1;
	}
	return fd;
}

int client_request(int fd, const char *verb, struct ckpt_msg *reply, int timeout_ms)
{
	return client_request_ticking(fd, verb, reply, timeout_ms, NULL, NULL, 0);
}

int client_request_ticking(int fd, const char *verb, struct ckpt_msg *reply, int timeout_ms,
			   void (*tick)(void *), void *arg, int tick_ms)
{
	char req[64];
	size_t n = (size_t)snprintf(req, sizeof(req), "%s\n", verb);
	if (write_all(fd, req, n) < 0)
		return ckpt_fail_errno("cannot talk to the supervisor");
	static struct ckpt_linebuf lb;
	ckpt_linebuf_init(&lb);
	int64_t deadline = timeout_ms >= 0 ? ckpt_mono_ms() + timeout_ms : -1;
	for (;;) {
		char *line;
		size_t len;
		int r = ckpt_linebuf_next(&lb, &line, &len);
		if (r < 0)
			return ckpt_fail("the supervisor sent a line longer than %d bytes",
					 CKPT_LINE_MAX);
		if (r == 1) {
			char err[160];
			if (ckpt_msg_parse(reply, line, len, err, sizeof(err)) < 0)
				return ckpt_fail("bad reply from the supervisor: %s", err);
			return 0;
		}
		int wait = -1;
		if (deadline >= 0) {
			int64_t left = deadline - ckpt_mono_ms();
			if (left <= 0)
				return ckpt_fail("the supervisor did not answer within %d ms",
						 timeout_ms);
			wait = (int)left;
		}
		if (tick && (wait < 0 || wait > tick_ms))
			wait = tick_ms;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int pr = poll(&p, 1, wait);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr < 0)
			return ckpt_fail_errno("poll");
		if (pr == 0) {
			if (tick)
				tick(arg);
			continue; /* the deadline check above reports it */
		}
		size_t room;
		char *dst = ckpt_linebuf_space(&lb, &room);
		ssize_t got = read(fd, dst, room);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return ckpt_fail_errno("cannot read from the supervisor");
		if (got == 0)
			return ckpt_fail("the supervisor closed the connection without an answer "
					 "(it exited, or the program ended)");
		ckpt_linebuf_added(&lb, (size_t)got);
	}
}
