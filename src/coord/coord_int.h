/* Internal to the coordinator (coord.c, checkpoint.c, tee.c). */
#ifndef CKPT_COORD_COORD_INT_H
#define CKPT_COORD_COORD_INT_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "coord/coord.h"
#include "coord/proto.h"
#include "gpu/helper.h"

enum conn_role { ROLE_NEW, ROLE_AGENT, ROLE_CLIENT };

#define CONN_OUT_MAX (64 * 1024) /* a peer that does not read is dropped */

struct conn {
	int fd;
	enum conn_role role;
	pid_t peer_pid; /* SO_PEERCRED, in the supervisor's pid namespace */
	int64_t pid;	/* agent: pid in the program's namespace */
	int64_t ppid;
	uint64_t restored;
	char cmd[512];
	struct ckpt_linebuf in;
	char *out;
	size_t outlen;
	int closing;	      /* close once out is flushed */
	char why_closed[320]; /* set when the coordinator drops the peer */
	/* client: waiting for a checkpoint; 0 until one is started for it */
	int waiting;
	uint64_t wait_gen;
	/* agent: part of the running checkpoint; where it is in it
	 * (enum ck_phase); pending until DONE */
	int in_ckpt;
	int phase;
	int was_stopped; /* SIGSTOPped: continued for this checkpoint */
	int pending;
	char done_file[64];
	/* SUSPENDED unaccepted=N in_flight=M in_transit=T stuck=S: hand-overs
	 * to other processes caught half-way (the first one in
	 * unsettled_what); an agent that says so also knows RECHECK */
	int unaccepted, in_flight, in_transit, stuck;
	int knows_recheck;
	int settling; /* resumed for a hand-over to finish (checkpoint.c) */
	char unsettled_what[320];
};

/* An agent's progress through one checkpoint (docs/protocol.md). */
enum ck_phase {
	CK_NONE,
	CK_SUSPENDING, /* SUSPEND sent */
	CK_SUSPENDED,
	CK_CAPTURING, /* CAPTURE sent: one process at a time */
	CK_CAPTURED,
	CK_WRITING, /* CONTINUE sent, DONE awaited */
	CK_DONE,
};

/* The checkpoint as a whole: every process stops, then each is captured
 * in turn, then all run on while their images are written. */
enum ck_stage { STAGE_SUSPEND, STAGE_SETTLE, STAGE_CAPTURE, STAGE_WRITE };

struct ckpt_state {
	int active;
	int stage;
	int64_t unknown_since; /* a process without an agent was first seen */
	/* STAGE_SETTLE: the program runs on until settle_at, then is
	 * stopped again; settle_since: the first stop that found a
	 * hand-over half-way */
	int settle_tries;
	int recheck; /* when all are stopped again, RECHECK the others */
	int64_t settle_at, settle_since;
	int abandoning;
	pid_t cont[COORD_MAX_CONT]; /* stopped processes continued before they joined */
	int ncont;
	/* images complete (DONE, or found written after their process
	 * exited), and processes that exited while theirs was written */
	int64_t done[COORD_MAX_PROCS];
	/* its writer read every page chunk back and checked it (DONE
	 * pages_checked=1): the verification need not read the pages */
	uint8_t done_checked[COORD_MAX_PROCS];
	int ndone;
	int64_t orphans[COORD_MAX_PROCS];
	int norphans;
	uint64_t gen;
	int64_t t0_mono;
	int64_t deadline;
	int npending;
	uint64_t bytes;
	int64_t pause_ms; /* longest pause of any process */
	int stop;	  /* sent with stop=1: the program ends after it */
	/* incremental: pages are hashed; parent != 0: images may refer to
	 * generation parent's */
	int hashes;
	uint64_t parent;
	uint64_t pages_stored, pages_referred, pages_proven;
	uint64_t uncompressed; /* page bytes --compress auto stored raw */
	char dir[PATH_MAX];
	/* CUDA processes whose GPU state the driver saved for this
	 * checkpoint (gpuckpt.c); held: not yet given back (Restore/Unlock) */
	struct gpu_stats {
		int n;
		double lock_ms, checkpoint_ms, restore_ms, unlock_ms;
	} gpu;
	int gpu_held;
};

