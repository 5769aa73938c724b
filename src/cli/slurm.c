#include "cli/slurm.h"

#include "coord/err.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* squeue and scontrol ask slurmctld, which answers within its
 * MessageTimeout (10 s by default) even when busy; past this, give up
 * rather than hold the job's last seconds. */
#define SLURM_CMD_TIMEOUT_MS 30000

static const char *env_or_null(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

int slurm_job(struct slurm_job *j)
{
	j->job_id = env_or_null("SLURM_JOB_ID");
	j->array_job_id = env_or_null("SLURM_ARRAY_JOB_ID");
	j->array_task_id = env_or_null("SLURM_ARRAY_TASK_ID");
	j->restart_count = env_or_null("SLURM_RESTART_COUNT");
	j->node = env_or_null("SLURMD_NODENAME");
	if (!j->array_job_id || !j->array_task_id)
		j->array_job_id = j->array_task_id = NULL;
	return j->job_id != NULL;
}

void slurm_describe(const struct slurm_job *j, char *buf, size_t len)
{
	char array[96] = "";
	if (j->array_job_id)
		snprintf(array, sizeof(array), " (array %s_%s)", j->array_job_id, j->array_task_id);
	snprintf(buf, len, "job %s%s, restart count %s, node %s", j->job_id ? j->job_id : "?",
		 array, j->restart_count ? j->restart_count : "0", j->node ? j->node : "?");
}

int slurm_default_id(const struct slurm_job *j, char *buf, size_t len)
{
	int n = j->array_job_id ? snprintf(buf, len, "job%s_%s", j->array_job_id, j->array_task_id)
				: snprintf(buf, len, "job%s", j->job_id);
	if (n < 0 || (size_t)n >= len)
		return ckpt_fail("the Slurm job id is too long for a run directory name");
	return 0;
}

int slurm_parse_time_left(const char *s, int64_t *secs)
{
	if (!strcmp(s, "UNLIMITED") || !strcmp(s, "NOT_SET") || !strcmp(s, "INVALID"))
		return 0;
	/* Up to four numbers: days-hours:minutes:seconds, days and hours
	 * optional; a negative value never comes from squeue. */
	int64_t parts[4];
	int n = 0, days = 0;
	const char *p = s;
	while (*p) {
		if (*p < '0' || *p > '9' || n == 4)
			return -1;
		int64_t v = 0;
		while (*p >= '0' && *p <= '9') {
			v = v * 10 + (*p - '0');
			if (v > 100000000)
				return -1;
			p++;
		}
		parts[n++] = v;
		if (*p == '-' && n == 1 && !days) {
			days = 1;
			p++;
		} else if (*p == ':') {
			p++;
			if (!*p)
				return -1;
		} else if (*p) {
			return -1;
		}
	}
	int64_t d = 0, h = 0, m, sec;
	int clock = n - days; /* fields after the day */
	if (n == 0 || clock < 1 || clock > 3 || (days && clock != 3))
		return -1;
	int i = 0;
	if (days)
		d = parts[i++];
	/* "S", "M:S", "H:M:S" or "D-H:M:S" */
	if (clock == 3) {
		h = parts[i++];
		m = parts[i++];
		sec = parts[i++];
	} else if (clock == 2) {
		m = parts[i++];
		sec = parts[i++];
	} else {
		m = 0;
		sec = parts[i++];
	}
	*secs = ((d * 24 + h) * 60 + m) * 60 + sec;
	return 1;
}

/* Run argv (found through PATH) with stdin from /dev/null, collecting
 * stdout and stderr into out. Returns the wait status, or -1 with a
 * message. */
static int run_capture(char *const argv[], char *out, size_t cap)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return ckpt_fail_errno("pipe");
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return ckpt_fail_errno("fork");
	}
	if (pid == 0) {
		/* The supervisor blocks the signals it reads from a signalfd;
		 * the command must get the usual ones. */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		int null = open("/dev/null", O_RDONLY);
		if (null < 0 || dup2(null, 0) < 0 || dup2(p[1], 1) < 0 || dup2(p[1], 2) < 0)
			_exit(126);
		execvp(argv[0], argv);
		dprintf(1, "cannot run %s: %s", argv[0], strerror(errno));
		_exit(127);
	}
	close(p[1]);
	size_t len = 0;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int timed_out = 0;
	for (;;) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long left = SLURM_CMD_TIMEOUT_MS - ((now.tv_sec - t0.tv_sec) * 1000 +
						    (now.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0) {
			timed_out = 1;
			kill(pid, SIGKILL);
			break;
		}
		struct pollfd pfd = {.fd = p[0], .events = POLLIN};
		int r = poll(&pfd, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			break;
		if (r == 0)
			continue;
		char tmp[512];
		ssize_t got = read(p[0], tmp, sizeof(tmp));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		size_t take = (size_t)got < cap - 1 - len ? (size_t)got : cap - 1 - len;
		memcpy(out + len, tmp, take);
		len += take;
	}
	close(p[0]);
	out[len] = '\0';
	while (len && (out[len - 1] == '\n' || out[len - 1] == ' '))
		out[--len] = '\0';
	for (char *c = out; *c; c++)
		if (*c == '\n')
			*c = ' '; /* one-line messages */
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return ckpt_fail_errno("waitpid %s", argv[0]);
	}
	if (timed_out)
		return ckpt_fail("%s did not answer within %d s", argv[0],
				 SLURM_CMD_TIMEOUT_MS / 1000);
	return status;
}

int slurm_time_left(const char *job_id, int64_t *secs)
{
	char out[1024];
	char *argv[] = {"squeue", "-h", "-j", (char *)job_id, "-o", "%L", NULL};
	int st = run_capture(argv, out, sizeof(out));
	if (st < 0)
		return ckpt_fail("cannot read job %s's time left with squeue: %s", job_id,
				 ckpt_error());
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return ckpt_fail(
		    "cannot read job %s's time left: `squeue -h -j %s -o %%L` failed: %s", job_id,
		    job_id, out[0] ? out : "(no message)");
	int r = slurm_parse_time_left(out, secs);
	if (r < 0)
		return ckpt_fail(
		    "cannot read job %s's time left: `squeue -h -j %s -o %%L` said '%s'", job_id,
		    job_id, out);
	return r;
}

int slurm_requeue(const char *job_id)
{
	char out[1024];
	char *argv[] = {"scontrol", "requeue", (char *)job_id, NULL};
	int st = run_capture(argv, out, sizeof(out));
	if (st < 0)
		return -1;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return ckpt_fail("`scontrol requeue %s` failed: %s", job_id,
				 out[0] ? out : "(no message)");
	return 0;
}
