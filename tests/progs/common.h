/* Shared helpers for the test programs. Every program is deterministic:
 * given the same arguments it prints the same lines, one per step, each
 * flushed as it is written, and a final line with a checksum of all its
 * state. Usage of every program starts with: PROG STEPS SLEEP_MS ... */
#ifndef CKPT_TEST_COMMON_H
#define CKPT_TEST_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline void die(const char *what)
{
	fprintf(stderr, "%s: %s\n", what, strerror(errno));
	exit(99);
}

static inline void usage_exit(const char *argv0, const char *extra)
{
	fprintf(stderr, "usage: %s STEPS SLEEP_MS%s%s\n", argv0, extra ? " " : "",
		extra ? extra : "");
	exit(2);
}

static inline long parse_num(const char *s, const char *argv0, const char *extra)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || v < 0)
		usage_exit(argv0, extra);
	return v;
}

/* Line buffered stdout even when it is a pipe or a file. */
static inline void setup_stdout(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
}

/* The arguments of a program that takes exactly STEPS SLEEP_MS, and its
 * stdout set up: the start of most programs' main. */
static inline void steps_and_sleep(int argc, char **argv, long *steps, long *sleep)
{
	if (argc != 3)
		usage_exit(argv[0], NULL);
	*steps = parse_num(argv[1], argv[0], NULL);
	*sleep = parse_num(argv[2], argv[0], NULL);
	setup_stdout();
}

/* STEPS SLEEP_MS MIB, MIB at least min_mib, and stdout set up: the start
 * of the programs that hold memory changing step by step. Returns MIB. */
static inline long steps_sleep_mib(int argc, char **argv, long *steps, long *sleep, long min_mib)
{
	const char *extra = "MIB";
	if (argc != 4)
		usage_exit(argv[0], extra);
	*steps = parse_num(argv[1], argv[0], extra);
	*sleep = parse_num(argv[2], argv[0], extra);
	long mib = parse_num(argv[3], argv[0], extra);
	if (mib < min_mib)
		usage_exit(argv[0], extra);
	setup_stdout();
	return mib;
}

/* Sleep ms milliseconds, resuming after EINTR with the time left. */
static inline void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0) {
		if (errno != EINTR)
			die("nanosleep");
	}
}

/* FNV-1a, 64 bit. */
#define FNV_INIT 0xcbf29ce484222325ull
static inline uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++) {
		h ^= c[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* Read exactly n bytes: 1, or 0 at end of file before the first byte (a
 * short record is an error). */
static inline int read_record(int fd, void *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, (char *)buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("read");
		if (r == 0) {
			if (got == 0)
				return 0;
			errno = EPIPE;
			die("read: short record");
		}
		got += (size_t)r;
	}
	return 1;
}

/* Read exactly n bytes; end of file is an error. */
static inline void read_full(int fd, void *buf, size_t n)
{
	if (!read_record(fd, buf, n)) {
		errno = EPIPE;
		die("read");
	}
}

static inline void write_full(int fd, const void *buf, size_t n)
{
	size_t put = 0;
	while (put < n) {
		ssize_t r = write(fd, (const char *)buf + put, n - put);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("write");
		put += (size_t)r;
	}
}

static inline uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* A new file NAME.PID.dat in the working directory (its name in name, cap
 * bytes) holding size bytes of xorshift64 words from seed; returns its
 * descriptor, open for reading and writing. */
static inline int random_file(const char *prefix, size_t size, uint64_t seed, char *name,
			      size_t cap)
{
	snprintf(name, cap, "%s.%d.dat", prefix, (int)getpid());
	int fd = open(name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		die("open");
	for (size_t done = 0; done < size;) {
		uint64_t block[512];
		for (unsigned i = 0; i < 512; i++)
			block[i] = xorshift64(&seed);
		size_t n = size - done < sizeof block ? size - done : sizeof block;
		write_full(fd, block, n);
		done += n;
	}
	return fd;
}

#endif
