/*
 * GET /health, /livez, /readyz and /metrics on HTTP_ADDR (libevent evhttp,
 * loop thread), and the admin API GET /admin/v1/shards, /admin/v1/partitions
 * (router/adminapi.h; ADMIN_TOKEN bearer check, common/adminauth.h; its own
 * ADMIN_RATE bucket; refusals in router_admin_api_rejections_total).
 * Reads the router only through router_stats_get / router_stats_shards_json
 * / router_admin_* (router.h).  Each page has its own ADMIN_RATE/ADMIN_BURST token bucket;
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

#include "router/config.h"
#include "router/router.h"

typedef struct router_http router_http;

/* Bind cfg->http_addr on base.  base, cfg and r are borrowed and must
 * outlive the server.  NULL on failure (reason logged). */
router_http *router_http_new(struct event_base *base, const router_config *cfg, router *r);
void router_http_free(router_http *h);   /* NULL is a no-op */

#endif
