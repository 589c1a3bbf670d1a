/*
 * agora-exec, the supervisor. For each attempt it holds the lease and the
 * resource-lock descriptors until the attempt ends, renews the lease every
 * ttl/3, runs the worker in its own process group with a clean
 * environment, enforces the timeout, carries out a cancel, kills the
 * whole group at the end, and writes result.json atomically.
 *
 * A tick started by cron starts one supervisor per attempt (the lease as
 * fd 3, the locks from fd 4 on). agora-serve starts one resident
 * supervisor instead and hands it each attempt's descriptors over a
 * socket: the same loop, without an exec per attempt. Either way the
 * supervisor outlives the tick that started it.
 */
#include "agora.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "banned.h"

extern char **environ;

struct envv {
	char **v;
	size_t len, cap;
};

static int
env_add(struct envv *e, const char *name, const char *value)
{
	struct ag_buf b;
	size_t i, nlen = strlen(name);

	if (!value)
		return 0;
	ag_buf_init(&b, AG_STRING_MAX * 2);
	if (ag_buf_printf(&b, "%s=%s", name, value) < 0)
		return AG_ERROR;
	for (i = 0; i < e->len; i++)
		if (strncmp(e->v[i], name, nlen) == 0 && e->v[i][nlen] == '=') {
			free(e->v[i]);
			e->v[i] = ag_buf_detach(&b);
			return 0;
		}
	if (e->len + 2 > e->cap) {
		size_t ncap = e->cap ? e->cap * 2 : 32;
		char **nv = realloc(e->v, ncap * sizeof(*nv));
		if (!nv) {
			ag_buf_release(&b);
			return ag_error_set(AG_ERROR, "out of memory");
		}
		e->v = nv;
		e->cap = ncap;
	}
	e->v[e->len++] = ag_buf_detach(&b);
	e->v[e->len] = NULL;
	return 0;
}

static void
env_free(struct envv *e)
{
	size_t i;

	for (i = 0; i < e->len; i++)
		free(e->v[i]);
	free(e->v);
}

struct result {
	int exited;
	int code;
	int sig;
	int timed_out;
	int terminated;
	int permanent;
	char reason[512];
	int64_t started, ended;
	json_t *extra;		/* what a capture adds: resultRef, outputs, ... */
};

static int
write_result(const char *adir, const struct result *res, const char *dir, int *wake)
{
	char path[AG_PATH_MAX], t0[AG_TIME_LEN], t1[AG_TIME_LEN];
	json_t *o = json_object();
	char *s;
	int rc;

	json_object_set_new(o, "exit", res->exited ? json_integer(res->code) : json_null());
	json_object_set_new(o, "signal", res->sig ? json_integer(res->sig) : json_null());
	if (res->reason[0])
		json_object_set_new(o, "reason", json_string(res->reason));
	if (res->permanent)
		json_object_set_new(o, "permanent", json_true());
	ag_time_fmt(t0, res->started);
	ag_time_fmt(t1, res->ended);
	json_object_set_new(o, "startedAt", json_string(t0));
	json_object_set_new(o, "endedAt", json_string(t1));
	json_object_set_new(o, "durationMs", json_integer(res->ended - res->started));
	if (res->extra)
		json_object_update(o, res->extra);
	s = json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!s)
		return ag_error_set(AG_ERROR, "out of memory");
	rc = ag_path(path, sizeof(path), "%s/result.json", adir);
	if (rc == 0)
		rc = ag_write_replace(path, s, strlen(s), 0644);
	free(s);
	ag_wake_fd(wake, dir);
	return rc;
}

static int
build_env(struct envv *e, const json_t *spec, const char *dir, const char *adir,
    const char *run, const char *item, const char *attempt)
{
	static const char *const keep[] = { "HOME", "LANG", "LC_ALL", "TZ", NULL };
	char path[AG_PATH_MAX];
	const char *path_env = getenv("PATH"), *k;
	json_t *v;
	size_t i;
	int rc = 0;

	rc |= env_add(e, "PATH", path_env && *path_env ? path_env : "/usr/local/bin:/usr/bin:/bin");
	for (i = 0; keep[i]; i++)
		rc |= env_add(e, keep[i], getenv(keep[i]));
	json_array_foreach(json_object_get(spec, "passEnv"), i, v)
		if (json_is_string(v) && strncmp(json_string_value(v), "AGORA_", 6) != 0)
			rc |= env_add(e, json_string_value(v), getenv(json_string_value(v)));
	json_object_foreach(json_object_get(spec, "env"), k, v)
		if (json_is_string(v))
			rc |= env_add(e, k, json_string_value(v));
	rc |= env_add(e, "AGORA_DIR", dir);
	rc |= env_add(e, "AGORA_RUN", run);
	rc |= env_add(e, "AGORA_ITEM", item);
	rc |= env_add(e, "AGORA_ATTEMPT", attempt);
	rc |= ag_path(path, sizeof(path), "%s/input.json", adir);
	rc |= env_add(e, "AGORA_INPUT", path);
	rc |= ag_path(path, sizeof(path), "%s/outputs", adir);
	rc |= env_add(e, "AGORA_OUTPUTS_DIR", path);
	if (json_object_get(spec, "needs") || json_object_get(spec, "subagent")) {
		rc |= ag_path(path, sizeof(path), "%s/inputs", adir);
		rc |= env_add(e, "AGORA_INPUTS_DIR", path);
	}
	return rc ? AG_ERROR : 0;
}

static int
build_argv(char ***out, const json_t *spec, char *reason, size_t rsize)
{
	json_t *argv = json_object_get(spec, "argv"), *sh = json_object_get(spec, "sh"), *v;
	char **a;
	size_t i, n;

	*out = NULL;
	if (json_is_array(argv) && json_array_size(argv) > 0) {
		n = json_array_size(argv);
		if (!(a = calloc(n + 1, sizeof(*a))))
			return AG_ERROR;
		json_array_foreach(argv, i, v)
			a[i] = (char *)json_string_value(v);
		for (i = 0; i < n; i++)
			if (!a[i]) {
				free(a);
				snprintf(reason, rsize, "argv[%zu] is not a string", i);
				return AG_EINVALID;
			}
	} else if (json_is_string(sh)) {
		if (!(a = calloc(4, sizeof(*a))))
			return AG_ERROR;
		a[0] = "/bin/sh";
		a[1] = "-c";
		a[2] = (char *)json_string_value(sh);
	} else {
		snprintf(reason, rsize, "spec has neither argv nor sh");
		return AG_EINVALID;
	}
	*out = a;
	return 0;
}

