/*
 * A run's state is a fold over its status.jsonl. ag_run_apply() is the
 * only place that changes it, both when replaying the log and right after
 * a tick appends a line, so the state in memory is always what a replay
 * of the log would give.
 */
#include "agora.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "banned.h"

const char *const ag_status_names[AG_NSTATUS] = {
	"pending", "ready", "running", "done", "failed", "skipped", "cancelled"
};

int
ag_status_terminal(enum ag_status s)
{
	return s == AG_DONE || s == AG_FAILED || s == AG_SKIPPED || s == AG_CANCELLED;
}

static void
set_status(struct ag_run *r, struct ag_item *it, enum ag_status s)
{
	r->count[it->status]--;
	it->status = s;
	r->count[s]++;
}

static void
set_reason(struct ag_item *it, const json_t *ev)
{
	const char *s = json_string_value(json_object_get(ev, "reason"));

	free(it->reason);
	it->reason = s ? strdup(s) : NULL;
}

int
ag_run_item(const struct ag_run *r, const char *id, size_t *out)
{
	return ag_map_get(&r->idx, id, out);
}

static int64_t
ev_time(const json_t *ev, const char *key)
{
	int64_t ms = 0;

	if (ag_time_parse(&ms, json_string_value(json_object_get(ev, key))) < 0)
		return 0;
	return ms;
}

/* RETRY: the item and its skipped dependents go back to pending. */
static void
retry_item(struct ag_run *r, size_t i)
{
	size_t *queue, head = 0, tail = 0, k;

	queue = malloc(r->nitems * sizeof(*queue));
	if (!queue)
		return;
	r->items[i].failures = 0;
	r->items[i].cancel_req = 0;
	r->items[i].retry_at = 0;
	set_status(r, &r->items[i], AG_PENDING);
	queue[tail++] = i;
	while (head < tail) {
		struct ag_item *it = &r->items[queue[head++]];
		for (k = 0; k < it->nrdeps; k++) {
			struct ag_item *d = &r->items[it->rdeps[k]];
			if (d->status == AG_SKIPPED) {
				set_status(r, d, AG_PENDING);
				queue[tail++] = it->rdeps[k];
			}
		}
	}
	free(queue);
	r->completed = 0;
}

static void
apply_control(struct ag_run *r, const json_t *ev, struct ag_item *it)
{
	const char *d = json_string_value(json_object_get(ev, "directive"));
	const char *scope = json_string_value(json_object_get(ev, "scope"));

	if (!d)
		return;
	if (scope && strcmp(scope, "global") == 0) {
		if (strcmp(d, "PAUSE") == 0)
			r->global_paused = 1;
		else if (strcmp(d, "RESUME") == 0)
			r->global_paused = 0;
		return;
	}
	if (strcmp(d, "PAUSE") == 0)
		r->want_pause = 1;
	else if (strcmp(d, "RESUME") == 0)
		r->want_pause = 0;
	else if (strcmp(d, "CANCEL") == 0) {
		if (it)
			it->cancel_req = 1;
		else
			r->want_cancel = 1;
	} else if (strcmp(d, "DROP-TASK") == 0 && it)
		it->drop_req = 1;
	else if (strcmp(d, "ELEVATE") == 0 && it)
		it->priority = (int)json_integer_value(json_object_get(ev, "priority"));
	else if (strcmp(d, "RETRY") == 0 && it)
		retry_item(r, (size_t)(it - r->items));
}

