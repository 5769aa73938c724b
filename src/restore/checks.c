/* What must hold before anything is torn down: the right pid, a CPU with
 * every feature the saved state uses, and a kernel whose vDSO has the same
 * layout (the program's libc keeps pointers into it). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "image/compat.h"
#include "restore/restore.h"

/* CPU and vDSO: the same checks ckpt restart made before it changed
 * anything (src/image/compat.c), made again here, in the process that
 * becomes the program, in case it runs elsewhere. */
static int check_machine(const struct ckpt_image *img)
{
	char err[600];
	if (ckpt_image_check_machine(img, err, sizeof err) < 0)
		return fail("%s", err);
	return 0;
}

/* /proc/meminfo field in bytes, or -1. */
static int64_t meminfo(const char *key)
{
	FILE *f = fopen("/proc/meminfo", "re");
	if (!f)
		return -1;
	char line[256];
	long long kb = -1;
	size_t n = strlen(key);
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, key, n) && line[n] == ':' &&
		    sscanf(line + n + 1, "%lld", &kb) == 1)
			break;
	fclose(f);
	return kb < 0 ? -1 : kb * 1024;
}

#define MIB(x) ((unsigned long long)((x) >> 20))

/* Room for the program before anything is torn down: its address space
 * under RLIMIT_AS, its private writable memory under RLIMIT_DATA (both as
 * inherited here, from ckpt restart's caller), and its saved pages, which
 * the restorer reads into memory, against what the machine has free. A
 * failure later, halfway through the hand-over, could only kill it. */
static int check_resources(const struct ckpt_image *img)
{
	uint64_t space = 0, data = 0, saved = 0;
	for (uint32_t i = 0; i < img->nareas; i++) {
		const struct ckpt_area *a = &img->areas[i];
		if (a->kind == CKPT_AREA_VDSO || a->kind == CKPT_AREA_VVAR)
			continue;
		space += a->end - a->start;
		/* the kernel's RLIMIT_DATA counts private writable mappings
		 * that are not stacks */
		if ((a->prot & PROT_WRITE) && a->kind != CKPT_AREA_FILE_SHARED &&
		    a->kind != CKPT_AREA_SHARED_ANON && !(a->flags & CKPT_AREA_GROWSDOWN))
			data += a->end - a->start;
		saved += a->pages_saved * (uint64_t)CKPT_PAGE_SIZE;
	}
	struct rlimit as, dl;
	if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY && space > as.rlim_cur)
		return fail(
		    "the program needs %llu MiB of address space, more than the %llu MiB "
		    "RLIMIT_AS allows here (ulimit -v); raise the limit or restart elsewhere",
		    MIB(space), MIB((uint64_t)as.rlim_cur));
	if (getrlimit(RLIMIT_DATA, &dl) == 0 && dl.rlim_cur != RLIM_INFINITY && data > dl.rlim_cur)
		return fail(
		    "the program has %llu MiB of private writable memory, more than the %llu "
		    "MiB RLIMIT_DATA allows here (ulimit -d); raise the limit or restart "
		    "elsewhere",
		    MIB(data), MIB((uint64_t)dl.rlim_cur));
	int64_t avail = meminfo("MemAvailable"), swap = meminfo("SwapFree");
	if (avail >= 0 && saved > (uint64_t)avail + (uint64_t)(swap > 0 ? swap : 0))
		return fail(
		    "the program's saved memory is %llu MiB but this machine has only %llu MiB "
		    "available (MemAvailable + SwapFree); free memory or restart on a larger "
		    "node",
		    MIB(saved), MIB((uint64_t)avail + (uint64_t)(swap > 0 ? swap : 0)));
	return 0;
}

int check_compatible(const struct ckpt_image *img)
{
	if (getpid() != img->hdr.pid && !getenv("CKPT_NEW_IDS"))
		return fail("the restorer runs as pid %d but the image needs pid %d (start it "
			    "through ckpt restart)",
			    (int)getpid(), img->hdr.pid);
	if (check_machine(img) != 0)
		return -1;
	return check_resources(img);
}

int live_maps(struct live_map *out, int cap)
{
	FILE *f = fopen("/proc/self/maps", "re");
	if (!f)
		return fail("cannot read /proc/self/maps");
	char line[4400];
	int n = 0;
	while (fgets(line, sizeof line, f)) {
		unsigned long long s, e;
		int pos = 0;
		if (sscanf(line, "%llx-%llx %*s %*s %*s %*s %n", &s, &e, &pos) < 2)
			continue;
		if (n == cap) {
			fclose(f);
			return fail("too many mappings in the restorer");
		}
		out[n].start = s;
		out[n].end = e;
		char *nl = strchr(line + pos, '\n');
		if (nl)
			*nl = 0;
		snprintf(out[n].name, sizeof out[n].name, "%s", pos ? line + pos : "");
		n++;
	}
	fclose(f);
	return n;
}
