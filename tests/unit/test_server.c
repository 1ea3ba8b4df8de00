/* shard/server.c without sockets: a server without listeners, connections
 * handed to shard_server_accept as fake connections (tests/support/fakeio.h).
 * The HTTP phase (upgrade, pages, refusals), the pending pools, the per-IP
 * limits, the PROXY protocol, the fan-out ops and shutdown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "shard/metrics.h"
#include "shard/server.h"
#include "tests/support/fakeio.h"

typedef struct T {
    fake_ctx fc;
    fakeio fio;
    client_io io;
    shard_server *srv;
    int drained;
} T;

/* /health, /livez, /readyz and /metrics from the server's counts */
static void gauges_fill(const struct shard_ctx *ctx, shard_gauges *g)
{
    memset(g, 0, sizeof *g);
    shard_server_gauges sg;
    shard_server_gauges_get(ctx->srv, &sg);
    g->connections = sg.connections;
    g->pending = sg.pending;
    g->closing = sg.closing;
    g->max_connections = ctx->max_connections;
    g->redis_connected = 1;
    g->routers = 1;
    g->draining = ctx->draining;
    g->stopping = ctx->stopping;
    g->shard_id = "test-shard";
}

static T *make(const char *const *flags)
{
    T *t = calloc(1, sizeof *t);
    assert_non_null(t);
    assert_int_equal(fake_ctx_init(&t->fc, flags), 0);
    t->fc.ctx.gauges_fill = gauges_fill;
    fakeio_init(&t->fio, &t->io);
    t->srv = shard_server_new(&t->fc.ctx, &t->io);
    assert_non_null(t->srv);
    t->fc.ctx.srv = t->srv;
    return t;
}

static void destroy(T *t)
{
    shard_server_free(t->srv);
    fakeio_free(&t->fio);
    fake_ctx_free(&t->fc);
    free(t);
}

static int setup(void **state)
{
    static const char *const flags[] = { "--ws-deflate=false", NULL };
    *state = make(flags);
    return 0;
}

static int teardown(void **state)
{
    destroy(*state);
    return 0;
}

static fake_conn *accept_from(T *t, uint8_t octet)
{
    fake_conn *fc = fakeio_conn(&t->fio, octet, 41000);
    assert_non_null(fc);
    shard_server_accept(t->srv, fc->fd, (struct sockaddr *)&fc->sa, sizeof fc->sa);
    return fc;
}

static void send_request(fake_conn *fc, const char *method, const char *path,
                         const char *extra)
{
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: shard\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n", method, path, extra ? extra : "");
    fake_send(fc, req, (size_t)n);
}

/* Accept, send an upgrade, run: the response status. */
static int upgrade_from(T *t, uint8_t octet, const char *extra, fake_conn **out)
{
    fake_conn *fc = accept_from(t, octet);
    send_request(fc, "GET", "/ws", extra);
    fake_run(t->fc.ctx.base);
    if (out)
        *out = fc;
    return fake_http_status(fc);
}

static int has(const fake_conn *fc, const char *needle)
{
    return fc->out.len && memmem(fc->out.data, fc->out.len, needle, strlen(needle)) != NULL;
}

static const client_counts *counts(T *t)
{
    return client_pool_counts(shard_server_clients(t->srv));
}

/* ---- upgrade and pages ---------------------------------------------- */

