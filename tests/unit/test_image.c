/* Image codec test: writes a synthetic image with the writer, reads it
 * back with the reader, then checks that truncation, byte flips, a foreign
 * format version or architecture and inconsistent records are refused.
 *
 *   test_image                  run the tests (exit status 0 on success)
 *   test_image --write-seed DIR write small valid images (fuzzing corpus) */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"

#include <zstd.h>
#include "image/reader.h"
#include "image/writer.h"

static int failures;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			failures++;                                                                \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);            \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
		}                                                                                  \
	} while (0)

/* ---- the synthetic program ---- */

enum variant {
	V_GOOD,
	V_SMALL, /* one thread, one area, one chunk, no fds */
	V_AREA_OVERLAP,
	V_AREA_UNALIGNED,
	V_AREA_KIND,
	V_CHUNK_OUTSIDE,
	V_CHUNK_AREA_INDEX,
	V_STRING_RANGE,
	V_TWO_MAINS,
	V_NO_MAIN,
	V_FD_DATA_RANGE,
	V_PROCESS_SIZE,
	V_PAGES_SAVED,
	V_REFS,		     /* chunk 2 is a reference to the parent, with PAGE_HASHES */
	V_REFS_NO_PARENT,    /* the same in an image that names no parent */
	V_RUNS_ORDER,	     /* V_REFS with overlapping PAGE_RUNS */
	V_TIMERS,	     /* V_GOOD with an interval timer and a POSIX timer */
	V_TIMER_THREAD,	     /* the POSIX timer signals a thread not in the image */
	V_TIMER_TWICE,	     /* two ITIMER_REAL */
	V_TIMER_NSEC,	     /* a time with 10^9 nanoseconds */
	V_SIGINFO_THREAD,    /* a pending signal for a thread not in the image */
	V_SIGINFO_SIGNO,     /* a pending signal whose siginfo names another */
	V_FILE_SAVED,	     /* a file saved whole (aux 1) with FD_DATA shorter than it */
	V_FILE_AUX,	     /* a file with aux 3 */
	V_SHARED_FILE,	     /* a file mapped shared and writable, its content in FD_DATA */
	V_SHARED_FILE_RANGE, /* the same with its content past the end of FD_DATA */
	V_SCHED,	     /* thread 1 bound to CPUs 1 and 9, with nice 5 */
	V_SCHED_TID,	     /* the same for a thread not in the image */
	V_SCHED_EMPTY,	     /* an affinity without a CPU */
	V_SCHED_TWICE,	     /* two records for one thread */
	V_PIDFD,	     /* fd 3 is a pidfd of pid 42 */
	V_INOTIFY,	   /* fd 3 is an inotify with watches 2 (/tmp/data) and 3 (path unknown) */
	V_INOTIFY_PATH,	   /* ... watch 2's path outside STRINGS */
	V_INOTIFY_PARTIAL, /* ... its records cut short */
	V_NVARIANTS
};

static const char strings[] = "\0/home/user\0/usr/bin/prog\0[heap]\0/tmp/data\0[stack]";
#define STR_CWD 1
#define STR_EXE 12
#define STR_HEAP 26
#define STR_DATA 33
#define STR_STACK 43

static const char fd_data[] = "bytes queued in a pipe";
static const struct ckpt_inotify_watch watches[2] = {{2, 0x300, STR_DATA, 0}, {3, 0x100, 0, 0}};

#define NTHREADS 3
#define NAREAS 4
#define NFDS 5

struct program {
	struct ckpt_image_header hdr;
	struct ckpt_process process;
	struct ckpt_thread threads[NTHREADS];
	struct ckpt_sigaction sigactions[CKPT_NSIG];
	struct ckpt_area areas[NAREAS];
	struct ckpt_fd fds[NFDS];
	struct ckpt_timer timers[2];
	struct ckpt_siginfo siginfo[2];
	struct ckpt_shared_file shared[1];
	struct ckpt_thread_sched sched[2];
	uint32_t nthreads, nareas, nfds, ntimers, nsiginfo, nshared, nsched;
};

/* Chunks: (area, first page index in the area, npages). */
struct chunk_spec {
	uint32_t area, page, npages;
};
static const struct chunk_spec chunks[] = {{0, 0, 1}, {1, 0, 2}, {1, 5, 1}, {3, 1, 2}};
#define NCHUNKS (sizeof chunks / sizeof chunks[0])

static void page_pattern(unsigned char *p, uint64_t addr)
{
	for (unsigned i = 0; i < CKPT_PAGE_SIZE; i++)
		p[i] = (unsigned char)(addr >> 12) * 31 + (unsigned char)i;
}

static void make_header(struct program *pg)
{
	struct ckpt_image_header *h = &pg->hdr;
	memcpy(h->magic, CKPT_IMAGE_MAGIC, CKPT_IMAGE_MAGIC_LEN);
	h->format_version = CKPT_FORMAT_VERSION;
	h->header_size = sizeof *h;
	strcpy(h->arch, "x86_64");
	strcpy(h->kernel_release, "6.1.0-test");
	strcpy(h->ckpt_version, "0.1.0");
	h->generation = 3;
	h->time_ns = 1700000000123456789ull;
	h->pid = 100;
	h->nthreads = pg->nthreads;
	h->xcr0 = 0x2e7;
	h->cpuid_1_ecx = 0x7ffafbff;
	h->cpuid_7_ebx = 0x209c01a9;
}

static void make_process(struct program *pg)
{
	struct ckpt_process *p = &pg->process;
	p->pid = 100;
	p->ppid = 1;
	p->umask = 022;
	p->start_code = 0x400000;
	p->end_code = 0x401000;
	p->start_brk = p->brk = 0x600000;
	p->start_stack = 0x7ffff000 - 64;
	p->auxv[0] = 6; /* AT_PAGESZ */
	p->auxv[1] = 4096;
	p->auxv_words = 4; /* ends with AT_NULL */
	p->rseq_offset = -32;
	p->rseq_size = 32;
	p->rseq_sig = 0x53053053;
	p->restore_info_addr = 0x600100;
	p->agent_fd = -1;
	p->nrlimits = CKPT_NRLIMITS;
	for (int i = 0; i < CKPT_NRLIMITS; i++)
		p->rlimits[i] = (struct ckpt_rlimit){i * 10, ~0ull};
	p->cwd_str = STR_CWD;
	p->exe_str = STR_EXE;
	strcpy(p->comm, "prog");
	p->vdso_start = 0x7ffff7fc1000;
}

static void make_threads(struct program *pg)
{
	for (uint32_t i = 0; i < NTHREADS; i++) {
		struct ckpt_thread *t = &pg->threads[i];
		t->tid = 100 + (int32_t)i;
		t->flags = i == 0 ? CKPT_THREAD_MAIN : i == 1 ? CKPT_THREAD_AGENT : 0;
		t->fs_base = 0x7f0000000000ull + i * 0x10000;
		t->frame = 0x7ffff000 - 0x1000 * i;
		t->robust_len = 24;
		t->altstack_flags = 2; /* SS_DISABLE */
		t->rseq_registered = 1;
		snprintf(t->comm, sizeof t->comm, "thread%u", i);
	}
}

/* When set, the heap area holds this many one-page chunks, every other
 * page, instead of chunks 1 and 2 (as an incremental generation does). */
static unsigned scattered;
/* scattered pages partly written as references: every other one, and a
 * long run of them (more than the writer queues between two jobs) */
static int scattered_refs;
#define SCATTERED_MAX 4096u
#define SCATTERED_BASE 0x600000ull

static void make_areas(struct program *pg)
{
	static const struct ckpt_area a[NAREAS] = {
	    {.start = 0x400000,
	     .end = 0x402000,
	     .prot = 5,
	     .kind = CKPT_AREA_FILE_PRIVATE,
	     .flags = CKPT_AREA_FROM_FILE,
	     .name_str = STR_EXE,
	     .ino = 42,
	     .pages_saved = 1},
	    {.start = 0x600000,
	     .end = 0x610000,
	     .prot = 3,
	     .kind = CKPT_AREA_ANON,
	     .flags = CKPT_AREA_HEAP,
	     .name_str = STR_HEAP,
	     .pages_saved = 3},
	    {.start = 0x7ffff7fc1000, .end = 0x7ffff7fc3000, .prot = 5, .kind = CKPT_AREA_VDSO},
	    {.start = 0x7ffffffde000,
	     .end = 0x7ffffffff000,
	     .prot = 3,
	     .kind = CKPT_AREA_ANON,
	     .flags = CKPT_AREA_GROWSDOWN,
	     .name_str = STR_STACK,
	     .pages_saved = 2},
	};
	memcpy(pg->areas, a, sizeof a);
	if (scattered) {
		pg->areas[1].end = SCATTERED_BASE + 2ull * scattered * CKPT_PAGE_SIZE;
		pg->areas[1].pages_saved = scattered;
	}
}

static void make_fds(struct program *pg)
{
	for (int i = 0; i < 3; i++)
		pg->fds[i] = (struct ckpt_fd){.fd = i, .kind = CKPT_FD_STDIO, .aux = (uint32_t)i};
	pg->fds[3] = (struct ckpt_fd){.fd = 3,
				      .kind = CKPT_FD_FILE,
				      .open_flags = O_RDWR,
				      .fd_flags = FD_CLOEXEC,
				      .offset = 1234,
				      .ino = 77,
				      .size = 5000,
				      .path_str = STR_DATA};
	pg->fds[4] = (struct ckpt_fd){.fd = 7,
				      .kind = CKPT_FD_PIPE,
				      .pipe_id = 9999,
				      .data_off = 0,
				      .data_len = sizeof fd_data - 1};
}

