/*
 * The batch pipeline (docs/architecture.md, "The pipeline"):
 *
 *   drain  -> the consumer accumulates up to KAFKA_BATCH_SIZE, or what came
 *          within KAFKA_BATCH_TIMEOUT_MS of the first record
 *   classify every record (topic, key, size, JSON) and register the batch's
 *          per-partition offset ranges with the tracker
 *   route  -> the lookup copies cache hits into its arena and resolves the
 *          misses with ONE pipelined Redis round trip; while the router
 *          cannot know which shards hold a token (discovery_trusted) the
 *          batch is held instead (consumption stops, nothing is stored), up
 *          to ROUTER_HOLD_MAX_MS, then it goes out in fallback broadcast
 *   dispatch -> one frame per touched shard, one write per shard
 *   complete -> when every frame of the batch is written or dropped, the
 *          batch's segments are done and contiguous positions are stored
 *
 * One batch is in flight at a time, so records of a token reach a shard in
 * offset order.  Also here: backpressure (pausing for busy shards), the
 * shutdown stages, and the owner's side of every object's callbacks
 * (consumer, lookup, discovery, shards).  This file owns `struct router`;
 * no other file sees it.
 */
#include "router/router.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <librdkafka/rdkafka.h>

#include "common/clock.h"
#include "common/addr.h"
#include "common/net.h"
#include "common/log.h"
#include "router/cache.h"
#include "router/consumer.h"
#include "router/discovery.h"
#include "router/dispatch.h"
#include "router/leavegroup.h"
#include "router/hold.h"
#include "router/http.h"
#include "router/lookup.h"
#include "router/offsets.h"
#include "router/shards.h"
#include "router/tickets.h"

/* SIGTERM/SIGINT: the process exits within SHUTDOWN_TIMEOUT_MS + this. */
#define ROUTER_EXIT_SLACK_MS 2000

/* Per-record classification of the batch being processed. */
typedef struct rec {
    const rd_kafka_message_t *m;
    const router_topic *topic;
    int16_t invalid;        /* -1 valid, else enum router_invalid */
    uint8_t all;            /* broadcast key / topic: every shard, every client */
    lookup_ref route;       /* targeted, not "all" */
} rec;

struct router {
    const router_config *cfg;
    struct event_base *base;
    struct evdns_base *dns;         /* names resolved off the loop (common/net.h) */
    router_metrics m;
    uint64_t started_ms;

    /* the objects */
    consumer *consumer;
    lookup *lookup;
    discovery *disc;
    router_shards *shards;
    route_cache *cache;
    router_offsets *off;
    router_tickets *tickets;        /* completion tickets (router/tickets.h) */
    router_hold *hold;              /* the hold policy (router/hold.h) */
    router_http *http;
    leavegroup *leavegroup;         /* KAFKA_EVICT_PREVIOUS only (router/leavegroup.h) */

    /* consuming */
    struct event *ev_pump, *ev_batch_timer;
    int batch_timer_armed;
    int backpressured;              /* consumption paused for a shard to drain */
    int kafka_down;                 /* all brokers down reported */
    struct event *ev_hold;          /* re-decides a held batch */
    int holding;                    /* the batch in hand waits for routes */
    struct { void *rkt; const router_topic *t; char name[256]; } tcache[16];
    size_t ntcache;
    log_ratelimit rl_invalid;

    /* batch being processed */
    int inflight;                   /* classified, waiting or dispatching */
    uint64_t batch_no;
    rd_kafka_message_t **batch;     /* owned messages */
    size_t nbatch;
    rec *recs;
    router_ticket *ticket;          /* the batch in hand's (router/tickets.h) */
    uint16_t *live_slots;           /* fallback / broadcast target list */
    size_t nlive;

    /* signals, periodic, shutdown */
    struct event *ev_sigterm, *ev_sigint, *ev_tick, *ev_shutdown_timeout;
    int stopping;                   /* SIGTERM received */
    uint64_t stop_at_ms;            /* when (mono): bounds the consumer close */
    int finishing;                  /* loop exit requested */
    int exit_code;
};

