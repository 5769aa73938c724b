/* On-disk layout of a ckpt process image. docs/image-format.md is the
 * prose description; the two must agree. All integers are little-endian
 * (the only architecture written so far is x86-64), all structs are
 * packed by construction (explicit padding) so the layout does not depend
 * on the compiler. */
#ifndef CKPT_IMAGE_FORMAT_H
#define CKPT_IMAGE_FORMAT_H

#include <stdint.h>

#define CKPT_IMAGE_MAGIC "CKPTIMG\x01"
#define CKPT_IMAGE_MAGIC_LEN 8
#define CKPT_FORMAT_VERSION 10
/* Version 9 lacks PIDFD descriptors; version 8 also lacks SHARED_FILES and THREAD_SCHED; version 7
 * also lacks DELETED descriptors with aux 1 (content in the mappings); version 6 also lacks TIMERS;
 * version 5 also lacks PAGE_INDEX; version 4 also lacks PAGE_RUNS; version 3 also lacks reference
 * chunks, PAGE_HASHES and parent_generation; version 2 also differs in what a compressed chunk's
 * crc covers (the decoded pages). Readers accept all. */
#define CKPT_FORMAT_VERSION_V9 9
#define CKPT_FORMAT_VERSION_V8 8
#define CKPT_FORMAT_VERSION_V7 7
#define CKPT_FORMAT_VERSION_V6 6
#define CKPT_FORMAT_VERSION_V5 5
#define CKPT_FORMAT_VERSION_V4 4
#define CKPT_FORMAT_VERSION_V3 3
#define CKPT_FORMAT_VERSION_V2 2
#define CKPT_PAGE_SIZE 4096u
#define CKPT_MAX_SECTIONS 32
#define CKPT_MAX_AUXV 64 /* (type, value) pairs */
#define CKPT_NSIG 64

/* Fixed-size header at offset 0. */
struct ckpt_image_header {
	char magic[8];
	uint32_t format_version;
	uint32_t header_size; /* sizeof(struct ckpt_image_header) */
	char arch[16];	      /* "x86_64" */
	char kernel_release[72];
	char ckpt_version[24];
	uint64_t generation;
	uint64_t time_ns; /* CLOCK_REALTIME when the process was stopped */
	int32_t pid;	  /* pid inside the computation's pid namespace */
	uint32_t nthreads;
	uint64_t section_table_offset;
	uint32_t section_count;
	uint32_t section_table_crc; /* crc32c of the section table */
	uint64_t xcr0;		    /* XSAVE features enabled when saved */
	uint32_t cpuid_1_ecx;	    /* CPUID leaf 1 ECX / leaf 7 EBX: features */
	uint32_t cpuid_7_ebx;	    /* the program may have dispatched on */
	uint64_t image_size;	    /* total file size */
	/* Incremental images: the generation whose image of the same name
	 * holds the pages of this image's reference chunks; 0 for an image
	 * that holds all of its pages. */
	uint64_t parent_generation;
	/* CLOCK_MONOTONIC and CLOCK_BOOTTIME when the process was stopped
	 * (version 7; 0: unknown): a restart's time namespace continues them */
	uint64_t monotonic_ns, boottime_ns;
	uint8_t reserved[96];
	uint32_t flags;
	uint32_t header_crc; /* crc32c of this header with header_crc = 0 */
};

