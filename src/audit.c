/*
 * Sealing a run and the global log of sealed runs (see audit.h and
 * agora-state(5)).
 *
 * The order of a seal's writes makes a crash anywhere harmless: the run's
 * log is fsynced before its lines are hashed, so a checkpoint covers only
 * durable lines; the checkpoint is durable before the global log names its
 * hash; the global entry is durable before run.sealed is logged; and the
 * run leaves active/ only after run.sealed is durable. Until then every
 * tick seals it again, and each step finds its work done or does it.
 */
#include "agora.h"
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "banned.h"

int
ag_signing_key(struct ag_key **out, const char *dir)
{
	char path[AG_PATH_MAX];
	int rc;

	*out = NULL;
	if ((rc = ag_path(path, sizeof(path), "%s/keys/signing.key", dir)) < 0)
		return rc;
	return ag_key_load_private(out, path);
}

int
ag_run_origin(char *out, size_t size, const char *run)
{
	if ((size_t)snprintf(out, size, "agora/run/%s", run) >= size)
		return ag_error_set(AG_EINVALID, "run id too long");
	return 0;
}

/* ---- log entries ---- */

int
ag_log_entry_format(char **out, const struct ag_log_entry *e)
{
	char root[2 * AG_HASH_LEN + 1], cp[2 * AG_HASH_LEN + 1];
	json_t *o;

	ag_hex(root, e->root, AG_HASH_LEN);
	ag_hex(cp, e->checkpoint, AG_HASH_LEN);
	o = json_pack("{s:s, s:I, s:s, s:s}", "run", e->run, "size", (json_int_t)e->size,
	    "root", root, "checkpoint", cp);
	*out = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(o);
	return *out ? 0 : ag_error_set(AG_ERROR, "out of memory");
}

int
ag_log_entry_parse(struct ag_log_entry *out, const char *line, size_t len)
{
	static const char *const keys[] = { "run", "size", "root", "checkpoint" };
	json_error_t jerr;
	json_t *o, *v;
	const char *k;
	size_t i = 0;
	char *again = NULL;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (!(o = json_loadb(line, len, 0, &jerr)) || !json_is_object(o)) {
		json_decref(o);
		return ag_error_set(AG_EINVALID, "not a JSON object");
	}
	/* jansson keeps the order of the text: check it too */
	json_object_foreach(o, k, v) {
		if (i >= 4 || strcmp(k, keys[i]) != 0) {
			rc = ag_error_set(AG_EINVALID, "unexpected key '%s'", ag_quote(k, strlen(k)));
			goto out;
		}
		i++;
	}
	v = json_object_get(o, "run");
	if (i != 4 || !json_is_string(v) || !ag_id_valid(json_string_value(v)) ||
	    !json_is_integer(json_object_get(o, "size")) ||
	    json_integer_value(json_object_get(o, "size")) < 0) {
		rc = ag_error_set(AG_EINVALID, "missing or bad run or size");
		goto out;
	}
	snprintf(out->run, sizeof(out->run), "%s", json_string_value(v));
	out->size = (uint64_t)json_integer_value(json_object_get(o, "size"));
	if (ag_unhex(out->root, AG_HASH_LEN, json_string_value(json_object_get(o, "root"))) < 0 ||
	    ag_unhex(out->checkpoint, AG_HASH_LEN,
	    json_string_value(json_object_get(o, "checkpoint"))) < 0) {
		rc = ag_error_set(AG_EINVALID, "bad root or checkpoint hash");
		goto out;
	}
	/* one spelling only: the line is what agora writes */
	if ((rc = ag_log_entry_format(&again, out)) < 0)
		goto out;
	if (strlen(again) != len || memcmp(again, line, len) != 0)
		rc = ag_error_set(AG_EINVALID, "not in agora's compact form");
out:
	free(again);
	json_decref(o);
	return rc;
}

/* ---- the global log ---- */

void
ag_log_release(struct ag_log *l)
{
	free(l->leaves);
	free(l->entries);
	memset(l, 0, sizeof(*l));
}

