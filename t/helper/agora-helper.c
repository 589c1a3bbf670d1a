/*
 * agora-helper: a test-only driver for library internals.
 *
 *   agora-helper sched-props N SEED   check the scheduler's invariants on
 *                                     N random states; prints "ok N" or the
 *                                     first broken invariant
 *   agora-helper advance-diff N SEED  N random DAGs, each driven through
 *                                     random transitions: the incremental
 *                                     ag_sched_advance must decide exactly
 *                                     what a pass over the whole run does
 *
 * The object store (store.c), STORE being a state directory's objects.git:
 *   agora-helper import STORE REPO REV          prints the base commit id
 *   agora-helper checkout STORE TREEISH DIR
 *   agora-helper tree STORE DIR                 prints the directory's tree id
 *   agora-helper capture STORE DIR BASE RUN ITEM ATTEMPT [BASELINE]
 *                                     prints "tree T", "patch P", "sha256 S",
 *                                     "commit C" ("-" when nothing changed)
 *   agora-helper apply STORE TREEISH PATCH      prints the new tree id
 *   agora-helper worktree STORE BASE DIR [PATCH...]
 *                                     prints the baseline tree id, or the index
 *                                     of the patch that does not apply
 *   agora-helper outputs STORE DIR              prints "BLOB SIZE PATH" lines
 *
 * A fixture for agora-show and agora-apply, standing in for an executor
 * that makes artifacts: under tick.lock, capture WORKTREE for the item
 * (against BASE with the PATCHes applied: a needs baseline) and its
 * OUTPUTS directory ("-": none), then log item.running and an item.done
 * line with the artifact fields, as an attempt that exited 0:
 *   agora-helper done DIR RUN ITEM ATTEMPT BASE WORKTREE OUTPUTS [PATCH...]
 *                                     prints the patch blob id, or "-"
 * Bundles (bundle.c):
 *   agora-helper tamper-bytes BUNDLE KEY   flip every bit of the log, one at a
 *                                     time, verify each; prints the flips each
 *                                     check caught and every one none caught
 * Audit (merkle.c, note.c); hashes are lower-case hex:
 *   agora-helper merkle-root FILE [N]          "SIZE ROOT" of the first N lines (all)
 *   agora-helper merkle-leaf FILE INDEX        the leaf hash of line INDEX (from 0)
 *   agora-helper merkle-inclusion FILE INDEX [N]   PATH(INDEX, D[N]), a hash a line
 *   agora-helper merkle-consistency FILE M [N]     PROOF(M, D[N]), a hash a line
 *   agora-helper merkle-verify-inclusion LEAF INDEX N ROOT [HASH...]
 *   agora-helper merkle-verify-consistency M N ROOT-M ROOT-N [HASH...]
 *                                     print "ok", or fail with the reason
 *   agora-helper merkle-selftest N    every proof for 0 <= m <= n <= N verifies,
 *                                     and none with a flipped bit; prints "ok COUNT"
 *   agora-helper key-info KEYFILE     "name NAME" and "id HEX" (.key or .pub)
 *   agora-helper note-sign KEY BODY   the signed note of the file BODY
 *   agora-helper note-verify PUB NOTE "ok", or fail with the reason
 *   agora-helper checkpoint-sign KEY ORIGIN FILE [N]   a checkpoint of FILE's lines
 *   agora-helper checkpoint-parse NOTE "origin O", "size N", "root HEX"
 *   agora-helper anchor-read DIR ANCHOR RUN     the copy of RUN's checkpoint
 *                                     that anchor ANCHOR of DIR/agora.conf holds
 * Errors go to stderr as "agora-helper: MESSAGE", with agora's exit codes.
 */
#include "agora.h"
#include "audit.h"
#include "bundle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned long long rng;

static unsigned
rnd(unsigned n)
{
	rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return (unsigned)((rng >> 33) % n);
}

static const char *const keys[] = { "k0", "k1", "k2", "k3", "k4", "k5" };
static const char *const queues[] = { "default", "other" };
static char ids[64][8];

static struct ag_run *
random_run(int n, int which)
{
	struct ag_run *r = calloc(1, sizeof(*r));
	int i;

	r->id = calloc(1, 16);
	snprintf(r->id, 16, "run%d", which);
	r->queue = queues[rnd(2)];
	r->submitted_at = rnd(3);
	r->nitems = (size_t)n;
	r->items = calloc((size_t)n, sizeof(*r->items));
	r->paused = rnd(8) == 0;
	for (i = 0; i < n; i++) {
		struct ag_item *it = &r->items[i];
		size_t k;
		it->id = ids[i];
		it->priority = (int)rnd(3);
		it->status = rnd(3) ? AG_READY : (rnd(2) ? AG_RUNNING : AG_DONE);
		it->nlocks = rnd(3);
		it->locks = calloc(it->nlocks + 1, sizeof(*it->locks));
		for (k = 0; k < it->nlocks; k++)
			it->locks[k] = keys[rnd(6)];
		it->nslots = rnd(2);
		it->slots = calloc(2, sizeof(*it->slots));
		if (it->nslots) {
			it->slots[0].name = "llm";
			it->slots[0].n = 1 + (int)rnd(2);
		}
		it->retry_at = rnd(6) == 0 ? 2000 : 0;
		r->count[it->status]++;
	}
	r->topo = calloc((size_t)n + 1, sizeof(*r->topo));
	for (i = 0; i < n; i++)
		r->topo[i] = (size_t)i;
	if (ag_run_index(r) < 0)
		abort();
	return r;
}

