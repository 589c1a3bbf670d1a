#include "agora.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "banned.h"

static const char usage[] =
    "agora-validate [-d dir] [--executor name] [--id id] [--queue queue] file";

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "executor", required_argument, NULL, 'e' },
		{ "id", required_argument, NULL, 'I' },
		{ "queue", required_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct ag_plan_opts po = { 0 };
	struct ag_conf conf;
	struct ag_buf text, errs;
	const char *dir = NULL;
	struct ag_plan plan = { 0 };
	size_t n;
	int c, rc;

	ag_cli_init(argc, argv);
	while ((c = getopt_long(argc, argv, "d:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'e': po.executor = optarg; break;
		case 'I': po.id = optarg; break;
		case 'q': po.queue = optarg; break;
		case 'h': ag_help(usage);
		default: ag_usage(usage);
		}
	}
	if (argc - optind != 1)
		ag_usage(usage);
	po.name = strcmp(argv[optind], "-") == 0 ? "<stdin>" : argv[optind];
	if ((rc = ag_conf_load(&conf, ag_state_dir(dir))) < 0)
		ag_die(rc);
	/* a plan too big to read is one more invalid plan, said like the others */
	if ((rc = ag_read_file(&text, argv[optind], (size_t)AG_PLAN_MAX + 1)) == AG_EINVALID) {
		fprintf(stderr, "%s: plan is larger than the limit of %d bytes\n", po.name,
		    AG_PLAN_MAX);
		return 100;
	} else if (rc < 0) {
		ag_die(rc);
	}
	ag_buf_init(&errs, 16u << 20);
	if ((rc = ag_plan_parse(&plan, &errs, &conf, text.ptr, text.len, &po)) == AG_EINVALID) {
		fputs(errs.ptr, stderr);
		return 100;
	} else if (rc < 0) {
		ag_die(rc);
	}
	n = plan.nitems;
	printf("%s: ok (%zu item%s)\n", po.name, n, n == 1 ? "" : "s");
	ag_plan_release(&plan);
	ag_buf_release(&text);
	ag_buf_release(&errs);
	ag_conf_release(&conf);
	return 0;
}
