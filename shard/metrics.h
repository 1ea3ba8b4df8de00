/*
 * Shard counters and their Prometheus text rendering, plus the /health
 * document.  Counters are plain integers bumped on the event loop thread;
 * gauges are sampled into shard_gauges when a page is rendered.  Pure.
 */
#ifndef ODIN_SHARD_METRICS_H
#define ODIN_SHARD_METRICS_H

#include <stdint.h>
#include "common/buf.h"
#include "common/prom.h"
#include "shard/ws.h"
#include "shard/metrics_list.h"

/* Close codes counted per code in ws_disconnects_total{code}. */
enum shard_close_idx {
    SM_CLOSE_1000, SM_CLOSE_1001, SM_CLOSE_1002, SM_CLOSE_1003,
    SM_CLOSE_1007, SM_CLOSE_1008, SM_CLOSE_1009, SM_CLOSE_1011,
    SM_CLOSE_OTHER, SM_CLOSE_N
};

/* Reasons a record is dropped. */
enum shard_drop_idx {
    SM_DROP_NO_SUBSCRIBERS,  /* no local subscriber of the token */
    SM_DROP_NO_CHANNEL,      /* token subscribed, but not this category */
    SM_DROP_NOMEM,           /* envelope could not be built */
    SM_DROP_N
};

/* Connections refused by WS_PROXY_PROTOCOL. */
enum shard_proxy_reject_idx {
    SM_PROXY_UNTRUSTED,      /* PROXY header from a source not in WS_PROXY_TRUSTED */
    SM_PROXY_MISSING,        /* trusted source without one (required) */
    SM_PROXY_INVALID,        /* v1, bad version, bad addresses, too long */
    SM_PROXY_N
};

/* Router connections refused by the ingress before or at authentication
 * (shard_ingress_refused_total{reason}); wrong or missing AUTH is
 * shard_ingress_auth_failures_total. */
enum shard_ingress_refusal_idx {
    SM_INGRESS_PENDING_FULL,   /* SHARD_INGRESS_MAX_PENDING reached at accept */
    SM_INGRESS_SOURCE,         /* SHARD_INGRESS_IP_MAX_PENDING reached at accept */
    SM_INGRESS_TIMEOUT,        /* handshake not done in SHARD_INGRESS_AUTH_TIMEOUT_MS */
    SM_INGRESS_OVERSIZED,      /* frame over FRAME_HANDSHAKE_MAX before AUTH */
    SM_INGRESS_MAX_ROUTERS,    /* authenticated, but SHARD_MAX_ROUTERS reached */
    SM_INGRESS_VERSION,        /* another FRAME_PROTO_VERSION */
    SM_INGRESS_IDENTITY,       /* HELLO for another shard id or endpoint */
    SM_INGRESS_PROTOCOL,       /* wrong role, frame out of order, malformed */
    SM_INGRESS_N
};

#define SM_CLIENT_ERR_N 8    /* indexed by enum clientmsg_err */
#define SM_RESUME_N 7        /* indexed by enum resume_code */
#define SM_REPLAY_SKIP_N 4   /* indexed by enum record_invalid */

/* The fields come from the metric list (shard/metrics_list.h): one per
 * COUNTER, SECONDS, LABELLED, HIST and FIELD entry, in the page's order. */
#define SM_FIELD_COUNTER(f, ...) uint64_t f;
#define SM_FIELD_SECONDS(f, ...) double f;
#define SM_FIELD_LABELLED(f, name, help, label, n, ...) uint64_t f[n];
#define SM_FIELD_HIST(f, ...) prom_hist f;
#define SM_FIELD_FIELD(type, f) type f;
#define SM_FIELD_VALUE(...)
#define SM_FIELD_INFO(...)
#define SM_FIELD(kind, ...) SM_FIELD_##kind(__VA_ARGS__)

typedef struct shard_metrics {
    SHARD_METRICS(SM_FIELD)
} shard_metrics;

typedef struct shard_gauges {
    long connections;         /* open WebSocket clients */
    long max_connections;
    long pending;             /* connections still in the HTTP phase */
    long closing;             /* clients in the close handshake */
    long subscriptions, tokens, channels;
    long queue_bytes;         /* bytes queued to clients */
    /* the client pool's parser set (shard_server_gauges) */
    long parser_contexts;
    uint64_t inflated;        /* compressed client messages inflated */
    uint64_t inflate_refused; /* ... refused: too big (1009) or corrupt (1007) */
    long partial_bytes;
    long routers;             /* authenticated router connections */
    long routers_pending;     /* router connections still in the handshake */
    long fd_limit;
    int redis_connected;
    long redis_pending;       /* registrations not yet confirmed */
    double uptime_s;
    int stopping;
    int draining;
    const char *shard_id;
    double cpu_percent;       /* process CPU, % of one core (sysstat.h) */
    uint64_t rss_bytes;
    uint64_t mem_limit_bytes; /* cgroup limit or MemTotal; 0 unknown */
    double mem_percent;
    long resumes;             /* reconnect replays in progress */
    long ip_table_entries;    /* addresses the per-IP limits track */
    long replay_memory;       /* bytes held for replays */
    long replay_memory_limit; /* RESUME_MEMORY_BYTES */
    long replay_partitions;   /* partitions the replay reader reads */
    long replay_history;      /* bytes of the replay reader's histories */
} shard_gauges;

void shard_metrics_count_close(shard_metrics *m, unsigned code);

/* Zero every counter and set up the histograms' buckets. */
void shard_metrics_init(shard_metrics *m);

/* Append the Prometheus text page. 0 or -1. */
int shard_metrics_render(buf *out, const shard_metrics *m,
                         const shard_gauges *g);

/* Append one line per series of the list, tab-separated: name, type
 * (counter, gauge, histogram), label name ("" if none), its values
 * (comma-separated), help; `odin-shard --metrics-list` prints it for
 * tools/metrics-table.py.  0 or -1 (ENOMEM). */
int shard_metrics_list(buf *out);

/*
 * Append the /health JSON and return the HTTP status (200, or 503 when
 * unhealthy).  `healthy` is true when the status is 200; checks.cpu and
 * checks.memory (odin-ws's) are informational: "high" at >= 90%.  unhealthy: shutting down or at capacity; degraded: Redis
 * down, no router connected, or >= 90% of capacity; else healthy.
 */
int shard_health_render(buf *out, const shard_gauges *g);

/*
 * /livez: 200 while the shard answers at all (draining, full, shutting down
 * or without Redis included: a liveness probe must not restart a shard
 * that is merely busy).  Appends {"status":"live",...}; 200 or -1 (ENOMEM).
 */
int shard_livez_render(buf *out, const shard_gauges *g);

/*
 * /readyz: does the shard take new clients?  503 with "reason" when it is
 * shutting down, draining, or full (open + closing clients at
 * max_connections: the test the upgrade answers 503 by); else 200.  Redis
 * and router links are reported but do not decide it: they are shared, and
 * a Redis outage must not take every shard out of the load balancer at
 * once (routers broadcast meanwhile; shards re-register on return).
 * Returns 200, 503 or -1 (ENOMEM).
 */
int shard_readyz_render(buf *out, const shard_gauges *g);

#endif
