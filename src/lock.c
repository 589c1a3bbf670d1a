/*
 * Locks are flocks on permanent files. A lock lives exactly as long as
 * the open file description that holds it, so no lock can go stale and
 * there is no "unlock" command.
 */
#include "agora.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "banned.h"

int
ag_lock_open(int *out, const char *path, int nonblock)
{
	int fd;

	*out = -1;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return ag_error_sys(AG_ERROR, "cannot open lock '%s'", path);
	while (flock(fd, LOCK_EX | (nonblock ? LOCK_NB : 0)) < 0) {
		int rc;
		if (errno == EINTR)
			continue;
		if (errno == EWOULDBLOCK)
			rc = ag_error_set(AG_ELOCKED, "'%s' is locked by another process", path);
		else
			rc = ag_error_sys(AG_ERROR, "cannot lock '%s'", path);
		close(fd);
		return rc;
	}
	*out = fd;
	return 0;
}

int
ag_lock_held(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	int held;

	if (fd < 0)
		return 0;
	held = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
	close(fd);
	return held;
}
