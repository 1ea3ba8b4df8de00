#include "shard/registry.h"
#include "shard/map.h"
#include "shard/registry_redis.h"
#include "common/addr.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/schema.h"
#include "common/sweep.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#define HAVE_UNKNOWN 2
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
/* a holder's renewal shows as its lease's PTTL growing by more than this */
#define OTHER_RENEW_MARGIN_MS 50

/* R_IDLE: no usable connection (it reconnects by itself); R_READY: registered. */
enum reg_state { R_IDLE, R_READY };

typedef struct reg_entry {
    shard_map_node node;
    struct reg_entry *qnext;
    uint8_t want;       /* 1 = shard should be in route:<token> */
    uint8_t have;       /* 0, 1 or HAVE_UNKNOWN */
    uint8_t sent;       /* op of the command in flight */
    uint8_t inflight;
    uint8_t queued;
    uint8_t failed;     /* last attempt got an error reply: retry later */
    uint8_t stale;      /* in flight across a registry reset: resend */
    uint8_t need;       /* to be confirmed before the lease says `synced` */
    char tok[];
} reg_entry;

typedef struct registry_layout registry_layout;

struct shard_registry {
    shard_ctx *ctx;
    registry_callbacks cb;   /* advert: the lease's view of the clients */
    const registry_layout *layout;   /* REDIS_CLUSTER_KEYS: the key layout */
    registry_redis rr;       /* the connection (shard/registry_redis.h) */
    enum reg_state state;
    int ever_ready;          /* leftovers of a previous life cleaned */
    int freeing;
    shard_map map;
    reg_entry *qhead, *qtail;
    long inflight;           /* route commands */
    long outstanding;        /* every command with a callback */
    int lease_inflight;
    int claimed;             /* our lease is written: routes may go out */
    int refused;             /* another instance holds SHARD_ID */
    char instance[33];       /* this process (lease field `instance`) */
    int other_seen;          /* a claim found another instance's lease */
    long long other_pttl;    /* ... with this PTTL ... */
    uint64_t other_ms;       /* ... answered then (monotonic ms) */
    char *scan_cursor;       /* paged resync: next SSCAN cursor, NULL: none */
    int scan_inflight;       /* an SSCAN page is unanswered */
    int scan_again;          /* restart the scan from 0 once it is answered */
    char epoch[80];          /* registry epoch seen by the last lease write */
    char synced[80];         /* epoch under which every route was confirmed */
    long need;               /* entries still to confirm since the last resync */
    uint64_t progress_ms;    /* last reply, or when outstanding became > 0 */
    int stopping;
    void (*done)(void *);
    void *done_ud;
    struct event *pump_ev, *hb_ev, *watch_ev, *done_ev;
    char host[256];
    char *k_lease, *k_tokens, *k_routes, *k_shards, *k_epoch, *endpoint;
    char *k_route_prefix;    /* "<prefix>route:" */
    char *k_sweep;           /* the sweep marker */
    buf k_route;             /* scratch: one P route:<token> */
    char route_sha[41];      /* SHA-1 of the layout's route script, hex */
    double rate_tokens;      /* REDIS_ROUTE_RATE bucket */
    uint64_t rate_ms;
    log_ratelimit rl;
};

/* Up to REDIS_ROUTE_BATCH route updates of one op, sent as the layout's
 * commands (`parts` replies due; the worst of them decides). */
typedef struct reg_batch {
    uint8_t op;              /* 1 add, 0 del */
    uint8_t eval;            /* sent as EVAL (after NOSCRIPT) */
    uint8_t lost, failed, noscript;   /* seen among the replies */
    size_t parts;
    size_t n;
    reg_entry *e[];
} reg_batch;

enum batch_outcome { BATCH_OK, BATCH_FAILED, BATCH_LOST };

typedef struct lease_op lease_op;
typedef struct lease_args lease_args;

/*
 * The key layout (REDIS_CLUSTER_KEYS, common/schema.h): all that differs
 * between the default and the cluster-safe layout, chosen once when the
 * registry is made (layouts[], below); the rest is one code path.  Key
 * names come from common/schema.h given `cluster`.
 */
struct registry_layout {
    int cluster;               /* common/schema.h's and sweep_opts' flag */
    const char *route_script;  /* the route script `batch` sends (EVALSHA) */
    /* Send b's route updates, each command through batch_part.  0, or -1
     * when it stopped (the b->parts commands sent are answered). */
    int (*batch)(shard_registry *r, reg_batch *b);
    /* Send a lease write, each command through lease_part, after setting
     * op->parts to the number it has. */
    void (*lease)(shard_registry *r, lease_op *op, const lease_args *a);
};

/* ---- helpers ---------------------------------------------------------- */

static char *cat3(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s%s", a, b, c);
    return s;
}

static void cmd_sent(shard_registry *r)
{
    if (r->outstanding++ == 0)
        r->progress_ms = clock_mono_ms();
    r->ctx->m.shard_redis_commands_total++;
}

static void cmd_done(shard_registry *r)
{
    if (r->outstanding > 0)
        r->outstanding--;
    r->progress_ms = clock_mono_ms();
}

static int send_argv(shard_registry *r, registry_reply_fn *fn, void *priv,
                     int argc, const char **argv, const size_t *lens)
{
    if (r->rr.ops->send(r->rr.impl, fn, priv, argc, argv, lens) != 0)
        return -1;
    if (fn)
        cmd_sent(r);
    else
        r->ctx->m.shard_redis_commands_total++;
    return 0;
}

static void entry_free_if_idle(shard_registry *r, reg_entry *e)
{
    if (e->want == 0 && e->have == 0 && !e->inflight && !e->queued) {
        if (e->need && r->need > 0)
            r->need--;
        shard_map_remove(&r->map, &e->node);
        free(e);
    }
}

static void enqueue(shard_registry *r, reg_entry *e)
{
    if (e->queued || e->inflight)
        return;
    e->queued = 1;
    e->qnext = NULL;
    if (r->qtail)
        r->qtail->qnext = e;
    else
        r->qhead = e;
    r->qtail = e;
    event_active(r->pump_ev, EV_TIMEOUT, 1);
}

