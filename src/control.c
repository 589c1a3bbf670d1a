/*
 * Control files: porki's heartbeat directives, one per line, appended by
 * agora-ctl or by hand (echo PAUSE >> runs/RUN/control). Blank lines and
 * lines starting with # are skipped; the verb is case-insensitive; a last
 * token "@actor" names who asked. Unlike porki, each line applies once:
 * reconcile records how far it has read.
 */
#include "agora.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "banned.h"

static const char *const verbs[] = {
	"PAUSE", "RESUME", "CANCEL", "RETRY", "DROP-TASK", "ELEVATE"
};

const char *
ag_verb_name(enum ag_verb v)
{
	return v < AG_V_UNKNOWN ? verbs[v] : "UNKNOWN";
}

int
ag_verb_parse(const char *s, enum ag_verb *out)
{
	size_t i;

	for (i = 0; i < sizeof(verbs) / sizeof(*verbs); i++)
		if (strcasecmp(s, verbs[i]) == 0) {
			*out = (enum ag_verb)i;
			return 0;
		}
	*out = AG_V_UNKNOWN;
	return AG_EINVALID;
}

int
ag_directive_parse(struct ag_directive *out, const char *line, size_t len)
{
	char buf[AG_CONTROL_LINE_MAX + 1];
	char *tok[8], *p;
	size_t ntok = 0, i, nargs;
	long prio;
	char *end;

	memset(out, 0, sizeof(*out));
	out->verb = AG_V_UNKNOWN;
	snprintf(out->actor, sizeof(out->actor), "file");
	if (len > AG_CONTROL_LINE_MAX) {
		snprintf(out->verb_name, sizeof(out->verb_name), "?");
		snprintf(out->error, sizeof(out->error), "line longer than %d bytes",
		    AG_CONTROL_LINE_MAX);
		return 1;
	}
	memcpy(buf, line, len);
	buf[len] = '\0';
	if (memchr(line, '\0', len)) {
		snprintf(out->verb_name, sizeof(out->verb_name), "?");
		snprintf(out->error, sizeof(out->error), "line contains a NUL byte");
		return 1;
	}
	p = buf;
	while (ntok < sizeof(tok) / sizeof(*tok)) {
		while (*p && isspace((unsigned char)*p))
			p++;
		if (!*p)
			break;
		tok[ntok++] = p;
		while (*p && !isspace((unsigned char)*p))
			p++;
		if (*p)
			*p++ = '\0';
	}
	if (ntok == 0 || tok[0][0] == '#')
		return 0;
	snprintf(out->verb_name, sizeof(out->verb_name), "%s", ag_quote(tok[0], strlen(tok[0])));
	for (i = 0; out->verb_name[i]; i++)
		out->verb_name[i] = (char)toupper((unsigned char)out->verb_name[i]);
	while (*p && isspace((unsigned char)*p))
		p++;
	if (*p) {
		snprintf(out->error, sizeof(out->error), "too many words");
		return 1;
	}
	if (ntok > 1 && tok[ntok - 1][0] == '@') {
		const char *a = tok[ntok - 1] + 1;
		if (strlen(a) == 0 || strlen(a) > AG_ID_MAX) {
			snprintf(out->error, sizeof(out->error), "bad actor '%s'",
			    ag_quote(tok[ntok - 1], strlen(tok[ntok - 1])));
			return 1;
		}
		for (i = 0; a[i]; i++)
			if (!isgraph((unsigned char)a[i])) {
				snprintf(out->error, sizeof(out->error), "bad actor");
				return 1;
			}
		snprintf(out->actor, sizeof(out->actor), "%s", a);
		ntok--;
	}
	if (ag_verb_parse(tok[0], &out->verb) < 0) {
		snprintf(out->error, sizeof(out->error), "unknown directive '%s'", out->verb_name);
		return 1;
	}
	nargs = ntok - 1;
	switch (out->verb) {
	case AG_V_PAUSE:
	case AG_V_RESUME:
		if (nargs != 0)
			snprintf(out->error, sizeof(out->error), "%s takes no item", out->verb_name);
		return 1;
	case AG_V_CANCEL:
		if (nargs > 1) {
			snprintf(out->error, sizeof(out->error), "usage: CANCEL [ITEM]");
			return 1;
		}
		break;
	case AG_V_RETRY:
	case AG_V_DROP:
		if (nargs != 1) {
			snprintf(out->error, sizeof(out->error), "usage: %s ITEM", out->verb_name);
			return 1;
		}
		break;
	case AG_V_ELEVATE:
		if (nargs != 2) {
			snprintf(out->error, sizeof(out->error), "usage: ELEVATE ITEM PRIORITY");
			return 1;
		}
		errno = 0;
		prio = strtol(tok[2], &end, 10);
		if (errno || *end || end == tok[2] || prio > AG_PRIO_MAX || prio < -AG_PRIO_MAX) {
			snprintf(out->error, sizeof(out->error), "bad priority '%s'",
			    ag_quote(tok[2], strlen(tok[2])));
			return 1;
		}
		out->priority = prio;
		break;
	default:
		break;
	}
	if (nargs >= 1) {
		if (ag_id_check(tok[1], strlen(tok[1])) < 0) {
			snprintf(out->error, sizeof(out->error), "%s", ag_error_msg());
			return 1;
		}
		snprintf(out->item, sizeof(out->item), "%s", tok[1]);
	}
	return 1;
}

int
ag_control_append(const char *path, const char *line)
{
	size_t len = strlen(line);
	int fd;
	ssize_t n;

	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return ag_error_sys(AG_ERROR, "cannot open '%s'", path);
	n = write(fd, line, len);
	if (n != (ssize_t)len) {
		int rc = ag_error_sys(AG_ERROR, "cannot append to '%s'", path);
		close(fd);
		return rc;
	}
	if (fsync(fd) < 0) {
		int rc = ag_error_sys(AG_ERROR, "cannot fsync '%s'", path);
		close(fd);
		return rc;
	}
	close(fd);
	return 0;
}
