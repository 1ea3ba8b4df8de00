/* shard/ws.c input side: wslay driven with scripted bytes, lazy context,
 * ordering of wslay's control replies, protocol-violation close codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/wsframe.h"
#include "shard/ws.h"

typedef struct rec {
    char log[4096];          /* "T:<msg>|B:<n>|P|C:<code>|" events */
    uint8_t out[4096];       /* bytes wslay sent */
    size_t out_len;
    int stop_on;             /* call ws_parser_stop on this message number */
    int nmsg;
} rec;

static void on_message(void *ud, ws_parser *p, unsigned op, const uint8_t *m,
                       size_t n)
{
    rec *r = ud;
    size_t l = strlen(r->log);
    if (op == WS_OP_TEXT)
        snprintf(r->log + l, sizeof(r->log) - l, "T:%.*s|", (int)n, m);
    else
        snprintf(r->log + l, sizeof(r->log) - l, "B:%zu|", n);
    if (++r->nmsg == r->stop_on)
        ws_parser_stop(p);
}

static void on_control(void *ud, ws_parser *p, unsigned op, uint16_t code)
{
    rec *r = ud;
    size_t l = strlen(r->log);
    if (op == WS_OP_CLOSE)
        snprintf(r->log + l, sizeof(r->log) - l, "C:%u|", code);
    else
        snprintf(r->log + l, sizeof(r->log) - l, "%s|",
                 op == WS_OP_PING ? "PING" : "PONG");
}

static int on_send(void *ud, const uint8_t *d, size_t n)
{
    rec *r = ud;
    /* every call carries exactly one whole frame */
    assert_true(n >= 2);
    assert_int_equal(d[1] & 0x80, 0);        /* server frames are unmasked */
    assert_true((d[1] & 0x7f) < 126);
    assert_int_equal(n, 2u + (d[1] & 0x7f));
    assert_true(r->out_len + n <= sizeof(r->out));
    memcpy(r->out + r->out_len, d, n);
    r->out_len += n;
    return 0;
}

static const ws_parser_cb CB = { on_message, on_control, on_send };

/* Append a masked client frame. */
static size_t frame(uint8_t *out, int fin, int op, const void *p, size_t n)
{
    static const uint8_t mask[4] = { 0x12, 0x34, 0x56, 0x78 };
    size_t h = wsframe_client_header(out, op, fin, n, mask);
    if (n)
        memcpy(out + h, p, n);
    wsframe_mask(out + h, n, mask, 0);
    return h + n;
}

static void test_text_any_split(void **state)
{
    ws_parser_set *S = *state;
    uint8_t in[1024];
    size_t n = frame(in, 1, WS_OP_TEXT, "hello", 5);
    n += frame(in + n, 1, WS_OP_TEXT, "{\"type\":\"heartbeat\"}", 20);
    char big[300];
    memset(big, 'z', sizeof(big));
    n += frame(in + n, 1, WS_OP_TEXT, big, sizeof(big));
    for (size_t split = 0; split <= n; split++) {
        rec r = { .log = "" };
        ws_parser p = { .set = S };
        assert_int_equal(ws_parser_feed(&p, &CB, &r, in, split, 1 << 20),
                         WS_FEED_OK);
        /* the context only lives while a frame is incomplete */
        assert_int_equal(p.ctx != NULL, split != 0 && split != 11 &&
                                        split != 37 && split != n);
        assert_int_equal(ws_parser_feed(&p, &CB, &r, in + split, n - split,
                                        1 << 20), WS_FEED_OK);
        assert_null(p.ctx);
        assert_int_equal(strncmp(r.log, "T:hello|T:{\"type\":\"heartbeat\"}|T:zzz", 36),
                         0);
        assert_int_equal(r.nmsg, 3);
        ws_parser_free(&p);
    }
    assert_int_equal(ws_parser_contexts(S), 0);
}