static void make_program(struct program *pg, enum variant v)
{
	memset(pg, 0, sizeof *pg);
	pg->nthreads = v == V_SMALL ? 1 : NTHREADS;
	pg->nareas = v == V_SMALL ? 1 : NAREAS;
	pg->nfds = v == V_SMALL ? 0 : NFDS;
	make_header(pg);
	make_process(pg);
	make_threads(pg);
	for (int i = 0; i < CKPT_NSIG; i++)
		pg->sigactions[i] =
		    (struct ckpt_sigaction){i ? 0x401000 + i : 0, i, 0x401800, 1ull << i};
	make_areas(pg);
	make_fds(pg);
	if (v == V_AREA_OVERLAP)
		pg->areas[1].start = 0x401000;
	if (v == V_AREA_UNALIGNED)
		pg->areas[3].end -= 8;
	if (v == V_AREA_KIND)
		pg->areas[2].kind = 99;
	if (v == V_STRING_RANGE)
		pg->fds[3].path_str = sizeof strings + 10;
	if (v == V_TWO_MAINS)
		pg->threads[2].flags = CKPT_THREAD_MAIN;
	if (v == V_NO_MAIN)
		pg->threads[0].flags = 0;
	if (v == V_FD_DATA_RANGE)
		pg->fds[4].data_len = sizeof fd_data + 1;
	if (v == V_PAGES_SAVED)
		pg->areas[1].pages_saved = 2;
	if (v == V_SMALL)
		pg->areas[0].pages_saved = 1;
	if (v == V_REFS || v == V_RUNS_ORDER)
		pg->hdr.parent_generation = 2;
	if (v >= V_TIMERS && v <= V_SIGINFO_SIGNO) {
		pg->nsiginfo = 2;
		pg->siginfo[0] = (struct ckpt_siginfo){.tid = pg->threads[1].tid, .signo = 34};
		pg->siginfo[1] = (struct ckpt_siginfo){.tid = 0, .signo = 14};
		pg->siginfo[0].info[0] = 34;
		pg->siginfo[1].info[0] = 14;
		pg->ntimers = 2;
		pg->timers[0] = (struct ckpt_timer){
		    .kind = CKPT_TIMER_REAL, .value_nsec = 500000000, .interval_nsec = 100000000};
		pg->timers[1] = (struct ckpt_timer){.kind = CKPT_TIMER_POSIX,
						    .id = 3,
						    .clockid = 1,
						    .signo = 34,
						    .notify = 4,
						    .notify_tid = pg->threads[1].tid,
						    .sigval = 0x1234,
						    .value_sec = 1};
	}
	if (v == V_TIMER_THREAD)
		pg->timers[1].notify_tid = 99999;
	if (v == V_TIMER_TWICE)
		pg->timers[1] = pg->timers[0];
	if (v == V_TIMER_NSEC)
		pg->timers[0].interval_nsec = 1000000000;
	if (v == V_SIGINFO_THREAD)
		pg->siginfo[0].tid = 99999;
	if (v == V_SIGINFO_SIGNO)
		pg->siginfo[1].info[0] = 15;
	if (v == V_FILE_SAVED) {
		pg->fds[3].aux = 1;
		pg->fds[3].data_len = sizeof fd_data - 1; /* not its 5000 bytes */
	}
	if (v == V_FILE_AUX)
		pg->fds[3].aux = 3;
	if (v == V_PIDFD)
		pg->fds[3] = (struct ckpt_fd){.fd = 3,
					      .kind = CKPT_FD_PIDFD,
					      .open_flags = O_RDWR | O_NONBLOCK,
					      .offset = 42};
	if (v == V_INOTIFY || v == V_INOTIFY_PATH || v == V_INOTIFY_PARTIAL) {
		/* FD_DATA holds the watches then */
		pg->fds[3] =
		    (struct ckpt_fd){.fd = 3,
				     .kind = CKPT_FD_INOTIFY,
				     .open_flags = O_RDONLY,
				     .data_len = v == V_INOTIFY_PARTIAL ? 24 : sizeof watches};
		pg->fds[4].data_len = 0;
	}
	if (v == V_SHARED_FILE || v == V_SHARED_FILE_RANGE) {
		pg->nshared = 1;
		pg->shared[0] = (struct ckpt_shared_file){.dev = 0x803,
							  .ino = 4242,
							  .size = 5,
							  .mtime_ns = 1700000000000000000,
							  .path_str = STR_DATA,
							  .data_off = 6,
							  .data_len = 5};
		if (v == V_SHARED_FILE_RANGE)
			pg->shared[0].data_off = sizeof fd_data - 3;
	}
	if (v == V_SCHED || v == V_SCHED_TID || v == V_SCHED_EMPTY || v == V_SCHED_TWICE) {
		pg->nsched = 1;
		pg->sched[0] =
		    (struct ckpt_thread_sched){.tid = pg->threads[1].tid,
					       .flags = CKPT_SCHED_AFFINITY | CKPT_SCHED_NICE,
					       .nice = 5};
		pg->sched[0].cpus[0] = 0x02;
		pg->sched[0].cpus[1] = 0x02;
		if (v == V_SCHED_TID)
			pg->sched[0].tid = 99999;
		if (v == V_SCHED_EMPTY)
			pg->sched[0].cpus[0] = pg->sched[0].cpus[1] = 0;
		if (v == V_SCHED_TWICE) {
			pg->nsched = 2;
			pg->sched[1] = pg->sched[0];
		}
	}
}

static uint64_t chunk_addr(const struct program *pg, const struct chunk_spec *c, enum variant v)
{
	uint64_t addr = pg->areas[c->area].start + (uint64_t)c->page * CKPT_PAGE_SIZE;
	if (v == V_CHUNK_OUTSIDE && c == &chunks[2])
		addr = pg->areas[1].end; /* just past the area */
	return addr;
}

/* pages handed to the writer through ckpt_writer_slot where it gives one */
static int slot_jobs, slot_jobs_used;

static void write_pages(struct ckpt_writer *w, const struct program *pg, enum variant v)
{
	static unsigned char data[4 * CKPT_PAGE_SIZE];
	size_t n = v == V_SMALL ? 1 : NCHUNKS;

	ckpt_writer_begin_section(w, CKPT_SEC_PAGES);
	for (size_t i = 0; i < n; i++) {
		const struct chunk_spec *c = &chunks[i];
		uint64_t addr = chunk_addr(pg, c, v);
		if (scattered && c->area == 1) {
			for (unsigned k = 0; k < scattered && c->page == 0; k++) {
				addr = SCATTERED_BASE + 2ull * k * CKPT_PAGE_SIZE;
				page_pattern(data, addr);
				if (scattered_refs && (k % 2 || (k >= 1000 && k < 1600)))
					ckpt_writer_ref(w, 1, addr, 1);
				else
					ckpt_writer_chunk(w, 1, addr, data, 1);
			}
			continue;
		}
		for (uint32_t p = 0; p < c->npages; p++)
			page_pattern(data + p * CKPT_PAGE_SIZE, addr + p * CKPT_PAGE_SIZE);
		uint32_t area = v == V_CHUNK_AREA_INDEX && i == 3 ? 17 : c->area;
		void *slot = slot_jobs ? ckpt_writer_slot(w, c->npages) : NULL;
		if ((v == V_REFS || v == V_REFS_NO_PARENT || v == V_RUNS_ORDER) && i == 2) {
			ckpt_writer_ref(w, area, addr, c->npages); /* the slot is forgotten */
		} else if (slot) {
			memcpy(slot, data, (size_t)c->npages * CKPT_PAGE_SIZE);
			ckpt_writer_slot_commit(w, area, addr, c->npages);
			slot_jobs_used++;
		} else {
			ckpt_writer_chunk(w, area, addr, data, c->npages);
		}
	}
	ckpt_writer_end_section(w, 0);
	if (v == V_REFS || v == V_REFS_NO_PARENT || v == V_RUNS_ORDER) {
		struct ckpt_page_hash h[NCHUNKS];
		for (size_t i = 0; i < NCHUNKS; i++)
			h[i] = (struct ckpt_page_hash){chunk_addr(pg, &chunks[i], v), i, ~i};
		ckpt_writer_begin_section(w, CKPT_SEC_PAGE_HASHES);
		ckpt_writer_write(w, h, sizeof h);
		ckpt_writer_end_section(w, NCHUNKS);
		/* pages without hashes: in the stack area, after the hashed ones */
		uint64_t stack = pg->areas[3].start;
		struct ckpt_page_run r[2] = {{stack + 3 * CKPT_PAGE_SIZE, 2},
					     {stack + 8 * CKPT_PAGE_SIZE, 1}};
		if (v == V_RUNS_ORDER)
			r[1].addr = stack + 4 * CKPT_PAGE_SIZE; /* overlaps the first */
		ckpt_writer_begin_section(w, CKPT_SEC_PAGE_RUNS);
		ckpt_writer_write(w, r, sizeof r);
		ckpt_writer_end_section(w, 2);
	}
}

static void section(struct ckpt_writer *w, uint32_t type, const void *p, size_t len, uint32_t count)
{
	ckpt_writer_begin_section(w, type);
	ckpt_writer_write(w, p, len);
	ckpt_writer_end_section(w, count);
}

/* PAGE_INDEX: written unless indexed is 0 (images of earlier versions
 * have none); index_room limits its entries (0: one per chunk). */
static int indexed = 1;
static uint32_t index_room;

/* With compressed set, page chunks are written as the agent writes them
 * by default: zstd frames with a content checksum. With stored set, short
 * uncompressed runs (all of this image's) are written as zstd frames of
 * raw blocks, as the agent does; otherwise as padded raw chunks. */
static int compressed, stored;

static size_t zstd_chunk(void *ctx, void *dst, size_t cap, const void *src, size_t len)
{
	size_t n = ZSTD_compress2(ctx, dst, cap, src, len);
	return ZSTD_isError(n) ? 0 : n;
}

static void use_zstd(struct ckpt_writer *w)
{
	static ZSTD_CCtx *cctx;
	static char raw[4 * CKPT_PAGE_SIZE], out[2 * 4 * CKPT_PAGE_SIZE];
	if (!cctx) {
		cctx = ZSTD_createCCtx();
		ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
	}
	ckpt_writer_set_compressor(w, zstd_chunk, cctx, raw, sizeof raw, out, sizeof out);
}

/* compressed == 2: through the batch interface, as the agent's worker
 * threads do; the image must be byte for byte the same. */
static void zstd_batch(void *ctx, struct ckpt_zjob *jobs, int n)
{
	for (int i = n; i-- > 0;) /* any order: the writer keeps the file's */
		jobs[i].zlen = zstd_chunk(ctx, jobs[i].out, jobs[i].out_cap, jobs[i].raw,
					  (size_t)jobs[i].npages * CKPT_PAGE_SIZE);
}

/* compressed == 3: batches started and waited for later, as the agent
 * does (one set of jobs compressing while the next is collected): the
 * jobs are compressed only in the wait, so that a job written before it
 * shows (stored raw: the image differs). */
static struct ckpt_zjob *pending_jobs;
static int pending_n, async_batches;

static void zstd_start(void *ctx, struct ckpt_zjob *jobs, int n)
{
	(void)ctx;
	CHECK(!pending_jobs, "a batch started before the one before it was waited for");
	pending_jobs = jobs;
	pending_n = n;
	async_batches++;
}

static int skipped_batches;

/* skip: as the agent's compressor when the disk waits, the jobs not
 * started (here all of them) are left uncompressed */
static void zstd_wait(void *ctx, int skip)
{
	CHECK(pending_jobs != NULL, "a wait without a batch started");
	if (pending_jobs && !skip)
		zstd_batch(ctx, pending_jobs, pending_n);
	skipped_batches += pending_jobs && skip;
	pending_jobs = NULL;
}

/* An I/O "thread" that writes at once, and so is always idle: the disk
 * waits for the compressor. */
static int idle_fd;

static void idle_submit(void *ctx, const char *buf, size_t len, uint64_t off)
{
	(void)ctx;
	CHECK(pwrite(idle_fd, buf, len, (off_t)off) == (ssize_t)len, "idle_submit: %s",
	      strerror(errno));
}

static int idle_wait(void *ctx)
{
	(void)ctx;
	return 0;
}

static int idle_idle(void *ctx)
{
	(void)ctx;
	return 1;
}

static void use_zstd_batch(struct ckpt_writer *w, int async)
{
	static ZSTD_CCtx *cctx;
	static char raw[6][4 * CKPT_PAGE_SIZE], out[6][2 * 4 * CKPT_PAGE_SIZE];
	static struct ckpt_zjob jobs[6];
	if (!cctx) {
		cctx = ZSTD_createCCtx();
		ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
	}
	for (int i = 0; i < 6; i++)
		jobs[i] = (struct ckpt_zjob){.raw = raw[i],
					     .out = out[i],
					     .raw_cap = sizeof raw[i],
					     .out_cap = sizeof out[i]};
	if (async) /* two sets of 3 */
		ckpt_writer_set_batch_compressor(w, zstd_start, zstd_wait, cctx, jobs, 6);
	else
		ckpt_writer_set_batch_compressor(w, zstd_batch, NULL, cctx, jobs, 3);
}

static int verify(const char *path, char *err, size_t errlen);

/* recording > 0: the writer's operations are recorded into a buffer of
 * that many bytes and replayed before the image is finished */
static size_t recording;
static uint64_t recording_spilled;

