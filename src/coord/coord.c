#include "coord/coord.h"

#include "coord/coord_int.h"
#include "coord/ctlsock.h"
#include "coord/err.h"
#include "coord/fsutil.h"
#include "coord/gens.h"
#include "coord/kvfile.h"
#include "coord/verify.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- connections ---- */

static void conn_close(struct coord *c, struct conn *k)
{
	if (k->fd < 0)
		return;
	/* closed first: what the checkpoint does about it may send to every
	 * connection still open, and must not come back to this one */
	close(k->fd);
	k->fd = -1; /* freed by sweep_conns, after the poll round */
	if (k->role == ROLE_AGENT) {
		ckpt_log(c->o->coord_log, "agent pid %lld (host pid %d) disconnected",
			 (long long)k->pid, (int)k->peer_pid);
		if (k->in_ckpt)
			ckpt_on_agent_gone(c, k);
	} else {
		ckpt_log(c->o->coord_log, "%s connection from host pid %d closed",
			 k->role == ROLE_CLIENT ? "client" : "unidentified", (int)k->peer_pid);
	}
}

static void conn_flush(struct coord *c, struct conn *k)
{
	while (k->fd >= 0 && k->outlen) {
		ssize_t w = send(k->fd, k->out, k->outlen, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			return;
		if (w < 0) {
			conn_close(c, k);
			return;
		}
		memmove(k->out, k->out + w, k->outlen - (size_t)w);
		k->outlen -= (size_t)w;
	}
	if (k->fd >= 0 && k->closing && !k->outlen)
		conn_close(c, k);
}

void conn_send(struct coord *c, struct conn *k, const struct ckpt_line *l)
{
	if (k->fd < 0)
		return;
	if (k->outlen + l->len > CONN_OUT_MAX) {
		ckpt_log(c->o->coord_log, "dropping host pid %d: it does not read its replies",
			 (int)k->peer_pid);
		snprintf(k->why_closed, sizeof(k->why_closed),
			 "did not read what the coordinator sent, so the coordinator dropped it");
		conn_close(c, k);
		return;
	}
	if (!k->out && !(k->out = malloc(CONN_OUT_MAX))) {
		conn_close(c, k);
		return;
	}
	memcpy(k->out + k->outlen, l->buf, l->len);
	k->outlen += l->len;
	conn_flush(c, k);
}

void conn_reply_err(struct coord *c, struct conn *k, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct ckpt_line l;
	ckpt_line_begin(&l, "ERR");
	ckpt_line_str(&l, "msg", msg);
	if (ckpt_line_end(&l) == 0)
		conn_send(c, k, &l);
}

static void sweep_conns(struct coord *c)
{
	size_t j = 0;
	for (size_t i = 0; i < c->nconns; i++) {
		if (c->conns[i]->fd >= 0) {
			c->conns[j++] = c->conns[i];
		} else {
			free(c->conns[i]->out);
			free(c->conns[i]);
		}
	}
	c->nconns = j;
}

/* The process a restart starts from: the first program, or once it has
 * ended while others run on, the one with the lowest pid. */
struct conn *coord_root_agent(struct coord *c)
{
	struct conn *lowest = NULL;
	for (size_t i = 0; i < c->nconns; i++) {
		struct conn *k = c->conns[i];
		if (k->fd < 0 || k->role != ROLE_AGENT)
			continue;
		if (k->pid == c->main_pid)
			return k;
		int has_parent = 0;
		for (size_t j = 0; j < c->nconns && !has_parent; j++)
			has_parent = c->conns[j]->fd >= 0 && c->conns[j]->role == ROLE_AGENT &&
				     c->conns[j]->pid == k->ppid;
		if (!has_parent && (!lowest || k->pid < lowest->pid))
			lowest = k;
	}
	return c->main_gone ? lowest : NULL;
}

static void accept_conns(struct coord *c)
{
	for (;;) {
		pid_t pid;
		uid_t uid;
		int fd = ctl_accept(c->o->listen_fd, &pid, &uid);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				ckpt_log(c->o->coord_log, "%s", ckpt_error());
			return;
		}
		if (uid != geteuid()) {
			ckpt_log(c->o->coord_log,
				 "refused a connection from uid %u (host pid %d): only the owner "
				 "may connect",
				 (unsigned)uid, (int)pid);
			close(fd);
			continue;
		}
		struct conn *k = calloc(1, sizeof(*k));
		if (!k || (c->nconns == c->capconns &&
			   !(c->conns = reallocarray(c->conns, c->capconns = c->capconns * 2 + 8,
						     sizeof(*c->conns))))) {
			ckpt_log(c->o->coord_log, "out of memory: dropping a connection");
			free(k);
			close(fd);
			return;
		}
		k->fd = fd;
		k->role = ROLE_NEW;
		k->peer_pid = pid;
		ckpt_linebuf_init(&k->in);
		c->conns[c->nconns++] = k;
		ckpt_log(c->o->coord_log, "connection from host pid %d", (int)pid);
	}
}

