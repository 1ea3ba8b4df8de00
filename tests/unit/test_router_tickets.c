/* router/tickets: completion tickets over a real offset tracker (no sockets,
 * no librdkafka). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/clock.h"
#include "router/tickets.h"

static int completions;

static void completed(void *ud)
{
    (void)ud;
    completions++;
}

typedef struct fx {
    router_offsets *off;
    router_metrics m;
    router_tickets *ts;
} fx;

static void setup(fx *f)
{
    memset(f, 0, sizeof *f);
    completions = 0;
    router_metrics_init(&f->m);
    f->off = router_offsets_new();
    assert_non_null(f->off);
    router_tickets_callbacks cb = { completed, NULL };
    f->ts = router_tickets_new(f->off, &f->m, &cb);
    assert_non_null(f->ts);
}

static void teardown(fx *f)
{
    router_tickets_free(f->ts);
    router_offsets_free(f->off);
}

/* The offsets of a batch are done only when its last reference goes, and
 * the owner is told once per ticket. */
static void test_last_reference_completes(void **st)
{
    (void)st;
    fx f;
    setup(&f);
    router_ticket *t = router_tickets_open(f.ts, 1, 4);
    assert_non_null(t);
    assert_int_equal(router_ticket_add_range(f.ts, t, "a", 0, 10, 12), 0);
    assert_int_equal(router_ticket_add_range(f.ts, t, "a", 1, 5, 5), 0);
    router_ticket_sent(t, (int64_t)(clock_wall_us() / 1000));
    router_ticket_ref(t);                 /* a frame queued */
    router_ticket_ref(t);                 /* another */
    assert_int_equal(router_tickets_outstanding(f.ts), 1);
    router_tickets_release(f.ts, t);      /* dispatch done */
    router_tickets_release(f.ts, t);      /* first frame written */
    assert_int_equal(completions, 0);
    assert_int_equal(router_offsets_position(f.off, "a", 0), -1);
    router_tickets_release(f.ts, t);      /* last frame written */
    assert_int_equal(completions, 1);
    assert_int_equal(router_tickets_outstanding(f.ts), 0);
    assert_int_equal(router_offsets_position(f.off, "a", 0), 13);
    assert_int_equal(router_offsets_position(f.off, "a", 1), 6);
    assert_int_equal(f.m.delivery_seconds.count, 1);
    teardown(&f);
}

/* Out of order: a later batch completing first does not advance the
 * position past an older one still in flight. */
static void test_contiguous_only(void **st)
{
    (void)st;
    fx f;
    setup(&f);
    router_ticket *t1 = router_tickets_open(f.ts, 1, 2);
    router_ticket *t2 = router_tickets_open(f.ts, 2, 2);
    assert_int_equal(router_ticket_add_range(f.ts, t1, "a", 0, 0, 9), 0);
    assert_int_equal(router_ticket_add_range(f.ts, t2, "a", 0, 10, 19), 0);
    router_tickets_release(f.ts, t2);
    assert_int_equal(router_offsets_position(f.off, "a", 0), -1);
    assert_int_equal(router_tickets_outstanding(f.ts), 1);
    router_tickets_release(f.ts, t1);
    assert_int_equal(router_offsets_position(f.off, "a", 0), 20);
    assert_int_equal(completions, 2);
    teardown(&f);
}

/* A batch with a dropped frame completes (dropped on purpose) but observes
 * no delivery latency; after set_final nothing is marked done. */
static void test_dropped_and_final(void **st)
{
    (void)st;
    fx f;
    setup(&f);
    router_ticket *t = router_tickets_open(f.ts, 1, 1);
    assert_int_equal(router_ticket_add_range(f.ts, t, "a", 0, 0, 0), 0);
    router_ticket_sent(t, 1);
    router_ticket_dropped(t);
    router_tickets_release(f.ts, t);
    assert_int_equal(router_offsets_position(f.off, "a", 0), 1);
    assert_int_equal(f.m.delivery_seconds.count, 0);

    t = router_tickets_open(f.ts, 2, 1);
    assert_int_equal(router_ticket_add_range(f.ts, t, "a", 0, 1, 1), 0);
    router_ticket_sent(t, 1);
    router_tickets_set_final(f.ts);
    router_tickets_release(f.ts, t);
    assert_int_equal(router_offsets_position(f.off, "a", 0), 1);
    assert_int_equal(f.m.delivery_seconds.count, 0);
    assert_int_equal(completions, 2);
    assert_int_equal(router_tickets_outstanding(f.ts), 0);

    /* never dispatched: freed, nothing completed */
    t = router_tickets_open(f.ts, 3, 1);
    router_ticket_discard(f.ts, t);
    router_ticket_discard(f.ts, NULL);
    assert_int_equal(completions, 2);
    teardown(&f);
}

/* A ticket holds at most nrec segments. */
static void test_capacity(void **st)
{
    (void)st;
    fx f;
    setup(&f);
    router_ticket *t = router_tickets_open(f.ts, 1, 1);
    assert_int_equal(router_ticket_add_range(f.ts, t, "a", 0, 0, 0), 0);
    assert_int_equal(router_ticket_add_range(f.ts, t, "a", 1, 0, 0), -1);
    router_tickets_release(f.ts, t);
    teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_last_reference_completes),
        cmocka_unit_test(test_contiguous_only),
        cmocka_unit_test(test_dropped_and_final),
        cmocka_unit_test(test_capacity),
    };
    return cmocka_run_group_tests_name("router_tickets", tests, NULL, NULL);
}
