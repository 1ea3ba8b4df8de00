#include "shard/metrics.h"
#include "common/prom.h"
#include "shard/clientmsg.h"
#include "common/record.h"

#include <inttypes.h>
#include <string.h>

void shard_metrics_count_close(shard_metrics *m, unsigned code)
{
    int i;
    switch (code) {
    case 1000: i = SM_CLOSE_1000; break;
    case 1001: i = SM_CLOSE_1001; break;
    case 1002: i = SM_CLOSE_1002; break;
    case 1003: i = SM_CLOSE_1003; break;
    case 1007: i = SM_CLOSE_1007; break;
    case 1008: i = SM_CLOSE_1008; break;
    case 1009: i = SM_CLOSE_1009; break;
    case 1011: i = SM_CLOSE_1011; break;
    default: i = SM_CLOSE_OTHER; break;
    }
    m->ws_disconnects_total[i]++;
}

static const double replay_seconds_bounds[] = {
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30
};
static const double pass_requests_bounds[] = {
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000
};

void shard_metrics_init(shard_metrics *m)
{
    memset(m, 0, sizeof *m);
    prom_hist_init(&m->shard_delivery_latency, prom_latency_bounds, prom_latency_nbounds);
    prom_hist_init(&m->ws_replay_seconds, replay_seconds_bounds,
                   sizeof(replay_seconds_bounds) / sizeof(replay_seconds_bounds[0]));
    prom_hist_init(&m->ws_replay_pass_requests, pass_requests_bounds,
                   sizeof(pass_requests_bounds) / sizeof(pass_requests_bounds[0]));
}