/* ---- messages ---- */

static int token_ok(const char *given, const char *want)
{
	/* Constant time in the token's content, for the day this runs over
	 * TCP. */
	size_t n = strlen(want), m = strlen(given);
	unsigned char diff = (unsigned char)(n != m);
	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)(want[i] ^ (i < m ? given[i] : 0));
	return diff == 0;
}

static void on_hello(struct coord *c, struct conn *k, const struct ckpt_msg *m)
{
	uint64_t proto;
	const char *role = ckpt_msg_get(m, "role");
	const char *token = ckpt_msg_get(m, "token");
	if (ckpt_msg_get_u64(m, "proto", &proto) < 0 || proto != CKPT_PROTO_VERSION) {
		ckpt_log(c->o->coord_log, "host pid %d speaks protocol %s, not %d: closing",
			 (int)k->peer_pid,
			 ckpt_msg_get(m, "proto") ? ckpt_msg_get(m, "proto") : "?",
			 CKPT_PROTO_VERSION);
		conn_reply_err(c, k,
			       "protocol version %s is not supported (this coordinator speaks %d)",
			       ckpt_msg_get(m, "proto") ? ckpt_msg_get(m, "proto") : "(none)",
			       CKPT_PROTO_VERSION);
		k->closing = 1;
		return;
	}
	if (!token || !token_ok(token, c->o->token)) {
		ckpt_log(c->o->coord_log, "host pid %d gave a wrong token: closing",
			 (int)k->peer_pid);
		conn_reply_err(c, k, "wrong token");
		k->closing = 1;
		return;
	}
	if (role && strcmp(role, "client") == 0) {
		k->role = ROLE_CLIENT;
		ckpt_log(c->o->coord_log, "host pid %d: HELLO role=client", (int)k->peer_pid);
		return;
	}
	int64_t pid = 0, ppid = 0;
	uint64_t restored = 0;
	if (!role || strcmp(role, "agent") != 0 || ckpt_msg_get_i64(m, "pid", &pid) < 0 ||
	    pid <= 0) {
		ckpt_log(c->o->coord_log,
			 "host pid %d: bad HELLO (role must be agent or client; an agent "
			 "must give pid=): closing",
			 (int)k->peer_pid);
		conn_reply_err(c, k, "bad HELLO: role=agent needs pid=, or use role=client");
		k->closing = 1;
		return;
	}
	ckpt_msg_get_i64(m, "ppid", &ppid);
	ckpt_msg_get_u64(m, "restored", &restored);
	/* One connection per process: a new HELLO for a pid replaces the old
	 * connection (after exec the old one may not have closed yet). */
	for (size_t i = 0; i < c->nconns; i++) {
		struct conn *o = c->conns[i];
		if (o != k && o->fd >= 0 && o->role == ROLE_AGENT && o->pid == pid) {
			ckpt_log(c->o->coord_log,
				 "pid %lld connected again: dropping its old connection",
				 (long long)pid);
			conn_close(c, o);
		}
	}
	k->role = ROLE_AGENT;
	k->pid = pid;
	k->ppid = ppid;
	k->restored = restored;
	const char *cmd = ckpt_msg_get(m, "cmd");
	snprintf(k->cmd, sizeof(k->cmd), "%s", cmd ? cmd : "?");
	c->agent_warned = 0;
	ckpt_log(c->o->coord_log,
		 "host pid %d: HELLO role=agent pid=%lld ppid=%lld restored=%llu cmd=%s",
		 (int)k->peer_pid, (long long)pid, (long long)ppid, (unsigned long long)restored,
		 k->cmd);
	/* Compared with main_pid at the end: this HELLO may be read before
	 * init's report of the pid. */
	if (restored) {
		/* the restart is done for it once its GPU state is back */
		gpuckpt_on_restored(c);
		restore_progress_end(c);
		tee_release(c, 1);
		if (c->nrestored < COORD_MAX_PROCS)
			c->restored_pids[c->nrestored++] = pid;
		ckpt_log(c->o->exec_log,
			 "restored from generation %llu: pid %lld (%s) is running again, %.2f s "
			 "after the restorer started",
			 (unsigned long long)restored, (long long)pid, k->cmd,
			 (double)(ckpt_mono_ms() - c->progress_t0) / 1000.0);
		/* not before: the restorer reads the images too */
		if (c->o->lazy && !c->verify_t0)
			lazy_verify_begin(c);
	}
	ckpt_on_agent_ready(c);
}

