/* Recreating the program's file descriptors at their numbers. The
 * restorer's own descriptors (image, new stdio, coordinator connection,
 * files to map) are first moved above every number the program used. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/ctlpath.h"
#include "restore/restore.h"

int fd_private(struct fd_context *c, int fd)
{
	if (fd < 0 || fd >= c->min_private)
		return fd;
	int moved = fcntl(fd, F_DUPFD_CLOEXEC, c->min_private);
	close(fd);
	return moved;
}

/* Before the tree is forked: the new supervisor's stdio, kept above every
 * process's descriptors, for all of them. */
int fds_prepare_stdio(struct fd_context *c, int min_private)
{
	c->min_private = min_private;
	for (int i = 0; i < 3; i++) {
		c->stdio[i] = fcntl(i, F_DUPFD_CLOEXEC, c->min_private);
		if (c->stdio[i] < 0)
			return fail("standard descriptor %d is not open: %s", i, strerror(errno));
	}
	c->err = fcntl(2, F_DUPFD_CLOEXEC, c->min_private);
	if (c->err < 0)
		return fail("cannot move descriptors out of the program's way: %s",
			    strerror(errno));
	return 0;
}

/* A program reading a file given as its stdin (`ckpt start prog < data`)
 * reads on where it was at the checkpoint: restart was given the file
 * again, from its start. Once, before the fork: the processes of the
 * tree share their stdin's file description. */
int fds_resume_stdin(struct fd_context *c, const struct ckpt_image *img)
{
	const struct ckpt_fd *f = NULL;
	for (uint32_t i = 0; i < img->nfds && !f; i++)
		if (img->fds[i].kind == CKPT_FD_STDIO && img->fds[i].aux == 0 &&
		    img->fds[i].offset > 0)
			f = &img->fds[i];
	if (!f)
		return 0;
	const char *was = ckpt_image_string(img, f->path_str);
	struct stat st;
	if (fstat(c->stdio[0], &st) != 0 || !S_ISREG(st.st_mode)) {
		warn("stdin was the file %s, read up to byte %lld at the checkpoint, and is not a "
		     "file now: the program reads on from what it is given",
		     was, (long long)f->offset);
		return 1;
	}
	int same = st.st_ino == f->ino && st.st_dev == f->dev;
	if (st.st_size < f->offset) {
		warn("stdin is shorter (%lld bytes) than the %lld bytes of %s the program had read "
		     "at the checkpoint: it reads it from its start",
		     (long long)st.st_size, (long long)f->offset, was);
		return 1;
	}
	if (lseek(c->stdio[0], f->offset, SEEK_SET) != f->offset) {
		warn("stdin: cannot seek to byte %lld, where the program was: %s",
		     (long long)f->offset, strerror(errno));
		return 1;
	}
	if (!same)
		warn("stdin is not the file it was at the checkpoint (%s): the program reads it on "
		     "from byte %lld, where it was",
		     was, (long long)f->offset);
	return 1;
}

/* In the process being restored: its own connection to the coordinator,
 * and nothing below min_private but what the program will have. */
int fds_prepare(struct fd_context *c, const struct ckpt_image *img, int min_private)
{
	c->min_private = min_private;
	c->image = img->fd;
	c->ctl = -1;
	if (img->process.agent_fd >= 0) {
		const char *ctl = getenv("CKPT_CTL");
		c->ctl = ctl ? fd_private(c, ctl_connect_path(ctl)) : -1;
		if (c->ctl < 0)
			return fail("cannot connect to the coordinator (CKPT_CTL=%s)",
				    getenv("CKPT_CTL") ? getenv("CKPT_CTL") : "unset");
	}
	/* everything below min_private is now the program's to fill */
	for (int fd = 0; fd < c->min_private; fd++)
		close(fd);
	return 0;
}

/* The file at path is still the one the program had open. */
static int same_file(int fd, const struct ckpt_fd *f, const char *path, struct stat *st)
{
	if (fstat(fd, st) != 0)
		return fail("fd %d: cannot stat %s: %s", f->fd, path, strerror(errno));
	if (st->st_ino != f->ino || st->st_dev != f->dev)
		return fail("fd %d: %s was replaced since the checkpoint (different inode); "
			    "restore the original file or remove the run directory's checkpoint",
			    f->fd, path);
	return 0;
}

/* The size and identity a file must still have; an append-mode or
 * writable file that grew after the checkpoint is cut back, since the
 * program will write those bytes again. */
static int check_file(int fd, const struct ckpt_fd *f, const char *path)
{
	struct stat st;
	if (same_file(fd, f, path, &st) != 0)
		return -1;
	if ((uint64_t)st.st_size < f->size)
		return fail("fd %d: %s is shorter than at the checkpoint (%lld < %llu bytes)",
			    f->fd, path, (long long)st.st_size, (unsigned long long)f->size);
	if ((uint64_t)st.st_size > f->size) {
		if ((f->open_flags & O_ACCMODE) == O_RDONLY) {
			if (!getenv("CKPT_ALLOW_CHANGED_FILES"))
				return fail(
				    "fd %d: %s grew since the checkpoint (%lld > %llu bytes); "
				    "set CKPT_ALLOW_CHANGED_FILES=1 to restart anyway",
				    f->fd, path, (long long)st.st_size,
				    (unsigned long long)f->size);
		} else {
			if (ftruncate(fd, (off_t)f->size) != 0)
				return fail("fd %d: cannot cut %s back to its checkpoint size: %s",
					    f->fd, path, strerror(errno));
			warn("%s: cut back from %lld to %llu bytes written after the checkpoint "
			     "(the program writes them again)",
			     path, (long long)st.st_size, (unsigned long long)f->size);
		}
	}
	return 0;
}

