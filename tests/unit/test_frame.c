/* proto/frame.c: round trips, every error path, chunked feeding, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"

static frame_record rec(const char *cat, const char *tok, int32_t part, int64_t off,
                        const char *val)
{
    frame_record r = { .category = cat, .category_len = strlen(cat),
                       .token = tok, .token_len = strlen(tok),
                       .partition = part, .offset = off, .timestamp_ms = 1700000000123,
                       .value = val, .value_len = strlen(val), .flags = 0 };
    return r;
}

static void encode_batch(buf *out, const frame_record *rs, size_t n, enum frame_mode m)
{
    frame_batch b;
    assert_int_equal(frame_batch_begin(&b, out, m), FRAME_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(frame_batch_add(&b, &rs[i]), FRAME_OK);
    assert_int_equal(frame_batch_end(&b), FRAME_OK);
}

static void assert_rec_eq(const frame_record *a, const frame_record *b)
{
    assert_int_equal(a->category_len, b->category_len);
    assert_memory_equal(a->category, b->category, a->category_len);
    assert_int_equal(a->token_len, b->token_len);
    assert_memory_equal(a->token, b->token, a->token_len);
    assert_int_equal(a->partition, b->partition);
    assert_true(a->offset == b->offset);
    assert_true(a->timestamp_ms == b->timestamp_ms);
    assert_int_equal(a->value_len, b->value_len);
    if (a->value_len)
        assert_memory_equal(a->value, b->value, a->value_len);
    assert_int_equal(a->flags, b->flags);
}

static void test_hello_roundtrip(void **st)
{
    (void)st;
    buf out = { 0 };
    assert_int_equal(frame_encode_hello(&out, "router", "r-1", 123456), FRAME_OK);
    frame_decoder *d = frame_decoder_new(FRAME_DEFAULT_MAX);
    assert_non_null(d);
    assert_int_equal(frame_decoder_feed(d, out.data, out.len), FRAME_OK);
    frame_msg m;
    assert_int_equal(frame_decoder_next(d, &m), 1);
    assert_int_equal(m.type, FRAME_HELLO);
    assert_int_equal(m.hello.version, FRAME_PROTO_VERSION);
    assert_int_equal(m.hello.role_len, 6);
    assert_memory_equal(m.hello.role, "router", 6);
    assert_int_equal(m.hello.id_len, 3);
    assert_memory_equal(m.hello.id, "r-1", 3);
    assert_int_equal(m.hello.max_frame, 123456);
    assert_int_equal(frame_decoder_next(d, &m), 0);
    assert_int_equal(frame_decoder_pending(d), 0);
    frame_decoder_free(d);
    buf_free(&out);
}

static void test_delivery_roundtrip(void **st)
{
    (void)st;
    frame_record rs[3] = {
        rec("trade", "BTC", 3, 42, "{\"type\":\"TRADE_EXECUTED\"}"),
        rec("analytics", "ETH", 0, -1, ""),
        rec("social", "a-b_c", INT32_MAX, INT64_MAX, "[1,2,3]"),
    };
    rs[1].timestamp_ms = -5;
    rs[2].flags = FRAME_REC_ALL_CLIENTS;
    char binval[5] = { 0, 1, 2, '"', (char)0xff };   /* binary-safe */
    rs[0].value = binval;
    rs[0].value_len = sizeof binval;
    buf out = { 0 };
    encode_batch(&out, rs, 3, FRAME_MODE_BROADCAST);
    frame_decoder *d = frame_decoder_new(FRAME_DEFAULT_MAX);
    frame_decoder_feed(d, out.data, out.len);
    frame_msg m;
    assert_int_equal(frame_decoder_next(d, &m), 1);
    assert_int_equal(m.type, FRAME_DELIVERY);
    assert_int_equal(m.mode, FRAME_MODE_BROADCAST);
    assert_int_equal(m.nrecords, 3);
    for (int i = 0; i < 3; i++)
        assert_rec_eq(&m.records[i], &rs[i]);
    frame_decoder_free(d);
    buf_free(&out);
}

