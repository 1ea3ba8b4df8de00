/*
 * proto/handshake.c: the router <-> shard link handshake, byte for byte
 * (the vectors below were computed independently from docs/protocol.md
 * with Python's hmac module), and every refusal: relayed links, wrong
 * secret, a secret on one side only, another version, frames out of order,
 * a reflected MAC.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "proto/frame.h"
#include "proto/handshake.h"

static const uint8_t RN[16] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };
static const uint8_t SN[16] = { 16, 17, 18, 19, 20, 21, 22, 23,
                                24, 25, 26, 27, 28, 29, 30, 31 };

/* HELLO_r payload: [1, 2, "router", "r1", 2048, RN, "s1", "unix:/tmp/s1.sock"] */
static const uint8_t HR[] = {
    0x98, 0x01, 0x02, 0xa6, 0x72, 0x6f, 0x75, 0x74, 0x65, 0x72, 0xa2, 0x72, 0x31, 0xcd,
    0x08, 0x00, 0xc4, 0x10, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09,
    0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0xa2, 0x73, 0x31, 0xb1, 0x75, 0x6e, 0x69, 0x78,
    0x3a, 0x2f, 0x74, 0x6d, 0x70, 0x2f, 0x73, 0x31, 0x2e, 0x73, 0x6f, 0x63, 0x6b,
};
/* HELLO_s payload: [1, 2, "shard", "s1", 16777216, SN] */
static const uint8_t HS[] = {
    0x96, 0x01, 0x02, 0xa5, 0x73, 0x68, 0x61, 0x72, 0x64, 0xa2, 0x73, 0x31, 0xce, 0x01,
    0x00, 0x00, 0x00, 0xc4, 0x10, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,
    0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
};
/* HMAC-SHA256("s3cret", "odin-link-v2\0router\0" be32(55) HR be32(35) HS) */
static const uint8_t MAC_R[32] = {
    0x69, 0x9c, 0xd3, 0x8a, 0x20, 0x33, 0xf1, 0x0d, 0x4a, 0xfe, 0x88, 0x87, 0x15, 0xcc,
    0xc0, 0x9a, 0xa9, 0x96, 0x71, 0x87, 0x1e, 0x91, 0x07, 0x36, 0xfb, 0x70, 0xc4, 0x32,
    0xea, 0x88, 0x7f, 0x88,
};
/* HMAC-SHA256("s3cret", "odin-link-v2\0shard\0" be32(55) HR be32(35) HS MAC_R) */
static const uint8_t MAC_S[32] = {
    0x42, 0xda, 0x38, 0x35, 0x37, 0xee, 0xc8, 0x5e, 0xe1, 0x78, 0xf3, 0xdd, 0x12, 0xca,
    0xcc, 0xab, 0x2c, 0x82, 0x88, 0x4b, 0xde, 0xfa, 0x73, 0x73, 0x19, 0x59, 0xf6, 0xba,
    0x74, 0x05, 0xd0, 0xf0,
};

static const char *const S1_ENDPOINTS[] = { "tcp://10.0.0.1:7001", "unix:/tmp/s1.sock", NULL };

static handshake *router_hs(const char *secret, const char *target, const char *endpoint)
{
    handshake_cfg c = { .role = HANDSHAKE_ROUTER, .id = "r1", .max_frame = 2048,
                        .secret = secret, .target = target, .endpoint = endpoint,
                        .nonce = RN };
    handshake *h = handshake_new(&c);
    assert_non_null(h);
    return h;
}

static handshake *shard_hs(const char *secret, const char *id)
{
    handshake_cfg c = { .role = HANDSHAKE_SHARD, .id = id, .max_frame = 16777216,
                        .secret = secret, .endpoints = S1_ENDPOINTS, .nonce = SN };
    handshake *h = handshake_new(&c);
    assert_non_null(h);
    return h;
}

/* Decode every frame in *wire and feed it to h (replies appended to
 * *reply); the wire is emptied.  Returns the last result, or 99 if the
 * wire held no frame. */
