/* A checkpoint of a program that uses an NVIDIA GPU (docs/gpu.md).
 *
 * The CUDA driver saves a process's GPU state itself: Lock waits for the
 * CUDA work in flight and blocks further CUDA calls, Checkpoint copies
 * device memory into the process's host memory and releases the GPU.
 * The driver does that through a thread of its own inside the process,
 * and the agent stops every thread at SUSPEND, so the order is: Lock and
 * Checkpoint while the program runs, then SUSPEND/CAPTURE/CONTINUE as for
 * any program (the image holds the device memory as host memory), then
 * Restore and Unlock once the threads run again. */
#include "coord/coord_int.h"

#include "coord/err.h"
#include "coord/kvfile.h"
#include "coord/log.h"
#include "gpu/detect.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* THE pid handed to the driver's cuCheckpointProcess* calls. The
 * supervisor runs in the parent pid namespace of the program, and the
 * calls are made from its helper child, so this is the process's pid as
 * the supervisor sees it (SO_PEERCRED), not the pid inside the program's
 * namespace. That the driver wants the caller's view is an assumption to
 * verify on a GPU machine (docs/gpu.md, "To verify on a GPU"). */
static pid_t gpu_api_pid(const struct conn *k)
{
	return k->peer_pid;
}

static struct gpu_job *job_of(struct coord *c)
{
	if (!c->gpu_job)
		c->gpu_job = calloc(1, sizeof(*c->gpu_job));
	return c->gpu_job;
}

static void add_proc(struct gpu_job *job, const struct conn *k, int uses)
{
	struct gpu_proc *p = &job->procs[job->n++];
	memset(p, 0, sizeof(*p));
	p->pid = gpu_api_pid(k);
	p->ns_pid = k->pid;
	p->uses = uses;
	snprintf(p->cmd, sizeof(p->cmd), "%.63s", k->cmd);
}

/* After a helper that gave no answer: whatever the driver holds of these
 * processes is given back, so that the program can run on. */
static void recover(struct coord *c, struct gpu_job *job)
{
	job->op = GPU_OP_RECOVER;
	if (gpu_run(job) != 0)
		ckpt_log(c->o->exec_log,
			 "GPU: cannot give the program's GPU state back after a failed helper: %s; "
			 "its CUDA calls may block from now on",
			 ckpt_error());
}

int gpuckpt_before(struct coord *c, char *why, size_t cap)
{
	memset(&c->ck.gpu, 0, sizeof(c->ck.gpu));
	c->ck.gpu_held = 0;
	struct gpu_job *job = NULL;
	for (size_t i = 0; i < c->nconns; i++) {
		struct conn *k = c->conns[i];
		if (k->fd < 0 || k->role != ROLE_AGENT || k->peer_pid <= 0)
			continue;
		int uses = gpu_detect(k->peer_pid);
		if (!uses)
			continue;
		if (!job) {
			if (!(job = job_of(c))) {
				snprintf(why, cap, "out of memory in the supervisor");
				return -1;
			}
			memset(job, 0, sizeof(*job));
		}
		if (job->n == GPU_MAX_PROCS) {
			snprintf(why, cap, "more than %d processes use the GPU", GPU_MAX_PROCS);
			return -1;
		}
		add_proc(job, k, uses);
	}
	if (!job)
		return 0;
	job->op = GPU_OP_CHECKPOINT;
	job->want_info = !c->gpu_info.known;
	ckpt_log(c->o->coord_log, "gen=%llu: GPU lock and checkpoint -> %d process(es)",
		 (unsigned long long)c->ck.gen, job->n);
	int r = gpu_run(job);
	if (r < 0) {
		/* the driver's message names the process and the reason */
		snprintf(why, cap, "GPU: %s", ckpt_error());
		if (r == -2)
			recover(c, job);
		return -1;
	}
	if (job->info.known)
		c->gpu_info = job->info;
	for (int i = 0; i < job->n; i++) {
		struct gpu_proc *p = &job->procs[i];
		if (!p->cuda) {
			ckpt_log(c->o->coord_log,
				 "pid %lld has libcuda loaded but no CUDA state: a CPU process",
				 (long long)p->ns_pid);
			continue;
		}
		c->ck.gpu.n++;
		c->ck.gpu.lock_ms += p->lock_ms;
		c->ck.gpu.checkpoint_ms += p->checkpoint_ms;
		ckpt_log(c->o->coord_log,
			 "pid %lld (host pid %d): GPU locked in %.1f ms, checkpointed in %.1f ms "
			 "(driver restore thread %d)",
			 (long long)p->ns_pid, (int)p->pid, p->lock_ms, p->checkpoint_ms,
			 p->restore_tid);
	}
	c->ck.gpu_held = c->ck.gpu.n > 0;
	if (c->ck.gpu_held && c->o->launch.no_namespaces && !c->gpu_warned_no_namespaces) {
		c->gpu_warned_no_namespaces = 1;
		ckpt_log(
		    c->o->exec_log,
		    "GPU: this run has no pid namespaces of its own, so its checkpoints of GPU "
		    "state can be restarted only where ckpt can make them (user namespaces "
		    "allowed, CKPT_NO_NAMESPACES unset): the driver gives GPU state back only "
		    "to the same thread ids");
	}
	return 0;
}

