/* ckpt restart: resume the program of an existing run directory from its
 * newest complete checkpoint. Everything is checked before anything in
 * the directory changes. */
#include "cli/cli.h"
#include "cli/config.h"
#include "cli/options.h"
#include "cli/paths.h"
#include "cli/program.h"
#include "cli/rundir.h"
#include "cli/supervise.h"
#include "coord/err.h"
#include "coord/gens.h"
#include "coord/gpunode.h"
#include "coord/kvfile.h"
#include "coord/launch.h"
#include "coord/verify.h"
#include "image/compat.h"
#include "image/reader.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Two spellings of the program are the same when typed alike or when
 * they resolve to the same file. */
static int same_program(const char *typed, const struct run_config *cfg)
{
	if (strcmp(typed, cfg->cmd[0]) == 0)
		return 1;
	char *found = is_py_script(typed) ? realpath(typed, NULL) : find_executable(typed);
	char *a = found ? realpath(found, NULL) : NULL;
	char *b = realpath(cfg->program, NULL);
	int same = a && b && strcmp(a, b) == 0;
	free(found);
	free(a);
	free(b);
	return same;
}

static int same_command(const struct run_opts *o, const struct run_config *cfg, const char *rundir)
{
	int same = cfg->ncmd == o->ncmd &&
		   ((!o->id && !cfg->id) || (o->id && cfg->id && !strcmp(o->id, cfg->id)));
	for (int i = 1; same && i < o->ncmd; i++)
		same = strcmp(o->cmd[i], cfg->cmd[i]) == 0;
	if (same && same_program(o->cmd[0], cfg))
		return 1;
	char *theirs = shell_join(cfg->cmd, cfg->ncmd);
	ckpt_fail("run directory %s belongs to another command line: %s%s%s%s", rundir,
		  cfg->id ? "--id " : "", cfg->id ? cfg->id : "", cfg->id ? " " : "",
		  theirs ? theirs : "?");
	free(theirs);
	return 0;
}

/* Read the generation's manifest for what status shows until the first
 * checkpoint of this run. */
static void load_last(struct coord_opts *co, uint64_t gen)
{
	co->last_gen = gen;
	int gfd = gens_open(co->imagesfd, gen);
	struct kvfile kv;
	if (gfd < 0)
		return;
	if (kv_read(&kv, gfd, GENS_MANIFEST) == 0) {
		const char *v;
		if ((v = kv_get(&kv, "time_ms")))
			co->last_time_ms = atoll(v);
		if ((v = kv_get(&kv, "bytes")))
			co->last_bytes = strtoull(v, NULL, 10);
		if ((v = kv_get(&kv, "total_ms")))
			co->last_total_ms = atoll(v);
		kv_free(&kv);
	}
	close(gfd);
}

/* The generation's GPU processes, checked against this node. */
static int gpu_check(struct coord_opts *co, uint64_t gen)
{
	int gfd = gens_open(co->imagesfd, gen);
	if (gfd < 0)
		return ckpt_fail_errno("cannot open its directory");
	struct kvfile kv;
	int rc = kv_read(&kv, gfd, GENS_MANIFEST);
	close(gfd);
	if (rc < 0)
		return -1;
	int64_t *pids;
	rc = gpunode_check(&kv, &pids, &co->ngpu_pids);
	co->gpu_pids = pids;
	kv_free(&kv);
	/* Seen on an H200 (driver 580): Restore on a process whose thread ids
	 * changed never returned, and the program's CUDA calls block until it
	 * does. Only pid namespaces keep the ids. */
	if (rc == 0 && co->ngpu_pids && !launch_namespaces_usable())
		return ckpt_fail(
		    "its %zu process(es) with GPU state can be restarted only in pid "
		    "namespaces of their own (the NVIDIA driver gives GPU state back "
		    "only to the thread ids it was taken from), and this restart would "
		    "run without them (CKPT_NO_NAMESPACES=1, or user namespaces are "
		    "disabled here)",
		    co->ngpu_pids);
	return rc;
}

/* The restorer found the pages of generation gen damaged before the
 * program ran, and the supervisor marked it: the same command again
 * passes over it to the next older generation, or says that none is
 * left. A new process, so that nothing of this attempt (signal state,
 * descriptors, the lock) carries over; each attempt marks one more
 * generation, so the attempts end. */
static int rerun_after_damage(uint64_t gen, int status)
{
	fflush(NULL);
	sig_state_restore(&ckpt_orig_sigs);
	execv("/proc/self/exe", ckpt_argv);
	ckpt_fail_errno("generation %llu was found damaged and the restart cannot run again to "
			"fall back to an older one (run the same command again)",
			(unsigned long long)gen);
	return report_error(status);
}

