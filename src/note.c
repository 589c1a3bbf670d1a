/*
 * C2SP signed notes (c2sp.org/signed-note) and checkpoints
 * (c2sp.org/tlog-checkpoint), signed with Ed25519 through OpenSSL.
 *
 * A key's name is "agora-" and the first 16 hex digits of the SHA-256 of
 * its raw public key: it comes from the key alone, so a verifier holding
 * only keys/signing.pub knows which signature line is its key's, and a new
 * key gets a new name as well as a new key id.
 */
#include "agora.h"
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "banned.h"

#define EM_DASH "\xe2\x80\x94"
#define KEY_FILE_MAX 16384

struct ag_key {
	EVP_PKEY *pkey;
	int private;
	unsigned char raw[32];
	unsigned char id[4];
	char id_hex[9];
	char name[AG_KEYNAME_MAX + 1];
};

/* ---- base64 ---- */

int
ag_base64_encode(char **out, const unsigned char *data, size_t len)
{
	size_t n = 4 * ((len + 2) / 3) + 1;

	*out = NULL;
	if (len > (size_t)1 << 30)
		return ag_error_set(AG_EINVALID, "base64: input too long");
	if (!(*out = malloc(n)))
		return ag_error_set(AG_ERROR, "out of memory");
	EVP_EncodeBlock((unsigned char *)*out, data, (int)len);
	return 0;
}

int
ag_base64_decode(unsigned char *out, size_t max, size_t *n, const char *s, size_t len)
{
	static const char alpha[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	unsigned char *buf = NULL;
	char *again = NULL;
	size_t i, pad = 0, dlen;
	int got, rc = 0;

	*n = 0;
	if (len == 0 || len % 4 != 0 || len > (size_t)1 << 20)
		return ag_error_set(AG_EINVALID, "not base64: length %zu is not a multiple of 4", len);
	while (pad < 2 && s[len - 1 - pad] == '=')
		pad++;
	for (i = 0; i < len - pad; i++)
		if (!s[i] || !strchr(alpha, s[i]))
			return ag_error_set(AG_EINVALID, "not base64: byte %zu", i + 1);
	dlen = len / 4 * 3 - pad;
	if (dlen > max)
		return ag_error_set(AG_EINVALID, "base64 value of %zu bytes, at most %zu expected",
		    dlen, max);
	if (!(buf = malloc(len / 4 * 3 + 1))) {
		rc = ag_error_set(AG_ERROR, "out of memory");
		goto out;
	}
	got = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len);
	if (got < 0 || (size_t)got != len / 4 * 3) {
		rc = ag_error_set(AG_EINVALID, "not base64");
		goto out;
	}
	/* only the canonical spelling: the padding bits must be zero */
	if ((rc = ag_base64_encode(&again, buf, dlen)) < 0)
		goto out;
	if (strlen(again) != len || memcmp(again, s, len) != 0) {
		rc = ag_error_set(AG_EINVALID, "not canonical base64");
		goto out;
	}
	memcpy(out, buf, dlen);
	*n = dlen;
out:
	free(again);
	if (buf)
		OPENSSL_cleanse(buf, len / 4 * 3 + 1);
	free(buf);
	return rc;
}

/* ---- keys ---- */

int
ag_key_id_of(unsigned char out[4], const char *name, const unsigned char pub[32])
{
	static const unsigned char sep[2] = { '\n', 0x01 };	/* 0x01: Ed25519 */
	unsigned char md[32];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok;

	ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
	    EVP_DigestUpdate(ctx, name, strlen(name)) && EVP_DigestUpdate(ctx, sep, 2) &&
	    EVP_DigestUpdate(ctx, pub, 32) && EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	if (!ok || mdlen != 32)
		return ag_error_set(AG_ERROR, "sha256 failed");
	memcpy(out, md, 4);
	return 0;
}