static void on_status(struct coord *c, struct conn *k)
{
	const char *state = "running";
	if (!c->main_pid)
		state = "starting";
	else if (c->stopping)
		state = "stopping";
	else if (c->main_exited || c->init_reaped)
		state = "exiting";
	else if (c->ck.active)
		state = "checkpointing";
	int agents = 0;
	for (size_t i = 0; i < c->nconns; i++)
		agents += c->conns[i]->fd >= 0 && c->conns[i]->role == ROLE_AGENT;
	int64_t now = ckpt_mono_ms(), real = ckpt_now_ms();
	struct ckpt_line l;
	ckpt_line_begin(&l, "OK");
	ckpt_line_str(&l, "state", state);
	ckpt_line_i64(&l, "pid", c->main_pid);
	ckpt_line_u64(&l, "gen", c->last_gen);
	ckpt_line_i64(&l, "last_time", c->last_time_ms);
	ckpt_line_u64(&l, "last_bytes", c->last_bytes);
	ckpt_line_i64(&l, "last_ms", c->last_total_ms);
	ckpt_line_i64(&l, "next_due", c->next_due >= 0 ? real + (c->next_due - now) : 0);
	ckpt_line_i64(&l, "interval_ms", c->o->interval_ms);
	ckpt_line_i64(&l, "supervisor_pid", getpid());
	ckpt_line_i64(&l, "agents", agents);
	ckpt_line_u64(&l, "restored_from", c->o->restored_gen);
	if (c->o->lazy)
		ckpt_line_str(&l, "lazy",
			      c->lazy_damaged ? "damaged"
			      : c->verify_pid ? "verifying"
			      : c->verify_t0  ? "verified"
					      : "restoring");
	if (c->ck.active)
		ckpt_line_u64(&l, "checkpointing_gen", c->ck.gen);
	if (c->last_gpu.n) {
		ckpt_line_i64(&l, "gpu_processes", c->last_gpu.n);
		ckpt_line_i64(&l, "gpu_lock_ms", (int64_t)(c->last_gpu.lock_ms + 0.5));
		ckpt_line_i64(&l, "gpu_checkpoint_ms", (int64_t)(c->last_gpu.checkpoint_ms + 0.5));
		ckpt_line_i64(&l, "gpu_restore_ms", (int64_t)(c->last_gpu.restore_ms + 0.5));
		ckpt_line_i64(&l, "gpu_unlock_ms", (int64_t)(c->last_gpu.unlock_ms + 0.5));
	}
	if (ckpt_line_end(&l) == 0)
		conn_send(c, k, &l);
}

