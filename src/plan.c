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

struct vctx {
	const char *name;
	struct ag_buf *errs;
	size_t nerrs;
	const struct ag_conf *conf;
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
	if (!json_is_string(j)) {
		verr(v, path, "expected string, got %s", type_name(j));
		return 0;
	}
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

static void
check_string_array(struct vctx *v, const char *path, const json_t *j, size_t max,
    int ids)
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
		if (ids > 0)
			check_id(v, sub, e);
		else if (want_type(v, sub, e, JSON_STRING, "string") && ids == 0 &&
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
		check_string_array(v, sub, argv, 4096, -1);
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
				if (!*k || strchr(k, '=') || strncmp(k, "AGORA_", 6) == 0)
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

/* Validate one agora-format item and add its normalized form to items. */
static void
check_item(struct vctx *v, const char *path, json_t *it, json_t *items)
{
	char sub[AG_JPATH_MAX];
	json_t *n, *f, *e;
	const struct ag_executor *ex = NULL;
	const char *k;
	size_t i;

	if (!want_type(v, path, it, JSON_OBJECT, "object"))
		return;
	unknown_fields(v, path, it, item_fields);
	n = json_object();
	json_array_append_new(items, n);

	snprintf(sub, sizeof(sub), "%s.id", path);
	if (!(f = json_object_get(it, "id")))
		verr(v, sub, "missing required field");
	else if (check_id(v, sub, f))
		json_object_set(n, "id", f);

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
		json_object_set(n, "inputs", f);
	}

	json_object_set_new(n, "depends_on", json_array());
	snprintf(sub, sizeof(sub), "%s.depends_on", path);
	if (!(f = json_object_get(it, "depends_on")))
		verr(v, sub, "missing required field");
	else {
		check_string_array(v, sub, f, AG_DEPS_MAX, 1);
		if (json_is_array(f))
			json_array_foreach(f, i, e)
				if (json_is_string(e))
					json_array_append(json_object_get(n, "depends_on"), e);
	}

	snprintf(sub, sizeof(sub), "%s.resourceLocks", path);
	if (!(f = json_object_get(it, "resourceLocks")))
		verr(v, sub, "missing required field");
	else {
		check_string_array(v, sub, f, AG_LOCKS_MAX, 0);
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
		json_object_foreach(f, k, e) {
			char nsub[AG_JPATH_MAX], fsub[AG_JPATH_MAX];
			json_t *from, *sel, *kind;
			snprintf(nsub, sizeof(nsub), "%s.%s", sub, ag_quote(k, strlen(k)));
			if (!ag_id_valid(k))
				verr(v, nsub, "invalid needs key");
			if (!want_type(v, nsub, e, JSON_OBJECT, "object"))
				continue;
			snprintf(fsub, sizeof(fsub), "%s.from", nsub);
			if (!(from = json_object_get(e, "from")))
				verr(v, fsub, "missing required field");
			else if (check_id(v, fsub, from))
				json_array_append(json_object_get(n, "depends_on"), from);
			snprintf(fsub, sizeof(fsub), "%s.select", nsub);
			if (!(sel = json_object_get(e, "select")))
				verr(v, fsub, "missing required field");
			else if (want_type(v, fsub, sel, JSON_OBJECT, "object")) {
				kind = json_object_get(sel, "kind");
				if (!json_is_string(kind) || (strcmp(json_string_value(kind), "patch") != 0 &&
				    strcmp(json_string_value(kind), "output") != 0))
					verr(v, fsub, "select.kind must be \"patch\" or \"output\"");
				else if (strcmp(json_string_value(kind), "output") == 0 &&
				    !json_is_string(json_object_get(sel, "path")))
					verr(v, fsub, "select.path must be a string for kind \"output\"");
			}
		}
		json_object_set(n, "needs", f);
	}
}

static void
convert_porki(struct vctx *v, json_t *root, json_t *plan, const char *executor)
{
	static const char *const top[] = { "goal_id", "nodes", "edges", NULL };
	static const char *const node_fields[] = { "id", "title", "priority",
		"expected_artifacts", "metadata", NULL };
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
	if (!executor)
		verr(v, "$", "a porki DAG needs an executor: give --executor or set agora.porkiExecutor");
	else if (!ag_conf_executor(v->conf, executor))
		verr(v, "$", "unknown executor '%s' (not in agora.conf)", executor);
	nodes = json_object_get(root, "nodes");
	if (!nodes) {
		verr(v, "$.nodes", "missing required field");
		return;
	}
	if (!want_type(v, "$.nodes", nodes, JSON_ARRAY, "array"))
		return;
	if (ag_map_init(&idx, json_array_size(nodes)) < 0)
		return;
	json_array_foreach(nodes, i, e) {
		json_t *n, *inputs;
		snprintf(path, sizeof(path), "$.nodes[%zu]", i);
		if (!want_type(v, path, e, JSON_OBJECT, "object"))
			continue;
		unknown_fields(v, path, e, node_fields);
		n = json_object();
		inputs = json_object();
		json_array_append_new(items, n);
		snprintf(sub, sizeof(sub), "%s.id", path);
		if (!(f = json_object_get(e, "id")))
			verr(v, sub, "missing required field");
		else if (check_id(v, sub, f)) {
			json_object_set(n, "id", f);
			ag_map_put(&idx, json_string_value(f), json_array_size(items) - 1);
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
			check_string_array(v, sub, f, 4096, 0);
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
				json_array_append(json_object_get(json_array_get(items, at),
				    "depends_on"), src);
		}
	}
	ag_map_release(&idx);
}

/*
 * Duplicate ids, unknown and repeated dependencies, and cycles. The cycle
 * search is an iterative depth-first walk, so a 100 000-long chain does
 * not overflow the stack; the error names the cycle.
 */
static void
check_graph(struct vctx *v, json_t *items, const char *list_name)
{
	size_t n = json_array_size(items), i, j, at;
	struct ag_map idx;
	size_t **adj = NULL, *nadj = NULL;
	unsigned char *color = NULL;
	size_t *stack = NULL, *pos = NULL;
	char path[AG_JPATH_MAX];
	json_t *it, *d;

	if (ag_map_init(&idx, n) < 0)
		return;
	adj = calloc(n + 1, sizeof(*adj));
	nadj = calloc(n + 1, sizeof(*nadj));
	color = calloc(n + 1, 1);
	stack = calloc(n + 1, sizeof(*stack));
	pos = calloc(n + 1, sizeof(*pos));
	if (!adj || !nadj || !color || !stack || !pos)
		goto out;
	json_array_foreach(items, i, it) {
		json_t *id = json_object_get(it, "id");
		if (!json_is_string(id))
			continue;
		if (ag_map_get(&idx, json_string_value(id), &at) == 0) {
			snprintf(path, sizeof(path), "$.%s[%zu].id", list_name, i);
			verr(v, path, "duplicate id '%s' (first at $.%s[%zu])",
			    json_string_value(id), list_name, at);
		} else {
			ag_map_put(&idx, json_string_value(id), i);
		}
	}
	json_array_foreach(items, i, it) {
		json_t *deps = json_object_get(it, "depends_on");
		json_t *id = json_object_get(it, "id");
		size_t nd = json_array_size(deps);
		adj[i] = calloc(nd + 1, sizeof(**adj));
		if (!adj[i])
			goto out;
		json_array_foreach(deps, j, d) {
			size_t k;
			int dup = 0;
			snprintf(path, sizeof(path), "$.%s[%zu].depends_on[%zu]", list_name, i, j);
			if (ag_map_get(&idx, json_string_value(d), &at) < 0) {
				if (strcmp(list_name, "items") == 0)
					verr(v, path, "unknown dependency '%s'", json_string_value(d));
				continue;
			}
			if (json_is_string(id) && strcmp(json_string_value(id), json_string_value(d)) == 0) {
				verr(v, path, "item '%s' depends on itself", json_string_value(d));
				continue;
			}
			for (k = 0; k < nadj[i]; k++)
				if (adj[i][k] == at)
					dup = 1;
			if (!dup)
				adj[i][nadj[i]++] = at;
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
				size_t w = adj[u][pos[sp - 1]++];
				if (color[w] == 0) {
					color[w] = 1;
					stack[sp] = w;
					pos[sp++] = 0;
				} else if (color[w] == 1) {
					struct ag_buf cyc;
					size_t s = sp;
					while (s > 0 && stack[s - 1] != w)
						s--;
					ag_buf_init(&cyc, 4096);
					/* stack[s-1..sp-1] is w ... u; u depends on w */
					for (j = sp; j-- > s - 1;) {
						ag_buf_printf(&cyc, "%s -> ", json_string_value(
						    json_object_get(json_array_get(items, stack[j]), "id")));
						if (cyc.len > 3000)
							break;
					}
					ag_buf_printf(&cyc, "%s", json_string_value(
					    json_object_get(json_array_get(items, u), "id")));
					snprintf(path, sizeof(path), "$.%s[%zu].depends_on", list_name, u);
					verr(v, path, "dependency cycle: %s", cyc.ptr);
					ag_buf_release(&cyc);
				}
			} else {
				color[u] = 2;
				sp--;
			}
		}
	}
out:
	if (adj)
		for (i = 0; i < n; i++)
			free(adj[i]);
	free(adj);
	free(nadj);
	free(color);
	free(stack);
	free(pos);
	ag_map_release(&idx);
}

