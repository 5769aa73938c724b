/* The address space: /proc/self/maps becomes the AREAS section, and the
 * pages restart needs become the PAGES section. Saved are: pages of private
 * anonymous memory that exist and are not all zero; pages of private file
 * mappings that the program changed (the rest is mapped again from the
 * file); resident pages of shared anonymous memory. /proc/self/pagemap
 * tells which pages exist and which are still the file's. */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "agent/agent.h"
#include "agent/pagescan.h"
#include "common/rawsys.h"
#include "image/writer.h"

#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)
#define PM_FILE (1ull << 61)
#define BATCH_PAGES 16384u
#define CHUNK_PAGES CKPT_CHUNK_PAGES_MAX
/* Agent-only area flag, cleared before AREAS is written: private memory
 * mapped from a file that restart cannot map again (deleted, replaced,
 * or a checkpoint image: is_image_file), saved like anonymous memory with
 * the pages the program has not touched yet (see populate_file_pages). */
#define AREA_FILE_GONE (1u << 31)
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

struct map_line {
	uint64_t start, end, offset, ino;
	unsigned major, minor;
	char perms[5];
	const char *path;
};

static uint64_t parse_dec(const char **p)
{
	uint64_t v = 0;
	for (; **p >= '0' && **p <= '9'; (*p)++)
		v = v * 10 + (uint64_t)(**p - '0');
	return v;
}

/* The fields of a maps line before its path; returns where they end. */
static const char *parse_fields(const char *p, struct map_line *m)
{
	m->start = scan_hex(&p);
	p++;
	m->end = scan_hex(&p);
	p++;
	for (int i = 0; i < 4; i++)
		m->perms[i] = *p ? *p++ : 0;
	m->perms[4] = 0;
	p++;
	m->offset = scan_hex(&p);
	p++;
	m->major = (unsigned)scan_hex(&p);
	p++;
	m->minor = (unsigned)scan_hex(&p);
	p++;
	m->ino = parse_dec(&p);
	return p;
}

/* Parse one line of /proc/self/maps in place; returns the next line. */
static char *parse_line(char *line, struct map_line *m)
{
	const char *p = parse_fields(line, m);
	while (*p == ' ')
		p++;
	char *nl = (char *)p;
	while (*nl && *nl != '\n')
		nl++;
	m->path = p;
	if (*nl) {
		*nl = 0;
		return nl + 1;
	}
	return nl;
}

long memory_read_maps(struct scratch *s, char **out)
{
	/* maps can be large (tens of thousands of areas); read all of it */
	size_t cap = 64u << 20;
	char *buf = scratch_alloc(s, cap);
	if (!buf)
		return -1;
	long n = read_file("/proc/self/maps", buf, cap);
	*out = buf;
	return n;
}

/* One line's fields, without cutting the text (others parse it after
 * this); returns the next line. */
static const char *peek_line(const char *p, struct map_line *m)
{
	p = parse_fields(p, m);
	while (*p && *p != '\n')
		p++;
	return *p ? p + 1 : p;
}

int memory_maps_cover_file(const char *maps, uint64_t dev, uint64_t ino, uint64_t size)
{
	/* dev as stat gives it (glibc's encoding), maps shows major:minor */
	unsigned major = (unsigned)(((dev >> 8) & 0xfff) | ((dev >> 32) & ~0xfffull));
	unsigned minor = (unsigned)((dev & 0xff) | ((dev >> 12) & ~0xffull));
	uint64_t covered = 0;
	int found = 0, grew = 1;
	/* a pass per mapping that extends the covered prefix: few mappings
	 * of one file, in any order */
	while (grew && (!found || covered < size)) {
		grew = 0;
		for (const char *p = maps; *p;) {
			struct map_line m;
			p = peek_line(p, &m);
			if (m.perms[3] != 's' || m.ino != ino || m.major != major ||
			    m.minor != minor)
				continue;
			found = 1;
			uint64_t to = m.offset + (m.end - m.start);
			if (m.offset <= covered && to > covered) {
				covered = to;
				grew = 1;
			}
		}
	}
	return found && covered >= size;
}

/* A shared mapping whose content is saved (shm segments, memfd, deleted
 * files, /dev/zero, POSIX shared memory), not the file's (see classify). */
static int shared_saved_as_memory(const char *path)
{
	return str_ends(path, " (deleted)") || str_starts(path, "/SYSV") ||
	       str_starts(path, "/memfd:") || str_starts(path, "/dev/zero") ||
	       str_starts(path, "/dev/shm/");
}

void memory_shared_file_maps(const char *maps, shared_file_fn *fn, void *ctx)
{
	char path[4096];
	for (const char *p = maps; *p;) {
		struct map_line m;
		const char *at = parse_fields(p, &m);
		while (*at == ' ')
			at++;
		const char *nl = at;
		while (*nl && *nl != '\n')
			nl++;
		p = *nl ? nl + 1 : nl;
		uint64_t len = (uint64_t)(nl - at);
		if (m.perms[3] != 's' || m.perms[1] != 'w' || !m.ino || *at != '/' ||
		    len >= sizeof path)
			continue;
		mem_copy(path, at, len);
		path[len] = 0;
		if (shared_saved_as_memory(path))
			continue;
		/* glibc's makedev */
		uint64_t dev = ((uint64_t)(m.major & 0xfffff000u) << 32) |
			       ((uint64_t)(m.major & 0xfffu) << 8) |
			       ((uint64_t)(m.minor & 0xffffff00u) << 12) | (m.minor & 0xffu);
		fn(ctx, dev, m.ino, path);
	}
}

