/* common/hash.c: SipHash-1-3 against OpenSSL's independent implementation,
 * the per-process seed, and the seed actually keying the hash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "common/hash.h"

static uint64_t openssl_siphash13(const uint8_t key[16], const void *p, size_t n)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
    assert_non_null(mac);
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    assert_non_null(ctx);
    size_t size = 8;
    unsigned int c = 1, d = 3;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
        OSSL_PARAM_construct_uint(OSSL_MAC_PARAM_C_ROUNDS, &c),
        OSSL_PARAM_construct_uint(OSSL_MAC_PARAM_D_ROUNDS, &d),
        OSSL_PARAM_construct_end(),
    };
    assert_int_equal(EVP_MAC_init(ctx, key, 16, params), 1);
    assert_int_equal(EVP_MAC_update(ctx, p, n), 1);
    unsigned char out[8];
    size_t outl = 0;
    assert_int_equal(EVP_MAC_final(ctx, out, &outl, sizeof out), 1);
    assert_int_equal(outl, 8);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | out[i];   /* little-endian output */
    return v;
}

static void test_matches_openssl(void **st)
{
    (void)st;
    uint8_t key[16], msg[200];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)(i * 37 + 11);
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)(i * 7 + 3);
    /* every tail length, and several block counts */
    for (size_t n = 0; n <= sizeof msg; n++)
        assert_true(hash_siphash13(key, msg, n) == openssl_siphash13(key, msg, n));
    key[15] ^= 0x80;
    assert_true(hash_siphash13(key, msg, 64) == openssl_siphash13(key, msg, 64));
}

static void test_seed_keys_the_hash(void **st)
{
    (void)st;
    uint8_t a[16] = { 1 }, b[16] = { 2 };
    hash_set_seed(a);
    uint64_t ha = hash_bytes64("BTC.trade", 9);
    assert_true(ha == hash_siphash13(a, "BTC.trade", 9));
    assert_int_equal(hash_bytes("BTC.trade", 9), (uint32_t)(ha ^ (ha >> 32)));
    hash_set_seed(b);
    assert_true(hash_bytes64("BTC.trade", 9) != ha);
    /* same seed, same hash: a pure function */
    hash_set_seed(a);
    assert_true(hash_bytes64("BTC.trade", 9) == ha);
}

int main(void)
{
    /* The constructor drew a random seed before main(): it is not all zero
     * (the chance of that is 2^-128), and hashing under it is not the
     * zero-key hash. */
    uint8_t zero[16] = { 0 };
    if (hash_bytes64("x", 1) == hash_siphash13(zero, "x", 1))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_openssl),
        cmocka_unit_test(test_seed_keys_the_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
