/* Which pages were written since the last checkpoint, without looking at
 * them: userfaultfd write-protection in asynchronous mode (the kernel
 * marks a page written and lets the write through, no fault reaches us)
 * and PAGEMAP_SCAN to read and reset those marks (Linux 6.7+). Where this
 * is missing, or for memory it does not cover, the image writer hashes
 * every page instead (incremental.c): tracking only spares it the pages it
 * can prove unchanged, so that it need not read them at all (reading a
 * page costs microseconds in some VMs).
 *
 * A page is proven unchanged when its mapping was write-protected before
 * the previous checkpoint's capture, has stayed registered since (a
 * mapping replaced or moved loses its registration, and the scan says
 * so), the previous capture was of the generation this image refers to,
 * and the scan does not report it written. Mappings registered since the
 * last capture ("fresh") prove nothing yet.
 *
 * Timeline: at SUSPEND (program running) new mappings are registered and
 * protected, and the pages written since the last protection are
 * protected again (they count as written at this capture); at the capture
 * (program stopped) each mapping is scanned for the pages written since,
 * which is cheap; protecting those again costs microseconds each, so it is
 * done once the program runs again, and the pages found then count as
 * written at the next checkpoint too. Protecting at SUSPEND keeps the
 * work out of the pause twice over: the copy-on-write fork then finds the
 * page table entries of written pages read-only already, where it would
 * otherwise change each (microseconds per entry in some VMs). The
 * copy-on-write writer consults the result, which lies in scratch memory
 * it inherited. */
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "agent/agent.h"
#include "agent/pagescan.h"
#include "common/rawsys.h"

/* userfaultfd interfaces newer than Debian 12's linux/userfaultfd.h */
#define TRK_FEATURE_WP_ASYNC (1ull << 15)
#define TRK_USER_MODE_ONLY 1 /* userfaultfd(2) flag: needed without privileges */

#define MAX_FRESH 4096
#define MAX_SPANS 65536
#define MAX_WRITTEN (1u << 20)
#define MAX_SCANNED 4096

struct span {
	uint64_t start, end;
};

static struct {
	int uffd;	   /* -1: not set up (or not available: broken = 1) */
	int broken;	   /* the kernel or the rules refuse: hash everything */
	uint64_t base_gen; /* generation of the last capture that scanned */
	struct span fresh[MAX_FRESH];
	int nfresh, fresh_overflow;
	/* pages protected again after the last capture: written since the
	 * capture before it, or just after it (ascending) */
	struct span again[MAX_SPANS];
	uint32_t nagain;
	/* pages protected again at SUSPEND, before the stop: written since
	 * (ascending; for the next capture only) */
	struct span pre[MAX_SPANS];
	uint32_t npre;
	int pre_pending; /* a SUSPEND protected pages no capture has seen */
	/* the mappings the last capture scanned, when they fit (nscanned ==
	 * MAX_SCANNED + 1: they did not): the ones to protect again after it */
	struct span scanned[MAX_SCANNED];
	uint32_t nscanned;
	/* tracked bytes written between the last two checkpoints (measured at
	 * SUSPEND); 0 before the first interval was measured */
	uint64_t written_last;
} trk = {.uffd = -1};

/* The capture's result, in scratch memory (read by the writer). */
static struct {
	int valid;
	struct span *tracked; /* ascending: mappings scanned, not fresh */
	uint32_t ntracked;
	/* ascending: every mapping scanned, fresh or not; the capture became
	 * the baseline (covering), so the next one can prove their pages
	 * unchanged without hashes */
	int covering;
	struct span *covered;
	uint32_t ncovered, c_cur;
	struct pagescan_region *written; /* ascending */
	uint32_t nwritten;
	struct span *again; /* trk.again as it was at the capture */
	uint32_t nagain;
	struct span *pre; /* trk.pre as it was at the capture */
	uint32_t npre;
	uint32_t t_cur, w_cur, a_cur, p_cur; /* cursors: pages are asked in ascending order */
} res;

/* /proc/self/maps, for the steps taken while the program runs (too many
 * mappings to fit make tracking give up, never fail) */
static char maps[4u << 20];

void track_own_scratch(void)
{
	stage_own_scratch(maps, sizeof maps);
}

