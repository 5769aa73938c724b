#include "cli/program.h"

#include "coord/err.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int is_py_script(const char *name)
{
	size_t n = strlen(name);
	return n > 3 && strcmp(name + n - 3, ".py") == 0;
}

/* An absolute version of path (relative to the current directory); no
 * symlink resolution, so messages show what the user typed. */
static char *absolute(const char *path)
{
	if (path[0] == '/')
		return strdup(path);
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof(cwd)))
		return NULL;
	char *r;
	if (asprintf(&r, "%s/%s", cwd, path[0] == '.' && path[1] == '/' ? path + 2 : path) < 0)
		return NULL;
	return r;
}

static int executable_file(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

char *find_executable(const char *name)
{
	if (strchr(name, '/')) {
		struct stat st;
		if (stat(name, &st) < 0) {
			ckpt_fail_errno("%s", name);
			return NULL;
		}
		if (!S_ISREG(st.st_mode) || access(name, X_OK) < 0) {
			ckpt_fail("%s is not executable", name);
			return NULL;
		}
		char *abs = absolute(name);
		if (!abs)
			ckpt_fail_errno("%s", name);
		return abs;
	}
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	int seen_not_executable = 0;
	for (const char *p = path;;) {
		const char *colon = strchrnul(p, ':');
		char *cand;
		/* An empty PATH entry means the current directory. */
		if (colon == p) {
			if (asprintf(&cand, "%s", name) < 0)
				cand = NULL;
		} else if (asprintf(&cand, "%.*s/%s", (int)(colon - p), p, name) < 0) {
			cand = NULL;
		}
		if (!cand) {
			ckpt_fail("out of memory");
			return NULL;
		}
		if (executable_file(cand)) {
			char *abs = absolute(cand);
			free(cand);
			if (!abs)
				ckpt_fail_errno("%s", name);
			return abs;
		}
		if (access(cand, F_OK) == 0)
			seen_not_executable = 1;
		free(cand);
		if (!*colon)
			break;
		p = colon + 1;
	}
	if (seen_not_executable)
		ckpt_fail("%s: found in PATH but not executable", name);
	else
		ckpt_fail("%s: command not found (not in PATH)", name);
	return NULL;
}

static int check_elf(const char *path, int fd, const char *what)
{
	Elf64_Ehdr eh;
	if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh))
		return ckpt_fail("%s%s is a truncated ELF file", path, what);
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64)
		return ckpt_fail("%s%s is not an x86-64 program; only x86-64 programs can be "
				 "checkpointed",
				 path, what);
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > 4096)
		return ckpt_fail("%s%s has no usable program headers", path, what);
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + i * sizeof(ph))) !=
		    (ssize_t)sizeof(ph))
			return ckpt_fail("%s%s is a truncated ELF file", path, what);
		if (ph.p_type == PT_INTERP)
			return 0; /* the dynamic loader will preload the agent */
	}
	return ckpt_fail("%s%s is statically linked; only dynamically linked programs can be "
			 "checkpointed",
			 path, what);
}

static int check_depth(const char *path, const char *what, int depth);

/* "#!interp [arg]": check the interpreter; for "#!/usr/bin/env prog",
 * check prog too (env runs it with the agent still preloaded). */
static int check_shebang(const char *path, const char *head, size_t n, int depth)
{
	char line[256];
	size_t len = 0;
	for (size_t i = 2; i < n && head[i] != '\n' && len < sizeof(line) - 1; i++)
		line[len++] = head[i];
	line[len] = '\0';
	char *save, *interp = strtok_r(line, " \t", &save);
	if (!interp)
		return ckpt_fail("%s starts with #! but names no interpreter", path);
	char what[PATH_MAX + 64];
	snprintf(what, sizeof(what), " (the interpreter of %s)", path);
	if (check_depth(interp, what, depth + 1) < 0)
		return -1;
	const char *base = strrchr(interp, '/');
	char *arg = strtok_r(NULL, " \t", &save);
	if (base && strcmp(base + 1, "env") == 0 && arg && arg[0] != '-') {
		char *prog = find_executable(arg);
		if (!prog)
			return ckpt_fail("%s runs %s through env: %s", path, arg, ckpt_error());
		int r = check_depth(prog, what, depth + 1);
		free(prog);
		return r;
	}
	return 0;
}

static int check_depth(const char *path, const char *what, int depth)
{
	if (depth > 4)
		return ckpt_fail("%s: too many levels of #! interpreters", path);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ckpt_fail_errno("%s%s", path, what);
	char head[256];
	ssize_t n = pread(fd, head, sizeof(head), 0);
	int r;
	if (n >= 4 && memcmp(head, ELFMAG, SELFMAG) == 0)
		r = check_elf(path, fd, what);
	else if (n >= 2 && head[0] == '#' && head[1] == '!')
		r = check_shebang(path, head, (size_t)n, depth);
	else
		r = ckpt_fail("%s%s is neither an ELF program nor a script starting with #!", path,
			      what);
	close(fd);
	return r;
}

int check_dynamic(const char *path, const char *what)
{
	return check_depth(path, what ? what : "", 0);
}

int program_resolve(char **cmd, int ncmd, const char *python, struct program *p)
{
	memset(p, 0, sizeof(*p));
	const char *prog = cmd[0];
	p->is_script = is_py_script(prog);
	if (p->is_script) {
		/* Like `python3 script.py`: the script is a path, not looked up
		 * in PATH; it needs to be readable, not executable. */
		struct stat st;
		if (stat(prog, &st) < 0)
			return ckpt_fail_errno("%s", prog);
		if (!S_ISREG(st.st_mode))
			return ckpt_fail("%s is not a regular file", prog);
		if (access(prog, R_OK) < 0)
			return ckpt_fail_errno("%s", prog);
		p->python = find_executable(python ? python : "python3");
		if (!p->python) {
			ckpt_fail("cannot run %s: no python: %s%s", prog, ckpt_error(),
				  python ? "" : " (give one with --python PATH)");
			goto fail;
		}
		char what[PATH_MAX + 32];
		snprintf(what, sizeof(what), " (the python for %s)", prog);
		if (check_dynamic(p->python, what) < 0)
			goto fail;
		p->path = realpath(prog, NULL);
		p->exec_path = strdup(p->python);
	} else {
		p->path = find_executable(prog);
		if (!p->path || check_dynamic(p->path, NULL) < 0)
			goto fail;
		p->exec_path = strdup(p->path);
	}
	if (!p->path || !p->exec_path) {
		ckpt_fail_errno("%s", prog);
		goto fail;
	}
	int n = ncmd + (p->is_script ? 1 : 0);
	p->argv = calloc((size_t)n + 1, sizeof(char *));
	if (!p->argv) {
		ckpt_fail("out of memory");
		goto fail;
	}
	int k = 0;
	/* sys.executable comes from argv[0]: give python its real path. */
	if (p->is_script)
		p->argv[k++] = p->python;
	for (int i = 0; i < ncmd; i++)
		p->argv[k++] = cmd[i];
	return 0;
fail:
	program_free(p);
	return -1;
}

void program_free(struct program *p)
{
	free(p->python);
	free(p->path);
	free(p->exec_path);
	free(p->argv);
	memset(p, 0, sizeof(*p));
}
