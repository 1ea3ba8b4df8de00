/* shard/client.c and shard/clientpool.c without sockets: fake connections
 * (tests/support/fakeio.h) under a fake owner (client_ops) that counts what
 * the clients ask of it.  HTTP phase, upgrade, the client protocol, the
 * send queue and its limits, timers, closing and the reaper. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "common/clock.h"
#include "common/wsframe.h"
#include "shard/client.h"
#include "tests/support/fakeio.h"

/* ---- the fake owner --------------------------------------------------- */

typedef struct owner {
    int http_calls;          /* http_request calls */
    int upgrade;             /* answer a complete head with an upgrade */
    int http_leaves;
    int ip_take_refuse;      /* ip_channel_take says no */
    int ip_taken, ip_released;
    int resumes;             /* resume_start calls */
    size_t resume_n;
    int64_t resume_seq0;
    int gone;
    size_t proxy_used;       /* proxy: bytes of header to drop (0: none) */
    int proxy_calls;
    int drained;
    int deflate;             /* upgrade with permessage-deflate */
} owner;

typedef struct T {
    fake_ctx fc;
    fakeio fio;
    client_io io;
    owner o;
    client_pool *pool;
} T;

static void o_http(void *ud, shard_client *c, const char *data, size_t len)
{
    owner *o = ud;
    o->http_calls++;
    const char *end = memmem(data, len, "\r\n\r\n", 4);
    if (!end || !o->upgrade)
        return;
    static const char resp[] = "HTTP/1.1 101 Switching Protocols\r\n\r\n";
    client_http_reply(c, resp, sizeof resp - 1, 0);
    size_t head = (size_t)(end - data) + 4;
    client_upgrade(c, o->deflate, data + head, len - head);
}

static int o_proxy(void *ud, shard_client *c, const uint8_t *data, size_t len,
                   size_t *used)
{
    owner *o = ud;
    o->proxy_calls++;
    if (len < o->proxy_used)
        return 0;
    *used = o->proxy_used;
    client_peer_of(c)->flags &= (uint16_t)~CLIENT_PEER_PROXY_WAIT;
    return 1;
}

static void o_leave(void *ud, shard_client *c)
{
    ((owner *)ud)->http_leaves++;
}

static int o_take(void *ud, shard_client *c)
{
    owner *o = ud;
    if (o->ip_take_refuse)
        return -1;
    o->ip_taken++;
    client_peer_of(c)->ip_channels++;
    return 0;
}

static void o_release(void *ud, shard_client *c, uint32_t n)
{
    owner *o = ud;
    client_peer *pe = client_peer_of(c);
    if (n > pe->ip_channels)
        n = pe->ip_channels;
    pe->ip_channels -= n;
    o->ip_released += (int)n;
}

static void o_resume(void *ud, shard_client *c, const resume_req_chan *ch,
                     size_t n, int odinws)
{
    owner *o = ud;
    o->resumes++;
    o->resume_n = n;
    o->resume_seq0 = n ? ch[0].seq : -1;
}

static void o_gone(void *ud, shard_client *c)
{
    ((owner *)ud)->gone++;
}

static void on_drained(void *ud)
{
    ((owner *)ud)->drained++;
}

static T *setup_flags(const char *const *flags)
{
    T *t = calloc(1, sizeof *t);
    assert_non_null(t);
    assert_int_equal(fake_ctx_init(&t->fc, flags), 0);
    fakeio_init(&t->fio, &t->io);
    t->o.upgrade = 1;
    client_ops ops = { .http_request = o_http, .proxy = o_proxy,
                       .http_leave = o_leave, .ip_channel_take = o_take,
                       .ip_channel_release = o_release,
                       .resume_start = o_resume, .gone = o_gone };
    t->pool = client_pool_new(&t->fc.ctx, &ops, &t->o, &t->io);
    assert_non_null(t->pool);
    return t;
}

