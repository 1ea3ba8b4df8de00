/* odin-shard ingress and fan-out: the test acts as a router on the shard's
 * Unix socket; records reach exactly the subscribed clients with the exact
 * envelope bytes; bad frames close only that router connection; a slow
 * client is closed with 1008 while the others keep receiving. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "tests/support/support.h"
#include "tests/support/shardsup.h"
#include "tests/support/wsclient.h"
#include "proto/frame.h"

#define T 5000

static ssup_shard *start(const char *name, const char *const env[])
{
    return ssup_start("deliv", name, env);
}

static void stop(ssup_shard *s) { ssup_stop_ok(s); }

static wsc *client(int port, const char *channels_json)
{
    return ssup_client(port, channels_json, T);
}

static void expect_text(wsc *c, const char *want) { ssup_expect_text(c, want, T); }

static void test_fanout_exact(void **state)
{
    ssup_shard *s = start("fan", NULL);
    ssup_router r;
    assert_int_equal(ssup_router_connect(&r, s->sock, "test-router",
                                         FRAME_PROTO_VERSION), 0);
    assert_string_equal(r.shard_role, "shard");
    assert_string_equal(r.shard_id, s->id);
    assert_int_equal(r.hello.version, FRAME_PROTO_VERSION);
    assert_true(ssup_wait_metric(s->port, "shard_router_connections", 1, T));

    wsc *a = client(s->port, "[\"BTC.trade\"]");
    wsc *b = client(s->port, "[\"BTC.analytics\",\"ETH.trade\"]");
    wsc *c = client(s->port, NULL);
    wsc *d = client(s->port, "[\"BTC.trade\"]");

    const char *v1 = "{\"type\":\"TRADE_EXECUTED\",\"timestamp\":1,\"data\":{\"p\":\"1.5\"}}";
    const char *v2 = "{\"type\":\"ANALYTICS\",\"data\":[1,2,3]}";
    const char *v3 = "{\"type\":\"TRADE_EXECUTED\",\"data\":{}}";
    frame_record recs[6] = {
        ssup_rec("trade", "BTC", 100, 1700000000001, v1),
        ssup_rec("analytics", "BTC", 7, 1700000000002, v2),
        ssup_rec("trade", "ETH", 55, 1700000000003, v3),
        ssup_rec("trade", "SOL", 1, 1700000000004, "{}"),     /* nobody */
        ssup_rec("social", "BTC", 2, 1700000000005, "{}"),    /* no channel */
        ssup_rec("system", "*", 9, 1700000000006, "{\"type\":\"ANNOUNCE\"}"),
    };
    recs[5].flags = FRAME_REC_ALL_CLIENTS;
    assert_int_equal(ssup_router_send(&r, recs, 6), 0);

    char w1[512], w3[512], wall[512];
    snprintf(w1, sizeof(w1), "{\"seq\":100,\"p\":0,\"ts\":1700000000001,\"type\":\"price:update\","
             "\"priority\":1,\"channel\":\"BTC.trade\",\"data\":%s}", v1);
    snprintf(w3, sizeof(w3), "{\"seq\":55,\"p\":0,\"ts\":1700000000003,\"type\":\"price:update\","
             "\"priority\":1,\"channel\":\"ETH.trade\",\"data\":%s}", v3);
    snprintf(wall, sizeof(wall), "{\"seq\":9,\"p\":0,\"ts\":1700000000006,\"type\":\"price:update\","
             "\"priority\":1,\"channel\":\"*.system\",\"data\":{\"type\":\"ANNOUNCE\"}}");

    /* A and D: BTC.trade, then the broadcast (nothing else in between) */
    expect_text(a, w1);
    expect_text(a, wall);
    expect_text(d, w1);
    expect_text(d, wall);
    /* B: BTC.analytics (type/priority from common/topics), ETH.trade */
    char *m = NULL;
    assert_int_equal(wsc_recv_text(b, T, &m, NULL), 1);
    assert_non_null(strstr(m, "\"channel\":\"BTC.analytics\""));
    assert_non_null(strstr(m, "{\"seq\":7,\"p\":0,\"ts\":1700000000002,\"type\":\""));
    char *data = strstr(m, ",\"data\":");
    assert_non_null(data);
    assert_string_equal(data + 8, "{\"type\":\"ANALYTICS\",\"data\":[1,2,3]}}");
    free(m);
    expect_text(b, w3);
    expect_text(b, wall);
    /* C: only the broadcast */
    expect_text(c, wall);

    assert_true(ssup_wait_metric(s->port, "shard_records_received_total", 6, T));
    assert_true(ssup_metric(s->port,
                            "shard_records_dropped_total{reason=\"no_subscribers\"}") == 1);
    assert_true(ssup_metric(s->port,
                            "shard_records_dropped_total{reason=\"no_channel\"}") == 1);
    assert_true(ssup_metric(s->port, "shard_records_broadcast_total") == 1);
    /* 2 (BTC.trade) + 1 + 1 + 4 (broadcast) */
    assert_true(ssup_metric(s->port, "ws_messages_sent_total") == 8);

    /* unsubscribed clients stop receiving: D leaves BTC.trade */
    assert_int_equal(wsc_send_text(d, "{\"type\":\"unsubscribe\",\"data\":"
                                      "{\"channels\":[\"BTC.trade\"]}}"), 0);
    assert_int_equal(wsc_recv_text(d, T, &m, NULL), 1);
    free(m);
    frame_record more[2] = {
        ssup_rec("trade", "BTC", 101, 1700000000007, "1"),
        ssup_rec("system", "*", 10, 1700000000008, "2"),
    };
    more[1].flags = FRAME_REC_ALL_CLIENTS;
    assert_int_equal(ssup_router_send(&r, more, 2), 0);
    assert_int_equal(wsc_recv_text(d, T, &m, NULL), 1);
    assert_non_null(strstr(m, "\"seq\":10,"));        /* broadcast, not 101 */
    free(m);
    assert_int_equal(wsc_recv_text(a, T, &m, NULL), 1);
    assert_non_null(strstr(m, "\"seq\":101,"));
    free(m);

    wsc_free(a);
    wsc_free(b);
    wsc_free(c);
    wsc_free(d);
    ssup_router_close(&r);
    stop(s);
}

