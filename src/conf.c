/*
 * agora.conf, in git-config syntax, read with libgit2's config API. Only
 * the file itself is read: never the user's or the system's git config.
 */
#include "agora.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <git2.h>

#include "banned.h"

int
ag_parse_duration_ms(int64_t *out, const char *s)
{
	char *end = NULL;
	double v;
	double mul = 1000;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || v < 0 || v != v)
		return AG_EINVALID;
	if (*end == '\0' || strcmp(end, "s") == 0)
		mul = 1000;
	else if (strcmp(end, "ms") == 0)
		mul = 1;
	else if (strcmp(end, "m") == 0)
		mul = 60000;
	else if (strcmp(end, "h") == 0)
		mul = 3600000;
	else
		return AG_EINVALID;
	if (v * mul > 1e15)
		return AG_EINVALID;
	*out = (int64_t)(v * mul + 0.5);
	return 0;
}

static int
parse_int(int *out, const char *s, int min, int max)
{
	char *end = NULL;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return AG_EINVALID;
	*out = (int)v;
	return 0;
}

static int
split_words(char ***list, size_t *n, const char *value)
{
	const char *p = value;

	while (*p) {
		const char *start;
		char **nl;
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (!*p)
			break;
		start = p;
		while (*p && *p != ' ' && *p != '\t' && *p != ',')
			p++;
		nl = realloc(*list, (*n + 1) * sizeof(**list));
		if (!nl)
			return ag_error_set(AG_ERROR, "out of memory");
		*list = nl;
		if (!(nl[*n] = strndup(start, (size_t)(p - start))))
			return ag_error_set(AG_ERROR, "out of memory");
		(*n)++;
	}
	return 0;
}

static void *
find_named(void *arr, size_t n, size_t elsize, const char *name)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char **pname = (char **)((char *)arr + i * elsize);
		if (strcmp(*pname, name) == 0)
			return pname;
	}
	return NULL;
}

/* Find or add the named element of a table whose first member is the name. */
static void *
named(void **arr, size_t *n, size_t elsize, const char *name)
{
	void *e = find_named(*arr, *n, elsize, name);
	char *na;

	if (e)
		return e;
	na = realloc(*arr, (*n + 1) * elsize);
	if (!na)
		return NULL;
	*arr = na;
	e = na + *n * elsize;
	memset(e, 0, elsize);
	if (!(*(char **)e = strdup(name)))
		return NULL;
	(*n)++;
	return e;
}

const struct ag_queue *
ag_conf_queue(const struct ag_conf *c, const char *name)
{
	return find_named(c->queues, c->nqueues, sizeof(*c->queues), name);
}

const struct ag_executor *
ag_conf_executor(const struct ag_conf *c, const char *name)
{
	return find_named(c->executors, c->nexecutors, sizeof(*c->executors), name);
}

const struct ag_subagent *
ag_conf_subagent(const struct ag_conf *c, const char *name)
{
	return find_named(c->subagents, c->nsubagents, sizeof(*c->subagents), name);
}

const struct ag_anchor *
ag_conf_anchor(const struct ag_conf *c, const char *name)
{
	return find_named(c->anchors, c->nanchors, sizeof(*c->anchors), name);
}

const struct ag_slot *
ag_conf_slot(const struct ag_conf *c, const char *name)
{
	return find_named(c->slots, c->nslots, sizeof(*c->slots), name);
}

static int
set_string(char **out, const char *value)
{
	char *s = strdup(value);

	if (!s)
		return ag_error_set(AG_ERROR, "out of memory");
	free(*out);
	*out = s;
	return 0;
}

static int
bad(const char *path, const char *key, const char *value, const char *want)
{
	return ag_error_set(AG_EINVALID, "%s: bad value '%s' for '%s': expected %s",
	    path, ag_quote(value, strlen(value)), key, want);
}

