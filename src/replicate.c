/*
 * agora-replicate: the state tree copied with rsync(1), in an order that
 * leaves the replica whole at every step, even while the source runs.
 *
 * What refers to what: a checkpoint covers log lines, a log line names
 * objects (patches, outputs) and attempt directories. So the replica
 * gets objects first, logs next, checkpoints last; and the source is
 * read the other way round, checkpoints first: a checkpoint read before
 * the logs covers no line the logs lack, a log read before the objects
 * names no object they lack. The checkpoints and the logs are therefore
 * read into a staging directory (under $TMPDIR) before the objects are
 * copied, then put in place from there.
 *
 * What is immutable once written (objects, plan.json, a run's checkpoint,
 * each global checkpoint, anchor copies) is never overwritten on the
 * replica (--ignore-existing); the append-only logs only grow
 * (--append): a source that was rewritten or cut does not rewrite the
 * replica's history, and agora-verify there finds the break. What is
 * replaced in place (the latest global checkpoint, the receipts, the
 * refs, state.json) is compared by content (--checksum): rsync's quick
 * check takes a file of the same size and the same mtime, to the second,
 * for unchanged, and a global checkpoint rewritten within the second has
 * the same size, so the replica would keep the old one while the
 * run.sealed lines it gets point past it. Nothing is ever deleted on
 * the replica. Locks, the wake FIFO, temporary files, worktrees and the
 * private key are never copied.
 */
#include "agora.h"
#include "audit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "banned.h"

#define ARGS_MAX	64

/*
 * Never copied: locks, the FIFO, the inbox's temporary files, temporary
 * files of agora and libgit2, scratch worktrees, leases, the private key.
 */
static const char *const never[] = {
	"--exclude=/locks/", "--exclude=/tick.lock", "--exclude=/wake", "--exclude=/inbox/tmp/",
	"--exclude=/runs/.new-*", "--exclude=/keys/signing.key", "--exclude=.*.tmp*",
	"--exclude=*.lock", "--exclude=*_git2_*", "--exclude=tmp_object*",
	"--exclude=/runs/*/items/*/*/worktree/", "--exclude=/runs/*/items/*/*/lease", NULL
};

/*
 * What refers to what, and so the order of the reads (and the reverse
 * order of the writes): a global checkpoint and a receipt, to the global
 * log's entries and anchor copies; an entry, to a run's checkpoint; a
 * checkpoint, to log lines; a log line, to objects and attempts.
 */

/* a: the global checkpoints and the receipts */
static const char *const read_a[] = {
	"--include=/audit/", "--include=/audit/checkpoint", "--include=/audit/checkpoints/***",
	"--include=/audit/receipts/***", "--exclude=*", NULL
};
static const char *const a_immutable[] = {
	"--include=/audit/", "--include=/audit/checkpoints/***", "--exclude=*", NULL
};
static const char *const a_replaced[] = {
	"--exclude=/audit/checkpoints/", NULL
};

/* b: the global log */
static const char *const read_b[] = {
	"--include=/audit/", "--include=/audit/log.jsonl", "--exclude=*", NULL
};

/* c: the runs' checkpoints, the anchor copies, the refs */
static const char *const read_c[] = {
	"--include=/runs/", "--include=/runs/*/", "--include=/runs/*/checkpoint",
	"--include=/audit/", "--include=/audit/anchors/***",
	"--include=/objects.git/", "--include=/objects.git/HEAD", "--include=/objects.git/packed-refs",
	"--include=/objects.git/refs/***", "--exclude=*", NULL
};
static const char *const c_immutable[] = {
	"--include=/runs/", "--include=/runs/*/", "--include=/runs/*/checkpoint",
	"--include=/audit/", "--include=/audit/anchors/***", "--exclude=*", NULL
};
static const char *const c_replaced[] = {
	"--include=/objects.git/***", "--exclude=*", NULL
};

/* d: the logs and the rest: neither objects, attempts nor checkpoints */
static const char *const read_d[] = {
	"--exclude=/objects.git/", "--exclude=/runs/*/checkpoint", "--exclude=/runs/*/plan.json",
	"--exclude=/runs/*/items/", "--include=/audit/", "--include=/audit/pending/***",
	"--exclude=/audit/*", NULL
};
static const char *const d_append[] = {
	"--include=/runs/", "--include=/runs/*/", "--include=/runs/*/status.jsonl",
	"--include=/runs/*/control", "--include=/control", "--exclude=*", NULL
};
static const char *const d_replaced[] = {
	"--exclude=/runs/*/status.jsonl", "--exclude=/runs/*/control", "--exclude=/control",
	"--exclude=/active/", "--exclude=/audit/pending/", "--exclude=/inbox/new/", NULL
};
/* active/ and audit/pending/ list what is still to do: a run done leaves them on the replica too */
static const char *const d_index[] = {
	"--include=/active/***", "--include=/audit/", "--include=/audit/pending/***", "--exclude=*",
	NULL
};