/* A checkpoint image mapped by a lazy restart: ".../gen-<N>/<pid>.img".
 * Its generation may be removed by --keep later, so its pages are saved
 * like those of a deleted file. */
static int is_image_file(const char *path)
{
	const char *slash = 0, *prev = 0, *end = path;
	for (const char *p = path; *p; p++, end = p)
		if (*p == '/') {
			prev = slash;
			slash = p;
		}
	if (!prev || !str_starts(prev + 1, "gen-") || end - slash < 6 ||
	    !str_starts(end - 4, ".img") || slash[1] < '0' || slash[1] > '9')
		return 0;
	for (const char *p = slash + 1; p < end - 4; p++)
		if (*p < '0' || *p > '9')
			return 0;
	return 1;
}

/* A library is mapped four or five times in a row: its file is looked at
 * once per capture (memory_capture forgets it first), not once per
 * mapping (a thousand mappings with torch, in the pause when it is staged). */
static struct {
	int valid, result;
	char path[4096];
	struct stat st;
} last_stat;

static int stat_once(const char *path, struct stat *st)
{
	if (!last_stat.valid || !str_eq(path, last_stat.path)) {
		last_stat.valid = str_len(path) < sizeof last_stat.path;
		str_copy(last_stat.path, path, sizeof last_stat.path);
		last_stat.result = raw_syscall2(SYS_stat, path, &last_stat.st) == 0 ? 0 : -1;
	}
	*st = last_stat.st;
	return last_stat.result;
}

/* Installed by the system's package manager, which does not replace them
 * under a running job as a user rebuilds a library: not kept (keep.c),
 * although root owns them when root runs the program. */
static int system_file(const char *path)
{
	static const char *const dirs[] = {"/usr/", "/lib/", "/lib64/", "/bin/", "/sbin/", "/etc/"};
	for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
		if (str_starts(path, dirs[i]))
			return 1;
	return 0;
}

static int classify(const struct map_line *m, struct ckpt_area *a, char *why)
{
	int shared = m->perms[3] == 's';
	const char *path = m->path;
	a->start = m->start;
	a->end = m->end;
	a->prot = (m->perms[0] == 'r' ? PROT_READ : 0) | (m->perms[1] == 'w' ? PROT_WRITE : 0) |
		  (m->perms[2] == 'x' ? PROT_EXEC : 0);
	a->file_offset = m->offset;
	a->flags = 0;
	if (str_eq(path, "[vsyscall]"))
		return 1; /* fixed by the kernel, same everywhere: skip */
	if (str_eq(path, "[vdso]")) {
		a->kind = CKPT_AREA_VDSO;
		return 0;
	}
	if (str_starts(path, "[vvar")) {
		a->kind = CKPT_AREA_VVAR;
		return 0;
	}
	if (str_starts(path, "[anon:ckpt-restorer"))
		return 1; /* what a previous restart left behind */
	int deleted = str_ends(path, " (deleted)");
	if (m->ino == 0 || path[0] != '/') {
		a->kind = shared ? CKPT_AREA_SHARED_ANON : CKPT_AREA_ANON;
		if (shared) {
			a->dev = ((uint64_t)m->major << 8) | m->minor;
			a->ino = m->ino;
		}
		if (str_eq(path, "[heap]"))
			a->flags |= CKPT_AREA_HEAP;
		if (str_eq(path, "[stack]"))
			a->flags |= CKPT_AREA_GROWSDOWN;
		return 0;
	}
	if (shared) {
		/* shm segments, memfd and deleted files have no name to map
		 * again, and POSIX shared memory (/dev/shm: shm_open, named
		 * semaphores) changes after the checkpoint and is lost with the
		 * node: their content is saved. */
		a->kind =
		    shared_saved_as_memory(path) ? CKPT_AREA_SHARED_ANON : CKPT_AREA_FILE_SHARED;
		if (a->kind == CKPT_AREA_SHARED_ANON) {
			/* identity of the shared object: processes mapping the
			 * same one share it again after restart */
			a->dev = ((uint64_t)m->major << 8) | m->minor;
			a->ino = m->ino;
		}
		return 0;
	}
	a->kind = CKPT_AREA_FILE_PRIVATE;
	struct stat st;
	if (deleted || is_image_file(path) || stat_once(path, &st) != 0 || st.st_ino != m->ino) {
		/* the file is gone or replaced: keep every page it gives */
		a->kind = CKPT_AREA_ANON;
		a->flags |= AREA_FILE_GONE;
		(void)why;
		return 0;
	}
	a->flags |= CKPT_AREA_FROM_FILE;
	if (!system_file(path))
		keep_file(path, 0, st.st_dev, st.st_ino, st.st_uid);
	a->dev = st.st_dev;
	a->ino = st.st_ino;
	a->file_size = (uint64_t)st.st_size;
	a->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	return 0;
}

