/*
 * agora-init: the layout of DESIGN.md, the configuration, the signing key
 * pair and the object store. agora.conf is written last: its presence is
 * what makes a directory a state tree.
 */
#include "agora.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "banned.h"

static const char default_conf[] =
"# agora.conf: configuration of this agora state directory.\n"
"# The syntax is git-config's (see git-config(1)); agora reads it with\n"
"# libgit2, this file only. Every tick reads it again, so a change applies\n"
"# from the next tick on. Durations take a unit: 500ms, 2s, 5m, 1h (plain\n"
"# numbers are seconds). See agora(7) and agora-state(5).\n"
"\n"
"[agora]\n"
"\t# Attempts that may run at once, over all queues (0 = no global cap).\n"
"\tconcurrency = 0\n"
"\t# Attempts per item, when neither the item nor its run says (1-1000).\n"
"\tmaxAttempts = 2\n"
"\t# Delay before the first retry; it doubles after each further failure,\n"
"\t# up to backoffMax.\n"
"\tbackoff = 1s\n"
"\tbackoffMax = 5m\n"
"\t# Supervisors renew their lease every leaseTtl/3. An attempt whose lease\n"
"\t# is older than leaseTtl + leaseGrace is lost, killed and retried.\n"
"\tleaseTtl = 30s\n"
"\tleaseGrace = 10s\n"
"\t# Time between TERM and KILL when a timeout or a cancel stops a worker.\n"
"\tkillGrace = 5s\n"
"\t# Environment variables every worker receives from the supervisor's\n"
"\t# environment (space-separated names). Nothing else passes but PATH,\n"
"\t# HOME, LANG, TZ and agora's own AGORA_* variables.\n"
"\t#passEnv = SSH_AUTH_SOCK\n"
"\t# The queue of plans that name none.\n"
"\tdefaultQueue = default\n"
"\t# The executor of the items of porki DAGs submitted without --executor.\n"
"\t#porkiExecutor = exec\n"
"\n"
"# [queue \"NAME\"]: concurrency is how many attempts of the queue run at once\n"
"# (0 = no cap). stage (default true): serve may queue one item behind each\n"
"# running one, to start the moment it ends; see agora-state(5).\n"
"[queue \"default\"]\n"
"\tconcurrency = 2\n"
"\t#stage = true\n"
"\n"
"# [executor \"NAME\"]: kind = exec runs inputs.argv, or inputs.sh with\n"
"# /bin/sh -c, or else this executor's command (with /bin/sh -c). passEnv\n"
"# adds names to the global list for this executor's workers.\n"
"[executor \"exec\"]\n"
"\tkind = exec\n"
"\t#command = ./run-task \"$AGORA_INPUT\"\n"
"\t#passEnv = ANTHROPIC_API_KEY\n"
"\n"
"# [slot \"NAME\"]: a counted resource, such as concurrent LLM calls. Items\n"
"# ask for units with \"slots\": {\"NAME\": 1}. capacity is the number of\n"
"# units; an item that waits longer than wait for them fails with reason\n"
"# \"slot wait timeout\" (wait = 0: wait forever).\n"
"#[slot \"llm\"]\n"
"#\tcapacity = 2\n"
"#\twait = 15m\n"
"\n"
"# [executor \"NAME\"] with kind = dispatch runs a subagent in a git worktree\n"
"# checked out from base (a branch, tag or commit) of repo (a path; relative\n"
"# to this directory); items may give inputs.repo and inputs.base instead.\n"
"# What the subagent changes is kept as a patch in objects.git.\n"
"#[executor \"dispatch\"]\n"
"#\tkind = dispatch\n"
"#\trepo = /srv/src/app\n"
"#\tbase = main\n"
"\n"
"# [subagent \"NAME\"]: the program a dispatch item names in inputs.subagent,\n"
"# run with /bin/sh -c in the worktree. passEnv adds names for it; timeout\n"
"# is its items' timeout unless they give one; each attempt takes one unit\n"
"# of each slot in slots; sandbox = bwrap confines it with bubblewrap\n"
"# (none: not at all), without a network unless network = host.\n"
"#[subagent \"code-edit\"]\n"
"#\tcommand = /usr/local/bin/my-agent --edit\n"
"#\tpassEnv = ANTHROPIC_API_KEY\n"
"#\ttimeout = 2h\n"
"#\tslots = llm\n"
"#\tsandbox = bwrap\n"
"#\tnetwork = host\n"
"\n"
"# [anchor \"NAME\"]: where the checkpoint of each sealed run is copied, so\n"
"# that rewriting this tree is detected. kind = local copies it into\n"
"# audit/anchors/NAME/ (tier detect: it shares this tree's fate); the\n"
"# other kinds are external: dir writes create-only files under path\n"
"# (other storage, ideally write-once), git pushes a commit to remote (a\n"
"# URL or a path, relative to this directory) at ref (default\n"
"# refs/heads/agora-anchors; the remote should set receive.denyNonFastForwards\n"
"# and receive.denyDeletes), command runs a program with /bin/sh -c, the\n"
"# checkpoint on stdin, its stdout kept as the receipt. A failed anchor is\n"
"# tried again at every tick. See agora-state(5).\n"
"[anchor \"local\"]\n"
"\tkind = local\n"
"#[anchor \"worm\"]\n"
"#\tkind = dir\n"
"#\tpath = /mnt/worm/agora\n"
"#[anchor \"origin\"]\n"
"#\tkind = git\n"
"#\tremote = ssh://git@example.org/audit.git\n"
"#\tref = refs/heads/agora-anchors\n"
"#[anchor \"notary\"]\n"
"#\tkind = command\n"
"#\tcommand = /usr/local/bin/notarize\n";

