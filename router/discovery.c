/*
 * Shard registry: odin:routes subscription and lease discovery with the
 * dead-shard sweep (contract in discovery.h).  Reply callbacks only record
 * results or report to the owner; anything that would issue commands from a
 * connect/disconnect notification runs from libevent events (common/redislink.h) and
 * discovery rounds start from a zero-delay event (hiredis 0.14 rules,
 * docs/dependencies.md).
 */
#include "router/discovery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/schema.h"
#include "common/sweep.h"

struct discovery {
    struct event_base *base;
    const router_config *cfg;
    router_metrics *m;
    discovery_callbacks cb;
    redislink *cmd, *sub;
    int subscribed;
    char *k_routes, *k_epoch, *k_shards;   /* key names (common/schema.h) */
    struct {
        int active, again;
        size_t n, nrecv;
        char **ids;
        char **endpoints;           /* NULL: no endpoint in the lease */
        uint8_t *has_hash;          /* 1 lease, 0 none, 2 unknown */
        char **synced;              /* lease field `synced`; NULL if absent */
        char epoch[80];             /* this round's registry epoch */
        int epoch_ok, created;
        int64_t age_ms;             /* epoch age by Redis's clock */
    } disc;
    /* trust in "no route" (docs/reliability.md) */
    char epoch[80];                 /* last epoch seen ("" none yet) */
    int round_ok;                   /* a round completed since cmd connected */
    int trusted;
    uint64_t settle_until;          /* mono ms; 0 = not settling */
    char **must;                    /* live before a reset: must come back synced */
    size_t nmust;
    char **live;                    /* live at the last round */
    size_t nlive;
    struct event *ev_interval, *ev_now;
};

/* ---- subscription ------------------------------------------------------ */

void discovery_handle_message(discovery *d, const char *p, size_t n)
{
    static const size_t up_len = sizeof SCHEMA_EVENT_SHARD_UP - 1;
    static const size_t down_len = sizeof SCHEMA_EVENT_SHARD_DOWN - 1;
    d->m->invalidations++;
    if (n >= up_len && memcmp(p, SCHEMA_EVENT_SHARD_UP, up_len) == 0) {
        discovery_kick(d);
        return;
    }
    if (n >= down_len && memcmp(p, SCHEMA_EVENT_SHARD_DOWN, down_len) == 0) {
        d->cb.shard_down(p + down_len, n - down_len, d->cb.arg);
        discovery_kick(d);
        return;
    }
    d->cb.invalidate(p, n, d->cb.arg);
}

static void sub_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    discovery *d = privdata;
    redisReply *rep = reply;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = rep->element[0]->str;
    if (strcmp(kind, "subscribe") == 0) {
        d->subscribed = 1;
        d->cb.flush(d->cb.arg);
        log_kv(LOG_INFO, "subscribed to route changes; targeted dispatch enabled",
               "s:channel", rep->element[1]->str, NULL);
        discovery_kick(d);
    } else if (strcmp(kind, "message") == 0 && rep->element[2]->type == REDIS_REPLY_STRING) {
        discovery_handle_message(d, rep->element[2]->str, (size_t)rep->element[2]->len);
    }
}

static void sub_state_cb(redislink *c, int up, void *arg)
{
    discovery *d = arg;
    if (up) {
        redisAsyncContext *ac = redislink_ctx(c);
        const char *key = d->k_routes;
        const char *argv[2] = { "SUBSCRIBE", key };
        size_t lens[2] = { 9, strlen(key) };
        if (!ac || !key || redisAsyncCommandArgv(ac, sub_cb, d, 2, argv, lens) != REDIS_OK)
            redislink_drop(c, "subscribe failed");
        return;
    }
    if (d->subscribed)
        log_kv(LOG_WARN, "route subscription lost; cache flushed, fallback until it is back",
               NULL);
    d->subscribed = 0;
    d->cb.flush(d->cb.arg);
}

/* ---- discovery ---------------------------------------------------------- */

static void disc_reset(discovery *d)
{
    for (size_t i = 0; i < d->disc.n; i++) {
        free(d->disc.ids[i]);
        free(d->disc.endpoints[i]);
        free(d->disc.synced[i]);
    }
    free(d->disc.ids);
    free(d->disc.endpoints);
    free(d->disc.has_hash);
    free(d->disc.synced);
    d->disc.ids = d->disc.endpoints = d->disc.synced = NULL;
    d->disc.has_hash = NULL;
    d->disc.n = d->disc.nrecv = 0;
    d->disc.active = 0;
    d->disc.epoch_ok = 0;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int in_list(const discovery_shard *list, size_t n, const char *id,
                   const char *epoch)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i].id, id) == 0)
            return list[i].lease == DISCOVERY_LEASE_LIVE &&
                   (!list[i].synced || strcmp(list[i].synced, epoch) == 0);
    return 0;
}

