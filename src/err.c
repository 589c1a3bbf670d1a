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

int
ag_error_set(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errmsg, sizeof(errmsg), fmt, ap);
	va_end(ap);
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
