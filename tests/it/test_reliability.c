/*
 * Cases that bound exit and recovery times closely, and the shard
 * SIGSTOPped past its lease, run with no other test beside them
 * (tools/run-tests.sh); the others, which count gaps and duplicates, or
 * bound a time by far more than load can add (SIGTERM while holding exits
 * in ~10 ms against a 3 s bound; a restart that waits for the session,
 * 2.5 to 8 s), run side by side:
 * odin-test: part timed alone test_shard_sigstop
 * odin-test: part timed alone test_router_kill_restart test_broker_killed_then_sigterm
 * Nothing lost for connected clients (docs/reliability.md): a fault battery
 * against the real processes (redis-server, odin-devbroker, odin-router,
 * odin-shard) with real WebSocket clients.
 *
 * Every test streams numbered records per token (tests/support/stream.h:
 * value {"data":{"n":k}}, k = 0, 1, 2, ... at a steady rate, each token on
 * its own partition) while it injects one fault, then stops producing and
 * waits until every client has every number.  Each client counts, per token, what it received, the
 * numbers it never got (gaps) and the ones it got twice (duplicates), and
 * the longest silence while records were being produced (the recovery
 * time).  Every test prints one "figures:" line per client.
 *
 * Waiting is on events only (metrics, Redis keys, process exits, records);
 * the only pacing is the producer's rate.  Tests that kill Redis or the
 * broker use private instances.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "tests/support/cases.h"
#include "tests/support/rtsup.h"
#include "tests/support/shardsup.h"
#include "tests/support/stream.h"
#include "tests/support/support.h"
#include "tests/support/wsclient.h"

#define T_WAIT 30000
#define RATE 40          /* records per second per token */
/* A SIGKILLed router restarted with KAFKA_EVICT_PREVIOUS delivers again
 * within this (issue 10: 3 s; measured ~2.3 s on the devbroker). */
#define RESTART_BOUND_MS 3000

/* ---- fixtures ------------------------------------------------------------ */

static void wait_route(const char *url, const char *tok, const char *shard_id)
{
    assert_true(stream_wait_route(url, tok, shard_id, T_WAIT));
}

static void start_shard(ssup_shard *sh, const char *tag, const char *url)
{
    assert_int_equal(stream_shard_start(sh, tag, url), 0);
}

static void start_router(rtsup_router *r, stream *s, const char *url, const char *group,
                         const char *const more[])
{
    assert_int_equal(stream_router_start(r, s, url, group, more), 0);
}

static void stream_open(stream *s, const char *brokers, const char *tag, int ntok)
{
    assert_int_equal(stream_init(s, brokers, tag, ntok, RATE), 0);
}

static stream_client *client_new(stream *s, const char *name, int port, const int toks[])
{
    stream_client *c = stream_client_new(s, name, port, toks);
    assert_non_null(c);
    return c;
}

static double metric(rtsup_router *r, const char *series)
{
    return rtsup_metric(r->http_port, series);
}

typedef struct metric_arg {
    int port;
    const char *series;
    double min;
} metric_arg;

static int metric_at_least(void *arg)
{
    metric_arg *m = arg;
    return rtsup_metric(m->port, m->series) >= m->min;
}

static int metric_at_most(void *arg)
{
    metric_arg *m = arg;
    double v = rtsup_metric(m->port, m->series);
    return v >= 0 && v <= m->min;
}

/* Router consuming in targeted mode (the WARMUP record went out targeted). */
static void wait_targeted(rtsup_router *r, int shards)
{
    assert_true(rtsup_wait_metric_eq(r->http_port, "router_shards_connected", shards, T_WAIT));
    assert_true(rtsup_wait_metric(r->http_port, "router_dispatch_total{mode=\"targeted\"}", 1,
                                  T_WAIT));
}

/* The router targets `shards` connected shards: stream for ms. */
static void stream_when_targeted(stream *s, rtsup_router *r, int shards, int ms)
{
    wait_targeted(r, shards);
    stream_start(s);
    stream_for(s, ms);
}

