/*
 * The batch pipeline (docs/architecture.md, "Router pipeline"):
 *
 *   drain  -> accumulate up to KAFKA_BATCH_SIZE or KAFKA_BATCH_TIMEOUT_MS
 *   classify every record (topic, key, size, JSON) and register the batch's
 *          per-partition offset ranges with the tracker
 *   route  -> cache hits copied into the batch arena; misses deduplicated
 *          and resolved with ONE pipelined Redis round trip
 *   dispatch -> one frame per touched shard, one write per shard
 *   complete -> when every frame of the batch is written or dropped, the
 *          batch's segments are done and contiguous positions are stored
 *
 * One batch is in flight at a time, so records of a token reach a shard in
 * offset order.
 */
#include "router/router_int.h"
#include "common/hash.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "router/dispatch.h"

static void process_batch(router *r);

/* ---- tickets ------------------------------------------------------------- */

void router_ticket_ref(router *r, router_ticket *t)
{
    (void)r;
    t->refs++;
}

void router_ticket_release(router *r, router_ticket *t)
{
    if (--t->refs > 0)
        return;
    if (!r->final)
        for (size_t i = 0; i < t->nsegs; i++)
            router_offsets_done(r->off, t->segs[i]);
    r->outstanding--;
    free(t);
    router_store_offsets(r);
    if (r->stopping)
        router_check_shutdown(r);
}

static void store_one(const char *topic, int32_t partition, int64_t next, void *arg)
{
    rd_kafka_topic_partition_list_t *l = arg;
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = next;
}

