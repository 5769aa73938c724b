/* Running one checkpoint generation across the connected agents
 * (docs/protocol.md, "Generations"). */
#include "coord/coord_int.h"

#include "coord/err.h"
#include "coord/fsutil.h"
#include "coord/gens.h"
#include "coord/kvfile.h"
#include "coord/tree.h"
#include "image/reader.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static void join(struct coord *c, struct conn *k);
static void commit(struct coord *c);
static int capture_line(struct coord *c, struct ckpt_line *l, const char *peers, int stopped);

static int program_alive(struct coord *c)
{
	return !c->main_exited && !c->init_reaped && !c->stopping;
}

static void schedule_next(struct coord *c)
{
	c->next_due =
	    program_alive(c) && c->o->interval_ms > 0 ? ckpt_mono_ms() + c->o->interval_ms : -1;
}

/* Answer the clients waiting for generation gen (0: those not yet given
 * one) with ERR. */
static void fail_waiters(struct coord *c, uint64_t gen, const char *msg)
{
	for (size_t i = 0; i < c->nconns; i++) {
		struct conn *k = c->conns[i];
		if (k->fd >= 0 && k->role == ROLE_CLIENT && k->waiting && k->wait_gen == gen) {
			k->waiting = 0;
			conn_reply_err(c, k, "%s", msg);
		}
	}
}

/* A stop (SIGTERM, --before-limit) that no checkpoint can serve: end the
 * program as SIGTERM would have without ckpt, and exit with
 * CKPT_EXIT_STOP_FAILED unless it exits by itself. */
static void stop_without_checkpoint(struct coord *c, const char *why)
{
	c->stop_req = 2;
	char prev[600] = "there is no earlier checkpoint to resume from";
	if (c->last_gen)
		snprintf(prev, sizeof(prev), "resume from generation %llu with: %s",
			 (unsigned long long)c->last_gen, c->o->restart_hint);
	ckpt_log(c->o->exec_log,
		 "stop (%s): no checkpoint could be made (%s); sending SIGTERM to the program (pid "
		 "%lld) instead; %s",
		 c->stop_why, why, (long long)c->main_pid, prev);
	if (c->cmd_fd >= 0 && write_all(c->cmd_fd, "killall 15\n", 11) < 0)
		ckpt_log(c->o->exec_log, "cannot pass SIGTERM to the namespace's init: %s",
			 strerror(errno));
}

/* A checkpoint could not even begin. */
static void not_started(struct coord *c, const char *why, const char *msg)
{
	int from_timer = strcmp(why, "interval") == 0;
	/* A timer that finds no agent would log the same line every
	 * interval; say it once until an agent connects. */
	if (!from_timer || !c->agent_warned)
		ckpt_log(c->o->exec_log, "checkpoint skipped (%s): %s", why, msg);
	if (from_timer)
		c->agent_warned = 1;
	fail_waiters(c, 0, msg);
	schedule_next(c);
	/* Without an agent yet (the program is starting or being restored)
	 * the stop waits for it: ckpt_on_agent_ready. */
	if (c->stop_req == 1 && coord_root_agent(c))
		stop_without_checkpoint(c, msg);
}

static void ended(struct coord *c)
{
	for (size_t i = 0; i < c->nconns; i++) {
		struct conn *k = c->conns[i];
		/* stopped before, stopped again */
		if (k->fd >= 0 && k->was_stopped && k->peer_pid > 0)
			kill(k->peer_pid, SIGSTOP);
		k->was_stopped = 0;
		k->in_ckpt = k->pending = 0;
		k->phase = CK_NONE;
	}
	c->ck.active = 0;
	schedule_next(c);
	/* A stop or a signal that came during this checkpoint. */
	if (program_alive(c) && c->stop_req == 1)
		ckpt_start(c, c->stop_why);
	if (program_alive(c) && c->ckpt_again) {
		c->ckpt_again = 0;
		ckpt_start(c, "checkpoint signal");
	}
	/* Requests that arrived during this checkpoint want a newer one. */
	for (size_t i = 0; i < c->nconns; i++) {
		struct conn *k = c->conns[i];
		if (k->fd >= 0 && k->role == ROLE_CLIENT && k->waiting && k->wait_gen == 0) {
			if (program_alive(c))
				ckpt_start(c, "requested");
			else
				fail_waiters(c, 0, "the program has ended");
			break;
		}
	}
}

/* Every process taking part that may be stopped (suspended, captured, or
 * told stop=1 and DONE) must run on when the generation fails; an agent
 * that is running already ignores RESUME. */
static void resume_stopped(struct coord *c)
{
	struct ckpt_line l;
	ckpt_line_begin(&l, "RESUME");
	ckpt_line_u64(&l, "gen", c->ck.gen);
	ckpt_line_end(&l);
	for (size_t i = 0; i < c->nconns; i++) {
		struct conn *k = c->conns[i];
		if (k->fd >= 0 && k->in_ckpt && k->phase != CK_WRITING) {
			ckpt_log(c->o->coord_log, "RESUME gen=%llu -> pid %lld",
				 (unsigned long long)c->ck.gen, (long long)k->pid);
			conn_send(c, k, &l);
		}
	}
}

/* Agents report system errors as "(errno N)" (they cannot call
 * strerror where they write the image): name the error for the user. */
static void explain_errno(const char *reason, char *out, size_t cap)
{
	const char *p = strstr(reason, "(errno ");
	int e = p ? atoi(p + 7) : 0;
	const char *close = p ? strchr(p, ')') : NULL;
	if (e <= 0 || !close)
		snprintf(out, cap, "%s", reason);
	else
		snprintf(out, cap, "%.*s(errno %d, %s)%s", (int)(p - reason), reason, e,
			 strerror(e), close + 1);
}

/* What a failed checkpoint leaves to go on: how much of the generation
 * had been written, and how much room the file system has, so that a
 * full disk or quota is recognised at once. Sizes of the partial
 * generation's files (the agents' *.img.tmp included) are read before
 * it is removed. */