static int is_userfaultfd(int fd)
{
	char path[40] = "/proc/self/fd/", link[64];
	str_append_u64(path, sizeof path, (uint64_t)fd);
	long n = raw_readlink(path, link, sizeof link);
	return n > 0 && str_eq(link, "anon_inode:[userfaultfd]");
}

/* The program may have closed our descriptor (daemons close them all) and
 * got its number back for something else: use it, or close it, only while
 * it is still a userfaultfd. */
static int still_ours(void)
{
	if (trk.uffd < 0)
		return 0;
	if (is_userfaultfd(trk.uffd))
		return 1;
	trk.uffd = -1;
	trk.base_gen = 0;
	return 0;
}

int track_fd(void)
{
	return still_ours() ? trk.uffd : -1;
}

/* Registering and mremap exclude each other (mapwrap.c): a range the
 * wrapper has just released must not be registered again before the
 * program's mremap has moved it. Held for two system calls at most; the
 * program's threads are never stopped while the checkpoint thread waits
 * for it (it registers while they run, at SUSPEND). The owner's thread id
 * makes it safe to take again in a signal handler that calls mremap. */
static struct {
	_Atomic int owner; /* thread id, 0 when free */
	_Atomic int waiters;
	int depth; /* the owner's */
} map_lock;

static void map_lock_take(void)
{
	int self = (int)raw_syscall0(SYS_gettid), free = 0;
	if (__atomic_load_n(&map_lock.owner, __ATOMIC_RELAXED) == self) {
		/* 0: interrupted between taking it and counting it */
		map_lock.depth = map_lock.depth ? map_lock.depth + 1 : 2;
		return;
	}
	while (!__atomic_compare_exchange_n(&map_lock.owner, &free, self, 0, __ATOMIC_ACQUIRE,
					    __ATOMIC_RELAXED)) {
		__atomic_fetch_add(&map_lock.waiters, 1, __ATOMIC_SEQ_CST);
		raw_syscall4(SYS_futex, &map_lock.owner, FUTEX_WAIT_PRIVATE, free, 0);
		__atomic_fetch_sub(&map_lock.waiters, 1, __ATOMIC_RELAXED);
		free = 0;
	}
	map_lock.depth = 1;
}

static void map_lock_drop(void)
{
	if (--map_lock.depth)
		return;
	/* both sequentially consistent: a waiter counted after this load
	 * sees the lock free when it goes to sleep */
	__atomic_exchange_n(&map_lock.owner, 0, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&map_lock.waiters, __ATOMIC_SEQ_CST))
		raw_syscall3(SYS_futex, &map_lock.owner, FUTEX_WAKE_PRIVATE, 1);
}

void track_release_begin(uint64_t start, uint64_t len)
{
	map_lock_take();
	int fd = __atomic_load_n(&trk.uffd, __ATOMIC_RELAXED);
	/* only while still ours, read-only here (still_ours changes trk,
	 * which belongs to the checkpoint thread): the program may have
	 * reused the number, even for a userfaultfd of its own */
	if (fd < 0 || !len || !is_userfaultfd(fd))
		return;
	struct uffdio_range range = {start, len};
	raw_syscall3(SYS_ioctl, fd, UFFDIO_UNREGISTER, &range); /* else as it is */
}

void track_release_end(void)
{
	map_lock_drop();
}

void track_forget(void)
{
	/* after fork (the descriptor acts on the parent's memory: close it
	 * unused) or restart (the restored descriptor is not ours) */
	if (still_ours())
		raw_syscall1(SYS_close, trk.uffd);
	trk.uffd = -1;
	/* a thread that held it is not in this process */
	map_lock.owner = map_lock.waiters = map_lock.depth = 0;
	trk.base_gen = 0;
	trk.nfresh = 0;
	trk.fresh_overflow = 0;
	trk.nagain = 0;
	trk.npre = 0;
	trk.pre_pending = 0;
	res.valid = 0;
}

void track_forget_restored(void)
{
	trk.uffd = -1; /* a number from before the restart, not ours now */
	track_forget();
}