static int64_t
min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/*
 * One attempt under supervision. The supervisor holds its lease and lock
 * descriptors until the worker's group is gone and result.json is in
 * place; then it lets go of them.
 *
 * An attempt goes through up to three children, each in a process group
 * of its own: the preparation (the dispatch executor's worktree, the
 * products of needs), the worker, and the capture of what the worker
 * made (its patch, its outputs/). The first and the last use libgit2;
 * they run in children so that a slow repository never stalls the loop
 * that serves the other attempts, and they report through a memfd.
 */
enum phase { PREP, WORK, CAPTURE };

struct attempt {
	char adir[AG_PATH_MAX];
	char run[AG_ID_MAX + 1], item[AG_ID_MAX + 1];
	int number;
	int lease_fd;
	int lock_fds[AG_SUP_FDS_MAX];
	size_t nlocks;
	enum phase phase;
	pid_t pid;		/* the current child, and its process group */
	int errfd;		/* the worker's report of a failed set-up or exec */
	int sandboxed;		/* its worker is bwrap, which runs the subagent */
	int statusfd;		/* then bwrap's --json-status-fd, the read end; else -1 */
	int memfd;		/* a preparation's or capture's report */
	int out, err;		/* the worker's stdout and stderr */
	int64_t timeout_ms, grace_ms, ttl_ms;
	int64_t renew, deadline, kill_at;	/* monotonic ms; 0 when unset */
	json_t *spec;
	char **argv;
	struct envv env;
	char *cwd;
	char base[AG_OID_HEX], baseline[AG_OID_HEX];
	int held;		/* HELD_OFFERED or HELD_STAGED, or 0 once started */
	int worker_gone;	/* its worker's group is gone: one staged behind it may start */
	char after[AG_ID_MAX + 1];	/* staged: the attempt of its run it follows */
	int after_n;
	struct result res;
};

enum {
	HELD_OFFERED = 1,	/* prepared; waits for serve's "go" */
	HELD_STAGED		/* durable; waits for the attempt it follows to end */
};

struct sup {
	char dir[PATH_MAX];	/* absolute: workers run elsewhere */
	struct attempt **v;
	size_t len, cap;
	int sock;		/* the serve that feeds a resident supervisor, or -1 */
	int sigfd;
	int wake;		/* the wake FIFO, or -1 */
	int rc;			/* the first failure to write a result */
};

static void
close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void
attempt_close_locks(struct attempt *a)
{
	size_t i;

	for (i = 0; i < a->nlocks; i++)
		close_fd(&a->lock_fds[i]);
	a->nlocks = 0;
}

/* Let go of the attempt's descriptors, the lease last, and of its memory. */
static void
attempt_free(struct attempt *a)
{
	attempt_close_locks(a);
	close_fd(&a->errfd);
	close_fd(&a->statusfd);
	close_fd(&a->memfd);
	close_fd(&a->out);
	close_fd(&a->err);
	close_fd(&a->lease_fd);
	json_decref(a->res.extra);
	json_decref(a->spec);
	free(a->argv);
	env_free(&a->env);
	free(a->cwd);
	free(a);
}

/*
 * The attempt's last child is gone: let go of the resource locks before
 * reporting, so that the tick which reaps this attempt can already hand
 * them on; the lease goes last, after result.json is in place.
 */
static void
attempt_end(struct sup *s, struct attempt *a)
{
	int rc;

	attempt_close_locks(a);
	if (!a->res.ended)
		a->res.ended = ag_now_ms();
	if (!a->res.started)
		a->res.started = a->res.ended;
	rc = write_result(a->adir, &a->res, s->dir, &s->wake);
	if (rc < 0 && s->rc == 0)
		s->rc = rc;
	attempt_free(a);
}

/* TERM the current child's group now, KILL it after the grace period. */
static void
attempt_stop(struct attempt *a, int64_t now)
{
	if (a->res.terminated || a->res.timed_out)
		return;
	a->res.terminated = 1;
	kill(-a->pid, SIGTERM);
	a->kill_at = now + a->grace_ms;
}

/* The report a preparation or capture child left in the memfd, or NULL. */
static json_t *
read_report(int fd)
{
	char buf[1 << 16];
	struct ag_buf b;
	json_t *j = NULL;
	ssize_t n;
	off_t off = 0;

	ag_buf_init(&b, (size_t)1 << 26);
	while ((n = pread(fd, buf, sizeof(buf), off)) > 0) {
		if (ag_buf_put(&b, buf, (size_t)n) < 0)
			break;
		off += n;
	}
	if (n == 0 && b.len)
		j = json_loadb(b.ptr, b.len, 0, NULL);
	ag_buf_release(&b);
	return j;
}

/* In a child: write the report and end. */
static void
child_report(int fd, json_t *rep)
{
	char *text = rep ? json_dumps(rep, JSON_COMPACT) : NULL;
	size_t len = text ? strlen(text) : 0, off = 0;
	ssize_t n;

	while (off < len && (n = write(fd, text + off, len - off)) > 0)
		off += (size_t)n;
	_exit(off == len && text ? 0 : 1);
}

/* A report of failure: permanent unless the cause may pass (I/O, memory, a lock). */
static json_t *
failure(int rc, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static json_t *
failure(int rc, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:s, s:b}", "error", msg, "permanent",
	    rc != AG_ERROR && rc != AG_ELOCKED);
}

/* Relative repository paths are relative to the state directory. */
static void
repo_path(char *out, size_t size, const struct sup *s, const char *repo)
{
	if (repo[0] == '/' || ag_path(out, size, "%s/%s", s->dir, repo) < 0)
		snprintf(out, size, "%s", repo);
}

/*
 * The preparation, in a child: the base commit into objects.git, the
 * worktree with the patches of needs applied in dependency order, and
 * the output files of needs under inputs/.
 */
