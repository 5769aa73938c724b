/* Writing a process image from inside the stopped program (the agent).
 * Runs while every other thread of the program is stopped, possibly holding
 * malloc or stdio locks: it allocates nothing and takes no locks. The
 * caller provides the buffer. */
#ifndef CKPT_IMAGE_WRITER_H
#define CKPT_IMAGE_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "image/format.h"

/* An I/O thread: submit hands it len bytes to write at file offset off
 * (the buffer stays untouched until wait returns); after writing them the
 * thread calls ckpt_writer_behind. wait blocks until the last submission
 * is done and returns 0 or an errno (the write's or the write-behind's). */
struct ckpt_writer_io {
	void (*submit)(void *ctx, const char *buf, size_t len, uint64_t off);
	int (*wait)(void *ctx);
	int (*idle)(void *ctx); /* nothing submitted is still being written */
	void *ctx;
};

/* see ckpt_writer_set_compressor */
typedef size_t (*ckpt_compress_fn)(void *ctx, void *dst, size_t cap, const void *src, size_t len);

/* One page chunk to compress, for a batch compressor: raw holds the
 * pages (a stable copy), out receives the frame; zlen is set to its size,
 * or 0 to store the chunk raw. */
struct ckpt_zjob {
	uint32_t area, npages;
	uint64_t addr;
	char *raw, *out;
	size_t raw_cap, out_cap;
	size_t zlen;
};
/* see ckpt_writer_set_batch_compressor */
typedef void (*ckpt_compress_batch_fn)(void *ctx, struct ckpt_zjob *jobs, int n);
/* skip_untaken: the jobs no thread has started are left uncompressed
 * (zlen 0), stored raw: the disk is waiting (ckpt_writer.adaptive) */
typedef void (*ckpt_compress_wait_fn)(void *ctx, int skip_untaken);

/* reference chunks that came between the collected jobs, written in
 * their place when the jobs are: an incremental generation alternates
 * stored and referred runs, and writing a reference at once would end
 * every batch after one job (a hand-over to the compressing threads per
 * stored run) */
struct ckpt_pending_ref {
	uint32_t area, npages;
	uint64_t addr;
	int before; /* the job it comes before (the set's n when it came) */
};

/* A set of jobs: collected, then compressed while the next is collected */
struct ckpt_zset {
	int n;	     /* jobs in it */
	int started; /* handed to the compressor, not yet written */
	int nrefs;
	struct ckpt_pending_ref refs[256];
};

struct ckpt_writer {
	int fd;
	uint64_t offset; /* file offset of the next byte written */
	char *buf;
	size_t buf_size, buf_used;
	int error; /* first errno seen; once set every call is a no-op */
	struct ckpt_section sections[CKPT_MAX_SECTIONS];
	uint32_t nsections;
	struct ckpt_section *open; /* section being written, or NULL */
	ckpt_compress_fn compress;
	void *compress_ctx;
	char *zraw, *zout;
	size_t zraw_cap, zout_cap;
	uint64_t raw_page_bytes; /* page bytes before compression */
	/* --compress auto: a batch's chunks not yet being compressed when the
	 * I/O thread has nothing left to write are stored raw (writer.c) */
	int adaptive;
	uint64_t uncompressed_bytes; /* page bytes so stored */
	ckpt_compress_batch_fn batch;
	ckpt_compress_wait_fn batch_wait;
	void *batch_ctx;
	struct ckpt_zjob *jobs; /* two sets of njobs with batch_wait, else one */
	int njobs;
	int jset; /* the set being collected */
	struct ckpt_zset zset[2];
	const struct ckpt_writer_io *io;
	char *io_spare; /* the other buffer, same size as buf */
	int io_busy;
	/* runs of at most this many pages (not compressed) are written as
	 * stored zstd frames instead of padded raw chunks; 0: never */
	uint32_t stored_max_pages;
	/* PAGE_INDEX entries, one per chunk written (ckpt_writer_set_index);
	 * index_lost: more chunks than room, so the image gets no index */
	struct ckpt_chunk_entry *index;
	uint32_t index_cap, index_used;
	int index_lost;
	/* write-behind (writer.c): the file's bytes before wb_started have
	 * been handed to writeback, those before wb_dropped dropped from the
	 * page cache */
	uint64_t wb_started, wb_dropped;
	/* read-back check (ckpt_writer_set_check): the file's bytes before
	 * ck_pos have been read back and matched, up to index entry ck_next */
	char *ck_buf;
	size_t ck_size;
	int ck_on;	    /* 1 while checking; 0 off, or given up (no index) */
	uint64_t ck_pos;    /* next byte of PAGES to check */
	uint64_t pages_end; /* end of PAGES, once it ended; 0 before */
	uint32_t ck_next;   /* index entry of the chunk being checked */
	uint32_t ck_crc;    /* its checksum so far */
	unsigned char ck_head[sizeof(struct ckpt_page_chunk)];
	int checked; /* set by finish: every page chunk read back and matched */
	/* the slot given out last (ckpt_writer_slot): a job's raw copy, or
	 * a raw chunk's data in the buffer after slot_pad bytes of padding
	 * and the header */
	int slot_job;
	size_t slot_pad;
	/* recording (ckpt_writer_record): operations kept for later */
	struct ckpt_writer_record *rec;
};

