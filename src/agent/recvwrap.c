/* Hold a thread that has just taken descriptors while a checkpoint lets
 * it run for that (on_settle in agent.c). A descriptor sent with
 * SCM_RIGHTS and not received yet cannot be saved, so the receiver runs
 * until it has taken it and is stopped again; but a program that answers
 * at once with the next request (a client of multiprocessing's resource
 * sharer, fetching PyTorch DataLoader batches one tensor at a time) is
 * often already in its next hand-over when the stop reaches it, on a busy
 * machine every time, and the checkpoint never finds a quiet moment. So
 * recvmsg is wrapped: during a settle, a call that brought descriptors
 * and left nothing more queued at its socket waits in the wrapper, where
 * the stop finds it, and returns once the checkpoint is over, as if it
 * had taken a moment longer. Other calls only pass through. */
#include <dlfcn.h>
#include <errno.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "agent/agent.h"
#include "common/rawsys.h"

#define EXPORT __attribute__((visibility("default")))

typedef ssize_t (*recvmsg_fn)(int, struct msghdr *, int);

static recvmsg_fn next_recvmsg;

static int carries_descriptors(const struct msghdr *msg)
{
	if (!msg->msg_control || msg->msg_controllen < sizeof(struct cmsghdr))
		return 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)msg); c;
	     c = CMSG_NXTHDR((struct msghdr *)msg, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			return 1;
	return 0;
}

static int nothing_queued(int fd)
{
	int inq = 0;
	return raw_syscall3(SYS_ioctl, fd, FIONREAD, &inq) == 0 && inq == 0;
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	recvmsg_fn f = next_recvmsg;
	if (!f) {
		f = (recvmsg_fn)dlsym(RTLD_NEXT, "recvmsg");
		next_recvmsg = f;
	}
	ssize_t n = f ? f(fd, msg, flags) : raw_syscall3(SYS_recvmsg, fd, msg, flags);
	if (!f && n < 0) {
		errno = (int)-n;
		n = -1;
	}
	if (n >= 0 && !(flags & MSG_PEEK) && settle_holding() && carries_descriptors(msg) &&
	    nothing_queued(fd))
		settle_hold_here();
	return n;
}
