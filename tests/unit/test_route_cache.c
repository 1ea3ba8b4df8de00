/* router/cache.c: hits, negative entries, LRU bound, TTL, invalidation,
 * flush, and the fill-race ticket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "router/cache.h"

static int get(route_cache *c, const char *tok, uint64_t now, const uint16_t **s, size_t *n)
{
    return route_cache_get(c, tok, strlen(tok), now, s, n);
}

static int put(route_cache *c, const char *tok, const uint16_t *s, size_t n, uint64_t now)
{
    return route_cache_put(c, tok, strlen(tok), s, n, route_cache_ticket(c), now);
}

static void test_hit_miss_negative(void **state)
{
    route_cache *c = route_cache_new(16, 0);
    assert_non_null(c);
    const uint16_t *s;
    size_t n;
    assert_int_equal(get(c, "BTC", 0, &s, &n), 0);
    uint16_t two[] = { 3, 7 };
    assert_int_equal(put(c, "BTC", two, 2, 0), 0);
    assert_int_equal(put(c, "NONE", NULL, 0, 0), 0);   /* negative entry */
    assert_int_equal(get(c, "BTC", 1, &s, &n), 1);
    assert_int_equal(n, 2);
    assert_int_equal(s[0], 3);
    assert_int_equal(s[1], 7);
    assert_int_equal(get(c, "NONE", 1, &s, &n), 1);
    assert_int_equal(n, 0);
    assert_int_equal(get(c, "ETH", 1, &s, &n), 0);
    const route_cache_stats *st = route_cache_get_stats(c);
    assert_int_equal(st->hits, 2);
    assert_int_equal(st->misses, 2);
    assert_int_equal(route_cache_count(c), 2);

    /* replace keeps one entry */
    uint16_t one[] = { 9 };
    assert_int_equal(put(c, "BTC", one, 1, 2), 0);
    assert_int_equal(route_cache_count(c), 2);
    assert_int_equal(get(c, "BTC", 3, &s, &n), 1);
    assert_int_equal(n, 1);
    assert_int_equal(s[0], 9);

    /* binary-safe tokens: prefix of another token is a different key */
    assert_int_equal(route_cache_put(c, "BT", 2, one, 1, route_cache_ticket(c), 0), 0);
    assert_int_equal(route_cache_get(c, "BT", 2, 0, &s, &n), 1);
    assert_int_equal(route_cache_count(c), 3);

    /* bad arguments */
    assert_int_equal(route_cache_put(c, "", 0, NULL, 0, route_cache_ticket(c), 0), -1);
    char longtok[ROUTE_CACHE_MAX_TOKEN + 2];
    memset(longtok, 'a', sizeof longtok);
    assert_int_equal(route_cache_put(c, longtok, sizeof longtok, NULL, 0,
                                     route_cache_ticket(c), 0), -1);
    assert_int_equal(route_cache_get(c, longtok, sizeof longtok, 0, &s, &n), 0);
    route_cache_free(c);
    route_cache_free(NULL);
}

static void test_many_shards_heap(void **state)
{
    route_cache *c = route_cache_new(4, 0);
    uint16_t big[100];
    for (int i = 0; i < 100; i++)
        big[i] = (uint16_t)(1000 + i);
    assert_int_equal(put(c, "WIDE", big, 100, 0), 0);
    const uint16_t *s;
    size_t n;
    assert_int_equal(get(c, "WIDE", 0, &s, &n), 1);
    assert_int_equal(n, 100);
    assert_memory_equal(s, big, sizeof big);
    /* replaced by a small list, then evicted: no leaks (ASan) */
    assert_int_equal(put(c, "WIDE", big, 3, 0), 0);
    assert_int_equal(put(c, "WIDE2", big, 50, 0), 0);
    route_cache_free(c);
}

