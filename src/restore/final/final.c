/* The restorer's final stage: freestanding code copied into a hole of the
 * address space being restored. It runs with every signal blocked, on a
 * stack inside that hole, and:
 *   1. parks the live vDSO/vvar in the hole and unmaps everything else
 *      (the prepare stage's executable, libc, heap and stack);
 *   2. puts the saved memory in place: staged anonymous memory is moved
 *      with mremap (no copy), files are mapped again and changed pages
 *      copied over them;
 *   3. moves the vDSO/vvar to where the program had them;
 *   4. restores the mm layout (brk, arg/env, auxv, exe) with PR_SET_MM_MAP,
 *      signal actions, then recreates every thread with its exact tid and
 *      returns each into its saved signal frame with rt_sigreturn.
 * No libc, no globals, no relocations: all state is in struct plan. */
#include <stddef.h>
#include <stdint.h>

#include "common/rawsys.h"
#include "restore/plan.h"

#define NR_read 0
#define NR_write 1
#define NR_close 3
#define NR_mmap 9
#define NR_mprotect 10
#define NR_munmap 11
#define NR_rt_sigaction 13
#define NR_rt_sigreturn 15
#define NR_mremap 25
#define NR_madvise 28
#define NR_sigaltstack 131
#define NR_prctl 157
#define NR_arch_prctl 158
#define NR_futex 202
#define NR_set_tid_address 218
#define NR_exit_group 231
#define NR_set_robust_list 273
#define NR_rseq 334
#define NR_clone3 435
#define NR_capset 126
#define NR_setpriority 141
#define NR_sched_setaffinity 203
#define NR_setitimer 38
#define NR_timer_create 222
#define NR_timer_settime 223
#define NR_timer_delete 226
#define NR_rt_sigqueueinfo 129
#define NR_rt_tgsigqueueinfo 297

#define PROT_READ 1
#define PROT_WRITE 2
#define MAP_SHARED 1
#define MAP_PRIVATE 2
#define MAP_FIXED 0x10
#define MAP_ANONYMOUS 0x20
#define MAP_GROWSDOWN 0x100
#define MAP_NORESERVE 0x4000
#define MREMAP_MAYMOVE 1
#define MADV_POPULATE_WRITE 23
#define MREMAP_FIXED 2
#define ARCH_SET_FS 0x1002
#define ARCH_SET_GS 0x1001
#define PR_SET_NAME 15
#define PR_SET_MM 35
#define PR_SET_MM_MAP 14
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#define PR_TIMER_CREATE_RESTORE_IDS 77 /* Linux 6.17 */
#define SIGEV_THREAD_ID 4
#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129

#define CLONE_VM 0x100
#define CLONE_FS 0x200
#define CLONE_FILES 0x400
#define CLONE_SIGHAND 0x800
#define CLONE_THREAD 0x10000
#define CLONE_SYSVSEM 0x40000
#define CLONE_SETTLS 0x80000
#define CLONE_CHILD_CLEARTID 0x200000
#define CLONE_PARENT_SETTID 0x100000
#define NR_getpid 39
#define NR_kill 62
#define NR_tgkill 234

#pragma GCC visibility push(hidden)

/* The compiler may emit calls to these for struct copies. */
void *memcpy(void *dst, const void *src, size_t n)
{
	char *d = dst;
	const char *s = src;
	while (n--)
		*d++ = *s++;
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	char *d = dst;
	while (n--)
		*d++ = (char)c;
	return dst;
}

static int page_saved(const uint8_t *bits, uint64_t page)
{
	return (bits[page / 8] >> (page % 8)) & 1;
}

/* The saved pages of a private file mapping over the file's. Each run of
 * them is made the program's own copy first with one MADV_POPULATE_WRITE:
 * a first write to each page would take a fault each, and where faults
 * are expensive (virtual machines with shadow page tables: 10-15 us each
 * in the reference VM) they cost more than the copy (torch: 3,600 pages
 * in 630 areas, 25 ms less). Advice only: a kernel without it (before
 * 5.14) takes the faults. */
static void copy_pages(uint64_t dst, uint64_t src, uint64_t len, const uint8_t *bits)
{
	uint64_t *d = (uint64_t *)dst;
	const uint64_t *s = (const uint64_t *)src;
	uint64_t npages = len / 4096;
	for (uint64_t page = 0; page < npages;) {
		if (!page_saved(bits, page)) {
			page++; /* not saved: the file's content stays */
			continue;
		}
		uint64_t end = page + 1;
		while (end < npages && page_saved(bits, end))
			end++;
		raw_syscall3(NR_madvise, dst + page * 4096, (end - page) * 4096,
			     MADV_POPULATE_WRITE);
		for (uint64_t k = page * 512; k < end * 512; k++)
			d[k] = s[k];
		page = end;
	}
}

