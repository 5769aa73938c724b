/* RUNDIR/config: what `ckpt start` was asked to run, saved so that
 * `ckpt restart` and `ckpt status` can use it. A kvfile (key=value lines,
 * values percent-encoded); keys are listed in docs/protocol.md. */
#ifndef CKPT_CLI_CONFIG_H
#define CKPT_CLI_CONFIG_H

#include <stdint.h>

#define CONFIG_FORMAT 1

struct run_config {
	char *id;	     /* NULL: no --id */
	int64_t interval_ms; /* 0: on request only */
	int keep;	     /* --keep given to start; 0: not given (default) */
	char *cwd;	     /* working directory of ckpt start */
	char *ckpt_version;
	char *python;  /* interpreter of a .py script; NULL otherwise */
	char *program; /* absolute path of the program or script */
	char **cmd;    /* as typed: program, then its arguments */
	int ncmd;
	char *dir;     /* --dir as given (for the restart hint); NULL: none */
	char *created; /* ISO-8601 time of ckpt start */
};

int config_write(int dirfd, const struct run_config *c);
/* Returns 0, or -1 with a message (missing file: errno ENOENT). */
int config_read(int dirfd, struct run_config *c);
void config_free(struct run_config *c);

/* The command line as a shell would take it back: program and args,
 * quoted where needed. malloc'd. */
char *shell_join(char *const *argv, int n);
/* "ckpt restart [--id ID] [--dir DIR] [--] PROGRAM ARGS...", quoted. */
char *restart_hint(const char *id, const char *dir, char *const *cmd, int ncmd);
/* The same with another command: "ckpt run ..." */
char *command_hint(const char *verb, const char *id, const char *dir, char *const *cmd, int ncmd);

#endif