/* glibc makes a named semaphore under a temporary name in /dev/shm
 * (sem.XXXXXX), links it to its real name (sem.NAME) and removes the
 * temporary one: the mapping says "(deleted)" while the semaphore lives on
 * under its name, which processes started later open (multiprocessing's
 * spawn and forkserver children open the program's locks by name, and its
 * finalizers unlink them). The name it has now is recorded, so restart
 * makes it again. Other deleted objects (PyTorch's shared tensors, many)
 * are not looked for. */
static const char *shm_name(const struct map_line *m, const struct ckpt_area *a)
{
	static char named[9 + 256];
	if (a->kind != CKPT_AREA_SHARED_ANON || !str_starts(m->path, "/dev/shm/sem.") ||
	    !str_ends(m->path, " (deleted)"))
		return m->path;
	str_copy(named, "/dev/shm/", sizeof named);
	if (name_in_dir("/dev/shm", m->ino, named + 9, sizeof named - 9) != 0)
		return m->path;
	return named;
}

static int page_is_zero(const uint64_t *p)
{
	for (unsigned i = 0; i < CKPT_PAGE_SIZE / 8; i += 8)
		if (p[i] | p[i + 1] | p[i + 2] | p[i + 3] | p[i + 4] | p[i + 5] | p[i + 6] |
		    p[i + 7])
			return 0;
	return 1;
}

/* Shared memory changes while a copy-on-write writer works: its resident
 * pages are copied (into scratch memory, not part of the image) while the
 * program is stopped, and the writer saves the copy. */
#define MAX_SNAPS 4096
struct shared_snap {
	uint64_t start, end;
	char *copy;	    /* page i of the area at copy + i * 4096 */
	unsigned char *vec; /* mincore at the copy: bit 0 set if the page was resident */
};
static struct shared_snap snaps[MAX_SNAPS];
static int nsnaps;

static const struct shared_snap *snap_of(const struct ckpt_area *a)
{
	for (int i = 0; i < nsnaps; i++)
		if (snaps[i].start == a->start && snaps[i].end == a->end)
			return &snaps[i];
	return 0;
}

/* Where the bytes of the page at addr are read from. */
static const void *source(const struct shared_snap *sn, uint64_t addr)
{
	return sn ? sn->copy + (addr - sn->start) : (const void *)(uintptr_t)addr;
}

/* Whether the page may be saved, from its pagemap entry (or, for shared
 * memory, residency), before its bytes are looked at. */
static int candidate(const struct ckpt_area *a, uint64_t pm, int resident)
{
	switch (a->kind) {
	case CKPT_AREA_ANON:
		return (pm & (PM_PRESENT | PM_SWAPPED)) != 0;
	case CKPT_AREA_FILE_PRIVATE:
		/* a private copy (anonymous page) replaced the file's page */
		return (pm & PM_SWAPPED) || ((pm & PM_PRESENT) && !(pm & PM_FILE));
	case CKPT_AREA_SHARED_ANON:
		return resident;
	default:
		return 0;
	}
}

/* Decide whether a candidate page is saved, its bytes being at data: a
 * zero page of memory that is not a file's is not. */
static int want_page(const struct ckpt_area *a, const void *data)
{
	return a->kind == CKPT_AREA_FILE_PRIVATE || !page_is_zero(data);
}

/* Pages of a file gone from its path that the program has not touched,
 * or that were reclaimed, hold the file's bytes, which restart cannot map
 * again: they are faulted in (readable, without being read) so that
 * pagemap shows them present and they are saved. Pages wholly past the
 * file's end cannot be: the longest prefix that can is found by halving
 * (it runs in the copy-on-write child, or in the stopped program, where
 * it only maps page cache pages). */
static void populate_file_pages(const struct ckpt_area *a)
{
	if (!(a->flags & AREA_FILE_GONE) || !(a->prot & PROT_READ))
		return;
	uint64_t n = (a->end - a->start) / CKPT_PAGE_SIZE;
	long r = raw_syscall3(SYS_madvise, a->start, n * CKPT_PAGE_SIZE, MADV_POPULATE_READ);
	if (r != -EFAULT)
		return; /* done, or a kernel without it (EINVAL): as before */
	uint64_t good = 0, bad = n;
	while (bad - good > 1) {
		uint64_t mid = good + (bad - good) / 2;
		if (raw_syscall3(SYS_madvise, a->start, mid * CKPT_PAGE_SIZE, MADV_POPULATE_READ) ==
		    0)
			good = mid;
		else
			bad = mid;
	}
}

/* In the copy-on-write child, the first access to a page through the
 * program's mapping costs microseconds in some VMs (bench/memcost: 1.2 s
 * per GiB in the reference VM), while pread from /proc/self/mem, which
 * goes through the kernel's own mapping of memory, reads the same pages
 * at 0.2 s per GiB. So the child reads the candidate pages of each window
 * of WINDOW_PAGES into a buffer and looks at the copy: they are its own
 * pages, the snapshot, which nothing changes. A window that cannot be read
 * so is read in place, as the program itself (--no-cow) always does. */
