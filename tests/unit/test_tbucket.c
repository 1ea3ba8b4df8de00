/* common/tbucket.c: the token bucket of ADMIN_RATE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/tbucket.h"

static void test_full(void **st)
{
    (void)st;
    tbucket b;
    tbucket_init(&b, 2.0, 3.0, 1000);
    assert_true(tbucket_full(&b, 1000));
    assert_true(tbucket_take(&b, 1000));
    assert_false(tbucket_full(&b, 1000));
    assert_false(tbucket_full(&b, 1400));   /* 0.8 of a token back */
    assert_true(tbucket_full(&b, 1500));    /* one token back: full */
    tbucket_init(&b, 0, 0, 1000);           /* unlimited: always full */
    assert_true(tbucket_full(&b, 1000));
}

static void test_bucket(void **st)
{
    (void)st;
    tbucket b;
    tbucket_init(&b, 10, 3, 1000);
    assert_int_equal(tbucket_take(&b, 1000), 1);
    assert_int_equal(tbucket_take(&b, 1000), 1);
    assert_int_equal(tbucket_take(&b, 1000), 1);
    assert_int_equal(tbucket_take(&b, 1000), 0);     /* burst used */
    assert_int_equal(tbucket_take(&b, 1050), 0);     /* half a token */
    assert_int_equal(tbucket_take(&b, 1100), 1);     /* 10/s: one per 100 ms */
    assert_int_equal(tbucket_take(&b, 1100), 0);
    assert_int_equal(tbucket_take(&b, 900), 0);      /* time going back: no refill */
    /* refill caps at the burst */
    int n = 0;
    while (tbucket_take(&b, 100000))
        n++;
    assert_int_equal(n, 3);
    /* rate 0: no limit */
    tbucket_init(&b, 0, 1, 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(tbucket_take(&b, 0), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