static void process_batch(router *r);
static void route_batch(router *r);
static void check_shutdown(router *r);

/* ---- offsets (tickets: router/tickets.h) ------------------------------------------------ */

static void store_one(const char *topic, int32_t partition, int64_t next, void *arg)
{
    rd_kafka_topic_partition_list_t *l = arg;
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = next;
}

/* Hand every advanced contiguous position to the consumer for commit. */
static void store_offsets(router *r)
{
    if (!r->consumer)
        return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
    if (!l)
        return;
    if (router_offsets_collect(r->off, store_one, l) > 0 &&
        consumer_store_offsets(r->consumer, l) == 0) {
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
        if (r->cfg->commit_eager)
            consumer_commit_soon(r->consumer);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* A ticket completed (router/tickets.h): store what advanced. */
static void on_ticket_done(void *arg)
{
    router *r = arg;
    store_offsets(r);
    if (r->stopping)
        check_shutdown(r);
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
        if (router_ticket_add_range(r->tickets, t, rd_kafka_topic_name(m->rkt), m->partition,
                                    m->offset, r->batch[j - 1]->offset) != 0)
            return -1;
        i = j;
    }
    return 0;
}

/* ---- scheduling --------------------------------------------------------- */

static void pump_schedule(router *r)
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

/* Records accumulated in the consumer (0 once it is gone). */
static size_t accumulated(const router *r)
{
    return r->consumer ? consumer_pending(r->consumer) : 0;
}

static int targeted_ready(const router *r)
{
    return r->disc && discovery_ready(r->disc);
}

static enum router_mode current_mode(const router *r)
{
    return r->cfg->mode == ROUTER_MODE_BROADCAST ? ROUTER_MODE_BROADCAST
         : targeted_ready(r) ? ROUTER_MODE_TARGETED : ROUTER_MODE_FALLBACK;
}

/* ---- hold (router/hold.h) ---------------------------------------------- */

/* How the batch in hand goes out (router/hold.h); ROUTER_HOLD: keep it. */
static int decide(router *r)
{
    if (r->cfg->mode == ROUTER_MODE_BROADCAST)
        return ROUTER_MODE_BROADCAST;
    router_hold_view v = {
        .trusted = r->disc && discovery_trusted(r->disc),
        .cmd_connected = r->disc && discovery_cmd_connected(r->disc),
        .live_shards = router_shards_live(r->shards),
    };
    return router_hold_decide(r->hold, &v, clock_mono_ms());
}

static void hold_cb(evutil_socket_t fd, short what, void *arg)
{
    router *r = arg;
    if (r->inflight && r->holding && !(r->lookup && lookup_active(r->lookup)))
        route_batch(r);
}

/* ---- classify ----------------------------------------------------------- */

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

/* ---- dispatch ----------------------------------------------------------- */

static void dispatch_batch(router *r, enum router_mode mode)
{
    int need_all = mode != ROUTER_MODE_TARGETED;
    r->holding = 0;
    for (size_t i = 0; i < r->nbatch && !need_all; i++)
        need_all = r->recs[i].invalid < 0 && r->recs[i].all;
    r->nlive = 0;
    if (need_all) {
        size_t ns = router_shards_nslots(r->shards);
        for (size_t i = 0; i < ns; i++) {
            router_shard *sh = router_shards_get(r->shards, (uint16_t)i);
            if (router_shard_live(sh))
                r->live_slots[r->nlive++] = (uint16_t)i;
        }
    }
    router_shards_batch_begin(r->shards, r->batch_no,
                              mode == ROUTER_MODE_TARGETED ? FRAME_MODE_TARGETED
                                                           : FRAME_MODE_BROADCAST,
                              r->ticket);
    for (size_t i = 0; i < r->nbatch; i++) {
        const rec *rc = &r->recs[i];
        if (rc->invalid >= 0)
            continue;
        const rd_kafka_message_t *m = rc->m;
        rd_kafka_timestamp_type_t tst;
        frame_record fr = {
            .category = rc->topic->category,
            .category_len = strlen(rc->topic->category),
            .token = m->key,
            .token_len = m->key_len,
            .partition = m->partition,
            .offset = m->offset,
            .timestamp_ms = rd_kafka_message_timestamp(m, &tst),
            .value = m->payload ? (const char *)m->payload : "",
            .value_len = m->len,
            .flags = rc->all ? FRAME_REC_ALL_CLIENTS : 0,
        };
        const uint16_t *tg;
        size_t nt;
        if (rc->all || mode != ROUTER_MODE_TARGETED) {
            tg = r->live_slots;
            nt = r->nlive;
        } else {
            tg = lookup_targets(r->lookup, rc->route, &nt);
        }
        unsigned sent = 0;
        for (size_t j = 0; j < nt; j++) {
            router_shard *sh = router_shards_get(r->shards, tg[j]);
            if (!sh)
                continue;
            enum router_drop why;
            if (router_shards_add(r->shards, sh, &fr, &why) == 0)
                sent++;   /* else counted by router_shards_add */
        }
        if (nt == 0 && (rc->all || mode != ROUTER_MODE_TARGETED))
            r->m.drops[ROUTER_DROP_NO_SHARD]++;   /* nobody to send to: counted */
        prom_hist_observe(&r->m.fanout, sent);
        if (sent && fr.timestamp_ms > 0)
            router_ticket_sent(r->ticket, fr.timestamp_ms);
        r->m.dispatch[mode]++;
        r->m.records_sent += sent;
        if (nt == 0 && !rc->all && mode == ROUTER_MODE_TARGETED)
            r->m.unrouted++;
    }
    router_shards_batch_end(r->shards);

    for (size_t i = 0; i < r->nbatch; i++)
        rd_kafka_message_destroy(r->batch[i]);
    r->nbatch = 0;
    r->inflight = 0;
    router_ticket *t = r->ticket;
    r->ticket = NULL;
    router_tickets_release(r->tickets, t);
    pump_schedule(r);
}

static void process_batch(router *r)
{
    if (r->inflight || accumulated(r) == 0)
        return;
    const router_config *cfg = r->cfg;
    if (r->batch_timer_armed) {
        evtimer_del(r->ev_batch_timer);
        r->batch_timer_armed = 0;
    }
    r->nbatch = consumer_take(r->consumer, r->batch, (size_t)cfg->kafka_batch_size);
    r->inflight = 1;
    r->batch_no++;
    r->m.batches++;
    prom_hist_observe(&r->m.batch_size, (double)r->nbatch);

    router_ticket *t = router_tickets_open(r->tickets, r->batch_no, r->nbatch);
    if (!t || register_segments(r, t) != 0) {
        log_kv(LOG_ERROR, "out of memory registering a batch; exiting", NULL);
        abort();
    }
    r->ticket = t;

    dispatch_rules rules = { cfg->broadcast_key, strlen(cfg->broadcast_key),
                             (size_t)cfg->max_record_bytes, cfg->validate_json };
    for (size_t i = 0; i < r->nbatch; i++) {
        const rd_kafka_message_t *m = r->batch[i];
        rec *rc = &r->recs[i];
        memset(rc, 0, sizeof *rc);
        rc->m = m;
        rc->topic = topic_of(r, m);
        int all = 0;
        enum router_invalid why;
        rc->invalid = dispatch_classify(&rules, rc->topic, m->key, m->key_len, m->payload,
                                        m->len, &all, &why) == 0 ? -1 : (int16_t)why;
        rc->all = (uint8_t)all;
        r->m.records++;
        if (rc->invalid >= 0) {
            r->m.invalid[rc->invalid]++;
            log_invalid(r, m, rc->invalid);
        }
    }
    route_batch(r);
}

/* Route the classified batch in hand, or keep holding it (re-decided every
 * 20 ms; a held batch blocks consumption, so nothing after it is stored). */
static void route_batch(router *r)
{
    int mode = decide(r);
    if (mode == ROUTER_HOLD) {
        static const struct timeval again = { 0, 20000 };
        r->holding = 1;
        evtimer_add(r->ev_hold, &again);
        return;
    }
    r->holding = 0;
    if (mode == ROUTER_MODE_TARGETED) {
        uint64_t now = clock_mono_ms();
        lookup_begin(r->lookup);
        for (size_t i = 0; i < r->nbatch; i++) {
            rec *rc = &r->recs[i];
            if (rc->invalid >= 0 || rc->all)
                continue;
            if (lookup_add(r->lookup, rc->m->key, rc->m->key_len, now, &rc->route) != 0) {
                mode = ROUTER_MODE_FALLBACK;   /* ENOMEM: correctness first */
                break;
            }
        }
        if (mode == ROUTER_MODE_TARGETED && lookup_nmiss(r->lookup) > 0) {
            lookup_set_epoch(r->lookup, discovery_epoch(r->disc));
            if (lookup_send(r->lookup) == 0)
                return;   /* on_lookup_done() continues */
            mode = ROUTER_MODE_FALLBACK;
        }
    }
    dispatch_batch(r, (enum router_mode)mode);
}

/* ---- consuming ---------------------------------------------------------- */

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
    size_t bs = (size_t)r->cfg->kafka_batch_size;
    size_t n = r->stopping ? accumulated(r) : consumer_drain(r->consumer, bs);
    if (n == 0)
        return;
    if (n >= bs || r->cfg->kafka_batch_timeout_ms == 0 || r->stopping) {
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
            consumer_drain(r->consumer, (size_t)r->cfg->kafka_batch_size);
        process_batch(r);
    }
}

