/* The restorer's prepare stage (ckpt-restore): reads and checks the image
 * with libc's help, recreates file descriptors and process attributes,
 * stages the saved memory inside a hole of the restored address space,
 * lays out the plan, and hands over to the freestanding final stage. */
#ifndef CKPT_RESTORE_H
#define CKPT_RESTORE_H

#include <stddef.h>
#include <stdint.h>

#include "image/reader.h"
#include "restore/plan.h"

/* One-line error message of the last failure. */
extern char restore_error[1024];
int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print restore_error and exit with status 2. */
__attribute__((noreturn)) void report_and_exit(void);

/* A mapping of the restorer itself, from /proc/self/maps. */
struct live_map {
	uint64_t start, end;
	char name[64];
};
int live_maps(struct live_map *out, int cap);

/* tree.c: the processes of the generation, forked with their pids */
#define TREE_MAX 4096
struct tree_proc {
	struct ckpt_image *img;
	int32_t pid, ppid;
	int parent; /* index of the parent, -1: a child of init */
};
struct tree {
	struct tree_proc procs[TREE_MAX]; /* by pid */
	int n, root;
	int min_private; /* every process's descriptors are below */
	int ready[2], go[2];
	char dir[4096]; /* the generation's directory */
};
extern struct tree tree;
int tree_load(const char *root_image);
/* Returns, in each process of the tree, the index it is to become. */
int tree_spawn(void);
int tree_barrier(int self);
void tree_join_group(const struct ckpt_image *img);
/* Whether pid is a process or a zombie the generation gives back. */
int tree_gives_back(int32_t pid);

/* fds.c: kernel objects several processes share, made before the fork */
struct fd_context;
int shared_prepare(struct fd_context *c);
/* memory.c: one memfd per shared memory object of the generation */
int shm_prepare(void);
/* The shared memory object made for the file (a deleted one, or a memfd)
 * with this identity (dev as fstat gives it), -1 if no process of the
 * generation maps it or this process has closed it. */
int shm_fd_of_file(uint64_t st_dev, uint64_t ino);
/* Close the memfds the plan does not map, but (img not NULL) those that
 * img's descriptors of deleted files still need. */
struct plan;
void shm_close_unused(const struct plan *p, const struct ckpt_image *img);

/* checks.c: refuse an image this machine cannot run */
int check_compatible(const struct ckpt_image *img);

/* fds.c: recreate the program's descriptors; keep ours above them */
struct fd_context {
	int stdio[3]; /* the new supervisor's stdin/stdout/stderr */
	int ctl;      /* new coordinator connection, or -1 */
	int err;      /* where errors go once stderr is the program's */
	int image;
	int min_private; /* our descriptors live at or above this */
};
int fds_prepare_stdio(struct fd_context *c, int min_private);
/* The file the checkpoint kept for dev/ino (a hard link in the
 * generation's files/, agent/keep.c), opened with flags: -1 if there is
 * none; name gets its path. */
int kept_open(uint64_t dev, uint64_t ino, int flags, char *name, size_t cap);
/* stdin a regular file: seek it to where img's process was; 0 if img
 * does not say (its stdin was no file, or read nothing) */
int fds_resume_stdin(struct fd_context *c, const struct ckpt_image *img);
int fds_prepare(struct fd_context *c, const struct ckpt_image *img, int min_private);
int fds_restore(struct fd_context *c, const struct ckpt_image *img);
/* Files the process maps shared and writable (section SHARED_FILES) put
 * back to their content at the checkpoint, before they are mapped again;
 * one gone or replaced is left to the mapping's check, which names it. */
int shared_files_restore(const struct ckpt_image *img);
int fd_private(struct fd_context *c, int fd); /* move fd above the program's */

/* memory.c: the blob region, staging, the plan */
struct plan *plan_build(struct ckpt_image *img, struct fd_context *c);
/* ckpt-restore --lazy: uncompressed chunks of private memory are mapped
 * from the image files instead of read (docs/design.md, lazy restart). */
extern int restore_lazy;

/* attrs.c: cwd, umask, rlimits */
int attrs_restore(const struct ckpt_image *img);

/* jump.c */
__attribute__((noreturn)) void hand_over(struct plan *plan);

#endif
