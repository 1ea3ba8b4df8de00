/* shard/ws.c permessage-deflate (RFC 7692), without sockets: the
 * Sec-WebSocket-Extensions negotiation, compress-once on shared chunks
 * (checked by inflating with zlib independently), the inflate cap and the
 * parser's close codes for compressed client messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "common/wsframe.h"
#include "shard/ws.h"

/* ---- negotiation ------------------------------------------------------ */

static int nego(const char *a, const char *b, char *resp)
{
    httpreq_str v[2] = { { a, a ? strlen(a) : 0 }, { b, b ? strlen(b) : 0 } };
    return ws_pmd_negotiate(v, b ? 2 : 1, resp);
}

#define ANSWER "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

static void test_negotiate_accepts(void **state)
{
    char r[WS_PMD_RESPONSE_MAX];
    /* browsers */
    assert_int_equal(nego("permessage-deflate; client_max_window_bits", NULL, r), 1);
    assert_string_equal(r, ANSWER);
    assert_int_equal(nego("permessage-deflate", NULL, r), 1);
    assert_string_equal(r, ANSWER);
    assert_int_equal(nego("PerMessage-Deflate ;client_no_context_takeover ; "
                          "server_no_context_takeover", NULL, r), 1);
    assert_string_equal(r, ANSWER);
    assert_int_equal(nego("permessage-deflate; client_max_window_bits=10", NULL, r), 1);
    assert_int_equal(nego("permessage-deflate; client_max_window_bits=\"12\"", NULL, r), 1);
    /* server_max_window_bits=15 is what we use: accepted and echoed */
    assert_int_equal(nego("permessage-deflate; server_max_window_bits=15", NULL, r), 1);
    assert_string_equal(r, ANSWER "; server_max_window_bits=15");
    /* first offer declined (window 10), second accepted */
    assert_int_equal(nego("permessage-deflate; server_max_window_bits=10, "
                          "permessage-deflate; client_max_window_bits", NULL, r), 1);
    assert_string_equal(r, ANSWER);
    /* another extension first, ours in a second header line */
    assert_int_equal(nego("x-webkit-deflate-frame, foo; bar=\"a,b\"",
                          "permessage-deflate", r), 1);
    assert_string_equal(r, ANSWER);
    /* a quoted value with a comma does not split the list */
    assert_int_equal(nego("foo; x=\"permessage-deflate,\", permessage-deflate", NULL, r), 1);
}

static void test_negotiate_declines(void **state)
{
    char r[WS_PMD_RESPONSE_MAX];
    static const char *bad[] = {
        "",
        "x-webkit-deflate-frame",
        "permessage-deflate-x",
        "permessage-deflate; server_max_window_bits=10",   /* below our 15 */
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; server_max_window_bits",      /* needs a value */
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=015",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=abc",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=\"\"",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; unknown_param",
        "permessage-deflate; client_max_window_bits=\"15",   /* unterminated */
        "permessage-deflate;",
        "permessage-deflate; =15",
        "permessage-deflate client_max_window_bits",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r[0] = 'x';
        if (nego(bad[i], NULL, r) != 0)
            fail_msg("accepted: %s", bad[i]);
        assert_string_equal(r, "");
    }
    httpreq_str none[1] = { { NULL, 0 } };
    assert_int_equal(ws_pmd_negotiate(none, 1, r), 0);
    assert_int_equal(ws_pmd_negotiate(none, 0, r), 0);
}

/* Offers from a parsed request: several header lines, in order. */
static void test_negotiate_request(void **state)
{
    static const char req[] =
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9\r\n"
        "sec-websocket-extensions: x-foo, permessage-deflate; server_max_window_bits=15\r\n\r\n";
    httpreq r;
    assert_true(httpreq_parse(req, sizeof(req) - 1, 8192, &r) > 0);
    assert_int_equal(r.n_ws_ext, 2);
    char resp[WS_PMD_RESPONSE_MAX];
    assert_int_equal(ws_pmd_negotiate(r.ws_ext, r.n_ws_ext, resp), 1);
    assert_string_equal(resp, ANSWER "; server_max_window_bits=15");
    /* only the first line: declined */
    assert_int_equal(ws_pmd_negotiate(r.ws_ext, 1, resp), 0);
    static const char none[] =
        "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_true(httpreq_parse(none, sizeof(none) - 1, 8192, &r) > 0);
    assert_int_equal(r.n_ws_ext, 0);
    assert_int_equal(ws_pmd_negotiate(r.ws_ext, r.n_ws_ext, resp), 0);
}

