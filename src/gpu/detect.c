/* GPU use of a process, from /proc/PID/maps and /proc/PID/fd. A process
 * that merely loaded libcuda is asked about its CUDA state later; one with
 * a device open or mapped must have CUDA state the driver can save. */
#include "gpu/detect.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int is_libcuda(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	return strncmp(base, "libcuda.so", 10) == 0;
}

static int is_device(const char *path)
{
	return strncmp(path, GPU_DEVICE_PREFIX, strlen(GPU_DEVICE_PREFIX)) == 0;
}

static int maps_uses(pid_t hpid)
{
	char path[64], line[4352];
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)hpid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0; /* gone meanwhile */
	int uses = 0;
	while (fgets(line, sizeof(line), f)) {
		/* address perms offset dev inode path */
		char *p = strchr(line, '/');
		if (!p)
			continue;
		p[strcspn(p, "\n")] = '\0';
		if (is_libcuda(p))
			uses |= GPU_USE_LIBCUDA;
		else if (is_device(p))
			uses |= GPU_USE_DEVICE_MAPPED;
	}
	fclose(f);
	return uses;
}

static int fd_uses(pid_t hpid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)hpid);
	DIR *d = opendir(path);
	if (!d)
		return 0;
	int uses = 0;
	struct dirent *e;
	while (!uses && (e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		char link[320], target[512];
		snprintf(link, sizeof(link), "/proc/%d/fd/%s", (int)hpid, e->d_name);
		ssize_t n = readlink(link, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		if (is_device(target))
			uses |= GPU_USE_DEVICE_OPEN;
	}
	closedir(d);
	return uses;
}

int gpu_detect(pid_t hpid)
{
	return maps_uses(hpid) | fd_uses(hpid);
}

void gpu_describe_use(int uses, char *out, size_t cap)
{
	snprintf(out, cap, "%s%s%s%s%s", uses & GPU_USE_LIBCUDA ? "libcuda mapped" : "",
		 uses & GPU_USE_LIBCUDA && uses & GPU_USE_DEVICE ? ", " : "",
		 uses & GPU_USE_DEVICE_OPEN ? GPU_DEVICE_PREFIX "* open" : "",
		 (uses & GPU_USE_DEVICE) == GPU_USE_DEVICE ? " and " : "",
		 uses & GPU_USE_DEVICE_MAPPED ? GPU_DEVICE_PREFIX "* mapped" : "");
}
