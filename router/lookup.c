/*
 * Route lookup of a batch: arena, miss table, one pipelined SMEMBERS round
 * trip (contract in lookup.h).  Reply callbacks only record results; the
 * owner is called from the zero-delay `ev_done` event or the timeout timer
 * (hiredis 0.14 rules, docs/dependencies.md).
 */
#include "router/lookup.h"
#include "common/schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/hash.h"
#include "common/log.h"

typedef struct miss {
    const char *tok;
    uint32_t len;
    uint32_t hash;
    uint32_t route;         /* arena offset, valid if resolved */
    uint32_t nroute;
    int resolved;
} miss;

struct lookup {
    struct event_base *base;
    redislink *cmd;
    route_cache *cache;
    router_metrics *m;
    lookup_opts opts;
    lookup_callbacks cb;

    /* the batch arena: hits and lookup results */
    uint16_t *arena;
    size_t alen, acap;

    /* misses of the batch, deduplicated */
    miss *miss;
    size_t nmiss;
    uint32_t *mtab, *mtab_gen, mtab_size, mgen;

    /* the round trip */
    int active;
    int failed;             /* 1 failed, LOOKUP_STALE: registry reset */
    size_t nsent, nrecv;
    int epoch_pending;      /* GET epoch sent after the SMEMBERS, no reply yet */
    char epoch[80];         /* expected registry epoch ("" = do not check) */
    uint64_t ticket;        /* route_cache_ticket at send time */
    uint64_t t0_us;
    buf key;                /* scratch: route keys (schema_route_key_buf) */
    char *k_epoch;          /* P epoch (schema_epoch_key) */
    struct event *ev_done, *ev_timeout;
};

static log_ratelimit rl_redis = { .per_sec = 2 };

/* ---- arena --------------------------------------------------------------- */

/* Room for n more slots at the end of the arena.  Returns the place to write
 * them (commit with alen += k), or NULL on ENOMEM.  Never NULL for n = 0
 * once the arena exists (negative entries resolve to an empty range). */
static uint16_t *arena_reserve(lookup *lk, size_t n)
{
    if (lk->alen + n > lk->acap || !lk->arena) {
        size_t cap = lk->acap ? lk->acap : 1024;
        while (cap < lk->alen + n)
            cap *= 2;
        uint16_t *a = realloc(lk->arena, cap * sizeof *a);
        if (!a)
            return NULL;
        lk->arena = a;
        lk->acap = cap;
    }
    return lk->arena + lk->alen;
}

/* Copy v[0..n) to the arena; *off = where it starts.  0 or -1 (ENOMEM). */
static int arena_push(lookup *lk, const uint16_t *v, size_t n, uint32_t *off)
{
    uint16_t *p = arena_reserve(lk, n);
    if (!p)
        return -1;
    *off = (uint32_t)lk->alen;
    if (n)
        memcpy(p, v, n * sizeof *v);
    lk->alen += n;
    return 0;
}

/* ---- misses -------------------------------------------------------------- */

/* Index of the (deduplicated) miss for a token, or -1 if the table is full. */
static int64_t miss_add(lookup *lk, const char *tok, size_t len)
{
    uint32_t h = hash_bytes(tok, len);
    uint32_t mask = lk->mtab_size - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        if (lk->mtab_gen[i] != lk->mgen) {
            if (lk->nmiss >= lk->opts.max_tokens)
                return -1;
            lk->mtab_gen[i] = lk->mgen;
            lk->mtab[i] = (uint32_t)lk->nmiss;
            miss *ms = &lk->miss[lk->nmiss++];
            ms->tok = tok;
            ms->len = (uint32_t)len;
            ms->hash = h;
            ms->route = 0;
            ms->nroute = 0;
            ms->resolved = 0;
            return lk->mtab[i];
        }
        miss *ms = &lk->miss[lk->mtab[i]];
        if (ms->hash == h && ms->len == len && memcmp(ms->tok, tok, len) == 0)
            return lk->mtab[i];
    }
}

void lookup_begin(lookup *lk)
{
    lk->alen = 0;
    lk->nmiss = 0;
    if (++lk->mgen == 0) {
        memset(lk->mtab_gen, 0, lk->mtab_size * sizeof *lk->mtab_gen);
        lk->mgen = 1;
    }
}

int lookup_add(lookup *lk, const char *tok, size_t len, uint64_t now_ms, lookup_ref *ref)
{
    const uint16_t *sl;
    size_t n;
    memset(ref, 0, sizeof *ref);
    if (route_cache_get(lk->cache, tok, len, now_ms, &sl, &n)) {
        if (arena_push(lk, sl, n, &ref->idx) != 0)
            return -1;
        ref->n = (uint32_t)n;
        return 0;
    }
    int64_t i = miss_add(lk, tok, len);
    if (i < 0)
        return -1;
    ref->miss = 1;
    ref->idx = (uint32_t)i;
    return 0;
}

