/*
 * Evidence bundles: agora-bundle(5). A bundle carries the exact bytes of
 * a run's plan.json, status.jsonl and checkpoint (base64, so that bytes
 * that are not UTF-8 survive JSON), the items as the log has them, the
 * anchor receipts, and a report. Checking a bundle trusts nothing in it
 * but those bytes: the items and the report are recomputed, the
 * signature is checked against a key given from outside, the anchors are
 * read back from the anchors themselves, the blobs from an object store.
 */
#include "bundle.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "internal.h"

#include "banned.h"

const char *const ag_check_names[AG_NCHECKS] = {
	"chain", "root", "signature", "anchor", "artifacts", "handoff"
};

#define NA	(-1)	/* a check that does not apply */
#define DETAIL_MAX	600

struct line {
	size_t off;
	size_t len;
	json_t *ev;		/* the line as a JSON object, or NULL */
};

/* A bundle taken apart: its bytes, and the log split and parsed. */
struct bun {
	char run[AG_ID_MAX + 1];
	unsigned char *plan;
	size_t planlen;
	unsigned char *log;
	size_t loglen;
	char *cp;		/* the checkpoint note, or NULL */
	size_t cplen;
	const json_t *items;	/* the bundle's items (borrowed), or NULL when building */
	char *gcp;		/* the global log's checkpoint, or NULL */
	size_t gcplen;
	uint64_t gindex;	/* the run's entry in the global log */
	struct ag_proof gproof;	/* its inclusion in the global checkpoint's tree */

	struct line *lines;
	size_t nlines;
	size_t tail;		/* bytes after the last newline */
	json_t *planj;		/* plan.json parsed, or NULL */
	struct ag_map planidx;	/* item id -> index in planj's items */
	int have_planidx;
};

struct report {
	int ok[AG_NCHECKS];	/* 1, 0 or NA */
	char detail[AG_NCHECKS][DETAIL_MAX];
	int external;		/* an external anchor holds the same checkpoint */
};

/*
 * A detail is one line of printable ASCII, other bytes as \xNN: what it
 * names of a forged bundle (an item id of its log) may hold a newline,
 * and a detail cut short must not end inside a UTF-8 sequence, which
 * JSON refuses.
 */
static void
printable(char *d)
{
	char out[DETAIL_MAX];
	size_t i, n = 0;

	for (i = 0; d[i] && n + 5 < sizeof(out); i++) {
		unsigned char c = (unsigned char)d[i];
		if (c >= 0x20 && c < 0x7f) {
			out[n++] = (char)c;
		} else {
			snprintf(out + n, 5, "\\x%02x", c);
			n += 4;
		}
	}
	out[n] = '\0';
	memcpy(d, out, n + 1);
}

static void
set(struct report *r, enum ag_check c, int ok, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
set(struct report *r, enum ag_check c, int ok, const char *fmt, ...)
{
	va_list ap;

	r->ok[c] = ok;
	va_start(ap, fmt);
	vsnprintf(r->detail[c], sizeof(r->detail[c]), fmt, ap);
	va_end(ap);
	printable(r->detail[c]);
}

static void
bun_release(struct bun *b)
{
	size_t i;

	for (i = 0; i < b->nlines; i++)
		json_decref(b->lines[i].ev);
	free(b->lines);
	free(b->plan);
	free(b->log);
	free(b->cp);
	free(b->gcp);
	json_decref(b->planj);
	if (b->have_planidx)
		ag_map_release(&b->planidx);
	memset(b, 0, sizeof(*b));
}

static const char *
ev_str(const json_t *ev, const char *key)
{
	return json_string_value(json_object_get(ev, key));
}

static int
ev_is(const json_t *ev, const char *event)
{
	const char *e = ev_str(ev, "event");

	return e && strcmp(e, event) == 0;
}

/*
 * SHA-256 of many short lines: one digest fetched and one context reused,
 * rather than OpenSSL's implicit fetch and a new context for every line.
 */
struct hasher {
	EVP_MD *md;
	EVP_MD_CTX *ctx;
};

static int
hasher_init(struct hasher *h)
{
	h->md = EVP_MD_fetch(NULL, "SHA256", NULL);
	h->ctx = EVP_MD_CTX_new();
	if (!h->md || !h->ctx) {
		EVP_MD_free(h->md);
		EVP_MD_CTX_free(h->ctx);
		h->md = NULL;
		h->ctx = NULL;
		return ag_error_set(AG_ERROR, "cannot set up SHA-256");
	}
	return 0;
}

static void
hasher_release(struct hasher *h)
{
	EVP_MD_CTX_free(h->ctx);
	EVP_MD_free(h->md);
}

/* SHA-256([prefix] || data): prefix < 0 for none, 0 for an RFC 6962 leaf. */
static int
hash_line(unsigned char out[AG_HASH_LEN], struct hasher *h, int prefix, const void *data,
    size_t len)
{
	unsigned char p = (unsigned char)prefix;
	unsigned int n = 0;

	if (!EVP_DigestInit_ex(h->ctx, h->md, NULL) ||
	    (prefix >= 0 && !EVP_DigestUpdate(h->ctx, &p, 1)) ||
	    !EVP_DigestUpdate(h->ctx, data, len) || !EVP_DigestFinal_ex(h->ctx, out, &n) ||
	    n != AG_HASH_LEN)
		return ag_error_set(AG_ERROR, "sha256 failed");
	return 0;
}

/*
 * A line as agora writes it, read fast. jansson reads a byte at a time
 * and builds every value: for a 10 000-item run that was most of a
 * verification. agora's lines are compact JSON objects of plain strings
 * (no escape, ASCII), integers, literals and a few small nested values,
 * so this reads that subset itself, strictly (duplicate keys refused, as
 * JSON_REJECT_DUPLICATES does), hands each nested value to jansson, and
 * keeps only the fields the checks read. Anything else (an escape, a
 * byte above 0x7f, a number with a fraction, white space) goes to
 * jansson whole, as does run.sealed, which is compared field by field:
 * both read the same lines the same way.
 */
#define FAST_KEYS_MAX	64

static const char *const fast_keep[] = {
	"seq", "at", "run", "event", "item", "status", "attempt", "reason", "base", "resultRef",
	"patchSha256", "outputs", "needs", "prev", "planSha256", "logIndex", NULL
};

/* A plain string from p[i] (its quote): its end quote, or 0 to fall back. */
static size_t
fast_string(const char *p, size_t n, size_t i)
{
	for (i++; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '"')
			return i;
		if (c == '\\' || c < 0x20 || c > 0x7e)
			return 0;
	}
	return 0;
}

/*
 * 1 when the line was read (*out NULL: not a JSON object), 0 to fall
 * back; only the keys of keep are kept.
 */
static int
fast_line(json_t **out, const char *p, size_t n, const char *const *keep_keys)
{
	size_t keys[FAST_KEYS_MAX][2], nkeys = 0, i = 1, k, end;
	json_t *obj = NULL, *v;
	int keep;

	*out = NULL;
	if (n < 2 || p[0] != '{' || !(obj = json_object()))
		return 0;
	if (p[1] == '}') {
		if (n != 2)
			goto fallback;
		*out = obj;
		return 1;
	}
	for (;;) {
		/* "key": */
		if (i >= n || p[i] != '"' || !(end = fast_string(p, n, i)) || end + 1 >= n ||
		    p[end + 1] != ':' || nkeys == FAST_KEYS_MAX)
			goto fallback;
		for (k = 0; k < nkeys; k++)
			if (keys[k][1] == end - i - 1 && memcmp(p + keys[k][0], p + i + 1, end - i - 1) == 0) {
				/* a duplicate key: not a JSON object to agora */
				json_decref(obj);
				return 1;
			}
		keys[nkeys][0] = i + 1;
		keys[nkeys++][1] = end - i - 1;
		keep = 0;
		for (k = 0; keep_keys[k]; k++)
			if (strlen(keep_keys[k]) == end - i - 1 && memcmp(keep_keys[k], p + i + 1,
			    end - i - 1) == 0)
				keep = 1;
		i = end + 2;
		if (i >= n)
			goto fallback;
		/* the value */
		v = NULL;
		if (p[i] == '"') {
			if (!(end = fast_string(p, n, i)))
				goto fallback;
			if (keep)
				v = json_stringn_nocheck(p + i + 1, end - i - 1);
			i = end + 1;
		} else if (p[i] == '-' || (p[i] >= '0' && p[i] <= '9')) {
			size_t d = i + (p[i] == '-');
			json_int_t x = 0;
			if (d >= n || p[d] < '0' || p[d] > '9' || (p[d] == '0' && d + 1 < n &&
			    p[d + 1] >= '0' && p[d + 1] <= '9'))
				goto fallback;
			for (end = d; end < n && p[end] >= '0' && p[end] <= '9'; end++) {
				if (end - d >= 18)
					goto fallback;
				x = x * 10 + (p[end] - '0');
			}
			if (end < n && (p[end] == '.' || p[end] == 'e' || p[end] == 'E'))
				goto fallback;
			if (keep)
				v = json_integer(p[i] == '-' ? -x : x);
			i = end;
		} else if (n - i >= 4 && memcmp(p + i, "true", 4) == 0) {
			v = keep ? json_true() : NULL;
			i += 4;
		} else if (n - i >= 5 && memcmp(p + i, "false", 5) == 0) {
			v = keep ? json_false() : NULL;
			i += 5;
		} else if (n - i >= 4 && memcmp(p + i, "null", 4) == 0) {
			v = keep ? json_null() : NULL;
			i += 4;
		} else if (p[i] == '{' || p[i] == '[') {
			/* its end, then jansson reads it: nested values are few and small */
			size_t depth = 0;
			for (end = i; end < n; end++) {
				if (p[end] == '"') {
					if (!(end = fast_string(p, n, end)))
						goto fallback;
				} else if (p[end] == '{' || p[end] == '[') {
					depth++;
				} else if ((p[end] == '}' || p[end] == ']') && --depth == 0) {
					break;
				}
			}
			if (end >= n || !(v = json_loadb(p + i, end + 1 - i, JSON_REJECT_DUPLICATES,
			    NULL)))
				goto fallback;
			if (!keep) {
				json_decref(v);
				v = NULL;
			}
			i = end + 1;
		} else {
			goto fallback;
		}
		if (v && json_object_setn_new_nocheck(obj, p + keys[nkeys - 1][0],
		    keys[nkeys - 1][1], v) < 0)
			goto fallback;
		if (i < n && p[i] == ',') {
			i++;
			continue;
		}
		if (i + 1 == n && p[i] == '}')
			break;
		goto fallback;
	}
	if (ev_is(obj, "run.sealed"))
		goto fallback;
	*out = obj;
	return 1;
fallback:
	json_decref(obj);
	return 0;
}

/*
 * The items of plan.json, {"items": [{id, needs}, ...]}, read fast when
 * the plan is the one the log binds (its SHA-256 is line 1's planSha256)
 * and so is in agora's layout: the run's fields and "items":[ on the
 * first line, then an item per line (ag_plan_write). NULL otherwise:
 * jansson reads it whole.
 */