/* Decide, from a complete round, whether a missing route can be trusted to
 * mean "nobody subscribed": the epoch is the one we knew (or the reset has
 * settled: every shard live before it is back with its routes confirmed, or
 * the epoch is ROUTER_SETTLE_MS old), and every live shard has confirmed its
 * routes under this epoch. */
static void judge(discovery *d, const discovery_shard *list, size_t n)
{
    uint64_t now = clock_mono_ms();
    const char *e = d->disc.epoch;
    long settle = d->cfg->settle_ms;
    int reset = d->disc.created || (d->epoch[0] && strcmp(d->epoch, e) != 0);
    if (reset || (!d->epoch[0] && d->disc.age_ms < settle)) {
        /* a new generation: routes may still be coming back */
        if (reset && d->epoch[0]) {
            d->m->registry_resets++;
            log_kv(LOG_WARN, "redis registry was reset (restarted empty or flushed); "
                   "holding until the shards re-register", "u:shards_before",
                   (uint64_t)d->nlive, NULL);
        }
        strv_free(d->must, d->nmust);
        d->must = d->live;
        d->nmust = d->nlive;
        d->live = NULL;
        d->nlive = 0;
        int64_t left = settle - (d->disc.age_ms > 0 ? d->disc.age_ms : 0);
        d->settle_until = now + (uint64_t)(left > 0 ? left : 0);
    }
    snprintf(d->epoch, sizeof d->epoch, "%s", e);
    /* live at this round, for the next reset */
    strv_free(d->live, d->nlive);
    d->live = calloc(n + 1, sizeof *d->live);
    d->nlive = 0;
    size_t unsynced = 0;
    for (size_t i = 0; i < n && d->live; i++) {
        if (list[i].lease != DISCOVERY_LEASE_LIVE)
            continue;
        if (list[i].synced && strcmp(list[i].synced, e) != 0)
            unsynced++;
        if ((d->live[d->nlive] = strdup(list[i].id)))
            d->nlive++;
    }
    if (d->settle_until) {
        size_t missing = 0;
        for (size_t i = 0; i < d->nmust; i++)
            missing += !in_list(list, n, d->must[i], e);
        if (now >= d->settle_until || (d->nmust > 0 && missing == 0)) {
            log_kv(LOG_INFO, "redis registry settled", "u:shards_missing",
                   (uint64_t)(now >= d->settle_until ? missing : 0), NULL);
            d->settle_until = 0;
            strv_free(d->must, d->nmust);
            d->must = NULL;
            d->nmust = 0;
        }
    }
    int was = d->trusted;
    d->round_ok = 1;
    d->trusted = !d->settle_until && unsynced == 0;
    if (was != d->trusted && !d->trusted)
        log_kv(LOG_INFO, "routes not trusted yet", "u:unsynced_shards", (uint64_t)unsynced,
               "b:settling", d->settle_until != 0, NULL);
}

/* The end of a dead-shard sweep: removed >= 0 routes removed, -1 nothing
 * to do (the lease is back, or another router sweeps), -2 failed (err; NULL
 * when the connection went). */
static void swept(discovery *d, long long removed, const char *err)
{
    if (removed >= 0) {
        d->m->shards_cleaned++;
        log_kv(LOG_INFO, "dead shard cleaned", "I:routes_removed", (int64_t)removed, NULL);
    } else if (removed == -2 && err) {
        log_kv(LOG_WARN, "dead shard cleanup failed", "s:error", err, NULL);
    }
}

/* common/sweep.h: called once per sweep, also while the
 * connection is freed (then d still exists: discovery_free frees it
 * after its connections). */
static void sweep_cb(long long removed, const char *err, void *arg)
{
    swept(arg, removed, err && strcmp(err, "connection lost") != 0 ? err : NULL);
}

/* The round is complete: report it, sweep the expired leases. */
static void disc_apply(discovery *d, redisAsyncContext *ac)
{
    size_t n = d->disc.n;
    discovery_shard *list = calloc(n + 1, sizeof *list);
    if (!list) {
        disc_reset(d);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        list[i].id = d->disc.ids[i];
        list[i].endpoint = d->disc.endpoints[i];
        list[i].synced = d->disc.synced[i];
        list[i].lease = d->disc.has_hash[i] == 1 ? DISCOVERY_LEASE_LIVE
                      : d->disc.has_hash[i] == 0 ? DISCOVERY_LEASE_EXPIRED
                                                 : DISCOVERY_LEASE_UNKNOWN;
    }
    if (d->disc.epoch_ok)
        judge(d, list, n);
    d->cb.shards(list, n, d->cb.arg);
    for (size_t i = 0; i < n; i++) {
        /* a shard in its grace period keeps its routes: it may come back */
        if (list[i].lease != DISCOVERY_LEASE_EXPIRED || list[i].keep)
            continue;
        const char *id = list[i].id;
        log_kv(LOG_INFO, "shard lease expired; cleaning its routes", "s:shard", id, NULL);
        sweep_opts so = { d->cfg->redis_prefix, d->cfg->redis_cluster_keys,
                          (size_t)d->cfg->redis_chunk, 1, NULL };
        sweep_shard(ac, &so, id, sweep_cb, d);
    }
    free(list);
    int again = d->disc.again;
    disc_reset(d);
    d->m->discoveries++;
    if (again) {
        d->disc.again = 0;
        discovery_kick(d);
    }
}

