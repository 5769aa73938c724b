/* hold: a program that holds memory for the checkpoint benchmark.
 *
 *   hold MIB [--dirty] [--step-ms MS]
 *
 * Maps MIB MiB of private anonymous memory (populated at once: page faults
 * one by one are slow in a VM) and fills all of it:
 *   - the first half with random bytes from a fixed-seed PRNG (splitmix64),
 *     which no compressor can shrink;
 *   - the second half with 32-bit little-endian integers 0..255 from the
 *     same PRNG: one random byte in four, so it compresses to about a
 *     quarter, without repeating blocks that a compressor could fold away.
 * The content depends on MIB only, so every run holds the same bytes.
 *
 * Then it prints "ready rss_kib=N sum=X" and, every MS milliseconds
 * (default 50), "step N sum X t=MS", X being a checksum of 16 pages spread
 * over the whole area and MS the CLOCK_MONOTONIC time in milliseconds (the
 * benchmark finds the program's longest stall from it). With --dirty it writes the step number into
 * the first 8 bytes of every 100th page before each step: always the same 1% of the pages, so
 * between two checkpoints exactly 1% of the pages have changed, however many steps ran in between.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t checksum(const unsigned char *mem, size_t pages)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a over sampled pages */
	for (int i = 0; i < 16; i++) {
		const uint64_t *p = (const uint64_t *)(mem + (pages * i / 16) * PAGE);
		for (size_t j = 0; j < PAGE / 8; j++)
			h = (h ^ p[j]) * 1099511628211ULL;
	}
	return h;
}

static long rss_kib(void)
{
	long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%ld %ld", &size, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

int main(int argc, char **argv)
{
	long mib = 0, step_ms = 50;
	int dirty = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--dirty"))
			dirty = 1;
		else if (!strcmp(argv[i], "--step-ms") && i + 1 < argc)
			step_ms = atol(argv[++i]);
		else if (!mib)
			mib = atol(argv[i]);
		else
			mib = 0, i = argc;
	}
	if (mib <= 0 || step_ms <= 0) {
		fprintf(stderr, "usage: hold MIB [--dirty] [--step-ms MS]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);

	size_t bytes = (size_t)mib << 20, pages = bytes / PAGE, half = bytes / 2;
	unsigned char *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (mem == MAP_FAILED) {
		perror("hold: mmap");
		return 1;
	}
	uint64_t seed = 42;
	uint64_t *w = (uint64_t *)mem;
	for (size_t i = 0; i < half / 8; i++)
		w[i] = splitmix64(&seed);
	uint32_t *small = (uint32_t *)(mem + half);
	for (size_t i = 0; i < (bytes - half) / 8; i++) {
		uint64_t r = splitmix64(&seed);
		small[2 * i] = r & 0xff;
		small[2 * i + 1] = (r >> 8) & 0xff;
	}
	printf("ready rss_kib=%ld sum=%016llx\n", rss_kib(),
	       (unsigned long long)checksum(mem, pages));

	struct timespec ts = {step_ms / 1000, (step_ms % 1000) * 1000000L};
	for (uint64_t step = 1;; step++) {
		nanosleep(&ts, NULL); /* an early return (EINTR) only shortens a step */
		if (dirty)
			for (size_t p = 0; p < pages; p += 100)
				memcpy(mem + p * PAGE, &step, sizeof(step));
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		printf("step %llu sum %016llx t=%.3f\n", (unsigned long long)step,
		       (unsigned long long)checksum(mem, pages),
		       now.tv_sec * 1e3 + now.tv_nsec / 1e6);
	}
}
