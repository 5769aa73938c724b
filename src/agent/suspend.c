/* Stopping and resuming the program's threads at a safe point.
 *
 * A thread is stopped by delivering the suspend signal with tgkill. The
 * kernel saves the thread's complete user state (general registers, FPU,
 * SSE and AVX through XSAVE, signal mask) in a signal frame on the thread's
 * own stack; the handler records the per-thread kernel state that is not in
 * that frame and waits on a futex. Because the frame lives in ordinary
 * memory it is saved with the rest, and restart resumes the thread by
 * rt_sigreturn on it. A blocking system call interrupted by the signal is
 * restarted by the kernel (SA_RESTART) when the thread returns. */
#include <linux/futex.h>
#include <signal.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/rseq.h>
#include <sys/syscall.h>

#include "agent/agent.h"
#include "common/rawsys.h"

#ifndef ARCH_GET_FS
#define ARCH_GET_FS 0x1003
#define ARCH_GET_GS 0x1004
#endif
#define RSEQ_SIG_X86 0x53053053u

static long futex_wait(_Atomic uint32_t *addr, uint32_t val, long timeout_ms)
{
	struct timespec ts = {timeout_ms / 1000, (timeout_ms % 1000) * 1000000};
	return raw_syscall4(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, timeout_ms >= 0 ? &ts : 0);
}

static void futex_wake(_Atomic uint32_t *addr)
{
	raw_syscall3(SYS_futex, addr, FUTEX_WAKE_PRIVATE, 0x7fffffff);
}

/* ---- receivers held during a settle (recvwrap.c) ----
 * The flag is cleared while the threads are stopped, before the capture,
 * so images never hold it set: a held thread that is restored returns
 * from its wait at once. */
static _Atomic uint32_t holding;

void settle_hold_receivers(int on)
{
	atomic_store(&holding, on ? 1 : 0);
	if (!on)
		futex_wake(&holding);
}

int settle_holding(void)
{
	return atomic_load_explicit(&holding, memory_order_relaxed) != 0;
}

void settle_hold_here(void)
{
	/* the suspend signal stops the thread inside the wait */
	while (atomic_load(&holding))
		futex_wait(&holding, 1, -1);
}

/* A signal mask line ("SigPnd:\t0000000000000200") of a status file. */
uint64_t status_mask(const char *path, const char *key)
{
	char buf[2048];
	int found;
	if (read_file(path, buf, sizeof buf) <= 0)
		return 0;
	return hex_field(buf, key, 1, &found);
}

uint64_t agent_signals(void)
{
	return (1ull << (agent.suspend_signal - 1)) | (1ull << (AGENT_FALLBACK_SIGNAL - 1));
}

/* getpriority's raw system call answers 20 - nice (1 to 40). */
static int own_nice(int *nice)
{
	long r = raw_syscall2(SYS_getpriority, PRIO_PROCESS, 0);
	if (r < 1 || r > 40)
		return -1;
	*nice = 20 - (int)r;
	return 0;
}

void sched_note_launch(void)
{
	mem_zero(agent.launch_cpus, sizeof agent.launch_cpus);
	agent.launch_known = raw_syscall3(SYS_sched_getaffinity, 0, sizeof agent.launch_cpus,
					  agent.launch_cpus) > 0 &&
			     own_nice(&agent.launch_nice) == 0;
}

void capture_thread_sched(struct ckpt_thread_sched *s)
{
	mem_zero(s, sizeof *s);
	s->tid = (int32_t)raw_syscall0(SYS_gettid);
	if (!agent.launch_known)
		return;
	if (raw_syscall3(SYS_sched_getaffinity, 0, sizeof s->cpus, s->cpus) > 0 &&
	    mem_differ(s->cpus, agent.launch_cpus, sizeof s->cpus))
		s->flags |= CKPT_SCHED_AFFINITY;
	else
		mem_zero(s->cpus, sizeof s->cpus);
	int nice;
	if (own_nice(&nice) == 0 && nice != agent.launch_nice) {
		s->nice = nice;
		s->flags |= CKPT_SCHED_NICE;
	}
}

