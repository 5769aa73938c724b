/* Reading page data around the page cache (O_DIRECT). */
#ifndef CKPT_IMAGE_DIRECT_H
#define CKPT_IMAGE_DIRECT_H

#include <stdint.h>

struct ckpt_image;

/* Opens img->direct_fd when reading the image with O_DIRECT pays: the
 * file is mostly not in the page cache and the file system takes O_DIRECT.
 * Leaves it -1 otherwise; a failure only means buffered reads. */
void ckpt_image_direct_open(struct ckpt_image *img);
void ckpt_image_direct_close(struct ckpt_image *img);

/* Reads a raw chunk's 24-byte header into head and its len bytes of data
 * into dst with one O_DIRECT read, data at file offset `data`. Returns 0,
 * or 1 when this chunk cannot be read so (alignment; or the read failed,
 * and direct reads are off for the image from then on) and the caller
 * reads it through the page cache, which reports a real error. */
int ckpt_image_direct_read(struct ckpt_image *img, void *head, uint64_t head_len, void *dst,
			   uint64_t len, uint64_t data);

#endif
