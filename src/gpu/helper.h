/* The CUDA driver's checkpoint calls, made in a short-lived child of the
 * supervisor: the long-lived supervisor never loads libcuda nor
 * initialises CUDA, and a driver that crashes or hangs takes only the
 * child with it. The supervisor waits for the child (its poll loop pauses
 * meanwhile; the program's CUDA calls are blocked by the lock anyway). */
#ifndef CKPT_GPU_HELPER_H
#define CKPT_GPU_HELPER_H

#include <stdint.h>
#include <sys/types.h>

#define GPU_MAX_PROCS 64
/* How long cuCheckpointProcessLock waits for the program's CUDA calls in
 * flight (the same bound as for stopping threads). */
#define GPU_LOCK_TIMEOUT_MS 10000
/* A helper that has not finished after this long is killed. Copying device
 * memory to the host runs at several GB/s; this allows ~100 GiB. */
#define GPU_HELPER_TIMEOUT_MS (300 * 1000)

enum gpu_op {
	/* For each process: cuCheckpointProcessGetState, then Lock and
	 * Checkpoint if it has CUDA state. On any failure, what was locked
	 * is restored and unlocked again before the helper returns. */
	GPU_OP_CHECKPOINT,
	/* Restore, then Unlock, each process with cuda set. Every process is
	 * tried even when one fails. */
	GPU_OP_RESUME,
	/* After a helper died: Restore/Unlock whatever the driver reports as
	 * CHECKPOINTED or LOCKED. */
	GPU_OP_RECOVER,
	/* Only the model and memory of the first GPU (info). */
	GPU_OP_INFO,
};

struct gpu_proc {
	pid_t pid;	/* as the driver API takes it: see gpu_api_pid() */
	int64_t ns_pid; /* in the program's pid namespace, for messages */
	char cmd[64];	/* for messages */
	int uses;	/* GPU_USE_* (detect.h) */
	/* results */
	int cuda;		  /* has CUDA state (checkpoint: locked and saved) */
	int locked, checkpointed; /* what the helper left it in */
	int restore_tid;	  /* the driver's restore thread, 0: unknown */
	double lock_ms, checkpoint_ms, restore_ms, unlock_ms;
};

struct gpu_info {
	int known; /* 0: cuInit or the device calls failed */
	char model[128];
	uint64_t mem; /* bytes */
	int version;  /* cuDriverGetVersion */
};

struct gpu_job {
	int op;
	int want_info; /* GPU_OP_CHECKPOINT: also fill info */
	int n;
	struct gpu_proc procs[GPU_MAX_PROCS];
	struct gpu_info info;
	char err[1024];
};

/* Runs job in a child and copies its results back into job. Returns 0;
 * -1 with the reason set (ckpt_error) when the driver refused, and
 * job->procs shows what was done; or -2 with the reason when the helper
 * crashed or hung (was killed): job->procs is as before the call and the
 * driver may have been left in any state (GPU_OP_RECOVER cleans up). */
int gpu_run(struct gpu_job *job);

#endif
