/* Where ckpt's other parts are: <dir of the ckpt executable>/../lib/ckpt,
 * both in the build tree (build/bin, build/lib/ckpt) and after
 * `make install` (PREFIX/bin, PREFIX/lib/ckpt). */
#ifndef CKPT_CLI_PATHS_H
#define CKPT_CLI_PATHS_H

#define AGENT_NAME "libckpt-agent.so"
#define RESTORER_NAME "ckpt-restore"

/* malloc'd path of a file in the library directory, checked to exist
 * (executable when exec is set), or NULL with a message. */
char *ckpt_lib_file(const char *name, int exec);

/* The program's environment: ours, with LD_PRELOAD set to preload
 * prepended to any existing value (preload NULL: LD_PRELOAD removed),
 * and CKPT_CTL, CKPT_TOKEN set (any other CKPT_* variable of ours is
 * dropped; CKPT_ROOT_PID is added at launch). NULL-terminated, malloc'd. */
char **program_env(const char *preload, const char *ctl, const char *token);

#endif
