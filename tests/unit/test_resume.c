/* shard/resume.c, pure parts: the seam rule that ends a replay, the
 * live/replay dedup rule, result code names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seam),
        cmocka_unit_test(test_keep_live),
        cmocka_unit_test(test_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
