/* Image reader. The file is untrusted: every offset, length and count is
 * checked against the file size (with overflow in mind) before it is used,
 * allocations are bounded by the section lengths, and every record that a
 * later stage relies on is validated here, so that the restorer can use the
 * loaded arrays without re-checking them. See docs/image-format.md. */
#include "image/reader.h"
#include "image/direct.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zstd.h>

#include "common/crc32c.h"

#if defined(__x86_64__)
#define THIS_ARCH "x86_64"
#elif defined(__aarch64__)
#define THIS_ARCH "aarch64"
#else
#error "unsupported architecture"
#endif

/* Small sections are read into memory whole; a bigger one is refused
 * rather than trusted to allocate (real ones are far smaller). */
#define MAX_SMALL_SECTION (1ull << 30)
/* Verifying without a destination reads chunk data in pieces this big. */
#define SCRATCH_SIZE (1u << 20)

/* Fuzzing builds accept bad checksums so that the fuzzer gets past them
 * to the record checks (the standard libFuzzer convention). */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define CRC_OK(got, want) ((void)(got), (void)(want), 1)
#else
#define CRC_OK(got, want) ((got) == (want))
#endif

#define HDR_SIZE ((uint64_t)sizeof(struct ckpt_image_header))
#define CHUNK_HDR ((uint64_t)sizeof(struct ckpt_page_chunk))
#define BOUNCE_SIZE ((uint64_t)CKPT_ZCHUNK_MAX_PAGES * CKPT_PAGE_SIZE)
#define WINDOW_SIZE (1u << 20)

static const char *const section_names[] = {
    [CKPT_SEC_PROCESS] = "PROCESS",
    [CKPT_SEC_THREADS] = "THREADS",
    [CKPT_SEC_SIGACTIONS] = "SIGACTIONS",
    [CKPT_SEC_AREAS] = "AREAS",
    [CKPT_SEC_STRINGS] = "STRINGS",
    [CKPT_SEC_FDS] = "FDS",
    [CKPT_SEC_FD_DATA] = "FD_DATA",
    [CKPT_SEC_PAGES] = "PAGES",
    [CKPT_SEC_TREE] = "TREE",
    [CKPT_SEC_ZOMBIES] = "ZOMBIES",
    [CKPT_SEC_FD_SHARES] = "FD_SHARES",
    [CKPT_SEC_LOCKS] = "LOCKS",
    [CKPT_SEC_PAGE_HASHES] = "PAGE_HASHES",
    [CKPT_SEC_PAGE_RUNS] = "PAGE_RUNS",
    [CKPT_SEC_PAGE_INDEX] = "PAGE_INDEX",
    [CKPT_SEC_TIMERS] = "TIMERS",
    [CKPT_SEC_SIGINFO] = "SIGINFO",
    [CKPT_SEC_SHARED_FILES] = "SHARED_FILES",
    [CKPT_SEC_THREAD_SCHED] = "THREAD_SCHED",
};

const char *ckpt_section_name(uint32_t type)
{
	if (type >= 1 && type <= CKPT_SEC_MAX_KNOWN)
		return section_names[type];
	return "UNKNOWN";
}

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
						      ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* pread exactly len bytes; a short read means the file shrank under us. */
static int read_at(int fd, void *buf, uint64_t len, uint64_t off)
{
	char *p = buf;
	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = 0; /* end of file */
			return -1;
		}
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

/* len_a bytes at off into a, the len_b after them into b: one system call
 * in the usual case. */
static int read_two_at(int fd, void *a, uint64_t len_a, void *b, uint64_t len_b, uint64_t off)
{
	struct iovec iov[2] = {{a, len_a}, {b, len_b}};
	ssize_t n;
	do
		n = preadv(fd, iov, 2, (off_t)off);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	uint64_t got = (uint64_t)n;
	if (got < len_a)
		return read_at(fd, (char *)a + got, len_a - got, off + got) < 0
			   ? -1
			   : read_at(fd, b, len_b, off + len_a);
	return read_at(fd, (char *)b + (got - len_a), len_b - (got - len_a), off + got);
}

static int all_zero(const char *p, uint64_t len)
{
	for (uint64_t i = 0; i < len; i++)
		if (p[i])
			return 0;
	return 1;
}

/* Padding (under 4096 bytes) must be zero, so that no byte of an image
 * escapes verification. */
static int zero_at(int fd, uint64_t len, uint64_t off)
{
	char buf[CKPT_PAGE_SIZE];
	return len <= sizeof buf && read_at(fd, buf, len, off) == 0 && all_zero(buf, len);
}