/* Write the image of variant v to fd through a buffer of buf_size bytes. */
static int write_image(int fd, enum variant v, size_t buf_size)
{
	static char buf[1 << 16];
	struct program pg;
	struct ckpt_writer w;
	struct ckpt_writer_record rec = {recording ? malloc(recording) : NULL, recording, 0, 0};

	make_program(&pg, v);
	ckpt_writer_init(&w, fd, buf_size ? buf : NULL, buf_size);
	if (rec.buf)
		ckpt_writer_record(&w, &rec);
	if (!stored)
		w.stored_max_pages = 0;
	static struct ckpt_chunk_entry entries[NCHUNKS + SCATTERED_MAX];
	if (indexed)
		ckpt_writer_set_index(&w, entries, index_room ? index_room : NCHUNKS + scattered);
	if (compressed == 1)
		use_zstd(&w);
	else if (compressed >= 2)
		use_zstd_batch(&w, compressed >= 3);
	if (compressed == 4 && buf_size) { /* --compress auto, the disk waiting */
		static char spare[sizeof buf];
		static const struct ckpt_writer_io idle_io = {idle_submit, idle_wait, idle_idle,
							      NULL};
		idle_fd = fd;
		ckpt_writer_set_io(&w, &idle_io, spare);
		w.adaptive = 1;
	}
	size_t plen = sizeof pg.process - (v == V_PROCESS_SIZE ? 8 : 0);
	section(&w, CKPT_SEC_PROCESS, &pg.process, plen, 1);
	section(&w, CKPT_SEC_THREADS, pg.threads, pg.nthreads * sizeof *pg.threads, pg.nthreads);
	section(&w, CKPT_SEC_SIGACTIONS, pg.sigactions, sizeof pg.sigactions, CKPT_NSIG);
	section(&w, CKPT_SEC_STRINGS, strings, sizeof strings, 0);
	section(&w, CKPT_SEC_AREAS, pg.areas, pg.nareas * sizeof *pg.areas, pg.nareas);
	if (v != V_SMALL) {
		struct ckpt_inotify_watch iw[2];
		memcpy(iw, watches, sizeof iw);
		if (v == V_INOTIFY_PATH)
			iw[0].path_str = sizeof strings + 3;
		if (v == V_INOTIFY || v == V_INOTIFY_PATH || v == V_INOTIFY_PARTIAL)
			section(&w, CKPT_SEC_FD_DATA, iw, sizeof iw, 0);
		else
			section(&w, CKPT_SEC_FD_DATA, fd_data, sizeof fd_data - 1, 0);
		section(&w, CKPT_SEC_FDS, pg.fds, pg.nfds * sizeof *pg.fds, pg.nfds);
	}
	if (pg.ntimers)
		section(&w, CKPT_SEC_TIMERS, pg.timers, pg.ntimers * sizeof *pg.timers, pg.ntimers);
	if (pg.nsiginfo)
		section(&w, CKPT_SEC_SIGINFO, pg.siginfo, pg.nsiginfo * sizeof *pg.siginfo,
			pg.nsiginfo);
	if (pg.nshared)
		section(&w, CKPT_SEC_SHARED_FILES, pg.shared, pg.nshared * sizeof *pg.shared,
			pg.nshared);
	if (pg.nsched)
		section(&w, CKPT_SEC_THREAD_SCHED, pg.sched, pg.nsched * sizeof *pg.sched,
			pg.nsched);
	write_pages(&w, &pg, v);
	if (rec.buf) {
		CHECK(ckpt_writer_replay(&w) == 0 && !w.rec, "replay of the recorded writer");
		recording_spilled = rec.spilled;
		free(rec.buf);
	}
	return ckpt_writer_finish(&w, &pg.hdr);
}

static int create_image(const char *path, enum variant v, size_t buf_size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return -1;
	int r = write_image(fd, v, buf_size);
	close(fd);
	return r;
}

/* ---- reading back ---- */

struct pages_seen {
	unsigned char data[8 * CKPT_PAGE_SIZE];
	uint64_t addr[NCHUNKS];
	uint32_t npages[NCHUNKS];
	unsigned n, used;
};

static void *chunk_dest(void *arg, const struct ckpt_page_chunk *c)
{
	struct pages_seen *s = arg;
	if (s->n >= NCHUNKS || s->used + c->npages > 8)
		return NULL;
	s->addr[s->n] = c->addr;
	s->npages[s->n++] = c->npages;
	void *dst = s->data + (size_t)s->used * CKPT_PAGE_SIZE;
	s->used += c->npages;
	return dst;
}

static void compare_pages(const struct program *pg, const struct pages_seen *s)
{
	unsigned char want[CKPT_PAGE_SIZE];
	unsigned page = 0;

	CHECK(s->n == NCHUNKS, "%u chunks read", s->n);
	for (unsigned i = 0; i < s->n && i < NCHUNKS; i++) {
		CHECK(s->addr[i] == chunk_addr(pg, &chunks[i], V_GOOD), "chunk %u address", i);
		CHECK(s->npages[i] == chunks[i].npages, "chunk %u npages", i);
		for (unsigned p = 0; p < s->npages[i]; p++, page++) {
			page_pattern(want, s->addr[i] + p * CKPT_PAGE_SIZE);
			CHECK(!memcmp(s->data + page * CKPT_PAGE_SIZE, want, sizeof want),
			      "chunk %u page %u data", i, p);
		}
	}
}

static void compare_image(const struct ckpt_image *img, const struct program *pg)
{
	struct ckpt_image_header h = img->hdr;
	CHECK(!memcmp(h.magic, pg->hdr.magic, 8) && h.pid == 100 && h.generation == 3 &&
		  h.nthreads == NTHREADS && !strcmp(h.kernel_release, "6.1.0-test") &&
		  h.xcr0 == 0x2e7 && h.time_ns == pg->hdr.time_ns,
	      "header fields");
	CHECK(h.image_size == img->file_size, "image_size %llu", (unsigned long long)h.image_size);
	CHECK(!memcmp(&img->process, &pg->process, sizeof pg->process), "process");
	CHECK(img->nthreads == NTHREADS && !memcmp(img->threads, pg->threads, sizeof pg->threads),
	      "threads");
	CHECK(!memcmp(img->sigactions, pg->sigactions, sizeof pg->sigactions), "sigactions");
	CHECK(img->nareas == NAREAS && !memcmp(img->areas, pg->areas, sizeof pg->areas), "areas");
	CHECK(img->nfds == NFDS && !memcmp(img->fds, pg->fds, sizeof pg->fds), "fds");
	CHECK(img->strings_len == sizeof strings, "strings length");
	CHECK(!strcmp(ckpt_image_string(img, img->process.exe_str), "/usr/bin/prog"), "exe");
	CHECK(!strcmp(ckpt_image_string(img, img->fds[3].path_str), "/tmp/data"), "fd path");
	CHECK(!strcmp(ckpt_image_string(img, 0), "") && !strcmp(ckpt_image_string(img, 9999), ""),
	      "string offset 0 and out of range");
	CHECK(img->fd_data_len == sizeof fd_data - 1 &&
		  !memcmp(img->fd_data + img->fds[4].data_off, fd_data, img->fds[4].data_len),
	      "fd data");
	CHECK(img->pages && img->pages->count == NCHUNKS, "pages section");
}

/* Chunk data must start on a page boundary of the file. */
static void check_alignment(const char *path)
{
	int fd = open(path, O_RDONLY);
	struct ckpt_image_header h;
	struct ckpt_section s[CKPT_MAX_SECTIONS];
	CHECK(pread(fd, &h, sizeof h, 0) == sizeof h, "read header");
	CHECK(pread(fd, s, h.section_count * sizeof *s, (off_t)h.section_table_offset) > 0, "tbl");
	for (uint32_t i = 0; i < h.section_count; i++) {
		CHECK(s[i].offset % 8 == 0, "section %u offset %% 8", i);
		if (s[i].type != CKPT_SEC_PAGES)
			continue;
		uint32_t magic;
		int framed = compressed || stored;
		uint64_t first =
		    framed ? s[i].offset : (s[i].offset + 24 + 4095) / 4096 * 4096 - 24;
		uint32_t want = framed ? CKPT_ZCHUNK_MAGIC : CKPT_CHUNK_MAGIC;
		CHECK(pread(fd, &magic, 4, (off_t)first) == 4 && magic == want,
		      "first chunk header (%s) at %llu", framed ? "compressed" : "raw",
		      (unsigned long long)first);
	}
	close(fd);
}

static void test_roundtrip(const char *path)
{
	char err[256];
	struct program pg;
	struct pages_seen seen;

	make_program(&pg, V_GOOD);
	CHECK(create_image(path, V_GOOD, 1000) == 0, "write image");
	check_alignment(path);
	struct ckpt_image *img = ckpt_image_open(path, err, sizeof err);
	CHECK(img, "open: %s", err);
	if (!img)
		return;
	compare_image(img, &pg);
	memset(&seen, 0, sizeof seen);
	CHECK(ckpt_image_read_pages(img, chunk_dest, &seen, err, sizeof err) == 0, "pages: %s",
	      err);
	compare_pages(&pg, &seen);
	/* the restorer's way: the layout walked first, then the chunks read
	 * (one thread here: this destination function keeps a count) */
	memset(&seen, 0, sizeof seen);
	CHECK(ckpt_image_read_pages_parallel(img, chunk_dest, &seen, 1, err, sizeof err) == 0,
	      "pages (parallel): %s", err);
	compare_pages(&pg, &seen);
	CHECK(ckpt_image_read_pages(img, NULL, NULL, err, sizeof err) == 0, "verify: %s", err);
	ckpt_image_close(img);
	CHECK(ckpt_image_verify(path, err, sizeof err) == 0, "ckpt_image_verify: %s", err);
}

static char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return NULL;
	char *p = malloc((size_t)st.st_size);
	if (p && pread(fd, p, (size_t)st.st_size, 0) != st.st_size) {
		free(p);
		p = NULL;
	}
	close(fd);
	*len = (size_t)st.st_size;
	return p;
}

/* Buffer size must not change a single byte of the output. */
static void test_buffer_sizes(const char *path)
{
	static const size_t sizes[] = {0, 1, 7, 320, 4096, 5000, 1 << 16};
	size_t len0, len;
	CHECK(create_image(path, V_GOOD, 1 << 16) == 0, "write image");
	char *ref = slurp(path, &len0);
	for (size_t i = 0; ref && i < sizeof sizes / sizeof sizes[0]; i++) {
		CHECK(create_image(path, V_GOOD, sizes[i]) == 0, "write with buffer %zu", sizes[i]);
		char *p = slurp(path, &len);
		CHECK(p && len == len0 && !memcmp(p, ref, len), "buffer %zu output differs",
		      sizes[i]);
		free(p);
	}
	free(ref);
}

/* The same with references among the chunks (an incremental generation):
 * written in their place, between the jobs of a batch, whether a few or
 * more than the writer queues between two jobs come between them. */
static void test_batch_same_bytes(const char *path)
{
	for (int variant = 0; variant < 3; variant++) {
		size_t len1, len2;
		enum variant v = variant ? V_REFS : V_GOOD;
		scattered = variant == 2 ? 3000 : 0;
		scattered_refs = variant == 2;
		compressed = 1;
		CHECK(create_image(path, v, 4096) == 0, "write image");
		char *one = slurp(path, &len1);
		for (int async = 0; async < 2; async++) {
			compressed = 2 + async;
			async_batches = 0;
			CHECK(create_image(path, v, 4096) == 0, "write image in batches");
			char *batch = slurp(path, &len2);
			CHECK(!async || variant < 2 || async_batches > 100,
			      "variant %d: %d batches", variant, async_batches);
			CHECK(one && batch && len1 == len2 && !memcmp(one, batch, len1),
			      "batch compression%s changed the image (variant %d)",
			      async ? " overlapping the collection" : "", variant);
			free(batch);
		}
		compressed = 1;
		free(one);
	}
	scattered = 0;
	scattered_refs = 0;
}

/* --compress auto with the disk waiting: the chunks of a set not being
 * compressed yet are stored raw; the image reads back the same pages and
 * verifies, only larger. */
