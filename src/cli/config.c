#include "cli/config.h"

#include "coord/err.h"
#include "coord/kvfile.h"
#include "coord/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int config_write(int dirfd, const struct run_config *c)
{
	struct kvfile kv;
	kv_init(&kv);
	int rc = kv_addf(&kv, "format", "%d", CONFIG_FORMAT);
	rc |= kv_add(&kv, "ckpt_version", c->ckpt_version);
	rc |= kv_add(&kv, "created", c->created);
	if (c->id)
		rc |= kv_add(&kv, "id", c->id);
	rc |= kv_addf(&kv, "interval_ms", "%lld", (long long)c->interval_ms);
	if (c->keep > 0)
		rc |= kv_addf(&kv, "keep", "%d", c->keep);
	rc |= kv_add(&kv, "cwd", c->cwd);
	if (c->dir)
		rc |= kv_add(&kv, "dir", c->dir);
	if (c->python)
		rc |= kv_add(&kv, "python", c->python);
	rc |= kv_add(&kv, "program", c->program);
	for (int i = 0; i < c->ncmd; i++)
		rc |= kv_add(&kv, "arg", c->cmd[i]);
	if (rc == 0)
		rc =
		    kv_write(&kv, dirfd, "config",
			     "# ckpt run configuration, written by ckpt start (docs/protocol.md).\n"
			     "# key=value; values are percent-encoded; arg lines are the command "
			     "line in order.\n",
			     0600);
	kv_free(&kv);
	return rc ? -1 : 0;
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

int config_read(int dirfd, struct run_config *c)
{
	memset(c, 0, sizeof(*c));
	struct kvfile kv;
	if (kv_read(&kv, dirfd, "config") < 0)
		return -1;
	const char *format = kv_get(&kv, "format");
	const char *interval = kv_get(&kv, "interval_ms");
	if (!format || atoi(format) != CONFIG_FORMAT) {
		kv_free(&kv);
		return ckpt_fail("config has format %s; this ckpt reads format %d",
				 format ? format : "(none)", CONFIG_FORMAT);
	}
	c->id = dup_or_null(kv_get(&kv, "id"));
	c->interval_ms = interval ? atoll(interval) : 20000;
	/* Runs started before --keep existed keep the default. */
	const char *keep = kv_get(&kv, "keep");
	c->keep = keep && atoi(keep) > 0 ? atoi(keep) : 0;
	c->cwd = dup_or_null(kv_get(&kv, "cwd"));
	c->ckpt_version = dup_or_null(kv_get(&kv, "ckpt_version"));
	c->python = dup_or_null(kv_get(&kv, "python"));
	c->program = dup_or_null(kv_get(&kv, "program"));
	c->dir = dup_or_null(kv_get(&kv, "dir"));
	c->created = dup_or_null(kv_get(&kv, "created"));
	int n = 0;
	for (size_t i = 0; i < kv.count; i++)
		n += strcmp(kv.entries[i].key, "arg") == 0;
	c->cmd = calloc((size_t)n + 1, sizeof(char *));
	for (size_t i = 0; c->cmd && i < kv.count; i++)
		if (strcmp(kv.entries[i].key, "arg") == 0)
			c->cmd[c->ncmd++] = strdup(kv.entries[i].value);
	kv_free(&kv);
	if (!c->cmd || c->ncmd == 0 || !c->program || !c->cwd) {
		config_free(c);
		return ckpt_fail("config is incomplete (no program, arg or cwd)");
	}
	return 0;
}

void config_free(struct run_config *c)
{
	free(c->id);
	free(c->cwd);
	free(c->ckpt_version);
	free(c->python);
	free(c->program);
	free(c->dir);
	free(c->created);
	for (int i = 0; c->cmd && i < c->ncmd; i++)
		free(c->cmd[i]);
	free(c->cmd);
	memset(c, 0, sizeof(*c));
}

/* Characters a POSIX shell takes literally outside quotes. */
static int shell_plain(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= '0' && *s <= '9') || strchr("._,+=@%/:-", *s)))
			return 0;
	return 1;
}

/* Append s to a growing buffer, single-quoted if needed. */
static int append_word(char **buf, size_t *len, const char *s)
{
	size_t need = strlen(s) * 4 + 4;
	char *n = realloc(*buf, *len + need);
	if (!n)
		return -1;
	*buf = n;
	char *p = n + *len;
	if (*len)
		*p++ = ' ';
	if (shell_plain(s)) {
		p = stpcpy(p, s);
	} else {
		*p++ = '\'';
		for (; *s; s++) {
			if (*s == '\'')
				p = stpcpy(p, "'\\''");
			else
				*p++ = *s;
		}
		*p++ = '\'';
		*p = '\0';
	}
	*len = (size_t)(p - n);
	return 0;
}

char *shell_join(char *const *argv, int n)
{
	char *buf = NULL;
	size_t len = 0;
	for (int i = 0; i < n; i++) {
		if (append_word(&buf, &len, argv[i]) < 0) {
			free(buf);
			return NULL;
		}
	}
	if (!buf)
		buf = strdup("");
	return buf;
}

char *restart_hint(const char *id, const char *dir, char *const *cmd, int ncmd)
{
	return command_hint("restart", id, dir, cmd, ncmd);
}

char *command_hint(const char *verb, const char *id, const char *dir, char *const *cmd, int ncmd)
{
	char *buf = NULL;
	size_t len = 0;
	int ok = append_word(&buf, &len, "ckpt") == 0 && append_word(&buf, &len, verb) == 0;
	if (ok && id)
		ok = append_word(&buf, &len, "--id") == 0 && append_word(&buf, &len, id) == 0;
	if (ok && dir)
		ok = append_word(&buf, &len, "--dir") == 0 && append_word(&buf, &len, dir) == 0;
	if (ok && cmd[0][0] == '-')
		ok = append_word(&buf, &len, "--") == 0;
	for (int i = 0; ok && i < ncmd; i++)
		ok = append_word(&buf, &len, cmd[i]) == 0;
	if (!ok) {
		free(buf);
		return NULL;
	}
	return buf;
}