int
ag_log_read(struct ag_log *out, const char *path)
{
	struct ag_buf b;
	size_t off = 0, cap = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = ag_read_file(&b, path, AG_LOG_MAX)) < 0) {
		if (rc != AG_ENOTFOUND)
			return rc;
		ag_error_clear();
		return 0;
	}
	while (off < b.len) {
		char *nl = memchr(b.ptr + off, '\n', b.len - off);
		size_t len;
		if (!nl)
			break;	/* torn: a crashed append */
		len = (size_t)(nl - (b.ptr + off));
		if (out->n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			unsigned char *nl2 = realloc(out->leaves, ncap * AG_HASH_LEN);
			struct ag_log_entry *ne;
			if (nl2)
				out->leaves = nl2;
			ne = nl2 ? realloc(out->entries, ncap * sizeof(*ne)) : NULL;
			if (!ne) {
				rc = ag_error_set(AG_ERROR, "out of memory");
				goto out;
			}
			out->entries = ne;
			cap = ncap;
		}
		if (ag_log_entry_parse(&out->entries[out->n], b.ptr + off, len) < 0) {
			char why[256];
			snprintf(why, sizeof(why), "%s", ag_error_msg());
			rc = ag_error_set(AG_EINVALID, "%s: line %llu: %s", path,
			    (unsigned long long)out->n + 1, why);
			goto out;
		}
		if ((rc = ag_merkle_leaf(out->leaves + out->n * AG_HASH_LEN, b.ptr + off, len)) < 0)
			goto out;
		out->n++;
		off += len + 1;
	}
	out->bytes = off;
out:
	ag_buf_release(&b);
	if (rc < 0)
		ag_log_release(out);
	return rc;
}

int
ag_log_load(struct ag_log *out, const char *dir)
{
	char path[AG_PATH_MAX];
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = ag_path(path, sizeof(path), "%s/audit/log.jsonl", dir)) < 0)
		return rc;
	return ag_log_read(out, path);
}

int
ag_log_find(uint64_t *out, const struct ag_log *l, const char *run)
{
	uint64_t i;

	for (i = 0; i < l->n; i++)
		if (strcmp(l->entries[i].run, run) == 0) {
			*out = i;
			return 0;
		}
	return ag_error_set(AG_ENOTFOUND, "run '%s' is not in the global log", run);
}

static int
check_size(const struct ag_log *l, uint64_t n)
{
	if (n > l->n)
		return ag_error_set(AG_EINVALID, "the global log has %llu entries, not %llu",
		    (unsigned long long)l->n, (unsigned long long)n);
	return 0;
}

int
ag_log_root(unsigned char out[AG_HASH_LEN], const struct ag_log *l, uint64_t m)
{
	int rc;

	if ((rc = check_size(l, m)) < 0)
		return rc;
	return ag_merkle_tree_hash(out, l->leaves, m);
}

int
ag_log_consistency(struct ag_proof *out, const struct ag_log *l, uint64_t m, uint64_t n)
{
	int rc;

	out->n = 0;
	if ((rc = check_size(l, n)) < 0)
		return rc;
	return ag_merkle_consistency(out, l->leaves, n, m);
}

int
ag_log_inclusion(struct ag_proof *out, const struct ag_log *l, uint64_t index, uint64_t n)
{
	int rc;

	out->n = 0;
	if ((rc = check_size(l, n)) < 0)
		return rc;
	return ag_merkle_inclusion(out, l->leaves, n, index);
}

/*
 * audit/checkpoints/<n> for the log's first n entries, created once; and
 * audit/checkpoint, the latest, when latest is set.
 */