static void disc_hash_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    discovery *d = privdata;
    redisReply *rep = reply;
    if (!d->disc.active || d->disc.nrecv >= d->disc.n)
        return;
    if (!rep) {
        disc_reset(d);
        return;
    }
    size_t i = d->disc.nrecv++;
    if (rep->type == REDIS_REPLY_ARRAY) {
        d->disc.has_hash[i] = rep->elements > 0;
        for (size_t k = 0; k + 1 < rep->elements; k += 2) {
            redisReply *f = rep->element[k], *v = rep->element[k + 1];
            if (f->type == REDIS_REPLY_STRING && strcmp(f->str, "synced") == 0 &&
                v->type == REDIS_REPLY_STRING) {
                free(d->disc.synced[i]);
                d->disc.synced[i] = strdup(v->str);
            }
            if (f->type == REDIS_REPLY_STRING && strcmp(f->str, "endpoint") == 0 &&
                v->type == REDIS_REPLY_STRING && v->len > 0) {
                free(d->disc.endpoints[i]);
                d->disc.endpoints[i] = strdup(v->str);
            }
        }
    } else {
        d->disc.has_hash[i] = 2;   /* unknown: leave the shard as it is */
    }
    if (d->disc.nrecv == d->disc.n)
        disc_apply(d, ac);
}

static void disc_members_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    discovery *d = privdata;
    redisReply *rep = reply;
    if (!d->disc.active || d->disc.ids)
        return;
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        if (rep && rep->type == REDIS_REPLY_ERROR)
            log_kv(LOG_WARN, "shard discovery failed", "s:error", rep->str, NULL);
        disc_reset(d);
        return;
    }
    size_t n = rep->elements;
    d->disc.ids = calloc(n + 1, sizeof *d->disc.ids);
    d->disc.endpoints = calloc(n + 1, sizeof *d->disc.endpoints);
    d->disc.has_hash = calloc(n + 1, 1);
    d->disc.synced = calloc(n + 1, sizeof *d->disc.synced);
    if (!d->disc.ids || !d->disc.endpoints || !d->disc.has_hash || !d->disc.synced) {
        disc_reset(d);
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_STRING || e->len == 0 || memchr(e->str, 0, e->len))
            continue;
        if (!(d->disc.ids[k] = strdup(e->str)))
            continue;
        k++;
    }
    d->disc.n = k;
    d->disc.nrecv = 0;
    if (k == 0) {
        disc_apply(d, ac);
        return;
    }
    for (size_t i = 0; i < k; i++) {
        char *key = schema_lease_key(d->cfg->redis_prefix, d->cfg->redis_cluster_keys,
                                     d->disc.ids[i]);
        const char *argv[2] = { "HGETALL", key };
        size_t lens[2] = { 7, key ? strlen(key) : 0 };
        int ok = key && redisAsyncCommandArgv(ac, disc_hash_cb, d, 2, argv, lens) == REDIS_OK;
        free(key);
        if (!ok) {
            /* connection going away: NULL replies follow for those sent */
            d->disc.n = i;
            if (i == 0)
                disc_reset(d);
            return;
        }
    }
}

static void disc_epoch_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    discovery *d = privdata;
    redisReply *rep = reply;
    if (!d->disc.active || d->disc.ids)
        return;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 4 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER ||
        rep->element[1]->type != REDIS_REPLY_STRING ||
        rep->element[2]->type != REDIS_REPLY_STRING ||
        rep->element[3]->type != REDIS_REPLY_STRING) {
        if (rep && rep->type == REDIS_REPLY_ERROR)
            log_kv(LOG_WARN, "registry epoch read failed", "s:error", rep->str, NULL);
        return;   /* the round goes on without judging trust */
    }
    d->disc.created = rep->element[0]->integer == 1;
    snprintf(d->disc.epoch, sizeof d->disc.epoch, "%s", rep->element[1]->str);
    int64_t now_ms = strtoll(rep->element[2]->str, NULL, 10) * 1000 +
                     strtoll(rep->element[3]->str, NULL, 10) / 1000;
    /* seconds of the epoch's birth; +999: never older than it is */
    int64_t born_ms = strtoll(rep->element[1]->str, NULL, 10) * 1000 + 999;
    d->disc.age_ms = now_ms - born_ms;
    d->disc.epoch_ok = 1;
}

