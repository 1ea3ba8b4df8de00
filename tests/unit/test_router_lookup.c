/* router/lookup.c without Redis: the batch arena (hits), miss
 * deduplication, resolving misses into the arena and the cache, and the
 * generation reset between batches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "router/lookup.h"

static int interned;

/* shard id "s<N>" -> slot N; anything else is refused */
static int intern(const char *id, size_t len, uint16_t *slot, void *arg)
{
    interned++;
    if (len < 2 || id[0] != 's')
        return -1;
    unsigned v = 0;
    for (size_t i = 1; i < len; i++)
        v = v * 10 + (unsigned)(id[i] - '0');
    *slot = (uint16_t)v;
    return 0;
}

static void done(int failed, void *arg)
{
    fail_msg("no round trip without a connection");
}

typedef struct fx {
    route_cache *cache;
    router_metrics m;
    lookup *lk;
} fx;

static int setup(void **state)
{
    static fx f;
    memset(&f, 0, sizeof f);
    router_metrics_init(&f.m);
    f.cache = route_cache_new(1000, 0);
    lookup_opts o = { "odin:", 1000, 8 };
    lookup_callbacks cb = { done, intern, NULL };
    f.lk = lookup_new(NULL, NULL, f.cache, &f.m, &o, &cb);
    interned = 0;
    *state = &f;
    return f.cache && f.lk ? 0 : -1;
}

static int teardown(void **state)
{
    fx *f = *state;
    lookup_free(f->lk);
    route_cache_free(f->cache);
    return 0;
}

static void assert_targets(lookup *lk, lookup_ref ref, const uint16_t *want, size_t n)
{
    size_t got;
    const uint16_t *t = lookup_targets(lk, ref, &got);
    assert_int_equal(got, n);
    if (n)
        assert_memory_equal(t, want, n * sizeof *want);
}

/* Store a route as a fill that started now. */
static void put(route_cache *c, const char *tok, const uint16_t *sl, size_t n)
{
    assert_int_equal(route_cache_put(c, tok, strlen(tok), sl, n, route_cache_ticket(c), 0), 0);
}

static void test_free_null(void **state)
{
    lookup_free(NULL);
}

static void test_hits_are_copied(void **state)
{
    fx *f = *state;
    const uint16_t ab[] = { 3, 7 }, c[] = { 1 };
    put(f->cache, "AB", ab, 2);
    put(f->cache, "C", c, 1);
    put(f->cache, "NONE", NULL, 0);
    lookup_begin(f->lk);
    lookup_ref r1, r2, r3, r4;
    assert_int_equal(lookup_add(f->lk, "AB", 2, 0, &r1), 0);
    assert_int_equal(lookup_add(f->lk, "C", 1, 0, &r2), 0);
    assert_int_equal(lookup_add(f->lk, "AB", 2, 0, &r3), 0);
    /* a negative entry with the arena possibly still empty: a hit, no targets */
    assert_int_equal(lookup_add(f->lk, "NONE", 4, 0, &r4), 0);
    assert_false(r1.miss || r2.miss || r3.miss || r4.miss);
    assert_int_equal(lookup_nmiss(f->lk), 0);
    /* invalidating the cache entry does not touch the batch's copy */
    route_cache_invalidate(f->cache, "AB", 2);
    assert_targets(f->lk, r1, ab, 2);
    assert_targets(f->lk, r2, c, 1);
    assert_targets(f->lk, r3, ab, 2);
    assert_targets(f->lk, r4, NULL, 0);
}

static void test_negative_first(void **state)
{
    /* regression: an empty route as the very first arena use is a hit with
     * no targets, not an allocation failure */
    fx *f = *state;
    put(f->cache, "Z", NULL, 0);
    lookup_begin(f->lk);
    lookup_ref r;
    assert_int_equal(lookup_add(f->lk, "Z", 1, 0, &r), 0);
    assert_false(r.miss);
    assert_targets(f->lk, r, NULL, 0);
    /* and a miss resolved to nobody, also first in a fresh lookup */
    lookup_begin(f->lk);
    assert_int_equal(lookup_add(f->lk, "Y", 1, 0, &r), 0);
    assert_true(r.miss);
    assert_int_equal(lookup_resolve(f->lk, r.idx, NULL, NULL, 0), 0);
    assert_targets(f->lk, r, NULL, 0);
}

