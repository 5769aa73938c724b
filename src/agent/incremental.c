/* Incremental checkpoints: a page unchanged since the parent generation
 * becomes a reference to it instead of being stored again. Where write
 * tracking (track.c) proves a page unchanged, it is referred to without
 * being read. Elsewhere (kernels without it, mappings it does not cover,
 * pages written since) every page the image would hold is hashed (128-bit
 * XXH3) and compared with the hash the parent generation's image recorded
 * for the same address.
 *
 * Each image records what it holds or refers to, for the next checkpoint:
 * a hash per page (PAGE_HASHES) where tracking does not cover the page,
 * and runs of pages without hashes (PAGE_RUNS) where it does: such a page
 * is proven unchanged next time, or was written and is stored anyway, so
 * its hash would only be written and never read.
 *
 * Why a hash is enough: a reference means "the bytes the parent image
 * restores at this address", and the parent's table describes exactly
 * those bytes, whatever happened in between. Pages the writer itself
 * changes while it works (its own stack and variables) are saved
 * mid-change, with or without references; nothing restored depends on
 * them.
 *
 * Runs in the image writer (no malloc, raw system calls): the parent's
 * records are mapped read-only from its file, this image's are built in
 * mappings of their own. Any problem with the parent's records makes this
 * image a full one: never an error. */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "agent/agent.h"
#include "common/crc32c.h"
#include "common/rawsys.h"
#include "image/writer.h"

/* records mapped from a file or built here */
struct records {
	void *map;
	size_t map_len;
	const char *data;
	uint64_t n, cursor; /* cursor: records are looked up in ascending order */
};

static struct {
	int have_parent;
	struct records parent_hashes, parent_runs;
	/* this image's (address space only until used); overflow: neither
	 * is written and the next checkpoint of this process is full */
	struct ckpt_page_hash *table;
	struct ckpt_page_run *runs;
	uint64_t n, nruns, cap; /* each mapping holds cap records */
	int overflow;
} incr;

static int read_exact(long fd, void *buf, size_t len, uint64_t off)
{
	return raw_syscall4(SYS_pread64, fd, buf, len, off) == (long)len ? 0 : -1;
}

/* Map a record section of the parent's image after checking its size and
 * checksum (an absent or empty section maps nothing and is fine). */
static int map_records(long fd, const struct ckpt_section *sec, uint64_t rec, struct records *r)
{
	if (!sec || !sec->count)
		return 0;
	if (sec->length != sec->count * rec)
		return -1;
	uint64_t skew = sec->offset % CKPT_PAGE_SIZE;
	size_t len = (size_t)(sec->length + skew);
	long m =
	    raw_syscall6(SYS_mmap, 0, len, PROT_READ, MAP_PRIVATE, fd, (long)(sec->offset - skew));
	if (m < 0 && m > -4096)
		return -1;
	r->map = (void *)m;
	r->map_len = len;
	r->data = (const char *)m + skew;
	r->n = sec->count;
	if (crc32c_update(0, r->data, sec->length) != sec->crc)
		return -1;
	return 0;
}

static void unmap_records(struct records *r)
{
	if (r->map)
		raw_syscall2(SYS_munmap, r->map, r->map_len);
	mem_zero(r, sizeof *r);
}

/* Map the PAGE_HASHES and PAGE_RUNS sections of the parent's image of
 * this process after checking its header, table and the sections'
 * checksums. */
