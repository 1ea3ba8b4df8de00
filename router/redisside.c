/*
 * Everything the router does with Redis: the pipelined route lookup of a
 * batch's cache misses, the odin:routes subscription (cache invalidation,
 * shard events), and shard discovery from the leases (plus the dead-shard
 * sweep).  Two connections: `cmd` for commands, `sub` in subscribed mode.
 * Reply callbacks only record results; work that could re-enter hiredis is
 * done from libevent events (hiredis 0.14 rules, LIBRARIES.md).
 */
#include "router/router_int.h"

#include <string.h>

#include <hiredis/hiredis.h>

#include "common/clock.h"
#include "common/schema.h"

static const char *key_of(router *r, const char *suffix, const char *a, size_t alen)
{
    buf_reset(&r->key);
    if (buf_append(&r->key, r->cfg->redis_prefix, strlen(r->cfg->redis_prefix)) != 0 ||
        buf_append(&r->key, suffix, strlen(suffix)) != 0 ||
        (alen && buf_append(&r->key, a, alen) != 0) || buf_reserve(&r->key, 1) != 0)
        return NULL;
    r->key.data[r->key.len] = '\0';
    return r->key.data;
}

/* ---- lookup ------------------------------------------------------------------ */

static log_ratelimit rl_redis = { .per_sec = 2 };

static void lookup_reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    router *r = privdata;
    if (!r->lk.active || r->lk.nrecv >= r->lk.nsent)
        return;
    size_t i = r->lk.nrecv++;
    redisReply *rep = reply;
    router_miss *ms = &r->miss[i];
    if (!rep) {
        r->lk.failed = 1;
    } else if (rep->type == REDIS_REPLY_ARRAY) {
        size_t n = 0;
        if (r->alen + rep->elements > r->acap) {
            size_t cap = r->acap ? r->acap : 1024;
            while (cap < r->alen + rep->elements)
                cap *= 2;
            uint16_t *a = realloc(r->arena, cap * sizeof *a);
            if (!a) {
                r->lk.failed = 1;
                goto out;
            }
            r->arena = a;
            r->acap = cap;
        }
        ms->route = (uint32_t)r->alen;
        for (size_t k = 0; k < rep->elements; k++) {
            redisReply *e = rep->element[k];
            if (e->type != REDIS_REPLY_STRING)
                continue;
            router_shard *sh = router_shards_intern(r->shards, e->str, (size_t)e->len);
            if (sh)
                r->arena[r->alen + n++] = sh->slot;
        }
        r->alen += n;
        ms->nroute = (uint32_t)n;
        ms->resolved = 1;
        route_cache_put(r->cache, ms->tok, ms->len, r->arena + ms->route, n,
                        r->lk.ticket, clock_mono_ms());
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
out:
    if (r->lk.nrecv == r->lk.nsent)
        event_active(r->ev_lookup_done, EV_TIMEOUT, 0);
}

static void lookup_end(router *r, int failed)
{
    r->lk.active = 0;
    evtimer_del(r->ev_lookup_timeout);
    double secs = (double)(clock_mono_us() - r->lk.t0_us) / 1e6;
    router_hist_observe(&r->m.lookup_seconds, secs);
    r->m.redis_lookups++;
    if (failed)
        r->m.redis_lookup_failures++;
    router_lookup_finished(r, failed);
}

static void lookup_done_cb(evutil_socket_t fd, short what, void *arg)
{
    router *r = arg;
    if (!r->lk.active)
        return;
    if (r->lk.failed)
        log_kv(LOG_WARN, "route lookup failed; batch sent in fallback mode", NULL);
    lookup_end(r, r->lk.failed);
}

static void lookup_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    router *r = arg;
    if (!r->lk.active)
        return;
    log_kv(LOG_WARN, "route lookup timed out; batch sent in fallback mode",
           "i:timeout_ms", (int)r->cfg->redis_timeout_ms, NULL);
    r->lk.active = 0;    /* the NULL replies the drop produces are ignored */
    redislink_drop(r->cmd, "lookup timeout");
    lookup_end(r, 1);
}

