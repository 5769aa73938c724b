/* A stand-in for NVIDIA's libcuda.so.1, for testing ckpt's GPU support on
 * machines without a GPU. It implements the calls ckpt uses; the
 * checkpoint calls only record themselves. Set by the environment:
 *   CKPT_FAKE_CUDA_LOG      file each call appends "CALL PID nspid=NS rc=RC" to
 *   CKPT_FAKE_CUDA_VERSION  what cuDriverGetVersion says (default 12080)
 *   CKPT_FAKE_CUDA_FAIL     call that fails: state, lock, checkpoint, restore,
 *                           unlock (CUDA_ERROR_UNKNOWN, 999)
 *   CKPT_FAKE_CUDA_STATE    none: GetState says CUDA_ERROR_NOT_FOUND (no CUDA
 *                           state); running, locked, checkpointed, failed:
 *                           that state; unset: from the calls logged so far
 *   CKPT_FAKE_CUDA_MODEL, CKPT_FAKE_CUDA_MEM  the device (cuDeviceGetName,
 *                           cuDeviceTotalMem), default "Fake GPU", 16 GiB */
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

enum { OK = 0, NOT_FOUND = 500, UNKNOWN = 999 };

static const char *env(const char *name, const char *def)
{
	const char *v = getenv(name);
	return v && *v ? v : def;
}

/* The pid as the process sees itself, from /proc/PID/status NSpid (last
 * field): tells the test which process the pid named. */
static void nspid_of(int pid, char *out, size_t cap)
{
	char path[64], line[256];
	snprintf(out, cap, "?");
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "NSpid:", 6) == 0) {
			char *last = strrchr(line, '\t');
			last = last ? last + 1 : line + 6;
			last[strcspn(last, "\n")] = '\0';
			snprintf(out, cap, "%.31s", last);
		}
	fclose(f);
}

static int record(const char *call, int pid)
{
	int rc = strcmp(env("CKPT_FAKE_CUDA_FAIL", ""), call) == 0 ? UNKNOWN : OK;
	const char *log = getenv("CKPT_FAKE_CUDA_LOG");
	if (log) {
		char ns[32], line[160];
		nspid_of(pid, ns, sizeof(ns));
		int n = snprintf(line, sizeof(line), "%s %d nspid=%s rc=%d\n", call, pid, ns, rc);
		int fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (fd >= 0) {
			if (write(fd, line, (size_t)n) != n)
				rc = UNKNOWN;
			close(fd);
		}
	}
	return rc;
}

/* State from the successful calls logged for pid. */
static int logged_state(int pid)
{
	int state = 0;
	FILE *f = fopen(env("CKPT_FAKE_CUDA_LOG", "/nonexistent"), "re");
	if (!f)
		return state;
	char call[32];
	int p, rc;
	while (fscanf(f, "%31s %d nspid=%*s rc=%d", call, &p, &rc) == 3) {
		if (p != pid || rc != 0)
			continue;
		if (!strcmp(call, "lock") || !strcmp(call, "restore"))
			state = 1;
		else if (!strcmp(call, "checkpoint"))
			state = 2;
		else if (!strcmp(call, "unlock"))
			state = 0;
	}
	fclose(f);
	return state;
}

EXPORT int cuDriverGetVersion(int *v)
{
	*v = atoi(env("CKPT_FAKE_CUDA_VERSION", "12080"));
	return OK;
}

EXPORT int cuInit(unsigned flags)
{
	(void)flags;
	return OK;
}

EXPORT int cuGetErrorString(int rc, const char **s)
{
	*s = rc == NOT_FOUND ? "named symbol not found" : "unknown error (fake)";
	return OK;
}

EXPORT int cuGetErrorName(int rc, const char **s)
{
	*s = rc == NOT_FOUND ? "CUDA_ERROR_NOT_FOUND" : "CUDA_ERROR_UNKNOWN";
	return OK;
}

EXPORT int cuCheckpointProcessGetState(int pid, int *state)
{
	int rc = record("state", pid);
	const char *s = env("CKPT_FAKE_CUDA_STATE", "");
	static const char *names[] = {"running", "locked", "checkpointed", "failed"};
	if (rc != OK)
		return rc;
	if (!strcmp(s, "none"))
		return NOT_FOUND;
	*state = logged_state(pid);
	for (int i = 0; i < 4; i++)
		if (!strcmp(s, names[i]))
			*state = i;
	return OK;
}

EXPORT int cuCheckpointProcessLock(int pid, void *args)
{
	(void)args;
	return record("lock", pid);
}

EXPORT int cuCheckpointProcessCheckpoint(int pid, void *args)
{
	(void)args;
	return record("checkpoint", pid);
}

EXPORT int cuCheckpointProcessRestore(int pid, void *args)
{
	(void)args;
	return record("restore", pid);
}

EXPORT int cuCheckpointProcessUnlock(int pid, void *args)
{
	(void)args;
	return record("unlock", pid);
}

EXPORT int cuCheckpointProcessGetRestoreThreadId(int pid, int *tid)
{
	*tid = pid;
	return OK;
}

EXPORT int cuDeviceGet(int *dev, int ordinal)
{
	*dev = ordinal;
	return OK;
}

EXPORT int cuDeviceGetName(char *name, int len, int dev)
{
	(void)dev;
	snprintf(name, (size_t)len, "%s", env("CKPT_FAKE_CUDA_MODEL", "Fake GPU"));
	return OK;
}

EXPORT int cuDeviceTotalMem_v2(size_t *bytes, int dev)
{
	(void)dev;
	*bytes = (size_t)strtoull(env("CKPT_FAKE_CUDA_MEM", "17179869184"), NULL, 10);
	return OK;
}