/* e: the objects and plan.json (immutable), then the attempts and the rest of objects.git */
static const char *const e_immutable[] = {
	"--include=/objects.git/", "--include=/objects.git/objects/***", "--include=/runs/",
	"--include=/runs/*/", "--include=/runs/*/plan.json", "--exclude=*", NULL
};
static const char *const e_attempts[] = {
	"--exclude=/objects.git/refs/", "--exclude=/objects.git/HEAD",
	"--exclude=/objects.git/packed-refs", "--exclude=/objects.git/objects/",
	"--include=/objects.git/***", "--include=/runs/", "--include=/runs/*/",
	"--include=/runs/*/items/***", "--exclude=*", NULL
};

static int
add(const char **argv, size_t *n, const char *const *v)
{
	for (; *v; v++) {
		if (*n + 1 >= ARGS_MAX)
			return ag_error_set(AG_ERROR, "too many rsync arguments");
		argv[(*n)++] = *v;
	}
	return 0;
}

/*
 * rsync -rlpt [mode] never... rules... from/ to/. Exit 24 (files that
 * vanished while read: a temporary file renamed away) is no failure.
 */
static char errfile[AG_PATH_MAX];	/* rsync's stderr: shown only when it fails */

/* The last line rsync wrote to stderr, for a message. */
static const char *
rsync_said(void)
{
	static char last[512];
	struct ag_buf b;
	char *p, *end;

	last[0] = '\0';
	if (ag_read_file(&b, errfile, 1 << 20) < 0) {
		ag_error_clear();
		return last;
	}
	end = b.ptr + b.len;
	while (end > b.ptr && end[-1] == '\n')
		end--;
	for (p = end; p > b.ptr && p[-1] != '\n'; p--)
		;
	snprintf(last, sizeof(last), ": %.*s", (int)(end - p), p);
	ag_buf_release(&b);
	return end > p ? last : "";
}

