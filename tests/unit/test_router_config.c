/* router/config.c, router/dispatch.c (record classification) and
 * router/metrics.c (histograms, Prometheus text). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "router/config.h"
#include "router/dispatch.h"
#include "router/metrics.h"
#include "tests/support/support.h"

static const char *const vars[] = {
    "KAFKA_BROKERS", "KAFKA_GROUP", "KAFKA_TOPICS", "KAFKA_BATCH_SIZE",
    "KAFKA_OFFSET_RESET", "DISPATCH_MODE", "BROADCAST_TOPICS", "REDIS_URL",
    "ROUTER_ID", "HTTP_ADDR", "LOG_LEVEL", "VALIDATE_JSON", "KAFKA_EVICT_PREVIOUS", NULL,
};

static int setup(void **state)
{
    for (int i = 0; vars[i]; i++)
        unsetenv(vars[i]);
    return 0;
}

static int load(router_config *c, int argc, char **argv)
{
    return router_config_load(c, argc, argv);
}

static void test_defaults(void **state)
{
    router_config c;
    char *argv[] = { "odin-router", "--kafka-brokers=127.0.0.1:9092", NULL };
    assert_int_equal(load(&c, 2, argv), 0);
    assert_string_equal(c.kafka_group, "ws-router");
    assert_int_equal(c.kafka_batch_size, 500);
    assert_int_equal(c.kafka_batch_timeout_ms, 0);
    assert_int_equal(c.offset_earliest, 0);
    assert_int_equal(c.mode, ROUTER_MODE_TARGETED);
    assert_string_equal(c.broadcast_key, "*");
    assert_string_equal(c.redis_prefix, "odin:");
    assert_string_equal(c.redis.host, "127.0.0.1");
    assert_int_equal(c.redis.port, 6379);
    assert_string_equal(c.http_host, "0.0.0.0");
    assert_int_equal(c.http_port, 8080);
    assert_int_equal(c.topics.nsubscribe, 8);
    assert_int_equal(c.validate_json, DISPATCH_JSON_FAST);
    assert_int_equal(c.discovery_interval_ms, 1000);
    char want[64];
    snprintf(want, sizeof want, "-%ld", (long)getpid());
    assert_non_null(strstr(c.id, want));        /* hostname-pid */
    router_config_free(&c);
}

static void test_env_and_flags(void **state)
{
    router_config c;
    setenv("KAFKA_BROKERS", "k:1", 1);
    setenv("DISPATCH_MODE", "broadcast", 1);
    setenv("KAFKA_OFFSET_RESET", "earliest", 1);
    setenv("KAFKA_TOPICS", "odin.trades,x.y=custom", 1);
    setenv("BROADCAST_TOPICS", "sys=system", 1);
    setenv("REDIS_URL", "unix:/tmp/r.sock", 1);
    char *argv[] = { "odin-router", "--router-id", "r-7", "--kafka-batch-size=64",
                     "--http-addr=127.0.0.1:9999", NULL };
    assert_int_equal(load(&c, 5, argv), 0);
    assert_int_equal(c.mode, ROUTER_MODE_BROADCAST);
    assert_int_equal(c.offset_earliest, 1);
    assert_string_equal(c.id, "r-7");
    assert_int_equal(c.kafka_batch_size, 64);
    assert_int_equal(c.http_port, 9999);
    assert_string_equal(c.redis.path, "/tmp/r.sock");
    assert_int_equal(c.topics.nsubscribe, 3);
    assert_true(router_topics_find(&c.topics, "sys", 3)->broadcast);
    router_config_free(&c);
}

static void expect_error(const char *env, const char *val)
{
    router_config c;
    setup(NULL);
    setenv("KAFKA_BROKERS", "k:1", 1);
    setenv(env, val, 1);
    char *argv[] = { "odin-router", NULL };
    assert_int_equal(load(&c, 1, argv), -1);
    router_config_free(&c);
    unsetenv(env);
}