static void reg_error(shard_registry *r, const char *msg, const char *detail)
{
    uint64_t supp = 0;
    r->ctx->m.shard_redis_errors_total++;
    if (log_rl_allow(&r->rl, &supp))
        log_kv(LOG_WARN, msg, "s:error", detail, "u:suppressed", supp, NULL);
}

/* ---- route updates -------------------------------------------------- */

static void check_synced(shard_registry *r);
static void scan_next(shard_registry *r);

/* The batch's entries got their answer: the connection was lost, an error,
 * or success (every route set now matches what was sent, unless the
 * registry was reset while the batch was in flight: then it is resent). */
static void batch_finish(shard_registry *r, reg_batch *b, enum batch_outcome out)
{
    for (size_t i = 0; i < b->n; i++) {
        reg_entry *e = b->e[i];
        e->inflight = 0;
        if (r->inflight > 0)
            r->inflight--;
        if (out == BATCH_LOST) {
            e->have = HAVE_UNKNOWN;          /* connection lost: resync later */
        } else if (out == BATCH_FAILED) {
            e->have = HAVE_UNKNOWN;
            e->failed = 1;                   /* retried by the heartbeat */
        } else if (e->stale) {
            e->have = HAVE_UNKNOWN;          /* sent before a registry reset */
            enqueue(r, e);
        } else {
            e->have = e->sent;
            if (e->want != e->have)
                enqueue(r, e);
            else if (e->need) {
                e->need = 0;
                r->need--;
            }
        }
        e->stale = 0;
        entry_free_if_idle(r, e);
    }
    free(b);
    check_synced(r);
}

static int send_batch(shard_registry *r, reg_batch *b);

/* One reply of a batch; the last one finishes it. */
static void on_batch_part(void *arg, const redisReply *rep, void *priv)
{
    shard_registry *r = arg;
    reg_batch *b = priv;
    int last = --b->parts == 0;
    if (r->freeing) {
        if (last) {
            for (size_t i = 0; i < b->n; i++)
                b->e[i]->inflight = 0;
            free(b);
        }
        return;
    }
    cmd_done(r);
    if (!rep) {
        b->lost = 1;
    } else if (rep->type == REDIS_REPLY_ERROR) {
        if (!b->eval && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
            b->noscript = 1;
        } else {
            b->failed = 1;
            reg_error(r, "redis route update failed", rep->str);
        }
    }
    if (!last)
        return;
    if (b->noscript && !b->lost && !b->failed) {
        /* Redis restarted (or SCRIPT FLUSH): send it all again (idempotent)
         * with the body, which also caches it for the EVALSHAs that follow */
        b->eval = 1;
        b->noscript = 0;
        r->ctx->m.shard_redis_script_loads_total++;
        if (send_batch(r, b) == 0)
            return;
        reg_error(r, "redis route update failed", "NOSCRIPT, and EVAL not sent");
        b->failed = 1;
    }
    int lost = b->lost;
    batch_finish(r, b, lost ? BATCH_LOST
                      : b->failed || b->noscript ? BATCH_FAILED : BATCH_OK);
    if (!lost)
        event_active(r->pump_ev, EV_TIMEOUT, 1);
}

/* One command of b, answered through on_batch_part.  0 or -1. */
static int batch_part(shard_registry *r, reg_batch *b, int argc,
                      const char **argv, const size_t *lens)
{
    if (send_argv(r, on_batch_part, b, argc, argv, lens) != 0)
        return -1;
    b->parts++;
    return 0;
}

/* The route script of the layout: by its SHA-1 (EVALSHA), or its body after
 * a NOSCRIPT (EVAL). */
static void route_script(const shard_registry *r, const reg_batch *b,
                         const char **cmd, const char **script);

/* Default layout: one EVALSHA SCHEMA_LUA_ROUTE_BATCH for the whole batch
 * (route sets, reverse index and PUBLISH, atomic). */
static int batch_standard(shard_registry *r, reg_batch *b)
{
    size_t argc = 8 + b->n;
    const char **argv = malloc(argc * sizeof *argv);
    size_t *lens = malloc(argc * sizeof *lens);
    int rc = -1;
    if (!argv || !lens)
        goto out;
    route_script(r, b, &argv[0], &argv[1]);
    argv[2] = "2";
    argv[3] = r->k_tokens;
    argv[4] = r->k_routes;
    argv[5] = b->op ? "add" : "del";
    argv[6] = r->ctx->set->shard_id;
    argv[7] = r->k_route_prefix;
    for (size_t i = 0; i < 8; i++)
        lens[i] = strlen(argv[i]);
    for (size_t i = 0; i < b->n; i++) {
        argv[8 + i] = b->e[i]->tok;
        lens[8 + i] = b->e[i]->node.klen;
    }
    rc = batch_part(r, b, (int)argc, argv, lens);
out:
    free(argv);
    free(lens);
    return rc;
}

/*
 * Cluster layout: no command touches two slots, so the reverse index gets
 * one SADD / SREM of every token and each route set its own
 * SCHEMA_LUA_ROUTE_ONE, pipelined in the order that leaves no route without
 * its reverse-index entry if the shard dies halfway: index first when
 * adding, route sets first when removing.
 */
