/*
 * The object store, objects.git: base commits fetched from the configured
 * repositories, worktrees checked out of them, and what a worker changed
 * captured back as a tree, a patch blob and a commit.
 *
 * Everything goes through libgit2's object layer. Checkout and capture
 * walk trees and directories here, byte for byte, so that no filter,
 * attribute, end-of-line rule, hook or configuration of any repository is
 * ever consulted: a hostile repository's .gitattributes filter drivers,
 * core.fsmonitor or core.hooksPath have nothing to run through. Neither
 * libgit2 nor this file ever starts a process.
 */
#include "agora.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#include "banned.h"

/* A relative path followed through a walk, for messages. */
struct walk {
	const char *root;
	char path[AG_PATH_MAX];
	size_t len;
	int depth;
};

const char *
ag_git_msg(void)
{
	const git_error *e = git_error_last();

	return e && e->message ? e->message : "unknown error";
}

void
ag_git_setup(void)
{
	static int done;

	if (done)
		return;
	done = 1;
	git_libgit2_init();
	git_libgit2_opts(GIT_OPT_ENABLE_FSYNC_GITDIR, 1);
	/*
	 * No system, global or XDG git configuration: what agora does with
	 * git must not depend on someone's ~/.gitconfig (core.autocrlf,
	 * core.attributesFile, diff settings and the like).
	 */
	git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, GIT_CONFIG_LEVEL_SYSTEM, "");
	git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, GIT_CONFIG_LEVEL_XDG, "");
	git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, GIT_CONFIG_LEVEL_GLOBAL, "");
	git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, GIT_CONFIG_LEVEL_PROGRAMDATA, "");
}

int
ag_store_open(struct ag_store **out, const char *path)
{
	struct ag_store *s;
	struct stat st;
	int rc = 0;

	*out = NULL;
	ag_git_setup();
	if (stat(path, &st) < 0)
		return ag_error_sys(AG_ERROR, "cannot open object store '%s'", path);
	if (!(s = calloc(1, sizeof(*s))) || !(s->path = strdup(path))) {
		free(s);
		return ag_error_set(AG_ERROR, "out of memory");
	}
	if (git_repository_open_bare(&s->repo, path) < 0) {
		rc = ag_error_set(AG_ERROR, "cannot open object store '%s': %s", path, ag_git_msg());
		goto out;
	}
	if (git_repository_odb(&s->odb, s->repo) < 0) {
		rc = ag_error_set(AG_ERROR, "cannot open object store '%s': %s", path, ag_git_msg());
		goto out;
	}
	*out = s;
	s = NULL;
out:
	ag_store_free(s);
	return rc;
}

void
ag_store_free(struct ag_store *s)
{
	if (!s)
		return;
	git_odb_free(s->odb);
	git_repository_free(s->repo);
	free(s->path);
	free(s);
}

const char *
ag_store_path(const struct ag_store *s)
{
	return s->path;
}

/* ---- object ids ---- */

static int
parse_oid(git_oid *out, const char *hex, const char *what)
{
	size_t i;

	for (i = 0; hex[i]; i++)
		if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
			break;
	if (i != GIT_OID_HEXSZ || hex[i] || git_oid_fromstr(out, hex) < 0)
		return ag_error_set(AG_EINVALID, "invalid %s id '%s'", what, ag_quote(hex, strlen(hex)));
	return 0;
}

static void
oid_hex(char out[AG_OID_HEX], const git_oid *id)
{
	git_oid_tostr(out, AG_OID_HEX, id);
}

/* The tree of a commit or tree id in the store. */
static int
lookup_tree(git_tree **out, struct ag_store *s, const char *treeish)
{
	git_object *obj = NULL;
	git_oid id;
	int rc, err;

	*out = NULL;
	if ((rc = parse_oid(&id, treeish, "tree or commit")) < 0)
		return rc;
	if ((err = git_object_lookup(&obj, s->repo, &id, GIT_OBJECT_ANY)) < 0) {
		rc = err == GIT_ENOTFOUND ?
		    ag_error_set(AG_ENOTFOUND, "object '%s' is not in the store '%s'", treeish, s->path) :
		    ag_error_set(AG_ERROR, "cannot read object '%s' in '%s': %s", treeish, s->path, ag_git_msg());
		goto out;
	}
	if (git_object_peel((git_object **)out, obj, GIT_OBJECT_TREE) < 0)
		rc = ag_error_set(AG_EINVALID, "object '%s' in '%s' is neither a tree nor a commit",
		    treeish, s->path);
out:
	git_object_free(obj);
	return rc;
}

/*
 * A run or item id as a ref name component. Ids may hold ':' and '..',
 * or end in '.' or '.lock', which git refuses in ref names; those bytes
 * are written %XX. Other ids are left as they are.
 */
static int
ref_component(char *out, size_t size, const char *id)
{
	size_t i, n = 0, len = strlen(id);

	for (i = 0; i < len; i++) {
		int enc = id[i] == ':' || id[i] == '%' ||
		    (id[i] == '.' && (i + 1 == len || id[i + 1] == '.' || strcmp(id + i, ".lock") == 0));
		if (n + 4 > size)
			return ag_error_set(AG_EINVALID, "id '%s' is too long for a ref name",
			    ag_quote(id, len));
		if (enc) {
			snprintf(out + n, 4, "%%%02X", (unsigned char)id[i]);
			n += 3;
		} else {
			out[n++] = id[i];
		}
	}
	out[n] = '\0';
	return 0;
}