static json_t *
plan_fast(const struct bun *b)
{
	static const char *const keep[] = { "id", "needs", NULL };
	const char *p = (const char *)b->plan, *want;
	size_t i = 0, end, n = b->planlen;
	unsigned char md[AG_HASH_LEN];
	char sum[65];
	json_t *items = NULL, *it;
	struct hasher h;

	want = b->nlines ? ev_str(b->lines[0].ev, "planSha256") : NULL;
	if (!want || hasher_init(&h) < 0)
		return NULL;
	i = hash_line(md, &h, -1, p, n);
	hasher_release(&h);
	ag_hex(sum, md, AG_HASH_LEN);
	if (i != 0 || strcmp(sum, want) != 0)
		return NULL;
	/* the first line ends in "items":[ */
	for (i = 0; i < n && p[i] != '\n'; i++)
		;
	if (i >= n || i < 9 || memcmp(p + i - 9, "\"items\":[", 9) != 0 || !(items = json_array()))
		return NULL;
	for (i++; i < n; i = end + 1) {
		size_t len;
		for (end = i; end < n && p[end] != '\n'; end++)
			;
		if (end >= n)
			goto fail;
		len = end - i;
		if (len == 2 && memcmp(p + i, "]}", 2) == 0 && end + 1 == n)
			return json_pack("{s:o}", "items", items);
		if (len && p[i + len - 1] == ',')
			len--;
		if (!fast_line(&it, p + i, len, keep))
			it = json_loadb(p + i, len, JSON_REJECT_DUPLICATES, NULL);
		if (!json_is_object(it)) {
			/* an array or a number is JSON too, and is dropped */
			json_decref(it);
			goto fail;
		}
		if (json_array_append_new(items, it) < 0)
			goto fail;
	}
fail:
	json_decref(items);
	return NULL;
}

/* Split the log into lines and parse each; the plan too. */
static int
bun_parse(struct bun *b)
{
	size_t i, n = 0, start = 0;
	json_t *items, *it;

	for (i = 0; i < b->loglen; i++)
		n += b->log[i] == '\n';
	if (!(b->lines = calloc(n + 1, sizeof(*b->lines))))
		return ag_error_set(AG_ERROR, "out of memory");
	for (i = 0; i < b->loglen; i++) {
		struct line *l;
		if (b->log[i] != '\n')
			continue;
		l = &b->lines[b->nlines++];
		l->off = start;
		l->len = i - start;
		if (!fast_line(&l->ev, (const char *)b->log + start, l->len, fast_keep))
			l->ev = json_loadb((const char *)b->log + start, l->len,
			    JSON_REJECT_DUPLICATES, NULL);
		if (l->ev && !json_is_object(l->ev)) {
			json_decref(l->ev);
			l->ev = NULL;
		}
		start = i + 1;
	}
	b->tail = b->loglen - start;

	if (!(b->planj = plan_fast(b)))
		b->planj = json_loadb((const char *)b->plan, b->planlen, JSON_REJECT_DUPLICATES,
		    NULL);
	items = json_object_get(b->planj, "items");
	if (!json_is_array(items))
		return 0;
	if (ag_map_init(&b->planidx, json_array_size(items)) < 0)
		return AG_ERROR;
	b->have_planidx = 1;
	json_array_foreach(items, i, it) {
		const char *id = ev_str(it, "id");
		size_t dup;
		if (id && ag_map_get(&b->planidx, id, &dup) < 0 && ag_map_put(&b->planidx, id, i) < 0)
			return AG_ERROR;
	}
	return 0;
}

/* ---- the items, as the log has them ---- */

static json_t *
item_new(const char *id)
{
	return json_pack("{s:s, s:s, s:i}", "id", id, "status", "pending", "attempts", 0);
}

/*
 * One object per item, in plan order (items the plan does not name
 * follow in the order the log first names them): status (of its last
 * line), attempts (its highest attempt), reason (of its last end of an
 * attempt), base, resultRef, patchSha256 and outputs (of its last
 * item.done), needs (what its last attempt consumed).
 */
static int
derive_items(json_t **out, const struct bun *b)
{
	static const char *const art[] = { "base", "resultRef", "patchSha256", "outputs", NULL };
	json_t *list = json_array(), *plan_items = json_object_get(b->planj, "items"), *v;
	struct ag_map idx;
	size_t i, k, at;
	int rc = 0;

	*out = NULL;
	if (!list || ag_map_init(&idx, json_array_size(plan_items) + 16) < 0) {
		json_decref(list);
		return ag_error_set(AG_ERROR, "out of memory");
	}
	json_array_foreach(plan_items, i, v) {
		const char *id = ev_str(v, "id");
		if (!id || ag_map_get(&idx, id, &at) == 0)
			continue;
		if (json_array_append_new(list, item_new(id)) < 0 ||
		    ag_map_put(&idx, ev_str(json_array_get(list, json_array_size(list) - 1), "id"),
		    json_array_size(list) - 1) < 0) {
			rc = ag_error_set(AG_ERROR, "out of memory");
			goto out;
		}
	}
	for (i = 0; i < b->nlines; i++) {
		const json_t *ev = b->lines[i].ev;
		const char *id = ev_str(ev, "item"), *e = ev_str(ev, "event"), *st;
		json_t *it;
		/* item events only: their names begin "item" and a dot */
		if (!id || !e || strncmp(e, "item", 4) != 0 || e[4] != '.')
			continue;
		if (ag_map_get(&idx, id, &at) < 0) {
			if (json_array_append_new(list, item_new(id)) < 0) {
				rc = ag_error_set(AG_ERROR, "out of memory");
				goto out;
			}
			at = json_array_size(list) - 1;
			if (ag_map_put(&idx, ev_str(json_array_get(list, at), "id"), at) < 0) {
				rc = ag_error_set(AG_ERROR, "out of memory");
				goto out;
			}
		}
		it = json_array_get(list, at);
		if ((st = ev_str(ev, "status")))
			json_object_set_new(it, "status", json_string(st));
		if (strcmp(e, "item.running") == 0) {
			json_int_t n = json_integer_value(json_object_get(ev, "attempt"));
			if (n > json_integer_value(json_object_get(it, "attempts")))
				json_object_set_new(it, "attempts", json_integer(n));
			if (json_object_get(ev, "needs"))
				json_object_set(it, "needs", json_object_get(ev, "needs"));
			else
				json_object_del(it, "needs");
		}
		if (strcmp(e, "item.retrying") == 0 || strcmp(e, "item.done") == 0 ||
		    strcmp(e, "item.failed") == 0 || strcmp(e, "item.skipped") == 0 ||
		    strcmp(e, "item.cancelled") == 0) {
			if (json_object_get(ev, "reason"))
				json_object_set(it, "reason", json_object_get(ev, "reason"));
			else
				json_object_del(it, "reason");
		}
		if (strcmp(e, "item.done") == 0)
			for (k = 0; art[k]; k++) {
				if (json_object_get(ev, art[k]))
					json_object_set(it, art[k], json_object_get(ev, art[k]));
				else
					json_object_del(it, art[k]);
			}
	}
	*out = list;
	list = NULL;
out:
	ag_map_release(&idx);
	json_decref(list);
	return rc;
}

/* SHA-256(0x01 || l || r), an RFC 6962 node. */
static int
hash_node(unsigned char out[AG_HASH_LEN], struct hasher *h, const unsigned char *l,
    const unsigned char *r)
{
	unsigned char p = 0x01;
	unsigned int n = 0;

	if (!EVP_DigestInit_ex(h->ctx, h->md, NULL) || !EVP_DigestUpdate(h->ctx, &p, 1) ||
	    !EVP_DigestUpdate(h->ctx, l, AG_HASH_LEN) || !EVP_DigestUpdate(h->ctx, r, AG_HASH_LEN) ||
	    !EVP_DigestFinal_ex(h->ctx, out, &n) || n != AG_HASH_LEN)
		return ag_error_set(AG_ERROR, "sha256 failed");
	return 0;
}

/*
 * The RFC 6962 root of the first n lines, folded as they are hashed: the
 * stack holds the roots of the perfect subtrees so far, largest first
 * (merkle.c's ag_merkle does the same, with a new context per hash).
 */
static int
lines_root(unsigned char out[AG_HASH_LEN], const struct bun *b, uint64_t n)
{
	unsigned char stack[65][AG_HASH_LEN];
	uint64_t sizes[65], i;
	struct hasher h;
	int depth = 0, j, rc;

	if ((rc = hasher_init(&h)) < 0)
		return rc;
	for (i = 0; i < n; i++) {
		if ((rc = hash_line(stack[depth], &h, 0x00, b->log + b->lines[i].off,
		    b->lines[i].len)) < 0)
			goto out;
		sizes[depth++] = 1;
		while (depth >= 2 && sizes[depth - 1] == sizes[depth - 2]) {
			if ((rc = hash_node(stack[depth - 2], &h, stack[depth - 2], stack[depth - 1])) < 0)
				goto out;
			sizes[depth - 2] *= 2;
			depth--;
		}
	}
	if (depth == 0) {
		rc = hash_line(out, &h, -1, "", 0);
		goto out;
	}
	memcpy(out, stack[depth - 1], AG_HASH_LEN);
	for (j = depth - 2; j >= 0; j--)
		if ((rc = hash_node(out, &h, stack[j], out)) < 0)
			goto out;
out:
	hasher_release(&h);
	return rc;
}

/* ---- chain ---- */

static void
check_chain(struct report *r, const struct bun *b)
{
	unsigned char md[AG_HASH_LEN];
	char prev[65], want[65];
	struct hasher h;
	size_t i;

	if (b->nlines == 0 && b->tail == 0) {
		set(r, AG_CHECK_CHAIN, 0, "the log is empty");
		return;
	}
	if (hasher_init(&h) < 0) {
		set(r, AG_CHECK_CHAIN, 0, "%s", ag_error_msg());
		return;
	}
	memset(prev, '0', 64);
	prev[64] = '\0';
	for (i = 0; i < b->nlines; i++) {
		const struct line *l = &b->lines[i];
		const json_t *seq = json_object_get(l->ev, "seq");
		const char *run = ev_str(l->ev, "run"), *p = ev_str(l->ev, "prev");
		if (!l->ev) {
			set(r, AG_CHECK_CHAIN, 0, "line %zu is not a JSON object", i + 1);
			goto out;
		}
		if (!json_is_integer(seq) || json_integer_value(seq) != (json_int_t)i) {
			set(r, AG_CHECK_CHAIN, 0, "line %zu: seq is not %zu", i + 1, i);
			goto out;
		}
		if (!run || strcmp(run, b->run) != 0) {
			set(r, AG_CHECK_CHAIN, 0, "line %zu: run is not '%s'", i + 1, b->run);
			goto out;
		}
		if (!p || strcmp(p, prev) != 0) {
			if (i == 0)
				set(r, AG_CHECK_CHAIN, 0, "line 1: prev is not 64 zeros");
			else
				set(r, AG_CHECK_CHAIN, 0, "line %zu: prev is not the SHA-256 of line %zu",
				    i + 1, i);
			goto out;
		}
		if (hash_line(md, &h, -1, b->log + l->off, l->len) < 0) {
			set(r, AG_CHECK_CHAIN, 0, "%s", ag_error_msg());
			goto out;
		}
		ag_hex(prev, md, AG_HASH_LEN);
	}
	if (b->tail) {
		set(r, AG_CHECK_CHAIN, 0, "line %zu has no newline at its end", b->nlines + 1);
		goto out;
	}
	if (!ev_is(b->lines[0].ev, "run.submitted")) {
		set(r, AG_CHECK_CHAIN, 0, "line 1 is not run.submitted");
		goto out;
	}
	if (!ev_str(b->lines[0].ev, "planSha256")) {
		set(r, AG_CHECK_CHAIN, 0, "line 1 has no planSha256: the plan is not bound to the log");
		goto out;
	}
	if (ag_sha256_hex(want, b->plan, b->planlen) < 0 ||
	    strcmp(want, ev_str(b->lines[0].ev, "planSha256")) != 0) {
		set(r, AG_CHECK_CHAIN, 0, "the plan's SHA-256 is not the planSha256 of line 1");
		goto out;
	}
	set(r, AG_CHECK_CHAIN, 1, "%zu lines, each line's prev the SHA-256 of the line before, "
	    "and the plan's SHA-256 in line 1", b->nlines);
out:
	hasher_release(&h);
}