static void test_errors(void **state)
{
    router_config c;
    char *argv[] = { "odin-router", NULL };
    assert_int_equal(load(&c, 1, argv), -1);       /* KAFKA_BROKERS required */
    router_config_free(&c);
    expect_error("DISPATCH_MODE", "sometimes");
    expect_error("KAFKA_OFFSET_RESET", "middle");
    expect_error("KAFKA_BATCH_SIZE", "0");
    expect_error("REDIS_URL", "http://x");
    expect_error("HTTP_ADDR", "nope");
    expect_error("LOG_LEVEL", "loud");
    expect_error("KAFKA_TOPICS", "custom.topic");
    expect_error("VALIDATE_JSON", "maybe");
    expect_error("KAFKA_EVICT_PREVIOUS", "true");  /* without ROUTER_ID */
    char *evict[] = { "odin-router", "--kafka-brokers=k:1", "--router-id=r1",
                      "--kafka-evict-previous=true", NULL };
    assert_int_equal(load(&c, 4, evict), 0);
    assert_int_equal(c.kafka_evict_previous, 1);
    router_config_free(&c);
    /* the eviction is plaintext only: refused with TLS or SASL, not with
     * an explicit plaintext or other options */
    const char *protos[] = { "ssl", "SASL_SSL", "sasl_plaintext", NULL };
    for (int i = 0; protos[i]; i++) {
        char opt[128];
        snprintf(opt, sizeof opt, "--kafka-options=fetch.wait.max.ms=5, security.protocol=%s",
                 protos[i]);
        char *tls[] = { "odin-router", "--kafka-brokers=k:1", "--router-id=r1",
                        "--kafka-evict-previous=true", opt, NULL };
        assert_int_equal(load(&c, 5, tls), -1);
        router_config_free(&c);
        char *off[] = { "odin-router", "--kafka-brokers=k:1", "--router-id=r1", opt, NULL };
        assert_int_equal(load(&c, 4, off), 0);          /* without eviction: fine */
        router_config_free(&c);
    }
    char *plain[] = { "odin-router", "--kafka-brokers=k:1", "--router-id=r1",
                      "--kafka-evict-previous=true",
                      "--kafka-options=security.protocol=PLAINTEXT,session.timeout.ms=3000",
                      NULL };
    assert_int_equal(load(&c, 5, plain), 0);
    router_config_free(&c);
    char *bad[] = { "odin-router", "--kafka-brokers=x", "--no-such-flag=1", NULL };
    assert_int_equal(load(&c, 3, bad), -1);
    router_config_free(&c);
}

