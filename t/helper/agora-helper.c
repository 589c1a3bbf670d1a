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
 * Mutation fuzzing of the input parsers, in-process. Each case is a file
 * of the corpus (or an input an earlier case got accepted) mutated by a
 * generator seeded from SEED and the case's number, so a run is the same
 * every time. Each prints "ok N", or the case that broke a check and why,
 * its input kept in fuzz-KIND.fail; a crash leaves the input of the case
 * in fuzz-KIND.case. Every refusal's message must be one line.
 *   agora-helper fuzz-plan DIR SEED N FILE...   ag_plan_parse item by item and
 *                                     whole, which must agree; a refused plan has a
 *                                     line per error, naming it; an accepted one
 *                                     normalizes to itself, names files in locks/ and
 *                                     loads as DIR/runs/fz/plan.json
 *   agora-helper fuzz-note PUB SEED N FILE...   ag_note_parse, ag_note_verify (it
 *                                     passes only a body PUB signed),
 *                                     ag_checkpoint_parse and ag_log_entry_parse
 *                                     (what parses is spelled as agora writes it)
 *   agora-helper fuzz-control SEED N FILE...    ag_directive_parse of each line (a
 *                                     directive reads back the same written again);
 *                                     the id, actor, time, duration, anchor and lock
 *                                     key parsers on it
 *   agora-helper fuzz-state DIR SEED N RUNDIR...   a run's plan.json and
 *                                     status.jsonl (its chain made whole again) as
 *                                     DIR/runs/fz: ag_run_load, the scheduler,
 *                                     agora-status's questions, ag_artifacts_load
 *   agora-helper fuzz-bundle PUB OBJECTS SEED N FILE...   ag_bundle_load and
 *                                     ag_bundle_verify (OBJECTS "-": none); the report
 *                                     whole, each detail one line, intact only for
 *                                     the corpus' own bytes
 *   agora-helper fuzz-conf DIR SEED N FILE...   DIR/agora.conf: ag_conf_load, and
 *                                     plans checked with what it loaded
 *   agora-helper fuzz-KIND ARG... replay FILE   the checks on one input (for
 *                                     fuzz-state, a directory of both files)
 *   agora-helper fuzz-mutate SEED K FILE...     case K's mutation of the files, to
 *                                     stdout, for fuzzing a program from the shell
 * With AGORA_FUZZ_LEAKS set, a sanitizer build checks for leaks after each
 * case; with AGORA_FUZZ_VERBOSE, a run says how many inputs were accepted.
 *
 * Errors go to stderr as "agora-helper: MESSAGE", with agora's exit codes.
 */
#include "agora.h"
#include "audit.h"
#include "bundle.h"

#include <ctype.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* ---- fuzz: mutation fuzzing of the input parsers ---- */

/*
 * Each case draws from a generator seeded by SEED and its own number
 * alone, so that case K of a seed is the same input whatever ran before.
 */
