#include "agora.h"

#include <getopt.h>
#include <stdio.h>
#include <unistd.h>

#include "banned.h"

static const char usage[] = "agora-show [-d dir] [--log | --result | --outputs] run item";

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "log", no_argument, NULL, 'l' },
		{ "result", no_argument, NULL, 'r' },
		{ "outputs", no_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	enum ag_show_what what = AG_SHOW_PATCH;
	struct ag_conf conf;
	const char *dir = NULL;
	int c, rc, modes = 0;

	ag_cli_init(argc, argv);
	while ((c = getopt_long(argc, argv, "d:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'l': what = AG_SHOW_LOG; modes++; break;
		case 'r': what = AG_SHOW_RESULT; modes++; break;
		case 'o': what = AG_SHOW_OUTPUTS; modes++; break;
		case 'h': ag_help(usage);
		default: ag_usage(usage);
		}
	}
	if (argc - optind != 2 || modes > 1)
		ag_usage(usage);
	if ((rc = ag_conf_load(&conf, ag_state_dir(dir))) < 0)
		ag_die(rc);
	fflush(stdout);
	if ((rc = ag_show(&conf, argv[optind], argv[optind + 1], what, STDOUT_FILENO,
	    STDERR_FILENO)) < 0)
		ag_die(rc);
	ag_conf_release(&conf);
	return 0;
}
