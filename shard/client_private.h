/*
 * The client module's own structs (shard/client.c, shard/clientpool.c):
 * no other file includes this header (docs/style.md, module-private
 * headers; tests/it/include_graph.sh checks it).  The contract is in
 * shard/client.h.
 */
#ifndef ODIN_SHARD_CLIENT_PRIVATE_H
#define ODIN_SHARD_CLIENT_PRIVATE_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include "common/buf.h"
#include "common/log.h"
#include "shard/client.h"

/* flags of the client itself */
#define CLF_IN_FLUSH    0x01u  /* on the pool's flush list */
#define CLF_WR_SHUT     0x04u  /* shutdown(SHUT_WR) done */
#define CLF_IN_FEED     0x08u  /* inside ws_parser_feed */
#define CLF_SLOW        0x10u  /* closed for a full send queue */
#define CLF_UPGRADED    0x20u  /* went through the WebSocket upgrade */

#define CL_INLINE_Q 4

struct shard_client {
    struct shard_client *prev, *next;   /* live list or graveyard */
    struct shard_client *flush_next;
    client_pool *pool;
    struct event ev;
    int fd;
    uint8_t state;
    uint16_t flags;
    uint8_t ev_write;            /* ev currently includes EV_WRITE */
    uint16_t errors;             /* error replies in the current window */
    client_peer peer;
    uint64_t t_state_ms;         /* accept time (HTTP) / close start */
    uint64_t last_rx_ms;
    uint64_t next_ping_ms;
    uint64_t err_window_ms;
    uint64_t rl_ms;              /* message token bucket */
    uint64_t partial_ms;         /* since when a frame is half received (0: none) */
    double rl_tokens;
    /* send queue: ring of chunk pointers, inline until it needs more */
    ws_chunk **q;
    uint32_t q_head, q_len, q_cap;
    uint32_t q_off;              /* bytes of q[head] already written */
    uint64_t q_bytes;
    ws_chunk *q_inline[CL_INLINE_Q];
    ws_parser parser;
    subs_conn subs;
    resume_conn rs;              /* reconnect replay state (shard/resume.h) */
    buf *http_in;                /* HTTP phase only */
    uint64_t id;                 /* unique in this process, increasing (admin API) */
    uint64_t since_ms;           /* accepted at (wall clock, ms) */
};

struct client_pool {
    shard_ctx *ctx;
    client_ops ops;
    void *ud;
    client_io io;
    struct event *flush_ev, *reap_ev;
    shard_client *live;          /* all clients not yet killed, newest first */
    shard_client *grave;         /* killed, to be freed by reap_ev */
    shard_client *flush_head, *flush_tail;
    client_counts n;
    int in_fanout;
    uint64_t next_id;            /* last id given */
    ws_chunk *ping;              /* shared ping frame */
    ws_deflate *deflate;         /* WS_DEFLATE compressor, NULL when off */
    ws_parser_set *parsers;      /* every client's parser counts here:
                                  * WS_PARTIAL_BUDGET, the shared inflate */
    buf scratch;                 /* replies */
    /* a mass disconnect must not flood the log; warnings have their own
     * budget */
    log_ratelimit log_rl, warn_rl;
    void (*on_drained)(void *ud);  /* shutdown: all clients gone */
    void *drained_ud;
    uint8_t rbuf[SHARD_CLIENT_READ_BUF];   /* read buffer shared by every client */
};

/* clientpool.c, for client.c */
void pool_schedule_flush(client_pool *p, shard_client *c);
void pool_bury(client_pool *p, shard_client *c);   /* live list -> graveyard */

/* client.c, for clientpool.c */
void client_free(shard_client *c);                  /* only from the reaper */
void client_tick(shard_client *c, uint64_t now);

#endif