/* The decoder does not copy record bytes: values point into its buffer. */
static void test_zero_copy(void **st)
{
    (void)st;
    frame_record r = rec("trade", "BTC", 1, 1, "{\"x\":1}");
    buf out = { 0 };
    encode_batch(&out, &r, 1, FRAME_MODE_TARGETED);
    frame_decoder *d = frame_decoder_new(FRAME_DEFAULT_MAX);
    frame_msg m;
    assert_int_equal(frame_decode_payload(d, out.data + 4, out.len - 4, &m), FRAME_OK);
    assert_true(m.records[0].value >= out.data && m.records[0].value < out.data + out.len);
    frame_decoder_free(d);
    buf_free(&out);
}

static void test_empty_batch_and_abort(void **st)
{
    (void)st;
    buf out = { 0 };
    encode_batch(&out, NULL, 0, FRAME_MODE_TARGETED);
    size_t one = out.len;
    frame_batch b;
    frame_batch_begin(&b, &out, FRAME_MODE_TARGETED);
    frame_record r = rec("trade", "X", 0, 0, "1");
    frame_batch_add(&b, &r);
    assert_true(frame_batch_size(&b) > 0);
    frame_batch_abort(&b);
    assert_int_equal(out.len, one);
    frame_decoder *d = frame_decoder_new(FRAME_DEFAULT_MAX);
    frame_decoder_feed(d, out.data, out.len);
    frame_msg m;
    assert_int_equal(frame_decoder_next(d, &m), 1);
    assert_int_equal(m.nrecords, 0);
    assert_int_equal(frame_decoder_next(d, &m), 0);
    frame_decoder_free(d);
    buf_free(&out);
}

/* Several frames fed one byte at a time come out whole and in order. */
static void test_chunked_one_byte(void **st)
{
    (void)st;
    buf out = { 0 };
    frame_encode_hello(&out, "shard", "s1", 1000);
    char val[300];
    memset(val, 'v', sizeof val - 1);
    val[sizeof val - 1] = '\0';
    frame_record rs[50];
    char toks[50][16];
    for (int i = 0; i < 50; i++) {
        snprintf(toks[i], sizeof toks[i], "T%d", i);
        rs[i] = rec("trade", toks[i], i % 8, 1000 + i, val);
    }
    for (int f = 0; f < 5; f++)
        encode_batch(&out, rs + f * 10, 10, FRAME_MODE_TARGETED);
    frame_decoder *d = frame_decoder_new(FRAME_DEFAULT_MAX);
    int frames = 0, next_rec = 0;
    frame_msg m;
    for (size_t i = 0; i < out.len; i++) {
        assert_int_equal(frame_decoder_feed(d, out.data + i, 1), FRAME_OK);
        int rc;
        while ((rc = frame_decoder_next(d, &m)) == 1) {
            if (frames++ == 0) {
                assert_int_equal(m.type, FRAME_HELLO);
                continue;
            }
            assert_int_equal(m.type, FRAME_DELIVERY);
            assert_int_equal(m.nrecords, 10);
            for (size_t k = 0; k < m.nrecords; k++)
                assert_rec_eq(&m.records[k], &rs[next_rec++]);
        }
        assert_int_equal(rc, 0);
    }
    assert_int_equal(frames, 6);
    assert_int_equal(next_rec, 50);
    /* the decoder compacts: it never holds much more than one frame */
    assert_int_equal(frame_decoder_pending(d), 0);
    frame_decoder_free(d);
    buf_free(&out);
}

/* Split at every possible point in a two-frame stream. */
static void test_chunked_every_split(void **st)
{
    (void)st;
    buf out = { 0 };
    frame_record rs[2] = { rec("trade", "BTC", 1, 7, "{}"), rec("balances", "ETH", 2, 8, "[]") };
    encode_batch(&out, rs, 1, FRAME_MODE_TARGETED);
    encode_batch(&out, rs + 1, 1, FRAME_MODE_TARGETED);
    for (size_t cut = 0; cut <= out.len; cut++) {
        frame_decoder *d = frame_decoder_new(FRAME_DEFAULT_MAX);
        frame_msg m;
        int got = 0, rc;
        frame_decoder_feed(d, out.data, cut);
        while ((rc = frame_decoder_next(d, &m)) == 1)
            assert_rec_eq(&m.records[0], &rs[got++]);
        assert_int_equal(rc, 0);
        frame_decoder_feed(d, out.data + cut, out.len - cut);
        while ((rc = frame_decoder_next(d, &m)) == 1)
            assert_rec_eq(&m.records[0], &rs[got++]);
        assert_int_equal(rc, 0);
        assert_int_equal(got, 2);
        frame_decoder_free(d);
    }
    buf_free(&out);
}

