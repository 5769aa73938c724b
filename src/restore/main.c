/* ckpt-restore IMAGE: becomes the process saved in IMAGE. Started by the
 * namespace init of `ckpt restart` with the image's pid; exits with status
 * 2 and one line on stderr if anything fails before the hand-over. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "restore/restore.h"

char restore_error[1024];
static int error_fd = 2;

int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(restore_error, sizeof restore_error, fmt, ap);
	va_end(ap);
	return -1;
}

void warn(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	dprintf(error_fd, "ckpt-restore: warning: %s\n", msg);
}

void report_and_exit(void)
{
	dprintf(error_fd, "ckpt-restore: %s\n", restore_error);
	exit(2);
}

static void fill_restore_info(struct plan *p, const struct ckpt_image *img,
			      const struct fd_context *c)
{
	struct ckpt_restore_info *ri = &p->restore_info;
	memset(ri, 0, sizeof *ri);
	ri->magic = CKPT_RESTORE_MAGIC;
	ri->generation = img->hdr.generation;
	for (int i = 0; i < 3; i++) {
		struct stat st;
		if (fstat(c->stdio[i], &st) == 0) {
			ri->stdio_dev[i] = st.st_dev;
			ri->stdio_ino[i] = st.st_ino;
		}
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ri->restore_time_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	p->restore_info_addr = img->process.restore_info_addr;
}

/* Become the process of image img (in the tree, index self). */
static __attribute__((noreturn)) void become(int self, struct fd_context *c)
{
	struct ckpt_image *img = tree.procs[self].img;
	if (check_compatible(img) != 0 || fds_prepare(c, img, tree.min_private) != 0 ||
	    shared_files_restore(img) != 0)
		report_and_exit();
	error_fd = c->err;
	struct plan *plan = plan_build(img, c);
	if (!plan)
		report_and_exit();
	if (attrs_restore(img) != 0 || fds_restore(c, img) != 0)
		report_and_exit();
	shm_close_unused(plan, NULL);
	fill_restore_info(plan, img, c);
	plan->err_fd = c->err;
	/* none of the restorer's own descriptors may outlive it */
	int ours[] = {c->ctl, c->stdio[0], c->stdio[1], c->stdio[2]};
	for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++)
		if (ours[i] >= 0 && plan->nclose < PLAN_MAX_CLOSE)
			plan->close_fds[plan->nclose++] = ours[i];
	for (int i = 0; i < tree.n; i++)
		close(tree.procs[i].img->fd);
	if (tree_barrier(self) != 0)
		report_and_exit();
	tree_join_group(img);
	hand_over(plan);
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--lazy")) {
		restore_lazy = 1;
		argv++;
		argc--;
	}
	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: ckpt-restore [--lazy] IMAGE (started by ckpt restart)\n");
		return 2;
	}
	/* one descriptor per mapped file may exceed the soft limit; the
	 * program's own limits are set back before the hand-over */
	struct rlimit nofile;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	/* Every image of the generation: the tree is rebuilt from the first
	 * process, which creates what processes share, then forks the rest. */
	struct fd_context c;
	if (tree_load(argv[1]) != 0 || fds_prepare_stdio(&c, tree.min_private) != 0 ||
	    shm_prepare() != 0 || shared_prepare(&c) != 0)
		report_and_exit();
	if (!fds_resume_stdin(&c, tree.procs[tree.root].img))
		for (int i = 0; i < tree.n && !fds_resume_stdin(&c, tree.procs[i].img); i++)
			;
	int self = tree_spawn();
	if (self < 0)
		report_and_exit();
	become(self, &c);
}
