/* full_pipe STEPS SLEEP_MS: a child writes large blocks into a pipe much
 * faster than its parent reads them, so it is nearly always blocked in
 * write() on a full pipe; the parent reads one 16 KiB record per step and
 * prints a running checksum. A checkpoint finds the writer blocked with
 * the pipe full, and a restart must lose or repeat no byte. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RECORD 16384

static uint64_t next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

int main(int argc, char **argv)
{
	int steps = argc > 1 ? atoi(argv[1]) : 60, sleep_ms = argc > 2 ? atoi(argv[2]) : 40;
	int p[2];
	if (pipe(p) != 0)
		return perror("pipe"), 1;
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		static uint64_t block[4 * RECORD / 8];
		uint64_t x = 88172645463325252ull;
		for (int i = 0; i < steps / 4; i++) {
			for (size_t k = 0; k < sizeof block / 8; k++)
				block[k] = next(&x);
			const char *q = (const char *)block;
			size_t left = sizeof block;
			while (left) {
				ssize_t n = write(p[1], q, left);
				if (n < 0 && errno == EINTR)
					continue;
				if (n <= 0)
					_exit(2);
				q += n;
				left -= (size_t)n;
			}
		}
		_exit(0);
	}
	close(p[1]);
	uint64_t sum = 0;
	static unsigned char rec[RECORD];
	for (int i = 0; i < steps; i++) {
		size_t got = 0;
		while (got < RECORD) {
			ssize_t n = read(p[0], rec + got, RECORD - got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				printf("step %d writer went away after %zu bytes\n", i, got);
				return 1;
			}
			got += (size_t)n;
		}
		for (size_t k = 0; k < RECORD; k++)
			sum = sum * 31 + rec[k];
		printf("step %d sum=%016llx\n", i, (unsigned long long)sum);
		fflush(stdout);
		struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
	int status;
	waitpid(pid, &status, 0);
	printf("done steps=%d sum=%016llx writer=%d\n", steps, (unsigned long long)sum,
	       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	return 0;
}
