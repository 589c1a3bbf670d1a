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

/*
 * locks/<name>: keys made of [A-Za-z0-9._-] keep their spelling (with a
 * leading dot escaped), other bytes become %XX, and a name that would be
 * longer than 200 bytes becomes "sha256-<hex>".
 */
int
ag_lock_filename(char *out, size_t size, const char *key)
{
	size_t i, n = 0, len = strlen(key);
	char hex[65];

	if (size < 80)
		return ag_error_set(AG_ERROR, "lock name buffer too small");
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)key[i];
		int plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '-' || (c == '.' && i > 0);
		if (n + 4 > 200 || n + 4 > size)
			goto hashed;
		if (plain) {
			out[n++] = (char)c;
		} else {
			snprintf(out + n, 4, "%%%02X", c);
			n += 3;
		}
	}
	if (n == 0)
		goto hashed;
	out[n] = '\0';
	return 0;
hashed:
	if (ag_sha256_hex(hex, key, len) < 0)
		return AG_ERROR;
	snprintf(out, size, "sha256-%s", hex);
	return 0;
}