static void test_adaptive_raw(const char *path)
{
	char err[256];
	struct program pg;
	struct pages_seen seen;
	size_t zlen, alen;
	int was = compressed;
	make_program(&pg, V_GOOD);
	compressed = 3;
	CHECK(create_image(path, V_GOOD, 4096) == 0, "write image in batches");
	free(slurp(path, &zlen));
	compressed = 4;
	skipped_batches = 0;
	CHECK(create_image(path, V_GOOD, 4096) == 0, "write image, disk waiting");
	free(slurp(path, &alen));
	compressed = was;
	CHECK(skipped_batches > 0 && alen > zlen,
	      "no chunk stored raw: %d batches skipped, %zu bytes against %zu compressed",
	      skipped_batches, alen, zlen);
	struct ckpt_image *img = ckpt_image_open(path, err, sizeof err);
	CHECK(img, "open: %s", err);
	if (!img)
		return;
	memset(&seen, 0, sizeof seen);
	CHECK(ckpt_image_read_pages(img, chunk_dest, &seen, err, sizeof err) == 0, "pages: %s",
	      err);
	compare_pages(&pg, &seen);
	ckpt_image_close(img);
	CHECK(ckpt_image_verify(path, err, sizeof err) == 0, "ckpt_image_verify: %s", err);
}

/* Recorded and replayed writer operations (the agent's staged captures)
 * give the same file as operations done at once: with room for all of
 * them, with a buffer that fills several times (what it holds is done at
 * once), and with one smaller than any page chunk (each done at once). */
static void test_recorded_same_bytes(const char *path)
{
	static const size_t rooms[] = {64u << 20, 5 * CKPT_PAGE_SIZE + 100, 64};
	for (int variant = 0; variant < 8; variant++) {
		compressed = variant & 1 ? 2 : 0;
		scattered = variant & 2 ? 3000 : 0;
		enum variant v = variant & 4 ? V_REFS : V_GOOD; /* with a reference chunk */
		size_t len0, len;
		CHECK(create_image(path, v, 4096) == 0, "write image");
		char *ref = slurp(path, &len0);
		for (size_t i = 0; ref && i < sizeof rooms / sizeof rooms[0]; i++) {
			recording = rooms[i];
			CHECK(create_image(path, v, 4096) == 0, "write recorded image");
			char *p = slurp(path, &len);
			CHECK(p && len == len0 && !memcmp(p, ref, len),
			      "variant %d, record buffer %zu: image differs", variant, rooms[i]);
			CHECK((recording_spilled == 0) == (i == 0),
			      "variant %d, record buffer %zu: %llu bytes done at once", variant,
			      rooms[i], (unsigned long long)recording_spilled);
			char err[256] = "";
			CHECK(v != V_GOOD || verify(path, err, sizeof err) == 0,
			      "recorded image: %s", err);
			free(p);
		}
		recording = 0;
		free(ref);
	}
	compressed = 0;
	scattered = 0;
}

/* 0 if the image at path opens and all its pages verify. */
static int verify(const char *path, char *err, size_t errlen)
{
	return ckpt_image_verify(path, err, errlen);
}

static void test_truncation(const char *path)
{
	char err[256];
	size_t len;
	CHECK(create_image(path, V_GOOD, 4096) == 0, "write image");
	char *p = slurp(path, &len);
	int fd = open(path, O_RDWR);
	for (size_t n = len; p && n-- > 0;) {
		CHECK(ftruncate(fd, (off_t)n) == 0, "truncate");
		CHECK(verify(path, err, sizeof err) < 0, "image truncated to %zu bytes accepted",
		      n);
		if (n == len / 2)
			CHECK(strstr(err, "truncated"), "message: %s", err);
	}
	close(fd);
	free(p);
}

/* Every byte, changed in every single bit and in all bits, must be
 * noticed. (A zstd frame can decode to the same pages with a bit changed:
 * only a checksum of the stored bytes catches that.) */
static void test_byte_flips(const char *path)
{
	char err[256];
	size_t len;
	unsigned accepted = 0;
	CHECK(create_image(path, V_GOOD, 4096) == 0, "write image");
	char *p = slurp(path, &len);
	int fd = open(path, O_RDWR);
	for (size_t off = 0; p && off < len; off++) {
		/* every single bit where zstd frames are, all bits elsewhere */
		for (unsigned mask = compressed ? 1 : 0x100; mask <= 0x100; mask <<= 1) {
			char c = (char)(p[off] ^ (mask == 0x100 ? 0xff : mask));
			CHECK(pwrite(fd, &c, 1, (off_t)off) == 1, "pwrite");
			if ((verify(path, err, sizeof err) == 0 ||
			     (compressed &&
			      ckpt_image_verify_stored(path, err, sizeof err) == 0)) &&
			    accepted++ < 10)
				CHECK(0, "%s image: flip 0x%02x at byte %zu accepted",
				      compressed ? "compressed" : "raw",
				      (unsigned char)(c ^ p[off]), off);
		}
		CHECK(pwrite(fd, &p[off], 1, (off_t)off) == 1, "pwrite");
	}
	CHECK(accepted == 0, "%u byte flips accepted", accepted);
	/* a flip in page data is found when the pages are read the
	 * restorer's way too */
	struct ckpt_image *img = ckpt_image_open(path, err, sizeof err);
	CHECK(img != NULL, "open: %s", err);
	if (img && img->pages) {
		/* inside the data of a chunk (with an index, restoring reads only
		 * those; headers and padding are checked by the full walk) */
		uint64_t mid = img->pages->offset + img->pages->length / 2;
		for (uint32_t i = 0; i < img->nindex; i++) {
			const struct ckpt_chunk_entry *e = &img->index[i];
			uint64_t data = e->offset + sizeof e->chunk + (e->zlen ? 8 : 0);
			if (e->chunk.magic != CKPT_RCHUNK_MAGIC && data <= mid)
				mid = data + (e->zlen ? e->zlen / 2 : 100);
		}
		ckpt_image_close(img);
		char c = (char)(p[mid] ^ 0x04);
		CHECK(pwrite(fd, &c, 1, (off_t)mid) == 1, "pwrite");
		img = ckpt_image_open(path, err, sizeof err);
		struct pages_seen seen;
		memset(&seen, 0, sizeof seen);
		CHECK(img && ckpt_image_read_pages_parallel(img, chunk_dest, &seen, 1, err,
							    sizeof err) < 0,
		      "%s image: a flipped page byte read without error",
		      compressed ? "compressed" : "raw");
		CHECK(pwrite(fd, &p[mid], 1, (off_t)mid) == 1, "pwrite");
	}
	ckpt_image_close(img);
	CHECK(verify(path, err, sizeof err) == 0, "restored image: %s", err);
	close(fd);
	free(p);
}

/* Change the header and recompute its checksum, so that the check under
 * test is what fails. */
static void rewrite_header(const char *path, void (*edit)(struct ckpt_image_header *))
{
	struct ckpt_image_header h;
	int fd = open(path, O_RDWR);
	CHECK(pread(fd, &h, sizeof h, 0) == sizeof h, "read header");
	edit(&h);
	h.header_crc = 0;
	h.header_crc = crc32c_update(0, &h, sizeof h);
	CHECK(pwrite(fd, &h, sizeof h, 0) == sizeof h, "write header");
	close(fd);
}

static void set_version_2(struct ckpt_image_header *h)
{
	h->format_version = CKPT_FORMAT_VERSION_V2;
}

/* Rewrite a compressed image as version 2 wrote it: each compressed
 * chunk's crc over its header and decoded pages. */
static void make_version_2(const char *path)
{
	size_t len;
	unsigned char *p = (unsigned char *)slurp(path, &len);
	struct ckpt_image_header h;
	memcpy(&h, p, sizeof h);
	struct ckpt_section *tbl = (struct ckpt_section *)(p + h.section_table_offset),
			    *pages = NULL;
	for (uint32_t i = 0; i < h.section_count; i++)
		if (tbl[i].type == CKPT_SEC_PAGES)
			pages = &tbl[i];
	static unsigned char out[CKPT_PAGE_SIZE * 4];
	unsigned converted = 0;
	for (uint64_t pos = pages->offset; pos < pages->offset + pages->length;) {
		struct ckpt_page_chunk c;
		memcpy(&c, p + pos, sizeof c);
		uint32_t zl;
		memcpy(&zl, p + pos + sizeof c, 4);
		size_t n = c.npages * CKPT_PAGE_SIZE;
		CHECK(c.magic == CKPT_ZCHUNK_MAGIC && n <= sizeof out, "compressed chunk at %llu",
		      (unsigned long long)pos);
		CHECK(ZSTD_decompress(out, n, p + pos + sizeof c + 8, zl) == n, "decompress");
		c.crc = 0;
		c.crc = crc32c_update(crc32c_update(0, &c, sizeof c), out, n);
		memcpy(p + pos, &c, sizeof c);
		converted++;
		pos = (pos + sizeof c + 8 + zl + 7) & ~7ull;
	}
	CHECK(converted == pages->count, "%u of %u chunks converted", converted, pages->count);
	int fd = open(path, O_WRONLY | O_TRUNC);
	CHECK(write(fd, p, len) == (ssize_t)len, "write");
	close(fd);
	free(p);
	rewrite_header(path, set_version_2);
}

/* Checkpoints taken by the previous release still restart. */
static void test_version_2(const char *path)
{
	char err[256];
	compressed = 1;
	CHECK(create_image(path, V_GOOD, 4096) == 0, "write image");
	compressed = 0;
	make_version_2(path);
	CHECK(ckpt_image_verify(path, err, sizeof err) == 0, "version 2 image refused: %s", err);
	/* and its decoded pages are still checked */
	size_t len;
	char *p = slurp(path, &len);
	struct ckpt_image_header h;
	memcpy(&h, p, sizeof h);
	int fd = open(path, O_RDWR);
	unsigned refused = 0, tried = 0;
	for (size_t off = sizeof h; off < h.section_table_offset; off++) {
		char c = (char)(p[off] ^ 0x01);
		CHECK(pwrite(fd, &c, 1, (off_t)off) == 1, "pwrite");
		tried++;
		refused += ckpt_image_verify(path, err, sizeof err) < 0;
		CHECK(pwrite(fd, &p[off], 1, (off_t)off) == 1, "pwrite");
	}
	CHECK(refused > tried / 2, "version 2: only %u of %u flips found", refused, tried);
	close(fd);
	free(p);
}

static void set_version(struct ckpt_image_header *h)
{
	h->format_version = 11;
}

static void set_version_6(struct ckpt_image_header *h)
{
	h->format_version = CKPT_FORMAT_VERSION_V6;
}

static void set_version_7(struct ckpt_image_header *h)
{
	h->format_version = CKPT_FORMAT_VERSION_V7;
}

static void set_version_9(struct ckpt_image_header *h)
{
	h->format_version = CKPT_FORMAT_VERSION_V9;
}

static void set_version_8(struct ckpt_image_header *h)
{
	h->format_version = CKPT_FORMAT_VERSION_V8;
}

static void set_arch(struct ckpt_image_header *h)
{
	memset(h->arch, 0, sizeof h->arch);
	strcpy(h->arch, "aarch64");
}

static void set_version_4(struct ckpt_image_header *h)
{
	h->format_version = CKPT_FORMAT_VERSION_V4;
}

/* The image at path rewritten as an older version that lacks something
 * it holds: refused, the message naming what (names). */
static void refused_as_version(const char *path, void (*set)(struct ckpt_image_header *),
			       const char *names, const char *what)
{
	char err[256];
	rewrite_header(path, set);
	CHECK(verify(path, err, sizeof err) < 0 && strstr(err, names), "%s: '%s'", what, err);
}

