/* File-system helpers shared by the coordinator and the CLI. All take a
 * directory descriptor so paths stay short and cannot be swapped under us
 * by a rename of a parent. */
#ifndef CKPT_COORD_FSUTIL_H
#define CKPT_COORD_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* write(2) until done, retrying EINTR and short writes; -1 with errno. */
int write_all(int fd, const void *buf, size_t len);
/* fsync a directory given by a descriptor (makes renames in it durable). */
int fsync_dir(int dirfd, const char *what);
/* Remove DIR/name and, if it is a directory, everything below it (never
 * following symlinks). A missing name is not an error. */
int rmtree_at(int dirfd, const char *name);
/* Read at most len-1 bytes of DIR/name into buf (NUL-terminated); returns
 * the length or -1 (errno kept). */
ssize_t read_small(int dirfd, const char *name, char *buf, size_t len);

#endif