/* ---- consumer callbacks ------------------------------------------------- */

static void on_available(void *arg)
{
    pump_schedule(arg);
}

static void on_assigned(const rd_kafka_topic_partition_list_t *parts, void *arg)
{
    router *r = arg;
    for (int i = 0; i < parts->cnt; i++)
        router_offsets_reset(r->off, parts->elems[i].topic, parts->elems[i].partition);
    leavegroup_member_changed(r->leavegroup);
}

/* Store what is complete now so the commit on revoke includes it, then
 * forget the partitions' pending segments (tickets still in flight become
 * harmless through the tracker's generations).  No batch is in flight here:
 * rebalances are served from consumer_drain, which runs only between
 * batches, or from consumer_close after the loop ended. */
static void on_revoked(const rd_kafka_topic_partition_list_t *parts, void *arg)
{
    router *r = arg;
    if (!parts) {
        router_offsets_reset_all(r->off);
        return;
    }
    store_offsets(r);
    for (int i = 0; i < parts->cnt; i++)
        router_offsets_reset(r->off, parts->elems[i].topic, parts->elems[i].partition);
}

static void on_brokers_down(int down, void *arg)
{
    router *r = arg;
    r->kafka_down = down;
}

static void on_fatal(void *arg)
{
    router *r = arg;
    r->exit_code = 1;
    raise(SIGTERM);
}

