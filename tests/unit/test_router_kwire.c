/* router/kwire.c: ApiVersions v0, FindCoordinator v0-v3 and LeaveGroup
 * v0-v4 encoding and decoding, checked byte for byte against layouts
 * written out by hand from the Kafka protocol guide and message specs
 * (flexible versions: compact strings and arrays, tagged fields), and
 * the version choice against the ranges brokers announce. */
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
    int n = kwire_find_coordinator_req(out, sizeof out, 7, 0, "cid", "grp");
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
    n = kwire_find_coordinator_req(out, sizeof out, 1, 0, NULL, "g");
    assert_int_equal(n, 4 + 8 + 2 + 3);
    assert_int_equal(out[12], 0xff);
    assert_int_equal(out[13], 0xff);
}

static void test_leave_group_req(void **state)
{
    uint8_t out[128];
    int n = kwire_leave_group_req(out, sizeof out, 0x01020304, 0, "c", "g", "m-1", "i1");
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
    assert_int_equal(kwire_leave_group_req(out, sizeof out - 1, 1, 0, "c", "g", "m-1", NULL),
                     KWIRE_ESPACE);
    assert_int_equal(kwire_leave_group_req(out, sizeof out, 1, 0, "c", "g", "m-1", NULL), 23);
    assert_int_equal(kwire_find_coordinator_req(out, 3, 1, 0, "c", "g"), KWIRE_ESPACE);
    char big[40000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    static uint8_t huge[100000];
    assert_int_equal(kwire_find_coordinator_req(huge, sizeof huge, 1, 0, "c", big),
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
    assert_int_equal(kwire_find_coordinator_resp(coord_resp, sizeof coord_resp, 7, 0, &co),
                     KWIRE_OK);
    assert_int_equal(co.error, 0);
    assert_int_equal(co.node_id, 2);
    assert_string_equal(co.host, "127.0.0.1");
    assert_int_equal(co.port, 9092);
    assert_int_equal(kwire_find_coordinator_resp(coord_resp, sizeof coord_resp, 8, 0, &co),
                     KWIRE_ECORR);
    /* every truncation is refused, none reads past the end */
    for (size_t len = 0; len < sizeof coord_resp; len++) {
        uint8_t cut[sizeof coord_resp];
        memcpy(cut, coord_resp, len);
        if (len >= 4) {
            cut[3] = (uint8_t)(len - 4);     /* a frame that says it is this short */
            assert_int_equal(kwire_find_coordinator_resp(cut, len, 7, 0, &co), KWIRE_ESHORT);
        }
        assert_int_equal(kwire_find_coordinator_resp(coord_resp, len, 7, 0, &co), KWIRE_ESHORT);
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
    assert_int_equal(kwire_find_coordinator_resp(r, sizeof r, 1, 0, &co), KWIRE_OK);
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
    assert_int_equal(kwire_find_coordinator_resp(r, sizeof r, 0, 0, &co), KWIRE_ESPACE);
}

/* ---- negotiated versions ------------------------------------------------- */

static void test_api_versions_req(void **state)
{
    uint8_t out[64];
    static const uint8_t want[] = {
        0, 0, 0, 13,
        0, 18, 0, 0,            /* ApiVersions v0 */
        0, 0, 0, 5,
        0, 3, 'c', 'i', 'd',    /* no body */
    };
    assert_int_equal(kwire_api_versions_req(out, sizeof out, 5, "cid"), sizeof want);
    assert_memory_equal(out, want, sizeof want);
    assert_int_equal(kwire_api_versions_req(out, 12, 5, "cid"), KWIRE_ESPACE);
}

/* Every prefix of a response (and every frame that says it is that short)
 * is refused with KWIRE_ESHORT, never read past. */
typedef int (*decode_fn)(const uint8_t *f, size_t len);

static void all_truncations_short(const uint8_t *resp, size_t n, decode_fn dec)
{
    uint8_t cut[256];
    assert_true(n <= sizeof cut);
    assert_int_equal(dec(resp, n), KWIRE_OK);
    for (size_t len = 0; len < n; len++) {
        assert_int_equal(dec(resp, len), KWIRE_ESHORT);
        if (len >= 4) {
            memcpy(cut, resp, len);
            cut[0] = cut[1] = cut[2] = 0;
            cut[3] = (uint8_t)(len - 4);
            assert_int_equal(dec(cut, len), KWIRE_ESHORT);
        }
    }
}

static const uint8_t versions_resp[] = {
    0, 0, 0, 28,
    0, 0, 0, 5,
    0, 0,                       /* error */
    0, 0, 0, 3,                 /* three APIs */
    0, 10, 0, 0, 0, 4,          /* FindCoordinator 0-4 */
    0, 13, 0, 0, 0, 5,          /* LeaveGroup 0-5 */
    0, 18, 0, 0, 0, 4,          /* ApiVersions 0-4 */
};

static int dec_versions(const uint8_t *f, size_t len)
{
    kwire_versions v;
    return kwire_api_versions_resp(f, len, 5, &v);
}

static void test_api_versions_resp(void **state)
{
    kwire_versions v;
    assert_int_equal(kwire_api_versions_resp(versions_resp, sizeof versions_resp, 5, &v),
                     KWIRE_OK);
    assert_int_equal(v.error, 0);
    assert_int_equal(v.find_min, 0);
    assert_int_equal(v.find_max, 4);
    assert_int_equal(v.leave_min, 0);
    assert_int_equal(v.leave_max, 5);
    assert_int_equal(kwire_api_versions_resp(versions_resp, sizeof versions_resp, 6, &v),
                     KWIRE_ECORR);
    all_truncations_short(versions_resp, sizeof versions_resp, dec_versions);
    /* a broker listing neither API */
    static const uint8_t none[] = { 0, 0, 0, 16, 0, 0, 0, 5, 0, 35, 0, 0, 0, 1,
                                    0, 18, 0, 0, 0, 3 };
    assert_int_equal(kwire_api_versions_resp(none, sizeof none, 5, &v), KWIRE_OK);
    assert_int_equal(v.error, 35);
    assert_int_equal(v.find_min, -1);
    assert_int_equal(v.leave_max, -1);
    /* a count larger than the frame can hold */
    static const uint8_t lying[] = { 0, 0, 0, 10, 0, 0, 0, 5, 0, 0, 0x7f, 0, 0, 0 };
    assert_int_equal(kwire_api_versions_resp(lying, sizeof lying, 5, &v), KWIRE_ESHORT);
}

static void test_pick_version(void **state)
{
    /* what this code implements against: a broker offering more */
    assert_int_equal(kwire_pick_version(0, 3, 0, 4), 3);
    assert_int_equal(kwire_pick_version(0, 4, 0, 5), 4);
    /* Kafka 4.0 (KIP-896): FindCoordinator 1-6, LeaveGroup 3-5 */
    assert_int_equal(kwire_pick_version(KWIRE_FIND_COORDINATOR_MIN, KWIRE_FIND_COORDINATOR_MAX,
                                        1, 6), 3);
    assert_int_equal(kwire_pick_version(KWIRE_LEAVE_GROUP_MIN, KWIRE_LEAVE_GROUP_MAX, 3, 5), 4);
    /* an older broker (librdkafka's mock): its highest */
    assert_int_equal(kwire_pick_version(0, 3, 0, 2), 2);
    assert_int_equal(kwire_pick_version(0, 4, 0, 1), 1);
    /* nothing in common, or the API missing */
    assert_int_equal(kwire_pick_version(0, 4, 5, 6), -1);
    assert_int_equal(kwire_pick_version(1, 3, 0, 0), -1);
    assert_int_equal(kwire_pick_version(0, 3, -1, -1), -1);
}

static void test_find_coordinator_req_versions(void **state)
{
    uint8_t out[512];
    static const uint8_t v1[] = {
        0, 0, 0, 19,
        0, 10, 0, 1,            /* FindCoordinator v1 */
        0, 0, 0, 7,
        0, 3, 'c', 'i', 'd',
        0, 3, 'g', 'r', 'p',    /* key */
        0,                      /* key type: group */
    };
    assert_int_equal(kwire_find_coordinator_req(out, sizeof out, 7, 1, "cid", "grp"),
                     sizeof v1);
    assert_memory_equal(out, v1, sizeof v1);
    uint8_t v2[sizeof v1];
    memcpy(v2, v1, sizeof v1);
    v2[7] = 2;                  /* v2 is v1's layout */
    assert_int_equal(kwire_find_coordinator_req(out, sizeof out, 7, 2, "cid", "grp"),
                     sizeof v2);
    assert_memory_equal(out, v2, sizeof v2);
    static const uint8_t v3[] = {
        0, 0, 0, 20,
        0, 10, 0, 3,            /* FindCoordinator v3: flexible, header v2 */
        0, 0, 0, 7,
        0, 3, 'c', 'i', 'd',    /* client id: still an int16 string */
        0,                      /* header tagged fields */
        4, 'g', 'r', 'p',       /* compact string: length + 1 */
        0,                      /* key type */
        0,                      /* tagged fields */
    };
    assert_int_equal(kwire_find_coordinator_req(out, sizeof out, 7, 3, "cid", "grp"),
                     sizeof v3);
    assert_memory_equal(out, v3, sizeof v3);
    /* a compact length of two varint bytes: 200 + 1 = 0xc9 0x01 */
    char g[201];
    memset(g, 'g', 200);
    g[200] = '\0';
    assert_int_equal(kwire_find_coordinator_req(out, sizeof out, 7, 3, "cid", g),
                     18 + 2 + 200 + 2);
    assert_int_equal(out[18], 0xc9);
    assert_int_equal(out[19], 0x01);
    assert_int_equal(out[20], 'g');
    assert_int_equal(kwire_find_coordinator_req(out, sizeof out, 7, 4, "cid", "grp"),
                     KWIRE_EVERSION);
    assert_int_equal(kwire_find_coordinator_req(out, sizeof out, 7, -1, "cid", "grp"),
                     KWIRE_EVERSION);
}

static void test_leave_group_req_versions(void **state)
{
    uint8_t out[128];
    static const uint8_t v3[] = {
        0, 0, 0, 27,
        0, 13, 0, 3,            /* LeaveGroup v3 */
        1, 2, 3, 4,
        0, 1, 'c',
        0, 1, 'g',              /* group id */
        0, 0, 0, 1,             /* members: one */
        0, 3, 'm', '-', '1',    /* member id */
        0, 2, 'i', '1',         /* group instance id */
    };
    assert_int_equal(kwire_leave_group_req(out, sizeof out, 0x01020304, 3, "c", "g", "m-1",
                                           "i1"), sizeof v3);
    assert_memory_equal(out, v3, sizeof v3);
    /* a null instance id */
    assert_int_equal(kwire_leave_group_req(out, sizeof out, 0x01020304, 3, "c", "g", "m-1",
                                           NULL), 29);
    assert_int_equal(out[3], 25);
    assert_int_equal(out[27], 0xff);
    assert_int_equal(out[28], 0xff);
    static const uint8_t v4[] = {
        0, 0, 0, 24,
        0, 13, 0, 4,            /* LeaveGroup v4: flexible */
        1, 2, 3, 4,
        0, 1, 'c',
        0,                      /* header tagged fields */
        2, 'g',                 /* compact group id */
        2,                      /* compact array: one member */
        4, 'm', '-', '1',
        3, 'i', '1',
        0,                      /* the member's tagged fields */
        0,                      /* the request's */
    };
    assert_int_equal(kwire_leave_group_req(out, sizeof out, 0x01020304, 4, "c", "g", "m-1",
                                           "i1"), sizeof v4);
    assert_memory_equal(out, v4, sizeof v4);
    assert_int_equal(kwire_leave_group_req(out, sizeof out, 0x01020304, 4, "c", "g", "m-1",
                                           NULL), 26);
    assert_int_equal(out[23], 0);            /* compact null */
    /* v1 and v2 are v0's layout */
    for (int v = 1; v <= 2; v++) {
        assert_int_equal(kwire_leave_group_req(out, sizeof out, 1, v, "c", "g", "m-1", "i1"),
                         23);
        assert_int_equal(out[7], v);
    }
    assert_int_equal(kwire_leave_group_req(out, sizeof out, 1, 5, "c", "g", "m-1", NULL),
                     KWIRE_EVERSION);
}

static const uint8_t coord_v1[] = {
    0, 0, 0, 31,
    0, 0, 0, 7,
    0, 0, 0, 0,                 /* throttle */
    0, 0,                       /* error */
    0xff, 0xff,                 /* error message: null */
    0, 0, 0, 2,
    0, 9, '1', '2', '7', '.', '0', '.', '0', '.', '1',
    0, 0, 0x23, 0x84,
};

static const uint8_t coord_v3[] = {
    0, 0, 0, 35,
    0, 0, 0, 7,
    0,                          /* response header tagged fields */
    0, 0, 0, 0,                 /* throttle */
    0, 0,
    0,                          /* compact null error message */
    0, 0, 0, 2,
    10, '1', '2', '7', '.', '0', '.', '0', '.', '1',
    0, 0, 0x23, 0x84,
    1, 0, 2, 0xaa, 0xbb,        /* one tagged field (tag 0, 2 bytes): skipped */
};

static int dec_coord_v1(const uint8_t *f, size_t len)
{
    kwire_coordinator co;
    return kwire_find_coordinator_resp(f, len, 7, 1, &co);
}

static int dec_coord_v3(const uint8_t *f, size_t len)
{
    kwire_coordinator co;
    return kwire_find_coordinator_resp(f, len, 7, 3, &co);
}

static void test_find_coordinator_resp_versions(void **state)
{
    kwire_coordinator co;
    for (int v = 1; v <= 2; v++) {
        assert_int_equal(kwire_find_coordinator_resp(coord_v1, sizeof coord_v1, 7, v, &co),
                         KWIRE_OK);
        assert_int_equal(co.error, 0);
        assert_int_equal(co.node_id, 2);
        assert_string_equal(co.host, "127.0.0.1");
        assert_int_equal(co.port, 9092);
    }
    all_truncations_short(coord_v1, sizeof coord_v1, dec_coord_v1);
    assert_int_equal(kwire_find_coordinator_resp(coord_v3, sizeof coord_v3, 7, 3, &co),
                     KWIRE_OK);
    assert_int_equal(co.error, 0);
    assert_int_equal(co.node_id, 2);
    assert_string_equal(co.host, "127.0.0.1");
    assert_int_equal(co.port, 9092);
    all_truncations_short(coord_v3, sizeof coord_v3, dec_coord_v3);
    /* an error with its message (v1: int16 string) */
    static const uint8_t err1[] = {
        0, 0, 0, 23, 0, 0, 0, 7, 0, 0, 0, 0, 0, 15, 0, 1, 'x', 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    };
    assert_int_equal(kwire_find_coordinator_resp(err1, sizeof err1, 7, 1, &co), KWIRE_OK);
    assert_int_equal(co.error, 15);
    assert_int_equal(co.node_id, -1);
    assert_string_equal(co.host, "");
    assert_int_equal(co.port, -1);
    assert_int_equal(kwire_find_coordinator_resp(coord_v3, sizeof coord_v3, 7, 4, &co),
                     KWIRE_EVERSION);
}

static const uint8_t leave_v3[] = {
    0, 0, 0, 23,
    0, 0, 0, 9,
    0, 0, 0, 0,                 /* throttle */
    0, 0,                       /* top-level: no error */
    0, 0, 0, 1,
    0, 3, 'm', '-', '1',
    0xff, 0xff,                 /* null instance id */
    0, 25,                      /* the member: UNKNOWN_MEMBER_ID */
};

static const uint8_t leave_v4[] = {
    0, 0, 0, 23,
    0, 0, 0, 9,
    0,                          /* response header tagged fields */
    0, 0, 0, 0,
    0, 0,
    2,                          /* one member */
    4, 'm', '-', '1',
    3, 'i', '1',
    0, 82,                      /* FENCED_INSTANCE_ID */
    0,                          /* the member's tagged fields */
    0,                          /* the response's */
};

static int dec_leave_v3(const uint8_t *f, size_t len)
{
    int16_t err;
    return kwire_leave_group_resp(f, len, 9, 3, &err);
}

static int dec_leave_v4(const uint8_t *f, size_t len)
{
    int16_t err;
    return kwire_leave_group_resp(f, len, 9, 4, &err);
}

static void test_leave_group_resp_versions(void **state)
{
    int16_t err = -1;
    static const uint8_t v1[] = { 0, 0, 0, 10, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0 };
    for (int v = 1; v <= 2; v++) {
        err = -1;
        assert_int_equal(kwire_leave_group_resp(v1, sizeof v1, 9, v, &err), KWIRE_OK);
        assert_int_equal(err, 0);
    }
    assert_int_equal(kwire_leave_group_resp(leave_v3, sizeof leave_v3, 9, 3, &err), KWIRE_OK);
    assert_int_equal(err, 25);              /* the member's error */
    all_truncations_short(leave_v3, sizeof leave_v3, dec_leave_v3);
    assert_int_equal(kwire_leave_group_resp(leave_v4, sizeof leave_v4, 9, 4, &err), KWIRE_OK);
    assert_int_equal(err, 82);
    all_truncations_short(leave_v4, sizeof leave_v4, dec_leave_v4);
    assert_int_equal(kwire_leave_group_resp(leave_v4, sizeof leave_v4, 9, 5, &err),
                     KWIRE_EVERSION);
}

static void test_leave_group_resp(void **state)
{
    static const uint8_t ok[] = { 0, 0, 0, 6, 0, 0, 0, 9, 0, 0 };
    static const uint8_t unknown[] = { 0, 0, 0, 6, 0, 0, 0, 9, 0, 25 };
    int16_t err = -1;
    assert_int_equal(kwire_leave_group_resp(ok, sizeof ok, 9, 0, &err), KWIRE_OK);
    assert_int_equal(err, 0);
    assert_int_equal(kwire_leave_group_resp(unknown, sizeof unknown, 9, 0, &err), KWIRE_OK);
    assert_int_equal(err, 25);              /* UNKNOWN_MEMBER_ID */
    assert_int_equal(kwire_leave_group_resp(ok, sizeof ok, 10, 0, &err), KWIRE_ECORR);
    assert_int_equal(kwire_leave_group_resp(ok, sizeof ok - 1, 9, 0, &err), KWIRE_ESHORT);
    static const uint8_t shortframe[] = { 0, 0, 0, 5, 0, 0, 0, 9, 0, 0 };
    assert_int_equal(kwire_leave_group_resp(shortframe, sizeof shortframe, 9, 0, &err),
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
        cmocka_unit_test(test_api_versions_req),
        cmocka_unit_test(test_api_versions_resp),
        cmocka_unit_test(test_pick_version),
        cmocka_unit_test(test_find_coordinator_req_versions),
        cmocka_unit_test(test_leave_group_req_versions),
        cmocka_unit_test(test_find_coordinator_resp_versions),
        cmocka_unit_test(test_leave_group_resp_versions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
