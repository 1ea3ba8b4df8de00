/* FNV-1a, the one string hash of the project (route cache, shard channel
 * index, offset tracker, router batch dedup).  Not for hostile-input DoS
 * resistance: keys are tokens the operator's producers and clients send,
 * and every table using it is bounded. */
#ifndef ODIN_COMMON_HASH_H
#define ODIN_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_FNV1A_INIT 2166136261u

static inline uint32_t hash_fnv1a_update(uint32_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 16777619u;
    }
    return h;
}

static inline uint32_t hash_fnv1a(const void *p, size_t n)
{
    return hash_fnv1a_update(HASH_FNV1A_INIT, p, n);
}

#endif