static const char *const k_flags[] = { "--ws-deflate=false", NULL };

static int setup(void **state)
{
    *state = setup_flags(k_flags);
    return 0;
}

static int teardown(void **state)
{
    T *t = *state;
    client_pool_free(t->pool);
    fakeio_free(&t->fio);
    fake_ctx_free(&t->fc);
    free(t);
    return 0;
}

static shard_client *connect_one(T *t, fake_conn **out, uint8_t octet)
{
    fake_conn *fc = fakeio_conn(&t->fio, octet, 40000);
    assert_non_null(fc);
    shard_client *c = client_new(t->pool, fc->fd, (struct sockaddr *)&fc->sa);
    assert_non_null(c);
    *out = fc;
    return c;
}

/* An open WebSocket client (upgraded; the 101 read off its output). */
static shard_client *open_one(T *t, fake_conn **out)
{
    shard_client *c = connect_one(t, out, 1);
    fake_send_upgrade(*out);
    fake_run(t->fc.ctx.base);
    assert_int_equal(client_state(c), CL_OPEN);
    assert_int_equal(fake_http_status(*out), 101);
    return c;
}

/* The next text frame the client got, or NULL (to free). */
static char *next_text(fake_conn *fc)
{
    int op;
    char *p;
    size_t n;
    while (fake_next_frame(fc, &op, &p, &n)) {
        if (op == 1)
            return p;
        free(p);
    }
    return NULL;
}

static void expect_text(fake_conn *fc, const char *needle)
{
    char *p = next_text(fc);
    assert_non_null(p);
    if (!strstr(p, needle))
        fail_msg("expected \"%s\" in %s", needle, p);
    free(p);
}

/* The next close frame's status code, or -1. */
static int next_close(fake_conn *fc)
{
    int op;
    char *p;
    size_t n;
    while (fake_next_frame(fc, &op, &p, &n)) {
        if (op == 8) {
            int code = n >= 2 ? ((uint8_t)p[0] << 8) | (uint8_t)p[1] : -1;
            free(p);
            return code;
        }
        free(p);
    }
    return -1;
}

static ws_chunk *record_chunk(const char *text)
{
    ws_chunk *ch = ws_chunk_frame(WS_OP_TEXT, text, strlen(text));
    assert_non_null(ch);
    ch->flags |= WS_CHUNK_MSG;
    return ch;
}

/* ---- the pool ----------------------------------------------------------- */

static void test_pool_ids_order_find(void **state)
{
    T *t = *state;
    fake_conn *f1, *f2, *f3;
    shard_client *a = connect_one(t, &f1, 1);
    shard_client *b = connect_one(t, &f2, 2);
    shard_client *c = connect_one(t, &f3, 3);
    assert_true(client_id(a) < client_id(b) && client_id(b) < client_id(c));
    assert_int_equal(client_pool_counts(t->pool)->http, 3);
    /* newest first */
    assert_ptr_equal(client_pool_next(t->pool, NULL), c);
    assert_ptr_equal(client_pool_next(t->pool, c), b);
    assert_ptr_equal(client_pool_next(t->pool, b), a);
    assert_null(client_pool_next(t->pool, a));
    assert_ptr_equal(client_pool_find(t->pool, client_id(b)), b);
    assert_null(client_pool_find(t->pool, client_id(c) + 1));
    assert_int_equal(client_peer_const(b)->ip[3], 2);
    assert_int_equal(client_peer_const(b)->port, 40000);
    client_kill(b, "test");
    assert_null(client_pool_find(t->pool, client_id(a) + 1));
    assert_ptr_equal(client_pool_next(t->pool, c), a);
    assert_int_equal(client_pool_counts(t->pool)->http, 2);
    assert_int_equal(t->o.http_leaves, 1);
    assert_true(f2->closed);
    assert_int_equal(t->o.gone, 0);          /* freed by the reaper ... */
    fake_run(t->fc.ctx.base);
    assert_int_equal(t->o.gone, 1);          /* ... on the next pass */
}

