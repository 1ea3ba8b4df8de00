/*
 * A poisoned record in a resumed channel (issue 18): the records a client
 * missed include values that are not valid UTF-8 / not JSON.  The replay
 * must skip them (counted in ws_replay_records_skipped_total), replay the
 * good ones around them, acknowledge, and keep the connection: a strict
 * client (every text frame's UTF-8 is checked here, as RFC 6455 requires of
 * a client: it would fail the connection with 1007) never sees them.
 *
 * Real odin-shard with KAFKA_BROKERS on the runner's redis-server and
 * odin-devbroker; records are produced to partition 0 of odin.trades; the
 * client reconnects with the position of the last good record it had.
 * Waits are for events (frames, a metric), bounded; nothing sleeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/rtsup.h"
#include "tests/support/shardsup.h"
#include "tests/support/support.h"
#include "tests/support/wsclient.h"
#include "tools/lib/rs_check.h"

#define TOPIC "odin.trades"
#define TW 30000

static rtsup_producer *g_prod;
static ssup_shard g_shard;
static int g_shard_up;

static int group_setup(void **st)
{
    char brokers[512], id[64];
    snprintf(brokers, sizeof brokers, "KAFKA_BROKERS=%s", tsup_env("ODIN_KAFKA_BROKERS"));
    snprintf(id, sizeof id, "poison-%d", (int)getpid());
    const char *extra[] = { brokers, "LOG_LEVEL=info", "SHARD_LEASE_TTL=2", NULL };
    if (ssup_shard_start(&g_shard, id, NULL, extra) != 0)
        return -1;
    g_shard_up = 1;
    g_prod = rtsup_producer_new(tsup_env("ODIN_KAFKA_BROKERS"));
    return g_prod ? 0 : -1;
}

static int group_teardown(void **st)
{
    rtsup_producer_free(g_prod);
    if (g_shard_up)
        ssup_shard_stop(&g_shard, SIGKILL, 5000);
    return 0;
}

static void produce(const char *tok, const char *val, size_t len)
{
    rtsup_produce(g_prod, TOPIC, 0, tok, strlen(tok), val, len);
}

static void produce_n(const char *tok, int n)
{
    rtsup_produce_trade(g_prod, TOPIC, 0, tok, n);
}

/* Offset of the last record delivered so far. */
static int64_t last_offset(void)
{
    const int32_t *parts;
    const int64_t *offs;
    size_t n = rtsup_producer_delivered(g_prod, &parts, &offs);
    assert_true(n > 0);
    assert_int_equal(parts[n - 1], 0);
    return offs[n - 1];
}

/* Next text message as JSON; the frame's UTF-8 is checked first.  Fails on
 * a timeout, a close or EOF. */
static json_t *recv_strict(wsc *c)
{
    char *m = NULL;
    size_t len = 0;
    int r = wsc_recv_text(c, TW, &m, &len);
    if (r != 1)
        fail_msg("no message (%d, close %d): the connection must stay open", r,
                 c->close_code);
    int utf8 = rs_utf8_valid((const uint8_t *)m, len);
    json_error_t e;
    json_t *j = utf8 ? json_loadb(m, len, 0, &e) : NULL;
    char head[128];
    snprintf(head, sizeof head, "%.100s", m);
    free(m);
    if (!utf8)
        fail_msg("a text frame with invalid UTF-8 reached the client (%zu bytes)", len);
    if (!j)
        fail_msg("a text frame that is not JSON reached the client: %s", head);
    return j;
}

static const char *jtype(json_t *j)
{
    const char *t = json_string_value(json_object_get(j, "type"));
    return t ? t : "";
}

static long rec_n(json_t *j)
{
    json_t *n = json_object_get(json_object_get(json_object_get(j, "data"), "data"), "n");
    return json_is_integer(n) ? (long)json_integer_value(n) : -1;
}

static void test_poisoned_records_skipped(void **st)
{
    char tok[32], chan[48];
    snprintf(tok, sizeof tok, "PZ%d", (int)getpid());
    snprintf(chan, sizeof chan, "%s.trade", tok);

    /* the client's last good record, then what it misses */
    produce_n(tok, 0);
    assert_int_equal(rtsup_producer_flush(g_prod), 0);
    int64_t pos = last_offset();
    produce_n(tok, 1);
    static const char bad_utf8[] =          /* 0xff never occurs in UTF-8 */
        "{\"type\":\"TRADE_EXECUTED\",\"data\":{\"name\":\"\xff\xfe\"}}";
    static const char overlong[] =          /* "/" encoded in two bytes */
        "{\"type\":\"TRADE_EXECUTED\",\"data\":{\"name\":\"\xc0\xaf\"}}";
    static const char not_json[] = "{\"type\":\"TRADE_EXECUTED\",\"data\":{\"n\":";
    produce(tok, bad_utf8, sizeof bad_utf8 - 1);
    produce(tok, overlong, sizeof overlong - 1);
    produce(tok, not_json, sizeof not_json - 1);
    produce_n(tok, 2);
    assert_int_equal(rtsup_producer_flush(g_prod), 0);
    const int poisoned = 3;

    int status = 0;
    wsc *c = wsc_connect("127.0.0.1", g_shard.port, NULL, &status);
    assert_non_null(c);
    assert_int_equal(status, 101);
    char req[256];
    snprintf(req, sizeof req,
             "{\"type\":\"reconnect\",\"data\":{\"channels\":{\"%s\":{\"p\":0,\"seq\":%lld}}}}",
             chan, (long long)pos);
    assert_int_equal(wsc_send_text(c, req), 0);

    /* exactly n = 1, 2 replayed, then the ack */
    long next = 1;
    for (;;) {
        json_t *j = recv_strict(c);
        if (strcmp(jtype(j), "reconnect_ack") == 0) {
            assert_int_equal(json_integer_value(json_object_get(j, "replayed")), 2);
            json_decref(j);
            break;
        }
        if (strcmp(jtype(j), "reconnect_error") == 0)
            fail_msg("reconnect_error %s: the resume must succeed",
                     json_string_value(json_object_get(j, "code")));
        const char *ch = json_string_value(json_object_get(j, "channel"));
        assert_non_null(ch);
        assert_string_equal(ch, chan);
        assert_true(json_is_true(json_object_get(j, "replay")));
        assert_int_equal(rec_n(j), next);
        next++;
        json_decref(j);
    }
    assert_int_equal(next, 3);

    /* still open and served */
    assert_int_equal(wsc_send_text(c, "{\"type\":\"subscribe\",\"data\":{\"channels\":"
                                      "[\"POISONOK.trade\"]}}"), 0);
    json_t *j = recv_strict(c);
    assert_string_equal(jtype(j), "subscription_ack");
    json_decref(j);

    /* each poisoned record counted as skipped (whatever the reason label) */
    assert_true(ssup_wait_metric_eq(g_shard.port, "ws_replay_records_skipped_total",
                                    poisoned, TW));
    printf("poison: %d poisoned records skipped, 2 replayed, connection kept\n", poisoned);
    wsc_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_poisoned_records_skipped),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
