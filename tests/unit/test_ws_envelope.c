/* shard/envelope.c (client envelope built once per record), shard/metrics.c
 * (Prometheus page, /health), capacity derivation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/envelope.h"
#include "shard/metrics.h"
#include "shard/shard.h"

#define HAS(b, s) memmem((b).data, (b).len, (s), strlen(s))

static frame_record rec(const char *cat, const char *tok, int64_t off,
                        const char *val)
{
    frame_record r = { .category = cat, .category_len = strlen(cat),
                       .token = tok, .token_len = strlen(tok),
                       .partition = 3, .offset = off,
                       .timestamp_ms = 1700000000123, .value = val,
                       .value_len = strlen(val), .flags = 0 };
    return r;
}

static void test_json(void **state)
{
    buf b = { 0 };
    const char *v = "{\"type\":\"TRADE_EXECUTED\",\"data\":{\"p\":1.5}}";
    frame_record r = rec("trade", "BTC", 42, v);
    assert_int_equal(envelope_json(&b, &r, ENVELOPE_LEGACY, 0), 0);
    char want[512];
    snprintf(want, sizeof(want),
             "{\"seq\":42,\"p\":3,\"ts\":1700000000123,\"type\":\"price:update\","
             "\"priority\":1,\"channel\":\"BTC.trade\",\"data\":%s}", v);
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);

    /* legacy (the default): odin-ws's type and priority for every category */
    const char *cats[] = { "liquidity", "metadata", "social", "community",
                           "creation", "analytics", "balances", "weird" };
    for (size_t i = 0; i < sizeof cats / sizeof cats[0]; i++) {
        buf_reset(&b);
        r = rec(cats[i], "BTC", 1, "{}");
        assert_int_equal(envelope_json(&b, &r, ENVELOPE_LEGACY, 0), 0);
        assert_non_null(HAS(b, "\"type\":\"price:update\",\"priority\":1,"));
    }

    /* category: per-category types */
    buf_reset(&b);
    r = rec("liquidity", "BTC", 1, "{}");
    assert_int_equal(envelope_json(&b, &r, ENVELOPE_CATEGORY, 0), 0);
    assert_non_null(HAS(b, "\"type\":\"liquidity:update\",\"priority\":2,"));
    buf_reset(&b);
    r = rec("trade", "BTC", 1, "{}");
    assert_int_equal(envelope_json(&b, &r, ENVELOPE_CATEGORY, 0), 0);
    assert_non_null(HAS(b, "\"type\":\"price:update\",\"priority\":1,"));

    /* unknown category: "<category>:update", priority 3; empty value: null */
    buf_reset(&b);
    r = rec("weird", "X-1", 0, "");
    assert_int_equal(envelope_json(&b, &r, ENVELOPE_CATEGORY, 0), 0);
    const char *w2 = "{\"seq\":0,\"p\":3,\"ts\":1700000000123,\"type\":\"weird:update\","
                     "\"priority\":3,\"channel\":\"X-1.weird\",\"data\":null}";
    assert_int_equal(b.len, strlen(w2));
    assert_memory_equal(b.data, w2, b.len);

    /* replay flags */
    buf_reset(&b);
    r = rec("trade", "BTC", 7, "{}");
    assert_int_equal(envelope_json(&b, &r, ENVELOPE_LEGACY, ENVELOPE_F_REPLAY), 0);
    const char *w3 = "{\"seq\":7,\"p\":3,\"ts\":1700000000123,\"type\":\"price:update\","
                     "\"priority\":1,\"channel\":\"BTC.trade\",\"replay\":true,\"data\":{}}";
    assert_int_equal(b.len, strlen(w3));
    assert_memory_equal(b.data, w3, b.len);
    buf_reset(&b);
    assert_int_equal(envelope_json(&b, &r, ENVELOPE_CATEGORY, ENVELOPE_F_ODINWS), 0);
    assert_non_null(HAS(b, "\"type\":\"replay:message\",\"priority\":1,"));
    assert_non_null(HAS(b, "\"replay\":true,\"data\":{}}"));

    /* a token that needs escaping stays valid JSON */
    buf_reset(&b);
    r = rec("trade", "a\"b", 1, "1");
    assert_int_equal(envelope_json(&b, &r, ENVELOPE_LEGACY, 0), 0);
    assert_non_null(HAS(b, "\"channel\":\"a\\\"b.trade\""));
    buf_free(&b);
    assert_int_equal(envelope_types_parse("legacy"), ENVELOPE_LEGACY);
    assert_int_equal(envelope_types_parse("category"), ENVELOPE_CATEGORY);
    assert_int_equal(envelope_types_parse("Legacy"), -1);
}

