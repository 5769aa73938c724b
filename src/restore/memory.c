/* Laying out the blob region and staging the saved memory.
 *
 * The blob region is one reservation in a hole of both address spaces (the
 * restorer's now and the program's to be): the final stage's code, the
 * plan, temporary thread stacks, a parking slot for the vDSO, and one
 * staging mapping per area with saved pages. Page data are read (and their
 * checksums verified) straight into staging, so the final stage only has to
 * move them with mremap: no second copy. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "restore/restore.h"

#define PAGE 4096ull
#define HUGE (2ull << 20)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#define THREAD_STACK (64ull << 10)
#define MAIN_STACK (256ull << 10)
#define LOW_LIMIT (1ull << 32)
#define HIGH_LIMIT 0x7ff000000000ull
#define TASK_TOP 0x7ffffffff000ull

extern const char final_blob_start[], final_blob_end[];

struct interval {
	uint64_t start, end;
};

static int by_start(const void *a, const void *b)
{
	const struct interval *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

static uint64_t round_up(uint64_t v)
{
	return (v + PAGE - 1) & ~(PAGE - 1);
}

/* Highest gap of size bytes between LOW_LIMIT and HIGH_LIMIT that neither
 * address space uses; 0 if none. */
static uint64_t find_hole(struct interval *used, size_t n, uint64_t size)
{
	qsort(used, n, sizeof *used, by_start);
	uint64_t best = 0, cursor = LOW_LIMIT;
	for (size_t i = 0; i <= n; i++) {
		uint64_t next = i < n ? used[i].start : HIGH_LIMIT;
		if (next > HIGH_LIMIT)
			next = HIGH_LIMIT;
		/* keep a guard page on each side */
		if (next > cursor + PAGE && next - cursor - PAGE >= size + PAGE)
			best = next - PAGE - size;
		if (i < n && used[i].end > cursor)
			cursor = used[i].end;
	}
	return best;
}

/* Bytes of the bitmap of staged pages of an area whose pages are copied
 * (not moved) into place: a saved page may well be all zero. */
static uint64_t bitmap_bytes(const struct ckpt_area *a)
{
	return ((a->end - a->start) / PAGE + 63) / 64 * 8;
}

static int staged(const struct ckpt_area *a)
{
	return a->pages_saved > 0 &&
	       (a->kind == CKPT_AREA_ANON || a->kind == CKPT_AREA_FILE_PRIVATE ||
		a->kind == CKPT_AREA_SHARED_ANON);
}

static int same_mapped_file(int fd, const struct ckpt_area *a)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return 0;
	if (!a->ino)
		return 1;
	if (st.st_ino != a->ino || st.st_dev != a->dev)
		return 0;
	return a->kind != CKPT_AREA_FILE_PRIVATE ||
	       ((uint64_t)st.st_size == a->file_size &&
		(int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec == a->mtime_ns);
}

/* Open the file behind a mapping and check it is still the same file;
 * one deleted or replaced since (a package reinstalled, a library
 * rebuilt) is mapped from the link the checkpoint kept of it, if any. */
static int open_mapped_file(struct fd_context *c, const struct ckpt_image *img,
			    const struct ckpt_area *a)
{
	const char *path = ckpt_image_string(img, a->name_str);
	int writable = a->kind == CKPT_AREA_FILE_SHARED && (a->prot & PROT_WRITE);
	int fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (fd >= 0 && same_mapped_file(fd, a))
		return fd_private(c, fd);
	int err = fd < 0 ? errno : 0;
	if (fd >= 0)
		close(fd);
	if (a->ino && a->kind == CKPT_AREA_FILE_PRIVATE) {
		char kept[4400];
		int k = kept_open(a->dev, a->ino, O_RDONLY | O_CLOEXEC, kept, sizeof kept);
		if (k >= 0 && same_mapped_file(k, a)) {
			warn("%s, mapped at 0x%llx, %s since the checkpoint: mapped from the file "
			     "kept with the checkpoint",
			     path, (unsigned long long)a->start,
			     err ? "was deleted" : "was replaced");
			return fd_private(c, k);
		}
		if (k >= 0)
			close(k);
	}
	if (err)
		return fail("cannot open %s, mapped at 0x%llx: %s", path,
			    (unsigned long long)a->start, strerror(err));
	return fail("%s, mapped at 0x%llx, changed since the checkpoint (a library or "
		    "file was replaced); restart needs the same file",
		    path, (unsigned long long)a->start);
}

/* Shared memory (MAP_SHARED anonymous, memfd, SysV, deleted /dev/shm
 * files): one memfd per object of the generation, made before the fork,
 * so that every process mapping it maps the same memory again. Processes
 * fill it from their images before the barrier; the final stage only maps
 * it. */
struct shm_rec {
	uint64_t dev, ino;
	const char *name;
	uint64_t size;
	int fd;
};
static struct shm_rec *shms;
static uint32_t nshms;

static struct shm_rec *shm_of(const struct ckpt_image *img, const struct ckpt_area *a)
{
	const char *name = ckpt_image_string(img, a->name_str);
	for (uint32_t k = 0; k < nshms; k++)
		if (shms[k].dev == a->dev && shms[k].ino == a->ino && !strcmp(shms[k].name, name))
			return &shms[k];
	return NULL;
}

