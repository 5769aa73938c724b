#include "cli/options.h"

#include "coord/err.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int parse_interval(const char *s, int64_t *ms)
{
	if (!*s || !((*s >= '0' && *s <= '9') || *s == '.'))
		return -1;
	/* Digits and at most one '.' only: strtod would also take "1e3",
	 * "inf" and hex, which nobody means by seconds. */
	int dots = 0;
	for (const char *p = s; *p; p++) {
		if (*p == '.')
			dots++;
		else if (*p < '0' || *p > '9')
			return -1;
	}
	if (dots > 1 || strcmp(s, ".") == 0)
		return -1;
	errno = 0;
	double secs = strtod(s, NULL);
	if (errno || secs > 1e8)
		return -1;
	/* Rounded by hand: ckpt does not link libm. */
	int64_t v = (int64_t)(secs * 1000.0 + 0.5);
	*ms = secs > 0 && v == 0 ? 1 : v;
	return 0;
}

/* Options that take a value: the spellings of each. */
enum opt {
	OPT_ID,
	OPT_INTERVAL,
	OPT_PYTHON,
	OPT_DIR,
	OPT_KEEP,
	OPT_GENERATION,
	OPT_CKPT_SIGNAL,
	OPT_BEFORE_LIMIT,
	OPT_COMPRESS,
	OPT_FULL_EVERY,
	OPT_NONE
};

static enum opt value_option(const char *arg, const char **inline_value)
{
	static const struct {
		const char *name;
		enum opt opt;
		int long_form; /* accepts --name=value */
	} names[] = {
	    {"--id", OPT_ID, 1},
	    {"-id", OPT_ID, 1},
	    {"--interval", OPT_INTERVAL, 1},
	    {"-i", OPT_INTERVAL, 0},
	    {"--python", OPT_PYTHON, 1},
	    {"--dir", OPT_DIR, 1},
	    {"--checkpoint-signal", OPT_CKPT_SIGNAL, 1},
	    {"--before-limit", OPT_BEFORE_LIMIT, 1},
	    {"--keep", OPT_KEEP, 1},
	    {"--compress", OPT_COMPRESS, 1},
	    {"--full-every", OPT_FULL_EVERY, 1},
	    {"--generation", OPT_GENERATION, 1},
	};
	*inline_value = NULL;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t n = strlen(names[i].name);
		if (strncmp(arg, names[i].name, n) != 0)
			continue;
		if (arg[n] == '\0')
			return names[i].opt;
		if (arg[n] == '=' && names[i].long_form) {
			*inline_value = arg + n + 1;
			return names[i].opt;
		}
	}
	return OPT_NONE;
}

