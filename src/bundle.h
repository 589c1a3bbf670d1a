/*
 * Evidence bundles (bundle.c): agora-audit builds one from the state
 * directory, agora-verify checks one offline with only the public key,
 * the anchor and, when given, the object store. The format is
 * agora-bundle(5). Conventions are agora.h's.
 */
#ifndef AG_BUNDLE_H
#define AG_BUNDLE_H

#include "agora.h"
#include "audit.h"

#define AG_BUNDLE_FORMAT	"agora-bundle"
#define AG_BUNDLE_VERSION	1
#define AG_BUNDLE_MAX		((size_t)2 << 30)	/* a bundle file's bytes */
#define AG_ANCHORS_MAX		32	/* anchors checked at once */

/* The checks of a report, in the order that picks its failure. */
enum ag_check {
	AG_CHECK_CHAIN,
	AG_CHECK_ROOT,
	AG_CHECK_SIGNATURE,
	AG_CHECK_ANCHOR,
	AG_CHECK_ARTIFACTS,
	AG_CHECK_HANDOFF,
	AG_NCHECKS
};

extern const char *const ag_check_names[AG_NCHECKS];

/* An anchor to read a run's checkpoint back from. */
struct ag_anchor_spec {
	struct ag_anchor a;	/* kind, name, path or remote and ref */
	char kind[16];
	const char *base;	/* relative paths are from here */
	int required;		/* a missing copy fails the check (agora-verify --anchor) */
	int pending;		/* its receipt says it does not hold the checkpoint yet */
};

/*
 * Parse "dir:PATH" or "git:REMOTE" (a local path of a bare repository,
 * its ref refs/heads/agora-anchors), the argument of --anchor.
 */
int ag_anchor_spec_parse(struct ag_anchor_spec *out, const char *arg);

#define AG_KEYS_MAX	16

/* The public keys a checkpoint may be signed by: the current one, and those rotated out. */
struct ag_keyring {
	const struct ag_key *k[AG_KEYS_MAX];
	size_t n;
};

struct ag_verify_opts {
	const struct ag_keyring *keys;		/* at least one */
	const struct ag_anchor_spec *anchors;	/* read back, each of them */
	size_t nanchors;
	const char *objects;			/* a bare repository with the blobs, or NULL */
};

/*
 * Build the bundle of a run from the state directory c->dir, with the
 * report of every check (the key is keys/signing.pub, the anchors are
 * agora.conf's, the blobs come from objects.git). AG_ENOTFOUND for an
 * unknown run. A run that is not sealed yet gets a bundle too, whose
 * root check fails ("run 'R' is not sealed yet").
 */
int ag_bundle_build(json_t **out, const struct ag_conf *c, const char *run);

/*
 * Check a bundle: *out is a new report {intact, claim, guarantee,
 * failure, checks}. Returns 0 whatever the verdict; AG_EINVALID when
 * the JSON is not a bundle of this version (the message names the field).
 */
int ag_bundle_verify(json_t **out, const json_t *bundle, const struct ag_verify_opts *o);

/* Read a bundle file (or "-" for stdin) as JSON. */
int ag_bundle_load(json_t **out, const char *path);
/* Write a bundle to a file, atomically, or to fd when path is NULL. */
int ag_bundle_write(const char *path, int fd, const json_t *bundle);

/* The report as the human summary that agora-audit and agora-verify print. */
int ag_report_text(struct ag_buf *out, const char *run, const json_t *report);
/* 1 when the report says intact. */
int ag_report_intact(const json_t *report);

/*
 * Check the global log of a state directory (or a replica of one):
 * checkpoints (audit/checkpoints/0..N signed by one of keys, each of the log's first
 * entries and consistent with the one before, audit/checkpoint the
 * latest), runs (each entry's run has the checkpoint and the log lines
 * the entry names) and, when since names a global checkpoint kept from
 * earlier, that the log extends it. *out is the report {entries,
 * checkpoint, intact, failure, checks}; 0 whatever the verdict.
 */
int ag_log_verify(json_t **out, const char *dir, const struct ag_keyring *keys,
    const char *since);
/* The human summary of that report. */
int ag_log_report_text(struct ag_buf *out, const char *dir, const json_t *report);

#endif
