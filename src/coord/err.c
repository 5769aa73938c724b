#include "coord/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Large enough for a path near PATH_MAX plus context. */
static char message[6144];

int ckpt_fail(const char *fmt, ...)
{
	/* Format into a scratch buffer first: fmt's arguments may point into
	 * message itself (adding context to the previous error). */
	char tmp[sizeof(message)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	memcpy(message, tmp, sizeof(message));
	return -1;
}

int ckpt_fail_errno(const char *fmt, ...)
{
	int saved = errno;
	char tmp[sizeof(message)];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n < sizeof(tmp))
		snprintf(tmp + n, sizeof(tmp) - (size_t)n, ": %s", strerror(saved));
	memcpy(message, tmp, sizeof(message));
	errno = saved;
	return -1;
}

const char *ckpt_error(void)
{
	return message[0] ? message : "unknown error";
}