/* ---- HTTP phase ------------------------------------------------------- */

static void test_http_head_parsed_only_at_line_end(void **state)
{
    T *t = *state;
    fake_conn *fc;
    shard_client *c = connect_one(t, &fc, 1);
    fake_send(fc, "GET /ws HT", 10);
    fake_run(t->fc.ctx.base);
    assert_int_equal(t->o.http_calls, 0);
    fake_send(fc, "TP/1.1\r\n", 8);
    fake_run(t->fc.ctx.base);
    assert_int_equal(t->o.http_calls, 1);
    assert_int_equal(client_state(c), CL_HTTP);
}

static void test_upgrade_counts_and_leave(void **state)
{
    T *t = *state;
    fake_conn *fc;
    shard_client *c = open_one(t, &fc);
    const client_counts *n = client_pool_counts(t->pool);
    assert_int_equal(n->http, 0);
    assert_int_equal(n->open, 1);
    assert_int_equal(t->o.http_leaves, 1);
    assert_int_equal(t->fc.ctx.m.ws_connections_total, 1);
    client_kill(c, "test");
    assert_int_equal(n->open, 0);
    assert_int_equal(t->o.http_leaves, 1);   /* once per connection */
}

static void test_bytes_after_head_are_a_frame(void **state)
{
    T *t = *state;
    fake_conn *fc;
    shard_client *c = connect_one(t, &fc, 1);
    /* the head and a ping message in one read */
    fake_send_upgrade(fc);
    fake_send_text(fc, "{\"type\":\"heartbeat\"}");
    fake_run(t->fc.ctx.base);
    assert_int_equal(client_state(c), CL_OPEN);
    assert_int_equal(fake_http_status(fc), 101);
    expect_text(fc, "\"type\":\"pong\"");
}

static void test_proxy_header_dropped_before_http(void **state)
{
    T *t = *state;
    fake_conn *fc;
    shard_client *c = connect_one(t, &fc, 1);
    client_peer_of(c)->flags |= CLIENT_PEER_PROXY_WAIT;
    t->o.proxy_used = 16;
    fake_send(fc, "PROXYHEADER", 11);    /* 11 < 16: wait */
    fake_run(t->fc.ctx.base);
    assert_int_equal(t->o.proxy_calls, 1);
    assert_int_equal(t->o.http_calls, 0);
    fake_send(fc, "01234", 5);           /* now 16: dropped, nothing left */
    fake_run(t->fc.ctx.base);
    assert_int_equal(t->o.proxy_calls, 2);
    assert_int_equal(t->o.http_calls, 0);
    fake_send_upgrade(fc);
    fake_run(t->fc.ctx.base);
    assert_int_equal(t->o.proxy_calls, 2);   /* decided once */
    assert_int_equal(client_state(c), CL_OPEN);
}

static void test_refuse_now_writes_then_kills(void **state)
{
    T *t = *state;
    fake_conn *fc;
    shard_client *c = connect_one(t, &fc, 1);
    fake_send(fc, "GET / HTTP/1.1\r\n", 16);
    client_refuse_now(c, "HTTP/1.1 503 X\r\n\r\n", 18, "test");
    assert_int_equal(fc->in_off, 16);       /* input read first */
    assert_int_equal(fc->out.len, 18);
    assert_true(fc->closed);
    assert_int_equal(client_pool_counts(t->pool)->http, 0);
}

/* ---- the client protocol --------------------------------------------- */