/* Name and id from the raw public key. */
static int
key_finish(struct ag_key *k, const char *path)
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	char hex[65];
	size_t len = sizeof(k->raw);
	int rc;

	if (EVP_PKEY_get_base_id(k->pkey) != EVP_PKEY_ED25519)
		return ag_error_set(AG_EINVALID, "'%s': not an Ed25519 key", path);
	if (EVP_PKEY_get_raw_public_key(k->pkey, k->raw, &len) != 1 || len != 32)
		return ag_error_set(AG_EINVALID, "'%s': cannot read the raw public key", path);
	if (!EVP_Digest(k->raw, 32, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
		return ag_error_set(AG_ERROR, "sha256 failed");
	ag_hex(hex, md, 8);
	snprintf(k->name, sizeof(k->name), "agora-%s", hex);
	if ((rc = ag_key_id_of(k->id, k->name, k->raw)) < 0)
		return rc;
	ag_hex(k->id_hex, k->id, 4);
	return 0;
}

int
ag_key_load_private(struct ag_key **out, const char *path)
{
	struct ag_key *k = NULL;
	struct ag_buf b = { 0 };
	struct stat st;
	BIO *bio = NULL;
	int fd = -1, rc = 0;

	*out = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
		if (errno == ENOENT)
			return ag_error_set(AG_ENOTFOUND, "no signing key '%s'", path);
		return ag_error_sys(AG_ERROR, "cannot open signing key '%s'", path);
	}
	if (fstat(fd, &st) < 0) {
		rc = ag_error_sys(AG_ERROR, "cannot stat '%s'", path);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = ag_error_set(AG_EINVALID, "'%s': not a regular file", path);
		goto out;
	}
	if (st.st_uid != geteuid()) {
		rc = ag_error_set(AG_EINVALID, "'%s': owned by uid %ld, want %ld", path,
		    (long)st.st_uid, (long)geteuid());
		goto out;
	}
	if (st.st_mode & 077) {
		rc = ag_error_set(AG_EINVALID, "'%s': mode %04o, want 0600", path,
		    (unsigned)(st.st_mode & 07777));
		goto out;
	}
	if ((rc = ag_read_fd(&b, fd, path, KEY_FILE_MAX, 1)) < 0)
		goto out;
	if (!(k = calloc(1, sizeof(*k)))) {
		rc = ag_error_set(AG_ERROR, "out of memory");
		goto out;
	}
	if (!(bio = BIO_new_mem_buf(b.ptr, (int)b.len)) ||
	    !(k->pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL))) {
		/* the message never quotes the file: it holds the secret */
		rc = ag_error_set(AG_EINVALID, "'%s': not a PEM private key", path);
		goto out;
	}
	k->private = 1;
	if ((rc = key_finish(k, path)) < 0)
		goto out;
	*out = k;
	k = NULL;
out:
	BIO_free(bio);
	if (b.ptr) {
		OPENSSL_cleanse(b.ptr, b.cap);
		ag_buf_release(&b);
	}
	ag_key_free(k);
	if (fd >= 0)
		close(fd);
	return rc;
}

int
ag_key_load_public(struct ag_key **out, const char *path)
{
	struct ag_key *k = NULL;
	struct ag_buf b = { 0 };
	BIO *bio = NULL;
	int rc;

	*out = NULL;
	if ((rc = ag_read_file(&b, path, KEY_FILE_MAX)) < 0)
		return rc;
	if (!(k = calloc(1, sizeof(*k)))) {
		rc = ag_error_set(AG_ERROR, "out of memory");
		goto out;
	}
	if (!(bio = BIO_new_mem_buf(b.ptr, (int)b.len)) ||
	    !(k->pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL))) {
		rc = ag_error_set(AG_EINVALID, "'%s': not a PEM public key", path);
		goto out;
	}
	if ((rc = key_finish(k, path)) < 0)
		goto out;
	*out = k;
	k = NULL;
out:
	BIO_free(bio);
	ag_buf_release(&b);
	ag_key_free(k);
	return rc;
}

int
ag_key_from_raw(struct ag_key **out, const unsigned char pub[32])
{
	struct ag_key *k;
	int rc;

	*out = NULL;
	if (!(k = calloc(1, sizeof(*k))))
		return ag_error_set(AG_ERROR, "out of memory");
	if (!(k->pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32))) {
		ag_key_free(k);
		return ag_error_set(AG_EINVALID, "not an Ed25519 public key");
	}
	if ((rc = key_finish(k, "raw key")) < 0) {
		ag_key_free(k);
		return rc;
	}
	*out = k;
	return 0;
}

