/*
 * Redis schema shared by shard and router (DESIGN.md "Redis schema").
 * With prefix P (default "odin:"):
 *   P route:<token>       SET of shard ids holding a subscriber of <token>
 *   P shard:<id>          HASH endpoint,pid,host,started_at,connections,
 *                         tokens,ws_addr; TTL lease refreshed by heartbeat
 *   P shard:<id>:tokens   SET reverse index of the shard's tokens
 *   P shards              SET of shard ids that registered and have not been
 *                         cleaned up (lets routers find dead shards' leftovers
 *                         without SCAN; an addition to the DESIGN schema)
 *   P routes              pub/sub channel: a route change publishes the token
 *                         itself; shard events publish "shard:up:<id>" or
 *                         "shard:down:<id>" (':' cannot occur in a token).
 *   P epoch               STRING naming the registry's generation: created
 *                         (if absent) with a random value by every lease
 *                         write and by routers' discovery.  A Redis that
 *                         restarted empty or was flushed has none or a new
 *                         one, which is how routers notice (docs/
 *                         reliability.md).  A lease's `synced` field is the
 *                         epoch under which the shard last had every route
 *                         confirmed; its `nonce` names the running instance.
 * All changes are atomic (the Lua scripts below, run with EVAL).
 */
#ifndef ODIN_COMMON_SCHEMA_H
#define ODIN_COMMON_SCHEMA_H

#define SCHEMA_DEFAULT_PREFIX "odin:"
#define SCHEMA_EVENT_SHARD_UP "shard:up:"
#define SCHEMA_EVENT_SHARD_DOWN "shard:down:"

/*
 * Add (or remove) shard ARGV[2] for token ARGV[3]:
 *   KEYS[1] = P route:<token>, KEYS[2] = P shard:<id>:tokens,
 *   KEYS[3] = P routes (channel), ARGV[1] = "add" | "del", ARGV[2] = id,
 *   ARGV[3] = token.  Publishes the token only if the set changed.
 *   Returns 1 if changed, else 0.
 */
#define SCHEMA_LUA_ROUTE \
    "local n\n" \
    "if ARGV[1] == 'add' then\n" \
    "  n = redis.call('SADD', KEYS[1], ARGV[2])\n" \
    "  redis.call('SADD', KEYS[2], ARGV[3])\n" \
    "else\n" \
    "  n = redis.call('SREM', KEYS[1], ARGV[2])\n" \
    "  redis.call('SREM', KEYS[2], ARGV[3])\n" \
    "end\n" \
    "if n == 1 then redis.call('PUBLISH', KEYS[3], ARGV[3]) end\n" \
    "return n\n"

/*
 * The same for a batch of tokens in one call (the shard's registration
 * path): KEYS[1] = the shard's reverse index, KEYS[2] = routes channel;
 * ARGV[1] = 'add' | 'del', ARGV[2] = shard id, ARGV[3] = route key prefix
 * ("<prefix>route:"), ARGV[4..] = tokens.  Each token whose route set
 * changed is published.  Returns the number of route sets changed.  Sent
 * with EVALSHA (SHA-1 of this text; EVAL again after NOSCRIPT).
 */
#define SCHEMA_LUA_ROUTE_BATCH \
    "local add, id, rp = ARGV[1] == 'add', ARGV[2], ARGV[3]\n" \
    "local changed = 0\n" \
    "for i = 4, #ARGV do\n" \
    "  local t, n = ARGV[i]\n" \
    "  if add then\n" \
    "    n = redis.call('SADD', rp .. t, id)\n" \
    "    redis.call('SADD', KEYS[1], t)\n" \
    "  else\n" \
    "    n = redis.call('SREM', rp .. t, id)\n" \
    "    redis.call('SREM', KEYS[1], t)\n" \
    "  end\n" \
    "  if n == 1 then redis.call('PUBLISH', KEYS[2], t); changed = changed + 1 end\n" \
    "end\n" \
    "return changed\n"

