/*
 * Ids and lock keys. Ids must match [A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}
 * so that no id can name a path outside its directory. Lock keys are free
 * strings; their file names are an escaped form, or a hash when long.
 */
#include "agora.h"

#include <stdio.h>
#include <string.h>

#include "banned.h"

static int
id_char(unsigned char c, int first)
{
	if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
		return 1;
	if (first)
		return 0;
	return c == '.' || c == '_' || c == '@' || c == ':' || c == '+' || c == '-';
}

int
ag_id_check(const char *s, size_t len)
{
	size_t i;

	if (len == 0)
		return ag_error_set(AG_EINVALID, "empty id");
	if (len > AG_ID_MAX)
		return ag_error_set(AG_EINVALID, "id '%s' is longer than %d characters",
		    ag_quote(s, len), AG_ID_MAX);
	for (i = 0; i < len; i++)
		if (!id_char((unsigned char)s[i], i == 0))
			return ag_error_set(AG_EINVALID,
			    "invalid id '%s': ids match [A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}",
			    ag_quote(s, len));
	return 0;
}

/* Who did it: printable ASCII without spaces or '@' ("@actor" ends a control line). */
int
ag_actor_check(const char *a, size_t n)
{
	size_t i;

	if (n == 0 || n > AG_ID_MAX)
		return ag_error_set(AG_EINVALID, "invalid actor '%s': 1 to %d characters",
		    ag_quote(a, n), AG_ID_MAX);
	for (i = 0; i < n; i++)
		if ((unsigned char)a[i] <= ' ' || (unsigned char)a[i] >= 0x7f || a[i] == '@')
			return ag_error_set(AG_EINVALID,
			    "invalid actor '%s': printable characters, no spaces or '@'", ag_quote(a, n));
	return 0;
}

int
ag_id_valid(const char *s)
{
	return s && ag_id_check(s, strlen(s)) == 0;
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
