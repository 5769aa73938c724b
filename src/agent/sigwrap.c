/* Keep the suspend signal usable. A program that blocks every signal in a
 * thread (or installs its own handler for every signal) would make that
 * thread impossible to stop; these wrappers quietly leave the suspend
 * signal out. Programs calling the system calls directly bypass them; such
 * a thread is reported by name when a checkpoint times out. */
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>

#include "agent/agent.h"

#define EXPORT __attribute__((visibility("default")))

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
typedef int (*sigmask_fn)(int, const sigset_t *, sigset_t *);
typedef sighandler_t (*signal_fn)(int, sighandler_t);

static sigaction_fn next_sigaction;
static sigmask_fn next_sigprocmask, next_pthread_sigmask;

static void resolve(void)
{
	if (!next_sigaction)
		next_sigaction = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
	if (!next_sigprocmask)
		next_sigprocmask = (sigmask_fn)dlsym(RTLD_NEXT, "sigprocmask");
	if (!next_pthread_sigmask)
		next_pthread_sigmask = (sigmask_fn)dlsym(RTLD_NEXT, "pthread_sigmask");
}

static int ours(int sig)
{
	return agent.suspend_signal && sig == agent.suspend_signal;
}

int real_sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	resolve();
	return next_sigaction(sig, act, old);
}

EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	resolve();
	if (ours(sig) && act) {
		/* Pretend it worked: the program keeps running, the agent keeps
		 * its handler. */
		if (old)
			next_sigaction(sig, 0, old);
		return 0;
	}
	return next_sigaction(sig, act, old);
}

EXPORT sighandler_t signal(int sig, sighandler_t handler)
{
	struct sigaction sa = {0}, old;
	sa.sa_handler = handler;
	sa.sa_flags = SA_RESTART;
	if (sigaction(sig, &sa, &old) != 0)
		return SIG_ERR;
	return old.sa_handler;
}

static const sigset_t *without_ours(int how, const sigset_t *set, sigset_t *copy)
{
	if (!set || how == SIG_UNBLOCK || !agent.suspend_signal ||
	    !sigismember(set, agent.suspend_signal))
		return set;
	*copy = *set;
	sigdelset(copy, agent.suspend_signal);
	return copy;
}

EXPORT int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
	sigset_t copy;
	resolve();
	return next_sigprocmask(how, without_ours(how, set, &copy), old);
}

EXPORT int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
	sigset_t copy;
	resolve();
	return next_pthread_sigmask(how, without_ours(how, set, &copy), old);
}