static void test_header_checks(const char *path)
{
	char err[256];
	/* version 4 images (the previous release's) are read; PAGE_RUNS is
	 * not a version 4 section */
	CHECK(create_image(path, V_REFS, 4096) == 0, "write image");
	refused_as_version(path, set_version_4, "unknown type 14",
			   "PAGE_RUNS in a version 4 image");
	CHECK(create_image(path, V_GOOD, 4096) == 0, "write image");
	rewrite_header(path, set_version_4);
	CHECK(verify(path, err, sizeof err) == 0, "version 4 image refused: %s", err);

	CHECK(create_image(path, V_GOOD, 4096) == 0, "write image");
	rewrite_header(path, set_version);
	CHECK(!ckpt_image_open(path, err, sizeof err), "version 11 accepted");
	CHECK(strstr(err, "version 11") && strstr(err, "versions 2 to 10"), "message: %s", err);

	/* timers come back as written; version 6 has no TIMERS section */
	CHECK(create_image(path, V_TIMERS, 4096) == 0, "write image");
	struct ckpt_image *img = ckpt_image_open(path, err, sizeof err);
	struct program pg;
	make_program(&pg, V_TIMERS);
	CHECK(img && img->ntimers == 2 && !memcmp(img->timers, pg.timers, sizeof pg.timers) &&
		  img->nsiginfo == 2 && !memcmp(img->siginfo, pg.siginfo, sizeof pg.siginfo),
	      "timers and pending signals: %s", img ? "not as written" : err);
	if (img)
		ckpt_image_close(img);
	rewrite_header(path, set_version_7);
	CHECK(verify(path, err, sizeof err) == 0, "TIMERS in a version 7 image refused: %s", err);
	refused_as_version(path, set_version_6, "unknown type 16", "TIMERS in a version 6 image");

	/* a file mapped shared comes back as written; version 8 has no
	 * SHARED_FILES section */
	CHECK(create_image(path, V_SHARED_FILE, 4096) == 0, "write image");
	img = ckpt_image_open(path, err, sizeof err);
	make_program(&pg, V_SHARED_FILE);
	CHECK(img && img->nshared_files == 1 &&
		  !memcmp(img->shared_files, pg.shared, sizeof pg.shared) &&
		  memcmp(img->fd_data + img->shared_files[0].data_off, "queue", 5) == 0,
	      "shared file: %s", img ? "not as written" : err);
	if (img)
		ckpt_image_close(img);
	rewrite_header(path, set_version_9);
	CHECK(verify(path, err, sizeof err) == 0, "SHARED_FILES in a version 9 image refused: %s",
	      err);
	refused_as_version(path, set_version_8, "unknown type 18",
			   "SHARED_FILES in a version 8 image");

	/* a pidfd comes back as written; version 9 has no pidfds */
	CHECK(create_image(path, V_PIDFD, 4096) == 0, "write image");
	img = ckpt_image_open(path, err, sizeof err);
	CHECK(img && img->nfds == NFDS && img->fds[3].kind == CKPT_FD_PIDFD &&
		  img->fds[3].offset == 42 && (img->fds[3].open_flags & O_NONBLOCK),
	      "pidfd: %s", img ? "not as written" : err);
	if (img)
		ckpt_image_close(img);
	refused_as_version(path, set_version_9, "kind 16", "a pidfd in a version 9 image");

	/* inotify watches come back as written; version 9 has none */
	CHECK(create_image(path, V_INOTIFY, 4096) == 0, "write image");
	img = ckpt_image_open(path, err, sizeof err);
	CHECK(img && img->fds[3].kind == CKPT_FD_INOTIFY &&
		  img->fds[3].data_len == sizeof watches &&
		  !memcmp(img->fd_data + img->fds[3].data_off, watches, sizeof watches) &&
		  !strcmp(ckpt_image_string(img, watches[0].path_str), "/tmp/data"),
	      "inotify: %s", img ? "not as written" : err);
	if (img)
		ckpt_image_close(img);
	refused_as_version(path, set_version_9, "kind 17", "inotify in a version 9 image");

	/* a thread's own affinity and nice value come back as written */
	CHECK(create_image(path, V_SCHED, 4096) == 0, "write image");
	img = ckpt_image_open(path, err, sizeof err);
	make_program(&pg, V_SCHED);
	CHECK(img && img->nsched == 1 && !memcmp(img->sched, pg.sched, sizeof pg.sched[0]),
	      "thread scheduling: %s", img ? "not as written" : err);
	if (img)
		ckpt_image_close(img);

	CHECK(create_image(path, V_GOOD, 4096) == 0, "write image");
	rewrite_header(path, set_arch);
	CHECK(!ckpt_image_open(path, err, sizeof err), "aarch64 accepted");
	CHECK(strstr(err, "aarch64") && strstr(err, "x86_64"), "message: %s", err);
}

/* Images with valid checksums but inconsistent records. */
static void test_bad_records(const char *path)
{
	static const struct {
		enum variant v;
		const char *msg;
	} cases[] = {
	    {V_AREA_OVERLAP, "AREAS"},
	    {V_AREA_UNALIGNED, "AREAS"},
	    {V_AREA_KIND, "AREAS"},
	    {V_CHUNK_OUTSIDE, "chunk 2"},
	    {V_CHUNK_AREA_INDEX, "chunk 3"},
	    {V_STRING_RANGE, "FDS"},
	    {V_TWO_MAINS, "THREADS"},
	    {V_NO_MAIN, "THREADS"},
	    {V_FD_DATA_RANGE, "FD_DATA"},
	    {V_PROCESS_SIZE, "PROCESS"},
	    {V_PAGES_SAVED, "area 1"},
	    {V_TIMER_THREAD, "TIMERS"},
	    {V_TIMER_TWICE, "TIMERS"},
	    {V_TIMER_NSEC, "TIMERS"},
	    {V_SIGINFO_THREAD, "SIGINFO"},
	    {V_SIGINFO_SIGNO, "SIGINFO"},
	    {V_FILE_SAVED, "fd 3"},
	    {V_FILE_AUX, "fd 3"},
	    {V_SHARED_FILE_RANGE, "SHARED_FILES"},
	    {V_SCHED_TID, "THREAD_SCHED"},
	    {V_SCHED_EMPTY, "THREAD_SCHED"},
	    {V_SCHED_TWICE, "appears twice"},
	    {V_INOTIFY_PATH, "fd 3 inotify watch 0"},
	    {V_INOTIFY_PARTIAL, "fd 3 has a partial inotify watch"},
	};
	char err[256];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		err[0] = 0;
		CHECK(create_image(path, cases[i].v, 4096) == 0, "write variant %d", cases[i].v);
		CHECK(verify(path, err, sizeof err) < 0, "variant %d accepted", cases[i].v);
		CHECK(strstr(err, cases[i].msg) && !strchr(err, '\n'),
		      "variant %d: message '%s' should name %s", cases[i].v, err, cases[i].msg);
	}
	CHECK(create_image(path, V_SMALL, 4096) == 0 && verify(path, err, sizeof err) == 0,
	      "small image: %s", err);
}

/* Reference chunks: listed in img->refs by every walk, not delivered; the
 * other chunks read as usual; every byte flip is noticed; an image that
 * names no parent may not hold them. */
static void test_refs(const char *path)
{
	char err[256];
	size_t len;
	CHECK(create_image(path, V_REFS, 4096) == 0, "write image with a reference");
	CHECK(verify(path, err, sizeof err) == 0, "image with a reference: %s", err);
	struct ckpt_image *img = ckpt_image_open(path, err, sizeof err);
	CHECK(img != NULL, "open: %s", err);
	if (img) {
		struct pages_seen seen;
		memset(&seen, 0, sizeof seen);
		CHECK(ckpt_image_read_pages_parallel(img, chunk_dest, &seen, 2, err, sizeof err) ==
			  0,
		      "read: %s", err);
		CHECK(seen.n == NCHUNKS - 1, "%u chunks delivered, expected %u", seen.n,
		      (unsigned)NCHUNKS - 1);
		CHECK(img->nrefs == 1 && img->refs[0].area == 1 &&
			  img->refs[0].addr == img->areas[1].start + 5 * CKPT_PAGE_SIZE &&
			  img->refs[0].npages == 1,
		      "reference chunk not listed (%u refs)", img->nrefs);
		CHECK(img->hdr.parent_generation == 2, "parent generation %llu",
		      (unsigned long long)img->hdr.parent_generation);
		ckpt_image_close(img);
	}
	char *p = slurp(path, &len);
	int fd = open(path, O_RDWR);
	unsigned accepted = 0;
	for (size_t off = 0; p && off < len; off++) {
		for (unsigned mask = 1; mask <= 0x80; mask <<= 1) {
			char c = (char)(p[off] ^ mask);
			CHECK(pwrite(fd, &c, 1, (off_t)off) == 1, "pwrite");
			if (verify(path, err, sizeof err) == 0 && accepted++ < 10)
				CHECK(0, "image with a reference: flip 0x%02x at byte %zu accepted",
				      mask, off);
		}
		CHECK(pwrite(fd, &p[off], 1, (off_t)off) == 1, "pwrite");
	}
	CHECK(accepted == 0, "%u bit flips accepted", accepted);
	close(fd);
	free(p);
	CHECK(create_image(path, V_RUNS_ORDER, 4096) == 0, "write");
	CHECK(verify(path, err, sizeof err) < 0 && strstr(err, "PAGE_RUNS"),
	      "overlapping page runs: '%s'", err);
	CHECK(create_image(path, V_REFS_NO_PARENT, 4096) == 0, "write");
	CHECK(verify(path, err, sizeof err) < 0 && strstr(err, "parent"),
	      "a reference in an image without a parent: '%s'", err);
}

/* Lazy restart's reading: the map hook is offered every uncompressed
 * chunk with the file offset of its pages (4096-aligned, holding exactly
 * those pages); chunks it takes are not delivered, the rest are. The
 * layout check alone passes a flipped data byte, not a flipped header. */
struct mapped_seen {
	struct pages_seen pages;
	int fd;
	unsigned offered, taken;
	uint64_t data_off; /* of a taken chunk */
};

static int take_odd(void *arg, const struct ckpt_page_chunk *c, uint64_t off)
{
	struct mapped_seen *m = arg;
	unsigned char got[CKPT_PAGE_SIZE], want[CKPT_PAGE_SIZE];
	CHECK(off % CKPT_PAGE_SIZE == 0, "offered chunk at unaligned offset %llu",
	      (unsigned long long)off);
	for (uint32_t p = 0; p < c->npages; p++) {
		page_pattern(want, c->addr + p * CKPT_PAGE_SIZE);
		CHECK(pread(m->fd, got, sizeof got, (off_t)(off + p * CKPT_PAGE_SIZE)) ==
			      sizeof got &&
			  !memcmp(got, want, sizeof got),
		      "offered chunk at 0x%llx: the file at %llu does not hold its page %u",
		      (unsigned long long)c->addr, (unsigned long long)off, p);
	}
	if (m->offered++ % 2 == 0)
		return 0;
	m->taken++;
	m->data_off = off;
	return 1;
}

static void *mapped_dest(void *arg, const struct ckpt_page_chunk *c)
{
	return chunk_dest(&((struct mapped_seen *)arg)->pages, c);
}

/* The restorer's way of reading every chunk, into memory, 2 threads. */
static int parallel_read_fails(const char *path, char *err, size_t errlen)
{
	struct ckpt_image *img = ckpt_image_open(path, err, errlen);
	if (!img)
		return 1;
	static struct pages_seen seen;
	memset(&seen, 0, sizeof seen);
	int r = ckpt_image_read_pages_parallel(img, chunk_dest, &seen, 2, err, errlen);
	ckpt_image_close(img);
	return r != 0;
}

