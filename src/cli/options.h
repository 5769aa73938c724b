/* Options of `ckpt start` and `ckpt restart` (see `ckpt start --help`).
 * ckpt's options end at the first argument that is not one of them, or
 * at "--"; that argument is the program and everything after it belongs
 * to the program, untouched. */
#ifndef CKPT_CLI_OPTIONS_H
#define CKPT_CLI_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

struct run_opts {
	const char *id;	     /* --id / -id; NULL: none */
	int64_t interval_ms; /* --interval / -i; -1: not given */
	int stop_after_checkpoint;
	int no_cow;	      /* --no-cow: write while the program is stopped */
	int exit_with_main;   /* --exit-with-main: end the rest when the first ends */
	const char *compress; /* --compress auto|none|fast|max; NULL: auto */
	const char *python;   /* --python; NULL: python3 from PATH */
	const char *dir;      /* --dir; NULL: the current directory */
	int keep;	      /* --keep: complete generations kept; -1: not given */
	int full_every;	      /* --full-every: a full image every N; -1: not given */
	uint64_t generation;  /* restart --generation N; 0: the latest intact one */
	int lazy;	      /* restart --lazy: map uncompressed pages, verify meanwhile */
	int help;	      /* --help / -h was given */
	/* Batch systems (docs/slurm.md). */
	int checkpoint_signal;	 /* --checkpoint-signal; 0: not given (SIGUSR1) */
	int requeue;		 /* --requeue: scontrol requeue after a stop-checkpoint */
	int64_t before_limit_ms; /* --before-limit; -1: not given */
	int run;		 /* set by ckpt run: hints say "ckpt run" */
	char **cmd;		 /* the program and its arguments */
	int ncmd;
};

#define DEFAULT_INTERVAL_MS 20000
#define KEEP_MAX 1000000
/* Incremental checkpoints: every DEFAULT_FULL_EVERY-th generation is full.
 * Longer chains make restart read more files. */
#define DEFAULT_FULL_EVERY 8
#define FULL_EVERY_MAX 1000

/* argv[0] is the command name ("start"). Returns 0, or -1 with a usage
 * message (unknown option, missing value...). A missing program is not
 * an error here (ncmd == 0). */
int parse_run_opts(int argc, char **argv, struct run_opts *o);

/* "20", "0.5", "0": seconds as a decimal number. Returns -1 on junk. */
int parse_interval(const char *s, int64_t *ms);

/* "USR1", "SIGUSR1" or "10": a signal ckpt can take as its checkpoint
 * signal. Returns -1 with a message for anything else (TERM has its own
 * meaning, CHLD is the supervisor's, KILL and STOP cannot be caught,
 * synchronous signals such as SEGV mean a crash). */
int parse_checkpoint_signal(const char *s, int *sig);

/* "checkpoint every 20 s" / "checkpoints on request only" */
void describe_interval(char *buf, size_t len, int64_t ms);

#endif
