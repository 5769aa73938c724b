/* The agent's start-up and its checkpoint thread: the connection to the
 * coordinator and the checkpoint request cycle. See docs/protocol.md. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/ctlpath.h"
#include "common/rawsys.h"

struct agent_state agent = {.ctl_fd = -1, .image_fd = -1};

static char ctl_path[4096];
static int connect_errno; /* why connect_now() failed */
static char token[128];

static void stdio_identities(void)
{
	for (int fd = 0; fd < 3; fd++) {
		struct stat st;
		if (fstat(fd, &st) == 0) {
			agent.stdio_dev[fd] = st.st_dev;
			agent.stdio_ino[fd] = st.st_ino;
		}
	}
}

static int send_line(const char *line)
{
	size_t len = strlen(line), off = 0;
	while (off < len) {
		ssize_t n = send(agent.ctl_fd, line + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		off += (size_t)n;
	}
	return 0;
}

/* Percent-encode a value for the line protocol. */
static void encode(char *out, size_t cap, const char *in)
{
	static const char ok[] = "._/:,+@-";
	size_t o = 0;
	for (; *in && o + 4 < cap; in++) {
		unsigned char c = (unsigned char)*in;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    (c && strchr(ok, c)))
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, cap - o, "%%%02X", c);
	}
	out[o] = 0;
}