void capture_thread_state(struct ckpt_thread *t, void *frame)
{
	uint64_t v = 0, len = 0;
	t->tid = (int32_t)raw_syscall0(SYS_gettid);
	t->flags = t->tid == agent.pid ? CKPT_THREAD_MAIN : 0;
	t->frame = (uint64_t)(uintptr_t)frame;
	raw_syscall2(SYS_arch_prctl, ARCH_GET_FS, &v);
	t->fs_base = v;
	v = 0;
	raw_syscall2(SYS_arch_prctl, ARCH_GET_GS, &v);
	t->gs_base = v;
	v = 0;
	raw_syscall2(SYS_prctl, PR_GET_TID_ADDRESS, &v);
	t->clear_child_tid = v;
	v = 0;
	raw_syscall3(SYS_get_robust_list, 0, &v, &len);
	t->robust_head = v;
	t->robust_len = len;
	stack_t ss;
	if (raw_syscall2(SYS_sigaltstack, 0, &ss) == 0) {
		t->altstack_sp = (uint64_t)(uintptr_t)ss.ss_sp;
		t->altstack_size = ss.ss_size;
		t->altstack_flags = ss.ss_flags;
	}
	raw_syscall2(SYS_prctl, PR_GET_NAME, t->comm);
	/* signals that arrived blocked, or during the stop: delivered again
	 * after a restart (without their siginfo) */
	t->sigpending = status_mask("/proc/thread-self/status", "SigPnd:") & ~agent_signals();
	if (t->sigpending && t->tid != agent.agent_tid)
		t->sigpending = pending_take(t->tid, t->sigpending);
	/* glibc registers tp + __rseq_offset with the kernel for every thread
	 * it starts; a failed registration leaves cpu_id at -2 (-1 before it
	 * was attempted). */
	t->rseq_registered = 0;
	if (__rseq_size > 0 && t->fs_base) {
		struct rseq *rs = (struct rseq *)(uintptr_t)(t->fs_base + (uint64_t)__rseq_offset);
		t->rseq_addr = (uint64_t)(uintptr_t)rs;
		int32_t cpu = (int32_t)rs->cpu_id;
		t->rseq_registered = cpu >= 0;
	}
}

static struct agent_slot *slot_of(int tid)
{
	for (int i = 0; i < agent.nslots; i++)
		if (agent.slots[i].tid == tid)
			return &agent.slots[i];
	return 0;
}

static void stop_here(void *frame)
{
	if (!atomic_load(&agent.active))
		return;
	int tid = (int)raw_syscall0(SYS_gettid);
	if (tid == agent.agent_tid) {
		capture_image(frame);
		return;
	}
	struct agent_slot *s = slot_of(tid);
	if (!s)
		return;
	int expected = SLOT_SIGNALED;
	if (!atomic_compare_exchange_strong(&s->state, &expected, SLOT_CAPTURING))
		return; /* a stale, queued instance of the signal */
	capture_thread_state(&s->info, frame);
	capture_thread_sched(&s->sched);
	atomic_store(&s->state, SLOT_STOPPED);
	uint32_t epoch = agent.ckpt_epoch;
	atomic_fetch_add(&agent.stopped_count, 1);
	futex_wake(&agent.stopped_count);
	while (atomic_load(&agent.resume_epoch) == epoch)
		futex_wait(&agent.resume_epoch, epoch, -1);
	pending_requeue_own(tid); /* the signals it had pending, taken at the stop */
}

static void suspend_handler(int sig, siginfo_t *si, void *frame)
{
	(void)sig;
	/* Only our own tgkill stops a thread: a stray kill of this signal
	 * from elsewhere is ignored. */
	if (si->si_code != SI_TKILL || si->si_pid != agent.pid)
		return;
	stop_here(frame);
}

