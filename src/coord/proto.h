/* The coordinator's line protocol (docs/protocol.md): framing,
 * percent-encoding, parsing and formatting of "VERB key=value ..." lines.
 * Self-contained (no other ckpt sources) so unit tests and fuzzers can
 * link it alone; it never allocates. Input lines are untrusted: every
 * function here is safe on arbitrary bytes. */
#ifndef CKPT_COORD_PROTO_H
#define CKPT_COORD_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define CKPT_PROTO_VERSION 1
#define CKPT_LINE_MAX 4096 /* bytes in one line, including its '\n' */
#define CKPT_MSG_MAX_FIELDS 32
#define CKPT_NAME_MAX 31 /* longest verb or key */

/* ---- percent-encoding ---- */

/* Bytes that travel as themselves: [A-Za-z0-9._/:,+@-]. */
int ckpt_pct_safe(unsigned char c);
/* Encode len bytes of src; every other byte becomes %XX (upper case).
 * Writes at most dstlen bytes including a terminating NUL and returns the
 * length the full encoding needs (without NUL), like snprintf. */
size_t ckpt_pct_encode(char *dst, size_t dstlen, const void *src, size_t len);
/* Decode len bytes of src into dst (NUL-terminated, at most dstlen bytes
 * including the NUL). Returns the decoded length, or -1 if src holds a
 * byte that should have been encoded, a bad %XX, an encoded NUL (values
 * are C strings), or does not fit. */
long ckpt_pct_decode(char *dst, size_t dstlen, const char *src, size_t len);
/* The value of a hexadecimal digit, or -1. */
int ckpt_hexval(char c);

/* ---- parsing ---- */

struct ckpt_field {
	char key[CKPT_NAME_MAX + 1];
	const char *value; /* decoded, NUL-terminated, points into store */
	size_t len;
};

struct ckpt_msg {
	char verb[CKPT_NAME_MAX + 1];
	unsigned nfields;
	struct ckpt_field fields[CKPT_MSG_MAX_FIELDS];
	char store[CKPT_LINE_MAX]; /* decoded values */
};

/* Parse one line of len bytes (a trailing "\n" is allowed, nothing after
 * it). Grammar: VERB *(" " key "=" value), VERB = [A-Z][A-Z0-9_]*,
 * key = [a-z0-9_]+, value = percent-encoded; a key may appear once.
 * Returns 0, or -1 with a one-line reason in err. */
int ckpt_msg_parse(struct ckpt_msg *m, const char *line, size_t len, char *err, size_t errlen);
int ckpt_msg_is(const struct ckpt_msg *m, const char *verb);
/* The decoded value of key, or NULL when absent. */
const char *ckpt_msg_get(const struct ckpt_msg *m, const char *key);
/* key as a decimal number; -1 when absent, empty, not a number or out
 * of range. */
int ckpt_msg_get_u64(const struct ckpt_msg *m, const char *key, uint64_t *out);
int ckpt_msg_get_i64(const struct ckpt_msg *m, const char *key, int64_t *out);

/* ---- formatting ---- */

struct ckpt_line {
	char buf[CKPT_LINE_MAX];
	size_t len;
	int overflow; /* set when something did not fit; ckpt_line_end fails */
};

void ckpt_line_begin(struct ckpt_line *l, const char *verb);
void ckpt_line_str(struct ckpt_line *l, const char *key, const char *value);
void ckpt_line_mem(struct ckpt_line *l, const char *key, const void *value, size_t len);
void ckpt_line_u64(struct ckpt_line *l, const char *key, uint64_t value);
void ckpt_line_i64(struct ckpt_line *l, const char *key, int64_t value);
/* Append the "\n". Returns 0, or -1 if the line would exceed
 * CKPT_LINE_MAX (the caller must not send it). */
int ckpt_line_end(struct ckpt_line *l);

/* ---- framing ---- */

/* Collects bytes from a stream and hands out complete lines. */
struct ckpt_linebuf {
	char buf[CKPT_LINE_MAX];
	size_t len;  /* bytes held */
	size_t done; /* bytes at the front already handed out */
};

void ckpt_linebuf_init(struct ckpt_linebuf *lb);
/* Free room to read into (compacts first); *room is 0 only when a whole
 * CKPT_LINE_MAX bytes without "\n" are held (see ckpt_linebuf_next). */
char *ckpt_linebuf_space(struct ckpt_linebuf *lb, size_t *room);
void ckpt_linebuf_added(struct ckpt_linebuf *lb, size_t n);
/* Next complete line: returns 1 and sets *line (NUL-terminated, "\n"
 * removed, valid until the next call on lb) and *len; 0 when no
 * complete line is held; -1 when CKPT_LINE_MAX bytes hold no "\n" (the
 * peer broke the framing: close the connection). */
int ckpt_linebuf_next(struct ckpt_linebuf *lb, char **line, size_t *len);
/* Bytes held that do not form a complete line (at end of stream: a
 * truncated last line). */
size_t ckpt_linebuf_pending(const struct ckpt_linebuf *lb);

/* ---- fuzzing ---- */

/* Feed arbitrary bytes through the framing and the parser, and check the
 * invariants (every parsed message formats to a line that parses back to
 * the same message). Returns 0, or -1 when an invariant is broken: a
 * fuzzer harness should abort then. */
int ckpt_proto_fuzz_one(const uint8_t *data, size_t size);

#endif