static void on_message(struct coord *c, struct conn *k, const struct ckpt_msg *m)
{
	if (k->role == ROLE_NEW) {
		if (!ckpt_msg_is(m, "HELLO")) {
			ckpt_log(c->o->coord_log, "host pid %d sent %s before HELLO: closing",
				 (int)k->peer_pid, m->verb);
			conn_reply_err(c, k, "the first message must be HELLO");
			k->closing = 1;
			return;
		}
		on_hello(c, k, m);
		return;
	}
	if (k->role == ROLE_AGENT) {
		ckpt_log(c->o->coord_log, "pid %lld: %s", (long long)k->pid, m->verb);
		if (ckpt_msg_is(m, "SUSPENDED"))
			ckpt_on_suspended(c, k, m);
		else if (ckpt_msg_is(m, "CAPTURED"))
			ckpt_on_captured(c, k, m);
		else if (ckpt_msg_is(m, "DONE"))
			ckpt_on_done(c, k, m);
		else if (ckpt_msg_is(m, "FAIL"))
			ckpt_on_fail(c, k, m);
		else
			ckpt_log(c->o->coord_log, "pid %lld: ignoring unknown message %s",
				 (long long)k->pid, m->verb);
		return;
	}
	ckpt_log(c->o->coord_log, "client host pid %d: %s", (int)k->peer_pid, m->verb);
	if (ckpt_msg_is(m, "STATUS")) {
		on_status(c, k);
	} else if (ckpt_msg_is(m, "CHECKPOINT")) {
		if (c->main_exited || c->init_reaped || c->stopping) {
			conn_reply_err(c, k, "the program has ended");
			return;
		}
		k->waiting = 1;
		k->wait_gen = 0;
		ckpt_start(c, "requested");
	} else {
		conn_reply_err(c, k, "unknown request %s", m->verb);
	}
}

static void read_conn(struct coord *c, struct conn *k)
{
	for (;;) {
		size_t room;
		char *dst = ckpt_linebuf_space(&k->in, &room);
		ssize_t got = room ? recv(k->fd, dst, room, MSG_DONTWAIT) : 0;
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 && errno == EAGAIN)
			return;
		if (got <= 0 && room) {
			conn_close(c, k);
			return;
		}
		ckpt_linebuf_added(&k->in, (size_t)got);
		char *line;
		size_t len;
		int r;
		while (k->fd >= 0 && !k->closing &&
		       (r = ckpt_linebuf_next(&k->in, &line, &len)) != 0) {
			struct ckpt_msg m;
			char err[200];
			if (r < 0 || ckpt_msg_parse(&m, line, len, err, sizeof(err)) < 0) {
				if (r < 0)
					snprintf(err, sizeof(err), "line longer than %d bytes",
						 CKPT_LINE_MAX);
				ckpt_log(c->o->coord_log,
					 "host pid %d sent a malformed line (%s): closing",
					 (int)k->peer_pid, err);
				snprintf(
				    k->why_closed, sizeof(k->why_closed),
				    "sent a malformed line (%s), so the coordinator dropped it",
				    err);
				conn_reply_err(c, k, "malformed line: %s", err);
				k->closing = 1;
				conn_flush(c, k);
				return;
			}
			on_message(c, k, &m);
		}
		if (k->fd < 0 || k->closing)
			return;
	}
}

/* ---- init and signals ---- */

static const char *signame(int sig)
{
	const char *d = sigabbrev_np(sig);
	return d ? d : "?";
}

static void describe_status(char *buf, size_t len, int status)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "was killed by signal %d (SIG%s)%s", WTERMSIG(status),
			 signame(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(buf, len, "ended with wait status 0x%x", (unsigned)status);
}

static void program_ended(struct coord *c)
{
	c->next_due = -1;
	ckpt_on_program_end(c);
}

