#include "router/offsets.h"
#include "common/hash.h"

#include <stdlib.h>
#include <string.h>

typedef struct seg {
    int64_t last;
    int done;
} seg;

typedef struct tpart {
    char *topic;
    int32_t partition;
    uint32_t gen;
    int dirty;             /* position advanced since last collect */
    int64_t position;      /* next offset to consume, -1 = none yet */
    uint64_t head_seq;     /* seq of ring[head] */
    seg *ring;
    size_t cap, head, count;
    int hnext;             /* hash chain */
} tpart;

#define NBUCKETS 256u

struct router_offsets {
    tpart *tp;
    size_t n, cap;
    int buckets[NBUCKETS];
    size_t pending;
};

static uint32_t tp_hash(const char *topic, int32_t partition)
{
    uint32_t h = hash_bytes(topic, strlen(topic));
    h ^= (uint32_t)partition;
    h *= 16777619u;
    return h & (NBUCKETS - 1);
}

router_offsets *router_offsets_new(void)
{
    router_offsets *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    for (size_t i = 0; i < NBUCKETS; i++)
        t->buckets[i] = -1;
    return t;
}

void router_offsets_free(router_offsets *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->tp[i].topic);
        free(t->tp[i].ring);
    }
    free(t->tp);
    free(t);
}

static int find_tp(const router_offsets *t, const char *topic, int32_t partition)
{
    for (int i = t->buckets[tp_hash(topic, partition)]; i >= 0; i = t->tp[i].hnext)
        if (t->tp[i].partition == partition && strcmp(t->tp[i].topic, topic) == 0)
            return i;
    return -1;
}

int router_offsets_tp(router_offsets *t, const char *topic, int32_t partition)
{
    int i = find_tp(t, topic, partition);
    if (i >= 0)
        return i;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        tpart *p = realloc(t->tp, cap * sizeof *p);
        if (!p)
            return -1;
        t->tp = p;
        t->cap = cap;
    }
    tpart *x = &t->tp[t->n];
    memset(x, 0, sizeof *x);
    x->topic = strdup(topic);
    if (!x->topic)
        return -1;
    x->partition = partition;
    x->position = -1;
    uint32_t b = tp_hash(topic, partition);
    x->hnext = t->buckets[b];
    t->buckets[b] = (int)t->n;
    return (int)t->n++;
}

int router_offsets_add(router_offsets *t, int tp, int64_t first, int64_t last,
                       router_offsets_seg *out)
{
    if (tp < 0 || (size_t)tp >= t->n || first > last)
        return -1;
    tpart *x = &t->tp[tp];
    if (x->count == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 16;
        seg *r = malloc(cap * sizeof *r);
        if (!r)
            return -1;
        for (size_t i = 0; i < x->count; i++)
            r[i] = x->ring[(x->head + i) % x->cap];
        free(x->ring);
        x->ring = r;
        x->cap = cap;
        x->head = 0;
    }
    x->ring[(x->head + x->count) % x->cap] = (seg){ .last = last, .done = 0 };
    out->tp = (uint32_t)tp;
    out->gen = x->gen;
    out->seq = x->head_seq + x->count;
    x->count++;
    t->pending++;
    return 0;
}

void router_offsets_done(router_offsets *t, router_offsets_seg s)
{
    if (s.tp >= t->n)
        return;
    tpart *x = &t->tp[s.tp];
    if (s.gen != x->gen || s.seq < x->head_seq || s.seq >= x->head_seq + x->count)
        return;
    x->ring[(x->head + (size_t)(s.seq - x->head_seq)) % x->cap].done = 1;
    while (x->count && x->ring[x->head].done) {
        x->position = x->ring[x->head].last + 1;
        x->head = (x->head + 1) % x->cap;
        x->head_seq++;
        x->count--;
        t->pending--;
        x->dirty = 1;
    }
}

size_t router_offsets_collect(router_offsets *t, router_offsets_cb cb, void *arg)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++) {
        tpart *x = &t->tp[i];
        if (!x->dirty)
            continue;
        x->dirty = 0;
        cb(x->topic, x->partition, x->position, arg);
        n++;
    }
    return n;
}

int64_t router_offsets_position(const router_offsets *t, const char *topic,
                                int32_t partition)
{
    int i = find_tp(t, topic, partition);
    return i < 0 ? -1 : t->tp[i].position;
}

static void reset_tp(router_offsets *t, tpart *x)
{
    t->pending -= x->count;
    x->head_seq += x->count;
    x->count = 0;
    x->head = 0;
    x->gen++;
    x->dirty = 0;
    x->position = -1;
}

void router_offsets_reset(router_offsets *t, const char *topic, int32_t partition)
{
    int i = find_tp(t, topic, partition);
    if (i >= 0)
        reset_tp(t, &t->tp[i]);
}

void router_offsets_reset_all(router_offsets *t)
{
    for (size_t i = 0; i < t->n; i++)
        reset_tp(t, &t->tp[i]);
}

size_t router_offsets_pending(const router_offsets *t) { return t->pending; }