static unsigned long long
mix64(unsigned long long x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* rnd(n) for any n: 0 when there is nothing to choose from */
static size_t
pick(size_t n)
{
	return n ? (size_t)rnd(n > 0xffffffffu ? 0xffffffffu : (unsigned)n) : 0;
}

#define FZ_MAX		((size_t)8 << 20)	/* an input grows no larger */
#define FZ_SPANS	4096

/* A growable byte string; the helper gives up (abort) when memory does. */
struct fbuf {
	char *p;
	size_t n, cap;
};

static void
fb_splice(struct fbuf *b, size_t off, size_t del, const void *s, size_t n)
{
	if (off > b->n)
		off = b->n;
	if (del > b->n - off)
		del = b->n - off;
	if (b->n - del + n > FZ_MAX)
		return;
	if (b->n - del + n + 1 > b->cap) {
		size_t cap = 2 * (b->n - del + n) + 64;
		if (!(b->p = realloc(b->p, cap)))
			abort();
		b->cap = cap;
	}
	memmove(b->p + off + n, b->p + off + del, b->n - off - del);
	if (n)
		memmove(b->p + off, s, n);
	b->n = b->n - del + n;
	b->p[b->n] = '\0';
}

static void
fb_set(struct fbuf *b, const void *s, size_t n)
{
	b->n = 0;
	fb_splice(b, 0, 0, s, n);
	if (!b->p)
		fb_splice(b, 0, 0, "", 0);
}

static void
fb_puts(struct fbuf *b, const char *s)
{
	fb_splice(b, b->n, 0, s, strlen(s));
}

static void
fb_free(struct fbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* Where the JSON values, strings, keys and members of a text are. */
enum { SP_VALUE, SP_STRING, SP_KEY, SP_MEMBER, SP_ELEM, SP_OBJECT };

struct span {
	size_t off, len;
	int kind;
};

struct spans {
	struct span v[FZ_SPANS];
	size_t n;
};

static void
span_add(struct spans *sp, size_t off, size_t end, int kind)
{
	if (sp->n < FZ_SPANS) {
		sp->v[sp->n].off = off;
		sp->v[sp->n].len = end - off;
		sp->v[sp->n++].kind = kind;
	}
}

static size_t
sk_ws(const char *s, size_t n, size_t i)
{
	while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
		i++;
	return i;
}

/* After the string that starts at s[i], or 0. */
static size_t
scan_string(const char *s, size_t n, size_t i)
{
	for (i++; i < n; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '"')
			return i + 1;
	}
	return 0;
}

/* A tolerant reader of one JSON value: where its parts are; its end, or 0. */
static size_t
scan_value(struct spans *sp, const char *s, size_t n, size_t i, int depth)
{
	size_t start, end, k, m;
	int obj;
	char close;

	i = sk_ws(s, n, i);
	if (i >= n || depth > 100)
		return 0;
	start = i;
	if (s[i] == '"') {
		if (!(end = scan_string(s, n, i)))
			return 0;
		span_add(sp, start, end, SP_STRING);
		return end;
	}
	if (s[i] == '{' || s[i] == '[') {
		obj = s[i] == '{';
		close = obj ? '}' : ']';
		i = sk_ws(s, n, i + 1);
		if (i < n && s[i] == close) {
			span_add(sp, start, i + 1, obj ? SP_OBJECT : SP_VALUE);
			return i + 1;
		}
		for (;;) {
			m = sk_ws(s, n, i);
			if (obj) {
				if (m >= n || s[m] != '"' || !(k = scan_string(s, n, m)))
					return 0;
				span_add(sp, m, k, SP_KEY);
				k = sk_ws(s, n, k);
				if (k >= n || s[k] != ':')
					return 0;
				i = k + 1;
			}
			if (!(end = scan_value(sp, s, n, i, depth + 1)))
				return 0;
			span_add(sp, m, end, obj ? SP_MEMBER : SP_ELEM);
			i = sk_ws(s, n, end);
			if (i < n && s[i] == ',') {
				i++;
				continue;
			}
			if (i < n && s[i] == close)
				break;
			return 0;
		}
		span_add(sp, start, i + 1, obj ? SP_OBJECT : SP_VALUE);
		return i + 1;
	}
	/* a number or a literal: up to a delimiter */
	for (end = i; end < n && s[end] && !strchr(",]}: \t\r\n", s[end]); end++)
		;
	if (end == i)
		return 0;
	span_add(sp, start, end, SP_VALUE);
	return end;
}

/* Every value of a text: one JSON document, or one a line. */
static void
scan_all(struct spans *sp, const char *s, size_t n)
{
	size_t i = 0, end;

	sp->n = 0;
	while ((i = sk_ws(s, n, i)) < n && sp->n < FZ_SPANS) {
		if ((end = scan_value(sp, s, n, i, 0))) {
			i = end;
			continue;
		}
		while (i < n && s[i] != '\n')
			i++;
	}
}

/* A random span of one of the kinds in mask (1 << SP_*), or NULL. */
static const struct span *
some_span(const struct spans *sp, int mask)
{
	size_t i, k = 0;

	for (i = 0; i < sp->n; i++)
		k += (mask >> sp->v[i].kind) & 1;
	if (!k)
		return NULL;
	k = pick(k);
	for (i = 0; i < sp->n; i++)
		if (((mask >> sp->v[i].kind) & 1) && k-- == 0)
			return &sp->v[i];
	return NULL;
}

#define ANY_VALUE	(1 << SP_VALUE | 1 << SP_STRING | 1 << SP_OBJECT)

static const char *const fz_values[] = {
	"0", "-1", "1", "-0", "0.5", "1.0", "2", "3", "10", "1e3", "1e999", "-1e999", "1e-400",
	"0.0001", "-0.0", "1E2", "01", "+1", ".5", "NaN", "Infinity",
	"127", "128", "255", "256", "257", "999", "1000", "1001", "65535", "65536", "65537",
	"100000", "100001", "1000000", "1000001", "2592000", "2592001", "1000000000",
	"1000000001", "-1000000000", "-1000000001", "2147483647", "2147483648", "-2147483648",
	"-2147483649", "4294967295", "4294967296", "9007199254740993", "9223372036854775807",
	"9223372036854775808", "-9223372036854775808", "-9223372036854775809",
	"18446744073709551615", "18446744073709551616", "1e19", "-1e19", "1.5e300",
	"true", "false", "null", "\"\"", "{}", "[]", "[[]]", "[{}]", "{\"\":{}}", "[null]", "[\"\"]",
	"\"\\u0000\"", "\"a\\u0000b\"", "\"\\ud800\"", "\"\\udc00\\ud800\"", "\"\\ud83d\\ude00\"",
	"\"\xff\xfe\"", "\"\xc3\"", "\"\xc3(\"", "\"\xed\xa0\x80\"", "\"\xe2\x80\x94\"",
	"\"\\n\"", "\"a\\nb\"", "\"a\\rb\"", "\"\\t\"", "\"\\u001b[31m\"", "\"\\u007f\"",
	"\"..\"", "\".\"", "\"../x\"", "\"../../etc/passwd\"", "\"a/b\"", "\"/abs\"", "\"-a\"",
	"\"@\"", "\"a b\"", "\"\\\\\"", "\"'\"", "\"%s%n%s\"", "\"\\u00e9\"", "\"a:b\"",
	"\"git:\"", "\"git:0000000000000000000000000000000000000000\"", "\"sha256-\"",
	"\"output\"", "\"patch\"", "\"exec\"", "\"dispatch\"", "\"default\"", "\"bwrap\"",
	"\"PAUSE\"", "\"RESUME\"", "\"CANCEL\"", "\"RETRY\"", "\"DROP-TASK\"", "\"ELEVATE\"",
	"\"global\"", "\"run.submitted\"", "\"run.completed\"", "\"run.sealed\"",
	"\"run.cancelled\"", "\"run.paused\"", "\"item.ready\"", "\"item.running\"",
	"\"item.done\"", "\"item.failed\"", "\"item.retrying\"", "\"item.skipped\"",
	"\"item.cancelled\"", "\"control.applied\"", "\"dropped\"", "\"not started\"",
	"\"2026-01-01T00:00:00.000Z\"", "\"9999-12-31T23:59:59.999Z\"",
	"\"0000-00-00T00:00:00.000Z\"", "\"-999-99-99T99:99:99.-99Z\"",
	"\"0000000000000000000000000000000000000000000000000000000000000000\"",
	"{\"kind\":\"patch\"}", "{\"kind\":\"output\",\"path\":\"x\"}",
	"{\"from\":\"a\",\"select\":{\"kind\":\"patch\"}}", "{\"base64\":\"\"}",
	"{\"base64\":\"AAAA\"}", "{\"base64\":\"@0\"}", "{\"base64\":\"@99\"}", "\"@0\"",
	"{\"llm\":1}", "{\"argv\":[\"true\"]}", "{\"sh\":\"true\"}",
};

static const char *const fz_keys[] = {
	"id", "executor", "inputs", "depends_on", "resourceLocks", "priority", "timeout",
	"maxAttempts", "slots", "title", "needs", "from", "select", "kind", "path", "argv", "sh",
	"cwd", "env", "subagent", "workerInput", "repo", "base", "goal_id", "nodes", "edges",
	"source", "target", "expected_artifacts", "metadata", "queue", "actor", "items", "seq",
	"at", "run", "event", "item", "status", "attempt", "reason", "resultRef", "patchSha256",
	"outputs", "prev", "planSha256", "logIndex", "offset", "globalOffset", "directive",
	"scope", "after", "afterAttempt", "itemCount", "submittedAt", "globalPaused", "format",
	"version", "plan", "log", "checkpoint", "base64", "global", "proof", "size", "ref", "key",
	"keyId", "root", "exit", "signal", "permanent", "rewound", "AGORA_X", "", "a\\u0000",
	"\\u00e9", "base6\\u0034",
};

/* Whole members, for what takes two mutations in one place to make */
static const char *const fz_members[] = {
	"\"base6\\u0034\":\"@9\"", "\"base6\\u0034\":\"@0\"", "\"after\":\"a\"",
	"\"after\":\"s1\"", "\"afterAttempt\":1", "\"attempt\":2147483647", "\"attempt\":-1",
	"\"attempt\":0", "\"slots\":{\"llm\":2147483647}", "\"slots\":{\"llm\":-5}",
	"\"offset\":-1", "\"globalOffset\":9223372036854775807", "\"priority\":2147483648",
	"\"timeout\":1e300", "\"timeout\":-1", "\"timeout\":0.0001", "\"maxAttempts\":0",
	"\"itemCount\":100001", "\"itemCount\":-1", "\"logIndex\":-1",
	"\"size\":18446744073709551615", "\"resultRef\":\"git:0000000000000000000000000000000000000000\"",
	"\"outputs\":[{\"path\":\"x\",\"ref\":\"git:0000000000000000000000000000000000000000\",\"size\":-1}]",
	"\"needs\":{\"code\":\"git:0000000000000000000000000000000000000000\"}",
	"\"directive\":\"RETRY\",\"item\":\"a\"",
	"\"directive\":\"ELEVATE\",\"priority\":2147483647",
	"\"scope\":\"global\",\"directive\":\"PAUSE\"", "\"event\":\"item.running\"",
	"\"event\":\"control.applied\"", "\"status\":\"running\"",
	"\"select\":{\"kind\":\"output\",\"path\":\"\"}",
	"\"needs\":{\"n\":{\"from\":\"a\",\"select\":{\"kind\":\"patch\"}}}",
	"\"inputs\":{\"subagent\":\"edit\"},\"executor\":\"dispatch\"",
	"\"env\":{\"AGORA_DIR\":\"x\",\"A=B\":\"y\",\"\":\"z\"}",
};

/* Interesting single bytes */
static const unsigned char fz_bytes[] = {
	0, 1, '\t', '\n', '\r', ' ', '"', '\'', ',', '-', '.', '/', '0', '9', ':', '@', 'A',
	'[', '\\', ']', 'e', '{', '}', 0x7f, 0x80, 0xbf, 0xc0, 0xc3, 0xe2, 0xed, 0xf0, 0xf4,
	0xf8, 0xfe, 0xff,
};

/* Text tokens to insert anywhere */
static const char *const fz_tokens[] = {
	"\\u0000", "\\ud800", "\\\\", "\\\"", "\"", "\n", "\n\n", "\r\n", "\xe2\x80\x94 ",
	"\xe2\x80\x94", "=", "==", "+", "/", "@", "#", " @", "{", "}", "[", "]", ",", ":",
	"\"\":", ",\"id\":\"x\"", "e999", "9999999999999999999", "-", "..", "/..", "%00",
};

/* A JSON value: the dictionary's, or made up (long, deep, wide). */
static void
gen_value(struct fbuf *v, const struct fbuf *doc, const struct spans *sp)
{
	static const size_t longs[] = { 127, 128, 129, 200, 201, 257, 1024, 1025, 4096,
		65535, 65536, 65537, 300000 };
	static const size_t depths[] = { 30, 31, 32, 33, 34, 64, 200, 2047, 2048, 2049, 5000 };
	const struct span *s;
	size_t i, k;

	v->n = 0;
	fb_splice(v, 0, 0, "", 0);
	/* the big ones are rare, the cases stay quick */
	switch (rnd(40)) {
	case 0: /* a long string */
		k = longs[pick(sizeof(longs) / sizeof(*longs))];
		fb_puts(v, "\"");
		for (i = 0; i < k; i++)
			fb_puts(v, rnd(64) ? "a" : "\\n");
		fb_puts(v, "\"");
		break;
	case 1: /* deep nesting */
		k = depths[pick(sizeof(depths) / sizeof(*depths))];
		for (i = 0; i < k; i++)
			fb_puts(v, (k & 1) ? "[" : "{\"a\":");
		fb_puts(v, "1");
		for (i = 0; i < k; i++)
			fb_puts(v, (k & 1) ? "]" : "}");
		break;
	case 2: /* a wide array */
		k = (size_t[]){ 255, 256, 257, 1000, 1001, 4097, 10001 }[rnd(7)];
		fb_puts(v, "[");
		for (i = 0; i < k; i++) {
			char e[32];
			snprintf(e, sizeof(e), "%s\"k%zu\"", i ? "," : "", rnd(4) ? i : 0);
			fb_puts(v, e);
		}
		fb_puts(v, "]");
		break;
	case 3: case 4: case 5: case 6: /* another value of the same text */
		if (doc && sp && (s = some_span(sp, ANY_VALUE))) {
			fb_splice(v, 0, 0, doc->p + s->off, s->len);
			break;
		}
		/* FALLTHROUGH */
	default:
		fb_puts(v, fz_values[pick(sizeof(fz_values) / sizeof(*fz_values))]);
		break;
	}
}

/* Put k more copies of a member or an element after it. */
static void
repeat(struct fbuf *b, const struct span *s, size_t k)
{
	struct fbuf v = { 0 };
	size_t i;

	fb_set(&v, "", 0);
	for (i = 0; i < k; i++) {
		fb_puts(&v, ",");
		fb_splice(&v, v.n, 0, b->p + s->off, s->len);
	}
	fb_splice(b, s->off + s->len, 0, v.p, v.n);
	fb_free(&v);
}

/* One mutation of b; c holds the other inputs, for splices. */
static void
mutate_once(struct fbuf *b, const struct fbuf *c, size_t nc, int lines)
{
	static struct spans sp;
	struct fbuf v = { 0 };
	const struct span *s, *t;
	size_t i, j, k, n = b->n;
	const struct fbuf *o = nc ? &c[pick(nc)] : b;
	int op = (int)rnd(24);

	switch (op) {
	case 0: /* flip a bit */
		if (n)
			b->p[pick(n)] ^= (char)(1 << rnd(8));
		return;
	case 1: /* an interesting byte */
		if (n)
			b->p[pick(n)] = (char)fz_bytes[pick(sizeof(fz_bytes))];
		return;
	case 2: /* insert bytes */
		i = pick(n + 1);
		if (rnd(2)) {
			unsigned char x[8];
			k = 1 + pick(8);
			for (j = 0; j < k; j++)
				x[j] = rnd(2) ? fz_bytes[pick(sizeof(fz_bytes))] : (unsigned char)rnd(256);
			fb_splice(b, i, 0, x, k);
		} else {
			const char *tok = fz_tokens[pick(sizeof(fz_tokens) / sizeof(*fz_tokens))];
			fb_splice(b, i, 0, tok, strlen(tok));
		}
		return;
	case 3: /* delete a range */
		i = pick(n);
		fb_splice(b, i, 1 + pick(rnd(4) ? 8 : 256), NULL, 0);
		return;
	case 4: /* duplicate a range */
		if (!n)
			return;
		i = pick(n);
		k = 1 + pick(rnd(4) ? 16 : 512);
		if (k > n - i)
			k = n - i;
		fb_set(&v, b->p + i, k);
		fb_splice(b, pick(n + 1), 0, v.p, v.n);
		fb_free(&v);
		return;
	case 5: /* splice: this one's head, another's tail */
		i = pick(n + 1);
		j = pick(o->n + 1);
		fb_set(&v, o->p + j, o->n - j);
		fb_splice(b, i, n - i, v.p, v.n);
		fb_free(&v);
		return;
	case 6: /* a piece of another */
		if (!o->n)
			return;
		i = pick(o->n);
		k = 1 + pick(o->n - i);
		if (k > 4096)
			k = 4096;
		fb_set(&v, o->p + i, k);
		fb_splice(b, pick(n + 1), pick(4) ? 0 : pick(k + 1), v.p, v.n);
		fb_free(&v);
		return;
	case 7: /* cut short */
		if (n) {
			b->n = pick(n);
			b->p[b->n] = '\0';
		}
		return;
	}
	if (lines && op < 12) {
		/* whole lines: duplicate, drop, swap, or an empty one */
		size_t starts[512], ns = 0;
		for (i = 0; i < n && ns < 512; i++)
			if (i == 0 || b->p[i - 1] == '\n')
				starts[ns++] = i;
		if (!ns)
			return;
		i = pick(ns);
		k = (i + 1 < ns ? starts[i + 1] : n) - starts[i];
		fb_set(&v, b->p + starts[i], k);
		if (v.n && v.p[v.n - 1] != '\n')
			fb_puts(&v, "\n");
		switch (op) {
		case 8:
			fb_splice(b, starts[pick(ns)], 0, v.p, v.n);
			break;
		case 9:
			fb_splice(b, starts[i], k, NULL, 0);
			break;
		case 10:
			j = pick(ns);
			if (j != i) {
				fb_splice(b, starts[i], k, NULL, 0);
				fb_splice(b, j < i ? starts[j] : starts[j] - k, 0, v.p, v.n);
			}
			break;
		default:
			fb_splice(b, starts[i], 0, "\n", 1);
			break;
		}
		fb_free(&v);
		return;
	}
	/* JSON-aware */
	if (op < 12)
		op += 4;
	scan_all(&sp, b->p, b->n);
	switch (op) {
	case 12: case 13: case 14: /* a value for another of the dictionary */
		if ((s = some_span(&sp, ANY_VALUE))) {
			gen_value(&v, b, &sp);
			fb_splice(b, s->off, s->len, v.p, v.n);
		}
		break;
	case 15: /* a key for another: a known field, or a duplicate */
		if ((s = some_span(&sp, 1 << SP_KEY))) {
			const char *key = fz_keys[pick(sizeof(fz_keys) / sizeof(*fz_keys))];
			fb_puts(&v, "\"");
			fb_puts(&v, key);
			fb_puts(&v, "\"");
			fb_splice(b, s->off, s->len, v.p, v.n);
		}
		break;
	case 16: /* a member twice: a duplicate key */
		if ((s = some_span(&sp, 1 << SP_MEMBER | 1 << SP_ELEM)))
			repeat(b, s, rnd(8) ? 1 : 300);
		break;
	case 17: /* drop a member or an element, with its comma */
		if ((s = some_span(&sp, 1 << SP_MEMBER | 1 << SP_ELEM))) {
			i = s->off;
			k = s->len;
			j = sk_ws(b->p, b->n, i + k);
			if (j < b->n && b->p[j] == ',')
				k = j + 1 - i;
			fb_splice(b, i, k, NULL, 0);
		}
		break;
	case 18: /* a new member of an object: a known key */
		if ((s = some_span(&sp, 1 << SP_OBJECT))) {
			const char *key = fz_keys[pick(sizeof(fz_keys) / sizeof(*fz_keys))];
			struct fbuf val = { 0 };
			if (rnd(3) == 0) {
				fb_puts(&v, fz_members[pick(sizeof(fz_members) / sizeof(*fz_members))]);
			} else {
				gen_value(&val, b, &sp);
				fb_puts(&v, "\"");
				fb_puts(&v, key);
				fb_puts(&v, "\":");
				fb_splice(&v, v.n, 0, val.p, val.n);
			}
			if (s->len > 2)
				fb_puts(&v, ",");
			fb_splice(b, s->off + 1, 0, v.p, v.n);
			fb_free(&val);
		}
		break;
	case 19: /* wrap a value in arrays or objects */
		if ((s = some_span(&sp, ANY_VALUE))) {
			struct fbuf close = { 0 };
			k = rnd(4) ? 1 + pick(3) : (size_t[]){ 31, 32, 33, 2048 }[rnd(4)];
			fb_set(&close, "", 0);
			while (k--) {
				int arr = (int)rnd(2);
				fb_puts(&v, arr ? "[" : "{\"k\":");
				fb_splice(&close, 0, 0, arr ? "]" : "}", 1);
			}
			fb_splice(b, s->off + s->len, 0, close.p, close.n);
			fb_splice(b, s->off, 0, v.p, v.n);
			fb_free(&close);
		}
		break;
	case 20: /* swap two values */
		s = some_span(&sp, ANY_VALUE);
		t = some_span(&sp, ANY_VALUE);
		if (s && t && (s->off + s->len <= t->off || t->off + t->len <= s->off)) {
			struct fbuf w = { 0 };
			if (s->off > t->off) {
				const struct span *x = s;
				s = t;
				t = x;
			}
			fb_set(&v, b->p + s->off, s->len);
			fb_set(&w, b->p + t->off, t->len);
			fb_splice(b, t->off, t->len, v.p, v.n);
			fb_splice(b, s->off, s->len, w.p, w.n);
			fb_free(&w);
		}
		break;
	case 21: /* a string's content: another string of the text, or a made-up one */
		if ((s = some_span(&sp, 1 << SP_STRING | 1 << SP_KEY)) &&
		    (t = some_span(&sp, 1 << SP_STRING | 1 << SP_KEY)))
			fb_set(&v, b->p + t->off, t->len);
		else
			break;
		if (rnd(3) == 0) {
			/* an id one byte off, or too long */
			if (v.n > 2 && rnd(2))
				v.p[1 + pick(v.n - 2)] = (char)fz_bytes[pick(sizeof(fz_bytes))];
			else
				for (i = 0; i < 128; i++)
					fb_splice(&v, 1, 0, "x", 1);
		}
		fb_splice(b, s->off, s->len, v.p, v.n);
		break;
	default: /* an array element many times */
		if ((s = some_span(&sp, 1 << SP_ELEM)))
			repeat(b, s, (size_t[]){ 1, 2, 255, 256, 1000 }[rnd(5)]);
		break;
	}
	fb_free(&v);
}

/*
 * Inputs of earlier cases that the code under test accepted: half the
 * cases start from one of them, so that mutations reach past the first
 * check that a mutation of the corpus mostly fails.
 */
#define FZ_POOL		256
static struct fbuf fz_pool[FZ_POOL];
static size_t fz_npool;

static void
pool_add(const struct fbuf *in)
{
	size_t i = fz_npool < FZ_POOL ? fz_npool++ : pick(FZ_POOL);

	if (in->n <= 65536)
		fb_set(&fz_pool[i], in->p, in->n);
}

/* A case's input: one of the corpus, mutated a few times (rarely many). */
static void
mutate(struct fbuf *out, const struct fbuf *c, size_t nc, int lines)
{
	const struct fbuf *base = fz_npool && rnd(2) ? &fz_pool[pick(fz_npool)] : &c[pick(nc)];
	size_t k = rnd(2) ? 1 : rnd(8) ? 2 + pick(2) : 1 + pick(16);

	fb_set(out, base->p, base->n);
	while (k--)
		mutate_once(out, c, nc, lines);
}

/*
 * A file written again for every case through a descriptor kept open:
 * ext4 flushes a file truncated to zero when it is closed, and the cases
 * waited on the disk.
 */
struct fz_file {
	char path[AG_PATH_MAX];
	int fd;
};

static int
fz_put(struct fz_file *f, const struct fbuf *b)
{
	if (f->fd < 0 && (f->fd = open(f->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
		return ag_error_sys(AG_ERROR, "cannot write '%s'", f->path);
	if (lseek(f->fd, 0, SEEK_SET) < 0 || ag_write_all(f->fd, b->p, b->n) < 0 ||
	    ftruncate(f->fd, (off_t)b->n) < 0)
		return ag_error_sys(AG_ERROR, "cannot write '%s'", f->path);
	return 0;
}

static void
fz_close(struct fz_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
}

/*
 * The case at hand. Its input is written to fuzz-KIND.case (a directory
 * of files when it has several parts) before it runs, so that whatever
 * ends the process (a sanitizer, a signal, the OOM killer) leaves it
 * behind; a failed check leaves it in fuzz-KIND.fail. Replaying one of
 * those runs the same checks on it.
 */
static struct {
	const char *kind;
	unsigned long long seed;
	long n;			/* the case; -1 when none runs, or replaying */
	const char *replay;
	const char *names[2];
	struct fbuf *parts[2];
	size_t nparts;
	long passed;		/* cases whose input the code under test accepted */
	struct fz_file *cases;	/* fuzz-KIND.case, or its files */
} fz = { .n = -1 };

/* ASan's and UBSan's hook, and LeakSanitizer's check, when the build has them */
void __sanitizer_set_death_callback(void (*cb)(void)) __attribute__((weak));
int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

static void
fz_save(char *out, size_t size, const char *suffix)
{
	struct fz_file f = { .fd = -1 };
	size_t i;

	snprintf(out, size, "fuzz-%s.%s", fz.kind, suffix);
	if (fz.nparts > 1)
		mkdir(out, 0755);
	for (i = 0; i < fz.nparts; i++) {
		struct fz_file *to = strcmp(suffix, "case") == 0 ? &fz.cases[i] : &f;
		if (fz.nparts > 1)
			snprintf(to->path, sizeof(to->path), "%s/%s", out, fz.names[i]);
		else
			snprintf(to->path, sizeof(to->path), "%s", out);
		if (fz_put(to, fz.parts[i]) < 0)
			fprintf(stderr, "agora-helper: %s\n", ag_error_msg());
		fz_close(&f);
	}
}

/* What a run leaves when it ends well: no fuzz-KIND.case. */
static void
fz_unsave(void)
{
	char path[AG_PATH_MAX];
	size_t i;

	for (i = 0; i < fz.nparts; i++)
		fz_close(&fz.cases[i]);
	for (i = 0; fz.nparts > 1 && i < fz.nparts; i++) {
		snprintf(path, sizeof(path), "fuzz-%s.case/%s", fz.kind, fz.names[i]);
		unlink(path);
	}
	snprintf(path, sizeof(path), "fuzz-%s.case", fz.kind);
	if (fz.nparts > 1)
		rmdir(path);
	else
		unlink(path);
}

static void
fz_died(void)
{
	char msg[256];

	if (fz.n < 0)
		return;
	snprintf(msg, sizeof(msg), "seed %llu case %ld crashed; its input is in fuzz-%s.case\n",
	    fz.seed, fz.n, fz.kind);
	if (ag_write_all(STDERR_FILENO, msg, strlen(msg)) < 0)
		return;
}

static void
fz_signal(int sig)
{
	fz_died();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* A broken property: say which case broke it, keep its input, and fail. */
static int
fz_fail(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static int
fz_fail(const char *fmt, ...)
{
	char msg[1024], where[64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (fz.n < 0) {
		printf("%s: %s\n", fz.replay, msg);
	} else {
		fz_save(where, sizeof(where), "fail");
		printf("seed %llu case %ld: %s; its input is in %s\n", fz.seed, fz.n, msg, where);
	}
	return 1;
}

/* Why s[0..n) is not one line of text, or NULL. */
static const char *
not_one_line(const char *s, size_t n)
{
	static char why[64];
	size_t i;

	if (!s || !n)
		return "it is empty";
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
			snprintf(why, sizeof(why), "byte %zu is 0x%02x", i, (unsigned char)s[i]);
			return why;
		}
	return NULL;
}

/* A function refused its input: its code is rc and its message is one line. */
static int
refused(const char *what, int rc, int want)
{
	const char *m = ag_error_msg(), *why;

	if (rc != want && rc != AG_EINVALID)
		return fz_fail("%s: code %d (%s)", what, rc, ag_quote(m, strlen(m)));
	if ((why = not_one_line(m, strlen(m))))
		return fz_fail("%s: its message is not one line (%s): '%s'", what, why,
		    ag_quote(m, strlen(m)));
	return 0;
}

static void
fz_corpus(struct fbuf **out, size_t *n, char **files, int nfiles)
{
	struct ag_buf b;
	int i;

	*out = calloc((size_t)nfiles + 1, sizeof(**out));
	*n = 0;
	for (i = 0; i < nfiles; i++) {
		if (ag_read_file(&b, files[i], FZ_MAX) < 0) {
			fprintf(stderr, "agora-helper: %s\n", ag_error_msg());
			exit(111);
		}
		fb_set(&(*out)[(*n)++], b.ptr, b.len);
		ag_buf_release(&b);
	}
}

static void
fz_corpus_free(struct fbuf *c, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		fb_free(&c[i]);
	free(c);
}

/* The file's bytes, or a directory's files of the case's part names. */
static int
fz_load_replay(const char *path)
{
	char p[AG_PATH_MAX];
	struct ag_buf b;
	struct stat st;
	size_t i;
	int rc;

	for (i = 0; i < fz.nparts; i++) {
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			snprintf(p, sizeof(p), "%s/%s", path, fz.names[i]);
		else
			snprintf(p, sizeof(p), "%s", path);
		if ((rc = ag_read_file(&b, p, FZ_MAX)) < 0)
			return fail(rc);
		fb_set(fz.parts[i], b.ptr, b.len);
		ag_buf_release(&b);
	}
	return 0;
}

/*
 * Run cases 0 .. N-1 of SEED, or replay the input in a file: gen makes
 * fz.parts for the case, test runs the code under test on them and
 * checks what it did (1: a broken property, said with fz_fail).
 */
static int
fz_main(void *ctx, int (*gen)(void *), int (*test)(void *), const char *seed, const char *count)
{
	int leaks = getenv("AGORA_FUZZ_LEAKS") && __lsan_do_recoverable_leak_check;
	struct fz_file cases[2] = { { .fd = -1 }, { .fd = -1 } };
	char where[64];
	long i, n, was;
	int rc;

	fz.cases = cases;
	json_object_seed(1);
	if (__sanitizer_set_death_callback) {
		__sanitizer_set_death_callback(fz_died);
	} else {
		signal(SIGSEGV, fz_signal);
		signal(SIGBUS, fz_signal);
		signal(SIGFPE, fz_signal);
		signal(SIGILL, fz_signal);
		signal(SIGABRT, fz_signal);
	}
	if (strcmp(seed, "replay") == 0) {
		fz.replay = count;
		if ((rc = fz_load_replay(count)) != 0)
			return rc;
		if ((rc = test(ctx)) == 0)
			printf("ok 1\n");
		return rc;
	}
	fz.seed = strtoull(seed, NULL, 10);
	n = strtol(count, NULL, 10);
	for (i = 0, rc = 0; i < n; i++) {
		fz.n = -1;
		rng = mix64(fz.seed ^ mix64((unsigned long long)i));
		gen(ctx);
		fz.n = i;
		fz_save(where, sizeof(where), "case");
		was = fz.passed;
		if ((rc = test(ctx)) != 0)
			break;
		if (fz.passed > was && fz.nparts == 1)
			pool_add(fz.parts[0]);
		if (leaks && __lsan_do_recoverable_leak_check()) {
			rc = fz_fail("leaked memory (LeakSanitizer's report is above)");
			break;
		}
	}
	fz.n = -1;
	fz_unsave();
	for (i = 0; i < (long)fz_npool; i++)
		fb_free(&fz_pool[i]);
	if (rc)
		return rc;
	printf("ok %ld\n", n);
	if (getenv("AGORA_FUZZ_VERBOSE"))
		fprintf(stderr, "fuzz-%s: %ld of %ld inputs accepted\n", fz.kind, fz.passed, n);
	return 0;
}

/*
 * A log whose hash chain is whole again after a mutation, so that the
 * replay reads past it: where a line has them, its seq is its number and
 * its prev the SHA-256 of the line before.
 */
static void
rechain(struct fbuf *log)
{
	char prev[65], num[32];
	size_t start = 0, end, line = 0, i;
	char *nl, *p;

	memset(prev, '0', 64);
	prev[64] = '\0';
	while (start < log->n && (nl = memchr(log->p + start, '\n', log->n - start))) {
		end = (size_t)(nl - log->p);
		if ((p = memmem(log->p + start, end - start, "\"seq\":", 6))) {
			i = (size_t)(p - log->p) + 6;
			p = log->p + i;
			while (i < end && (log->p[i] == '-' || (log->p[i] >= '0' && log->p[i] <= '9')))
				i++;
			snprintf(num, sizeof(num), "%zu", line);
			fb_splice(log, (size_t)(p - log->p), i - (size_t)(p - log->p), num, strlen(num));
			end = (size_t)((char *)memchr(log->p + start, '\n', log->n - start) - log->p);
		}
		if ((p = memmem(log->p + start, end - start, "\"prev\":\"", 8))) {
			i = (size_t)(p - log->p) + 8;
			p = log->p + i;
			while (i < end && log->p[i] != '"')
				i++;
			fb_splice(log, (size_t)(p - log->p), i - (size_t)(p - log->p), prev, 64);
			end = (size_t)((char *)memchr(log->p + start, '\n', log->n - start) - log->p);
		}
		ag_sha256_hex(prev, log->p + start, end - start);
		start = end + 1;
		line++;
	}
}

/* ---- fuzz-plan ---- */

struct plan_fz {
	struct ag_conf conf;
	struct fbuf *corpus;
	size_t ncorpus;
	struct fbuf in;
	char plan_path[AG_PATH_MAX];
};

static int
plan_gen(void *arg)
{
	struct plan_fz *x = arg;

	mutate(&x->in, x->corpus, x->ncorpus, 0);
	return 0;
}

/* The options of agora-validate, from the plan's bytes, so that a replay finds the same. */
static void
plan_opts(struct ag_plan_opts *o, const struct fbuf *in)
{
	static const char *const vals[] = { "exec", "dispatch", "porki", "nope", "../x", "",
		"default", "other", "a b", "x\ny" };
	unsigned long long h = 1469598103934665603ULL;
	size_t i, nv = sizeof(vals) / sizeof(*vals);

	for (i = 0; i < in->n; i++)
		h = (h ^ (unsigned char)in->p[i]) * 1099511628211ULL;
	h = mix64(h);
	memset(o, 0, sizeof(*o));
	o->name = "fuzz.json";
	if (h % 8 == 0)
		o->executor = vals[(h >> 8) % nv];
	if ((h >> 16) % 16 == 0)
		o->id = vals[(h >> 20) % nv];
	if ((h >> 28) % 16 == 0)
		o->queue = vals[(h >> 32) % nv];
}

/* A refused plan: one line per error, each naming the plan. */
static int
plan_errors(const struct ag_buf *errs, const char *name)
{
	size_t off = 0, len, nl = strlen(name);
	const char *e, *why;

	if (!errs->len)
		return fz_fail("refused with no error");
	while (off < errs->len) {
		if (!(e = memchr(errs->ptr + off, '\n', errs->len - off)))
			return fz_fail("the errors do not end in a newline");
		len = (size_t)(e - errs->ptr) - off;
		if (len <= nl || memcmp(errs->ptr + off, name, nl) != 0 || errs->ptr[off + nl] != ':')
			return fz_fail("error '%s' does not name the plan",
			    ag_quote(errs->ptr + off, len));
		if ((why = not_one_line(errs->ptr + off, len)))
			return fz_fail("error '%s' is not one line (%s)", ag_quote(errs->ptr + off, len),
			    why);
		off += len + 1;
	}
	return 0;
}

/* What plan.json holds for a plan: its fields, then its items. */
static char *
plan_text(const struct ag_plan *p)
{
	char *head = json_dumps(p->head, JSON_COMPACT | JSON_PRESERVE_ORDER);
	struct ag_buf b;

	ag_buf_init(&b, 0);
	if (!head || ag_buf_put(&b, head, strlen(head) - 1) < 0 ||
	    ag_buf_puts(&b, strlen(head) > 2 ? ",\"items\":[\n" : "\"items\":[\n") < 0 ||
	    ag_buf_put(&b, p->items.ptr, p->items.len - 2) < 0 || ag_buf_puts(&b, "\n]}\n") < 0)
		abort();
	free(head);
	return ag_buf_detach(&b);
}

/* The file a lock key names is a plain name in locks/. */
static int
lock_name_ok(const char *key)
{
	char name[256];
	int rc;

	if ((rc = ag_lock_filename(name, sizeof(name), key)) < 0)
		return fz_fail("lock key '%s': %s", ag_quote(key, strlen(key)), ag_error_msg());
	if (!name[0] || name[0] == '.' || strchr(name, '/') || strlen(name) > 255)
		return fz_fail("lock key '%s' makes the file name '%s'", ag_quote(key, strlen(key)),
		    ag_quote(name, strlen(name)));
	return 0;
}

/* Parse a normalized plan again, as reconcile does what agora-submit delivers. */
static int
plan_again(struct ag_plan *out, const struct ag_conf *conf, const struct ag_plan *p)
{
	struct ag_plan_opts o = { .name = "normalized.json" };
	struct ag_buf errs;
	char *text = plan_text(p);
	int rc;

	ag_buf_init(&errs, 16u << 20);
	rc = ag_plan_parse(out, &errs, conf, text, strlen(text), &o);
	free(text);
	if (rc < 0)
		fz_fail("its normalized form is refused: %s", errs.ptr ? ag_quote(errs.ptr,
		    strlen(errs.ptr)) : ag_error_msg());
	ag_buf_release(&errs);
	return rc < 0;
}

/* The items of two normalized plans are the same values, in the same order. */
static int
same_items(const struct ag_plan *a, const struct ag_plan *b)
{
	json_t *x = NULL, *y = NULL;
	const char *p = a->items.ptr, *q = b->items.ptr, *pe, *qe;
	int same = a->nitems == b->nitems && json_equal(a->head, b->head);

	while (same && p < a->items.ptr + a->items.len) {
		pe = memchr(p, '\n', a->items.len - (size_t)(p - a->items.ptr));
		qe = memchr(q, '\n', b->items.len - (size_t)(q - b->items.ptr));
		x = json_loadb(p, (size_t)(pe - p) - 1, 0, NULL);
		y = qe ? json_loadb(q, (size_t)(qe - q) - 1, 0, NULL) : NULL;
		same = x && y && json_equal(x, y);
		json_decref(x);
		json_decref(y);
		p = pe + 1;
		q = qe ? qe + 1 : q;
	}
	return same;
}

/*
 * An accepted plan: what agora-submit delivers of it is accepted again
 * with the same items, and what reconcile keeps of that normalizes to
 * itself byte for byte; each of its lock keys names a file in locks/;
 * and reconcile loads it as plan.json.
 */
static int
plan_accepted(struct plan_fz *x, struct ag_plan *p)
{
	struct ag_plan again, twice;
	struct ag_actions acts = { 0 };
	struct ag_run *r = NULL;
	char *line, *nl;
	json_t *it, *k;
	size_t i;
	int rc, bad = 0;

	if (plan_again(&again, &x->conf, p))
		return 1;
	if (!same_items(p, &again))
		bad = fz_fail("its normalized form normalizes to other items");
	else if (!(bad = plan_again(&twice, &x->conf, &again))) {
		if (!json_equal(again.head, twice.head) || again.items.len != twice.items.len ||
		    memcmp(again.items.ptr, twice.items.ptr, again.items.len) != 0)
			bad = fz_fail("its normalized form does not normalize to itself");
		ag_plan_release(&twice);
	}
	ag_plan_release(&again);
	for (line = p->items.ptr; !bad && line < p->items.ptr + p->items.len; line = nl + 1) {
		nl = memchr(line, '\n', p->items.len - (size_t)(line - p->items.ptr));
		if (!(it = json_loadb(line, (size_t)(nl - line) - 1, 0, NULL)))
			return fz_fail("an item line is not JSON");
		json_array_foreach(json_object_get(it, "resourceLocks"), i, k)
			if (!bad)
				bad = lock_name_ok(json_string_value(k));
		json_decref(it);
	}
	if (bad)
		return bad;
	unlink(x->plan_path);
	if ((rc = ag_plan_save(x->plan_path, p, 1, 0644)) < 0)
		return fz_fail("cannot save it: %s", ag_error_msg());
	if ((rc = ag_run_load(&r, &x->conf, "fz", 0)) < 0)
		return fz_fail("reconcile cannot load it: %s", ag_error_msg());
	if (r->nitems != p->nitems)
		bad = fz_fail("it loads with %zu items, not %zu", r->nitems, p->nitems);
	else if (ag_sched_advance(&acts, r) < 0)
		bad = fz_fail("ag_sched_advance: %s", ag_error_msg());
	ag_actions_release(&acts);
	ag_run_free(r);
	return bad;
}

/*
 * Each plan is parsed both ways, item by item and whole, which must
 * agree; a refused one gets a line per error, an accepted one must
 * stand the checks of plan_accepted.
 */
static int
plan_test(void *arg)
{
	struct plan_fz *x = arg;
	struct ag_plan_opts o;
	struct ag_plan plan[2];
	struct ag_buf errs[2];
	int got[2], k, bad = 0;

	plan_opts(&o, &x->in);
	for (k = 0; k < 2; k++) {
		if (k)
			setenv("AGORA_TEST_PLAN_WHOLE", "1", 1);
		ag_buf_init(&errs[k], 16u << 20);
		got[k] = ag_plan_parse(&plan[k], &errs[k], &x->conf, x->in.p, x->in.n, &o);
	}
	unsetenv("AGORA_TEST_PLAN_WHOLE");
	if (got[0] != got[1] || errs[0].len != errs[1].len ||
	    (errs[0].len && memcmp(errs[0].ptr, errs[1].ptr, errs[0].len) != 0) ||
	    (got[0] == 0 && (!json_equal(plan[0].head, plan[1].head) ||
	    plan[0].items.len != plan[1].items.len ||
	    memcmp(plan[0].items.ptr, plan[1].items.ptr, plan[0].items.len) != 0)))
		bad = fz_fail("item by item (%d) and whole (%d) differ: '%s' / '%s'", got[0], got[1],
		    errs[0].ptr ? ag_quote(errs[0].ptr, errs[0].len) : "",
		    errs[1].ptr ? ag_quote(errs[1].ptr, errs[1].len) : "");
	else if (got[0] == AG_EINVALID)
		bad = plan_errors(&errs[0], o.name);
	else if (got[0] < 0)
		bad = fz_fail("ag_plan_parse: %s (%d), not a verdict", ag_error_msg(), got[0]);
	else if (!(bad = plan_accepted(x, &plan[0])))
		fz.passed++;
	for (k = 0; k < 2; k++) {
		ag_buf_release(&errs[k]);
		if (got[k] == 0)
			ag_plan_release(&plan[k]);
	}
	return bad;
}

static int
fuzz_plan(char **argv, int argc)
{
	struct plan_fz x;
	char path[AG_PATH_MAX];
	int rc;

	memset(&x, 0, sizeof(x));
	if ((rc = ag_conf_load(&x.conf, argv[2])) < 0)
		return fail(rc);
	snprintf(path, sizeof(path), "%s/runs/fz", argv[2]);
	snprintf(x.plan_path, sizeof(x.plan_path), "%s/plan.json", path);
	if ((rc = ag_mkdir_p(path, 0755)) < 0 ||
	    (rc = ag_path(path, sizeof(path), "%s/runs/fz/status.jsonl", argv[2])) < 0 ||
	    (rc = ag_write_replace(path, "", 0, 0644)) < 0)
		return fail(rc);
	fz_corpus(&x.corpus, &x.ncorpus, argv + 5, argc - 5);
	fz.names[0] = "plan.json";
	fz.parts[0] = &x.in;
	fz.nparts = 1;
	rc = fz_main(&x, plan_gen, plan_test, argv[3], argv[4]);
	fz_corpus_free(x.corpus, x.ncorpus);
	fb_free(&x.in);
	ag_conf_release(&x.conf);
	return rc;
}

/* ---- fuzz-note: signed notes, checkpoints, global log lines ---- */

struct note_fz {
	struct ag_key *key;
	struct fbuf *corpus;
	size_t ncorpus;
	struct fbuf *bodies;	/* the signed bodies of the corpus that verify */
	size_t nbodies;
	struct fbuf in;
};

static int
note_gen(void *arg)
{
	struct note_fz *x = arg;

	mutate(&x->in, x->corpus, x->ncorpus, 1);
	return 0;
}

/*
 * A note that verifies has a body the key signed; a checkpoint that
 * parses is spelled the one way agora writes it, and so is a global log
 * line.
 */
static int
note_test(void *arg)
{
	static struct ag_note note;
	struct note_fz *x = arg;
	struct ag_checkpoint c;
	struct ag_log_entry e;
	const char *p = x->in.p, *nl;
	char *body = NULL;
	size_t n = x->in.n, i, len;
	int rc, parsed, bad = 0;

	if ((rc = ag_note_parse(&note, p, n)) < 0 && refused("ag_note_parse", rc, AG_EINVALID))
		return 1;
	if ((parsed = rc == 0) && (note.body_len > n || !note.nsigs))
		return fz_fail("ag_note_parse: body of %zu bytes, %zu signatures", note.body_len,
		    note.nsigs);
	if ((rc = ag_note_verify(p, n, x->key)) == 0) {
		for (i = 0; i < x->nbodies; i++)
			if (parsed && x->bodies[i].n == note.body_len &&
			    memcmp(x->bodies[i].p, p, note.body_len) == 0)
				break;
		/* a replay knows no corpus */
		if (x->nbodies && i == x->nbodies)
			return fz_fail("ag_note_verify passes a body the key never signed");
	} else if (refused("ag_note_verify", rc, AG_EINVALID)) {
		return 1;
	}
	if ((rc = ag_checkpoint_parse(&c, p, n)) == 0) {
		fz.passed++;
		if (ag_checkpoint_body(&body, &len, c.origin, c.size, c.root) < 0)
			return fz_fail("ag_checkpoint_body of what parsed: %s", ag_error_msg());
		if (len != c.next || memcmp(body, p, len) != 0)
			bad = fz_fail("the checkpoint parses, but agora writes it otherwise");
		free(body);
		if (bad)
			return bad;
	} else if (refused("ag_checkpoint_parse", rc, AG_EINVALID)) {
		return 1;
	}
	for (i = 0; i < n; i += len + 1) {
		nl = memchr(p + i, '\n', n - i);
		len = nl ? (size_t)(nl - (p + i)) : n - i;
		if ((rc = ag_log_entry_parse(&e, p + i, len)) == 0) {
			if (ag_log_entry_format(&body, &e) < 0)
				return fz_fail("ag_log_entry_format: %s", ag_error_msg());
			if (strlen(body) != len || memcmp(body, p + i, len) != 0)
				bad = fz_fail("a global log line parses, but agora writes it otherwise");
			free(body);
			body = NULL;
			if (bad)
				return bad;
		} else if (refused("ag_log_entry_parse", rc, AG_EINVALID)) {
			return 1;
		}
	}
	return 0;
}

static int
fuzz_note(char **argv, int argc)
{
	static struct ag_note note;
	struct note_fz x;
	size_t i;
	int rc;

	memset(&x, 0, sizeof(x));
	if ((rc = ag_key_load_public(&x.key, argv[2])) < 0)
		return fail(rc);
	fz_corpus(&x.corpus, &x.ncorpus, argv + 5, argc - 5);
	x.bodies = calloc(x.ncorpus + 1, sizeof(*x.bodies));
	for (i = 0; i < x.ncorpus; i++)
		if (ag_note_verify(x.corpus[i].p, x.corpus[i].n, x.key) == 0 &&
		    ag_note_parse(&note, x.corpus[i].p, x.corpus[i].n) == 0)
			fb_set(&x.bodies[x.nbodies++], x.corpus[i].p, note.body_len);
	if (strcmp(argv[3], "replay") != 0 && !x.nbodies)
		return fail(ag_error_set(AG_EINVALID, "no note of the corpus verifies"));
	fz.names[0] = "note";
	fz.parts[0] = &x.in;
	fz.nparts = 1;
	rc = fz_main(&x, note_gen, note_test, argv[3], argv[4]);
	fz_corpus_free(x.corpus, x.ncorpus);
	fz_corpus_free(x.bodies, x.nbodies);
	fb_free(&x.in);
	ag_key_free(x.key);
	return rc;
}

/* ---- fuzz-control: control file lines, and the other small string parsers ---- */

struct control_fz {
	struct fbuf *corpus;
	size_t ncorpus;
	struct fbuf in;
};

static int
control_gen(void *arg)
{
	struct control_fz *x = arg;

	mutate(&x->in, x->corpus, x->ncorpus, 1);
	return 0;
}

/* A directive that parses is what agora-ctl would write for it. */
static int
directive_again(const struct ag_directive *d)
{
	struct ag_directive e;
	char line[512];
	size_t i;

	if (d->verb >= AG_V_UNKNOWN)
		return fz_fail("directive '%s' parses with no verb", d->verb_name);
	if (d->item[0] && !ag_id_valid(d->item))
		return fz_fail("directive '%s' names item '%s'", d->verb_name,
		    ag_quote(d->item, strlen(d->item)));
	for (i = 0; d->actor[i]; i++)
		if (!isgraph((unsigned char)d->actor[i]))
			return fz_fail("directive '%s': actor '%s'", d->verb_name,
			    ag_quote(d->actor, strlen(d->actor)));
	if (d->priority > AG_PRIO_MAX || d->priority < -AG_PRIO_MAX)
		return fz_fail("directive '%s': priority %ld", d->verb_name, d->priority);
	if (d->verb == AG_V_ELEVATE)
		snprintf(line, sizeof(line), "%s %s %ld @%s", ag_verb_name(d->verb), d->item,
		    d->priority, d->actor);
	else
		snprintf(line, sizeof(line), "%s%s%s @%s", ag_verb_name(d->verb), d->item[0] ? " " : "",
		    d->item, d->actor);
	if (ag_directive_parse(&e, line, strlen(line)) != 1 || e.error[0] || e.verb != d->verb ||
	    strcmp(e.item, d->item) != 0 || strcmp(e.actor, d->actor) != 0 ||
	    e.priority != d->priority)
		return fz_fail("directive '%s' parses, but not as written again: '%s'", d->verb_name,
		    ag_quote(line, strlen(line)));
	return 0;
}

static int
control_test(void *arg)
{
	struct control_fz *x = arg;
	struct ag_directive d;
	struct ag_anchor_spec spec;
	const char *p = x->in.p, *nl, *why;
	char *s;
	int64_t ms;
	size_t n = x->in.n, i, len;
	int rc, parsed = 0;

	for (i = 0; i < n; i += len + 1) {
		nl = memchr(p + i, '\n', n - i);
		len = nl ? (size_t)(nl - (p + i)) : n - i;
		rc = ag_directive_parse(&d, p + i, len);
		if (rc != 0 && rc != 1)
			return fz_fail("ag_directive_parse returned %d", rc);
		if (rc == 1 && d.error[0]) {
			if ((why = not_one_line(d.error, strlen(d.error))))
				return fz_fail("directive error '%s' is not one line (%s)",
				    ag_quote(d.error, strlen(d.error)), why);
			if ((why = not_one_line(d.verb_name, strlen(d.verb_name))))
				return fz_fail("directive name '%s' is not one line (%s)",
				    ag_quote(d.verb_name, strlen(d.verb_name)), why);
		} else if (rc == 1 && directive_again(&d)) {
			return 1;
		} else if (rc == 1) {
			parsed = 1;
		}
		/* the line as an argument of the programs: a string, NUL-terminated */
		if (!(s = strndup(p + i, len)))
			abort();
		if ((rc = ag_time_parse(&ms, s)) < 0 && refused("ag_time_parse", rc, AG_EINVALID))
			goto bad;
		if (ag_parse_duration_ms(&ms, s) == 0 && ms < 0) {
			fz_fail("duration '%s' is %lld ms", ag_quote(s, strlen(s)), (long long)ms);
			goto bad;
		}
		if ((rc = ag_anchor_spec_parse(&spec, s)) < 0 &&
		    refused("ag_anchor_spec_parse", rc, AG_EINVALID))
			goto bad;
		if ((rc = ag_actor_check(s, strlen(s))) < 0 && refused("ag_actor_check", rc, AG_EINVALID))
			goto bad;
		if ((rc = ag_id_check(s, strlen(s))) < 0 && refused("ag_id_check", rc, AG_EINVALID))
			goto bad;
		if (lock_name_ok(s))
			goto bad;
		free(s);
	}
	fz.passed += parsed;
	return 0;
bad:
	free(s);
	return 1;
}

static int
fuzz_control(char **argv, int argc)
{
	struct control_fz x;
	int rc;

	memset(&x, 0, sizeof(x));
	fz_corpus(&x.corpus, &x.ncorpus, argv + 4, argc - 4);
	fz.names[0] = "control";
	fz.parts[0] = &x.in;
	fz.nparts = 1;
	rc = fz_main(&x, control_gen, control_test, argv[2], argv[3]);
	fz_corpus_free(x.corpus, x.ncorpus);
	fb_free(&x.in);
	return rc;
}

/* ---- fuzz-state: a run's plan.json and status.jsonl, loaded and replayed ---- */

struct state_fz {
	struct ag_conf conf;
	struct fbuf *plans, *logs;
	size_t nruns;
	struct fbuf plan, log;
	struct fz_file plan_file, log_file;
};

static int
state_gen(void *arg)
{
	struct state_fz *x = arg;
	size_t i = pick(x->nruns), k = rnd(8);

	fb_set(&x->plan, x->plans[i].p, x->plans[i].n);
	fb_set(&x->log, x->logs[i].p, x->logs[i].n);
	if (k < 2 || k == 7)
		mutate(&x->plan, x->plans, x->nruns, 0);
	if (k >= 2) {
		mutate(&x->log, x->logs, x->nruns, 1);
		if (rnd(8))
			rechain(&x->log);
	}
	return 0;
}

/*
 * What a loaded run must be, however odd its files: its lists match its
 * statuses, and its item ids are ids.
 */
static int
run_consistent(const struct ag_run *r)
{
	size_t i, sum = 0;

	for (i = 0; i < AG_NSTATUS; i++)
		sum += r->count[i];
	if (sum != r->nitems)
		return fz_fail("the status counts add up to %zu of %zu items", sum, r->nitems);
	if (r->nready != r->count[AG_READY] || r->nrunning != r->count[AG_RUNNING])
		return fz_fail("%zu ready and %zu running listed, %zu and %zu counted", r->nready,
		    r->nrunning, r->count[AG_READY], r->count[AG_RUNNING]);
	for (i = 0; i < r->nready; i++)
		if (r->ready[i] >= r->nitems || r->items[r->ready[i]].status != AG_READY ||
		    r->items[r->ready[i]].pos != i)
			return fz_fail("ready list entry %zu is wrong", i);
	for (i = 0; i < r->nrunning; i++)
		if (r->running[i] >= r->nitems || r->items[r->running[i]].status != AG_RUNNING ||
		    r->items[r->running[i]].pos != i)
			return fz_fail("running list entry %zu is wrong", i);
	for (i = 0; i < r->nitems; i++) {
		if (r->items[i].after > r->nitems || r->items[i].after == i + 1)
			return fz_fail("item %zu follows item %u", i, r->items[i].after);
		/* it names the item's directory: no id may escape it */
		if (!ag_id_valid(r->items[i].id))
			return fz_fail("item %zu has the id '%s'", i,
			    ag_quote(r->items[i].id, strlen(r->items[i].id)));
	}
	return 0;
}

/*
 * Load the run as every program does, replay its log, and ask the
 * scheduler and agora-status's questions of it.
 */
static int
state_test(void *arg)
{
	struct state_fz *x = arg;
	struct ag_actions acts = { 0 };
	struct ag_artifacts art;
	struct ag_run *r = NULL;
	json_t *j;
	char why[512];
	size_t i;
	int rc, bad = 0;

	if ((rc = fz_put(&x->plan_file, &x->plan)) < 0 || (rc = fz_put(&x->log_file, &x->log)) < 0)
		return fail(rc);
	if ((rc = ag_run_load(&r, &x->conf, "fz", 0)) < 0)
		return refused("ag_run_load", rc, AG_ENOTFOUND);
	fz.passed++;
	if ((bad = run_consistent(r)))
		goto out;
	json_decref(ag_run_summary(r, 1));
	for (i = 0; i < r->nitems && i < 64; i++) {
		if ((rc = ag_run_item_spec(&j, r, i)) < 0 && (bad = refused("ag_run_item_spec", rc,
		    AG_EINVALID)))
			goto out;
		json_decref(j);
		if (r->items[i].status == AG_PENDING)
			ag_sched_pending_reason(why, sizeof(why), r, i);
	}
	if (ag_sched_advance(&acts, r) < 0) {
		bad = fz_fail("ag_sched_advance: %s", ag_error_msg());
		goto out;
	}
	ag_actions_release(&acts);
	/* as agora-reconcile picks, and as agora-serve does with its resident supervisor */
	for (i = 0; i < 2; i++) {
		if (ag_sched_pick(&acts, &r, 1, &x->conf, ag_now_ms(), (pid_t)i) < 0) {
			bad = fz_fail("ag_sched_pick: %s", ag_error_msg());
			goto out;
		}
		ag_actions_release(&acts);
	}
	if ((rc = ag_artifacts_load(&art, &x->conf, "fz")) < 0)
		bad = fz_fail("the run loads, its artifacts do not: %s", ag_error_msg());
	else
		ag_artifacts_release(&art);
out:
	ag_actions_release(&acts);
	ag_run_free(r);
	return bad;
}

static int
fuzz_state(char **argv, int argc)
{
	struct state_fz x;
	char path[AG_PATH_MAX];
	struct ag_buf b;
	int i, rc;

	memset(&x, 0, sizeof(x));
	if ((rc = ag_conf_load(&x.conf, argv[2])) < 0)
		return fail(rc);
	snprintf(path, sizeof(path), "%s/runs/fz", argv[2]);
	snprintf(x.plan_file.path, sizeof(x.plan_file.path), "%s/plan.json", path);
	snprintf(x.log_file.path, sizeof(x.log_file.path), "%s/status.jsonl", path);
	x.plan_file.fd = x.log_file.fd = -1;
	if ((rc = ag_mkdir_p(path, 0755)) < 0)
		return fail(rc);
	x.plans = calloc((size_t)argc, sizeof(*x.plans));
	x.logs = calloc((size_t)argc, sizeof(*x.logs));
	for (i = 5; i < argc; i++, x.nruns++) {
		if ((rc = ag_path(path, sizeof(path), "%s/plan.json", argv[i])) < 0 ||
		    (rc = ag_read_file(&b, path, FZ_MAX)) < 0)
			return fail(rc);
		fb_set(&x.plans[x.nruns], b.ptr, b.len);
		ag_buf_release(&b);
		if ((rc = ag_path(path, sizeof(path), "%s/status.jsonl", argv[i])) < 0 ||
		    (rc = ag_read_file(&b, path, FZ_MAX)) < 0)
			return fail(rc);
		fb_set(&x.logs[x.nruns], b.ptr, b.len);
		ag_buf_release(&b);
	}
	fz.names[0] = "plan.json";
	fz.parts[0] = &x.plan;
	fz.names[1] = "status.jsonl";
	fz.parts[1] = &x.log;
	fz.nparts = 2;
	rc = fz_main(&x, state_gen, state_test, argv[3], argv[4]);
	fz_close(&x.plan_file);
	fz_close(&x.log_file);
	fz_corpus_free(x.plans, x.nruns);
	fz_corpus_free(x.logs, x.nruns);
	fb_free(&x.plan);
	fb_free(&x.log);
	ag_conf_release(&x.conf);
	return rc;
}

/* ---- fuzz-bundle: what agora-verify reads ---- */

struct bundle_fz {
	struct ag_keyring ring;
	struct ag_verify_opts o;
	struct fbuf *texts;	/* the corpus */
	size_t ntexts;
	json_t **seeds;		/* the same, parsed */
	struct fbuf *parts[4];	/* and their plan, log, checkpoint, global checkpoint */
	struct fbuf in;
	struct fz_file file;	/* what ag_bundle_load reads */
};

static const char *const bundle_parts[] = { "plan", "log", "checkpoint", "global" };

/* The bytes of a bundle's base64 field ("global": its checkpoint's). */
static void
bundle_bytes(struct fbuf *out, const json_t *b, int part)
{
	const json_t *f = json_object_get(b, bundle_parts[part]);
	const char *s;
	unsigned char *bytes;
	size_t n = 0;

	if (part == 3)
		f = json_object_get(f, "checkpoint");
	s = json_string_value(json_object_get(f, "base64"));
	fb_set(out, "", 0);
	if (!s || !(bytes = malloc(strlen(s) + 1)))
		return;
	if (ag_base64_decode(bytes, strlen(s), &n, s, strlen(s)) == 0)
		fb_set(out, bytes, n);
	free(bytes);
}

static void
bundle_set(json_t *b, int part, const struct fbuf *v)
{
	json_t *f = part == 3 ? json_object_get(b, "global") : b;
	char *s = NULL;

	if (!json_is_object(f) || ag_base64_encode(&s, (const unsigned char *)v->p, v->n) < 0)
		return;
	json_object_set_new(f, part == 3 ? "checkpoint" : bundle_parts[part],
	    json_pack("{s:s}", "base64", s));
	free(s);
}

/*
 * Half the cases mutate the bundle's text; the others one of its parts
 * (the log's chain made whole again, the plan bound to it again, or not)
 * or its items, and write it out again.
 */
static int
bundle_gen(void *arg)
{
	struct bundle_fz *x = arg;
	struct fbuf part = { 0 }, log = { 0 };
	size_t i = pick(x->ntexts);
	json_t *b, *items;
	char *text, sum[65], *p;
	int which;

	if (rnd(2)) {
		mutate(&x->in, x->texts, x->ntexts, 0);
		return 0;
	}
	b = json_deep_copy(x->seeds[i]);
	which = (int)rnd(6);
	if (which < 4) {
		fb_set(&part, x->parts[which][i].p, x->parts[which][i].n);
		mutate(&part, x->parts[which], x->ntexts, which != 0);
		if (which == 1 && rnd(8))
			rechain(&part);
		bundle_set(b, which, &part);
		if (which == 0 && rnd(2)) {
			/* line 1 names the new plan: a chain made whole again */
			fb_set(&log, x->parts[1][i].p, x->parts[1][i].n);
			if ((p = memmem(log.p, log.n, "\"planSha256\":\"", 14)) && log.n - (size_t)(p -
			    log.p) > 14 + 64) {
				ag_sha256_hex(sum, part.p, part.n);
				memcpy(p + 14, sum, 64);
				rechain(&log);
				bundle_set(b, 1, &log);
			}
		}
	} else if (which == 4 && (text = json_dumps(json_object_get(b, "items"), JSON_COMPACT))) {
		fb_set(&part, text, strlen(text));
		free(text);
		mutate(&part, x->texts, x->ntexts, 0);
		if ((items = json_loadb(part.p, part.n, 0, NULL)))
			json_object_set_new(b, "items", items);
	} else {
		json_object_del(b, bundle_parts[rnd(4)]);
	}
	text = json_dumps(b, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	fb_set(&x->in, text ? text : "", text ? strlen(text) : 0);
	free(text);
	json_decref(b);
	fb_free(&part);
	fb_free(&log);
	return 0;
}

/* A report says every check, each on one line, and intact only when nothing failed. */
static int
bundle_report(const struct bundle_fz *x, const json_t *bundle, const json_t *rep)
{
	const json_t *checks = json_object_get(rep, "checks"), *c, *ok, *failure;
	const char *d, *why, *run = json_string_value(json_object_get(bundle, "run"));
	struct ag_buf text;
	size_t i, k;
	int intact = ag_report_intact(rep), rc;

	failure = json_object_get(rep, "failure");
	if (!json_is_boolean(json_object_get(rep, "intact")) || json_object_size(checks) != AG_NCHECKS ||
	    !json_is_string(json_object_get(rep, "claim")) ||
	    !json_is_string(json_object_get(rep, "guarantee")) ||
	    intact != json_is_null(failure) || (!intact && !json_is_string(failure)))
		return fz_fail("the report is not whole");
	for (i = 0; i < AG_NCHECKS; i++) {
		c = json_object_get(checks, ag_check_names[i]);
		ok = json_object_get(c, "ok");
		d = json_string_value(json_object_get(c, "detail"));
		if (!d || !(json_is_boolean(ok) || json_is_string(ok)))
			return fz_fail("the report's check %s is not whole", ag_check_names[i]);
		if ((why = not_one_line(d, strlen(d))))
			return fz_fail("the report's check %s: detail '%s' is not one line (%s)",
			    ag_check_names[i], ag_quote(d, strlen(d)), why);
	}
	ag_buf_init(&text, 0);
	rc = ag_report_text(&text, run ? run : "", rep);
	ag_buf_release(&text);
	if (rc < 0)
		return fz_fail("ag_report_text: %s", ag_error_msg());
	if (!intact || !x->ntexts)
		return 0;
	/* nothing but a seed's own bytes can be intact: none was signed by the key otherwise */
	for (i = 0; i < x->ntexts; i++) {
		for (k = 0; k < 3; k++)
			if (!json_equal(json_object_get(json_object_get(bundle, bundle_parts[k]),
			    "base64"), json_object_get(json_object_get(x->seeds[i], bundle_parts[k]),
			    "base64")))
				break;
		if (k == 3)
			return 0;
	}
	return fz_fail("a bundle of other bytes than the corpus' is intact");
}

static int
bundle_test(void *arg)
{
	struct bundle_fz *x = arg;
	json_t *b = NULL, *rep = NULL;
	int rc, bad = 0;

	if ((rc = fz_put(&x->file, &x->in)) < 0)
		return fail(rc);
	if ((rc = ag_bundle_load(&b, x->file.path)) < 0)
		return refused("ag_bundle_load", rc, AG_EINVALID);
	if ((rc = ag_bundle_verify(&rep, b, &x->o)) < 0)
		bad = refused("ag_bundle_verify", rc, AG_EINVALID);
	else if (!(bad = bundle_report(x, b, rep)))
		fz.passed++;
	json_decref(rep);
	json_decref(b);
	return bad;
}

static int
fuzz_bundle(char **argv, int argc)
{
	struct bundle_fz x;
	struct ag_key *k;
	size_t i;
	int rc, p;

	memset(&x, 0, sizeof(x));
	if ((rc = ag_key_load_public(&k, argv[2])) < 0)
		return fail(rc);
	x.ring.k[x.ring.n++] = k;
	x.o.keys = &x.ring;
	x.o.objects = strcmp(argv[3], "-") == 0 ? NULL : argv[3];
	snprintf(x.file.path, sizeof(x.file.path), "fuzz-bundle.in");
	x.file.fd = -1;
	x.seeds = calloc((size_t)argc, sizeof(*x.seeds));
	for (p = 0; p < 4; p++)
		x.parts[p] = calloc((size_t)argc, sizeof(**x.parts));
	for (i = 0; i + 6 < (size_t)argc; i++) {
		if ((rc = ag_bundle_load(&x.seeds[i], argv[6 + i])) < 0)
			return fail(rc);
		for (p = 0; p < 4; p++)
			bundle_bytes(&x.parts[p][i], x.seeds[i], p);
	}
	fz_corpus(&x.texts, &x.ntexts, argv + 6, argc - 6);
	fz.names[0] = "bundle";
	fz.parts[0] = &x.in;
	fz.nparts = 1;
	rc = fz_main(&x, bundle_gen, bundle_test, argv[4], argv[5]);
	fz_close(&x.file);
	unlink(x.file.path);
	for (i = 0; i < x.ntexts; i++)
		json_decref(x.seeds[i]);
	free(x.seeds);
	for (p = 0; p < 4; p++)
		fz_corpus_free(x.parts[p], x.ntexts);
	fz_corpus_free(x.texts, x.ntexts);
	fb_free(&x.in);
	ag_key_free(k);
	return rc;
}

/* ---- fuzz-conf: agora.conf ---- */

struct conf_fz {
	const char *dir;
	struct fbuf *corpus;
	size_t ncorpus;
	struct fbuf in;
	struct fz_file file;	/* DIR/agora.conf */
};

static int
conf_gen(void *arg)
{
	struct conf_fz *x = arg;

	mutate(&x->in, x->corpus, x->ncorpus, 1);
	return 0;
}

/* A configuration that loads can check plans of both formats. */
static int
conf_test(void *arg)
{
	static const char *const plans[] = {
		"{\"id\":\"r\",\"queue\":\"default\",\"items\":["
		"{\"id\":\"a\",\"executor\":\"exec\",\"inputs\":{\"sh\":\"true\"},\"depends_on\":[],"
		"\"resourceLocks\":[\"k\"],\"slots\":{\"llm\":1}},"
		"{\"id\":\"b\",\"executor\":\"dispatch\",\"inputs\":{\"subagent\":\"edit\"},"
		"\"depends_on\":[\"a\"],\"resourceLocks\":[],"
		"\"needs\":{\"p\":{\"from\":\"a\",\"select\":{\"kind\":\"patch\"}}}}]}",
		"{\"goal_id\":\"g\",\"nodes\":[{\"id\":\"n1\"},{\"id\":\"n2\"}],"
		"\"edges\":[{\"source\":\"n1\",\"target\":\"n2\"}]}",
	};
	struct conf_fz *x = arg;
	struct ag_plan_opts o = { .name = "fuzz.json" };
	struct ag_conf c;
	struct ag_plan plan;
	struct ag_buf errs;
	size_t i;
	int rc, bad = 0;

	if ((rc = fz_put(&x->file, &x->in)) < 0)
		return fail(rc);
	if ((rc = ag_conf_load(&c, x->dir)) < 0) {
		bad = refused("ag_conf_load", rc, AG_EINVALID);
		ag_conf_release(&c);
		return bad;
	}
	fz.passed++;
	for (i = 0; i < 2 && !bad; i++) {
		ag_buf_init(&errs, 16u << 20);
		rc = ag_plan_parse(&plan, &errs, &c, plans[i], strlen(plans[i]), &o);
		if (rc == AG_EINVALID)
			bad = plan_errors(&errs, o.name);
		else if (rc < 0)
			bad = fz_fail("ag_plan_parse: %s", ag_error_msg());
		else
			ag_plan_release(&plan);
		ag_buf_release(&errs);
	}
	for (i = 0; i < 70; i++)
		if (ag_conf_backoff_ms(&c, (int)i) < 0)
			bad = bad ? bad : fz_fail("backoff of %zu failures is negative", i);
	ag_conf_release(&c);
	return bad;
}

static int
fuzz_conf(char **argv, int argc)
{
	struct conf_fz x;
	int rc;

	memset(&x, 0, sizeof(x));
	x.dir = argv[2];
	snprintf(x.file.path, sizeof(x.file.path), "%s/agora.conf", x.dir);
	x.file.fd = -1;
	fz_corpus(&x.corpus, &x.ncorpus, argv + 5, argc - 5);
	fz.names[0] = "agora.conf";
	fz.parts[0] = &x.in;
	fz.nparts = 1;
	rc = fz_main(&x, conf_gen, conf_test, argv[3], argv[4]);
	fz_close(&x.file);
	fz_corpus_free(x.corpus, x.ncorpus);
	fb_free(&x.in);
	return rc;
}

/*
 * fuzz-KIND [ARG...] SEED N FILE... or fuzz-KIND [ARG...] replay FILE;
 * fuzz-mutate SEED K FILE... prints case K's mutation of the files, for
 * fuzzing a program from the shell.
 */
static int
fuzz_cmd(int argc, char **argv)
{
	static const struct {
		const char *name;
		int nargs;	/* before SEED */
		int (*run)(char **, int);
	} kinds[] = {
		{ "fuzz-plan", 1, fuzz_plan },
		{ "fuzz-note", 1, fuzz_note },
		{ "fuzz-control", 0, fuzz_control },
		{ "fuzz-state", 1, fuzz_state },
		{ "fuzz-bundle", 2, fuzz_bundle },
		{ "fuzz-conf", 1, fuzz_conf },
	};
	struct fbuf *c, out = { 0 };
	size_t i, n;
	int first;

	if (strcmp(argv[1], "fuzz-mutate") == 0 && argc >= 5) {
		fz_corpus(&c, &n, argv + 4, argc - 4);
		rng = mix64(strtoull(argv[2], NULL, 10) ^ mix64(strtoull(argv[3], NULL, 10)));
		mutate(&out, c, n, (int)rnd(2));
		if (ag_write_all(STDOUT_FILENO, out.p, out.n) < 0)
			return 111;
		fz_corpus_free(c, n);
		fb_free(&out);
		return 0;
	}
	for (i = 0; i < sizeof(kinds) / sizeof(*kinds); i++) {
		if (strcmp(argv[1], kinds[i].name) != 0)
			continue;
		first = 2 + kinds[i].nargs;
		if (argc < first + 2 || (strcmp(argv[first], "replay") == 0 ? argc != first + 2 :
		    argc < first + 3))
			break;
		fz.kind = argv[1] + 5;
		return kinds[i].run(argv, argc);
	}
	fprintf(stderr, "agora-helper: bad arguments for %s\n", argv[1]);
	return 100;
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
	if (argc >= 3 && strncmp(argv[1], "fuzz-", 5) == 0)
		return fuzz_cmd(argc, argv);
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
	    "       agora-helper done DIR RUN ITEM ATTEMPT BASE WORKTREE OUTPUTS [PATCH...]\n"
	    "       agora-helper fuzz-plan|fuzz-note|fuzz-control|fuzz-state|fuzz-bundle|fuzz-conf"
	    " ... SEED N FILE...\n");
	return 100;
}
