/*
 * One tick: ingest, apply control directives, reap, ready, fire, cascade,
 * complete. Everything a tick decides is first appended to the runs'
 * status.jsonl; supervisors start only after those lines are fsynced, so
 * a crash anywhere never starts an attempt twice. Every step can be
 * re-run: a tick after a crash finishes what the crashed one began.
 */
#include "agora.h"
#include "audit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "banned.h"

struct ag_tick_cache {
	struct ag_run **runs;
	size_t nruns;
	int64_t last_snapshot;
	struct ag_conf conf;	/* agora.conf as of conf_st */
	struct stat conf_st;
	int have_conf;
	int64_t last_anchor;	/* when pending anchors were last tried */
	int64_t last_sweep;	/* when every lease was last looked at */
	int relist;		/* its runs may not be all of active/ any more */
};

/*
 * serve's resident supervisor holds the leases of the attempts it runs
 * for as long as serve's socket to it stays up, so a tick needs to look
 * only for their result.json; it still looks at those leases this often,
 * for a supervisor that hangs with its socket up.
 */
#define SWEEP_MS	1000

/*
 * agora-serve ticks at every event: it hands checkpoints to the anchors
 * when a run was sealed, and tries failing ones again at most this often,
 * so that an anchor that is down does not slow every tick.
 */
#define ANCHOR_RETRY_MS	10000

struct pending_spawn {
	struct ag_run *run;
	size_t item;
	int attempt;
	int lease_fd;
	int *lock_fds;
	size_t nlocks;
	int offered;		/* sent to the resident supervisor, which waits for "go" */
	size_t after;		/* staged: 1 + the item whose attempt's end starts it, or 0 */
};

struct tick {
	const char *dir;
	struct ag_conf conf;
	const struct ag_conf *confp;	/* the cache's, when the cache holds it */
	struct ag_tick_stats *stats;
	struct ag_buf warn;
	struct ag_run **runs;
	size_t nruns;
	struct pending_spawn *spawns;
	size_t nspawns;
	struct ag_buf global;	/* the global control file */
	int global_paused;	/* its standing PAUSE/RESUME state */
	int64_t now;
	struct ag_key *key;	/* the signing key, loaded when a run is to be sealed */
	int sup;		/* serve's resident supervisor, or -1 */
	pid_t sup_pid;
	int sweep;		/* look at every lease, not only at result.json */
	int skip;		/* AG_SKIP_*: lists the caller knows have not changed */
};

static void
warn(struct tick *t, const char *what, const char *msg)
{
	ag_buf_printf(&t->warn, "%s%s%s\n", what, *what ? ": " : "", msg);
}

/* ---- names in directories ---- */

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
list_dir(char ***out, size_t *n, const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	char **v = NULL;
	size_t len = 0, cap = 0;

	*out = NULL;
	*n = 0;
	if (!d)
		return ag_error_sys(AG_ERROR, "cannot open directory '%s'", path);
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (len == cap) {
			char **nv;
			cap = cap ? cap * 2 : 32;
			if (!(nv = realloc(v, cap * sizeof(*v))))
				goto oom;
			v = nv;
		}
		if (!(v[len] = strdup(e->d_name)))
			goto oom;
		len++;
	}
	closedir(d);
	if (len)
		qsort(v, len, sizeof(*v), name_cmp);
	*out = v;
	*n = len;
	return 0;
oom:
	closedir(d);
	while (len)
		free(v[--len]);
	free(v);
	return ag_error_set(AG_ERROR, "out of memory");
}

static void
free_list(char **v, size_t n)
{
	while (n)
		free(v[--n]);
	free(v);
}

/* ---- control files ---- */

/* The standing PAUSE/RESUME state of the global control file. */
static void
read_global(struct tick *t)
{
	char path[AG_PATH_MAX];
	struct stat st;
	size_t off = 0;

	ag_buf_init(&t->global, 0);
	t->global_paused = 0;
	/* empty, as it mostly is: nothing to read */
	if (ag_path(path, sizeof(path), "%s/control", t->dir) < 0 ||
	    (stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0) ||
	    ag_read_file(&t->global, path, 16u << 20) < 0) {
		ag_buf_init(&t->global, 0);
		return;
	}
	while (off < t->global.len) {
		char *nl = memchr(t->global.ptr + off, '\n', t->global.len - off);
		struct ag_directive d;
		if (!nl)
			break;
		if (ag_directive_parse(&d, t->global.ptr + off, (size_t)(nl - t->global.ptr - off)) &&
		    !d.error[0]) {
			if (d.verb == AG_V_PAUSE)
				t->global_paused = 1;
			else if (d.verb == AG_V_RESUME)
				t->global_paused = 0;
		}
		off = (size_t)(nl - t->global.ptr) + 1;
	}
}

static size_t
global_whole_len(const struct tick *t)
{
	size_t n = t->global.len;

	while (n > 0 && t->global.ptr[n - 1] != '\n')
		n--;
	return n;
}

static int
emit_rejected(struct ag_run *r, const struct ag_directive *d, const char *why,
    const char *offkey, int64_t off)
{
	json_t *ev = ag_event_new(r, "control.rejected");

	json_object_set_new(ev, "directive", json_string(d->verb_name));
	if (d->item[0])
		json_object_set_new(ev, "item", json_string(d->item));
	json_object_set_new(ev, "actor", json_string(d->actor));
	json_object_set_new(ev, "reason", json_string(why));
	json_object_set_new(ev, offkey, json_integer(off));
	return ag_run_emit(r, ev);
}

/* Check a run-level directive against the state; "" if it applies. */
static void
judge(char *why, size_t size, const struct ag_run *r, const struct ag_directive *d)
{
	const struct ag_item *it = NULL;
	size_t i;

	why[0] = '\0';
	if (d->error[0]) {
		snprintf(why, size, "%s", d->error);
		return;
	}
	if (d->item[0]) {
		if (ag_run_item(r, d->item, &i) < 0) {
			snprintf(why, size, "unknown item '%s'", d->item);
			return;
		}
		it = &r->items[i];
	}
	switch (d->verb) {
	case AG_V_CANCEL:
		if (it && ag_status_terminal(it->status))
			snprintf(why, size, "item '%s' is already %s", it->id,
			    ag_status_names[it->status]);
		else if (r->want_cancel)
			snprintf(why, size, "run is already cancelled");
		break;
	case AG_V_RETRY:
		if (r->want_cancel)
			snprintf(why, size, "run is cancelled");
		else if (it->status != AG_FAILED && it->status != AG_CANCELLED &&
		    it->status != AG_SKIPPED)
			snprintf(why, size, "item '%s' is %s; RETRY takes a failed, cancelled or skipped item",
			    it->id, ag_status_names[it->status]);
		break;
	case AG_V_DROP:
		if (it->status != AG_RUNNING)
			snprintf(why, size, "item '%s' is %s, not running", it->id,
			    ag_status_names[it->status]);
		break;
	case AG_V_ELEVATE:
		if (ag_status_terminal(it->status))
			snprintf(why, size, "item '%s' is already %s", it->id,
			    ag_status_names[it->status]);
		break;
	default:
		break;
	}
}

/*
 * base is the offset of data in its file. rewound, when not 0, is the
 * offset read so far in a file that has since been rewritten shorter: the
 * first event says so, and the file is read again from its start.
 */
