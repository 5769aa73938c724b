/* Bytes of a TCP connection on their way between two sockets of this host.
 *
 * A loopback send returns once the segment is handed to the network
 * stack; it reaches the receiving socket's queue a moment later (at once
 * as a rule, but the softirq that delivers it may wait for a busy CPU,
 * Nagle's algorithm holds a small segment until the last one is
 * acknowledged, and a full receive window holds everything). The capture
 * saves what is queued at the receiver (MSG_PEEK) and nothing the sender
 * still holds, so a checkpoint taken in that moment would lose the bytes.
 *
 * The sender cannot see the receiver's queue, but sock_diag (unprivileged,
 * any socket of the network namespace) gives the receiving socket's
 * tcp_info: the bytes it has received in order (tcpi_bytes_received,
 * counting a FIN as one). The sender's own tcp_info gives the bytes it
 * has sent once (tcpi_bytes_sent less tcpi_bytes_retrans) and those not
 * sent yet (tcpi_notsent_bytes, a queued FIN included). Nothing is on its
 * way when nothing waits to be sent and the receiver has had all that
 * was sent. */
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>

#include "agent/agent.h"
#include "common/rawsys.h"

/* Both counters need Linux 4.19; on older kernels nothing is taken to be
 * on its way. */
#define TCP_INFO_NEEDED (__builtin_offsetof(struct tcp_info, tcpi_bytes_retrans) + 8)

/* The tcp_info of the socket at the other end of fd's connection, found by
 * its address and port pair; 0 if found (and still a full socket: one in
 * TIME_WAIT has nothing left to receive), -1 if not. */
static int peer_tcp_info(int nl, int fd, struct tcp_info *out)
{
	struct sockaddr_in6 me, peer;
	int len = sizeof me;
	mem_zero(&me, sizeof me);
	mem_zero(&peer, sizeof peer);
	if (raw_syscall3(SYS_getsockname, fd, &me, &len) != 0)
		return -1;
	len = sizeof peer;
	if (raw_syscall3(SYS_getpeername, fd, &peer, &len) != 0 ||
	    peer.sin6_family != me.sin6_family)
		return -1;
	struct {
		struct nlmsghdr h;
		struct inet_diag_req_v2 r;
	} req;
	mem_zero(&req, sizeof req);
	req.r.sdiag_family = (uint8_t)me.sin6_family;
	req.r.sdiag_protocol = IPPROTO_TCP;
	req.r.idiag_ext = 1u << (INET_DIAG_INFO - 1);
	req.r.idiag_states = ~0u;
	/* the peer's socket: its source is our destination */
	if (me.sin6_family == AF_INET) {
		const struct sockaddr_in *m4 = (const void *)&me, *p4 = (const void *)&peer;
		req.r.id.idiag_sport = p4->sin_port;
		req.r.id.idiag_dport = m4->sin_port;
		req.r.id.idiag_src[0] = p4->sin_addr.s_addr;
		req.r.id.idiag_dst[0] = m4->sin_addr.s_addr;
	} else {
		req.r.id.idiag_sport = peer.sin6_port;
		req.r.id.idiag_dport = me.sin6_port;
		mem_copy(req.r.id.idiag_src, &peer.sin6_addr, 16);
		mem_copy(req.r.id.idiag_dst, &me.sin6_addr, 16);
	}
	req.r.id.idiag_cookie[0] = req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	const struct nlmsghdr *h =
	    sock_diag_ask(nl, &req, sizeof req, sizeof(struct inet_diag_msg));
	if (!h)
		return -1;
	const struct inet_diag_msg *m = NLMSG_DATA(h);
	const struct rtattr *at = (const struct rtattr *)(m + 1);
	int left = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
	for (; RTA_OK(at, left); at = RTA_NEXT(at, left)) {
		if (at->rta_type != INET_DIAG_INFO || RTA_PAYLOAD(at) < TCP_INFO_NEEDED)
			continue;
		mem_zero(out, sizeof *out);
		size_t take = RTA_PAYLOAD(at) < sizeof *out ? RTA_PAYLOAD(at) : sizeof *out;
		mem_copy(out, RTA_DATA(at), take);
		return 0;
	}
	return -1;
}

