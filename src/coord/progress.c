/* ckpt restart on a terminal: until the restored program connects, a line
 * on stderr that says how much the restorers have read so far (the sum of
 * /proc/PID/io rchar over init's descendants), redrawn every half second
 * once the restart takes longer than a second, and erased when the
 * program runs (its output then goes to the same terminal). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coord/coord_int.h"
#include "coord/log.h"
#include "coord/tree.h"

#define PROGRESS_AFTER_MS 1000
#define PROGRESS_EVERY_MS 500

void restore_progress_begin(struct coord *c)
{
	/* CKPT_PROGRESS_AFTER_MS: for tests, which restore in less */
	const char *after = getenv("CKPT_PROGRESS_AFTER_MS");
	c->progress_next = -1;
	if (c->o->restored_gen && isatty(STDERR_FILENO))
		c->progress_next = ckpt_mono_ms() + (after ? atoi(after) : PROGRESS_AFTER_MS);
	c->progress_t0 = ckpt_mono_ms();
}

static unsigned long long bytes_read(pid_t hpid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/io", (int)hpid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	unsigned long long v = 0;
	while (fgets(buf, sizeof(buf), f))
		if (sscanf(buf, "rchar: %llu", &v) == 1)
			break;
	fclose(f);
	return v;
}

void restore_progress_tick(struct coord *c)
{
	if (c->progress_next < 0 || ckpt_mono_ms() < c->progress_next)
		return;
	struct tree_proc procs[256];
	int n = tree_list(c->o->launch.init_pid, procs, 256);
	unsigned long long total = 0;
	for (int i = 0; i < n; i++)
		total += bytes_read(procs[i].hpid);
	fprintf(stderr, "\rckpt: restoring generation %llu, %.1f MiB read, %.1f s ",
		(unsigned long long)c->o->restored_gen, total / 1048576.0,
		(ckpt_mono_ms() - c->progress_t0) / 1000.0);
	fflush(stderr);
	c->progress_shown = 1;
	c->progress_next = ckpt_mono_ms() + PROGRESS_EVERY_MS;
}

void restore_progress_end(struct coord *c)
{
	if (c->progress_shown) {
		fprintf(stderr, "\r\033[K");
		fflush(stderr);
	}
	c->progress_shown = 0;
	c->progress_next = -1;
}
