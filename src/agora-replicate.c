#include "agora.h"

#include <stdio.h>
#include <unistd.h>

#include "banned.h"

static const char usage[] = "agora-replicate [-d dir] dest";

int
main(int argc, char **argv)
{
	const char *dir = NULL;
	int c, rc;

	ag_cli_init(argc, argv);
	while ((c = getopt(argc, argv, "d:h")) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'h': ag_help(usage);
		default: ag_usage(usage);
		}
	}
	if (argc - optind != 1)
		ag_usage(usage);
	if ((rc = ag_replicate(ag_state_dir(dir), argv[optind])) < 0)
		ag_die(rc);
	return 0;
}