void
ag_run_apply(struct ag_run *r, const json_t *ev)
{
	const char *e = json_string_value(json_object_get(ev, "event"));
	const char *id = json_string_value(json_object_get(ev, "item"));
	struct ag_item *it = NULL;
	json_t *off;
	size_t i;

	if (!e)
		return;
	if (id && ag_map_get(&r->idx, id, &i) == 0)
		it = &r->items[i];
	if ((off = json_object_get(ev, "offset")))
		r->control_off = json_integer_value(off);
	if ((off = json_object_get(ev, "globalOffset")))
		r->global_off = json_integer_value(off);

	if (strcmp(e, "run.submitted") == 0) {
		r->global_paused = json_is_true(json_object_get(ev, "globalPaused"));
	} else if (strcmp(e, "run.paused") == 0) {
		r->paused = 1;
	} else if (strcmp(e, "run.resumed") == 0) {
		r->paused = 0;
	} else if (strcmp(e, "run.cancelled") == 0) {
		r->cancelled = 1;
		r->want_cancel = 1;
	} else if (strcmp(e, "run.completed") == 0) {
		const char *o = json_string_value(json_object_get(ev, "status"));
		r->completed = 1;
		snprintf(r->outcome, sizeof(r->outcome), "%s", o ? o : "");
	} else if (strcmp(e, "control.applied") == 0) {
		apply_control(r, ev, it);
	} else if (!it) {
		return;
	} else if (strcmp(e, "item.ready") == 0) {
		set_status(r, it, AG_READY);
		it->ready_at = ev_time(ev, "at");
	} else if (strcmp(e, "item.running") == 0) {
		set_status(r, it, AG_RUNNING);
		it->attempt = (int)json_integer_value(json_object_get(ev, "attempt"));
		it->drop_req = 0;
	} else if (strcmp(e, "item.retrying") == 0) {
		const char *why = json_string_value(json_object_get(ev, "reason"));
		set_status(r, it, AG_READY);
		it->ready_at = ev_time(ev, "at");
		it->retry_at = ev_time(ev, "retryAt");
		if (!why || (strcmp(why, "dropped") != 0 && strcmp(why, "not started") != 0))
			it->failures++;
		it->drop_req = 0;
		set_reason(it, ev);
	} else if (strcmp(e, "item.done") == 0) {
		set_status(r, it, AG_DONE);
		set_reason(it, ev);
	} else if (strcmp(e, "item.failed") == 0) {
		set_status(r, it, AG_FAILED);
		it->failures++;
		set_reason(it, ev);
	} else if (strcmp(e, "item.skipped") == 0) {
		set_status(r, it, AG_SKIPPED);
		set_reason(it, ev);
	} else if (strcmp(e, "item.cancelled") == 0) {
		set_status(r, it, AG_CANCELLED);
		set_reason(it, ev);
	}
}

json_t *
ag_event_new(const struct ag_run *r, const char *event)
{
	char at[AG_TIME_LEN];
	json_t *ev = json_object();

	ag_time_fmt(at, ag_now_ms());
	json_object_set_new(ev, "seq", json_integer(r->seq));
	json_object_set_new(ev, "at", json_string(at));
	json_object_set_new(ev, "run", json_string(r->id));
	json_object_set_new(ev, "event", json_string(event));
	return ev;
}

int
ag_run_emit(struct ag_run *r, json_t *ev)
{
	char *line = NULL;
	size_t len;
	int rc = 0;

	if (r->log_fd < 0) {
		json_decref(ev);
		return ag_error_set(AG_ERROR, "run '%s': log is not open for writing", r->id);
	}
	json_object_set_new(ev, "prev", json_string(r->prev));
	line = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!line) {
		rc = ag_error_set(AG_ERROR, "out of memory");
		goto out;
	}
	len = strlen(line);
	if (len + 1 > AG_LINE_MAX) {
		rc = ag_error_set(AG_EINVALID, "run '%s': event line of %zu bytes is too long", r->id, len);
		goto out;
	}
	if (ag_sha256_hex(r->prev, line, len) < 0) {
		rc = AG_ERROR;
		goto out;
	}
	line[len] = '\n';
	/* one write(2) on O_APPEND: a line is all there or, after a crash, cut off */
	{
		ssize_t n = write(r->log_fd, line, len + 1);
		if (n != (ssize_t)(len + 1)) {
			rc = ag_error_sys(AG_ERROR, "cannot append to '%s/status.jsonl'", r->dir);
			if (n > 0 && ftruncate(r->log_fd, r->log_size) < 0) {
				/* the torn tail is cut on the next load */
			}
			goto out;
		}
	}
	r->log_size += (int64_t)len + 1;
	r->seq++;
	r->dirty = 1;
	r->changed = 1;
	ag_run_apply(r, ev);
out:
	free(line);
	json_decref(ev);
	return rc;
}

int
ag_run_sync(struct ag_run *r)
{
	if (!r->dirty || r->log_fd < 0)
		return 0;
	if (fdatasync(r->log_fd) < 0)
		return ag_error_sys(AG_ERROR, "cannot fsync '%s/status.jsonl'", r->dir);
	r->dirty = 0;
	return 0;
}

