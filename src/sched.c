/*
 * The scheduler's decisions, as a pure function of the loaded state: no
 * I/O, no clock but the one passed in. reconcile carries them out;
 * agora-status asks the same questions to explain why an item waits.
 */
#include "agora.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "banned.h"

void
ag_actions_release(struct ag_actions *a)
{
	free(a->v);
	a->v = NULL;
	a->len = a->cap = 0;
}

static struct ag_action *
push(struct ag_actions *a, enum ag_action_kind kind, const struct ag_run *r, size_t item)
{
	struct ag_action *x;

	if (a->len == a->cap) {
		size_t ncap = a->cap ? a->cap * 2 : 64;
		struct ag_action *nv = realloc(a->v, ncap * sizeof(*nv));
		if (!nv)
			return NULL;
		a->v = nv;
		a->cap = ncap;
	}
	x = &a->v[a->len++];
	memset(x, 0, sizeof(*x));
	x->kind = kind;
	x->run = (struct ag_run *)r;
	x->item = item;
	return x;
}

/*
 * Walk the items in dependency order with a scratch copy of the statuses,
 * so that a skip cascades through the whole lineage in one call.
 */
int
ag_sched_advance(struct ag_actions *out, const struct ag_run *r)
{
	unsigned char *st;
	size_t t, j;

	if (r->count[AG_PENDING] == 0)
		return 0;
	st = malloc(r->nitems + 1);
	if (!st)
		return ag_error_set(AG_ERROR, "out of memory");
	for (t = 0; t < r->nitems; t++)
		st[t] = (unsigned char)r->items[t].status;
	for (t = 0; t < r->nitems; t++) {
		size_t i = r->topo[t];
		const struct ag_item *it = &r->items[i];
		size_t bad = (size_t)-1;
		int all_done = 1;
		struct ag_action *a;

		if (st[i] != AG_PENDING || it->cancel_req || r->want_cancel)
			continue;
		for (j = 0; j < it->ndeps; j++) {
			unsigned char ds = st[it->deps[j]];
			if (ds == AG_FAILED || ds == AG_SKIPPED || ds == AG_CANCELLED) {
				bad = it->deps[j];
				break;
			}
			if (ds != AG_DONE)
				all_done = 0;
		}
		if (bad != (size_t)-1) {
			if (!(a = push(out, AG_ACT_SKIP, r, i)))
				goto oom;
			snprintf(a->reason, sizeof(a->reason), "dependency '%s' %s",
			    r->items[bad].id, ag_status_names[st[bad]]);
			snprintf(a->blocked_by, sizeof(a->blocked_by), "%s", r->items[bad].id);
			st[i] = AG_SKIPPED;
		} else if (all_done) {
			if (!push(out, AG_ACT_READY, r, i))
				goto oom;
			st[i] = AG_READY;
		}
	}
	free(st);
	return 0;
oom:
	free(st);
	return ag_error_set(AG_ERROR, "out of memory");
}

void
ag_sched_pending_reason(char *out, size_t size, const struct ag_run *r, size_t item)
{
	const struct ag_item *it = &r->items[item];
	size_t j, waiting = 0, first = 0;

	for (j = 0; j < it->ndeps; j++)
		if (r->items[it->deps[j]].status != AG_DONE) {
			if (!waiting++)
				first = it->deps[j];
		}
	if (!waiting)
		snprintf(out, size, "dependencies done");
	else if (waiting == 1)
		snprintf(out, size, "dependency '%s' (%s)", r->items[first].id,
		    ag_status_names[r->items[first].status]);
	else
		snprintf(out, size, "dependency '%s' (%s) and %zu more", r->items[first].id,
		    ag_status_names[r->items[first].status], waiting - 1);
}

struct cand {
	struct ag_run *run;
	size_t item;
};

static int
cand_cmp(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	const struct ag_item *ix = &x->run->items[x->item], *iy = &y->run->items[y->item];
	int c;

	if (ix->priority != iy->priority)
		return ix->priority > iy->priority ? -1 : 1;
	if (x->run->submitted_at != y->run->submitted_at)
		return x->run->submitted_at < y->run->submitted_at ? -1 : 1;
	if (x->run != y->run && (c = strcmp(x->run->id, y->run->id)) != 0)
		return c;
	return x->item < y->item ? -1 : x->item > y->item;
}