int kept_open(uint64_t dev, uint64_t ino, int flags, char *name, size_t cap)
{
	snprintf(name, cap, "%s/files/0x%llx-0x%llx", tree.dir, (unsigned long long)dev,
		 (unsigned long long)ino);
	int fd = open(name, flags | O_NOCTTY);
	struct stat st;
	if (fd >= 0 && (fstat(fd, &st) != 0 || st.st_dev != dev || st.st_ino != ino)) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* The file a descriptor had open, deleted (taken: 0) or replaced at its
 * path since the checkpoint, from the link the checkpoint kept: a deleted
 * one is linked back at its path, where the program may look for it
 * again (a temporary file it deletes later); a replaced one is left to
 * the file now there. -1 if none was kept. */
static int open_kept(const struct ckpt_fd *f, const char *path, int flags, int taken)
{
	char kept[4400];
	int fd = kept_open(f->dev, f->ino, flags, kept, sizeof kept);
	if (fd < 0)
		return -1;
	if (taken)
		warn("fd %d: %s is another file than at the checkpoint: the program gets the one "
		     "it had open, kept with the checkpoint (the path is left as it is)",
		     f->fd, path);
	else if (linkat(AT_FDCWD, kept, AT_FDCWD, path, 0) == 0)
		warn("fd %d: %s was deleted after the checkpoint: made again from the file kept "
		     "with the checkpoint",
		     f->fd, path);
	else
		warn("fd %d: %s was deleted after the checkpoint; the program gets the file kept "
		     "with the checkpoint (it cannot be linked back at its path: %s)",
		     f->fd, path, strerror(errno));
	return fd;
}

static int open_path(const struct ckpt_fd *f, const char *path)
{
	int flags = (int)f->open_flags & ~(O_CREAT | O_TRUNC | O_EXCL | O_NOCTTY);
	int fd = open(path, flags | O_NOCTTY);
	struct stat st;
	if (f->kind == CKPT_FD_FILE &&
	    (fd < 0 ? errno == ENOENT
		    : fstat(fd, &st) == 0 && (st.st_ino != f->ino || st.st_dev != f->dev))) {
		int kept = open_kept(f, path, flags, fd >= 0);
		if (kept >= 0) {
			if (fd >= 0)
				close(fd);
			fd = kept;
		} else {
			errno = ENOENT;
		}
	}
	if (fd < 0)
		return fail("fd %d: cannot reopen %s: %s", f->fd, path, strerror(errno));
	if (f->kind == CKPT_FD_FILE && check_file(fd, f, path) != 0) {
		close(fd);
		return -1;
	}
	if ((f->kind == CKPT_FD_FILE || f->kind == CKPT_FD_DIR) &&
	    lseek(fd, f->offset, SEEK_SET) != f->offset) {
		close(fd);
		return fail("fd %d: cannot seek %s to %lld: %s", f->fd, path, (long long)f->offset,
			    strerror(errno));
	}
	return fd;
}

static int write_bytes(int fd, const uint8_t *p, uint64_t left)
{
	while (left) {
		ssize_t n = write(fd, p, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		p += n;
		left -= (uint64_t)n;
	}
	return 0;
}

/* The content saved with a descriptor's record (FD_DATA), written at the
 * descriptor's offset (the file's start, just opened). */
static int write_content(int fd, const struct ckpt_image *img, const struct ckpt_fd *f)
{
	return write_bytes(fd, img->fd_data + f->data_off, f->data_len);
}

int shared_files_restore(const struct ckpt_image *img)
{
	for (uint32_t i = 0; i < img->nshared_files; i++) {
		const struct ckpt_shared_file *f = &img->shared_files[i];
		const char *path = ckpt_image_string(img, f->path_str);
		int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) != 0 || st.st_dev != f->dev || st.st_ino != f->ino) {
			if (fd >= 0)
				close(fd);
			continue; /* the mapping's own check names it */
		}
		if (write_bytes(fd, img->fd_data + f->data_off, f->data_len) != 0 ||
		    ftruncate(fd, (off_t)f->data_len) != 0) {
			int e = errno;
			close(fd);
			return fail("cannot write %s, mapped shared, back to its content at the "
				    "checkpoint: %s",
				    path, strerror(e));
		}
		close(fd);
	}
	return 0;
}

/* A file the program wrote in place, saved with the image: its content
 * goes back to what it was at the checkpoint (made again if it is gone),
 * whatever the program or anyone wrote into it since. */
static int open_written(const struct ckpt_image *img, const struct ckpt_fd *f, const char *path)
{
	int flags = (int)f->open_flags & ~(O_CREAT | O_TRUNC | O_EXCL | O_NOCTTY);
	int fd = open(path, flags | O_NOCTTY);
	struct stat st;
	if (fd >= 0 && same_file(fd, f, path, &st) != 0) {
		close(fd);
		return -1;
	}
	if (fd < 0 && errno == ENOENT) /* gone: its content is all there is */
		fd = open(path, flags | O_NOCTTY | O_CREAT | O_EXCL, 0666);
	if (fd < 0)
		return fail("fd %d: cannot reopen %s: %s", f->fd, path, strerror(errno));
	if (write_content(fd, img, f) != 0) {
		int e = errno;
		close(fd);
		return fail("fd %d: cannot write %s back to its checkpoint content: %s", f->fd,
			    path, strerror(e));
	}
	if (ftruncate(fd, (off_t)f->data_len) != 0 || lseek(fd, f->offset, SEEK_SET) != f->offset) {
		int e = errno;
		close(fd);
		return fail("fd %d: cannot put %s back as it was at the checkpoint: %s", f->fd,
			    path, strerror(e));
	}
	return fd;
}

/* path opened with the program's flags, at the descriptor's offset. */
static int open_reopened(const struct ckpt_fd *f, const char *path, int flags)
{
	int fd = open(path, flags | O_NOCTTY);
	if (fd < 0 || lseek(fd, f->offset, SEEK_SET) != f->offset) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return fail("fd %d: cannot reopen %s: %s", f->fd, path, strerror(e));
	}
	return fd;
}

/* Small output files made again at their path (aux 2): the inode each
 * had at the checkpoint and the one made now, so that another description
 * of the same file opens the new one instead of making it a second time. */
struct remade {
	uint64_t dev, ino, new_dev, new_ino;
};
static struct remade remade[64];
static unsigned nremade;

/* The saved content written over the file open as wfd (not O_APPEND),
 * the file cut to its length. */
static int put_content(int wfd, const struct ckpt_image *img, const struct ckpt_fd *f)
{
	return lseek(wfd, 0, SEEK_SET) != 0 || write_content(wfd, img, f) != 0 ||
		       ftruncate(wfd, (off_t)f->data_len) != 0
		   ? -1
		   : 0;
}

/* A small file the program wrote at its end, its content saved with the
 * image (aux 2). Still a file with its inode at its path: its content is
 * written back (an inode number can be reused by a file made after the
 * checkpoint, so the number alone does not prove it is the same file);
 * one that grew is cut back, as any other. Gone, or another file at its
 * path (the program renamed it away after the checkpoint: a temporary
 * file renamed over its final name, a rotated log): made again beside it
 * from the saved content and renamed into place, so that the program
 * finds it as it was at the checkpoint. */
static int open_output(const struct ckpt_image *img, const struct ckpt_fd *f, const char *path)
{
	int flags = (int)f->open_flags & ~(O_CREAT | O_TRUNC | O_EXCL | O_NOCTTY);
	struct stat st;
	int found = stat(path, &st) == 0;
	if (!found && errno != ENOENT)
		return fail("fd %d: cannot stat %s: %s", f->fd, path, strerror(errno));
	int same = found && st.st_ino == f->ino && st.st_dev == f->dev;
	for (unsigned k = 0; k < nremade && found && !same; k++)
		if (remade[k].dev == f->dev && remade[k].ino == f->ino &&
		    remade[k].new_dev == st.st_dev && remade[k].new_ino == st.st_ino)
			return open_reopened(f, path, flags);
	if (found && !S_ISREG(st.st_mode))
		return fail("fd %d: %s was replaced since the checkpoint by something that is not "
			    "a regular file; remove it and restart",
			    f->fd, path);
	if (same) {
		int wfd = open(path, O_WRONLY | O_NOCTTY | O_CLOEXEC);
		if (wfd < 0 || put_content(wfd, img, f) != 0) {
			int e = errno;
			if (wfd >= 0)
				close(wfd);
			return fail("fd %d: cannot put %s back as it was at the checkpoint: %s",
				    f->fd, path, strerror(e));
		}
		close(wfd);
		if ((uint64_t)st.st_size > f->data_len)
			warn("%s: cut back from %lld to %llu bytes written after the checkpoint "
			     "(the program writes them again)",
			     path, (long long)st.st_size, (unsigned long long)f->data_len);
		else if ((uint64_t)st.st_size < f->data_len)
			warn("%s: shorter than at the checkpoint (%lld < %llu bytes); its content "
			     "at "
			     "the checkpoint is put back",
			     path, (long long)st.st_size, (unsigned long long)f->data_len);
		return open_reopened(f, path, flags);
	}
	char tmp[4200];
	if (snprintf(tmp, sizeof tmp, "%s.ckpt-restart.%d", path, (int)getpid()) >= (int)sizeof tmp)
		return fail("fd %d: path too long: %s", f->fd, path);
	int wfd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOCTTY | O_CLOEXEC, 0666);
	if (wfd < 0)
		return fail("fd %d: %s is %s since the checkpoint and cannot be made again: %s",
			    f->fd, path, found ? "replaced" : "gone", strerror(errno));
	if (put_content(wfd, img, f) != 0 || rename(tmp, path) != 0) {
		int e = errno;
		close(wfd);
		unlink(tmp);
		return fail("fd %d: cannot make %s again with its content at the checkpoint: %s",
			    f->fd, path, strerror(e));
	}
	close(wfd);
	int fd = open_reopened(f, path, flags);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) == 0 && nremade < sizeof remade / sizeof *remade)
		remade[nremade++] = (struct remade){f->dev, f->ino, st.st_dev, st.st_ino};
	warn("%s: %s since the checkpoint; made again with its %llu bytes at the checkpoint "
	     "(the program writes the rest again)",
	     path, found ? "replaced by another file" : "gone", (unsigned long long)f->data_len);
	return fd;
}