static void report_router(rtsup_router *r, const char *test)
{
    printf("router: test=%s holds=%.0f hold_expired=%.0f registry_resets=%.0f "
           "shard_grace=%.0f drops_shard_down=%.0f drops_no_shard=%.0f unrouted=%.0f "
           "fallback=%.0f\n", test, metric(r, "router_holds_total"),
           metric(r, "router_hold_expired_total"), metric(r, "router_registry_resets_total"),
           metric(r, "router_shard_grace_total"),
           metric(r, "router_drops_total{reason=\"shard_down\"}"),
           metric(r, "router_drops_total{reason=\"no_shard\"}"),
           metric(r, "router_records_unrouted_total"),
           metric(r, "router_dispatch_total{mode=\"fallback\"}"));
    fflush(stdout);
}

static const char *brokers(void) { return tsup_env("ODIN_KAFKA_BROKERS"); }

/* The setting most faults start from: a private Redis, a 2-token stream,
 * shards a and b, and one router in a fresh group. */
static void two_shards(tsup_redis *red, stream *s, const char *name, ssup_shard *a,
                       const char *tag_a, ssup_shard *b, const char *tag_b, rtsup_router *r)
{
    assert_int_equal(tsup_redis_start(red), 0);
    stream_open(s, brokers(), name, 2);
    start_shard(a, tag_a, red->url);
    start_shard(b, tag_b, red->url);
    start_router(r, s, red->url, rtsup_unique("g"), NULL);
}

/* ---- Redis killed and restarted empty ------------------------------------ */

static void test_redis_restart_empty(void **state)
{
    tsup_redis red;
    stream s;
    ssup_shard a, b;
    rtsup_router r;
    two_shards(&red, &s, "rel-redis", &a, "ra", &b, "rb", &r);
    client_new(&s, "a:TA", a.port, (int[]){ 0, -1 });
    client_new(&s, "b:TB", b.port, (int[]){ 1, -1 });
    client_new(&s, "b:TA+TB", b.port, (int[]){ 0, 1, -1 });
    wait_route(red.url, s.tok[0], a.id);
    wait_route(red.url, s.tok[1], b.id);
    stream_when_targeted(&s, &r, 2, 1000);
    tsup_redis_stop(&red);                 /* SIGKILL */
    stream_for(&s, 1000);                  /* fallback broadcast meanwhile */
    uint64_t t_back = clock_mono_ms();
    assert_int_equal(tsup_redis_start_on(&red, red.port), 0);   /* empty */
    metric_arg m = { r.http_port, "router_registry_resets_total", 1 };
    assert_true(stream_until(&s, metric_at_least, &m, T_WAIT));
    /* targeted again once both shards re-registered */
    double tg = metric(&r, "router_dispatch_total{mode=\"targeted\"}");
    metric_arg m2 = { r.http_port, "router_dispatch_total{mode=\"targeted\"}", tg + 20 };
    assert_true(stream_until(&s, metric_at_least, &m2, T_WAIT));
    long recovery = (long)(clock_mono_ms() - t_back);
    stream_for(&s, 1000);
    long gaps = stream_finish(&s, "redis_restart_empty", recovery);
    report_router(&r, "redis_restart_empty");
    assert_int_equal(gaps, 0);
    assert_true(metric(&r, "router_holds_total") >= 1);

    assert_int_equal(rtsup_router_stop(&r), 0);
    stream_free(&s);
    ssup_shard_stop(&a, SIGTERM, 5000);
    ssup_shard_stop(&b, SIGTERM, 5000);
    tsup_redis_stop(&red);
}

/* ---- FLUSHALL with every connection kept ---------------------------------- */