static int
log_checkpoint(const char *dir, const struct ag_log *l, uint64_t n, const struct ag_key *k,
    int latest)
{
	char path[AG_PATH_MAX];
	unsigned char root[AG_HASH_LEN];
	struct ag_buf have;
	char *note = NULL;
	size_t len;
	int rc;

	if ((rc = ag_path(path, sizeof(path), "%s/audit/checkpoints/%llu", dir,
	    (unsigned long long)n)) < 0)
		return rc;
	if (ag_read_file(&have, path, AG_NOTE_MAX) == 0) {
		/* written before a crash (maybe under an older key): it stays */
		ag_error_clear();
		note = ag_buf_detach(&have);
		len = strlen(note);
	} else {
		if ((rc = ag_log_root(root, l, n)) < 0 ||
		    (rc = ag_checkpoint_sign(&note, &len, AG_LOG_ORIGIN, n, root, k)) < 0)
			goto out;
		rc = ag_create_excl(path, note, len, 0444);
		if (rc < 0 && rc != AG_EEXISTS)
			goto out;
		rc = 0;
	}
	if (latest) {
		struct ag_buf cur;
		char cpath[AG_PATH_MAX];
		int same = 0;
		if ((rc = ag_path(cpath, sizeof(cpath), "%s/audit/checkpoint", dir)) < 0)
			goto out;
		if (ag_read_file(&cur, cpath, AG_NOTE_MAX) == 0) {
			same = cur.len == len && memcmp(cur.ptr, note, len) == 0;
			ag_buf_release(&cur);
		}
		ag_error_clear();
		if (!same)
			rc = ag_write_atomic(cpath, note, len, 0644);
	}
out:
	free(note);
	return rc;
}

int
ag_log_append(uint64_t *index, const char *dir, const struct ag_log_entry *e,
    const struct ag_key *k)
{
	char path[AG_PATH_MAX];
	struct ag_log l;
	char *line = NULL;
	size_t len;
	int fd = -1, rc;

	if ((rc = ag_path(path, sizeof(path), "%s/audit/checkpoints", dir)) < 0 ||
	    (rc = ag_mkdir_p(path, 0755)) < 0)
		return rc;
	if ((rc = ag_log_load(&l, dir)) < 0)
		return rc;
	if (ag_log_find(index, &l, e->run) == 0) {
		ag_error_clear();
		rc = log_checkpoint(dir, &l, l.n, k, 1);
		goto out;
	}
	ag_error_clear();
	/* every size the log has had gets its checkpoint, before it grows */
	if ((rc = log_checkpoint(dir, &l, l.n, k, 0)) < 0)
		goto out;
	if ((rc = ag_log_entry_format(&line, e)) < 0)
		goto out;
	len = strlen(line);
	line[len] = '\0';
	if ((rc = ag_path(path, sizeof(path), "%s/audit/log.jsonl", dir)) < 0)
		goto out;
	if ((fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644)) < 0) {
		rc = ag_error_sys(AG_ERROR, "cannot open '%s'", path);
		goto out;
	}
	/* cut a torn line of a crashed append */
	if (ftruncate(fd, (off_t)l.bytes) < 0) {
		rc = ag_error_sys(AG_ERROR, "cannot truncate '%s'", path);
		goto out;
	}
	{
		char *nl = realloc(line, len + 2);
		if (!nl) {
			rc = ag_error_set(AG_ERROR, "out of memory");
			goto out;
		}
		line = nl;
		line[len] = '\n';
		line[len + 1] = '\0';
	}
	if (write(fd, line, len + 1) != (ssize_t)(len + 1) || fdatasync(fd) < 0) {
		rc = ag_error_sys(AG_ERROR, "cannot append to '%s'", path);
		goto out;
	}
	if (l.bytes == 0 && (rc = ag_fsync_parent(path)) < 0)
		goto out;
	ag_crash_point("seal-log");
	ag_log_release(&l);
	if ((rc = ag_log_load(&l, dir)) < 0)
		goto out;
	if ((rc = ag_log_find(index, &l, e->run)) < 0)
		goto out;
	rc = log_checkpoint(dir, &l, l.n, k, 1);
out:
	if (fd >= 0)
		close(fd);
	free(line);
	ag_log_release(&l);
	return rc;
}

/* ---- sealing ---- */

