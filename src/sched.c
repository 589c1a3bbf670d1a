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
 * An item's status as this advance sees it: the log's, or what the call
 * decided (the run's scratch holds status + 1), so that a skip cascades
 * through the whole lineage in one call.
 */
static enum ag_status
seen(const struct ag_run *r, size_t i)
{
	return r->scratch[i] ? (enum ag_status)(r->scratch[i] - 1) : r->items[i].status;
}

/* Decide one pending item: 1 when it became ready or skipped, 0 when not, -1 on error. */
static int
judge(struct ag_actions *out, struct ag_run *r, size_t i)
{
	const struct ag_item *it = &r->items[i];
	size_t bad = (size_t)-1, j;
	int all_done = 1;
	struct ag_action *a;

	if (seen(r, i) != AG_PENDING || it->cancel_req || r->want_cancel)
		return 0;
	for (j = 0; j < it->ndeps; j++) {
		enum ag_status ds = seen(r, it->deps[j]);
		if (ds == AG_FAILED || ds == AG_SKIPPED || ds == AG_CANCELLED) {
			bad = it->deps[j];
			break;
		}
		if (ds != AG_DONE)
			all_done = 0;
	}
	if (bad != (size_t)-1) {
		if (!(a = push(out, AG_ACT_SKIP, r, i)))
			return -1;
		snprintf(a->reason, sizeof(a->reason), "dependency '%s' %s",
		    r->items[bad].id, ag_status_names[seen(r, bad)]);
		snprintf(a->blocked_by, sizeof(a->blocked_by), "%s", r->items[bad].id);
		r->scratch[i] = AG_SKIPPED + 1;
		return 1;
	}
	if (!all_done)
		return 0;
	if (!push(out, AG_ACT_READY, r, i))
		return -1;
	r->scratch[i] = AG_READY + 1;
	return 1;
}

/* A min-heap of item indexes by topological position. */
struct heap {
	uint32_t *v;
	size_t len, cap;
};

static int
heap_before(const struct ag_run *r, uint32_t x, uint32_t y)
{
	return r->items[x].topo_pos < r->items[y].topo_pos;
}

static int
heap_push(struct heap *h, const struct ag_run *r, uint32_t item)
{
	size_t i;

	if (h->len == h->cap) {
		size_t ncap = 2 * h->cap + 64;
		uint32_t *nv = realloc(h->v, ncap * sizeof(*nv));
		if (!nv)
			return -1;
		h->v = nv;
		h->cap = ncap;
	}
	for (i = h->len++; i > 0 && heap_before(r, item, h->v[(i - 1) / 2]); i = (i - 1) / 2)
		h->v[i] = h->v[(i - 1) / 2];
	h->v[i] = item;
	return 0;
}

static uint32_t
heap_pop(struct heap *h, const struct ag_run *r)
{
	uint32_t top = h->v[0], last = h->v[--h->len];
	size_t i = 0, c;

	while ((c = 2 * i + 1) < h->len) {
		if (c + 1 < h->len && heap_before(r, h->v[c + 1], h->v[c]))
			c++;
		if (!heap_before(r, h->v[c], last))
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->len)
		h->v[i] = last;
	return top;
}

int
ag_sched_advance(struct ag_actions *out, struct ag_run *r)
{
	struct heap q = { 0 };
	size_t first = out->len, h, k;
	int rc = 0, d;

	if (r->count[AG_PENDING] == 0) {
		r->ncheck = 0;
		return 0;
	}
	if (r->check_all) {
		for (h = 0; h < r->nitems && rc == 0; h++)
			rc = judge(out, r, r->topo[h]) < 0 ? -1 : 0;
		if (rc == 0) {
			r->check_all = 0;
			r->ncheck = 0;
		}
		goto out;
	}
	/*
	 * The items to look at, taken in topological order as a whole pass
	 * would: an item is judged after every dependency this call decides.
	 */
	for (h = 0; h < r->ncheck && rc == 0; h++)
		rc = heap_push(&q, r, r->check[h]);
	r->ncheck = 0;
	while (q.len && rc == 0) {
		uint32_t i = heap_pop(&q, r);
		if ((d = judge(out, r, i)) < 0) {
			rc = -1;
			break;
		}
		if (d == 0 || seen(r, i) != AG_SKIPPED)
			continue;
		for (k = 0; k < r->items[i].nrdeps && rc == 0; k++)
			rc = heap_push(&q, r, (uint32_t)r->items[i].rdeps[k]);
	}
out:
	free(q.v);
	for (h = first; h < out->len; h++)
		r->scratch[out->v[h].item] = 0;
	if (rc < 0) {
		/* what was left unchecked is checked whole next time */
		r->check_all = 1;
		return ag_error_set(AG_ERROR, "out of memory");
	}
	return 0;
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

/* 64 bits: the slot counts of a plan.json written by hand add up past INT_MAX */
struct usage {
	const char *name;
	int64_t used;
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

/*
 * The items that a staged item may follow: running under serve's resident
 * supervisor (only it knows when they end), or firing now (they go to it
 * too), not staged themselves, and followed by no staged item yet. The
 * running ones come first, a run's entries together and in item order.
 */
struct leaders {
	struct cand *v;
	unsigned char *taken;
	size_t len;
	size_t nfree;		/* not taken yet: none left ends the search at once */
};

static int
cand_item_cmp(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;

	return x->item < y->item ? -1 : x->item > y->item;
}

static void
leader_add(struct leaders *l, struct ag_run *r, size_t item)
{
	l->v[l->len].run = r;
	l->v[l->len++].item = item;
	l->nfree++;
}

static int
leaders_init(struct leaders *l, struct ag_run **runs, size_t nruns, size_t ncands, pid_t stage)
{
	size_t i, k, n = ncands, first;

	for (i = 0; i < nruns; i++)
		n += runs[i]->nrunning;
	l->len = 0;
	l->v = calloc(n + 1, sizeof(*l->v));
	l->taken = calloc(n + 1, 1);
	if (!l->v || !l->taken)
		return ag_error_set(AG_ERROR, "out of memory");
	for (i = 0; i < nruns; i++) {
		struct ag_run *r = runs[i];
		first = l->len;
		for (k = 0; k < r->nrunning; k++)
			if (r->items[r->running[k]].sup == stage &&
			    !ag_item_staged(r, &r->items[r->running[k]]))
				leader_add(l, r, r->running[k]);
		qsort(l->v + first, l->len - first, sizeof(*l->v), cand_item_cmp);
		for (k = 0; k < r->nrunning; k++) {
			const struct ag_item *it = &r->items[r->running[k]];
			struct cand key = { r, it->after - 1 }, *at;
			if (!ag_item_staged(r, it))
				continue;
			at = bsearch(&key, l->v + first, l->len - first, sizeof(*l->v), cand_item_cmp);
			if (at && !l->taken[at - l->v]) {
				l->taken[at - l->v] = 1;
				l->nfree--;
			}
		}
	}
	return 0;
}

/* A leader of run r that no staged item follows yet, taken for one; or -1. */
static ssize_t
leader_take(struct leaders *l, const struct ag_run *r)
{
	size_t i;

	for (i = 0; l->nfree && i < l->len; i++)
		if (l->v[i].run == r && !l->taken[i]) {
			l->taken[i] = 1;
			l->nfree--;
			return (ssize_t)l->v[i].item;
		}
	return -1;
}

/* The first of the item's slots without room for it, or -1. */
static int
slot_short(const struct ag_item *it, const struct ag_conf *c, struct usage *su)
{
	size_t k;

	for (k = 0; k < it->nslots; k++) {
		const struct ag_slot *sc = ag_conf_slot(c, it->slots[k].name);
		struct usage *s = use_of(su, c->nslots, it->slots[k].name);
		if (!sc || !s || s->used + it->slots[k].n > sc->capacity)
			return (int)k;
	}
	return -1;
}

/* Who holds (or queued first for) one of the item's lock keys, or NULL. */
static const struct holder *
lock_holder(const struct ag_item *it, const struct holders *h)
{
	size_t k, at;

	for (k = 0; k < it->nlocks; k++)
		if (ag_map_get(&h->map, it->locks[k], &at) == 0)
			return &h->v[at];
	return NULL;
}

/* The item fires or is staged: it takes its slots and its locks. */
static int
take(const struct ag_item *it, const struct ag_conf *c, struct usage *su, struct holders *h,
    const struct ag_run *r, size_t item)
{
	size_t k;
	int rc;

	for (k = 0; k < it->nslots; k++)
		use_of(su, c->nslots, it->slots[k].name)->used += it->slots[k].n;
	for (k = 0; k < it->nlocks; k++)
		if ((rc = hold(h, it->locks[k], r, item, 0)) < 0)
			return rc;
	return 0;
}

int
ag_sched_pick(struct ag_actions *out, struct ag_run **runs, size_t nruns,
    const struct ag_conf *c, int64_t now, pid_t stage)
{
	struct usage *qu = NULL, *su = NULL;
	struct holders h = { 0 };
	struct leaders lead = { 0 };
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
		ncands += r->nready;
		for (k = 0; k < r->nrunning; k++) {
			size_t m;
			struct ag_item *it = &r->items[j = r->running[k]];
			/* a staged item counts once it has taken its place */
			if (!ag_item_staged(r, it)) {
				running++;
				if (q)
					q->used++;
			}
			for (m = 0; m < it->nslots; m++) {
				struct usage *s = use_of(su, c->nslots, it->slots[m].name);
				if (s)
					s->used += it->slots[m].n;
			}
			for (m = 0; m < it->nlocks; m++)
				if ((rc = hold(&h, it->locks[m], r, j, 0)) < 0)
					goto out;
		}
	}
	if (!ncands)
		goto out;
	if (stage && (rc = leaders_init(&lead, runs, nruns, ncands, stage)) < 0)
		goto out;
	cands = calloc(ncands, sizeof(*cands));
	if (!cands) {
		rc = ag_error_set(AG_ERROR, "out of memory");
		goto out;
	}
	ncands = 0;
	for (i = 0; i < nruns; i++) {
		struct ag_run *r = runs[i];
		for (k = 0; k < r->nready; k++) {
			cands[ncands].run = r;
			cands[ncands++].item = r->ready[k];
		}
	}
	qsort(cands, ncands, sizeof(*cands), cand_cmp);

	for (i = 0; i < ncands; i++) {
		struct ag_run *r = cands[i].run;
		struct ag_item *it = &r->items[cands[i].item];
		const struct ag_queue *qc = ag_conf_queue(c, r->queue);
		struct usage *q = use_of(qu, c->nqueues, r->queue);
		struct ag_action *a;
		const struct holder *blocker;
		int slot_full;

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
		if (qc->concurrency && q->used >= qc->concurrency)
			snprintf(a->reason, sizeof(a->reason), "queue '%s' full (%lld/%d)",
			    r->queue, (long long)q->used, qc->concurrency);
		else if (c->concurrency && running >= c->concurrency)
			snprintf(a->reason, sizeof(a->reason), "global concurrency full (%d/%d)",
			    running, c->concurrency);
		if (a->reason[0]) {
			ssize_t after;
			/*
			 * Staged behind an item of its own run, it takes that
			 * item's place in both counts when it ends; it holds its
			 * slots and locks from now on.
			 */
			if (!stage || qc->nostage || !lead.nfree || slot_short(it, c, su) >= 0 ||
			    lock_holder(it, &h) || (after = leader_take(&lead, r)) < 0)
				continue;
			a->kind = AG_ACT_STAGE;
			a->after = (size_t)after;
			a->reason[0] = '\0';
			if ((rc = take(it, c, su, &h, r, cands[i].item)) < 0)
				goto out;
			continue;
		}
		if ((slot_full = slot_short(it, c, su)) >= 0) {
			const struct ag_slot *sc = ag_conf_slot(c, it->slots[slot_full].name);
			struct usage *s = use_of(su, c->nslots, it->slots[slot_full].name);
			if (sc && sc->wait_ms && now - it->ready_at > sc->wait_ms) {
				a->kind = AG_ACT_FAIL;
				snprintf(a->reason, sizeof(a->reason), "slot wait timeout");
			} else {
				if (sc && sc->wait_ms)
					a->until = it->ready_at + sc->wait_ms + 1;
				snprintf(a->reason, sizeof(a->reason), "slot '%s' (%lld/%d in use)",
				    it->slots[slot_full].name, s ? (long long)s->used : 0,
				    sc ? sc->capacity : 0);
			}
			continue;
		}
		if ((blocker = lock_holder(it, &h)) != NULL) {
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
		if (stage) {
			/* it goes to the resident supervisor too: one may follow it */
			leader_add(&lead, r, cands[i].item);
		}
		if ((rc = take(it, c, su, &h, r, cands[i].item)) < 0)
			goto out;
	}
out:
	free(lead.v);
	free(lead.taken);
	free(cands);
	free(qu);
	free(su);
	free(h.v);
	ag_map_release(&h.map);
	return rc;
}
