/*
 * The shard's WebSocket clients (shard/client.c, shard/clientpool.c): one
 * connection's socket, HTTP phase, WebSocket parser, client protocol,
 * subscriptions and bounded send queue, and the pool that owns them all.
 *
 * Both objects are opaque.  The pool owns every client (the live list in
 * descending id order, the counts, the flush list, the graveyard and its
 * reaper), the state clients share (the 64 KB read buffer, the ping frame,
 * the WS_DEFLATE compressor, the parsers' set: WS_PARTIAL_BUDGET and the
 * inflate stream, shard/ws.h ws_parser_set; per-client log rate limits) and calls its owner (shard/server.c) only through
 * client_ops; it reaches the socket only through client_io (NULL: the
 * system calls), so tests drive clients without sockets
 * (tests/unit/test_client.c, tests/support/fakeio.h).  Module-private
 * structs live in shard/client_private.h (docs/style.md).
 *
 * Memory per idle client is its struct (a few hundred bytes) plus its
 * subscriptions: the read buffer is shared, the wslay context exists only
 * while a frame is partially received, and the send queue is a ring of
 * pointers to shared refcounted chunks.
 *
 * Lifetime: a client is never freed inside its own callbacks.  client_kill
 * closes the fd at once and moves the client to the graveyard that the
 * pool's reaper event frees on the next loop pass.  Loop thread only.
 */
#ifndef ODIN_SHARD_CLIENT_H
#define ODIN_SHARD_CLIENT_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include "shard/ctx.h"
#include "shard/resume.h"
#include "shard/subs.h"
#include "shard/ws.h"

typedef struct shard_client shard_client;
typedef struct client_pool client_pool;

enum client_state { CL_HTTP = 0, CL_OPEN, CL_CLOSING, CL_DEAD };

#define SHARD_HTTP_MAX_HEAD 8192     /* request head limit (431 above) */
#define SHARD_CLIENT_READ_BUF 65536  /* bytes read from a client at once */

/* The peer as the owner sees it: the socket's address, or the PROXY
 * header's source once decided; its flags and per-address counts are the
 * owner's (shard/server.c writes them, the client only reads flags). */
#define CLIENT_PEER_PROXY_WAIT 0x01u /* PROXY header not yet decided (WS_PROXY_PROTOCOL) */
#define CLIENT_PEER_TRUSTED    0x02u /* socket address is in WS_PROXY_TRUSTED */
#define CLIENT_PEER_VIA_PROXY  0x04u /* came through the load balancer (PROXY command):
                                      * a public client, no /health or /metrics */
#define CLIENT_PEER_IP_PENDING 0x08u /* holds a WS_IP_MAX_PENDING slot of its address */
typedef struct client_peer {
    uint8_t ip[16];
    uint8_t ip_len;              /* 4 or 16 */
    uint16_t port;
    uint16_t flags;              /* CLIENT_PEER_* */
    uint32_t ip_channels;        /* subscriptions counted in WS_IP_MAX_CHANNELS */
} client_peer;

/* What a client asks of the pool's owner (ud: client_pool_new's). */
typedef struct client_ops {
    /* A request head arrived (maybe incomplete: the owner parses and
     * answers or upgrades through client_http_reply / client_upgrade). */
    void (*http_request)(void *ud, shard_client *c, const char *data, size_t len);
    /* CLIENT_PEER_PROXY_WAIT: decide on the first bytes (data/len: all
     * received so far).  1 decided (*used: bytes of header to drop), 0
     * wait for more, -1 refused (c was killed). */
    int (*proxy)(void *ud, shard_client *c, const uint8_t *data, size_t len,
                 size_t *used);
    /* c leaves the HTTP phase (upgraded or killed before): give back its
     * per-address pending slot, maybe resume accepting.  Once per client. */
    void (*http_leave)(void *ud, shard_client *c);
    /* WS_IP_MAX_CHANNELS: take one slot for c (0) or refuse (-1); give back
     * n of the slots c holds. */
    int (*ip_channel_take)(void *ud, shard_client *c);
    void (*ip_channel_release)(void *ud, shard_client *c, uint32_t n);
    /* A reconnect: c is subscribed to every channel of ch; the owner starts
     * the replay (shard/resume.h), which answers the client itself. */
    void (*resume_start)(void *ud, shard_client *c, const resume_req_chan *ch,
                         size_t n, int odinws);
    /* c is about to be freed (its replay, if any, is dropped). */
    void (*gone)(void *ud, shard_client *c);
} client_ops;

/* The socket calls, for tests; NULL in client_pool_new = the system calls.
 * Each returns what the system call would (-1 with errno). */
