#include "bundle.h"

#include <getopt.h>
#include <stdio.h>
#include <unistd.h>

#include "banned.h"

static const char usage[] = "agora-audit [-d dir] [--out file] [--json] run";

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "out", required_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *dir = NULL, *outfile = NULL;
	struct ag_conf conf;
	struct ag_buf text;
	json_t *bundle = NULL, *report;
	int c, rc, json = 0, intact;

	ag_cli_init(argc, argv);
	while ((c = getopt_long(argc, argv, "d:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'o': outfile = optarg; break;
		case 'j': json = 1; break;
		case 'h': ag_help(usage);
		default: ag_usage(usage);
		}
	}
	if (argc - optind != 1)
		ag_usage(usage);
	if ((rc = ag_conf_load(&conf, ag_state_dir(dir))) < 0)
		ag_die(rc);
	if ((rc = ag_bundle_build(&bundle, &conf, argv[optind])) < 0)
		ag_die(rc);
	if (outfile && (rc = ag_bundle_write(outfile, -1, bundle)) < 0)
		ag_die(rc);
	report = json_object_get(bundle, "report");
	intact = ag_report_intact(report);
	ag_buf_init(&text, 0);
	if (json)
		rc = ag_bundle_write(NULL, STDOUT_FILENO, bundle);
	else if ((rc = ag_report_text(&text, argv[optind], report)) == 0 &&
	    ag_write_all(STDOUT_FILENO, text.ptr, text.len) < 0)
		rc = ag_error_sys(AG_ERROR, "cannot write the summary");
	if (rc < 0)
		ag_die(rc);
	if (!intact)
		ag_warn("run '%s' is not intact: %s failed", argv[optind],
		    json_string_value(json_object_get(report, "failure")));
	ag_buf_release(&text);
	json_decref(bundle);
	ag_conf_release(&conf);
	return intact ? 0 : 1;
}
