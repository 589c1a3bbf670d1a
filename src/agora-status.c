#include "agora.h"

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
		v[(*n)++] = strdup(e->d_name);
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
summary(const struct ag_conf *c, const char *id)
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
	if (ag_run_load(&r, c, id, 0) < 0)
		return NULL;
	s = ag_run_summary(r, 0);
	ag_run_free(r);
	return s;
}

static int
list_runs(const struct ag_conf *c, int json)
{
	char path[AG_PATH_MAX];
	char **ids;
	size_t n, i;
	json_t *all = json_array();

	if (ag_path(path, sizeof(path), "%s/runs", c->dir) < 0)
		return AG_EINVALID;
	ids = list(path, &n);
	if (!json)
		printf("%-24s %-10s %-9s %6s %7s %5s %7s %5s %6s %7s %9s\n", "RUN", "STATE",
		    "OUTCOME", "ITEMS", "PENDING", "READY", "RUNNING", "DONE", "FAILED",
		    "SKIPPED", "CANCELLED");
	for (i = 0; i < n; i++) {
		json_t *s = summary(c, ids[i]), *k;
		if (!s) {
			ag_warn("%s", ag_error_msg());
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
	if (json) {
		char *s = json_dumps(all, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		puts(s ? s : "[]");
		free(s);
	}
	json_decref(all);
	free_list(ids, n);
	return 0;
}

/* Why each item is where it is: the scheduler's own answer for ready items. */
static void
whys(char **out, struct ag_run *target, struct ag_run **runs, size_t nruns,
    const struct ag_conf *c)
{
	struct ag_actions a = { 0 };
	size_t i;

	for (i = 0; i < target->nitems; i++) {
		const struct ag_item *it = &target->items[i];
		char buf[512];
		buf[0] = '\0';
		if (it->status == AG_PENDING)
			ag_sched_pending_reason(buf, sizeof(buf), target, i);
		else if (it->status == AG_RUNNING)
			snprintf(buf, sizeof(buf), "attempt %d%s", it->attempt,
			    it->cancel_req || target->want_cancel ? ", cancelling" :
			    it->drop_req ? ", dropping" : "");
		else if (it->reason)
			snprintf(buf, sizeof(buf), "%s", it->reason);
		out[i] = strdup(buf);
	}
	if (!target->completed && ag_sched_pick(&a, runs, nruns, c, ag_now_ms()) == 0) {
		for (i = 0; i < a.len; i++) {
			if (a.v[i].run != target)
				continue;
			free(out[a.v[i].item]);
			out[a.v[i].item] = strdup(a.v[i].kind == AG_ACT_FIRE ? "fires on the next tick" :
			    a.v[i].reason);
		}
	}
	ag_actions_release(&a);
}

static int
show_run(const struct ag_conf *c, const char *id, const char *item, int json)
{
	char path[AG_PATH_MAX];
	struct ag_run **runs = NULL, *target = NULL;
	char **ids, **why;
	size_t n, i, nruns = 0, at = 0;
	int rc;

	if ((rc = ag_run_exists(c->dir, id)) < 0)
		return rc;
	if ((rc = ag_path(path, sizeof(path), "%s/active", c->dir)) < 0)
		return rc;
	ids = list(path, &n);
	runs = calloc(n + 2, sizeof(*runs));
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
	why = calloc(target->nitems + 1, sizeof(*why));
	whys(why, target, runs, nruns, c);
	if (json) {
		json_t *s = ag_run_summary(target, 1), *items = json_object_get(s, "itemStates");
		char *text;
		for (i = 0; i < target->nitems; i++)
			json_object_set_new(json_array_get(items, i), "why", json_string(why[i]));
		if (item) {
			json_t *x = json_incref(json_array_get(items, at));
			json_object_set(x, "spec", target->items[at].spec);
			json_decref(s);
			s = x;
		}
		text = json_dumps(s, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		puts(text ? text : "{}");
		free(text);
		json_decref(s);
	} else if (item) {
		const struct ag_item *it = &target->items[at];
		printf("run:       %s\nitem:      %s\nstate:     %s\nattempts:  %d\npriority:  %d\nwhy:       %s\n",
		    id, it->id, ag_status_names[it->status], it->attempt, it->priority, why[at]);
		printf("depends:  ");
		for (i = 0; i < it->ndeps; i++)
			printf(" %s(%s)", target->items[it->deps[i]].id,
			    ag_status_names[target->items[it->deps[i]].status]);
		printf("\nlocks:    ");
		for (i = 0; i < it->nlocks; i++)
			printf(" %s", it->locks[i]);
		printf("\nslots:    ");
		for (i = 0; i < it->nslots; i++)
			printf(" %s=%d", it->slots[i].name, it->slots[i].n);
		printf("\n");
		if (it->attempt)
			printf("attempt:   %s/items/%s/%d\n", target->dir, it->id, it->attempt);
	} else {
		printf("run %s  queue %s  %s%s\n", id, target->queue,
		    target->completed ? target->outcome : target->cancelled ? "cancelling" : "active",
		    target->paused ? " (paused)" : "");
		for (i = 0; i < AG_NSTATUS; i++)
			printf("%s %zu%s", ag_status_names[i], target->count[i],
			    i + 1 < AG_NSTATUS ? "  " : "\n");
		printf("%-32s %-10s %8s %9s  %s\n", "ITEM", "STATE", "ATTEMPTS", "PRIORITY", "WHY");
		for (i = 0; i < target->nitems; i++)
			printf("%-32s %-10s %8d %9d  %s\n", target->items[i].id,
			    ag_status_names[target->items[i].status], target->items[i].attempt,
			    target->items[i].priority, why[i]);
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
	if (argc - optind == 0)
		rc = list_runs(&conf, json);
	else
		rc = show_run(&conf, argv[optind], argc - optind == 2 ? argv[optind + 1] : NULL, json);
	if (rc < 0)
		ag_die(rc);
	ag_conf_release(&conf);
	return 0;
}
