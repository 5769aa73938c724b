/* ckpt status [RUNDIR]: what a run is doing. Asks the supervisor, which
 * answers from its own state; without one, reads the run directory. */
#include "cli/cli.h"
#include "cli/config.h"
#include "cli/rundir.h"
#include "coord/client.h"
#include "coord/err.h"
#include "coord/fsutil.h"
#include "coord/gens.h"
#include "coord/kvfile.h"
#include "coord/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATUS_TIMEOUT_MS 5000

/* The one run directory in the current directory. */
static char *find_rundir(void)
{
	DIR *d = opendir(".");
	if (!d) {
		ckpt_fail_errno("cannot read the current directory");
		return NULL;
	}
	char *found = NULL, list[512] = "";
	int count = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		struct stat st;
		int fd = dirfd(d);
		if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
			continue;
		char cfg[NAME_MAX + 16];
		snprintf(cfg, sizeof(cfg), "%s/config", e->d_name);
		char img[NAME_MAX + 16];
		snprintf(img, sizeof(img), "%s/%s", e->d_name, GENS_DIR);
		if (faccessat(fd, cfg, F_OK, 0) < 0 || faccessat(fd, img, F_OK, 0) < 0)
			continue;
		if (count++ == 0)
			found = strdup(e->d_name);
		size_t n = strlen(list);
		if (n < sizeof(list) - 8)
			snprintf(list + n, sizeof(list) - n, "%s%s", n ? ", " : "", e->d_name);
	}
	closedir(d);
	if (count == 1)
		return found;
	free(found);
	if (count == 0)
		ckpt_fail("no run directory here; name one: ckpt status RUNDIR");
	else
		ckpt_fail("%d run directories here (%s); name one: ckpt status RUNDIR", count,
			  list);
	return NULL;
}

static void human_size(char *buf, size_t len, uint64_t bytes)
{
	static const char *unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)bytes;
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu bytes", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%.1f %s", v, unit[u]);
}

static void print_last(uint64_t gen, int64_t time_ms, uint64_t bytes, int64_t ms)
{
	if (!gen) {
		printf("last checkpoint: none yet\n");
		return;
	}
	char when[32] = "?", size[32];
	if (time_ms > 0)
		ckpt_format_time(when, sizeof(when), time_ms);
	human_size(size, sizeof(size), bytes);
	printf("generation:      %llu\n", (unsigned long long)gen);
	printf("last checkpoint: %s, %s, %lld ms\n", when, size, (long long)ms);
}

/* What the manifest of generation gen says beyond time and size: the
 * program's pause, whether it is incremental, and what all generations
 * kept take on disk. */
