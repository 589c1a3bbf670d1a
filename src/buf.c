/*
 * Growable byte buffers with a hard cap, as curl does: every read of
 * outside input is bounded.
 */
#include "agora.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "banned.h"

void
ag_buf_init(struct ag_buf *b, size_t max)
{
	b->ptr = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max ? max : AG_BUF_DEFAULT_MAX;
}

int
ag_buf_grow(struct ag_buf *b, size_t extra)
{
	size_t want, ncap;
	char *p;

	if (extra > b->max || b->len > b->max - extra)
		return ag_error_set(AG_EINVALID, "buffer would exceed %zu bytes", b->max);
	want = b->len + extra + 1;
	if (want <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 256;
	while (ncap < want)
		ncap *= 2;
	p = realloc(b->ptr, ncap);
	if (!p)
		return ag_error_set(AG_ERROR, "out of memory");
	b->ptr = p;
	b->cap = ncap;
	return 0;
}

int
ag_buf_put(struct ag_buf *b, const void *data, size_t len)
{
	int rc;

	if ((rc = ag_buf_grow(b, len)) < 0)
		return rc;
	if (len)
		memcpy(b->ptr + b->len, data, len);
	b->len += len;
	b->ptr[b->len] = '\0';
	return 0;
}

int
ag_buf_puts(struct ag_buf *b, const char *s)
{
	return ag_buf_put(b, s, strlen(s));
}

int
ag_buf_printf(struct ag_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n, rc;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return ag_error_set(AG_ERROR, "bad format");
	if ((rc = ag_buf_grow(b, (size_t)n)) < 0)
		return rc;
	va_start(ap, fmt);
	vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void
ag_buf_reset(struct ag_buf *b)
{
	b->len = 0;
	if (b->ptr)
		b->ptr[0] = '\0';
}

void
ag_buf_release(struct ag_buf *b)
{
	free(b->ptr);
	b->ptr = NULL;
	b->len = b->cap = 0;
}

char *
ag_buf_detach(struct ag_buf *b)
{
	char *p = b->ptr;

	if (!p)
		p = calloc(1, 1);
	b->ptr = NULL;
	b->len = b->cap = 0;
	return p;
}

/*
 * Quote an untrusted string for an error message: printable ASCII as is,
 * everything else as \xNN, and at most 80 bytes of it.
 */
const char *
ag_quote(const char *s, size_t len)
{
	static char out[4][400];
	static int slot;
	char *o = out[slot++ & 3];
	size_t i, n = 0;

	for (i = 0; i < len && n < 360; i++) {
		unsigned char c = (unsigned char)s[i];
		if (i == 80) {
			memcpy(o + n, "...", 3);
			n += 3;
			break;
		}
		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
			o[n++] = (char)c;
		} else {
			snprintf(o + n, 5, "\\x%02x", c);
			n += 4;
		}
	}
	o[n] = '\0';
	return o;
}

/*
 * jansson's message of a parse error, as one printable line: the text
 * near the error that it quotes is the input's, control bytes and all.
 * Printable ASCII is kept as is, so the usual messages read the same.
 */
const char *
ag_json_error_text(const json_error_t *e)
{
	static char out[4 * JSON_ERROR_TEXT_LENGTH + 1];
	size_t i, n = 0;

	for (i = 0; e->text[i] && i < JSON_ERROR_TEXT_LENGTH; i++) {
		unsigned char c = (unsigned char)e->text[i];
		if (c >= 0x20 && c < 0x7f) {
			out[n++] = (char)c;
		} else {
			snprintf(out + n, 5, "\\x%02x", c);
			n += 4;
		}
	}
	out[n] = '\0';
	return out;
}