static int deliver(handshake *h, buf *wire, buf *reply)
{
    frame_decoder *d = frame_decoder_new(FRAME_HANDSHAKE_MAX);
    assert_int_equal(frame_decoder_feed(d, wire->data, wire->len), FRAME_OK);
    frame_msg m;
    int r = 99, rc;
    while ((rc = frame_decoder_next(d, &m)) == 1) {
        r = handshake_on_frame(h, &m, reply);
        if (r == HANDSHAKE_REFUSED)
            break;
    }
    assert_true(rc >= 0);
    frame_decoder_free(d);
    buf_reset(wire);
    return r;
}

static void expect_frame(const buf *b, const uint8_t *payload, size_t n)
{
    assert_int_equal(b->len, n + 4);
    const uint8_t *p = (const uint8_t *)b->data;
    assert_int_equal(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
                     p[3], n);
    assert_memory_equal(p + 4, payload, n);
}

static void expect_auth(const buf *b, const uint8_t mac[32])
{
    /* [3, bin8(32) mac] */
    uint8_t want[36] = { 0x92, 0x03, 0xc4, 0x20 };
    memcpy(want + 4, mac, 32);
    expect_frame(b, want, sizeof want);
}

/* The whole exchange, byte for byte, in the order of docs/protocol.md. */
static void test_vectors(void **st)
{
    (void)st;
    handshake *r = router_hs("s3cret", "s1", "unix:/tmp/s1.sock");
    handshake *s = shard_hs("s3cret", "s1");
    buf r2s = { 0 }, s2r = { 0 };
    assert_int_equal(handshake_start(r, &r2s), 0);
    assert_int_equal(handshake_start(s, &s2r), 0);
    expect_frame(&r2s, HR, sizeof HR);
    expect_frame(&s2r, HS, sizeof HS);
    /* the shard has the router's HELLO: it proves nothing yet */
    assert_int_equal(deliver(s, &r2s, &s2r), HANDSHAKE_MORE);
    expect_frame(&s2r, HS, sizeof HS);
    /* the router has the shard's HELLO: it proves first */
    assert_int_equal(deliver(r, &s2r, &r2s), HANDSHAKE_MORE);
    assert_string_equal(handshake_peer_id(r), "s1");
    expect_auth(&r2s, MAC_R);
    /* the shard verifies, then answers */
    assert_int_equal(deliver(s, &r2s, &s2r), HANDSHAKE_DONE);
    expect_auth(&s2r, MAC_S);
    assert_int_equal(deliver(r, &s2r, &r2s), HANDSHAKE_DONE);
    assert_int_equal(r2s.len, 0);
    assert_int_equal(handshake_authenticated(r), 1);
    assert_int_equal(handshake_authenticated(s), 1);
    assert_int_equal(handshake_peer_max_frame(r), 16777216);
    assert_int_equal(handshake_peer_max_frame(s), 2048);
    assert_string_equal(handshake_peer_id(s), "r1");
    /* handshake_mac on its own gives the same vectors */
    uint8_t mac[32];
    assert_int_equal(handshake_mac("s3cret", 6, HANDSHAKE_ROUTER, HR, sizeof HR, HS,
                                   sizeof HS, NULL, mac), 0);
    assert_memory_equal(mac, MAC_R, 32);
    assert_int_equal(handshake_mac("s3cret", 6, HANDSHAKE_SHARD, HR, sizeof HR, HS,
                                   sizeof HS, MAC_R, mac), 0);
    assert_memory_equal(mac, MAC_S, 32);
    buf_free(&r2s);
    buf_free(&s2r);
    handshake_free(r);
    handshake_free(s);
}

/*
 * The relay of issue 19: a fake shard "evil" registered in Redis points at
 * a relay, which dials the real shard s1 and passes bytes both ways.
 * Untouched, the shard sees a HELLO for "evil" and the router a shard that
 * answers as "s1": both refuse (identity), and the shard never sends AUTH.
 */