/* A file the program opened for appending, or created (appended.c): its
 * size at the running checkpoint, if it was still at its path then. */
struct appended_file {
	uint64_t dev, ino, size;
	char *path;
	int present;
	/* created files: the generation whose files/ has its link (0:
	 * none), and whether this one links it from there at commit */
	uint64_t kept_gen;
	int defer;
};

/* What the coordinator has read of one of the agents' journals. */
struct journal {
	struct appended_file *files;
	size_t n;
	uint64_t read; /* bytes of the journal read */
	int full;
	int32_t *index; /* open addressing over files by dev and ino; -1 free */
};

struct coord {
	const struct coord_opts *o;
	struct conn **conns;
	size_t nconns, capconns;
	struct ckpt_state ck;
	uint64_t next_gen;
	int64_t next_due; /* monotonic ms; -1: no timer */
	int agent_warned; /* "no agent" logged since the last connection */
	/* last complete checkpoint */
	uint64_t last_gen;
	int64_t last_time_ms, last_total_ms;
	uint64_t last_bytes;
	/* the chain of incremental generations this run committed: the last
	 * one (0: none yet, so the next is full) and how many parents it has */
	uint64_t chain_gen;
	int chain_len;
	struct gpu_stats last_gpu;
	/* GPU (gpuckpt.c): the processes of the running checkpoint, the
	 * model and memory of this node's first GPU (found once), and at
	 * restart whether the restored processes got their GPU state back */
	struct gpu_job *gpu_job;
	struct gpu_info gpu_info;
	int gpu_restored;
	int gpu_warned_no_namespaces;
	/* the program */
	int64_t main_pid; /* in its namespace; 0 until init reports it */
	int main_status;  /* wait status from init; valid when main_exited */
	int main_exited;
	int main_gone;	  /* the first program ended, others run on */
	int first_status; /* its wait status (or from the restored manifest), -1 */
	int launch_failed;
	int stopping;	  /* --stop-after-checkpoint: init was killed */
	int killed_early; /* killed at DONE, before the generation was complete */
	int stop_failed;  /* ...and it could not be completed */
	uint64_t stopped_gen;
	/* A stop asked for by SIGTERM or --before-limit: 0 none, 1 wanted
	 * (served by the next checkpoint, sent with stop=1), 2 its checkpoint
	 * failed and the program was sent SIGTERM instead. */
	int stop_req;
	char stop_why[128];
	int64_t stop_at; /* copy of o->stop_at_mono; 0 once it fired */
	/* A requested checkpoint that came before the program's agent
	 * connected waits for it until then (0: none waits) */
	int64_t agent_wait_until;
	int ckpt_again; /* the checkpoint signal came during a checkpoint */
	int init_reaped;
	/* pids of the HELLOs with restored= (a restored tree has several; the
	 * main pid may be reported by init after its HELLO) */
	int64_t restored_pids[COORD_MAX_PROCS];
	int nrestored;
	int init_status;
	int report_fd, cmd_fd;
	/* lazy restart (lazyverify.c): the child verifying restored_gen,
	 * the pipe of its verdict, and what waits for it */
	pid_t verify_pid;
	int verify_fd;
	int64_t verify_t0;
	int ckpt_deferred; /* a checkpoint was asked for meanwhile */
	int lazy_damaged;  /* it found damage: the program was killed */
	/* restart on a terminal (progress.c): next redraw (-1: none) */
	int64_t progress_next, progress_t0;
	int progress_shown;
	struct ckpt_linebuf report;
	int out_fd, err_fd;
	int term_out, term_err; /* our stdout/stderr still take the tee */
	/* A restart whose page data the restorer checks (tee.c): its stderr
	 * is held back from the terminal until the program runs, since a
	 * restorer that finds damage is followed by a message that says it
	 * again (and the restart starts over from an older generation). */
	int hold_err;
	size_t nheld;
	char held[4096];
	/* the files appended to and those created, from the run
	 * directory's journals */
	struct journal appended, created;
};