static void test_router_errors(void **state)
{
    const char *env[] = { "SHARD_MAX_FRAME=4096", NULL };
    ssup_shard *s = start("rerr", env);
    wsc *a = client(s->port, "[\"BTC.trade\"]");
    ssup_router r;

    /* malformed payload */
    assert_int_equal(ssup_router_connect(&r, s->sock, "bad1", FRAME_PROTO_VERSION), 0);
    assert_int_equal(ssup_router_send_raw(&r, "\x00\x00\x00\x03\xc1\xc1\xc1", 7), 0);
    assert_int_equal(ssup_router_wait_closed(&r, T), 1);
    ssup_router_close(&r);

    /* oversized frame */
    assert_int_equal(ssup_router_connect(&r, s->sock, "bad2", FRAME_PROTO_VERSION), 0);
    assert_int_equal(ssup_router_send_raw(&r, "\x00\x01\x00\x00", 4), 0);
    assert_int_equal(ssup_router_wait_closed(&r, T), 1);
    ssup_router_close(&r);

    /* version mismatch: the shard still sends its hello, then closes */
    assert_int_equal(ssup_router_connect(&r, s->sock, "bad3", 99), 0);
    assert_int_equal(ssup_router_wait_closed(&r, T), 1);
    ssup_router_close(&r);

    /* a delivery before the hello */
    {
        buf out = { 0 };
        frame_batch b;
        frame_record rec = ssup_rec("trade", "BTC", 1, 1, "{}");
        frame_batch_begin(&b, &out, FRAME_MODE_TARGETED);
        frame_batch_add(&b, &rec);
        frame_batch_end(&b);
        ssup_router raw;
        memset(&raw, 0, sizeof(raw));
        /* connect without the helper's hello */
        assert_int_equal(ssup_router_connect(&r, s->sock, "x", FRAME_PROTO_VERSION), 0);
        ssup_router_close(&r);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sa;
        memset(&sa, 0, sizeof(sa));
        sa.sun_family = AF_UNIX;
        assert_true(strlen(s->sock) < sizeof(sa.sun_path));
        memcpy(sa.sun_path, s->sock, strlen(s->sock));
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        raw.fd = fd;
        assert_int_equal(ssup_router_send_raw(&raw, out.data, out.len), 0);
        assert_int_equal(ssup_router_wait_closed(&raw, T), 1);
        close(fd);
        buf_free(&out);
    }
    assert_true(ssup_wait_metric(s->port, "shard_frames_errors_total", 4, T));

    /* the shard is fine: a good router still delivers */
    assert_int_equal(ssup_router_connect(&r, s->sock, "good", FRAME_PROTO_VERSION), 0);
    frame_record rec = ssup_rec("trade", "BTC", 5, 6, "{\"ok\":true}");
    assert_int_equal(ssup_router_send(&r, &rec, 1), 0);
    expect_text(a, "{\"seq\":5,\"p\":0,\"ts\":6,\"type\":\"price:update\",\"priority\":1,"
                   "\"channel\":\"BTC.trade\",\"data\":{\"ok\":true}}");
    /* a frame split byte by byte is reassembled */
    buf out = { 0 };
    frame_batch b;
    rec.offset = 6;
    frame_batch_begin(&b, &out, FRAME_MODE_TARGETED);
    frame_batch_add(&b, &rec);
    frame_batch_end(&b);
    for (size_t i = 0; i < out.len; i++)
        assert_int_equal(ssup_router_send_raw(&r, out.data + i, 1), 0);
    buf_free(&out);
    char *m = NULL;
    assert_int_equal(wsc_recv_text(a, T, &m, NULL), 1);
    assert_non_null(strstr(m, "\"seq\":6,"));
    free(m);
    ssup_router_close(&r);
    wsc_free(a);
    stop(s);
}

