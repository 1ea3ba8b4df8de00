/* router/hold: the hold policy, driven by a fake clock (no sockets). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "router/hold.h"

static int decide(router_hold *h, int trusted, int connected, uint64_t now)
{
    router_hold_view v = { trusted, connected, 3 };
    return router_hold_decide(h, &v, now);
}

/* Before routes were ever known: hold (counted once), expire after
 * hold_max_ms into fallback (counted once), end when routes are trusted. */
static void test_hold_expire_end(void **st)
{
    (void)st;
    router_metrics m;
    memset(&m, 0, sizeof m);
    router_hold *h = router_hold_new(1000, &m);
    assert_non_null(h);
    assert_int_equal(decide(h, 0, 0, 100), ROUTER_HOLD);
    assert_int_equal(decide(h, 0, 1, 500), ROUTER_HOLD);
    assert_int_equal(m.holds, 1);
    assert_true(router_hold_active(h));
    assert_false(router_hold_expired(h));
    assert_int_equal(router_hold_elapsed_ms(h, 600), 500);
    assert_int_equal(decide(h, 0, 1, 1100), ROUTER_MODE_FALLBACK);
    assert_int_equal(decide(h, 0, 1, 1200), ROUTER_MODE_FALLBACK);
    assert_int_equal(m.hold_expired, 1);
    assert_true(router_hold_expired(h));
    assert_int_equal(m.hold_ms, 0);
    assert_int_equal(decide(h, 1, 1, 1300), ROUTER_MODE_TARGETED);
    assert_int_equal(m.hold_ms, 1200);
    assert_false(router_hold_active(h));
    assert_false(router_hold_expired(h));
    assert_int_equal(router_hold_elapsed_ms(h, 2000), 0);
    assert_int_equal(m.holds, 1);
    router_hold_free(h);
    router_hold_free(NULL);
}

/* Once routes were known, Redis down means fallback at once (no hold);
 * connected but not trusted (registry reset) holds again. */
static void test_view_then_redis_down(void **st)
{
    (void)st;
    router_metrics m;
    memset(&m, 0, sizeof m);
    router_hold *h = router_hold_new(1000, &m);
    assert_int_equal(decide(h, 1, 1, 10), ROUTER_MODE_TARGETED);
    assert_int_equal(decide(h, 0, 0, 20), ROUTER_MODE_FALLBACK);
    assert_int_equal(m.holds, 0);
    assert_false(router_hold_active(h));
    assert_int_equal(decide(h, 0, 1, 30), ROUTER_HOLD);
    assert_int_equal(m.holds, 1);
    /* Redis goes away mid-hold: fallback, the hold ends (time counted) */
    assert_int_equal(decide(h, 0, 0, 80), ROUTER_MODE_FALLBACK);
    assert_int_equal(m.hold_ms, 50);
    assert_false(router_hold_active(h));
    router_hold_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hold_expire_end),
        cmocka_unit_test(test_view_then_redis_down),
    };
    return cmocka_run_group_tests_name("router_hold", tests, NULL, NULL);
}
