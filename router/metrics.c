#include "router/metrics.h"
#include "common/prom.h"

#include <string.h>

static const double fanout_bounds[] = { 0, 1, 2, 4, 8, 16, 32, 64, 128 };
static const double lookup_bounds[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1 };
static const double batch_bounds[] = { 1, 10, 50, 100, 250, 500, 1000, 5000 };

const char *router_invalid_name(enum router_invalid r)
{
    static const char *const n[] = { "empty_key", "bad_key", "unknown_topic",
                                     "invalid_json", "oversized" };
    return (unsigned)r < ROUTER_INV_COUNT ? n[r] : "unknown";
}

const char *router_drop_name(enum router_drop r)
{
    static const char *const n[] = { "queue_full", "shard_down", "stalled", "too_big",
                                     "no_shard" };
    return (unsigned)r < ROUTER_DROP_COUNT ? n[r] : "unknown";
}

const char *router_mode_name(enum router_mode m)
{
    static const char *const n[] = { "targeted", "broadcast", "fallback" };
    return (unsigned)m < ROUTER_MODE_COUNT ? n[m] : "unknown";
}

void router_metrics_init(router_metrics *m)
{
    memset(m, 0, sizeof *m);
    prom_hist_init(&m->fanout, fanout_bounds, sizeof fanout_bounds / sizeof(double));
    prom_hist_init(&m->lookup_seconds, lookup_bounds, sizeof lookup_bounds / sizeof(double));
    prom_hist_init(&m->batch_size, batch_bounds, sizeof batch_bounds / sizeof(double));
    prom_hist_init(&m->delivery_seconds, prom_latency_bounds, prom_latency_nbounds);
}

