/* The processes of a computation as the supervisor sees them: every
 * descendant of the namespace's init (or of the subreaper init without
 * namespaces), by pid in the supervisor's pid namespace. */
#ifndef CKPT_COORD_TREE_H
#define CKPT_COORD_TREE_H

#include <stddef.h>
#include <sys/types.h>

struct tree_proc {
	pid_t hpid;
	char state; /* from /proc/PID/stat: 'Z' zombie, 'T' stopped... */
};

/* Descendants of init, parents before children; returns how many (at
 * most cap). Processes that end meanwhile are simply missing. */
int tree_list(pid_t init, struct tree_proc *out, int cap);

/* The state letter of /proc/PID/stat ('T' stopped, 't' traced, 'Z'
 * zombie...), 0 if the process is gone. */
char tree_proc_state(pid_t pid);

/* "host pid N (comm, exe)" for messages. */
void tree_describe(pid_t hpid, char *out, size_t cap);

#endif
