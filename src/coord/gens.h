/* Checkpoint generations in RUNDIR/images (docs/protocol.md):
 *   gen-NNNNNN.partial/  being written; never used for a restart
 *   gen-NNNNNN/          complete and durable: <pid>.img files + manifest
 *   latest               symlink to the newest complete generation
 * A generation becomes complete by one rename, after everything in it
 * is on disk, so a crash at any point leaves either a partial directory
 * (removed at the next start) or a complete one. */
#ifndef CKPT_COORD_GENS_H
#define CKPT_COORD_GENS_H

#include <stddef.h>
#include <stdint.h>

#include "coord/kvfile.h"

#define GENS_DIR "images"
#define GENS_KEEP 2 /* complete generations kept */
#define GENS_MANIFEST "manifest"
/* Beside the manifest of a generation whose pages were found damaged
 * after a restart from it began (by the restorer as it read them, or
 * while a program restored lazily from it ran): one line saying what was
 * found. gens_verify reports such a generation damaged from then on
 * without reading it again. */
#define GENS_DAMAGED "damaged"

/* "gen-000042" or "gen-000042.partial" */
void gens_name(char *buf, size_t len, uint64_t gen, int partial);

struct gens_scan {
	uint64_t *complete; /* ascending */
	size_t ncomplete;
	uint64_t highest; /* highest number in use, complete or partial (0: none) */
	size_t npartial;
};

int gens_scan(int imagesfd, struct gens_scan *s);
void gens_scan_free(struct gens_scan *s);

/* The generation a restart should use: the target of `latest` when it
 * names a complete generation, else the newest complete one. Returns 1
 * and sets *gen, 0 when there is none, -1 on error. */
int gens_latest(int imagesfd, uint64_t *gen);

/* Remove every gen-*.partial directory (left by a crash). Only with the
 * run directory's lock held. Returns how many were removed, or -1. */
int gens_remove_partials(int imagesfd);

/* Create gen-N.partial (mode 0700). */
int gens_begin(int imagesfd, uint64_t gen);
/* Make gen-N.partial complete: sync its files' directory entries, write
 * the manifest, rename it to gen-N, point latest at it, sync images/. */
int gens_commit(int imagesfd, uint64_t gen, const struct kvfile *manifest);
/* Remove gen-N.partial after a failed checkpoint. */
int gens_abort(int imagesfd, uint64_t gen);
/* Keep the keep newest complete generations that are not listed in
 * damaged (known to be damaged: they do not count), remove every complete
 * generation older than the oldest of those and than the oldest one they
 * refer to (their manifests' parent chains). Only called right after a
 * new generation is complete, so what remains always holds `keep` intact
 * ones once there are that many. Returns the number removed or -1. */
int gens_prune(int imagesfd, int keep, const uint64_t *damaged, size_t ndamaged);
/* The generation gen's images may refer to (its manifest's parent), 0 for
 * a full generation or when it cannot be read. */
uint64_t gens_parent(int imagesfd, uint64_t gen);

/* Write images/gen-N/damaged: "found at TIME by BY: WHY", made
 * durable. Returns 0, or -1 with the error set. */
int gens_mark_damaged(int imagesfd, uint64_t gen, const char *by, const char *why);
/* 1 when images/gen-N has the damaged mark, else 0. */
int gens_marked_damaged(int imagesfd, uint64_t gen);

/* Open images/gen-N (O_DIRECTORY) or -1. */
int gens_open(int imagesfd, uint64_t gen);
/* Bytes of the regular files in images/NAME (a generation's directory,
 * complete or partial); 0 if it cannot be read. */
uint64_t gens_dir_bytes(int imagesfd, const char *name);
/* The root process image of a complete generation: the manifest's
 * root_image, or the only *.img file when there is no manifest. Writes
 * the file name into name. */
int gens_root_image(int imagesfd, uint64_t gen, char *name, size_t len);

#endif
