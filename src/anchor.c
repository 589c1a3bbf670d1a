/*
 * Anchors: copies of sealed runs' checkpoints kept where this state tree
 * cannot rewrite them. local copies into audit/anchors/ (tier detect);
 * dir writes create-only files under a path on other storage, git pushes
 * a commit to a remote that refuses non-fast-forward pushes, and command
 * hands the checkpoint to a program (tier external).
 *
 * Every attempt leaves a receipt in audit/receipts/<run>/<anchor>.json;
 * audit/pending/<run> lists the runs whose anchors are not all done, and
 * every tick tries those again. Nothing goes into status.jsonl: the run's
 * log is sealed by then.
 */
#include "agora.h"
#include "audit.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "banned.h"

#define RECEIPT_MAX	(64u << 10)	/* a command's stdout kept as its receipt */
#define COMMAND_TIMEOUT_MS	60000

const char *
ag_anchor_tier(const struct ag_anchor *a)
{
	return strcmp(a->kind, "local") == 0 ? "detect" : "external";
}

/* A path of agora.conf, relative to the state directory. */
static int
conf_path(char *out, size_t size, const char *dir, const char *p)
{
	if (p[0] == '/')
		return ag_path(out, size, "%s", p);
	return ag_path(out, size, "%s/%s", dir, p);
}

/* Create file with the note, or find it there with the same bytes. */
static int
put_file(const char *file, const char *note, size_t len)
{
	struct ag_buf have;
	int rc, same;

	rc = ag_create_excl(file, note, len, 0444);
	if (rc != AG_EEXISTS)
		return rc;
	if ((rc = ag_read_file(&have, file, AG_NOTE_MAX + 1)) < 0)
		return rc;
	same = have.len == len && memcmp(have.ptr, note, len) == 0;
	ag_buf_release(&have);
	ag_error_clear();
	if (!same)
		return ag_error_set(AG_EEXISTS, "'%s' exists with other bytes", file);
	return 0;
}

static int
anchor_file(char *out, size_t size, const char *dir, const struct ag_anchor *a, const char *run)
{
	char base[AG_PATH_MAX];
	int rc;

	if (strcmp(a->kind, "local") == 0)
		rc = ag_path(base, sizeof(base), "%s/audit/anchors/%s", dir, a->name);
	else
		rc = conf_path(base, sizeof(base), dir, a->path);
	if (rc < 0)
		return rc;
	return ag_path(out, size, "%s/%s.checkpoint", base, run);
}

static int
put_dir(json_t *receipt, const char *dir, const struct ag_anchor *a, const char *run,
    const char *note, size_t len)
{
	char file[AG_PATH_MAX];
	char *slash;
	int rc;

	if ((rc = anchor_file(file, sizeof(file), dir, a, run)) < 0)
		return rc;
	slash = strrchr(file, '/');
	*slash = '\0';
	rc = strcmp(a->kind, "local") == 0 ? ag_mkdir_p(file, 0755) : 0;
	if (rc == 0 && !ag_exists(file))
		rc = ag_error_set(AG_ENOTFOUND, "anchor directory '%s' does not exist", file);
	*slash = '/';
	if (rc < 0 || (rc = put_file(file, note, len)) < 0)
		return rc;
	json_object_set_new(receipt, "file", json_string(file));
	return 0;
}

/* ---- git ---- */

struct push_state {
	char error[512];
};

static int
push_update(const char *refname, const char *status, void *data)
{
	struct push_state *p = data;

	if (status)
		snprintf(p->error, sizeof(p->error), "remote refused '%s': %s", refname, status);
	return 0;
}

/* refs/agora/anchors/<name>, the name escaped for a ref */
static void
anchor_ref(char *out, size_t size, const char *name)
{
	size_t n = (size_t)snprintf(out, size, "refs/agora/anchors/");
	const char *p;

	for (p = name; *p && n + 4 < size; p++) {
		unsigned char c = (unsigned char)*p;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_')
			out[n++] = (char)c;
		else
			n += (size_t)snprintf(out + n, size - n, "%%%02X", c);
	}
	out[n] = '\0';
}

