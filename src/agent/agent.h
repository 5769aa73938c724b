/* Internal interface of the injected agent (libckpt-agent.so).
 *
 * The agent's checkpoint thread talks to the coordinator. On CHECKPOINT it
 * stops every other thread with the suspend signal: each one enters
 * suspend_handler, records its kernel state next to the signal frame the
 * kernel built on its stack, and waits. The checkpoint thread then signals
 * itself, and from inside its own handler writes the image: memory (which
 * now contains every thread's signal frame, i.e. all registers including
 * FPU/AVX state), threads, signal actions, file descriptors. Restart
 * resumes every thread with rt_sigreturn on its frame.
 *
 * Between the stop and the resume other threads may hold malloc, stdio or
 * loader locks, so that code uses no allocation, no stdio and no locks:
 * raw system calls, fixed tables, and scratch memory from mmap. */
#ifndef CKPT_AGENT_H
#define CKPT_AGENT_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "image/format.h"

#define AGENT_MAX_THREADS 4096
#define AGENT_STOP_TIMEOUT_MS_DEFAULT 10000
#define AGENT_ERR_LEN 1024
#define AGENT_MAX_PEERS 1024

enum slot_state { SLOT_FREE = 0, SLOT_SIGNALED = 1, SLOT_CAPTURING = 2, SLOT_STOPPED = 3 };

struct agent_slot {
	int tid;
	_Atomic int state;
	int mask_checked; /* its signal mask looked at, or the fallback sent (suspend.c) */
	struct ckpt_thread info;
	struct ckpt_thread_sched sched; /* flags 0: as the process started */
};

/* What the copy-on-write writer reports back, in memory shared with it. */
struct cow_result {
	_Atomic int32_t maps_state; /* futex: 0 not yet checked, 1 all memory there, 2 not */
	_Atomic uint32_t reported;  /* futex: 1 once the fields below are final */
	int32_t result;
	int32_t dontfork;
	uint64_t bytes;
	uint64_t pages_stored, pages_referred, pages_proven;
	uint64_t uncompressed; /* page bytes stored raw by --compress auto */
	int32_t pages_checked;
	char errmsg[AGENT_ERR_LEN];
	char warnings[AGENT_ERR_LEN];
};

struct agent_state {
	int suspend_signal;
	pid_t pid;
	pid_t agent_tid;
	int ctl_fd;
	int stop_timeout_ms;
	int pthread_tid_offset; /* of the tid in struct pthread, -1 unknown */

	/* Checkpoint in progress. */
	_Atomic int active;
	uint32_t ckpt_epoch;		/* resume_epoch value while stopped */
	_Atomic uint32_t resume_epoch;	/* futex: bumped to release threads */
	_Atomic uint32_t stopped_count; /* futex: bumped by each stopped thread */
	struct agent_slot slots[AGENT_MAX_THREADS];
	int nslots;
	struct ckpt_thread self_info; /* the checkpoint thread itself */
	/* CPU affinity and nice value the process started with (the
	 * launcher's), and after a restart those the restart gave: a thread
	 * with others set them itself (THREAD_SCHED) */
	uint8_t launch_cpus[CKPT_CPUSET_BYTES];
	int launch_nice;
	int launch_known;

	uint64_t generation;
	int stop_after; /* stop=1: stay stopped after a successful capture */
	char dir[4096];
	int image_fd;
	int result; /* 0 written, -1 failed (errmsg) */
	char errmsg[AGENT_ERR_LEN];
	char warnings[AGENT_ERR_LEN];
	uint64_t image_bytes;
	uint64_t stop_boot_ns;			  /* CLOCK_BOOTTIME at stop_ns (CLOCK_MONOTONIC) */
	uint64_t stop_ns, stopped_ns, resumed_ns; /* timeline of the last checkpoint */
	uint64_t capture_ns, fork_ns, forked_ns, captured_ns; /* within CAPTURE */
	uint64_t track_ns;				      /* of it, reading written pages */

	/* Copy-on-write writing (on unless the request says cow=0). */
	int use_cow;
	int cow_dontfork;	   /* the writer child found memory fork does not copy */
	int cow_unusable;	   /* so this process checkpoints without copy-on-write */
	int compress_level;	   /* zstd level, 0 = none */
	int compress_adaptive;	   /* auto: raw where the disk waits (writer.c) */
	int writer_pid;		   /* in the program: the writer child, 0 if none */
	int writer_unreaped;	   /* a writer that reported, not yet waited for */
	struct cow_result *cow;	   /* shared with the writer */
	long cow_vm_pages;	   /* the program's mapped pages at the fork */
	uint64_t skip_lo, skip_hi; /* the shared page: not part of the image */

