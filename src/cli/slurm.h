/* Slurm awareness (docs/slurm.md): what ckpt learns from a job's
 * environment, the time left before the job's limit (squeue), and
 * requeueing the job (scontrol requeue). Both commands are found through
 * PATH, as a job script would find them. */
#ifndef CKPT_CLI_SLURM_H
#define CKPT_CLI_SLURM_H

#include <stddef.h>
#include <stdint.h>

struct slurm_job {
	const char *job_id;	   /* SLURM_JOB_ID; NULL: not in a Slurm job */
	const char *array_job_id;  /* SLURM_ARRAY_JOB_ID; NULL: not an array task */
	const char *array_task_id; /* SLURM_ARRAY_TASK_ID */
	const char *restart_count; /* SLURM_RESTART_COUNT; NULL on the first run */
	const char *node;	   /* SLURMD_NODENAME */
};

/* Fills j from the environment; returns 1 inside a Slurm job, else 0. */
int slurm_job(struct slurm_job *j);

/* "job 1234 (array 1230_4), restart count 2, node n01" */
void slurm_describe(const struct slurm_job *j, char *buf, size_t len);

/* The id ckpt run gives a run inside a job when no --id is given:
 * "job<ARRAY_JOB_ID>_<TASK>" for an array task, else "job<JOB_ID>". Both
 * stay the same when Slurm requeues the job. Returns 0, or -1 when it
 * does not fit. */
int slurm_default_id(const struct slurm_job *j, char *buf, size_t len);

/* Seconds left before the job's time limit, from `squeue -h -j ID -o %L`.
 * Returns 1 with *secs set, 0 when the job has no limit, -1 with a
 * message when squeue fails or says something else. */
int slurm_time_left(const char *job_id, int64_t *secs);

/* `scontrol requeue ID`. Returns 0, or -1 with a message holding what
 * scontrol said. */
int slurm_requeue(const char *job_id);

/* Parse squeue's %L: "[[D-]H:]M:S" (also "UNLIMITED", "NOT_SET",
 * "INVALID": no limit). Exposed for tests. */
int slurm_parse_time_left(const char *s, int64_t *secs);

#endif
