/*
 * One WebSocket client of the shard (shard/client.c): its socket, HTTP
 * phase, WebSocket parser, subscriptions and bounded send queue.
 *
 * Memory per idle client is the shard_client struct below (a few hundred
 * bytes) plus its subscriptions: the read buffer is shared by all clients,
 * the wslay context exists only while a frame is partially received, and
 * the send queue is a ring of pointers to shared refcounted chunks.
 *
 * Lifetime: a client is never freed inside its own callbacks.  Closing it
 * (client_kill) closes the fd at once and moves the struct to a graveyard
 * that the server's reaper event frees on the next loop pass.
 */
#ifndef ODIN_SHARD_CLIENT_H
#define ODIN_SHARD_CLIENT_H

#include <stdint.h>
#include <sys/socket.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include "common/buf.h"
#include "common/tbucket.h"
#include "shard/resume.h"
#include "shard/subs.h"
#include "shard/ws.h"

typedef struct shard_server shard_server;

enum client_state { CL_HTTP = 0, CL_OPEN, CL_CLOSING, CL_DEAD };

/* flags */
#define CLF_IN_FLUSH    0x01u  /* on the server's flush list */
#define CLF_PROXY_WAIT  0x02u  /* PROXY header not yet decided (WS_PROXY_PROTOCOL) */
#define CLF_WR_SHUT     0x04u  /* shutdown(SHUT_WR) done */
#define CLF_IN_FEED     0x08u  /* inside ws_parser_feed */
#define CLF_SLOW        0x10u  /* closed for a full send queue */
#define CLF_UPGRADED    0x20u  /* went through the WebSocket upgrade */
#define CLF_TRUSTED     0x40u  /* peer is in WS_PROXY_TRUSTED */
#define CLF_VIA_PROXY   0x80u  /* came through the load balancer (PROXY command):
                                * a public client, no /health or /metrics */
#define CLF_IP_PENDING  0x100u /* holds a WS_IP_MAX_PENDING slot of its address */

#define CL_INLINE_Q 4
#define SHARD_HTTP_MAX_HEAD 8192   /* request head limit (431 above) */
#define SHARD_CLIENT_READ_BUF 65536  /* bytes read from a client at once */

typedef struct shard_client {
    struct shard_client *prev, *next;   /* live list or graveyard */
    struct shard_client *flush_next;
    struct shard_server *srv;
    struct event ev;
    int fd;
    uint8_t state;
    uint16_t flags;
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
    uint64_t partial_ms;         /* since when a frame is half received (0: none) */
    double rl_tokens;
    tbucket resume_bucket;       /* RESUME_CONN_RATE (set at the first
                                  * reconnect) */
    uint8_t resume_bucket_set;
    /* send queue: ring of chunk pointers, inline until it needs more */
    ws_chunk **q;
    uint32_t q_head, q_len, q_cap;
    uint32_t q_off;              /* bytes of q[head] already written */
    uint64_t q_bytes;
    ws_chunk *q_inline[CL_INLINE_Q];
    ws_parser parser;
    subs_conn subs;
    uint32_t ip_channels;        /* of subs, counted in WS_IP_MAX_CHANNELS */
    buf *http_in;                /* HTTP phase only */
    struct resume_client *rs;    /* reconnect replay state (shard/resume.c) */
    uint64_t id;                 /* unique in this process, increasing (admin API) */
    uint64_t since_ms;           /* accepted at (wall clock, ms) */
} shard_client;



shard_client *client_new(shard_server *srv, int fd,
                         const struct sockaddr *sa);
void client_free(shard_client *c);  /* only from the reaper */

/* Close the fd now and hand the struct to the reaper.  Idempotent. */
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

/* Switch from the HTTP phase to an open WebSocket; `rest` are bytes that
 * followed the request head (already a frame). */
void client_upgrade(shard_client *c, const char *rest, size_t len);

/* Write as much of the queue as the socket takes. */
void client_flush(shard_client *c);

/* Timer checks (ping, idle, timeouts). */
void client_tick(shard_client *c, uint64_t now);

#endif
