/* common/record.c: the record check the router and a shard's replay share. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/record.h"

static int check(const record_rules *r, const char *key, const char *val,
                 size_t vlen, int *bkey)
{
    enum record_invalid why;
    int rc = record_check(r, key, key ? strlen(key) : 0, val, vlen, bkey, &why);
    if (rc == 0) {
        assert_int_equal(why, RECORD_INVALID_N);
        return -1;
    }
    assert_int_equal(rc, -1);
    return (int)why;
}

static void test_record_check(void **state)
{
    record_rules r = { "*", 1, 64, RECORD_JSON_FAST };
    int b = 7;
    const char *ok = "{\"type\":\"T\",\"data\":{}}";
    assert_int_equal(check(&r, "BTC", ok, strlen(ok), &b), -1);
    assert_int_equal(b, 0);
    assert_int_equal(check(&r, "*", ok, strlen(ok), &b), -1);
    assert_int_equal(b, 1);
    assert_int_equal(check(&r, "", ok, strlen(ok), &b), RECORD_EMPTY_KEY);
    assert_int_equal(check(&r, NULL, ok, strlen(ok), &b), RECORD_EMPTY_KEY);
    char big[100];
    memset(big, ' ', sizeof big);
    big[0] = '1';
    assert_int_equal(check(&r, "BTC", big, 65, &b), RECORD_OVERSIZED);
    assert_int_equal(check(&r, "BTC", big, 64, &b), -1);
    assert_int_equal(check(&r, "B TC", ok, strlen(ok), &b), RECORD_BAD_KEY);
    assert_int_equal(check(&r, "BTC.trade", ok, strlen(ok), &b), RECORD_BAD_KEY);
    assert_int_equal(check(&r, "BTC", "{\"a\":", 5, &b), RECORD_INVALID_JSON);
    /* invalid UTF-8 in a string: a browser closes the socket on it */
    assert_int_equal(check(&r, "BTC", "\"\xff\"", 3, &b), RECORD_INVALID_JSON);
    assert_int_equal(check(&r, "BTC", "\"\xc3\xa9\"", 4, &b), -1);
    /* the same verdicts with jansson; none with the check off */
    r.json = RECORD_JSON_JANSSON;
    assert_int_equal(check(&r, "BTC", "\"\xff\"", 3, &b), RECORD_INVALID_JSON);
    assert_int_equal(check(&r, "BTC", ok, strlen(ok), &b), -1);
    r.json = RECORD_JSON_OFF;
    assert_int_equal(check(&r, "BTC", "{\"a\":", 5, &b), -1);
    /* no broadcast key (a shard's replay): "*" is just a bad key */
    record_rules s = { NULL, 0, 64, RECORD_JSON_FAST };
    assert_int_equal(check(&s, "*", ok, strlen(ok), &b), RECORD_BAD_KEY);
    assert_string_equal(record_invalid_name(RECORD_INVALID_JSON), "invalid_json");
    assert_string_equal(record_invalid_name(RECORD_OVERSIZED), "oversized");
    assert_string_equal(record_invalid_name(RECORD_BAD_KEY), "bad_key");
    assert_string_equal(record_invalid_name(RECORD_EMPTY_KEY), "empty_key");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