static void read_report(struct coord *c)
{
	size_t room;
	char *dst = ckpt_linebuf_space(&c->report, &room);
	ssize_t got = read(c->report_fd, dst, room);
	if (got < 0 && errno == EINTR)
		return;
	if (got <= 0) {
		close(c->report_fd);
		c->report_fd = -1;
		return;
	}
	ckpt_linebuf_added(&c->report, (size_t)got);
	char *line;
	size_t len;
	while (ckpt_linebuf_next(&c->report, &line, &len) == 1) {
		int v;
		if (sscanf(line, "pid %d", &v) == 1) {
			c->main_pid = v;
			ckpt_log(c->o->coord_log, "init (host pid %d) started pid %d",
				 (int)c->o->launch.init_pid, v);
			if (c->o->launch.no_namespaces)
				ckpt_log(c->o->exec_log,
					 "%s%s running as pid %d WITHOUT its own namespaces (user "
					 "namespaces are disabled here, or CKPT_NO_NAMESPACES=1): "
					 "after a "
					 "restart its pid and thread ids change",
					 c->o->restored_gen ? "restorer" : "start: ",
					 c->o->restored_gen ? "" : c->o->command, v);
			else if (c->o->restored_gen)
				ckpt_log(c->o->exec_log,
					 "restorer started as pid %d in a new pid namespace (init: "
					 "host pid %d)",
					 v, (int)c->o->launch.init_pid);
			else
				ckpt_log(c->o->exec_log,
					 "start: %s running as pid %d in a new pid namespace "
					 "(init: host pid %d, "
					 "supervisor: host pid %d)",
					 c->o->command, v, (int)c->o->launch.init_pid,
					 (int)getpid());
			ckpt_on_agent_ready(c); /* its HELLO may have come first */
		} else if (sscanf(line, "main %d", &v) == 1) {
			c->main_gone = 1;
			if (c->first_status < 0)
				c->first_status = v;
			if (WIFSIGNALED(v))
				ckpt_log(
				    c->o->exec_log,
				    "the first program (pid %lld) was killed by signal %d; its "
				    "other processes run on, and ckpt ends when they have all "
				    "ended",
				    (long long)c->main_pid, WTERMSIG(v));
			else
				ckpt_log(c->o->exec_log,
					 "the first program (pid %lld) exited with status %d; its "
					 "other processes run on, and ckpt ends when they have all "
					 "ended",
					 (long long)c->main_pid, WEXITSTATUS(v));
		} else if (sscanf(line, "exit %d", &v) == 1) {
			c->main_exited = 1;
			c->main_status = v;
			program_ended(c);
		} else if (strncmp(line, "note ", 5) == 0) {
			ckpt_log(c->o->exec_log, "%s", line + 5);
		} else if (strncmp(line, "err ", 4) == 0) {
			if (!c->main_pid) {
				c->launch_failed = 1;
				ckpt_fail("%s", line + 4);
			}
			ckpt_log(c->o->exec_log, "%s", line + 4);
		}
	}
}

static void on_signals(struct coord *c)
{
	struct signalfd_siginfo si;
	while (read(c->o->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		int sig = (int)si.ssi_signo;
		if (sig == SIGCHLD) {
			int status;
			pid_t p;
			while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
				if (p == c->o->launch.init_pid) {
					c->init_reaped = 1;
					c->init_status = status;
					program_ended(c);
				}
			}
			continue;
		}
		char why[96];
		snprintf(why, sizeof(why), "received SIG%s from %s%u", signame(sig),
			 si.ssi_code == SI_USER ? "host pid " : "the kernel, code ",
			 si.ssi_code == SI_USER ? si.ssi_pid : (unsigned)si.ssi_code);
		/* SIGTERM is how batch systems and users end a job: checkpoint
		 * and stop, so that the job can be resumed (docs/slurm.md).
		 * The checkpoint signal (SIGUSR1) checkpoints and goes on.
		 * Terminal signals (Ctrl-C, hangup) go to the whole process
		 * group, so the program has them already. */
		if (sig == SIGTERM) {
			ckpt_request_stop(c, why);
		} else if (sig == c->o->checkpoint_signal) {
			ckpt_on_signal(c, why);
		} else {
			ckpt_log(
			    c->o->exec_log, "received SIG%s (from %s): the supervisor ignores it",
			    signame(sig), si.ssi_code == SI_USER ? "a process" : "the terminal");
		}
	}
}