static int
rsync(const char *what, const char *mode, const char *const *rules, const char *from,
    const char *to)
{
	extern char **environ;
	const char *argv[ARGS_MAX];
	char src[AG_PATH_MAX], dst[AG_PATH_MAX];
	posix_spawn_file_actions_t fa;
	size_t n = 0;
	pid_t pid;
	int rc, err, st;

	if ((rc = ag_path(src, sizeof(src), "%s/", from)) < 0 ||
	    (rc = ag_path(dst, sizeof(dst), "%s/", to)) < 0)
		return rc;
	argv[n++] = "rsync";
	argv[n++] = "-rlpt";
	if (mode)
		argv[n++] = mode;
	if ((rc = add(argv, &n, never)) < 0 || (rc = add(argv, &n, rules)) < 0)
		return rc;
	if (n + 3 >= ARGS_MAX)
		return ag_error_set(AG_ERROR, "too many rsync arguments");
	argv[n++] = "--";
	argv[n++] = src;
	argv[n++] = dst;
	argv[n] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 2, errfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	err = posix_spawnp(&pid, "rsync", &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (err != 0) {
		errno = err;
		return ag_error_sys(err == ENOENT ? AG_EINVALID : AG_ERROR, "cannot run rsync for %s "
		    "(Debian: apt-get install rsync)", what);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return ag_error_sys(AG_ERROR, "cannot wait for rsync");
	if (WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 24))
		return 0;
	if (WIFEXITED(st))
		return ag_error_set(AG_ERROR, "rsync of %s from '%s' to '%s' exited %d%s", what, from,
		    to, WEXITSTATUS(st), rsync_said());
	return ag_error_set(AG_ERROR, "rsync of %s from '%s' to '%s' was killed by signal %d", what,
	    from, to, WTERMSIG(st));
}

static void
remove_tree(const char *path)
{
	extern char **environ;
	char *const argv[] = { "rm", "-rf", "--", (char *)path, NULL };
	pid_t pid;
	int st;

	if (posix_spawnp(&pid, "rm", NULL, NULL, argv, environ) == 0)
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
}

/*
 * run.sealed names the run's checkpoint and its entry in the global log
 * (logIndex), so it belongs with the global checkpoints: a run sealed
 * after those were read (in a, c) but before its log was (in d) would
 * reach the replica sealed without them. Such a staged log loses its
 * run.sealed line; the next replication brings it with the rest.
 */
static int
trim_sealed(const char *logs, const char *cps, const char *globals)
{
	struct ag_checkpoint g;
	uint64_t gsize = 0;
	char path[AG_PATH_MAX], cp[AG_PATH_MAX], runs[AG_PATH_MAX];
	struct dirent *e;
	struct ag_buf b;
	DIR *d;
	int rc = 0;

	if ((rc = ag_path(path, sizeof(path), "%s/audit/checkpoint", globals)) < 0)
		return rc;
	if (ag_read_file(&b, path, AG_NOTE_MAX) == 0) {
		if (ag_checkpoint_parse(&g, b.ptr, b.len) == 0)
			gsize = g.size;
		ag_buf_release(&b);
	}
	ag_error_clear();
	if ((rc = ag_path(runs, sizeof(runs), "%s/runs", logs)) < 0)
		return rc;
	if (!(d = opendir(runs)))
		return errno == ENOENT ? 0 : ag_error_sys(AG_ERROR, "cannot read '%s'", runs);
	while (rc == 0 && (e = readdir(d))) {
		const char *last;
		size_t end;
		if (e->d_name[0] == '.')
			continue;
		if ((rc = ag_path(cp, sizeof(cp), "%s/runs/%s/checkpoint", cps, e->d_name)) < 0 ||
		    (rc = ag_path(path, sizeof(path), "%s/%s/status.jsonl", runs, e->d_name)) < 0)
			break;
		if (ag_read_file(&b, path, AG_LOG_MAX) < 0) {
			ag_error_clear();
			continue;
		}
		end = b.len;
		while (end > 0 && b.ptr[end - 1] == '\n')
			end--;
		while (end > 0 && b.ptr[end - 1] != '\n')
			end--;
		last = b.ptr + end;
		if (strstr(last, "\"event\":\"run.sealed\"")) {
			json_t *ev = json_loads(last, 0, NULL);
			json_t *li = json_object_get(ev, "logIndex");
			if ((!ag_exists(cp) || !json_is_integer(li) ||
			    (uint64_t)json_integer_value(li) >= gsize) && truncate(path, (off_t)end) < 0)
				rc = ag_error_sys(AG_ERROR, "cannot truncate '%s'", path);
			json_decref(ev);
		}
		ag_buf_release(&b);
	}
	closedir(d);
	return rc;
}

int
ag_replicate(const char *dir, const char *dest)
{
	char stage[AG_PATH_MAX], sa[AG_PATH_MAX], sb[AG_PATH_MAX], sc[AG_PATH_MAX], sd[AG_PATH_MAX];
	char path[AG_PATH_MAX];
	const char *tmp = getenv("TMPDIR");
	int rc;

	if ((rc = ag_path(path, sizeof(path), "%s/audit", dir)) < 0)
		return rc;
	if (!ag_exists(path))
		return ag_error_set(AG_ENOTFOUND, "'%s' is not an agora state directory", dir);
	if ((rc = ag_path(stage, sizeof(stage), "%s/agora-replicate.XXXXXX",
	    tmp && *tmp ? tmp : "/tmp")) < 0)
		return rc;
	if (!mkdtemp(stage))
		return ag_error_sys(AG_ERROR, "cannot create a staging directory '%s'", stage);
	if ((rc = ag_path(errfile, sizeof(errfile), "%s/rsync.err", stage)) < 0 ||
	    (rc = ag_path(sa, sizeof(sa), "%s/a", stage)) < 0 ||
	    (rc = ag_path(sb, sizeof(sb), "%s/b", stage)) < 0 ||
	    (rc = ag_path(sc, sizeof(sc), "%s/c", stage)) < 0 ||
	    (rc = ag_path(sd, sizeof(sd), "%s/d", stage)) < 0)
		goto out;
	/* read, what refers first */
	if ((rc = rsync("the global checkpoints", NULL, read_a, dir, sa)) < 0 ||
	    (rc = rsync("the global log", NULL, read_b, dir, sb)) < 0 ||
	    (rc = rsync("the checkpoints", NULL, read_c, dir, sc)) < 0 ||
	    (rc = rsync("the logs", NULL, read_d, dir, sd)) < 0 ||
	    (rc = trim_sealed(sd, sc, sa)) < 0)
		goto out;
	/* write, what is referred to first */
	if ((rc = rsync("the objects", "--ignore-existing", e_immutable, dir, dest)) < 0 ||
	    (rc = rsync("the attempts", NULL, e_attempts, dir, dest)) < 0 ||
	    (rc = rsync("the logs", "--append", d_append, sd, dest)) < 0 ||
	    (rc = rsync("the other files", "--checksum", d_replaced, sd, dest)) < 0 ||
	    (rc = rsync("the index of active runs", "--delete", d_index, sd, dest)) < 0 ||
	    (rc = rsync("the checkpoints", "--ignore-existing", c_immutable, sc, dest)) < 0 ||
	    (rc = rsync("the refs", "--checksum", c_replaced, sc, dest)) < 0 ||
	    (rc = rsync("the global log", "--append", read_b, sb, dest)) < 0 ||
	    (rc = rsync("the global checkpoints", "--ignore-existing", a_immutable, sa, dest)) < 0 ||
	    (rc = rsync("the latest global checkpoint and the receipts", "--checksum", a_replaced,
	    sa, dest)) < 0)
		goto out;
out:
	remove_tree(stage);
	return rc;
}
