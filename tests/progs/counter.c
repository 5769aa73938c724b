/* counter STEPS SLEEP_MS [EXIT_CODE]: single-threaded loop. State lives in
 * registers, on the stack, in .data/.bss and on the heap; each step prints
 * a digest of all of it. Exits with EXIT_CODE (default 0). */
#include "common.h"
#include <unistd.h>

#define BSS_WORDS (1u << 17) /* 1 MiB */
static uint64_t bss[BSS_WORDS];
static uint64_t data_seed = 0x9e3779b97f4a7c15ull;

int main(int argc, char **argv)
{
	const char *extra = "[EXIT_CODE]";
	if (argc < 3 || argc > 4)
		usage_exit(argv[0], extra);
	long steps = parse_num(argv[1], argv[0], extra);
	long sleep = parse_num(argv[2], argv[0], extra);
	int code = argc == 4 ? (int)parse_num(argv[3], argv[0], extra) : 0;
	setup_stdout();

	pid_t pid0 = getpid();
	uint64_t stack[512];
	uint64_t *heap = malloc(8192 * sizeof(uint64_t));
	if (!heap)
		die("malloc");
	for (unsigned i = 0; i < 512; i++)
		stack[i] = i * 3u;
	for (unsigned i = 0; i < 8192; i++)
		heap[i] = i * 7u;

	uint64_t sum = 0;
	for (long s = 0; s < steps; s++) {
		uint64_t x = xorshift64(&data_seed);
		sum += x;
		bss[x % BSS_WORDS] ^= x;
		bss[s % BSS_WORDS] += sum;
		stack[x % 512] += s;
		heap[(x >> 17) % 8192] ^= sum;
		uint64_t h = fnv1a(FNV_INIT, stack, sizeof stack);
		h = fnv1a(h, heap, 8192 * sizeof(uint64_t));
		printf("step %ld x=%016llx sum=%016llx mem=%016llx pid=%s\n", s,
		       (unsigned long long)x, (unsigned long long)sum, (unsigned long long)h,
		       getpid() == pid0 ? "same" : "CHANGED");
		if (sleep)
			sleep_ms(sleep);
	}
	uint64_t h = fnv1a(FNV_INIT, bss, sizeof bss);
	h = fnv1a(h, stack, sizeof stack);
	h = fnv1a(h, heap, 8192 * sizeof(uint64_t));
	h = fnv1a(h, &sum, sizeof sum);
	printf("done steps=%ld checksum=%016llx exit=%d\n", steps, (unsigned long long)h, code);
	free(heap);
	return code;
}
