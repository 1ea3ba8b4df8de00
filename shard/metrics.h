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

typedef struct shard_metrics {
    uint64_t ws_connections_total;
    uint64_t ws_messages_sent_total;      /* record messages queued to clients */
    uint64_t ws_replies_sent_total;       /* acks, pongs, errors */
    uint64_t ws_bytes_sent_total;
    uint64_t ws_messages_received_total;
    uint64_t ws_capacity_rejections_total;   /* HTTP 503 at capacity */
    uint64_t ws_drain_rejections_total;      /* HTTP 503 while draining */
    uint64_t ws_ratelimit_rejections_total;  /* HTTP 429 (per-IP rate) */
    uint64_t ws_message_ratelimit_total;     /* RATE_LIMIT_EXCEEDED */
    uint64_t ws_slow_clients_disconnected_total;
    uint64_t ws_handshake_failures_total;
    uint64_t ws_handshake_timeouts_total;
    uint64_t ws_idle_timeouts_total;
    uint64_t ws_origin_rejections_total;      /* 403: WS_ALLOWED_ORIGINS */
    uint64_t ws_partial_budget_closes_total;  /* 1013: over WS_PARTIAL_BUDGET */
    uint64_t ws_partial_timeouts_total;       /* 1008: frame not completed in time */
    uint64_t ws_pending_rejections_total;
    uint64_t ws_ip_pending_rejections_total;  /* over WS_IP_MAX_PENDING at accept */
    uint64_t ws_ip_table_full_rejections_total; /* new address, WS_IP_TABLE_MAX full */
    uint64_t ws_admin_ratelimit_rejections_total[2]; /* 429 over ADMIN_RATE: [0] /metrics, [1] /health */
    uint64_t ws_admin_forbidden_total;        /* 404: peer not in ADMIN_ALLOW */
    uint64_t ws_token_limit_rejections_total; /* channels refused: SHARD_MAX_TOKENS */
    uint64_t ws_ip_channel_rejections_total;  /* channels refused: WS_IP_MAX_CHANNELS */
    uint64_t ws_admin_api_requests_total;     /* admin API requests served */
    uint64_t ws_admin_api_rejections_total[3];/* [0] 401 [1] 403 [2] 429 */
    uint64_t ws_admin_api_disconnects_total;  /* clients closed through the admin API */
    uint64_t ws_proxy_headers_total;          /* PROXY v2 headers accepted */
    uint64_t ws_proxy_rejections_total[SM_PROXY_N];
    uint64_t ws_accept_errors_total;
    uint64_t ws_accept_paused_total;          /* accepting stopped: WS_MAX_PENDING */
    double ws_accept_paused_seconds_total;    /* time spent so */
    uint64_t ws_http_requests_total;
    uint64_t ws_binary_frames_ignored_total;  /* binary messages dropped */
    uint64_t ws_reconnects_total[SM_RESUME_N];  /* by result */
    uint64_t ws_replayed_messages_total;
    uint64_t ws_replay_duplicates_dropped_total;
    double ws_reconnect_seconds_total;
    uint64_t ws_replay_requests_total;          /* reconnects received */
    uint64_t ws_replay_records_skipped_total[SM_REPLAY_SKIP_N];
    uint64_t ws_replay_kafka_bytes_total;       /* key + value bytes read */
    uint64_t ws_replay_passes_total;
    prom_hist ws_replay_pass_requests;          /* requests served per pass */
    prom_hist ws_replay_seconds;                /* reconnect -> ack or error */
    uint64_t ws_client_errors_total[SM_CLIENT_ERR_N];
    uint64_t ws_disconnects_total[SM_CLOSE_N];
    uint64_t shard_records_received_total;
    uint64_t shard_records_broadcast_total;
    uint64_t shard_records_dropped_total[SM_DROP_N];
    uint64_t shard_frames_received_total;
    uint64_t shard_frames_errors_total;
    uint64_t shard_ingress_auth_failures_total;  /* routers refused: no or wrong AUTH */
    uint64_t shard_ingress_refused_total[SM_INGRESS_N];
    uint64_t shard_router_connections_total;
    uint64_t shard_redis_connects_total;
    uint64_t shard_redis_errors_total;
    uint64_t shard_redis_commands_total;
    uint64_t shard_redis_route_updates_total;   /* tokens sent in batches */
    uint64_t shard_redis_script_loads_total;    /* EVAL after NOSCRIPT */
    prom_hist shard_delivery_latency;   /* Kafka timestamp -> client write, seconds */
    /* permessage-deflate (WS_DEFLATE) */
    uint64_t ws_deflate_connections_total;     /* upgrades that negotiated it */
    uint64_t ws_deflate_messages_sent_total;   /* data messages queued compressed */
    uint64_t ws_deflate_plain_messages_total;  /* ... queued plain to such clients */
    uint64_t ws_deflate_saved_bytes_total;     /* plain - compressed frame bytes, per queued message */
    ws_deflate_stats deflate;                  /* compressions (once per shard per message) */
} shard_metrics;

typedef struct shard_gauges {
    long connections;         /* open WebSocket clients */
    long max_connections;
    long pending;             /* connections still in the HTTP phase */
    long closing;             /* clients in the close handshake */
    long subscriptions, tokens, channels;
    long queue_bytes;         /* bytes queued to clients */
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

/* Append the Prometheus text page. 0 or -1. */
/* Zero every counter and set up the histograms' buckets. */
void shard_metrics_init(shard_metrics *m);

int shard_metrics_render(buf *out, const shard_metrics *m,
                         const shard_gauges *g);

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