/* Several routers at once; records from each reach the clients. */
static void test_two_routers(void **state)
{
    ssup_shard *s = start("two", NULL);
    wsc *a = client(s->port, "[\"BTC.trade\",\"ETH.trade\"]");
    ssup_router r1, r2;
    assert_int_equal(ssup_router_connect(&r1, s->sock, "r1", FRAME_PROTO_VERSION), 0);
    assert_int_equal(ssup_router_connect(&r2, s->sock, "r2", FRAME_PROTO_VERSION), 0);
    assert_true(ssup_wait_metric(s->port, "shard_router_connections", 2, T));
    frame_record x = ssup_rec("trade", "BTC", 1, 1, "1");
    frame_record y = ssup_rec("trade", "ETH", 2, 2, "2");
    assert_int_equal(ssup_router_send(&r1, &x, 1), 0);
    char *m = NULL;
    assert_int_equal(wsc_recv_text(a, T, &m, NULL), 1);
    assert_non_null(strstr(m, "\"channel\":\"BTC.trade\""));
    free(m);
    assert_int_equal(ssup_router_send(&r2, &y, 1), 0);
    assert_int_equal(wsc_recv_text(a, T, &m, NULL), 1);
    assert_non_null(strstr(m, "\"channel\":\"ETH.trade\""));
    free(m);
    ssup_router_close(&r1);
    ssup_router_close(&r2);
    wsc_free(a);
    stop(s);
}