static json_t *
prepare(struct sup *s, struct attempt *a)
{
	char path[AG_PATH_MAX], repo[AG_PATH_MAX], base[AG_OID_HEX], tree[AG_OID_HEX];
	const char *patches[AG_DEPS_MAX], *froms[AG_DEPS_MAX];
	json_t *needs = json_object_get(a->spec, "needs"), *n, *rep = NULL;
	struct ag_store *st = NULL;
	size_t i, np = 0, failed = 0;
	int rc;

	ag_git_setup();
	if (ag_path(path, sizeof(path), "%s/objects.git", s->dir) < 0 ||
	    (rc = ag_store_open(&st, path)) < 0)
		return failure(AG_ERROR, "%s", ag_error_msg());
	json_array_foreach(needs, i, n) {
		const char *kind = json_string_value(json_object_get(n, "kind"));
		const char *ref = json_string_value(json_object_get(n, "ref"));
		const char *key = json_string_value(json_object_get(n, "key"));
		struct ag_buf b;
		if (kind && strcmp(kind, "patch") == 0) {
			if (np < AG_DEPS_MAX) {
				froms[np] = json_string_value(json_object_get(n, "from"));
				patches[np++] = ref;
			}
			continue;
		}
		/* it names a file in inputs/: a plan.json written by hand may say ../x */
		if (!ag_id_valid(key)) {
			rep = failure(AG_EINVALID, "needs key '%s' is not an id",
			    key ? ag_quote(key, strlen(key)) : "");
			goto out;
		}
		if ((rc = ag_store_read_blob(&b, st, ref, AG_OUTPUTS_BYTES_MAX)) < 0) {
			rep = failure(rc, "needs '%s': %s", key, ag_error_msg());
			goto out;
		}
		rc = ag_path(path, sizeof(path), "%s/inputs/%s", a->adir, key);
		if (rc == 0)
			rc = ag_write_replace(path, b.ptr, b.len, 0644);
		ag_buf_release(&b);
		if (rc < 0) {
			rep = failure(rc, "%s", ag_error_msg());
			goto out;
		}
	}
	if (!json_object_get(a->spec, "subagent")) {
		if (np)
			rep = failure(AG_EINVALID, "needs '%s' takes a patch, which only the dispatch "
			    "executor applies", froms[0]);
		else
			rep = json_object();
		goto out;
	}
	repo_path(repo, sizeof(repo), s, json_string_value(json_object_get(a->spec, "repo")));
	if ((rc = ag_store_import_base(base, st, repo,
	    json_string_value(json_object_get(a->spec, "base")))) < 0) {
		rep = failure(rc, "%s", ag_error_msg());
		goto out;
	}
	if (ag_path(path, sizeof(path), "%s/worktree", a->adir) < 0)
		goto out;
	rc = ag_store_worktree(tree, &failed, st, base, patches, np, path);
	if (rc == AG_ECONFLICT && failed > 0 && failed < np)
		rep = failure(rc, "the patch of '%s' conflicts with the patch of '%s' in the "
		    "worktree of '%s'", froms[failed], froms[failed - 1], a->item);
	else if (rc == AG_ECONFLICT && failed < np)
		rep = failure(rc, "the patch of '%s' does not apply to base %.12s in the "
		    "worktree of '%s'", froms[failed], base, a->item);
	else if (rc < 0)
		rep = failure(rc, "%s", ag_error_msg());
	else
		rep = json_pack("{s:s, s:s}", "base", base, "baseline", tree);
out:
	ag_store_free(st);
	return rep ? rep : failure(AG_ERROR, "%s", ag_error_msg());
}

/* The capture, in a child: the worktree's patch and the output files, as blobs. */
static json_t *
capture(struct sup *s, struct attempt *a)
{
	char path[AG_PATH_MAX], outs[AG_PATH_MAX];
	struct ag_capture cap, *capp = NULL;
	struct ag_output *o = NULL;
	struct ag_store *st = NULL;
	json_t *rep = json_object();
	size_t n = 0;
	int rc;

	ag_git_setup();
	memset(&cap, 0, sizeof(cap));
	if (ag_path(path, sizeof(path), "%s/objects.git", s->dir) < 0 ||
	    (rc = ag_store_open(&st, path)) < 0) {
		json_decref(rep);
		return failure(AG_ERROR, "%s", ag_error_msg());
	}
	if (a->base[0]) {
		struct ag_capture_opts co = { a->base, a->baseline, a->run, a->item, a->number,
			ag_now_ms() };
		if (ag_path(path, sizeof(path), "%s/worktree", a->adir) < 0 ||
		    (rc = ag_store_capture(&cap, st, path, &co)) < 0) {
			json_decref(rep);
			rep = failure(rc, "cannot capture the worktree: %s", ag_error_msg());
			goto out;
		}
		capp = &cap;
	}
	if (ag_path(outs, sizeof(outs), "%s/outputs", a->adir) == 0 &&
	    (rc = ag_store_outputs(&o, &n, st, outs)) < 0) {
		json_decref(rep);
		rep = failure(rc, "outputs: %s", ag_error_msg());
		goto out;
	}
	if (ag_artifact_fields(rep, capp, o, n) < 0) {
		json_decref(rep);
		rep = failure(AG_ERROR, "%s", ag_error_msg());
	}
out:
	ag_outputs_free(o, n);
	ag_store_free(st);
	return rep;
}

/* Start a preparation or capture child, in a process group of its own. */
static int
start_helper(struct sup *s, struct attempt *a, enum phase ph)
{
	pid_t pid, self = getpid();

	close_fd(&a->memfd);
	if ((a->memfd = memfd_create("agora-report", MFD_CLOEXEC)) < 0) {
		snprintf(a->res.reason, sizeof(a->res.reason), "cannot make a memfd: %s",
		    strerror(errno));
		return -1;
	}
	if ((pid = fork()) < 0) {
		snprintf(a->res.reason, sizeof(a->res.reason), "cannot fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		sigset_t none;
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != self)
			_exit(127);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		child_report(a->memfd, ph == PREP ? prepare(s, a) : capture(s, a));
	}
	setpgid(pid, pid);
	a->pid = pid;
	a->phase = ph;
	return 0;
}

/*
 * What the worker's child needs before its exec. It runs on a stack of
 * its own in the supervisor's memory (CLONE_VM | CLONE_VFORK, as
 * posix_spawn does): copying the supervisor's page tables for every
 * attempt was most of what an attempt cost. So it makes system calls
 * only, on data prepared here.
 */
struct wchild {
	const struct attempt *a;
	const char *path;	/* the program, resolved on the worker's PATH */
	pid_t sup;
	int null, errw;
	int status;	/* the write end of bwrap's status pipe, or -1 */
};

static char child_stack[64 * 1024] __attribute__((aligned(64)));

/* where a sandboxed worker's bwrap finds its status pipe */
#define SANDBOX_STATUS_FD	3

/* "SUP PID\n" into buf, without stdio: for the vfork child. */
static size_t
pid_line(char *buf, pid_t sup, pid_t pid)
{
	char tmp[24];
	long v[2] = { (long)sup, (long)pid };
	size_t n = 0, k, i;

	for (i = 0; i < 2; i++) {
		long x = v[i];
		k = 0;
		do {
			tmp[k++] = (char)('0' + x % 10);
			x /= 10;
		} while (x > 0 && k < sizeof(tmp));
		while (k > 0)
			buf[n++] = tmp[--k];
		buf[n++] = i == 0 ? ' ' : '\n';
	}
	return n;
}

