/*
 * Plans: parse the agora or the porki format, validate everything at
 * once, and produce the normalized plan that reconcile stores. Errors are
 * collected, one line each, "FILE: JSON-PATH: message"; nothing stops at
 * the first.
 */
#include "agora.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "banned.h"

struct gdep {
	size_t item;	/* the item that depends */
	size_t name;	/* the id it names */
	size_t origin;	/* the plan path that says so; 0: $.items[item].depends_on[at] */
	size_t at;
};

struct vctx {
	const char *name;
	struct ag_buf *errs;
	size_t nerrs;
	const struct ag_conf *conf;
	/*
	 * What the graph checks need, and no more, so that a plan's items
	 * can be dropped once checked: each item's id, and each depends_on
	 * entry with the JSON path it came from (an entry of depends_on, a
	 * needs.*.from or a porki edge), so that graph errors point at what
	 * the author wrote. Strings live in pool; ids[i] and the offsets in
	 * deps are 1 + their offset there, 0 for none.
	 */
	struct ag_buf pool;
	size_t *ids, nitems, icap;
	struct gdep *deps;
	size_t ndeps, dcap;
	char origin[AG_JPATH_MAX];	/* dep_origin's answer */
	const char *what;	/* "item" or "node", for messages */
	int oom;		/* out of memory: the plan could not be checked */
};

static void
verr(struct vctx *v, const char *path, const char *fmt, ...)
{
	va_list ap;
	char msg[1024];

	v->nerrs++;
	if (v->nerrs > AG_PLAN_ERRORS_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ag_buf_printf(v->errs, "%s: %s: %s\n", v->name, path, msg);
}

static const char *
type_name(const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT: return "object";
	case JSON_ARRAY: return "array";
	case JSON_STRING: return "string";
	case JSON_INTEGER: return "integer";
	case JSON_REAL: return "number";
	case JSON_TRUE: case JSON_FALSE: return "boolean";
	default: return "null";
	}
}

static int
want_type(struct vctx *v, const char *path, const json_t *j, json_type t, const char *tname)
{
	if (json_typeof(j) == t)
		return 1;
	verr(v, path, "expected %s, got %s", tname, type_name(j));
	return 0;
}

/* Every string in the plan is bounded, and none may hold a NUL byte. */
static void
check_strings(struct vctx *v, const char *path, const json_t *j, int depth)
{
	char sub[AG_JPATH_MAX];
	const char *k;
	json_t *e;
	size_t i;

	if (depth > AG_PLAN_DEPTH_MAX) {
		verr(v, path, "nested deeper than %d levels", AG_PLAN_DEPTH_MAX);
		return;
	}
	if (json_is_string(j)) {
		size_t len = json_string_length(j);
		if (len > AG_STRING_MAX)
			verr(v, path, "string of %zu bytes is longer than the limit of %d",
			    len, AG_STRING_MAX);
		else if (memchr(json_string_value(j), '\0', len))
			verr(v, path, "string '%s' contains a NUL byte",
			    ag_quote(json_string_value(j), len));
	} else if (json_is_array(j)) {
		json_array_foreach(j, i, e) {
			snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
			check_strings(v, sub, e, depth + 1);
		}
	} else if (json_is_object(j)) {
		json_object_foreach((json_t *)j, k, e) {
			if (strlen(k) > AG_STRING_MAX)
				verr(v, path, "a key is longer than %d bytes", AG_STRING_MAX);
			snprintf(sub, sizeof(sub), "%s.%s", path, ag_quote(k, strlen(k)));
			check_strings(v, sub, e, depth + 1);
		}
	}
}

static int
check_id(struct vctx *v, const char *path, const json_t *j)
{
	size_t len;

	if (!json_is_string(j)) {
		verr(v, path, "expected string, got %s", type_name(j));
		return 0;
	}
	/* check_strings has already said what is wrong with this one: say it once */
	len = json_string_length(j);
	if (len > AG_STRING_MAX || memchr(json_string_value(j), '\0', len))
		return 0;
	if (ag_id_check(json_string_value(j), json_string_length(j)) < 0) {
		verr(v, path, "%s", ag_error_msg());
		return 0;
	}
	return 1;
}

static int
check_int(struct vctx *v, const char *path, const json_t *j, json_int_t min, json_int_t max)
{
	if (!json_is_integer(j)) {
		verr(v, path, "expected integer, got %s", type_name(j));
		return 0;
	}
	if (json_integer_value(j) < min || json_integer_value(j) > max) {
		verr(v, path, "%lld is out of range [%lld, %lld]",
		    (long long)json_integer_value(j), (long long)min, (long long)max);
		return 0;
	}
	return 1;
}

/* An array of strings, of at most max entries; with nonempty, no "" among them. */
static void
check_string_array(struct vctx *v, const char *path, const json_t *j, size_t max,
    int nonempty)
{
	char sub[AG_JPATH_MAX];
	json_t *e;
	size_t i;

	if (!want_type(v, path, j, JSON_ARRAY, "array"))
		return;
	if (json_array_size(j) > max)
		verr(v, path, "%zu entries is more than the limit of %zu", json_array_size(j), max);
	json_array_foreach(j, i, e) {
		snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
		if (want_type(v, sub, e, JSON_STRING, "string") && nonempty &&
		    json_string_length(e) == 0)
			verr(v, sub, "empty string");
	}
}