static void test_help_lists_every_setting(void **state)
{
    router_config c;
    char *argv[] = { "odin-router", "--help", NULL };
    fflush(stdout);
    int saved = dup(1);
    char path[] = "/tmp/odin-router-help.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    dup2(fd, 1);
    int rc = load(&c, 2, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    assert_int_equal(rc, 1);
    router_config_free(&c);
    char text[32768] = { 0 };
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    unlink(path);
    assert_true(n > 0);
    static const char *const must[] = {
        "KAFKA_BROKERS", "KAFKA_GROUP", "KAFKA_TOPICS", "KAFKA_BATCH_SIZE",
        "KAFKA_BATCH_TIMEOUT_MS", "KAFKA_OFFSET_RESET", "REDIS_URL", "REDIS_PREFIX",
        "DISPATCH_MODE", "BROADCAST_KEY", "BROADCAST_TOPICS", "HTTP_ADDR", "ROUTER_ID",
        "LOG_LEVEL", "ROUTE_CACHE_SIZE", "ROUTE_CACHE_TTL_MS", "SHARD_QUEUE_BYTES",
        "DISCOVERY_INTERVAL_MS", "KAFKA_EVICT_PREVIOUS", "--kafka-batch-size",
        "default: ws-router", NULL,
    };
    for (int i = 0; must[i]; i++)
        assert_non_null(strstr(text, must[i]));
}

static void test_classify(void **state)
{
    router_topics t;
    char err[128];
    assert_int_equal(router_topics_parse(&t, "odin.trades,sys=system", "sys", err,
                                         sizeof err), 0);
    dispatch_rules rules = { "*", 1, 100, DISPATCH_JSON_FAST };
    const router_topic *tr = router_topics_find(&t, "odin.trades", 11);
    const router_topic *sys = router_topics_find(&t, "sys", 3);
    int all;
    enum router_invalid why;
    const char *v = "{\"type\":\"TRADE_EXECUTED\",\"data\":{\"p\":1}}";
    assert_int_equal(dispatch_classify(&rules, tr, "BTC", 3, v, strlen(v), &all, &why), 0);
    assert_false(all);
    assert_int_equal(dispatch_classify(&rules, tr, "*", 1, v, strlen(v), &all, &why), 0);
    assert_true(all);                                   /* broadcast key */
    assert_int_equal(dispatch_classify(&rules, sys, "BTC", 3, v, strlen(v), &all, &why), 0);
    assert_true(all);                                   /* broadcast topic */
    assert_int_equal(dispatch_classify(&rules, NULL, "BTC", 3, v, strlen(v), &all, &why), -1);
    assert_int_equal(why, ROUTER_INV_UNKNOWN_TOPIC);
    assert_int_equal(dispatch_classify(&rules, tr, NULL, 0, v, strlen(v), &all, &why), -1);
    assert_int_equal(why, ROUTER_INV_EMPTY_KEY);
    assert_int_equal(dispatch_classify(&rules, tr, "B C", 3, v, strlen(v), &all, &why), -1);
    assert_int_equal(why, ROUTER_INV_BAD_KEY);
    assert_int_equal(dispatch_classify(&rules, tr, "BTC", 3, "{nope", 5, &all, &why), -1);
    assert_int_equal(why, ROUTER_INV_INVALID_JSON);
    assert_int_equal(dispatch_classify(&rules, tr, "BTC", 3, NULL, 0, &all, &why), -1);
    assert_int_equal(why, ROUTER_INV_INVALID_JSON);
    char big[200];
    memset(big, ' ', sizeof big);
    big[0] = '1';
    assert_int_equal(dispatch_classify(&rules, tr, "BTC", 3, big, sizeof big, &all, &why), -1);
    assert_int_equal(why, ROUTER_INV_OVERSIZED);
    rules.validate_json = DISPATCH_JSON_JANSSON;
    assert_int_equal(dispatch_classify(&rules, tr, "BTC", 3, "{nope", 5, &all, &why), -1);
    assert_int_equal(why, ROUTER_INV_INVALID_JSON);
    assert_int_equal(dispatch_classify(&rules, tr, "BTC", 3, v, strlen(v), &all, &why), 0);
    rules.validate_json = DISPATCH_JSON_OFF;
    assert_int_equal(dispatch_classify(&rules, tr, "BTC", 3, "{nope", 5, &all, &why), 0);
    assert_int_equal(dispatch_json_mode_parse("jansson"), DISPATCH_JSON_JANSSON);
    assert_int_equal(dispatch_json_mode_parse("true"), DISPATCH_JSON_FAST);
    assert_int_equal(dispatch_json_mode_parse("off"), DISPATCH_JSON_OFF);
    assert_int_equal(dispatch_json_mode_parse("sometimes"), -1);
    assert_true(dispatch_json_valid("42", 2));
    assert_true(dispatch_json_valid("\"s\"", 3));
    assert_false(dispatch_json_valid("{} {}", 5));
    assert_false(dispatch_json_valid("{\"a\":1", 6));
    router_topics_free(&t);
}

static int shard_at(const void *ctx, size_t i, router_shard_sample *out)
{
    (void)ctx;
    memset(out, 0, sizeof *out);
    out->id = i == 0 ? "s-1" : "s-2";
    if (i == 0) {
        out->queue_bytes = 4096;
        out->drops[ROUTER_DROP_QUEUE_FULL] = 2;
    } else {
        out->drops[ROUTER_DROP_SHARD_DOWN] = 5;
    }
    return 0;
}

static void test_metrics_render(void **state)
{
    router_metrics m;
    router_metrics_init(&m);
    m.records = 7;
    m.invalid[ROUTER_INV_INVALID_JSON] = 2;
    m.drops[ROUTER_DROP_QUEUE_FULL] = 3;
    m.dispatch[ROUTER_MODE_FALLBACK] = 4;
    prom_hist_observe(&m.fanout, 0);
    prom_hist_observe(&m.fanout, 1);
    prom_hist_observe(&m.fanout, 3);
    prom_hist_observe(&m.fanout, 1000);
    router_gauges g = { .cache_hits = 11, .cache_misses = 5, .cache_entries = 4,
                        .shards_connected = 2, .redis_connected = 1, .consumer_lag = 9 };
    buf b = { 0 };
    assert_int_equal(router_metrics_render(&m, &g, &b), 0);
    buf_append(&b, "", 1);
    const char *s = b.data;
    assert_int_equal((int)tsup_prom_value(s, "router_records_total"), 7);
    assert_int_equal((int)tsup_prom_value(s, "router_records_invalid_total{reason=\"invalid_json\"}"), 2);
    assert_int_equal((int)tsup_prom_value(s, "router_records_invalid_total{reason=\"empty_key\"}"), 0);
    assert_int_equal((int)tsup_prom_value(s, "router_drops_total{reason=\"queue_full\"}"), 3);
    assert_int_equal((int)tsup_prom_value(s, "router_dispatch_total{mode=\"fallback\"}"), 4);
    assert_int_equal((int)tsup_prom_value(s, "router_dispatch_total{mode=\"targeted\"}"), 0);
    /* cumulative buckets */
    assert_int_equal((int)tsup_prom_value(s, "router_dispatch_fanout_bucket{le=\"0\"}"), 1);
    assert_int_equal((int)tsup_prom_value(s, "router_dispatch_fanout_bucket{le=\"1\"}"), 2);
    assert_int_equal((int)tsup_prom_value(s, "router_dispatch_fanout_bucket{le=\"4\"}"), 3);
    assert_int_equal((int)tsup_prom_value(s, "router_dispatch_fanout_bucket{le=\"+Inf\"}"), 4);
    assert_int_equal((int)tsup_prom_value(s, "router_dispatch_fanout_count"), 4);
    assert_int_equal((int)tsup_prom_value(s, "router_dispatch_fanout_sum"), 1004);
    assert_int_equal((int)tsup_prom_value(s, "router_cache_hits_total"), 11);
    assert_int_equal((int)tsup_prom_value(s, "router_cache_misses_total"), 5);
    assert_int_equal((int)tsup_prom_value(s, "router_cache_entries"), 4);
    assert_int_equal((int)tsup_prom_value(s, "router_shards_connected"), 2);
    assert_int_equal((int)tsup_prom_value(s, "router_redis_connected"), 1);
    assert_int_equal((int)tsup_prom_value(s, "router_consumer_lag"), 9);
    static const char *const names[] = {
        "router_batches_total", "router_offsets_stored_total",
        "router_redis_lookup_seconds_count", "router_batch_size_count", NULL };
    for (int i = 0; names[i]; i++)
        assert_true(tsup_prom_value(s, names[i]) >= 0);
    assert_non_null(strstr(s, "# TYPE router_dispatch_fanout histogram"));
    buf_free(&b);

    /* per-shard labels: two shards, one with drops and a queue; what is not
     * attributed to a known shard shows under shard="" */
    m.drops[ROUTER_DROP_SHARD_DOWN] = 5;
    g.nshards = 2;
    g.shard_at = shard_at;
    g.shard_ctx = NULL;
    assert_int_equal(router_metrics_render(&m, &g, &b), 0);
    buf_append(&b, "", 1);
    s = b.data;
    assert_int_equal((int)tsup_prom_value(s, "router_drops_total{reason=\"queue_full\",shard=\"s-1\"}"), 2);
    assert_int_equal((int)tsup_prom_value(s, "router_drops_total{reason=\"queue_full\",shard=\"s-2\"}"), 0);
    assert_int_equal((int)tsup_prom_value(s, "router_drops_total{reason=\"queue_full\",shard=\"\"}"), 1);
    assert_int_equal((int)tsup_prom_value(s, "router_drops_total{reason=\"shard_down\",shard=\"s-2\"}"), 5);
    assert_int_equal((int)tsup_prom_value(s, "router_drops_total{reason=\"queue_full\"}"), 3);
    assert_int_equal((int)tsup_prom_value(s, "router_drops_total{shard=\"s-2\"}"), 5);
    assert_int_equal((int)tsup_prom_value(s, "router_shard_queue_bytes{shard=\"s-1\"}"), 4096);
    assert_int_equal((int)tsup_prom_value(s, "router_shard_queue_bytes"), 4096);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, setup),
        cmocka_unit_test_setup(test_env_and_flags, setup),
        cmocka_unit_test_setup(test_errors, setup),
        cmocka_unit_test_setup(test_help_lists_every_setting, setup),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_metrics_render),
    };
    return cmocka_run_group_tests_name("router_config", tests, NULL, NULL);
}
