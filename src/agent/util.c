/* Helpers for code that runs while the program's threads are stopped: no
 * malloc, no stdio, no errno (see agent.h). */
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <time.h>

#include "agent/agent.h"
#include "common/rawsys.h"

int scratch_init(struct scratch *s, size_t size)
{
	long p = raw_syscall6(SYS_mmap, 0, (long)size, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p < 0 && p > -4096) {
		s->base = 0;
		return -1;
	}
	s->base = (char *)p;
	s->size = size;
	s->used = 0;
	return 0;
}

void *scratch_alloc(struct scratch *s, size_t size)
{
	size = (size + 15) & ~(size_t)15;
	if (size > s->size - s->used)
		return 0;
	void *p = s->base + s->used;
	s->used += size;
	return p;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

void populate_for_writing(void *p, size_t size)
{
	/* whole pages (the neighbours' are only made present); advice: older
	 * kernels fault the pages in as they are used */
	uintptr_t from = (uintptr_t)p & ~(uintptr_t)4095,
		  to = ((uintptr_t)p + size + 4095) & ~(uintptr_t)4095;
	raw_syscall3(SYS_madvise, (long)from, (long)(to - from), MADV_POPULATE_WRITE);
}

void *scratch_alloc_populated(struct scratch *s, size_t size)
{
	void *p = scratch_alloc(s, size);
	if (p)
		populate_for_writing(p, size);
	return p;
}

void scratch_free(struct scratch *s)
{
	if (s->base)
		raw_syscall2(SYS_munmap, s->base, s->size);
	s->base = 0;
}

uint32_t strtab_add(struct strtab *t, const char *s)
{
	size_t n = str_len(s) + 1;
	if (n == 1)
		return 0; /* offset 0 is the empty string */
	if (n > t->size - t->used)
		return 0;
	uint32_t off = (uint32_t)t->used;
	mem_copy(t->buf + t->used, s, n);
	t->used += n;
	return off;
}

uint64_t now_ns(void)
{
	struct timespec ts;
	/* the vDSO clock_gettime takes no locks and touches no errno on success */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

size_t str_len(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

char *str_copy(char *dst, const char *src, size_t cap)
{
	size_t i = 0;
	if (cap == 0)
		return dst;
	while (src[i] && i + 1 < cap) {
		dst[i] = src[i];
		i++;
	}
	dst[i] = 0;
	return dst + i;
}

char *str_append(char *dst, size_t cap, const char *src)
{
	size_t n = str_len(dst);
	if (n < cap)
		str_copy(dst + n, src, cap - n);
	return dst;
}

char *str_append_u64(char *dst, size_t cap, uint64_t v)
{
	char tmp[24];
	int i = 23;
	tmp[i] = 0;
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return str_append(dst, cap, tmp + i);
}

char *str_append_hex(char *dst, size_t cap, uint64_t v)
{
	char tmp[24];
	int i = 23;
	tmp[i] = 0;
	do {
		tmp[--i] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	tmp[--i] = 'x';
	tmp[--i] = '0';
	return str_append(dst, cap, tmp + i);
}

int str_starts(const char *s, const char *prefix)
{
	while (*prefix)
		if (*s++ != *prefix++)
			return 0;
	return 1;
}

int str_ends(const char *s, const char *suffix)
{
	size_t a = str_len(s), b = str_len(suffix);
	return a >= b && str_eq(s + a - b, suffix);
}

int str_eq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

void mem_copy(void *dst, const void *src, size_t n)
{
	char *d = dst;
	const char *s = src;
	while (n--)
		*d++ = *s++;
}

void mem_zero(void *dst, size_t n)
{
	char *d = dst;
	while (n--)
		*d++ = 0;
}

int mem_differ(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;
	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return 1;
	return 0;
}

long read_file(const char *path, char *buf, size_t cap)
{
	long fd = raw_syscall4(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return fd;
	size_t used = 0;
	for (;;) {
		if (used + 1 >= cap)
			break;
		long n = raw_syscall3(SYS_read, fd, buf + used, cap - 1 - used);
		if (n == -4 /* EINTR */)
			continue;
		if (n < 0) {
			raw_syscall1(SYS_close, fd);
			return n;
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	buf[used] = 0;
	raw_syscall1(SYS_close, fd);
	return (long)used;
}

long raw_readlink(const char *path, char *buf, size_t cap)
{
	long n = raw_syscall4(SYS_readlinkat, AT_FDCWD, path, buf, cap - 1);
	if (n < 0) {
		buf[0] = 0;
		return n;
	}
	buf[n] = 0;
	return n;
}

uint64_t scan_hex(const char **p)
{
	uint64_t v = 0;
	for (;; (*p)++) {
		char c = **p;
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (d < 0)
			return v;
		v = v * 16 + (uint64_t)d;
	}
}

uint64_t hex_field(const char *s, const char *key, int at_line_start, int *found)
{
	*found = 0;
	for (const char *p = s; *p; p++) {
		if ((at_line_start && p != s && p[-1] != '\n') || !str_starts(p, key))
			continue;
		p += str_len(key);
		while (*p == ' ' || *p == '\t')
			p++;
		*found = 1;
		return scan_hex(&p);
	}
	return 0;
}

int64_t dec_field(const char *s, const char *key, const char **after)
{
	for (const char *p = s; *p; p++) {
		if ((p != s && p[-1] != '\n') || !str_starts(p, key))
			continue;
		p += str_len(key);
		while (*p == ' ' || *p == '\t' || *p == '(')
			p++;
		int negative = *p == '-';
		p += negative;
		int64_t v = 0;
		for (; *p >= '0' && *p <= '9'; p++)
			v = v * 10 + (*p - '0');
		if (after)
			*after = p;
		return negative ? -v : v;
	}
	return 0;
}

/* Reading a directory with getdents64, one entry at a time. */
struct dir_walk {
	long dfd, got, off;
	char buf[4096];
};

struct dir_entry {
	uint64_t ino;
	int64_t off;
	unsigned short reclen;
	unsigned char type;
	char name[];
};

static int walk_open(struct dir_walk *w, const char *path)
{
	w->dfd = raw_syscall4(SYS_openat, AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	w->got = w->off = 0;
	return w->dfd < 0 ? -1 : 0;
}

static void walk_close(struct dir_walk *w)
{
	if (w->dfd >= 0)
		raw_syscall1(SYS_close, w->dfd);
	w->dfd = -1;
}

/* the next entry; NULL at the end (the directory is closed then) */
static const struct dir_entry *walk_next(struct dir_walk *w)
{
	if (w->off >= w->got) {
		w->got =
		    w->dfd < 0 ? 0 : raw_syscall3(SYS_getdents64, w->dfd, w->buf, sizeof w->buf);
		w->off = 0;
		if (w->got <= 0) {
			walk_close(w);
			return 0;
		}
	}
	const struct dir_entry *d = (const void *)(w->buf + w->off);
	w->off += d->reclen;
	return d;
}

int name_in_dir(const char *dir, uint64_t ino, char *name, size_t cap)
{
	struct dir_walk w;
	if (walk_open(&w, dir) != 0)
		return -1;
	for (const struct dir_entry *d; (d = walk_next(&w));)
		if (d->ino == ino && str_len(d->name) < cap) {
			str_copy(name, d->name, cap);
			walk_close(&w);
			return 0;
		}
	return -1;
}

int list_numeric_dir(const char *path, int *out, int cap)
{
	/* listing our own descriptors shows the one doing the listing */
	int own_fds = str_eq(path, "/proc/self/fd");
	struct dir_walk w;
	if (walk_open(&w, path) != 0)
		return -1;
	int n = 0;
	for (const struct dir_entry *d; (d = walk_next(&w));) {
		if (d->name[0] < '0' || d->name[0] > '9')
			continue;
		int v = 0;
		for (const char *p = d->name; *p; p++)
			v = v * 10 + (*p - '0');
		if ((!own_fds || v != w.dfd) && n < cap)
			out[n++] = v;
	}
	return n;
}

/* ---- sock_diag: the kernel's view of any socket, unprivileged ---- */
static char diag_buf[8192];

void sock_diag_own_scratch(void)
{
	stage_own_scratch(diag_buf, sizeof diag_buf);
}

int sock_diag_open(void)
{
	long nl =
	    raw_syscall3(SYS_socket, AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	return nl < 0 ? -1 : (int)nl;
}

const struct nlmsghdr *sock_diag_ask(int nl, void *req, size_t len, size_t msg_size)
{
	struct nlmsghdr *h = req;
	h->nlmsg_len = (uint32_t)len;
	h->nlmsg_type = SOCK_DIAG_BY_FAMILY;
	h->nlmsg_flags = NLM_F_REQUEST;
	struct sockaddr_nl sa;
	mem_zero(&sa, sizeof sa);
	sa.nl_family = AF_NETLINK;
	if (raw_syscall6(SYS_sendto, nl, req, len, 0, &sa, sizeof sa) != (long)len)
		return 0;
	long n = raw_syscall6(SYS_recvfrom, nl, diag_buf, sizeof diag_buf, 0, 0, 0);
	const struct nlmsghdr *r = (const struct nlmsghdr *)diag_buf;
	if (n < (long)NLMSG_LENGTH(msg_size) || r->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
	    r->nlmsg_len > (uint32_t)n)
		return 0;
	return r;
}

void set_error(const char *a, const char *b, const char *c)
{
	if (agent.result < 0)
		return; /* keep the first error: it is the cause */
	agent.result = -1;
	agent.errmsg[0] = 0;
	str_append(agent.errmsg, sizeof agent.errmsg, a);
	if (b)
		str_append(agent.errmsg, sizeof agent.errmsg, b);
	if (c)
		str_append(agent.errmsg, sizeof agent.errmsg, c);
}

void add_warning(const char *a, const char *b, const char *c)
{
	char *w = agent.warnings;
	if (w[0])
		str_append(w, sizeof agent.warnings, "; ");
	str_append(w, sizeof agent.warnings, a);
	if (b)
		str_append(w, sizeof agent.warnings, b);
	if (c)
		str_append(w, sizeof agent.warnings, c);
}

long raw_thread_start(char *stack_top, _Atomic int32_t *tid, void (*fn)(void *), void *arg)
{
	long ret;
	register long r10 __asm__("r10") = (long)tid; /* child_tid */
	register long r8 __asm__("r8") = 0;	      /* tls: unchanged */
	register void *r12 __asm__("r12") = arg;
	register void (*r13)(void *) __asm__("r13") = fn;
	long flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
		     CLONE_SYSVSEM | CLONE_CHILD_CLEARTID | CLONE_PARENT_SETTID;
	/* the child starts on the new stack with the caller's registers:
	 * r12 and r13 survive the system call */
	__asm__ volatile("syscall\n\t"
			 "test %%rax, %%rax\n\t"
			 "jnz 1f\n\t"
			 "mov %%r12, %%rdi\n\t"
			 "and $-16, %%rsp\n\t"
			 "call *%%r13\n\t"
			 "ud2\n"
			 "1:"
			 : "=a"(ret)
			 : "a"(SYS_clone), "D"(flags), "S"(stack_top), "d"(tid), "r"(r10), "r"(r8),
			   "r"(r12), "r"(r13)
			 : "rcx", "r11", "memory");
	return ret;
}