#define WINDOW_PAGES CHUNK_PAGES
/* More chunks than this (256 GiB of saved pages at least): no PAGE_INDEX */
#define INDEX_MAX_ENTRIES (1ull << 26)
enum { PAGE_IN_PLACE, PAGE_IN_BUFFER, PAGE_TRACKED, PAGE_SCRATCH };
struct window {
	int mem_fd; /* /proc/self/mem, or -1: every page is read in place */
	char *buf;  /* WINDOW_PAGES pages */
	unsigned char state[WINDOW_PAGES];
};

/* Page i of the window is read (into it, or in place) to be looked at. */
static int to_read(const struct window *win, const struct ckpt_area *a, const uint64_t *pm,
		   const unsigned char *vec, uint64_t i)
{
	return win->state[i] == PAGE_IN_PLACE && candidate(a, pm[i], vec[i] & 1);
}

/* A window whose pages are all to be stored, the usual case of a full
 * checkpoint, is read straight to where the writer wants the chunk's pages
 * (a compressing job's copy, or the buffer for a raw chunk) instead of
 * into the window and copied from there (the copy was a quarter of the
 * writer's time in the reference VM). Returns 1 when the
 * window is saved so; -1 when its bytes, read but not all wanted (a zero
 * page), were moved to the window as window_fill reads them; 0 when not
 * tried (not every page a candidate, a parent to compare with, or a chunk
 * the writer would not write raw). */
static int window_in_place(struct window *win, struct ckpt_writer *w, uint32_t idx,
			   struct ckpt_area *a, uint64_t base, const uint64_t *pm,
			   const unsigned char *vec, uint64_t n)
{
	if (incr_has_parent())
		return 0;
	for (uint64_t i = 0; i < n; i++)
		if (!to_read(win, a, pm, vec, i))
			return 0;
	char *slot = ckpt_writer_slot(w, (uint32_t)n);
	if (!slot || raw_syscall4(SYS_pread64, win->mem_fd, slot, n * CKPT_PAGE_SIZE, base) !=
			 (long)(n * CKPT_PAGE_SIZE))
		return 0;
	for (uint64_t i = 0; i < n; i++)
		if (!want_page(a, slot + i * CKPT_PAGE_SIZE)) {
			__builtin_memcpy(win->buf, slot, n * CKPT_PAGE_SIZE);
			for (uint64_t k = 0; k < n; k++)
				win->state[k] = PAGE_IN_BUFFER;
			return -1;
		}
	for (uint64_t i = 0; i < n; i++)
		incr_page(base + i * CKPT_PAGE_SIZE,
			  slot + i * CKPT_PAGE_SIZE); /* stored: no parent */
	ckpt_writer_slot_commit(w, idx, base, (uint32_t)n);
	agent.pages_stored += n;
	a->pages_saved += n;
	return 1;
}

/* Fill the window of the n pages at base: pages proven unchanged by write
 * tracking are not read (their bytes are not needed), the other
 * candidates are, in runs. Returns 1 when the window was saved instead
 * (window_in_place). */
static int window_fill(struct window *win, struct ckpt_writer *w, uint32_t idx, struct ckpt_area *a,
		       const struct shared_snap *sn, uint64_t base, const uint64_t *pm,
		       const unsigned char *vec, uint64_t n, int own)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t addr = base + i * CKPT_PAGE_SIZE;
		int tracked = a->kind == CKPT_AREA_ANON && (pm[i] & (PM_PRESENT | PM_SWAPPED)) &&
			      track_unchanged(addr);
		win->state[i] = own && stage_own_scratch_page(addr) ? PAGE_SCRATCH
				: tracked			    ? PAGE_TRACKED
								    : PAGE_IN_PLACE;
	}
	if (win->mem_fd < 0)
		return 0;
	int in_place = sn ? 0 : window_in_place(win, w, idx, a, base, pm, vec, n);
	if (in_place)
		return in_place > 0;
	for (uint64_t i = 0; i < n;) {
		if (!to_read(win, a, pm, vec, i)) {
			i++;
			continue;
		}
		uint64_t j = i + 1;
		while (j < n && to_read(win, a, pm, vec, j))
			j++;
		uint64_t len = (j - i) * CKPT_PAGE_SIZE;
		uint64_t from = (uint64_t)(uintptr_t)source(sn, base + i * CKPT_PAGE_SIZE);
		if (raw_syscall4(SYS_pread64, win->mem_fd, win->buf + i * CKPT_PAGE_SIZE, len,
				 from) == (long)len)
			for (uint64_t k = i; k < j; k++)
				win->state[k] = PAGE_IN_BUFFER;
		i = j;
	}
	return 0;
}

/* A run of consecutive pages of one kind, which becomes one chunk. */
enum { NONE, STORED, REFERRED };
struct run {
	int kind;
	uint64_t start, len;
	const char *data; /* the bytes of a STORED run */
};

static void end_run(struct ckpt_writer *w, uint32_t idx, struct ckpt_area *a, struct run *r)
{
	if (r->len) {
		if (r->kind == STORED) {
			ckpt_writer_chunk(w, idx, r->start, r->data, (uint32_t)r->len);
			agent.pages_stored += r->len;
		} else {
			ckpt_writer_ref(w, idx, r->start, (uint32_t)r->len);
			agent.pages_referred += r->len;
		}
		a->pages_saved += r->len;
	}
	r->kind = NONE;
	r->len = 0;
}

