/*
 * Whether a tick has anything to do, and where the state directory is:
 * what agora-reconcile decides before it loads the libraries of a whole
 * tick. Nothing here may need more than libc.
 */
#include "agora.h"

#include <stdlib.h>

#include "banned.h"

const char *
ag_state_dir(const char *opt)
{
	const char *env = getenv("AGORA_DIR");

	if (opt && *opt)
		return opt;
	if (env && *env)
		return env;
	return ".";
}

/*
 * Nothing to do: no plan in inbox/new, no active run, no checkpoint owed
 * to an anchor. Such a tick need not read agora.conf, which costs more
 * than all the rest of it: libgit2 parses its TLS certificates when it
 * starts, and merely loading libgit2 and its dependencies costs several
 * times a whole idle tick. A cron tick on a quiet tree stays cheap,
 * however long its history.
 */
int
ag_tick_idle(const char *dir)
{
	static const char *const sub[] = { "inbox/new", "active", "audit/pending", NULL };
	char path[AG_PATH_MAX];
	size_t i;

	if (ag_path(path, sizeof(path), "%s/agora.conf", dir) < 0 || !ag_exists(path))
		return 0;	/* not a state tree: the full tick says so */
	for (i = 0; sub[i]; i++)
		if (ag_path(path, sizeof(path), "%s/%s", dir, sub[i]) < 0 ||
		    ag_dir_empty(path) != 1)
			return 0;
	return 1;
}