int router_metrics_render(const router_metrics *m, const router_gauges *g, buf *o)
{
    int rc = 0;
    rc |= prom_counter(o, "router_records_total", "Kafka records consumed", m->records);

    rc |= buf_appendf(o, "# HELP router_records_invalid_total Records skipped as invalid, "
                      "by reason\n# TYPE router_records_invalid_total counter\n");
    for (int i = 0; i < ROUTER_INV_COUNT; i++)
        rc |= buf_appendf(o, "router_records_invalid_total{reason=\"%s\"} %llu\n",
                          router_invalid_name((enum router_invalid)i),
                          (unsigned long long)m->invalid[i]);

    rc |= buf_appendf(o, "# HELP router_dispatch_total Records dispatched, by mode\n"
                      "# TYPE router_dispatch_total counter\n");
    for (int i = 0; i < ROUTER_MODE_COUNT; i++)
        rc |= buf_appendf(o, "router_dispatch_total{mode=\"%s\"} %llu\n",
                          router_mode_name((enum router_mode)i),
                          (unsigned long long)m->dispatch[i]);

    /* drops per shard and reason; what the shard table no longer holds
     * (forgotten shards) under shard="" so the sum is the total */
    rc |= buf_appendf(o, "# HELP router_drops_total Record deliveries to a shard dropped, "
                      "by reason and shard (shard=\"\": shards no longer known)\n"
                      "# TYPE router_drops_total counter\n");
    uint64_t left[ROUTER_DROP_COUNT];
    memcpy(left, m->drops, sizeof left);
    router_shard_sample ss;
    for (size_t k = 0; g->shard_at && k < g->nshards; k++) {
        if (g->shard_at(g->shard_ctx, k, &ss) != 0)
            continue;
        for (int i = 0; i < ROUTER_DROP_COUNT; i++) {
            rc |= buf_appendf(o, "router_drops_total{reason=\"%s\",shard=\"%s\"} %llu\n",
                              router_drop_name((enum router_drop)i), ss.id,
                              (unsigned long long)ss.drops[i]);
            left[i] -= ss.drops[i] <= left[i] ? ss.drops[i] : left[i];
        }
    }
    for (int i = 0; i < ROUTER_DROP_COUNT; i++)
        rc |= buf_appendf(o, "router_drops_total{reason=\"%s\",shard=\"\"} %llu\n",
                          router_drop_name((enum router_drop)i),
                          (unsigned long long)left[i]);

    rc |= prom_hist_render(&m->fanout, o, "router_dispatch_fanout",
                             "Shards each record was sent to");
    rc |= prom_hist_render(&m->lookup_seconds, o, "router_redis_lookup_seconds",
                             "Pipelined Redis route lookup round trip per batch");
    rc |= prom_hist_render(&m->batch_size, o, "router_batch_size",
                             "Records per consumed batch");
    rc |= prom_hist_render(&m->delivery_seconds, o, "router_delivery_latency_seconds",
                             "Kafka record timestamp to its batch's frames written to "
                             "the shard sockets (records sent to at least one shard)");

    rc |= prom_counter(o, "router_cache_hits_total", "Route cache hits", g->cache_hits);
    rc |= prom_counter(o, "router_cache_misses_total", "Route cache misses", g->cache_misses);
    rc |= prom_counter(o, "router_cache_evictions_total", "Route cache LRU evictions",
                  g->cache_evictions);
    rc |= prom_gauge(o, "router_cache_entries", "Route cache entries", (double)g->cache_entries);
    rc |= prom_gauge(o, "router_shards_connected", "Shards with a ready connection",
                (double)g->shards_connected);
    rc |= prom_gauge(o, "router_shards_known", "Shards with a live lease at last discovery",
                (double)g->shards_known);
    rc |= prom_counter(o, "router_batches_total", "Batches processed", m->batches);
    rc |= prom_gauge(o, "router_redis_connected",
                "1 if the lookup and subscription connections are up", g->redis_connected);
    rc |= prom_gauge(o, "router_fallback_active", "1 while broadcasting because Redis is down",
                g->fallback);
    rc |= prom_gauge(o, "router_backpressure_active", "1 while consumption waits for a shard "
                "queue to drain (SHARD_BACKPRESSURE_MS)", g->backpressured);
    rc |= prom_counter(o, "router_backpressure_waits_total", "Times consumption paused for a "
                  "shard queue to drain", m->backpressure_waits);
    rc |= prom_gauge(o, "router_hold_active", "1 while consumption is held because the "
                "shards holding a token cannot be known (ROUTER_HOLD_MAX_MS)", g->holding);
    rc |= prom_counter(o, "router_holds_total", "Times consumption was held for unknown "
                  "routes", m->holds);
    rc |= prom_counter(o, "router_hold_expired_total", "Holds that reached "
                  "ROUTER_HOLD_MAX_MS and went on in fallback broadcast", m->hold_expired);
    rc |= prom_counter(o, "router_hold_seconds_total", "Time consumption was held",
                  (uint64_t)(m->hold_ms / 1000));
    rc |= prom_counter(o, "router_registry_resets_total", "Redis registry resets seen (new "
                  "epoch: Redis restarted empty or flushed)", m->registry_resets);
    rc |= prom_counter(o, "router_shard_grace_total", "Shards whose lease lapsed while "
                  "connected, kept in SHARD_DOWN_GRACE_MS", m->shard_grace);
    rc |= prom_counter(o, "router_offsets_stored_total",
                  "Partition positions stored with rd_kafka_offsets_store", m->offsets_stored);
    rc |= prom_counter(o, "router_offsets_store_errors_total", "Failed offset stores",
                  m->offsets_store_errors);
    rc |= prom_counter(o, "router_redis_lookups_total", "Pipelined Redis lookup round trips",
                  m->redis_lookups);
    rc |= prom_counter(o, "router_redis_lookup_failures_total",
                  "Lookups that failed (batch sent in fallback mode)",
                  m->redis_lookup_failures);
    rc |= prom_counter(o, "router_redis_reconnects_total", "Redis connections (re)established",
                  m->redis_reconnects);
    rc |= prom_counter(o, "router_route_invalidations_total", "Messages received on the routes "
                  "channel", m->invalidations);
    rc |= prom_counter(o, "router_discoveries_total", "Shard discovery rounds completed",
                  m->discoveries);
    rc |= prom_counter(o, "router_shards_cleaned_total", "Dead shards whose routes were cleaned",
                  m->shards_cleaned);
    rc |= prom_counter(o, "router_frames_sent_total", "Delivery frames fully written",
                  m->frames_sent);
    rc |= prom_counter(o, "router_shard_auth_failures_total",
                  "Shard links refused: no or wrong AUTH (SHARD_INGRESS_SECRET)",
                  m->shard_auth_failures);
    rc |= prom_counter(o, "router_bytes_sent_total", "Bytes written to shard sockets",
                  m->bytes_sent);
    rc |= prom_counter(o, "router_records_sent_total", "Record copies queued to shard "
                  "sockets (one per record per target shard; later losses are in "
                  "router_drops_total)", m->records_sent);
    rc |= prom_counter(o, "router_records_unrouted_total", "Records in targeted mode "
                  "whose token no shard holds (skipped at no cost to shards)",
                  m->unrouted);
    rc |= prom_counter(o, "router_kafka_errors_total", "Consumer errors reported by librdkafka",
                  m->kafka_errors);
    rc |= prom_gauge(o, "router_consumer_lag", "Sum over assigned partitions of high watermark "
                "minus position (-1 unknown)", (double)g->consumer_lag);
    rc |= prom_gauge(o, "router_assigned_partitions", "Partitions assigned to this router",
                (double)g->assigned_partitions);
    rc |= prom_head(o, "router_shard_queue_bytes", "gauge",
                    "Bytes queued for a shard (sum over shard: all shards)");
    for (size_t k = 0; g->shard_at && k < g->nshards; k++)
        if (g->shard_at(g->shard_ctx, k, &ss) == 0)
            rc |= buf_appendf(o, "router_shard_queue_bytes{shard=\"%s\"} %llu\n", ss.id,
                              (unsigned long long)ss.queue_bytes);
    rc |= prom_gauge(o, "router_pending_segments", "Consumed batch segments not yet stored",
                (double)g->pending_segments);
    return rc ? -1 : 0;
}