int router_redis_lookup(router *r)
{
    redisAsyncContext *ac = redislink_ctx(r->cmd);
    if (!ac)
        return -1;
    r->lk.active = 1;
    r->lk.failed = 0;
    r->lk.nrecv = 0;
    r->lk.nsent = 0;
    r->lk.ticket = route_cache_ticket(r->cache);
    r->lk.t0_us = clock_mono_us();
    for (size_t i = 0; i < r->nmiss; i++) {
        const char *key = key_of(r, "route:", r->miss[i].tok, r->miss[i].len);
        const char *argv[2] = { "SMEMBERS", key };
        size_t lens[2] = { 8, r->key.len };
        if (!key || redisAsyncCommandArgv(ac, lookup_reply_cb, r, 2, argv, lens) != REDIS_OK) {
            r->lk.failed = 1;
            break;
        }
        r->lk.nsent++;
    }
    if (r->lk.nsent == 0) {
        r->lk.active = 0;
        return -1;
    }
    long ms = r->cfg->redis_timeout_ms;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(r->ev_lookup_timeout, &tv);
    return 0;
}

/* ---- subscription -------------------------------------------------------------- */

static void handle_event(router *r, const char *p, size_t n)
{
    static const size_t up_len = sizeof SCHEMA_EVENT_SHARD_UP - 1;
    static const size_t down_len = sizeof SCHEMA_EVENT_SHARD_DOWN - 1;
    r->m.invalidations++;
    if (n >= up_len && memcmp(p, SCHEMA_EVENT_SHARD_UP, up_len) == 0) {
        event_active(r->ev_discover_now, EV_TIMEOUT, 0);
        return;
    }
    if (n >= down_len && memcmp(p, SCHEMA_EVENT_SHARD_DOWN, down_len) == 0) {
        router_shard *sh = router_shards_find(r->shards, p + down_len, n - down_len);
        if (sh && sh->live)
            router_shards_set_dead(r->shards, sh, "shard:down event");
        event_active(r->ev_discover_now, EV_TIMEOUT, 0);
        return;
    }
    route_cache_invalidate(r->cache, p, n);
}

static void sub_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    router *r = privdata;
    redisReply *rep = reply;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = rep->element[0]->str;
    if (strcmp(kind, "subscribe") == 0) {
        r->subscribed = 1;
        route_cache_flush(r->cache);
        log_kv(LOG_INFO, "subscribed to route changes; targeted dispatch enabled",
               "s:channel", rep->element[1]->str, NULL);
        event_active(r->ev_discover_now, EV_TIMEOUT, 0);
    } else if (strcmp(kind, "message") == 0 && rep->element[2]->type == REDIS_REPLY_STRING) {
        handle_event(r, rep->element[2]->str, (size_t)rep->element[2]->len);
    }
}

static void sub_state_cb(redislink *c, int up, void *arg)
{
    router *r = arg;
    if (up) {
        redisAsyncContext *ac = redislink_ctx(c);
        const char *key = key_of(r, "routes", NULL, 0);
        const char *argv[2] = { "SUBSCRIBE", key };
        size_t lens[2] = { 9, r->key.len };
        if (!ac || !key || redisAsyncCommandArgv(ac, sub_cb, r, 2, argv, lens) != REDIS_OK)
            redislink_drop(c, "subscribe failed");
        return;
    }
    if (r->subscribed)
        log_kv(LOG_WARN, "route subscription lost; cache flushed, fallback until it is back",
               NULL);
    r->subscribed = 0;
    route_cache_flush(r->cache);
}

/* ---- discovery ---------------------------------------------------------------- */

static void disc_reset(router *r)
{
    for (size_t i = 0; i < r->disc.n; i++) {
        free(r->disc.ids[i]);
        free(r->disc.endpoints[i]);
    }
    free(r->disc.ids);
    free(r->disc.endpoints);
    free(r->disc.has_hash);
    r->disc.ids = r->disc.endpoints = NULL;
    r->disc.has_hash = NULL;
    r->disc.n = r->disc.nrecv = 0;
    r->disc.active = 0;
}

static void clean_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    router *r = privdata;
    redisReply *rep = reply;
    if (!rep)
        return;
    if (rep->type == REDIS_REPLY_INTEGER && rep->integer >= 0) {
        r->m.shards_cleaned++;
        log_kv(LOG_INFO, "dead shard cleaned", "I:routes_removed", (int64_t)rep->integer,
               NULL);
    } else if (rep->type == REDIS_REPLY_ERROR) {
        log_kv(LOG_WARN, "dead shard cleanup failed", "s:error", rep->str, NULL);
    }
}

