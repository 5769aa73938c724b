/* Verifying a complete checkpoint generation: its manifest and every
 * image in it, with every checksum (docs/reliability.md). Used by
 * `ckpt verify`, by `ckpt restart` before it uses a generation (and to
 * fall back to an older one), and by the coordinator before a new
 * generation becomes `latest`. */
#ifndef CKPT_COORD_VERIFY_H
#define CKPT_COORD_VERIFY_H

#include <stdint.h>
#include <stdio.h>

struct gen_verdict {
	int damaged;	     /* number of problems found */
	char first[1200];    /* the first problem, one line: "2.img: section PAGES: ..." */
	unsigned nimages;    /* images that passed */
	uint64_t bytes;	     /* their total size */
	char root_image[64]; /* the manifest's root_image (when it is sound) */
	int32_t root_pid;    /* the pid recorded in the root image (0: unknown) */
	int first_status;    /* wait status of the first program if it had ended
				before the checkpoint (manifest main_status), else -1 */
	int decode;	     /* in: decompress compressed chunks too (ckpt verify) */
	uint64_t parent;     /* the generation this one builds on (0: full) */
};

/* Verify images/gen-N (complete generation), and the generations its
 * incremental images refer to. imagesfd is RUNDIR/images,
 * images_path its path (for messages and for opening the images). Every
 * problem is also printed to out as "  <what>: <problem>" (out may be
 * NULL). Returns 0 when everything is sound, 1 when something is wrong
 * (v->first says what). Never changes anything on disk. */
int gens_verify(int imagesfd, const char *images_path, uint64_t gen, FILE *out,
		struct gen_verdict *v);

#endif
