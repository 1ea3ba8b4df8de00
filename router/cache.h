/*
 * Route cache: token -> set of shard slots, with negative entries (a token
 * no shard holds is cached as an empty set, so it costs no Redis round trip
 * until it is invalidated).  Pure data structure: no I/O, no clock (callers
 * pass now_ms), unit-tested in tests/unit/test_route_cache.c.
 *
 * Bounded: at most `capacity` entries, least-recently-used evicted first.
 * Entries expire after ttl_ms (0 = never) as a safety net; the normal way an
 * entry goes is an invalidation from the odin:routes channel.
 *
 * Fill race.  A lookup is sent to Redis, an invalidation for the same token
 * arrives (on another connection) before the reply: the reply may predate
 * the change.  So a fill carries a ticket taken when the lookup was sent
 * (route_cache_ticket) and route_cache_put refuses to store a token that was
 * invalidated (or a cache that was flushed) after the ticket was taken.  The
 * caller may still use the reply for the batch that asked; it just is not
 * kept.
 *
 * Shard slots are small integers handed out by the router's shard table;
 * the cache stores them opaquely.
 */
#ifndef ODIN_ROUTER_CACHE_H
#define ODIN_ROUTER_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define ROUTE_CACHE_MAX_TOKEN 64u     /* longer tokens are never cached */
#define ROUTE_CACHE_MAX_SHARDS 65535u /* per entry */

typedef struct route_cache route_cache;

typedef struct route_cache_stats {
    uint64_t hits, misses;     /* route_cache_get outcomes */
    uint64_t evictions;        /* LRU evictions on put */
    uint64_t expirations;      /* entries found expired on get */
    uint64_t invalidations;    /* entries removed by route_cache_invalidate */
    uint64_t flushes;
    uint64_t stale_puts;       /* puts refused because of the fill race */
} route_cache_stats;

/* capacity >= 1 entries; ttl_ms 0 = no expiry.  NULL on ENOMEM or capacity 0.
 * All memory is allocated here (entries with more than a few shards keep
 * their list on the heap). */
route_cache *route_cache_new(size_t capacity, uint64_t ttl_ms);
void route_cache_free(route_cache *c);    /* NULL is a no-op */

/*
 * Look a token up.  Returns 1 on a hit with *shards / *n set (n may be 0: a
 * negative entry; *shards then may be NULL), 0 on a miss (absent or
 * expired).  The array stays valid until the next put / invalidate / flush.
 * A hit makes the entry most recently used.
 */
int route_cache_get(route_cache *c, const char *tok, size_t len, uint64_t now_ms,
                    const uint16_t **shards, size_t *n);

/* Current invalidation sequence, to pass to route_cache_put later. */
uint64_t route_cache_ticket(const route_cache *c);

/*
 * Store token -> shards[0..n) (copied; n 0 = negative entry), replacing an
 * existing entry.  Returns 0 if stored, 1 if refused because the token was
 * invalidated / the cache flushed after `ticket` (or too many invalidations
 * happened since to tell), -1 on a bad argument (token empty or longer than
 * ROUTE_CACHE_MAX_TOKEN, n too large) or ENOMEM.
 */
int route_cache_put(route_cache *c, const char *tok, size_t len,
                    const uint16_t *shards, size_t n, uint64_t ticket,
                    uint64_t now_ms);

/* Forget one token (present or not: a concurrent fill must not store it).
 * Returns 1 if an entry was removed, else 0. */
int route_cache_invalidate(route_cache *c, const char *tok, size_t len);

/* Forget everything (connection to Redis lost or re-established). */
void route_cache_flush(route_cache *c);

size_t route_cache_count(const route_cache *c);
size_t route_cache_capacity(const route_cache *c);
const route_cache_stats *route_cache_get_stats(const route_cache *c);

#endif
