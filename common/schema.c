#include "common/schema.h"

#include <string.h>

#include <openssl/evp.h>

void schema_sha1_hex(const char *script, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    static const char hex[] = "0123456789abcdef";
    if (!EVP_Digest(script, strlen(script), md, &n, EVP_sha1(), NULL) || n != 20) {
        out[0] = '\0';   /* EVALSHA then fails with NOSCRIPT and EVAL is used */
        return;
    }
    for (unsigned i = 0; i < 20; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[40] = '\0';
}
