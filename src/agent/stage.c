/* The stage: memory kept from one checkpoint to the next, into which the
 * pause copies the pages a small incremental checkpoint stores (and the
 * writer's other operations: ckpt_writer_record). The program is resumed
 * as soon as they are copied, and the image is compressed and written from
 * the copy, in the program's own process. Without it, every incremental
 * checkpoint forks a copy-on-write writer, whose first read of each page it
 * saves, whose buffers (fresh memory each time) and whose exit cost
 * microseconds per page in some VMs, however few pages changed.
 *
 * It is sized at SUSPEND, while the program still runs, from what write
 * tracking expects the capture to store, so that the pause finds its pages
 * present (fresh memory costs a fault per page, microseconds each in those
 * VMs), and used only when tracking bounds what the capture can store
 * below its size. It is not part of any image: after a restart it is gone. */
#include <link.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "agent/agent.h"
#include "common/rawsys.h"
#include "image/writer.h"

#define STAGE_MAX (64ull << 20)
#define STAGE_ROUND (2ull << 20)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#define PR_SET_VMA_ 0x53564d41
#define PR_SET_VMA_ANON_NAME_ 0

static struct {
	char *buf;
	size_t cap;
	struct ckpt_writer_record rec;
} stage;
static int bss_populated; /* see stage_populate_own_data */

/* Room for bound bytes of pages with their operations' headers, the
 * sections recorded with them (areas, hashes) and some slack. */
static uint64_t room_for(uint64_t bound)
{
	if (bound > STAGE_MAX)
		return UINT64_MAX;
	return bound + bound / 64 + STAGE_ROUND;
}

static void release(void)
{
	if (stage.buf)
		raw_syscall2(SYS_munmap, stage.buf, stage.cap);
	stage.buf = 0;
	stage.cap = 0;
}

uint64_t stage_limit(void)
{
	/* what stage_reserve would make room for */
	return (STAGE_MAX - STAGE_ROUND) * 4 / 5 - STAGE_MAX / 64;
}

/* A new range of len bytes, aligned to 2 MiB (mapped with 2 MiB more, the
 * ends cut off) for huge pages; 0 if none. */
static long map_aligned(uint64_t len)
{
	long p = raw_syscall6(SYS_mmap, 0, (long)(len + STAGE_ROUND), PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p < 0 && p > -4096)
		return 0;
	long aligned = (long)(((uint64_t)p + STAGE_ROUND - 1) & ~(STAGE_ROUND - 1));
	if (aligned > p)
		raw_syscall2(SYS_munmap, p, aligned - p);
	raw_syscall2(SYS_munmap, aligned + (long)len, p + (long)STAGE_ROUND - aligned);
	return aligned;
}

/* Make [from, to) of the stage ready: its own mapping, never merged with
 * the program's (which write tracking would then register with it), out
 * of core dumps, present. */
static void prepare(uint64_t from, uint64_t to)
{
	long lo = (long)(uintptr_t)stage.buf, len = (long)stage.cap;
	raw_syscall3(SYS_madvise, lo, len, MADV_DONTDUMP);
	raw_syscall5(SYS_prctl, PR_SET_VMA_, PR_SET_VMA_ANON_NAME_, lo, len, (long)"ckpt-stage");
	/* Huge pages where the system offers them (transparent huge pages
	 * "always" or "madvise"): 12 MiB cost 10 ms in small pages where the
	 * VM shadows page tables, 1 ms in huge ones. */
	raw_syscall3(SYS_madvise, lo, len, MADV_HUGEPAGE);
	raw_syscall3(SYS_madvise, lo + (long)from, (long)(to - from), MADV_POPULATE_WRITE);
	/* and touched: in VMs that shadow the page tables, a page the kernel
	 * populated still costs microseconds at its first access from user
	 * space, which would otherwise fall in the first pause to use it */
	for (uint64_t at = from; at < to; at += 4096)
		((volatile char *)stage.buf)[at] = 0;
}

/* Room for a capture expected to store expected_bytes of pages (at
 * SUSPEND, and after each checkpoint for the next one: see
 * track_next_store_bytes), made while the program runs. Room added at
 * SUSPEND is fresh memory in the checkpoint's way, microseconds a page in
 * some VMs: the first incremental checkpoint of a torch program spent 75
 * ms at SUSPEND making 36 MiB of room when nothing was prepared before,
 * 14-18 ms adding 6 MiB to room for the untracked memory alone. */