static void print_details(int dfd, uint64_t gen)
{
	int imfd = openat(dfd, GENS_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (imfd < 0)
		return;
	int gfd = gen ? gens_open(imfd, gen) : -1;
	struct kvfile kv;
	if (gfd >= 0 && kv_read(&kv, gfd, GENS_MANIFEST) == 0) {
		const char *pause = kv_get(&kv, "pause_ms"), *parent = kv_get(&kv, "parent");
		const char *stored = kv_get(&kv, "pages_stored");
		const char *referred = kv_get(&kv, "pages_referred");
		if (pause)
			printf("program paused:  %s ms\n", pause);
		if (parent)
			printf("kind:            incremental on generation %s (depth %s): %s pages "
			       "stored, %s unchanged referred to\n",
			       parent, kv_get(&kv, "chain") ? kv_get(&kv, "chain") : "?",
			       stored ? stored : "?", referred ? referred : "?");
		else
			printf("kind:            full\n");
		kv_free(&kv);
	}
	if (gfd >= 0)
		close(gfd);
	struct gens_scan s;
	if (gens_scan(imfd, &s) == 0) {
		uint64_t total = 0;
		for (size_t i = 0; i < s.ncomplete; i++) {
			char name[64];
			gens_name(name, sizeof(name), s.complete[i], 0);
			total += gens_dir_bytes(imfd, name);
		}
		char size[32];
		human_size(size, sizeof(size), total);
		printf("on disk:         %zu generation%s, %s\n", s.ncomplete,
		       s.ncomplete == 1 ? "" : "s", size);
		gens_scan_free(&s);
	}
	close(imfd);
}

/* The GPU part of the last checkpoint (docs/gpu.md). */
static void print_gpu(int64_t n, int64_t lock, int64_t ckpt, int64_t restore, int64_t unlock)
{
	if (n > 0)
		printf("gpu:             %lld process(es): lock %lld ms, device-to-host %lld ms, "
		       "restore %lld ms, unlock %lld ms\n",
		       (long long)n, (long long)lock, (long long)ckpt, (long long)restore,
		       (long long)unlock);
}

static uint64_t field_u64(const struct ckpt_msg *m, const char *key)
{
	uint64_t v = 0;
	ckpt_msg_get_u64(m, key, &v);
	return v;
}

static int64_t field_i64(const struct ckpt_msg *m, const char *key)
{
	int64_t v = 0;
	ckpt_msg_get_i64(m, key, &v);
	return v;
}

static void print_live(const struct ckpt_msg *m, int dfd)
{
	const char *state = ckpt_msg_get(m, "state");
	printf("state:           %s (supervisor pid %lld)\n", state ? state : "?",
	       (long long)field_i64(m, "supervisor_pid"));
	if (field_i64(m, "pid"))
		printf("pid:             %lld (in the program's pid namespace)\n",
		       (long long)field_i64(m, "pid"));
	if (ckpt_msg_get(m, "agents"))
		printf("processes:       %llu with the checkpoint agent\n",
		       (unsigned long long)field_u64(m, "agents"));
	const char *lazy = ckpt_msg_get(m, "lazy");
	if (field_u64(m, "restored_from"))
		printf("restarted from:  generation %llu%s%s%s\n",
		       (unsigned long long)field_u64(m, "restored_from"), lazy ? " (lazily: " : "",
		       !lazy ? ""
		       : !strcmp(lazy, "verifying")
			   ? "its pages are being verified, checkpoints wait"
			   : lazy,
		       lazy ? ")" : "");
	print_last(field_u64(m, "gen"), field_i64(m, "last_time"), field_u64(m, "last_bytes"),
		   field_i64(m, "last_ms"));
	print_details(dfd, field_u64(m, "gen"));
	print_gpu(field_i64(m, "gpu_processes"), field_i64(m, "gpu_lock_ms"),
		  field_i64(m, "gpu_checkpoint_ms"), field_i64(m, "gpu_restore_ms"),
		  field_i64(m, "gpu_unlock_ms"));
	if (ckpt_msg_get(m, "checkpointing_gen"))
		printf("in progress:     generation %s\n", ckpt_msg_get(m, "checkpointing_gen"));
	int64_t interval = field_i64(m, "interval_ms"), due = field_i64(m, "next_due");
	if (due > 0) {
		char when[32];
		ckpt_format_time(when, sizeof(when), due);
		int64_t left = due - ckpt_now_ms();
		printf("next checkpoint: %s (in %lld s; every %lld.%03lld s)\n", when,
		       (long long)(left > 0 ? (left + 999) / 1000 : 0),
		       (long long)(interval / 1000), (long long)(interval % 1000));
	} else if (interval == 0) {
		printf("next checkpoint: on request only (ckpt checkpoint RUNDIR)\n");
	} else {
		printf("next checkpoint: none scheduled\n");
	}
}

/* The last line of execution.log, for a stopped run. */
static void print_last_event(int dfd)
{
	int fd = openat(dfd, "execution.log", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	char buf[4096];
	off_t size = lseek(fd, 0, SEEK_END);
	off_t from = size > (off_t)sizeof(buf) - 1 ? size - (off_t)sizeof(buf) + 1 : 0;
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	char *last = strrchr(buf, '\n');
	printf("last event:      %s\n", last ? last + 1 : buf);
}

static void print_offline(int dfd, const struct run_config *cfg)
{
	pid_t holder;
	int held = rundir_lock_held(dfd, &holder);
	if (held == 1 && holder > 0 && kill(holder, 0) < 0 && errno == ESRCH)
		printf(
		    "state:           orphaned: the supervisor (pid %d) has exited but the program "
		    "still runs, unsupervised\n",
		    (int)holder);
	else if (held == 1)
		printf("state:           running, but the supervisor (pid %d) does not answer\n",
		       (int)holder);
	else
		printf("state:           stopped (no supervisor running)\n");
	uint64_t gen = 0;
	int64_t time_ms = 0, ms = 0;
	uint64_t bytes = 0;
	int64_t gpu[5] = {0};
	static const char *gpu_keys[5] = {"gpu_processes", "gpu_lock_ms", "gpu_checkpoint_ms",
					  "gpu_restore_ms", "gpu_unlock_ms"};
	int imfd = openat(dfd, GENS_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (imfd >= 0 && gens_latest(imfd, &gen) == 1) {
		int gfd = gens_open(imfd, gen);
		struct kvfile kv;
		if (gfd >= 0 && kv_read(&kv, gfd, GENS_MANIFEST) == 0) {
			const char *v;
			if ((v = kv_get(&kv, "time_ms")))
				time_ms = atoll(v);
			if ((v = kv_get(&kv, "bytes")))
				bytes = strtoull(v, NULL, 10);
			if ((v = kv_get(&kv, "total_ms")))
				ms = atoll(v);
			for (int i = 0; i < 5; i++)
				if ((v = kv_get(&kv, gpu_keys[i])))
					gpu[i] = atoll(v);
			kv_free(&kv);
		}
		if (gfd >= 0)
			close(gfd);
	}
	if (imfd >= 0)
		close(imfd);
	print_last(gen, time_ms, bytes, ms);
	print_details(dfd, gen);
	print_gpu(gpu[0], gpu[1], gpu[2], gpu[3], gpu[4]);
	print_last_event(dfd);
	if (held != 1 && gen) {
		char *hint = restart_hint(cfg->id, cfg->dir, cfg->cmd, cfg->ncmd);
		if (hint)
			printf("resume with:     %s\n", hint);
		if (hint && !cfg->dir)
			printf("                 (run in %s)\n", cfg->cwd);
		free(hint);
	}
}

int cmd_status(int argc, char **argv)
{
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		print_help("status");
		return 0;
	}
	if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
		if (argc > 2)
			ckpt_fail("too many arguments: ckpt status [RUNDIR]");
		else
			ckpt_fail("unknown option '%s' (see ckpt status --help)", argv[1]);
		return report_error(EXIT_USAGE);
	}
	char *found = argc == 2 ? NULL : find_rundir();
	const char *path = argc == 2 ? argv[1] : found;
	if (!path)
		return report_error(EXIT_USAGE);
	int dfd = open_rundir_arg(path);
	if (dfd < 0)
		return report_error(EXIT_USAGE);
	struct run_config cfg;
	if (config_read(dfd, &cfg) < 0) {
		ckpt_fail("cannot read %s/config: %s", path, ckpt_error());
		return report_error(1);
	}
	char abs[PATH_MAX];
	char *cmd = shell_join(cfg.cmd, cfg.ncmd);
	printf("run directory:   %s\n", realpath(path, abs) ? abs : path);
	if (cfg.id)
		printf("id:              %s\n", cfg.id);
	printf("command:         %s\n", cmd ? cmd : cfg.cmd[0]);
	free(cmd);
	int fd = client_connect(dfd);
	struct ckpt_msg reply;
	if (fd >= 0 && client_request(fd, "STATUS", &reply, STATUS_TIMEOUT_MS) == 0 &&
	    ckpt_msg_is(&reply, "OK")) {
		print_live(&reply, dfd);
	} else {
		if (fd >= 0)
			printf("supervisor:      %s\n", ckpt_error());
		print_offline(dfd, &cfg);
	}
	if (fd >= 0)
		close(fd);
	config_free(&cfg);
	close(dfd);
	free(found);
	return fflush(stdout) == 0 ? 0 : 1;
}