int parse_run_opts(int argc, char **argv, struct run_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->interval_ms = -1;
	o->keep = -1;
	o->full_every = -1;
	o->before_limit_ms = -1;
	int i = 1;
	while (i < argc) {
		const char *arg = argv[i];
		if (strcmp(arg, "--") == 0) {
			i++;
			break;
		}
		if (arg[0] != '-' || arg[1] == '\0')
			break; /* the program ("-" alone is a file name) */
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			o->help = 1;
			return 0;
		}
		if (strcmp(arg, "--stop-after-checkpoint") == 0) {
			o->stop_after_checkpoint = 1;
			i++;
			continue;
		}
		if (strcmp(arg, "--no-cow") == 0) {
			o->no_cow = 1;
			i++;
			continue;
		}
		if (strcmp(arg, "--exit-with-main") == 0) {
			o->exit_with_main = 1;
			i++;
			continue;
		}
		if (strcmp(arg, "--lazy") == 0) {
			if (strcmp(argv[0], "restart") != 0 && strcmp(argv[0], "run") != 0)
				return ckpt_fail("--lazy is an option of ckpt restart and ckpt run "
						 "only (it applies when a run is resumed)");
			o->lazy = 1;
			i++;
			continue;
		}
		if (strcmp(arg, "--requeue") == 0) {
			o->requeue = 1;
			i++;
			continue;
		}
		const char *value;
		enum opt opt = value_option(arg, &value);
		if (opt == OPT_NONE)
			return ckpt_fail("unknown option '%s' (see ckpt %s --help)", arg, argv[0]);
		if (!value) {
			if (i + 1 >= argc)
				return ckpt_fail("option %s needs a value (see ckpt %s --help)",
						 arg, argv[0]);
			value = argv[++i];
		}
		i++;
		switch (opt) {
		case OPT_ID:
			if (!*value)
				return ckpt_fail("option %s needs a non-empty value", arg);
			o->id = value;
			break;
		case OPT_INTERVAL:
			if (parse_interval(value, &o->interval_ms) < 0)
				return ckpt_fail(
				    "bad interval '%s' for %s: give seconds, e.g. 20, 0.5, "
				    "or 0 for checkpoints on request only",
				    value, arg);
			break;
		case OPT_COMPRESS:
			if (strcmp(value, "none") && strcmp(value, "fast") &&
			    strcmp(value, "max") && strcmp(value, "auto"))
				return ckpt_fail(
				    "bad value '%s' for %s: give auto, none, fast or max", value,
				    arg);
			o->compress = value;
			break;
		case OPT_PYTHON:
			if (!*value)
				return ckpt_fail("option %s needs a non-empty value", arg);
			o->python = value;
			break;
		case OPT_DIR:
			if (!*value)
				return ckpt_fail("option %s needs a non-empty value", arg);
			o->dir = value;
			break;
		case OPT_KEEP: {
			char *end;
			errno = 0;
			long k = strtol(value, &end, 10);
			if (errno || *end || end == value || k < 1 || k > KEEP_MAX)
				return ckpt_fail(
				    "bad value '%s' for %s: give how many complete checkpoint "
				    "generations to keep, at least 1",
				    value, arg);
			o->keep = (int)k;
			break;
		}
		case OPT_FULL_EVERY: {
			char *end;
			errno = 0;
			long k = strtol(value, &end, 10);
			if (errno || *end || end == value || k < 1 || k > FULL_EVERY_MAX)
				return ckpt_fail(
				    "bad value '%s' for %s: give N from 1 to %d (every Nth "
				    "checkpoint is full, 1: every one)",
				    value, arg, FULL_EVERY_MAX);
			o->full_every = (int)k;
			break;
		}
		case OPT_GENERATION: {
			char *end;
			errno = 0;
			unsigned long long g = strtoull(value, &end, 10);
			if (strcmp(argv[0], "restart") != 0)
				return ckpt_fail("%s is an option of ckpt restart only", arg);
			if (errno || *end || value[0] < '0' || value[0] > '9' || g == 0)
				return ckpt_fail(
				    "bad generation '%s' for %s: give a number >= 1 (ckpt "
				    "verify RUNDIR lists them)",
				    value, arg);
			o->generation = g;
			break;
		}
		case OPT_CKPT_SIGNAL:
			if (parse_checkpoint_signal(value, &o->checkpoint_signal) < 0)
				return -1;
			break;
		case OPT_BEFORE_LIMIT:
			if (parse_interval(value, &o->before_limit_ms) < 0)
				return ckpt_fail(
				    "bad time '%s' for %s: give seconds before the job's time "
				    "limit, e.g. 120",
				    value, arg);
			break;
		case OPT_NONE:
			break;
		}
	}
	o->cmd = argv + i;
	o->ncmd = argc - i;
	return 0;
}

int parse_checkpoint_signal(const char *s, int *sig)
{
	/* Asynchronous signals a batch system or a user sends on purpose. */
	static const int allowed[] = {SIGHUP,	 SIGINT,  SIGQUIT, SIGUSR1,  SIGUSR2, SIGALRM,
				      SIGVTALRM, SIGPROF, SIGXCPU, SIGWINCH, SIGURG,  SIGPWR};
	const char *name = strncmp(s, "SIG", 3) == 0 ? s + 3 : s;
	int want = 0;
	if (*name >= '0' && *name <= '9') {
		char *end;
		long v = strtol(name, &end, 10);
		want = *end || v <= 0 || v >= NSIG ? -1 : (int)v;
	}
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
		const char *abbrev = sigabbrev_np(allowed[i]);
		if (want == allowed[i] || (want == 0 && abbrev && strcmp(abbrev, name) == 0)) {
			*sig = allowed[i];
			return 0;
		}
	}
	return ckpt_fail(
	    "--checkpoint-signal %s: give one of HUP, INT, QUIT, USR1, USR2, ALRM, "
	    "VTALRM, PROF, XCPU, WINCH, URG, PWR (TERM already means checkpoint and stop)",
	    s);
}

void describe_interval(char *buf, size_t len, int64_t ms)
{
	if (ms <= 0)
		snprintf(buf, len, "checkpoints on request only");
	else if (ms % 1000 == 0)
		snprintf(buf, len, "checkpoint every %lld s", (long long)(ms / 1000));
	else
		snprintf(buf, len, "checkpoint every %lld.%03lld s", (long long)(ms / 1000),
			 (long long)(ms % 1000));
}