/* ---- compression -------------------------------------------------------- */

/* Inflate a compressed frame's payload with zlib (no shard code). */
static size_t zinflate(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    uint8_t tmp[1 << 16];
    assert_true(n + 4 <= sizeof(tmp));
    memcpy(tmp, in, n);
    memcpy(tmp + n, "\x00\x00\xff\xff", 4);
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(inflateInit2(&z, -15), Z_OK);
    z.next_in = tmp;
    z.avail_in = (uInt)(n + 4);
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int r = inflate(&z, Z_SYNC_FLUSH);
    assert_true(r == Z_OK || r == Z_BUF_ERROR);
    assert_int_equal(z.avail_in, 0);
    size_t got = cap - z.avail_out;
    inflateEnd(&z);
    return got;
}

/* payload offset and length of a server frame */
static size_t payload(const ws_chunk *c, size_t *len)
{
    size_t l = c->data[1] & 0x7f, h = 2;
    if (l == 126) {
        l = (size_t)c->data[2] << 8 | c->data[3];
        h = 4;
    }
    assert_int_equal(h + l, c->len);
    *len = l;
    return h;
}

static void test_compress_once(void **state)
{
    char msg[2000];
    int n = 0;
    for (int i = 0; n < 1800; i++)
        n += snprintf(msg + n, sizeof(msg) - (size_t)n,
                      "{\"channel\":\"BTC.trade\",\"price\":%d},", i);
    ws_deflate *d = ws_deflate_new(6, 64);
    assert_non_null(d);
    ws_deflate_stats st = { 0 };
    ws_chunk *ch = ws_chunk_frame(WS_OP_TEXT, msg, (size_t)n);
    assert_true(ch->flags & WS_CHUNK_MSG);
    ws_chunk *z = ws_deflate_chunk(d, ch, &st);
    assert_ptr_not_equal(z, ch);
    assert_ptr_equal(z, ch->z);
    /* FIN + RSV1 + text, unmasked */
    assert_int_equal(z->data[0], 0xC1);
    assert_int_equal(z->data[1] & 0x80, 0);
    assert_true(z->len < ch->len / 3);
    size_t zl, off = payload(z, &zl);
    /* the 00 00 ff ff tail is stripped (RFC 7692 7.2.1) */
    assert_false(zl >= 4 && memcmp(z->data + off + zl - 4, "\x00\x00\xff\xff", 4) == 0);
    uint8_t out[4096];
    assert_int_equal(zinflate(z->data + off, zl, out, sizeof(out)), (size_t)n);
    assert_memory_equal(out, msg, (size_t)n);
    /* every further client gets the same bytes: no second compression */
    for (int i = 0; i < 100; i++)
        assert_ptr_equal(ws_deflate_chunk(d, ch, &st), z);
    assert_int_equal(st.compressions, 1);
    assert_int_equal(st.in_bytes, (uint64_t)n);
    assert_int_equal(st.out_bytes, zl);
    /* a compressed chunk is not compressed again; the variant dies with ch
     * (ASan checks no leak) */
    assert_ptr_equal(ws_deflate_chunk(d, z, &st), z);
    ws_chunk_ref(z);             /* a client queue still holds the variant */
    ws_chunk_unref(ch);
    assert_int_equal(z->refs, 1);
    ws_chunk_unref(z);
    /* no context takeover: a second message compresses the same way */
    ws_chunk *a = ws_chunk_frame(WS_OP_TEXT, msg, (size_t)n);
    ws_chunk *za = ws_deflate_chunk(d, a, &st);
    size_t zl2, off2 = payload(za, &zl2);
    assert_int_equal(zl2, zl);
    assert_int_equal(zinflate(za->data + off2, zl2, out, sizeof(out)), (size_t)n);
    ws_chunk_unref(a);
    ws_deflate_free(d);
    ws_deflate_free(NULL);
}