/* ---- threads that block the suspend signal ----
 * Threads libc starts for itself may block every signal it lets them
 * (glibc's timer helper waits in sigwaitinfo with all blocked but its two
 * internal signals), and the agent's wrappers never see that mask being
 * set. Such a thread is stopped with glibc's SIGSETXID, which it never
 * blocks: sent with sigqueue's code and a value of ours, so the handler put
 * in front of glibc's tells our signal from glibc's own (setuid() in a
 * threaded program), which it passes on. */
#define FALLBACK_VALUE ((void *)0x636b70747374ull) /* "ckptst" */

#define KSA_SIGINFO 4ull
#define KSA_RESTART 0x10000000ull
#define KSA_RESTORER 0x04000000ull

/* what handled the signal before ours (glibc's), in the kernel's layout */
static struct ckpt_sigaction fallback_next;

static void fallback_handler(int sig, siginfo_t *si, void *frame)
{
	if (si->si_code == SI_QUEUE && si->si_pid == agent.pid &&
	    si->si_value.sival_ptr == FALLBACK_VALUE) {
		stop_here(frame);
		return;
	}
	uint64_t h = fallback_next.handler;
	if (h == (uint64_t)(uintptr_t)SIG_DFL || h == (uint64_t)(uintptr_t)SIG_IGN)
		return;
	if (fallback_next.flags & KSA_SIGINFO)
		((void (*)(int, siginfo_t *, void *))(uintptr_t)h)(sig, si, frame);
	else
		((void (*)(int))(uintptr_t)h)(sig);
}

/* Our handler in front of whatever handles the signal now (checked each
 * time: libc may install its own late). */
static int fallback_install(void)
{
	struct ckpt_sigaction now, sa;
	if (raw_syscall4(SYS_rt_sigaction, AGENT_FALLBACK_SIGNAL, 0, &now, 8) != 0)
		return -1;
	if (now.handler == (uint64_t)(uintptr_t)fallback_handler)
		return 0;
	/* the restorer that returns from a handler: libc's, as the suspend
	 * signal's handler has it */
	struct ckpt_sigaction suspend_action;
	if (raw_syscall4(SYS_rt_sigaction, agent.suspend_signal, 0, &suspend_action, 8) != 0 ||
	    !(suspend_action.flags & KSA_RESTORER))
		return -1;
	fallback_next = now;
	sa.handler = (uint64_t)(uintptr_t)fallback_handler;
	sa.flags = KSA_SIGINFO | KSA_RESTART | KSA_RESTORER;
	sa.restorer = suspend_action.restorer;
	sa.mask = ~0ull;
	return raw_syscall4(SYS_rt_sigaction, AGENT_FALLBACK_SIGNAL, &sa, 0, 8) == 0 ? 0 : -1;
}

/* Tids seen blocking the suspend signal: signalled with the fallback at
 * once next time, so that no instance of ours queues up in them. */
#define MAX_BLOCKING 64
static int blocking_tids[MAX_BLOCKING], nblocking;

static int known_blocking(int tid)
{
	for (int i = 0; i < nblocking; i++)
		if (blocking_tids[i] == tid)
			return 1;
	return 0;
}

static long send_fallback(struct agent_slot *s)
{
	if (fallback_install() != 0)
		return -1;
	siginfo_t si;
	mem_zero(&si, sizeof si);
	si.si_signo = AGENT_FALLBACK_SIGNAL;
	si.si_code = SI_QUEUE;
	si.si_pid = agent.pid;
	si.si_uid = (uid_t)raw_syscall0(SYS_getuid);
	si.si_value.sival_ptr = FALLBACK_VALUE;
	s->mask_checked = 1; /* sent it: nothing more to look at */
	return raw_syscall4(SYS_rt_tgsigqueueinfo, agent.pid, s->tid, AGENT_FALLBACK_SIGNAL, &si);
}