static void disc_apply(router *r, redisAsyncContext *ac)
{
    size_t ns = router_shards_nslots(r->shards);
    uint8_t *seen = calloc(ns + r->disc.n + 1, 1);
    if (!seen) {
        disc_reset(r);
        return;
    }
    for (size_t i = 0; i < r->disc.n; i++) {
        const char *id = r->disc.ids[i];
        router_shard *sh = router_shards_intern(r->shards, id, strlen(id));
        if (!sh)
            continue;
        seen[sh->slot] = 1;
        if (r->disc.has_hash[i] == 1) {
            if (!r->disc.endpoints[i] && !sh->live)
                log_kv(LOG_WARN, "shard lease has no endpoint", "s:shard", id, NULL);
            router_shards_set_live(r->shards, sh, r->disc.endpoints[i]);
        } else if (r->disc.has_hash[i] == 0) {
            router_shards_set_dead(r->shards, sh, "lease expired");
            const char *argv[6] = { "EVAL", SCHEMA_LUA_CLEAN_SHARD, "0", id,
                                    r->cfg->redis_prefix, "dead" };
            size_t lens[6] = { 4, strlen(SCHEMA_LUA_CLEAN_SHARD), 1, strlen(id),
                               strlen(r->cfg->redis_prefix), 4 };
            log_kv(LOG_INFO, "shard lease expired; cleaning its routes", "s:shard", id, NULL);
            redisAsyncCommandArgv(ac, clean_cb, r, 6, argv, lens);
        }
    }
    ns = router_shards_nslots(r->shards);
    for (size_t s = 0; s < ns; s++) {
        router_shard *sh = router_shards_get(r->shards, (uint16_t)s);
        if (!seen[s] && sh->live)
            router_shards_set_dead(r->shards, sh, "not registered");
    }
    free(seen);
    /* Forget shards long gone once enough have piled up (ids are usually
     * hostname-pid, new on every restart).  Slot numbers change, so only
     * between batches, and the cache goes with them. */
    size_t live = router_shards_live(r->shards);
    ns = router_shards_nslots(r->shards);
    if (!r->inflight && ns - live > ROUTER_SHARDS_GC_DEAD) {
        size_t freed = router_shards_compact(r->shards);
        if (freed) {
            route_cache_flush(r->cache);
            log_kv(LOG_INFO, "forgot dead shards", "u:count", (uint64_t)freed, NULL);
        }
    }
    int again = r->disc.again;
    disc_reset(r);
    r->m.discoveries++;
    if (again) {
        r->disc.again = 0;
        event_active(r->ev_discover_now, EV_TIMEOUT, 0);
    }
}

static void disc_hash_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    router *r = privdata;
    redisReply *rep = reply;
    if (!r->disc.active || r->disc.nrecv >= r->disc.n)
        return;
    if (!rep) {
        disc_reset(r);
        return;
    }
    size_t i = r->disc.nrecv++;
    if (rep->type == REDIS_REPLY_ARRAY) {
        r->disc.has_hash[i] = rep->elements > 0;
        for (size_t k = 0; k + 1 < rep->elements; k += 2) {
            redisReply *f = rep->element[k], *v = rep->element[k + 1];
            if (f->type == REDIS_REPLY_STRING && strcmp(f->str, "endpoint") == 0 &&
                v->type == REDIS_REPLY_STRING && v->len > 0) {
                free(r->disc.endpoints[i]);
                r->disc.endpoints[i] = strdup(v->str);
            }
        }
    } else {
        r->disc.has_hash[i] = 2;   /* unknown: leave the shard as it is */
    }
    if (r->disc.nrecv == r->disc.n)
        disc_apply(r, ac);
}

