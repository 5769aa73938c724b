/* ckpt start: create the run directory and run the program in it. */
#include "cli/cli.h"
#include "cli/config.h"
#include "cli/options.h"
#include "cli/paths.h"
#include "cli/program.h"
#include "cli/rundir.h"
#include "cli/supervise.h"
#include "coord/err.h"
#include "coord/fsutil.h"
#include "coord/gens.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* mkdir -p for --dir: a parent that does not exist yet is made, with
 * the usual permissions (the run directory inside is 0700). */
static int make_parents(const char *dir)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path))
		return ckpt_fail("--dir %s: path too long", dir);
	for (char *p = path + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;
			*p = '\0';
			if (mkdir(path, 0777) < 0 && errno != EEXIST)
				return ckpt_fail_errno("cannot create --dir %s", path);
			*p = c;
			if (!c)
				break;
		}
	}
	return 0;
}

/* Explain why an existing run directory is refused, without touching it. */
static int refuse_existing(int parentfd, const char *name, const char *rundir, char *const *cmd,
			   int ncmd, const char *hint)
{
	int dfd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct run_config cfg;
	if (dfd < 0 || config_read(dfd, &cfg) < 0) {
		if (dfd >= 0)
			close(dfd);
		return ckpt_fail(
		    "%s exists and is not a ckpt run directory; move it away or choose "
		    "another --id or --dir",
		    rundir);
	}
	int same = cfg.ncmd == ncmd;
	for (int i = 1; same && i < ncmd; i++)
		same = strcmp(cfg.cmd[i], cmd[i]) == 0;
	if (!same) {
		char *theirs = shell_join(cfg.cmd, cfg.ncmd);
		ckpt_fail(
		    "run directory %s exists and belongs to another command line (%s); give this "
		    "one an --id",
		    rundir, theirs ? theirs : "?");
		free(theirs);
		config_free(&cfg);
		close(dfd);
		return -1;
	}
	config_free(&cfg);
	pid_t holder;
	int held = rundir_lock_held(dfd, &holder);
	uint64_t gen = 0;
	int imfd = openat(dfd, GENS_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int have = imfd >= 0 ? gens_latest(imfd, &gen) : 0;
	if (imfd >= 0)
		close(imfd);
	close(dfd);
	if (held == 1)
		return ckpt_fail("run directory %s exists and is running now (see: ckpt status %s)",
				 rundir, rundir);
	if (have == 1)
		return ckpt_fail("run directory %s exists; resume it with: %s", rundir, hint);
	return ckpt_fail("run directory %s exists, with no complete checkpoint for ckpt restart to "
			 "resume; to start again, remove it first: rm -r %s",
			 rundir, rundir);
}

/* ckpt run on a run directory without a complete checkpoint (its job
 * was killed before the first one): with the lock held, check that it is
 * this command line's and still has no checkpoint, and make it ready for
 * a fresh start. Logs, config and token stay. Returns 0 with *cfg read,
 * or -1 with a message (and nothing changed). */
static int reuse_existing(int dirfd, const char *rundir, const struct run_opts *o, char *token,
			  size_t toklen, struct run_config *cfg)
{
	if (config_read(dirfd, cfg) < 0)
		return ckpt_fail("%s is not a usable ckpt run directory (%s); move it away", rundir,
				 ckpt_error());
	int same = cfg->ncmd == o->ncmd &&
		   ((!o->id && !cfg->id) || (o->id && cfg->id && !strcmp(o->id, cfg->id)));
	for (int i = 1; same && i < o->ncmd; i++)
		same = strcmp(cfg->cmd[i], o->cmd[i]) == 0;
	if (!same) {
		char *theirs = shell_join(cfg->cmd, cfg->ncmd);
		ckpt_fail(
		    "run directory %s belongs to another command line (%s); give this one an --id",
		    rundir, theirs ? theirs : "?");
		free(theirs);
		return -1;
	}
	int imfd = openat(dirfd, GENS_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (imfd < 0 && errno == ENOENT) {
		if (mkdirat(dirfd, GENS_DIR, 0700) < 0)
			return ckpt_fail_errno("cannot create %s/%s", rundir, GENS_DIR);
		imfd = openat(dirfd, GENS_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	}
	if (imfd < 0)
		return ckpt_fail_errno("cannot open %s/%s", rundir, GENS_DIR);
	uint64_t gen;
	int have = gens_latest(imfd, &gen);
	if (have == 0 && gens_remove_partials(imfd) < 0)
		have = -1;
	close(imfd);
	if (have < 0)
		return ckpt_fail("cannot use %s: %s", rundir, ckpt_error());
	if (have > 0)
		return ckpt_fail(
		    "run directory %s got a checkpoint meanwhile (another ckpt?); run the "
		    "command again to resume it",
		    rundir);
	if (rundir_read_token(dirfd, token, toklen) < 0) {
		if (errno != ENOENT)
			return -1;
		if (rundir_make_token(dirfd, token, toklen) < 0)
			return -1;
	}
	return 0;
}

int cmd_start(int argc, char **argv)
{
	struct run_opts o;
	if (parse_run_opts(argc, argv, &o) < 0)
		return report_error(EXIT_USAGE);
	if (o.help) {
		print_help("start");
		return 0;
	}
	return start_run(&o, 0);
}

int start_run(const struct run_opts *opts, int afresh)
{
	struct run_opts o = *opts;
	if (batch_opts_check(&o) < 0)
		return report_error(EXIT_USAGE);
	if (o.ncmd == 0) {
		ckpt_fail(
		    "missing program: ckpt start [options] [--] PROGRAM|script.py [ARGS...] (see "
		    "ckpt start --help)");
		return report_error(EXIT_USAGE);
	}
	struct program prog;
	if (program_resolve(o.cmd, o.ncmd, o.python, &prog) < 0)
		return report_error(EXIT_USAGE);
	char *agent = ckpt_lib_file(AGENT_NAME, 0);
	if (!agent)
		return report_error(1);

	char *absdir = o.dir ? rundir_path(o.dir, "") : NULL;
	if (absdir && strlen(absdir) > 1)
		absdir[strlen(absdir) - 1] = '\0'; /* no trailing slash in messages */
	char *name = rundir_name(o.id, o.cmd, o.ncmd);
	char *rundir = name ? rundir_path(o.dir, name) : NULL;
	char *hint =
	    rundir ? command_hint(o.run ? "run" : "restart", o.id, absdir, o.cmd, o.ncmd) : NULL;
	if ((o.dir && !absdir) || !rundir || !hint)
		return report_error(1);
	if (o.dir && make_parents(absdir) < 0)
		return report_error(1);
	int parentfd = open(o.dir ? absdir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (parentfd < 0) {
		ckpt_fail_errno("cannot open %s", o.dir ? absdir : "the current directory");
		return report_error(1);
	}
	/* mkdir is the atomic test: of two starts of the same command line,
	 * exactly one creates the directory. */
	int made = 1; /* this call created the directory: a failure removes it */
	int refused = 0;
	if (mkdirat(parentfd, name, 0700) < 0) {
		if (errno == EEXIST && afresh) {
			made = 0;
		} else if (errno == EEXIST) {
			refuse_existing(parentfd, name, rundir, o.cmd, o.ncmd, hint);
			return report_error(EXIT_USAGE);
		} else {
			ckpt_fail_errno("cannot create the run directory %s", rundir);
			return report_error(1);
		}
	}

	/* From here a failure before the program runs removes the
	 * directory again, so the same command can simply be retried. */
	int status = 1;
	struct ckpt_log exec_log = {.fd = -1}, coord_log = {.fd = -1};
	struct coord_opts co;
	memset(&co, 0, sizeof(co));
	co.first_status = -1;
	co.app_log_fd = -1;
	co.exec_log = &exec_log;
	co.coord_log = &coord_log;
	co.imagesfd = -1;
	int lockfd = -1;
	char token[40];
	char cwd[PATH_MAX];
	char created[32];
	ckpt_format_time(created, sizeof(created), ckpt_now_ms());
	co.dirfd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (co.dirfd < 0) {
		ckpt_fail_errno("cannot open the run directory %s", rundir);
		goto fail;
	}
	lockfd = rundir_lock(co.dirfd, rundir);
	struct run_config prev = {0};
	/* An existing directory in use, or not this run's: a refusal. */
	refused = !made && (lockfd < 0 ||
			    reuse_existing(co.dirfd, rundir, &o, token, sizeof(token), &prev) < 0);
	if (refused || lockfd < 0 || rundir_lock_claim(lockfd, rundir) < 0 ||
	    (made && rundir_make_token(co.dirfd, token, sizeof(token)) < 0))
		goto fail;
	if (!getcwd(cwd, sizeof(cwd))) {
		ckpt_fail_errno("cannot get the current directory");
		goto fail;
	}
	struct run_config cfg = {
	    .id = (char *)o.id,
	    .interval_ms = o.interval_ms >= 0 ? o.interval_ms : DEFAULT_INTERVAL_MS,
	    .keep = o.keep > 0 ? o.keep : 0,
	    .cwd = cwd,
	    .ckpt_version = CKPT_VERSION,
	    .python = prog.python,
	    .program = prog.path,
	    .cmd = o.cmd,
	    .ncmd = o.ncmd,
	    .dir = absdir,
	    .created = created,
	};
	if (!made) {
		/* The config is written once, by the first start. */
		cfg.interval_ms = o.interval_ms >= 0 ? o.interval_ms : prev.interval_ms;
	} else if (config_write(co.dirfd, &cfg) < 0) {
		goto fail;
	}
	if (made && mkdirat(co.dirfd, GENS_DIR, 0700) < 0) {
		ckpt_fail_errno("cannot create %s/%s", rundir, GENS_DIR);
		goto fail;
	}
	co.imagesfd = openat(co.dirfd, GENS_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (co.imagesfd < 0) {
		ckpt_fail_errno("cannot open %s/%s", rundir, GENS_DIR);
		goto fail;
	}
	/* The directory and its config must survive a crash as much as the
	 * checkpoints written into it later. */
	if (fsync_dir(co.dirfd, rundir) < 0 ||
	    fsync_dir(parentfd, "the run directory's parent") < 0)
		goto fail;
	if (open_logs(&co, &exec_log, &coord_log) < 0)
		goto fail;

	char *command = shell_join(prog.argv, o.ncmd + prog.is_script);
	co.rundir = rundir;
	co.token = token;
	co.interval_ms = cfg.interval_ms;
	co.keep = o.keep > 0 ? o.keep : GENS_KEEP;
	co.stop_after_checkpoint = o.stop_after_checkpoint;
	co.no_cow = o.no_cow;
	co.exit_with_main = o.exit_with_main;
	co.compress = o.compress ? o.compress : "auto";
	co.full_every = o.full_every > 0 ? o.full_every : DEFAULT_FULL_EVERY;
	co.restart_hint = hint;
	co.command = command ? command : o.cmd[0];
	co.next_gen = 1;
	char interval[64];
	describe_interval(interval, sizeof(interval), co.interval_ms);
	if (!made) {
		struct stat st;
		ckpt_log(&exec_log,
			 "ckpt run: %s has no complete checkpoint (an earlier run ended before its "
			 "first "
			 "one): starting the program afresh; earlier logs are kept, "
			 "application.log goes "
			 "on at byte %lld",
			 rundir, fstat(co.app_log_fd, &st) == 0 ? (long long)st.st_size : -1LL);
		fprintf(stderr, "ckpt: %s has no complete checkpoint: starting afresh\n", rundir);
	}
	ckpt_log(&exec_log, "ckpt %s starting %s in %s; %s, keeping %d; run directory %s",
		 CKPT_VERSION, co.command, cwd, interval, co.keep, rundir);
	struct supervise_args sa = {
	    .lockfd = lockfd,
	    .exec_path = prog.exec_path,
	    .argv = prog.argv,
	    .pid = 0,
	    .preload = agent,
	    .opts = &o,
	    .co = &co,
	};
	status = supervise(&sa);
	free(command);
	if (status >= 0) {
		close_logs(&co);
		close(co.imagesfd);
		close(co.dirfd);
		close(lockfd);
		close(parentfd);
		return status;
	}
fail:
	/* Nothing ran: leave no half-made run directory behind. */
	close_logs(&co);
	if (co.imagesfd >= 0)
		close(co.imagesfd);
	if (co.dirfd >= 0)
		close(co.dirfd);
	if (lockfd >= 0)
		close(lockfd);
	char saved[4096];
	snprintf(saved, sizeof(saved), "%s", ckpt_error());
	if (made && rmtree_at(parentfd, name) < 0)
		fprintf(stderr, "ckpt: could not remove %s again: %s\n", rundir, ckpt_error());
	ckpt_fail("%s", saved);
	close(parentfd);
	return report_error(refused ? EXIT_USAGE : 1);
}
