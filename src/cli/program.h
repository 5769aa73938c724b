/* What `ckpt start` runs: a .py script under python3, or a program found
 * like a shell finds it; refused up front when it cannot be checkpointed
 * (missing, not executable, statically linked, not x86-64). */
#ifndef CKPT_CLI_PROGRAM_H
#define CKPT_CLI_PROGRAM_H

struct program {
	int is_script;	 /* a .py script, run under python */
	char *python;	 /* absolute path of the interpreter (scripts only) */
	char *path;	 /* absolute path of the program or script */
	char *exec_path; /* what is executed: python or path */
	char **argv;	 /* its argv (NULL-terminated) */
};

int is_py_script(const char *name);
/* Find name like execvp does: as given when it contains '/', else in
 * $PATH. Returns a malloc'd absolute path, or NULL with a message. */
char *find_executable(const char *name);
/* cmd[0] is the program or script as typed, cmd[1..] its arguments.
 * python: --python, or NULL for python3 from PATH. Returns 0, or -1 with
 * a one-line reason. */
int program_resolve(char **cmd, int ncmd, const char *python, struct program *p);
void program_free(struct program *p);
/* Refuse what the agent cannot be preloaded into: statically linked or
 * non-x86-64 ELF files; for a "#!" script, its interpreter is checked
 * instead. what (may be NULL) follows the path in messages, e.g.
 * " (the python for x.py)". */
int check_dynamic(const char *path, const char *what);

#endif