	/* Incremental checkpoints (CAPTURE hashes=1 parent=DIR parent_gen=N):
	 * hash every saved page; refer to the pages whose hash the parent
	 * generation's image of this process recorded (incremental.c). */
	int hash_pages;
	char parent_dir[4200]; /* "" for a full image */
	uint64_t parent_gen;
	uint64_t pages_stored, pages_referred; /* of the last image */
	uint64_t pages_proven; /* of those referred, known unchanged without reading */
	uint64_t uncompressed; /* page bytes stored raw while the disk waited */
	int pages_checked;     /* every page chunk read back from the file and matched */

	/* The other processes of the computation (pids), from CAPTURE */
	int peers[AGENT_MAX_PEERS];
	int npeers;
	int was_stopped; /* SIGSTOPped before the checkpoint */

	/* Identity of the supervisor's stdin/stdout/stderr: fds pointing to
	 * these are reconnected to the new supervisor at restart. */
	uint64_t stdio_dev[3], stdio_ino[3];

	/* Written by the restorer; magic == CKPT_RESTORE_MAGIC after restart. */
	struct ckpt_restore_info restore_info;
};

extern struct agent_state agent;

/* suspend.c */
int suspend_install(void);
int suspend_all_threads(void); /* 0 or -1 with agent.errmsg */
void resume_all_threads(void);
/* While a settle lets the program run to take descriptors sent to it: a
 * thread that has taken them waits in settle_hold_here (recvwrap.c) until
 * settle_hold_receivers(0), so that the stop finds it before it starts
 * the next hand-over. */
void settle_hold_receivers(int on);
int settle_holding(void);
void settle_hold_here(void);
void capture_thread_state(struct ckpt_thread *t, void *frame);
/* The calling thread's CPU affinity and nice value where they differ from
 * the launch ones (s->flags 0 when neither does). */
void capture_thread_sched(struct ckpt_thread_sched *s);
/* Note the calling thread's affinity and nice value as the launch ones. */
void sched_note_launch(void);
uint64_t status_mask(const char *path, const char *key);

/* children.c: children that exited and were not waited for */
int zombies_capture(struct ckpt_zombie *out, int cap);

/* capture.c: write the image; called in the checkpoint thread's handler */
void capture_image(void *self_frame);
void capture_wait_writer(void);
/* Wait for the writer's report only; capture_reap_writer then waits for
 * it to be gone (its memory torn down: tens of ms per GiB). */
void capture_wait_writer_report(void);
void capture_reap_writer(void);
/* A capture recorded into the stage (stage.c): written now that the
 * program runs on (1; 0: there was none), or dropped (the checkpoint was
 * abandoned). */
int capture_finish_staged(void);
void capture_drop_staged(void);
/* memory.c: the process's mapped size in pages (statm), -1 if unknown:
 * a fork lacks what fork does not copy (MADV_DONTFORK) */
long vm_pages(void);

/* memory.c, fds.c: parts of the image */
struct ckpt_writer;
struct ckpt_writer_record;
struct scratch;
struct strtab;
/* maps: the text of /proc/self/maps, read while stopped and not parsed
 * in place since (NULL: read now); it is parsed in place. cow_child:
 * running in the copy-on-write child, which reads pages through
 * /proc/self/mem rather than in place (memory.c, window_fill). */
int memory_capture(struct ckpt_writer *w, struct scratch *s, struct strtab *st, char *maps,
		   int cow_child, char *err);
/* Shared memory whose content the image holds (not a file's) changes
 * under a copy-on-write writer: copy its resident pages into scratch
 * memory for the writer to save (0, also when there is none); -1 when
 * that cannot be done (too much, or maps NULL), and the process is written
 * stopped. maps: the text of /proc/self/maps, cut into lines. */
int memory_snapshot_shared(struct scratch *s, char *maps);
/* /proc/self/maps, whole, into scratch memory: *out (its length, or -1) */
long memory_read_maps(struct scratch *s, char **out);
/* Whether the maps text (not yet cut into lines) has MAP_SHARED mappings
 * of the file dev/ino (dev as fstat gives it) covering its bytes [0, size):
 * then the image holds the file's content with the mappings' pages. */