static void storage_note(struct coord *c, char *out, size_t cap)
{
	char partial[64];
	gens_name(partial, sizeof(partial), c->ck.gen, 1);
	uint64_t written = 0;
	int dfd = openat(c->o->imagesfd, partial, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (d) {
		struct dirent *e;
		struct stat st;
		while ((e = readdir(d)))
			if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISREG(st.st_mode))
				written += (uint64_t)st.st_size;
		closedir(d);
	} else if (dfd >= 0) {
		close(dfd);
	}
	/* An agent removes its own .tmp file before it reports; then its
	 * message says how far it got. */
	char done[96] = "";
	if (written)
		snprintf(done, sizeof(done), "; %llu bytes of it were on disk",
			 (unsigned long long)written);
	struct statvfs vfs;
	if (fstatvfs(c->o->imagesfd, &vfs) < 0) {
		snprintf(out, cap, "%s", done);
		return;
	}
	uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	/* The last complete generation is the best guess of what the next
	 * one needs. */
	uint64_t need = c->last_bytes ? c->last_bytes : written;
	snprintf(out, cap, "%s; %llu bytes are free on the file system of %s/%s%s", done,
		 (unsigned long long)avail, c->o->rundir, GENS_DIR,
		 avail < need + need / 4 ? " (too little: free space or raise the quota there)"
					 : "");
}

static void abandon(struct coord *c, const char *reason)
{
	/* resuming the others may find more of them gone: once is enough */
	if (c->ck.abandoning)
		return;
	c->ck.abandoning = 1;
	uint64_t gen = c->ck.gen;
	char msg[1200];
	resume_stopped(c);
	gpuckpt_give_back(c, "after the failed checkpoint");
	if (c->killed_early && !c->stopping) {
		/* The program is gone already: say so, and fail the exit. */
		c->stopping = 1;
		c->stop_failed = 1;
		ckpt_log(c->o->exec_log,
			 "the program was stopped for --stop-after-checkpoint but "
			 "generation %llu could not be completed; resume from the previous "
			 "generation, if any, with: %s",
			 (unsigned long long)gen, c->o->restart_hint);
	}
	char why[1100], storage[400];
	explain_errno(reason, why, sizeof(why));
	/* a GPU refusal (gpuckpt.c) has nothing to do with storage */
	storage[0] = '\0';
	if (strncmp(reason, "GPU: ", 5) != 0)
		storage_note(c, storage, sizeof(storage));
	snprintf(msg, sizeof(msg), "checkpoint generation %llu failed: %s", (unsigned long long)gen,
		 why);
	int removed = gens_abort(c->o->imagesfd, gen) == 0;
	if (!removed)
		ckpt_log(c->o->exec_log, "cannot remove the partial generation %llu: %s",
			 (unsigned long long)gen, ckpt_error());
	ckpt_log(c->o->exec_log, "%s%s%s%s", msg, storage,
		 removed ? "; the partial generation was removed" : "",
		 program_alive(c)
		     ? "; the program continues, the previous checkpoint stays in use and "
		       "the next checkpoint tries again"
		     : "");
	if (c->ck.stop && c->stop_req == 1) {
		if (program_alive(c))
			stop_without_checkpoint(c, reason);
		else
			c->stop_req = 2;
	}
	fail_waiters(c, gen, msg);
	ended(c);
}

void ckpt_start(struct coord *c, const char *why)
{
	if (c->ck.active)
		return; /* requesters are served when it ends */
	if (!program_alive(c)) {
		fail_waiters(c, 0, "the program has ended");
		return;
	}
	struct conn *root = coord_root_agent(c);
	char msg[1024];
	/* `ckpt checkpoint` right after start: the agent connects a moment
	 * after the program starts (much later on a loaded node), so a
	 * request waits for it rather than failing; the timer does not. */
	int64_t now = ckpt_mono_ms();
	if (!root && strcmp(why, "interval") != 0 &&
	    (!c->agent_wait_until || now < c->agent_wait_until)) {
		if (!c->agent_wait_until)
			c->agent_wait_until = now + COORD_AGENT_WAIT_MS;
		return;
	}
	c->agent_wait_until = 0;
	if (!root) {
		if (!c->main_pid)
			snprintf(msg, sizeof(msg), "the program has not started yet");
		else
			snprintf(
			    msg, sizeof(msg),
			    "the program (pid %lld) has not connected to the coordinator yet (it "
			    "is starting, or the checkpoint agent did not load into it)",
			    (long long)c->main_pid);
		not_started(c, why, msg);
		return;
	}
	if (lazy_verify_defer(c, why))
		return;
	uint64_t gen = c->next_gen++;
	if (gens_begin(c->o->imagesfd, gen) < 0) {
		snprintf(msg, sizeof(msg), "checkpoint generation %llu failed: %s",
			 (unsigned long long)gen, ckpt_error());
		not_started(c, why, msg);
		return;
	}
	appended_prefetch(c);
	char name[64];
	gens_name(name, sizeof(name), gen, 1);
	snprintf(c->ck.dir, sizeof(c->ck.dir), "%s/%s/%s", c->o->rundir, GENS_DIR, name);
	c->ck.active = 1;
	c->ck.gen = gen;
	c->ck.t0_mono = ckpt_mono_ms();
	c->ck.deadline = c->ck.t0_mono + COORD_STOPPED_PROBE_MS;
	c->ck.npending = 0;
	c->ck.bytes = 0;
	c->ck.pause_ms = 0;
	c->ck.stop = c->o->stop_after_checkpoint || c->stop_req == 1;
	c->ck.hashes = c->o->full_every > 1;
	c->ck.parent =
	    c->ck.hashes && c->chain_gen && c->chain_len + 1 < c->o->full_every ? c->chain_gen : 0;
	c->ck.pages_stored = c->ck.pages_referred = c->ck.pages_proven = 0;
	c->ck.uncompressed = 0;
	c->next_due = -1;
	for (size_t i = 0; i < c->nconns; i++) {
		struct conn *k = c->conns[i];
		if (k->fd >= 0 && k->role == ROLE_CLIENT && k->waiting && k->wait_gen == 0)
			k->wait_gen = gen;
	}
	struct ckpt_line l;
	if (capture_line(c, &l, "", 0) < 0) {
		abandon(c, "the run directory's path is too long for a protocol line");
		return;
	}
	c->ck.stage = STAGE_SUSPEND;
	c->ck.unknown_since = 0;
	c->ck.settle_tries = 0;
	c->ck.settle_since = c->ck.settle_at = 0;
	c->ck.recheck = 0;
	c->ck.abandoning = 0;
	c->ck.ncont = 0;
	c->ck.norphans = 0;
	c->ck.ndone = 0;
	/* CUDA processes first, while every thread runs: the driver needs
	 * its own thread in the process (docs/gpu.md). */
	char gpu_why[1200];
	if (gpuckpt_before(c, gpu_why, sizeof(gpu_why)) < 0) {
		abandon(c, gpu_why);
		return;
	}
	int n = 0;
	for (size_t i = 0; i < c->nconns; i++)
		if (c->conns[i]->fd >= 0 && c->conns[i]->role == ROLE_AGENT) {
			join(c, c->conns[i]);
			n++;
		}
	ckpt_log(c->o->coord_log, "checkpoint gen=%llu (%s%s): SUSPEND -> %d process(es)",
		 (unsigned long long)gen, why, c->ck.stop ? ", stop=1" : "", n);
}

