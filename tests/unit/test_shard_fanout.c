/* shard/fanout.c: a record to its subscribers through fake client ops, no
 * sockets.  The frame is built once and shared (refcounted); the resume
 * filter is consulted per subscriber; drops are counted by reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "shard/fanout.h"

/* A fake client: what the ops see. */
struct shard_client {
    struct shard_client *next;   /* the fake "live" list */
    int open;                    /* push refuses a closed client */
    int held;                    /* resume filter says "held" */
    int close_on_push;           /* push closes it (full queue) and unlinks it */
    int filtered;                /* times the resume filter was asked */
    ws_chunk *got[4];
    int n;
};

typedef struct fake {
    struct shard_client *live;
    long n_open;
    int walking, walks, pushes_outside_walk;
    int pushes;
} fake;

static void unlink_client(fake *f, struct shard_client *c)
{
    for (struct shard_client **pp = &f->live; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            c->next = (struct shard_client *)0x1;   /* poison: must not be followed */
            return;
        }
}

static int f_push(void *ud, struct shard_client *c, ws_chunk *ch)
{
    fake *f = ud;
    f->pushes++;
    if (!f->walking)
        f->pushes_outside_walk++;
    if (!c->open)
        return -1;
    if (c->close_on_push) {
        c->open = 0;
        unlink_client(f, c);
        return -1;
    }
    assert_true(c->n < 4);
    ws_chunk_ref(ch);
    c->got[c->n++] = ch;
    return 0;
}

static int f_filter(void *ud, struct shard_client *c, const frame_record *r,
                    ws_chunk *ch)
{
    c->filtered++;
    return c->held;
}

static struct shard_client *f_next(void *ud, struct shard_client *prev)
{
    fake *f = ud;
    return prev ? prev->next : f->live;
}

static long f_n_open(void *ud)
{
    return ((fake *)ud)->n_open;
}

static void f_walking(void *ud, int on)
{
    fake *f = ud;
    assert_int_not_equal(f->walking, on);
    f->walking = on;
    f->walks += on;
}

static const fanout_ops OPS = { .push = f_push, .resume_filter = f_filter,
                                .next_client = f_next, .n_open = f_n_open,
                                .walking = f_walking };

static frame_record rec(const char *tok, const char *cat, uint32_t flags)
{
    frame_record r = { .category = cat, .category_len = strlen(cat),
                       .token = tok, .token_len = strlen(tok),
                       .partition = 3, .offset = 42, .timestamp_ms = 1000,
                       .value = "{\"px\":1}", .value_len = 8, .flags = flags };
    return r;
}

static void sub(subs_index *ix, subs_conn *sc, struct shard_client *c,
                const char *ch)
{
    assert_int_equal(subs_add(ix, sc, c, ch, strlen(ch)), SUBS_ADDED);
}

static void drop_all(struct shard_client *c, int n)
{
    for (int i = 0; i < n; i++)
        for (int k = 0; k < c[i].n; k++)
            ws_chunk_unref(c[i].got[k]);
}

static void test_three_subscribers_one_frame(void **state)
{
    shard_metrics m;
    shard_metrics_init(&m);
    subs_index *ix = subs_new(NULL, NULL);
    fake f = { 0 };
    fanout *fo = fanout_new(ix, &m, 0, &OPS, &f);
    assert_non_null(fo);
    struct shard_client c[4] = { { .open = 1 }, { .open = 1 }, { .open = 1 },
                                 { .open = 1 } };
    subs_conn sc[4] = { { 0 } };
    for (int i = 0; i < 3; i++)
        sub(ix, &sc[i], &c[i], "BTC.trade");
    sub(ix, &sc[3], &c[3], "ETH.trade");

    frame_record r = rec("BTC", "trade", 0);
    fanout_deliver(fo, &r);
    assert_int_equal(f.pushes, 3);
    assert_int_equal(f.pushes_outside_walk, 0);
    assert_int_equal(f.walks, 1);
    assert_int_equal(f.walking, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c[i].n, 1);
        assert_ptr_equal(c[i].got[0], c[0].got[0]);   /* built once */
        assert_int_equal(c[i].filtered, 1);
    }
    assert_int_equal(c[3].n, 0);
    assert_int_equal(c[0].got[0]->refs, 3);   /* fanout dropped its own */
    const char *json = (const char *)c[0].got[0]->data + c[0].got[0]->hlen;
    size_t jl = c[0].got[0]->len - c[0].got[0]->hlen;
    assert_non_null(memmem(json, jl, "\"channel\":\"BTC.trade\"", 21));
    assert_non_null(memmem(json, jl, "\"seq\":42", 8));
    assert_int_equal(m.shard_records_received_total, 1);
    assert_int_equal(m.ws_messages_sent_total, 3);
    assert_int_equal(m.shard_records_broadcast_total, 0);

    drop_all(c, 4);
    for (int i = 0; i < 4; i++)
        subs_remove_all(ix, &sc[i]);
    fanout_free(fo);
    subs_free(ix);
}