int cmd_restart(int argc, char **argv)
{
	struct run_opts o;
	if (parse_run_opts(argc, argv, &o) < 0)
		return report_error(EXIT_USAGE);
	if (o.help) {
		print_help("restart");
		return 0;
	}
	return restart_run(&o);
}

int restart_run(const struct run_opts *opts)
{
	struct run_opts o = *opts;
	if (batch_opts_check(&o) < 0)
		return report_error(EXIT_USAGE);
	if (o.ncmd == 0) {
		ckpt_fail(
		    "missing program: ckpt restart [options] [--] PROGRAM|script.py [ARGS...] "
		    "(the same as given to ckpt start)");
		return report_error(EXIT_USAGE);
	}
	char *absdir = o.dir ? rundir_path(o.dir, "") : NULL;
	if (absdir && strlen(absdir) > 1)
		absdir[strlen(absdir) - 1] = '\0';
	char *name = rundir_name(o.id, o.cmd, o.ncmd);
	char *rundir = name ? rundir_path(o.dir, name) : NULL;
	char *hint =
	    rundir ? command_hint(o.run ? "run" : "restart", o.id, absdir, o.cmd, o.ncmd) : NULL;
	if ((o.dir && !absdir) || !rundir || !hint)
		return report_error(1);

	struct coord_opts co;
	memset(&co, 0, sizeof(co));
	co.dirfd = open(rundir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (co.dirfd < 0) {
		if (errno == ENOENT)
			ckpt_fail(
			    "no run directory %s to restart (restart needs the program, arguments, "
			    "--id and --dir given to ckpt start)",
			    rundir);
		else
			ckpt_fail_errno("cannot open the run directory %s", rundir);
		return report_error(EXIT_USAGE);
	}
	struct run_config cfg;
	if (config_read(co.dirfd, &cfg) < 0) {
		if (errno == ENOENT)
			ckpt_fail("%s is not a ckpt run directory (it has no config)", rundir);
		else
			ckpt_fail("cannot restart %s: %s", rundir, ckpt_error());
		return report_error(EXIT_USAGE);
	}
	if (!same_command(&o, &cfg, rundir))
		return report_error(EXIT_USAGE);
	char *restorer = ckpt_lib_file(RESTORER_NAME, 1);
	if (!restorer)
		return report_error(1);
	/* The lock before looking at images: a running supervisor may be
	 * replacing them. Taking it changes nothing on disk. */
	int lockfd = rundir_lock(co.dirfd, rundir);
	if (lockfd < 0)
		return report_error(EXIT_USAGE);
	co.imagesfd = openat(co.dirfd, GENS_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct gens_scan scan = {0};
	uint64_t latest = 0;
	if (co.imagesfd >= 0 &&
	    (gens_scan(co.imagesfd, &scan) < 0 || gens_latest(co.imagesfd, &latest) < 0)) {
		ckpt_fail("cannot restart %s: %s", rundir, ckpt_error());
		return report_error(1);
	}
	if (scan.ncomplete == 0) {
		ckpt_fail(
		    "run directory %s has no complete checkpoint to restart from; to start again, "
		    "remove it first: rm -r %s",
		    rundir, rundir);
		return report_error(EXIT_USAGE);
	}
	/* A program that ended by itself would run again from its last
	 * checkpoint, repeating what it did after it (its output, appends to
	 * its files): a requeued job's restart line must not do that. Naming
	 * the generation says it is meant. */
	int fin_status;
	char fin_when[64];
	if (!o.generation && rundir_finished(co.dirfd, &fin_status, fin_when, sizeof(fin_when))) {
		ckpt_fail("the program of %s finished by itself already (exit status %d, %s); a "
			  "restart would run it again from its last checkpoint, repeating its work "
			  "and output: to do that, name the checkpoint (--generation %llu)",
			  rundir, fin_status, fin_when, (unsigned long long)latest);
		return report_error(EXIT_USAGE);
	}
	/* Candidates, in the order they are tried: the one asked for; else
	 * latest, then each older complete generation. Each is verified
	 * whole (manifest, every checksum, owner) before anything starts. */
	uint64_t *cand = calloc(scan.ncomplete, sizeof(uint64_t));
	uint64_t *damaged = calloc(scan.ncomplete, sizeof(uint64_t));
	char(*why)[1400] = calloc(scan.ncomplete, sizeof(*why));
	if (!cand || !damaged || !why) {
		ckpt_fail("out of memory");
		return report_error(1);
	}
	size_t ncand = 0, ndamaged = 0;
	if (o.generation) {
		for (size_t i = 0; i < scan.ncomplete; i++)
			if (scan.complete[i] == o.generation)
				cand[ncand++] = o.generation;
		if (!ncand) {
			char have[256] = "";
			size_t n = 0;
			for (size_t i = 0; i < scan.ncomplete && n < sizeof(have) - 24; i++)
				n += (size_t)snprintf(have + n, sizeof(have) - n, "%s%llu",
						      i ? ", " : "",
						      (unsigned long long)scan.complete[i]);
			ckpt_fail("run directory %s has no complete generation %llu (complete: %s)",
				  rundir, (unsigned long long)o.generation, have);
			return report_error(EXIT_USAGE);
		}
	} else {
		for (size_t i = scan.ncomplete; i-- > 0;)
			if (scan.complete[i] <= latest)
				cand[ncand++] = scan.complete[i];
	}
	char images_path[4200];
	snprintf(images_path, sizeof(images_path), "%s/%s", rundir, GENS_DIR);
	uint64_t gen = 0;
	/* What is read before anything starts. --lazy: the layout; the pages'
	 * checksums while the program runs. A plain restart: all but the page
	 * data, which the restorer checks as it reads them (reading them twice
	 * costs a cold read of the whole image); when it finds them
	 * damaged, the generation is marked so and the restart starts again,
	 * from an older one (rerun_after_damage). A generation asked for by
	 * number: everything, since there is nothing to fall back to. */
	int decode = o.lazy ? CKPT_CHECK_LAYOUT : o.generation ? 0 : CKPT_CHECK_NO_DATA;
	struct gen_verdict v = {.decode = decode};
	int tty = isatty(STDERR_FILENO);
	for (size_t i = 0; i < ncand && !gen; i++) {
		if (tty)
			fprintf(stderr, "\rckpt: verifying generation %llu ",
				(unsigned long long)cand[i]);
		int bad = gens_verify(co.imagesfd, images_path, cand[i], NULL, &v) != 0;
		if (tty)
			fprintf(stderr, "\r\033[K");
		if (!bad && v.root_pid >= 2) {
			gen = cand[i];
			break;
		}
		if (!v.damaged)
			snprintf(v.first, sizeof(v.first),
				 "%s records pid %d, which cannot be recreated", v.root_image,
				 (int)v.root_pid);
		snprintf(why[ndamaged], sizeof(why[0]), "%s", v.first);
		damaged[ndamaged++] = cand[i];
	}
	if (!gen) {
		if (ndamaged == 1)
			ckpt_fail("cannot restart %s: generation %llu is damaged: %s (details: "
				  "ckpt verify %s)",
				  rundir, (unsigned long long)damaged[0], why[0], rundir);
		else
			ckpt_fail("cannot restart %s: all %zu generations are damaged; the newest, "
				  "%llu: %s "
				  "(details: ckpt verify %s)",
				  rundir, ndamaged, (unsigned long long)damaged[0], why[0], rundir);
		return report_error(EXIT_USAGE);
	}
	char gname[64], *image;
	const char *imgname = v.root_image;
	pid_t pid = v.root_pid;
	gens_name(gname, sizeof(gname), gen, 0);
	if (asprintf(&image, "%s/%s/%s/%s", rundir, GENS_DIR, gname, imgname) < 0) {
		ckpt_fail("out of memory");
		return report_error(1);
	}
	/* Can this machine run it at all (CPU, kernel)? Older generations
	 * were made on the same kind of machine, so no fallback here. */
	char err[700];
	struct ckpt_image *img = ckpt_image_open(image, err, sizeof(err));
	if (!img || ckpt_image_check_machine(img, err, sizeof(err)) < 0) {
		if (img)
			ckpt_image_close(img);
		ckpt_fail("cannot restart %s from generation %llu on this machine: %s", rundir,
			  (unsigned long long)gen, err);
		return report_error(EXIT_USAGE);
	}
	/* A first process in a session whose leader had ended (a daemon): the
	 * session is started again by a helper with the leader's pid. */
	pid_t session_pid = 0;
	if (img->tree.sid > 0 && img->tree.sid != pid) {
		char leader[4400];
		struct stat lst;
		snprintf(leader, sizeof(leader), "%s/%s/%s/%d.img", rundir, GENS_DIR, gname,
			 (int)img->tree.sid);
		if (stat(leader, &lst) != 0)
			session_pid = img->tree.sid;
	}
	uint64_t monotonic_ns = img->hdr.monotonic_ns, boottime_ns = img->hdr.boottime_ns;
	ckpt_image_close(img);
	/* Processes checkpointed with their GPU state need a GPU like the one
	 * they had (docs/gpu.md). */
	if (gpu_check(&co, gen) < 0) {
		ckpt_fail("cannot restart %s from generation %llu on this node: %s", rundir,
			  (unsigned long long)gen, ckpt_error());
		return report_error(EXIT_USAGE);
	}

	/* Checks passed: from here the run directory is ours to use. */
	char token[64];
	struct ckpt_log exec_log, coord_log;
	if (rundir_lock_claim(lockfd, rundir) < 0 ||
	    rundir_read_token(co.dirfd, token, sizeof(token)) < 0 ||
	    open_logs(&co, &exec_log, &coord_log) < 0)
		return report_error(1);
	/* A damaged generation stays for inspection (nothing in the run
	 * directory is removed on a guess); new generations are numbered
	 * above it and it does not count towards --keep. */
	for (size_t i = 0; i < ndamaged; i++) {
		ckpt_log(&exec_log,
			 "generation %llu is damaged, not using it: %s (details: ckpt verify %s)",
			 (unsigned long long)damaged[i], why[i], rundir);
		fprintf(stderr, "ckpt: generation %llu is damaged (%s); %s\n",
			(unsigned long long)damaged[i], why[i],
			i + 1 < ndamaged ? "trying an older one" : "falling back to an older one");
	}
	if (ndamaged)
		ckpt_log(&exec_log, "falling back to generation %llu, the newest intact one",
			 (unsigned long long)gen);
	int partials = gens_remove_partials(co.imagesfd);
	if (partials > 0)
		ckpt_log(&exec_log,
			 "removed %d unfinished checkpoint generation(s) left by a crash",
			 partials);
	co.next_gen = scan.highest + 1;
	gens_scan_free(&scan);
	co.damaged = damaged;
	co.ndamaged = ndamaged;
	co.keep = o.keep > 0 ? o.keep : cfg.keep > 0 ? cfg.keep : GENS_KEEP;
	co.rundir = rundir;
	co.token = token;
	co.interval_ms = o.interval_ms >= 0 ? o.interval_ms : cfg.interval_ms;
	co.stop_after_checkpoint = o.stop_after_checkpoint;
	co.no_cow = o.no_cow;
	co.exit_with_main = o.exit_with_main;
	co.compress = o.compress ? o.compress : "auto";
	co.full_every = o.full_every > 0 ? o.full_every : DEFAULT_FULL_EVERY;
	co.restart_hint = hint;
	char *command = shell_join(cfg.cmd, cfg.ncmd);
	co.command = command ? command : cfg.cmd[0];
	co.restored_gen = gen;
	co.lazy = o.lazy;
	co.pages_unverified = decode == CKPT_CHECK_NO_DATA;
	co.first_status = v.first_status;
	load_last(&co, gen);
	char interval[64];
	describe_interval(interval, sizeof(interval), co.interval_ms);
	ckpt_log(&exec_log,
		 "ckpt %s: restart from generation %llu (%s/%s, pid %d, %s) of %s; "
		 "%s%s, keeping %d",
		 CKPT_VERSION, (unsigned long long)gen, gname, imgname, (int)pid,
		 o.lazy	  ? "lazy: its layout checked, its pages verified while the program runs"
		 : decode ? "its layout checked, its pages verified as they are read"
			  : "verified",
		 co.command, interval, o.interval_ms >= 0 ? " (given to restart)" : "", co.keep);
	appended_cut_back(co.imagesfd, gen, &exec_log);
	char lazy_flag[] = "--lazy";
	char *rargv[] = {restorer, o.lazy ? lazy_flag : image, o.lazy ? image : NULL, NULL};
	struct supervise_args sa = {
	    .lockfd = lockfd,
	    .exec_path = restorer,
	    .argv = rargv,
	    .pid = pid,
	    .session_pid = session_pid,
	    .monotonic_ns = monotonic_ns,
	    .boottime_ns = boottime_ns,
	    .preload = NULL,
	    .opts = &o,
	    .co = &co,
	};
	int status = supervise(&sa);
	if (status < 0) {
		ckpt_log(&exec_log, "restart from generation %llu failed: %s",
			 (unsigned long long)gen, ckpt_error());
		status = report_error(1);
	}
	int rerun = status != 0 && co.pages_unverified && gens_marked_damaged(co.imagesfd, gen);
	close_logs(&co);
	free(command);
	if (rerun)
		return rerun_after_damage(gen, status);
	return status;
}
