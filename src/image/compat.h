/* Whether this machine can run an image at all: a CPU that enables every
 * XSAVE component and has every instruction-set feature the saved state
 * may use, and a kernel whose vDSO/vvar are laid out as when it was saved
 * (the program's libc keeps pointers into them). ckpt restart checks this
 * before it changes anything in the run directory; the restorer checks it
 * again in the process it becomes. Same kernel and CPU type as this very
 * process: the checks read this process's own CPU and /proc/self/maps. */
#ifndef CKPT_IMAGE_COMPAT_H
#define CKPT_IMAGE_COMPAT_H

#include <stddef.h>

#include "image/reader.h"

/* 0, or -1 with a one-line message saying what differs and what to do. */
int ckpt_image_check_machine(const struct ckpt_image *img, char *err, size_t errlen);

#endif