void gpuckpt_give_back(struct coord *c, const char *when)
{
	struct gpu_job *job = c->gpu_job;
	if (!c->ck.gpu_held || !job)
		return;
	c->ck.gpu_held = 0;
	job->op = GPU_OP_RESUME;
	ckpt_log(c->o->coord_log, "gen=%llu: GPU restore and unlock (%s)",
		 (unsigned long long)c->ck.gen, when);
	int r = gpu_run(job);
	for (int i = 0; i < job->n; i++) {
		c->ck.gpu.restore_ms += job->procs[i].restore_ms;
		c->ck.gpu.unlock_ms += job->procs[i].unlock_ms;
	}
	if (r == 0)
		return;
	ckpt_log(c->o->exec_log,
		 "GPU: the program's GPU state could not be given back %s: %s; its CUDA calls "
		 "fail or block from now on: stop it and resume from the last checkpoint with: %s",
		 when, ckpt_error(), c->o->restart_hint);
	if (r == -2)
		recover(c, job);
}

int gpuckpt_manifest(struct coord *c, struct kvfile *kv)
{
	const struct gpu_stats *g = &c->ck.gpu;
	if (!g->n)
		return 0;
	int rc = kv_addf(kv, "gpu_processes", "%d", g->n);
	for (int i = 0; c->gpu_job && i < c->gpu_job->n; i++)
		if (c->gpu_job->procs[i].cuda)
			rc |=
			    kv_addf(kv, "gpu_pid", "%lld", (long long)c->gpu_job->procs[i].ns_pid);
	rc |= kv_addf(kv, "gpu_lock_ms", "%.0f", g->lock_ms);
	rc |= kv_addf(kv, "gpu_checkpoint_ms", "%.0f", g->checkpoint_ms);
	rc |= kv_addf(kv, "gpu_restore_ms", "%.0f", g->restore_ms);
	rc |= kv_addf(kv, "gpu_unlock_ms", "%.0f", g->unlock_ms);
	if (c->gpu_info.known) {
		rc |= kv_add(kv, "gpu_model", c->gpu_info.model);
		rc |= kv_addf(kv, "gpu_memory", "%llu", (unsigned long long)c->gpu_info.mem);
		rc |= kv_addf(kv, "gpu_driver", "%d", c->gpu_info.version);
	}
	return rc ? -1 : 0;
}

void gpuckpt_summary(const struct gpu_stats *g, char *out, size_t cap)
{
	if (!g->n) {
		out[0] = '\0';
		return;
	}
	snprintf(out, cap,
		 "; GPU: %d process(es), lock %.0f ms, device-to-host %.0f ms, restore %.0f ms, "
		 "unlock %.0f ms",
		 g->n, g->lock_ms, g->checkpoint_ms, g->restore_ms, g->unlock_ms);
}

void gpuckpt_on_restored(struct coord *c)
{
	if (c->gpu_restored || !c->o->ngpu_pids)
		return;
	struct gpu_job *job = job_of(c);
	if (!job)
		return;
	memset(job, 0, sizeof(*job));
	/* Only when all are back: a process still restoring stops none. */
	for (size_t i = 0; i < c->o->ngpu_pids; i++) {
		struct conn *found = NULL;
		for (size_t j = 0; j < c->nconns && !found; j++) {
			struct conn *k = c->conns[j];
			if (k->fd >= 0 && k->role == ROLE_AGENT && k->restored &&
			    k->pid == c->o->gpu_pids[i] && k->peer_pid > 0)
				found = k;
		}
		if (!found)
			return;
		add_proc(job, found, 0);
		struct gpu_proc *p = &job->procs[job->n - 1];
		/* saved as CHECKPOINTED (locked): the image says so */
		p->cuda = p->locked = p->checkpointed = 1;
	}
	c->gpu_restored = 1;
	job->op = GPU_OP_RESUME;
	int r = gpu_run(job);
	struct gpu_stats g = {.n = job->n};
	for (int i = 0; i < job->n; i++) {
		g.restore_ms += job->procs[i].restore_ms;
		g.unlock_ms += job->procs[i].unlock_ms;
	}
	if (r == 0) {
		ckpt_log(c->o->exec_log,
			 "restored the GPU state of %d process(es): restore (host-to-device) %.0f "
			 "ms, unlock %.0f ms",
			 g.n, g.restore_ms, g.unlock_ms);
		return;
	}
	/* The program would block at its next CUDA call for ever: end it. */
	ckpt_log(c->o->exec_log,
		 "restart from generation %llu failed: the GPU state could not be restored: %s; "
		 "ending the program (the run directory is unchanged)",
		 (unsigned long long)c->o->restored_gen, ckpt_error());
	fprintf(stderr, "ckpt: restart from generation %llu failed: GPU: %s\n",
		(unsigned long long)c->o->restored_gen, ckpt_error());
	if (kill(c->o->launch.init_pid, SIGKILL) < 0)
		ckpt_log(c->o->exec_log, "cannot kill the namespace's init (host pid %d)",
			 (int)c->o->launch.init_pid);
}