static void
check_exec_inputs(struct vctx *v, const char *path, const json_t *inputs,
    const struct ag_executor *ex)
{
	char sub[AG_JPATH_MAX];
	json_t *argv = json_object_get(inputs, "argv");
	json_t *sh = json_object_get(inputs, "sh");
	json_t *cwd = json_object_get(inputs, "cwd");
	json_t *env = json_object_get(inputs, "env");
	const char *k;
	json_t *e;

	if (argv && sh) {
		verr(v, path, "give inputs.argv or inputs.sh, not both");
	} else if (!argv && !sh && !(ex && ex->command)) {
		verr(v, path, "the exec executor needs inputs.argv or inputs.sh");
	}
	if (argv) {
		snprintf(sub, sizeof(sub), "%s.argv", path);
		check_string_array(v, sub, argv, 4096, 0);
		if (json_is_array(argv) && json_array_size(argv) == 0)
			verr(v, sub, "empty argv");
	}
	if (sh) {
		snprintf(sub, sizeof(sub), "%s.sh", path);
		want_type(v, sub, sh, JSON_STRING, "string");
	}
	if (cwd) {
		snprintf(sub, sizeof(sub), "%s.cwd", path);
		want_type(v, sub, cwd, JSON_STRING, "string");
	}
	if (env) {
		snprintf(sub, sizeof(sub), "%s.env", path);
		if (want_type(v, sub, env, JSON_OBJECT, "object")) {
			json_object_foreach(env, k, e) {
				char esub[AG_JPATH_MAX];
				snprintf(esub, sizeof(esub), "%s.%s", sub, ag_quote(k, strlen(k)));
				if (strncmp(k, "AGORA_", 6) == 0)
					verr(v, esub, "AGORA_ variables are set by agora, not by plans");
				else if (!*k || strchr(k, '='))
					verr(v, esub, "invalid environment variable name");
				want_type(v, esub, e, JSON_STRING, "string");
			}
		}
	}
}

static const char *const item_fields[] = {
	"id", "executor", "inputs", "depends_on", "resourceLocks", "priority",
	"timeout", "maxAttempts", "slots", "title", "needs", NULL
};

static int
known(const char *const *fields, const char *k)
{
	for (; *fields; fields++)
		if (strcmp(*fields, k) == 0)
			return 1;
	return 0;
}

static void
unknown_fields(struct vctx *v, const char *path, const json_t *obj, const char *const *fields)
{
	char sub[AG_JPATH_MAX];
	const char *k;
	json_t *e;

	json_object_foreach((json_t *)obj, k, e) {
		if (!known(fields, k)) {
			snprintf(sub, sizeof(sub), "%s.%s", path, ag_quote(k, strlen(k)));
			verr(v, sub, "unknown field");
		}
	}
}

static void
check_dispatch_inputs(struct vctx *v, const char *path, const json_t *inputs,
    const struct ag_executor *ex)
{
	static const char *const fields[] = { "subagent", "workerInput", "repo", "base", NULL };
	char sub[AG_JPATH_MAX];
	json_t *f;

	unknown_fields(v, path, inputs, fields);
	snprintf(sub, sizeof(sub), "%s.subagent", path);
	if (!(f = json_object_get(inputs, "subagent")))
		verr(v, sub, "missing required field: the dispatch executor runs a subagent");
	else if (want_type(v, sub, f, JSON_STRING, "string") &&
	    !ag_conf_subagent(v->conf, json_string_value(f)))
		verr(v, sub, "unknown subagent '%s' (not in agora.conf)",
		    ag_quote(json_string_value(f), json_string_length(f)));
	snprintf(sub, sizeof(sub), "%s.repo", path);
	if ((f = json_object_get(inputs, "repo")))
		want_type(v, sub, f, JSON_STRING, "string");
	else if (!ex->repo)
		verr(v, sub, "missing: executor '%s' has no repo in agora.conf", ex->name);
	snprintf(sub, sizeof(sub), "%s.base", path);
	if ((f = json_object_get(inputs, "base")))
		want_type(v, sub, f, JSON_STRING, "string");
}

/* Keep a string for the graph checks: 1 + its offset in the pool, 0 when out of memory. */
static size_t
pool_add(struct vctx *v, const char *str)
{
	size_t at = v->pool.len;

	if (ag_buf_put(&v->pool, str, strlen(str) + 1) < 0) {
		v->oom = 1;
		return 0;
	}
	return at + 1;
}

static const char *
pool_str(const struct vctx *v, size_t at)
{
	return at ? v->pool.ptr + at - 1 : NULL;
}

/*
 * A new normalized item, the next one the graph checks see; the caller
 * sets its fields, depends_on among them, and keeps it.
 */
static json_t *
new_item(struct vctx *v)
{
	json_t *n;

	if (v->nitems == v->icap) {
		size_t cap = v->icap ? 2 * v->icap : 64;
		size_t *ids = realloc(v->ids, cap * sizeof(*ids));
		if (!ids) {
			v->oom = 1;
			return NULL;
		}
		v->ids = ids;
		v->icap = cap;
	}
	if (!(n = json_object())) {
		v->oom = 1;
		return NULL;
	}
	v->ids[v->nitems++] = 0;
	return n;
}

/* The id of item i, once it is known to be valid. */
static void
set_item_id(struct vctx *v, size_t i, const char *id)
{
	v->ids[i] = pool_add(v, id);
}

/*
 * Item i (normalized as n) depends on dep, which the plan says at path,
 * or when path is NULL at $.items[i].depends_on[at].
 */
static void
add_dep(struct vctx *v, json_t *n, size_t i, json_t *dep, const char *path, size_t at)
{
	struct gdep *d;

	json_array_append(json_object_get(n, "depends_on"), dep);
	if (v->ndeps == v->dcap) {
		size_t cap = v->dcap ? 2 * v->dcap : 64;
		if (!(d = realloc(v->deps, cap * sizeof(*d)))) {
			v->oom = 1;
			return;
		}
		v->deps = d;
		v->dcap = cap;
	}
	d = &v->deps[v->ndeps++];
	d->item = i;
	d->name = pool_add(v, json_string_value(dep));
	d->origin = path ? pool_add(v, path) : 0;
	d->at = at;
}

/*
 * Validate one agora-format item; its normalized form, or NULL when out
 * of memory. Even a wrong one takes its place, so that the graph's item i
 * is $.items[i].
 */
