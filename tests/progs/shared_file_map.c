/* shared_file_map STEPS SLEEP_MS [PAGES]: a file of PAGES (default 64) pages of pseudo-random data
 * mapped shared and writable, its descriptor closed after mmap (as C and
 * Fortran programs usually do): the program's state lives in the file.
 * Each step reads bytes of the mapping, writes what it computes from them
 * into another page and prints a digest of the whole file: a restart must
 * find the file as it was at the checkpoint, not as the killed run left
 * it. The file is removed at the end. */
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>

#define PAGE 4096u

int main(int argc, char **argv)
{
	const char *extra = "[PAGES]";
	if (argc != 3 && argc != 4)
		usage_exit(argv[0], extra);
	long steps = parse_num(argv[1], argv[0], extra), sleep = parse_num(argv[2], argv[0], extra);
	size_t pages = argc == 4 ? (size_t)parse_num(argv[3], argv[0], extra) : 64;
	if (!pages)
		usage_exit(argv[0], extra);
	setup_stdout();

	char name[64];
	int fd =
	    random_file("shared_file_map", pages * PAGE, 0x2545f4914f6cdd1dull, name, sizeof name);
	unsigned char *map = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		die("mmap");
	close(fd);

	for (long s = 0; s < steps; s++) {
		size_t from = ((size_t)s * 7 % pages) * PAGE + (size_t)s % PAGE;
		size_t to = ((size_t)s * 13 % pages) * PAGE + (size_t)(s * 31) % PAGE;
		map[to] = (unsigned char)(map[to] * 31u + map[from] + 1u);
		printf("step %ld digest %016llx\n", s,
		       (unsigned long long)fnv1a(FNV_INIT, map, pages * PAGE));
		sleep_ms(sleep);
	}
	printf("done steps=%ld\n", steps);
	munmap(map, pages * PAGE);
	unlink(name);
	return 0;
}
