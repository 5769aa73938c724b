/* bigmem STEPS SLEEP_MS MIB [WORDS]: like counter, with MIB MiB of heap
 * filled with pseudo-random data, so that its image is large and writing
 * it takes long enough for the fault-injection tests to hit it mid-write
 * (kill -9 during a checkpoint, a file system filling up). Each step
 * changes WORDS (default 16) words spread over the whole block and prints
 * a digest of one word per page; the last line digests every byte. */
#include "common.h"
#include <unistd.h>

int main(int argc, char **argv)
{
	const char *extra = "MIB [WORDS]";
	if (argc != 4 && argc != 5)
		usage_exit(argv[0], extra);
	long steps = parse_num(argv[1], argv[0], extra);
	long sleep = parse_num(argv[2], argv[0], extra);
	long mib = parse_num(argv[3], argv[0], extra);
	long changes = argc == 5 ? parse_num(argv[4], argv[0], extra) : 16;
	if (mib < 1)
		usage_exit(argv[0], extra);
	setup_stdout();

	size_t words = (size_t)mib << 17; /* 8-byte words */
	uint64_t *mem = malloc(words * sizeof(uint64_t));
	if (!mem)
		die("malloc");
	uint64_t seed = 0x2545f4914f6cdd1dull;
	for (size_t i = 0; i < words; i++)
		mem[i] = xorshift64(&seed);

	pid_t pid0 = getpid();
	uint64_t sum = 0;
	for (long s = 0; s < steps; s++) {
		for (long k = 0; k < changes; k++) {
			uint64_t x = xorshift64(&seed);
			mem[x % words] ^= x + (uint64_t)s;
			sum += x;
		}
		uint64_t h = FNV_INIT;
		for (size_t i = (size_t)s % 512; i < words; i += 512)
			h = fnv1a(h, &mem[i], sizeof(uint64_t));
		printf("step %ld sum=%016llx pages=%016llx pid=%s\n", s, (unsigned long long)sum,
		       (unsigned long long)h, getpid() == pid0 ? "same" : "CHANGED");
		if (sleep)
			sleep_ms(sleep);
	}
	uint64_t h = fnv1a(FNV_INIT, mem, words * sizeof(uint64_t));
	h = fnv1a(h, &sum, sizeof sum);
	printf("done steps=%ld checksum=%016llx\n", steps, (unsigned long long)h);
	free(mem);
	return 0;
}