void
ag_key_free(struct ag_key *k)
{
	if (!k)
		return;
	EVP_PKEY_free(k->pkey);
	OPENSSL_cleanse(k, sizeof(*k));
	free(k);
}

const char *
ag_key_name(const struct ag_key *k)
{
	return k->name;
}

const unsigned char *
ag_key_id(const struct ag_key *k)
{
	return k->id;
}

const char *
ag_key_id_hex(const struct ag_key *k)
{
	return k->id_hex;
}

const unsigned char *
ag_key_raw(const struct ag_key *k)
{
	return k->raw;
}

/* ---- signed notes ---- */

/* Text lines: no control byte but the newline, each line non-empty. */
static int
check_body(const char *body, size_t len)
{
	size_t i, line = 1;

	if (len == 0 || body[len - 1] != '\n')
		return ag_error_set(AG_EINVALID, "note text does not end in a newline");
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)body[i];
		if (c == '\n') {
			if (i == 0 || body[i - 1] == '\n')
				return ag_error_set(AG_EINVALID, "line %zu: empty line in note text", line);
			line++;
		} else if (c < 0x20 || c == 0x7f) {
			return ag_error_set(AG_EINVALID, "line %zu: control character 0x%02x", line, c);
		}
	}
	return 0;
}

int
ag_note_sign(char **out, size_t *len, const char *body, size_t bodylen,
    const struct ag_key *k)
{
	unsigned char blob[4 + 64];
	size_t siglen = 64;
	EVP_MD_CTX *ctx = NULL;
	struct ag_buf b;
	char *b64 = NULL;
	int rc;

	*out = NULL;
	*len = 0;
	ag_buf_init(&b, AG_NOTE_MAX);
	if (!k->private)
		return ag_error_set(AG_EINVALID, "key '%s' is a public key; signing takes the private one",
		    k->name);
	if ((rc = check_body(body, bodylen)) < 0)
		return rc;
	memcpy(blob, k->id, 4);
	if (!(ctx = EVP_MD_CTX_new()) ||
	    EVP_DigestSignInit(ctx, NULL, NULL, NULL, k->pkey) != 1 ||
	    EVP_DigestSign(ctx, blob + 4, &siglen, (const unsigned char *)body, bodylen) != 1 ||
	    siglen != 64) {
		rc = ag_error_set(AG_ERROR, "cannot sign with key '%s'", k->name);
		goto out;
	}
	if ((rc = ag_base64_encode(&b64, blob, sizeof(blob))) < 0 ||
	    (rc = ag_buf_put(&b, body, bodylen)) < 0 ||
	    (rc = ag_buf_printf(&b, "\n" EM_DASH " %s %s\n", k->name, b64)) < 0)
		goto out;
	*len = b.len;
	*out = ag_buf_detach(&b);
out:
	EVP_MD_CTX_free(ctx);
	free(b64);
	ag_buf_release(&b);
	return rc;
}

static int
parse_sig_line(struct ag_note_sig *s, const char *p, size_t len, size_t line)
{
	unsigned char blob[4 + 64 + 1];
	const char *sp;
	size_t namelen, n, i;
	int rc;

	if (len < 4 || memcmp(p, EM_DASH " ", 4) != 0)
		return ag_error_set(AG_EINVALID,
		    "line %zu: signature line does not start with an em dash and a space", line);
	p += 4;
	len -= 4;
	if (!(sp = memchr(p, ' ', len)))
		return ag_error_set(AG_EINVALID, "line %zu: signature line has no signature", line);
	namelen = (size_t)(sp - p);
	if (namelen == 0 || namelen > AG_KEYNAME_MAX)
		return ag_error_set(AG_EINVALID, "line %zu: key name of %zu bytes", line, namelen);
	for (i = 0; i < namelen; i++)
		if (p[i] == '+' || (unsigned char)p[i] <= ' ' || p[i] == 0x7f)
			return ag_error_set(AG_EINVALID, "line %zu: bad character in key name", line);
	memcpy(s->name, p, namelen);
	s->name[namelen] = '\0';
	if ((rc = ag_base64_decode(blob, sizeof(blob) - 1, &n, sp + 1, len - namelen - 1)) < 0) {
		char why[256];
		snprintf(why, sizeof(why), "%s", ag_error_msg());
		return ag_error_set(AG_EINVALID, "line %zu: signature: %s", line, why);
	}
	if (n < 5)
		return ag_error_set(AG_EINVALID, "line %zu: signature of %zu bytes is too short", line, n);
	memcpy(s->id, blob, 4);
	s->siglen = n - 4;
	memcpy(s->sig, blob + 4, n - 4);
	return 0;
}

