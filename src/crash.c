/*
 * Named crash points for the tests: AGORA_TEST_CRASH=<name> makes the
 * process kill itself with SIGKILL at that point, as a power cut or kill -9
 * would, with nothing flushed or cleaned up.
 */
#include "agora.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "banned.h"

void
ag_crash_point(const char *name)
{
	static const char *want;
	static int init;

	if (!init) {
		want = getenv("AGORA_TEST_CRASH");
		init = 1;
	}
	if (want && *want && strcmp(want, name) == 0)
		kill(getpid(), SIGKILL);
}
