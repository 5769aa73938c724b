/* Reading and verifying process images (libc side: the CLI, `ckpt verify`,
 * and the restorer's prepare stage). Every length and offset read from the
 * file is checked against the file size before use: an image is untrusted
 * data. */
#ifndef CKPT_IMAGE_READER_H
#define CKPT_IMAGE_READER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "image/format.h"

struct ckpt_image {
	char *path; /* as opened */
	int fd;
	uint64_t file_size;
	struct ckpt_image_header hdr;
	struct ckpt_section sections[CKPT_MAX_SECTIONS];
	/* Small sections, loaded and checksum-verified by ckpt_image_open. */
	struct ckpt_process process;
	struct ckpt_thread *threads;
	uint32_t nthreads;
	struct ckpt_sigaction sigactions[CKPT_NSIG];
	struct ckpt_area *areas;
	uint32_t nareas;
	struct ckpt_fd *fds;
	uint32_t nfds;
	char *strings;
	uint64_t strings_len;
	uint8_t *fd_data;
	uint64_t fd_data_len;
	struct ckpt_tree tree; /* zero without a TREE section */
	struct ckpt_zombie *zombies;
	uint32_t nzombies;
	struct ckpt_fd_share *shares;
	uint32_t nshares;
	struct ckpt_lock *locks;
	uint32_t nlocks;
	struct ckpt_timer *timers; /* TIMERS (version 7, optional) */
	uint32_t ntimers;
	struct ckpt_siginfo *siginfo; /* SIGINFO (version 7, optional) */
	uint32_t nsiginfo;
	struct ckpt_shared_file *shared_files; /* SHARED_FILES (version 9, optional) */
	uint32_t nshared_files;
	struct ckpt_thread_sched *sched; /* THREAD_SCHED (version 9, optional) */
	uint32_t nsched;
	const struct ckpt_section *pages; /* NULL if the image has no pages */
	/* PAGE_INDEX (version 6, optional), checked by ckpt_image_open against
	 * the areas and the rules where chunks lie: walks that only list the
	 * chunks use it instead of reading every chunk header, and full
	 * walks check that each header equals its entry. */
	struct ckpt_chunk_entry *index;
	uint32_t nindex;
	/* Reference chunks met by the last walk over the pages, in file
	 * order: pages to be taken from the parent generation's image. */
	struct ckpt_page_chunk *refs;
	uint32_t nrefs, caprefs;
	/* Set by a caller that reads the pages once (the restorer): the
	 * parallel readers read raw chunks of a cold image with O_DIRECT
	 * (image/direct.h), and drop each other chunk from the page cache
	 * once checked, so the memory it held goes to the restored program;
	 * the verification of a new image drops what its walk has read.
	 * (In VMs that hand free memory back to the host, memory freed long
	 * ago faults in many times slower than memory freed just now.) */
	int drop_after_read;
	/* Open during a parallel read of a read-once image when O_DIRECT
	 * reads pay, else -1; direct_refused once the file system said no. */
	int direct_fd;
	_Atomic int direct_refused;
	_Atomic uint64_t direct_bytes; /* page data read with O_DIRECT so far */
};

/* Open and verify everything but the page data: header, format version,
 * architecture, section table, each small section's checksum and the
 * consistency of its records (areas ordered and page aligned, string
 * offsets in range, fd data in range...). On failure returns NULL and
 * writes a one-line message naming the section into err. */
struct ckpt_image *ckpt_image_open(const char *path, char *err, size_t errlen);
void ckpt_image_close(struct ckpt_image *img);

/* String at offset off of STRINGS ("" for 0 or out of range). */
const char *ckpt_image_string(const struct ckpt_image *img, uint32_t off);

/* Reference chunks (format 4) are not delivered: every walk lists them in
 * img->refs, and the caller takes their pages from the parent image. */

/* Walk the page chunks in file order. For each chunk, dest(arg, chunk)
 * returns where its npages*4096 bytes should be read to (NULL: read into
 * a scratch buffer, i.e. only verify). The data are read there and their
 * checksum verified. Returns 0, or -1 with a message naming the chunk. */
