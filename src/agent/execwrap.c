/* Keep the agent in programs started by exec. The supervisor injects the
 * agent through the environment (LD_PRELOAD and the CKPT_* variables of
 * docs/protocol.md, "Launch contract"); a program that execs with an
 * environment of its own (Python's subprocess.run(env={}), execle with a
 * minimal envp, env -i) would start its children without it. These wrappers
 * put LD_PRELOAD's agent entry and the missing CKPT_* variables back, and
 * pass any environment that already has them through untouched.
 *
 * They may run in a child after vfork, or between fork and exec in a
 * multithreaded program, where malloc, stdio and locks are not safe: the
 * new environment is built on the caller's stack from strings remembered
 * at load time, and the real functions are looked up at load time too.
 * Programs that call the execve system call directly bypass them. */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

#define AGENT_NAME "libckpt-agent.so"
/* Environments with more entries, or an LD_PRELOAD value longer than this,
 * are passed through unchanged: the buffers live on the caller's stack. */
#define ENV_SLOTS 4096
#define PRELOAD_MAX 4096

/* The variables the agent reads (agent.c, agent_init). CKPT_ROOT_PID must
 * travel with the others: without it a child would believe it is the
 * process to checkpoint and connect to the coordinator. */
static const char *const var_names[] = {"CKPT_CTL", "CKPT_TOKEN", "CKPT_ROOT_PID", "CKPT_SIGNAL",
					"CKPT_STOP_TIMEOUT_MS"};
#define NVARS (sizeof var_names / sizeof var_names[0])

static int active;		     /* CKPT_CTL was set when the agent was loaded */
static char agent_path[PATH_MAX];    /* this library, absolute */
static char saved[NVARS][PATH_MAX];  /* "NAME=value", or "" when unset */
static size_t saved_name_len[NVARS]; /* length of "NAME=" */

typedef int (*execve_fn)(const char *, char *const[], char *const[]);
typedef int (*fexecve_fn)(int, char *const[], char *const[]);
typedef int (*execveat_fn)(int, const char *, char *const[], char *const[], int);
typedef int (*spawn_fn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			const posix_spawnattr_t *, char *const[], char *const[]);

static execve_fn next_execve, next_execvpe;
static fexecve_fn next_fexecve;
static execveat_fn next_execveat;
static spawn_fn next_posix_spawn, next_posix_spawnp;

/* Done once by the constructor, so that a wrapper called after vfork does
 * not need dlsym (which takes the loader's lock); by the first wrapper
 * instead if another library's constructor execs before ours has run. */
static int resolved;
static void resolve(void)
{
	if (resolved)
		return;
	next_execve = (execve_fn)dlsym(RTLD_NEXT, "execve");
	next_execvpe = (execve_fn)dlsym(RTLD_NEXT, "execvpe");
	next_fexecve = (fexecve_fn)dlsym(RTLD_NEXT, "fexecve");
	next_execveat = (execveat_fn)dlsym(RTLD_NEXT, "execveat"); /* glibc >= 2.34 */
	next_posix_spawn = (spawn_fn)dlsym(RTLD_NEXT, "posix_spawn");
	next_posix_spawnp = (spawn_fn)dlsym(RTLD_NEXT, "posix_spawnp");
	resolved = 1;
}

/* Does this LD_PRELOAD value (entries separated by ':' or ' ', as ld.so
 * reads it) load the agent? Any entry named libckpt-agent.so counts: the
 * program may name the same library by another path. */
static int preloads_agent(const char *list)
{
	const size_t name_len = strlen(AGENT_NAME), path_len = strlen(agent_path);
	while (*list) {
		size_t len = strcspn(list, ": ");
		if ((len == path_len && memcmp(list, agent_path, len) == 0) ||
		    (len == name_len && memcmp(list, AGENT_NAME, len) == 0) ||
		    (len > name_len && list[len - name_len - 1] == '/' &&
		     memcmp(list + len - name_len, AGENT_NAME, name_len) == 0))
			return 1;
		list += len;
		if (*list)
			list++;
	}
	return 0;
}

/* The environment the new program gets: envp itself when it already has
 * the agent and every remembered variable, otherwise a copy in slots
 * (ENV_SLOTS entries) with LD_PRELOAD rebuilt in preload (PRELOAD_MAX
 * bytes) and the missing variables added. No allocation, no errno change. */