int
ag_plan_parse(json_t **out, struct ag_buf *errs, const struct ag_conf *conf,
    const char *text, size_t len, const struct ag_plan_opts *o)
{
	static const char *const top[] = { "id", "queue", "items", "maxAttempts", "title",
		"actor", NULL };
	struct vctx v = { o->name, errs, 0, conf };
	json_error_t jerr;
	json_t *root = NULL, *plan = NULL, *items, *f, *it;
	const char *queue;
	size_t i;
	char path[AG_JPATH_MAX];
	int porki;

	*out = NULL;
	if (len > AG_PLAN_MAX) {
		ag_buf_printf(errs, "%s: plan is %zu bytes, more than the limit of %d\n",
		    o->name, len, AG_PLAN_MAX);
		return AG_EINVALID;
	}
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (!root) {
		ag_buf_printf(errs, "%s:%d:%d: invalid JSON: %s\n", o->name, jerr.line,
		    jerr.column, jerr.text);
		return AG_EINVALID;
	}
	if (!json_is_object(root)) {
		verr(&v, "$", "expected object, got %s", type_name(root));
		goto out;
	}
	check_strings(&v, "$", root, 0);
	plan = json_object();
	porki = json_object_get(root, "nodes") || json_object_get(root, "goal_id");
	if (porki) {
		convert_porki(&v, root, plan, o->executor ? o->executor : conf->porki_executor);
		items = json_object_get(plan, "items");
	} else {
		if (o->executor)
			verr(&v, "$", "--executor applies only to porki DAGs");
		unknown_fields(&v, "$", root, top);
		if ((f = json_object_get(root, "id")) && check_id(&v, "$.id", f))
			json_object_set(plan, "id", f);
		if ((f = json_object_get(root, "queue")) && check_id(&v, "$.queue", f))
			json_object_set(plan, "queue", f);
		if ((f = json_object_get(root, "title")) && want_type(&v, "$.title", f, JSON_STRING, "string"))
			json_object_set(plan, "title", f);
		if ((f = json_object_get(root, "actor")) && want_type(&v, "$.actor", f, JSON_STRING, "string"))
			json_object_set(plan, "actor", f);
		if ((f = json_object_get(root, "maxAttempts")) && check_int(&v, "$.maxAttempts", f, 1, 1000))
			json_object_set(plan, "maxAttempts", f);
		items = json_array();
		json_object_set_new(plan, "items", items);
		f = json_object_get(root, "items");
		if (!f)
			verr(&v, "$.items", "missing required field");
		else if (want_type(&v, "$.items", f, JSON_ARRAY, "array")) {
			if (json_array_size(f) > AG_ITEMS_MAX)
				verr(&v, "$.items", "%zu items is more than the limit of %d",
				    json_array_size(f), AG_ITEMS_MAX);
			else
				json_array_foreach(f, i, it) {
					snprintf(path, sizeof(path), "$.items[%zu]", i);
					check_item(&v, path, it, items);
				}
		}
	}
	if (porki && json_array_size(items) > AG_ITEMS_MAX)
		verr(&v, "$.nodes", "%zu nodes is more than the limit of %d",
		    json_array_size(items), AG_ITEMS_MAX);
	if (json_array_size(items) == 0 && v.nerrs == 0)
		verr(&v, porki ? "$.nodes" : "$.items", "a plan needs at least one item");
	check_graph(&v, items, porki ? "nodes" : "items");

	if (o->id) {
		if (ag_id_check(o->id, strlen(o->id)) < 0)
			verr(&v, "--id", "%s", ag_error_msg());
		else
			json_object_set_new(plan, "id", json_string(o->id));
	}
	if (o->queue)
		json_object_set_new(plan, "queue", json_string(o->queue));
	if (!json_object_get(plan, "queue"))
		json_object_set_new(plan, "queue", json_string(conf->default_queue));
	queue = json_string_value(json_object_get(plan, "queue"));
	if (queue && !ag_id_valid(queue))
		verr(&v, "--queue", "%s", (ag_id_check(queue, strlen(queue)), ag_error_msg()));
	else if (queue && !ag_conf_queue(conf, queue))
		verr(&v, o->queue ? "--queue" : "$.queue", "unknown queue '%s' (not in agora.conf)", queue);
out:
	json_decref(root);
	if (v.nerrs > AG_PLAN_ERRORS_MAX)
		ag_buf_printf(errs, "%s: ... and %zu more errors\n", o->name,
		    v.nerrs - AG_PLAN_ERRORS_MAX);
	if (v.nerrs) {
		json_decref(plan);
		return AG_EINVALID;
	}
	*out = plan;
	return 0;
}
