/*
 * Every series of the shard's /metrics, declared once (docs/style.md): the
 * struct shard_metrics fields (shard/metrics.h), the page
 * (shard_metrics_render), `odin-shard --metrics-list` and so the generated
 * tables of docs/operations.md all come from this list, in this order (the
 * order of the page).
 *
 * SHARD_METRICS(X) calls X(KIND, ...) once per entry; KIND is one of
 *   COUNTER(field, "name", "help")           uint64_t field, one sample
 *   SECONDS(field, "name", "help")           double field, counter, "%.3f"
 *   LABELLED(field, "name", "help", "label", n, first, names)
 *                                            uint64_t field[n], one sample
 *                                            per i in first..n-1, label value
 *                                            names(i) (shard/metrics.c)
 *   HIST(field, "name", "help")              prom_hist field (common/prom.h)
 *   FIELD(type, field)                       a struct field with no series
 *                                            of its own (read by VALUE rows)
 *   VALUE(counter|gauge, expr, "name", "help")
 *                                            no field: `expr` is evaluated
 *                                            when rendering, with `m` the
 *                                            const shard_metrics * and `g`
 *                                            the const shard_gauges *
 *   INFO(expr, "name", "help", "label")      gauge 1 with label=expr, only
 *                                            when expr is not NULL
 */
#ifndef ODIN_SHARD_METRICS_LIST_H
#define ODIN_SHARD_METRICS_LIST_H

