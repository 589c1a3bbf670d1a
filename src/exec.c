/*
 * agora-exec, the supervisor of one attempt. It holds the lease (fd 3)
 * and the resource locks (fd 4 on) for as long as it lives, renews the
 * lease every ttl/3, runs the worker in its own process group with a
 * clean environment, enforces the timeout, forwards a cancel, kills the
 * whole group at the end, and writes result.json atomically.
 */
#include "agora.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
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
};

static int
write_result(const char *adir, const struct result *res, const char *dir)
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
	s = json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!s)
		return ag_error_set(AG_ERROR, "out of memory");
	rc = ag_path(path, sizeof(path), "%s/result.json", adir);
	if (rc == 0)
		rc = ag_write_replace(path, s, strlen(s), 0644);
	free(s);
	ag_wake(dir);
	return rc;
}

static int
build_env(struct envv *e, const json_t *spec, const char *dir, const char *adir,
    const char *run, const char *item, const char *attempt)
{
	static const char *const keep[] = { "HOME", "LANG", "TZ", NULL };
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

static void
on_chld(int sig)
{
	(void)sig;
}

/*
 * Run the worker and wait for it. Returns with res filled in; the
 * process group is gone when this returns.
 */
static void
supervise(struct result *res, char **argv, char **envp, const char *cwd, const char *adir,
    int64_t timeout_ms, int64_t grace_ms, int64_t ttl_ms)
{
	char path[AG_PATH_MAX], pidtext[64];
	int errpipe[2] = { -1, -1 }, gopipe[2] = { -1, -1 }, out = -1, err = -1, null = -1;
	int status, child_fail[2] = { 0, 0 };
	int64_t now, renew, deadline, kill_at = 0;
	sigset_t set;
	pid_t pid, self = getpid();
	struct sigaction sa;
	ssize_t n;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_chld;
	sigaction(SIGCHLD, &sa, NULL);
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);

	if (ag_path(path, sizeof(path), "%s/stdout", adir) == 0)
		out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (ag_path(path, sizeof(path), "%s/stderr", adir) == 0)
		err = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (out < 0 || err < 0 || null < 0 || pipe2(errpipe, O_CLOEXEC) < 0 ||
	    pipe2(gopipe, O_CLOEXEC) < 0) {
		snprintf(res->reason, sizeof(res->reason), "cannot set up the worker: %s",
		    strerror(errno));
		goto out;
	}
	res->started = ag_now_ms();
	pid = fork();
	if (pid < 0) {
		snprintf(res->reason, sizeof(res->reason), "cannot fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0) {
		sigset_t none;
		int fail[2];
		char go;
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != self)
			_exit(127);
		/* wait for the pid file; end of file means the supervisor is gone */
		close(gopipe[1]);
		if (read(gopipe[0], &go, 1) != 1)
			_exit(127);
		close(gopipe[0]);
		sigemptyset(&none);
		signal(SIGCHLD, SIG_DFL);
		sigprocmask(SIG_SETMASK, &none, NULL);
		/* tell the supervisor which step failed: 1 set-up, 2 chdir, 3 exec */
		fail[0] = 1;
		if (dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
			goto child_fail;
		fail[0] = 2;
		if (cwd && chdir(cwd) < 0)
			goto child_fail;
		fail[0] = 3;
		environ = envp;
		execvp(argv[0], argv);
child_fail:
		fail[1] = errno;
		if (write(errpipe[1], fail, sizeof(fail)) < 0)
			_exit(127);
		_exit(127);
	}
	setpgid(pid, pid);
	/*
	 * The pid file is there before the worker runs: an attempt without
	 * one never started its worker, and reconcile requeues it uncounted.
	 */
	close(gopipe[0]);
	gopipe[0] = -1;
	snprintf(pidtext, sizeof(pidtext), "%ld %ld\n", (long)self, (long)pid);
	if (ag_path(path, sizeof(path), "%s/pid", adir) < 0 ||
	    ag_write_replace(path, pidtext, strlen(pidtext), 0644) < 0 ||
	    write(gopipe[1], "!", 1) != 1) {
		snprintf(res->reason, sizeof(res->reason), "cannot start the worker: %s",
		    ag_error_msg());
		kill(pid, SIGKILL);
	}
	close(gopipe[1]);
	gopipe[1] = -1;
	close(errpipe[1]);
	errpipe[1] = -1;
	while ((n = read(errpipe[0], child_fail, sizeof(child_fail))) < 0 && errno == EINTR)
		;
	if (n == (ssize_t)sizeof(child_fail)) {
		if (child_fail[0] == 3)
			snprintf(res->reason, sizeof(res->reason), "cannot execute '%s': %s",
			    ag_quote(argv[0], strlen(argv[0])), strerror(child_fail[1]));
		else if (child_fail[0] == 2)
			snprintf(res->reason, sizeof(res->reason), "cannot change to directory '%s': %s",
			    ag_quote(cwd, strlen(cwd)), strerror(child_fail[1]));
		else
			snprintf(res->reason, sizeof(res->reason), "cannot set up the worker: %s",
			    strerror(child_fail[1]));
		res->permanent = 1;
	}

	now = ag_mono_ms();
	renew = now + ttl_ms / 3;
	deadline = timeout_ms > 0 ? now + timeout_ms : INT64_MAX;
	for (;;) {
		struct timespec ts;
		siginfo_t info;
		int64_t wake, wpid;
		int sig;

		while ((wpid = waitpid(pid, &status, WNOHANG)) < 0 && errno == EINTR)
			;
		if (wpid == pid)
			break;
		now = ag_mono_ms();
		if (now >= renew) {
			futimens(3, NULL);	/* the lease: "still alive" */
			renew = now + ttl_ms / 3;
		}
		if (now >= deadline && !res->timed_out && !res->terminated) {
			res->timed_out = 1;
			kill(-pid, SIGTERM);
			kill_at = now + grace_ms;
		}
		if (kill_at && now >= kill_at) {
			kill(-pid, SIGKILL);
			kill_at = 0;
		}
		wake = min64(renew, deadline);
		if (kill_at)
			wake = min64(wake, kill_at);
		wake -= now;
		if (wake < 1)
			wake = 1;
		ts.tv_sec = (time_t)(wake / 1000);
		ts.tv_nsec = (long)(wake % 1000) * 1000000;
		sig = sigtimedwait(&set, &info, &ts);
		if ((sig == SIGTERM || sig == SIGINT || sig == SIGHUP) && !res->terminated) {
			res->terminated = 1;
			kill(-pid, SIGTERM);
			kill_at = ag_mono_ms() + grace_ms;
		}
	}
	res->ended = ag_now_ms();
	/* whatever the worker left behind in its group goes with it */
	kill(-pid, SIGKILL);
	if (WIFEXITED(status)) {
		res->exited = 1;
		res->code = WEXITSTATUS(status);
	} else if (WIFSIGNALED(status)) {
		res->sig = WTERMSIG(status);
	}
	if (res->timed_out)
		snprintf(res->reason, sizeof(res->reason), "timeout after %.3gs",
		    (double)timeout_ms / 1000.0);
	else if (res->terminated)
		snprintf(res->reason, sizeof(res->reason), "terminated");
out:
	if (!res->ended)
		res->ended = ag_now_ms();
	if (!res->started)
		res->started = res->ended;
	if (errpipe[0] >= 0)
		close(errpipe[0]);
	if (errpipe[1] >= 0)
		close(errpipe[1]);
	if (gopipe[0] >= 0)
		close(gopipe[0]);
	if (gopipe[1] >= 0)
		close(gopipe[1]);
	if (out >= 0)
		close(out);
	if (err >= 0)
		close(err);
	if (null >= 0)
		close(null);
}

int
ag_exec_attempt(const char *dir, const char *run, const char *item, int attempt,
    size_t nlocks)
{
	char adir[AG_PATH_MAX], path[AG_PATH_MAX], att[32], cwdbuf[AG_PATH_MAX], absdir[PATH_MAX];
	struct result res;
	struct envv env = { 0 };
	struct ag_buf b = { 0 };
	json_t *spec = NULL, *v;
	char **argv = NULL, *input = NULL;
	const char *cwd = adir;
	size_t i;
	int rc;

	memset(&res, 0, sizeof(res));
	for (i = 0; i <= nlocks; i++)
		fcntl(3 + (int)i, F_SETFD, FD_CLOEXEC);	/* the worker must not hold them */
	if (ag_id_check(run, strlen(run)) < 0 || ag_id_check(item, strlen(item)) < 0)
		return AG_EINVALID;
	snprintf(att, sizeof(att), "%d", attempt);
	/* the worker runs elsewhere: every path it is given must be absolute */
	if (!realpath(dir, absdir))
		return ag_error_sys(AG_ERROR, "cannot resolve '%s'", dir);
	dir = absdir;
	if ((rc = ag_path(adir, sizeof(adir), "%s/runs/%s/items/%s/%d", dir, run, item, attempt)) < 0 ||
	    (rc = ag_path(path, sizeof(path), "%s/spec.json", adir)) < 0)
		return rc;
	if ((rc = ag_read_file(&b, path, (size_t)AG_PLAN_MAX)) < 0)
		return rc;
	spec = json_loadb(b.ptr, b.len, 0, NULL);
	ag_buf_release(&b);
	if (!spec) {
		snprintf(res.reason, sizeof(res.reason), "unreadable spec.json");
		res.permanent = 1;
		goto report;
	}
	if ((v = json_object_get(spec, "error"))) {
		snprintf(res.reason, sizeof(res.reason), "%s", json_string_value(v));
		res.permanent = 1;
		goto report;
	}
	if (ag_path(path, sizeof(path), "%s/outputs", adir) < 0 || ag_mkdir(path, 0755) < 0) {
		snprintf(res.reason, sizeof(res.reason), "%s", ag_error_msg());
		goto report;
	}
	input = json_dumps(json_object_get(spec, "inputs"), JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	if (ag_path(path, sizeof(path), "%s/input.json", adir) < 0 || !input ||
	    ag_write_replace(path, input, strlen(input), 0644) < 0) {
		snprintf(res.reason, sizeof(res.reason), "cannot write input.json: %s", ag_error_msg());
		goto report;
	}
	if (build_env(&env, spec, dir, adir, run, item, att) < 0) {
		snprintf(res.reason, sizeof(res.reason), "cannot build the environment");
		goto report;
	}
	if (build_argv(&argv, spec, res.reason, sizeof(res.reason)) < 0) {
		res.permanent = 1;
		goto report;
	}
	if ((v = json_object_get(spec, "cwd")) && json_is_string(v)) {
		const char *c = json_string_value(v);
		if (c[0] == '/')
			cwd = c;
		else if (ag_path(cwdbuf, sizeof(cwdbuf), "%s/%s", adir, c) == 0)
			cwd = cwdbuf;
	}
	supervise(&res, argv, env.v, cwd, adir,
	    json_integer_value(json_object_get(spec, "timeoutMs")),
	    json_integer_value(json_object_get(spec, "killGraceMs")),
	    json_integer_value(json_object_get(spec, "leaseTtlMs")) > 0 ?
	    json_integer_value(json_object_get(spec, "leaseTtlMs")) : 30000);
report:
	/*
	 * The worker's group is gone: let go of the resource locks before
	 * reporting, so that the tick which reaps this attempt can already
	 * hand them on. The lease (fd 3) stays held until we exit.
	 */
	for (i = 1; i <= nlocks; i++)
		close(3 + (int)i);
	rc = write_result(adir, &res, dir);
	free(argv);
	free(input);
	env_free(&env);
	json_decref(spec);
	return rc;
}