int shard_metrics_render(buf *o, const shard_metrics *m, const shard_gauges *g)
{
    int e = 0;
    e |= prom_gauge(o, "ws_connections_active", "Open WebSocket connections",
               (double)g->connections);
    e |= prom_counter(o, "ws_connections_total", "WebSocket connections upgraded",
                 m->ws_connections_total);
    e |= prom_gauge(o, "ws_connections_pending",
               "Connections still in the HTTP phase", (double)g->pending);
    e |= prom_gauge(o, "ws_connections_closing",
               "Connections in the close handshake", (double)g->closing);
    e |= prom_counter(o, "ws_messages_sent_total",
                 "Record messages queued to clients (one per subscriber)",
                 m->ws_messages_sent_total);
    e |= prom_counter(o, "ws_deflate_connections_total",
                 "Upgrades that negotiated permessage-deflate",
                 m->ws_deflate_connections_total);
    e |= prom_counter(o, "ws_deflate_messages_sent_total",
                 "Messages queued compressed to permessage-deflate clients",
                 m->ws_deflate_messages_sent_total);
    e |= prom_counter(o, "ws_deflate_plain_messages_total",
                 "Messages queued uncompressed to permessage-deflate clients "
                 "(below WS_DEFLATE_MIN_SIZE or not smaller compressed)",
                 m->ws_deflate_plain_messages_total);
    e |= prom_counter(o, "ws_deflate_saved_bytes_total",
                 "Frame bytes saved by compression, summed over every "
                 "compressed message queued",
                 m->ws_deflate_saved_bytes_total);
    e |= prom_counter(o, "ws_deflate_compressions_total",
                 "Messages compressed (at most once per shard each)",
                 m->deflate.compressions);
    e |= prom_counter(o, "ws_deflate_in_bytes_total",
                 "Payload bytes given to the compressor",
                 m->deflate.in_bytes);
    e |= prom_counter(o, "ws_deflate_out_bytes_total",
                 "Compressed payload bytes the compressor produced",
                 m->deflate.out_bytes);
    e |= prom_counter(o, "ws_deflate_incompressible_total",
                 "Messages sent plain because compressing did not shrink them",
                 m->deflate.incompressible);
    e |= prom_counter(o, "ws_deflate_inflated_messages_total",
                 "Compressed client messages inflated",
                 g->inflated);
    e |= prom_counter(o, "ws_deflate_inflate_refused_total",
                 "Compressed client messages refused: inflated over "
                 "WS_MAX_FRAME (1009) or corrupt (1007)",
                 g->inflate_refused);
    e |= prom_counter(o, "ws_replies_sent_total",
                 "Acks, pongs and errors queued to clients",
                 m->ws_replies_sent_total);
    e |= prom_counter(o, "ws_bytes_sent_total", "Bytes written to clients",
                 m->ws_bytes_sent_total);
    e |= prom_counter(o, "ws_messages_received_total",
                 "Text/binary messages received from clients",
                 m->ws_messages_received_total);
    e |= prom_counter(o, "ws_capacity_rejections_total",
                 "Upgrades refused with 503 at WS_MAX_CONNECTIONS",
                 m->ws_capacity_rejections_total);
    e |= prom_counter(o, "ws_drain_rejections_total",
                 "Upgrades refused with 503 while draining (SIGUSR1)",
                 m->ws_drain_rejections_total);
    e |= prom_gauge(o, "shard_draining", "1 while draining (SIGUSR1)",
               (double)(g->draining != 0));
    e |= prom_counter(o, "ws_proxy_headers_total",
                 "PROXY protocol v2 headers accepted (WS_PROXY_PROTOCOL)",
                 m->ws_proxy_headers_total);
    static const char *preasons[SM_PROXY_N] = { "untrusted", "missing", "invalid" };
    e |= prom_head(o, "ws_proxy_rejections_total", "counter",
              "Connections refused by WS_PROXY_PROTOCOL, by reason");
    for (int i = 0; i < SM_PROXY_N; i++)
        e |= buf_appendf(o, "ws_proxy_rejections_total{reason=\"%s\"} %" PRIu64 "\n",
                         preasons[i], m->ws_proxy_rejections_total[i]);
    e |= prom_counter(o, "ws_ratelimit_rejections_total",
                 "Upgrades refused with 429 (per-IP connection rate)",
                 m->ws_ratelimit_rejections_total);
    e |= prom_counter(o, "ws_message_ratelimit_total",
                 "Client messages refused with RATE_LIMIT_EXCEEDED",
                 m->ws_message_ratelimit_total);
    e |= prom_counter(o, "ws_slow_clients_disconnected_total",
                 "Clients closed with 1008 because their send queue was full",
                 m->ws_slow_clients_disconnected_total);
    e |= prom_counter(o, "ws_handshake_failures_total",
                 "Bad HTTP requests and refused upgrades (400/404/405/426/431)",
                 m->ws_handshake_failures_total);
    e |= prom_counter(o, "ws_handshake_timeouts_total",
                 "Connections closed for not finishing the HTTP phase in time",
                 m->ws_handshake_timeouts_total);
    e |= prom_counter(o, "ws_idle_timeouts_total",
                 "Clients closed after WS_IDLE_TIMEOUT of silence",
                 m->ws_idle_timeouts_total);
    e |= prom_counter(o, "ws_pending_rejections_total",
                 "Connections closed at accept: WS_MAX_PENDING reached while a "
                 "drain flushed the shared listener's queue",
                 m->ws_pending_rejections_total);
    e |= prom_counter(o, "ws_accept_paused_total",
                 "Times the shard stopped accepting because WS_MAX_PENDING "
                 "connections were in the HTTP phase",
                 m->ws_accept_paused_total);
    e |= prom_head(o, "ws_accept_paused_seconds_total", "counter",
              "Seconds spent not accepting because of WS_MAX_PENDING (new "
              "clients wait in the listen backlog)");
    e |= buf_appendf(o, "ws_accept_paused_seconds_total %.3f\n",
                     m->ws_accept_paused_seconds_total);
    e |= prom_counter(o, "ws_ip_pending_rejections_total",
                 "Connections closed at accept: their address held WS_IP_MAX_PENDING "
                 "connections in the HTTP phase",
                 m->ws_ip_pending_rejections_total);
    e |= prom_counter(o, "ws_ip_table_full_rejections_total",
                 "Connections refused (503) because the per-IP table was full "
                 "(WS_IP_TABLE_MAX) and their address was not in it",
                 m->ws_ip_table_full_rejections_total);
    e |= prom_gauge(o, "ws_ip_table_entries",
               "Client addresses (IPv6: WS_IPV6_PREFIX prefixes) the per-IP "
               "limits track", (double)g->ip_table_entries);
    e |= prom_head(o, "ws_admin_ratelimit_rejections_total", "counter",
              "/health and /metrics requests refused with 429 (ADMIN_RATE), by path");
    e |= buf_appendf(o, "ws_admin_ratelimit_rejections_total{path=\"/metrics\"} %" PRIu64 "\n"
                     "ws_admin_ratelimit_rejections_total{path=\"/health\"} %" PRIu64 "\n",
                     m->ws_admin_ratelimit_rejections_total[0],
                     m->ws_admin_ratelimit_rejections_total[1]);
    e |= prom_counter(o, "ws_admin_forbidden_total",
                 "/health and /metrics requests from a peer not in ADMIN_ALLOW (404)",
                 m->ws_admin_forbidden_total);
    e |= prom_counter(o, "ws_token_limit_rejections_total",
                 "Channel subscriptions refused (TOO_MANY_TOKENS): their token would have "
                 "taken the shard past SHARD_MAX_TOKENS",
                 m->ws_token_limit_rejections_total);
    e |= prom_counter(o, "ws_ip_channel_rejections_total",
                 "Channel subscriptions refused (TOO_MANY_SUBSCRIPTIONS): their address "
                 "held WS_IP_MAX_CHANNELS across its connections",
                 m->ws_ip_channel_rejections_total);
    e |= prom_counter(o, "ws_admin_api_requests_total",
                 "Admin API requests (/admin/v1/...) answered, refusals excluded",
                 m->ws_admin_api_requests_total);
    e |= prom_head(o, "ws_admin_api_rejections_total", "counter",
              "Admin API requests refused, by reason: unauthorized (401, "
              "ADMIN_TOKEN), forbidden (403, no ADMIN_TOKEN set), ratelimit (429)");
    e |= buf_appendf(o, "ws_admin_api_rejections_total{reason=\"unauthorized\"} %" PRIu64 "\n"
                     "ws_admin_api_rejections_total{reason=\"forbidden\"} %" PRIu64 "\n"
                     "ws_admin_api_rejections_total{reason=\"ratelimit\"} %" PRIu64 "\n",
                     m->ws_admin_api_rejections_total[0],
                     m->ws_admin_api_rejections_total[1],
                     m->ws_admin_api_rejections_total[2]);
    e |= prom_counter(o, "ws_admin_api_disconnects_total",
                 "Clients closed through POST /admin/v1/clients/ID/disconnect",
                 m->ws_admin_api_disconnects_total);
    e |= prom_counter(o, "ws_accept_errors_total", "accept() failures",
                 m->ws_accept_errors_total);
    e |= prom_counter(o, "ws_http_requests_total",
                 "Plain HTTP requests served (/health, /metrics)",
                 m->ws_http_requests_total);
    e |= prom_counter(o, "ws_binary_frames_ignored_total",
                 "Binary messages from clients, ignored (as odin-ws)",
                 m->ws_binary_frames_ignored_total);
    static const char *rcodes[SM_RESUME_N] = {
        "ok", "too_far_behind", "position_expired", "invalid_position",
        "unavailable", "busy", "rate_limited"
    };
    e |= prom_head(o, "ws_reconnects_total", "counter",
              "Reconnect requests (resume from a position), by result");
    for (int i = 0; i < SM_RESUME_N; i++)
        e |= buf_appendf(o, "ws_reconnects_total{result=\"%s\"} %" PRIu64 "\n",
                         rcodes[i], m->ws_reconnects_total[i]);
    e |= prom_counter(o, "ws_replayed_messages_total",
                 "Records replayed from Kafka to reconnecting clients",
                 m->ws_replayed_messages_total);
    e |= prom_counter(o, "ws_replay_duplicates_dropped_total",
                 "Live records not sent because a replay already sent them",
                 m->ws_replay_duplicates_dropped_total);
    e |= prom_head(o, "ws_reconnect_seconds_total", "counter",
              "Time spent in reconnect replays (sum over replays)");
    e |= buf_appendf(o, "ws_reconnect_seconds_total %.3f\n",
                     m->ws_reconnect_seconds_total);
    e |= prom_gauge(o, "ws_reconnects_active", "Reconnect replays running",
               (double)g->resumes);
    e |= prom_gauge(o, "ws_replays_active",
               "Clients replaying now (same as ws_reconnects_active)",
               (double)g->resumes);
    e |= prom_counter(o, "ws_replay_requests_total",
                 "Reconnect requests received (before any budget check)",
                 m->ws_replay_requests_total);
    e |= prom_head(o, "ws_replay_records_skipped_total", "counter",
              "Records the replay read and did not send: they fail the "
              "router's checks (common/record.h), by reason");
    for (int i = 0; i < SM_REPLAY_SKIP_N; i++)
        e |= buf_appendf(o, "ws_replay_records_skipped_total{reason=\"%s\"} %"
                         PRIu64 "\n", record_invalid_name((enum record_invalid)i),
                         m->ws_replay_records_skipped_total[i]);
    e |= prom_counter(o, "ws_replay_kafka_bytes_total",
                 "Key + value bytes the replay reader fetched from Kafka",
                 m->ws_replay_kafka_bytes_total);
    e |= prom_counter(o, "ws_replay_passes_total",
                 "Passes of the replay reader over a partition (start or "
                 "restart to its end)", m->ws_replay_passes_total);
    e |= prom_hist_render(&m->ws_replay_pass_requests, o,
                          "ws_replay_pass_requests",
                          "Requests (channels of reconnecting clients) served "
                          "by one pass over a partition");
    e |= prom_hist_render(&m->ws_replay_seconds, o, "ws_replay_seconds",
                          "Reconnect received to reconnect_ack or "
                          "reconnect_error sent, seconds");
    e |= prom_gauge(o, "ws_replay_memory_bytes",
               "Bytes held for replays: records read and not yet sent, live "
               "records held for resuming clients", (double)g->replay_memory);
    e |= prom_gauge(o, "ws_replay_memory_limit_bytes", "RESUME_MEMORY_BYTES",
               (double)g->replay_memory_limit);
    e |= prom_gauge(o, "ws_replay_partitions_active",
               "Partitions the replay reader is reading",
               (double)g->replay_partitions);
    e |= prom_gauge(o, "ws_replay_history_bytes",
                    "Bytes of records the replay reader keeps to serve "
                    "positions behind it (counted in RESUME_MEMORY_BYTES)",
                    (double)g->replay_history);
    e |= prom_head(o, "ws_client_errors_total", "counter",
              "Error replies sent to clients, by code");
    for (int i = 1; i < SM_CLIENT_ERR_N; i++)
        e |= buf_appendf(o, "ws_client_errors_total{code=\"%s\"} %" PRIu64 "\n",
                         clientmsg_code((enum clientmsg_err)i),
                         m->ws_client_errors_total[i]);
    static const char *codes[SM_CLOSE_N] = {
        "1000", "1001", "1002", "1003", "1007", "1008", "1009", "1011", "other"
    };
    e |= prom_head(o, "ws_disconnects_total", "counter",
              "Close frames sent to clients, by status code");
    for (int i = 0; i < SM_CLOSE_N; i++)
        e |= buf_appendf(o, "ws_disconnects_total{code=\"%s\"} %" PRIu64 "\n",
                         codes[i], m->ws_disconnects_total[i]);
    e |= prom_gauge(o, "ws_subscriptions_active",
               "Channel subscriptions over all clients",
               (double)g->subscriptions);
    e |= prom_gauge(o, "ws_tokens_active", "Tokens with a local subscriber",
               (double)g->tokens);
    e |= prom_gauge(o, "ws_channels_active", "Channels with a local subscriber",
               (double)g->channels);
    e |= prom_gauge(o, "ws_send_queue_bytes", "Bytes queued to clients",
               (double)g->queue_bytes);
    e |= prom_gauge(o, "ws_parser_contexts",
               "Clients with a partially received frame",
               (double)g->parser_contexts);
    e |= prom_gauge(o, "ws_partial_bytes",
               "Bytes charged for half-received client frames (WS_PARTIAL_BUDGET)",
               (double)g->partial_bytes);
    e |= prom_counter(o, "ws_origin_rejections_total",
                 "Upgrades refused with 403: Origin not in WS_ALLOWED_ORIGINS",
                 m->ws_origin_rejections_total);
    e |= prom_counter(o, "ws_partial_budget_closes_total",
                 "Clients closed with 1013: half-received frames over WS_PARTIAL_BUDGET",
                 m->ws_partial_budget_closes_total);
    e |= prom_counter(o, "ws_partial_timeouts_total",
                 "Clients closed with 1008: a frame not completed within WS_PARTIAL_TIMEOUT",
                 m->ws_partial_timeouts_total);
    e |= prom_counter(o, "shard_records_received_total",
                 "Records received from routers",
                 m->shard_records_received_total);
    e |= prom_counter(o, "shard_records_broadcast_total",
                 "Records sent to every client (FRAME_REC_ALL_CLIENTS)",
                 m->shard_records_broadcast_total);
    static const char *drops[SM_DROP_N] = {
        "no_subscribers", "no_channel", "nomem"
    };
    e |= prom_head(o, "shard_records_dropped_total", "counter",
              "Records not delivered to any client, by reason");
    for (int i = 0; i < SM_DROP_N; i++)
        e |= buf_appendf(o,
                         "shard_records_dropped_total{reason=\"%s\"} %" PRIu64
                         "\n", drops[i], m->shard_records_dropped_total[i]);
    e |= prom_counter(o, "shard_frames_received_total", "Router frames decoded",
                 m->shard_frames_received_total);
    e |= prom_counter(o, "shard_ingress_auth_failures_total",
                 "Router connections refused: no or wrong AUTH (SHARD_INGRESS_SECRET)",
                 m->shard_ingress_auth_failures_total);
    static const char *ingress[SM_INGRESS_N] = {
        "pending_full", "source_pending", "timeout", "oversized", "max_routers",
        "version", "identity", "protocol"
    };
    e |= prom_head(o, "shard_ingress_refused_total", "counter",
              "Router connections refused before or at authentication, by reason");
    for (int i = 0; i < SM_INGRESS_N; i++)
        e |= buf_appendf(o,
                         "shard_ingress_refused_total{reason=\"%s\"} %" PRIu64
                         "\n", ingress[i], m->shard_ingress_refused_total[i]);
    e |= prom_gauge(o, "shard_router_connections_pending",
               "Router connections still in the handshake (SHARD_INGRESS_MAX_PENDING)",
               (double)g->routers_pending);
    e |= prom_counter(o, "shard_frames_errors_total",
                 "Router connections closed for a bad frame or hello",
                 m->shard_frames_errors_total);
    e |= prom_gauge(o, "shard_router_connections", "Routers connected and authenticated",
               (double)g->routers);
    e |= prom_counter(o, "shard_router_connections_total", "Router connections",
                 m->shard_router_connections_total);
    e |= prom_gauge(o, "shard_fd_limit", "RLIMIT_NOFILE of the process",
               (double)g->fd_limit);
    e |= prom_gauge(o, "shard_max_connections", "Effective WS_MAX_CONNECTIONS",
               (double)g->max_connections);
    e |= prom_gauge(o, "shard_redis_connected", "1 if Redis is connected",
               (double)g->redis_connected);
    e |= prom_gauge(o, "shard_redis_pending",
               "Token registrations not yet confirmed by Redis",
               (double)g->redis_pending);
    e |= prom_counter(o, "shard_redis_connects_total", "Redis connections made",
                 m->shard_redis_connects_total);
    e |= prom_counter(o, "shard_redis_errors_total",
                 "Redis errors (failed connects, error replies, timeouts)",
                 m->shard_redis_errors_total);
    e |= prom_counter(o, "shard_redis_commands_total", "Redis commands sent",
                 m->shard_redis_commands_total);
    e |= prom_counter(o, "shard_redis_route_updates_total",
                 "Route updates (tokens) sent in batched registration calls",
                 m->shard_redis_route_updates_total);
    e |= prom_counter(o, "shard_redis_script_loads_total",
                 "Registration calls re-sent as EVAL after NOSCRIPT (Redis restarted)",
                 m->shard_redis_script_loads_total);
    e |= prom_gauge(o, "shard_uptime_seconds", "Seconds since start", g->uptime_s);
    /* the shard id as a label, for joins: Prometheus finds shards by
     * address (dns_sd), `* on(instance) group_left(shard_id) shard_info` */
    if (g->shard_id) {
        e |= prom_head(o, "shard_info", "gauge", "Always 1; shard_id is this shard's SHARD_ID");
        e |= buf_appendf(o, "shard_info{shard_id=\"%s\"} 1\n", g->shard_id);
    }
    e |= prom_hist_render(&m->shard_delivery_latency, o, "shard_delivery_latency_seconds",
                    "Kafka record timestamp to the record's frame fully written to a "
                    "client socket, once per delivery (live records, not replays)");
    return e ? -1 : 0;
}