static void test_frame(void **state)
{
    buf scratch = { 0 };
    frame_record r = rec("analytics", "ETH", 7, "{\"x\":1}");
    ws_chunk *c = envelope_frame(&scratch, &r, ENVELOPE_LEGACY, 0);
    assert_non_null(c);
    assert_int_equal(c->refs, 1);
    assert_int_equal(c->data[0], 0x81);          /* FIN + text, unmasked */
    size_t plen = c->data[1];
    assert_true(plen < 126);
    assert_int_equal(c->len, 2 + plen);
    assert_memory_equal(c->data + 2, scratch.data, plen);

    /* large value: 16-bit and 64-bit length forms */
    char *big = malloc(70001);
    memset(big, '1', 70000);
    big[70000] = 0;
    r = rec("trade", "BTC", 1, big);
    ws_chunk *c2 = envelope_frame(&scratch, &r, ENVELOPE_LEGACY, 0);
    assert_non_null(c2);
    assert_int_equal(c2->data[1], 127);
    uint64_t len = 0;
    for (int i = 0; i < 8; i++)
        len = (len << 8) | c2->data[2 + i];
    assert_int_equal(len, scratch.len);
    assert_int_equal(c2->len, 10 + scratch.len);
    ws_chunk_unref(c2);
    big[300] = 0;
    r = rec("trade", "BTC", 1, big);
    c2 = envelope_frame(&scratch, &r, ENVELOPE_LEGACY, 0);
    assert_int_equal(c2->data[1], 126);
    assert_int_equal((c2->data[2] << 8) | c2->data[3], scratch.len);
    ws_chunk_unref(c2);
    free(big);
    ws_chunk_unref(c);
    buf_free(&scratch);
}

static double value_of(const buf *b, const char *series)
{
    char *s = strndup(b->data, b->len);
    size_t n = strlen(series);
    double v = -1;
    for (char *p = s; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            v = strtod(p + n + 1, NULL);
            break;
        }
    free(s);
    return v;
}

static void test_metrics(void **state)
{
    shard_metrics m;
    shard_metrics_init(&m);
    m.ws_connections_total = 5;
    m.ws_slow_clients_disconnected_total = 2;
    m.shard_records_dropped_total[SM_DROP_NO_SUBSCRIBERS] = 9;
    m.ws_client_errors_total[1] = 4;
    shard_metrics_count_close(&m, 1008);
    shard_metrics_count_close(&m, 4000);
    prom_hist_observe(&m.shard_delivery_latency, 0.0015);   /* 2 ms bucket */
    prom_hist_observe(&m.shard_delivery_latency, 20.0);     /* past the last */
    shard_gauges g = { .connections = 3, .max_connections = 100,
                       .fd_limit = 20000, .routers = 2, .redis_connected = 1,
                       .shard_id = "s1" };
    buf b = { 0 };
    assert_int_equal(shard_metrics_render(&b, &m, &g), 0);
    assert_true(value_of(&b, "ws_connections_active") == 3);
    assert_true(value_of(&b, "ws_connections_total") == 5);
    assert_true(value_of(&b, "ws_slow_clients_disconnected_total") == 2);
    assert_true(value_of(&b, "shard_records_dropped_total{reason=\"no_subscribers\"}") == 9);
    assert_true(value_of(&b, "ws_client_errors_total{code=\"INVALID_JSON\"}") == 4);
    assert_true(value_of(&b, "ws_disconnects_total{code=\"1008\"}") == 1);
    assert_true(value_of(&b, "ws_disconnects_total{code=\"other\"}") == 1);
    assert_true(value_of(&b, "shard_fd_limit") == 20000);
    assert_true(value_of(&b, "shard_max_connections") == 100);
    assert_true(value_of(&b, "shard_router_connections") == 2);
    assert_true(value_of(&b, "shard_redis_connected") == 1);
    assert_non_null(HAS(b, "# TYPE ws_messages_sent_total counter"));
    assert_true(value_of(&b, "shard_delivery_latency_seconds_bucket{le=\"0.001\"}") == 0);
    assert_true(value_of(&b, "shard_delivery_latency_seconds_bucket{le=\"0.002\"}") == 1);
    assert_true(value_of(&b, "shard_delivery_latency_seconds_bucket{le=\"10\"}") == 1);
    assert_true(value_of(&b, "shard_delivery_latency_seconds_bucket{le=\"+Inf\"}") == 2);
    assert_true(value_of(&b, "shard_delivery_latency_seconds_count") == 2);
    buf_free(&b);
}

