/* tools/lib/eventgen: PRNG, Zipf sampler, topic -> type, event JSON builder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/buf.h"
#include "tools/lib/eventgen.h"
#include "common/topics.h"

static void test_rng_deterministic(void **state)
{
    (void)state;
    eventgen_rng a, b, c;
    eventgen_rng_seed(&a, 42);
    eventgen_rng_seed(&b, 42);
    eventgen_rng_seed(&c, 43);
    int differ = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = eventgen_rng_next(&a);
        assert_true(x == eventgen_rng_next(&b));
        differ += x != eventgen_rng_next(&c);
    }
    assert_true(differ > 990);
    eventgen_rng z; /* seed 0 is valid (not the all-zero xoshiro state) */
    eventgen_rng_seed(&z, 0);
    assert_true(eventgen_rng_next(&z) != 0 || eventgen_rng_next(&z) != 0);
}

static void test_rng_ranges(void **state)
{
    (void)state;
    eventgen_rng r;
    eventgen_rng_seed(&r, 7);
    long hist[10] = { 0 };
    const int N = 100000;
    for (int i = 0; i < N; i++) {
        double d = eventgen_rng_double(&r);
        assert_true(d >= 0.0 && d < 1.0);
        uint64_t k = eventgen_rng_below(&r, 10);
        assert_true(k < 10);
        hist[k]++;
    }
    for (int k = 0; k < 10; k++) /* 10000 expected, sd ~95 */
        assert_true(hist[k] > 9400 && hist[k] < 10600);
    assert_int_equal(eventgen_rng_below(&r, 1), 0);
}

static void test_zipf_errors(void **state)
{
    (void)state;
    eventgen_zipf z;
    assert_int_equal(eventgen_zipf_init(&z, 0, 1.1), -1);
    assert_int_equal(eventgen_zipf_init(&z, 5, 0.0), -1);
    assert_int_equal(eventgen_zipf_init(&z, 5, -1.0), -1);
    assert_int_equal(eventgen_zipf_init(&z, 5, NAN), -1);
    assert_int_equal(eventgen_zipf_init(&z, 5, INFINITY), -1);
    eventgen_zipf_free(&z); /* zeroed by the failed init: no-op */
    eventgen_zipf_free(NULL);
}