static json_t *
check_item(struct vctx *v, const char *path, json_t *it)
{
	char sub[AG_JPATH_MAX];
	json_t *n, *f, *e;
	const struct ag_executor *ex = NULL;
	const char *k;
	size_t i, self;

	if (!(n = new_item(v)))
		return NULL;
	self = v->nitems - 1;
	if (!want_type(v, path, it, JSON_OBJECT, "object"))
		return n;
	unknown_fields(v, path, it, item_fields);

	snprintf(sub, sizeof(sub), "%s.id", path);
	if (!(f = json_object_get(it, "id")))
		verr(v, sub, "missing required field");
	else if (check_id(v, sub, f)) {
		json_object_set(n, "id", f);
		set_item_id(v, self, json_string_value(f));
	}

	snprintf(sub, sizeof(sub), "%s.executor", path);
	if (!(f = json_object_get(it, "executor")))
		verr(v, sub, "missing required field");
	else if (check_id(v, sub, f)) {
		if (!(ex = ag_conf_executor(v->conf, json_string_value(f))))
			verr(v, sub, "unknown executor '%s' (not in agora.conf)",
			    json_string_value(f));
		json_object_set(n, "executor", f);
	}

	snprintf(sub, sizeof(sub), "%s.inputs", path);
	if (!(f = json_object_get(it, "inputs")))
		verr(v, sub, "missing required field");
	else if (want_type(v, sub, f, JSON_OBJECT, "object")) {
		if (ex && strcmp(ex->kind, "exec") == 0)
			check_exec_inputs(v, sub, f, ex);
		else if (ex && strcmp(ex->kind, "dispatch") == 0)
			check_dispatch_inputs(v, sub, f, ex);
		json_object_set(n, "inputs", f);
	}

	json_object_set_new(n, "depends_on", json_array());
	snprintf(sub, sizeof(sub), "%s.depends_on", path);
	if (!(f = json_object_get(it, "depends_on")))
		verr(v, sub, "missing required field");
	else if (want_type(v, sub, f, JSON_ARRAY, "array")) {
		if (json_array_size(f) > AG_DEPS_MAX)
			verr(v, sub, "%zu entries is more than the limit of %d",
			    json_array_size(f), AG_DEPS_MAX);
		json_array_foreach(f, i, e) {
			char dsub[AG_JPATH_MAX];
			snprintf(dsub, sizeof(dsub), "%s[%zu]", sub, i);
			/* only valid ids reach the graph checks and the messages */
			if (check_id(v, dsub, e))
				add_dep(v, n, self, e, NULL, i);
		}
	}

	snprintf(sub, sizeof(sub), "%s.resourceLocks", path);
	if (!(f = json_object_get(it, "resourceLocks")))
		verr(v, sub, "missing required field");
	else {
		check_string_array(v, sub, f, AG_LOCKS_MAX, 1);
		if (json_is_array(f)) {
			json_array_foreach(f, i, e) {
				if (json_is_string(e) && json_string_length(e) > AG_LOCKKEY_MAX) {
					char esub[AG_JPATH_MAX];
					snprintf(esub, sizeof(esub), "%s[%zu]", sub, i);
					verr(v, esub, "lock key is longer than %d bytes", AG_LOCKKEY_MAX);
				}
			}
			json_object_set(n, "resourceLocks", f);
		}
	}

	snprintf(sub, sizeof(sub), "%s.priority", path);
	if ((f = json_object_get(it, "priority")) && check_int(v, sub, f, -AG_PRIO_MAX, AG_PRIO_MAX))
		json_object_set(n, "priority", f);
	else
		json_object_set_new(n, "priority", json_integer(0));

	snprintf(sub, sizeof(sub), "%s.timeout", path);
	if ((f = json_object_get(it, "timeout"))) {
		if (json_is_real(f) && json_real_value(f) > 0 && json_real_value(f) <= AG_TIMEOUT_MAX)
			json_object_set(n, "timeout", f);
		else if (check_int(v, sub, f, 1, AG_TIMEOUT_MAX))
			json_object_set(n, "timeout", f);
	}
	snprintf(sub, sizeof(sub), "%s.maxAttempts", path);
	if ((f = json_object_get(it, "maxAttempts")) && check_int(v, sub, f, 1, 1000))
		json_object_set(n, "maxAttempts", f);

	snprintf(sub, sizeof(sub), "%s.title", path);
	if ((f = json_object_get(it, "title")) && want_type(v, sub, f, JSON_STRING, "string"))
		json_object_set(n, "title", f);

	snprintf(sub, sizeof(sub), "%s.slots", path);
	if ((f = json_object_get(it, "slots")) && want_type(v, sub, f, JSON_OBJECT, "object")) {
		json_object_foreach(f, k, e) {
			char ssub[AG_JPATH_MAX];
			const struct ag_slot *s;
			snprintf(ssub, sizeof(ssub), "%s.%s", sub, ag_quote(k, strlen(k)));
			if (!ag_id_valid(k)) {
				verr(v, ssub, "invalid slot name");
				continue;
			}
			if (!(s = ag_conf_slot(v->conf, k)))
				verr(v, ssub, "unknown slot '%s' (not in agora.conf)", k);
			if (check_int(v, ssub, e, 1, 1000000) && s && json_integer_value(e) > s->capacity)
				verr(v, ssub, "asks for %lld of slot '%s', whose capacity is %d",
				    (long long)json_integer_value(e), k, s->capacity);
		}
		json_object_set(n, "slots", f);
	}

	snprintf(sub, sizeof(sub), "%s.needs", path);
	if ((f = json_object_get(it, "needs")) && want_type(v, sub, f, JSON_OBJECT, "object")) {
		static const char *const need_fields[] = { "from", "select", NULL };
		static const char *const select_fields[] = { "kind", "path", NULL };
		json_t *deps = json_object_get(n, "depends_on");
		struct ag_map named;
		size_t at;

		if (json_object_size(f) > AG_DEPS_MAX)
			verr(v, sub, "%zu entries is more than the limit of %d",
			    json_object_size(f), AG_DEPS_MAX);
		/*
		 * A from already in depends_on is not added again, so that a
		 * normalized plan normalizes to itself when reconcile checks it.
		 */
		if (ag_map_init(&named, json_array_size(deps) + json_object_size(f)) < 0) {
			v->oom = 1;
			return n;
		}
		json_array_foreach(deps, i, e)
			ag_map_put(&named, json_string_value(e), i);
		json_object_foreach(f, k, e) {
			char nsub[AG_JPATH_MAX], fsub[AG_JPATH_MAX], ksub[AG_JPATH_MAX];
			json_t *from, *sel, *kind, *spath;
			snprintf(nsub, sizeof(nsub), "%s.%s", sub, ag_quote(k, strlen(k)));
			if (!ag_id_valid(k))
				verr(v, nsub, "invalid needs key: keys match [A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}");
			if (!want_type(v, nsub, e, JSON_OBJECT, "object"))
				continue;
			unknown_fields(v, nsub, e, need_fields);
			snprintf(fsub, sizeof(fsub), "%s.from", nsub);
			if (!(from = json_object_get(e, "from")))
				verr(v, fsub, "missing required field");
			else if (check_id(v, fsub, from) &&
			    ag_map_get(&named, json_string_value(from), &at) < 0) {
				add_dep(v, n, self, from, fsub, 0);
				ag_map_put(&named, json_string_value(from), 0);
			}
			snprintf(fsub, sizeof(fsub), "%s.select", nsub);
			if (!(sel = json_object_get(e, "select"))) {
				verr(v, fsub, "missing required field");
				continue;
			}
			if (!want_type(v, fsub, sel, JSON_OBJECT, "object"))
				continue;
			unknown_fields(v, fsub, sel, select_fields);
			snprintf(ksub, sizeof(ksub), "%s.kind", fsub);
			kind = json_object_get(sel, "kind");
			spath = json_object_get(sel, "path");
			if (!kind) {
				verr(v, ksub, "missing required field");
			} else if (json_is_string(kind) && strcmp(json_string_value(kind), "output") == 0) {
				snprintf(ksub, sizeof(ksub), "%s.path", fsub);
				if (!spath)
					verr(v, ksub, "missing required field for kind \"output\"");
				else if (want_type(v, ksub, spath, JSON_STRING, "string") &&
				    json_string_length(spath) == 0)
					verr(v, ksub, "empty string");
			} else if (json_is_string(kind) && strcmp(json_string_value(kind), "patch") == 0) {
				if (spath) {
					snprintf(ksub, sizeof(ksub), "%s.path", fsub);
					verr(v, ksub, "kind \"patch\" takes no path");
				}
			} else if (want_type(v, ksub, kind, JSON_STRING, "string")) {
				verr(v, ksub, "unknown kind '%s': use \"patch\" or \"output\"",
				    ag_quote(json_string_value(kind), json_string_length(kind)));
			}
		}
		ag_map_release(&named);
		json_object_set(n, "needs", f);
	}
	return n;
}