static void test_resume_filter_and_refused_push(void **state)
{
    shard_metrics m;
    shard_metrics_init(&m);
    subs_index *ix = subs_new(NULL, NULL);
    fake f = { 0 };
    fanout *fo = fanout_new(ix, &m, 0, &OPS, &f);
    struct shard_client c[3] = { { .open = 1 }, { .open = 1, .held = 1 },
                                 { .open = 0 } };
    subs_conn sc[3] = { { 0 } };
    for (int i = 0; i < 3; i++)
        sub(ix, &sc[i], &c[i], "BTC.trade");
    frame_record r = rec("BTC", "trade", 0);
    fanout_deliver(fo, &r);
    for (int i = 0; i < 3; i++)
        assert_int_equal(c[i].filtered, 1);
    assert_int_equal(c[0].n, 1);
    assert_int_equal(c[1].n, 0);     /* held for its replay: not pushed */
    assert_int_equal(f.pushes, 2);   /* c[0], and c[2] which refused */
    assert_int_equal(m.ws_messages_sent_total, 1);
    assert_int_equal(c[0].got[0]->refs, 1);

    /* without a resume_filter op every subscriber is pushed */
    fanout_ops no_filter = OPS;
    no_filter.resume_filter = NULL;
    fanout *fo2 = fanout_new(ix, &m, 0, &no_filter, &f);
    fanout_deliver(fo2, &r);
    assert_int_equal(c[1].n, 1);
    assert_int_equal(c[1].filtered, 1);

    drop_all(c, 3);
    for (int i = 0; i < 3; i++)
        subs_remove_all(ix, &sc[i]);
    fanout_free(fo2);
    fanout_free(fo);
    subs_free(ix);
}

static void test_drops_counted(void **state)
{
    shard_metrics m;
    shard_metrics_init(&m);
    subs_index *ix = subs_new(NULL, NULL);
    fake f = { 0 };
    fanout *fo = fanout_new(ix, &m, 0, &OPS, &f);
    struct shard_client c = { .open = 1 };
    subs_conn sc = { 0 };
    sub(ix, &sc, &c, "BTC.trade");

    frame_record r1 = rec("XRP", "trade", 0);    /* token not subscribed */
    fanout_deliver(fo, &r1);
    assert_int_equal(m.shard_records_dropped_total[SM_DROP_NO_SUBSCRIBERS], 1);
    assert_int_equal(m.shard_records_dropped_total[SM_DROP_NO_CHANNEL], 0);
    frame_record r2 = rec("BTC", "book", 0);     /* token yes, category no */
    fanout_deliver(fo, &r2);
    assert_int_equal(f.pushes, 0);
    assert_int_equal(f.walks, 0);
    assert_int_equal(m.shard_records_received_total, 2);
    assert_int_equal(m.shard_records_dropped_total[SM_DROP_NO_SUBSCRIBERS], 1);
    assert_int_equal(m.shard_records_dropped_total[SM_DROP_NO_CHANNEL], 1);
    assert_int_equal(m.ws_messages_sent_total, 0);

    subs_remove_all(ix, &sc);
    fanout_free(fo);
    subs_free(ix);
}

static void test_broadcast(void **state)
{
    shard_metrics m;
    shard_metrics_init(&m);
    subs_index *ix = subs_new(NULL, NULL);
    fake f = { 0 };
    fanout *fo = fanout_new(ix, &m, 0, &OPS, &f);
    /* live list: c0 -> c1 (closes itself on push) -> c2 -> c3 (not open) */
    struct shard_client c[4] = { { .open = 1 }, { .open = 1, .close_on_push = 1 },
                                 { .open = 1 }, { .open = 0 } };
    for (int i = 0; i < 3; i++)
        c[i].next = &c[i + 1];
    f.live = &c[0];

    frame_record r = rec("", "news", FRAME_REC_ALL_CLIENTS);
    f.n_open = 0;   /* nobody open: dropped before a frame is built */
    fanout_deliver(fo, &r);
    assert_int_equal(f.pushes, 0);
    assert_int_equal(m.shard_records_dropped_total[SM_DROP_NO_SUBSCRIBERS], 1);

    f.n_open = 3;
    fanout_deliver(fo, &r);
    assert_int_equal(f.pushes, 4);   /* the walk went past the closed c1 */
    assert_int_equal(c[0].n, 1);
    assert_int_equal(c[2].n, 1);
    assert_ptr_equal(c[0].got[0], c[2].got[0]);
    assert_int_equal(c[0].got[0]->refs, 2);
    assert_int_equal(c[0].filtered + c[2].filtered, 0);   /* no replay filter */
    assert_int_equal(m.shard_records_broadcast_total, 2);
    assert_int_equal(m.shard_records_received_total, 2);
    assert_int_equal(m.ws_messages_sent_total, 2);
    assert_int_equal(f.walking, 0);

    drop_all(c, 4);
    fanout_free(fo);
    subs_free(ix);
}

static void test_free_null(void **state)
{
    fanout_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_subscribers_one_frame),
        cmocka_unit_test(test_resume_filter_and_refused_push),
        cmocka_unit_test(test_drops_counted),
        cmocka_unit_test(test_broadcast),
        cmocka_unit_test(test_free_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
