/*
 * odin-router settings (every one an environment variable and the same long
 * flag; `odin-router --help` lists them).  router_config_load() reads and
 * validates them; tests/unit/test_router_config.c covers the parsing.
 */
#ifndef ODIN_ROUTER_CONFIG_H
#define ODIN_ROUTER_CONFIG_H

#include <stddef.h>

#include "common/config.h"
#include "router/metrics.h"
#include "router/topicmap.h"

#define ROUTER_CONFIG_MAX_OPTS 64

typedef struct router_config {
    /* raw settings (strings owned by the config module) */
    char *kafka_brokers, *kafka_group, *kafka_topics, *kafka_offset_reset;
    char *kafka_options;
    long kafka_batch_size, kafka_batch_timeout_ms, kafka_commit_interval_ms;
    char *redis_url, *redis_prefix;
    int redis_cluster_keys;   /* REDIS_CLUSTER_KEYS */
    long redis_chunk;         /* REDIS_CHUNK */
    char *redis_password;     /* REDIS_PASSWORD, never logged */
    char *redis_sentinels, *redis_master_name;   /* REDIS_SENTINELS, REDIS_MASTER_NAME */
    char *ingress_secret;     /* SHARD_INGRESS_SECRET, never logged */
    long redis_timeout_ms, redis_reconnect_max_ms;
    char *dispatch_mode, *broadcast_key, *broadcast_topics;
    char *http_addr, *router_id, *log_level;
    double admin_rate;        /* ADMIN_RATE, requests/s per page (0 = no limit) */
    long admin_burst;         /* ADMIN_BURST */
    char *admin_token;        /* ADMIN_TOKEN: admin API bearer token (NULL: open) */
    long cache_size, cache_ttl_ms;
    long shard_queue_bytes, shard_stall_timeout_ms, shard_hello_timeout_ms;
    long shard_backpressure_ms;
    long shard_reconnect_max_ms, discovery_interval_ms;
    long max_record_bytes, shutdown_timeout_ms, invalid_log_per_sec;
    long settle_ms, hold_max_ms, shard_down_grace_ms;
    int commit_eager;                 /* KAFKA_COMMIT_EAGER */
    int kafka_evict_previous;         /* KAFKA_EVICT_PREVIOUS */
    char *validate_json_s;

    /* derived */
    int validate_json;                /* enum dispatch_json */
    enum router_mode mode;            /* TARGETED or BROADCAST */
    int offset_earliest;              /* KAFKA_OFFSET_RESET */
    redis_endpoint redis;
    char http_host[256];
    int http_port;
    char id[256];                     /* ROUTER_ID or hostname-pid */
    router_topics topics;
    int log_min;                      /* enum log_level */

    config_opt opts[ROUTER_CONFIG_MAX_OPTS];
    size_t nopts;
} router_config;

/*
 * Fill *c from defaults, environment and argv, then validate.  Returns 0,
 * 1 if --help was printed (exit 0), -1 on an error (already printed to
 * stderr, naming the setting; exit 2).  Call router_config_free in every
 * case.
 */
int router_config_load(router_config *c, int argc, char **argv);

void router_config_free(router_config *c);

#endif
