/*
 * Router metrics: plain counters owned by the loop thread, fixed-bucket
 * histograms, and Prometheus text rendering (tests/unit/test_router_config.c).
 * Everything runs on the one loop thread, so no atomics.
 */
#ifndef ODIN_ROUTER_METRICS_H
#define ODIN_ROUTER_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/prom.h"
#include "router/metrics_list.h"

/* Invalid record reasons (router_records_invalid_total{reason}). */
enum router_invalid {
    ROUTER_INV_EMPTY_KEY = 0,
    ROUTER_INV_BAD_KEY,
    ROUTER_INV_UNKNOWN_TOPIC,
    ROUTER_INV_INVALID_JSON,
    ROUTER_INV_OVERSIZED,
    ROUTER_INV_COUNT
};
const char *router_invalid_name(enum router_invalid r);

/* Per-shard drop reasons (router_drops_total{reason}); one count per record
 * per shard it did not reach. */
enum router_drop {
    ROUTER_DROP_QUEUE_FULL = 0,  /* shard's bounded queue was full */
    ROUTER_DROP_SHARD_DOWN,      /* not connected / lease expired / conn lost */
    ROUTER_DROP_STALLED,         /* shard stopped reading; connection closed */
    ROUTER_DROP_TOO_BIG,         /* record larger than the shard's max_frame */
    ROUTER_DROP_NO_SHARD,        /* broadcast / fallback with no shard to send to */
    ROUTER_DROP_COUNT
};
const char *router_drop_name(enum router_drop r);

/* Dispatch modes (router_dispatch_total{mode}). */
enum router_mode {
    ROUTER_MODE_TARGETED = 0,
    ROUTER_MODE_BROADCAST,       /* configured DISPATCH_MODE=broadcast */
    ROUTER_MODE_FALLBACK,        /* Redis unavailable: broadcast to live shards */
    ROUTER_MODE_COUNT
};
const char *router_mode_name(enum router_mode m);

/* The fields come from the metric list (router/metrics_list.h): one per
 * COUNTER, LABELLED, SHARD_DROPS, HIST and FIELD entry, in the page's order. */
#define RM_FIELD_COUNTER(f, ...) uint64_t f;
#define RM_FIELD_LABELLED(f, name, help, label, n, ...) uint64_t f[n];
#define RM_FIELD_SHARD_DROPS(f, name, help, n, ...) uint64_t f[n];
#define RM_FIELD_HIST(f, ...) prom_hist f;
#define RM_FIELD_FIELD(type, f) type f;
#define RM_FIELD_VALUE(...)
#define RM_FIELD_SHARD_GAUGE(...)
#define RM_FIELD(kind, ...) RM_FIELD_##kind(__VA_ARGS__)

typedef struct router_metrics {
    ROUTER_METRICS(RM_FIELD)
} router_metrics;

void router_metrics_init(router_metrics *m);

/* One shard's series (router_shard_queue_bytes{shard},
 * router_drops_total{reason,shard}). */
typedef struct router_shard_sample {
    const char *id;                           /* borrowed, valid while rendering */
    uint64_t queue_bytes;
    uint64_t drops[ROUTER_DROP_COUNT];
} router_shard_sample;

/* Gauges and cache counters sampled when rendering. */
typedef struct router_gauges {
    uint64_t cache_hits, cache_misses, cache_entries, cache_evictions;
    uint64_t shards_connected, shards_known;
    int redis_connected;
    int64_t consumer_lag;                     /* -1 unknown */
    uint64_t assigned_partitions;
    uint64_t queue_bytes;                     /* sum over shards */
    uint64_t pending_segments;
    int fallback;
    int backpressured;
    /* per-shard series: shard_at(shard_ctx, i, &out) for i < nshards fills
     * one shard (0, or -1 to skip it); NULL: no shard known.  Drops of
     * shards no longer in the table are rendered with shard="". */
    size_t nshards;
    int (*shard_at)(const void *shard_ctx, size_t i, router_shard_sample *out);
    const void *shard_ctx;
    int holding;                              /* consumption held (unknown routes) */
} router_gauges;

/* Full /metrics body. */
int router_metrics_render(const router_metrics *m, const router_gauges *g, buf *out);

/* Append one line per series of the list, tab-separated: name, type
 * (counter, gauge, histogram), label names ("" if none, comma-separated),
 * the first label's values (comma-separated), help; `odin-router
 * --metrics-list` prints it for tools/metrics-table.py.  0 or -1. */
int router_metrics_list(buf *out);

#endif