/* ---- the loop ---- */

static int compute_timeout(struct coord *c)
{
	int64_t now = ckpt_mono_ms(), when = -1;
	if (c->ck.active)
		when = c->ck.deadline;
	else if (c->next_due >= 0)
		when = c->next_due;
	if (c->stop_at > 0 && (when < 0 || c->stop_at < when))
		when = c->stop_at;
	if (c->agent_wait_until > 0 && (when < 0 || c->agent_wait_until < when))
		when = c->agent_wait_until;
	if (c->progress_next >= 0 && (when < 0 || c->progress_next < when))
		when = c->progress_next;
	if (when < 0)
		return -1;
	return when <= now ? 0 : (int)(when - now > 3600000 ? 3600000 : when - now);
}

static void run_timers(struct coord *c)
{
	int64_t now = ckpt_mono_ms();
	restore_progress_tick(c);
	if (c->ck.active && now >= c->ck.deadline)
		ckpt_on_timeout(c);
	if (!c->ck.active && c->next_due >= 0 && now >= c->next_due)
		ckpt_start(c, "interval");
	if (!c->ck.active && c->agent_wait_until > 0 && now >= c->agent_wait_until)
		ckpt_start(c, "requested");
	if (c->stop_at > 0 && now >= c->stop_at) {
		c->stop_at = 0;
		ckpt_request_stop(c, "--before-limit: the job's time limit is near");
	}
}

/* RUNDIR/finished: the program exited by itself, so ckpt run does not
 * resume it again from an older checkpoint (docs/slurm.md). */
static void record_finished(struct coord *c, int code)
{
	char ts[32];
	ckpt_format_time(ts, sizeof(ts), ckpt_now_ms());
	struct kvfile kv;
	kv_init(&kv);
	int rc = kv_addf(&kv, "status", "%d", code);
	rc |= kv_add(&kv, "time", ts);
	if (rc || kv_write(&kv, c->o->dirfd, "finished",
			   "# the program exited by itself; ckpt run does not resume it again\n",
			   0600) < 0)
		ckpt_log(c->o->exec_log, "cannot record the end of the run in finished: %s",
			 rc ? "out of memory" : ckpt_error());
	kv_free(&kv);
}

/* A restart whose restorer failed before the program ran, from a
 * generation whose pages were not verified beforehand: were they damaged?
 * Then the generation is marked so (the restart command goes on from an
 * older one) and 1 is returned. The restorer's own failures (memory,
 * pids) leave nothing behind. */
static int damaged_pages_found(struct coord *c, const char *what)
{
	if (!c->o->pages_unverified)
		return 0;
	struct gen_verdict v;
	if (verify_restored(c->o, &v) == 0)
		return 0;
	int marked = gens_mark_damaged(c->o->imagesfd, c->o->restored_gen, "a restart", v.first);
	ckpt_log(c->o->exec_log,
		 "restart from generation %llu stopped before the program ran (pid %lld %s): its "
		 "pages are damaged: %s; %s",
		 (unsigned long long)c->o->restored_gen, (long long)c->main_pid, what, v.first,
		 marked == 0 ? "the generation is marked damaged and an older one is tried"
			     : ckpt_error());
	return marked == 0;
}

/* A restart worked once the program's main process connected restored. */
static int main_restored(const struct coord *c)
{
	for (int i = 0; i < c->nrestored; i++)
		if (c->restored_pids[i] == c->main_pid)
			return 1;
	return 0;
}

