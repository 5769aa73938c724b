/* Incremental checkpoints without dirty-page tracking (this kernel may have
 * no soft-dirty bits): every page the image would hold is hashed (128-bit
 * XXH3) and compared with the hash the parent generation's image recorded
 * for the same address. An equal page becomes a reference to the parent
 * instead of being stored again. Each image records the hashes of all the
 * pages it holds or refers to (PAGE_HASHES), so the next checkpoint can
 * compare with it in turn.
 *
 * Why a hash is enough: a reference means "the bytes the parent image
 * restores at this address", and the parent's table describes exactly
 * those bytes, whatever happened in between. Pages the writer itself
 * changes while it works (its own stack and variables) are saved
 * mid-change, with or without references; nothing restored depends on
 * them.
 *
 * Runs in the image writer (no malloc, raw system calls): the parent's
 * table is mapped read-only from its file, this image's table is built in
 * scratch memory. Any problem with the parent's table makes this image a
 * full one: never an error. */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "agent/agent.h"
#include "common/crc32c.h"
#include "common/rawsys.h"
#include "image/writer.h"

static struct {
	/* the parent's table, ascending by address, and a cursor into it
	 * (pages are hashed in ascending address order) */
	const struct ckpt_page_hash *parent;
	uint64_t nparent, cursor;
	void *map;
	size_t map_len;
	/* this image's table, in a mapping of its own (address space only
	 * until used); NULL once it overflowed (then no table is written and
	 * the next checkpoint of this process is full) */
	struct ckpt_page_hash *table;
	uint64_t n, cap;
	void *table_map;
	size_t table_len;
} incr;

static int read_exact(long fd, void *buf, size_t len, uint64_t off)
{
	return raw_syscall4(SYS_pread64, fd, buf, len, off) == (long)len ? 0 : -1;
}

/* Map the PAGE_HASHES section of the parent's image of this process after
 * checking its header, table and the section's checksum. */
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
	const struct ckpt_section *sec = 0;
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
	for (uint32_t i = 0; i < h.section_count; i++)
		if (table[i].type == CKPT_SEC_PAGE_HASHES)
			sec = &table[i];
	if (!sec || !sec->count || sec->length != sec->count * sizeof(struct ckpt_page_hash))
		goto out;
	uint64_t skew = sec->offset % CKPT_PAGE_SIZE;
	size_t len = (size_t)(sec->length + skew);
	long m =
	    raw_syscall6(SYS_mmap, 0, len, PROT_READ, MAP_PRIVATE, fd, (long)(sec->offset - skew));
	if (m < 0 && m > -4096)
		goto out;
	const char *data = (const char *)m + skew;
	if (crc32c_update(0, data, sec->length) != sec->crc) {
		raw_syscall2(SYS_munmap, m, len);
		goto out;
	}
	incr.map = (void *)m;
	incr.map_len = len;
	incr.parent = (const struct ckpt_page_hash *)data;
	incr.nparent = sec->count;
out:
	raw_syscall1(SYS_close, fd);
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
	size_t len = (size_t)(max_pages ? max_pages : 1) * sizeof *incr.table;
	len = (len + CKPT_PAGE_SIZE - 1) & ~(size_t)(CKPT_PAGE_SIZE - 1);
	long m = raw_syscall6(SYS_mmap, 0, len, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m >= 0 || m < -4095) {
		incr.table_map = (void *)m;
		incr.table_len = len;
		incr.table = incr.table_map;
		incr.cap = max_pages;
	}
	if (agent.parent_dir[0])
		open_parent();
}

int incr_page(uint64_t addr, const void *src)
{
	if (!agent.hash_pages)
		return 0;
	XXH128_hash_t h = XXH3_128bits(src, CKPT_PAGE_SIZE);
	if (incr.table) {
		if (incr.n < incr.cap)
			incr.table[incr.n++] = (struct ckpt_page_hash){addr, h.low64, h.high64};
		else
			incr.table = 0;
	}
	while (incr.cursor < incr.nparent && incr.parent[incr.cursor].addr < addr)
		incr.cursor++;
	return incr.cursor < incr.nparent && incr.parent[incr.cursor].addr == addr &&
	       incr.parent[incr.cursor].lo == h.low64 && incr.parent[incr.cursor].hi == h.high64;
}

int incr_page_unchanged(uint64_t addr)
{
	if (!agent.hash_pages || !incr.nparent)
		return 0;
	while (incr.cursor < incr.nparent && incr.parent[incr.cursor].addr < addr)
		incr.cursor++;
	if (incr.cursor == incr.nparent || incr.parent[incr.cursor].addr != addr)
		return 0;
	if (incr.table) {
		if (incr.n < incr.cap)
			incr.table[incr.n++] = incr.parent[incr.cursor];
		else
			incr.table = 0;
	}
	return 1;
}

void incr_write_hashes(struct ckpt_writer *w)
{
	if (!agent.hash_pages || !incr.table || !incr.n || incr.n > UINT32_MAX)
		return;
	ckpt_writer_begin_section(w, CKPT_SEC_PAGE_HASHES);
	ckpt_writer_write(w, incr.table, incr.n * sizeof *incr.table);
	ckpt_writer_end_section(w, (uint32_t)incr.n);
}

void incr_end(void)
{
	if (incr.map)
		raw_syscall2(SYS_munmap, incr.map, incr.map_len);
	if (incr.table_map)
		raw_syscall2(SYS_munmap, incr.table_map, incr.table_len);
	mem_zero(&incr, sizeof incr);
}
