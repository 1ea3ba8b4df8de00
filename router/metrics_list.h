/*
 * Every series of router_metrics_render (router/metrics.c), declared once
 * (docs/style.md): the struct router_metrics fields, the page,
 * `odin-router --metrics-list` and so the generated tables of
 * docs/operations.md come from this list, in the page's order.  (The
 * HTTP server's own router_http_* / router_admin_api_* series and the
 * process_* ones are rendered by router/http.c and common/procmetrics.c.)
 *
 * ROUTER_METRICS(X) calls X(KIND, ...) once per entry; KIND is one of
 *   COUNTER(field, "name", "help")           uint64_t field, one sample
 *   LABELLED(field, "name", "help", "label", n, names)
 *                                            uint64_t field[n], one sample
 *                                            per i < n, label value names(i)
 *   SHARD_DROPS(field, "name", "help", n, names)
 *                                            uint64_t field[n] (totals) split
 *                                            by reason=names(i) and shard, the
 *                                            rest under shard="" (g->shard_at)
 *   HIST(field, "name", "help")              prom_hist field (common/prom.h)
 *   FIELD(type, field)                       a struct field with no series
 *                                            of its own (read by VALUE rows)
 *   VALUE(counter|gauge, expr, "name", "help")
 *                                            no field: `expr` is evaluated
 *                                            when rendering, with `m` the
 *                                            const router_metrics * and `g`
 *                                            the const router_gauges *
 *   SHARD_GAUGE(member, "name", "help")      gauge per shard, label shard,
 *                                            router_shard_sample.member
 */
#ifndef ODIN_ROUTER_METRICS_LIST_H
#define ODIN_ROUTER_METRICS_LIST_H

