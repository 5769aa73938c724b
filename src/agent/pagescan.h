/* PAGEMAP_SCAN (Linux 6.7+), newer than Debian 12's linux/fs.h: one ioctl
 * on /proc/self/pagemap returns the ranges of pages whose categories match,
 * instead of 8 bytes per page to be read and looked at. */
#ifndef CKPT_AGENT_PAGESCAN_H
#define CKPT_AGENT_PAGESCAN_H

#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include "common/rawsys.h"

struct pagescan_region {
	uint64_t start, end, categories;
};
struct pagescan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGESCAN_IOCTL _IOWR('f', 16, struct pagescan_arg)
#define PAGESCAN_IS_WPALLOWED (1ull << 0) /* in a mapping registered for async write-protection */
#define PAGESCAN_IS_WRITTEN (1ull << 1)
#define PAGESCAN_IS_FILE (1ull << 2)
#define PAGESCAN_IS_PRESENT (1ull << 3)
#define PAGESCAN_IS_SWAPPED (1ull << 4)
#define PAGESCAN_WP_MATCHING (1ull << 0)
#define PAGESCAN_CHECK_WPASYNC (1ull << 1)

/* Up to vec_len ranges of [start, end) whose pages have every category of
 * all_of, none of none_of and (when any_of is not 0) one of any_of,
 * reported with their categories of all_of and any_of; flags:
 * PAGESCAN_WP_MATCHING, PAGESCAN_CHECK_WPASYNC. Returns the number of
 * ranges or a -errno; *walk_end (if given) is where the scan stopped. */
static inline long pagescan(int pagemap_fd, uint64_t start, uint64_t end, uint64_t flags,
			    uint64_t all_of, uint64_t none_of, uint64_t any_of,
			    struct pagescan_region *vec, uint64_t vec_len, uint64_t *walk_end)
{
	/* the kernel inverts category_inverted before it compares */
	struct pagescan_arg a = {.size = sizeof a,
				 .flags = flags,
				 .start = start,
				 .end = end,
				 .vec = (uint64_t)(uintptr_t)vec,
				 .vec_len = vec_len,
				 .category_inverted = none_of,
				 .category_mask = all_of | none_of,
				 .category_anyof_mask = any_of,
				 .return_mask = all_of | any_of};
	long r = raw_syscall3(SYS_ioctl, pagemap_fd, PAGESCAN_IOCTL, &a);
	if (walk_end)
		*walk_end = a.walk_end;
	return r;
}

#endif
