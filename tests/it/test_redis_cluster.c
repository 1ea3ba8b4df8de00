/*
 * REDIS_CLUSTER_KEYS=1 against a real Redis in cluster mode (a one-node
 * cluster of its own, owning all 16384 slots, started and stopped here):
 * Redis 7 refuses multi-key commands across slots and "#!lua" scripts that
 * touch keys outside their declared keys' slot, so a layout that is not
 * cluster-safe fails here.  First a negative check that it does (the
 * default layout's batch route script is refused), then real odin-shard and
 * odin-router processes with the cluster layout: routes registered in the
 * hash-tagged reverse index, records delivered to real WebSocket clients
 * exactly once (counted per client, in order), an unsubscribe removes the
 * route, and a SIGKILLed shard's routes (601 of them) are swept by the
 * router through its hash-tagged reverse index in chunks of REDIS_CHUNK
 * (256) removals, the marker extended before each (seen with MONITOR); a marker
 * left by a router that died mid-sweep holds a shard back only until it
 * expires; a sweep whose route removal fails leaves the shard listed and
 * is tried again.  Redis must have answered no CROSSSLOT or
 * slot error (INFO errorstats).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "common/clock.h"
#include "common/schema.h"
#include "tests/support/mclient.h"
#include "tests/support/rtsup.h"
#include "tests/support/shardsup.h"
#include "tests/support/support.h"
#include "tests/support/wsclient.h"

#define TOPIC "odin.trades"

static tsup_redis red;          /* the cluster-mode redis-server */
static redisContext *R;

static int cluster_ok(void *arg)
{
    (void)arg;
    redisReply *r = redisCommand(R, "CLUSTER INFO");
    int ok = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok");
    freeReplyObject(r);
    return ok;
}

static int pinged(void *arg)
{
    redisContext *c = redisConnect("127.0.0.1", *(int *)arg);
    int ok = c && !c->err;
    redisFree(c);
    return ok;
}

/* tsup's die() aborts: take the redis-server along (its process title
 * hides ODIN_TMP from run-tests.sh's clean-up). */
