#include "agora.h"
#include "audit.h"

#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "banned.h"

static const char usage[] = "agora-status [--json] [-d dir] [run [item]]";

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char **
list(const char *path, size_t *n)
{
	DIR *d = opendir(path);
	struct dirent *e;
	char **v = NULL;

	*n = 0;
	if (!d)
		return NULL;
	while ((e = readdir(d))) {
		char **nv;
		if (e->d_name[0] == '.')
			continue;
		if (!(nv = realloc(v, (*n + 1) * sizeof(*v))))
			break;
		v = nv;
		if (!(v[*n] = strdup(e->d_name)))
			break;
		(*n)++;
	}
	closedir(d);
	if (*n)
		qsort(v, *n, sizeof(*v), name_cmp);
	return v;
}

static void
free_list(char **v, size_t n)
{
	while (n)
		free(v[--n]);
	free(v);
}

/* A finished run's summary comes from its state.json; an active run's from its log. */
static json_t *
summary(int *rc, const struct ag_conf *c, const char *id)
{
	char path[AG_PATH_MAX];
	struct ag_run *r = NULL;
	json_t *s = NULL;

	if (ag_path(path, sizeof(path), "%s/active/%s", c->dir, id) == 0 && !ag_exists(path) &&
	    ag_path(path, sizeof(path), "%s/runs/%s/state.json", c->dir, id) == 0 &&
	    (s = json_load_file(path, 0, NULL)) && json_object_get(s, "counts")) {
		json_object_del(s, "itemStates");
		return s;
	}
	json_decref(s);
	if ((*rc = ag_run_load(&r, c, id, 0)) < 0)
		return NULL;
	s = ag_run_summary(r, 0);
	ag_run_free(r);
	return s;
}

/* Runs submitted but not yet ingested: inbox/new names are "TIME.PID,ID". */
static void
list_queued(const struct ag_conf *c, char **ids, size_t n, json_t *all, int json)
{
	char path[AG_PATH_MAX];
	char **names;
	size_t nq, i;

	if (ag_path(path, sizeof(path), "%s/inbox/new", c->dir) < 0)
		return;
	names = list(path, &nq);
	for (i = 0; i < nq; i++) {
		const char *id = strchr(names[i], ',');
		if (!id || !ag_id_valid(++id) ||
		    (n && bsearch(&id, ids, n, sizeof(*ids), name_cmp)))
			continue;
		if (json)
			json_array_append_new(all, json_pack("{s:s, s:s}", "run", id,
			    "state", "queued"));
		else
			printf("%-24s %-10s %-9s %6s %7s %5s %7s %5s %6s %7s %9s\n", id, "queued",
			    "-", "-", "-", "-", "-", "-", "-", "-", "-");
	}
	free_list(names, nq);
}