size_t lookup_nmiss(const lookup *lk)
{
    return lk->nmiss;
}

int lookup_active(const lookup *lk)
{
    return lk->active;
}

const uint16_t *lookup_targets(const lookup *lk, lookup_ref ref, size_t *n)
{
    if (!ref.miss) {
        *n = ref.n;
        return lk->arena + ref.idx;
    }
    const miss *ms = &lk->miss[ref.idx];
    *n = ms->resolved ? ms->nroute : 0;
    return lk->arena + ms->route;
}

/* ---- resolving ----------------------------------------------------------- */

/* Resolution of miss i: reserve max slots, add them one by one, finish. */
static uint16_t *resolve_begin(lookup *lk, size_t max)
{
    return arena_reserve(lk, max);
}

static void resolve_slot(lookup *lk, uint16_t *at, size_t *k, const char *id, size_t len)
{
    uint16_t slot;
    if (lk->cb.intern(id, len, &slot, lk->cb.arg) == 0)
        at[(*k)++] = slot;
}

static void resolve_end(lookup *lk, size_t i, size_t k)
{
    miss *ms = &lk->miss[i];
    ms->route = (uint32_t)lk->alen;
    ms->nroute = (uint32_t)k;
    ms->resolved = 1;
    lk->alen += k;
    route_cache_put(lk->cache, ms->tok, ms->len, lk->arena + ms->route, k, lk->ticket,
                    clock_mono_ms());
}

int lookup_resolve(lookup *lk, size_t i, const char *const *ids, const size_t *lens,
                   size_t n)
{
    if (i >= lk->nmiss)
        return -1;
    uint16_t *at = resolve_begin(lk, n);
    if (!at)
        return -1;
    size_t k = 0;
    for (size_t j = 0; j < n; j++)
        resolve_slot(lk, at, &k, ids[j], lens[j]);
    resolve_end(lk, i, k);
    return 0;
}

/* ---- the round trip ------------------------------------------------------ */

static void reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    lookup *lk = privdata;
    if (!lk->active || lk->nrecv >= lk->nsent)
        return;
    size_t i = lk->nrecv++;
    redisReply *rep = reply;
    miss *ms = &lk->miss[i];
    if (!rep) {
        lk->failed = 1;
    } else if (rep->type == REDIS_REPLY_ARRAY) {
        uint16_t *at = resolve_begin(lk, rep->elements);
        if (!at) {
            lk->failed = 1;
        } else {
            size_t k = 0;
            for (size_t e = 0; e < rep->elements; e++)
                if (rep->element[e]->type == REDIS_REPLY_STRING)
                    resolve_slot(lk, at, &k, rep->element[e]->str,
                                 (size_t)rep->element[e]->len);
            resolve_end(lk, i, k);
        }
    } else {
        /* e.g. WRONGTYPE: nobody can be subscribed through a broken key */
        uint64_t sup;
        if (log_rl_allow(&rl_redis, &sup))
            log_kv(LOG_WARN, "route lookup error", "S:token", ms->tok, (size_t)ms->len,
                   "s:error", rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply",
                   "u:suppressed", sup, NULL);
        ms->resolved = 1;
        ms->nroute = 0;
    }
    if (lk->nrecv == lk->nsent && !lk->epoch_pending)
        event_active(lk->ev_done, EV_TIMEOUT, 0);
}

/* The epoch read after every SMEMBERS of the round trip: unchanged means no
 * reset happened before those SMEMBERS ran (a reset deletes it; whoever
 * recreates it picks a new value). */
static void epoch_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    lookup *lk = privdata;
    if (!lk->active || !lk->epoch_pending)
        return;
    lk->epoch_pending = 0;
    redisReply *rep = reply;
    if (!rep)
        lk->failed = 1;
    else if (!lk->failed && (rep->type != REDIS_REPLY_STRING ||
                             strcmp(rep->str, lk->epoch) != 0))
        lk->failed = LOOKUP_STALE;
    if (lk->nrecv == lk->nsent)
        event_active(lk->ev_done, EV_TIMEOUT, 0);
}

void lookup_set_epoch(lookup *lk, const char *epoch)
{
    snprintf(lk->epoch, sizeof lk->epoch, "%s", epoch ? epoch : "");
}