static void put_hex(char *out, uint64_t v)
{
	out[0] = '0';
	out[1] = 'x';
	for (int i = 0; i < 16; i++)
		out[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 15];
	out[18] = 0;
}

/* Past the point of no return a failure can only be reported and the
 * process ended; the supervisor sees exit status 3. */
static __attribute__((noreturn)) void die(struct plan *p, const char *what, uint64_t addr, long err)
{
	char *b = p->errbuf;
	size_t n = 0;
	const char *pre = "ckpt-restore: final stage: ";
	for (size_t i = 0; pre[i]; i++)
		b[n++] = pre[i];
	for (size_t i = 0; what[i] && n < 180; i++)
		b[n++] = what[i];
	b[n++] = ' ';
	put_hex(b + n, addr);
	n += 18;
	const char *e = " errno ";
	for (size_t i = 0; e[i]; i++)
		b[n++] = e[i];
	long v = -err;
	char num[24];
	int k = 0;
	do {
		num[k++] = (char)('0' + v % 10);
		v /= 10;
	} while (v && k < 20);
	while (k)
		b[n++] = num[--k];
	b[n++] = '\n';
	raw_syscall3(NR_write, p->err_fd, b, n);
	for (;;)
		raw_syscall1(NR_exit_group, 3);
}

static int failed(long r)
{
	return r < 0 && r > -4096;
}

