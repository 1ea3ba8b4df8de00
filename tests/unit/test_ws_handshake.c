/* shard/httpreq.c + shard/ws.c handshake: request parsing, the upgrade
 * check, Sec-WebSocket-Accept, server frame headers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <http_parser.h>

#include "shard/httpreq.h"
#include "shard/ws.h"
#include "common/wskey.h"

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="

static void test_accept_key(void **state)
{
    char out[WSKEY_ACCEPT_LEN + 1];
    assert_int_equal(wskey_accept(KEY, strlen(KEY), out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");   /* RFC 6455 1.3 */
    assert_true(ws_key_valid(KEY, 24));
    assert_false(ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=", 23));
    assert_false(ws_key_valid("dGhlIHNhbXBsZSBub25jZQ!=", 24));
    assert_false(ws_key_valid("dGhlIHNhbXBsZSBub25jZQ==x", 25));
    assert_false(ws_key_valid("dGhlIHNhbXBsZSBub25jZ===", 24));
    assert_false(ws_key_valid("", 0));
}

static const char *REQ =
    "GET /ws?token=1 HTTP/1.1\r\n"
    "Host: example.com:3002\r\n"
    "Upgrade: WebSocket\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: " KEY "\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Origin: http://example.com\r\n"
    "\r\n";

static void test_parse_upgrade(void **state)
{
    httpreq r;
    size_t n = strlen(REQ);
    /* every prefix is incomplete */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(httpreq_parse(REQ, i, 8192, &r), HTTPREQ_INCOMPLETE);
    char raw[1024];
    memcpy(raw, REQ, n);
    memcpy(raw + n, "\x81\x80" "abcd", 6);   /* a pipelined frame follows */
    assert_int_equal(httpreq_parse(raw, n + 6, 8192, &r), (int)n);
    assert_int_equal(r.head_len, n);
    assert_int_equal(r.method, HTTP_GET);
    assert_int_equal(r.http_major, 1);
    assert_int_equal(r.http_minor, 1);
    assert_int_equal(r.path.len, 3);
    assert_memory_equal(r.path.p, "/ws", 3);
    assert_int_equal(r.url.len, strlen("/ws?token=1"));
    assert_int_equal(r.ws_key.len, 24);
    assert_memory_equal(r.ws_key.p, KEY, 24);
    assert_int_equal(r.ws_version.len, 2);
    assert_true(httpreq_has_token(r.connection, "upgrade"));
    assert_true(httpreq_has_token(r.upgrade, "websocket"));
    assert_false(httpreq_has_token(r.connection, "close"));
    const char *why = NULL;
    assert_int_equal(ws_handshake_check(&r, &why), 0);

    buf out = { 0 };
    assert_int_equal(ws_handshake_response(&out, r.ws_key.p, r.ws_key.len), 0);
    assert_non_null(memmem(out.data, out.len,
                           "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n",
                           52));
    assert_memory_equal(out.data, "HTTP/1.1 101 Switching Protocols\r\n", 34);
    assert_memory_equal(out.data + out.len - 4, "\r\n\r\n", 4);
    buf_free(&out);
}

static int check(const char *req, const char **why)
{
    httpreq r;
    int n = httpreq_parse(req, strlen(req), 8192, &r);
    assert_true(n > 0);
    return ws_handshake_check(&r, why);
}

static void test_check_errors(void **state)
{
    const char *why;
    assert_int_equal(check("POST /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: " KEY
                           "\r\nSec-WebSocket-Version: 13\r\n\r\n", &why), 405);
    assert_int_equal(check("GET /ws HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: " KEY
                           "\r\nSec-WebSocket-Version: 13\r\n\r\n", &why), 400);
    assert_int_equal(check("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: " KEY
                           "\r\nSec-WebSocket-Version: 13\r\n\r\n", &why), 400);
    assert_string_equal(why, "missing Host header");
    assert_int_equal(check("GET /ws HTTP/1.1\r\nHost: x\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: " KEY
                           "\r\nSec-WebSocket-Version: 13\r\n\r\n", &why), 400);
    assert_int_equal(check("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           "Connection: keep-alive\r\nSec-WebSocket-Key: " KEY
                           "\r\nSec-WebSocket-Version: 13\r\n\r\n", &why), 400);
    assert_int_equal(check("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: " KEY
                           "\r\nSec-WebSocket-Version: 8\r\n\r\n", &why), 426);
    assert_int_equal(check("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: abc\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n", &why), 400);
    assert_int_equal(check("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: " KEY
                           "\r\nSec-WebSocket-Key: " KEY
                           "\r\nSec-WebSocket-Version: 13\r\n\r\n", &why), 400);
    assert_int_equal(check("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: " KEY
                           "\r\nSec-WebSocket-Version: 13\r\n"
                           "Content-Length: 5\r\n\r\n", &why), 400);
}