enum ckpt_section_type {
	CKPT_SEC_PROCESS = 1,	 /* struct ckpt_process */
	CKPT_SEC_THREADS = 2,	 /* struct ckpt_thread[count] */
	CKPT_SEC_SIGACTIONS = 3, /* struct ckpt_sigaction[CKPT_NSIG] */
	CKPT_SEC_AREAS = 4,	 /* struct ckpt_area[count] */
	CKPT_SEC_STRINGS = 5,	 /* NUL-terminated strings, referenced by offset */
	CKPT_SEC_FDS = 6,	 /* struct ckpt_fd[count] */
	CKPT_SEC_FD_DATA = 7,	 /* bytes queued in pipes/sockets, referenced by ckpt_fd */
	CKPT_SEC_PAGES = 8,	 /* sequence of ckpt_page_chunk + data */
	/* Process trees (optional; absent: a process alone, in the group and
	 * session it was started in, with no zombie children) */
	CKPT_SEC_TREE = 9,	 /* struct ckpt_tree */
	CKPT_SEC_ZOMBIES = 10,	 /* struct ckpt_zombie[count]: children not waited for */
	CKPT_SEC_FD_SHARES = 11, /* struct ckpt_fd_share[count]: descriptions shared */
	CKPT_SEC_LOCKS = 12,	 /* struct ckpt_lock[count]: file locks held */
	/* Optional: what the next incremental checkpoint compares with */
	CKPT_SEC_PAGE_HASHES = 13, /* struct ckpt_page_hash[count], ascending addr */
	CKPT_SEC_PAGE_RUNS = 14,   /* struct ckpt_page_run[count], ascending addr (version 5) */
	/* Optional: where each page chunk is (version 6) */
	CKPT_SEC_PAGE_INDEX = 15, /* struct ckpt_chunk_entry[count], in file order */
	/* Optional: timers that send the process signals (version 7) */
	CKPT_SEC_TIMERS = 16,  /* struct ckpt_timer[count] */
	CKPT_SEC_SIGINFO = 17, /* struct ckpt_siginfo[count]: pending signals */
	/* Optional: content of files mapped shared and writable (version 9) */
	CKPT_SEC_SHARED_FILES = 18, /* struct ckpt_shared_file[count] */
	/* Optional: CPU affinity and nice values threads set (version 9) */
	CKPT_SEC_THREAD_SCHED = 19, /* struct ckpt_thread_sched[count] */
	CKPT_SEC_MAX_KNOWN = 19,
};

/* Section table entry; the table sits at header.section_table_offset. */
struct ckpt_section {
	uint32_t type;
	uint32_t count; /* number of records, where the section holds records */
	uint64_t offset;
	uint64_t length;
	uint32_t crc; /* crc32c of the section bytes; 0 for PAGES (chunks carry their own) */
	uint32_t reserved;
};

/* The whole file pages that lie inside section s (what can be dropped from
 * the page cache without touching its neighbours): their bytes, 0 if none,
 * the first at *from. */
static inline uint64_t ckpt_section_whole_pages(const struct ckpt_section *s, uint64_t *from)
{
	*from = (s->offset + CKPT_PAGE_SIZE - 1) & ~(uint64_t)(CKPT_PAGE_SIZE - 1);
	uint64_t to = (s->offset + s->length) & ~(uint64_t)(CKPT_PAGE_SIZE - 1);
	return to > *from ? to - *from : 0;
}

struct ckpt_rlimit {
	uint64_t cur, max;
};

#define CKPT_NRLIMITS 16

struct ckpt_process {
	int32_t pid, ppid;
	uint32_t umask;
	uint32_t personality;
	/* mm layout, as PR_SET_MM_MAP wants it (from /proc/PID/stat) */
	uint64_t start_code, end_code, start_data, end_data;
	uint64_t start_brk, brk, start_stack;
	uint64_t arg_start, arg_end, env_start, env_end;
	uint64_t auxv[2 * CKPT_MAX_AUXV];
	uint32_t auxv_words; /* number of uint64_t used in auxv, including AT_NULL */
	/* glibc's per-thread rseq area: tp + rseq_offset, rseq_size bytes */
	int32_t rseq_offset;
	uint32_t rseq_size;
	uint32_t rseq_sig;
	/* where the agent wants struct ckpt_restore_info written at restart */
	uint64_t restore_info_addr;
	/* file descriptor of the agent's coordinator connection, or -1 */
	int32_t agent_fd;
	uint32_t nrlimits;
	struct ckpt_rlimit rlimits[CKPT_NRLIMITS];
	uint32_t cwd_str; /* offsets into STRINGS */
	uint32_t exe_str;
	char comm[16];
	uint64_t vdso_start; /* [vdso] start, for AT_SYSINFO_EHDR sanity */
	/* offset of the tid in glibc's struct pthread (at the thread
	 * pointer), -1 if unknown: rewritten when a restart without pid
	 * namespaces gives threads new ids */
	int32_t pthread_tid_offset;
	uint32_t reserved;
	uint64_t shared_pending; /* signals pending for the whole process */
};

