/* One error message per process, set where a failure is detected and
 * printed once by whoever gives up (usually main: "ckpt: <message>").
 * Functions return -1 or NULL after setting it, so a caller can add
 * context with ckpt_fail("doing X: %s", ckpt_error()). */
#ifndef CKPT_COORD_ERR_H
#define CKPT_COORD_ERR_H

/* Set the message; returns -1 so callers can write `return ckpt_fail(...)`. */
int ckpt_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same, followed by ": " and strerror(errno) (errno is read first). */
int ckpt_fail_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *ckpt_error(void);

#endif