static int setup(void)
{
	if (still_ours())
		return 0;
	if (trk.broken)
		return -1;
	long fd = raw_syscall1(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | TRK_USER_MODE_ONLY);
	struct uffdio_api api = {.api = UFFD_API, .features = TRK_FEATURE_WP_ASYNC};
	if (fd < 0 || raw_syscall3(SYS_ioctl, fd, UFFDIO_API, &api) != 0) {
		if (fd >= 0)
			raw_syscall1(SYS_close, fd);
		trk.broken = 1;
		return -1;
	}
	/* out of the way of the program's own numbers */
	long high = raw_syscall3(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 900);
	if (high >= 0) {
		raw_syscall1(SYS_close, fd);
		fd = high;
	}
	trk.uffd = (int)fd;
	return 0;
}

/* the pages written since they were last protected */
static long scan(int pagemap_fd, uint64_t start, uint64_t end, uint64_t flags,
		 struct pagescan_region *vec, uint64_t vec_len, uint64_t *walk_end)
{
	return pagescan(pagemap_fd, start, end, flags, PAGESCAN_IS_WRITTEN, 0, 0, vec, vec_len,
			walk_end);
}

/* The mappings tracking covers: private, anonymous, writable. */
static int trackable(const char *line_perms, uint64_t ino, const char *path)
{
	return line_perms[1] == 'w' && line_perms[3] == 'p' && ino == 0 &&
	       !str_starts(path, "[anon:ckpt") && !str_eq(path, "[vsyscall]");
}

/* Mappings tracking does not cover whose pages a checkpoint may store:
 * writable or shared (file-private data, shared memory), not ckpt's own. */
static int may_change_untracked(const char *line_perms, uint64_t ino, const char *path)
{
	return !trackable(line_perms, ino, path) &&
	       (line_perms[1] == 'w' || line_perms[3] == 's') && !str_starts(path, "[anon:ckpt") &&
	       !str_eq(path, "[vsyscall]");
}

/* Calls fn for every trackable mapping of maps (the text of
 * /proc/self/maps, left as it was), or with untracked set, for every
 * other mapping that may_change_untracked. */
static void each_mapping_of(char *maps, int untracked, void (*fn)(uint64_t, uint64_t, void *),
			    void *arg)
{
	for (const char *p = maps; *p;) {
		uint64_t start = scan_hex(&p);
		p++;
		uint64_t end = scan_hex(&p);
		p++;
		char perms[5] = {p[0], p[1], p[2], p[3], 0};
		p += 5;
		scan_hex(&p); /* offset */
		p++;
		scan_hex(&p); /* major */
		p++;
		scan_hex(&p); /* minor */
		p++;
		uint64_t ino = 0;
		for (; *p >= '0' && *p <= '9'; p++)
			ino = ino * 10 + (uint64_t)(*p - '0');
		while (*p == ' ')
			p++;
		const char *path = p;
		while (*p && *p != '\n')
			p++;
		char save = *p;
		*(char *)p = 0;
		if (untracked ? may_change_untracked(perms, ino, path) && !stage_owns(start, end)
			      : trackable(perms, ino, path) && !stage_owns(start, end))
			fn(start, end, arg);
		*(char *)p = save;
		if (*p)
			p++;
	}
}

static void each_mapping_in(char *maps, void (*fn)(uint64_t, uint64_t, void *), void *arg)
{
	each_mapping_of(maps, 0, fn, arg);
}

/* The same, for /proc/self/maps read into buf. */
static int each_mapping(char *buf, size_t cap, void (*fn)(uint64_t, uint64_t, void *), void *arg)
{
	long n = read_file("/proc/self/maps", buf, cap);
	if (n <= 0 || (size_t)n >= cap)
		return -1;
	each_mapping_in(buf, fn, arg);
	return 0;
}

/* Appends [start, end) to list; a list too long to hold it makes the
 * next capture untrusted (-1). */
static int append_span(struct span *list, uint32_t *n, uint64_t start, uint64_t end)
{
	if (*n == MAX_SPANS) {
		trk.base_gen = 0; /* too scattered to remember */
		return -1;
	}
	list[(*n)++] = (struct span){start, end};
	return 0;
}

/* Protect again the pages of [start, end) written since they were last
 * protected, appending them to list (ascending); -1 when the mapping is
 * not registered. A list too long to hold them makes the next capture
 * untrusted. */