/*
 * The executor of every node: --executor, else agora.porkiExecutor. An
 * exec executor must bring its own command, since nodes carry no argv;
 * a dispatch executor cannot run them at all, since they name no
 * subagent (reconcile would refuse the items it made of them).
 */
static void
check_porki_executor(struct vctx *v, const char *executor, int from_option)
{
	const char *path = from_option ? "--executor" : "$";
	const char *what = from_option ? "" : "agora.porkiExecutor: ";
	const struct ag_executor *ex;

	if (!executor) {
		verr(v, "$", "a porki DAG needs an executor: give --executor or set agora.porkiExecutor");
		return;
	}
	if (ag_id_check(executor, strlen(executor)) < 0) {
		verr(v, path, "%s", ag_error_msg());
		return;
	}
	if (!(ex = ag_conf_executor(v->conf, executor)))
		verr(v, path, "%sunknown executor '%s' (not in agora.conf)", what, executor);
	else if (strcmp(ex->kind, "exec") == 0 && !ex->command)
		verr(v, path, "%sexecutor '%s' has no command in agora.conf, and porki nodes "
		    "carry no inputs.argv or inputs.sh", what, executor);
	else if (strcmp(ex->kind, "dispatch") == 0)
		verr(v, path, "%sexecutor '%s' is of kind dispatch, and porki nodes carry no "
		    "inputs.subagent", what, executor);
}

