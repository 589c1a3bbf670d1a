/*
 * Starting a supervisor: double fork and setsid, so it belongs to no
 * terminal and no tick; the lease and lock descriptors move to fixed
 * numbers and the supervisor inherits them, so they live exactly as long
 * as it does.
 */
#include "agora.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "banned.h"

#ifndef LIBEXECDIR
#define LIBEXECDIR "/usr/local/libexec/agora"
#endif

/*
 * Where agora's helper programs are: $AGORA_LIBEXEC, then beside the
 * running program (a build tree), then ../libexec/agora from it (an
 * installed tree, even one moved after its build), then LIBEXECDIR.
 */
const char *
ag_libexec_path(const char *prog, char *buf, size_t size)
{
	const char *env = getenv("AGORA_LIBEXEC");
	char self[PATH_MAX];
	ssize_t n;

	if (env && *env && ag_path(buf, size, "%s/%s", env, prog) == 0 && access(buf, X_OK) == 0)
		return buf;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		char *slash;
		self[n] = '\0';
		if ((slash = strrchr(self, '/'))) {
			*slash = '\0';
			if (ag_path(buf, size, "%s/%s", self, prog) == 0 && access(buf, X_OK) == 0)
				return buf;
			/* an installed tree, wherever it was installed: bin/../libexec/agora */
			if (ag_path(buf, size, "%s/../libexec/agora/%s", self, prog) == 0 &&
			    access(buf, X_OK) == 0)
				return buf;
		}
	}
	if (ag_path(buf, size, "%s/%s", LIBEXECDIR, prog) == 0 && access(buf, X_OK) == 0)
		return buf;
	return NULL;
}

/*
 * posix_spawn (a vfork underneath) rather than fork: the tick's process
 * may hold a large run in memory, and copying its page tables for every
 * attempt showed in profiles. The supervisor gets a new session, default
 * signal handling, /dev/null for stdio, the lease as fd 3 and the locks
 * from fd 4 on, and nothing else. The tick reaps finished supervisors
 * with ag_spawn_reap().
 */
int
ag_spawn_supervisor(const char *dir, const char *run, const char *item, int attempt,
    int lease_fd, const int *lock_fds, size_t nlocks)
{
	extern char **environ;
	char exe[AG_PATH_MAX], att[32], nl[32];
	char *argv[] = { "agora-exec", "-d", (char *)dir, "-l", nl, (char *)run, (char *)item,
		att, NULL };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	int high[AG_LOCKS_MAX + 1];
	size_t i, n = 0;
	pid_t pid;
	int rc = 0, err;

	if (!ag_libexec_path("agora-exec", exe, sizeof(exe)))
		return ag_error_set(AG_ERROR, "cannot find agora-exec (set AGORA_LIBEXEC)");
	snprintf(att, sizeof(att), "%d", attempt);
	snprintf(nl, sizeof(nl), "%zu", nlocks);
	/* copies out of the way of fds 0..3+nlocks, so the dup2s cannot clash */
	high[n] = fcntl(lease_fd, F_DUPFD_CLOEXEC, 64 + AG_LOCKS_MAX);
	if (high[n++] < 0)
		return ag_error_sys(AG_ERROR, "cannot duplicate the lease descriptor");
	for (i = 0; i < nlocks; i++) {
		high[n] = fcntl(lock_fds[i], F_DUPFD_CLOEXEC, 64 + AG_LOCKS_MAX);
		if (high[n++] < 0) {
			rc = ag_error_sys(AG_ERROR, "cannot duplicate a lock descriptor");
			goto close;
		}
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigfillset(&all);
	sigdelset(&all, SIGKILL);
	sigdelset(&all, SIGSTOP);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
	    POSIX_SPAWN_SETSIGDEF);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDWR, 0);
	posix_spawn_file_actions_adddup2(&fa, 0, 1);
	posix_spawn_file_actions_adddup2(&fa, 0, 2);
	for (i = 0; i < n; i++)
		posix_spawn_file_actions_adddup2(&fa, high[i], 3 + (int)i);
	posix_spawn_file_actions_addclosefrom_np(&fa, 3 + (int)n);
	err = posix_spawn(&pid, exe, &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (err) {
		errno = err;
		rc = ag_error_sys(AG_ERROR, "cannot start agora-exec for %s/%s", run, item);
	}
close:
	for (i = 0; i < n; i++)
		close(high[i]);
	return rc;
}

void
ag_spawn_reap(void)
{
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}
