/*
 * Client-facing server: TCP listeners on WS_ADDR (and WS_SHARED_ADDR),
 * HTTP phase (/ws upgrade, /health, /metrics), WebSocket clients with their
 * send queues, fan-out of record frames, timers (ping, idle, handshake,
 * close), and the per-IP connection rate limit.
 *
 * Memory per idle client is the shard_client struct below (a few hundred
 * bytes) plus its subscriptions: the read buffer is shared by all clients,
 * the wslay context exists only while a frame is partially received, and
 * the send queue is a ring of pointers to shared refcounted chunks.
 *
 * Lifetime: a client is never freed inside its own callbacks.  Closing it
 * (client_kill) closes the fd at once and moves the struct to a graveyard
 * that a separate event frees on the next loop pass.
 */
#ifndef ODIN_SHARD_SERVER_H
#define ODIN_SHARD_SERVER_H

#include <stdint.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include "common/buf.h"
#include "proto/frame.h"
#include "shard/map.h"
#include "shard/shard.h"
#include "shard/subs.h"
#include "shard/ws.h"

enum client_state { CL_HTTP = 0, CL_OPEN, CL_CLOSING, CL_DEAD };

/* flags */
#define CLF_IN_FLUSH    0x01u  /* on the server's flush list */
#define CLF_WR_SHUT     0x04u  /* shutdown(SHUT_WR) done */
#define CLF_IN_FEED     0x08u  /* inside ws_parser_feed */
#define CLF_SLOW        0x10u  /* closed for a full send queue */
#define CLF_UPGRADED    0x20u  /* went through the WebSocket upgrade */

#define CL_INLINE_Q 4
#define SHARD_HTTP_MAX_HEAD 8192   /* request head limit (431 above) */

typedef struct shard_client {
    struct shard_client *prev, *next;   /* live list or graveyard */
    struct shard_client *flush_next;
    struct shard_server *srv;
    struct event ev;
    int fd;
    uint8_t state;
    uint8_t flags;
    uint8_t ip_len;              /* 4 or 16 */
    uint8_t ev_write;            /* ev currently includes EV_WRITE */
    uint16_t port;
    uint16_t errors;             /* error replies in the current window */
    uint8_t ip[16];
    uint64_t t_state_ms;         /* accept time (HTTP) / close start */
    uint64_t last_rx_ms;
    uint64_t next_ping_ms;
    uint64_t err_window_ms;
    uint64_t rl_ms;              /* message token bucket */
    double rl_tokens;
    /* send queue: ring of chunk pointers, inline until it needs more */
    ws_chunk **q;
    uint32_t q_head, q_len, q_cap;
    uint32_t q_off;              /* bytes of q[head] already written */
    uint64_t q_bytes;
    ws_chunk *q_inline[CL_INLINE_Q];
    ws_parser parser;
    subs_conn subs;
    buf *http_in;                /* HTTP phase only */
    struct resume_client *rs;    /* reconnect replay state (shard/resume.c) */
} shard_client;

typedef struct shard_listener {
    int fd;
    struct event ev;
    int added;
} shard_listener;

typedef struct shard_server {
    shard_ctx *ctx;
    shard_listener lis[2];
    int nlis;
    char ws_addr[96];            /* bound WS_ADDR (actual port) */
    int ws_port;
    struct event *flush_ev, *reap_ev, *sweep_ev, *resume_ev;
    shard_client *live;          /* all clients not yet killed */
    shard_client *grave;         /* killed, to be freed by reap_ev */
    shard_client *flush_head, *flush_tail;
    long n_http, n_open, n_closing;
    uint64_t queue_bytes;
    ws_chunk *ping;              /* shared ping frame */
    int in_fanout;
    uint64_t sweep_ms;
    uint64_t last_ipsweep_ms;
    shard_map ip_rates;
    buf scratch;                 /* replies, envelopes, pages */
    void (*on_drained)(void *ud);  /* shutdown: all clients gone */
    void *drained_ud;
} shard_server;

/* ---- server.c ---- */

/* Bind listeners and start timers.  NULL on failure (logged). */
shard_server *shard_server_new(shard_ctx *ctx);
void shard_server_free(shard_server *srv);

/* Deliver one router record to its subscribers (or every client for
 * FRAME_REC_ALL_CLIENTS).  Builds the frame once. */
void shard_server_deliver(shard_server *srv, const frame_record *r);

/* Shutdown: stop listening, close every client with 1001; call cb once no
 * client is left. */
void shard_server_shutdown(shard_server *srv, void (*cb)(void *), void *ud);

/* Handle a complete HTTP request head for client c (HTTP phase). */
void shard_server_http(shard_server *srv, shard_client *c, const char *data,
                       size_t len);

void shard_server_schedule_flush(shard_server *srv, shard_client *c);

/* ---- client.c ---- */

shard_client *client_new(shard_server *srv, int fd,
                         const struct sockaddr *sa);
void client_free(shard_client *c);  /* only from the reaper */

/* Close the fd now and hand the struct to the reaper.  Idempotent. */
void client_kill(shard_client *c, const char *why);

/* Send a close frame (if open) and wait for the peer, bounded by
 * WS_CLOSE_TIMEOUT.  Counted in ws_disconnects_total{code}. */
void client_close(shard_client *c, uint16_t code, const char *reason);

/* Queue a chunk (takes a reference).  Over the queue limits the client is
 * closed with 1008 and 0 is returned; 1 if queued. */
int client_push(shard_client *c, ws_chunk *ch);

/* Queue a text message (a reply: counted in ws_replies_sent_total).  1 if
 * queued, 0 if not (closed client, full queue, ENOMEM). */
int client_send_text(shard_client *c, const char *data, size_t len);

/* Queue bytes that end the HTTP phase (a response) and close after. */
void client_http_reply(shard_client *c, const char *data, size_t len,
                       int close_after);

/* Switch from the HTTP phase to an open WebSocket; `rest` are bytes that
 * followed the request head (already a frame). */
void client_upgrade(shard_client *c, const char *rest, size_t len);

/* Write as much of the queue as the socket takes. */
void client_flush(shard_client *c);

/* Timer checks (ping, idle, timeouts). */
void client_tick(shard_client *c, uint64_t now);

#endif