static void
convert_porki(struct vctx *v, json_t *root, json_t *plan, const struct ag_plan_opts *o)
{
	static const char *const top[] = { "goal_id", "nodes", "edges", NULL };
	static const char *const node_fields[] = { "id", "title", "priority",
		"expected_artifacts", "metadata", NULL };
	const char *executor = o->executor ? o->executor : v->conf->porki_executor;
	char path[AG_JPATH_MAX], sub[AG_JPATH_MAX];
	struct ag_map idx;
	json_t *nodes, *edges, *items, *f, *e;
	size_t i, at;
	const char *k;

	unknown_fields(v, "$", root, top);
	items = json_array();
	json_object_set_new(plan, "items", items);
	if ((f = json_object_get(root, "goal_id")) && check_id(v, "$.goal_id", f))
		json_object_set(plan, "id", f);
	else if (!f)
		verr(v, "$.goal_id", "missing required field");
	check_porki_executor(v, executor, o->executor != NULL);
	nodes = json_object_get(root, "nodes");
	if (!nodes) {
		verr(v, "$.nodes", "missing required field");
		return;
	}
	if (!want_type(v, "$.nodes", nodes, JSON_ARRAY, "array"))
		return;
	if (json_array_size(nodes) == 0) {
		verr(v, "$.nodes", "a DAG needs at least one node");
		return;
	}
	if (json_array_size(nodes) > AG_ITEMS_MAX) {
		verr(v, "$.nodes", "%zu nodes is more than the limit of %d",
		    json_array_size(nodes), AG_ITEMS_MAX);
		return;
	}
	if (ag_map_init(&idx, json_array_size(nodes)) < 0) {
		v->oom = 1;
		return;
	}
	json_array_foreach(nodes, i, e) {
		json_t *n, *inputs;
		snprintf(path, sizeof(path), "$.nodes[%zu]", i);
		/* even a wrong one takes its place, so that items[i] is $.nodes[i] */
		if (!(n = new_item(v)))
			break;
		json_array_append_new(items, n);
		if (!want_type(v, path, e, JSON_OBJECT, "object"))
			continue;
		unknown_fields(v, path, e, node_fields);
		inputs = json_object();
		snprintf(sub, sizeof(sub), "%s.id", path);
		if (!(f = json_object_get(e, "id")))
			verr(v, sub, "missing required field");
		else if (check_id(v, sub, f)) {
			json_object_set(n, "id", f);
			set_item_id(v, v->nitems - 1, json_string_value(f));
			ag_map_put(&idx, json_string_value(f), v->nitems - 1);
		}
		if (executor)
			json_object_set_new(n, "executor", json_string(executor));
		json_object_set_new(n, "inputs", inputs);
		json_object_set_new(n, "depends_on", json_array());
		json_object_set_new(n, "resourceLocks", json_array());
		snprintf(sub, sizeof(sub), "%s.title", path);
		if ((f = json_object_get(e, "title")) && want_type(v, sub, f, JSON_STRING, "string")) {
			json_object_set(n, "title", f);
			json_object_set(inputs, "title", f);
		}
		snprintf(sub, sizeof(sub), "%s.priority", path);
		if ((f = json_object_get(e, "priority")) && check_int(v, sub, f, 0, AG_PRIO_MAX))
			json_object_set(n, "priority", f);
		else
			json_object_set_new(n, "priority", json_integer(0));
		snprintf(sub, sizeof(sub), "%s.expected_artifacts", path);
		if ((f = json_object_get(e, "expected_artifacts"))) {
			check_string_array(v, sub, f, 4096, 1);
			json_object_set(inputs, "expected_artifacts", f);
		}
		snprintf(sub, sizeof(sub), "%s.metadata", path);
		if ((f = json_object_get(e, "metadata")) && want_type(v, sub, f, JSON_OBJECT, "object")) {
			json_t *mv;
			json_object_foreach(f, k, mv) {
				char msub[AG_JPATH_MAX];
				snprintf(msub, sizeof(msub), "%s.%s", sub, ag_quote(k, strlen(k)));
				want_type(v, msub, mv, JSON_STRING, "string");
			}
			json_object_set(inputs, "metadata", f);
		}
	}
	edges = json_object_get(root, "edges");
	if (edges && want_type(v, "$.edges", edges, JSON_ARRAY, "array")) {
		json_array_foreach(edges, i, e) {
			static const char *const edge_fields[] = { "source", "target", NULL };
			json_t *src, *dst;
			int ok = 1;
			snprintf(path, sizeof(path), "$.edges[%zu]", i);
			if (!want_type(v, path, e, JSON_OBJECT, "object"))
				continue;
			unknown_fields(v, path, e, edge_fields);
			src = json_object_get(e, "source");
			dst = json_object_get(e, "target");
			snprintf(sub, sizeof(sub), "%s.source", path);
			if (!src) {
				verr(v, sub, "missing required field");
				ok = 0;
			} else if (!check_id(v, sub, src)) {
				ok = 0;
			} else if (ag_map_get(&idx, json_string_value(src), &at) < 0) {
				verr(v, sub, "unknown node '%s'", json_string_value(src));
				ok = 0;
			}
			snprintf(sub, sizeof(sub), "%s.target", path);
			if (!dst) {
				verr(v, sub, "missing required field");
				ok = 0;
			} else if (!check_id(v, sub, dst)) {
				ok = 0;
			} else if (ag_map_get(&idx, json_string_value(dst), &at) < 0) {
				verr(v, sub, "unknown node '%s'", json_string_value(dst));
				ok = 0;
			}
			if (ok)
				add_dep(v, json_array_get(items, at), at, src, path, 0);
		}
	}
	ag_map_release(&idx);
}

/* One dependency of an item, as the graph checks see it. */
struct dep {
	size_t to;	/* the item depended on */
	size_t at;	/* its entry in v->deps, which names its origin */
};

/* The plan path that states dependency k. */
static const char *
dep_origin(struct vctx *v, size_t k)
{
	const struct gdep *d = &v->deps[k];

	if (d->origin)
		return pool_str(v, d->origin);
	snprintf(v->origin, sizeof(v->origin), "$.items[%zu].depends_on[%zu]", d->item, d->at);
	return v->origin;
}

static const char *
item_id(const struct vctx *v, size_t i)
{
	return pool_str(v, v->ids[i]);
}

/* The same for a message: an item in a cycle always has an id. */
static const char *
cycle_id(const struct vctx *v, size_t i)
{
	const char *id = item_id(v, i);

	return id ? id : "?";
}

/*
 * Name the cycle that the walk closed: stack[s..sp) holds its items, each
 * depending on the next, and the last depending on the first. An agora
 * plan reads it in the direction of depends_on ("a -> b": a depends on
 * b), a porki DAG in the direction of its edges (source -> target); the
 * error points at the plan entry that states the first arrow.
 */
