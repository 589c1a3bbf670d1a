/*
 * Sealing and the global log of sealed runs: see audit.h and
 * agora-state(5).
 */
#include "agora.h"
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "banned.h"

int
ag_signing_key(struct ag_key **out, const char *dir)
{
	char path[AG_PATH_MAX];
	int rc;

	*out = NULL;
	if ((rc = ag_path(path, sizeof(path), "%s/keys/signing.key", dir)) < 0)
		return rc;
	return ag_key_load_private(out, path);
}