/* coord.c */
void conn_send(struct coord *c, struct conn *k, const struct ckpt_line *l);
void conn_reply_err(struct coord *c, struct conn *k, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
struct conn *coord_root_agent(struct coord *c);

/* lazyverify.c */
struct gen_verdict;
/* gens_verify of restored_gen, every checksum (and its parents'). */
int verify_restored(const struct coord_opts *o, struct gen_verdict *v);
/* Start verifying the lazily restored generation in a child. */
void lazy_verify_begin(struct coord *c);
/* The child's verdict is readable: take it (kills the program on damage). */
void lazy_verify_end(struct coord *c);
/* A checkpoint must wait for the verification: 1 (it is started when the
 * verdict is good), or 0 to go on. */
int lazy_verify_defer(struct coord *c, const char *why);

/* progress.c: what restart has read, on a terminal, until the program runs */
void restore_progress_begin(struct coord *c);
void restore_progress_tick(struct coord *c);
void restore_progress_end(struct coord *c);

/* checkpoint.c */
/* Start a checkpoint (timer or request) unless one is running. */
void ckpt_start(struct coord *c, const char *why);
void ckpt_on_suspended(struct coord *c, struct conn *agent, const struct ckpt_msg *m);
void ckpt_on_captured(struct coord *c, struct conn *agent, const struct ckpt_msg *m);
void ckpt_on_done(struct coord *c, struct conn *agent, const struct ckpt_msg *m);
void ckpt_on_fail(struct coord *c, struct conn *agent, const struct ckpt_msg *m);
void ckpt_on_agent_gone(struct coord *c, struct conn *agent);
void ckpt_on_timeout(struct coord *c);
/* The program ended: abandon a running checkpoint, answer waiters. */
void ckpt_on_program_end(struct coord *c);
/* SIGTERM or --before-limit: checkpoint with stop=1 and end the program;
 * if that checkpoint fails, send the program SIGTERM instead. */
void ckpt_request_stop(struct coord *c, const char *why);
/* The checkpoint signal: checkpoint now (or right after the running one). */
void ckpt_on_signal(struct coord *c, const char *why);
/* An agent connected: a stop asked for before it could be served. */
void ckpt_on_agent_ready(struct coord *c);

/* gpuckpt.c: the CUDA driver's checkpoint calls around a checkpoint
 * (docs/gpu.md). Before SUSPEND: lock and checkpoint every CUDA process;
 * 0, or -1 with the reason in why (everything locked was given back). */
int gpuckpt_before(struct coord *c, char *why, size_t cap);
/* After CONTINUE, and when a checkpoint is abandoned: Restore and Unlock
 * what gpuckpt_before took (nothing when nothing is held). */
void gpuckpt_give_back(struct coord *c, const char *when);
/* The generation's manifest entries; 0 or -1 (out of memory). */
struct kvfile;
int gpuckpt_manifest(struct coord *c, struct kvfile *kv);

/* appended.c: while every process is stopped, the sizes of the files the
 * program appends to; then their manifest entries */
void appended_snapshot(struct coord *c);
/* Before the processes are stopped: what the journals have so far, so
 * that the pause reads only what comes after. */
void appended_prefetch(struct coord *c);
int appended_manifest(struct coord *c, struct kvfile *kv);
void appended_free(struct coord *c);
/* " GPU: ..." for the line logging a completed checkpoint ("" without). */
void gpuckpt_summary(const struct gpu_stats *g, char *out, size_t cap);
/* Restart: an agent said HELLO restored=; once every process that was
 * checkpointed with CUDA state runs again, Restore and Unlock them. */
void gpuckpt_on_restored(struct coord *c);

/* tee.c */
/* Copy what is readable on *fd to the terminal (*term) and
 * application.log. Sets *fd to -1 at end of file. */
void tee_output(struct coord *c, int *fd, int termfd, int *term);
/* End the holding back of stderr: what was held goes to the terminal,
 * or (show 0) only stays in application.log. */
void tee_release(struct coord *c, int show);

#endif