static void
report_cycle(struct vctx *v, struct dep **adj, const size_t *stack,
    const size_t *pos, size_t s, size_t sp, int porki)
{
	struct ag_buf cyc;
	const char *path;
	size_t k, w = stack[s], u = stack[sp - 1];

	/* verr's line holds 1024 bytes: a long cycle is cut after 700 */
	ag_buf_init(&cyc, 4096);
	if (porki) {
		path = dep_origin(v, adj[u][pos[sp - 1] - 1].at);
		ag_buf_printf(&cyc, "%s", cycle_id(v, w));
		for (k = sp; k-- > s;) {
			if (cyc.len > 700 && k > s) {
				ag_buf_puts(&cyc, " -> ...");
				k = s;
			}
			ag_buf_printf(&cyc, " -> %s", cycle_id(v, stack[k]));
		}
	} else {
		path = dep_origin(v, adj[w][pos[s] - 1].at);
		for (k = s; k < sp; k++) {
			if (cyc.len > 700) {
				ag_buf_puts(&cyc, "... -> ");
				break;
			}
			ag_buf_printf(&cyc, "%s -> ", cycle_id(v, stack[k]));
		}
		ag_buf_printf(&cyc, "%s", cycle_id(v, w));
	}
	verr(v, path, "dependency cycle: %s", cyc.ptr ? cyc.ptr : "");
	ag_buf_release(&cyc);
}

/*
 * Duplicate ids, unknown dependencies and self-dependencies, and cycles.
 * The cycle search is an iterative depth-first walk, so a 100 000-long
 * chain does not overflow the stack. Returns AG_ERROR only when out of
 * memory, when the plan could not be checked at all.
 */
static int
check_graph(struct vctx *v, int porki)
{
	const char *list_name = porki ? "nodes" : "items";
	size_t n = v->nitems, i, j, k, at;
	struct ag_map idx;
	struct dep **adj = NULL;
	size_t *nadj = NULL, *seen = NULL, *stack = NULL, *pos = NULL;
	unsigned char *color = NULL;
	char path[AG_JPATH_MAX];
	int rc = AG_ERROR;

	if (ag_map_init(&idx, n) < 0)
		return AG_ERROR;
	adj = calloc(n + 1, sizeof(*adj));
	nadj = calloc(n + 1, sizeof(*nadj));
	seen = calloc(n + 1, sizeof(*seen));
	color = calloc(n + 1, 1);
	stack = calloc(n + 1, sizeof(*stack));
	pos = calloc(n + 1, sizeof(*pos));
	if (!adj || !nadj || !seen || !color || !stack || !pos)
		goto out;
	for (i = 0; i < n; i++) {
		const char *id = item_id(v, i);
		if (!id)
			continue;	/* missing or invalid: already said */
		if (ag_map_get(&idx, id, &at) == 0) {
			snprintf(path, sizeof(path), "$.%s[%zu].id", list_name, i);
			verr(v, path, "duplicate id '%s' (first at $.%s[%zu])", id, list_name, at);
		} else if (ag_map_put(&idx, id, i) < 0) {
			goto out;
		}
	}
	/* each item's dependencies, in the order the plan gives them */
	for (k = 0; k < v->ndeps; k++)
		nadj[v->deps[k].item]++;
	for (i = 0; i < n; i++) {
		if (!(adj[i] = calloc(nadj[i] + 1, sizeof(**adj))))
			goto out;
		nadj[i] = 0;
	}
	for (k = 0; k < v->ndeps; k++)
		adj[v->deps[k].item][nadj[v->deps[k].item]++].at = k;
	for (i = 0; i < n; i++) {
		const char *id = item_id(v, i);
		size_t m = nadj[i];
		nadj[i] = 0;
		for (j = 0; j < m; j++) {
			size_t kk = adj[i][j].at;
			const char *d = pool_str(v, v->deps[kk].name);
			if (ag_map_get(&idx, d, &at) < 0) {
				verr(v, dep_origin(v, kk), "unknown dependency '%s'", d);
				continue;
			}
			if (id && strcmp(id, d) == 0) {
				verr(v, dep_origin(v, kk), "%s '%s' depends on itself", v->what, id);
				continue;
			}
			/* a dependency named twice (depends_on and needs) is one edge */
			if (seen[at] == i + 1)
				continue;
			seen[at] = i + 1;
			adj[i][nadj[i]].to = at;
			adj[i][nadj[i]++].at = kk;
		}
	}
	/* 0 white, 1 on the stack, 2 finished */
	for (i = 0; i < n; i++) {
		size_t sp = 0;
		if (color[i])
			continue;
		stack[sp] = i;
		pos[sp++] = 0;
		color[i] = 1;
		while (sp) {
			size_t u = stack[sp - 1];
			if (pos[sp - 1] < nadj[u]) {
				size_t w = adj[u][pos[sp - 1]++].to;
				if (color[w] == 0) {
					color[w] = 1;
					stack[sp] = w;
					pos[sp++] = 0;
				} else if (color[w] == 1) {
					size_t s = sp;
					while (s > 0 && stack[s - 1] != w)
						s--;
					if (s > 0 && s < sp)
						report_cycle(v, adj, stack, pos, s - 1, sp, porki);
				}
			} else {
				color[u] = 2;
				sp--;
			}
		}
	}
	rc = 0;
out:
	if (adj)
		for (i = 0; i < n; i++)
			free(adj[i]);
	free(adj);
	free(nadj);
	free(seen);
	free(color);
	free(stack);
	free(pos);
	ag_map_release(&idx);
	return rc;
}

static void
check_actor(struct vctx *v, const char *path, const json_t *j)
{
	if (want_type(v, path, j, JSON_STRING, "string") &&
	    ag_actor_check(json_string_value(j), json_string_length(j)) < 0)
		verr(v, path, "%s", ag_error_msg());
}