static void test_fragmented(void **state)
{
    ws_parser_set *S = *state;
    uint8_t in[256];
    size_t n1 = frame(in, 0, WS_OP_TEXT, "hel", 3);
    size_t n2 = frame(in + n1, 0, WS_OP_CONT, "lo ", 3);
    size_t n3 = frame(in + n1 + n2, 1, WS_OP_PING, "p", 1);  /* interleaved */
    size_t n4 = frame(in + n1 + n2 + n3, 1, WS_OP_CONT, "you", 3);
    rec r = { .log = "" };
    ws_parser p = { .set = S };
    assert_int_equal(ws_parser_feed(&p, &CB, &r, in, n1, 1 << 20), WS_FEED_OK);
    assert_non_null(p.ctx);   /* message open: context kept */
    assert_int_equal(ws_parser_feed(&p, &CB, &r, in + n1, n2 + n3, 1 << 20),
                     WS_FEED_OK);
    assert_string_equal(r.log, "PING|");
    /* pong: unmasked, same payload */
    assert_int_equal(r.out_len, 3);
    assert_memory_equal(r.out, "\x8a\x01p", 3);
    assert_int_equal(ws_parser_feed(&p, &CB, &r, in + n1 + n2 + n3, n4, 1 << 20),
                     WS_FEED_OK);
    assert_string_equal(r.log, "PING|T:hello you|");
    assert_null(p.ctx);
    ws_parser_free(&p);
}

/* The pong for a ping is handed out before the message that followed the
 * ping is processed, so replies keep the order of the input. */
static int g_order_ok;
static int order_send(void *ud, const uint8_t *d, size_t n)
{
    rec *r = ud;
    if (r->nmsg == 0 && d[0] == 0x8a)
        g_order_ok = 1;
    return on_send(ud, d, n);
}

static void test_pong_order(void **state)
{
    ws_parser_set *S = *state;
    ws_parser_cb cb = { on_message, on_control, order_send };
    uint8_t in[256];
    size_t n = frame(in, 1, WS_OP_PING, "ab", 2);
    n += frame(in + n, 1, WS_OP_TEXT, "x", 1);
    rec r = { .log = "" };
    ws_parser p = { .set = S };
    g_order_ok = 0;
    assert_int_equal(ws_parser_feed(&p, &cb, &r, in, n, 1 << 20), WS_FEED_OK);
    assert_true(g_order_ok);
    assert_string_equal(r.log, "PING|T:x|");
}

static void test_close_echo(void **state)
{
    ws_parser_set *S = *state;
    uint8_t in[64];
    uint8_t code[2] = { 1000 >> 8, 1000 & 0xff };
    size_t n = frame(in, 1, WS_OP_CLOSE, code, 2);
    n += frame(in + n, 1, WS_OP_TEXT, "after", 5);   /* ignored */
    rec r = { .log = "" };
    ws_parser p = { .set = S };
    assert_int_equal(ws_parser_feed(&p, &CB, &r, in, n, 1 << 20), WS_FEED_CLOSED);
    assert_string_equal(r.log, "C:1000|");
    assert_int_equal(p.close_code, 1000);
    assert_int_equal(r.out_len, 4);
    assert_memory_equal(r.out, "\x88\x02\x03\xe8", 4);
    assert_null(p.ctx);
    assert_int_equal(ws_parser_feed(&p, &CB, &r, in, n, 1 << 20),
                     WS_FEED_STOPPED);
}

static uint16_t close_sent(const rec *r)
{
    assert_true(r->out_len >= 4);
    assert_int_equal(r->out[0], 0x88);
    return (uint16_t)((r->out[2] << 8) | r->out[3]);
}

