/* The checkpoint calls in a short-lived child (see helper.h). */
#include "gpu/helper.h"

#include "coord/err.h"
#include "coord/fsutil.h"
#include "gpu/cuda.h"
#include "gpu/detect.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void who(const struct gpu_proc *p, char *out, size_t cap)
{
	snprintf(out, cap, "pid %lld (%s)", (long long)p->ns_pid, p->cmd);
}

/* "pid N (cmd): what: CUDA_ERROR..." into job->err; returns -1. */
static int call_failed(struct gpu_job *job, const struct gpu_driver *d, const struct gpu_proc *p,
		       const char *what, int rc)
{
	char name[128], err[300];
	who(p, name, sizeof(name));
	gpu_driver_error(d, rc, err, sizeof(err));
	size_t n = strlen(job->err);
	snprintf(job->err + n, sizeof(job->err) - n, "%s%s: %s failed: %s", n ? "; " : "", name,
		 what, err);
	return -1;
}

static int restore_unlock(struct gpu_job *job, const struct gpu_driver *d, struct gpu_proc *p)
{
	int rc = 0;
	if (p->checkpointed) {
		struct gpu_plain_args a = {{0}};
		double t = now_ms();
		int r = d->restore((int)p->pid, &a);
		p->restore_ms = now_ms() - t;
		if (r != GPU_CUDA_SUCCESS)
			return call_failed(job, d, p, "cuCheckpointProcessRestore", r);
		p->checkpointed = 0;
	}
	if (p->locked) {
		struct gpu_plain_args a = {{0}};
		double t = now_ms();
		int r = d->unlock((int)p->pid, &a);
		p->unlock_ms = now_ms() - t;
		if (r != GPU_CUDA_SUCCESS)
			rc = call_failed(job, d, p, "cuCheckpointProcessUnlock", r);
		else
			p->locked = 0;
	}
	return rc;
}

/* One process: its state, then lock and copy device memory to the host. */
static int checkpoint_one(struct gpu_job *job, const struct gpu_driver *d, struct gpu_proc *p)
{
	int state = -1;
	int r = d->get_state((int)p->pid, &state);
	char name[128], buf[32], use[128];
	who(p, name, sizeof(name));
	gpu_describe_use(p->uses, use, sizeof(use));
	if (r == GPU_CUDA_ERROR_NOT_INITIALIZED || r == GPU_CUDA_ERROR_NOT_FOUND) {
		/* libcuda loaded but never used: an ordinary CPU process. One
		 * with a GPU device open must not be imaged without its GPU
		 * state. */
		if (p->uses & GPU_USE_DEVICE) {
			snprintf(
			    job->err, sizeof(job->err),
			    "%s has %s but the NVIDIA driver reports no CUDA state for it (%s); "
			    "its GPU state cannot be saved",
			    name, use,
			    r == GPU_CUDA_ERROR_NOT_FOUND ? "not found" : "not initialised");
			return -1;
		}
		return 0;
	}
	if (r != GPU_CUDA_SUCCESS)
		return call_failed(job, d, p, "cuCheckpointProcessGetState", r);
	if (state != GPU_STATE_RUNNING) {
		snprintf(job->err, sizeof(job->err),
			 "%s (%s) is in CUDA state %s; ckpt can only checkpoint a CUDA process "
			 "that is RUNNING (another tool may hold it locked or checkpointed)",
			 name, use, gpu_state_name(state, buf, sizeof(buf)));
		return -1;
	}
	p->cuda = 1;
	struct gpu_lock_args la = {.timeout_ms = GPU_LOCK_TIMEOUT_MS};
	double t = now_ms();
	r = d->lock((int)p->pid, &la);
	p->lock_ms = now_ms() - t;
	if (r != GPU_CUDA_SUCCESS)
		return call_failed(job, d, p,
				   r == GPU_CUDA_ERROR_TIMEOUT
				       ? "cuCheckpointProcessLock (its CUDA work did not finish "
					 "within the lock timeout)"
				       : "cuCheckpointProcessLock",
				   r);
	p->locked = 1;
	struct gpu_plain_args ca = {{0}};
	t = now_ms();
	r = d->checkpoint((int)p->pid, &ca);
	p->checkpoint_ms = now_ms() - t;
	if (r != GPU_CUDA_SUCCESS) {
		/* it may have got as far as CHECKPOINTED: undo what it is in */
		int now = -1;
		if (d->get_state((int)p->pid, &now) == GPU_CUDA_SUCCESS &&
		    now == GPU_STATE_CHECKPOINTED)
			p->checkpointed = 1;
		return call_failed(job, d, p, "cuCheckpointProcessCheckpoint", r);
	}
	p->checkpointed = 1;
	if (d->get_restore_tid && d->get_restore_tid((int)p->pid, &p->restore_tid) != 0)
		p->restore_tid = 0;
	return 0;
}

