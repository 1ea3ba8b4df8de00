/* SipHash-1-3, written from the reference description (Aumasson &
 * Bernstein, "SipHash: a fast short-input PRF", 2012) the way Redis's
 * siphash.c does it.  Checked against OpenSSL's EVP_MAC "SIPHASH" with
 * c-rounds=1, d-rounds=3 in tests/unit/test_hash.c.  Hand-written because
 * OpenSSL's MAC API costs an EVP context per call, too slow for a bucket
 * index computed for every record and every channel lookup. */
#include "common/hash.h"

#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static uint8_t seed[HASH_SEED_LEN];

static inline uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static inline uint64_t le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

#define SIPROUND                                                                 \
    do {                                                                         \
        v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);               \
        v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                                   \
        v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                                   \
        v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);               \
    } while (0)

uint64_t hash_siphash13(const uint8_t key[HASH_SEED_LEN], const void *p, size_t n)
{
    const uint8_t *in = p;
    uint64_t k0 = le64(key), k1 = le64(key + 8);
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
    uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
    uint64_t v3 = 0x7465646279746573ULL ^ k1;
    const uint8_t *end = in + (n & ~(size_t)7);
    for (; in != end; in += 8) {
        uint64_t m = le64(in);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)n << 56;
    switch (n & 7) {
    case 7: b |= (uint64_t)in[6] << 48; /* fall through */
    case 6: b |= (uint64_t)in[5] << 40; /* fall through */
    case 5: b |= (uint64_t)in[4] << 32; /* fall through */
    case 4: b |= (uint64_t)in[3] << 24; /* fall through */
    case 3: b |= (uint64_t)in[2] << 16; /* fall through */
    case 2: b |= (uint64_t)in[1] << 8;  /* fall through */
    case 1: b |= (uint64_t)in[0]; break;
    case 0: break;
    }
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t hash_bytes64(const void *p, size_t n)
{
    return hash_siphash13(seed, p, n);
}

void hash_set_seed(const uint8_t s[HASH_SEED_LEN])
{
    memcpy(seed, s, HASH_SEED_LEN);
}

/* Before main(): no table exists yet, and no thread. */
__attribute__((constructor)) static void hash_seed_init(void)
{
    size_t got = 0;
    while (got < sizeof seed) {
        ssize_t r = getrandom(seed + got, sizeof seed - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (got < sizeof seed) {
        /* no getrandom (very old kernel): still per-process, not secret */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t mix[2] = { (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32),
                            (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&ts };
        memcpy(seed, mix, sizeof seed);
    }
}