int
ag_seal_run(struct ag_seal *out, const char *dir, struct ag_run *r, const struct ag_key *k)
{
	char path[AG_PATH_MAX], origin[AG_ORIGIN_MAX + 1], hex[2 * AG_HASH_LEN + 1];
	struct ag_log_entry e;
	struct ag_checkpoint have;
	struct ag_buf old;
	char *note = NULL;
	size_t len = 0;
	uint64_t n = 0, bytes;
	json_t *ev;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!r->completed || r->log_fd < 0)
		return ag_error_set(AG_EINVALID, "run '%s' cannot be sealed: %s", r->id,
		    r->completed ? "its log is not open" : "it has not completed");
	/* what the checkpoint covers is on disk first */
	if (fdatasync(r->log_fd) < 0)
		return ag_error_sys(AG_ERROR, "cannot fsync '%s/status.jsonl'", r->dir);
	r->dirty = 0;
	out->size = (uint64_t)r->completed_seq + 1;
	if ((rc = ag_path(path, sizeof(path), "%s/status.jsonl", r->dir)) < 0 ||
	    (rc = ag_merkle_file_root(out->root, &n, &bytes, path, out->size)) < 0)
		return rc;
	if (n != out->size)
		return ag_error_set(AG_EINVALID, "%s: %llu lines, run.completed is line %llu", path,
		    (unsigned long long)n, (unsigned long long)out->size);
	if ((rc = ag_run_origin(origin, sizeof(origin), r->id)) < 0 ||
	    (rc = ag_path(path, sizeof(path), "%s/checkpoint", r->dir)) < 0)
		return rc;
	/* a crashed seal's checkpoint of the same tree stays as it is */
	if (ag_read_file(&old, path, AG_NOTE_MAX) == 0) {
		if (ag_checkpoint_parse(&have, old.ptr, old.len) == 0 &&
		    strcmp(have.origin, origin) == 0 && have.size == out->size &&
		    memcmp(have.root, out->root, AG_HASH_LEN) == 0) {
			len = old.len;
			note = ag_buf_detach(&old);
		}
		ag_buf_release(&old);
	}
	ag_error_clear();
	if (!note) {
		if ((rc = ag_checkpoint_sign(&note, &len, origin, out->size, out->root, k)) < 0 ||
		    (rc = ag_write_atomic(path, note, len, 0644)) < 0)
			goto out;
	}
	ag_crash_point("seal-checkpoint");
	if ((rc = ag_sha256_hex(hex, note, len)) < 0 ||
	    (rc = ag_unhex(out->checkpoint, AG_HASH_LEN, hex)) < 0)
		goto out;
	memset(&e, 0, sizeof(e));
	snprintf(e.run, sizeof(e.run), "%s", r->id);
	e.size = out->size;
	memcpy(e.root, out->root, AG_HASH_LEN);
	memcpy(e.checkpoint, out->checkpoint, AG_HASH_LEN);
	if ((rc = ag_log_append(&out->log_index, dir, &e, k)) < 0)
		goto out;
	ag_crash_point("seal-global");
	ev = ag_event_new(r, "run.sealed");
	/*
	 * The tree ends at run.completed, so run.sealed is outside it: its at is
	 * run.completed's, so that every byte of it follows from the lines
	 * before, the checkpoint and the global log, and a verifier can check
	 * it byte for byte.
	 */
	json_object_set_new(ev, "at", json_string(r->completed_at));
	json_object_set_new(ev, "size", json_integer((json_int_t)out->size));
	ag_hex(hex, out->root, AG_HASH_LEN);
	json_object_set_new(ev, "root", json_string(hex));
	ag_hex(hex, out->checkpoint, AG_HASH_LEN);
	json_object_set_new(ev, "checkpoint", json_string(hex));
	json_object_set_new(ev, "key", json_string(ag_key_name(k)));
	json_object_set_new(ev, "keyId", json_string(ag_key_id_hex(k)));
	json_object_set_new(ev, "logIndex", json_integer((json_int_t)out->log_index));
	if ((rc = ag_run_emit(r, ev)) < 0 || (rc = ag_run_sync(r)) < 0)
		goto out;
	ag_crash_point("seal-event");
out:
	free(note);
	return rc;
}