static int batch_cluster(shard_registry *r, reg_batch *b)
{
    const shard_settings *s = r->ctx->set;
    size_t argc = 2 + b->n;
    const char **argv = malloc(argc * sizeof *argv);
    size_t *lens = malloc(argc * sizeof *lens);
    int rc = -1;
    if (!argv || !lens)
        goto out;
    argv[0] = b->op ? "SADD" : "SREM";
    lens[0] = 4;
    argv[1] = r->k_tokens;
    lens[1] = strlen(r->k_tokens);
    for (size_t i = 0; i < b->n; i++) {
        argv[2 + i] = b->e[i]->tok;
        lens[2 + i] = b->e[i]->node.klen;
    }
    /* adding: the reverse index first */
    if (b->op && batch_part(r, b, (int)argc, argv, lens) != 0)
        goto out;
    /* one route set each: what does not depend on the token, once */
    const char *a[8] = { NULL, NULL, "1", NULL, b->op ? "add" : "del",
                         s->shard_id, r->k_routes, NULL };
    route_script(r, b, &a[0], &a[1]);
    size_t l[8] = { strlen(a[0]), strlen(a[1]), 1, 0, 3,
                    strlen(s->shard_id), strlen(r->k_routes), 0 };
    for (size_t i = 0; i < b->n; i++) {
        const reg_entry *e = b->e[i];
        if (!(a[3] = schema_route_key_buf(&r->k_route, s->redis_prefix,
                                          e->tok, e->node.klen)))
            goto out;
        l[3] = r->k_route.len;
        a[7] = e->tok;
        l[7] = e->node.klen;
        if (batch_part(r, b, 8, a, l) != 0)
            goto out;
    }
    /* removing: the reverse index last */
    if (!b->op && batch_part(r, b, (int)argc, argv, lens) != 0)
        goto out;
    rc = 0;
out:
    free(argv);
    free(lens);
    return rc;
}

/* Send b's route updates in the layout's commands.  0, or -1 if nothing was
 * sent (a partly sent batch finishes through its replies, failed). */
static int send_batch(shard_registry *r, reg_batch *b)
{
    b->lost = b->failed = b->noscript = 0;
    b->parts = 0;
    if (r->layout->batch(r, b) == 0)
        return 0;
    if (b->parts == 0)
        return -1;
    b->failed = 1;   /* the replies of what went out finish the batch */
    return 0;
}

/* REDIS_ROUTE_RATE: how many route updates may go out now. */
static long rate_allowance(shard_registry *r, uint64_t now)
{
    double rate = r->ctx->set->redis_route_rate;
    if (rate <= 0)
        return LONG_MAX;
    r->rate_tokens += (double)(now - r->rate_ms) * rate / 1000.0;
    if (r->rate_tokens > rate)
        r->rate_tokens = rate;   /* burst: one second's worth */
    r->rate_ms = now;
    return (long)r->rate_tokens;
}

/*
 * Send queued route updates: one script call per batch of up to
 * REDIS_ROUTE_BATCH tokens with the same op, at most REDIS_MAX_INFLIGHT
 * tokens unanswered and REDIS_ROUTE_RATE per second.  Updates of a token
 * that churns while queued collapse into one (want vs have), so a churn
 * flood costs Redis at most the rate, and the lease refresh on the same
 * connection waits behind at most REDIS_MAX_INFLIGHT updates.
 */
static void pump(shard_registry *r)
{
    /* after shutdown started, the cleanup script covers what is queued;
     * before the lease is claimed nothing of ours may be written */
    if (r->state != R_READY || r->stopping || !r->claimed)
        return;
    const shard_settings *s = r->ctx->set;
    uint64_t now = clock_mono_ms();
    long allow = rate_allowance(r, now);
    size_t maxb = (size_t)s->redis_route_batch;
    while (r->qhead && r->inflight < s->redis_inflight && allow > 0) {
        size_t room = (size_t)(s->redis_inflight - r->inflight);
        if (room > maxb)
            room = maxb;
        if ((long)room > allow)
            room = (size_t)allow;
        reg_batch *b = malloc(sizeof *b + room * sizeof b->e[0]);
        if (!b)
            break;
        b->n = 0;
        b->eval = 0;
        b->op = 2;   /* set by the first entry that needs work */
        while (r->qhead && b->n < room) {
            reg_entry *e = r->qhead;
            if (e->want != e->have && b->op != 2 && e->want != b->op)
                break;   /* the other op starts the next batch (order kept) */
            r->qhead = e->qnext;
            if (!r->qhead)
                r->qtail = NULL;
            e->queued = 0;
            if (e->want == e->have) {
                entry_free_if_idle(r, e);
                continue;
            }
            b->op = e->want;
            b->e[b->n++] = e;
        }
        if (b->n == 0) {
            free(b);
            break;
        }
        if (send_batch(r, b) != 0) {
            /* hiredis refused (out of memory): the heartbeat retries */
            for (size_t i = 0; i < b->n; i++)
                b->e[i]->failed = 1;
            free(b);
            break;
        }
        for (size_t i = 0; i < b->n; i++) {
            b->e[i]->inflight = 1;
            b->e[i]->sent = b->op;
        }
        r->inflight += (long)b->n;
        r->ctx->m.shard_redis_route_updates_total += b->n;
        r->rate_tokens -= (double)b->n;
        allow -= (long)b->n;
    }
    if (r->qhead && allow <= 0 && r->inflight < s->redis_inflight) {
        /* rate-limited: come back when the bucket has refilled a batch */
        double rate = s->redis_route_rate;
        long ms = (long)(1000.0 * (double)maxb / rate);
        if (ms < 1)
            ms = 1;
        if (ms > 1000)
            ms = 1000;
        struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
        event_add(r->pump_ev, &tv);
    }
    if (!r->qhead)
        scan_next(r);   /* the previous page's leftovers are all sent */
}

static void on_pump(evutil_socket_t fd, short what, void *arg)
{
    pump(arg);
}

void shard_registry_token(shard_registry *r, const char *tok, size_t len,
                          int add)
{
    if (!r || r->stopping)
        return;
    shard_map_node *n = shard_map_find(&r->map, tok, len);
    reg_entry *e;
    if (n) {
        e = SHARD_MAP_ENTRY(n, reg_entry, node);
    } else {
        if (!add)
            return;
        e = calloc(1, sizeof(*e) + len + 1);
        if (!e) {
            reg_error(r, "out of memory registering token", NULL);
            return;
        }
        memcpy(e->tok, tok, len);
        e->node.key = e->tok;
        e->node.klen = (uint32_t)len;
        e->have = 0;     /* cleaned at first connect; resynced on reconnect */
        if (shard_map_insert(&r->map, &e->node) != 0) {
            free(e);
            reg_error(r, "out of memory registering token", NULL);
            return;
        }
    }
    e->want = add ? 1 : 0;
    if (e->want != e->have)
        enqueue(r, e);
    else
        entry_free_if_idle(r, e);
}