int
ag_store_run_ref(char *out, size_t size, const char *run, const char *item)
{
	char r[AG_ID_MAX * 3 + 1], it[AG_ID_MAX * 3 + 1];
	int rc, valid = 0;

	if ((rc = ref_component(r, sizeof(r), run)) < 0 ||
	    (rc = ref_component(it, sizeof(it), item)) < 0 ||
	    (rc = ag_path(out, size, "refs/agora/runs/%s/%s", r, it)) < 0)
		return rc;
	if (git_reference_name_is_valid(&valid, out) < 0 || !valid)
		return ag_error_set(AG_EINVALID, "'%s' is not a valid ref name", ag_quote(out, strlen(out)));
	return 0;
}

/* ---- bases ---- */

int
ag_store_import_base(char out[AG_OID_HEX], struct ag_store *s, const char *repo, const char *rev)
{
	char abs[PATH_MAX], hex[AG_OID_HEX], refname[128], spec[256];
	git_repository *src = NULL;
	git_object *obj = NULL;
	git_commit *commit = NULL;
	git_reference *ref = NULL;
	git_remote *remote = NULL;
	git_fetch_options fo;
	git_strarray specs;
	char *specv[1];
	git_oid id;
	int rc = 0, err, lockfd = -1;

	out[0] = '\0';
	/*
	 * An absolute path: libgit2 then takes its local transport, which
	 * reads the objects in this process and starts no git-upload-pack.
	 */
	if (!realpath(repo, abs))
		return ag_error_sys(AG_ENOTFOUND, "cannot open repository '%s'", repo);
	if (git_repository_open_ext(&src, abs, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL) < 0) {
		rc = ag_error_set(AG_ENOTFOUND, "cannot open repository '%s': %s", repo, ag_git_msg());
		goto out;
	}
	if ((err = git_revparse_single(&obj, src, rev)) < 0) {
		if (err == GIT_ENOTFOUND || err == GIT_EINVALIDSPEC || err == GIT_EAMBIGUOUS)
			rc = ag_error_set(AG_ENOTFOUND, "unknown base '%s' in repository '%s'",
			    ag_quote(rev, strlen(rev)), repo);
		else
			rc = ag_error_set(AG_ERROR, "cannot resolve base '%s' in repository '%s': %s",
			    ag_quote(rev, strlen(rev)), repo, ag_git_msg());
		goto out;
	}
	if (git_object_peel((git_object **)&commit, obj, GIT_OBJECT_COMMIT) < 0) {
		rc = ag_error_set(AG_EINVALID, "base '%s' in repository '%s' is not a commit",
		    ag_quote(rev, strlen(rev)), repo);
		goto out;
	}
	git_oid_cpy(&id, git_commit_id(commit));
	oid_hex(hex, &id);
	snprintf(refname, sizeof(refname), "refs/agora/bases/%s", hex);
	if (git_reference_lookup(&ref, s->repo, refname) == 0 && git_reference_target(ref) &&
	    git_oid_equal(git_reference_target(ref), &id))
		goto done;	/* fetched before, with its history */
	/*
	 * Attempts that start together may want the same base: one fetches
	 * it, the others wait and find it there, instead of failing on the
	 * ref's lock file.
	 */
	git_reference_free(ref);
	ref = NULL;
	if ((rc = ag_path(spec, sizeof(spec), "%s/agora-fetch.lock", s->path)) < 0 ||
	    (rc = ag_lock_open(&lockfd, spec, 0)) < 0)
		goto out;
	if (git_reference_lookup(&ref, s->repo, refname) == 0 && git_reference_target(ref) &&
	    git_oid_equal(git_reference_target(ref), &id))
		goto done;
	/*
	 * Fetch the commit with its history into the store, under a ref that
	 * keeps it: the run no longer depends on the source repository.
	 */
	snprintf(spec, sizeof(spec), "+%s:%s", hex, refname);
	specv[0] = spec;
	specs.strings = specv;
	specs.count = 1;
	git_fetch_options_init(&fo, GIT_FETCH_OPTIONS_VERSION);
	fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
	fo.update_fetchhead = 0;
	if (git_remote_create_anonymous(&remote, s->repo, abs) < 0 ||
	    git_remote_fetch(remote, &specs, &fo, NULL) < 0) {
		rc = ag_error_set(AG_ERROR, "cannot fetch base '%s' (%s) of repository '%s' into '%s': %s",
		    ag_quote(rev, strlen(rev)), hex, repo, s->path, ag_git_msg());
		goto out;
	}
	git_reference_free(ref);
	ref = NULL;
	if (git_reference_lookup(&ref, s->repo, refname) < 0 || !git_reference_target(ref) ||
	    !git_oid_equal(git_reference_target(ref), &id)) {
		rc = ag_error_set(AG_ERROR, "fetching base '%s' of repository '%s' did not set '%s' in '%s'",
		    ag_quote(rev, strlen(rev)), repo, refname, s->path);
		goto out;
	}
done:
	memcpy(out, hex, AG_OID_HEX);
out:
	if (lockfd >= 0)
		close(lockfd);
	git_remote_free(remote);
	git_reference_free(ref);
	git_commit_free(commit);
	git_object_free(obj);
	git_repository_free(src);
	return rc;
}

/* ---- walks ---- */

static const char *
walk_rel(const struct walk *w)
{
	return ag_quote(w->path, w->len);
}

