/* Unit tests of the coordinator's line protocol (src/coord/proto.c):
 * percent-encoding, parsing, formatting, framing, and a pseudo-random
 * round of the fuzz entry point. Exits non-zero on the first failure. */
#include "coord/proto.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

static void test_encode(void)
{
	char buf[64];
	CHECK(ckpt_pct_encode(buf, sizeof(buf), "abc", 3) == 3 && !strcmp(buf, "abc"));
	CHECK(ckpt_pct_encode(buf, sizeof(buf), "a b=c%", 6) == 12 && !strcmp(buf, "a%20b%3Dc%25"));
	CHECK(ckpt_pct_encode(buf, sizeof(buf), "/x/y.py:1,2+3@h-_", 17) == 17);
	CHECK(!strcmp(buf, "/x/y.py:1,2+3@h-_"));
	CHECK(ckpt_pct_encode(buf, sizeof(buf), "\n\xff", 2) == 6 && !strcmp(buf, "%0A%FF"));
	/* Cut output never ends inside an escape, and reports the full need. */
	CHECK(ckpt_pct_encode(buf, 5, "ab c", 4) == 6 && !strcmp(buf, "ab"));
	CHECK(ckpt_pct_encode(NULL, 0, "  ", 2) == 6);
}

static void test_decode(void)
{
	char buf[64];
	CHECK(ckpt_pct_decode(buf, sizeof(buf), "a%20b%3dc", 9) == 5 && !strcmp(buf, "a b=c"));
	CHECK(ckpt_pct_decode(buf, sizeof(buf), "", 0) == 0 && !strcmp(buf, ""));
	CHECK(ckpt_pct_decode(buf, sizeof(buf), "a b", 3) == -1); /* raw space */
	CHECK(ckpt_pct_decode(buf, sizeof(buf), "a=b", 3) == -1); /* raw '=' */
	CHECK(ckpt_pct_decode(buf, sizeof(buf), "%2", 2) == -1);  /* short escape */
	CHECK(ckpt_pct_decode(buf, sizeof(buf), "%zz", 3) == -1); /* bad hex */
	CHECK(ckpt_pct_decode(buf, sizeof(buf), "%00", 3) == -1); /* NUL */
	CHECK(ckpt_pct_decode(buf, 3, "abc", 3) == -1);		  /* no room for NUL */
	CHECK(ckpt_pct_decode(buf, 4, "abc", 3) == 3);
}

static struct ckpt_msg m;

static int parse(const char *line)
{
	char err[200];
	return ckpt_msg_parse(&m, line, strlen(line), err, sizeof(err));
}

