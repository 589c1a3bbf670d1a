/*
 * One error message per thread of control, set once where a failure
 * happens. Callers never overwrite a lower-level message.
 */
#include "agora.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "banned.h"

static char errmsg[1024];

/*
 * A message is one line: what it quotes from elsewhere (a library's
 * message that quotes the input) may hold control bytes, written as \xNN.
 */
static void
one_line(void)
{
	char out[sizeof(errmsg)];
	size_t i, n = 0;

	for (i = 0; errmsg[i] && n + 5 < sizeof(out); i++) {
		unsigned char c = (unsigned char)errmsg[i];
		if (c >= 0x20 && c != 0x7f) {
			out[n++] = (char)c;
		} else {
			snprintf(out + n, 5, "\\x%02x", c);
			n += 4;
		}
	}
	out[n] = '\0';
	memcpy(errmsg, out, n + 1);
}

int
ag_error_set(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errmsg, sizeof(errmsg), fmt, ap);
	va_end(ap);
	one_line();
	return code;
}

int
ag_error_sys(int code, const char *fmt, ...)
{
	va_list ap;
	int saved = errno;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(errmsg, sizeof(errmsg), fmt, ap);
	va_end(ap);
	n = strlen(errmsg);
	snprintf(errmsg + n, sizeof(errmsg) - n, ": %s", strerror(saved));
	one_line();
	errno = saved;
	if (code == AG_ERROR && (saved == ENOENT))
		return AG_ENOTFOUND;
	return code;
}

const char *
ag_error_msg(void)
{
	return errmsg[0] ? errmsg : "unknown error";
}

void
ag_error_clear(void)
{
	errmsg[0] = '\0';
}

int
ag_exit_code(int code)
{
	switch (code) {
	case 0:
		return 0;
	case AG_ECONFLICT:
		return 1;
	case AG_EINVALID:
	case AG_ENOTFOUND:
	case AG_EEXISTS:
		return 100;
	default:
		return 111;
	}
}