static void test_subscribe_ack_and_ip_slots(void **state)
{
    T *t = *state;
    fake_conn *fc;
    shard_client *c = open_one(t, &fc);
    fake_send_text(fc, "{\"type\":\"subscribe\",\"data\":{\"channels\":"
                       "[\"BTC.trade\",\"ETH.trade\"]}}");
    fake_run(t->fc.ctx.base);
    expect_text(fc, "\"type\":\"subscription_ack\"");
    assert_int_equal(subs_conn_count(client_subs(c)), 2);
    assert_int_equal(t->o.ip_taken, 2);
    assert_int_equal(client_peer_const(c)->ip_channels, 2);
    /* again: already subscribed, no new slot */
    fake_send_text(fc, "{\"type\":\"subscribe\",\"data\":{\"channels\":[\"BTC.trade\"]}}");
    fake_run(t->fc.ctx.base);
    expect_text(fc, "\"count\":2");
    assert_int_equal(t->o.ip_taken, 2);
    fake_send_text(fc, "{\"type\":\"unsubscribe\",\"data\":{\"channels\":[\"BTC.trade\"]}}");
    fake_run(t->fc.ctx.base);
    expect_text(fc, "\"type\":\"unsubscription_ack\"");
    assert_int_equal(t->o.ip_released, 1);
    assert_int_equal(subs_conn_count(client_subs(c)), 1);
    /* the rest goes back when it closes */
    client_close(c, 1000, "bye");
    assert_int_equal(t->o.ip_released, 2);
    assert_int_equal(client_peer_const(c)->ip_channels, 0);
}

static void test_ip_channel_refused_is_a_notice(void **state)
{
    T *t = *state;
    fake_conn *fc;
    shard_client *c = open_one(t, &fc);
    t->o.ip_take_refuse = 1;
    fake_send_text(fc, "{\"type\":\"subscribe\",\"data\":{\"channels\":[\"BTC.trade\"]}}");
    fake_run(t->fc.ctx.base);
    expect_text(fc, "TOO_MANY_SUBSCRIPTIONS");
    expect_text(fc, "\"count\":0");
    assert_int_equal(subs_conn_count(client_subs(c)), 0);
    assert_int_equal(t->fc.ctx.m.ws_ip_channel_rejections_total, 1);
    assert_int_equal(client_state(c), CL_OPEN);
}

static void test_channel_limit_per_connection(void **state)
{
    static const char *const flags[] = { "--ws-deflate=false", "--ws-max-channels=2", NULL };
    T *t = setup_flags(flags);
    fake_conn *fc;
    shard_client *c = open_one(t, &fc);
    fake_send_text(fc, "{\"type\":\"subscribe\",\"data\":{\"channels\":[\"A.trade\",\"B.trade\"]}}");
    fake_run(t->fc.ctx.base);
    expect_text(fc, "\"count\":2");
    fake_send_text(fc, "{\"type\":\"subscribe\",\"data\":{\"channels\":[\"C.trade\"]}}");
    fake_run(t->fc.ctx.base);
    expect_text(fc, "TOO_MANY_SUBSCRIPTIONS");
    assert_int_equal(subs_conn_count(client_subs(c)), 2);
    void *s = t;
    teardown(&s);
}

static void test_reconnect_hands_positions_to_owner(void **state)
{
    T *t = *state;
    fake_conn *fc;
    shard_client *c = open_one(t, &fc);
    fake_send_text(fc, "{\"type\":\"reconnect\",\"data\":{\"channels\":"
                       "{\"BTC.trade\":{\"p\":3,\"seq\":1042}}}}");
    fake_run(t->fc.ctx.base);
    assert_int_equal(t->o.resumes, 1);
    assert_int_equal(t->o.resume_n, 1);
    assert_int_equal(t->o.resume_seq0, 1042);
    assert_int_equal(subs_conn_count(client_subs(c)), 1);
    assert_null(next_text(fc));              /* the replay answers, not the client */
    assert_ptr_equal(client_resume(c)->owner, c);
    assert_ptr_equal(client_resume(c)->subs, client_subs(c));
}