/* ---- lookup callbacks --------------------------------------------------- */

static void on_lookup_done(int failed, void *arg)
{
    router *r = arg;
    if (!r->inflight)
        return;
    if (failed == LOOKUP_STALE) {
        /* the registry was reset under the lookup: its answers (and what
         * they put in the cache) may miss routes */
        route_cache_flush(r->cache);
        discovery_distrust(r->disc);
        route_batch(r);
        return;
    }
    dispatch_batch(r, failed ? ROUTER_MODE_FALLBACK : ROUTER_MODE_TARGETED);
}

static int on_intern(const char *id, size_t len, uint16_t *slot, void *arg)
{
    router *r = arg;
    router_shard *sh = router_shards_intern(r->shards, id, len);
    if (!sh)
        return -1;
    *slot = router_shard_slot(sh);
    return 0;
}

/* ---- discovery callbacks: shard membership ------------------------------ */

static void on_flush(void *arg)
{
    router *r = arg;
    route_cache_flush(r->cache);
}

static void on_invalidate(const char *tok, size_t len, void *arg)
{
    router *r = arg;
    route_cache_invalidate(r->cache, tok, len);
}

static void on_shard_down(const char *id, size_t len, void *arg)
{
    router *r = arg;
    router_shard *sh = router_shards_find(r->shards, id, len);
    if (sh && router_shard_live(sh))
        router_shards_set_dead(r->shards, sh, "shard:down event");
}

