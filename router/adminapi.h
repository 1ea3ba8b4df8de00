/*
 * The router's admin API (/admin/v1/... on HTTP_ADDR), the pure part:
 * routing and the JSON bodies from plain views.  router/http.c gathers the
 * views (router_admin_snapshot, router.h) and sends what is rendered here.
 * Every endpoint is read-only (GET):
 *
 *   GET /admin/v1/shards       every shard slot: lease, link state, queue,
 *                              backpressure, drops by reason; hold state
 *   GET /admin/v1/partitions   assigned partitions: position, offset
 *                              stored for commit, cached watermarks, lag;
 *                              hold state
 */
#ifndef ODIN_ROUTER_ADMINAPI_H
#define ODIN_ROUTER_ADMINAPI_H

#include <stddef.h>
#include <stdint.h>
#include "common/buf.h"
#include "router/consumer.h"
#include "router/metrics.h"

enum router_adminapi_route {
    RADMIN_NOT_FOUND = 0,
    RADMIN_SHARDS,
    RADMIN_PARTITIONS,
};

/* Route a GET of path (len bytes, without the query). */
enum router_adminapi_route router_adminapi_route(const char *path, size_t len);

/* The router-wide part of every reply. */
typedef struct router_adminapi_state {
    const char *router_id;
    const char *mode;             /* "targeted", "broadcast", ... */
    int holding;                  /* consumption held for unknown routes */
    uint64_t hold_ms;             /* how long the current hold has lasted */
    uint64_t holds, hold_expired; /* totals */
    int backpressured;            /* consumption paused for a full shard queue */
    int64_t consumer_lag;         /* -1 unknown */
} router_adminapi_state;

/* One shard slot. */
typedef struct router_adminapi_shard {
    const char *id;
    size_t id_len;
    const char *endpoint;         /* NULL: no lease */
    int live;                     /* lease present (or in its down grace) */
    const char *state;            /* idle, connecting, hello, ready */
    int authenticated;            /* ready and the link proved SHARD_INGRESS_SECRET */
    uint64_t queued_bytes, queue_limit;
    int backpressured;            /* queue above half, waiting for it */
    uint64_t connects;
    uint64_t drops[ROUTER_DROP_COUNT];
} router_adminapi_shard;

/* {"router":{..state..},"shards":[{..},..]}.  0 or -1 (ENOMEM). */
int router_adminapi_shards_json(buf *out, const router_adminapi_state *st,
                                const router_adminapi_shard *v, size_t n);

/* {"router":{..},"assigned":N,"partitions":[{"topic","partition",
 * "position","stored","low","high","lag"},..]}; assigned < 0: not a group member
 * (closed).  Values not known yet are -1.  0 or -1 (ENOMEM). */
int router_adminapi_partitions_json(buf *out, const router_adminapi_state *st,
                                    const consumer_partition *v, size_t n,
                                    long assigned);

#endif
