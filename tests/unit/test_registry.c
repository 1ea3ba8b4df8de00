/* shard/registry.c without Redis: a fake connection (shard/registry_redis.h)
 * records every command the registry sends and answers from the test's
 * script.  Every case runs twice, once per key layout (the "standard" and
 * the "cluster" group; REDIS_CLUSTER_KEYS), and checks the exact commands
 * and keys of docs/contract.md's Redis schema: claim and lease, route
 * batches, reconnect and flushed-Redis re-registration, the registry epoch,
 * errors and retries, NOSCRIPT, the paged resync, a duplicate SHARD_ID, the
 * reply timeout and the shutdown sweep. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/schema.h"
#include "shard/registry.h"

/* ---- the fake connection ------------------------------------------------ */

#define MAXLOG 512
#define MAXPEND 512
#define MAXARG 64

typedef struct fcmd {
    int argc;
    char *argv[MAXARG];
} fcmd;

typedef struct fpend {
    registry_reply_fn *fn;
    void *priv;
} fpend;

typedef struct fake {
    int up;                   /* sends are accepted */
    int refuse;               /* sends fail (out of memory, not connected) */
    registry_state_fn *state;
    void *arg;
    fcmd log[MAXLOG];         /* every command sent, scripts by name */
    size_t nlog, seen;        /* seen: commands the test has checked */
    fpend pend[MAXPEND];      /* awaiting a reply, in order */
    size_t phead, ptail;
    int sweeps, drops;
    sweep_opts sw;
    char sw_id[64];
    sweep_done_fn *sw_done;
    void *sw_arg;
} fake;

/* The scripts, named as the log shows them (body for EVAL, SHA-1 for
 * EVALSHA alike). */
static const struct { const char *name, *body; } scripts[] = {
    { "ROUTE_BATCH", SCHEMA_LUA_ROUTE_BATCH },
    { "ROUTE_ONE", SCHEMA_LUA_ROUTE_ONE },
    { "LEASE", SCHEMA_LUA_LEASE },
    { "LEASE_CLUSTER", SCHEMA_LUA_LEASE_CLUSTER },
    { "EPOCH", SCHEMA_LUA_EPOCH },
};

static char *arg_name(const char *a, size_t len)
{
    for (size_t i = 0; i < sizeof scripts / sizeof scripts[0]; i++) {
        char sha[41];
        schema_sha1_hex(scripts[i].body, sha);
        if ((len == strlen(scripts[i].body) && memcmp(a, scripts[i].body, len) == 0) ||
            (len == 40 && memcmp(a, sha, 40) == 0))
            return strdup(scripts[i].name);
    }
    return strndup(a, len);
}

static void f_start(void *impl, registry_state_fn *state, void *arg)
{
    fake *f = impl;
    f->state = state;
    f->arg = arg;
}

static int f_send(void *impl, registry_reply_fn *fn, void *priv, int argc,
                  const char **argv, const size_t *lens)
{
    fake *f = impl;
    if (!f->up || f->refuse)
        return -1;
    assert_true(f->nlog < MAXLOG);
    assert_true(argc <= MAXARG);
    fcmd *c = &f->log[f->nlog++];
    c->argc = argc;
    for (int i = 0; i < argc; i++)
        c->argv[i] = arg_name(argv[i], lens[i]);
    if (fn) {
        assert_true(f->ptail - f->phead < MAXPEND);
        f->pend[f->ptail++ % MAXPEND] = (fpend){ fn, priv };
    }
    return 0;
}

static int f_sweep(void *impl, const sweep_opts *o, const char *id,
                   sweep_done_fn *done, void *arg)
{
    fake *f = impl;
    if (!f->up || f->refuse)
        return -1;
    f->sweeps++;
    f->sw = *o;
    snprintf(f->sw_id, sizeof f->sw_id, "%s", id);
    f->sw_done = done;
    f->sw_arg = arg;
    return 0;
}

static int f_input_pending(void *impl)
{
    return 0;
}

/* What hiredis does when the connection goes: every pending callback gets
 * NULL, in order. */
static void fail_pending(fake *f)
{
    while (f->phead != f->ptail) {
        fpend p = f->pend[f->phead++ % MAXPEND];
        p.fn(f->arg, NULL, p.priv);
    }
}

static void f_drop(void *impl, const char *why)
{
    fake *f = impl;
    f->drops++;
    f->up = 0;
    fail_pending(f);
}

static void f_free(void *impl)
{
    fake *f = impl;
    fail_pending(f);
    for (size_t i = 0; i < f->nlog; i++)
        for (int j = 0; j < f->log[i].argc; j++)
            free(f->log[i].argv[j]);
    free(f);
}

static const registry_redis_ops fake_ops = {
    f_start, f_send, f_sweep, f_input_pending, f_drop, f_free,
};

/* ---- replies ------------------------------------------------------------ */

static redisReply *mk(int type)
{
    redisReply *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->type = type;
    return r;
}

static redisReply *r_int(long long v)
{
    redisReply *r = mk(REDIS_REPLY_INTEGER);
    r->integer = v;
    return r;
}

static redisReply *rstr_t(int type, const char *s)
{
    redisReply *r = mk(type);
    r->str = strdup(s);
    r->len = strlen(s);
    return r;
}

