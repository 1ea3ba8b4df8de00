#include "router/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/log.h"
#include "common/topics.h"
#include "proto/frame.h"
#include "router/dispatch.h"

static const char summary[] =
    "Kafka consumer with targeted dispatch: consumes the odin.* topics in one "
    "consumer group, looks each record's token up in Redis (cached), and sends it "
    "only to the shards holding subscribers for that token, over Unix (or TCP) "
    "streams.  Offsets are stored only after a record reached every target "
    "shard's socket or was deliberately dropped (at-least-once).";

/* bounds-checked: a table that outgrows opts[] aborts before writing past it */
#define OPT(env, type, field, def, help, lo, hi)                                \
    do {                                                                        \
        if (n >= ROUTER_CONFIG_MAX_OPTS)                                        \
            abort();                                                            \
        c->opts[n++] = (config_opt){ env, type, &c->field, def, help, lo, hi }; \
    } while (0)

static size_t fill_opts(router_config *c)
{
    size_t n = 0;
    OPT("KAFKA_BROKERS", CFG_STR, kafka_brokers, NULL,
        "Kafka bootstrap servers host:port[,host:port] (required; odin-devbroker "
        "prints one)", 0, 0);
    OPT("KAFKA_GROUP", CFG_STR, kafka_group, "ws-router",
        "Consumer group; routers in one group split the partitions", 0, 0);
    OPT("KAFKA_TOPICS", CFG_STR, kafka_topics, TOPICS_DEFAULT_LIST,
        "Comma-separated topics: a default odin.* topic, 'topic=category' for a custom "
        "topic, or '^regex'", 0, 0);
    OPT("KAFKA_BATCH_SIZE", CFG_INT, kafka_batch_size, "500",
        "Records per batch: a batch is dispatched when this many are consumed ...",
        1, 65536);
    OPT("KAFKA_BATCH_TIMEOUT_MS", CFG_INT, kafka_batch_timeout_ms, "0",
        "... or when the consumer queue runs empty (0, the default: batches grow "
        "by themselves under load and add no delay at low rates); > 0 waits up to "
        "this long after a batch's first record for it to fill (adds that latency)",
        0, 60000);
    OPT("KAFKA_OFFSET_RESET", CFG_STR, kafka_offset_reset, "latest",
        "Where a group without a stored offset starts: latest | earliest", 0, 0);
    OPT("KAFKA_COMMIT_INTERVAL_MS", CFG_INT, kafka_commit_interval_ms, "1000",
        "How often stored offsets are committed (auto.commit.interval.ms)", 10, 600000);
    OPT("KAFKA_COMMIT_EAGER", CFG_BOOL, commit_eager, "true",
        "Also commit as soon as offsets are stored (asynchronously, one commit "
        "request in flight), so a crashed router's successor redelivers about one "
        "batch per partition instead of up to KAFKA_COMMIT_INTERVAL_MS of records", 0,
        0);
    OPT("KAFKA_OPTIONS", CFG_STR, kafka_options, "",
        "Extra librdkafka properties 'key=value,key=value' (e.g. "
        "security.protocol=ssl); they override the router's own defaults "
        "fetch.wait.max.ms=10 and session.timeout.ms=10000", 0, 0);
    OPT("REDIS_URL", CFG_STR, redis_url, "redis://127.0.0.1:6379",
        "Redis endpoint: redis://[[user]:password@]host:port[/db] or unix:/path "
        "(the password is never logged)", 0, 0);
    OPT("SHARD_INGRESS_SECRET", CFG_STR, ingress_secret, NULL,
        "Shared secret of router <-> shard links: both sides prove it with an "
        "HMAC over the whole HELLO transcript (which names the shard meant and "
        "the endpoint dialed), and a shard that fails is not fed. "
        "Must match the shards' setting; never logged", 0, 0);
    OPT("REDIS_SENTINELS", CFG_STR, redis_sentinels, NULL,
        "Redis Sentinel addresses host:port,host:port: the master is asked from "
        "them before every connect and followed across failovers (REDIS_URL then "
        "gives only password and db)", 0, 0);
    OPT("REDIS_MASTER_NAME", CFG_STR, redis_master_name, "odin",
        "Name of the master the Sentinels monitor (with REDIS_SENTINELS)", 0, 0);
    OPT("REDIS_PASSWORD", CFG_STR, redis_password, NULL,
        "Redis password (AUTH); overrides one in REDIS_URL; never logged", 0, 0);
    OPT("REDIS_PREFIX", CFG_STR, redis_prefix, "odin:",
        "Prefix of every Redis key and of the routes channel", 0, 0);
    OPT("REDIS_CLUSTER_KEYS", CFG_BOOL, redis_cluster_keys, "false",
        "Cluster-safe Redis key layout (Redis Cluster, docs/scaling.md): shard keys "
        "hash-tagged as <prefix>shard:{<id>} and <prefix>shard:{<id>}:tokens, no "
        "script touching two slots; needs Redis 7. Same value on every router, "
        "shard and odin-ctl", 0, 0);
    OPT("REDIS_CHUNK", CFG_INT, redis_chunk, "256",
        "Tokens per step of a dead-shard sweep (one script call or pipeline step, "
        "each sent once the previous is answered): bounds how long one step holds "
        "Redis, whatever the size of the shard's reverse index", 1, 4096);
    OPT("REDIS_TIMEOUT_MS", CFG_INT, redis_timeout_ms, "1000",
        "Redis connect and lookup timeout; past it the batch goes out in fallback "
        "(broadcast) and the connection is re-established", 10, 60000);
    OPT("REDIS_RECONNECT_MAX_MS", CFG_INT, redis_reconnect_max_ms, "2000",
        "Longest Redis reconnect backoff (starts at 50 ms, doubles)", 50, 600000);
    OPT("DISPATCH_MODE", CFG_STR, dispatch_mode, "targeted",
        "targeted (send each record only to the shards holding its token) | broadcast "
        "(every record to every shard, the Phase 1 behaviour)", 0, 0);
    OPT("BROADCAST_KEY", CFG_STR, broadcast_key, "*",
        "Record key that goes to every shard and every client (system announcements)",
        0, 0);
    OPT("BROADCAST_TOPICS", CFG_STR, broadcast_topics, "",
        "Comma-separated topics whose records always go to every shard and client", 0, 0);
    OPT("HTTP_ADDR", CFG_STR, http_addr, "0.0.0.0:8080",
        "host:port of /health and /metrics", 0, 0);
    OPT("ADMIN_RATE", CFG_DOUBLE, admin_rate, "100",
        "/health and /metrics requests per second on HTTP_ADDR, each (0 = no "
        "limit); over it 429", 0, 1e9);
    OPT("ADMIN_BURST", CFG_INT, admin_burst, "200",
        "/health and /metrics request burst, each", 1, 1000000000);
    OPT("ADMIN_TOKEN", CFG_STR, admin_token, NULL,
        "Bearer token of the admin API (/admin/v1/... on HTTP_ADDR): every "
        "request must send 'Authorization: Bearer <token>' (else 401).  Unset: "
        "the admin API (read-only on the router) is open to anyone who "
        "reaches HTTP_ADDR", 0, 0);
    OPT("ROUTER_ID", CFG_STR, router_id, "",
        "Id sent in HELLO to shards (default hostname-pid).  Set explicitly (stable "
        "across restarts, unique per router) it is also the Kafka group.instance.id "
        "'odin-router-<id>' (static membership): a restarted router gets its "
        "partitions back without waiting for the session timeout (Kafka 2.3+, "
        "Redpanda; odin-devbroker needs KAFKA_EVICT_PREVIOUS too); with "
        "KAFKA_EVICT_PREVIOUS it also names the member-id record in Redis", 0, 0);
    OPT("KAFKA_EVICT_PREVIOUS", CFG_BOOL, kafka_evict_previous, "false",
        "With ROUTER_ID: on start, remove this router's previous incarnation (its "
        "member id is recorded in Redis, key <REDIS_PREFIX>router:<ROUTER_ID>) from "
        "the group with a LeaveGroup, so the group does not wait for its session "
        "timeout; the member-id record is written only with this on.  Versions "
        "are negotiated with ApiVersions.  For brokers "
        "without KIP-345 static membership, such as odin-devbroker; plaintext only "
        "(refused with another security.protocol in KAFKA_OPTIONS); on Kafka 2.3+ "
        "and Redpanda leave it off and use ROUTER_ID alone "
        "(there the leave of a static member forces a rebalance)", 0, 0);
    OPT("LOG_LEVEL", CFG_STR, log_level, "info", "debug | info | warn | error", 0, 0);
    OPT("ROUTE_CACHE_SIZE", CFG_INT, cache_size, "100000",
        "Route cache entries (token -> shards, negative entries included); LRU "
        "eviction past it", 1, 50000000);
    OPT("ROUTE_CACHE_TTL_MS", CFG_INT, cache_ttl_ms, "60000",
        "Route cache entry lifetime, a safety net behind invalidation (0 = no expiry)",
        0, 86400000);
    OPT("SHARD_QUEUE_BYTES", CFG_INT, shard_queue_bytes, "8388608",
        "Per-shard output queue; records past it are dropped for that shard "
        "(reason queue_full)", 65536, 1073741824);
    OPT("SHARD_BACKPRESSURE_MS", CFG_INT, shard_backpressure_ms, "1000",
        "When a shard's queue passes half of SHARD_QUEUE_BYTES, consumption "
        "pauses up to this long for it to drain (a catch-up then loses "
        "nothing); a shard that does not drain in time is treated as slow and "
        "its records are dropped (queue_full) while the others go on "
        "(0 = never pause)", 0, 600000);
    OPT("SHARD_STALL_TIMEOUT_MS", CFG_INT, shard_stall_timeout_ms, "5000",
        "A shard that accepts no bytes for this long while data is queued is "
        "disconnected (its queued records dropped, reason stalled)", 100, 3600000);
    OPT("SHARD_HELLO_TIMEOUT_MS", CFG_INT, shard_hello_timeout_ms, "5000",
        "Connect + handshake (HELLO and AUTH) timeout", 100, 600000);
    OPT("SHARD_RECONNECT_MAX_MS", CFG_INT, shard_reconnect_max_ms, "5000",
        "Longest shard reconnect backoff (starts at 50 ms, doubles)", 50, 600000);
    OPT("DISCOVERY_INTERVAL_MS", CFG_INT, discovery_interval_ms, "1000",
        "Shard discovery period (SMEMBERS shards + HGETALL leases)", 50, 600000);
    OPT("MAX_RECORD_BYTES", CFG_INT, max_record_bytes, "1048576",
        "Larger record values are skipped as invalid (reason oversized)", 64,
        (double)(FRAME_DEFAULT_MAX - 4096));
    OPT("VALIDATE_JSON", CFG_STR, validate_json_s, "fast",
        "Skip records whose value is not JSON (reason invalid_json): fast (allocation-free "
        "validator with jansson's verdicts) | jansson (json_loadb per record, ~2x the "
        "router's CPU) | off", 0, 0);
    OPT("SHUTDOWN_TIMEOUT_MS", CFG_INT, shutdown_timeout_ms, "5000",
        "On SIGTERM/SIGINT, how long to wait for shard queues to drain before "
        "committing; the process exits within this plus 2 s whatever the broker "
        "and Redis do",
        0, 600000);
    OPT("ROUTER_HOLD_MAX_MS", CFG_INT, hold_max_ms, "30000",
        "While the router cannot know which shards hold a token (Redis down "
        "before any discovery, Redis restarted or emptied, shards still "
        "re-registering) it holds consumption (nothing is committed) up to "
        "this long, then broadcasts to every live shard until it knows again", 0,
        3600000);
    OPT("ROUTER_SETTLE_MS", CFG_INT, settle_ms, "6000",
        "After the Redis registry was reset (new epoch: restarted empty or "
        "flushed), \"no route\" is trusted again once every shard live before "
        "re-registered with its routes confirmed, or after this long (about one "
        "SHARD_LEASE_TTL)", 0, 600000);
    OPT("SHARD_DOWN_GRACE_MS", CFG_INT, shard_down_grace_ms, "15000",
        "A shard whose lease lapsed but whose connection is still open keeps "
        "getting its records queued (within SHARD_QUEUE_BYTES) this long before "
        "it is disconnected and its records are dropped (reason shard_down); its "
        "routes are kept meanwhile (0 = drop at once)", 0, 3600000);
    OPT("INVALID_LOG_PER_SEC", CFG_INT, invalid_log_per_sec, "5",
        "Rate limit of 'invalid record' log lines", 1, 100000);
    return n;
}

