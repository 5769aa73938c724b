/* Restart of a generation that holds GPU state: can this node take it?
 * Checked before anything in the run directory changes. */
#ifndef CKPT_COORD_GPUNODE_H
#define CKPT_COORD_GPUNODE_H

#include <stddef.h>
#include <stdint.h>

struct kvfile;

/* From the generation's manifest: the pids (in the program's namespace)
 * whose GPU state the driver saved, malloc'd into *pids (NULL, 0: none).
 * When there are any, the node needs the NVIDIA driver library, a recent
 * enough driver, and a GPU of the recorded model with at least the
 * recorded memory. Returns 0, or -1 with the reason set (ckpt_error). */
int gpunode_check(const struct kvfile *manifest, int64_t **pids, size_t *npids);

#endif
