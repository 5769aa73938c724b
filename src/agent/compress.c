/* zstd compression of page chunks, inside the checkpoint (no malloc: zstd
 * gets its memory from the checkpoint's scratch arena through a custom
 * allocator). Chunks are compressed in batches by several threads: the
 * writing thread and bare worker threads (raw clone, like the I/O
 * thread), one zstd context each. The workers are started in the process
 * that writes (the copy-on-write child, or the stopped program) at the
 * first batch, and stopped by compress_stop before the scratch goes. */
#define ZSTD_STATIC_LINKING_ONLY
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <zstd.h>

#include "agent/agent.h"
#include "common/rawsys.h"
#include "image/writer.h"

#define MAX_WORKERS 7
#define JOBS_PER_THREAD 2 /* in each of the two sets */
#define WORKER_STACK (256u << 10)
#define WORKER_ARENA (64u << 20)

static void *arena_alloc(void *opaque, size_t size)
{
	return scratch_alloc(opaque, size);
}

static void arena_free(void *opaque, void *p)
{
	(void)opaque;
	(void)p; /* the whole arena goes when the checkpoint ends */
}

struct zworker {
	_Atomic int32_t tid; /* cleared by the kernel when the thread exits */
	ZSTD_CCtx *cctx;
	struct scratch arena; /* zstd's memory, this thread's own */
	char *stack;
	struct zpool *pool;
};

struct zpool {
	_Atomic uint32_t gen; /* futex: bumped for each batch, and to quit */
	_Atomic int quit;
	/* The batch being compressed. ticket holds its number (high 32 bits)
	 * and the next job to take (low 32 bits): a thread takes job i of
	 * batch b only by moving the ticket from (b, i) to (b, i + 1), so a
	 * thread still busy with a finished batch can never take a job of the
	 * next one, nor one twice. Batches alternate between two slots. */
	_Atomic uint64_t ticket;
	struct ckpt_zjob *jobs[2];
	_Atomic int n[2], done[2];
	uint32_t batch; /* the writer's count of batches started */
	_Atomic uint32_t done_futex;
	uint32_t done_seen; /* done_futex when the batch started */
	ZSTD_CCtx *cctx;    /* the writing thread's */
	int nworkers, started;
	struct zworker w[MAX_WORKERS];
};

static struct zpool *pool;

static void futex_wait(_Atomic uint32_t *a, uint32_t v)
{
	raw_syscall4(SYS_futex, a, FUTEX_WAIT, v, 0);
}

static void futex_wake(_Atomic uint32_t *a)
{
	raw_syscall3(SYS_futex, a, FUTEX_WAKE, 0x7fffffff);
}

static void compress_one(ZSTD_CCtx *cctx, struct ckpt_zjob *j)
{
	size_t len = (size_t)j->npages * CKPT_PAGE_SIZE;
	size_t n = ZSTD_compress2(cctx, j->out, j->out_cap, j->raw, len);
	/* below 3% saved, the cost of decompressing is not worth it */
	j->zlen = ZSTD_isError(n) || n > len - len / 32 ? 0 : n;
}

/* Take jobs until none is left; the last one done wakes the writer. */
static void run_jobs(struct zpool *p, ZSTD_CCtx *cctx)
{
	uint64_t t = atomic_load(&p->ticket);
	for (;;) {
		int slot = (int)(t >> 32) & 1, i = (int)(uint32_t)t;
		if (i >= atomic_load(&p->n[slot]))
			return;
		if (!atomic_compare_exchange_weak(&p->ticket, &t, t + 1))
			continue; /* t now holds the ticket as it is */
		compress_one(cctx, &p->jobs[slot][i]);
		if (atomic_fetch_add(&p->done[slot], 1) + 1 == atomic_load(&p->n[slot])) {
			atomic_fetch_add(&p->done_futex, 1);
			futex_wake(&p->done_futex);
		}
		t = atomic_load(&p->ticket);
	}
}

static __attribute__((noreturn)) void zworker_main(void *arg)
{
	struct zworker *w = arg;
	struct zpool *p = w->pool;
	uint32_t seen = atomic_load(&p->gen);
	for (;;) {
		uint32_t g = atomic_load(&p->gen);
		if (atomic_load(&p->quit))
			for (;;)
				raw_syscall1(SYS_exit, 0);
		if (g == seen) {
			futex_wait(&p->gen, g);
			continue;
		}
		seen = g;
		run_jobs(p, w->cctx);
	}
}

static void start_workers(struct zpool *p)
{
	p->started = 1;
	int n = 0;
	for (int i = 0; i < p->nworkers; i++)
		if (raw_thread_start(p->w[i].stack + WORKER_STACK - 64, &p->w[i].tid, zworker_main,
				     &p->w[i]) > 0)
			n++;
		else
			break;
	p->nworkers = n; /* fewer threads: the rest is done by those there are */
}

/* A batch starts: the workers are woken and take its jobs while the
 * writing thread collects the next (writer.c). */