static void test_relay_verbatim(void **st)
{
    (void)st;
    handshake *r = router_hs("s3cret", "evil", "tcp://relay:9");
    handshake *s = shard_hs("s3cret", "s1");
    buf r2s = { 0 }, s2r = { 0 };
    assert_int_equal(handshake_start(r, &r2s), 0);
    assert_int_equal(handshake_start(s, &s2r), 0);
    buf_reset(&s2r);
    assert_int_equal(deliver(s, &r2s, &s2r), HANDSHAKE_REFUSED);
    assert_int_equal(handshake_refusal(s), HANDSHAKE_R_IDENTITY);
    assert_non_null(strstr(handshake_reason(s), "'evil'"));
    assert_int_equal(s2r.len, 0);   /* no AUTH, nothing */
    /* and the router, shown s1's HELLO */
    handshake *s2 = shard_hs("s3cret", "s1");
    assert_int_equal(handshake_start(s2, &s2r), 0);
    assert_int_equal(deliver(r, &s2r, &r2s), HANDSHAKE_REFUSED);
    assert_int_equal(handshake_refusal(r), HANDSHAKE_R_IDENTITY);
    assert_int_equal(r2s.len, 0);   /* the router proved nothing to it */
    buf_free(&r2s);
    buf_free(&s2r);
    handshake_free(r);
    handshake_free(s);
    handshake_free(s2);
}

/* Rewrite a HELLO frame in place: replace the string `from` by `to`
 * (same length) in the payload. */
static void rewrite(buf *b, const char *from, const char *to)
{
    size_t n = strlen(from);
    assert_int_equal(strlen(to), n);
    for (size_t i = 0; i + n <= b->len; i++)
        if (memcmp(b->data + i, from, n) == 0) {
            memcpy(b->data + i, to, n);
            return;
        }
    fail_msg("'%s' not in the frame", from);
}

/* A relay that rewrites the ids and the endpoint so every HELLO check
 * passes: the MACs cover both HELLOs as sent, so the shard finds the
 * router's AUTH wrong and never sends its own; the router stays without
 * a verified shard (it would time out). */
static void test_relay_rewriting(void **st)
{
    (void)st;
    /* same lengths so the rewrite keeps the msgpack valid */
    handshake *r = router_hs("s3cret", "ev", "unix:/tmp/ev.sock");
    handshake *s = shard_hs("s3cret", "s1");
    buf r2s = { 0 }, s2r = { 0 };
    assert_int_equal(handshake_start(r, &r2s), 0);
    assert_int_equal(handshake_start(s, &s2r), 0);
    /* router -> relay -> shard: target and endpoint rewritten to s1's */
    rewrite(&r2s, "unix:/tmp/ev.sock", "unix:/tmp/s1.sock");
    rewrite(&r2s, "\xa2" "ev", "\xa2" "s1");
    assert_int_equal(deliver(s, &r2s, &s2r), HANDSHAKE_MORE);
    /* shard -> relay -> router: id rewritten to "ev" */
    rewrite(&s2r, "\xa2" "s1", "\xa2" "ev");
    assert_int_equal(deliver(r, &s2r, &r2s), HANDSHAKE_MORE);
    assert_true(r2s.len > 0);   /* AUTH_r, over what the router saw */
    assert_int_equal(deliver(s, &r2s, &s2r), HANDSHAKE_REFUSED);
    assert_int_equal(handshake_refusal(s), HANDSHAKE_R_AUTH);
    assert_int_equal(s2r.len, 0);
    /* a forged AUTH_s (the relay has no secret) fails at the router */
    uint8_t forged[32] = { 0 };
    assert_int_equal(frame_encode_auth(&s2r, forged), FRAME_OK);
    assert_int_equal(deliver(r, &s2r, &r2s), HANDSHAKE_REFUSED);
    assert_int_equal(handshake_refusal(r), HANDSHAKE_R_AUTH);
    buf_free(&r2s);
    buf_free(&s2r);
    handshake_free(r);
    handshake_free(s);
}

