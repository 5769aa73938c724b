/* The parts of NVIDIA's CUDA driver API (libcuda.so.1) that checkpointing
 * a GPU program needs, loaded with dlopen at run time: ckpt builds and
 * runs on machines without NVIDIA software, and only a checkpoint of a
 * program that uses a GPU needs the library. Declarations are written
 * here from the driver API's documentation (CUDA 12.8, driver r570, added
 * the process checkpoint calls); no NVIDIA header is needed to build. */
#ifndef CKPT_GPU_CUDA_H
#define CKPT_GPU_CUDA_H

#include <stddef.h>
#include <stdint.h>

/* cuDriverGetVersion's encoding: 1000 * major + 10 * minor. */
#define GPU_MIN_DRIVER_VERSION 12080
#define GPU_LIBCUDA "libcuda.so.1"

/* CUresult values ckpt tells apart; any other is reported by name. */
enum {
	GPU_CUDA_SUCCESS = 0,
	GPU_CUDA_ERROR_NOT_INITIALIZED = 3,
	GPU_CUDA_ERROR_NO_DEVICE = 100,
	GPU_CUDA_ERROR_NOT_FOUND = 500,
	GPU_CUDA_ERROR_TIMEOUT = 909,
};

/* CUprocessState */
enum gpu_proc_state {
	GPU_STATE_RUNNING = 0,
	GPU_STATE_LOCKED = 1,
	GPU_STATE_CHECKPOINTED = 2,
	GPU_STATE_FAILED = 3,
};

/* CUcheckpointLockArgs: 64 bytes, reserved fields zero. */
struct gpu_lock_args {
	unsigned int timeout_ms; /* 0: wait for ever */
	unsigned int reserved0;
	uint64_t reserved1[7];
};

/* CUcheckpointCheckpointArgs, CUcheckpointRestoreArgs and
 * CUcheckpointUnlockArgs: 64 bytes each, all zero for what ckpt does
 * (the restore arguments' GPU remapping is not used). */
struct gpu_plain_args {
	uint64_t reserved[8];
};

struct gpu_driver {
	void *lib;
	int version; /* cuDriverGetVersion */
	int (*get_version)(int *);
	int (*init)(unsigned int);
	int (*get_error_string)(int, const char **);
	int (*get_error_name)(int, const char **);
	int (*get_state)(int pid, int *state);
	int (*lock)(int pid, struct gpu_lock_args *);
	int (*checkpoint)(int pid, struct gpu_plain_args *);
	int (*restore)(int pid, struct gpu_plain_args *);
	int (*unlock)(int pid, struct gpu_plain_args *);
	/* optional: only named in messages */
	int (*get_restore_tid)(int pid, int *tid);
	int (*device_get)(int *dev, int ordinal);
	int (*device_get_name)(char *name, int len, int dev);
	int (*device_total_mem)(size_t *bytes, int dev);
};

/* Loads libcuda.so.1 and every call above, and checks that the driver is
 * recent enough for the checkpoint calls. Returns 0, or -1 with the
 * reason set (ckpt_error): no library, a driver without the calls, or one
 * older than GPU_MIN_DRIVER_VERSION. Nothing is initialised (no cuInit). */
int gpu_driver_load(struct gpu_driver *d);
void gpu_driver_close(struct gpu_driver *d);

/* "CUDA_ERROR_X: description (N)" for a CUresult. */
void gpu_driver_error(const struct gpu_driver *d, int rc, char *out, size_t cap);

/* "RUNNING", "LOCKED", ... or "state N". */
const char *gpu_state_name(int state, char *buf, size_t cap);

#endif
