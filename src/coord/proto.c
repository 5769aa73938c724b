#include "coord/proto.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char hexdig[] = "0123456789ABCDEF";

int ckpt_pct_safe(unsigned char c)
{
	if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
		return 1;
	return c != 0 && strchr("._/:,+@-", c) != NULL;
}

size_t ckpt_pct_encode(char *dst, size_t dstlen, const void *src, size_t len)
{
	const unsigned char *s = src;
	size_t need = 0;
	for (size_t i = 0; i < len; i++) {
		char enc[3];
		size_t n = 1;
		if (ckpt_pct_safe(s[i])) {
			enc[0] = (char)s[i];
		} else {
			enc[0] = '%';
			enc[1] = hexdig[s[i] >> 4];
			enc[2] = hexdig[s[i] & 15];
			n = 3;
		}
		/* Copy only whole escapes so a cut result never ends in "%4". */
		if (dst && need + n < dstlen)
			memcpy(dst + need, enc, n);
		else if (dst && need < dstlen)
			dstlen = need + 1; /* stop writing: the output is cut here */
		need += n;
	}
	if (dst && dstlen)
		dst[need < dstlen ? need : dstlen - 1] = '\0';
	return need;
}

int ckpt_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

long ckpt_pct_decode(char *dst, size_t dstlen, const char *src, size_t len)
{
	size_t out = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];
		if (c == '%') {
			if (len - i < 3)
				return -1;
			int hi = ckpt_hexval(src[i + 1]), lo = ckpt_hexval(src[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = (unsigned char)(hi << 4 | lo);
			if (c == 0)
				return -1; /* values are C strings */
			i += 2;
		} else if (!ckpt_pct_safe(c)) {
			return -1;
		}
		if (out + 1 >= dstlen)
			return -1;
		dst[out++] = (char)c;
	}
	if (dstlen == 0)
		return -1;
	dst[out] = '\0';
	return (long)out;
}

static int seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int seterr(char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static int is_verb_char(char c, int first)
{
	return (c >= 'A' && c <= 'Z') || (!first && ((c >= '0' && c <= '9') || c == '_'));
}

static int is_key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

int ckpt_msg_parse(struct ckpt_msg *m, const char *line, size_t len, char *err, size_t errlen)
{
	m->verb[0] = '\0';
	m->nfields = 0;
	if (len && line[len - 1] == '\n')
		len--;
	if (len + 1 > CKPT_LINE_MAX)
		return seterr(err, errlen, "line longer than %d bytes", CKPT_LINE_MAX);
	size_t i = 0;
	while (i < len && is_verb_char(line[i], i == 0))
		i++;
	if (i == 0)
		return seterr(err, errlen, "line does not start with a verb (A-Z)");
	if (i > CKPT_NAME_MAX)
		return seterr(err, errlen, "verb longer than %d characters", CKPT_NAME_MAX);
	memcpy(m->verb, line, i);
	m->verb[i] = '\0';
	size_t used = 0; /* bytes of m->store in use */
	while (i < len) {
		if (line[i] != ' ')
			return seterr(err, errlen, "unexpected byte 0x%02x at offset %zu",
				      (unsigned char)line[i], i);
		i++;
		size_t k = i;
		while (i < len && is_key_char(line[i]))
			i++;
		if (i == k)
			return seterr(err, errlen, "expected a key (a-z, 0-9, _) at offset %zu", k);
		if (i - k > CKPT_NAME_MAX)
			return seterr(err, errlen, "key at offset %zu longer than %d characters", k,
				      CKPT_NAME_MAX);
		if (i >= len || line[i] != '=')
			return seterr(err, errlen, "key at offset %zu has no '='", k);
		if (m->nfields == CKPT_MSG_MAX_FIELDS)
			return seterr(err, errlen, "more than %d fields", CKPT_MSG_MAX_FIELDS);
		struct ckpt_field *f = &m->fields[m->nfields];
		memcpy(f->key, line + k, i - k);
		f->key[i - k] = '\0';
		for (unsigned j = 0; j < m->nfields; j++)
			if (strcmp(m->fields[j].key, f->key) == 0)
				return seterr(err, errlen, "key %s given twice", f->key);
		size_t v = ++i;
		while (i < len && line[i] != ' ')
			i++;
		/* The decoded value is never longer than the line, so store
		 * (CKPT_LINE_MAX bytes) always has room; checked anyway. */
		long n = ckpt_pct_decode(m->store + used, sizeof(m->store) - used, line + v, i - v);
		if (n < 0)
			return seterr(err, errlen,
				      "bad value for key %s (bytes outside "
				      "[A-Za-z0-9._/:,+@-] must be %%XX, and %%00 is not allowed)",
				      f->key);
		f->value = m->store + used;
		f->len = (size_t)n;
		used += (size_t)n + 1;
		m->nfields++;
	}
	return 0;
}

int ckpt_msg_is(const struct ckpt_msg *m, const char *verb)
{
	return strcmp(m->verb, verb) == 0;
}

const char *ckpt_msg_get(const struct ckpt_msg *m, const char *key)
{
	for (unsigned i = 0; i < m->nfields; i++)
		if (strcmp(m->fields[i].key, key) == 0)
			return m->fields[i].value;
	return NULL;
}

int ckpt_msg_get_u64(const struct ckpt_msg *m, const char *key, uint64_t *out)
{
	const char *v = ckpt_msg_get(m, key);
	if (!v || *v < '0' || *v > '9')
		return -1;
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno || *end)
		return -1;
	*out = x;
	return 0;
}