/* Another secret: the shard refuses the router's AUTH and sends none. */
static void test_wrong_secret(void **st)
{
    (void)st;
    handshake *r = router_hs("other", "s1", "unix:/tmp/s1.sock");
    handshake *s = shard_hs("s3cret", "s1");
    buf r2s = { 0 }, s2r = { 0 };
    assert_int_equal(handshake_start(r, &r2s), 0);
    assert_int_equal(handshake_start(s, &s2r), 0);
    assert_int_equal(deliver(s, &r2s, &s2r), HANDSHAKE_MORE);
    assert_int_equal(deliver(r, &s2r, &r2s), HANDSHAKE_MORE);
    assert_int_equal(deliver(s, &r2s, &s2r), HANDSHAKE_REFUSED);
    assert_int_equal(handshake_refusal(s), HANDSHAKE_R_AUTH);
    assert_int_equal(s2r.len, 0);
    /* later frames: still refused */
    assert_int_equal(frame_encode_auth(&r2s, MAC_R), FRAME_OK);
    assert_int_equal(deliver(s, &r2s, &s2r), HANDSHAKE_REFUSED);
    buf_free(&r2s);
    buf_free(&s2r);
    handshake_free(r);
    handshake_free(s);
}

/* Without a secret on either side: up after the HELLOs, no AUTH; the
 * identity checks still apply.  A secret on one side only: refused. */
static void test_secrets_configured(void **st)
{
    (void)st;
    handshake *r = router_hs(NULL, "s1", "tcp://10.0.0.1:7001");
    handshake *s = shard_hs("", "s1");
    buf r2s = { 0 }, s2r = { 0 };
    assert_int_equal(handshake_start(r, &r2s), 0);
    assert_int_equal(handshake_start(s, &s2r), 0);
    assert_int_equal(deliver(s, &r2s, &s2r), HANDSHAKE_DONE);
    assert_int_equal(deliver(r, &s2r, &r2s), HANDSHAKE_DONE);
    assert_int_equal(r2s.len, 0);
    assert_int_equal(handshake_authenticated(r), 0);
    handshake_free(r);
    handshake_free(s);
    /* router without, shard with */
    r = router_hs(NULL, "s1", "unix:/tmp/s1.sock");
    s = shard_hs("s3cret", "s1");
    buf_reset(&s2r);
    assert_int_equal(handshake_start(r, &r2s), 0);
    assert_int_equal(handshake_start(s, &s2r), 0);
    assert_int_equal(deliver(r, &s2r, &r2s), HANDSHAKE_REFUSED);
    assert_int_equal(handshake_refusal(r), HANDSHAKE_R_AUTH);
    handshake *r2 = router_hs(NULL, "s1", "unix:/tmp/s1.sock");
    buf_reset(&r2s);
    assert_int_equal(handshake_start(r2, &r2s), 0);
    assert_int_equal(deliver(s, &r2s, &s2r), HANDSHAKE_REFUSED);
    assert_int_equal(handshake_refusal(s), HANDSHAKE_R_AUTH);
    handshake_free(r);
    handshake_free(r2);
    handshake_free(s);
    /* router with, shard without: the router will not send to it */
    r = router_hs("s3cret", "s1", "unix:/tmp/s1.sock");
    s = shard_hs(NULL, "s1");
    buf_reset(&r2s);
    buf_reset(&s2r);
    assert_int_equal(handshake_start(r, &r2s), 0);
    assert_int_equal(handshake_start(s, &s2r), 0);
    assert_int_equal(deliver(r, &s2r, &r2s), HANDSHAKE_REFUSED);
    assert_int_equal(handshake_refusal(r), HANDSHAKE_R_AUTH);
    buf_free(&r2s);
    buf_free(&s2r);
    handshake_free(r);
    handshake_free(s);
}

/* An endpoint the shard does not answer on (a lease rewritten to point
 * at a relay that forwards to the real shard) is refused. */