static void test_zipf_single(void **state)
{
    (void)state;
    eventgen_zipf z;
    eventgen_rng r;
    eventgen_rng_seed(&r, 1);
    assert_int_equal(eventgen_zipf_init(&z, 1, 1.1), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(eventgen_zipf_sample(&z, &r), 0);
    eventgen_zipf_free(&z);
    eventgen_zipf_free(&z); /* twice is fine */
}

static void test_zipf_distribution(void **state)
{
    (void)state;
    const size_t n = 100;
    const double s = 1.1;
    eventgen_zipf z;
    eventgen_rng r;
    eventgen_rng_seed(&r, 12345);
    assert_int_equal(eventgen_zipf_init(&z, n, s), 0);
    for (size_t k = 1; k < n; k++)
        assert_true(z.cdf[k] >= z.cdf[k - 1]);
    assert_true(z.cdf[n - 1] == 1.0);

    long *cnt = calloc(n, sizeof(long));
    assert_non_null(cnt);
    const long N = 400000;
    for (long i = 0; i < N; i++) {
        size_t k = eventgen_zipf_sample(&z, &r);
        assert_true(k < n);
        cnt[k]++;
    }
    double h = 0;
    for (size_t k = 0; k < n; k++)
        h += 1.0 / pow((double)(k + 1), s);
    for (size_t k = 0; k < 5; k++) { /* head ranks within 3% of theory */
        double want = (double)N / pow((double)(k + 1), s) / h;
        assert_true(fabs((double)cnt[k] - want) < 0.03 * want);
    }
    assert_true(cnt[0] > cnt[1] && cnt[1] > cnt[2] && cnt[2] > cnt[9]);
    assert_true(cnt[n - 1] > 0);
    free(cnt);
    eventgen_zipf_free(&z);
    assert_null(z.cdf);
}

static void test_type_for_topic(void **state)
{
    (void)state;
    static const char *want[][2] = {
        { "odin.trades", "TRADE_EXECUTED" },
        { "odin.liquidity", "LIQUIDITY_ADDED" },
        { "odin.metadata", "METADATA_UPDATED" },
        { "odin.social", "SOCIAL_POST" },
        { "odin.community", "COMMUNITY_MESSAGE" },
        { "odin.creation", "TOKEN_CREATED" },
        { "odin.analytics", "ANALYTICS_UPDATE" },
        { "odin.balances", "BALANCE_CHANGED" },
        { "bench.42.trades", "TRADE_EXECUTED" },
        { "balances", "BALANCE_CHANGED" },
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_string_equal(eventgen_type_for_topic(want[i][0]), want[i][1]);
    /* every default topic has a type */
    for (size_t i = 0; i < topics_default_count; i++)
        assert_non_null(eventgen_type_for_topic(topics_default[i].topic));
    assert_null(eventgen_type_for_topic("odin.unknown"));
    assert_null(eventgen_type_for_topic("odin.trades.x"));
    assert_null(eventgen_type_for_topic("odin."));
    assert_null(eventgen_type_for_topic(""));
    assert_null(eventgen_type_for_topic(NULL));
}

/* Parse v (len n) and check the envelope; returns the root (caller decrefs). */
static json_t *parse_event(const char *v, size_t n, const char *type,
                           const char *token, uint64_t us)
{
    json_error_t e;
    json_t *root = json_loadb(v, n, 0, &e);
    if (!root)
        fail_msg("invalid JSON (%s): %.*s", e.text, (int)n, v);
    assert_true(json_is_object(root));
    assert_string_equal(json_string_value(json_object_get(root, "type")), type);
    json_t *ts = json_object_get(root, "timestamp");
    json_t *pu = json_object_get(root, "publish_us");
    assert_true(json_is_integer(ts) && json_is_integer(pu));
    assert_int_equal(json_integer_value(pu), (json_int_t)us);
    assert_int_equal(json_integer_value(ts), (json_int_t)(us / 1000));
    json_t *data = json_object_get(root, "data");
    assert_true(json_is_object(data));
    assert_string_equal(json_string_value(json_object_get(data, "token")),
                        token);
    return root;
}

static void test_build_every_type(void **state)
{
    (void)state;
    static const char *topics[] = {
        "odin.trades", "odin.liquidity", "odin.metadata", "odin.social",
        "odin.community", "odin.creation", "odin.analytics", "odin.balances",
    };
    static const char *tokens[] = { "BTC", "TOK17", "a-b_C", "DOGE" };
    eventgen_rng r;
    eventgen_rng_seed(&r, 99);
    buf b = { 0 };
    for (int round = 0; round < 50; round++) {
        for (size_t t = 0; t < 8; t++) {
            const char *tok = tokens[(round + t) % 4];
            eventgen_event ev = {
                .type = eventgen_type_for_topic(topics[t]),
                .token = tok,
                .publish_us = 1795000000123456ULL + (uint64_t)round,
                .seq = (uint64_t)round,
            };
            buf_reset(&b);
            assert_int_equal(eventgen_build(&b, &ev, &r), 0);
            json_t *root = parse_event(b.data, b.len, ev.type, tok,
                                       ev.publish_us);
            json_t *d = json_object_get(root, "data");
            assert_null(json_object_get(d, "pad"));
            if (t == 0) { /* trades: price/amount strings, side */
                const char *side =
                    json_string_value(json_object_get(d, "side"));
                assert_non_null(side);
                assert_true(!strcmp(side, "buy") || !strcmp(side, "sell"));
                const char *price =
                    json_string_value(json_object_get(d, "price"));
                const char *amount =
                    json_string_value(json_object_get(d, "amount"));
                assert_non_null(price);
                assert_non_null(amount);
                assert_true(strtod(price, NULL) > 0);
                assert_true(strtod(amount, NULL) > 0);
            }
            assert_true(json_object_size(d) >= 3);
            json_decref(root);
        }
    }
    buf_free(&b);
}

static void test_build_padding(void **state)
{
    (void)state;
    eventgen_rng r;
    eventgen_rng_seed(&r, 5);
    buf b = { 0 };
    eventgen_event ev = { .type = "SOCIAL_POST", .token = "ETH",
                          .publish_us = 1000000, .seq = 1 };
    assert_int_equal(eventgen_build(&b, &ev, &r), 0);
    size_t natural = b.len;

    /* too small to pad: natural size */
    size_t sizes[] = { 1, natural, natural + 8 };
    for (size_t i = 0; i < 3; i++) {
        eventgen_rng_seed(&r, 5);
        buf_reset(&b);
        ev.pad_to = sizes[i];
        assert_int_equal(eventgen_build(&b, &ev, &r), 0);
        assert_int_equal(b.len, natural);
    }
    /* exact sizes from the first paddable one up to 64 KiB */
    size_t want[] = { natural + 9, natural + 10, 1024, 4096, 65536 };
    for (size_t i = 0; i < 5; i++) {
        eventgen_rng_seed(&r, 5);
        buf_reset(&b);
        ev.pad_to = want[i];
        assert_int_equal(eventgen_build(&b, &ev, &r), 0);
        assert_int_equal(b.len, want[i]);
        json_t *root = parse_event(b.data, b.len, "SOCIAL_POST", "ETH", 1000000);
        assert_true(json_is_string(json_object_get(json_object_get(root, "data"),
                                                   "pad")));
        json_decref(root);
    }
    buf_free(&b);
}

static void test_build_appends_and_errors(void **state)
{
    (void)state;
    eventgen_rng r;
    eventgen_rng_seed(&r, 3);
    buf b = { 0 };
    assert_int_equal(buf_append(&b, "prefix", 6), 0);
    eventgen_event ev = { .type = "TRADE_EXECUTED", .token = "BTC",
                          .publish_us = 42000, .seq = 9 };
    assert_int_equal(eventgen_build(&b, &ev, &r), 0);
    assert_memory_equal(b.data, "prefix", 6);
    json_decref(parse_event(b.data + 6, b.len - 6, "TRADE_EXECUTED", "BTC",
                            42000));

    size_t before = b.len;
    eventgen_event bad_tok = ev;
    bad_tok.token = "BT\"C";
    assert_int_equal(eventgen_build(&b, &bad_tok, &r), -1);
    bad_tok.token = "";
    assert_int_equal(eventgen_build(&b, &bad_tok, &r), -1);
    bad_tok.token = NULL;
    assert_int_equal(eventgen_build(&b, &bad_tok, &r), -1);
    eventgen_event bad_type = ev;
    bad_type.type = "NOT_A_TYPE";
    assert_int_equal(eventgen_build(&b, &bad_type, &r), -1);
    bad_type.type = NULL;
    assert_int_equal(eventgen_build(&b, &bad_type, &r), -1);
    assert_int_equal(b.len, before);
    buf_free(&b);
}

static void test_build_deterministic(void **state)
{
    (void)state;
    eventgen_rng r1, r2;
    eventgen_rng_seed(&r1, 77);
    eventgen_rng_seed(&r2, 77);
    buf a = { 0 }, b = { 0 };
    eventgen_event ev = { .type = "ANALYTICS_UPDATE", .token = "SOL",
                          .publish_us = 1, .seq = 2, .pad_to = 300 };
    assert_int_equal(eventgen_build(&a, &ev, &r1), 0);
    assert_int_equal(eventgen_build(&b, &ev, &r2), 0);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    buf_free(&a);
    buf_free(&b);
}

/* token_seq lands in data for clients' gap detection, only when set. */
static void test_build_token_seq(void **state)
{
    (void)state;
    eventgen_rng r;
    eventgen_rng_seed(&r, 5);
    buf b = { 0 };
    eventgen_event ev = { .type = "TRADE_EXECUTED", .token = "BTC",
                          .publish_us = 1, .seq = 2, .token_seq = 41 };
    assert_int_equal(eventgen_build(&b, &ev, &r), 0);
    json_t *j = json_loadb(b.data, b.len, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "data"),
                                                        "token_seq")), 41);
    json_decref(j);
    buf_reset(&b);
    ev.token_seq = 0;
    assert_int_equal(eventgen_build(&b, &ev, &r), 0);
    assert_null(memmem(b.data, b.len, "token_seq", 9));
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng_deterministic),
        cmocka_unit_test(test_rng_ranges),
        cmocka_unit_test(test_zipf_errors),
        cmocka_unit_test(test_zipf_single),
        cmocka_unit_test(test_zipf_distribution),
        cmocka_unit_test(test_type_for_topic),
        cmocka_unit_test(test_build_every_type),
        cmocka_unit_test(test_build_padding),
        cmocka_unit_test(test_build_appends_and_errors),
        cmocka_unit_test(test_build_deterministic),
        cmocka_unit_test(test_build_token_seq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
