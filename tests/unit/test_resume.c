/* shard/resume.c, pure parts: the seam rule that ends a replay, the
 * live/replay dedup rule, result code names, admission from the
 * watermarks, the reconnect token bucket, and the reader's per-partition
 * schedule (which requests a read serves, the history that serves requests
 * behind the reader, backfills and seams). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "common/tbucket.h"
#include "shard/resume.h"

static void test_seam(void **state)
{
    /* position unknown: never */
    assert_false(resume_seam_ok(-1, 1, 5, 1, 10000));
    /* a held live record at or below the replay position: the streams meet */
    assert_true(resume_seam_ok(100, 0, 100, 0, -1));
    assert_true(resume_seam_ok(100, 0, 42, 0, -1));
    /* a held live record past the position: a gap remains, keep reading */
    assert_false(resume_seam_ok(100, 0, 101, 0, -1));
    assert_false(resume_seam_ok(100, 1, 101, 0, -1));
    /* at the end of the partition, no live yet */
    assert_false(resume_seam_ok(100, 1, -1, 0, -1));            /* not routed */
    assert_false(resume_seam_ok(100, 1, -1, 0, RESUME_SETTLE_MS - 1));
    assert_true(resume_seam_ok(100, 1, -1, 0, RESUME_SETTLE_MS));
    assert_true(resume_seam_ok(100, 1, -1, 1, -1));             /* route existed */
    /* not at the end: routing alone is not enough */
    assert_false(resume_seam_ok(100, 0, -1, 1, 100000));
}

static void test_keep_live(void **state)
{
    /* replay sent up to 1091: live 1091 is a duplicate, 1092 is new */
    assert_false(resume_keep_live(1091, 1091));
    assert_false(resume_keep_live(5, 1091));
    assert_true(resume_keep_live(1092, 1091));
    /* nothing replayed: last = the client's own seq */
    assert_true(resume_keep_live(0, -1));
}

static void test_codes(void **state)
{
    assert_string_equal(resume_code_name(RESUME_TOO_FAR_BEHIND), "TOO_FAR_BEHIND");
    assert_string_equal(resume_code_name(RESUME_POSITION_EXPIRED), "POSITION_EXPIRED");
    assert_string_equal(resume_code_name(RESUME_INVALID_POSITION), "INVALID_POSITION");
    assert_string_equal(resume_code_name(RESUME_UNAVAILABLE), "RESUME_UNAVAILABLE");
    assert_string_equal(resume_code_name(RESUME_BUSY), "RESUME_BUSY");
    assert_string_equal(resume_code_name(RESUME_RATE_LIMITED), "RESUME_RATE_LIMITED");
}

static void test_admit(void **state)
{
    /* partition holds [100, 500) */
    assert_int_equal(resume_admit(100, 500, 100, 1000), RESUME_OK);
    assert_int_equal(resume_admit(100, 500, 500, 1000), RESUME_OK);   /* up to date */
    assert_int_equal(resume_admit(100, 500, 99, 1000), RESUME_POSITION_EXPIRED);
    assert_int_equal(resume_admit(100, 500, 501, 1000), RESUME_INVALID_POSITION);
    /* RESUME_MAX_OFFSETS: decided from the watermarks, nothing read */
    assert_int_equal(resume_admit(100, 500, 400, 100), RESUME_OK);
    assert_int_equal(resume_admit(100, 500, 399, 100), RESUME_TOO_FAR_BEHIND);
    assert_int_equal(resume_admit(0, 10000000, 0, 100000), RESUME_TOO_FAR_BEHIND);
}

/* The reconnect rate of a connection (RESUME_CONN_RATE 1/s, burst 3) is
 * the code base's one token bucket, common/tbucket.h. */
static void test_bucket(void **state)
{
    tbucket b;
    tbucket_init(&b, 1.0, 3, 1000);
    assert_true(tbucket_take(&b, 1000));
    assert_true(tbucket_take(&b, 1000));
    assert_true(tbucket_take(&b, 1000));
    assert_false(tbucket_take(&b, 1000));
    assert_false(tbucket_take(&b, 1500));    /* half a token */
    assert_true(tbucket_take(&b, 2000));     /* one per second */
    assert_false(tbucket_take(&b, 2000));
    /* refills to the burst, not beyond */
    assert_true(tbucket_take(&b, 100000));
    assert_true(tbucket_take(&b, 100000));
    assert_true(tbucket_take(&b, 100000));
    assert_false(tbucket_take(&b, 100000));
    /* rate 0: no limit */
    tbucket_init(&b, 0, 3, 1000);
    for (int i = 0; i < 10; i++)
        assert_true(tbucket_take(&b, 100000));
}

static const resume_sched_req *req(const resume_sched *s, uint64_t id)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->r[i].id == id)
            return &s->r[i];
    return NULL;
}

