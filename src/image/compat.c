#include "image/compat.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

static void cpu_features(uint32_t *ecx1, uint32_t *ebx7, uint64_t *xcr0)
{
	unsigned a, b, c, d;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
	*ecx1 = c;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
	*ebx7 = b;
	*xcr0 = 0;
	if (*ecx1 & (1u << 27)) { /* OSXSAVE: xgetbv is allowed */
		unsigned lo, hi;
		__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
		*xcr0 = ((uint64_t)hi << 32) | lo;
	}
}

static int check_cpu(const struct ckpt_image_header *h, char *err, size_t errlen)
{
	uint32_t ecx1, ebx7;
	uint64_t xcr0;
	cpu_features(&ecx1, &ebx7, &xcr0);
	if (h->xcr0 & ~xcr0) {
		snprintf(
		    err, errlen,
		    "the image was saved with CPU state components 0x%llx that this CPU does not "
		    "enable (0x%llx); restart on a node of the same CPU type",
		    (unsigned long long)h->xcr0, (unsigned long long)xcr0);
		return -1;
	}
	if ((h->cpuid_1_ecx & ~ecx1) || (h->cpuid_7_ebx & ~ebx7)) {
		snprintf(err, errlen,
			 "this CPU lacks instruction set features the program may use (cpuid.1.ecx "
			 "missing 0x%x, cpuid.7.ebx missing 0x%x); restart on a node of the same "
			 "CPU type",
			 h->cpuid_1_ecx & ~ecx1, h->cpuid_7_ebx & ~ebx7);
		return -1;
	}
	return 0;
}

/* Sizes and relative offsets of [vdso] and [vvar*] must match. */
static int check_vdso(const struct ckpt_image *img, char *err, size_t errlen)
{
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
	FILE *f = fopen("/proc/self/maps", "re");
	if (!f) {
		snprintf(err, errlen, "cannot read /proc/self/maps to compare the vDSO");
		return -1;
	}
	char line[4400];
	while (nh < 8 && fgets(line, sizeof(line), f)) {
		unsigned long long s, e;
		int pos = 0;
		if (sscanf(line, "%llx-%llx %*s %*s %*s %*s %n", &s, &e, &pos) < 2 || !pos)
			continue;
		if (!strncmp(line + pos, "[vdso]", 6) || !strncmp(line + pos, "[vvar", 5)) {
			have[nh] = e - s;
			have_off[nh] = s;
			nh++;
		}
	}
	fclose(f);
	int same = nw == nh;
	for (int i = 0; same && i < nw; i++)
		same = want[i] == have[i] &&
		       (i == 0 || want_off[i] - want_off[0] == have_off[i] - have_off[0]);
	if (!same) {
		struct utsname u;
		if (uname(&u) < 0)
			snprintf(u.release, sizeof(u.release), "?");
		snprintf(err, errlen,
			 "the vDSO of this kernel (%s) is laid out differently from the one the "
			 "image was "
			 "saved with (kernel %s); restart on a node with the same kernel",
			 u.release, img->hdr.kernel_release);
		return -1;
	}
	return 0;
}

int ckpt_image_check_machine(const struct ckpt_image *img, char *err, size_t errlen)
{
	if (check_cpu(&img->hdr, err, errlen) < 0)
		return -1;
	return check_vdso(img, err, errlen);
}