/* What the restorer writes into the restored program so its agent knows
 * it has been restarted (the agent cannot otherwise tell: its memory is
 * exactly what it was at checkpoint). */
#define CKPT_RESTORE_MAGIC 0x52455354524f4544ull /* "DEORTSER" */
struct ckpt_restore_info {
	uint64_t magic;
	uint64_t generation;		     /* generation restored from */
	uint64_t stdio_dev[3], stdio_ino[3]; /* identity of the new supervisor's stdio */
	uint64_t restore_time_ns;
};

enum ckpt_thread_flags {
	CKPT_THREAD_MAIN = 1,  /* tid == pid */
	CKPT_THREAD_AGENT = 2, /* the agent's checkpoint thread */
};

struct ckpt_thread {
	int32_t tid;
	uint32_t flags;
	uint64_t fs_base, gs_base;
	/* address of the ucontext of the signal frame the thread was stopped
	 * in; restart resumes the thread with rt_sigreturn on this frame */
	uint64_t frame;
	uint64_t clear_child_tid;
	uint64_t robust_head;
	uint64_t robust_len;
	uint64_t altstack_sp, altstack_size;
	int32_t altstack_flags;
	uint32_t rseq_registered;
	uint64_t rseq_addr;
	char comm[16];
	uint64_t sigpending; /* signals pending for this thread (bit n-1 = signal n) */
};

enum ckpt_timer_kind {
	CKPT_TIMER_REAL = 1,	/* setitimer(ITIMER_REAL), alarm(): SIGALRM, wall time */
	CKPT_TIMER_VIRTUAL = 2, /* ITIMER_VIRTUAL: SIGVTALRM, user CPU time */
	CKPT_TIMER_PROF = 3,	/* ITIMER_PROF: SIGPROF, CPU time */
	CKPT_TIMER_POSIX = 4,	/* timer_create() */
};

/* A timer of the process. Times are what was left when the process
 * stopped: the time it spent stopped is not counted. */
struct ckpt_timer {
	uint32_t kind;
	int32_t id;	    /* POSIX: the kernel's timer id, which the program holds */
	int32_t clockid;    /* POSIX */
	int32_t signo;	    /* POSIX: the signal an expiry sends */
	int32_t notify;	    /* POSIX: SIGEV_SIGNAL 0, _NONE 1, _THREAD 2 or _THREAD_ID 4 */
	int32_t notify_tid; /* POSIX, SIGEV_THREAD_ID: the thread it is sent to */
	uint64_t sigval;    /* POSIX: the si_value it carries */
	int64_t value_sec, value_nsec;	     /* time left; both 0: not running */
	int64_t interval_sec, interval_nsec; /* period; both 0: fires once */
};

/* A pending signal with its siginfo, in the order it was queued: raised
 * again with it at restart. Signals pending without a record (the bits of
 * ckpt_thread.sigpending and ckpt_process.shared_pending) come back
 * without. */
struct ckpt_siginfo {
	int32_t tid;	   /* the thread it is pending for; 0: the process */
	uint32_t signo;	   /* 1 to 64 */
	uint8_t info[128]; /* the kernel's siginfo_t */
};

/* struct sigaction as the kernel's rt_sigaction sees it on x86-64 */
struct ckpt_sigaction {
	uint64_t handler;
	uint64_t flags;
	uint64_t restorer;
	uint64_t mask;
};