static void test_compress_skips(void **state)
{
    ws_deflate *d = ws_deflate_new(1, 128);
    ws_deflate_stats st = { 0 };
    /* below the minimum size */
    ws_chunk *small = ws_chunk_frame(WS_OP_TEXT, "{\"type\":\"pong\"}", 15);
    assert_ptr_equal(ws_deflate_chunk(d, small, &st), small);
    assert_int_equal(st.skipped_small, 1);
    ws_chunk_unref(small);
    /* incompressible bytes stay plain and are tried once */
    uint8_t rnd[600];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof(rnd); i++) {
        x = x * 1103515245u + 12345u;
        rnd[i] = (uint8_t)(x >> 16);
    }
    ws_chunk *r = ws_chunk_frame(WS_OP_BINARY, rnd, sizeof(rnd));
    assert_ptr_equal(ws_deflate_chunk(d, r, &st), r);
    assert_ptr_equal(ws_deflate_chunk(d, r, &st), r);
    assert_int_equal(st.incompressible, 1);
    assert_int_equal(st.compressions, 1);
    ws_chunk_unref(r);
    /* control frames and raw chunks are never compressed */
    ws_chunk *cl = ws_chunk_close(1000, "a long enough reason to pass the minimum size .........");
    assert_false(cl->flags & WS_CHUNK_MSG);
    assert_ptr_equal(ws_deflate_chunk(d, cl, &st), cl);
    ws_chunk_unref(cl);
    assert_null(ws_deflate_new(0, 0));
    assert_null(ws_deflate_new(10, 0));
    ws_deflate_free(d);
}

/* ---- inflate -------------------------------------------------------------- */

/* raw deflate with the tail stripped, as a client sends */
static size_t zdeflate(const void *in, size_t n, uint8_t *out, size_t cap)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_SYNC_FLUSH), Z_OK);
    size_t got = cap - z.avail_out;
    deflateEnd(&z);
    assert_memory_equal(out + got - 4, "\x00\x00\xff\xff", 4);
    return got - 4;
}

static void test_inflate_cap(void **state)
{
    static uint8_t big[1 << 22];   /* 4 MiB of one byte */
    memset(big, 'a', sizeof(big));
    static uint8_t z[1 << 16];
    size_t zn = zdeflate(big, sizeof(big), z, sizeof(z));
    assert_true(zn < 8192);
    const uint8_t *out;
    size_t ol;
    ws_parser_set *set = ws_parser_set_new(0);
    assert_non_null(set);
    assert_int_equal(ws_inflate_msg(set, z, zn, 65536, &out, &ol), WS_INFLATE_TOOBIG);
    /* exactly at the cap is fine */
    zn = zdeflate(big, 65536, z, sizeof(z));
    assert_int_equal(ws_inflate_msg(set, z, zn, 65536, &out, &ol), 0);
    assert_int_equal(ol, 65536);
    assert_int_equal(ws_inflate_msg(set, z, zn, 65535, &out, &ol), WS_INFLATE_TOOBIG);
    /* corrupt data */
    static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x12 };
    assert_int_equal(ws_inflate_msg(set, junk, sizeof(junk), 65536, &out, &ol), WS_INFLATE_BAD);
    /* the state is reset per message: a good one after a bad one */
    zn = zdeflate("{\"type\":\"heartbeat\"}", 20, z, sizeof(z));
    assert_int_equal(ws_inflate_msg(set, z, zn, 65536, &out, &ol), 0);
    assert_int_equal(ol, 20);
    assert_memory_equal(out, "{\"type\":\"heartbeat\"}", 20);
    assert_int_equal(ws_inflate_refused(set), 3);
    assert_int_equal(ws_inflate_messages(set), 2);
    /* another set has its own stream, buffer and counters: its result
     * does not overwrite the first set's buffer */
    ws_parser_set *other = ws_parser_set_new(0);
    assert_non_null(other);
    const uint8_t *out2;
    size_t ol2;
    uint8_t z2[64];
    size_t zn2 = zdeflate("{\"type\":\"other\"}", 16, z2, sizeof(z2));
    assert_int_equal(ws_inflate_msg(other, z2, zn2, 65536, &out2, &ol2), 0);
    assert_int_equal(ol2, 16);
    assert_ptr_not_equal(out2, out);
    assert_memory_equal(out, "{\"type\":\"heartbeat\"}", 20);
    assert_int_equal(ws_inflate_messages(other), 1);
    assert_int_equal(ws_inflate_refused(other), 0);
    assert_int_equal(ws_inflate_messages(set), 2);
    ws_parser_set_free(other);
    ws_parser_set_free(set);   /* stream and buffer with it (ASan: no leak) */
    ws_parser_set_free(NULL);
}