static int
walk_push(struct walk *w, const char *name, size_t *saved)
{
	size_t n = strlen(name);

	*saved = w->len;
	if (w->len + n + 2 > sizeof(w->path))
		return ag_error_set(AG_EINVALID, "path '%s/%s' under '%s' is too long",
		    walk_rel(w), ag_quote(name, n), w->root);
	if (w->len)
		w->path[w->len++] = '/';
	memcpy(w->path + w->len, name, n);
	w->len += n;
	w->path[w->len] = '\0';
	return 0;
}

static void
walk_pop(struct walk *w, size_t saved)
{
	w->len = saved;
	w->path[saved] = '\0';
}

/* A directory entry name that a tree may hold and a checkout may write. */
static int
safe_name(const char *name)
{
	return name[0] && strcmp(name, ".") != 0 && strcmp(name, "..") != 0 &&
	    !strchr(name, '/') && strcasecmp(name, ".git") != 0;
}

/* ---- checkout ---- */

static int
write_file(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
    const struct walk *w)
{
	int fd, rc = 0;

	fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return ag_error_sys(AG_ERROR, "cannot create '%s/%s'", w->root, walk_rel(w));
	/* the exact mode, whatever the umask */
	if (ag_write_all(fd, data, len) < 0 || fchmod(fd, mode) < 0)
		rc = ag_error_sys(AG_ERROR, "cannot write '%s/%s'", w->root, walk_rel(w));
	if (close(fd) < 0 && rc == 0)
		rc = ag_error_sys(AG_ERROR, "cannot write '%s/%s'", w->root, walk_rel(w));
	return rc;
}

