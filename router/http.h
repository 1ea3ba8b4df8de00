/*
 * GET /health, /livez, /readyz and /metrics on HTTP_ADDR (libevent evhttp,
 * loop thread), and the admin API GET /admin/v1/shards, /admin/v1/partitions
 * (router/adminapi.h; ADMIN_TOKEN bearer check, common/adminauth.h; its own
 * ADMIN_RATE bucket; refusals in router_admin_api_rejections_total).
 * Reads its owner only through router_http_callbacks (set by router.c; this
 * module includes no router.h).  Each page has its own ADMIN_RATE/ADMIN_BURST token bucket;
 * over it 429 (Retry-After: 1), counted in
 * router_http_ratelimit_rejections_total{path} and logged at a bounded rate.
 *
 * /health status:
 *   unhealthy (503): shutting down, or Kafka reports all brokers down
 *   degraded  (200): Redis unavailable (fallback broadcast), DISPATCH_MODE
 *                    targeted but no shard known, or a live shard not connected
 *   healthy   (200): otherwise
 *
 * /livez (liveness): 200 while the loop answers, draining included.
 * /readyz (readiness): 503 while shutting down, with every Kafka broker
 * down, or holding consumption (the set of shards cannot be known); Redis
 * down is ready (the router broadcasts).  Both share /health's ADMIN_RATE
 * bucket.
 */
#ifndef ODIN_ROUTER_HTTP_H
#define ODIN_ROUTER_HTTP_H

#include <event2/event.h>

#include "common/buf.h"
#include "router/adminapi.h"
#include "router/config.h"
#include "router/metrics.h"

typedef struct router_http router_http;

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

/* What the pages read, asked of the owner (loop thread only).  Strings
 * handed out are borrowed from the owner and valid until it next runs. */
typedef struct router_http_callbacks {
    /* Fill *s (may ask librdkafka for cached watermarks). */
    void (*stats)(void *ud, router_stats *s);
    /* Append the JSON array describing every known shard.  0 or -1 (ENOMEM). */
    int (*shards_json)(void *ud, buf *out);
    /* The admin API's views (router/adminapi.h). */
    void (*admin_state)(void *ud, router_adminapi_state *st);
    /* Up to max shard slots into out; returns how many were filled. */
    size_t (*admin_shards)(void *ud, router_adminapi_shard *out, size_t max);
    /* Assigned partitions (consumer_partitions): count assigned, or -1. */
    long (*admin_partitions)(void *ud, consumer_partition *out, size_t max);
    void *ud;
} router_http_callbacks;

/* Bind cfg->http_addr on base.  base and cfg are borrowed and must outlive
 * the server; *cb is copied (its ud must outlive the server).  NULL on
 * failure (reason logged). */
router_http *router_http_new(struct event_base *base, const router_config *cfg,
                             const router_http_callbacks *cb);
void router_http_free(router_http *h);   /* NULL is a no-op */

#endif
