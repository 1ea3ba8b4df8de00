/*
 * Per-client-address table of the shard (shard/iptable.c): one entry per
 * address, or per IPv6 prefix, holding the per-IP limits' state
 * (WS_IP_RATE's token bucket, WS_IP_MAX_PENDING's count).  Pure: no
 * sockets, no clock (callers pass `now` in monotonic ms), unit-tested in
 * tests/unit/test_iptable.c.
 *
 * Keys: an IPv4 address is its own key; an IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d, what a dual-stack listener reports for IPv4 clients) is
 * the same key as its IPv4 address; any other IPv6 address is keyed by its
 * first WS_IPV6_PREFIX bits (64 by default: one customer's /64 is one
 * client, however many of its 2^64 addresses it uses).
 *
 * Bounded: at most WS_IP_TABLE_MAX entries.  When the table is full a NEW
 * key is refused (IPTABLE_E_FULL; the caller refuses the connection) while
 * existing keys keep working: it fails closed, never open.  Idle entries
 * (bucket full, nothing held) are removed by iptable_sweep, and by
 * iptable_get itself at most once a second when the table is full.
 */
#ifndef ODIN_SHARD_IPTABLE_H
#define ODIN_SHARD_IPTABLE_H

#include <stddef.h>
#include <stdint.h>
#include "common/tbucket.h"
#include "shard/map.h"

#define IPTABLE_FULL_SWEEP_MS 1000  /* a full table sweeps at most this often */

/* The key of an address: 4 bytes (IPv4) or 16 (IPv6, host bits cleared). */
typedef struct iptable_key {
    uint8_t len;
    uint8_t b[16];
} iptable_key;

typedef struct iptable_conf {
    size_t max_entries;     /* WS_IP_TABLE_MAX (>= 1) */
    unsigned v6_prefix;     /* WS_IPV6_PREFIX, 1..128 */
    double rate;            /* WS_IP_RATE per second; <= 0: no rate limit */
    double burst;           /* WS_IP_BURST */
} iptable_conf;

/*
 * One address (or IPv6 prefix).  The per-address state of every per-IP
 * limit lives here: add a field for a new limit, and if a non-zero value
 * must keep the entry from being swept, say so in entry_idle (iptable.c).
 * Entries are owned by the table; a pointer stays valid until the entry is
 * swept (never while it holds anything) or the table freed.
 */
typedef struct iptable_entry {
    shard_map_node node;    /* the table's */
    iptable_key key;
    double tokens;          /* WS_IP_RATE bucket, as of `ms` */
    uint64_t ms;
    uint32_t pending;       /* WS_IP_MAX_PENDING slots held */
    uint32_t channels;      /* WS_IP_MAX_CHANNELS: subscriptions held */
    tbucket reconnects;     /* RESUME_IP_RATE (set up at first use: burst 0
                             * until then); a partly empty one keeps the
                             * entry from being swept */
} iptable_entry;

/* Reasons iptable_get returns NULL. */
enum iptable_err {
    IPTABLE_E_FULL = -2,    /* WS_IP_TABLE_MAX entries: a new key is refused */
    IPTABLE_E_NOMEM = -3
};

typedef struct iptable iptable;

/* A table with a copy of conf.  NULL on ENOMEM. */
iptable *iptable_new(const iptable_conf *conf);
void iptable_free(iptable *t);   /* frees every entry; NULL is a no-op */

/* The key of ip[0..ip_len) (ip_len 4 or 16, network order) under
 * v6_prefix (see above).  Any other ip_len gives a key of length 0. */
void iptable_key_of(const uint8_t *ip, size_t ip_len, unsigned v6_prefix,
                    iptable_key *out);

/*
 * The entry of ip's key, its bucket refilled to now; created (bucket full)
 * if absent.  NULL when it cannot be created, with *err (if non-NULL) set
 * to IPTABLE_E_FULL or IPTABLE_E_NOMEM: the caller refuses the connection
 * (fail closed).  Existing entries are always found.
 */
iptable_entry *iptable_get(iptable *t, const uint8_t *ip, size_t ip_len,
                           uint64_t now, int *err);

/* The entry of ip's key if present, else NULL.  Never creates. */
iptable_entry *iptable_find(const iptable *t, const uint8_t *ip, size_t ip_len);

/* Take one connection token from e (refilled by iptable_get): 1 if taken,
 * 0 if the bucket is empty.  Always 1 when conf.rate <= 0. */
int iptable_rate_take(const iptable *t, iptable_entry *e);

/* Take one of e's `cap` pending slots: 0, or -1 if it holds them all. */
int iptable_pending_take(iptable_entry *e, uint32_t cap);

/* Give back one pending slot of ip's key (no-op if absent or none held). */
void iptable_pending_release(iptable *t, const uint8_t *ip, size_t ip_len);

/* Entries held now. */
size_t iptable_size(const iptable *t);

/* Remove the idle entries (bucket full at `now`, nothing held); all of
 * them if `all`.  Returns how many were removed.  O(entries). */
size_t iptable_sweep(iptable *t, uint64_t now, int all);

#endif
