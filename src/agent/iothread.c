/* The image writer's I/O thread: while the checkpoint thread copies,
 * checksums and compresses the next buffer, this one writes the previous
 * buffer to the file and does the write-behind that follows (writeback,
 * the read-back check, dropping from the cache: ckpt_writer_behind), so
 * the work overlaps the disk and the writer's. It is a bare kernel
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
	struct ckpt_writer *w;
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
		long n = raw_syscall4(SYS_pwrite64, t->w->fd, p, len, off);
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

static __attribute__((noreturn)) void io_thread_main(void *arg)
{
	struct io_thread *t = arg;
	for (;;) {
		uint32_t st = atomic_load(&t->state);
		if (st == IO_WORK) {
			if (!t->err)
				write_job(t);
			if (!t->err) /* the buffer is the writer's, free till wait */
				t->err = ckpt_writer_behind(t->w, (char *)t->buf, t->off + t->len);
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

static int io_idle(void *ctx)
{
	struct io_thread *t = ctx;
	return atomic_load(&t->state) != IO_WORK;
}

struct io_thread *io_thread_start(struct scratch *s, struct ckpt_writer *w)
{
	struct io_thread *t = scratch_alloc(s, sizeof *t);
	char *stack = scratch_alloc(s, IO_STACK);
	if (!t || !stack)
		return 0;
	mem_zero(t, sizeof *t);
	t->w = w;
	t->ops.submit = io_submit;
	t->ops.wait = io_wait;
	t->ops.idle = io_idle;
	t->ops.ctx = t;
	if (raw_thread_start(stack + IO_STACK - 64, &t->tid, io_thread_main, t) < 0)
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