static int attached(const resume_sched *s, uint64_t id)
{
    const resume_sched_req *q = req(s, id);
    return q ? q->attached : -1;
}

static int add(resume_sched *s, uint64_t id, int64_t start, const char *tok,
               resume_sched_step *st)
{
    assert_int_equal(resume_sched_add(s, id, start, tok, strlen(tok), st), 0);
    return st->act;
}

static int rec(resume_sched *s, int64_t o, const char *tok)
{
    size_t added;
    return resume_sched_record(s, o, o * 10, -1, tok, strlen(tok), "v", 1,
                               &added);
}

/* records of `tok` in l from offset `from` */
static int count_in(const resume_hist *l, const char *tok, int64_t from)
{
    int n = 0;
    for (const resume_hrec *r = l->head; r; r = r->next)
        if (r->offset >= from && r->klen == strlen(tok) &&
            memcmp(r->data, tok, r->klen) == 0)
            n++;
    return n;
}

/* The schedule of one partition: start, join, history, backfill, seam. */
static void test_sched_pass(void **state)
{
    resume_sched s = { 0 };
    resume_sched_step st;
    /* idle: the first request starts the partition at its position */
    assert_int_equal(add(&s, 1, 100, "BTC", &st), RESUME_SCHED_START);
    assert_int_equal(st.restart, 100);
    assert_int_equal(st.attach, 100);
    assert_true(s.running);
    /* ahead of (or at) the reader: joins the running read */
    assert_int_equal(add(&s, 2, 150, "ETH", &st), RESUME_SCHED_JOIN);
    assert_int_equal(st.restart, -1);
    assert_int_equal(add(&s, 3, 100, "BTC", &st), RESUME_SCHED_JOIN);
    /* the reader reads 100..119: every record is kept, the attached
     * tokens' are posted */
    assert_int_equal(rec(&s, 100, "BTC"), RESUME_REC_POST);
    assert_int_equal(rec(&s, 101, "SOL"), RESUME_REC_NONE);
    assert_int_equal(rec(&s, 102, "ETH"), RESUME_REC_POST);
    for (int64_t o = 103; o < 120; o++)
        assert_int_equal(rec(&s, o, o == 110 ? "DOGE" : "XX"), RESUME_REC_NONE);
    assert_int_equal(s.pos, 120);
    assert_int_equal(s.h.floor, 100);
    assert_int_equal(s.h.top, 120);
    assert_int_equal((int)s.h.n, 20);
    /* behind the reader, in the history: served from it at once and
     * attached at its top, no restart (the current code makes it wait) */
    assert_int_equal(add(&s, 4, 105, "DOGE", &st), RESUME_SCHED_HIST);
    assert_ptr_equal(st.from, &s.h);
    assert_int_equal(st.attach, 120);
    assert_int_equal(st.restart, -1);
    assert_int_equal(count_in(st.from, "DOGE", 105), 1);
    assert_int_equal(attached(&s, 4), 1);
    assert_int_equal(rec(&s, 120, "DOGE"), RESUME_REC_POST);
    /* below the history: the reader backfills from its start at once */
    assert_int_equal(add(&s, 5, 90, "PEPE", &st), RESUME_SCHED_BACKFILL);
    assert_int_equal(st.restart, 90);
    assert_int_equal(st.attach, 90);
    assert_true(s.bf);
    assert_int_equal(s.pos, 90);
    /* while backfilling: in the history -> HIST from it; between the
     * backfill and the history -> joins; what b holds -> HIST from b;
     * below b -> waits */
    assert_int_equal(add(&s, 6, 110, "DOGE", &st), RESUME_SCHED_HIST);
    assert_ptr_equal(st.from, &s.h);
    assert_int_equal(st.attach, 121);
    assert_int_equal(rec(&s, 90, "PEPE"), RESUME_REC_POST);
    assert_int_equal(rec(&s, 91, "ADA"), RESUME_REC_NONE);
    assert_int_equal(add(&s, 7, 95, "ADA", &st), RESUME_SCHED_JOIN);
    assert_int_equal(add(&s, 8, 91, "ADA", &st), RESUME_SCHED_HIST);
    assert_ptr_equal(st.from, &s.b);
    assert_int_equal(st.attach, 92);
    assert_int_equal(count_in(st.from, "ADA", 91), 1);
    assert_int_equal(add(&s, 9, 80, "BTC", &st), RESUME_SCHED_WAIT);
    assert_int_equal(add(&s, 10, 85, "BTC", &st), RESUME_SCHED_WAIT);
    assert_int_equal(attached(&s, 9), 0);
    for (int64_t o = 92; o < 100; o++)
        rec(&s, o, "XX");
    /* the backfill reaches the history: b joins it; 5, 7, 8 (attached
     * below the old floor) are served h from 100; the waiting ones start
     * a new backfill at the lowest of them */
    assert_int_equal(rec(&s, 100, "BTC"), RESUME_REC_SEAM);
    int64_t from = -1;
    assert_int_equal(resume_sched_seam(&s, 100, &from), 80);
    assert_int_equal(from, 100);
    assert_int_equal(s.h.floor, 90);
    assert_int_equal(s.h.top, 121);
    assert_int_equal((int)s.h.n, 31);
    assert_true(req(&s, 5)->serve);
    assert_true(req(&s, 7)->serve);
    assert_true(req(&s, 8)->serve);
    assert_false(req(&s, 1)->serve);
    assert_false(req(&s, 4)->serve);
    assert_false(req(&s, 6)->serve);
    assert_int_equal(attached(&s, 9), 2);
    assert_int_equal(attached(&s, 10), 2);
    assert_true(s.bf);
    assert_int_equal(s.pos, 80);
    for (int64_t o = 80; o < 90; o++)
        rec(&s, o, "XX");
    assert_int_equal(rec(&s, 90, "PEPE"), RESUME_REC_SEAM);
    /* second seam: back to the top of the history */
    assert_int_equal(resume_sched_seam(&s, 90, &from), 121);
    assert_int_equal(from, 90);
    assert_true(req(&s, 9)->serve);
    assert_false(s.bf);
    assert_int_equal(s.h.floor, 80);
    assert_int_equal((int)s.h.n, 41);
    assert_int_equal(s.pos, 121);
    assert_int_equal(rec(&s, 121, "ETH"), RESUME_REC_POST);
    resume_sched_eof(&s, 130);
    assert_true(s.at_eof);
    assert_int_equal(s.h.top, 130);
    /* everyone leaves: the reader stops, the history stays */
    for (uint64_t id = 1; id <= 10; id++)
        assert_int_equal(resume_sched_remove(&s, id), 0);
    assert_int_equal(resume_sched_remove(&s, 3), -1);
    assert_int_equal(s.n, 0);
    assert_false(s.running);
    assert_int_equal((int)s.h.n, 42);
    /* a later request in it: served, the reader restarts at the top */
    assert_int_equal(add(&s, 11, 85, "ETH", &st), RESUME_SCHED_HIST);
    assert_int_equal(st.restart, 130);
    assert_int_equal(st.attach, 130);
    assert_int_equal(count_in(st.from, "ETH", 85), 2);
    assert_int_equal(resume_sched_remove(&s, 11), 0);
    /* past its top: the history is dropped, a plain start */
    assert_int_equal(add(&s, 12, 200, "ETH", &st), RESUME_SCHED_START);
    assert_int_equal((int)s.h.n, 0);
    assert_int_equal(s.h.floor, 200);
    resume_sched_clear(&s);
    assert_false(s.running);
    /* too long a token is refused */
    char big[65];
    memset(big, 'a', sizeof big);
    assert_int_equal(resume_sched_add(&s, 9, 0, big, sizeof big, &st), -1);
    resume_sched_clear(&s);
}