/* Who holds a lock key, or has queued for it first this tick. */
struct holder {
	const char *key;
	const struct ag_run *run;
	size_t item;
	int reserved;
};

struct holders {
	struct ag_map map;
	struct holder *v;
	size_t len, cap;
};

static int
hold(struct holders *h, const char *key, const struct ag_run *r, size_t item, int reserved)
{
	size_t at;

	if (ag_map_get(&h->map, key, &at) == 0)
		return 0;
	if (h->len == h->cap) {
		size_t ncap = h->cap ? h->cap * 2 : 64;
		struct holder *nv = realloc(h->v, ncap * sizeof(*nv));
		if (!nv)
			return ag_error_set(AG_ERROR, "out of memory");
		h->v = nv;
		h->cap = ncap;
	}
	h->v[h->len].key = key;
	h->v[h->len].run = r;
	h->v[h->len].item = item;
	h->v[h->len].reserved = reserved;
	if (ag_map_put(&h->map, key, h->len) < 0)
		return AG_ERROR;
	h->len++;
	return 0;
}

static void
who(char *out, size_t size, const struct holder *h, const struct ag_run *self)
{
	if (h->run == self)
		snprintf(out, size, "%s", h->run->items[h->item].id);
	else
		snprintf(out, size, "%s/%s", h->run->id, h->run->items[h->item].id);
}

struct usage {
	const char *name;
	int used;
};

static struct usage *
use_of(struct usage *u, size_t n, const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(u[i].name, name) == 0)
			return &u[i];
	return NULL;
}

