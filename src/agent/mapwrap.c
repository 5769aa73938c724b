/* Keep mremap working as it does without ckpt. Write tracking registers
 * the program's mappings with userfaultfd (track.c), and the kernel
 * neither merges a registered mapping with an unregistered neighbour nor
 * moves a range that spans several mappings when one of them is
 * registered: a page mapped afresh inside a registered region, or a piece
 * moved away and back, leaves the region in several mappings where there
 * would have been one, and an mremap of the region fails with EFAULT,
 * after moving the mappings before the registered one (recent kernels,
 * 6.18 here, move several mappings at once and stop at the first they
 * may not move). So the range is given up by the tracking first (it is
 * stored whole at the next checkpoint, as a moved mapping is anyway):
 * nothing in it stops the move, and pieces that can merge do. Growing a
 * range across a fresh mapping the program has written still fails (it
 * keeps an anonymous-memory identity of its own). Programs calling the
 * system call directly bypass this, as glibc's realloc does; a block of
 * malloc's lies in a mapping of its own, which tracking does not split. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "agent/agent.h"
#include "common/rawsys.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	void *new_addr = 0;
	if (flags & (MREMAP_FIXED | MREMAP_DONTUNMAP)) {
		va_list ap;
		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
	}
	uint64_t start = (uint64_t)(uintptr_t)old;
	uint64_t len = ((uint64_t)old_len + CKPT_PAGE_SIZE - 1) & ~(uint64_t)(CKPT_PAGE_SIZE - 1);
	int whole = !(start % CKPT_PAGE_SIZE) && len && len <= UINT64_MAX - start;
	track_release_begin(start, whole ? len : 0);
	long r = raw_syscall5(SYS_mremap, (long)old, (long)old_len, (long)new_len, flags,
			      (long)new_addr);
	track_release_end();
	if (r < 0 && r > -4096) {
		errno = (int)-r;
		return MAP_FAILED;
	}
	return (void *)r;
}