/* The history is bounded: the oldest go first (raising the floor); a
 * request below the new floor backfills. */
static void test_sched_evict(void **state)
{
    resume_sched s = { 0 };
    resume_sched_step st;
    add(&s, 1, 0, "A", &st);
    for (int64_t o = 0; o < 10; o++)
        rec(&s, o, "A");
    size_t held = resume_sched_held(&s);
    assert_true(held > 0);
    size_t one = resume_sched_evict(&s);
    assert_true(one > 0);
    assert_int_equal(resume_sched_held(&s), held - one);
    assert_int_equal(s.h.floor, 1);
    assert_int_equal(add(&s, 2, 1, "A", &st), RESUME_SCHED_HIST);
    assert_int_equal(add(&s, 3, 0, "A", &st), RESUME_SCHED_BACKFILL);
    /* nothing before the history and nothing in it: the backfill reaches
     * the end and goes on at the top without a restart */
    while (resume_sched_evict(&s))
        ;
    assert_int_equal(s.h.floor, 10);
    assert_int_equal(s.h.top, 10);
    for (int64_t o = 0; o < 10; o++)
        assert_int_equal(rec(&s, o, "A"), RESUME_REC_POST);
    int64_t from;
    assert_int_equal(resume_sched_seam(&s, 10, &from), -1);
    assert_false(s.bf);
    assert_int_equal(s.h.floor, 0);
    assert_int_equal(s.h.top, 10);
    assert_int_equal(rec(&s, 10, "A"), RESUME_REC_POST);
    assert_int_equal(s.h.top, 11);
    resume_sched_clear(&s);
    assert_int_equal(resume_sched_held(&s), 0);
}