int memory_maps_cover_file(const char *maps, uint64_t dev, uint64_t ino, uint64_t size);
/* Calls fn for each mapping in the maps text (not yet cut into lines) of a
 * file, shared and writable, whose content is the file's (not shared
 * memory: see classify); dev as fstat gives it. */
typedef void shared_file_fn(void *ctx, uint64_t dev, uint64_t ino, const char *path);
void memory_shared_file_maps(const char *maps, shared_file_fn *fn, void *ctx);

/* keep.c: files the program has open or maps, kept by a hard link in the
 * generation's directory (files/<dev>-<ino>) so that a restart finds them
 * when the program deleted or replaced them after the checkpoint. from: a
 * path, or /proc/self/fd/N with follow set; owner: its st_uid (only the
 * user's own files can be linked). */
void keep_own_scratch(void); /* its tables are left out of images */
void keep_begin(void);
void keep_file(const char *from, int follow, uint64_t dev, uint64_t ino, uint32_t owner);
void keep_flush(void); /* link the mapped files keep_file put aside */
void keep_sync(void);  /* the links are durable before the image is */

/* incremental.c: what the parent image holds (read-only, mapped from its
 * PAGE_HASHES and PAGE_RUNS sections) and what this image holds. Pages
 * are given in ascending address order, each once. */
void incr_begin(uint64_t max_pages); /* at most max_pages pages are saved */
/* The page at addr (its bytes at src) is saved: returns 1 when it is
 * unchanged since the parent image (to be referred to), else 0 (to be
 * stored). Records it for this image, with its hash unless write tracking
 * covers it from this checkpoint on. */
int incr_page(uint64_t addr, const void *src);
/* The page at addr is known unchanged since the parent image (track.c):
 * 1 when the parent holds it (it is recorded and referred to), else 0
 * (the page must then be read). */
int incr_page_unchanged(uint64_t addr);
/* The same for up to max pages from addr, all known unchanged: how many
 * of them, from addr on, write tracking covers and the parent holds in
 * a run of pages (each recorded and to be referred to); 0 when the first
 * is not such a page (then ask incr_page_unchanged). */
uint64_t incr_pages_unchanged(uint64_t addr, uint64_t max);
/* The parent image's records are complete and do not hold the page at
 * addr: it was zero or not there when the parent was captured. */
int incr_parent_lacks(uint64_t addr);
/* There is a parent image to refer to (else incr_page says 0 always). */
int incr_has_parent(void);
void incr_write_hashes(struct ckpt_writer *w);
void incr_end(void);

/* track.c: which pages were written since the last checkpoint, from
 * userfaultfd write-protection and PAGEMAP_SCAN, where the kernel has them */
/* At SUSPEND, program running: registers new memory, and returns about
 * how many bytes of pages the coming capture will store (written since the
 * last one, new memory, memory not tracked), UINT64_MAX when it cannot
 * tell (no baseline). Pages written since the last protection are
 * protected again now, unless that is at most stage_limit (a capture into
 * the stage, which forks nothing). */
uint64_t track_arm(uint64_t stage_limit);
/* After a capture, program running: what the next capture is expected to
 * store (pages written around the capture, memory not tracked, and as
 * many written pages as in the last interval, or as written since this
 * capture before an interval was measured); UINT64_MAX when it cannot
 * tell. */
uint64_t track_next_store_bytes(void);
/* at the capture, stopped, before the fork; maps: /proc/self/maps (kept) */
void track_collect(struct scratch *s, char *maps);
void track_reprotect(void);	    /* after the capture, program running */
int track_unchanged(uint64_t addr); /* in the writer, ascending addresses */
/* the page's mapping is tracked from this capture on (in the writer,
 * ascending addresses) */
int track_covers(uint64_t addr);
/* how many pages from addr on (at most max) are covered, like addr */
uint64_t track_covers_pages(uint64_t addr, uint64_t max);
void track_done(void);
int track_fd(void); /* its userfaultfd, -1 if none (not imaged) */
/* From a program thread, around its mremap (mapwrap.c): [start, start +
 * len) is no longer tracked, and no SUSPEND registers it until _end. */