static void test_parse(void)
{
	CHECK(parse("STATUS") == 0 && ckpt_msg_is(&m, "STATUS") && m.nfields == 0);
	CHECK(parse("STATUS\n") == 0 && ckpt_msg_is(&m, "STATUS"));
	CHECK(parse("HELLO proto=1 role=agent token=00ff pid=2 cmd=python3%20x.py") == 0);
	CHECK(ckpt_msg_is(&m, "HELLO") && m.nfields == 5);
	CHECK(!strcmp(ckpt_msg_get(&m, "cmd"), "python3 x.py"));
	CHECK(ckpt_msg_get(&m, "nope") == NULL);
	uint64_t u;
	int64_t i;
	CHECK(ckpt_msg_get_u64(&m, "pid", &u) == 0 && u == 2);
	CHECK(ckpt_msg_get_u64(&m, "role", &u) == -1);
	CHECK(ckpt_msg_get_i64(&m, "pid", &i) == 0 && i == 2);
	CHECK(parse("OK x=-5 y= z=18446744073709551615") == 0);
	CHECK(ckpt_msg_get_i64(&m, "x", &i) == 0 && i == -5);
	CHECK(ckpt_msg_get_u64(&m, "x", &u) == -1);
	CHECK(ckpt_msg_get_u64(&m, "y", &u) == -1 && !strcmp(ckpt_msg_get(&m, "y"), ""));
	CHECK(ckpt_msg_get_u64(&m, "z", &u) == 0 && u == UINT64_MAX);
	CHECK(parse("OK z=18446744073709551616") == 0 && ckpt_msg_get_u64(&m, "z", &u) == -1);
	CHECK(parse("OK pause_ms=12.5") == 0 && ckpt_msg_get_u64(&m, "pause_ms", &u) == -1);

	/* Malformed lines. */
	CHECK(parse("") == -1);
	CHECK(parse("hello") == -1);	      /* lower-case verb */
	CHECK(parse(" STATUS") == -1);	      /* leading space */
	CHECK(parse("STATUS ") == -1);	      /* trailing space */
	CHECK(parse("OK  a=1") == -1);	      /* double space */
	CHECK(parse("OK a") == -1);	      /* no '=' */
	CHECK(parse("OK =1") == -1);	      /* no key */
	CHECK(parse("OK A=1") == -1);	      /* upper-case key */
	CHECK(parse("OK a=1 a=2") == -1);     /* duplicate */
	CHECK(parse("OK a=x=y") == -1);	      /* raw '=' in value */
	CHECK(parse("OK a=%4") == -1);	      /* cut escape */
	CHECK(parse("OK a=1\nSTATUS") == -1); /* two lines */
	CHECK(parse("OK a=1\r") == -1);	      /* CR */
	char err[200];
	CHECK(ckpt_msg_parse(&m, "OK a=b\0c", 8, err, sizeof(err)) == -1); /* NUL byte */
	CHECK(err[0] != '\0');

	/* Limits: verb and key length, field count, line length. */
	char line[CKPT_LINE_MAX + 16];
	memset(line, 'A', CKPT_NAME_MAX);
	line[CKPT_NAME_MAX] = '\0';
	CHECK(parse(line) == 0);
	memset(line, 'A', CKPT_NAME_MAX + 1);
	line[CKPT_NAME_MAX + 1] = '\0';
	CHECK(parse(line) == -1);
	size_t n = (size_t)sprintf(line, "OK");
	for (int k = 0; k < CKPT_MSG_MAX_FIELDS; k++)
		n += (size_t)sprintf(line + n, " k%d=%d", k, k);
	CHECK(parse(line) == 0 && m.nfields == CKPT_MSG_MAX_FIELDS);
	sprintf(line + n, " extra=1");
	CHECK(parse(line) == -1);
	/* Longest allowed line: 4095 bytes + "\n". */
	n = (size_t)sprintf(line, "OK v=");
	memset(line + n, 'x', CKPT_LINE_MAX - 1 - n);
	line[CKPT_LINE_MAX - 1] = '\n';
	line[CKPT_LINE_MAX] = '\0';
	CHECK(ckpt_msg_parse(&m, line, CKPT_LINE_MAX, err, sizeof(err)) == 0);
	CHECK(m.fields[0].len == CKPT_LINE_MAX - 1 - n);
	line[CKPT_LINE_MAX - 1] = 'x';
	line[CKPT_LINE_MAX] = '\n';
	CHECK(ckpt_msg_parse(&m, line, CKPT_LINE_MAX + 1, err, sizeof(err)) == -1);
}

