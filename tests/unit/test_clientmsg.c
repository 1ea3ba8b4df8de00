/* shard/clientmsg.c: client message parsing and reply JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "shard/clientmsg.h"

static enum clientmsg_err parse(const char *s, clientmsg *m)
{
    return clientmsg_parse(s, strlen(s), 128, m);
}

static void test_subscribe(void **state)
{
    clientmsg m;
    assert_int_equal(parse("{\"type\":\"subscribe\",\"data\":{\"channels\":"
                           "[\"BTC.trade\",\"ETH.analytics\",\"BTC.trade\"]}}",
                           &m), CLIENTMSG_OK);
    assert_int_equal(m.type, CLIENTMSG_SUBSCRIBE);
    assert_int_equal(m.nchannels, 2);   /* duplicate dropped */
    assert_int_equal(m.channels[0].len, 9);
    assert_memory_equal(m.channels[0].s, "BTC.trade", 9);
    assert_memory_equal(m.channels[1].s, "ETH.analytics", 13);
    clientmsg_free(&m);

    assert_int_equal(parse("{\"data\":{\"channels\":[]},\"type\":\"unsubscribe\"}",
                           &m), CLIENTMSG_OK);
    assert_int_equal(m.type, CLIENTMSG_UNSUBSCRIBE);
    assert_int_equal(m.nchannels, 0);
    clientmsg_free(&m);

    assert_int_equal(parse(" {\"type\":\"heartbeat\",\"extra\":1} ", &m),
                     CLIENTMSG_OK);
    assert_int_equal(m.type, CLIENTMSG_HEARTBEAT);
    clientmsg_free(&m);
}

static void expect(const char *s, enum clientmsg_err e)
{
    clientmsg m;
    assert_int_equal(parse(s, &m), e);
    assert_true(strlen(m.errmsg) > 0);
    clientmsg_free(&m);
}

static void test_errors(void **state)
{
    expect("", CLIENTMSG_E_INVALID_JSON);
    expect("{", CLIENTMSG_E_INVALID_JSON);
    expect("not json", CLIENTMSG_E_INVALID_JSON);
    expect("[1,2]", CLIENTMSG_E_INVALID_JSON);
    expect("{\"type\":\"subscribe\"} trailing", CLIENTMSG_E_INVALID_JSON);
    expect("{}", CLIENTMSG_E_UNKNOWN_TYPE);
    expect("{\"type\":5}", CLIENTMSG_E_UNKNOWN_TYPE);
    expect("{\"type\":\"ping\"}", CLIENTMSG_E_UNKNOWN_TYPE);
    expect("{\"type\":\"Subscribe\"}", CLIENTMSG_E_UNKNOWN_TYPE);
    expect("{\"type\":\"subscribe\"}", CLIENTMSG_E_INVALID_JSON);
    expect("{\"type\":\"subscribe\",\"data\":{}}", CLIENTMSG_E_INVALID_JSON);
    expect("{\"type\":\"subscribe\",\"data\":{\"channels\":\"BTC.trade\"}}",
           CLIENTMSG_E_INVALID_JSON);
    expect("{\"type\":\"subscribe\",\"data\":{\"channels\":[1]}}",
           CLIENTMSG_E_INVALID_CHANNEL);
    expect("{\"type\":\"subscribe\",\"data\":{\"channels\":[\"BTC\"]}}",
           CLIENTMSG_E_INVALID_CHANNEL);
    expect("{\"type\":\"subscribe\",\"data\":{\"channels\":[\"BTC.trade\","
           "\"bad token.trade\"]}}", CLIENTMSG_E_INVALID_CHANNEL);
    expect("{\"type\":\"unsubscribe\",\"data\":{\"channels\":[\"x.\"]}}",
           CLIENTMSG_E_INVALID_CHANNEL);

    /* more channels in one message than allowed per connection */
    clientmsg m;
    const char *three = "{\"type\":\"subscribe\",\"data\":{\"channels\":"
                        "[\"A.trade\",\"B.trade\",\"C.trade\"]}}";
    assert_int_equal(clientmsg_parse(three, strlen(three), 2, &m),
                     CLIENTMSG_E_TOO_MANY);
    clientmsg_free(&m);
    assert_int_equal(clientmsg_parse(three, strlen(three), 3, &m),
                     CLIENTMSG_OK);
    clientmsg_free(&m);

    /* quoted client input is cut on a UTF-8 boundary */
    char msg[256] = "{\"type\":\"";
    for (int i = 0; i < 40; i++)
        strcat(msg, "\xc3\xa9");   /* é, 2 bytes each */
    strcat(msg, "\"}");
    assert_int_equal(parse(msg, &m), CLIENTMSG_E_UNKNOWN_TYPE);
    const char *q = strchr(m.errmsg, '"');
    assert_non_null(q);
    size_t run = 0;
    for (const char *p = q + 1; (unsigned char)*p >= 0x80; p++)
        run++;
    assert_int_equal(run % 2, 0);
    assert_true(run <= 64);
    clientmsg_free(&m);
}

