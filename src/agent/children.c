/* Process trees are not checkpointed yet: a child still running at
 * checkpoint time would be lost at restart, so the checkpoint is refused
 * with the child's pid and command, and the program continues. */
#include <fcntl.h>
#include <sys/syscall.h>

#include "agent/agent.h"
#include "common/rawsys.h"

static void describe_child(const char *pid)
{
	char path[64] = "/proc/", buf[512], comm[64] = "?";
	str_append(path, sizeof path, pid);
	char *end = path + str_len(path);
	str_copy(end, "/comm", 16);
	if (read_file(path, comm, sizeof comm) > 0 && str_len(comm) > 0)
		comm[str_len(comm) - 1] = 0;
	str_copy(end, "/stat", 16);
	char state = '?';
	if (read_file(path, buf, sizeof buf) > 0) {
		char *p = buf + str_len(buf);
		while (p > buf && *p != ')')
			p--;
		if (p[0] == ')')
			state = p[2];
	}
	if (state == 'Z') {
		add_warning("child process ", pid,
			    " has exited but was not waited for; "
			    "after restart waiting for it fails with ECHILD");
		return;
	}
	set_error("child process ", pid, " (");
	str_append(agent.errmsg, sizeof agent.errmsg, comm);
	str_append(agent.errmsg, sizeof agent.errmsg,
		   ") is still running; checkpointing process trees is not supported yet");
}

/* The children of every thread of this process, from
 * /proc/self/task/TID/children (works with or without a pid namespace). */
int check_no_children(void)
{
	static int tids[AGENT_MAX_THREADS];
	int n = list_numeric_dir("/proc/self/task", tids, AGENT_MAX_THREADS);
	for (int i = 0; i < n; i++) {
		char path[96] = "/proc/self/task/", kids[1024];
		str_append_u64(path, sizeof path, (uint64_t)tids[i]);
		str_append(path, sizeof path, "/children");
		if (read_file(path, kids, sizeof kids) <= 0)
			continue;
		for (char *p = kids; *p;) {
			while (*p == ' ' || *p == '\n')
				p++;
			char *q = p;
			while (*q >= '0' && *q <= '9')
				q++;
			if (q == p)
				break;
			char save = *q;
			*q = 0;
			describe_child(p);
			*q = save;
			p = q;
		}
	}
	return agent.result;
}