int ckpt_msg_get_i64(const struct ckpt_msg *m, const char *key, int64_t *out)
{
	const char *v = ckpt_msg_get(m, key);
	if (!v || !*v || !(*v == '-' || (*v >= '0' && *v <= '9')))
		return -1;
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (errno || *end)
		return -1;
	*out = x;
	return 0;
}

/* Room left for content: one byte of the buffer is kept for the '\n'. */
static void line_append(struct ckpt_line *l, const char *s, size_t n)
{
	if (l->overflow || l->len + n > CKPT_LINE_MAX - 1) {
		l->overflow = 1;
		return;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

void ckpt_line_begin(struct ckpt_line *l, const char *verb)
{
	l->len = 0;
	l->overflow = 0;
	line_append(l, verb, strlen(verb));
}

void ckpt_line_mem(struct ckpt_line *l, const char *key, const void *value, size_t len)
{
	line_append(l, " ", 1);
	line_append(l, key, strlen(key));
	line_append(l, "=", 1);
	if (l->overflow)
		return;
	size_t room = CKPT_LINE_MAX - 1 - l->len;
	size_t need = ckpt_pct_encode(NULL, 0, value, len);
	if (need > room) {
		l->overflow = 1;
		return;
	}
	/* room + 1: the encoder writes a NUL, which lands on the byte kept
	 * for the '\n' and is overwritten by ckpt_line_end. */
	ckpt_pct_encode(l->buf + l->len, room + 1, value, len);
	l->len += need;
}

void ckpt_line_str(struct ckpt_line *l, const char *key, const char *value)
{
	ckpt_line_mem(l, key, value, strlen(value));
}

void ckpt_line_u64(struct ckpt_line *l, const char *key, uint64_t value)
{
	char num[24];
	snprintf(num, sizeof(num), "%llu", (unsigned long long)value);
	ckpt_line_str(l, key, num);
}

void ckpt_line_i64(struct ckpt_line *l, const char *key, int64_t value)
{
	char num[24];
	snprintf(num, sizeof(num), "%lld", (long long)value);
	ckpt_line_str(l, key, num);
}

int ckpt_line_end(struct ckpt_line *l)
{
	if (l->overflow)
		return -1;
	l->buf[l->len++] = '\n';
	return 0;
}

void ckpt_linebuf_init(struct ckpt_linebuf *lb)
{
	lb->len = 0;
	lb->done = 0;
}

char *ckpt_linebuf_space(struct ckpt_linebuf *lb, size_t *room)
{
	if (lb->done) {
		memmove(lb->buf, lb->buf + lb->done, lb->len - lb->done);
		lb->len -= lb->done;
		lb->done = 0;
	}
	*room = sizeof(lb->buf) - lb->len;
	return lb->buf + lb->len;
}

void ckpt_linebuf_added(struct ckpt_linebuf *lb, size_t n)
{
	lb->len += n;
}

int ckpt_linebuf_next(struct ckpt_linebuf *lb, char **line, size_t *len)
{
	char *start = lb->buf + lb->done;
	char *nl = memchr(start, '\n', lb->len - lb->done);
	if (!nl) {
		if (lb->done == 0 && lb->len == sizeof(lb->buf))
			return -1;
		return 0;
	}
	*nl = '\0';
	*line = start;
	*len = (size_t)(nl - start);
	lb->done = (size_t)(nl - lb->buf) + 1;
	return 1;
}

size_t ckpt_linebuf_pending(const struct ckpt_linebuf *lb)
{
	return lb->len - lb->done;
}

static int msg_equal(const struct ckpt_msg *a, const struct ckpt_msg *b)
{
	if (strcmp(a->verb, b->verb) || a->nfields != b->nfields)
		return 0;
	for (unsigned i = 0; i < a->nfields; i++) {
		const struct ckpt_field *x = &a->fields[i], *y = &b->fields[i];
		if (strcmp(x->key, y->key) || x->len != y->len ||
		    memcmp(x->value, y->value, x->len))
			return 0;
	}
	return 1;
}

/* Format a parsed message again and check it parses back the same. */
static int check_roundtrip(const struct ckpt_msg *m)
{
	static struct ckpt_line l;
	static struct ckpt_msg again;
	char err[128];
	ckpt_line_begin(&l, m->verb);
	for (unsigned i = 0; i < m->nfields; i++)
		ckpt_line_mem(&l, m->fields[i].key, m->fields[i].value, m->fields[i].len);
	/* Upper-case escapes are never longer than what was parsed. */
	if (ckpt_line_end(&l) != 0)
		return -1;
	if (ckpt_msg_parse(&again, l.buf, l.len, err, sizeof(err)) != 0)
		return -1;
	return msg_equal(m, &again) ? 0 : -1;
}

int ckpt_proto_fuzz_one(const uint8_t *data, size_t size)
{
	static struct ckpt_msg m;
	static struct ckpt_linebuf lb;
	char err[128];
	/* The whole input as one line. */
	if (ckpt_msg_parse(&m, (const char *)data, size, err, sizeof(err)) == 0 &&
	    check_roundtrip(&m) != 0)
		return -1;
	/* The input as a stream, fed in chunks whose sizes come from the data. */
	ckpt_linebuf_init(&lb);
	size_t pos = 0, step = 1;
	while (pos < size) {
		size_t room;
		char *dst = ckpt_linebuf_space(&lb, &room);
		size_t n = size - pos < step ? size - pos : step;
		if (n > room)
			n = room;
		memcpy(dst, data + pos, n);
		ckpt_linebuf_added(&lb, n);
		pos += n;
		step = (size_t)data[pos - 1] % 97 + 1;
		char *line;
		size_t len;
		int r;
		while ((r = ckpt_linebuf_next(&lb, &line, &len)) == 1) {
			if (strlen(line) > len || len >= CKPT_LINE_MAX)
				return -1;
			if (ckpt_msg_parse(&m, line, len, err, sizeof(err)) == 0 &&
			    check_roundtrip(&m) != 0)
				return -1;
		}
		if (r < 0)
			break; /* framing broken: a real peer would be dropped */
		if (n == 0)
			break;
	}
	return 0;
}
