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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subscribe),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_codes),
        cmocka_unit_test(test_builders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