static void get_info(struct gpu_job *job, const struct gpu_driver *d)
{
	struct gpu_info *in = &job->info;
	int dev = 0;
	size_t mem = 0;
	in->version = d->version;
	if (d->init(0) != GPU_CUDA_SUCCESS || !d->device_get || !d->device_get_name ||
	    !d->device_total_mem || d->device_get(&dev, 0) != GPU_CUDA_SUCCESS ||
	    d->device_get_name(in->model, (int)sizeof(in->model), dev) != GPU_CUDA_SUCCESS ||
	    d->device_total_mem(&mem, dev) != GPU_CUDA_SUCCESS)
		return;
	in->model[sizeof(in->model) - 1] = '\0';
	in->mem = mem;
	in->known = 1;
}

static int child_run(struct gpu_job *job)
{
	struct gpu_driver d;
	if (gpu_driver_load(&d) < 0) {
		/* name who needs the driver: the first process, and how many more */
		char name[128] = "", use[128] = "", more[48] = "";
		if (job->n > 0) {
			who(&job->procs[0], name, sizeof(name));
			gpu_describe_use(job->procs[0].uses, use, sizeof(use));
		}
		if (job->n > 1)
			snprintf(more, sizeof(more), " and %d more process(es)", job->n - 1);
		if (job->op == GPU_OP_CHECKPOINT)
			snprintf(job->err, sizeof(job->err),
				 "%s uses the GPU (%s)%s, but its GPU state cannot be saved: %s",
				 name, use, more, ckpt_error());
		else
			snprintf(job->err, sizeof(job->err), "%s", ckpt_error());
		return -1;
	}
	int rc = 0;
	if (job->op == GPU_OP_INFO || job->want_info)
		get_info(job, &d);
	if (job->op == GPU_OP_INFO && !job->info.known) {
		snprintf(job->err, sizeof(job->err),
			 "the NVIDIA driver (CUDA %d.%d) finds no usable GPU here",
			 d.version / 1000, d.version % 1000 / 10);
		rc = -1;
	}
	if (job->op == GPU_OP_CHECKPOINT) {
		for (int i = 0; i < job->n && rc == 0; i++)
			rc = checkpoint_one(job, &d, &job->procs[i]);
		/* the program must run on: give back what was taken */
		if (rc < 0)
			for (int i = 0; i < job->n; i++)
				restore_unlock(job, &d, &job->procs[i]);
	} else if (job->op == GPU_OP_RESUME) {
		for (int i = 0; i < job->n; i++)
			if (job->procs[i].cuda && restore_unlock(job, &d, &job->procs[i]) < 0)
				rc = -1;
	} else if (job->op == GPU_OP_RECOVER) {
		for (int i = 0; i < job->n; i++) {
			struct gpu_proc *p = &job->procs[i];
			int state = -1;
			if (d.get_state((int)p->pid, &state) != GPU_CUDA_SUCCESS)
				continue;
			p->checkpointed = state == GPU_STATE_CHECKPOINTED;
			p->locked = p->checkpointed || state == GPU_STATE_LOCKED;
			if (restore_unlock(job, &d, p) < 0)
				rc = -1;
		}
	}
	gpu_driver_close(&d);
	return rc;
}

/* Reads exactly len bytes before the deadline (monotonic ms). */
static int read_until(int fd, void *buf, size_t len, double deadline)
{
	char *p = buf;
	while (len) {
		double left = deadline - now_ms();
		if (left <= 0)
			return -2;
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int r = poll(&pfd, 1, (int)left + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			continue;
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int gpu_run(struct gpu_job *job)
{
	static struct gpu_job result; /* ~10 KiB: not on the stack */
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return ckpt_fail_errno("cannot make a pipe for the GPU helper");
	job->err[0] = '\0';
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(p[0]);
		close(p[1]);
		errno = e;
		return ckpt_fail_errno("cannot start the GPU helper");
	}
	if (pid == 0) {
		close(p[0]);
		int rc = child_run(job);
		_exit(write_all(p[1], job, sizeof(*job)) < 0 ? 3 : rc < 0 ? 1 : 0);
	}
	close(p[1]);
	int r = read_until(p[0], &result, sizeof(result), now_ms() + GPU_HELPER_TIMEOUT_MS);
	close(p[0]);
	if (r == -2)
		kill(pid, SIGKILL);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (r == -2) {
		ckpt_fail("the GPU helper did not finish within %d s and was killed",
			  GPU_HELPER_TIMEOUT_MS / 1000);
		return -2;
	}
	if (r < 0) {
		if (WIFSIGNALED(status))
			ckpt_fail("the GPU helper was killed by signal %d (a crash in the NVIDIA "
				  "driver library?)",
				  WTERMSIG(status));
		else
			ckpt_fail("the GPU helper exited with status %d without an answer",
				  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		return -2;
	}
	*job = result;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	return ckpt_fail("%s", job->err[0] ? job->err : "the GPU helper failed");
}
