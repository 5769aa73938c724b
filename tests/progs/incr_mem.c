/* incr_mem STEPS SLEEP_MS MIB: memory that changes a little at each step,
 * in every way an incremental checkpoint must follow: about 1% of the
 * pages rewritten, a megabyte unmapped and mapped again at the same
 * address with new contents, pages given back with MADV_DONTNEED (zero
 * again), a page written back to what it held earlier, a page written by
 * the kernel (read() from a pipe), and 64 KiB moved away and back with
 * mremap. Each step prints a digest of every byte. */
#include "common.h"
#include <sys/mman.h>

#define PAGE 4096u

static uint64_t digest(const uint64_t *mem, size_t words)
{
	return fnv1a(FNV_INIT, mem, words * sizeof(uint64_t));
}

int main(int argc, char **argv)
{
	long steps, sleep, mib = steps_sleep_mib(argc, argv, &steps, &sleep, 4);

	size_t len = (size_t)mib << 20, pages = len / PAGE, words = len / 8;
	uint64_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		die("mmap");
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	/* half random, a quarter compressible, a quarter never touched */
	for (size_t i = 0; i < words / 2; i++)
		mem[i] = xorshift64(&seed);
	for (size_t i = words / 2; i < words * 3 / 4; i++)
		mem[i] = i / 512;

	uint64_t saved_page[PAGE / 8];
	memcpy(saved_page, mem, PAGE);
	int pfd[2];
	if (pipe(pfd))
		die("pipe");
	char *spare = mmap(NULL, 1u << 16, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (spare == MAP_FAILED)
		die("mmap spare");
	for (long s = 0; s < steps; s++) {
		for (size_t k = 0; k < pages / 100 + 1; k++) {
			uint64_t x = xorshift64(&seed);
			mem[(x % pages) * (PAGE / 8) + x % (PAGE / 8)] ^= x | 1;
		}
		if (s % 3 == 1) {
			/* a megabyte mapped again, same address, new contents */
			char *at = (char *)mem + ((size_t)(s % (mib - 2)) + 1) * (1u << 20);
			if (mmap(at, 1u << 20, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != at)
				die("mmap fixed");
			for (size_t i = 0; i < (1u << 20) / 8; i += 7)
				((uint64_t *)at)[i] = (uint64_t)s * 1000003u + i;
		}
		if (s % 4 == 2 &&
		    madvise((char *)mem + (size_t)(s % mib) * PAGE * 3, 8 * PAGE, MADV_DONTNEED))
			die("madvise");
		/* written by the kernel, not by an instruction of ours */
		char msg[64];
		int len = snprintf(msg, sizeof msg, "step %ld from the pipe", s);
		if (write(pfd[1], msg, (size_t)len) != len ||
		    read(pfd[0], (char *)mem + (size_t)(s % (long)pages) * PAGE + 100,
			 (size_t)len) != len)
			die("pipe");
		if (s % 5 == 3) {
			/* 64 KiB moved away and back: same contents, same place */
			char *at = (char *)mem + (size_t)(s % (mib / 2)) * (1u << 20);
			if (mremap(at, 1u << 16, 1u << 16, MREMAP_MAYMOVE | MREMAP_FIXED, spare) !=
				spare ||
			    mremap(spare, 1u << 16, 1u << 16, MREMAP_MAYMOVE | MREMAP_FIXED, at) !=
				at)
				die("mremap");
			at[17] ^= 1;
			spare = mmap(spare, 1u << 16, PROT_NONE,
				     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
			if (spare == MAP_FAILED)
				die("mmap spare");
		}
		/* the first page goes back and forth between two contents */
		if (s % 2)
			memcpy(mem, saved_page, PAGE);
		else
			mem[5] ^= (uint64_t)s;
		printf("step %ld digest=%016llx\n", s, (unsigned long long)digest(mem, words));
		if (sleep)
			sleep_ms(sleep);
	}
	printf("done steps=%ld checksum=%016llx\n", steps, (unsigned long long)digest(mem, words));
	return 0;
}