void track_release_begin(uint64_t start, uint64_t len);
void track_release_end(void);
void track_forget(void);	  /* in a forked child */
void track_forget_restored(void); /* after a restart */
/* At the capture, after track_collect: at most how many bytes of pages it
 * can store; UINT64_MAX when tracking cannot bound it. */
uint64_t track_store_bound(char *maps);

/* stage.c: memory kept across checkpoints that receives the writer's
 * recorded operations (ckpt_writer_record) while the program is stopped,
 * so that a small incremental checkpoint needs no copy-on-write child */
/* at SUSPEND and after a checkpoint, program running (see stage.c) */
void stage_reserve(uint64_t expected_bytes);
uint64_t stage_limit(void); /* the most bytes of pages a stage may receive */
/* At the capture: the stage's record buffer if bound bytes of pages fit,
 * else NULL (copy-on-write then) */
struct ckpt_writer_record *stage_record_for(uint64_t bound_bytes);
int stage_owns(uint64_t start, uint64_t end); /* [start, end) lies in the stage */
void stage_range(uint64_t *lo, uint64_t *hi); /* lo == hi: none */
void stage_forget(void);		      /* after a restart: not ours any more */
void stage_find_own_data(void);		      /* at start: where the agent's .bss is */
void stage_populate_own_data(void);	      /* at the first SUSPEND (see stage.c) */
/* [start, end) overlaps the agent's .bss */
int stage_in_own_data(uint64_t start, uint64_t end);
/* [start, end) overlaps the agent's writable segment (.data and .bss) */
int stage_in_own_segment(uint64_t start, uint64_t end);
/* buf is a buffer of the agent's .bss that no image needs (see stage.c) */
void stage_own_scratch(const void *buf, size_t len);
int stage_own_scratch_page(uint64_t addr); /* the page at addr is in one */
void track_own_scratch(void);		   /* at start: track.c's buffers */
void memory_own_scratch(void);		   /* at start: memory.c's buffers */
void memory_forget_snapshots(void);
/* once the image's PAGES section is written (memory_capture keeps its
 * index for recorded operations) */
void memory_release_index(void);
/* maps: the text of /proc/self/maps if read already, else NULL; read
 * into it here when a deleted file's descriptor needs it. */
int fds_capture(struct ckpt_writer *w, struct scratch *s, struct strtab *st, char **maps,
		char *err);
/* hand-overs caught half-way (see fds.c), of each kind; the first in what */
struct unsettled {
	int unaccepted; /* connections waiting on a listener with bytes sent */
	int in_flight;	/* sockets with descriptors queued */
	int in_transit; /* TCP connections with bytes on their way (tcpflow.c) */
	int stuck;	/* ... with bytes waiting for room at the receiver */
	char what[300];
};
void fds_unsettled(struct unsettled *u);
/* inotifywrap.c: a path the program watched (fd, wd) through, or another
 * it watched, that names the file dev/ino now (followed as a watch with
 * follow would); NULL if none. */
const char *inotify_watch_path(int fd, int wd, uint64_t dev, uint64_t ino, int follow);
int fds_still_in_flight(void); /* at the sockets fds_unsettled found them */
void fds_own_scratch(void);    /* at start: fds.c's buffers */
/* tcpflow.c: the bytes sent on the TCP connection fd that have not
 * reached the socket at its other end, on this host, yet (0 if it is
 * elsewhere); *stuck is 1 if they cannot get there while the receiver is
 * stopped (its receive window is closed). *nl is a sock_diag socket opened
 * on first use (-1 before), for the caller to close. */
uint64_t tcp_undelivered(int *nl, int fd, int *stuck);
void warn_undelivered(int fd); /* at the capture, in the warnings */

/* compress.c: zstd for page chunks (level 0: none) */
#define CKPT_CHUNK_PAGES_MAX 256
int compress_setup(struct ckpt_writer *w, struct scratch *s, int level);
void compress_stop(void); /* before the scratch memory goes */

/* iothread.c: writes the image's buffers while the next one fills */
struct io_thread;
struct ckpt_writer_io;
struct io_thread *io_thread_start(struct scratch *s, struct ckpt_writer *w);
const struct ckpt_writer_io *io_thread_ops(struct io_thread *t);
void io_thread_stop(struct io_thread *t);