int
ag_note_parse(struct ag_note *out, const char *note, size_t len)
{
	size_t i, body_end = 0, line = 1, off;
	int rc;

	out->nsigs = 0;
	out->body_len = 0;
	if (len > AG_NOTE_MAX)
		return ag_error_set(AG_EINVALID, "note of %zu bytes, at most %u", len, AG_NOTE_MAX);
	if (len == 0 || note[len - 1] != '\n')
		return ag_error_set(AG_EINVALID, "note does not end in a newline");
	/* the signatures follow the last blank line */
	for (i = len - 1; i > 0; i--)
		if (note[i] == '\n' && note[i - 1] == '\n') {
			body_end = i;
			break;
		}
	if (!body_end)
		return ag_error_set(AG_EINVALID, "note has no blank line before its signatures");
	for (i = 0; i < body_end; i++)
		if (note[i] == '\n')
			line++;
	if ((rc = check_body(note, body_end)) < 0)
		return rc;
	out->body_len = body_end;
	/* line is now the blank line's number */
	off = body_end + 1;
	while (off < len) {
		const char *nl = memchr(note + off, '\n', len - off);
		size_t l = (size_t)(nl - (note + off));
		line++;
		if (out->nsigs == AG_NOTE_SIGS_MAX)
			return ag_error_set(AG_EINVALID, "line %zu: more than %d signatures", line,
			    AG_NOTE_SIGS_MAX);
		for (i = 0; i < l; i++)
			if ((unsigned char)note[off + i] < 0x20 || note[off + i] == 0x7f)
				return ag_error_set(AG_EINVALID, "line %zu: control character 0x%02x",
				    line, (unsigned char)note[off + i]);
		if ((rc = parse_sig_line(&out->sigs[out->nsigs], note + off, l, line)) < 0)
			return rc;
		out->nsigs++;
		off += l + 1;
	}
	if (!out->nsigs)
		return ag_error_set(AG_EINVALID, "note has no signature line");
	return 0;
}

int
ag_note_verify(const char *note, size_t len, const struct ag_key *k)
{
	struct ag_note *n = NULL;
	EVP_MD_CTX *ctx = NULL;
	size_t i;
	int rc, found = 0;

	if (!(n = malloc(sizeof(*n))))
		return ag_error_set(AG_ERROR, "out of memory");
	if ((rc = ag_note_parse(n, note, len)) < 0)
		goto out;
	for (i = 0; i < n->nsigs; i++) {
		const struct ag_note_sig *s = &n->sigs[i];
		if (strcmp(s->name, k->name) != 0 || memcmp(s->id, k->id, 4) != 0)
			continue;
		found = 1;
		EVP_MD_CTX_free(ctx);
		if (!(ctx = EVP_MD_CTX_new()) ||
		    EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k->pkey) != 1) {
			rc = ag_error_set(AG_ERROR, "cannot verify with key '%s'", k->name);
			goto out;
		}
		if (s->siglen != 64 || EVP_DigestVerify(ctx, s->sig, 64,
		    (const unsigned char *)note, n->body_len) != 1) {
			rc = ag_error_set(AG_EINVALID, "signature by key '%s' (id %s) does not verify",
			    k->name, k->id_hex);
			goto out;
		}
	}
	if (!found)
		rc = ag_error_set(AG_EINVALID, "no signature by key '%s' (id %s)", k->name, k->id_hex);
