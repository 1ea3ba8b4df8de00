/*
 * The router's view of the shard registry in Redis:
 *
 *   - the odin:routes subscription (own connection, `sub`): a token payload
 *     invalidates that token's cached route; shard:up:<id> runs discovery
 *     now; shard:down:<id> reports the shard dead at once and runs
 *     discovery.  Every cached route is to be flushed whenever the
 *     subscription is (re)established or lost, and whenever the command
 *     connection connects or drops: while not subscribed nobody can know
 *     what was missed.
 *   - lease discovery (command connection, `cmd`), every
 *     DISCOVERY_INTERVAL_MS and on demand: SMEMBERS <prefix>shards, then one
 *     pipelined HGETALL <prefix>shard:<id> per member.  The result goes to
 *     the owner as a list (live with endpoint / lease expired / unknown);
 *     for every expired lease a dead-shard sweep is started (common/sweep.h
 *     'dead': routes removed through the reverse index in chunks of
 *     REDIS_CHUNK tokens, each step sent once the previous is answered;
 *     idempotent, only if the lease is still absent, and a sweep that stops
 *     halfway is finished by the next one).  With REDIS_CLUSTER_KEYS the
 *     lease is <prefix>shard:{<id>} (no script touches two slots).
 *
 * Owns both Redis connections (redislink).  The command connection is
 * lent to the route lookup (discovery_cmd).  Reports to the owner only
 * through callbacks, from libevent callbacks or hiredis reply callbacks of
 * these connections (the owner must not free the discovery from them).
 */
#ifndef ODIN_ROUTER_DISCOVERY_H
#define ODIN_ROUTER_DISCOVERY_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "router/config.h"
#include "router/metrics.h"
#include "common/redislink.h"

typedef struct discovery discovery;

enum discovery_lease {
    DISCOVERY_LEASE_LIVE = 0,    /* lease hash present */
    DISCOVERY_LEASE_EXPIRED,     /* registered, no lease hash: dead */
    DISCOVERY_LEASE_UNKNOWN      /* Redis answered oddly: leave it as it is */
};

/* One member of <prefix>shards at the end of a discovery round. */
typedef struct discovery_shard {
    const char *id;
    const char *endpoint;        /* from the lease; NULL if none */
    const char *synced;          /* lease field `synced`; NULL if absent */
    enum discovery_lease lease;
    int keep;                    /* set by the owner: an expired lease whose
                                    routes must not be swept yet (grace) */
} discovery_shard;

typedef struct discovery_callbacks {
    /* Every cached route may be stale: forget them all. */
    void (*flush)(void *arg);
    /* One token's route set changed. */
    void (*invalidate)(const char *tok, size_t len, void *arg);
    /* shard:down:<id> was published: stop sending to it now. */
    void (*shard_down)(const char *id, size_t len, void *arg);
    /* A discovery round finished: list[0..n) is every registered shard
     * (strings valid during the call only).  A shard known to the owner
     * and not in the list is not registered any more.  The owner sets
     * list[i].keep for an expired lease it still waits for; the others'
     * routes are swept. */
    void (*shards)(discovery_shard *list, size_t n, void *arg);
    /* The command connection went down: no lookups or discovery until it
     * is back (flush is called too). */
    void (*cmd_down)(void *arg);
    void *arg;
} discovery_callbacks;

/*
 * base, cfg (REDIS_URL, REDIS_PREFIX, timeouts, DISCOVERY_INTERVAL_MS) and m
 * (invalidations, discoveries, shards_cleaned, redis_reconnects are counted
 * there) are borrowed and must outlive the discovery; cb is copied.
 * Nothing connects until discovery_start.  NULL on ENOMEM.
 */
discovery *discovery_new(struct event_base *base, const router_config *cfg,
                         router_metrics *m, const discovery_callbacks *cb);
/* Resolve Redis host names with `dns` (owned by the caller, outlives d). */
void discovery_set_dns(discovery *d, struct evdns_base *dns);

/* Connect both connections and start the discovery timer. */
void discovery_start(discovery *d);
/* Disconnects (pending replies are answered NULL first, so a lookup
 * borrowing discovery_cmd must still exist) and frees.  NULL is a no-op. */
void discovery_free(discovery *d);

/* The command connection, for the route lookup (borrowed). */
redislink *discovery_cmd(discovery *d);

/* 1 if the command connection is up. */
int discovery_cmd_connected(const discovery *d);
/* 1 if SUBSCRIBE odin:routes is confirmed. */
int discovery_subscribed(const discovery *d);
/* 1 if targeted dispatch may use the cache: connected and subscribed. */
int discovery_ready(const discovery *d);

/*
 * 1 if a token without a route can be trusted to have no subscriber
 * (docs/reliability.md): ready, a round completed since the command
 * connection (re)connected, the registry epoch is the one known (or a reset
 * has settled: every shard live before it re-registered with its routes
 * confirmed, or the epoch is ROUTER_SETTLE_MS old), and every live shard
 * confirmed its routes under the current epoch.  Rounds also read (creating
 * it if absent) <prefix>epoch.
 */
int discovery_trusted(const discovery *d);
/* The registry epoch of the last round ("" before the first one). */
const char *discovery_epoch(const discovery *d);
/* A lookup found another epoch: untrusted until the next round judges. */
void discovery_distrust(discovery *d);

/* Run a discovery round soon (from a zero-delay event); a round already in
 * flight is followed by another one. */
void discovery_kick(discovery *d);

/* Handle one odin:routes message payload (called by the subscription;
 * public for tests). */
void discovery_handle_message(discovery *d, const char *p, size_t n);

#endif
