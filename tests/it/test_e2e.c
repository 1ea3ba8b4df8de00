/*
 * End-to-end tests against the real processes: odin-devbroker (Kafka
 * protocol), redis-server, odin-router, several odin-shard processes and
 * WebSocket clients.  Records are produced with librdkafka.
 *
 * Synchronisation without sleeps: a "marker" is a record on the broadcast
 * key "*" (delivered to every client of every shard) produced to the same
 * partition as the test records, after them.  Kafka keeps a partition's
 * order, the router keeps it per shard and each shard per client, so a
 * client that has seen marker N has seen everything produced before it,
 * including anything misrouted to it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "common/buf.h"
#include "common/clock.h"
#include "proto/frame.h"
#include "tests/support/rtsup.h"
#include "tests/support/shardsup.h"
#include "tests/support/support.h"
#include "tests/support/wsclient.h"
#include "tests/support/cases.h"

/* Every test record goes to partition 0 of these topics. */
#define TOPIC_TRADE "odin.trades"
#define TOPIC_ANALYTICS "odin.analytics"

#define MAXCH 8

typedef struct client {
    wsc *ws;
    const char *name;
    char channels[MAXCH][96];
    long counts[MAXCH];
    int64_t last_seq[MAXCH];
    long out_of_order;          /* seq not increasing on a channel */
    long unexpected;            /* a channel this client did not subscribe to */
    char last_marker[64];
    char mk_trade[64], mk_an[64];   /* last marker id seen on each topic */
} client;

static int ch_index(client *c, const char *ch)
{
    for (int i = 0; i < MAXCH && c->channels[i][0]; i++)
        if (strcmp(c->channels[i], ch) == 0)
            return i;
    return -1;
}

/* Handle one text message; returns 1 if it was a live record. */
static int on_text(client *c, const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    assert_non_null(j);
    int live = 0;
    json_t *chj = json_object_get(j, "channel");
    if (chj && json_is_string(chj)) {
        live = 1;
        const char *ch = json_string_value(chj);
        if (strncmp(ch, "*.", 2) == 0) {
            /* envelope data = the Kafka value verbatim: {"type":..,"data":{..}} */
            json_t *m = json_object_get(
                json_object_get(json_object_get(j, "data"), "data"), "marker");
            if (m && json_is_string(m)) {
                /* "<id>@trades" / "<id>@analytics" */
                const char *v = json_string_value(m), *at = strrchr(v, '@');
                size_t n = at ? (size_t)(at - v) : strlen(v);
                snprintf(c->last_marker, sizeof c->last_marker, "%.*s", (int)n, v);
                if (at && strcmp(at + 1, "trades") == 0)
                    snprintf(c->mk_trade, sizeof c->mk_trade, "%.*s", (int)n, v);
                else if (at && strcmp(at + 1, "analytics") == 0)
                    snprintf(c->mk_an, sizeof c->mk_an, "%.*s", (int)n, v);
            }
        } else {
            int i = ch_index(c, ch);
            if (i < 0) {
                c->unexpected++;
                fprintf(stderr, "%s: unexpected message on %s\n", c->name, ch);
            } else {
                int64_t seq = (int64_t)json_integer_value(json_object_get(j, "seq"));
                if (c->counts[i] > 0 && seq <= c->last_seq[i])
                    c->out_of_order++;
                c->last_seq[i] = seq;
                c->counts[i]++;
                /* the envelope carries the Kafka value verbatim */
                assert_non_null(json_object_get(
                    json_object_get(json_object_get(j, "data"), "data"), "n"));
            }
        }
    }
    json_decref(j);
    return live;
}

/* Read whatever is available within timeout_ms (0 = only what is buffered). */
static void pump(client *c, int timeout_ms)
{
    for (;;) {
        char *msg = NULL;
        int rc = wsc_recv_text(c->ws, timeout_ms, &msg, NULL);
        if (rc != 1) {
            assert_true(rc == 0);   /* never closed or errored */
            return;
        }
        on_text(c, msg);
        free(msg);
        timeout_ms = 0;
    }
}

static void client_open(client *c, const char *name, int port, const char *const chans[])
{
    memset(c, 0, sizeof *c);
    c->name = name;
    int status = 0;
    c->ws = wsc_connect("127.0.0.1", port, NULL, &status);
    assert_non_null(c->ws);
    assert_int_equal(status, 101);
    char req[1024] = "{\"type\":\"subscribe\",\"data\":{\"channels\":[";
    for (int i = 0; chans[i]; i++) {
        snprintf(c->channels[i], sizeof c->channels[i], "%s", chans[i]);
        strcat(req, i ? ",\"" : "\"");
        strcat(req, chans[i]);
        strcat(req, "\"");
    }
    strcat(req, "]}}");
    assert_int_equal(wsc_send_text(c->ws, req), 0);
    char *ack = NULL;
    assert_int_equal(wsc_recv_text(c->ws, 5000, &ack, NULL), 1);
    assert_non_null(strstr(ack, "\"subscription_ack\""));
    free(ack);
}

static void client_close(client *c)
{
    wsc_free(c->ws);
    c->ws = NULL;
}

static long count_of(client *c, const char *ch)
{
    int i = ch_index(c, ch);
    return i < 0 ? -1 : c->counts[i];
}

/* ---- records ---------------------------------------------------------- */

static void produce(rtsup_producer *p, const char *topic, const char *token, int n)
{
    rtsup_produce_trade(p, topic, 0, token, n);
}

static void produce_marker(rtsup_producer *p, const char *id)
{
    char m[128];
    snprintf(m, sizeof m, "%s@trades", id);
    rtsup_produce_marker(p, TOPIC_TRADE, 0, m);
    snprintf(m, sizeof m, "%s@analytics", id);
    rtsup_produce_marker(p, TOPIC_ANALYTICS, 0, m);
    assert_int_equal(rtsup_producer_flush(p), 0);
}

/* Wait until every client saw marker `id` on BOTH topics: Kafka orders only
 * within a partition, and the dev broker returns one producer batch per
 * partition per fetch, so the marker of one topic can overtake a backlog of
 * the other topic's records by many fetches (the router dispatches each
 * fetch at once). */
static void await_marker(client *const cs[], rtsup_producer *p, const char *tag)
{
    char id[64];
    for (int round = 0; round < 2; round++) {
        snprintf(id, sizeof id, "%s-%d", tag, round);
        produce_marker(p, id);
        for (int i = 0; cs[i]; i++) {
            uint64_t end = clock_mono_ms() + 20000;
            while (strcmp(cs[i]->mk_trade, id) != 0 || strcmp(cs[i]->mk_an, id) != 0) {
                assert_true(clock_mono_ms() < end);
                pump(cs[i], 100);
            }
        }
    }
}

/* Produce markers until every client receives one: the router is then
 * consuming live (it starts at the latest offsets). */
static void await_live(client *const cs[], rtsup_producer *p)
{
    uint64_t end = clock_mono_ms() + 30000;
    for (int k = 0;; k++) {
        char id[32];
        snprintf(id, sizeof id, "warm-%d", k);
        produce_marker(p, id);
        int all = 1;
        for (int i = 0; cs[i]; i++) {
            pump(cs[i], 300);
            if (strncmp(cs[i]->last_marker, "warm-", 5) != 0)
                all = 0;
        }
        if (all)
            break;
        assert_true(clock_mono_ms() < end);
    }
    /* a client saw a warm marker of one topic; the other topic's may still
     * be on its way (one fetch can be dispatched as two batches): settle
     * both before the caller takes its baselines */
    await_marker(cs, p, "settle");
}

