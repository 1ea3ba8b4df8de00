#include "router/cache.h"
#include "common/hash.h"

#include <stdlib.h>
#include <string.h>

#define NIL UINT32_MAX
#define INLINE_SHARDS 8u
/* Recent invalidations remembered for the fill race (power of two). */
#define INVAL_RING 1024u

typedef struct entry {
    uint32_t hnext;          /* hash chain / free list */
    uint32_t prev, next;     /* LRU list, head = most recent */
    uint32_t hash;
    uint64_t expires_ms;     /* 0 = never */
    uint16_t nshards;
    uint8_t tlen;
    uint8_t used;
    char token[ROUTE_CACHE_MAX_TOKEN];
    uint16_t inl[INLINE_SHARDS];
    uint16_t *ext;           /* heap list when nshards > INLINE_SHARDS */
} entry;

struct route_cache {
    entry *e;
    size_t cap, count;
    uint32_t *buckets;
    uint32_t nbuckets;       /* power of two */
    uint32_t free_head;
    uint32_t lru_head, lru_tail;
    uint64_t ttl_ms;
    uint64_t seq;            /* bumped by every invalidate / flush */
    uint64_t flush_seq;
    struct { uint64_t seq; uint32_t hash; } ring[INVAL_RING];
    route_cache_stats st;
};

static uint32_t hash_tok(const char *p, size_t n)
{
    return hash_bytes(p, n);
}

route_cache *route_cache_new(size_t capacity, uint64_t ttl_ms)
{
    if (capacity == 0 || capacity > (NIL / 4))
        return NULL;
    route_cache *c = calloc(1, sizeof *c);
    if (!c)
        goto err;
    c->cap = capacity;
    c->ttl_ms = ttl_ms;
    c->e = calloc(capacity, sizeof *c->e);
    if (!c->e)
        goto err;
    uint32_t nb = 16;
    while (nb < capacity * 2)
        nb *= 2;
    c->nbuckets = nb;
    c->buckets = malloc((size_t)nb * sizeof *c->buckets);
    if (!c->buckets)
        goto err;
    memset(c->buckets, 0xff, (size_t)nb * sizeof *c->buckets);
    for (size_t i = 0; i < capacity; i++)
        c->e[i].hnext = i + 1 < capacity ? (uint32_t)(i + 1) : NIL;
    c->free_head = 0;
    c->lru_head = c->lru_tail = NIL;
    return c;
err:
    route_cache_free(c);
    return NULL;
}

void route_cache_free(route_cache *c)
{
    if (!c)
        return;
    if (c->e)
        for (size_t i = 0; i < c->cap; i++)
            free(c->e[i].ext);
    free(c->e);
    free(c->buckets);
    free(c);
}

static void lru_unlink(route_cache *c, uint32_t i)
{
    entry *x = &c->e[i];
    if (x->prev != NIL) c->e[x->prev].next = x->next; else c->lru_head = x->next;
    if (x->next != NIL) c->e[x->next].prev = x->prev; else c->lru_tail = x->prev;
    x->prev = x->next = NIL;
}

static void lru_push_front(route_cache *c, uint32_t i)
{
    entry *x = &c->e[i];
    x->prev = NIL;
    x->next = c->lru_head;
    if (c->lru_head != NIL)
        c->e[c->lru_head].prev = i;
    c->lru_head = i;
    if (c->lru_tail == NIL)
        c->lru_tail = i;
}

/* Index of the entry for token, or NIL; *link points at the reference to it
 * (bucket head or predecessor's hnext) for unlinking. */
static uint32_t find(route_cache *c, const char *tok, size_t len, uint32_t h,
                     uint32_t **link)
{
    uint32_t *l = &c->buckets[h & (c->nbuckets - 1)];
    while (*l != NIL) {
        entry *x = &c->e[*l];
        if (x->hash == h && x->tlen == len && memcmp(x->token, tok, len) == 0) {
            if (link)
                *link = l;
            return *l;
        }
        l = &x->hnext;
    }
    return NIL;
}

static void remove_at(route_cache *c, uint32_t *link)
{
    uint32_t i = *link;
    entry *x = &c->e[i];
    *link = x->hnext;
    lru_unlink(c, i);
    free(x->ext);
    x->ext = NULL;
    x->used = 0;
    x->nshards = 0;
    x->hnext = c->free_head;
    c->free_head = i;
    c->count--;
}