static void on_cmd_down(void *arg)
{
    router *r = arg;
    log_kv(LOG_WARN, "redis lookups unavailable; broadcasting to known live shards "
           "until it is back", "u:live_shards",
           (uint64_t)router_shards_live(r->shards), NULL);
}

/* A discovery round: live leases connect, expired ones and shards no longer
 * registered stop being sent to; long-gone slots are compacted. */
static void on_shards(discovery_shard *list, size_t n, void *arg)
{
    router *r = arg;
    uint64_t now = clock_mono_ms();
    size_t ns = router_shards_nslots(r->shards);
    uint8_t *seen = calloc(ns + n + 1, 1);
    if (!seen)
        return;
    for (size_t i = 0; i < n; i++) {
        router_shard *sh = router_shards_intern(r->shards, list[i].id, strlen(list[i].id));
        if (!sh)
            continue;
        seen[router_shard_slot(sh)] = 1;
        if (list[i].lease == DISCOVERY_LEASE_LIVE) {
            if (!list[i].endpoint && !router_shard_live(sh))
                log_kv(LOG_WARN, "shard lease has no endpoint", "s:shard", list[i].id, NULL);
            router_shards_set_live(r->shards, sh, list[i].endpoint);
        } else if (list[i].lease == DISCOVERY_LEASE_EXPIRED) {
            list[i].keep = router_shards_set_lapsed(r->shards, sh, "lease expired", now);
        }
    }
    ns = router_shards_nslots(r->shards);
    for (size_t s = 0; s < ns; s++) {
        router_shard *sh = router_shards_get(r->shards, (uint16_t)s);
        if (!seen[s] && router_shard_live(sh))
            router_shards_set_lapsed(r->shards, sh, "not registered", now);
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
}

/* ---- shard hooks -------------------------------------------------------- */

static void hook_frame(void *t, uint32_t nrec, int done, enum router_drop reason, void *arg)
{
    router *r = arg;
    if (!done)
        router_ticket_dropped(t);   /* counted by router_shards */
    router_tickets_release(r->tickets, t);
}

static void hook_ref(void *t, void *arg)
{
    router_ticket_ref(t);
}

/* ---- shutdown stages ---------------------------------------------------- */

static void finish(router *r)
{
    r->finishing = 1;
    event_base_loopexit(r->base, NULL);
}

/* Stage 2: everything dispatched and written (or dropped): leave the loop. */
static void check_shutdown(router *r)
{
    /* a held batch (and what was consumed after it) is given up unstored:
     * the next owner re-reads it */
    int held = r->inflight && r->holding;
    if (!r->stopping || r->finishing || (r->inflight && !held) ||
        (!held && accumulated(r) > 0) || router_tickets_outstanding(r->tickets) > (uint64_t)held)
        return;
    log_kv(LOG_INFO, held ? "holding: the held batch is left unstored; stopping"
                          : "all queued records written; stopping", NULL);
    finish(r);
}

/* Stage 3 (timeout): drop what is unwritten without marking it done. */
static void shutdown_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    router *r = arg;
    log_kv(LOG_WARN, "shutdown timeout: dropping unwritten records (they are not stored "
           "and will be redelivered)", "u:queued_bytes",
           router_shards_queued_bytes(r->shards), "u:batches",
           router_tickets_outstanding(r->tickets), NULL);
    router_tickets_set_final(r->tickets);
    router_shards_close_all(r->shards, "shutdown timeout");
    finish(r);
}

