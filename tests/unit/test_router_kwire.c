/* router/kwire.c: FindCoordinator v0 / LeaveGroup v0 encoding and decoding,
 * checked against byte layouts written out by hand from the Kafka protocol
 * guide (and what librdkafka's mock broker reads and writes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "router/kwire.h"

static void test_find_coordinator_req(void **state)
{
    uint8_t out[128];
    int n = kwire_find_coordinator_req(out, sizeof out, 7, "cid", "grp");
    static const uint8_t want[] = {
        0, 0, 0, 18,            /* size: 2+2+4+(2+3)+(2+3) */
        0, 10,                  /* api_key FindCoordinator */
        0, 0,                   /* api_version 0 */
        0, 0, 0, 7,             /* correlation id */
        0, 3, 'c', 'i', 'd',    /* client id */
        0, 3, 'g', 'r', 'p',    /* key: the group */
    };
    assert_int_equal(n, sizeof want);
    assert_memory_equal(out, want, sizeof want);
    /* a null client id */
    n = kwire_find_coordinator_req(out, sizeof out, 1, NULL, "g");
    assert_int_equal(n, 4 + 8 + 2 + 3);
    assert_int_equal(out[12], 0xff);
    assert_int_equal(out[13], 0xff);
}

static void test_leave_group_req(void **state)
{
    uint8_t out[128];
    int n = kwire_leave_group_req(out, sizeof out, 0x01020304, "c", "g", "m-1");
    static const uint8_t want[] = {
        0, 0, 0, 19,
        0, 13, 0, 0,            /* LeaveGroup v0 */
        1, 2, 3, 4,
        0, 1, 'c',
        0, 1, 'g',
        0, 3, 'm', '-', '1',
    };
    assert_int_equal(n, sizeof want);
    assert_memory_equal(out, want, sizeof want);
}