enum ckpt_area_kind {
	CKPT_AREA_ANON = 1,	    /* private anonymous, includes heap and stacks */
	CKPT_AREA_FILE_PRIVATE = 2, /* MAP_PRIVATE of a file: remapped, changed pages saved */
	CKPT_AREA_FILE_SHARED = 3,  /* MAP_SHARED of a file: remapped, content in the file */
	CKPT_AREA_SHARED_ANON = 4,  /* MAP_SHARED anonymous / deleted shm: content saved */
	CKPT_AREA_VDSO = 5,	    /* [vdso], not saved: the live one is moved here */
	CKPT_AREA_VVAR = 6,	    /* [vvar], [vvar_vclock]: moved with the vdso */
};

enum ckpt_area_flags {
	CKPT_AREA_GROWSDOWN = 1, /* the main [stack] */
	CKPT_AREA_HEAP = 2,	 /* [heap] */
	CKPT_AREA_FROM_FILE = 4, /* pages not saved come from the file */
};

struct ckpt_area {
	uint64_t start, end;
	uint32_t prot; /* PROT_* */
	uint32_t kind;
	uint32_t flags;
	uint32_t name_str; /* offset into STRINGS: path or [name], 0 = none */
	uint64_t file_offset;
	uint64_t dev, ino, file_size;
	int64_t mtime_ns;
	uint64_t pages_saved; /* pages of this area present in PAGES */
};

enum ckpt_fd_kind {
	CKPT_FD_FILE = 1, /* regular file: reopened by path */
	CKPT_FD_DIR = 2,
	CKPT_FD_DEVICE = 3,	 /* character device reopened by path (/dev/null...) */
	CKPT_FD_STDIO = 4,	 /* the supervisor's stdin/stdout/stderr (aux = which) */
	CKPT_FD_PIPE = 5,	 /* pipe end; pipes are matched by pipe_id */
	CKPT_FD_SOCKPAIR = 6,	 /* AF_UNIX socketpair end, matched by pipe_id */
	CKPT_FD_AGENT = 7,	 /* the agent's own coordinator connection */
	CKPT_FD_UNSUPPORTED = 8, /* recorded and named; restart reopens /dev/null */
	CKPT_FD_DELETED = 9,	 /* an open file already deleted: content in FD_DATA */
	CKPT_FD_EVENTFD = 10,	 /* counter in offset, aux 1 = EFD_SEMAPHORE */
	CKPT_FD_EPOLL = 11,	 /* watched descriptors: struct ckpt_epoll_entry in FD_DATA */
	CKPT_FD_TIMERFD = 13,	 /* struct ckpt_timerfd in FD_DATA */
	CKPT_FD_SIGNALFD = 14,	 /* signal mask in offset */
	CKPT_FD_FIFO = 15,	 /* named pipe end (path_str), matched by pipe_id like PIPE */
	CKPT_FD_INOTIFY = 17,	 /* inotify (version 10): struct ckpt_inotify_watch in FD_DATA */
	CKPT_FD_PIDFD = 16,	 /* pidfd (version 10): the pid it refers to, in the program's pid
				  * namespace, in offset; -1: that process had been waited for */
	CKPT_FD_SOCKET = 12,	 /* other socket: struct ckpt_socket in FD_DATA; listeners
				  * are bound and listen again, connections come back
				  * as unconnected sockets (the peer is gone) */
};

struct ckpt_fd {
	int32_t fd;
	uint32_t kind;
	uint32_t open_flags; /* F_GETFL */
	uint32_t fd_flags;   /* F_GETFD (FD_CLOEXEC) */
	int64_t offset;
	uint64_t dev, ino, size;
	int64_t mtime_ns;
	uint32_t path_str; /* offset into STRINGS */
	uint32_t aux;	   /* STDIO: 0/1/2; PIPE: 0 read end, 1 write end; SOCKPAIR: socket type;
			    * FILE: 1 its content saved in FD_DATA (written in place, version 7),
			    * 2 saved as a small file written at its end, made again at restart
			    * only if its path names another file or none; DELETED: 1 the
			    * content is in the process's shared mappings of it (version 8) */
	uint64_t pipe_id;  /* kernel inode of the pipe/socket */
	uint64_t data_off; /* queued bytes in FD_DATA (pipe read end / socket receive queue) */
	uint64_t data_len;
};

