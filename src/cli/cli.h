/* The ckpt subcommands. Each takes argv starting at its own name and
 * returns ckpt's exit status: 0 success, 1 failure, 2 bad input (usage
 * errors and refusals, which change nothing on disk); start and restart
 * return the program's status. */
#ifndef CKPT_CLI_CLI_H
#define CKPT_CLI_CLI_H

#include "coord/launch.h"

#include <stdint.h>

#define EXIT_USAGE 2

int cmd_start(int argc, char **argv);
int cmd_restart(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_checkpoint(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_verify(int argc, char **argv);

/* verify_cmd.c: "--generation N" (also "-g N", "--generation=N") at
 * argv[*i]: 0 when argv[*i] is not that option, 1 with *gen set and *i
 * moved past the value, -1 with a message for a bad value. */
int parse_generation_opt(int argc, char **argv, int *i, uint64_t *gen);

/* What start and restart do once their options are parsed; ckpt run
 * calls them too. afresh: an existing run directory of this command line
 * without a complete checkpoint is used again (ckpt run). */
struct run_opts;
int start_run(const struct run_opts *o, int afresh);
int restart_run(const struct run_opts *o);

/* help.c */
void print_help(const char *command); /* NULL: the overview */
int has_help(const char *command);

/* The signal state ckpt was started with (main saves it first thing),
 * handed on to the program. */
extern struct sig_state ckpt_orig_sigs;
/* main's argv: a restart that found its generation damaged runs again */
extern char **ckpt_argv;

/* Print "ckpt: <ckpt_error()>" to stderr and return status. */
int report_error(int status);
/* Open a RUNDIR argument, checking that it is a run directory. */
int open_rundir_arg(const char *path);

#endif