static void
free_run(struct ag_run *r)
{
	size_t i;

	for (i = 0; i < r->nitems; i++) {
		free(r->items[i].locks);
		free(r->items[i].slots);
	}
	free(r->items);
	free(r->topo);
	free(r->ready);
	free(r->running);
	free(r->scratch);
	free(r->check);
	free(r->id);
	free(r);
}

static int
rank_le(const struct ag_run *ra, const struct ag_item *a, size_t ia,
    const struct ag_run *rb, const struct ag_item *b, size_t ib)
{
	if (a->priority != b->priority)
		return a->priority > b->priority;
	if (ra->submitted_at != rb->submitted_at)
		return ra->submitted_at < rb->submitted_at;
	if (ra != rb)
		return strcmp(ra->id, rb->id) < 0;
	return ia < ib;
}

/* the pid of the resident supervisor that sched-props stages for */
#define RESIDENT	42

static size_t
run_no(struct ag_run **runs, size_t nruns, const struct ag_run *r)
{
	size_t i;

	for (i = 0; i < nruns && runs[i] != r; i++)
		;
	return i;
}

static int
check(struct ag_run **runs, size_t nruns, const struct ag_conf *c)
{
	struct ag_actions a = { 0 };
	const char *holder[6] = { 0 };
	int per_queue[2] = { 0, 0 }, total = 0, llm = 0;
	unsigned char led[3][64] = { { 0 } };	/* 1: may lead, 2: followed */
	size_t i, j, k, fired = 0;
	const struct ag_action *last = NULL;

	if (ag_sched_pick(&a, runs, nruns, c, 1000, RESIDENT) < 0)
		return printf("pick failed: %s\n", ag_error_msg()), 1;
	/* what runs already; a staged item holds locks and slots, but no concurrency */
	for (i = 0; i < nruns; i++)
		for (j = 0; j < runs[i]->nitems; j++) {
			const struct ag_item *it = &runs[i]->items[j];
			if (it->status != AG_RUNNING)
				continue;
			if (ag_item_staged(runs[i], it)) {
				led[i][it->after - 1] = 2;
			} else {
				total++;
				per_queue[strcmp(runs[i]->queue, "default") != 0]++;
				if (it->sup == RESIDENT && !led[i][j])
					led[i][j] = 1;
			}
			for (k = 0; k < it->nslots; k++)
				llm += it->slots[k].n;
			for (k = 0; k < it->nlocks; k++)
				holder[it->locks[k][1] - '0'] = "running";
		}
	for (i = 0; i < a.len; i++) {
		const struct ag_action *x = &a.v[i];
		const struct ag_item *it = &x->run->items[x->item];
		int q = strcmp(x->run->queue, "default") != 0;
		if (it->status != AG_READY)
			return printf("action on a %s item\n", ag_status_names[it->status]), 1;
		if (last && !rank_le(last->run, &last->run->items[last->item], last->item,
		    x->run, it, x->item))
			return printf("actions out of fire order at %zu\n", i), 1;
		last = x;
		if (x->kind != AG_ACT_FIRE && x->kind != AG_ACT_STAGE) {
			if (!x->reason[0])
				return printf("a waiting item has no reason\n"), 1;
			continue;
		}
		fired++;
		if (x->run->paused || it->retry_at > 1000)
			return printf("fired a paused or backing-off item\n"), 1;
		if (x->kind == AG_ACT_STAGE) {
			/* behind one item of its own run that the resident runs, alone */
			size_t rn = run_no(runs, nruns, x->run);
			if (led[rn][x->after] != 1)
				return printf("staged %s behind %s, which cannot lead\n", it->id,
				    x->run->items[x->after].id), 1;
			led[rn][x->after] = 2;
		} else {
			total++;
			per_queue[q]++;
			led[run_no(runs, nruns, x->run)][x->item] = 1;	/* it may lead too */
		}
		for (k = 0; k < it->nslots; k++)
			llm += it->slots[k].n;
		for (k = 0; k < it->nlocks; k++) {
			int kk = it->locks[k][1] - '0';
			if (holder[kk] && holder[kk] != (const char *)it)
				return printf("lock %s given twice\n", it->locks[k]), 1;
			holder[kk] = (const char *)it;
		}
	}
	(void)fired;
	/* every ready item is decided: fired, or left waiting with its reason */
	for (i = 0, k = 0; i < nruns; i++)
		for (j = 0; j < runs[i]->nitems; j++)
			k += runs[i]->items[j].status == AG_READY;
	if (k != a.len)
		return printf("%zu ready items, %zu actions\n", k, a.len), 1;
	if (total > c->concurrency && c->concurrency)
		return printf("global concurrency %d > %d\n", total, c->concurrency), 1;
	for (i = 0; i < 2; i++)
		if (c->queues[i].concurrency && per_queue[i] > c->queues[i].concurrency)
			return printf("queue %s over its cap\n", queues[i]), 1;
	if (llm > c->slots[0].capacity)
		return printf("slot over capacity\n"), 1;
	ag_actions_release(&a);
	return 0;
}