/*
 * Remove every route of shard ARGV[1] through its reverse index, delete its
 * lease and reverse index, drop it from the registry, publish each token and
 * "shard:down:<id>".  ARGV[2] = prefix.  ARGV[3] = "force" to clean even if
 * the lease exists (own deregistration / restart with the same id), "dead"
 * to clean only when the lease has expired (routers' dead-shard sweep).
 * Returns the number of routes removed, or -1 if the lease is alive in
 * "dead" mode.
 */
#define SCHEMA_LUA_CLEAN_SHARD \
    "local p, id = ARGV[2], ARGV[1]\n" \
    "local lease = p .. 'shard:' .. id\n" \
    "if ARGV[3] == 'dead' and redis.call('EXISTS', lease) == 1 then return -1 end\n" \
    "local rev = lease .. ':tokens'\n" \
    "local toks = redis.call('SMEMBERS', rev)\n" \
    "local n = 0\n" \
    "for _, t in ipairs(toks) do\n" \
    "  n = n + redis.call('SREM', p .. 'route:' .. t, id)\n" \
    "  redis.call('PUBLISH', p .. 'routes', t)\n" \
    "end\n" \
    "redis.call('DEL', rev, lease)\n" \
    "redis.call('SREM', p .. 'shards', id)\n" \
    "redis.call('PUBLISH', p .. 'routes', 'shard:down:' .. id)\n" \
    "return n\n"

/* SHA-1 of a script as Redis names it for EVALSHA: 40 lowercase hex
 * digits and a NUL into out (OpenSSL). */
void schema_sha1_hex(const char *script, char out[41]);

/* 32 random hex digits and a NUL (getrandom; a clock/pid mix if that
 * fails): the random part of a registry epoch and of a shard's instance
 * nonce. */
void schema_random_hex(char out[33]);

/*
 * Read the registry epoch, creating it if absent: KEYS[1] = P epoch,
 * ARGV[1] = a fresh random value.  An epoch is "<unix seconds>:<random>"
 * (Redis's clock), so its age is known.  Returns {created (0|1), epoch,
 * Redis TIME seconds, microseconds}.
 */
#define SCHEMA_LUA_EPOCH \
    "if redis.replicate_commands then redis.replicate_commands() end\n" \
    "local t = redis.call('TIME')\n" \
    "local e = redis.call('GET', KEYS[1])\n" \
    "if e then return {0, e, t[1], t[2]} end\n" \
    "e = t[1] .. ':' .. ARGV[1]\n" \
    "redis.call('SET', KEYS[1], e)\n" \
    "return {1, e, t[1], t[2]}\n"

/*
 * Write a shard's lease atomically, refusing another instance's live lease.
 *   KEYS[1] = P shard:<id>, KEYS[2] = P shards, KEYS[3] = P epoch
 *   ARGV[1] = instance nonce, ARGV[2] = TTL ms, ARGV[3] = id,
 *   ARGV[4] = a fresh epoch value (used if the epoch is absent),
 *   ARGV[5] = "claim" (first registration: the leftovers of a previous life
 *   with this id are removed first, as SCHEMA_LUA_CLEAN_SHARD "force"),
 *   "takeover" (claim even over another nonce: our own previous life) or
 *   "renew"; ARGV[6] = prefix; ARGV[7..] = field, value pairs.
 * Returns {-1, host, pid} if the lease belongs to another live instance
 * (nothing written), else {lease existed before (0|1), epoch}.
 */
#define SCHEMA_LUA_LEASE \
    "if redis.replicate_commands then redis.replicate_commands() end\n" \
    "local lease, id, p = KEYS[1], ARGV[3], ARGV[6]\n" \
    "local cur = redis.call('HGET', lease, 'nonce')\n" \
    "if cur and cur ~= ARGV[1] and ARGV[5] ~= 'takeover' then\n" \
    "  return {-1, redis.call('HGET', lease, 'host') or '',\n" \
    "          redis.call('HGET', lease, 'pid') or ''}\n" \
    "end\n" \
    "local existed = redis.call('EXISTS', lease)\n" \
    "if ARGV[5] ~= 'renew' then\n" \
    "  local rev = lease .. ':tokens'\n" \
    "  for _, t in ipairs(redis.call('SMEMBERS', rev)) do\n" \
    "    if redis.call('SREM', p .. 'route:' .. t, id) == 1 then\n" \
    "      redis.call('PUBLISH', p .. 'routes', t)\n" \
    "    end\n" \
    "  end\n" \
    "  redis.call('DEL', rev, lease)\n" \
    "end\n" \
    "redis.call('HSET', lease, 'nonce', ARGV[1], unpack(ARGV, 7))\n" \
    "redis.call('PEXPIRE', lease, ARGV[2])\n" \
    "redis.call('SADD', KEYS[2], id)\n" \
    "local e = redis.call('GET', KEYS[3])\n" \
    "if not e then\n" \
    "  e = redis.call('TIME')[1] .. ':' .. ARGV[4]\n" \
    "  redis.call('SET', KEYS[3], e)\n" \
    "end\n" \
    "return {existed, e}\n"

