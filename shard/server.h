/*
 * Client-facing server (shard/server.c): TCP listeners on WS_ADDR (and
 * WS_SHARED_ADDR), accepted through net_acceptor (EMFILE back-off,
 * common/net.h), the HTTP phase (/ws upgrade, /health, /metrics), the
 * per-IP limits (shard/iptable.h), the PROXY protocol, the /health and
 * /metrics gate and the ADMIN_ADDR listener (shard/admin.h, the admin API
 * in shard/adminsrv.h; ADMIN_RATE, ADMIN_ALLOW).
 *
 * The server owns the client pool (shard/client.h) and is its client_ops;
 * the fan-out reaches the clients through shard_server_fanout_ops.
 * Opaque; loop thread only.  Tests build one without listeners
 * (shard_server_new, then shard_server_accept with fake connections:
 * tests/unit/test_server.c).
 */
#ifndef ODIN_SHARD_SERVER_H
#define ODIN_SHARD_SERVER_H

#include <stdint.h>
#include <sys/socket.h>
#include "shard/client.h"
#include "shard/ctx.h"
#include "shard/fanout.h"

typedef struct shard_server shard_server;

/* The server and its client pool, not listening yet; io: the clients'
 * socket calls (NULL: the system calls).  NULL on ENOMEM (logged). */
shard_server *shard_server_new(shard_ctx *ctx, const client_io *io);
/* Bind WS_ADDR (and WS_SHARED_ADDR, ADMIN_ADDR) and start the timers.
 * 0, or -1 (logged). */
int shard_server_listen(shard_server *srv);
void shard_server_free(shard_server *srv);

/* A connection the listener accepted (fd non-blocking): admitted in the
 * HTTP phase, or refused (WS_MAX_PENDING, WS_IP_MAX_PENDING, a full
 * per-IP table, stopping) and closed. */
void shard_server_accept(shard_server *srv, int fd, const struct sockaddr *sa,
                         socklen_t salen);

/* The clients (the admin API walks them; tests look at them). */
client_pool *shard_server_clients(shard_server *srv);

/* What /health and /metrics report of the server. */
typedef struct shard_server_gauges {
    long pending;          /* HTTP phase */
    long connections;      /* open WebSocket connections */
    long closing;
    long queue_bytes;
    long ip_table_entries;
    /* the clients' parser set (shard/ws.h ws_parser_set) */
    long parser_contexts;  /* wslay contexts alive */
    long partial_bytes;    /* charged against WS_PARTIAL_BUDGET */
    uint64_t inflated;     /* permessage-deflate messages inflated */
    uint64_t inflate_refused;
} shard_server_gauges;
void shard_server_gauges_get(const shard_server *srv, shard_server_gauges *g);

/* Open WebSocket connections; the bound WS_ADDR ("" before listening); the
 * bound ADMIN_ADDR or "" when there is no admin listener (the strings live
 * as long as srv). */
long shard_server_connections(const shard_server *srv);
const char *shard_server_ws_addr(const shard_server *srv);
const char *shard_server_admin_addr(const shard_server *srv);

/* The ops through which the fan-out (shard/fanout.h) reaches srv's
 * clients; their ud is srv. */
void shard_server_fanout_ops(shard_server *srv, fanout_ops *ops);

/* Shutdown: stop listening, close every client with 1001; call cb once no
 * client is left. */
void shard_server_shutdown(shard_server *srv, void (*cb)(void *), void *ud);

/* Take one reconnect from the RESUME_IP_RATE bucket of the peer's address
 * (the per-address table of WS_IP_RATE): 1 allowed, 0 over the rate or the
 * table is full (fail closed). */
int shard_server_ip_reconnect_allow(shard_server *srv, const client_peer *peer,
                                    uint64_t now);

/*
 * Drain (SIGUSR1) on or off.  On: the shared SO_REUSEPORT listener
 * (WS_SHARED_ADDR) is closed so the kernel sends new clients to the other
 * shards on that port; WS_ADDR stays open and answers upgrades with 503.
 * Off: the shared listener is bound again.  Returns 0, or -1 if it could
 * not be bound again (logged; the shard keeps serving WS_ADDR).
 */
int shard_server_set_draining(shard_server *srv, int on);

#endif