static void test_flushall(void **state)
{
    tsup_redis red;
    stream s;
    ssup_shard a, b;
    rtsup_router r;
    two_shards(&red, &s, "rel-flush", &a, "fa", &b, "fb", &r);
    client_new(&s, "a:TA", a.port, (int[]){ 0, -1 });
    client_new(&s, "b:TB", b.port, (int[]){ 1, -1 });
    wait_route(red.url, s.tok[0], a.id);
    wait_route(red.url, s.tok[1], b.id);
    stream_when_targeted(&s, &r, 2, 1000);
    uint64_t t0 = clock_mono_ms();
    redisContext *rc = tsup_redis_connect(red.url);
    redisReply *rep = redisCommand(rc, "FLUSHALL");
    assert_non_null(rep);
    freeReplyObject(rep);
    metric_arg m = { r.http_port, "router_registry_resets_total", 1 };
    assert_true(stream_until(&s, metric_at_least, &m, T_WAIT));
    wait_route(red.url, s.tok[0], a.id);
    wait_route(red.url, s.tok[1], b.id);
    double tg = metric(&r, "router_dispatch_total{mode=\"targeted\"}");
    metric_arg m2 = { r.http_port, "router_dispatch_total{mode=\"targeted\"}", tg + 20 };
    assert_true(stream_until(&s, metric_at_least, &m2, T_WAIT));
    long recovery = (long)(clock_mono_ms() - t0);
    stream_for(&s, 1000);
    long gaps = stream_finish(&s, "flushall", recovery);
    report_router(&r, "flushall");
    assert_int_equal(gaps, 0);
    /* the connections were kept: no record was dropped */
    assert_int_equal(metric(&r, "router_drops_total{reason=\"shard_down\"}"), 0);

    redisFree(rc);
    assert_int_equal(rtsup_router_stop(&r), 0);
    stream_free(&s);
    ssup_shard_stop(&a, SIGTERM, 5000);
    ssup_shard_stop(&b, SIGTERM, 5000);
    tsup_redis_stop(&red);
}

/* ---- router started while Redis is down ------------------------------------ */

static void test_router_start_redis_down(void **state)
{
    tsup_redis red;
    assert_int_equal(tsup_redis_start(&red), 0);
    stream s;
    stream_open(&s, brokers(), "rel-rdown", 2);
    ssup_shard a;
    start_shard(&a, "da", red.url);
    client_new(&s, "a:TA+TB", a.port, (int[]){ 0, 1, -1 });
    wait_route(red.url, s.tok[0], a.id);
    wait_route(red.url, s.tok[1], a.id);

    tsup_redis_stop(&red);
    rtsup_router r;
    start_router(&r, &s, red.url, rtsup_unique("g"), NULL);
    stream_start(&s);
    /* held: nothing sent, nothing stored */
    metric_arg h = { r.http_port, "router_hold_active", 1 };
    assert_true(stream_until(&s, metric_at_least, &h, T_WAIT));
    stream_for(&s, 500);
    assert_true(metric(&r, "router_holds_total") >= 1);
    assert_int_equal(metric(&r, "router_records_sent_total"), 0);
    assert_int_equal(metric(&r, "router_offsets_stored_total"), 0);
    char *body = NULL;   /* /health says so: degraded (200), holding */
    assert_int_equal(tsup_http_get(r.http_port, "/health", &body), 200);
    assert_non_null(strstr(body, "\"status\":\"degraded\""));
    assert_non_null(strstr(body, "\"holding\":true"));
    free(body);
    uint64_t t_back = clock_mono_ms();
    assert_int_equal(tsup_redis_start_on(&red, red.port), 0);   /* empty */
    metric_arg m = { r.http_port, "router_dispatch_total{mode=\"targeted\"}", 20 };
    assert_true(stream_until(&s, metric_at_least, &m, T_WAIT));
    long recovery = (long)(clock_mono_ms() - t_back);
    stream_for(&s, 1000);
    assert_int_equal(tsup_http_get(r.http_port, "/health", &body), 200);
    assert_non_null(strstr(body, "\"holding\":false"));
    free(body);
    long gaps = stream_finish(&s, "router_start_redis_down", recovery);
    report_router(&r, "router_start_redis_down");
    assert_int_equal(gaps, 0);

    assert_int_equal(rtsup_router_stop(&r), 0);
    stream_free(&s);
    ssup_shard_stop(&a, SIGTERM, 5000);
    tsup_redis_stop(&red);
}

/* ---- SIGTERM while holding: exits at once, stores nothing -------------- */

