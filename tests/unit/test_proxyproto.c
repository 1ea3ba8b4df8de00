/* shard/proxyproto.c: PROXY protocol v2 header parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include "shard/proxyproto.h"

static const uint8_t sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A,
                                 0x51, 0x55, 0x49, 0x54, 0x0A };

static void test_v4(void **st)
{
    (void)st;
    /* the bytes haproxy sends for 203.0.113.7:51000 -> 10.0.0.2:3002,
     * followed by the HTTP request */
    uint8_t b[64];
    memcpy(b, sig, 12);
    const uint8_t rest[] = { 0x21, 0x11, 0x00, 0x0C, 203, 0, 113, 7, 10, 0, 0, 2,
                             0xC7, 0x38, 0x0B, 0xBA, 'G', 'E', 'T', ' ' };
    memcpy(b + 12, rest, sizeof rest);
    size_t n = 12 + sizeof rest;
    proxyproto_hdr h;
    /* every prefix asks for more */
    for (size_t k = 0; k < 28; k++)
        assert_int_equal(proxyproto_parse(b, k, &h), 0);
    assert_int_equal(proxyproto_parse(b, n, &h), 28);
    assert_int_equal(h.family, AF_INET);
    assert_int_equal(h.local, 0);
    assert_memory_equal(h.src, ((uint8_t[]){ 203, 0, 113, 7 }), 4);
    assert_memory_equal(h.dst, ((uint8_t[]){ 10, 0, 0, 2 }), 4);
    assert_int_equal(h.src_port, 51000);
    assert_int_equal(h.dst_port, 3002);
}

static void test_v6_tlv_local_roundtrip(void **st)
{
    (void)st;
    proxyproto_hdr in, out;
    memset(&in, 0, sizeof in);
    in.family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8::1", in.src);
    inet_pton(AF_INET6, "2001:db8::2", in.dst);
    in.src_port = 1234;
    in.dst_port = 443;
    uint8_t b[128];
    int l = proxyproto_build(&in, b, sizeof b);
    assert_int_equal(l, 16 + 36);
    assert_int_equal(proxyproto_parse(b, (size_t)l, &out), l);
    assert_int_equal(out.family, AF_INET6);
    assert_memory_equal(out.src, in.src, 16);
    assert_int_equal(out.src_port, 1234);

    /* TLVs after the addresses are skipped (length covers them) */
    b[15] = 36 + 7;
    memcpy(b + l, "\x04\x00\x04" "abcd", 7);
    assert_int_equal(proxyproto_parse(b, (size_t)l + 7, &out), l + 7);
    assert_int_equal(proxyproto_parse(b, (size_t)l + 6, &out), 0);

    /* LOCAL (haproxy health checks): no address, keep the peer's */
    memset(&in, 0, sizeof in);
    in.family = AF_UNSPEC;
    l = proxyproto_build(&in, b, sizeof b);
    assert_int_equal(l, 16);
    assert_int_equal(proxyproto_parse(b, 16, &out), 16);
    assert_int_equal(out.local, 1);
    assert_int_equal(out.family, AF_UNSPEC);
    /* LOCAL with an address block still keeps the peer's */
    uint8_t c[28];
    memcpy(c, sig, 12);
    memcpy(c + 12, "\x20\x11\x00\x0c", 4);
    memset(c + 16, 9, 12);
    assert_int_equal(proxyproto_parse(c, 28, &out), 28);
    assert_int_equal(out.family, AF_UNSPEC);
}

static void test_errors(void **st)
{
    (void)st;
    proxyproto_hdr h;
    const char *get = "GET /ws HTTP/1.1\r\n";
    assert_int_equal(proxyproto_parse((const uint8_t *)get, strlen(get), &h),
                     PROXYPROTO_E_NOT_PROXY);
    const char *v1 = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
    assert_int_equal(proxyproto_parse((const uint8_t *)v1, strlen(v1), &h),
                     PROXYPROTO_E_V1);
    assert_int_equal(proxyproto_parse((const uint8_t *)"PROX", 4, &h), 0);
    assert_int_equal(proxyproto_parse((const uint8_t *)"POST", 4, &h),
                     PROXYPROTO_E_NOT_PROXY);
    uint8_t b[1200];
    memset(b, 0, sizeof b);
    memcpy(b, sig, 12);
    memcpy(b + 12, "\x11\x11\x00\x0c", 4);      /* version 1 */
    assert_int_equal(proxyproto_parse(b, 28, &h), PROXYPROTO_E_VERSION);
    memcpy(b + 12, "\x22\x11\x00\x0c", 4);      /* command 2 */
    assert_int_equal(proxyproto_parse(b, 28, &h), PROXYPROTO_E_VERSION);
    memcpy(b + 12, "\x21\x11\x00\x08", 4);      /* INET needs 12 bytes */
    assert_int_equal(proxyproto_parse(b, 28, &h), PROXYPROTO_E_ADDR);
    memcpy(b + 12, "\x21\x21\x00\x0c", 4);      /* INET6 needs 36 */
    assert_int_equal(proxyproto_parse(b, 28, &h), PROXYPROTO_E_ADDR);
    memcpy(b + 12, "\x21\x41\x00\x0c", 4);      /* family 4 */
    assert_int_equal(proxyproto_parse(b, 28, &h), PROXYPROTO_E_ADDR);
    memcpy(b + 12, "\x21\x12\x00\x0c", 4);      /* UDP */
    assert_int_equal(proxyproto_parse(b, 28, &h), PROXYPROTO_E_ADDR);
    memcpy(b + 12, "\x21\x11\xff\xff", 4);      /* 65535: over the cap, decided
                                                 * before any of it arrives */
    assert_int_equal(proxyproto_parse(b, 16, &h), PROXYPROTO_E_TOOBIG);
    /* a corrupted signature */
    b[3] = 'X';
    assert_int_equal(proxyproto_parse(b, 28, &h), PROXYPROTO_E_NOT_PROXY);
}

static void test_sniff(void **st)
{
    (void)st;
    assert_int_equal(proxyproto_sniff((const uint8_t *)"", 0), PROXYPROTO_SNIFF_MAYBE);
    assert_int_equal(proxyproto_sniff(sig, 5), PROXYPROTO_SNIFF_MAYBE);
    assert_int_equal(proxyproto_sniff(sig, 12), PROXYPROTO_SNIFF_V2);
    assert_int_equal(proxyproto_sniff((const uint8_t *)"PROXY TCP4", 10),
                     PROXYPROTO_SNIFF_V1);
    assert_int_equal(proxyproto_sniff((const uint8_t *)"PRO", 3), PROXYPROTO_SNIFF_MAYBE);
    assert_int_equal(proxyproto_sniff((const uint8_t *)"GET /", 5), PROXYPROTO_SNIFF_NO);
    assert_int_equal(proxyproto_sniff((const uint8_t *)"\r\nGET", 5), PROXYPROTO_SNIFF_NO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v4),
        cmocka_unit_test(test_v6_tlv_local_roundtrip),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_sniff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