/* ---- root ---- */

static void
b64_root(char out[64], const unsigned char root[AG_HASH_LEN])
{
	char *s = NULL;

	if (ag_base64_encode(&s, root, AG_HASH_LEN) < 0 || strlen(s) >= 64)
		snprintf(out, 64, "?");
	else
		snprintf(out, 64, "%s", s);
	free(s);
}

/*
 * run.sealed, byte for byte: every field follows from the line before it
 * (seq, at, prev), the checkpoint (size, root, checkpoint, key, keyId)
 * or the global log (logIndex, checked by global_inclusion()). So the
 * line is rendered again as reconcile renders it and compared.
 */
static int
sealed_line(char *why, size_t size, struct bun *b, const struct ag_checkpoint *cpi)
{
	const struct line *l = &b->lines[cpi->size], *done = &b->lines[cpi->size - 1];
	const char *at = ev_str(done->ev, "at"), *key = ev_str(l->ev, "key");
	const char *keyid = ev_str(l->ev, "keyId");
	const json_t *li = json_object_get(l->ev, "logIndex");
	char root[2 * AG_HASH_LEN + 1], sum[65], prev[65], id[9];
	struct ag_note note;
	json_t *want = NULL;
	char *text = NULL;
	size_t k;
	int rc = -1, signer = 0;

	if (!json_is_integer(li) || json_integer_value(li) < 0) {
		snprintf(why, size, "logIndex is not a number");
		return -1;
	}
	b->gindex = (uint64_t)json_integer_value(li);
	/* key and keyId name a key that signed the checkpoint */
	if (ag_note_parse(&note, b->cp, b->cplen) == 0)
		for (k = 0; k < note.nsigs; k++) {
			ag_hex(id, note.sigs[k].id, 4);
			signer |= key && keyid && strcmp(note.sigs[k].name, key) == 0 &&
			    strcmp(id, keyid) == 0;
		}
	if (!signer) {
		snprintf(why, size, "key and keyId do not name a signer of the checkpoint");
		return -1;
	}
	ag_hex(root, cpi->root, AG_HASH_LEN);
	if (ag_sha256_hex(sum, b->cp, b->cplen) < 0 ||
	    ag_sha256_hex(prev, b->log + done->off, done->len) < 0) {
		snprintf(why, size, "%s", ag_error_msg());
		return -1;
	}
	want = json_pack("{s:I, s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:I, s:s}",
	    "seq", (json_int_t)cpi->size, "at", at ? at : "", "run", b->run, "event", "run.sealed",
	    "size", (json_int_t)cpi->size, "root", root, "checkpoint", sum, "key", key,
	    "keyId", keyid, "logIndex", (json_int_t)b->gindex, "prev", prev);
	if (!want || !(text = json_dumps(want, JSON_COMPACT | JSON_PRESERVE_ORDER))) {
		snprintf(why, size, "out of memory");
		goto out;
	}
	if (strlen(text) != l->len || memcmp(text, b->log + l->off, l->len) != 0) {
		static const char *const what[][2] = {
			{ "seq", "the seq after run.completed's" },
			{ "at", "run.completed's at" },
			{ "run", "the run's id" },
			{ "event", "run.sealed" },
			{ "size", "the checkpoint's size" },
			{ "root", "the checkpoint's root" },
			{ "checkpoint", "the SHA-256 of the checkpoint" },
			{ "prev", "the SHA-256 of the line before" },
			{ NULL, NULL }
		};
		snprintf(why, size, "the same fields as the line that seals the checkpoint, in "
		    "other bytes");
		for (k = 0; what[k][0]; k++)
			if (!json_equal(json_object_get(l->ev, what[k][0]),
			    json_object_get(want, what[k][0]))) {
				snprintf(why, size, "its %s is not %s", what[k][0], what[k][1]);
				break;
			}
		if (!what[k][0] && json_object_size(l->ev) != json_object_size(want))
			snprintf(why, size, "it has fields that run.sealed does not have");
		goto out;
	}
	rc = 0;
out:
	free(text);
	json_decref(want);
	return rc;
}

/* The run's entry (run, size, root, checkpoint hash) is leaf gindex of the signed global tree. */
static int
global_inclusion(char *why, size_t size, uint64_t *gsize, const struct bun *b,
    const struct ag_checkpoint *cpi)
{
	struct ag_checkpoint g;
	struct ag_log_entry e;
	unsigned char leaf[AG_HASH_LEN];
	char sum[65], *line = NULL;
	int rc;

	if (!b->gcp) {
		snprintf(why, size, "no global checkpoint: nothing shows the run in the global log");
		return -1;
	}
	if (ag_checkpoint_parse(&g, b->gcp, b->gcplen) < 0) {
		snprintf(why, size, "global checkpoint: %s", ag_error_msg());
		return -1;
	}
	*gsize = g.size;
	if (strcmp(g.origin, AG_LOG_ORIGIN) != 0) {
		snprintf(why, size, "the global checkpoint's origin is '%s', not '%s'",
		    ag_quote(g.origin, strlen(g.origin)), AG_LOG_ORIGIN);
		return -1;
	}
	memset(&e, 0, sizeof(e));
	snprintf(e.run, sizeof(e.run), "%s", b->run);
	e.size = cpi->size;
	memcpy(e.root, cpi->root, AG_HASH_LEN);
	if (ag_sha256_hex(sum, b->cp, b->cplen) < 0 || ag_unhex(e.checkpoint, AG_HASH_LEN, sum) < 0 ||
	    ag_log_entry_format(&line, &e) < 0 || ag_merkle_leaf(leaf, line, strlen(line)) < 0) {
		free(line);
		snprintf(why, size, "%s", ag_error_msg());
		return -1;
	}
	free(line);
	if (b->gindex >= g.size) {
		snprintf(why, size, "logIndex %llu is not in the global log of %llu entries",
		    (unsigned long long)b->gindex, (unsigned long long)g.size);
		return -1;
	}
	rc = ag_merkle_verify_inclusion(leaf, b->gindex, g.size, &b->gproof, g.root);
	if (rc < 0) {
		snprintf(why, size, "the run's entry is not entry %llu of the global log of %llu: %s",
		    (unsigned long long)b->gindex, (unsigned long long)g.size, ag_error_msg());
		return -1;
	}
	return 0;
}

static void
check_root(struct report *r, struct bun *b, struct ag_checkpoint *cpi, int *parsed)
{
	char origin[AG_ORIGIN_MAX + 1], got[64], want[64], why[DETAIL_MAX];
	unsigned char root[AG_HASH_LEN];
	uint64_t gsize = 0;
	size_t after;

	*parsed = 0;
	if (!b->cp) {
		set(r, AG_CHECK_ROOT, 0, "no checkpoint: run '%s' is not sealed yet", b->run);
		return;
	}
	if (ag_checkpoint_parse(cpi, b->cp, b->cplen) < 0) {
		set(r, AG_CHECK_ROOT, 0, "checkpoint: %s", ag_error_msg());
		return;
	}
	*parsed = 1;
	snprintf(origin, sizeof(origin), "agora/run/%s", b->run);
	if (strcmp(cpi->origin, origin) != 0) {
		set(r, AG_CHECK_ROOT, 0, "the checkpoint's origin is '%s', not '%s'",
		    ag_quote(cpi->origin, strlen(cpi->origin)), origin);
		return;
	}
	if (cpi->size > b->nlines) {
		set(r, AG_CHECK_ROOT, 0, "the checkpoint covers %llu lines, the log has %zu",
		    (unsigned long long)cpi->size, b->nlines);
		return;
	}
	if (lines_root(root, b, cpi->size) < 0) {
		set(r, AG_CHECK_ROOT, 0, "%s", ag_error_msg());
		return;
	}
	b64_root(got, root);
	b64_root(want, cpi->root);
	if (memcmp(root, cpi->root, AG_HASH_LEN) != 0) {
		set(r, AG_CHECK_ROOT, 0, "the root of lines 1-%llu is %s, the checkpoint says %s",
		    (unsigned long long)cpi->size, got, want);
		return;
	}
	if (cpi->size == 0 || !ev_is(b->lines[cpi->size - 1].ev, "run.completed")) {
		set(r, AG_CHECK_ROOT, 0, "line %llu, the last the checkpoint covers, is not "
		    "run.completed", (unsigned long long)cpi->size);
		return;
	}
	if (cpi->size == b->nlines) {
		set(r, AG_CHECK_ROOT, 0, "no run.sealed line after run.completed (line %llu)",
		    (unsigned long long)cpi->size);
		return;
	}
	if (!ev_is(b->lines[cpi->size].ev, "run.sealed")) {
		set(r, AG_CHECK_ROOT, 0, "line %llu, after run.completed, is not run.sealed",
		    (unsigned long long)cpi->size + 1);
		return;
	}
	after = b->nlines - (size_t)cpi->size - 1;
	if (after) {
		set(r, AG_CHECK_ROOT, 0, "%zu line%s after run.sealed (line %llu): a sealed run "
		    "takes no more lines", after, after == 1 ? "" : "s",
		    (unsigned long long)cpi->size + 1);
		return;
	}
	if (sealed_line(why, sizeof(why), b, cpi) < 0) {
		set(r, AG_CHECK_ROOT, 0, "line %llu (run.sealed): %s", (unsigned long long)cpi->size + 1,
		    why);
		return;
	}
	if (global_inclusion(why, sizeof(why), &gsize, b, cpi) < 0) {
		set(r, AG_CHECK_ROOT, 0, "%s", why);
		return;
	}
	set(r, AG_CHECK_ROOT, 1, "the root of lines 1-%llu, up to run.completed, is %s, as the "
	    "checkpoint says; run.sealed seals it as entry %llu of the global log of %llu",
	    (unsigned long long)cpi->size, got, (unsigned long long)b->gindex,
	    (unsigned long long)gsize);
}

/*
 * 0 when one of the keys signed the note (*which is that key). Else the
 * message of the key the note names, or of the first key.
 */
