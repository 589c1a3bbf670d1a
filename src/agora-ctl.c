#include "agora.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "banned.h"

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
	while ((c = getopt_long(argc, argv, "d:gh", longopts, NULL)) != -1) {
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
	ag_buf_init(&line, AG_CONTROL_LINE_MAX);
	for (i = optind; i < argc; i++)
		if (ag_buf_printf(&line, "%s%s", i > optind ? " " : "", argv[i]) < 0)
			ag_die(AG_EINVALID);
	if (ag_buf_printf(&line, " @%s", who) < 0)
		ag_die(AG_EINVALID);
	ag_directive_parse(&d, line.ptr, line.len);
	if (d.error[0] || strchr(who, ' ')) {
		ag_error_set(AG_EINVALID, "%s", d.error[0] ? d.error : "actor has spaces");
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
			ag_die(rc);
		}
		if ((rc = ag_run_load(&r, &conf, run, -1)) < 0)
			ag_die(rc);
		if (d.item[0] && ag_run_item(r, d.item, &at) < 0) {
			ag_error_set(AG_ENOTFOUND, "unknown item '%s' in run '%s'", d.item, run);
			ag_die(AG_ENOTFOUND);
		}
		if ((rc = ag_path(path, sizeof(path), "%s/active/%s", dir, run)) < 0)
			ag_die(rc);
		if (!ag_exists(path)) {
			ag_error_set(AG_EINVALID, "run '%s' has completed; it takes no more directives", run);
			ag_die(AG_EINVALID);
		}
		if ((rc = ag_path(path, sizeof(path), "%s/runs/%s/control", dir, run)) < 0)
			ag_die(rc);
	}
	if (ag_buf_puts(&line, "\n") < 0 || (rc = ag_control_append(path, line.ptr)) < 0)
		ag_die(rc);
	ag_wake(dir);
	ag_run_free(r);
	ag_conf_release(&conf);
	ag_buf_release(&line);
	return 0;
}
