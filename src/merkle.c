/*
 * RFC 6962 Merkle trees over SHA-256, through OpenSSL's libcrypto: the
 * hash of one tree, built leaf by leaf in O(log n) memory, and inclusion
 * and consistency proofs (generated as RFC 6962 2.1 defines them,
 * verified with RFC 9162's algorithms).
 */
#include "agora.h"
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "banned.h"

static int
sha256_parts(unsigned char out[AG_HASH_LEN], unsigned char prefix, const void *a, size_t alen,
    const void *b, size_t blen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int mdlen = 0;
	int ok;

	ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
	    EVP_DigestUpdate(ctx, &prefix, 1) &&
	    (!alen || EVP_DigestUpdate(ctx, a, alen)) &&
	    (!blen || EVP_DigestUpdate(ctx, b, blen)) &&
	    EVP_DigestFinal_ex(ctx, out, &mdlen) && mdlen == AG_HASH_LEN;
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : ag_error_set(AG_ERROR, "sha256 failed");
}

int
ag_merkle_leaf(unsigned char out[AG_HASH_LEN], const void *data, size_t len)
{
	return sha256_parts(out, 0x00, data, len, NULL, 0);
}

int
ag_merkle_node(unsigned char out[AG_HASH_LEN], const unsigned char l[AG_HASH_LEN],
    const unsigned char r[AG_HASH_LEN])
{
	return sha256_parts(out, 0x01, l, AG_HASH_LEN, r, AG_HASH_LEN);
}

static int
empty_root(unsigned char out[AG_HASH_LEN])
{
	unsigned int mdlen = 0;

	if (!EVP_Digest("", 0, out, &mdlen, EVP_sha256(), NULL) || mdlen != AG_HASH_LEN)
		return ag_error_set(AG_ERROR, "sha256 failed");
	return 0;
}

void
ag_merkle_init(struct ag_merkle *m)
{
	memset(m, 0, sizeof(*m));
}

int
ag_merkle_push_leaf(struct ag_merkle *m, const unsigned char leaf[AG_HASH_LEN])
{
	uint64_t k;
	int rc;

	if (m->depth >= 64)
		return ag_error_set(AG_EINVALID, "merkle tree is full");
	memcpy(m->stack[m->depth++], leaf, AG_HASH_LEN);
	/* each trailing one bit of the old count is a subtree the new leaf completes */
	for (k = m->n; k & 1; k >>= 1) {
		m->depth--;
		if ((rc = ag_merkle_node(m->stack[m->depth - 1], m->stack[m->depth - 1],
		    m->stack[m->depth])) < 0)
			return rc;
	}
	m->n++;
	return 0;
}

int
ag_merkle_push(struct ag_merkle *m, const void *data, size_t len)
{
	unsigned char leaf[AG_HASH_LEN];
	int rc;

	if ((rc = ag_merkle_leaf(leaf, data, len)) < 0)
		return rc;
	return ag_merkle_push_leaf(m, leaf);
}

int
ag_merkle_root(unsigned char out[AG_HASH_LEN], const struct ag_merkle *m)
{
	unsigned char h[AG_HASH_LEN];
	int i, rc;

	if (m->depth == 0)
		return empty_root(out);
	/* MTH splits off the largest perfect subtree first: fold from the right */
	memcpy(h, m->stack[m->depth - 1], AG_HASH_LEN);
	for (i = m->depth - 2; i >= 0; i--)
		if ((rc = ag_merkle_node(h, m->stack[i], h)) < 0)
			return rc;
	memcpy(out, h, AG_HASH_LEN);
	return 0;
}

/* The largest power of two smaller than n (n >= 2). */
static uint64_t
split(uint64_t n)
{
	uint64_t k = 1;

	while (k << 1 < n)
		k <<= 1;
	return k;
}