static int exit_code(struct coord *c)
{
	char what[128];
	if (c->lazy_damaged) {
		ckpt_log(
		    c->o->exec_log,
		    "exit: the program was killed (its lazily restored generation is damaged); "
		    "ckpt exits with status 1");
		return 1;
	}
	int asked = c->stop_req != 0; /* SIGTERM or --before-limit */
	if (c->stop_failed) {
		int code = asked ? CKPT_EXIT_STOP_FAILED : 1;
		fprintf(stderr,
			"ckpt: the program was stopped but its checkpoint failed (see "
			"%s/execution.log)\n",
			c->o->rundir);
		ckpt_log(c->o->exec_log,
			 "exit: stopped without a new checkpoint; ckpt exits with status %d", code);
		return code;
	}
	if (c->stopping) {
		int code = asked ? CKPT_EXIT_STOPPED : 0;
		ckpt_log(c->o->exec_log,
			 "exit: stopped after checkpoint generation %llu; ckpt exits with "
			 "status %d%s",
			 (unsigned long long)c->stopped_gen, code,
			 asked ? " (stopped after a checkpoint: resume me)" : "");
		return code;
	}
	/* the first program's status, even when it ended long before the
	 * last of the computation's processes (or before the checkpoint a
	 * restart came from) */
	int status = c->main_exited ? (c->first_status >= 0 ? c->first_status : c->main_status)
				    : c->init_status;
	describe_status(what, sizeof(what), status);
	int code = WIFEXITED(status)	 ? WEXITSTATUS(status)
		   : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
					 : 1;
	if (asked && !(c->main_exited && WIFEXITED(status))) {
		ckpt_log(c->o->exec_log,
			 "exit: a stop was asked for (%s) but no checkpoint was completed; the "
			 "program %s; "
			 "ckpt exits with status %d (resume from the previous checkpoint, if any, "
			 "with: %s)",
			 c->stop_why, what, CKPT_EXIT_STOP_FAILED, c->o->restart_hint);
		fprintf(stderr, "ckpt: stopped without a new checkpoint (see %s/execution.log)\n",
			c->o->rundir);
		return CKPT_EXIT_STOP_FAILED;
	}
	int restore_failed = c->o->restored_gen && !main_restored(c);
	if (c->main_exited && WIFEXITED(status) && !restore_failed)
		record_finished(c, code);
	if (c->main_exited)
		ckpt_log(c->o->exec_log,
			 "exit: the program (pid %lld) %s; ckpt exits with status %d",
			 (long long)c->main_pid, what, code);
	else
		ckpt_log(
		    c->o->exec_log,
		    "exit: the namespace's init (host pid %d) %s, taking the program with it; ckpt "
		    "exits with status %d",
		    (int)c->o->launch.init_pid, what, code);
	int damaged = restore_failed && damaged_pages_found(c, what);
	tee_release(c, !damaged);
	if (damaged)
		return code;
	if (restore_failed) {
		/* The restorer prints its own one-line reason and exits with 2;
		 * say here what that means for the run. */
		ckpt_log(
		    c->o->exec_log,
		    "restart from generation %llu failed: pid %lld %s before the restored program "
		    "connected (the restorer's message, if any, is in application.log); the run "
		    "directory is unchanged",
		    (unsigned long long)c->o->restored_gen, (long long)c->main_pid, what);
		if (WIFSIGNALED(status))
			fprintf(stderr,
				"ckpt: restart from generation %llu failed: the restorer %s\n",
				(unsigned long long)c->o->restored_gen, what);
	}
	return code;
}