/* One "invalid setting" JSON log line (fmt has one %s, for v). */
static int bad(const char *env, const char *fmt, const char *v)
{
    char why[1200];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(why, sizeof why, fmt, v ? v : "(unset)");
#pragma GCC diagnostic pop
    log_kv(LOG_ERROR, "invalid setting", "s:setting", env, "s:reason", why, NULL);
    return -1;
}

/* The value of key in a KAFKA_OPTIONS list ('k=v,k=v', spaces around
 * entries ignored) copied to out, or "" if absent. */
static void kafka_option(const char *opts, const char *key, char *out, size_t n)
{
    out[0] = '\0';
    size_t klen = strlen(key);
    for (const char *p = opts; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            size_t vlen = len - klen - 1;
            while (vlen && p[klen + 1 + vlen - 1] == ' ')
                vlen--;
            snprintf(out, n, "%.*s", (int)vlen, p + klen + 1);
        }
        p += len;
    }
}

static int finalize(router_config *c)
{
    if (!c->kafka_brokers || !*c->kafka_brokers)
        return bad("KAFKA_BROKERS", "is required (%s); e.g. KAFKA_BROKERS=127.0.0.1:9092",
                   c->kafka_brokers);
    char berr[300];
    if (addr_check_brokers(c->kafka_brokers, berr, sizeof berr) != 0)
        return bad("KAFKA_BROKERS", "must be a host:port list (%s)", berr);
    if (!c->kafka_group || !*c->kafka_group)
        return bad("KAFKA_GROUP", "must not be empty (%s)", c->kafka_group);
    if (strcasecmp(c->kafka_offset_reset, "latest") == 0)
        c->offset_earliest = 0;
    else if (strcasecmp(c->kafka_offset_reset, "earliest") == 0)
        c->offset_earliest = 1;
    else
        return bad("KAFKA_OFFSET_RESET", "'%s' is not latest|earliest", c->kafka_offset_reset);
    if (strcasecmp(c->dispatch_mode, "targeted") == 0)
        c->mode = ROUTER_MODE_TARGETED;
    else if (strcasecmp(c->dispatch_mode, "broadcast") == 0)
        c->mode = ROUTER_MODE_BROADCAST;
    else
        return bad("DISPATCH_MODE", "'%s' is not targeted|broadcast", c->dispatch_mode);
    char url[600];
    addr_redact_url(c->redis_url, url, sizeof url);
    char uerr[300];
    if (addr_parse_redis_url_err(c->redis_url, &c->redis, uerr, sizeof uerr) != 0) {
        char why[1000];
        snprintf(why, sizeof why, "'%s' is not redis://[[user]:password@]host:port[/db] "
                 "or unix:/path: %s", url, uerr);
        return bad("REDIS_URL", "%s", why);
    }
    if (addr_redis_set_password(&c->redis, c->redis_password) != 0)
        return bad("REDIS_PASSWORD", "longer than 255 bytes%s", "");
    char why[256];
    if (addr_redis_set_sentinels(&c->redis, c->redis_sentinels, c->redis_master_name, why,
                                 sizeof why) != 0)
        return bad("REDIS_SENTINELS", "%s", why);
    if (!c->redis_prefix)
        return bad("REDIS_PREFIX", "must be set (%s)", c->redis_prefix);
    if (!c->broadcast_key || !*c->broadcast_key || strlen(c->broadcast_key) > 255)
        return bad("BROADCAST_KEY", "must be 1-255 bytes (%s)", c->broadcast_key);
    if (addr_split_hostport(c->http_addr, c->http_host, sizeof c->http_host,
                            &c->http_port) != 0)
        return bad("HTTP_ADDR", "'%s' is not host:port", c->http_addr);
    enum log_level lvl;
    if (log_level_parse(c->log_level, &lvl) != 0)
        return bad("LOG_LEVEL", "'%s' is not debug|info|warn|error", c->log_level);
    c->log_min = (int)lvl;
    c->validate_json = dispatch_json_mode_parse(c->validate_json_s);
    if (c->validate_json < 0)
        return bad("VALIDATE_JSON", "'%s' is not fast|jansson|off", c->validate_json_s);
    if (c->kafka_evict_previous && (!c->router_id || !*c->router_id))
        return bad("KAFKA_EVICT_PREVIOUS", "needs ROUTER_ID (the record is kept per router "
                   "id)%s", "");
    if (c->kafka_evict_previous) {
        /* the eviction speaks plain TCP to the brokers (router/leavegroup.h) */
        char proto[64];
        kafka_option(c->kafka_options, "security.protocol", proto, sizeof proto);
        if (proto[0] && strcasecmp(proto, "plaintext") != 0)
            return bad("KAFKA_EVICT_PREVIOUS", "works over plaintext only, and KAFKA_OPTIONS "
                       "sets security.protocol=%s: turn it off (on Kafka 2.3+ ROUTER_ID's "
                       "static membership is the way)", proto);
    }
    if (c->router_id && *c->router_id) {
        if (strlen(c->router_id) >= sizeof c->id)
            return bad("ROUTER_ID", "'%s' is too long", c->router_id);
        snprintf(c->id, sizeof c->id, "%s", c->router_id);
    } else {
        char host[200] = "router";
        if (gethostname(host, sizeof host) != 0)
            snprintf(host, sizeof host, "router");
        host[sizeof host - 1] = '\0';
        snprintf(c->id, sizeof c->id, "%s-%ld", host, (long)getpid());
    }
    char err[512];
    if (router_topics_parse(&c->topics, c->kafka_topics, c->broadcast_topics, err,
                            sizeof err) != 0) {
        return bad("KAFKA_TOPICS", "%s", err);
    }
    return 0;
}

int router_config_load(router_config *c, int argc, char **argv)
{
    memset(c, 0, sizeof *c);
    c->nopts = fill_opts(c);
    int rc = config_load(c->opts, c->nopts, argc, argv, "odin-router", summary);
    if (rc != 0)
        return rc;
    return finalize(c);
}

void router_config_free(router_config *c)
{
    if (!c || !c->nopts)
        return;
    config_free(c->opts, c->nopts);
    router_topics_free(&c->topics);
    c->nopts = 0;
}
