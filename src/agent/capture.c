/* Writing the image, from the checkpoint thread's signal handler while
 * every other thread is stopped. Order of sections in the file does not
 * matter (the section table locates them); memory goes before AREAS
 * because writing it counts each area's saved pages. */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/rseq.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>

#include "agent/agent.h"
#include "common/rawsys.h"
#include "image/writer.h"

#define SCRATCH_SIZE (1ull << 30) /* address space only: MAP_NORESERVE */
#define WRITE_BUF_SIZE (1u << 20)
#define CHECK_BUF_SIZE (1u << 20)
/* A copy-on-write writer's buffers hold a whole chunk of CKPT_CHUNK_PAGES_MAX
 * pages and its padding (its header is then patched in memory) */
#define COW_WRITE_BUF_SIZE (2u << 20)
#define STRTAB_SIZE (16u << 20)

static void fill_cpu_features(struct ckpt_image_header *h)
{
	unsigned a, b, c, d;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
	h->cpuid_1_ecx = c;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
	h->cpuid_7_ebx = b;
	if (h->cpuid_1_ecx & (1u << 27)) { /* OSXSAVE */
		unsigned lo, hi;
		__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
		h->xcr0 = ((uint64_t)hi << 32) | lo;
	}
}

static void fill_header(struct ckpt_image_header *h, int nthreads)
{
	mem_zero(h, sizeof *h);
	mem_copy(h->magic, CKPT_IMAGE_MAGIC, CKPT_IMAGE_MAGIC_LEN);
	h->format_version = CKPT_FORMAT_VERSION;
	h->header_size = sizeof *h;
	str_copy(h->arch, "x86_64", sizeof h->arch);
	struct utsname u;
	if (raw_syscall1(SYS_uname, &u) == 0)
		str_copy(h->kernel_release, u.release, sizeof h->kernel_release);
	str_copy(h->ckpt_version, CKPT_VERSION, sizeof h->ckpt_version);
	h->generation = agent.generation;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	h->time_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	h->monotonic_ns = agent.stop_ns;
	h->boottime_ns = agent.stop_boot_ns;
	h->pid = agent.pid;
	h->nthreads = (uint32_t)nthreads;
	fill_cpu_features(h);
}

/* Field n (1-based) of /proc/self/stat, counting after the comm. */
static uint64_t stat_field(const char *stat, int n)
{
	const char *p = stat + str_len(stat);
	while (p > stat && *p != ')')
		p--;
	int field = 2;
	for (; *p && field < n; p++)
		if (*p == ' ')
			field++;
	uint64_t v = 0;
	for (; *p >= '0' && *p <= '9'; p++)
		v = v * 10 + (uint64_t)(*p - '0');
	return v;
}