static void remove_entry(route_cache *c, uint32_t i)
{
    entry *x = &c->e[i];
    uint32_t *link = NULL;
    if (find(c, x->token, x->tlen, x->hash, &link) == i)
        remove_at(c, link);
}

int route_cache_get(route_cache *c, const char *tok, size_t len, uint64_t now_ms,
                    const uint16_t **shards, size_t *n)
{
    if (len == 0 || len > ROUTE_CACHE_MAX_TOKEN) {
        c->st.misses++;
        return 0;
    }
    uint32_t h = hash_tok(tok, len);
    uint32_t *link = NULL;
    uint32_t i = find(c, tok, len, h, &link);
    if (i == NIL) {
        c->st.misses++;
        return 0;
    }
    entry *x = &c->e[i];
    if (x->expires_ms && now_ms >= x->expires_ms) {
        remove_at(c, link);
        c->st.expirations++;
        c->st.misses++;
        return 0;
    }
    if (c->lru_head != i) {
        lru_unlink(c, i);
        lru_push_front(c, i);
    }
    c->st.hits++;
    *n = x->nshards;
    *shards = x->nshards > INLINE_SHARDS ? x->ext : x->inl;
    return 1;
}

uint64_t route_cache_ticket(const route_cache *c) { return c->seq; }

/* 1 if token hash h may have been invalidated after ticket. */
static int stale(const route_cache *c, uint32_t h, uint64_t ticket)
{
    if (ticket < c->flush_seq || ticket > c->seq)
        return 1;
    if (c->seq - ticket >= INVAL_RING)
        return 1;
    for (uint64_t s = ticket + 1; s <= c->seq; s++)
        if (c->ring[s & (INVAL_RING - 1)].seq == s &&
            c->ring[s & (INVAL_RING - 1)].hash == h)
            return 1;
    return 0;
}

int route_cache_put(route_cache *c, const char *tok, size_t len,
                    const uint16_t *shards, size_t n, uint64_t ticket,
                    uint64_t now_ms)
{
    if (len == 0 || len > ROUTE_CACHE_MAX_TOKEN || n > ROUTE_CACHE_MAX_SHARDS ||
        (n && !shards))
        return -1;
    uint32_t h = hash_tok(tok, len);
    if (stale(c, h, ticket)) {
        c->st.stale_puts++;
        return 1;
    }
    uint16_t *ext = NULL;
    if (n > INLINE_SHARDS) {
        ext = malloc(n * sizeof *ext);
        if (!ext)
            return -1;
        memcpy(ext, shards, n * sizeof *ext);
    }
    uint32_t *link = NULL;
    uint32_t i = find(c, tok, len, h, &link);
    if (i != NIL) {
        remove_at(c, link);
    } else if (c->free_head == NIL) {
        remove_entry(c, c->lru_tail);
        c->st.evictions++;
    }
    i = c->free_head;
    entry *x = &c->e[i];
    c->free_head = x->hnext;
    x->hash = h;
    x->tlen = (uint8_t)len;
    memcpy(x->token, tok, len);
    x->nshards = (uint16_t)n;
    x->ext = ext;
    if (n && !ext)
        memcpy(x->inl, shards, n * sizeof *shards);
    x->expires_ms = c->ttl_ms ? now_ms + c->ttl_ms : 0;
    x->used = 1;
    uint32_t *b = &c->buckets[h & (c->nbuckets - 1)];
    x->hnext = *b;
    *b = i;
    lru_push_front(c, i);
    c->count++;
    return 0;
}

int route_cache_invalidate(route_cache *c, const char *tok, size_t len)
{
    uint32_t h = hash_tok(tok, len);
    c->seq++;
    c->ring[c->seq & (INVAL_RING - 1)].seq = c->seq;
    c->ring[c->seq & (INVAL_RING - 1)].hash = h;
    if (len == 0 || len > ROUTE_CACHE_MAX_TOKEN)
        return 0;
    uint32_t *link = NULL;
    if (find(c, tok, len, h, &link) == NIL)
        return 0;
    remove_at(c, link);
    c->st.invalidations++;
    return 1;
}

void route_cache_flush(route_cache *c)
{
    while (c->lru_head != NIL)
        remove_entry(c, c->lru_head);
    c->seq++;
    c->flush_seq = c->seq;
    c->st.flushes++;
}

size_t route_cache_count(const route_cache *c) { return c->count; }
size_t route_cache_capacity(const route_cache *c) { return c->cap; }
const route_cache_stats *route_cache_get_stats(const route_cache *c) { return &c->st; }
