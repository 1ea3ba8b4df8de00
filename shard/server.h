/*
 * Client-facing server (shard/server.c): TCP listeners on WS_ADDR (and
 * WS_SHARED_ADDR), accepted through net_acceptor (EMFILE back-off,
 * common/net.h), the HTTP phase (/ws upgrade, /health, /metrics), the
 * clients the fan-out reaches through fanout_ops (shard/fanout.h), timers
 * (ping, idle, handshake, close), the per-IP limits (shard/iptable.h) and
 * the /health and /metrics gate (ADMIN_ADDR listener, shard/admin.h;
 * ADMIN_RATE, ADMIN_ALLOW).
 */
#ifndef ODIN_SHARD_SERVER_H
#define ODIN_SHARD_SERVER_H

#include <stdint.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include "common/buf.h"
#include "common/log.h"
#include "common/tbucket.h"
#include "proto/frame.h"
#include "shard/admin.h"
#include "shard/client.h"
#include "shard/fanout.h"
#include "shard/iptable.h"
#include "shard/map.h"
#include "shard/ctx.h"
#include "shard/subs.h"
#include "shard/ws.h"

typedef struct shard_server {
    shard_ctx *ctx;
    struct net_acceptor *lis[2];  /* WS_ADDR, WS_SHARED_ADDR (common/net.h) */
    int nlis;
    char ws_addr[96];            /* bound WS_ADDR (actual port) */
    int ws_port;
    struct event *flush_ev, *reap_ev, *sweep_ev;
    shard_client *live;          /* all clients not yet killed */
    shard_client *grave;         /* killed, to be freed by reap_ev */
    shard_client *flush_head, *flush_tail;
    long n_http, n_open, n_closing;
    int accept_full;             /* listeners off: WS_MAX_PENDING reached */
    uint64_t accept_paused_ms;   /* pause start, or last accounted */
    uint64_t queue_bytes;
    ws_chunk *ping;              /* shared ping frame */
    ws_deflate *deflate;         /* WS_DEFLATE compressor, NULL when off */
    int in_fanout;
    uint64_t sweep_ms;
    uint64_t last_ipsweep_ms;
    iptable *ips;                /* per-IP limits' state (shard/iptable.h) */
    shard_admin *admin;          /* ADMIN_ADDR listener, NULL when unset */
    char admin_addr[96];         /* bound ADMIN_ADDR (actual port) */
    int admin_port;
    tbucket admin_rl[2];         /* ADMIN_RATE: [0] /metrics, [1] /health */
    tbucket admin_api_rl;        /* ADMIN_RATE: the admin API (/admin/v1/...) */
    uint64_t next_client_id;     /* last id given (shard_client.id) */
    buf scratch;                 /* replies, envelopes, pages */
    /* log rate limits (a flood must not flood the log): PROXY refusals,
     * a full per-IP table, admin pages, refused upgrades, the admin API,
     * per-client lines and per-client warnings (shard/client.c) */
    log_ratelimit proxy_rl, iptable_rl, admin_rl_log, upgrade_rl, api_rl,
                  client_log_rl, client_warn_rl;
    uint8_t rbuf[SHARD_CLIENT_READ_BUF];   /* read buffer shared by every client */
    void (*on_drained)(void *ud);  /* shutdown: all clients gone */
    void *drained_ud;
} shard_server;


/* Bind listeners and start timers.  NULL on failure (logged). */
shard_server *shard_server_new(shard_ctx *ctx);
void shard_server_free(shard_server *srv);

/* Open WebSocket connections; the bound WS_ADDR; the bound ADMIN_ADDR or
 * "" when there is no admin listener (the strings live as long as srv). */
long shard_server_connections(const shard_server *srv);
const char *shard_server_ws_addr(const shard_server *srv);
const char *shard_server_admin_addr(const shard_server *srv);

/* The ops through which the fan-out (shard/fanout.h) reaches srv's
 * clients; their ud is srv. */
void shard_server_fanout_ops(shard_server *srv, fanout_ops *ops);

/* Shutdown: stop listening, close every client with 1001; call cb once no
 * client is left. */
void shard_server_shutdown(shard_server *srv, void (*cb)(void *), void *ud);

/* Handle a complete HTTP request head for client c (HTTP phase). */
void shard_server_http(shard_server *srv, shard_client *c, const char *data,
                       size_t len);

/* Take one reconnect from the RESUME_IP_RATE bucket of c's address (the
 * per-address table of WS_IP_RATE): 1 allowed, 0 over the rate.  Fails open
 * (1) when the table is full. */
int shard_server_ip_reconnect_allow(shard_server *srv, const shard_client *c,
                                    uint64_t now);

void shard_server_schedule_flush(shard_server *srv, shard_client *c);

/* c leaves the HTTP phase (upgraded, or killed before that): give back its
 * WS_MAX_PENDING slot and its address's WS_IP_MAX_PENDING slot, and resume
 * accepting if the pool was full.  Once per connection. */
void shard_server_http_leave(shard_server *srv, shard_client *c);

/*
 * WS_PROXY_PROTOCOL: decide on the first bytes of a connection flagged
 * CLF_PROXY_WAIT (data/len: everything received so far).  Returns 1 when
 * decided (*used = bytes of PROXY header to drop, maybe 0; the client's
 * address is now the header's source), 0 to wait for more bytes, -1 when
 * the connection was refused and killed (a PROXY header from an untrusted
 * source, a missing or bad header from a trusted one; counted in
 * ws_proxy_rejections_total{reason}).
 */
int shard_server_proxy(shard_server *srv, shard_client *c, const uint8_t *data,
                       size_t len, size_t *used);

/*
 * Drain (SIGUSR1) on or off.  On: the shared SO_REUSEPORT listener
 * (WS_SHARED_ADDR) is closed so the kernel sends new clients to the other
 * shards on that port; WS_ADDR stays open and answers upgrades with 503.
 * Off: the shared listener is bound again.  Returns 0, or -1 if it could
 * not be bound again (logged; the shard keeps serving WS_ADDR).
 */
int shard_server_set_draining(shard_server *srv, int on);

/*
 * WS_IP_MAX_CHANNELS, counted per client address across its connections:
 * take one channel slot for c (0), or -1 when its address holds them all
 * (the caller refuses the subscription), also when the per-address table
 * is full and has no entry for it (fail closed).  release gives back n of the slots c
 * holds (more than it holds are ignored); c->ip_channels counts them.
 */
int shard_server_ip_channel_take(shard_server *srv, shard_client *c);
void shard_server_ip_channel_release(shard_server *srv, shard_client *c, uint32_t n);

#endif