/* The queue: --queue, else the plan's, else agora.defaultQueue; it must be configured. */
static void
check_queue(struct vctx *v, json_t *plan, const struct ag_plan_opts *o)
{
	const char *q = json_string_value(json_object_get(plan, "queue"));

	if (o->queue) {
		if (ag_id_check(o->queue, strlen(o->queue)) < 0)
			verr(v, "--queue", "%s", ag_error_msg());
		else if (!ag_conf_queue(v->conf, o->queue))
			verr(v, "--queue", "unknown queue '%s' (not in agora.conf)", o->queue);
		else
			json_object_set_new(plan, "queue", json_string(o->queue));
	} else if (q) {
		if (!ag_conf_queue(v->conf, q))
			verr(v, "$.queue", "unknown queue '%s' (not in agora.conf)", q);
	} else if (!ag_conf_queue(v->conf, v->conf->default_queue)) {
		verr(v, "$", "agora.defaultQueue names unknown queue '%s' (not in agora.conf)",
		    v->conf->default_queue);
	} else {
		json_object_set_new(plan, "queue", json_string(v->conf->default_queue));
	}
}

/* The run's own fields of an agora plan. */
static void
check_top(struct vctx *v, json_t *root, json_t *plan)
{
	static const char *const top[] = { "id", "queue", "items", "maxAttempts", "title",
		"actor", NULL };
	json_t *f;

	unknown_fields(v, "$", root, top);
	if ((f = json_object_get(root, "id")) && check_id(v, "$.id", f))
		json_object_set(plan, "id", f);
	if ((f = json_object_get(root, "queue")) && check_id(v, "$.queue", f))
		json_object_set(plan, "queue", f);
	if ((f = json_object_get(root, "title")) && want_type(v, "$.title", f, JSON_STRING, "string"))
		json_object_set(plan, "title", f);
	if ((f = json_object_get(root, "actor"))) {
		check_actor(v, "$.actor", f);
		json_object_set(plan, "actor", f);
	}
	if ((f = json_object_get(root, "maxAttempts")) && check_int(v, "$.maxAttempts", f, 1, 1000))
		json_object_set(plan, "maxAttempts", f);
}

/* Add a normalized item to the plan's text. */
static int
put_item(struct ag_plan *out, const json_t *n)
{
	char *line = json_dumps(n, JSON_COMPACT | JSON_PRESERVE_ORDER);
	int rc;

	if (!line)
		return ag_error_set(AG_ERROR, "out of memory");
	if ((rc = ag_buf_puts(&out->items, line)) == 0 && (rc = ag_buf_puts(&out->items, ",\n")) == 0)
		out->nitems++;
	free(line);
	return rc;
}

static size_t
skip_ws(const char *s, size_t len, size_t i)
{
	while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	return i;
}

/*
 * Where the JSON value at s[i] ends, going by quotes and brackets alone,
 * or 0. jansson parses the value after, so a wrong guess is an error,
 * never a wrong value.
 */
static size_t
value_end(const char *s, size_t len, size_t i)
{
	size_t depth = 0;

	while (i < len) {
		char c = s[i];
		if (c == '"') {
			for (i++; i < len && s[i] != '"'; i++)
				if (s[i] == '\\')
					i++;
			if (i >= len)
				return 0;
			if (++i, depth == 0)
				return i;
		} else if (c == '{' || c == '[') {
			depth++;
			i++;
		} else if (c == '}' || c == ']') {
			if (depth == 0)
				return i;
			i++;
			if (--depth == 0)
				return i;
		} else if (depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' ||
		    c == '\r' || c == ':')) {
			return i;
		} else {
			i++;
		}
	}
	return depth == 0 ? i : 0;
}

