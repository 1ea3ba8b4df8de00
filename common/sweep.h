/*
 * Removal of a shard's registration in the cluster-safe key layout
 * (REDIS_CLUSTER_KEYS=1, common/schema.h): what SCHEMA_LUA_CLEAN_SHARD does
 * in one script in the default layout, here as an ordered pipeline on one
 * connection so no command touches two slots:
 *   1. SCHEMA_LUA_SWEEP_BEGIN on the shard's slot: its reverse index (a
 *      'dead' sweep also sets the sweep marker, so the shard cannot write
 *      its lease again until the sweep is over), or -1: nothing to do;
 *   2. SCHEMA_LUA_ROUTE_ONE 'del' per token (route sets before the index),
 *      in chunks of SCHEMA_SWEEP_REFRESH_STEPS, each sent once the previous
 *      one is answered (bounded output; the connection's other users wait
 *      one chunk at most); a 'dead' sweep refreshes its marker
 *      (SCHEMA_LUA_SWEEP_REFRESH) before each chunk after the first;
 *   3. (3 to 5 only once every removal succeeded: Redis would run them
 *      whatever became of the removals, and a shard gone from P shards is
 *      never swept again) SREM P shards <id>;
 *   4. SCHEMA_LUA_SWEEP_END: the swept tokens leave the reverse index,
 *      'force' deletes lease and index, the marker goes;
 *   5. PUBLISH P routes shard:down:<id>.
 * Used by the routers' dead-shard sweep ('dead') and a stopping shard's
 * deregistration ('force').
 */
#ifndef ODIN_COMMON_SWEEP_H
#define ODIN_COMMON_SWEEP_H

#include <hiredis/async.h>

/*
 * Called once per sweep: removed >= 0 is the number of route sets the shard
 * was removed from; -1: nothing done (the lease is alive, or another sweep
 * of this id runs); -2: failed (err: Redis's error text, or "connection
 * lost"; valid during the call only).  May run while the connection is
 * being freed (hiredis answers pending commands with NULL).
 */
typedef void sweep_done_fn(long long removed, const char *err, void *arg);

/*
 * Start a sweep of shard `id` on ac (prefix = REDIS_PREFIX; dead = 1 for a
 * router's sweep of an expired lease, 0 for the shard's own 'force').
 * prefix and id are copied.  0, or -1 (ENOMEM or hiredis refused: done is
 * not called).
 */
int sweep_shard(redisAsyncContext *ac, const char *prefix, const char *id,
                int dead, sweep_done_fn *done, void *arg);

#endif
