/*
 * Redis registration of a shard (docs/contract.md, "Redis schema"; common/schema.h).
 *
 * - Lease: HASH P shard:<id> (instance, endpoint, pid, host, started_at,
 *   connections, tokens, ws_addr, admin_addr, synced) with a TTL of
 *   SHARD_LEASE_TTL, rewritten every TTL/3;
 *   SADD P shards <id>; PUBLISH P routes "shard:up:<id>" when registering.
 * - Routes: the first local subscriber of a token adds the shard to
 *   P route:<token> and the reverse index (EVAL SCHEMA_LUA_ROUTE, which also
 *   publishes the token); the last one leaving removes it.
 * - Claim: on the first connection the lease is written with this
 *   process's random `instance`; another instance's lease is left alone
 *   and looked at again every heartbeat: renewed meanwhile, this process
 *   exits 1 (a live duplicate); gone, the claim succeeds (a crashed
 *   previous run).  pid and host are never consulted.  A previous life's
 *   reverse index is then read with SSCAN (REDIS_CHUNK per page, the next
 *   page once the previous page's removals went out) and its unwanted
 *   tokens removed like any stale route.
 * - Shutdown: the chunked sweep of common/sweep.h in 'force' mode.
 *
 * The registry keeps the desired state per token (want) and what Redis is
 * known to hold (have).  Changes are coalesced (a token that comes and goes
 * before it is sent costs nothing) and at most REDIS_MAX_INFLIGHT route
 * commands are outstanding, whatever the subscribe rate.  While Redis is
 * unreachable clients are still served; on reconnect the lease and every wanted token are written again, and tokens Redis holds
 * for this shard that are no longer wanted are removed.
 *
 * REDIS_CLUSTER_KEYS=1 uses the cluster-safe layout (common/schema.h):
 * hash-tagged shard keys, a batch becomes one reverse-index SADD/SREM plus
 * one SCHEMA_LUA_ROUTE_ONE per token (index first when adding, routes first
 * when removing), the lease write SCHEMA_LUA_LEASE_CLUSTER + SADD P shards +
 * SCHEMA_LUA_EPOCH.  The two layouts differ only in one table of
 * operations in registry.c (route batch, lease write; keys from
 * common/schema.h), chosen once at start; everything else is one path.
 *
 * The connection is reached through shard/registry_redis.h: in production
 * a common/redislink (reconnect with backoff 100 ms .. 2 s, connect timeout
 * REDIS_TIMEOUT, host names resolved off the loop, PING keepalive), in
 * tests/unit/test_registry.c a scripted fake.  hiredis 0.14 has no reply
 * timeouts: replies are timed here with a libevent timer (REDIS_TIMEOUT); a
 * stuck connection is dropped and re-established.
 */
#ifndef ODIN_SHARD_REGISTRY_H
#define ODIN_SHARD_REGISTRY_H

#include <stddef.h>
#include "shard/ctx.h"
#include "shard/registry_redis.h"

typedef struct shard_registry shard_registry;

/* What the lease record advertises about the shard's clients, sampled each
 * time the lease is written. */
typedef struct registry_advert {
    long connections;         /* open WebSocket connections */
    const char *ws_addr;      /* bound WS_ADDR (actual port) */
    const char *admin_addr;   /* bound ADMIN_ADDR, "" when /health is on ws_addr */
} registry_advert;

/* How the registry reaches its owner (shard.c). */
typedef struct registry_callbacks {
    /* Fill a (the strings must stay valid until the next loop pass). */
    void (*advert)(void *ud, registry_advert *a);
    void *ud;
} registry_callbacks;

/* Parse REDIS_URL and start connecting.  cb is copied.  NULL on a bad URL
 * (logged) or ENOMEM. */
shard_registry *shard_registry_new(shard_ctx *ctx, const registry_callbacks *cb);

/* The same on the connection rr (shard/registry_redis.h), which the
 * registry owns from now on (freed by shard_registry_free, or here on
 * failure).  REDIS_URL is not read.  The seam of the unit test, which
 * passes a fake.  NULL on ENOMEM. */
shard_registry *shard_registry_new_with(shard_ctx *ctx,
                                        const registry_callbacks *cb,
                                        registry_redis rr);

/* Free; pending commands are abandoned (no deregistration: call
 * shard_registry_shutdown first for that).  NULL is a no-op. */
void shard_registry_free(shard_registry *r);

/* A token got its first (add = 1) or lost its last (add = 0) local
 * subscriber.  Never blocks; ignored after shutdown started. */
void shard_registry_token(shard_registry *r, const char *tok, size_t len,
                          int add);

int shard_registry_connected(const shard_registry *r);

/* 1 if Redis confirmed that route:<tok> holds this shard (and the
 * connection is up): routers have been told (the route script publishes
 * the token).  Used by reconnect replays to find the live seam. */
int shard_registry_token_routed(const shard_registry *r, const char *tok,
                                size_t len);

/* Tokens whose Redis state is not yet what the shard wants. */
long shard_registry_pending(const shard_registry *r);

/*
 * Deregister (common/sweep.h 'force') and call done(ud) once it is done,
 * after REDIS_TIMEOUT without a step answered, or at once (on the next loop pass) if
 * Redis is not connected.  Later token changes are ignored.
 */
void shard_registry_shutdown(shard_registry *r, void (*done)(void *),
                             void *ud);

#endif