static void test_violations(void **state)
{
    ws_parser_set *S = *state;
    uint8_t in[70000];
    rec r;
    ws_parser p;

    /* too big for max_msg: 1009 */
    memset(&r, 0, sizeof(r));
    ws_parser_init(&p, S);
    char big[2000];
    memset(big, 'a', sizeof(big));
    size_t n = frame(in, 1, WS_OP_TEXT, big, sizeof(big));
    assert_int_equal(ws_parser_feed(&p, &CB, &r, in, n, 1024), WS_FEED_CLOSED);
    assert_int_equal(close_sent(&r), 1009);
    assert_int_equal(p.close_code, 1009);

    /* too big across fragments */
    memset(&r, 0, sizeof(r));
    ws_parser_init(&p, S);
    n = frame(in, 0, WS_OP_TEXT, big, 600);
    n += frame(in + n, 1, WS_OP_CONT, big, 600);
    assert_int_equal(ws_parser_feed(&p, &CB, &r, in, n, 1024), WS_FEED_CLOSED);
    assert_int_equal(close_sent(&r), 1009);

    /* invalid UTF-8 in a text frame: 1007 */
    memset(&r, 0, sizeof(r));
    ws_parser_init(&p, S);
    n = frame(in, 1, WS_OP_TEXT, "\xff\xfe", 2);
    assert_int_equal(ws_parser_feed(&p, &CB, &r, in, n, 1024), WS_FEED_CLOSED);
    assert_int_equal(close_sent(&r), 1007);

    /* unmasked client frame: 1002 */
    memset(&r, 0, sizeof(r));
    ws_parser_init(&p, S);
    assert_int_equal(ws_parser_feed(&p, &CB, &r, (const uint8_t *)"\x81\x02hi", 4,
                                    1024), WS_FEED_CLOSED);
    assert_int_equal(close_sent(&r), 1002);

    /* RSV bit set: 1002 */
    memset(&r, 0, sizeof(r));
    ws_parser_init(&p, S);
    n = frame(in, 1, WS_OP_TEXT, "x", 1);
    in[0] |= 0x40;
    assert_int_equal(ws_parser_feed(&p, &CB, &r, in, n, 1024), WS_FEED_CLOSED);
    assert_int_equal(close_sent(&r), 1002);

    /* continuation without a start: 1002 */
    memset(&r, 0, sizeof(r));
    ws_parser_init(&p, S);
    n = frame(in, 1, WS_OP_CONT, "x", 1);
    assert_int_equal(ws_parser_feed(&p, &CB, &r, in, n, 1024), WS_FEED_CLOSED);
    assert_int_equal(close_sent(&r), 1002);

    /* control frame with 126-byte payload: broken framing -> caller 1002 */
    memset(&r, 0, sizeof(r));
    ws_parser_init(&p, S);
    n = frame(in, 1, WS_OP_PING, big, 126);
    assert_int_equal(ws_parser_feed(&p, &CB, &r, in, n, 1024), WS_FEED_ERROR);
    assert_null(p.ctx);

    /* binary is delivered; the owner decides (the shard closes 1003) */
    memset(&r, 0, sizeof(r));
    ws_parser_init(&p, S);
    n = frame(in, 1, WS_OP_BINARY, "\x00\x01", 2);
    assert_int_equal(ws_parser_feed(&p, &CB, &r, in, n, 1024), WS_FEED_OK);
    assert_string_equal(r.log, "B:2|");
    assert_int_equal(ws_parser_contexts(S), 0);
}

/* RFC 6455 5.5.1: a close payload of 1 byte is a protocol error (1002 by
 * the owner), never answered with an empty close; invalid status codes get
 * 1002 from wslay itself. */
static void test_bad_close_payload(void **state)
{
    ws_parser_set *S = *state;
    uint8_t in[64];
    static const uint8_t bad_codes[][2] = {
        { 0x03, 0xe7 },   /* 999 */
        { 0x03, 0xed },   /* 1005: reserved, never on the wire */
        { 0x03, 0xee },   /* 1006 */
        { 0x03, 0xf7 },   /* 1015 */
        { 0x07, 0xd0 },   /* 2000: unassigned */
        { 0x13, 0x88 },   /* 5000 */
    };
    rec r = { .log = "" };
    ws_parser p = { .set = S };
    size_t n = frame(in, 1, WS_OP_CLOSE, "\x03", 1);
    assert_int_equal(ws_parser_feed(&p, &CB, &r, in, n, 1024), WS_FEED_ERROR);
    assert_int_equal(r.out_len, 0);            /* no empty close went out */
    assert_null(p.ctx);
    for (size_t i = 0; i < sizeof bad_codes / sizeof bad_codes[0]; i++) {
        memset(&r, 0, sizeof r);
        ws_parser_init(&p, S);
        n = frame(in, 1, WS_OP_CLOSE, bad_codes[i], 2);
        assert_int_equal(ws_parser_feed(&p, &CB, &r, in, n, 1024), WS_FEED_CLOSED);
        assert_int_equal(close_sent(&r), 1002);
        assert_int_equal(p.close_code, 1002);
    }
    /* valid ones are echoed: 1000, 4000 (private use) */
    static const uint8_t good[][2] = { { 0x03, 0xe8 }, { 0x0f, 0xa0 } };
    for (size_t i = 0; i < 2; i++) {
        memset(&r, 0, sizeof r);
        ws_parser_init(&p, S);
        n = frame(in, 1, WS_OP_CLOSE, good[i], 2);
        assert_int_equal(ws_parser_feed(&p, &CB, &r, in, n, 1024), WS_FEED_CLOSED);
        assert_int_equal(close_sent(&r), (good[i][0] << 8) | good[i][1]);
    }
    assert_int_equal(ws_parser_contexts(S), 0);
}

/* A set's budget for half-received frames: only what arrived is charged
 * (plus the context), a sender that grows its partial frame while the
 * set's total is over budget is refused and released, complete messages
 * still flow, and every release gives the budget back. */