static void open_parent(void)
{
	static char path[4200];
	path[0] = 0;
	str_append(path, sizeof path, agent.parent_dir);
	str_append(path, sizeof path, "/");
	str_append_u64(path, sizeof path, (uint64_t)agent.pid);
	str_append(path, sizeof path, ".img");
	long fd = raw_syscall4(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return; /* a process the parent generation did not have */
	static struct ckpt_image_header h;
	static struct ckpt_section table[CKPT_MAX_SECTIONS];
	const struct ckpt_section *hashes = 0, *runs = 0;
	if (read_exact(fd, &h, sizeof h, 0) != 0 ||
	    __builtin_memcmp(h.magic, CKPT_IMAGE_MAGIC, CKPT_IMAGE_MAGIC_LEN) != 0 ||
	    h.format_version != CKPT_FORMAT_VERSION || h.header_size != sizeof h ||
	    h.section_count > CKPT_MAX_SECTIONS)
		goto out;
	uint32_t want = h.header_crc;
	h.header_crc = 0;
	if (crc32c_update(0, &h, sizeof h) != want ||
	    read_exact(fd, table, h.section_count * sizeof table[0], h.section_table_offset) != 0 ||
	    crc32c_update(0, table, h.section_count * sizeof table[0]) != h.section_table_crc)
		goto out;
	for (uint32_t i = 0; i < h.section_count; i++) {
		if (table[i].type == CKPT_SEC_PAGE_HASHES)
			hashes = &table[i];
		if (table[i].type == CKPT_SEC_PAGE_RUNS)
			runs = &table[i];
	}
	if ((!hashes && !runs) ||
	    map_records(fd, hashes, sizeof(struct ckpt_page_hash), &incr.parent_hashes) != 0 ||
	    map_records(fd, runs, sizeof(struct ckpt_page_run), &incr.parent_runs) != 0) {
		unmap_records(&incr.parent_hashes);
		unmap_records(&incr.parent_runs);
		goto out;
	}
	incr.have_parent = 1;
out:
	raw_syscall1(SYS_close, fd);
}

static void *map_anon(size_t len)
{
	len = (len + CKPT_PAGE_SIZE - 1) & ~(size_t)(CKPT_PAGE_SIZE - 1);
	long m = raw_syscall6(SYS_mmap, 0, len, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return m < 0 && m > -4096 ? 0 : (void *)m;
}

void incr_begin(uint64_t max_pages)
{
	mem_zero(&incr, sizeof incr);
	agent.pages_stored = agent.pages_referred = agent.pages_proven = 0;
	if (!agent.hash_pages)
		return;
	/* Not from the scratch arena: the compressors' contexts take their
	 * memory from it as they go. */
	if (max_pages > UINT32_MAX)
		max_pages = UINT32_MAX;
	if (!max_pages)
		max_pages = 1;
	incr.table = map_anon(max_pages * sizeof *incr.table);
	incr.runs = map_anon(max_pages * sizeof *incr.runs);
	incr.cap = max_pages;
	incr.overflow = !incr.table || !incr.runs;
	if (agent.parent_dir[0])
		open_parent();
}

static uint64_t run_end(const struct ckpt_page_run *r)
{
	return r->npages > (UINT64_MAX - r->addr) / CKPT_PAGE_SIZE
		   ? UINT64_MAX
		   : r->addr + r->npages * CKPT_PAGE_SIZE;
}

/* Does the parent hold the page at addr? Returns its hash there, if it
 * recorded one; *held says whether it holds the page at all. */
static const struct ckpt_page_hash *parent_has(uint64_t addr, int *held)
{
	struct records *h = &incr.parent_hashes, *r = &incr.parent_runs;
	const struct ckpt_page_hash *hash = (const struct ckpt_page_hash *)h->data;
	const struct ckpt_page_run *run = (const struct ckpt_page_run *)r->data;
	*held = 0;
	if (!incr.have_parent)
		return 0;
	while (h->cursor < h->n && hash[h->cursor].addr < addr)
		h->cursor++;
	if (h->cursor < h->n && hash[h->cursor].addr == addr) {
		*held = 1;
		return &hash[h->cursor];
	}
	while (r->cursor < r->n && run_end(&run[r->cursor]) <= addr)
		r->cursor++;
	*held = r->cursor < r->n && run[r->cursor].addr <= addr;
	return 0;
}

/* This image holds the npages pages at addr, covered by tracking: in a
 * run. */
static void record_run(uint64_t addr, uint64_t npages)
{
	if (incr.overflow)
		return;
	struct ckpt_page_run *last = incr.nruns ? &incr.runs[incr.nruns - 1] : 0;
	if (last && run_end(last) == addr)
		last->npages += npages;
	else if (incr.nruns < incr.cap)
		incr.runs[incr.nruns++] = (struct ckpt_page_run){addr, npages};
	else
		incr.overflow = 1;
}

/* This image holds the page at addr: with its hash lo/hi, or (covered by
 * tracking) in a run. */
static void record(uint64_t addr, int covered, uint64_t lo, uint64_t hi)
{
	if (incr.overflow)
		return;
	if (covered) {
		record_run(addr, 1);
	} else if (incr.n < incr.cap) {
		incr.table[incr.n++] = (struct ckpt_page_hash){addr, lo, hi};
	} else {
		incr.overflow = 1;
	}
}

int incr_has_parent(void)
{
	return incr.have_parent;
}

int incr_page(uint64_t addr, const void *src)
{
	if (!agent.hash_pages)
		return 0;
	int held, covered = track_covers(addr);
	const struct ckpt_page_hash *ph = parent_has(addr, &held);
	if (covered && !ph) {
		record(addr, 1, 0, 0); /* stored; nothing to compare with */
		return 0;
	}
	XXH128_hash_t h = XXH3_128bits(src, CKPT_PAGE_SIZE);
	record(addr, covered, h.low64, h.high64);
	return ph && ph->lo == h.low64 && ph->hi == h.high64;
}

int incr_page_unchanged(uint64_t addr)
{
	if (!agent.hash_pages)
		return 0;
	int held, covered = track_covers(addr);
	const struct ckpt_page_hash *ph = parent_has(addr, &held);
	if (!held || (!covered && !ph))
		return 0; /* not held, or its hash for this image is unknown */
	record(addr, covered, ph ? ph->lo : 0, ph ? ph->hi : 0);
	return 1;
}

uint64_t incr_pages_unchanged(uint64_t addr, uint64_t max)
{
	if (!agent.hash_pages || !incr.have_parent || incr.overflow)
		return 0;
	uint64_t n = track_covers_pages(addr, max);
	if (!n)
		return 0;
	struct records *h = &incr.parent_hashes, *r = &incr.parent_runs;
	const struct ckpt_page_hash *hash = (const struct ckpt_page_hash *)h->data;
	const struct ckpt_page_run *run = (const struct ckpt_page_run *)r->data;
	while (h->cursor < h->n && hash[h->cursor].addr < addr)
		h->cursor++;
	/* up to the parent's next page with a hash (one at a time there) */
	if (h->cursor < h->n) {
		uint64_t before = (hash[h->cursor].addr - addr) / CKPT_PAGE_SIZE;
		n = n < before ? n : before;
	}
	while (r->cursor < r->n && run_end(&run[r->cursor]) <= addr)
		r->cursor++;
	if (!n || r->cursor == r->n || run[r->cursor].addr > addr)
		return 0;
	uint64_t in_run = run_end(&run[r->cursor]) == UINT64_MAX
			      ? n
			      : (run_end(&run[r->cursor]) - addr) / CKPT_PAGE_SIZE;
	n = n < in_run ? n : in_run;
	record_run(addr, n);
	return n;
}

int incr_parent_lacks(uint64_t addr)
{
	int held;
	if (!agent.hash_pages || !incr.have_parent)
		return 0;
	parent_has(addr, &held);
	return !held;
}

void incr_write_hashes(struct ckpt_writer *w)
{
	if (!agent.hash_pages || incr.overflow || incr.n > UINT32_MAX || incr.nruns > UINT32_MAX)
		return;
	if (incr.n) {
		ckpt_writer_begin_section(w, CKPT_SEC_PAGE_HASHES);
		ckpt_writer_write(w, incr.table, incr.n * sizeof *incr.table);
		ckpt_writer_end_section(w, (uint32_t)incr.n);
	}
	if (incr.nruns) {
		ckpt_writer_begin_section(w, CKPT_SEC_PAGE_RUNS);
		ckpt_writer_write(w, incr.runs, incr.nruns * sizeof *incr.runs);
		ckpt_writer_end_section(w, (uint32_t)incr.nruns);
	}
}

void incr_end(void)
{
	unmap_records(&incr.parent_hashes);
	unmap_records(&incr.parent_runs);
	if (incr.table)
		raw_syscall2(SYS_munmap, incr.table, incr.cap * sizeof *incr.table);
	if (incr.runs)
		raw_syscall2(SYS_munmap, incr.runs, incr.cap * sizeof *incr.runs);
	mem_zero(&incr, sizeof incr);
}