static int
remote_url(char *out, size_t size, const char *dir, const char *remote)
{
	if (strstr(remote, "://") || strchr(remote, '@') || remote[0] == '/')
		return ag_path(out, size, "%s", remote);
	return ag_path(out, size, "%s/%s", dir, remote);
}

static int
put_git(json_t *receipt, const char *dir, const struct ag_anchor *a, const char *run,
    const char *note, size_t len)
{
	char path[AG_PATH_MAX], url[AG_PATH_MAX], local[AG_PATH_MAX + 64], spec[2 * AG_PATH_MAX];
	char file[AG_ID_MAX + 16], msg[AG_ID_MAX + 64], hex[GIT_OID_HEXSZ + 1];
	struct ag_store *st = NULL;
	git_remote *remote = NULL;
	git_commit *parent = NULL;
	git_tree *ptree = NULL, *tree = NULL;
	git_treebuilder *tb = NULL;
	git_signature *sig = NULL;
	git_reference *ref = NULL;
	git_oid blob, tid, cid, pid;
	const git_tree_entry *have;
	git_fetch_options fo;
	git_push_options po;
	struct push_state ps = { "" };
	char *refspecs[1];
	git_strarray arr = { refspecs, 1 };
	const git_commit *parents[1];
	int rc = 0, has_parent = 0;

	git_fetch_options_init(&fo, GIT_FETCH_OPTIONS_VERSION);
	git_push_options_init(&po, GIT_PUSH_OPTIONS_VERSION);
	snprintf(file, sizeof(file), "%s.checkpoint", run);
	anchor_ref(local, sizeof(local), a->name);
	if ((rc = ag_path(path, sizeof(path), "%s/objects.git", dir)) < 0 ||
	    (rc = remote_url(url, sizeof(url), dir, a->remote)) < 0 ||
	    (rc = ag_store_open(&st, path)) < 0)
		return rc;
	if (git_remote_create_anonymous(&remote, st->repo, url) < 0) {
		rc = ag_error_set(AG_ERROR, "git remote '%s': %s", url, ag_git_msg());
		goto out;
	}
	/* the remote's tip first: the new commit must fast-forward it */
	snprintf(spec, sizeof(spec), "+%s:%s", a->ref, local);
	refspecs[0] = spec;
	if (git_remote_fetch(remote, &arr, &fo, NULL) < 0) {
		rc = ag_error_set(AG_ERROR, "cannot fetch '%s' from '%s': %s", a->ref, url, ag_git_msg());
		goto out;
	}
	if (git_reference_name_to_id(&pid, st->repo, local) == 0) {
		if (git_commit_lookup(&parent, st->repo, &pid) < 0 ||
		    git_commit_tree(&ptree, parent) < 0) {
			rc = ag_error_set(AG_ERROR, "'%s' of '%s': %s", a->ref, url, ag_git_msg());
			goto out;
		}
		has_parent = 1;
	}
	if (git_blob_create_from_buffer(&blob, st->repo, note, len) < 0 ||
	    git_treebuilder_new(&tb, st->repo, ptree) < 0) {
		rc = ag_error_set(AG_ERROR, "git: %s", ag_git_msg());
		goto out;
	}
	if ((have = git_treebuilder_get(tb, file))) {
		/* pushed before a crash, or by an earlier tick */
		if (!git_oid_equal(git_tree_entry_id(have), &blob)) {
			rc = ag_error_set(AG_EEXISTS, "'%s' at '%s' of '%s' has other bytes", file,
			    a->ref, url);
			goto out;
		}
		git_oid_tostr(hex, sizeof(hex), &pid);
		json_object_set_new(receipt, "commit", json_string(hex));
		goto done;
	}
	snprintf(msg, sizeof(msg), "anchor %s\n", file);
	if (git_treebuilder_insert(NULL, tb, file, &blob, GIT_FILEMODE_BLOB) < 0 ||
	    git_treebuilder_write(&tid, tb) < 0 || git_tree_lookup(&tree, st->repo, &tid) < 0 ||
	    git_signature_new(&sig, "agora", "agora@localhost", (git_time_t)(ag_now_ms() / 1000), 0) < 0) {
		rc = ag_error_set(AG_ERROR, "git: %s", ag_git_msg());
		goto out;
	}
	parents[0] = parent;
	if (git_commit_create(&cid, st->repo, NULL, sig, sig, NULL, msg, tree,
	    has_parent ? 1 : 0, has_parent ? parents : NULL) < 0 ||
	    git_reference_create(&ref, st->repo, local, &cid, 1, "agora anchor") < 0) {
		rc = ag_error_set(AG_ERROR, "git: %s", ag_git_msg());
		goto out;
	}
	/* no "+": a remote that moved meanwhile makes this fail, and the next tick retries */
	snprintf(spec, sizeof(spec), "%s:%s", local, a->ref);
	po.callbacks.push_update_reference = push_update;
	po.callbacks.payload = &ps;
	if (git_remote_push(remote, &arr, &po) < 0) {
		rc = ag_error_set(AG_ERROR, "cannot push to '%s': %s", url, ag_git_msg());
		goto out;
	}
	if (ps.error[0]) {
		rc = ag_error_set(AG_ERROR, "cannot push to '%s': %s", url, ps.error);
		goto out;
	}
	git_oid_tostr(hex, sizeof(hex), &cid);
	json_object_set_new(receipt, "commit", json_string(hex));
done:
	json_object_set_new(receipt, "remote", json_string(url));
	json_object_set_new(receipt, "ref", json_string(a->ref));
out:
	git_reference_free(ref);
	git_signature_free(sig);
	git_treebuilder_free(tb);
	git_tree_free(tree);
	git_tree_free(ptree);
	git_commit_free(parent);
	git_remote_free(remote);
	ag_store_free(st);
	return rc;
}