out:
	EVP_MD_CTX_free(ctx);
	free(n);
	return rc;
}

/* ---- checkpoints ---- */

int
ag_checkpoint_body(char **out, size_t *len, const char *origin, uint64_t size,
    const unsigned char root[AG_HASH_LEN])
{
	struct ag_buf b;
	char *b64 = NULL;
	int rc;

	*out = NULL;
	*len = 0;
	if (!*origin || strlen(origin) > AG_ORIGIN_MAX || strchr(origin, '\n'))
		return ag_error_set(AG_EINVALID, "bad checkpoint origin '%s'",
		    ag_quote(origin, strlen(origin)));
	if ((rc = ag_base64_encode(&b64, root, AG_HASH_LEN)) < 0)
		return rc;
	ag_buf_init(&b, AG_NOTE_MAX);
	rc = ag_buf_printf(&b, "%s\n%llu\n%s\n", origin, (unsigned long long)size, b64);
	free(b64);
	if (rc < 0) {
		ag_buf_release(&b);
		return rc;
	}
	*len = b.len;
	*out = ag_buf_detach(&b);
	return 0;
}

int
ag_checkpoint_sign(char **out, size_t *len, const char *origin, uint64_t size,
    const unsigned char root[AG_HASH_LEN], const struct ag_key *k)
{
	char *body = NULL;
	size_t blen;
	int rc;

	*out = NULL;
	if ((rc = ag_checkpoint_body(&body, &blen, origin, size, root)) < 0)
		return rc;
	rc = ag_note_sign(out, len, body, blen, k);
	free(body);
	return rc;
}

int
ag_checkpoint_parse(struct ag_checkpoint *out, const char *note, size_t len)
{
	struct ag_note *n = NULL;
	const char *p = note, *nl, *end;
	size_t got, i;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!(n = malloc(sizeof(*n))))
		return ag_error_set(AG_ERROR, "out of memory");
	if ((rc = ag_note_parse(n, note, len)) < 0)
		goto out;
	end = note + n->body_len;
	/* line 1: the origin */
	nl = memchr(p, '\n', (size_t)(end - p));
	if ((size_t)(nl - p) > AG_ORIGIN_MAX) {
		rc = ag_error_set(AG_EINVALID, "line 1: origin longer than %d bytes", AG_ORIGIN_MAX);
		goto out;
	}
	memcpy(out->origin, p, (size_t)(nl - p));
	out->origin[nl - p] = '\0';
	p = nl + 1;
	/* line 2: the size, decimal, no sign, no leading zero */
	if (p == end || !(nl = memchr(p, '\n', (size_t)(end - p)))) {
		rc = ag_error_set(AG_EINVALID, "line 2: no tree size");
		goto out;
	}
	if (nl - p > 20 || (nl - p > 1 && *p == '0')) {
		rc = ag_error_set(AG_EINVALID, "line 2: bad tree size");
		goto out;
	}
	for (i = 0; p + i < nl; i++) {
		uint64_t d = (uint64_t)(p[i] - '0');
		if (p[i] < '0' || p[i] > '9' || out->size > (UINT64_MAX - d) / 10) {
			rc = ag_error_set(AG_EINVALID, "line 2: bad tree size");
			goto out;
		}
		out->size = out->size * 10 + d;
	}
	p = nl + 1;
	/* line 3: the root */
	if (p == end || !(nl = memchr(p, '\n', (size_t)(end - p)))) {
		rc = ag_error_set(AG_EINVALID, "line 3: no root hash");
		goto out;
	}
	if (ag_base64_decode(out->root, AG_HASH_LEN, &got, p, (size_t)(nl - p)) < 0 ||
	    got != AG_HASH_LEN) {
		rc = ag_error_set(AG_EINVALID, "line 3: root hash is not base64 of 32 bytes");
		goto out;
	}
	out->body_len = n->body_len;
	out->next = (size_t)(nl + 1 - note);
out:
	free(n);
	return rc;
}