static void test_rate_limit_and_binary(void **state)
{
    static const char *const flags[] = { "--ws-deflate=false", "--ws-msg-burst=2",
                                         "--ws-msg-rate=0.001", NULL };
    T *t = setup_flags(flags);
    fake_conn *fc;
    open_one(t, &fc);
    fake_send_frame(fc, 2, "\x01\x02", 2);   /* binary: ignored, not limited */
    for (int i = 0; i < 3; i++)
        fake_send_text(fc, "{\"type\":\"heartbeat\"}");
    fake_run(t->fc.ctx.base);
    expect_text(fc, "pong");
    expect_text(fc, "pong");
    expect_text(fc, "RATE_LIMIT_EXCEEDED");
    assert_int_equal(t->fc.ctx.m.ws_binary_frames_ignored_total, 1);
    assert_int_equal(t->fc.ctx.m.ws_message_ratelimit_total, 1);
    assert_int_equal(t->fc.ctx.m.ws_messages_received_total, 4);
    void *s = t;
    teardown(&s);
}

static void test_errors_close_after_max(void **state)
{
    static const char *const flags[] = { "--ws-deflate=false", "--ws-max-errors=2", NULL };
    T *t = setup_flags(flags);
    fake_conn *fc;
    shard_client *c = open_one(t, &fc);
    for (int i = 0; i < 3; i++)
        fake_send_text(fc, "{\"type\":\"subscribe\"}");
    fake_run(t->fc.ctx.base);
    assert_int_equal(client_state(c), CL_CLOSING);
    assert_int_equal(next_close(fc), 1008);
    void *s = t;
    teardown(&s);
}

/* ---- the send queue ---------------------------------------------------- */

static void test_push_writes_on_flush(void **state)
{
    T *t = *state;
    fake_conn *fc;
    shard_client *c = open_one(t, &fc);
    ws_chunk *ch = record_chunk("{\"rec\":1}");
    assert_int_equal(client_push(c, ch), 0);
    assert_int_equal(client_queued_bytes(c), ch->len);
    assert_int_equal(client_pool_counts(t->pool)->queue_bytes, ch->len);
    fake_run(t->fc.ctx.base);
    expect_text(fc, "{\"rec\":1}");
    assert_int_equal(client_queued_bytes(c), 0);
    assert_int_equal(client_pool_counts(t->pool)->queue_bytes, 0);
    ws_chunk_unref(ch);
}

static void test_partial_write_resumes(void **state)
{
    T *t = *state;
    fake_conn *fc;
    shard_client *c = open_one(t, &fc);
    size_t before = fc->out.len;
    fc->write_room = 5;
    ws_chunk *ch = record_chunk("{\"rec\":\"0123456789\"}");
    assert_int_equal(client_push(c, ch), 0);
    fake_run(t->fc.ctx.base);
    assert_int_equal(fc->out.len - before, 5);
    assert_int_equal(client_queued_bytes(c), ch->len - 5);
    fc->write_room = SIZE_MAX;
    fake_run(t->fc.ctx.base);               /* EV_WRITE: the rest */
    expect_text(fc, "0123456789");
    assert_int_equal(client_queued_bytes(c), 0);
    ws_chunk_unref(ch);
}

static void test_full_queue_is_a_slow_client(void **state)
{
    static const char *const flags[] = { "--ws-deflate=false", "--ws-send-queue-msgs=4", NULL };
    T *t = setup_flags(flags);
    fake_conn *fc;
    shard_client *c = open_one(t, &fc);
    fc->write_room = 0;                     /* the peer reads nothing */
    ws_chunk *ch = record_chunk("{\"rec\":1}");
    int r = 0, pushed = 0;
    for (int i = 0; i < 10 && (r = client_push(c, ch)) == 0; i++)
        pushed++;
    assert_int_equal(r, -1);
    assert_int_equal(pushed, 4);
    assert_int_equal(client_state(c), CL_CLOSING);
    assert_int_equal(t->fc.ctx.m.ws_slow_clients_disconnected_total, 1);
    assert_int_equal(client_push(c, ch), -1);          /* not open */
    fc->write_room = SIZE_MAX;
    fake_run(t->fc.ctx.base);
    assert_int_equal(next_close(fc), 1008);
    assert_true(fc->shut_wr);                          /* FIN after the close */
    ws_chunk_unref(ch);
    void *s = t;
    teardown(&s);
}