int shm_prepare(void)
{
	uint32_t cap = 0;
	for (int i = 0; i < tree.n; i++)
		for (uint32_t k = 0; k < tree.procs[i].img->nareas; k++)
			cap += tree.procs[i].img->areas[k].kind == CKPT_AREA_SHARED_ANON;
	shms = calloc(cap + 1, sizeof *shms);
	if (!shms)
		return fail("out of memory");
	for (int i = 0; i < tree.n; i++) {
		const struct ckpt_image *img = tree.procs[i].img;
		for (uint32_t k = 0; k < img->nareas; k++) {
			const struct ckpt_area *a = &img->areas[k];
			if (a->kind != CKPT_AREA_SHARED_ANON)
				continue;
			struct shm_rec *r = shm_of(img, a);
			if (!r) {
				r = &shms[nshms++];
				r->dev = a->dev;
				r->ino = a->ino;
				r->name = ckpt_image_string(img, a->name_str);
				/* a POSIX shared memory object (/dev/shm) gets its
				 * content back under its name, for processes that
				 * open it again; the others are anonymous */
				int named = !strncmp(r->name, "/dev/shm/", 9) &&
					    !strstr(r->name, " (deleted)");
				int fd = named ? open(r->name, O_RDWR | O_CREAT | O_CLOEXEC, 0600)
					       : memfd_create("ckpt-shared", MFD_CLOEXEC);
				if (fd < 0)
					return fail("cannot create shared memory %s: %s",
						    named ? r->name : "", strerror(errno));
				struct stat st;
				if (named && fstat(fd, &st) == 0 && (uint64_t)st.st_size > r->size)
					r->size = (uint64_t)st.st_size;
				r->fd = fcntl(fd, F_DUPFD_CLOEXEC, tree.min_private);
				close(fd);
			}
			uint64_t end = a->file_offset + (a->end - a->start);
			if (end > r->size)
				r->size = end;
		}
	}
	for (uint32_t k = 0; k < nshms; k++)
		if (ftruncate(shms[k].fd, (off_t)shms[k].size) != 0)
			return fail("cannot size shared memory of %llu bytes: %s",
				    (unsigned long long)shms[k].size, strerror(errno));
	return 0;
}

/* A descriptor's device number as stat gives it, in the form area
 * records hold (from maps: major << 8 | minor). */
static uint64_t area_dev(uint64_t st_dev)
{
	return ((uint64_t)major(st_dev) << 8) | minor(st_dev);
}

static int shm_opened_by(const struct ckpt_image *img, const struct shm_rec *r)
{
	for (uint32_t i = 0; i < img->nfds; i++)
		if (img->fds[i].kind == CKPT_FD_DELETED && img->fds[i].ino == r->ino &&
		    area_dev(img->fds[i].dev) == r->dev)
			return 1;
	return 0;
}

int shm_fd_of_file(uint64_t st_dev, uint64_t ino)
{
	for (uint32_t k = 0; k < nshms; k++)
		if (shms[k].ino == ino && shms[k].dev == area_dev(st_dev))
			return shms[k].fd;
	return -1;
}

/* Each process keeps only the memfds it maps (the final stage closes
 * them) and, until its descriptors are back (img), those of files it has
 * a descriptor of. */
void shm_close_unused(const struct plan *p, const struct ckpt_image *img)
{
	for (uint32_t k = 0; k < nshms; k++) {
		int used = shms[k].fd < 0;
		for (uint32_t i = 0; i < p->nareas && !used; i++)
			used = p->areas[i].fd == shms[k].fd;
		if (!used && !(img && shm_opened_by(img, &shms[k]))) {
			close(shms[k].fd);
			shms[k].fd = -1;
		}
	}
}

struct stage_ctx {
	const struct ckpt_image *img;
	struct plan_area *areas; /* indexed like img->areas */
	struct plan *plan;
	struct fd_context *fdc;
	int image_fd; /* img mapped by lazy pieces, -1 until needed (lazy_fd) */
	/* The pages img stores itself, ascending, when they are restored
	 * after the parents' (own_ranges): a parent's chunk that holds them
	 * besides the pages wanted from it is read straight into place. */
	struct interval *own;
	uint32_t nown;
};

/* ---- lazy restart ----
 * An uncompressed chunk's pages lie 4096-aligned in the image file: for a
 * private anonymous area (moved into place whole) they are not read but
 * mapped from the file, MAP_PRIVATE, over the area once it is in place.
 * The program runs at once and the kernel reads each page when it is
 * first touched. The pieces follow the areas in the plan. */
int restore_lazy;

static struct plan_area *pieces;
static uint32_t npieces, cappieces;

/* The image's descriptor for mapping, opened on first use (the reader's
 * own is closed before the hand-over); the final stage closes it. */
static int lazy_fd(struct stage_ctx *s, const char *path, int *fd)
{
	if (*fd >= 0)
		return *fd;
	if (s->plan->nclose == PLAN_MAX_CLOSE)
		return -1;
	int f = open(path, O_RDONLY | O_CLOEXEC);
	if (f < 0 || (f = fd_private(s->fdc, f)) < 0)
		return -1;
	s->plan->close_fds[s->plan->nclose++] = f;
	return *fd = f;
}

/* Each piece is a mapping of its own and splits the area it lies in: a
 * process may hold only vm.max_map_count mappings (65530 by default), and
 * an incremental generation of a large program changed in scattered pages
 * cuts its parents' chunks into more pieces than that (1% of 16 GiB). So
 * pieces take at most half of the limit, two mappings each, leaving the
 * program room for its own; the chunks beyond are read instead. */
static uint32_t piece_budget;

static void set_piece_budget(uint32_t nareas)
{
	long max = 65530;
	FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
	if (f) {
		if (fscanf(f, "%ld", &max) != 1)
			max = 65530;
		fclose(f);
	}
	long budget = (max / 2 - (long)nareas) / 2;
	piece_budget = budget > 0 ? (uint32_t)budget : 0;
}

static int add_piece(uint64_t start, uint64_t end, int fd, uint64_t offset, uint32_t prot)
{
	if (npieces >= piece_budget)
		return -1; /* read instead */
	if (npieces == cappieces) {
		uint32_t cap = cappieces ? 2 * cappieces : 1024;
		struct plan_area *np = realloc(pieces, cap * sizeof *np);
		if (!np)
			return -1;
		pieces = np;
		cappieces = cap;
	}
	pieces[npieces++] = (struct plan_area){.start = start,
					       .end = end,
					       .file_offset = offset,
					       .op = PLAN_FILE,
					       .prot = prot,
					       .fd = fd};
	return 0;
}

