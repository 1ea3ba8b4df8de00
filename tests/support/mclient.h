/*
 * A counted WebSocket client (tests/it/test_redis_bound.c,
 * test_redis_cluster.c): subscribed to one channel, it counts the records
 * on it, those out of seq order, those on any other channel, and keeps the
 * last marker (rtsup_produce_marker: a record on the broadcast key, channel
 * "*.<category>") it saw.  Checks are cmocka assertions.
 */
#ifndef ODIN_TESTS_MCLIENT_H
#define ODIN_TESTS_MCLIENT_H

#include <stdint.h>

#include "tests/support/wsclient.h"

typedef struct mclient {
    wsc *ws;
    char chan[64];
    long count;                 /* live messages on chan */
    long unexpected;            /* any other non-marker channel */
    long out_of_order;          /* seq not increasing */
    int64_t last_seq;
    char marker[64];            /* last marker seen */
} mclient;

/* Connect to 127.0.0.1:port (asserts the 101) and subscribe to chan. */
void mclient_open(mclient *c, int port, const char *chan);

/* Send {"type":type,"data":{"channels":[chan]}} and read (counting what
 * else arrives) until a message holding `ack`, for at most 5 s. */
void mclient_request(mclient *c, const char *type, const char *ack);

/* Count one text message. */
void mclient_on_text(mclient *c, const char *text);

/* Read whatever arrives within timeout_ms (then only what is buffered);
 * asserts the connection stays open. */
void mclient_pump(mclient *c, int timeout_ms);

#endif