static void discover(discovery *d)
{
    redisAsyncContext *ac = redislink_ctx(d->cmd);
    if (!ac)
        return;
    if (d->disc.active) {
        d->disc.again = 1;
        return;
    }
    char fresh[33];
    schema_random_hex(fresh);
    const char *ekey = d->k_epoch;
    const char *eargv[5] = { "EVAL", SCHEMA_LUA_EPOCH, "1", ekey, fresh };
    size_t elens[5] = { 4, strlen(SCHEMA_LUA_EPOCH), 1, strlen(ekey), strlen(fresh) };
    d->disc.active = 1;
    d->disc.again = 0;
    d->disc.epoch_ok = 0;
    if (!ekey || redisAsyncCommandArgv(ac, disc_epoch_cb, d, 5, eargv, elens) != REDIS_OK) {
        d->disc.active = 0;
        return;
    }
    const char *key = d->k_shards;
    const char *argv[2] = { "SMEMBERS", key };
    size_t lens[2] = { 8, strlen(key) };
    if (!key || redisAsyncCommandArgv(ac, disc_members_cb, d, 2, argv, lens) != REDIS_OK)
        d->disc.active = 0;
}

static void discover_cb(evutil_socket_t fd, short what, void *arg)
{
    discover(arg);
}

void discovery_kick(discovery *d)
{
    event_active(d->ev_now, EV_TIMEOUT, 0);
}

static void cmd_state_cb(redislink *c, int up, void *arg)
{
    discovery *d = arg;
    d->cb.flush(d->cb.arg);
    d->round_ok = 0;
    d->trusted = 0;
    if (up) {
        d->m->redis_reconnects++;
        discover(d);
    } else {
        disc_reset(d);
        d->disc.again = 0;
        d->cb.cmd_down(d->cb.arg);
    }
}

/* ---- state and lifecycle ------------------------------------------------ */

redislink *discovery_cmd(discovery *d)
{
    return d->cmd;
}

int discovery_cmd_connected(const discovery *d)
{
    return redislink_ctx(d->cmd) != NULL;
}

int discovery_subscribed(const discovery *d)
{
    return d->subscribed;
}

int discovery_ready(const discovery *d)
{
    return discovery_cmd_connected(d) && d->subscribed;
}

int discovery_trusted(const discovery *d)
{
    return discovery_ready(d) && d->round_ok && d->trusted;
}

const char *discovery_epoch(const discovery *d)
{
    return d->epoch;
}

void discovery_distrust(discovery *d)
{
    d->trusted = 0;
    discovery_kick(d);
}

discovery *discovery_new(struct event_base *base, const router_config *cfg,
                         router_metrics *m, const discovery_callbacks *cb)
{
    discovery *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->base = base;
    d->cfg = cfg;
    d->m = m;
    d->cb = *cb;
    d->k_routes = schema_routes_channel(cfg->redis_prefix);
    d->k_epoch = schema_epoch_key(cfg->redis_prefix);
    d->k_shards = schema_shards_key(cfg->redis_prefix);
    d->cmd = redislink_new(base, &cfg->redis, "cmd", cfg->redis_timeout_ms,
                              cfg->redis_reconnect_max_ms, cmd_state_cb, d);
    d->sub = redislink_new(base, &cfg->redis, "sub", cfg->redis_timeout_ms,
                              cfg->redis_reconnect_max_ms, sub_state_cb, d);
    d->ev_interval = event_new(base, -1, EV_PERSIST, discover_cb, d);
    d->ev_now = event_new(base, -1, 0, discover_cb, d);
    if (!d->cmd || !d->sub || !d->ev_interval || !d->ev_now || !d->k_routes || !d->k_epoch ||
        !d->k_shards) {
        discovery_free(d);
        return NULL;
    }
    return d;
}

void discovery_set_dns(discovery *d, struct evdns_base *dns)
{
    redislink_set_dns(d->cmd, dns);
    redislink_set_dns(d->sub, dns);
}

void discovery_start(discovery *d)
{
    long ms = d->cfg->discovery_interval_ms;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    event_add(d->ev_interval, &tv);
    redislink_start(d->cmd);
    redislink_start(d->sub);
}

void discovery_free(discovery *d)
{
    if (!d)
        return;
    redislink_free(d->cmd);
    redislink_free(d->sub);
    d->cmd = d->sub = NULL;
    disc_reset(d);
    strv_free(d->must, d->nmust);
    strv_free(d->live, d->nlive);
    if (d->ev_interval)
        event_free(d->ev_interval);
    if (d->ev_now)
        event_free(d->ev_now);
    free(d->k_routes);
    free(d->k_epoch);
    free(d->k_shards);
    free(d);
}