static void test_codes(void **state)
{
    assert_string_equal(clientmsg_code(CLIENTMSG_E_INVALID_JSON), "INVALID_JSON");
    assert_string_equal(clientmsg_code(CLIENTMSG_E_UNKNOWN_TYPE), "UNKNOWN_TYPE");
    assert_string_equal(clientmsg_code(CLIENTMSG_E_INVALID_CHANNEL),
                        "INVALID_CHANNEL");
    assert_string_equal(clientmsg_code(CLIENTMSG_E_TOO_MANY),
                        "TOO_MANY_SUBSCRIPTIONS");
    assert_string_equal(clientmsg_code(CLIENTMSG_E_TOO_LARGE),
                        "MESSAGE_TOO_LARGE");
    assert_string_equal(clientmsg_code(CLIENTMSG_E_RATE_LIMIT),
                        "RATE_LIMIT_EXCEEDED");
    assert_string_equal(clientmsg_code(CLIENTMSG_E_TOO_MANY_TOKENS),
                        "TOO_MANY_TOKENS");
}

static void test_builders(void **state)
{
    buf b = { 0 };
    clientmsg_chan ch[2] = { { "BTC.trade", 9 }, { "ETH.analytics", 13 } };
    assert_int_equal(clientmsg_build_ack(&b, CLIENTMSG_SUBSCRIBE, ch, 2, 5), 0);
    assert_int_equal(b.len, strlen("{\"type\":\"subscription_ack\",\"subscribed\":"
                                   "[\"BTC.trade\",\"ETH.analytics\"],\"count\":5}"));
    assert_memory_equal(b.data, "{\"type\":\"subscription_ack\",\"subscribed\":"
                        "[\"BTC.trade\",\"ETH.analytics\"],\"count\":5}", b.len);
    buf_reset(&b);
    assert_int_equal(clientmsg_build_ack(&b, CLIENTMSG_UNSUBSCRIBE, ch, 0, 0), 0);
    assert_memory_equal(b.data, "{\"type\":\"unsubscription_ack\","
                        "\"unsubscribed\":[],\"count\":0}", b.len);
    buf_reset(&b);
    assert_int_equal(clientmsg_build_error(&b, CLIENTMSG_E_INVALID_CHANNEL,
                                           "bad \"x\""), 0);
    const char *want = "{\"type\":\"error\",\"code\":\"INVALID_CHANNEL\","
                       "\"message\":\"bad \\\"x\\\"\"}";
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    buf_reset(&b);
    assert_int_equal(clientmsg_build_pong(&b, 1700000000123ull), 0);
    assert_memory_equal(b.data, "{\"type\":\"pong\",\"ts\":1700000000123}", b.len);
    buf_free(&b);
}