static int protect_written(int pagemap_fd, uint64_t start, uint64_t end, struct span *list,
			   uint32_t *n)
{
	static struct pagescan_region out[4096];
	for (uint64_t at = start; at < end;) {
		uint64_t walk_end = end;
		long r = scan(pagemap_fd, at, end, PAGESCAN_WP_MATCHING | PAGESCAN_CHECK_WPASYNC,
			      out, 4096, &walk_end);
		if (r < 0) {
			/* The walk stopped at a mapping not registered (never,
			 * or no longer: [start, end) may have been listed before
			 * part of it was replaced or moved), after protecting the
			 * pages before it without saying which were written: all
			 * of [at, end) counts as written. Dropping them lost the
			 * writes and zaps just before a re-protection. */
			append_span(list, n, at, end);
			return at == start ? -1 : 0;
		}
		for (long i = 0; i < r; i++)
			if (append_span(list, n, out[i].start, out[i].end) != 0)
				return 0;
		if (walk_end <= at)
			return 0;
		at = walk_end;
	}
	return 0;
}

/* Adds to *bytes the size of the pages of [start, end) written since they
 * were last protected, changing nothing; -1 when the mapping is not
 * registered. */
static int count_written(int pagemap_fd, uint64_t start, uint64_t end, uint64_t *bytes)
{
	static struct pagescan_region out[4096];
	for (uint64_t at = start; at < end;) {
		uint64_t walk_end = end;
		long r = scan(pagemap_fd, at, end, PAGESCAN_CHECK_WPASYNC, out, 4096, &walk_end);
		if (r < 0)
			return at == start ? -1 : 0;
		for (long i = 0; i < r; i++)
			*bytes += out[i].end - out[i].start;
		if (walk_end <= at)
			return 0;
		at = walk_end;
	}
	return 0;
}

struct arm {
	int pagemap_fd;
	int protect; /* protect again what was written (else only count it) */
	uint64_t bytes;
};

/* How much the coming capture would store of [start, end): what was
 * written, or all of it when it is not registered yet. */
static void count_one(uint64_t start, uint64_t end, void *arg)
{
	struct arm *a = arg;
	if (count_written(a->pagemap_fd, start, end, &a->bytes) != 0)
		a->bytes += end - start;
}

/* The parts of [start, end) registered for write tracking now, in order
 * (*parts: until the next call); -1 when they are more than it holds or
 * the walk fails. */
static long registered_parts(int pagemap_fd, uint64_t start, uint64_t end,
			     struct pagescan_region **parts)
{
	static struct pagescan_region found[256];
	uint64_t walk_end = end;
	long n =
	    pagescan(pagemap_fd, start, end, 0, PAGESCAN_IS_WPALLOWED, 0, 0, found, 256, &walk_end);
	*parts = found;
	return n < 0 || walk_end < end ? -1 : n;
}

/* Registered already: protect again what was written since, now while
 * the program runs. Those pages count as written at the coming capture,
 * and a copy-on-write fork then finds their entries read-only already
 * (changing a page table entry is what a fork costs per page written,
 * microseconds each in some VMs). A capture into the stage forks nothing:
 * the capture's scan finds those pages written as well, and protecting
 * them twice per checkpoint would only cost time. -1 when [start, end)
 * is not registered at its start. */
static int arm_registered(struct arm *a, uint64_t start, uint64_t end)
{
	return a->protect ? protect_written(a->pagemap_fd, start, end, trk.pre, &trk.npre)
			  : count_written(a->pagemap_fd, start, end, &a->bytes);
}

/* Not registered yet: registered and every page protected; it proves
 * nothing until the next capture has seen it (fresh). */
static void register_fresh(struct arm *a, uint64_t start, uint64_t end)
{
	struct uffdio_register reg = {.range = {start, end - start},
				      .mode = UFFDIO_REGISTER_MODE_WP};
	map_lock_take();
	long r = raw_syscall3(SYS_ioctl, trk.uffd, UFFDIO_REGISTER, &reg);
	map_lock_drop();
	if (r != 0)
		return; /* not allowed for this mapping: it stays hashed */
	if (trk.nfresh == MAX_FRESH) {
		trk.fresh_overflow = 1;
	} else {
		trk.fresh[trk.nfresh++] = (struct span){start, end};
	}
	/* what was written since reads as written */
	scan(a->pagemap_fd, start, end, PAGESCAN_WP_MATCHING | PAGESCAN_CHECK_WPASYNC, 0, 0, 0);
}

