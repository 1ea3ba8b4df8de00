/*
 * Internals shared by router.c (batch pipeline), kafka.c (consumer),
 * redisside.c (lookups, invalidation, discovery) and http.c.  Not an API.
 */
#ifndef ODIN_ROUTER_ROUTER_INT_H
#define ODIN_ROUTER_ROUTER_INT_H

#include <stdint.h>

#include <event2/event.h>
#include <event2/http.h>
#include <librdkafka/rdkafka.h>

#include "common/buf.h"
#include "common/log.h"
#include "router/cache.h"
#include "router/config.h"
#include "router/metrics.h"
#include "router/offsets.h"
#include "common/redislink.h"
#include "router/router.h"
#include "router/shards.h"

/* Completion ticket of one consumed batch: one reference per queued frame,
 * plus one held while the batch is being dispatched.  When it drops to zero
 * every record of the batch reached its shards (or was dropped on purpose)
 * and the batch's segments are marked done in the offset tracker. */
typedef struct router_ticket {
    int refs;
    uint64_t batch_no;
    size_t nsegs;
    router_offsets_seg segs[];
} router_ticket;

/* Per-record classification of the batch being processed. */
typedef struct router_rec {
    const rd_kafka_message_t *m;
    const router_topic *topic;
    int16_t invalid;        /* -1 valid, else enum router_invalid */
    uint8_t all;            /* broadcast key / topic: every shard, every client */
    uint8_t is_miss;        /* route comes from the lookup (miss index in route) */
    uint32_t route;         /* arena offset (hit) or miss index */
    uint32_t nroute;
} router_rec;

typedef struct router_miss {
    const char *tok;
    uint32_t len;
    uint32_t hash;
    uint32_t route;         /* arena offset, valid if resolved */
    uint32_t nroute;
    int resolved;
} router_miss;

struct router {
    const router_config *cfg;
    struct event_base *base;
    router_metrics m;
    uint64_t started_ms;

    /* Kafka */
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    int kpipe[2];
    struct event *ev_kafka, *ev_pump, *ev_batch_timer;
    rd_kafka_message_t **acc;       /* accumulating batch */
    size_t nacc;
    int batch_timer_armed;
    int backpressured;              /* consumption paused for a shard to drain */
    int kafka_down;                 /* all brokers down reported */
    uint64_t assigned;              /* partitions assigned */
    struct { void *rkt; const router_topic *t; char name[256]; } tcache[16];
    size_t ntcache;
    log_ratelimit rl_invalid, rl_kafka;

    /* batch being processed */
    int inflight;                   /* classified, waiting or dispatching */
    uint64_t batch_no;
    rd_kafka_message_t **batch;     /* owned messages */
    size_t nbatch;
    router_rec *recs;
    router_ticket *ticket;
    enum router_mode batch_mode;
    router_miss *miss;
    size_t nmiss;
    uint32_t *mtab, *mtab_gen, mtab_size, mgen;
    uint16_t *arena;
    size_t alen, acap;
    uint16_t *live_slots;           /* fallback / broadcast target list */
    size_t nlive;
    uint64_t outstanding;           /* tickets not yet complete */
    rd_kafka_topic_partition_list_t *store_list;

    struct evdns_base *dns;         /* resolver for Redis and shard hosts */

    /* Redis */
    route_cache *cache;
    redislink *cmd, *sub;
    int subscribed;
    buf key;                        /* scratch for key names */
    struct {
        int active;
        size_t nsent, nrecv;
        int failed;
        uint64_t ticket;
        uint64_t t0_us;
    } lk;
    struct event *ev_lookup_done, *ev_lookup_timeout;
    struct {
        int active, again;
        size_t n, nrecv;
        char **ids;
        char **endpoints;       /* NULL: no lease hash (dead) */
        uint8_t *has_hash;
    } disc;
    struct event *ev_discovery, *ev_discover_now;

    /* shards */
    router_shards *shards;
    router_offsets *off;

    /* HTTP, signals, periodic */
    struct evhttp *http;
    struct event *ev_sigterm, *ev_sigint, *ev_tick, *ev_shutdown_timeout;
    int stopping;                   /* SIGTERM received */
    int final;                      /* shutdown timed out: do not mark drops done */
    int finishing;                  /* loop exit requested */
    int exit_code;
};

/* router.c */
void router_pump_schedule(router *r);
void router_ticket_ref(router *r, router_ticket *t);
void router_ticket_release(router *r, router_ticket *t);
int router_targeted_ready(const router *r);
void router_store_offsets(router *r);
void router_check_shutdown(router *r);
/* The pipelined lookup finished (failed: Redis error or connection lost):
 * dispatch the waiting batch, targeted or in fallback. */
void router_lookup_finished(router *r, int failed);

/* kafka.c */
int router_kafka_start(router *r);
/* Drain the consumer queue into the accumulator (<= batch size). */
void router_kafka_drain(router *r);
/* Sum of (high watermark - position) over the assignment; -1 unknown. */
int64_t router_kafka_lag(router *r);
void router_kafka_close(router *r);

/* redisside.c */
int router_redis_start(router *r);
void router_redis_free(router *r);
/* Send the pipelined SMEMBERS for r->miss; 0 sent, -1 Redis not usable. */
int router_redis_lookup(router *r);
void router_redis_discover(router *r);

/* http.c */
int router_http_start(router *r);
void router_http_free(router *r);
void router_fill_gauges(router *r, router_gauges *g);

#endif
