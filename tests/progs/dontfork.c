/* dontfork STEPS SLEEP_MS: like counter, with 1 MiB of its memory marked
 * MADV_DONTFORK (as some drivers and allocators do). A copy-on-write
 * writer, forked, does not have those pages: the checkpoint must find out
 * and write the process without copy-on-write. Each step rewrites part
 * of that memory and prints a digest of all of it. */
#include "common.h"
#include <sys/mman.h>
#include <unistd.h>

#define REGION (1u << 20)

int main(int argc, char **argv)
{
	if (argc != 3)
		usage_exit(argv[0], "");
	long steps = parse_num(argv[1], argv[0], "");
	long sleep = parse_num(argv[2], argv[0], "");
	setup_stdout();
	uint64_t *region =
	    mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		die("mmap");
	if (madvise(region, REGION, MADV_DONTFORK) != 0)
		die("madvise MADV_DONTFORK");
	uint64_t seed = 0x2545f4914f6cdd1dull, n = REGION / sizeof(uint64_t);
	for (uint64_t i = 0; i < n; i++)
		region[i] = xorshift64(&seed);
	for (long s = 0; s < steps; s++) {
		uint64_t x = xorshift64(&seed);
		for (unsigned k = 0; k < 64; k++)
			region[(x >> (k % 32)) % n] ^= x + k;
		uint64_t h = fnv1a(FNV_INIT, region, REGION);
		printf("step %ld x=%016llx region=%016llx\n", s, (unsigned long long)x,
		       (unsigned long long)h);
		if (sleep)
			sleep_ms(sleep);
	}
	printf("done steps=%ld\n", steps);
	return 0;
}