int
ag_sched_pick(struct ag_actions *out, struct ag_run **runs, size_t nruns,
    const struct ag_conf *c, int64_t now)
{
	struct usage *qu = NULL, *su = NULL;
	struct holders h = { 0 };
	struct cand *cands = NULL;
	size_t ncands = 0, i, j, k;
	int running = 0, rc = 0;

	qu = calloc(c->nqueues + 1, sizeof(*qu));
	su = calloc(c->nslots + 1, sizeof(*su));
	if (!qu || !su || ag_map_init(&h.map, 64) < 0) {
		rc = ag_error_set(AG_ERROR, "out of memory");
		goto out;
	}
	for (i = 0; i < c->nqueues; i++)
		qu[i].name = c->queues[i].name;
	for (i = 0; i < c->nslots; i++)
		su[i].name = c->slots[i].name;

	for (i = 0; i < nruns; i++) {
		struct ag_run *r = runs[i];
		struct usage *q = use_of(qu, c->nqueues, r->queue);
		ncands += r->count[AG_READY];
		if (!r->count[AG_RUNNING])
			continue;
		for (j = 0; j < r->nitems; j++) {
			struct ag_item *it = &r->items[j];
			if (it->status != AG_RUNNING)
				continue;
			running++;
			if (q)
				q->used++;
			for (k = 0; k < it->nslots; k++) {
				struct usage *s = use_of(su, c->nslots, it->slots[k].name);
				if (s)
					s->used += it->slots[k].n;
			}
			for (k = 0; k < it->nlocks; k++)
				if ((rc = hold(&h, it->locks[k], r, j, 0)) < 0)
					goto out;
		}
	}
	if (!ncands)
		goto out;
	cands = calloc(ncands, sizeof(*cands));
	if (!cands) {
		rc = ag_error_set(AG_ERROR, "out of memory");
		goto out;
	}
	ncands = 0;
	for (i = 0; i < nruns; i++) {
		struct ag_run *r = runs[i];
		if (!r->count[AG_READY])
			continue;
		for (j = 0; j < r->nitems; j++)
			if (r->items[j].status == AG_READY) {
				cands[ncands].run = r;
				cands[ncands++].item = j;
			}
	}
	qsort(cands, ncands, sizeof(*cands), cand_cmp);

	for (i = 0; i < ncands; i++) {
		struct ag_run *r = cands[i].run;
		struct ag_item *it = &r->items[cands[i].item];
		const struct ag_queue *qc = ag_conf_queue(c, r->queue);
		struct usage *q = use_of(qu, c->nqueues, r->queue);
		struct ag_action *a;
		const struct holder *blocker = NULL;
		size_t at;
		int slot_full = -1;

		if (!(a = push(out, AG_ACT_WAIT, r, cands[i].item))) {
			rc = ag_error_set(AG_ERROR, "out of memory");
			goto out;
		}
		if (it->cancel_req || r->want_cancel) {
			snprintf(a->reason, sizeof(a->reason), "cancelling");
			continue;
		}
		if (r->paused || r->want_pause || r->global_paused) {
			snprintf(a->reason, sizeof(a->reason), "paused%s",
			    r->global_paused ? " (global)" : "");
			continue;
		}
		if (it->retry_at > now) {
			char t[AG_TIME_LEN];
			ag_time_fmt(t, it->retry_at);
			snprintf(a->reason, sizeof(a->reason), "backoff until %s", t);
			a->until = it->retry_at;
			continue;
		}
		if (!qc) {
			snprintf(a->reason, sizeof(a->reason), "queue '%s' is not configured", r->queue);
			continue;
		}
		if (qc->concurrency && q->used >= qc->concurrency) {
			snprintf(a->reason, sizeof(a->reason), "queue '%s' full (%d/%d)",
			    r->queue, q->used, qc->concurrency);
			continue;
		}
		if (c->concurrency && running >= c->concurrency) {
			snprintf(a->reason, sizeof(a->reason), "global concurrency full (%d/%d)",
			    running, c->concurrency);
			continue;
		}
		for (k = 0; k < it->nslots; k++) {
			const struct ag_slot *sc = ag_conf_slot(c, it->slots[k].name);
			struct usage *s = use_of(su, c->nslots, it->slots[k].name);
			if (!sc || !s || s->used + it->slots[k].n > sc->capacity) {
				slot_full = (int)k;
				break;
			}
		}
		if (slot_full >= 0) {
			const struct ag_slot *sc = ag_conf_slot(c, it->slots[slot_full].name);
			struct usage *s = use_of(su, c->nslots, it->slots[slot_full].name);
			if (sc && sc->wait_ms && now - it->ready_at > sc->wait_ms) {
				a->kind = AG_ACT_FAIL;
				snprintf(a->reason, sizeof(a->reason), "slot wait timeout");
			} else {
				if (sc && sc->wait_ms)
					a->until = it->ready_at + sc->wait_ms + 1;
				snprintf(a->reason, sizeof(a->reason), "slot '%s' (%d/%d in use)",
				    it->slots[slot_full].name, s ? s->used : 0, sc ? sc->capacity : 0);
			}
			continue;
		}
		for (k = 0; k < it->nlocks && !blocker; k++)
			if (ag_map_get(&h.map, it->locks[k], &at) == 0)
				blocker = &h.v[at];
		if (blocker) {
			char by[sizeof(a->blocked_by)];
			who(by, sizeof(by), blocker, r);
			snprintf(a->blocked_by, sizeof(a->blocked_by), "%s", by);
			snprintf(a->reason, sizeof(a->reason), "lock '%s' %s %s",
			    ag_quote(blocker->key, strlen(blocker->key)),
			    blocker->reserved ? "queued for by" : "held by", by);
			/* first come, first served: this item queues for all its keys */
			for (k = 0; k < it->nlocks; k++)
				if ((rc = hold(&h, it->locks[k], r, cands[i].item, 1)) < 0)
					goto out;
			continue;
		}
		a->kind = AG_ACT_FIRE;
		running++;
		q->used++;
		for (k = 0; k < it->nslots; k++)
			use_of(su, c->nslots, it->slots[k].name)->used += it->slots[k].n;
		for (k = 0; k < it->nlocks; k++)
			if ((rc = hold(&h, it->locks[k], r, cands[i].item, 0)) < 0)
				goto out;
	}
out:
	free(cands);
	free(qu);
	free(su);
	free(h.v);
	ag_map_release(&h.map);
	return rc;
}