/* The pagemap entries of the n pages at base, as far as deciding which
 * pages to save needs them, and (in *any) whether any page may be saved.
 * For anonymous memory only existence matters (present or swapped), for a
 * private file mapping only the pages that are no longer the file's
 * (present and not a file page, or swapped): PAGEMAP_SCAN returns them as
 * ranges, where reading pagemap itself costs 8 bytes and a page table walk
 * per page (13 ms per GiB in the reference VM, in every checkpoint, full
 * or incremental; torch's libraries are 150,000 pages of file mappings).
 * Elsewhere, or on a kernel without PAGEMAP_SCAN, pagemap is read. */
#define SCAN_REGIONS 4096
static struct pagescan_region scan_out[SCAN_REGIONS];

/* What the scans of groups of private file mappings found (ascending),
 * when all of it fitted: read_pagemap takes a mapping's pages from it
 * instead of scanning the mapping again (630 system calls, 2 ms of a
 * torch program's pause). Nothing changes the program's file pages in
 * between, but the agent's own data segment, which the capture writes. */
#define FILE_REGIONS 16384
static struct {
	struct pagescan_region r[FILE_REGIONS];
	uint32_t n, cursor;
	int complete;
} found;

void memory_own_scratch(void)
{
	stage_own_scratch(scan_out, sizeof scan_out);
	stage_own_scratch(&found, sizeof found);
}

static int pagemap_from_found(const struct ckpt_area *a, uint64_t base, uint64_t n, uint64_t *pm,
			      int *any)
{
	if (!found.complete || stage_in_own_segment(a->start, a->end))
		return -1;
	uint64_t end = base + n * CKPT_PAGE_SIZE;
	mem_zero(pm, n * 8);
	*any = 0;
	while (found.cursor < found.n && found.r[found.cursor].end <= base)
		found.cursor++;
	for (uint32_t i = found.cursor; i < found.n && found.r[i].start < end; i++) {
		uint64_t bit =
		    found.r[i].categories & PAGESCAN_IS_PRESENT ? PM_PRESENT : PM_SWAPPED;
		uint64_t from = found.r[i].start > base ? found.r[i].start : base;
		uint64_t to = found.r[i].end < end ? found.r[i].end : end;
		for (uint64_t p = from; p < to; p += CKPT_PAGE_SIZE)
			pm[(p - base) / CKPT_PAGE_SIZE] = bit;
		*any = 1;
	}
	return 0;
}

static int read_pagemap(int pagemap_fd, const struct ckpt_area *a, uint64_t base, uint64_t n,
			uint64_t *pm, int *any)
{
	static int scan_broken;
	struct pagescan_region *out = scan_out;
	uint64_t end = base + n * CKPT_PAGE_SIZE;
	*any = 1;
	int file = a->kind == CKPT_AREA_FILE_PRIVATE;
	if (file && pagemap_from_found(a, base, n, pm, any) == 0)
		return 0;
	if ((a->kind != CKPT_AREA_ANON && !file) || scan_broken) {
		long got =
		    raw_syscall4(SYS_pread64, pagemap_fd, pm, n * 8, (base / CKPT_PAGE_SIZE) * 8);
		return got == (long)(n * 8) ? 0 : -1;
	}
	*any = 0;
	mem_zero(pm, n * 8);
	for (uint64_t at = base; at < end;) {
		uint64_t walk_end = end;
		long r = pagescan(pagemap_fd, at, end, 0, 0, file ? PAGESCAN_IS_FILE : 0,
				  PAGESCAN_IS_PRESENT | PAGESCAN_IS_SWAPPED, out, SCAN_REGIONS,
				  &walk_end);
		if (r < 0) {
			if (at != base)
				return -1;
			scan_broken = 1; /* an older kernel: read pagemap from now on */
			return read_pagemap(pagemap_fd, a, base, n, pm, any);
		}
		for (long i = 0; i < r; i++) {
			uint64_t bit =
			    out[i].categories & PAGESCAN_IS_PRESENT ? PM_PRESENT : PM_SWAPPED;
			for (uint64_t p = out[i].start; p < out[i].end; p += CKPT_PAGE_SIZE)
				pm[(p - base) / CKPT_PAGE_SIZE] = bit;
		}
		*any |= r > 0;
		if (walk_end <= at)
			return -1;
		at = walk_end;
	}
	return 0;
}

/* Private file mappings come in groups (a library's segments side by
 * side): which of them may hold a page that is no longer the file's, from
 * one PAGEMAP_SCAN a group rather than one a mapping (a system call costs
 * microseconds in some VMs, and torch maps 1,600 such areas, few of them
 * written). maybe[i] is 1 for each area to look at page by page, 0 for a
 * private file mapping none of whose pages is to be saved. */