static int
list_runs(const struct ag_conf *c, int json)
{
	char path[AG_PATH_MAX];
	char **ids;
	size_t n, i;
	json_t *all = json_array();
	int rc = 0;

	if (ag_path(path, sizeof(path), "%s/runs", c->dir) < 0)
		return AG_EINVALID;
	ids = list(path, &n);
	if (!json)
		printf("%-24s %-10s %-9s %6s %7s %5s %7s %5s %6s %7s %9s\n", "RUN", "STATE",
		    "OUTCOME", "ITEMS", "PENDING", "READY", "RUNNING", "DONE", "FAILED",
		    "SKIPPED", "CANCELLED");
	for (i = 0; i < n; i++) {
		int err = AG_ERROR;
		json_t *s = summary(&err, c, ids[i]), *k;
		if (!s) {
			/* say so, list the others, and exit non-zero at the end */
			ag_warn("%s", ag_error_msg());
			if (rc == 0)
				rc = err;
			continue;
		}
		if (json) {
			json_array_append_new(all, s);
			continue;
		}
		k = json_object_get(s, "counts");
		printf("%-24s %-10s %-9s %6lld %7lld %5lld %7lld %5lld %6lld %7lld %9lld\n", ids[i],
		    json_string_value(json_object_get(s, "state")),
		    json_object_get(s, "outcome") ? json_string_value(json_object_get(s, "outcome")) : "-",
		    (long long)json_integer_value(json_object_get(s, "items")),
		    (long long)json_integer_value(json_object_get(k, "pending")),
		    (long long)json_integer_value(json_object_get(k, "ready")),
		    (long long)json_integer_value(json_object_get(k, "running")),
		    (long long)json_integer_value(json_object_get(k, "done")),
		    (long long)json_integer_value(json_object_get(k, "failed")),
		    (long long)json_integer_value(json_object_get(k, "skipped")),
		    (long long)json_integer_value(json_object_get(k, "cancelled")));
		json_decref(s);
	}
	list_queued(c, ids, n, all, json);
	if (json) {
		char *s = json_dumps(all, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		puts(s ? s : "[]");
		free(s);
	}
	json_decref(all);
	free_list(ids, n);
	return rc;
}

/*
 * Why each item that is not finished is where it is: the scheduler's own
 * answer for ready items, as the next tick would decide. A finished item
 * has no why, only its reason. Returns NULL when out of memory.
 */
static char **
whys(struct ag_run *target, struct ag_run **runs, size_t nruns, const struct ag_conf *c)
{
	struct ag_actions a = { 0 };
	char **out = calloc(target->nitems + 1, sizeof(*out));
	size_t i;

	if (!out)
		return NULL;
	for (i = 0; i < target->nitems; i++) {
		const struct ag_item *it = &target->items[i];
		char buf[512];
		if (ag_status_terminal(it->status))
			continue;
		buf[0] = '\0';
		if (it->status == AG_PENDING)
			ag_sched_pending_reason(buf, sizeof(buf), target, i);
		else if (it->status == AG_RUNNING && ag_item_staged(target, it))
			snprintf(buf, sizeof(buf), "attempt %d, staged: starts when '%s' ends%s",
			    it->attempt, target->items[it->after - 1].id,
			    it->cancel_req || target->want_cancel ? ", cancelling" :
			    it->drop_req ? ", dropping" : "");
		else if (it->status == AG_RUNNING)
			snprintf(buf, sizeof(buf), "attempt %d%s", it->attempt,
			    it->cancel_req || target->want_cancel ? ", cancelling" :
			    it->drop_req ? ", dropping" : "");
		out[i] = strdup(buf);
	}
	if (!target->completed && ag_sched_pick(&a, runs, nruns, c, ag_now_ms(), 0) == 0) {
		for (i = 0; i < a.len; i++) {
			if (a.v[i].run != target)
				continue;
			free(out[a.v[i].item]);
			out[a.v[i].item] = strdup(a.v[i].kind == AG_ACT_FIRE ? "fires on the next tick" :
			    a.v[i].reason);
		}
	}
	ag_actions_release(&a);
	return out;
}

static const char *
or_dash(const char *s)
{
	return s && *s ? s : "-";
}

/* The anchors that do not hold a sealed run's checkpoint yet, and why. */
static void
anchor_lines(const struct ag_conf *c, const char *id)
{
	size_t i;

	for (i = 0; i < c->nanchors; i++) {
		const struct ag_anchor *a = &c->anchors[i];
		json_t *r = NULL;
		if (ag_anchor_receipt(&r, c->dir, id, a->name) < 0) {
			printf("anchor %s (%s): not yet tried\n", a->name, a->kind);
			continue;
		}
		if (!json_is_true(json_object_get(r, "ok")))
			printf("anchor %s (%s): failed, %lld attempts: %s\n", a->name, a->kind,
			    (long long)json_integer_value(json_object_get(r, "attempts")),
			    or_dash(json_string_value(json_object_get(r, "detail"))));
		json_decref(r);
	}
	ag_error_clear();
}

static int
show_run(const struct ag_conf *c, const char *id, const char *item, int json)
{
	char path[AG_PATH_MAX];
	struct ag_run **runs = NULL, *target = NULL;
	char **ids, **why;
	size_t n, i, nruns = 0, at = 0;
	int rc;

	rc = ag_run_exists(c->dir, id);
	if (rc == AG_ENOTFOUND && ag_run_queued(c->dir, id)) {
		if (json)
			printf("{\n  \"run\": \"%s\",\n  \"state\": \"queued\"\n}\n", id);
		else
			printf("run %s  queued: in the inbox until a tick ingests it\n", id);
		return 0;
	}
	/* a tick may have ingested it between the two looks */
	if (rc < 0 && (rc = ag_run_exists(c->dir, id)) < 0)
		return rc;
	if ((rc = ag_path(path, sizeof(path), "%s/active", c->dir)) < 0)
		return rc;
	ids = list(path, &n);
	if (!(runs = calloc(n + 2, sizeof(*runs)))) {
		free_list(ids, n);
		return ag_error_set(AG_ERROR, "out of memory");
	}
	for (i = 0; i < n; i++) {
		struct ag_run *r;
		if (ag_run_load(&r, c, ids[i], 0) < 0)
			continue;
		runs[nruns++] = r;
		if (strcmp(r->id, id) == 0)
			target = r;
	}
	free_list(ids, n);
	if (!target) {
		if ((rc = ag_run_load(&target, c, id, 0)) < 0)
			goto out;
		runs[nruns++] = target;
	}
	if (item && ag_run_item(target, item, &at) < 0) {
		rc = ag_error_set(AG_ENOTFOUND, "unknown item '%s' in run '%s'", item, id);
		goto out;
	}
	if (!(why = whys(target, runs, nruns, c))) {
		rc = ag_error_set(AG_ERROR, "out of memory");
		goto out;
	}
	if (json) {
		json_t *s = ag_run_summary(target, 1), *items = json_object_get(s, "itemStates");
		char *text;
		for (i = 0; i < target->nitems; i++)
			if (why[i])
				json_object_set_new(json_array_get(items, i), "why", json_string(why[i]));
		if (item) {
			json_t *x = json_incref(json_array_get(items, at));
			json_t *spec = NULL;
			if (ag_run_item_spec(&spec, target, at) == 0)
				json_object_set_new(x, "spec", spec);
			json_decref(s);
			s = x;
		}
		text = json_dumps(s, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		puts(text ? text : "{}");
		free(text);
		json_decref(s);
	} else if (item) {
		const struct ag_item *it = &target->items[at];
		printf("run:       %s\nitem:      %s\nstate:     %s\nattempts:  %d\npriority:  %d\n"
		    "reason:    %s\nwhy:       %s\n", id, it->id, ag_status_names[it->status],
		    it->attempt, it->priority, or_dash(it->reason), or_dash(why[at]));
		printf("depends:  ");
		for (i = 0; i < it->ndeps; i++)
			printf(" %s (%s)", target->items[it->deps[i]].id,
			    ag_status_names[target->items[it->deps[i]].status]);
		printf("%s\nlocks:    ", it->ndeps ? "" : " -");
		for (i = 0; i < it->nlocks; i++)
			printf(" '%s'", ag_quote(it->locks[i], strlen(it->locks[i])));
		printf("%s\nslots:    ", it->nlocks ? "" : " -");
		for (i = 0; i < it->nslots; i++)
			printf(" %s=%d", it->slots[i].name, it->slots[i].n);
		printf("%s\n", it->nslots ? "" : " -");
		if (it->attempt)
			printf("attempt:   %s/items/%s/%d\n", target->dir, it->id, it->attempt);
	} else {
		printf("run %s  queue %s  %s%s\n", id, target->queue,
		    target->completed ? target->outcome : target->cancelled ? "cancelling" : "active",
		    target->paused ? " (paused)" : "");
		for (i = 0; i < AG_NSTATUS; i++)
			printf("%s %zu%s", ag_status_names[i], target->count[i],
			    i + 1 < AG_NSTATUS ? "  " : "\n");
		printf("%-32s %-10s %8s %9s  %-20s %s\n", "ITEM", "STATE", "ATTEMPTS", "PRIORITY",
		    "REASON", "WHY");
		for (i = 0; i < target->nitems; i++)
			printf("%-32s %-10s %8d %9d  %-20s %s\n", target->items[i].id,
			    ag_status_names[target->items[i].status], target->items[i].attempt,
			    target->items[i].priority, or_dash(target->items[i].reason),
			    or_dash(why[i]));
		if (target->sealed)
			anchor_lines(c, id);
	}
	for (i = 0; i < target->nitems; i++)
		free(why[i]);
	free(why);
out:
	for (i = 0; i < nruns; i++)
		ag_run_free(runs[i]);
	free(runs);
	return rc;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct ag_conf conf;
	const char *dir = NULL;
	int c, rc, json = 0;

	ag_cli_init(argc, argv);
	while ((c = getopt_long(argc, argv, "d:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'j': json = 1; break;
		case 'h': ag_help(usage);
		default: ag_usage(usage);
		}
	}
	if (argc - optind > 2)
		ag_usage(usage);
	if ((rc = ag_conf_load(&conf, ag_state_dir(dir))) < 0)
		ag_die(rc);
	if (argc - optind == 0) {
		/* an unreadable run was reported in the list already */
		if ((rc = list_runs(&conf, json)) < 0)
			return ag_exit_code(rc);
	} else
		rc = show_run(&conf, argv[optind], argc - optind == 2 ? argv[optind + 1] : NULL, json);
	if (rc < 0)
		ag_die(rc);
	ag_conf_release(&conf);
	return 0;
}