/* Stage 1: stop reading Kafka, dispatch what is accumulated. */
static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    router *r = arg;
    if (r->stopping) {
        log_kv(LOG_WARN, "second signal: stopping now", "i:signal", (int)sig, NULL);
        router_tickets_set_final(r->tickets);
        router_shards_close_all(r->shards, "second signal");
        finish(r);
        return;
    }
    log_kv(LOG_INFO, "signal received: draining", "i:signal", (int)sig, NULL);
    r->stopping = 1;
    r->stop_at_ms = clock_mono_ms();
    consumer_pause(r->consumer);
    long ms = r->cfg->shutdown_timeout_ms;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(r->ev_shutdown_timeout, &tv);
    if (!r->inflight && accumulated(r) > 0)
        process_batch(r);
    check_shutdown(r);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    router *r = arg;
    router_shards_tick(r->shards, clock_mono_ms());
    /* Safety net: the queue's IO event only fires on empty -> non-empty. */
    if (!r->stopping)
        pump_schedule(r);
}

/* ---- stats and admin views (router_http_callbacks, http.h) ------------ */

static void router_stats_get(void *ud, router_stats *s)
{
    router *r = ud;
    memset(s, 0, sizeof *s);
    s->m = r->m;
    router_gauges *g = &s->g;
    const route_cache_stats *cs = route_cache_get_stats(r->cache);
    g->cache_hits = cs->hits;
    g->cache_misses = cs->misses;
    g->cache_evictions = cs->evictions;
    g->cache_entries = route_cache_count(r->cache);
    g->shards_connected = router_shards_ready(r->shards);
    g->shards_known = router_shards_live(r->shards);
    g->redis_connected = targeted_ready(r);
    g->consumer_lag = r->consumer ? consumer_lag(r->consumer) : -1;
    g->assigned_partitions = r->consumer ? consumer_assigned(r->consumer) : 0;
    g->queue_bytes = router_shards_queued_bytes(r->shards);
    g->nshards = router_shards_nslots(r->shards);
    g->shard_at = router_shards_sample;
    g->shard_ctx = r->shards;
    g->pending_segments = router_offsets_pending(r->off);
    g->fallback = r->cfg->mode == ROUTER_MODE_TARGETED && !targeted_ready(r);
    g->backpressured = r->backpressured;
    g->holding = r->holding && !router_hold_expired(r->hold);
    s->mode = current_mode(r);
    s->stopping = r->stopping;
    s->kafka_down = r->kafka_down;
    s->redis_ok = targeted_ready(r);
    s->lookup_connected = r->disc && discovery_cmd_connected(r->disc);
    s->subscribed = r->disc && discovery_subscribed(r->disc);
    s->uptime_s = (clock_mono_ms() - r->started_ms) / 1000;
}

static int router_stats_shards_json(void *ud, buf *out)
{
    const router *r = ud;
    return router_shards_json(r->shards, out);
}

/* admin API views (router_http_callbacks) */

static void router_admin_state(void *ud, router_adminapi_state *st)
{
    router *r = ud;
    memset(st, 0, sizeof *st);
    st->router_id = r->cfg->id;
    st->mode = router_mode_name(current_mode(r));
    st->holding = r->holding && !router_hold_expired(r->hold);
    st->hold_ms = router_hold_elapsed_ms(r->hold, clock_mono_ms());
    st->holds = r->m.holds;
    st->hold_expired = r->m.hold_expired;
    st->backpressured = r->backpressured;
    st->consumer_lag = r->consumer ? consumer_lag(r->consumer) : -1;
}

static size_t router_admin_shards(void *ud, router_adminapi_shard *out, size_t max)
{
    router *r = ud;
    return router_shards_admin(r->shards, out, max);
}

static long router_admin_partitions(void *ud, consumer_partition *out, size_t max)
{
    router *r = ud;
    long n = r->consumer ? consumer_partitions(r->consumer, out, max) : -1;
    for (long i = 0; i < n && (size_t)i < max; i++)
        out[i].stored = router_offsets_position(r->off, out[i].topic, out[i].partition);
    return n;
}

/* ---- lifecycle ---------------------------------------------------------- */

