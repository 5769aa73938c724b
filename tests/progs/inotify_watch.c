/* inotify_watch STEPS SLEEP_MS: watches directories it creates under the
 * current directory with two inotify instances and prints every event.
 * The first instance makes and removes 3000 watches on a long path first,
 * then makes watches 3001 and 3002 and removes 3001, so the watches that
 * stay are numbered 3002 and 3003; each step creates a file in one of the two
 * directories (every third step removes it again, every tenth moves it) and reads the events
 * that caused, blocking, half its sleep later; the second instance, non-blocking, sees files
 * moved into the top directory. A restart that lost a watch, renumbered
 * it or left the descriptor unusable prints something else or stops. */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHURN 3000

static char top[64];

static void path_of(char *out, size_t cap, const char *dir, const char *name)
{
	snprintf(out, cap, "%s/%s%s%s", top, dir, name[0] ? "/" : "", name);
}

/* Prints the events waiting at fd (after waiting up to 5 s for one). */
static void print_events(int fd, const char *label)
{
	struct pollfd p = {fd, POLLIN, 0};
	if (poll(&p, 1, 5000) != 1) {
		printf("%s: no event within 5 s\n", label);
		exit(1);
	}
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n = read(fd, buf, sizeof buf);
	if (n <= 0) {
		printf("%s: read returned %zd\n", label, n);
		exit(1);
	}
	for (char *q = buf; q < buf + n;) {
		const struct inotify_event *e = (const struct inotify_event *)q;
		printf("%s: wd %d mask %x name %s\n", label, e->wd, e->mask,
		       e->len ? e->name : "-");
		q += sizeof *e + e->len;
	}
}

/* Creates path. A run killed after the checkpoint may have left it there
 * (a restart goes on from the files as they are): it is removed first,
 * and the event that makes (where deletions are watched) read away. */
static void make_file(int ifd, const char *path, int deletions_watched)
{
	int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600);
	if (fd < 0 && errno == EEXIST) {
		if (unlink(path) != 0)
			die("unlink");
		if (deletions_watched) {
			char buf[4096];
			struct pollfd p = {ifd, POLLIN, 0};
			if (poll(&p, 1, 5000) != 1 || read(ifd, buf, sizeof buf) <= 0)
				die("the deletion's event");
		}
		fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600);
	}
	if (fd < 0)
		die("open");
	close(fd);
}

int main(int argc, char **argv)
{
	long steps, sleep;
	steps_and_sleep(argc, argv, &steps, &sleep);
	snprintf(top, sizeof top, "inotify_watch.%d", (int)getpid());
	char a[128], b[128], c[128], f[160];
	path_of(a, sizeof a, "a", "");
	path_of(b, sizeof b, "b", "");
	path_of(c, sizeof c, "c", "");
	if (mkdir(top, 0700) || mkdir(a, 0700) || mkdir(b, 0700) || mkdir(c, 0700))
		die("mkdir");
	int ifd = inotify_init1(IN_CLOEXEC), moves = inotify_init1(IN_NONBLOCK);
	if (ifd < 0 || moves < 0)
		die("inotify_init1");
	/* a watch made and removed many times, by a long path: the numbers go
	 * far, and the paths the agent keeps outgrow its table unless it
	 * forgets the removed ones */
	char far[300];
	int len = snprintf(far, sizeof far, "%s", a);
	while (len < 250)
		len += snprintf(far + len, sizeof far - (size_t)len, "/.");
	for (int i = 0; i < CHURN; i++) {
		int w = inotify_add_watch(ifd, far, IN_CREATE);
		if (w < 0 || inotify_rm_watch(ifd, w) != 0)
			die("inotify_add_watch (churn)");
	}
	for (int left = CHURN; left > 0;) { /* their IN_IGNORED events */
		char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
		ssize_t n = read(ifd, buf, sizeof buf);
		if (n <= 0)
			die("read (churn)");
		left -= (int)(n / sizeof(struct inotify_event));
	}
	int wa = inotify_add_watch(ifd, a, IN_CREATE);
	int wb = inotify_add_watch(ifd, b, IN_CREATE | IN_DELETE);
	if (wa < 0 || wb < 0 || inotify_rm_watch(ifd, wa) != 0)
		die("inotify_add_watch");
	print_events(ifd, "removed");
	int wc = inotify_add_watch(ifd, c, IN_CREATE);
	int wt = inotify_add_watch(moves, top, IN_MOVED_TO);
	if (wc < 0 || wt < 0)
		die("inotify_add_watch");
	printf("watches %d %d %d\n", wb, wc, wt);
	for (long s = 0; s < steps; s++) {
		const char *dir = s % 2 ? "c" : "b";
		char name[32], label[32];
		snprintf(name, sizeof name, "f%ld", s);
		snprintf(label, sizeof label, "step %ld", s);
		path_of(f, sizeof f, dir, name);
		make_file(ifd, f, s % 2 == 0);
		sleep_ms(sleep / 2); /* a checkpoint now finds the event unread */
		print_events(ifd, label);
		if (s % 10 == 9) { /* a file moved into the top directory */
			char to[160];
			path_of(to, sizeof to, name, "");
			if (rename(f, to) != 0)
				die("rename");
			print_events(moves, "moved");
			unlink(to);
		} else if (s % 3 == 0 && unlink(f) == 0 && s % 2 == 0) {
			print_events(ifd, label); /* b's watch sees deletions */
		}
		sleep_ms(sleep - sleep / 2);
	}
	/* clean up: the files left in b and c, the directories */
	for (long s = 0; s < steps; s++) {
		path_of(f, sizeof f, s % 2 ? "c" : "b", "");
		char g[192];
		snprintf(g, sizeof g, "%s/f%ld", f, s);
		unlink(g);
	}
	rmdir(a), rmdir(b), rmdir(c), rmdir(top);
	printf("done\n");
	return 0;
}
