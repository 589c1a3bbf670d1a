/*
 * agora's audit library: RFC 6962 Merkle trees (merkle.c), C2SP signed
 * notes and checkpoints with Ed25519 keys (note.c), and the global log of
 * sealed runs (audit.c). agora-reconcile seals runs with it; agora-audit
 * and agora-verify check them with it. Conventions are agora.h's: 0 or a
 * negative AG_E* code, a one-line message set where the failure happens,
 * out-parameters first.
 *
 * Formats (see agora-state(5)):
 *   leaf hash  SHA-256(0x00 || line), line without its newline
 *   node hash  SHA-256(0x01 || left || right)
 *   MTH(n)     split at the largest power of two < n; MTH(0) = SHA-256("")
 *   checkpoint "<origin>\n<size>\n<base64 root>\n" [extension lines], a
 *              blank line, then "\xe2\x80\x94 <key name> <base64(key id || sig)>\n"
 *   key name   "agora-" and the first 16 hex digits of SHA-256(raw public key)
 *   key id     the first 4 bytes of SHA-256(name || "\n" || 0x01 || raw public key)
 *   origins    "agora/run/<run>" for a run, "agora/log" for the global log
 */
#ifndef AG_AUDIT_H
#define AG_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#define AG_HASH_LEN		32
#define AG_PROOF_MAX		130	/* hashes in a proof: 2 per level of a 2^64 tree, and room */
#define AG_NOTE_MAX		(64u << 10)	/* a signed note's bytes */
#define AG_NOTE_SIGS_MAX	100	/* signature lines read in one note */
#define AG_KEYNAME_MAX		64
#define AG_ORIGIN_MAX		256

/* ---- merkle.c: RFC 6962 trees ---- */

/* SHA-256(0x00 || data): the hash of one leaf. */
int ag_merkle_leaf(unsigned char out[AG_HASH_LEN], const void *data, size_t len);
/* SHA-256(0x01 || l || r): an interior node. */
int ag_merkle_node(unsigned char out[AG_HASH_LEN], const unsigned char l[AG_HASH_LEN],
    const unsigned char r[AG_HASH_LEN]);

/*
 * A tree built one leaf at a time in O(log n) memory: the stack holds the
 * roots of the perfect subtrees the leaves so far make, largest first.
 */
struct ag_merkle {
	uint64_t n;
	int depth;
	unsigned char stack[64][AG_HASH_LEN];
};

void ag_merkle_init(struct ag_merkle *m);
/* Add one entry (hashed as a leaf). */
int ag_merkle_push(struct ag_merkle *m, const void *data, size_t len);
/* Add one leaf hash. */
int ag_merkle_push_leaf(struct ag_merkle *m, const unsigned char leaf[AG_HASH_LEN]);
/* The root of the n leaves so far (SHA-256("") for none). */
int ag_merkle_root(unsigned char out[AG_HASH_LEN], const struct ag_merkle *m);

/* MTH over leaf hashes leaves[0..n) (n * AG_HASH_LEN bytes). */
int ag_merkle_tree_hash(unsigned char out[AG_HASH_LEN], const unsigned char *leaves, uint64_t n);

struct ag_proof {
	size_t n;
	unsigned char h[AG_PROOF_MAX][AG_HASH_LEN];
};

/* RFC 6962 2.1.1 PATH(index, D[n]), from the leaf up. AG_EINVALID unless index < n. */
int ag_merkle_inclusion(struct ag_proof *out, const unsigned char *leaves, uint64_t n,
    uint64_t index);
/*
 * RFC 6962 2.1.2 PROOF(m, D[n]) that the tree of size m is a prefix of the
 * tree of size n. AG_EINVALID unless m <= n; empty when m is 0 or n.
 */
int ag_merkle_consistency(struct ag_proof *out, const unsigned char *leaves, uint64_t n,
    uint64_t m);
/* RFC 9162 2.1.3.2: 0, or AG_EINVALID with a message when the proof fails. */
int ag_merkle_verify_inclusion(const unsigned char leaf[AG_HASH_LEN], uint64_t index,
    uint64_t n, const struct ag_proof *p, const unsigned char root[AG_HASH_LEN]);
/*
 * RFC 9162 2.1.4.2: 0, or AG_EINVALID with a message. m == n takes an
 * empty proof and equal roots; m == 0 an empty proof (every tree extends
 * the empty one).
 */
int ag_merkle_verify_consistency(uint64_t m, uint64_t n, const unsigned char root_m[AG_HASH_LEN],
    const unsigned char root_n[AG_HASH_LEN], const struct ag_proof *p);

/*
 * The leaf hashes of the first max lines of a file (all of them when max
 * is UINT64_MAX), each line without its newline; a last line with no
 * newline is not a line (a writer is at it, or crashed). *out is
 * malloc'ed, *n leaves long; *bytes is where the lines hashed end.
 */
int ag_merkle_file_leaves(unsigned char **out, uint64_t *n, uint64_t *bytes, const char *path,
    uint64_t max);