/* A crowd on one partition: 3,000 requests, positions spread over the 100
 * records before the "kill" (offset 1100), arriving in a random order while
 * records keep coming (to 1600).  Simulates the reader and the loop: every
 * request gets exactly the records of its token from its start to the end,
 * each once and in order, and the partition is read about once: records
 * read <= the window + one per restart.  (The current code re-reads the
 * window at each pass: ~30 times here.) */
#define CROWD 3000
static int64_t c_last[CROWD + 1], c_start[CROWD + 1];
static int c_got[CROWD + 1], c_tok[CROWD + 1];

static void c_give(int id, int64_t o)
{
    if (o > c_last[id]) {
        c_last[id] = o;
        c_got[id]++;
    }
}

static void c_serve(const resume_hist *l, int id, int64_t from)
{
    char t[8];
    snprintf(t, sizeof t, "T%d", c_tok[id]);
    for (const resume_hrec *r = l->head; r; r = r->next)
        if (r->offset >= from && r->klen == strlen(t) &&
            memcmp(r->data, t, r->klen) == 0)
            c_give(id, r->offset);
}

static void test_sched_crowd(void **state)
{
    resume_sched s = { 0 };
    resume_sched_step st;
    int64_t end = 1100, cur = 0, reads = 0, restarts = 0;
    int started = 0, next = 1;
    unsigned seed = 7;
    while (next <= CROWD || cur < end || s.bf) {
        seed = seed * 1103515245u + 12345u;
        if (next <= CROWD && (seed >> 16) % 3 == 0) {
            int id = next++;
            c_start[id] = 1000 + (int64_t)((seed >> 8) % 100);
            c_last[id] = c_start[id] - 1;
            c_tok[id] = id % 40;
            char t[8];
            snprintf(t, sizeof t, "T%d", c_tok[id]);
            add(&s, (uint64_t)id, c_start[id], t, &st);
            if (st.act == RESUME_SCHED_HIST)
                c_serve(st.from, id, c_start[id]);
            if (st.restart >= 0) {
                cur = st.restart;
                restarts += started;
                started = 1;
            }
            continue;
        }
        if (end < 1600 && (seed >> 20) % 4 == 0)
            end++;
        if (cur >= end) {
            if (s.bf) {
                int64_t from;
                int64_t r = resume_sched_seam(&s, cur, &from);
                for (size_t i = 0; i < s.n; i++)
                    if (s.r[i].serve) {
                        s.r[i].serve = 0;
                        c_serve(&s.h, (int)s.r[i].id, from);
                    }
                if (r >= 0) {
                    cur = r;
                    restarts++;
                }
                for (size_t i = 0; i < s.n; i++)
                    if (s.r[i].attached == 2)
                        s.r[i].attached = 1;
                if (r >= 0 || s.bf)
                    continue;
            }
            resume_sched_eof(&s, cur);
            if (next > CROWD && end >= 1600)
                break;
            continue;
        }
        char t[8];
        snprintf(t, sizeof t, "T%d", (int)(cur % 40));
        size_t added;
        reads++;
        int r = resume_sched_record(&s, cur, 0, -1, t, strlen(t), "v", 1,
                                    &added);
        if (r == RESUME_REC_SEAM) {
            int64_t from;
            int64_t rs = resume_sched_seam(&s, cur, &from);
            for (size_t i = 0; i < s.n; i++)
                if (s.r[i].serve) {
                    s.r[i].serve = 0;
                    c_serve(&s.h, (int)s.r[i].id, from);
                }
            for (size_t i = 0; i < s.n; i++)
                if (s.r[i].attached == 2)
                    s.r[i].attached = 1;
            if (rs >= 0) {
                cur = rs;
                restarts++;
            }
            continue;          /* re-read cur unless restarted */
        }
        if (r == RESUME_REC_POST)
            for (size_t i = 0; i < s.n; i++)
                if (s.r[i].attached && c_tok[s.r[i].id] == cur % 40 &&
                    cur >= s.r[i].start)
                    c_give((int)s.r[i].id, cur);
        cur++;
    }
    int64_t low = 1100;
    for (int id = 1; id <= CROWD; id++) {
        if (c_start[id] < low)
            low = c_start[id];
        int want = 0;
        for (int64_t o = c_start[id]; o < end; o++)
            want += o % 40 == c_tok[id];
        assert_int_equal(c_got[id], want);
        assert_int_equal(attached(&s, (uint64_t)id), 1);
    }
    /* about once: the window, plus the record that found each seam */
    assert_true(reads <= (end - low) + restarts);
    assert_true(restarts <= 20);
    resume_sched_clear(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seam),
        cmocka_unit_test(test_keep_live),
        cmocka_unit_test(test_codes),
        cmocka_unit_test(test_admit),
        cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_sched_pass),
        cmocka_unit_test(test_sched_evict),
        cmocka_unit_test(test_sched_crowd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