/* A buffer that holds writer operations (record.c). */
struct ckpt_writer_record {
	char *buf;
	size_t cap, used;
	uint64_t spilled; /* bytes of operations done at once because buf was full */
};

/* Below this many pages, mapping a raw chunk from the image at a lazy
 * restart saves less than its padding costs. */
#define CKPT_WRITER_STORED_MAX_PAGES 16u

void ckpt_writer_init(struct ckpt_writer *w, int fd, void *buf, size_t buf_size);

/* Double buffering: once set, a full buffer goes to io while the writer
 * fills spare (buf_size bytes). ckpt_writer_finish waits for io. */
void ckpt_writer_set_io(struct ckpt_writer *w, const struct ckpt_writer_io *io, void *spare);
/* For the I/O thread, once everything before file offset written is
 * written: write-behind for that part of the file (writeback, read-back
 * check, dropped from the cache; see writer.c) with buf, the buffer just
 * written, as room for the read-back. Raw system calls only; returns 0 or
 * an errno (EBADMSG: a chunk read back otherwise than written). */
int ckpt_writer_behind(struct ckpt_writer *w, char *buf, uint64_t written);
/* Writes through buf (size bytes) from now on, keeping what the old
 * buffer holds; before ckpt_writer_set_io. */
void ckpt_writer_set_buffer(struct ckpt_writer *w, void *buf, size_t size);
/* Wait for the I/O thread and go back to writing directly. */
void ckpt_writer_flush_io(struct ckpt_writer *w);

/* Compression of page chunks. fn compresses len bytes of src into dst (cap
 * bytes) and returns the compressed size, or 0 when that would not save
 * enough to be worth it (the chunk is then stored as it is). raw and out
 * are the caller's buffers of raw_cap and out_cap bytes: a chunk's pages
 * are first copied into raw (so the checksum and the compressor see the
 * same bytes), then compressed into out. */
void ckpt_writer_set_compressor(struct ckpt_writer *w, ckpt_compress_fn fn, void *ctx, void *raw,
				size_t raw_cap, void *out, size_t out_cap);
/* Compression of page chunks in batches (several threads): chunks are
 * collected into jobs, handed to start together, and written in their
 * order, so the image is the same as with one compressor. With a wait
 * function (which returns once the batch started last is done), the njobs
 * jobs are two sets: one is collected while the other compresses, and
 * written once the next is handed over. Without one, start compresses
 * the batch before it returns. */
void ckpt_writer_set_batch_compressor(struct ckpt_writer *w, ckpt_compress_batch_fn start,
				      ckpt_compress_wait_fn wait, void *ctx, struct ckpt_zjob *jobs,
				      int njobs);
/* PAGE_INDEX: with room for cap entries, one is kept per chunk, and the
 * section follows PAGES when it ends. With more chunks than that the
 * image has no index (readers then find the chunks by their headers). */
