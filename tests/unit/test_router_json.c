/* common/jsonval.c: the allocation-free validator must give jansson's
 * json_loadb(JSON_DECODE_ANY) verdict on every input: a corpus of edge
 * cases, nesting limits, and many random mutations of real-looking values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/dispatch.h"
#include "common/jsonval.h"

/* jansson's buffer reader treats a NUL byte as "refill" and, after an
 * unget, as end of input, so "1\0" passes json_loadb.  NUL is never valid
 * JSON outside a string (inside, it is a raw control character); the fast
 * validator always refuses it, and comparisons skip such inputs. */
static void same(const char *p, size_t n)
{
    if (memchr(p, 0, n)) {
        assert_false(jsonval_valid(p, n));
        return;
    }
    int want = dispatch_json_valid(p, n);
    int got = jsonval_valid(p, n);
    if (want != got) {
        fprintf(stderr, "verdict differs (jansson %d, fast %d) on %zu bytes: '", want, got, n);
        for (size_t i = 0; i < n && i < 200; i++)
            fprintf(stderr, (unsigned char)p[i] >= 0x20 && (unsigned char)p[i] < 0x7f ? "%c"
                                                                                       : "\\x%02x",
                    (unsigned char)p[i]);
        fprintf(stderr, "'\n");
    }
    assert_int_equal(want, got);
}

static void s(const char *p) { same(p, strlen(p)); }

static void test_corpus(void **state)
{
    static const char *const valid[] = {
        "{}", "[]", "0", "-0", "1", "-1", "1.5", "-1.5e10", "1E+2", "1e-2", "0.0", "\"\"",
        "true", "false", "null", " \t\r\n{ } \n", "{\"a\":1}", "{\"a\":[1,2,{\"b\":null}]}",
        "[\"\\u00e9\\ud83d\\ude00\\n\\t\\\"\\\\\\/\\b\\f\\r\"]", "\"caf\xc3\xa9\"",
        "\"\xe2\x82\xac\xf0\x9f\x98\x80\"", "9223372036854775807", "-9223372036854775808",
        "1e308", "1e-400", "{\"type\":\"TRADE_EXECUTED\",\"timestamp\":1732660000000,"
        "\"data\":{\"price\":\"1.23\",\"qty\":5,\"side\":\"buy\",\"ok\":true}}",
        "{\"a\":1,\"a\":2}", "[[[[[]]]]]", "{\"\":\"\"}", "123456789012345678",
    };
    static const char *const invalid[] = {
        "", " ", "{", "}", "[", "]", "{,}", "[,]", "[1,]", "{\"a\":1,}", "{\"a\"}", "{\"a\" 1}",
        "{a:1}", "{'a':1}", "01", "-", "+1", "1.", ".5", "1e", "1e+", "--1", "0x10", "NaN",
        "Infinity", "tru", "truex", "true1", "nul", "[1 2]", "\"abc", "\"\\x\"", "\"\\u12\"",
        "\"\\u0000\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"a\tb\"",
        "\"\xc3\"", "\"\xc0\x80\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xff\"",
        "9223372036854775808", "-9223372036854775809", "1e309", "-1e400", "{} {}", "[] x",
        "{\"a\":1}}", "\xef\xbb\xbf{}", "[1,,2]", "{\"a\"::1}", "[\"a\",]",
    };
    for (size_t i = 0; i < sizeof valid / sizeof *valid; i++) {
        s(valid[i]);
        assert_true(jsonval_valid(valid[i], strlen(valid[i])));
    }
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
        s(invalid[i]);
        assert_false(jsonval_valid(invalid[i], strlen(invalid[i])));
    }
    /* embedded NUL bytes (see same()) and a NULL pointer */
    assert_false(jsonval_valid("{\"a\":1}\0", 8));
    assert_false(jsonval_valid("1\0", 2));
    assert_false(jsonval_valid("\"a\0b\"", 5));
    assert_false(jsonval_valid(NULL, 0));
    /* a huge real without exponent, a long integer */
    char big[700];
    memset(big, '9', 400);
    memcpy(big + 400, ".5", 3);
    s(big);
    memset(big, '1', 30);
    big[30] = '\0';
    s(big);
}

static void test_depth(void **state)
{
    for (int d = JSONVAL_MAX_DEPTH - 2; d <= JSONVAL_MAX_DEPTH + 2; d++) {
        char *p = malloc((size_t)d * 2 + 8);
        size_t n = 0;
        for (int i = 0; i < d; i++)
            p[n++] = '[';
        for (int i = 0; i < d; i++)
            p[n++] = ']';
        same(p, n);
        /* same depth with a scalar leaf */
        n = 0;
        for (int i = 0; i < d; i++)
            p[n++] = '[';
        p[n++] = '1';
        for (int i = 0; i < d; i++)
            p[n++] = ']';
        same(p, n);
        free(p);
    }
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_random_mutations(void **state)
{
    static const char *const seeds[] = {
        "{\"type\":\"TRADE_EXECUTED\",\"timestamp\":1732660000000,\"data\":{\"price\":1.25e3,"
        "\"tags\":[\"a\",\"\\u00e9\",null,true,false,-0.5],\"nested\":{\"x\":{}}}}",
        "[1,2,3,{\"k\":\"v\\n\"},[],\"\xc3\xa9\xe2\x82\xac\"]",
        "\"\\ud83d\\ude00 smile\"",
        "-12345678901234567.0e-12",
    };
    static const char alphabet[] = "{}[]\",:\\/ 0123456789.eE+-tfnulasrb\x00\x1f\x7f\x80\xc3\xa9\xed\xff";
    char text[512];
    for (int iter = 0; iter < 200000; iter++) {
        const char *seed = seeds[next() % (sizeof seeds / sizeof *seeds)];
        size_t n = strlen(seed);
        memcpy(text, seed, n);
        int edits = 1 + (int)(next() % 4);
        for (int e = 0; e < edits; e++) {
            size_t pos = n ? next() % n : 0;
            char c = alphabet[next() % (sizeof alphabet - 1)];
            switch (next() % 3) {
            case 0:   /* replace */
                if (n)
                    text[pos] = c;
                break;
            case 1:   /* insert */
                if (n + 1 < sizeof text) {
                    memmove(text + pos + 1, text + pos, n - pos);
                    text[pos] = c;
                    n++;
                }
                break;
            default:  /* delete */
                if (n) {
                    memmove(text + pos, text + pos + 1, n - pos - 1);
                    n--;
                }
            }
        }
        same(text, n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_random_mutations),
    };
    return cmocka_run_group_tests_name("router_json", tests, NULL, NULL);
}