static int
checkout_tree(struct ag_store *s, const git_tree *tree, int dirfd, struct walk *w)
{
	size_t i, n = git_tree_entrycount(tree), saved;
	int rc = 0;

	if (++w->depth > AG_TREE_DEPTH_MAX)
		return ag_error_set(AG_EINVALID, "'%s/%s' is nested deeper than %d directories",
		    w->root, walk_rel(w), AG_TREE_DEPTH_MAX);
	for (i = 0; i < n && rc == 0; i++) {
		const git_tree_entry *e = git_tree_entry_byindex(tree, i);
		const char *name = git_tree_entry_name(e);
		git_filemode_t mode = git_tree_entry_filemode(e);
		git_blob *blob = NULL;
		git_tree *sub = NULL;
		int fd = -1;

		if (!safe_name(name))
			return ag_error_set(AG_EINVALID, "refusing tree entry '%s' in '%s' of '%s': "
			    "it would escape the directory", ag_quote(name, strlen(name)),
			    w->len ? walk_rel(w) : ".", s->path);
		if ((rc = walk_push(w, name, &saved)) < 0)
			return rc;
		switch (mode) {
		case GIT_FILEMODE_BLOB:
		case GIT_FILEMODE_BLOB_EXECUTABLE:
			if (git_blob_lookup(&blob, s->repo, git_tree_entry_id(e)) < 0) {
				rc = ag_error_set(AG_ERROR, "cannot read the blob of '%s' in '%s': %s",
				    walk_rel(w), s->path, ag_git_msg());
				break;
			}
			rc = write_file(dirfd, name, git_blob_rawcontent(blob),
			    (size_t)git_blob_rawsize(blob),
			    mode == GIT_FILEMODE_BLOB_EXECUTABLE ? 0755 : 0644, w);
			break;
		case GIT_FILEMODE_LINK: {
			const char *target;
			size_t len;
			char *t;
			if (git_blob_lookup(&blob, s->repo, git_tree_entry_id(e)) < 0) {
				rc = ag_error_set(AG_ERROR, "cannot read the blob of '%s' in '%s': %s",
				    walk_rel(w), s->path, ag_git_msg());
				break;
			}
			target = git_blob_rawcontent(blob);
			len = (size_t)git_blob_rawsize(blob);
			if (len == 0 || len >= AG_PATH_MAX || memchr(target, '\0', len)) {
				rc = ag_error_set(AG_EINVALID, "symbolic link '%s' in '%s' has an invalid target",
				    walk_rel(w), s->path);
				break;
			}
			if (!(t = strndup(target, len))) {
				rc = ag_error_set(AG_ERROR, "out of memory");
				break;
			}
			if (symlinkat(t, dirfd, name) < 0)
				rc = ag_error_sys(AG_ERROR, "cannot create symbolic link '%s/%s'", w->root,
				    walk_rel(w));
			free(t);
			break;
		}
		case GIT_FILEMODE_TREE:
			if (git_tree_lookup(&sub, s->repo, git_tree_entry_id(e)) < 0) {
				rc = ag_error_set(AG_ERROR, "cannot read the tree of '%s' in '%s': %s",
				    walk_rel(w), s->path, ag_git_msg());
				break;
			}
			if (mkdirat(dirfd, name, 0755) < 0 ||
			    (fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
				rc = ag_error_sys(AG_ERROR, "cannot create directory '%s/%s'", w->root,
				    walk_rel(w));
				break;
			}
			rc = checkout_tree(s, sub, fd, w);
			close(fd);
			break;
		case GIT_FILEMODE_COMMIT:
			/* a submodule: an empty directory, as git leaves one not initialised */
			if (mkdirat(dirfd, name, 0755) < 0)
				rc = ag_error_sys(AG_ERROR, "cannot create directory '%s/%s'", w->root,
				    walk_rel(w));
			break;
		default:
			rc = ag_error_set(AG_EINVALID, "tree entry '%s' in '%s' has an unknown mode %o",
			    walk_rel(w), s->path, (unsigned)mode);
			break;
		}
		git_blob_free(blob);
		git_tree_free(sub);
		walk_pop(w, saved);
	}
	w->depth--;
	return rc;
}

/* Open dir, creating it if missing; it must be empty. */
static int
open_empty_dir(int *out, const char *dir)
{
	struct dirent *e;
	DIR *d;
	int fd;

	*out = -1;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return ag_error_sys(AG_ERROR, "cannot create directory '%s'", dir);
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return ag_error_sys(AG_ERROR, "cannot open directory '%s'", dir);
	if (!(d = fdopendir(dup(fd)))) {
		close(fd);
		return ag_error_sys(AG_ERROR, "cannot read directory '%s'", dir);
	}
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			break;
	closedir(d);
	if (e) {
		close(fd);
		return ag_error_set(AG_EEXISTS, "cannot check out into '%s': the directory is not empty", dir);
	}
	*out = fd;
	return 0;
}

int
ag_store_checkout(struct ag_store *s, const char *treeish, const char *dir)
{
	struct walk w = { .root = dir };
	git_tree *tree = NULL;
	int fd = -1, rc;

	if ((rc = lookup_tree(&tree, s, treeish)) < 0 || (rc = open_empty_dir(&fd, dir)) < 0)
		goto out;
	rc = checkout_tree(s, tree, fd, &w);
out:
	if (fd >= 0)
		close(fd);
	git_tree_free(tree);
	return rc;
}

/* ---- capture ---- */

/* A regular file's bytes, streamed into the object database. */
static int
blob_from_fd(git_oid *out, struct ag_store *s, int fd, uint64_t size, const struct walk *w)
{
	git_odb_stream *st = NULL;
	char buf[65536], extra;
	uint64_t left = size;
	ssize_t n;
	int rc = 0;

	if (git_odb_open_wstream(&st, s->odb, size, GIT_OBJECT_BLOB) < 0)
		return ag_error_set(AG_ERROR, "cannot store '%s/%s' in '%s': %s", w->root, walk_rel(w),
		    s->path, ag_git_msg());
	while (left > 0) {
		n = read(fd, buf, left < sizeof(buf) ? (size_t)left : sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = ag_error_sys(AG_ERROR, "cannot read '%s/%s'", w->root, walk_rel(w));
			goto out;
		}
		if (n == 0)
			break;
		if (git_odb_stream_write(st, buf, (size_t)n) < 0) {
			rc = ag_error_set(AG_ERROR, "cannot store '%s/%s' in '%s': %s", w->root,
			    walk_rel(w), s->path, ag_git_msg());
			goto out;
		}
		left -= (uint64_t)n;
	}
	if (left > 0 || read(fd, &extra, 1) != 0) {
		rc = ag_error_set(AG_ERROR, "'%s/%s' changed while it was being captured", w->root,
		    walk_rel(w));
		goto out;
	}
	if (git_odb_stream_finalize_write(out, st) < 0)
		rc = ag_error_set(AG_ERROR, "cannot store '%s/%s' in '%s': %s", w->root, walk_rel(w),
		    s->path, ag_git_msg());
out:
	git_odb_stream_free(st);
	return rc;
}

/*
 * One entry of a directory being captured: *mode is 0 when it adds
 * nothing to the tree (an empty directory).
 */
static int capture_dir(git_oid *out, int *empty, struct ag_store *s, int dfd,
    const git_tree *baseline, struct walk *w);

static int
capture_entry(git_oid *id, git_filemode_t *mode, struct ag_store *s, int dirfd, const char *name,
    const git_tree_entry *was, struct walk *w)
{
	struct stat st;
	int fd = -1, rc = 0;

	*mode = 0;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return ag_error_sys(AG_ERROR, "cannot stat '%s/%s'", w->root, walk_rel(w));
	if (S_ISREG(st.st_mode)) {
		struct stat st2;
		fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			return ag_error_sys(AG_ERROR, "cannot open '%s/%s'", w->root, walk_rel(w));
		if (fstat(fd, &st2) < 0 || !S_ISREG(st2.st_mode)) {
			rc = ag_error_set(AG_ERROR, "'%s/%s' changed while it was being captured",
			    w->root, walk_rel(w));
			goto out;
		}
		if ((rc = blob_from_fd(id, s, fd, (uint64_t)st2.st_size, w)) < 0)
			goto out;
		*mode = (st2.st_mode & S_IXUSR) ? GIT_FILEMODE_BLOB_EXECUTABLE : GIT_FILEMODE_BLOB;
	} else if (S_ISLNK(st.st_mode)) {
		char target[AG_PATH_MAX];
		ssize_t n = readlinkat(dirfd, name, target, sizeof(target));
		if (n < 0)
			return ag_error_sys(AG_ERROR, "cannot read symbolic link '%s/%s'", w->root,
			    walk_rel(w));
		if ((size_t)n >= sizeof(target))
			return ag_error_set(AG_EINVALID, "symbolic link '%s/%s' is too long", w->root,
			    walk_rel(w));
		if (git_blob_create_from_buffer(id, s->repo, target, (size_t)n) < 0)
			return ag_error_set(AG_ERROR, "cannot store '%s/%s' in '%s': %s", w->root,
			    walk_rel(w), s->path, ag_git_msg());
		*mode = GIT_FILEMODE_LINK;
	} else if (S_ISDIR(st.st_mode)) {
		git_tree *sub = NULL;
		int empty = 0;
		fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return ag_error_sys(AG_ERROR, "cannot open directory '%s/%s'", w->root,
			    walk_rel(w));
		if (was && git_tree_entry_filemode(was) == GIT_FILEMODE_TREE &&
		    git_tree_lookup(&sub, s->repo, git_tree_entry_id(was)) < 0) {
			rc = ag_error_set(AG_ERROR, "cannot read the tree of '%s' in '%s': %s",
			    walk_rel(w), s->path, ag_git_msg());
			goto out;
		}
		rc = capture_dir(id, &empty, s, fd, sub, w);
		git_tree_free(sub);
		fd = -1;	/* capture_dir closed it */
		if (rc < 0)
			goto out;
		if (!empty) {
			*mode = GIT_FILEMODE_TREE;
		} else if (was && git_tree_entry_filemode(was) == GIT_FILEMODE_COMMIT) {
			/* the empty directory of a submodule: the submodule is unchanged */
			git_oid_cpy(id, git_tree_entry_id(was));
			*mode = GIT_FILEMODE_COMMIT;
		}
	} else {
		return ag_error_set(AG_EINVALID, "cannot capture '%s/%s': not a regular file, "
		    "directory or symbolic link", w->root, walk_rel(w));
	}
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Build the tree of an open directory (and close it); *empty if it has no entry. */
static int
capture_dir(git_oid *out, int *empty, struct ag_store *s, int dfd, const git_tree *baseline,
    struct walk *w)
{
	git_treebuilder *bld = NULL;
	struct dirent *e;
	DIR *d;
	size_t saved;
	int rc = 0;

	*empty = 1;
	if (!(d = fdopendir(dfd))) {
		rc = ag_error_sys(AG_ERROR, "cannot read directory '%s/%s'", w->root, walk_rel(w));
		close(dfd);
		return rc;
	}
	if (++w->depth > AG_TREE_DEPTH_MAX) {
		rc = ag_error_set(AG_EINVALID, "'%s/%s' is nested deeper than %d directories",
		    w->root, walk_rel(w), AG_TREE_DEPTH_MAX);
		goto out;
	}
	if (git_treebuilder_new(&bld, s->repo, NULL) < 0) {
		rc = ag_error_set(AG_ERROR, "cannot build a tree in '%s': %s", s->path, ag_git_msg());
		goto out;
	}
	for (;;) {
		git_filemode_t mode;
		git_oid id;
		errno = 0;
		if (!(e = readdir(d))) {
			if (errno)
				rc = ag_error_sys(AG_ERROR, "cannot read directory '%s/%s'", w->root,
				    walk_rel(w));
			break;
		}
		/* git cannot hold a .git entry: a worker's repository stays out */
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
		    strcmp(e->d_name, ".git") == 0)
			continue;
		if ((rc = walk_push(w, e->d_name, &saved)) < 0)
			break;
		rc = capture_entry(&id, &mode, s, dirfd(d), e->d_name,
		    baseline ? git_tree_entry_byname(baseline, e->d_name) : NULL, w);
		if (rc == 0 && mode && git_treebuilder_insert(NULL, bld, e->d_name, &id, mode) < 0)
			rc = ag_error_set(AG_EINVALID, "cannot capture '%s/%s': %s", w->root,
			    walk_rel(w), ag_git_msg());
		walk_pop(w, saved);
		if (rc < 0)
			break;
	}
	if (rc == 0 && git_treebuilder_entrycount(bld) > 0) {
		*empty = 0;
		if (git_treebuilder_write(out, bld) < 0)
			rc = ag_error_set(AG_ERROR, "cannot write the tree of '%s/%s' in '%s': %s",
			    w->root, walk_rel(w), s->path, ag_git_msg());
	}
	w->depth--;
out:
	git_treebuilder_free(bld);
	closedir(d);
	return rc;
}

int
ag_store_tree_from_dir(char out[AG_OID_HEX], struct ag_store *s, const char *dir,
    const char *baseline)
{
	struct walk w = { .root = dir };
	git_tree *base = NULL;
	git_treebuilder *bld = NULL;
	git_oid id;
	int fd, empty = 0, rc;

	out[0] = '\0';
	if (baseline && (rc = lookup_tree(&base, s, baseline)) < 0)
		return rc;
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		rc = ag_error_sys(AG_ERROR, "cannot open directory '%s'", dir);
		goto out;
	}
	if ((rc = capture_dir(&id, &empty, s, fd, base, &w)) < 0)
		goto out;
	if (empty) {
		/* a directory with nothing in it: the empty tree */
		if (git_treebuilder_new(&bld, s->repo, NULL) < 0 || git_treebuilder_write(&id, bld) < 0) {
			rc = ag_error_set(AG_ERROR, "cannot write a tree in '%s': %s", s->path, ag_git_msg());
			goto out;
		}
	}
	oid_hex(out, &id);
out:
	git_treebuilder_free(bld);
	git_tree_free(base);
	return rc;
}

