/* Small text files of "key=value" lines (the run directory's config and
 * each generation's manifest). Values are percent-encoded like protocol
 * fields (docs/protocol.md), so any byte string fits on one line; lines
 * starting with '#' are comments; a key may repeat (ordered lists). */
#ifndef CKPT_COORD_KVFILE_H
#define CKPT_COORD_KVFILE_H

#include <stddef.h>

struct kv_entry {
	char *key;
	char *value; /* decoded */
};

struct kvfile {
	struct kv_entry *entries;
	size_t count, cap;
};

void kv_init(struct kvfile *kv);
void kv_free(struct kvfile *kv);
int kv_add(struct kvfile *kv, const char *key, const char *value);
int kv_addf(struct kvfile *kv, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* First value of key, or NULL. */
const char *kv_get(const struct kvfile *kv, const char *key);

/* Write the entries to DIR/name durably: a temporary file, fsync, rename,
 * so a crash leaves the old file or the new one, never half of one.
 * header is written as a leading comment (may be NULL). The directory
 * itself is not fsync'd: callers do that once for a batch of changes. */
int kv_write(const struct kvfile *kv, int dirfd, const char *name, const char *header, int mode);
/* Read DIR/name. Returns 0, or -1 (errno ENOENT kept for a missing file)
 * with a message naming the file and line of a malformed entry. */
int kv_read(struct kvfile *kv, int dirfd, const char *name);

#endif
