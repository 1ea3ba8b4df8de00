/* Per-client-address table (contract in iptable.h). */
#include "shard/iptable.h"

#include <stdlib.h>
#include <string.h>

struct iptable {
    iptable_conf conf;
    shard_map map;
    uint64_t last_full_sweep_ms;
    int swept_full;              /* last_full_sweep_ms is set */
};

static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

void iptable_key_of(const uint8_t *ip, size_t ip_len, unsigned v6_prefix,
                    iptable_key *out)
{
    memset(out, 0, sizeof *out);
    if (ip_len == 4) {
        out->len = 4;
        memcpy(out->b, ip, 4);
    } else if (ip_len == 16 && memcmp(ip, v4mapped, 12) == 0) {
        out->len = 4;
        memcpy(out->b, ip + 12, 4);
    } else if (ip_len == 16) {
        unsigned bits = v6_prefix > 128 ? 128 : v6_prefix;
        out->len = 16;
        memcpy(out->b, ip, bits / 8);
        if (bits % 8)
            out->b[bits / 8] = (uint8_t)(ip[bits / 8] & (0xffu << (8 - bits % 8)));
    }
}

iptable *iptable_new(const iptable_conf *conf)
{
    iptable *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->conf = *conf;
    if (t->conf.max_entries < 1)
        t->conf.max_entries = 1;
    return t;
}

void iptable_free(iptable *t)
{
    if (!t)
        return;
    iptable_sweep(t, 0, 1);
    shard_map_clear(&t->map);
    free(t);
}

static void refill(const iptable *t, iptable_entry *e, uint64_t now)
{
    if (t->conf.rate <= 0 || now <= e->ms) {
        if (now > e->ms)
            e->ms = now;
        return;
    }
    e->tokens += (double)(now - e->ms) * t->conf.rate / 1000.0;
    if (e->tokens > t->conf.burst)
        e->tokens = t->conf.burst;
    e->ms = now;
}

/* 1 if e holds nothing and its bucket is full at `now`, else 0.  A new
 * per-address field that must keep its entry goes here. */
static int entry_idle(const iptable *t, const iptable_entry *e, uint64_t now)
{
    if (e->pending || e->channels)
        return 0;
    if (e->reconnects.burst > 0 && !tbucket_full(&e->reconnects, now))
        return 0;
    if (t->conf.rate <= 0)
        return 1;
    double tk = e->tokens;
    if (now > e->ms)
        tk += (double)(now - e->ms) * t->conf.rate / 1000.0;
    return tk >= t->conf.burst;
}

iptable_entry *iptable_find(const iptable *t, const uint8_t *ip, size_t ip_len)
{
    iptable_key k;
    iptable_key_of(ip, ip_len, t->conf.v6_prefix, &k);
    shard_map_node *n = shard_map_find(&t->map, k.b, k.len);
    return n ? SHARD_MAP_ENTRY(n, iptable_entry, node) : NULL;
}

iptable_entry *iptable_get(iptable *t, const uint8_t *ip, size_t ip_len,
                           uint64_t now, int *err)
{
    iptable_key k;
    iptable_key_of(ip, ip_len, t->conf.v6_prefix, &k);
    shard_map_node *n = shard_map_find(&t->map, k.b, k.len);
    if (n) {
        iptable_entry *e = SHARD_MAP_ENTRY(n, iptable_entry, node);
        refill(t, e, now);
        return e;
    }
    if (t->map.n >= t->conf.max_entries &&
        (!t->swept_full || now - t->last_full_sweep_ms >= IPTABLE_FULL_SWEEP_MS)) {
        /* full: make room from idle entries first, at a bounded rate (the
         * sweep walks the whole table) */
        t->swept_full = 1;
        t->last_full_sweep_ms = now;
        iptable_sweep(t, now, 0);
    }
    if (t->map.n >= t->conf.max_entries) {
        if (err)
            *err = IPTABLE_E_FULL;
        return NULL;
    }
    iptable_entry *e = calloc(1, sizeof *e);
    if (!e) {
        if (err)
            *err = IPTABLE_E_NOMEM;
        return NULL;
    }
    e->key = k;
    e->node.key = e->key.b;
    e->node.klen = e->key.len;
    e->tokens = t->conf.burst;
    e->ms = now;
    if (shard_map_insert(&t->map, &e->node) != 0) {
        free(e);
        if (err)
            *err = IPTABLE_E_NOMEM;
        return NULL;
    }
    return e;
}

int iptable_rate_take(const iptable *t, iptable_entry *e)
{
    if (t->conf.rate <= 0)
        return 1;
    if (e->tokens < 1.0)
        return 0;
    e->tokens -= 1.0;
    return 1;
}

int iptable_pending_take(iptable_entry *e, uint32_t cap)
{
    if (e->pending >= cap)
        return -1;
    e->pending++;
    return 0;
}

void iptable_pending_release(iptable *t, const uint8_t *ip, size_t ip_len)
{
    iptable_entry *e = iptable_find(t, ip, ip_len);
    if (e && e->pending)
        e->pending--;
}

size_t iptable_size(const iptable *t)
{
    return t->map.n;
}

size_t iptable_sweep(iptable *t, uint64_t now, int all)
{
    size_t it = 0, removed = 0;
    shard_map_node *cur = NULL, *n;
    while ((n = shard_map_next(&t->map, &it, &cur))) {
        iptable_entry *e = SHARD_MAP_ENTRY(n, iptable_entry, node);
        if (all || entry_idle(t, e, now)) {
            shard_map_remove(&t->map, n);
            free(e);
            removed++;
        }
    }
    return removed;
}
