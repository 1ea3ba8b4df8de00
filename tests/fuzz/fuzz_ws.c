/* libFuzzer target for the shard's WebSocket input side (shard/ws.c over
 * wslay): client bytes in chunks chosen by the first input byte, under a
 * small partial-frame budget; the first byte's top bit also negotiates
 * permessage-deflate (RSV1 messages are inflated, capped at max_msg).  Each
 * input gets its own parser set (budget, contexts, inflate stream), freed at
 * the end.  Invariants: the parser never crashes, every message it hands
 * out is within max_msg, and freeing it returns its whole charge to its set
 * (no context and no partial bytes left). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "shard/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MSG 4096

static void on_message(void *ud, ws_parser *p, unsigned op, const uint8_t *m, size_t n)
{
    if (n > MAX_MSG)
        abort();
    volatile unsigned sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += m[i];
    (void)sum;
    if (n == 7)
        ws_parser_stop(p);   /* the owner stopping from a callback */
}

static void on_control(void *ud, ws_parser *p, unsigned op, uint16_t code) {}

static int on_send(void *ud, const uint8_t *d, size_t n)
{
    if (n < 2 || n > 2 + 125 + 14)
        abort();   /* wslay only sends whole control frames here */
    return 0;
}

static const ws_parser_cb CB = { on_message, on_control, on_send };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)data[0] % 23 + 1;
    uint8_t deflate = data[0] >> 7;
    data++;
    size--;
    ws_parser_set *set = ws_parser_set_new(3 * WS_PARSER_CTX_COST);
    if (!set)
        return 0;
    ws_parser p, other;
    ws_parser_init(&p, set);
    ws_parser_init(&other, set);
    p.deflate = other.deflate = deflate;
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        /* alternate two connections so the budget is shared */
        ws_parser *q = (off / chunk) % 2 ? &other : &p;
        if (ws_parser_feed(q, &CB, NULL, data + off, n, MAX_MSG) != WS_FEED_OK && q->ctx)
            abort();   /* any stop releases the context */
    }
    ws_parser_free(&p);
    ws_parser_free(&other);
    if (ws_parser_partial_bytes(set) != 0 || ws_parser_contexts(set) != 0)
        abort();
    ws_parser_set_free(set);
    return 0;
}