static void test_health(void **state)
{
    buf b = { 0 };
    shard_gauges g = { .connections = 10, .max_connections = 100,
                       .routers = 1, .redis_connected = 1, .shard_id = "s1",
                       .uptime_s = 12.4 };
    assert_int_equal(shard_health_render(&b, &g), 200);
    assert_non_null(HAS(b, "\"status\":\"healthy\",\"healthy\":true,"));
    assert_non_null(HAS(b, "\"capacity\":{\"status\":\"ok\",\"current\":10,"
                           "\"max\":100,\"percentage\":10.0}"));
    /* odin-ws's cpu and memory checks */
    buf_reset(&b);
    g.cpu_percent = 12.34;
    g.rss_bytes = 1048576;
    g.mem_limit_bytes = 4194304;
    g.mem_percent = 25.0;
    assert_int_equal(shard_health_render(&b, &g), 200);
    assert_non_null(HAS(b, "\"cpu\":{\"status\":\"ok\",\"usage_percent\":12.3}"));
    assert_non_null(HAS(b, "\"memory\":{\"status\":\"ok\",\"rss_bytes\":1048576,"
                           "\"limit_bytes\":4194304,\"percentage\":25.00}"));
    g.cpu_percent = 95;
    g.mem_percent = 91;
    buf_reset(&b);
    assert_int_equal(shard_health_render(&b, &g), 200);
    assert_non_null(HAS(b, "\"cpu\":{\"status\":\"high\""));
    assert_non_null(HAS(b, "\"memory\":{\"status\":\"high\""));
    buf_reset(&b);
    g.redis_connected = 0;
    assert_int_equal(shard_health_render(&b, &g), 200);
    assert_non_null(HAS(b, "\"status\":\"degraded\""));
    assert_non_null(HAS(b, "\"redis\":{\"status\":\"down\""));
    buf_reset(&b);
    g.redis_connected = 1;
    g.connections = 100;
    assert_int_equal(shard_health_render(&b, &g), 503);
    assert_non_null(HAS(b, "\"status\":\"unhealthy\",\"healthy\":false,"));
    buf_reset(&b);
    g.connections = 1;
    g.stopping = 1;
    assert_int_equal(shard_health_render(&b, &g), 503);
    buf_free(&b);
}

static void test_capacity(void **state)
{
    assert_int_equal(shard_derive_max_connections(0, 20000, 64, 256), 19680);
    assert_int_equal(shard_derive_max_connections(500, 20000, 64, 256), 500);
    assert_int_equal(shard_derive_max_connections(50000, 20000, 64, 256), 19680);
    assert_int_equal(shard_derive_max_connections(0, 100, 64, 256), 1);
}

/* /livez: always 200; /readyz: 503 when draining, stopping or full (open +
 * closing at the cap), 200 with Redis or routers down. */
static void test_probes(void **state)
{
    (void)state;
    buf b = { 0 };
    shard_gauges g = { .connections = 10, .max_connections = 100,
                       .routers = 0, .redis_connected = 0, .shard_id = "s1" };
    assert_int_equal(shard_readyz_render(&b, &g), 200);
    assert_non_null(HAS(b, "\"status\":\"ready\",\"ready\":true,\"reason\":null"));
    assert_non_null(HAS(b, "\"redis\":\"down\""));
    struct { int draining, stopping; long conns, closing; const char *reason; } c[] = {
        { 1, 0, 10, 0, "draining" },
        { 0, 1, 10, 0, "shutting down" },
        { 1, 1, 10, 0, "shutting down" },
        { 0, 0, 100, 0, "at capacity" },
        { 0, 0, 98, 2, "at capacity" },
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        g.draining = c[i].draining;
        g.stopping = c[i].stopping;
        g.connections = c[i].conns;
        g.closing = c[i].closing;
        buf_reset(&b);
        assert_int_equal(shard_readyz_render(&b, &g), 503);
        char want[96];
        snprintf(want, sizeof want, "\"ready\":false,\"reason\":\"%s\"", c[i].reason);
        assert_non_null(HAS(b, want));
        buf_reset(&b);
        assert_int_equal(shard_livez_render(&b, &g), 200);
        assert_non_null(HAS(b, "\"status\":\"live\""));
    }
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_frame),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_health),
        cmocka_unit_test(test_probes),
        cmocka_unit_test(test_capacity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
