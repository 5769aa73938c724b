/* remap_churn STEPS SLEEP_MS MIB: memory changed all the time, in small
 * rounds a millisecond apart, so that some of it changes while every
 * checkpoint's image is being written and write tracking is armed again:
 * pages written, 64 KiB moved away and back with mremap (which splits
 * the mapping the tracking registered), a page given back with
 * MADV_DONTNEED, 64 KiB made read-only and writable again, a page
 * replaced by a fresh mapping; and at each step a buffer shrunk and grown
 * again with mremap. Each step prints a digest of every byte. */
#include "common.h"
#include <sys/mman.h>

#define PAGE 4096u
#define PIECE (1u << 16)
#define ROUNDS 16
#define BUF (64 * PAGE)

static uint64_t digest(const uint64_t *mem, size_t words)
{
	return fnv1a(FNV_INIT, mem, words * sizeof(uint64_t));
}

/* One round: every change is a function of the round's random numbers
 * only, so a restored run goes on exactly as the original did. */
static void round_of_changes(uint64_t *mem, size_t pages, char *spare, uint64_t *seed)
{
	for (int k = 0; k < 16; k++) {
		uint64_t x = xorshift64(seed);
		mem[(x % pages) * (PAGE / 8) + x % (PAGE / 8)] ^= x | 1;
	}
	uint64_t x = xorshift64(seed);
	char *at = (char *)mem + (x % (pages * PAGE / PIECE)) * PIECE;
	if (mremap(at, PIECE, PIECE, MREMAP_MAYMOVE | MREMAP_FIXED, spare) != spare ||
	    mremap(spare, PIECE, PIECE, MREMAP_MAYMOVE | MREMAP_FIXED, at) != at)
		die("mremap");
	/* the reservation the piece went through, back for the next round */
	if (mmap(spare, PIECE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != spare)
		die("mmap spare");
	/* a write just before the moved piece, in the same registered span */
	if (at != (char *)mem)
		at[-1] ^= (char)x;
	x = xorshift64(seed);
	if (madvise((char *)mem + (x % pages) * PAGE, PAGE, MADV_DONTNEED))
		die("madvise");
	/* a piece made read-only and writable again (the mapping split
	 * and merged), then written */
	x = xorshift64(seed);
	at = (char *)mem + (x % (pages * PAGE / PIECE)) * PIECE;
	if (mprotect(at, PIECE, PROT_READ) || mprotect(at, PIECE, PROT_READ | PROT_WRITE))
		die("mprotect");
	at[x % PIECE] ^= (char)(x >> 8) | 1;
	/* a page replaced by a fresh one, with new contents */
	x = xorshift64(seed);
	at = (char *)mem + (x % pages) * PAGE;
	if (mmap(at, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
		 0) != at)
		die("mmap fixed");
	if (x & 1)
		memset(at, (int)(x >> 16) | 1, PAGE / 2);
}

/* The buffer written, its second half dropped and grown again (zero),
 * written again: it may move. */
static char *regrow(char *buf, long step)
{
	memset(buf + (size_t)(step % (BUF / PAGE / 2)) * PAGE, (int)step | 1, PAGE / 4);
	if (mremap(buf, BUF, BUF / 2, 0) != buf)
		die("mremap shrink");
	buf = mremap(buf, BUF / 2, BUF, MREMAP_MAYMOVE);
	if (buf == MAP_FAILED)
		die("mremap grow");
	buf[BUF / 2 + (size_t)step % (BUF / 2)] = (char)step;
	return buf;
}

int main(int argc, char **argv)
{
	long steps, sleep, mib = steps_sleep_mib(argc, argv, &steps, &sleep, 1);

	size_t len = (size_t)mib << 20, pages = len / PAGE, words = len / 8;
	uint64_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *spare = mmap(NULL, PIECE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *buf = mmap(NULL, BUF, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || spare == MAP_FAILED || buf == MAP_FAILED)
		die("mmap");
	uint64_t seed = 0x2545f4914f6cdd1dull;
	for (size_t i = 0; i < words; i++)
		mem[i] = i % 3 ? xorshift64(&seed) : i / 512;
	for (long s = 0; s < steps; s++) {
		for (int r = 0; r < ROUNDS; r++) {
			round_of_changes(mem, pages, spare, &seed);
			sleep_ms(1);
		}
		buf = regrow(buf, s);
		printf("step %ld digest=%016llx buffer=%016llx\n", s,
		       (unsigned long long)digest(mem, words),
		       (unsigned long long)fnv1a(FNV_INIT, buf, BUF));
		if (sleep)
			sleep_ms(sleep);
	}
	printf("done steps=%ld checksum=%016llx\n", steps, (unsigned long long)digest(mem, words));
	return 0;
}
