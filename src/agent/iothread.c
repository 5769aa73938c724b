/* The image writer's I/O thread: while the checkpoint thread copies,
 * checksums and compresses the next buffer, this one writes the previous
 * buffer to the file, so the work overlaps the disk. It is a bare kernel
 * thread (raw clone, no glibc thread state): it only makes raw system
 * calls, which is all that is safe while the program's threads are
 * stopped or, in a copy-on-write child, absent. */
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>

#include "agent/agent.h"
#include "common/rawsys.h"
#include "image/writer.h"

#define IO_STACK (64u << 10)

enum { IO_IDLE, IO_WORK, IO_DONE, IO_QUIT };

struct io_thread {
	_Atomic uint32_t state;
	_Atomic int32_t tid; /* cleared by the kernel when the thread exits */
	const char *buf;
	size_t len;
	uint64_t off;
	int fd;
	int err;
	struct ckpt_writer_io ops;
};

static void futex_wait(_Atomic uint32_t *a, uint32_t v)
{
	raw_syscall4(SYS_futex, a, FUTEX_WAIT, v, 0);
}

static void futex_wake(_Atomic uint32_t *a)
{
	raw_syscall3(SYS_futex, a, FUTEX_WAKE, 1);
}

static void write_job(struct io_thread *t)
{
	const char *p = t->buf;
	size_t len = t->len;
	uint64_t off = t->off;
	while (len) {
		long n = raw_syscall4(SYS_pwrite64, t->fd, p, len, off);
		if (n == -4 /* EINTR */)
			continue;
		if (n <= 0) {
			t->err = n < 0 ? (int)-n : 5 /* EIO */;
			return;
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
}

__attribute__((noreturn, used)) void io_thread_main(struct io_thread *t);
__attribute__((noreturn, used)) void io_thread_main(struct io_thread *t)
{
	for (;;) {
		uint32_t st = atomic_load(&t->state);
		if (st == IO_WORK) {
			if (!t->err)
				write_job(t);
			atomic_store(&t->state, IO_DONE);
			futex_wake(&t->state);
		} else if (st == IO_QUIT) {
			for (;;)
				raw_syscall1(SYS_exit, 0);
		} else {
			futex_wait(&t->state, st);
		}
	}
}

static void io_submit(void *ctx, const char *buf, size_t len, uint64_t off)
{
	struct io_thread *t = ctx;
	t->buf = buf;
	t->len = len;
	t->off = off;
	atomic_store(&t->state, IO_WORK);
	futex_wake(&t->state);
}

static int io_wait(void *ctx)
{
	struct io_thread *t = ctx;
	uint32_t st;
	while ((st = atomic_load(&t->state)) == IO_WORK)
		futex_wait(&t->state, st);
	atomic_store(&t->state, IO_IDLE);
	return t->err;
}

static long spawn(struct io_thread *t, char *stack_top)
{
	long ret;
	register long r10 __asm__("r10") = (long)&t->tid; /* child_tid */
	register long r8 __asm__("r8") = 0;		  /* tls: unchanged */
	register uint64_t r12 __asm__("r12") = (uint64_t)t;
	long flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
		     CLONE_SYSVSEM | CLONE_CHILD_CLEARTID | CLONE_PARENT_SETTID;
	__asm__ volatile("syscall\n\t"
			 "test %%rax, %%rax\n\t"
			 "jnz 1f\n\t"
			 "mov %%r12, %%rdi\n\t"
			 "and $-16, %%rsp\n\t"
			 "call io_thread_main\n\t"
			 "ud2\n"
			 "1:"
			 : "=a"(ret)
			 : "a"(SYS_clone), "D"(flags), "S"(stack_top), "d"(&t->tid), "r"(r10),
			   "r"(r8), "r"(r12)
			 : "rcx", "r11", "memory");
	return ret;
}

struct io_thread *io_thread_start(struct scratch *s, int fd)
{
	struct io_thread *t = scratch_alloc(s, sizeof *t);
	char *stack = scratch_alloc(s, IO_STACK);
	if (!t || !stack)
		return 0;
	mem_zero(t, sizeof *t);
	t->fd = fd;
	t->ops.submit = io_submit;
	t->ops.wait = io_wait;
	t->ops.ctx = t;
	if (spawn(t, stack + IO_STACK - 64) < 0)
		return 0;
	return t;
}

const struct ckpt_writer_io *io_thread_ops(struct io_thread *t)
{
	return &t->ops;
}

/* Ends the thread and waits until the kernel has released it, so that its
 * stack (scratch memory) may go. */
void io_thread_stop(struct io_thread *t)
{
	if (!t)
		return;
	io_wait(t);
	atomic_store(&t->state, IO_QUIT);
	futex_wake(&t->state);
	int32_t tid;
	while ((tid = atomic_load(&t->tid)) != 0)
		raw_syscall4(SYS_futex, &t->tid, FUTEX_WAIT, tid, 0);
}
