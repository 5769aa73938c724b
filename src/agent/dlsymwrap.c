/* Let programs that look libc's inotify functions up by handle reach the
 * wrappers that remember watched paths (inotifywrap.c). Python's ctypes
 * bindings (watchdog, inotify_simple...) load libc by name and ask
 * dlsym(handle, "inotify_add_watch"): a lookup in libc's own scope, which
 * an LD_PRELOADed library does not take part in. So the agent defines
 * dlsym: for those two names in a specific library's scope it answers with
 * its wrappers; everything else goes to glibc's dlsym by a jump, not a
 * call, so that glibc sees the original caller's return address, on
 * which RTLD_NEXT lookups depend. */
#include <dlfcn.h>
#include <stdint.h>

#include "agent/agent.h"

typedef void *(*dlsym_fn)(void *, const char *);

/* glibc's dlsym, which the trampoline below jumps to */
__attribute__((visibility("hidden"))) dlsym_fn agent_real_dlsym;

int inotify_add_watch(int fd, const char *path, uint32_t mask);
int inotify_rm_watch(int fd, int wd);

/* Called by the trampoline: the wrapper to answer with, or NULL to let
 * glibc answer. Finds glibc's dlsym first (dlvsym is not wrapped). */
__attribute__((visibility("hidden"))) void *agent_dlsym_answer(void *handle, const char *name)
{
	if (!__atomic_load_n(&agent_real_dlsym, __ATOMIC_ACQUIRE)) {
		dlsym_fn real = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
		if (!real)
			real = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
		__atomic_store_n(&agent_real_dlsym, real, __ATOMIC_RELEASE);
	}
	if (handle == RTLD_DEFAULT || handle == RTLD_NEXT || !name || !agent_real_dlsym)
		return 0; /* the global scope finds the wrappers anyway */
	void *ours = str_eq(name, "inotify_add_watch")	? (void *)inotify_add_watch
		     : str_eq(name, "inotify_rm_watch") ? (void *)inotify_rm_watch
							: 0;
	/* only where the answer would have been libc's (the definition after
	 * the agent's): a library of the program's own may define the name */
	if (!ours || agent_real_dlsym(handle, name) != agent_real_dlsym(RTLD_NEXT, name))
		return 0;
	return ours;
}

/* void *dlsym(void *handle, const char *name): the arguments are kept
 * across the call (the stack aligned for it), then either the answer is
 * returned or glibc's dlsym is jumped to with them. */
__asm__(".text\n"
	".globl dlsym\n"
	".type dlsym, @function\n"
	"dlsym:\n"
	"	push %rdi\n"
	"	push %rsi\n"
	"	sub $8, %rsp\n"
	"	call agent_dlsym_answer\n"
	"	add $8, %rsp\n"
	"	pop %rsi\n"
	"	pop %rdi\n"
	"	test %rax, %rax\n"
	"	jnz 1f\n"
	"	jmp *agent_real_dlsym(%rip)\n"
	"1:	ret\n"
	".size dlsym, .-dlsym\n");
