/*
 * agora-reconcile: one tick. With nothing to do it answers alone, on
 * libc: it takes tick.lock, so that -n still tells when another tick runs,
 * and exits. Otherwise it becomes agora-tick, the whole tick, which links
 * libgit2, jansson and libcrypto; just loading those costs a cron tick on
 * a quiet tree more than everything else it does.
 */
#include "agora.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "banned.h"

static const char usage[] = "agora-reconcile [-nv] [-d dir]";

int
main(int argc, char **argv)
{
	char path[AG_PATH_MAX], exe[AG_PATH_MAX];
	const char *dir = NULL;
	int c, fd = -1, nonblock = 0, verbose = 0, rc;

	/* not ag_cli_init: that one seeds jansson's hashes */
	ag_cli_name(argc, argv);
	while ((c = getopt(argc, argv, "d:hnv")) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'n': nonblock = 1; break;
		case 'v': verbose = 1; break;
		case 'h': ag_help(usage);
		default: ag_usage(usage);
		}
	}
	if (optind != argc)
		ag_usage(usage);
	dir = ag_state_dir(dir);
	if (!ag_tick_idle(dir)) {
		if (!ag_libexec_path("agora-tick", exe, sizeof(exe))) {
			ag_error_set(AG_ERROR, "cannot find agora-tick (set AGORA_LIBEXEC)");
			ag_die(AG_ERROR);
		}
		execv(exe, argv);
		ag_die(ag_error_sys(AG_ERROR, "cannot run '%s'", exe));
	}
	if ((rc = ag_path(path, sizeof(path), "%s/tick.lock", dir)) < 0 ||
	    (rc = ag_lock_open(&fd, path, nonblock)) < 0) {
		if (rc == AG_ELOCKED)
			rc = ag_error_set(AG_ELOCKED, "another tick holds '%s'", path);
		ag_die(rc);
	}
	if (verbose)
		printf("ingested 0, rejected 0, reaped 0, fired 0, completed 0, events 0\n");
	close(fd);
	return 0;
}