static int
make_keys(const char *dir)
{
	char path[AG_PATH_MAX];
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *key = NULL;
	BIO *bio = NULL;
	char *data;
	long len;
	int rc = 0;

	if (!(ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL)) ||
	    EVP_PKEY_keygen_init(ctx) <= 0 || EVP_PKEY_keygen(ctx, &key) <= 0) {
		rc = ag_error_set(AG_ERROR, "cannot generate an Ed25519 key");
		goto out;
	}
	if (!(bio = BIO_new(BIO_s_mem())) || !PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)) {
		rc = ag_error_set(AG_ERROR, "cannot encode the signing key");
		goto out;
	}
	len = BIO_get_mem_data(bio, &data);
	if ((rc = ag_path(path, sizeof(path), "%s/keys/signing.key", dir)) == 0)
		rc = ag_create_excl(path, data, (size_t)len, 0600);
	OPENSSL_cleanse(data, (size_t)len);	/* no copy of the secret stays in memory */
	BIO_free(bio);
	bio = NULL;
	if (rc < 0)
		goto out;
	if (!(bio = BIO_new(BIO_s_mem())) || !PEM_write_bio_PUBKEY(bio, key)) {
		rc = ag_error_set(AG_ERROR, "cannot encode the public key");
		goto out;
	}
	len = BIO_get_mem_data(bio, &data);
	if ((rc = ag_path(path, sizeof(path), "%s/keys/signing.pub", dir)) == 0)
		rc = ag_create_excl(path, data, (size_t)len, 0644);
out:
	BIO_free(bio);
	EVP_PKEY_free(key);
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

static int
make_store(const char *dir)
{
	char path[AG_PATH_MAX];
	git_repository *repo = NULL;
	git_repository_init_options o;
	int rc;

	if ((rc = ag_path(path, sizeof(path), "%s/objects.git", dir)) < 0)
		return rc;
	ag_git_setup();	/* with fsync of the gitdir */
	git_repository_init_options_init(&o, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
	o.flags = GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_MKPATH | GIT_REPOSITORY_INIT_NO_REINIT;
	if (git_repository_init_ext(&repo, path, &o) < 0) {
		const git_error *e = git_error_last();
		return ag_error_set(AG_ERROR, "cannot create '%s': %s", path, e ? e->message : "error");
	}
	git_repository_free(repo);
	return 0;
}

int
ag_init(const char *dir)
{
	static const char *const dirs[] = {
		"inbox", "inbox/tmp", "inbox/new", "inbox/cur", "inbox/rejected",
		"runs", "active", "locks", "audit", "keys", NULL
	};
	char path[AG_PATH_MAX];
	size_t i;
	int rc;

	if ((rc = ag_path(path, sizeof(path), "%s/agora.conf", dir)) < 0)
		return rc;
	if (ag_exists(path))
		return ag_error_set(AG_EEXISTS, "'%s' already holds a state tree (agora.conf exists)", dir);
	if ((rc = ag_path(path, sizeof(path), "%s/keys/signing.key", dir)) < 0)
		return rc;
	if (ag_exists(path))
		return ag_error_set(AG_EEXISTS,
		    "'%s' has a signing key but no agora.conf (a half-done init?); remove '%s/keys' to start over",
		    dir, dir);
	if ((rc = ag_mkdir_p(dir, 0755)) < 0)
		return rc;
	for (i = 0; dirs[i]; i++) {
		if ((rc = ag_path(path, sizeof(path), "%s/%s", dir, dirs[i])) < 0 ||
		    (rc = ag_mkdir(path, strcmp(dirs[i], "keys") == 0 ? 0700 : 0755)) < 0)
			return rc;
	}
	if ((rc = ag_path(path, sizeof(path), "%s/control", dir)) < 0 ||
	    (rc = ag_write_atomic(path, "", 0, 0644)) < 0 ||
	    (rc = ag_path(path, sizeof(path), "%s/tick.lock", dir)) < 0 ||
	    (rc = ag_write_atomic(path, "", 0, 0644)) < 0 ||
	    (rc = ag_path(path, sizeof(path), "%s/wake", dir)) < 0)
		return rc;
	if (mkfifo(path, 0622) < 0 && errno != EEXIST)
		return ag_error_sys(AG_ERROR, "cannot create FIFO '%s'", path);
	if ((rc = make_store(dir)) < 0 || (rc = make_keys(dir)) < 0)
		return rc;
	for (i = 0; dirs[i]; i++)
		if (ag_path(path, sizeof(path), "%s/%s", dir, dirs[i]) == 0)
			ag_fsync_dir(path);
	if ((rc = ag_path(path, sizeof(path), "%s/agora.conf", dir)) < 0 ||
	    (rc = ag_write_atomic(path, default_conf, sizeof(default_conf) - 1, 0644)) < 0)
		return rc;
	return 0;
}