static void test_parse_errors(void **state)
{
    httpreq r;
    const char *bad = "NOT HTTP AT ALL\r\n\r\n";
    assert_int_equal(httpreq_parse(bad, strlen(bad), 8192, &r), HTTPREQ_E_BAD);
    char big[9000];
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    memset(big + 19, 'a', sizeof(big) - 19);
    assert_int_equal(httpreq_parse(big, sizeof(big), 8192, &r), HTTPREQ_E_TOOBIG);
    assert_int_equal(httpreq_parse(big, 100, 8192, &r), HTTPREQ_INCOMPLETE);
    const char *h = "GET /health HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_int_equal(httpreq_parse(h, strlen(h), 8192, &r), (int)strlen(h));
    assert_int_equal(r.path.len, 7);
    assert_null(r.ws_key.p);
}

/* out of line so the compiler does not see the refcount as a free */
static __attribute__((noinline)) void unref(ws_chunk *c)
{
    ws_chunk_unref(c);
}

static int origin_ok(const char *allowed, const char *origin)
{
    char req[512];
    httpreq r;
    snprintf(req, sizeof req,
             "GET /ws HTTP/1.1\r\nHost: x\r\n%s%s%s\r\n", origin ? "Origin: " : "",
             origin ? origin : "", origin ? "\r\n" : "");
    assert_true(httpreq_parse(req, strlen(req), 8192, &r) > 0);
    return ws_origin_allowed(allowed, &r);
}

static void test_origin_allow_list(void **state)
{
    const char *list = "https://app.example.com, https://*.odin.fun,http://localhost:8080";
    /* unset or empty: every origin */
    assert_true(origin_ok(NULL, "https://evil.test"));
    assert_true(origin_ok("", "https://evil.test"));
    /* no Origin header: not a browser page */
    assert_true(origin_ok(list, NULL));
    assert_true(origin_ok(list, "https://app.example.com"));
    assert_true(origin_ok(list, "HTTPS://APP.EXAMPLE.COM"));
    assert_true(origin_ok(list, "http://localhost:8080"));
    assert_true(origin_ok(list, "https://a.odin.fun"));
    assert_true(origin_ok(list, "https://a.b.odin.fun"));
    assert_false(origin_ok(list, "https://odin.fun"));            /* bare domain */
    assert_false(origin_ok(list, "http://a.odin.fun"));           /* other scheme */
    assert_false(origin_ok(list, "https://evil.test/.odin.fun")); /* not a host label */
    assert_false(origin_ok(list, "https://x.odin.fun.evil.test"));
    assert_false(origin_ok(list, "https://app.example.com.evil.test"));
    assert_false(origin_ok(list, "https://app.example.co"));
    assert_false(origin_ok(list, "http://localhost:8081"));
    assert_false(origin_ok(list, "null"));                        /* sandboxed page */
}

static void test_frames(void **state)
{
    uint8_t h[10];
    assert_int_equal(ws_frame_header(h, WS_OP_TEXT, 0), 2);
    assert_int_equal(h[0], 0x81);
    assert_int_equal(h[1], 0);
    assert_int_equal(ws_frame_header(h, WS_OP_TEXT, 125), 2);
    assert_int_equal(h[1], 125);
    assert_int_equal(ws_frame_header(h, WS_OP_TEXT, 126), 4);
    assert_int_equal(h[1], 126);
    assert_int_equal(h[2], 0);
    assert_int_equal(h[3], 126);
    assert_int_equal(ws_frame_header(h, WS_OP_BINARY, 65535), 4);
    assert_int_equal(h[0], 0x82);
    assert_int_equal(ws_frame_header(h, WS_OP_TEXT, 65536), 10);
    assert_int_equal(h[1], 127);
    assert_int_equal(h[7], 1);
    assert_int_equal(h[8], 0);
    assert_int_equal(h[9], 0);

    ws_chunk *c = ws_chunk_close(1008, "too many errors");
    assert_int_equal(c->len, 2 + 2 + 15);
    assert_int_equal(c->data[0], 0x88);
    assert_int_equal(c->data[1], 17);
    assert_int_equal(c->data[2], 1008 >> 8);
    assert_int_equal(c->data[3], 1008 & 0xff);
    assert_memory_equal(c->data + 4, "too many errors", 15);
    assert_int_equal(c->refs, 1);
    ws_chunk_ref(c);
    unref(c);
    assert_int_equal(c->refs, 1);
    unref(c);
    char longr[300];
    memset(longr, 'x', sizeof(longr) - 1);
    longr[299] = 0;
    c = ws_chunk_close(1001, longr);
    assert_int_equal(c->len, 2 + 125);   /* control payload <= 125 */
    ws_chunk_unref(c);
    ws_chunk_unref(NULL);
}

static void test_http_response(void **state)
{
    buf b = { 0 };
    assert_int_equal(ws_http_response(&b, 503, "application/json", "{}", 2,
                                      "Retry-After: 1\r\n"), 0);
    const char *want = "HTTP/1.1 503 Service Unavailable\r\n"
                       "Content-Type: application/json\r\n"
                       "Content-Length: 2\r\n"
                       "Cache-Control: no-store\r\n"
                       "Connection: close\r\n"
                       "Retry-After: 1\r\n\r\n{}";
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key),
        cmocka_unit_test(test_parse_upgrade),
        cmocka_unit_test(test_check_errors),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_frames),
        cmocka_unit_test(test_origin_allow_list),
        cmocka_unit_test(test_http_response),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
