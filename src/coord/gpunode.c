/* Does this node have the GPU a generation was taken on? (gpunode.h) */
#include "coord/gpunode.h"

#include "coord/err.h"
#include "coord/kvfile.h"
#include "gpu/helper.h"

#include <stdlib.h>
#include <string.h>

int gpunode_check(const struct kvfile *kv, int64_t **pids, size_t *npids)
{
	*pids = NULL;
	*npids = 0;
	size_t n = 0;
	for (size_t i = 0; i < kv->count; i++)
		n += strcmp(kv->entries[i].key, "gpu_pid") == 0;
	if (!n)
		return 0;
	int64_t *list = calloc(n, sizeof(*list));
	if (!list)
		return ckpt_fail("out of memory");
	n = 0;
	for (size_t i = 0; i < kv->count; i++)
		if (strcmp(kv->entries[i].key, "gpu_pid") == 0)
			list[n++] = atoll(kv->entries[i].value);
	/* The node's first GPU, found by a short-lived helper (cuInit is
	 * not done in the supervisor). */
	static struct gpu_job job;
	memset(&job, 0, sizeof(job));
	job.op = GPU_OP_INFO;
	if (gpu_run(&job) != 0) {
		free(list);
		return ckpt_fail("its %zu process(es) with GPU state need an NVIDIA GPU: %s", n,
				 ckpt_error());
	}
	const char *model = kv_get(kv, "gpu_model"), *mem = kv_get(kv, "gpu_memory");
	if (model && strcmp(model, job.info.model) != 0) {
		free(list);
		return ckpt_fail("it was taken on a GPU \"%s\" and this node's first GPU is "
				 "\"%s\"; GPU state is restored only on the same GPU model",
				 model, job.info.model);
	}
	if (mem && job.info.mem < strtoull(mem, NULL, 10)) {
		free(list);
		return ckpt_fail("it was taken on a GPU with %s bytes of memory and this node's "
				 "first GPU has %llu",
				 mem, (unsigned long long)job.info.mem);
	}
	*pids = list;
	*npids = n;
	return 0;
}