int
ag_merkle_tree_hash(unsigned char out[AG_HASH_LEN], const unsigned char *leaves, uint64_t n)
{
	struct ag_merkle m;
	uint64_t i;
	int rc;

	ag_merkle_init(&m);
	for (i = 0; i < n; i++)
		if ((rc = ag_merkle_push_leaf(&m, leaves + i * AG_HASH_LEN)) < 0)
			return rc;
	return ag_merkle_root(out, &m);
}

static int
proof_add(struct ag_proof *p, const unsigned char h[AG_HASH_LEN])
{
	if (p->n >= AG_PROOF_MAX)
		return ag_error_set(AG_EINVALID, "merkle proof longer than %d hashes", AG_PROOF_MAX);
	memcpy(p->h[p->n++], h, AG_HASH_LEN);
	return 0;
}

/* PATH(m, D[n]) for D = leaves[0..n); hashes are appended leaf-side first. */
static int
path(struct ag_proof *p, const unsigned char *leaves, uint64_t n, uint64_t m)
{
	unsigned char h[AG_HASH_LEN];
	uint64_t k;
	int rc;

	if (n <= 1)
		return 0;
	k = split(n);
	if (m < k) {
		if ((rc = path(p, leaves, k, m)) < 0 ||
		    (rc = ag_merkle_tree_hash(h, leaves + k * AG_HASH_LEN, n - k)) < 0)
			return rc;
	} else {
		if ((rc = path(p, leaves + k * AG_HASH_LEN, n - k, m - k)) < 0 ||
		    (rc = ag_merkle_tree_hash(h, leaves, k)) < 0)
			return rc;
	}
	return proof_add(p, h);
}

int
ag_merkle_inclusion(struct ag_proof *out, const unsigned char *leaves, uint64_t n,
    uint64_t index)
{
	out->n = 0;
	if (index >= n)
		return ag_error_set(AG_EINVALID, "leaf %llu is not in a tree of size %llu",
		    (unsigned long long)index, (unsigned long long)n);
	return path(out, leaves, n, index);
}

/* SUBPROOF(m, D[n], b) */
static int
subproof(struct ag_proof *p, const unsigned char *leaves, uint64_t n, uint64_t m, int b)
{
	unsigned char h[AG_HASH_LEN];
	uint64_t k;
	int rc;

	if (m == n) {
		if (b)
			return 0;
		if ((rc = ag_merkle_tree_hash(h, leaves, n)) < 0)
			return rc;
		return proof_add(p, h);
	}
	k = split(n);
	if (m <= k) {
		if ((rc = subproof(p, leaves, k, m, b)) < 0 ||
		    (rc = ag_merkle_tree_hash(h, leaves + k * AG_HASH_LEN, n - k)) < 0)
			return rc;
	} else {
		if ((rc = subproof(p, leaves + k * AG_HASH_LEN, n - k, m - k, 0)) < 0 ||
		    (rc = ag_merkle_tree_hash(h, leaves, k)) < 0)
			return rc;
	}
	return proof_add(p, h);
}

int
ag_merkle_consistency(struct ag_proof *out, const unsigned char *leaves, uint64_t n,
    uint64_t m)
{
	out->n = 0;
	if (m > n)
		return ag_error_set(AG_EINVALID, "no consistency proof from size %llu to the smaller %llu",
		    (unsigned long long)m, (unsigned long long)n);
	if (m == 0 || m == n)
		return 0;
	return subproof(out, leaves, n, m, 1);
}

