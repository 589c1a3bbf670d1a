#include "agora.h"

#include <stdio.h>
#include <unistd.h>

#include "banned.h"

static const char usage[] = "agora-reconcile [-nv] [-d dir]";

int
main(int argc, char **argv)
{
	struct ag_tick_opts o = { 0 };
	struct ag_tick_stats st;
	const char *dir = NULL;
	int c, rc, verbose = 0;

	ag_cli_init(argc, argv);
	while ((c = getopt(argc, argv, "d:hnv")) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'n': o.nonblock = 1; break;
		case 'v': verbose = 1; break;
		case 'h': ag_help(usage);
		default: ag_usage(usage);
		}
	}
	if (optind != argc)
		ag_usage(usage);
	rc = ag_tick(&st, ag_state_dir(dir), &o, NULL);
	if (rc < 0)
		ag_die(rc);
	if (rc > 0)
		ag_warn("%s", ag_error_msg());
	if (verbose)
		printf("ingested %d, rejected %d, reaped %d, fired %d, completed %d, events %d\n",
		    st.ingested, st.rejected, st.reaped, st.fired, st.completed, st.events);
	return 0;
}