static void test_mapped_and_layout(const char *path)
{
	char err[256];
	CHECK(create_image(path, V_GOOD, 4096) == 0, "write image");
	struct ckpt_image *img = ckpt_image_open(path, err, sizeof err);
	CHECK(img != NULL, "open: %s", err);
	if (!img)
		return;
	static struct mapped_seen m;
	memset(&m, 0, sizeof m);
	m.fd = open(path, O_RDONLY);
	CHECK(ckpt_image_read_pages_mapped(img, take_odd, mapped_dest, NULL, &m, 2, err,
					   sizeof err) == 0,
	      "read mapped: %s", err);
	CHECK(m.offered == NCHUNKS && m.taken == NCHUNKS / 2, "%u offered, %u taken", m.offered,
	      m.taken);
	CHECK(m.pages.n == NCHUNKS - m.taken, "%u chunks delivered", m.pages.n);
	CHECK(ckpt_image_check_pages(img, CKPT_CHECK_LAYOUT, err, sizeof err) == 0, "layout: %s",
	      err);
	ckpt_image_close(img);
	close(m.fd);

	int fd = open(path, O_RDWR);
	char b, orig;
	CHECK(pread(fd, &orig, 1, (off_t)m.data_off + 100) == 1, "read data byte");
	b = (char)(orig ^ 0x04);
	CHECK(pwrite(fd, &b, 1, (off_t)m.data_off + 100) == 1, "flip data byte");
	img = ckpt_image_open(path, err, sizeof err);
	CHECK(img && ckpt_image_check_pages(img, CKPT_CHECK_LAYOUT, err, sizeof err) == 0 &&
		  ckpt_image_check_pages(img, CKPT_CHECK_NO_DATA, err, sizeof err) == 0,
	      "a flipped data byte fails the layout check: %s", err);
	CHECK(parallel_read_fails(path, err, sizeof err) && strstr(err, "checksum"),
	      "a flipped data byte read: '%s'", err);
	if (img)
		ckpt_image_close(img);
	CHECK(ckpt_image_verify(path, err, sizeof err) < 0, "a flipped data byte passes verify");
	CHECK(pwrite(fd, &orig, 1, (off_t)m.data_off + 100) == 1, "restore data byte");
	CHECK(pread(fd, &orig, 1, (off_t)m.data_off - 24) == 1, "read magic");
	b = (char)(orig ^ 0x01);
	CHECK(pwrite(fd, &b, 1, (off_t)m.data_off - 24) == 1, "flip magic");
	img = ckpt_image_open(path, err, sizeof err);
	if (!indexed)
		CHECK(img && ckpt_image_check_pages(img, CKPT_CHECK_LAYOUT, err, sizeof err) < 0,
		      "a chunk header with a bad magic passes the layout check");
	else /* the layout comes from the index; the full check reads headers */
		CHECK(img && ckpt_image_check_pages(img, CKPT_CHECK_LAYOUT, err, sizeof err) == 0 &&
			  ckpt_image_verify(path, err, sizeof err) < 0,
		      "a chunk header with a bad magic passes verify");
	if (img)
		ckpt_image_close(img);
	CHECK(parallel_read_fails(path, err, sizeof err),
	      "a chunk header with a bad magic passes the restorer's reading");
	CHECK(pwrite(fd, &orig, 1, (off_t)m.data_off - 24) == 1, "restore magic");
	/* a header's crc unlike its entry's (the pages read the index's way
	 * still match the entry: the header in the file is a copy) */
	CHECK(pread(fd, &orig, 1, (off_t)m.data_off - 4) == 1, "read crc");
	b = (char)(orig ^ 0x01);
	CHECK(pwrite(fd, &b, 1, (off_t)m.data_off - 4) == 1, "flip crc");
	CHECK(ckpt_image_verify(path, err, sizeof err) < 0 &&
		  strstr(err, indexed ? "PAGE_INDEX" : "checksum"),
	      "a chunk header with another crc: '%s'", err);
	/* the restorer's reading (chunks listed from the index) reads each
	 * header with its pages and holds it to its entry too */
	CHECK(parallel_read_fails(path, err, sizeof err) &&
		  strstr(err, indexed ? "PAGE_INDEX" : "checksum"),
	      "read with a chunk header unlike its entry: '%s'", err);
	CHECK(pwrite(fd, &orig, 1, (off_t)m.data_off - 4) == 1, "restore crc");
	CHECK(!parallel_read_fails(path, err, sizeof err), "read after the repair: %s", err);
	close(fd);
}

static void test_writer_misuse(const char *path)
{
	char buf[64];
	struct ckpt_writer w;
	struct ckpt_image_header h = {0};
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ckpt_writer_init(&w, fd, buf, sizeof buf);
	ckpt_writer_chunk(&w, 0, 0, buf, 0); /* outside a PAGES section */
	CHECK(w.error == EINVAL, "chunk outside PAGES: error %d", w.error);
	CHECK(ckpt_writer_finish(&w, &h) < 0, "finish after error");
	close(fd);
	fd = open("/dev/full", O_WRONLY);
	if (fd >= 0) {
		ckpt_writer_init(&w, fd, buf, sizeof buf);
		section(&w, CKPT_SEC_STRINGS, strings, sizeof strings, 0);
		CHECK(ckpt_writer_finish(&w, &h) < 0 && w.error == ENOSPC, "full disk: %d",
		      w.error);
		close(fd);
	}
}

/* One seed image: variant v, written with *mode (stored or compressed)
 * set when mode is given. 1 on failure. */
static int write_seed(const char *dir, const char *name, enum variant v, int *mode)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	if (mode)
		*mode = 1;
	int r = create_image(path, v, 4096);
	if (mode)
		*mode = 0;
	if (r < 0)
		perror(path);
	return r < 0;
}

static int write_seeds(const char *dir)
{
	return write_seed(dir, "good.img", V_GOOD, NULL) ||
	       write_seed(dir, "small.img", V_SMALL, NULL) ||
	       write_seed(dir, "refs.img", V_REFS, NULL) ||
	       write_seed(dir, "timers.img", V_TIMERS, NULL) ||
	       write_seed(dir, "stored.img", V_GOOD, &stored) ||
	       write_seed(dir, "zstd.img", V_GOOD, &compressed);
}

/* The interleaved checksum against the byte-at-a-time reference: every
 * length around the block sizes, at every alignment, and in pieces. */
static void test_crc32c(void)
{
	CHECK(crc32c_update(0, "123456789", 9) == 0xe3069283u, "check value");
	CHECK(crc32c_bytewise(0, "123456789", 9) == 0xe3069283u, "check value (bytewise)");
	size_t size = 3 * 8192 * 3 + 4096;
	unsigned char *buf = malloc(size);
	CHECK(buf != NULL, "malloc");
	if (!buf)
		return;
	uint64_t x = 12345;
	for (size_t i = 0; i < size; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		buf[i] = (unsigned char)(x >> 56);
	}
	static const size_t around[] = {0,
					1,
					7,
					8,
					9,
					255,
					256,
					767,
					768,
					769,
					3 * 256 + 8,
					4096,
					24575,
					24576,
					24577,
					24576 + 768,
					2 * 24576 + 767,
					3 * 8192 * 3};
	for (size_t k = 0; k < sizeof around / sizeof around[0]; k++)
		for (size_t off = 0; off < 9; off++) {
			size_t len = around[k];
			uint32_t want = crc32c_bytewise(0x1234u, buf + off, len);
			CHECK(crc32c_update(0x1234u, buf + off, len) == want, "len %zu off %zu",
			      len, off);
			size_t half = len / 3;
			uint32_t parts = crc32c_update(crc32c_update(0x1234u, buf + off, half),
						       buf + off + half, len - half);
			CHECK(parts == want, "len %zu off %zu in two pieces", len, off);
		}
	free(buf);
}

/* Stored frames: every chunk of the (uncompressed) image is one, right
 * after the previous chunk (no padding), and libzstd itself decodes each
 * frame, content checksum included, to the chunk's pages. */
static void test_stored_frames(const char *path)
{
	size_t len;
	CHECK(create_image(path, V_GOOD, 4096) == 0, "write image");
	unsigned char *p = (unsigned char *)slurp(path, &len);
	struct ckpt_image_header h;
	memcpy(&h, p, sizeof h);
	const struct ckpt_section *tbl = (const struct ckpt_section *)(p + h.section_table_offset),
				  *pages = NULL;
	for (uint32_t i = 0; i < h.section_count; i++)
		if (tbl[i].type == CKPT_SEC_PAGES)
			pages = &tbl[i];
	static unsigned char out[CKPT_PAGE_SIZE * 4], want[CKPT_PAGE_SIZE];
	unsigned n = 0;
	for (uint64_t pos = pages->offset; pos < pages->offset + pages->length; n++) {
		struct ckpt_page_chunk c;
		uint32_t zl;
		memcpy(&c, p + pos, sizeof c);
		memcpy(&zl, p + pos + sizeof c, 4);
		size_t size = c.npages * CKPT_PAGE_SIZE;
		CHECK(c.magic == CKPT_ZCHUNK_MAGIC && size <= sizeof out &&
			  zl == size + 4 + 1 + 4 + 3 + 4,
		      "chunk %u: magic 0x%x, %u pages in %u bytes", n, c.magic, c.npages, zl);
		const unsigned char *frame = p + pos + sizeof c + 8;
		CHECK(ZSTD_getFrameContentSize(frame, zl) == size, "chunk %u content size", n);
		CHECK(ZSTD_decompress(out, sizeof out, frame, zl) == size, "chunk %u decodes", n);
		for (uint32_t i = 0; i < c.npages && size <= sizeof out; i++) {
			page_pattern(want, c.addr + i * CKPT_PAGE_SIZE);
			CHECK(!memcmp(out + i * CKPT_PAGE_SIZE, want, sizeof want),
			      "chunk %u page %u", n, i);
		}
		/* a wrong content checksum is zstd's error too */
		unsigned char *sum = p + pos + sizeof c + 8 + zl - 4;
		sum[0] ^= 1;
		CHECK(ZSTD_isError(ZSTD_decompress(out, sizeof out, frame, zl)),
		      "chunk %u: bad content checksum decoded", n);
		sum[0] ^= 1;
		pos = (pos + sizeof c + 8 + zl + 7) & ~7ull;
	}
	CHECK(n == NCHUNKS, "%u chunks", n);
	free(p);
}

/* Rewrite entry i of PAGE_INDEX with edit, then the checksums of the
 * section, the table and the header, so that the rule under test is what
 * fails. */
static void edit_index(const char *path, uint32_t i, void (*edit)(struct ckpt_chunk_entry *))
{
	size_t len;
	unsigned char *p = (unsigned char *)slurp(path, &len);
	struct ckpt_image_header h;
	memcpy(&h, p, sizeof h);
	struct ckpt_section *tbl = (struct ckpt_section *)(p + h.section_table_offset);
	for (uint32_t k = 0; k < h.section_count; k++) {
		if (tbl[k].type != CKPT_SEC_PAGE_INDEX)
			continue;
		struct ckpt_chunk_entry *e = (struct ckpt_chunk_entry *)(p + tbl[k].offset);
		edit(&e[i]);
		tbl[k].crc = crc32c_update(0, e, tbl[k].length);
	}
	h.section_table_crc = crc32c_update(0, tbl, h.section_count * sizeof *tbl);
	h.header_crc = 0;
	h.header_crc = crc32c_update(0, &h, sizeof h);
	memcpy(p, &h, sizeof h);
	int fd = open(path, O_WRONLY | O_TRUNC);
	CHECK(write(fd, p, len) == (ssize_t)len, "write");
	close(fd);
	free(p);
}

static void shift_offset(struct ckpt_chunk_entry *e)
{
	e->offset += 8;
}

static void grow_chunk(struct ckpt_chunk_entry *e)
{
	e->chunk.npages++;
}

static void set_reserved(struct ckpt_chunk_entry *e)
{
	e->reserved = 1;
}

static void set_version_5(struct ckpt_image_header *h)
{
	h->format_version = CKPT_FORMAT_VERSION_V5;
}

/* PAGE_INDEX: one entry per chunk, each its header in the file; entries
 * off the rules are refused when the image is opened; without room for
 * all entries the image simply has none; version 5 has no such section. */
