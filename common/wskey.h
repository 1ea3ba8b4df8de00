/*
 * RFC 6455 handshake keys, shared by the shard (server side), the load
 * generator, the demo client and the test client: one implementation of
 * Sec-WebSocket-Accept = base64(SHA-1(key + GUID)), on OpenSSL.
 */
#ifndef ODIN_COMMON_WSKEY_H
#define ODIN_COMMON_WSKEY_H

#include <stddef.h>

#define WSKEY_KEY_LEN 24      /* base64 of 16 bytes */
#define WSKEY_ACCEPT_LEN 28   /* base64 of a 20-byte SHA-1 */

/* Sec-WebSocket-Accept for key[0..len) into out (NUL-terminated).
 * Returns 0, or -1 if the key is over 64 bytes or OpenSSL fails. */
int wskey_accept(const char *key, size_t len, char out[WSKEY_ACCEPT_LEN + 1]);

/* Sec-WebSocket-Key from 16 bytes of nonce (the caller picks them). */
void wskey_from_nonce(const unsigned char nonce[16], char out[WSKEY_KEY_LEN + 1]);

#endif
