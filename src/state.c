/*
 * A run's state is a fold over its status.jsonl. ag_run_apply() is the
 * only place that changes it, both when replaying the log and right after
 * a tick appends a line, so the state in memory is always what a replay
 * of the log would give.
 */
#include "agora.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
check_push(struct ag_run *r, size_t i)
{
	if (r->check_all)
		return;
	if (r->ncheck == r->check_cap) {
		size_t ncap = r->check_cap ? 2 * r->check_cap : 64;
		uint32_t *nv = realloc(r->check, ncap * sizeof(*nv));
		if (!nv) {
			/* the next advance looks at every item instead */
			free(r->check);
			r->check = NULL;
			r->ncheck = r->check_cap = 0;
			r->check_all = 1;
			return;
		}
		r->check = nv;
		r->check_cap = ncap;
	}
	r->check[r->ncheck++] = (uint32_t)i;
}

/* The list an item of this status is kept in, or NULL. */
static uint32_t *
list_of(struct ag_run *r, enum ag_status s, size_t **len)
{
	if (s == AG_READY) {
		*len = &r->nready;
		return r->ready;
	}
	if (s == AG_RUNNING) {
		*len = &r->nrunning;
		return r->running;
	}
	return NULL;
}

static void
set_status(struct ag_run *r, struct ag_item *it, enum ag_status s)
{
	size_t i = (size_t)(it - r->items), *len, k;
	uint32_t *l;

	if ((l = list_of(r, it->status, &len))) {
		uint32_t last = l[--*len];
		l[it->pos] = last;
		r->items[last].pos = it->pos;
	}
	r->count[it->status]--;
	it->status = s;
	r->count[s]++;
	if ((l = list_of(r, s, &len))) {
		it->pos = (uint32_t)*len;
		l[(*len)++] = (uint32_t)i;
	}
	if (ag_status_terminal(s)) {
		for (k = 0; k < it->nrdeps; k++)
			check_push(r, it->rdeps[k]);
	} else if (s == AG_PENDING) {
		check_push(r, i);
	}
}

void
ag_run_set_status(struct ag_run *r, size_t item, enum ag_status s)
{
	set_status(r, &r->items[item], s);
}

int
ag_run_index(struct ag_run *r)
{
	size_t i;

	free(r->ready);
	free(r->running);
	free(r->scratch);
	r->ready = calloc(r->nitems + 1, sizeof(*r->ready));
	r->running = calloc(r->nitems + 1, sizeof(*r->running));
	r->scratch = calloc(r->nitems + 1, 1);
	if (!r->ready || !r->running || !r->scratch)
		return ag_error_set(AG_ERROR, "out of memory");
	r->nready = r->nrunning = 0;
	for (i = 0; i < r->nitems; i++) {
		struct ag_item *it = &r->items[i];
		if (it->status == AG_READY) {
			it->pos = (uint32_t)r->nready;
			r->ready[r->nready++] = (uint32_t)i;
		} else if (it->status == AG_RUNNING) {
			it->pos = (uint32_t)r->nrunning;
			r->running[r->nrunning++] = (uint32_t)i;
		}
		it->topo_pos = 0;
	}
	for (i = 0; i < r->nitems; i++)
		r->items[r->topo[i]].topo_pos = (uint32_t)i;
	r->ncheck = 0;
	r->check_all = 1;
	return 0;
}

static void
set_reason(struct ag_item *it, const json_t *ev)
{
	const char *s = json_string_value(json_object_get(ev, "reason"));

	free(it->reason);
	it->reason = s ? strdup(s) : NULL;
}