void router_store_offsets(router *r)
{
    if (!r->rk)
        return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
    if (!l)
        return;
    if (router_offsets_collect(r->off, store_one, l) > 0) {
        rd_kafka_offsets_store(r->rk, l);
        for (int i = 0; i < l->cnt; i++) {
            if (l->elems[i].err) {
                r->m.offsets_store_errors++;
                /* not assigned any more (rebalance): the new owner re-reads */
                log_kv(LOG_DEBUG, "offset store failed", "s:topic", l->elems[i].topic,
                       "i:partition", (int)l->elems[i].partition, "I:offset",
                       (int64_t)l->elems[i].offset, "s:error",
                       rd_kafka_err2str(l->elems[i].err), NULL);
            } else {
                r->m.offsets_stored++;
            }
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* ---- shard hooks ------------------------------------------------------------ */

static void hook_frame(void *ticket, uint32_t nrec, int done, enum router_drop reason,
                       void *arg)
{
    router *r = arg;
    if (!done)
        r->m.drops[reason] += nrec;
    router_ticket_release(r, ticket);
}

static void hook_ref(void *ticket, void *arg)
{
    router_ticket_ref(arg, ticket);
}

/* ---- state ------------------------------------------------------------------ */

int router_targeted_ready(const router *r)
{
    return router_rconn_ctx(r->cmd) != NULL && r->subscribed;
}

void router_pump_schedule(router *r)
{
    /* A zero-timeout timer, not event_active(): libevent runs events made
     * active inside a callback in the same loop pass, so a backlog would keep
     * the loop from ever polling sockets (measured: /health took up to 1 s
     * during a catch-up).  A timer fires after the next epoll_wait, so shard
     * sockets, Redis and HTTP are served between batches. */
    static const struct timeval now = { 0, 0 };
    if (!evtimer_pending(r->ev_pump, NULL))
        evtimer_add(r->ev_pump, &now);
}

/* ---- batch helpers ------------------------------------------------------------ */

static int arena_push(router *r, const uint16_t *v, size_t n, uint32_t *off)
{
    if (r->alen + n > r->acap) {
        size_t cap = r->acap ? r->acap : 1024;
        while (cap < r->alen + n)
            cap *= 2;
        uint16_t *a = realloc(r->arena, cap * sizeof *a);
        if (!a)
            return -1;
        r->arena = a;
        r->acap = cap;
    }
    *off = (uint32_t)r->alen;
    if (n)
        memcpy(r->arena + r->alen, v, n * sizeof *v);
    r->alen += n;
    return 0;
}

/* Index of the (deduplicated) miss for a token. */
static uint32_t miss_add(router *r, const char *tok, size_t len)
{
    uint32_t h = hash_fnv1a(tok, len);
    uint32_t mask = r->mtab_size - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        if (r->mtab_gen[i] != r->mgen) {
            r->mtab_gen[i] = r->mgen;
            r->mtab[i] = (uint32_t)r->nmiss;
            router_miss *m = &r->miss[r->nmiss++];
            m->tok = tok;
            m->len = (uint32_t)len;
            m->hash = h;
            m->route = 0;
            m->nroute = 0;
            m->resolved = 0;
            return r->mtab[i];
        }
        router_miss *m = &r->miss[r->mtab[i]];
        if (m->hash == h && m->len == len && memcmp(m->tok, tok, len) == 0)
            return r->mtab[i];
    }
}

/* Topic entry of a record, memoised by topic handle (the name is compared
 * too: a freed handle's address may come back for another topic). */
static const router_topic *topic_of(router *r, const rd_kafka_message_t *m)
{
    const char *name = rd_kafka_topic_name(m->rkt);
    for (size_t i = 0; i < r->ntcache; i++)
        if (r->tcache[i].rkt == (void *)m->rkt && strcmp(r->tcache[i].name, name) == 0)
            return r->tcache[i].t;
    const router_topic *t = router_topics_find(&r->cfg->topics, name, strlen(name));
    size_t n = sizeof r->tcache / sizeof r->tcache[0];
    size_t i = r->ntcache < n ? r->ntcache++ : (size_t)(r->batch_no % n);
    if (strlen(name) < sizeof r->tcache[i].name) {
        r->tcache[i].rkt = m->rkt;
        r->tcache[i].t = t;
        memcpy(r->tcache[i].name, name, strlen(name) + 1);
    } else {
        r->tcache[i].rkt = NULL;
    }
    return t;
}

static void log_invalid(router *r, const rd_kafka_message_t *m, int reason)
{
    uint64_t sup = 0;
    if (!log_rl_allow(&r->rl_invalid, &sup))
        return;
    log_kv(LOG_WARN, "invalid record skipped", "s:reason",
           router_invalid_name((enum router_invalid)reason), "s:topic",
           rd_kafka_topic_name(m->rkt), "i:partition", (int)m->partition, "I:offset",
           (int64_t)m->offset, "S:key", (const char *)m->key, m->key ? m->key_len : 0,
           "u:value_bytes", (uint64_t)m->len, "u:suppressed", sup, NULL);
}

/* Register the offset ranges of the batch (one segment per run of one
 * partition) in the ticket.  Returns 0 or -1 (ENOMEM). */
static int register_segments(router *r, router_ticket *t)
{
    size_t i = 0;
    while (i < r->nbatch) {
        const rd_kafka_message_t *m = r->batch[i];
        size_t j = i + 1;
        while (j < r->nbatch && r->batch[j]->rkt == m->rkt &&
               r->batch[j]->partition == m->partition &&
               r->batch[j]->offset > r->batch[j - 1]->offset)
            j++;
        int tp = router_offsets_tp(r->off, rd_kafka_topic_name(m->rkt), m->partition);
        if (tp < 0 ||
            router_offsets_add(r->off, tp, m->offset, r->batch[j - 1]->offset,
                               &t->segs[t->nsegs]) != 0)
            return -1;
        t->nsegs++;
        i = j;
    }
    return 0;
}

static void dispatch_batch(router *r, enum router_mode mode)
{
    const router_config *cfg = r->cfg;
    int need_all = mode != ROUTER_MODE_TARGETED;
    for (size_t i = 0; i < r->nbatch && !need_all; i++)
        need_all = r->recs[i].invalid < 0 && r->recs[i].all;
    r->nlive = 0;
    if (need_all) {
        size_t ns = router_shards_nslots(r->shards);
        for (size_t i = 0; i < ns; i++) {
            router_shard *sh = router_shards_get(r->shards, (uint16_t)i);
            if (sh->live)
                r->live_slots[r->nlive++] = (uint16_t)i;
        }
    }
    router_shards_batch_begin(r->shards, r->batch_no,
                              mode == ROUTER_MODE_TARGETED ? FRAME_MODE_TARGETED
                                                           : FRAME_MODE_BROADCAST,
                              r->ticket);
    for (size_t i = 0; i < r->nbatch; i++) {
        const router_rec *rec = &r->recs[i];
        if (rec->invalid >= 0)
            continue;
        const rd_kafka_message_t *m = rec->m;
        rd_kafka_timestamp_type_t tst;
        frame_record fr = {
            .category = rec->topic->category,
            .category_len = strlen(rec->topic->category),
            .token = m->key,
            .token_len = m->key_len,
            .partition = m->partition,
            .offset = m->offset,
            .timestamp_ms = rd_kafka_message_timestamp(m, &tst),
            .value = m->payload ? (const char *)m->payload : "",
            .value_len = m->len,
            .flags = rec->all ? FRAME_REC_ALL_CLIENTS : 0,
        };
        const uint16_t *tg;
        size_t nt;
        if (rec->all || mode != ROUTER_MODE_TARGETED) {
            tg = r->live_slots;
            nt = r->nlive;
        } else if (rec->is_miss) {
            const router_miss *ms = &r->miss[rec->route];
            tg = r->arena + ms->route;
            nt = ms->resolved ? ms->nroute : 0;
        } else {
            tg = r->arena + rec->route;
            nt = rec->nroute;
        }
        unsigned sent = 0;
        for (size_t j = 0; j < nt; j++) {
            router_shard *sh = router_shards_get(r->shards, tg[j]);
            if (!sh)
                continue;
            enum router_drop why;
            if (router_shards_add(r->shards, sh, &fr, &why) == 0)
                sent++;
            else
                r->m.drops[why]++;
        }
        router_hist_observe(&r->m.fanout, sent);
        r->m.dispatch[mode]++;
        r->m.records_sent += sent;
        if (nt == 0 && !rec->all && mode == ROUTER_MODE_TARGETED)
            r->m.unrouted++;
    }
    (void)cfg;
    router_shards_batch_end(r->shards);

    for (size_t i = 0; i < r->nbatch; i++)
        rd_kafka_message_destroy(r->batch[i]);
    r->nbatch = 0;
    r->inflight = 0;
    router_ticket *t = r->ticket;
    r->ticket = NULL;
    router_ticket_release(r, t);
    router_pump_schedule(r);
}

void router_lookup_finished(router *r, int failed)
{
    if (!r->inflight)
        return;
    dispatch_batch(r, failed ? ROUTER_MODE_FALLBACK : ROUTER_MODE_TARGETED);
}

static void process_batch(router *r)
{
    if (r->inflight || r->nacc == 0)
        return;
    const router_config *cfg = r->cfg;
    if (r->batch_timer_armed) {
        evtimer_del(r->ev_batch_timer);
        r->batch_timer_armed = 0;
    }
    rd_kafka_message_t **tmp = r->batch;
    r->batch = r->acc;
    r->acc = tmp;
    r->nbatch = r->nacc;
    r->nacc = 0;
    r->inflight = 1;
    r->batch_no++;
    r->m.batches++;
    router_hist_observe(&r->m.batch_size, (double)r->nbatch);

    router_ticket *t = malloc(sizeof *t + r->nbatch * sizeof t->segs[0]);
    if (!t || (t->nsegs = 0, t->refs = 1, t->batch_no = r->batch_no,
               register_segments(r, t) != 0)) {
        log_kv(LOG_ERROR, "out of memory registering a batch; exiting", NULL);
        abort();
    }
    r->ticket = t;
    r->outstanding++;

    uint64_t now = clock_mono_ms();
    dispatch_rules rules = { cfg->broadcast_key, strlen(cfg->broadcast_key),
                             (size_t)cfg->max_record_bytes, cfg->validate_json };
    enum router_mode mode = cfg->mode == ROUTER_MODE_BROADCAST ? ROUTER_MODE_BROADCAST
                          : router_targeted_ready(r) ? ROUTER_MODE_TARGETED
                                                     : ROUTER_MODE_FALLBACK;
    r->alen = 0;
    r->nmiss = 0;
    if (++r->mgen == 0) {
        memset(r->mtab_gen, 0, r->mtab_size * sizeof *r->mtab_gen);
        r->mgen = 1;
    }
    for (size_t i = 0; i < r->nbatch; i++) {
        const rd_kafka_message_t *m = r->batch[i];
        router_rec *rec = &r->recs[i];
        memset(rec, 0, sizeof *rec);
        rec->m = m;
        rec->topic = topic_of(r, m);
        int all = 0;
        enum router_invalid why;
        rec->invalid = dispatch_classify(&rules, rec->topic, m->key, m->key_len, m->payload,
                                         m->len, &all, &why) == 0 ? -1 : (int16_t)why;
        rec->all = (uint8_t)all;
        r->m.records++;
        if (rec->invalid >= 0) {
            r->m.invalid[rec->invalid]++;
            log_invalid(r, m, rec->invalid);
            continue;
        }
        if (mode != ROUTER_MODE_TARGETED || rec->all)
            continue;
        const uint16_t *sl;
        size_t n;
        if (route_cache_get(r->cache, m->key, m->key_len, now, &sl, &n)) {
            if (arena_push(r, sl, n, &rec->route) != 0) {
                mode = ROUTER_MODE_FALLBACK;   /* ENOMEM: correctness first */
                continue;
            }
            rec->nroute = (uint32_t)n;
        } else {
            rec->is_miss = 1;
            rec->route = miss_add(r, m->key, m->key_len);
        }
    }
    r->batch_mode = mode;
    if (mode == ROUTER_MODE_TARGETED && r->nmiss > 0) {
        if (router_redis_lookup(r) == 0)
            return;   /* router_lookup_finished() continues */
        mode = ROUTER_MODE_FALLBACK;
    }
    dispatch_batch(r, mode);
}

/* ---- consuming ------------------------------------------------------------------ */

/* 1 if consumption waits for a shard queue to drain; re-checks in 5 ms. */
static int backpressure(router *r)
{
    int bp = !r->stopping &&
             router_shards_backpressure(r->shards, clock_mono_ms(),
                                        r->cfg->shard_backpressure_ms);
    if (bp && !r->backpressured)
        r->m.backpressure_waits++;
    r->backpressured = bp;
    if (bp) {
        static const struct timeval again = { 0, 5000 };
        evtimer_add(r->ev_pump, &again);
    }
    return bp;
}

static void pump(router *r)
{
    if (r->inflight || backpressure(r))
        return;
    if (!r->stopping)
        router_kafka_drain(r);
    if (r->nacc == 0)
        return;
    if (r->nacc >= (size_t)r->cfg->kafka_batch_size || r->cfg->kafka_batch_timeout_ms == 0 ||
        r->stopping) {
        process_batch(r);
        return;
    }
    if (!r->batch_timer_armed) {
        long ms = r->cfg->kafka_batch_timeout_ms;
        struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
        evtimer_add(r->ev_batch_timer, &tv);
        r->batch_timer_armed = 1;
    }
}

static void pump_cb(evutil_socket_t fd, short what, void *arg)
{
    pump(arg);
}

static void batch_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    router *r = arg;
    r->batch_timer_armed = 0;
    if (!r->inflight && !backpressure(r)) {
        if (!r->stopping)
            router_kafka_drain(r);
        process_batch(r);
    }
}

/* ---- lifecycle ---------------------------------------------------------------- */

static void finish(router *r)
{
    r->finishing = 1;
    event_base_loopexit(r->base, NULL);
}

void router_check_shutdown(router *r)
{
    if (!r->stopping || r->finishing || r->inflight || r->nacc > 0 || r->outstanding > 0)
        return;
    log_kv(LOG_INFO, "all queued records written; stopping", NULL);
    finish(r);
}

static void shutdown_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    router *r = arg;
    log_kv(LOG_WARN, "shutdown timeout: dropping unwritten records (they are not stored "
           "and will be redelivered)", "u:queued_bytes",
           router_shards_queued_bytes(r->shards), "u:batches", r->outstanding, NULL);
    r->final = 1;
    router_shards_close_all(r->shards, "shutdown timeout");
    finish(r);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    router *r = arg;
    if (r->stopping) {
        log_kv(LOG_WARN, "second signal: stopping now", "i:signal", (int)sig, NULL);
        r->final = 1;
        router_shards_close_all(r->shards, "second signal");
        finish(r);
        return;
    }
    log_kv(LOG_INFO, "signal received: draining", "i:signal", (int)sig, NULL);
    r->stopping = 1;
    if (r->ev_kafka)
        event_del(r->ev_kafka);
    long ms = r->cfg->shutdown_timeout_ms;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(r->ev_shutdown_timeout, &tv);
    if (!r->inflight && r->nacc > 0)
        process_batch(r);
    router_check_shutdown(r);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    router *r = arg;
    router_shards_tick(r->shards, clock_mono_ms());
    /* Safety net: the queue's IO event only fires on empty -> non-empty. */
    if (!r->stopping)
        router_pump_schedule(r);
}

