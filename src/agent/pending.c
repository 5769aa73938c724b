/* Pending signals with their siginfo. A signal raised again at restart
 * with kill() would carry none: a POSIX timer's si_value (often a pointer
 * the handler follows), a child's exit status in SIGCHLD, sigqueue's value.
 * While the process is stopped each thread takes its own pending signals
 * off its queue (sigtimedwait, all signals blocked in the handler), and the
 * agent thread those of the whole process; the records go into the image,
 * and the signals are queued again at once with their siginfo
 * (rt_[tg]sigqueueinfo), so the running program still gets them. */
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#include "agent/agent.h"
#include "common/rawsys.h"

#define MAX_PENDING 1024

static struct ckpt_siginfo pool[MAX_PENDING];
static _Atomic uint32_t pool_used;
static int requeued;

void pending_reset(void)
{
	atomic_store(&pool_used, 0);
	requeued = 0;
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
	for (int sig = 1; sig <= CKPT_NSIG; sig++) {
		uint64_t bit = 1ull << (sig - 1);
		if (!(mask & bit))
			continue;
		for (;;) {
			uint32_t at = atomic_fetch_add(&pool_used, 1);
			if (at >= MAX_PENDING) {
				atomic_store(&pool_used, MAX_PENDING);
				left |= bit;
				break;
			}
			struct ckpt_siginfo *rec = &pool[at];
			uint64_t set = bit;
			struct timespec zero = {0, 0};
			mem_zero(rec, sizeof *rec);
			long r = raw_syscall4(SYS_rt_sigtimedwait, &set, rec->info, &zero, 8);
			if (r != sig) {
				/* nothing taken: the slot stays unused */
				rec->signo = 0;
				left |= bit;
				break;
			}
			rec->tid = tid;
			rec->signo = (uint32_t)sig;
			if (sig < 32 || !still_pending(sig, status, key))
				break;
		}
	}
	return left;
}

/* Queued again in the running program, in the order they were taken;
 * once per checkpoint, whether it succeeded or not. */
void pending_requeue(void)
{
	if (requeued)
		return;
	requeued = 1;
	uint32_t n = atomic_load(&pool_used);
	for (uint32_t i = 0; i < n; i++) {
		struct ckpt_siginfo *rec = &pool[i];
		if (!rec->signo)
			continue;
		if (rec->tid)
			raw_syscall4(SYS_rt_tgsigqueueinfo, agent.pid, rec->tid, rec->signo,
				     rec->info);
		else
			raw_syscall3(SYS_rt_sigqueueinfo, agent.pid, rec->signo, rec->info);
	}
}

/* The records taken (unused slots have signo 0 and are left out by the
 * caller). */
const struct ckpt_siginfo *pending_records(uint32_t *n)
{
	*n = atomic_load(&pool_used);
	return pool;
}