static void test_sigterm_while_holding(void **state)
{
    tsup_redis red;
    assert_int_equal(tsup_redis_start(&red), 0);
    tsup_redis_stop(&red);                 /* the router starts with Redis down */
    stream s;
    stream_open(&s, brokers(), "rel-hterm", 1);
    char grp[128];
    snprintf(grp, sizeof grp, "%s", rtsup_unique("g"));
    const char *more[] = { "SHUTDOWN_TIMEOUT_MS=5000", NULL };
    rtsup_router r;
    start_router(&r, &s, red.url, grp, more);
    stream_start(&s);
    metric_arg h = { r.http_port, "router_hold_active", 1 };
    assert_true(stream_until(&s, metric_at_least, &h, T_WAIT));
    s.producing = 0;
    assert_int_equal(rtsup_producer_flush(s.p), 0);
    uint64_t t0 = clock_mono_ms();
    int st = tsup_stop(r.pid, SIGTERM, 20000);
    long exit_ms = (long)(clock_mono_ms() - t0);
    r.pid = -1;
    int64_t committed = rtsup_committed(brokers(), grp, s.topic, 0);
    printf("figures: test=sigterm_while_holding exit_ms=%ld committed=%lld\n", exit_ms,
           (long long)committed);
    fflush(stdout);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_true(exit_ms < 3000);           /* did not wait SHUTDOWN_TIMEOUT_MS */
    assert_true(committed <= 0);           /* the held records were not stored */
    stream_free(&s);
}

/* ---- a shard stalled past its lease (SIGSTOP 5 s) ----------------------- */

static void test_shard_sigstop(void **state)
{
    tsup_redis red;
    stream s;
    ssup_shard a, b;
    rtsup_router r;
    two_shards(&red, &s, "rel-stop", &a, "sa", &b, "sb", &r);
    client_new(&s, "a:TA", a.port, (int[]){ 0, -1 });
    client_new(&s, "b:TA+TB", b.port, (int[]){ 0, 1, -1 });
    wait_route(red.url, s.tok[0], a.id);
    wait_route(red.url, s.tok[1], b.id);
    stream_when_targeted(&s, &r, 2, 1000);
    assert_int_equal(kill(b.pid, SIGSTOP), 0);
    /* its lease (2 s) lapses: the router keeps its connection and queue */
    metric_arg m = { r.http_port, "router_shard_grace_total", 1 };
    assert_true(stream_until(&s, metric_at_least, &m, T_WAIT));
    stream_for(&s, 5000 - 2000);
    uint64_t t_cont = clock_mono_ms();
    assert_int_equal(kill(b.pid, SIGCONT), 0);
    char key[160];
    snprintf(key, sizeof key, "odin:shard:%s", b.id);
    redisContext *rc = tsup_redis_connect(red.url);
    tsup_member_q k = { rc, "odin:shards", b.id, 1 };
    assert_true(stream_until(&s, tsup_is_member, &k, T_WAIT));
    long recovery = (long)(clock_mono_ms() - t_cont);
    stream_for(&s, 1000);
    long gaps = stream_finish(&s, "shard_sigstop_5s", recovery);
    report_router(&r, "shard_sigstop_5s");
    assert_int_equal(gaps, 0);
    assert_int_equal(metric(&r, "router_drops_total{reason=\"shard_down\"}"), 0);
    assert_int_equal(tsup_redis_int(rc, "EXISTS %s", key), 1);

    redisFree(rc);
    assert_int_equal(rtsup_router_stop(&r), 0);
    stream_free(&s);
    ssup_shard_stop(&a, SIGTERM, 5000);
    ssup_shard_stop(&b, SIGTERM, 5000);
    tsup_redis_stop(&red);
}

/* ---- a shard SIGKILLed: the other shards' clients lose nothing ---------- */

static void test_shard_kill(void **state)
{
    tsup_redis red;
    stream s;
    ssup_shard a, b;
    rtsup_router r;
    two_shards(&red, &s, "rel-skill", &a, "ka", &b, "kb", &r);
    client_new(&s, "a:TA+TB", a.port, (int[]){ 0, 1, -1 });
    stream_client *victim = client_new(&s, "b:TA", b.port, (int[]){ 0, -1 });
    wait_route(red.url, s.tok[0], a.id);
    wait_route(red.url, s.tok[0], b.id);
    stream_when_targeted(&s, &r, 2, 1000);
    uint64_t t0 = clock_mono_ms();
    ssup_shard_stop(&b, SIGKILL, 5000);
    metric_arg one = { r.http_port, "router_shards_connected", 1 };
    assert_true(stream_until(&s, metric_at_most, &one, T_WAIT));
    long recovery = (long)(clock_mono_ms() - t0);
    stream_for(&s, 1500);
    assert_true(victim->gone);
    long gaps = stream_finish(&s, "shard_sigkill", recovery);
    report_router(&r, "shard_sigkill");
    assert_int_equal(gaps, 0);

    assert_int_equal(rtsup_router_stop(&r), 0);
    stream_free(&s);
    ssup_shard_stop(&a, SIGTERM, 5000);
    tsup_redis_stop(&red);
}