static char *const *fix_env(char *const *envp, char **slots, char *preload)
{
	static char *const empty[] = {NULL};
	char *const *env = envp ? envp : empty; /* Linux takes NULL as empty */
	if (!active)
		return envp;
	size_t n, pre_at = (size_t)-1;
	int have[NVARS] = {0};
	for (n = 0; env[n]; n++) {
		if (pre_at == (size_t)-1 && strncmp(env[n], "LD_PRELOAD=", 11) == 0)
			pre_at = n;
		for (size_t i = 0; i < NVARS; i++)
			if (saved[i][0] && strncmp(env[n], saved[i], saved_name_len[i]) == 0)
				have[i] = 1;
	}
	const char *old = pre_at != (size_t)-1 ? env[pre_at] + 11 : "";
	int fix_preload = !preloads_agent(old);
	int missing = 0;
	for (size_t i = 0; i < NVARS; i++)
		missing += saved[i][0] && !have[i];
	if (!fix_preload && !missing)
		return envp;
	if (n + 1 + NVARS + 1 > ENV_SLOTS)
		return envp;
	if (fix_preload) {
		/* The agent first, as the supervisor puts it, then what the
		 * program asked for. */
		size_t path_len = strlen(agent_path), old_len = strlen(old);
		if (11 + path_len + 1 + old_len + 1 > PRELOAD_MAX)
			return envp;
		char *p = preload;
		memcpy(p, "LD_PRELOAD=", 11), p += 11;
		memcpy(p, agent_path, path_len), p += path_len;
		if (old_len)
			*p++ = ':', memcpy(p, old, old_len), p += old_len;
		*p = 0;
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		slots[k++] = i == pre_at && fix_preload ? preload : env[i];
	if (fix_preload && pre_at == (size_t)-1)
		slots[k++] = preload;
	for (size_t i = 0; i < NVARS; i++)
		if (saved[i][0] && !have[i])
			slots[k++] = saved[i];
	slots[k] = NULL;
	return slots;
}

__attribute__((constructor)) static void execwrap_init(void)
{
	resolve();
	if (!getenv("CKPT_CTL"))
		return;
	/* This library's own path, made absolute so that it still names
	 * the library after the program changes directory. */
	Dl_info info;
	if (!dladdr((void *)execwrap_init, &info) || !info.dli_fname)
		return;
	if (info.dli_fname[0] == '/')
		snprintf(agent_path, sizeof agent_path, "%s", info.dli_fname);
	else if (!realpath(info.dli_fname, agent_path))
		return;
	for (size_t i = 0; i < NVARS; i++) {
		const char *v = getenv(var_names[i]);
		if (!v)
			continue;
		int len = snprintf(saved[i], sizeof saved[i], "%s=%s", var_names[i], v);
		if (len < 0 || (size_t)len >= sizeof saved[i]) {
			saved[i][0] = 0; /* too long to remember: left alone */
			continue;
		}
		saved_name_len[i] = strlen(var_names[i]) + 1;
	}
	active = 1;
}

/* execve, or execvpe's PATH search when search is set. */
static int exec_env(const char *file, char *const argv[], char *const envp[], int search)
{
	char *slots[ENV_SLOTS], preload[PRELOAD_MAX];
	resolve();
	return (search ? next_execvpe : next_execve)(file, argv, fix_env(envp, slots, preload));
}

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	return exec_env(path, argv, envp, 0);
}

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	return exec_env(file, argv, envp, 1);
}

EXPORT int execv(const char *path, char *const argv[])
{
	return exec_env(path, argv, environ, 0);
}

EXPORT int execvp(const char *file, char *const argv[])
{
	return exec_env(file, argv, environ, 1);
}

/* The execl forms: the arguments collected into an array on the stack, as
 * glibc does, then on as execve or execvpe. execle's envp follows the
 * terminating NULL. */
static int exec_list(const char *file, const char *arg, va_list ap, int with_env, int search)
{
	va_list count;
	size_t argc = 1;
	va_copy(count, ap);
	while (va_arg(count, char *))
		argc++;
	va_end(count);
	char *argv[argc + 1];
	argv[0] = (char *)arg;
	for (size_t i = 1; i <= argc; i++)
		argv[i] = va_arg(ap, char *); /* the last one is the NULL */
	char *const *envp = with_env ? va_arg(ap, char *const *) : environ;
	return exec_env(file, argv, envp, search);
}

EXPORT int execl(const char *path, const char *arg, ...)
{
	va_list ap;
	va_start(ap, arg);
	int ret = exec_list(path, arg, ap, 0, 0);
	va_end(ap);
	return ret;
}

EXPORT int execle(const char *path, const char *arg, ...)
{
	va_list ap;
	va_start(ap, arg);
	int ret = exec_list(path, arg, ap, 1, 0);
	va_end(ap);
	return ret;
}

EXPORT int execlp(const char *file, const char *arg, ...)
{
	va_list ap;
	va_start(ap, arg);
	int ret = exec_list(file, arg, ap, 0, 1);
	va_end(ap);
	return ret;
}

EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	char *slots[ENV_SLOTS], preload[PRELOAD_MAX];
	resolve();
	return next_fexecve(fd, argv, fix_env(envp, slots, preload));
}

EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[], int flags)
{
	char *slots[ENV_SLOTS], preload[PRELOAD_MAX];
	resolve();
	if (!next_execveat) {
		errno = ENOSYS;
		return -1;
	}
	return next_execveat(dirfd, path, argv, fix_env(envp, slots, preload), flags);
}

/* The environment is fixed in the caller: glibc's child (a vfork-like
 * clone) calls its internal execve, which these wrappers cannot see. */
EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *actions,
		       const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	char *slots[ENV_SLOTS], preload[PRELOAD_MAX];
	resolve();
	return next_posix_spawn(pid, path, actions, attr, argv, fix_env(envp, slots, preload));
}

EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *actions,
			const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	char *slots[ENV_SLOTS], preload[PRELOAD_MAX];
	resolve();
	return next_posix_spawnp(pid, file, actions, attr, argv, fix_env(envp, slots, preload));
}