#define SHARD_METRICS(X) \
    X(VALUE, gauge, g->connections, "ws_connections_active", \
      "Open WebSocket connections") \
    X(COUNTER, ws_connections_total, "ws_connections_total", \
      "WebSocket connections upgraded") \
    X(VALUE, gauge, g->pending, "ws_connections_pending", \
      "Connections still in the HTTP phase") \
    X(VALUE, gauge, g->closing, "ws_connections_closing", \
      "Connections in the close handshake") \
    X(COUNTER, ws_messages_sent_total, "ws_messages_sent_total", \
      "Record messages queued to clients (one per subscriber)") \
    X(COUNTER, ws_deflate_connections_total, "ws_deflate_connections_total", \
      "Upgrades that negotiated permessage-deflate") \
    X(COUNTER, ws_deflate_messages_sent_total, "ws_deflate_messages_sent_total", \
      "Messages queued compressed to permessage-deflate clients") \
    X(COUNTER, ws_deflate_plain_messages_total, "ws_deflate_plain_messages_total", \
      "Messages queued uncompressed to permessage-deflate clients " \
      "(below WS_DEFLATE_MIN_SIZE or not smaller compressed)") \
    X(COUNTER, ws_deflate_saved_bytes_total, "ws_deflate_saved_bytes_total", \
      "Frame bytes saved by compression, summed over every " \
      "compressed message queued") \
    X(FIELD, ws_deflate_stats, deflate)  /* the shard's compressor's counts */ \
    X(VALUE, counter, m->deflate.compressions, "ws_deflate_compressions_total", \
      "Messages compressed (at most once per shard each)") \
    X(VALUE, counter, m->deflate.in_bytes, "ws_deflate_in_bytes_total", \
      "Payload bytes given to the compressor") \
    X(VALUE, counter, m->deflate.out_bytes, "ws_deflate_out_bytes_total", \
      "Compressed payload bytes the compressor produced") \
    X(VALUE, counter, m->deflate.incompressible, "ws_deflate_incompressible_total", \
      "Messages sent plain because compressing did not shrink them") \
    X(VALUE, counter, g->inflated, "ws_deflate_inflated_messages_total", \
      "Compressed client messages inflated") \
    X(VALUE, counter, g->inflate_refused, "ws_deflate_inflate_refused_total", \
      "Compressed client messages refused: inflated over " \
      "WS_MAX_FRAME (1009) or corrupt (1007)") \
    X(COUNTER, ws_replies_sent_total, "ws_replies_sent_total", \
      "Acks, pongs and errors queued to clients") \
    X(COUNTER, ws_bytes_sent_total, "ws_bytes_sent_total", \
      "Bytes written to clients") \
    X(COUNTER, ws_messages_received_total, "ws_messages_received_total", \
      "Text/binary messages received from clients") \
    X(COUNTER, ws_capacity_rejections_total, "ws_capacity_rejections_total", \
      "Upgrades refused with 503 at WS_MAX_CONNECTIONS") \
    X(COUNTER, ws_drain_rejections_total, "ws_drain_rejections_total", \
      "Upgrades refused with 503 while draining (SIGUSR1)") \
    X(VALUE, gauge, g->draining != 0, "shard_draining", \
      "1 while draining (SIGUSR1)") \
    X(COUNTER, ws_proxy_headers_total, "ws_proxy_headers_total", \
      "PROXY protocol v2 headers accepted (WS_PROXY_PROTOCOL)") \
    X(LABELLED, ws_proxy_rejections_total, "ws_proxy_rejections_total", \
      "Connections refused by WS_PROXY_PROTOCOL, by reason", \
      "reason", SM_PROXY_N, 0, sm_proxy_name) \
    X(COUNTER, ws_ratelimit_rejections_total, "ws_ratelimit_rejections_total", \
      "Upgrades refused with 429 (per-IP connection rate)") \
    X(COUNTER, ws_message_ratelimit_total, "ws_message_ratelimit_total", \
      "Client messages refused with RATE_LIMIT_EXCEEDED") \
    X(COUNTER, ws_slow_clients_disconnected_total, "ws_slow_clients_disconnected_total", \
      "Clients closed with 1008 because their send queue was full") \
    X(COUNTER, ws_handshake_failures_total, "ws_handshake_failures_total", \
      "Bad HTTP requests and refused upgrades (400/404/405/426/431)") \
    X(COUNTER, ws_handshake_timeouts_total, "ws_handshake_timeouts_total", \
      "Connections closed for not finishing the HTTP phase in time") \
    X(COUNTER, ws_idle_timeouts_total, "ws_idle_timeouts_total", \
      "Clients closed after WS_IDLE_TIMEOUT of silence") \
    X(COUNTER, ws_pending_rejections_total, "ws_pending_rejections_total", \
      "Connections closed at accept: WS_MAX_PENDING reached while a " \
      "drain flushed the shared listener's queue") \
    X(COUNTER, ws_accept_paused_total, "ws_accept_paused_total", \
      "Times the shard stopped accepting because WS_MAX_PENDING " \
      "connections were in the HTTP phase") \
    X(SECONDS, ws_accept_paused_seconds_total, "ws_accept_paused_seconds_total", \
      "Seconds spent not accepting because of WS_MAX_PENDING (new " \
      "clients wait in the listen backlog)") \
    X(COUNTER, ws_ip_pending_rejections_total, "ws_ip_pending_rejections_total", \
      "Connections closed at accept: their address held WS_IP_MAX_PENDING " \
      "connections in the HTTP phase") \
    X(COUNTER, ws_ip_table_full_rejections_total, "ws_ip_table_full_rejections_total", \
      "Connections refused (503) because the per-IP table was full " \
      "(WS_IP_TABLE_MAX) and their address was not in it") \
    X(VALUE, gauge, g->ip_table_entries, "ws_ip_table_entries", \
      "Client addresses (IPv6: WS_IPV6_PREFIX prefixes) the per-IP " \
      "limits track") \
    X(LABELLED, ws_admin_ratelimit_rejections_total, "ws_admin_ratelimit_rejections_total", \
      "/health and /metrics requests refused with 429 (ADMIN_RATE), by path", \
      "path", 2, 0, sm_admin_path_name) \
    X(COUNTER, ws_admin_forbidden_total, "ws_admin_forbidden_total", \
      "/health, /livez, /readyz, /metrics and admin API requests from a peer " \
      "not in ADMIN_ALLOW (404)") \
    X(COUNTER, ws_token_limit_rejections_total, "ws_token_limit_rejections_total", \
      "Channel subscriptions refused (TOO_MANY_TOKENS): their token would have " \
      "taken the shard past SHARD_MAX_TOKENS") \
    X(COUNTER, ws_ip_channel_rejections_total, "ws_ip_channel_rejections_total", \
      "Channel subscriptions refused (TOO_MANY_SUBSCRIPTIONS): their address " \
      "held WS_IP_MAX_CHANNELS across its connections") \
    X(COUNTER, ws_admin_api_requests_total, "ws_admin_api_requests_total", \
      "Admin API requests (/admin/v1/...) answered, refusals excluded") \
    X(LABELLED, ws_admin_api_rejections_total, "ws_admin_api_rejections_total", \
      "Admin API requests refused, by reason: unauthorized (401, " \
      "ADMIN_TOKEN), forbidden (403, a mutating request while no ADMIN_TOKEN is set), " \
      "ratelimit (429)", \
      "reason", 3, 0, sm_admin_api_reason_name) \
    X(COUNTER, ws_admin_api_disconnects_total, "ws_admin_api_disconnects_total", \
      "Clients closed through POST /admin/v1/clients/ID/disconnect") \
    X(COUNTER, ws_accept_errors_total, "ws_accept_errors_total", \
      "accept() failures") \
    X(COUNTER, ws_http_requests_total, "ws_http_requests_total", \
      "Plain HTTP requests served (/health, /metrics)") \
    X(COUNTER, ws_binary_frames_ignored_total, "ws_binary_frames_ignored_total", \
      "Binary messages from clients, ignored (as odin-ws)") \
    X(LABELLED, ws_reconnects_total, "ws_reconnects_total", \
      "Reconnect requests (resume from a position), by result", \
      "result", SM_RESUME_N, 0, sm_resume_name) \
    X(COUNTER, ws_replayed_messages_total, "ws_replayed_messages_total", \
      "Records replayed from Kafka to reconnecting clients") \
    X(COUNTER, ws_replay_duplicates_dropped_total, "ws_replay_duplicates_dropped_total", \
      "Live records not sent because a replay already sent them") \
    X(SECONDS, ws_reconnect_seconds_total, "ws_reconnect_seconds_total", \
      "Time spent in reconnect replays (sum over replays)") \
    X(VALUE, gauge, g->resumes, "ws_reconnects_active", \
      "Reconnect replays running") \
    X(VALUE, gauge, g->resumes, "ws_replays_active", \
      "Clients replaying now (same as ws_reconnects_active)") \
    X(COUNTER, ws_replay_requests_total, "ws_replay_requests_total", \
      "Reconnect requests received (before any budget check)") \
    X(LABELLED, ws_replay_records_skipped_total, "ws_replay_records_skipped_total", \
      "Records the replay read and did not send: they fail the " \
      "router's checks (common/record.h), by reason", \
      "reason", SM_REPLAY_SKIP_N, 0, sm_replay_skip_name) \
    X(COUNTER, ws_replay_kafka_bytes_total, "ws_replay_kafka_bytes_total", \
      "Key + value bytes the replay reader fetched from Kafka") \
    X(COUNTER, ws_replay_passes_total, "ws_replay_passes_total", \
      "Passes of the replay reader over a partition (start or " \
      "restart to its end)") \
    X(HIST, ws_replay_pass_requests, "ws_replay_pass_requests", \
      "Requests (channels of reconnecting clients) served " \
      "by one pass over a partition") \
    X(HIST, ws_replay_seconds, "ws_replay_seconds", \
      "Reconnect received to reconnect_ack or " \
      "reconnect_error sent, seconds") \
    X(VALUE, gauge, g->replay_memory, "ws_replay_memory_bytes", \
      "Bytes held for replays: records read and not yet sent, live " \
      "records held for resuming clients") \
    X(VALUE, gauge, g->replay_memory_limit, "ws_replay_memory_limit_bytes", \
      "RESUME_MEMORY_BYTES") \
    X(VALUE, gauge, g->replay_partitions, "ws_replay_partitions_active", \
      "Partitions the replay reader is reading") \
    X(VALUE, gauge, g->replay_history, "ws_replay_history_bytes", \
      "Bytes of records the replay reader keeps to serve " \
      "positions behind it (counted in RESUME_MEMORY_BYTES)") \
    X(LABELLED, ws_client_errors_total, "ws_client_errors_total", \
      "Error replies sent to clients, by code", \
      "code", SM_CLIENT_ERR_N, 1, sm_client_err_name) \
    X(LABELLED, ws_disconnects_total, "ws_disconnects_total", \
      "Close frames sent to clients, by status code", \
      "code", SM_CLOSE_N, 0, sm_close_name) \
    X(VALUE, gauge, g->subscriptions, "ws_subscriptions_active", \
      "Channel subscriptions over all clients") \
    X(VALUE, gauge, g->tokens, "ws_tokens_active", \
      "Tokens with a local subscriber") \
    X(VALUE, gauge, g->channels, "ws_channels_active", \
      "Channels with a local subscriber") \
    X(VALUE, gauge, g->queue_bytes, "ws_send_queue_bytes", \
      "Bytes queued to clients") \
    X(VALUE, gauge, g->parser_contexts, "ws_parser_contexts", \
      "Clients with a partially received frame") \
    X(VALUE, gauge, g->partial_bytes, "ws_partial_bytes", \
      "Bytes charged for half-received client frames (WS_PARTIAL_BUDGET)") \
    X(COUNTER, ws_origin_rejections_total, "ws_origin_rejections_total", \
      "Upgrades refused with 403: Origin not in WS_ALLOWED_ORIGINS") \
    X(COUNTER, ws_partial_budget_closes_total, "ws_partial_budget_closes_total", \
      "Clients closed with 1013: half-received frames over WS_PARTIAL_BUDGET") \
    X(COUNTER, ws_partial_timeouts_total, "ws_partial_timeouts_total", \
      "Clients closed with 1008: a frame not completed within WS_PARTIAL_TIMEOUT") \
    X(COUNTER, shard_records_received_total, "shard_records_received_total", \
      "Records received from routers") \
    X(COUNTER, shard_records_broadcast_total, "shard_records_broadcast_total", \
      "Records sent to every client (FRAME_REC_ALL_CLIENTS)") \
    X(LABELLED, shard_records_dropped_total, "shard_records_dropped_total", \
      "Records not delivered to any client, by reason", \
      "reason", SM_DROP_N, 0, sm_drop_name) \
    X(COUNTER, shard_frames_received_total, "shard_frames_received_total", \
      "Router frames decoded") \
    X(COUNTER, shard_ingress_auth_failures_total, "shard_ingress_auth_failures_total", \
      "Router connections refused: no or wrong AUTH (SHARD_INGRESS_SECRET)") \
    X(LABELLED, shard_ingress_refused_total, "shard_ingress_refused_total", \
      "Router connections refused before or at authentication, by reason", \
      "reason", SM_INGRESS_N, 0, sm_ingress_name) \
    X(VALUE, gauge, g->routers_pending, "shard_router_connections_pending", \
      "Router connections still in the handshake (SHARD_INGRESS_MAX_PENDING)") \
    X(COUNTER, shard_frames_errors_total, "shard_frames_errors_total", \
      "Router connections closed for a bad frame or hello") \
    X(VALUE, gauge, g->routers, "shard_router_connections", \
      "Routers connected and authenticated") \
    X(COUNTER, shard_router_connections_total, "shard_router_connections_total", \
      "Router connections") \
    X(VALUE, gauge, g->fd_limit, "shard_fd_limit", \
      "RLIMIT_NOFILE of the process") \
    X(VALUE, gauge, g->max_connections, "shard_max_connections", \
      "Effective WS_MAX_CONNECTIONS") \
    X(VALUE, gauge, g->redis_connected, "shard_redis_connected", \
      "1 if Redis is connected") \
    X(VALUE, gauge, g->redis_pending, "shard_redis_pending", \
      "Token registrations not yet confirmed by Redis") \
    X(COUNTER, shard_redis_connects_total, "shard_redis_connects_total", \
      "Redis connections made") \
    X(COUNTER, shard_redis_errors_total, "shard_redis_errors_total", \
      "Redis errors (failed connects, error replies, timeouts)") \
    X(COUNTER, shard_redis_commands_total, "shard_redis_commands_total", \
      "Redis commands sent") \
    X(COUNTER, shard_redis_route_updates_total, "shard_redis_route_updates_total", \
      "Route updates (tokens) sent in batched registration calls") \
    X(COUNTER, shard_redis_script_loads_total, "shard_redis_script_loads_total", \
      "Registration calls re-sent as EVAL after NOSCRIPT (Redis restarted)") \
    X(VALUE, gauge, g->uptime_s, "shard_uptime_seconds", \
      "Seconds since start") \
    /* the shard id as a label, for joins: Prometheus finds shards by \
     * address (dns_sd), `* on(instance) group_left(shard_id) shard_info` */ \
    X(INFO, g->shard_id, "shard_info", \
      "Always 1; shard_id is this shard's SHARD_ID", "shard_id") \
    X(HIST, shard_delivery_latency, "shard_delivery_latency_seconds", \
      "Kafka record timestamp to the record's frame fully written to a " \
      "client socket, once per delivery (live records, not replays)")

#endif