router *router_new(const router_config *cfg)
{
    router *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->cfg = cfg;
    r->kpipe[0] = r->kpipe[1] = -1;
    r->started_ms = clock_mono_ms();
    router_metrics_init(&r->m);
    r->rl_invalid.per_sec = (double)cfg->invalid_log_per_sec;
    r->rl_kafka.per_sec = 1;

    r->base = event_base_new();
    if (!r->base)
        goto err;
    size_t bs = (size_t)cfg->kafka_batch_size;
    r->acc = calloc(bs, sizeof *r->acc);
    r->batch = calloc(bs, sizeof *r->batch);
    r->recs = calloc(bs, sizeof *r->recs);
    r->miss = calloc(bs, sizeof *r->miss);
    r->mtab_size = 16;
    while (r->mtab_size < bs * 2)
        r->mtab_size *= 2;
    r->mtab = calloc(r->mtab_size, sizeof *r->mtab);
    r->mtab_gen = calloc(r->mtab_size, sizeof *r->mtab_gen);
    r->live_slots = calloc(ROUTER_SHARDS_MAX, sizeof *r->live_slots);
    r->cache = route_cache_new((size_t)cfg->cache_size, (uint64_t)cfg->cache_ttl_ms);
    r->off = router_offsets_new();
    if (!r->acc || !r->batch || !r->recs || !r->miss || !r->mtab || !r->mtab_gen ||
        !r->live_slots || !r->cache || !r->off) {
        log_kv(LOG_ERROR, "out of memory", NULL);
        goto err;
    }
    router_shards_opts so = {
        .router_id = cfg->id,
        .queue_bytes = (size_t)cfg->shard_queue_bytes,
        .stall_timeout_ms = cfg->shard_stall_timeout_ms,
        .hello_timeout_ms = cfg->shard_hello_timeout_ms,
        .reconnect_max_ms = cfg->shard_reconnect_max_ms,
    };
    router_shards_hooks hooks = { hook_frame, hook_ref, NULL, r };
    r->shards = router_shards_new(r->base, &so, &hooks, &r->m);
    r->ev_pump = event_new(r->base, -1, 0, pump_cb, r);
    r->ev_batch_timer = evtimer_new(r->base, batch_timer_cb, r);
    r->ev_tick = event_new(r->base, -1, EV_PERSIST, tick_cb, r);
    r->ev_shutdown_timeout = evtimer_new(r->base, shutdown_timeout_cb, r);
    r->ev_sigterm = evsignal_new(r->base, SIGTERM, signal_cb, r);
    r->ev_sigint = evsignal_new(r->base, SIGINT, signal_cb, r);
    if (!r->shards || !r->ev_pump || !r->ev_batch_timer || !r->ev_tick ||
        !r->ev_shutdown_timeout || !r->ev_sigterm || !r->ev_sigint) {
        log_kv(LOG_ERROR, "out of memory", NULL);
        goto err;
    }
    struct timeval sec = { 1, 0 };
    event_add(r->ev_tick, &sec);
    event_add(r->ev_sigterm, NULL);
    event_add(r->ev_sigint, NULL);

    if (router_http_start(r) != 0 || router_redis_start(r) != 0 ||
        router_kafka_start(r) != 0)
        goto err;
    log_kv(LOG_INFO, "router started", "s:id", cfg->id, "s:mode",
           router_mode_name(cfg->mode), "s:group", cfg->kafka_group, "s:topics",
           cfg->kafka_topics, "s:redis", cfg->redis_url, "s:http", cfg->http_addr, NULL);
    return r;
err:
    router_free(r);
    return NULL;
}