/* ---- router SIGKILLed and restarted with its ROUTER_ID ------------------- */

/* The Kafka member id recorded for a ROUTER_ID (router/leavegroup.h), or "". */
typedef struct member_arg {
    redisContext *c;
    const char *key;
    char id[128];
    const char *not;              /* wait for an id other than this one */
} member_arg;

static int member_recorded(void *arg)
{
    member_arg *m = arg;
    redisReply *r = redisCommand(m->c, "GET %s", m->key);
    m->id[0] = '\0';
    if (r && r->type == REDIS_REPLY_STRING)
        snprintf(m->id, sizeof m->id, "%s", r->str);
    if (r)
        freeReplyObject(r);
    return m->id[0] && (!m->not || strcmp(m->id, m->not) != 0);
}

/* SIGKILL the router, restart it with the same settings, and measure how
 * long until a record produced after the restart is delivered.  router_id
 * (NULL: not set) also checks the member id record (router/leavegroup.h):
 * with `recorded` (KAFKA_EVICT_PREVIOUS on) written before the kill,
 * refreshed by the new member after the restart; without, never written
 * (the key is absent once partitions were assigned and records flowed). */
static void router_kill_restart(const char *test, const char *const more[],
                                const char *router_id, int recorded, long *recovery)
{
    tsup_redis red;
    assert_int_equal(tsup_redis_start(&red), 0);
    redisContext *rc = tsup_redis_connect(red.url);
    char key[160];
    snprintf(key, sizeof key, "odin:router:%s", router_id ? router_id : "");
    stream s;
    stream_open(&s, brokers(), "rel-rkill", 2);
    ssup_shard a;
    start_shard(&a, "rk", red.url);
    const char *group = rtsup_unique("g");
    char grp[128];
    snprintf(grp, sizeof grp, "%s", group);
    rtsup_router r;
    start_router(&r, &s, red.url, grp, more);
    client_new(&s, "a:TA+TB", a.port, (int[]){ 0, 1, -1 });
    wait_route(red.url, s.tok[0], a.id);
    wait_route(red.url, s.tok[1], a.id);
    stream_when_targeted(&s, &r, 1, 1500);
    member_arg first = { rc, key, "", NULL };
    if (router_id && recorded)
        assert_true(stream_until(&s, member_recorded, &first, T_WAIT));
    if (router_id && !recorded)
        assert_int_equal(tsup_redis_int(rc, "EXISTS %s", key), 0);
    kill(r.pid, SIGKILL);
    rtsup_router_stop(&r);                 /* reaps it */
    uint64_t t0 = clock_mono_ms();
    rtsup_router r2;
    start_router(&r2, &s, red.url, grp, more);
    /* delivery resumes: a record produced after the restart arrives */
    stream_client *c = s.cl[0];
    int mark = s.next[0];
    uint64_t end = clock_mono_ms() + T_WAIT;
    while (!c->seen[0][mark] && clock_mono_ms() < end)
        stream_tick(&s, 5);
    *recovery = (long)(clock_mono_ms() - t0);
    assert_true(c->seen[0][mark]);
    stream_for(&s, 1000);
    long gaps = stream_finish(&s, test, *recovery);
    report_router(&r2, test);
    assert_int_equal(gaps, 0);
    if (router_id && !recorded)
        assert_int_equal(tsup_redis_int(rc, "EXISTS %s", key), 0);
    if (router_id && recorded) {
        /* the new member refreshes the record (every session timeout); the
         * mock's member ids are addresses and may repeat, so the key is
         * deleted and must come back rather than change */
        assert_int_equal(tsup_redis_int(rc, "DEL %s", key), 1);
        member_arg again = { rc, key, "", NULL };
        assert_true(tsup_wait_until(member_recorded, &again, T_WAIT));
    }

    assert_int_equal(rtsup_router_stop(&r2), 0);
    stream_free(&s);
    ssup_shard_stop(&a, SIGTERM, 5000);
    redisFree(rc);
    tsup_redis_stop(&red);
}