static int route_has(const char *token, const char *shard_id)
{
    redisContext *rc = tsup_redis_connect(tsup_env("ODIN_REDIS_URL"));
    long long v = tsup_redis_int(rc, "SISMEMBER odin:route:%s %s", token, shard_id);
    redisFree(rc);
    return (int)v;
}

typedef struct route_q { const char *token, *shard; int want; } route_q;
static int route_is(void *arg)
{
    route_q *q = arg;
    return route_has(q->token, q->shard) == q->want;
}

/* Processes a test started: a failed assertion jumps out of the test, so
 * the teardown kills what is left, and wipes Redis, so the next test starts
 * clean (no live leases of this test's shards). */
static pid_t spawned[32];
static int nspawned;

static void remember(pid_t pid)
{
    if (nspawned < (int)(sizeof spawned / sizeof spawned[0]))
        spawned[nspawned++] = pid;
}

static int teardown(void **st)
{
    (void)st;
    for (int i = 0; i < nspawned; i++) {
        int status;
        /* still our unreaped child?  (a reaped pid may belong to someone else) */
        if (spawned[i] > 0 && waitpid(spawned[i], &status, WNOHANG) == 0)
            tsup_stop(spawned[i], SIGKILL, 5000);
    }
    nspawned = 0;
    redisContext *rc = tsup_redis_connect(tsup_env("ODIN_REDIS_URL"));
    freeReplyObject(redisCommand(rc, "FLUSHALL"));
    redisFree(rc);
    return 0;
}

static void start_shard_env(ssup_shard *s, const char *id, const char *const more[])
{
    const char *extra[8] = { "SHARD_LEASE_TTL=2", "LOG_LEVEL=info" };
    for (int i = 0; more && more[i] && i < 5; i++)
        extra[2 + i] = more[i];
    assert_int_equal(ssup_shard_start(s, id, NULL, extra), 0);
    remember(s->pid);
}

static void start_shard(ssup_shard *s, const char *id)
{
    start_shard_env(s, id, NULL);
}

/* A router on redis_url in a fresh group, `more` one extra "K=V" (or NULL). */
static void start_router_at(rtsup_router *r, const char *redis_url, const char *more)
{
    char group[128];
    snprintf(group, sizeof group, "KAFKA_GROUP=%s", rtsup_unique("e2e"));
    const char *extra[] = { group, "KAFKA_OFFSET_RESET=latest", "LOG_LEVEL=info",
                            "KAFKA_OPTIONS=fetch.wait.max.ms=20,topic.metadata.refresh.interval.ms=1000,"
                            "session.timeout.ms=6000",
                            more, NULL };
    assert_int_equal(rtsup_router_start(r, redis_url, extra), 0);
    remember(r->pid);
    /* Joining a new consumer group takes the mock broker a few seconds, more
     * on a loaded machine: wait for the assignment itself. */
    assert_true(rtsup_wait_metric(r->http_port, "router_assigned_partitions", 1, 120000));
}

static void start_router_env(rtsup_router *r, const char *more)
{
    start_router_at(r, tsup_env("ODIN_REDIS_URL"), more);
}

static void start_router(rtsup_router *r)
{
    start_router_env(r, NULL);
}

/* ---- tests -------------------------------------------------------------- */

/* Clients on different shards subscribed to different tokens receive
 * exactly their messages and nothing else; records reach only the shards
 * in odin:route:<token>, and router and shard metrics agree. */
static void test_targeted_exact(void **st)
{
    (void)st;
    char ta[32], tb[32], tc[32], ida[3][48];
    snprintf(ta, sizeof ta, "EA%d", (int)getpid());
    snprintf(tb, sizeof tb, "EB%d", (int)getpid());
    snprintf(tc, sizeof tc, "EC%d", (int)getpid());
    ssup_shard s[3];
    for (int i = 0; i < 3; i++) {
        snprintf(ida[i], sizeof ida[i], "e2e-t-%d-%d", (int)getpid(), i);
        start_shard(&s[i], ida[i]);
    }
    rtsup_router r;
    start_router(&r);
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_shards_connected", 3, 15000));

    char a_trade[64], b_trade[64], c_an[64];
    snprintf(a_trade, sizeof a_trade, "%s.trade", ta);
    snprintf(b_trade, sizeof b_trade, "%s.trade", tb);
    snprintf(c_an, sizeof c_an, "%s.analytics", tc);
    client c1, c2, c3;
    client_open(&c1, "c1", s[0].port, (const char *const[]){ a_trade, NULL });
    client_open(&c2, "c2", s[1].port, (const char *const[]){ b_trade, NULL });
    client_open(&c3, "c3", s[2].port, (const char *const[]){ a_trade, c_an, NULL });
    client *all[] = { &c1, &c2, &c3, NULL };

    rtsup_producer *p = rtsup_producer_new(tsup_env("ODIN_KAFKA_BROKERS"));
    await_live(all, p);
    double recv0[3];
    for (int i = 0; i < 3; i++)
        recv0[i] = ssup_metric(s[i].port, "shard_records_received_total");

    const int NA = 120, NB = 70, NC = 40, NNONE = 30;
    for (int i = 0; i < NA; i++) produce(p, TOPIC_TRADE, ta, i);
    for (int i = 0; i < NB; i++) produce(p, TOPIC_TRADE, tb, i);
    for (int i = 0; i < NC; i++) produce(p, TOPIC_ANALYTICS, tc, i);
    /* a token nobody holds, and a channel of A nobody subscribed to */
    char tnone[32];
    snprintf(tnone, sizeof tnone, "EN%d", (int)getpid());
    for (int i = 0; i < NNONE; i++) produce(p, TOPIC_TRADE, tnone, i);
    for (int i = 0; i < NNONE; i++) produce(p, TOPIC_ANALYTICS, ta, i);
    assert_int_equal(rtsup_producer_flush(p), 0);
    await_marker(all, p, "t1");

    assert_int_equal(count_of(&c1, a_trade), NA);
    assert_int_equal(count_of(&c2, b_trade), NB);
    assert_int_equal(count_of(&c3, a_trade), NA);
    assert_int_equal(count_of(&c3, c_an), NC);
    for (int i = 0; all[i]; i++) {
        assert_int_equal(all[i]->unexpected, 0);
        assert_int_equal(all[i]->out_of_order, 0);
    }

    /* Shard side: each shard got exactly the records of its tokens (A's
     * analytics records go to the shards holding A and are dropped there for
     * want of a subscriber to that channel) plus the 4 markers. */
    const double markers = 4;
    double want[3] = { NA + NNONE + markers, NB + markers, NA + NNONE + NC + markers };
    for (int i = 0; i < 3; i++) {
        double got = ssup_metric(s[i].port, "shard_records_received_total") - recv0[i];
        fprintf(stderr, "shard %d received %.0f, want %.0f\n", i, got, want[i]);
        assert_true(got == want[i]);
    }
    /* nothing for the unheld token reached any shard; the router saw it */
    double unrouted = rtsup_metric(r.http_port, "router_records_unrouted_total");
    assert_true(unrouted >= NNONE);
    /* Router side: deliveries the router wrote equal what shards received. */
    double router_sent = rtsup_metric(r.http_port, "router_records_sent_total");
    double shards_got = 0;
    for (int i = 0; i < 3; i++)
        shards_got += ssup_metric(s[i].port, "shard_records_received_total");
    fprintf(stderr, "router sent %.0f record copies, shards received %.0f\n", router_sent,
            shards_got);
    assert_true(router_sent == shards_got);

    rtsup_producer_free(p);
    for (int i = 0; i < 3; i++)
        client_close(all[i]);
    int rst = rtsup_router_stop(&r);
    assert_true(WIFEXITED(rst));
    assert_int_equal(WEXITSTATUS(rst), 0);   /* also: no sanitizer report at exit */
    for (int i = 0; i < 3; i++)
        assert_int_equal(WEXITSTATUS(ssup_shard_stop(&s[i], SIGTERM, 10000)), 0);
}