/* ---- lease ------------------------------------------------------------ */

static void requeue_all(shard_registry *r)
{
    size_t it = 0;
    shard_map_node *cur = NULL, *n;
    while ((n = shard_map_next(&r->map, &it, &cur))) {
        reg_entry *e = SHARD_MAP_ENTRY(n, reg_entry, node);
        e->have = HAVE_UNKNOWN;
        e->failed = 0;
        if (e->inflight)
            e->stale = 1;
        if (!e->need) {
            e->need = 1;
            r->need++;
        }
        enqueue(r, e);
    }
}

static void scan_reset(shard_registry *r)
{
    free(r->scan_cursor);
    r->scan_cursor = NULL;
    r->scan_inflight = 0;
    r->scan_again = 0;
}

/* One SSCAN page of our reverse index: queue the removal of tokens Redis
 * holds for us that nobody here wants (a previous life's leftovers).  The
 * next page is asked for once the queue has drained (pump), so memory
 * stays at one page of leftovers whatever the size of the index. */
static void on_scan(void *arg, const redisReply *rep, void *priv)
{
    shard_registry *r = arg;
    if (r->freeing)
        return;
    cmd_done(r);
    r->scan_inflight = 0;
    if (!rep) {
        scan_reset(r);        /* the reconnect resyncs */
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_ARRAY) {
        reg_error(r, "redis SSCAN failed",
                  rep->type == REDIS_REPLY_ERROR ? rep->str : "type");
        scan_reset(r);
        return;
    }
    if (r->scan_again) {
        r->scan_again = 0;
        free(r->scan_cursor);
        r->scan_cursor = strdup("0");
        scan_next(r);
        return;
    }
    const redisReply *page = rep->element[1];
    for (size_t i = 0; i < page->elements; i++) {
        const redisReply *m = page->element[i];
        if (m->type != REDIS_REPLY_STRING)
            continue;
        shard_map_node *n = shard_map_find(&r->map, m->str, m->len);
        if (n)
            continue;      /* known: its entry is already queued */
        reg_entry *e = calloc(1, sizeof(*e) + m->len + 1);
        if (!e)
            continue;
        memcpy(e->tok, m->str, m->len);
        e->node.key = e->tok;
        e->node.klen = (uint32_t)m->len;
        e->have = 1;
        if (shard_map_insert(&r->map, &e->node) != 0) {
            free(e);
            continue;
        }
        enqueue(r, e);
    }
    free(r->scan_cursor);
    r->scan_cursor = strcmp(rep->element[0]->str, "0") != 0
                   ? strdup(rep->element[0]->str) : NULL;
    if (r->scan_cursor && !r->qhead)
        scan_next(r);
}

/* The next SSCAN page (REDIS_CHUNK per call), if one is due. */
static void scan_next(shard_registry *r)
{
    if (!r->scan_cursor || r->scan_inflight || r->state != R_READY)
        return;
    char count[24];
    snprintf(count, sizeof count, "%ld", r->ctx->set->redis_chunk);
    const char *argv[5] = { "SSCAN", r->k_tokens, r->scan_cursor, "COUNT", count };
    size_t lens[5];
    for (int i = 0; i < 5; i++)
        lens[i] = strlen(argv[i]);
    if (send_argv(r, on_scan, NULL, 5, argv, lens) == 0)
        r->scan_inflight = 1;
}

static void publish_up(shard_registry *r)
{
    char ev[300];
    snprintf(ev, sizeof(ev), "%s%s", SCHEMA_EVENT_SHARD_UP,
             r->ctx->set->shard_id);
    const char *argv[3] = { "PUBLISH", r->k_routes, ev };
    size_t lens[3] = { 7, strlen(r->k_routes), strlen(ev) };
    send_argv(r, NULL, NULL, 3, argv, lens);
}

/* Page through our reverse index (SSCAN, on_scan): tokens Redis holds
 * for us that nobody here wants are removed.  A scan already running
 * starts again from the beginning once its page is answered. */
static void send_members(shard_registry *r)
{
    if (r->scan_inflight) {
        r->scan_again = 1;
        return;
    }
    free(r->scan_cursor);
    r->scan_cursor = strdup("0");
    scan_next(r);
}

static void resync(shard_registry *r)
{
    send_members(r);
    requeue_all(r);
}

enum lease_mode { LEASE_RENEW = 0, LEASE_CLAIM };

static void write_lease(shard_registry *r, enum lease_mode mode);

/* Every route the shard held when it last (re)registered is confirmed under
 * the current epoch: say so in the lease (`synced`), so routers trust "no
 * route" again (docs/reliability.md).  Tokens subscribed since then do not
 * count: they register like any new subscription. */
static void check_synced(shard_registry *r)
{
    if (r->state != R_READY || r->stopping || !r->claimed || !r->epoch[0] ||
        strcmp(r->synced, r->epoch) == 0 || r->need > 0)
        return;
    snprintf(r->synced, sizeof r->synced, "%s", r->epoch);
    log_kv(LOG_INFO, "routes confirmed in redis", "s:epoch", r->epoch,
           "I:tokens", (int64_t)r->map.n, NULL);
    /* routers judge again on shard:up, after the lease write (same
     * connection, so Redis runs them in this order) */
    write_lease(r, LEASE_RENEW);
    publish_up(r);
}

/* Another instance holds our SHARD_ID. */
static void refuse(shard_registry *r, const char *host, const char *pid)
{
    r->refused = 1;
    r->stopping = 1;
    r->ctx->exit_code = 1;
    log_kv(LOG_ERROR, "another live shard holds this SHARD_ID; exiting (its "
           "routes and lease are left alone)", "s:id", r->ctx->set->shard_id,
           "s:other_host", host, "s:other_pid", pid, NULL);
    event_base_loopexit(r->ctx->base, NULL);
}