static int
build_items(struct ag_run *r, const struct ag_conf *c)
{
	json_t *items = json_object_get(r->plan, "items"), *it, *d, *s;
	json_int_t run_max = json_integer_value(json_object_get(r->plan, "maxAttempts"));
	size_t n = json_array_size(items), i, j, *indeg = NULL, *seen = NULL, head = 0, tail = 0;
	const char *k;

	r->nitems = n;
	r->items = calloc(n + 1, sizeof(*r->items));
	r->topo = calloc(n + 1, sizeof(*r->topo));
	if (!r->items || !r->topo || ag_map_init(&r->idx, n) < 0)
		return ag_error_set(AG_ERROR, "out of memory");
	json_array_foreach(items, i, it) {
		struct ag_item *x = &r->items[i];
		json_t *t;
		x->id = json_string_value(json_object_get(it, "id"));
		if (!x->id || ag_map_put(&r->idx, x->id, i) < 0)
			return ag_error_set(AG_EINVALID, "%s/plan.json: bad item %zu", r->dir, i);
		x->spec = it;
		x->priority = (int)json_integer_value(json_object_get(it, "priority"));
		x->max_attempts = (int)json_integer_value(json_object_get(it, "maxAttempts"));
		if (!x->max_attempts)
			x->max_attempts = run_max ? (int)run_max : c->max_attempts;
		t = json_object_get(it, "timeout");
		if (json_is_number(t))
			x->timeout_ms = (int64_t)(json_number_value(t) * 1000);
		x->nlocks = json_array_size(json_object_get(it, "resourceLocks"));
		x->locks = calloc(x->nlocks + 1, sizeof(*x->locks));
		if (!x->locks)
			return ag_error_set(AG_ERROR, "out of memory");
		json_array_foreach(json_object_get(it, "resourceLocks"), j, d)
			x->locks[j] = json_string_value(d);
		s = json_object_get(it, "slots");
		x->slots = calloc(json_object_size(s) + 1, sizeof(*x->slots));
		if (!x->slots)
			return ag_error_set(AG_ERROR, "out of memory");
		json_object_foreach(s, k, d) {
			x->slots[x->nslots].name = k;
			x->slots[x->nslots++].n = (int)json_integer_value(d);
		}
	}
	r->count[AG_PENDING] = n;
	indeg = calloc(n + 1, sizeof(*indeg));
	seen = malloc((n + 1) * sizeof(*seen));
	if (!indeg || !seen) {
		free(indeg);
		free(seen);
		return ag_error_set(AG_ERROR, "out of memory");
	}
	for (i = 0; i < n; i++)
		seen[i] = (size_t)-1;
	json_array_foreach(items, i, it) {
		json_t *deps = json_object_get(it, "depends_on");
		struct ag_item *x = &r->items[i];
		x->deps = calloc(json_array_size(deps) + 1, sizeof(*x->deps));
		if (!x->deps)
			goto oom;
		json_array_foreach(deps, j, d) {
			size_t at;
			if (ag_map_get(&r->idx, json_string_value(d), &at) < 0) {
				free(indeg);
				free(seen);
				return ag_error_set(AG_EINVALID, "%s/plan.json: unknown dependency '%s'",
				    r->dir, json_string_value(d));
			}
			/* seen[at] == i: item i already depends on at */
			if (seen[at] != i) {
				seen[at] = i;
				x->deps[x->ndeps++] = at;
				r->items[at].nrdeps++;
				indeg[i]++;
			}
		}
	}
	for (i = 0; i < n; i++) {
		r->items[i].rdeps = calloc(r->items[i].nrdeps + 1, sizeof(size_t));
		if (!r->items[i].rdeps)
			goto oom;
		r->items[i].nrdeps = 0;
	}
	for (i = 0; i < n; i++)
		for (j = 0; j < r->items[i].ndeps; j++) {
			struct ag_item *d2 = &r->items[r->items[i].deps[j]];
			d2->rdeps[d2->nrdeps++] = i;
		}
	for (i = 0; i < n; i++)
		if (indeg[i] == 0)
			r->topo[tail++] = i;
	while (head < tail) {
		struct ag_item *x = &r->items[r->topo[head++]];
		for (j = 0; j < x->nrdeps; j++)
			if (--indeg[x->rdeps[j]] == 0)
				r->topo[tail++] = x->rdeps[j];
	}
	free(indeg);
	free(seen);
	if (tail != n)
		return ag_error_set(AG_EINVALID, "%s/plan.json: dependency cycle", r->dir);
	return 0;
oom:
	free(indeg);
	free(seen);
	return ag_error_set(AG_ERROR, "out of memory");
}

