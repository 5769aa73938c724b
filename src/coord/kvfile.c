#include "coord/kvfile.h"

#include "coord/err.h"
#include "coord/fsutil.h"
#include "coord/proto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KV_FILE_MAX (1 << 20) /* config and manifests are small; refuse junk */

void kv_init(struct kvfile *kv)
{
	kv->entries = NULL;
	kv->count = kv->cap = 0;
}

void kv_free(struct kvfile *kv)
{
	for (size_t i = 0; i < kv->count; i++) {
		free(kv->entries[i].key);
		free(kv->entries[i].value);
	}
	free(kv->entries);
	kv_init(kv);
}

int kv_add(struct kvfile *kv, const char *key, const char *value)
{
	if (kv->count == kv->cap) {
		size_t cap = kv->cap ? 2 * kv->cap : 16;
		struct kv_entry *e = realloc(kv->entries, cap * sizeof(*e));
		if (!e)
			return ckpt_fail("out of memory");
		kv->entries = e;
		kv->cap = cap;
	}
	char *k = strdup(key), *v = strdup(value);
	if (!k || !v) {
		free(k);
		free(v);
		return ckpt_fail("out of memory");
	}
	kv->entries[kv->count].key = k;
	kv->entries[kv->count].value = v;
	kv->count++;
	return 0;
}

int kv_addf(struct kvfile *kv, const char *key, const char *fmt, ...)
{
	char *v;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&v, fmt, ap);
	va_end(ap);
	if (n < 0)
		return ckpt_fail("out of memory");
	int r = kv_add(kv, key, v);
	free(v);
	return r;
}

const char *kv_get(const struct kvfile *kv, const char *key)
{
	for (size_t i = 0; i < kv->count; i++)
		if (strcmp(kv->entries[i].key, key) == 0)
			return kv->entries[i].value;
	return NULL;
}

int kv_write(const struct kvfile *kv, int dirfd, const char *name, const char *header, int mode)
{
	char tmp[256];
	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return ckpt_fail_errno("cannot create %s", tmp);
	int ok = 1;
	if (header)
		ok = write_all(fd, header, strlen(header)) == 0;
	for (size_t i = 0; ok && i < kv->count; i++) {
		const char *v = kv->entries[i].value;
		size_t need = ckpt_pct_encode(NULL, 0, v, strlen(v));
		size_t klen = strlen(kv->entries[i].key);
		char *line = malloc(klen + need + 3);
		if (!line) {
			close(fd);
			unlinkat(dirfd, tmp, 0);
			return ckpt_fail("out of memory");
		}
		memcpy(line, kv->entries[i].key, klen);
		line[klen] = '=';
		ckpt_pct_encode(line + klen + 1, need + 1, v, strlen(v));
		line[klen + 1 + need] = '\n';
		ok = write_all(fd, line, klen + need + 2) == 0;
		free(line);
	}
	if (!ok || fsync(fd) < 0) {
		ckpt_fail_errno("cannot write %s", tmp);
		close(fd);
		unlinkat(dirfd, tmp, 0);
		return -1;
	}
	if (close(fd) < 0) {
		ckpt_fail_errno("cannot write %s", tmp);
		unlinkat(dirfd, tmp, 0);
		return -1;
	}
	if (renameat(dirfd, tmp, dirfd, name) < 0) {
		ckpt_fail_errno("cannot rename %s to %s", tmp, name);
		unlinkat(dirfd, tmp, 0);
		return -1;
	}
	return 0;
}

static int parse_line(struct kvfile *kv, const char *name, unsigned lineno, char *line, size_t len)
{
	if (len == 0 || line[0] == '#')
		return 0;
	char *eq = memchr(line, '=', len);
	if (!eq || eq == line)
		return ckpt_fail("%s line %u: expected key=value", name, lineno);
	for (char *k = line; k < eq; k++)
		if (!((*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') || *k == '_'))
			return ckpt_fail("%s line %u: bad key", name, lineno);
	*eq = '\0';
	size_t vlen = len - (size_t)(eq + 1 - line);
	char *value = malloc(vlen + 1);
	if (!value)
		return ckpt_fail("out of memory");
	if (ckpt_pct_decode(value, vlen + 1, eq + 1, vlen) < 0) {
		free(value);
		return ckpt_fail("%s line %u: badly encoded value for %s", name, lineno, line);
	}
	int r = kv_add(kv, line, value);
	free(value);
	return r;
}

int kv_read(struct kvfile *kv, int dirfd, const char *name)
{
	kv_init(kv);
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return ckpt_fail_errno("cannot open %s", name);
	struct stat st;
	if (fstat(fd, &st) < 0) {
		ckpt_fail_errno("cannot stat %s", name);
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > KV_FILE_MAX) {
		close(fd);
		return ckpt_fail("%s is not a regular file of at most %d bytes", name, KV_FILE_MAX);
	}
	char *buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return ckpt_fail("out of memory");
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ckpt_fail_errno("cannot read %s", name);
			free(buf);
			close(fd);
			return -1;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	buf[got] = '\0';
	unsigned lineno = 0;
	for (char *p = buf; p < buf + got;) {
		char *nl = memchr(p, '\n', (size_t)(buf + got - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(buf + got - p);
		lineno++;
		if (!nl) {
			/* A last line without "\n": the file was cut short. */
			free(buf);
			kv_free(kv);
			return ckpt_fail("%s line %u: truncated", name, lineno);
		}
		if (parse_line(kv, name, lineno, p, len) < 0) {
			free(buf);
			kv_free(kv);
			return -1;
		}
		p += len + 1;
	}
	free(buf);
	return 0;
}
