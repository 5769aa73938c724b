/* Clocks and the run directory's timestamped logs (execution.log,
 * coordinator.log). Every line is "2026-11-25T14:03:12.123Z <text>\n",
 * written with one write(2) on an O_APPEND descriptor so lines from
 * several writers never interleave. */
#ifndef CKPT_COORD_LOG_H
#define CKPT_COORD_LOG_H

#include <stddef.h>
#include <stdint.h>

int64_t ckpt_now_ms(void);  /* CLOCK_REALTIME, milliseconds since the epoch */
int64_t ckpt_mono_ms(void); /* CLOCK_MONOTONIC, milliseconds: for intervals */

/* "2026-11-25T14:03:12.123Z" (UTC); buf needs 25 bytes. */
void ckpt_format_time(char *buf, size_t len, int64_t unix_ms);

struct ckpt_log {
	int fd;		  /* -1 when closed */
	const char *name; /* for the one warning about a failing write */
	int warned;
};

/* Open (create, append) NAME inside the run directory dirfd, mode 0600. */
int ckpt_log_open(struct ckpt_log *log, int dirfd, const char *name);
void ckpt_log_close(struct ckpt_log *log);
/* Append one timestamped line. A failing write is reported once on
 * stderr and otherwise ignored: losing a log line must not stop the
 * program being supervised. Lines longer than 4 KiB are cut. */
void ckpt_log(struct ckpt_log *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