static void arm_one(uint64_t start, uint64_t end, void *arg)
{
	struct arm *a = arg;
	uint32_t npre = trk.npre;
	if (arm_registered(a, start, end) == 0)
		return;
	/* A new mapping, or a line of a maps file read before a piece of it
	 * was moved or replaced (the program runs): only the parts not
	 * registered become fresh, the rest proves what it proved. A scan
	 * that fails protects the registered pages before the first part not
	 * registered without listing the written ones: those count as
	 * written (protect_written listed all of the line). */
	struct pagescan_region *parts;
	long n = registered_parts(a->pagemap_fd, start, end, &parts);
	if (n < 0) {
		register_fresh(a, start, end);
		return;
	}
	trk.npre = npre;
	uint64_t at = start;
	for (long i = 0; i < n; i++) {
		if (parts[i].start > at)
			register_fresh(a, at, parts[i].start);
		if (parts[i].start == start && a->protect)
			append_span(trk.pre, &trk.npre, start, parts[i].end);
		else
			arm_registered(a, parts[i].start, parts[i].end);
		at = parts[i].end;
	}
	if (at < end)
		register_fresh(a, at, end);
}

static uint64_t span_bytes(const struct span *list, uint32_t n)
{
	uint64_t sum = 0;
	for (uint32_t i = 0; i < n; i++)
		sum += list[i].end - list[i].start;
	return sum;
}

static void add_size(uint64_t start, uint64_t end, void *arg)
{
	*(uint64_t *)arg += end - start;
}

static uint64_t untracked_bytes(char *text)
{
	uint64_t sum = 0;
	each_mapping_of(text, 1, add_size, &sum);
	return sum;
}

