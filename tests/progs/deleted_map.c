/* deleted_map STEPS SLEEP_MS: a file mapped privately and then deleted:
 * 40 pages and 100 bytes of pseudo-random data, mapped as 42 pages (the
 * last lies wholly past the end of the file: touching it would raise
 * SIGBUS). Pages 1 and 3 are written at once; every other page is first
 * read at step k (page k), so a checkpoint finds most of them never
 * touched: after a restart they must still hold the file's bytes, which
 * no longer exist anywhere but in the image. Each step prints a digest of
 * the pages read so far. */
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>

#define PAGE 4096u
#define FILE_PAGES 40u

int main(int argc, char **argv)
{
	long steps, sleep;
	steps_and_sleep(argc, argv, &steps, &sleep);

	char name[64];
	int fd = random_file("deleted_map", FILE_PAGES * PAGE + 100, 0x853c49e6748fea9bull, name,
			     sizeof name);
	unsigned char *map =
	    mmap(NULL, (FILE_PAGES + 2) * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED)
		die("mmap");
	close(fd);
	if (unlink(name) != 0)
		die("unlink");
	map[PAGE + 5] ^= 0xff; /* private copies of pages 1 and 3 */
	map[3 * PAGE + 7] ^= 0xff;

	uint64_t digest = FNV_INIT;
	for (long s = 0; s < steps; s++) {
		long page = s <= (long)FILE_PAGES ? s : -1;
		if (page >= 0)
			digest = fnv1a(digest, map + (size_t)page * PAGE, PAGE);
		map[PAGE + (size_t)s % PAGE] ^= (unsigned char)s;
		printf("step %ld page %ld digest %016llx page1 %016llx\n", s, page,
		       (unsigned long long)digest,
		       (unsigned long long)fnv1a(FNV_INIT, map + PAGE, PAGE));
		sleep_ms(sleep);
	}
	printf("done steps=%ld checksum=%016llx\n", steps,
	       (unsigned long long)fnv1a(digest, map, (FILE_PAGES + 1) * PAGE));
	return 0;
}
