/*
 * Intrusive hash map with binary keys (chained, power-of-two buckets).
 *
 * The map never allocates entries: callers embed a shard_map_node in their
 * own struct, point node->key at key bytes that live as long as the node is
 * in the map (usually a flexible array in the same struct), and recover the
 * struct with SHARD_MAP_ENTRY.  Only the bucket array is owned by the map.
 */
#ifndef ODIN_SHARD_MAP_H
#define ODIN_SHARD_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct shard_map_node {
    struct shard_map_node *next;
    const void *key;
    uint32_t klen;
    uint32_t hash;
} shard_map_node;

typedef struct shard_map {
    shard_map_node **b;
    size_t nb;      /* bucket count, power of two (0 before first insert) */
    size_t n;       /* entries */
} shard_map;

#define SHARD_MAP_ENTRY(node, type, member) \
    ((type *)(void *)((char *)(node) - offsetof(type, member)))

/* The seeded SipHash of common/hash.h, exposed so callers can hash
 * composite keys consistently. */
uint32_t shard_map_hash(const void *key, size_t len);

/* Find the node whose key equals key[0..len).  NULL if absent. */
shard_map_node *shard_map_find(const shard_map *m, const void *key, size_t len);

/* Insert `node` (key/klen already set; must not be present).  Returns 0, or
 * -1 on ENOMEM (the map is unchanged). */
int shard_map_insert(shard_map *m, shard_map_node *node);

/* Unlink `node` (must be present).  Never frees anything. */
void shard_map_remove(shard_map *m, shard_map_node *node);

/* Iterate: pass *it = 0 / *cur = NULL initially; returns the next node or
 * NULL at the end.  The current node may be removed during iteration. */
shard_map_node *shard_map_next(const shard_map *m, size_t *it,
                               shard_map_node **cur);

/* Free the bucket array (entries are the caller's).  Leaves an empty map. */
void shard_map_clear(shard_map *m);

#endif