static void test_index(const char *path)
{
	char err[256];
	struct program pg;
	make_program(&pg, V_REFS);
	for (int c = 0; c < 2; c++) {
		compressed = c;
		CHECK(create_image(path, V_REFS, 4096) == 0, "write image");
		struct ckpt_image *img = ckpt_image_open(path, err, sizeof err);
		CHECK(img && img->index && img->nindex == NCHUNKS, "index: %s",
		      img ? "missing" : err);
		for (uint32_t i = 0; img && img->index && i < img->nindex; i++) {
			struct ckpt_page_chunk hdr;
			const struct ckpt_chunk_entry *e = &img->index[i];
			CHECK(pread(img->fd, &hdr, sizeof hdr, (off_t)e->offset) == sizeof hdr &&
				  !memcmp(&hdr, &e->chunk, sizeof hdr),
			      "entry %u is not the chunk header at %llu", i,
			      (unsigned long long)e->offset);
			CHECK((e->zlen != 0) == (hdr.magic == CKPT_ZCHUNK_MAGIC), "entry %u zlen",
			      i);
		}
		CHECK(img && ckpt_image_check_pages(img, CKPT_CHECK_LAYOUT, err, sizeof err) == 0 &&
			  img->nrefs == 1 &&
			  img->refs[0].addr == chunk_addr(&pg, &chunks[2], V_REFS),
		      "references listed from the index: %s", err);
		ckpt_image_close(img);
		CHECK(verify(path, err, sizeof err) == 0, "verify: %s", err);
	}
	compressed = 0;
	void (*edits[])(struct ckpt_chunk_entry *) = {shift_offset, grow_chunk, set_reserved};
	for (size_t k = 0; k < sizeof edits / sizeof edits[0]; k++)
		for (uint32_t i = 0; i < NCHUNKS; i++) {
			CHECK(create_image(path, V_REFS, 4096) == 0, "write image");
			edit_index(path, i, edits[k]);
			struct ckpt_image *img = ckpt_image_open(path, err, sizeof err);
			CHECK(!img && strstr(err, "PAGE_INDEX"),
			      "edit %zu of entry %u accepted: %s", k, i, img ? "" : err);
			ckpt_image_close(img);
		}
	index_room = NCHUNKS - 1;
	CHECK(create_image(path, V_GOOD, 4096) == 0, "write image");
	index_room = 0;
	struct ckpt_image *img = ckpt_image_open(path, err, sizeof err);
	CHECK(img && !img->index, "an index without room for every chunk: %s", img ? "" : err);
	ckpt_image_close(img);
	CHECK(verify(path, err, sizeof err) == 0, "no index: %s", err);
	CHECK(create_image(path, V_GOOD, 4096) == 0, "write image");
	refused_as_version(path, set_version_5, "unknown type 15",
			   "PAGE_INDEX in a version 5 image");
}

/* ---- the restorer's reading of a cold image (image/direct.h) ---- */

struct placed {
	_Alignas(4096) unsigned char data[8 * CKPT_PAGE_SIZE + 64];
	const struct program *pg;
	size_t skew; /* bytes added to each destination */
	_Atomic unsigned n;
};

/* Each chunk to its own place, from any thread. */
static void *placed_dest(void *arg, const struct ckpt_page_chunk *c)
{
	struct placed *s = arg;
	unsigned page = 0;
	for (unsigned i = 0; i < NCHUNKS; page += chunks[i++].npages)
		if (chunk_addr(s->pg, &chunks[i], V_GOOD) == c->addr &&
		    chunks[i].npages == c->npages) {
			atomic_fetch_add(&s->n, 1);
			return s->data + s->skew + (size_t)page * CKPT_PAGE_SIZE;
		}
	return NULL;
}

/* Pages of the file in the page cache, or -1. */
static long resident(const char *path)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return -1;
	size_t pages = ((size_t)st.st_size + 4095) / 4096;
	unsigned char *vec = malloc(pages);
	void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	long n = -1;
	if (vec && m != MAP_FAILED && mincore(m, (size_t)st.st_size, vec) == 0)
		for (size_t i = n = 0; i < pages; i++)
			n += vec[i] & 1;
	if (m != MAP_FAILED)
		munmap(m, (size_t)st.st_size);
	free(vec);
	close(fd);
	return n;
}

static void evict(const char *path)
{
	int fd = open(path, O_RDONLY);
	CHECK(fd >= 0 && fsync(fd) == 0 && posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0,
	      "evict %s: %s", path, strerror(errno));
	close(fd);
}

/* Read as the restorer reads: an image mostly out of the page cache has
 * its raw chunks read with O_DIRECT into their (page-aligned) places; a
 * cached one, or a destination off a page boundary, through the cache. The
 * pages come back the same each way. */
static void test_direct_reads(const char *path)
{
	char err[256];
	struct program pg;
	make_program(&pg, V_GOOD);
	CHECK(create_image(path, V_GOOD, 1000) == 0, "write image");
	int probe = open(path, O_RDONLY | O_DIRECT);
	if (probe < 0) {
		fprintf(stderr,
			"test_image: SKIPPED the O_DIRECT reading test: the file system of %s "
			"refuses O_DIRECT (%s)\n",
			path, strerror(errno));
		return;
	}
	close(probe);
	evict(path);
	if (resident(path) != 0) {
		fprintf(stderr,
			"test_image: SKIPPED the O_DIRECT reading test: %s stays in the page "
			"cache after POSIX_FADV_DONTNEED (%ld pages)\n",
			path, resident(path));
		return;
	}
	uint64_t all = 0;
	for (unsigned i = 0; i < NCHUNKS; i++)
		all += chunks[i].npages * CKPT_PAGE_SIZE;
	const struct {
		int cold;
		size_t skew;
		uint64_t direct;
	} cases[] = {{1, 0, all}, {0, 0, 0}, {1, 16, 0}};
	for (unsigned k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		struct ckpt_image *img = ckpt_image_open(path, err, sizeof err);
		CHECK(img, "open: %s", err);
		if (!img)
			return;
		img->drop_after_read = 1;
		if (cases[k].cold)
			evict(path);
		else
			CHECK(ckpt_image_verify(path, err, sizeof err) == 0, "verify: %s", err);
		static struct placed s;
		memset(&s, 0, sizeof s);
		s.pg = &pg;
		s.skew = cases[k].skew;
		CHECK(ckpt_image_read_pages_parallel(img, placed_dest, &s, 2, err, sizeof err) == 0,
		      "case %u: %s", k, err);
		CHECK(s.n == NCHUNKS, "case %u: %u chunks", k, s.n);
		unsigned char want[CKPT_PAGE_SIZE];
		unsigned page = 0;
		for (unsigned i = 0; i < NCHUNKS; i++)
			for (unsigned p = 0; p < chunks[i].npages; p++, page++) {
				page_pattern(want, chunk_addr(&pg, &chunks[i], V_GOOD) +
						       p * CKPT_PAGE_SIZE);
				CHECK(!memcmp(s.data + s.skew + page * CKPT_PAGE_SIZE, want,
					      sizeof want),
				      "case %u: chunk %u page %u data", k, i, p);
			}
		CHECK(atomic_load(&img->direct_bytes) == cases[k].direct,
		      "case %u: %llu bytes read with O_DIRECT, expected %llu", k,
		      (unsigned long long)atomic_load(&img->direct_bytes),
		      (unsigned long long)cases[k].direct);
		ckpt_image_close(img);
	}
}

/* ---- small chunks read in batches ---- */

struct scattered_seen {
	unsigned char *pages;			 /* the heap's chunks, by address */
	unsigned char other[3 * CKPT_PAGE_SIZE]; /* chunks 0 and 3 */
	_Atomic unsigned n;
};

static void *scattered_dest(void *arg, const struct ckpt_page_chunk *c)
{
	struct scattered_seen *s = arg;
	atomic_fetch_add(&s->n, 1);
	if (c->area == 1 && c->npages == 1 && c->addr >= SCATTERED_BASE &&
	    (c->addr - SCATTERED_BASE) / (2 * CKPT_PAGE_SIZE) < scattered)
		return s->pages + (c->addr - SCATTERED_BASE) / 2;
	return c->area == 0 ? s->other : s->other + CKPT_PAGE_SIZE;
}

/* Read the image as the restorer does (2 threads); 0 if every page came
 * back as written. */
static int read_scattered(const char *path, char *err, size_t errlen)
{
	static struct scattered_seen s;
	static unsigned char pages[SCATTERED_MAX * CKPT_PAGE_SIZE];
	memset(pages, 0, sizeof pages);
	s.pages = pages;
	s.n = 0;
	struct ckpt_image *img = ckpt_image_open(path, err, errlen);
	if (!img)
		return -1;
	int r = ckpt_image_read_pages_parallel(img, scattered_dest, &s, 2, err, errlen);
	ckpt_image_close(img);
	if (r != 0)
		return r;
	CHECK(s.n == scattered + 2, "%u chunks delivered, expected %u", s.n, scattered + 2);
	unsigned char want[CKPT_PAGE_SIZE];
	for (unsigned k = 0; k < scattered; k++) {
		page_pattern(want, SCATTERED_BASE + 2ull * k * CKPT_PAGE_SIZE);
		if (memcmp(pages + (size_t)k * CKPT_PAGE_SIZE, want, sizeof want) != 0) {
			CHECK(0, "scattered page %u differs", k);
			return -1;
		}
	}
	return 0;
}

/* An incremental generation's thousands of one-page chunks are read in
 * batches of consecutive chunks (one read each, several per thread):
 * raw, stored and compressed ones come back as written, and damage to a
 * chunk's data or header inside a batch is still found, by chunk. */
static void test_batched_reads(const char *path)
{
	char err[256];
	scattered = 3000; /* > 1024 chunks and > 1 MiB: several batches */
	for (int kind = 0; kind < 3; kind++) {
		stored = kind == 1;
		compressed = kind == 2;
		const char *name = kind == 0 ? "raw" : kind == 1 ? "stored" : "compressed";
		CHECK(create_image(path, V_GOOD, 1 << 16) == 0, "%s: write image", name);
		CHECK(verify(path, err, sizeof err) == 0, "%s: verify: %s", name, err);
		CHECK(read_scattered(path, err, sizeof err) == 0, "%s: read: %s", name, err);
		struct ckpt_image *img = ckpt_image_open(path, err, sizeof err);
		CHECK(img && img->nindex == scattered + 2, "%s: index", name);
		if (!img || img->nindex != scattered + 2) {
			ckpt_image_close(img);
			continue;
		}
		/* chunk 2001: one in the middle of a batch */
		const struct ckpt_chunk_entry e = img->index[2001];
		ckpt_image_close(img);
		uint64_t data = e.offset + sizeof e.chunk + (e.zlen ? 8 : 0);
		const struct {
			const char *what;
			uint64_t at;
			const char *says;
		} flips[] = {{"data", data + (e.zlen ? e.zlen / 2 : 100), "chunk 2001"},
			     {"header", e.offset + 12, "differs from its PAGE_INDEX entry"}};
		int fd = open(path, O_RDWR);
		for (unsigned i = 0; i < 2; i++) {
			unsigned char c;
			CHECK(pread(fd, &c, 1, (off_t)flips[i].at) == 1, "pread");
			c ^= 0x10;
			CHECK(pwrite(fd, &c, 1, (off_t)flips[i].at) == 1, "pwrite");
			err[0] = 0;
			CHECK(read_scattered(path, err, sizeof err) != 0 &&
				  strstr(err, flips[i].says),
			      "%s: a byte of chunk 2001's %s changed: read says \"%s\"", name,
			      flips[i].what, err);
			c ^= 0x10;
			CHECK(pwrite(fd, &c, 1, (off_t)flips[i].at) == 1, "pwrite");
		}
		close(fd);
		CHECK(read_scattered(path, err, sizeof err) == 0, "%s: read again: %s", name, err);
	}
	stored = compressed = 0;
	scattered = 0;
}

