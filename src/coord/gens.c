#include "coord/gens.h"

#include "coord/err.h"
#include "coord/fsutil.h"
#include "coord/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void gens_name(char *buf, size_t len, uint64_t gen, int partial)
{
	snprintf(buf, len, "gen-%06llu%s", (unsigned long long)gen, partial ? ".partial" : "");
}

/* Parse "gen-<digits>" or "gen-<digits>.partial"; returns 1 (complete),
 * 2 (partial) or 0 (not a generation). */
static int parse_name(const char *name, uint64_t *gen)
{
	if (strncmp(name, "gen-", 4) != 0 || name[4] < '0' || name[4] > '9')
		return 0;
	char *end;
	errno = 0;
	unsigned long long g = strtoull(name + 4, &end, 10);
	if (errno || end - (name + 4) > 18)
		return 0;
	*gen = g;
	if (*end == '\0')
		return 1;
	return strcmp(end, ".partial") == 0 ? 2 : 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int gens_scan(int imagesfd, struct gens_scan *s)
{
	memset(s, 0, sizeof(*s));
	int fd = openat(imagesfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return ckpt_fail_errno("cannot open %s", GENS_DIR);
	DIR *d = fdopendir(fd);
	if (!d) {
		ckpt_fail_errno("cannot read %s", GENS_DIR);
		close(fd);
		return -1;
	}
	size_t cap = 0;
	struct dirent *e;
	while ((errno = 0, e = readdir(d))) {
		uint64_t g;
		int kind = parse_name(e->d_name, &g);
		if (!kind)
			continue;
		if (g > s->highest)
			s->highest = g;
		if (kind == 2) {
			s->npartial++;
			continue;
		}
		if (s->ncomplete == cap) {
			cap = cap ? 2 * cap : 8;
			uint64_t *n = realloc(s->complete, cap * sizeof(*n));
			if (!n) {
				closedir(d);
				gens_scan_free(s);
				return ckpt_fail("out of memory");
			}
			s->complete = n;
		}
		s->complete[s->ncomplete++] = g;
	}
	if (errno) {
		ckpt_fail_errno("cannot read %s", GENS_DIR);
		closedir(d);
		gens_scan_free(s);
		return -1;
	}
	closedir(d);
	qsort(s->complete, s->ncomplete, sizeof(uint64_t), cmp_u64);
	return 0;
}

void gens_scan_free(struct gens_scan *s)
{
	free(s->complete);
	s->complete = NULL;
	s->ncomplete = 0;
}

int gens_latest(int imagesfd, uint64_t *gen)
{
	char target[64];
	ssize_t n = readlinkat(imagesfd, "latest", target, sizeof(target) - 1);
	if (n > 0) {
		target[n] = '\0';
		struct stat st;
		uint64_t g;
		if (parse_name(target, &g) == 1 &&
		    fstatat(imagesfd, target, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISDIR(st.st_mode)) {
			*gen = g;
			return 1;
		}
	}
	/* latest missing or dangling (a crash between rename and symlink, or
	 * a hand-edited directory): fall back to the newest complete one. */
	struct gens_scan s;
	if (gens_scan(imagesfd, &s) < 0)
		return -1;
	int found = s.ncomplete > 0;
	if (found)
		*gen = s.complete[s.ncomplete - 1];
	gens_scan_free(&s);
	return found;
}

int gens_remove_partials(int imagesfd)
{
	int removed = 0;
	for (;;) {
		int fd = openat(imagesfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return ckpt_fail_errno("cannot open %s", GENS_DIR);
		DIR *d = fdopendir(fd);
		if (!d) {
			ckpt_fail_errno("cannot read %s", GENS_DIR);
			close(fd);
			return -1;
		}
		/* Collect a batch first: removing while readdir walks is
		 * unspecified. Repeat until none is left. */
		char names[64][64];
		int count = 0;
		struct dirent *e;
		while ((e = readdir(d)) && count < 64) {
			uint64_t g;
			size_t n = strlen(e->d_name);
			if (parse_name(e->d_name, &g) == 2 && n < sizeof(names[0]))
				memcpy(names[count++], e->d_name, n + 1);
		}
		closedir(d);
		for (int i = 0; i < count; i++) {
			if (rmtree_at(imagesfd, names[i]) < 0)
				return -1;
			removed++;
		}
		if (count < 64)
			return removed;
	}
}

int gens_begin(int imagesfd, uint64_t gen)
{
	char name[64];
	gens_name(name, sizeof(name), gen, 1);
	if (mkdirat(imagesfd, name, 0700) < 0)
		return ckpt_fail_errno("cannot create %s/%s", GENS_DIR, name);
	return 0;
}

int gens_open(int imagesfd, uint64_t gen)
{
	char name[64];
	gens_name(name, sizeof(name), gen, 0);
	int fd = openat(imagesfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return ckpt_fail_errno("cannot open %s/%s", GENS_DIR, name);
	return fd;
}

int gens_mark_damaged(int imagesfd, uint64_t gen, const char *by, const char *why)
{
	int gfd = gens_open(imagesfd, gen);
	if (gfd < 0)
		return -1;
	char ts[32], text[1600];
	ckpt_format_time(ts, sizeof(ts), ckpt_now_ms());
	int n = snprintf(text, sizeof(text), "found at %s by %s: %s\n", ts, by, why);
	if (n >= (int)sizeof(text)) {
		n = (int)sizeof(text) - 1;
		text[n - 1] = '\n';
	}
	int fd =
	    openat(gfd, GENS_DAMAGED, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	int r = fd >= 0 && write_all(fd, text, (size_t)n) == 0 && fsync(fd) == 0 ? 0 : -1;
	if (r < 0)
		ckpt_fail_errno("cannot mark generation %llu damaged", (unsigned long long)gen);
	if (fd >= 0)
		close(fd);
	close(gfd);
	return r;
}

int gens_marked_damaged(int imagesfd, uint64_t gen)
{
	char name[64 + sizeof(GENS_DAMAGED)];
	gens_name(name, sizeof(name), gen, 0);
	strcat(name, "/" GENS_DAMAGED);
	return faccessat(imagesfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

uint64_t gens_dir_bytes(int imagesfd, const char *name)
{
	int g = openat(imagesfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = g >= 0 ? fdopendir(g) : NULL;
	if (!d) {
		if (g >= 0)
			close(g);
		return 0;
	}
	uint64_t total = 0;
	struct dirent *e;
	struct stat st;
	while ((e = readdir(d)))
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode))
			total += (uint64_t)st.st_size;
	closedir(d);
	return total;
}

int gens_commit(int imagesfd, uint64_t gen, const struct kvfile *manifest)
{
	char partial[64], final[64];
	gens_name(partial, sizeof(partial), gen, 1);
	gens_name(final, sizeof(final), gen, 0);
	int fd = openat(imagesfd, partial, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return ckpt_fail_errno("cannot open %s/%s", GENS_DIR, partial);
	/* The agents fsync'd their images and renamed them into place; this
	 * makes those names durable, then the manifest. */
	int rc = kv_write(manifest, fd, GENS_MANIFEST,
			  "# ckpt generation manifest (docs/protocol.md)\n", 0600);
	if (rc == 0)
		rc = fsync_dir(fd, partial);
	close(fd);
	if (rc < 0)
		return -1;
	if (renameat(imagesfd, partial, imagesfd, final) < 0)
		return ckpt_fail_errno("cannot rename %s to %s", partial, final);
	/* latest: a new symlink under a temporary name, renamed over the old
	 * one, so readers always see an old or a new target. */
	if (unlinkat(imagesfd, "latest.tmp", 0) < 0 && errno != ENOENT)
		return ckpt_fail_errno("cannot remove %s/latest.tmp", GENS_DIR);
	if (symlinkat(final, imagesfd, "latest.tmp") < 0)
		return ckpt_fail_errno("cannot create %s/latest.tmp", GENS_DIR);
	if (renameat(imagesfd, "latest.tmp", imagesfd, "latest") < 0)
		return ckpt_fail_errno("cannot rename %s/latest.tmp to latest", GENS_DIR);
	return fsync_dir(imagesfd, GENS_DIR);
}

int gens_abort(int imagesfd, uint64_t gen)
{
	char name[64];
	gens_name(name, sizeof(name), gen, 1);
	return rmtree_at(imagesfd, name);
}

uint64_t gens_parent(int imagesfd, uint64_t gen)
{
	int gfd = gens_open(imagesfd, gen);
	if (gfd < 0)
		return 0;
	struct kvfile kv;
	uint64_t parent = 0;
	if (kv_read(&kv, gfd, GENS_MANIFEST) == 0) {
		const char *p = kv_get(&kv, "parent");
		if (p && *p >= '1' && *p <= '9')
			parent = strtoull(p, NULL, 10);
		kv_free(&kv);
	}
	close(gfd);
	return parent < gen ? parent : 0;
}

int gens_prune(int imagesfd, int keep, const uint64_t *damaged, size_t ndamaged)
{
	struct gens_scan s;
	if (gens_scan(imagesfd, &s) < 0)
		return -1;
	/* Newest first: find the oldest generation still kept. */
	size_t cut = 0; /* s.complete[0..cut) are removed */
	int kept = 0;
	for (size_t i = s.ncomplete; i-- > 0;) {
		int bad = 0;
		for (size_t j = 0; j < ndamaged; j++)
			bad |= damaged[j] == s.complete[i];
		if (!bad && ++kept == keep) {
			cut = i;
			break;
		}
	}
	/* Generations kept need the ones their incremental images refer to,
	 * all the way down to a full one. */
	uint64_t oldest = s.ncomplete ? s.complete[cut] : 0;
	for (size_t i = cut; i < s.ncomplete; i++)
		for (uint64_t p = gens_parent(imagesfd, s.complete[i]); p;
		     p = gens_parent(imagesfd, p))
			if (p < oldest)
				oldest = p;
	int removed = 0;
	for (size_t i = 0; i < cut && s.complete[i] < oldest; i++) {
		char name[64];
		gens_name(name, sizeof(name), s.complete[i], 0);
		if (rmtree_at(imagesfd, name) < 0) {
			gens_scan_free(&s);
			return -1;
		}
		removed++;
	}
	gens_scan_free(&s);
	return removed;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

int gens_root_image(int imagesfd, uint64_t gen, char *name, size_t len)
{
	int gfd = gens_open(imagesfd, gen);
	if (gfd < 0)
		return -1;
	struct kvfile kv;
	if (kv_read(&kv, gfd, GENS_MANIFEST) == 0) {
		const char *root = kv_get(&kv, "root_image");
		int ok = root && !strchr(root, '/') && ends_with(root, ".img");
		if (ok)
			snprintf(name, len, "%s", root);
		kv_free(&kv);
		close(gfd);
		if (!ok)
			return ckpt_fail("generation %llu: the manifest names no root_image",
					 (unsigned long long)gen);
		return 0;
	}
	if (errno != ENOENT) {
		close(gfd);
		return -1;
	}
	/* No manifest: accept a generation holding exactly one image. */
	DIR *d = fdopendir(gfd);
	if (!d) {
		ckpt_fail_errno("cannot read generation %llu", (unsigned long long)gen);
		close(gfd);
		return -1;
	}
	int count = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (ends_with(e->d_name, ".img") && count++ == 0)
			snprintf(name, len, "%s", e->d_name);
	closedir(d);
	if (count != 1)
		return ckpt_fail("generation %llu holds %d process images and no manifest",
				 (unsigned long long)gen, count);
	return 0;
}