static int
ring_verify(const struct ag_key **which, const char *note, size_t len, const struct ag_keyring *kr)
{
	char why[DETAIL_MAX] = "no key to check the signature with";
	size_t i;
	int named = 0;

	for (i = 0; i < kr->n; i++) {
		if (ag_note_verify(note, len, kr->k[i]) == 0) {
			if (which)
				*which = kr->k[i];
			return 0;
		}
		/* a signature line of this key that fails says more than "no signature by" */
		if (i == 0 || (!named && !strstr(ag_error_msg(), "no signature by"))) {
			named = i > 0 || !strstr(ag_error_msg(), "no signature by");
			snprintf(why, sizeof(why), "%s", ag_error_msg());
		}
	}
	return ag_error_set(AG_EINVALID, "%s", why);
}

/* ---- signature ---- */

static void
check_signature(struct report *r, struct bun *b, const struct ag_keyring *kr)
{
	const struct ag_key *k = NULL;

	if (!b->cp) {
		set(r, AG_CHECK_SIGNATURE, NA, "no checkpoint");
		return;
	}
	if (ring_verify(&k, b->cp, b->cplen, kr) < 0) {
		set(r, AG_CHECK_SIGNATURE, 0, "%s", ag_error_msg());
		return;
	}
	if (b->gcp && ring_verify(NULL, b->gcp, b->gcplen, kr) < 0) {
		set(r, AG_CHECK_SIGNATURE, 0, "global checkpoint: %s", ag_error_msg());
		return;
	}
	set(r, AG_CHECK_SIGNATURE, 1, "the checkpoint%s signed by key '%s' (id %s)",
	    b->gcp ? " and the global checkpoint are" : " is", ag_key_name(k), ag_key_id_hex(k));
}

/* ---- anchor ---- */

int
ag_anchor_spec_parse(struct ag_anchor_spec *out, const char *arg)
{
	const char *colon = strchr(arg, ':');

	memset(out, 0, sizeof(*out));
	if (!colon || colon == arg || !colon[1] || (size_t)(colon - arg) >= sizeof(out->kind))
		return ag_error_set(AG_EINVALID, "anchor '%s' is not dir:PATH or git:REMOTE",
		    ag_quote(arg, strlen(arg)));
	memcpy(out->kind, arg, (size_t)(colon - arg));
	if (strcmp(out->kind, "dir") != 0 && strcmp(out->kind, "git") != 0)
		return ag_error_set(AG_EINVALID, "anchor '%s': the kind is dir or git, not '%s'",
		    ag_quote(arg, strlen(arg)), ag_quote(out->kind, strlen(out->kind)));
	out->a.kind = out->kind;
	out->a.name = (char *)(colon + 1);
	if (out->kind[0] == 'd')
		out->a.path = (char *)(colon + 1);
	else
		out->a.remote = (char *)(colon + 1);
	out->a.ref = "refs/heads/agora-anchors";
	out->base = ".";
	out->required = 1;
	return 0;
}

static void
anchor_label(char *out, size_t size, const struct ag_anchor_spec *s)
{
	/* --anchor names a place; agora.conf names an anchor */
	if (s->required)
		snprintf(out, size, "%s anchor '%s'", s->a.kind, s->a.name);
	else
		snprintf(out, size, "anchor '%s' (%s)", s->a.name, s->a.kind);
}

/*
 * Each anchor that can be read back must hold the very bytes of the
 * bundle's checkpoint; one that holds other bytes fails the check, and
 * one that holds none fails it when it was asked for (--anchor) or its
 * receipt says it took the checkpoint. The claim rises to
 * tamper-evident only on an external anchor read back.
 */
static void
check_anchor(struct report *r, const struct bun *b, const struct ag_verify_opts *o)
{
	char label[AG_PATH_MAX + 64];
	struct ag_buf got, list, pend;
	size_t i, held = 0;
	int rc, same;

	if (!b->cp) {
		set(r, AG_CHECK_ANCHOR, NA, "no checkpoint");
		return;
	}
	if (!o->nanchors) {
		set(r, AG_CHECK_ANCHOR, NA, "no anchor to read the checkpoint back from");
		return;
	}
	ag_buf_init(&list, DETAIL_MAX);
	ag_buf_init(&pend, DETAIL_MAX);
	for (i = 0; i < o->nanchors; i++) {
		const struct ag_anchor_spec *a = &o->anchors[i];
		anchor_label(label, sizeof(label), a);
		if (strcmp(a->a.kind, "command") == 0) {
			/* nothing to read back: its receipt is in the bundle */
			ag_buf_printf(&pend, "%s%s keeps no copy to read back", pend.len ? "; " : "",
			    label);
			continue;
		}
		if ((rc = ag_anchor_read(&got, a->base, &a->a, b->run)) < 0) {
			if (rc == AG_ENOTFOUND && !a->required && a->pending) {
				ag_buf_printf(&pend, "%s%s does not hold it yet", pend.len ? "; " : "",
				    label);
				continue;
			}
			set(r, AG_CHECK_ANCHOR, 0, "%s: %s", label, ag_error_msg());
			goto out;
		}
		same = got.len == b->cplen && memcmp(got.ptr, b->cp, b->cplen) == 0;
		ag_buf_release(&got);
		if (!same) {
			set(r, AG_CHECK_ANCHOR, 0, "%s holds another checkpoint for run '%s'", label,
			    b->run);
			goto out;
		}
		if (strcmp(a->a.kind, "local") != 0)
			r->external = 1;
		ag_buf_printf(&list, "%s%s", held++ ? ", " : "", label);
	}
	if (!held)
		set(r, AG_CHECK_ANCHOR, NA, "%s", pend.ptr);
	else
		set(r, AG_CHECK_ANCHOR, 1, "%s hold%s the same checkpoint%s%s", list.ptr,
		    held == 1 ? "s" : "", pend.len ? "; " : "", pend.len ? pend.ptr : "");
out:
	ag_buf_release(&list);
	ag_buf_release(&pend);
}

/* ---- artifacts ---- */

/* The first difference between the bundle's items and the log's. */
static int
items_differ(char *out, size_t size, const json_t *got, const json_t *want)
{
	size_t i, n = json_array_size(want);
	const json_t *g, *w;

	if (!json_is_array(got)) {
		snprintf(out, size, "the bundle's items are not an array");
		return 1;
	}
	for (i = 0; i < n || i < json_array_size(got); i++) {
		g = json_array_get(got, i);
		w = json_array_get(want, i);
		if (!w) {
			snprintf(out, size, "the bundle lists item '%s', which the log does not have",
			    ev_str(g, "id") ? ag_quote(ev_str(g, "id"), strlen(ev_str(g, "id"))) : "?");
			return 1;
		}
		if (!g) {
			snprintf(out, size, "the bundle does not list item '%s'", ev_str(w, "id"));
			return 1;
		}
		if (!json_equal((json_t *)g, (json_t *)w)) {
			snprintf(out, size, "the bundle's item '%s' is not what the log says of it",
			    ev_str(w, "id"));
			return 1;
		}
	}
	return 0;
}

