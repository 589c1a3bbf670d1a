/* agora-exec: the supervisor of attempts; started by reconcile and serve, not by users. */
#include "agora.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "banned.h"

static const char usage[] =
    "agora-exec -d dir -l nlocks run item attempt\n"
    "       agora-exec -d dir -r";

int
main(int argc, char **argv)
{
	const char *dir = NULL;
	long nlocks = 0, attempt;
	char *end;
	int c, rc, resident = 0;

	ag_cli_init(argc, argv);
	while ((c = getopt(argc, argv, "d:hl:r")) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'l':
			errno = 0;
			nlocks = strtol(optarg, &end, 10);
			if (errno || *end || nlocks < 0 || nlocks > AG_LOCKS_MAX)
				ag_usage(usage);
			break;
		case 'r': resident = 1; break;
		case 'h': ag_help(usage);
		default: ag_usage(usage);
		}
	}
	if (!dir)
		ag_usage(usage);
	if (resident) {
		/* the socket from serve is fd 3 */
		if (argc != optind)
			ag_usage(usage);
		if ((rc = ag_exec_resident(dir, 3)) < 0)
			ag_die(rc);
		return 0;
	}
	if (argc - optind != 3)
		ag_usage(usage);
	errno = 0;
	attempt = strtol(argv[optind + 2], &end, 10);
	if (errno || *end || attempt < 1 || attempt > 1000000)
		ag_usage(usage);
	if ((rc = ag_exec_attempt(dir, argv[optind], argv[optind + 1], (int)attempt,
	    (size_t)nlocks)) < 0)
		ag_die(rc);
	return 0;
}
