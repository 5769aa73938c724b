#include "cli/paths.h"

#include "coord/err.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

char *ckpt_lib_file(const char *name, int exec)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n < 0) {
		ckpt_fail_errno("cannot find the ckpt executable (/proc/self/exe)");
		return NULL;
	}
	exe[n] = '\0';
	/* Strip "/ckpt" and then "/bin": what is left is the prefix. */
	for (int i = 0; i < 2; i++) {
		char *slash = strrchr(exe, '/');
		if (!slash) {
			ckpt_fail("unexpected path of the ckpt executable: %s", exe);
			return NULL;
		}
		*slash = '\0';
	}
	char *path;
	if (asprintf(&path, "%s/lib/ckpt/%s", exe, name) < 0) {
		ckpt_fail("out of memory");
		return NULL;
	}
	if (access(path, exec ? X_OK : R_OK) < 0) {
		ckpt_fail_errno("%s (part of ckpt, expected next to %s/bin/ckpt; run make)", path,
				exe);
		free(path);
		return NULL;
	}
	/* LD_PRELOAD splits on spaces and colons: such a path cannot be
	 * preloaded at all. */
	if (strcmp(name, AGENT_NAME) == 0 && strpbrk(path, " :\t")) {
		ckpt_fail("the agent's path %s contains a space or colon, which LD_PRELOAD cannot "
			  "express; install ckpt under another directory",
			  path);
		free(path);
		return NULL;
	}
	return path;
}

char **program_env(const char *preload, const char *ctl, const char *token)
{
	size_t n = 0;
	while (environ[n])
		n++;
	char **env = calloc(n + 4, sizeof(char *));
	if (!env) {
		ckpt_fail("out of memory");
		return NULL;
	}
	size_t k = 0;
	const char *old_preload = NULL;
	for (size_t i = 0; i < n; i++) {
		if (strncmp(environ[i], "LD_PRELOAD=", 11) == 0) {
			old_preload = environ[i] + 11;
			continue;
		}
		if (strncmp(environ[i], "CKPT_CTL=", 9) == 0 ||
		    strncmp(environ[i], "CKPT_TOKEN=", 11) == 0 ||
		    strncmp(environ[i], "CKPT_ROOT_PID=", 14) == 0)
			continue;
		env[k++] = environ[i];
	}
	int ok = 1;
	if (preload) {
		if (old_preload && *old_preload)
			ok = asprintf(&env[k++], "LD_PRELOAD=%s:%s", preload, old_preload) >= 0;
		else
			ok = asprintf(&env[k++], "LD_PRELOAD=%s", preload) >= 0;
	}
	ok = ok && asprintf(&env[k++], "CKPT_CTL=%s", ctl) >= 0;
	ok = ok && asprintf(&env[k++], "CKPT_TOKEN=%s", token) >= 0;
	if (!ok) {
		free(env);
		ckpt_fail("out of memory");
		return NULL;
	}
	env[k] = NULL;
	return env;
}