/*
 * A claim found the lease held by another instance (pttl: that lease's
 * PTTL).  Only the `instance` field decides who holds it, never pid or
 * host (two containers may both run it as pid 1 on the same host name):
 * the claim is retried every heartbeat until either the lease is gone
 * (its holder died: the claim then succeeds, as after a SIGKILL) or it
 * has been renewed since the last look (its PTTL grew by more than a
 * margin: the holder is alive, and this process refuses to start).
 */
static void held_by_other(shard_registry *r, const char *host, const char *pid,
                          long long pttl)
{
    uint64_t now = clock_mono_ms();
    if (r->other_seen && pttl > 0) {
        long long expect = r->other_pttl - (long long)(now - r->other_ms);
        if (pttl > expect + OTHER_RENEW_MARGIN_MS) {
            refuse(r, host, pid);
            return;
        }
    }
    if (!r->other_seen)
        log_kv(LOG_WARN, "the lease of this SHARD_ID is held by another "
               "instance; waiting until it expires (a dead previous run) or is "
               "renewed (a live duplicate: then exiting)", "s:id",
               r->ctx->set->shard_id, "s:other_host", host, "s:other_pid", pid,
               "I:pttl_ms", (int64_t)pttl, NULL);
    r->other_seen = 1;
    r->other_pttl = pttl;
    r->other_ms = now;
}

/*
 * What a lease write answered: st -2 (a router's sweep of this id runs;
 * nothing written, the heartbeat tries again), -1 (another instance holds
 * the lease: its host, pid and PTTL), else whether the lease existed
 * before (0|1); epoch is the registry epoch, NULL if not read.
 */
static void lease_result(shard_registry *r, enum lease_mode mode, long long st,
                         const char *host, const char *pid, long long pttl,
                         const char *epoch)
{
    if (st == -2) {
        reg_error(r, "a router is sweeping this SHARD_ID's expired "
                  "registration; lease write retried", r->ctx->set->shard_id);
        return;
    }
    if (st < 0) {
        if (mode == LEASE_CLAIM)
            held_by_other(r, host, pid, pttl);
        else
            refuse(r, host, pid);   /* our lease lapsed and was claimed */
        return;
    }
    r->other_seen = 0;
    if (epoch) {
        int changed = r->epoch[0] && strcmp(r->epoch, epoch) != 0;
        snprintf(r->epoch, sizeof r->epoch, "%s", epoch);
        if (changed && mode == LEASE_RENEW && st == 1 && !r->stopping) {
            /* lease kept but the registry generation changed (another
             * writer recreated it first): our routes may be gone */
            log_kv(LOG_WARN, "redis registry was reset; re-registering", NULL);
            publish_up(r);
            resync(r);
        }
    }
    if (mode != LEASE_RENEW) {
        r->claimed = 1;
        /* the claim leaves a previous life's reverse index: its tokens
         * nobody here wants are removed like any stale route, page by page */
        send_members(r);
        publish_up(r);
        pump(r);
    } else if (st == 0 && !r->stopping) {
        /* The lease had expired (a stall longer than the TTL) or Redis was
         * emptied: routers may have cleaned our routes, so register
         * everything again. */
        log_kv(LOG_WARN, "shard lease had expired; re-registering", NULL);
        publish_up(r);
        resync(r);
    }
    check_synced(r);
}

/* Which reply of a lease write this is (lease_op.kind). */
enum lease_part {
    PART_LEASE,        /* the lease script: {st} / {-1, host, pid, PTTL} / {-2} */
    PART_LEASE_EPOCH,  /* the same, {st, epoch} on success (SCHEMA_LUA_LEASE) */
    PART_PLAIN,        /* any non-error reply */
    PART_EPOCH,        /* SCHEMA_LUA_EPOCH: {created, epoch, ...} */
};

/* A lease write: the layout's commands (`parts`), answered in order. */
struct lease_op {
    enum lease_mode mode;
    int parts;                /* commands the layout's write has */
    int sent, got;
    int lost, bad;
    long long st, pttl;
    enum lease_part kind[4];  /* of each command sent */
    char host[256], pid[24], epoch[80], err[160];
};

static void lease_op_bad(lease_op *op, const redisReply *rep)
{
    if (op->bad)
        return;
    op->bad = 1;
    snprintf(op->err, sizeof op->err, "%s",
             rep->type == REDIS_REPLY_ERROR ? rep->str : "bad reply");
}

/* The lease script's answer (PART_LEASE, PART_LEASE_EPOCH). */
static void lease_op_lease(lease_op *op, const redisReply *rep,
                           enum lease_part kind)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER) {
        lease_op_bad(op, rep);
        return;
    }
    long long st = rep->element[0]->integer;
    if (st != -2 && rep->elements < 2 && (st == -1 || kind == PART_LEASE_EPOCH)) {
        lease_op_bad(op, rep);
        return;
    }
    op->st = st;
    if (st == -1) {
        if (rep->element[1]->type == REDIS_REPLY_STRING)
            snprintf(op->host, sizeof op->host, "%s", rep->element[1]->str);
        if (rep->elements > 2 && rep->element[2]->type == REDIS_REPLY_STRING)
            snprintf(op->pid, sizeof op->pid, "%s", rep->element[2]->str);
        if (rep->elements > 3 && rep->element[3]->type == REDIS_REPLY_INTEGER)
            op->pttl = rep->element[3]->integer;
    } else if (st >= 0 && kind == PART_LEASE_EPOCH &&
               rep->element[1]->type == REDIS_REPLY_STRING) {
        snprintf(op->epoch, sizeof op->epoch, "%s", rep->element[1]->str);
    }
}