int shard_health_render(buf *o, const shard_gauges *g)
{
    double pct = g->max_connections > 0
                     ? 100.0 * (double)g->connections / (double)g->max_connections
                     : 100.0;
    const char *status = "healthy";
    if (g->draining && !g->stopping)
        status = "draining";
    else if (g->stopping || g->connections >= g->max_connections)
        status = "unhealthy";
    else if (!g->redis_connected || g->routers == 0 || pct >= 90.0)
        status = "degraded";
    int code = strcmp(status, "healthy") == 0 ||
               strcmp(status, "degraded") == 0 ? 200 : 503;
    int e = buf_appendf(o, "{\"status\":\"%s\",\"healthy\":%s,"
                        "\"shard_id\":", status,
                        code == 200 ? "true" : "false");
    e |= buf_append_json_str(o, g->shard_id, strlen(g->shard_id));
    e |= buf_appendf(o,
        ",\"checks\":{\"capacity\":{\"status\":\"%s\",\"current\":%ld,"
        "\"max\":%ld,\"percentage\":%.1f},"
        "\"redis\":{\"status\":\"%s\",\"connected\":%s,\"pending\":%ld},"
        "\"router\":{\"status\":\"%s\",\"connections\":%ld},"
        "\"cpu\":{\"status\":\"%s\",\"usage_percent\":%.1f},"
        "\"memory\":{\"status\":\"%s\",\"rss_bytes\":%" PRIu64
        ",\"limit_bytes\":%" PRIu64 ",\"percentage\":%.2f}},"
        "\"uptime\":%.0f,\"connections\":%ld,\"fd_limit\":%ld,"
        "\"max_connections\":%ld}",
        g->connections >= g->max_connections ? "full"
            : pct >= 90.0 ? "high" : "ok",
        g->connections, g->max_connections, pct,
        g->redis_connected ? "up" : "down",
        g->redis_connected ? "true" : "false", g->redis_pending,
        g->routers > 0 ? "up" : "down", g->routers,
        g->cpu_percent >= 90.0 ? "high" : "ok", g->cpu_percent,
        g->mem_percent >= 90.0 ? "high" : "ok", g->rss_bytes,
        g->mem_limit_bytes, g->mem_percent,
        g->uptime_s, g->connections, g->fd_limit, g->max_connections);
    if (e)
        return -1;
    return code;
}