/*
 * Cluster-safe layout (REDIS_CLUSTER_KEYS=1; docs/scaling.md "Redis
 * Cluster").  The shard keys carry a hash tag so each shard's keys share one
 * slot:
 *   P shard:{<id>}         lease HASH
 *   P shard:{<id>}:tokens  reverse index SET
 *   P shard:{<id>}:sweep   STRING: a router's dead-shard sweep of <id> is in
 *                          progress (its value names the sweep; TTL
 *                          SCHEMA_SWEEP_TTL_MS); lease writes wait for it
 * P route:<token>, P shards, P epoch and the channel P routes keep their
 * names.  No script touches keys of two slots: the scripts below start with
 * "#!lua" (Redis 7: keys outside the declared keys' slot are refused even on
 * a one-node cluster), a route set is changed by a one-key script per
 * token, the reverse index by a plain SADD / SREM, P shards by SADD / SREM
 * and P epoch by SCHEMA_LUA_EPOCH (one key).  The channel goes in ARGV
 * (PUBLISH has no slot).  What is atomic in the default layout becomes an
 * ordered pipeline on one connection; the order leaves no route without its
 * reverse-index entry if the writer dies halfway: reverse index first when
 * adding, route sets first when removing.
 */
/*
 * The marker lives SCHEMA_SWEEP_TTL_MS and the sweep refreshes it
 * (SCHEMA_LUA_SWEEP_REFRESH) between its chunks of
 * SCHEMA_SWEEP_REFRESH_STEPS route removals (a chunk goes out once the
 * previous one is answered): a router that dies mid-sweep holds the shard's
 * lease writes back for at most SCHEMA_SWEEP_TTL_MS, however large the
 * reverse index, while a live sweep keeps its marker as long as Redis
 * runs 256 one-key scripts within that time.
 */
#define SCHEMA_SWEEP_TTL_MS 5000
#define SCHEMA_SWEEP_REFRESH_STEPS 256

/*
 * Name of shard `id`'s key `kind` ("" lease, ":tokens" reverse index,
 * ":sweep" sweep marker): "<prefix>shard:<id><kind>", or with cluster
 * keys "<prefix>shard:{<id>}<kind>".  Returns a malloc'd string the caller
 * frees, NULL on ENOMEM.
 */
char *schema_shard_key(const char *prefix, int cluster, const char *id,
                       const char *kind);

/*
 * Cluster layout: add (or remove) shard ARGV[2] to one route set.
 *   KEYS[1] = P route:<token>; ARGV[1] = 'add' | 'del', ARGV[2] = id,
 *   ARGV[3] = channel P routes, ARGV[4] = token.
 * Publishes the token if the set changed; returns 1 if it did, else 0.
 */
#define SCHEMA_LUA_ROUTE_ONE \
    "#!lua\n" \
    "local n\n" \
    "if ARGV[1] == 'add' then\n" \
    "  n = redis.call('SADD', KEYS[1], ARGV[2])\n" \
    "else\n" \
    "  n = redis.call('SREM', KEYS[1], ARGV[2])\n" \
    "end\n" \
    "if n == 1 then redis.call('PUBLISH', ARGV[3], ARGV[4]) end\n" \
    "return n\n"