static int
worker_child(void *arg)
{
	const struct wchild *w = arg;
	const struct attempt *a = w->a;
	char line[64];
	sigset_t none;
	int fail[2];
	size_t n;

	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	fail[0] = 1;
	if (getppid() != w->sup)
		goto fail;
	/*
	 * The lease names the worker before it runs: a lease that names none
	 * means it never started, and reconcile requeues the item uncounted.
	 */
	n = pid_line(line, w->sup, (pid_t)syscall(SYS_getpid));
	if (pwrite(a->lease_fd, line, n, 0) != (ssize_t)n)
		goto fail;
	/* tell the supervisor which step failed: 1 set-up, 2 chdir, 3 exec */
	if (dup2(w->null, 0) < 0 || dup2(a->out, 1) < 0 || dup2(a->err, 2) < 0)
		goto fail;
	/* bwrap writes its status to this descriptor, which must outlive exec */
	if (w->status >= 0 && (w->status == SANDBOX_STATUS_FD ?
	    fcntl(w->status, F_SETFD, 0) : dup2(w->status, SANDBOX_STATUS_FD)) < 0)
		goto fail;
	fail[0] = 2;
	if (chdir(a->cwd) < 0)
		goto fail;
	fail[0] = 3;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execve(w->path, a->argv, a->env.v);
fail:
	fail[1] = errno;
	if (write(w->errw, fail, sizeof(fail)) < 0)
		_exit(127);
	_exit(127);
}

/* The variable's value in the worker's environment, or NULL. */
static const char *
env_get(const struct envv *e, const char *name)
{
	size_t i, nlen = strlen(name);

	for (i = 0; i < e->len; i++)
		if (strncmp(e->v[i], name, nlen) == 0 && e->v[i][nlen] == '=')
			return e->v[i] + nlen + 1;
	return NULL;
}

/* prog itself when it has a slash, else its first match on path; NULL for none. */
static const char *
resolve(char *buf, size_t size, const char *prog, const char *p)
{
	const char *end;
	struct stat st;

	if (strchr(prog, '/'))
		return prog;
	for (; p && *p; p = *end ? end + 1 : end) {
		end = strchr(p, ':');
		if (!end)
			end = p + strlen(p);
		if (end == p) {
			if (ag_path(buf, size, "%s", prog) < 0)
				continue;
		} else if (ag_path(buf, size, "%.*s/%s", (int)(end - p), p, prog) < 0) {
			continue;
		}
		if (access(buf, X_OK) == 0 && stat(buf, &st) == 0 && S_ISREG(st.st_mode))
			return buf;
	}
	return NULL;
}

/*
 * A resident supervisor starts the same few programs thousands of times:
 * it remembers for a second where each was found on a PATH, and checks
 * only that file again (executable, regular: what resolve checks), instead
 * of trying every directory of PATH for every worker.
 */
#define FOUND_MAX	16
#define FOUND_MS	1000

static struct found {
	char *prog, *path, *where;
	int64_t at;
} found[FOUND_MAX];

static void
found_clear(struct found *f)
{
	free(f->prog);
	free(f->path);
	free(f->where);
	f->prog = f->path = f->where = NULL;
}

static const char *
resolve_cached(char *buf, size_t size, const char *prog, const char *p)
{
	int64_t now = ag_mono_ms();
	struct found *f, *old = &found[0];
	struct stat st;
	const char *where;
	size_t i;

	if (strchr(prog, '/'))
		return prog;
	for (i = 0; i < FOUND_MAX; i++) {
		f = &found[i];
		if (f->prog && now - f->at < FOUND_MS && strcmp(f->prog, prog) == 0 &&
		    strcmp(f->path, p ? p : "") == 0 && access(f->where, X_OK) == 0 &&
		    stat(f->where, &st) == 0 &&
		    S_ISREG(st.st_mode) && strlen(f->where) < size) {
			memcpy(buf, f->where, strlen(f->where) + 1);
			return buf;
		}
		if (!f->prog || f->at < old->at)
			old = f;
	}
	if (!(where = resolve(buf, size, prog, p)))
		return NULL;
	found_clear(old);
	old->prog = strdup(prog);
	old->path = strdup(p ? p : "");
	old->where = strdup(where);
	old->at = now;
	if (!old->prog || !old->path || !old->where)
		found_clear(old);	/* out of memory: remember nothing */
	return where;
}

/* Start the worker in a process group of its own. */
static int
start_worker(struct attempt *a)
{
	/* the same for every worker of this supervisor: got once */
	static int devnull = -1;
	static pid_t self;
	char path[AG_PATH_MAX];
	struct wchild w;
	int errpipe[2] = { -1, -1 }, status[2] = { -1, -1 }, rc = -1;
	pid_t pid;

	if (!self)
		self = getpid();
	if (devnull < 0)
		devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	w.a = a;
	w.sup = self;
	/* the worker's PATH; execve says what is wrong with a program not on it */
	if (!(w.path = resolve_cached(path, sizeof(path), a->argv[0], env_get(&a->env, "PATH"))))
		w.path = a->argv[0];
	w.null = devnull;
	if (w.null < 0 || pipe2(errpipe, O_CLOEXEC) < 0 || (a->sandboxed &&
	    (pipe2(status, O_CLOEXEC) < 0 || fcntl(status[0], F_SETFL, O_NONBLOCK) < 0))) {
		snprintf(a->res.reason, sizeof(a->res.reason), "cannot set up the worker: %s",
		    strerror(errno));
		goto out;
	}
	w.errw = errpipe[1];
	w.status = status[1];
	pid = clone(worker_child, child_stack + sizeof(child_stack),
	    CLONE_VM | CLONE_VFORK | SIGCHLD, &w);
	if (pid < 0) {
		snprintf(a->res.reason, sizeof(a->res.reason), "cannot start the worker: %s",
		    strerror(errno));
		goto out;
	}
	/* the child has exec'd or failed by now: its group is its own */
	a->pid = pid;
	a->phase = WORK;
	a->errfd = errpipe[0];
	errpipe[0] = -1;
	a->statusfd = status[0];
	status[0] = -1;
	rc = 0;
out:
	close_fd(&errpipe[0]);
	close_fd(&errpipe[1]);
	close_fd(&status[0]);
	close_fd(&status[1]);
	return rc;
}

/* Write a JSON value (or null) to a new file of the attempt, before its worker starts. */
static int
write_json(const char *adir, const char *name, const json_t *v)
{
	char path[AG_PATH_MAX], *text;
	int rc;

	text = v ? json_dumps(v, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY) :
	    strdup("null");
	if (!text)
		return ag_error_set(AG_ERROR, "out of memory");
	rc = ag_path(path, sizeof(path), "%s/%s", adir, name);
	if (rc == 0)
		rc = ag_write_fresh(path, text, strlen(text), 0644);
	free(text);
	return rc;
}

/*
 * sandbox = bwrap: the worker's argv becomes bwrap's, which runs it. bwrap
 * is found on the worker's PATH here, before the worker's child, which
 * must not allocate. Without it the item cannot run, on any attempt.
 */