static void test_partial_budget(void **state)
{
    enum { NP = 8 };
    static uint8_t in[70000];
    char big[60000];
    memset(big, 'q', sizeof big);
    size_t n = frame(in, 1, WS_OP_TEXT, big, sizeof big);   /* a 60 KB frame */
    ws_parser ps[NP];
    rec r = { .log = "" };
    /* budget: room for 3 parsers holding 10 KB each */
    uint64_t each = WS_PARSER_CTX_COST + 10000;
    ws_parser_set *set = ws_parser_set_new(3 * each + 100);
    assert_non_null(set);
    for (int i = 0; i < NP; i++)
        ws_parser_init(&ps[i], set);
    assert_int_equal(ws_parser_partial_bytes(set), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ws_parser_feed(&ps[i], &CB, &r, in, 10000, 1 << 20), WS_FEED_OK);
        assert_non_null(ps[i].ctx);
        /* charged by what arrived, not by the 60 KB the header declares */
        assert_int_equal(ps[i].charged, each);
    }
    assert_int_equal(ws_parser_partial_bytes(set), 3 * each);
    /* a fourth sender takes the total over: refused, and its memory freed */
    assert_int_equal(ws_parser_feed(&ps[3], &CB, &r, in, 10000, 1 << 20), WS_FEED_BUDGET);
    assert_null(ps[3].ctx);
    assert_int_equal(ws_parser_partial_bytes(set), 3 * each);
    /* a complete small message on a fresh connection charges nothing */
    uint8_t small[64];
    size_t sn = frame(small, 1, WS_OP_TEXT, "{\"type\":\"heartbeat\"}", 20);
    assert_int_equal(ws_parser_feed(&ps[4], &CB, &r, small, sn, 1 << 20), WS_FEED_OK);
    assert_null(ps[4].ctx);
    assert_int_equal(r.nmsg, 1);
    /* finishing a held frame delivers it and gives its share back */
    assert_int_equal(ws_parser_feed(&ps[0], &CB, &r, in + 10000, n - 10000, 1 << 20),
                     WS_FEED_OK);
    assert_null(ps[0].ctx);
    assert_int_equal(r.nmsg, 2);
    assert_int_equal(ws_parser_partial_bytes(set), 2 * each);
    /* and now there is room again */
    assert_int_equal(ws_parser_feed(&ps[5], &CB, &r, in, 10000, 1 << 20), WS_FEED_OK);
    assert_int_equal(ws_parser_partial_bytes(set), 3 * each);
    for (int i = 0; i < NP; i++)
        ws_parser_free(&ps[i]);
    assert_int_equal(ws_parser_partial_bytes(set), 0);
    assert_int_equal(ws_parser_contexts(set), 0);
    ws_parser_set_free(set);
    /* fragments separated by pings stay charged until the message ends */
    set = ws_parser_set_new(0);
    assert_non_null(set);
    ws_parser fp;
    ws_parser_init(&fp, set);
    size_t fn = frame(in, 0, WS_OP_TEXT, big, 5000);
    fn += frame(in + fn, 1, WS_OP_PING, "", 0);
    assert_int_equal(ws_parser_feed(&fp, &CB, &r, in, fn, 1 << 20), WS_FEED_OK);
    assert_non_null(fp.ctx);
    assert_true(fp.charged >= WS_PARSER_CTX_COST + 5000);
    assert_int_equal(ws_parser_partial_bytes(set), fp.charged);
    assert_int_equal(ws_parser_contexts(set), 1);
    ws_parser_free(&fp);
    assert_int_equal(ws_parser_partial_bytes(set), 0);
    assert_int_equal(ws_parser_contexts(set), 0);
    ws_parser_set_free(set);
}

/* Two sets (two pools) are independent: one set's parsers filling its
 * budget neither charge nor refuse the other's, each counts its own
 * contexts, and a parser gives its charge back to its own set. */
