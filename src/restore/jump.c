/* The hand-over to the final stage: no signal may arrive from here on
 * (the program's handlers are not in place yet), glibc's rseq area of this
 * thread is about to be unmapped so the kernel must forget it, and the
 * stack moves into the blob region. */
#include <signal.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "restore/restore.h"

#define RSEQ_FLAG_UNREGISTER 1

void hand_over(struct plan *plan)
{
	uint64_t all = ~0ull;
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, 8);
	if (__rseq_size > 0) {
		void *area = (char *)__builtin_thread_pointer() + __rseq_offset;
		/* glibc registers 32 bytes even where it advertises fewer */
		if (syscall(SYS_rseq, area, 32, RSEQ_FLAG_UNREGISTER, 0x53053053) != 0)
			syscall(SYS_rseq, area, __rseq_size, RSEQ_FLAG_UNREGISTER, 0x53053053);
	}
	/* the main stack is the last part of the stacks, after the threads' */
	uint64_t stack_top = plan->threads[plan->nthreads - 1].stack_top + (256ull << 10);
	final_entry_fn entry = (final_entry_fn)(uintptr_t)plan->blob_start;
	__asm__ volatile("mov %0, %%rsp\n\t"
			 "mov %1, %%rdi\n\t"
			 "call *%2\n\t"
			 "ud2"
			 :
			 : "r"(stack_top & ~15ull), "r"(plan), "r"(entry)
			 : "memory");
	__builtin_unreachable();
}