static void test_req_no_space(void **state)
{
    uint8_t out[23];
    assert_int_equal(kwire_leave_group_req(out, sizeof out - 1, 1, "c", "g", "m-1"),
                     KWIRE_ESPACE);
    assert_int_equal(kwire_leave_group_req(out, sizeof out, 1, "c", "g", "m-1"), 23);
    assert_int_equal(kwire_find_coordinator_req(out, 3, 1, "c", "g"), KWIRE_ESPACE);
    char big[40000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    static uint8_t huge[100000];
    assert_int_equal(kwire_find_coordinator_req(huge, sizeof huge, 1, "c", big),
                     KWIRE_ESPACE);       /* longer than an int16 string */
}

static void test_frame_len(void **state)
{
    uint8_t b[16] = { 0, 0, 0, 6, 1, 2, 3, 4, 5, 6, 9 };
    assert_int_equal(kwire_frame_len(b, 0, 100), 0);
    assert_int_equal(kwire_frame_len(b, 3, 100), 0);
    assert_int_equal(kwire_frame_len(b, 9, 100), 0);
    assert_int_equal(kwire_frame_len(b, 10, 100), 10);
    assert_int_equal(kwire_frame_len(b, 11, 100), 10);    /* the next one started */
    assert_int_equal(kwire_frame_len(b, 11, 5), KWIRE_EFRAME);
    uint8_t neg[4] = { 0xff, 0xff, 0xff, 0xfe };
    assert_int_equal(kwire_frame_len(neg, 4, 100), KWIRE_EFRAME);
    uint8_t big[4] = { 0x7f, 0, 0, 0 };
    assert_int_equal(kwire_frame_len(big, 4, KWIRE_MAX_FRAME), KWIRE_EFRAME);
}

static const uint8_t coord_resp[] = {
    0, 0, 0, 25,
    0, 0, 0, 7,                 /* correlation id */
    0, 0,                       /* error */
    0, 0, 0, 2,                 /* node id */
    0, 9, '1', '2', '7', '.', '0', '.', '0', '.', '1',
    0, 0, 0x23, 0x84,           /* port 9092 */
};

static void test_find_coordinator_resp(void **state)
{
    kwire_coordinator co;
    assert_int_equal(kwire_find_coordinator_resp(coord_resp, sizeof coord_resp, 7, &co),
                     KWIRE_OK);
    assert_int_equal(co.error, 0);
    assert_int_equal(co.node_id, 2);
    assert_string_equal(co.host, "127.0.0.1");
    assert_int_equal(co.port, 9092);
    assert_int_equal(kwire_find_coordinator_resp(coord_resp, sizeof coord_resp, 8, &co),
                     KWIRE_ECORR);
    /* every truncation is refused, none reads past the end */
    for (size_t len = 0; len < sizeof coord_resp; len++) {
        uint8_t cut[sizeof coord_resp];
        memcpy(cut, coord_resp, len);
        if (len >= 4) {
            cut[3] = (uint8_t)(len - 4);     /* a frame that says it is this short */
            assert_int_equal(kwire_find_coordinator_resp(cut, len, 7, &co), KWIRE_ESHORT);
        }
        assert_int_equal(kwire_find_coordinator_resp(coord_resp, len, 7, &co), KWIRE_ESHORT);
    }
}

static void test_find_coordinator_error(void **state)
{
    /* COORDINATOR_NOT_AVAILABLE (15), node -1, null host, port -1 */
    static const uint8_t r[] = {
        0, 0, 0, 16, 0, 0, 0, 1, 0, 15, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff,
    };
    kwire_coordinator co;
    assert_int_equal(kwire_find_coordinator_resp(r, sizeof r, 1, &co), KWIRE_OK);
    assert_int_equal(co.error, 15);
    assert_int_equal(co.node_id, -1);
    assert_string_equal(co.host, "");
    assert_int_equal(co.port, -1);
}

static void test_find_coordinator_long_host(void **state)
{
    static uint8_t r[4 + 4 + 2 + 4 + 2 + 300 + 4];
    memset(r, 'h', sizeof r);
    size_t size = sizeof r - 4;
    r[0] = 0; r[1] = 0; r[2] = (uint8_t)(size >> 8); r[3] = (uint8_t)size;
    memset(r + 4, 0, 10);
    r[14] = 300 >> 8;
    r[15] = 300 & 0xff;
    kwire_coordinator co;
    assert_int_equal(kwire_find_coordinator_resp(r, sizeof r, 0, &co), KWIRE_ESPACE);
}

static void test_leave_group_resp(void **state)
{
    static const uint8_t ok[] = { 0, 0, 0, 6, 0, 0, 0, 9, 0, 0 };
    static const uint8_t unknown[] = { 0, 0, 0, 6, 0, 0, 0, 9, 0, 25 };
    int16_t err = -1;
    assert_int_equal(kwire_leave_group_resp(ok, sizeof ok, 9, &err), KWIRE_OK);
    assert_int_equal(err, 0);
    assert_int_equal(kwire_leave_group_resp(unknown, sizeof unknown, 9, &err), KWIRE_OK);
    assert_int_equal(err, 25);              /* UNKNOWN_MEMBER_ID */
    assert_int_equal(kwire_leave_group_resp(ok, sizeof ok, 10, &err), KWIRE_ECORR);
    assert_int_equal(kwire_leave_group_resp(ok, sizeof ok - 1, 9, &err), KWIRE_ESHORT);
    static const uint8_t shortframe[] = { 0, 0, 0, 5, 0, 0, 0, 9, 0, 0 };
    assert_int_equal(kwire_leave_group_resp(shortframe, sizeof shortframe, 9, &err),
                     KWIRE_ESHORT);         /* the frame ends inside the error code */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_coordinator_req),
        cmocka_unit_test(test_leave_group_req),
        cmocka_unit_test(test_req_no_space),
        cmocka_unit_test(test_frame_len),
        cmocka_unit_test(test_find_coordinator_resp),
        cmocka_unit_test(test_find_coordinator_error),
        cmocka_unit_test(test_find_coordinator_long_host),
        cmocka_unit_test(test_leave_group_resp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
