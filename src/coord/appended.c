/* Files the program appends to, and their sizes at each checkpoint; files
 * it creates, kept with each checkpoint.
 *
 * The agents write a line "DEV INO PATH" to the run directory's journal
 * (APPEND_JOURNAL) for each regular file a process opens with O_APPEND
 * (src/agent/appendlog.c). While every process is stopped for a
 * checkpoint, the coordinator reads what is new in the journal and records
 * the size of each file still at its path (the same device and inode);
 * the generation's manifest lists them ("appended=SIZE DEV INO PATH"). A
 * restart from that generation cuts back each of them that grew since: the
 * restarted program appends those bytes again. Files open at the
 * checkpoint are also handled by the restorer (their descriptors); for
 * them this is the same cut.
 *
 * A second journal (CREATE_JOURNAL) lists the regular files the processes
 * create (open with O_CREAT, mkstemp). While stopped, the coordinator
 * links each one still at its path into the generation's files/ directory
 * (the agents link the files open at the checkpoint there too, by the same
 * names: agent/keep.c) and the manifest lists it ("kept=DEV INO PATH"). A
 * restart from that generation links back each one that is gone from its
 * path: a temporary file merged and deleted after the checkpoint, an old
 * output the program removed, which the restarted program reads or
 * removes again (and would fail on). A file on another filesystem than the
 * run directory, or not the user's own, cannot be linked and is not kept. */
#include "coord/coord_int.h"

#include "coord/err.h"
#include "coord/gens.h"
#include "coord/kvfile.h"
#include "coord/log.h"
#include "coord/proto.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define APPEND_JOURNAL "appended"
#define CREATE_JOURNAL "created"
/* More distinct files than this are not followed (logged once). */
#define APPENDED_MAX 4096

/* The journal's path encoding: "%XX" for "%" and newline, every other
 * byte as it is (so not ckpt_pct_decode, which wants protocol fields). */
static int decode_path(char *dst, const char *src, size_t len)
{
	size_t out = 0;
	for (size_t i = 0; i < len; i++) {
		if (src[i] != '%') {
			dst[out++] = src[i];
			continue;
		}
		int hi = i + 2 < len ? ckpt_hexval(src[i + 1]) : -1,
		    lo = hi < 0 ? -1 : ckpt_hexval(src[i + 2]);
		if (lo < 0 || (hi << 4 | lo) == 0)
			return -1;
		dst[out++] = (char)(hi << 4 | lo);
		i += 2;
	}
	dst[out] = '\0';
	return 0;
}

/* One journal line; 0, or -1 if it is not one. */
static int parse_line(const char *line, size_t len, struct appended_file *f)
{
	char *end;
	errno = 0;
	f->dev = strtoull(line, &end, 10);
	if (errno || *end != ' ')
		return -1;
	f->ino = strtoull(end + 1, &end, 10);
	if (errno || *end != ' ' || end[1] != '/')
		return -1;
	const char *path = end + 1;
	size_t plen = len - (size_t)(path - line);
	if (!(f->path = malloc(plen + 1)) || decode_path(f->path, path, plen) < 0) {
		free(f->path);
		f->path = NULL;
		return -1;
	}
	return 0;
}

/* The index has twice the slots of the list: never full. */
#define INDEX_SLOTS (2 * APPENDED_MAX)

static size_t slot_of(uint64_t dev, uint64_t ino)
{
	return (size_t)((dev * 0x9e3779b97f4a7c15ull ^ ino) * 0xff51afd7ed558ccdull % INDEX_SLOTS);
}

static void index_add(struct journal *j, size_t at)
{
	size_t k = slot_of(j->files[at].dev, j->files[at].ino);
	while (j->index[k] >= 0)
		k = (k + 1) % INDEX_SLOTS;
	j->index[k] = (int32_t)at;
}

static void index_rebuild(struct journal *j)
{
	for (size_t k = 0; k < INDEX_SLOTS; k++)
		j->index[k] = -1;
	for (size_t i = 0; i < j->n; i++)
		index_add(j, i);
}

