/* What must hold before anything is torn down: the right pid, a CPU with
 * every feature the saved state uses, and a kernel whose vDSO has the same
 * layout (the program's libc keeps pointers into it). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "restore/restore.h"

static void cpu_features(uint32_t *ecx1, uint32_t *ebx7, uint64_t *xcr0)
{
	unsigned a, b, c, d;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
	*ecx1 = c;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
	*ebx7 = b;
	*xcr0 = 0;
	if (*ecx1 & (1u << 27)) {
		unsigned lo, hi;
		__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
		*xcr0 = ((uint64_t)hi << 32) | lo;
	}
}

static int check_cpu(const struct ckpt_image_header *h)
{
	uint32_t ecx1, ebx7;
	uint64_t xcr0;
	cpu_features(&ecx1, &ebx7, &xcr0);
	if (h->xcr0 & ~xcr0)
		return fail("the image was saved with CPU state components 0x%llx that this CPU "
			    "does not enable (0x%llx); restart on a node of the same CPU type",
			    (unsigned long long)h->xcr0, (unsigned long long)xcr0);
	if ((h->cpuid_1_ecx & ~ecx1) || (h->cpuid_7_ebx & ~ebx7))
		return fail("this CPU lacks instruction set features the program may use "
			    "(cpuid.1.ecx missing 0x%x, cpuid.7.ebx missing 0x%x); restart on a "
			    "node of the same CPU type",
			    h->cpuid_1_ecx & ~ecx1, h->cpuid_7_ebx & ~ebx7);
	return 0;
}

static int check_vdso(const struct ckpt_image *img)
{
	struct live_map live[4096];
	int n = live_maps(live, 4096);
	if (n < 0)
		return -1;
	uint64_t want[8], have[8], want_off[8], have_off[8];
	int nw = 0, nh = 0;
	for (uint32_t i = 0; i < img->nareas && nw < 8; i++) {
		const struct ckpt_area *a = &img->areas[i];
		if (a->kind == CKPT_AREA_VDSO || a->kind == CKPT_AREA_VVAR) {
			want[nw] = a->end - a->start;
			want_off[nw] = a->start;
			nw++;
		}
	}
	for (int i = 0; i < n && nh < 8; i++)
		if (!strcmp(live[i].name, "[vdso]") || !strncmp(live[i].name, "[vvar", 5)) {
			have[nh] = live[i].end - live[i].start;
			have_off[nh] = live[i].start;
			nh++;
		}
	int same = nw == nh;
	for (int i = 0; same && i < nw; i++)
		same = want[i] == have[i] &&
		       (i == 0 || want_off[i] - want_off[0] == have_off[i] - have_off[0]);
	if (!same) {
		struct utsname u;
		uname(&u);
		return fail("the vDSO of this kernel (%s) is laid out differently from the one the "
			    "image was saved with (kernel %s); restart on a node with the same kernel",
			    u.release, img->hdr.kernel_release);
	}
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
		if (!strncmp(line, key, n) && line[n] == ':' && sscanf(line + n + 1, "%lld", &kb) == 1)
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
		return fail("the program needs %llu MiB of address space, more than the %llu MiB "
			    "RLIMIT_AS allows here (ulimit -v); raise the limit or restart elsewhere",
			    MIB(space), MIB((uint64_t)as.rlim_cur));
	if (getrlimit(RLIMIT_DATA, &dl) == 0 && dl.rlim_cur != RLIM_INFINITY && data > dl.rlim_cur)
		return fail("the program has %llu MiB of private writable memory, more than the %llu "
			    "MiB RLIMIT_DATA allows here (ulimit -d); raise the limit or restart "
			    "elsewhere",
			    MIB(data), MIB((uint64_t)dl.rlim_cur));
	int64_t avail = meminfo("MemAvailable"), swap = meminfo("SwapFree");
	if (avail >= 0 && saved > (uint64_t)avail + (uint64_t)(swap > 0 ? swap : 0))
		return fail("the program's saved memory is %llu MiB but this machine has only %llu MiB "
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
	if (check_cpu(&img->hdr) != 0 || check_resources(img) != 0)
		return -1;
	return check_vdso(img);
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
