/* libFuzzer target for the image reader: the input is an image file.
 * Opens it through a memfd (the reader takes a path) and verifies all
 * pages, once only verifying and once delivering them to a buffer, so both
 * paths of ckpt_image_read_pages run. Seeds: tests/fuzz/corpus/image,
 * written by `test_image --write-seed DIR`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "image/reader.h"

struct dest {
	char *buf;
	size_t size;
};

/* Chunks that fit go to the buffer, others are only verified. */
static void *chunk_dest(void *arg, const struct ckpt_page_chunk *c)
{
	struct dest *d = arg;
	return (uint64_t)c->npages * CKPT_PAGE_SIZE <= d->size ? d->buf : NULL;
}

static void use_strings(const struct ckpt_image *img)
{
	size_t n = strlen(ckpt_image_string(img, img->process.exe_str));
	for (uint32_t i = 0; i < img->nareas; i++)
		n += strlen(ckpt_image_string(img, img->areas[i].name_str));
	for (uint32_t i = 0; i < img->nfds; i++)
		n += strlen(ckpt_image_string(img, img->fds[i].path_str)) +
		     (img->fds[i].data_len ? img->fd_data[img->fds[i].data_off] : 0);
	if (n == (size_t)-1)
		abort();
}

static int take_every_other(void *arg, const struct ckpt_page_chunk *c, uint64_t off)
{
	unsigned *n = arg;
	(void)c;
	(void)off;
	return (*n)++ % 2;
}

static void *skip_dest(void *arg, const struct ckpt_page_chunk *c)
{
	(void)arg;
	(void)c;
	return NULL; /* not wanted: only the listing and the offers run */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	char err[256];

	if (fd < 0) {
		fd = memfd_create("fuzz_image", MFD_CLOEXEC);
		if (fd < 0)
			abort();
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	struct ckpt_image *img = ckpt_image_open(path, err, sizeof err);
	if (!img)
		return 0;
	use_strings(img);
	ckpt_image_read_pages(img, NULL, NULL, err, sizeof err);
	struct dest d = {malloc(2 * CKPT_PAGE_SIZE), 2 * CKPT_PAGE_SIZE};
	if (d.buf)
		ckpt_image_read_pages(img, chunk_dest, &d, err, sizeof err);
	free(d.buf);
	/* a lazy restart's checks: the layout alone, then the chunks
	 * offered for mapping (every other one taken) */
	ckpt_image_check_pages(img, CKPT_CHECK_LAYOUT, err, sizeof err);
	static unsigned offered;
	ckpt_image_read_pages_mapped(img, take_every_other, skip_dest, NULL, &offered, 1, err,
				     sizeof err);
	ckpt_image_close(img);
	return 0;
}