/* A process joins the checkpoint: it is asked to stop its threads. */
static void join(struct coord *c, struct conn *k)
{
	k->was_stopped = 0;
	for (int i = 0; i < c->ck.ncont; i++)
		if (c->ck.cont[i] == k->peer_pid)
			k->was_stopped = 1;
	if (k->peer_pid > 0 && tree_proc_state(k->peer_pid) == 'T' &&
	    kill(k->peer_pid, SIGCONT) == 0) {
		k->was_stopped = 1; /* see stopped_agent */
		ckpt_log(c->o->coord_log, "pid %lld is stopped: continued for the checkpoint",
			 (long long)k->pid);
	}
	struct ckpt_line l;
	ckpt_line_begin(&l, "SUSPEND");
	ckpt_line_u64(&l, "gen", c->ck.gen);
	if (c->ck.hashes)
		ckpt_line_u64(&l, "track", 1);
	ckpt_line_end(&l);
	k->in_ckpt = 1;
	k->phase = CK_SUSPENDING;
	k->unaccepted = k->in_flight = k->in_transit = k->stuck = 0;
	k->pending = 0;
	k->done_file[0] = '\0';
	conn_send(c, k, &l);
}

/* CAPTURE for one process: where to write, how, and who the other
 * processes are (to find descriptions it shares with them). */
