/* ckpt run: start the program if its run has no checkpoint yet, resume it
 * from the latest good one otherwise. Meant to be called again and again,
 * as a requeued batch job does (docs/slurm.md):
 *   - no run directory: ckpt start;
 *   - a run directory with a complete checkpoint: ckpt restart;
 *   - a run directory without one (the job ended before its first
 *     checkpoint): start afresh in it, keeping its logs;
 *   - a run whose program exited by itself (RUNDIR/finished): nothing to
 *     do; exit with the program's status again.
 * Inside a Slurm job without --id, the run is named after the job
 * ("job<JOBID>", "job<ARRAYJOB>_<TASK>"), which a requeue keeps. */
#include "cli/cli.h"
#include "cli/config.h"
#include "cli/options.h"
#include "cli/rundir.h"
#include "cli/slurm.h"
#include "cli/supervise.h"
#include "coord/err.h"
#include "coord/gens.h"
#include "coord/kvfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The config in dirfd is this command line's (the name alone can be
 * shared, see docs/protocol.md). */
static int same_run(int dirfd, const struct run_opts *o, const char *rundir)
{
	struct run_config cfg;
	if (config_read(dirfd, &cfg) < 0) {
		if (errno == ENOENT)
			return ckpt_fail(
			    "%s exists and is not a ckpt run directory (no config); move it "
			    "away or choose another --id or --dir",
			    rundir);
		return ckpt_fail("cannot use %s: %s", rundir, ckpt_error());
	}
	int same = cfg.ncmd == o->ncmd &&
		   ((!o->id && !cfg.id) || (o->id && cfg.id && !strcmp(o->id, cfg.id)));
	for (int i = 1; same && i < o->ncmd; i++)
		same = strcmp(cfg.cmd[i], o->cmd[i]) == 0;
	if (!same) {
		char *theirs = shell_join(cfg.cmd, cfg.ncmd);
		ckpt_fail("run directory %s belongs to another command line (%s%s%s); give this "
			  "one an --id",
			  rundir, cfg.id ? "--id " : "", cfg.id ? cfg.id : "",
			  theirs ? theirs : "?");
		free(theirs);
	}
	config_free(&cfg);
	return same ? 0 : -1;
}

int cmd_run(int argc, char **argv)
{
	struct run_opts o;
	if (parse_run_opts(argc, argv, &o) < 0)
		return report_error(EXIT_USAGE);
	if (o.help) {
		print_help("run");
		return 0;
	}
	if (o.ncmd == 0) {
		ckpt_fail(
		    "missing program: ckpt run [options] [--] PROGRAM|script.py [ARGS...] (see "
		    "ckpt run --help)");
		return report_error(EXIT_USAGE);
	}
	o.run = 1;
	if (batch_opts_check(&o) < 0)
		return report_error(EXIT_USAGE);
	struct slurm_job job;
	char idbuf[128];
	if (!o.id && slurm_job(&job)) {
		if (slurm_default_id(&job, idbuf, sizeof(idbuf)) < 0)
			return report_error(EXIT_USAGE);
		o.id = idbuf;
	}
	char *name = rundir_name(o.id, o.cmd, o.ncmd);
	char *rundir = name ? rundir_path(o.dir, name) : NULL;
	if (!rundir)
		return report_error(1);
	int dfd = open(rundir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0 && errno == ENOENT)
		return start_run(&o, 1); /* afresh also when another run made it meanwhile */
	if (dfd < 0) {
		ckpt_fail_errno("cannot open the run directory %s", rundir);
		return report_error(errno == ENOTDIR || errno == ELOOP ? EXIT_USAGE : 1);
	}
	if (same_run(dfd, &o, rundir) < 0) {
		close(dfd);
		return report_error(EXIT_USAGE);
	}
	int status;
	char when[64];
	if (rundir_finished(dfd, &status, when, sizeof(when))) {
		fprintf(stderr,
			"ckpt: the program of %s finished already (exit status %d, %s); nothing to "
			"do (to run it again, remove the run directory)\n",
			rundir, status, when);
		close(dfd);
		return status;
	}
	int imfd = openat(dfd, GENS_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	uint64_t gen = 0;
	int have = imfd >= 0 ? gens_latest(imfd, &gen) : 0;
	if (imfd >= 0)
		close(imfd);
	close(dfd);
	if (have < 0) {
		ckpt_fail("cannot use %s: %s", rundir, ckpt_error());
		return report_error(1);
	}
	if (have == 0)
		return start_run(&o, 1);
	fprintf(stderr, "ckpt: resuming %s from its latest checkpoint\n", rundir);
	return restart_run(&o);
}
