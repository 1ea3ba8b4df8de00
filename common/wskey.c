#include "common/wskey.h"

#include <string.h>

#include <openssl/evp.h>

static const char wskey_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

int wskey_accept(const char *key, size_t len, char out[WSKEY_ACCEPT_LEN + 1])
{
    char in[64 + sizeof wskey_guid];
    if (len > 64)
        return -1;
    memcpy(in, key, len);
    memcpy(in + len, wskey_guid, sizeof wskey_guid - 1);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(in, len + sizeof wskey_guid - 1, md, &mdlen, EVP_sha1(), NULL) != 1 ||
        mdlen != 20)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, md, 20);   /* writes 28 chars + NUL */
    return 0;
}

void wskey_from_nonce(const unsigned char nonce[16], char out[WSKEY_KEY_LEN + 1])
{
    EVP_EncodeBlock((unsigned char *)out, nonce, 16);
}