static void test_push_to_http_client_refused(void **state)
{
    T *t = *state;
    fake_conn *fc;
    shard_client *c = connect_one(t, &fc, 1);
    ws_chunk *ch = record_chunk("x");
    assert_int_equal(client_push(c, ch), -1);
    assert_int_equal(client_queued_bytes(c), 0);
    ws_chunk_unref(ch);
}

/* ---- closing ------------------------------------------------------------ */

static void test_close_then_peer_eof_frees(void **state)
{
    T *t = *state;
    fake_conn *fc;
    shard_client *c = open_one(t, &fc);
    client_close(c, 4000, "test");
    const client_counts *n = client_pool_counts(t->pool);
    assert_int_equal(n->open, 0);
    assert_int_equal(n->closing, 1);
    fake_run(t->fc.ctx.base);
    assert_int_equal(next_close(fc), 4000);
    assert_true(fc->shut_wr);
    assert_false(fc->closed);              /* waits for the peer */
    fake_peer_close(fc);
    fake_run(t->fc.ctx.base);
    assert_true(fc->closed);
    assert_int_equal(n->closing, 0);
    assert_int_equal(t->o.gone, 1);
    assert_null(client_pool_next(t->pool, NULL));
}

static void test_peer_close_frame_answered(void **state)
{
    T *t = *state;
    fake_conn *fc;
    shard_client *c = open_one(t, &fc);
    uint8_t code[2] = { 0x03, 0xe8 };     /* 1000 */
    fake_send_frame(fc, 8, code, 2);
    fake_run(t->fc.ctx.base);
    assert_int_equal(client_state(c), CL_CLOSING);
    assert_int_equal(next_close(fc), 1000);
}

static void test_read_error_kills(void **state)
{
    T *t = *state;
    fake_conn *fc;
    shard_client *c = open_one(t, &fc);
    fc->read_errno = ECONNRESET;
    fake_send(fc, "x", 1);
    fake_run(t->fc.ctx.base);
    assert_true(fc->closed);
    assert_int_equal(client_pool_counts(t->pool)->open, 0);
    assert_null(client_pool_find(t->pool, 1));
    (void)c;
}

/* ---- timers ------------------------------------------------------------- */

static void test_handshake_timeout(void **state)
{
    T *t = *state;
    fake_conn *f1, *f2;
    connect_one(t, &f1, 1);
    shard_client *b = connect_one(t, &f2, 2);
    /* b's complete request waits unread behind a late loop: answered, not
     * timed out */
    fake_send_upgrade(f2);
    client_pool_tick(t->pool, clock_mono_ms() + 6000);
    assert_true(f1->closed);
    assert_int_equal(t->fc.ctx.m.ws_handshake_timeouts_total, 1);
    assert_int_equal(client_state(b), CL_OPEN);
}

static void test_idle_ping_and_close_timeouts(void **state)
{
    T *t = *state;
    fake_conn *fc;
    shard_client *c = open_one(t, &fc);
    uint64_t now = clock_mono_ms();
    client_pool_tick(t->pool, now + 27500);        /* WS_PING_INTERVAL 27 */
    fake_run(t->fc.ctx.base);
    int op = 0;
    char *p = NULL;
    size_t n;
    assert_int_equal(fake_next_frame(fc, &op, &p, &n), 1);
    assert_int_equal(op, 9);
    free(p);
    client_pool_tick(t->pool, now + 30500);        /* WS_IDLE_TIMEOUT 30 */
    assert_int_equal(client_state(c), CL_CLOSING);
    assert_int_equal(t->fc.ctx.m.ws_idle_timeouts_total, 1);
    client_pool_tick(t->pool, clock_mono_ms() + 5500);   /* WS_CLOSE_TIMEOUT 5 */
    assert_true(fc->closed);
}

