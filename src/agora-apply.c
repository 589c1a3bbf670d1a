#include "agora.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "banned.h"

static const char usage[] = "agora-apply [-d dir] run --repo path [--branch branch]";

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "repo", required_argument, NULL, 'r' },
		{ "branch", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct ag_apply_opts o = { 0 };
	struct ag_applied *done = NULL;
	struct ag_conf conf;
	const char *dir = NULL;
	size_t n, i;
	int c, rc;

	ag_cli_init(argc, argv);
	while ((c = getopt_long(argc, argv, "d:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'r': o.repo = optarg; break;
		case 'b': o.branch = optarg; break;
		case 'h': ag_help(usage);
		default: ag_usage(usage);
		}
	}
	if (argc - optind != 1 || !o.repo)
		ag_usage(usage);
	if ((rc = ag_conf_load(&conf, ag_state_dir(dir))) < 0)
		ag_die(rc);
	if ((rc = ag_apply_run(&done, &n, &conf, argv[optind], &o)) < 0)
		ag_die(rc);
	/* one line per commit, the branch's tip last */
	for (i = 0; i < n; i++)
		printf("%s %s\n", done[i].commit, done[i].item);
	free(done);
	ag_conf_release(&conf);
	return 0;
}
