/* The supervisor's coordinator: one poll() loop that serves the control
 * socket (agents and clients), tees the program's output, keeps the
 * checkpoint timer, runs checkpoints and follows the namespace's init
 * until the program ends. See docs/protocol.md. */
#ifndef CKPT_COORD_COORD_H
#define CKPT_COORD_COORD_H

#include <stddef.h>
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
/* Processes of one computation the supervisor follows (more: refused). */
#define COORD_MAX_PROCS 4096
/* A process may run this long without its agent during a checkpoint (it
 * has just forked or exec'd) before it is reported as impossible to
 * checkpoint; its presence is checked this often meanwhile. */
#define COORD_AGENT_WAIT_MS 3000
#define COORD_MEMBER_POLL_MS 20
/* A stop that catches a hand-over between processes half-way (a request
 * on a connection not yet accepted, descriptors in flight) lets the
 * program run this long at first, twice as long each time after, up to
 * the cap, and takes the checkpoint as it is after the whole budget. */
#define COORD_SETTLE_FIRST_MS 2
#define COORD_SETTLE_CAP_MS 128
#define COORD_SETTLE_BUDGET_MS 1000
#define COORD_MAX_CONT 64

/* ckpt's exit status after a stop asked for by SIGTERM or --before-limit
 * (docs/slurm.md): the program was checkpointed and stopped, resume it
 * (ckpt run); or the stop was asked for but no checkpoint was completed
 * (the program was ended; the previous checkpoint, if any, is the one to
 * resume). */
#define CKPT_EXIT_STOPPED 85
#define CKPT_EXIT_STOP_FAILED 86

struct coord_opts {
	const char *rundir; /* absolute path: messages, and CHECKPOINT dir= */
	int dirfd;	    /* the run directory */
	int imagesfd;	    /* RUNDIR/images */
	const char *token;
	int64_t interval_ms; /* 0: checkpoints on request only */
	int stop_after_checkpoint;
	int no_cow;	       /* write the image while the program is stopped */
	int exit_with_main;    /* end every process when the first one ends */
	const char *compress;  /* auto|none|fast|max */
	int full_every;	       /* a full image every N generations (1: always) */
	int checkpoint_signal; /* this signal to the supervisor: checkpoint now */
	int64_t stop_at_mono;  /* --before-limit: checkpoint and stop at this
				* CLOCK_MONOTONIC ms; 0: never */
	int keep;	       /* complete, intact generations kept (--keep) */
	/* Generations restart found damaged: they do not count towards keep
	 * (docs/reliability.md). */
	const uint64_t *damaged;
	size_t ndamaged;
	const char *restart_hint; /* "ckpt restart ..." for messages */
	const char *command;	  /* the command line, for messages */
	uint64_t next_gen;	  /* first generation number to use */
	uint64_t restored_gen;	  /* 0 at start; the generation restarted from */
	int lazy; /* restart --lazy: restored_gen's pages are verified while it runs */
	/* restart: restored_gen's page data were not read before the restorer
	 * started (it checks each chunk as it reads it); a restorer that fails
	 * has them verified, and damage marks the generation (GENS_DAMAGED) */
	int pages_unverified;
	int first_status; /* the first program's wait status when it ended
			     before restored_gen was taken, else -1 */
	/* What status shows before this run's first checkpoint (from the
	 * manifest of restored_gen at restart). */
	uint64_t last_gen;
	int64_t last_time_ms;
	uint64_t last_bytes;
	int64_t last_total_ms;
	/* Restart: pids (in the program's namespace) whose GPU state was
	 * saved through the CUDA driver in restored_gen (docs/gpu.md). */
	const int64_t *gpu_pids;
	size_t ngpu_pids;
	struct ckpt_log *exec_log, *coord_log;
	int app_log_fd;
	int listen_fd;
	int sig_fd; /* signalfd: SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, checkpoint_signal */
	int out_fd, err_fd; /* read ends of the program's stdout and stderr */
	struct launch launch;
};

/* Runs until the program has ended and its output is drained. Returns
 * ckpt's exit status: the program's (128+N for signal N), 0 after
 * --stop-after-checkpoint, CKPT_EXIT_STOPPED / CKPT_EXIT_STOP_FAILED after
 * SIGTERM or --before-limit, or -1 when the launch failed (message set).
 * When the program exited by itself, RUNDIR/finished records it. */
int coord_run(const struct coord_opts *o);
/* Restart (appended.c): put back the files the program created that are
 * gone from their paths, then cut back the files it appended to after
 * generation gen's checkpoint, as its manifest lists them. */
void appended_cut_back(int imagesfd, uint64_t gen, struct ckpt_log *log);

#endif