/* ---- the parser with compressed client frames ------------------------------- */

typedef struct rec {
    char msg[256];
    int nmsg;
    uint8_t out[256];
    size_t out_len;
} rec;

static void on_message(void *ud, ws_parser *p, unsigned op, const uint8_t *m, size_t n)
{
    rec *r = ud;
    snprintf(r->msg, sizeof(r->msg), "%.*s", (int)n, m);
    r->nmsg++;
}

static void on_control(void *ud, ws_parser *p, unsigned op, uint16_t code) { }

static int on_send(void *ud, const uint8_t *d, size_t n)
{
    rec *r = ud;
    assert_true(r->out_len + n <= sizeof(r->out));
    memcpy(r->out + r->out_len, d, n);
    r->out_len += n;
    return 0;
}

static const ws_parser_cb CB = { on_message, on_control, on_send };

/* masked client frame with RSV1 */
static size_t cframe(uint8_t *out, int rsv1, const uint8_t *p, size_t n)
{
    static const uint8_t mask[4] = { 1, 2, 3, 4 };
    size_t h = wsframe_client_header(out, WS_OP_TEXT | (rsv1 ? WSFRAME_RSV1 : 0), 1, n,
                                     mask);
    if (n)
        memcpy(out + h, p, n);
    wsframe_mask(out + h, n, mask, 0);
    return h + n;
}

static void test_parser_inflates(void **state)
{
    static const char sub[] = "{\"type\":\"subscribe\",\"data\":{\"channels\":[\"BTC.trade\"]}}";
    uint8_t z[256], in[512];
    size_t zn = zdeflate(sub, strlen(sub), z, sizeof(z));
    size_t n = cframe(in, 1, z, zn);
    rec r = { .nmsg = 0 };
    ws_parser_set *set = ws_parser_set_new(0);
    assert_non_null(set);
    ws_parser p;
    ws_parser_init(&p, set);
    p.deflate = 1;
    assert_int_equal(ws_parser_feed(&p, &CB, &r, in, n, 65536), WS_FEED_OK);
    assert_int_equal(r.nmsg, 1);
    assert_int_equal(ws_inflate_messages(set), 1);
    assert_string_equal(r.msg, sub);
    /* uncompressed messages still pass on a deflate connection */
    n = cframe(in, 0, (const uint8_t *)"plain", 5);
    assert_int_equal(ws_parser_feed(&p, &CB, &r, in, n, 65536), WS_FEED_OK);
    assert_string_equal(r.msg, "plain");
    ws_parser_free(&p);

    /* RSV1 without the extension: 1002 */
    rec r2 = { .nmsg = 0 };
    ws_parser q = { .set = set };
    n = cframe(in, 1, z, zn);
    assert_int_equal(ws_parser_feed(&q, &CB, &r2, in, n, 65536), WS_FEED_CLOSED);
    assert_int_equal(q.close_code, 1002);
    assert_int_equal(r2.nmsg, 0);
    ws_parser_free(&q);
    assert_int_equal(ws_inflate_messages(set), 1);
    assert_int_equal(ws_parser_contexts(set), 0);
    ws_parser_set_free(set);
}