/* ---- command ---- */

static int
put_command(json_t *receipt, const char *dir, const struct ag_anchor *a, const char *run,
    const char *note, size_t len)
{
	static const char *const keep[] = { "PATH", "HOME", "LANG", "LC_ALL", "TZ", NULL };
	char envbuf[8][AG_PATH_MAX + 32];
	char *envp[9];
	int in[2] = { -1, -1 }, outp[2] = { -1, -1 }, status = 0, rc = 0, ne = 0, i;
	struct ag_buf got;
	int64_t deadline;
	pid_t pid;

	ag_buf_init(&got, RECEIPT_MAX);
	for (i = 0; keep[i]; i++) {
		const char *v = getenv(keep[i]);
		if (v)
			snprintf(envbuf[ne], sizeof(envbuf[ne]), "%s=%s", keep[i], v), ne++;
	}
	snprintf(envbuf[ne++], sizeof(envbuf[0]), "AGORA_DIR=%s", dir);
	snprintf(envbuf[ne++], sizeof(envbuf[0]), "AGORA_RUN=%s", run);
	snprintf(envbuf[ne++], sizeof(envbuf[0]), "AGORA_ANCHOR=%s", a->name);
	for (i = 0; i < ne; i++)
		envp[i] = envbuf[i];
	envp[ne] = NULL;
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(outp, O_CLOEXEC) < 0) {
		rc = ag_error_sys(AG_ERROR, "cannot make a pipe");
		goto out;
	}
	if ((pid = fork()) < 0) {
		rc = ag_error_sys(AG_ERROR, "cannot fork");
		goto out;
	}
	if (pid == 0) {
		setsid();
		signal(SIGPIPE, SIG_DFL);
		if (dup2(in[0], 0) < 0 || dup2(outp[1], 1) < 0 || chdir(dir) < 0)
			_exit(127);
		execle("/bin/sh", "sh", "-c", a->command, (char *)NULL, envp);
		_exit(127);
	}
	close(in[0]);
	close(outp[1]);
	in[0] = outp[1] = -1;
	/* a note is far smaller than a pipe's buffer: this never blocks */
	if (ag_write_all(in[1], note, len) < 0) {
		/* the command need not read it all */
	}
	close(in[1]);
	in[1] = -1;
	deadline = ag_mono_ms() + COMMAND_TIMEOUT_MS;
	for (;;) {
		struct pollfd p = { outp[0], POLLIN, 0 };
		char buf[4096];
		int64_t left = deadline - ag_mono_ms();
		ssize_t n;
		if (left <= 0 || poll(&p, 1, (int)left) == 0) {
			kill(-pid, SIGKILL);
			waitpid(pid, &status, 0);
			rc = ag_error_set(AG_ERROR, "anchor command ran longer than %d seconds",
			    COMMAND_TIMEOUT_MS / 1000);
			goto out;
		}
		n = read(outp[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (got.len + (size_t)n <= RECEIPT_MAX)
			ag_buf_put(&got, buf, (size_t)n);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	json_object_set_new(receipt, "receipt", json_stringn_nocheck(got.ptr ? got.ptr : "", got.len));
	if (WIFSIGNALED(status))
		rc = ag_error_set(AG_ERROR, "anchor command killed by signal %d", WTERMSIG(status));
	else if (WEXITSTATUS(status) != 0)
		rc = ag_error_set(AG_ERROR, "anchor command exited %d", WEXITSTATUS(status));
out:
	for (i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (outp[i] >= 0)
			close(outp[i]);
	}
	ag_buf_release(&got);
	return rc;
}

/* ---- receipts ---- */

static int
receipt_path(char *out, size_t size, const char *dir, const char *run, const char *anchor)
{
	return ag_path(out, size, "%s/audit/receipts/%s/%s.json", dir, run, anchor);
}

int
ag_anchor_receipt(json_t **out, const char *dir, const char *run, const char *anchor)
{
	char path[AG_PATH_MAX];
	struct ag_buf b;
	int rc;

	*out = NULL;
	if ((rc = receipt_path(path, sizeof(path), dir, run, anchor)) < 0 ||
	    (rc = ag_read_file(&b, path, 1u << 20)) < 0)
		return rc;
	*out = json_loadb(b.ptr, b.len, 0, NULL);
	ag_buf_release(&b);
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return ag_error_set(AG_EINVALID, "'%s' is not a JSON object", path);
	}
	return 0;
}

int
ag_anchor_put(const char *dir, const struct ag_anchor *a, const char *run)
{
	char path[AG_PATH_MAX], at[AG_TIME_LEN], sha[65];
	struct ag_buf note;
	json_t *receipt = NULL, *old = NULL;
	int64_t attempts = 0;
	char *text = NULL;
	int rc;

	if ((rc = ag_path(path, sizeof(path), "%s/runs/%s/checkpoint", dir, run)) < 0 ||
	    (rc = ag_read_file(&note, path, AG_NOTE_MAX)) < 0)
		return rc;
	if ((rc = ag_sha256_hex(sha, note.ptr, note.len)) < 0)
		goto out;
	if (ag_anchor_receipt(&old, dir, run, a->name) == 0) {
		const char *was = json_string_value(json_object_get(old, "checkpoint"));
		if (json_is_true(json_object_get(old, "ok")) && was && strcmp(was, sha) == 0)
			goto out;	/* done already */
		attempts = json_integer_value(json_object_get(old, "attempts"));
		/* this one adds one to it: a receipt edited by hand may say INT64_MAX */
		if (attempts < 0 || attempts == INT64_MAX)
			attempts = 0;
	}
	ag_error_clear();
	ag_time_fmt(at, ag_now_ms());
	receipt = json_object();
	json_object_set_new(receipt, "anchor", json_string(a->name));
	json_object_set_new(receipt, "kind", json_string(a->kind));
	json_object_set_new(receipt, "tier", json_string(ag_anchor_tier(a)));
	json_object_set_new(receipt, "run", json_string(run));
	json_object_set_new(receipt, "checkpoint", json_string(sha));
	json_object_set_new(receipt, "at", json_string(at));
	json_object_set_new(receipt, "attempts", json_integer(attempts + 1));
	if (strcmp(a->kind, "local") == 0 || strcmp(a->kind, "dir") == 0)
		rc = put_dir(receipt, dir, a, run, note.ptr, note.len);
	else if (strcmp(a->kind, "git") == 0)
		rc = put_git(receipt, dir, a, run, note.ptr, note.len);
	else
		rc = put_command(receipt, dir, a, run, note.ptr, note.len);
	json_object_set_new(receipt, "ok", json_boolean(rc == 0));
	if (rc < 0)
		json_object_set_new(receipt, "detail", json_string(ag_error_msg()));
	else
		ag_crash_point("anchor-put");
	{
		int rc2;
		char *slash;
		if ((rc2 = receipt_path(path, sizeof(path), dir, run, a->name)) < 0)
			goto fail;
		slash = strrchr(path, '/');
		*slash = '\0';
		rc2 = ag_mkdir_p(path, 0755);
		*slash = '/';
		if (rc2 < 0)
			goto fail;
		/* written after a failure too: the failure is recorded, not dropped */
		if (!(text = ag_json_line(receipt))) {
			rc2 = ag_error_set(AG_ERROR, "out of memory");
			goto fail;
		}
		if (rc < 0) {
			/* keep the anchor's message, not the receipt's */
			char why[1024];
			snprintf(why, sizeof(why), "%s", ag_error_msg());
			rc2 = ag_write_atomic(path, text, strlen(text), 0644);
			ag_error_set(rc, "anchor '%s' of run '%s' failed: %s", a->name, run, why);
			if (rc2 < 0)
				rc = rc2;
			goto out;
		}
		rc2 = ag_write_atomic(path, text, strlen(text), 0644);
fail:
		if (rc2 < 0)
			rc = rc2;
	}
out:
	free(text);
	json_decref(receipt);
	json_decref(old);
	ag_buf_release(&note);
	return rc;
}

int
ag_anchor_run(const struct ag_conf *c, const char *run, struct ag_buf *failures)
{
	size_t i;
	int rc, failed = 0;

	for (i = 0; i < c->nanchors; i++) {
		if ((rc = ag_anchor_put(c->dir, &c->anchors[i], run)) < 0) {
			failed++;
			if (failures)
				ag_buf_printf(failures, "%s\n", ag_error_msg());
		}
	}
	return failed;
}

int
ag_anchor_read(struct ag_buf *out, const char *dir, const struct ag_anchor *a, const char *run)
{
	char file[AG_PATH_MAX], url[AG_PATH_MAX], name[AG_ID_MAX + 16];
	git_repository *repo = NULL;
	git_object *obj = NULL;
	git_tree_entry *e = NULL;
	git_blob *blob = NULL;
	int rc = 0;

	ag_buf_init(out, AG_NOTE_MAX);
	if (strcmp(a->kind, "local") == 0 || strcmp(a->kind, "dir") == 0) {
		if ((rc = anchor_file(file, sizeof(file), dir, a, run)) < 0)
			return rc;
		return ag_read_file(out, file, AG_NOTE_MAX);
	}
	if (strcmp(a->kind, "git") != 0)
		return ag_error_set(AG_ENOTFOUND, "anchor '%s' of kind %s keeps no copy agora can read",
		    a->name, a->kind);
	if ((rc = remote_url(url, sizeof(url), dir ? dir : ".", a->remote)) < 0)
		return rc;
	ag_git_setup();
	snprintf(name, sizeof(name), "%s.checkpoint", run);
	if (git_repository_open_bare(&repo, url) < 0) {
		rc = ag_error_set(AG_ENOTFOUND, "cannot open git anchor '%s' (a local path is needed): %s",
		    url, ag_git_msg());
		goto out;
	}
	if (git_revparse_single(&obj, repo, a->ref) < 0) {
		rc = ag_error_set(AG_ENOTFOUND, "'%s' has no '%s'", url, a->ref);
		goto out;
	}
	{
		git_commit *cm = NULL;
		git_tree *t = NULL;
		if (git_commit_lookup(&cm, repo, git_object_id(obj)) < 0 || git_commit_tree(&t, cm) < 0 ||
		    git_tree_entry_bypath(&e, t, name) < 0 ||
		    git_blob_lookup(&blob, repo, git_tree_entry_id(e)) < 0) {
			rc = ag_error_set(AG_ENOTFOUND, "'%s' at '%s' of '%s': %s", name, a->ref, url,
			    ag_git_msg());
		} else {
			rc = ag_buf_put(out, git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob));
		}
		git_tree_free(t);
		git_commit_free(cm);
	}
out:
	git_blob_free(blob);
	git_tree_entry_free(e);
	git_object_free(obj);
	git_repository_free(repo);
	return rc;
}
