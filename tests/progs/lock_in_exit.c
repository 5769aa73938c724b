/* lock_in_exit FILE MS: takes FILE's flock and leaves it to a child, as
 * ckpt's supervisor leaves its run directory's lock to the namespace's
 * init, then exits at once. The child's main thread exits too, while a
 * second thread keeps the process, and so the lock, MS milliseconds
 * longer. To anyone looking from outside this is what a run killed a
 * moment ago is until the kernel has torn down its memory and closed its
 * files: the process that took the lock is gone, and the one that holds it
 * is exiting. Prints "exiting PID" (the child's) before the parent goes.
 * Not a program to checkpoint: a stand-in for the last moments of one. */
#include "common.h"
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <unistd.h>

static long hold_ms;

static void *keep_then_exit(void *arg)
{
	(void)arg;
	usleep((useconds_t)hold_ms * 1000);
	_exit(0); /* the whole process, and with it the lock */
}

int main(int argc, char **argv)
{
	char *end;
	if (argc != 3 || (hold_ms = strtol(argv[2], &end, 10)) < 0 || *end) {
		fprintf(stderr, "usage: %s FILE MS\n", argv[0]);
		return 2;
	}
	int fd = open(argv[1], O_RDWR | O_CLOEXEC);
	if (fd < 0)
		die("open");
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		die("flock");
	int ready[2];
	if (pipe(ready) < 0)
		die("pipe");
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child > 0) {
		char c;
		if (read(ready[0], &c, 1) != 1)
			die("read");
		printf("exiting %d\n", (int)child);
		return 0;
	}
	pthread_t t;
	if (pthread_create(&t, NULL, keep_then_exit, NULL) != 0)
		die("pthread_create");
	if (write(ready[1], "x", 1) != 1)
		die("write");
	pthread_exit(NULL);
}