static int known(const struct journal *j, const struct appended_file *f)
{
	for (size_t k = slot_of(f->dev, f->ino); j->index[k] >= 0; k = (k + 1) % INDEX_SLOTS) {
		const struct appended_file *o = &j->files[j->index[k]];
		if (o->dev == f->dev && o->ino == f->ino && strcmp(o->path, f->path) == 0)
			return 1;
	}
	return 0;
}

/* Which of the journal's files are still at their paths, and their sizes. */
static void look_at(struct journal *j)
{
	for (size_t i = 0; i < j->n; i++) {
		struct appended_file *f = &j->files[i];
		struct stat st;
		f->present = stat(f->path, &st) == 0 && S_ISREG(st.st_mode) &&
			     (uint64_t)st.st_dev == f->dev && (uint64_t)st.st_ino == f->ino;
		f->size = f->present ? (uint64_t)st.st_size : 0;
	}
}

/* Forgets the files look_at found gone from their paths: they make room
 * for new ones. Each checkpoint does (keep_created), and so does a full
 * list: a program that makes and removes a file at every step would
 * otherwise fill it between two checkpoints, and the files after it would
 * not be followed. Returns how many are left. */
static size_t drop_absent(struct journal *j)
{
	size_t left = 0;
	for (size_t i = 0; i < j->n; i++) {
		if (j->files[i].present)
			j->files[left++] = j->files[i];
		else
			free(j->files[i].path);
	}
	j->n = left;
	if (j->index)
		index_rebuild(j);
	return left;
}

/* The journal's new lines (whole ones) into j; what is not followed is
 * named in the log as what. */