int router_run(router *r)
{
    event_base_dispatch(r->base);
    /* Records still accumulated were never dispatched: not stored, so they
     * are redelivered to whoever consumes next. */
    for (size_t i = 0; i < r->nacc; i++)
        rd_kafka_message_destroy(r->acc[i]);
    r->nacc = 0;
    for (size_t i = 0; i < r->nbatch; i++)
        rd_kafka_message_destroy(r->batch[i]);
    r->nbatch = 0;
    router_kafka_close(r);
    log_kv(LOG_INFO, "router stopped", "u:records", r->m.records, "u:offsets_stored",
           r->m.offsets_stored, NULL);
    return r->exit_code;
}

void router_free(router *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nacc; i++)
        rd_kafka_message_destroy(r->acc[i]);
    for (size_t i = 0; i < r->nbatch; i++)
        rd_kafka_message_destroy(r->batch[i]);
    r->nacc = r->nbatch = 0;
    router_kafka_close(r);
    /* Dropping shard queues releases the tickets still referenced. */
    r->final = 1;
    router_shards_free(r->shards);
    r->shards = NULL;
    if (r->ticket) {
        free(r->ticket);
        r->ticket = NULL;
    }
    router_redis_free(r);
    router_http_free(r);
    if (r->ev_pump) event_free(r->ev_pump);
    if (r->ev_batch_timer) event_free(r->ev_batch_timer);
    if (r->ev_tick) event_free(r->ev_tick);
    if (r->ev_shutdown_timeout) event_free(r->ev_shutdown_timeout);
    if (r->ev_sigterm) event_free(r->ev_sigterm);
    if (r->ev_sigint) event_free(r->ev_sigint);
    route_cache_free(r->cache);
    router_offsets_free(r->off);
    free(r->acc);
    free(r->batch);
    free(r->recs);
    free(r->miss);
    free(r->mtab);
    free(r->mtab_gen);
    free(r->arena);
    free(r->live_slots);
    buf_free(&r->key);
    if (r->base)
        event_base_free(r->base);
    free(r);
}
