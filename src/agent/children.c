/* Children that have exited but were not waited for (zombies). Live
 * children are processes of the computation with images of their own;
 * a zombie has no image, so its parent records its pid and wait status
 * and restart recreates it, for waitpid() to find as before. */
#include <fcntl.h>
#include <sys/syscall.h>

#include "agent/agent.h"
#include "common/rawsys.h"

/* The wait status of a zombie: field 52 (exit_code) of its stat file,
 * after the comm in parentheses. Returns -1 if pid is not a zombie. */
static int zombie_status(const char *pid)
{
	char path[64] = "/proc/", buf[1024];
	str_append(path, sizeof path, pid);
	str_append(path, sizeof path, "/stat");
	if (read_file(path, buf, sizeof buf) <= 0)
		return -1;
	char *p = buf + str_len(buf);
	while (p > buf && *p != ')')
		p--;
	if (p[0] != ')' || p[1] != ' ' || p[2] != 'Z')
		return -1;
	int field = 2;
	for (; *p && field < 52; p++)
		if (*p == ' ')
			field++;
	int64_t v = 0;
	for (; *p >= '0' && *p <= '9'; p++)
		v = v * 10 + (*p - '0');
	return (int)v;
}

/* The children of every thread of this process, from
 * /proc/self/task/TID/children (works with or without a pid namespace). */
int zombies_capture(struct ckpt_zombie *out, int cap)
{
	static int tids[AGENT_MAX_THREADS];
	int n = list_numeric_dir("/proc/self/task", tids, AGENT_MAX_THREADS), count = 0;
	for (int i = 0; i < n; i++) {
		char path[96] = "/proc/self/task/", kids[4096];
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
			int status = zombie_status(p);
			if (status >= 0 && count < cap) {
				int64_t pid = 0;
				for (const char *d = p; *d; d++)
					pid = pid * 10 + (*d - '0');
				out[count].pid = (int32_t)pid;
				out[count].status = status;
				count++;
			}
			*q = save;
			p = q;
		}
	}
	return count;
}