/* the states after this end queued its FIN (tcpi_state values, the
 * kernel's numbering) */
static int fin_sent(uint8_t state)
{
	enum { FIN_WAIT1 = 4, FIN_WAIT2 = 5, TIME_WAIT = 6, LAST_ACK = 9, CLOSING = 11 };
	return state == FIN_WAIT1 || state == FIN_WAIT2 || state == CLOSING || state == TIME_WAIT ||
	       state == LAST_ACK;
}

/* Sends at once what Nagle's algorithm holds back until the peer
 * acknowledges the last segment, which a stopped receiver does only when
 * its delayed-ACK timer fires (40 ms or more): TCP_NODELAY turned on
 * pushes it; it is turned off again, so the program finds its socket as
 * it left it. */
static void push_held(int fd)
{
	int nodelay = 1, len = sizeof nodelay;
	if (raw_syscall5(SYS_getsockopt, fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len) != 0 ||
	    nodelay)
		return;
	nodelay = 1;
	raw_syscall5(SYS_setsockopt, fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof nodelay);
	nodelay = 0;
	raw_syscall5(SYS_setsockopt, fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof nodelay);
}

static int my_tcp_info(int fd, struct tcp_info *ti)
{
	int len = sizeof *ti;
	mem_zero(ti, sizeof *ti);
	return raw_syscall5(SYS_getsockopt, fd, IPPROTO_TCP, TCP_INFO, ti, &len) == 0 &&
		       len >= (int)TCP_INFO_NEEDED
		   ? 0
		   : -1;
}

uint64_t tcp_undelivered(int *nl, int fd, int *stuck)
{
	*stuck = 0;
	int unacked = 0;
	if (raw_syscall3(SYS_ioctl, fd, SIOCOUTQ, &unacked) != 0 || unacked <= 0)
		return 0; /* all acknowledged: all received */
	struct tcp_info mine, peer;
	if (my_tcp_info(fd, &mine) != 0)
		return 0;
	if (*nl < 0 && (*nl = sock_diag_open()) < 0)
		return 0;
	if (peer_tcp_info(*nl, fd, &peer) != 0)
		return 0; /* on another host, or gone */
	if (mine.tcpi_notsent_bytes > 0) {
		push_held(fd);
		if (my_tcp_info(fd, &mine) != 0)
			return 0;
	}
	uint64_t sent =
	    mine.tcpi_bytes_sent - mine.tcpi_bytes_retrans + (uint64_t)fin_sent(mine.tcpi_state);
	uint64_t on_way = peer.tcpi_bytes_received < sent ? sent - peer.tcpi_bytes_received : 0;
	/* Bytes not sent although the peer has all that was: its receive
	 * window is closed (or the program corked the socket, which holds
	 * them 200 ms at most); a stopped receiver does not open it. */
	int corked = 0, len = sizeof corked;
	raw_syscall5(SYS_getsockopt, fd, IPPROTO_TCP, TCP_CORK, &corked, &len);
	*stuck = mine.tcpi_notsent_bytes > 0 && on_way == 0 && !corked;
	return on_way + mine.tcpi_notsent_bytes;
}

/* At the capture: bytes that did not get there after all are lost to a
 * restart (if the other end is a socket of the program), so the
 * checkpoint's warnings name them. */
void warn_undelivered(int fd)
{
	int nl = -1, stuck;
	uint64_t n = tcp_undelivered(&nl, fd, &stuck);
	if (nl >= 0)
		raw_syscall1(SYS_close, nl);
	if (!n)
		return;
	char num[24] = "", bytes[24] = "";
	str_append_u64(num, sizeof num, (uint64_t)fd);
	str_append_u64(bytes, sizeof bytes, n);
	add_warning("fd ", num, ": ");
	str_append(agent.warnings, sizeof agent.warnings, bytes);
	str_append(agent.warnings, sizeof agent.warnings,
		   stuck ? " bytes sent on a TCP connection to a socket of this host wait for room "
			   "in its receive buffer: a restart lacks them if that socket is the "
			   "program's"
			 : " bytes sent on a TCP connection to a socket of this host have not "
			   "reached it: a restart lacks them if that socket is the program's");
}