static int
apply_lines(struct tick *t, struct ag_run *r, const char *data, size_t len,
    int64_t base, int global, int64_t rewound)
{
	size_t off = 0;
	int rc;

	while (off < len) {
		const char *nl = memchr(data + off, '\n', len - off);
		struct ag_directive d;
		int64_t end;
		char why[300];

		if (!nl)
			break;	/* an unfinished line: its writer is still at it */
		end = base + (int64_t)(nl - data) + 1;
		if (ag_directive_parse(&d, data + off, (size_t)(nl - data - off))) {
			if (global) {
				why[0] = '\0';
				if (d.error[0])
					snprintf(why, sizeof(why), "%s", d.error);
				else if (d.verb != AG_V_PAUSE && d.verb != AG_V_RESUME)
					snprintf(why, sizeof(why),
					    "the global control file takes only PAUSE and RESUME");
			} else {
				judge(why, sizeof(why), r, &d);
			}
			if (why[0]) {
				if (rewound) {
					char more[400];
					snprintf(more, sizeof(more), "%s (the file was rewritten shorter "
					    "than the %lld bytes read; read again from its start)", why,
					    (long long)rewound);
					snprintf(why, sizeof(why), "%s", more);
					rewound = 0;
				}
				rc = emit_rejected(r, &d, why, global ? "globalOffset" : "offset", end);
			} else {
				json_t *ev = ag_event_new(r, "control.applied");
				json_object_set_new(ev, "directive", json_string(ag_verb_name(d.verb)));
				if (d.item[0])
					json_object_set_new(ev, "item", json_string(d.item));
				if (d.verb == AG_V_ELEVATE)
					json_object_set_new(ev, "priority", json_integer(d.priority));
				if (global)
					json_object_set_new(ev, "scope", json_string("global"));
				json_object_set_new(ev, "actor", json_string(d.actor));
				json_object_set_new(ev, global ? "globalOffset" : "offset", json_integer(end));
				if (rewound) {
					json_object_set_new(ev, "rewound", json_integer(rewound));
					rewound = 0;
				}
				rc = ag_run_emit(r, ev);
			}
			if (rc < 0)
				return rc;
			t->stats->events++;
			ag_crash_point("control-log");
		}
		off = (size_t)(nl - data) + 1;
	}
	return 0;
}

static int
apply_control(struct tick *t, struct ag_run *r)
{
	char path[AG_PATH_MAX];
	struct stat st;
	char *data = NULL;
	size_t len;
	ssize_t n;
	int64_t base = r->control_off, rewound = 0;
	int fd = -1, rc = 0;

	len = global_whole_len(t);
	if ((size_t)r->global_off > t->global.len) {
		/* rewritten shorter (> instead of >>): read it again from the start */
		if ((rc = apply_lines(t, r, t->global.ptr, len, 0, 1, r->global_off)) < 0)
			return rc;
	} else if ((size_t)r->global_off < len &&
	    (rc = apply_lines(t, r, t->global.ptr + r->global_off, len - (size_t)r->global_off,
	    r->global_off, 1, 0)) < 0)
		return rc;

	if ((rc = ag_path(path, sizeof(path), "%s/control", r->dir)) < 0)
		return rc;
	/* most ticks find it as it was: one lstat says so */
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : ag_error_sys(AG_ERROR, "cannot read '%s'", path);
	if (S_ISREG(st.st_mode) && st.st_size == r->control_off)
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 0 : ag_error_sys(AG_ERROR, "cannot open '%s'", path);
	if (fstat(fd, &st) < 0 || st.st_size == r->control_off)
		goto out;
	if (st.st_size < r->control_off) {
		rewound = r->control_off;
		base = 0;
	}
	len = (size_t)(st.st_size - base);
	if (len > (1u << 20))
		len = 1u << 20;
	if (!(data = malloc(len))) {
		rc = ag_error_set(AG_ERROR, "out of memory");
		goto out;
	}
	n = pread(fd, data, len, base);
	if (n < 0) {
		rc = ag_error_sys(AG_ERROR, "cannot read '%s'", path);
		goto out;
	}
	if (n == (ssize_t)len && !memchr(data, '\n', len) && len == (1u << 20)) {
		/* a megabyte with no newline is garbage, not a directive: skip it */
		struct ag_directive d = { .verb = AG_V_UNKNOWN };
		snprintf(d.verb_name, sizeof(d.verb_name), "?");
		snprintf(d.actor, sizeof(d.actor), "file");
		rc = emit_rejected(r, &d, "line too long", "offset", base + (int64_t)len);
		goto out;
	}
	rc = apply_lines(t, r, data, (size_t)n, base, 0, rewound);
out:
	free(data);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* ---- attempts ---- */

static int
attempt_path(char *out, size_t size, const struct ag_run *r, size_t item, int attempt,
    const char *file)
{
	return ag_path(out, size, "%s/items/%s/%d%s%s", r->dir, r->items[item].id, attempt,
	    file ? "/" : "", file ? file : "");
}

/*
 * The supervisor's pid and the worker's process group, which the
 * supervisor writes into the lease before the worker starts.
 */
static int
read_pids(const struct ag_run *r, size_t item, int attempt, pid_t *pid, pid_t *pgid)
{
	char path[AG_PATH_MAX];
	struct ag_buf b;
	long a = 0, g = 0;

	*pid = *pgid = 0;
	if (attempt_path(path, sizeof(path), r, item, attempt, "lease") < 0 ||
	    ag_read_file(&b, path, 256) < 0)
		return -1;
	/* the line is whole once it has its newline */
	if (!memchr(b.ptr, '\n', b.len) || sscanf(b.ptr, "%ld %ld", &a, &g) < 1 || a <= 1) {
		ag_buf_release(&b);
		return -1;
	}
	ag_buf_release(&b);
	*pid = (pid_t)a;
	*pgid = (pid_t)(g > 1 ? g : 0);
	return 0;
}

/*
 * Kill what is left of a worker's process group whose supervisor is gone
 * or hung: no orphan outlives its supervisor. The lease names the group
 * by number, and the number may have been taken again since (PIDs wrap):
 * a process of that pid that started after the lease was last renewed is
 * not the worker, which started before the lease named it, and the group
 * of that number is someone else's. While any member of the worker's
 * group lives, the kernel gives its number to no new process, so a number
 * that no process holds as its pid still names only the worker's
 * leftovers.
 */
static void
kill_group(const char *lease, pid_t pgid)
{
	char path[64], buf[1024], *p;
	struct timespec boot, real;
	struct stat st;
	unsigned long long start = 0;
	long tck = sysconf(_SC_CLK_TCK);
	ssize_t n;
	int fd, k;

	if (pgid <= 1)
		return;
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pgid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		/* the fields after the command name: state is the 3rd, starttime the 22nd */
		if (n > 0 && (buf[n] = '\0', p = strrchr(buf, ')')) != NULL) {
			for (k = 2; k < 22 && p; k++)
				p = strchr(p + 1, ' ');
			if (p)
				start = strtoull(p + 1, NULL, 10);
		}
		if (start && tck > 0 && stat(lease, &st) == 0 &&
		    clock_gettime(CLOCK_BOOTTIME, &boot) == 0 &&
		    clock_gettime(CLOCK_REALTIME, &real) == 0) {
			/* when it started, on the clock of the lease's mtime, in ms */
			int64_t born = (int64_t)real.tv_sec * 1000 + real.tv_nsec / 1000000 -
			    ((int64_t)boot.tv_sec * 1000 + boot.tv_nsec / 1000000 -
			    (int64_t)(start * 1000 / (unsigned long long)tck));
			int64_t renewed = (int64_t)st.st_mtim.tv_sec * 1000 +
			    st.st_mtim.tv_nsec / 1000000;
			if (born > renewed + 100)
				return;	/* a newer process: the number was taken again */
		}
	}
	kill(-pgid, SIGKILL);
}

static json_t *
item_event(const struct ag_run *r, const char *event, const char *status, int attempt)
{
	json_t *ev = ag_event_new(r, event);

	json_object_set_new(ev, "item", json_string(""));
	json_object_set_new(ev, "status", json_string(status));
	if (attempt)
		json_object_set_new(ev, "attempt", json_integer(attempt));
	return ev;
}

static int
emit_item_ev(struct tick *t, struct ag_run *r, size_t item, json_t *ev)
{
	json_object_set_new(ev, "item", json_string(r->items[item].id));
	t->stats->events++;
	return ag_run_emit(r, ev);
}