static int own_chunk_map(void *arg, const struct ckpt_page_chunk *c, uint64_t offset)
{
	struct stage_ctx *s = arg;
	const struct plan_area *pa = &s->areas[c->area];
	if (pa->op != PLAN_MOVE || lazy_fd(s, s->img->path, &s->image_fd) < 0)
		return 0; /* read as usual */
	return add_piece(c->addr, c->addr + (uint64_t)c->npages * PAGE, s->image_fd, offset,
			 pa->prot) == 0;
}

/* Lazy restart: staging is backed by huge pages only where chunks are read
 * densely. Most of a lazily restored area is mapped from the image over
 * its staging later; a huge page faulted in there for a few scattered
 * pages (an incremental generation's changes) is zeroed whole, then split
 * and freed when the pieces are mapped over it, which cost more than the
 * rest of a lazy restart. Density is the source chunk's: a parent's chunk
 * that the generation overrides in a few pages is still read densely.
 * plan_areas marks whole areas again afterwards, as a restart that is not
 * lazy leaves them. */
#define DENSE_CHUNK_PAGES 128u

/* Whether staging is backed by transparent huge pages. Only where the
 * system gives them to every large mapping (THP "always"): there the
 * program had them, and keeps them after the restart. Elsewhere the
 * program had small pages (it may have asked for huge ones with madvise,
 * which the image does not record), and small pages populated chunk by
 * chunk cost less: in a VM that hands freed 2 MiB blocks back to its host
 * (free page reporting), a huge page is nearly always memory the host
 * must back anew, 1.5-2.6 s/GiB to fault in against 0.3 s/GiB for small
 * pages populated at once (the torch restart: 0.8-0.9 s, 0.5 s so). */
static int huge_staging(void)
{
	static int known = -1;
	if (known < 0) {
		char mode[128] = "";
		int fd = open("/sys/kernel/mm/transparent_hugepage/enabled", O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			ssize_t n = read(fd, mode, sizeof mode - 1);
			mode[n > 0 ? n : 0] = 0;
			close(fd);
		}
		known = strstr(mode, "[always]") != NULL;
	}
	return known;
}

static void huge_if_dense(struct stage_ctx *s, uint32_t area, uint64_t addr, uint64_t end,
			  uint32_t source_npages)
{
	const struct ckpt_area *a = &s->img->areas[area];
	const struct plan_area *pa = &s->areas[area];
	if (!restore_lazy || !huge_staging() || !pa->staging || pa->op != PLAN_MOVE ||
	    source_npages < DENSE_CHUNK_PAGES || a->end - a->start < HUGE)
		return;
	uint64_t from = (pa->staging + (addr - a->start)) & ~(HUGE - 1);
	uint64_t to = (pa->staging + (end - a->start) + HUGE - 1) & ~(HUGE - 1);
	uint64_t lo = pa->staging, hi = pa->staging + (a->end - a->start);
	from = from < lo ? lo : from;
	to = to > hi ? hi : to;
	madvise((void *)(uintptr_t)from, to - from, MADV_HUGEPAGE);
}

static void *chunk_dest(void *arg, const struct ckpt_page_chunk *chunk)
{
	struct stage_ctx *s = arg;
	const struct ckpt_area *a = &s->img->areas[chunk->area];
	struct plan_area *pa = &s->areas[chunk->area];
	if (!pa->staging)
		return NULL; /* not staged (reader verified the chunk is inside the area) */
	huge_if_dense(s, chunk->area, chunk->addr, chunk->addr + (uint64_t)chunk->npages * PAGE,
		      chunk->npages);
	if (pa->bitmap) {
		uint8_t *bits = (uint8_t *)(uintptr_t)pa->bitmap;
		uint64_t first = (chunk->addr - a->start) / PAGE;
		/* chunks are read by several threads; two may share a byte */
		for (uint64_t i = first; i < first + chunk->npages; i++)
			__atomic_fetch_or(&bits[i / 8], (uint8_t)(1u << (i % 8)), __ATOMIC_RELAXED);
	}
	void *dst = (void *)(uintptr_t)(pa->staging + (chunk->addr - a->start));
	/* small pages: faulted in by one call, not one fault each (an older
	 * kernel without MADV_POPULATE_WRITE faults them as they are written) */
	if (!huge_staging())
		madvise(dst, (uint64_t)chunk->npages * PAGE, MADV_POPULATE_WRITE);
	return dst;
}

/* ---- incremental images: pages taken from parent generations ----
 * The image's reference chunks name pages whose bytes are those the parent
 * generation's image of the same name restores at the same address. The
 * parent is read for the chunks that hold any of them (through a bounce
 * buffer: a chunk of the parent may hold pages this image stores itself),
 * and what the parent refers to in turn is looked for in its parent, down
 * to a full image. Every page referred to must be found. */
struct ref_ctx {
	struct stage_ctx *stage;
	const char *path;	      /* the parent image being read */
	int fd;			      /* its descriptor for lazy mapping, -1 until needed */
	struct ckpt_page_chunk *want; /* pages still to find, ascending, area = this image's */
	uint32_t nwant;
	_Atomic uint64_t found;
};