static int
sandbox_wrap(const struct sup *s, struct attempt *a)
{
	char bwrap[AG_PATH_MAX], wt[AG_PATH_MAX], outs[AG_PATH_MAX], in[AG_PATH_MAX];
	char ins[AG_PATH_MAX];
	const char *path = env_get(&a->env, "PATH"), *prog;
	struct ag_sandbox sb;
	json_t *v;
	char **argv;

	if (!(prog = resolve(bwrap, sizeof(bwrap), "bwrap", path))) {
		snprintf(a->res.reason, sizeof(a->res.reason), "sandbox 'bwrap': no program "
		    "'bwrap' on PATH '%s' (install Debian's bubblewrap: apt-get install bubblewrap)",
		    path ? path : "");
		a->res.permanent = 1;
		return -1;
	}
	if (ag_path(wt, sizeof(wt), "%s/worktree", a->adir) < 0 ||
	    ag_path(outs, sizeof(outs), "%s/outputs", a->adir) < 0 ||
	    ag_path(in, sizeof(in), "%s/input.json", a->adir) < 0 ||
	    ag_path(ins, sizeof(ins), "%s/inputs", a->adir) < 0)
		goto fail;
	sb.state = s->dir;
	sb.worktree = wt;
	sb.outputs = outs;
	sb.input = in;
	sb.inputs = ins;
	sb.status_fd = SANDBOX_STATUS_FD;
	v = json_object_get(a->spec, "network");
	sb.share_net = json_is_string(v) && strcmp(json_string_value(v), "host") == 0;
	if (ag_sandbox_argv(&argv, prog, &sb, a->argv) < 0)
		goto fail;
	free(a->argv);
	a->argv = argv;
	a->sandboxed = 1;
	return 0;
fail:
	snprintf(a->res.reason, sizeof(a->res.reason), "%s", ag_error_msg());
	return -1;
}

/*
 * Read the attempt's spec.json and prepare what the worker is given: its
 * directories and files, argv, environment and working directory. No
 * child starts here. Returns -1 with a->res.reason set when the attempt
 * cannot run.
 */
