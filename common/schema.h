/*
 * Redis schema shared by shard and router (docs/contract.md, "Redis schema").
 * With prefix P (default "odin:"):
 *   P route:<token>       SET of shard ids holding a subscriber of <token>
 *   P shard:<id>          HASH instance,endpoint,pid,host,started_at,
 *                         connections,tokens,ws_addr,admin_addr,synced;
 *                         TTL lease refreshed by heartbeat
 *   P shard:<id>:tokens   SET reverse index of the shard's tokens
 *   P shard:<id>:sweep    STRING, a router's dead-shard sweep of <id> runs
 *                         (below; lease writes wait for it)
 *   P shards              SET of shard ids that registered and have not been
 *                         cleaned up (lets routers find dead shards' leftovers
 *                         without SCAN; an addition to the original schema)
 *   P router:<id>         STRING, a router's Kafka member id (only with
 *                         KAFKA_EVICT_PREVIOUS; router/leavegroup.h)
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
 *                         confirmed; its `instance` (random, 128 bits)
 *                         names the running process.
 * All changes are atomic (the Lua scripts below, run with EVAL).
 */
#ifndef ODIN_COMMON_SCHEMA_H
#define ODIN_COMMON_SCHEMA_H

#include <stddef.h>

#include "common/buf.h"

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

/* SHA-1 of a script as Redis names it for EVALSHA: 40 lowercase hex
 * digits and a NUL into out (OpenSSL). */
void schema_sha1_hex(const char *script, char out[41]);

/* 32 random hex digits and a NUL (getrandom; a clock/pid mix if that
 * fails): the random part of a registry epoch and of a shard's instance
 * id. */
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
 *   KEYS[1] = P shard:<id>, KEYS[2] = P shards, KEYS[3] = P epoch,
 *   KEYS[4] = P shard:<id>:sweep (the sweep marker, common/sweep.h)
 *   ARGV[1] = instance id, ARGV[2] = TTL ms, ARGV[3] = id,
 *   ARGV[4] = a fresh epoch value (used if the epoch is absent),
 *   ARGV[5] = "claim" (first registration: a fresh hash; a previous life's
 *   reverse index is left to the shard's paged resync) or "renew";
 *   ARGV[6..] = field, value pairs.
 * Returns {-2} while a router's sweep of this id runs (nothing written:
 * retry), {-1, host, pid, PTTL of that lease} if the lease belongs to
 * another instance (nothing written), else {lease existed before (0|1),
 * epoch}.  Constant work whatever the size of the reverse index.
 */
#define SCHEMA_LUA_LEASE \
    "if redis.replicate_commands then redis.replicate_commands() end\n" \
    "local lease, id = KEYS[1], ARGV[3]\n" \
    "if redis.call('EXISTS', KEYS[4]) == 1 then return {-2} end\n" \
    "local cur = redis.call('HGET', lease, 'instance')\n" \
    "if cur and cur ~= ARGV[1] then\n" \
    "  return {-1, redis.call('HGET', lease, 'host') or '',\n" \
    "          redis.call('HGET', lease, 'pid') or '', redis.call('PTTL', lease)}\n" \
    "end\n" \
    "local existed = redis.call('EXISTS', lease)\n" \
    "if ARGV[5] ~= 'renew' then redis.call('DEL', lease) end\n" \
    "redis.call('HSET', lease, 'instance', ARGV[1], unpack(ARGV, 6))\n" \
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
 *   P shard:{<id>}:sweep   the sweep marker (below)
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
 * P shard:<id>:sweep (both layouts; P shard:{<id>}:sweep in the cluster
 * one): STRING, a router's dead-shard sweep of <id> is in progress (its
 * value names the sweep); lease writes wait for it.  It lives
 * SCHEMA_SWEEP_TTL_MS and every chunk of the sweep (SCHEMA_LUA_SWEEP_NEXT)
 * extends it: a router that dies mid-sweep holds the shard's lease writes
 * back for at most SCHEMA_SWEEP_TTL_MS, however large the reverse index.
 */