int shard_livez_render(buf *o, const shard_gauges *g)
{
    int e = buf_appendf(o, "{\"status\":\"live\",\"shard_id\":");
    e |= buf_append_json_str(o, g->shard_id, strlen(g->shard_id));
    e |= buf_appendf(o, ",\"uptime\":%.0f,\"draining\":%s,\"stopping\":%s}\n",
                     g->uptime_s, g->draining ? "true" : "false",
                     g->stopping ? "true" : "false");
    return e ? -1 : 200;
}

int shard_readyz_render(buf *o, const shard_gauges *g)
{
    const char *reason = g->stopping ? "shutting down"
                       : g->draining ? "draining"
                       : g->connections + g->closing >= g->max_connections ? "at capacity"
                       : NULL;
    int e = buf_appendf(o, "{\"status\":\"%s\",\"ready\":%s,\"reason\":",
                        reason ? "not ready" : "ready", reason ? "false" : "true");
    e |= reason ? buf_append_json_str(o, reason, strlen(reason)) : buf_appendf(o, "null");
    e |= buf_appendf(o, ",\"shard_id\":");
    e |= buf_append_json_str(o, g->shard_id, strlen(g->shard_id));
    e |= buf_appendf(o, ",\"connections\":%ld,\"max_connections\":%ld,"
                     "\"redis\":\"%s\",\"routers\":%ld}\n",
                     g->connections, g->max_connections,
                     g->redis_connected ? "up" : "down", g->routers);
    return e ? -1 : reason ? 503 : 200;
}
