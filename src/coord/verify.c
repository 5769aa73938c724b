#include "coord/verify.h"

#include "coord/err.h"
#include "coord/gens.h"
#include "coord/kvfile.h"
#include "image/reader.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

__attribute__((format(printf, 4, 5))) static void problem(struct gen_verdict *v, FILE *out,
							  const char *what, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (out)
		fprintf(out, "  %s: %s\n", what, msg);
	if (!v->damaged++)
		snprintf(v->first, sizeof(v->first), "%s: %s", what, msg);
}

/* "<pid>.img" with pid a positive decimal number: the only names the
 * protocol writes, so nothing else is opened (no "../x", no symlink). */
static int32_t image_pid(const char *name)
{
	char *end;
	if (name[0] < '1' || name[0] > '9')
		return 0;
	errno = 0;
	long pid = strtol(name, &end, 10);
	if (errno || pid <= 0 || pid > 0x3fffffff || strcmp(end, ".img") != 0)
		return 0;
	return (int32_t)pid;
}

/* The reader names the section in every message but those about page
 * chunks, which live in PAGES. */
static const char *section_prefix(const char *err)
{
	return strncmp(err, "page chunk", 10) == 0 ? "section PAGES: " : "";
}

/* Check one image; returns its size when sound, -1 otherwise. */
static int64_t check_image(int gfd, const char *dirpath, const char *name, uint64_t gen,
			   struct gen_verdict *v, FILE *out)
{
	int32_t pid = image_pid(name);
	if (!pid) {
		problem(v, out, name, "not an image name (<pid>.img)");
		return -1;
	}
	struct stat st;
	if (fstatat(gfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		problem(v, out, name, "%s", errno == ENOENT ? "missing" : strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		problem(v, out, name, "not a regular file");
		return -1;
	}
	/* An image is code and data that restart puts into a process: one
	 * that another user owns or can write could make us run their code. */
	if (st.st_uid != geteuid()) {
		problem(v, out, name,
			"owned by uid %u, not by you (uid %u); refusing an image another "
			"user could have written",
			(unsigned)st.st_uid, (unsigned)geteuid());
		return -1;
	}
	if (st.st_mode & 022) {
		problem(v, out, name,
			"writable by other users (mode %04o); make it 0600 if it is yours",
			(unsigned)(st.st_mode & 07777));
		return -1;
	}
	char path[4400], err[1024];
	snprintf(path, sizeof(path), "%s/%s", dirpath, name);
	struct ckpt_image *img = ckpt_image_open(path, err, sizeof(err));
	if (!img) {
		problem(v, out, name, "%s%s", section_prefix(err), err);
		return -1;
	}
	int bad = 0;
	if (img->hdr.pid != pid) {
		problem(v, out, name, "image header: pid %d, the file name says %d",
			(int)img->hdr.pid, (int)pid);
		bad = 1;
	} else if (img->hdr.generation != gen) {
		problem(v, out, name, "image header: generation %llu, it lies in generation %llu",
			(unsigned long long)img->hdr.generation, (unsigned long long)gen);
		bad = 1;
	} else if (ckpt_image_check_pages(img, v->decode, err, sizeof(err)) < 0) {
		problem(v, out, name, "%s%s", section_prefix(err), err);
		bad = 1;
	}
	ckpt_image_close(img);
	return bad ? -1 : (int64_t)st.st_size;
}

/* Verdicts on parent generations, so that verifying every generation of
 * a chain (ckpt verify, restart's fallback) reads each parent once. */
#define PARENT_CACHE 64
static struct {
	char path[4096];
	uint64_t gen;
	int decode, damaged;
	char first[sizeof(((struct gen_verdict *)0)->first)];
} parent_cache[PARENT_CACHE];
static unsigned parent_cached;

static int verify_parent(int imagesfd, const char *images_path, uint64_t gen, int decode,
			 char *first, size_t cap)
{
	unsigned n = parent_cached < PARENT_CACHE ? parent_cached : PARENT_CACHE;
	for (unsigned i = 0; i < n; i++)
		if (parent_cache[i].gen == gen && parent_cache[i].decode >= decode &&
		    !strcmp(parent_cache[i].path, images_path)) {
			snprintf(first, cap, "%s", parent_cache[i].first);
			return parent_cache[i].damaged;
		}
	struct gen_verdict pv = {.decode = decode};
	int bad = gens_verify(imagesfd, images_path, gen, NULL, &pv) != 0;
	snprintf(first, cap, "%s", pv.first);
	unsigned slot = parent_cached++ % PARENT_CACHE;
	snprintf(parent_cache[slot].path, sizeof(parent_cache[slot].path), "%s", images_path);
	parent_cache[slot].gen = gen;
	parent_cache[slot].decode = decode;
	parent_cache[slot].damaged = bad;
	snprintf(parent_cache[slot].first, sizeof(parent_cache[slot].first), "%s", pv.first);
	return bad;
}

static int listed(const struct kvfile *kv, const char *name)
{
	for (size_t i = 0; i < kv->count; i++)
		if (!strcmp(kv->entries[i].key, "image") && !strcmp(kv->entries[i].value, name))
			return 1;
	return 0;
}

int gens_verify(int imagesfd, const char *images_path, uint64_t gen, FILE *out,
		struct gen_verdict *v)
{
	int decode = v->decode;
	memset(v, 0, sizeof(*v));
	v->decode = decode;
	v->first_status = -1;
	char gname[64], dirpath[4200];
	gens_name(gname, sizeof(gname), gen, 0);
	snprintf(dirpath, sizeof(dirpath), "%s/%s", images_path, gname);
	int gfd = openat(imagesfd, gname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (gfd < 0) {
		problem(v, out, gname, "cannot open it: %s", strerror(errno));
		return 1;
	}
	char mark[1400];
	int mfd = openat(gfd, GENS_DAMAGED, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (mfd >= 0) {
		ssize_t n = read(mfd, mark, sizeof(mark) - 1);
		close(mfd);
		mark[n > 0 ? n : 0] = '\0';
		mark[strcspn(mark, "\n")] = '\0';
		problem(v, out, GENS_DAMAGED, "%s", mark[0] ? mark : "marked damaged");
	}
	struct kvfile kv;
	if (kv_read(&kv, gfd, GENS_MANIFEST) < 0) {
		if (errno == ENOENT)
			problem(v, out, GENS_MANIFEST,
				"missing (a generation is complete only with its manifest)");
		else
			problem(v, out, GENS_MANIFEST, "%s", ckpt_error());
		close(gfd);
		return 1;
	}
	const char *g = kv_get(&kv, "generation");
	if (!g || strtoull(g, NULL, 10) != gen)
		problem(v, out, GENS_MANIFEST, "says generation %s, the directory is %s",
			g ? g : "(none)", gname);
	const char *par = kv_get(&kv, "parent");
	if (par) {
		char *end;
		errno = 0;
		v->parent = strtoull(par, &end, 10);
		if (errno || *end || v->parent == 0 || v->parent >= gen) {
			problem(v, out, GENS_MANIFEST, "bad parent generation '%s'", par);
			v->parent = 0;
		}
	}
	const char *ms = kv_get(&kv, "main_status");
	if (ms && *ms >= '0' && *ms <= '9')
		v->first_status = atoi(ms);
	const char *root = kv_get(&kv, "root_image");
	if (!root || !image_pid(root) || !listed(&kv, root))
		problem(v, out, GENS_MANIFEST, "names no valid root_image among its images");
	else
		snprintf(v->root_image, sizeof(v->root_image), "%s", root);

	uint64_t total = 0;
	unsigned nlisted = 0;
	for (size_t i = 0; i < kv.count; i++) {
		if (strcmp(kv.entries[i].key, "image") != 0)
			continue;
		nlisted++;
		int64_t size = check_image(gfd, dirpath, kv.entries[i].value, gen, v, out);
		if (size < 0)
			continue;
		total += (uint64_t)size;
		v->nimages++;
		if (root && !strcmp(root, kv.entries[i].value))
			v->root_pid = image_pid(root);
	}
	if (!nlisted)
		problem(v, out, GENS_MANIFEST, "lists no image");
	const char *bytes = kv_get(&kv, "bytes");
	if (!v->damaged && bytes && strtoull(bytes, NULL, 10) != total)
		problem(v, out, GENS_MANIFEST, "says the images hold %s bytes, they hold %llu",
			bytes, (unsigned long long)total);
	v->bytes = total;

	/* An image the manifest does not list was not part of the commit. */
	int dfd = dup(gfd);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!d) {
		if (dfd >= 0)
			close(dfd);
		problem(v, out, gname, "cannot list it: %s", strerror(errno));
	} else {
		struct dirent *e;
		while ((e = readdir(d))) {
			size_t n = strlen(e->d_name);
			if (n > 4 && !strcmp(e->d_name + n - 4, ".img") && !listed(&kv, e->d_name))
				problem(v, out, e->d_name, "not listed in the manifest");
		}
		closedir(d);
	}
	kv_free(&kv);
	close(gfd);
	/* An incremental generation is only as sound as the pages it refers
	 * to: its parents are verified too (quietly; the first problem is
	 * named). */
	if (v->parent) {
		char why[sizeof(v->first)];
		if (verify_parent(imagesfd, images_path, v->parent, v->decode, why, sizeof(why)))
			problem(v, out, "parent",
				"generation %llu, whose pages this one refers to, is damaged: %s",
				(unsigned long long)v->parent, why);
	}
	return v->damaged ? 1 : 0;
}