/* ---- the writer's read-back check ---- */

/* An I/O "thread" that writes what it is handed with one byte changed, as
 * a faulty disk, file system or memory would: the writer must notice when
 * it reads the pages back. */
struct flip_io {
	int fd;
	int64_t flip_at; /* file offset of the byte to change; -1: none */
	int flipped;
	struct ckpt_writer *w;
	int err; /* the write-behind's result */
};

/* Writes (as the agent's I/O thread does, at once) and does the
 * write-behind, whose read-back check must find the changed byte. */
static void flip_submit(void *ctx, const char *buf, size_t len, uint64_t off)
{
	struct flip_io *f = ctx;
	static char copy[1 << 20];
	const char *data = buf;
	if (f->flip_at >= (int64_t)off && f->flip_at < (int64_t)(off + len) && len <= sizeof copy) {
		memcpy(copy, buf, len);
		copy[f->flip_at - (int64_t)off] ^= 0x20;
		data = copy;
		f->flipped = 1;
	}
	CHECK(pwrite(f->fd, data, len, (off_t)off) == (ssize_t)len, "flip_submit: %s",
	      strerror(errno));
	if (!f->err)
		f->err = ckpt_writer_behind(f->w, (char *)buf, off + len);
}

static int flip_wait(void *ctx)
{
	struct flip_io *f = ctx;
	return f->err;
}

enum { BIG_ROUNDS = 40, BIG_PAGES = 256 };

/* About 44 MiB of page chunks of every kind (raw, stored, compressed,
 * reference), written with the read-back check through a flip_io: more
 * than the writer's write-behind keeps, so most of it is checked while
 * writing and the rest when PAGES ends. Returns the finish result; *w
 * holds the writer afterwards. */
static int write_big(const char *path, struct flip_io *f, struct ckpt_writer *w,
		     struct ckpt_chunk_entry *entries, uint32_t room)
{
	static char buf[1 << 20], spare[1 << 20], check[1 << 20];
	static char pages[BIG_PAGES * CKPT_PAGE_SIZE];
	f->fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	f->flipped = 0;
	f->w = w;
	f->err = 0;
	struct ckpt_writer_io io = {flip_submit, flip_wait, NULL, f};
	ckpt_writer_init(w, f->fd, buf, sizeof buf);
	ckpt_writer_set_io(w, &io, spare);
	ckpt_writer_set_check(w, check, sizeof check);
	ckpt_writer_set_index(w, entries, room);
	use_zstd(w);
	ckpt_writer_begin_section(w, CKPT_SEC_PAGES);
	uint64_t seed = 1;
	for (int r = 0; r < BIG_ROUNDS; r++) {
		for (size_t i = 0; i < sizeof pages; i += 8) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			memcpy(pages + i, &seed, 8);
		}
		uint64_t addr = 0x100000000ull + (uint64_t)r * (BIG_PAGES + 16) * CKPT_PAGE_SIZE;
		ckpt_writer_chunk(w, 0, addr, pages, BIG_PAGES); /* raw, padded */
		ckpt_writer_chunk(w, 0, addr + BIG_PAGES * CKPT_PAGE_SIZE, pages, 2); /* stored */
		memset(pages, r, 3 * CKPT_PAGE_SIZE);
		ckpt_writer_chunk(w, 0, addr + (BIG_PAGES + 4) * CKPT_PAGE_SIZE, pages,
				  3); /* zstd */
		ckpt_writer_ref(w, 0, addr + (BIG_PAGES + 8) * CKPT_PAGE_SIZE, 4);
	}
	ckpt_writer_end_section(w, 0);
	ckpt_writer_flush_io(w);
	struct ckpt_image_header hdr = {0};
	int r = ckpt_writer_finish(w, &hdr);
	close(f->fd);
	return r;
}

static void test_read_back_check(const char *path)
{
	static struct ckpt_chunk_entry entries[4 * BIG_ROUNDS];
	struct ckpt_writer w;
	struct flip_io f = {.flip_at = -1};
	CHECK(write_big(path, &f, &w, entries, 4 * BIG_ROUNDS) == 0, "clean write: errno %d",
	      w.error);
	CHECK(w.checked == 1, "a clean image reads back checked");
	CHECK(w.index_used == 4 * BIG_ROUNDS, "%u chunks", w.index_used);
	uint32_t n = w.index_used;
	if (n != 4 * BIG_ROUNDS)
		return;
	static struct ckpt_chunk_entry clean[4 * BIG_ROUNDS];
	memcpy(clean, entries, sizeof clean);
	/* raw data early (found while writing), a header, the padding before
	 * a raw chunk, a stored frame, a compressed frame and a reference in
	 * the last round (found when PAGES ends) */
	const struct {
		const char *what;
		int64_t at;
	} flips[] = {
	    {"raw chunk data, first round", (int64_t)clean[4].offset + 24 + 5000},
	    {"compressed chunk header, round 20", (int64_t)clean[82].offset + 10},
	    {"padding before a raw chunk", (int64_t)clean[8].offset - 100},
	    {"stored chunk frame, last round", (int64_t)clean[n - 3].offset + 24 + 30},
	    {"compressed chunk frame, last round", (int64_t)clean[n - 2].offset + 24 + 9},
	    {"reference chunk, last round", (int64_t)clean[n - 1].offset + 4},
	};
	for (unsigned i = 0; i < sizeof flips / sizeof flips[0]; i++) {
		f.flip_at = flips[i].at;
		int r = write_big(path, &f, &w, entries, 4 * BIG_ROUNDS);
		CHECK(f.flipped, "%s: the byte was written", flips[i].what);
		CHECK(r == -1 && w.error == EBADMSG && !w.checked,
		      "%s changed on its way to the file: finish %d, errno %d, checked %d",
		      flips[i].what, r, w.error, w.checked);
	}
	/* an index without room for every chunk: nothing vouched for */
	f.flip_at = -1;
	CHECK(write_big(path, &f, &w, entries, 10) == 0 && w.index_lost && !w.checked,
	      "index lost: finish ok, not checked");
	/* the coordinator's check of a checked image needs the index */
	char err[256];
	CHECK(create_image(path, V_GOOD, 1000) == 0, "write image");
	CHECK(ckpt_image_verify_checked(path, err, sizeof err) == 0, "verify checked: %s", err);
	indexed = 0;
	CHECK(create_image(path, V_GOOD, 1000) == 0, "write image");
	indexed = 1;
	CHECK(ckpt_image_verify_checked(path, err, sizeof err) == -1 && strstr(err, "PAGE_INDEX"),
	      "a checked image without an index is refused: %s", err);
}

/* ---- raw chunks read in place ---- */

/* Writes chunks of these sizes (pages) with ckpt_writer_chunk, or where
 * the writer gives one, through a raw slot filled after the fact; returns
 * the file's bytes. */
static char *write_slots(const char *path, int use_slots, int *slots, size_t *len)
{
	static const uint32_t runs[] = {256, 40, 3, 256, 17, 16, 256, 256, 1, 100, 256};
	static char buf[2 << 20];
	static char pages[256 * CKPT_PAGE_SIZE];
	struct ckpt_writer w;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ckpt_writer_init(&w, fd, buf, sizeof buf);
	ckpt_writer_begin_section(&w, CKPT_SEC_PAGES);
	uint64_t addr = 0x200000000ull;
	*slots = 0;
	for (unsigned r = 0; r < sizeof runs / sizeof runs[0]; r++) {
		uint32_t n = runs[r];
		for (size_t i = 0; i < n * CKPT_PAGE_SIZE; i++)
			pages[i] = (char)(i * 7 + r);
		char *slot = use_slots ? ckpt_writer_slot(&w, n) : NULL;
		if (slot) {
			memcpy(slot, pages, n * CKPT_PAGE_SIZE);
			ckpt_writer_slot_commit(&w, 0, addr, n);
			(*slots)++;
		} else {
			ckpt_writer_chunk(&w, 0, addr, pages, n);
		}
		addr += (n + 1) * CKPT_PAGE_SIZE;
	}
	ckpt_writer_end_section(&w, 0);
	struct ckpt_image_header hdr = {0};
	CHECK(ckpt_writer_finish(&w, &hdr) == 0, "finish: errno %d", w.error);
	close(fd);
	return slurp(path, len);
}

static void test_raw_slots(const char *path)
{
	size_t len1, len2;
	int slots;
	char *plain = write_slots(path, 0, &slots, &len1);
	char *slotted = write_slots(path, 1, &slots, &len2);
	/* runs of 17 pages and more: the stored-frame limit is 16 */
	CHECK(slots == 8, "%d runs written through a slot, 8 expected", slots);
	CHECK(plain && slotted && len1 == len2 && !memcmp(plain, slotted, len1),
	      "chunks written in place differ from chunks written from a copy");
	free(plain);
	free(slotted);
	/* no slot with a compressor, nor for a chunk larger than the buffer */
	static char buf[1 << 20];
	struct ckpt_writer w;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ckpt_writer_init(&w, fd, buf, sizeof buf);
	ckpt_writer_begin_section(&w, CKPT_SEC_PAGES);
	CHECK(ckpt_writer_slot(&w, 256) == NULL, "a 1 MiB buffer gave a slot for 256 pages");
	CHECK(ckpt_writer_slot(&w, 200) != NULL, "no slot for 200 pages in a 1 MiB buffer");
	use_zstd(&w);
	CHECK(ckpt_writer_slot(&w, 200) == NULL, "a slot despite a single compressor");
	close(fd);
	/* with a batch compressor, the slot is the next job's copy */
	for (int variant = 0; variant < 2; variant++) {
		compressed = 2;
		slot_jobs = variant;
		CHECK(create_image(path, V_REFS, 4096) == 0, "write image");
		size_t l = 0;
		char *p = slurp(path, &l);
		if (!variant) {
			plain = p;
			len1 = l;
		} else {
			slotted = p;
			len2 = l;
		}
	}
	CHECK(slot_jobs_used > 0, "no job filled through a slot");
	CHECK(plain && slotted && len1 == len2 && !memcmp(plain, slotted, len1),
	      "jobs filled in place: image differs");
	compressed = 0;
	slot_jobs = 0;
	free(plain);
	free(slotted);
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--write-seed"))
		return write_seeds(argv[2]);
	char dir[] = "/tmp/test_image.XXXXXX", path[64];
	if (!mkdtemp(dir))
		return perror("mkdtemp"), 1;
	snprintf(path, sizeof path, "%s/image", dir);

	test_crc32c();
	test_roundtrip(path);
	test_buffer_sizes(path);
	test_truncation(path);
	test_byte_flips(path);
	stored = 1;
	test_roundtrip(path);
	test_buffer_sizes(path);
	test_truncation(path);
	test_byte_flips(path);
	test_stored_frames(path);
	stored = 0;
	compressed = 1;
	test_roundtrip(path);
	test_byte_flips(path);
	test_batch_same_bytes(path);
	test_adaptive_raw(path);
	test_raw_slots(path);
	compressed = 0;
	indexed = 0; /* images of versions before 6 */
	test_version_2(path);
	test_header_checks(path);
	indexed = 1;
	test_bad_records(path);
	test_writer_misuse(path);
	test_refs(path);
	test_mapped_and_layout(path);
	indexed = 0;
	test_roundtrip(path);
	test_mapped_and_layout(path);
	indexed = 1;
	test_index(path);
	test_direct_reads(path);
	test_batched_reads(path);
	test_read_back_check(path);
	stored = 1;
	test_recorded_same_bytes(path);
	stored = 0;

	unlink(path);
	rmdir(dir);
	if (failures) {
		fprintf(stderr, "test_image: %d checks failed\n", failures);
		return 1;
	}
	printf("test_image: ok\n");
	return 0;
}
