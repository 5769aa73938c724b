/* memcost: what memory costs on this machine, outside ckpt, for the
 * benchmark report. A copy-on-write checkpoint reads every saved page in a
 * fork()ed child, and a restart faults in fresh memory for all of them; in
 * some VMs either costs microseconds per 4 KiB page, which bounds what
 * ckpt can do there.
 *
 *   memcost MIB
 *
 * Prints one line, in seconds per GiB:
 *   fresh=S       first write to each page of fresh private anonymous memory
 *   populated=S   the same, faulted in by the kernel at once
 *                 (MADV_POPULATE_WRITE), not page by page from user space
 *   child_read=S  first read of each page in a child forked after the
 *                 memory was written
 *   parent_read=S the same pages read again by the parent meanwhile
 * and in microseconds per page:
 *   child_sparse_us=U first read of every 100th page in a child forked
 *                 after the parent wrote those pages again (what an
 *                 incremental checkpoint's writer does after 1% changed) */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* One word of each page (of one page in step); volatile, so that no read
 * is optimised away. */
static void read_pages(const char *p, size_t len, size_t step)
{
	for (size_t i = 0; i < len; i += step)
		(void)*(const volatile uint64_t *)(p + i);
}

/* The time a child forked now takes to read the pages; -1 if it failed. */
static double in_child(const char *p, size_t len, size_t step)
{
	int fds[2];
	if (pipe(fds) != 0) {
		perror("memcost: pipe");
		return -1;
	}
	pid_t child = fork();
	if (child < 0) {
		perror("memcost: fork");
		return -1;
	}
	if (child == 0) {
		double t = now();
		read_pages(p, len, step);
		double took = now() - t;
		_exit(write(fds[1], &took, sizeof took) == sizeof took ? 0 : 1);
	}
	double took = -1;
	int status;
	if (read(fds[0], &took, sizeof took) != sizeof took ||
	    waitpid(child, &status, 0) != child || status != 0) {
		fprintf(stderr, "memcost: the child failed\n");
		took = -1;
	}
	close(fds[0]);
	close(fds[1]);
	return took;
}

int main(int argc, char **argv)
{
	long mib = argc == 2 ? atol(argv[1]) : 0;
	if (mib <= 0) {
		fprintf(stderr, "usage: memcost MIB\n");
		return 2;
	}
	size_t len = (size_t)mib << 20;
	double per_gib = 1024.0 / (double)mib;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("memcost: mmap");
		return 1;
	}
	double t0 = now();
	for (size_t i = 0; i < len; i += PAGE)
		p[i] = (char)(i / PAGE);
	double fresh = now() - t0;

	char *q = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (q == MAP_FAILED) {
		perror("memcost: mmap");
		return 1;
	}
	t0 = now();
	double populated = madvise(q, len, MADV_POPULATE_WRITE) == 0 ? now() - t0 : -1;
	munmap(q, len);

	double child_read = in_child(p, len, PAGE);
	t0 = now();
	read_pages(p, len, PAGE);
	double parent_read = now() - t0;
	for (size_t i = 0; i < len; i += 100 * PAGE)
		p[i]++;
	double sparse = in_child(p, len, 100 * PAGE);
	if (child_read < 0 || sparse < 0)
		return 1;
	printf("fresh=%.3f populated=%.3f child_read=%.3f parent_read=%.3f child_sparse_us=%.2f\n",
	       fresh * per_gib, populated < 0 ? -1.0 : populated * per_gib, child_read * per_gib,
	       parent_read * per_gib,
	       sparse * 1e6 / (double)((len + 100 * PAGE - 1) / (100 * PAGE)));
	return 0;
}
