/* Lazy restart (ckpt restart --lazy): the restored program runs before
 * its generation's pages were read, so their checksums are verified while
 * it runs, by a child of the supervisor that reads every image of the
 * generation and its parents (which also brings them into the page cache
 * the program's memory is mapped from). Checkpoints wait for the verdict:
 * a new generation must not be made of memory that may be damaged. When
 * the verdict is bad the program is killed, the generation is marked
 * damaged (a file beside its manifest, so later restarts pass over it),
 * and the supervisor exits 1: nothing in the run directory is removed. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coord/coord_int.h"
#include "coord/err.h"
#include "coord/fsutil.h"
#include "coord/gens.h"
#include "coord/log.h"
#include "coord/verify.h"

static void lazy_verify_take(struct coord *c, char *buf);

int verify_restored(const struct coord_opts *o, struct gen_verdict *v)
{
	char images_path[4200];
	snprintf(images_path, sizeof(images_path), "%s/%s", o->rundir, GENS_DIR);
	*v = (struct gen_verdict){.decode = 0};
	return gens_verify(o->imagesfd, images_path, o->restored_gen, NULL, v);
}

/* "ok BYTES" or "damaged WHAT" */
static void verdict(const struct coord_opts *o, char *line, size_t cap)
{
	struct gen_verdict v;
	if (verify_restored(o, &v) == 0)
		snprintf(line, cap, "ok %llu\n", (unsigned long long)v.bytes);
	else
		snprintf(line, cap, "damaged %s\n", v.first);
}

void lazy_verify_begin(struct coord *c)
{
	int p[2] = {-1, -1};
	pid_t pid = -1;
	c->verify_t0 = ckpt_mono_ms();
	if (pipe2(p, O_CLOEXEC) == 0 && (pid = fork()) == 0) {
		char line[1400];
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* the supervisor's, not a leftover */
		close(p[0]);
		verdict(c->o, line, sizeof(line));
		_exit(write_all(p[1], line, strlen(line)) < 0 ? 1 : 0);
	}
	if (p[1] >= 0)
		close(p[1]);
	if (pid > 0) {
		c->verify_pid = pid;
		c->verify_fd = p[0];
		return;
	}
	/* No child: verify here, before the supervisor goes on. */
	ckpt_log(c->o->exec_log,
		 "lazy restart: cannot verify generation %llu in the background (%s); verifying "
		 "it now",
		 (unsigned long long)c->o->restored_gen, strerror(errno));
	if (p[0] >= 0)
		close(p[0]);
	char line[1400];
	verdict(c->o, line, sizeof(line));
	lazy_verify_take(c, line);
}

static void mark_damaged(struct coord *c, const char *why)
{
	if (gens_mark_damaged(c->o->imagesfd, c->o->restored_gen, "a lazy restart's verification",
			      why) < 0)
		ckpt_log(c->o->exec_log, "%s", ckpt_error());
}

void lazy_verify_end(struct coord *c)
{
	char buf[1500];
	ssize_t n = read(c->verify_fd, buf, sizeof(buf) - 1);
	if (n < 0 && errno == EINTR)
		return;
	buf[n > 0 ? n : 0] = '\0';
	close(c->verify_fd);
	c->verify_fd = -1;
	int status = 0;
	while (waitpid(c->verify_pid, &status, 0) < 0 && errno == EINTR)
		;
	c->verify_pid = 0;
	if (strncmp(buf, "ok ", 3) && strncmp(buf, "damaged ", 8)) {
		/* the child died without a verdict: that says nothing about
		 * the images, so verify them here */
		ckpt_log(c->o->exec_log,
			 "lazy restart: the verification of generation %llu ended without a "
			 "verdict (status %d); verifying it now",
			 (unsigned long long)c->o->restored_gen, status);
		verdict(c->o, buf, sizeof(buf));
	}
	lazy_verify_take(c, buf);
}

static void lazy_verify_take(struct coord *c, char *buf)
{
	char *nl = strchr(buf, '\n');
	if (nl)
		*nl = '\0';
	unsigned long long gen = (unsigned long long)c->o->restored_gen;
	if (!strncmp(buf, "ok ", 3)) {
		ckpt_log(c->o->exec_log,
			 "lazy restart: generation %llu verified while the program ran (%s bytes "
			 "in %lld ms)",
			 gen, buf + 3, (long long)(ckpt_mono_ms() - c->verify_t0));
		if (c->ckpt_deferred) {
			c->ckpt_deferred = 0;
			ckpt_start(c, "waited for the verification of the restored generation");
		}
		return;
	}
	const char *why = buf + 8;
	c->lazy_damaged = 1;
	mark_damaged(c, why);
	ckpt_log(c->o->exec_log,
		 "lazy restart: generation %llu is damaged: %s; the program may have read damaged "
		 "memory, so it is killed (the generation is kept and marked damaged; ckpt restart "
		 "falls back to an older one: %s)",
		 gen, why, c->o->restart_hint);
	fprintf(stderr,
		"ckpt: generation %llu, restored lazily, is damaged (%s); the program was killed; "
		"restart again to fall back to an older generation\n",
		gen, why);
	if (c->cmd_fd >= 0 && write_all(c->cmd_fd, "killall 9\n", 10) < 0)
		ckpt_log(c->o->exec_log, "cannot tell init to kill the program: %s",
			 strerror(errno));
}

int lazy_verify_defer(struct coord *c, const char *why)
{
	if (!c->verify_pid && !c->lazy_damaged)
		return 0;
	if (!c->ckpt_deferred)
		ckpt_log(c->o->exec_log,
			 "checkpoint (%s) waits until generation %llu, restored lazily, is "
			 "verified",
			 why, (unsigned long long)c->o->restored_gen);
	c->ckpt_deferred = 1;
	c->next_due = -1;
	return 1;
}