static void test_slow_client(void **state)
{
    const char *env[] = { "WS_SEND_QUEUE_MSGS=64", "WS_SEND_QUEUE_BYTES=262144",
                          "WS_CLOSE_TIMEOUT=60", NULL };
    ssup_shard *s = start("slow", env);
    wsc_opts so = { .rcvbuf = 4096 };
    int st;
    wsc *slow = wsc_connect("127.0.0.1", s->port, &so, &st);
    assert_non_null(slow);
    assert_int_equal(wsc_send_text(slow, "{\"type\":\"subscribe\",\"data\":"
                                         "{\"channels\":[\"BTC.trade\"]}}"), 0);
    wsc *fast = client(s->port, "[\"BTC.trade\"]");
    /* the slow client never reads from here on (its ack stays unread) */
    assert_true(ssup_wait_metric(s->port, "ws_subscriptions_active", 2, T));
    ssup_router r;
    assert_int_equal(ssup_router_connect(&r, s->sock, "r", FRAME_PROTO_VERSION), 0);

    char *val = malloc(32 * 1024 + 1);
    memset(val, '7', 32 * 1024);
    val[32 * 1024] = 0;
    int64_t off = 0;
    int slow_closed = 0;
    for (int batch = 0; batch < 1000 && !slow_closed; batch++) {
        frame_record recs[4];
        for (int i = 0; i < 4; i++)
            recs[i] = ssup_rec("trade", "BTC", off + i, 1, val);
        assert_int_equal(ssup_router_send(&r, recs, 4), 0);
        /* the fast client keeps up and sees every record in order */
        for (int i = 0; i < 4; i++) {
            char *m = NULL;
            size_t len = 0;
            assert_int_equal(wsc_recv_text(fast, T, &m, &len), 1);
            char want[64];
            snprintf(want, sizeof(want), "{\"seq\":%lld,", (long long)(off + i));
            assert_int_equal(strncmp(m, want, strlen(want)), 0);
            free(m);
        }
        off += 4;
        slow_closed = ssup_metric(s->port, "ws_slow_clients_disconnected_total") >= 1;
    }
    free(val);
    assert_true(slow_closed);
    /* the slow client reads what the kernel held, then the 1008 close */
    assert_int_equal(wsc_wait_close(slow, 30000), 1008);
    wsc_free(slow);
    assert_true(ssup_metric(s->port, "ws_disconnects_total{code=\"1008\"}") >= 1);
    /* the fast one is unaffected */
    frame_record last = ssup_rec("trade", "BTC", off, 1, "\"end\"");
    assert_int_equal(ssup_router_send(&r, &last, 1), 0);
    char *m = NULL;
    assert_int_equal(wsc_recv_text(fast, T, &m, NULL), 1);
    assert_non_null(strstr(m, "\"data\":\"end\""));
    free(m);
    assert_true(ssup_wait_metric(s->port, "ws_connections_active", 1, T));
    assert_true(ssup_metric(s->port, "ws_connections_active") == 1);
    ssup_router_close(&r);
    wsc_free(fast);
    stop(s);
}

/* One router frame with far more records for a channel than a client
 * queue holds must not disconnect clients that read. */
static void test_big_batch(void **state)
{
    const char *env[] = { "WS_SEND_QUEUE_MSGS=64", NULL };
    ssup_shard *s = start("batch", env);
    wsc *a = client(s->port, "[\"BTC.trade\"]");
    wsc *b = client(s->port, "[\"BTC.trade\"]");
    ssup_router r;
    assert_int_equal(ssup_router_connect(&r, s->sock, "r", FRAME_PROTO_VERSION), 0);
    enum { N = 1000 };
    frame_record *recs = calloc(N, sizeof(*recs));
    for (int i = 0; i < N; i++)
        recs[i] = ssup_rec("trade", "BTC", i, 1, "{\"p\":\"123.456\"}");
    assert_int_equal(ssup_router_send(&r, recs, N), 0);
    free(recs);
    for (int i = 0; i < N; i++) {
        char *m = NULL;
        char want[64];
        snprintf(want, sizeof(want), "{\"seq\":%d,", i);
        assert_int_equal(wsc_recv_text(a, T, &m, NULL), 1);
        assert_int_equal(strncmp(m, want, strlen(want)), 0);
        free(m);
        assert_int_equal(wsc_recv_text(b, T, &m, NULL), 1);
        assert_int_equal(strncmp(m, want, strlen(want)), 0);
        free(m);
    }
    assert_true(ssup_metric(s->port, "ws_slow_clients_disconnected_total") == 0);
    ssup_router_close(&r);
    wsc_free(a);
    wsc_free(b);
    stop(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fanout_exact),
        cmocka_unit_test(test_router_errors),
        cmocka_unit_test(test_two_routers),
        cmocka_unit_test(test_big_batch),
        cmocka_unit_test(test_slow_client),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