/* Fixed-size text field from the file, made safe to print on one line. */
static const char *printable(char *dst, const char *src, size_t n)
{
	size_t i;
	for (i = 0; i < n && src[i]; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	dst[i] = 0;
	return dst;
}

static int has_nul(const char *s, size_t n)
{
	return memchr(s, 0, n) != NULL;
}

/* ---- header and section table ---- */

static int check_header(struct ckpt_image *img, char *err, size_t errlen)
{
	struct ckpt_image_header *h = &img->hdr;
	char a[sizeof h->arch + 1];

	if (memcmp(h->magic, CKPT_IMAGE_MAGIC, CKPT_IMAGE_MAGIC_LEN) != 0)
		return fail(err, errlen, "not a ckpt image (bad magic)");
	/* the version comes before the checksum: another version may have
	 * another header layout */
	if (h->format_version != CKPT_FORMAT_VERSION &&
	    h->format_version != CKPT_FORMAT_VERSION_V9 &&
	    h->format_version != CKPT_FORMAT_VERSION_V8 &&
	    h->format_version != CKPT_FORMAT_VERSION_V7 &&
	    h->format_version != CKPT_FORMAT_VERSION_V6 &&
	    h->format_version != CKPT_FORMAT_VERSION_V5 &&
	    h->format_version != CKPT_FORMAT_VERSION_V4 &&
	    h->format_version != CKPT_FORMAT_VERSION_V3 &&
	    h->format_version != CKPT_FORMAT_VERSION_V2)
		return fail(err, errlen,
			    "image format version %u is not supported (this ckpt reads versions %u "
			    "to %u)",
			    h->format_version, CKPT_FORMAT_VERSION_V2, CKPT_FORMAT_VERSION);
	if (h->header_size != HDR_SIZE)
		return fail(err, errlen, "image header size is %u, expected %u", h->header_size,
			    (unsigned)HDR_SIZE);
	uint32_t want = h->header_crc;
	h->header_crc = 0;
	uint32_t got = crc32c_update(0, h, sizeof *h);
	h->header_crc = want;
	if (!CRC_OK(got, want))
		return fail(err, errlen, "checksum mismatch in image header");
	if (!has_nul(h->arch, sizeof h->arch) || strcmp(h->arch, THIS_ARCH) != 0)
		return fail(err, errlen, "image was written on architecture %s, this machine is %s",
			    printable(a, h->arch, sizeof h->arch), THIS_ARCH);
	if (!has_nul(h->kernel_release, sizeof h->kernel_release) ||
	    !has_nul(h->ckpt_version, sizeof h->ckpt_version))
		return fail(err, errlen, "image header: version strings are not NUL-terminated");
	if (h->format_version < CKPT_FORMAT_VERSION_V4 && h->parent_generation)
		return fail(err, errlen, "image header: a parent generation in a version %u image",
			    h->format_version);
	if (h->parent_generation && h->parent_generation >= h->generation)
		return fail(
		    err, errlen,
		    "image header: parent generation %llu is not older than generation %llu",
		    (unsigned long long)h->parent_generation, (unsigned long long)h->generation);
	if (h->image_size > img->file_size)
		return fail(err, errlen,
			    "image truncated: header says %llu bytes but the file has %llu",
			    (unsigned long long)h->image_size, (unsigned long long)img->file_size);
	if (h->image_size < img->file_size)
		return fail(err, errlen, "image has %llu bytes but its header says %llu",
			    (unsigned long long)img->file_size, (unsigned long long)h->image_size);
	return 0;
}

/* Sections lie between the header and the table, in table order, without
 * overlapping; each type appears at most once. */
static int check_section(const struct ckpt_image *img, uint32_t i, uint64_t prev_end, char *err,
			 size_t errlen)
{
	const struct ckpt_section *s = &img->sections[i];
	const char *name = ckpt_section_name(s->type);

	/* each version knows the sections of the versions before it */
	uint32_t v = img->hdr.format_version;
	uint32_t known = v >= CKPT_FORMAT_VERSION_V9   ? CKPT_SEC_MAX_KNOWN
			 : v >= CKPT_FORMAT_VERSION_V7 ? CKPT_SEC_SIGINFO
			 : v >= CKPT_FORMAT_VERSION_V6 ? CKPT_SEC_PAGE_INDEX
			 : v >= CKPT_FORMAT_VERSION_V5 ? CKPT_SEC_PAGE_RUNS
						       : CKPT_SEC_PAGE_HASHES;
	if (s->type < 1 || s->type > known)
		return fail(err, errlen, "section table entry %u has unknown type %u", i, s->type);
	for (uint32_t j = 0; j < i; j++)
		if (img->sections[j].type == s->type)
			return fail(err, errlen, "section %s appears twice", name);
	if (s->offset > img->file_size || s->length > img->file_size - s->offset)
		return fail(
		    err, errlen,
		    "image truncated: section %s ends at byte %llu but the file has %llu bytes",
		    name, (unsigned long long)s->offset + s->length,
		    (unsigned long long)img->file_size);
	if (s->offset < prev_end || s->offset + s->length > img->hdr.section_table_offset)
		return fail(
		    err, errlen,
		    "section %s (bytes %llu-%llu) overlaps the header, the table or another "
		    "section",
		    name, (unsigned long long)s->offset,
		    (unsigned long long)(s->offset + s->length));
	return 0;
}

static int load_table(struct ckpt_image *img, char *err, size_t errlen)
{
	const struct ckpt_image_header *h = &img->hdr;
	uint64_t len = (uint64_t)h->section_count * sizeof(struct ckpt_section);

	if (h->section_count > CKPT_MAX_SECTIONS)
		return fail(err, errlen, "section table has %u entries, at most %u allowed",
			    h->section_count, CKPT_MAX_SECTIONS);
	if (h->section_table_offset < HDR_SIZE || h->section_table_offset > img->file_size ||
	    len > img->file_size - h->section_table_offset)
		return fail(
		    err, errlen,
		    "image truncated: section table (%llu bytes at byte %llu) is outside the "
		    "file's %llu bytes",
		    (unsigned long long)len, (unsigned long long)h->section_table_offset,
		    (unsigned long long)img->file_size);
	if (read_at(img->fd, img->sections, len, h->section_table_offset) < 0)
		return fail(err, errlen, "cannot read the section table: %s", strerror(errno));
	if (!CRC_OK(crc32c_update(0, img->sections, len), h->section_table_crc))
		return fail(err, errlen, "checksum mismatch in section table");
	if (h->section_table_offset + len != img->file_size)
		return fail(err, errlen, "section table does not end the file");
	uint64_t prev_end = HDR_SIZE;
	for (uint32_t i = 0; i <= h->section_count; i++) {
		const struct ckpt_section *s = &img->sections[i];
		if (i < h->section_count && check_section(img, i, prev_end, err, errlen) < 0)
			return -1;
		/* sections and the table are 8-byte aligned: gaps are padding */
		uint64_t next = i < h->section_count ? s->offset : h->section_table_offset;
		if (next < prev_end || next - prev_end >= 8 ||
		    !zero_at(img->fd, next - prev_end, prev_end))
			return fail(err, errlen, "bad padding before %s at byte %llu",
				    i < h->section_count ? ckpt_section_name(s->type)
							 : "the section table",
				    (unsigned long long)prev_end);
		if (i < h->section_count)
			prev_end = s->offset + s->length;
	}
	return 0;
}

static const struct ckpt_section *find_section(const struct ckpt_image *img, uint32_t type)
{
	for (uint32_t i = 0; i < img->hdr.section_count; i++)
		if (img->sections[i].type == type)
			return &img->sections[i];
	return NULL;
}

/* ---- small sections ---- */

/* Read a whole section into a new buffer and verify its checksum. recsize
 * != 0: the section is count records of that size (so the allocation is
 * bounded by the section length, never by a count). An absent optional
 * section loads as empty. */
static int load_section(struct ckpt_image *img, uint32_t type, int required, size_t recsize,
			void **out, uint64_t *len, char *err, size_t errlen)
{
	const struct ckpt_section *s = find_section(img, type);
	const char *name = ckpt_section_name(type);

	*out = NULL;
	*len = 0;
	if (!s)
		return required ? fail(err, errlen, "image has no %s section", name) : 0;
	if (s->length > MAX_SMALL_SECTION)
		return fail(err, errlen, "section %s is %llu bytes, more than the %llu byte limit",
			    name, (unsigned long long)s->length, MAX_SMALL_SECTION);
	if (recsize && s->length != (uint64_t)s->count * recsize)
		return fail(err, errlen,
			    "section %s is %llu bytes, which is not %u records of %zu bytes", name,
			    (unsigned long long)s->length, s->count, recsize);
	*out = malloc(s->length ? s->length : 1);
	if (!*out)
		return fail(err, errlen, "out of memory loading section %s", name);
	if (read_at(img->fd, *out, s->length, s->offset) < 0)
		return fail(err, errlen, "cannot read section %s: %s", name,
			    errno ? strerror(errno) : "file shrank");
	if (!CRC_OK(crc32c_update(0, *out, s->length), s->crc))
		return fail(err, errlen, "checksum mismatch in section %s", name);
	*len = s->length;
	return 0;
}

/* Fixed-size section loaded into a struct of the image. */
static int load_fixed(struct ckpt_image *img, uint32_t type, void *dst, size_t size, char *err,
		      size_t errlen)
{
	void *p;
	uint64_t len;
	int r = load_section(img, type, 1, 0, &p, &len, err, errlen);
	if (r == 0 && len != size)
		r = fail(err, errlen, "section %s is %llu bytes, expected %zu",
			 ckpt_section_name(type), (unsigned long long)len, size);
	if (r == 0)
		memcpy(dst, p, size);
	free(p);
	return r;
}

static int load_records(struct ckpt_image *img, uint32_t type, int required, size_t recsize,
			void **out, uint32_t *count, char *err, size_t errlen)
{
	uint64_t len;
	if (load_section(img, type, required, recsize, out, &len, err, errlen) < 0)
		return -1;
	*count = (uint32_t)(len / recsize);
	return 0;
}

static int string_ok(const struct ckpt_image *img, uint32_t off)
{
	return off == 0 || off < img->strings_len;
}

/* ---- record validation ---- */

/* STRINGS starts with a NUL (offset 0 is "") and ends with one, so every
 * in-range offset names a terminated string. */
static int check_strings(const struct ckpt_image *img, char *err, size_t errlen)
{
	if (img->strings_len == 0)
		return 0;
	if (img->strings[0] != 0 || img->strings[img->strings_len - 1] != 0)
		return fail(err, errlen, "section STRINGS must begin and end with a NUL byte");
	return 0;
}

static int check_process(const struct ckpt_image *img, char *err, size_t errlen)
{
	const struct ckpt_process *p = &img->process;

	if (p->pid != img->hdr.pid)
		return fail(err, errlen, "section PROCESS: pid %d differs from the header's %d",
			    p->pid, img->hdr.pid);
	if (p->auxv_words > 2 * CKPT_MAX_AUXV || p->auxv_words % 2)
		return fail(err, errlen, "section PROCESS: bad auxv length %u", p->auxv_words);
	if (p->nrlimits > CKPT_NRLIMITS)
		return fail(err, errlen, "section PROCESS: %u rlimits, at most %u", p->nrlimits,
			    CKPT_NRLIMITS);
	if (!string_ok(img, p->cwd_str) || !string_ok(img, p->exe_str))
		return fail(err, errlen, "section PROCESS: string offset outside STRINGS");
	if (!has_nul(p->comm, sizeof p->comm))
		return fail(err, errlen, "section PROCESS: comm is not NUL-terminated");
	return 0;
}

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return (x > y) - (x < y);
}

/* Whether n int32 values found at base + i*stride are distinct. */
static int distinct_i32(const void *base, uint32_t n, size_t stride)
{
	int32_t *v = malloc(n ? n * sizeof *v : 1);
	int ok = v != NULL;
	for (uint32_t i = 0; ok && i < n; i++)
		memcpy(&v[i], (const char *)base + i * stride, sizeof *v);
	if (ok)
		qsort(v, n, sizeof *v, cmp_i32);
	for (uint32_t i = 1; ok && i < n; i++)
		ok = v[i] != v[i - 1];
	free(v);
	return ok;
}

static int check_threads(const struct ckpt_image *img, char *err, size_t errlen)
{
	uint32_t nmain = 0, nagent = 0;

	if (img->nthreads < 1 || img->nthreads != img->hdr.nthreads)
		return fail(err, errlen, "section THREADS has %u threads, the header says %u",
			    img->nthreads, img->hdr.nthreads);
	for (uint32_t i = 0; i < img->nthreads; i++) {
		const struct ckpt_thread *t = &img->threads[i];
		if (t->tid <= 0 || (t->flags & ~(uint32_t)(CKPT_THREAD_MAIN | CKPT_THREAD_AGENT)))
			return fail(err, errlen, "section THREADS: thread %u has bad tid or flags",
				    i);
		if (!has_nul(t->comm, sizeof t->comm))
			return fail(err, errlen, "section THREADS: thread %u comm not terminated",
				    i);
		if ((t->flags & CKPT_THREAD_MAIN) && t->tid != img->process.pid)
			return fail(err, errlen, "section THREADS: main thread %d is not pid %d",
				    t->tid, img->process.pid);
		nmain += !!(t->flags & CKPT_THREAD_MAIN);
		nagent += !!(t->flags & CKPT_THREAD_AGENT);
	}
	if (nmain != 1 || nagent > 1)
		return fail(err, errlen,
			    "section THREADS: %u main and %u agent threads (want 1 and at most 1)",
			    nmain, nagent);
	if (!distinct_i32(&img->threads[0].tid, img->nthreads, sizeof(struct ckpt_thread)))
		return fail(err, errlen, "section THREADS: duplicate thread id");
	return 0;
}

static int check_area(const struct ckpt_image *img, uint32_t i, char *err, size_t errlen)
{
	const struct ckpt_area *a = &img->areas[i];
	const uint32_t known = CKPT_AREA_GROWSDOWN | CKPT_AREA_HEAP | CKPT_AREA_FROM_FILE;

	if (a->start >= a->end || a->start % CKPT_PAGE_SIZE || a->end % CKPT_PAGE_SIZE)
		return fail(err, errlen,
			    "section AREAS: area %u [0x%llx-0x%llx) is not page aligned", i,
			    (unsigned long long)a->start, (unsigned long long)a->end);
	if (i > 0 && a->start < img->areas[i - 1].end)
		return fail(err, errlen,
			    "section AREAS: area %u at 0x%llx is out of order or overlaps area %u",
			    i, (unsigned long long)a->start, i - 1);
	if (a->kind < CKPT_AREA_ANON || a->kind > CKPT_AREA_VVAR || (a->flags & ~known))
		return fail(err, errlen, "section AREAS: area %u has unknown kind %u or flags 0x%x",
			    i, a->kind, a->flags);
	if (!string_ok(img, a->name_str))
		return fail(err, errlen, "section AREAS: area %u name offset outside STRINGS", i);
	if (a->pages_saved > (a->end - a->start) / CKPT_PAGE_SIZE)
		return fail(err, errlen,
			    "section AREAS: area %u has more pages saved than it holds", i);
	return 0;
}

