/* Image writer. Runs inside the stopped program (see writer.h): it only
 * uses the caller's buffer and plain system call wrappers, never malloc,
 * stdio or anything that may take a lock another (stopped) thread holds.
 *
 * The file is written sequentially from offset 0: a zeroed placeholder for
 * the header, the sections (each starting 8-byte aligned), the section
 * table, and finally the real header, pwritten over the placeholder. The
 * fd must be a fresh, seekable file positioned at offset 0, not opened
 * with O_APPEND (pwrite patches earlier bytes). */
#include "image/writer.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <string.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/rawsys.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

static const char zeros[CKPT_PAGE_SIZE];

#define ZSTD_FRAME_MAGIC 0xFD2FB528u

static void put_le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static void fail(struct ckpt_writer *w, int err)
{
	if (!w->error)
		w->error = err ? err : EIO;
}

/* pwrite() until everything is out; partial writes and EINTR are normal
 * for large writes to some file systems. Explicit offsets keep the file
 * right when an I/O thread writes earlier buffers at the same time. */
static void write_at(struct ckpt_writer *w, const char *p, size_t len, uint64_t off)
{
	while (len && !w->error) {
		ssize_t n = pwrite(w->fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fail(w, n < 0 ? errno : EIO);
			return;
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
}

/* Write-behind: an image is written once and read once, at a restart
 * that is usually on another node, so keeping it in the page cache only
 * takes memory from the node, and filling that much cache is slow where
 * memory is fresh (a VM whose host took back the free memory: 4 GiB
 * written took 8-11 s through the cache, 3 s like this, the disk being the
 * same). Every WB_WINDOW of the file is handed to writeback once a further
 * window has been written (chunk headers are patched up to a buffer and a
 * chunk behind the end), and dropped from the cache once written, a
 * window later: the cache holds a few windows, whose pages are reused.
 * Errors are left to the final fsync, which reports what writeback met.
 * With an I/O thread, the thread does this after each write (so the
 * writer is not held up by it): raw system calls only, and errors are
 * returned, not set in w. */
#define WB_WINDOW (16u << 20)

static int read_back(struct ckpt_writer *w, uint64_t from, uint64_t to, char *buf, size_t size);

static int write_behind(struct ckpt_writer *w, uint64_t written, char *buf, size_t size)
{
	int err = 0;
	while (w->wb_started + 2 * (uint64_t)WB_WINDOW <= written) {
		raw_syscall4(SYS_sync_file_range, w->fd, w->wb_started, WB_WINDOW,
			     SYNC_FILE_RANGE_WRITE);
		w->wb_started += WB_WINDOW;
	}
	while (w->wb_dropped + WB_WINDOW < w->wb_started && !err) {
		raw_syscall4(SYS_sync_file_range, w->fd, w->wb_dropped, WB_WINDOW,
			     SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
				 SYNC_FILE_RANGE_WAIT_AFTER);
		/* still cached (and hot): the check costs a copy, not a read */
		err = read_back(w, w->wb_dropped, w->wb_dropped + WB_WINDOW, buf, size);
		raw_syscall4(SYS_fadvise64, w->fd, w->wb_dropped, WB_WINDOW, POSIX_FADV_DONTNEED);
		w->wb_dropped += WB_WINDOW;
	}
	return err;
}

int ckpt_writer_behind(struct ckpt_writer *w, char *buf, uint64_t written)
{
	return write_behind(w, written, buf, w->buf_size);
}

/* Wait for the buffer the I/O thread is writing, if any. */
static void io_drain(struct ckpt_writer *w)
{
	if (!w->io_busy)
		return;
	w->io_busy = 0;
	int err = w->io->wait(w->io->ctx);
	if (err)
		fail(w, err);
}

/* Write out the buffer: handed to the I/O thread (which writes it while
 * the next one fills) or written here. */
static void flush(struct ckpt_writer *w)
{
	if (!w->buf_used || w->error) {
		w->buf_used = 0;
		return;
	}
	uint64_t off = w->offset - w->buf_used;
	if (w->io) {
		io_drain(w); /* which did the write-behind after its write */
		if (!w->error) {
			w->io->submit(w->io->ctx, w->buf, w->buf_used, off);
			w->io_busy = 1;
			char *t = w->buf;
			w->buf = w->io_spare;
			w->io_spare = t;
		}
	} else {
		write_at(w, w->buf, w->buf_used, off);
		int err = write_behind(w, w->offset, w->ck_buf, w->ck_size);
		if (err)
			fail(w, err);
	}
	w->buf_used = 0;
}

/* Append bytes to the file (through the buffer when they fit in it). */
static void emit(struct ckpt_writer *w, const void *data, size_t len)
{
	if (w->error || !len)
		return;
	if (len > w->buf_size - w->buf_used) {
		flush(w);
		if (len >= w->buf_size) {
			io_drain(w);
			write_at(w, data, len, w->offset);
			w->offset += len;
			return;
		}
	}
	memcpy(w->buf + w->buf_used, data, len);
	w->buf_used += len;
	w->offset += len;
}

static void emit_zeros(struct ckpt_writer *w, uint64_t len)
{
	while (len) {
		size_t n = len < sizeof zeros ? (size_t)len : sizeof zeros;
		emit(w, zeros, n);
		len -= n;
	}
}

static void align(struct ckpt_writer *w, uint64_t to)
{
	emit_zeros(w, (to - w->offset % to) % to);
}

void ckpt_writer_init(struct ckpt_writer *w, int fd, void *buf, size_t buf_size)
{
	memset(w, 0, sizeof *w);
	w->fd = fd;
	w->buf = buf;
	w->buf_size = buf ? buf_size : 0;
	w->stored_max_pages = CKPT_WRITER_STORED_MAX_PAGES;
	/* placeholder for the header, written for real by ckpt_writer_finish */
	emit_zeros(w, sizeof(struct ckpt_image_header));
}

void ckpt_writer_begin_section(struct ckpt_writer *w, uint32_t type)
{
	if (w->rec) {
		ckpt_record_section(w, 1, type);
		return;
	}
	if (w->error)
		return;
	if (w->open || w->nsections >= CKPT_MAX_SECTIONS) {
		fail(w, w->open ? EINVAL : ENOSPC);
		return;
	}
	align(w, 8);
	struct ckpt_section *s = &w->sections[w->nsections];
	memset(s, 0, sizeof *s);
	s->type = type;
	s->offset = w->offset;
	w->open = s;
	if (type == CKPT_SEC_PAGES && w->ck_on) {
		io_drain(w); /* whose write-behind reads ck_pos */
		w->ck_pos = s->offset;
	}
}

void ckpt_writer_write(struct ckpt_writer *w, const void *data, size_t len)
{
	if (w->rec) {
		ckpt_record_bytes(w, data, len);
		return;
	}
	if (w->error)
		return;
	if (!w->open) {
		fail(w, EINVAL);
		return;
	}
	/* PAGES has no section checksum: its chunks carry their own */
	if (w->open->type != CKPT_SEC_PAGES)
		w->open->crc = crc32c_update(w->open->crc, data, len);
	emit(w, data, len);
}

static void drain_jobs(struct ckpt_writer *w);
static void check_pages_end(struct ckpt_writer *w);

/* For PAGES the count is the number of chunks written (counted here, the
 * argument is ignored); for other sections it is the caller's. */
void ckpt_writer_end_section(struct ckpt_writer *w, uint32_t count)
{
	if (w->rec) {
		ckpt_record_section(w, 0, count);
		return;
	}
	if (w->error)
		return;
	if (!w->open) {
		fail(w, EINVAL);
		return;
	}
	if (w->open->type == CKPT_SEC_PAGES)
		drain_jobs(w);
	struct ckpt_section *s = w->open;
	s->length = w->offset - s->offset;
	if (s->type == CKPT_SEC_PAGES)
		s->crc = 0;
	else
		s->count = count;
	w->nsections++;
	w->open = NULL;
	if (s->type == CKPT_SEC_PAGES)
		check_pages_end(w);
	if (s->type == CKPT_SEC_PAGES && w->index && !w->index_lost && w->index_used) {
		ckpt_writer_begin_section(w, CKPT_SEC_PAGE_INDEX);
		ckpt_writer_write(w, w->index, (size_t)w->index_used * sizeof *w->index);
		ckpt_writer_end_section(w, w->index_used);
	}
}

void ckpt_writer_set_index(struct ckpt_writer *w, struct ckpt_chunk_entry *entries, uint32_t cap)
{
	if (w->rec) {
		ckpt_record_index(w, entries, cap);
		return;
	}
	w->index = entries;
	w->index_cap = entries ? cap : 0;
	w->index_used = 0;
	w->index_lost = 0;
}

/* The chunk whose header (final, crc included) is at hpos. */
static void index_add(struct ckpt_writer *w, const struct ckpt_page_chunk *c, uint64_t hpos,
		      uint32_t zlen)
{
	if (!w->index || w->index_lost)
		return;
	if (w->index_used == w->index_cap) {
		w->index_lost = 1;
		return;
	}
	w->index[w->index_used] =
	    (struct ckpt_chunk_entry){.chunk = *c, .offset = hpos, .zlen = zlen, .reserved = 0};
	/* the I/O thread's read-back check reads the entries meanwhile */
	__atomic_store_n(&w->index_used, w->index_used + 1, __ATOMIC_RELEASE);
}

/* A write at an earlier offset (a chunk header patched after its data):
 * the I/O thread may be writing that very region from its stale copy, so
 * it finishes first. */
static void pwrite_all(struct ckpt_writer *w, const void *data, size_t len, uint64_t off)
{
	io_drain(w);
	write_at(w, data, len, off);
}

/* Appends data through the buffer, continuing the checksum crc (and the
 * zstd content hash xh, if any) over the copy there: the pages may be live
 * memory that changes while it is written (the writing thread's own stack
 * and data), so the checksums must cover the bytes that reach the file,
 * not the source. Without a buffer the source must be stable. */
static uint32_t copy_through(struct ckpt_writer *w, const char *data, size_t len, uint32_t crc,
			     XXH64_state_t *xh)
{
	if (!w->buf_size) {
		crc = crc32c_update(crc, data, len);
		if (xh)
			XXH64_update(xh, data, len);
		emit(w, data, len);
		return crc;
	}
	while (len && !w->error) {
		if (w->buf_used == w->buf_size)
			flush(w);
		size_t n = w->buf_size - w->buf_used < len ? w->buf_size - w->buf_used : len;
		char *at = w->buf + w->buf_used;
		memcpy(at, data, n);
		crc = crc32c_update(crc, at, n);
		if (xh)
			XXH64_update(xh, at, n);
		w->buf_used += n;
		w->offset += n;
		data += n;
		len -= n;
	}
	return crc;
}

/* The chunk header at hpos, written first with crc 0, gets its crc: in
 * the buffer if it is still there, else in the file. */
static void patch_header(struct ckpt_writer *w, const struct ckpt_page_chunk *c, uint64_t hpos)
{
	uint64_t buf_start = w->offset - w->buf_used;
	if (hpos >= buf_start)
		memcpy(w->buf + (hpos - buf_start), c, sizeof *c);
	else
		pwrite_all(w, c, sizeof *c, hpos);
}

void ckpt_writer_set_buffer(struct ckpt_writer *w, void *buf, size_t size)
{
	if (w->io || w->buf_used > size) {
		fail(w, EINVAL);
		return;
	}
	memcpy(buf, w->buf, w->buf_used);
	w->buf = buf;
	w->buf_size = size;
}

void ckpt_writer_set_io(struct ckpt_writer *w, const struct ckpt_writer_io *io, void *spare)
{
	w->io = io;
	w->io_spare = spare;
}

void ckpt_writer_flush_io(struct ckpt_writer *w)
{
	if (!w->io)
		return;
	flush(w);
	io_drain(w);
	w->io = NULL;
	w->io_spare = NULL;
}

void ckpt_writer_set_compressor(struct ckpt_writer *w, ckpt_compress_fn fn, void *ctx, void *raw,
				size_t raw_cap, void *out, size_t out_cap)
{
	w->compress = fn;
	w->compress_ctx = ctx;
	w->zraw = raw;
	w->zraw_cap = raw_cap;
	w->zout = out;
	w->zout_cap = out_cap;
}

/* A chunk of at most need bytes (padding included) starts in an empty
 * buffer when the rest of this one cannot hold it but a whole one can: its
 * header is then patched in the buffer, not in the file, which would wait
 * for the I/O thread to finish the write in flight and its write-behind. */
static void chunk_room(struct ckpt_writer *w, uint64_t need)
{
	if (need > w->buf_size - w->buf_used && need <= w->buf_size)
		flush(w);
}

/* A compressed chunk: header, length, frame (out, zlen bytes of it). */
static void emit_compressed(struct ckpt_writer *w, uint32_t area, uint64_t addr, uint32_t npages,
			    const char *out, size_t zlen)
{
	chunk_room(w, 8 + sizeof(struct ckpt_page_chunk) + 8 + zlen);
	align(w, 8);
	uint64_t hpos = w->offset;
	struct ckpt_page_chunk c = {
	    .magic = CKPT_ZCHUNK_MAGIC, .area = area, .addr = addr, .npages = npages, .crc = 0};
	uint32_t zl[2] = {(uint32_t)zlen, 0};
	/* The checksum covers the bytes as stored: a zstd frame can decode to
	 * the same pages with a bit changed, and such a change must be found
	 * too. The frame's own content checksum covers the decoded pages. */
	c.crc =
	    crc32c_update(crc32c_update(crc32c_update(0, &c, sizeof c), zl, sizeof zl), out, zlen);
	emit(w, &c, sizeof c);
	emit(w, zl, sizeof zl);
	emit(w, out, zlen);
	index_add(w, &c, hpos, zl[0]);
	w->open->count++;
}

/* A short run stored as a compressed chunk whose zstd frame holds raw
 * blocks (nothing compressed): it needs no padding, where a raw chunk of
 * one page needs up to 4 KiB of it, and an incremental image is mostly
 * isolated pages. Frame: magic, descriptor (4-byte content size, single
 * segment, content checksum), content size, blocks of at most 128 KiB
 * each after a 3-byte header, the low 32 bits of the content's XXH64. */
static void emit_stored(struct ckpt_writer *w, uint32_t area, uint64_t addr, const char *data,
			uint32_t npages)
{
	enum { BLOCK = 128u << 10 };
	uint32_t len = npages * CKPT_PAGE_SIZE, nblocks = (len + BLOCK - 1) / BLOCK;
	chunk_room(w, 8 + sizeof(struct ckpt_page_chunk) + 17 + 3 * nblocks + len + 4);
	align(w, 8);
	uint64_t hpos = w->offset;
	struct ckpt_page_chunk c = {
	    .magic = CKPT_ZCHUNK_MAGIC, .area = area, .addr = addr, .npages = npages, .crc = 0};
	unsigned char head[8 + 9];
	uint32_t zlen = 4 + 1 + 4 + 3 * nblocks + len + 4;
	put_le32(head, zlen);
	put_le32(head + 4, 0);
	put_le32(head + 8, ZSTD_FRAME_MAGIC);
	head[12] = 0xA4;
	put_le32(head + 13, len);
	emit(w, &c, sizeof c);
	emit(w, head, sizeof head);
	uint32_t crc = crc32c_update(crc32c_update(0, &c, sizeof c), head, sizeof head);
	XXH64_state_t xh;
	XXH64_reset(&xh, 0);
	for (uint32_t done = 0; done < len;) {
		uint32_t n = len - done < BLOCK ? len - done : BLOCK;
		uint32_t bh = n << 3 | (done + n == len); /* raw block, last flag */
		unsigned char b[3] = {(unsigned char)bh, (unsigned char)(bh >> 8),
				      (unsigned char)(bh >> 16)};
		emit(w, b, sizeof b);
		crc = crc32c_update(crc, b, sizeof b);
		crc = copy_through(w, data + done, n, crc, &xh);
		done += n;
	}
	unsigned char sum[4];
	put_le32(sum, (uint32_t)XXH64_digest(&xh));
	emit(w, sum, sizeof sum);
	c.crc = crc32c_update(crc, sum, sizeof sum);
	patch_header(w, &c, hpos);
	index_add(w, &c, hpos, zlen);
	w->open->count++;
}

/* Zero padding goes before each chunk header so that the chunk's data
 * start on a 4096-byte boundary of the file: a reader may then mmap the
 * pages instead of copying them. Readers rely on this rule to find the
 * next chunk (docs/image-format.md). Runs too short to gain from mapping
 * are stored unpadded instead (emit_stored). */
/* Bytes a raw chunk of npages takes at most, padding included. */
static uint64_t raw_need(uint32_t npages)
{
	return CKPT_PAGE_SIZE + sizeof(struct ckpt_page_chunk) + (uint64_t)npages * CKPT_PAGE_SIZE;
}

/* Zero padding before a raw chunk's header at the current offset. */
static size_t raw_padding(const struct ckpt_writer *w)
{
	uint64_t hsize = sizeof(struct ckpt_page_chunk);
	return (size_t)((CKPT_PAGE_SIZE - (w->offset + hsize) % CKPT_PAGE_SIZE) % CKPT_PAGE_SIZE);
}

static void emit_raw(struct ckpt_writer *w, uint32_t area, uint64_t addr, const void *data,
		     uint32_t npages)
{
	if (npages <= w->stored_max_pages) {
		emit_stored(w, area, addr, data, npages);
		return;
	}
	chunk_room(w, raw_need(npages));
	emit_zeros(w, raw_padding(w));
	uint64_t hpos = w->offset;
	struct ckpt_page_chunk c = {
	    .magic = CKPT_CHUNK_MAGIC, .area = area, .addr = addr, .npages = npages, .crc = 0};
	emit(w, &c, sizeof c);
	c.crc = copy_through(w, data, (size_t)npages * CKPT_PAGE_SIZE,
			     crc32c_update(0, &c, sizeof c), NULL);
	patch_header(w, &c, hpos);
	index_add(w, &c, hpos, 0);
	w->open->count++;
}

/* A set of jobs (ckpt_writer_set_batch_compressor) */
static struct ckpt_zjob *set_jobs(struct ckpt_writer *w, int set)
{
	return w->jobs + set * w->njobs;
}

/* A chunk of npages goes to the batch compressor (else it is written
 * alone, after the batches before it). */
static int fits_job(const struct ckpt_writer *w, uint32_t npages)
{
	return w->batch && (size_t)npages * CKPT_PAGE_SIZE <= w->jobs[0].raw_cap &&
	       npages <= CKPT_ZCHUNK_MAX_PAGES;
}

void *ckpt_writer_slot(struct ckpt_writer *w, uint32_t npages)
{
	w->slot_job = 0;
	if (w->rec || w->error || !w->open || w->open->type != CKPT_SEC_PAGES || !npages)
		return NULL;
	if (w->batch) {
		if (!fits_job(w, npages))
			return NULL;
		w->slot_job = 1;
		return set_jobs(w, w->jset)[w->zset[w->jset].n].raw;
	}
	if (w->compress || npages <= w->stored_max_pages || raw_need(npages) > w->buf_size)
		return NULL;
	chunk_room(w, raw_need(npages));
	if (w->error)
		return NULL;
	w->slot_pad = raw_padding(w);
	return w->buf + w->buf_used + w->slot_pad + sizeof(struct ckpt_page_chunk);
}

static void add_job(struct ckpt_writer *w, uint32_t area, uint64_t addr, uint32_t npages);

void ckpt_writer_slot_commit(struct ckpt_writer *w, uint32_t area, uint64_t addr, uint32_t npages)
{
	size_t hsize = sizeof(struct ckpt_page_chunk), len = (size_t)npages * CKPT_PAGE_SIZE;
	w->raw_page_bytes += len;
	if (w->slot_job) {
		add_job(w, area, addr, npages);
		return;
	}
	char *at = w->buf + w->buf_used;
	uint64_t hpos = w->offset + w->slot_pad;
	struct ckpt_page_chunk c = {
	    .magic = CKPT_CHUNK_MAGIC, .area = area, .addr = addr, .npages = npages, .crc = 0};
	c.crc = crc32c_update(crc32c_update(0, &c, sizeof c), at + w->slot_pad + hsize, len);
	memset(at, 0, w->slot_pad);
	memcpy(at + w->slot_pad, &c, hsize);
	w->buf_used += w->slot_pad + hsize + len;
	w->offset += w->slot_pad + hsize + len;
	index_add(w, &c, hpos, 0);
	w->open->count++;
}

/* A compressed chunk is worth it when it saves (the compressor decides
 * how much) and its length fits the format. */
static int worth(size_t zlen, size_t len)
{
	return zlen != 0 && zlen < len && zlen <= UINT32_MAX;
}

void ckpt_writer_set_batch_compressor(struct ckpt_writer *w, ckpt_compress_batch_fn start,
				      ckpt_compress_wait_fn wait, void *ctx, struct ckpt_zjob *jobs,
				      int njobs)
{
	w->batch = start;
	w->batch_wait = wait;
	w->batch_ctx = ctx;
	w->jobs = jobs;
	/* two sets with a wait: one collected while the other compresses */
	w->njobs = wait && njobs >= 2 ? njobs / 2 : njobs;
	if (!w->njobs)
		w->batch = NULL;
	w->jset = 0;
	memset(w->zset, 0, sizeof w->zset);
}

static void emit_ref(struct ckpt_writer *w, uint32_t area, uint64_t addr, uint32_t npages)
{
	align(w, 8);
	uint64_t hpos = w->offset;
	struct ckpt_page_chunk c = {
	    .magic = CKPT_RCHUNK_MAGIC, .area = area, .addr = addr, .npages = npages, .crc = 0};
	c.crc = crc32c_update(0, &c, sizeof c);
	emit(w, &c, sizeof c);
	index_add(w, &c, hpos, 0);
	w->open->count++;
}

/* The references queued in set z before its job i (before == i), in
 * their order. */
static void emit_refs_before(struct ckpt_writer *w, struct ckpt_zset *z, int i, int *next)
{
	for (; *next < z->nrefs && z->refs[*next].before == i && !w->error; (*next)++)
		emit_ref(w, z->refs[*next].area, z->refs[*next].addr, z->refs[*next].npages);
}

/* Writes a set's jobs, compressed by now, in their order, with the
 * references that came between them, and empties it. */
static void write_set(struct ckpt_writer *w, int set)
{
	struct ckpt_zset *z = &w->zset[set];
	struct ckpt_zjob *jobs = set_jobs(w, set);
	int next = 0;
	for (int i = 0; i < z->n && !w->error; i++) {
		struct ckpt_zjob *j = &jobs[i];
		size_t len = (size_t)j->npages * CKPT_PAGE_SIZE;
		emit_refs_before(w, z, i, &next);
		if (worth(j->zlen, len)) {
			emit_compressed(w, j->area, j->addr, j->npages, j->out, j->zlen);
		} else {
			if (!j->zlen)
				w->uncompressed_bytes += len;
			emit_raw(w, j->area, j->addr, j->raw, j->npages);
		}
	}
	emit_refs_before(w, z, z->n, &next);
	z->n = z->nrefs = z->started = 0;
}

/* Compressing keeps the disk waiting: the I/O thread has written all it
 * was given. Where the disk is faster than the compressing threads (a
 * local SSD, two cores), storing the chunks not yet started raw writes
 * more bytes but ends sooner; where it is slower (a shared file system),
 * the I/O thread is never idle here and everything is compressed. */
static int disk_waits(const struct ckpt_writer *w)
{
	return w->adaptive && w->io && w->io->idle && w->io->idle(w->io->ctx);
}

/* The collected set is handed to the compressor. With a wait function the
 * set before it, compressing meanwhile, is waited for first and written
 * while this one compresses, and the next is collected in its place; the
 * writer thread helps in the wait (compress.c). Without one the set is
 * compressed at once, then written. */
static void flush_jobs(struct ckpt_writer *w)
{
	int c = w->jset, o = c ^ 1;
	if (!w->batch_wait) {
		if (w->zset[c].n && !w->error)
			w->batch(w->batch_ctx, set_jobs(w, c), w->zset[c].n);
		write_set(w, c);
		return;
	}
	if (w->zset[o].started)
		w->batch_wait(w->batch_ctx, disk_waits(w));
	if (w->zset[c].n && !w->error) {
		w->batch(w->batch_ctx, set_jobs(w, c), w->zset[c].n);
		w->zset[c].started = 1;
	}
	write_set(w, o);
	w->jset = o;
}

/* Everything queued is written: before a chunk written otherwise, and
 * when PAGES ends. */
static void drain_jobs(struct ckpt_writer *w)
{
	if (!w->batch)
		return;
	flush_jobs(w);
	if (!w->batch_wait)
		return;
	int o = w->jset ^ 1;
	if (w->zset[o].started)
		w->batch_wait(w->batch_ctx, disk_waits(w));
	write_set(w, o);
}

/* The next job's raw pages are filled: it joins the set collected. */
static void add_job(struct ckpt_writer *w, uint32_t area, uint64_t addr, uint32_t npages)
{
	struct ckpt_zset *z = &w->zset[w->jset];
	struct ckpt_zjob *j = &set_jobs(w, w->jset)[z->n++];
	j->area = area;
	j->addr = addr;
	j->npages = npages;
	j->zlen = 0;
	if (z->n == w->njobs)
		flush_jobs(w);
}

void ckpt_writer_chunk(struct ckpt_writer *w, uint32_t area, uint64_t addr, const void *data,
		       uint32_t npages)
{
	if (w->rec) {
		ckpt_record_pages(w, 1, area, addr, data, npages);
		return;
	}
	if (w->error)
		return;
	if (!w->open || w->open->type != CKPT_SEC_PAGES) {
		fail(w, EINVAL);
		return;
	}
	size_t len = (size_t)npages * CKPT_PAGE_SIZE;
	w->raw_page_bytes += len;
	if (fits_job(w, npages)) {
		/* a stable copy: checksum and compressor must see the same bytes */
		memcpy(set_jobs(w, w->jset)[w->zset[w->jset].n].raw, data, len);
		add_job(w, area, addr, npages);
		return;
	}
	drain_jobs(w); /* chunks are written in their order */
	if (w->compress && len <= w->zraw_cap && npages <= CKPT_ZCHUNK_MAX_PAGES) {
		memcpy(w->zraw, data, len);
		size_t zlen = w->compress(w->compress_ctx, w->zout, w->zout_cap, w->zraw, len);
		if (worth(zlen, len)) {
			emit_compressed(w, area, addr, npages, w->zout, zlen);
			return;
		}
		data = w->zraw; /* not worth compressing: store the copy */
	}
	emit_raw(w, area, addr, data, npages);
}

void ckpt_writer_ref(struct ckpt_writer *w, uint32_t area, uint64_t addr, uint32_t npages)
{
	if (w->rec) {
		ckpt_record_pages(w, 0, area, addr, NULL, npages);
		return;
	}
	if (w->error)
		return;
	if (!w->open || w->open->type != CKPT_SEC_PAGES) {
		fail(w, EINVAL);
		return;
	}
	/* chunks are written in their order: after the jobs collected or
	 * compressing so far, which are written when their set is */
	struct ckpt_zset *z = &w->zset[w->jset], *o = &w->zset[w->jset ^ 1];
	if (!w->batch || (!z->n && !z->nrefs && !o->n && !o->nrefs)) {
		emit_ref(w, area, addr, npages);
		return;
	}
	if (z->nrefs == (int)(sizeof z->refs / sizeof z->refs[0])) {
		flush_jobs(w);
		z = &w->zset[w->jset]; /* written and empty: collects now */
	}
	z->refs[z->nrefs++] = (struct ckpt_pending_ref){area, npages, addr, z->n};
}

void ckpt_writer_set_check(struct ckpt_writer *w, void *buf, size_t size)
{
	w->ck_buf = buf;
	w->ck_size = size;
	w->ck_on = buf && size;
}

/* Bytes a chunk holds after its header. */
static uint64_t chunk_body(const struct ckpt_chunk_entry *e)
{
	switch (e->chunk.magic) {
	case CKPT_CHUNK_MAGIC:
		return (uint64_t)e->chunk.npages * CKPT_PAGE_SIZE;
	case CKPT_ZCHUNK_MAGIC:
		return 8 + (uint64_t)e->zlen; /* length, reserved, frame */
	default:
		return 0; /* a reference chunk is its header */
	}
}

static int all_zero(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* Feeds n bytes read back from ck_pos on through the chunks they belong
 * to: padding must be zero, a header must equal its index entry, and at
 * each chunk's end the checksum over what was read must be the entry's.
 * Returns -1 at the first difference. Bytes past the last chunk written
 * (the sections after PAGES) are not looked at. */
static int check_bytes(struct ckpt_writer *w, const char *p, uint64_t n)
{
	const size_t hsize = sizeof(struct ckpt_page_chunk);
	while (n && w->ck_next < __atomic_load_n(&w->index_used, __ATOMIC_ACQUIRE)) {
		const struct ckpt_chunk_entry *e = &w->index[w->ck_next];
		uint64_t hend = e->offset + hsize, end = hend + chunk_body(e), k;
		if (w->ck_pos < e->offset) {
			k = e->offset - w->ck_pos < n ? e->offset - w->ck_pos : n;
			if (!all_zero(p, (size_t)k))
				return -1;
		} else if (w->ck_pos < hend) {
			k = hend - w->ck_pos < n ? hend - w->ck_pos : n;
			memcpy(w->ck_head + (w->ck_pos - e->offset), p, (size_t)k);
			if (w->ck_pos + k == hend) {
				struct ckpt_page_chunk c;
				memcpy(&c, w->ck_head, hsize);
				if (memcmp(&c, &e->chunk, hsize) != 0)
					return -1;
				c.crc = 0;
				w->ck_crc = crc32c_update(0, &c, hsize);
			}
		} else {
			k = end - w->ck_pos < n ? end - w->ck_pos : n;
			w->ck_crc = crc32c_update(w->ck_crc, p, (size_t)k);
		}
		w->ck_pos += k;
		p += k;
		n -= k;
		if (w->ck_pos == end) {
			if (w->ck_crc != e->chunk.crc)
				return -1;
			w->ck_next++;
		}
	}
	return 0;
}

/* Reads [from, to) of the file back (the part of PAGES in it) into buf
 * and checks it. Called in file order, when no write is in flight, by the
 * I/O thread (if any) while PAGES is written: raw system calls, and w's
 * error is left alone. Returns 0 or an errno (EBADMSG: a difference). */
static int read_back(struct ckpt_writer *w, uint64_t from, uint64_t to, char *buf, size_t size)
{
	if (!w->ck_on || !w->ck_pos || !buf || (w->pages_end && w->ck_pos >= w->pages_end))
		return 0; /* off, PAGES not begun, or all of it checked */
	if (w->pages_end && to > w->pages_end)
		to = w->pages_end;
	if (from > w->ck_pos) { /* bytes dropped unchecked: cannot vouch */
		w->ck_on = 0;
		return 0;
	}
	from = w->ck_pos;
	while (from < to) {
		size_t n = to - from < size ? (size_t)(to - from) : size;
		long got = raw_syscall4(SYS_pread64, w->fd, buf, n, from);
		if (got == -EINTR)
			continue;
		if (got <= 0)
			return got < 0 ? (int)-got : EIO;
		if (check_bytes(w, buf, (uint64_t)got) < 0)
			return EBADMSG;
		from += (uint64_t)got;
	}
	return 0;
}

/* PAGES has ended: the rest of it is read back from the page cache now,
 * while the index still lists its chunks (the caller may free it). */
static void check_pages_end(struct ckpt_writer *w)
{
	io_drain(w); /* the I/O thread reads pages_end */
	w->pages_end = w->offset;
	if (!w->ck_on)
		return;
	flush(w);
	io_drain(w);
	/* with an I/O thread, its other buffer is free here (it has written
	 * it, and the writer fills the first), and used often enough to be in
	 * memory: a buffer of its own would be fresh pages in a copy-on-write
	 * writer, which cost more than the check of a small image */
	int err = w->error
		      ? 0
		      : read_back(w, w->wb_dropped, w->pages_end, w->io ? w->io_spare : w->ck_buf,
				  w->io ? w->buf_size : w->ck_size);
	if (err)
		fail(w, err);
	w->checked = !w->error && w->ck_on && w->index && !w->index_lost &&
		     w->ck_next == w->index_used && w->ck_pos == w->pages_end;
}

/* On disk now: a restart reads the pages from there, and the program
 * needs the memory. The rest stays cached: the next incremental
 * checkpoint reads this image's header, section table, page hashes and
 * runs while the program is stopped (from the disk, if dropped: 1.5-5 ms
 * of a 256 MiB program's 10 ms pause). Advice only. */
static void drop_from_cache(struct ckpt_writer *w)
{
	for (uint32_t i = 0; i < w->nsections; i++) {
		uint64_t from, len;
		if (w->sections[i].type == CKPT_SEC_PAGES &&
		    (len = ckpt_section_whole_pages(&w->sections[i], &from)) != 0)
			(void)posix_fadvise(w->fd, (off_t)from, (off_t)len, POSIX_FADV_DONTNEED);
	}
}

int ckpt_writer_finish(struct ckpt_writer *w, struct ckpt_image_header *hdr)
{
	if (w->open)
		fail(w, EINVAL);
	if (w->error)
		return -1;
	align(w, 8);
	size_t table_len = w->nsections * sizeof(struct ckpt_section);
	hdr->section_table_offset = w->offset;
	hdr->section_count = w->nsections;
	hdr->section_table_crc = crc32c_update(0, w->sections, table_len);
	emit(w, w->sections, table_len);
	flush(w);
	io_drain(w);
	hdr->image_size = w->offset;
	hdr->header_crc = 0;
	hdr->header_crc = crc32c_update(0, hdr, sizeof *hdr);
	pwrite_all(w, hdr, sizeof *hdr, 0);
	while (!w->error && fsync(w->fd) < 0) {
		if (errno != EINTR)
			fail(w, errno);
	}
	if (w->error)
		w->checked = 0;
	if (!w->error)
		drop_from_cache(w);
	return w->error ? -1 : 0;
}