static void on_abort(int sig)
{
    if (red.pid > 0)
        kill(red.pid, SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

static int setup(void **st)
{
    (void)st;
    signal(SIGABRT, on_abort);
    memset(&red, 0, sizeof red);
    red.port = tsup_free_port();
    snprintf(red.url, sizeof red.url, "redis://127.0.0.1:%d", red.port);
    char *d = tsup_tmp("redis-cluster");
    snprintf(red.dir, sizeof red.dir, "%s", d);
    free(d);
    mkdir(red.dir, 0755);
    char port[16], bus[16], conf[300];
    snprintf(port, sizeof port, "%d", red.port);
    /* the bus port defaults to port + 10000, which may not exist */
    snprintf(bus, sizeof bus, "%d", tsup_free_port());
    snprintf(conf, sizeof conf, "%s/nodes.conf", red.dir);
    char *argv[] = { "/usr/bin/redis-server", "--port", port, "--bind", "127.0.0.1",
                     "--dir", red.dir, "--save", "", "--appendonly", "no",
                     "--cluster-enabled", "yes", "--cluster-config-file", conf, "--cluster-port", bus,
                     "--loglevel", "warning", NULL };
    red.pid = tsup_spawn(argv, NULL);
    int status;
    if (red.pid < 0 || !tsup_wait_until(pinged, &red.port, 10000) ||
        waitpid(red.pid, &status, WNOHANG) != 0) {   /* someone else's port */
        fprintf(stderr, "cluster-mode redis-server did not start on %d\n", red.port);
        return -1;
    }
    R = tsup_redis_connect(red.url);
    redisReply *r = redisCommand(R, "CLUSTER ADDSLOTSRANGE 0 16383");
    int ok = r && r->type == REDIS_REPLY_STATUS;
    if (!ok)
        fprintf(stderr, "CLUSTER ADDSLOTSRANGE: %s\n", r && r->str ? r->str : "no reply");
    freeReplyObject(r);
    if (ok && !tsup_wait_until(cluster_ok, NULL, 10000)) {
        fprintf(stderr, "cluster_state did not become ok\n");
        ok = 0;
    }
    return ok ? 0 : -1;
}

static int teardown(void **st)
{
    (void)st;
    redisFree(R);
    tsup_redis_stop(&red);
    return 0;
}

/* An EVAL's reply: 1 if it is an error containing `what`. */
static int eval_fails(const char *what, int argc, const char **argv)
{
    redisReply *r = redisCommandArgv(R, argc, argv, NULL);
    assert_non_null(r);
    int f = r->type == REDIS_REPLY_ERROR && strstr(r->str, what);
    if (r->type == REDIS_REPLY_ERROR)
        fprintf(stderr, "redis refused as expected: %s\n", r->str);
    freeReplyObject(r);
    return f;
}

/* The check can fail: what is not cluster-safe is refused by this Redis. */
static void test_negative(void **st)
{
    (void)st;
    const char *batch[] = { "EVAL", SCHEMA_LUA_ROUTE_BATCH, "2", "odin:shard:n1:tokens",
                            "odin:routes", "add", "n1", "odin:route:", "BTC", "ETH" };
    assert_true(eval_fails("CROSSSLOT", 10, batch));
    const char *lease[] = { "EVAL", SCHEMA_LUA_LEASE, "4", "odin:shard:n1", "odin:shards",
                            "odin:epoch", "odin:shard:n1:sweep", "inst", "1000", "n1", "f",
                            "claim" };
    assert_true(eval_fails("CROSSSLOT", 12, lease));
    /* a "#!lua" script reaching past its declared slot */
    const char *reach[] = { "EVAL", "#!lua\nredis.call('SADD', 'odin:route:BTC', 'x')\n"
                            "return redis.call('SADD', KEYS[1], 'x')\n", "1",
                            "odin:shard:{n1}:tokens" };
    assert_true(eval_fails("do not hash to the same slot", 4, reach));
    /* the cluster layout's own scripts pass */
    const char *one[] = { "EVAL", SCHEMA_LUA_ROUTE_ONE, "1", "odin:route:BTC", "add", "n1",
                          "odin:routes", "BTC" };
    assert_false(eval_fails("", 8, one));
    assert_int_equal(tsup_redis_int(R, "DEL odin:route:BTC"), 1);

    /* a sweep step extends its own marker only, and otherwise changes
     * nothing (the previous chunk stays in the index) */
    const char *mark = "odin:shard:{n1}:sweep", *rev = "odin:shard:{n1}:tokens";
    freeReplyObject(redisCommand(R, "SET %s sweep-a PX 1000", mark));
    freeReplyObject(redisCommand(R, "SADD %s T1 T2 T3", rev));
    const char *mine[] = { "EVAL", SCHEMA_LUA_SWEEP_NEXT, "2", rev, mark, "dead", "sweep-a",
                           "5000", "2", "T1" };
    const char *theirs[] = { "EVAL", SCHEMA_LUA_SWEEP_NEXT, "2", rev, mark, "dead", "sweep-b",
                             "60000", "2", "T1" };
    redisReply *r = redisCommandArgv(R, 10, theirs, NULL);
    assert_true(r && r->type == REDIS_REPLY_INTEGER && r->integer == -1);
    freeReplyObject(r);
    assert_true(tsup_redis_int(R, "PTTL %s", mark) <= 1000);
    assert_int_equal(tsup_redis_int(R, "SCARD %s", rev), 3);
    r = redisCommandArgv(R, 10, mine, NULL);
    assert_true(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
    freeReplyObject(r);
    assert_true(tsup_redis_int(R, "PTTL %s", mark) > 1000);
    assert_int_equal(tsup_redis_int(R, "SISMEMBER %s T1", rev), 0);
    assert_int_equal(tsup_redis_int(R, "DEL %s", mark), 1);
    r = redisCommandArgv(R, 10, mine, NULL);     /* gone: not brought back */
    assert_true(r && r->type == REDIS_REPLY_INTEGER && r->integer == -1);
    freeReplyObject(r);
    assert_int_equal(tsup_redis_int(R, "EXISTS %s", mark), 0);
    assert_int_equal(tsup_redis_int(R, "DEL %s", rev), 1);
}

/* ---- WebSocket clients, counted ------------------------------------------ */

typedef mclient client;
static void pump(client *c, int timeout_ms) { mclient_pump(c, timeout_ms); }
static void client_open(client *c, int port, const char *chan) { mclient_open(c, port, chan); }
static void request(client *c, const char *type, const char *ack)
{
    mclient_request(c, type, ack);
}

static void produce(rtsup_producer *p, const char *tok, int n)
{
    rtsup_produce_trade(p, TOPIC, 0, tok, n);
}

/* A broadcast-key marker after the records on the same partition: a client
 * that saw it saw every record produced before it (and any duplicate). */
static void await_marker(client *const cs[], rtsup_producer *p, const char *id, int ms)
{
    rtsup_produce_marker(p, TOPIC, 0, id);
    assert_int_equal(rtsup_producer_flush(p), 0);
    for (int i = 0; cs[i]; i++) {
        uint64_t end = clock_mono_ms() + (uint64_t)ms;
        while (strcmp(cs[i]->marker, id) != 0) {
            if (clock_mono_ms() >= end)
                return;
            pump(cs[i], 100);
        }
    }
}

static int all_at(client *const cs[], const char *id)
{
    for (int i = 0; cs[i]; i++)
        if (strcmp(cs[i]->marker, id) != 0)
            return 0;
    return 1;
}

/* ---- Redis state ------------------------------------------------------------ */


/* INFO errorstats has no error of these kinds. */
static void assert_no_slot_errors(void)
{
    redisReply *r = redisCommand(R, "INFO errorstats");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    fprintf(stderr, "errorstats after the run:\n%s", r->str);
    assert_null(strstr(r->str, "errorstat_CROSSSLOT"));
    assert_null(strstr(r->str, "errorstat_ERR"));
    freeReplyObject(r);
}

/* ---- a sweep marker left by a router that died mid-sweep ------------------- */

static int key_exists(void *arg)
{
    return tsup_redis_int(R, "EXISTS %s", (const char *)arg) == 1;
}

/* The marker a dead router's sweep leaves (SCHEMA_LUA_SWEEP_BEGIN, then
 * nothing) holds the shard's lease writes back until it expires, and no
 * longer: SCHEMA_SWEEP_TTL_MS, not a minute. */
static void test_stale_sweep_marker(void **st)
{
    (void)st;
    char id[48], lease[96], rev[96], mark[96], ttl[16];
    snprintf(id, sizeof id, "cl-st-%d", (int)getpid());
    snprintf(lease, sizeof lease, "odin:shard:{%s}", id);
    snprintf(rev, sizeof rev, "odin:shard:{%s}:tokens", id);
    snprintf(mark, sizeof mark, "odin:shard:{%s}:sweep", id);
    snprintf(ttl, sizeof ttl, "%d", SCHEMA_SWEEP_TTL_MS);
    uint64_t t0 = clock_mono_ms();
    const char *begin[] = { "EVAL", SCHEMA_LUA_SWEEP_BEGIN, "3", lease, rev, mark, "dead",
                            "died-mid-sweep", ttl };
    redisReply *r = redisCommandArgv(R, 9, begin, NULL);
    assert_true(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    freeReplyObject(r);
    assert_int_equal(tsup_redis_int(R, "EXISTS %s", mark), 1);

    const char *senv[] = { "SHARD_LEASE_TTL=2", "LOG_LEVEL=info", "REDIS_CLUSTER_KEYS=1",
                           NULL };
    ssup_shard c;
    assert_int_equal(ssup_shard_start(&c, id, red.url, senv), 0);
    /* the heartbeat retries every lease TTL / 3; slack for a loaded machine */
    assert_true(tsup_wait_until(key_exists, lease, 15000));   /* a bound, not the constant */
    long waited = (long)(clock_mono_ms() - t0);
    fprintf(stderr, "lease written %ld ms after the stale marker (TTL %d ms)\n", waited,
            SCHEMA_SWEEP_TTL_MS);
    assert_true(waited >= SCHEMA_SWEEP_TTL_MS - 50);   /* it did wait for the marker */
    assert_int_equal(tsup_redis_int(R, "EXISTS %s", mark), 0);
    assert_int_equal(WEXITSTATUS(ssup_shard_stop(&c, SIGTERM, 10000)), 0);
    assert_int_equal(tsup_redis_int(R, "EXISTS %s %s", lease, rev), 0);
}

/* What a MONITOR connection saw of one dead-shard sweep of `id`. */
typedef struct sweep_seen {
    long dels;                  /* route removals of id */
    long refreshes;             /* sweep steps (SCHEMA_LUA_SWEEP_NEXT) */
    long refresh_at[8];         /* removals before each step */
    int ended;
} sweep_seen;

static void monitor_sweep(redisContext *M, const char *id, sweep_seen *w)
{
    char del[96];
    snprintf(del, sizeof del, "\"del\" \"%s\"", id);
    memset(w, 0, sizeof *w);
    uint64_t end = clock_mono_ms() + 20000;
    while (!w->ended && clock_mono_ms() < end) {
        redisReply *r = NULL;
        if (redisGetReply(M, (void **)&r) != REDIS_OK)
            break;
        if (r->type == REDIS_REPLY_STATUS && strstr(r->str, id)) {
            if (strstr(r->str, del))
                w->dels++;
            else if (strstr(r->str, "-- sweep next")) {
                if (w->refreshes < 8)
                    w->refresh_at[w->refreshes] = w->dels;
                w->refreshes++;
            } else if (strstr(r->str, "-- sweep end")) {
                w->ended = 1;
            }
        }
        freeReplyObject(r);
    }
}

/* ---- the stack ---------------------------------------------------------------- */

static void test_cluster_stack(void **st)
{
    (void)st;
    char tok[32], chan[48], ida[48], idb[48];
    snprintf(tok, sizeof tok, "CL%d", (int)getpid());
    snprintf(chan, sizeof chan, "%s.trade", tok);
    snprintf(ida, sizeof ida, "cl-a-%d", (int)getpid());
    snprintf(idb, sizeof idb, "cl-b-%d", (int)getpid());
    char route[96], reva[96], revb[96], leasea[96], leaseb[96], sweepb[96], shards[] =
        "odin:shards";
    snprintf(route, sizeof route, "odin:route:%s", tok);
    snprintf(reva, sizeof reva, "odin:shard:{%s}:tokens", ida);
    snprintf(revb, sizeof revb, "odin:shard:{%s}:tokens", idb);
    snprintf(leasea, sizeof leasea, "odin:shard:{%s}", ida);
    snprintf(leaseb, sizeof leaseb, "odin:shard:{%s}", idb);
    snprintf(sweepb, sizeof sweepb, "odin:shard:{%s}:sweep", idb);
    freeReplyObject(redisCommand(R, "CONFIG RESETSTAT"));   /* the negative check's errors */
    /* no script cached: the shards' EVALSHA meets NOSCRIPT and resends */
    freeReplyObject(redisCommand(R, "SCRIPT FLUSH"));

    const char *senv[] = { "SHARD_LEASE_TTL=2", "LOG_LEVEL=info", "REDIS_CLUSTER_KEYS=1",
                           NULL };
    ssup_shard a, b;
    assert_int_equal(ssup_shard_start(&a, ida, red.url, senv), 0);
    assert_int_equal(ssup_shard_start(&b, idb, red.url, senv), 0);
    char group[96];
    snprintf(group, sizeof group, "KAFKA_GROUP=%s", rtsup_unique("cl"));
    const char *renv[] = { group, "KAFKA_OFFSET_RESET=latest", "LOG_LEVEL=info",
                           "REDIS_CLUSTER_KEYS=1",
                           "KAFKA_OPTIONS=fetch.wait.max.ms=20,"
                           "topic.metadata.refresh.interval.ms=1000,session.timeout.ms=6000",
                           NULL };
    rtsup_router r;
    assert_int_equal(rtsup_router_start(&r, red.url, renv), 0);
    assert_true(rtsup_wait_metric(r.http_port, "router_assigned_partitions", 1, 120000));
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_shards_connected", 2, 15000));

    client ca, cb;
    client_open(&ca, a.port, chan);
    client_open(&cb, b.port, chan);
    client *both[] = { &ca, &cb, NULL };
    /* routes and the hash-tagged reverse indexes; the default names unused */
    assert_true(tsup_wait_member(R, route, ida, 1, 10000));
    assert_true(tsup_wait_member(R, route, idb, 1, 10000));
    assert_int_equal(tsup_redis_int(R, "SISMEMBER %s %s", reva, tok), 1);
    assert_int_equal(tsup_redis_int(R, "SISMEMBER %s %s", revb, tok), 1);
    assert_int_equal(tsup_redis_int(R, "EXISTS %s", leasea), 1);
    assert_int_equal(tsup_redis_int(R, "SISMEMBER %s %s", shards, ida), 1);
    assert_int_equal(tsup_redis_int(R, "EXISTS odin:shard:%s", ida), 0);
    assert_int_equal(tsup_redis_int(R, "EXISTS odin:shard:%s:tokens", ida), 0);
    assert_int_equal(tsup_redis_int(R, "CLUSTER KEYSLOT %s", reva),
                     tsup_redis_int(R, "CLUSTER KEYSLOT %s", leasea));

    rtsup_producer *p = rtsup_producer_new(tsup_env("ODIN_KAFKA_BROKERS"));
    /* live: the router reads from the latest offsets once assigned */
    uint64_t end = clock_mono_ms() + 30000;
    for (int k = 0;; k++) {
        char id[32];
        snprintf(id, sizeof id, "warm-%d", k);
        await_marker(both, p, id, 500);
        if (all_at(both, id))
            break;
        assert_true(clock_mono_ms() < end);
    }
    assert_int_equal(ca.count + cb.count, 0);

    /* every record exactly once to each subscriber, in order */
    const int N = 150;
    for (int i = 0; i < N; i++)
        produce(p, tok, i);
    await_marker(both, p, "m1", 20000);
    assert_true(all_at(both, "m1"));
    fprintf(stderr, "delivered: a %ld, b %ld of %d\n", ca.count, cb.count, N);
    assert_int_equal(ca.count, N);
    assert_int_equal(cb.count, N);

    /* a unsubscribes: route and reverse-index entry of a go, b's stay */
    request(&ca, "unsubscribe", "\"unsubscription_ack\"");
    assert_true(tsup_wait_member(R, route, ida, 0, 10000));
    assert_int_equal(tsup_redis_int(R, "SISMEMBER %s %s", reva, tok), 0);
    assert_int_equal(tsup_redis_int(R, "SISMEMBER %s %s", route, idb), 1);
    const int M = 40;
    for (int i = 0; i < M; i++)
        produce(p, tok, N + i);
    await_marker(both, p, "m2", 20000);
    assert_true(all_at(both, "m2"));
    fprintf(stderr, "after unsubscribe: a %ld, b %ld\n", ca.count, cb.count);
    assert_int_equal(ca.count, N);
    assert_int_equal(cb.count, N + M);
    for (int i = 0; both[i]; i++) {
        assert_int_equal(both[i]->unexpected, 0);
        assert_int_equal(both[i]->out_of_order, 0);
    }

    /* 600 more tokens on b (5 clients x 120 channels): its sweep is long
     * enough to refresh its marker twice */
    enum { BULK = 5, PER = 120 };
    wsc *bulk[BULK];
    for (int k = 0; k < BULK; k++) {
        int status = 0;
        bulk[k] = wsc_connect("127.0.0.1", b.port, NULL, &status);
        assert_non_null(bulk[k]);
        assert_int_equal(status, 101);
        char req[PER * 40 + 64];
        int l = snprintf(req, sizeof req, "{\"type\":\"subscribe\",\"data\":{\"channels\":[");
        for (int i = 0; i < PER; i++)
            l += snprintf(req + l, sizeof req - (size_t)l, "%s\"B%d-%d-%d.trade\"", i ? "," : "",
                          (int)getpid(), k, i);
        snprintf(req + l, sizeof req - (size_t)l, "]}}");
        assert_int_equal(wsc_send_text(bulk[k], req), 0);
        for (;;) {
            char *msg = NULL;
            assert_int_equal(wsc_recv_text(bulk[k], 10000, &msg, NULL), 1);
            int ack = strstr(msg, "\"subscription_ack\"") != NULL;
            if (ack)
                assert_non_null(strstr(msg, "\"count\":120"));
            free(msg);
            if (ack)
                break;
        }
    }
    char bulk_last[64];
    snprintf(bulk_last, sizeof bulk_last, "B%d-%d-%d", (int)getpid(), BULK - 1, PER - 1);
    assert_true(tsup_wait_member(R, revb, bulk_last, 1, 10000));
    assert_int_equal(tsup_redis_int(R, "SCARD %s", revb), 1 + BULK * PER);

    /* b SIGKILLed: the router sweeps its routes through {b}'s reverse index */
    redisContext *mon = tsup_redis_connect(red.url);
    redisReply *mr = redisCommand(mon, "MONITOR");
    assert_true(mr && mr->type == REDIS_REPLY_STATUS);
    freeReplyObject(mr);
    double cleaned0 = rtsup_metric(r.http_port, "router_shards_cleaned_total");
    uint64_t killed = clock_mono_ms();
    assert_true(WIFSIGNALED(ssup_shard_stop(&b, SIGKILL, 5000)));
    sweep_seen w;
    monitor_sweep(mon, idb, &w);
    redisFree(mon);
    fprintf(stderr, "sweep of b: %ld route removals, %ld marker refreshes (after %ld, %ld)\n",
            w.dels, w.refreshes, w.refresh_at[0], w.refresh_at[1]);
    assert_true(w.ended);
    assert_int_equal(w.dels, 1 + BULK * PER);
    /* one step per chunk of 256 and the last (empty) one; each after the
     * previous chunk's removals */
    enum { TOTAL = 1 + BULK * PER, CH = SCHEMA_CHUNK_DEFAULT };
    assert_int_equal(w.refreshes, (TOTAL + CH - 1) / CH + 1);
    for (long k = 0; k < w.refreshes && k < 8; k++)
        assert_int_equal(w.refresh_at[k], k * CH < TOTAL ? k * CH : TOTAL);
    for (int k = 0; k < BULK; k++)
        wsc_free(bulk[k]);
    /* lease TTL 2 s + discovery, slack for a loaded machine */
    assert_true(tsup_wait_member(R, route, idb, 0, 15000));
    fprintf(stderr, "dead shard's route removed %llu ms after SIGKILL\n",
            (unsigned long long)(clock_mono_ms() - killed));
    assert_true(tsup_wait_member(R, shards, idb, 0, 5000));
    assert_int_equal(tsup_redis_int(R, "EXISTS %s %s %s", revb, leaseb, sweepb), 0);
    assert_int_equal(tsup_redis_int(R, "EXISTS %s", route), 0);
    assert_true(rtsup_metric(r.http_port, "router_shards_cleaned_total") >= cleaned0 + 1);
    assert_int_equal(ssup_metric(a.port, "shard_redis_errors_total"), 0);
    assert_true(ssup_metric(a.port, "shard_redis_script_loads_total") >= 1);

    /* A sweep whose route removal fails goes no further: c stays in
     * odin:shards with its reverse index, so the next discovery round
     * sweeps it again, until the removal succeeds.  (A failure only in
     * the reply: Redis would run the pipelined SREM odin:shards anyway,
     * and c's remaining route would never be swept.)  The failure: c's
     * route key of one token turned into a string (WRONGTYPE). */
    char idc[48], toka[48], tokb[48], chana[64], chanb[64], routea[96], routeb[96],
        revc[96], delc[160];
    snprintf(idc, sizeof idc, "cl-c-%d", (int)getpid());
    snprintf(toka, sizeof toka, "CA%d", (int)getpid());
    snprintf(tokb, sizeof tokb, "CB%d", (int)getpid());
    snprintf(chana, sizeof chana, "%s.trade", toka);
    snprintf(chanb, sizeof chanb, "%s.trade", tokb);
    snprintf(routea, sizeof routea, "odin:route:%s", toka);
    snprintf(routeb, sizeof routeb, "odin:route:%s", tokb);
    snprintf(revc, sizeof revc, "odin:shard:{%s}:tokens", idc);
    ssup_shard c;
    assert_int_equal(ssup_shard_start(&c, idc, red.url, senv), 0);
    client cc1, cc2;
    client_open(&cc1, c.port, chana);
    client_open(&cc2, c.port, chanb);
    assert_true(tsup_wait_member(R, routea, idc, 1, 10000));
    assert_true(tsup_wait_member(R, routeb, idc, 1, 10000));
    assert_true(tsup_wait_member(R, shards, idc, 1, 10000));
    assert_int_equal(tsup_redis_int(R, "DEL %s", routea), 1);
    freeReplyObject(redisCommand(R, "SET %s not-a-set", routea));
    redisContext *mon2 = tsup_redis_connect(red.url);
    mr = redisCommand(mon2, "MONITOR");
    assert_true(mr && mr->type == REDIS_REPLY_STATUS);
    freeReplyObject(mr);
    assert_true(WIFSIGNALED(ssup_shard_stop(&c, SIGKILL, 5000)));
    /* two attempts at the broken removal: the first sweep did not take c
     * out of odin:shards */
    snprintf(delc, sizeof delc, "\"%s\" \"del\" \"%s\"", routea, idc);
    int attempts = 0;
    uint64_t until = clock_mono_ms() + 20000;
    while (attempts < 2 && clock_mono_ms() < until) {
        redisReply *l = NULL;
        if (redisGetReply(mon2, (void **)&l) != REDIS_OK)
            break;
        if (l->type == REDIS_REPLY_STATUS && strstr(l->str, delc))
            attempts++;
        freeReplyObject(l);
    }
    redisFree(mon2);
    fprintf(stderr, "failing removal tried %d times; c still listed: %lld\n", attempts,
            tsup_redis_int(R, "SISMEMBER %s %s", shards, idc));
    assert_int_equal(attempts, 2);
    assert_int_equal(tsup_redis_int(R, "SISMEMBER %s %s", shards, idc), 1);
    assert_int_equal(tsup_redis_int(R, "SISMEMBER %s %s", revc, toka), 1);
    /* mended: the next round completes the sweep */
    assert_int_equal(tsup_redis_int(R, "DEL %s", routea), 1);
    assert_true(tsup_wait_member(R, shards, idc, 0, 15000));
    assert_true(tsup_wait_member(R, routeb, idc, 0, 5000));
    assert_int_equal(tsup_redis_int(R, "EXISTS %s odin:shard:{%s} odin:shard:{%s}:sweep", revc,
                                    idc, idc), 0);
    wsc_free(cc1.ws);
    wsc_free(cc2.ws);

    /* a stops: its own deregistration, cluster layout */
    rtsup_producer_free(p);
    wsc_free(ca.ws);
    wsc_free(cb.ws);
    int rst = rtsup_router_stop(&r);
    assert_true(WIFEXITED(rst));
    assert_int_equal(WEXITSTATUS(rst), 0);
    assert_int_equal(WEXITSTATUS(ssup_shard_stop(&a, SIGTERM, 10000)), 0);
    assert_int_equal(tsup_redis_int(R, "EXISTS %s %s", leasea, reva), 0);
    assert_int_equal(tsup_redis_int(R, "SISMEMBER %s %s", shards, ida), 0);
    assert_no_slot_errors();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_negative),
        cmocka_unit_test(test_stale_sweep_marker),
        cmocka_unit_test(test_cluster_stack),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