static void read_journal(struct coord *c, const char *name, struct journal *j, const char *what)
{
	if (!j->files && !(j->files = calloc(APPENDED_MAX, sizeof(*j->files))))
		return;
	if (!j->index) {
		if (!(j->index = malloc(INDEX_SLOTS * sizeof(*j->index))))
			return;
		index_rebuild(j);
	}
	int fd = openat(c->o->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	char buf[65536];
	size_t have = 0;
	int forgetting = 1; /* while forgetting frees a quarter of the list */
	for (;;) {
		ssize_t n = pread(fd, buf + have, sizeof(buf) - have, (off_t)(j->read + have));
		if (n <= 0)
			break;
		have += (size_t)n;
		size_t start = 0;
		for (size_t i = 0; i < have; i++) {
			if (buf[i] != '\n')
				continue;
			struct appended_file f = {0};
			if (parse_line(buf + start, i - start, &f) == 0) {
				if (j->n == APPENDED_MAX && forgetting && !known(j, &f)) {
					look_at(j);
					forgetting = drop_absent(j) <= APPENDED_MAX * 3 / 4;
				}
				if (known(j, &f) || j->n == APPENDED_MAX) {
					if (j->n == APPENDED_MAX && !j->full++)
						ckpt_log(c->o->exec_log, "more than %d files %s",
							 APPENDED_MAX, what);
					free(f.path);
				} else {
					j->files[j->n++] = f;
					index_add(j, j->n - 1);
				}
			}
			start = i + 1;
		}
		j->read += start;
		if (start == 0 && have == sizeof(buf))
			j->read += have; /* a line too long for any path */
		memmove(buf, buf + start, have - start);
		have = start == 0 && have == sizeof(buf) ? 0 : have - start;
	}
	close(fd);
}

/* The name a kept file has in a generation's files/ (agent/keep.c). */
static void kept_name(char *buf, size_t cap, uint64_t dev, uint64_t ino)
{
	snprintf(buf, cap, "0x%" PRIx64 "-0x%" PRIx64, dev, ino);
}

/* The generation's files/ directory, made if need be; -1 if it cannot be. */
static int files_dir(struct coord *c)
{
	char partial[64];
	gens_name(partial, sizeof(partial), c->ck.gen, 1);
	int gfd = openat(c->o->imagesfd, partial, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (gfd < 0)
		return -1;
	int files = -1;
	if (mkdirat(gfd, "files", 0700) == 0 || errno == EEXIST)
		files = openat(gfd, "files", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	close(gfd);
	return files;
}

/* Link f into files/ from fromdir/from (its path: AT_FDCWD); 1 if the
 * link is f's file. */
static int link_kept(int files, struct appended_file *f, int fromdir, const char *from)
{
	char name[64];
	kept_name(name, sizeof(name), f->dev, f->ino);
	struct stat st;
	if (linkat(fromdir, from, files, name, 0) != 0 && errno != EEXIST)
		return 0; /* another filesystem, not the user's own */
	/* the path may name another file by now */
	if (fstatat(files, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && (uint64_t)st.st_dev == f->dev &&
	    (uint64_t)st.st_ino == f->ino)
		return 1;
	unlinkat(files, name, 0);
	return 0;
}

/* While stopped: which created files are still at their paths (look_at),
 * and a link into the generation being written to each one the last
 * generation did not keep (the program may delete it as soon as it runs).
 * Those it kept are linked from its links at commit (keep_created_rest):
 * no system call in the pause but a stat, for a program that keeps
 * thousands of files it made. */
static void keep_created(struct coord *c)
{
	drop_absent(&c->created);
	int files = -1;
	for (size_t i = 0; i < c->created.n; i++) {
		struct appended_file *f = &c->created.files[i];
		f->present = 0;
		f->defer = f->kept_gen != 0;
		if (f->defer)
			continue;
		if (files < 0 && (files = files_dir(c)) < 0)
			break;
		f->present = link_kept(files, f, AT_FDCWD, f->path);
	}
	if (files >= 0)
		close(files);
}

/* At commit: the files the last generation kept, linked from its links
 * (from the path if it is gone: a checkpoint given up in between), then
 * all of them made durable before the manifest is. */
static void keep_created_rest(struct coord *c)
{
	int any = 0;
	for (size_t i = 0; i < c->created.n && !any; i++)
		any = c->created.files[i].defer || c->created.files[i].present;
	int files = any ? files_dir(c) : -1;
	if (files < 0)
		return;
	for (size_t i = 0; i < c->created.n; i++) {
		struct appended_file *f = &c->created.files[i];
		if (!f->defer)
			continue;
		f->defer = 0;
		char from[160], gen[64];
		gens_name(gen, sizeof(gen), f->kept_gen, 0);
		snprintf(from, sizeof(from), "%s/files/", gen);
		kept_name(from + strlen(from), sizeof(from) - strlen(from), f->dev, f->ino);
		f->present = link_kept(files, f, c->o->imagesfd, from) ||
			     link_kept(files, f, AT_FDCWD, f->path);
	}
	for (size_t i = 0; i < c->created.n; i++)
		c->created.files[i].kept_gen = c->created.files[i].present ? c->ck.gen : 0;
	fsync(files);
	close(files);
}

void appended_prefetch(struct coord *c)
{
	read_journal(c, APPEND_JOURNAL, &c->appended,
		     "appended to: the others are not cut back at restart");
	read_journal(c, CREATE_JOURNAL, &c->created,
		     "created: the others are not kept for restart");
}

void appended_snapshot(struct coord *c)
{
	read_journal(c, APPEND_JOURNAL, &c->appended,
		     "appended to: the others are not cut back at restart");
	look_at(&c->appended);
	read_journal(c, CREATE_JOURNAL, &c->created,
		     "created: the others are not kept for restart");
	look_at(&c->created);
	keep_created(c);
}

int appended_manifest(struct coord *c, struct kvfile *kv)
{
	int rc = 0;
	keep_created_rest(c);
	for (size_t i = 0; i < c->appended.n; i++) {
		const struct appended_file *f = &c->appended.files[i];
		if (f->present)
			rc |= kv_addf(kv, "appended", "%" PRIu64 " %" PRIu64 " %" PRIu64 " %s",
				      f->size, f->dev, f->ino, f->path);
	}
	for (size_t i = 0; i < c->created.n; i++) {
		const struct appended_file *f = &c->created.files[i];
		if (f->present)
			rc |= kv_addf(kv, "kept", "%" PRIu64 " %" PRIu64 " %s", f->dev, f->ino,
				      f->path);
	}
	return rc;
}

static void journal_free(struct journal *j)
{
	for (size_t i = 0; i < j->n; i++)
		free(j->files[i].path);
	free(j->files);
	free(j->index);
	*j = (struct journal){0};
}

void appended_free(struct coord *c)
{
	journal_free(&c->appended);
	journal_free(&c->created);
}

/* One manifest entry: cut the file back if it is the one recorded and
 * grew since. */
static void cut_back(const char *entry, struct ckpt_log *log)
{
	uint64_t size, dev, ino;
	int at = 0;
	if (sscanf(entry, "%" SCNu64 " %" SCNu64 " %" SCNu64 " %n", &size, &dev, &ino, &at) != 3 ||
	    entry[at] != '/')
		return;
	const char *path = entry + at;
	struct stat st;
	if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_dev != dev ||
	    (uint64_t)st.st_ino != ino) {
		ckpt_log(log,
			 "%s: appended to before the checkpoint, now another file or gone; left "
			 "as it is",
			 path);
		return;
	}
	if ((uint64_t)st.st_size == size)
		return;
	if ((uint64_t)st.st_size < size) {
		ckpt_log(log,
			 "%s: shorter than at the checkpoint (%lld < %" PRIu64
			 " bytes); left as it is",
			 path, (long long)st.st_size, size);
		return;
	}
	int fd = open(path, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat again;
	if (fd < 0 || fstat(fd, &again) != 0 || again.st_ino != st.st_ino ||
	    again.st_dev != st.st_dev || ftruncate(fd, (off_t)size) != 0) {
		ckpt_log(log,
			 "%s: cannot cut it back to its %" PRIu64 " bytes at the checkpoint: %s",
			 path, size, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	close(fd);
	ckpt_log(log,
		 "%s: cut back from %lld to %" PRIu64 " bytes appended after the checkpoint (the "
		 "program appends them again)",
		 path, (long long)st.st_size, size);
}

/* The directories above path that are gone (a temporary directory the
 * program removed after the checkpoint with what it held), made again:
 * how many were made, -1 if one could not be. */
static int make_parents(const char *path)
{
	char dir[4096];
	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return -1;
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	struct stat st;
	if (stat(dir, &st) == 0)
		return S_ISDIR(st.st_mode) ? 0 : -1;
	int above = make_parents(dir);
	if (above < 0 || mkdir(dir, 0700) != 0)
		return -1;
	return above + 1;
}

/* One manifest entry "kept": a file the program created, gone from its
 * path since the checkpoint, is linked back there from the generation. */
static void link_back(int gfd, const char *entry, struct ckpt_log *log)
{
	uint64_t dev, ino;
	int at = 0;
	if (sscanf(entry, "%" SCNu64 " %" SCNu64 " %n", &dev, &ino, &at) != 2 || entry[at] != '/')
		return;
	const char *path = entry + at;
	struct stat st;
	if (lstat(path, &st) == 0 || errno != ENOENT)
		return; /* there: the file itself, or one the program made since */
	char name[80] = "files/";
	kept_name(name + 6, sizeof(name) - 6, dev, ino);
	if (fstatat(gfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || (uint64_t)st.st_dev != dev ||
	    (uint64_t)st.st_ino != ino)
		return;
	int dirs = 0, r = linkat(gfd, name, AT_FDCWD, path, 0), e = errno;
	if (r != 0 && e == ENOENT && (dirs = make_parents(path)) > 0) {
		r = linkat(gfd, name, AT_FDCWD, path, 0);
		e = errno;
	}
	if (r == 0)
		ckpt_log(log,
			 "%s: created by the program and deleted after the checkpoint; made again "
			 "from the generation's link to it%s",
			 path, dirs > 0 ? " (and the directories it was in, mode 0700)" : "");
	else
		ckpt_log(log, "%s: deleted after the checkpoint and cannot be made again: %s", path,
			 strerror(e));
}

void appended_cut_back(int imagesfd, uint64_t gen, struct ckpt_log *log)
{
	int gfd = gens_open(imagesfd, gen);
	if (gfd < 0)
		return;
	struct kvfile kv;
	if (kv_read(&kv, gfd, GENS_MANIFEST) == 0) {
		/* first back at their paths, then cut back with the others */
		for (size_t i = 0; i < kv.count; i++)
			if (strcmp(kv.entries[i].key, "kept") == 0)
				link_back(gfd, kv.entries[i].value, log);
		for (size_t i = 0; i < kv.count; i++)
			if (strcmp(kv.entries[i].key, "appended") == 0)
				cut_back(kv.entries[i].value, log);
		kv_free(&kv);
	}
	close(gfd);
}