#define SCHEMA_SWEEP_TTL_MS 5000

/*
 * Every Redis key and channel name of the schema is built here, and only
 * here (router, shard, common/sweep.c and odin-ctl call these; none writes
 * a key name of its own).  Each returns a malloc'd, NUL-terminated string
 * the caller frees, NULL on ENOMEM.
 *
 * Name of shard `id`'s key `kind` (SCHEMA_SHARD_LEASE, SCHEMA_SHARD_TOKENS,
 * SCHEMA_SHARD_SWEEP): "<prefix>shard:<id><kind>", or with cluster keys
 * "<prefix>shard:{<id>}<kind>".  schema_lease_key / schema_tokens_key /
 * schema_sweep_key name the kinds.
 */
#define SCHEMA_SHARD_LEASE  ""
#define SCHEMA_SHARD_TOKENS ":tokens"
#define SCHEMA_SHARD_SWEEP  ":sweep"
char *schema_shard_key(const char *prefix, int cluster, const char *id,
                       const char *kind);
char *schema_lease_key(const char *prefix, int cluster, const char *id);
char *schema_tokens_key(const char *prefix, int cluster, const char *id);
char *schema_sweep_key(const char *prefix, int cluster, const char *id);

/* P route:<token> (both layouts), token a C string (odin-ctl). */
char *schema_route_key(const char *prefix, const char *token);
/* "P route:": what a route key starts with (SCHEMA_LUA_ROUTE_BATCH's
 * ARGV[3]; binary-safe keys are this followed by the token's bytes, see
 * schema_route_key_buf). */
char *schema_route_prefix(const char *prefix);
/* P route:<token> for token[0..len) (binary-safe) in the caller's scratch
 * *b (reset first; b->len is the key length without the NUL).  Returns
 * b->data, valid until *b next changes, or NULL on ENOMEM.  The router's
 * per-batch lookups: no allocation once *b has grown. */
const char *schema_route_key_buf(buf *b, const char *prefix, const char *token,
                                 size_t len);
char *schema_shards_key(const char *prefix);          /* P shards */
char *schema_epoch_key(const char *prefix);           /* P epoch */
char *schema_routes_channel(const char *prefix);      /* P routes (pub/sub) */
/* P router:<router_id>: the Kafka member id a router records, only with
 * KAFKA_EVICT_PREVIOUS (router/leavegroup.h). */
char *schema_router_key(const char *prefix, const char *router_id);

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
 *   ARGV[1] = instance id, ARGV[2] = TTL ms, ARGV[3] = 'claim' | 'renew',
 *   ARGV[4..] = field, value pairs.
 * Returns as SCHEMA_LUA_LEASE but {lease existed before (0|1)} on success:
 * P shards and P epoch are written by the commands pipelined after it.
 */
#define SCHEMA_LUA_LEASE_CLUSTER \
    "#!lua\n" \
    "local lease = KEYS[1]\n" \
    "if redis.call('EXISTS', KEYS[2]) == 1 then return {-2} end\n" \
    "local cur = redis.call('HGET', lease, 'instance')\n" \
    "if cur and cur ~= ARGV[1] then\n" \
    "  return {-1, redis.call('HGET', lease, 'host') or '',\n" \
    "          redis.call('HGET', lease, 'pid') or '', redis.call('PTTL', lease)}\n" \
    "end\n" \
    "local existed = redis.call('EXISTS', lease)\n" \
    "if ARGV[3] ~= 'renew' then redis.call('DEL', lease) end\n" \
    "redis.call('HSET', lease, 'instance', ARGV[1], unpack(ARGV, 4))\n" \
    "redis.call('PEXPIRE', lease, ARGV[2])\n" \
    "return {existed}\n"