router *router_new(const router_config *cfg)
{
    router *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->cfg = cfg;
    r->started_ms = clock_mono_ms();
    router_metrics_init(&r->m);
    r->rl_invalid.per_sec = (double)cfg->invalid_log_per_sec;

    r->base = event_base_new();
    if (!r->base)
        goto err;
    r->dns = net_dns_new(r->base);
    if (!r->dns)
        goto err;
    size_t bs = (size_t)cfg->kafka_batch_size;
    r->batch = calloc(bs, sizeof *r->batch);
    r->recs = calloc(bs, sizeof *r->recs);
    r->live_slots = calloc(ROUTER_SHARDS_MAX, sizeof *r->live_slots);
    r->cache = route_cache_new((size_t)cfg->cache_size, (uint64_t)cfg->cache_ttl_ms);
    r->off = router_offsets_new();
    r->hold = router_hold_new((uint64_t)cfg->hold_max_ms, &r->m);
    router_tickets_callbacks tcb = { on_ticket_done, r };
    r->tickets = r->off ? router_tickets_new(r->off, &r->m, &tcb) : NULL;
    if (!r->batch || !r->recs || !r->live_slots || !r->cache || !r->off || !r->hold ||
        !r->tickets) {
        log_kv(LOG_ERROR, "out of memory", NULL);
        goto err;
    }
    router_shards_opts so = {
        .router_id = cfg->id,
        .queue_bytes = (size_t)cfg->shard_queue_bytes,
        .stall_timeout_ms = cfg->shard_stall_timeout_ms,
        .hello_timeout_ms = cfg->shard_hello_timeout_ms,
        .reconnect_max_ms = cfg->shard_reconnect_max_ms,
        .down_grace_ms = cfg->shard_down_grace_ms,
        .dns = r->dns,
        .secret = cfg->ingress_secret,
    };
    router_shards_hooks hooks = { hook_frame, hook_ref, NULL, r };
    r->shards = router_shards_new(r->base, &so, &hooks, &r->m);
    r->ev_pump = event_new(r->base, -1, 0, pump_cb, r);
    r->ev_batch_timer = evtimer_new(r->base, batch_timer_cb, r);
    r->ev_hold = evtimer_new(r->base, hold_cb, r);
    r->ev_tick = event_new(r->base, -1, EV_PERSIST, tick_cb, r);
    r->ev_shutdown_timeout = evtimer_new(r->base, shutdown_timeout_cb, r);
    r->ev_sigterm = evsignal_new(r->base, SIGTERM, signal_cb, r);
    r->ev_sigint = evsignal_new(r->base, SIGINT, signal_cb, r);
    if (!r->shards || !r->ev_pump || !r->ev_batch_timer || !r->ev_hold || !r->ev_tick ||
        !r->ev_shutdown_timeout || !r->ev_sigterm || !r->ev_sigint) {
        log_kv(LOG_ERROR, "out of memory", NULL);
        goto err;
    }
    struct timeval sec = { 1, 0 };
    event_add(r->ev_tick, &sec);
    event_add(r->ev_sigterm, NULL);
    event_add(r->ev_sigint, NULL);

    router_http_callbacks hcb = { router_stats_get, router_stats_shards_json,
                                  router_admin_state, router_admin_shards,
                                  router_admin_partitions, r };
    r->http = router_http_new(r->base, cfg, &hcb);
    if (!r->http)
        goto err;
    discovery_callbacks dcb = { on_flush, on_invalidate, on_shard_down, on_shards,
                                on_cmd_down, r };
    r->disc = discovery_new(r->base, cfg, &r->m, &dcb);
    if (!r->disc) {
        log_kv(LOG_ERROR, "out of memory", NULL);
        goto err;
    }
    discovery_set_dns(r->disc, r->dns);
    lookup_opts lo = { cfg->redis_prefix, cfg->redis_timeout_ms, bs };
    lookup_callbacks lcb = { on_lookup_done, on_intern, r };
    r->lookup = lookup_new(r->base, discovery_cmd(r->disc), r->cache, &r->m, &lo, &lcb);
    if (!r->lookup) {
        log_kv(LOG_ERROR, "out of memory", NULL);
        goto err;
    }
    discovery_start(r->disc);
    consumer_callbacks ccb = { on_available, on_assigned, on_revoked, on_brokers_down,
                               on_fatal, r };
    r->consumer = consumer_new(r->base, cfg, &r->m, &ccb);
    if (!r->consumer)
        goto err;
    /* NULL without KAFKA_EVICT_PREVIOUS (and ROUTER_ID): no member-id record */
    r->leavegroup = leavegroup_new(r->base, r->dns, discovery_cmd(r->disc), r->consumer, cfg);
    pump_schedule(r);   /* records may already be queued */
    char redis_url[600];
    addr_redact_url(cfg->redis_url, redis_url, sizeof redis_url);
    log_kv(LOG_INFO, "router started", "s:id", cfg->id, "s:mode",
           router_mode_name(cfg->mode), "s:group", cfg->kafka_group, "s:topics",
           cfg->kafka_topics, "s:redis", redis_url, "s:http", cfg->http_addr, NULL);
    return r;
err:
    router_free(r);
    return NULL;
}

