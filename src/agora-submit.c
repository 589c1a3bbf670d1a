#include "agora.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "banned.h"

static const char usage[] =
    "agora-submit [-d dir] [--actor actor] [--executor name] [--id id] [--queue queue] file";

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "actor", required_argument, NULL, 'a' },
		{ "executor", required_argument, NULL, 'e' },
		{ "id", required_argument, NULL, 'I' },
		{ "queue", required_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct ag_submit_opts so = { 0 };
	struct ag_buf errs;
	const char *dir = NULL;
	char *id = NULL;
	int c, rc;

	ag_cli_init(argc, argv);
	while ((c = getopt_long(argc, argv, "d:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'a': so.actor = optarg; break;
		case 'e': so.plan.executor = optarg; break;
		case 'I': so.plan.id = optarg; break;
		case 'q': so.plan.queue = optarg; break;
		case 'h': ag_help(usage);
		default: ag_usage(usage);
		}
	}
	if (argc - optind != 1)
		ag_usage(usage);
	so.file = argv[optind];
	so.plan.name = strcmp(so.file, "-") == 0 ? "<stdin>" : so.file;
	ag_buf_init(&errs, 16u << 20);
	if ((rc = ag_submit(&id, &errs, ag_state_dir(dir), &so)) < 0) {
		/* an invalid plan: its errors, one per line, say it all */
		if (rc == AG_EINVALID && errs.len) {
			fputs(errs.ptr, stderr);
			return 100;
		}
		ag_die(rc);
	}
	printf("%s\n", id);
	free(id);
	ag_buf_release(&errs);
	return 0;
}
