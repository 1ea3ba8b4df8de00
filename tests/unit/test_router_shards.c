/* router/shards.c without a peer: slot interning, liveness, drops for
 * shards that are not ready, and slot compaction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "router/shards.h"

static int frames, refs;
static void hook_frame(void *t, uint32_t n, int done, enum router_drop r, void *a) { frames++; }
static void hook_ref(void *t, void *a) { refs++; }

static router_shards *mk(struct event_base *base, router_metrics *m)
{
    router_shards_opts o = { .router_id = "r1", .queue_bytes = 65536, .stall_timeout_ms = 1000,
                             .hello_timeout_ms = 1000, .reconnect_max_ms = 1000 };
    router_shards_hooks h = { hook_frame, hook_ref, NULL, NULL };
    router_metrics_init(m);
    return router_shards_new(base, &o, &h, m);
}

static void test_intern_and_compact(void **state)
{
    struct event_base *base = event_base_new();
    router_metrics m;
    router_shards *s = mk(base, &m);
    assert_non_null(s);
    assert_null(router_shards_intern(s, "", 0));
    router_shard *a = router_shards_intern(s, "A", 1);
    router_shard *b = router_shards_intern(s, "B", 1);
    assert_non_null(a);
    assert_ptr_equal(router_shards_intern(s, "A", 1), a);
    assert_ptr_equal(router_shards_find(s, "B", 1), b);
    assert_null(router_shards_find(s, "C", 1));
    assert_int_equal(router_shard_slot(a), 0);
    assert_int_equal(router_shard_slot(b), 1);
    char id[16];
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof id, "dead%d", i);
        assert_non_null(router_shards_intern(s, id, strlen(id)));
    }
    /* live, but its socket does not exist: connect fails, retry is planned */
    router_shards_set_live(s, b, "unix:/nonexistent/odin-test.sock");
    assert_true(router_shard_live(b));
    assert_int_equal(router_shards_live(s), 1);
    assert_int_equal(router_shards_ready(s), 0);
    assert_int_equal(router_shards_nslots(s), 102);

    /* records for shards that are not ready are dropped as shard_down */
    frame_record r = { "trade", 5, "BTC", 3, 0, 1, 1, "{}", 2, 0 };
    router_shards_batch_begin(s, 1, FRAME_MODE_TARGETED, NULL);
    enum router_drop why = ROUTER_DROP_COUNT;
    assert_int_equal(router_shards_add(s, a, &r, &why), -1);
    assert_int_equal(why, ROUTER_DROP_SHARD_DOWN);
    why = ROUTER_DROP_COUNT;
    assert_int_equal(router_shards_add(s, b, &r, &why), -1);
    assert_int_equal(why, ROUTER_DROP_SHARD_DOWN);
    router_shards_batch_end(s);
    assert_int_equal(refs, 0);

    assert_int_equal(router_shards_compact(s), 101);   /* all but B */
    assert_int_equal(router_shards_nslots(s), 1);
    assert_ptr_equal(router_shards_get(s, 0), b);
    assert_int_equal(router_shard_slot(b), 0);
    assert_null(router_shards_get(s, 1));
    assert_null(router_shards_find(s, "A", 1));
    router_shards_set_dead(s, b, "test");
    assert_int_equal(router_shards_live(s), 0);

    buf j = { 0 };
    assert_int_equal(router_shards_json(s, &j), 0);
    buf_append(&j, "", 1);
    assert_non_null(strstr(j.data, "\"id\":\"B\",\"live\":false"));
    buf_free(&j);
    router_shards_free(s);
    router_shards_free(NULL);
    event_base_free(base);
}

/* Bounded backpressure: wait while a ready shard's queue is above half, for
 * at most the budget; then the shard is "slow" and not waited for until its
 * queue falls below a quarter.  (White-box: the test sets states and fills
 * queues without sockets.) */
static void fill(router_shard *sh, size_t n)
{
    buf *b = router_outq_buf(router_shard_queue(sh));
    assert_int_equal(buf_reserve(b, n), 0);
    memset(b->data + b->len, 'x', n);
    b->len += n;
}

