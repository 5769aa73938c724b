/* temp_merge STEPS SLEEP_MS DIR: an external merge in small. Each step
 * writes a chunk of data to a new temporary file in DIR (mkstemp, which
 * glibc opens internally) and closes it; from step 3 on it also opens the
 * file of three steps before, adds its bytes to a checksum and deletes it,
 * as a merging sort does with its runs. A checkpoint finds two or three
 * such files closed and one open; a restart after the program deleted
 * them needs them back, or the program fails to open them (exit 99). */
#include "common.h"
#include <sys/stat.h>

#define LAG 3
#define CHUNK 20000

int main(int argc, char **argv)
{
	const char *extra = "DIR";
	if (argc != 4)
		usage_exit(argv[0], extra);
	long steps = parse_num(argv[1], argv[0], extra);
	long sleep = parse_num(argv[2], argv[0], extra);
	const char *dir = argv[3];
	setup_stdout();
	char (*names)[4096] = calloc((size_t)steps, sizeof *names);
	static char buf[CHUNK];
	if (!names)
		die("calloc");
	uint64_t sum = FNV_INIT;
	for (long s = 0; s < steps; s++) {
		snprintf(names[s], sizeof names[s], "%s/run-XXXXXX", dir);
		int fd = mkstemp(names[s]);
		if (fd < 0)
			die("mkstemp");
		for (size_t i = 0; i < CHUNK; i++)
			buf[i] = (char)('a' + (s * 7 + (long)i * 13) % 26);
		if (write(fd, buf, CHUNK) != CHUNK || close(fd) != 0)
			die("write");
		uint64_t got = 0;
		if (s >= LAG) {
			const char *old = names[s - LAG];
			int in = open(old, O_RDONLY);
			if (in < 0)
				die(old);
			ssize_t n;
			while ((n = read(in, buf, sizeof buf)) > 0) {
				sum = fnv1a(sum, buf, (size_t)n);
				got += (uint64_t)n;
			}
			if (n < 0 || close(in) != 0 || unlink(old) != 0)
				die(old);
		}
		printf("step %ld merged %llu sum %016llx\n", s, (unsigned long long)got,
		       (unsigned long long)sum);
		sleep_ms(sleep);
	}
	for (long s = steps - LAG > 0 ? steps - LAG : 0; s < steps; s++)
		unlink(names[s]);
	printf("done steps=%ld sum %016llx\n", steps, (unsigned long long)sum);
	free(names);
	return 0;
}