static json_t *
load_value(const char *s, size_t from, size_t to)
{
	return json_loadb(s + from, to - from,
	    JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
}

/*
 * The way for a big plan: an agora plan read one item at a time, each
 * parsed, checked, written out and dropped in turn, so that memory never
 * holds the whole plan as JSON values. The run's own fields go into root.
 * At anything unusual (an error, a porki DAG, a duplicate key) it returns
 * 1, and the caller starts over on the whole text, so that every message
 * is the one the plain way gives.
 */
static int
stream_items(struct vctx *v, json_t *root, struct ag_plan *out, const char *s, size_t len)
{
	char path[AG_JPATH_MAX];
	size_t i = skip_ws(s, len, 0), e;
	int items = 0, rc = 1;
	json_t *key = NULL, *val, *it, *n;
	const char *k;

	if (i >= len || s[i] != '{')
		return 1;
	for (i = skip_ws(s, len, i + 1);; i = skip_ws(s, len, i + 1)) {
		json_decref(key);
		key = NULL;
		if (i >= len || s[i] != '"' || !(e = value_end(s, len, i)) ||
		    !(key = load_value(s, i, e)) || !json_is_string(key))
			goto out;
		k = json_string_value(key);
		if (strlen(k) != json_string_length(key) || strcmp(k, "nodes") == 0 ||
		    strcmp(k, "goal_id") == 0 || json_object_get(root, k))
			goto out;
		i = skip_ws(s, len, e);
		if (i >= len || s[i] != ':')
			goto out;
		i = skip_ws(s, len, i + 1);
		if (strcmp(k, "items") != 0) {
			if (!(e = value_end(s, len, i)) || !(val = load_value(s, i, e)) ||
			    json_object_set_new(root, k, val) < 0)
				goto out;
			i = e;
		} else {
			if (items || i >= len || s[i] != '[')
				goto out;
			items = 1;
			for (i = skip_ws(s, len, i + 1);; i = skip_ws(s, len, i + 1)) {
				if (v->nitems >= AG_ITEMS_MAX || !(e = value_end(s, len, i)) ||
				    !(it = load_value(s, i, e)))
					goto out;
				snprintf(path, sizeof(path), "$.items[%zu]", v->nitems);
				check_strings(v, path, it, 2);
				n = check_item(v, path, it);
				json_decref(it);
				if (!n || v->nerrs || v->oom || put_item(out, n) < 0) {
					json_decref(n);
					goto out;
				}
				json_decref(n);
				i = skip_ws(s, len, e);
				if (i >= len || s[i] != ',')
					break;
			}
			if (i >= len || s[i] != ']')
				goto out;
			i++;
		}
		i = skip_ws(s, len, i);
		if (i >= len || s[i] != ',')
			break;
	}
	if (i < len && s[i] == '}' && skip_ws(s, len, i + 1) == len && items)
		rc = 0;
out:
	json_decref(key);
	return rc;
}

/* Forget what a try left, to start over. */
static void
vctx_reset(struct vctx *v, size_t errs_len)
{
	ag_buf_release(&v->pool);
	ag_buf_init(&v->pool, 0);
	free(v->ids);
	free(v->deps);
	v->ids = NULL;
	v->deps = NULL;
	v->nitems = v->icap = v->ndeps = v->dcap = 0;
	v->nerrs = 0;
	v->oom = 0;
	v->what = "item";
	if (v->errs->len > errs_len) {
		v->errs->len = errs_len;
		if (v->errs->ptr)
			v->errs->ptr[errs_len] = '\0';
	}
}

void
ag_plan_release(struct ag_plan *p)
{
	json_decref(p->head);
	p->head = NULL;
	ag_buf_release(&p->items);
	p->nitems = 0;
}

int
ag_plan_parse(struct ag_plan *out, struct ag_buf *errs, const struct ag_conf *conf,
    const char *text, size_t len, const struct ag_plan_opts *o)
{
	struct vctx v = { .name = o->name, .errs = errs, .conf = conf, .what = "item" };
	json_error_t jerr;
	json_t *root = NULL, *plan = NULL, *items = NULL, *f, *it;
	size_t i, errs_len = errs->len;
	char path[AG_JPATH_MAX];
	int porki = 0, fast, rc = AG_EINVALID;

	memset(out, 0, sizeof(*out));
	ag_buf_init(&out->items, 0);
	ag_buf_init(&v.pool, 0);
	if (len > AG_PLAN_MAX) {
		ag_buf_printf(errs, "%s: plan is larger than the limit of %d bytes\n",
		    o->name, AG_PLAN_MAX);
		return AG_EINVALID;
	}
	if (!(root = json_object()) || !(plan = json_object())) {
		rc = ag_error_set(AG_ERROR, "out of memory");
		goto out;
	}
	/* the tests compare both ways on the same plans */
	fast = !getenv("AGORA_TEST_PLAN_WHOLE") && stream_items(&v, root, out, text, len) == 0;
	if (fast) {
		check_strings(&v, "$", root, 0);
		check_top(&v, root, plan);
	}
	if (!fast || v.nerrs || v.oom) {
		/* the plain way: the whole plan in memory, every error said */
		vctx_reset(&v, errs_len);
		ag_buf_release(&out->items);
		out->nitems = 0;
		json_decref(root);
		json_decref(plan);
		plan = json_object();
		root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
		if (!root) {
			ag_buf_printf(errs, "%s:%d:%d: invalid JSON: %s\n", o->name, jerr.line,
			    jerr.column, ag_json_error_text(&jerr));
			goto out;
		}
		if (!json_is_object(root)) {
			verr(&v, "$", "expected object, got %s", type_name(root));
			goto out;
		}
		check_strings(&v, "$", root, 0);
		porki = json_object_get(root, "nodes") || json_object_get(root, "goal_id");
		if (porki) {
			v.what = "node";
			convert_porki(&v, root, plan, o);
			items = json_incref(json_object_get(plan, "items"));
			json_object_del(plan, "items");
		} else {
			if (o->executor)
				verr(&v, "--executor", "applies only to porki DAGs; "
				    "the items of an agora plan name their executor");
			check_top(&v, root, plan);
			items = json_array();
			f = json_object_get(root, "items");
			if (!f) {
				verr(&v, "$.items", "missing required field");
			} else if (want_type(&v, "$.items", f, JSON_ARRAY, "array")) {
				if (json_array_size(f) == 0)
					verr(&v, "$.items", "a plan needs at least one item");
				else if (json_array_size(f) > AG_ITEMS_MAX)
					verr(&v, "$.items", "%zu items is more than the limit of %d",
					    json_array_size(f), AG_ITEMS_MAX);
				else
					json_array_foreach(f, i, it) {
						snprintf(path, sizeof(path), "$.items[%zu]", i);
						json_array_append_new(items, check_item(&v, path, it));
					}
			}
		}
	} else if (o->executor) {
		verr(&v, "--executor", "applies only to porki DAGs; "
		    "the items of an agora plan name their executor");
	}
	if (v.oom || check_graph(&v, porki) < 0) {
		rc = ag_error_set(AG_ERROR, "out of memory checking plan '%s'", o->name);
		goto out;
	}
	if (o->id) {
		if (ag_id_check(o->id, strlen(o->id)) < 0)
			verr(&v, "--id", "%s", ag_error_msg());
		else
			json_object_set_new(plan, "id", json_string(o->id));
	}
	check_queue(&v, plan, o);
	if (v.nerrs)
		goto out;
	json_array_foreach(items, i, it)
		if ((rc = put_item(out, it)) < 0)
			goto out;
	out->head = plan;
	plan = NULL;
	rc = 0;
out:
	json_decref(root);
	json_decref(items);
	json_decref(plan);
	ag_buf_release(&v.pool);
	free(v.ids);
	free(v.deps);
	if (v.nerrs > AG_PLAN_ERRORS_MAX)
		ag_buf_printf(errs, "%s: ... and %zu more error%s\n", o->name,
		    v.nerrs - AG_PLAN_ERRORS_MAX, v.nerrs - AG_PLAN_ERRORS_MAX == 1 ? "" : "s");
	if (rc < 0)
		ag_plan_release(out);
	return rc;
}