/* Static membership (ROUTER_ID -> group.instance.id) gives a restarted
 * router its partitions back at once on Kafka and Redpanda.  The devbroker
 * (librdkafka 2.0.2's mock cluster) ignores group.instance.id: with
 * ROUTER_ID alone, as without it, the restart waits for the dead member's
 * session timeout (3000 ms, the mock's lowest workable: it delays a group's
 * first join by 3 s and evicts members whose session is shorter) and then
 * a rebalance delay (session - 1 s): about 5 s, which the second and third
 * runs show.  KAFKA_EVICT_PREVIOUS removes the dead member with a
 * LeaveGroup at start, so only the rebalance delay (2 s) is left: the 3 s
 * target is met on the devbroker too (docs/reliability.md). */
static const char k_restart_opts[] =
    "KAFKA_OPTIONS=topic.metadata.refresh.interval.ms=1000,"
    "session.timeout.ms=3000,heartbeat.interval.ms=300";

/* KAFKA_EVICT_PREVIOUS: recovery within RESTART_BOUND_MS (timed: alone). */
static void test_router_kill_restart(void **state)
{
    const char *evicting[] = { "ROUTER_ID=rel-evict", "KAFKA_EVICT_PREVIOUS=true",
                               k_restart_opts, NULL };
    long rec_evict = 0;
    router_kill_restart("router_sigkill_restart_evict", evicting, "rel-evict", 1, &rec_evict);
    printf("figures: test=router_sigkill_restart devbroker evict_previous_recovery_ms=%ld\n",
           rec_evict);
    fflush(stdout);
    assert_true(rec_evict <= RESTART_BOUND_MS);
}

/* ROUTER_ID alone, and no ROUTER_ID: the dead member's session is waited
 * for (the mock ignores group.instance.id).  The bounds are the session's
 * own (at least 2.5 s, under 8 s), not a latency target: side by side. */
static void test_router_kill_restart_no_evict(void **state)
{
    const char *with_id[] = { "ROUTER_ID=rel-static", k_restart_opts, NULL };
    const char *without[] = { k_restart_opts, NULL };
    long rec_static = 0, rec_dynamic = 0;
    /* ROUTER_ID without KAFKA_EVICT_PREVIOUS: no member-id record */
    router_kill_restart("router_sigkill_restart_static", with_id, "rel-static", 0, &rec_static);
    router_kill_restart("router_sigkill_restart_dynamic", without, NULL, 0, &rec_dynamic);
    printf("figures: test=router_sigkill_restart devbroker static_membership_recovery_ms=%ld "
           "dynamic_recovery_ms=%ld (the mock ignores group.instance.id)\n",
           rec_static, rec_dynamic);
    fflush(stdout);
    assert_true(rec_static >= 2500);       /* waited for the session: ignored */
    assert_true(rec_static < 8000 && rec_dynamic < 8000);
}

/* ---- two routers in one group, one killed ------------------------------- */