/* First wanted range that ends after addr. */
static uint32_t want_from(const struct ref_ctx *r, uint64_t addr)
{
	uint32_t lo = 0, hi = r->nwant;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (r->want[mid].addr + (uint64_t)r->want[mid].npages * PAGE <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* [from, to) lies in pages the image stores itself. */
static int own_covers(const struct stage_ctx *s, uint64_t from, uint64_t to)
{
	uint32_t lo = 0, hi = s->nown;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (s->own[mid].end <= from)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (uint32_t i = lo; i < s->nown && s->own[i].start <= from; i++) {
		if (s->own[i].end >= to)
			return 1;
		from = s->own[i].end;
	}
	return 0;
}

/* Pages of chunk c (of a parent) wanted from it, starting at want[i],
 * when the chunk can go straight into place: one area of the image holds
 * all of it, and its other pages are the image's own, written over it
 * afterwards. Else 0. */
static uint64_t wanted_in_place(const struct ref_ctx *r, const struct ckpt_page_chunk *c,
				uint32_t i)
{
	uint64_t cend = c->addr + (uint64_t)c->npages * PAGE, at = c->addr, wanted = 0;
	uint32_t area = r->want[i].area;
	const struct ckpt_area *a = &r->stage->img->areas[area];
	if (a->start > c->addr || a->end < cend)
		return 0;
	for (; i < r->nwant && r->want[i].addr < cend; i++) {
		const struct ckpt_page_chunk *w = &r->want[i];
		uint64_t from = w->addr > at ? w->addr : at,
			 wend = w->addr + (uint64_t)w->npages * PAGE;
		uint64_t to = wend < cend ? wend : cend;
		if (w->area != area || (from > at && !own_covers(r->stage, at, from)))
			return 0;
		wanted += (to - from) / PAGE;
		at = to;
	}
	return at == cend || own_covers(r->stage, at, cend) ? wanted : 0;
}

static void *ref_wanted(void *arg, const struct ckpt_page_chunk *c)
{
	struct ref_ctx *r = arg;
	uint64_t cend = c->addr + (uint64_t)c->npages * PAGE;
	uint32_t i = want_from(r, c->addr);
	if (i == r->nwant || r->want[i].addr >= cend)
		return NULL;
	uint64_t wanted = wanted_in_place(r, c, i);
	if (wanted) {
		/* wanted whole (the usual case), or but for pages restored over
		 * it later: straight into staging */
		struct ckpt_page_chunk whole = {
		    .area = r->want[i].area, .addr = c->addr, .npages = c->npages};
		char *dst = chunk_dest(r->stage, &whole);
		if (dst) {
			atomic_fetch_add(&r->found, wanted);
			return dst;
		}
	}
	return CKPT_CHUNK_BOUNCE;
}

static void ref_got(void *arg, const struct ckpt_page_chunk *c, const char *pages)
{
	struct ref_ctx *r = arg;
	uint64_t cend = c->addr + (uint64_t)c->npages * PAGE;
	for (uint32_t i = want_from(r, c->addr); i < r->nwant && r->want[i].addr < cend; i++) {
		const struct ckpt_page_chunk *w = &r->want[i];
		uint64_t from = w->addr > c->addr ? w->addr : c->addr;
		uint64_t to = w->addr + (uint64_t)w->npages * PAGE;
		if (to > cend)
			to = cend;
		struct ckpt_page_chunk part = {
		    .area = w->area, .addr = from, .npages = (uint32_t)((to - from) / PAGE)};
		huge_if_dense(r->stage, w->area, from, to, c->npages);
		char *dst = chunk_dest(r->stage, &part);
		if (dst)
			memcpy(dst, pages + (from - c->addr), to - from);
		atomic_fetch_add(&r->found, part.npages);
	}
}

/* Lazy restart: a parent's uncompressed chunk is mapped for every
 * wanted part of it, when all of them lie in areas moved into place. */
static int ref_map(void *arg, const struct ckpt_page_chunk *c, uint64_t offset)
{
	struct ref_ctx *r = arg;
	uint64_t cend = c->addr + (uint64_t)c->npages * PAGE;
	uint32_t first = want_from(r, c->addr);
	if (first == r->nwant || r->want[first].addr >= cend ||
	    lazy_fd(r->stage, r->path, &r->fd) < 0)
		return 0;
	uint32_t added = npieces;
	uint64_t pages = 0;
	for (uint32_t i = first; i < r->nwant && r->want[i].addr < cend; i++) {
		const struct ckpt_page_chunk *w = &r->want[i];
		const struct plan_area *pa = &r->stage->areas[w->area];
		uint64_t from = w->addr > c->addr ? w->addr : c->addr;
		uint64_t to = w->addr + (uint64_t)w->npages * PAGE;
		if (to > cend)
			to = cend;
		if (pa->op != PLAN_MOVE ||
		    add_piece(from, to, r->fd, offset + (from - c->addr), pa->prot) != 0) {
			npieces = added; /* read it instead */
			return 0;
		}
		pages += (to - from) / PAGE;
	}
	atomic_fetch_add(&r->found, pages);
	return 1;
}

static int by_addr(const void *a, const void *b)
{
	const struct ckpt_page_chunk *x = a, *y = b;
	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

/* want ∩ refs (both ascending, not overlapping within themselves), with
 * want's area indices. Returns the count, -1 when out of memory. */
static long intersect(const struct ckpt_page_chunk *want, uint32_t nwant,
		      const struct ckpt_page_chunk *refs, uint32_t nrefs,
		      struct ckpt_page_chunk **out)
{
	struct ckpt_page_chunk *res = malloc((size_t)(nwant + nrefs + 1) * sizeof *res);
	if (!res)
		return -1;
	uint32_t i = 0, k = 0, n = 0;
	while (i < nwant && k < nrefs) {
		uint64_t wend = want[i].addr + (uint64_t)want[i].npages * PAGE;
		uint64_t rend = refs[k].addr + (uint64_t)refs[k].npages * PAGE;
		uint64_t from = want[i].addr > refs[k].addr ? want[i].addr : refs[k].addr;
		uint64_t to = wend < rend ? wend : rend;
		if (from < to)
			res[n++] =
			    (struct ckpt_page_chunk){.area = want[i].area,
						     .addr = from,
						     .npages = (uint32_t)((to - from) / PAGE)};
		if (wend <= rend)
			i++;
		else
			k++;
	}
	*out = res;
	return n;
}

static uint64_t count_pages(const struct ckpt_page_chunk *c, uint32_t n)
{
	uint64_t t = 0;
	for (uint32_t i = 0; i < n; i++)
		t += c[i].npages;
	return t;
}

/* images/gen-N/NAME -> images/gen-<parent>/NAME */
static int parent_path(const char *path, uint64_t parent, char *out, size_t cap)
{
	const char *name = strrchr(path, '/');
	if (!name)
		return -1;
	const char *gdir = name;
	while (gdir > path && gdir[-1] != '/')
		gdir--;
	int n = snprintf(out, cap, "%.*sgen-%06llu%s", (int)(gdir - path), path,
			 (unsigned long long)parent, name);
	return n > 0 && (size_t)n < cap ? 0 : -1;
}

static int resolve_refs(struct ckpt_image *img, struct stage_ctx *sc, int threads)
{
	if (!img->nrefs)
		return 0;
	struct ref_ctx r = {.stage = sc};
	r.want = malloc(img->nrefs * sizeof *r.want);
	if (!r.want)
		return fail("out of memory");
	memcpy(r.want, img->refs, img->nrefs * sizeof *r.want);
	r.nwant = img->nrefs;
	qsort(r.want, r.nwant, sizeof *r.want, by_addr);
	char path[4400], child_path[4400], err[512];
	snprintf(path, sizeof path, "%s", img->path);
	uint64_t parent = img->hdr.parent_generation, child = img->hdr.generation;
	while (r.nwant) {
		snprintf(child_path, sizeof child_path, "%s", path);
		if (!parent || parent >= child ||
		    parent_path(child_path, parent, path, sizeof path) < 0) {
			free(r.want);
			return fail("%s refers to pages of a parent generation it does not name",
				    img->path);
		}
		struct ckpt_image *p = ckpt_image_open(path, err, sizeof err);
		if (!p) {
			free(r.want);
			return fail("generation %llu refers to pages in %s, which cannot be "
				    "used: %s",
				    (unsigned long long)img->hdr.generation, path, err);
		}
		p->drop_after_read = 1;
		uint64_t wanted = count_pages(r.want, r.nwant);
		atomic_store(&r.found, 0);
		r.path = path;
		r.fd = -1;
		struct ckpt_page_chunk *next = NULL;
		long nnext = -1;
		if (ckpt_image_read_pages_mapped(p, restore_lazy ? ref_map : NULL, ref_wanted,
						 ref_got, &r, threads, err, sizeof err) == 0) {
			qsort(p->refs, p->nrefs, sizeof *p->refs, by_addr);
			nnext = intersect(r.want, r.nwant, p->refs, p->nrefs, &next);
		}
		uint64_t further = nnext > 0 ? count_pages(next, (uint32_t)nnext) : 0;
		int lacking = nnext >= 0 && atomic_load(&r.found) + further != wanted;
		child = p->hdr.generation;
		parent = p->hdr.parent_generation;
		ckpt_image_close(p);
		free(r.want);
		if (nnext < 0 || lacking) {
			free(next);
			if (nnext < 0)
				return fail("%s: %s", path, err);
			return fail("%s lacks pages that generation %llu refers to", path,
				    (unsigned long long)img->hdr.generation);
		}
		r.want = next;
		r.nwant = (uint32_t)nnext;
	}
	free(r.want);
	return 0;
}

/* sc->own from the index: the image's own chunks, merged where they meet. */
static int own_ranges(struct stage_ctx *sc)
{
	const struct ckpt_image *img = sc->img;
	sc->own = malloc((img->nindex + 1) * sizeof *sc->own);
	if (!sc->own)
		return fail("out of memory");
	uint32_t n = 0;
	for (uint32_t i = 0; i < img->nindex; i++) {
		const struct ckpt_page_chunk *c = &img->index[i].chunk;
		if (c->magic != CKPT_RCHUNK_MAGIC)
			sc->own[n++] =
			    (struct interval){c->addr, c->addr + (uint64_t)c->npages * PAGE};
	}
	qsort(sc->own, n, sizeof *sc->own, by_start);
	sc->nown = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (sc->nown && sc->own[sc->nown - 1].end == sc->own[i].start)
			sc->own[sc->nown - 1].end = sc->own[i].end;
		else
			sc->own[sc->nown++] = sc->own[i];
	}
	return 0;
}

static uint32_t op_of(const struct ckpt_area *a)
{
	switch (a->kind) {
	case CKPT_AREA_ANON:
		if (!a->pages_saved)
			return PLAN_FRESH;
		return (a->flags & CKPT_AREA_GROWSDOWN) ? PLAN_FRESH_COPY : PLAN_MOVE;
	case CKPT_AREA_FILE_PRIVATE:
		return PLAN_FILE;
	case CKPT_AREA_FILE_SHARED:
		return PLAN_FILE_SHARED;
	case CKPT_AREA_SHARED_ANON:
		return PLAN_FILE_SHARED; /* of its memfd */
	default:
		return 0;
	}
}

/* Sizes of the blob region's parts. */
struct layout {
	uint64_t code, plan, stacks, slot, pieces, staging, total;
};

/* Address space set aside for the plan's areas when lazily mapped chunks
 * are added to them (only what is used is ever touched). */
#define LAZY_PLAN_SPACE (256ull << 20)

static struct layout measure(const struct ckpt_image *img, const struct live_map *live, int nlive)
{
	struct layout l = {0};
	l.code = round_up((uint64_t)(final_blob_end - final_blob_start));
	l.plan = sizeof(struct plan) + img->nareas * sizeof(struct plan_area) +
		 img->nthreads * sizeof(struct plan_thread) +
		 img->ntimers * sizeof(struct ckpt_timer);
	for (uint32_t i = 0; i < img->nareas; i++)
		if (staged(&img->areas[i]))
			l.plan += bitmap_bytes(&img->areas[i]);
	l.plan = round_up(l.plan);
	l.stacks = img->nthreads * THREAD_STACK + MAIN_STACK;
	for (int i = 0; i < nlive; i++)
		if (!strcmp(live[i].name, "[vdso]") || !strncmp(live[i].name, "[vvar", 5))
			l.slot += live[i].end - live[i].start + PAGE;
	for (uint32_t i = 0; i < img->nareas; i++)
		if (staged(&img->areas[i]))
			l.staging += img->areas[i].end - img->areas[i].start + PAGE + HUGE;
	l.pieces = restore_lazy ? LAZY_PLAN_SPACE : 0;
	l.total = l.code + l.plan + l.stacks + l.slot + l.pieces + l.staging;
	return l;
}

static uint64_t reserve_region(const struct ckpt_image *img, const struct live_map *live, int nlive,
			       uint64_t size)
{
	struct interval *used = calloc(img->nareas + (size_t)nlive + 1, sizeof *used);
	if (!used)
		return fail("out of memory"), 0;
	size_t n = 0;
	for (uint32_t i = 0; i < img->nareas; i++)
		used[n++] = (struct interval){img->areas[i].start, img->areas[i].end};
	for (int i = 0; i < nlive; i++)
		used[n++] = (struct interval){live[i].start, live[i].end};
	uint64_t at = find_hole(used, n, size);
	free(used);
	if (!at)
		return fail("no hole of %llu bytes in the address space for the restorer",
			    (unsigned long long)size),
		       0;
	void *p = mmap((void *)at, size, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED)
		return fail("cannot reserve the restorer's region at 0x%llx: %s",
			    (unsigned long long)at, strerror(errno)),
		       0;
	return at;
}

static int map_rw(uint64_t at, uint64_t len)
{
	void *p = mmap((void *)at, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? fail("cannot map staging memory: %s", strerror(errno)) : 0;
}

/* The vDSO and vvar areas: now, parked in the slot, and their target. */
static int plan_special(struct plan *p, const struct ckpt_image *img, const struct live_map *live,
			int nlive, uint64_t slot)
{
	p->nspecial = 0;
	for (int i = 0; i < nlive; i++) {
		if (strcmp(live[i].name, "[vdso]") && strncmp(live[i].name, "[vvar", 5))
			continue;
		if (p->nspecial == PLAN_MAX_SPECIAL)
			return fail("too many vDSO areas");
		uint32_t k = p->nspecial++;
		p->special_cur[k] = live[i].start;
		p->special_len[k] = live[i].end - live[i].start;
		p->special_slot[k] = slot;
		slot += p->special_len[k] + PAGE;
	}
	uint32_t k = 0;
	for (uint32_t i = 0; i < img->nareas; i++) {
		const struct ckpt_area *a = &img->areas[i];
		if (a->kind != CKPT_AREA_VDSO && a->kind != CKPT_AREA_VVAR)
			continue;
		if (k == p->nspecial)
			return fail("the image has more vDSO areas than this kernel");
		p->special_target[k++] = a->start;
	}
	return k == p->nspecial ? 0 : fail("the image has fewer vDSO areas than this kernel");
}

static void plan_process(struct plan *p, const struct ckpt_image *img, struct fd_context *c)
{
	const struct ckpt_process *pr = &img->process;
	memcpy(p->sigactions, img->sigactions, sizeof p->sigactions);
	memcpy(p->auxv, pr->auxv, sizeof p->auxv);
	p->mm = (struct plan_mm_map){
	    pr->start_code,	pr->end_code,  pr->start_data,	pr->end_data,
	    pr->start_brk,	pr->brk,       pr->start_stack, pr->arg_start,
	    pr->arg_end,	pr->env_start, pr->env_end,	(uint64_t)(uintptr_t)p->auxv,
	    pr->auxv_words * 8, (uint32_t)-1};
	const char *exe = ckpt_image_string(img, pr->exe_str);
	int fd = exe[0] ? open(exe, O_RDONLY | O_CLOEXEC) : -1;
	if (fd >= 0) {
		fd = fd_private(c, fd);
		p->mm.exe_fd = (uint32_t)fd;
		p->close_fds[p->nclose++] = fd;
	}
	p->rseq_len = pr->rseq_size > 32 ? pr->rseq_size : 32;
	p->new_ids = getpid() != img->hdr.pid;
	p->tid_offset = pr->pthread_tid_offset;
	p->shared_pending = pr->shared_pending;
	p->rseq_sig = pr->rseq_sig;
	p->unmap_top = TASK_TOP;
	for (uint32_t i = 0; i < img->nareas; i++)
		if (img->areas[i].end > p->unmap_top)
			p->unmap_top = img->areas[i].end;
}

static int timer_order(const void *a, const void *b)
{
	const struct ckpt_timer *x = a, *y = b;
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Where the kernel cannot be told which id a POSIX timer gets, ids come in
 * ascending order: the final stage makes them in that order. */
static void plan_timers(struct ckpt_timer *timers, const struct ckpt_image *img)
{
	if (!img->ntimers)
		return;
	memcpy(timers, img->timers, img->ntimers * sizeof *timers);
	qsort(timers, img->ntimers, sizeof *timers, timer_order);
}

/* One descriptor per mapped file, shared by all of its areas (libraries
 * have several); the final stage closes them. */
struct file_table {
	const char **names;
	int *fds;
	uint32_t n;
};

static int file_fd(struct plan *p, struct fd_context *c, struct file_table *ft,
		   const struct ckpt_image *img, const struct ckpt_area *a)
{
	const char *path = ckpt_image_string(img, a->name_str);
	for (uint32_t i = ft->n; i > 0; i--)
		if (!strcmp(ft->names[i - 1], path))
			return ft->fds[i - 1];
	int fd = open_mapped_file(c, img, a);
	if (fd < 0)
		return -1;
	if (p->nclose == PLAN_MAX_CLOSE)
		return fail("too many mapped files (more than %d)", PLAN_MAX_CLOSE);
	p->close_fds[p->nclose++] = fd;
	ft->names[ft->n] = path;
	ft->fds[ft->n++] = fd;
	return fd;
}

/* Lazy restart: the plan's areas, then the pieces mapped from image
 * files, in the space set aside for them. */
static int append_pieces(struct plan *p, uint64_t at)
{
	uint64_t n = (uint64_t)p->nareas + npieces;
	if (!npieces)
		return 0;
	if (n * sizeof(struct plan_area) > LAZY_PLAN_SPACE)
		return fail("too many lazily mapped chunks (%u)", npieces);
	if (map_rw(at, round_up(n * sizeof(struct plan_area))) != 0)
		return -1;
	prctl(0x53564d41 /* PR_SET_VMA */, 0 /* ANON_NAME */, at,
	      round_up(n * sizeof(struct plan_area)), "ckpt-restorer");
	struct plan_area *all = (struct plan_area *)(uintptr_t)at;
	memcpy(all, p->areas, p->nareas * sizeof *all);
	memcpy(all + p->nareas, pieces, npieces * sizeof *all);
	p->areas = all;
	p->nareas = (uint32_t)n;
	free(pieces);
	pieces = NULL;
	npieces = cappieces = 0;
	return 0;
}

/* Areas in the plan, their files opened, their pages staged. */
static int plan_areas(struct plan *p, struct ckpt_image *img, struct fd_context *c,
		      uint64_t staging, uint64_t bitmaps, uint64_t pieces_at)
{
	uint32_t n = 0;
	struct plan_area *by_index = calloc(img->nareas + 1, sizeof *by_index);
	struct file_table ft = {calloc(img->nareas + 1, sizeof(char *)),
				calloc(img->nareas + 1, sizeof(int)), 0};
	if (!by_index || !ft.names || !ft.fds)
		return fail("out of memory");
	for (uint32_t i = 0; i < img->nareas; i++) {
		const struct ckpt_area *a = &img->areas[i];
		struct plan_area *pa = &by_index[i];
		pa->op = op_of(a);
		if (!pa->op)
			continue; /* vDSO, handled apart */
		pa->start = a->start;
		pa->end = a->end;
		pa->prot = a->prot;
		pa->file_offset = a->file_offset;
		pa->growsdown = (a->flags & CKPT_AREA_GROWSDOWN) != 0;
		pa->fd = -1;
		int shared = a->kind == CKPT_AREA_SHARED_ANON;
		if (shared) {
			struct shm_rec *r = shm_of(img, a);
			if (!r || p->nclose == PLAN_MAX_CLOSE) {
				fail("shared memory at 0x%llx was not prepared",
				     (unsigned long long)a->start);
				goto fail;
			}
			pa->fd = r->fd;
			int listed = 0;
			for (uint32_t k = 0; k < p->nclose && !listed; k++)
				listed = p->close_fds[k] == r->fd;
			if (!listed)
				p->close_fds[p->nclose++] = r->fd;
		} else if (pa->op == PLAN_FILE || pa->op == PLAN_FILE_SHARED) {
			pa->fd = file_fd(p, c, &ft, img, a);
			if (pa->fd < 0)
				goto fail;
			/* The final stage copies the saved pages over the file's, and
			 * each first write to a page of a private file mapping reads
			 * the file's page first: a read from the disk at a time when
			 * the file is not cached (torch: 0.3-0.4 s of its restart).
			 * Asked for now, the kernel reads them while the image is
			 * read. Advice only. */
			if (staged(a))
				(void)posix_fadvise(pa->fd, (off_t)a->file_offset,
						    (off_t)(a->end - a->start),
						    POSIX_FADV_WILLNEED);
		}
		if (staged(a) && shared) {
			/* the pages go straight into the shared object */
			pa->staging = staging;
			void *m = mmap((void *)(uintptr_t)staging, a->end - a->start,
				       PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, pa->fd,
				       (off_t)a->file_offset);
			if (m == MAP_FAILED) {
				fail("cannot map shared memory: %s", strerror(errno));
				goto fail;
			}
			staging += a->end - a->start + PAGE;
		} else if (staged(a)) {
			/* Placed at the same offset within 2 MiB as the target:
			 * mremap then moves whole huge pages, or whole page tables
			 * of small ones, into place. */
			staging += (a->start - staging) & (HUGE - 1);
			pa->staging = staging;
			if (map_rw(staging, a->end - a->start) != 0)
				goto fail;
			/* lazily restored areas: only where chunks are dense */
			if (huge_staging() && a->end - a->start >= HUGE &&
			    (!restore_lazy || pa->op != PLAN_MOVE))
				madvise((void *)(uintptr_t)staging, a->end - a->start,
					MADV_HUGEPAGE);
			staging += a->end - a->start + PAGE;
			if (pa->op != PLAN_MOVE) {
				pa->bitmap = bitmaps;
				bitmaps += bitmap_bytes(a);
			}
		}
	}
	struct stage_ctx sc = {img, by_index, p, c, -1, NULL, 0};
	char err[512];
	/* decompressing is the slow part of a restart: one thread per CPU */
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	/* The pages taken from parent generations first (the reference
	 * chunks listed from the index), then the generation's own, written
	 * over them: a parent's chunk that holds own pages of this generation
	 * besides those wanted from it (after 1% of the pages changed, nearly
	 * every chunk) is read straight into place, not through a bounce
	 * buffer and a copy. Lazy: the parents' pages are most of an
	 * incremental generation's and lie densely, so they get huge pages,
	 * which the generation's own scattered pages then land in; the other
	 * way round, those pages' page tables would leave the parents' pages
	 * only small ones. */
	int refs_first = img->index && img->hdr.parent_generation;
	if (refs_first) {
		if (ckpt_image_check_pages(img, CKPT_CHECK_LAYOUT, err, sizeof err) != 0) {
			fail("%s", err);
			goto fail;
		}
		int bad =
		    own_ranges(&sc) != 0 || resolve_refs(img, &sc, cpus > 0 ? (int)cpus : 1) != 0;
		free(sc.own);
		sc.own = NULL;
		sc.nown = 0;
		if (bad)
			goto fail;
	}
	if (ckpt_image_read_pages_mapped(img, restore_lazy ? own_chunk_map : NULL, chunk_dest, NULL,
					 &sc, cpus > 0 ? (int)cpus : 1, err, sizeof err) != 0) {
		fail("%s", err);
		goto fail;
	}
	if (!refs_first && resolve_refs(img, &sc, cpus > 0 ? (int)cpus : 1) != 0)
		goto fail;
	for (uint32_t i = 0; i < img->nareas; i++) {
		const struct ckpt_area *a = &img->areas[i];
		if (restore_lazy && huge_staging() && by_index[i].staging &&
		    by_index[i].op == PLAN_MOVE && a->end - a->start >= HUGE)
			madvise((void *)(uintptr_t)by_index[i].staging, a->end - a->start,
				MADV_HUGEPAGE);
	}
	for (uint32_t i = 0; i < img->nareas; i++) {
		if (img->areas[i].kind == CKPT_AREA_SHARED_ANON && by_index[i].staging) {
			munmap((void *)(uintptr_t)by_index[i].staging,
			       img->areas[i].end - img->areas[i].start);
			by_index[i].staging = 0;
		}
		if (by_index[i].op)
			p->areas[n++] = by_index[i];
	}
	p->nareas = n;
	shm_close_unused(p, img);
	if (append_pieces(p, pieces_at) != 0)
		goto fail;
	free(by_index);
	free(ft.names);
	free(ft.fds);
	return 0;
fail:
	free(by_index);
	free(ft.names);
	free(ft.fds);
	return -1;
}

/* The affinity and nice value a thread set itself (THREAD_SCHED): the
 * affinity cut to the CPUs this restart may use (a restart elsewhere, or
 * under another binding, may have others; none of them in common: the
 * thread runs where the restart runs it, and execution.log says so). */
static void plan_thread_sched(struct plan_thread *pt, const struct ckpt_image *img)
{
	static uint8_t allowed[CKPT_CPUSET_BYTES];
	static int have_allowed = -1;
	if (have_allowed < 0)
		have_allowed = sched_getaffinity(0, sizeof allowed, (cpu_set_t *)allowed) == 0;
	pt->sched_flags = 0;
	for (uint32_t k = 0; k < img->nsched; k++) {
		const struct ckpt_thread_sched *s = &img->sched[k];
		if (s->tid != pt->t.tid)
			continue;
		if (s->flags & CKPT_SCHED_NICE) {
			pt->sched_flags |= CKPT_SCHED_NICE;
			pt->nice = s->nice;
		}
		if (!(s->flags & CKPT_SCHED_AFFINITY) || !have_allowed)
			break;
		int any = 0;
		for (unsigned b = 0; b < CKPT_CPUSET_BYTES; b++) {
			pt->cpus[b] = s->cpus[b] & allowed[b];
			any |= pt->cpus[b] != 0;
		}
		if (any)
			pt->sched_flags |= CKPT_SCHED_AFFINITY;
		else
			warn(
			    "thread %d was bound to CPUs that this restart may not use: it runs on "
			    "any of those it may",
			    (int)s->tid);
		break;
	}
}

struct plan *plan_build(struct ckpt_image *img, struct fd_context *c)
{
	static struct live_map live[65536];
	int nlive = live_maps(live, 65536);
	if (nlive < 0)
		return NULL;
	if (restore_lazy)
		set_piece_budget(img->nareas);
	struct layout l = measure(img, live, nlive);
	uint64_t at = reserve_region(img, live, nlive, l.total);
	if (!at)
		return NULL;
	/* code | plan | stacks | vDSO slot | lazy pieces | staging */
	uint64_t code = at, plan_at = code + l.code, stacks = plan_at + l.plan;
	uint64_t slot = stacks + l.stacks, pieces_at = slot + l.slot,
		 staging = pieces_at + l.pieces;
	if (map_rw(code, l.code + l.plan + l.stacks) != 0)
		return NULL;
	memcpy((void *)code, final_blob_start, (size_t)(final_blob_end - final_blob_start));
	if (mprotect((void *)code, l.code, PROT_READ | PROT_EXEC) != 0)
		return fail("cannot make the final stage executable: %s", strerror(errno)), NULL;
	/* name it so that the next checkpoint leaves it out */
	prctl(0x53564d41 /* PR_SET_VMA */, 0 /* ANON_NAME */, at, l.code + l.plan + l.stacks,
	      "ckpt-restorer");

	struct plan *p = (struct plan *)plan_at;
	memset(p, 0, sizeof *p);
	p->blob_start = at;
	p->blob_end = at + l.total;
	p->areas = (struct plan_area *)(p + 1);
	p->threads = (struct plan_thread *)(p->areas + img->nareas);
	p->nthreads = img->nthreads;
	for (uint32_t i = 0; i < img->nthreads; i++) {
		p->threads[i].t = img->threads[i];
		p->threads[i].stack_top = stacks + (i + 1) * THREAD_STACK;
		plan_thread_sched(&p->threads[i], img);
	}
	if (plan_special(p, img, live, nlive, slot) != 0)
		return NULL;
	plan_process(p, img, c);
	p->timers = (struct ckpt_timer *)(p->threads + img->nthreads);
	p->ntimers = img->ntimers;
	plan_timers(p->timers, img);
	p->siginfo = (struct ckpt_siginfo *)(p->timers + img->ntimers);
	p->nsiginfo = img->nsiginfo;
	if (img->nsiginfo)
		memcpy(p->siginfo, img->siginfo, img->nsiginfo * sizeof *p->siginfo);
	uint64_t bitmaps = (uint64_t)(uintptr_t)(p->siginfo + img->nsiginfo);
	if (plan_areas(p, img, c, staging, bitmaps, pieces_at) != 0)
		return NULL;
	return p;
}