/* The patch from one tree to another, rendered as git diff --binary would. */
static int
render_patch(git_buf *out, int *changed, struct ag_store *s, git_tree *from, git_tree *to)
{
	git_diff_options dopts;
	git_diff_find_options fopts;
	git_diff *diff = NULL;
	int rc = 0;

	*changed = 0;
	git_diff_options_init(&dopts, GIT_DIFF_OPTIONS_VERSION);
	/* binary files as a real binary patch; full ids, so git apply can check them */
	dopts.flags = GIT_DIFF_SHOW_BINARY;
	dopts.id_abbrev = GIT_OID_HEXSZ;
	git_diff_find_options_init(&fopts, GIT_DIFF_FIND_OPTIONS_VERSION);
	fopts.flags = GIT_DIFF_FIND_RENAMES;
	if (git_diff_tree_to_tree(&diff, s->repo, from, to, &dopts) < 0 ||
	    git_diff_find_similar(diff, &fopts) < 0) {
		rc = ag_error_set(AG_ERROR, "cannot diff trees in '%s': %s", s->path, ag_git_msg());
		goto out;
	}
	if (git_diff_num_deltas(diff) == 0)
		goto out;
	if (git_diff_to_buf(out, diff, GIT_DIFF_FORMAT_PATCH) < 0) {
		rc = ag_error_set(AG_ERROR, "cannot render a patch in '%s': %s", s->path, ag_git_msg());
		goto out;
	}
	*changed = 1;
out:
	git_diff_free(diff);
	return rc;
}