static void test_sets_independent(void **state)
{
    static uint8_t in[70000];
    char big[60000];
    memset(big, 'q', sizeof big);
    frame(in, 1, WS_OP_TEXT, big, sizeof big);
    uint64_t each = WS_PARSER_CTX_COST + 10000;
    ws_parser_set *tight = ws_parser_set_new(each + 100);   /* room for one */
    ws_parser_set *roomy = ws_parser_set_new(0);            /* no limit */
    assert_non_null(tight);
    assert_non_null(roomy);
    rec r = { .log = "" };
    ws_parser t1, t2, o[3];
    ws_parser_init(&t1, tight);
    ws_parser_init(&t2, tight);
    /* the tight set fills up ... */
    assert_int_equal(ws_parser_feed(&t1, &CB, &r, in, 10000, 1 << 20), WS_FEED_OK);
    assert_int_equal(ws_parser_feed(&t2, &CB, &r, in, 10000, 1 << 20), WS_FEED_BUDGET);
    assert_null(t2.ctx);
    assert_int_equal(ws_parser_partial_bytes(tight), each);
    assert_int_equal(ws_parser_contexts(tight), 1);
    /* ... while the other set's parsers hold far more than its budget */
    for (int i = 0; i < 3; i++) {
        ws_parser_init(&o[i], roomy);
        assert_int_equal(ws_parser_feed(&o[i], &CB, &r, in, 10000, 1 << 20),
                         WS_FEED_OK);
        assert_non_null(o[i].ctx);
    }
    assert_int_equal(ws_parser_partial_bytes(roomy), 3 * each);
    assert_int_equal(ws_parser_contexts(roomy), 3);
    assert_int_equal(ws_parser_partial_bytes(tight), each);
    assert_int_equal(ws_parser_contexts(tight), 1);
    /* a budget of the same size as the roomy set's total refuses nothing
     * there: the budget is per set */
    ws_parser_set *same = ws_parser_set_new(each + 100);
    assert_non_null(same);
    ws_parser s1;
    ws_parser_init(&s1, same);
    assert_int_equal(ws_parser_feed(&s1, &CB, &r, in, 10000, 1 << 20), WS_FEED_OK);
    assert_int_equal(ws_parser_partial_bytes(same), each);
    ws_parser_free(&s1);
    ws_parser_set_free(same);
    /* releases go back to their own set */
    ws_parser_free(&t1);
    assert_int_equal(ws_parser_partial_bytes(tight), 0);
    assert_int_equal(ws_parser_contexts(tight), 0);
    assert_int_equal(ws_parser_partial_bytes(roomy), 3 * each);
    assert_int_equal(ws_parser_feed(&t2, &CB, &r, in, 10000, 1 << 20),
                     WS_FEED_STOPPED);   /* refused once, stays stopped */
    for (int i = 0; i < 3; i++)
        ws_parser_free(&o[i]);
    ws_parser_free(&t2);
    assert_int_equal(ws_parser_partial_bytes(roomy), 0);
    assert_int_equal(ws_parser_contexts(roomy), 0);
    ws_parser_set_free(tight);
    ws_parser_set_free(roomy);
    ws_parser_set_free(NULL);
}

/* A parser without a set is refused (the owner forgot ws_parser_init). */
static void test_parser_needs_a_set(void **state)
{
    uint8_t in[64];
    size_t n = frame(in, 1, WS_OP_TEXT, "x", 1);
    rec r = { .log = "" };
    ws_parser p = { 0 };
    assert_int_equal(ws_parser_feed(&p, &CB, &r, in, n, 1024), WS_FEED_ERROR);
    assert_null(p.ctx);
    assert_int_equal(r.nmsg, 0);
    ws_parser_free(&p);
}

static void test_stop_from_callback(void **state)
{
    ws_parser_set *S = *state;
    uint8_t in[256];
    size_t n = frame(in, 1, WS_OP_TEXT, "one", 3);
    n += frame(in + n, 1, WS_OP_PING, "", 0);
    n += frame(in + n, 1, WS_OP_TEXT, "two", 3);
    rec r = { .log = "", .stop_on = 1 };
    ws_parser p = { .set = S };
    assert_int_equal(ws_parser_feed(&p, &CB, &r, in, n, 1024), WS_FEED_STOPPED);
    assert_string_equal(r.log, "T:one|");
    assert_int_equal(r.out_len, 0);   /* nothing of wslay's after a stop */
    assert_null(p.ctx);
    assert_int_equal(ws_parser_feed(&p, &CB, &r, in, n, 1024), WS_FEED_STOPPED);
}

/* Each test but the budget ones gets a set without a budget; teardown
 * checks its parsers gave everything back and frees it. */
static int setup(void **state)
{
    *state = ws_parser_set_new(0);
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    ws_parser_set *S = *state;
    int ok = ws_parser_contexts(S) == 0 && ws_parser_partial_bytes(S) == 0;
    ws_parser_set_free(S);
    return ok ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_text_any_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fragmented, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pong_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_violations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_close_payload, setup, teardown),
        cmocka_unit_test(test_partial_budget),
        cmocka_unit_test(test_sets_independent),
        cmocka_unit_test(test_parser_needs_a_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