static void test_too_big(void **st)
{
    (void)st;
    frame_decoder *d = frame_decoder_new(1024);
    unsigned char hdr[4] = { 0, 0, 4, 1 };   /* 1025 */
    frame_decoder_feed(d, hdr, 4);
    frame_msg m;
    /* rejected from the header alone, before any payload is buffered */
    assert_int_equal(frame_decoder_next(d, &m), FRAME_E_TOOBIG);
    /* poisoned: stays an error */
    assert_int_equal(frame_decoder_next(d, &m), FRAME_E_TOOBIG);
    assert_int_equal(frame_decoder_feed(d, "x", 1), FRAME_E_TOOBIG);
    frame_decoder_free(d);

    /* exactly at the limit is fine */
    buf out = { 0 };
    char val[2000];
    memset(val, 'a', sizeof val - 1);
    val[sizeof val - 1] = 0;
    frame_record r = rec("trade", "BTC", 0, 0, val);
    encode_batch(&out, &r, 1, FRAME_MODE_TARGETED);
    uint32_t payload = (uint32_t)(out.len - 4);
    d = frame_decoder_new(payload);
    frame_decoder_feed(d, out.data, out.len);
    assert_int_equal(frame_decoder_next(d, &m), 1);
    frame_decoder_free(d);
    d = frame_decoder_new(payload - 1);
    frame_decoder_feed(d, out.data, out.len);
    assert_int_equal(frame_decoder_next(d, &m), FRAME_E_TOOBIG);
    frame_decoder_free(d);
    buf_free(&out);
}

static void test_empty_frame(void **st)
{
    (void)st;
    frame_decoder *d = frame_decoder_new(1024);
    unsigned char hdr[4] = { 0, 0, 0, 0 };
    frame_decoder_feed(d, hdr, 4);
    frame_msg m;
    assert_int_equal(frame_decoder_next(d, &m), FRAME_E_EMPTY);
    frame_decoder_free(d);
}

/* Build a payload with msgpack-c directly, to craft shapes our encoder never makes. */
typedef void (*packfn)(msgpack_packer *);
static int decode_packed(packfn fn)
{
    buf p = { 0 };
    msgpack_packer pk;
    msgpack_packer_init(&pk, &p, buf_msgpack_write);
    fn(&pk);
    frame_decoder *d = frame_decoder_new(FRAME_DEFAULT_MAX);
    frame_msg m;
    int rc = frame_decode_payload(d, p.data, p.len, &m);
    frame_decoder_free(d);
    buf_free(&p);
    return rc;
}