/* util.c: libc-free helpers usable while threads are stopped */
struct scratch {
	char *base;
	size_t size, used;
};
int scratch_init(struct scratch *s, size_t size);
void *scratch_alloc(struct scratch *s, size_t size);
/* The same, its pages allocated now, in one system call: memory that is
 * certainly written in full (write buffers) would otherwise take a page
 * fault per page, each very slow in some VMs. */
void *scratch_alloc_populated(struct scratch *s, size_t size);
/* Make memory written in full private to this process now (in the
 * copy-on-write writer: one copy per page without a fault each). */
void populate_for_writing(void *p, size_t size);
void scratch_free(struct scratch *s);

struct strtab {
	char *buf;
	size_t size, used;
};
uint32_t strtab_add(struct strtab *t, const char *s);

uint64_t now_ns(void);
/* A bare thread (raw clone, no libc thread state) running fn(arg) on the
 * stack below stack_top; *tid is set, and cleared by the kernel when the
 * thread exits. fn must not return. Returns the tid or a -errno. */
long raw_thread_start(char *stack_top, _Atomic int32_t *tid, void (*fn)(void *), void *arg);
size_t str_len(const char *s);
char *str_copy(char *dst, const char *src, size_t cap);	  /* returns end of dst */
char *str_append(char *dst, size_t cap, const char *src); /* appends, returns dst */
char *str_append_u64(char *dst, size_t cap, uint64_t v);
char *str_append_hex(char *dst, size_t cap, uint64_t v);
int str_starts(const char *s, const char *prefix);
int str_ends(const char *s, const char *suffix);
int str_eq(const char *a, const char *b);
void mem_copy(void *dst, const void *src, size_t n);
void mem_zero(void *dst, size_t n);
int mem_differ(const void *a, const void *b, size_t n);
/* Read a whole small /proc file into buf (NUL-terminated); bytes or -errno. */
long read_file(const char *path, char *buf, size_t cap);
long raw_readlink(const char *path, char *buf, size_t cap); /* NUL-terminated */
/* Hex number at *p (advancing *p); the hex number after key in s (after
 * blanks), key only at a line start if at_line_start; 0 if absent. */
uint64_t scan_hex(const char **p);
uint64_t hex_field(const char *s, const char *key, int at_line_start, int *found);
/* The decimal number (a '-' allowed) after key at a line start of s (after
 * blanks and a '('), *after set past it; 0 if absent. */
int64_t dec_field(const char *s, const char *key, const char **after);
/* Numeric entries of a /proc directory (tasks, descriptors): count, or -1. */
int list_numeric_dir(const char *path, int *out, int cap);
/* The name in dir (not below it) of the file with inode ino: 0, or -1 if
 * there is none. */
int name_in_dir(const char *dir, uint64_t ino, char *name, size_t cap);
/* sock_diag: a NETLINK_SOCK_DIAG socket (-1 if none); sock_diag_ask sends
 * req (len bytes, beginning with a struct nlmsghdr it fills in) and
 * returns the answer's first message if it holds msg_size bytes, else
 * NULL; the answer stays valid until the next question. */
struct nlmsghdr;
int sock_diag_open(void);
const struct nlmsghdr *sock_diag_ask(int nl, void *req, size_t len, size_t msg_size);
void sock_diag_own_scratch(void); /* at start: its answer buffer */
void set_error(const char *a, const char *b, const char *c);
void add_warning(const char *a, const char *b, const char *c);

/* timers.c: the process's interval and POSIX timers, at most max */
struct ckpt_timer;
int timers_capture(struct ckpt_timer *out, int max);

/* glibc's SIGSETXID, which no thread of a glibc program blocks: the signal
 * that stops threads blocking the suspend signal (suspend.c) */
#define AGENT_FALLBACK_SIGNAL 33
/* the bits of the suspend and fallback signals: never the program's */
uint64_t agent_signals(void);

/* pending.c: pending signals taken off their queues with their siginfo */
void pending_reset(void);
void pending_after_restart(void);
uint64_t pending_take(int tid, uint64_t mask); /* tid 0: the process's; returns those left */
void pending_requeue_own(int tid); /* a resumed thread's, and the main's the process's */
const struct ckpt_siginfo *pending_records(uint32_t *n);

/* sigwrap.c */
struct sigaction;
int real_sigaction(int sig, const struct sigaction *act, struct sigaction *old);

#endif
