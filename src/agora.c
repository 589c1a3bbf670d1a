/* agora VERB ARGS: exec agora-VERB, found beside this program or on PATH. */
#include "agora.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "banned.h"

static const char usage[] = "agora command [argument ...]";

int
main(int argc, char **argv)
{
	char prog[AG_PATH_MAX], path[AG_PATH_MAX];
	const char *found;

	ag_cli_init(argc, argv);
	if (argc < 2)
		ag_usage(usage);
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		printf("usage: %s\ncommands: init validate submit reconcile serve watch status ctl show apply\n", usage);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("agora %s\n", AG_VERSION);
		return 0;
	}
	if (ag_id_check(argv[1], strlen(argv[1])) < 0 || strchr(argv[1], '/') ||
	    strcmp(argv[1], "exec") == 0 ||
	    ag_path(prog, sizeof(prog), "agora-%s", argv[1]) < 0) {
		ag_warn("'%s' is not an agora command", ag_quote(argv[1], strlen(argv[1])));
		return 100;
	}
	argv[1] = prog;
	found = ag_libexec_path(prog, path, sizeof(path));
	if (found)
		execv(found, argv + 1);
	execvp(prog, argv + 1);
	ag_warn("'%s' is not an agora command", ag_quote(argv[1] + 6, strlen(argv[1] + 6)));
	return 100;
}
