/* private_map STEPS SLEEP_MS: a file of 48 pages of pseudo-random data,
 * mapped privately as four neighbouring mappings of 12 pages (read-write,
 * read-only, read-write, read-only: the segments of a library look like
 * this). Each step writes one page of each read-write part (its private
 * copy; the file is never written) and prints a digest of all 48 pages: a
 * checkpoint must save exactly the pages written so far, and a restart
 * map the file again under them. The file stays (a restart needs it). */
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>

#define PAGE 4096u
#define PART 12u
#define FILE_PAGES (4 * PART)

int main(int argc, char **argv)
{
	long steps, sleep;
	steps_and_sleep(argc, argv, &steps, &sleep);

	char name[64];
	int fd =
	    random_file("private_map", FILE_PAGES * PAGE, 0x9e3779b97f4a7c15ull, name, sizeof name);
	unsigned char *map =
	    mmap(NULL, FILE_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED)
		die("mmap");
	close(fd);
	if (mprotect(map + PART * PAGE, PART * PAGE, PROT_READ) != 0 ||
	    mprotect(map + 3 * PART * PAGE, PART * PAGE, PROT_READ) != 0)
		die("mprotect");

	for (long s = 0; s < steps; s++) {
		map[(size_t)(s % PART) * PAGE + (size_t)s % PAGE] ^= (unsigned char)(s | 1);
		map[(2 * PART + (size_t)(s * 5) % PART) * PAGE + 17] += (unsigned char)s;
		printf("step %ld digest %016llx\n", s,
		       (unsigned long long)fnv1a(FNV_INIT, map, FILE_PAGES * PAGE));
		sleep_ms(sleep);
	}
	printf("done steps=%ld\n", steps);
	unlink(name);
	return 0;
}