static void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}
static void p_not_array(msgpack_packer *pk) { msgpack_pack_map(pk, 0); }
static void p_empty_array(msgpack_packer *pk) { msgpack_pack_array(pk, 0); }
static void p_type_str(msgpack_packer *pk) { msgpack_pack_array(pk, 1); pk_str(pk, "hello"); }
static void p_unknown_type(msgpack_packer *pk) { msgpack_pack_array(pk, 2); msgpack_pack_int(pk, 9); msgpack_pack_int(pk, 0); }
static void p_hello_short(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 4); msgpack_pack_int(pk, 1); msgpack_pack_int(pk, 1);
    pk_str(pk, "shard"); pk_str(pk, "x");
}
static void p_hello_bad_version(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 5); msgpack_pack_int(pk, 1); msgpack_pack_int(pk, -1);
    pk_str(pk, "shard"); pk_str(pk, "x"); msgpack_pack_int(pk, 10);
}
static void p_hello_extra(msgpack_packer *pk)   /* forward compatible: extra fields ok */
{
    msgpack_pack_array(pk, 6); msgpack_pack_int(pk, 1); msgpack_pack_int(pk, 2);
    pk_str(pk, "shard"); pk_str(pk, "x"); msgpack_pack_int(pk, 10); msgpack_pack_nil(pk);
}
static void p_delivery_records_not_array(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3); msgpack_pack_int(pk, 2); msgpack_pack_int(pk, 0); msgpack_pack_int(pk, 5);
}
static void p_record_short(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3); msgpack_pack_int(pk, 2); msgpack_pack_int(pk, 0);
    msgpack_pack_array(pk, 1); msgpack_pack_array(pk, 6);
    pk_str(pk, "trade"); pk_str(pk, "BTC"); msgpack_pack_int(pk, 0);
    msgpack_pack_int(pk, 0); msgpack_pack_int(pk, 0); pk_str(pk, "{}");
}
static void p_record_partition_overflow(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3); msgpack_pack_int(pk, 2); msgpack_pack_int(pk, 0);
    msgpack_pack_array(pk, 1); msgpack_pack_array(pk, 7);
    pk_str(pk, "trade"); pk_str(pk, "BTC"); msgpack_pack_int64(pk, (int64_t)INT32_MAX + 1);
    msgpack_pack_int(pk, 0); msgpack_pack_int(pk, 0); pk_str(pk, "{}"); msgpack_pack_int(pk, 0);
}
static void p_record_token_int(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3); msgpack_pack_int(pk, 2); msgpack_pack_int(pk, 0);
    msgpack_pack_array(pk, 1); msgpack_pack_array(pk, 7);
    pk_str(pk, "trade"); msgpack_pack_int(pk, 5); msgpack_pack_int(pk, 0);
    msgpack_pack_int(pk, 0); msgpack_pack_int(pk, 0); pk_str(pk, "{}"); msgpack_pack_int(pk, 0);
}
static void p_record_bin_value(msgpack_packer *pk)   /* bin is accepted like str */
{
    msgpack_pack_array(pk, 3); msgpack_pack_int(pk, 2); msgpack_pack_int(pk, 0);
    msgpack_pack_array(pk, 1); msgpack_pack_array(pk, 7);
    pk_str(pk, "trade"); pk_str(pk, "BTC"); msgpack_pack_int(pk, 0);
    msgpack_pack_int(pk, 0); msgpack_pack_int(pk, 0);
    msgpack_pack_bin(pk, 2); msgpack_pack_bin_body(pk, "{}", 2); msgpack_pack_int(pk, 0);
}
static void p_record_float_offset(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3); msgpack_pack_int(pk, 2); msgpack_pack_int(pk, 0);
    msgpack_pack_array(pk, 1); msgpack_pack_array(pk, 7);
    pk_str(pk, "trade"); pk_str(pk, "BTC"); msgpack_pack_int(pk, 0);
    msgpack_pack_double(pk, 1.5); msgpack_pack_int(pk, 0); pk_str(pk, "{}"); msgpack_pack_int(pk, 0);
}
static void p_record_negative_flags(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3); msgpack_pack_int(pk, 2); msgpack_pack_int(pk, 0);
    msgpack_pack_array(pk, 1); msgpack_pack_array(pk, 7);
    pk_str(pk, "trade"); pk_str(pk, "BTC"); msgpack_pack_int(pk, 0);
    msgpack_pack_int(pk, 0); msgpack_pack_int(pk, 0); pk_str(pk, "{}"); msgpack_pack_int(pk, -1);
}
static void p_too_deep(msgpack_packer *pk)
{
    for (int i = 0; i < 10; i++)
        msgpack_pack_array(pk, 1);
    msgpack_pack_int(pk, 1);
}

static void test_shape_errors(void **st)
{
    (void)st;
    assert_int_equal(decode_packed(p_not_array), FRAME_E_MALFORMED);
    assert_int_equal(decode_packed(p_empty_array), FRAME_E_MALFORMED);
    assert_int_equal(decode_packed(p_type_str), FRAME_E_MALFORMED);
    assert_int_equal(decode_packed(p_unknown_type), FRAME_E_TYPE);
    assert_int_equal(decode_packed(p_hello_short), FRAME_E_MALFORMED);
    assert_int_equal(decode_packed(p_hello_bad_version), FRAME_E_MALFORMED);
    assert_int_equal(decode_packed(p_hello_extra), FRAME_OK);
    assert_int_equal(decode_packed(p_delivery_records_not_array), FRAME_E_MALFORMED);
    assert_int_equal(decode_packed(p_record_short), FRAME_E_MALFORMED);
    assert_int_equal(decode_packed(p_record_partition_overflow), FRAME_E_MALFORMED);
    assert_int_equal(decode_packed(p_record_token_int), FRAME_E_MALFORMED);
    assert_int_equal(decode_packed(p_record_bin_value), FRAME_OK);
    assert_int_equal(decode_packed(p_record_float_offset), FRAME_E_MALFORMED);
    assert_int_equal(decode_packed(p_record_negative_flags), FRAME_E_MALFORMED);
    assert_int_equal(decode_packed(p_too_deep), FRAME_E_LIMIT);
}

