/* Process attributes restored before the hand-over: working directory,
 * umask and resource limits. */
#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "restore/restore.h"

int attrs_restore(const struct ckpt_image *img)
{
	const struct ckpt_process *p = &img->process;
	const char *cwd = ckpt_image_string(img, p->cwd_str);
	if (cwd[0] && chdir(cwd) != 0)
		return fail("cannot enter the program's working directory %s: %s", cwd,
			    strerror(errno));
	umask((mode_t)p->umask);
	for (uint32_t i = 0; i < p->nrlimits && i < CKPT_NRLIMITS; i++) {
		struct rlimit r = {p->rlimits[i].cur, p->rlimits[i].max};
		if (setrlimit((int)i, &r) != 0)
			warn("resource limit %u cannot be set back to %llu/%llu: %s", i,
			     (unsigned long long)r.rlim_cur, (unsigned long long)r.rlim_max,
			     strerror(errno));
	}
	return 0;
}
