/*
 * What items produced, as their item.done lines record it: the patch
 * (resultRef "git:<blob>" in objects.git, with its patchSha256), the
 * outputs, and the attempt's logs and result.json. agora-show prints
 * them; agora-apply turns a run's patches into commits on a new branch of
 * a repository.
 */
#include "agora.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#include "banned.h"

int
ag_artifact_fields(json_t *ev, const struct ag_capture *c, const struct ag_output *o, size_t n)
{
	char ref[AG_OID_HEX + 4];
	json_t *list;
	size_t i;

	if (c && c->base[0])
		json_object_set_new(ev, "base", json_string(c->base));
	if (c && c->patch[0]) {
		snprintf(ref, sizeof(ref), "git:%s", c->patch);
		json_object_set_new(ev, "resultRef", json_string(ref));
		json_object_set_new(ev, "patchSha256", json_string(c->sha256));
	}
	if (!n)
		return 0;
	if (!(list = json_array()))
		return ag_error_set(AG_ERROR, "out of memory");
	for (i = 0; i < n; i++) {
		snprintf(ref, sizeof(ref), "git:%s", o[i].blob);
		if (json_array_append_new(list, json_pack("{s:s, s:s, s:I}", "path", o[i].path,
		    "ref", ref, "size", (json_int_t)o[i].size)) < 0) {
			json_decref(list);
			return ag_error_set(AG_ERROR, "out of memory");
		}
	}
	json_object_set_new(ev, "outputs", list);
	return 0;
}

/* ---- a run's item.done lines ---- */

static void
collect_done(void *arg, const char *line, size_t len, const json_t *ev)
{
	struct ag_artifacts *a = arg;
	const char *e = json_string_value(json_object_get(ev, "event"));
	const char *id = json_string_value(json_object_get(ev, "item"));
	size_t i;

	(void)line;
	(void)len;
	if (!e || strcmp(e, "item.done") != 0 || !id || ag_run_item(a->run, id, &i) < 0)
		return;
	json_decref(a->done[i]);
	a->done[i] = json_incref((json_t *)ev);
}

int
ag_artifacts_load(struct ag_artifacts *out, const struct ag_conf *c, const char *run)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = ag_run_load(&out->run, c, run, -1)) < 0)
		return rc;
	if (!(out->done = calloc(out->run->nitems + 1, sizeof(*out->done)))) {
		ag_artifacts_release(out);
		return ag_error_set(AG_ERROR, "out of memory");
	}
	if ((rc = ag_run_follow(out->run, collect_done, out)) < 0)
		ag_artifacts_release(out);
	return rc;
}

void
ag_artifacts_release(struct ag_artifacts *a)
{
	size_t i;

	if (a->done)
		for (i = 0; a->run && i < a->run->nitems; i++)
			json_decref(a->done[i]);
	free(a->done);
	ag_run_free(a->run);
	a->done = NULL;
	a->run = NULL;
}

/* The blob id of a "git:<id>" ref, or NULL. */
static const char *
git_ref_blob(const json_t *v)
{
	const char *s = json_string_value(v);

	if (!s || strncmp(s, "git:", 4) != 0 || strlen(s + 4) != AG_OID_HEX - 1)
		return NULL;
	return s + 4;
}

/* The patch blob of a done item, NULL when it changed nothing. */
static int
done_patch(const char **out, const struct ag_artifacts *a, size_t i)
{
	const json_t *ev = a->done[i];
	const json_t *ref = json_object_get(ev, "resultRef");

	*out = NULL;
	if (!ref)
		return 0;
	if (!(*out = git_ref_blob(ref)))
		return ag_error_set(AG_EINVALID, "item '%s' of run '%s' has a resultRef that is not "
		    "\"git:<blob id>\"", a->run->items[i].id, a->run->id);
	return 0;
}

/* The patch's bytes, checked against the patchSha256 of its item.done. */
static int
read_patch(struct ag_buf *out, struct ag_store *s, const struct ag_artifacts *a, size_t i,
    const char *blob)
{
	const char *want = json_string_value(json_object_get(a->done[i], "patchSha256"));
	char got[65];
	int rc;

	if ((rc = ag_store_read_blob(out, s, blob, AG_PATCH_MAX)) < 0)
		return rc;
	if (want && ((rc = ag_sha256_hex(got, out->ptr ? out->ptr : "", out->len)) < 0 ||
	    strcmp(got, want) != 0)) {
		ag_buf_release(out);
		return rc < 0 ? rc : ag_error_set(AG_EINVALID, "patch '%s' of item '%s' of run '%s' "
		    "does not match its patchSha256", blob, a->run->items[i].id, a->run->id);
	}
	return 0;
}

