/*
 * The only way state files are written: a temp name in the same
 * directory, fsync, rename, fsync of the directory. Logs are appended a
 * whole line per write(2).
 */
#include "agora.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "banned.h"

int
ag_path(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, size, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= size)
		return ag_error_set(AG_EINVALID, "path too long: '%s'", ag_quote(out, strlen(out)));
	return 0;
}

int
ag_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return ag_error_sys(AG_ERROR, "cannot open directory '%s'", dir);
	if (fsync(fd) < 0 && errno != EINVAL) {
		close(fd);
		return ag_error_sys(AG_ERROR, "cannot fsync directory '%s'", dir);
	}
	close(fd);
	return 0;
}

int
ag_fsync_parent(const char *path)
{
	char dir[AG_PATH_MAX];
	char *slash;

	if (ag_path(dir, sizeof(dir), "%s", path) < 0)
		return AG_EINVALID;
	slash = strrchr(dir, '/');
	if (!slash)
		return ag_fsync_dir(".");
	if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	return ag_fsync_dir(dir);
}

int
ag_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Create or truncate path and write data to it, fsynced when sync is set.
 * A file that could not be written whole is removed when drop is set.
 */
static int
write_whole(const char *path, const void *data, size_t len, int mode, int sync, int drop)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	int rc;

	if (fd < 0)
		return ag_error_sys(AG_ERROR, "cannot create '%s'", path);
	if (ag_write_all(fd, data, len) < 0 || (sync && fsync(fd) < 0)) {
		rc = ag_error_sys(AG_ERROR, "cannot write '%s'", path);
		close(fd);
	} else if (close(fd) < 0) {
		rc = ag_error_sys(AG_ERROR, "cannot write '%s'", path);
	} else {
		return 0;
	}
	if (drop)
		unlink(path);
	return rc;
}

static int
write_temp(const char *path, char *tmp, size_t tmpsize, const void *data,
    size_t len, int mode, int sync)
{
	const char *base = strrchr(path, '/');

	base = base ? base + 1 : path;
	if (ag_path(tmp, tmpsize, "%.*s.%s.tmp%ld", (int)(base - path), path,
	    base, (long)getpid()) < 0)
		return AG_EINVALID;
	return write_whole(tmp, data, len, mode, sync, 1);
}

static int
write_file(const char *path, const void *data, size_t len, int mode, int sync)
{
	char tmp[AG_PATH_MAX];
	int rc;

	if ((rc = write_temp(path, tmp, sizeof(tmp), data, len, mode, sync)) < 0)
		return rc;
	if (rename(tmp, path) < 0) {
		rc = ag_error_sys(AG_ERROR, "cannot rename '%s' to '%s'", tmp, path);
		unlink(tmp);
		return rc;
	}
	return sync ? ag_fsync_parent(path) : 0;
}

int
ag_write_atomic(const char *path, const void *data, size_t len, int mode)
{
	return write_file(path, data, len, mode, 1);
}

/*
 * The files of an attempt that others read at any time (result.json) and
 * the state.json cache: status.jsonl, fsynced once per tick, is what makes
 * a step durable, so these only need to be whole, never torn. After a
 * power cut one may be missing, and the log still tells what to do.
 */
int
ag_write_replace(const char *path, const void *data, size_t len, int mode)
{
	return write_file(path, data, len, mode, 0);
}

int
ag_write_fresh(const char *path, const void *data, size_t len, int mode)
{
	return write_whole(path, data, len, mode, 0, 0);
}

int
ag_create_excl_parts(const char *path, const struct iovec *parts, size_t n, int mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	size_t i;

	if (fd < 0)
		return ag_error_sys(errno == EEXIST ? AG_EEXISTS : AG_ERROR,
		    "cannot create '%s'", path);
	for (i = 0; i < n; i++)
		if (ag_write_all(fd, parts[i].iov_base, parts[i].iov_len) < 0)
			break;
	if (i < n || fsync(fd) < 0) {
		int rc = ag_error_sys(AG_ERROR, "cannot write '%s'", path);
		close(fd);
		unlink(path);
		return rc;
	}
	close(fd);
	return ag_fsync_parent(path);
}

