/* PAGEMAP_SCAN (Linux 6.7+), newer than Debian 12's linux/fs.h: one ioctl
 * on /proc/self/pagemap returns the ranges of pages whose categories match,
 * instead of 8 bytes per page to be read and looked at. */
#ifndef CKPT_AGENT_PAGESCAN_H
#define CKPT_AGENT_PAGESCAN_H

#include <stdint.h>
#include <sys/ioctl.h>

struct pagescan_region {
	uint64_t start, end, categories;
};
struct pagescan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGESCAN_IOCTL _IOWR('f', 16, struct pagescan_arg)
#define PAGESCAN_IS_WRITTEN (1ull << 1)
#define PAGESCAN_IS_PRESENT (1ull << 3)
#define PAGESCAN_IS_SWAPPED (1ull << 4)
#define PAGESCAN_WP_MATCHING (1ull << 0)
#define PAGESCAN_CHECK_WPASYNC (1ull << 1)

#endif
