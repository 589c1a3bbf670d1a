#include "agora.h"

#include <stdio.h>
#include <unistd.h>

#include "banned.h"

static const char usage[] = "agora-init [-d dir] [dir]";

int
main(int argc, char **argv)
{
	const char *dir = NULL;
	int c, rc;

	ag_cli_init(argc, argv);
	while ((c = getopt(argc, argv, "d:h")) != -1) {
		switch (c) {
		case 'd':
			dir = optarg;
			break;
		case 'h':
			ag_help(usage);
		default:
			ag_usage(usage);
		}
	}
	if (argc - optind > 1 || (dir && argc - optind == 1))
		ag_usage(usage);
	if (argc - optind == 1)
		dir = argv[optind];
	dir = ag_state_dir(dir);
	if ((rc = ag_init(dir)) < 0)
		ag_die(rc);
	printf("initialized agora state directory '%s'\n", dir);
	return 0;
}
