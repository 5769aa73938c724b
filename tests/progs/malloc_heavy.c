/* malloc_heavy STEPS SLEEP_MS: per step, 300 random malloc/free/realloc
 * operations on 128 slots, sizes from 1 byte to 1 MiB; blocks of 128 KiB
 * and more come from mmap (the threshold is pinned), the rest from the brk
 * heap. Every block is filled with a pattern derived from its slot and
 * generation and verified before it is freed, so lost or moved memory
 * shows as "bad" blocks. The program also grows the break itself with
 * sbrk and keeps a pattern there. Each step prints a digest of all live
 * memory. */
#include "common.h"
#include <malloc.h>
#include <unistd.h>

#define SLOTS 128
#define OPS 300
#define SBRK_CHUNK 8192

struct slot {
	unsigned char *p;
	size_t size;
	uint64_t tag;
};
static struct slot slots[SLOTS];

static unsigned char pat(uint64_t tag, size_t i)
{
	return (unsigned char)((tag >> ((i & 7) * 8)) + i * 131u);
}

static void fill(struct slot *sl, size_t from)
{
	for (size_t i = from; i < sl->size; i++)
		sl->p[i] = pat(sl->tag, i);
}

static unsigned long bad;

static void verify(const struct slot *sl, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (sl->p[i] != pat(sl->tag, i)) {
			bad++;
			return;
		}
	}
}

static size_t pick_size(uint64_t r)
{
	unsigned cls = (unsigned)(r % 100);
	r >>= 8;
	if (cls < 85)
		return 1 + r % 4096; /* small: brk heap */
	if (cls < 97)
		return 4096 + r % (60 * 1024); /* medium: brk heap */
	return 128 * 1024 + r % (896 * 1024);  /* big: mmap */
}

int main(int argc, char **argv)
{
	long steps, sleep;
	steps_and_sleep(argc, argv, &steps, &sleep);
	/* A fixed threshold: big blocks always use mmap, and glibc does not
	 * adapt it as they are freed. */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);

	uint64_t rng = 0x5851f42d4c957f2dull, tagseq = 1;
	unsigned char *brk_base = sbrk(0);
	unsigned char *mine = NULL; /* our own sbrk chunks, kept in a list */
	size_t mine_chunks = 0;
	uint64_t brk_sum = FNV_INIT;
	if (brk_base == (void *)-1)
		die("sbrk");

	for (long s = 0; s < steps; s++) {
		unsigned long mallocs = 0, frees = 0, reallocs = 0;
		for (int op = 0; op < OPS; op++) {
			uint64_t r = xorshift64(&rng);
			struct slot *sl = &slots[r % SLOTS];
			r >>= 7;
			if (sl->p && (r & 3) == 0) {
				/* realloc: the kept prefix must survive */
				size_t ns = pick_size(xorshift64(&rng));
				verify(sl, sl->size);
				unsigned char *np = realloc(sl->p, ns);
				if (!np)
					die("realloc");
				size_t keep = ns < sl->size ? ns : sl->size;
				sl->p = np;
				verify(sl, keep);
				size_t old = sl->size;
				sl->size = ns;
				if (ns > old)
					fill(sl, old);
				reallocs++;
			} else if (sl->p) {
				verify(sl, sl->size);
				free(sl->p);
				sl->p = NULL;
				frees++;
			} else {
				sl->size = pick_size(xorshift64(&rng));
				sl->tag = tagseq++ * 0x9e3779b97f4a7c15ull;
				sl->p = malloc(sl->size);
				if (!sl->p)
					die("malloc");
				fill(sl, 0);
				mallocs++;
			}
		}
		/* Grow the break by hand every 4th step; the chunk keeps a
		 * pointer to the previous one. */
		if (s % 4 == 0) {
			unsigned char *c = sbrk(SBRK_CHUNK);
			if (c == (void *)-1)
				die("sbrk");
			memcpy(c, &mine, sizeof mine);
			for (size_t i = sizeof mine; i < SBRK_CHUNK; i++)
				c[i] = (unsigned char)(i * 7 + mine_chunks);
			mine = c;
			mine_chunks++;
		}
		/* The break must not be below our newest chunk. */
		int brk_ok = mine == NULL || (unsigned char *)sbrk(0) >= mine + SBRK_CHUNK;

		uint64_t h = FNV_INIT;
		size_t live = 0, big = 0, bytes = 0;
		for (int i = 0; i < SLOTS; i++) {
			if (!slots[i].p)
				continue;
			live++;
			bytes += slots[i].size;
			big += slots[i].size >= 128 * 1024;
			h = fnv1a(h, slots[i].p, slots[i].size);
		}
		brk_sum = FNV_INIT;
		size_t walked = 0;
		for (unsigned char *c = mine; c; walked++) {
			brk_sum = fnv1a(brk_sum, c + sizeof c, SBRK_CHUNK - sizeof c);
			memcpy(&c, c, sizeof c);
		}
		printf("step %ld mallocs=%lu frees=%lu reallocs=%lu live=%zu big=%zu bytes=%zu "
		       "mem=%016llx "
		       "sbrk_chunks=%zu/%zu sbrk_mem=%016llx brk=%s bad=%lu\n",
		       s, mallocs, frees, reallocs, live, big, bytes, (unsigned long long)h, walked,
		       mine_chunks, (unsigned long long)brk_sum, brk_ok ? "ok" : "BELOW", bad);
		if (sleep)
			sleep_ms(sleep);
	}
	uint64_t h = FNV_INIT;
	for (int i = 0; i < SLOTS; i++) {
		if (slots[i].p) {
			verify(&slots[i], slots[i].size);
			h = fnv1a(h, slots[i].p, slots[i].size);
			free(slots[i].p);
		}
	}
	h = fnv1a(h, &brk_sum, sizeof brk_sum);
	printf("done steps=%ld bad=%lu checksum=%016llx\n", steps, bad, (unsigned long long)h);
	return bad ? 1 : 0;
}