/* shard_delivery_latency_seconds counts one observation per live message
 * fully written to a client (so, once the clients read everything, exactly
 * ws_messages_sent_total's increase), router_delivery_latency_seconds one per
 * record written to a shard; sums are plausible (Kafka CreateTime -> now). */
static void test_delivery_latency_metrics(void **st)
{
    (void)st;
    char tok[32], id[48], ch[64];
    snprintf(tok, sizeof tok, "LA%d", (int)getpid());
    snprintf(id, sizeof id, "e2e-lat-%d", (int)getpid());
    snprintf(ch, sizeof ch, "%s.trade", tok);
    ssup_shard s;
    start_shard(&s, id);
    rtsup_router r;
    start_router(&r);
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_shards_connected", 1, 15000));
    client c1, c2;
    client_open(&c1, "c1", s.port, (const char *const[]){ ch, NULL });
    client_open(&c2, "c2", s.port, (const char *const[]){ ch, NULL });
    client *all[] = { &c1, &c2, NULL };
    rtsup_producer *p = rtsup_producer_new(tsup_env("ODIN_KAFKA_BROKERS"));
    await_live(all, p);

    double sent0 = ssup_metric(s.port, "ws_messages_sent_total");
    double sc0 = ssup_metric(s.port, "shard_delivery_latency_seconds_count");
    double ss0 = ssup_metric(s.port, "shard_delivery_latency_seconds_sum");
    double rc0 = rtsup_metric(r.http_port, "router_delivery_latency_seconds_count");
    double rs0 = rtsup_metric(r.http_port, "router_delivery_latency_seconds_sum");
    double recs0 = rtsup_metric(r.http_port, "router_records_total");
    const int N = 60;
    for (int i = 0; i < N; i++)
        produce(p, TOPIC_TRADE, tok, i);
    assert_int_equal(rtsup_producer_flush(p), 0);
    await_marker(all, p, "lat");
    assert_int_equal(count_of(&c1, ch), N);
    assert_int_equal(count_of(&c2, ch), N);

    double sent = ssup_metric(s.port, "ws_messages_sent_total") - sent0;
    double sc = ssup_metric(s.port, "shard_delivery_latency_seconds_count") - sc0;
    double ss = ssup_metric(s.port, "shard_delivery_latency_seconds_sum") - ss0;
    double rc = rtsup_metric(r.http_port, "router_delivery_latency_seconds_count") - rc0;
    double rs = rtsup_metric(r.http_port, "router_delivery_latency_seconds_sum") - rs0;
    double recs = rtsup_metric(r.http_port, "router_records_total") - recs0;
    fprintf(stderr, "shard: %.0f observations (%.0f sent), mean %.3f ms; router: %.0f "
            "observations (%.0f records), mean %.3f ms\n", sc, sent, sc > 0 ? ss / sc * 1e3 : 0,
            rc, recs, rc > 0 ? rs / rc * 1e3 : 0);
    /* 2 clients x (N records + 4 markers) */
    assert_true(sent >= 2 * N);
    assert_true(sc == sent);
    assert_true(ss >= 0 && ss / sc < 5.0);
    assert_true(rc >= N && rc <= recs);   /* markers of the analytics topic too */
    assert_true(rs >= 0 && rs / rc < 5.0);
    /* the +Inf bucket is the count */
    assert_true(ssup_metric(s.port, "shard_delivery_latency_seconds_bucket{le=\"+Inf\"}") ==
                ssup_metric(s.port, "shard_delivery_latency_seconds_count"));

    rtsup_producer_free(p);
    client_close(&c1);
    client_close(&c2);
    int rst = rtsup_router_stop(&r);
    assert_true(WIFEXITED(rst));
    assert_int_equal(WEXITSTATUS(rst), 0);
    assert_int_equal(WEXITSTATUS(ssup_shard_stop(&s, SIGTERM, 10000)), 0);
}

/* A shard SIGKILLed mid-stream loses its routes within the lease TTL (the
 * router's dead-shard sweep cleans them through the reverse index) and the
 * clients of the other shards keep receiving every record. */
static void test_sigkill_shard(void **st)
{
    (void)st;
    char tk[32], ids[2][48], chan[64];
    snprintf(tk, sizeof tk, "EK%d", (int)getpid());
    snprintf(chan, sizeof chan, "%s.trade", tk);
    ssup_shard s[2];
    for (int i = 0; i < 2; i++) {
        snprintf(ids[i], sizeof ids[i], "e2e-k-%d-%d", (int)getpid(), i);
        start_shard(&s[i], ids[i]);
    }
    rtsup_router r;
    start_router(&r);
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_shards_connected", 2, 15000));
    client k1, k2;
    client_open(&k1, "k1", s[0].port, (const char *const[]){ chan, NULL });
    client_open(&k2, "k2", s[1].port, (const char *const[]){ chan, NULL });
    client *both[] = { &k1, &k2, NULL };
    client *survivor[] = { &k2, NULL };
    rtsup_producer *p = rtsup_producer_new(tsup_env("ODIN_KAFKA_BROKERS"));
    await_live(both, p);
    /* the shard writes the route after the ack: wait for both */
    route_q r0 = { tk, ids[0], 1 }, r1 = { tk, ids[1], 1 };
    assert_true(tsup_wait_until(route_is, &r0, 10000));
    assert_true(tsup_wait_until(route_is, &r1, 10000));

    /* stream, kill shard 0 in the middle, keep streaming until its route is gone */
    int sent = 0;
    for (; sent < 100; sent++) {
        produce(p, TOPIC_TRADE, tk, sent);
        if (sent % 10 == 0) { rtsup_producer_flush(p); pump(&k2, 0); }
    }
    rtsup_producer_flush(p);
    uint64_t killed_at = clock_mono_ms();
    int stk = ssup_shard_stop(&s[0], SIGKILL, 5000);
    assert_true(WIFSIGNALED(stk));
    client_close(&k1);
    route_q q = { tk, ids[0], 0 };
    while (!route_is(&q)) {
        produce(p, TOPIC_TRADE, tk, sent++);
        rtsup_producer_flush(p);
        pump(&k2, 20);
        /* lease TTL 2 s + discovery 0.2 s, with slack for a loaded machine */
        assert_true(clock_mono_ms() - killed_at < 10000);
    }
    uint64_t cleaned_ms = clock_mono_ms() - killed_at;
    fprintf(stderr, "dead shard's route removed %llu ms after SIGKILL\n",
            (unsigned long long)cleaned_ms);
    redisContext *rc = tsup_redis_connect(tsup_env("ODIN_REDIS_URL"));
    /* the sweep works in chunks (REDIS_CHUNK): routes first, the shard
     * leaves odin:shards last, once every removal succeeded */
    assert_true(tsup_wait_member(rc, "odin:shards", ids[0], 0, 10000));
    char key[128];
    snprintf(key, sizeof key, "odin:shard:%s:tokens", ids[0]);
    assert_int_equal(tsup_redis_int(rc, "EXISTS %s", key), 0);
    snprintf(key, sizeof key, "odin:shard:%s", ids[0]);
    assert_int_equal(tsup_redis_int(rc, "EXISTS %s", key), 0);
    redisFree(rc);
    for (int i = 0; i < 50; i++)
        produce(p, TOPIC_TRADE, tk, sent++);
    rtsup_producer_flush(p);
    await_marker(survivor, p, "k");
    fprintf(stderr, "survivor received %ld of %d\n", count_of(&k2, chan), sent);
    assert_int_equal(count_of(&k2, chan), sent);
    assert_int_equal(k2.out_of_order, 0);
    assert_int_equal(k2.unexpected, 0);
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_shards_connected", 1, 10000));

    rtsup_producer_free(p);
    client_close(&k2);
    int rst = rtsup_router_stop(&r);
    assert_true(WIFEXITED(rst));
    assert_int_equal(WEXITSTATUS(rst), 0);   /* also: no sanitizer report at exit */
    assert_int_equal(WEXITSTATUS(ssup_shard_stop(&s[1], SIGTERM, 10000)), 0);
}