static int
attempt_prepare(struct sup *s, struct attempt *a, const char *run, const char *item, int attempt)
{
	struct result *res = &a->res;
	char path[AG_PATH_MAX], att[32];
	struct ag_buf b = { 0 };
	const char *sandbox;
	json_t *v;
	int dispatch;

	snprintf(a->run, sizeof(a->run), "%s", run);
	snprintf(a->item, sizeof(a->item), "%s", item);
	a->number = attempt;
	snprintf(att, sizeof(att), "%d", attempt);
	res->started = ag_now_ms();
	if (ag_path(a->adir, sizeof(a->adir), "%s/runs/%s/items/%s/%d", s->dir, run, item,
	    attempt) < 0 || ag_path(path, sizeof(path), "%s/spec.json", a->adir) < 0 ||
	    ag_read_file(&b, path, (size_t)AG_PLAN_MAX) < 0) {
		snprintf(res->reason, sizeof(res->reason), "%s", ag_error_msg());
		return -1;
	}
	a->spec = json_loadb(b.ptr, b.len, 0, NULL);
	ag_buf_release(&b);
	if (!a->spec) {
		snprintf(res->reason, sizeof(res->reason), "unreadable spec.json");
		res->permanent = 1;
		return -1;
	}
	if ((v = json_object_get(a->spec, "error"))) {
		snprintf(res->reason, sizeof(res->reason), "%s", json_string_value(v));
		res->permanent = 1;
		return -1;
	}
	dispatch = json_object_get(a->spec, "subagent") != NULL;
	sandbox = json_string_value(json_object_get(a->spec, "sandbox"));
	if (sandbox && strcmp(sandbox, "none") == 0)
		sandbox = NULL;
	if (sandbox && strcmp(sandbox, "bwrap") != 0) {
		snprintf(res->reason, sizeof(res->reason), "unknown sandbox '%s'", sandbox);
		res->permanent = 1;
		return -1;
	}
	a->timeout_ms = json_integer_value(json_object_get(a->spec, "timeoutMs"));
	a->grace_ms = json_integer_value(json_object_get(a->spec, "killGraceMs"));
	a->ttl_ms = json_integer_value(json_object_get(a->spec, "leaseTtlMs"));
	if (a->ttl_ms <= 0)
		a->ttl_ms = 30000;
	if (ag_path(path, sizeof(path), "%s/outputs", a->adir) < 0 || ag_mkdir(path, 0755) < 0 ||
	    ((dispatch || json_object_get(a->spec, "needs")) &&
	    (ag_path(path, sizeof(path), "%s/inputs", a->adir) < 0 || ag_mkdir(path, 0755) < 0))) {
		snprintf(res->reason, sizeof(res->reason), "%s", ag_error_msg());
		return -1;
	}
	/* the exec executor's worker gets its inputs, a subagent its workerInput */
	if (write_json(a->adir, "input.json", json_object_get(a->spec,
	    dispatch ? "workerInput" : "inputs")) < 0) {
		snprintf(res->reason, sizeof(res->reason), "cannot write input.json: %s",
		    ag_error_msg());
		return -1;
	}
	if (build_env(&a->env, a->spec, s->dir, a->adir, run, item, att) < 0) {
		snprintf(res->reason, sizeof(res->reason), "cannot build the environment");
		return -1;
	}
	if (build_argv(&a->argv, a->spec, res->reason, sizeof(res->reason)) < 0) {
		res->permanent = 1;
		return -1;
	}
	if (sandbox && sandbox_wrap(s, a) < 0)
		return -1;
	v = json_object_get(a->spec, "cwd");
	if (dispatch)
		ag_path(path, sizeof(path), "%s/worktree", a->adir);
	else if (json_is_string(v) && json_string_value(v)[0] == '/')
		snprintf(path, sizeof(path), "%s", json_string_value(v));
	else if (!json_is_string(v) ||
	    ag_path(path, sizeof(path), "%s/%s", a->adir, json_string_value(v)) < 0)
		snprintf(path, sizeof(path), "%s", a->adir);
	if (!(a->cwd = strdup(path))) {
		snprintf(res->reason, sizeof(res->reason), "out of memory");
		return -1;
	}
	if (ag_path(path, sizeof(path), "%s/stdout", a->adir) == 0)
		a->out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (ag_path(path, sizeof(path), "%s/stderr", a->adir) == 0)
		a->err = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (a->out < 0 || a->err < 0) {
		snprintf(res->reason, sizeof(res->reason), "cannot set up the worker: %s",
		    strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Start a prepared attempt's first child: the preparation, or the worker
 * when there is nothing to prepare. On return a->pid is set, or
 * a->res.reason says why there is no child.
 */
static void
attempt_launch(struct sup *s, struct attempt *a)
{
	a->res.started = ag_now_ms();
	a->renew = ag_mono_ms() + a->ttl_ms / 3;
	a->deadline = a->timeout_ms > 0 ? ag_mono_ms() + a->timeout_ms : 0;
	if (a->spec && (json_object_get(a->spec, "subagent") || json_object_get(a->spec, "needs")))
		start_helper(s, a, PREP);
	else
		start_worker(a);
}

/* Why the worker ended, in words, when it did not simply exit. */
static void
worker_reason(struct attempt *a)
{
	struct result *res = &a->res;
	int fail[2];
	ssize_t n;

	/* the child wrote here only if it failed before its exec */
	while ((n = read(a->errfd, fail, sizeof(fail))) < 0 && errno == EINTR)
		;
	close_fd(&a->errfd);
	if (n == (ssize_t)sizeof(fail) && !res->reason[0]) {
		if (fail[0] == 3)
			snprintf(res->reason, sizeof(res->reason), "cannot execute '%s': %s",
			    ag_quote(a->argv[0], strlen(a->argv[0])), strerror(fail[1]));
		else if (fail[0] == 2)
			snprintf(res->reason, sizeof(res->reason),
			    "cannot change to directory '%s': %s",
			    ag_quote(a->cwd, strlen(a->cwd)), strerror(fail[1]));
		else
			snprintf(res->reason, sizeof(res->reason), "cannot set up the worker: %s",
			    strerror(fail[1]));
		res->permanent = 1;
	} else if (res->timed_out) {
		snprintf(res->reason, sizeof(res->reason), "timeout after %.3gs",
		    (double)a->timeout_ms / 1000.0);
	} else if (res->terminated) {
		snprintf(res->reason, sizeof(res->reason), "terminated");
	}
}

/*
 * A sandboxed worker that exited 1 before bwrap reported the subagent's
 * "exit-code" never ran the subagent: bwrap could not make the sandbox
 * (no namespaces, a mount it could not make). The reason says so, with
 * the last line bwrap wrote to the attempt's stderr.
 */
static void
sandbox_reason(struct attempt *a)
{
	struct result *res = &a->res;
	char status[1024], tail[512], path[AG_PATH_MAX], *line, *end;
	size_t len = 0;
	ssize_t n;
	struct stat st;
	int fd;

	if (a->statusfd < 0)
		return;
	while (len < sizeof(status) - 1 &&
	    ((n = read(a->statusfd, status + len, sizeof(status) - 1 - len)) > 0 ||
	    (n < 0 && errno == EINTR)))
		len += n > 0 ? (size_t)n : 0;
	status[len] = '\0';
	close_fd(&a->statusfd);
	if (res->reason[0] || !res->exited || res->code != 1 || strstr(status, "\"exit-code\""))
		return;
	n = 0;
	if (ag_path(path, sizeof(path), "%s/stderr", a->adir) == 0 &&
	    (fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
		if (fstat(fd, &st) == 0)
			n = pread(fd, tail, sizeof(tail) - 1, st.st_size > (off_t)sizeof(tail) - 1 ?
			    st.st_size - (off_t)(sizeof(tail) - 1) : 0);
		close(fd);
	}
	tail[n > 0 ? n : 0] = '\0';
	for (end = tail + strlen(tail); end > tail && (end[-1] == '\n' || end[-1] == '\r'); end--)
		;
	*end = '\0';
	line = strrchr(tail, '\n');
	line = line ? line + 1 : tail;
	if (*line)
		snprintf(res->reason, sizeof(res->reason),
		    "sandbox 'bwrap' could not start the subagent: %s", ag_quote(line, strlen(line)));
	else
		snprintf(res->reason, sizeof(res->reason),
		    "sandbox 'bwrap' could not start the subagent (it exited 1 and said nothing)");
}

/*
 * The attempt's current child ended with this wait status: go on to the
 * next phase, or end the attempt. Returns 1 when the attempt has ended
 * (and is freed).
 */
static int
attempt_child_exit(struct sup *s, struct attempt *a, int status)
{
	struct result *res = &a->res;
	json_t *rep;
	char outs[AG_PATH_MAX];

	/* whatever the child left behind in its group goes with it */
	kill(-a->pid, SIGKILL);
	a->pid = 0;
	if (a->phase == WORK) {
		if (!res->ended)
			res->ended = ag_now_ms();
		if (WIFEXITED(status)) {
			res->exited = 1;
			res->code = WEXITSTATUS(status);
		} else if (WIFSIGNALED(status)) {
			res->sig = WTERMSIG(status);
		}
		worker_reason(a);
		sandbox_reason(a);
		if (res->exited && res->code == 0 && !res->reason[0] &&
		    (a->base[0] || (ag_path(outs, sizeof(outs), "%s/outputs", a->adir) == 0 &&
		    ag_dir_empty(outs) == 0)) && start_helper(s, a, CAPTURE) == 0)
			return 0;
		attempt_end(s, a);
		return 1;
	}
	rep = read_report(a->memfd);
	close_fd(&a->memfd);
	if (res->timed_out || res->terminated) {
		worker_reason(a);
	} else if (!rep || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(res->reason, sizeof(res->reason), "the %s ended without a report",
		    a->phase == PREP ? "preparation" : "capture");
	} else if (json_is_string(json_object_get(rep, "error"))) {
		snprintf(res->reason, sizeof(res->reason), "%s",
		    json_string_value(json_object_get(rep, "error")));
		res->permanent = json_is_true(json_object_get(rep, "permanent"));
	} else if (a->phase == PREP) {
		const char *base = json_string_value(json_object_get(rep, "base"));
		const char *baseline = json_string_value(json_object_get(rep, "baseline"));
		snprintf(a->base, sizeof(a->base), "%s", base ? base : "");
		snprintf(a->baseline, sizeof(a->baseline), "%s", baseline ? baseline : "");
		json_decref(rep);
		if (start_worker(a) == 0)
			return 0;
		attempt_end(s, a);
		return 1;
	} else {
		res->extra = json_incref(rep);
	}
	json_decref(rep);
	if (a->phase == PREP || res->reason[0]) {
		/* no worker ran, or its work could not be kept */
		res->exited = 0;
		res->code = 0;
	}
	attempt_end(s, a);
	return 1;
}

static int
sup_add(struct sup *s, struct attempt *a)
{
	if (s->len == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 8;
		struct attempt **nv = realloc(s->v, ncap * sizeof(*nv));
		if (!nv)
			return ag_error_set(AG_ERROR, "out of memory");
		s->v = nv;
		s->cap = ncap;
	}
	s->v[s->len++] = a;
	return 0;
}

static struct attempt *
attempt_new(int lease_fd, const int *lock_fds, size_t nlocks)
{
	struct attempt *a = calloc(1, sizeof(*a));
	size_t i;

	if (!a)
		return NULL;
	a->lease_fd = lease_fd;
	a->errfd = a->statusfd = a->memfd = a->out = a->err = -1;
	for (i = 0; i < nlocks; i++)
		a->lock_fds[i] = lock_fds[i];
	a->nlocks = nlocks;
	return a;
}

/* Start a prepared attempt; one that cannot start is reported at once. */
static void
sup_begin(struct sup *s, struct attempt *a, const char *run, const char *item, int attempt)
{
	if (attempt_prepare(s, a, run, item, attempt) == 0)
		attempt_launch(s, a);
	if (!a->pid || sup_add(s, a) < 0) {
		if (a->pid) {
			kill(-a->pid, SIGKILL);
			snprintf(a->res.reason, sizeof(a->res.reason), "out of memory");
		}
		attempt_end(s, a);
	}
}

/* Does the attempt that a staged one follows still run (or wait)? */
static int
leader_alive(const struct sup *s, const struct attempt *a)
{
	size_t i;

	for (i = 0; i < s->len; i++) {
		const struct attempt *b = s->v[i];
		if (b != a && b->held != HELD_OFFERED && !b->worker_gone && b->number == a->after_n &&
		    strcmp(b->item, a->after) == 0 && strcmp(b->run, a->run) == 0)
			return 1;
	}
	return 0;
}

/* Start every durable attempt whose turn has come. */
static void
sup_launch(struct sup *s)
{
	size_t i = 0;

	while (i < s->len) {
		struct attempt *a = s->v[i];
		if (a->held != HELD_STAGED || (a->after[0] && leader_alive(s, a))) {
			i++;
			continue;
		}
		a->held = 0;
		if (!a->res.reason[0])
			attempt_launch(s, a);
		if (a->pid) {
			i++;
			continue;
		}
		/* it could not start: report it; the last attempt moves into its place */
		s->v[i] = s->v[--s->len];
		attempt_end(s, a);
		i = 0;	/* one that followed it may start now */
	}
}

/* serve's "go": what it offered so far is durable; start it, or stage it */
static void
sup_go(struct sup *s)
{
	size_t i;

	for (i = 0; i < s->len; i++)
		if (s->v[i]->held == HELD_OFFERED)
			s->v[i]->held = HELD_STAGED;
	sup_launch(s);
}

/*
 * serve is gone, or it failed to make its intents durable: the attempts
 * it offered must not start (with all set, the staged ones neither: the
 * supervisor stops). Letting go of a lease that names no worker tells
 * the next tick that its attempt did not start.
 */
static void
sup_drop_held(struct sup *s, int all)
{
	size_t i = 0;

	while (i < s->len) {
		if (s->v[i]->held == HELD_OFFERED || (all && s->v[i]->held)) {
			attempt_free(s->v[i]);
			s->v[i] = s->v[--s->len];
		} else {
			i++;
		}
	}
}

/* serve's "drop RUN ITEM N": a staged attempt that must not start now */
static void
sup_unstage(struct sup *s, const char *text)
{
	char run[AG_ID_MAX + 1], item[AG_ID_MAX + 1];
	int n;
	size_t i;

	if (sscanf(text, "drop %128s %128s %d", run, item, &n) != 3)
		return;
	for (i = 0; i < s->len; i++) {
		struct attempt *a = s->v[i];
		if (a->held == HELD_STAGED && a->number == n && strcmp(a->item, item) == 0 &&
		    strcmp(a->run, run) == 0) {
			attempt_free(a);
			s->v[i] = s->v[--s->len];
			ag_wake_fd(&s->wake, s->dir);	/* a tick requeues it now */
			return;
		}
	}
}

static void
close_fds(const int *fds, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		close(fds[i]);
}

/*
 * One message from serve: "RUN ITEM ATTEMPT", with the lease and then the
 * lock descriptors attached. Returns 1 for a message handled, 0 when there
 * is none, and -1 when serve is gone.
 */
static int
sup_receive(struct sup *s)
{
	char text[4 * AG_ID_MAX + 64], *item, *att, *end, *lead = NULL, *lead_n = NULL;
	union {
		char buf[CMSG_SPACE(sizeof(int) * (AG_SUP_FDS_MAX + 1))];
		struct cmsghdr align;
	} ctl;
	int fds[AG_SUP_FDS_MAX + 1];
	struct iovec iov = { text, sizeof(text) - 1 };
	struct msghdr msg;
	struct cmsghdr *c;
	struct attempt *a;
	size_t nfds = 0;
	ssize_t n;
	long attempt, after_n = 0;

	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = ctl.buf;
	msg.msg_controllen = sizeof(ctl.buf);
	while ((n = recvmsg(s->sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	if (n <= 0)
		return -1;
	for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		size_t k, m;
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		m = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (k = 0; k < m && nfds < AG_SUP_FDS_MAX + 1; k++)
			memcpy(&fds[nfds++], CMSG_DATA(c) + k * sizeof(int), sizeof(int));
	}
	text[n] = '\0';
	if (nfds == 0 && !(msg.msg_flags & MSG_TRUNC)) {
		if (n == 2 && memcmp(text, "go", 2) == 0)
			sup_go(s);
		else if (n > 5 && memcmp(text, "drop ", 5) == 0)
			sup_unstage(s, text);
		return 1;
	}
	item = strchr(text, ' ');
	att = item ? strchr(item + 1, ' ') : NULL;
	if (!att || nfds < 1 || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		close_fds(fds, nfds);	/* the tick finds the lease empty: not started */
		return 1;
	}
	*item++ = '\0';
	*att++ = '\0';
	/* "RUN ITEM N", or "RUN ITEM N LEADER M" for a staged attempt */
	if ((lead = strchr(att, ' ')) != NULL) {
		*lead++ = '\0';
		if (!(lead_n = strchr(lead, ' '))) {
			close_fds(fds, nfds);
			return 1;
		}
		*lead_n++ = '\0';
	}
	errno = 0;
	attempt = strtol(att, &end, 10);
	if (!errno && !*end && lead) {
		after_n = strtol(lead_n, &end, 10);
		if (!errno && !*end && (after_n < 1 || ag_id_check(lead, strlen(lead)) < 0))
			errno = EINVAL;
	}
	if (errno || *end || attempt < 1 || attempt > 1000000 || after_n > 1000000 ||
	    ag_id_check(text, strlen(text)) < 0 || ag_id_check(item, strlen(item)) < 0 ||
	    !(a = attempt_new(fds[0], fds + 1, nfds - 1))) {
		close_fds(fds, nfds);
		return 1;
	}
	/* prepared now, started on "go", once the intent is durable */
	attempt_prepare(s, a, text, item, (int)attempt);
	a->held = HELD_OFFERED;
	if (lead) {
		snprintf(a->after, sizeof(a->after), "%s", lead);
		a->after_n = (int)after_n;
	}
	if (sup_add(s, a) < 0)
		attempt_free(a);	/* not started, as the next tick will see */
	return 1;
}

static void
sup_remove(struct sup *s, size_t i)
{
	s->v[i] = s->v[--s->len];
}

static void
sup_reap(struct sup *s)
{
	pid_t pid;
	size_t i;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (i = 0; i < s->len; i++)
			if (s->v[i]->pid == pid)
				break;
		if (i == s->len)
			continue;
		if (s->v[i]->phase == WORK) {
			/*
			 * Its place is free: what is staged behind it starts
			 * now, not after its report. A launch that fails
			 * moves attempts around: find this one again.
			 */
			struct attempt *a = s->v[i];
			a->res.ended = ag_now_ms();	/* before what starts in its place */
			a->worker_gone = 1;
			sup_launch(s);
			for (i = 0; i < s->len && s->v[i] != a; i++)
				;
		}
		if (i < s->len && attempt_child_exit(s, s->v[i], status))
			sup_remove(s, i);
	}
}

static void
sup_signals(struct sup *s)
{
	struct signalfd_siginfo si;
	size_t i;

	while (read(s->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		int64_t now = ag_mono_ms();
		if ((int)si.ssi_signo == SIGCHLD) {
			sup_reap(s);
			/* an attempt that ended before its worker ran frees a place too */
			sup_launch(s);
		} else if ((int)si.ssi_signo == AG_SIG_CANCEL) {
			/* a tick cancels one attempt, named by its worker */
			for (i = 0; i < s->len; i++)
				if (s->v[i]->pid == (pid_t)si.ssi_int)
					attempt_stop(s->v[i], now);
		} else {
			/* TERM, INT, HUP: stop every worker, take no more */
			sup_drop_held(s, 1);
			for (i = 0; i < s->len; i++)
				attempt_stop(s->v[i], now);
			if (s->sock >= 0) {
				close(s->sock);
				s->sock = -1;
			}
		}
	}
}

/* Renew leases, enforce timeouts and kill grace; returns ms to the next deadline. */
static int64_t
sup_timers(struct sup *s)
{
	int64_t now = ag_mono_ms(), next = INT64_MAX;
	size_t i;

	for (i = 0; i < s->len; i++) {
		struct attempt *a = s->v[i];
		if (now >= a->renew) {
			futimens(a->lease_fd, NULL);	/* the lease: "still alive" */
			a->renew = now + a->ttl_ms / 3;
		}
		if (a->deadline && now >= a->deadline && !a->res.timed_out &&
		    !a->res.terminated) {
			a->res.timed_out = 1;
			kill(-a->pid, SIGTERM);
			a->kill_at = now + a->grace_ms;
		}
		if (a->kill_at && now >= a->kill_at) {
			kill(-a->pid, SIGKILL);
			a->kill_at = 0;
		}
		next = min64(next, a->renew);
		if (a->deadline && !a->res.timed_out && !a->res.terminated)
			next = min64(next, a->deadline);
		if (a->kill_at)
			next = min64(next, a->kill_at);
	}
	return next == INT64_MAX ? -1 : (next - now < 1 ? 1 : next - now);
}

static int
sup_init(struct sup *s, const char *dir, int sock)
{
	sigset_t set;

	memset(s, 0, sizeof(*s));
	s->sock = sock;
	s->sigfd = s->wake = -1;
	if (!realpath(dir, s->dir))
		return ag_error_sys(AG_ERROR, "cannot resolve '%s'", dir);
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, AG_SIG_CANCEL);
	sigprocmask(SIG_BLOCK, &set, NULL);
	if ((s->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK)) < 0)
		return ag_error_sys(AG_ERROR, "cannot set up signals");
	/* a write to a wake FIFO whose serve is gone fails with EPIPE instead */
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigprocmask(SIG_BLOCK, &set, NULL);
	return 0;
}

/* Supervise until no attempt is left and no serve can send another. */
static int
sup_loop(struct sup *s)
{
	while (s->len || s->sock >= 0) {
		struct pollfd pfd[2];
		int64_t wait = sup_timers(s);

		pfd[0].fd = s->sigfd;
		pfd[0].events = POLLIN;
		pfd[1].fd = s->sock;
		pfd[1].events = POLLIN;
		if (poll(pfd, s->sock >= 0 ? 2 : 1, wait < 0 ? -1 : (int)min64(wait, INT_MAX)) < 0 &&
		    errno != EINTR)
			return ag_error_sys(AG_ERROR, "poll");
		if (pfd[0].revents & POLLIN)
			sup_signals(s);
		if (s->sock >= 0 && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			int r;
			while ((r = sup_receive(s)) > 0)
				;
			if (r < 0) {
				/* serve is gone: finish what runs and what is staged, then go */
				sup_drop_held(s, 0);
				close(s->sock);
				s->sock = -1;
			}
		}
	}
	return 0;
}

static void
sup_release(struct sup *s)
{
	if (s->sigfd >= 0)
		close(s->sigfd);
	if (s->wake >= 0)
		close(s->wake);
	if (s->sock >= 0)
		close(s->sock);
	free(s->v);
}

int
ag_exec_attempt(const char *dir, const char *run, const char *item, int attempt,
    size_t nlocks)
{
	int locks[AG_SUP_FDS_MAX];
	struct attempt *a;
	struct sup s;
	size_t i;
	int rc;

	if (nlocks > AG_LOCKS_MAX)
		return ag_error_set(AG_EINVALID, "too many locks: %zu", nlocks);
	for (i = 0; i <= nlocks; i++)
		fcntl(3 + (int)i, F_SETFD, FD_CLOEXEC);	/* the worker must not hold them */
	if (ag_id_check(run, strlen(run)) < 0 || ag_id_check(item, strlen(item)) < 0)
		return AG_EINVALID;
	if ((rc = sup_init(&s, dir, -1)) < 0)
		goto out;
	for (i = 0; i < nlocks; i++)
		locks[i] = 4 + (int)i;
	if (!(a = attempt_new(3, locks, nlocks))) {
		rc = ag_error_set(AG_ERROR, "out of memory");
		goto out;
	}
	sup_begin(&s, a, run, item, attempt);
	if ((rc = sup_loop(&s)) == 0)
		rc = s.rc;
out:
	sup_release(&s);
	return rc;
}

int
ag_exec_resident(const char *dir, int sock)
{
	struct sup s;
	int rc;

	fcntl(sock, F_SETFD, FD_CLOEXEC);
	if ((rc = sup_init(&s, dir, sock)) == 0)
		rc = sup_loop(&s);
	sup_release(&s);
	return rc;
}
