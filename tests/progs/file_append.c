/* file_append STEPS SLEEP_MS OUTFILE INFILE: each step reads the next 41
 * bytes of INFILE (wrapping at its end) and appends one line to OUTFILE,
 * through a raw O_APPEND descriptor and through a stdio stream opened in
 * append mode. After each step it checks with lseek, ftell and fstat that
 * every offset is exactly what it expects and prints them. OUTFILE is
 * created (or truncated) at start. The last line has a checksum of the
 * input read and of OUTFILE as found on disk. */
#include "common.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK 41

int main(int argc, char **argv)
{
	const char *extra = "OUTFILE INFILE";
	if (argc != 5)
		usage_exit(argv[0], extra);
	long steps = parse_num(argv[1], argv[0], extra);
	long sleep = parse_num(argv[2], argv[0], extra);
	const char *outpath = argv[3], *inpath = argv[4];
	setup_stdout();

	int in = open(inpath, O_RDONLY);
	if (in < 0)
		die(inpath);
	int out = open(outpath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	if (out < 0)
		die(outpath);
	FILE *fp = fopen(outpath, "a");
	if (!fp)
		die(outpath);

	off_t in_off = 0, out_size = 0;
	uint64_t in_sum = FNV_INIT;
	long wraps = 0, errors = 0;
	for (long s = 0; s < steps; s++) {
		char buf[CHUNK];
		ssize_t n = read(in, buf, CHUNK);
		if (n < 0)
			die("read");
		if (n == 0) { /* end of input: start over */
			if (lseek(in, 0, SEEK_SET) != 0)
				die("lseek");
			in_off = 0;
			wraps++;
			n = read(in, buf, CHUNK);
			if (n <= 0)
				die("read after rewind");
		}
		in_off += n;
		in_sum = fnv1a(in_sum, buf, (size_t)n);
		off_t in_pos = lseek(in, 0, SEEK_CUR);

		char line[160];
		int len = snprintf(line, sizeof line, "raw step %ld read %zd bytes sum %016llx\n",
				   s, n, (unsigned long long)in_sum);
		if (write(out, line, (size_t)len) != len)
			die("write");
		out_size += len;
		off_t raw_pos = lseek(out, 0, SEEK_CUR);

		len = fprintf(fp, "stdio step %ld at %lld\n", s, (long long)out_size);
		if (len < 0 || fflush(fp))
			die("fprintf");
		out_size += len;
		long stdio_pos = ftell(fp);
		struct stat st;
		if (fstat(out, &st))
			die("fstat");

		int ok = in_pos == in_off && stdio_pos == out_size && st.st_size == out_size &&
			 raw_pos == out_size - len;
		errors += !ok;
		printf("step %ld in_off=%lld/%lld wraps=%ld raw_off=%lld ftell=%ld size=%lld "
		       "expect=%lld %s\n",
		       s, (long long)in_pos, (long long)in_off, wraps, (long long)raw_pos,
		       stdio_pos, (long long)st.st_size, (long long)out_size,
		       ok ? "ok" : "MISMATCH");
		if (sleep)
			sleep_ms(sleep);
	}
	fclose(fp);
	close(out);

	/* Read back what is on disk. */
	int chk = open(outpath, O_RDONLY);
	if (chk < 0)
		die(outpath);
	uint64_t out_sum = FNV_INIT;
	off_t total = 0;
	char buf[4096];
	ssize_t n;
	while ((n = read(chk, buf, sizeof buf)) > 0) {
		out_sum = fnv1a(out_sum, buf, (size_t)n);
		total += n;
	}
	close(chk);
	printf(
	    "done steps=%ld errors=%ld out_size=%lld expect=%lld in_sum=%016llx out_sum=%016llx\n",
	    steps, errors, (long long)total, (long long)out_size, (unsigned long long)in_sum,
	    (unsigned long long)out_sum);
	return errors || total != out_size ? 1 : 0;
}