static int
sched_props(int n, unsigned long long seed)
{
	struct ag_queue qs[2] = { { "default", 0, 0 }, { "other", 0, 0 } };
	struct ag_slot slots[1] = { { "llm", 2, 0 } };
	struct ag_conf c;
	int t;

	rng = seed;
	for (t = 0; t < 64; t++)
		snprintf(ids[t], sizeof(ids[t]), "i%d", t);
	for (t = 0; t < n; t++) {
		struct ag_run *runs[3];
		size_t nruns = 1 + rnd(3), i;
		int bad;
		memset(&c, 0, sizeof(c));
		qs[0].concurrency = (int)rnd(5);
		qs[1].concurrency = (int)rnd(5);
		c.concurrency = (int)rnd(6);
		c.queues = qs;
		c.nqueues = 2;
		c.slots = slots;
		c.nslots = 1;
		for (i = 0; i < nruns; i++)
			runs[i] = random_run(1 + (int)rnd(12), (int)i);
		/*
		 * Running items come from the scheduler itself: fire what a
		 * first pick says, finish some of them, then check a second pick.
		 */
		for (i = 0; i < nruns; i++) {
			size_t j;
			for (j = 0; j < runs[i]->nitems; j++) {
				if (runs[i]->items[j].status == AG_RUNNING)
					ag_run_set_status(runs[i], j, AG_DONE);
			}
		}
		{
			/*
			 * What fires runs under the resident or elsewhere; what
			 * is staged follows its leader, which may have ended.
			 */
			struct ag_actions first = { 0 };
			if (ag_sched_pick(&first, runs, nruns, &c, 1000, RESIDENT) < 0)
				return 1;
			for (i = 0; i < first.len; i++) {
				struct ag_action *x = &first.v[i];
				struct ag_item *it = &x->run->items[x->item];
				if (x->kind == AG_ACT_FIRE) {
					ag_run_set_status(x->run, x->item, AG_RUNNING);
					it->sup = rnd(3) ? RESIDENT : 7;
				} else if (x->kind == AG_ACT_STAGE) {
					ag_run_set_status(x->run, x->item, AG_RUNNING);
					it->after = (uint32_t)x->after + 1;
					it->after_attempt = x->run->items[x->after].attempt;
					it->sup = RESIDENT;
				}
			}
			for (i = 0; i < first.len; i++)
				if ((first.v[i].kind == AG_ACT_FIRE || first.v[i].kind == AG_ACT_STAGE) &&
				    !rnd(3))
					ag_run_set_status(first.v[i].run, first.v[i].item, AG_DONE);
			ag_actions_release(&first);
		}
		bad = check(runs, nruns, &c);
		for (i = 0; i < nruns; i++)
			free_run(runs[i]);
		if (bad) {
			printf("state %d of seed %llu\n", t, seed);
			return 1;
		}
	}
	printf("ok %d\n", n);
	return 0;
}

/*
 * One copy of a random DAG, its items in plan order, order[] a topological
 * order of them. advance-diff makes two: a keeps its check list, b is
 * looked at whole each time.
 */
static struct ag_run *
dag_run(int n, const size_t *const *deps, const size_t *ndeps, const size_t *order)
{
	struct ag_run *r = calloc(1, sizeof(*r));
	size_t i, j;

	r->id = calloc(1, 16);
	snprintf(r->id, 16, "dag");
	r->nitems = (size_t)n;
	r->items = calloc((size_t)n + 1, sizeof(*r->items));
	r->topo = calloc((size_t)n + 1, sizeof(*r->topo));
	memcpy(r->topo, order, (size_t)n * sizeof(*r->topo));
	for (i = 0; i < (size_t)n; i++) {
		struct ag_item *it = &r->items[i];
		it->id = ids[i];
		it->ndeps = ndeps[i];
		it->deps = calloc(ndeps[i] + 1, sizeof(size_t));
		memcpy(it->deps, deps[i], ndeps[i] * sizeof(size_t));
		it->rdeps = calloc((size_t)n + 1, sizeof(size_t));
	}
	for (i = 0; i < (size_t)n; i++)
		for (j = 0; j < ndeps[i]; j++) {
			struct ag_item *d = &r->items[deps[i][j]];
			d->rdeps[d->nrdeps++] = i;
		}
	r->count[AG_PENDING] = (size_t)n;
	if (ag_run_index(r) < 0)
		abort();
	return r;
}

static void
dag_free(struct ag_run *r)
{
	size_t i;

	for (i = 0; i < r->nitems; i++) {
		free(r->items[i].deps);
		free(r->items[i].rdeps);
	}
	free_run(r);
}

/* Both runs take the same step. */
static void
both(struct ag_run *a, struct ag_run *b, size_t i, enum ag_status s)
{
	ag_run_set_status(a, i, s);
	ag_run_set_status(b, i, s);
}

/* RETRY as the log replays it: the item and its skipped dependents, pending again. */
static void
retry_both(struct ag_run *a, struct ag_run *b, size_t i)
{
	size_t k;

	both(a, b, i, AG_PENDING);
	for (k = 0; k < a->items[i].nrdeps; k++)
		if (a->items[a->items[i].rdeps[k]].status == AG_SKIPPED)
			retry_both(a, b, a->items[i].rdeps[k]);
}

