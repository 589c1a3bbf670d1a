/* SHA-256, through OpenSSL's libcrypto. */
#include "agora.h"
#include "audit.h"

#include <openssl/evp.h>

#include "banned.h"

/*
 * The digest, fetched once: EVP_sha256() makes OpenSSL 3 look it up
 * again at every call, which showed in serve's profile (three lines are
 * hashed per attempt).
 */
static const EVP_MD *
sha256(void)
{
	static EVP_MD *md;

	if (!md)
		md = EVP_MD_fetch(NULL, "SHA256", NULL);
	return md;
}

int
ag_sha256_hex_parts(char out[65], const struct iovec *parts, size_t n)
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t i;
	int ok;

	ok = ctx && sha256() && EVP_DigestInit_ex(ctx, sha256(), NULL);
	for (i = 0; ok && i < n; i++)
		ok = EVP_DigestUpdate(ctx, parts[i].iov_base, parts[i].iov_len);
	ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen == 32;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return ag_error_set(AG_ERROR, "sha256 failed");
	ag_hex(out, md, sizeof(md));
	return 0;
}

int
ag_sha256_hex(char out[65], const void *data, size_t len)
{
	unsigned char md[32];
	unsigned int mdlen = 0;

	if (!sha256() || !EVP_Digest(data, len, md, &mdlen, sha256(), NULL) || mdlen != 32)
		return ag_error_set(AG_ERROR, "sha256 failed");
	ag_hex(out, md, sizeof(md));
	return 0;
}