/* Scaling from 3 to 5 shards while publishing loses nothing for clients
 * already connected; clients of the new shards receive their tokens' records
 * from their subscription on. */
static void test_scale_out(void **st)
{
    (void)st;
    ssup_shard s[5];
    char ids[5][48], toks[5][32], chans[5][64];
    for (int i = 0; i < 5; i++) {
        snprintf(ids[i], sizeof ids[i], "e2e-s-%d-%d", (int)getpid(), i);
        snprintf(toks[i], sizeof toks[i], "ES%d_%d", (int)getpid(), i);
        snprintf(chans[i], sizeof chans[i], "%s.trade", toks[i]);
    }
    for (int i = 0; i < 3; i++)
        start_shard(&s[i], ids[i]);
    rtsup_router r;
    start_router(&r);
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_shards_connected", 3, 15000));
    client c[5];
    /* old clients: each of the three shards holds every token */
    for (int i = 0; i < 3; i++)
        client_open(&c[i], "old", s[i].port,
                    (const char *const[]){ chans[0], chans[1], chans[2], chans[3], chans[4], NULL });
    client *old[] = { &c[0], &c[1], &c[2], NULL };
    rtsup_producer *p = rtsup_producer_new(tsup_env("ODIN_KAFKA_BROKERS"));
    await_live(old, p);

    int sent[5] = { 0 };
    for (int round = 0; round < 60; round++) {
        for (int t = 0; t < 5; t++)
            produce(p, TOPIC_TRADE, toks[t], sent[t]++);
        if (round == 20) {
            /* scale out mid-stream */
            start_shard(&s[3], ids[3]);
            start_shard(&s[4], ids[4]);
        }
        if (round == 30) {
            assert_true(rtsup_wait_metric_eq(r.http_port, "router_shards_connected", 5, 15000));
            client_open(&c[3], "new3", s[3].port, (const char *const[]){ chans[3], NULL });
            client_open(&c[4], "new4", s[4].port, (const char *const[]){ chans[4], NULL });
        }
        rtsup_producer_flush(p);
        for (int i = 0; i < (round >= 30 ? 5 : 3); i++)
            pump(&c[i], 0);
    }
    /* the new shards' routes are live before the last records */
    route_q q3 = { toks[3], ids[3], 1 }, q4 = { toks[4], ids[4], 1 };
    assert_true(tsup_wait_until(route_is, &q3, 5000));
    assert_true(tsup_wait_until(route_is, &q4, 5000));
    for (int t = 0; t < 5; t++)
        for (int k = 0; k < 20; k++)
            produce(p, TOPIC_TRADE, toks[t], sent[t]++);
    rtsup_producer_flush(p);
    client *every[] = { &c[0], &c[1], &c[2], &c[3], &c[4], NULL };
    await_marker(every, p, "s");
    for (int i = 0; i < 3; i++) {
        for (int t = 0; t < 5; t++)
            assert_int_equal(count_of(&c[i], chans[t]), sent[t]);
        assert_int_equal(c[i].out_of_order, 0);
        assert_int_equal(c[i].unexpected, 0);
    }
    for (int i = 3; i < 5; i++) {
        long got = count_of(&c[i], chans[i]);
        fprintf(stderr, "new client %d received %ld of %d\n", i, got, sent[i]);
        assert_true(got >= 20 && got <= sent[i]);
        assert_int_equal(c[i].out_of_order, 0);
        assert_int_equal(c[i].unexpected, 0);
    }
    rtsup_producer_free(p);
    for (int i = 0; i < 5; i++)
        client_close(&c[i]);
    int rst = rtsup_router_stop(&r);
    assert_true(WIFEXITED(rst));
    assert_int_equal(WEXITSTATUS(rst), 0);   /* also: no sanitizer report at exit */
    for (int i = 0; i < 5; i++)
        assert_int_equal(WEXITSTATUS(ssup_shard_stop(&s[i], SIGTERM, 10000)), 0);
}

/* Names of a test shard fed over TCP: id, token, channel, and its
 * SHARD_TCP_ADDR / SHARD_ENDPOINT settings on a free port. */
typedef struct tcp_names { char id[48], tok[32], chan[64], tcp[64], ep[80]; } tcp_names;
static void tcp_names_fill(tcp_names *n, const char *what, const char *tok_prefix)
{
    snprintf(n->id, sizeof n->id, "e2e-%s-%d", what, (int)getpid());
    snprintf(n->tok, sizeof n->tok, "%s%d", tok_prefix, (int)getpid());
    snprintf(n->chan, sizeof n->chan, "%s.trade", n->tok);
    int port = tsup_free_port();
    snprintf(n->tcp, sizeof n->tcp, "SHARD_TCP_ADDR=127.0.0.1:%d", port);
    snprintf(n->ep, sizeof n->ep, "SHARD_ENDPOINT=tcp://127.0.0.1:%d", port);
}

typedef struct lease_q { redisContext *c; const char *id; } lease_q;
static int lease_written(void *arg)
{
    lease_q *q = arg;
    redisReply *r = redisCommand(q->c, "HEXISTS odin:shard:%s endpoint", q->id);
    int ok = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return ok;
}

/* 50 numbered records on tok; the one client c (subscribed to chan) gets
 * each exactly once, nothing else. */
static void fifty_exactly_once(client *c, const char *tok, const char *chan, const char *tag)
{
    client *cs[] = { c, NULL };
    rtsup_producer *p = rtsup_producer_new(tsup_env("ODIN_KAFKA_BROKERS"));
    await_live(cs, p);
    for (int i = 0; i < 50; i++)
        produce(p, TOPIC_TRADE, tok, i);
    assert_int_equal(rtsup_producer_flush(p), 0);
    await_marker(cs, p, tag);
    assert_int_equal(count_of(c, chan), 50);
    assert_int_equal(c->unexpected, 0);
    rtsup_producer_free(p);
}

/* A shard registered with a tcp:// endpoint is fed over TCP with the same
 * frames (docs/contract.md, "Scaling out"). */
