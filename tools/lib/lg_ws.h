/*
 * odin-loadgen client side of the RFC 6455 opening handshake: key, expected
 * accept value, request text and response parsing.  No I/O.
 */
#ifndef ODIN_COMMON_LG_WS_H
#define ODIN_COMMON_LG_WS_H

#include <stddef.h>
#include <stdint.h>

#include "common/wskey.h"

#define LG_WS_KEY_LEN WSKEY_KEY_LEN

/* Random Sec-WebSocket-Key from the PRNG state; out holds 25 bytes. */
void lg_ws_key(uint64_t *rng, char out[LG_WS_KEY_LEN + 1]);

/* Format the GET upgrade request into out; returns its length, or -1 if it
 * does not fit. */
int lg_ws_request(char *out, size_t cap, const char *host, int port, const char *path,
                  const char *key);

/* The same, offering permessage-deflate (RFC 7692) when deflate is set:
 * "permessage-deflate; client_max_window_bits", what browsers send. */
int lg_ws_request_ext(char *out, size_t cap, const char *host, int port, const char *path,
                      const char *key, int deflate);

typedef struct lg_http_resp {
    int status;                 /* e.g. 101, 503 */
    const char *accept;         /* Sec-WebSocket-Accept value (into input) */
    size_t accept_len;
    int upgrade_websocket;      /* "Upgrade: websocket" present */
    int connection_upgrade;     /* "Connection: ... upgrade ..." present */
    int deflate;                /* Sec-WebSocket-Extensions: permessage-deflate */
} lg_http_resp;

/*
 * Parse a response head.  Returns the header length including the blank
 * line (> 0) when complete, 0 if more bytes are needed, -1 if malformed
 * (not "HTTP/1.x NNN", or no end of headers within `max` bytes).
 */
int lg_http_response_parse(const char *p, size_t n, size_t max, lg_http_resp *r);

/* Result of checking a parsed response against the key we sent. */
enum lg_ws_check {
    LG_WS_OK = 0,
    LG_WS_STATUS = -1,     /* status is not 101 (see r->status) */
    LG_WS_BADACCEPT = -2,  /* missing or wrong Sec-WebSocket-Accept */
    LG_WS_NOUPGRADE = -3   /* Upgrade / Connection headers missing */
};
int lg_ws_check(const lg_http_resp *r, const char *key, size_t keylen);

#endif