/* One descriptor an epoll instance watches (from /proc/PID/fdinfo). */
struct ckpt_epoll_entry {
	int32_t tfd;
	uint32_t events;
	uint64_t data;
};

/* One watch of an inotify descriptor: its number, events, and the path
 * the program gave (made absolute), 0 if it is not known. */
struct ckpt_inotify_watch {
	int32_t wd;
	uint32_t mask;	   /* as /proc/PID/fdinfo shows it */
	uint32_t path_str; /* offset into STRINGS, 0 = unknown */
	uint32_t reserved;
};

/* A timerfd as /proc/PID/fdinfo shows it: time left and period. */
struct ckpt_timerfd {
	int32_t clockid;
	int32_t reserved;
	int64_t value_sec, value_nsec;	     /* until the next expiry */
	int64_t interval_sec, interval_nsec; /* period, 0 for one shot */
	uint64_t ticks;			     /* expiries not read yet (not restored) */
};

struct ckpt_socket {
	int32_t domain, type, protocol;
	int32_t listening;
	uint32_t addrlen; /* of addr (getsockname), 0 if unbound */
	uint32_t reserved;
	uint8_t addr[128];
	/* version 3: the peer (getpeername) of a connected socket; the bytes
	 * queued to be read follow the record in FD_DATA */
	uint32_t peerlen;
	uint32_t flags; /* CKPT_SOCKET_* */
	uint8_t peer[128];
};
/* A connected stream socket whose peer had not closed and which had sent
 * nothing the peer has not read: if its peer address is that of a listener
 * of the computation, the connection was still waiting to be accepted, and
 * restart queues a new one on the listener (nothing is lost). */
#define CKPT_SOCKET_RECONNECTABLE 1u
/* A connected Unix stream socket whose peer had closed (a server that
 * answered and hung up before the client read the answer): restart gives
 * the program the bytes queued at it, then end of file. */
#define CKPT_SOCKET_PEER_CLOSED 2u
#define CKPT_SOCKET_V2_SIZE 152 /* without peer */

/* Where the process sits in the computation's tree of processes. Ids are
 * pids in the computation's pid namespace; 0 means outside it (the group
 * or session ckpt itself was started in, kept at restart). */
struct ckpt_tree {
	int32_t pgid;
	int32_t sid;
	uint32_t nprocs; /* processes in the checkpoint (informational) */
	uint32_t reserved;
};

/* A child that had exited and was not waited for: restart recreates it
 * as a zombie with the same pid and wait status. */
struct ckpt_zombie {
	int32_t pid;
	int32_t status; /* as waitpid() reports it */
};

/* A descriptor whose open file description is also another process's:
 * (owner_pid, owner_fd) is the first (lowest pid, then fd) holder of it in
 * the computation. Restart creates it once and every holder duplicates
 * it, so offsets, flags and queued data stay shared. Pipes are matched by
 * pipe_id instead and need no entry. */
struct ckpt_fd_share {
	int32_t fd;
	int32_t owner_pid;
	int32_t owner_fd;
	uint32_t reserved;
};

/* A file lock the process held, taken again at restart before the
 * program runs (a lock that cannot be is an error, never silently lost). */
enum ckpt_lock_kind {
	CKPT_LOCK_FLOCK = 1, /* flock(2): belongs to the open file description */
	CKPT_LOCK_POSIX = 2, /* fcntl F_SETLK: belongs to the process */
	CKPT_LOCK_OFD = 3,   /* fcntl F_OFD_SETLK: belongs to the description */
};
/* A regular file the process maps shared and writable, with no descriptor
 * of it saved whole (FDS, FILE aux 1): what the program writes through the
 * mapping goes into the file, so its content at the checkpoint is kept
 * here and written back at restart before the file is mapped again. */