static int
advance_diff(int n, unsigned long long seed)
{
	int t;

	rng = seed;
	for (t = 0; t < 64; t++)
		snprintf(ids[t], sizeof(ids[t]), "i%d", t);
	for (t = 0; t < n; t++) {
		size_t nitems = 1 + rnd(40), i, k, step, ndeps[64], store[64][4], perm[64];
		const size_t *deps[64];
		struct ag_run *a, *b;
		/*
		 * A DAG on 0..n-1 (edges to lower numbers), placed in the plan
		 * shuffled: perm[] is then a topological order of the plan.
		 */
		for (i = 0; i < nitems; i++)
			perm[i] = i;
		for (i = nitems; i > 1; i--) {
			size_t j = rnd((unsigned)i), x = perm[i - 1];
			perm[i - 1] = perm[j];
			perm[j] = x;
		}
		for (i = 0; i < nitems; i++) {
			size_t m = i ? rnd(4) : 0, p = perm[i];
			ndeps[p] = 0;
			for (k = 0; k < m; k++) {
				size_t d = perm[rnd((unsigned)i)], e;
				for (e = 0; e < ndeps[p] && store[p][e] != d; e++)
					;
				if (e == ndeps[p])
					store[p][ndeps[p]++] = d;
			}
			deps[p] = store[p];
		}
		a = dag_run((int)nitems, deps, ndeps, perm);
		b = dag_run((int)nitems, deps, ndeps, perm);
		for (step = 0; step < 4 * nitems; step++) {
			struct ag_actions x = { 0 }, y = { 0 };
			size_t pick = rnd((unsigned)nitems);
			enum ag_status st = a->items[pick].status;
			b->check_all = 1;
			if (ag_sched_advance(&x, a) < 0 || ag_sched_advance(&y, b) < 0)
				return printf("advance failed: %s\n", ag_error_msg()), 1;
			if (x.len != y.len) {
				printf("dag %d step %zu: %zu decisions, a whole pass makes %zu\n", t, step,
				    x.len, y.len);
				return 1;
			}
			for (i = 0; i < x.len; i++)
				if (x.v[i].kind != y.v[i].kind || x.v[i].item != y.v[i].item ||
				    strcmp(x.v[i].reason, y.v[i].reason) != 0 ||
				    strcmp(x.v[i].blocked_by, y.v[i].blocked_by) != 0) {
					printf("dag %d step %zu: decision %zu differs (%s %s / %s %s)\n", t,
					    step, i, x.v[i].run->items[x.v[i].item].id, x.v[i].reason,
					    y.v[i].run->items[y.v[i].item].id, y.v[i].reason);
					return 1;
				}
			for (i = 0; i < x.len; i++)
				both(a, b, x.v[i].item, x.v[i].kind == AG_ACT_READY ? AG_READY : AG_SKIPPED);
			ag_actions_release(&x);
			ag_actions_release(&y);
			/* then one random event of a tick: fire, an end, a cancel, a retry */
			if (st == AG_READY)
				both(a, b, pick, rnd(4) ? AG_RUNNING : AG_CANCELLED);
			else if (st == AG_RUNNING)
				both(a, b, pick, rnd(3) ? AG_DONE : (rnd(2) ? AG_FAILED : AG_CANCELLED));
			else if (st == AG_PENDING && rnd(8) == 0)
				both(a, b, pick, AG_CANCELLED);
			else if ((st == AG_FAILED || st == AG_CANCELLED || st == AG_SKIPPED) &&
			    rnd(3) == 0)
				retry_both(a, b, pick);
		}
		dag_free(a);
		dag_free(b);
	}
	printf("ok %d\n", n);
	return 0;
}

static int
fail(int rc)
{
	fprintf(stderr, "agora-helper: %s\n", ag_error_msg());
	return ag_exit_code(rc);
}

static int
store_cmd(int argc, char **argv)
{
	struct ag_store *st = NULL;
	char id[AG_OID_HEX];
	int rc;

	if ((rc = ag_store_open(&st, argv[2])) < 0)
		return fail(rc);
	if (strcmp(argv[1], "import") == 0 && argc == 5) {
		if ((rc = ag_store_import_base(id, st, argv[3], argv[4])) == 0)
			printf("%s\n", id);
	} else if (strcmp(argv[1], "checkout") == 0 && argc == 5) {
		rc = ag_store_checkout(st, argv[3], argv[4]);
	} else if (strcmp(argv[1], "tree") == 0 && argc == 4) {
		if ((rc = ag_store_tree_from_dir(id, st, argv[3], NULL)) == 0)
			printf("%s\n", id);
	} else if (strcmp(argv[1], "capture") == 0 && (argc == 8 || argc == 9)) {
		struct ag_capture c;
		struct ag_capture_opts o = {
			.base = argv[4], .run = argv[5], .item = argv[6],
			.attempt = (int)strtol(argv[7], NULL, 10),
			.baseline = argc == 9 ? argv[8] : NULL,
			.time_ms = 1700000000000,
		};
		if ((rc = ag_store_capture(&c, st, argv[3], &o)) == 0)
			printf("tree %s\npatch %s\nsha256 %s\ncommit %s\n", c.tree,
			    c.patch[0] ? c.patch : "-", c.sha256[0] ? c.sha256 : "-",
			    c.commit[0] ? c.commit : "-");
	} else if (strcmp(argv[1], "apply") == 0 && argc == 5) {
		if ((rc = ag_store_apply(id, st, argv[3], argv[4])) == 0)
			printf("%s\n", id);
	} else if (strcmp(argv[1], "worktree") == 0 && argc >= 5) {
		size_t failed;
		rc = ag_store_worktree(id, &failed, st, argv[3], (const char *const *)argv + 5,
		    (size_t)argc - 5, argv[4]);
		if (rc == 0)
			printf("%s\n", id);
		else if (rc == AG_ECONFLICT)
			printf("conflict at %zu\n", failed);
	} else if (strcmp(argv[1], "outputs") == 0 && argc == 4) {
		struct ag_output *v;
		size_t n, i;
		if ((rc = ag_store_outputs(&v, &n, st, argv[3])) == 0) {
			for (i = 0; i < n; i++)
				printf("%s %llu %s\n", v[i].blob, (unsigned long long)v[i].size, v[i].path);
			ag_outputs_free(v, n);
		}
	} else {
		ag_store_free(st);
		fprintf(stderr, "agora-helper: bad arguments for %s\n", argv[1]);
		return 100;
	}
	ag_store_free(st);
	return rc < 0 ? fail(rc) : 0;
}