static void test_reconnect(void **state)
{
    clientmsg m;
    assert_int_equal(parse("{\"type\":\"reconnect\",\"data\":{\"channels\":{"
                           "\"BTC.trade\":{\"p\":3,\"seq\":1042},"
                           "\"ETH.analytics\":{\"seq\":-1,\"p\":0}}}}", &m),
                     CLIENTMSG_OK);
    assert_int_equal(m.type, CLIENTMSG_RECONNECT);
    assert_int_equal(m.odinws, 0);
    assert_int_equal(m.nchannels, 2);
    /* jansson keeps object order of insertion */
    assert_memory_equal(m.channels[0].s, "BTC.trade", 9);
    assert_int_equal(m.positions[0].p, 3);
    assert_int_equal(m.positions[0].seq, 1042);
    assert_memory_equal(m.channels[1].s, "ETH.analytics", 13);
    assert_int_equal(m.positions[1].p, 0);
    assert_int_equal(m.positions[1].seq, -1);
    clientmsg_free(&m);

    /* odin-ws form */
    assert_int_equal(parse("{\"type\":\"reconnect\",\"data\":{\"client_id\":\"c1\","
                           "\"last_offset\":{\"odin.trades\":1042,\"odin.balances\":7}}}",
                           &m), CLIENTMSG_OK);
    assert_int_equal(m.type, CLIENTMSG_RECONNECT);
    assert_int_equal(m.odinws, 1);
    assert_int_equal(m.nchannels, 0);
    assert_int_equal(m.ntopics, 2);
    assert_memory_equal(m.topics[0].topic, "odin.trades", 11);
    assert_int_equal(m.topics[0].len, 11);
    assert_int_equal(m.topics[0].offset, 1042);
    assert_int_equal(m.topics[1].offset, 7);
    clientmsg_free(&m);

    /* errors */
    const char *bad_json[] = {
        "{\"type\":\"reconnect\"}",
        "{\"type\":\"reconnect\",\"data\":{\"channels\":[\"BTC.trade\"]}}",
        "{\"type\":\"reconnect\",\"data\":{\"channels\":{\"BTC.trade\":3}}}",
        "{\"type\":\"reconnect\",\"data\":{\"channels\":{\"BTC.trade\":{\"p\":3}}}}",
        "{\"type\":\"reconnect\",\"data\":{\"channels\":{\"BTC.trade\":{\"p\":-1,\"seq\":1}}}}",
        "{\"type\":\"reconnect\",\"data\":{\"channels\":{\"BTC.trade\":{\"p\":1,\"seq\":-2}}}}",
        "{\"type\":\"reconnect\",\"data\":{\"channels\":{\"BTC.trade\":{\"p\":1.5,\"seq\":1}}}}",
        "{\"type\":\"reconnect\",\"data\":{\"channels\":{\"BTC.trade\":{\"p\":4294967296,\"seq\":1}}}}",
        "{\"type\":\"reconnect\",\"data\":{\"last_offset\":{\"odin.trades\":\"1\"}}}",
        "{\"type\":\"reconnect\",\"data\":{\"last_offset\":[1]}}",
    };
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++) {
        assert_int_equal(parse(bad_json[i], &m), CLIENTMSG_E_INVALID_JSON);
        assert_true(strlen(m.errmsg) > 0);
        clientmsg_free(&m);
    }
    assert_int_equal(parse("{\"type\":\"reconnect\",\"data\":{\"channels\":{"
                           "\"BTC\":{\"p\":1,\"seq\":1}}}}", &m),
                     CLIENTMSG_E_INVALID_CHANNEL);
    clientmsg_free(&m);
    const char *two = "{\"type\":\"reconnect\",\"data\":{\"channels\":{"
                      "\"A.trade\":{\"p\":1,\"seq\":1},"
                      "\"B.trade\":{\"p\":1,\"seq\":1}}}}";
    assert_int_equal(clientmsg_parse(two, strlen(two), 1, &m), CLIENTMSG_E_TOO_MANY);
    clientmsg_free(&m);
}

static void test_reconnect_builders(void **state)
{
    buf b = { 0 };
    clientmsg_chan ch[2] = { { "BTC.trade", 9 }, { "ETH.trade", 9 } };
    assert_int_equal(clientmsg_build_reconnect_ack(&b, 50, ch, 2, 3), 0);
    const char *w = "{\"type\":\"reconnect_ack\",\"replayed\":50,\"subscribed\":"
                    "[\"BTC.trade\",\"ETH.trade\"],\"count\":3}";
    assert_int_equal(b.len, strlen(w));
    assert_memory_equal(b.data, w, b.len);
    buf_reset(&b);
    assert_int_equal(clientmsg_build_reconnect_error(&b, "TOO_FAR_BEHIND", "a \"q\""), 0);
    const char *w2 = "{\"type\":\"reconnect_error\",\"code\":\"TOO_FAR_BEHIND\","
                     "\"message\":\"a \\\"q\\\"\"}";
    assert_int_equal(b.len, strlen(w2));
    assert_memory_equal(b.data, w2, b.len);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subscribe),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_codes),
        cmocka_unit_test(test_builders),
        cmocka_unit_test(test_reconnect),
        cmocka_unit_test(test_reconnect_builders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
