#include "coord/log.h"

#include "coord/err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int64_t clock_ms(clockid_t id)
{
	struct timespec ts;
	/* clock_gettime cannot fail for these clocks with a valid pointer. */
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ckpt_now_ms(void)
{
	return clock_ms(CLOCK_REALTIME);
}

int64_t ckpt_mono_ms(void)
{
	return clock_ms(CLOCK_MONOTONIC);
}

void ckpt_format_time(char *buf, size_t len, int64_t unix_ms)
{
	time_t secs = (time_t)(unix_ms / 1000);
	struct tm tm;
	if (!gmtime_r(&secs, &tm)) {
		snprintf(buf, len, "?");
		return;
	}
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(unix_ms % 1000));
}

int ckpt_log_open(struct ckpt_log *log, int dirfd, const char *name)
{
	log->name = name;
	log->warned = 0;
	log->fd = openat(dirfd, name, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (log->fd < 0)
		return ckpt_fail_errno("cannot open %s", name);
	return 0;
}

void ckpt_log_close(struct ckpt_log *log)
{
	if (log->fd >= 0)
		close(log->fd);
	log->fd = -1;
}

void ckpt_log(struct ckpt_log *log, const char *fmt, ...)
{
	if (log->fd < 0)
		return;
	char line[4096];
	ckpt_format_time(line, sizeof(line), ckpt_now_ms());
	size_t n = strlen(line);
	line[n++] = ' ';
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += (size_t)m < sizeof(line) - n - 1 ? (size_t)m : sizeof(line) - n - 2;
	line[n++] = '\n';
	ssize_t w;
	do
		w = write(log->fd, line, n);
	while (w < 0 && errno == EINTR);
	if ((w < 0 || (size_t)w != n) && !log->warned) {
		log->warned = 1;
		fprintf(stderr, "ckpt: warning: cannot write %s (%s); its lines are being lost\n",
			log->name, w < 0 ? strerror(errno) : "short write");
	}
}