static void test_foreign_endpoint(void **st)
{
    (void)st;
    handshake *r = router_hs("s3cret", "s1", "tcp://10.9.9.9:7001");
    handshake *s = shard_hs("s3cret", "s1");
    buf r2s = { 0 }, s2r = { 0 };
    assert_int_equal(handshake_start(r, &r2s), 0);
    assert_int_equal(handshake_start(s, &s2r), 0);
    assert_int_equal(deliver(s, &r2s, &s2r), HANDSHAKE_REFUSED);
    assert_int_equal(handshake_refusal(s), HANDSHAKE_R_IDENTITY);
    assert_non_null(strstr(handshake_reason(s), "tcp://10.9.9.9:7001"));
    buf_free(&r2s);
    buf_free(&s2r);
    handshake_free(r);
    handshake_free(s);
}

/* Version 1 (today's peers) is a clear version refusal on both ends. */
static void test_version(void **st)
{
    (void)st;
    buf b = { 0 }, out = { 0 };
    frame_hello v1 = { .version = 1, .role = "router", .role_len = 6, .id = "r1",
                       .id_len = 2, .max_frame = 1024, .nonce = RN };
    assert_int_equal(frame_encode_hello_msg(&b, &v1), FRAME_OK);
    handshake *s = shard_hs("s3cret", "s1");
    assert_int_equal(handshake_start(s, &out), 0);
    assert_int_equal(deliver(s, &b, &out), HANDSHAKE_REFUSED);
    assert_int_equal(handshake_refusal(s), HANDSHAKE_R_VERSION);
    assert_string_equal(handshake_reason(s),
                        "protocol version mismatch: router speaks 1, shard 2");
    v1.role = "shard";
    v1.role_len = 5;
    v1.id = "s1";
    assert_int_equal(frame_encode_hello_msg(&b, &v1), FRAME_OK);
    handshake *r = router_hs("s3cret", "s1", "unix:/tmp/s1.sock");
    assert_int_equal(handshake_start(r, &out), 0);
    assert_int_equal(deliver(r, &b, &out), HANDSHAKE_REFUSED);
    assert_int_equal(handshake_refusal(r), HANDSHAKE_R_VERSION);
    assert_string_equal(handshake_refusal_name(handshake_refusal(r)), "version");
    buf_free(&b);
    buf_free(&out);
    handshake_free(r);
    handshake_free(s);
}