static redisReply *rstr(const char *s) { return rstr_t(REDIS_REPLY_STRING, s); }
static redisReply *rerr(const char *s) { return rstr_t(REDIS_REPLY_ERROR, s); }

static redisReply *rarr(size_t n, ...)
{
    redisReply *r = mk(REDIS_REPLY_ARRAY);
    r->elements = n;
    r->element = calloc(n ? n : 1, sizeof *r->element);
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        r->element[i] = va_arg(ap, redisReply *);
    va_end(ap);
    return r;
}

/* ---- per-test state ----------------------------------------------------- */

typedef struct T {
    int cluster;                 /* the group's layout */
    struct event_base *base;
    shard_settings set;
    shard_ctx ctx;
    shard_registry *r;
    fake *f;
    int done;                    /* shutdown's done calls */
    char k_lease[64], k_tokens[64], k_sweep[64];
} T;

static void advert(void *ud, registry_advert *a)
{
    a->connections = 7;
    a->admin_addr = "127.0.0.1:9100";
}

static int setup(void **state)
{
    const int *cluster = *state;   /* the group's state: its layout */
    T *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->cluster = *cluster;
    t->base = event_base_new();
    assert_non_null(t->base);
    t->set.shard_id = "s1";
    t->set.redis_prefix = "odin:";
    t->set.redis_cluster_keys = t->cluster;
    t->set.redis_timeout = 1000;       /* the reply watch never drops */
    t->set.lease_ttl = 3600;           /* the heartbeat fires when told */
    t->set.redis_inflight = 256;
    t->set.redis_route_batch = 128;
    t->set.redis_route_rate = 0;
    t->set.redis_chunk = 256;
    t->set.endpoint = "unix:/tmp/s1.sock";
    t->set.ws_addr = "127.0.0.1:9000";
    t->ctx.base = t->base;
    t->ctx.set = &t->set;
    t->ctx.start_wall_ms = 1234;
    shard_metrics_init(&t->ctx.m);
    t->ctx.subs = subs_new(NULL, NULL);
    assert_non_null(t->ctx.subs);
    /* the schema (docs/contract.md), written out: not through schema.c */
    const char *o = t->cluster ? "{" : "", *c = t->cluster ? "}" : "";
    snprintf(t->k_lease, sizeof t->k_lease, "odin:shard:%ss1%s", o, c);
    snprintf(t->k_tokens, sizeof t->k_tokens, "odin:shard:%ss1%s:tokens", o, c);
    snprintf(t->k_sweep, sizeof t->k_sweep, "odin:shard:%ss1%s:sweep", o, c);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    T *t = *state;
    shard_registry_free(t->r);
    subs_free(t->ctx.subs);
    event_base_free(t->base);
    free(t);
    return 0;
}

/* Make the registry on a fake connection (down until up()). */
static void make(T *t)
{
    t->f = calloc(1, sizeof *t->f);
    assert_non_null(t->f);
    registry_callbacks cb = { advert, t };
    t->r = shard_registry_new_with(&t->ctx, &cb, (registry_redis){ &fake_ops, t->f });
    assert_non_null(t->r);
    assert_non_null(t->f->state);
}

/* Run what is due on the loop (the pump, deferred notifications). */
static void spin(T *t)
{
    for (int i = 0; i < 3; i++)
        event_base_loop(t->base, EVLOOP_NONBLOCK);
}

static void up(T *t)
{
    t->f->up = 1;
    t->f->state(1, "", t->f->arg);
    spin(t);
}

/* The connection is lost: pending replies get NULL, then "down". */
static void down(T *t)
{
    t->f->up = 0;
    fail_pending(t->f);
    t->f->state(0, "connection lost", t->f->arg);
    spin(t);
}

static size_t pending(T *t) { return t->f->ptail - t->f->phead; }

/* Answer the oldest command awaiting its reply (takes rep). */
static void reply(T *t, redisReply *rep)
{
    fake *f = t->f;
    assert_true(f->phead != f->ptail);
    fpend p = f->pend[f->phead++ % MAXPEND];
    p.fn(f->arg, rep, p.priv);
    freeReplyObject(rep);
    spin(t);
}

/* ---- what was sent ------------------------------------------------------ */

static const fcmd *next_cmd(T *t)
{
    if (t->f->seen >= t->f->nlog)
        fail_msg("expected another command, got none (%zu sent)", t->f->nlog);
    return &t->f->log[t->f->seen++];
}

static void print_cmd(const fcmd *c)
{
    for (int i = 0; i < c->argc; i++)
        print_message("%s%s", i ? " " : "  got: ", c->argv[i]);
    print_message("\n");
}

/* The next command is `pattern`: space-separated arguments, each an
 * fnmatch(3) pattern ("*": anything), "''" the empty string; a last "..."
 * stands for any further arguments. */
static void expect(T *t, const char *fmt, ...)
{
    char pat[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pat, sizeof pat, fmt, ap);
    va_end(ap);
    const fcmd *c = next_cmd(t);
    int i = 0, ok = 1;
    char *save = NULL;
    for (char *p = strtok_r(pat, " ", &save); p; p = strtok_r(NULL, " ", &save), i++) {
        if (strcmp(p, "...") == 0) {
            i = c->argc;
            break;
        }
        const char *want = strcmp(p, "''") == 0 ? "" : p;
        if (i >= c->argc || (strcmp(p, "''") == 0 ? c->argv[i][0] != 0
                                                  : fnmatch(want, c->argv[i], 0) != 0)) {
            ok = 0;
            break;
        }
    }
    if (!ok || i != c->argc) {
        va_start(ap, fmt);
        vsnprintf(pat, sizeof pat, fmt, ap);
        va_end(ap);
        print_message("  want: %s\n", pat);
        print_cmd(c);
        fail_msg("unexpected command");
    }
}