void stage_reserve(uint64_t expected_bytes)
{
	if (expected_bytes > STAGE_MAX)
		return; /* a large capture, or one tracking cannot bound (UINT64_MAX) */
	uint64_t want = room_for(expected_bytes + expected_bytes / 4);
	if (want == UINT64_MAX || want > STAGE_MAX)
		return; /* a large capture: copy-on-write; keep what there is */
	want = (want + STAGE_ROUND - 1) & ~(STAGE_ROUND - 1);
	/* grow; shrink only when far too large, since growing costs */
	if (stage.cap >= want && stage.cap <= 4 * want)
		return;
	long at = map_aligned(want);
	if (!at)
		return;
	uint64_t kept = 0;
	/* Growing: the pages it holds move along (their page tables, not
	 * their bytes), and only the rest is new memory, which costs (the
	 * first capture after a full checkpoint finds the stage too small by
	 * the pages written since, each time it grows). */
	if (stage.buf && stage.cap < want &&
	    raw_syscall5(SYS_mremap, stage.buf, stage.cap, stage.cap, MREMAP_MAYMOVE | MREMAP_FIXED,
			 at) == at)
		kept = stage.cap;
	else
		release();
	stage.buf = (char *)at;
	stage.cap = want;
	prepare(kept, want);
}

struct ckpt_writer_record *stage_record_for(uint64_t bound_bytes)
{
	uint64_t need = room_for(bound_bytes);
	if (!stage.buf || need == UINT64_MAX || need > stage.cap)
		return 0;
	stage.rec = (struct ckpt_writer_record){stage.buf, stage.cap, 0, 0};
	return &stage.rec;
}

void stage_range(uint64_t *lo, uint64_t *hi)
{
	*lo = (uint64_t)(uintptr_t)stage.buf;
	*hi = *lo + stage.cap;
}

int stage_owns(uint64_t start, uint64_t end)
{
	uint64_t lo = (uint64_t)(uintptr_t)stage.buf;
	return stage.buf && start >= lo && end <= lo + stage.cap;
}

void stage_forget(void)
{
	stage.buf = 0;
	stage.cap = 0;
	bss_populated = 0; /* what was zero is not restored */
}

/* ---- the agent's own zero-initialized data ----
 * A capture written from the stage runs in the program's own process, and
 * the first one touches most of the agent's .bss (buffers of several MiB
 * it never touched before: the copy-on-write writer had touched its own
 * copies), each page fresh memory, microseconds each in VMs that shadow
 * the page tables (15 ms of the first such pause in the reference VM).
 * They are populated at once at the first SUSPEND instead, while the
 * program runs, before write tracking registers them. */
static struct {
	uint64_t lo, hi;
	uint64_t segment_lo; /* the writable segment: its file part, then .bss */
} bss;

static int find_own(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	uint64_t me = (uint64_t)(uintptr_t)arg;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uint64_t lo = info->dlpi_addr + ph->p_vaddr;
		if (ph->p_type != PT_LOAD || me < lo || me >= lo + ph->p_memsz)
			continue;
		bss.segment_lo = lo & ~(uint64_t)4095;
		/* the part of this segment past the file's bytes */
		bss.lo = (lo + ph->p_filesz + 4095) & ~(uint64_t)4095;
		bss.hi = (lo + ph->p_memsz + 4095) & ~(uint64_t)4095;
		return 1;
	}
	return 0;
}

void stage_find_own_data(void)
{
	bss.lo = bss.hi = bss.segment_lo = 0;
	dl_iterate_phdr(find_own, &bss_populated);
}

void stage_populate_own_data(void)
{
	if (bss_populated || bss.lo >= bss.hi)
		return;
	bss_populated = 1;
	raw_syscall3(SYS_madvise, bss.lo, bss.hi - bss.lo, MADV_POPULATE_WRITE);
}

int stage_in_own_data(uint64_t start, uint64_t end)
{
	return start < bss.hi && end > bss.lo;
}

int stage_in_own_segment(uint64_t start, uint64_t end)
{
	return start < bss.hi && end > bss.segment_lo;
}

/* Buffers of the agent's .bss that hold nothing a restart needs (the maps
 * text, scan results): no capture saves them, and a restart finds them
 * zero. Their pages are present (populated above), so a capture would
 * read each one to find it zero, the capture itself having written some:
 * 1,200 pages, microseconds each in VMs that shadow the page tables (3-4
 * ms of every pause, in every process). */
#define MAX_OWN_SCRATCH 16
static struct {
	uint64_t lo, hi;
} own_scratch[MAX_OWN_SCRATCH];
static int nown_scratch;

void stage_own_scratch(const void *buf, size_t len)
{
	uint64_t lo = ((uint64_t)(uintptr_t)buf + 4095) & ~(uint64_t)4095;
	uint64_t hi = ((uint64_t)(uintptr_t)buf + len) & ~(uint64_t)4095;
	if (hi <= lo || nown_scratch == MAX_OWN_SCRATCH)
		return;
	own_scratch[nown_scratch].lo = lo;
	own_scratch[nown_scratch].hi = hi;
	nown_scratch++;
}

int stage_own_scratch_page(uint64_t addr)
{
	for (int i = 0; i < nown_scratch; i++)
		if (addr >= own_scratch[i].lo && addr < own_scratch[i].hi)
			return 1;
	return 0;
}