/* Turn an attempt's end into item.done, item.retrying, item.failed or item.cancelled. */
static int
finish(struct tick *t, struct ag_run *r, size_t item, const json_t *res, const char *lost)
{
	struct ag_item *it = &r->items[item];
	json_t *exitv = res ? json_object_get(res, "exit") : NULL;
	json_t *sigv = res ? json_object_get(res, "signal") : NULL;
	const char *why = res ? json_string_value(json_object_get(res, "reason")) : lost;
	int permanent = res && json_is_true(json_object_get(res, "permanent"));
	char reason[300];
	json_t *ev;
	int rc;

	if (json_is_integer(exitv) && json_integer_value(exitv) == 0 && !json_is_integer(sigv) &&
	    !why) {
		static const char *const art[] = { "base", "resultRef", "patchSha256", "outputs",
			NULL };
		size_t k;
		ev = item_event(r, "item.done", "done", it->attempt);
		json_object_set_new(ev, "exit", json_integer(0));
		/* what the supervisor captured: the patch and the output files */
		for (k = 0; art[k]; k++)
			if (json_object_get(res, art[k]))
				json_object_set(ev, art[k], json_object_get(res, art[k]));
		rc = emit_item_ev(t, r, item, ev);
		goto out;
	}
	if (it->cancel_req || r->want_cancel) {
		ev = item_event(r, "item.cancelled", "cancelled", it->attempt);
		json_object_set_new(ev, "reason", json_string("cancelled"));
		if (json_is_integer(sigv))
			json_object_set_new(ev, "signal", json_copy(sigv));
		rc = emit_item_ev(t, r, item, ev);
		goto out;
	}
	if (it->drop_req || (lost && strcmp(lost, "not started") == 0)) {
		char at[AG_TIME_LEN];
		/* not the worker's fault: requeued at once, not counted as a failure */
		ev = item_event(r, "item.retrying", "ready", it->attempt);
		json_object_set_new(ev, "reason", json_string(it->drop_req ? "dropped" : lost));
		ag_time_fmt(at, t->now);
		json_object_set_new(ev, "retryAt", json_string(at));
		rc = emit_item_ev(t, r, item, ev);
		goto out;
	}
	if (why)
		snprintf(reason, sizeof(reason), "%s", why);
	else if (json_is_integer(sigv))
		snprintf(reason, sizeof(reason), "killed by signal %lld",
		    (long long)json_integer_value(sigv));
	else
		snprintf(reason, sizeof(reason), "exit %lld", (long long)json_integer_value(exitv));
	if (!permanent && it->failures + 1 < it->max_attempts) {
		char at[AG_TIME_LEN];
		ev = item_event(r, "item.retrying", "ready", it->attempt);
		ag_time_fmt(at, t->now + ag_conf_backoff_ms(&t->conf, it->failures + 1));
		json_object_set_new(ev, "retryAt", json_string(at));
	} else {
		ev = item_event(r, "item.failed", "failed", it->attempt);
	}
	if (json_is_integer(exitv))
		json_object_set_new(ev, "exit", json_copy(exitv));
	if (json_is_integer(sigv))
		json_object_set_new(ev, "signal", json_copy(sigv));
	json_object_set_new(ev, "reason", json_string(reason));
	rc = emit_item_ev(t, r, item, ev);
out:
	if (rc == 0) {
		t->stats->reaped++;
		ag_crash_point("reap-log");
	}
	return rc;
}

static int
read_result(json_t **out, const char *path)
{
	struct ag_buf b;
	json_error_t jerr;
	int rc;

	*out = NULL;
	if ((rc = ag_read_file(&b, path, 1u << 20)) < 0)
		return rc;
	*out = json_loadb(b.ptr, b.len, 0, &jerr);
	ag_buf_release(&b);
	if (!*out || !json_is_object(*out)) {
		json_decref(*out);
		*out = json_pack("{s:n, s:s}", "exit", "reason", "unreadable result.json");
	}
	return 0;
}

static int
reap_item(struct tick *t, struct ag_run *r, size_t item)
{
	struct ag_item *it = &r->items[item];
	char res[AG_PATH_MAX], lease[AG_PATH_MAX];
	json_t *result = NULL;
	struct stat st;
	pid_t pid, pgid, was;
	int rc;

	if (attempt_path(res, sizeof(res), r, item, it->attempt, "result.json") < 0 ||
	    attempt_path(lease, sizeof(lease), r, item, it->attempt, "lease") < 0)
		return AG_EINVALID;
	if (ag_exists(res)) {
		if ((rc = read_result(&result, res)) < 0)
			return rc;
		rc = finish(t, r, item, result, NULL);
		json_decref(result);
		return rc;
	}
	if (t->sup >= 0 && it->sup == t->sup_pid && !t->sweep && !it->cancel_req &&
	    !it->drop_req && !r->want_cancel &&
	    !(it->after && (r->want_pause || r->global_paused)))
		return 0;	/* serve's resident runs it, and holds its lease */
	was = it->sup;
	it->sup = 0;
	if (!ag_lock_held(lease)) {
		/* the supervisor is gone; it may have finished just now */
		if (ag_exists(res))
			return reap_item(t, r, item);
		if (read_pids(r, item, it->attempt, &pid, &pgid) < 0)
			return finish(t, r, item, NULL, "not started");
		kill_group(lease, pgid);
		return finish(t, r, item, NULL, "lease lost");
	}
	if (read_pids(r, item, it->attempt, &pid, &pgid) < 0) {
		/*
		 * Staged and not started yet, or just started: no pid yet.
		 * A staged one that must not start now goes back unstarted
		 * (a tick without serve's supervisor cannot reach it: it
		 * stops it once it runs).
		 */
		if (it->after && t->sup >= 0 && (it->cancel_req || it->drop_req ||
		    r->want_cancel || r->want_pause || r->global_paused) &&
		    ag_spawn_drop(t->sup, r->id, it->id, it->attempt) < 0)
			warn(t, "", ag_error_msg());
		it->sup = was;	/* whoever holds its lease still does */
		return 0;
	}
	/* a staged item may follow it: the resident starts that one when it ends */
	it->sup = pid;
	if ((it->cancel_req || it->drop_req || r->want_cancel) && pgid) {
		/* the supervisor stops that worker's group, then reports */
		union sigval v;
		v.sival_int = (int)pgid;
		sigqueue(pid, AG_SIG_CANCEL, v);
	}
	if (stat(lease, &st) == 0 &&
	    (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000 +
	    t->conf.lease_ttl_ms + t->conf.lease_grace_ms < t->now) {
		/* hung: renewals stopped; kill it, and the next tick sees the lease free */
		kill_group(lease, pgid);
		kill(pid, SIGKILL);
	}
	return 0;
}

/* ---- firing ---- */

static void
env_list_json(json_t *arr, char **names, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		json_array_append_new(arr, json_string(names[i]));
}

/* What the dispatch executor adds: the subagent and where the worktree comes from. */
static void
dispatch_spec(json_t *spec, const struct tick *t, const struct ag_executor *ex,
    const json_t *inputs)
{
	const char *name = json_string_value(json_object_get(inputs, "subagent"));
	const struct ag_subagent *a = name ? ag_conf_subagent(&t->conf, name) : NULL;
	json_t *repo = json_object_get(inputs, "repo"), *base = json_object_get(inputs, "base");

	if (!a) {
		json_object_set_new(spec, "error", json_sprintf("subagent '%s' is not configured",
		    name ? name : ""));
		return;
	}
	json_object_set_new(spec, "subagent", json_string(a->name));
	json_object_set_new(spec, "sh", json_string(a->command));
	env_list_json(json_object_get(spec, "passEnv"), a->passenv, a->npassenv);
	json_object_set_new(spec, "sandbox", json_string(a->sandbox ? a->sandbox : "none"));
	if (a->share_net)
		json_object_set_new(spec, "network", json_string("host"));
	if (json_is_string(repo))
		json_object_set(spec, "repo", repo);
	else if (ex->repo)
		json_object_set_new(spec, "repo", json_string(ex->repo));
	else
		json_object_set_new(spec, "error", json_sprintf("executor '%s' has no repo", ex->name));
	if (json_is_string(base))
		json_object_set(spec, "base", base);
	else
		json_object_set_new(spec, "base", json_string(ex->base ? ex->base : "HEAD"));
	json_object_set(spec, "workerInput", json_object_get(inputs, "workerInput") ?
	    json_object_get(inputs, "workerInput") : json_null());
}

/* Where an item stands in the run's topological order. */
static size_t
topo_pos(const struct ag_run *r, size_t item)
{
	size_t i;

	for (i = 0; i < r->nitems; i++)
		if (r->topo[i] == item)
			return i;
	return r->nitems;
}

static int
need_cmp(const void *a, const void *b)
{
	json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "order"));
	json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "order"));

	return x < y ? -1 : x > y;
}

/*
 * The products named by needs, from the item.done lines of the items
 * they come from: patches in dependency order, output files by key. An
 * upstream item that changed nothing gives no patch, and nothing to
 * apply; a product that is not there makes the attempt fail, for good.
 */