/* A DELIVERY whose records array holds `n` elements, each `elem` packed. */
static void pack_delivery_n(buf *out, uint32_t n, int small_ints)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 3); msgpack_pack_int(&pk, 2); msgpack_pack_int(&pk, 0);
    msgpack_pack_array(&pk, n);
    for (uint32_t i = 0; i < n; i++) {
        if (small_ints) {
            msgpack_pack_int(&pk, 1);
        } else {
            msgpack_pack_array(&pk, 7);
            pk_str(&pk, "trade"); pk_str(&pk, "BTC"); msgpack_pack_int(&pk, 0);
            msgpack_pack_int(&pk, (int64_t)i); msgpack_pack_int(&pk, 0); pk_str(&pk, "{}");
            msgpack_pack_int(&pk, 0);
        }
    }
    buf_reset(out);
    assert_int_equal(buf_append(out, sb.data, sb.size), 0);
    msgpack_sbuffer_destroy(&sb);
}

/* The frame of small integers that used to cost hundreds of MB: refused on
 * its declared count, before msgpack-c allocates; the largest legal frame
 * still decodes. */
static void test_record_caps(void **st)
{
    (void)st;
    frame_decoder *d = frame_decoder_new(FRAME_DEFAULT_MAX);
    frame_msg m;
    buf p = { 0 };
    pack_delivery_n(&p, 16u * 1024u * 1024u - 16u, 1);   /* ~16 MiB */
    assert_int_equal(frame_decode_payload(d, p.data, p.len, &m), FRAME_E_LIMIT);
    pack_delivery_n(&p, FRAME_MAX_RECORDS + 1, 0);
    assert_int_equal(frame_decode_payload(d, p.data, p.len, &m), FRAME_E_LIMIT);
    pack_delivery_n(&p, FRAME_MAX_RECORDS, 0);
    assert_int_equal(frame_decode_payload(d, p.data, p.len, &m), FRAME_OK);
    assert_int_equal(m.nrecords, FRAME_MAX_RECORDS);
    assert_true(m.records[FRAME_MAX_RECORDS - 1].offset == FRAME_MAX_RECORDS - 1);
    /* a record with more fields than FRAME_MAX_FIELDS */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 3); msgpack_pack_int(&pk, 2); msgpack_pack_int(&pk, 0);
    msgpack_pack_array(&pk, 1); msgpack_pack_array(&pk, FRAME_MAX_FIELDS + 1);
    for (unsigned i = 0; i < FRAME_MAX_FIELDS + 1; i++)
        msgpack_pack_int(&pk, 0);
    assert_int_equal(frame_decode_payload(d, sb.data, sb.size, &m), FRAME_E_LIMIT);
    msgpack_sbuffer_destroy(&sb);
    /* the stream decoder poisons itself the same way */
    pack_delivery_n(&p, FRAME_MAX_RECORDS + 1, 1);
    unsigned char h[4] = { (unsigned char)(p.len >> 24), (unsigned char)(p.len >> 16),
                           (unsigned char)(p.len >> 8), (unsigned char)p.len };
    assert_int_equal(frame_decoder_feed(d, h, 4), FRAME_OK);
    assert_int_equal(frame_decoder_feed(d, p.data, p.len), FRAME_OK);
    assert_int_equal(frame_decoder_next(d, &m), FRAME_E_LIMIT);
    assert_int_equal(frame_decoder_next(d, &m), FRAME_E_LIMIT);
    assert_string_equal(frame_strerror(FRAME_E_LIMIT), "over a frame limit");
    buf_free(&p);
    frame_decoder_free(d);
}

/* HELLO with a nonce, target and endpoint, then AUTH: both decode, m.raw
 * is the payload as sent (what the handshake MACs), and a decoder's max
 * can be raised between frames (the handshake limit, then the link's). */
