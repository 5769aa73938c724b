/* Does a process use an NVIDIA GPU? Read from /proc by the supervisor at
 * each checkpoint, for every process of the computation. */
#ifndef CKPT_GPU_DETECT_H
#define CKPT_GPU_DETECT_H

#include <stddef.h>
#include <sys/types.h>

/* Paths of NVIDIA's device files (/dev/nvidia0, nvidiactl, nvidia-uvm...). */
#define GPU_DEVICE_PREFIX "/dev/nvidia"

enum {
	GPU_USE_LIBCUDA = 1,	   /* libcuda.so mapped */
	GPU_USE_DEVICE_OPEN = 2,   /* a descriptor on /dev/nvidia* */
	GPU_USE_DEVICE_MAPPED = 4, /* a mapping of /dev/nvidia* */
};
#define GPU_USE_DEVICE (GPU_USE_DEVICE_OPEN | GPU_USE_DEVICE_MAPPED)

/* GPU_USE_* flags of host pid hpid (0: none, or the process is gone). */
int gpu_detect(pid_t hpid);

/* "libcuda mapped, /dev/nvidia* open" for messages. */
void gpu_describe_use(int uses, char *out, size_t cap);

#endif
