/* ckpt verify RUNDIR [--generation N]: check the checkpoint images of a
 * run directory without restarting anything. Reads only; safe while a
 * supervisor runs (a generation it removes meanwhile is skipped). */
#include "cli/cli.h"
#include "coord/err.h"
#include "coord/gens.h"
#include "coord/verify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int parse_gen(const char *s, uint64_t *gen)
{
	char *end;
	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	unsigned long long g = strtoull(s, &end, 10);
	if (errno || *end || g == 0)
		return -1;
	*gen = g;
	return 0;
}

/* Generation numbers after "--generation"/"--generation=" in argv. */
int parse_generation_opt(int argc, char **argv, int *i, uint64_t *gen)
{
	const char *arg = argv[*i], *value = NULL;
	if (!strcmp(arg, "--generation") || !strcmp(arg, "-g")) {
		if (*i + 1 >= argc)
			return ckpt_fail("option %s needs a value", arg);
		value = argv[++*i];
	} else if (!strncmp(arg, "--generation=", 13)) {
		value = arg + 13;
	} else {
		return 0;
	}
	if (parse_gen(value, gen) < 0)
		return ckpt_fail(
		    "bad generation '%s' for --generation: give a number >= 1 (see ckpt "
		    "status or ckpt verify)",
		    value);
	return 1;
}

int cmd_verify(int argc, char **argv)
{
	const char *rundir = NULL;
	uint64_t only = 0;
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
			print_help("verify");
			return 0;
		}
		int r = parse_generation_opt(argc, argv, &i, &only);
		if (r < 0)
			return report_error(EXIT_USAGE);
		if (r > 0)
			continue;
		if (arg[0] == '-') {
			ckpt_fail("unknown option '%s' (see ckpt verify --help)", arg);
			return report_error(EXIT_USAGE);
		}
		if (rundir) {
			ckpt_fail("too many arguments: ckpt verify RUNDIR [--generation N]");
			return report_error(EXIT_USAGE);
		}
		rundir = arg;
	}
	if (!rundir) {
		ckpt_fail("missing run directory: ckpt verify RUNDIR [--generation N]");
		return report_error(EXIT_USAGE);
	}
	int dfd = open_rundir_arg(rundir);
	if (dfd < 0)
		return report_error(EXIT_USAGE);
	char images_path[4200];
	snprintf(images_path, sizeof(images_path), "%s/%s", rundir, GENS_DIR);
	int imagesfd = openat(dfd, GENS_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	close(dfd);
	struct gens_scan scan = {0};
	if (imagesfd < 0 && errno != ENOENT) {
		ckpt_fail_errno("cannot open %s", images_path);
		return report_error(1);
	}
	if (imagesfd >= 0 && gens_scan(imagesfd, &scan) < 0)
		return report_error(1);
	if (scan.ncomplete == 0) {
		gens_scan_free(&scan);
		ckpt_fail("%s has no complete checkpoint to verify", rundir);
		return report_error(1);
	}
	uint64_t latest = 0;
	if (gens_latest(imagesfd, &latest) < 0)
		latest = 0;
	int found = !only;
	for (size_t i = 0; i < scan.ncomplete; i++)
		found |= scan.complete[i] == only;
	if (!found) {
		char have[256] = "";
		size_t n = 0;
		for (size_t i = 0; i < scan.ncomplete && n < sizeof(have) - 24; i++)
			n += (size_t)snprintf(have + n, sizeof(have) - n, "%s%llu", i ? ", " : "",
					      (unsigned long long)scan.complete[i]);
		gens_scan_free(&scan);
		ckpt_fail("%s has no complete generation %llu (complete: %s)", rundir,
			  (unsigned long long)only, have);
		return report_error(EXIT_USAGE);
	}

	unsigned checked = 0, damaged = 0;
	uint64_t newest_good = 0, first_bad = 0;
	char first_msg[1400] = "";
	/* Newest first: the order restart tries them in. */
	for (size_t k = scan.ncomplete; k-- > 0;) {
		uint64_t gen = scan.complete[k];
		if (only && gen != only)
			continue;
		char gname[64];
		gens_name(gname, sizeof(gname), gen, 0);
		struct stat st;
		if (fstatat(imagesfd, gname, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT) {
			printf(
			    "generation %llu: removed meanwhile (a newer checkpoint completed)\n",
			    (unsigned long long)gen);
			continue;
		}
		/* Collect the details first, so the generation's verdict line
		 * comes before them. */
		char *details = NULL;
		size_t dlen = 0;
		FILE *mem = open_memstream(&details, &dlen);
		struct gen_verdict v = {.decode = 1}; /* thorough: frames decoded too */
		gens_verify(imagesfd, images_path, gen, mem, &v);
		if (mem)
			fclose(mem);
		/* A supervisor pruning it while we read is not damage. */
		if (v.damaged && fstatat(imagesfd, gname, &st, AT_SYMLINK_NOFOLLOW) < 0 &&
		    errno == ENOENT) {
			printf(
			    "generation %llu: removed meanwhile (a newer checkpoint completed)\n",
			    (unsigned long long)gen);
			free(details);
			continue;
		}
		checked++;
		const char *tag = gen == latest ? " (latest)" : "";
		if (v.damaged) {
			printf("generation %llu%s: DAMAGED, %d problem%s\n%s",
			       (unsigned long long)gen, tag, v.damaged, v.damaged == 1 ? "" : "s",
			       details ? details : "");
			if (!damaged++) {
				first_bad = gen;
				snprintf(first_msg, sizeof(first_msg), "%s", v.first);
			}
		} else {
			printf("generation %llu%s: OK, %u image%s, %llu bytes\n",
			       (unsigned long long)gen, tag, v.nimages, v.nimages == 1 ? "" : "s",
			       (unsigned long long)v.bytes);
			/* restart tries latest first, then older ones */
			if (!newest_good && (!latest || gen <= latest))
				newest_good = gen;
		}
		free(details);
	}
	if (scan.npartial && !only)
		printf("%zu unfinished generation%s (*.partial): never used by a restart; the next "
		       "start "
		       "or restart removes %s\n",
		       scan.npartial, scan.npartial == 1 ? "" : "s",
		       scan.npartial == 1 ? "it" : "them");
	gens_scan_free(&scan);
	close(imagesfd);
	if (fflush(stdout) != 0)
		return 1;
	if (!damaged)
		return 0;
	if (only || !newest_good)
		ckpt_fail("generation %llu of %s is damaged: %s%s", (unsigned long long)first_bad,
			  rundir, first_msg,
			  only ? "" : "; no generation is intact, restart would refuse");
	else
		ckpt_fail(
		    "%u of %u generations of %s damaged (first: generation %llu: %s); restart "
		    "would use generation %llu",
		    damaged, checked, rundir, (unsigned long long)first_bad, first_msg,
		    (unsigned long long)newest_good);
	return report_error(1);
}