static void test_auth(void **st)
{
    (void)st;
    uint8_t rn[FRAME_NONCE_LEN], mac[FRAME_MAC_LEN];
    assert_int_equal(frame_nonce(rn), 0);
    memset(mac, 0xab, sizeof mac);
    buf out = { 0 };
    frame_hello h = { .version = FRAME_PROTO_VERSION, .role = "router", .role_len = 6,
                      .id = "r-1", .id_len = 3, .max_frame = 4096, .nonce = rn,
                      .target = "s-9", .target_len = 3, .endpoint = "tcp://h:1",
                      .endpoint_len = 9 };
    assert_int_equal(frame_encode_hello_msg(&out, &h), FRAME_OK);
    size_t hello_len = out.len;
    assert_int_equal(frame_encode_auth(&out, mac), FRAME_OK);
    frame_decoder *d = frame_decoder_new(FRAME_HANDSHAKE_MAX);
    assert_int_equal(frame_decoder_feed(d, out.data, out.len), FRAME_OK);
    frame_msg m;
    assert_int_equal(frame_decoder_next(d, &m), 1);
    assert_int_equal(m.type, FRAME_HELLO);
    assert_int_equal(m.hello.version, FRAME_PROTO_VERSION);
    assert_non_null(m.hello.nonce);
    assert_memory_equal(m.hello.nonce, rn, FRAME_NONCE_LEN);
    assert_int_equal(m.hello.target_len, 3);
    assert_memory_equal(m.hello.target, "s-9", 3);
    assert_int_equal(m.hello.endpoint_len, 9);
    assert_memory_equal(m.hello.endpoint, "tcp://h:1", 9);
    assert_int_equal(m.raw_len, hello_len - FRAME_HEADER_LEN);
    assert_memory_equal(m.raw, out.data + FRAME_HEADER_LEN, m.raw_len);
    assert_int_equal(frame_decoder_next(d, &m), 1);
    assert_int_equal(m.type, FRAME_AUTH);
    assert_memory_equal(m.mac, mac, FRAME_MAC_LEN);
    /* nothing after it: the AUTH was consumed exactly once */
    assert_int_equal(frame_decoder_pending(d), 0);
    assert_int_equal(frame_decoder_next(d, &m), 0);
    /* over the handshake limit: too big; after set_max the same frame fits */
    frame_decoder_free(d);
    buf big = { 0 };
    char val[FRAME_HANDSHAKE_MAX];
    memset(val, 'x', sizeof val);
    frame_record r = { .category = "trade", .category_len = 5, .token = "T", .token_len = 1,
                       .value = val, .value_len = sizeof val };
    frame_batch fb;
    assert_int_equal(frame_batch_begin(&fb, &big, FRAME_MODE_TARGETED), FRAME_OK);
    assert_int_equal(frame_batch_add(&fb, &r), FRAME_OK);
    assert_int_equal(frame_batch_end(&fb), FRAME_OK);
    d = frame_decoder_new(FRAME_HANDSHAKE_MAX);
    assert_int_equal(frame_decoder_feed(d, big.data, big.len), FRAME_OK);
    assert_int_equal(frame_decoder_next(d, &m), FRAME_E_TOOBIG);
    frame_decoder_free(d);
    d = frame_decoder_new(FRAME_HANDSHAKE_MAX);
    frame_decoder_set_max(d, FRAME_DEFAULT_MAX);
    assert_int_equal(frame_decoder_feed(d, big.data, big.len), FRAME_OK);
    assert_int_equal(frame_decoder_next(d, &m), 1);
    assert_int_equal(m.type, FRAME_DELIVERY);
    buf_free(&big);
    frame_decoder_free(d);
    /* a HELLO without a nonce (no secret configured) still decodes */
    buf_reset(&out);
    assert_int_equal(frame_encode_hello(&out, "shard", "s", 4096), FRAME_OK);
    d = frame_decoder_new(FRAME_DEFAULT_MAX);
    assert_int_equal(frame_decoder_feed(d, out.data, out.len), FRAME_OK);
    assert_int_equal(frame_decoder_next(d, &m), 1);
    assert_null(m.hello.nonce);
    frame_decoder_free(d);
    /* a nonce of the wrong size, an AUTH with a short MAC: malformed */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 6); msgpack_pack_int(&pk, 1); msgpack_pack_int(&pk, 1);
    pk_str(&pk, "router"); pk_str(&pk, "r"); msgpack_pack_int(&pk, 4096);
    msgpack_pack_bin(&pk, 3); msgpack_pack_bin_body(&pk, "abc", 3);
    d = frame_decoder_new(FRAME_DEFAULT_MAX);
    assert_int_equal(frame_decode_payload(d, sb.data, sb.size, &m), FRAME_E_MALFORMED);
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 2); msgpack_pack_int(&pk, 3);
    msgpack_pack_bin(&pk, 31); msgpack_pack_bin_body(&pk, mac, 31);
    assert_int_equal(frame_decode_payload(d, sb.data, sb.size, &m), FRAME_E_MALFORMED);
    msgpack_sbuffer_destroy(&sb);
    frame_decoder_free(d);
    buf_free(&out);
}