static int process_capture(struct ckpt_process *p, struct strtab *st, char *err)
{
	static char buf[8192];
	mem_zero(p, sizeof *p);
	p->pid = agent.pid;
	p->ppid = (int32_t)raw_syscall0(SYS_getppid);
	long mask = raw_syscall1(SYS_umask, 022);
	raw_syscall1(SYS_umask, mask);
	p->umask = (uint32_t)mask;
	p->personality = (uint32_t)raw_syscall1(SYS_personality, 0xffffffff);
	if (read_file("/proc/self/stat", buf, sizeof buf) <= 0) {
		str_copy(err, "cannot read /proc/self/stat", 64);
		return -1;
	}
	p->start_code = stat_field(buf, 26);
	p->end_code = stat_field(buf, 27);
	p->start_stack = stat_field(buf, 28);
	p->start_data = stat_field(buf, 45);
	p->end_data = stat_field(buf, 46);
	p->start_brk = stat_field(buf, 47);
	p->arg_start = stat_field(buf, 48);
	p->arg_end = stat_field(buf, 49);
	p->env_start = stat_field(buf, 50);
	p->env_end = stat_field(buf, 51);
	p->brk = (uint64_t)raw_syscall1(SYS_brk, 0);
	long n = read_file("/proc/self/auxv", buf, sizeof buf);
	if (n <= 0 || (size_t)n > sizeof p->auxv) {
		str_copy(err, "cannot read /proc/self/auxv", 64);
		return -1;
	}
	mem_copy(p->auxv, buf, (size_t)n);
	p->auxv_words = (uint32_t)(n / 8);
	p->rseq_offset = (int32_t)__rseq_offset;
	p->rseq_size = __rseq_size;
	p->rseq_sig = 0x53053053u;
	p->restore_info_addr = (uint64_t)(uintptr_t)&agent.restore_info;
	p->agent_fd = agent.ctl_fd;
	p->pthread_tid_offset = agent.pthread_tid_offset;
	p->shared_pending = status_mask("/proc/self/status", "ShdPnd:") & ~agent_signals();
	/* what this thread has pending itself would come off its queue first */
	uint64_t own = status_mask("/proc/thread-self/status", "SigPnd:");
	if (p->shared_pending)
		p->shared_pending =
		    pending_take(0, p->shared_pending & ~own) | (p->shared_pending & own);
	if (agent.was_stopped)
		p->shared_pending |= 1ull << (SIGSTOP - 1);
	p->nrlimits = CKPT_NRLIMITS;
	for (int i = 0; i < CKPT_NRLIMITS; i++) {
		struct rlimit r;
		if (raw_syscall4(SYS_prlimit64, 0, i, 0, &r) == 0) {
			p->rlimits[i].cur = r.rlim_cur;
			p->rlimits[i].max = r.rlim_max;
		}
	}
	if (raw_readlink("/proc/self/cwd", buf, sizeof buf) > 0)
		p->cwd_str = strtab_add(st, buf);
	if (raw_readlink("/proc/self/exe", buf, sizeof buf) > 0)
		p->exe_str = strtab_add(st, buf);
	read_file("/proc/self/comm", p->comm, sizeof p->comm);
	size_t cl = str_len(p->comm);
	if (cl && p->comm[cl - 1] == '\n')
		p->comm[cl - 1] = 0;
	return 0;
}

#define MAX_TIMERS 4096
static struct ckpt_timer timers[MAX_TIMERS];
static int ntimers;

static void write_small_sections(struct ckpt_writer *w, struct ckpt_process *proc, int nthreads)
{
	ckpt_writer_begin_section(w, CKPT_SEC_PROCESS);
	ckpt_writer_write(w, proc, sizeof *proc);
	ckpt_writer_end_section(w, 1);

	ckpt_writer_begin_section(w, CKPT_SEC_THREADS);
	for (int i = 0; i < agent.nslots; i++)
		if (atomic_load(&agent.slots[i].state) == SLOT_STOPPED)
			ckpt_writer_write(w, &agent.slots[i].info, sizeof(struct ckpt_thread));
	ckpt_writer_write(w, &agent.self_info, sizeof agent.self_info);
	ckpt_writer_end_section(w, (uint32_t)nthreads);
	uint32_t nsched = 0;
	for (int i = 0; i < agent.nslots; i++)
		nsched += atomic_load(&agent.slots[i].state) == SLOT_STOPPED &&
			  agent.slots[i].sched.flags;
	if (nsched) {
		ckpt_writer_begin_section(w, CKPT_SEC_THREAD_SCHED);
		for (int i = 0; i < agent.nslots; i++)
			if (atomic_load(&agent.slots[i].state) == SLOT_STOPPED &&
			    agent.slots[i].sched.flags)
				ckpt_writer_write(w, &agent.slots[i].sched,
						  sizeof agent.slots[i].sched);
		ckpt_writer_end_section(w, nsched);
	}

	static struct ckpt_sigaction sa[CKPT_NSIG];
	mem_zero(sa, sizeof sa);
	for (int sig = 1; sig <= CKPT_NSIG; sig++)
		if (sig != 9 && sig != 19)
			raw_syscall4(SYS_rt_sigaction, sig, 0, &sa[sig - 1], 8);
	ckpt_writer_begin_section(w, CKPT_SEC_SIGACTIONS);
	ckpt_writer_write(w, sa, sizeof sa);
	ckpt_writer_end_section(w, CKPT_NSIG);

	struct ckpt_tree tree = {(int32_t)raw_syscall1(SYS_getpgid, 0),
				 (int32_t)raw_syscall1(SYS_getsid, 0), (uint32_t)agent.npeers + 1,
				 0};
	if (tree.pgid < 0)
		tree.pgid = 0;
	if (tree.sid < 0)
		tree.sid = 0;
	ckpt_writer_begin_section(w, CKPT_SEC_TREE);
	ckpt_writer_write(w, &tree, sizeof tree);
	ckpt_writer_end_section(w, 1);

	static struct ckpt_zombie zombies[4096];
	int nz = zombies_capture(zombies, 4096);
	ckpt_writer_begin_section(w, CKPT_SEC_ZOMBIES);
	ckpt_writer_write(w, zombies, (size_t)nz * sizeof zombies[0]);
	ckpt_writer_end_section(w, (uint32_t)nz);

	if (ntimers) {
		ckpt_writer_begin_section(w, CKPT_SEC_TIMERS);
		ckpt_writer_write(w, timers, (size_t)ntimers * sizeof timers[0]);
		ckpt_writer_end_section(w, (uint32_t)ntimers);
	}

	uint32_t npending, taken = 0;
	const struct ckpt_siginfo *pending = pending_records(&npending);
	if (npending) {
		ckpt_writer_begin_section(w, CKPT_SEC_SIGINFO);
		for (uint32_t i = 0; i < npending; i++)
			if (pending[i].signo) {
				ckpt_writer_write(w, &pending[i], sizeof pending[i]);
				taken++;
			}
		ckpt_writer_end_section(w, taken);
	}
}