typedef void *(*ckpt_chunk_dest_fn)(void *arg, const struct ckpt_page_chunk *chunk);
int ckpt_image_read_pages(struct ckpt_image *img, ckpt_chunk_dest_fn dest, void *arg, char *err,
			  size_t errlen);

/* The same with nthreads threads reading and decompressing at once: dest
 * is called from several threads (chunks of one area do not overlap) and
 * must not return NULL for a chunk it wants checked. */
int ckpt_image_read_pages_parallel(struct ckpt_image *img, ckpt_chunk_dest_fn dest, void *arg,
				   int nthreads, char *err, size_t errlen);

/* Bounced reading, for chunks that are only partly wanted: want(arg,
 * chunk) returns NULL for a chunk to skip, a destination for one wanted
 * whole (read there, as without bouncing), or CKPT_CHUNK_BOUNCE for one
 * whose pages are read into a buffer of the reading thread, checked, and
 * handed to got(arg, chunk, pages), which several threads may call at
 * once. */
#define CKPT_CHUNK_BOUNCE ((void *)1)
typedef void (*ckpt_chunk_got_fn)(void *arg, const struct ckpt_page_chunk *chunk,
				  const char *pages);
int ckpt_image_read_pages_bounced(struct ckpt_image *img, ckpt_chunk_dest_fn want,
				  ckpt_chunk_got_fn got, void *arg, int nthreads, char *err,
				  size_t errlen);

/* Lazy restart: map(arg, chunk, offset) is offered each uncompressed
 * chunk (its pages lie at offset in the file, 4096-aligned), in file
 * order and before anything is read; returning 1 takes the chunk: the
 * caller maps its pages from the file, and it is neither read nor
 * checked here. The rest is read as by ckpt_image_read_pages_bounced
 * (got may be NULL when want never bounces). */
typedef int (*ckpt_chunk_map_fn)(void *arg, const struct ckpt_page_chunk *chunk, uint64_t offset);
int ckpt_image_read_pages_mapped(struct ckpt_image *img, ckpt_chunk_map_fn map,
				 ckpt_chunk_dest_fn want, ckpt_chunk_got_fn got, void *arg,
				 int nthreads, char *err, size_t errlen);

/* Name of a section type for messages: "PROCESS", "AREAS"..., "UNKNOWN". */
const char *ckpt_section_name(uint32_t type);

/* Verify every page chunk without delivering it. decode: compressed
 * chunks are decompressed too (their frames' own checksums checked);
 * otherwise, for version 3 images, the checksum of their stored bytes is
 * enough: those are the bytes that were written, so they decode as they
 * did (several times faster). CKPT_CHECK_LAYOUT: only the chunk headers
 * and their layout, no page data and no PAGE_HASHES (what a lazy restart
 * checks before it starts; the rest is checked while the program runs).
 * CKPT_CHECK_NO_DATA: the layout, PAGE_HASHES and PAGE_RUNS (which the
 * next incremental checkpoint trusts), no page data (what a restart
 * checks before it starts: the restorer checks each chunk as it reads
 * it). A larger value checks more. */
#define CKPT_CHECK_LAYOUT (-2)
#define CKPT_CHECK_NO_DATA (-1)
int ckpt_image_check_pages(struct ckpt_image *img, int decode, char *err, size_t errlen);

/* Full verification: ckpt_image_open + every chunk's checksum, decoded. */
int ckpt_image_verify(const char *path, char *err, size_t errlen);
/* The same, with compressed chunks checked as stored (see above). */
int ckpt_image_verify_stored(const char *path, char *err, size_t errlen);
/* A new image whose writer read every page chunk back and checked it:
 * everything but the page data (CKPT_CHECK_NO_DATA), and the image must
 * have a PAGE_INDEX (the chunks' layout is checked from it). */
int ckpt_image_verify_checked(const char *path, char *err, size_t errlen);

#endif