static void map_area(struct plan *p, struct plan_area *a)
{
	uint64_t len = a->end - a->start;
	long r = 0;
	switch (a->op) {
	case PLAN_MOVE:
		r = raw_syscall5(NR_mremap, a->staging, len, len, MREMAP_MAYMOVE | MREMAP_FIXED,
				 a->start);
		break;
	case PLAN_FRESH:
	case PLAN_FRESH_COPY:
		r = raw_syscall6(NR_mmap, a->start, len, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE |
				     (a->growsdown ? MAP_GROWSDOWN : 0),
				 -1, 0);
		break;
	case PLAN_FILE:
		r = raw_syscall6(NR_mmap, a->start, len, a->prot | (a->staging ? PROT_WRITE : 0),
				 MAP_PRIVATE | MAP_FIXED, a->fd, (long)a->file_offset);
		break;
	case PLAN_FILE_SHARED:
		r = raw_syscall6(NR_mmap, a->start, len, a->prot, MAP_SHARED | MAP_FIXED, a->fd,
				 (long)a->file_offset);
		break;
	case PLAN_SHARED_ANON:
		r = raw_syscall6(NR_mmap, a->start, len, PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		break;
	}
	if (failed(r) || (uint64_t)r != a->start)
		die(p, "cannot map memory at", a->start, r);
	if (a->staging && a->op != PLAN_MOVE) {
		if (a->op == PLAN_FILE && (a->prot & PROT_READ) == 0)
			raw_syscall3(NR_mprotect, a->start, len, PROT_READ | PROT_WRITE);
		copy_pages(a->start, a->staging, len, (const uint8_t *)a->bitmap);
		/* its staged copy is unmapped with the others, after */
	}
	/* a file mapped with its protection already (a lazy restart maps
	 * thousands of pieces so: a system call each saved) */
	if ((a->op == PLAN_FILE || a->op == PLAN_FILE_SHARED) && !a->staging)
		return;
	r = raw_syscall3(NR_mprotect, a->start, len, a->prot);
	if (failed(r))
		die(p, "cannot set protection at", a->start, r);
}

/* The staged copies of the areas that were copied, not moved, into
 * place: they lie from the lowest of them to the end of the blob region,
 * the areas moved out of that range having left holes. One system call
 * (and TLB flush) for all: one each cost 30 us an area (torch: 630). */
static void unmap_staged_copies(struct plan *p)
{
	uint64_t lo = p->blob_end;
	for (uint32_t i = 0; i < p->nareas; i++)
		if (p->areas[i].staging && p->areas[i].op != PLAN_MOVE && p->areas[i].staging < lo)
			lo = p->areas[i].staging;
	if (lo < p->blob_end)
		raw_syscall2(NR_munmap, lo, p->blob_end - lo);
}

static void move_special(struct plan *p, const uint64_t *from, const uint64_t *to)
{
	for (uint32_t i = 0; i < p->nspecial; i++) {
		if (from[i] == to[i])
			continue;
		long r = raw_syscall5(NR_mremap, from[i], p->special_len[i], p->special_len[i],
				      MREMAP_MAYMOVE | MREMAP_FIXED, to[i]);
		if (failed(r))
			die(p, "cannot move the vDSO to", to[i], r);
	}
}

/* Capabilities were lent to the restorer (in its own user namespace) to
 * choose pids; the program runs without them, as it did at start. */
static void drop_capabilities(void)
{
	struct {
		uint32_t version;
		int pid;
	} hdr = {0x20080522, 0};
	struct {
		uint32_t eff, perm, inh;
	} data[2] = {{0, 0, 0}, {0, 0, 0}};
	raw_syscall5(NR_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	raw_syscall2(NR_capset, &hdr, data);
}

/* Per-thread kernel state that is not in the signal frame. */
static void thread_kernel_state(struct plan *p, const struct plan_thread *pt)
{
	const struct ckpt_thread *t = &pt->t;
	/* best effort: a lower nice value than the restart's needs a
	 * privilege the program may have had and the restart lacks */
	if (pt->sched_flags & CKPT_SCHED_AFFINITY)
		raw_syscall3(NR_sched_setaffinity, 0, sizeof pt->cpus, pt->cpus);
	if (pt->sched_flags & CKPT_SCHED_NICE)
		raw_syscall3(NR_setpriority, 0 /* PRIO_PROCESS */, 0, pt->nice);
	if (t->robust_head)
		raw_syscall2(NR_set_robust_list, t->robust_head, t->robust_len);
	if (t->altstack_sp && !(t->altstack_flags & 2 /* SS_DISABLE */)) {
		struct {
			uint64_t sp;
			int32_t flags;
			int32_t pad;
			uint64_t size;
		} ss = {t->altstack_sp, 0, 0, t->altstack_size};
		raw_syscall2(NR_sigaltstack, &ss, 0);
	}
	if (t->rseq_registered && t->rseq_addr) {
		/* no critical section can be in progress in a fresh thread */
		*(volatile uint64_t *)(t->rseq_addr + 8) = 0;
		raw_syscall4(NR_rseq, t->rseq_addr, p->rseq_len, 0, p->rseq_sig);
	}
	raw_syscall2(NR_prctl, PR_SET_NAME, t->comm);
	drop_capabilities();
}

static __attribute__((noreturn)) void sigreturn_to(uint64_t frame)
{
	/* rt_sigreturn finds the frame 8 bytes below the stack pointer, where
	 * the handler's return address was; the frame's ucontext is at frame. */
	__asm__ volatile("mov %0, %%rsp\n\t"
			 "mov $15, %%eax\n\t"
			 "syscall\n\t"
			 "ud2"
			 :
			 : "r"(frame)
			 : "memory");
	__builtin_unreachable();
}

struct thread_start {
	struct plan *plan;
	struct plan_thread *thread;
};

__attribute__((noreturn, used, noinline)) void thread_main(struct thread_start *ts);
__attribute__((noreturn, used, noinline)) void thread_main(struct thread_start *ts)
{
	struct plan *p = ts->plan;
	const struct ckpt_thread *t = &ts->thread->t;
	thread_kernel_state(p, ts->thread);
	__atomic_fetch_add(&p->threads_started, 1, __ATOMIC_SEQ_CST);
	raw_syscall3(NR_futex, &p->threads_started, FUTEX_WAKE_PRIVATE, 1);
	sigreturn_to(t->frame);
}

struct clone_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
	    set_tid_size, cgroup;
};

static long spawn_thread(struct plan *p, struct plan_thread *pt)
{
	int64_t tid = pt->t.tid;
	/* the start record sits at the top of the thread's temporary stack */
	struct thread_start *ts = (struct thread_start *)(pt->stack_top - 64);
	ts->plan = p;
	ts->thread = pt;
	struct clone_args ca = {0};
	ca.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
		   CLONE_SYSVSEM | CLONE_SETTLS |
		   (pt->t.clear_child_tid ? CLONE_CHILD_CLEARTID : 0);
	ca.child_tid = pt->t.clear_child_tid;
	ca.stack = pt->stack_top - 65536 + 4096;
	ca.stack_size = (uint64_t)(pt->stack_top - 128) - ca.stack;
	ca.tls = pt->t.fs_base;
	if (p->new_ids) {
		/* no pid namespace of our own: a new tid, which the kernel also
		 * writes where glibc keeps it */
		if (p->tid_offset >= 0) {
			ca.flags |= CLONE_PARENT_SETTID;
			ca.parent_tid = pt->t.fs_base + (uint64_t)p->tid_offset;
		}
	} else {
		ca.set_tid = (uint64_t)&tid;
		ca.set_tid_size = 1;
	}
	long ret;
	register uint64_t r12 __asm__("r12") = (uint64_t)ts;
	__asm__ volatile("syscall\n\t"
			 "test %%rax, %%rax\n\t"
			 "jnz 1f\n\t"
			 "mov %%r12, %%rdi\n\t"
			 "and $-16, %%rsp\n\t"
			 "call thread_main\n\t"
			 "ud2\n"
			 "1:"
			 : "=a"(ret)
			 : "a"(NR_clone3), "D"(&ca), "S"(sizeof ca), "r"(r12)
			 : "rcx", "r11", "rdx", "memory");
	return ret;
}

static void restore_mm(struct plan *p)
{
	long r = raw_syscall5(NR_prctl, PR_SET_MM, PR_SET_MM_MAP, &p->mm, sizeof p->mm, 0);
	if (failed(r) && p->mm.exe_fd != (uint32_t)-1) {
		/* the executable link is cosmetic (/proc/PID/exe): keep the rest */
		p->mm.exe_fd = (uint32_t)-1;
		r = raw_syscall5(NR_prctl, PR_SET_MM, PR_SET_MM_MAP, &p->mm, sizeof p->mm, 0);
	}
	if (failed(r))
		die(p, "PR_SET_MM_MAP failed for brk", p->mm.brk, r);
}

static void restore_sigactions(struct plan *p)
{
	for (int sig = 1; sig <= CKPT_NSIG; sig++) {
		if (sig == 9 || sig == 19)
			continue;
		raw_syscall4(NR_rt_sigaction, sig, &p->sigactions[sig - 1], 0, 8);
	}
}

/* The kernel's struct sigevent (64 bytes) and timer values. */
struct k_sigevent {
	uint64_t value;
	int32_t signo, notify, tid;
	int32_t pad[11];
};
struct k_timespec {
	int64_t sec, nsec;
};
struct k_itimerspec {
	struct k_timespec interval, value;
};

static int64_t tid_now(struct plan *p, int32_t tid)
{
	for (uint32_t i = 0; i < p->nthreads; i++)
		if (p->threads[i].t.tid == tid)
			return p->threads[i].new_tid;
	return tid;
}

static void restore_itimer(struct plan *p, const struct ckpt_timer *t)
{
	/* struct itimerval: microseconds; a time left rounded to none would
	 * stop the timer instead */
	int64_t v[4] = {t->interval_sec, t->interval_nsec / 1000, t->value_sec,
			t->value_nsec / 1000};
	if (!v[2] && !v[3])
		v[3] = 1;
	long r = raw_syscall3(NR_setitimer, t->kind - CKPT_TIMER_REAL, v, 0);
	if (failed(r))
		die(p, "cannot set the interval timer again (its kind as address)", t->kind, r);
}

/* A POSIX timer gets the id the program holds: asked for where the kernel
 * takes requests (by_request), else by making timers until the counter
 * reaches it (ids ascend from the process's first; timers come sorted). */
static void restore_posix_timer(struct plan *p, const struct ckpt_timer *t, int by_request)
{
	struct k_sigevent ev = {t->sigval, t->signo, t->notify, 0, {0}};
	if (t->notify & SIGEV_THREAD_ID)
		ev.tid = (int32_t)tid_now(p, t->notify_tid);
	int32_t id = t->id;
	long r = raw_syscall3(NR_timer_create, t->clockid, &ev, &id);
	for (int tries = 0; !by_request && !failed(r) && id < t->id && tries < 65536; tries++) {
		raw_syscall1(NR_timer_delete, id);
		r = raw_syscall3(NR_timer_create, t->clockid, &ev, &id);
	}
	if (!failed(r) && id != t->id)
		r = -16; /* EBUSY: the id cannot be had again */
	if (failed(r))
		die(p, "cannot make the POSIX timer again (its id as address)", (uint64_t)t->id, r);
	struct k_itimerspec its = {{t->interval_sec, t->interval_nsec},
				   {t->value_sec, t->value_nsec}};
	if (!its.value.sec && !its.value.nsec)
		return; /* not running */
	r = raw_syscall4(NR_timer_settime, id, 0, &its, 0);
	if (failed(r))
		die(p, "cannot set the POSIX timer again (its id as address)", (uint64_t)t->id, r);
}

/* Timers start counting again once every thread exists: the time the
 * process spent stopped is not counted. */
static void restore_timers(struct plan *p)
{
	int by_request = 0, posix = 0;
	for (uint32_t i = 0; i < p->ntimers; i++)
		posix |= p->timers[i].kind == CKPT_TIMER_POSIX;
	if (posix)
		by_request =
		    !failed(raw_syscall5(NR_prctl, PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0));
	for (uint32_t i = 0; i < p->ntimers; i++) {
		if (p->timers[i].kind == CKPT_TIMER_POSIX)
			restore_posix_timer(p, &p->timers[i], by_request);
		else
			restore_itimer(p, &p->timers[i]);
	}
	/* the program's own timer_create calls must not ask for ids */
	if (by_request)
		raw_syscall5(NR_prctl, PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0);
}

__attribute__((section(".text.entry"), noreturn, used)) void final_entry(struct plan *p)
{
	/* 1. park the vDSO in the hole, then clear the address space */
	move_special(p, p->special_cur, p->special_slot);
	if (p->blob_start > 0)
		raw_syscall2(NR_munmap, 0, p->blob_start);
	raw_syscall2(NR_munmap, p->blob_end, p->unmap_top - p->blob_end);

	/* 2-3. the program's memory, then its vDSO */
	for (uint32_t i = 0; i < p->nareas; i++)
		map_area(p, &p->areas[i]);
	unmap_staged_copies(p);
	move_special(p, p->special_slot, p->special_target);

	/* 4. process-wide state */
	restore_mm(p);
	for (uint32_t i = 0; i < p->nclose; i++)
		raw_syscall1(NR_close, p->close_fds[i]);
	restore_sigactions(p);
	if (p->restore_info_addr)
		memcpy((void *)p->restore_info_addr, &p->restore_info, sizeof p->restore_info);

	struct plan_thread *main_thread = 0;
	for (uint32_t i = 0; i < p->nthreads; i++) {
		struct plan_thread *pt = &p->threads[i];
		if (pt->t.flags & CKPT_THREAD_MAIN) {
			main_thread = pt;
			continue;
		}
		long r = spawn_thread(p, pt);
		if (failed(r))
			die(p, "cannot recreate thread (tid as address)", (uint64_t)pt->t.tid, r);
		pt->new_tid = r;
	}
	/* every thread must have left the blob's code for its own before the
	 * main thread, the last, returns to the program */
	uint32_t want = p->nthreads - 1;
	for (;;) {
		uint32_t n = __atomic_load_n(&p->threads_started, __ATOMIC_SEQ_CST);
		if (n >= want)
			break;
		raw_syscall4(NR_futex, &p->threads_started, FUTEX_WAIT_PRIVATE, n, 0);
	}
	/* Pending signals come back pending: this thread still blocks them
	 * all, the others get theirs whatever their masks (a blocked one
	 * stays pending, as it was). Those with a siginfo come with it, in
	 * the order they were queued. */
	long pid = raw_syscall0(NR_getpid);
	main_thread->new_tid = pid;
	restore_timers(p);
	for (uint32_t i = 0; i < p->nsiginfo; i++) {
		struct ckpt_siginfo *s = &p->siginfo[i];
		long tid = s->tid ? tid_now(p, s->tid) : 0;
		long r = tid ? raw_syscall4(NR_rt_tgsigqueueinfo, pid, tid, s->signo, s->info)
			     : raw_syscall3(NR_rt_sigqueueinfo, pid, s->signo, s->info);
		/* another thread's signal with a kill()-like or kernel code may
		 * only be queued by that thread: it comes back without */
		if (r == -1 /* EPERM */ && tid)
			raw_syscall3(NR_tgkill, pid, tid, s->signo);
	}
	for (uint32_t i = 0; i < p->nthreads; i++)
		for (int sig = 1; sig <= CKPT_NSIG; sig++)
			if (p->threads[i].t.sigpending & (1ull << (sig - 1)))
				raw_syscall3(NR_tgkill, pid, p->threads[i].new_tid, sig);
	for (int sig = 1; sig <= CKPT_NSIG; sig++)
		if (p->shared_pending & (1ull << (sig - 1)))
			raw_syscall2(NR_kill, pid, sig);
	const struct ckpt_thread *t = &main_thread->t;
	if (p->new_ids && p->tid_offset >= 0)
		*(volatile int32_t *)(t->fs_base + (uint64_t)p->tid_offset) =
		    (int32_t)raw_syscall0(NR_getpid);
	raw_syscall2(NR_arch_prctl, ARCH_SET_FS, t->fs_base);
	if (t->gs_base)
		raw_syscall2(NR_arch_prctl, ARCH_SET_GS, t->gs_base);
	raw_syscall1(NR_set_tid_address, t->clear_child_tid);
	raw_syscall1(NR_close, p->err_fd);
	thread_kernel_state(p, main_thread);
	sigreturn_to(t->frame);
}

#pragma GCC visibility pop
