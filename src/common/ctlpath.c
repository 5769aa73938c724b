#include "common/ctlpath.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int ctl_connect_path(const char *sock_path)
{
	char dir[4096];
	if (snprintf(dir, sizeof dir, "%s", sock_path) >= (int)sizeof dir) {
		errno = ENAMETOOLONG;
		return -1;
	}
	char *slash = strrchr(dir, '/');
	if (!slash) {
		errno = EINVAL;
		return -1;
	}
	*slash = 0;
	int dfd = open(dir[0] ? dir : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -1;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d/%s", dfd, slash + 1);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof sa) != 0) {
		int e = errno;
		close(s);
		errno = e;
		s = -1;
	}
	int e = errno;
	close(dfd);
	errno = e;
	return s;
}