/* A thread still not stopped that blocks the suspend signal gets the
 * fallback. */
static void nudge_blocking(void)
{
	char path[64];
	for (int i = 0; i < agent.nslots; i++) {
		struct agent_slot *s = &agent.slots[i];
		/* once each: a thread that is only slow is not read again at
		 * every wake-up while the others stop */
		if (atomic_load(&s->state) != SLOT_SIGNALED || s->mask_checked)
			continue;
		s->mask_checked = 1;
		path[0] = 0;
		str_append(path, sizeof path, "/proc/self/task/");
		str_append_u64(path, sizeof path, (uint64_t)s->tid);
		str_append(path, sizeof path, "/status");
		uint64_t blocked = status_mask(path, "SigBlk:");
		if (!(blocked & (1ull << (agent.suspend_signal - 1))))
			continue;
		if (send_fallback(s) == 0 && !known_blocking(s->tid) && nblocking < MAX_BLOCKING)
			blocking_tids[nblocking++] = s->tid;
	}
}

int suspend_install(void)
{
	/* SA_RESTART: interrupted system calls restart, at checkpoint and at
	 * restart. All other signals are blocked while a thread is stopped, so
	 * no handler frame of the program's can sit on top of ours. */
	struct sigaction sa = {0};
	sa.sa_sigaction = suspend_handler;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigfillset(&sa.sa_mask);
	return real_sigaction(agent.suspend_signal, &sa, 0);
}

static const char *syscall_name(long nr)
{
	switch (nr) {
	case 0:
		return "read";
	case 1:
		return "write";
	case 7:
		return "poll";
	case 23:
		return "select";
	case 34:
		return "pause";
	case 35:
		return "nanosleep";
	case 45:
		return "recvfrom";
	case 47:
		return "recvmsg";
	case 130:
		return "rt_sigsuspend";
	case 128:
		return "rt_sigtimedwait";
	case 61:
		return "wait4";
	case 202:
		return "futex";
	case 230:
		return "clock_nanosleep";
	case 232:
		return "epoll_wait";
	case 270:
		return "pselect6";
	case 271:
		return "ppoll";
	case 281:
		return "epoll_pwait";
	default:
		return 0;
	}
}

/* Name a thread that would not stop: its name, state and system call. */
static void describe_straggler(int tid)
{
	char path[64] = "/proc/self/task/", buf[512], comm[32] = "?";
	str_append_u64(path, sizeof path, (uint64_t)tid);
	char *end = path + str_len(path);
	str_copy(end, "/comm", 16);
	if (read_file(path, comm, sizeof comm) > 0 && str_len(comm) > 0)
		comm[str_len(comm) - 1] = 0;
	char state[2] = "?";
	str_copy(end, "/stat", 16);
	if (read_file(path, buf, sizeof buf) > 0) {
		char *p = buf + str_len(buf);
		while (p > buf && *p != ')')
			p--;
		if (p[0] == ')' && p[1] == ' ')
			state[0] = p[2];
	}
	char sc[64] = "unknown";
	str_copy(end, "/syscall", 16);
	if (read_file(path, buf, sizeof buf) > 0) {
		if (str_starts(buf, "running")) {
			str_copy(sc, "none (running)", sizeof sc);
		} else {
			long nr = 0;
			for (const char *p = buf; *p >= '0' && *p <= '9'; p++)
				nr = nr * 10 + (*p - '0');
			const char *name = syscall_name(nr);
			sc[0] = 0;
			str_append(sc, sizeof sc, name ? name : "#");
			if (!name)
				str_append_u64(sc, sizeof sc, (uint64_t)nr);
		}
	}
	char msg[256] = "thread ";
	str_append_u64(msg, sizeof msg, (uint64_t)tid);
	str_append(msg, sizeof msg, " (");
	str_append(msg, sizeof msg, comm);
	str_append(msg, sizeof msg, ") did not stop: state ");
	str_append(msg, sizeof msg, state);
	str_append(msg, sizeof msg, ", in system call ");
	str_append(msg, sizeof msg, sc);
	set_error(msg, 0, 0);
}