/* Records not dispatched yet are released unstored: they are redelivered
 * to whoever consumes next. */
static void release_undispatched(router *r)
{
    if (r->consumer)
        consumer_discard(r->consumer);
    for (size_t i = 0; i < r->nbatch; i++)
        rd_kafka_message_destroy(r->batch[i]);
    r->nbatch = 0;
}

/* Final store, commit, leave the group.  After a signal the whole exit is
 * bounded by SHUTDOWN_TIMEOUT_MS + 2 s whatever the broker does: the close
 * gets what is left of it (less 500 ms for the rest of the teardown), at
 * least 200 ms. */
static void close_consumer(router *r)
{
    if (!r->consumer)
        return;
    store_offsets(r);
    long ms = CONSUMER_CLOSE_MS_DEFAULT;
    if (r->stop_at_ms) {
        int64_t left = (int64_t)(r->stop_at_ms + (uint64_t)r->cfg->shutdown_timeout_ms +
                                 ROUTER_EXIT_SLACK_MS - 600) - (int64_t)clock_mono_ms();
        ms = left > 200 ? (long)left : 200;
    }
    consumer_close(r->consumer, ms);
}

int router_run(router *r)
{
    event_base_dispatch(r->base);
    release_undispatched(r);
    close_consumer(r);
    log_kv(LOG_INFO, "router stopped", "u:records", r->m.records, "u:offsets_stored",
           r->m.offsets_stored, NULL);
    return r->exit_code;
}

void router_free(router *r)
{
    if (!r)
        return;
    release_undispatched(r);
    close_consumer(r);
    consumer_free(r->consumer);
    r->consumer = NULL;
    /* Dropping shard queues releases the tickets still referenced. */
    if (r->tickets)
        router_tickets_set_final(r->tickets);
    router_shards_free(r->shards);
    r->shards = NULL;
    router_ticket_discard(r->tickets, r->ticket);
    r->ticket = NULL;
    router_tickets_free(r->tickets);
    r->tickets = NULL;
    /* Connections first: their pending replies still reach the lookup. */
    discovery_free(r->disc);
    r->disc = NULL;
    /* after the links: their pending replies still reach it */
    leavegroup_free(r->leavegroup);
    r->leavegroup = NULL;
    lookup_free(r->lookup);
    r->lookup = NULL;
    router_http_free(r->http);
    r->http = NULL;
    if (r->ev_pump) event_free(r->ev_pump);
    if (r->ev_batch_timer) event_free(r->ev_batch_timer);
    if (r->ev_hold) event_free(r->ev_hold);
    if (r->ev_tick) event_free(r->ev_tick);
    if (r->ev_shutdown_timeout) event_free(r->ev_shutdown_timeout);
    if (r->ev_sigterm) event_free(r->ev_sigterm);
    if (r->ev_sigint) event_free(r->ev_sigint);
    route_cache_free(r->cache);
    router_offsets_free(r->off);
    router_hold_free(r->hold);
    free(r->batch);
    free(r->recs);
    free(r->live_slots);
    if (r->dns)
        net_dns_free(r->dns);
    if (r->base)
        event_base_free(r->base);
    free(r);
}