static void test_parser_bomb(void **state)
{
    static uint8_t big[1 << 20];
    memset(big, '[', sizeof(big));
    static uint8_t z[1 << 16], in[1 << 16];
    size_t zn = zdeflate(big, sizeof(big), z, sizeof(z));
    assert_true(zn < 4096);     /* small on the wire ... */
    size_t n = cframe(in, 1, z, zn);
    rec r = { .nmsg = 0 };
    ws_parser_set *set = ws_parser_set_new(0);
    assert_non_null(set);
    ws_parser p = { .set = set, .deflate = 1 };
    /* ... over WS_MAX_FRAME inflated: closed with 1009, nothing delivered */
    assert_int_equal(ws_parser_feed(&p, &CB, &r, in, n, 65536), WS_FEED_CLOSED);
    assert_int_equal(p.close_code, 1009);
    assert_int_equal(r.nmsg, 0);
    assert_int_equal(r.out_len, 4);
    assert_memory_equal(r.out, "\x88\x02\x03\xf1", 4);   /* close 1009 */
    ws_parser_free(&p);

    /* corrupt compressed data: 1007 */
    rec r2 = { .nmsg = 0 };
    ws_parser q = { .set = set, .deflate = 1 };
    n = cframe(in, 1, (const uint8_t *)"\xff\xff\xff\xff\x12", 5);
    assert_int_equal(ws_parser_feed(&q, &CB, &r2, in, n, 65536), WS_FEED_CLOSED);
    assert_int_equal(q.close_code, 1007);
    ws_parser_free(&q);

    /* inflated text that is not UTF-8: 1007 (wslay cannot check it) */
    static const uint8_t bad_utf8[] = "{\"a\":\"\xc0\xaf\"}";
    uint8_t z2[64];
    size_t zn2 = zdeflate(bad_utf8, sizeof(bad_utf8) - 1, z2, sizeof(z2));
    rec r3 = { .nmsg = 0 };
    ws_parser u = { .set = set, .deflate = 1 };
    n = cframe(in, 1, z2, zn2);
    assert_int_equal(ws_parser_feed(&u, &CB, &r3, in, n, 65536), WS_FEED_CLOSED);
    assert_int_equal(u.close_code, 1007);
    assert_int_equal(r3.nmsg, 0);
    ws_parser_free(&u);
    assert_int_equal(ws_parser_contexts(set), 0);
    /* the bomb and the corrupt data were refused by the inflater; the
     * non-UTF-8 text inflated fine (the parser refused it after) */
    assert_int_equal(ws_inflate_refused(set), 2);
    assert_int_equal(ws_inflate_messages(set), 1);
    ws_parser_set_free(set);
}

static void test_handshake_response_ext(void **state)
{
    buf b = { 0 };
    assert_int_equal(ws_handshake_response_ext(&b, "dGhlIHNhbXBsZSBub25jZQ==", 24, ANSWER), 0);
    static const char want[] = "\r\nSec-WebSocket-Extensions: " ANSWER "\r\n\r\n";
    assert_non_null(memmem(b.data, b.len, want, strlen(want)));
    buf_free(&b);
    buf c = { 0 };
    assert_int_equal(ws_handshake_response(&c, "dGhlIHNhbXBsZSBub25jZQ==", 24), 0);
    assert_null(memmem(c.data, c.len, "Extensions", 10));
    buf_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_negotiate_accepts),
        cmocka_unit_test(test_negotiate_declines),
        cmocka_unit_test(test_negotiate_request),
        cmocka_unit_test(test_compress_once),
        cmocka_unit_test(test_compress_skips),
        cmocka_unit_test(test_inflate_cap),
        cmocka_unit_test(test_parser_inflates),
        cmocka_unit_test(test_parser_bomb),
        cmocka_unit_test(test_handshake_response_ext),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
