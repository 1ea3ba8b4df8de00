/*
 * Removal of a shard's registration, in chunks, in both key layouts
 * (common/schema.h): the routers' dead-shard sweep ('dead') and a stopping
 * shard's deregistration ('force').  No step does more than REDIS_CHUNK
 * tokens' work in Redis, so Redis is never blocked for long whatever the
 * size of the reverse index, and the sweeper holds one chunk in memory.
 *   1. BEGIN (SCHEMA_LUA_SWEEP_BEGIN) on the shard's keys: a 'dead' sweep
 *      gives up (-1) if the lease exists or another sweep runs, else sets
 *      the sweep marker, so the shard cannot write its lease again until
 *      the sweep is over (or the marker expires);
 *   2. NEXT (SCHEMA_LUA_SWEEP_NEXT): extends the marker, drops the previous
 *      chunk from the reverse index and returns up to `chunk` more tokens;
 *   3. the chunk's route removals, the one step where the layouts differ:
 *
 *        layout    route removals of one chunk
 *        default   one SCHEMA_LUA_ROUTE_BATCH 'del' (routes, index, PUBLISH)
 *        cluster   one SCHEMA_LUA_ROUTE_ONE 'del' per token, pipelined
 *
 *      then 2 again, once every reply is in, until the index is empty; a
 *      route set always leaves before its token leaves the index, so a
 *      sweep that stops halfway is finished by the next one;
 *   4. (4 to 6 only once every removal succeeded: a shard gone from
 *      P shards with routes left would never be swept again)
 *      SREM P shards <id>;
 *   5. END (SCHEMA_LUA_SWEEP_END): 'force' deletes lease and index, the
 *      marker goes;
 *   6. PUBLISH P routes shard:down:<id>.
 * Each step goes out once the previous one is answered: the connection's
 * other users (a router's lookups) wait one chunk at most.
 */
#ifndef ODIN_COMMON_SWEEP_H
#define ODIN_COMMON_SWEEP_H

#include <stddef.h>
#include <hiredis/async.h>

/*
 * Called once per sweep: removed >= 0 is the number of route sets the shard
 * was removed from; -1: nothing done (the lease is alive, or another sweep
 * of this id runs); -2: failed (err: Redis's error text, or "connection
 * lost"; valid during the call only).  May run while the connection is
 * being freed (hiredis answers pending commands with NULL).
 */
typedef void sweep_done_fn(long long removed, const char *err, void *arg);

/* What a sweep needs to know of its settings; copied by sweep_shard. */
typedef struct sweep_opts {
    const char *prefix;      /* REDIS_PREFIX */
    int cluster;             /* REDIS_CLUSTER_KEYS */
    size_t chunk;            /* REDIS_CHUNK (clamped to 1..SCHEMA_CHUNK_MAX) */
    int dead;                /* 1: a router's sweep of an expired lease,
                              * 0: the shard's own 'force' */
    void (*step)(void *arg); /* optional: called with done's arg after every
                              * reply but the last (the sweep progresses) */
} sweep_opts;

/*
 * Start a sweep of shard `id` on ac.  opts' strings and id are copied.
 * 0, or -1 (ENOMEM or hiredis refused: done is not called).
 */
int sweep_shard(redisAsyncContext *ac, const sweep_opts *opts, const char *id,
                sweep_done_fn *done, void *arg);

#endif