uint64_t track_arm(uint64_t stage_limit)
{
	if (setup() != 0)
		return UINT64_MAX;
	if (trk.pre_pending)
		trk.base_gen = 0; /* an earlier SUSPEND's list was never captured */
	trk.npre = 0;
	trk.pre_pending = 1;
	long fd = raw_syscall4(SYS_openat, AT_FDCWD, "/proc/self/pagemap", O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return UINT64_MAX;
	struct arm a = {(int)fd, 1, 0};
	uint64_t expected = UINT64_MAX;
	long n = read_file("/proc/self/maps", maps, sizeof maps);
	if (n <= 0 || (size_t)n >= sizeof maps) {
		trk.fresh_overflow = 1; /* could not see every mapping */
	} else {
		if (trk.base_gen) {
			/* what the capture will store, were it to come now */
			each_mapping_in(maps, count_one, &a);
			trk.written_last = a.bytes;
			expected =
			    a.bytes + span_bytes(trk.again, trk.nagain) + untracked_bytes(maps);
			a.protect = expected > stage_limit;
		}
		each_mapping_in(maps, arm_one, &a);
	}
	raw_syscall1(SYS_close, fd);
	return expected;
}

uint64_t track_next_store_bytes(void)
{
	if (!still_ours() || !trk.base_gen)
		return UINT64_MAX;
	long n = read_file("/proc/self/maps", maps, sizeof maps);
	if (n <= 0 || (size_t)n >= sizeof maps)
		return UINT64_MAX;
	uint64_t known = span_bytes(trk.again, trk.nagain) + untracked_bytes(maps);
	/* The program writes as much until the next checkpoint as it did in
	 * the last interval. After the first capture nothing was measured
	 * yet: as much as it has written since that capture's pages were
	 * protected again, while the image was written (a program that keeps
	 * writing the same pages has written them all by then). */
	uint64_t written = trk.written_last;
	long fd;
	if (!written && (fd = raw_syscall4(SYS_openat, AT_FDCWD, "/proc/self/pagemap",
					   O_RDONLY | O_CLOEXEC, 0)) >= 0) {
		struct arm a = {(int)fd, 0, 0};
		each_mapping_in(maps, count_one, &a);
		raw_syscall1(SYS_close, fd);
		written = a.bytes;
	}
	return known + written;
}

struct collect {
	int pagemap_fd;
	int failed;
};

/* [start, end) less the fresh ranges (registered when they merged with
 * it, they prove nothing yet) goes into the tracked list. */
static int add_tracked(uint64_t start, uint64_t end)
{
	uint64_t cur = start;
	while (cur < end) {
		/* the fresh range that starts first among those ending after cur */
		const struct span *f = 0;
		for (int i = 0; i < trk.nfresh; i++)
			if (trk.fresh[i].end > cur && trk.fresh[i].start < end &&
			    (!f || trk.fresh[i].start < f->start))
				f = &trk.fresh[i];
		uint64_t stop = f && f->start > cur ? f->start : f ? cur : end;
		if (stop > cur) {
			if (res.ntracked == MAX_SPANS)
				return -1;
			res.tracked[res.ntracked++] = (struct span){cur, stop};
		}
		if (!f)
			break;
		cur = f->end > cur ? f->end : cur;
	}
	return 0;
}

static void collect_one(uint64_t start, uint64_t end, void *arg)
{
	struct collect *c = arg;
	uint32_t first = res.nwritten;
	for (uint64_t at = start; at < end;) {
		uint64_t walk_end = end;
		long r = scan(c->pagemap_fd, at, end, PAGESCAN_CHECK_WPASYNC,
			      res.written + res.nwritten, MAX_WRITTEN - res.nwritten, &walk_end);
		if (r < 0) {
			/* not registered (new, replaced, moved): all of it counts
			 * as written this time */
			res.nwritten = first;
			return;
		}
		res.nwritten += (uint32_t)r;
		if (walk_end <= at || (walk_end < end && res.nwritten == MAX_WRITTEN)) {
			res.nwritten = first;
			c->failed = 1;
			return;
		}
		at = walk_end;
	}
	if (add_tracked(start, end) != 0 || res.ncovered == MAX_SPANS) {
		c->failed = 1;
		return;
	}
	res.covered[res.ncovered++] = (struct span){start, end};
}

void track_collect(struct scratch *s, char *maps)
{
	res.valid = res.covering = 0;
	if (!still_ours())
		return;
	uint64_t base = trk.base_gen;
	int trusted = base && base == agent.parent_gen && !trk.fresh_overflow;
	res.tracked = scratch_alloc(s, MAX_SPANS * sizeof *res.tracked);
	res.covered = scratch_alloc(s, MAX_SPANS * sizeof *res.covered);
	res.written = scratch_alloc(s, MAX_WRITTEN * sizeof *res.written);
	long fd = raw_syscall4(SYS_openat, AT_FDCWD, "/proc/self/pagemap", O_RDONLY | O_CLOEXEC, 0);
	trk.base_gen = 0;
	if (!res.tracked || !res.covered || !res.written || !maps || fd < 0) {
		if (fd >= 0)
			raw_syscall1(SYS_close, fd);
		return;
	}
	res.ntracked = res.nwritten = res.t_cur = res.w_cur = res.a_cur = 0;
	res.ncovered = res.c_cur = 0;
	res.again = trk.again;
	res.nagain = trk.nagain;
	res.pre = trk.pre;
	res.npre = trk.npre;
	res.p_cur = 0;
	trk.pre_pending = 0;
	struct collect c = {(int)fd, 0};
	each_mapping_in(maps, collect_one, &c);
	int ok = !c.failed;
	raw_syscall1(SYS_close, fd);
	/* this capture is the new baseline, whether or not it could be used */
	trk.nfresh = 0;
	trk.fresh_overflow = 0;
	if (!ok)
		return;
	trk.base_gen = agent.generation;
	res.valid = trusted;
	res.covering = 1;
	trk.nscanned = res.ncovered <= MAX_SCANNED ? res.ncovered : MAX_SCANNED + 1;
	if (res.ncovered <= MAX_SCANNED)
		mem_copy(trk.scanned, res.covered, res.ncovered * sizeof *res.covered);
}

int track_unchanged(uint64_t addr)
{
	if (!res.valid)
		return 0;
	while (res.t_cur < res.ntracked && res.tracked[res.t_cur].end <= addr)
		res.t_cur++;
	if (res.t_cur == res.ntracked || res.tracked[res.t_cur].start > addr)
		return 0;
	while (res.w_cur < res.nwritten && res.written[res.w_cur].end <= addr)
		res.w_cur++;
	if (res.w_cur < res.nwritten && res.written[res.w_cur].start <= addr)
		return 0;
	while (res.a_cur < res.nagain && res.again[res.a_cur].end <= addr)
		res.a_cur++;
	if (res.a_cur < res.nagain && res.again[res.a_cur].start <= addr)
		return 0;
	while (res.p_cur < res.npre && res.pre[res.p_cur].end <= addr)
		res.p_cur++;
	return !(res.p_cur < res.npre && res.pre[res.p_cur].start <= addr);
}

int track_covers(uint64_t addr)
{
	if (!res.covering)
		return 0;
	while (res.c_cur < res.ncovered && res.covered[res.c_cur].end <= addr)
		res.c_cur++;
	return res.c_cur < res.ncovered && res.covered[res.c_cur].start <= addr;
}

uint64_t track_covers_pages(uint64_t addr, uint64_t max)
{
	if (!track_covers(addr))
		return 0;
	uint64_t n = (res.covered[res.c_cur].end - addr) / CKPT_PAGE_SIZE;
	return n < max ? n : max;
}

/* [start, end) as the capture listed it, before the program ran on: a
 * piece of it may have been replaced or moved since (not registered
 * now), and a protecting scan that meets such a piece stops after
 * protecting the pages before it without saying which were written, so
 * all of them would count as written (a program that maps a megabyte
 * afresh in a buffer of 24 had 4,400 of its 6,000 pages stored by the
 * next incremental checkpoint). The parts still registered are protected
 * one by one; the others are registered afresh at the next SUSPEND. */
static void reprotect_one(uint64_t start, uint64_t end, void *arg)
{
	int pagemap_fd = *(int *)arg;
	struct pagescan_region *parts;
	long n = registered_parts(pagemap_fd, start, end, &parts);
	if (n < 0) {
		protect_written(pagemap_fd, start, end, trk.again, &trk.nagain);
		return;
	}
	for (long i = 0; i < n; i++)
		protect_written(pagemap_fd, parts[i].start, parts[i].end, trk.again, &trk.nagain);
}

void track_reprotect(void)
{
	/* only after a capture that became the baseline */
	if (!still_ours() || trk.base_gen != agent.generation)
		return;
	long fd = raw_syscall4(SYS_openat, AT_FDCWD, "/proc/self/pagemap", O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0) {
		trk.base_gen = 0;
		return;
	}
	int pagemap_fd = (int)fd;
	trk.nagain = 0;
	/* The mappings the capture scanned, as it listed them: the maps file
	 * is not read again (2 ms of a torch checkpoint's way to DONE). One
	 * unmapped or replaced since is no longer registered and the scan
	 * fails there, as it would for the maps file's; one new since is not
	 * registered yet (SUSPEND registers it and protects all its pages). */
	if (trk.nscanned <= MAX_SCANNED) {
		for (uint32_t i = 0; i < trk.nscanned; i++)
			reprotect_one(trk.scanned[i].start, trk.scanned[i].end, &pagemap_fd);
	} else if (each_mapping(maps, sizeof maps, reprotect_one, &pagemap_fd) != 0) {
		trk.base_gen = 0;
	}
	raw_syscall1(SYS_close, fd);
}

void track_done(void)
{
	res.valid = res.covering = 0;
}

/* ---- how much the coming capture may store (stage.c) ---- */

uint64_t track_store_bound(char *maps_text)
{
	if (!res.valid || !maps_text)
		return UINT64_MAX;
	uint64_t written = 0;
	for (uint32_t i = 0; i < res.nwritten; i++)
		written += res.written[i].end - res.written[i].start;
	/* mappings covered but not tracked are fresh: all of them may be stored */
	uint64_t fresh =
	    span_bytes(res.covered, res.ncovered) - span_bytes(res.tracked, res.ntracked);
	return written + span_bytes(res.again, res.nagain) + span_bytes(res.pre, res.npre) + fresh +
	       untracked_bytes(maps_text);
}