int
ag_store_capture(struct ag_capture *out, struct ag_store *s, const char *dir,
    const struct ag_capture_opts *o)
{
	char refname[AG_PATH_MAX], msg[AG_ID_MAX * 2 + 64];
	git_buf patch = { 0 };
	git_commit *base = NULL;
	git_tree *from = NULL, *to = NULL;
	git_signature *sig = NULL;
	git_reference *ref = NULL;
	git_oid id, blob, commit;
	int rc, changed = 0;

	memset(out, 0, sizeof(*out));
	if ((rc = parse_oid(&id, o->base, "base commit")) < 0 ||
	    (rc = ag_store_run_ref(refname, sizeof(refname), o->run, o->item)) < 0)
		return rc;
	if (git_commit_lookup(&base, s->repo, &id) < 0) {
		rc = ag_error_set(AG_ENOTFOUND, "base commit '%s' is not in the store '%s'", o->base,
		    s->path);
		goto out;
	}
	memcpy(out->base, o->base, AG_OID_HEX);
	if (o->baseline) {
		if ((rc = lookup_tree(&from, s, o->baseline)) < 0)
			goto out;
	} else if (git_commit_tree(&from, base) < 0) {
		rc = ag_error_set(AG_ERROR, "cannot read the tree of '%s' in '%s': %s", o->base,
		    s->path, ag_git_msg());
		goto out;
	}
	oid_hex(out->baseline, git_tree_id(from));
	if ((rc = ag_store_tree_from_dir(out->tree, s, dir, out->baseline)) < 0 ||
	    (rc = lookup_tree(&to, s, out->tree)) < 0 ||
	    (rc = render_patch(&patch, &changed, s, from, to)) < 0 || !changed)
		goto out;
	if (patch.size > AG_PATCH_MAX) {
		rc = ag_error_set(AG_EINVALID, "the patch of '%s' is %zu bytes, more than %zu", dir,
		    patch.size, (size_t)AG_PATCH_MAX);
		goto out;
	}
	if (git_blob_create_from_buffer(&blob, s->repo, patch.ptr, patch.size) < 0) {
		rc = ag_error_set(AG_ERROR, "cannot store the patch of '%s' in '%s': %s", dir,
		    s->path, ag_git_msg());
		goto out;
	}
	if ((rc = ag_sha256_hex(out->sha256, patch.ptr, patch.size)) < 0)
		goto out;
	oid_hex(out->patch, &blob);
	out->patch_len = patch.size;
	/* the result as a commit, for git log -p and git fetch */
	snprintf(msg, sizeof(msg), "%s/%s attempt %d\n", o->run, o->item, o->attempt);
	if (git_signature_new(&sig, "agora", "agora@localhost", (git_time_t)(o->time_ms / 1000),
	    0) < 0 ||
	    git_commit_create(&commit, s->repo, NULL, sig, sig, NULL, msg, to, 1,
	    (const git_commit **)&base) < 0 ||
	    git_reference_create(&ref, s->repo, refname, &commit, 1, NULL) < 0) {
		rc = ag_error_set(AG_ERROR, "cannot commit the result of '%s/%s' in '%s': %s", o->run,
		    o->item, s->path, ag_git_msg());
		goto out;
	}
	oid_hex(out->commit, &commit);
out:
	if (rc < 0)
		out->patch[0] = out->sha256[0] = out->commit[0] = '\0';
	git_reference_free(ref);
	git_signature_free(sig);
	git_buf_dispose(&patch);
	git_tree_free(to);
	git_tree_free(from);
	git_commit_free(base);
	return rc;
}

/* ---- patches ---- */

int
ag_store_read_blob(struct ag_buf *out, struct ag_store *s, const char *id, size_t max)
{
	git_blob *blob = NULL;
	git_oid oid;
	int rc, err;

	ag_buf_init(out, max);
	if ((rc = parse_oid(&oid, id, "blob")) < 0)
		return rc;
	if ((err = git_blob_lookup(&blob, s->repo, &oid)) < 0)
		return err == GIT_ENOTFOUND ?
		    ag_error_set(AG_ENOTFOUND, "blob '%s' is not in the store '%s'", id, s->path) :
		    ag_error_set(AG_ERROR, "cannot read blob '%s' in '%s': %s", id, s->path, ag_git_msg());
	if (git_blob_rawsize(blob) > max)
		rc = ag_error_set(AG_EINVALID, "blob '%s' in '%s' is larger than %zu bytes", id,
		    s->path, max);
	else
		rc = ag_buf_put(out, git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob));
	git_blob_free(blob);
	if (rc < 0)
		ag_buf_release(out);
	return rc;
}

/*
 * Whether git_apply_to_tree failed because of the patch and the tree (a
 * hunk that does not match, a file missing or already there), rather than
 * because of the system.
 */