static void test_misses_dedup_and_resolve(void **state)
{
    fx *f = *state;
    lookup_begin(f->lk);
    lookup_ref a1, b1, a2, c1;
    assert_int_equal(lookup_add(f->lk, "AAA", 3, 0, &a1), 0);
    assert_int_equal(lookup_add(f->lk, "BBB", 3, 0, &b1), 0);
    assert_int_equal(lookup_add(f->lk, "AAA", 3, 0, &a2), 0);
    assert_int_equal(lookup_add(f->lk, "CCC", 3, 0, &c1), 0);
    assert_true(a1.miss && b1.miss && a2.miss && c1.miss);
    assert_int_equal(lookup_nmiss(f->lk), 3);             /* AAA once */
    assert_int_equal(a1.idx, a2.idx);
    assert_int_not_equal(a1.idx, b1.idx);
    /* not resolved yet: no targets */
    assert_targets(f->lk, a1, NULL, 0);

    const char *ida[] = { "s4", "bogus", "s2" };
    size_t la[] = { 2, 5, 2 };
    assert_int_equal(lookup_resolve(f->lk, a1.idx, ida, la, 3), 0);
    const char *idb[] = { "s9" };
    size_t lb[] = { 2 };
    assert_int_equal(lookup_resolve(f->lk, b1.idx, idb, lb, 1), 0);
    assert_int_equal(lookup_resolve(f->lk, c1.idx, NULL, NULL, 0), 0);
    assert_int_equal(lookup_resolve(f->lk, 3, NULL, NULL, 0), -1);   /* no such miss */
    const uint16_t wa[] = { 4, 2 }, wb[] = { 9 };
    assert_targets(f->lk, a1, wa, 2);                     /* refused id skipped */
    assert_targets(f->lk, a2, wa, 2);
    assert_targets(f->lk, b1, wb, 1);
    assert_targets(f->lk, c1, NULL, 0);
    assert_int_equal(interned, 4);

    /* the cache was filled, negative entry included */
    const uint16_t *sl;
    size_t n;
    assert_int_equal(route_cache_get(f->cache, "AAA", 3, 0, &sl, &n), 1);
    assert_int_equal(n, 2);
    assert_memory_equal(sl, wa, sizeof wa);
    assert_int_equal(route_cache_get(f->cache, "CCC", 3, 0, &sl, &n), 1);
    assert_int_equal(n, 0);

    /* next batch: the miss table is empty again, the same token is a hit */
    lookup_begin(f->lk);
    assert_int_equal(lookup_nmiss(f->lk), 0);
    lookup_ref again;
    assert_int_equal(lookup_add(f->lk, "AAA", 3, 0, &again), 0);
    assert_false(again.miss);
    assert_targets(f->lk, again, wa, 2);
    assert_int_equal(lookup_add(f->lk, "DDD", 3, 0, &again), 0);
    assert_true(again.miss);
    assert_int_equal(again.idx, 0);
}

static void test_miss_table_bound_and_arena_growth(void **state)
{
    fx *f = *state;
    /* at most max_tokens (8) distinct misses per batch */
    lookup_begin(f->lk);
    /* tokens are borrowed until the batch ends: one buffer each */
    static char tok[8][16];
    lookup_ref r;
    for (int i = 0; i < 8; i++) {
        snprintf(tok[i], sizeof tok[i], "T%d", i);
        assert_int_equal(lookup_add(f->lk, tok[i], strlen(tok[i]), 0, &r), 0);
    }
    assert_int_equal(lookup_add(f->lk, "T3", 2, 0, &r), 0);  /* known miss: fine */
    assert_int_equal(lookup_add(f->lk, "T8", 2, 0, &r), -1);
    assert_int_equal(lookup_nmiss(f->lk), 8);

    /* more hits than the initial arena holds: it grows, earlier refs stay right */
    static uint16_t big[200];
    for (size_t i = 0; i < 200; i++)
        big[i] = (uint16_t)i;
    assert_int_equal(route_cache_put(f->cache, "BIG", 3, big, 200,
                                     route_cache_ticket(f->cache), 0), 0);
    const uint16_t one[] = { 5 };
    assert_int_equal(route_cache_put(f->cache, "ONE", 3, one, 1,
                                     route_cache_ticket(f->cache), 0), 0);
    lookup_begin(f->lk);
    lookup_ref first, refs[20];
    assert_int_equal(lookup_add(f->lk, "ONE", 3, 0, &first), 0);
    for (int i = 0; i < 20; i++)                          /* 4000 slots */
        assert_int_equal(lookup_add(f->lk, "BIG", 3, 0, &refs[i]), 0);
    assert_targets(f->lk, first, one, 1);
    for (int i = 0; i < 20; i++)
        assert_targets(f->lk, refs[i], big, 200);
}

static void test_send_without_connection(void **state)
{
    fx *f = *state;
    lookup_begin(f->lk);
    assert_int_equal(lookup_send(f->lk), -1);              /* no misses */
    lookup_ref r;
    assert_int_equal(lookup_add(f->lk, "X", 1, 0, &r), 0);
    assert_int_equal(lookup_send(f->lk), -1);              /* no connection */
    assert_false(lookup_active(f->lk));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_null),
        cmocka_unit_test_setup_teardown(test_hits_are_copied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_negative_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_misses_dedup_and_resolve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_miss_table_bound_and_arena_growth, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_send_without_connection, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