static void end(lookup *lk, int failed)
{
    lk->active = 0;
    evtimer_del(lk->ev_timeout);
    double secs = (double)(clock_mono_us() - lk->t0_us) / 1e6;
    prom_hist_observe(&lk->m->lookup_seconds, secs);
    lk->m->redis_lookups++;
    if (failed == 1)
        lk->m->redis_lookup_failures++;
    lk->cb.done(failed, lk->cb.arg);
}

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
    lookup *lk = arg;
    if (!lk->active)
        return;
    if (lk->failed == LOOKUP_STALE)
        log_kv(LOG_WARN, "redis registry was reset during a route lookup; "
               "holding the batch", NULL);
    else if (lk->failed)
        log_kv(LOG_WARN, "route lookup failed; batch sent in fallback mode", NULL);
    end(lk, lk->failed);
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    lookup *lk = arg;
    if (!lk->active)
        return;
    if (redislink_input_pending(lk->cmd)) {
        /* the replies are there, this loop was late to read them
         * (redislink.h): look again once it has */
        struct timeval tv = { 0, REDISLINK_LATE_RECHECK_MS * 1000 };
        evtimer_add(lk->ev_timeout, &tv);
        return;
    }
    log_kv(LOG_WARN, "route lookup timed out; batch sent in fallback mode",
           "i:timeout_ms", (int)lk->opts.timeout_ms, NULL);
    lk->active = 0;    /* the NULL replies the drop produces are ignored */
    redislink_drop(lk->cmd, "lookup timeout");
    end(lk, 1);
}

int lookup_send(lookup *lk)
{
    redisAsyncContext *ac = lk->cmd ? redislink_ctx(lk->cmd) : NULL;
    if (!ac || !lk->ev_done || lk->nmiss == 0)
        return -1;
    lk->active = 1;
    lk->failed = 0;
    lk->nrecv = 0;
    lk->nsent = 0;
    lk->epoch_pending = 0;
    lk->ticket = route_cache_ticket(lk->cache);
    lk->t0_us = clock_mono_us();
    for (size_t i = 0; i < lk->nmiss; i++) {
        const char *key = schema_route_key_buf(&lk->key, lk->opts.redis_prefix,
                                               lk->miss[i].tok, lk->miss[i].len);
        const char *argv[2] = { "SMEMBERS", key };
        size_t lens[2] = { 8, lk->key.len };
        if (!key || redisAsyncCommandArgv(ac, reply_cb, lk, 2, argv, lens) != REDIS_OK) {
            lk->failed = 1;
            break;
        }
        lk->nsent++;
    }
    if (lk->nsent == 0) {
        lk->active = 0;
        return -1;
    }
    if (lk->epoch[0]) {
        const char *key = lk->k_epoch;
        const char *argv[2] = { "GET", key };
        size_t lens[2] = { 3, strlen(key) };
        if (key && redisAsyncCommandArgv(ac, epoch_cb, lk, 2, argv, lens) == REDIS_OK)
            lk->epoch_pending = 1;
        else
            lk->failed = 1;
    }
    long ms = lk->opts.timeout_ms;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(lk->ev_timeout, &tv);
    return 0;
}

/* ---- lifecycle ----------------------------------------------------------- */

lookup *lookup_new(struct event_base *base, redislink *cmd, route_cache *cache,
                   router_metrics *m, const lookup_opts *opts,
                   const lookup_callbacks *cb)
{
    lookup *lk = calloc(1, sizeof *lk);
    if (!lk)
        return NULL;
    lk->base = base;
    lk->cmd = cmd;
    lk->cache = cache;
    lk->m = m;
    lk->opts = *opts;
    lk->cb = *cb;
    size_t n = opts->max_tokens ? opts->max_tokens : 1;
    lk->opts.max_tokens = n;
    lk->miss = calloc(n, sizeof *lk->miss);
    lk->mtab_size = 16;
    while (lk->mtab_size < n * 2)
        lk->mtab_size *= 2;
    lk->mtab = calloc(lk->mtab_size, sizeof *lk->mtab);
    lk->mtab_gen = calloc(lk->mtab_size, sizeof *lk->mtab_gen);
    lk->k_epoch = schema_epoch_key(lk->opts.redis_prefix);
    if (!lk->miss || !lk->mtab || !lk->mtab_gen || !lk->k_epoch)
        goto err;
    if (base) {
        lk->ev_done = event_new(base, -1, 0, done_cb, lk);
        lk->ev_timeout = evtimer_new(base, timeout_cb, lk);
        if (!lk->ev_done || !lk->ev_timeout)
            goto err;
    }
    return lk;
err:
    lookup_free(lk);
    return NULL;
}

void lookup_free(lookup *lk)
{
    if (!lk)
        return;
    lk->active = 0;
    if (lk->ev_done)
        event_free(lk->ev_done);
    if (lk->ev_timeout)
        event_free(lk->ev_timeout);
    free(lk->miss);
    free(lk->mtab);
    free(lk->mtab_gen);
    free(lk->arena);
    buf_free(&lk->key);
    free(lk->k_epoch);
    free(lk);
}