static int
apply_conflict(int err)
{
	const git_error *e = git_error_last();

	if (e && (e->klass == GIT_ERROR_OS || e->klass == GIT_ERROR_NOMEMORY ||
	    e->klass == GIT_ERROR_ODB || e->klass == GIT_ERROR_ZLIB))
		return 0;
	return err == GIT_EAPPLYFAIL || err == GIT_ENOTFOUND || err == GIT_EEXISTS ||
	    err == GIT_ECONFLICT;
}

/* Remember the file being patched, for the message if it does not apply. */
static int
apply_delta(const git_diff_delta *d, void *payload)
{
	*(const char **)payload = d->new_file.path ? d->new_file.path : d->old_file.path;
	return 0;
}

/* Whether the patch deletes path (or renames it away) itself. */
static int
patch_deletes(git_diff *diff, const char *path)
{
	size_t i, n = git_diff_num_deltas(diff);

	for (i = 0; i < n; i++) {
		const git_diff_delta *d = git_diff_get_delta(diff, i);
		if ((d->status == GIT_DELTA_DELETED || d->status == GIT_DELTA_RENAMED) &&
		    d->old_file.path && strcmp(d->old_file.path, path) == 0)
			return 1;
	}
	return 0;
}

/*
 * What git apply checks and git_apply_to_tree does not: a file the patch
 * creates must not be there already (two items that both create it
 * conflict), and a file it deletes must be the one it saw.
 */
static int
check_preimage(struct ag_store *s, git_tree *tree, git_diff *diff, const char *patch)
{
	size_t i, n = git_diff_num_deltas(diff);
	int rc = 0;

	for (i = 0; i < n && rc == 0; i++) {
		const git_diff_delta *d = git_diff_get_delta(diff, i);
		git_tree_entry *e = NULL;
		const char *path;

		if (d->status == GIT_DELTA_ADDED || d->status == GIT_DELTA_RENAMED ||
		    d->status == GIT_DELTA_COPIED) {
			path = d->new_file.path;
			if (!path || (d->status != GIT_DELTA_ADDED && d->old_file.path &&
			    strcmp(d->old_file.path, path) == 0))
				continue;
			if (git_tree_entry_bypath(&e, tree, path) == 0 &&
			    git_tree_entry_type(e) != GIT_OBJECT_TREE && !patch_deletes(diff, path))
				rc = ag_error_set(AG_ECONFLICT, "patch '%s' does not apply: "
				    "it creates '%s', which already exists", patch,
				    ag_quote(path, strlen(path)));
		} else if (d->status == GIT_DELTA_DELETED && d->old_file.path &&
		    d->old_file.id_abbrev >= GIT_OID_HEXSZ) {
			path = d->old_file.path;
			if (git_tree_entry_bypath(&e, tree, path) == 0 &&
			    !git_oid_equal(git_tree_entry_id(e), &d->old_file.id))
				rc = ag_error_set(AG_ECONFLICT, "patch '%s' does not apply: "
				    "it deletes '%s', which has changed", patch,
				    ag_quote(path, strlen(path)));
		}
		git_tree_entry_free(e);
	}
	return rc;
}

int
ag_store_apply(char out[AG_OID_HEX], struct ag_store *s, const char *treeish, const char *patch)
{
	struct ag_buf text;
	git_tree *tree = NULL;
	git_diff *diff = NULL;
	git_index *index = NULL;
	git_apply_options ao;
	const char *at = NULL;
	git_oid id;
	int rc, err;

	/* out may be treeish: it is written last */
	if ((rc = lookup_tree(&tree, s, treeish)) < 0)
		return rc;
	if ((rc = ag_store_read_blob(&text, s, patch, AG_PATCH_MAX)) < 0)
		goto out;
	if (git_diff_from_buffer(&diff, text.ptr ? text.ptr : "", text.len) < 0) {
		rc = ag_error_set(AG_EINVALID, "patch '%s' in '%s' cannot be parsed: %s", patch,
		    s->path, ag_git_msg());
		goto out;
	}
	if ((rc = check_preimage(s, tree, diff, patch)) < 0)
		goto out;
	git_apply_options_init(&ao, GIT_APPLY_OPTIONS_VERSION);
	ao.delta_cb = apply_delta;
	ao.payload = (void *)&at;
	if ((err = git_apply_to_tree(&index, s->repo, tree, diff, &ao)) < 0) {
		rc = ag_error_set(apply_conflict(err) ? AG_ECONFLICT : AG_ERROR,
		    "patch '%s' does not apply%s%s%s: %s", patch, at ? " to '" : "",
		    at ? ag_quote(at, strlen(at)) : "", at ? "'" : "", ag_git_msg());
		goto out;
	}
	if (git_index_write_tree_to(&id, index, s->repo) < 0) {
		rc = ag_error_set(AG_ERROR, "cannot write a tree in '%s': %s", s->path, ag_git_msg());
		goto out;
	}
	oid_hex(out, &id);
out:
	git_index_free(index);
	git_diff_free(diff);
	git_tree_free(tree);
	ag_buf_release(&text);
	return rc;
}

int
ag_store_worktree(char out[AG_OID_HEX], size_t *failed, struct ag_store *s, const char *base,
    const char *const *patches, size_t npatches, const char *dir)
{
	char tree[AG_OID_HEX];
	git_tree *t = NULL;
	size_t i;
	int rc;

	out[0] = '\0';
	*failed = npatches;
	if ((rc = lookup_tree(&t, s, base)) < 0)
		return rc;
	oid_hex(tree, git_tree_id(t));
	git_tree_free(t);
	for (i = 0; i < npatches; i++) {
		if ((rc = ag_store_apply(tree, s, tree, patches[i])) < 0) {
			*failed = i;
			return rc;
		}
	}
	if ((rc = ag_store_checkout(s, tree, dir)) < 0)
		return rc;
	memcpy(out, tree, AG_OID_HEX);
	return 0;
}