int
ag_item_staged(const struct ag_run *r, const struct ag_item *it)
{
	const struct ag_item *p;

	if (!it->after || it->status != AG_RUNNING)
		return 0;
	p = &r->items[it->after - 1];
	return p->status == AG_RUNNING && p->attempt == it->after_attempt;
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
	free(r->items[i].reason);
	r->items[i].reason = NULL;
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
			it->cancel_req = r->any_cancel_req = 1;
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
		r->completed_seq = json_integer_value(json_object_get(ev, "seq"));
		snprintf(r->completed_at, sizeof(r->completed_at), "%s",
		    json_string_value(json_object_get(ev, "at")) ?
		    json_string_value(json_object_get(ev, "at")) : "");
		snprintf(r->outcome, sizeof(r->outcome), "%s", o ? o : "");
	} else if (strcmp(e, "run.sealed") == 0) {
		r->sealed = 1;
	} else if (strcmp(e, "control.applied") == 0) {
		apply_control(r, ev, it);
	} else if (!it) {
		return;
	} else if (strcmp(e, "item.ready") == 0) {
		set_status(r, it, AG_READY);
		it->ready_at = ev_time(ev, "at");
	} else if (strcmp(e, "item.running") == 0) {
		const char *after = json_string_value(json_object_get(ev, "after"));
		size_t p;
		set_status(r, it, AG_RUNNING);
		it->attempt = (int)json_integer_value(json_object_get(ev, "attempt"));
		it->drop_req = 0;
		/* staged: it takes the place of that attempt when it ends */
		it->after = after && ag_map_get(&r->idx, after, &p) == 0 && &r->items[p] != it ?
		    (uint32_t)p + 1 : 0;
		it->after_attempt = (int)json_integer_value(json_object_get(ev, "afterAttempt"));
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
		json_t *ref = json_object_get(ev, "resultRef"), *outs = json_object_get(ev, "outputs");
		set_status(r, it, AG_DONE);
		set_reason(it, ev);
		/* what a needs of a later item resolves to */
		free(it->artifacts);
		it->artifacts = NULL;
		if (ref || outs) {
			json_t *a = json_object();
			if (ref)
				json_object_set(a, "resultRef", ref);
			if (outs)
				json_object_set(a, "outputs", outs);
			it->artifacts = json_dumps(a, JSON_COMPACT);
			json_decref(a);
		}
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

/*
 * The strings of a loaded run live in one arena, freed with the run: a
 * 100 000-item run is a few hundred thousand small strings.
 */
struct ag_arena {
	struct ag_arena *next;
	size_t used, cap;
	char data[];
};

static char *
arena_strdup(struct ag_run *r, const char *s)
{
	size_t n = strlen(s) + 1;
	struct ag_arena *a = r->arena;

	if (!a || a->cap - a->used < n) {
		size_t cap = n > 65536 ? n : 65536;
		if (!(a = malloc(sizeof(*a) + cap)))
			return NULL;
		a->next = r->arena;
		a->used = 0;
		a->cap = cap;
		r->arena = a;
	}
	memcpy(a->data + a->used, s, n);
	a->used += n;
	return a->data + a->used - n;
}

/* Dependency names, kept only until every id is known. */
struct pending_deps {
	char **names;
	size_t n;
};

/*
 * A dispatch item takes a unit of each of its subagent's slots, unless it
 * names that slot itself, and the subagent's timeout unless it gives one.
 * A subagent gone from agora.conf changes nothing here: the item fails
 * when it fires.
 */
static int
add_subagent(struct ag_run *r, const struct ag_conf *c, struct ag_item *x, const json_t *it)
{
	const struct ag_executor *ex = ag_conf_executor(c, x->executor);
	const char *name = json_string_value(json_object_get(json_object_get(it, "inputs"),
	    "subagent"));
	const struct ag_subagent *a;
	struct ag_item_slot *ns;
	size_t k, m;

	if (!ex || strcmp(ex->kind, "dispatch") != 0 || !name || !(a = ag_conf_subagent(c, name)))
		return 0;
	if (!x->timeout_ms)
		x->timeout_ms = a->timeout_ms;
	for (k = 0; k < a->nslots; k++) {
		for (m = 0; m < x->nslots; m++)
			if (strcmp(x->slots[m].name, a->slots[k]) == 0)
				break;
		if (m < x->nslots || !ag_conf_slot(c, a->slots[k]))
			continue;
		if (!(ns = realloc(x->slots, (x->nslots + 2) * sizeof(*ns))))
			return ag_error_set(AG_ERROR, "out of memory");
		x->slots = ns;
		if (!(ns[x->nslots].name = arena_strdup(r, a->slots[k])))
			return ag_error_set(AG_ERROR, "out of memory");
		ns[x->nslots++].n = 1;
	}
	return 0;
}

static int
add_item(struct ag_run *r, const struct ag_conf *c, const json_t *it, int64_t off,
    size_t len, struct pending_deps *pd)
{
	struct ag_item *x = &r->items[r->nitems];
	json_int_t run_max = json_integer_value(json_object_get(r->plan, "maxAttempts"));
	json_t *t, *d, *s = json_object_get(it, "slots"), *deps = json_object_get(it, "depends_on");
	const char *k;
	size_t j;
	int rc;

	if (!json_is_string(json_object_get(it, "id")) ||
	    !(x->id = arena_strdup(r, json_string_value(json_object_get(it, "id")))))
		return ag_error_set(AG_EINVALID, "%s/plan.json: bad item %zu", r->dir, r->nitems);
	/* it names the item's directory: a plan.json written by hand is held to the id syntax too */
	if (ag_id_check(x->id, strlen(x->id)) < 0) {
		char why[300];
		snprintf(why, sizeof(why), "%s", ag_error_msg());
		return ag_error_set(AG_EINVALID, "%s/plan.json: item %zu: %s", r->dir, r->nitems, why);
	}
	if (ag_map_put(&r->idx, x->id, r->nitems) < 0)
		return ag_error_set(AG_EINVALID, "%s/plan.json: duplicate item '%s'", r->dir, x->id);
	x->executor = arena_strdup(r, json_is_string(json_object_get(it, "executor")) ?
	    json_string_value(json_object_get(it, "executor")) : "");
	x->spec_off = off;
	x->spec_len = len;
	x->priority = (int)json_integer_value(json_object_get(it, "priority"));
	x->max_attempts = (int)json_integer_value(json_object_get(it, "maxAttempts"));
	if (!x->max_attempts)
		x->max_attempts = run_max ? (int)run_max : c->max_attempts;
	/* as validation has it: a plan.json written by hand may hold any number */
	t = json_object_get(it, "timeout");
	if (t && (!json_is_number(t) || !(json_number_value(t) > 0) ||
	    json_number_value(t) > AG_TIMEOUT_MAX))
		return ag_error_set(AG_EINVALID, "%s/plan.json: item '%s': bad timeout", r->dir,
		    x->id);
	if (t)
		x->timeout_ms = (int64_t)(json_number_value(t) * 1000);
	x->nlocks = json_array_size(json_object_get(it, "resourceLocks"));
	if (!(x->locks = calloc(x->nlocks + 1, sizeof(*x->locks))))
		return ag_error_set(AG_ERROR, "out of memory");
	json_array_foreach(json_object_get(it, "resourceLocks"), j, d)
		if (!(x->locks[j] = arena_strdup(r, json_is_string(d) ? json_string_value(d) : "")))
			return ag_error_set(AG_ERROR, "out of memory");
	if (json_object_size(s) &&
	    !(x->slots = calloc(json_object_size(s) + 1, sizeof(*x->slots))))
		return ag_error_set(AG_ERROR, "out of memory");
	json_object_foreach(s, k, d) {
		x->slots[x->nslots].name = arena_strdup(r, k);
		x->slots[x->nslots++].n = (int)json_integer_value(d);
	}
	if ((rc = add_subagent(r, c, x, it)) < 0)
		return rc;
	pd->n = json_array_size(deps);
	if (pd->n && !(pd->names = calloc(pd->n, sizeof(*pd->names))))
		return ag_error_set(AG_ERROR, "out of memory");
	json_array_foreach(deps, j, d)
		if (!(pd->names[j] = strdup(json_is_string(d) ? json_string_value(d) : "")))
			return ag_error_set(AG_ERROR, "out of memory");
	r->nitems++;
	return 0;
}

/* Resolve the dependency names, find the dependents and a topological order. */
static int
link_items(struct ag_run *r, struct pending_deps *pd)
{
	size_t n = r->nitems, i, j, *indeg = NULL, *seen = NULL, head = 0, tail = 0;
	int rc = 0;

	r->count[AG_PENDING] = n;
	indeg = calloc(n + 1, sizeof(*indeg));
	seen = malloc((n + 1) * sizeof(*seen));
	if (!indeg || !seen) {
		rc = ag_error_set(AG_ERROR, "out of memory");
		goto out;
	}
	for (i = 0; i < n; i++)
		seen[i] = (size_t)-1;
	for (i = 0; i < n; i++) {
		struct ag_item *x = &r->items[i];
		if (!(x->deps = calloc(pd[i].n + 1, sizeof(*x->deps)))) {
			rc = ag_error_set(AG_ERROR, "out of memory");
			goto out;
		}
		for (j = 0; j < pd[i].n; j++) {
			size_t at;
			if (ag_map_get(&r->idx, pd[i].names[j], &at) < 0) {
				rc = ag_error_set(AG_EINVALID, "%s/plan.json: unknown dependency '%s'",
				    r->dir, ag_quote(pd[i].names[j], strlen(pd[i].names[j])));
				goto out;
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
		if (!r->items[i].rdeps) {
			rc = ag_error_set(AG_ERROR, "out of memory");
			goto out;
		}
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
		struct ag_item *x = &r->items[r->topo[head]];
		x->topo_pos = (uint32_t)head++;
		for (j = 0; j < x->nrdeps; j++)
			if (--indeg[x->rdeps[j]] == 0)
				r->topo[tail++] = x->rdeps[j];
	}
	if (tail != n)
		rc = ag_error_set(AG_EINVALID, "%s/plan.json: dependency cycle", r->dir);
out:
	free(indeg);
	free(seen);
	return rc;
}

static int
alloc_items(struct ag_run *r, size_t n, struct pending_deps **pd)
{
	if (n > UINT32_MAX - 1)
		return ag_error_set(AG_EINVALID, "%s: too many items", r->dir);
	r->items = calloc(n + 1, sizeof(*r->items));
	r->topo = calloc(n + 1, sizeof(*r->topo));
	r->ready = calloc(n + 1, sizeof(*r->ready));
	r->running = calloc(n + 1, sizeof(*r->running));
	r->scratch = calloc(n + 1, 1);
	*pd = calloc(n + 1, sizeof(**pd));
	if (!r->items || !r->topo || !r->ready || !r->running || !r->scratch || !*pd ||
	    ag_map_init(&r->idx, n) < 0)
		return ag_error_set(AG_ERROR, "out of memory");
	r->check_all = 1;	/* a loaded run is looked at whole once */
	return 0;
}

static void
free_pending(struct pending_deps *pd, size_t n)
{
	size_t i, j;

	if (!pd)
		return;
	for (i = 0; i < n; i++) {
		for (j = 0; j < pd[i].n; j++)
			free(pd[i].names ? pd[i].names[j] : NULL);
		free(pd[i].names);
	}
	free(pd);
}

static int
set_header(struct ag_run *r, const char *path)
{
	const char *q = json_string_value(json_object_get(r->plan, "queue"));

	if (!q || !(r->queue = arena_strdup(r, q)))
		return ag_error_set(AG_EINVALID, "%s: no queue", path);
	r->submitted_at = json_integer_value(json_object_get(r->plan, "submittedAt"));
	json_object_del(r->plan, "items");
	return 0;
}

/*
 * plan.json as reconcile writes it: a first line holding the run's own
 * fields up to "items":[, then one item per line. Each line is parsed on
 * its own and dropped, so memory holds only what scheduling needs; the
 * item's inputs are read again from its line when it fires.
 */
static int
load_lines(struct ag_run *r, const struct ag_conf *c, FILE *f, const char *path, int *layout)
{
	static const char tail[] = "\"items\":[";
	char *line = NULL;
	size_t cap = 0, n = 0, count = 0;
	struct pending_deps *pd = NULL;
	ssize_t len;
	int64_t off = 0;
	json_t *it;
	int rc = 0;

	*layout = 0;
	if ((len = getline(&line, &cap, f)) < (ssize_t)sizeof(tail) || line[len - 1] != '\n' ||
	    memcmp(line + len - sizeof(tail), tail, sizeof(tail) - 1) != 0 || line[0] != '{') {
		free(line);
		return 0;
	}
	/* the header is the line with its items cut off: {...,"items":[ -> {...} */
	line[len - sizeof(tail) - 1] = '}';
	r->plan = json_loadb(line, (size_t)len - sizeof(tail), 0, NULL);
	off = len;
	if (!json_is_object(r->plan) || !json_is_integer(json_object_get(r->plan, "itemCount"))) {
		free(line);
		json_decref(r->plan);
		r->plan = NULL;
		return 0;
	}
	*layout = 1;
	count = (size_t)json_integer_value(json_object_get(r->plan, "itemCount"));
	if (count > AG_ITEMS_MAX) {
		rc = ag_error_set(AG_EINVALID, "%s: %zu items", path, count);
		goto out;
	}
	if ((rc = set_header(r, path)) < 0 || (rc = alloc_items(r, count, &pd)) < 0)
		goto out;
	while ((len = getline(&line, &cap, f)) > 0) {
		size_t body = (size_t)len;
		if (body >= 2 && line[0] == ']')
			break;
		while (body > 0 && (line[body - 1] == '\n' || line[body - 1] == ','))
			body--;
		if (n >= count || !(it = json_loadb(line, body, 0, NULL))) {
			rc = ag_error_set(AG_EINVALID, "%s: bad item line %zu", path, n + 2);
			goto out;
		}
		rc = add_item(r, c, it, off, body, &pd[n]);
		json_decref(it);
		if (rc < 0)
			goto out;
		n++;
		off += len;
	}
	if (n != count) {
		rc = ag_error_set(AG_EINVALID, "%s: %zu items, expected %zu", path, n, count);
		goto out;
	}
	rc = link_items(r, pd);
out:
	free_pending(pd, count);
	free(line);
	return rc;
}

/* Any other plan.json (written by hand, or by an older agora): parse it whole. */
static int
load_whole(struct ag_run *r, const struct ag_conf *c, const char *path)
{
	struct ag_buf b;
	json_error_t jerr;
	json_t *items, *it;
	struct pending_deps *pd = NULL;
	size_t i, n = 0;
	int rc;

	if ((rc = ag_read_file(&b, path, (size_t)AG_PLAN_MAX * 2)) < 0)
		return rc;
	r->full = json_loadb(b.ptr, b.len, 0, &jerr);
	ag_buf_release(&b);
	if (!r->full)
		return ag_error_set(AG_EINVALID, "%s:%d: invalid JSON: %s", path, jerr.line,
		    ag_json_error_text(&jerr));
	r->plan = json_deep_copy(r->full);
	items = json_object_get(r->full, "items");
	n = json_array_size(items);
	if ((rc = set_header(r, path)) < 0 || (rc = alloc_items(r, n, &pd)) < 0)
		goto out;
	json_array_foreach(items, i, it)
		if ((rc = add_item(r, c, it, -1, i, &pd[i])) < 0)
			goto out;
	rc = link_items(r, pd);
out:
	free_pending(pd, n);
	return rc;
}

static int
load_plan(struct ag_run *r, const struct ag_conf *c, const char *path)
{
	FILE *f = fopen(path, "re");
	int rc, layout;

	if (!f) {
		if (errno == ENOENT)
			return ag_error_set(AG_ENOTFOUND, "unknown run '%s'", r->id);
		return ag_error_sys(AG_ERROR, "cannot read '%s'", path);
	}
	rc = load_lines(r, c, f, path, &layout);
	fclose(f);
	if (rc < 0 || layout)
		return rc;
	return load_whole(r, c, path);
}

int
ag_run_item_spec(json_t **out, const struct ag_run *r, size_t i)
{
	const struct ag_item *it = &r->items[i];
	char path[AG_PATH_MAX];
	char *buf = NULL;
	ssize_t n;
	int fd, rc = 0;

	*out = NULL;
	if (it->spec_off < 0) {
		*out = json_incref(json_array_get(json_object_get(r->full, "items"), it->spec_len));
		return *out ? 0 : ag_error_set(AG_ERROR, "item '%s' has no spec", it->id);
	}
	if ((rc = ag_path(path, sizeof(path), "%s/plan.json", r->dir)) < 0)
		return rc;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return ag_error_sys(AG_ERROR, "cannot read '%s'", path);
	if (!(buf = malloc(it->spec_len + 1))) {
		close(fd);
		return ag_error_set(AG_ERROR, "out of memory");
	}
	n = pread(fd, buf, it->spec_len, it->spec_off);
	close(fd);
	if (n != (ssize_t)it->spec_len || !(*out = json_loadb(buf, it->spec_len, 0, NULL)))
		rc = ag_error_set(AG_EINVALID, "%s: cannot read item '%s' again", path, it->id);
	free(buf);
	return rc;
}

char *
ag_json_line(const json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER), *line;
	size_t n;

	if (!s)
		return NULL;
	n = strlen(s);
	if (!(line = realloc(s, n + 2))) {
		free(s);
		return NULL;
	}
	line[n] = '\n';
	line[n + 1] = '\0';
	return line;
}

int
ag_plan_save(const char *path, const struct ag_plan *p, int count, int mode)
{
	return ag_plan_save_sum(path, p, count, mode, NULL);
}

int
ag_plan_save_sum(const char *path, const struct ag_plan *p, int count, int mode, char sha[65])
{
	json_t *head = json_copy(p->head);
	struct iovec parts[4];
	char *s = NULL;
	size_t len;
	int rc;

	if (!head || (count && json_object_set_new(head, "itemCount",
	    json_integer((json_int_t)p->nitems)) < 0) ||
	    !(s = json_dumps(head, JSON_COMPACT | JSON_PRESERVE_ORDER))) {
		json_decref(head);
		return ag_error_set(AG_ERROR, "out of memory");
	}
	json_decref(head);
	len = strlen(s);
	if (p->nitems == 0 || p->items.len < 2 || len < 2) {
		free(s);
		return ag_error_set(AG_EINVALID, "'%s': a plan with no items", path);
	}
	/* {"id":...} -> {"id":...,"items":[ then the items, the last without its comma */
	parts[0].iov_base = s;
	parts[0].iov_len = len - 1;
	parts[1].iov_base = len > 2 ? ",\"items\":[\n" : "\"items\":[\n";
	parts[1].iov_len = strlen(parts[1].iov_base);
	parts[2].iov_base = p->items.ptr;
	parts[2].iov_len = p->items.len - 2;
	parts[3].iov_base = "\n]}\n";
	parts[3].iov_len = 4;
	if (sha && (rc = ag_sha256_hex_parts(sha, parts, 4)) < 0) {
		free(s);
		return rc;
	}
	rc = ag_create_excl_parts(path, parts, 4, mode);
	free(s);
	return rc;
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
	/*
	 * A chunk at a time, so a long log (300 000 lines for a 100 000-item
	 * run) never sits in memory whole. A chunk holds at least one line.
	 */
	ag_buf_init(&b, AG_FOLLOW_CHUNK);
	if ((rc = ag_buf_grow(&b, AG_FOLLOW_CHUNK)) < 0) {
		close(fd);
		return rc;
	}
	while (rc == 0 && r->log_size < st.st_size) {
		size_t want = (size_t)(st.st_size - r->log_size), off = 0;
		if (want > AG_FOLLOW_CHUNK)
			want = AG_FOLLOW_CHUNK;
		n = pread(fd, b.ptr, want, r->log_size);
		if (n <= 0) {
			if (n < 0)
				rc = ag_error_sys(AG_ERROR, "cannot read '%s'", path);
			break;
		}
		b.len = (size_t)n;
		while (off < b.len) {
			char *nl = memchr(b.ptr + off, '\n', b.len - off);
			size_t len;
			json_t *ev;
			json_error_t jerr;
			const char *prev;
			const json_t *att;

			if (!nl)
				break;
			len = (size_t)(nl - (b.ptr + off));
			ev = json_loadb(b.ptr + off, len, 0, &jerr);
			if (!ev) {
				rc = ag_error_set(AG_EINVALID, "%s: line %lld: invalid JSON: %s", path,
				    (long long)r->seq + 1, ag_json_error_text(&jerr));
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
			/* the next attempt is numbered after this one: it must be an int and have one */
			att = json_object_get(ev, "attempt");
			if (att && (!json_is_integer(att) || json_integer_value(att) < 1 ||
			    json_integer_value(att) >= INT_MAX)) {
				json_decref(ev);
				rc = ag_error_set(AG_EINVALID, "%s: line %lld: bad attempt number", path,
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
		if (rc == 0 && off == 0) {
			/* no whole line in this chunk: a torn tail, or a line too long */
			if (b.len == AG_FOLLOW_CHUNK)
				rc = ag_error_set(AG_EINVALID, "%s: line %lld: longer than %d bytes",
				    path, (long long)r->seq + 1, AG_LINE_MAX);
			break;
		}
	}
	close(fd);
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
	struct ag_run *r;
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
	if ((rc = ag_path(path, sizeof(path), "%s/plan.json", r->dir)) < 0 ||
	    (rc = load_plan(r, c, path)) < 0)
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
		free(r->items[i].artifacts);
	}
	free(r->items);
	free(r->topo);
	free(r->ready);
	free(r->running);
	free(r->check);
	free(r->scratch);
	ag_map_release(&r->idx);
	json_decref(r->plan);
	json_decref(r->full);
	while (r->arena) {
		struct ag_arena *next = r->arena->next;
		free(r->arena);
		r->arena = next;
	}
	free(r->id);
	free(r->dir);
	free(r);
}

static json_t *
item_state(const struct ag_item *it)
{
	json_t *x = json_object();

	json_object_set_new(x, "id", json_string(it->id));
	json_object_set_new(x, "status", json_string(ag_status_names[it->status]));
	json_object_set_new(x, "attempts", json_integer(it->attempt));
	json_object_set_new(x, "priority", json_integer(it->priority));
	if (it->reason)
		json_object_set_new(x, "reason", json_string(it->reason));
	return x;
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
	for (i = 0; i < r->nitems; i++)
		json_array_append_new(items, item_state(&r->items[i]));
	json_object_set_new(o, "itemStates", items);
	return o;
}

/*
 * state.json: the summary, then one line per item. It is written item by
 * item rather than built as one JSON tree, which for a 100 000-item run
 * would cost more memory than the whole scheduler.
 */
int
ag_run_snapshot(struct ag_run *r)
{
	char path[AG_PATH_MAX];
	struct ag_buf b;
	json_t *o;
	char *s;
	size_t i, len;
	int rc;

	if ((rc = ag_path(path, sizeof(path), "%s/state.json", r->dir)) < 0)
		return rc;
	o = ag_run_summary(r, 0);
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!s)
		return ag_error_set(AG_ERROR, "out of memory");
	ag_buf_init(&b, AG_LOG_MAX);
	len = strlen(s);
	rc = ag_buf_put(&b, s, len - 1);
	free(s);
	if (rc == 0)
		rc = ag_buf_puts(&b, ",\"itemStates\":[\n");
	for (i = 0; i < r->nitems && rc == 0; i++) {
		json_t *x = item_state(&r->items[i]);
		s = json_dumps(x, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_decref(x);
		if (!s) {
			rc = ag_error_set(AG_ERROR, "out of memory");
			break;
		}
		rc = ag_buf_printf(&b, "%s%s\n", s, i + 1 < r->nitems ? "," : "");
		free(s);
	}
	if (rc == 0)
		rc = ag_buf_puts(&b, "]}\n");
	if (rc == 0)
		rc = ag_write_replace(path, b.ptr, b.len, 0644);
	ag_buf_release(&b);
	return rc;
}