static void test_byte_level_errors(void **st)
{
    (void)st;
    frame_decoder *d = frame_decoder_new(FRAME_DEFAULT_MAX);
    frame_msg m;
    /* 0xc1 is never valid msgpack */
    assert_int_equal(frame_decode_payload(d, "\xc1", 1, &m), FRAME_E_MALFORMED);
    /* array32 claiming 4 billion elements in 5 bytes: refused before any allocation */
    assert_int_equal(frame_decode_payload(d, "\xdd\xff\xff\xff\xff", 5, &m), FRAME_E_LIMIT);
    /* map32 likewise */
    assert_int_equal(frame_decode_payload(d, "\xdf\x7f\xff\xff\xff", 5, &m), FRAME_E_LIMIT);
    /* within the cap but longer than the payload: malformed */
    assert_int_equal(frame_decode_payload(d, "\x9f\x01", 2, &m), FRAME_E_MALFORMED);
    /* str32 longer than the payload */
    assert_int_equal(frame_decode_payload(d, "\x92\x02\xdb\x00\x01\x00\x00", 7, &m),
                     FRAME_E_MALFORMED);
    /* truncated header of a uint32 */
    assert_int_equal(frame_decode_payload(d, "\x92\xce\x00", 3, &m), FRAME_E_MALFORMED);
    /* trailing bytes after a complete value */
    buf out = { 0 };
    frame_encode_hello(&out, "shard", "s", 64);
    buf_append(&out, "\x00", 1);
    assert_int_equal(frame_decode_payload(d, out.data + 4, out.len - 4, &m), FRAME_E_MALFORMED);
    /* and through the stream API: declared length covers the junk byte */
    out.data[3]++;
    frame_decoder_feed(d, out.data, out.len);
    assert_int_equal(frame_decoder_next(d, &m), FRAME_E_MALFORMED);
    assert_int_equal(frame_decoder_next(d, &m), FRAME_E_MALFORMED);
    frame_decoder_free(d);
    buf_free(&out);
    assert_int_equal(frame_decode_payload(NULL, "", 0, &m), FRAME_E_EMPTY);
}

/* Every truncation of a valid payload is an error, never a crash or a frame. */
static void test_every_truncation(void **st)
{
    (void)st;
    frame_record rs[2] = { rec("trade", "BTC", 1, 7, "{\"a\":[1,2]}"), rec("social", "ETH", 2, 8, "[]") };
    buf out = { 0 };
    encode_batch(&out, rs, 2, FRAME_MODE_TARGETED);
    frame_decoder *d = frame_decoder_new(FRAME_DEFAULT_MAX);
    frame_msg m;
    for (size_t n = 1; n < out.len - 4; n++) {
        char *copy = malloc(n);    /* exact-size copy so ASan sees any overread */
        memcpy(copy, out.data + 4, n);
        assert_true(frame_decode_payload(d, copy, n, &m) < 0);
        free(copy);
    }
    frame_decoder_free(d);
    buf_free(&out);
}

static void test_free_null_and_strerror(void **st)
{
    (void)st;
    frame_decoder_free(NULL);
    assert_string_equal(frame_strerror(FRAME_E_TOOBIG), "frame too big");
    assert_string_equal(frame_strerror(FRAME_E_MALFORMED), "malformed frame");
    assert_string_equal(frame_strerror(12345), "unknown error");
    /* minimum max is enforced */
    frame_decoder *d = frame_decoder_new(1);
    buf out = { 0 };
    frame_encode_hello(&out, "router", "r", 1);
    frame_decoder_feed(d, out.data, out.len);
    frame_msg m;
    assert_int_equal(frame_decoder_next(d, &m), 1);
    frame_decoder_free(d);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_roundtrip),
        cmocka_unit_test(test_delivery_roundtrip),
        cmocka_unit_test(test_zero_copy),
        cmocka_unit_test(test_empty_batch_and_abort),
        cmocka_unit_test(test_chunked_one_byte),
        cmocka_unit_test(test_chunked_every_split),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_empty_frame),
        cmocka_unit_test(test_shape_errors),
        cmocka_unit_test(test_byte_level_errors),
        cmocka_unit_test(test_record_caps),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_free_null_and_strerror),
    };
    return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
