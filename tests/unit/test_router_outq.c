/* router/outq.c: per-shard output queue with frame completion marks, fed
 * with real delivery frames from proto/frame.h and decoded back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "proto/frame.h"
#include "router/outq.h"

typedef struct log_t {
    int n;
    void *ticket[64];
    uint32_t nrec[64];
    int done[64];
} log_t;

static void cb(void *ticket, uint32_t nrec, int done, void *arg)
{
    log_t *l = arg;
    assert_true(l->n < 64);
    l->ticket[l->n] = ticket;
    l->nrec[l->n] = nrec;
    l->done[l->n] = done;
    l->n++;
}

static void add_frame(router_outq *q, void *ticket, uint32_t nrec, const char *tok)
{
    frame_batch b;
    assert_int_equal(frame_batch_begin(&b, router_outq_buf(q), FRAME_MODE_TARGETED), 0);
    for (uint32_t i = 0; i < nrec; i++) {
        frame_record r = { "trade", 5, tok, strlen(tok), 1, (int64_t)i, 1000, "{}", 2, 0 };
        assert_int_equal(frame_batch_add(&b, &r), 0);
    }
    assert_int_equal(frame_batch_end(&b), 0);
    assert_int_equal(router_outq_mark(q, ticket, nrec), 0);
}

static void test_marks_complete_in_order(void **state)
{
    router_outq q;
    router_outq_init(&q);
    assert_int_equal(frame_encode_hello(router_outq_buf(&q), "router", "r1", 1024), 0);
    size_t hello = router_outq_pending(&q);
    int t1, t2;
    add_frame(&q, &t1, 3, "BTC");
    size_t f1 = router_outq_pending(&q) - hello;
    add_frame(&q, &t2, 2, "ETH");
    log_t l = { 0 };

    /* the bytes handed out decode back into HELLO + 2 deliveries */
    frame_decoder *d = frame_decoder_new(1 << 20);
    assert_int_equal(frame_decoder_feed(d, router_outq_data(&q), router_outq_pending(&q)), 0);
    frame_msg m;
    assert_int_equal(frame_decoder_next(d, &m), 1);
    assert_int_equal(m.type, FRAME_HELLO);
    assert_int_equal(frame_decoder_next(d, &m), 1);
    assert_int_equal(m.nrecords, 3);
    assert_int_equal(frame_decoder_next(d, &m), 1);
    assert_int_equal(m.nrecords, 2);
    frame_decoder_free(d);

    router_outq_written(&q, hello, cb, &l);          /* HELLO: no mark */
    assert_int_equal(l.n, 0);
    router_outq_written(&q, f1 - 1, cb, &l);         /* one byte short */
    assert_int_equal(l.n, 0);
    router_outq_written(&q, 1, cb, &l);
    assert_int_equal(l.n, 1);
    assert_ptr_equal(l.ticket[0], &t1);
    assert_int_equal(l.nrec[0], 3);
    assert_int_equal(l.done[0], 1);
    router_outq_written(&q, router_outq_pending(&q), cb, &l);
    assert_int_equal(l.n, 2);
    assert_ptr_equal(l.ticket[1], &t2);
    assert_int_equal(router_outq_pending(&q), 0);
    router_outq_free(&q);
}

static void test_clear_drops_unwritten(void **state)
{
    router_outq q;
    router_outq_init(&q);
    int t1, t2, t3;
    add_frame(&q, &t1, 1, "A");
    size_t f1 = router_outq_pending(&q);
    add_frame(&q, &t2, 4, "B");
    add_frame(&q, &t3, 5, "C");
    log_t l = { 0 };
    router_outq_written(&q, f1 + 3, cb, &l);          /* t1 done, t2 partial */
    assert_int_equal(l.n, 1);
    router_outq_clear(&q, cb, &l);
    assert_int_equal(l.n, 3);
    assert_ptr_equal(l.ticket[1], &t2);
    assert_int_equal(l.done[1], 0);
    assert_int_equal(l.nrec[1], 4);
    assert_ptr_equal(l.ticket[2], &t3);
    assert_int_equal(l.done[2], 0);
    assert_int_equal(router_outq_pending(&q), 0);
    /* reusable after clear (reconnect) */
    add_frame(&q, &t1, 2, "D");
    router_outq_written(&q, router_outq_pending(&q), cb, &l);
    assert_int_equal(l.n, 4);
    assert_int_equal(l.done[3], 1);
    router_outq_free(&q);
}

static void count_cb(void *ticket, uint32_t nrec, int done, void *arg)
{
    assert_int_equal(done, 1);
    *(uint64_t *)arg += nrec;
}

static void test_many_marks_and_compaction(void **state)
{
    router_outq q;
    router_outq_init(&q);
    uint64_t recs = 0;
    int tick;
    /* grow the mark ring and force compaction with small partial writes */
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 40; i++)
            add_frame(&q, &tick, 20, "TOKEN");
        size_t total = router_outq_pending(&q);
        size_t step = total / 7 + 1;
        while (router_outq_pending(&q)) {
            size_t n = step < router_outq_pending(&q) ? step : router_outq_pending(&q);
            router_outq_written(&q, n, count_cb, &recs);
        }
    }
    assert_int_equal(recs, 50 * 40 * 20);
    assert_int_equal(router_outq_pending(&q), 0);
    assert_int_equal(q.mcount, 0);
    router_outq_free(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_marks_complete_in_order),
        cmocka_unit_test(test_clear_drops_unwritten),
        cmocka_unit_test(test_many_marks_and_compaction),
    };
    return cmocka_run_group_tests_name("router_outq", tests, NULL, NULL);
}
