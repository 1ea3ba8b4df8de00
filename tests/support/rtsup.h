/*
 * Router integration-test support (tests/it/test_router*.c):
 *  - fake shards: a thread per shard listening on a Unix socket, answering
 *    HELLO and decoding delivery frames with proto/, recording every record;
 *    they register themselves in Redis (lease hash, registry, routes) with
 *    hiredis, exactly like a real shard would;
 *  - a librdkafka producer that remembers the (partition, offset) of every
 *    delivered record;
 *  - spawning odin-router and reading its /metrics.
 */
#ifndef ODIN_TESTS_RTSUP_H
#define ODIN_TESTS_RTSUP_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

#include "tests/support/support.h"

/* ---- fake shard ---------------------------------------------------------- */

typedef struct rtsup_rec {
    char *token;
    char *category;
    char *value;
    size_t value_len;
    int32_t partition;
    int64_t offset;
    uint32_t flags;
    uint32_t mode;
} rtsup_rec;

typedef struct rtsup_shard {
    char id[64];
    char path[512];
    char endpoint[600];
    int lfd;
    pthread_t th;
    volatile int stop;
    volatile int paused;          /* stop reading from the router */
    uint32_t hello_version;       /* version we answer with */
    uint32_t max_frame;
    pthread_mutex_t mu;
    rtsup_rec *recs;
    size_t n, cap;
    int accepts;                  /* connections accepted */
    int router_hellos;            /* valid HELLO frames from a router */
    int closes;                   /* connections that ended */
    int bad_frames;
    uint64_t frames;
} rtsup_shard;

/* Start listening (path under ODIN_TMP) and serving in a thread. */
rtsup_shard *rtsup_shard_start(const char *id);
void rtsup_shard_free(rtsup_shard *s);   /* stops the thread */

/* Register: HSET lease hash (endpoint, pid, host, started_at), PEXPIRE
 * ttl_ms (0 = no expiry), SADD shards, PUBLISH shard:up:<id>. */
void rtsup_shard_register(rtsup_shard *s, redisContext *c, long ttl_ms);
/* Deregister like a shard on SIGTERM (routes, index, lease, shard:down). */
void rtsup_shard_deregister(rtsup_shard *s, redisContext *c);
/* Add / remove a route through SCHEMA_LUA_ROUTE (publishes the token). */
void rtsup_route(redisContext *c, const char *op, const char *shard_id, const char *token);

size_t rtsup_shard_count(rtsup_shard *s);
size_t rtsup_shard_count_token(rtsup_shard *s, const char *token);
/* 1 if a record (partition, offset) was received. */
int rtsup_shard_has(rtsup_shard *s, int32_t partition, int64_t offset);
/* Copy of record i (caller frees the strings with rtsup_rec_free). */
int rtsup_shard_get(rtsup_shard *s, size_t i, rtsup_rec *out);
void rtsup_rec_free(rtsup_rec *r);

/* ---- producer ------------------------------------------------------------------ */

typedef struct rtsup_producer rtsup_producer;
rtsup_producer *rtsup_producer_new(const char *brokers);
/* partition -1 = partitioner by key; key NULL = no key. */
void rtsup_produce(rtsup_producer *p, const char *topic, int32_t partition,
                   const char *key, size_t klen, const char *val, size_t vlen);
/* The tests' numbered record: key tok, value
 * {"type":"TRADE_EXECUTED","data":{"n":<n>}}. */
void rtsup_produce_trade(rtsup_producer *p, const char *topic, int32_t partition,
                         const char *tok, long n);
/* A marker: broadcast key "*", value {"type":"SYSTEM","data":{"marker":"<id>"}}
 * (a client that saw it saw every record produced before it on that
 * partition). */
void rtsup_produce_marker(rtsup_producer *p, const char *topic, int32_t partition,
                          const char *id);
/* A fresh topic for a router test: name "<prefix>-<pid>-<n>", the router's
 * settings for it ("KAFKA_TOPICS=<name>=<category>") and a fresh consumer
 * group ("KAFKA_GROUP=g-<pid>-<n>").  rtsup_topic_new fills t and creates
 * the topic (a WARMUP record on partition 0, flushed): 0, or -1 if the
 * record was not delivered. */
typedef struct rtsup_topic {
    char name[128];
    char topics_env[192];
    char group_env[160];
} rtsup_topic;
int rtsup_topic_new(rtsup_topic *t, rtsup_producer *p, const char *prefix,
                    const char *category);
/* Create a topic: a WARMUP record on partition 0, flushed.  0 or -1. */
int rtsup_create_topic(rtsup_producer *p, const char *topic);
/* Wait for every delivery; returns the number of failed ones. */
int rtsup_producer_flush(rtsup_producer *p);
/* Delivered records so far: partitions/offsets arrays (owned by p). */
size_t rtsup_producer_delivered(rtsup_producer *p, const int32_t **parts,
                                const int64_t **offsets);
void rtsup_producer_free(rtsup_producer *p);

/* Committed offset of (group, topic, partition), -1 if none / error. */
int64_t rtsup_committed(const char *brokers, const char *group, const char *topic,
                        int32_t partition);

/* ---- router process ------------------------------------------------------------- */

typedef struct rtsup_router {
    pid_t pid;
    int http_port;
} rtsup_router;

/*
 * Spawn odin-router with KAFKA_BROKERS, REDIS_URL (redis_url), HTTP_ADDR on a
 * free port, LOG_LEVEL=debug, DISCOVERY_INTERVAL_MS=200, plus `extra` "K=V"
 * entries (NULL-ended; they override).  Waits for its HTTP port.  0 or -1.
 */
int rtsup_router_start(rtsup_router *r, const char *redis_url, const char *const extra[]);
/* SIGTERM and wait; returns the exit status as from waitpid, -1 on timeout. */
int rtsup_router_stop(rtsup_router *r);

/* A metric from /metrics, -1 if absent or the router does not answer; wait
 * until it is >= value / exactly value (1, or 0 on timeout): support.h's
 * tsup_metric. */
#define rtsup_metric tsup_metric
#define rtsup_wait_metric tsup_wait_metric
#define rtsup_wait_metric_eq tsup_wait_metric_eq

/* Wait until the shard received >= n records (token NULL: any token). */
int rtsup_wait_count(rtsup_shard *s, const char *token, size_t n, int timeout_ms);

/* Produce a broadcast-key ("*") marker record to topic/partition and wait
 * until every shard in `shards` (NULL-ended) received `nth` markers.  Since
 * one partition is processed in order and each shard's stream is FIFO, a
 * shard that got the marker got everything produced before it. */
int rtsup_marker(rtsup_producer *p, const char *topic, int32_t partition,
                 rtsup_shard *const shards[], size_t nth, int timeout_ms);

/* Unique name: "<prefix>-<pid>-<counter>" in a static rotating buffer. */
const char *rtsup_unique(const char *prefix);

#endif