int
ag_merkle_verify_inclusion(const unsigned char leaf[AG_HASH_LEN], uint64_t index,
    uint64_t n, const struct ag_proof *p, const unsigned char root[AG_HASH_LEN])
{
	unsigned char r[AG_HASH_LEN];
	uint64_t fn = index, sn;
	size_t i;
	int rc;

	if (index >= n)
		return ag_error_set(AG_EINVALID, "inclusion proof: leaf %llu is not in a tree of size %llu",
		    (unsigned long long)index, (unsigned long long)n);
	sn = n - 1;
	memcpy(r, leaf, AG_HASH_LEN);
	for (i = 0; i < p->n; i++) {
		if (sn == 0)
			return ag_error_set(AG_EINVALID, "inclusion proof: %zu hashes, too many", p->n);
		if ((fn & 1) || fn == sn) {
			if ((rc = ag_merkle_node(r, p->h[i], r)) < 0)
				return rc;
			while (!(fn & 1) && fn != 0) {
				fn >>= 1;
				sn >>= 1;
			}
		} else if ((rc = ag_merkle_node(r, r, p->h[i])) < 0) {
			return rc;
		}
		fn >>= 1;
		sn >>= 1;
	}
	if (sn != 0)
		return ag_error_set(AG_EINVALID, "inclusion proof: %zu hashes, too few", p->n);
	if (memcmp(r, root, AG_HASH_LEN) != 0)
		return ag_error_set(AG_EINVALID, "inclusion proof: the root does not match");
	return 0;
}

int
ag_merkle_verify_consistency(uint64_t m, uint64_t n, const unsigned char root_m[AG_HASH_LEN],
    const unsigned char root_n[AG_HASH_LEN], const struct ag_proof *p)
{
	unsigned char fr[AG_HASH_LEN], sr[AG_HASH_LEN];
	uint64_t fn, sn;
	size_t i = 0;
	int rc;

	if (m > n)
		return ag_error_set(AG_EINVALID, "consistency proof: size %llu is larger than %llu",
		    (unsigned long long)m, (unsigned long long)n);
	if (m == 0 || m == n) {
		if (p->n)
			return ag_error_set(AG_EINVALID, "consistency proof: %zu hashes, want none",
			    p->n);
		if (m == n && memcmp(root_m, root_n, AG_HASH_LEN) != 0)
			return ag_error_set(AG_EINVALID,
			    "consistency proof: two different roots for size %llu",
			    (unsigned long long)m);
		return 0;
	}
	if (p->n == 0)
		return ag_error_set(AG_EINVALID, "consistency proof: empty");
	fn = m - 1;
	sn = n - 1;
	/* a perfect first tree is its own first hash, which the proof leaves out */
	if ((m & (m - 1)) == 0) {
		memcpy(fr, root_m, AG_HASH_LEN);
	} else {
		memcpy(fr, p->h[0], AG_HASH_LEN);
		i = 1;
	}
	memcpy(sr, fr, AG_HASH_LEN);
	while (fn & 1) {
		fn >>= 1;
		sn >>= 1;
	}
	for (; i < p->n; i++) {
		if (sn == 0)
			return ag_error_set(AG_EINVALID, "consistency proof: %zu hashes, too many", p->n);
		if ((fn & 1) || fn == sn) {
			if ((rc = ag_merkle_node(fr, p->h[i], fr)) < 0 ||
			    (rc = ag_merkle_node(sr, p->h[i], sr)) < 0)
				return rc;
			while (!(fn & 1) && fn != 0) {
				fn >>= 1;
				sn >>= 1;
			}
		} else if ((rc = ag_merkle_node(sr, sr, p->h[i])) < 0) {
			return rc;
		}
		fn >>= 1;
		sn >>= 1;
	}
	if (sn != 0)
		return ag_error_set(AG_EINVALID, "consistency proof: %zu hashes, too few", p->n);
	if (memcmp(fr, root_m, AG_HASH_LEN) != 0)
		return ag_error_set(AG_EINVALID,
		    "consistency proof: the root of size %llu does not match",
		    (unsigned long long)m);
	if (memcmp(sr, root_n, AG_HASH_LEN) != 0)
		return ag_error_set(AG_EINVALID,
		    "consistency proof: the root of size %llu does not match",
		    (unsigned long long)n);
	return 0;
}

/*
 * Hand each whole line of a file (without its newline) to cb, at most max
 * of them, reading a chunk at a time.
 */
