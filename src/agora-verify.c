#include "bundle.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "banned.h"

static const char usage[] =
    "agora-verify --key pub ... [--anchor kind:where ...] [--objects dir] [--json] bundle\n"
    "       agora-verify --key pub ... [--json] --log dir [--since checkpoint]";

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "anchor", required_argument, NULL, 'a' },
		{ "objects", required_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'j' },
		{ "log", required_argument, NULL, 'l' },
		{ "since", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct ag_anchor_spec anchors[AG_ANCHORS_MAX];
	struct ag_verify_opts o = { 0 };
	const char *keyfiles[AG_KEYS_MAX], *logdir = NULL, *since = NULL;
	struct ag_keyring ring = { { NULL }, 0 };
	size_t nkeys = 0, i;
	struct ag_buf text;
	json_t *bundle = NULL, *report = NULL, *checks, *chk;
	const char *name;
	int c, rc, json = 0, intact;

	ag_cli_init(argc, argv);
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'k':
			if (nkeys == AG_KEYS_MAX)
				ag_usage(usage);
			keyfiles[nkeys++] = optarg;
			break;
		case 'a':
			if (o.nanchors == AG_ANCHORS_MAX)
				ag_usage(usage);
			if ((rc = ag_anchor_spec_parse(&anchors[o.nanchors], optarg)) < 0)
				ag_die(rc);
			o.nanchors++;
			break;
		case 'o': o.objects = optarg; break;
		case 'j': json = 1; break;
		case 'l': logdir = optarg; break;
		case 's': since = optarg; break;
		case 'h': ag_help(usage);
		default: ag_usage(usage);
		}
	}
	if (!nkeys || (logdir ? argc != optind || o.nanchors || o.objects :
	    argc - optind != 1 || since))
		ag_usage(usage);
	o.anchors = anchors;
	for (i = 0; i < nkeys; i++) {
		struct ag_key *k;
		if ((rc = ag_key_load_public(&k, keyfiles[i])) < 0)
			ag_die(rc);
		ring.k[ring.n++] = k;
	}
	o.keys = &ring;
	if (logdir)
		rc = ag_log_verify(&report, logdir, &ring, since);
	else if ((rc = ag_bundle_load(&bundle, argv[optind])) == 0)
		rc = ag_bundle_verify(&report, bundle, &o);
	if (rc < 0)
		ag_die(rc);
	intact = ag_report_intact(report);
	ag_buf_init(&text, 0);
	if (json) {
		if (!(name = json_dumps(report, JSON_INDENT(1) | JSON_PRESERVE_ORDER)) ||
		    ag_buf_printf(&text, "%s\n", name) < 0)
			rc = ag_error_set(AG_ERROR, "out of memory");
		free((char *)name);
	} else if (logdir) {
		rc = ag_log_report_text(&text, logdir, report);
	} else {
		rc = ag_report_text(&text, json_string_value(json_object_get(bundle, "run")), report);
	}
	if (rc == 0 && ag_write_all(STDOUT_FILENO, text.ptr, text.len) < 0)
		rc = ag_error_sys(AG_ERROR, "cannot write the report");
	if (rc < 0)
		ag_die(rc);
	/* each failing check on a line of its own, for scripts and people alike */
	checks = json_object_get(report, "checks");
	json_object_foreach(checks, name, chk)
		if (json_is_false(json_object_get(chk, "ok")))
			ag_warn("%s: %s", name, json_string_value(json_object_get(chk, "detail")));
	ag_buf_release(&text);
	json_decref(report);
	json_decref(bundle);
	for (i = 0; i < ring.n; i++)
		ag_key_free((struct ag_key *)ring.k[i]);
	return intact ? 0 : 1;
}