static void test_tcp_endpoint(void **st)
{
    (void)st;
    tcp_names n;
    tcp_names_fill(&n, "tcp", "ET");
    const char *id = n.id, *tok = n.tok, *chan = n.chan, *tcp = n.tcp, *ep = n.ep;
    ssup_shard s;
    start_shard_env(&s, id, (const char *const[]){ tcp, ep, NULL });
    redisContext *rc = tsup_redis_connect(tsup_env("ODIN_REDIS_URL"));
    /* the lease is written once the shard's Redis link is up and its claim
     * went through: wait for it, not for the port */
    lease_q lq = { rc, id };
    assert_int_equal(tsup_wait_until(lease_written, &lq, 10000), 1);
    redisReply *rep = redisCommand(rc, "HGET odin:shard:%s endpoint", id);
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    assert_string_equal(rep->str, ep + strlen("SHARD_ENDPOINT="));
    freeReplyObject(rep);
    redisFree(rc);

    rtsup_router r;
    start_router(&r);
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_shards_connected", 1, 15000));
    client c;
    client_open(&c, "tcp", s.port, (const char *const[]){ chan, NULL });
    fifty_exactly_once(&c, tok, chan, "tcp");
    client_close(&c);
    int rst = rtsup_router_stop(&r);
    assert_true(WIFEXITED(rst));
    assert_int_equal(WEXITSTATUS(rst), 0);
    assert_int_equal(WEXITSTATUS(ssup_shard_stop(&s, SIGTERM, 10000)), 0);
}