static int check_areas(const struct ckpt_image *img, char *err, size_t errlen)
{
	for (uint32_t i = 0; i < img->nareas; i++)
		if (check_area(img, i, err, errlen) < 0)
			return -1;
	return 0;
}

static int check_fd(const struct ckpt_image *img, uint32_t i, char *err, size_t errlen)
{
	const struct ckpt_fd *f = &img->fds[i];

	uint32_t last_kind =
	    img->hdr.format_version >= CKPT_FORMAT_VERSION ? CKPT_FD_INOTIFY : CKPT_FD_FIFO;
	if (f->fd < 0 || f->kind < CKPT_FD_FILE || f->kind > last_kind)
		return fail(err, errlen, "section FDS: entry %u has bad fd %d or kind %u", i, f->fd,
			    f->kind);
	if ((f->kind == CKPT_FD_STDIO && f->aux > 2) ||
	    ((f->kind == CKPT_FD_PIPE || f->kind == CKPT_FD_FIFO) && f->aux > 1) ||
	    (f->kind == CKPT_FD_FILE && f->aux > 2) ||
	    (f->kind == CKPT_FD_FILE && f->aux != 0 && f->data_len != f->size))
		return fail(err, errlen, "section FDS: fd %d has bad aux %u", f->fd, f->aux);
	if (!string_ok(img, f->path_str))
		return fail(err, errlen, "section FDS: fd %d path offset outside STRINGS", f->fd);
	if (f->data_off > img->fd_data_len || f->data_len > img->fd_data_len - f->data_off)
		return fail(err, errlen, "section FDS: fd %d data range is outside FD_DATA", f->fd);
	if (f->kind == CKPT_FD_INOTIFY) {
		size_t n = f->data_len / sizeof(struct ckpt_inotify_watch);
		if (f->data_len % sizeof(struct ckpt_inotify_watch))
			return fail(err, errlen, "section FDS: fd %d has a partial inotify watch",
				    f->fd);
		for (size_t k = 0; k < n; k++) {
			struct ckpt_inotify_watch one;
			memcpy(&one, img->fd_data + f->data_off + k * sizeof one, sizeof one);
			if (one.wd <= 0 || one.reserved || !string_ok(img, one.path_str))
				return fail(
				    err, errlen,
				    "section FDS: fd %d inotify watch %zu has a bad number, "
				    "path or reserved word",
				    f->fd, k);
		}
	}
	return 0;
}

static int check_shared_files(const struct ckpt_image *img, char *err, size_t errlen)
{
	for (uint32_t i = 0; i < img->nshared_files; i++) {
		const struct ckpt_shared_file *f = &img->shared_files[i];
		if (f->reserved || f->data_len != f->size || !string_ok(img, f->path_str) ||
		    f->data_off > img->fd_data_len || f->data_len > img->fd_data_len - f->data_off)
			return fail(err, errlen,
				    "section SHARED_FILES: entry %u has a bad path, size or data "
				    "range",
				    i);
	}
	return 0;
}

static int check_fds(const struct ckpt_image *img, char *err, size_t errlen)
{
	for (uint32_t i = 0; i < img->nfds; i++)
		if (check_fd(img, i, err, errlen) < 0)
			return -1;
	if (img->nfds && !distinct_i32(&img->fds[0].fd, img->nfds, sizeof(struct ckpt_fd)))
		return fail(err, errlen, "section FDS: a descriptor appears twice");
	return 0;
}

/* ---- open / close ---- */

static int load_all(struct ckpt_image *img, char *err, size_t errlen)
{
	void *p;
	uint64_t len;

	if (load_table(img, err, errlen) < 0 ||
	    load_fixed(img, CKPT_SEC_PROCESS, &img->process, sizeof img->process, err, errlen) <
		0 ||
	    load_fixed(img, CKPT_SEC_SIGACTIONS, img->sigactions, sizeof img->sigactions, err,
		       errlen) < 0)
		return -1;
	if (load_records(img, CKPT_SEC_THREADS, 1, sizeof *img->threads, &p, &img->nthreads, err,
			 errlen) < 0)
		return free(p), -1;
	img->threads = p;
	if (load_records(img, CKPT_SEC_AREAS, 1, sizeof *img->areas, &p, &img->nareas, err,
			 errlen) < 0)
		return free(p), -1;
	img->areas = p;
	if (load_records(img, CKPT_SEC_FDS, 0, sizeof *img->fds, &p, &img->nfds, err, errlen) < 0)
		return free(p), -1;
	img->fds = p;
	if (load_section(img, CKPT_SEC_STRINGS, 0, 0, &p, &len, err, errlen) < 0)
		return free(p), -1;
	img->strings = p;
	img->strings_len = len;
	if (load_section(img, CKPT_SEC_FD_DATA, 0, 0, &p, &len, err, errlen) < 0)
		return free(p), -1;
	img->fd_data = p;
	img->fd_data_len = len;
	if (find_section(img, CKPT_SEC_TREE) &&
	    load_fixed(img, CKPT_SEC_TREE, &img->tree, sizeof img->tree, err, errlen) < 0)
		return -1;
	if (load_records(img, CKPT_SEC_ZOMBIES, 0, sizeof *img->zombies, &p, &img->nzombies, err,
			 errlen) < 0)
		return free(p), -1;
	img->zombies = p;
	if (load_records(img, CKPT_SEC_FD_SHARES, 0, sizeof *img->shares, &p, &img->nshares, err,
			 errlen) < 0)
		return free(p), -1;
	img->shares = p;
	if (load_records(img, CKPT_SEC_LOCKS, 0, sizeof *img->locks, &p, &img->nlocks, err,
			 errlen) < 0)
		return free(p), -1;
	img->locks = p;
	if (load_records(img, CKPT_SEC_PAGE_INDEX, 0, sizeof *img->index, &p, &img->nindex, err,
			 errlen) < 0)
		return free(p), -1;
	img->index = p;
	if (load_records(img, CKPT_SEC_TIMERS, 0, sizeof *img->timers, &p, &img->ntimers, err,
			 errlen) < 0)
		return free(p), -1;
	img->timers = p;
	if (load_records(img, CKPT_SEC_SIGINFO, 0, sizeof *img->siginfo, &p, &img->nsiginfo, err,
			 errlen) < 0)
		return free(p), -1;
	img->siginfo = p;
	if (load_records(img, CKPT_SEC_SHARED_FILES, 0, sizeof *img->shared_files, &p,
			 &img->nshared_files, err, errlen) < 0)
		return free(p), -1;
	img->shared_files = p;
	if (load_records(img, CKPT_SEC_THREAD_SCHED, 0, sizeof *img->sched, &p, &img->nsched, err,
			 errlen) < 0)
		return free(p), -1;
	img->sched = p;
	img->pages = find_section(img, CKPT_SEC_PAGES);
	return 0;
}

/* Ids of the tree are pids of the computation: positive, or 0 for "outside
 * it"; a zombie is another process; a shared description names a
 * descriptor of this image and a holder that comes first. */
static int check_tree(const struct ckpt_image *img, char *err, size_t errlen)
{
	const struct ckpt_tree *t = &img->tree;
	if (t->pgid < 0 || t->sid < 0 || t->reserved)
		return fail(err, errlen, "section TREE: bad process group %d or session %d",
			    t->pgid, t->sid);
	for (uint32_t i = 0; i < img->nzombies; i++) {
		const struct ckpt_zombie *z = &img->zombies[i];
		if (z->pid <= 1 || z->pid == img->hdr.pid)
			return fail(err, errlen, "section ZOMBIES: entry %u has bad pid %d", i,
				    z->pid);
	}
	if (img->nzombies &&
	    !distinct_i32(&img->zombies[0].pid, img->nzombies, sizeof *img->zombies))
		return fail(err, errlen, "section ZOMBIES: a pid appears twice");
	for (uint32_t i = 0; i < img->nshares; i++) {
		const struct ckpt_fd_share *sh = &img->shares[i];
		int known = 0;
		for (uint32_t k = 0; k < img->nfds && !known; k++)
			known = img->fds[k].fd == sh->fd;
		if (!known || sh->owner_pid <= 0 || sh->owner_fd < 0 || sh->reserved ||
		    (sh->owner_pid == img->hdr.pid && sh->owner_fd >= sh->fd) ||
		    sh->owner_pid > img->hdr.pid)
			return fail(
			    err, errlen,
			    "section FD_SHARES: entry %u (fd %d, held first by pid %d fd %d) "
			    "is inconsistent",
			    i, sh->fd, sh->owner_pid, sh->owner_fd);
	}
	for (uint32_t i = 0; i < img->nlocks; i++) {
		const struct ckpt_lock *l = &img->locks[i];
		int known = 0;
		for (uint32_t k = 0; k < img->nfds && !known; k++)
			known = img->fds[k].fd == l->fd;
		if (!known || l->kind < CKPT_LOCK_FLOCK || l->kind > CKPT_LOCK_OFD ||
		    l->write > 1 || l->reserved || l->start < 0 ||
		    (l->end != -1 && l->end < l->start))
			return fail(err, errlen, "section LOCKS: entry %u (fd %d) is inconsistent",
				    i, l->fd);
	}
	return 0;
}

static int has_thread(const struct ckpt_image *img, int32_t tid)
{
	for (uint32_t k = 0; k < img->nthreads; k++)
		if (img->threads[k].tid == tid)
			return 1;
	return 0;
}

static int time_ok(int64_t sec, int64_t nsec)
{
	return sec >= 0 && nsec >= 0 && nsec < 1000000000;
}

/* At most one interval timer of each kind; a POSIX timer has a distinct
 * id, a notification the kernel accepts, and a thread of this process
 * when it signals one. */