/* The same folded into a root as it is read, in O(log n) memory. */
int ag_merkle_file_root(unsigned char out[AG_HASH_LEN], uint64_t *n, uint64_t *bytes,
    const char *path, uint64_t max);

/* Lower-case hex of len bytes into out (2 * len + 1 bytes). */
void ag_hex(char *out, const unsigned char *data, size_t len);
/* Exactly len bytes of hex (either case); AG_EINVALID otherwise. */
int ag_unhex(unsigned char *out, size_t len, const char *hex);

/* ---- note.c: base64, Ed25519 keys, C2SP signed notes and checkpoints ---- */

/* Standard base64 with padding, as OpenSSL's EVP_EncodeBlock writes it; out is malloc'ed. */
int ag_base64_encode(char **out, const unsigned char *data, size_t len);
/*
 * Strict: only canonical base64 (what ag_base64_encode gives back) decodes.
 * out has room for max bytes; *n is the decoded length.
 */
int ag_base64_decode(unsigned char *out, size_t max, size_t *n, const char *s, size_t len);

struct ag_key;

/*
 * keys/signing.key: PEM PKCS#8 Ed25519. The file must be a regular file
 * owned by the effective user with no group or other permission bits,
 * else AG_EINVALID ("'P': mode 0644, want 0600"); a missing file is
 * AG_ENOTFOUND. The secret is wiped from memory after use and never
 * appears in a message.
 */
int ag_key_load_private(struct ag_key **out, const char *path);
/* keys/signing.pub: PEM SubjectPublicKeyInfo Ed25519. */
int ag_key_load_public(struct ag_key **out, const char *path);
/* A public key from its 32 raw bytes. */
int ag_key_from_raw(struct ag_key **out, const unsigned char pub[32]);
void ag_key_free(struct ag_key *k);
/* The key's name: "agora-" and 16 hex digits of SHA-256(raw public key). */
const char *ag_key_name(const struct ag_key *k);
/* The C2SP key id (4 bytes), and as 8 hex digits. */
const unsigned char *ag_key_id(const struct ag_key *k);
const char *ag_key_id_hex(const struct ag_key *k);
const unsigned char *ag_key_raw(const struct ag_key *k);
/* The C2SP Ed25519 key id of any name and raw public key. */
int ag_key_id_of(unsigned char out[4], const char *name, const unsigned char pub[32]);

/*
 * Sign a note body (text that ends in "\n", of non-empty lines without
 * control characters): *out is the body, a blank line and one signature
 * line, NUL-terminated, malloc'ed, *len bytes. Ed25519 is deterministic:
 * the same body and key give the same bytes.
 */
int ag_note_sign(char **out, size_t *len, const char *body, size_t bodylen,
    const struct ag_key *k);

struct ag_note_sig {
	char name[AG_KEYNAME_MAX + 1];
	unsigned char id[4];
	unsigned char sig[64];
	size_t siglen;		/* bytes after the key id; 64 for Ed25519 */
};

struct ag_note {
	size_t body_len;	/* the signed bytes: note[0..body_len), final "\n" included */
	struct ag_note_sig sigs[AG_NOTE_SIGS_MAX];
	size_t nsigs;
};

/*
 * Parse a signed note strictly; the message names the line and what is
 * wrong ("line 5: signature line does not start with an em dash").
 */
int ag_note_parse(struct ag_note *out, const char *note, size_t len);
/*
 * Parse, then verify the signature of key k: 0 when a line with k's name
 * and key id verifies. AG_EINVALID when none has k's name and id ("no
 * signature by key 'N' (id ID)"), or one does and its signature fails.
 * Lines of other keys are ignored, as C2SP says.
 */
int ag_note_verify(const char *note, size_t len, const struct ag_key *k);

struct ag_checkpoint {
	char origin[AG_ORIGIN_MAX + 1];
	uint64_t size;
	unsigned char root[AG_HASH_LEN];
	size_t body_len;	/* the signed bytes of the note */
	size_t next;		/* where the extension lines start in the note */
};

/* The body "<origin>\n<size>\n<base64 root>\n"; *out is malloc'ed. */
int ag_checkpoint_body(char **out, size_t *len, const char *origin, uint64_t size,
    const unsigned char root[AG_HASH_LEN]);
/* Sign a checkpoint: ag_checkpoint_body() then ag_note_sign(). */
int ag_checkpoint_sign(char **out, size_t *len, const char *origin, uint64_t size,
    const unsigned char root[AG_HASH_LEN], const struct ag_key *k);
/*
 * Parse a checkpoint note strictly (no signature check): origin, a size in
 * decimal without leading zeros, a base64 root of 32 bytes, extension lines.
 */
int ag_checkpoint_parse(struct ag_checkpoint *out, const char *note, size_t len);

/* ---- audit.c: sealing, the global log ---- */

/* Load DIR/keys/signing.key (ag_key_load_private's rules). */
int ag_signing_key(struct ag_key **out, const char *dir);

/* "agora/run/<run>" and "agora/log", the checkpoints' origins. */
#define AG_LOG_ORIGIN "agora/log"
int ag_run_origin(char *out, size_t size, const char *run);