static void stop_router_ok(rtsup_router *r)
{
    int st = rtsup_router_stop(r);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* SHARD_INGRESS_SECRET: a router without the secret, or with another one,
 * is refused by the shard (and refuses the shard); a forged router that
 * sends HELLO and records is closed before any record reaches a client;
 * with the same secret on both sides every record arrives exactly once. */
static void test_ingress_secret(void **st)
{
    (void)st;
    tcp_names n;
    tcp_names_fill(&n, "auth", "EA");
    const char *id = n.id, *tok = n.tok, *chan = n.chan, *tcp = n.tcp, *ep = n.ep;
    ssup_shard s;
    start_shard_env(&s, id, (const char *const[]){ tcp, ep, "SHARD_INGRESS_SECRET=right-secret",
                                                   NULL });
    client c;
    client_open(&c, "auth", s.port, (const char *const[]){ chan, NULL });

    /* no secret on the router: the shard refuses it */
    rtsup_router r;
    start_router(&r);
    assert_true(ssup_wait_metric(s.port, "shard_ingress_auth_failures_total", 1, 15000));
    stop_router_ok(&r);

    /* another secret: refused both ways */
    double before = ssup_metric(s.port, "shard_ingress_auth_failures_total");
    start_router_env(&r, "SHARD_INGRESS_SECRET=wrong-secret");
    assert_true(rtsup_wait_metric(r.http_port, "router_shard_auth_failures_total", 1, 15000));
    assert_true(ssup_wait_metric(s.port, "shard_ingress_auth_failures_total", before + 1, 15000));
    assert_true(rtsup_metric(r.http_port, "router_shards_connected") == 0);
    stop_router_ok(&r);

    /* a forged router on the shard's socket: HELLO then records, closed */
    before = ssup_metric(s.port, "shard_ingress_auth_failures_total");
    ssup_router fake;
    assert_int_equal(ssup_router_connect(&fake, s.sock, "forger", FRAME_PROTO_VERSION), 0);
    assert_non_null(fake.hello.nonce);   /* the shard challenges (pointer only) */
    frame_record forged = ssup_rec("trade", tok, 999999, 1700000000000, "{\"forged\":true}");
    ssup_router_send(&fake, &forged, 1);
    assert_int_equal(ssup_router_wait_closed(&fake, 5000), 1);
    ssup_router_close(&fake);
    assert_true(ssup_metric(s.port, "shard_ingress_auth_failures_total") >= before + 1);
    assert_true(ssup_metric(s.port, "shard_records_received_total") == 0);

    /* the same secret: authenticated, every record exactly once */
    start_router_env(&r, "SHARD_INGRESS_SECRET=right-secret");
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_shards_connected", 1, 15000));
    fifty_exactly_once(&c, tok, chan, "auth");
    client_close(&c);
    stop_router_ok(&r);
    assert_int_equal(WEXITSTATUS(ssup_shard_stop(&s, SIGTERM, 10000)), 0);
}

/* ---- link trust (issue 19) ------------------------------------------------ */

/*
 * A relay between the router and a real shard: it listens on a Unix
 * socket registered in Redis as the endpoint of a fake shard, dials the
 * real shard's SHARD_TCP_ADDR for every router connection and passes
 * frames both ways, rewriting the HELLOs so every plain check passes: the
 * shard's id becomes the fake's on its way to the router, the router's
 * target and endpoint become the real shard's on their way to it.  It
 * keeps (does not forward) the records the router sends, and once the
 * shard's AUTH went through it injects a forged record into the shard.
 */
typedef struct relay {
    int lfd;
    char path[256];
    int shard_port;
    const char *fake_id, *real_id, *real_ep, *tok;
    pthread_t th;
    volatile int stop;
    pthread_mutex_t mu;
    int sessions, ended, records, injected, shard_auths;
} relay;

static int relay_send(int fd, const buf *b)
{
    size_t off = 0;
    while (off < b->len) {
        ssize_t w = send(fd, b->data + off, b->len - off, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        off += (size_t)w;
    }
    return 0;
}

/* Frames from `from` (router 1 / shard 0), decoded by d; returns -1 when
 * the session must end. */
static int relay_frames(relay *r, frame_decoder *d, int from_router, int to_fd, int shard_fd)
{
    frame_msg m;
    int rc;
    while ((rc = frame_decoder_next(d, &m)) == 1) {
        buf out = { 0 };
        if (m.type == FRAME_HELLO) {
            frame_hello h = m.hello;
            if (from_router) {
                if (h.target) {
                    h.target = r->real_id;
                    h.target_len = strlen(r->real_id);
                    h.endpoint = r->real_ep;
                    h.endpoint_len = strlen(r->real_ep);
                }
            } else {
                h.id = r->fake_id;
                h.id_len = strlen(r->fake_id);
            }
            frame_encode_hello_msg(&out, &h);
        } else if (m.type == FRAME_AUTH) {
            frame_encode_auth(&out, m.mac);
        } else {
            /* a delivery the router meant for the fake shard: read in clear */
            pthread_mutex_lock(&r->mu);
            for (size_t i = 0; i < m.nrecords; i++)
                if (m.records[i].token_len == strlen(r->tok) &&
                    memcmp(m.records[i].token, r->tok, m.records[i].token_len) == 0)
                    r->records++;
            pthread_mutex_unlock(&r->mu);
            continue;
        }
        int bad = relay_send(to_fd, &out);
        buf_free(&out);
        if (bad)
            return -1;
        if (!from_router && m.type == FRAME_AUTH) {
            /* the shard took the relay for a router: push a forged record */
            buf f = { 0 };
            frame_batch b;
            frame_record rec = ssup_rec("trade", r->tok, 999999, 1700000000000,
                                        "{\"type\":\"FORGED\",\"data\":{\"n\":-1}}");
            frame_batch_begin(&b, &f, FRAME_MODE_TARGETED);
            frame_batch_add(&b, &rec);
            frame_batch_end(&b);
            relay_send(shard_fd, &f);
            buf_free(&f);
            pthread_mutex_lock(&r->mu);
            r->shard_auths++;
            r->injected++;
            pthread_mutex_unlock(&r->mu);
        }
    }
    return rc < 0 ? -1 : 0;
}

static void relay_session(relay *r, int a)
{
    int b = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)r->shard_port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (b < 0 || connect(b, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (b >= 0)
            close(b);
        return;
    }
    frame_decoder *da = frame_decoder_new(FRAME_DEFAULT_MAX);
    frame_decoder *db = frame_decoder_new(FRAME_DEFAULT_MAX);
    char chunk[65536];
    while (!r->stop) {
        struct pollfd pf[2] = { { a, POLLIN, 0 }, { b, POLLIN, 0 } };
        if (poll(pf, 2, 50) <= 0)
            continue;
        int done = 0;
        for (int i = 0; i < 2 && !done; i++) {
            if (!pf[i].revents)
                continue;
            ssize_t n = recv(pf[i].fd, chunk, sizeof chunk, 0);
            if (n <= 0) {
                done = 1;
                break;
            }
            frame_decoder *d = i == 0 ? da : db;
            frame_decoder_feed(d, chunk, (size_t)n);
            if (relay_frames(r, d, i == 0, i == 0 ? b : a, b) != 0)
                done = 1;
        }
        if (done)
            break;
    }
    close(b);
    frame_decoder_free(da);
    frame_decoder_free(db);
}

static void *relay_thread(void *arg)
{
    relay *r = arg;
    while (!r->stop) {
        struct pollfd pf = { r->lfd, POLLIN, 0 };
        if (poll(&pf, 1, 50) <= 0)
            continue;
        int a = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (a < 0)
            continue;
        pthread_mutex_lock(&r->mu);
        r->sessions++;
        pthread_mutex_unlock(&r->mu);
        relay_session(r, a);
        close(a);
        pthread_mutex_lock(&r->mu);
        r->ended++;
        pthread_mutex_unlock(&r->mu);
    }
    return NULL;
}

static int relay_get(relay *r, int *field)
{
    pthread_mutex_lock(&r->mu);
    int v = *field;
    pthread_mutex_unlock(&r->mu);
    return v;
}

typedef struct relay_q { relay *r; rtsup_router *rt; } relay_q;
/* The relay ended a session (refused) or the router took the fake shard. */
static int relay_tried(void *arg)
{
    relay_q *q = arg;
    return relay_get(q->r, &q->r->ended) >= 1 ||
           rtsup_metric(q->rt->http_port, "router_shards_connected") >= 2;
}

/* Issue 19, attack 1: someone who can write to Redis registers a fake
 * shard pointing at a relay to a real shard.  Neither end takes the relay
 * for its peer: no record for the fake shard is read by the relay, no
 * forged record reaches a client, both sides count the refusal. */
static void test_link_relay(void **st)
{
    (void)st;
    tcp_names n;
    tcp_names_fill(&n, "relay", "ER");
    ssup_shard s;
    start_shard_env(&s, n.id, (const char *const[]){ n.tcp, n.ep,
                                                     "SHARD_INGRESS_SECRET=right-secret", NULL });
    client c;
    client_open(&c, "relayed", s.port, (const char *const[]){ n.chan, NULL });
    route_q rq = { n.tok, n.id, 1 };
    assert_int_equal(tsup_wait_until(route_is, &rq, 10000), 1);

    relay r;
    memset(&r, 0, sizeof r);
    char fake_id[64];
    snprintf(fake_id, sizeof fake_id, "evil-%d", (int)getpid());
    r.fake_id = fake_id;
    r.real_id = n.id;
    r.real_ep = n.ep + strlen("SHARD_ENDPOINT=");
    r.tok = n.tok;
    r.shard_port = atoi(strrchr(n.tcp, ':') + 1);
    pthread_mutex_init(&r.mu, NULL);
    char *p = tsup_tmp("relay.sock");
    snprintf(r.path, sizeof r.path, "%s", p);
    free(p);
    r.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un ua = { .sun_family = AF_UNIX };
    assert_true(strlen(r.path) < sizeof ua.sun_path);
    memcpy(ua.sun_path, r.path, strlen(r.path) + 1);
    assert_int_equal(bind(r.lfd, (struct sockaddr *)&ua, sizeof ua), 0);
    assert_int_equal(listen(r.lfd, 16), 0);
    assert_int_equal(pthread_create(&r.th, NULL, relay_thread, &r), 0);
    /* the fake shard: a lease pointing at the relay, a route to it */
    rtsup_shard fake;
    memset(&fake, 0, sizeof fake);
    snprintf(fake.id, sizeof fake.id, "%s", fake_id);
    snprintf(fake.endpoint, sizeof fake.endpoint, "unix:%s", r.path);
    redisContext *rc = tsup_redis_connect(tsup_env("ODIN_REDIS_URL"));
    rtsup_shard_register(&fake, rc, 0);
    rtsup_route(rc, "add", fake_id, n.tok);

    rtsup_router rt;
    start_router_env(&rt, "SHARD_INGRESS_SECRET=right-secret");
    assert_true(rtsup_wait_metric(rt.http_port, "router_shards_connected", 1, 15000));
    relay_q q = { &r, &rt };
    assert_int_equal(tsup_wait_until(relay_tried, &q, 20000), 1);

    /* five records for the token: routed to the real shard and the fake */
    client *cs[] = { &c, NULL };
    rtsup_producer *pr = rtsup_producer_new(tsup_env("ODIN_KAFKA_BROKERS"));
    await_live(cs, pr);
    for (int i = 0; i < 5; i++)
        produce(pr, TOPIC_TRADE, n.tok, i);
    assert_int_equal(rtsup_producer_flush(pr), 0);
    await_marker(cs, pr, "relay");
    int seen = relay_get(&r, &r.records), injected = relay_get(&r, &r.injected);
    fprintf(stderr, "relay: %d sessions, %d records read in clear, %d forged injected; "
            "client got %ld\n", relay_get(&r, &r.sessions), seen, injected,
            count_of(&c, n.chan));
    assert_int_equal(seen, 0);
    assert_int_equal(injected, 0);
    assert_int_equal(count_of(&c, n.chan), 5);   /* the five, no forged one */
    assert_int_equal(c.unexpected, 0);
    /* both ends refused it, and say so */
    assert_true(ssup_metric(s.port, "shard_ingress_auth_failures_total") >= 1);
    assert_true(rtsup_wait_metric(rt.http_port, "router_shard_auth_failures_total", 1, 10000));
    assert_true(rtsup_metric(rt.http_port, "router_shards_connected") == 1);
    assert_true(relay_get(&r, &r.sessions) >= 1);

    rtsup_producer_free(pr);
    client_close(&c);
    r.stop = 1;
    pthread_join(r.th, NULL);
    close(r.lfd);
    unlink(r.path);
    pthread_mutex_destroy(&r.mu);
    redisFree(rc);
    stop_router_ok(&rt);
    assert_int_equal(WEXITSTATUS(ssup_shard_stop(&s, SIGTERM, 10000)), 0);
}

/*
 * Peers that never authenticate: SILENT connections that send nothing and
 * FLOOD ones that announce a 16 MiB frame and stream it, all from source
 * 127.0.0.2 (the flooders opened first), each reopened (at most every 100 ms)
 * when the shard closes it.
 */
#define SILENT 64
#define FLOOD 8
typedef struct flood {
    int port;
    pthread_t th;
    volatile int stop;
    pid_t shard;
    long rss_max_kb;
} flood;

static long vmrss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = atol(line + 6);
    if (f)
        fclose(f);
    return kb;
}

static int flood_connect_from(int port, uint32_t src_ip)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_in src = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(src_ip) };
    struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0 ||
        (connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0 && errno != EINPROGRESS)) {
        close(fd);
        return -1;
    }
    return fd;
}

static int flood_connect(int port)
{
    return flood_connect_from(port, 0x7f000002);
}

