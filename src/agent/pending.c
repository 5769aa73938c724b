/* Pending signals with their siginfo. A signal raised again at restart
 * with kill() would carry none: a POSIX timer's si_value (often a pointer
 * the handler follows), a child's exit status in SIGCHLD, sigqueue's value.
 * While the process is stopped each thread takes its own pending signals
 * off its queue (sigtimedwait, all signals blocked in the handler), and the
 * agent thread those of the whole process; the records go into the image.
 * The running program must still get them: the kernel lets only the
 * target queue a signal with a kill()-like or kernel code again
 * (rt_tgsigqueueinfo to itself; for the process, rt_sigqueueinfo from the
 * main thread, whose tid is the pid), so each thread queues its own again
 * when it resumes, and the main thread those of the process. */
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#include "agent/agent.h"
#include "common/rawsys.h"

#define MAX_PENDING 1024

static struct ckpt_siginfo pool[MAX_PENDING];
static _Atomic uint32_t pool_used;
/* threads (the main thread once more for the process's signals) that
 * took signals and have not queued them again yet: the pool is kept until
 * they have (futex) */
static _Atomic uint32_t requeue_left;
static _Atomic int shared_taken;

/* Slots handed out; the counter itself may run past the pool when full. */
static uint32_t pool_count(void)
{
	uint32_t n = atomic_load(&pool_used);
	return n < MAX_PENDING ? n : MAX_PENDING;
}

/* A new checkpoint: once the last one's signals are all queued again
 * (threads resumed moments ago may still be at it). */
void pending_reset(void)
{
	uint64_t give_up = now_ns() + 1000000000ull;
	for (;;) {
		uint32_t left = atomic_load(&requeue_left);
		if (!left)
			break;
		if (now_ns() > give_up) {
			add_warning("a thread did not queue its pending signals again", 0, 0);
			break;
		}
		struct timespec ts = {0, 10000000};
		raw_syscall4(SYS_futex, &requeue_left, FUTEX_WAIT_PRIVATE, left, &ts);
	}
	atomic_store(&requeue_left, 0);
	atomic_store(&shared_taken, 0);
	atomic_store(&pool_used, 0);
}

/* The restored program's memory holds the count of the checkpoint, whose
 * threads never queued anything again (the restorer did). */
void pending_after_restart(void)
{
	atomic_store(&requeue_left, 0);
	atomic_store(&shared_taken, 0);
}

static int still_pending(int sig, const char *status, const char *key)
{
	return (status_mask(status, key) >> (sig - 1)) & 1;
}

/* Takes the signals of mask off the queue of this thread (tid) or, with
 * tid 0, of the process; returns the signals left pending (the pool full,
 * or a signal that would not come off). Real-time signals may be queued
 * several times: taken while the queue still shows them. */
uint64_t pending_take(int tid, uint64_t mask)
{
	const char *status = tid ? "/proc/thread-self/status" : "/proc/self/status";
	const char *key = tid ? "SigPnd:" : "ShdPnd:";
	uint64_t left = 0;
	int took = 0;
	for (int sig = 1; sig <= CKPT_NSIG; sig++) {
		uint64_t bit = 1ull << (sig - 1);
		if (!(mask & bit))
			continue;
		for (;;) {
			uint32_t at = atomic_fetch_add(&pool_used, 1);
			if (at >= MAX_PENDING) {
				left |= bit;
				break;
			}
			struct ckpt_siginfo *rec = &pool[at];
			uint64_t set = bit;
			struct timespec zero = {0, 0};
			mem_zero(rec, sizeof *rec);
			long r = raw_syscall4(SYS_rt_sigtimedwait, &set, rec->info, &zero, 8);
			if (r != sig) {
				left |= bit; /* nothing taken: the slot stays unused (signo 0) */
				break;
			}
			rec->tid = tid;
			rec->signo = (uint32_t)sig;
			took = 1;
			if (sig < 32 || !still_pending(sig, status, key))
				break;
		}
	}
	if (took && (tid || !atomic_exchange(&shared_taken, 1)))
		atomic_fetch_add(&requeue_left, 1);
	return left;
}

static void requeue(const struct ckpt_siginfo *rec, int tid)
{
	if (rec->tid)
		raw_syscall4(SYS_rt_tgsigqueueinfo, agent.pid, tid, rec->signo, rec->info);
	else
		raw_syscall3(SYS_rt_sigqueueinfo, agent.pid, rec->signo, rec->info);
}

/* Run by each thread as it resumes: its own signals, and in the main
 * thread the process's, queued again in the order they were taken. */
void pending_requeue_own(int tid)
{
	uint32_t n = pool_count();
	int mine = 0, shared = tid == agent.pid && atomic_exchange(&shared_taken, 0);
	for (uint32_t i = 0; i < n; i++) {
		const struct ckpt_siginfo *rec = &pool[i];
		if (!rec->signo)
			continue;
		if (rec->tid == tid) {
			requeue(rec, tid);
			mine = 1;
		} else if (!rec->tid && shared) {
			requeue(rec, tid);
		}
	}
	if (mine)
		atomic_fetch_sub(&requeue_left, 1);
	if (shared)
		atomic_fetch_sub(&requeue_left, 1);
	if (mine || shared)
		raw_syscall3(SYS_futex, &requeue_left, FUTEX_WAKE_PRIVATE, 1);
}

/* The records taken (unused slots have signo 0 and are left out by the
 * caller). */
const struct ckpt_siginfo *pending_records(uint32_t *n)
{
	*n = pool_count();
	return pool;
}