/* The blob of a "git:<40 hex>" ref, or NULL. */
static const char *
ref_blob(const json_t *v)
{
	const char *s = json_string_value(v);
	size_t i;

	if (!s || strncmp(s, "git:", 4) != 0)
		return NULL;
	for (i = 4; s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return NULL;
	return i == 4 + GIT_OID_HEXSZ ? s + 4 : NULL;
}

/* Read a blob; AG_ENOTFOUND when missing. libgit2 checks its object id as it reads. */
static int
read_blob(git_odb_object **out, git_odb *odb, const char *hex)
{
	git_oid oid;
	int err;

	*out = NULL;
	if (git_oid_fromstr(&oid, hex) < 0)
		return ag_error_set(AG_EINVALID, "invalid blob id '%s'", hex);
	if ((err = git_odb_read(out, odb, &oid)) < 0)
		return err == GIT_ENOTFOUND ? ag_error_set(AG_ENOTFOUND, "not there") :
		    ag_error_set(AG_ERROR, "%s", ag_git_msg());
	if (git_odb_object_type(*out) != GIT_OBJECT_BLOB) {
		git_odb_object_free(*out);
		*out = NULL;
		return ag_error_set(AG_EINVALID, "not a blob");
	}
	return 0;
}

static void
check_artifacts(struct report *r, const struct bun *b, const json_t *items, const char *objects)
{
	struct ag_store *s = NULL;
	git_odb_object *obj = NULL;
	char why[DETAIL_MAX], sum[65];
	size_t i, k, npatch = 0, nout = 0;
	const json_t *it, *o;

	if (b->items && items_differ(why, sizeof(why), b->items, items)) {
		set(r, AG_CHECK_ARTIFACTS, 0, "%s", why);
		return;
	}
	json_array_foreach(items, i, it) {
		npatch += json_object_get(it, "resultRef") != NULL;
		nout += json_array_size(json_object_get(it, "outputs"));
	}
	if (!npatch && !nout) {
		set(r, AG_CHECK_ARTIFACTS, NA, "no item made a patch or outputs");
		return;
	}
	if (!objects) {
		set(r, AG_CHECK_ARTIFACTS, NA, "%zu patch%s and %zu output%s not re-hashed: no "
		    "object store", npatch, npatch == 1 ? "" : "es", nout, nout == 1 ? "" : "s");
		return;
	}
	if (ag_store_open(&s, objects) < 0) {
		set(r, AG_CHECK_ARTIFACTS, 0, "%s", ag_error_msg());
		return;
	}
	json_array_foreach(items, i, it) {
		const char *id = ev_str(it, "id"), *want = ev_str(it, "patchSha256"), *blob;
		const json_t *ref = json_object_get(it, "resultRef");
		int rc;
		if (ref) {
			if (!(blob = ref_blob(ref))) {
				set(r, AG_CHECK_ARTIFACTS, 0, "item '%s': resultRef is not git:<blob id>", id);
				goto out;
			}
			if ((rc = read_blob(&obj, s->odb, blob)) < 0) {
				set(r, AG_CHECK_ARTIFACTS, 0, "item '%s': patch %s %s '%s'%s%s", id, blob,
				    rc == AG_ENOTFOUND ? "is not in" : "cannot be read from", objects,
				    rc == AG_ENOTFOUND ? "" : ": ", rc == AG_ENOTFOUND ? "" : ag_error_msg());
				goto out;
			}
			if (ag_sha256_hex(sum, git_odb_object_data(obj), git_odb_object_size(obj)) < 0 ||
			    !want || strcmp(sum, want) != 0) {
				set(r, AG_CHECK_ARTIFACTS, 0, "item '%s': patch %s has SHA-256 %s, its "
				    "patchSha256 says %s", id, blob, sum, want ? want : "nothing");
				goto out;
			}
			git_odb_object_free(obj);
			obj = NULL;
		}
		json_array_foreach(json_object_get(it, "outputs"), k, o) {
			const char *path = ev_str(o, "path");
			json_t *size = json_object_get(o, "size");
			if (!path || !(blob = ref_blob(json_object_get(o, "ref")))) {
				set(r, AG_CHECK_ARTIFACTS, 0, "item '%s': output %zu is not {path, ref: "
				    "git:<blob id>, size}", id, k + 1);
				goto out;
			}
			if ((rc = read_blob(&obj, s->odb, blob)) < 0) {
				set(r, AG_CHECK_ARTIFACTS, 0, "item '%s': output '%s' %s %s '%s'%s%s", id,
				    ag_quote(path, strlen(path)), blob,
				    rc == AG_ENOTFOUND ? "is not in" : "cannot be read from", objects,
				    rc == AG_ENOTFOUND ? "" : ": ", rc == AG_ENOTFOUND ? "" : ag_error_msg());
				goto out;
			}
			if (!json_is_integer(size) ||
			    (uint64_t)json_integer_value(size) != (uint64_t)git_odb_object_size(obj)) {
				set(r, AG_CHECK_ARTIFACTS, 0, "item '%s': output '%s' %s has %zu bytes, "
				    "its size says otherwise", id, ag_quote(path, strlen(path)), blob,
				    git_odb_object_size(obj));
				goto out;
			}
			git_odb_object_free(obj);
			obj = NULL;
		}
	}
	set(r, AG_CHECK_ARTIFACTS, 1, "%zu patch%s and %zu output%s re-read from '%s', each "
	    "patch's SHA-256 its patchSha256", npatch, npatch == 1 ? "" : "es", nout,
	    nout == 1 ? "" : "s", objects);
out:
	git_odb_object_free(obj);
	ag_store_free(s);
}

/* ---- handoff ---- */

/* What the item.done line ev makes for a need of the plan, or NULL (none). */
static const char *
product(const json_t *done, const json_t *need)
{
	const json_t *sel = json_object_get(need, "select"), *o;
	const char *kind = ev_str(sel, "kind"), *path = ev_str(sel, "path");
	size_t k;

	if (!done)
		return NULL;
	if (!kind || strcmp(kind, "output") != 0)
		return ev_str(done, "resultRef");
	json_array_foreach(json_object_get(done, "outputs"), k, o)
		if (path && ev_str(o, "path") && strcmp(ev_str(o, "path"), path) == 0)
			return ev_str(o, "ref");
	return NULL;
}

/*
 * The closure of the handoffs, from the chain: every ref an attempt
 * consumed (the needs of its item.running line) is a product of an
 * item.done line before it, of the very item and selection that the
 * plan's needs name; and every need of the plan whose producer had made
 * that product was consumed.
 */
static void
check_handoff(struct report *r, const struct bun *b)
{
	const json_t *plan_items = json_object_get(b->planj, "items");
	const json_t **done = NULL;
	struct ag_map refs;
	size_t i, at, edges = 0;
	int have_refs = 0;

	if (!b->have_planidx) {
		set(r, AG_CHECK_HANDOFF, 0, "the plan is not JSON with an items array");
		return;
	}
	if (!(done = calloc(json_array_size(plan_items) + 1, sizeof(*done))) ||
	    ag_map_init(&refs, 64) < 0) {
		set(r, AG_CHECK_HANDOFF, 0, "out of memory");
		goto out;
	}
	have_refs = 1;
	for (i = 0; i < b->nlines; i++) {
		const json_t *ev = b->lines[i].ev, *needs, *pneeds, *v, *o;
		const char *id = ev_str(ev, "item"), *key;
		size_t k;
		if (!id || ag_map_get(&b->planidx, id, &at) < 0)
			continue;
		if (ev_is(ev, "item.done")) {
			done[at] = ev;
			/* every product, so that a consumed ref is known as one */
			if (ev_str(ev, "resultRef"))
				ag_map_put(&refs, ev_str(ev, "resultRef"), at);
			json_array_foreach(json_object_get(ev, "outputs"), k, o)
				if (ev_str(o, "ref"))
					ag_map_put(&refs, ev_str(o, "ref"), at);
			continue;
		}
		if (!ev_is(ev, "item.running"))
			continue;
		needs = json_object_get(ev, "needs");
		pneeds = json_object_get(json_array_get(plan_items, at), "needs");
		json_object_foreach((json_t *)needs, key, v) {
			const json_t *need = json_object_get(pneeds, key);
			const char *ref = json_string_value(v), *from = ev_str(need, "from"), *want;
			size_t src, p;
			edges++;
			if (!ref || ag_map_get(&refs, ref, &p) < 0) {
				set(r, AG_CHECK_HANDOFF, 0, "line %zu: item '%s' consumed %s for '%s', "
				    "which no done item of run '%s' produced before it", i + 1, id,
				    ref ? ag_quote(ref, strlen(ref)) : "a non-string", key, b->run);
				goto out;
			}
			if (!need || !from || ag_map_get(&b->planidx, from, &src) < 0) {
				set(r, AG_CHECK_HANDOFF, 0, "line %zu: item '%s' consumed %s for '%s', "
				    "a need the plan does not give it", i + 1, id, ref, key);
				goto out;
			}
			want = product(done[src], need);
			if (!want || strcmp(want, ref) != 0) {
				set(r, AG_CHECK_HANDOFF, 0, "line %zu: item '%s' consumed %s for '%s', "
				    "which is not what '%s' produced for it", i + 1, id, ref, key, from);
				goto out;
			}
		}
		json_object_foreach((json_t *)pneeds, key, v) {
			size_t src;
			if (json_object_get(needs, key) || !ev_str(v, "from") ||
			    ag_map_get(&b->planidx, ev_str(v, "from"), &src) < 0 ||
			    !product(done[src], v))
				continue;
			set(r, AG_CHECK_HANDOFF, 0, "line %zu: item '%s' ran without '%s', the product "
			    "of '%s' that it needs", i + 1, id, key, ev_str(v, "from"));
			goto out;
		}
	}
	if (edges)
		set(r, AG_CHECK_HANDOFF, 1, "%zu consumed ref%s, each produced by the done item the "
		    "plan names", edges, edges == 1 ? "" : "s");
	else
		set(r, AG_CHECK_HANDOFF, NA, "no handoff edges");
out:
	if (have_refs)
		ag_map_release(&refs);
	free(done);
}

/* ---- the report ---- */

static json_t *
report_json(const struct report *r)
{
	json_t *rep, *checks = json_object();
	int i, intact = 1, failure = -1;

	for (i = 0; i < AG_NCHECKS; i++) {
		json_t *ok = r->ok[i] == NA ? json_string("n/a") : json_boolean(r->ok[i]);
		json_object_set_new(checks, ag_check_names[i], json_pack("{s:o, s:s}", "ok", ok,
		    "detail", r->detail[i]));
		if (r->ok[i] == 0 && failure < 0)
			failure = i;
	}
	intact = failure < 0;
	rep = json_pack("{s:b, s:s, s:s, s:o, s:o}", "intact", intact,
	    "claim", intact && r->external && r->ok[AG_CHECK_ANCHOR] == 1 &&
	    r->ok[AG_CHECK_SIGNATURE] == 1 ? "tamper-evident" : "tamper-detecting",
	    "guarantee", r->external && r->ok[AG_CHECK_ANCHOR] == 1 ? "external" : "detect",
	    "failure", failure < 0 ? json_null() : json_string(ag_check_names[failure]),
	    "checks", checks);
	return rep;
}

int
ag_report_intact(const json_t *report)
{
	return json_is_true(json_object_get(report, "intact"));
}

int
ag_report_text(struct ag_buf *out, const char *run, const json_t *report)
{
	const json_t *checks = json_object_get(report, "checks"), *failure;
	int i, rc = 0;

	failure = json_object_get(report, "failure");
	rc |= ag_buf_printf(out, "run:       %s\n", run);
	rc |= ag_buf_printf(out, "intact:    %s\n", ag_report_intact(report) ? "yes" : "no");
	rc |= ag_buf_printf(out, "claim:     %s\n", ev_str(report, "claim"));
	rc |= ag_buf_printf(out, "guarantee: %s\n", ev_str(report, "guarantee"));
	if (json_is_string(failure))
		rc |= ag_buf_printf(out, "failure:   %s\n", json_string_value(failure));
	for (i = 0; i < AG_NCHECKS; i++) {
		const json_t *c = json_object_get(checks, ag_check_names[i]), *ok;
		ok = json_object_get(c, "ok");
		rc |= ag_buf_printf(out, "%-10s %-4s %s\n", ag_check_names[i],
		    json_is_true(ok) ? "ok" : json_is_false(ok) ? "FAIL" : "n/a", ev_str(c, "detail"));
	}
	return rc ? AG_ERROR : 0;
}

/* Run every check (collect-all) on a bundle taken apart. */
static int
check_all(json_t **out, struct bun *b, const json_t *items, const struct ag_verify_opts *o)
{
	struct ag_checkpoint cpi;
	struct report r;
	int parsed;

	memset(&r, 0, sizeof(r));
	check_chain(&r, b);
	check_root(&r, b, &cpi, &parsed);
	check_signature(&r, b, o->keys);
	check_anchor(&r, b, o);
	check_artifacts(&r, b, items, o->objects);
	check_handoff(&r, b);
	if (!(*out = report_json(&r)))
		return ag_error_set(AG_ERROR, "out of memory");
	return 0;
}

/* ---- reading a bundle ---- */

/*
 * Strict base64 of any length (note.c's ag_base64_decode takes small
 * values): the standard alphabet, padding to a multiple of 4, the unused
 * bits zero, so that one byte string has one spelling. out has room for
 * len / 4 * 3 bytes.
 */
static int
b64_decode(unsigned char *out, size_t *n, const char *s, size_t len)
{
	static signed char val[256];
	static int ready;
	static const char alpha[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o = 0, pad = 0;
	unsigned v;

	if (!ready) {
		memset(val, -1, sizeof(val));
		for (i = 0; i < 64; i++)
			val[(unsigned char)alpha[i]] = (signed char)i;
		ready = 1;
	}
	*n = 0;
	if (len % 4 != 0)
		return -1;
	if (len && s[len - 1] == '=')
		pad = len > 1 && s[len - 2] == '=' ? 2 : 1;
	for (i = 0; i < len; i += 4) {
		int a = val[(unsigned char)s[i]], b = val[(unsigned char)s[i + 1]];
		int c = val[(unsigned char)s[i + 2]], d = val[(unsigned char)s[i + 3]];
		int last = i + 4 == len;
		if (a < 0 || b < 0 || (c < 0 && !(last && pad == 2)) ||
		    (d < 0 && !(last && pad >= 1)))
			return -1;
		v = (unsigned)a << 18 | (unsigned)b << 12 | (unsigned)(c < 0 ? 0 : c) << 6 |
		    (unsigned)(d < 0 ? 0 : d);
		out[o++] = (unsigned char)(v >> 16);
		if (last && pad == 2) {
			if (v & 0xffff)
				return -1;
			break;
		}
		out[o++] = (unsigned char)(v >> 8);
		if (last && pad == 1) {
			if (v & 0xff)
				return -1;
			break;
		}
		out[o++] = (unsigned char)v;
	}
	*n = o;
	return 0;
}

static int
field_bytes(unsigned char **out, size_t *len, const json_t *bundle, const char *name, int optional)
{
	const json_t *v = json_object_get(bundle, name);
	const char *s;
	size_t n;

	*out = NULL;
	*len = 0;
	if (optional && (!v || json_is_null(v)))
		return 0;
	if (!json_is_object(v) || !(s = ev_str(v, "base64")))
		return ag_error_set(AG_EINVALID, "the bundle's %s is not {\"base64\": ...}", name);
	n = json_string_length(json_object_get(v, "base64"));
	if (!(*out = malloc(n / 4 * 3 + 1)))
		return ag_error_set(AG_ERROR, "out of memory");
	if (b64_decode(*out, len, s, n) < 0) {
		free(*out);
		*out = NULL;
		return ag_error_set(AG_EINVALID, "the bundle's %s.base64 is not base64", name);
	}
	return 0;
}

/* "global": null, or {"checkpoint": {"base64": ...}, "proof": ["<hex>", ...]}. */
static int
read_global(struct bun *b, const json_t *g)
{
	const json_t *proof = json_object_get(g, "proof"), *h;
	unsigned char *cp = NULL;
	size_t i;
	int rc;

	if (!g || json_is_null(g))
		return 0;
	if (!json_is_array(proof) || json_array_size(proof) > AG_PROOF_MAX)
		return ag_error_set(AG_EINVALID, "the bundle's global.proof is not an array of at "
		    "most %d hashes", AG_PROOF_MAX);
	json_array_foreach(proof, i, h)
		if (!json_is_string(h) || ag_unhex(b->gproof.h[i], AG_HASH_LEN, json_string_value(h)) < 0)
			return ag_error_set(AG_EINVALID, "the bundle's global.proof[%zu] is not 64 hex "
			    "digits", i);
	b->gproof.n = json_array_size(proof);
	if ((rc = field_bytes(&cp, &b->gcplen, g, "checkpoint", 0)) < 0)
		return rc == AG_EINVALID ? ag_error_set(rc, "the bundle's global.checkpoint is not "
		    "{\"base64\": ...}") : rc;
	if (!(b->gcp = malloc(b->gcplen + 1))) {
		free(cp);
		return ag_error_set(AG_ERROR, "out of memory");
	}
	memcpy(b->gcp, cp, b->gcplen);
	b->gcp[b->gcplen] = '\0';
	free(cp);
	return 0;
}

int
ag_bundle_verify(json_t **out, const json_t *bundle, const struct ag_verify_opts *o)
{
	const json_t *fmt = json_object_get(bundle, "format"), *ver = json_object_get(bundle, "version");
	const char *run = ev_str(bundle, "run");
	json_t *items = NULL;
	struct bun b;
	unsigned char *cp = NULL;
	int rc;

	*out = NULL;
	memset(&b, 0, sizeof(b));
	if (!json_is_object(bundle) || !json_is_string(fmt) ||
	    strcmp(json_string_value(fmt), AG_BUNDLE_FORMAT) != 0)
		return ag_error_set(AG_EINVALID, "not an agora bundle: no \"format\": \"%s\"",
		    AG_BUNDLE_FORMAT);
	if (!json_is_integer(ver) || json_integer_value(ver) != AG_BUNDLE_VERSION)
		return ag_error_set(AG_EINVALID, "bundle version %s is not one this agora reads (%d)",
		    json_is_integer(ver) ? "other" : "missing", AG_BUNDLE_VERSION);
	if (!run || ag_id_check(run, strlen(run)) < 0)
		return ag_error_set(AG_EINVALID, "the bundle's run is not a run id");
	snprintf(b.run, sizeof(b.run), "%s", run);
	if (!json_is_array(json_object_get(bundle, "items")))
		return ag_error_set(AG_EINVALID, "the bundle's items are not an array");
	b.items = json_object_get(bundle, "items");
	if ((rc = field_bytes(&b.plan, &b.planlen, bundle, "plan", 0)) < 0 ||
	    (rc = field_bytes(&b.log, &b.loglen, bundle, "log", 0)) < 0 ||
	    (rc = field_bytes(&cp, &b.cplen, bundle, "checkpoint", 1)) < 0)
		goto out;
	if (cp) {
		/* a note is text: a NUL ends it for the parser */
		if (!(b.cp = malloc(b.cplen + 1))) {
			rc = ag_error_set(AG_ERROR, "out of memory");
			goto out;
		}
		memcpy(b.cp, cp, b.cplen);
		b.cp[b.cplen] = '\0';
	}
	if ((rc = read_global(&b, json_object_get(bundle, "global"))) < 0 ||
	    (rc = bun_parse(&b)) < 0 || (rc = derive_items(&items, &b)) < 0)
		goto out;
	rc = check_all(out, &b, items, o);
out:
	free(cp);
	json_decref(items);
	bun_release(&b);
	return rc;
}

/*
 * jansson reads a string one byte at a time, which is most of the cost of
 * reading a large bundle: its log is one base64 string of megabytes. So
 * the values of the "base64" keys are cut out of the text first, each
 * replaced by "@K", and put back after the parse. A value is cut only
 * when it is plain base64 (no escape, nothing that JSON would read
 * otherwise), and only when every one is: then "@K" can mean nothing
 * else.
 */
#define CUTS_MAX	32

struct cut {
	size_t off;
	size_t len;
};

/* The end of the string that starts (after its quote) at i, or 0. */
static size_t
string_end(const char *t, size_t n, size_t i, int *plain)
{
	*plain = 1;
	for (; i < n; i++) {
		if (t[i] == '"')
			return i;
		if (t[i] == '\\') {
			*plain = 0;
			i++;
		} else if (!((t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= 'a' && t[i] <= 'z') ||
		    (t[i] >= '0' && t[i] <= '9') || t[i] == '+' || t[i] == '/' || t[i] == '=')) {
			*plain = 0;
		}
	}
	return 0;
}

static size_t
skip_space(const char *t, size_t n, size_t i)
{
	while (i < n && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r'))
		i++;
	return i;
}

/* Find the values of "base64" keys; -1 when one is not plain, or too many. */
static int
find_cuts(struct cut *cuts, size_t *ncuts, const char *t, size_t n)
{
	size_t i, end, v, vend;
	int plain;

	*ncuts = 0;
	for (i = 0; i < n; i++) {
		if (t[i] != '"')
			continue;
		if (!(end = string_end(t, n, i + 1, &plain)))
			return -1;
		/* a key spelled with an escape may be "base64" once read: cut nothing then */
		if (memchr(t + i + 1, '\\', end - i - 1) && (v = skip_space(t, n, end + 1)) < n &&
		    t[v] == ':')
			return -1;
		if (end - i - 1 == 6 && memcmp(t + i + 1, "base64", 6) == 0 &&
		    (v = skip_space(t, n, end + 1)) < n && t[v] == ':' &&
		    (v = skip_space(t, n, v + 1)) < n && t[v] == '"') {
			if (!(vend = string_end(t, n, v + 1, &plain)) || !plain || *ncuts == CUTS_MAX)
				return -1;
			cuts[*ncuts].off = v + 1;
			cuts[(*ncuts)++].len = vend - v - 1;
			end = vend;
		}
		i = end;
	}
	return 0;
}

/* Put the cut values back in place of "@K". */
static int
paste(json_t *v, const char *t, const struct cut *cuts, size_t ncuts)
{
	const char *key, *s;
	json_t *x;
	size_t i;
	char *endp;
	unsigned long k;

	if (json_is_array(v)) {
		json_array_foreach(v, i, x)
			if (paste(x, t, cuts, ncuts) < 0)
				return -1;
		return 0;
	}
	if (!json_is_object(v))
		return 0;
	json_object_foreach(v, key, x) {
		if (strcmp(key, "base64") == 0 && (s = json_string_value(x)) && s[0] == '@') {
			k = strtoul(s + 1, &endp, 10);
			if (*endp || k >= ncuts)
				return -1;
			if (json_object_set_new(v, key, json_stringn_nocheck(t + cuts[k].off,
			    cuts[k].len)) < 0)
				return -1;
		} else if (paste(x, t, cuts, ncuts) < 0) {
			return -1;
		}
	}
	return 0;
}

int
ag_bundle_load(json_t **out, const char *path)
{
	struct cut cuts[CUTS_MAX];
	struct ag_buf text, small;
	json_error_t err;
	size_t ncuts = 0, i, at = 0;
	int rc, cut;

	*out = NULL;
	if ((rc = ag_read_file(&text, path, AG_BUNDLE_MAX)) < 0)
		return rc;
	ag_buf_init(&small, AG_BUNDLE_MAX);
	cut = find_cuts(cuts, &ncuts, text.ptr, text.len) == 0 && ncuts > 0;
	for (i = 0; cut && i < ncuts; i++) {
		rc = ag_buf_put(&small, text.ptr + at, cuts[i].off - at);
		if (rc == 0)
			rc = ag_buf_printf(&small, "@%zu", i);
		if (rc < 0)
			goto out;
		at = cuts[i].off + cuts[i].len;
	}
	if (cut && (rc = ag_buf_put(&small, text.ptr + at, text.len - at)) < 0)
		goto out;
	if (cut)
		*out = json_loadb(small.ptr, small.len, JSON_REJECT_DUPLICATES, &err);
	else
		*out = json_loadb(text.ptr, text.len, JSON_REJECT_DUPLICATES, &err);
	if (!*out) {
		rc = ag_error_set(AG_EINVALID, "bundle '%s' is not JSON: line %d: %s", path,
		    err.line, ag_json_error_text(&err));
		goto out;
	}
	if (cut && paste(*out, text.ptr, cuts, ncuts) < 0) {
		json_decref(*out);
		*out = NULL;
		rc = ag_error_set(AG_ERROR, "out of memory");
	}
out:
	ag_buf_release(&small);
	ag_buf_release(&text);
	return rc;
}

int
ag_bundle_write(const char *path, int fd, const json_t *bundle)
{
	char *text = json_dumps(bundle, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	size_t len;
	int rc = 0;

	if (!text)
		return ag_error_set(AG_ERROR, "out of memory");
	len = strlen(text);
	text[len] = '\n';
	if (path)
		rc = ag_write_atomic(path, text, len + 1, 0644);
	else if (ag_write_all(fd, text, len + 1) < 0)
		rc = ag_error_sys(AG_ERROR, "cannot write the bundle");
	free(text);
	return rc;
}

/* ---- building a bundle from the state directory ---- */

static int
bytes_field(json_t *bundle, const char *name, const void *data, size_t len)
{
	char *s = NULL;
	int rc;

	if ((rc = ag_base64_encode(&s, data, len)) < 0)
		return rc;
	rc = json_object_set_new(bundle, name, json_pack("{s:s}", "base64", s));
	free(s);
	return rc < 0 ? ag_error_set(AG_ERROR, "out of memory") : 0;
}

/* Read a whole file into malloc'ed bytes; *out stays NULL for a missing one when optional. */
static int
slurp(unsigned char **out, size_t *len, const char *path, size_t max, int optional)
{
	struct ag_buf b;
	int rc;

	*out = NULL;
	*len = 0;
	if ((rc = ag_read_file(&b, path, max)) < 0)
		return rc == AG_ENOTFOUND && optional ? 0 : rc;
	*len = b.len;
	*out = (unsigned char *)ag_buf_detach(&b);
	return 0;
}

/*
 * The global log's latest checkpoint and the proof that the run's entry
 * (at the logIndex of its run.sealed) is in its tree; none for a run not
 * sealed, or an index the log does not reach.
 */
static int
load_global(struct bun *b, const char *dir)
{
	char path[AG_PATH_MAX];
	struct ag_checkpoint g;
	struct ag_log log;
	const json_t *li = NULL;
	unsigned char *cp = NULL;
	size_t i, len;
	int rc, cp_none = 0;

	for (i = b->nlines; i > 0 && !li; i--)
		if (ev_is(b->lines[i - 1].ev, "run.sealed"))
			li = json_object_get(b->lines[i - 1].ev, "logIndex");
	if (!json_is_integer(li) || json_integer_value(li) < 0)
		return 0;
	if ((rc = ag_path(path, sizeof(path), "%s/audit/checkpoint", dir)) < 0 ||
	    (rc = slurp(&cp, &len, path, AG_NOTE_MAX, 1)) < 0)
		return rc;
	if (!cp)
		return 0;
	if (ag_checkpoint_parse(&g, (char *)cp, len) < 0 ||
	    (uint64_t)json_integer_value(li) >= g.size) {
		free(cp);
		ag_error_clear();
		return 0;
	}
	if ((rc = ag_log_load(&log, dir)) < 0) {
		free(cp);
		return rc;
	}
	/*
	 * The checkpoint is written after the entries it covers, so the log
	 * reaches it; when it does not (entries were cut), no proof is given,
	 * and the root check says so.
	 */
	rc = 0;
	if (log.n >= g.size)
		rc = ag_log_inclusion(&b->gproof, &log, (uint64_t)json_integer_value(li), g.size);
	else
		cp_none = 1;
	ag_log_release(&log);
	if (rc < 0 || cp_none) {
		free(cp);
		return rc;
	}
	b->gcp = (char *)cp;
	b->gcplen = len;
	return 0;
}

static int
global_field(json_t *bundle, const char *dir, const struct bun *b)
{
	char hex[2 * AG_HASH_LEN + 1];
	json_t *g, *proof;
	size_t i;
	int rc;

	(void)dir;
	if (!b->gcp)
		return json_object_set_new(bundle, "global", json_null()) < 0 ?
		    ag_error_set(AG_ERROR, "out of memory") : 0;
	if (!(g = json_object()) || !(proof = json_array())) {
		json_decref(g);
		return ag_error_set(AG_ERROR, "out of memory");
	}
	json_object_set_new(bundle, "global", g);
	if ((rc = bytes_field(g, "checkpoint", b->gcp, b->gcplen)) < 0)
		return rc;
	for (i = 0; i < b->gproof.n; i++) {
		ag_hex(hex, b->gproof.h[i], AG_HASH_LEN);
		json_array_append_new(proof, json_string(hex));
	}
	json_object_set_new(g, "proof", proof);
	return 0;
}

/*
 * The anchors of agora.conf, to read back, and their receipts for the
 * run (audit/receipts/<run>/<anchor>.json) in the order of the
 * configuration; an anchor never tried has a null receipt.
 */
static int
conf_anchors(struct ag_anchor_spec **out, size_t *n, json_t *receipts, const struct ag_conf *c,
    const char *run)
{
	struct ag_anchor_spec *v;
	json_t *rec;
	size_t i;
	int rc;

	*out = NULL;
	*n = 0;
	if (!c->nanchors)
		return 0;
	if (!(v = calloc(c->nanchors, sizeof(*v))))
		return ag_error_set(AG_ERROR, "out of memory");
	for (i = 0; i < c->nanchors; i++) {
		v[i].a = c->anchors[i];
		v[i].base = c->dir;
		rc = ag_anchor_receipt(&rec, c->dir, run, c->anchors[i].name);
		if (rc < 0 && rc != AG_ENOTFOUND) {
			free(v);
			return rc;
		}
		v[i].pending = !json_is_true(json_object_get(rec, "ok"));
		json_array_append_new(receipts, json_pack("{s:s, s:s, s:s, s:o}", "anchor",
		    c->anchors[i].name, "kind", c->anchors[i].kind, "tier",
		    ag_anchor_tier(&c->anchors[i]), "receipt", rec ? rec : json_null()));
	}
	ag_error_clear();
	*out = v;
	*n = c->nanchors;
	return 0;
}

/*
 * The public keys of the state directory: keys/signing.pub, and the
 * keys rotated out, kept as keys/<name>.pub, so that runs sealed before a
 * rotation still verify.
 */
static int
load_keys(struct ag_keyring *out, const char *dir)
{
	char path[AG_PATH_MAX];
	struct ag_key *k;
	struct dirent *e;
	DIR *d;
	size_t len;
	int rc;

	out->n = 0;
	if ((rc = ag_path(path, sizeof(path), "%s/keys/signing.pub", dir)) < 0 ||
	    (rc = ag_key_load_public(&k, path)) < 0)
		return rc;
	out->k[out->n++] = k;
	if ((rc = ag_path(path, sizeof(path), "%s/keys", dir)) < 0)
		return rc;
	if (!(d = opendir(path)))
		return ag_error_sys(AG_ERROR, "cannot read '%s'", path);
	while ((e = readdir(d)) && out->n < AG_KEYS_MAX) {
		len = strlen(e->d_name);
		if (e->d_name[0] == '.' || len < 5 || strcmp(e->d_name + len - 4, ".pub") != 0 ||
		    strcmp(e->d_name, "signing.pub") == 0)
			continue;
		if ((rc = ag_path(path, sizeof(path), "%s/keys/%s", dir, e->d_name)) < 0 ||
		    (rc = ag_key_load_public(&k, path)) < 0)
			break;
		out->k[out->n++] = k;
	}
	closedir(d);
	return rc;
}

int
ag_bundle_build(json_t **out, const struct ag_conf *c, const char *run)
{
	char path[AG_PATH_MAX], objects[AG_PATH_MAX];
	struct ag_verify_opts o;
	struct ag_anchor_spec *specs = NULL;
	struct ag_keyring ring = { { NULL }, 0 };
	json_t *bundle = NULL, *items = NULL, *report = NULL, *receipts = NULL;
	unsigned char *cp = NULL;
	struct bun b;
	size_t i;
	int rc;

	*out = NULL;
	memset(&b, 0, sizeof(b));
	memset(&o, 0, sizeof(o));
	if ((rc = ag_id_check(run, strlen(run))) < 0 || (rc = ag_run_exists(c->dir, run)) < 0)
		return rc;
	snprintf(b.run, sizeof(b.run), "%s", run);
	if ((rc = ag_path(path, sizeof(path), "%s/runs/%s/plan.json", c->dir, run)) < 0 ||
	    (rc = slurp(&b.plan, &b.planlen, path, AG_PLAN_MAX + (1 << 20), 0)) < 0 ||
	    (rc = ag_path(path, sizeof(path), "%s/runs/%s/checkpoint", c->dir, run)) < 0 ||
	    (rc = slurp(&cp, &b.cplen, path, AG_NOTE_MAX, 1)) < 0 ||
	    (rc = ag_path(path, sizeof(path), "%s/runs/%s/status.jsonl", c->dir, run)) < 0 ||
	    (rc = slurp(&b.log, &b.loglen, path, AG_LOG_MAX, 0)) < 0)
		goto out;
	if (cp) {
		b.cp = (char *)cp;	/* ag_read_file ends it with a NUL */
		cp = NULL;
	} else {
		/* a run still going: a last line without its newline is being written */
		while (b.loglen && b.log[b.loglen - 1] != '\n')
			b.loglen--;
	}
	if ((rc = bun_parse(&b)) < 0 || (rc = derive_items(&items, &b)) < 0 ||
	    (rc = load_global(&b, c->dir)) < 0)
		goto out;

	if ((rc = load_keys(&ring, c->dir)) < 0 ||
	    (rc = ag_path(objects, sizeof(objects), "%s/objects.git", c->dir)) < 0)
		goto out;
	o.keys = &ring;
	o.objects = objects;
	if (!(receipts = json_array())) {
		rc = ag_error_set(AG_ERROR, "out of memory");
		goto out;
	}
	if (b.cp && (rc = conf_anchors(&specs, &o.nanchors, receipts, c, run)) < 0)
		goto out;
	o.anchors = specs;
	if ((rc = check_all(&report, &b, items, &o)) < 0)
		goto out;

	bundle = json_pack("{s:s, s:i, s:s}", "format", AG_BUNDLE_FORMAT, "version",
	    AG_BUNDLE_VERSION, "run", run);
	if (!bundle) {
		rc = ag_error_set(AG_ERROR, "out of memory");
		goto out;
	}
	if ((rc = bytes_field(bundle, "plan", b.plan, b.planlen)) < 0 ||
	    (rc = bytes_field(bundle, "log", b.log, b.loglen)) < 0)
		goto out;
	json_object_set(bundle, "items", items);
	if (b.cp)
		rc = bytes_field(bundle, "checkpoint", b.cp, b.cplen);
	else
		json_object_set_new(bundle, "checkpoint", json_null());
	if (rc < 0)
		goto out;
	if ((rc = global_field(bundle, c->dir, &b)) < 0)
		goto out;
	json_object_set(bundle, "anchors", receipts);
	json_object_set(bundle, "report", report);
	*out = bundle;
	bundle = NULL;
out:
	free(cp);
	free(specs);
	json_decref(receipts);
	json_decref(bundle);
	json_decref(items);
	json_decref(report);
	for (i = 0; i < ring.n; i++)
		ag_key_free((struct ag_key *)ring.k[i]);
	bun_release(&b);
	return rc;
}

/* ---- the global log: agora-verify --log ---- */

enum { LOG_CHECKPOINTS, LOG_RUNS, LOG_SINCE, LOG_NCHECKS };

static const char *const log_check_names[LOG_NCHECKS] = { "checkpoints", "runs", "since" };

struct log_report {
	int ok[LOG_NCHECKS];
	char detail[LOG_NCHECKS][DETAIL_MAX];
};

static void
lset(struct log_report *r, int c, int ok, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
lset(struct log_report *r, int c, int ok, const char *fmt, ...)
{
	va_list ap;

	r->ok[c] = ok;
	va_start(ap, fmt);
	vsnprintf(r->detail[c], sizeof(r->detail[c]), fmt, ap);
	va_end(ap);
	printable(r->detail[c]);
}

/*
 * A global checkpoint: signed by k, of origin agora/log, of the first
 * size entries of l. *why says what is wrong.
 */
static int
global_checkpoint(struct ag_checkpoint *out, char *why, size_t size, const char *note, size_t len,
    const struct ag_log *l, const struct ag_keyring *k)
{
	unsigned char root[AG_HASH_LEN];

	if (ring_verify(NULL, note, len, k) < 0 || ag_checkpoint_parse(out, note, len) < 0) {
		snprintf(why, size, "%s", ag_error_msg());
		return -1;
	}
	if (strcmp(out->origin, AG_LOG_ORIGIN) != 0) {
		snprintf(why, size, "its origin is '%s', not '%s'", ag_quote(out->origin,
		    strlen(out->origin)), AG_LOG_ORIGIN);
		return -1;
	}
	if (out->size > l->n) {
		snprintf(why, size, "it covers %llu entries, the log has %llu",
		    (unsigned long long)out->size, (unsigned long long)l->n);
		return -1;
	}
	if (ag_log_root(root, l, out->size) < 0) {
		snprintf(why, size, "%s", ag_error_msg());
		return -1;
	}
	if (memcmp(root, out->root, AG_HASH_LEN) != 0) {
		snprintf(why, size, "its root is not the root of the log's first %llu entries",
		    (unsigned long long)out->size);
		return -1;
	}
	return 0;
}

/*
 * audit/checkpoints/0 .. N, each signed and of this log, each consistent
 * with the one before by an RFC 6962 proof, and audit/checkpoint the
 * latest of them. *latest is N.
 */
static void
check_checkpoints(struct log_report *r, uint64_t *latest, unsigned char lroot[AG_HASH_LEN],
    const char *dir, const struct ag_log *l, const struct ag_keyring *k)
{
	char path[AG_PATH_MAX], why[DETAIL_MAX];
	unsigned char prev_root[AG_HASH_LEN];
	struct ag_checkpoint cp;
	struct ag_proof proof;
	struct ag_buf note, last;
	uint64_t n;
	int rc;

	*latest = 0;
	if (ag_path(path, sizeof(path), "%s/audit/checkpoint", dir) < 0 ||
	    ag_read_file(&last, path, AG_NOTE_MAX) < 0) {
		lset(r, LOG_CHECKPOINTS, l->n ? 0 : NA, "%s", l->n ? ag_error_msg() :
		    "no run is sealed: no global checkpoint");
		return;
	}
	if (global_checkpoint(&cp, why, sizeof(why), last.ptr, last.len, l, k) < 0) {
		lset(r, LOG_CHECKPOINTS, 0, "audit/checkpoint: %s", why);
		goto out;
	}
	*latest = cp.size;
	memcpy(lroot, cp.root, AG_HASH_LEN);
	for (n = 0; n <= *latest; n++) {
		if ((rc = ag_path(path, sizeof(path), "%s/audit/checkpoints/%llu", dir,
		    (unsigned long long)n)) < 0 || (rc = ag_read_file(&note, path, AG_NOTE_MAX)) < 0) {
			lset(r, LOG_CHECKPOINTS, 0, "%s", ag_error_msg());
			goto out;
		}
		why[0] = '\0';
		rc = global_checkpoint(&cp, why, sizeof(why), note.ptr, note.len, l, k);
		if (rc == 0 && cp.size != n)
			snprintf(why, sizeof(why), "its size is %llu", (unsigned long long)cp.size);
		if (rc == 0 && n == *latest && (note.len != last.len ||
		    memcmp(note.ptr, last.ptr, last.len) != 0))
			snprintf(why, sizeof(why), "it is not audit/checkpoint, of the same size");
		ag_buf_release(&note);
		if (rc < 0 || cp.size != n || why[0]) {
			lset(r, LOG_CHECKPOINTS, 0, "audit/checkpoints/%llu: %s", (unsigned long long)n,
			    why);
			goto out;
		}
		/* what a reader holding only the earlier checkpoint checks */
		if (n > 0 && (ag_log_consistency(&proof, l, n - 1, n) < 0 ||
		    ag_merkle_verify_consistency(n - 1, n, prev_root, cp.root, &proof) < 0)) {
			lset(r, LOG_CHECKPOINTS, 0, "audit/checkpoints/%llu is not consistent with "
			    "audit/checkpoints/%llu: %s", (unsigned long long)n,
			    (unsigned long long)n - 1, ag_error_msg());
			goto out;
		}
		memcpy(prev_root, cp.root, AG_HASH_LEN);
	}
	lset(r, LOG_CHECKPOINTS, 1, "%llu checkpoints (sizes 0-%llu), each signed, of the log's "
	    "first entries, and consistent with the one before", (unsigned long long)*latest + 1,
	    (unsigned long long)*latest);
out:
	ag_buf_release(&last);
}

/* Each entry's run: its checkpoint is the one the entry names, signed, of its log's lines. */
static void
check_runs(struct log_report *r, const char *dir, const struct ag_log *l,
    const struct ag_keyring *k)
{
	char path[AG_PATH_MAX], origin[AG_ORIGIN_MAX + 1], sum[65], want[65];
	unsigned char root[AG_HASH_LEN];
	struct ag_checkpoint cp;
	struct ag_buf note;
	uint64_t i, n, bytes;

	if (!l->n) {
		lset(r, LOG_RUNS, NA, "no run is sealed");
		return;
	}
	for (i = 0; i < l->n; i++) {
		const struct ag_log_entry *e = &l->entries[i];
		const char *why = NULL;
		if (ag_path(path, sizeof(path), "%s/runs/%s/checkpoint", dir, e->run) < 0 ||
		    ag_read_file(&note, path, AG_NOTE_MAX) < 0) {
			lset(r, LOG_RUNS, 0, "entry %llu, run '%s': %s", (unsigned long long)i, e->run,
			    ag_error_msg());
			return;
		}
		ag_hex(want, e->checkpoint, AG_HASH_LEN);
		ag_run_origin(origin, sizeof(origin), e->run);
		if (ag_sha256_hex(sum, note.ptr, note.len) < 0 || strcmp(sum, want) != 0)
			why = "its checkpoint is not the one the entry names";
		else if (ring_verify(NULL, note.ptr, note.len, k) < 0)
			why = ag_error_msg();
		else if (ag_checkpoint_parse(&cp, note.ptr, note.len) < 0)
			why = ag_error_msg();
		else if (strcmp(cp.origin, origin) != 0 || cp.size != e->size ||
		    memcmp(cp.root, e->root, AG_HASH_LEN) != 0)
			why = "its checkpoint is not of the entry's origin, size and root";
		ag_buf_release(&note);
		if (!why && (ag_path(path, sizeof(path), "%s/runs/%s/status.jsonl", dir, e->run) < 0 ||
		    ag_merkle_file_root(root, &n, &bytes, path, e->size) < 0))
			why = ag_error_msg();
		else if (!why && (n != e->size || memcmp(root, e->root, AG_HASH_LEN) != 0))
			why = "the root of its status.jsonl is not the entry's";
		if (why) {
			lset(r, LOG_RUNS, 0, "entry %llu, run '%s': %s", (unsigned long long)i, e->run, why);
			return;
		}
	}
	lset(r, LOG_RUNS, 1, "%llu sealed run%s, each with the checkpoint and the log its entry "
	    "names", (unsigned long long)l->n, l->n == 1 ? "" : "s");
}

/* An earlier global checkpoint (a copy kept elsewhere, the source's) that this log extends. */
static void
check_since(struct log_report *r, const char *since, uint64_t latest,
    const unsigned char lroot[AG_HASH_LEN], const struct ag_log *l, const struct ag_keyring *k)
{
	char why[DETAIL_MAX];
	struct ag_checkpoint cp;
	struct ag_proof proof;
	struct ag_buf note;

	if (!since) {
		lset(r, LOG_SINCE, NA, "no earlier checkpoint given");
		return;
	}
	if (ag_read_file(&note, since, AG_NOTE_MAX) < 0) {
		lset(r, LOG_SINCE, 0, "%s", ag_error_msg());
		return;
	}
	if (global_checkpoint(&cp, why, sizeof(why), note.ptr, note.len, l, k) < 0)
		lset(r, LOG_SINCE, 0, "'%s': %s", since, why);
	else if (cp.size > latest)
		lset(r, LOG_SINCE, 0, "'%s' is of %llu entries, the latest checkpoint of %llu", since,
		    (unsigned long long)cp.size, (unsigned long long)latest);
	else if (ag_log_consistency(&proof, l, cp.size, latest) < 0 ||
	    ag_merkle_verify_consistency(cp.size, latest, cp.root, lroot, &proof) < 0)
		lset(r, LOG_SINCE, 0, "the log is not consistent with '%s': %s", since, ag_error_msg());
	else
		lset(r, LOG_SINCE, 1, "the log of %llu entries extends '%s', of %llu (RFC 6962 "
		    "consistency proof)", (unsigned long long)latest, since, (unsigned long long)cp.size);
	ag_buf_release(&note);
}

int
ag_log_verify(json_t **out, const char *dir, const struct ag_keyring *k, const char *since)
{
	char path[AG_PATH_MAX];
	unsigned char lroot[AG_HASH_LEN];
	struct log_report r;
	struct ag_log l;
	uint64_t latest = 0;
	json_t *checks;
	int i, failure = -1, rc;

	*out = NULL;
	memset(&r, 0, sizeof(r));
	memset(&l, 0, sizeof(l));
	if ((rc = ag_path(path, sizeof(path), "%s/audit", dir)) < 0)
		return rc;
	if (!ag_exists(path))
		return ag_error_set(AG_ENOTFOUND, "'%s' is not a state directory: it has no audit/", dir);
	if (ag_log_load(&l, dir) < 0) {
		/* a log that does not parse was tampered with: a verdict, not an error */
		lset(&r, LOG_CHECKPOINTS, 0, "%s", ag_error_msg());
		lset(&r, LOG_RUNS, NA, "the global log does not parse");
		lset(&r, LOG_SINCE, since ? 0 : NA, "the global log does not parse");
	} else {
		check_checkpoints(&r, &latest, lroot, dir, &l, k);
		check_runs(&r, dir, &l, k);
		if (r.ok[LOG_CHECKPOINTS] == 1)
			check_since(&r, since, latest, lroot, &l, k);
		else
			lset(&r, LOG_SINCE, since ? 0 : NA, "no trusted latest checkpoint");
	}
	checks = json_object();
	for (i = 0; i < LOG_NCHECKS; i++) {
		json_object_set_new(checks, log_check_names[i], json_pack("{s:o, s:s}", "ok",
		    r.ok[i] == NA ? json_string("n/a") : json_boolean(r.ok[i]), "detail", r.detail[i]));
		if (r.ok[i] == 0 && failure < 0)
			failure = i;
	}
	*out = json_pack("{s:I, s:I, s:b, s:o, s:o}", "entries", (json_int_t)l.n,
	    "checkpoint", (json_int_t)latest, "intact", failure < 0,
	    "failure", failure < 0 ? json_null() : json_string(log_check_names[failure]),
	    "checks", checks);
	ag_log_release(&l);
	return *out ? 0 : ag_error_set(AG_ERROR, "out of memory");
}

int
ag_log_report_text(struct ag_buf *out, const char *dir, const json_t *report)
{
	const json_t *checks = json_object_get(report, "checks"), *failure;
	int i, rc = 0;

	failure = json_object_get(report, "failure");
	rc |= ag_buf_printf(out, "log:         %s/audit, %lld entries, checkpoint of %lld\n", dir,
	    (long long)json_integer_value(json_object_get(report, "entries")),
	    (long long)json_integer_value(json_object_get(report, "checkpoint")));
	rc |= ag_buf_printf(out, "intact:      %s\n", ag_report_intact(report) ? "yes" : "no");
	if (json_is_string(failure))
		rc |= ag_buf_printf(out, "failure:     %s\n", json_string_value(failure));
	for (i = 0; i < LOG_NCHECKS; i++) {
		const json_t *c = json_object_get(checks, log_check_names[i]), *ok;
		ok = json_object_get(c, "ok");
		rc |= ag_buf_printf(out, "%-12s %-4s %s\n", log_check_names[i],
		    json_is_true(ok) ? "ok" : json_is_false(ok) ? "FAIL" : "n/a", ev_str(c, "detail"));
	}
	return rc ? AG_ERROR : 0;
}
