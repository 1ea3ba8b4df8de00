/* tools/lib/rs_check.c: exact gap/duplicate counts, UTF-8, quantiles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "tools/lib/rs_check.h"

static void test_gaps(void **st)
{
    const int64_t exp[] = { 10, 11, 12, 13, 14 };
    rs_gap_counts g;
    int64_t all[] = { 14, 10, 12, 11, 13 };
    rs_gaps(exp, 5, all, 5, &g);
    assert_int_equal(g.missing, 0);
    assert_int_equal(g.dups, 0);
    assert_int_equal(g.unexpected, 0);

    int64_t some[] = { 14, 11, 11, 11, 9, 20 };     /* 10, 12, 13 missing */
    rs_gaps(exp, 5, some, 6, &g);
    assert_int_equal(g.missing, 3);
    assert_int_equal(g.dups, 2);
    assert_int_equal(g.unexpected, 2);

    rs_gaps(exp, 5, NULL, 0, &g);
    assert_int_equal(g.missing, 5);
    int64_t extra[] = { 5, 5 };
    rs_gaps(NULL, 0, extra, 2, &g);
    assert_int_equal(g.missing, 0);
    assert_int_equal(g.dups, 1);
    assert_int_equal(g.unexpected, 1);
}

static int v(const char *s) { return rs_utf8_valid((const uint8_t *)s, strlen(s)); }

static void test_utf8(void **st)
{
    assert_true(v("plain ascii {\"a\":1}"));
    assert_true(v("\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));  /* été € 😀 */
    assert_false(v("\xff"));
    assert_false(v("\xc0\xaf"));               /* overlong "/" */
    assert_false(v("\xe0\x80\xaf"));           /* overlong, 3 bytes */
    assert_false(v("\xed\xa0\x80"));           /* surrogate U+D800 */
    assert_false(v("\xf4\x90\x80\x80"));       /* above U+10FFFF */
    assert_false(v("\xe2\x82"));               /* truncated */
    assert_false(v("\x80"));                   /* lone continuation */
}

static void test_quantile(void **st)
{
    double a[] = { 5, 1, 4, 2, 3, 10, 9, 8, 7, 6 };
    assert_true(rs_quantile(a, 10, 0.5) == 5);
    assert_true(rs_quantile(a, 10, 0.99) == 10);
    assert_true(rs_quantile(a, 10, 1.0) == 10);
    assert_true(rs_quantile(a, 10, 0) == 1);
    assert_true(rs_quantile(NULL, 0, 0.5) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gaps),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_quantile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