static void test_format(void)
{
	static struct ckpt_line l;
	ckpt_line_begin(&l, "CHECKPOINT");
	ckpt_line_u64(&l, "gen", 7);
	ckpt_line_str(&l, "dir", "/scratch/a b/images/gen-000007.partial");
	ckpt_line_i64(&l, "n", -3);
	CHECK(ckpt_line_end(&l) == 0);
	const char want[] = "CHECKPOINT gen=7 dir=/scratch/a%20b/images/gen-000007.partial n=-3\n";
	CHECK(l.len == sizeof(want) - 1 && !memcmp(l.buf, want, l.len));
	char err[200];
	CHECK(ckpt_msg_parse(&m, l.buf, l.len, err, sizeof(err)) == 0);
	CHECK(!strcmp(ckpt_msg_get(&m, "dir"), "/scratch/a b/images/gen-000007.partial"));

	/* A value that does not fit makes the whole line fail, never a
	 * truncated line. */
	static char big[CKPT_LINE_MAX];
	memset(big, ' ', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ckpt_line_begin(&l, "OK");
	ckpt_line_str(&l, "msg", big);
	CHECK(ckpt_line_end(&l) == -1);
	/* Exactly full: 4095 bytes of content. */
	ckpt_line_begin(&l, "OK");
	memset(big, 'y', CKPT_LINE_MAX - 1 - 7);
	big[CKPT_LINE_MAX - 1 - 7] = '\0';
	ckpt_line_str(&l, "msg", big);
	CHECK(ckpt_line_end(&l) == 0 && l.len == CKPT_LINE_MAX && l.buf[l.len - 1] == '\n');
	ckpt_line_begin(&l, "OK");
	big[CKPT_LINE_MAX - 1 - 7] = 'y';
	big[CKPT_LINE_MAX - 7] = '\0';
	ckpt_line_str(&l, "msg", big);
	CHECK(ckpt_line_end(&l) == -1);
}

static void feed(struct ckpt_linebuf *lb, const char *s)
{
	size_t room;
	char *dst = ckpt_linebuf_space(lb, &room);
	size_t n = strlen(s);
	CHECK(n <= room);
	memcpy(dst, s, n);
	ckpt_linebuf_added(lb, n);
}

static void test_framing(void)
{
	static struct ckpt_linebuf lb;
	char *line;
	size_t len;
	ckpt_linebuf_init(&lb);
	CHECK(ckpt_linebuf_next(&lb, &line, &len) == 0);
	feed(&lb, "STAT");
	CHECK(ckpt_linebuf_next(&lb, &line, &len) == 0);
	feed(&lb, "US\nOK a=1\nPAR");
	CHECK(ckpt_linebuf_next(&lb, &line, &len) == 1 && len == 6 && !strcmp(line, "STATUS"));
	CHECK(ckpt_linebuf_next(&lb, &line, &len) == 1 && !strcmp(line, "OK a=1"));
	CHECK(ckpt_linebuf_next(&lb, &line, &len) == 0);
	CHECK(ckpt_linebuf_pending(&lb) == 3);
	feed(&lb, "TIAL\n\n");
	CHECK(ckpt_linebuf_next(&lb, &line, &len) == 1 && !strcmp(line, "PARTIAL"));
	CHECK(ckpt_linebuf_next(&lb, &line, &len) == 1 && len == 0);
	CHECK(ckpt_linebuf_pending(&lb) == 0);

	/* A full buffer without a newline is a framing error. */
	ckpt_linebuf_init(&lb);
	size_t room;
	char *dst = ckpt_linebuf_space(&lb, &room);
	CHECK(room == CKPT_LINE_MAX);
	memset(dst, 'x', room);
	ckpt_linebuf_added(&lb, room);
	CHECK(ckpt_linebuf_next(&lb, &line, &len) == -1);
	/* ...but a maximal line with its newline is fine. */
	ckpt_linebuf_init(&lb);
	dst = ckpt_linebuf_space(&lb, &room);
	memset(dst, 'x', room - 1);
	dst[room - 1] = '\n';
	ckpt_linebuf_added(&lb, room);
	CHECK(ckpt_linebuf_next(&lb, &line, &len) == 1 && len == CKPT_LINE_MAX - 1);
}

/* Fuzz entry point over pseudo-random and mutated protocol lines. */
static void test_fuzz(void)
{
	static const char *seeds[] = {
	    "HELLO proto=1 role=agent token=0123456789abcdef0123456789abcdef pid=2 ppid=1 "
	    "restored=0 "
	    "cmd=python3%20train.py\n",
	    "CHECKPOINT gen=12 dir=/tmp/run/images/gen-000012.partial\n",
	    "DONE gen=12 pid=2 bytes=4096 pause_ms=1.5 write_ms=2.25 warn=\nSTATUS\n",
	    "ERR msg=no%20such%20thing\nOK a=%41%4a%4A\n",
	};
	uint64_t x = 0x9e3779b97f4a7c15ull;
	uint8_t buf[9000];
	for (int round = 0; round < 20000; round++) {
		const char *s = seeds[round % 4];
		size_t n = strlen(s);
		memcpy(buf, s, n);
		/* A few random byte edits, insertions of interesting bytes, or
		 * a pile of random bytes. */
		int edits = 1 + round % 8;
		for (int e = 0; e < edits; e++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			size_t pos = (size_t)(x % (n + 1));
			static const char interesting[] = " =%\n\0Aa9-_\xff";
			uint8_t b = (x >> 32) & 1 ? (uint8_t)(x >> 40)
						  : (uint8_t)interesting[(x >> 40) % 12];
			if (pos < n && (x >> 48) % 2)
				buf[pos] = b;
			else if (n < sizeof(buf)) {
				memmove(buf + pos + 1, buf + pos, n - pos);
				buf[pos] = b;
				n++;
			}
		}
		if (round % 1000 == 999) {
			n = 4096 + (size_t)(x % 4000);
			for (size_t k = 0; k < n; k++)
				buf[k] = (uint8_t) "ab =%\n"[(x >> (k % 60)) % 6];
		}
		if (ckpt_proto_fuzz_one(buf, n) != 0) {
			fprintf(stderr, "fuzz round %d broke an invariant\n", round);
			failures++;
			return;
		}
	}
}

int main(void)
{
	test_encode();
	test_decode();
	test_parse();
	test_format();
	test_framing();
	test_fuzz();
	if (failures) {
		fprintf(stderr, "test_proto: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_proto: all checks passed\n");
	return 0;
}