static int
set_key(struct ag_conf *c, const char *path, const char *name, const char *value)
{
	const char *dot1 = strchr(name, '.'), *dot2 = strrchr(name, '.');
	char section[32], sub[256];
	const char *key = dot2 + 1;
	int64_t ms;

	if (!dot1 || (size_t)(dot1 - name) >= sizeof(section))
		goto unknown;
	memcpy(section, name, (size_t)(dot1 - name));
	section[dot1 - name] = '\0';
	sub[0] = '\0';
	if (dot2 != dot1) {
		size_t n = (size_t)(dot2 - dot1 - 1);
		if (n >= sizeof(sub))
			goto unknown;
		memcpy(sub, dot1 + 1, n);
		sub[n] = '\0';
	}

	if (strcmp(section, "agora") == 0 && !sub[0]) {
		if (strcmp(key, "concurrency") == 0)
			return parse_int(&c->concurrency, value, 0, 1000000) ? bad(path, name, value, "a count (0 = unlimited)") : 0;
		if (strcmp(key, "maxattempts") == 0)
			return parse_int(&c->max_attempts, value, 1, 1000) ? bad(path, name, value, "1 to 1000") : 0;
		if (strcmp(key, "backoff") == 0)
			return ag_parse_duration_ms(&c->backoff_ms, value) ? bad(path, name, value, "a duration") : 0;
		if (strcmp(key, "backoffmax") == 0)
			return ag_parse_duration_ms(&c->backoff_max_ms, value) ? bad(path, name, value, "a duration") : 0;
		if (strcmp(key, "leasettl") == 0) {
			if (ag_parse_duration_ms(&c->lease_ttl_ms, value) || c->lease_ttl_ms < 300)
				return bad(path, name, value, "a duration of at least 300ms");
			return 0;
		}
		if (strcmp(key, "leasegrace") == 0)
			return ag_parse_duration_ms(&c->lease_grace_ms, value) ? bad(path, name, value, "a duration") : 0;
		if (strcmp(key, "killgrace") == 0)
			return ag_parse_duration_ms(&c->kill_grace_ms, value) ? bad(path, name, value, "a duration") : 0;
		if (strcmp(key, "passenv") == 0)
			return split_words(&c->passenv, &c->npassenv, value);
		if (strcmp(key, "defaultqueue") == 0) {
			if (!ag_id_valid(value))
				return bad(path, name, value, "a queue id");
			free(c->default_queue);
			c->default_queue = strdup(value);
			return 0;
		}
		if (strcmp(key, "porkiexecutor") == 0) {
			if (!ag_id_valid(value))
				return bad(path, name, value, "an executor id");
			free(c->porki_executor);
			c->porki_executor = strdup(value);
			return 0;
		}
		goto unknown;
	}
	if (!sub[0])
		goto unknown;
	if (strcmp(section, "queue") == 0 || strcmp(section, "executor") == 0 ||
	    strcmp(section, "slot") == 0 || strcmp(section, "subagent") == 0 ||
	    strcmp(section, "anchor") == 0) {
		if (!ag_id_valid(sub))
			return ag_error_set(AG_EINVALID, "%s: invalid %s name '%s'", path,
			    section, ag_quote(sub, strlen(sub)));
	}
	if (strcmp(section, "queue") == 0) {
		struct ag_queue *q = named((void **)&c->queues, &c->nqueues, sizeof(*q), sub);
		if (!q)
			return ag_error_set(AG_ERROR, "out of memory");
		if (strcmp(key, "concurrency") == 0)
			return parse_int(&q->concurrency, value, 0, 1000000) ? bad(path, name, value, "a count (0 = unlimited)") : 0;
		if (strcmp(key, "stage") == 0) {
			int on;
			if (git_config_parse_bool(&on, value) < 0)
				return bad(path, name, value, "true or false");
			q->nostage = !on;
			return 0;
		}
		goto unknown;
	}
	if (strcmp(section, "executor") == 0) {
		struct ag_executor *e = named((void **)&c->executors, &c->nexecutors, sizeof(*e), sub);
		if (!e)
			return ag_error_set(AG_ERROR, "out of memory");
		if (strcmp(key, "kind") == 0) {
			if (strcmp(value, "exec") != 0 && strcmp(value, "dispatch") != 0)
				return bad(path, name, value, "'exec' or 'dispatch'");
			free(e->kind);
			e->kind = strdup(value);
			return 0;
		}
		if (strcmp(key, "command") == 0) {
			free(e->command);
			e->command = strdup(value);
			return 0;
		}
		if (strcmp(key, "passenv") == 0)
			return split_words(&e->passenv, &e->npassenv, value);
		if (strcmp(key, "repo") == 0)
			return set_string(&e->repo, value);
		if (strcmp(key, "base") == 0)
			return set_string(&e->base, value);
		goto unknown;
	}
	if (strcmp(section, "subagent") == 0) {
		struct ag_subagent *a = named((void **)&c->subagents, &c->nsubagents, sizeof(*a), sub);
		if (!a)
			return ag_error_set(AG_ERROR, "out of memory");
		if (strcmp(key, "command") == 0)
			return set_string(&a->command, value);
		if (strcmp(key, "passenv") == 0)
			return split_words(&a->passenv, &a->npassenv, value);
		if (strcmp(key, "timeout") == 0)
			return ag_parse_duration_ms(&a->timeout_ms, value) ? bad(path, name, value, "a duration (0 = none)") : 0;
		if (strcmp(key, "slots") == 0)
			return split_words(&a->slots, &a->nslots, value);
		if (strcmp(key, "sandbox") == 0) {
			if (strcmp(value, "none") != 0 && strcmp(value, "bwrap") != 0)
				return bad(path, name, value, "'none' or 'bwrap'");
			return set_string(&a->sandbox, value);
		}
		if (strcmp(key, "network") == 0) {
			if (strcmp(value, "none") != 0 && strcmp(value, "host") != 0)
				return bad(path, name, value, "'none' or 'host'");
			a->share_net = strcmp(value, "host") == 0;
			return 0;
		}
		goto unknown;
	}
	if (strcmp(section, "slot") == 0) {
		struct ag_slot *s = named((void **)&c->slots, &c->nslots, sizeof(*s), sub);
		if (!s)
			return ag_error_set(AG_ERROR, "out of memory");
		if (strcmp(key, "capacity") == 0)
			return parse_int(&s->capacity, value, 0, 1000000) ? bad(path, name, value, "a count") : 0;
		if (strcmp(key, "wait") == 0) {
			if (ag_parse_duration_ms(&ms, value))
				return bad(path, name, value, "a duration (0 = forever)");
			s->wait_ms = ms;
			return 0;
		}
		goto unknown;
	}
	if (strcmp(section, "anchor") == 0) {
		struct ag_anchor *a = named((void **)&c->anchors, &c->nanchors, sizeof(*a), sub);
		if (!a)
			return ag_error_set(AG_ERROR, "out of memory");
		if (strcmp(key, "kind") == 0) {
			if (strcmp(value, "local") != 0 && strcmp(value, "dir") != 0 &&
			    strcmp(value, "git") != 0 && strcmp(value, "command") != 0)
				return bad(path, name, value, "'local', 'dir', 'git' or 'command'");
			return set_string(&a->kind, value);
		}
		if (strcmp(key, "path") == 0)
			return set_string(&a->path, value);
		if (strcmp(key, "remote") == 0)
			return set_string(&a->remote, value);
		if (strcmp(key, "ref") == 0) {
			if (strncmp(value, "refs/", 5) != 0 || !git_reference_is_valid_name(value))
				return bad(path, name, value, "a full ref name, such as refs/heads/agora-anchors");
			return set_string(&a->ref, value);
		}
		if (strcmp(key, "command") == 0)
			return set_string(&a->command, value);
		goto unknown;
	}
unknown:
	return ag_error_set(AG_EINVALID, "%s: unknown key '%s'", path, name);
}

