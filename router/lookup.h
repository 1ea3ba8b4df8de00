/*
 * Route lookup of one batch: which shard slots each record's token goes to.
 *
 * Per batch (lookup_begin .. lookup_targets), for every token:
 *   - a route cache hit is copied into the batch arena (one uint16_t array
 *     reused batch after batch: no per-record allocation);
 *   - a miss is deduplicated in an open-addressing table (reset by bumping a
 *     generation, not by clearing) and resolved with ONE pipelined round
 *     trip: one SMEMBERS <prefix>route:<token> per distinct missing token,
 *     sent back to back (lookup_send).  Replies fill the cache (with the
 *     fill-race ticket taken when the lookup was sent) and the arena.
 * The round trip is timed by timeout_ms; on timeout the command connection
 * is dropped (redislink_drop) and the lookup ends as failed.  The owner
 * hears the end through callbacks.done, always from a libevent event, never
 * from inside a hiredis callback.
 *
 * The arena is the only one of the router: hits and lookup results live in
 * it, so a route handle (lookup_ref) is an offset + length either way.
 *
 * Everything but lookup_send works without I/O (tests/unit/
 * test_router_lookup.c).  Runs on the loop thread only.
 */
#ifndef ODIN_ROUTER_LOOKUP_H
#define ODIN_ROUTER_LOOKUP_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "router/cache.h"
#include "router/metrics.h"
#include "common/redislink.h"

typedef struct lookup lookup;

#define LOOKUP_STALE 2

/* Route of one record in the current batch: a hit (arena range) or a miss
 * (index in the miss table).  Read it back with lookup_targets. */
typedef struct lookup_ref {
    uint32_t idx;     /* arena offset (hit) or miss index (miss) */
    uint32_t n;       /* slots (hit) */
    uint8_t miss;
} lookup_ref;

typedef struct lookup_callbacks {
    /* The round trip started by lookup_send ended: failed 0 = every reply
     * arrived (misses resolved), 1 = Redis error, connection lost or
     * timeout (the batch should go out in fallback), LOOKUP_STALE = the
     * registry epoch was not the expected one (Redis restarted or was
     * emptied: the answers may miss routes; the cache entries they filled
     * must be flushed and the batch held).  Called once per
     * successful lookup_send, from a libevent callback. */
    void (*done)(int failed, void *arg);
    /* Map a shard id from a route set to its slot.  Returns 0 with *slot
     * set, or -1 to skip the id (table full, bad id). */
    int (*intern)(const char *id, size_t len, uint16_t *slot, void *arg);
    void *arg;
} lookup_callbacks;

typedef struct lookup_opts {
    const char *redis_prefix;  /* borrowed, must outlive the lookup */
    long timeout_ms;           /* REDIS_TIMEOUT_MS */
    size_t max_tokens;         /* records per batch (KAFKA_BATCH_SIZE) */
} lookup_opts;

/*
 * base, cmd, cache and m are borrowed and must outlive the lookup (base and
 * cmd may be NULL in tests: lookup_send then returns -1).  opts and cb are
 * copied.  NULL on ENOMEM.
 */
lookup *lookup_new(struct event_base *base, redislink *cmd, route_cache *cache,
                   router_metrics *m, const lookup_opts *opts,
                   const lookup_callbacks *cb);
/* Pending replies are ignored afterwards only if the connection is freed
 * first: free the redislink (discovery owns it) before the lookup.  NULL is
 * a no-op. */
void lookup_free(lookup *lk);

/* Start a new batch: the arena and the miss table are emptied (earlier
 * lookup_refs become invalid).  Must not be called while a lookup is
 * active. */
void lookup_begin(lookup *lk);

/*
 * Route of token tok[0..len) (borrowed until the batch ends: the miss table
 * keeps the pointer).  A cache hit is copied into the arena; a miss is
 * added (once per distinct token).  Returns 0 with *ref set, or -1 on
 * ENOMEM (arena growth) or more than max_tokens distinct misses.
 */
int lookup_add(lookup *lk, const char *tok, size_t len, uint64_t now_ms, lookup_ref *ref);

/* Distinct missing tokens of the current batch. */
size_t lookup_nmiss(const lookup *lk);

/*
 * Send the pipelined SMEMBERS for every miss.  Returns 0 if sent
 * (callbacks.done follows), -1 if nothing could be sent (no misses, the
 * command connection is down, or hiredis refused the command).
 */
int lookup_send(lookup *lk);

/* Registry epoch the next round trips must find (GET <prefix>epoch is sent
 * after the SMEMBERS; a different value ends the lookup LOOKUP_STALE).
 * NULL or "" disables the check.  Copied. */
void lookup_set_epoch(lookup *lk, const char *epoch);

/* 1 while a round trip is outstanding. */
int lookup_active(const lookup *lk);

/*
 * Resolve miss `i` with the shard ids ids[k][0..lens[k]) (n of them): the
 * slots go to the arena and the cache is filled (subject to the fill-race
 * ticket).  Called by the reply callback; public for tests.  Returns 0, or
 * -1 on ENOMEM / bad index (the miss stays unresolved).
 */
int lookup_resolve(lookup *lk, size_t i, const char *const *ids, const size_t *lens,
                   size_t n);

/* Target slots of a record (valid until the next lookup_add/_resolve/
 * _begin).  An unresolved miss has no targets (*n = 0). */
const uint16_t *lookup_targets(const lookup *lk, lookup_ref ref, size_t *n);

#endif
