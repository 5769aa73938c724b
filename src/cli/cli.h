/* The ckpt subcommands. Each takes argv starting at its own name and
 * returns ckpt's exit status: 0 success, 1 failure, 2 bad input (usage
 * errors and refusals, which change nothing on disk); start and restart
 * return the program's status. */
#ifndef CKPT_CLI_CLI_H
#define CKPT_CLI_CLI_H

#include "coord/launch.h"

#define EXIT_USAGE 2

int cmd_start(int argc, char **argv);
int cmd_restart(int argc, char **argv);
int cmd_checkpoint(int argc, char **argv);
int cmd_status(int argc, char **argv);

/* help.c */
void print_help(const char *command); /* NULL: the overview */
int has_help(const char *command);

/* The signal state ckpt was started with (main saves it first thing),
 * handed on to the program. */
extern struct sig_state ckpt_orig_sigs;

/* Print "ckpt: <ckpt_error()>" to stderr and return status. */
int report_error(int status);
/* Open a RUNDIR argument, checking that it is a run directory. */
int open_rundir_arg(const char *path);

#endif