/* One peer from 127.0.0.3 that sends `n` bytes (maybe 0) and waits for
 * the shard to close it: 1 once closed, 0 on timeout. */
static int probe_closed(int port, const void *p, size_t n, int timeout_ms)
{
    int fd = flood_connect_from(port, 0x7f000003);
    assert_true(fd >= 0);
    struct pollfd pf = { fd, POLLOUT, 0 };
    assert_int_equal(poll(&pf, 1, 5000), 1);
    if (n)
        assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    int closed = 0;
    while (!closed && clock_mono_ms() < end) {
        pf.events = POLLIN;
        if (poll(&pf, 1, 100) <= 0)
            continue;
        char b[4096];
        ssize_t r = recv(fd, b, sizeof b, 0);
        closed = r == 0 || (r < 0 && errno != EAGAIN);
    }
    close(fd);
    return closed;
}

static void *flood_thread(void *arg)
{
    flood *f = arg;
    int fds[SILENT + FLOOD];
    size_t sent[SILENT + FLOOD];
    uint64_t opened[SILENT + FLOOD];
    static char junk[65536];
    memset(junk, 'j', sizeof junk);
    for (int i = 0; i < SILENT + FLOOD; i++) {
        fds[i] = -1;
        opened[i] = 0;
    }
    while (!f->stop) {
        uint64_t now = clock_mono_ms();
        struct pollfd pf[SILENT + FLOOD];
        for (int i = 0; i < SILENT + FLOOD; i++) {
            if (fds[i] < 0 && now - opened[i] >= 100) {
                fds[i] = flood_connect(f->port);
                opened[i] = now;
                sent[i] = 0;
            }
            pf[i].fd = fds[i];
            pf[i].events = POLLIN | (i < FLOOD && sent[i] < (16u << 20) + 4 ? POLLOUT : 0);
            pf[i].revents = 0;
        }
        poll(pf, SILENT + FLOOD, 20);
        for (int i = 0; i < SILENT + FLOOD; i++) {
            if (fds[i] < 0 || !pf[i].revents)
                continue;
            if (pf[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                char b[4096];
                ssize_t n = recv(fds[i], b, sizeof b, 0);
                if (n == 0 || (n < 0 && errno != EAGAIN)) {
                    close(fds[i]);
                    fds[i] = -1;
                    continue;
                }
            }
            if (pf[i].revents & POLLOUT) {
                /* a 16 MiB frame header, then its body */
                const char *p = junk;
                size_t len = sizeof junk;
                char hdr[4] = { 0x01, 0x00, 0x00, 0x00 };
                if (sent[i] == 0) {
                    p = hdr;
                    len = 4;
                }
                ssize_t w = send(fds[i], p, len, MSG_NOSIGNAL);
                if (w > 0)
                    sent[i] += (size_t)w;
                else if (w < 0 && errno != EAGAIN) {
                    close(fds[i]);
                    fds[i] = -1;
                }
            }
        }
        long kb = vmrss_kb(f->shard);
        if (kb > f->rss_max_kb)
            f->rss_max_kb = kb;
    }
    for (int i = 0; i < SILENT + FLOOD; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return NULL;
}

/* Issue 19, attack 2: 64 silent and 8 flooding peers on the shard's
 * SHARD_TCP_ADDR while a real router connects: the router gets in and
 * delivers every record (counted exactly at a client), and the shard's
 * memory stays bounded. */
static void test_ingress_preauth_flood(void **st)
{
    (void)st;
    tcp_names n;
    tcp_names_fill(&n, "flood", "EF");
    ssup_shard s;
    start_shard_env(&s, n.id, (const char *const[]){ n.tcp, n.ep,
                                                     "SHARD_INGRESS_SECRET=right-secret", NULL });
    client c;
    client_open(&c, "flooded", s.port, (const char *const[]){ n.chan, NULL });
    int port = atoi(strrchr(n.tcp, ':') + 1);
    long before = vmrss_kb(s.pid);
    flood f = { .port = port, .shard = s.pid, .rss_max_kb = before };
    assert_int_equal(pthread_create(&f.th, NULL, flood_thread, &f), 0);
    /* let the attack take hold before the router comes */
    assert_true(ssup_wait_metric(s.port, "shard_router_connections_total", 8, 20000));

    rtsup_router rt;
    start_router_env(&rt, "SHARD_INGRESS_SECRET=right-secret");
    int up = rtsup_wait_metric_eq(rt.http_port, "router_shards_connected", 1, 30000);
    if (up)
        fifty_exactly_once(&c, n.tok, n.chan, "flood");
    f.stop = 1;
    pthread_join(f.th, NULL);
    long after = vmrss_kb(s.pid);
    fprintf(stderr, "shard VmRSS: %ld kB before, %ld kB max during, %ld kB after "
            "(growth %ld kB max)\n", before, f.rss_max_kb, after, f.rss_max_kb - before);
    fprintf(stderr, "refused: pending_full %.0f, source_pending %.0f, timeout %.0f, "
            "oversized %.0f\n",
            ssup_metric(s.port, "shard_ingress_refused_total{reason=\"pending_full\"}"),
            ssup_metric(s.port, "shard_ingress_refused_total{reason=\"source_pending\"}"),
            ssup_metric(s.port, "shard_ingress_refused_total{reason=\"timeout\"}"),
            ssup_metric(s.port, "shard_ingress_refused_total{reason=\"oversized\"}"));
    assert_true(up);   /* the router got in despite the attack */
    /* 8 x 16 MiB would be 128 MiB: the pre-auth cap keeps it to the pool's
     * read buffers */
    assert_true(f.rss_max_kb - before < 16 * 1024);
    assert_true(ssup_metric(s.port, "shard_ingress_refused_total{reason=\"source_pending\"}") > 0);
    /* one of each, alone (from another source): a 16 MiB frame header is refused from the header
     * (before authentication a frame is at most a handshake's size), a
     * silent peer is closed after SHARD_INGRESS_AUTH_TIMEOUT_MS */
    assert_int_equal(probe_closed(port, "\x01\x00\x00\x00", 4, 5000), 1);
    assert_true(ssup_wait_metric(s.port, "shard_ingress_refused_total{reason=\"oversized\"}", 1,
                                 5000));
    assert_int_equal(probe_closed(port, NULL, 0, 5000), 1);
    assert_true(ssup_wait_metric(s.port, "shard_ingress_refused_total{reason=\"timeout\"}", 1,
                                 5000));
    client_close(&c);
    stop_router_ok(&rt);
    assert_int_equal(WEXITSTATUS(ssup_shard_stop(&s, SIGTERM, 10000)), 0);
}

/* ---- Redis Sentinel ------------------------------------------------------- */

static pid_t spawn_redis(const char *conf_or_null, int port, const char *const more[])
{
    char portbuf[16], *dir = tsup_tmp("sentinel");
    snprintf(portbuf, sizeof portbuf, "%d", port);
    mkdir(dir, 0755);
    char *argv[24];
    int a = 0;
    argv[a++] = "/usr/bin/redis-server";
    if (conf_or_null)
        argv[a++] = (char *)conf_or_null;
    const char *base[] = { "--port", portbuf, "--bind", "127.0.0.1", "--dir", dir,
                           "--save", "", "--appendonly", "no", "--loglevel", "warning" };
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++)
        argv[a++] = (char *)base[i];
    for (int i = 0; more && more[i]; i++)
        argv[a++] = (char *)more[i];
    argv[a] = NULL;
    pid_t pid = tsup_spawn(argv, NULL);
    free(dir);
    assert_true(pid > 0);
    remember(pid);
    return pid;
}

typedef struct sentinel_q {
    int port;             /* sentinel */
    int want_port;        /* master port it should report (0: any) */
} sentinel_q;

/* The Sentinel reports the master on want_port and knows a replica. */
static int sentinel_ready(void *arg)
{
    sentinel_q *q = arg;
    char url[64];
    snprintf(url, sizeof url, "127.0.0.1");
    redisContext *c = redisConnect(url, q->port);
    if (!c || c->err) {
        redisFree(c);
        return 0;
    }
    int ok = 0;
    redisReply *r = redisCommand(c, "SENTINEL get-master-addr-by-name odin");
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        atoi(r->element[1]->str) == q->want_port)
        ok = 1;
    freeReplyObject(r);
    if (ok) {
        r = redisCommand(c, "SENTINEL replicas odin");
        ok = r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1;
        freeReplyObject(r);
    }
    redisFree(c);
    return ok;
}