static int check_timers(const struct ckpt_image *img, char *err, size_t errlen)
{
	for (uint32_t i = 0; i < img->ntimers; i++) {
		const struct ckpt_timer *t = &img->timers[i];
		int ok = t->kind >= CKPT_TIMER_REAL && t->kind <= CKPT_TIMER_POSIX &&
			 time_ok(t->value_sec, t->value_nsec) &&
			 time_ok(t->interval_sec, t->interval_nsec);
		if (ok && t->kind == CKPT_TIMER_POSIX) {
			ok = t->id >= 0 && t->signo >= 0 && t->signo <= CKPT_NSIG &&
			     (t->notify == 0 || t->notify == 1 || t->notify == 2 ||
			      t->notify == 4) &&
			     (t->notify == 1 || t->signo > 0);
			ok = ok && (t->notify != 4 || has_thread(img, t->notify_tid));
		} else if (ok) {
			ok = !t->id && !t->clockid && !t->signo && !t->notify && !t->notify_tid &&
			     !t->sigval;
		}
		for (uint32_t k = 0; k < i && ok; k++)
			ok = img->timers[k].kind != t->kind ||
			     (t->kind == CKPT_TIMER_POSIX && img->timers[k].id != t->id);
		if (!ok)
			return fail(err, errlen,
				    "section TIMERS: entry %u (kind %u, id %d) is inconsistent", i,
				    t->kind, t->id);
	}
	return 0;
}

/* Each pending signal names a signal, a thread of this image or the
 * process, and carries its own number in its siginfo. */
static int check_siginfo(const struct ckpt_image *img, char *err, size_t errlen)
{
	for (uint32_t i = 0; i < img->nsiginfo; i++) {
		const struct ckpt_siginfo *s = &img->siginfo[i];
		int32_t in_info;
		memcpy(&in_info, s->info, sizeof in_info);
		int ok = s->signo >= 1 && s->signo <= CKPT_NSIG && in_info == (int32_t)s->signo;
		if (!ok || (s->tid != 0 && !has_thread(img, s->tid)))
			return fail(err, errlen,
				    "section SIGINFO: entry %u (signal %u for %d) is inconsistent",
				    i, s->signo, s->tid);
	}
	return 0;
}

/* A thread of the image, once (sorted, not compared pairwise: the count
 * comes from the file); what it says is set; a CPU set not empty. */
static int check_sched(const struct ckpt_image *img, char *err, size_t errlen)
{
	for (uint32_t i = 0; i < img->nsched; i++) {
		const struct ckpt_thread_sched *s = &img->sched[i];
		int any_cpu = 0;
		for (unsigned b = 0; b < CKPT_CPUSET_BYTES; b++)
			any_cpu |= s->cpus[b] != 0;
		int ok = has_thread(img, s->tid) && s->flags &&
			 !(s->flags & ~(uint32_t)(CKPT_SCHED_AFFINITY | CKPT_SCHED_NICE)) &&
			 !s->reserved && (!(s->flags & CKPT_SCHED_AFFINITY) || any_cpu) &&
			 (!(s->flags & CKPT_SCHED_NICE) || (s->nice >= -20 && s->nice <= 19));
		if (!ok)
			return fail(err, errlen,
				    "section THREAD_SCHED: entry %u (thread %d) is inconsistent", i,
				    s->tid);
	}
	if (img->nsched && !distinct_i32(&img->sched[0].tid, img->nsched, sizeof *img->sched))
		return fail(err, errlen, "section THREAD_SCHED: a thread appears twice");
	return 0;
}

static int check_all(const struct ckpt_image *img, char *err, size_t errlen)
{
	if (check_strings(img, err, errlen) < 0 || check_process(img, err, errlen) < 0 ||
	    check_threads(img, err, errlen) < 0 || check_areas(img, err, errlen) < 0 ||
	    check_fds(img, err, errlen) < 0 || check_tree(img, err, errlen) < 0 ||
	    check_timers(img, err, errlen) < 0 || check_siginfo(img, err, errlen) < 0 ||
	    check_shared_files(img, err, errlen) < 0 || check_sched(img, err, errlen) < 0)
		return -1;
	return 0;
}

