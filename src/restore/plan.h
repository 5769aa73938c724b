/* The restore plan: everything the freestanding final stage needs, laid
 * out by the prepare stage inside the blob region (a hole of the restored
 * address space), so that nothing it reads is unmapped under it. Plain
 * data only: the final stage has no libc and no relocations. */
#ifndef CKPT_RESTORE_PLAN_H
#define CKPT_RESTORE_PLAN_H

#include <stdint.h>

#include "image/format.h"

enum plan_op {
	PLAN_MOVE = 1,	      /* mremap the staged copy into place */
	PLAN_FRESH = 2,	      /* new anonymous memory, no content */
	PLAN_FRESH_COPY = 3,  /* new anonymous memory (stack), staged pages copied in */
	PLAN_FILE = 4,	      /* private file mapping, staged pages copied over it */
	PLAN_FILE_SHARED = 5, /* shared file mapping */
	PLAN_SHARED_ANON = 6, /* shared anonymous memory, staged pages copied in */
};

struct plan_area {
	uint64_t start, end;
	uint64_t staging; /* 0: nothing staged */
	uint64_t bitmap;  /* staged pages to copy (one bit a page), 0 for MOVE */
	uint64_t file_offset;
	uint32_t op;
	uint32_t prot;
	int32_t fd;
	uint32_t growsdown;
};

struct plan_thread {
	struct ckpt_thread t;
	int64_t new_tid;    /* as created (differs from t.tid without pid namespaces) */
	uint64_t stack_top; /* temporary stack inside the blob region */
	/* what the thread sets before it returns to the program (flags
	 * CKPT_SCHED_*): its affinity cut to the CPUs this restart may use */
	uint32_t sched_flags;
	int32_t nice;
	uint8_t cpus[CKPT_CPUSET_BYTES];
};

/* Kernel's struct prctl_mm_map (linux/prctl.h) */
struct plan_mm_map {
	uint64_t start_code, end_code, start_data, end_data;
	uint64_t start_brk, brk, start_stack;
	uint64_t arg_start, arg_end, env_start, env_end;
	uint64_t auxv;
	uint32_t auxv_size;
	uint32_t exe_fd;
};

#define PLAN_MAX_SPECIAL 4
#define PLAN_MAX_CLOSE 8192

struct plan {
	uint64_t blob_start, blob_end;
	uint64_t unmap_top; /* everything below, outside the blob, is unmapped */
	/* vDSO and vvar areas: where they are now, in the slot, and their target */
	uint32_t nspecial;
	uint64_t special_cur[PLAN_MAX_SPECIAL], special_len[PLAN_MAX_SPECIAL];
	uint64_t special_slot[PLAN_MAX_SPECIAL], special_target[PLAN_MAX_SPECIAL];

	uint32_t nareas, nthreads;
	struct plan_area *areas;
	struct plan_thread *threads; /* main thread included */

	struct ckpt_sigaction sigactions[CKPT_NSIG];
	struct plan_mm_map mm;
	uint64_t auxv[2 * CKPT_MAX_AUXV];
	uint32_t rseq_len, rseq_sig;
	/* restart without pid namespaces: threads get new ids, written into
	 * glibc's struct pthread at tid_offset from the thread pointer */
	uint32_t new_ids;
	int32_t tid_offset;
	uint64_t shared_pending;   /* raised again once every thread exists */
	uint32_t ntimers;	   /* made again once every thread exists */
	struct ckpt_timer *timers; /* POSIX ones in ascending id order */
	uint32_t nsiginfo;	   /* pending signals with their siginfo, in order */
	struct ckpt_siginfo *siginfo;

	uint64_t restore_info_addr;
	struct ckpt_restore_info restore_info;

	int32_t err_fd; /* where the final stage reports a failure */
	uint32_t nclose;
	int32_t close_fds[PLAN_MAX_CLOSE];
	_Atomic uint32_t threads_started; /* futex: bumped by each new thread */
	char errbuf[256];
};

/* Entry point of the blob, at offset 0. */
typedef void (*final_entry_fn)(struct plan *plan);

#endif