static int
open_store(struct ag_store **out, const struct ag_conf *c)
{
	char path[AG_PATH_MAX];
	int rc;

	if ((rc = ag_path(path, sizeof(path), "%s/objects.git", c->dir)) < 0)
		return rc;
	return ag_store_open(out, path);
}

/* ---- agora-show ---- */

/* Copy a file to fd; a file not there yet is empty. */
static int
copy_file(int fd, const char *path)
{
	char buf[65536];
	ssize_t n;
	int in, rc = 0;

	if ((in = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return errno == ENOENT ? 0 : ag_error_sys(AG_ERROR, "cannot open '%s'", path);
	for (;;) {
		n = read(in, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = ag_error_sys(AG_ERROR, "cannot read '%s'", path);
			break;
		}
		if (n == 0)
			break;
		if (ag_write_all(fd, buf, (size_t)n) < 0) {
			rc = ag_error_sys(AG_ERROR, "cannot write '%s'", path);
			break;
		}
	}
	close(in);
	return rc;
}

static int
show_outputs(int fd, const struct ag_artifacts *a, size_t i)
{
	const json_t *list = json_object_get(a->done[i], "outputs"), *o;
	struct ag_buf b;
	size_t k;
	int rc = 0;

	ag_buf_init(&b, 0);
	json_array_foreach(list, k, o) {
		const char *blob = git_ref_blob(json_object_get(o, "ref"));
		const char *path = json_string_value(json_object_get(o, "path"));
		if (!blob || !path) {
			rc = ag_error_set(AG_EINVALID, "item '%s' of run '%s' lists an output that "
			    "is not {path, ref: \"git:<blob id>\", size}", a->run->items[i].id, a->run->id);
			break;
		}
		if ((rc = ag_buf_printf(&b, "%s %lld %s\n", blob,
		    (long long)json_integer_value(json_object_get(o, "size")), path)) < 0)
			break;
	}
	if (rc == 0 && b.len && ag_write_all(fd, b.ptr, b.len) < 0)
		rc = ag_error_sys(AG_ERROR, "cannot write the output list");
	ag_buf_release(&b);
	return rc;
}

int
ag_show(const struct ag_conf *c, const char *run, const char *item, enum ag_show_what what,
    int outfd, int errfd)
{
	struct ag_artifacts a;
	struct ag_store *s = NULL;
	struct ag_buf patch = { 0 };
	char path[AG_PATH_MAX];
	const struct ag_item *it;
	const char *blob;
	size_t i;
	int rc;

	if ((rc = ag_artifacts_load(&a, c, run)) < 0)
		return rc;
	if (ag_run_item(a.run, item, &i) < 0) {
		rc = ag_error_set(AG_ENOTFOUND, "unknown item '%s' in run '%s'", item, run);
		goto out;
	}
	it = &a.run->items[i];
	if (what == AG_SHOW_LOG || what == AG_SHOW_RESULT) {
		/* the latest attempt, done or not: a failed one's log is the one to read */
		if (it->attempt == 0) {
			rc = ag_error_set(AG_ENOTFOUND, "item '%s' of run '%s' has not run yet (it is %s)",
			    item, run, ag_status_names[it->status]);
			goto out;
		}
		if (what == AG_SHOW_LOG) {
			if ((rc = ag_path(path, sizeof(path), "%s/items/%s/%d/stdout", a.run->dir, item,
			    it->attempt)) < 0 || (rc = copy_file(outfd, path)) < 0 ||
			    (rc = ag_path(path, sizeof(path), "%s/items/%s/%d/stderr", a.run->dir, item,
			    it->attempt)) < 0)
				goto out;
			rc = copy_file(errfd, path);
			goto out;
		}
		if ((rc = ag_path(path, sizeof(path), "%s/items/%s/%d/result.json", a.run->dir,
		    item, it->attempt)) < 0)
			goto out;
		if (!ag_exists(path)) {
			rc = ag_error_set(AG_ENOTFOUND, "item '%s' of run '%s' has no result for "
			    "attempt %d yet (it is %s)", item, run, it->attempt,
			    ag_status_names[it->status]);
			goto out;
		}
		rc = copy_file(outfd, path);
		goto out;
	}
	if (!a.done[i]) {
		rc = ag_error_set(AG_ENOTFOUND, "item '%s' of run '%s' has no done attempt (it is %s)",
		    item, run, ag_status_names[it->status]);
		goto out;
	}
	if (what == AG_SHOW_OUTPUTS) {
		rc = show_outputs(outfd, &a, i);
		goto out;
	}
	/* an item that changed nothing has an empty patch */
	if ((rc = done_patch(&blob, &a, i)) < 0 || !blob)
		goto out;
	if ((rc = open_store(&s, c)) < 0 || (rc = read_patch(&patch, s, &a, i, blob)) < 0)
		goto out;
	if (patch.len && ag_write_all(outfd, patch.ptr, patch.len) < 0)
		rc = ag_error_sys(AG_ERROR, "cannot write the patch");
out:
	ag_buf_release(&patch);
	ag_store_free(s);
	ag_artifacts_release(&a);
	return rc;
}

/* ---- agora-apply ---- */

/* Copy an object into odb unless it is there. */
static int
copy_object(git_odb *to, git_odb *from, const git_oid *id, const char *repo)
{
	git_odb_object *o = NULL;
	git_oid got;
	int rc = 0;

	if (git_odb_exists(to, id))
		return 0;
	if (git_odb_read(&o, from, id) < 0)
		return ag_error_set(AG_ERROR, "cannot read object '%s' of the store: %s",
		    git_oid_tostr_s(id), ag_git_msg());
	if (git_odb_write(&got, to, git_odb_object_data(o), git_odb_object_size(o),
	    git_odb_object_type(o)) < 0)
		rc = ag_error_set(AG_ERROR, "cannot write object '%s' into '%s': %s",
		    git_oid_tostr_s(id), repo, ag_git_msg());
	git_odb_object_free(o);
	return rc;
}

/*
 * A tree and what it holds, into odb. A tree already there is taken as
 * whole, and a tree is written after its entries, so that stays true.
 */
static int
copy_tree(git_odb *to, struct ag_store *s, const git_oid *id, const char *repo, int depth)
{
	git_tree *tree = NULL;
	size_t i;
	int rc = 0;

	if (git_odb_exists(to, id))
		return 0;
	if (depth > AG_TREE_DEPTH_MAX)
		return ag_error_set(AG_EINVALID, "tree '%s' is nested too deep", git_oid_tostr_s(id));
	if (git_tree_lookup(&tree, s->repo, id) < 0)
		return ag_error_set(AG_ERROR, "cannot read tree '%s' of the store: %s",
		    git_oid_tostr_s(id), ag_git_msg());
	for (i = 0; i < git_tree_entrycount(tree) && rc == 0; i++) {
		const git_tree_entry *e = git_tree_entry_byindex(tree, i);
		switch (git_tree_entry_type(e)) {
		case GIT_OBJECT_TREE:
			rc = copy_tree(to, s, git_tree_entry_id(e), repo, depth + 1);
			break;
		case GIT_OBJECT_BLOB:
			rc = copy_object(to, s->odb, git_tree_entry_id(e), repo);
			break;
		default:	/* a submodule's commit lives elsewhere */
			break;
		}
	}
	git_tree_free(tree);
	if (rc == 0)
		rc = copy_object(to, s->odb, id, repo);
	return rc;
}

struct patch_item {
	size_t item;
	const char *blob;
	const char *base;
	char tree[AG_OID_HEX];
	git_oid commit;
};

/* A commit of tree on parent in the store, as agora-apply writes it. */
static int
make_commit(git_oid *out, struct ag_store *s, const struct ag_artifacts *a,
    const struct patch_item *p, git_commit *parent)
{
	const struct ag_item *it = &a->run->items[p->item];
	const json_t *ev = a->done[p->item];
	const char *sha = json_string_value(json_object_get(ev, "patchSha256"));
	json_t *spec = NULL;
	const char *title = NULL;
	git_signature *sig = NULL;
	git_tree *tree = NULL;
	struct ag_buf msg;
	git_oid tid;
	int64_t at = 0;
	int rc;

	ag_buf_init(&msg, 0);
	ag_time_parse(&at, json_string_value(json_object_get(ev, "at")));
	if (ag_run_item_spec(&spec, a->run, p->item) == 0)
		title = json_string_value(json_object_get(spec, "title"));
	if ((rc = ag_buf_printf(&msg, "%s/%s%s%s\n\nAgora-Run: %s\nAgora-Item: %s\n"
	    "Agora-Attempt: %lld\nAgora-Patch: git:%s\n", a->run->id, it->id, title ? ": " : "",
	    title ? title : "", a->run->id, it->id,
	    (long long)json_integer_value(json_object_get(ev, "attempt")), p->blob)) < 0 ||
	    (sha && (rc = ag_buf_printf(&msg, "Agora-Patch-Sha256: %s\n", sha)) < 0))
		goto out;
	/* the author is agora, at the time the item was done: the same run gives the same commits */
	if (git_oid_fromstr(&tid, p->tree) < 0 || git_tree_lookup(&tree, s->repo, &tid) < 0 ||
	    git_signature_new(&sig, "agora", "agora@localhost", (git_time_t)(at / 1000), 0) < 0 ||
	    git_commit_create(out, s->repo, NULL, sig, sig, NULL, msg.ptr, tree, 1,
	    (const git_commit **)&parent) < 0)
		rc = ag_error_set(AG_ERROR, "cannot commit the patch of item '%s' in '%s': %s", it->id,
		    s->path, ag_git_msg());
out:
	git_signature_free(sig);
	git_tree_free(tree);
	json_decref(spec);
	ag_buf_release(&msg);
	return rc;
}

/* The patches of the run's done items, dependencies first. */
static int
list_patches(struct patch_item **out, size_t *n, const struct ag_artifacts *a)
{
	const struct ag_run *r = a->run;
	struct patch_item *v;
	size_t k;
	int rc;

	*n = 0;
	if (!(*out = v = calloc(r->nitems + 1, sizeof(*v))))
		return ag_error_set(AG_ERROR, "out of memory");
	for (k = 0; k < r->nitems; k++) {
		size_t i = r->topo[k];
		const char *blob;
		if (r->items[i].status != AG_DONE || !a->done[i])
			continue;
		if ((rc = done_patch(&blob, a, i)) < 0)
			return rc;
		if (!blob)
			continue;
		v[*n].item = i;
		v[*n].blob = blob;
		v[*n].base = json_string_value(json_object_get(a->done[i], "base"));
		if (!v[*n].base)
			return ag_error_set(AG_EINVALID, "item '%s' of run '%s' records no base commit",
			    r->items[i].id, r->id);
		(*n)++;
	}
	return 0;
}

int
ag_apply_run(struct ag_applied **out, size_t *nout, const struct ag_conf *c, const char *run,
    const struct ag_apply_opts *o)
{
	char branch[AG_PATH_MAX], refname[AG_PATH_MAX], msg[1024];
	struct ag_artifacts a = { 0 };
	struct ag_store *s = NULL;
	struct patch_item *p = NULL;
	struct ag_applied *done = NULL;
	struct ag_buf text = { 0 };
	git_repository *dst = NULL;
	git_odb *dodb = NULL;
	git_reference *ref = NULL;
	git_commit *parent = NULL;
	git_oid base;
	size_t n = 0, k;
	int rc, valid = 0, err;

	*out = NULL;
	*nout = 0;
	if ((rc = ag_artifacts_load(&a, c, run)) < 0)
		goto out;
	if (o->branch)
		rc = ag_path(branch, sizeof(branch), "%s", o->branch);
	else
		rc = ag_path(branch, sizeof(branch), "agora/%s", run);
	if (rc < 0 || (rc = ag_path(refname, sizeof(refname), "refs/heads/%s", branch)) < 0)
		goto out;
	if (git_reference_name_is_valid(&valid, refname) < 0 || !valid) {
		rc = ag_error_set(AG_EINVALID, "invalid branch name '%s'", ag_quote(branch, strlen(branch)));
		goto out;
	}
	/* the target: there, with no such branch, and (below) holding the base */
	ag_git_setup();
	if (git_repository_open_ext(&dst, o->repo, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL) < 0 ||
	    git_repository_odb(&dodb, dst) < 0) {
		rc = ag_error_set(AG_ENOTFOUND, "cannot open repository '%s': %s", o->repo, ag_git_msg());
		goto out;
	}
	if ((err = git_reference_lookup(&ref, dst, refname)) == 0) {
		rc = ag_error_set(AG_EEXISTS, "branch '%s' already exists in repository '%s'", branch,
		    o->repo);
		goto out;
	}
	if ((rc = list_patches(&p, &n, &a)) < 0)
		goto out;
	if (n == 0) {
		rc = ag_error_set(AG_ENOTFOUND, "run '%s' has no patch to apply", run);
		goto out;
	}
	if (git_oid_fromstr(&base, p[0].base) < 0) {
		rc = ag_error_set(AG_EINVALID, "item '%s' of run '%s' has an invalid base '%s'",
		    a.run->items[p[0].item].id, run, ag_quote(p[0].base, strlen(p[0].base)));
		goto out;
	}
	if (!git_odb_exists(dodb, &base)) {
		rc = ag_error_set(AG_ENOTFOUND, "base commit %s of run '%s' is not in repository '%s'",
		    p[0].base, run, o->repo);
		goto out;
	}
	/*
	 * Every patch applied and committed in the store first: a patch that
	 * does not apply stops everything before the target is touched.
	 */
	if ((rc = open_store(&s, c)) < 0)
		goto out;
	if (git_commit_lookup(&parent, s->repo, &base) < 0) {
		rc = ag_error_set(AG_ENOTFOUND, "base commit %s of run '%s' is not in the store '%s'",
		    p[0].base, run, s->path);
		goto out;
	}
	for (k = 0; k < n; k++) {
		const char *item = a.run->items[p[k].item].id;
		const char *from = k ? p[k - 1].tree : p[0].base;
		if ((rc = read_patch(&text, s, &a, p[k].item, p[k].blob)) < 0)
			goto out;
		ag_buf_release(&text);
		if ((rc = ag_store_apply(p[k].tree, s, from, p[k].blob)) < 0) {
			snprintf(msg, sizeof(msg), "%s", ag_error_msg());
			rc = ag_error_set(rc, "item '%s' of run '%s': %s", item, run, msg);
			goto out;
		}
		if ((rc = make_commit(&p[k].commit, s, &a, &p[k], parent)) < 0)
			goto out;
		git_commit_free(parent);
		parent = NULL;
		if (git_commit_lookup(&parent, s->repo, &p[k].commit) < 0) {
			rc = ag_error_set(AG_ERROR, "cannot read back commit of item '%s': %s", item,
			    ag_git_msg());
			goto out;
		}
	}
	/* into the target: trees before commits, commits before the branch */
	for (k = 0; k < n; k++) {
		git_commit *cm = NULL;
		if (git_commit_lookup(&cm, s->repo, &p[k].commit) < 0) {
			rc = ag_error_set(AG_ERROR, "cannot read back a commit: %s", ag_git_msg());
			goto out;
		}
		rc = copy_tree(dodb, s, git_commit_tree_id(cm), o->repo, 0);
		git_commit_free(cm);
		if (rc < 0 || (rc = copy_object(dodb, s->odb, &p[k].commit, o->repo)) < 0)
			goto out;
	}
	if ((err = git_reference_create(&ref, dst, refname, &p[n - 1].commit, 0, "agora-apply")) < 0) {
		rc = ag_error_set(err == GIT_EEXISTS ? AG_EEXISTS : AG_ERROR,
		    "cannot create branch '%s' in repository '%s': %s", branch, o->repo, ag_git_msg());
		goto out;
	}
	if (!(done = calloc(n, sizeof(*done)))) {
		rc = ag_error_set(AG_ERROR, "out of memory");
		goto out;
	}
	for (k = 0; k < n; k++) {
		snprintf(done[k].item, sizeof(done[k].item), "%s", a.run->items[p[k].item].id);
		git_oid_tostr(done[k].commit, sizeof(done[k].commit), &p[k].commit);
	}
	*out = done;
	*nout = n;
out:
	ag_buf_release(&text);
	git_commit_free(parent);
	git_reference_free(ref);
	git_odb_free(dodb);
	git_repository_free(dst);
	ag_store_free(s);
	free(p);
	ag_artifacts_release(&a);
	return rc;
}