static void decode(char *s)
{
	char *o = s;
	for (; *s; s++) {
		unsigned v;
		if (*s == '%' && s[1] && s[2] && sscanf(s + 1, "%2x", &v) == 1) {
			*o++ = (char)v;
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	*o = 0;
}

/* Value of key in a "VERB k=v k=v" line, decoded into out; -1 if absent. */
static int field(const char *line, const char *key, char *out, size_t cap)
{
	size_t klen = strlen(key);
	for (const char *p = strchr(line, ' '); p; p = strchr(p + 1, ' ')) {
		if (strncmp(p + 1, key, klen) == 0 && p[1 + klen] == '=') {
			const char *v = p + 2 + klen;
			size_t n = strcspn(v, " \n");
			if (n >= cap)
				return -1;
			memcpy(out, v, n);
			out[n] = 0;
			decode(out);
			return 0;
		}
	}
	return -1;
}

/* While the checkpoint thread connects, its descriptors are not yet
 * where at_fork_child can close them, and while it introduces itself or
 * tracks writes (the program running) it has /proc files open: a fork
 * waits for it, or the child would inherit them, and its image with them
 * (a restart then fails to open /proc/PID/cmdline of a process long
 * gone). */
static pthread_mutex_t connect_lock = PTHREAD_MUTEX_INITIALIZER;

static int say_hello(uint64_t restored_gen)
{
	char cmd[1024] = "", enc[3200], line[4096];
	pthread_mutex_lock(&connect_lock);
	read_file("/proc/self/cmdline", cmd, sizeof cmd);
	pthread_mutex_unlock(&connect_lock);
	for (size_t i = 0; i + 1 < sizeof cmd && (cmd[i] || cmd[i + 1]); i++)
		if (!cmd[i])
			cmd[i] = ' ';
	encode(enc, sizeof enc, cmd);
	snprintf(line, sizeof line,
		 "HELLO proto=1 role=agent token=%s pid=%d ppid=%d restored=%llu cmd=%s\n", token,
		 (int)getpid(), (int)getppid(), (unsigned long long)restored_gen, enc);
	return send_line(line);
}

/* Append what the coordinator sent to buf (kept NUL-terminated); returns
 * the bytes read, 0 at end of file or -1. */
static ssize_t ctl_read(char *buf, size_t cap, size_t *used)
{
	ssize_t n;
	do
		n = read(agent.ctl_fd, buf + *used, cap - 1 - *used);
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		*used += (size_t)n;
		buf[*used] = 0;
	}
	return n;
}

/* Where this process is in the checkpoint protocol (docs/protocol.md):
 * SUSPEND stops its threads, CAPTURE takes its image while every process
 * of the computation is stopped, CONTINUE lets it run on (and reports when
 * the image is durable), RESUME abandons the checkpoint. */
enum phase { PHASE_IDLE, PHASE_SUSPENDED, PHASE_CAPTURED };
static enum phase phase;

static void send_fail(const char *why)
{
	char enc[3200], out[4096];
	encode(enc, sizeof enc, why);
	snprintf(out, sizeof out, "FAIL gen=%llu pid=%d reason=%s\n",
		 (unsigned long long)agent.generation, (int)agent.pid, enc);
	send_line(out);
}

/* --stop-after-checkpoint: the program must not run past the state just
 * saved. The coordinator kills it, or sends RESUME if the generation could
 * not be completed; if the coordinator goes away the program continues. */
static void wait_for_resume(void)
{
	char buf[512];
	size_t used = 0;
	while (ctl_read(buf, sizeof buf, &used) > 0) {
		if (strstr(buf, "RESUME"))
			break;
		if (used == sizeof buf - 1)
			used = 0;
	}
	resume_all_threads();
}

static double ms_between(uint64_t a, uint64_t b)
{
	return b > a ? (double)(b - a) / 1e6 : 0.0;
}

/* The restorer wrote restore_info: this is a restarted process, which
 * reintroduces itself to its new coordinator and runs on. */
static void after_restore(void)
{
	uint64_t gen = agent.restore_info.generation;
	for (int fd = 0; fd < 3; fd++) {
		agent.stdio_dev[fd] = agent.restore_info.stdio_dev[fd];
		agent.stdio_ino[fd] = agent.restore_info.stdio_ino[fd];
	}
	agent.restore_info.magic = 0;
	track_forget_restored();
	stage_forget();
	/* a restart without pid namespaces gives new ids */
	agent.pid = (pid_t)syscall(SYS_getpid);
	agent.agent_tid = (pid_t)syscall(SYS_gettid);
	/* the restorer leaves this thread as the restart started it */
	sched_note_launch();
	phase = PHASE_IDLE;
	resume_all_threads();
	say_hello(gen);
}

static uint64_t gen_of(const char *line)
{
	char gen[32];
	return field(line, "gen", gen, sizeof gen) == 0 ? strtoull(gen, 0, 10) : 0;
}

static int main_thread_stopped(void)
{
	if (agent.agent_tid == agent.pid)
		return 1;
	for (int i = 0; i < agent.nslots; i++)
		if (agent.slots[i].tid == agent.pid)
			return atomic_load(&agent.slots[i].state) == SLOT_STOPPED;
	return 0;
}

/* SUSPENDED, with the hand-overs to other processes this process is
 * caught in half-way (fds.c): the coordinator lets the processes that can
 * finish them run on a moment, and sends RECHECK to the others. */
static void send_suspended(void)
{
	char enc[1000], out[1200];
	struct unsettled u;
	fds_unsettled(&u);
	int n =
	    snprintf(out, sizeof out,
		     "SUSPENDED gen=%llu pid=%d unaccepted=%d in_flight=%d in_transit=%d stuck=%d",
		     (unsigned long long)agent.generation, (int)agent.pid, u.unaccepted,
		     u.in_flight, u.in_transit, u.stuck);
	if (u.what[0]) {
		encode(enc, sizeof enc, u.what);
		n += snprintf(out + n, sizeof out - (size_t)n, " what=%s", enc);
	}
	snprintf(out + n, sizeof out - (size_t)n, "\n");
	send_line(out);
}

/* Still stopped, while other processes ran: has what it waited for
 * happened? */
static void on_recheck(const char *line)
{
	if (phase != PHASE_SUSPENDED || gen_of(line) != agent.generation) {
		send_fail("RECHECK out of order or malformed");
		return;
	}
	send_suspended();
}

/* Descriptors sent to this process wait at its sockets: its threads run
 * until it has taken them (a thread blocked in recvmsg does so at once),
 * at most ms milliseconds, and are stopped again, a thread that took some
 * held in recvmsg meanwhile so that it cannot start another hand-over
 * (recvwrap.c), then SUSPENDED says what is left. */
static void on_settle(const char *line)
{
	char v[32];
	if (phase != PHASE_SUSPENDED || gen_of(line) != agent.generation ||
	    field(line, "ms", v, sizeof v) != 0) {
		send_fail("SETTLE out of order or malformed");
		return;
	}
	uint64_t start = now_ns(), until = start + strtoull(v, 0, 10) * 1000000ull;
	settle_hold_receivers(1);
	resume_all_threads();
	/* the first millisecond without sleeping: the receiver is usually
	 * quick, and should not get far past it */
	for (uint64_t now = start; fds_still_in_flight() && now < until; now = now_ns()) {
		struct timespec ts = {0, 50000};
		if (now - start > 1000000ull)
			nanosleep(&ts, 0);
	}
	int stopped = suspend_all_threads();
	settle_hold_receivers(0); /* the held ones return when resumed */
	if (stopped != 0) {
		phase = PHASE_IDLE;
		send_fail(agent.errmsg);
		return;
	}
	send_suspended();
}

static void on_suspend(const char *line)
{
	if (phase != PHASE_IDLE) {
		send_fail("SUSPEND while a checkpoint is in progress");
		return;
	}
	agent.generation = gen_of(line);
	agent.result = 0;
	agent.errmsg[0] = 0;
	agent.warnings[0] = 0;
	/* incremental checkpoints: protect new memory before the stop (it
	 * costs time, not pause) */
	char opt[8];
	if (field(line, "track", opt, sizeof opt) == 0 && opt[0] == '1') {
		pthread_mutex_lock(&connect_lock);
		stage_populate_own_data();
		uint64_t expected = track_arm(stage_limit());
		pthread_mutex_unlock(&connect_lock);
		stage_reserve(expected);
	}
	agent.stop_ns = now_ns();
	struct timespec boot;
	clock_gettime(CLOCK_BOOTTIME, &boot);
	agent.stop_boot_ns = (uint64_t)boot.tv_sec * 1000000000ull + (uint64_t)boot.tv_nsec;
	if (suspend_all_threads() != 0) {
		send_fail(agent.errmsg);
		return;
	}
	agent.stopped_ns = now_ns();
	if (!main_thread_stopped()) {
		/* The main thread is gone: the process is exiting (exit_group
		 * takes this thread too in a moment, and the coordinator sees
		 * the process leave), or the program ended its main thread with
		 * pthread_exit, which a restart cannot rebuild. */
		for (int i = 0; i < 300; i++) {
			struct timespec ts = {0, 10000000};
			nanosleep(&ts, 0);
		}
		resume_all_threads();
		send_fail("the main thread of this process has exited (pthread_exit); such a "
			  "process cannot be checkpointed");
		return;
	}
	phase = PHASE_SUSPENDED;
	send_suspended();
}

/* The other processes of the computation, for finding descriptions this
 * process shares with them (peers=2,5,9). */
static void parse_peers(const char *line)
{
	static char list[4096];
	agent.npeers = 0;
	if (field(line, "peers", list, sizeof list) != 0)
		return;
	for (char *p = list; *p && agent.npeers < AGENT_MAX_PEERS;) {
		long v = strtol(p, &p, 10);
		if (v > 0 && v != agent.pid)
			agent.peers[agent.npeers++] = (int)v;
		while (*p == ',')
			p++;
		if (*p && (*p < '0' || *p > '9'))
			break;
	}
}

/* The supervisor's stdin, stdout and stderr (stdio=DEV:INO,DEV:INO,DEV:INO):
 * descriptors of the program that are these are connected to the new
 * supervisor's at restart. A process started by exec cannot know them. */
static void parse_stdio(const char *line)
{
	char v[256];
	if (field(line, "stdio", v, sizeof v) != 0)
		return;
	char *p = v;
	for (int i = 0; i < 3 && *p; i++) {
		agent.stdio_dev[i] = strtoull(p, &p, 10);
		if (*p == ':')
			p++;
		agent.stdio_ino[i] = strtoull(p, &p, 10);
		if (*p == ',')
			p++;
	}
}

static void on_capture(const char *line)
{
	if (phase != PHASE_SUSPENDED || gen_of(line) != agent.generation ||
	    field(line, "dir", agent.dir, sizeof agent.dir) != 0) {
		send_fail("CAPTURE out of order or malformed");
		return;
	}
	char opt[16];
	agent.stop_after = field(line, "stop", opt, sizeof opt) == 0 && opt[0] == '1';
	/* copy-on-write unless asked not to; a stopping checkpoint gains
	 * nothing from it */
	agent.use_cow =
	    !(field(line, "cow", opt, sizeof opt) == 0 && opt[0] == '0') && !agent.stop_after;
	if (agent.cow_unusable)
		agent.use_cow = 0;
	agent.capture_ns = now_ns();
	agent.fork_ns = agent.forked_ns = agent.track_ns = 0;
	/* compress=none|fast|max|auto (default fast: older coordinators) */
	char comp[16] = "fast";
	field(line, "compress", comp, sizeof comp);
	agent.compress_level = !strcmp(comp, "none") ? 0 : !strcmp(comp, "max") ? 9 : 1;
	agent.compress_adaptive = !strcmp(comp, "auto");
	/* incremental: hashes=1, and parent=N: the generation to compare with,
	 * beside this one's directory */
	agent.hash_pages = field(line, "hashes", opt, sizeof opt) == 0 && opt[0] == '1';
	agent.parent_dir[0] = 0;
	agent.parent_gen = 0;
	if (agent.hash_pages && field(line, "parent", opt, sizeof opt) == 0)
		agent.parent_gen = strtoull(opt, NULL, 10);
	const char *slash = strrchr(agent.dir, '/');
	if (agent.parent_gen && agent.parent_gen < agent.generation && slash)
		snprintf(agent.parent_dir, sizeof agent.parent_dir, "%.*s/gen-%06llu",
			 (int)(slash - agent.dir), agent.dir, (unsigned long long)agent.parent_gen);
	else
		agent.parent_gen = 0;
	parse_peers(line);
	parse_stdio(line);
	/* stopped when the checkpoint began: a restart stops it again */
	agent.was_stopped = field(line, "sigstop", opt, sizeof opt) == 0 && opt[0] == '1';
	for (int attempt = 0; attempt < 2; attempt++) {
		agent.result = 0;
		agent.cow_dontfork = 0;
		agent.errmsg[0] = 0;
		agent.image_bytes = 0;
		agent.pages_stored = agent.pages_referred = agent.pages_proven = 0;
		agent.uncompressed = 0;
		agent.pages_checked = 0;
		agent.restore_info.magic = 0;
		/* Capture ourselves last: the handler writes the image. */
		raw_syscall3(SYS_tgkill, agent.pid, agent.agent_tid, agent.suspend_signal);
		if (agent.restore_info.magic == CKPT_RESTORE_MAGIC) {
			pending_after_restart();
			after_restore();
			return;
		}
		if (!agent.cow_dontfork)
			break;
		/* memory that fork does not copy: again, without copy-on-write */
		agent.cow_unusable = 1;
		agent.use_cow = 0;
		add_warning("memory that fork does not copy (MADV_DONTFORK) made this process "
			    "switch to checkpoints without copy-on-write",
			    0, 0);
	}
	if (agent.result != 0) {
		phase = PHASE_IDLE;
		resume_all_threads();
		send_fail(agent.errmsg);
		return;
	}
	phase = PHASE_CAPTURED;
	agent.captured_ns = now_ns();
	char out[128];
	snprintf(out, sizeof out, "CAPTURED gen=%llu pid=%d\n",
		 (unsigned long long)agent.generation, (int)agent.pid);
	send_line(out);
}

/* Pages written since the capture are protected again, while the program
 * runs (microseconds per page in some VMs): while a copy-on-write writer
 * works, or once the image was written from the stage. */
static void reprotect_written(void)
{
	if (!agent.hash_pages)
		return;
	pthread_mutex_lock(&connect_lock);
	track_reprotect();
	pthread_mutex_unlock(&connect_lock);
}

/* Every process is captured: run on while the image is written, then say
 * when it is durable. */
static void on_continue(const char *line)
{
	if (phase != PHASE_CAPTURED || gen_of(line) != agent.generation)
		return;
	phase = PHASE_IDLE;
	int keep_stopped = agent.stop_after && agent.result == 0;
	if (!keep_stopped)
		resume_all_threads();
	agent.resumed_ns = now_ns();
	/* the program runs meanwhile: the image is written from the stage
	 * here, or by the copy-on-write writer, reaped once the coordinator
	 * knows. Protecting the written pages again overlaps the writer's
	 * work; after a staged capture nothing runs beside it, and it waits
	 * until the coordinator knows the image is durable (4-7 ms of a torch
	 * program's incremental checkpoint). */
	int staged = capture_finish_staged();
	if (!keep_stopped && !staged)
		reprotect_written();
	capture_wait_writer_report();
	uint64_t written_ns = now_ns();
	if (agent.result != 0) {
		send_fail(agent.errmsg);
		capture_reap_writer();
		if (keep_stopped)
			resume_all_threads();
		else if (staged)
			reprotect_written();
		return;
	}
	char out[4096], enc[3200];
	encode(enc, sizeof enc, agent.warnings);
	snprintf(out, sizeof out,
		 "DONE gen=%llu pid=%d bytes=%llu pause_ms=%.3f write_ms=%.3f stopped=%d "
		 "stop_ms=%.3f capture_ms=%.3f fork_ms=%.3f track_ms=%.3f "
		 "pages_stored=%llu pages_referred=%llu pages_proven=%llu pages_checked=%d "
		 "uncompressed=%llu warn=%s\n",
		 (unsigned long long)agent.generation, (int)agent.pid,
		 (unsigned long long)agent.image_bytes, ms_between(agent.stop_ns, agent.resumed_ns),
		 ms_between(agent.stopped_ns, written_ns), keep_stopped,
		 ms_between(agent.stop_ns, agent.stopped_ns),
		 ms_between(agent.capture_ns, agent.captured_ns),
		 agent.forked_ns ? ms_between(agent.fork_ns, agent.forked_ns) : 0.0,
		 (double)agent.track_ns / 1e6, (unsigned long long)agent.pages_stored,
		 (unsigned long long)agent.pages_referred, (unsigned long long)agent.pages_proven,
		 agent.pages_checked, (unsigned long long)agent.uncompressed, enc);
	send_line(out);
	capture_reap_writer();
	if (keep_stopped) {
		wait_for_resume();
		return;
	}
	if (staged)
		reprotect_written();
	/* room in the stage for the next capture, so that its SUSPEND rarely
	 * adds any (only a copy-on-write capture may be staged instead) */
	if (agent.hash_pages && agent.use_cow) {
		pthread_mutex_lock(&connect_lock);
		uint64_t expected = track_next_store_bytes();
		pthread_mutex_unlock(&connect_lock);
		stage_reserve(expected);
	}
}

/* The checkpoint was abandoned: run on. */
static void on_resume(const char *line)
{
	if (phase == PHASE_IDLE || gen_of(line) != agent.generation)
		return;
	phase = PHASE_IDLE;
	resume_all_threads();
	capture_drop_staged();
	capture_wait_writer();
}

static void on_line(const char *line)
{
	if (strncmp(line, "SUSPEND ", 8) == 0)
		on_suspend(line);
	else if (strncmp(line, "CAPTURE ", 8) == 0)
		on_capture(line);
	else if (strncmp(line, "CONTINUE ", 9) == 0)
		on_continue(line);
	else if (strncmp(line, "RESUME ", 7) == 0)
		on_resume(line);
	else if (strncmp(line, "RECHECK ", 8) == 0)
		on_recheck(line);
	else if (strncmp(line, "SETTLE ", 7) == 0)
		on_settle(line);
}

static void at_fork_prepare(void)
{
	pthread_mutex_lock(&connect_lock);
}

static void at_fork_parent(void)
{
	pthread_mutex_unlock(&connect_lock);
}

static void *agent_thread(void *arg)
{
	(void)arg;
	sigset_t all;
	sigfillset(&all);
	sigdelset(&all, agent.suspend_signal);
	pthread_sigmask(SIG_SETMASK, &all, 0);
	agent.agent_tid = (pid_t)syscall(SYS_gettid);
	pthread_setname_np(pthread_self(), "ckpt-agent");
	/* the offset must hold for every thread, this one included */
	if (agent.pthread_tid_offset >= 0 &&
	    *(const int *)((const char *)__builtin_thread_pointer() + agent.pthread_tid_offset) !=
		agent.agent_tid)
		agent.pthread_tid_offset = -1;

	if (agent.ctl_fd < 0 || say_hello(0) != 0) {
		fprintf(stderr,
			"ckpt agent: cannot reach the coordinator at %s: %s; "
			"this process will not be checkpointed\n",
			ctl_path, strerror(agent.ctl_fd < 0 ? connect_errno : errno));
		return 0;
	}
	char buf[8192];
	size_t used = 0;
	/* until the coordinator goes: the program then runs on unsupervised */
	while (ctl_read(buf, sizeof buf, &used) > 0) {
		char *nl;
		while ((nl = strchr(buf, '\n'))) {
			*nl = 0;
			on_line(buf);
			size_t rest = used - (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, rest);
			used = rest;
			buf[used] = 0;
		}
		if (used == sizeof buf - 1)
			used = 0; /* overlong line: drop it */
	}
	return 0;
}

/* glibc keeps each thread's id in its struct pthread (pthread_kill,
 * mutex owners...). A restart that cannot choose ids must rewrite it:
 * find where it is by looking for our tid near the thread pointer. */
static int find_pthread_tid_offset(void)
{
	int tid = (int)syscall(SYS_gettid);
	const int *p = (const int *)__builtin_thread_pointer();
	for (int i = 4; i < 1024; i++)
		if (p[i] == tid)
			return i * (int)sizeof(int);
	return -1;
}

/* The coordinator connection is made before the program goes on (in the
 * constructor; in a forked child before fork returns), not by the agent
 * thread beside it: a program closes and dup2s descriptor numbers it
 * believes its own (bash in every subshell), and the numbers a connecting
 * thread takes would be closed or replaced under it. It then moves out of
 * the way of the program's numbers. */
static void connect_now(void)
{
	int fd = ctl_connect_path(ctl_path);
	connect_errno = fd < 0 ? errno : 0;
	if (fd >= 0) {
		int high = fcntl(fd, F_DUPFD_CLOEXEC, 900);
		if (high >= 0) {
			close(fd);
			fd = high;
		}
	}
	agent.ctl_fd = fd;
}

static void start_agent_thread(void)
{
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	/* The thread must never take a signal meant for the program, not
	 * even before it sets its own mask: it is born with all blocked. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (pthread_create(&t, &attr, agent_thread, 0) != 0)
		fprintf(stderr, "ckpt agent: cannot start the checkpoint thread in pid %d\n",
			(int)getpid());
	pthread_sigmask(SIG_SETMASK, &old, 0);
	pthread_attr_destroy(&attr);
}

/* A forked child is a new process of the computation: the parent's
 * checkpoint thread and connection are not its own, so it starts its own
 * (fork copies only the calling thread). vfork and posix_spawn children
 * run no fork handlers; they exec, and the agent starts in the new
 * program. */
static void at_fork_child(void)
{
	pthread_mutex_unlock(&connect_lock);
	if (agent.ctl_fd >= 0)
		close(agent.ctl_fd);
	agent.ctl_fd = -1;
	agent.pid = getpid();
	agent.agent_tid = 0;
	atomic_store(&agent.active, 0);
	agent.nslots = 0;
	agent.writer_pid = 0;
	agent.writer_unreaped = 0; /* the parent's child, not ours */
	agent.cow = 0;
	settle_hold_receivers(0); /* forked while the parent settled */
	track_forget();		  /* its userfaultfd would act on the parent's memory */
	phase = PHASE_IDLE;
	connect_now();
	start_agent_thread();
}

__attribute__((constructor)) static void agent_init(void)
{
	const char *ctl = getenv("CKPT_CTL"), *tok = getenv("CKPT_TOKEN");
	if (!ctl || !tok)
		return;
	snprintf(ctl_path, sizeof ctl_path, "%s", ctl);
	snprintf(token, sizeof token, "%s", tok);
	const char *sig = getenv("CKPT_SIGNAL");
	agent.suspend_signal = sig ? atoi(sig) : SIGRTMAX - 1;
	const char *to = getenv("CKPT_STOP_TIMEOUT_MS");
	agent.stop_timeout_ms = to ? atoi(to) : AGENT_STOP_TIMEOUT_MS_DEFAULT;
	agent.pid = getpid();
	agent.pthread_tid_offset = find_pthread_tid_offset();
	sched_note_launch();
	stage_find_own_data();
	track_own_scratch();
	memory_own_scratch();
	fds_own_scratch();
	sock_diag_own_scratch();
	keep_own_scratch();
	stdio_identities();
	if (suspend_install() != 0) {
		fprintf(stderr, "ckpt agent: cannot install the suspend signal handler: %s\n",
			strerror(errno));
		return;
	}
	pthread_atfork(at_fork_prepare, at_fork_parent, at_fork_child);
	connect_now();
	start_agent_thread();
}