static void on_lease_part(void *arg, const redisReply *rep, void *priv)
{
    shard_registry *r = arg;
    lease_op *op = priv;
    int idx = op->got++, last = op->got == op->sent;
    if (r->freeing) {
        if (last)
            free(op);
        return;
    }
    cmd_done(r);
    if (!rep) {
        op->lost = 1;
    } else if (rep->type == REDIS_REPLY_ERROR) {
        lease_op_bad(op, rep);
    } else if (op->kind[idx] == PART_LEASE || op->kind[idx] == PART_LEASE_EPOCH) {
        lease_op_lease(op, rep, op->kind[idx]);
    } else if (op->kind[idx] == PART_EPOCH) {
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 ||
            rep->element[1]->type != REDIS_REPLY_STRING)
            lease_op_bad(op, rep);
        else
            snprintf(op->epoch, sizeof op->epoch, "%s", rep->element[1]->str);
    }
    if (!last)
        return;
    r->lease_inflight = 0;
    if (!op->lost && op->sent < op->parts && !op->bad) {
        op->bad = 1;
        snprintf(op->err, sizeof op->err, "%s", "command not sent");
    }
    /* lost: the reconnect writes it again; a refusal is an answer even if
     * a later part failed */
    if (!op->lost && op->bad && op->st >= 0)
        reg_error(r, "redis lease update failed", op->err);
    else if (!op->lost)
        lease_result(r, op->mode, op->st, op->host, op->pid, op->pttl,
                     op->epoch[0] ? op->epoch : NULL);
    free(op);
}

/* One command of a lease write, answered through on_lease_part.  0 or -1. */
static int lease_part(shard_registry *r, lease_op *op, enum lease_part kind,
                      int argc, const char **argv)
{
    size_t lens[32];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    if (send_argv(r, on_lease_part, op, argc, argv, lens) != 0)
        return -1;
    op->kind[op->sent++] = kind;
    return 0;
}

/* What every lease write says, in both layouts. */
struct lease_args {
    const char *mode;        /* "claim" | "renew" */
    const char *ttl;         /* ms */
    const char *fresh;       /* a fresh epoch value, if the epoch is absent */
    const char *fields[18];  /* field, value pairs of the lease hash */
};

/* Default layout: one EVAL SCHEMA_LUA_LEASE (lease, P shards, P epoch). */
static void lease_standard(shard_registry *r, lease_op *op, const lease_args *a)
{
    const char *argv[30] = { "EVAL", SCHEMA_LUA_LEASE, "4", r->k_lease,
                             r->k_shards, r->k_epoch, r->k_sweep, r->instance,
                             a->ttl, r->ctx->set->shard_id, a->fresh, a->mode };
    memcpy(argv + 12, a->fields, sizeof a->fields);
    op->parts = 1;
    lease_part(r, op, PART_LEASE_EPOCH, 30, argv);
}

/* Cluster layout: SCHEMA_LUA_LEASE_CLUSTER, SADD P shards, SCHEMA_LUA_EPOCH,
 * pipelined: the lease first, so a shard in P shards that routers read as
 * dead is only ever one whose lease expired.  (A refused claim still adds
 * the id to P shards, where the live holder already is.) */
static void lease_cluster(shard_registry *r, lease_op *op, const lease_args *a)
{
    const char *argv[26] = { "EVAL", SCHEMA_LUA_LEASE_CLUSTER, "2", r->k_lease,
                             r->k_sweep, r->instance, a->ttl, a->mode };
    memcpy(argv + 8, a->fields, sizeof a->fields);
    const char *sadd[3] = { "SADD", r->k_shards, r->ctx->set->shard_id };
    const char *ep[5] = { "EVAL", SCHEMA_LUA_EPOCH, "1", r->k_epoch, a->fresh };
    op->parts = 3;
    if (lease_part(r, op, PART_LEASE, 26, argv) == 0 &&
        lease_part(r, op, PART_PLAIN, 3, sadd) == 0)
        lease_part(r, op, PART_EPOCH, 5, ep);
}

/* [REDIS_CLUSTER_KEYS] */
static const registry_layout layouts[2] = {
    { 0, SCHEMA_LUA_ROUTE_BATCH, batch_standard, lease_standard },
    { 1, SCHEMA_LUA_ROUTE_ONE, batch_cluster, lease_cluster },
};

static void route_script(const shard_registry *r, const reg_batch *b,
                         const char **cmd, const char **script)
{
    *cmd = b->eval ? "EVAL" : "EVALSHA";
    *script = b->eval ? r->layout->route_script : r->route_sha;
}

static void write_lease(shard_registry *r, enum lease_mode mode)
{
    shard_ctx *ctx = r->ctx;
    const shard_settings *s = ctx->set;
    char pid[24], started[24], conns[24], toks[24], ttl[24], fresh[33];
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    snprintf(started, sizeof(started), "%llu",
             (unsigned long long)ctx->start_wall_ms);
    registry_advert adv = { 0, s->ws_addr, "" };
    r->cb.advert(r->cb.ud, &adv);
    snprintf(conns, sizeof(conns), "%ld", adv.connections);
    snprintf(toks, sizeof(toks), "%zu", subs_tokens_count(ctx->subs));
    snprintf(ttl, sizeof(ttl), "%lld", (long long)(s->lease_ttl * 1000));
    schema_random_hex(fresh);
    static const char *const modes[] = { "renew", "claim" };
    /* admin_addr: where /health and /metrics are (ADMIN_ADDR), "" when on
     * ws_addr; odin-ctl health reads it */
    lease_args a = { modes[mode], ttl, fresh,
                     { "endpoint", r->endpoint, "pid", pid,
                       "host", r->host, "started_at", started,
                       "connections", conns, "tokens", toks,
                       "ws_addr", adv.ws_addr, "synced", r->synced,
                       "admin_addr", adv.admin_addr } };
    lease_op *op = calloc(1, sizeof *op);
    if (!op)
        return;
    op->mode = mode;
    op->pttl = -1;
    r->layout->lease(r, op, &a);
    if (op->sent == 0)
        free(op);
    else
        r->lease_inflight = 1;
}

static void on_swept(long long removed, const char *err, void *arg);

/* The deregistration progresses: it is not a stuck connection, and the
 * REDIS_TIMEOUT deadline of the shutdown counts from its last step. */
