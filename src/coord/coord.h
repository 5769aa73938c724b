/* The supervisor's coordinator: one poll() loop that serves the control
 * socket (agents and clients), tees the program's output, keeps the
 * checkpoint timer, runs checkpoints and follows the namespace's init
 * until the program ends. See docs/protocol.md. */
#ifndef CKPT_COORD_COORD_H
#define CKPT_COORD_COORD_H

#include <stdint.h>
#include <sys/types.h>

#include "coord/launch.h"
#include "coord/log.h"

/* A checkpoint without an answer from every process after this long is
 * abandoned. The agent gives up by itself much earlier when a thread
 * does not stop (10 s); this bounds a wedged or stopped program and very
 * slow storage. */
#define COORD_CHECKPOINT_TIMEOUT_MS (600 * 1000)
/* how often a running checkpoint looks for a stopped (SIGSTOP) process */
#define COORD_STOPPED_PROBE_MS 1000

struct coord_opts {
	const char *rundir; /* absolute path: messages, and CHECKPOINT dir= */
	int dirfd;          /* the run directory */
	int imagesfd;       /* RUNDIR/images */
	const char *token;
	int64_t interval_ms; /* 0: checkpoints on request only */
	int stop_after_checkpoint;
	const char *restart_hint; /* "ckpt restart ..." for messages */
	const char *command;      /* the command line, for messages */
	uint64_t next_gen;        /* first generation number to use */
	uint64_t restored_gen;    /* 0 at start; the generation restarted from */
	/* What status shows before this run's first checkpoint (from the
	 * manifest of restored_gen at restart). */
	uint64_t last_gen;
	int64_t last_time_ms;
	uint64_t last_bytes;
	int64_t last_total_ms;
	struct ckpt_log *exec_log, *coord_log;
	int app_log_fd;
	int listen_fd;
	int sig_fd; /* signalfd for SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP */
	int out_fd, err_fd; /* read ends of the program's stdout and stderr */
	struct launch launch;
};

/* Runs until the program has ended and its output is drained. Returns
 * ckpt's exit status: the program's (128+N for signal N), 0 after
 * --stop-after-checkpoint, or 1 when the launch failed (message set). */
int coord_run(const struct coord_opts *o);

#endif
