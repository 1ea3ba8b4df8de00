/*
 * odin-router: the process.  One libevent loop thread owns everything.  The
 * router (router.c) is the batch pipeline and the owner of the objects it
 * is built from:
 *
 *   consumer   (consumer.c)   Kafka consumer, accumulator, offsets store
 *   lookup     (lookup.c)     batch arena, miss table, pipelined SMEMBERS
 *   discovery  (discovery.c)  odin:routes subscription, lease discovery,
 *                             dead-shard sweep; owns the Redis connections
 *   shards     (shards.c)     shard table, connections, frames
 *   route_cache, router_offsets, router_http (http.c)
 *
 * Objects report back through callbacks; none of them sees this struct.
 * See docs/architecture.md for the pipeline and the module map.
 */
#ifndef ODIN_ROUTER_ROUTER_H
#define ODIN_ROUTER_ROUTER_H

#include <stdint.h>

#include "common/buf.h"
#include "router/adminapi.h"
#include "router/config.h"
#include "router/metrics.h"

typedef struct router router;

/* Build everything (consumer subscribed, HTTP bound, Redis connecting).
 * cfg must outlive the router.  NULL on failure (reason logged). */
router *router_new(const router_config *cfg);

/* Run until SIGTERM/SIGINT and the graceful shutdown finished (offsets
 * stored and committed, consumer closed).  Returns the exit code. */
int router_run(router *r);

void router_free(router *r);   /* NULL is a no-op */

/* A snapshot of the router's state for /health and /metrics. */
typedef struct router_stats {
    router_metrics m;              /* counters and histograms (a copy) */
    router_gauges g;               /* sampled now */
    enum router_mode mode;         /* what the next batch would use */
    int stopping;                  /* SIGTERM received, draining */
    int kafka_down;                /* all brokers down reported */
    int redis_ok;                  /* lookups and subscription usable */
    int lookup_connected;          /* command connection up */
    int subscribed;                /* odin:routes subscription confirmed */
    uint64_t uptime_s;
} router_stats;

/* Fill *s (loop thread only; asks librdkafka for cached watermarks). */
void router_stats_get(router *r, router_stats *s);

/* Append the JSON array describing every known shard.  0 or -1 (ENOMEM). */
int router_stats_shards_json(const router *r, buf *out);

/* The admin API's views (router/adminapi.h; loop thread only).  Strings
 * are borrowed from the router and valid until it next runs. */
void router_admin_state(router *r, router_adminapi_state *st);
/* Up to max shard slots into out; returns how many were filled. */
size_t router_admin_shards(router *r, router_adminapi_shard *out, size_t max);
/* Assigned partitions (consumer_partitions): count assigned, or -1. */
long router_admin_partitions(router *r, consumer_partition *out, size_t max);

#endif