static void test_two_routers_rebalance(void **state)
{
    tsup_redis red;
    assert_int_equal(tsup_redis_start(&red), 0);
    stream s;
    stream_open(&s, brokers(), "rel-2r", 4);
    ssup_shard a;
    start_shard(&a, "2r", red.url);
    char grp[128];
    snprintf(grp, sizeof grp, "%s", rtsup_unique("g"));
    const char *m1[] = { "ROUTER_ID=rel-one", NULL };
    const char *m2[] = { "ROUTER_ID=rel-two", NULL };
    rtsup_router r1, r2;
    start_router(&r1, &s, red.url, grp, m1);
    start_router(&r2, &s, red.url, grp, m2);
    client_new(&s, "a:all", a.port, (int[]){ 0, 1, 2, 3, -1 });
    for (int t = 0; t < 4; t++)
        wait_route(red.url, s.tok[t], a.id);
    /* both members own partitions */
    metric_arg p1 = { r1.http_port, "router_assigned_partitions", 1 };
    metric_arg p2 = { r2.http_port, "router_assigned_partitions", 1 };
    assert_true(tsup_wait_until(metric_at_least, &p1, T_WAIT));
    assert_true(tsup_wait_until(metric_at_least, &p2, T_WAIT));
    assert_true(rtsup_wait_metric_eq(r1.http_port, "router_shards_connected", 1, T_WAIT));
    assert_true(rtsup_wait_metric_eq(r2.http_port, "router_shards_connected", 1, T_WAIT));

    stream_start(&s);
    stream_for(&s, 1500);
    kill(r1.pid, SIGKILL);
    rtsup_router_stop(&r1);
    uint64_t t0 = clock_mono_ms();
    metric_arg all = { r2.http_port, "router_assigned_partitions", 4 };
    assert_true(stream_until(&s, metric_at_least, &all, T_WAIT));
    long recovery = (long)(clock_mono_ms() - t0);
    stream_for(&s, 1500);
    long gaps = stream_finish(&s, "two_routers_one_killed", recovery);
    report_router(&r2, "two_routers_one_killed");
    assert_int_equal(gaps, 0);

    assert_int_equal(rtsup_router_stop(&r2), 0);
    stream_free(&s);
    ssup_shard_stop(&a, SIGTERM, 5000);
    tsup_redis_stop(&red);
}

/* ---- broker killed, then SIGTERM: bounded exit ---------------------------- */

static void test_broker_killed_then_sigterm(void **state)
{
    char *bootf = tsup_tmp("rel-broker.bootstrap");
    char *argv[] = { (char *)tsup_bin("odin-devbroker"), "--bootstrap-file", bootf, NULL };
    pid_t broker = tsup_spawn(argv, NULL);
    assert_true(broker > 0);
    assert_true(tsup_wait_file(bootf, 10000));
    char bs[256] = "";
    FILE *f = fopen(bootf, "r");
    assert_non_null(f);
    assert_non_null(fgets(bs, sizeof bs, f));
    fclose(f);
    bs[strcspn(bs, "\r\n")] = '\0';

    tsup_redis red;
    assert_int_equal(tsup_redis_start(&red), 0);
    stream s;
    stream_open(&s, bs, "rel-bk", 1);
    ssup_shard a;
    start_shard(&a, "bk", red.url);
    char kb[300];
    snprintf(kb, sizeof kb, "KAFKA_BROKERS=%s", bs);
    const char *more[] = { kb, "SHUTDOWN_TIMEOUT_MS=2000", NULL };
    rtsup_router r;
    start_router(&r, &s, red.url, rtsup_unique("g"), more);
    client_new(&s, "a:TA", a.port, (int[]){ 0, -1 });
    wait_route(red.url, s.tok[0], a.id);
    stream_when_targeted(&s, &r, 1, 1000);
    s.producing = 0;
    assert_int_equal(rtsup_producer_flush(s.p), 0);

    tsup_stop(broker, SIGKILL, 5000);
    uint64_t t0 = clock_mono_ms();
    int st = tsup_stop(r.pid, SIGTERM, 20000);
    long exit_ms = (long)(clock_mono_ms() - t0);
    r.pid = -1;
    printf("figures: test=broker_killed_then_sigterm exit_ms=%ld bound_ms=%d status=%d\n",
           exit_ms, 2000 + 2000, st);
    fflush(stdout);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_true(exit_ms <= 4000);

    stream_free(&s);
    ssup_shard_stop(&a, SIGTERM, 5000);
    tsup_redis_stop(&red);
    free(bootf);
}

/* ---- a second shard with a live shard's SHARD_ID ---------------------------- */

typedef struct exit_arg {
    pid_t pid;
    int status;
    int done;
} exit_arg;

static int exited(void *arg)
{
    exit_arg *e = arg;
    if (!e->done && waitpid(e->pid, &e->status, WNOHANG) == e->pid)
        e->done = 1;
    return e->done;
}