/*
 * Apply every whole line after r->log_size, checking the prev chain as it
 * goes; each line is also handed to cb when given. A torn last line (its
 * writer crashed, or is writing) is left for later.
 */
int
ag_run_follow(struct ag_run *r, void (*cb)(void *, const char *, size_t, const json_t *),
    void *arg)
{
	char path[AG_PATH_MAX];
	struct ag_buf b;
	struct stat st;
	size_t off = 0;
	ssize_t n;
	int fd, rc = 0;

	if ((rc = ag_path(path, sizeof(path), "%s/status.jsonl", r->dir)) < 0)
		return rc;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return ag_error_sys(AG_ERROR, "cannot open '%s'", path);
	if (fstat(fd, &st) < 0) {
		rc = ag_error_sys(AG_ERROR, "cannot stat '%s'", path);
		close(fd);
		return rc;
	}
	if (st.st_size <= r->log_size) {
		close(fd);
		return 0;
	}
	if ((size_t)st.st_size > AG_LOG_MAX) {
		close(fd);
		return ag_error_set(AG_EINVALID, "'%s' is larger than %zu bytes", path, AG_LOG_MAX);
	}
	ag_buf_init(&b, AG_LOG_MAX);
	if ((rc = ag_buf_grow(&b, (size_t)(st.st_size - r->log_size))) < 0) {
		close(fd);
		return rc;
	}
	n = pread(fd, b.ptr, (size_t)(st.st_size - r->log_size), r->log_size);
	close(fd);
	if (n < 0) {
		ag_buf_release(&b);
		return ag_error_sys(AG_ERROR, "cannot read '%s'", path);
	}
	b.len = (size_t)n;
	while (off < b.len) {
		char *nl = memchr(b.ptr + off, '\n', b.len - off);
		size_t len;
		json_t *ev;
		json_error_t jerr;
		const char *prev;

		if (!nl)
			break;
		len = (size_t)(nl - (b.ptr + off));
		ev = json_loadb(b.ptr + off, len, 0, &jerr);
		if (!ev) {
			rc = ag_error_set(AG_EINVALID, "%s: line %lld: invalid JSON: %s", path,
			    (long long)r->seq + 1, jerr.text);
			break;
		}
		prev = json_string_value(json_object_get(ev, "prev"));
		if (!prev || strcmp(prev, r->prev) != 0 ||
		    json_integer_value(json_object_get(ev, "seq")) != r->seq) {
			json_decref(ev);
			rc = ag_error_set(AG_EINVALID, "%s: line %lld: broken hash chain", path,
			    (long long)r->seq + 1);
			break;
		}
		ag_sha256_hex(r->prev, b.ptr + off, len);
		ag_run_apply(r, ev);
		r->seq++;
		if (cb)
			cb(arg, b.ptr + off, len, ev);
		json_decref(ev);
		off += len + 1;
		r->log_size += (int64_t)len + 1;
	}
	ag_buf_release(&b);
	return rc;
}

static int
replay(struct ag_run *r, int writable)
{
	char path[AG_PATH_MAX];
	struct stat st;
	int rc;

	if ((rc = ag_run_follow(r, NULL, NULL)) < 0)
		return rc;
	if (writable) {
		if ((rc = ag_path(path, sizeof(path), "%s/status.jsonl", r->dir)) < 0)
			return rc;
		r->log_fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
		if (r->log_fd < 0)
			return ag_error_sys(AG_ERROR, "cannot open '%s'", path);
		/* cut off the torn line of a crashed writer */
		if (fstat(r->log_fd, &st) == 0 && st.st_size > r->log_size &&
		    ftruncate(r->log_fd, (off_t)r->log_size) < 0)
			return ag_error_sys(AG_ERROR, "cannot truncate torn line of '%s'", path);
	}
	r->changed = 0;
	return 0;
}

