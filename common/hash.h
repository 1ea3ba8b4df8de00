/*
 * The one string hash of the project: SipHash-1-3 (Aumasson & Bernstein),
 * keyed with a random 128-bit seed drawn once per process, as Redis does
 * with siphash.c + dictSetHashFunctionSeed.  Every table keyed by strings
 * that clients, producers or peers choose (shard channel index, per-IP
 * table, registry map, route cache, offset tracker, batch dedup) uses it,
 * so collisions cannot be computed offline.
 *
 * hash_bytes() is a pure function of (seed, bytes): no allocation, no I/O.
 * The seed is drawn from getrandom() by a constructor before main(); tests
 * and fuzzers that need fixed hashes call hash_set_seed().
 */
#ifndef ODIN_COMMON_HASH_H
#define ODIN_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_SEED_LEN 16

/* SipHash-1-3 of p[0..n) under the process seed, 64 bits. */
uint64_t hash_bytes64(const void *p, size_t n);

/* The same, folded to 32 bits for bucket indexes. */
static inline uint32_t hash_bytes(const void *p, size_t n)
{
    uint64_t h = hash_bytes64(p, n);
    return (uint32_t)(h ^ (h >> 32));
}

/* SipHash-1-3 under an explicit 16-byte key (for tests). */
uint64_t hash_siphash13(const uint8_t key[HASH_SEED_LEN], const void *p, size_t n);

/* Replace the process seed (tests, fuzzers).  Tables built before the call
 * must be rebuilt: their stored hashes no longer match. */
void hash_set_seed(const uint8_t seed[HASH_SEED_LEN]);

#endif
