/* pipe_reader STEPS SLEEP_MS: a reader thread spends its life blocked in
 * read() on a pipe; the main thread writes one 64-byte record per step to
 * it, then sleeps. A second pipe always holds a 16 KiB backlog that the
 * reader drains 97 bytes per step while the main thread tops it up, so
 * data sits queued in a pipe at any checkpoint. The reader acknowledges
 * each record over a socketpair with its running digest. */
#include "common.h"
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#define REC 64
#define CHUNK 97
#define BACKLOG 16384

static int msg_pipe[2], backlog_pipe[2], acks[2];
static uint64_t fill_rng = 88172645463325252ull; /* main: bytes written to the backlog */

static void fill_backlog(size_t n)
{
	unsigned char buf[BACKLOG];
	for (size_t i = 0; i < n; i++)
		buf[i] = (unsigned char)(xorshift64(&fill_rng) >> 24);
	write_full(backlog_pipe[1], buf, n);
}

static void *reader(void *arg)
{
	(void)arg;
	uint64_t acc = FNV_INIT, backlog_acc = FNV_INIT;
	for (long s = 0;; s++) {
		char rec[REC + 1];
		read_full(msg_pipe[0], rec, REC); /* blocks here while main sleeps */
		rec[REC] = 0;
		if (!strncmp(rec, "end", 3))
			break;
		unsigned char chunk[CHUNK];
		read_full(backlog_pipe[0], chunk, CHUNK);
		acc = fnv1a(acc, rec, REC);
		backlog_acc = fnv1a(backlog_acc, chunk, CHUNK);
		printf("step %ld got=\"%.28s\" acc=%016llx backlog=%016llx\n", s, rec,
		       (unsigned long long)acc, (unsigned long long)backlog_acc);
		uint64_t ack = acc ^ backlog_acc;
		write_full(acks[0], &ack, sizeof ack);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	long steps, sleep;
	steps_and_sleep(argc, argv, &steps, &sleep);

	if (pipe(msg_pipe) || pipe(backlog_pipe) || socketpair(AF_UNIX, SOCK_STREAM, 0, acks))
		die("pipe");
	fill_backlog(BACKLOG);

	pthread_t th;
	int e = pthread_create(&th, NULL, reader, NULL);
	if (e) {
		errno = e;
		die("pthread_create");
	}
	uint64_t rng = 0x853c49e6748fea9bull, acked = FNV_INIT;
	for (long s = 0; s < steps; s++) {
		char rec[128];
		int n = snprintf(rec, sizeof rec, "msg %06ld %016llx payload", s,
				 (unsigned long long)xorshift64(&rng));
		memset(rec + n, '.', sizeof rec - (size_t)n);
		write_full(msg_pipe[1], rec, REC);
		fill_backlog(CHUNK);
		uint64_t ack;
		read_full(acks[1], &ack, sizeof ack);
		acked = fnv1a(acked, &ack, sizeof ack);
		if (sleep)
			sleep_ms(sleep);
	}
	char end[REC] = "end";
	write_full(msg_pipe[1], end, REC);
	pthread_join(th, NULL);

	/* The backlog still holds BACKLOG bytes: fold them into the checksum. */
	unsigned char rest[BACKLOG];
	read_full(backlog_pipe[0], rest, BACKLOG);
	uint64_t h = fnv1a(acked, rest, BACKLOG);
	printf("done steps=%ld checksum=%016llx\n", steps, (unsigned long long)h);
	return 0;
}