struct ckpt_shared_file {
	uint64_t dev, ino, size;
	int64_t mtime_ns;
	uint32_t path_str; /* offset into STRINGS */
	uint32_t reserved;
	uint64_t data_off, data_len; /* the content in FD_DATA; data_len == size */
};

/* A thread whose CPU affinity or nice value differs from what its process
 * started with (the launcher's: taskset, Slurm's CPU binding): the program
 * set it (OpenMP's OMP_PROC_BIND, os.sched_setaffinity, os.nice). Restart
 * sets it again, the affinity cut to the CPUs the restart may use. */
#define CKPT_CPUSET_BYTES 128 /* CPUs 0 to 1023 */
enum {
	CKPT_SCHED_AFFINITY = 1, /* cpus holds the thread's affinity */
	CKPT_SCHED_NICE = 2,	 /* nice holds its nice value */
};
struct ckpt_thread_sched {
	int32_t tid; /* a tid of THREADS */
	uint32_t flags;
	int32_t nice; /* -20 to 19 */
	uint32_t reserved;
	uint8_t cpus[CKPT_CPUSET_BYTES]; /* bit n of byte n / 8: CPU n */
};

struct ckpt_lock {
	int32_t fd; /* a descriptor of FDS on the locked file */
	uint32_t kind;
	uint32_t write; /* 1 exclusive / write lock, 0 shared / read lock */
	uint32_t reserved;
	int64_t start;
	int64_t end; /* last byte, -1 for "to the end of the file" */
};

/* PAGES section: chunks, each a header followed by npages * 4096 bytes
 * (CKPT_CHUNK_MAGIC, data 4096-aligned in the file), or by a 4-byte
 * compressed length, 4 reserved zero bytes and that many bytes of one zstd
 * frame (CKPT_ZCHUNK_MAGIC, header 8-aligned). The crc covers the header
 * (crc = 0) and the bytes that follow it as stored: the pages of a raw
 * chunk; the length, reserved word and frame of a compressed one. */
#define CKPT_CHUNK_MAGIC 0x4b4e4843u  /* "CHNK" */
#define CKPT_ZCHUNK_MAGIC 0x5a4e4843u /* "CHNZ" */
#define CKPT_ZCHUNK_MAX_PAGES 4096u   /* a compressed chunk holds at most 16 MiB */
/* A reference chunk (8-aligned, header only, crc over the header): its
 * pages are those at the same addresses in the parent generation's image
 * (header.parent_generation), which may refer further back. */
#define CKPT_RCHUNK_MAGIC 0x524e4843u /* "CHNR" */
struct ckpt_page_chunk {
	uint32_t magic;
	uint32_t area; /* index into AREAS */
	uint64_t addr; /* first page; inside the area */
	uint32_t npages;
	uint32_t crc; /* crc32c of the header (crc = 0) and the data */
};

/* PAGE_INDEX: one entry per page chunk, in file order: its header as
 * written (crc included) and where it is. A reader can then list the
 * chunks, and map or read them, without reading a header scattered every
 * megabyte through the file (at a lazy restart, most of the time it
 * took); the headers in PAGES must equal their entries. */
struct ckpt_chunk_entry {
	struct ckpt_page_chunk chunk;
	uint64_t offset; /* file offset of the chunk header */
	uint32_t zlen;	 /* compressed chunk: the frame length; otherwise 0 */
	uint32_t reserved;
};

/* PAGE_HASHES: a 128-bit XXH3 hash of every page the image holds or
 * refers to, so that the next checkpoint can refer to unchanged pages
 * instead of storing them again. Not needed to restore. */
struct ckpt_page_hash {
	uint64_t addr;
	uint64_t lo, hi;
};

/* PAGE_RUNS: the other pages the image holds or refers to, without
 * hashes: their mappings are write-tracked from this checkpoint on, so
 * the next one knows which are unchanged without comparing. Runs and
 * hashed pages do not overlap. Not needed to restore. */
struct ckpt_page_run {
	uint64_t addr;
	uint64_t npages;
};

#endif
