/* The /metrics pages of shard/metrics.c and router/metrics.c, byte for byte:
 * a fresh metrics struct and one with every field, gauge and histogram set
 * to a distinct value render exactly tests/unit/fixtures/{shard,router}_metrics.txt
 * (captured from the hand-written renderers before the metric lists; names,
 * label sets, help text, order and number formats must not drift).
 * ODIN_UPDATE_FIXTURES=1 rewrites the fixtures instead of comparing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "router/metrics.h"
#include "shard/metrics.h"

static uint64_t v;   /* the next distinct value */

#define S(f) (m->f = ++v)
#define SA(f) do { for (size_t i_ = 0; i_ < sizeof m->f / sizeof m->f[0]; i_++) m->f[i_] = ++v; } while (0)
#define SH(f) do { for (int i_ = 0; i_ < 5; i_++) prom_hist_observe(&m->f, (double)(++v % 97) * 0.37); } while (0)

static void shard_fill(shard_metrics *m, shard_gauges *g)
{
    S(ws_connections_total); S(ws_messages_sent_total); S(ws_replies_sent_total);
    S(ws_bytes_sent_total); S(ws_messages_received_total);
    S(ws_capacity_rejections_total); S(ws_drain_rejections_total);
    S(ws_ratelimit_rejections_total); S(ws_message_ratelimit_total);
    S(ws_slow_clients_disconnected_total); S(ws_handshake_failures_total);
    S(ws_handshake_timeouts_total); S(ws_idle_timeouts_total);
    S(ws_origin_rejections_total); S(ws_partial_budget_closes_total);
    S(ws_partial_timeouts_total); S(ws_pending_rejections_total);
    S(ws_ip_pending_rejections_total); S(ws_ip_table_full_rejections_total);
    SA(ws_admin_ratelimit_rejections_total); S(ws_admin_forbidden_total);
    S(ws_token_limit_rejections_total); S(ws_ip_channel_rejections_total);
    S(ws_admin_api_requests_total); SA(ws_admin_api_rejections_total);
    S(ws_admin_api_disconnects_total); S(ws_proxy_headers_total);
    SA(ws_proxy_rejections_total); S(ws_accept_errors_total);
    S(ws_accept_paused_total);
    m->ws_accept_paused_seconds_total = (double)++v + 0.1234;
    S(ws_http_requests_total); S(ws_binary_frames_ignored_total);
    SA(ws_reconnects_total); S(ws_replayed_messages_total);
    S(ws_replay_duplicates_dropped_total);
    m->ws_reconnect_seconds_total = (double)++v + 0.5678;
    S(ws_replay_requests_total); SA(ws_replay_records_skipped_total);
    S(ws_replay_kafka_bytes_total); S(ws_replay_passes_total);
    SH(ws_replay_pass_requests); SH(ws_replay_seconds);
    SA(ws_client_errors_total); SA(ws_disconnects_total);
    S(shard_records_received_total); S(shard_records_broadcast_total);
    SA(shard_records_dropped_total); S(shard_frames_received_total);
    S(shard_frames_errors_total); S(shard_ingress_auth_failures_total);
    SA(shard_ingress_refused_total); S(shard_router_connections_total);
    S(shard_redis_connects_total); S(shard_redis_errors_total);
    S(shard_redis_commands_total); S(shard_redis_route_updates_total);
    S(shard_redis_script_loads_total); SH(shard_delivery_latency);
    S(ws_deflate_connections_total); S(ws_deflate_messages_sent_total);
    S(ws_deflate_plain_messages_total); S(ws_deflate_saved_bytes_total);
    S(deflate.compressions); S(deflate.skipped_small); S(deflate.incompressible);
    S(deflate.in_bytes); S(deflate.out_bytes);
#define G(f) (g->f = (long)++v)
    G(connections); G(max_connections); G(pending); G(closing);
    G(subscriptions); G(tokens); G(channels); G(queue_bytes);
    G(parser_contexts); g->inflated = ++v; g->inflate_refused = ++v;
    G(partial_bytes); G(routers); G(routers_pending); G(fd_limit);
    g->redis_connected = 1; G(redis_pending); g->uptime_s = (double)++v + 0.25;
    g->stopping = 0; g->draining = 1; g->shard_id = "shard-7";
    g->cpu_percent = 12.5; g->rss_bytes = ++v; g->mem_limit_bytes = ++v;
    g->mem_percent = 3.25; G(resumes); G(ip_table_entries); G(replay_memory);
    G(replay_memory_limit); G(replay_partitions); G(replay_history);
#undef G
}

typedef struct two_shards { router_shard_sample s[2]; } two_shards;