#define ROUTER_METRICS(X) \
    X(COUNTER, records, "router_records_total", "Kafka records consumed") \
    X(LABELLED, invalid, "router_records_invalid_total", \
      "Records skipped as invalid, by reason", \
      "reason", ROUTER_INV_COUNT, router_invalid_name) \
    X(LABELLED, dispatch, "router_dispatch_total", \
      "Records dispatched, by mode", \
      "mode", ROUTER_MODE_COUNT, router_mode_name) \
    /* drops per shard and reason; what the shard table no longer holds \
     * (forgotten shards) under shard="" so the sum is the total */ \
    X(SHARD_DROPS, drops, "router_drops_total", \
      "Record deliveries to a shard dropped, " \
      "by reason and shard (shard=\"\": shards no longer known)", \
      ROUTER_DROP_COUNT, router_drop_name) \
    X(HIST, fanout, "router_dispatch_fanout", "Shards each record was sent to") \
    X(HIST, lookup_seconds, "router_redis_lookup_seconds", \
      "Pipelined Redis route lookup round trip per batch") \
    X(HIST, batch_size, "router_batch_size", "Records per consumed batch") \
    X(HIST, delivery_seconds, "router_delivery_latency_seconds", \
      "Kafka record timestamp to its batch's frames written to " \
      "the shard sockets (records sent to at least one shard)") \
    X(VALUE, counter, g->cache_hits, "router_cache_hits_total", "Route cache hits") \
    X(VALUE, counter, g->cache_misses, "router_cache_misses_total", "Route cache misses") \
    X(VALUE, counter, g->cache_evictions, "router_cache_evictions_total", \
      "Route cache LRU evictions") \
    X(VALUE, gauge, g->cache_entries, "router_cache_entries", "Route cache entries") \
    X(VALUE, gauge, g->shards_connected, "router_shards_connected", \
      "Shards with a ready connection") \
    X(VALUE, gauge, g->shards_known, "router_shards_known", \
      "Shards with a live lease at last discovery") \
    X(COUNTER, batches, "router_batches_total", "Batches processed") \
    X(VALUE, gauge, g->redis_connected, "router_redis_connected", \
      "1 if the lookup and subscription connections are up") \
    X(VALUE, gauge, g->fallback, "router_fallback_active", \
      "1 while broadcasting because Redis is down") \
    X(VALUE, gauge, g->backpressured, "router_backpressure_active", \
      "1 while consumption waits for a shard " \
      "queue to drain (SHARD_BACKPRESSURE_MS)") \
    X(COUNTER, backpressure_waits, "router_backpressure_waits_total", \
      "Times consumption paused for a shard queue to drain") \
    X(VALUE, gauge, g->holding, "router_hold_active", \
      "1 while consumption is held because the " \
      "shards holding a token cannot be known (ROUTER_HOLD_MAX_MS)") \
    X(COUNTER, holds, "router_holds_total", \
      "Times consumption was held for unknown routes") \
    X(COUNTER, hold_expired, "router_hold_expired_total", \
      "Holds that reached ROUTER_HOLD_MAX_MS and went on in fallback broadcast") \
    X(FIELD, uint64_t, hold_ms)  /* total time held */ \
    X(VALUE, counter, m->hold_ms / 1000, "router_hold_seconds_total", \
      "Time consumption was held") \
    X(COUNTER, registry_resets, "router_registry_resets_total", \
      "Redis registry resets seen (new " \
      "epoch: Redis restarted empty or flushed)") \
    X(COUNTER, shard_grace, "router_shard_grace_total", \
      "Shards whose lease lapsed while " \
      "connected, kept in SHARD_DOWN_GRACE_MS") \
    X(COUNTER, offsets_stored, "router_offsets_stored_total", \
      "Partition positions stored with rd_kafka_offsets_store") \
    X(COUNTER, offsets_store_errors, "router_offsets_store_errors_total", \
      "Failed offset stores") \
    X(COUNTER, redis_lookups, "router_redis_lookups_total", \
      "Pipelined Redis lookup round trips") \
    X(COUNTER, redis_lookup_failures, "router_redis_lookup_failures_total", \
      "Lookups that failed (batch sent in fallback mode)") \
    X(COUNTER, redis_reconnects, "router_redis_reconnects_total", \
      "Redis connections (re)established") \
    X(COUNTER, invalidations, "router_route_invalidations_total", \
      "Messages received on the routes channel") \
    X(COUNTER, discoveries, "router_discoveries_total", \
      "Shard discovery rounds completed") \
    X(COUNTER, shards_cleaned, "router_shards_cleaned_total", \
      "Dead shards whose routes were cleaned") \
    X(COUNTER, frames_sent, "router_frames_sent_total", \
      "Delivery frames fully written") \
    X(COUNTER, shard_auth_failures, "router_shard_auth_failures_total", \
      "Shard links refused in the handshake: no or wrong AUTH " \
      "(SHARD_INGRESS_SECRET), another shard id than the one dialed, or the " \
      "link closed after our AUTH") \
    X(COUNTER, bytes_sent, "router_bytes_sent_total", \
      "Bytes written to shard sockets") \
    X(COUNTER, records_sent, "router_records_sent_total", \
      "Record copies queued to shard " \
      "sockets (one per record per target shard; later losses are in " \
      "router_drops_total)") \
    X(COUNTER, unrouted, "router_records_unrouted_total", \
      "Records in targeted mode " \
      "whose token no shard holds (skipped at no cost to shards)") \
    X(COUNTER, kafka_errors, "router_kafka_errors_total", \
      "Consumer errors reported by librdkafka") \
    X(VALUE, gauge, g->consumer_lag, "router_consumer_lag", \
      "Sum over assigned partitions of high watermark " \
      "minus position (-1 unknown)") \
    X(VALUE, gauge, g->assigned_partitions, "router_assigned_partitions", \
      "Partitions assigned to this router") \
    X(SHARD_GAUGE, queue_bytes, "router_shard_queue_bytes", \
      "Bytes queued for a shard (sum over shard: all shards)") \
    X(VALUE, gauge, g->pending_segments, "router_pending_segments", \
      "Consumed batch segments not yet stored")

#endif