static void on_sweep_step(void *arg)
{
    shard_registry *r = arg;
    if (r->freeing)
        return;
    r->progress_ms = clock_mono_ms();
    if (r->stopping && r->done) {
        double t = r->ctx->set->redis_timeout;
        struct timeval tv = { (time_t)t, (suseconds_t)((t - (double)(time_t)t) * 1e6) };
        event_add(r->done_ev, &tv);
    }
}

/* Deregistration (common/sweep.h 'force', chunked in both layouts). */
static void send_clean(shard_registry *r)
{
    const shard_settings *s = r->ctx->set;
    sweep_opts so = { s->redis_prefix, r->layout->cluster, (size_t)s->redis_chunk, 0,
                      on_sweep_step };
    if (r->rr.ops->sweep(r->rr.impl, &so, s->shard_id, on_swept, r) == 0)
        cmd_sent(r);
    else
        event_active(r->done_ev, EV_TIMEOUT, 1);
}

/* ---- connection ------------------------------------------------------- */

/* The connection is gone (or abandoned): forget what was in flight; the
 * link reconnects by itself and link_state_cb re-registers. */
static void reg_lost(shard_registry *r, const char *why)
{
    if (r->state == R_IDLE)
        return;
    r->state = R_IDLE;
    r->inflight = 0;
    r->outstanding = 0;
    r->lease_inflight = 0;
    scan_reset(r);
    size_t it = 0;
    shard_map_node *cur = NULL, *n;
    while ((n = shard_map_next(&r->map, &it, &cur))) {
        reg_entry *e = SHARD_MAP_ENTRY(n, reg_entry, node);
        e->inflight = 0;
    }
    log_kv(LOG_WARN, "redis connection lost; serving clients, will "
           "re-register", "s:reason", why, NULL);
    if (r->stopping && r->done)
        event_active(r->done_ev, EV_TIMEOUT, 1);
}

/* Connected (SELECT already sent by the link): register. */
static void reg_ready(shard_registry *r)
{
    if (r->stopping || r->state == R_READY)
        return;
    r->state = R_READY;
    r->ctx->m.shard_redis_connects_total++;
    if (!r->claimed) {
        /* the claim removes the leftovers of a previous life, or refuses
         * if another live instance holds the id; routes wait for it */
        requeue_all(r);
        write_lease(r, LEASE_CLAIM);
    } else {
        resync(r);
        write_lease(r, LEASE_RENEW);
        publish_up(r);
    }
    log_kv(LOG_INFO, r->ever_ready ? "redis reconnected; re-registering"
                                   : "registered in redis",
           "s:id", r->ctx->set->shard_id, "s:endpoint", r->endpoint,
           "I:tokens", (int64_t)r->map.n, NULL);
    r->ever_ready = 1;
    pump(r);
}

/* From the connection's deferred notification, never inside a reply. */
static void link_state_cb(int up, const char *why, void *arg)
{
    shard_registry *r = arg;
    if (r->freeing)
        return;
    if (up)
        reg_ready(r);
    else
        reg_lost(r, why);
}

/* Drop a connection that stopped answering (called from a timer, never from
 * a hiredis callback). */
static void drop(shard_registry *r, const char *why)
{
    reg_error(r, "redis timeout; reconnecting", why);
    r->rr.ops->drop(r->rr.impl, why);   /* pending callbacks get NULL replies */
    reg_lost(r, why);
}

static void on_watch(evutil_socket_t fd, short what, void *arg)
{
    shard_registry *r = arg;
    uint64_t now = clock_mono_ms();
    uint64_t to = (uint64_t)(r->ctx->set->redis_timeout * 1000);
    /* replies waiting unread mean this loop was late, not Redis
     * (registry_redis_ops.input_pending): look again at the next watch */
    if (r->state == R_READY && r->outstanding > 0 &&
        now - r->progress_ms > to && !r->rr.ops->input_pending(r->rr.impl))
        drop(r, "reply timeout");
}

static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    shard_registry *r = arg;
    if (r->state != R_READY || r->stopping)
        return;
    if (!r->lease_inflight)
        write_lease(r, r->claimed ? LEASE_RENEW : LEASE_CLAIM);
    size_t it = 0;
    shard_map_node *cur = NULL, *n;
    while ((n = shard_map_next(&r->map, &it, &cur))) {
        reg_entry *e = SHARD_MAP_ENTRY(n, reg_entry, node);
        if (e->failed) {
            e->failed = 0;
            if (e->want != e->have)
                enqueue(r, e);
        }
    }
}

/* ---- shutdown ------------------------------------------------------------ */

static void finish(shard_registry *r)
{
    if (!r->done)
        return;
    void (*cb)(void *) = r->done;
    r->done = NULL;
    cb(r->done_ud);
}

static void on_done_ev(evutil_socket_t fd, short what, void *arg)
{
    finish(arg);
}

/* The deregistration's end (common/sweep.h, 'force'). */
static void on_swept(long long removed, const char *err, void *arg)
{
    shard_registry *r = arg;
    if (r->freeing)
        return;
    cmd_done(r);
    if (removed >= 0)
        log_kv(LOG_INFO, "deregistered from redis", "I:routes", (int64_t)removed, NULL);
    else
        reg_error(r, "redis deregistration failed", err ? err : "nothing removed");
    event_active(r->done_ev, EV_TIMEOUT, 1);
}

void shard_registry_shutdown(shard_registry *r, void (*done)(void *),
                             void *ud)
{
    r->stopping = 1;
    r->done = done;
    r->done_ud = ud;
    event_del(r->hb_ev);
    if (r->state == R_READY) {
        send_clean(r);
        struct timeval tv = { (time_t)r->ctx->set->redis_timeout,
                              (suseconds_t)((r->ctx->set->redis_timeout -
                                             (time_t)r->ctx->set->redis_timeout)
                                            * 1e6) };
        event_add(r->done_ev, &tv);   /* give up after REDIS_TIMEOUT */
    } else {
        log_kv(LOG_WARN, "redis unavailable at shutdown; the lease will "
               "expire and routers clean up", NULL);
        event_active(r->done_ev, EV_TIMEOUT, 1);
    }
}