/*
 * The sweep of a shard's registration (common/sweep.h), the same steps in
 * both layouts; each script touches the shard's own keys only (one slot
 * in the cluster layout, where it is sent with the "#!lua" line that
 * SCHEMA_LUA_CLUSTER adds).  Each does work bounded by REDIS_CHUNK tokens.
 *
 * BEGIN: KEYS[1] = lease, KEYS[2] = reverse index, KEYS[3] = sweep marker;
 * ARGV[1] = 'dead' | 'force', ARGV[2] = this sweep's name, ARGV[3] = TTL
 * ms of the marker.  'dead': returns -1 if the lease exists or another
 * sweep runs; else sets the marker (lease writes now wait: a returning
 * shard's claim cannot race the sweep) and returns 1.  'force' (the shard
 * itself, stopping): returns 1.
 */
#define SCHEMA_LUA_SWEEP_BEGIN_BODY \
    "if ARGV[1] == 'dead' then\n" \
    "  if redis.call('EXISTS', KEYS[1]) == 1 or\n" \
    "     redis.call('EXISTS', KEYS[3]) == 1 then return -1 end\n" \
    "  redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])\n" \
    "end\n" \
    "return 1\n"

/*
 * NEXT: KEYS[1] = reverse index, KEYS[2] = sweep marker; ARGV[1] = mode,
 * ARGV[2] = sweep name, ARGV[3] = marker TTL ms, ARGV[4] = chunk size,
 * ARGV[5..] = the tokens of the previous chunk, whose route sets no longer
 * hold the shard.  A 'dead' sweep whose marker is no longer its own (it
 * expired) returns -1 and changes nothing; else the marker is extended,
 * the previous chunk leaves the reverse index (after its routes: a sweep
 * that dies halfway leaves every remaining route findable) and up to
 * ARGV[4] further tokens are returned (none: the index is empty).
 */
#define SCHEMA_LUA_SWEEP_NEXT_BODY \
    "-- sweep next\n" \
    "if redis.replicate_commands then redis.replicate_commands() end\n" \
    "if ARGV[1] == 'dead' then\n" \
    "  if redis.call('GET', KEYS[2]) ~= ARGV[2] then return -1 end\n" \
    "  redis.call('PEXPIRE', KEYS[2], ARGV[3])\n" \
    "end\n" \
    "if #ARGV >= 5 then redis.call('SREM', KEYS[1], unpack(ARGV, 5)) end\n" \
    "return redis.call('SRANDMEMBER', KEYS[1], ARGV[4])\n"

/*
 * END (after the route sets and SREM P shards): KEYS as BEGIN; ARGV[1] =
 * mode, ARGV[2] = sweep name.  'force' deletes lease and (empty) index,
 * 'dead' only its own marker.  Returns 1, or -1 if the marker was not
 * ours any more (it expired: nothing deleted).
 */
#define SCHEMA_LUA_SWEEP_END_BODY \
    "-- sweep end\n" \
    "if ARGV[1] == 'dead' and redis.call('GET', KEYS[3]) ~= ARGV[2] then\n" \
    "  return -1\n" \
    "end\n" \
    "if ARGV[1] == 'force' then redis.call('DEL', KEYS[1], KEYS[2]) end\n" \
    "redis.call('DEL', KEYS[3])\n" \
    "return 1\n"

/* The cluster layout's form of a one-slot script body. */
#define SCHEMA_LUA_CLUSTER(body) "#!lua\n" body
#define SCHEMA_LUA_SWEEP_BEGIN SCHEMA_LUA_CLUSTER(SCHEMA_LUA_SWEEP_BEGIN_BODY)
#define SCHEMA_LUA_SWEEP_NEXT SCHEMA_LUA_CLUSTER(SCHEMA_LUA_SWEEP_NEXT_BODY)
#define SCHEMA_LUA_SWEEP_END SCHEMA_LUA_CLUSTER(SCHEMA_LUA_SWEEP_END_BODY)

/* REDIS_CHUNK: default and bounds (tokens per script call / pipeline step
 * of a sweep, a resync page). */
#define SCHEMA_CHUNK_DEFAULT 256
#define SCHEMA_CHUNK_MAX 4096

#endif