/* Pipes and socketpairs whose both ends the program held: created once
 * each, with their queued bytes put back (bytes queued at one end are
 * written through the other), and kept above the program's descriptors
 * until every end has been duplicated into place. */
struct pipe_rec {
	uint64_t id;
	int ends[2]; /* pipe: read, write; socketpair: end 0, end 1 */
	int filled[2];
};

static int end_of(const struct ckpt_fd *f)
{
	return f->kind == CKPT_FD_PIPE || f->kind == CKPT_FD_FIFO ? (f->aux ? 1 : 0)
								  : (int)(f->aux & 1);
}

/* Both ends of a named pipe, opened by its path again (never blocking:
 * the read end is open when the write end is opened). */
static int fifo_open(const struct ckpt_image *img, const struct ckpt_fd *f, int p[2])
{
	const char *path = ckpt_image_string(img, f->path_str);
	struct stat st;
	if (stat(path, &st) != 0 || !S_ISFIFO(st.st_mode))
		return fail("fd %d: the named pipe %s is gone (create it again with mkfifo)", f->fd,
			    path);
	p[0] = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	p[1] = p[0] >= 0 ? open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC) : -1;
	if (p[1] < 0) {
		int e = errno;
		if (p[0] >= 0)
			close(p[0]);
		return fail("fd %d: cannot open the named pipe %s again: %s", f->fd, path,
			    strerror(e));
	}
	/* the program's own flags are set when the ends are put in place */
	fcntl(p[0], F_SETFL, 0);
	fcntl(p[1], F_SETFL, 0);
	return 0;
}

/* Datagrams are saved each behind a 4-byte length; a stream the same way. */
static int put_back_messages(int fd, const uint8_t *p, uint64_t len)
{
	while (len >= 4) {
		uint32_t n;
		memcpy(&n, p, 4);
		if (n > len - 4 || send(fd, p + 4, n, MSG_NOSIGNAL) != (ssize_t)n)
			return -1;
		p += 4 + n;
		len -= 4 + (uint64_t)n;
	}
	return len ? -1 : 0;
}
/* Shared by the whole tree: every pipe and socket pair of the generation
 * (matched by pipe_id, created once, queued bytes put back once per end),
 * and every open file description several descriptors hold (created from
 * its first holder's record). Made by the first restorer before the fork;
 * each process duplicates what it holds, then closes them all. */
static struct pipe_rec *pipes;
static uint32_t npipes, cap_pipes;

struct owner_rec {
	int32_t pid, fd;
	int obj;
};
static struct owner_rec *owners;
static uint32_t nowners, cap_owners;

static struct pipe_rec *pipe_of(uint64_t id)
{
	for (uint32_t k = 0; k < npipes; k++)
		if (pipes[k].id == id)
			return &pipes[k];
	return NULL;
}

static const struct ckpt_image *img_of_fifo;

static int pipe_add(struct fd_context *c, const struct ckpt_fd *f)
{
	if (pipe_of(f->pipe_id))
		return 0;
	if (npipes == cap_pipes) {
		cap_pipes = cap_pipes ? 2 * cap_pipes : 64;
		pipes = realloc(pipes, cap_pipes * sizeof *pipes);
		if (!pipes)
			return fail("out of memory");
	}
	int p[2];
	if (f->kind == CKPT_FD_FIFO && fifo_open(img_of_fifo, f, p) != 0)
		return -1;
	int r = f->kind == CKPT_FD_FIFO	  ? 0
		: f->kind == CKPT_FD_PIPE ? pipe(p)
					  : socketpair(AF_UNIX, (int)(f->aux >> 1), 0, p);
	if (r != 0)
		return fail("fd %d: cannot create a %s: %s", f->fd,
			    f->kind == CKPT_FD_PIPE ? "pipe" : "socketpair", strerror(errno));
	struct pipe_rec *rec = &pipes[npipes++];
	rec->id = f->pipe_id;
	rec->ends[0] = fd_private(c, p[0]);
	rec->ends[1] = fd_private(c, p[1]);
	rec->filled[0] = rec->filled[1] = 0;
	return rec->ends[0] < 0 || rec->ends[1] < 0 ? fail("out of descriptors") : 0;
}

/* Bytes queued towards one end are written through the other end, once
 * (every holder of that end saved the same bytes). */
static int pipe_fill(const struct ckpt_image *img, const struct ckpt_fd *f)
{
	struct pipe_rec *rec = pipe_of(f->pipe_id);
	int end = end_of(f);
	if (!f->data_len || rec->filled[end])
		return 0;
	rec->filled[end] = 1;
	int through = rec->ends[1 - end];
	if (f->kind != CKPT_FD_SOCKPAIR
		? write(through, img->fd_data + f->data_off, f->data_len) != (ssize_t)f->data_len
		: put_back_messages(through, img->fd_data + f->data_off, f->data_len) != 0)
		return fail("fd %d: cannot put %llu queued bytes back into its %s", f->fd,
			    (unsigned long long)f->data_len,
			    f->kind == CKPT_FD_PIPE ? "pipe" : "socket");
	return 0;
}

static int open_pipe(const struct ckpt_fd *f)
{
	struct pipe_rec *rec = pipe_of(f->pipe_id);
	return rec ? dup(rec->ends[end_of(f)]) : fail("fd %d: pipe not prepared", f->fd);
}

static struct owner_rec *owner_of(int32_t pid, int32_t fd)
{
	for (uint32_t k = 0; k < nowners; k++)
		if (owners[k].pid == pid && owners[k].fd == fd)
			return &owners[k];
	return NULL;
}

static int open_one(struct fd_context *c, const struct ckpt_image *img, const struct ckpt_fd *f);