/* ---- the pool's parser set ---------------------------------------------- */

/* A masked client text frame, RSV1 when rsv1, of which only the first
 * `send` payload bytes go out (a half-received frame when send < n). */
static void send_frame_part(fake_conn *fc, int rsv1, const uint8_t *payload,
                            size_t n, size_t send)
{
    static const uint8_t mask[4] = { 0x21, 0x43, 0x65, 0x87 };
    uint8_t *b = malloc(WSFRAME_MAX_HEADER + n);
    assert_non_null(b);
    size_t h = wsframe_client_header(b, 1, 1, n, mask);
    if (rsv1)
        b[0] |= 0x40;
    memcpy(b + h, payload, n);
    wsframe_mask(b + h, n, mask, 0);
    fake_send(fc, b, h + send);
    free(b);
}

/* raw deflate without the 00 00 ff ff tail, as a client sends */
static size_t zdeflate(const void *in, size_t n, uint8_t *out, size_t cap)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_SYNC_FLUSH), Z_OK);
    size_t got = cap - z.avail_out;
    deflateEnd(&z);
    assert_true(got > 4);
    return got - 4;
}

static shard_client *open_at(T *t, fake_conn **out, uint8_t octet)
{
    shard_client *c = connect_one(t, out, octet);
    fake_send_upgrade(*out);
    fake_run(t->fc.ctx.base);
    assert_int_equal(client_state(c), CL_OPEN);
    assert_int_equal(fake_http_status(*out), 101);
    return c;
}

/* The pool owns its clients' parser set: WS_PARTIAL_BUDGET is the pool's,
 * the wslay contexts, partial bytes and inflate counters are read through
 * client_pool_parsers, another pool's set is untouched, and freeing the
 * pool frees the set's inflate stream and buffer (ASan: no leak). */