static void
resolve_needs(json_t *spec, const struct ag_run *r, const json_t *needs)
{
	json_t *list, *v, **sorted = NULL;
	const char *key;
	size_t n = 0, i;

	if (!json_object_size(needs) || json_object_get(spec, "error"))
		return;
	list = json_array();
	if (!(sorted = calloc(json_object_size(needs), sizeof(*sorted)))) {
		json_decref(list);
		return;
	}
	json_object_foreach((json_t *)needs, key, v) {
		const char *from = json_string_value(json_object_get(v, "from"));
		json_t *sel = json_object_get(v, "select"), *art = NULL, *e;
		const char *kind = json_string_value(json_object_get(sel, "kind"));
		const char *ref = NULL;
		size_t at;

		if (from && ag_run_item(r, from, &at) == 0 && r->items[at].status == AG_DONE &&
		    r->items[at].artifacts)
			art = json_loads(r->items[at].artifacts, 0, NULL);
		if (kind && strcmp(kind, "output") == 0) {
			const char *want = json_string_value(json_object_get(sel, "path"));
			size_t k;
			json_array_foreach(json_object_get(art, "outputs"), k, e)
				if (want && json_is_string(json_object_get(e, "path")) &&
				    strcmp(json_string_value(json_object_get(e, "path")), want) == 0)
					ref = json_string_value(json_object_get(e, "ref"));
		} else {
			ref = json_string_value(json_object_get(art, "resultRef"));
			if (!ref && from && ag_run_item(r, from, &at) == 0 &&
			    r->items[at].status == AG_DONE) {
				json_decref(art);
				continue;	/* it changed nothing */
			}
		}
		if (!ref || strncmp(ref, "git:", 4) != 0) {
			json_object_set_new(spec, "error", json_sprintf("unresolved needs '%s'", key));
			json_decref(art);
			break;
		}
		e = json_pack("{s:s, s:s, s:s, s:s}", "key", key, "from", from,
		    "kind", kind ? kind : "patch", "ref", ref + 4);
		ag_run_item(r, from, &at);
		json_object_set_new(e, "order", json_integer((json_int_t)topo_pos(r, at)));
		sorted[n++] = e;
		json_decref(art);
	}
	qsort(sorted, n, sizeof(*sorted), need_cmp);
	for (i = 0; i < n; i++) {
		json_object_del(sorted[i], "order");
		json_array_append_new(list, sorted[i]);
	}
	free(sorted);
	if (!json_object_get(spec, "error"))
		json_object_set_new(spec, "needs", list);
	else
		json_decref(list);
}

static json_t *
make_spec(const struct tick *t, const struct ag_run *r, size_t item, int attempt)
{
	const struct ag_item *it = &r->items[item];
	const char *exname = it->executor;
	const struct ag_executor *ex = ag_conf_executor(&t->conf, exname);
	json_t *plan_item = NULL, *inputs;
	json_t *spec = json_object(), *pass = json_array();

	if (ag_run_item_spec(&plan_item, r, item) < 0)
		json_object_set_new(spec, "error", json_string(ag_error_msg()));
	inputs = json_object_get(plan_item, "inputs");

	json_object_set_new(spec, "run", json_string(r->id));
	json_object_set_new(spec, "item", json_string(it->id));
	json_object_set_new(spec, "attempt", json_integer(attempt));
	json_object_set_new(spec, "executor", json_string(exname));
	json_object_set_new(spec, "kind", json_string(ex ? ex->kind : "exec"));
	if (json_object_get(inputs, "argv"))
		json_object_set(spec, "argv", json_object_get(inputs, "argv"));
	else if (json_object_get(inputs, "sh"))
		json_object_set(spec, "sh", json_object_get(inputs, "sh"));
	else if (ex && ex->command)
		json_object_set_new(spec, "sh", json_string(ex->command));
	if (json_object_get(inputs, "cwd"))
		json_object_set(spec, "cwd", json_object_get(inputs, "cwd"));
	if (json_object_get(inputs, "env"))
		json_object_set(spec, "env", json_object_get(inputs, "env"));
	json_object_set_new(spec, "timeoutMs", json_integer(it->timeout_ms));
	json_object_set_new(spec, "killGraceMs", json_integer(t->conf.kill_grace_ms));
	json_object_set_new(spec, "leaseTtlMs", json_integer(t->conf.lease_ttl_ms));
	env_list_json(pass, t->conf.passenv, t->conf.npassenv);
	if (ex)
		env_list_json(pass, ex->passenv, ex->npassenv);
	json_object_set_new(spec, "passEnv", pass);
	json_object_set(spec, "inputs", inputs);
	if (!ex)
		json_object_set_new(spec, "error", json_sprintf("executor '%s' is not configured",
		    exname));
	else if (strcmp(ex->kind, "dispatch") == 0)
		dispatch_spec(spec, t, ex, inputs);
	resolve_needs(spec, r, json_object_get(plan_item, "needs"));
	json_decref(plan_item);
	return spec;
}

static void
close_spawn(struct pending_spawn *s)
{
	size_t i;

	if (s->lease_fd >= 0)
		close(s->lease_fd);
	for (i = 0; i < s->nlocks; i++)
		if (s->lock_fds[i] >= 0)
			close(s->lock_fds[i]);
	free(s->lock_fds);
	s->lock_fds = NULL;
	s->lease_fd = -1;
	s->nlocks = 0;
}

/*
 * The products an attempt consumes, {key: "git:<blob>"}, or NULL: the
 * item.running line records them, so that the handoff closure of a
 * sealed run is read from the chain, not from files beside it.
 */
static json_t *
consumed_needs(const json_t *spec)
{
	json_t *list = json_object_get(spec, "needs"), *n, *out;
	size_t i;

	if (!json_array_size(list) || !(out = json_object()))
		return NULL;
	json_array_foreach(list, i, n) {
		const char *key = json_string_value(json_object_get(n, "key"));
		const char *ref = json_string_value(json_object_get(n, "ref"));
		if (key && ref)
			json_object_set_new(out, key, json_sprintf("git:%s", ref));
	}
	return out;
}

