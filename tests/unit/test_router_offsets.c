/* router/offsets.c: per-partition contiguous offset tracking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "router/offsets.h"

typedef struct got {
    int n;
    char topic[8][32];
    int32_t part[8];
    int64_t next[8];
} got;

static void cb(const char *topic, int32_t partition, int64_t next, void *arg)
{
    got *g = arg;
    assert_true(g->n < 8);
    strncpy(g->topic[g->n], topic, 31);
    g->part[g->n] = partition;
    g->next[g->n] = next;
    g->n++;
}

static got collect(router_offsets *t)
{
    got g;
    memset(&g, 0, sizeof g);
    router_offsets_collect(t, cb, &g);
    return g;
}

static void test_in_order(void **state)
{
    router_offsets *t = router_offsets_new();
    int tp = router_offsets_tp(t, "odin.trades", 0);
    assert_true(tp >= 0);
    assert_int_equal(router_offsets_tp(t, "odin.trades", 0), tp);
    router_offsets_seg a, b;
    assert_int_equal(router_offsets_add(t, tp, 0, 9, &a), 0);
    assert_int_equal(router_offsets_add(t, tp, 10, 19, &b), 0);
    assert_int_equal(router_offsets_pending(t), 2);
    assert_int_equal(collect(t).n, 0);
    router_offsets_done(t, a);
    got g = collect(t);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.topic[0], "odin.trades");
    assert_int_equal(g.part[0], 0);
    assert_int_equal(g.next[0], 10);
    assert_int_equal(collect(t).n, 0);   /* reported once */
    router_offsets_done(t, b);
    assert_int_equal(collect(t).next[0], 20);
    assert_int_equal(router_offsets_pending(t), 0);
    assert_int_equal(router_offsets_position(t, "odin.trades", 0), 20);
    router_offsets_free(t);
    router_offsets_free(NULL);
}

static void test_out_of_order_only_contiguous(void **state)
{
    router_offsets *t = router_offsets_new();
    int tp = router_offsets_tp(t, "x", 3);
    router_offsets_seg s[4];
    router_offsets_add(t, tp, 100, 104, &s[0]);
    router_offsets_add(t, tp, 105, 109, &s[1]);
    router_offsets_add(t, tp, 112, 120, &s[2]);   /* gap 110-111: not ours */
    router_offsets_add(t, tp, 121, 121, &s[3]);
    router_offsets_done(t, s[2]);
    router_offsets_done(t, s[1]);
    assert_int_equal(collect(t).n, 0);             /* 100-104 still pending */
    assert_int_equal(router_offsets_position(t, "x", 3), -1);
    router_offsets_done(t, s[0]);
    got g = collect(t);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.next[0], 121);              /* through s[2] */
    router_offsets_done(t, s[0]);                  /* idempotent / stale */
    router_offsets_done(t, s[3]);
    assert_int_equal(collect(t).next[0], 122);
    router_offsets_free(t);
}

static void test_partitions_independent(void **state)
{
    router_offsets *t = router_offsets_new();
    int p0 = router_offsets_tp(t, "a", 0), p1 = router_offsets_tp(t, "a", 1);
    int q0 = router_offsets_tp(t, "b", 0);
    assert_true(p0 != p1 && p1 != q0 && p0 != q0);
    router_offsets_seg a, b, c;
    router_offsets_add(t, p0, 0, 5, &a);
    router_offsets_add(t, p1, 7, 8, &b);
    router_offsets_add(t, q0, 1, 1, &c);
    router_offsets_done(t, b);
    router_offsets_done(t, c);
    got g = collect(t);
    assert_int_equal(g.n, 2);
    assert_int_equal(router_offsets_position(t, "a", 1), 9);
    assert_int_equal(router_offsets_position(t, "b", 0), 2);
    assert_int_equal(router_offsets_position(t, "a", 0), -1);
    assert_int_equal(router_offsets_position(t, "zzz", 0), -1);
    router_offsets_free(t);
}

static void test_reset_makes_handles_stale(void **state)
{
    router_offsets *t = router_offsets_new();
    int tp = router_offsets_tp(t, "a", 0);
    router_offsets_seg old1, old2, fresh;
    router_offsets_add(t, tp, 0, 9, &old1);
    router_offsets_add(t, tp, 10, 19, &old2);
    router_offsets_reset(t, "a", 0);               /* revoked */
    assert_int_equal(router_offsets_pending(t), 0);
    router_offsets_add(t, tp, 10, 12, &fresh);     /* re-assigned, re-read */
    router_offsets_done(t, old1);                  /* stale: ignored */
    router_offsets_done(t, old2);
    assert_int_equal(collect(t).n, 0);
    router_offsets_done(t, fresh);
    assert_int_equal(collect(t).next[0], 13);
    router_offsets_reset_all(t);
    assert_int_equal(router_offsets_position(t, "a", 0), -1);
    router_offsets_free(t);
}

static void test_ring_growth_and_errors(void **state)
{
    router_offsets *t = router_offsets_new();
    int tp = router_offsets_tp(t, "a", 0);
    router_offsets_seg s[1000];
    for (int i = 0; i < 1000; i++)
        assert_int_equal(router_offsets_add(t, tp, i * 2, i * 2 + 1, &s[i]), 0);
    /* complete in reverse: nothing until the very first one */
    for (int i = 999; i >= 1; i--)
        router_offsets_done(t, s[i]);
    assert_int_equal(collect(t).n, 0);
    router_offsets_done(t, s[0]);
    assert_int_equal(collect(t).next[0], 2000);
    assert_int_equal(router_offsets_pending(t), 0);
    /* interleave add/done to wrap the ring */
    for (int i = 0; i < 100; i++) {
        router_offsets_seg x;
        router_offsets_add(t, tp, 2000 + i, 2000 + i, &x);
        router_offsets_done(t, x);
    }
    assert_int_equal(collect(t).next[0], 2100);
    router_offsets_seg bad;
    assert_int_equal(router_offsets_add(t, 99, 0, 1, &bad), -1);
    assert_int_equal(router_offsets_add(t, tp, 5, 4, &bad), -1);
    router_offsets_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order),
        cmocka_unit_test(test_out_of_order_only_contiguous),
        cmocka_unit_test(test_partitions_independent),
        cmocka_unit_test(test_reset_makes_handles_stale),
        cmocka_unit_test(test_ring_growth_and_errors),
    };
    return cmocka_run_group_tests_name("router_offsets", tests, NULL, NULL);
}