int
ag_conf_load(struct ag_conf *c, const char *dir)
{
	char path[AG_PATH_MAX];
	git_config *cfg = NULL;
	git_config_iterator *it = NULL;
	git_config_entry *entry;
	size_t i;
	int rc = 0, grc;

	memset(c, 0, sizeof(*c));
	c->max_attempts = 2;
	c->backoff_ms = 1000;
	c->backoff_max_ms = 300000;
	c->lease_ttl_ms = 30000;
	c->lease_grace_ms = 10000;
	c->kill_grace_ms = 5000;
	c->default_queue = strdup("default");
	if (!(c->dir = strdup(dir)) || !c->default_queue)
		return ag_error_set(AG_ERROR, "out of memory");
	if ((rc = ag_path(path, sizeof(path), "%s/agora.conf", dir)) < 0)
		return rc;
	if (!ag_exists(path))
		return ag_error_set(AG_ENOTFOUND,
		    "'%s' is not a state directory (no agora.conf); create one with agora-init", dir);
	git_libgit2_init();
	if (git_config_open_ondisk(&cfg, path) < 0) {
		const git_error *e = git_error_last();
		rc = ag_error_set(AG_EINVALID, "cannot read '%s': %s", path, e ? e->message : "error");
		goto out;
	}
	if (git_config_iterator_new(&it, cfg) < 0) {
		rc = ag_error_set(AG_ERROR, "cannot read '%s'", path);
		goto out;
	}
	while ((grc = git_config_next(&entry, it)) == 0) {
		if ((rc = set_key(c, path, entry->name, entry->value ? entry->value : "")) < 0)
			goto out;
	}
	if (grc != GIT_ITEROVER) {
		const git_error *e = git_error_last();
		rc = ag_error_set(AG_EINVALID, "cannot read '%s': %s", path, e ? e->message : "error");
		goto out;
	}
	for (i = 0; i < c->nexecutors; i++)
		if (!c->executors[i].kind) {
			rc = ag_error_set(AG_EINVALID, "%s: executor '%s' has no kind", path,
			    c->executors[i].name);
			goto out;
		}
	for (i = 0; i < c->nanchors; i++) {
		struct ag_anchor *a = &c->anchors[i];
		const char *need = NULL;
		if (!a->kind) {
			rc = ag_error_set(AG_EINVALID, "%s: anchor '%s' has no kind", path, a->name);
			goto out;
		}
		if (strcmp(a->kind, "dir") == 0 && !a->path)
			need = "path";
		else if (strcmp(a->kind, "git") == 0 && !a->remote)
			need = "remote";
		else if (strcmp(a->kind, "command") == 0 && !a->command)
			need = "command";
		if (need) {
			rc = ag_error_set(AG_EINVALID, "%s: anchor '%s' of kind %s has no %s", path,
			    a->name, a->kind, need);
			goto out;
		}
		if (!a->ref && !(a->ref = strdup("refs/heads/agora-anchors"))) {
			rc = ag_error_set(AG_ERROR, "out of memory");
			goto out;
		}
	}
	for (i = 0; i < c->nsubagents; i++) {
		struct ag_subagent *a = &c->subagents[i];
		size_t k;
		if (!a->command) {
			rc = ag_error_set(AG_EINVALID, "%s: subagent '%s' has no command", path, a->name);
			goto out;
		}
		for (k = 0; k < a->nslots; k++)
			if (!ag_conf_slot(c, a->slots[k])) {
				rc = ag_error_set(AG_EINVALID, "%s: subagent '%s' takes unknown slot '%s'",
				    path, a->name, ag_quote(a->slots[k], strlen(a->slots[k])));
				goto out;
			}
	}
out:
	git_config_iterator_free(it);
	git_config_free(cfg);
	return rc;
}

