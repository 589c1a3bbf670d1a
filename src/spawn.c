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
 * running program (a build tree), then the installed libexec directory.
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
		}
	}
	if (ag_path(buf, size, "%s/%s", LIBEXECDIR, prog) == 0 && access(buf, X_OK) == 0)
		return buf;
	return NULL;
}

int
ag_spawn_supervisor(const char *dir, const char *run, const char *item, int attempt,
    int lease_fd, const int *lock_fds, size_t nlocks)
{
	char exe[AG_PATH_MAX], att[32], nl[32];
	pid_t pid;
	int status;

	if (!ag_libexec_path("agora-exec", exe, sizeof(exe)))
		return ag_error_set(AG_ERROR, "cannot find agora-exec (set AGORA_LIBEXEC)");
	snprintf(att, sizeof(att), "%d", attempt);
	snprintf(nl, sizeof(nl), "%zu", nlocks);
	pid = fork();
	if (pid < 0)
		return ag_error_sys(AG_ERROR, "cannot fork");
	if (pid == 0) {
		int high[AG_LOCKS_MAX + 1], fd;
		size_t i;
		sigset_t none;

		setsid();
		pid = fork();
		if (pid != 0)
			_exit(pid < 0 ? 1 : 0);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		for (i = 1; i < NSIG; i++)
			signal((int)i, SIG_DFL);
		/* move the descriptors out of the way, then into place */
		high[0] = fcntl(lease_fd, F_DUPFD, 64 + AG_LOCKS_MAX);
		for (i = 0; i < nlocks; i++)
			high[i + 1] = fcntl(lock_fds[i], F_DUPFD, 64 + AG_LOCKS_MAX);
		for (i = 0; i <= nlocks; i++)
			if (high[i] < 0 || dup2(high[i], 3 + (int)i) < 0)
				_exit(126);
		fd = open("/dev/null", O_RDWR);
		if (fd < 0)
			_exit(126);
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		close_range(4 + (unsigned)nlocks, ~0U, 0);
		execl(exe, "agora-exec", "-d", dir, "-l", nl, run, item, att, (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return ag_error_sys(AG_ERROR, "cannot wait for the spawner");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return ag_error_set(AG_ERROR, "cannot start agora-exec for %s/%s", run, item);
	return 0;
}