static void test_lru_eviction(void **state)
{
    route_cache *c = route_cache_new(3, 0);
    uint16_t x = 1;
    const uint16_t *s;
    size_t n;
    put(c, "A", &x, 1, 0);
    put(c, "B", &x, 1, 0);
    put(c, "C", &x, 1, 0);
    assert_int_equal(get(c, "A", 0, &s, &n), 1);   /* A most recent; B is LRU */
    put(c, "D", &x, 1, 0);
    assert_int_equal(route_cache_count(c), 3);
    assert_int_equal(route_cache_get_stats(c)->evictions, 1);
    assert_int_equal(get(c, "B", 0, &s, &n), 0);
    assert_int_equal(get(c, "A", 0, &s, &n), 1);
    assert_int_equal(get(c, "C", 0, &s, &n), 1);
    assert_int_equal(get(c, "D", 0, &s, &n), 1);

    /* many more distinct tokens than capacity: stays bounded */
    char tok[16];
    for (int i = 0; i < 10000; i++) {
        snprintf(tok, sizeof tok, "T%d", i);
        assert_int_equal(put(c, tok, &x, 1, 0), 0);
        assert_true(route_cache_count(c) <= 3);
    }
    assert_int_equal(get(c, "T9999", 0, &s, &n), 1);
    assert_int_equal(get(c, "T9998", 0, &s, &n), 1);
    assert_int_equal(get(c, "T0", 0, &s, &n), 0);
    route_cache_free(c);
    assert_null(route_cache_new(0, 0));
}

static void test_ttl(void **state)
{
    route_cache *c = route_cache_new(8, 100);
    uint16_t x = 5;
    const uint16_t *s;
    size_t n;
    put(c, "BTC", &x, 1, 1000);
    assert_int_equal(get(c, "BTC", 1099, &s, &n), 1);
    assert_int_equal(get(c, "BTC", 1100, &s, &n), 0);
    assert_int_equal(route_cache_get_stats(c)->expirations, 1);
    assert_int_equal(route_cache_count(c), 0);
    route_cache_free(c);
}

static void test_invalidate_and_flush(void **state)
{
    route_cache *c = route_cache_new(8, 0);
    uint16_t x = 5;
    const uint16_t *s;
    size_t n;
    put(c, "BTC", &x, 1, 0);
    put(c, "ETH", NULL, 0, 0);
    assert_int_equal(route_cache_invalidate(c, "BTC", 3), 1);
    assert_int_equal(route_cache_invalidate(c, "BTC", 3), 0);
    assert_int_equal(get(c, "BTC", 0, &s, &n), 0);
    assert_int_equal(get(c, "ETH", 0, &s, &n), 1);
    route_cache_flush(c);
    assert_int_equal(route_cache_count(c), 0);
    assert_int_equal(get(c, "ETH", 0, &s, &n), 0);
    /* usable after flush */
    assert_int_equal(put(c, "ETH", &x, 1, 0), 0);
    assert_int_equal(get(c, "ETH", 0, &s, &n), 1);
    route_cache_free(c);
}

static void test_fill_race_ticket(void **state)
{
    route_cache *c = route_cache_new(8, 0);
    uint16_t x = 5;
    const uint16_t *s;
    size_t n;

    /* lookup sent (ticket), then BTC invalidated before the reply */
    uint64_t t = route_cache_ticket(c);
    route_cache_invalidate(c, "BTC", 3);
    assert_int_equal(route_cache_put(c, "BTC", 3, &x, 1, t, 0), 1);
    assert_int_equal(get(c, "BTC", 0, &s, &n), 0);
    /* other tokens from the same lookup are fine */
    assert_int_equal(route_cache_put(c, "ETH", 3, &x, 1, t, 0), 0);
    assert_int_equal(route_cache_get_stats(c)->stale_puts, 1);

    /* a flush after the ticket refuses everything from that lookup */
    t = route_cache_ticket(c);
    route_cache_flush(c);
    assert_int_equal(route_cache_put(c, "SOL", 3, &x, 1, t, 0), 1);
    /* a ticket taken after the flush works */
    assert_int_equal(route_cache_put(c, "SOL", 3, &x, 1, route_cache_ticket(c), 0), 0);

    /* more invalidations than remembered: refuse (cannot tell) */
    t = route_cache_ticket(c);
    char tok[16];
    for (int i = 0; i < 5000; i++) {
        snprintf(tok, sizeof tok, "X%d", i);
        route_cache_invalidate(c, tok, strlen(tok));
    }
    assert_int_equal(route_cache_put(c, "ADA", 3, &x, 1, t, 0), 1);
    route_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_miss_negative),
        cmocka_unit_test(test_many_shards_heap),
        cmocka_unit_test(test_lru_eviction),
        cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_invalidate_and_flush),
        cmocka_unit_test(test_fill_race_ticket),
    };
    return cmocka_run_group_tests_name("route_cache", tests, NULL, NULL);
}