/* The description first held by (pid, fd), opened once for all holders. */
static int owner_add(struct fd_context *c, int32_t pid, int32_t fd)
{
	if (owner_of(pid, fd))
		return 0;
	const struct ckpt_image *img = NULL;
	for (int i = 0; i < tree.n && !img; i++)
		if (tree.procs[i].pid == pid)
			img = tree.procs[i].img;
	const struct ckpt_fd *f = NULL;
	for (uint32_t k = 0; img && k < img->nfds && !f; k++)
		if (img->fds[k].fd == fd)
			f = &img->fds[k];
	if (!f)
		return fail("pid %d fd %d is shared, but no image of the generation holds it",
			    (int)pid, (int)fd);
	if (nowners == cap_owners) {
		cap_owners = cap_owners ? 2 * cap_owners : 64;
		owners = realloc(owners, cap_owners * sizeof *owners);
		if (!owners)
			return fail("out of memory");
	}
	int obj = open_one(c, img, f);
	if (obj < 0)
		return restore_error[0] ? -1
					: fail("fd %d: cannot recreate: %s", fd, strerror(errno));
	obj = fd_private(c, obj);
	owners[nowners++] = (struct owner_rec){pid, fd, obj};
	return 0;
}

/* ---- TCP connections inside the computation ----
 * Both ends were saved (the other end's local address is this one's
 * peer): they are connected again through a listener on the loopback
 * address, and the bytes each end had waiting to be read are sent from the
 * other. The new connection has other port numbers. */
static void *owner_slot(void)
{
	if (nowners == cap_owners) {
		cap_owners = cap_owners ? 2 * cap_owners : 64;
		owners = realloc(owners, cap_owners * sizeof *owners);
		if (!owners)
			return NULL;
	}
	return &owners[nowners];
}

/* flags: MSG_DONTWAIT where nobody reads the other end yet (EAGAIN when
 * the bytes do not fit its buffers) */
static int send_all(int fd, const uint8_t *p, uint64_t len, int flags)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL | flags);
		if (n <= 0)
			return -1;
		p += n;
		len -= (uint64_t)n;
	}
	return 0;
}

