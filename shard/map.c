#include "shard/map.h"
#include "common/hash.h"

#include <stdlib.h>
#include <string.h>

uint32_t shard_map_hash(const void *key, size_t len)
{
    return hash_bytes(key, len);
}

shard_map_node *shard_map_find(const shard_map *m, const void *key, size_t len)
{
    if (m->nb == 0)
        return NULL;
    uint32_t h = shard_map_hash(key, len);
    for (shard_map_node *n = m->b[h & (m->nb - 1)]; n; n = n->next)
        if (n->hash == h && n->klen == len && memcmp(n->key, key, len) == 0)
            return n;
    return NULL;
}

static int map_grow(shard_map *m)
{
    size_t nb = m->nb ? m->nb * 2 : 16;
    shard_map_node **b = calloc(nb, sizeof(*b));
    if (!b)
        return -1;
    for (size_t i = 0; i < m->nb; i++) {
        shard_map_node *n = m->b[i];
        while (n) {
            shard_map_node *next = n->next;
            size_t j = n->hash & (nb - 1);
            n->next = b[j];
            b[j] = n;
            n = next;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
    return 0;
}

int shard_map_insert(shard_map *m, shard_map_node *node)
{
    if (m->n + 1 > m->nb - m->nb / 4 || m->nb == 0) {
        /* keep load <= 0.75; growing failure is only fatal when empty */
        if (map_grow(m) != 0 && m->nb == 0)
            return -1;
    }
    node->hash = shard_map_hash(node->key, node->klen);
    size_t j = node->hash & (m->nb - 1);
    node->next = m->b[j];
    m->b[j] = node;
    m->n++;
    return 0;
}

void shard_map_remove(shard_map *m, shard_map_node *node)
{
    shard_map_node **pp = &m->b[node->hash & (m->nb - 1)];
    while (*pp && *pp != node)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = node->next;
        node->next = NULL;
        m->n--;
    }
}

shard_map_node *shard_map_next(const shard_map *m, size_t *it,
                               shard_map_node **cur)
{
    /* *cur holds the node to return next within bucket *it - 1. */
    if (*cur) {
        shard_map_node *n = *cur;
        *cur = n->next;
        return n;
    }
    while (*it < m->nb) {
        shard_map_node *n = m->b[(*it)++];
        if (n) {
            *cur = n->next;
            return n;
        }
    }
    return NULL;
}

void shard_map_clear(shard_map *m)
{
    free(m->b);
    m->b = NULL;
    m->nb = 0;
    m->n = 0;
}
