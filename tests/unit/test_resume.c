/* shard/resume.c, pure parts: the seam rule that ends a replay, the
 * live/replay dedup rule, result code names, admission from the
 * watermarks, the reconnect token bucket, and the reader's per-partition
 * schedule (which requests a pass serves, when it restarts). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

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

static void test_bucket(void **state)
{
    resume_bucket b = { 0, 0 };
    /* new: full burst (3), then empty */
    assert_true(resume_bucket_take(&b, 1000, 1.0, 3));
    assert_true(resume_bucket_take(&b, 1000, 1.0, 3));
    assert_true(resume_bucket_take(&b, 1000, 1.0, 3));
    assert_false(resume_bucket_take(&b, 1000, 1.0, 3));
    assert_false(resume_bucket_take(&b, 1500, 1.0, 3));    /* half a token */
    assert_true(resume_bucket_take(&b, 2000, 1.0, 3));     /* one per second */
    assert_false(resume_bucket_take(&b, 2000, 1.0, 3));
    /* refills to the burst, not beyond */
    assert_true(resume_bucket_take(&b, 100000, 1.0, 3));
    assert_true(resume_bucket_take(&b, 100000, 1.0, 3));
    assert_true(resume_bucket_take(&b, 100000, 1.0, 3));
    assert_false(resume_bucket_take(&b, 100000, 1.0, 3));
    /* rate 0: no limit */
    for (int i = 0; i < 100; i++)
        assert_true(resume_bucket_take(&b, 100000, 0, 3));
    /* a clock at 0 is still "started" */
    resume_bucket z = { 0, 0 };
    assert_true(resume_bucket_take(&z, 0, 1.0, 1));
    assert_false(resume_bucket_take(&z, 0, 1.0, 1));
}

static int attached(const resume_sched *s, uint64_t id)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->r[i].id == id)
            return s->r[i].attached;
    return -1;
}

/* Requests grouped on one partition: one pass serves every request whose
 * position the reader has not passed; the others wait for the restart at
 * the lowest waiting position when the pass reaches the end. */
static void test_sched_pass(void **state)
{
    resume_sched s = { 0 };
    /* idle: the first request starts the partition at its position */
    assert_int_equal(resume_sched_add(&s, 1, 100, "BTC", 3), RESUME_SCHED_START);
    assert_true(s.running);
    assert_int_equal(s.pos, 100);
    /* ahead of (or at) the reader: joins the running pass */
    assert_int_equal(resume_sched_add(&s, 2, 150, "ETH", 3), RESUME_SCHED_JOIN);
    assert_int_equal(resume_sched_add(&s, 3, 100, "BTC", 3), RESUME_SCHED_JOIN);
    /* the reader reads 100..119 */
    assert_true(resume_sched_record(&s, 100, "BTC", 3));
    assert_false(resume_sched_record(&s, 101, "SOL", 3));  /* nobody's token */
    assert_false(resume_sched_record(&s, 102, "ETH", 3));  /* before ETH's start */
    for (int64_t o = 103; o < 120; o++)
        resume_sched_record(&s, o, "XX", 2);
    assert_int_equal(s.pos, 120);
    /* behind the reader: waits, is not served by this pass */
    assert_int_equal(resume_sched_add(&s, 4, 110, "DOGE", 4), RESUME_SCHED_WAIT);
    assert_int_equal(resume_sched_add(&s, 5, 105, "PEPE", 4), RESUME_SCHED_WAIT);
    assert_int_equal(attached(&s, 4), 0);
    assert_false(resume_sched_record(&s, 120, "DOGE", 4));
    assert_true(resume_sched_record(&s, 160, "ETH", 3));
    /* end of the pass at 200: restart at the lowest waiting position, both
     * waiting requests attached there (marked 2 for the caller) */
    assert_int_equal(resume_sched_eof(&s, 200), 105);
    assert_int_equal(s.pos, 105);
    assert_false(s.at_eof);
    assert_int_equal(attached(&s, 4), 2);
    assert_int_equal(attached(&s, 5), 2);
    assert_int_equal(attached(&s, 1), 1);
    assert_true(resume_sched_record(&s, 110, "DOGE", 4));
    /* the second pass ends: nobody waits, the reader stays at the end */
    assert_int_equal(resume_sched_eof(&s, 201), -1);
    assert_true(s.at_eof);
    assert_int_equal(s.pos, 201);
    /* at the end: a request exactly there joins (nothing to read) */
    assert_int_equal(resume_sched_add(&s, 6, 201, "ADA", 3), RESUME_SCHED_JOIN);
    /* at the end, a request further back: nothing else would end the
     * pass, so the reader restarts at once */
    assert_int_equal(resume_sched_add(&s, 7, 150, "ADA", 3), RESUME_SCHED_SEEK);
    assert_int_equal(s.pos, 150);
    assert_false(s.at_eof);
    /* requests leave; the partition is empty when the last one does */
    for (uint64_t id = 1; id <= 7; id++)
        assert_int_equal(resume_sched_remove(&s, id), 0);
    assert_int_equal(resume_sched_remove(&s, 3), -1);
    assert_int_equal(s.n, 0);
    resume_sched_clear(&s);
    assert_false(s.running);
    /* too long a token is refused */
    char big[65];
    memset(big, 'a', sizeof big);
    assert_int_equal(resume_sched_add(&s, 9, 0, big, sizeof big), -1);
    resume_sched_clear(&s);
}

/* 3,000 clients of one partition, positions spread over 100 offsets and
 * arriving while the reader moves: every request is served by the first or
 * the second pass; never more passes than that. */
static void test_sched_crowd(void **state)
{
    resume_sched s = { 0 };
    int passes = 1, joined = 0, waited = 0;
    for (int i = 0; i < 3000; i++) {
        int64_t start = 1000 + (i * 37) % 100;
        char tok[16];
        int l = snprintf(tok, sizeof tok, "T%d", i);
        int a = resume_sched_add(&s, (uint64_t)i + 1, start, tok, (size_t)l);
        assert_true(a >= 0);
        if (a == RESUME_SCHED_WAIT)
            waited++;
        else
            joined++;
        if (i % 10 == 0)
            resume_sched_record(&s, s.pos, "x", 1);   /* the reader moves on */
    }
    assert_int_equal(joined + waited, 3000);
    assert_true(waited > 0);
    int64_t seek = resume_sched_eof(&s, 1100);
    if (seek >= 0)
        passes++;
    assert_int_equal(seek, 1000 + 0);   /* lowest waiting position */
    for (size_t i = 0; i < s.n; i++)
        assert_true(s.r[i].attached);
    assert_int_equal(resume_sched_eof(&s, 1100), -1);
    assert_int_equal(passes, 2);
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
        cmocka_unit_test(test_sched_crowd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