/* ---- outputs ---- */

struct outputs {
	struct ag_output *v;
	size_t len;
	size_t cap;
	uint64_t bytes;
};

static int
output_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ag_output *)a)->path, ((const struct ag_output *)b)->path);
}

/* Output names become JSON strings and paths of needs: printable UTF-8. */
static int
printable_name(const char *name)
{
	json_t *j;
	const unsigned char *p;

	for (p = (const unsigned char *)name; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return 0;
	if (!(j = json_string(name)))
		return 0;
	json_decref(j);
	return 1;
}

static int
outputs_dir(struct outputs *o, struct ag_store *s, int dfd, struct walk *w)
{
	struct dirent *e;
	DIR *d;
	size_t saved;
	int rc = 0;

	if (!(d = fdopendir(dfd))) {
		rc = ag_error_sys(AG_ERROR, "cannot read directory '%s/%s'", w->root, walk_rel(w));
		close(dfd);
		return rc;
	}
	if (++w->depth > AG_TREE_DEPTH_MAX) {
		rc = ag_error_set(AG_EINVALID, "output directory '%s' is nested deeper than %d",
		    walk_rel(w), AG_TREE_DEPTH_MAX);
		goto out;
	}
	for (;;) {
		struct stat st;
		int fd;
		errno = 0;
		if (!(e = readdir(d))) {
			if (errno)
				rc = ag_error_sys(AG_ERROR, "cannot read directory '%s/%s'", w->root,
				    walk_rel(w));
			break;
		}
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if ((rc = walk_push(w, e->d_name, &saved)) < 0)
			break;
		if (!printable_name(e->d_name)) {
			rc = ag_error_set(AG_EINVALID, "output '%s' has a name that is not printable UTF-8",
			    walk_rel(w));
		} else if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = ag_error_sys(AG_ERROR, "cannot stat '%s/%s'", w->root, walk_rel(w));
		} else if (S_ISLNK(st.st_mode)) {
			rc = ag_error_set(AG_EINVALID, "output '%s' is a symbolic link; outputs must be "
			    "regular files", walk_rel(w));
		} else if (S_ISDIR(st.st_mode)) {
			fd = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0)
				rc = ag_error_sys(AG_ERROR, "cannot open directory '%s/%s'", w->root,
				    walk_rel(w));
			else
				rc = outputs_dir(o, s, fd, w);
		} else if (!S_ISREG(st.st_mode)) {
			rc = ag_error_set(AG_EINVALID, "output '%s' is not a regular file", walk_rel(w));
		} else if (o->len >= AG_OUTPUTS_MAX) {
			rc = ag_error_set(AG_EINVALID, "more than %d outputs in '%s'", AG_OUTPUTS_MAX,
			    w->root);
		} else if ((uint64_t)st.st_size > AG_OUTPUTS_BYTES_MAX - o->bytes) {
			rc = ag_error_set(AG_EINVALID, "outputs in '%s' exceed %llu bytes at '%s'",
			    w->root, (unsigned long long)AG_OUTPUTS_BYTES_MAX, walk_rel(w));
		} else if ((fd = openat(dirfd(d), e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
		    O_CLOEXEC)) < 0) {
			rc = ag_error_sys(AG_ERROR, "cannot open '%s/%s'", w->root, walk_rel(w));
		} else {
			struct ag_output *v;
			git_oid id;
			if (o->len == o->cap) {
				size_t ncap = o->cap ? o->cap * 2 : 16;
				if (!(v = realloc(o->v, ncap * sizeof(*v)))) {
					rc = ag_error_set(AG_ERROR, "out of memory");
					close(fd);
					walk_pop(w, saved);
					break;
				}
				o->v = v;
				o->cap = ncap;
			}
			rc = blob_from_fd(&id, s, fd, (uint64_t)st.st_size, w);
			close(fd);
			if (rc == 0) {
				v = &o->v[o->len];
				if (!(v->path = strdup(w->path))) {
					rc = ag_error_set(AG_ERROR, "out of memory");
				} else {
					oid_hex(v->blob, &id);
					v->size = (uint64_t)st.st_size;
					o->bytes += v->size;
					o->len++;
				}
			}
		}
		walk_pop(w, saved);
		if (rc < 0)
			break;
	}
	w->depth--;
out:
	closedir(d);
	return rc;
}

int
ag_store_outputs(struct ag_output **out, size_t *nout, struct ag_store *s, const char *dir)
{
	struct walk w = { .root = dir };
	struct outputs o = { 0 };
	int fd, rc;

	*out = NULL;
	*nout = 0;
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		if (errno == ENOENT)
			return 0;
		return ag_error_sys(AG_ERROR, "cannot open outputs directory '%s'", dir);
	}
	if ((rc = outputs_dir(&o, s, fd, &w)) < 0) {
		ag_outputs_free(o.v, o.len);
		return rc;
	}
	if (o.len)
		qsort(o.v, o.len, sizeof(*o.v), output_cmp);
	*out = o.v;
	*nout = o.len;
	return 0;
}

void
ag_outputs_free(struct ag_output *v, size_t n)
{
	size_t i;

	for (i = 0; i < n && v; i++)
		free(v[i].path);
	free(v);
}
