#include "agora.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "banned.h"

int64_t
ag_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
ag_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* RFC 3339, UTC, milliseconds: 2026-11-22T03:04:05.678Z */
void
ag_time_fmt(char out[AG_TIME_LEN], int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	if (tm.tm_year > 9999 - 1900 || tm.tm_year < -1900)
		tm.tm_year = 0;
	snprintf(out, AG_TIME_LEN, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

int
ag_time_parse(int64_t *out, const char *s)
{
	struct tm tm;
	int ms = 0;
	char z = 0;

	memset(&tm, 0, sizeof(tm));
	if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &tm.tm_year,
	    &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec,
	    &ms, &z) != 8 || z != 'Z')
		return ag_error_set(AG_EINVALID, "bad timestamp '%s'", s ? ag_quote(s, strlen(s)) : "");
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	*out = (int64_t)timegm(&tm) * 1000 + ms;
	return 0;
}
