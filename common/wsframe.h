/*
 * WebSocket frame headers as a client writes them and as anyone reads them
 * (RFC 6455 5.2), for the tools and tests that play the client side
 * (tests/support/wsclient.c, tests/support/fakeio.c, odin-loadgen's storm
 * tool).  The shard's own frames are shard/ws.h's; its input goes through
 * wslay.
 */
#ifndef ODIN_COMMON_WSFRAME_H
#define ODIN_COMMON_WSFRAME_H

#include <stddef.h>
#include <stdint.h>

#define WSFRAME_MAX_HEADER 14

/* OR-ed into an opcode: the frame's RSV1 bit (permessage-deflate). */
#define WSFRAME_RSV1 0x40

/* A client frame's header (MASK set, key `mask`) for a payload of len
 * bytes into out; returns its length (6 to 14). */
size_t wsframe_client_header(uint8_t out[WSFRAME_MAX_HEADER], int opcode, int fin,
                             uint64_t len, const uint8_t mask[4]);

/* XOR p[0..n) with the key, as byte `off` of the payload is the first. */
void wsframe_mask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t off);

/* A parsed header. */
typedef struct wsframe {
    int opcode;
    int fin;
    int rsv1;
    int masked;
    uint8_t mask[4];
    uint64_t len;       /* payload length */
    size_t header_len;
} wsframe;

/* Parse the header at b[0..n): 1 (f filled; the payload may still be
 * incomplete: check header_len + len <= n), 0 when more bytes are needed. */
int wsframe_parse(const uint8_t *b, size_t n, wsframe *f);

#endif