/* Read and write: the writer reads its pages back (ckpt_writer_set_check). */
static int open_image(char *tmp, char *final, size_t cap)
{
	tmp[0] = 0;
	str_append(tmp, cap, agent.dir);
	str_append(tmp, cap, "/");
	str_append_u64(tmp, cap, (uint64_t)agent.pid);
	str_append(tmp, cap, ".img");
	str_copy(final, tmp, cap);
	str_append(tmp, cap, ".tmp");
	return (int)raw_syscall4(SYS_openat, AT_FDCWD, tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
				 0600);
}

/* The image is durable once its data, its name and its directory entry are
 * on disk. */
static int publish_image(const char *tmp, const char *final)
{
	keep_flush();
	keep_sync();
	if (raw_syscall2(SYS_rename, tmp, final) != 0)
		return -1;
	long dfd =
	    raw_syscall4(SYS_openat, AT_FDCWD, agent.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (dfd < 0)
		return -1;
	long r = raw_syscall1(SYS_fsync, dfd);
	raw_syscall1(SYS_close, dfd);
	return r == 0 ? 0 : -1;
}

static void fail_errno(const char *what, long err)
{
	char num[24] = "";
	str_append_u64(num, sizeof num, (uint64_t)-err);
	set_error(what, " (errno ", num);
	str_append(agent.errmsg, sizeof agent.errmsg, ")");
}

/* Memory, strings, header, rename: the part of the image that the
 * copy-on-write writer does after the program has been resumed. */
static void finish_image(struct ckpt_writer *w, struct scratch *s, struct strtab *st, int nthreads,
			 int cow_child, const char *tmp, const char *final)
{
	static struct ckpt_image_header hdr;
	static char err[512];
	err[0] = 0;
	/* the page data: copied, checksummed and compressed here while an
	 * I/O thread writes the previous buffer */
	if (cow_child && !w->rec) {
		char *big = scratch_alloc(s, COW_WRITE_BUF_SIZE);
		if (big)
			ckpt_writer_set_buffer(w, big, COW_WRITE_BUF_SIZE);
	}
	char *spare = scratch_alloc_populated(s, w->buf_size);
	populate_for_writing(w->buf, w->buf_size);
	struct io_thread *io = spare ? io_thread_start(s, w) : 0;
	if (io)
		ckpt_writer_set_io(w, io_thread_ops(io), spare);
	/* the pages are read back as the page cache writes them out, so
	 * that the coordinator need not read them from the disk (writer.h) */
	char *check = scratch_alloc(s, CHECK_BUF_SIZE);
	if (check)
		ckpt_writer_set_check(w, check, CHECK_BUF_SIZE);
	int r = 0;
	if (w->rec)
		ckpt_writer_replay(w); /* recorded while stopped; a failure shows at finish */
	else
		r = memory_capture(w, s, st, NULL, cow_child, err);
	memory_release_index();
	compress_stop(); /* the last batch was written when PAGES ended */
	if (io) {
		ckpt_writer_flush_io(w);
		io_thread_stop(io);
	}
	if (r != 0) {
		set_error(err, 0, 0);
		return;
	}
	ckpt_writer_begin_section(w, CKPT_SEC_STRINGS);
	ckpt_writer_write(w, st->buf, st->used);
	ckpt_writer_end_section(w, 0);
	fill_header(&hdr, nthreads);
	if (agent.pages_referred)
		hdr.parent_generation = agent.parent_gen;
	if (ckpt_writer_finish(w, &hdr) != 0) {
		/* Where: the .tmp file is gone by the time the coordinator
		 * logs the failure, and a full disk or quota shows in how far
		 * the writing got. */
		if (w->error == EBADMSG)
			set_error("the image file did not read back as written (a memory or "
				  "file system fault): page chunk data differ",
				  0, 0);
		else
			fail_errno("writing the image failed", -w->error);
		str_append(agent.errmsg, sizeof agent.errmsg, " at byte ");
		str_append_u64(agent.errmsg, sizeof agent.errmsg,
			       w->error == EBADMSG ? w->ck_pos : w->offset);
	} else if (publish_image(tmp, final) != 0) {
		set_error("cannot rename the image into place in ", agent.dir, 0);
	} else {
		agent.pages_checked = w->checked;
	}
	agent.image_bytes = w->offset;
	agent.uncompressed = w->adaptive ? w->uncompressed_bytes : 0;
}

/* Copy-on-write snapshot: a child made with fork semantics (no SIGCHLD,
 * so the program never sees it) holds the memory exactly as it is now and
 * writes it, while the program runs on. Returns the child's pid, 0 in the
 * child, -1 if it could not be made. */
static long cow_fork(void)
{
	long r = raw_syscall6(SYS_mmap, 0, sizeof(struct cow_result), PROT_READ | PROT_WRITE,
			      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (r < 0 && r > -4096)
		return -1;
	agent.cow = (struct cow_result *)r;
	mem_zero(agent.cow, sizeof *agent.cow);
	agent.cow_vm_pages = vm_pages();
	long pid = raw_syscall5(SYS_clone, 0 /* exit signal 0: no SIGCHLD */, 0, 0, 0, 0);
	if (pid < 0) {
		raw_syscall2(SYS_munmap, agent.cow, sizeof *agent.cow);
		agent.cow = 0;
		return -1;
	}
	return pid;
}

/* In the writer: memory marked MADV_DONTFORK is missing here (the mapped
 * size is smaller than the program's at the fork), and an image without
 * it would restart into a crash. Told to the program at once (it waits,
 * stopped), which then captures again without copy-on-write. */
static int cow_child_check_maps(void)
{
	long pages = vm_pages();
	int ok = pages < 0 || agent.cow_vm_pages < 0 || pages == agent.cow_vm_pages;
	atomic_store(&agent.cow->maps_state, ok ? 1 : 2);
	raw_syscall3(SYS_futex, &agent.cow->maps_state, FUTEX_WAKE, 1);
	return ok;
}

/* In the program: wait for the writer's verdict on its memory. */
static int cow_parent_check_maps(long pid)
{
	for (;;) {
		int state = atomic_load(&agent.cow->maps_state);
		if (state)
			return state == 1;
		int status;
		if (raw_syscall4(SYS_wait4, pid, &status, 1 /* WNOHANG */ | 0x40000000, 0) == pid)
			return -1; /* died before it could tell */
		struct timespec ts = {0, 200000};
		raw_syscall4(SYS_futex, &agent.cow->maps_state, FUTEX_WAIT, 0, &ts);
	}
}

static __attribute__((noreturn)) void cow_child_exit(void)
{
	struct cow_result *r = agent.cow;
	r->result = agent.result;
	r->dontfork = agent.cow_dontfork;
	r->bytes = agent.image_bytes;
	r->pages_stored = agent.pages_stored;
	r->pages_referred = agent.pages_referred;
	r->pages_proven = agent.pages_proven;
	r->uncompressed = agent.uncompressed;
	r->pages_checked = agent.pages_checked;
	str_copy(r->errmsg, agent.errmsg, sizeof r->errmsg);
	str_copy(r->warnings, agent.warnings, sizeof r->warnings);
	/* the program need not wait while exit tears down this copy of its
	 * memory */
	atomic_store(&r->reported, 1);
	raw_syscall3(SYS_futex, &r->reported, FUTEX_WAKE, 1);
	for (;;)
		raw_syscall1(SYS_exit_group, agent.result == 0 ? 0 : 1);
}

static char tmp[4200], final[4200];
static struct ckpt_writer w;

/* A capture recorded into the stage, to be written once the program runs
 * on (capture_finish_staged). */
static struct {
	int active;
	int fd, nthreads;
} staged;
/* The capture's scratch memory: static, since the compressor keeps a
 * pointer to it and a staged capture is finished after capture_image
 * has returned. */
static struct scratch scr;
static struct strtab strs;

/* The image's descriptor and scratch memory go; the file too unless it
 * was written and renamed into place. */
static void drop_image(int fd, struct scratch *s)
{
	raw_syscall1(SYS_close, fd);
	if (agent.result != 0)
		raw_syscall1(SYS_unlink, tmp);
	scratch_free(s);
}

/* Stopped: the pages to store are copied into the stage with the rest of
 * the memory sections' operations; 0 when the image is left to
 * capture_finish_staged. */
static int record_staged(struct ckpt_writer_record *rec, int fd, struct scratch *s,
			 struct strtab *st, char *maps, int nthreads)
{
	static char err[512];
	err[0] = 0;
	memory_forget_snapshots(); /* shared memory is read now, as it is */
	ckpt_writer_record(&w, rec);
	if (memory_capture(&w, s, st, maps, 0, err) != 0 || w.error) {
		w.rec = NULL;
		memory_release_index();
		if (err[0])
			set_error(err, 0, 0);
		else
			fail_errno("writing the image failed", -w.error);
		return -1;
	}
	staged = (typeof(staged)){1, fd, nthreads};
	return 0;
}

int capture_finish_staged(void)
{
	if (!staged.active)
		return 0;
	staged.active = 0;
	finish_image(&w, &scr, &strs, staged.nthreads, 0, tmp, final);
	drop_image(staged.fd, &scr);
	return 1;
}

void capture_drop_staged(void)
{
	if (!staged.active)
		return;
	staged.active = 0;
	w.rec = NULL;
	memory_release_index();
	agent.result = -1;
	drop_image(staged.fd, &scr);
}

void capture_image(void *self_frame)
{
	static char err[512];
	int nthreads = 1;
	capture_thread_state(&agent.self_info, self_frame);
	agent.self_info.flags |= CKPT_THREAD_AGENT;
	for (int i = 0; i < agent.nslots; i++)
		if (atomic_load(&agent.slots[i].state) == SLOT_STOPPED)
			nthreads++;

	keep_begin();
	int fd = open_image(tmp, final, sizeof tmp);
	if (fd < 0) {
		fail_errno("cannot create the image file in ", fd);
		return;
	}
	struct scratch *s = &scr;
	if (scratch_init(s, SCRATCH_SIZE) != 0) {
		set_error("cannot map scratch memory for the checkpoint", 0, 0);
		raw_syscall1(SYS_close, fd);
		return;
	}
	strs = (struct strtab){scratch_alloc(s, STRTAB_SIZE), STRTAB_SIZE, 1};
	strs.buf[0] = 0;
	struct strtab *st = &strs;
	ckpt_writer_init(&w, fd, scratch_alloc(s, WRITE_BUF_SIZE), WRITE_BUF_SIZE);
	if (compress_setup(&w, s, agent.compress_level) != 0)
		add_warning("compression unavailable for this checkpoint", 0, 0);
	w.adaptive = agent.compress_adaptive;

	/* Descriptors (pipes are drained and refilled) and per-thread state
	 * are taken while the program is stopped; only memory may be written
	 * from a snapshot. */
	static struct ckpt_process proc;
	err[0] = 0;
	ntimers = timers_capture(timers, MAX_TIMERS); /* before the pending signals */
	char *maps = NULL; /* read once for all that need it (a large maps file takes ms) */
	int captured =
	    process_capture(&proc, st, err) == 0 && fds_capture(&w, s, st, &maps, err) == 0;
	if (captured)
		write_small_sections(&w, &proc, nthreads);
	if (!captured) {
		set_error(err, 0, 0);
	} else {
		/* which pages were written since the last capture (read and
		 * protected again now, while stopped) */
		uint64_t t0 = now_ns();
		if ((agent.hash_pages || agent.use_cow) && !maps && memory_read_maps(s, &maps) <= 0)
			maps = NULL;
		if (agent.hash_pages)
			track_collect(s, maps);
		agent.track_ns = now_ns() - t0;
		/* few pages to store: copied now, written once the program runs */
		struct ckpt_writer_record *rec = agent.use_cow && agent.hash_pages
						     ? stage_record_for(track_store_bound(maps))
						     : 0;
		if (rec) {
			if (record_staged(rec, fd, s, st, maps, nthreads) != 0)
				drop_image(fd, s);
			return;
		}
		/* Shared memory changes under a copy-on-write writer while the
		 * program runs on: its pages are copied now, while stopped (or,
		 * when that cannot be done, the process is written stopped). */
		int cow = agent.use_cow && memory_snapshot_shared(s, maps) == 0;
		if (!cow)
			memory_forget_snapshots();
		agent.fork_ns = now_ns();
		long pid = cow ? cow_fork() : -1;
		if (pid == 0) {
			agent.skip_lo = (uint64_t)(uintptr_t)agent.cow;
			agent.skip_hi = agent.skip_lo + sizeof(struct cow_result);
			if (cow_child_check_maps())
				finish_image(&w, s, st, nthreads, 1, tmp, final);
			else
				set_error("memory not inherited by fork", 0, 0);
			if (agent.result != 0)
				raw_syscall1(SYS_unlink, tmp);
			cow_child_exit();
		}
		if (pid > 0) {
			agent.forked_ns = now_ns();
			int maps_ok = cow_parent_check_maps(pid);
			agent.writer_pid = (int)pid;
			raw_syscall1(SYS_close, fd);
			scratch_free(s);
			if (maps_ok != 1) {
				capture_wait_writer();
				agent.result = -1;
				agent.cow_dontfork = maps_ok == 0;
				if (maps_ok < 0)
					set_error(
					    "the copy-on-write image writer died at its start", 0,
					    0);
			}
			return;
		}
		finish_image(&w, s, st, nthreads, 0, tmp, final);
	}
	drop_image(fd, s);
}

/* After the program has been resumed: wait for the copy-on-write writer's
 * report (or its death) and take over its result. */
void capture_wait_writer_report(void)
{
	if (agent.writer_pid <= 0)
		return;
	struct cow_result *c = agent.cow;
	int status = 0, gone = 0;
	while (!atomic_load(&c->reported)) {
		long r = raw_syscall4(SYS_wait4, agent.writer_pid, &status,
				      1 /* WNOHANG */ | 0x40000000 /* __WALL */, 0);
		if (r == agent.writer_pid || (r < 0 && r != -4 /* EINTR */)) {
			gone = 1;
			break;
		}
		/* woken by the report; the timeout notices a writer killed */
		struct timespec ts = {0, 2000000};
		raw_syscall4(SYS_futex, &c->reported, FUTEX_WAIT, 0, &ts);
	}
	int reported = atomic_load(&c->reported);
	agent.result = c->result;
	agent.cow_dontfork = c->dontfork;
	agent.image_bytes = c->bytes;
	agent.pages_stored = c->pages_stored;
	agent.pages_referred = c->pages_referred;
	agent.pages_proven = c->pages_proven;
	agent.uncompressed = c->uncompressed;
	agent.pages_checked = c->pages_checked;
	str_copy(agent.errmsg, c->errmsg, sizeof agent.errmsg);
	str_copy(agent.warnings, c->warnings, sizeof agent.warnings);
	if (!reported) {
		/* killed before it could report (the shared result is still 0) */
		agent.result = -1;
		str_copy(agent.errmsg,
			 "the copy-on-write image writer was killed before it finished",
			 sizeof agent.errmsg);
	}
	raw_syscall2(SYS_munmap, agent.cow, sizeof *agent.cow);
	agent.cow = 0;
	agent.writer_unreaped = gone ? 0 : agent.writer_pid;
	agent.writer_pid = 0;
}

void capture_reap_writer(void)
{
	if (agent.writer_unreaped <= 0)
		return;
	int status;
	while (raw_syscall4(SYS_wait4, agent.writer_unreaped, &status, 0x40000000 /* __WALL */,
			    0) == -4 /* EINTR */)
		;
	agent.writer_unreaped = 0;
}

void capture_wait_writer(void)
{
	capture_wait_writer_report();
	capture_reap_writer();
}
