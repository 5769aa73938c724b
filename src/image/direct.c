/* Raw page chunks lie 4096-aligned in the image, so a restart can read them
 * with O_DIRECT straight into the staging memory: no page cache pages are
 * allocated and no copy is made. Buffered, a restart needs twice the
 * memory the program holds for a moment (the page cache and the copy), and
 * in a VM whose host takes free memory back, each fresh page costs a
 * fault on the host too. A warm image (restart right after a crash on the
 * same node) is read from the page cache as before: O_DIRECT would read it
 * from the disk again. */
#include "image/direct.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "image/reader.h"

#define BLOCK 4096u /* a raw chunk's data alignment in the file */
#define MINCORE_STEP (64u << 20)

/* Pages of the file in the page cache, by mincore() on a mapping of it
 * (maps nothing in, and works on every kernel, unlike cachestat). -1 if
 * it cannot tell. */
static long cached_pages(int fd, uint64_t size, long page)
{
	unsigned char vec[MINCORE_STEP / 4096];
	if (page < 4096 || page > (long)MINCORE_STEP)
		return -1;
	void *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return -1;
	long n = 0;
	for (uint64_t off = 0; off < size && n >= 0; off += MINCORE_STEP) {
		uint64_t len = size - off < MINCORE_STEP ? size - off : MINCORE_STEP;
		if (mincore((char *)m + off, len, vec) < 0)
			n = -1;
		for (uint64_t i = 0; n >= 0 && i < (len + (uint64_t)page - 1) / (uint64_t)page; i++)
			n += vec[i] & 1;
	}
	munmap(m, size);
	return n;
}

void ckpt_image_direct_open(struct ckpt_image *img)
{
	long page = sysconf(_SC_PAGESIZE);
	if (img->direct_fd >= 0 || img->file_size < 4 * BLOCK || page <= 0)
		return;
	long cached = cached_pages(img->fd, img->file_size, page);
	if (cached < 0 || (uint64_t)cached * 2 > img->file_size / (uint64_t)page)
		return;
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", img->fd);
	/* the same file, whatever its path has become since */
	img->direct_fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
}

void ckpt_image_direct_close(struct ckpt_image *img)
{
	if (img->direct_fd >= 0)
		close(img->direct_fd);
	img->direct_fd = -1;
	atomic_store(&img->direct_refused, 0);
}

int ckpt_image_direct_read(struct ckpt_image *img, void *head, uint64_t head_len, void *dst,
			   uint64_t len, uint64_t data)
{
	_Alignas(BLOCK) char block[BLOCK];
	if (img->direct_fd < 0 || atomic_load(&img->direct_refused) || head_len > BLOCK ||
	    data < BLOCK || data % BLOCK || len % BLOCK || (uintptr_t)dst % BLOCK)
		return 1;
	/* the block before the data ends with the chunk's header */
	struct iovec iov[2] = {{block, BLOCK}, {dst, len}};
	ssize_t n;
	do
		n = preadv(img->direct_fd, iov, 2, (off_t)(data - BLOCK));
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		/* EINVAL: the file system wants a stricter alignment; whatever
		 * else it was, the buffered read tells a real error from a
		 * refusal of O_DIRECT. Buffered from now on. */
		atomic_store(&img->direct_refused, 1);
		return 1;
	}
	if ((uint64_t)n != BLOCK + len)
		return 1; /* short: the buffered read finds out why */
	memcpy(head, block + BLOCK - head_len, head_len);
	atomic_fetch_add(&img->direct_bytes, len);
	return 0;
}