static int
done_cmd(int argc, char **argv)
{
	const char *dir = argv[2], *run = argv[3], *item = argv[4], *base = argv[6];
	int attempt = (int)strtol(argv[5], NULL, 10);
	char path[AG_PATH_MAX], baseline[AG_OID_HEX];
	struct ag_conf conf;
	struct ag_run *r = NULL;
	struct ag_store *st = NULL;
	struct ag_output *outs = NULL;
	struct ag_capture cap;
	struct ag_capture_opts o = { .base = base, .run = run, .item = item, .attempt = attempt };
	size_t nouts = 0;
	json_t *ev;
	int lock = -1, rc, i;

	if ((rc = ag_conf_load(&conf, dir)) < 0)
		return fail(rc);
	if ((rc = ag_path(path, sizeof(path), "%s/tick.lock", dir)) < 0 ||
	    (rc = ag_lock_open(&lock, path, 0)) < 0 ||
	    (rc = ag_path(path, sizeof(path), "%s/objects.git", dir)) < 0 ||
	    (rc = ag_store_open(&st, path)) < 0 ||
	    (rc = ag_run_load(&r, &conf, run, 1)) < 0)
		goto out;
	memcpy(baseline, base, AG_OID_HEX);
	for (i = 9; i < argc; i++)
		if ((rc = ag_store_apply(baseline, st, baseline, argv[i])) < 0)
			goto out;
	o.baseline = baseline;
	o.time_ms = ag_now_ms();
	if ((rc = ag_store_capture(&cap, st, argv[7], &o)) < 0 ||
	    (strcmp(argv[8], "-") != 0 && (rc = ag_store_outputs(&outs, &nouts, st, argv[8])) < 0))
		goto out;
	ev = ag_event_new(r, "item.running");
	json_object_set_new(ev, "item", json_string(item));
	json_object_set_new(ev, "status", json_string("running"));
	json_object_set_new(ev, "attempt", json_integer(attempt));
	if ((rc = ag_run_emit(r, ev)) < 0)
		goto out;
	ev = ag_event_new(r, "item.done");
	json_object_set_new(ev, "item", json_string(item));
	json_object_set_new(ev, "status", json_string("done"));
	json_object_set_new(ev, "attempt", json_integer(attempt));
	json_object_set_new(ev, "exit", json_integer(0));
	if ((rc = ag_artifact_fields(ev, &cap, outs, nouts)) < 0) {
		json_decref(ev);
		goto out;
	}
	if ((rc = ag_run_emit(r, ev)) < 0 || (rc = ag_run_sync(r)) < 0)
		goto out;
	printf("%s\n", cap.patch[0] ? cap.patch : "-");
out:
	ag_outputs_free(outs, nouts);
	ag_run_free(r);
	ag_store_free(st);
	if (lock >= 0)
		close(lock);
	ag_conf_release(&conf);
	return rc < 0 ? fail(rc) : 0;
}

static int
read_leaves(unsigned char **leaves, uint64_t *n, const char *file, const char *count)
{
	return ag_merkle_file_leaves(leaves, n, NULL, file,
	    count ? strtoull(count, NULL, 10) : UINT64_MAX);
}

static void
print_proof(const struct ag_proof *p)
{
	char hex[2 * AG_HASH_LEN + 1];
	size_t i;

	for (i = 0; i < p->n; i++) {
		ag_hex(hex, p->h[i], AG_HASH_LEN);
		printf("%s\n", hex);
	}
}

static int
hex_args(struct ag_proof *p, char **argv, int argc)
{
	int i, rc;

	p->n = 0;
	for (i = 0; i < argc; i++) {
		if (p->n == AG_PROOF_MAX)
			return ag_error_set(AG_EINVALID, "too many hashes");
		if ((rc = ag_unhex(p->h[p->n++], AG_HASH_LEN, argv[i])) < 0)
			return rc;
	}
	return 0;
}