typedef struct client_io {
    ssize_t (*read)(void *ud, int fd, void *buf, size_t len);
    ssize_t (*writev)(void *ud, int fd, const struct iovec *iov, int n);
    int (*shutdown_wr)(void *ud, int fd);
    int (*close)(void *ud, int fd);
    /* 1 when input waits unread on fd (net_input_pending) */
    int (*input_pending)(void *ud, int fd);
    void *ud;
} client_io;

/* Counts the owner reports (/health, /metrics, capacity). */
typedef struct client_counts {
    long http;        /* in the HTTP phase (WS_MAX_PENDING) */
    long open;        /* open WebSocket connections */
    long closing;     /* upgraded, closing (still hold a client slot) */
    uint64_t queue_bytes;  /* bytes queued on all clients */
} client_counts;

/* ---- the pool ----------------------------------------------------------- */

/* ctx is borrowed (base, settings, counters, channel index); ops and io
 * are copied.  The pool makes its clients' parser set with
 * WS_PARTIAL_BUDGET (ctx->set->partial_budget).  NULL on ENOMEM
 * (WS_DEFLATE compressor, parser set, events). */
client_pool *client_pool_new(shard_ctx *ctx, const client_ops *ops, void *ud,
                             const client_io *io);
/* Kill and free every client, then the pool.  NULL is a no-op. */
void client_pool_free(client_pool *p);

/* A new connection in the HTTP phase, first in the live list with the next
 * id; the pool watches fd for input.  NULL on failure (fd left open). */
shard_client *client_new(client_pool *p, int fd, const struct sockaddr *sa);

const client_counts *client_pool_counts(const client_pool *p);
/* The set every client's parser counts in (the partial-frame budget, wslay
 * contexts, inflate counters: shard/ws.h), owned by the pool. */
const ws_parser_set *client_pool_parsers(const client_pool *p);
/* The live list, newest (highest id) first: the client after prev (the
 * first for NULL); a caller may kill the client it holds, not the next. */
shard_client *client_pool_next(const client_pool *p, const shard_client *prev);
/* The client with this id, or NULL. */
shard_client *client_pool_find(const client_pool *p, uint64_t id);
/* Timers (handshake, idle, ping, partial frame, close): one pass. */
void client_pool_tick(client_pool *p, uint64_t now);
/* A fan-out walks member arrays (1) or is done (0): a client closed in
 * between stays in the channel index until the next loop pass. */
void client_pool_walking(client_pool *p, int on);
/* Shutdown: close every open client with 1001, kill the others; cb(ud)
 * once no client is left. */
void client_pool_shutdown(client_pool *p, void (*cb)(void *), void *ud);

/* ---- one client --------------------------------------------------------- */

enum client_state client_state(const shard_client *c);
uint64_t client_id(const shard_client *c);          /* unique, increasing */
uint64_t client_since_ms(const shard_client *c);    /* accepted at (wall clock) */
uint64_t client_queued_bytes(const shard_client *c);
const subs_conn *client_subs(const shard_client *c);
/* The owner's view of the peer (mutable by the owner only). */
client_peer *client_peer_of(shard_client *c);
const client_peer *client_peer_const(const shard_client *c);
/* What resume keeps on the connection (shard/resume.h). */
resume_conn *client_resume(shard_client *c);
/* The client behind a resume_conn.owner or a subscriber's owner. */
static inline shard_client *client_from_owner(void *owner) { return owner; }

/* Close the fd now and hand the client to the reaper.  Idempotent. */
void client_kill(shard_client *c, const char *why);

/* Send a close frame (if open) and wait for the peer, bounded by
 * WS_CLOSE_TIMEOUT.  Counted in ws_disconnects_total{code}. */
void client_close(shard_client *c, uint16_t code, const char *reason);

/* Queue a chunk (takes a reference).  0 if queued; -1 if not: the client
 * is not open, or it was over its queue limits and is now closed with 1008. */
int client_push(shard_client *c, ws_chunk *ch);

/* Queue a text message (a reply: counted in ws_replies_sent_total).  0 if
 * queued, -1 if not (closed client, full queue, ENOMEM). */
int client_send_text(shard_client *c, const char *data, size_t len);

/* Queue bytes that end the HTTP phase (a response) and close after. */
void client_http_reply(shard_client *c, const char *data, size_t len,
                       int close_after);

/* A refusal written straight to a fresh connection (nothing queued yet),
 * after reading what it sent so the close is a FIN, then killed. */
void client_refuse_now(shard_client *c, const char *data, size_t len,
                       const char *why);

/* Switch from the HTTP phase to an open WebSocket (permessage-deflate when
 * `deflate`); `rest` are bytes that followed the request head (already a
 * frame). */
void client_upgrade(shard_client *c, int deflate, const char *rest, size_t len);

/* Write as much of the queue as the socket takes. */
void client_flush(shard_client *c);

#endif