/* Signal every thread not yet signalled; returns how many are pending. */
static int signal_new_threads(void)
{
	static int tids[AGENT_MAX_THREADS];
	int n = list_numeric_dir("/proc/self/task", tids, AGENT_MAX_THREADS);
	if (n < 0) {
		set_error("cannot list /proc/self/task", 0, 0);
		return -1;
	}
	int pending = 0;
	for (int i = 0; i < n; i++) {
		if (tids[i] == agent.agent_tid || slot_of(tids[i]))
			continue;
		if (agent.nslots == AGENT_MAX_THREADS) {
			set_error("too many threads (more than 4096)", 0, 0);
			return -1;
		}
		struct agent_slot *s = &agent.slots[agent.nslots++];
		s->tid = tids[i];
		mem_zero(&s->info, sizeof s->info);
		s->mask_checked = 0;
		atomic_store(&s->state, SLOT_SIGNALED);
		long r = known_blocking(tids[i])
			     ? send_fallback(s)
			     : raw_syscall3(SYS_tgkill, agent.pid, tids[i], agent.suspend_signal);
		if (r == -3 /* ESRCH: exited meanwhile */)
			atomic_store(&s->state, SLOT_FREE);
	}
	for (int i = 0; i < agent.nslots; i++)
		if (atomic_load(&agent.slots[i].state) == SLOT_SIGNALED ||
		    atomic_load(&agent.slots[i].state) == SLOT_CAPTURING)
			pending++;
	return pending;
}

/* A signalled thread that has exited will never stop: forget it. */
static void drop_exited(void)
{
	for (int i = 0; i < agent.nslots; i++) {
		struct agent_slot *s = &agent.slots[i];
		if (atomic_load(&s->state) != SLOT_SIGNALED)
			continue;
		if (raw_syscall3(SYS_tgkill, agent.pid, s->tid, 0) == -3)
			atomic_store(&s->state, SLOT_FREE);
	}
}

int suspend_all_threads(void)
{
	agent.nslots = 0;
	pending_reset();
	agent.ckpt_epoch = atomic_load(&agent.resume_epoch);
	atomic_store(&agent.active, 1);
	uint64_t start = now_ns(), deadline = start + (uint64_t)agent.stop_timeout_ms * 1000000ull;
	/* most threads stop within a millisecond; those left then are looked at */
	uint64_t nudge_at = start + 2000000ull;
	for (;;) {
		uint32_t seen = atomic_load(&agent.stopped_count);
		int pending = signal_new_threads();
		if (pending < 0)
			break;
		if (pending == 0) {
			/* All stopped threads cannot start new ones; one more
			 * listing catches a thread born in a clone that raced. */
			if (signal_new_threads() == 0)
				return 0;
			continue;
		}
		if (now_ns() > deadline) {
			for (int i = 0; i < agent.nslots; i++)
				if (atomic_load(&agent.slots[i].state) == SLOT_SIGNALED) {
					describe_straggler(agent.slots[i].tid);
					break;
				}
			break;
		}
		uint64_t now = now_ns();
		if (now >= nudge_at)
			nudge_blocking();
		futex_wait(&agent.stopped_count, seen, now < nudge_at ? 2 : 50);
		drop_exited();
	}
	resume_all_threads();
	return -1;
}

void resume_all_threads(void)
{
	atomic_store(&agent.active, 0);
	for (int i = 0; i < agent.nslots; i++)
		atomic_store(&agent.slots[i].state, SLOT_FREE);
	atomic_fetch_add(&agent.resume_epoch, 1);
	futex_wake(&agent.resume_epoch);
}
