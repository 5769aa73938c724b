/* shm_counter STEPS SLEEP_MS: a parent and a forked child share a
 * MAP_SHARED|MAP_ANONYMOUS area holding a counter, a 4 KiB table and three
 * process-shared semaphores (sem_init(&s, 1, ...)): a lock around every
 * update, and two turn semaphores so that the two processes strictly
 * alternate. Each turn, each process increments the counter and mixes a
 * value from its own private generator into the table. The parent prints
 * the counter and a checksum of the shared area each step (the child
 * waits in sem_wait meanwhile); at the end the child exits with a status
 * derived from its private state, which the parent prints. */
#include "common.h"
#include <poll.h>
#include <semaphore.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define WORDS 512

struct shared {
	sem_t lock;
	sem_t parent_turn;
	sem_t child_turn;
	volatile int stop;
	uint64_t counter;
	uint64_t last_child; /* last value the child mixed in */
	uint64_t table[WORDS];
};

/* The read end of a pipe whose only write end the other process holds:
 * end of file there means that process is gone. */
static int peer_fd = -1;

/* sem_wait, but without waiting forever for a process that is gone: every
 * 200 ms without the semaphore, look whether the other process still
 * exists. (No absolute deadline: a checkpoint may stop the program for
 * any length of time.) */
static void xsem_wait(sem_t *s)
{
	for (;;) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (sem_timedwait(s, &ts) == 0)
			return;
		if (errno == EINTR)
			continue;
		if (errno != ETIMEDOUT)
			die("sem_timedwait");
		struct pollfd pf = {peer_fd, POLLIN, 0};
		if (poll(&pf, 1, 0) > 0) {
			fprintf(stderr, "shm_counter: the other process is gone\n");
			exit(98);
		}
	}
}

static void xsem_post(sem_t *s)
{
	if (sem_post(s) != 0)
		die("sem_post");
}

static void update(struct shared *sh, uint64_t v, int who)
{
	xsem_wait(&sh->lock);
	sh->counter++;
	sh->table[v % WORDS] ^= v;
	sh->table[(sh->counter * 7 + (uint64_t)who) % WORDS] += v >> 11;
	xsem_post(&sh->lock);
}

static void child(struct shared *sh)
{
	uint64_t rng = 0x9e3779b97f4a7c15ull, h = FNV_INIT;
	long turns = 0;
	for (;;) {
		xsem_wait(&sh->child_turn);
		if (sh->stop)
			break;
		uint64_t v = xorshift64(&rng);
		update(sh, v, 1);
		sh->last_child = v;
		h = fnv1a(h, &v, sizeof v);
		turns++;
		xsem_post(&sh->parent_turn);
	}
	_exit(20 + (int)((h + (uint64_t)turns) % 50));
}

int main(int argc, char **argv)
{
	long steps, sleep;
	steps_and_sleep(argc, argv, &steps, &sleep);
	fflush(stdout);

	struct shared *sh =
	    mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		die("mmap");
	if (sem_init(&sh->lock, 1, 1) || sem_init(&sh->parent_turn, 1, 0) ||
	    sem_init(&sh->child_turn, 1, 0))
		die("sem_init");
	for (unsigned i = 0; i < WORDS; i++)
		sh->table[i] = i * 0x100000001b3ull;

	int to_child[2], to_parent[2]; /* nothing is written: their ends are watched */
	if (pipe(to_child) || pipe(to_parent))
		die("pipe");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		close(to_child[1]);
		close(to_parent[0]);
		peer_fd = to_child[0];
		child(sh);
	}
	close(to_child[0]);
	close(to_parent[1]);
	peer_fd = to_parent[0];

	uint64_t rng = 0x853c49e6748fea9bull;
	for (long s = 0; s < steps; s++) {
		update(sh, xorshift64(&rng), 0);
		xsem_post(&sh->child_turn);
		xsem_wait(&sh->parent_turn);
		xsem_wait(&sh->lock);
		uint64_t counter = sh->counter;
		uint64_t h = fnv1a(FNV_INIT, sh->table, sizeof sh->table);
		uint64_t last = sh->last_child;
		xsem_post(&sh->lock);
		printf("step %ld counter=%llu child=%016llx shm=%016llx\n", s,
		       (unsigned long long)counter, (unsigned long long)last,
		       (unsigned long long)h);
		if (sleep)
			sleep_ms(sleep); /* the child is blocked in sem_wait meanwhile */
	}
	sh->stop = 1;
	xsem_post(&sh->child_turn);
	int st;
	pid_t r;
	while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
		;
	if (r < 0)
		die("waitpid");
	if (WIFEXITED(st))
		printf("child exit=%d\n", WEXITSTATUS(st));
	else
		printf("child status=%#x\n", st);
	uint64_t h = fnv1a(FNV_INIT, sh->table, sizeof sh->table);
	h = fnv1a(h, &sh->counter, sizeof sh->counter);
	printf("done steps=%ld counter=%llu checksum=%016llx\n", steps,
	       (unsigned long long)sh->counter, (unsigned long long)h);
	return 0;
}
