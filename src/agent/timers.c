/* Timers that signal the process: the three interval timers (alarm(),
 * setitimer()) and the POSIX timers of timer_create(). Neither is inherited
 * by the restorer's process, so each is written down with the time it had
 * left and made again at restart. Taken while the program is stopped, before
 * its pending signals: a timer that expires in between comes back both
 * pending and running on (one expiry twice) rather than lost. */
#include <linux/time_types.h>
#include <sys/syscall.h>

#include "agent/agent.h"
#include "common/rawsys.h"

struct kernel_itimerval {
	struct __kernel_old_timeval interval, value;
};

static int itimers_capture(struct ckpt_timer *out, int max)
{
	static const uint32_t kinds[3] = {CKPT_TIMER_REAL, CKPT_TIMER_VIRTUAL, CKPT_TIMER_PROF};
	int n = 0;
	for (int which = 0; which < 3 && n < max; which++) {
		struct kernel_itimerval v;
		if (raw_syscall2(SYS_getitimer, which, &v) != 0)
			continue;
		/* A periodic ITIMER_REAL that expired is started again only when
		 * its SIGALRM is taken: stopped with the signal pending, it shows
		 * no time left. It comes back due at once. */
		if (!v.value.tv_sec && !v.value.tv_usec && !v.interval.tv_sec &&
		    !v.interval.tv_usec)
			continue; /* not running: nothing to make again */
		struct ckpt_timer *t = &out[n++];
		mem_zero(t, sizeof *t);
		t->kind = kinds[which];
		t->value_sec = v.value.tv_sec;
		t->value_nsec = v.value.tv_usec * 1000;
		t->interval_sec = v.interval.tv_sec;
		t->interval_nsec = v.interval.tv_usec * 1000;
	}
	return n;
}

/* After key at a line start of s, past blanks; NULL if absent. */
static const char *line_after(const char *s, const char *key)
{
	for (const char *p = s; *p; p++) {
		if ((p != s && p[-1] != '\n') || !str_starts(p, key))
			continue;
		p += str_len(key);
		while (*p == ' ' || *p == '\t')
			p++;
		return p;
	}
	return 0;
}

/* /proc/self/timers lists each POSIX timer as
 *   ID: 3
 *   signal: 14/00007f0000001000      (signal / si_value)
 *   notify: signal/pid.12            (signal|none|thread, then pid|tid)
 *   ClockID: 1
 * and timer_gettime gives its time left. */
static int posix_timer_parse(const char *block, struct ckpt_timer *t)
{
	static const char *const notify_words[3] = {"signal/", "none/", "thread/"};
	mem_zero(t, sizeof *t);
	t->kind = CKPT_TIMER_POSIX;
	const char *signal = line_after(block, "signal:");
	const char *notify = line_after(block, "notify:");
	if (!line_after(block, "ID:") || !signal || !notify)
		return -1;
	t->id = (int32_t)dec_field(block, "ID:", 0);
	const char *after = 0;
	t->signo = (int32_t)dec_field(block, "signal:", &after);
	if (!after || *after != '/')
		return -1;
	after++;
	t->sigval = scan_hex(&after);
	t->notify = -1;
	for (int i = 0; i < 3 && t->notify < 0; i++)
		if (str_starts(notify, notify_words[i])) {
			t->notify = i; /* SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD */
			notify += str_len(notify_words[i]);
		}
	if (t->notify < 0)
		return -1;
	if (str_starts(notify, "tid.")) {
		t->notify |= 4; /* SIGEV_THREAD_ID */
		t->notify_tid = (int32_t)dec_field(notify, "tid.", 0);
	}
	t->clockid = (int32_t)dec_field(block, "ClockID:", 0);
	struct __kernel_itimerspec v;
	if (raw_syscall2(SYS_timer_gettime, t->id, &v) != 0)
		return -1;
	t->value_sec = v.it_value.tv_sec;
	t->value_nsec = v.it_value.tv_nsec;
	t->interval_sec = v.it_interval.tv_sec;
	t->interval_nsec = v.it_interval.tv_nsec;
	return 0;
}

static int posix_timers_capture(struct ckpt_timer *out, int max)
{
	static char buf[65536];
	long len = read_file("/proc/self/timers", buf, sizeof buf);
	if (len <= 0)
		return 0; /* no such file (a kernel without it): none can be seen */
	if ((size_t)len >= sizeof buf - 1)
		add_warning("too many POSIX timers to save them all", 0, 0);
	int n = 0;
	for (char *p = buf; *p && n < max; p++) {
		if ((p != buf && p[-1] != '\n') || !str_starts(p, "ID:"))
			continue;
		/* the block ends where the next one starts */
		char *end = p + 3;
		while (*end && !(end[-1] == '\n' && str_starts(end, "ID:")))
			end++;
		char saved = *end;
		*end = 0;
		if (posix_timer_parse(p, &out[n]) == 0)
			n++;
		else
			add_warning("a POSIX timer could not be read; it will not come back", 0, 0);
		*end = saved;
		p = end - 1;
	}
	return n;
}

int timers_capture(struct ckpt_timer *out, int max)
{
	int n = itimers_capture(out, max);
	return n + posix_timers_capture(out + n, max - n);
}