/*
 * One line of audit/log.jsonl, compact JSON in this key order:
 * {"run":"<run>","size":N,"root":"<hex>","checkpoint":"<hex>"}
 * root is the run's Merkle root over its first size lines, checkpoint the
 * SHA-256 of the bytes of runs/<run>/checkpoint. The global tree's leaves
 * are these lines' bytes, without the newline.
 */
struct ag_log_entry {
	char run[AG_ID_MAX + 1];
	uint64_t size;
	unsigned char root[AG_HASH_LEN];
	unsigned char checkpoint[AG_HASH_LEN];
};

/* Parse one line strictly: those four keys, nothing else, in that order. */
int ag_log_entry_parse(struct ag_log_entry *out, const char *line, size_t len);
/* The line (no newline) for an entry; *out is malloc'ed. */
int ag_log_entry_format(char **out, const struct ag_log_entry *e);

/* The global log in memory: every whole line of audit/log.jsonl. */
struct ag_log {
	uint64_t n;
	unsigned char *leaves;		/* n leaf hashes */
	struct ag_log_entry *entries;	/* n entries */
	uint64_t bytes;			/* where the whole lines end */
};

/* Read a log.jsonl (a missing file is an empty log); a torn last line is left out. */
int ag_log_read(struct ag_log *out, const char *path);
/* Read DIR/audit/log.jsonl. */
int ag_log_load(struct ag_log *out, const char *dir);
void ag_log_release(struct ag_log *l);
/* The index of run's entry, or AG_ENOTFOUND. */
int ag_log_find(uint64_t *out, const struct ag_log *l, const char *run);
/* The root of the first m entries. */
int ag_log_root(unsigned char out[AG_HASH_LEN], const struct ag_log *l, uint64_t m);
/* Proofs over the first n entries (n <= l->n). */
int ag_log_consistency(struct ag_proof *out, const struct ag_log *l, uint64_t m, uint64_t n);
int ag_log_inclusion(struct ag_proof *out, const struct ag_log *l, uint64_t index, uint64_t n);

/*
 * Append e to DIR/audit/log.jsonl unless its run has an entry already,
 * and bring the global checkpoints up to date: audit/checkpoints/<size>
 * for the size before the append and after it (created once, never
 * replaced) and audit/checkpoint (the latest, replaced atomically). The
 * caller holds tick.lock. *index is the run's entry. A crash anywhere
 * leaves a state the next call completes, without a second entry.
 */
int ag_log_append(uint64_t *index, const char *dir, const struct ag_log_entry *e,
    const struct ag_key *k);

struct ag_run;

struct ag_seal {
	uint64_t size;			/* lines sealed: up to and including run.completed */
	unsigned char root[AG_HASH_LEN];
	unsigned char checkpoint[AG_HASH_LEN];	/* SHA-256 of runs/<run>/checkpoint */
	uint64_t log_index;		/* the run's entry in audit/log.jsonl */
};

/*
 * Seal a completed run, loaded writable under tick.lock: fsync its log;
 * take the Merkle root of the lines up to and including run.completed;
 * write runs/<run>/checkpoint (kept if a crashed seal already wrote the
 * same origin, size and root); append to the global log; log run.sealed
 * and fsync it. Crash points: seal-checkpoint, seal-log, seal-global,
 * seal-event. Each step can be re-run.
 */
int ag_seal_run(struct ag_seal *out, const char *dir, struct ag_run *r, const struct ag_key *k);

/* ---- anchor.c: copies of checkpoints out of reach ---- */

struct ag_anchor;
struct ag_conf;

/* "detect" for kind local, "external" for dir, git and command. */
const char *ag_anchor_tier(const struct ag_anchor *a);
/*
 * Hand runs/<run>/checkpoint to one anchor, unless its receipt says it
 * holds these bytes already, and write audit/receipts/<run>/<anchor>.json:
 * {"anchor","kind","tier","run","checkpoint":"<sha256>","at","attempts",
 * then "file" (local, dir) or "commit","remote","ref" (git) or "receipt"
 * (command: its stdout), then "ok", and "detail" when it failed}. The
 * receipt is written when it fails too. Crash point anchor-put.
 */
int ag_anchor_put(const char *dir, const struct ag_anchor *a, const char *run);
/* Every anchor of c for run; the number that failed, their messages in failures. */
int ag_anchor_run(const struct ag_conf *c, const char *run, struct ag_buf *failures);
/* The receipt of an anchor for a run (AG_ENOTFOUND: never tried). */
int ag_anchor_receipt(json_t **out, const char *dir, const char *run, const char *anchor);
/*
 * Read back the copy an anchor holds: local reads DIR/audit/anchors/NAME/
 * <run>.checkpoint, dir <path>/<run>.checkpoint, git <run>.checkpoint at
 * the tip of the ref in the remote (a local path). command keeps none
 * (AG_ENOTFOUND). dir is the state directory, for relative paths.
 */
int ag_anchor_read(struct ag_buf *out, const char *dir, const struct ag_anchor *a,
    const char *run);

#endif