int
ag_create_excl(const char *path, const void *data, size_t len, int mode)
{
	struct iovec part = { (void *)data, len };

	return ag_create_excl_parts(path, &part, 1, mode);
}

int
ag_read_fd(struct ag_buf *out, int fd, const char *path, size_t max, int secret)
{
	char chunk[65536];
	int rc = 0;
	ssize_t n;

	ag_buf_init(out, max);
	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* a directory is a wrong argument, not a passing fault */
			rc = ag_error_sys(errno == EISDIR ? AG_EINVALID : AG_ERROR, "cannot read '%s'", path);
			break;
		}
		if (n == 0)
			break;
		if (out->len + (size_t)n > max) {
			rc = ag_error_set(AG_EINVALID, "'%s' is larger than %zu bytes", path, max);
			break;
		}
		if ((rc = ag_buf_put(out, chunk, (size_t)n)) < 0)
			break;
	}
	if (secret)
		explicit_bzero(chunk, sizeof(chunk));
	if (rc == 0 && !out->ptr)
		rc = ag_buf_put(out, "", 0);
	if (rc < 0) {
		if (secret && out->ptr)
			explicit_bzero(out->ptr, out->cap);
		ag_buf_release(out);
	}
	return rc;
}

int
ag_read_file(struct ag_buf *out, const char *path, size_t max)
{
	int fd, rc;

	if (strcmp(path, "-") == 0)
		fd = 0;
	else if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return ag_error_sys(errno == ENOTDIR ? AG_EINVALID : AG_ERROR, "cannot read '%s'", path);
	rc = ag_read_fd(out, fd, path, max, 0);
	if (fd != 0)
		close(fd);
	return rc;
}

int
ag_mkdir(const char *path, int mode)
{
	if (mkdir(path, (mode_t)mode) < 0 && errno != EEXIST)
		return ag_error_sys(AG_ERROR, "cannot create directory '%s'", path);
	return 0;
}

int
ag_mkdir_p(const char *path, int mode)
{
	char buf[AG_PATH_MAX];
	char *p;
	int rc;

	if ((rc = ag_path(buf, sizeof(buf), "%s", path)) < 0)
		return rc;
	for (p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if ((rc = ag_mkdir(buf, 0755)) < 0)
			return rc;
		*p = '/';
	}
	return ag_mkdir(buf, mode);
}

int
ag_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

int
ag_dir_empty(const char *path)
{
	struct dirent *de;
	DIR *d = opendir(path);
	int empty = 1;

	if (!d)
		return errno == ENOENT ? 1 : -1;
	while (empty && (de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			empty = 0;
	closedir(d);
	return empty;
}

/*
 * Poke agora-serve through the wake FIFO. Nobody listening is fine: the
 * open fails with ENXIO and cron's next tick sees the change anyway.
 * With *fd >= 0 the descriptor is reused; one that fails (EPIPE: serve
 * went away; SIGPIPE must be blocked or ignored) is closed, and the next
 * poke opens the FIFO afresh.
 */
void
ag_wake_fd(int *fd, const char *dir)
{
	char path[AG_PATH_MAX];

	if (*fd < 0 && ag_path(path, sizeof(path), "%s/wake", dir) == 0)
		*fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	/* EAGAIN: a full FIFO already holds a wake-up */
	if (*fd >= 0 && write(*fd, "!", 1) < 0 && errno != EAGAIN) {
		close(*fd);
		*fd = -1;
	}
}

void
ag_wake(const char *dir)
{
	int fd = -1;

	ag_wake_fd(&fd, dir);
	if (fd >= 0)
		close(fd);
}