/* Every proof of trees up to max leaves verifies, and fails with any bit flipped. */
static int
merkle_selftest(uint64_t max)
{
	unsigned char *leaves = malloc((max + 1) * AG_HASH_LEN), roots[64][AG_HASH_LEN];
	char line[32];
	struct ag_proof p;
	uint64_t n, m, count = 0;
	size_t i;
	int rc = 0, bit;

	if (!leaves || max >= 64)
		return ag_error_set(AG_EINVALID, "selftest takes N < 64");
	for (n = 0; n < max; n++) {
		snprintf(line, sizeof(line), "line %llu", (unsigned long long)n);
		if ((rc = ag_merkle_leaf(leaves + n * AG_HASH_LEN, line, strlen(line))) < 0)
			goto out;
	}
	for (n = 0; n <= max; n++)
		if ((rc = ag_merkle_tree_hash(roots[n], leaves, n)) < 0)
			goto out;
	for (n = 0; n <= max; n++)
		for (m = 0; m <= n; m++) {
			if (m < n) {
				if ((rc = ag_merkle_inclusion(&p, leaves, n, m)) < 0)
					goto out;
				if ((rc = ag_merkle_verify_inclusion(leaves + m * AG_HASH_LEN, m, n, &p,
				    roots[n])) < 0) {
					rc = ag_error_set(AG_ERROR, "inclusion %llu in %llu: %s",
					    (unsigned long long)m, (unsigned long long)n, ag_error_msg());
					goto out;
				}
				for (i = 0; i < p.n; i++)
					for (bit = 0; bit < 256; bit += 37) {
						p.h[i][bit / 8] ^= (unsigned char)(1 << (bit % 8));
						if (ag_merkle_verify_inclusion(leaves + m * AG_HASH_LEN, m, n,
						    &p, roots[n]) == 0) {
							rc = ag_error_set(AG_ERROR, "inclusion %llu in %llu: "
							    "flipped hash %zu verifies", (unsigned long long)m,
							    (unsigned long long)n, i);
							goto out;
						}
						p.h[i][bit / 8] ^= (unsigned char)(1 << (bit % 8));
					}
				count++;
			}
			if ((rc = ag_merkle_consistency(&p, leaves, n, m)) < 0)
				goto out;
			if ((rc = ag_merkle_verify_consistency(m, n, roots[m], roots[n], &p)) < 0) {
				rc = ag_error_set(AG_ERROR, "consistency %llu to %llu: %s",
				    (unsigned long long)m, (unsigned long long)n, ag_error_msg());
				goto out;
			}
			for (i = 0; i < p.n; i++) {
				p.h[i][i % AG_HASH_LEN] ^= 0x80;
				if (ag_merkle_verify_consistency(m, n, roots[m], roots[n], &p) == 0) {
					rc = ag_error_set(AG_ERROR, "consistency %llu to %llu: "
					    "flipped hash %zu verifies", (unsigned long long)m,
					    (unsigned long long)n, i);
					goto out;
				}
				p.h[i][i % AG_HASH_LEN] ^= 0x80;
			}
			/* a wrong first root never passes for 0 < m < n, nor for m == n */
			if (m > 0 && m <= n && n > 0) {
				unsigned char bad[AG_HASH_LEN];
				memcpy(bad, roots[m], AG_HASH_LEN);
				bad[0] ^= 1;
				if (ag_merkle_verify_consistency(m, n, bad, roots[n], &p) == 0) {
					rc = ag_error_set(AG_ERROR, "consistency %llu to %llu: "
					    "a wrong old root verifies", (unsigned long long)m,
					    (unsigned long long)n);
					goto out;
				}
			}
			count++;
		}
	printf("ok %llu\n", (unsigned long long)count);
out:
	free(leaves);
	return rc;
}

static int
audit_cmd(int argc, char **argv)
{
	const char *cmd = argv[1];
	char hex[2 * AG_HASH_LEN + 1];
	unsigned char root[AG_HASH_LEN], rootn[AG_HASH_LEN], leaf[AG_HASH_LEN];
	unsigned char *leaves = NULL;
	struct ag_key *k = NULL;
	struct ag_buf b = { 0 };
	struct ag_proof p;
	uint64_t n = 0, bytes;
	char *note = NULL;
	size_t len;
	int rc = AG_EINVALID;

	if (strcmp(cmd, "merkle-root") == 0 && (argc == 3 || argc == 4)) {
		rc = ag_merkle_file_root(root, &n, &bytes, argv[2],
		    argc == 4 ? strtoull(argv[3], NULL, 10) : UINT64_MAX);
		if (rc == 0) {
			ag_hex(hex, root, AG_HASH_LEN);
			printf("%llu %s\n", (unsigned long long)n, hex);
		}
	} else if (strcmp(cmd, "merkle-leaf") == 0 && argc == 4) {
		if ((rc = read_leaves(&leaves, &n, argv[2], NULL)) == 0) {
			uint64_t i = strtoull(argv[3], NULL, 10);
			if (i >= n)
				rc = ag_error_set(AG_EINVALID, "no line %llu", (unsigned long long)i);
			else {
				ag_hex(hex, leaves + i * AG_HASH_LEN, AG_HASH_LEN);
				printf("%s\n", hex);
			}
		}
	} else if (strcmp(cmd, "merkle-inclusion") == 0 && (argc == 4 || argc == 5)) {
		if ((rc = read_leaves(&leaves, &n, argv[2], argc == 5 ? argv[4] : NULL)) == 0 &&
		    (rc = ag_merkle_inclusion(&p, leaves, n, strtoull(argv[3], NULL, 10))) == 0)
			print_proof(&p);
	} else if (strcmp(cmd, "merkle-consistency") == 0 && (argc == 4 || argc == 5)) {
		if ((rc = read_leaves(&leaves, &n, argv[2], argc == 5 ? argv[4] : NULL)) == 0 &&
		    (rc = ag_merkle_consistency(&p, leaves, n, strtoull(argv[3], NULL, 10))) == 0)
			print_proof(&p);
	} else if (strcmp(cmd, "merkle-proofs") == 0 && argc == 4) {
		/* every inclusion and consistency proof of the first 1..N lines */
		uint64_t want = strtoull(argv[3], NULL, 10), size, m;
		if ((rc = read_leaves(&leaves, &n, argv[2], NULL)) == 0)
			for (size = 1; size <= want && size <= n && rc == 0; size++) {
				for (m = 0; m < size && rc == 0; m++)
					if ((rc = ag_merkle_inclusion(&p, leaves, size, m)) == 0) {
						printf("inclusion %llu %llu\n", (unsigned long long)m,
						    (unsigned long long)size);
						print_proof(&p);
					}
				for (m = 0; m <= size && rc == 0; m++)
					if ((rc = ag_merkle_consistency(&p, leaves, size, m)) == 0) {
						printf("consistency %llu %llu\n", (unsigned long long)m,
						    (unsigned long long)size);
						print_proof(&p);
					}
			}
	} else if (strcmp(cmd, "merkle-verify-inclusion") == 0 && argc >= 6) {
		if ((rc = ag_unhex(leaf, AG_HASH_LEN, argv[2])) == 0 &&
		    (rc = ag_unhex(root, AG_HASH_LEN, argv[5])) == 0 &&
		    (rc = hex_args(&p, argv + 6, argc - 6)) == 0 &&
		    (rc = ag_merkle_verify_inclusion(leaf, strtoull(argv[3], NULL, 10),
		    strtoull(argv[4], NULL, 10), &p, root)) == 0)
			printf("ok\n");
	} else if (strcmp(cmd, "merkle-verify-consistency") == 0 && argc >= 6) {
		if ((rc = ag_unhex(root, AG_HASH_LEN, argv[4])) == 0 &&
		    (rc = ag_unhex(rootn, AG_HASH_LEN, argv[5])) == 0 &&
		    (rc = hex_args(&p, argv + 6, argc - 6)) == 0 &&
		    (rc = ag_merkle_verify_consistency(strtoull(argv[2], NULL, 10),
		    strtoull(argv[3], NULL, 10), root, rootn, &p)) == 0)
			printf("ok\n");
	} else if (strcmp(cmd, "merkle-selftest") == 0 && argc == 3) {
		rc = merkle_selftest(strtoull(argv[2], NULL, 10));
	} else if (strcmp(cmd, "key-info") == 0 && argc == 3) {
		len = strlen(argv[2]);
		if (len > 4 && strcmp(argv[2] + len - 4, ".pub") == 0)
			rc = ag_key_load_public(&k, argv[2]);
		else
			rc = ag_key_load_private(&k, argv[2]);
		if (rc == 0)
			printf("name %s\nid %s\n", ag_key_name(k), ag_key_id_hex(k));
	} else if (strcmp(cmd, "note-sign") == 0 && argc == 4) {
		if ((rc = ag_key_load_private(&k, argv[2])) == 0 &&
		    (rc = ag_read_file(&b, argv[3], AG_NOTE_MAX)) == 0 &&
		    (rc = ag_note_sign(&note, &len, b.ptr, b.len, k)) == 0)
			fwrite(note, 1, len, stdout);
	} else if (strcmp(cmd, "note-verify") == 0 && argc == 4) {
		if ((rc = ag_key_load_public(&k, argv[2])) == 0 &&
		    (rc = ag_read_file(&b, argv[3], AG_NOTE_MAX + 1)) == 0 &&
		    (rc = ag_note_verify(b.ptr, b.len, k)) == 0)
			printf("ok\n");
	} else if (strcmp(cmd, "checkpoint-sign") == 0 && (argc == 5 || argc == 6)) {
		if ((rc = ag_key_load_private(&k, argv[2])) == 0 &&
		    (rc = ag_merkle_file_root(root, &n, &bytes, argv[4],
		    argc == 6 ? strtoull(argv[5], NULL, 10) : UINT64_MAX)) == 0 &&
		    (rc = ag_checkpoint_sign(&note, &len, argv[3], n, root, k)) == 0)
			fwrite(note, 1, len, stdout);
	} else if (strcmp(cmd, "checkpoint-parse") == 0 && argc == 3) {
		struct ag_checkpoint c;
		if ((rc = ag_read_file(&b, argv[2], AG_NOTE_MAX + 1)) == 0 &&
		    (rc = ag_checkpoint_parse(&c, b.ptr, b.len)) == 0) {
			ag_hex(hex, c.root, AG_HASH_LEN);
			printf("origin %s\nsize %llu\nroot %s\n", c.origin,
			    (unsigned long long)c.size, hex);
		}
	} else {
		fprintf(stderr, "agora-helper: bad arguments for %s\n", cmd);
		return 100;
	}
	free(leaves);
	free(note);
	ag_key_free(k);
	ag_buf_release(&b);
	return rc < 0 ? fail(rc) : 0;
}