int coord_run(const struct coord_opts *o)
{
	struct coord cs, *c = &cs;
	memset(c, 0, sizeof(*c));
	c->o = o;
	c->first_status = o->first_status;
	c->next_gen = o->next_gen;
	c->last_gen = o->last_gen;
	c->last_time_ms = o->last_time_ms;
	c->last_bytes = o->last_bytes;
	c->last_total_ms = o->last_total_ms;
	c->report_fd = o->launch.report_fd;
	c->cmd_fd = o->launch.cmd_fd;
	c->out_fd = o->out_fd;
	c->err_fd = o->err_fd;
	c->term_out = c->term_err = 1;
	c->stop_at = o->stop_at_mono;
	c->verify_fd = -1;
	c->hold_err = o->pages_unverified;
	restore_progress_begin(c);
	ckpt_linebuf_init(&c->report);
	/* The interval counts from the start, then from each checkpoint's end. */
	c->next_due = o->interval_ms > 0 ? ckpt_mono_ms() + o->interval_ms : -1;

	struct pollfd *pfd = NULL;
	size_t pcap = 0;
	for (;;) {
		int program_gone = c->init_reaped && c->report_fd < 0;
		if (program_gone && c->out_fd < 0 && c->err_fd < 0)
			break;
		size_t need = 6 + c->nconns;
		if (need > pcap) {
			struct pollfd *n = reallocarray(pfd, need, sizeof(*pfd));
			if (!n) {
				ckpt_log(o->exec_log, "out of memory in the supervisor");
				break;
			}
			pfd = n;
			pcap = need;
		}
		size_t np = 0;
		pfd[np++] = (struct pollfd){.fd = o->sig_fd, .events = POLLIN};
		pfd[np++] = (struct pollfd){.fd = c->report_fd, .events = POLLIN};
		pfd[np++] = (struct pollfd){.fd = c->out_fd, .events = POLLIN};
		pfd[np++] = (struct pollfd){.fd = c->err_fd, .events = POLLIN};
		pfd[np++] = (struct pollfd){.fd = o->listen_fd, .events = POLLIN};
		pfd[np++] = (struct pollfd){.fd = c->verify_fd, .events = POLLIN};
		for (size_t i = 0; i < c->nconns; i++)
			pfd[np++] = (struct pollfd){
			    .fd = c->conns[i]->fd,
			    .events = (short)(POLLIN | (c->conns[i]->outlen ? POLLOUT : 0))};
		int n = poll(pfd, (nfds_t)np, compute_timeout(c));
		if (n < 0 && errno != EINTR) {
			ckpt_log(o->exec_log, "poll failed in the supervisor: %s", strerror(errno));
			break;
		}
		if (n > 0) {
			if (pfd[0].revents)
				on_signals(c);
			if (c->report_fd >= 0 && pfd[1].revents)
				read_report(c);
			if (c->out_fd >= 0 && pfd[2].revents)
				tee_output(c, &c->out_fd, 1, &c->term_out);
			if (c->err_fd >= 0 && pfd[3].revents)
				tee_output(c, &c->err_fd, 2, &c->term_err);
			if (pfd[4].revents)
				accept_conns(c);
			if (c->verify_fd >= 0 && pfd[5].revents)
				lazy_verify_end(c);
			/* Connections accepted just now are not in pfd yet. */
			for (size_t i = 6; i < np; i++) {
				struct conn *k = c->conns[i - 6];
				if (k->fd < 0 || !pfd[i].revents)
					continue;
				if (pfd[i].revents & POLLOUT)
					conn_flush(c, k);
				if (k->fd >= 0 && (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
					read_conn(c, k);
			}
		}
		run_timers(c);
		sweep_conns(c);
		if (c->launch_failed && c->init_reaped)
			break;
	}
	free(pfd);
	restore_progress_end(c);
	/* Last replies (errors for waiting clients) are best effort. */
	for (size_t i = 0; i < c->nconns; i++) {
		conn_flush(c, c->conns[i]);
		if (c->conns[i]->fd >= 0)
			close(c->conns[i]->fd);
		free(c->conns[i]->out);
		free(c->conns[i]);
	}
	free(c->conns);
	appended_free(c);
	free(c->gpu_job);
	if (c->verify_pid > 0) {
		kill(c->verify_pid, SIGKILL);
		waitpid(c->verify_pid, NULL, 0);
	}
	if (c->verify_fd >= 0)
		close(c->verify_fd);
	if (c->out_fd >= 0)
		close(c->out_fd);
	if (c->err_fd >= 0)
		close(c->err_fd);
	if (c->report_fd >= 0)
		close(c->report_fd);
	if (c->cmd_fd >= 0)
		close(c->cmd_fd);
	if (c->launch_failed)
		return -1;
	int code = exit_code(c);
	tee_release(c, 1); /* held stderr, whatever the end */
	return code;
}