static int capture_line(struct coord *c, struct ckpt_line *l, const char *peers, int stopped)
{
	ckpt_line_begin(l, "CAPTURE");
	ckpt_line_u64(l, "gen", c->ck.gen);
	ckpt_line_str(l, "dir", c->ck.dir);
	/* --stop-after-checkpoint: the program must not run on after its
	 * capture, or it would print what the restart prints again. */
	if (c->ck.stop)
		ckpt_line_u64(l, "stop", 1);
	if (c->o->no_cow)
		ckpt_line_u64(l, "cow", 0);
	if (c->o->compress)
		ckpt_line_str(l, "compress", c->o->compress);
	if (c->ck.hashes)
		ckpt_line_u64(l, "hashes", 1);
	if (c->ck.parent)
		ckpt_line_u64(l, "parent", c->ck.parent);
	if (*peers)
		ckpt_line_str(l, "peers", peers);
	if (stopped)
		ckpt_line_u64(l, "sigstop", 1);
	/* which descriptors are the supervisor's stdio: the agent of a
	 * program started by exec cannot tell */
	char stdio[200] = "";
	int fds[3] = {0, c->out_fd, c->err_fd};
	for (int i = 0; i < 3; i++) {
		struct stat st = {0};
		if (fds[i] < 0 || fstat(fds[i], &st) < 0)
			st.st_dev = st.st_ino = 0;
		size_t n = strlen(stdio);
		snprintf(stdio + n, sizeof(stdio) - n, "%s%llu:%llu", i ? "," : "",
			 (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	}
	ckpt_line_str(l, "stdio", stdio);
	return ckpt_line_end(l);
}

/* Capture every suspended process (all at once: each stays stopped until
 * all are captured, and pipes and sockets are read without taking their
 * bytes, so captures do not disturb each other); when all are captured,
 * let every process run on while the images are written. */
static void capture_next(struct coord *c)
{
	char peers[3000] = "";
	size_t n = 0;
	for (size_t i = 0; i < c->nconns; i++) {
		struct conn *k = c->conns[i];
		if (k->fd >= 0 && k->in_ckpt && n < sizeof(peers) - 24)
			n += (size_t)snprintf(peers + n, sizeof(peers) - n, "%s%lld", n ? "," : "",
					      (long long)k->pid);
	}
	struct ckpt_line l;
	int busy = 0;
	for (size_t i = 0; i < c->nconns && c->ck.active; i++) {
		struct conn *k = c->conns[i];
		if (k->fd < 0 || !k->in_ckpt)
			continue;
		if (k->phase == CK_SUSPENDED) {
			if (capture_line(c, &l, peers, k->was_stopped) < 0) {
				abandon(c, "too many processes for one protocol line");
				return;
			}
			k->phase = CK_CAPTURING;
			ckpt_log(c->o->coord_log, "CAPTURE gen=%llu -> pid %lld",
				 (unsigned long long)c->ck.gen, (long long)k->pid);
			conn_send(c, k, &l);
		}
		if (k->phase == CK_CAPTURING)
			busy = 1;
	}
	if (busy || !c->ck.active)
		return;
	c->ck.stage = STAGE_WRITE;
	ckpt_line_begin(&l, "CONTINUE");
	ckpt_line_u64(&l, "gen", c->ck.gen);
	ckpt_line_end(&l);
	c->ck.npending = 0;
	for (size_t i = 0; i < c->nconns; i++) {
		struct conn *k = c->conns[i];
		if (k->fd >= 0 && k->in_ckpt && k->phase == CK_CAPTURED) {
			k->phase = CK_WRITING;
			k->pending = 1;
			c->ck.npending++;
			conn_send(c, k, &l);
		}
	}
	ckpt_log(c->o->coord_log, "CONTINUE gen=%llu -> %d process(es)",
		 (unsigned long long)c->ck.gen, c->ck.npending);
	/* The threads run again (unless stop=1: the program ends, and an
	 * abandoned generation gives the GPU back then). */
	if (!c->ck.stop)
		gpuckpt_give_back(c, "after the capture");
}

/* Are all processes of the computation stopped? Every descendant of init
 * that has not exited must be an agent taking part. Returns 1 when all
 * are, 0 to look again shortly (a process just forked or exec'd and its
 * agent has not connected yet), -1 with the reason when one never will. */
static int all_stopped(struct coord *c, char *why, size_t cap)
{
	for (size_t i = 0; i < c->nconns; i++) {
		struct conn *k = c->conns[i];
		if (k->fd >= 0 && k->in_ckpt && k->phase == CK_SUSPENDING)
			return 0;
	}
	static struct tree_proc procs[COORD_MAX_PROCS];
	int n = tree_list(c->o->launch.init_pid, procs, COORD_MAX_PROCS);
	int waiting = 0;
	for (int i = 0; i < n; i++) {
		if (procs[i].state == 'Z' || procs[i].state == 'X' || procs[i].state == 0)
			continue;
		struct conn *agent = NULL;
		for (size_t j = 0; j < c->nconns && !agent; j++) {
			struct conn *k = c->conns[j];
			if (k->fd >= 0 && k->role == ROLE_AGENT && k->peer_pid == procs[i].hpid)
				agent = k;
		}
		if (agent && agent->in_ckpt)
			continue;
		waiting = 1;
		if (agent) {
			join(c, agent); /* forked before its parent stopped */
			continue;
		}
		/* a restored process stopped before its agent said HELLO */
		if (procs[i].state == 'T' && c->ck.ncont < COORD_MAX_CONT &&
		    kill(procs[i].hpid, SIGCONT) == 0)
			c->ck.cont[c->ck.ncont++] = procs[i].hpid;
		int64_t now = ckpt_mono_ms();
		if (!c->ck.unknown_since)
			c->ck.unknown_since = now;
		if (now - c->ck.unknown_since >= COORD_AGENT_WAIT_MS) {
			char who[700];
			tree_describe(procs[i].hpid, who, sizeof(who));
			snprintf(why, cap,
				 "%s runs without the checkpoint agent (a statically linked "
				 "program, or one started without ckpt's LD_PRELOAD) and cannot be "
				 "checkpointed",
				 who);
			return -1;
		}
	}
	if (!waiting)
		c->ck.unknown_since = 0;
	return !waiting;
}

/* A process stopped with a hand-over to another process half-way
 * (agent's fds.c: bytes sent on a connection not accepted yet,
 * descriptors sent and not received) would lose it at a restart. The
 * processes that can finish it run on a moment, a little longer each
 * time, and are stopped again: the listeners a connection waits on (every
 * process but those whose connections wait, which would only start more
 * hand-overs), or the receivers of descriptors alone (nobody can send
 * them more), which stop again as soon as they have taken them. Bytes of
 * a TCP connection on their way to a socket of this host (tcpflow.c) get
 * there without anyone running: the coordinator only waits. Bytes a TCP
 * sender holds for want of room at the receiver need the reader to run:
 * every process but the senders runs on. Returns 1 if
 * some run on or it waits, 0 to take the checkpoint as it is (nothing
 * half-way, or the budget is spent: execution.log names what a restart
 * will lack). A process stopped by SIGSTOP stays suspended. */
enum settle_mode { FOR_LISTENERS, FOR_RECEIVERS, FOR_DELIVERY, FOR_READERS };

static const char *const settle_verb[] = {"RESUME", "SETTLE", "wait", "RESUME"};

/* Whether k runs on for a hand-over of this kind. */
static int runs_for(const struct conn *k, enum settle_mode mode)
{
	switch (mode) {
	case FOR_LISTENERS:
		return !k->unaccepted;
	case FOR_RECEIVERS:
		return k->in_flight > 0;
	case FOR_READERS:
		return !k->stuck && !k->unaccepted;
	case FOR_DELIVERY:
		break;
	}
	return 0;
}

/* The kind of hand-over to settle first (the order of settle_mode), and
 * the first process caught in one of that kind; NULL if none is. */
static struct conn *first_unsettled(struct coord *c, enum settle_mode *mode)
{
	for (int m = FOR_LISTENERS; m <= FOR_READERS; m++)
		for (size_t i = 0; i < c->nconns; i++) {
			struct conn *k = c->conns[i];
			if (k->fd < 0 || !k->in_ckpt)
				continue;
			int has = m == FOR_LISTENERS   ? k->unaccepted
				  : m == FOR_RECEIVERS ? k->in_flight
				  : m == FOR_DELIVERY  ? k->in_transit
						       : k->stuck;
			if (has) {
				*mode = (enum settle_mode)m;
				return k;
			}
		}
	return NULL;
}

static int settle(struct coord *c)
{
	enum settle_mode mode;
	struct conn *first = first_unsettled(c, &mode);
	if (!first)
		return 0;
	int64_t now = ckpt_mono_ms();
	if (!c->ck.settle_since)
		c->ck.settle_since = now;
	int nrun = 0;
	for (size_t i = 0; i < c->nconns; i++) {
		struct conn *k = c->conns[i];
		k->settling = k->fd >= 0 && k->in_ckpt && k->phase == CK_SUSPENDED &&
			      !k->was_stopped && runs_for(k, mode);
		nrun += k->settling;
	}
	/* a reader in the same process as its sender, or itself waiting
	 * to send, cannot run apart: the capture's warning names the bytes */
	if (nrun == 0 && mode == FOR_READERS)
		return 0;
	if ((nrun == 0 && mode != FOR_DELIVERY) ||
	    now - c->ck.settle_since >= COORD_SETTLE_BUDGET_MS) {
		char how[160];
		if (nrun == 0 && mode != FOR_DELIVERY)
			snprintf(
			    how, sizeof(how),
			    "and no process that could finish it can run (stopped by SIGSTOP)");
		else if (mode == FOR_DELIVERY)
			snprintf(how, sizeof(how),
				 "still after %lld ms (the receiving socket's buffer may be full)",
				 (long long)(now - c->ck.settle_since));
		else
			snprintf(how, sizeof(how),
				 "still after %lld ms of letting the processes that can finish it "
				 "run on",
				 (long long)(now - c->ck.settle_since));
		ckpt_log(
		    c->o->exec_log,
		    "checkpoint generation %llu: pid %lld (%s): %s, %s; the checkpoint is taken "
		    "so, and a restart from it lacks that hand-over (the program may then fail)",
		    (unsigned long long)c->ck.gen, (long long)first->pid, first->cmd,
		    first->unsettled_what, how);
		return 0;
	}
	int shift = c->ck.settle_tries < 16 ? c->ck.settle_tries : 16;
	int64_t wait = (int64_t)COORD_SETTLE_FIRST_MS << shift;
	if (wait > COORD_SETTLE_CAP_MS)
		wait = COORD_SETTLE_CAP_MS;
	c->ck.settle_tries++;
	ckpt_log(c->o->coord_log, "gen=%llu: pid %lld: %s; %s %d process(es) for %lld ms (%d)",
		 (unsigned long long)c->ck.gen, (long long)first->pid, first->unsettled_what,
		 settle_verb[mode], nrun, (long long)wait, c->ck.settle_tries);
	if (nrun) {
		struct ckpt_line l;
		ckpt_line_begin(&l, settle_verb[mode]);
		ckpt_line_u64(&l, "gen", c->ck.gen);
		if (mode == FOR_RECEIVERS)
			ckpt_line_u64(&l, "ms", (uint64_t)wait);
		ckpt_line_end(&l);
		for (size_t i = 0; i < c->nconns; i++) {
			struct conn *k = c->conns[i];
			if (k->settling) {
				conn_send(c, k, &l);
				k->phase = mode == FOR_RECEIVERS ? CK_SUSPENDING : CK_NONE;
			}
		}
	}
	if (mode == FOR_RECEIVERS) {
		/* the receivers stop by themselves once they have taken them */
		c->ck.recheck = 1;
		return 1;
	}
	c->ck.stage = STAGE_SETTLE;
	c->ck.settle_at = now + wait;
	if (c->ck.settle_at < c->ck.deadline)
		c->ck.deadline = c->ck.settle_at;
	return 1;
}

/* The moment given to a hand-over is over: the processes that ran are
 * stopped again; once they all are (see advance), the others are asked
 * whether theirs is done now. */
static void settle_over(struct coord *c)
{
	if (ckpt_mono_ms() < c->ck.settle_at) {
		if (c->ck.settle_at < c->ck.deadline)
			c->ck.deadline = c->ck.settle_at;
		return;
	}
	c->ck.stage = STAGE_SUSPEND;
	c->ck.unknown_since = 0;
	c->ck.recheck = 1;
	int n = 0;
	for (size_t i = 0; i < c->nconns; i++) {
		struct conn *k = c->conns[i];
		if (k->fd >= 0 && k->role == ROLE_AGENT &&
		    !(k->in_ckpt && k->phase == CK_SUSPENDED)) {
			join(c, k);
			n++;
		}
	}
	if (n)
		ckpt_log(c->o->coord_log, "gen=%llu: SUSPEND again -> %d process(es)",
			 (unsigned long long)c->ck.gen, n);
}

/* Every process is stopped again after a hand-over's moment: those that
 * stayed stopped look at their sockets again (a listener may have
 * accepted their connection, a receiver taken their descriptors).
 * Returns 1 if any was asked. */
static int recheck(struct coord *c)
{
	c->ck.recheck = 0;
	struct ckpt_line l;
	ckpt_line_begin(&l, "RECHECK");
	ckpt_line_u64(&l, "gen", c->ck.gen);
	ckpt_line_end(&l);
	int n = 0;
	for (size_t i = 0; i < c->nconns; i++) {
		struct conn *k = c->conns[i];
		if (k->fd >= 0 && k->in_ckpt && k->phase == CK_SUSPENDED && !k->settling &&
		    k->knows_recheck) {
			k->phase = CK_SUSPENDING;
			conn_send(c, k, &l);
			n++;
		}
	}
	if (n)
		ckpt_log(c->o->coord_log, "gen=%llu: RECHECK -> %d process(es)",
			 (unsigned long long)c->ck.gen, n);
	return n > 0;
}

static void advance(struct coord *c)
{
	if (c->ck.active && c->ck.stage == STAGE_SETTLE) {
		settle_over(c);
		/* when nobody ran (a wait for delivery), all are stopped now */
		if (c->ck.stage == STAGE_SETTLE)
			return;
	}
	if (!c->ck.active || c->ck.stage != STAGE_SUSPEND)
		return;
	char why[1000];
	int r = all_stopped(c, why, sizeof(why));
	if (r < 0) {
		abandon(c, why);
		return;
	}
	if (r == 0) {
		/* look again soon */
		int64_t soon = ckpt_mono_ms() + COORD_MEMBER_POLL_MS;
		if (soon < c->ck.deadline)
			c->ck.deadline = soon;
		return;
	}
	if ((c->ck.recheck && recheck(c)) || settle(c))
		return;
	c->ck.stage = STAGE_CAPTURE;
	appended_snapshot(c);
	capture_next(c);
}

static int for_this_checkpoint(struct coord *c, struct conn *agent, const struct ckpt_msg *m,
			       int phase)
{
	uint64_t gen;
	if (ckpt_msg_get_u64(m, "gen", &gen) < 0 || !c->ck.active || gen != c->ck.gen ||
	    !agent->in_ckpt || agent->phase != phase) {
		ckpt_log(c->o->coord_log,
			 "pid %lld: ignoring %s for a checkpoint that is not "
			 "running or not at that step (gen=%s)",
			 (long long)agent->pid, m->verb,
			 ckpt_msg_get(m, "gen") ? ckpt_msg_get(m, "gen") : "?");
		return 0;
	}
	return 1;
}

void ckpt_on_suspended(struct coord *c, struct conn *agent, const struct ckpt_msg *m)
{
	if (!for_this_checkpoint(c, agent, m, CK_SUSPENDING))
		return;
	agent->phase = CK_SUSPENDED;
	uint64_t unaccepted = 0, in_flight = 0, in_transit = 0, stuck = 0;
	agent->knows_recheck = ckpt_msg_get_u64(m, "unaccepted", &unaccepted) == 0;
	ckpt_msg_get_u64(m, "in_flight", &in_flight);
	ckpt_msg_get_u64(m, "in_transit", &in_transit);
	agent->unaccepted = unaccepted > 0;
	agent->in_flight = in_flight > 0;
	agent->in_transit = in_transit > 0;
	ckpt_msg_get_u64(m, "stuck", &stuck);
	agent->stuck = stuck > 0;
	const char *what = ckpt_msg_get(m, "what");
	snprintf(agent->unsettled_what, sizeof(agent->unsettled_what), "%s",
		 what && *what ? what : "a hand-over to another process half-way");
	advance(c);
}

void ckpt_on_captured(struct coord *c, struct conn *agent, const struct ckpt_msg *m)
{
	if (!for_this_checkpoint(c, agent, m, CK_CAPTURING))
		return;
	agent->phase = CK_CAPTURED;
	capture_next(c);
}

/* Read every image of the generation back and check every checksum
 * before it can become latest: bytes a file system mangled are found now,
 * while the previous generation still is latest (the writer dropped the
 * image from the page cache, so this reads the disk). The page chunks of
 * an image whose writer read them back and checked them (writer.h,
 * ckpt_writer_set_check) are not read again: only their layout, from the
 * image's index, and every other section are. */
static int verify_images(struct coord *c, char *reason, size_t cap)
{
	for (int i = 0; i < c->ck.ndone; i++) {
		char path[sizeof(c->ck.dir) + 80], err[1024];
		snprintf(path, sizeof(path), "%s/%lld.img", c->ck.dir, (long long)c->ck.done[i]);
		int r = c->ck.done_checked[i] ? ckpt_image_verify_checked(path, err, sizeof(err))
					      : ckpt_image_verify_stored(path, err, sizeof(err));
		if (r < 0) {
			snprintf(reason, cap, "the image of pid %lld does not read back intact: %s",
				 (long long)c->ck.done[i], err);
			return -1;
		}
	}
	return 0;
}

static void commit(struct coord *c)
{
	uint64_t gen = c->ck.gen;
	char bad[1400];
	if (verify_images(c, bad, sizeof(bad)) < 0) {
		abandon(c, bad);
		return;
	}
	int64_t total = ckpt_mono_ms() - c->ck.t0_mono;
	int64_t now = ckpt_now_ms();
	struct conn *root = coord_root_agent(c);
	struct kvfile kv;
	kv_init(&kv);
	int rc = kv_addf(&kv, "generation", "%llu", (unsigned long long)gen);
	rc |= kv_addf(&kv, "time_ms", "%lld", (long long)now);
	rc |= kv_addf(&kv, "bytes", "%llu", (unsigned long long)c->ck.bytes);
	rc |= kv_addf(&kv, "pause_ms", "%lld", (long long)c->ck.pause_ms);
	rc |= kv_addf(&kv, "total_ms", "%lld", (long long)total);
	rc |= kv_add(&kv, "ckpt_version", CKPT_VERSION);
	/* An incremental generation needs its parent (and the parent's
	 * parents) to be restored: pruning and verification follow this. */
	int chain = c->ck.parent ? c->chain_len + 1 : 0;
	if (c->ck.parent)
		rc |= kv_addf(&kv, "parent", "%llu", (unsigned long long)c->ck.parent);
	rc |= kv_addf(&kv, "chain", "%d", chain);
	rc |= kv_addf(&kv, "pages_stored", "%llu", (unsigned long long)c->ck.pages_stored);
	rc |= kv_addf(&kv, "pages_referred", "%llu", (unsigned long long)c->ck.pages_referred);
	rc |= kv_addf(&kv, "pages_proven", "%llu", (unsigned long long)c->ck.pages_proven);
	if (c->first_status >= 0)
		rc |= kv_addf(&kv, "main_status", "%d", c->first_status);
	if (root) {
		rc |= kv_addf(&kv, "root_pid", "%lld", (long long)root->pid);
		rc |= kv_add(&kv, "root_image", root->done_file);
	}
	for (int i = 0; i < c->ck.ndone; i++)
		rc |= kv_addf(&kv, "image", "%lld.img", (long long)c->ck.done[i]);
	rc |= gpuckpt_manifest(c, &kv);
	rc |= appended_manifest(c, &kv);
	if (rc || !root || gens_commit(c->o->imagesfd, gen, &kv) < 0) {
		char reason[1024];
		snprintf(reason, sizeof(reason), "cannot complete it: %s",
			 rc || !root ? "out of memory" : ckpt_error());
		kv_free(&kv);
		abandon(c, reason);
		return;
	}
	kv_free(&kv);
	char incr[200] = "";
	if (c->ck.parent)
		snprintf(incr, sizeof(incr),
			 " (incremental on generation %llu: %llu pages stored, %llu unchanged "
			 "referred to, %llu of them known unchanged without reading)",
			 (unsigned long long)c->ck.parent, (unsigned long long)c->ck.pages_stored,
			 (unsigned long long)c->ck.pages_referred,
			 (unsigned long long)c->ck.pages_proven);
	char gpu[200], raw[160] = "";
	gpuckpt_summary(&c->ck.gpu, gpu, sizeof(gpu));
	if (c->ck.uncompressed >= (1u << 20))
		snprintf(raw, sizeof(raw),
			 ", %.0f MiB of pages stored uncompressed while the disk waited for "
			 "compression (--compress fast compresses them all)",
			 (double)c->ck.uncompressed / (1 << 20));
	ckpt_log(c->o->exec_log,
		 "checkpoint generation %llu: %llu bytes%s%s, pause %lld ms, %lld ms total%s",
		 (unsigned long long)gen, (unsigned long long)c->ck.bytes, incr, raw,
		 (long long)c->ck.pause_ms, (long long)total, gpu);
	c->chain_gen = gen;
	c->chain_len = chain;
	int pruned = gens_prune(c->o->imagesfd, c->o->keep > 0 ? c->o->keep : GENS_KEEP,
				c->o->damaged, c->o->ndamaged);
	if (pruned < 0)
		ckpt_log(c->o->exec_log, "cannot remove old generations: %s", ckpt_error());
	else if (pruned > 0)
		ckpt_log(c->o->coord_log, "removed %d old generation(s), keeping the %d newest",
			 pruned, c->o->keep > 0 ? c->o->keep : GENS_KEEP);
	c->last_gen = gen;
	c->last_time_ms = now;
	c->last_bytes = c->ck.bytes;
	c->last_total_ms = total;
	c->last_gpu = c->ck.gpu;

	struct ckpt_line l;
	ckpt_line_begin(&l, "OK");
	ckpt_line_u64(&l, "gen", gen);
	ckpt_line_u64(&l, "bytes", c->ck.bytes);
	ckpt_line_i64(&l, "ms", total);
	ckpt_line_end(&l); /* short fixed fields: always fits */
	for (size_t i = 0; i < c->nconns; i++) {
		struct conn *k = c->conns[i];
		if (k->fd >= 0 && k->role == ROLE_CLIENT && k->waiting && k->wait_gen == gen) {
			k->waiting = 0;
			conn_send(c, k, &l);
		}
	}
	if (c->ck.stop && !c->stopping) {
		ckpt_log(c->o->exec_log,
			 "stopped after checkpoint generation %llu; resume with: %s",
			 (unsigned long long)gen, c->o->restart_hint);
		fprintf(stderr, "ckpt: stopped after checkpoint generation %llu; resume with: %s\n",
			(unsigned long long)gen, c->o->restart_hint);
		c->stopping = 1;
		c->stopped_gen = gen;
		/* Killing the namespace's init kills every process in it. */
		if (kill(c->o->launch.init_pid, SIGKILL) < 0)
			ckpt_log(c->o->exec_log,
				 "cannot kill the namespace's init (host pid %d): %s",
				 (int)c->o->launch.init_pid, strerror(errno));
	}
	ended(c);
}

/* A duration field in milliseconds, possibly with a fraction ("12.345"). */
static int64_t get_ms(const struct ckpt_msg *m, const char *key)
{
	const char *v = ckpt_msg_get(m, key);
	if (!v || *v < '0' || *v > '9')
		return 0;
	return (int64_t)(strtod(v, NULL) + 0.5);
}

void ckpt_on_done(struct coord *c, struct conn *agent, const struct ckpt_msg *m)
{
	uint64_t gen;
	if (ckpt_msg_get_u64(m, "gen", &gen) < 0 || !c->ck.active || gen != c->ck.gen ||
	    !agent->pending) {
		ckpt_log(c->o->coord_log,
			 "pid %lld: ignoring DONE for a checkpoint that is not running "
			 "(gen=%s)",
			 (long long)agent->pid,
			 ckpt_msg_get(m, "gen") ? ckpt_msg_get(m, "gen") : "?");
		return;
	}
	int64_t pause = get_ms(m, "pause_ms");
	/* where the pause went, for whoever looks into a slow one */
	const char *f[] = {"pause_ms", "stop_ms", "capture_ms", "fork_ms", "track_ms", "write_ms"};
	const char *v[6];
	for (int i = 0; i < 6; i++)
		v[i] = ckpt_msg_get(m, f[i]) ? ckpt_msg_get(m, f[i]) : "?";
	ckpt_log(c->o->coord_log,
		 "pid %lld: paused %s ms (threads stopped in %s ms, captured in %s ms of which "
		 "%s ms copy-on-write fork, %s ms finding written pages); image written in %s ms",
		 (long long)agent->pid, v[0], v[1], v[2], v[3], v[4], v[5]);
	char want[64], reason[512];
	snprintf(want, sizeof(want), "%lld.img", (long long)agent->pid);
	/* file= is optional; when given it must be the protocol's name. */
	const char *file = ckpt_msg_get(m, "file");
	const char *base = file ? strrchr(file, '/') : NULL;
	base = base ? base + 1 : file;
	/* The image must be where the protocol says, under the name restart
	 * will look for: check rather than trust. */
	struct stat st;
	char partial[64];
	gens_name(partial, sizeof(partial), c->ck.gen, 1);
	int dfd = openat(c->o->imagesfd, partial, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int ok =
	    dfd >= 0 && fstatat(dfd, want, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
	if (dfd >= 0)
		close(dfd);
	if ((base && strcmp(base, want) != 0) || !ok) {
		snprintf(reason, sizeof(reason), "pid %lld reported DONE but %s/%s/%s is %s",
			 (long long)agent->pid, GENS_DIR, partial, want,
			 base && strcmp(base, want) ? "not the file it named" : "missing");
		abandon(c, reason);
		return;
	}
	const char *warn = ckpt_msg_get(m, "warn");
	if (warn && *warn)
		ckpt_log(c->o->exec_log, "checkpoint generation %llu: pid %lld (%s): %s",
			 (unsigned long long)gen, (long long)agent->pid, agent->cmd, warn);
	snprintf(agent->done_file, sizeof(agent->done_file), "%s", want);
	agent->pending = 0;
	agent->phase = CK_DONE;
	uint64_t checked = 0;
	ckpt_msg_get_u64(m, "pages_checked", &checked);
	c->ck.done_checked[c->ck.ndone] = checked == 1;
	c->ck.done[c->ck.ndone++] = agent->pid;
	uint64_t stopped = 0;
	ckpt_msg_get_u64(m, "stopped", &stopped);
	if (c->ck.stop && !stopped && !c->killed_early && c->ck.npending == 1) {
		/* This agent resumed the program despite stop=1: every moment
		 * it runs now may print what the restart prints again. Its
		 * image is durable already, so stop it first, then commit. */
		ckpt_log(c->o->coord_log,
			 "pid %lld did not keep the program stopped (no stopped=1): "
			 "killing the namespace before completing generation %llu",
			 (long long)agent->pid, (unsigned long long)gen);
		if (kill(c->o->launch.init_pid, SIGKILL) == 0)
			c->killed_early = 1;
	}
	c->ck.bytes += (uint64_t)st.st_size;
	uint64_t pages = 0;
	if (ckpt_msg_get_u64(m, "pages_stored", &pages) == 0)
		c->ck.pages_stored += pages;
	if (ckpt_msg_get_u64(m, "pages_referred", &pages) == 0)
		c->ck.pages_referred += pages;
	if (ckpt_msg_get_u64(m, "pages_proven", &pages) == 0)
		c->ck.pages_proven += pages;
	if (ckpt_msg_get_u64(m, "uncompressed", &pages) == 0)
		c->ck.uncompressed += pages;
	if (pause > c->ck.pause_ms)
		c->ck.pause_ms = pause;
	if (--c->ck.npending == 0)
		commit(c);
}

void ckpt_on_fail(struct coord *c, struct conn *agent, const struct ckpt_msg *m)
{
	uint64_t gen;
	if (ckpt_msg_get_u64(m, "gen", &gen) < 0 || !c->ck.active || gen != c->ck.gen ||
	    !agent->in_ckpt) {
		ckpt_log(c->o->coord_log,
			 "pid %lld: ignoring FAIL for a checkpoint that is not running",
			 (long long)agent->pid);
		return;
	}
	const char *why = ckpt_msg_get(m, "reason");
	char reason[1024];
	snprintf(reason, sizeof(reason), "pid %lld (%s): %s", (long long)agent->pid, agent->cmd,
		 why && *why ? why : "no reason given");
	abandon(c, reason);
}

void ckpt_on_agent_gone(struct coord *c, struct conn *agent)
{
	if (!c->ck.active)
		return;
	if (agent->phase == CK_DONE) {
		agent->in_ckpt = 0; /* its image is complete: it may end */
		return;
	}
	if (c->ck.stage == STAGE_WRITE && agent->phase == CK_WRITING &&
	    c->ck.norphans < COORD_MAX_PROCS) {
		/* It ran on and exited while its copy-on-write writer, a child
		 * that outlives it, writes the image it had at the barrier:
		 * wait for that image. */
		ckpt_log(c->o->coord_log,
			 "pid %lld exited while its image was written; waiting for the image",
			 (long long)agent->pid);
		c->ck.orphans[c->ck.norphans++] = agent->pid;
		agent->in_ckpt = 0;
		int64_t soon = ckpt_mono_ms() + COORD_MEMBER_POLL_MS;
		if (soon < c->ck.deadline)
			c->ck.deadline = soon;
		return;
	}
	if (c->ck.stage == STAGE_SUSPEND || c->ck.stage == STAGE_SETTLE) {
		/* It exited, or exec'd (its new agent connects again): before
		 * any image is taken that changes only who takes part. */
		ckpt_log(c->o->coord_log,
			 "pid %lld left during the stop of generation %llu; looking again",
			 (long long)agent->pid, (unsigned long long)c->ck.gen);
		agent->in_ckpt = 0;
		agent->phase = CK_NONE;
		advance(c);
		return;
	}
	char reason[1024];
	snprintf(reason, sizeof(reason), "pid %lld (%s) %s", (long long)agent->pid, agent->cmd,
		 agent->why_closed[0]
		     ? agent->why_closed
		     : "closed its connection during the checkpoint (it exited or crashed)");
	abandon(c, reason);
}

/* A process stopped by SIGSTOP (or SIGTSTP...) cannot run its agent: it
 * is continued for the checkpoint, recorded as stopped (the restart stops
 * it again) and stopped again when the checkpoint ends. Its handler of
 * SIGCONT, if any, runs, and its parent may see it continue and stop. One
 * stopped by a debugger cannot be: returns 1 and names it. */
static int stopped_agent(struct coord *c, char *reason, size_t cap)
{
	for (size_t i = 0; i < c->nconns; i++) {
		struct conn *k = c->conns[i];
		if (k->fd < 0 || !k->in_ckpt || k->phase != CK_SUSPENDING || k->peer_pid <= 0)
			continue;
		char state = tree_proc_state(k->peer_pid);
		if (state == 'T' && kill(k->peer_pid, SIGCONT) == 0) {
			k->was_stopped = 1;
			ckpt_log(c->o->coord_log,
				 "pid %lld is stopped: continued for the checkpoint",
				 (long long)k->pid);
		} else if (state == 't') {
			snprintf(reason, cap,
				 "pid %lld (%s) is stopped by a debugger and cannot reach its safe "
				 "point; detach the debugger and checkpoint again",
				 (long long)k->pid, k->cmd);
			return 1;
		}
	}
	return 0;
}

/* Images of processes that exited while their writer ran: present and
 * complete (renamed into place), or failed (the writer removed its
 * temporary file). */
static void check_orphans(struct coord *c)
{
	char partial[64];
	gens_name(partial, sizeof(partial), c->ck.gen, 1);
	int dfd = openat(c->o->imagesfd, partial, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return;
	for (int i = 0; i < c->ck.norphans;) {
		char img[64], tmp[80];
		snprintf(img, sizeof(img), "%lld.img", (long long)c->ck.orphans[i]);
		snprintf(tmp, sizeof(tmp), "%s.tmp", img);
		struct stat st;
		if (fstatat(dfd, img, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
			c->ck.bytes += (uint64_t)st.st_size;
			c->ck.done_checked[c->ck.ndone] = 0;
			c->ck.done[c->ck.ndone++] = c->ck.orphans[i];
			c->ck.orphans[i] = c->ck.orphans[--c->ck.norphans];
			if (--c->ck.npending == 0) {
				close(dfd);
				commit(c);
				return;
			}
			continue;
		}
		if (fstatat(dfd, tmp, &st, AT_SYMLINK_NOFOLLOW) != 0) {
			char reason[200];
			snprintf(reason, sizeof(reason),
				 "pid %lld exited during the checkpoint and its image could not be "
				 "written",
				 (long long)c->ck.orphans[i]);
			close(dfd);
			abandon(c, reason);
			return;
		}
		i++;
	}
	close(dfd);
	int64_t soon = ckpt_mono_ms() + COORD_MEMBER_POLL_MS;
	if (soon < c->ck.deadline)
		c->ck.deadline = soon;
}

void ckpt_on_timeout(struct coord *c)
{
	if (ckpt_mono_ms() < c->ck.t0_mono + COORD_CHECKPOINT_TIMEOUT_MS) {
		char why[700];
		if (stopped_agent(c, why, sizeof(why))) {
			abandon(c, why);
			return;
		}
		c->ck.deadline = ckpt_mono_ms() + COORD_STOPPED_PROBE_MS;
		advance(c);
		if (c->ck.active && c->ck.stage == STAGE_WRITE)
			check_orphans(c);
		return;
	}
	char reason[512];
	size_t n = 0;
	reason[0] = '\0';
	for (size_t i = 0; i < c->nconns && n < sizeof(reason) - 64; i++) {
		struct conn *k = c->conns[i];
		if (k->fd >= 0 && k->in_ckpt &&
		    (k->pending || k->phase == CK_SUSPENDING || k->phase == CK_CAPTURING))
			n += (size_t)snprintf(reason + n, sizeof(reason) - n, "%spid %lld (%s)",
					      n ? ", " : "", (long long)k->pid, k->cmd);
	}
	snprintf(reason + n, sizeof(reason) - n, " did not answer within %d s",
		 COORD_CHECKPOINT_TIMEOUT_MS / 1000);
	abandon(c, reason);
}

void ckpt_on_program_end(struct coord *c)
{
	if (c->ck.active && !c->stopping)
		abandon(c, "the program ended during the checkpoint");
	fail_waiters(c, 0, "the program has ended");
}

void ckpt_request_stop(struct coord *c, const char *why)
{
	if (!program_alive(c)) {
		ckpt_log(c->o->exec_log, "%s: the program has ended already, nothing to stop", why);
		return;
	}
	if (c->stop_req == 2) {
		ckpt_log(c->o->exec_log, "%s: passing SIGTERM on to the program again (pid %lld)",
			 why, (long long)c->main_pid);
		if (c->cmd_fd >= 0)
			write_all(c->cmd_fd, "killall 15\n", 11);
		return;
	}
	if (c->stop_req == 1) {
		/* Asked twice while the program never connected: do not wait
		 * for an agent that may never come. */
		if (!c->ck.active && !coord_root_agent(c))
			stop_without_checkpoint(c, "asked again before the program connected");
		else
			ckpt_log(c->o->exec_log, "%s: already checkpointing to stop", why);
		return;
	}
	c->stop_req = 1;
	snprintf(c->stop_why, sizeof(c->stop_why), "%s", why);
	ckpt_log(c->o->exec_log, "%s: checkpoint and stop the program%s", why,
		 c->ck.active && !c->ck.stop ? " after the checkpoint that runs now" : "");
	if (!c->ck.active)
		ckpt_start(c, c->stop_why);
}

void ckpt_on_signal(struct coord *c, const char *why)
{
	if (!program_alive(c) || c->stop_req) {
		ckpt_log(c->o->exec_log, "%s: ignored, the program is %s", why,
			 program_alive(c) ? "being stopped" : "ending");
		return;
	}
	if (c->ck.active) {
		c->ckpt_again = 1;
		ckpt_log(c->o->exec_log, "%s: checkpoint again when generation %llu is done", why,
			 (unsigned long long)c->ck.gen);
		return;
	}
	ckpt_log(c->o->exec_log, "%s: checkpoint now", why);
	ckpt_start(c, why);
}

void ckpt_on_agent_ready(struct coord *c)
{
	if (c->agent_wait_until && !c->ck.active && program_alive(c) && coord_root_agent(c)) {
		ckpt_start(c, "requested");
		return;
	}
	if (c->stop_req == 1 && !c->ck.active && program_alive(c) && coord_root_agent(c))
		ckpt_start(c, c->stop_why);
}