int
ag_run_load(struct ag_run **out, const struct ag_conf *c, const char *id, int writable)
{
	char path[AG_PATH_MAX];
	struct ag_buf b = { 0 };
	struct ag_run *r;
	json_error_t jerr;
	int rc;

	*out = NULL;
	if (ag_id_check(id, strlen(id)) < 0)
		return AG_EINVALID;
	if (!(r = calloc(1, sizeof(*r))))
		return ag_error_set(AG_ERROR, "out of memory");
	r->log_fd = -1;
	r->id = strdup(id);
	if ((rc = ag_path(path, sizeof(path), "%s/runs/%s", c->dir, id)) < 0)
		goto fail;
	r->dir = strdup(path);
	if (!r->id || !r->dir) {
		rc = ag_error_set(AG_ERROR, "out of memory");
		goto fail;
	}
	if ((rc = ag_path(path, sizeof(path), "%s/plan.json", r->dir)) < 0)
		goto fail;
	if ((rc = ag_read_file(&b, path, (size_t)AG_PLAN_MAX * 2)) < 0) {
		if (rc == AG_ENOTFOUND)
			rc = ag_error_set(AG_ENOTFOUND, "unknown run '%s'", id);
		goto fail;
	}
	r->plan = json_loadb(b.ptr, b.len, 0, &jerr);
	ag_buf_release(&b);
	if (!r->plan) {
		rc = ag_error_set(AG_EINVALID, "%s:%d: invalid JSON: %s", path, jerr.line, jerr.text);
		goto fail;
	}
	r->queue = json_string_value(json_object_get(r->plan, "queue"));
	r->submitted_at = json_integer_value(json_object_get(r->plan, "submittedAt"));
	if (!r->queue) {
		rc = ag_error_set(AG_EINVALID, "%s: no queue", path);
		goto fail;
	}
	if ((rc = build_items(r, c)) < 0)
		goto fail;
	memset(r->prev, '0', 64);
	r->prev[64] = '\0';
	if (writable >= 0 && (rc = replay(r, writable)) < 0)
		goto fail;
	*out = r;
	return 0;
fail:
	ag_run_free(r);
	return rc;
}

void
ag_run_free(struct ag_run *r)
{
	size_t i;

	if (!r)
		return;
	if (r->log_fd >= 0)
		close(r->log_fd);
	for (i = 0; i < r->nitems && r->items; i++) {
		free(r->items[i].deps);
		free(r->items[i].rdeps);
		free(r->items[i].locks);
		free(r->items[i].slots);
		free(r->items[i].reason);
	}
	free(r->items);
	free(r->topo);
	ag_map_release(&r->idx);
	json_decref(r->plan);
	free(r->id);
	free(r->dir);
	free(r);
}

json_t *
ag_run_summary(const struct ag_run *r, int with_items)
{
	json_t *o = json_object(), *counts = json_object(), *items;
	size_t i;

	json_object_set_new(o, "run", json_string(r->id));
	json_object_set_new(o, "queue", json_string(r->queue));
	json_object_set_new(o, "state", json_string(r->completed ? "completed" :
	    r->cancelled ? "cancelling" : r->paused ? "paused" : "active"));
	if (r->completed)
		json_object_set_new(o, "outcome", json_string(r->outcome));
	json_object_set_new(o, "paused", json_boolean(r->paused));
	json_object_set_new(o, "cancelled", json_boolean(r->cancelled));
	json_object_set_new(o, "seq", json_integer(r->seq));
	json_object_set_new(o, "head", json_string(r->prev));
	json_object_set_new(o, "items", json_integer((json_int_t)r->nitems));
	for (i = 0; i < AG_NSTATUS; i++)
		json_object_set_new(counts, ag_status_names[i], json_integer((json_int_t)r->count[i]));
	json_object_set_new(o, "counts", counts);
	if (!with_items)
		return o;
	items = json_array();
	for (i = 0; i < r->nitems; i++) {
		const struct ag_item *it = &r->items[i];
		json_t *x = json_object();
		json_object_set_new(x, "id", json_string(it->id));
		json_object_set_new(x, "status", json_string(ag_status_names[it->status]));
		json_object_set_new(x, "attempts", json_integer(it->attempt));
		json_object_set_new(x, "priority", json_integer(it->priority));
		if (it->reason)
			json_object_set_new(x, "reason", json_string(it->reason));
		json_array_append_new(items, x);
	}
	json_object_set_new(o, "itemStates", items);
	return o;
}

int
ag_run_snapshot(struct ag_run *r)
{
	char path[AG_PATH_MAX];
	json_t *o;
	char *s;
	int rc;

	if ((rc = ag_path(path, sizeof(path), "%s/state.json", r->dir)) < 0)
		return rc;
	o = ag_run_summary(r, 1);
	s = json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!s)
		return ag_error_set(AG_ERROR, "out of memory");
	rc = ag_write_replace(path, s, strlen(s), 0644);
	free(s);
	return rc;
}