static void test_pool_parser_set(void **state)
{
    /* a client holding 10000 payload bytes of a 60000-byte frame is
     * charged the context, the 8-byte header (2 + 2 length + 4 mask) and
     * those bytes */
    uint64_t each = WS_PARSER_CTX_COST + 8 + 10000;
    char budget[64];
    snprintf(budget, sizeof budget, "--ws-partial-budget=%llu",
             (unsigned long long)(each + 100));   /* room for one */
    const char *const tight_flags[] = { budget, NULL };
    const char *const other_flags[] = { "--ws-partial-budget=0", NULL };
    T *t = setup_flags(tight_flags);
    T *u = setup_flags(other_flags);
    t->o.deflate = 1;
    u->o.deflate = 1;
    const ws_parser_set *ps = client_pool_parsers(t->pool);
    const ws_parser_set *us = client_pool_parsers(u->pool);
    assert_non_null(ps);
    assert_non_null(us);
    assert_ptr_not_equal(ps, us);

    /* a compressed message is inflated with the pool's stream */
    fake_conn *f1;
    shard_client *c1 = open_at(t, &f1, 1);
    static const char hb[] = "{\"type\":\"heartbeat\"}";
    uint8_t z[128];
    size_t zn = zdeflate(hb, sizeof hb - 1, z, sizeof z);
    send_frame_part(f1, 1, z, zn, zn);
    fake_run(t->fc.ctx.base);
    assert_int_equal(client_state(c1), CL_OPEN);
    assert_int_equal(ws_inflate_messages(ps), 1);
    assert_int_equal(ws_inflate_refused(ps), 0);
    assert_int_equal(ws_inflate_messages(us), 0);

    /* half-received frames count against this pool's budget only */
    static uint8_t big[60000];
    memset(big, 'q', sizeof big);
    fake_conn *f2, *f3, *g1, *g2;
    shard_client *c2 = open_at(t, &f2, 2);
    shard_client *c3 = open_at(t, &f3, 3);
    send_frame_part(f2, 0, big, sizeof big, 10000);
    fake_run(t->fc.ctx.base);
    assert_int_equal(client_state(c2), CL_OPEN);
    assert_int_equal(ws_parser_contexts(ps), 1);
    assert_int_equal(ws_parser_partial_bytes(ps), each);
    open_at(u, &g1, 1);
    open_at(u, &g2, 2);
    send_frame_part(g1, 0, big, sizeof big, 10000);
    send_frame_part(g2, 0, big, sizeof big, 10000);
    fake_run(u->fc.ctx.base);
    assert_int_equal(ws_parser_contexts(us), 2);
    assert_int_equal(ws_parser_partial_bytes(us), 2 * each);
    assert_int_equal(ws_parser_partial_bytes(ps), each);   /* unchanged */
    /* the second half frame takes this pool over its budget: 1013 */
    send_frame_part(f3, 0, big, sizeof big, 10000);
    fake_run(t->fc.ctx.base);
    assert_int_equal(client_state(c3), CL_CLOSING);
    assert_int_equal(next_close(f3), 1013);
    assert_int_equal(t->fc.ctx.m.ws_partial_budget_closes_total, 1);
    assert_int_equal(u->fc.ctx.m.ws_partial_budget_closes_total, 0);
    assert_int_equal(ws_parser_contexts(ps), 1);
    assert_int_equal(ws_parser_partial_bytes(ps), each);
    /* a client that goes away gives its charge back to its pool's set */
    fake_peer_close(f2);
    fake_run(t->fc.ctx.base);
    assert_int_equal(ws_parser_contexts(ps), 0);
    assert_int_equal(ws_parser_partial_bytes(ps), 0);
    assert_int_equal(ws_parser_partial_bytes(us), 2 * each);

    /* freeing a pool with half-received frames and a used inflate buffer
     * frees them all (ASan's leak check) */
    void *st = u;
    teardown(&st);
    st = t;
    teardown(&st);
}

/* ---- shutdown ----------------------------------------------------------- */

static void test_shutdown_closes_everyone(void **state)
{
    T *t = *state;
    fake_conn *f1, *f2;
    open_one(t, &f1);
    connect_one(t, &f2, 2);
    client_pool_shutdown(t->pool, on_drained, &t->o);
    fake_run(t->fc.ctx.base);
    assert_true(f2->closed);                /* HTTP phase: killed */
    assert_int_equal(next_close(f1), 1001);  /* open: closed with 1001 */
    assert_int_equal(t->o.drained, 0);       /* waits for the peer */
    fake_peer_close(f1);
    fake_run(t->fc.ctx.base);
    assert_int_equal(t->o.drained, 1);
    assert_int_equal(t->o.gone, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pool_ids_order_find, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_head_parsed_only_at_line_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_counts_and_leave, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bytes_after_head_are_a_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proxy_header_dropped_before_http, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_now_writes_then_kills, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscribe_ack_and_ip_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ip_channel_refused_is_a_notice, setup, teardown),
        cmocka_unit_test(test_channel_limit_per_connection),
        cmocka_unit_test_setup_teardown(test_reconnect_hands_positions_to_owner, setup, teardown),
        cmocka_unit_test(test_rate_limit_and_binary),
        cmocka_unit_test(test_errors_close_after_max),
        cmocka_unit_test_setup_teardown(test_push_writes_on_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_write_resumes, setup, teardown),
        cmocka_unit_test(test_full_queue_is_a_slow_client),
        cmocka_unit_test_setup_teardown(test_push_to_http_client_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_then_peer_eof_frees, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_close_frame_answered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_error_kills, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handshake_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_ping_and_close_timeouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_closes_everyone, setup, teardown),
        cmocka_unit_test(test_pool_parser_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