void ckpt_writer_set_index(struct ckpt_writer *w, struct ckpt_chunk_entry *entries, uint32_t cap);
/* Read-back check: once the page cache has written part of the file out
 * (write-behind), the writer (its I/O thread, if it has one: see
 * ckpt_writer_behind) reads that part back, before dropping it,
 * and checks every page chunk in it against its PAGE_INDEX entry: header
 * equal, checksum over the bytes read matching, padding zero. buf (size
 * bytes, one MiB is plenty) receives the reads (with an I/O thread, its
 * free buffer does). When PAGES ends, the rest of it is read back (from
 * the cache) and w->checked is set if every chunk passed; a chunk that
 * reads back otherwise fails the image (EBADMSG). Needs an index
 * (ckpt_writer_set_index) that holds every chunk; without one nothing is
 * checked and checked stays 0. */
void ckpt_writer_set_check(struct ckpt_writer *w, void *buf, size_t size);
/* Leaves room for the header, which ckpt_writer_finish fills in. */
void ckpt_writer_begin_section(struct ckpt_writer *w, uint32_t type);
void ckpt_writer_write(struct ckpt_writer *w, const void *data, size_t len);
void ckpt_writer_end_section(struct ckpt_writer *w, uint32_t count);
/* Page chunk: header and data, checksummed. data must be npages*4096 bytes.
 * data may be live memory that changes meanwhile: it is copied through the
 * buffer and the copy is checksummed, so it must not overlap the buffer.
 * Zero padding before the header puts the data 4096-aligned in the file.
 * For PAGES, end_section's count is ignored: the chunks are counted, and
 * PAGE_INDEX is written after it if an index was set. */
void ckpt_writer_chunk(struct ckpt_writer *w, uint32_t area, uint64_t addr, const void *data,
		       uint32_t npages);
/* A chunk's pages read in place: memory for the pages of a chunk of
 * npages pages, which the caller fills (reading them straight into it
 * saves copying them there) and then either commits as the chunk of the
 * pages at addr, or forgets. With a batch compressor it is the next job's
 * raw copy; without a compressor, the place of a raw chunk's data in the
 * buffer (4096-aligned in the file). The file's bytes are the same as
 * ckpt_writer_chunk's. NULL where that cannot be (a single compressor, a
 * run short enough for a stored frame, a buffer that cannot hold the
 * chunk whole): use ckpt_writer_chunk then. No other writer call may come
 * between the two. */
void *ckpt_writer_slot(struct ckpt_writer *w, uint32_t npages);
void ckpt_writer_slot_commit(struct ckpt_writer *w, uint32_t area, uint64_t addr, uint32_t npages);
/* Reference chunk: npages pages at addr are those of the parent
 * generation's image (docs/image-format.md); written in order with the
 * other chunks, header only. */
void ckpt_writer_ref(struct ckpt_writer *w, uint32_t area, uint64_t addr, uint32_t npages);
/* Recording: from now on begin_section, write, end_section, chunk, ref
 * and set_index are kept in rec's buffer, with copies of the bytes written
 * and of the chunks' pages, instead of being done; ckpt_writer_replay does
 * them, in their order, so the file is the same as if they had been done
 * at once. This lets a program be stopped only while its changed pages are
 * copied, and resumed before they are compressed and written. When the
 * buffer is full, what it holds is done at once and recording goes on (an
 * operation larger than the whole buffer is done at once as well). */
void ckpt_writer_record(struct ckpt_writer *w, struct ckpt_writer_record *rec);
/* Does what was recorded and stops recording. Returns 0, or -1 with
 * w->error set. */
int ckpt_writer_replay(struct ckpt_writer *w);
/* writer.c's entry points hand their operation here while recording */
void ckpt_record_section(struct ckpt_writer *w, int begin, uint32_t type_or_count);
void ckpt_record_bytes(struct ckpt_writer *w, const void *data, size_t len);
void ckpt_record_pages(struct ckpt_writer *w, int chunk, uint32_t area, uint64_t addr,
		       const void *data, uint32_t npages);
void ckpt_record_index(struct ckpt_writer *w, struct ckpt_chunk_entry *entries, uint32_t cap);

/* Writes the section table and the header (completing hdr's table,
 * size and checksum fields), then fsyncs. Returns 0 or -1 (w->error set). */
int ckpt_writer_finish(struct ckpt_writer *w, struct ckpt_image_header *hdr);

#endif