static void test_upgrade_answers_101(void **state)
{
    T *t = *state;
    fake_conn *fc;
    assert_int_equal(upgrade_from(t, 1, NULL, &fc), 101);
    assert_true(has(fc, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    assert_int_equal(counts(t)->open, 1);
    assert_int_equal(counts(t)->http, 0);
    assert_int_equal(shard_server_connections(t->srv), 1);
    shard_server_gauges g;
    shard_server_gauges_get(t->srv, &g);
    assert_int_equal(g.connections, 1);
    assert_int_equal(g.ip_table_entries, 1);
    /* the clients' parser set (the pool's) comes through the gauges */
    assert_int_equal(g.parser_contexts, 0);
    assert_int_equal(g.partial_bytes, 0);
    /* a 4096-byte text frame of which 100 payload bytes arrived */
    uint8_t half[2 + 2 + 4 + 100] = { 0x81, 0x80 | 126, 0x10, 0x00, 1, 2, 3, 4 };
    fake_send(fc, half, sizeof half);
    fake_run(t->fc.ctx.base);
    shard_server_gauges_get(t->srv, &g);
    assert_int_equal(g.parser_contexts, 1);
    assert_int_equal(g.partial_bytes, WS_PARSER_CTX_COST + sizeof half);
    assert_int_equal(g.inflated, 0);
    assert_int_equal(g.inflate_refused, 0);
    assert_string_equal(shard_server_ws_addr(t->srv), "");
    assert_string_equal(shard_server_admin_addr(t->srv), "");
}

static void test_bad_requests(void **state)
{
    T *t = *state;
    fake_conn *a = accept_from(t, 1);
    send_request(a, "GET", "/nope", NULL);
    fake_conn *b = accept_from(t, 1);
    fake_send(b, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", 29);   /* no upgrade headers */
    fake_conn *c = accept_from(t, 1);
    fake_send(c, "\x01\x02 garbage\r\n\r\n", 14);
    fake_run(t->fc.ctx.base);
    assert_int_equal(fake_http_status(a), 404);
    assert_int_equal(fake_http_status(b), 400);
    assert_int_equal(fake_http_status(c), 400);
    assert_int_equal(t->fc.ctx.m.ws_handshake_failures_total, 3);
    assert_true(a->shut_wr && b->shut_wr && c->shut_wr);   /* closed after the answer */
    assert_int_equal(counts(t)->open, 0);
}

static void test_head_too_large_is_431(void **state)
{
    T *t = *state;
    fake_conn *fc = accept_from(t, 1);
    char big[SHARD_HTTP_MAX_HEAD + 100];
    memcpy(big, "GET /ws HTTP/1.1\r\nX-Pad: ", 25);
    memset(big + 25, 'a', sizeof big - 25);
    fake_send(fc, big, sizeof big);
    fake_run(t->fc.ctx.base);
    assert_int_equal(fake_http_status(fc), 431);
}

static void test_pages_on_ws_addr(void **state)
{
    T *t = *state;
    fake_conn *a = accept_from(t, 1);
    fake_send(a, "GET /livez HTTP/1.1\r\n\r\n", 23);
    fake_conn *b = accept_from(t, 1);
    fake_send(b, "POST /health HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 44);
    fake_conn *c = accept_from(t, 1);
    fake_send(c, "GET /metrics HTTP/1.1\r\n\r\n", 25);
    fake_run(t->fc.ctx.base);
    assert_int_equal(fake_http_status(a), 200);
    assert_true(has(a, "\"status\":\"live\""));
    assert_int_equal(fake_http_status(b), 405);
    assert_int_equal(fake_http_status(c), 200);
    assert_true(has(c, "ws_connections_total"));
}

static void test_readyz_at_capacity(void **state)
{
    static const char *const flags[] = { "--ws-deflate=false", "--ws-max-connections=1", NULL };
    T *t = make(flags);
    assert_int_equal(upgrade_from(t, 1, NULL, NULL), 101);
    fake_conn *fc;
    assert_int_equal(upgrade_from(t, 2, NULL, &fc), 503);
    assert_true(has(fc, "at capacity"));
    assert_true(has(fc, "Retry-After: 1"));
    assert_int_equal(t->fc.ctx.m.ws_capacity_rejections_total, 1);
    fake_conn *r = accept_from(t, 3);
    fake_send(r, "GET /readyz HTTP/1.1\r\n\r\n", 24);
    fake_run(t->fc.ctx.base);
    assert_int_equal(fake_http_status(r), 503);
    assert_true(has(r, "\"reason\":\"at capacity\""));
    destroy(t);
}

static void test_origin_draining_stopping(void **state)
{
    static const char *const flags[] = { "--ws-deflate=false",
                                         "--ws-allowed-origins=https://ok.example", NULL };
    T *t = make(flags);
    fake_conn *fc;
    assert_int_equal(upgrade_from(t, 1, "Origin: https://evil.example\r\n", &fc), 403);
    assert_int_equal(t->fc.ctx.m.ws_origin_rejections_total, 1);
    assert_int_equal(upgrade_from(t, 1, "Origin: https://ok.example\r\n", NULL), 101);
    t->fc.ctx.draining = 1;
    assert_int_equal(upgrade_from(t, 1, "Origin: https://ok.example\r\n", &fc), 503);
    assert_true(has(fc, "draining"));
    assert_int_equal(t->fc.ctx.m.ws_drain_rejections_total, 1);
    t->fc.ctx.draining = 0;
    t->fc.ctx.stopping = 1;
    fake_conn *late = accept_from(t, 1);   /* refused at accept */
    assert_true(late->closed);
    assert_int_equal(t->fc.ctx.m.ws_pending_rejections_total, 1);
    destroy(t);
}

static void test_deflate_negotiated(void **state)
{
    static const char *const flags[] = { "--ws-deflate=true", NULL };
    T *t = make(flags);
    fake_conn *fc;
    assert_int_equal(upgrade_from(t, 1, "Sec-WebSocket-Extensions: permessage-deflate\r\n",
                                  &fc), 101);
    assert_true(has(fc, "permessage-deflate"));
    assert_int_equal(t->fc.ctx.m.ws_deflate_connections_total, 1);
    assert_int_equal(upgrade_from(t, 2, NULL, &fc), 101);
    assert_false(has(fc, "permessage-deflate"));
    assert_int_equal(t->fc.ctx.m.ws_deflate_connections_total, 1);
    destroy(t);
    /* WS_DEFLATE=false: the offer is declined */
    static const char *const off[] = { "--ws-deflate=false", NULL };
    t = make(off);
    assert_int_equal(upgrade_from(t, 1, "Sec-WebSocket-Extensions: permessage-deflate\r\n",
                                  &fc), 101);
    assert_false(has(fc, "permessage-deflate"));
    assert_int_equal(t->fc.ctx.m.ws_deflate_connections_total, 0);
    destroy(t);
}

/* ---- pending pools and per-IP limits ------------------------------- */

static void test_max_pending_pauses_and_resumes(void **state)
{
    static const char *const flags[] = { "--ws-deflate=false", "--ws-max-pending=2",
                                         "--ws-ip-max-pending=0", NULL };
    T *t = make(flags);
    fake_conn *a = accept_from(t, 1);
    accept_from(t, 2);
    assert_int_equal(t->fc.ctx.m.ws_accept_paused_total, 1);   /* full: paused */
    fake_conn *c = accept_from(t, 3);                         /* a drain's leftover */
    assert_true(c->closed);
    assert_int_equal(t->fc.ctx.m.ws_pending_rejections_total, 1);
    send_request(a, "GET", "/ws", NULL);                       /* a frees its slot */
    fake_run(t->fc.ctx.base);
    assert_int_equal(counts(t)->http, 1);
    fake_conn *d = accept_from(t, 4);
    assert_false(d->closed);
    assert_int_equal(counts(t)->http, 2);
    assert_int_equal(t->fc.ctx.m.ws_accept_paused_total, 2);
    destroy(t);
}

static void test_ip_max_pending(void **state)
{
    static const char *const flags[] = { "--ws-deflate=false", "--ws-ip-max-pending=2", NULL };
    T *t = make(flags);
    fake_conn *a = accept_from(t, 1);
    accept_from(t, 1);
    fake_conn *c = accept_from(t, 1);
    assert_true(c->closed);
    assert_int_equal(t->fc.ctx.m.ws_ip_pending_rejections_total, 1);
    assert_false(accept_from(t, 2)->closed);     /* another address */
    send_request(a, "GET", "/ws", NULL);         /* upgraded: slot back */
    fake_run(t->fc.ctx.base);
    assert_false(accept_from(t, 1)->closed);
    assert_int_equal(t->fc.ctx.m.ws_ip_pending_rejections_total, 1);
    destroy(t);
}

static void test_ip_rate_at_upgrade(void **state)
{
    static const char *const flags[] = { "--ws-deflate=false", "--ws-ip-rate=0.001",
                                         "--ws-ip-burst=1", NULL };
    T *t = make(flags);
    assert_int_equal(upgrade_from(t, 1, NULL, NULL), 101);
    fake_conn *fc;
    assert_int_equal(upgrade_from(t, 1, NULL, &fc), 429);
    assert_true(has(fc, "Retry-After: 1"));
    assert_int_equal(t->fc.ctx.m.ws_ratelimit_rejections_total, 1);
    assert_int_equal(upgrade_from(t, 2, NULL, NULL), 101);
    destroy(t);
}

static void test_ip_table_full_fails_closed(void **state)
{
    static const char *const flags[] = { "--ws-deflate=false", "--ws-ip-table-max=1", NULL };
    T *t = make(flags);
    assert_false(accept_from(t, 1)->closed);
    fake_conn *fc = accept_from(t, 2);
    assert_true(fc->closed);
    assert_int_equal(fake_http_status(fc), 503);
    assert_true(has(fc, "too many client addresses"));
    assert_int_equal(t->fc.ctx.m.ws_ip_table_full_rejections_total, 1);
    assert_int_equal(counts(t)->http, 1);
    destroy(t);
}

static void test_ip_channels_across_connections(void **state)
{
    static const char *const flags[] = { "--ws-deflate=false", "--ws-ip-max-channels=2", NULL };
    T *t = make(flags);
    fake_conn *a, *b;
    assert_int_equal(upgrade_from(t, 1, NULL, &a), 101);
    assert_int_equal(upgrade_from(t, 1, NULL, &b), 101);
    fake_send_text(a, "{\"type\":\"subscribe\",\"data\":{\"channels\":[\"A.trade\",\"B.trade\"]}}");
    fake_run(t->fc.ctx.base);
    fake_send_text(b, "{\"type\":\"subscribe\",\"data\":{\"channels\":[\"C.trade\"]}}");
    fake_run(t->fc.ctx.base);
    assert_true(has(b, "TOO_MANY_SUBSCRIPTIONS"));
    assert_int_equal(t->fc.ctx.m.ws_ip_channel_rejections_total, 1);
    /* a leaves: its two slots come back to the address */
    uint8_t code[2] = { 0x03, 0xe8 };
    fake_send_frame(a, 8, code, 2);
    fake_run(t->fc.ctx.base);
    b->out.len = b->out_off = 0;
    fake_send_text(b, "{\"type\":\"subscribe\",\"data\":{\"channels\":[\"C.trade\"]}}");
    fake_run(t->fc.ctx.base);
    assert_false(has(b, "TOO_MANY_SUBSCRIPTIONS"));
    assert_true(has(b, "\"count\":1"));
    destroy(t);
}

/* A connection's own count follows its unsubscribes: what it gives back at
 * the close is what it still holds, not what it ever took. */
static void test_ip_channels_unsubscribe_then_close(void **state)
{
    static const char *const flags[] = { "--ws-deflate=false", "--ws-ip-max-channels=2", NULL };
    T *t = make(flags);
    fake_conn *a, *b, *c;
    assert_int_equal(upgrade_from(t, 1, NULL, &a), 101);
    assert_int_equal(upgrade_from(t, 1, NULL, &b), 101);
    assert_int_equal(upgrade_from(t, 1, NULL, &c), 101);
    fake_send_text(a, "{\"type\":\"subscribe\",\"data\":{\"channels\":[\"A.trade\"]}}");
    fake_send_text(b, "{\"type\":\"subscribe\",\"data\":{\"channels\":[\"B.trade\"]}}");
    fake_run(t->fc.ctx.base);
    fake_send_text(a, "{\"type\":\"unsubscribe\",\"data\":{\"channels\":[\"A.trade\"]}}");
    fake_run(t->fc.ctx.base);
    fake_send_text(a, "{\"type\":\"subscribe\",\"data\":{\"channels\":[\"A.trade\"]}}");
    fake_run(t->fc.ctx.base);
    uint8_t code[2] = { 0x03, 0xe8 };
    fake_send_frame(a, 8, code, 2);           /* a gives back its one slot */
    fake_run(t->fc.ctx.base);
    /* b still holds one of the address's two: c gets one, not two */
    fake_send_text(c, "{\"type\":\"subscribe\",\"data\":{\"channels\":[\"C.trade\",\"D.trade\"]}}");
    fake_run(t->fc.ctx.base);
    assert_true(has(c, "TOO_MANY_SUBSCRIPTIONS"));
    assert_true(has(c, "\"count\":1"));
    assert_int_equal(t->fc.ctx.m.ws_ip_channel_rejections_total, 1);
    destroy(t);
}

static void test_ip_reconnect_rate(void **state)
{
    static const char *const flags[] = { "--ws-deflate=false", "--resume-ip-rate=0.001",
                                         "--resume-ip-burst=1", NULL };
    T *t = make(flags);
    client_peer p = { .ip = { 127, 0, 0, 9 }, .ip_len = 4 };
    uint64_t now = clock_mono_ms();
    assert_int_equal(shard_server_ip_reconnect_allow(t->srv, &p, now), 1);
    assert_int_equal(shard_server_ip_reconnect_allow(t->srv, &p, now), 0);
    p.ip[3] = 10;
    assert_int_equal(shard_server_ip_reconnect_allow(t->srv, &p, now), 1);
    destroy(t);
}

/* ---- PROXY protocol v2 ------------------------------------------------- */

static size_t proxy_v2(uint8_t *h, const uint8_t src[4], uint16_t sport)
{
    static const uint8_t sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a,
                                     0x51, 0x55, 0x49, 0x54, 0x0a };
    memcpy(h, sig, 12);
    h[12] = 0x21;                 /* v2, PROXY */
    h[13] = 0x11;                 /* TCP over IPv4 */
    h[14] = 0;
    h[15] = 12;
    memcpy(h + 16, src, 4);
    uint8_t dst[4] = { 10, 0, 0, 1 };
    memcpy(h + 20, dst, 4);
    h[24] = (uint8_t)(sport >> 8);
    h[25] = (uint8_t)sport;
    h[26] = 0x0b;
    h[27] = 0xba;
    return 28;
}

static void test_proxy_protocol(void **state)
{
    static const char *const flags[] = { "--ws-deflate=false", "--ws-proxy-protocol=required",
                                         "--ws-proxy-trusted=127.0.0.1/32", NULL };
    T *t = make(flags);
    uint8_t h[32];
    const uint8_t src[4] = { 203, 0, 113, 7 };
    /* the trusted balancer with a header: the client is the header's source */
    fake_conn *ok = accept_from(t, 1);
    fake_send(ok, h, proxy_v2(h, src, 5555));
    send_request(ok, "GET", "/ws", NULL);
    fake_run(t->fc.ctx.base);
    assert_int_equal(fake_http_status(ok), 101);
    assert_int_equal(t->fc.ctx.m.ws_proxy_headers_total, 1);
    shard_client *c = client_pool_next(shard_server_clients(t->srv), NULL);
    assert_non_null(c);
    assert_memory_equal(client_peer_const(c)->ip, src, 4);
    assert_int_equal(client_peer_const(c)->port, 5555);
    assert_true(client_peer_const(c)->flags & CLIENT_PEER_VIA_PROXY);
    /* ... and /health is not for its public clients */
    fake_conn *pub = accept_from(t, 1);
    fake_send(pub, h, proxy_v2(h, src, 5556));
    fake_send(pub, "GET /health HTTP/1.1\r\n\r\n", 24);
    fake_run(t->fc.ctx.base);
    assert_int_equal(fake_http_status(pub), 404);
    /* the trusted balancer without a header (required) */
    fake_conn *missing = accept_from(t, 1);
    send_request(missing, "GET", "/ws", NULL);
    fake_run(t->fc.ctx.base);
    assert_true(missing->closed);
    assert_int_equal(t->fc.ctx.m.ws_proxy_rejections_total[SM_PROXY_MISSING], 1);
    /* a header from elsewhere is a spoof */
    fake_conn *spoof = accept_from(t, 2);
    fake_send(spoof, h, proxy_v2(h, src, 5557));
    fake_run(t->fc.ctx.base);
    assert_true(spoof->closed);
    assert_int_equal(spoof->out.len, 0);      /* no HTTP answer */
    assert_int_equal(t->fc.ctx.m.ws_proxy_rejections_total[SM_PROXY_UNTRUSTED], 1);
    /* a direct client from elsewhere without one is served */
    fake_conn *direct = accept_from(t, 3);
    send_request(direct, "GET", "/ws", NULL);
    fake_run(t->fc.ctx.base);
    assert_int_equal(fake_http_status(direct), 101);
    destroy(t);
}

/* ---- fan-out ops and shutdown ---------------------------------------- */

static void test_fanout_ops_reach_clients(void **state)
{
    T *t = *state;
    fake_conn *a, *b;
    assert_int_equal(upgrade_from(t, 1, NULL, &a), 101);
    assert_int_equal(upgrade_from(t, 2, NULL, &b), 101);
    fanout_ops ops;
    shard_server_fanout_ops(t->srv, &ops);
    assert_int_equal(ops.n_open(t->srv), 2);
    ws_chunk *ch = ws_chunk_frame(WS_OP_TEXT, "hello", 5);
    int n = 0;
    for (shard_client *c = ops.next_client(t->srv, NULL); c; c = ops.next_client(t->srv, c)) {
        assert_int_equal(ops.resume_filter(t->srv, c, NULL, ch), 0);   /* no replay */
        assert_int_equal(ops.push(t->srv, c, ch), 0);
        n++;
    }
    assert_int_equal(n, 2);
    ws_chunk_unref(ch);
    fake_run(t->fc.ctx.base);
    assert_true(has(a, "hello"));
    assert_true(has(b, "hello"));
}

static void on_drained(void *ud)
{
    ((T *)ud)->drained++;
}

static void test_shutdown(void **state)
{
    T *t = *state;
    fake_conn *a;
    assert_int_equal(upgrade_from(t, 1, NULL, &a), 101);
    fake_conn *h = accept_from(t, 2);
    shard_server_shutdown(t->srv, on_drained, t);
    fake_run(t->fc.ctx.base);
    assert_true(h->closed);
    assert_true(has(a, "server shutting down"));
    assert_int_equal(t->drained, 0);
    fake_peer_close(a);
    fake_run(t->fc.ctx.base);
    assert_int_equal(t->drained, 1);
    assert_int_equal(counts(t)->open + counts(t)->closing + counts(t)->http, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_upgrade_answers_101, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_too_large_is_431, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pages_on_ws_addr, setup, teardown),
        cmocka_unit_test(test_readyz_at_capacity),
        cmocka_unit_test(test_origin_draining_stopping),
        cmocka_unit_test(test_deflate_negotiated),
        cmocka_unit_test(test_max_pending_pauses_and_resumes),
        cmocka_unit_test(test_ip_max_pending),
        cmocka_unit_test(test_ip_rate_at_upgrade),
        cmocka_unit_test(test_ip_table_full_fails_closed),
        cmocka_unit_test(test_ip_channels_across_connections),
        cmocka_unit_test(test_ip_channels_unsubscribe_then_close),
        cmocka_unit_test(test_ip_reconnect_rate),
        cmocka_unit_test(test_proxy_protocol),
        cmocka_unit_test_setup_teardown(test_fanout_ops_reach_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