static void mark_written_file_areas(int pagemap_fd, const struct ckpt_area *areas, uint32_t n,
				    unsigned char *maybe)
{
	struct pagescan_region *out = scan_out;
	found.n = found.cursor = 0;
	found.complete = 1;
	for (uint32_t i = 0; i < n; i++)
		maybe[i] = areas[i].kind != CKPT_AREA_FILE_PRIVATE;
	for (uint32_t i = 0, j; i < n; i = j) {
		for (j = i; j < n && areas[j].kind == CKPT_AREA_FILE_PRIVATE; j++)
			;
		if (j == i) {
			j++;
			continue;
		}
		uint32_t cur = i;
		for (uint64_t at = areas[i].start, end = areas[j - 1].end; at < end;) {
			uint64_t walk_end = end;
			long r = pagescan(pagemap_fd, at, end, 0, 0, PAGESCAN_IS_FILE,
					  PAGESCAN_IS_PRESENT | PAGESCAN_IS_SWAPPED, out,
					  SCAN_REGIONS, &walk_end);
			if (r < 0 || walk_end <= at) {
				for (uint32_t k = i; k < j; k++)
					maybe[k] = 1; /* no PAGEMAP_SCAN: look at each */
				found.complete = 0;
				break;
			}
			if (found.complete && found.n + (uint64_t)r <= FILE_REGIONS) {
				mem_copy(found.r + found.n, out, (uint64_t)r * sizeof *out);
				found.n += (uint32_t)r;
			} else {
				found.complete = 0;
			}
			for (long q = 0; q < r; q++) {
				while (cur < j && areas[cur].end <= out[q].start)
					cur++;
				for (uint32_t k = cur; k < j && areas[k].start < out[q].end; k++)
					maybe[k] = 1;
			}
			at = walk_end;
		}
	}
}

/* Save the wanted pages of one area as chunks of consecutive pages:
 * stored, or referred to (unchanged since the parent generation). */
static int save_area(struct ckpt_writer *w, uint32_t idx, struct ckpt_area *a, int pagemap_fd,
		     uint64_t *pm, unsigned char *vec, struct window *win, char *err)
{
	uint64_t npages = (a->end - a->start) / CKPT_PAGE_SIZE;
	int unreadable = !(a->prot & PROT_READ);
	int protected = 0;
	populate_file_pages(a);
	/* A page the parent image lacks was zero in the parent's snapshot
	 * and, unchanged since, still is: true of the program's memory, not
	 * of the memory the capture itself changes after the snapshot (the
	 * agent's .bss, the stack it runs on), which is read. */
	uint64_t sp = (uint64_t)(uintptr_t)__builtin_frame_address(0);
	int own = stage_in_own_data(a->start, a->end) || (sp >= a->start && sp < a->end);
	for (uint64_t first = 0; first < npages; first += BATCH_PAGES) {
		uint64_t n = npages - first < BATCH_PAGES ? npages - first : BATCH_PAGES;
		uint64_t base = a->start + first * CKPT_PAGE_SIZE;
		int any;
		if (read_pagemap(pagemap_fd, a, base, n, pm, &any) != 0) {
			str_copy(err, "cannot read /proc/self/pagemap", 64);
			return -1;
		}
		if (!any)
			continue; /* nothing to save here: no page to look at */
		const struct shared_snap *sn = a->kind == CKPT_AREA_SHARED_ANON ? snap_of(a) : 0;
		if (sn)
			mem_copy(vec, sn->vec + first, n);
		else if (a->kind == CKPT_AREA_SHARED_ANON &&
			 raw_syscall3(SYS_mincore, base, n * CKPT_PAGE_SIZE, vec) != 0)
			mem_zero(vec, n);
		if (unreadable && !protected) {
			int any = 0;
			for (uint64_t i = 0; i < n && !any; i++)
				any = (pm[i] & (PM_PRESENT | PM_SWAPPED)) != 0;
			if (!any)
				continue;
			/* pages exist under PROT_NONE: read them anyway */
			raw_syscall3(SYS_mprotect, a->start, a->end - a->start,
				     a->prot | PROT_READ);
			protected = 1;
		}
		struct run run = {NONE, 0, 0, 0};
		uint64_t tracked_end = 0;
		for (uint64_t i = 0; i < n; i++) {
			uint64_t addr = base + i * CKPT_PAGE_SIZE, k = i % WINDOW_PAGES;
			if (k == 0) {
				/* a run's bytes are in its window's buffer */
				end_run(w, idx, a, &run);
				uint64_t left = n - i < WINDOW_PAGES ? n - i : WINDOW_PAGES;
				if (window_fill(win, w, idx, a, sn, addr, pm + i, vec + i, left,
						own)) {
					i += left - 1; /* saved whole */
					continue;
				}
			}
			if (win->state[k] == PAGE_SCRATCH) {
				end_run(w, idx, a, &run);
				continue;
			}
			const char *data = win->state[k] == PAGE_IN_BUFFER
					       ? win->buf + k * CKPT_PAGE_SIZE
					       : (const char *)source(sn, addr);
			int kind = NONE;
			/* pages proven unchanged are referred to without reading
			 * them: as many at once as can (a page at a time, the
			 * decisions cost 2-5 ms of a 256 MiB program's pause) */
			uint64_t same = 0;
			if (win->state[k] == PAGE_TRACKED) {
				/* where this window's run of such pages ends (found
				 * once a run: its pages may fail one by one) */
				if (i >= tracked_end)
					for (tracked_end = i + 1;
					     tracked_end - i + k < WINDOW_PAGES &&
					     tracked_end < n &&
					     win->state[tracked_end - i + k] == PAGE_TRACKED;
					     tracked_end++)
						;
				uint64_t m = tracked_end - i, room = CHUNK_PAGES;
				if (run.kind == REFERRED)
					room -= run.len;
				same = room ? incr_pages_unchanged(addr, m < room ? m : room) : 0;
			}
			if (same) {
				if (run.kind != REFERRED) {
					end_run(w, idx, a, &run);
					run = (struct run){REFERRED, addr, 0, data};
				}
				run.len += same;
				agent.pages_proven += same;
				i += same - 1;
				continue;
			}
			if (win->state[k] == PAGE_TRACKED && incr_page_unchanged(addr)) {
				kind = REFERRED;
				agent.pages_proven++;
			} else if (win->state[k] == PAGE_TRACKED && !own &&
				   incr_parent_lacks(addr)) {
				/* zero when the parent was captured (else it would hold
				 * it) and not written since: still zero, left out unread
				 * (reading it costs microseconds in some VMs) */
			} else if (candidate(a, pm[i], vec[i] & 1) && want_page(a, data))
				kind = incr_page(addr, data) ? REFERRED : STORED;
			if (kind != NONE && kind == run.kind && run.len < CHUNK_PAGES) {
				run.len++;
				continue;
			}
			end_run(w, idx, a, &run);
			if (kind != NONE)
				run = (struct run){kind, addr, 1, data};
		}
		end_run(w, idx, a, &run);
		if (w->error)
			break;
	}
	if (protected)
		raw_syscall3(SYS_mprotect, a->start, a->end - a->start, a->prot);
	return 0;
}