static int replica_synced(void *arg)
{
    int port = *(int *)arg;
    redisContext *c = redisConnect("127.0.0.1", port);
    if (!c || c->err) {
        redisFree(c);
        return 0;
    }
    redisReply *r = redisCommand(c, "INFO replication");
    int ok = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "master_link_status:up");
    freeReplyObject(r);
    redisFree(c);
    return ok;
}

typedef struct member_wait_q { redisContext *c; const char *token, *shard; } member_wait_q;
static int route_member(void *arg)
{
    member_wait_q *q = arg;
    redisReply *r = redisCommand(q->c, "SISMEMBER odin:route:%s %s", q->token, q->shard);
    int ok = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return ok;
}

/* Redis high availability: shard and router find the master through
 * Sentinel; the master is SIGKILLed mid-stream, Sentinel promotes the
 * replica, both follow it (routes survive: replicated), and the client's
 * stream has no gap and no duplicate; writes after the failover land on the
 * new master. */
static void test_sentinel_failover(void **st)
{
    (void)st;
    int pm = tsup_free_port(), pr = tsup_free_port(), ps = tsup_free_port();
    char rof[32];
    snprintf(rof, sizeof rof, "%d", pm);
    pid_t master = spawn_redis(NULL, pm, NULL);
    assert_int_equal(tsup_wait_tcp(pm, 10000), 1);
    spawn_redis(NULL, pr, (const char *const[]){ "--replicaof", "127.0.0.1", rof, NULL });
    assert_int_equal(tsup_wait_until(replica_synced, &pr, 20000), 1);
    char *conf = tsup_tmp("sentinel.conf");
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f, "protected-mode no\nsentinel monitor odin 127.0.0.1 %d 1\n"
               "sentinel down-after-milliseconds odin 1000\n"
               "sentinel failover-timeout odin 5000\n", pm);
    fclose(f);
    spawn_redis(conf, ps, (const char *const[]){ "--sentinel", NULL });
    sentinel_q q = { ps, pm };
    assert_int_equal(tsup_wait_until(sentinel_ready, &q, 30000), 1);

    char sent[64], url[64], id[48], tok[32], chan[64], tok2[32], chan2[64];
    snprintf(sent, sizeof sent, "REDIS_SENTINELS=127.0.0.1:%d", ps);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", pm);   /* host unused: Sentinel */
    snprintf(id, sizeof id, "e2e-sent-%d", (int)getpid());
    snprintf(tok, sizeof tok, "SN%d", (int)getpid());
    snprintf(chan, sizeof chan, "%s.trade", tok);
    snprintf(tok2, sizeof tok2, "SM%d", (int)getpid());
    snprintf(chan2, sizeof chan2, "%s.trade", tok2);
    ssup_shard s;
    const char *extra[] = { "SHARD_LEASE_TTL=2", "LOG_LEVEL=info", sent, NULL };
    assert_int_equal(ssup_shard_start(&s, id, url, extra), 0);
    remember(s.pid);
    client c;
    client_open(&c, "sentinel", s.port, (const char *const[]){ chan, NULL });
    redisContext *rm = tsup_redis_connect(url);
    member_wait_q mq = { rm, tok, id };
    assert_int_equal(tsup_wait_until(route_member, &mq, 10000), 1);
    redisFree(rm);

    rtsup_router r;
    start_router_at(&r, url, sent);   /* url's host is unused: Sentinel */
    client *cs[] = { &c, NULL };
    rtsup_producer *p = rtsup_producer_new(tsup_env("ODIN_KAFKA_BROKERS"));
    await_live(cs, p);

    int n = 0;
    for (; n < 50; n++)
        produce(p, TOPIC_TRADE, tok, n);
    assert_int_equal(rtsup_producer_flush(p), 0);
    uint64_t t_kill = clock_mono_ms();
    kill(master, SIGKILL);
    for (; n < 100; n++)          /* during the failover */
        produce(p, TOPIC_TRADE, tok, n);
    assert_int_equal(rtsup_producer_flush(p), 0);
    sentinel_q q2 = { ps, pr };
    assert_int_equal(tsup_wait_until(sentinel_ready, &q2, 30000) || sentinel_ready(&q2), 1);
    uint64_t t_promoted = clock_mono_ms();
    /* both follow Sentinel to the promoted replica */
    assert_true(ssup_wait_metric(s.port, "shard_redis_connected", 1, 20000));
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_redis_connected", 1, 20000));
    uint64_t t_back = clock_mono_ms();
    for (; n < 150; n++)
        produce(p, TOPIC_TRADE, tok, n);
    assert_int_equal(rtsup_producer_flush(p), 0);
    await_marker(cs, p, "sentinel");
    printf("sentinel failover: promoted %llu ms after the kill, shard and router on the new "
           "master %llu ms after; %ld of %d records, out of order %ld\n",
           (unsigned long long)(t_promoted - t_kill), (unsigned long long)(t_back - t_promoted),
           count_of(&c, chan), n, c.out_of_order);
    assert_int_equal(count_of(&c, chan), n);
    assert_int_equal(c.out_of_order, 0);
    assert_int_equal(c.unexpected, 0);

    /* a subscription made after the failover is written to the new master */
    client c2;
    client_open(&c2, "sentinel2", s.port, (const char *const[]){ chan2, NULL });
    char url2[64];
    snprintf(url2, sizeof url2, "redis://127.0.0.1:%d", pr);
    redisContext *rn = tsup_redis_connect(url2);
    member_wait_q mq2 = { rn, tok2, id };
    assert_int_equal(tsup_wait_until(route_member, &mq2, 10000), 1);
    redisFree(rn);

    rtsup_producer_free(p);
    client_close(&c2);
    client_close(&c);
    stop_router_ok(&r);
    assert_int_equal(WEXITSTATUS(ssup_shard_stop(&s, SIGTERM, 10000)), 0);
    free(conf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_targeted_exact, teardown),
        cmocka_unit_test_teardown(test_delivery_latency_metrics, teardown),
        cmocka_unit_test_teardown(test_sigkill_shard, teardown),
        cmocka_unit_test_teardown(test_scale_out, teardown),
        cmocka_unit_test_teardown(test_tcp_endpoint, teardown),
        cmocka_unit_test_teardown(test_ingress_secret, teardown),
        cmocka_unit_test_teardown(test_sentinel_failover, teardown),
        cmocka_unit_test_teardown(test_link_relay, teardown),
        cmocka_unit_test_teardown(test_ingress_preauth_flood, teardown),
    };
    return TSUP_RUN_CASES("e2e", tests, NULL, NULL);
}