/* Frames out of order, a wrong role, a missing target, a reflected MAC. */
static void test_order_and_role(void **st)
{
    (void)st;
    buf b = { 0 }, out = { 0 };
    /* AUTH before HELLO */
    handshake *s = shard_hs("s3cret", "s1");
    assert_int_equal(handshake_start(s, &out), 0);
    assert_int_equal(frame_encode_auth(&b, MAC_R), FRAME_OK);
    assert_int_equal(deliver(s, &b, &out), HANDSHAKE_REFUSED);
    assert_int_equal(handshake_refusal(s), HANDSHAKE_R_PROTOCOL);
    handshake_free(s);
    /* DELIVERY before AUTH */
    s = shard_hs("s3cret", "s1");
    handshake *r = router_hs("s3cret", "s1", "unix:/tmp/s1.sock");
    assert_int_equal(handshake_start(s, &out), 0);
    assert_int_equal(handshake_start(r, &b), 0);
    frame_batch fb;
    frame_record rec = { .category = "trade", .category_len = 5, .token = "T",
                         .token_len = 1, .value = "{}", .value_len = 2 };
    assert_int_equal(frame_batch_begin(&fb, &b, FRAME_MODE_TARGETED), FRAME_OK);
    assert_int_equal(frame_batch_add(&fb, &rec), FRAME_OK);
    assert_int_equal(frame_batch_end(&fb), FRAME_OK);
    assert_int_equal(deliver(s, &b, &out), HANDSHAKE_REFUSED);
    assert_string_equal(handshake_reason(s), "DELIVERY before AUTH");
    handshake_free(s);
    handshake_free(r);
    /* a second HELLO */
    s = shard_hs("s3cret", "s1");
    r = router_hs("s3cret", "s1", "unix:/tmp/s1.sock");
    assert_int_equal(handshake_start(s, &out), 0);
    assert_int_equal(handshake_start(r, &b), 0);
    buf_append(&b, b.data, b.len);
    assert_int_equal(deliver(s, &b, &out), HANDSHAKE_REFUSED);
    assert_int_equal(handshake_refusal(s), HANDSHAKE_R_PROTOCOL);
    handshake_free(s);
    handshake_free(r);
    /* a router HELLO sent to a router, a HELLO without target */
    r = router_hs("s3cret", "s1", "unix:/tmp/s1.sock");
    handshake *r2 = router_hs("s3cret", "s1", "unix:/tmp/s1.sock");
    assert_int_equal(handshake_start(r2, &b), 0);
    assert_int_equal(handshake_start(r, &out), 0);
    assert_int_equal(deliver(r, &b, &out), HANDSHAKE_REFUSED);
    assert_int_equal(handshake_refusal(r), HANDSHAKE_R_PROTOCOL);
    handshake_free(r);
    handshake_free(r2);
    s = shard_hs(NULL, "s1");
    assert_int_equal(handshake_start(s, &out), 0);
    assert_int_equal(frame_encode_hello(&b, "router", "r1", 1024), FRAME_OK);
    assert_int_equal(deliver(s, &b, &out), HANDSHAKE_REFUSED);
    assert_string_equal(handshake_reason(s), "router HELLO names no target shard");
    handshake_free(s);
    /* the router's own AUTH reflected back as the shard's: refused */
    r = router_hs("s3cret", "s1", "unix:/tmp/s1.sock");
    s = shard_hs("s3cret", "s1");
    buf r2s = { 0 };
    buf_reset(&out);
    assert_int_equal(handshake_start(r, &r2s), 0);
    assert_int_equal(handshake_start(s, &out), 0);
    assert_int_equal(deliver(r, &out, &r2s), HANDSHAKE_MORE);
    /* r2s holds HELLO_r + AUTH_r; send AUTH_r back to the router */
    buf back = { 0 };
    buf_append(&back, r2s.data + 4 + sizeof HR, r2s.len - 4 - sizeof HR);
    assert_int_equal(deliver(r, &back, &out), HANDSHAKE_REFUSED);
    assert_int_equal(handshake_refusal(r), HANDSHAKE_R_AUTH);
    buf_free(&back);
    buf_free(&r2s);
    buf_free(&b);
    buf_free(&out);
    handshake_free(r);
    handshake_free(s);
}

/* A HELLO that would not fit FRAME_HANDSHAKE_MAX is a construction error;
 * _free(NULL) is a no-op. */
static void test_limits(void **st)
{
    (void)st;
    char ep[FRAME_HANDSHAKE_MAX + 1];
    memset(ep, 'a', sizeof ep - 1);
    ep[sizeof ep - 1] = 0;
    handshake_cfg c = { .role = HANDSHAKE_ROUTER, .id = "r1", .max_frame = 1,
                        .target = "s1", .endpoint = ep };
    assert_null(handshake_new(&c));
    c.endpoint = NULL;
    assert_null(handshake_new(&c));   /* a router must say what it dials */
    handshake_free(NULL);
    /* a random nonce differs from one handshake to the next */
    c.endpoint = "unix:/x";
    c.secret = "k";
    handshake *a = handshake_new(&c), *b = handshake_new(&c);
    buf ba = { 0 }, bb = { 0 };
    assert_int_equal(handshake_start(a, &ba), 0);
    assert_int_equal(handshake_start(b, &bb), 0);
    assert_int_equal(ba.len, bb.len);
    assert_memory_not_equal(ba.data, bb.data, ba.len);
    buf_free(&ba);
    buf_free(&bb);
    handshake_free(a);
    handshake_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_relay_verbatim),
        cmocka_unit_test(test_relay_rewriting),
        cmocka_unit_test(test_wrong_secret),
        cmocka_unit_test(test_secrets_configured),
        cmocka_unit_test(test_foreign_endpoint),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_order_and_role),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests_name("handshake", tests, NULL, NULL);
}