int memory_snapshot_shared(struct scratch *s, char *maps)
{
	nsnaps = 0;
	if (!maps)
		return -1;
	static char why[8];
	for (char *p = maps; *p;) {
		struct map_line m;
		p = parse_line(p, &m);
		struct ckpt_area a;
		mem_zero(&a, sizeof a);
		if (m.perms[3] != 's' || classify(&m, &a, why) != 0 ||
		    a.kind != CKPT_AREA_SHARED_ANON)
			continue;
		uint64_t len = a.end - a.start, npages = len / CKPT_PAGE_SIZE;
		if (nsnaps == MAX_SNAPS || !(a.prot & PROT_READ))
			return -1;
		struct shared_snap *sn = &snaps[nsnaps];
		sn->start = a.start;
		sn->end = a.end;
		sn->vec = scratch_alloc(s, npages);
		sn->copy = scratch_alloc(s, len);
		if (!sn->vec || !sn->copy)
			return -1; /* too much shared memory: written while stopped */
		if (raw_syscall3(SYS_mincore, a.start, len, sn->vec) != 0)
			return -1;
		/* only resident pages: reading a hole would allocate it */
		for (uint64_t i = 0; i < npages; i++)
			if (sn->vec[i] & 1)
				mem_copy(sn->copy + i * CKPT_PAGE_SIZE,
					 (const void *)(uintptr_t)(a.start + i * CKPT_PAGE_SIZE),
					 CKPT_PAGE_SIZE);
		nsnaps++;
	}
	return 0;
}

void memory_forget_snapshots(void)
{
	nsnaps = 0;
}

long vm_pages(void)
{
	char buf[128];
	long n = read_file("/proc/self/statm", buf, sizeof buf);
	if (n <= 0 || buf[0] < '0' || buf[0] > '9')
		return -1;
	long pages = 0;
	for (const char *p = buf; *p >= '0' && *p <= '9'; p++)
		pages = pages * 10 + (*p - '0');
	return pages;
}

/* PAGE_INDEX entries of the image being written */
static long kept_index = -1;
static uint64_t kept_index_len;

void memory_release_index(void)
{
	if (kept_index > 0)
		raw_syscall2(SYS_munmap, kept_index, kept_index_len);
	kept_index = -1;
}

/* Our own memory (scratch, the writer's result page, the stage) is left
 * out of the image. The kernel may have merged it with a neighbouring
 * mapping of the program's into one line of maps, so it is cut out of the
 * lines, not matched with them: the first of our ranges that overlaps
 * [at, end), or 0. */
static int next_own_range(uint64_t at, uint64_t end, const struct scratch *s, uint64_t *lo,
			  uint64_t *hi)
{
	uint64_t r[3][2] = {{(uint64_t)(uintptr_t)s->base, (uint64_t)(uintptr_t)s->base + s->size},
			    {agent.skip_lo, agent.skip_hi},
			    {0, 0}};
	stage_range(&r[2][0], &r[2][1]);
	r[1][1] = (r[1][1] + CKPT_PAGE_SIZE - 1) & ~(uint64_t)(CKPT_PAGE_SIZE - 1);
	int found = 0;
	for (int i = 0; i < 3; i++)
		if (r[i][0] < r[i][1] && r[i][0] < end && r[i][1] > at &&
		    (!found || r[i][0] < *lo)) {
			*lo = r[i][0];
			*hi = r[i][1];
			found = 1;
		}
	return found;
}

/* One line (or part of one) of maps as an area: a->end stays 0 when it is
 * not saved; -1 when it cannot be checkpointed (err says why). */
