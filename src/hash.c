/* SHA-256, through OpenSSL's libcrypto. */
#include "agora.h"

#include <stdio.h>

#include <openssl/evp.h>

#include "banned.h"

int
ag_sha256_hex(char out[65], const void *data, size_t len)
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	int i;

	if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
		return ag_error_set(AG_ERROR, "sha256 failed");
	for (i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}
