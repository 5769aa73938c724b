/* cuda_counter STEPS SLEEP_MS lib|nolib [DEVICE]: a counter that looks
 * like a CUDA program to ckpt: with "lib" it loads libcuda.so.1 (the test
 * puts a fake one on LD_LIBRARY_PATH, or names it by path in
 * CUDA_COUNTER_LIB) and calls cuInit; with DEVICE it
 * keeps that file open (a stand-in for /dev/nvidia0). Each step prints a
 * digest of its heap, which it changes every step. */
#include "common.h"
#include <dlfcn.h>
#include <fcntl.h>

int main(int argc, char **argv)
{
	const char *extra = "lib|nolib [DEVICE]";
	if (argc < 4 || argc > 5 || (strcmp(argv[3], "lib") && strcmp(argv[3], "nolib")))
		usage_exit(argv[0], extra);
	long steps = parse_num(argv[1], argv[0], extra);
	long sleep = parse_num(argv[2], argv[0], extra);
	setup_stdout();
	if (!strcmp(argv[3], "lib")) {
		const char *path = getenv("CUDA_COUNTER_LIB");
		void *lib = dlopen(path && *path ? path : "libcuda.so.1", RTLD_NOW);
		if (!lib) {
			fprintf(stderr, "cannot load libcuda.so.1: %s\n", dlerror());
			return 3;
		}
		int (*init)(unsigned) = (int (*)(unsigned))dlsym(lib, "cuInit");
		if (!init || init(0) != 0) {
			fprintf(stderr, "cuInit failed\n");
			return 3;
		}
	}
	if (argc == 5 && open(argv[4], O_RDWR | O_CLOEXEC) < 0)
		die(argv[4]);
	uint64_t *heap = calloc(4096, sizeof(uint64_t));
	if (!heap)
		die("calloc");
	uint64_t seed = 0x9e3779b97f4a7c15ull, h = FNV_INIT;
	for (long s = 0; s < steps; s++) {
		uint64_t x = xorshift64(&seed);
		heap[x % 4096] += x ^ (uint64_t)s;
		h = fnv1a(h, heap, 4096 * sizeof(uint64_t));
		printf("step %ld x=%016llx mem=%016llx\n", s, (unsigned long long)x,
		       (unsigned long long)h);
		if (sleep)
			sleep_ms(sleep);
	}
	printf("done steps=%ld checksum=%016llx\n", steps, (unsigned long long)h);
	free(heap);
	return 0;
}