static int open_fd(struct ckpt_image *img, const char *path, char *err, size_t errlen)
{
	struct stat st;

	img->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (img->fd < 0)
		return fail(err, errlen, "cannot open %s: %s", path, strerror(errno));
	if (fstat(img->fd, &st) < 0)
		return fail(err, errlen, "cannot stat %s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail(err, errlen, "%s is not a regular file", path);
	img->file_size = (uint64_t)st.st_size;
	if (img->file_size < HDR_SIZE)
		return fail(err, errlen,
			    "image truncated: the header needs %llu bytes but the file has %llu",
			    (unsigned long long)HDR_SIZE, (unsigned long long)img->file_size);
	if (read_at(img->fd, &img->hdr, HDR_SIZE, 0) < 0)
		return fail(err, errlen, "cannot read the image header of %s", path);
	return 0;
}

static int check_index(struct ckpt_image *img, char *err, size_t errlen);

struct ckpt_image *ckpt_image_open(const char *path, char *err, size_t errlen)
{
	struct ckpt_image *img = calloc(1, sizeof *img);

	if (!img) {
		fail(err, errlen, "out of memory");
		return NULL;
	}
	img->fd = -1;
	img->direct_fd = -1;
	img->path = strdup(path);
	if (!img->path) {
		free(img);
		fail(err, errlen, "out of memory");
		return NULL;
	}
	if (open_fd(img, path, err, errlen) < 0 || check_header(img, err, errlen) < 0 ||
	    load_all(img, err, errlen) < 0 || check_all(img, err, errlen) < 0 ||
	    check_index(img, err, errlen) < 0) {
		ckpt_image_close(img);
		return NULL;
	}
	return img;
}

void ckpt_image_close(struct ckpt_image *img)
{
	if (!img)
		return;
	if (img->fd >= 0)
		close(img->fd);
	ckpt_image_direct_close(img);
	free(img->threads);
	free(img->areas);
	free(img->fds);
	free(img->zombies);
	free(img->shares);
	free(img->locks);
	free(img->timers);
	free(img->siginfo);
	free(img->shared_files);
	free(img->sched);
	free(img->index);
	free(img->strings);
	free(img->fd_data);
	free(img->refs);
	free(img->path);
	free(img);
}

const char *ckpt_image_string(const struct ckpt_image *img, uint32_t off)
{
	if (off == 0 || off >= img->strings_len)
		return "";
	return img->strings + off;
}

/* ---- page chunks ---- */

/* State of the walk over PAGES: chunks must come in (area, address) order
 * without overlapping, which also lets the per-area page counts be checked
 * against ckpt_area.pages_saved without allocating. */
struct walk {
	struct ckpt_image *img;
	uint32_t index;	     /* chunk number */
	uint32_t area;	     /* area of the previous chunk */
	uint64_t prev_end;   /* end address of the previous chunk */
	uint64_t area_pages; /* pages seen so far in area */
	char *scratch;	     /* for chunks read only to be verified */
	/* the bytes of PAGES at [win_off, win_off + win_len): headers,
	 * padding and small chunks come from one read per WINDOW_SIZE */
	char *win;
	uint64_t win_off, win_len;
	char *zin, *zout; /* compressed chunk data, and its pages when only verified */
	ZSTD_DCtx *dctx;
	int stored_only; /* verifying: a compressed chunk's stored bytes suffice */
	/* parallel reading: the walk only checks the layout and lists the
	 * chunks; threads then read and check them (read_pages_parallel) */
	int listing;
	struct chunk_job *jobs;
	uint32_t njobs, capjobs;
	char *err;
	size_t errlen;
};

/* Consecutive small chunks of the file, read with one system call. */
struct batch {
	uint32_t first, count;
};
#define BATCH_CHUNK_MAX (64u << 10) /* a chunk this large or larger is read alone */
#define BATCH_SPAN_MAX (1u << 20)
#define BATCH_JOBS_MAX 1024u

struct chunk_job {
	struct ckpt_page_chunk c;
	uint64_t data; /* file offset of the pages or of the frame */
	uint32_t zlen; /* 0: raw */
	uint32_t index;
};

static int matches_index(struct walk *w, const struct ckpt_page_chunk *c, uint64_t pos,
			 uint32_t zlen);

/* Advice only: a failure changes nothing but speed. */
static void drop_read(const struct ckpt_image *img, uint64_t offset, uint64_t len)
{
	if (img->drop_after_read)
		(void)posix_fadvise(img->fd, (off_t)offset, (off_t)len, POSIX_FADV_DONTNEED);
}

static void walk_free(struct walk *w)
{
	free(w->jobs);
	free(w->scratch);
	free(w->zin);
	free(w->zout);
	ZSTD_freeDCtx(w->dctx);
}

/* The len bytes of PAGES at off, from the window (moved on to off first if
 * they are not in it), or NULL if they do not fit in one or cannot be read
 * (the caller then reads them itself, and reports what went wrong). A walk
 * reads in file order, so a window read once serves the chunks after. Not
 * while listing: that reads the headers only, which lie a chunk apart. */
static const char *walk_at(struct walk *w, uint64_t off, uint64_t len)
{
	uint64_t end = w->img->pages->offset + w->img->pages->length;
	if (w->listing || len > WINDOW_SIZE || off < w->img->pages->offset || off > end ||
	    len > end - off)
		return NULL;
	if (w->win && off >= w->win_off && off + len <= w->win_off + w->win_len)
		return w->win + (off - w->win_off);
	/* one per thread, kept: a fresh buffer would cost a page fault per
	 * page for each walk (a verification after every checkpoint) */
	static __thread char *window;
	if (!window && !(window = malloc(WINDOW_SIZE)))
		return NULL;
	w->win = window;
	/* the walk has gone past the old window: its pages are read */
	if (w->win_len && off > w->win_off)
		drop_read(w->img, w->win_off, off - w->win_off);
	/* what the window holds from off on is kept, the rest read */
	uint64_t keep = 0;
	if (off >= w->win_off && off < w->win_off + w->win_len) {
		keep = w->win_off + w->win_len - off;
		memmove(w->win, w->win + (off - w->win_off), keep);
	}
	uint64_t n = end - off < WINDOW_SIZE ? end - off : WINDOW_SIZE;
	w->win_off = off;
	w->win_len = 0;
	if (read_at(w->img->fd, w->win + keep, n - keep, off + keep) < 0)
		return NULL;
	w->win_len = n;
	return w->win;
}

static int walk_read(struct walk *w, void *dst, uint64_t len, uint64_t off)
{
	const char *p = walk_at(w, off, len);
	if (!p)
		return read_at(w->img->fd, dst, len, off);
	memcpy(dst, p, len);
	return 0;
}

static int walk_zeros(struct walk *w, uint64_t len, uint64_t off)
{
	const char *p = len >= CKPT_PAGE_SIZE ? NULL : walk_at(w, off, len);
	return p ? all_zero(p, len) : zero_at(w->img->fd, len, off);
}

/* The chunk, in order, counts for its area (page count and order checks). */
static void counted(struct walk *w, const struct ckpt_page_chunk *c)
{
	w->prev_end = c->addr + (uint64_t)c->npages * CKPT_PAGE_SIZE;
	w->area_pages += c->npages;
}

/* In listing mode: the chunk counts for its area now (its checksum is
 * checked by a thread later). */
static int defer_chunk(struct walk *w, const struct ckpt_page_chunk *c, uint64_t data,
		       uint32_t zlen)
{
	if (w->njobs == w->capjobs) {
		uint32_t cap = w->capjobs ? 2 * w->capjobs : 1024;
		struct chunk_job *j = realloc(w->jobs, cap * sizeof *j);
		if (!j)
			return fail(w->err, w->errlen, "out of memory");
		w->jobs = j;
		w->capjobs = cap;
	}
	w->jobs[w->njobs++] = (struct chunk_job){*c, data, zlen, w->index};
	counted(w, c);
	return 0;
}

/* Areas [w->area, upto) are complete: their page counts must match. */
static int close_areas(struct walk *w, uint32_t upto)
{
	for (; w->area < upto; w->area++, w->area_pages = 0)
		if (w->img->areas[w->area].pages_saved != w->area_pages)
			return fail(w->err, w->errlen,
				    "section PAGES: area %u has %llu pages saved, AREAS says %llu",
				    w->area, (unsigned long long)w->area_pages,
				    (unsigned long long)w->img->areas[w->area].pages_saved);
	return 0;
}

static int check_chunk(struct walk *w, const struct ckpt_page_chunk *c, uint64_t pos)
{
	const struct ckpt_image *img = w->img;
	const struct ckpt_area *a = c->area < img->nareas ? &img->areas[c->area] : NULL;
	uint64_t len = (uint64_t)c->npages * CKPT_PAGE_SIZE;

	if (c->magic != CKPT_CHUNK_MAGIC && c->magic != CKPT_ZCHUNK_MAGIC &&
	    c->magic != CKPT_RCHUNK_MAGIC)
		return fail(w->err, w->errlen, "page chunk %u at byte %llu has a bad magic",
			    w->index, (unsigned long long)pos);
	if (!a || c->area < w->area || (c->area == w->area && c->addr < w->prev_end))
		return fail(w->err, w->errlen,
			    "page chunk %u (area %u) has a bad area index or is out of order",
			    w->index, c->area);
	if (c->npages == 0 || c->addr % CKPT_PAGE_SIZE || c->addr < a->start || c->addr > a->end ||
	    len > a->end - c->addr)
		return fail(w->err, w->errlen,
			    "page chunk %u (area %u, address 0x%llx, %u pages) is outside its area",
			    w->index, c->area, (unsigned long long)c->addr, c->npages);
	if (a->kind == CKPT_AREA_FILE_SHARED || a->kind == CKPT_AREA_VDSO ||
	    a->kind == CKPT_AREA_VVAR)
		return fail(w->err, w->errlen, "page chunk %u: area %u does not save pages",
			    w->index, c->area);
	return 0;
}

/* Read len bytes at off into dst (with dst NULL, only look at them) and
 * return them folded into crc. */
static int read_data(struct walk *w, char *dst, uint64_t len, uint64_t off, uint32_t *crc)
{
	while (len) {
		/* what the window holds of it is taken from there, the rest
		 * read into it a window at a time (moving nothing) */
		uint64_t n = len < WINDOW_SIZE ? len : WINDOW_SIZE;
		if (w->win && off >= w->win_off && off < w->win_off + w->win_len &&
		    n > w->win_off + w->win_len - off)
			n = w->win_off + w->win_len - off;
		const char *in = walk_at(w, off, n);
		if (!in)
			break;
		if (dst) {
			memcpy(dst, in, n);
			dst += n;
		}
		*crc = crc32c_update(*crc, in, n);
		off += n;
		len -= n;
	}
	if (len && !dst && !w->scratch && !(w->scratch = malloc(SCRATCH_SIZE)))
		return -1;
	while (len) {
		uint64_t n = dst ? len : (len < SCRATCH_SIZE ? len : SCRATCH_SIZE);
		char *p = dst ? dst : w->scratch;
		if (read_at(w->img->fd, p, n, off) < 0)
			return -1;
		*crc = crc32c_update(*crc, p, n);
		off += n;
		len -= n;
	}
	return 0;
}

/* The checksum of a chunk header, as written: with its crc field 0. */
static uint32_t header_crc(const struct ckpt_page_chunk *c)
{
	struct ckpt_page_chunk h = *c;
	h.crc = 0;
	return crc32c_update(0, &h, sizeof h);
}

/* A chunk whose pages were read (and checksummed into crc): it must match,
 * then it counts for its area and the order checks. */
static int chunk_checked(struct walk *w, const struct ckpt_page_chunk *c, uint32_t crc,
			 uint32_t want)
{
	if (!CRC_OK(crc, want))
		return fail(w->err, w->errlen,
			    "page chunk %u (area %u, address 0x%llx) checksum mismatch", w->index,
			    c->area, (unsigned long long)c->addr);
	counted(w, c);
	return 0;
}

/* Verify (and deliver) the chunk whose header is at pos; *next is set to
 * the first byte after its data. */
static int do_chunk(struct walk *w, uint64_t pos, ckpt_chunk_dest_fn dest, void *arg,
		    uint64_t *next)
{
	struct ckpt_page_chunk c;
	uint64_t end = w->img->pages->offset + w->img->pages->length;

	if (walk_read(w, &c, CHUNK_HDR, pos) < 0)
		return fail(w->err, w->errlen, "cannot read page chunk %u", w->index);
	if (c.magic != CKPT_CHUNK_MAGIC)
		return fail(w->err, w->errlen, "page chunk %u at byte %llu has a bad magic",
			    w->index, (unsigned long long)pos);
	if (check_chunk(w, &c, pos) < 0 || close_areas(w, c.area) < 0 ||
	    matches_index(w, &c, pos, 0) < 0)
		return -1;
	uint64_t len = (uint64_t)c.npages * CKPT_PAGE_SIZE;
	if (len > end - pos - CHUNK_HDR)
		return fail(w->err, w->errlen,
			    "page chunk %u (area %u, address 0x%llx) runs past the end of section "
			    "PAGES",
			    w->index, c.area, (unsigned long long)c.addr);
	if (w->listing) {
		*next = pos + CHUNK_HDR + len;
		return defer_chunk(w, &c, pos + CHUNK_HDR, 0);
	}
	uint32_t want = c.crc, crc = header_crc(&c);
	char *dst = dest ? dest(arg, &c) : NULL;
	if (read_data(w, dst, len, pos + CHUNK_HDR, &crc) < 0)
		return fail(w->err, w->errlen, "cannot read page chunk %u data", w->index);
	*next = pos + CHUNK_HDR + len;
	return chunk_checked(w, &c, crc, want);
}

/* Chunk headers sit so that their data start 4096-aligned in the file. */
static uint64_t chunk_pos(uint64_t pos)
{
	return pos + (CKPT_PAGE_SIZE - (pos + CHUNK_HDR) % CKPT_PAGE_SIZE) % CKPT_PAGE_SIZE;
}

/* A compressed chunk at pos: 4-byte length, 4 zero bytes, one zstd frame
 * that must expand to exactly npages pages. */
static int do_zchunk(struct walk *w, uint64_t pos, ckpt_chunk_dest_fn dest, void *arg,
		     uint64_t *next)
{
	struct ckpt_page_chunk c;
	uint32_t zl[2];
	uint64_t end = w->img->pages->offset + w->img->pages->length;

	if (end - pos < CHUNK_HDR + sizeof zl || walk_read(w, &c, CHUNK_HDR, pos) < 0 ||
	    walk_read(w, zl, sizeof zl, pos + CHUNK_HDR) < 0)
		return fail(w->err, w->errlen, "cannot read page chunk %u", w->index);
	if (check_chunk(w, &c, pos) < 0 || close_areas(w, c.area) < 0)
		return -1;
	uint64_t len = (uint64_t)c.npages * CKPT_PAGE_SIZE, data = pos + CHUNK_HDR + sizeof zl;
	if (c.npages > CKPT_ZCHUNK_MAX_PAGES || zl[1] != 0 || zl[0] == 0 || zl[0] > end - data)
		return fail(w->err, w->errlen,
			    "page chunk %u (area %u, address 0x%llx): bad compressed length %u",
			    w->index, c.area, (unsigned long long)c.addr, zl[0]);
	if (matches_index(w, &c, pos, zl[0]) < 0)
		return -1;
	if (w->listing) {
		*next = data + zl[0];
		return defer_chunk(w, &c, data, zl[0]);
	}
	if (!w->zin &&
	    !(w->zin = malloc(ZSTD_compressBound(CKPT_ZCHUNK_MAX_PAGES * CKPT_PAGE_SIZE))))
		return fail(w->err, w->errlen, "out of memory");
	if (!w->dctx && !(w->dctx = ZSTD_createDCtx()))
		return fail(w->err, w->errlen, "out of memory");
	uint32_t want = c.crc, crc = header_crc(&c);
	char *dst = dest ? dest(arg, &c) : NULL;
	if (!dst && !w->zout && !(w->zout = malloc(CKPT_ZCHUNK_MAX_PAGES * CKPT_PAGE_SIZE)))
		return fail(w->err, w->errlen, "out of memory");
	if (!dst)
		dst = w->zout;
	if (walk_read(w, w->zin, zl[0], data) < 0)
		return fail(w->err, w->errlen, "cannot read page chunk %u data", w->index);
	int stored_crc = w->img->hdr.format_version != CKPT_FORMAT_VERSION_V2;
	if (stored_crc) {
		/* checked before decoding: zstd never sees bytes that changed */
		crc = crc32c_update(crc32c_update(crc, zl, sizeof zl), w->zin, zl[0]);
		if (!CRC_OK(crc, want) || (w->stored_only && !dest)) {
			/* the bytes are those written: they decode as they did */
			*next = data + zl[0];
			return chunk_checked(w, &c, crc, want);
		}
	}
	size_t got = ZSTD_decompressDCtx(w->dctx, dst, len, w->zin, zl[0]);
	if (ZSTD_isError(got) || got != len)
		return fail(
		    w->err, w->errlen,
		    "page chunk %u (area %u, address 0x%llx): compressed data are damaged (%s)",
		    w->index, c.area, (unsigned long long)c.addr,
		    ZSTD_isError(got) ? ZSTD_getErrorName(got) : "wrong size");
	*next = data + zl[0];
	return chunk_checked(w, &c, stored_crc ? crc : crc32c_update(crc, dst, len), want);
}

/* A reference chunk, listed in img->refs; it counts for its area. */
static int add_ref(struct walk *w, const struct ckpt_page_chunk *c)
{
	struct ckpt_image *img = w->img;
	if (img->nrefs == img->caprefs) {
		uint32_t cap = img->caprefs ? 2 * img->caprefs : 256;
		struct ckpt_page_chunk *r = realloc(img->refs, cap * sizeof *r);
		if (!r)
			return fail(w->err, w->errlen, "out of memory");
		img->refs = r;
		img->caprefs = cap;
	}
	img->refs[img->nrefs++] = *c;
	counted(w, c);
	return 0;
}

/* A reference chunk at pos: a header only. Its pages come from the
 * parent generation's image; the walk lists it in img->refs. */
static int do_rchunk(struct walk *w, uint64_t pos, uint64_t *next)
{
	struct ckpt_image *img = w->img;
	struct ckpt_page_chunk c;
	uint64_t end = img->pages->offset + img->pages->length;

	if (end - pos < CHUNK_HDR || walk_read(w, &c, CHUNK_HDR, pos) < 0)
		return fail(w->err, w->errlen, "cannot read page chunk %u", w->index);
	if (check_chunk(w, &c, pos) < 0 || close_areas(w, c.area) < 0)
		return -1;
	if (!img->hdr.parent_generation)
		return fail(w->err, w->errlen,
			    "page chunk %u refers to a parent generation, the image has none",
			    w->index);
	if (!CRC_OK(header_crc(&c), c.crc))
		return fail(w->err, w->errlen,
			    "page chunk %u (area %u, address 0x%llx) checksum mismatch", w->index,
			    c.area, (unsigned long long)c.addr);
	if (matches_index(w, &c, pos, 0) < 0 || add_ref(w, &c) < 0)
		return -1;
	*next = pos + CHUNK_HDR;
	return 0;
}

/* Next chunk header at or after pos: a compressed or reference chunk sits
 * at the next 8-byte boundary, an uncompressed one where its data start
 * 4096-aligned; in between there are only zeros. Returns the magic of an
 * 8-aligned chunk, 0 for the raw rule. */
static uint32_t next_chunk(struct walk *w, uint64_t pos, uint64_t end, uint64_t *at)
{
	uint64_t at8 = (pos + 7) & ~7ull;
	uint32_t magic = 0;
	int refs = w->img->hdr.format_version >= CKPT_FORMAT_VERSION_V4;
	if (at8 + 4 <= end && walk_read(w, &magic, 4, at8) == 0 &&
	    (magic == CKPT_ZCHUNK_MAGIC || (refs && magic == CKPT_RCHUNK_MAGIC)) &&
	    walk_zeros(w, at8 - pos, pos)) {
		*at = at8;
		return magic;
	}
	*at = chunk_pos(pos);
	return 0;
}

/* ---- PAGE_INDEX ----
 * The entries must describe exactly the chunks the rules of PAGES would
 * find: the same count, each at the position its kind gives after the
 * previous one (8-aligned, or with its data 4096-aligned), in area and
 * address order, inside their areas, with the areas' page counts, the
 * last one ending the section. What only the chunk headers in the file
 * can confirm (that they equal their entries, padding zero) is checked by
 * the full walk. */
static int entry_span(const struct ckpt_image *img, const struct ckpt_chunk_entry *e, uint64_t *len)
{
	const struct ckpt_page_chunk *c = &e->chunk;
	if (e->reserved)
		return -1;
	switch (c->magic) {
	case CKPT_CHUNK_MAGIC:
		*len = CHUNK_HDR + (uint64_t)c->npages * CKPT_PAGE_SIZE;
		return e->zlen ? -1 : 0;
	case CKPT_ZCHUNK_MAGIC:
		*len = CHUNK_HDR + 8 + (uint64_t)e->zlen;
		return e->zlen && c->npages <= CKPT_ZCHUNK_MAX_PAGES ? 0 : -1;
	case CKPT_RCHUNK_MAGIC:
		*len = CHUNK_HDR;
		return e->zlen || !img->hdr.parent_generation || !CRC_OK(header_crc(c), c->crc) ? -1
												: 0;
	default:
		return -1;
	}
}

static int check_index(struct ckpt_image *img, char *err, size_t errlen)
{
	if (!img->index)
		return 0;
	const struct ckpt_section *s = img->pages;
	if (!s || img->nindex != s->count)
		return fail(err, errlen, "section PAGE_INDEX has %u entries for %u page chunks",
			    img->nindex, s ? s->count : 0);
	struct walk w = {.img = img, .err = err, .errlen = errlen};
	uint64_t pos = s->offset, end = s->offset + s->length;
	for (; w.index < img->nindex; w.index++) {
		const struct ckpt_chunk_entry *e = &img->index[w.index];
		uint64_t len = 0, at = e->chunk.magic == CKPT_CHUNK_MAGIC ? chunk_pos(pos)
									  : (pos + 7) & ~7ull;
		if (e->chunk.magic == CKPT_RCHUNK_MAGIC && !img->hdr.parent_generation)
			return fail(err, errlen,
				    "page chunk %u refers to a parent generation, the image has "
				    "none",
				    w.index);
		if (entry_span(img, e, &len) < 0 || e->offset != at || at > end || len > end - at)
			return fail(err, errlen,
				    "section PAGE_INDEX: entry %u does not describe a page chunk "
				    "of section PAGES",
				    w.index);
		if (check_chunk(&w, &e->chunk, at) < 0 || close_areas(&w, e->chunk.area) < 0)
			return -1;
		counted(&w, &e->chunk);
		pos = at + len;
	}
	if (pos != end)
		return fail(err, errlen,
			    "section PAGE_INDEX: its chunks end at byte %llu, section PAGES at "
			    "%llu",
			    (unsigned long long)pos, (unsigned long long)end);
	return close_areas(&w, img->nareas);
}

/* Listing from the index: no chunk header is read. */
static int list_from_index(struct walk *w)
{
	struct ckpt_image *img = w->img;
	for (w->index = 0; w->index < img->nindex; w->index++) {
		const struct ckpt_chunk_entry *e = &img->index[w->index];
		const struct ckpt_page_chunk *c = &e->chunk;
		if (c->magic == CKPT_RCHUNK_MAGIC) {
			if (add_ref(w, c) < 0)
				return -1;
			continue;
		}
		uint64_t data = e->offset + CHUNK_HDR + (e->zlen ? 8 : 0);
		if (defer_chunk(w, c, data, e->zlen) < 0)
			return -1;
	}
	return 0;
}

/* A full walk: the header found at pos must be its entry's. */
static int matches_index(struct walk *w, const struct ckpt_page_chunk *c, uint64_t pos,
			 uint32_t zlen)
{
	const struct ckpt_image *img = w->img;
	if (!img->index)
		return 0;
	const struct ckpt_chunk_entry *e = w->index < img->nindex ? &img->index[w->index] : NULL;
	if (!e || e->offset != pos || e->zlen != zlen || memcmp(&e->chunk, c, sizeof *c) != 0)
		return fail(w->err, w->errlen,
			    "page chunk %u at byte %llu differs from its PAGE_INDEX entry",
			    w->index, (unsigned long long)pos);
	return 0;
}

static int walk_pages(struct walk *w, ckpt_chunk_dest_fn dest, void *arg)
{
	const struct ckpt_section *s = w->img->pages;
	uint64_t pos = s->offset, end = s->offset + s->length;

	w->img->nrefs = 0;
	if (w->listing && w->img->index)
		return list_from_index(w);
	while (pos < end) {
		uint64_t at;
		uint32_t magic = next_chunk(w, pos, end, &at);
		if (magic) {
			if ((magic == CKPT_RCHUNK_MAGIC ? do_rchunk(w, at, &pos)
							: do_zchunk(w, at, dest, arg, &pos)) < 0)
				return -1;
			w->index++;
			continue;
		}
		if (at > end || end - at < CHUNK_HDR || !walk_zeros(w, at - pos, pos))
			return fail(
			    w->err, w->errlen,
			    "section PAGES: bad padding or stray bytes before page chunk %u "
			    "at byte %llu",
			    w->index, (unsigned long long)pos);
		if (do_chunk(w, at, dest, arg, &pos) < 0)
			return -1;
		w->index++;
	}
	if (w->index != s->count)
		return fail(w->err, w->errlen,
			    "section PAGES holds %u page chunks, the section table says %u",
			    w->index, s->count);
	return close_areas(w, w->img->nareas);
}

int ckpt_image_read_pages(struct ckpt_image *img, ckpt_chunk_dest_fn dest, void *arg, char *err,
			  size_t errlen)
{
	struct walk w = {.img = img, .err = err, .errlen = errlen};

	img->nrefs = 0;
	if (!img->pages)
		return close_areas(&w, img->nareas);
	int r = walk_pages(&w, dest, arg);
	walk_free(&w);
	return r;
}

/* ---- reading pages with several threads ----
 * The walk checks the layout and lists the chunks; each thread then takes
 * chunks in turn, reads (and decompresses) them into their destination and
 * checks their checksums. The first failure is reported. */
struct par {
	struct walk *w;
	ckpt_chunk_dest_fn dest;
	ckpt_chunk_got_fn got; /* bounced reading: chunks go through a buffer */
	void *arg;
	struct batch *batches; /* what a thread takes in turn */
	uint32_t nbatches;
	_Atomic uint32_t next;
	_Atomic int failed;
	pthread_mutex_t lock;
};

/* The chunk's header as read from the file (and a compressed chunk's
 * length words after it) equal the job's PAGE_INDEX entry. */
static int as_indexed(const char *head, const struct chunk_job *j)
{
	uint32_t zl[2];
	if (memcmp(head, &j->c, CHUNK_HDR) != 0)
		return 0;
	if (!j->zlen)
		return 1;
	memcpy(zl, head + CHUNK_HDR, sizeof zl);
	return zl[0] == j->zlen && zl[1] == 0;
}

static void par_fail(struct par *p, const char *fmt, const struct chunk_job *j, const char *why)
{
	pthread_mutex_lock(&p->lock);
	if (!atomic_load(&p->failed))
		fail(p->w->err, p->w->errlen, fmt, j->index, j->c.area,
		     (unsigned long long)j->c.addr, why);
	atomic_store(&p->failed, 1);
	pthread_mutex_unlock(&p->lock);
}

static int par_check(struct par *p, const struct chunk_job *j, char *dst, char **zin,
		     ZSTD_DCtx **dctx, const char *mem);

/* One chunk: into its destination, or (bounced reading) into the thread's
 * buffer, handed to got once checked. */
static int par_one(struct par *p, const struct chunk_job *j, char **zin, ZSTD_DCtx **dctx,
		   char **bounce, const char *mem)
{
	if (!j->c.magic)
		return 0; /* taken by map: the caller maps its pages from the file */
	char *dst = p->dest(p->arg, &j->c);
	if (!dst)
		return 0; /* not wanted (its layout was checked) */
	if (!p->got || dst != CKPT_CHUNK_BOUNCE)
		return par_check(p, j, dst, zin, dctx, mem);
	uint64_t len = (uint64_t)j->c.npages * CKPT_PAGE_SIZE;
	/* chunks are at most 16 MiB (compressed) or, as written, 1 MiB (raw);
	 * a raw chunk of a foreign writer may be larger */
	char *buf = *bounce;
	if (len > BOUNCE_SIZE)
		buf = malloc(len);
	else if (!buf)
		buf = *bounce = malloc(BOUNCE_SIZE);
	if (!buf)
		return par_fail(p, "page chunk %u (area %u, address 0x%llx): %s", j,
				"out of memory"),
		       -1;
	int r = par_check(p, j, buf, zin, dctx, mem);
	if (r == 0)
		p->got(p->arg, &j->c, buf);
	if (buf != *bounce)
		free(buf);
	return r;
}

/* The bytes read and checked before a job's data: with PAGE_INDEX its
 * chunk header, and a compressed chunk's length words after it. */
static uint64_t job_head_len(const struct ckpt_image *img, const struct chunk_job *j)
{
	return img->index ? CHUNK_HDR + (j->zlen ? 2 * sizeof(uint32_t) : 0) : 0;
}

/* The n bytes of the job's data (its pages, or its frame) into buf, from
 * the file or, for a chunk of a batch, from mem (its bytes from the
 * header on, as in the file). Returns where the data are: buf, or in mem
 * itself when in_place allows (a frame is only decoded from there).
 * Chunks listed from PAGE_INDEX: the header before the data is read with
 * them and must equal the entry, as a full walk requires (the data are
 * checked against the entry's checksum). */
static const char *par_read(struct par *p, const struct chunk_job *j, char *buf, uint64_t n,
			    const char *mem, int in_place)
{
	struct ckpt_image *img = p->w->img;
	char head[CHUNK_HDR + 2 * sizeof(uint32_t)];
	uint64_t head_len = job_head_len(img, j);
	const char *data = buf;
	if (mem) {
		memcpy(head, mem, head_len);
		if (in_place)
			data = mem + head_len;
		else
			memcpy(buf, mem + head_len, n);
	} else if ((j->zlen || ckpt_image_direct_read(img, head, head_len, buf, n, j->data) != 0) &&
		   read_two_at(img->fd, head, head_len, buf, n, j->data - head_len) < 0) {
		par_fail(p, "cannot read page chunk %u (area %u, address 0x%llx)%s", j, "");
		return NULL;
	}
	if (head_len && !as_indexed(head, j)) {
		par_fail(p,
			 "page chunk %u (area %u, address 0x%llx) differs from its "
			 "PAGE_INDEX entry%s",
			 j, "");
		return NULL;
	}
	return data;
}

static int par_check(struct par *p, const struct chunk_job *j, char *dst, char **zin,
		     ZSTD_DCtx **dctx, const char *mem)
{
	struct ckpt_image *img = p->w->img;
	uint64_t len = (uint64_t)j->c.npages * CKPT_PAGE_SIZE;
	uint32_t crc = header_crc(&j->c);
	if (!j->zlen) {
		if (!par_read(p, j, dst, len, mem, 0))
			return -1;
		crc = crc32c_update(crc, dst, len);
		if (!mem)
			drop_read(img, j->data, len);
	} else {
		size_t cap = ZSTD_compressBound(CKPT_ZCHUNK_MAX_PAGES * CKPT_PAGE_SIZE);
		if ((!mem && !*zin && !(*zin = malloc(cap))) ||
		    (!*dctx && !(*dctx = ZSTD_createDCtx())))
			return par_fail(p, "page chunk %u (area %u, address 0x%llx): %s", j,
					"out of memory"),
			       -1;
		const char *frame = par_read(p, j, *zin, j->zlen, mem, 1);
		if (!frame)
			return -1;
		int stored = img->hdr.format_version != CKPT_FORMAT_VERSION_V2;
		if (stored) {
			uint32_t zl[2] = {j->zlen, 0};
			crc = crc32c_update(crc32c_update(crc, zl, sizeof zl), frame, j->zlen);
			if (!CRC_OK(crc, j->c.crc))
				return par_fail(p,
						"page chunk %u (area %u, address 0x%llx) checksum "
						"mismatch%s",
						j, ""),
				       -1;
		}
		if (!mem)
			drop_read(img, j->data, j->zlen);
		size_t got = ZSTD_decompressDCtx(*dctx, dst, len, frame, j->zlen);
		if (ZSTD_isError(got) || got != len)
			return par_fail(
				   p,
				   "page chunk %u (area %u, address 0x%llx): compressed data are "
				   "damaged (%s)",
				   j, ZSTD_isError(got) ? ZSTD_getErrorName(got) : "wrong size"),
			       -1;
		if (stored)
			return 0;
		crc = crc32c_update(crc, dst, len);
	}
	if (!CRC_OK(crc, j->c.crc))
		return par_fail(p, "page chunk %u (area %u, address 0x%llx) checksum mismatch%s", j,
				""),
		       -1;
	return 0;
}

/* The bytes of a batch's chunks, from the first one's header on. */
static uint64_t batch_from(const struct par *p, const struct chunk_job *j)
{
	return j->data - job_head_len(p->w->img, j);
}

static uint64_t job_end(const struct chunk_job *j)
{
	return j->data + (j->zlen ? j->zlen : (uint64_t)j->c.npages * CKPT_PAGE_SIZE);
}

/* Several small chunks, consecutive in the file: one read for all, then
 * each is checked and delivered from the buffer. */
static int par_batch(struct par *p, const struct batch *b, char **zin, ZSTD_DCtx **dctx,
		     char **bounce, char **span)
{
	const struct chunk_job *jobs = p->w->jobs + b->first;
	uint64_t from = batch_from(p, &jobs[0]), len = job_end(&jobs[b->count - 1]) - from;
	if (!*span && !(*span = malloc(BATCH_SPAN_MAX)))
		return par_fail(p, "page chunk %u (area %u, address 0x%llx): %s", &jobs[0],
				"out of memory"),
		       -1;
	if (read_at(p->w->img->fd, *span, len, from) < 0)
		return par_fail(p, "cannot read page chunk %u (area %u, address 0x%llx)%s",
				&jobs[0], ""),
		       -1;
	for (uint32_t i = 0; i < b->count; i++)
		if (par_one(p, &jobs[i], zin, dctx, bounce,
			    *span + (batch_from(p, &jobs[i]) - from)) < 0)
			return -1;
	drop_read(p->w->img, from, len);
	return 0;
}

static void *par_worker(void *arg)
{
	struct par *p = arg;
	char *zin = NULL, *bounce = NULL, *span = NULL;
	ZSTD_DCtx *dctx = NULL;
	for (;;) {
		uint32_t i = atomic_fetch_add(&p->next, 1);
		if (i >= p->nbatches || atomic_load(&p->failed))
			break;
		const struct batch *b = &p->batches[i];
		int r = b->count == 1
			    ? par_one(p, &p->w->jobs[b->first], &zin, &dctx, &bounce, NULL)
			    : par_batch(p, b, &zin, &dctx, &bounce, &span);
		if (r < 0)
			break;
	}
	free(zin);
	free(bounce);
	free(span);
	ZSTD_freeDCtx(dctx);
	return NULL;
}

/* Not mapped, small, and not to be read with O_DIRECT (a raw chunk of a
 * cold image goes straight to its place). */
static int batchable(const struct par *p, const struct chunk_job *j)
{
	return j->c.magic && (j->zlen || p->w->img->direct_fd < 0) &&
	       job_end(j) - batch_from(p, j) <= BATCH_CHUNK_MAX;
}

/* Small chunks are read in batches: one system call (and one drop from
 * the page cache) per batch instead of two per chunk. The scattered pages
 * of an incremental generation are thousands of one-page chunks, each a
 * read of 4 KiB; a system call costs microseconds in some VMs. */
static struct batch *make_batches(const struct par *p, uint32_t *nbatches)
{
	const struct walk *w = p->w;
	struct batch *b = malloc((w->njobs ? w->njobs : 1) * sizeof *b);
	if (!b)
		return NULL;
	uint32_t n = 0;
	for (uint32_t i = 0; i < w->njobs; i++) {
		const struct chunk_job *j = &w->jobs[i];
		int small = batchable(p, j);
		if (n && small && b[n - 1].count < BATCH_JOBS_MAX) {
			const struct chunk_job *first = &w->jobs[b[n - 1].first];
			const struct chunk_job *last = &w->jobs[i - 1];
			if (batchable(p, last) && batch_from(p, j) >= job_end(last) &&
			    batch_from(p, j) - job_end(last) < CKPT_PAGE_SIZE &&
			    job_end(j) - batch_from(p, first) <= BATCH_SPAN_MAX) {
				b[n - 1].count++;
				continue;
			}
		}
		b[n++] = (struct batch){i, 1};
	}
	*nbatches = n;
	return b;
}

static int read_parallel(struct ckpt_image *img, ckpt_chunk_map_fn map, ckpt_chunk_dest_fn dest,
			 ckpt_chunk_got_fn got, void *arg, int nthreads, char *err, size_t errlen)
{
	struct walk w = {.img = img, .err = err, .errlen = errlen, .listing = 1};
	img->nrefs = 0;
	if (!img->pages)
		return close_areas(&w, img->nareas);
	if (walk_pages(&w, NULL, NULL) < 0) {
		walk_free(&w);
		return -1;
	}
	/* offered in file order, from this thread, before any data is read */
	for (uint32_t i = 0; map && i < w.njobs; i++)
		if (!w.jobs[i].zlen && map(arg, &w.jobs[i].c, w.jobs[i].data))
			w.jobs[i].c.magic = 0;
	struct par p = {.w = &w, .dest = dest, .got = got, .arg = arg};
	/* O_DIRECT reads have no read-ahead: a request in flight per thread */
	if (img->drop_after_read)
		ckpt_image_direct_open(img);
	if (!(p.batches = make_batches(&p, &p.nbatches))) {
		walk_free(&w);
		ckpt_image_direct_close(img);
		return fail(err, errlen, "out of memory");
	}
	pthread_mutex_init(&p.lock, NULL);
	if (img->direct_fd >= 0 && nthreads < 4)
		nthreads = 4;
	if (nthreads > 16)
		nthreads = 16;
	pthread_t t[16];
	int started = 0;
	for (int i = 1; i < nthreads; i++)
		if (pthread_create(&t[started], NULL, par_worker, &p) == 0)
			started++;
	par_worker(&p);
	for (int i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	pthread_mutex_destroy(&p.lock);
	free(p.batches);
	walk_free(&w);
	ckpt_image_direct_close(img);
	return atomic_load(&p.failed) ? -1 : 0;
}

/* Records of PAGE_HASHES and PAGE_RUNS: ascending, page-aligned, not
 * overlapping. *next is the first address the next record may have. */
static int hash_in_order(const void *rec, int first, uint64_t *next)
{
	const struct ckpt_page_hash *h = rec;
	if ((!first && h->addr < *next) || h->addr % CKPT_PAGE_SIZE || h->addr > UINT64_MAX - 4096)
		return -1;
	*next = h->addr + CKPT_PAGE_SIZE;
	return 0;
}

static int run_in_order(const void *rec, int first, uint64_t *next)
{
	const struct ckpt_page_run *r = rec;
	if ((!first && r->addr < *next) || r->addr % CKPT_PAGE_SIZE || !r->npages ||
	    r->npages > (UINT64_MAX - r->addr) / CKPT_PAGE_SIZE)
		return -1;
	*next = r->addr + r->npages * CKPT_PAGE_SIZE;
	return 0;
}

/* PAGE_HASHES and PAGE_RUNS are not needed to restore, but the next
 * incremental checkpoint trusts them: their checksums, sizes and order
 * are checked with the pages. */
static int check_records(struct ckpt_image *img, uint32_t type, uint64_t rec,
			 int (*in_order)(const void *, int, uint64_t *), char *err, size_t errlen)
{
	const struct ckpt_section *s = find_section(img, type);
	const char *name = ckpt_section_name(type);
	if (!s)
		return 0;
	if (s->length != (uint64_t)s->count * rec)
		return fail(err, errlen, "section %s: %llu bytes for %u records", name,
			    (unsigned long long)s->length, s->count);
	const uint64_t per_read = 4096 * rec;
	char *buf = malloc(per_read);
	if (!buf)
		return fail(err, errlen, "out of memory");
	uint32_t crc = 0;
	uint64_t next = 0;
	int first = 1;
	for (uint64_t done = 0; done < s->length;) {
		uint64_t n = s->length - done < per_read ? s->length - done : per_read;
		if (read_at(img->fd, buf, n, s->offset + done) < 0) {
			free(buf);
			return fail(err, errlen, "cannot read section %s", name);
		}
		crc = crc32c_update(crc, buf, n);
		for (uint64_t i = 0; i < n / rec; i++, first = 0)
			if (in_order(buf + i * rec, first, &next) < 0) {
				free(buf);
				return fail(err, errlen, "section %s: addresses out of order",
					    name);
			}
		done += n;
	}
	free(buf);
	if (!CRC_OK(crc, s->crc))
		return fail(err, errlen, "checksum mismatch in section %s", name);
	return 0;
}

static int check_hashes(struct ckpt_image *img, char *err, size_t errlen)
{
	if (check_records(img, CKPT_SEC_PAGE_HASHES, sizeof(struct ckpt_page_hash), hash_in_order,
			  err, errlen) < 0)
		return -1;
	return check_records(img, CKPT_SEC_PAGE_RUNS, sizeof(struct ckpt_page_run), run_in_order,
			     err, errlen);
}

int ckpt_image_read_pages_parallel(struct ckpt_image *img, ckpt_chunk_dest_fn dest, void *arg,
				   int nthreads, char *err, size_t errlen)
{
	return read_parallel(img, NULL, dest, NULL, arg, nthreads, err, errlen);
}

int ckpt_image_read_pages_bounced(struct ckpt_image *img, ckpt_chunk_dest_fn want,
				  ckpt_chunk_got_fn got, void *arg, int nthreads, char *err,
				  size_t errlen)
{
	return read_parallel(img, NULL, want, got, arg, nthreads, err, errlen);
}

int ckpt_image_read_pages_mapped(struct ckpt_image *img, ckpt_chunk_map_fn map,
				 ckpt_chunk_dest_fn want, ckpt_chunk_got_fn got, void *arg,
				 int nthreads, char *err, size_t errlen)
{
	return read_parallel(img, map, want, got, arg, nthreads, err, errlen);
}

int ckpt_image_check_pages(struct ckpt_image *img, int decode, char *err, size_t errlen)
{
	struct walk w = {.img = img,
			 .err = err,
			 .errlen = errlen,
			 .stored_only = !decode,
			 .listing = decode < 0};

	if (decode != CKPT_CHECK_LAYOUT && check_hashes(img, err, errlen) < 0)
		return -1;
	img->nrefs = 0;
	if (!img->pages)
		return close_areas(&w, img->nareas);
	int r = walk_pages(&w, NULL, NULL);
	walk_free(&w);
	return r;
}

static int verify_path(const char *path, int decode, char *err, size_t errlen)
{
	struct ckpt_image *img = ckpt_image_open(path, err, errlen);
	if (!img)
		return -1;
	/* Anything but `ckpt verify` (decode 1) checks a new image: its writer
	 * left it out of the page cache (it is read again only at a restart),
	 * and so does this reading, for the same reasons (writer.c,
	 * write-behind). Without its data read, the chunks' layout is checked
	 * from the index, which an image with pages must then have. */
	img->drop_after_read = decode != 1;
	int r = decode == CKPT_CHECK_NO_DATA && img->pages && img->pages->count && !img->index
		    ? fail(err, errlen, "its writer checked its pages, but it has no PAGE_INDEX")
		    : ckpt_image_check_pages(img, decode, err, errlen);
	/* but for the rest, which the next incremental checkpoint reads while
	 * the program is stopped (from the disk, if dropped: 1-3 ms of a
	 * 10 ms pause) */
	uint64_t from, len;
	if (img->pages && (len = ckpt_section_whole_pages(img->pages, &from)) != 0)
		drop_read(img, from, len);
	ckpt_image_close(img);
	return r;
}

int ckpt_image_verify(const char *path, char *err, size_t errlen)
{
	return verify_path(path, 1, err, errlen);
}

int ckpt_image_verify_stored(const char *path, char *err, size_t errlen)
{
	return verify_path(path, 0, err, errlen);
}

int ckpt_image_verify_checked(const char *path, char *err, size_t errlen)
{
	return verify_path(path, CKPT_CHECK_NO_DATA, err, errlen);
}
