/*
 * The command-line shell around the library: the program name, error
 * messages and the mapping of error codes to exit codes. Nothing else in
 * the library prints or exits.
 */
#include "agora.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "banned.h"

const char *ag_prog = "agora";

void
ag_cli_name(int argc, char **argv)
{
	const char *slash;

	if (argc > 0 && argv[0] && *argv[0]) {
		slash = strrchr(argv[0], '/');
		ag_prog = slash ? slash + 1 : argv[0];
	}
}

void
ag_die(int code)
{
	fprintf(stderr, "%s: %s\n", ag_prog, ag_error_msg());
	exit(ag_exit_code(code ? code : AG_ERROR));
}

void
ag_usage(const char *usage)
{
	fprintf(stderr, "usage: %s\n", usage);
	exit(100);
}

void
ag_help(const char *usage)
{
	printf("usage: %s\n", usage);
	exit(0);
}

void
ag_warn(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", ag_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}
