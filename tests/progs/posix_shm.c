/* posix_shm STEPS SLEEP_MS: a parent and a forked child take turns
 * incrementing a counter in POSIX shared memory (shm_open, mmap) under
 * named semaphores (sem_open), the way programs share memory by name. The
 * objects keep their names for the whole run (they are unlinked at the
 * end), so a restart must give their content back under those names. */
#include <fcntl.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <errno.h>

struct shared {
	uint64_t counter;
	uint64_t hash;
};

static void wait_sem(sem_t *s)
{
	while (sem_wait(s) != 0 && errno == EINTR)
		;
}

int main(int argc, char **argv)
{
	int steps = argc > 1 ? atoi(argv[1]) : 60, sleep_ms = argc > 2 ? atoi(argv[2]) : 40;
	char shm_name[64], a_name[64], b_name[64];
	snprintf(shm_name, sizeof shm_name, "/ckpt-test-shm-%d", (int)getpid());
	snprintf(a_name, sizeof a_name, "/ckpt-test-a-%d", (int)getpid());
	snprintf(b_name, sizeof b_name, "/ckpt-test-b-%d", (int)getpid());
	int fd = shm_open(shm_name, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || ftruncate(fd, 4096) != 0)
		return perror("shm_open"), 1;
	struct shared *sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	sem_t *a = sem_open(a_name, O_CREAT | O_EXCL, 0600, 1);
	sem_t *b = sem_open(b_name, O_CREAT | O_EXCL, 0600, 0);
	if (sh == MAP_FAILED || a == SEM_FAILED || b == SEM_FAILED)
		return perror("mmap/sem_open"), 1;
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		for (int i = 0; i < steps; i++) {
			wait_sem(b);
			sh->counter += 3;
			sh->hash = sh->hash * 1099511628211ull ^ sh->counter;
			sem_post(a);
		}
		_exit(0);
	}
	for (int i = 0; i < steps; i++) {
		wait_sem(a);
		sh->counter += 1;
		sh->hash = sh->hash * 1099511628211ull ^ sh->counter;
		printf("step %d counter=%llu hash=%016llx\n", i, (unsigned long long)sh->counter,
		       (unsigned long long)sh->hash);
		fflush(stdout);
		sem_post(b);
		struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
	int status;
	waitpid(pid, &status, 0);
	wait_sem(a);
	printf("done steps=%d counter=%llu hash=%016llx child=%d\n", steps,
	       (unsigned long long)sh->counter, (unsigned long long)sh->hash,
	       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	shm_unlink(shm_name);
	sem_unlink(a_name);
	sem_unlink(b_name);
	return 0;
}