static int
fire(struct tick *t, struct ag_run *r, size_t item, size_t after)
{
	struct ag_item *it = &r->items[item];
	int attempt = it->attempt + 1;
	char path[AG_PATH_MAX], lname[256];
	struct pending_spawn s = { r, item, attempt, -1, NULL, 0, 0, after };
	json_t *spec, *ev, *needs = NULL;
	struct stat st;
	char *text;
	size_t k;
	int rc;

	if ((rc = ag_path(path, sizeof(path), "%s/items/%s", r->dir, it->id)) < 0)
		return rc;
	if ((rc = ag_mkdir(path, 0755)) == AG_ENOTFOUND) {
		/* the run's first fire makes items/ */
		char items[AG_PATH_MAX];
		if ((rc = ag_path(items, sizeof(items), "%s/items", r->dir)) < 0 ||
		    (rc = ag_mkdir(items, 0755)) < 0)
			return rc;
		rc = ag_mkdir(path, 0755);
	}
	if (rc < 0 || (rc = attempt_path(path, sizeof(path), r, item, attempt, NULL)) < 0)
		return rc;
	if (mkdir(path, 0755) < 0) {
		if (errno != EEXIST)
			return ag_error_sys(AG_ERROR, "cannot create directory '%s'", path);
		/* leftovers of a fire that crashed before its item.running line */
		if (attempt_path(path, sizeof(path), r, item, attempt, "result.json") == 0)
			unlink(path);
	}

	spec = make_spec(t, r, item, attempt);
	text = json_dumps(spec, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	needs = consumed_needs(spec);
	json_decref(spec);
	if (!text) {
		json_decref(needs);
		return ag_error_set(AG_ERROR, "out of memory");
	}
	if ((rc = attempt_path(path, sizeof(path), r, item, attempt, "spec.json")) == 0)
		rc = ag_write_fresh(path, text, strlen(text), 0644);
	free(text);
	if (rc < 0)
		goto fail;
	ag_crash_point("fire-spec");

	if ((rc = attempt_path(path, sizeof(path), r, item, attempt, "lease")) < 0 ||
	    (rc = ag_lock_open(&s.lease_fd, path, 1)) < 0)
		goto fail;
	/*
	 * A fire that crashed before its item.running line started nobody.
	 * Truncating a new, empty lease would cost a flush when it is closed
	 * (ext4 writes a file truncated to zero out at its close).
	 */
	if (fstat(s.lease_fd, &st) < 0 || (st.st_size > 0 && ftruncate(s.lease_fd, 0) < 0)) {
		rc = ag_error_sys(AG_ERROR, "cannot truncate '%s'", path);
		goto fail;
	}
	s.lock_fds = calloc(it->nlocks + 1, sizeof(int));
	if (!s.lock_fds) {
		rc = ag_error_set(AG_ERROR, "out of memory");
		goto fail;
	}
	for (k = 0; k < it->nlocks; k++)
		s.lock_fds[k] = -1;
	s.nlocks = it->nlocks;
	for (k = 0; k < it->nlocks; k++) {
		size_t m;
		int dup = 0;
		/* the same key twice in one item is one lock */
		for (m = 0; m < k; m++)
			dup |= strcmp(it->locks[m], it->locks[k]) == 0;
		if (dup)
			continue;
		if ((rc = ag_lock_filename(lname, sizeof(lname), it->locks[k])) < 0 ||
		    (rc = ag_path(path, sizeof(path), "%s/locks/%s", t->dir, lname)) < 0 ||
		    (rc = ag_lock_open(&s.lock_fds[k], path, 1)) < 0)
			goto fail;
	}
	ev = item_event(r, "item.running", "running", attempt);
	if (after) {
		/* staged: it starts when this attempt ends, and takes its place */
		json_object_set_new(ev, "after", json_string(r->items[after - 1].id));
		json_object_set_new(ev, "afterAttempt", json_integer(r->items[after - 1].attempt));
	}
	if (needs) {
		json_object_set_new(ev, "needs", needs);
		needs = NULL;
	}
	if ((rc = emit_item_ev(t, r, item, ev)) < 0)
		goto fail;
	ag_crash_point("fire-log");
	t->spawns[t->nspawns++] = s;
	t->stats->fired++;
	return 0;
fail:
	json_decref(needs);
	close_spawn(&s);
	return rc;
}

static size_t
spawn_fds(int *fds, const struct pending_spawn *s)
{
	size_t k, n;

	for (k = 0, n = 0; k < s->nlocks; k++)
		if (s->lock_fds[k] >= 0)
			fds[n++] = s->lock_fds[k];
	return n;
}

/* serve starts another resident supervisor before its next tick */
static void
drop_resident(struct tick *t, const struct ag_tick_opts *o)
{
	close(*o->sup);
	*o->sup = -1;
	t->sup = -1;
}

/*
 * Before the group fsync, serve's resident supervisor gets each attempt
 * to prepare: its files, the worker's argv and environment. It starts
 * none of them before spawn_all says "go", after the fsync, so the
 * preparation overlaps the wait for the disk without breaking the rule
 * that an intent is durable before its attempt starts.
 */
static void
offer_all(struct tick *t, const struct ag_tick_opts *o)
{
	size_t i, n;

	for (i = 0; i < t->nspawns && o->sup && *o->sup >= 0; i++) {
		struct pending_spawn *s = &t->spawns[i];
		int fds[AG_LOCKS_MAX], sent;
		const struct ag_item *lead = s->after ? &s->run->items[s->after - 1] : NULL;
		n = spawn_fds(fds, s);
		sent = ag_spawn_send(*o->sup, s->run->id, s->run->items[s->item].id, s->attempt,
		    lead ? lead->id : NULL, lead ? lead->attempt : 0, s->lease_fd, fds, n);
		/*
		 * The ones it already got go with it, unstarted: the next tick
		 * requeues them. Starting them here as well could race with
		 * a preparation it still makes of them.
		 */
		if (sent == AG_ERROR) {
			warn(t, "", ag_error_msg());
			drop_resident(t, o);
		}
		s->offered = sent == 0;
		if (s->offered)
			s->run->items[s->item].sup = t->sup_pid;
	}
}

static int
spawn_all(struct tick *t, const struct ag_tick_opts *o)
{
	size_t i, n;
	int rc = 0, offered = 0;

	for (i = 0; i < t->nspawns; i++)
		offered |= t->spawns[i].offered;
	if (offered && *o->sup >= 0 && ag_spawn_go(*o->sup) < 0) {
		/* it drops what it holds; the next tick requeues those, not started */
		warn(t, "", ag_error_msg());
		drop_resident(t, o);
	}
	for (i = 0; i < t->nspawns; i++) {
		struct pending_spawn *s = &t->spawns[i];
		const char *item = s->run->items[s->item].id;
		int fds[AG_LOCKS_MAX];
		n = spawn_fds(fds, s);
		/*
		 * A staged attempt no resident holds must not start beside the
		 * one it follows: its lease let go with no worker named in
		 * it, the next tick requeues it, not started.
		 */
		if (!s->offered && !s->after && ag_spawn_supervisor(t->dir, s->run->id, item,
		    s->attempt, s->lease_fd, fds, n) < 0 && rc == 0) {
			/* the next tick finds the lease free and calls the attempt lost */
			warn(t, "", ag_error_msg());
			rc = AG_ERROR;
		}
		close_spawn(s);
		ag_crash_point("fire-spawn");
	}
	t->nspawns = 0;
	return 0;
}

/* ---- ingest ---- */

static int64_t
name_time_us(const char *name)
{
	long long sec = 0, usec = 0;

	if (sscanf(name, "%lld.%lld", &sec, &usec) < 1)
		return 0;
	return (int64_t)sec * 1000000 + usec;
}

static void
remove_run_tmp(const char *dir)
{
	static const char *const files[] = { "plan.json", "status.jsonl", "control" };
	char path[AG_PATH_MAX];
	size_t i;

	for (i = 0; i < sizeof(files) / sizeof(*files); i++)
		if (ag_path(path, sizeof(path), "%s/%s", dir, files[i]) == 0)
			unlink(path);
	rmdir(dir);
}

static int
reject(struct tick *t, const char *name, const char *why)
{
	char from[AG_PATH_MAX], to[AG_PATH_MAX], err[AG_PATH_MAX];
	int rc;

	if ((rc = ag_path(from, sizeof(from), "%s/inbox/new/%s", t->dir, name)) < 0 ||
	    (rc = ag_path(to, sizeof(to), "%s/inbox/rejected/%s", t->dir, name)) < 0 ||
	    (rc = ag_path(err, sizeof(err), "%s/inbox/rejected/%s.err", t->dir, name)) < 0)
		return rc;
	if ((rc = ag_write_atomic(err, why, strlen(why), 0644)) < 0)
		return rc;
	ag_crash_point("ingest-reject");
	if (rename(from, to) < 0)
		return ag_error_sys(AG_ERROR, "cannot move '%s' to '%s'", from, to);
	t->stats->rejected++;
	return ag_fsync_parent(to);
}

static int
create_run(struct tick *t, struct ag_plan *plan, const char *id, const char *name)
{
	char tmp[AG_PATH_MAX], path[AG_PATH_MAX], dst[AG_PATH_MAX], zeros[65], at[AG_TIME_LEN];
	char plansum[65];
	json_t *ev;
	char *line = NULL;
	int rc;

	if ((rc = ag_path(tmp, sizeof(tmp), "%s/runs/.new-%s", t->dir, id)) < 0 ||
	    (rc = ag_path(dst, sizeof(dst), "%s/runs/%s", t->dir, id)) < 0)
		return rc;
	remove_run_tmp(tmp);
	if (mkdir(tmp, 0755) < 0)
		return ag_error_sys(AG_ERROR, "cannot create '%s'", tmp);
	json_object_set_new(plan->head, "submittedAt", json_integer(name_time_us(name)));
	json_object_set_new(plan->head, "source", json_string(name));
	if ((rc = ag_path(path, sizeof(path), "%s/plan.json", tmp)) < 0 ||
	    (rc = ag_plan_save_sum(path, plan, 1, 0444, plansum)) < 0)
		goto out;
	memset(zeros, '0', 64);
	zeros[64] = '\0';
	ag_time_fmt(at, ag_now_ms());
	ev = json_object();
	json_object_set_new(ev, "seq", json_integer(0));
	json_object_set_new(ev, "at", json_string(at));
	json_object_set_new(ev, "run", json_string(id));
	json_object_set_new(ev, "event", json_string("run.submitted"));
	json_object_set(ev, "actor", json_object_get(plan->head, "actor"));
	json_object_set(ev, "queue", json_object_get(plan->head, "queue"));
	json_object_set_new(ev, "items", json_integer((json_int_t)plan->nitems));
	/* the chain binds plan.json's exact bytes, so a bundle's plan can be checked */
	json_object_set_new(ev, "planSha256", json_string(plansum));
	json_object_set_new(ev, "globalOffset", json_integer((json_int_t)global_whole_len(t)));
	json_object_set_new(ev, "globalPaused", json_boolean(t->global_paused));
	json_object_set_new(ev, "prev", json_string(zeros));
	line = ag_json_line(ev);
	json_decref(ev);
	if (!line) {
		rc = ag_error_set(AG_ERROR, "out of memory");
		goto out;
	}
	if ((rc = ag_path(path, sizeof(path), "%s/status.jsonl", tmp)) < 0 ||
	    (rc = ag_create_excl(path, line, strlen(line), 0644)) < 0 ||
	    (rc = ag_path(path, sizeof(path), "%s/control", tmp)) < 0 ||
	    (rc = ag_create_excl(path, "", 0, 0644)) < 0)
		goto out;
	if (rename(tmp, dst) < 0) {
		rc = ag_error_sys(AG_ERROR, "cannot rename '%s' to '%s'", tmp, dst);
		goto out;
	}
	rc = ag_fsync_parent(dst);
	ag_crash_point("ingest-run");
out:
	if (rc < 0)
		remove_run_tmp(tmp);
	free(line);
	return rc;
}

static int
activate(struct tick *t, const char *id)
{
	char path[AG_PATH_MAX];
	int rc;

	if ((rc = ag_path(path, sizeof(path), "%s/active/%s", t->dir, id)) < 0)
		return rc;
	if (ag_exists(path))
		return 0;
	rc = ag_create_excl(path, "", 0, 0644);
	ag_crash_point("ingest-active");
	return rc == AG_EEXISTS ? 0 : rc;
}

/*
 * The plan.json "source" of an existing run, to tell a re-delivery from a
 * clash. Only the first line is read: it holds the run's own fields.
 */
static int
same_source(const char *dir, const char *id, const char *name)
{
	static const char tail[] = ",\"items\":[";
	char path[AG_PATH_MAX], *line = NULL;
	size_t cap = 0;
	ssize_t len;
	json_t *p = NULL;
	FILE *f;
	int same;

	if (ag_path(path, sizeof(path), "%s/runs/%s/plan.json", dir, id) < 0 ||
	    !(f = fopen(path, "re")))
		return 0;
	len = getline(&line, &cap, f);
	fclose(f);
	if (len > (ssize_t)sizeof(tail) && line[len - 1] == '\n' &&
	    memcmp(line + len - sizeof(tail), tail, sizeof(tail) - 1) == 0) {
		line[len - sizeof(tail)] = '}';
		p = json_loadb(line, (size_t)len - sizeof(tail) + 1, 0, NULL);
	}
	free(line);
	same = p && json_is_string(json_object_get(p, "source")) &&
	    strcmp(json_string_value(json_object_get(p, "source")), name) == 0;
	json_decref(p);
	return same;
}

static int
ingest_one(struct tick *t, const char *name)
{
	char path[AG_PATH_MAX], to[AG_PATH_MAX], msg[512];
	struct ag_plan_opts po = { 0 };
	struct ag_buf text, errs;
	struct ag_plan plan = { 0 };
	const char *id;
	int rc;

	if ((rc = ag_path(path, sizeof(path), "%s/inbox/new/%s", t->dir, name)) < 0 ||
	    (rc = ag_path(to, sizeof(to), "%s/inbox/cur/%s", t->dir, name)) < 0)
		return rc;
	ag_buf_init(&errs, 4u << 20);
	if ((rc = ag_read_file(&text, path, (size_t)AG_PLAN_MAX + 1)) < 0) {
		if (rc != AG_EINVALID)
			return rc;
		snprintf(msg, sizeof(msg), "%s\n", ag_error_msg());
		return reject(t, name, msg);
	}
	snprintf(msg, sizeof(msg), "inbox/new/%s", name);
	po.name = msg;
	rc = ag_plan_parse(&plan, &errs, &t->conf, text.ptr, text.len, &po);
	ag_buf_release(&text);
	if (rc < 0 && rc != AG_EINVALID)
		goto out;	/* a temporary fault: the plan waits for the next tick */
	if (rc < 0) {
		rc = reject(t, name, errs.ptr ? errs.ptr : "invalid plan\n");
		goto out;
	}
	id = json_string_value(json_object_get(plan.head, "id"));
	if (!id) {
		rc = reject(t, name, "plan has no run id\n");
		goto out;
	}
	if (!json_object_get(plan.head, "actor"))
		json_object_set_new(plan.head, "actor", json_string("unknown"));
	if ((rc = ag_path(path, sizeof(path), "%s/runs/%s", t->dir, id)) < 0)
		goto out;
	if (ag_exists(path)) {
		if (!same_source(t->dir, id, name)) {
			snprintf(msg, sizeof(msg), "run id '%s' already exists\n", id);
			rc = reject(t, name, msg);
			goto out;
		}
	} else if ((rc = create_run(t, &plan, id, name)) < 0) {
		goto out;
	}
	if ((rc = activate(t, id)) < 0)
		goto out;
	if ((rc = ag_path(path, sizeof(path), "%s/inbox/new/%s", t->dir, name)) < 0)
		goto out;
	if (rename(path, to) < 0) {
		rc = ag_error_sys(AG_ERROR, "cannot move '%s' to '%s'", path, to);
		goto out;
	}
	rc = ag_fsync_parent(to);
	t->stats->ingested++;
	ag_crash_point("ingest-done");
out:
	ag_buf_release(&errs);
	ag_plan_release(&plan);
	return rc;
}

static int
ingest(struct tick *t)
{
	char path[AG_PATH_MAX];
	char **names;
	size_t n, i;
	int rc;

	if (t->skip & AG_SKIP_INBOX)
		return 0;
	if ((rc = ag_path(path, sizeof(path), "%s/inbox/new", t->dir)) < 0 ||
	    (rc = list_dir(&names, &n, path)) < 0)
		return rc;
	for (i = 0; i < n; i++)
		if ((rc = ingest_one(t, names[i])) < 0) {
			warn(t, "ingest", ag_error_msg());
			if (rc != AG_EINVALID)
				break;
		}
	free_list(names, n);
	return 0;
}

/* ---- runs ---- */

static int
load_runs(struct tick *t, struct ag_tick_cache *cache)
{
	char path[AG_PATH_MAX];
	char **ids;
	size_t n, i, j;
	int rc;

	if (cache && !cache->relist && !t->stats->ingested && (t->skip & AG_SKIP_ACTIVE)) {
		/* active/ holds what the cache holds: the runs of the last tick */
		n = cache->nruns;
		if (!(ids = calloc(n + 1, sizeof(*ids))))
			return ag_error_set(AG_ERROR, "out of memory");
		for (i = 0; i < n; i++)
			if (!(ids[i] = strdup(cache->runs[i]->id))) {
				free_list(ids, i);
				return ag_error_set(AG_ERROR, "out of memory");
			}
	} else if ((rc = ag_path(path, sizeof(path), "%s/active", t->dir)) < 0 ||
	    (rc = list_dir(&ids, &n, path)) < 0) {
		return rc;
	}
	if (cache)
		cache->relist = 0;
	t->runs = calloc(n + 1, sizeof(*t->runs));
	if (!t->runs) {
		free_list(ids, n);
		return ag_error_set(AG_ERROR, "out of memory");
	}
	for (i = 0; i < n; i++) {
		struct ag_run *r = NULL;
		if (cache) {
			for (j = 0; j < cache->nruns; j++) {
				struct stat st;
				struct ag_run *c = cache->runs[j];
				if (!c || strcmp(c->id, ids[i]) != 0)
					continue;
				/* reuse it unless another tick appended since */
				if (ag_path(path, sizeof(path), "%s/status.jsonl", c->dir) == 0 &&
				    stat(path, &st) == 0 && st.st_size == c->log_size)
					r = c;
				else
					ag_run_free(c);
				cache->runs[j] = NULL;
				break;
			}
		}
		if (!r && ag_run_load(&r, &t->conf, ids[i], 1) < 0) {
			warn(t, "", ag_error_msg());
			if (cache)
				cache->relist = 1;
			continue;
		}
		t->runs[t->nruns++] = r;
	}
	free_list(ids, n);
	if (cache) {
		for (j = 0; j < cache->nruns; j++)
			ag_run_free(cache->runs[j]);
		cache->nruns = 0;
	}
	return 0;
}

static int
enforce(struct tick *t, struct ag_run *r)
{
	int want = r->want_pause || r->global_paused;
	json_t *ev;
	size_t i;
	int rc;

	if (want != r->paused) {
		ev = ag_event_new(r, want ? "run.paused" : "run.resumed");
		if (r->global_paused)
			json_object_set_new(ev, "reason", json_string("global"));
		t->stats->events++;
		if ((rc = ag_run_emit(r, ev)) < 0)
			return rc;
	}
	if (r->want_cancel && !r->cancelled) {
		t->stats->events++;
		if ((rc = ag_run_emit(r, ag_event_new(r, "run.cancelled"))) < 0)
			return rc;
	}
	if (!r->want_cancel && (!r->any_cancel_req || (!r->count[AG_PENDING] &&
	    !r->count[AG_READY])))
		return 0;
	for (i = 0; i < r->nitems; i++) {
		struct ag_item *it = &r->items[i];
		if ((it->status == AG_PENDING || it->status == AG_READY) &&
		    (it->cancel_req || r->want_cancel)) {
			ev = item_event(r, "item.cancelled", "cancelled", 0);
			json_object_set_new(ev, "reason", json_string("cancelled"));
			if ((rc = emit_item_ev(t, r, i, ev)) < 0)
				return rc;
		}
	}
	return 0;
}

static int
u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static int
reap(struct tick *t, struct ag_run *r)
{
	size_t i, n = r->nrunning;
	uint32_t *v;
	int rc = 0;

	if (!n)
		return 0;
	/* reaping takes items off the list it walks: walk a copy, in plan order */
	if (!(v = malloc(n * sizeof(*v))))
		return ag_error_set(AG_ERROR, "out of memory");
	memcpy(v, r->running, n * sizeof(*v));
	qsort(v, n, sizeof(*v), u32_cmp);
	for (i = 0; i < n && rc == 0; i++)
		if (r->items[v[i]].status == AG_RUNNING)
			rc = reap_item(t, r, v[i]);
	free(v);
	return rc < 0 ? rc : 0;
}

static int
advance(struct tick *t, struct ag_run *r)
{
	struct ag_actions a = { 0 };
	size_t i;
	int rc;

	if ((rc = ag_sched_advance(&a, r)) < 0)
		return rc;
	for (i = 0; i < a.len && rc == 0; i++) {
		json_t *ev;
		if (a.v[i].kind == AG_ACT_READY) {
			ev = item_event(r, "item.ready", "ready", 0);
		} else {
			ev = item_event(r, "item.skipped", "skipped", 0);
			json_object_set_new(ev, "reason", json_string(a.v[i].reason));
			json_object_set_new(ev, "blockedBy", json_string(a.v[i].blocked_by));
		}
		rc = emit_item_ev(t, r, a.v[i].item, ev);
	}
	ag_actions_release(&a);
	return rc;
}

static int
complete(struct tick *t, struct ag_run *r)
{
	const char *outcome;
	json_t *ev, *counts;
	size_t i;
	int rc;

	if (r->completed || r->count[AG_PENDING] || r->count[AG_READY] || r->count[AG_RUNNING])
		return 0;
	if (r->cancelled)
		outcome = "cancelled";
	else if (r->count[AG_DONE] == r->nitems)
		outcome = "succeeded";
	else
		outcome = "failed";
	ev = ag_event_new(r, "run.completed");
	json_object_set_new(ev, "status", json_string(outcome));
	counts = json_object();
	for (i = AG_DONE; i < AG_NSTATUS; i++)
		json_object_set_new(counts, ag_status_names[i], json_integer((json_int_t)r->count[i]));
	json_object_set_new(ev, "counts", counts);
	t->stats->events++;
	if ((rc = ag_run_emit(r, ev)) < 0)
		return rc;
	t->stats->completed++;
	ag_crash_point("complete-log");
	return 0;
}

/* After run.completed is durable: the checkpoint, the global log, run.sealed. */
static int
seal(struct tick *t, struct ag_run *r)
{
	struct ag_seal s;
	char why[512];
	int rc;

	if (!t->key && (rc = ag_signing_key(&t->key, t->dir)) < 0) {
		snprintf(why, sizeof(why), "%s", ag_error_msg());
		return ag_error_set(rc, "cannot seal run '%s': %s", r->id, why);
	}
	return ag_seal_run(&s, t->dir, r, t->key);
}

/* Before the run leaves active/: its anchors are owed, until they are all done. */
static int
mark_pending(struct tick *t, struct ag_run *r)
{
	char path[AG_PATH_MAX];
	int rc;

	if ((rc = ag_path(path, sizeof(path), "%s/audit/pending", t->dir)) < 0 ||
	    (rc = ag_mkdir_p(path, 0755)) < 0 ||
	    (rc = ag_path(path, sizeof(path), "%s/audit/pending/%s", t->dir, r->id)) < 0)
		return rc;
	if (ag_exists(path))
		return 0;
	rc = ag_create_excl(path, "", 0, 0644);
	ag_crash_point("anchor-pending");
	return rc == AG_EEXISTS ? 0 : rc;
}

/*
 * Hand the checkpoints of sealed runs to the anchors. A run stays in
 * audit/pending/ until every anchor has taken it: a failing anchor is
 * tried again at every tick, and said so each time.
 */
static void
anchor_pending(struct tick *t)
{
	char path[AG_PATH_MAX];
	struct ag_buf fails;
	char **ids;
	size_t n, i;

	if (ag_path(path, sizeof(path), "%s/audit/pending", t->dir) < 0 || !ag_exists(path) ||
	    list_dir(&ids, &n, path) < 0)
		return;
	ag_buf_init(&fails, 1u << 20);
	for (i = 0; i < n; i++) {
		ag_buf_reset(&fails);
		if (!ag_id_valid(ids[i]))
			continue;
		if (ag_anchor_run(t->confp ? t->confp : &t->conf, ids[i], &fails) > 0) {
			fails.ptr[fails.len - 1] = '\0';
			warn(t, "", fails.ptr);
			continue;
		}
		if (ag_path(path, sizeof(path), "%s/audit/pending/%s", t->dir, ids[i]) == 0 &&
		    unlink(path) == 0)
			ag_fsync_parent(path);
	}
	ag_buf_release(&fails);
	free_list(ids, n);
}

static int
deactivate(struct tick *t, struct ag_run *r)
{
	char path[AG_PATH_MAX];
	int rc;

	if ((rc = ag_run_snapshot(r)) < 0)
		return rc;
	if ((rc = ag_path(path, sizeof(path), "%s/active/%s", t->dir, r->id)) < 0)
		return rc;
	if (unlink(path) < 0 && errno != ENOENT)
		return ag_error_sys(AG_ERROR, "cannot remove '%s'", path);
	rc = ag_fsync_parent(path);
	ag_crash_point("complete-active");
	return rc;
}

static int
pick(struct tick *t)
{
	struct ag_actions a = { 0 };
	size_t i, nfire = 0;
	int rc;

	if ((rc = ag_sched_pick(&a, t->runs, t->nruns, &t->conf, t->now,
	    t->sup >= 0 ? t->sup_pid : 0)) < 0)
		return rc;
	for (i = 0; i < a.len; i++)
		nfire += a.v[i].kind == AG_ACT_FIRE || a.v[i].kind == AG_ACT_STAGE;
	t->spawns = calloc(nfire + 1, sizeof(*t->spawns));
	if (!t->spawns) {
		ag_actions_release(&a);
		return ag_error_set(AG_ERROR, "out of memory");
	}
	for (i = 0; i < a.len && rc == 0; i++) {
		struct ag_action *x = &a.v[i];
		if (x->kind == AG_ACT_WAIT && x->until > t->now &&
		    (!t->stats->next_at || x->until < t->stats->next_at))
			t->stats->next_at = x->until;
		if (x->kind == AG_ACT_FIRE || x->kind == AG_ACT_STAGE) {
			rc = fire(t, x->run, x->item, x->kind == AG_ACT_STAGE ? x->after + 1 : 0);
			if (rc == AG_ELOCKED) {
				/* a lock agora does not know of: try again next tick */
				warn(t, "", ag_error_msg());
				rc = 0;
			}
		} else if (x->kind == AG_ACT_FAIL) {
			json_t *ev = item_event(x->run, "item.failed", "failed", 0);
			json_object_set_new(ev, "reason", json_string(x->reason));
			rc = emit_item_ev(t, x->run, x->item, ev);
		}
	}
	ag_actions_release(&a);
	return rc;
}

static void
release_runs(struct tick *t, struct ag_tick_cache *cache)
{
	size_t i;

	for (i = 0; i < t->nruns; i++) {
		struct ag_run *r = t->runs[i];
		if (cache && !r->completed) {
			struct ag_run **nv = realloc(cache->runs, (cache->nruns + 1) * sizeof(*nv));
			if (nv) {
				cache->runs = nv;
				cache->runs[cache->nruns++] = r;
				continue;
			}
		}
		if (cache)
			cache->relist = 1;	/* it left active/, or should have */
		ag_run_free(r);
	}
	free(t->runs);
	t->runs = NULL;
	t->nruns = 0;
}

/*
 * agora-serve keeps agora.conf between ticks and reads it again only when
 * the file changed; runs loaded under the old one are loaded afresh.
 */
static int
load_conf(struct tick *t, const char *dir, struct ag_tick_cache **cachep)
{
	char path[AG_PATH_MAX];
	struct ag_tick_cache *c = cachep ? *cachep : NULL;
	struct stat st;
	size_t i;
	int rc;

	if (!c || ag_path(path, sizeof(path), "%s/agora.conf", dir) < 0 || stat(path, &st) < 0)
		return ag_conf_load(&t->conf, dir);
	if (c->have_conf && st.st_ino == c->conf_st.st_ino && st.st_size == c->conf_st.st_size &&
	    st.st_mtim.tv_sec == c->conf_st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == c->conf_st.st_mtim.tv_nsec) {
		t->conf = c->conf;
		t->confp = &c->conf;
		return 0;
	}
	if ((rc = ag_conf_load(&t->conf, dir)) < 0)
		return rc;
	if (c->have_conf)
		ag_conf_release(&c->conf);
	for (i = 0; i < c->nruns; i++)
		ag_run_free(c->runs[i]);
	c->nruns = 0;
	c->conf = t->conf;
	c->conf_st = st;
	c->have_conf = 1;
	t->confp = &c->conf;
	return 0;
}

void
ag_tick_cache_free(struct ag_tick_cache *c)
{
	size_t i;

	if (!c)
		return;
	if (c->have_conf)
		ag_conf_release(&c->conf);
	for (i = 0; i < c->nruns; i++)
		ag_run_free(c->runs[i]);
	free(c->runs);
	free(c);
}

/* No entry but . and .. (or no directory at all). */
int
ag_tick(struct ag_tick_stats *out, const char *dir, const struct ag_tick_opts *o,
    struct ag_tick_cache **cachep)
{
	struct tick t;
	struct ag_tick_cache *cache = NULL;
	char path[AG_PATH_MAX];
	int lockfd = -1, rc;
	size_t i, sealed = 0;

	memset(out, 0, sizeof(*out));
	memset(&t, 0, sizeof(t));
	t.dir = dir;
	t.stats = out;
	t.sup = o->sup ? *o->sup : -1;
	t.sup_pid = o->sup_pid;
	t.skip = o->skip;
	ag_buf_init(&t.warn, 1u << 20);
	ag_buf_init(&t.global, 0);
	/* one tick at a time all the same: -n still says when another holds the lock */
	if (!cachep && ag_tick_idle(dir)) {
		if ((rc = ag_path(path, sizeof(path), "%s/tick.lock", dir)) == 0 &&
		    (rc = ag_lock_open(&lockfd, path, o->nonblock)) == AG_ELOCKED)
			rc = ag_error_set(AG_ELOCKED, "another tick holds '%s'", path);
		goto out;
	}
	if ((rc = load_conf(&t, dir, cachep)) < 0)
		goto out;
	if ((rc = ag_path(path, sizeof(path), "%s/tick.lock", dir)) < 0 ||
	    (rc = ag_lock_open(&lockfd, path, o->nonblock)) < 0) {
		if (rc == AG_ELOCKED)
			rc = ag_error_set(AG_ELOCKED, "another tick holds '%s'", path);
		goto out;
	}
	if (cachep) {
		if (!*cachep) {
			if (!(*cachep = calloc(1, sizeof(**cachep)))) {
				rc = ag_error_set(AG_ERROR, "out of memory");
				goto out;
			}
			(*cachep)->relist = 1;
		}
		cache = *cachep;
	}
	ag_spawn_reap();
	t.now = ag_now_ms();
	if (t.sup >= 0) {
		struct pollfd p = { t.sup, 0, 0 };
		/* a resident that is gone lets go of its leases: look at them all */
		if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR)))
			drop_resident(&t, o);
	}
	t.sweep = !cache || t.sup < 0 || t.now - cache->last_sweep >= SWEEP_MS;
	if (cache && t.sweep)
		cache->last_sweep = t.now;
	read_global(&t);
	if ((rc = ingest(&t)) < 0)
		goto out;
	if ((rc = load_runs(&t, cache)) < 0)
		goto out;
	for (i = 0; i < t.nruns; i++) {
		struct ag_run *r = t.runs[i];
		if (r->completed)
			continue;	/* a crash left it in active/: only deactivate it */
		if ((rc = apply_control(&t, r)) < 0 || (rc = enforce(&t, r)) < 0 ||
		    (rc = reap(&t, r)) < 0 || (rc = enforce(&t, r)) < 0 ||
		    (rc = advance(&t, r)) < 0) {
			warn(&t, "", ag_error_msg());
			rc = 0;
		}
	}
	if ((rc = pick(&t)) < 0)
		warn(&t, "", ag_error_msg());
	for (i = 0; i < t.nruns; i++)
		if (complete(&t, t.runs[i]) < 0)
			warn(&t, "", ag_error_msg());
	offer_all(&t, o);
	if (t.nspawns && o->sup && *o->sup >= 0)
		ag_crash_point("fire-offer");
	/* group fsync: one per run per tick, before any attempt starts */
	for (i = 0; i < t.nruns; i++)
		if ((rc = ag_run_sync(t.runs[i])) < 0) {
			if (o->sup && *o->sup >= 0)
				drop_resident(&t, o);	/* what it holds must never start */
			goto out;
		}
	spawn_all(&t, o);
	for (i = 0; i < t.nruns; i++) {
		struct ag_run *r = t.runs[i];
		if (r->completed) {
			/* a run that cannot be sealed stays active: the next tick tries again */
			if ((!r->sealed && seal(&t, r) < 0) || mark_pending(&t, r) < 0 ||
			    deactivate(&t, r) < 0)
				warn(&t, "", ag_error_msg());
			else
				sealed++;
		} else if (r->changed && (!cache || t.now - cache->last_snapshot >= 2000)) {
			if (ag_run_snapshot(r) < 0)
				warn(&t, "", ag_error_msg());
			r->changed = 0;
		}
	}
	if (cache && t.now - cache->last_snapshot >= 2000)
		cache->last_snapshot = t.now;
	if (!cache || sealed || t.now - cache->last_anchor >= ANCHOR_RETRY_MS) {
		anchor_pending(&t);
		if (cache)
			cache->last_anchor = t.now;
	}
	rc = 0;
out:
	for (i = 0; i < t.nspawns; i++)
		close_spawn(&t.spawns[i]);
	free(t.spawns);
	release_runs(&t, cache);
	ag_key_free(t.key);
	if (lockfd >= 0)
		close(lockfd);
	if (!cache || &cache->conf != t.confp)
		ag_conf_release(&t.conf);
	ag_buf_release(&t.global);
	if (t.warn.len && rc == 0) {
		/* the tick went on; say what it skipped */
		ag_error_set(0, "%.*s", (int)t.warn.len - 1, t.warn.ptr);
		rc = 1;
	}
	ag_buf_release(&t.warn);
	return rc;
}