static int connected_pair(int domain, int ends[2])
{
	struct sockaddr_storage sa;
	memset(&sa, 0, sizeof sa);
	socklen_t len;
	if (domain == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa;
		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_loopback;
		len = sizeof *s6;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;
		s4->sin_family = AF_INET;
		s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof *s4;
	}
	int l = socket(domain, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ends[0] = socket(domain, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ends[1] = -1;
	if (l < 0 || ends[0] < 0 || bind(l, (struct sockaddr *)&sa, len) != 0 ||
	    listen(l, 1) != 0 || getsockname(l, (struct sockaddr *)&sa, &len) != 0 ||
	    connect(ends[0], (struct sockaddr *)&sa, len) != 0 ||
	    (ends[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0) {
		int e = errno;
		if (l >= 0)
			close(l);
		if (ends[0] >= 0)
			close(ends[0]);
		errno = e;
		return -1;
	}
	close(l);
	return 0;
}

static int socket_record(const struct ckpt_image *img, const struct ckpt_fd *f,
			 struct ckpt_socket *so);

/* A holder of a description whose first holder is another descriptor:
 * it duplicates that one and is not paired itself. */
static int second_holder(const struct ckpt_image *img, int32_t fd)
{
	for (uint32_t k = 0; k < img->nshares; k++)
		if (img->shares[k].fd == fd)
			return 1;
	return 0;
}

static int tcp_pairs(struct fd_context *c)
{
	for (int i = 0; i < tree.n; i++) {
		const struct ckpt_image *img = tree.procs[i].img;
		for (uint32_t k = 0; k < img->nfds; k++) {
			const struct ckpt_fd *f = &img->fds[k];
			struct ckpt_socket a, b;
			if (f->kind != CKPT_FD_SOCKET || owner_of(img->hdr.pid, f->fd) ||
			    second_holder(img, f->fd) || socket_record(img, f, &a) != 0 ||
			    !a.peerlen || a.type != SOCK_STREAM ||
			    (a.domain != AF_INET && a.domain != AF_INET6))
				continue;
			for (int j = 0; j < tree.n; j++) {
				const struct ckpt_image *im2 = tree.procs[j].img;
				for (uint32_t m = 0; m < im2->nfds; m++) {
					const struct ckpt_fd *g = &im2->fds[m];
					if (g == f || g->kind != CKPT_FD_SOCKET ||
					    owner_of(im2->hdr.pid, g->fd) ||
					    second_holder(im2, g->fd) ||
					    socket_record(im2, g, &b) != 0 ||
					    b.peerlen != a.addrlen || b.addrlen != a.peerlen ||
					    memcmp(b.peer, a.addr, a.addrlen) != 0 ||
					    memcmp(b.addr, a.peer, a.peerlen) != 0)
						continue;
					int ends[2];
					if (connected_pair(a.domain, ends) != 0)
						return fail("fd %d: cannot connect a loopback TCP "
							    "connection again: %s",
							    f->fd, strerror(errno));
					ends[0] = fd_private(c, ends[0]);
					ends[1] = fd_private(c, ends[1]);
					/* bytes waiting at one end are sent from the other */
					uint64_t qa = f->data_len - sizeof a,
						 qb = g->data_len - sizeof b;
					if (send_all(ends[1], img->fd_data + f->data_off + sizeof a,
						     qa, 0) != 0 ||
					    send_all(ends[0], im2->fd_data + g->data_off + sizeof b,
						     qb, 0) != 0)
						return fail("fd %d: cannot put the bytes of a TCP "
							    "connection back",
							    f->fd);
					if (!owner_slot())
						return fail("out of memory");
					owners[nowners++] =
					    (struct owner_rec){img->hdr.pid, f->fd, ends[0]};
					if (!owner_slot())
						return fail("out of memory");
					owners[nowners++] =
					    (struct owner_rec){im2->hdr.pid, g->fd, ends[1]};
					goto next;
				}
			}
		next:;
		}
	}
	return 0;
}

/* ---- Connections still waiting to be accepted ----
 * A client's connection that a listener of the computation had queued but
 * not accepted (no process held its other end) is queued there again: the
 * listener is created before the processes are forked, and a new socket
 * connects to it, so the server's next accept finds it. Unix addresses
 * must be absolute or abstract (a relative one means something else in the
 * restorer's directory); a TCP listener on the any-address is reached
 * through the loopback address. */
static int listener_target(const struct ckpt_socket *l, const struct ckpt_socket *a,
			   struct sockaddr_storage *to, socklen_t *tolen)
{
	if (!l->listening || l->domain != a->domain || l->type != a->type ||
	    l->addrlen > sizeof *to || l->addrlen <= sizeof(sa_family_t))
		return 0;
	memset(to, 0, sizeof *to);
	memcpy(to, l->addr, l->addrlen);
	*tolen = l->addrlen;
	if (a->domain == AF_UNIX) {
		const struct sockaddr_un *un = (const void *)to;
		return l->addrlen == a->peerlen && memcmp(l->addr, a->peer, a->peerlen) == 0 &&
		       (un->sun_path[0] == '/' || un->sun_path[0] == '\0');
	}
	if (a->domain == AF_INET && l->addrlen == sizeof(struct sockaddr_in) &&
	    a->peerlen == sizeof(struct sockaddr_in)) {
		struct sockaddr_in *la = (void *)to, pa;
		memcpy(&pa, a->peer, sizeof pa);
		if (la->sin_port != pa.sin_port || (la->sin_addr.s_addr != pa.sin_addr.s_addr &&
						    la->sin_addr.s_addr != INADDR_ANY))
			return 0;
		if (la->sin_addr.s_addr == INADDR_ANY)
			la->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		return 1;
	}
	if (a->domain == AF_INET6 && l->addrlen == sizeof(struct sockaddr_in6) &&
	    a->peerlen == sizeof(struct sockaddr_in6)) {
		struct sockaddr_in6 *la = (void *)to, pa;
		memcpy(&pa, a->peer, sizeof pa);
		int any = IN6_IS_ADDR_UNSPECIFIED(&la->sin6_addr);
		if (la->sin6_port != pa.sin6_port ||
		    (!any && memcmp(&la->sin6_addr, &pa.sin6_addr, sizeof pa.sin6_addr) != 0))
			return 0;
		if (any)
			la->sin6_addr = in6addr_loopback;
		return 1;
	}
	return 0;
}

struct pending_rec {
	const struct ckpt_image *img;
	const struct ckpt_fd *f;
};

/* Queued in the order the clients' sockets were made (inode order), which
 * is the order they connected in as far as the image can tell. */
static int pending_order(const void *x, const void *y)
{
	const struct pending_rec *a = x, *b = y;
	return a->f->ino < b->f->ino ? -1 : a->f->ino > b->f->ino;
}

/* The listener of the computation a waiting connection was queued on, and
 * the address to connect to; 0 if there is none. */
static int listener_of(const struct ckpt_socket *a, struct sockaddr_storage *to, socklen_t *tolen,
		       const struct ckpt_image **limg, int32_t *lfd)
{
	for (int j = 0; j < tree.n; j++) {
		const struct ckpt_image *img = tree.procs[j].img;
		for (uint32_t m = 0; m < img->nfds; m++) {
			const struct ckpt_fd *g = &img->fds[m];
			struct ckpt_socket b;
			if (g->kind != CKPT_FD_SOCKET || second_holder(img, g->fd) ||
			    socket_record(img, g, &b) != 0 || !listener_target(&b, a, to, tolen))
				continue;
			*limg = img;
			*lfd = g->fd;
			return 1;
		}
	}
	return 0;
}

/* Its holder's descriptor of that listener, created now if it is not yet. */
static int find_listener(struct fd_context *c, const struct ckpt_socket *a,
			 struct sockaddr_storage *to, socklen_t *tolen, struct owner_rec **found)
{
	const struct ckpt_image *img;
	int32_t fd;
	*found = NULL;
	if (!listener_of(a, to, tolen, &img, &fd))
		return 0;
	if (owner_add(c, img->hdr.pid, fd) != 0)
		return -1;
	*found = owner_of(img->hdr.pid, fd);
	return 0;
}

static int pending_connect(struct fd_context *c, const struct ckpt_image *img,
			   const struct ckpt_fd *f)
{
	struct ckpt_socket a;
	struct sockaddr_storage to;
	socklen_t tolen = 0;
	struct owner_rec *listener;
	if (socket_record(img, f, &a) != 0 || find_listener(c, &a, &to, &tolen, &listener) != 0)
		return -1;
	int listening = 0;
	socklen_t len = sizeof listening;
	if (!listener) {
		warn("fd %d: its connection was to outside the computation; it comes back "
		     "unconnected, and the program gets an error",
		     f->fd);
		return 0;
	}
	if (getsockopt(listener->obj, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 ||
	    !listening) {
		warn("fd %d: its connection was waiting on a listener that cannot listen again; it "
		     "comes back unconnected, and the program gets an error",
		     f->fd);
		return 0;
	}
	int s = socket(a.domain, a.type | SOCK_CLOEXEC, a.protocol);
	if (s < 0 || connect(s, (struct sockaddr *)&to, tolen) != 0) {
		warn("fd %d: cannot queue its connection on the listener again: %s; it comes "
		     "back unconnected",
		     f->fd, strerror(errno));
		if (s >= 0)
			close(s);
		return 0;
	}
	if (!owner_slot())
		return fail("out of memory");
	owners[nowners++] = (struct owner_rec){img->hdr.pid, f->fd, fd_private(c, s)};
	return 0;
}

static int pending_connections(struct fd_context *c)
{
	struct pending_rec *recs = NULL;
	size_t n = 0, cap = 0;
	for (int i = 0; i < tree.n; i++) {
		const struct ckpt_image *img = tree.procs[i].img;
		for (uint32_t k = 0; k < img->nfds; k++) {
			const struct ckpt_fd *f = &img->fds[k];
			struct ckpt_socket a;
			if (f->kind != CKPT_FD_SOCKET || owner_of(img->hdr.pid, f->fd) ||
			    second_holder(img, f->fd) || socket_record(img, f, &a) != 0 ||
			    !(a.flags & CKPT_SOCKET_RECONNECTABLE) || !a.peerlen || a.listening)
				continue;
			if (n == cap) {
				cap = cap ? 2 * cap : 16;
				struct pending_rec *more = realloc(recs, cap * sizeof *recs);
				if (!more) {
					free(recs);
					return fail("out of memory");
				}
				recs = more;
			}
			recs[n++] = (struct pending_rec){img, f};
		}
	}
	if (n)
		qsort(recs, n, sizeof *recs, pending_order);
	int r = 0;
	for (size_t i = 0; i < n && r == 0; i++)
		r = pending_connect(c, recs[i].img, recs[i].f);
	free(recs);
	return r;
}

int shared_prepare(struct fd_context *c)
{
	if (tcp_pairs(c) != 0 || pending_connections(c) != 0)
		return -1;
	for (int i = 0; i < tree.n; i++) {
		const struct ckpt_image *img = tree.procs[i].img;
		for (uint32_t k = 0; k < img->nfds; k++) {
			const struct ckpt_fd *f = &img->fds[k];
			if (f->kind != CKPT_FD_PIPE && f->kind != CKPT_FD_SOCKPAIR &&
			    f->kind != CKPT_FD_FIFO)
				continue;
			img_of_fifo = img;
			if (pipe_add(c, f) != 0 || pipe_fill(img, f) != 0)
				return -1;
		}
		for (uint32_t k = 0; k < img->nshares; k++)
			if (owner_add(c, img->shares[k].owner_pid, img->shares[k].owner_fd) != 0)
				return -1;
	}
	return 0;
}

/* The shared object this descriptor duplicates, or -1 if it has its own. */
static int shared_obj(const struct ckpt_image *img, const struct ckpt_fd *f)
{
	for (uint32_t k = 0; k < img->nshares; k++)
		if (img->shares[k].fd == f->fd) {
			struct owner_rec *o =
			    owner_of(img->shares[k].owner_pid, img->shares[k].owner_fd);
			return o ? o->obj : -1;
		}
	struct owner_rec *o = owner_of(img->hdr.pid, f->fd);
	return o ? o->obj : -1;
}

static void shared_close(void)
{
	for (uint32_t k = 0; k < npipes; k++) {
		close(pipes[k].ends[0]);
		close(pipes[k].ends[1]);
	}
	for (uint32_t k = 0; k < nowners; k++)
		close(owners[k].obj);
	npipes = nowners = 0;
}

/* Flags to open a descriptor's file again through /proc/self/fd: a
 * link, which O_NOFOLLOW (Python's tempfile.mkstemp) would refuse. */
static int reopen_flags(const struct ckpt_fd *f)
{
	return (int)f->open_flags & ~(O_CREAT | O_TRUNC | O_EXCL | O_NOCTTY | O_NOFOLLOW);
}

/* A deleted file that a process of the generation maps shared (shared
 * memory: a /dev/shm object after shm_unlink, a memfd) is opened on the
 * object made for the mappings, so that what is written through the
 * descriptor, or through a mapping of it made after the restart, is what
 * the mappings see. Its saved content, if any, is written into it too (the
 * same bytes the mappings hold, and any page they did not have). */
static int open_mapped_deleted(const struct ckpt_image *img, const struct ckpt_fd *f,
			       const char *path, int obj)
{
	char self[64];
	snprintf(self, sizeof self, "/proc/self/fd/%d", obj);
	if (f->aux == 0 && f->data_len) {
		int w = open(self, O_RDWR | O_CLOEXEC);
		int bad = w < 0 || write_content(w, img, f) != 0;
		int e = errno;
		if (w >= 0)
			close(w);
		if (bad)
			return errno = e, fail("fd %d: cannot write the content of %s: %s", f->fd,
					       path, strerror(e));
	}
	struct stat st;
	if (fstat(obj, &st) == 0 && (uint64_t)st.st_size < f->size &&
	    ftruncate(obj, (off_t)f->size) != 0)
		return fail("fd %d: cannot size %s to %llu bytes: %s", f->fd, path,
			    (unsigned long long)f->size, strerror(errno));
	int fd = open(self, reopen_flags(f));
	if (fd < 0)
		return fail("fd %d: cannot open %s again: %s", f->fd, path, strerror(errno));
	if (lseek(fd, f->offset, SEEK_SET) != f->offset) {
		close(fd);
		return fail("fd %d: cannot seek %s", f->fd, path);
	}
	return fd;
}

/* A deleted file comes back as an unlinked file with the saved content,
 * in the directory it was in (else /tmp); a second descriptor of the same
 * file opens the first one again. */
static int open_deleted(const struct ckpt_image *img, const struct ckpt_fd *f, const char *path)
{
	for (uint32_t i = 0; i < img->nfds && img->fds[i].fd < f->fd; i++) {
		const struct ckpt_fd *o = &img->fds[i];
		if (o->kind == CKPT_FD_DELETED && o->ino == f->ino && o->dev == f->dev) {
			char self[64];
			snprintf(self, sizeof self, "/proc/self/fd/%d", o->fd);
			int fd = open(self, reopen_flags(f));
			if (fd >= 0 && lseek(fd, f->offset, SEEK_SET) < 0) {
				close(fd);
				fd = -1;
			}
			return fd >= 0 ? fd
				       : fail("fd %d: cannot reopen deleted file %s: %s", f->fd,
					      path, strerror(errno));
		}
	}
	int obj = shm_fd_of_file(f->dev, f->ino);
	if (obj >= 0)
		return open_mapped_deleted(img, f, path, obj);
	if (f->aux == 1)
		return fail("fd %d: %s: its content was to come with the shared memory it was "
			    "mapped as, which the image does not have",
			    f->fd, path);
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", path);
	char *cut = strstr(dir, " (deleted)");
	if (cut)
		*cut = 0;
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir)
		*slash = 0;
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return fail("fd %d: cannot recreate deleted file %s: %s", f->fd, path,
			    strerror(errno));
	if (write_content(fd, img, f) != 0) {
		int e = errno;
		close(fd);
		return fail("fd %d: cannot write the content of deleted file %s: %s", f->fd, path,
			    strerror(e));
	}
	fcntl(fd, F_SETFL, (int)f->open_flags & (O_APPEND | O_NONBLOCK));
	if (lseek(fd, f->offset, SEEK_SET) != f->offset) {
		close(fd);
		return fail("fd %d: cannot seek deleted file %s", f->fd, path);
	}
	return fd;
}

/* Each epoll instance watches its descriptors again, with the events and
 * data the program gave them. */
static int epolls_fill(const struct ckpt_image *img)
{
	for (uint32_t i = 0; i < img->nfds; i++) {
		const struct ckpt_fd *f = &img->fds[i];
		if (f->kind != CKPT_FD_EPOLL)
			continue;
		if (f->data_len % sizeof(struct ckpt_epoll_entry))
			return fail("fd %d: damaged epoll record", f->fd);
		for (uint64_t off = 0; off < f->data_len; off += sizeof(struct ckpt_epoll_entry)) {
			struct ckpt_epoll_entry e;
			memcpy(&e, img->fd_data + f->data_off + off, sizeof e);
			struct epoll_event ev = {.events = e.events, .data.u64 = e.data};
			/* an epoll set shared with another process is filled by
			 * each holder: the second finds the entries there */
			if (epoll_ctl(f->fd, EPOLL_CTL_ADD, e.tfd, &ev) != 0 && errno != EEXIST)
				warn("fd %d: epoll cannot watch fd %d again: %s", f->fd, e.tfd,
				     strerror(errno));
		}
	}
	return 0;
}

/* A listener listens again on its address; anything else comes back
 * unconnected. A Unix listener's stale socket file is replaced. */
/* The socket record of a descriptor (version 2 records have no peer). */
static int socket_record(const struct ckpt_image *img, const struct ckpt_fd *f,
			 struct ckpt_socket *so)
{
	memset(so, 0, sizeof *so);
	if (f->data_len == CKPT_SOCKET_V2_SIZE) {
		memcpy(so, img->fd_data + f->data_off, CKPT_SOCKET_V2_SIZE);
		return 0;
	}
	if (f->data_len < sizeof *so)
		return fail("fd %d: damaged socket record", f->fd);
	memcpy(so, img->fd_data + f->data_off, sizeof *so);
	if (so->addrlen > sizeof so->addr || so->peerlen > sizeof so->peer)
		return fail("fd %d: damaged socket record", f->fd);
	return 0;
}

/* A connection whose other end had been closed: one end of a new pair,
 * holding the bytes that were queued at it, whose other end is closed
 * too, so the program reads them and then end of file, as it would have. */
static int peer_closed_socket(const struct ckpt_image *img, const struct ckpt_fd *f,
			      const struct ckpt_socket *so)
{
	int sv[2];
	if (socketpair(AF_UNIX, so->type, 0, sv) != 0)
		return fail("fd %d: cannot create a socket pair: %s", f->fd, strerror(errno));
	uint64_t queued = f->data_len > sizeof *so ? f->data_len - sizeof *so : 0;
	if (send_all(sv[1], img->fd_data + f->data_off + sizeof *so, queued, MSG_DONTWAIT) != 0) {
		int e = errno;
		close(sv[0]);
		close(sv[1]);
		return fail("fd %d: cannot put back the %llu bytes queued at it: %s", f->fd,
			    (unsigned long long)queued, strerror(e));
	}
	close(sv[1]);
	return sv[0];
}

/* The directories of a listening Unix socket's path that are gone since
 * the checkpoint are made again, for the user only: multiprocessing's
 * listeners (PyTorch DataLoader workers' resource sharers) live in a
 * temporary directory their process removes when it exits, which a
 * worker ending after the checkpoint has done. Returns how many. */
static int make_socket_dirs(int fd, const struct sockaddr_un *un, uint32_t addrlen)
{
	size_t len = addrlen - offsetof(struct sockaddr_un, sun_path);
	char dir[sizeof un->sun_path + 1];
	if (len == 0 || len > sizeof un->sun_path || un->sun_path[0] != '/')
		return 0;
	memcpy(dir, un->sun_path, len);
	dir[len] = '\0';
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		return 0;
	*slash = '\0';
	int made = 0;
	for (char *p = dir + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(dir, 0700) == 0)
			made++;
		else if (errno != EEXIST)
			return made;
		*p = c;
		if (!c)
			break;
	}
	if (made)
		warn("fd %d: the directory %s of the address it listens on was removed after the "
		     "checkpoint; made again (mode 0700)",
		     fd, dir);
	return made;
}

static int open_socket(const struct ckpt_image *img, const struct ckpt_fd *f)
{
	struct ckpt_socket so;
	if (socket_record(img, f, &so) != 0)
		return -1;
	if ((so.flags & CKPT_SOCKET_PEER_CLOSED) && so.domain == AF_UNIX && !so.listening)
		return peer_closed_socket(img, f, &so);
	int fd = socket(so.domain, so.type, so.protocol);
	if (fd < 0)
		return fail("fd %d: cannot create a socket (family %d, type %d): %s", f->fd,
			    so.domain, so.type, strerror(errno));
	struct sockaddr_storage to;
	socklen_t tolen;
	const struct ckpt_image *limg;
	int32_t lfd;
	if (so.flags & CKPT_SOCKET_RECONNECTABLE)
		; /* pending_connect said why it could not queue it again */
	else if (so.peerlen && !so.listening && listener_of(&so, &to, &tolen, &limg, &lfd))
		warn("fd %d: its connection to the listener of pid %d (fd %d) was closed by the "
		     "server or held bytes it had sent that no checkpoint can reach; it comes "
		     "back unconnected, and the program gets an error",
		     f->fd, (int)limg->hdr.pid, (int)lfd);
	else if (so.peerlen)
		warn("fd %d: its connection was to outside the computation; it comes back "
		     "unconnected, and the program gets an error",
		     f->fd);
	if (!so.listening || so.addrlen == 0)
		return fd;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_un *un = (struct sockaddr_un *)so.addr;
	struct stat st;
	if (so.domain == AF_UNIX && so.addrlen > sizeof(sa_family_t) && un->sun_path[0] &&
	    lstat(un->sun_path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(un->sun_path);
	int bound = bind(fd, (struct sockaddr *)so.addr, so.addrlen);
	if (bound != 0 && errno == ENOENT && so.domain == AF_UNIX &&
	    make_socket_dirs(f->fd, un, so.addrlen) > 0)
		bound = bind(fd, (struct sockaddr *)so.addr, so.addrlen);
	if (bound != 0 || listen(fd, 128) != 0)
		warn("fd %d: cannot listen again on its address: %s (accept will fail)", f->fd,
		     strerror(errno));
	return fd;
}

/* A pidfd of a process that has been waited for: readable at once, as
 * the saved one was; waiting on it says there is no such child. vfork:
 * the restorer may hold the program's memory by now, which a fork would
 * copy the page tables of. */
static int pidfd_of_gone(unsigned flags)
{
	pid_t child = vfork();
	if (child < 0)
		return -1;
	if (child == 0)
		_exit(0);
	int fd = (int)syscall(SYS_pidfd_open, child, flags);
	int e = errno;
	while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
		;
	errno = e;
	return fd;
}

/* How long a pidfd waits for its process to be forked by its parent in
 * the tree (a sibling's child, say), which happens before the barrier. */
#define PIDFD_WAIT_MS 5000

static int open_pidfd(const struct ckpt_image *img, const struct ckpt_fd *f)
{
	unsigned flags = f->open_flags & (O_NONBLOCK | O_EXCL); /* PIDFD_NONBLOCK, PIDFD_THREAD */
	int32_t pid = (int32_t)f->offset;
	if (pid <= 0)
		return pidfd_of_gone(flags & O_NONBLOCK);
	if (getenv("CKPT_NEW_IDS")) {
		/* pids are not given back: the saved one may be anyone's now */
		if (pid == img->hdr.pid)
			return (int)syscall(SYS_pidfd_open, getpid(), flags);
		warn("fd %d: pidfd of pid %d, which a restart without pid namespaces cannot give "
		     "back; it comes back as the pidfd of a process that has ended",
		     f->fd, (int)pid);
		return pidfd_of_gone(flags & O_NONBLOCK);
	}
	if (!tree_gives_back(pid)) {
		warn("fd %d: pidfd of pid %d, which this generation does not hold (a thread, or a "
		     "process outside it); it comes back as the pidfd of a process that has "
		     "ended",
		     f->fd, (int)pid);
		return pidfd_of_gone(flags & O_NONBLOCK);
	}
	for (int waited = 0;; waited++) {
		int fd = (int)syscall(SYS_pidfd_open, pid, flags);
		if (fd >= 0)
			return fd;
		if (errno != ESRCH || waited >= PIDFD_WAIT_MS)
			break;
		struct timespec ms = {0, 1000000};
		nanosleep(&ms, NULL);
	}
	warn("fd %d: cannot open a pidfd of pid %d again: %s; it comes back as the pidfd of a "
	     "process that has ended",
	     f->fd, (int)pid, strerror(errno));
	return pidfd_of_gone(flags & O_NONBLOCK);
}

/* ---- inotify ----
 * Watches are made again by path. The kernel numbers them from 1 up and
 * never reuses a number in an instance, so the saved numbers come back in
 * order, a number the program had removed taken by a throw-away watch
 * (on a pipe of our own) removed at once; the events that removal queues
 * are read away before the program runs. */
#define INOTIFY_MAX_GAP 100000

static int cmp_watch(const void *a, const void *b)
{
	const struct ckpt_inotify_watch *x = a, *y = b;
	return (x->wd > y->wd) - (x->wd < y->wd);
}

/* Takes watch numbers up to wd (exclusive); returns the next free one. */
static int skip_watch_numbers(int fd, int next, int wd, int *pipefd)
{
	if (wd - next > INOTIFY_MAX_GAP)
		return next;
	char self[64];
	if (pipefd[0] < 0 && pipe2(pipefd, O_CLOEXEC) != 0)
		return next;
	snprintf(self, sizeof self, "/proc/self/fd/%d", pipefd[0]);
	while (next < wd) {
		int got = inotify_add_watch(fd, self, IN_ACCESS);
		if (got < 0)
			break;
		inotify_rm_watch(fd, got);
		next = got + 1;
	}
	return next;
}

static void drain_inotify(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	char buf[4096];
	while (read(fd, buf, sizeof buf) > 0)
		;
	fcntl(fd, F_SETFL, fl);
}

static int open_inotify(const struct ckpt_image *img, const struct ckpt_fd *f)
{
	size_t n = f->data_len / sizeof(struct ckpt_inotify_watch);
	struct ckpt_inotify_watch *w = malloc(n ? n * sizeof *w : 1);
	if (!w)
		return fail("out of memory");
	memcpy(w, img->fd_data + f->data_off, n * sizeof *w);
	qsort(w, n, sizeof *w, cmp_watch);
	int fd = inotify_init1((f->open_flags & O_NONBLOCK) ? IN_NONBLOCK : 0);
	int pipefd[2] = {-1, -1}, next = 1;
	for (size_t i = 0; fd >= 0 && i < n; i++) {
		if (!w[i].path_str)
			continue; /* named at the checkpoint */
		const char *path = ckpt_image_string(img, w[i].path_str);
		next = skip_watch_numbers(fd, next, w[i].wd, pipefd);
		int got = inotify_add_watch(fd, path, w[i].mask);
		if (got < 0)
			warn("fd %d: inotify watch %d on %s cannot be made again: %s; the program "
			     "sees no events from it",
			     f->fd, (int)w[i].wd, path, strerror(errno));
		else if (got != w[i].wd)
			warn("fd %d: inotify watch %d on %s came back as watch %d; the program "
			     "does not know that number",
			     f->fd, (int)w[i].wd, path, got);
		if (got >= next)
			next = got + 1;
	}
	if (pipefd[0] >= 0) {
		close(pipefd[0]);
		close(pipefd[1]);
		drain_inotify(fd);
	}
	free(w);
	return fd;
}

static int open_one(struct fd_context *c, const struct ckpt_image *img, const struct ckpt_fd *f)
{
	const char *path = ckpt_image_string(img, f->path_str);
	switch (f->kind) {
	case CKPT_FD_FILE:
		if (strstr(path, " (deleted)"))
			return fail("fd %d: %s had been deleted at checkpoint time; its content "
				    "was not saved",
				    f->fd, path);
		if (f->aux == 1)
			return open_written(img, f, path);
		if (f->aux == 2)
			return open_output(img, f, path);
		return open_path(f, path);
	case CKPT_FD_DIR:
	case CKPT_FD_DEVICE:
		return open_path(f, path);
	case CKPT_FD_DELETED:
		return open_deleted(img, f, path);
	case CKPT_FD_EVENTFD: {
		int fd = eventfd(0, ((f->open_flags & O_NONBLOCK) ? EFD_NONBLOCK : 0) |
					(f->aux ? EFD_SEMAPHORE : 0));
		uint64_t count = (uint64_t)f->offset;
		if (fd >= 0 && count && write(fd, &count, sizeof count) != sizeof count) {
			close(fd);
			return fail("fd %d: cannot set the eventfd counter back to %llu", f->fd,
				    (unsigned long long)count);
		}
		return fd;
	}
	case CKPT_FD_SOCKET:
		return open_socket(img, f);
	case CKPT_FD_SIGNALFD: {
		sigset_t mask;
		sigemptyset(&mask);
		for (int sig = 1; sig <= 64; sig++)
			if ((uint64_t)f->offset & (1ull << (sig - 1)))
				sigaddset(&mask, sig);
		return signalfd(-1, &mask, (f->open_flags & O_NONBLOCK) ? SFD_NONBLOCK : 0);
	}
	case CKPT_FD_TIMERFD: {
		struct ckpt_timerfd t;
		if (f->data_len != sizeof t)
			return fail("fd %d: damaged timerfd record", f->fd);
		memcpy(&t, img->fd_data + f->data_off, sizeof t);
		int fd = timerfd_create(t.clockid, (f->open_flags & O_NONBLOCK) ? TFD_NONBLOCK : 0);
		struct itimerspec its = {{t.interval_sec, t.interval_nsec},
					 {t.value_sec, t.value_nsec}};
		/* expiries the program had not read yet: a stopped timer fires
		 * again at once, so they come back (as one) rather than never */
		if (t.ticks && !its.it_value.tv_sec && !its.it_value.tv_nsec)
			its.it_value.tv_nsec = 1;
		if (fd >= 0 && timerfd_settime(fd, 0, &its, NULL) != 0)
			warn("fd %d: cannot arm the timerfd again: %s", f->fd, strerror(errno));
		return fd;
	}
	case CKPT_FD_PIDFD:
		return open_pidfd(img, f);
	case CKPT_FD_INOTIFY:
		return open_inotify(img, f);
	case CKPT_FD_EPOLL:
		return epoll_create1(0); /* filled once every descriptor is back */
	case CKPT_FD_STDIO:
		return dup(c->stdio[f->aux < 3 ? f->aux : 2]);
	case CKPT_FD_AGENT:
		return c->ctl >= 0 ? dup(c->ctl) : open("/dev/null", O_RDWR);
	case CKPT_FD_FIFO:
		/* both ends in one description: its own, by path */
		if ((f->open_flags & O_ACCMODE) == O_RDWR)
			return open(path, O_RDWR | O_CLOEXEC);
		return open_pipe(f);
	case CKPT_FD_PIPE:
	case CKPT_FD_SOCKPAIR:
		return open_pipe(f);
	default:
		warn("fd %d (%s) could not be saved; it is /dev/null now", f->fd, path);
		return open("/dev/null", O_RDWR);
	}
}

/* File locks the program held: taken again before it runs, after every
 * descriptor is in place (closing any descriptor of a file drops the
 * process's POSIX locks on it). One that another process holds now stops
 * the restart: losing a lock silently could corrupt the program's data. */
static int locks_take(const struct ckpt_image *img)
{
	for (uint32_t i = 0; i < img->nlocks; i++) {
		const struct ckpt_lock *l = &img->locks[i];
		int r;
		if (l->kind == CKPT_LOCK_FLOCK) {
			r = flock(l->fd, (l->write ? LOCK_EX : LOCK_SH) | LOCK_NB);
		} else {
			struct flock fl = {.l_type = l->write ? F_WRLCK : F_RDLCK,
					   .l_whence = SEEK_SET,
					   .l_start = l->start,
					   .l_len = l->end < 0 ? 0 : l->end - l->start + 1};
			r = fcntl(l->fd, l->kind == CKPT_LOCK_OFD ? F_OFD_SETLK : F_SETLK, &fl);
		}
		if (r != 0) {
			char path[4200] = "?", self[64];
			snprintf(self, sizeof self, "/proc/self/fd/%d", l->fd);
			ssize_t n = readlink(self, path, sizeof path - 1);
			path[n > 0 ? n : 1] = '\0';
			return fail(
			    "fd %d: cannot take the %s lock on %s again: %s%s", l->fd,
			    l->kind == CKPT_LOCK_FLOCK	 ? "flock"
			    : l->kind == CKPT_LOCK_POSIX ? "POSIX"
							 : "OFD",
			    path, strerror(errno),
			    errno == EAGAIN || errno == EACCES || errno == EWOULDBLOCK
				? " (another process holds it; end that process and restart)"
				: "");
		}
	}
	return 0;
}

int fds_restore(struct fd_context *c, const struct ckpt_image *img)
{
	for (uint32_t i = 0; i < img->nfds; i++) {
		const struct ckpt_fd *f = &img->fds[i];
		int obj = shared_obj(img, f);
		int fd = obj >= 0 ? dup(obj) : open_one(c, img, f);
		if (fd < 0)
			return restore_error[0]
				   ? -1
				   : fail("fd %d: cannot recreate: %s", f->fd, strerror(errno));
		if (fd != f->fd) {
			if (dup2(fd, f->fd) < 0)
				return fail("fd %d: dup2: %s", f->fd, strerror(errno));
			close(fd);
		}
		if (f->kind == CKPT_FD_PIPE || f->kind == CKPT_FD_SOCKPAIR ||
		    f->kind == CKPT_FD_FIFO || f->kind == CKPT_FD_STDIO ||
		    f->kind == CKPT_FD_SOCKET)
			fcntl(f->fd, F_SETFL, (int)f->open_flags & (O_NONBLOCK | O_APPEND));
		fcntl(f->fd, F_SETFD, (int)f->fd_flags & FD_CLOEXEC);
	}
	shared_close();
	return epolls_fill(img) != 0 ? -1 : locks_take(img);
}
