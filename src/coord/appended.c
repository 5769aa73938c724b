/* Files the program appends to, and their sizes at each checkpoint.
 *
 * The agents write a line "DEV INO PATH" to the run directory's journal
 * (APPEND_JOURNAL) for each regular file a process opens with O_APPEND
 * (src/agent/appendlog.c). While every process is stopped for a
 * checkpoint, the coordinator reads what is new in the journal and records
 * the size of each file still at its path (the same device and inode);
 * the generation's manifest lists them ("appended=SIZE DEV INO PATH"). A
 * restart from that generation cuts back each of them that grew since: the
 * restarted program appends those bytes again. Files open at the
 * checkpoint are also handled by the restorer (their descriptors); for
 * them this is the same cut. */
#include "coord/coord_int.h"

#include "coord/err.h"
#include "coord/gens.h"
#include "coord/kvfile.h"
#include "coord/log.h"
#include "coord/proto.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define APPEND_JOURNAL "appended"
/* More distinct files than this are not followed (logged once). */
#define APPENDED_MAX 4096

/* The journal's path encoding: "%XX" for "%" and newline, every other
 * byte as it is (so not ckpt_pct_decode, which wants protocol fields). */
static int decode_path(char *dst, const char *src, size_t len)
{
	size_t out = 0;
	for (size_t i = 0; i < len; i++) {
		if (src[i] != '%') {
			dst[out++] = src[i];
			continue;
		}
		int hi = i + 2 < len ? ckpt_hexval(src[i + 1]) : -1,
		    lo = hi < 0 ? -1 : ckpt_hexval(src[i + 2]);
		if (lo < 0 || (hi << 4 | lo) == 0)
			return -1;
		dst[out++] = (char)(hi << 4 | lo);
		i += 2;
	}
	dst[out] = '\0';
	return 0;
}

/* One journal line; 0, or -1 if it is not one. */
static int parse_line(const char *line, size_t len, struct appended_file *f)
{
	char *end;
	errno = 0;
	f->dev = strtoull(line, &end, 10);
	if (errno || *end != ' ')
		return -1;
	f->ino = strtoull(end + 1, &end, 10);
	if (errno || *end != ' ' || end[1] != '/')
		return -1;
	const char *path = end + 1;
	size_t plen = len - (size_t)(path - line);
	if (!(f->path = malloc(plen + 1)) || decode_path(f->path, path, plen) < 0) {
		free(f->path);
		f->path = NULL;
		return -1;
	}
	return 0;
}

static int known(const struct coord *c, const struct appended_file *f)
{
	for (size_t i = 0; i < c->nappended; i++)
		if (c->appended[i].dev == f->dev && c->appended[i].ino == f->ino &&
		    strcmp(c->appended[i].path, f->path) == 0)
			return 1;
	return 0;
}

/* The journal's new lines (whole ones) into c->appended. */
static void read_journal(struct coord *c)
{
	int fd = openat(c->o->dirfd, APPEND_JOURNAL, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	char buf[65536];
	size_t have = 0;
	for (;;) {
		ssize_t n =
		    pread(fd, buf + have, sizeof(buf) - have, (off_t)(c->appended_read + have));
		if (n <= 0)
			break;
		have += (size_t)n;
		size_t start = 0;
		for (size_t i = 0; i < have; i++) {
			if (buf[i] != '\n')
				continue;
			struct appended_file f = {0};
			if (parse_line(buf + start, i - start, &f) == 0) {
				if (known(c, &f) || c->nappended == APPENDED_MAX) {
					if (c->nappended == APPENDED_MAX && !c->appended_full++)
						ckpt_log(c->o->exec_log,
							 "more than %d files appended to: the "
							 "others are not cut back at restart",
							 APPENDED_MAX);
					free(f.path);
				} else {
					c->appended[c->nappended++] = f;
				}
			}
			start = i + 1;
		}
		c->appended_read += start;
		if (start == 0 && have == sizeof(buf))
			c->appended_read += have; /* a line too long for any path */
		memmove(buf, buf + start, have - start);
		have = start == 0 && have == sizeof(buf) ? 0 : have - start;
	}
	close(fd);
}

void appended_snapshot(struct coord *c)
{
	if (!c->appended && !(c->appended = calloc(APPENDED_MAX, sizeof(*c->appended))))
		return;
	read_journal(c);
	for (size_t i = 0; i < c->nappended; i++) {
		struct appended_file *f = &c->appended[i];
		struct stat st;
		f->present = stat(f->path, &st) == 0 && S_ISREG(st.st_mode) &&
			     (uint64_t)st.st_dev == f->dev && (uint64_t)st.st_ino == f->ino;
		f->size = f->present ? (uint64_t)st.st_size : 0;
	}
}

int appended_manifest(struct coord *c, struct kvfile *kv)
{
	int rc = 0;
	for (size_t i = 0; i < c->nappended; i++) {
		const struct appended_file *f = &c->appended[i];
		if (f->present)
			rc |= kv_addf(kv, "appended", "%" PRIu64 " %" PRIu64 " %" PRIu64 " %s",
				      f->size, f->dev, f->ino, f->path);
	}
	return rc;
}

void appended_free(struct coord *c)
{
	for (size_t i = 0; i < c->nappended; i++)
		free(c->appended[i].path);
	free(c->appended);
	c->appended = NULL;
	c->nappended = 0;
}

/* One manifest entry: cut the file back if it is the one recorded and
 * grew since. */
static void cut_back(const char *entry, struct ckpt_log *log)
{
	uint64_t size, dev, ino;
	int at = 0;
	if (sscanf(entry, "%" SCNu64 " %" SCNu64 " %" SCNu64 " %n", &size, &dev, &ino, &at) != 3 ||
	    entry[at] != '/')
		return;
	const char *path = entry + at;
	struct stat st;
	if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_dev != dev ||
	    (uint64_t)st.st_ino != ino) {
		ckpt_log(log,
			 "%s: appended to before the checkpoint, now another file or gone; left "
			 "as it is",
			 path);
		return;
	}
	if ((uint64_t)st.st_size == size)
		return;
	if ((uint64_t)st.st_size < size) {
		ckpt_log(log,
			 "%s: shorter than at the checkpoint (%lld < %" PRIu64
			 " bytes); left as it is",
			 path, (long long)st.st_size, size);
		return;
	}
	int fd = open(path, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat again;
	if (fd < 0 || fstat(fd, &again) != 0 || again.st_ino != st.st_ino ||
	    again.st_dev != st.st_dev || ftruncate(fd, (off_t)size) != 0) {
		ckpt_log(log,
			 "%s: cannot cut it back to its %" PRIu64 " bytes at the checkpoint: %s",
			 path, size, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	close(fd);
	ckpt_log(log,
		 "%s: cut back from %lld to %" PRIu64 " bytes appended after the checkpoint (the "
		 "program appends them again)",
		 path, (long long)st.st_size, size);
}

void appended_cut_back(int imagesfd, uint64_t gen, struct ckpt_log *log)
{
	int gfd = gens_open(imagesfd, gen);
	if (gfd < 0)
		return;
	struct kvfile kv;
	if (kv_read(&kv, gfd, GENS_MANIFEST) == 0) {
		for (size_t i = 0; i < kv.count; i++)
			if (strcmp(kv.entries[i].key, "appended") == 0)
				cut_back(kv.entries[i].value, log);
		kv_free(&kv);
	}
	close(gfd);
}
