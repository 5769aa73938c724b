#include "coord/tree.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char tree_proc_state(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *paren = strrchr(buf, ')');
	return paren && paren[1] == ' ' ? paren[2] : 0;
}

/* Children of every thread of pid: /proc/PID/task/TID/children. */
static int add_children(pid_t pid, struct tree_proc *out, int n, int cap)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return n; /* gone meanwhile */
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		char kids[320];
		snprintf(kids, sizeof(kids), "/proc/%d/task/%s/children", (int)pid, e->d_name);
		FILE *f = fopen(kids, "re");
		if (!f)
			continue;
		int child;
		while (n < cap && fscanf(f, "%d", &child) == 1) {
			out[n].hpid = child;
			out[n].state = tree_proc_state(child);
			n++;
		}
		fclose(f);
	}
	closedir(d);
	return n;
}

int tree_list(pid_t init, struct tree_proc *out, int cap)
{
	int n = add_children(init, out, 0, cap);
	for (int i = 0; i < n; i++)
		n = add_children(out[i].hpid, out, n, cap);
	return n;
}

void tree_describe(pid_t hpid, char *out, size_t cap)
{
	char path[64], comm[64] = "?", exe[512] = "?";
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)hpid);
	FILE *f = fopen(path, "re");
	if (f) {
		if (fgets(comm, sizeof(comm), f))
			comm[strcspn(comm, "\n")] = '\0';
		fclose(f);
	}
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)hpid);
	ssize_t len = readlink(path, exe, sizeof(exe) - 1);
	exe[len > 0 ? len : 1] = '\0';
	snprintf(out, cap, "host pid %d (%s, %s)", (int)hpid, comm, exe);
}