static void test_duplicate_shard_id(void **state)
{
    tsup_redis red;
    assert_int_equal(tsup_redis_start(&red), 0);
    stream s;
    stream_open(&s, brokers(), "rel-dup", 1);
    ssup_shard a;
    start_shard(&a, "dup", red.url);
    rtsup_router r;
    start_router(&r, &s, red.url, rtsup_unique("g"), NULL);
    client_new(&s, "a:TA", a.port, (int[]){ 0, -1 });
    wait_route(red.url, s.tok[0], a.id);
    wait_targeted(&r, 1);
    redisContext *rc = tsup_redis_connect(red.url);
    redisReply *n0 = redisCommand(rc, "HGET odin:shard:%s instance", a.id);
    assert_true(n0 && n0->type == REDIS_REPLY_STRING);

    stream_start(&s);
    stream_for(&s, 500);
    /* the same SHARD_ID on another port and socket */
    static char e_id[160], e_ws[64], e_sock[600], e_url[160];
    snprintf(e_id, sizeof e_id, "SHARD_ID=%s", a.id);
    snprintf(e_ws, sizeof e_ws, "WS_ADDR=127.0.0.1:%d", tsup_free_port());
    char *sock = tsup_tmp("dup2.sock");
    snprintf(e_sock, sizeof e_sock, "SHARD_SOCKET=%s", sock);
    free(sock);
    snprintf(e_url, sizeof e_url, "REDIS_URL=%s", red.url);
    char *env[] = { e_id, e_ws, e_sock, e_url, "SHARD_LEASE_TTL=2", NULL };
    char *argv[] = { (char *)tsup_bin("odin-shard"), NULL };
    exit_arg ex = { tsup_spawn(argv, env), 0, 0 };
    assert_true(ex.pid > 0);
    assert_true(stream_until(&s, exited, &ex, T_WAIT));
    assert_true(WIFEXITED(ex.status));
    assert_int_equal(WEXITSTATUS(ex.status), 1);
    char logp[600];
    snprintf(logp, sizeof logp, "%s/odin-shard.%d.log", tsup_env("ODIN_TMP"), (int)ex.pid);
    FILE *lf = fopen(logp, "r");
    if (lf) {
        char line[2048];
        int found = 0;
        while (fgets(line, sizeof line, lf))
            found |= strstr(line, "another live shard holds this SHARD_ID") != NULL;
        fclose(lf);
        assert_true(found);
    }
    stream_for(&s, 1500);
    /* the running shard is unaffected: same lease owner, routes intact */
    redisReply *n1 = redisCommand(rc, "HGET odin:shard:%s instance", a.id);
    assert_true(n1 && n1->type == REDIS_REPLY_STRING);
    assert_string_equal(n0->str, n1->str);
    freeReplyObject(n0);
    freeReplyObject(n1);
    char key[128];
    snprintf(key, sizeof key, "odin:route:%s", s.tok[0]);
    assert_int_equal(tsup_redis_int(rc, "SISMEMBER %s %s", key, a.id), 1);
    long gaps = stream_finish(&s, "duplicate_shard_id", 0);
    report_router(&r, "duplicate_shard_id");
    assert_int_equal(gaps, 0);

    redisFree(rc);
    assert_int_equal(rtsup_router_stop(&r), 0);
    stream_free(&s);
    ssup_shard_stop(&a, SIGTERM, 5000);
    tsup_redis_stop(&red);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redis_restart_empty),
        cmocka_unit_test(test_flushall),
        cmocka_unit_test(test_router_start_redis_down),
        cmocka_unit_test(test_sigterm_while_holding),
        cmocka_unit_test(test_shard_sigstop),
        cmocka_unit_test(test_shard_kill),
        cmocka_unit_test(test_duplicate_shard_id),
        cmocka_unit_test(test_broker_killed_then_sigterm),
        cmocka_unit_test(test_router_kill_restart),
        cmocka_unit_test(test_router_kill_restart_no_evict),
        cmocka_unit_test(test_two_routers_rebalance),
    };
    signal(SIGPIPE, SIG_IGN);
    return TSUP_RUN_CASES("reliability", tests, NULL, NULL);
}
