/* File descriptors: what each one is and how restart recreates it. Bytes
 * queued in pipes and sockets are copied without being removed (tee(2),
 * MSG_PEEK), so the program sees no difference and the other processes
 * holding them can be captured at the same time. Anything
 * that cannot be recreated is recorded as unsupported and named in the
 * checkpoint's warnings: restart puts /dev/null there. */
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <linux/netlink.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>

#include "agent/agent.h"
#include "common/rawsys.h"
#include "image/writer.h"

#define MAX_FDS 65536
#define FD_DATA_MAX (256u << 20)
#define DELETED_FILE_MAX (128u << 20)

struct fd_list {
	struct ckpt_fd *fds;
	uint32_t n;
	char *data;
	uint64_t data_len;
	uint64_t output_saved;	   /* bytes of small output files saved (aux 2) */
	uint64_t timer_wait_until; /* see timerfd_settled; 0: not begun */
	struct scratch *scratch;
	char **maps; /* /proc/self/maps, read when first needed */
	int maps_tried;
	struct strtab *st;
	struct ckpt_shared_file *shared; /* files mapped shared and writable */
	uint32_t nshared;
};

static int stdio_index(const struct stat *st)
{
	for (int i = 0; i < 3; i++)
		if (agent.stdio_ino[i] && st->st_ino == agent.stdio_ino[i] &&
		    st->st_dev == agent.stdio_dev[i])
			return i;
	return -1;
}

/* The bytes queued in a pipe, copied with tee(2), which leaves them in
 * the pipe: other processes holding it are captured at the same time. */
static void peek_pipe_data(struct fd_list *l, struct ckpt_fd *f)
{
	int queued = 0;
	if (raw_syscall3(SYS_ioctl, f->fd, FIONREAD, &queued) != 0 || queued <= 0)
		return;
	if (l->data_len + (uint64_t)queued > FD_DATA_MAX) {
		add_warning("pipe data too large to save", 0, 0);
		return;
	}
	int p[2];
	if (raw_syscall2(SYS_pipe2, p, O_CLOEXEC | O_NONBLOCK) != 0)
		return;
	if (queued > 65536)
		raw_syscall3(SYS_fcntl, p[1], F_SETPIPE_SZ, queued);
	long n = raw_syscall4(SYS_tee, f->fd, p[1], queued, 2 /* SPLICE_F_NONBLOCK */);
	long got = n > 0 ? raw_syscall3(SYS_read, p[0], l->data + l->data_len, n) : 0;
	raw_syscall1(SYS_close, p[0]);
	raw_syscall1(SYS_close, p[1]);
	if (got != queued) {
		char num[24] = "";
		str_append_u64(num, sizeof num, (uint64_t)f->fd);
		add_warning("fd ", num, ": not all bytes queued in the pipe could be saved");
	}
	if (got <= 0)
		return;
	f->data_off = l->data_len;
	f->data_len = (uint64_t)got;
	l->data_len += (uint64_t)got;
}

/* The inode of the other end of a Unix socket, from sock_diag (works
 * unprivileged for one's own sockets); 0 if unknown. */
static uint64_t unix_peer(uint64_t ino)
{
	int nl = sock_diag_open();
	if (nl < 0)
		return 0;
	struct {
		struct nlmsghdr h;
		struct unix_diag_req r;
	} req;
	mem_zero(&req, sizeof req);
	req.r.sdiag_family = AF_UNIX;
	req.r.udiag_states = ~0u;
	req.r.udiag_ino = (uint32_t)ino;
	req.r.udiag_show = UDIAG_SHOW_PEER;
	req.r.udiag_cookie[0] = req.r.udiag_cookie[1] = ~0u;
	uint64_t peer = 0;
	const struct nlmsghdr *h =
	    sock_diag_ask(nl, &req, sizeof req, sizeof(struct unix_diag_msg));
	if (h) {
		const struct unix_diag_msg *m = NLMSG_DATA(h);
		const struct rtattr *at = (const struct rtattr *)(m + 1);
		int len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
		for (; RTA_OK(at, len); at = RTA_NEXT(at, len))
			if (at->rta_type == UNIX_DIAG_PEER)
				peer = *(const uint32_t *)RTA_DATA(at);
	}
	raw_syscall1(SYS_close, nl);
	return peer;
}

