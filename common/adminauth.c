/* Admin API bearer token (contract in adminauth.h). */
#include "common/adminauth.h"

#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

int adminauth_check(const char *authorization, const char *token, int mutating,
                    const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    if (!token || !*token) {
        if (mutating) {
            *why = "ADMIN_TOKEN is not set: mutating admin endpoints are disabled";
            return ADMINAUTH_FORBIDDEN;
        }
        *why = "ok";
        return ADMINAUTH_OK;
    }
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0) {
        *why = "missing bearer token (Authorization: Bearer <ADMIN_TOKEN>)";
        return ADMINAUTH_UNAUTHORIZED;
    }
    const char *got = authorization + 7;
    while (*got == ' ')
        got++;
    /* hash both so the compare is over equal lengths and leaks neither
     * the token's length nor where the first mismatch is */
    unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)got, strlen(got), a);
    SHA256((const unsigned char *)token, strlen(token), b);
    if (CRYPTO_memcmp(a, b, sizeof a) != 0) {
        *why = "wrong bearer token";
        return ADMINAUTH_UNAUTHORIZED;
    }
    *why = "ok";
    return ADMINAUTH_OK;
}