static void compress_start(void *ctx, struct ckpt_zjob *jobs, int n)
{
	struct zpool *p = ctx;
	if (!p->started)
		start_workers(p);
	uint32_t b = ++p->batch;
	int slot = (int)(b & 1);
	p->jobs[slot] = jobs;
	atomic_store(&p->n[slot], n);
	atomic_store(&p->done[slot], 0);
	p->done_seen = atomic_load(&p->done_futex);
	atomic_store(&p->ticket, (uint64_t)b << 32); /* publishes the batch */
	atomic_fetch_add(&p->gen, 1);
	futex_wake(&p->gen);
}

/* Takes every job of the batch no thread has started, leaving them
 * uncompressed (zlen 0: stored raw). */
static void skip_untaken(struct zpool *p, int slot, int n)
{
	uint64_t t = atomic_load(&p->ticket);
	for (;;) {
		int i = (int)(uint32_t)t;
		if ((int)(t >> 32 & 1) != slot || i >= n)
			return;
		if (!atomic_compare_exchange_weak(&p->ticket, &t,
						  (t & ~0xffffffffull) | (uint32_t)n))
			continue;
		for (int k = i; k < n; k++)
			p->jobs[slot][k].zlen = 0;
		atomic_fetch_add(&p->done[slot], n - i);
		return;
	}
}

/* The batch started last: the writing thread takes the jobs still
 * untaken (or, skip, leaves them uncompressed), then waits until the
 * last one is done. */
static void compress_wait(void *ctx, int skip)
{
	struct zpool *p = ctx;
	int slot = (int)(p->batch & 1), n = atomic_load(&p->n[slot]);
	if (skip)
		skip_untaken(p, slot, n);
	run_jobs(p, p->cctx);
	uint32_t seen = p->done_seen;
	while (atomic_load(&p->done[slot]) < n) {
		futex_wait(&p->done_futex, seen);
		seen = atomic_load(&p->done_futex);
	}
}

static int online_cpus(void)
{
	uint64_t mask[16] = {0};
	long len = raw_syscall3(SYS_sched_getaffinity, 0, sizeof mask, mask);
	int n = 0;
	for (long i = 0; i < len / 8; i++)
		n += __builtin_popcountll(mask[i]);
	return n > 0 ? n : 1;
}

static ZSTD_CCtx *new_cctx(struct scratch *arena, int level)
{
	ZSTD_customMem mem = {arena_alloc, arena_free, arena};
	ZSTD_CCtx *c = ZSTD_createCCtx_advanced(mem);
	if (!c)
		return 0;
	ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
	/* the chunk crc covers the stored frame; the frame's content checksum
	 * covers what it decodes to (a compressor or memory fault) */
	ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
	return c;
}

int compress_setup(struct ckpt_writer *w, struct scratch *s, int level)
{
	pool = 0;
	if (level <= 0)
		return 0;
	struct zpool *p = scratch_alloc(s, sizeof *p);
	if (!p)
		return -1;
	mem_zero(p, sizeof *p);
	p->cctx = new_cctx(s, level);
	if (!p->cctx)
		return -1;
	int workers = online_cpus() - 1;
	if (workers > MAX_WORKERS)
		workers = MAX_WORKERS;
	for (int i = 0; i < workers; i++) {
		struct zworker *z = &p->w[i];
		z->pool = p;
		z->arena.base = scratch_alloc(s, WORKER_ARENA);
		z->arena.size = WORKER_ARENA;
		z->stack = scratch_alloc(s, WORKER_STACK);
		z->cctx = z->arena.base && z->stack ? new_cctx(&z->arena, level) : 0;
		if (!z->cctx)
			break;
		p->nworkers++;
	}
	/* two sets (writer.c): one compressing, one being collected */
	int njobs = 2 * JOBS_PER_THREAD * (p->nworkers + 1);
	size_t raw = CKPT_CHUNK_PAGES_MAX * CKPT_PAGE_SIZE, out = ZSTD_compressBound(raw);
	struct ckpt_zjob *jobs = scratch_alloc(s, (size_t)njobs * sizeof *jobs);
	if (!jobs)
		return -1;
	for (int i = 0; i < njobs; i++) {
		mem_zero(&jobs[i], sizeof jobs[i]);
		jobs[i].raw = scratch_alloc(s, raw);
		jobs[i].out = scratch_alloc(s, out);
		jobs[i].raw_cap = raw;
		jobs[i].out_cap = out;
		if (!jobs[i].raw || !jobs[i].out)
			return -1;
	}
	ckpt_writer_set_batch_compressor(w, compress_start, compress_wait, p, jobs, njobs);
	pool = p;
	return 0;
}

/* Ends the workers and waits until the kernel has released them, so that
 * their stacks (scratch memory) may go. */
void compress_stop(void)
{
	struct zpool *p = pool;
	pool = 0;
	if (!p || !p->started)
		return;
	atomic_store(&p->quit, 1);
	atomic_fetch_add(&p->gen, 1);
	futex_wake(&p->gen);
	for (int i = 0; i < p->nworkers; i++) {
		int32_t tid;
		while ((tid = atomic_load(&p->w[i].tid)) != 0)
			raw_syscall4(SYS_futex, &p->w[i].tid, FUTEX_WAIT, tid, 0);
	}
}
