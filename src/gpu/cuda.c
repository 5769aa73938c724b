/* Loading the CUDA driver library at run time (see cuda.h). */
#include "gpu/cuda.h"

#include "coord/err.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

/* dlsym into a function pointer of any type. */
static int sym(struct gpu_driver *d, void *slot, const char *name, int required)
{
	void *f = dlsym(d->lib, name);
	if (!f && required)
		return ckpt_fail(
		    "the NVIDIA driver library %s has no %s: the driver is too old for "
		    "checkpointing GPU programs (it needs CUDA %d.%d, driver r570, or "
		    "newer)",
		    GPU_LIBCUDA, name, GPU_MIN_DRIVER_VERSION / 1000,
		    GPU_MIN_DRIVER_VERSION % 1000 / 10);
	memcpy(slot, &f, sizeof(f));
	return 0;
}

int gpu_driver_load(struct gpu_driver *d)
{
	memset(d, 0, sizeof(*d));
	d->lib = dlopen(GPU_LIBCUDA, RTLD_NOW | RTLD_LOCAL);
	if (!d->lib) {
		const char *e = dlerror();
		return ckpt_fail("cannot load the NVIDIA driver library %s (%s)", GPU_LIBCUDA,
				 e ? e : "not found");
	}
	if (sym(d, &d->get_version, "cuDriverGetVersion", 1) < 0 ||
	    sym(d, &d->init, "cuInit", 1) < 0 ||
	    sym(d, &d->get_error_string, "cuGetErrorString", 1) < 0 ||
	    sym(d, &d->get_error_name, "cuGetErrorName", 0) < 0)
		goto fail;
	int v = 0;
	if (d->get_version(&v) != GPU_CUDA_SUCCESS || v < GPU_MIN_DRIVER_VERSION) {
		ckpt_fail("the NVIDIA driver supports CUDA %d.%d; checkpointing GPU programs needs "
			  "CUDA %d.%d (driver r570) or newer",
			  v / 1000, v % 1000 / 10, GPU_MIN_DRIVER_VERSION / 1000,
			  GPU_MIN_DRIVER_VERSION % 1000 / 10);
		goto fail;
	}
	d->version = v;
	if (sym(d, &d->get_state, "cuCheckpointProcessGetState", 1) < 0 ||
	    sym(d, &d->lock, "cuCheckpointProcessLock", 1) < 0 ||
	    sym(d, &d->checkpoint, "cuCheckpointProcessCheckpoint", 1) < 0 ||
	    sym(d, &d->restore, "cuCheckpointProcessRestore", 1) < 0 ||
	    sym(d, &d->unlock, "cuCheckpointProcessUnlock", 1) < 0 ||
	    sym(d, &d->get_restore_tid, "cuCheckpointProcessGetRestoreThreadId", 0) < 0 ||
	    sym(d, &d->device_get, "cuDeviceGet", 0) < 0 ||
	    sym(d, &d->device_get_name, "cuDeviceGetName", 0) < 0 ||
	    /* cuda.h maps cuDeviceTotalMem to the _v2 symbol (size_t) */
	    sym(d, &d->device_total_mem, "cuDeviceTotalMem_v2", 0) < 0)
		goto fail;
	return 0;
fail:
	gpu_driver_close(d);
	return -1;
}

void gpu_driver_close(struct gpu_driver *d)
{
	if (d->lib)
		dlclose(d->lib);
	memset(d, 0, sizeof(*d));
}

void gpu_driver_error(const struct gpu_driver *d, int rc, char *out, size_t cap)
{
	const char *name = NULL, *text = NULL;
	if (d->get_error_name && d->get_error_name(rc, &name) != GPU_CUDA_SUCCESS)
		name = NULL;
	if (d->get_error_string && d->get_error_string(rc, &text) != GPU_CUDA_SUCCESS)
		text = NULL;
	snprintf(out, cap, "%s%s%s (CUresult %d)", name ? name : "", name && text ? ": " : "",
		 text	? text
		 : name ? ""
			: "unknown error",
		 rc);
}

const char *gpu_state_name(int state, char *buf, size_t cap)
{
	static const char *names[] = {"RUNNING", "LOCKED", "CHECKPOINTED", "FAILED"};
	if (state >= 0 && state < 4)
		return names[state];
	snprintf(buf, cap, "state %d", state);
	return buf;
}
