/* Options of `ckpt start` and `ckpt restart` (see `ckpt start --help`).
 * ckpt's options end at the first argument that is not one of them, or
 * at "--"; that argument is the program and everything after it belongs
 * to the program, untouched. */
#ifndef CKPT_CLI_OPTIONS_H
#define CKPT_CLI_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

struct run_opts {
	const char *id;      /* --id / -id; NULL: none */
	int64_t interval_ms; /* --interval / -i; -1: not given */
	int stop_after_checkpoint;
	const char *python; /* --python; NULL: python3 from PATH */
	const char *dir;    /* --dir; NULL: the current directory */
	int help;           /* --help / -h was given */
	char **cmd;         /* the program and its arguments */
	int ncmd;
};

#define DEFAULT_INTERVAL_MS 20000

/* argv[0] is the command name ("start"). Returns 0, or -1 with a usage
 * message (unknown option, missing value...). A missing program is not
 * an error here (ncmd == 0). */
int parse_run_opts(int argc, char **argv, struct run_opts *o);

/* "20", "0.5", "0": seconds as a decimal number. Returns -1 on junk. */
int parse_interval(const char *s, int64_t *ms);

/* "checkpoint every 20 s" / "checkpoints on request only" */
void describe_interval(char *buf, size_t len, int64_t ms);

#endif