static void
free_words(char **w, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(w[i]);
	free(w);
}

void
ag_conf_release(struct ag_conf *c)
{
	size_t i;

	if (!c)
		return;
	free(c->dir);
	free(c->default_queue);
	free(c->porki_executor);
	free_words(c->passenv, c->npassenv);
	for (i = 0; i < c->nqueues; i++)
		free(c->queues[i].name);
	free(c->queues);
	for (i = 0; i < c->nexecutors; i++) {
		free(c->executors[i].name);
		free(c->executors[i].kind);
		free(c->executors[i].command);
		free_words(c->executors[i].passenv, c->executors[i].npassenv);
		free(c->executors[i].repo);
		free(c->executors[i].base);
	}
	free(c->executors);
	for (i = 0; i < c->nslots; i++)
		free(c->slots[i].name);
	free(c->slots);
	for (i = 0; i < c->nsubagents; i++) {
		free(c->subagents[i].name);
		free(c->subagents[i].command);
		free_words(c->subagents[i].passenv, c->subagents[i].npassenv);
		free_words(c->subagents[i].slots, c->subagents[i].nslots);
		free(c->subagents[i].sandbox);
	}
	free(c->subagents);
	for (i = 0; i < c->nanchors; i++) {
		free(c->anchors[i].name);
		free(c->anchors[i].kind);
		free(c->anchors[i].path);
		free(c->anchors[i].remote);
		free(c->anchors[i].ref);
		free(c->anchors[i].command);
	}
	free(c->anchors);
	memset(c, 0, sizeof(*c));
}

int64_t
ag_conf_backoff_ms(const struct ag_conf *c, int failures)
{
	int64_t ms = c->backoff_ms;
	int i;

	for (i = 1; i < failures && ms < c->backoff_max_ms; i++)
		ms *= 2;
	return ms < c->backoff_max_ms ? ms : c->backoff_max_ms;
}
