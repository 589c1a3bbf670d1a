/*
 * sandbox = bwrap: the command line that runs a subagent under Debian's
 * bubblewrap. The whole filesystem is there read-only, so the tools an
 * agent needs are where it expects them; over it go a fresh /tmp, /dev
 * and /proc, and a tmpfs over the state directory, so that agora.conf,
 * the signing key and every other run are out of reach. Into that empty
 * state directory the attempt's own worktree and outputs/ come back
 * writable, and its input.json and inputs/ read-only, at their own
 * paths, so AGORA_INPUT and the other variables keep their meaning.
 *
 * The network, PID, IPC and UTS namespaces are new: the worker sees its
 * own processes and a loopback device, nothing of the host's; network =
 * host keeps the host's network, for an agent that calls a remote model.
 * There is
 * no --new-session: the supervisor kills the worker's process group,
 * which holds bwrap and everything in the sandbox that did not leave
 * the group; what did leave dies with the namespace when bwrap does
 * (--die-with-parent). Supervisors run in a session of their own, so
 * there is no terminal to inject input into.
 */
#include "agora.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "banned.h"

#define WORDS_MAX 64	/* bwrap's own words; the worker's argv comes after */

struct words {
	const char *v[WORDS_MAX];
	size_t n;
	int full;
};

static void
add(struct words *w, const char *a, const char *b, const char *c)
{
	const char *in[3] = { a, b, c };
	size_t i;

	for (i = 0; i < 3 && in[i]; i++) {
		if (w->n == WORDS_MAX) {
			w->full = 1;
			return;
		}
		w->v[w->n++] = in[i];
	}
}

static int
is_dir(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Every path must be absolute: bwrap mounts at exactly these places. */
static int
check_path(const char *what, const char *path)
{
	if (!path || path[0] != '/')
		return ag_error_set(AG_EINVALID, "sandbox: %s '%s' is not an absolute path", what,
		    path ? path : "");
	if (strlen(path) >= AG_PATH_MAX)
		return ag_error_set(AG_EINVALID, "sandbox: %s is too long", what);
	return 0;
}

int
ag_sandbox_argv(char ***out, const char *bwrap, const struct ag_sandbox *sb, char *const *argv)
{
	static const char *const masks[] = { "/run", "/var/tmp", NULL };
	char fdnum[16];
	struct words w;
	size_t i, argc, nwords, size;
	char **v, *p;
	int rc;

	*out = NULL;
	if ((rc = check_path("program 'bwrap'", bwrap)) < 0 ||
	    (rc = check_path("state directory", sb->state)) < 0 ||
	    (rc = check_path("worktree", sb->worktree)) < 0 ||
	    (rc = check_path("outputs", sb->outputs)) < 0 ||
	    (rc = check_path("input", sb->input)) < 0 ||
	    (sb->inputs && (rc = check_path("inputs", sb->inputs)) < 0))
		return rc;
	if (strcmp(sb->state, "/") == 0)
		return ag_error_set(AG_EINVALID, "sandbox: the state directory cannot be '/'");
	w.n = 0;
	w.full = 0;
	add(&w, bwrap, "--die-with-parent", NULL);
	if (sb->status_fd >= 0) {
		snprintf(fdnum, sizeof(fdnum), "%d", sb->status_fd);
		add(&w, "--json-status-fd", fdnum, NULL);
	}
	add(&w, "--unshare-pid", "--unshare-ipc", sb->share_net ? NULL : "--unshare-net");
	add(&w, "--unshare-uts", "--unshare-cgroup-try", NULL);
	add(&w, "--cap-drop", "ALL", NULL);
	add(&w, "--ro-bind", "/", "/");
	add(&w, "--dev", "/dev", NULL);
	add(&w, "--proc", "/proc", NULL);
	/* a root worker owns /proc/sys: it must not tune the host's kernel */
	add(&w, "--ro-bind", "/proc/sys", "/proc/sys");
	add(&w, "--ro-bind-try", "/proc/sysrq-trigger", "/proc/sysrq-trigger");
	add(&w, "--tmpfs", "/tmp", NULL);
	/* sockets stay connectable on a read-only mount: hide the daemons' */
	for (i = 0; masks[i]; i++)
		if (is_dir(masks[i]))
			add(&w, "--tmpfs", masks[i], NULL);
	add(&w, "--tmpfs", sb->state, NULL);
	add(&w, "--bind", sb->worktree, sb->worktree);
	add(&w, "--bind", sb->outputs, sb->outputs);
	add(&w, "--ro-bind", sb->input, sb->input);
	if (sb->inputs)
		add(&w, "--ro-bind", sb->inputs, sb->inputs);
	add(&w, "--remount-ro", sb->state, NULL);
	add(&w, "--chdir", sb->worktree, NULL);
	add(&w, "--", NULL, NULL);
	if (w.full)
		return ag_error_set(AG_ERROR, "sandbox: too many bwrap arguments");

	/* one allocation, the pointers first and then the strings: free() it */
	for (argc = 0; argv[argc]; argc++)
		;
	nwords = w.n + argc;
	size = (nwords + 1) * sizeof(*v);
	for (i = 0; i < nwords; i++) {
		size_t len = strlen(i < w.n ? w.v[i] : argv[i - w.n]) + 1;
		if (size > SIZE_MAX - len)
			return ag_error_set(AG_ERROR, "out of memory");
		size += len;
	}
	if (!(v = malloc(size)))
		return ag_error_set(AG_ERROR, "out of memory");
	p = (char *)(v + nwords + 1);
	for (i = 0; i < nwords; i++) {
		const char *s = i < w.n ? w.v[i] : argv[i - w.n];
		size_t len = strlen(s) + 1;
		memcpy(p, s, len);
		v[i] = p;
		p += len;
	}
	v[nwords] = NULL;
	*out = v;
	return 0;
}