static int add_area(const struct map_line *m, struct ckpt_area *a, struct strtab *st, char *err)
{
	mem_zero(a, sizeof *a);
	if (str_starts(m->path, "/dev/nvidia")) {
		/* see fds_capture: GPU state not in host memory */
		err[0] = 0;
		str_append(err, 512, "GPU: ");
		str_append(err, 200, m->path);
		str_append(err, 512,
			   " is still mapped when stopped: the GPU state is not "
			   "in host memory, so it would be missing from the image");
		return -1;
	}
	if (classify(m, a, err) != 0) {
		a->end = 0;
		return 0;
	}
	a->name_str = strtab_add(st, shm_name(m, a));
	return 0;
}

int memory_capture(struct ckpt_writer *w, struct scratch *s, struct strtab *st, char *maps,
		   int cow_child, char *err)
{
	long len = maps ? (long)str_len(maps) : memory_read_maps(s, &maps);
	if (len <= 0) {
		str_copy(err, "cannot read /proc/self/maps", 64);
		return -1;
	}
	last_stat.valid = 0;
	uint32_t lines = 0;
	for (long i = 0; i < len; i++)
		lines += maps[i] == '\n';
	/* our three ranges may each split a line in two */
	struct ckpt_area *areas = scratch_alloc(s, (lines + 4) * sizeof *areas);
	uint64_t *pm = scratch_alloc(s, BATCH_PAGES * 8);
	unsigned char *vec = scratch_alloc(s, BATCH_PAGES);
	if (!areas || !pm || !vec) {
		str_copy(err, "out of scratch memory for the memory map", 64);
		return -1;
	}
	uint32_t n = 0;
	for (char *p = maps; *p;) {
		struct map_line m;
		p = parse_line(p, &m);
		/* the parts of the line that are not ours */
		for (uint64_t at = m.start, lo = 0, hi = 0; at < m.end;) {
			uint64_t to = m.end;
			if (next_own_range(at, m.end, s, &lo, &hi)) {
				if (lo <= at) {
					at = hi;
					continue;
				}
				to = lo;
			}
			struct map_line piece = m;
			piece.start = at;
			piece.end = to;
			piece.offset += at - m.start;
			if (add_area(&piece, &areas[n], st, err) < 0)
				return -1;
			if (areas[n].end)
				n++;
			at = to;
		}
	}
	long pagemap_fd =
	    raw_syscall4(SYS_openat, AT_FDCWD, "/proc/self/pagemap", O_RDONLY | O_CLOEXEC, 0);
	if (pagemap_fd < 0) {
		str_copy(err, "cannot open /proc/self/pagemap", 64);
		return -1;
	}
	struct window win = {.mem_fd = -1};
	if (cow_child && (win.buf = scratch_alloc_populated(s, WINDOW_PAGES * CKPT_PAGE_SIZE)) != 0)
		win.mem_fd = (int)raw_syscall4(SYS_openat, AT_FDCWD, "/proc/self/mem",
					       O_RDONLY | O_CLOEXEC, 0);
	if (win.mem_fd < -1)
		win.mem_fd = -1; /* no /proc/self/mem: read in place */
	uint64_t max_pages = 0;
	for (uint32_t i = 0; i < n; i++)
		if (areas[i].kind == CKPT_AREA_ANON || areas[i].kind == CKPT_AREA_FILE_PRIVATE ||
		    areas[i].kind == CKPT_AREA_SHARED_ANON)
			max_pages += (areas[i].end - areas[i].start) / CKPT_PAGE_SIZE;
	incr_begin(max_pages);
	/* PAGE_INDEX: a chunk holds at least one page of these areas; only
	 * the entries written are ever touched */
	uint64_t index_cap = max_pages < INDEX_MAX_ENTRIES ? max_pages : INDEX_MAX_ENTRIES;
	uint64_t index_len = index_cap * sizeof(struct ckpt_chunk_entry);
	long index = -1;
	if (index_len)
		index = raw_syscall6(SYS_mmap, 0, index_len, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (index > 0) /* else no index: readers find the chunks by their headers */
		ckpt_writer_set_index(w, (struct ckpt_chunk_entry *)index, (uint32_t)index_cap);
	unsigned char *maybe = scratch_alloc(s, n ? n : 1);
	found.complete = 0;
	if (maybe)
		mark_written_file_areas((int)pagemap_fd, areas, n, maybe);
	ckpt_writer_begin_section(w, CKPT_SEC_PAGES);
	for (uint32_t i = 0; i < n && !w->error; i++)
		if ((!maybe || maybe[i]) &&
		    save_area(w, i, &areas[i], (int)pagemap_fd, pm, vec, &win, err) != 0)
			break;
	ckpt_writer_end_section(w, 0);
	ckpt_writer_set_index(w, NULL, 0);
	kept_index = index;
	kept_index_len = index_len;
	if (!w->rec) /* else the recorded operations still refer to it */
		memory_release_index();
	incr_write_hashes(w);
	incr_end();
	track_done();
	raw_syscall1(SYS_close, pagemap_fd);
	if (win.mem_fd >= 0)
		raw_syscall1(SYS_close, win.mem_fd);
	if (err[0])
		return -1;
	for (uint32_t i = 0; i < n; i++)
		areas[i].flags &= ~AREA_FILE_GONE;
	ckpt_writer_begin_section(w, CKPT_SEC_AREAS);
	ckpt_writer_write(w, areas, n * sizeof *areas);
	ckpt_writer_end_section(w, n);
	return 0;
}