static void test_backpressure(void **state)
{
    struct event_base *base = event_base_new();
    router_metrics m;
    router_shards *s = mk(base, &m);   /* queue_bytes 65536 */
    router_shard *a = router_shards_intern(s, "A", 1);
    router_shard *b = router_shards_intern(s, "B", 1);
    router_shard_test_set_state(a, RSH_READY);
    assert_int_equal(router_shards_backpressure(s, 1000, 100), 0);   /* empty */
    fill(a, 30000);                                                   /* < half */
    assert_int_equal(router_shards_backpressure(s, 1000, 100), 0);
    fill(a, 5000);                                                    /* > half */
    assert_int_equal(router_shards_backpressure(s, 1000, 0), 0);      /* disabled */
    assert_int_equal(router_shards_backpressure(s, 1000, 100), 1);
    assert_int_equal(router_shards_backpressure(s, 1099, 100), 1);
    /* budget spent: A is slow, consumption goes on */
    assert_int_equal(router_shards_backpressure(s, 1100, 100), 0);
    assert_true(router_shard_slow(a));
    assert_int_equal(router_shards_backpressure(s, 5000, 100), 0);
    /* a shard that is not ready is never waited for, however full */
    fill(b, 60000);
    assert_int_equal(router_shards_backpressure(s, 5000, 100), 0);
    /* A drains below a quarter: waited for again next time it fills */
    router_outq *qa = router_shard_queue(a);
    qa->off = qa->b.len - 1000;
    assert_int_equal(router_shards_backpressure(s, 6000, 100), 0);
    assert_false(router_shard_slow(a));
    fill(a, 40000);
    assert_int_equal(router_shards_backpressure(s, 7000, 100), 1);
    router_shard_test_set_state(a, RSH_IDLE);
    router_shards_free(s);
    event_base_free(base);
}

/* A record a shard does not get is counted once, by router_shards itself:
 * the router's counter (router_records_dropped_total{reason}) and the
 * shard's (its label, the admin API) together. */
static void test_drop_counted_once(void **state)
{
    struct event_base *base = event_base_new();
    router_metrics m;
    router_shards *s = mk(base, &m);
    router_shard *a = router_shards_intern(s, "A", 1);
    frame_record fr = { .category = "c", .category_len = 1, .token = "t", .token_len = 1,
                        .value = "{}", .value_len = 2 };
    enum router_drop why;
    router_shards_batch_begin(s, 1, FRAME_MODE_TARGETED, NULL);
    assert_int_equal(router_shards_add(s, a, &fr, &why), -1);   /* not live */
    assert_int_equal(why, ROUTER_DROP_SHARD_DOWN);
    assert_int_equal(router_shards_add(s, a, &fr, &why), -1);
    router_shards_batch_end(s);
    assert_int_equal(m.drops[ROUTER_DROP_SHARD_DOWN], 2);
    router_shard_sample smp;
    assert_int_equal(router_shards_sample(s, 0, &smp), 0);
    assert_int_equal(smp.drops[ROUTER_DROP_SHARD_DOWN], 2);
    router_shards_free(s);
    event_base_free(base);
}

static void test_bad_endpoints(void **state)
{
    struct event_base *base = event_base_new();
    router_metrics m;
    router_shards *s = mk(base, &m);
    router_shard *x = router_shards_intern(s, "X", 1);
    router_shards_set_live(s, x, "http://nope");
    assert_int_equal(router_shard_state(x), RSH_IDLE);
    router_shards_set_live(s, x, "tcp://127.0.0.1:1");   /* refused (or pending) */
    router_shards_set_live(s, x, NULL);                  /* lease without endpoint */
    assert_true(router_shard_live(x));
    assert_int_equal(router_shard_state(x), RSH_IDLE);
    router_shards_close_all(s, "test");
    router_shards_free(s);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_intern_and_compact),
        cmocka_unit_test(test_bad_endpoints),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_drop_counted_once),
    };
    return cmocka_run_group_tests_name("router_shards", tests, NULL, NULL);
}
