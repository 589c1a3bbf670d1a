/*
 * Private structures shared by a few library files, and the libgit2 types
 * they need. Programs include agora.h only.
 */
#ifndef AG_INTERNAL_H
#define AG_INTERNAL_H

#include <git2.h>

/* store.c: an open objects.git */
struct ag_store {
	git_repository *repo;
	git_odb *odb;
	char *path;
};

/* libgit2's last error message, never NULL. */
const char *ag_git_msg(void);

#endif