/*
 * Cluster layout: SCHEMA_LUA_LEASE on the shard's slot only.
 *   KEYS[1] = P shard:{<id>}, KEYS[2] = P shard:{<id>}:sweep;
 *   ARGV[1] = nonce, ARGV[2] = TTL ms, ARGV[3] = 'claim' | 'takeover' |
 *   'renew', ARGV[4..] = field, value pairs.
 * Returns {-2} while a sweep of this id runs (nothing written: retry), {-1,
 * host, pid} if another live instance holds the lease, else {lease existed
 * before (0|1)}.  A claim starts a fresh hash but leaves the reverse index:
 * the shard removes a previous life's leftovers route by route (resync),
 * and P shards and P epoch are written by the commands pipelined after it.
 */
#define SCHEMA_LUA_LEASE_CLUSTER \
    "#!lua\n" \
    "local lease = KEYS[1]\n" \
    "if redis.call('EXISTS', KEYS[2]) == 1 then return {-2} end\n" \
    "local cur = redis.call('HGET', lease, 'nonce')\n" \
    "if cur and cur ~= ARGV[1] and ARGV[3] ~= 'takeover' then\n" \
    "  return {-1, redis.call('HGET', lease, 'host') or '',\n" \
    "          redis.call('HGET', lease, 'pid') or ''}\n" \
    "end\n" \
    "local existed = redis.call('EXISTS', lease)\n" \
    "if ARGV[3] ~= 'renew' then redis.call('DEL', lease) end\n" \
    "redis.call('HSET', lease, 'nonce', ARGV[1], unpack(ARGV, 4))\n" \
    "redis.call('PEXPIRE', lease, ARGV[2])\n" \
    "return {existed}\n"

/*
 * Cluster layout, first step of SCHEMA_LUA_CLEAN_SHARD (common/sweep.h):
 *   KEYS[1] = lease, KEYS[2] = reverse index, KEYS[3] = sweep marker;
 *   ARGV[1] = 'dead' | 'force', ARGV[2] = this sweep's name, ARGV[3] = TTL
 *   ms of the marker.
 * 'dead': returns -1 if the lease exists or another sweep runs; else sets
 * the marker (lease writes now wait) and returns the reverse index.
 * 'force' (the shard itself, stopping): returns the reverse index.
 */
#define SCHEMA_LUA_SWEEP_BEGIN \
    "#!lua\n" \
    "if ARGV[1] == 'dead' then\n" \
    "  if redis.call('EXISTS', KEYS[1]) == 1 or\n" \
    "     redis.call('EXISTS', KEYS[3]) == 1 then return -1 end\n" \
    "  redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])\n" \
    "end\n" \
    "return redis.call('SMEMBERS', KEYS[2])\n"

/*
 * Cluster layout, between the route removals of a 'dead' sweep: KEYS[1] =
 * the sweep marker; ARGV[1] = this sweep's name, ARGV[2] = TTL ms.
 * Extends the marker if it is still this sweep's (returns 1), else leaves
 * it (returns 0: it expired, and SCHEMA_LUA_SWEEP_END will say so).
 */
#define SCHEMA_LUA_SWEEP_REFRESH \
    "#!lua\n" \
    "-- sweep refresh\n" \
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n" \
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"

/*
 * Cluster layout, last step (after the route sets and P shards): drop the
 * swept tokens from the reverse index; 'force' deletes lease and index,
 * 'dead' only the marker, and only its own (ARGV[2]).  KEYS as
 * SCHEMA_LUA_SWEEP_BEGIN; ARGV[1] = mode, ARGV[2] = sweep name, ARGV[3..]
 * = the tokens swept.  Returns 1, or -1 if the marker was not ours any more
 * (it expired: nothing deleted).
 */
#define SCHEMA_LUA_SWEEP_END \
    "#!lua\n" \
    "if ARGV[1] == 'dead' and redis.call('GET', KEYS[3]) ~= ARGV[2] then\n" \
    "  return -1\n" \
    "end\n" \
    "for i = 3, #ARGV do redis.call('SREM', KEYS[2], ARGV[i]) end\n" \
    "if ARGV[1] == 'force' then redis.call('DEL', KEYS[1], KEYS[2]) end\n" \
    "redis.call('DEL', KEYS[3])\n" \
    "return 1\n"

#endif
