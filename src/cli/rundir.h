/* The run directory: its name, derived from the command line exactly the
 * same way by start and restart, and the files that guard it (lock,
 * token). Layout and naming rules: docs/protocol.md. */
#ifndef CKPT_CLI_RUNDIR_H
#define CKPT_CLI_RUNDIR_H

#include <sys/types.h>

#define RUNDIR_NAME_MAX 100

/* "<id>_<program name, without .py>_<args joined by _>", with unsafe
 * bytes replaced; when anything was replaced or the name is longer than
 * RUNDIR_NAME_MAX, it ends in "_" + 16 hex digits of a SHA-256 of the
 * full command line instead. cmd[0] is the program as typed. Returns a
 * malloc'd name. */
char *rundir_name(const char *id, char *const *cmd, int ncmd);

/* Absolute path of name inside dir (NULL: the current directory). */
char *rundir_path(const char *dir, const char *name);

/* Take the run directory's lock (RUNDIR/lock, flock, held as long as the
 * returned descriptor is open in any process). Returns the descriptor,
 * or -1 with a message naming the holder when another ckpt has it. */
int rundir_lock(int dirfd, const char *rundir);
/* Write our pid into the lock file (for the message above and for ckpt
 * status). Separate from taking the lock so that a restart refused after
 * locking leaves the file as it was. */
int rundir_lock_claim(int fd, const char *rundir);
/* Whether the lock is held by someone (1), free (0), or unknown (-1);
 * *holder gets the pid written in the lock file (0 if none). Never
 * creates the file. */
int rundir_lock_held(int dirfd, pid_t *holder);

/* RUNDIR/finished, written when the program exited by itself: 1 with its
 * exit status and the time it was recorded ("?" when missing), 0 when
 * there is none (or it cannot be read). */
int rundir_finished(int dirfd, int *status, char *when, size_t cap);

/* Create RUNDIR/token (0600): 128 random bits as 32 hex digits. */
int rundir_make_token(int dirfd, char *hex, size_t len);
/* Read RUNDIR/token. */
int rundir_read_token(int dirfd, char *hex, size_t len);

#endif