/* Nothing more was sent. */
static void expect_none(T *t)
{
    if (t->f->seen < t->f->nlog) {
        print_cmd(&t->f->log[t->f->seen]);
        fail_msg("%zu unexpected command(s)", t->f->nlog - t->f->seen);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* argv[from..] of c hold exactly the tokens of `toks` (space-separated), in
 * any order. */
static void expect_tokens(const fcmd *c, int from, const char *toks)
{
    char want[1024], *w[MAXARG], *g[MAXARG];
    snprintf(want, sizeof want, "%s", toks);
    int n = 0;
    char *save = NULL;
    for (char *p = strtok_r(want, " ", &save); p; p = strtok_r(NULL, " ", &save))
        w[n++] = p;
    if (c->argc - from != n) {
        print_cmd(c);
        fail_msg("want tokens %s", toks);
    }
    for (int i = 0; i < n; i++)
        g[i] = c->argv[from + i];
    qsort(w, (size_t)n, sizeof w[0], cmp_str);
    qsort(g, (size_t)n, sizeof g[0], cmp_str);
    for (int i = 0; i < n; i++)
        if (strcmp(w[i], g[i]) != 0) {
            print_cmd(c);
            fail_msg("want tokens %s", toks);
        }
}

static int ntoks(const char *toks)
{
    int n = 0;
    for (const char *p = toks; *p; p++)
        n += (p == toks || p[-1] == ' ') && *p != ' ';
    return n;
}

/* One route batch of `op` ("add" | "del") for `toks` (any order), as the
 * layout sends it: EVALSHA (eval: EVAL) SCHEMA_LUA_ROUTE_BATCH, or the
 * reverse index's SADD / SREM and one SCHEMA_LUA_ROUTE_ONE per token (index
 * first when adding, last when removing). */
static void expect_batch(T *t, const char *op, const char *toks, int eval)
{
    const char *ev = eval ? "EVAL" : "EVALSHA";
    if (!t->cluster) {
        expect(t, "%s ROUTE_BATCH 2 %s odin:routes %s s1 odin:route: ...", ev,
               t->k_tokens, op);
        const fcmd *c = &t->f->log[t->f->seen - 1];
        assert_true(c->argc >= 9);
        expect_tokens(c, 8, toks);
        return;
    }
    int add = strcmp(op, "add") == 0;
    const fcmd *idx = NULL;
    if (add) {
        idx = next_cmd(t);
        assert_string_equal(idx->argv[0], "SADD");
        assert_string_equal(idx->argv[1], t->k_tokens);
        expect_tokens(idx, 2, toks);
    }
    int n = ntoks(toks);
    const fcmd *first = &t->f->log[t->f->seen];
    for (int i = 0; i < n; i++) {
        if (t->f->seen >= t->f->nlog || t->f->log[t->f->seen].argc != 8)
            fail_msg("want %d route commands of %s", n, toks);
        const char *tok = add ? idx->argv[2 + i] : t->f->log[t->f->seen].argv[7];
        char tk[128];
        snprintf(tk, sizeof tk, "%s", tok);
        expect(t, "%s ROUTE_ONE 1 odin:route:%s %s s1 odin:routes %s", ev, tk, op, tk);
    }
    if (!add) {
        const fcmd *c = next_cmd(t);
        assert_string_equal(c->argv[0], "SREM");
        assert_string_equal(c->argv[1], t->k_tokens);
        expect_tokens(c, 2, toks);
        for (int i = 0; i < n; i++)   /* route sets in the index's order */
            assert_string_equal(first[i].argv[7], c->argv[2 + i]);
    }
}

/* Answer a batch of `toks`: every part fine. */
static void reply_batch(T *t, const char *toks)
{
    int n = ntoks(toks);
    if (!t->cluster) {
        reply(t, r_int(n));
        return;
    }
    for (int i = 0; i <= n; i++)
        reply(t, r_int(1));
}

/* Answer a batch with the error `err` (in the cluster layout on its first
 * part, the others fine: the worst decides). */
static void reply_batch_err(T *t, const char *toks, const char *err)
{
    reply(t, rerr(err));
    if (t->cluster)
        for (int i = 0; i < ntoks(toks); i++)
            reply(t, r_int(1));
}

/* The lease write of `mode`, with `synced` ("''": none yet). */
static void expect_lease(T *t, const char *mode, const char *synced)
{
    char fields[512];
    snprintf(fields, sizeof fields,
             "endpoint unix:/tmp/s1.sock pid %ld host * started_at 1234 "
             "connections 7 tokens 0 ws_addr 127.0.0.1:9000 synced %s "
             "admin_addr 127.0.0.1:9100", (long)getpid(), synced);
    long long ttl = (long long)(t->set.lease_ttl * 1000);
    if (!t->cluster) {
        expect(t, "EVAL LEASE 4 %s odin:shards odin:epoch %s [0-9a-f]* %lld s1 "
               "[0-9a-f]* %s %s", t->k_lease, t->k_sweep, ttl, mode, fields);
        return;
    }
    expect(t, "EVAL LEASE_CLUSTER 2 %s %s [0-9a-f]* %lld %s %s", t->k_lease,
           t->k_sweep, ttl, mode, fields);
    expect(t, "SADD odin:shards s1");
    expect(t, "EVAL EPOCH 1 odin:epoch [0-9a-f]*");
}

/* An SSCAN page of the reverse index from `cursor` (REDIS_CHUNK 256). */
static void expect_scan(T *t, const char *cursor)
{
    expect(t, "SSCAN %s %s COUNT 256", t->k_tokens, cursor);
}

/* shard:up on the routes channel. */
static void expect_up(T *t)
{
    expect(t, "PUBLISH odin:routes shard:up:s1");
}

/* The last SSCAN page, empty. */
static void reply_scan_end(T *t)
{
    reply(t, rarr(2, rstr("0"), rarr(0)));
}

/* Answer a lease write whose script said `lease` ({existed} or a refusal);
 * epoch: the registry epoch Redis holds. */
static void reply_lease_raw(T *t, redisReply *lease, const char *epoch)
{
    if (!t->cluster) {
        if (lease->element[0]->integer >= 0) {   /* {existed, epoch} */
            redisReply *e = rstr(epoch);
            lease->element = realloc(lease->element, 2 * sizeof *lease->element);
            lease->element[1] = e;
            lease->elements = 2;
        }
        reply(t, lease);
        return;
    }
    reply(t, lease);
    reply(t, r_int(0));
    reply(t, rarr(4, r_int(0), rstr(epoch), rstr("100"), rstr("0")));
}

static void reply_lease(T *t, int existed, const char *epoch)
{
    reply_lease_raw(t, rarr(1, r_int(existed)), epoch);
}

/* From the first connection to a confirmed registration under epoch E1:
 * the claim, the resync's first SSCAN page, shard:up, the `synced` renew. */
static void boot(T *t)
{
    make(t);
    up(t);
    expect_lease(t, "claim", "''");
    expect_none(t);
    reply_lease(t, 0, "E1");
    expect_scan(t, "0");
    expect_up(t);
    expect_lease(t, "renew", "E1");
    expect_up(t);
    expect_none(t);
    reply_scan_end(t);
    reply_lease(t, 1, "E1");
    expect_none(t);
    assert_int_equal(pending(t), 0);
}

/* Each of `toks` (space-separated) got its first (add) or lost its last
 * local subscriber; then the loop runs. */
static void token(T *t, const char *toks, int add)
{
    char buf1[256];
    snprintf(buf1, sizeof buf1, "%s", toks);
    char *save = NULL;
    for (char *p = strtok_r(buf1, " ", &save); p; p = strtok_r(NULL, " ", &save))
        shard_registry_token(t->r, p, strlen(p), add);
    spin(t);
}

static int routed(T *t, const char *tok)
{
    return shard_registry_token_routed(t->r, tok, strlen(tok));
}

/* Run the heartbeat now, as its timer would: the one persistent timer that
 * is not due for minutes (the reply watch runs every 0.25 s). */
static const struct event *hb_found;
static int find_hb(const struct event_base *b, const struct event *ev, void *arg)
{
    struct timeval tv, now;
    if (!(event_get_events(ev) & EV_PERSIST) || !event_pending(ev, EV_TIMEOUT, &tv))
        return 0;
    event_base_gettimeofday_cached((struct event_base *)b, &now);
    if (tv.tv_sec - now.tv_sec > 60)
        hb_found = ev;
    return 0;
}

static void heartbeat(T *t)
{
    hb_found = NULL;
    event_base_foreach_event(t->base, find_hb, NULL);
    assert_non_null(hb_found);
    event_get_callback(hb_found)(-1, EV_TIMEOUT, event_get_callback_arg(hb_found));
    spin(t);
}

/* ---- cases -------------------------------------------------------------- */

/* The first connection claims the lease (every field), then pages through
 * the reverse index, announces shard:up and records `synced`. */
static void test_claim(void **state)
{
    T *t = *state;
    make(t);
    assert_false(shard_registry_connected(t->r));
    token(t, "A", 1);
    expect_none(t);              /* not connected: nothing sent */
    up(t);
    assert_true(shard_registry_connected(t->r));
    assert_int_equal(t->ctx.m.shard_redis_connects_total, 1);
    expect_lease(t, "claim", "''");
    expect_none(t);              /* routes wait for the claim */
    reply_lease(t, 0, "E1");
    expect_scan(t, "0");
    expect_up(t);
    expect_batch(t, "add", "A", 0);
    expect_none(t);              /* not synced before A is confirmed */
    reply_scan_end(t);
    reply_batch(t, "A");
    assert_true(routed(t, "A"));
    expect_lease(t, "renew", "E1");
    expect_up(t);
    reply_lease(t, 1, "E1");
    expect_none(t);
    assert_int_equal(shard_registry_pending(t->r), 0);
    assert_int_equal(t->ctx.m.shard_redis_errors_total, 0);
}

/* A token's first subscriber adds the shard to its route, the last one
 * removes it; each is one batch. */
static void test_add_remove(void **state)
{
    T *t = *state;
    boot(t);
    token(t, "BTC ETH", 1);
    expect_batch(t, "add", "BTC ETH", 0);
    expect_none(t);
    assert_int_equal(shard_registry_pending(t->r), 2);
    assert_false(routed(t, "BTC"));          /* in flight */
    reply_batch(t, "BTC ETH");
    assert_true(routed(t, "BTC"));
    assert_true(routed(t, "ETH"));
    assert_int_equal(shard_registry_pending(t->r), 0);
    token(t, "BTC", 0);
    expect_batch(t, "del", "BTC", 0);
    expect_none(t);
    reply_batch(t, "BTC");
    assert_false(routed(t, "BTC"));
    assert_true(routed(t, "ETH"));
    assert_int_equal(shard_registry_pending(t->r), 0);
    assert_int_equal(t->ctx.m.shard_redis_route_updates_total, 3);
    expect_none(t);
}

/* A token that comes and goes before it is sent costs nothing; churn while
 * a command is in flight collapses into at most one more. */
static void test_coalesce(void **state)
{
    T *t = *state;
    boot(t);
    shard_registry_token(t->r, "X", 1, 1);
    shard_registry_token(t->r, "X", 1, 0);
    spin(t);
    expect_none(t);
    assert_int_equal(shard_registry_pending(t->r), 0);
    token(t, "Y", 1);
    expect_batch(t, "add", "Y", 0);
    token(t, "Y", 0);
    token(t, "Y", 1);
    expect_none(t);                          /* Y is in flight */
    reply_batch(t, "Y");
    expect_none(t);                          /* and wanted as sent */
    token(t, "Y", 0);
    token(t, "Z", 1);
    shard_registry_token(t->r, "Q", 1, 0);  /* never added: ignored */
    spin(t);
    expect_batch(t, "del", "Y", 0);
    expect_batch(t, "add", "Z", 0);
    expect_none(t);
    reply_batch(t, "Y");
    reply_batch(t, "Z");
    assert_false(routed(t, "Y"));
    assert_true(routed(t, "Z"));
    assert_int_equal(shard_registry_pending(t->r), 0);
}

/* REDIS_ROUTE_BATCH tokens per batch, REDIS_MAX_INFLIGHT tokens unanswered,
 * a batch never mixes add and del (queue order kept). */
static void test_batching(void **state)
{
    T *t = *state;
    t->set.redis_route_batch = 2;
    t->set.redis_inflight = 3;
    boot(t);
    const char *toks[] = { "A", "B", "C", "D", "E" };
    for (int i = 0; i < 5; i++)
        shard_registry_token(t->r, toks[i], 1, 1);
    spin(t);
    expect_batch(t, "add", "A B", 0);
    expect_batch(t, "add", "C", 0);          /* room for 1 more in flight */
    expect_none(t);
    assert_int_equal(shard_registry_pending(t->r), 5);
    reply_batch(t, "A B");
    expect_batch(t, "add", "D E", 0);
    expect_none(t);
    reply_batch(t, "C");
    reply_batch(t, "D E");
    expect_none(t);
    for (int i = 0; i < 5; i++)
        assert_true(routed(t, toks[i]));
    /* mixed ops: del A, add F, del B, del C: a batch ends where the op
     * changes, in queue order */
    shard_registry_token(t->r, "A", 1, 0);
    shard_registry_token(t->r, "F", 1, 1);
    shard_registry_token(t->r, "B", 1, 0);
    shard_registry_token(t->r, "C", 1, 0);
    spin(t);
    expect_batch(t, "del", "A", 0);
    expect_batch(t, "add", "F", 0);
    expect_batch(t, "del", "B", 0);          /* room for 1 more in flight */
    expect_none(t);
    reply_batch(t, "A");
    expect_batch(t, "del", "C", 0);
    expect_none(t);
    reply_batch(t, "F");
    reply_batch(t, "B");
    reply_batch(t, "C");
    expect_none(t);
    assert_int_equal(shard_registry_pending(t->r), 0);
    assert_int_equal(t->ctx.m.shard_redis_route_updates_total, 9);
}

/* REDIS_ROUTE_RATE: no more than the bucket allows go out at once. */
static void test_rate_limit(void **state)
{
    T *t = *state;
    t->set.redis_route_rate = 2;
    boot(t);
    token(t, "A B C", 1);
    expect_batch(t, "add", "A B", 0);
    expect_none(t);                          /* C waits for the bucket */
    assert_int_equal(shard_registry_pending(t->r), 3);
}

/* The connection is lost and comes back: the lease is renewed, shard:up
 * published, the reverse index paged through and every wanted route
 * written again; nothing is "routed" while down. */
static void test_reconnect(void **state)
{
    T *t = *state;
    boot(t);
    token(t, "A B", 1);
    expect_batch(t, "add", "A B", 0);
    reply_batch(t, "A B");
    token(t, "C", 1);
    expect_batch(t, "add", "C", 0);
    down(t);                                 /* C's batch lost in flight */
    assert_false(shard_registry_connected(t->r));
    assert_false(routed(t, "A"));
    token(t, "D", 1);                        /* served meanwhile, queued */
    expect_none(t);
    up(t);
    assert_int_equal(t->ctx.m.shard_redis_connects_total, 2);
    expect_scan(t, "0");
    expect_lease(t, "renew", "E1");
    expect_up(t);
    expect_batch(t, "add", "A B C D", 0);
    expect_none(t);
    reply_scan_end(t);
    reply_lease(t, 1, "E1");
    reply_batch(t, "A B C D");
    expect_none(t);
    assert_true(routed(t, "A"));
    assert_true(routed(t, "D"));
    assert_int_equal(shard_registry_pending(t->r), 0);
}

/* Redis restarted empty (or was flushed): the heartbeat's renew finds no
 * lease; everything is registered again and `synced` names the new epoch. */
static void test_flushed(void **state)
{
    T *t = *state;
    boot(t);
    token(t, "A", 1);
    expect_batch(t, "add", "A", 0);
    reply_batch(t, "A");
    heartbeat(t);
    expect_lease(t, "renew", "E1");
    expect_none(t);
    reply_lease(t, 0, "E2");                 /* the lease was gone */
    expect_up(t);
    expect_scan(t, "0");
    expect_batch(t, "add", "A", 0);
    expect_none(t);
    reply_scan_end(t);
    reply_batch(t, "A");
    expect_lease(t, "renew", "E2");
    expect_up(t);
    reply_lease(t, 1, "E2");
    expect_none(t);
    assert_true(routed(t, "A"));
}

/* The lease survived but the registry epoch changed (another writer
 * recreated it first): routes may be gone, so register again. */
static void test_epoch_reset(void **state)
{
    T *t = *state;
    boot(t);
    token(t, "A", 1);
    expect_batch(t, "add", "A", 0);
    reply_batch(t, "A");
    heartbeat(t);
    expect_lease(t, "renew", "E1");
    reply_lease(t, 1, "E1");                 /* same epoch: nothing to do */
    expect_none(t);
    heartbeat(t);
    expect_lease(t, "renew", "E1");
    reply_lease(t, 1, "E9");
    expect_up(t);
    expect_scan(t, "0");
    expect_batch(t, "add", "A", 0);
    expect_none(t);
    /* until A is confirmed under E9 the lease still says synced E1 */
    heartbeat(t);
    expect_lease(t, "renew", "E1");
    reply_scan_end(t);
    reply_batch(t, "A");
    expect_lease(t, "renew", "E9");
    expect_up(t);
    reply_lease(t, 1, "E9");
    reply_lease(t, 1, "E9");
    expect_none(t);
    assert_int_equal(pending(t), 0);
}

/* An error reply fails the batch (counted, not routed); the heartbeat
 * sends it again. */
static void test_error_retry(void **state)
{
    T *t = *state;
    boot(t);
    token(t, "A B", 1);
    expect_batch(t, "add", "A B", 0);
    reply_batch_err(t, "A B", "ERR boom");
    assert_int_equal(t->ctx.m.shard_redis_errors_total, 1);
    assert_false(routed(t, "A"));
    assert_int_equal(shard_registry_pending(t->r), 2);
    spin(t);
    expect_none(t);                          /* not at once */
    heartbeat(t);
    expect_lease(t, "renew", "E1");
    expect_batch(t, "add", "A B", 0);
    expect_none(t);
    reply_lease(t, 1, "E1");
    reply_batch(t, "A B");
    assert_true(routed(t, "A"));
    assert_true(routed(t, "B"));
    assert_int_equal(shard_registry_pending(t->r), 0);
    /* a lease write refused with an error: counted, nothing else */
    heartbeat(t);
    expect_lease(t, "renew", "E1");
    if (t->cluster) {
        reply(t, rerr("ERR lease"));
        reply(t, r_int(0));
        reply(t, rarr(4, r_int(0), rstr("E1"), rstr("1"), rstr("0")));
    } else {
        reply(t, rerr("ERR lease"));
    }
    assert_int_equal(t->ctx.m.shard_redis_errors_total, 2);
    expect_none(t);
    assert_true(shard_registry_connected(t->r));
}

/* Sends refused (out of memory, the link between states): the entries are
 * retried by the heartbeat once sends work again. */
static void test_send_refused(void **state)
{
    T *t = *state;
    boot(t);
    t->f->refuse = 1;
    token(t, "A", 1);
    expect_none(t);
    heartbeat(t);                            /* lease and A: refused again */
    expect_none(t);
    t->f->refuse = 0;
    heartbeat(t);
    expect_lease(t, "renew", "E1");
    expect_batch(t, "add", "A", 0);
    reply_lease(t, 1, "E1");
    reply_batch(t, "A");
    assert_true(routed(t, "A"));
}

/* Redis lost its scripts (restart, SCRIPT FLUSH): NOSCRIPT, and the batch
 * goes again with the body (EVAL). */
static void test_noscript(void **state)
{
    T *t = *state;
    boot(t);
    token(t, "A B", 1);
    expect_batch(t, "add", "A B", 0);
    if (t->cluster) {
        reply(t, r_int(2));                   /* the index */
        reply(t, rerr("NOSCRIPT No matching script"));
        reply(t, rerr("NOSCRIPT No matching script"));
    } else {
        reply(t, rerr("NOSCRIPT No matching script. Please use EVAL."));
    }
    assert_int_equal(t->ctx.m.shard_redis_script_loads_total, 1);
    assert_int_equal(t->ctx.m.shard_redis_errors_total, 0);
    expect_batch(t, "add", "A B", 1);
    expect_none(t);
    reply_batch(t, "A B");
    assert_true(routed(t, "A"));
    assert_true(routed(t, "B"));
    token(t, "C", 1);
    expect_batch(t, "add", "C", 0);          /* EVALSHA again */
    /* a NOSCRIPT answer to the EVAL itself is an error */
    reply_batch_err(t, "C", "NOSCRIPT still");
    assert_int_equal(t->ctx.m.shard_redis_script_loads_total, 2);
    expect_batch(t, "add", "C", 1);
    reply_batch_err(t, "C", "NOSCRIPT still");
    assert_int_equal(t->ctx.m.shard_redis_errors_total, 1);
    assert_false(routed(t, "C"));
    expect_none(t);
}

/* The claim pages through a previous life's reverse index: tokens nobody
 * here wants are removed, one SSCAN page at a time, the next page once the
 * previous page's removals went out. */
static void test_leftovers(void **state)
{
    T *t = *state;
    make(t);
    token(t, "A", 1);
    up(t);
    expect_lease(t, "claim", "''");
    reply_lease(t, 1, "E1");
    expect_scan(t, "0");
    expect_up(t);
    expect_batch(t, "add", "A", 0);
    expect_none(t);
    reply(t, rarr(2, rstr("7"), rarr(2, rstr("OLD1"), rstr("A"))));
    expect_batch(t, "del", "OLD1", 0);
    expect_scan(t, "7");
    expect_none(t);
    reply_batch(t, "A");
    expect_lease(t, "renew", "E1");          /* A confirmed: synced */
    expect_up(t);
    reply_batch(t, "OLD1");
    reply(t, rarr(2, rstr("0"), rarr(2, rstr("OLD2"), rstr("OLD3"))));
    expect_batch(t, "del", "OLD2 OLD3", 0);
    expect_none(t);
    reply_lease(t, 1, "E1");
    reply_batch(t, "OLD2 OLD3");
    expect_none(t);
    assert_true(routed(t, "A"));
    assert_false(routed(t, "OLD1"));
    assert_int_equal(shard_registry_pending(t->r), 0);
    /* a bad SSCAN reply is counted and ends the scan */
    down(t);
    up(t);
    expect_scan(t, "0");
    expect_lease(t, "renew", "E1");
    expect_up(t);
    expect_batch(t, "add", "A", 0);
    reply(t, rerr("ERR scan"));
    assert_int_equal(t->ctx.m.shard_redis_errors_total, 1);
    reply_lease(t, 1, "E1");
    reply_batch(t, "A");
    expect_none(t);
}

/* Another live instance holds SHARD_ID: the claim waits; once that lease
 * is seen renewed, this process exits 1 and writes nothing of its own. */
static void test_duplicate(void **state)
{
    T *t = *state;
    make(t);
    up(t);
    token(t, "A", 1);
    expect_lease(t, "claim", "''");
    reply_lease_raw(t, rarr(4, r_int(-1), rstr("otherhost"), rstr("42"), r_int(1000)), "E1");
    expect_none(t);                          /* no routes, no shard:up */
    assert_int_equal(t->ctx.exit_code, 0);
    heartbeat(t);
    expect_lease(t, "claim", "''");
    reply_lease_raw(t, rarr(4, r_int(-1), rstr("otherhost"), rstr("42"), r_int(6000)), "E1");
    assert_int_equal(t->ctx.exit_code, 1);   /* renewed meanwhile: refuse */
    token(t, "B", 1);
    heartbeat(t);
    expect_none(t);
}

/* The previous holder died: its lease expires and the next claim wins. */
static void test_claim_after_expiry(void **state)
{
    T *t = *state;
    make(t);
    up(t);
    expect_lease(t, "claim", "''");
    reply_lease_raw(t, rarr(4, r_int(-1), rstr("otherhost"), rstr("42"), r_int(5000)), "E1");
    heartbeat(t);
    expect_lease(t, "claim", "''");
    reply_lease_raw(t, rarr(4, r_int(-1), rstr("otherhost"), rstr("42"), r_int(4000)), "E1");
    assert_int_equal(t->ctx.exit_code, 0);   /* not renewed: still waiting */
    heartbeat(t);
    expect_lease(t, "claim", "''");
    reply_lease(t, 0, "E1");
    expect_scan(t, "0");
    expect_up(t);
    expect_lease(t, "renew", "E1");
    expect_up(t);
    assert_int_equal(t->ctx.exit_code, 0);
}

/* A router sweeps this id's expired registration: the claim is refused
 * ({-2}), counted, and tried again at the heartbeat. */
static void test_sweep_marker(void **state)
{
    T *t = *state;
    make(t);
    up(t);
    token(t, "A", 1);
    expect_lease(t, "claim", "''");
    reply_lease_raw(t, rarr(1, r_int(-2)), "E1");
    assert_int_equal(t->ctx.m.shard_redis_errors_total, 1);
    expect_none(t);
    heartbeat(t);
    expect_lease(t, "claim", "''");
    reply_lease(t, 0, "E1");
    expect_scan(t, "0");
    expect_up(t);
    expect_batch(t, "add", "A", 0);
    /* A was subscribed after the connect: `synced` does not wait for it */
    expect_lease(t, "renew", "E1");
    expect_up(t);
    expect_none(t);
}

/* A renewal finds our lease claimed by another instance (it lapsed): exit. */
static void test_lease_taken(void **state)
{
    T *t = *state;
    boot(t);
    heartbeat(t);
    expect_lease(t, "renew", "E1");
    reply_lease_raw(t, rarr(4, r_int(-1), rstr("h2"), rstr("9"), r_int(6000)), "E1");
    assert_int_equal(t->ctx.exit_code, 1);
    token(t, "A", 1);
    expect_none(t);
}

/* No reply within REDIS_TIMEOUT: the connection is dropped (pending
 * commands lost), then re-registered when it is back. */
static void test_reply_timeout(void **state)
{
    T *t = *state;
    boot(t);
    t->set.redis_timeout = 0.05;   /* read by the watch (every 0.25 s) */
    token(t, "A", 1);
    expect_batch(t, "add", "A", 0);
    struct timespec ts = { 0, 5 * 1000 * 1000 };
    for (int i = 0; i < 600 && t->f->drops == 0; i++) {
        nanosleep(&ts, NULL);
        event_base_loop(t->base, EVLOOP_NONBLOCK);
    }
    assert_int_equal(t->f->drops, 1);
    assert_false(shard_registry_connected(t->r));
    assert_int_equal(t->ctx.m.shard_redis_errors_total, 1);
    assert_int_equal(pending(t), 0);
    up(t);
    expect_scan(t, "0");
    expect_lease(t, "renew", "E1");
    expect_up(t);
    expect_batch(t, "add", "A", 0);
    expect_none(t);
}

static void on_done(void *arg)
{
    ((T *)arg)->done++;
}

/* Shutdown: the 'force' sweep of common/sweep.h in the layout's keys, then
 * done; later token changes are ignored. */
static void test_shutdown(void **state)
{
    T *t = *state;
    boot(t);
    token(t, "A", 1);
    expect_batch(t, "add", "A", 0);
    reply_batch(t, "A");
    shard_registry_shutdown(t->r, on_done, t);
    assert_int_equal(t->f->sweeps, 1);
    assert_string_equal(t->f->sw_id, "s1");
    assert_string_equal(t->f->sw.prefix, "odin:");
    assert_int_equal(t->f->sw.cluster, t->cluster);
    assert_int_equal(t->f->sw.chunk, 256);
    assert_int_equal(t->f->sw.dead, 0);
    token(t, "B", 1);
    expect_none(t);
    spin(t);
    assert_int_equal(t->done, 0);
    t->f->sw_done(1, NULL, t->f->sw_arg);
    spin(t);
    assert_int_equal(t->done, 1);
    assert_int_equal(t->ctx.m.shard_redis_errors_total, 0);
}

/* Shutdown without Redis: done at once (next loop pass), nothing sent; a
 * failed sweep is counted. */
static void test_shutdown_down(void **state)
{
    T *t = *state;
    boot(t);
    down(t);
    shard_registry_shutdown(t->r, on_done, t);
    assert_int_equal(t->f->sweeps, 0);
    spin(t);
    assert_int_equal(t->done, 1);
    expect_none(t);
}

static void test_shutdown_failed(void **state)
{
    T *t = *state;
    boot(t);
    shard_registry_shutdown(t->r, on_done, t);
    assert_int_equal(t->f->sweeps, 1);
    t->f->sw_done(-2, "ERR sweep", t->f->sw_arg);
    spin(t);
    assert_int_equal(t->done, 1);
    assert_int_equal(t->ctx.m.shard_redis_errors_total, 1);
}

/* Freed with commands in flight: their callbacks come (NULL) while the
 * registry is being freed and touch nothing (ASan checks). */
static void test_free_pending(void **state)
{
    T *t = *state;
    boot(t);
    token(t, "A", 1);
    heartbeat(t);
    assert_true(pending(t) > 0);
    shard_registry_free(t->r);
    t->r = NULL;
    shard_registry_free(NULL);
}

#define CASES(X) \
    X(test_claim), X(test_add_remove), X(test_coalesce), X(test_batching), \
    X(test_rate_limit), X(test_reconnect), X(test_flushed), \
    X(test_epoch_reset), X(test_error_retry), X(test_send_refused), \
    X(test_noscript), X(test_leftovers), X(test_duplicate), \
    X(test_claim_after_expiry), X(test_sweep_marker), X(test_lease_taken), \
    X(test_reply_timeout), X(test_shutdown), X(test_shutdown_down), \
    X(test_shutdown_failed), X(test_free_pending)

#define CASE(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

static int standard_layout = 0, cluster_layout = 1;

static int group_standard(void **state)
{
    *state = &standard_layout;
    return 0;
}

static int group_cluster(void **state)
{
    *state = &cluster_layout;
    return 0;
}

int main(void)
{
    log_init("test_registry", getenv("ODIN_TEST_LOG") ? LOG_DEBUG : LOG_ERROR + 1);
    const struct CMUnitTest tests[] = { CASES(CASE) };
    int failed = cmocka_run_group_tests_name("standard", tests, group_standard, NULL);
    failed += cmocka_run_group_tests_name("cluster", tests, group_cluster, NULL);
    return failed;
}
