/*
 * The start of every program but agora-reconcile's idle front, which
 * loads no JSON library (cli.c, which it shares, must not call one).
 */
#include "agora.h"

#include "banned.h"

void
ag_cli_init(int argc, char **argv)
{
	ag_cli_name(argc, argv);
	json_object_seed(1);	/* deterministic order of hashes; output keeps insertion order */
}