/*
 * tamper-bytes BUNDLE KEY: flip each bit of each byte of the bundle's log,
 * one at a time, and check the bundle in-process as agora-verify does.
 * Prints how many flips each check caught first, and each flip that no
 * check caught ("undetected: byte B bit K").
 */
static int
tamper_bytes(const char *path, const char *keyfile)
{
	struct ag_verify_opts o = { 0 };
	struct ag_keyring ring = { { NULL }, 0 };
	struct ag_key *key = NULL;
	json_t *bundle = NULL, *report = NULL, *log;
	unsigned char *bytes = NULL;
	char *b64 = NULL;
	size_t n = 0, i, counts[AG_NCHECKS] = { 0 }, flips = 0, missed = 0;
	const char *s;
	int bit, c, rc;

	if ((rc = ag_key_load_public(&key, keyfile)) < 0 || (rc = ag_bundle_load(&bundle, path)) < 0)
		goto out;
	ring.k[ring.n++] = key;
	o.keys = &ring;
	log = json_object_get(bundle, "log");
	s = json_string_value(json_object_get(log, "base64"));
	if (!s || !(bytes = malloc(strlen(s)))) {
		rc = ag_error_set(AG_EINVALID, "no log in '%s'", path);
		goto out;
	}
	if ((rc = ag_base64_decode(bytes, strlen(s), &n, s, strlen(s))) < 0)
		goto out;
	for (i = 0; i < n; i++)
		for (bit = 0; bit < 8; bit++) {
			const char *failure;
			bytes[i] ^= (unsigned char)(1u << bit);
			if ((rc = ag_base64_encode(&b64, bytes, n)) < 0)
				goto out;
			json_object_set_new(log, "base64", json_string(b64));
			free(b64);
			b64 = NULL;
			bytes[i] ^= (unsigned char)(1u << bit);
			if ((rc = ag_bundle_verify(&report, bundle, &o)) < 0)
				goto out;
			flips++;
			failure = json_string_value(json_object_get(report, "failure"));
			for (c = 0; failure && c < AG_NCHECKS; c++)
				if (strcmp(failure, ag_check_names[c]) == 0)
					counts[c]++;
			if (!failure) {
				printf("undetected: byte %zu bit %d\n", i, bit);
				missed++;
			}
			json_decref(report);
			report = NULL;
		}
	printf("%zu flips of %zu bytes, %zu undetected\n", flips, n, missed);
	for (c = 0; c < AG_NCHECKS; c++)
		if (counts[c])
			printf("%s %zu\n", ag_check_names[c], counts[c]);
out:
	free(bytes);
	free(b64);
	json_decref(report);
	json_decref(bundle);
	ag_key_free(key);
	return rc < 0 ? fail(rc) : 0;
}