/* ---- lifecycle ------------------------------------------------------------ */

shard_registry *shard_registry_new(shard_ctx *ctx, const registry_callbacks *cb)
{
    const shard_settings *s = ctx->set;
    redis_endpoint ep;
    if (addr_parse_redis_url(s->redis_url, &ep) != 0 ||
        addr_redis_set_password(&ep, s->redis_password) != 0) {
        char url[600];
        addr_redact_url(s->redis_url, url, sizeof url);
        log_kv(LOG_ERROR, "bad REDIS_URL", "s:url", url, "s:want",
               "redis://[[user]:password@]host:port[/db] or unix:/path", NULL);
        return NULL;
    }
    char why[256] = "";
    if (addr_redis_set_sentinels(&ep, s->redis_sentinels, s->redis_master_name, why,
                                   sizeof why) != 0) {
        log_kv(LOG_ERROR, "bad REDIS_SENTINELS", "s:reason", why, NULL);
        return NULL;
    }
    registry_redis rr;
    if (registry_redis_link(&rr, ctx->base, ctx->dns, &ep,
                            (long)(s->redis_timeout * 1000), BACKOFF_MIN_MS,
                            BACKOFF_MAX_MS) != 0)
        return NULL;
    return shard_registry_new_with(ctx, cb, rr);
}

shard_registry *shard_registry_new_with(shard_ctx *ctx,
                                        const registry_callbacks *cb,
                                        registry_redis rr)
{
    const shard_settings *s = ctx->set;
    shard_registry *r = calloc(1, sizeof(*r));
    if (!r) {
        rr.ops->free(rr.impl);
        return NULL;
    }
    r->ctx = ctx;
    r->cb = *cb;
    r->rr = rr;
    r->rl.per_sec = 2;
    gethostname(r->host, sizeof(r->host) - 1);
    r->layout = &layouts[s->redis_cluster_keys ? 1 : 0];
    int cl = r->layout->cluster;
    r->k_lease = schema_lease_key(s->redis_prefix, cl, s->shard_id);
    r->k_tokens = schema_tokens_key(s->redis_prefix, cl, s->shard_id);
    r->k_sweep = schema_sweep_key(s->redis_prefix, cl, s->shard_id);
    r->k_routes = schema_routes_channel(s->redis_prefix);
    r->k_route_prefix = schema_route_prefix(s->redis_prefix);
    schema_sha1_hex(r->layout->route_script, r->route_sha);
    r->rate_ms = clock_mono_ms();
    r->rate_tokens = s->redis_route_rate;
    r->k_shards = schema_shards_key(s->redis_prefix);
    r->k_epoch = schema_epoch_key(s->redis_prefix);
    schema_random_hex(r->instance);
    r->endpoint = cat3(s->endpoint, "", "");
    struct event_base *b = ctx->base;
    r->pump_ev = event_new(b, -1, 0, on_pump, r);
    r->done_ev = event_new(b, -1, 0, on_done_ev, r);
    r->hb_ev = event_new(b, -1, EV_PERSIST, on_heartbeat, r);
    r->watch_ev = event_new(b, -1, EV_PERSIST, on_watch, r);
    if (!r->k_lease || !r->k_tokens || !r->k_sweep || !r->k_routes ||
        !r->k_route_prefix || !r->k_shards || !r->k_epoch ||
        !r->endpoint || !r->pump_ev ||
        !r->done_ev || !r->hb_ev || !r->watch_ev)
        goto err;
    double hb = s->lease_ttl / 3;
    struct timeval tv = { (time_t)hb, (suseconds_t)((hb - (time_t)hb) * 1e6) };
    event_add(r->hb_ev, &tv);
    double w = s->redis_timeout / 4;
    if (w > 0.25)
        w = 0.25;
    struct timeval wt = { (time_t)w, (suseconds_t)((w - (time_t)w) * 1e6) };
    event_add(r->watch_ev, &wt);
    r->rr.ops->start(r->rr.impl, link_state_cb, r);
    return r;
err:
    shard_registry_free(r);
    return NULL;
}

void shard_registry_free(shard_registry *r)
{
    if (!r)
        return;
    r->freeing = 1;
    r->rr.ops->free(r->rr.impl);   /* pending callbacks see r->freeing */
    r->rr.impl = NULL;
    size_t it = 0;
    shard_map_node *cur = NULL, *n;
    while ((n = shard_map_next(&r->map, &it, &cur)))
        free(SHARD_MAP_ENTRY(n, reg_entry, node));
    shard_map_clear(&r->map);
    struct event *evs[] = { r->pump_ev, r->done_ev, r->hb_ev, r->watch_ev };
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
        if (evs[i])
            event_free(evs[i]);
    free(r->k_lease);
    free(r->k_tokens);
    free(r->k_sweep);
    free(r->scan_cursor);
    free(r->k_routes);
    free(r->k_route_prefix);
    buf_free(&r->k_route);
    free(r->k_shards);
    free(r->k_epoch);
    free(r->endpoint);
    free(r);
}

int shard_registry_connected(const shard_registry *r)
{
    return r && r->state == R_READY;
}

long shard_registry_pending(const shard_registry *r)
{
    if (!r)
        return 0;
    long n = 0;
    size_t it = 0;
    shard_map_node *cur = NULL, *x;
    while ((x = shard_map_next(&r->map, &it, &cur))) {
        reg_entry *e = SHARD_MAP_ENTRY(x, reg_entry, node);
        if (e->want != e->have || e->inflight)
            n++;
    }
    return n;
}

int shard_registry_token_routed(const shard_registry *r, const char *tok,
                                size_t len)
{
    if (!r || r->state != R_READY)
        return 0;
    shard_map_node *n = shard_map_find(&r->map, tok, len);
    if (!n)
        return 0;
    const reg_entry *e = SHARD_MAP_ENTRY(n, reg_entry, node);
    return e->want == 1 && e->have == 1 && !e->inflight;
}