static void disc_members_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    router *r = privdata;
    redisReply *rep = reply;
    if (!r->disc.active || r->disc.ids)
        return;
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        if (rep && rep->type == REDIS_REPLY_ERROR)
            log_kv(LOG_WARN, "shard discovery failed", "s:error", rep->str, NULL);
        disc_reset(r);
        return;
    }
    size_t n = rep->elements;
    r->disc.ids = calloc(n + 1, sizeof *r->disc.ids);
    r->disc.endpoints = calloc(n + 1, sizeof *r->disc.endpoints);
    r->disc.has_hash = calloc(n + 1, 1);
    if (!r->disc.ids || !r->disc.endpoints || !r->disc.has_hash) {
        disc_reset(r);
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_STRING || e->len == 0 || memchr(e->str, 0, e->len))
            continue;
        if (!(r->disc.ids[k] = strdup(e->str)))
            continue;
        k++;
    }
    r->disc.n = k;
    r->disc.nrecv = 0;
    if (k == 0) {
        disc_apply(r, ac);
        return;
    }
    for (size_t i = 0; i < k; i++) {
        const char *key = key_of(r, "shard:", r->disc.ids[i], strlen(r->disc.ids[i]));
        const char *argv[2] = { "HGETALL", key };
        size_t lens[2] = { 7, r->key.len };
        if (!key || redisAsyncCommandArgv(ac, disc_hash_cb, r, 2, argv, lens) != REDIS_OK) {
            /* connection going away: NULL replies follow for those sent */
            r->disc.n = i;
            if (i == 0)
                disc_reset(r);
            return;
        }
    }
}

void router_redis_discover(router *r)
{
    redisAsyncContext *ac = redislink_ctx(r->cmd);
    if (!ac)
        return;
    if (r->disc.active) {
        r->disc.again = 1;
        return;
    }
    const char *key = key_of(r, "shards", NULL, 0);
    const char *argv[2] = { "SMEMBERS", key };
    size_t lens[2] = { 8, r->key.len };
    r->disc.active = 1;
    r->disc.again = 0;
    if (!key || redisAsyncCommandArgv(ac, disc_members_cb, r, 2, argv, lens) != REDIS_OK)
        r->disc.active = 0;
}

static void discover_cb(evutil_socket_t fd, short what, void *arg)
{
    router_redis_discover(arg);
}

static void cmd_state_cb(redislink *c, int up, void *arg)
{
    router *r = arg;
    route_cache_flush(r->cache);
    if (up) {
        r->m.redis_reconnects++;
        router_redis_discover(r);
    } else {
        disc_reset(r);
        r->disc.again = 0;
        log_kv(LOG_WARN, "redis lookups unavailable; broadcasting to known live shards "
               "until it is back", "u:live_shards",
               (uint64_t)router_shards_live(r->shards), NULL);
    }
}

int router_redis_start(router *r)
{
    const router_config *cfg = r->cfg;
    r->cmd = redislink_new(r->base, &cfg->redis, "cmd", cfg->redis_timeout_ms,
                              cfg->redis_reconnect_max_ms, cmd_state_cb, r);
    r->sub = redislink_new(r->base, &cfg->redis, "sub", cfg->redis_timeout_ms,
                              cfg->redis_reconnect_max_ms, sub_state_cb, r);
    r->ev_lookup_done = event_new(r->base, -1, 0, lookup_done_cb, r);
    r->ev_lookup_timeout = evtimer_new(r->base, lookup_timeout_cb, r);
    r->ev_discovery = event_new(r->base, -1, EV_PERSIST, discover_cb, r);
    r->ev_discover_now = event_new(r->base, -1, 0, discover_cb, r);
    if (!r->cmd || !r->sub || !r->ev_lookup_done || !r->ev_lookup_timeout ||
        !r->ev_discovery || !r->ev_discover_now) {
        log_kv(LOG_ERROR, "out of memory", NULL);
        return -1;
    }
    redislink_set_dns(r->cmd, r->dns);
    redislink_set_dns(r->sub, r->dns);
    long ms = cfg->discovery_interval_ms;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    event_add(r->ev_discovery, &tv);
    redislink_start(r->cmd);
    redislink_start(r->sub);
    return 0;
}

void router_redis_free(router *r)
{
    r->lk.active = 0;
    redislink_free(r->cmd);
    redislink_free(r->sub);
    r->cmd = r->sub = NULL;
    disc_reset(r);
    if (r->ev_lookup_done) event_free(r->ev_lookup_done);
    if (r->ev_lookup_timeout) event_free(r->ev_lookup_timeout);
    if (r->ev_discovery) event_free(r->ev_discovery);
    if (r->ev_discover_now) event_free(r->ev_discover_now);
    r->ev_lookup_done = r->ev_lookup_timeout = r->ev_discovery = r->ev_discover_now = NULL;
}