static int
each_line(const char *path, uint64_t max, uint64_t *bytes,
    int (*cb)(void *, const char *, size_t), void *arg)
{
	struct ag_buf b;
	uint64_t count = 0, off = 0;
	size_t have = 0;
	ssize_t n;
	int fd, rc = 0;

	*bytes = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return ag_error_sys(AG_ERROR, "cannot read '%s'", path);
	ag_buf_init(&b, AG_FOLLOW_CHUNK);
	if ((rc = ag_buf_grow(&b, AG_FOLLOW_CHUNK)) < 0)
		goto out;
	while (count < max) {
		size_t start = 0;
		char *nl;

		n = pread(fd, b.ptr + have, AG_FOLLOW_CHUNK - have, (off_t)(off + have));
		if (n < 0) {
			rc = ag_error_sys(AG_ERROR, "cannot read '%s'", path);
			goto out;
		}
		if (n == 0)
			break;
		have += (size_t)n;
		while (count < max && (nl = memchr(b.ptr + start, '\n', have - start))) {
			size_t len = (size_t)(nl - (b.ptr + start));
			if ((rc = cb(arg, b.ptr + start, len)) < 0)
				goto out;
			start += len + 1;
			count++;
		}
		if (start == 0 && have == AG_FOLLOW_CHUNK) {
			rc = ag_error_set(AG_EINVALID, "%s: line %llu: longer than %u bytes", path,
			    (unsigned long long)count + 1, AG_FOLLOW_CHUNK);
			goto out;
		}
		memmove(b.ptr, b.ptr + start, have - start);
		have -= start;
		off += start;
	}
	*bytes = off;
out:
	close(fd);
	ag_buf_release(&b);
	return rc;
}

struct leaves {
	unsigned char *v;
	uint64_t n, cap;
};

static int
add_leaf(void *arg, const char *line, size_t len)
{
	struct leaves *l = arg;

	if (l->n == l->cap) {
		uint64_t cap = l->cap ? l->cap * 2 : 1024;
		unsigned char *nv = realloc(l->v, cap * AG_HASH_LEN);
		if (!nv)
			return ag_error_set(AG_ERROR, "out of memory");
		l->v = nv;
		l->cap = cap;
	}
	return ag_merkle_leaf(l->v + l->n++ * AG_HASH_LEN, line, len);
}

int
ag_merkle_file_leaves(unsigned char **out, uint64_t *n, uint64_t *bytes, const char *path,
    uint64_t max)
{
	struct leaves l = { NULL, 0, 0 };
	uint64_t end;
	int rc;

	*out = NULL;
	*n = 0;
	if ((rc = each_line(path, max, &end, add_leaf, &l)) < 0) {
		free(l.v);
		return rc;
	}
	if (!l.v && !(l.v = malloc(AG_HASH_LEN)))
		return ag_error_set(AG_ERROR, "out of memory");
	*out = l.v;
	*n = l.n;
	if (bytes)
		*bytes = end;
	return 0;
}

static int
push_line(void *arg, const char *line, size_t len)
{
	return ag_merkle_push(arg, line, len);
}

int
ag_merkle_file_root(unsigned char out[AG_HASH_LEN], uint64_t *n, uint64_t *bytes,
    const char *path, uint64_t max)
{
	struct ag_merkle m;
	uint64_t end;
	int rc;

	ag_merkle_init(&m);
	if ((rc = each_line(path, max, &end, push_line, &m)) < 0)
		return rc;
	if (n)
		*n = m.n;
	if (bytes)
		*bytes = end;
	return ag_merkle_root(out, &m);
}

void
ag_hex(char *out, const unsigned char *data, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < len; i++) {
		out[2 * i] = digits[data[i] >> 4];
		out[2 * i + 1] = digits[data[i] & 15];
	}
	out[2 * len] = '\0';
}

static int
nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
ag_unhex(unsigned char *out, size_t len, const char *hex)
{
	size_t i;

	if (!hex || strlen(hex) != 2 * len)
		return ag_error_set(AG_EINVALID, "expected %zu hex digits", 2 * len);
	for (i = 0; i < len; i++) {
		int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return ag_error_set(AG_EINVALID, "expected %zu hex digits", 2 * len);
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}