/*
 * plan-both STATEDIR FILE...: parse each plan the two ways, item by item
 * and whole (AGORA_TEST_PLAN_WHOLE), and say where they differ: the
 * result, the messages, the normalized head or the item lines. Exit 1 at
 * any difference.
 */
static int
plan_both(int argc, char **argv)
{
	struct ag_conf conf;
	int i, k, rc, bad = 0;

	if ((rc = ag_conf_load(&conf, argv[2])) < 0)
		return fail(rc);
	for (i = 3; i < argc; i++) {
		struct ag_plan_opts o = { 0 };
		struct ag_buf text, errs[2];
		struct ag_plan plan[2];
		char *head[2] = { NULL, NULL };
		int got[2];

		if ((rc = ag_read_file(&text, argv[i], (size_t)AG_PLAN_MAX + 1)) < 0)
			return fail(rc);
		o.name = argv[i];
		for (k = 0; k < 2; k++) {
			if (k)
				setenv("AGORA_TEST_PLAN_WHOLE", "1", 1);
			else
				unsetenv("AGORA_TEST_PLAN_WHOLE");
			ag_buf_init(&errs[k], 16u << 20);
			got[k] = ag_plan_parse(&plan[k], &errs[k], &conf, text.ptr, text.len, &o);
			if (got[k] == 0)
				head[k] = json_dumps(plan[k].head, JSON_COMPACT | JSON_PRESERVE_ORDER);
		}
		if (got[0] != got[1] || errs[0].len != errs[1].len ||
		    (errs[0].len && memcmp(errs[0].ptr, errs[1].ptr, errs[0].len) != 0) ||
		    (got[0] == 0 && (strcmp(head[0], head[1]) != 0 ||
		    plan[0].nitems != plan[1].nitems || plan[0].items.len != plan[1].items.len ||
		    memcmp(plan[0].items.ptr, plan[1].items.ptr, plan[0].items.len) != 0))) {
			printf("%s: item by item %d, whole %d\n%s---\n%s", argv[i], got[0], got[1],
			    errs[0].ptr ? errs[0].ptr : "", errs[1].ptr ? errs[1].ptr : "");
			bad++;
		}
		for (k = 0; k < 2; k++) {
			free(head[k]);
			ag_buf_release(&errs[k]);
			if (got[k] == 0)
				ag_plan_release(&plan[k]);
		}
		ag_buf_release(&text);
	}
	unsetenv("AGORA_TEST_PLAN_WHOLE");
	ag_conf_release(&conf);
	return bad ? 1 : 0;
}

int
main(int argc, char **argv)
{
	static const char *const store_cmds[] = {
		"import", "checkout", "tree", "capture", "apply", "worktree", "outputs", NULL
	};
	size_t i;

	if (argc == 4 && strcmp(argv[1], "sched-props") == 0)
		return sched_props((int)strtol(argv[2], NULL, 10), strtoull(argv[3], NULL, 10));
	if (argc == 4 && strcmp(argv[1], "advance-diff") == 0)
		return advance_diff((int)strtol(argv[2], NULL, 10), strtoull(argv[3], NULL, 10));
	if (argc >= 9 && strcmp(argv[1], "done") == 0)
		return done_cmd(argc, argv);
	if (argc >= 3 && strcmp(argv[1], "plan-both") == 0)
		return plan_both(argc, argv);
	if (argc == 4 && strcmp(argv[1], "tamper-bytes") == 0)
		return tamper_bytes(argv[2], argv[3]);
	if (argc == 5 && strcmp(argv[1], "anchor-read") == 0) {
		struct ag_conf conf;
		const struct ag_anchor *a;
		struct ag_buf b;
		int rc;
		if ((rc = ag_conf_load(&conf, argv[2])) < 0)
			return fail(rc);
		if (!(a = ag_conf_anchor(&conf, argv[3])))
			return fail(ag_error_set(AG_ENOTFOUND, "no anchor '%s'", argv[3]));
		if ((rc = ag_anchor_read(&b, argv[2], a, argv[4])) < 0)
			return fail(rc);
		fwrite(b.ptr, 1, b.len, stdout);
		ag_buf_release(&b);
		ag_conf_release(&conf);
		return 0;
	}
	if (argc >= 3 && (strncmp(argv[1], "merkle-", 7) == 0 || strncmp(argv[1], "note-", 5) == 0 ||
	    strncmp(argv[1], "checkpoint-", 11) == 0 || strcmp(argv[1], "key-info") == 0))
		return audit_cmd(argc, argv);
	for (i = 0; argc >= 4 && store_cmds[i]; i++)
		if (strcmp(argv[1], store_cmds[i]) == 0)
			return store_cmd(argc, argv);
	fprintf(stderr, "usage: agora-helper sched-props N SEED\n"
	    "       agora-helper advance-diff N SEED\n"
	    "       agora-helper import|checkout|tree|capture|apply|worktree|outputs STORE ...\n"
	    "       agora-helper done DIR RUN ITEM ATTEMPT BASE WORKTREE OUTPUTS [PATCH...]\n");
	return 100;
}