static int same_file(int a, int b)
{
	struct stat sa, sb;
	return raw_syscall2(SYS_fstat, a, &sa) == 0 && raw_syscall2(SYS_fstat, b, &sb) == 0 &&
	       sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* A socket's queue is read without taking any of it: MSG_PEEK from a
 * moving peek offset, set to 0 first (0, or -1 if it cannot be) and off
 * (-1) when done. */
static int peek_offset(int fd, int off)
{
	return raw_syscall5(SYS_setsockopt, fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off) == 0
		   ? 0
		   : -1;
}

/* The next message or bytes from the peek offset on, and its flags. */
static long peek_next(int fd, void *buf, uint64_t cap, int *flags)
{
	struct iovec v = {buf, cap};
	struct msghdr m;
	mem_zero(&m, sizeof m);
	m.msg_iov = &v;
	m.msg_iovlen = 1;
	long n = raw_syscall3(SYS_recvmsg, fd, &m, MSG_DONTWAIT | MSG_PEEK);
	*flags = m.msg_flags;
	return n;
}

/* Messages queued at a socket, each behind a 4-byte length, so datagram
 * boundaries survive. */
static void peek_socket_data(struct fd_list *l, struct ckpt_fd *f)
{
	f->data_off = l->data_len;
	if (peek_offset(f->fd, 0) != 0)
		return;
	for (;;) {
		uint64_t room = FD_DATA_MAX - l->data_len;
		if (room < 8)
			break;
		char *dst = l->data + l->data_len;
		int flags;
		long n = peek_next(f->fd, dst + 4, room - 4, &flags);
		if (n <= 0)
			break;
		uint32_t len = (uint32_t)n;
		mem_copy(dst, &len, 4);
		l->data_len += 4 + (uint64_t)n;
	}
	peek_offset(f->fd, -1);
	f->data_len = l->data_len - f->data_off;
}

/* The other end of this connection has hung up (it may have left bytes to
 * read); -1 if poll fails. */
static int hung_up(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};
	if (raw_syscall3(SYS_poll, &p, 1, 0) < 0)
		return -1;
	return (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

/* ---- Hand-overs between processes, caught half-way ----
 * Two moments of handing a descriptor or a request to another process of
 * the computation cannot be restored: a connection still queued on a
 * listener after its client sent bytes (they sit in the unaccepted
 * connection, where nothing can read them without accepting it), and
 * descriptors sent with SCM_RIGHTS that the receiver has not read yet
 * (restart would queue the bytes without them). PyTorch's DataLoader
 * passes every batch's shared memory this way. Both end as soon as the
 * other side runs, so SUSPENDED reports them and the coordinator lets the
 * program run a moment and stops it again (docs/design.md). */

/* Scratch of the checks below and of the capture, not saved in images. */
static char peek_buf[16384];
static int listed_fds[MAX_FDS], nlisted = -1;
static uint32_t listed_epoch;

void fds_own_scratch(void)
{
	stage_own_scratch(peek_buf, sizeof peek_buf);
	stage_own_scratch(listed_fds, sizeof listed_fds);
}

/* A Unix stream connection whose other end is a socket no process holds
 * yet (its inode is 0: it waits on a listener), with bytes sent. */
static int queued_with_bytes(int fd, uint64_t ino)
{
	int outq = 0;
	if (raw_syscall3(SYS_ioctl, fd, SIOCOUTQ, &outq) != 0 || outq <= 0)
		return 0;
	struct sockaddr_un peer;
	int alen = sizeof peer;
	if (raw_syscall3(SYS_getpeername, fd, &peer, &alen) != 0 ||
	    alen <= (int)sizeof(sa_family_t))
		return 0;
	return hung_up(fd) == 0 && unix_peer(ino) == 0;
}

/* Descriptors queued at a Unix socket with the bytes sent along: a peek
 * without room for them says so with MSG_CTRUNC, and leaves them queued.
 * Sockets that also receive credentials, security labels or pidfds would
 * say so for those: left alone (their descriptors, if any, are lost at
 * restart). */
static int descriptors_queued(int fd)
{
	int inq = 0;
	if (raw_syscall3(SYS_ioctl, fd, FIONREAD, &inq) != 0 || inq <= 0)
		return 0;
	static const int passes[] = {SO_PASSCRED, 34 /* SO_PASSSEC */, 76 /* SO_PASSPIDFD */};
	for (unsigned i = 0; i < sizeof passes / sizeof passes[0]; i++) {
		int flag = 0, len = sizeof flag;
		if (raw_syscall5(SYS_getsockopt, fd, SOL_SOCKET, passes[i], &flag, &len) == 0 &&
		    flag)
			return 0;
	}
	int found = 0;
	if (peek_offset(fd, 0) != 0)
		return 0;
	for (int i = 0; i < 256 && !found; i++) {
		int flags;
		long n = peek_next(fd, peek_buf, sizeof peek_buf, &flags);
		found = n >= 0 && (flags & MSG_CTRUNC);
		if (n <= 0)
			break;
	}
	peek_offset(fd, -1);
	return found;
}

/* Bytes of events waiting at an inotify descriptor (0 if it cannot tell). */
static int inotify_unread_bytes(int fd)
{
	int unread = 0;
	return raw_syscall3(SYS_ioctl, fd, FIONREAD, &unread) == 0 && unread > 0 ? unread : 0;
}

/* An inotify descriptor with events the program has not read: they
 * cannot be saved (reading them is taking them from the program), so the
 * program runs on until it has read them, like descriptors in flight. */
static int inotify_unread(int fd, const struct stat *sb)
{
	if ((sb->st_mode & S_IFMT) != 0)
		return 0; /* not an anonymous inode */
	char path[64] = "/proc/self/fd/", link[32];
	str_append_u64(path, sizeof path, (uint64_t)fd);
	return raw_readlink(path, link, sizeof link) >= 0 && str_eq(link, "anon_inode:inotify") &&
	       inotify_unread_bytes(fd) > 0;
}

/* Where descriptors (or inotify events) were found queued by the last
 * fds_unsettled. */
#define MAX_RECEIVERS 16
static struct {
	int fd, inotify;
} receivers[MAX_RECEIVERS];
static int nreceivers;

static void add_receiver(int fd, int inotify)
{
	if (nreceivers < MAX_RECEIVERS) {
		receivers[nreceivers].fd = fd;
		receivers[nreceivers++].inotify = inotify;
	}
}

int fds_still_in_flight(void)
{
	for (int i = 0; i < nreceivers; i++)
		if (receivers[i].inotify ? inotify_unread_bytes(receivers[i].fd) > 0
					 : descriptors_queued(receivers[i].fd))
			return 1;
	return 0;
}

/* The descriptors as fds_unsettled listed them, while the threads are
 * stopped (none can open or close one until they run again): the capture
 * that follows uses the list instead of reading /proc/self/fd again. */
static int list_fds(int **out)
{
	*out = listed_fds;
	if (nlisted >= 0 && listed_epoch == atomic_load(&agent.resume_epoch))
		return nlisted;
	nlisted = list_numeric_dir("/proc/self/fd", listed_fds, MAX_FDS);
	listed_epoch = atomic_load(&agent.resume_epoch);
	return nlisted;
}

static void name_first(struct unsettled *u, int fd, const char *why)
{
	if (u->what[0])
		return;
	str_copy(u->what, "fd ", sizeof u->what);
	str_append_u64(u->what, sizeof u->what, (uint64_t)fd);
	str_append(u->what, sizeof u->what, why);
}

void fds_unsettled(struct unsettled *u)
{
	int *fds, nl = -1;
	nlisted = -1;
	nreceivers = 0;
	int n = list_fds(&fds);
	u->unaccepted = u->in_flight = u->in_transit = u->stuck = 0;
	u->what[0] = 0;
	for (int i = 0; i < n; i++) {
		int fd = fds[i], domain = 0, type = 0, listening = 0, len = sizeof domain;
		struct stat sb;
		if (fd == agent.ctl_fd || fd == track_fd() || raw_syscall2(SYS_fstat, fd, &sb) != 0)
			continue;
		if (inotify_unread(fd, &sb)) {
			++u->in_flight;
			add_receiver(fd, 1);
			name_first(u, fd, ": inotify events wait to be read");
			continue;
		}
		if (!S_ISSOCK(sb.st_mode) ||
		    raw_syscall5(SYS_getsockopt, fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0)
			continue;
		len = sizeof listening;
		if (raw_syscall5(SYS_getsockopt, fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) !=
			0 ||
		    listening)
			continue;
		if (domain == AF_INET || domain == AF_INET6) {
			len = sizeof type;
			int stuck;
			if (raw_syscall5(SYS_getsockopt, fd, SOL_SOCKET, SO_TYPE, &type, &len) !=
				0 ||
			    type != SOCK_STREAM || !tcp_undelivered(&nl, fd, &stuck))
				continue;
			if (stuck) {
				++u->stuck;
				name_first(u, fd,
					   ": bytes sent on a TCP connection to a socket of this "
					   "host wait for room in its receive buffer");
			} else {
				++u->in_transit;
				name_first(u, fd,
					   ": bytes sent on a TCP connection to a socket of this "
					   "host have not reached it yet");
			}
		} else if (domain != AF_UNIX) {
			continue;
		} else if (queued_with_bytes(fd, sb.st_ino)) {
			++u->unaccepted;
			name_first(u, fd, ": a connection not accepted yet holds bytes sent on it");
		} else if (descriptors_queued(fd)) {
			++u->in_flight;
			add_receiver(fd, 0);
			name_first(u, fd, ": descriptors sent to it are not received yet");
		}
	}
	if (nl >= 0)
		raw_syscall1(SYS_close, nl);
}

/* The descriptor is of this kind, described by a record in FD_DATA. */
static int put_record(struct fd_list *l, struct ckpt_fd *f, uint32_t kind, const void *rec,
		      size_t len)
{
	if (l->data_len + len > FD_DATA_MAX)
		return -1;
	f->kind = kind;
	f->data_off = l->data_len;
	f->data_len = len;
	mem_copy(l->data + l->data_len, rec, len);
	l->data_len += len;
	return 0;
}

/* A connection whose other end no process holds may be one still waiting
 * to be accepted on a listener (a client that connected to a server of
 * the computation, which has not called accept yet). It can be queued on
 * the listener again at restart if its peer has not closed and it sent
 * nothing the peer has not read (such bytes sit in the queued connection,
 * out of reach): then the program loses nothing. */
static int reconnectable(int fd, int domain)
{
	if (hung_up(fd) != 0)
		return 0;
	if (domain == AF_UNIX) {
		int outq = -1;
		return raw_syscall3(SYS_ioctl, fd, SIOCOUTQ, &outq) == 0 && outq == 0;
	}
	struct tcp_info ti;
	int len = sizeof ti;
	mem_zero(&ti, sizeof ti);
	return raw_syscall5(SYS_getsockopt, fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
	       len >= (int)(__builtin_offsetof(struct tcp_info, tcpi_bytes_sent) + 8) &&
	       ti.tcpi_bytes_sent == 0;
}

/* A socket whose other end is not in this process: a listener is bound
 * and listens again at restart; a connection cannot come back (its peer
 * has its own state), so the program finds an unconnected socket and gets
 * an error, never a hang. */
static int capture_other_socket(struct fd_list *l, struct ckpt_fd *f, int domain, int type)
{
	struct ckpt_socket so;
	mem_zero(&so, sizeof so);
	so.domain = domain;
	so.type = type;
	int len = sizeof so.protocol;
	raw_syscall5(SYS_getsockopt, f->fd, SOL_SOCKET, SO_PROTOCOL, &so.protocol, &len);
	len = sizeof so.listening;
	raw_syscall5(SYS_getsockopt, f->fd, SOL_SOCKET, SO_ACCEPTCONN, &so.listening, &len);
	int alen = sizeof so.addr;
	if (raw_syscall3(SYS_getsockname, f->fd, so.addr, &alen) == 0 && alen > 0 &&
	    alen <= (int)sizeof so.addr)
		so.addrlen = (uint32_t)alen;
	alen = sizeof so.peer;
	if (!so.listening && raw_syscall3(SYS_getpeername, f->fd, so.peer, &alen) == 0 &&
	    alen > 0 && alen <= (int)sizeof so.peer)
		so.peerlen = (uint32_t)alen;
	if (so.peerlen && type == SOCK_STREAM &&
	    (domain == AF_UNIX || domain == AF_INET || domain == AF_INET6) &&
	    reconnectable(f->fd, domain))
		so.flags |= CKPT_SOCKET_RECONNECTABLE;
	if (so.peerlen && type == SOCK_STREAM && domain == AF_UNIX && hung_up(f->fd) > 0)
		so.flags |= CKPT_SOCKET_PEER_CLOSED;
	if (put_record(l, f, CKPT_FD_SOCKET, &so, sizeof so) != 0)
		return -1;
	/* A connection whose other end is in the computation too (a local
	 * server, a thread of this process) is connected again at restart,
	 * with the bytes that were waiting to be read: peeked, left queued. */
	if (so.peerlen && type == SOCK_STREAM) {
		struct ckpt_fd tmp = *f;
		peek_socket_data(l, &tmp);
		/* the peeked stream follows the record, without message framing */
		uint64_t at = tmp.data_off, end = tmp.data_off + tmp.data_len, out = at;
		while (at + 4 <= end) {
			uint32_t n;
			mem_copy(&n, l->data + at, 4);
			for (uint32_t i = 0; i < n; i++)
				l->data[out + i] = l->data[at + 4 + i];
			out += n;
			at += 4 + (uint64_t)n;
		}
		l->data_len = out;
		f->data_len = out - f->data_off;
	}
	if (so.peerlen && type == SOCK_STREAM && (domain == AF_INET || domain == AF_INET6))
		warn_undelivered(f->fd);
	return 0;
}

static int capture_socket(struct fd_list *l, struct ckpt_fd *f, const struct stat *sb)
{
	int domain = 0, type = 0;
	int len = sizeof domain;
	raw_syscall5(SYS_getsockopt, f->fd, SOL_SOCKET, SO_DOMAIN, &domain, &len);
	len = sizeof type;
	raw_syscall5(SYS_getsockopt, f->fd, SOL_SOCKET, SO_TYPE, &type, &len);
	uint64_t peer = domain == AF_UNIX ? unix_peer(sb->st_ino) : 0;
	if (!peer)
		return capture_other_socket(l, f, domain, type);
	/* A connected Unix socket: its other end is here, in another process
	 * of the computation (restart connects the two again), or outside it
	 * (restart finds no partner and the program sees the peer gone). */
	f->kind = CKPT_FD_SOCKPAIR;
	f->pipe_id = sb->st_ino < peer ? sb->st_ino : peer;
	f->aux = ((uint32_t)type << 1) | (sb->st_ino < peer ? 0u : 1u);
	/* read without removing: other processes holding this socket are
	 * captured at the same time */
	peek_socket_data(l, f);
	return 0;
}

/* All size bytes of a file from its start (pread: the offset stays). A
 * descriptor opened write-only (Python's "w", "a") cannot be read: the
 * file is then opened again for reading through /proc/self/fd. */
static int read_whole(int fd, char *dst, uint64_t size)
{
	uint64_t got = 0;
	int rfd = fd;
	while (got < size) {
		long n = raw_syscall4(SYS_pread64, rfd, dst + got, size - got, got);
		if (n == -4)
			continue;
		if (n == -9 && rfd == fd) { /* EBADF: not open for reading */
			char self[64] = "/proc/self/fd/";
			str_append_u64(self, sizeof self, (uint64_t)fd);
			long r = raw_syscall4(SYS_openat, AT_FDCWD, self, O_RDONLY | O_CLOEXEC, 0);
			if (r < 0)
				break;
			rfd = (int)r;
			continue;
		}
		if (n <= 0)
			break;
		got += (uint64_t)n;
	}
	if (rfd != fd)
		raw_syscall1(SYS_close, rfd);
	return got == size ? 0 : -1;
}

/* An earlier descriptor of this capture on the same file whose content is
 * saved already (as kind, with aux): the copy is shared. */
static int share_saved(struct fd_list *l, struct ckpt_fd *f, uint32_t kind, uint32_t aux)
{
	for (uint32_t i = 0; i + 1 < l->n; i++) {
		const struct ckpt_fd *o = &l->fds[i];
		if (o->kind == kind && o->aux == aux && o->ino == f->ino && o->dev == f->dev) {
			f->kind = kind;
			f->aux = aux;
			f->data_off = o->data_off;
			f->data_len = o->data_len;
			return 1;
		}
	}
	return 0;
}

/* Whether the process maps the whole deleted file shared (aux 1): a
 * shared memory object kept open, as PyTorch's shared tensors and
 * multiprocessing's heap arenas keep theirs to pass them on. The
 * descriptor must then come back on the very object the mappings do, or
 * what is written through one is not seen through the other (a DataLoader
 * worker filling a batch through its mapping while the main process maps
 * the descriptor it was sent); and the content is saved with them. */
static const char *maps_of(struct fd_list *l)
{
	if (!*l->maps && !l->maps_tried++ && memory_read_maps(l->scratch, l->maps) <= 0)
		*l->maps = 0; /* not again: each try takes scratch memory */
	return *l->maps;
}

static int mapped_whole(struct fd_list *l, const struct ckpt_fd *f)
{
	const char *maps = maps_of(l);
	return maps && memory_maps_cover_file(maps, f->dev, f->ino, f->size);
}

/* A file the program still has open after deleting it (a temporary file,
 * such as Python's tempfile.TemporaryFile): nobody else can reach it, so
 * its content is saved and restart recreates it, unlinked again. */
static void save_deleted_file(struct fd_list *l, struct ckpt_fd *f, const struct stat *sb,
			      const char *link)
{
	if (mapped_whole(l, f)) {
		f->kind = CKPT_FD_DELETED;
		f->aux = 1;
		return;
	}
	if (share_saved(l, f, CKPT_FD_DELETED, 0))
		return;
	uint64_t size = (uint64_t)sb->st_size;
	if (size > DELETED_FILE_MAX || l->data_len + size > FD_DATA_MAX) {
		add_warning("fd open on deleted file ", link,
			    " is too large to save; restart will refuse it");
		return;
	}
	if (read_whole(f->fd, l->data + l->data_len, size) != 0) {
		add_warning("cannot read deleted file ", link, "; restart will refuse it");
		return;
	}
	f->kind = CKPT_FD_DELETED;
	f->data_off = l->data_len;
	f->data_len = size;
	l->data_len += size;
}

/* A file written at positions before its end (a database, an HDF5 file:
 * pwrite, or a descriptor not at the end): bytes the program changes after
 * the checkpoint are not new bytes a restart can cut off, so its content
 * is saved with the image and written back at restart (aux 1). A writer
 * appending at the end (its offset at the end, or O_APPEND) is only cut
 * back to its size. Read while the program is stopped: at most
 * WRITTEN_FILE_MAX, saved once per file. */
#define WRITTEN_FILE_MAX (64u << 20)

static int written_in_place(const struct ckpt_fd *f)
{
	return (f->open_flags & O_ACCMODE) != O_RDONLY && !(f->open_flags & O_APPEND) &&
	       (uint64_t)f->offset != f->size;
}

static void save_written_file(struct fd_list *l, struct ckpt_fd *f, const char *link)
{
	if (share_saved(l, f, CKPT_FD_FILE, 1))
		return;
	if (f->size > WRITTEN_FILE_MAX || l->data_len + f->size > FD_DATA_MAX) {
		add_warning(
		    link,
		    " is written in place and too large to save with the image (over 64 "
		    "MiB): what the program writes into it after the checkpoint stays after a "
		    "restart",
		    0);
		return;
	}
	if (read_whole(f->fd, l->data + l->data_len, f->size) != 0) {
		add_warning("cannot read ", link, " to save it with the image");
		return;
	}
	f->aux = 1;
	f->data_off = l->data_len;
	f->data_len = f->size;
	l->data_len += f->size;
}

/* A file mapped shared and writable (a state file a C program maps and
 * closes, numpy.memmap): what the program writes into the mapping after
 * the checkpoint reaches the file, which a restart maps again. Its content
 * is saved like a file written in place (read while the program is
 * stopped, at most WRITTEN_FILE_MAX, once per file; section SHARED_FILES)
 * and written back at restart; a descriptor of it saved whole (aux 1) is
 * enough. */
#define SHARED_FILES_MAX 64u

static void save_shared_file(void *ctx, uint64_t dev, uint64_t ino, const char *path)
{
	struct fd_list *l = ctx;
	for (uint32_t i = 0; i < l->nshared; i++)
		if (l->shared[i].dev == dev && l->shared[i].ino == ino)
			return;
	for (uint32_t i = 0; i < l->n; i++)
		if (l->fds[i].kind == CKPT_FD_FILE && l->fds[i].aux == 1 && l->fds[i].dev == dev &&
		    l->fds[i].ino == ino)
			return;
	struct stat sb;
	long fd = raw_syscall4(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC | O_NOCTTY, 0);
	if (fd < 0 || raw_syscall2(SYS_fstat, fd, &sb) != 0 || !S_ISREG(sb.st_mode) ||
	    sb.st_dev != dev || sb.st_ino != ino) {
		if (fd >= 0)
			raw_syscall1(SYS_close, fd);
		return; /* a device, or no longer at its path: nothing to write back to */
	}
	uint64_t size = (uint64_t)sb.st_size;
	const char *why = 0;
	if (l->nshared == SHARED_FILES_MAX || size > WRITTEN_FILE_MAX ||
	    l->data_len + size > FD_DATA_MAX)
		why = " is mapped shared and writable and too large to save with the image (over "
		      "64 MiB, or too many such files): what the program writes into it after the "
		      "checkpoint stays after a restart";
	else if (read_whole((int)fd, l->data + l->data_len, size) != 0)
		why = " is mapped shared and writable and cannot be read to save it with the "
		      "image: what the program writes into it after the checkpoint stays after a "
		      "restart";
	raw_syscall1(SYS_close, fd);
	if (why) {
		add_warning(path, why, 0);
		return;
	}
	struct ckpt_shared_file *f = &l->shared[l->nshared++];
	mem_zero(f, sizeof *f);
	f->dev = dev;
	f->ino = ino;
	f->size = size;
	f->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
	f->path_str = strtab_add(l->st, path);
	f->data_off = l->data_len;
	f->data_len = size;
	l->data_len += size;
}

/* A small file the program writes at its end (opened "w" or "a"): the
 * usual restart only cuts it back to its size, which needs the same file
 * at its path. When the program replaces it after the checkpoint (writes a
 * temporary file and renames it over its final name, rotates a log), that
 * file is gone and the restart could never succeed; so its content is
 * saved too (aux 2), and a restart that finds another file (or none) at
 * its path makes it again from the image. Bounded per file and per
 * process: larger ones keep the old behaviour. */
#define OUTPUT_FILE_MAX (4u << 20)
#define OUTPUT_FILES_MAX (16u << 20)

static void save_output_file(struct fd_list *l, struct ckpt_fd *f, uint64_t *budget)
{
	if ((f->open_flags & O_ACCMODE) == O_RDONLY || f->size > OUTPUT_FILE_MAX)
		return;
	if (share_saved(l, f, CKPT_FD_FILE, 2))
		return;
	if (*budget + f->size > OUTPUT_FILES_MAX || l->data_len + f->size > FD_DATA_MAX)
		return;
	if (read_whole(f->fd, l->data + l->data_len, f->size) != 0)
		return; /* only cut back at restart, as before */
	f->aux = 2;
	f->data_off = l->data_len;
	f->data_len = f->size;
	l->data_len += f->size;
	*budget += f->size;
}

/* "it_value: (S, NS)": the second number follows the first. */
static void dec_pair(const char *s, const char *key, int64_t *a, int64_t *b)
{
	const char *p = 0;
	*a = dec_field(s, key, &p);
	*b = 0;
	if (!p)
		return;
	while (*p == ',' || *p == ' ')
		p++;
	for (; *p >= '0' && *p <= '9'; p++)
		*b = *b * 10 + (*p - '0');
}

static void parse_timerfd(const char *info, struct ckpt_timerfd *t)
{
	mem_zero(t, sizeof *t);
	t->clockid = (int32_t)dec_field(info, "clockid:", 0);
	t->ticks = (uint64_t)dec_field(info, "ticks:", 0);
	dec_pair(info, "it_value:", &t->value_sec, &t->value_nsec);
	dec_pair(info, "it_interval:", &t->interval_sec, &t->interval_nsec);
}

static int timer_looks_stopped(const struct ckpt_timerfd *t)
{
	return !t->ticks && !t->value_sec && !t->value_nsec;
}

/* From the moment a timer's expiry passes until its interrupt has counted
 * the tick, the kernel shows it as no ticks and nothing left to run: the
 * same as a stopped timer, which is how an armed one would come back. The
 * interrupt mostly waits only for the fdinfo read itself (interrupts are
 * off while it prints), so one read again settles it; a busy machine can
 * delay it longer (0.1 ms measured), so a timer still looking stopped is
 * read again until it ticks or the capture's one shared wait (2 ms, paid
 * once however many stopped timers there are) is over. */
#define TIMER_SETTLE_NS 2000000ull

static void timerfd_settled(struct fd_list *l, const char *path, char *info, size_t size,
			    struct ckpt_timerfd *t)
{
	for (int tries = 0; timer_looks_stopped(t); tries++) {
		if (tries > 0) {
			uint64_t now = now_ns();
			if (!l->timer_wait_until)
				l->timer_wait_until = now + TIMER_SETTLE_NS;
			if (now >= l->timer_wait_until)
				return;
			raw_syscall0(SYS_sched_yield);
		}
		if (read_file(path, info, size) <= 0)
			return;
		parse_timerfd(info, t);
	}
}

static int capture_timerfd(struct fd_list *l, struct ckpt_fd *f, const char *path, char *info,
			   size_t size)
{
	struct ckpt_timerfd t;
	parse_timerfd(info, &t);
	timerfd_settled(l, path, info, size, &t);
	return put_record(l, f, CKPT_FD_TIMERFD, &t, sizeof t);
}

/* ---- inotify ----
 * fdinfo lists each watch: "inotify wd:2 ino:1a2b sdev:800001 mask:100
 * ...", numbers in hex, sdev as the kernel encodes a device inside
 * (major << 20 | minor). The path comes from what the program asked to
 * watch (inotifywrap.c), checked against the inode. */
static uint64_t stat_dev_of(uint64_t sdev)
{
	uint64_t major = sdev >> 20, minor = sdev & 0xfffff;
	return (major & 0xfff) << 8 | (major & ~0xfffull) << 32 | (minor & 0xff) |
	       (minor & ~0xffull) << 12;
}

static void warn_inotify(int fd, const char *what, uint64_t n, const char *rest)
{
	char num[24] = "", count[24] = "";
	str_append_u64(num, sizeof num, (uint64_t)fd);
	str_append_u64(count, sizeof count, n);
	add_warning("fd ", num, " (inotify): ");
	str_append(agent.warnings, sizeof agent.warnings, what);
	str_append(agent.warnings, sizeof agent.warnings, count);
	str_append(agent.warnings, sizeof agent.warnings, rest);
}

static int capture_inotify(struct fd_list *l, struct strtab *st, struct ckpt_fd *f,
			   const char *info)
{
	f->kind = CKPT_FD_INOTIFY;
	f->data_off = l->data_len;
	for (const char *p = info; *p; p++) {
		if ((p != info && p[-1] != '\n') || !str_starts(p, "inotify wd:"))
			continue;
		int found;
		struct ckpt_inotify_watch w = {(int32_t)hex_field(p, "inotify wd:", 0, &found),
					       (uint32_t)hex_field(p, "mask:", 0, &found), 0, 0};
		uint64_t ino = hex_field(p, "ino:", 0, &found);
		uint64_t dev = stat_dev_of(hex_field(p, "sdev:", 0, &found));
		const char *path =
		    inotify_watch_path(f->fd, w.wd, dev, ino, !(w.mask & IN_DONT_FOLLOW));
		if (path)
			w.path_str = strtab_add(st, path);
		else
			warn_inotify(f->fd, "watch ", (uint64_t)w.wd,
				     " was not made through libc's inotify_add_watch; its path is "
				     "unknown and a restart does not watch it");
		if (l->data_len + sizeof w > FD_DATA_MAX)
			return -1;
		mem_copy(l->data + l->data_len, &w, sizeof w);
		l->data_len += sizeof w;
	}
	f->data_len = l->data_len - f->data_off;
	int unread = inotify_unread_bytes(f->fd);
	if (unread > 0)
		warn_inotify(f->fd, "", (uint64_t)unread,
			     " bytes of events not read yet are not seen after a restart");
	return 0;
}

/* eventfd, epoll, pidfd and inotify are described by /proc/self/fdinfo:
 * the counter, each watched descriptor with its events and data, the pid,
 * each watch. */
static int capture_anon(struct fd_list *l, struct strtab *st, struct ckpt_fd *f, const char *link)
{
	static char info[65536];
	char path[64] = "/proc/self/fdinfo/";
	str_append_u64(path, sizeof path, (uint64_t)f->fd);
	if (read_file(path, info, sizeof info) <= 0)
		return -1;
	int found;
	if (str_eq(link, "anon_inode:[eventfd]")) {
		f->kind = CKPT_FD_EVENTFD;
		f->offset = (int64_t)hex_field(info, "eventfd-count:", 1, &found);
		f->aux = hex_field(info, "eventfd-semaphore:", 1, &found) ? 1 : 0;
		return 0;
	}
	if (str_eq(link, "anon_inode:[signalfd]")) {
		f->kind = CKPT_FD_SIGNALFD;
		f->offset = (int64_t)hex_field(info, "sigmask:", 1, &found);
		return found ? 0 : -1;
	}
	if (str_eq(link, "anon_inode:[timerfd]"))
		return capture_timerfd(l, f, path, info, sizeof info);
	if (str_eq(link, "anon_inode:inotify"))
		return capture_inotify(l, st, f, info);
	if (str_eq(link, "anon_inode:[pidfd]")) {
		/* "Pid:" as this process's pid namespace (the program's) shows
		 * it: -1 once the process has been waited for */
		const char *after = NULL;
		f->kind = CKPT_FD_PIDFD;
		f->offset = dec_field(info, "Pid:", &after);
		return after && f->offset != 0 ? 0 : -1;
	}
	if (!str_eq(link, "anon_inode:[eventpoll]"))
		return -1;
	f->kind = CKPT_FD_EPOLL;
	f->data_off = l->data_len;
	for (char *p = info; *p; p++) {
		if (!str_starts(p, "tfd:") || (p != info && p[-1] != '\n'))
			continue;
		const char *q = p + 4;
		while (*q == ' ')
			q++;
		int32_t tfd = 0;
		for (; *q >= '0' && *q <= '9'; q++)
			tfd = tfd * 10 + (*q - '0');
		struct ckpt_epoll_entry e = {tfd, (uint32_t)hex_field(q, "events:", 0, &found),
					     hex_field(q, "data:", 0, &found)};
		if (l->data_len + sizeof e > FD_DATA_MAX)
			return -1;
		mem_copy(l->data + l->data_len, &e, sizeof e);
		l->data_len += sizeof e;
	}
	f->data_len = l->data_len - f->data_off;
	return 0;
}

/* ---- file locks ----
 * /proc/self/fdinfo/N lists, after "lock:", the flock and OFD locks of the
 * descriptor's open file description and the POSIX locks this process
 * holds on the file:
 *   lock:	1: POSIX  ADVISORY  WRITE 2 00:2a:1234 0 EOF
 * Waiters ("->") are not locks held. A POSIX lock shows under every
 * descriptor of the file: it is recorded once. */
#define MAX_LOCKS 4096
static struct ckpt_lock locks[MAX_LOCKS];
static uint32_t nlocks;

static const char *skip_blanks(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

static const char *word(const char *p, char *out, size_t cap)
{
	size_t n = 0;
	p = skip_blanks(p);
	while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
		if (n + 1 < cap)
			out[n++] = *p;
		p++;
	}
	out[n] = 0;
	return p;
}

static int64_t to_num(const char *w)
{
	int64_t v = 0;
	for (; *w >= '0' && *w <= '9'; w++)
		v = v * 10 + (*w - '0');
	return v;
}

static void capture_locks(struct ckpt_fd *f, const char *info)
{
	for (const char *p = info; *p; p++) {
		if ((p != info && p[-1] != '\n') || !str_starts(p, "lock:"))
			continue;
		char id[24], kind[16], mand[16], rw[16], pid[24], devino[64], start[32], end[32];
		const char *q = word(p + 5, id, sizeof id);
		q = word(q, kind, sizeof kind);
		if (str_eq(kind, "->"))
			continue; /* a waiter */
		q = word(q, mand, sizeof mand);
		q = word(q, rw, sizeof rw);
		q = word(q, pid, sizeof pid);
		q = word(q, devino, sizeof devino);
		q = word(q, start, sizeof start);
		word(q, end, sizeof end);
		struct ckpt_lock l = {f->fd,
				      0,
				      str_eq(rw, "WRITE") ? 1u : 0u,
				      0,
				      to_num(start),
				      str_eq(end, "EOF") ? -1 : to_num(end)};
		l.kind = str_eq(kind, "FLOCK")	  ? CKPT_LOCK_FLOCK
			 : str_eq(kind, "POSIX")  ? CKPT_LOCK_POSIX
			 : str_eq(kind, "OFDLCK") ? CKPT_LOCK_OFD
						  : 0;
		if (!l.kind) {
			char num[24] = "";
			str_append_u64(num, sizeof num, (uint64_t)f->fd);
			add_warning("fd ", num,
				    ": a lease or lock of another kind is not restored");
			continue;
		}
		int dup = 0;
		for (uint32_t i = 0; i < nlocks && !dup; i++) {
			const struct ckpt_lock *o = &locks[i];
			/* the same POSIX lock seen under another descriptor of the file */
			dup = l.kind == CKPT_LOCK_POSIX && o->kind == CKPT_LOCK_POSIX &&
			      o->start == l.start && o->end == l.end && o->write == l.write &&
			      o->fd != l.fd && same_file(o->fd, l.fd);
		}
		if (!dup && nlocks < MAX_LOCKS)
			locks[nlocks++] = l;
	}
}

static void describe_unsupported(int fd, const char *link)
{
	char num[24] = "";
	str_append_u64(num, sizeof num, (uint64_t)fd);
	add_warning("fd ", num, " (");
	str_append(agent.warnings, sizeof agent.warnings, link);
	str_append(agent.warnings, sizeof agent.warnings,
		   ") cannot be restored and will be /dev/null after restart");
}

static void capture_one(struct fd_list *l, struct strtab *st, int fd)
{
	char link[4096], path[64] = "/proc/self/fd/";
	str_append_u64(path, sizeof path, (uint64_t)fd);
	struct stat sb;
	if (raw_readlink(path, link, sizeof link) < 0 || raw_syscall2(SYS_fstat, fd, &sb) != 0)
		return;
	struct ckpt_fd *f = &l->fds[l->n++];
	mem_zero(f, sizeof *f);
	f->fd = fd;
	f->open_flags = (uint32_t)raw_syscall2(SYS_fcntl, fd, F_GETFL);
	f->fd_flags = (uint32_t)raw_syscall2(SYS_fcntl, fd, F_GETFD);
	f->dev = sb.st_dev;
	f->ino = sb.st_ino;
	f->size = (uint64_t)sb.st_size;
	f->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
	f->path_str = strtab_add(st, link);
	int std = stdio_index(&sb);
	if (fd == agent.ctl_fd) {
		f->kind = CKPT_FD_AGENT;
	} else if (std >= 0) {
		f->kind = CKPT_FD_STDIO;
		f->aux = (uint32_t)std;
		if (S_ISREG(sb.st_mode)) { /* `< file`: where the program reads */
			long off = raw_syscall3(SYS_lseek, fd, 0, SEEK_CUR);
			f->offset = off > 0 ? off : 0;
		}
	} else if (S_ISREG(sb.st_mode)) {
		f->kind = CKPT_FD_FILE;
		f->offset = raw_syscall3(SYS_lseek, fd, 0, SEEK_CUR);
		if (sb.st_nlink)
			keep_file(path, 1, sb.st_dev, sb.st_ino, sb.st_uid);
		if (sb.st_nlink == 0)
			save_deleted_file(l, f, &sb, link);
		else if (written_in_place(f))
			save_written_file(l, f, link);
		else
			save_output_file(l, f, &l->output_saved);
		static char info[16384];
		char ipath[64] = "/proc/self/fdinfo/";
		str_append_u64(ipath, sizeof ipath, (uint64_t)fd);
		if (read_file(ipath, info, sizeof info) > 0)
			capture_locks(f, info);
	} else if (S_ISDIR(sb.st_mode)) {
		f->kind = CKPT_FD_DIR;
		f->offset = raw_syscall3(SYS_lseek, fd, 0, SEEK_CUR);
	} else if (S_ISCHR(sb.st_mode)) {
		f->kind = CKPT_FD_DEVICE;
	} else if (S_ISFIFO(sb.st_mode)) {
		/* an anonymous pipe, or a named one (FIFO) opened by path */
		f->kind = str_starts(link, "pipe:") ? CKPT_FD_PIPE : CKPT_FD_FIFO;
		f->pipe_id = sb.st_ino;
		f->aux = (f->open_flags & O_ACCMODE) == O_WRONLY;
		/* read without removing (tee): other processes holding this
		 * pipe are captured at the same time */
		if (!f->aux)
			peek_pipe_data(l, f);
	} else if (!(S_ISSOCK(sb.st_mode) && capture_socket(l, f, &sb) == 0) &&
		   !(str_starts(link, "anon_inode:") && capture_anon(l, st, f, link) == 0)) {
		f->kind = CKPT_FD_UNSUPPORTED;
		describe_unsupported(fd, link);
	}
}

/* ---- open file descriptions shared between descriptors ----
 *
 * fork and dup make several descriptors, in one process or several, refer
 * to one open file description (one offset, one set of flags, one epoll
 * set). kcmp(2) tells whether two descriptors do; it is asked only for
 * descriptors that show the same target in /proc. Each shared descriptor
 * is recorded with the first holder (lowest pid, then fd). */
#define MAX_HOLDERS 65536

struct holder {
	int pid, fd;
	uint32_t hash;
};

static uint32_t hash_str(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static int shareable(uint32_t kind)
{
	switch (kind) {
	case CKPT_FD_FILE:
	case CKPT_FD_DIR:
	case CKPT_FD_DELETED:
	case CKPT_FD_EVENTFD:
	case CKPT_FD_EPOLL:
	case CKPT_FD_TIMERFD:
	case CKPT_FD_SIGNALFD:
	case CKPT_FD_SOCKET:
		return 1;
	default:
		return 0;
	}
}

static int fd_target_hash(int pid, int fd, uint32_t *hash)
{
	char path[64] = "/proc/", link[4096];
	str_append_u64(path, sizeof path, (uint64_t)pid);
	str_append(path, sizeof path, "/fd/");
	str_append_u64(path, sizeof path, (uint64_t)fd);
	if (raw_readlink(path, link, sizeof link) < 0)
		return -1;
	*hash = hash_str(link);
	return 0;
}

/* Descriptors of the processes with lower pids, then our own, in order. */
static int list_holders(struct holder *out, const struct fd_list *l)
{
	static int pids[AGENT_MAX_PEERS], fds[MAX_FDS];
	int np = 0, n = 0;
	for (int i = 0; i < agent.npeers; i++)
		if (agent.peers[i] < agent.pid)
			pids[np++] = agent.peers[i];
	for (int i = 1; i < np; i++) /* few: insertion sort */
		for (int j = i; j > 0 && pids[j - 1] > pids[j]; j--) {
			int t = pids[j];
			pids[j] = pids[j - 1];
			pids[j - 1] = t;
		}
	for (int i = 0; i < np && n < MAX_HOLDERS; i++) {
		char path[64] = "/proc/";
		str_append_u64(path, sizeof path, (uint64_t)pids[i]);
		str_append(path, sizeof path, "/fd");
		int k = list_numeric_dir(path, fds, MAX_FDS);
		for (int j = 0; j < k && n < MAX_HOLDERS; j++)
			if (fd_target_hash(pids[i], fds[j], &out[n].hash) == 0) {
				out[n].pid = pids[i];
				out[n].fd = fds[j];
				n++;
			}
	}
	for (uint32_t i = 0; i < l->n && n < MAX_HOLDERS; i++)
		if (shareable(l->fds[i].kind) &&
		    fd_target_hash(agent.pid, l->fds[i].fd, &out[n].hash) == 0) {
			out[n].pid = agent.pid;
			out[n].fd = l->fds[i].fd;
			n++;
		}
	return n;
}

static int find_shares(const struct fd_list *l, struct scratch *s, struct ckpt_fd_share *out)
{
	struct holder *h = scratch_alloc(s, MAX_HOLDERS * sizeof *h);
	if (!h)
		return 0;
	int nh = list_holders(h, l), nshares = 0;
	for (uint32_t i = 0; i < l->n; i++) {
		const struct ckpt_fd *f = &l->fds[i];
		uint32_t hash;
		if (!shareable(f->kind) || fd_target_hash(agent.pid, f->fd, &hash) != 0)
			continue;
		for (int k = 0; k < nh; k++) {
			if (h[k].pid == agent.pid && h[k].fd >= f->fd)
				break;
			if (h[k].hash != hash ||
			    raw_syscall5(SYS_kcmp, agent.pid, h[k].pid, 0 /* KCMP_FILE */, f->fd,
					 h[k].fd) != 0)
				continue;
			out[nshares].fd = f->fd;
			out[nshares].owner_pid = h[k].pid;
			out[nshares].owner_fd = h[k].fd;
			out[nshares].reserved = 0;
			nshares++;
			break;
		}
	}
	return nshares;
}

int fds_capture(struct ckpt_writer *w, struct scratch *s, struct strtab *st, char **maps, char *err)
{
	int *fds;
	int n = list_fds(&fds);
	if (n < 0) {
		str_copy(err, "cannot list /proc/self/fd", 64);
		return -1;
	}
	struct fd_list l = {
	    .fds = scratch_alloc(s, (size_t)n * sizeof(struct ckpt_fd)),
	    .data = scratch_alloc(s, FD_DATA_MAX),
	    .scratch = s,
	    .maps = maps,
	    .st = st,
	    .shared = scratch_alloc(s, SHARED_FILES_MAX * sizeof(struct ckpt_shared_file))};
	if (!l.fds || !l.data || !l.shared) {
		str_copy(err, "out of scratch memory for file descriptors", 64);
		return -1;
	}
	nlocks = 0;
	for (int i = 0; i < n; i++)
		if (fds[i] != w->fd && fds[i] != track_fd())
			capture_one(&l, st, fds[i]);
	/* A GPU device still open now means the driver did not take the
	 * process's GPU state into its memory (docs/gpu.md): an image without
	 * it would restart into a broken program. */
	for (uint32_t i = 0; i < l.n; i++) {
		const char *path = st->buf + l.fds[i].path_str;
		if (l.fds[i].path_str && str_starts(path, "/dev/nvidia")) {
			char num[24] = "";
			str_append_u64(num, sizeof num, (uint64_t)l.fds[i].fd);
			err[0] = 0;
			str_append(err, 512, "GPU: fd ");
			str_append(err, 512, num);
			str_append(err, 512, " (");
			str_append(err, 200, path);
			str_append(err, 512,
				   ") is still open when stopped: the GPU state is not in "
				   "host memory, so it would be missing from the image");
			return -1;
		}
	}
	const char *text = maps_of(&l);
	if (text)
		memory_shared_file_maps(text, save_shared_file, &l);
	ckpt_writer_begin_section(w, CKPT_SEC_FDS);
	ckpt_writer_write(w, l.fds, l.n * sizeof(struct ckpt_fd));
	ckpt_writer_end_section(w, l.n);
	ckpt_writer_begin_section(w, CKPT_SEC_FD_DATA);
	ckpt_writer_write(w, l.data, l.data_len);
	ckpt_writer_end_section(w, 0);
	struct ckpt_fd_share *shares = scratch_alloc(s, (l.n + 1) * sizeof *shares);
	int nshares = shares ? find_shares(&l, s, shares) : 0;
	ckpt_writer_begin_section(w, CKPT_SEC_FD_SHARES);
	ckpt_writer_write(w, shares, (size_t)nshares * sizeof *shares);
	ckpt_writer_end_section(w, (uint32_t)nshares);
	ckpt_writer_begin_section(w, CKPT_SEC_LOCKS);
	ckpt_writer_write(w, locks, nlocks * sizeof locks[0]);
	ckpt_writer_end_section(w, nlocks);
	if (l.nshared) {
		ckpt_writer_begin_section(w, CKPT_SEC_SHARED_FILES);
		ckpt_writer_write(w, l.shared, l.nshared * sizeof *l.shared);
		ckpt_writer_end_section(w, l.nshared);
	}
	return 0;
}
