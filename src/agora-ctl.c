#include "agora.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "banned.h"

/*
 * Each argument, and the actor, becomes one word of a one-line directive: a
 * space, newline or other control byte would split it, or smuggle in a second
 * directive, so it is refused here rather than rejected later by reconcile.
 */
static int
check_word(const char *what, const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] == 0x7f)
			return ag_error_set(AG_EINVALID, "%s '%s' must be one word, "
			    "without spaces or control characters", what, ag_quote(s, strlen(s)));
	return 0;
}

static const char usage[] =
    "agora-ctl [-d dir] [--actor actor] run directive [item [priority]]\n"
    "       agora-ctl [-d dir] [--actor actor] -g PAUSE | RESUME";

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "actor", required_argument, NULL, 'a' },
		{ "global", no_argument, NULL, 'g' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	char path[AG_PATH_MAX], actor[AG_ID_MAX + 16];
	struct ag_directive d;
	struct ag_buf line;
	struct ag_conf conf;
	struct ag_run *r = NULL;
	const char *dir = NULL, *run = NULL, *who = NULL;
	int c, rc, global = 0, i;
	size_t at;

	ag_cli_init(argc, argv);
	/* "+": options come first, so a negative ELEVATE priority is not one */
	while ((c = getopt_long(argc, argv, "+d:gh", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'a': who = optarg; break;
		case 'g': global = 1; break;
		case 'h': ag_help(usage);
		default: ag_usage(usage);
		}
	}
	if (global ? argc - optind != 1 : argc - optind < 2 || argc - optind > 4)
		ag_usage(usage);
	dir = ag_state_dir(dir);
	if (!global)
		run = argv[optind++];
	if (!who) {
		ag_default_actor(actor, sizeof(actor));
		who = actor;
	}
	if (check_word("actor", who) < 0)
		ag_die(AG_EINVALID);
	for (i = optind; i < argc; i++)
		if (check_word("argument", argv[i]) < 0)
			ag_die(AG_EINVALID);
	/* room for the newline, which a control line's limit does not count */
	ag_buf_init(&line, AG_CONTROL_LINE_MAX + 1);
	for (i = optind, rc = 0; i < argc && rc == 0; i++)
		rc = ag_buf_printf(&line, "%s%s", i > optind ? " " : "", argv[i]);
	if (rc < 0 || ag_buf_printf(&line, " @%s", who) < 0 || line.len > AG_CONTROL_LINE_MAX) {
		ag_error_set(AG_EINVALID, "directive longer than %d bytes", AG_CONTROL_LINE_MAX);
		ag_die(AG_EINVALID);
	}
	ag_directive_parse(&d, line.ptr, line.len);
	if (d.error[0]) {
		ag_error_set(AG_EINVALID, "%s", d.error);
		ag_die(AG_EINVALID);
	}
	if (global && d.verb != AG_V_PAUSE && d.verb != AG_V_RESUME) {
		ag_error_set(AG_EINVALID, "the global control file takes only PAUSE and RESUME");
		ag_die(AG_EINVALID);
	}
	if ((rc = ag_conf_load(&conf, dir)) < 0)
		ag_die(rc);
	if (global) {
		if ((rc = ag_path(path, sizeof(path), "%s/control", dir)) < 0)
			ag_die(rc);
	} else {
		if ((rc = ag_id_check(run, strlen(run))) < 0)
			ag_die(rc);
		if ((rc = ag_run_exists(dir, run)) < 0) {
			if (ag_run_queued(dir, run))
				rc = ag_error_set(AG_ERROR, "run '%s' is still in the inbox; "
				    "it takes directives once a tick has ingested it", run);
			else if (ag_run_exists(dir, run) == 0)
				rc = 0;	/* a tick ingested it between the two looks */
			if (rc < 0)
				ag_die(rc);
		}
		/* the log, not active/, says whether the run has ended: a tick that
		 * crashed while ingesting leaves a live run not yet in active/ */
		if ((rc = ag_run_load(&r, &conf, run, 0)) < 0)
			ag_die(rc);
		if (d.item[0] && ag_run_item(r, d.item, &at) < 0) {
			ag_error_set(AG_ENOTFOUND, "unknown item '%s' in run '%s'", d.item, run);
			ag_die(AG_ENOTFOUND);
		}
		if (r->sealed) {
			ag_error_set(AG_EINVALID, "run '%s' is sealed; it takes no more directives", run);
			ag_die(AG_EINVALID);
		}
		if (r->completed) {
			ag_error_set(AG_EINVALID, "run '%s' has completed; it takes no more directives", run);
			ag_die(AG_EINVALID);
		}
		if ((rc = ag_path(path, sizeof(path), "%s/runs/%s/control", dir, run)) < 0)
			ag_die(rc);
	}
	if ((rc = ag_buf_puts(&line, "\n")) < 0 || (rc = ag_control_append(path, line.ptr)) < 0)
		ag_die(rc);
	ag_wake(dir);
	ag_run_free(r);
	ag_conf_release(&conf);
	ag_buf_release(&line);
	return 0;
}