static int shard_at(const void *ctx, size_t i, router_shard_sample *out)
{
    const two_shards *t = ctx;
    *out = t->s[i];
    return 0;
}

static void router_fill(router_metrics *m, router_gauges *g, two_shards *t)
{
    S(records); SA(invalid); SA(dispatch); S(records_sent); S(unrouted);
    S(backpressure_waits); SA(drops); S(batches); S(offsets_stored);
    S(offsets_store_errors); S(redis_lookups); S(redis_lookup_failures);
    S(redis_reconnects); S(discoveries); S(shards_cleaned); S(invalidations);
    S(frames_sent); S(bytes_sent); S(kafka_errors); S(shard_auth_failures);
    S(registry_resets); S(holds); S(hold_expired); m->hold_ms = 123456;
    S(shard_grace); SH(fanout); SH(lookup_seconds); SH(batch_size);
    SH(delivery_seconds);
    g->cache_hits = ++v; g->cache_misses = ++v; g->cache_entries = ++v;
    g->cache_evictions = ++v; g->shards_connected = ++v; g->shards_known = ++v;
    g->redis_connected = 1; g->consumer_lag = (int64_t)++v;
    g->assigned_partitions = ++v; g->queue_bytes = ++v; g->pending_segments = ++v;
    g->fallback = 1; g->backpressured = 1; g->holding = 1;
    t->s[0].id = "s-a"; t->s[1].id = "s-b";
    for (int k = 0; k < 2; k++) {
        t->s[k].queue_bytes = ++v;
        for (int i = 0; i < ROUTER_DROP_COUNT; i++)
            t->s[k].drops[i] = m->drops[i] / 4 + (uint64_t)k;
    }
    g->nshards = 2; g->shard_at = shard_at; g->shard_ctx = t;
}

static void check(const char *name, const buf *b)
{
    /* ODIN_TOP, else two levels above this binary (BUILD/tests/test_x) */
    const char *top = getenv("ODIN_TOP");
    char exe[900] = ".", path[1024];
    if (!top) {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[n > 0 ? n : 1] = '\0';
        for (int up = 0; up < 3; up++) {
            char *sl = strrchr(exe, '/');
            if (sl)
                *sl = '\0';
        }
        top = exe;
    }
    snprintf(path, sizeof path, "%s/tests/unit/fixtures/%s", top, name);
    if (getenv("ODIN_UPDATE_FIXTURES")) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(fwrite(b->data, 1, b->len, f), b->len);
        assert_int_equal(fclose(f), 0);
        return;
    }
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s (run with ODIN_TOP set)", path);
    static char want[1 << 17];
    size_t n = fread(want, 1, sizeof want, f);
    fclose(f);
    if (n != b->len || memcmp(want, b->data, n) != 0) {
        size_t i = 0;
        while (i < n && i < b->len && want[i] == b->data[i])
            i++;
        size_t s = i > 60 ? i - 60 : 0;
        fail_msg("%s differs at byte %zu:\nwant ...%.*s\ngot  ...%.*s", name, i,
                 (int)((n > s + 160 ? s + 160 : n) - s), want + s,
                 (int)((b->len > s + 160 ? s + 160 : b->len) - s), b->data + s);
    }
}

static void test_shard_page(void **state)
{
    (void)state;
    shard_metrics *m = calloc(1, sizeof *m);
    assert_non_null(m);
    shard_metrics_init(m);
    shard_gauges g0 = { .shard_id = "s0" }, g;
    memset(&g, 0, sizeof g);
    buf b = { 0 };
    assert_int_equal(shard_metrics_render(&b, m, &g0), 0);
    assert_int_equal(buf_appendf(&b, "#### every field set\n"), 0);
    v = 0;
    shard_fill(m, &g);
    assert_int_equal(shard_metrics_render(&b, m, &g), 0);
    check("shard_metrics.txt", &b);
    buf_free(&b);
    free(m);
}

static void test_router_page(void **state)
{
    (void)state;
    router_metrics *m = calloc(1, sizeof *m);
    assert_non_null(m);
    router_metrics_init(m);
    router_gauges g0 = { .consumer_lag = -1 }, g;
    memset(&g, 0, sizeof g);
    two_shards t;
    memset(&t, 0, sizeof t);
    buf b = { 0 };
    assert_int_equal(router_metrics_render(m, &g0, &b), 0);
    assert_int_equal(buf_appendf(&b, "#### every field set\n"), 0);
    v = 1000;
    router_fill(m, &g, &t);
    assert_int_equal(router_metrics_render(m, &g, &b), 0);
    check("router_metrics.txt", &b);
    buf_free(&b);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shard_page),
        cmocka_unit_test(test_router_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
