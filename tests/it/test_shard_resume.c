/*
 * Reconnect replay (issue 12) against the real processes: odin-devbroker,
 * redis-server, odin-router, several odin-shard processes (with
 * KAFKA_BROKERS) and WebSocket clients.
 *
 * Records of a test token go to partition 0 of odin.trades (explicitly) and
 * carry {"n":i}; a client checks n is exactly the next one, so a gap, a
 * duplicate or a reordering fails the test.  Waits are for events (a record,
 * an ack, a Redis key, a metric), bounded by timeouts; nothing sleeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "tests/support/rtsup.h"
#include "tests/support/shardsup.h"
#include "tests/support/support.h"
#include "tests/support/wsclient.h"
#include "tests/support/cases.h"

#define TOPIC "odin.trades"
#define TW 30000

static rtsup_router g_router;
static rtsup_producer *g_prod;
static int g_nshards;          /* shards alive (the router should see them) */

/* ---- processes ---------------------------------------------------------- */

static pid_t spawned[32];
static int nspawned;

static void remember(pid_t pid)
{
    if (nspawned < (int)(sizeof spawned / sizeof spawned[0]))
        spawned[nspawned++] = pid;
}

static void start_shard(ssup_shard *s, const char *tag, const char *const more[])
{
    char id[96], brokers[512];
    snprintf(id, sizeof id, "resume-%s-%d", tag, (int)getpid());
    snprintf(brokers, sizeof brokers, "KAFKA_BROKERS=%s", tsup_env("ODIN_KAFKA_BROKERS"));
    const char *extra[12] = { "SHARD_LEASE_TTL=2", "LOG_LEVEL=info", brokers };
    int n = 3;
    for (int i = 0; more && more[i] && n < 11; i++)
        extra[n++] = more[i];
    extra[n] = NULL;
    assert_int_equal(ssup_shard_start(s, id, NULL, extra), 0);
    remember(s->pid);
    g_nshards++;
    assert_true(rtsup_wait_metric_eq(g_router.http_port, "router_shards_connected",
                                     g_nshards, TW));
}

static void stop_shard(ssup_shard *s)
{
    int st = ssup_shard_stop(s, SIGTERM, 10000);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    g_nshards--;
}

static int group_setup(void **st)
{
    char group[128];
    snprintf(group, sizeof group, "KAFKA_GROUP=%s", rtsup_unique("resume"));
    const char *extra[] = { group, "KAFKA_OFFSET_RESET=latest", "LOG_LEVEL=info",
                            "KAFKA_OPTIONS=fetch.wait.max.ms=20,"
                            "topic.metadata.refresh.interval.ms=1000,session.timeout.ms=6000",
                            NULL };
    if (rtsup_router_start(&g_router, tsup_env("ODIN_REDIS_URL"), extra) != 0)
        return -1;
    remember(g_router.pid);
    if (!rtsup_wait_metric(g_router.http_port, "router_assigned_partitions", 1, 120000))
        return -1;
    g_prod = rtsup_producer_new(tsup_env("ODIN_KAFKA_BROKERS"));
    return g_prod ? 0 : -1;
}

static int group_teardown(void **st)
{
    rtsup_producer_free(g_prod);
    for (int i = 0; i < nspawned; i++) {
        int status;
        if (spawned[i] > 0 && waitpid(spawned[i], &status, WNOHANG) == 0)
            tsup_stop(spawned[i], SIGKILL, 5000);
    }
    return 0;
}

/* ---- records and clients ------------------------------------------------ */

static void produce_n(const char *topic, int32_t part, const char *tok, int from, int to)
{
    for (int i = from; i < to; i++)
        rtsup_produce_trade(g_prod, topic, part, tok, i);
}

static void produce_marker(int32_t part, const char *id)
{
    rtsup_produce_marker(g_prod, TOPIC, part, id);
    assert_int_equal(rtsup_producer_flush(g_prod), 0);
}

static wsc *ws_open(int port)
{
    int status = 0;
    wsc *c = wsc_connect("127.0.0.1", port, NULL, &status);
    assert_non_null(c);
    assert_int_equal(status, 101);
    return c;
}

/* Next text message as JSON (NULL on timeout); fails on close/EOF. */
static json_t *recv_json(wsc *c, int timeout_ms)
{
    char *m = NULL;
    int r = wsc_recv_text(c, timeout_ms, &m, NULL);
    if (r == 0)
        return NULL;
    if (r != 1)
        fail_msg("connection ended (%d, close %d)", r, c->close_code);
    json_error_t e;
    json_t *j = json_loads(m, 0, &e);
    if (!j)
        fail_msg("not JSON: %s", m);
    free(m);
    return j;
}

static const char *jtype(json_t *j)
{
    const char *t = json_string_value(json_object_get(j, "type"));
    return t ? t : "";
}

static int marker_is(json_t *j, const char *id)
{
    json_t *m = json_object_get(json_object_get(json_object_get(j, "data"), "data"),
                                "marker");
    return m && json_is_string(m) && strcmp(json_string_value(m), id) == 0;
}

static int is_marker(json_t *j)
{
    const char *ch = json_string_value(json_object_get(j, "channel"));
    return ch && strncmp(ch, "*.", 2) == 0;
}

static long rec_n(json_t *j)
{
    json_t *n = json_object_get(json_object_get(json_object_get(j, "data"), "data"), "n");
    return n ? (long)json_integer_value(n) : -1;
}

static void subscribe(wsc *c, const char *chan)
{
    char req[256];
    snprintf(req, sizeof req, "{\"type\":\"subscribe\",\"data\":{\"channels\":[\"%s\"]}}", chan);
    assert_int_equal(wsc_send_text(c, req), 0);
    for (;;) {
        json_t *j = recv_json(c, TW);
        assert_non_null(j);
        int ack = strcmp(jtype(j), "subscription_ack") == 0;
        json_decref(j);
        if (ack)
            return;
    }
}

/* Produce markers on partition 0 until c receives one: the router is
 * consuming live. */
static void await_live(wsc *c)
{
    uint64_t end = clock_mono_ms() + TW;
    for (int k = 0;; k++) {
        char id[32];
        snprintf(id, sizeof id, "warm-%d", k);
        produce_marker(0, id);
        json_t *j;
        int got = 0;
        while ((j = recv_json(c, 300))) {
            got |= is_marker(j) && marker_is(j, id);
            json_decref(j);
        }
        if (got)
            return;
        assert_true(clock_mono_ms() < end);
    }
}

/* Produce marker `id` on `part` and read c until it arrives (markers reach
 * every client): the router has dispatched every record produced on that
 * partition before it (one partition is consumed in order). */
static void await_marker(wsc *c, int32_t part, const char *id)
{
    produce_marker(part, id);
    for (int seen = 0; !seen;) {
        json_t *j = recv_json(c, TW);
        assert_non_null(j);
        seen = is_marker(j) && marker_is(j, id);
        json_decref(j);
    }
}

/* Read c until the marker `id` arrives; any record of `chan` before it
 * fails the test (nothing more may arrive). */
static void expect_quiet_until_marker(wsc *c, const char *chan, const char *id)
{
    produce_marker(0, id);
    uint64_t end = clock_mono_ms() + TW;
    for (;;) {
        json_t *j = recv_json(c, 500);
        if (j) {
            const char *ch = json_string_value(json_object_get(j, "channel"));
            if (ch && strcmp(ch, chan) == 0)
                fail_msg("unexpected extra record n=%ld", rec_n(j));
            int done = is_marker(j) && marker_is(j, id);
            json_decref(j);
            if (done)
                return;
        }
        assert_true(clock_mono_ms() < end);
    }
}

/* Wait until shard holds (want 1) or left (0) token's route set. */
static void wait_route(const char *token, const char *shard, int want)
{
    char key[96];
    snprintf(key, sizeof key, "odin:route:%s", token);
    redisContext *rc = tsup_redis_connect(tsup_env("ODIN_REDIS_URL"));
    int ok = tsup_wait_member(rc, key, shard, want, TW);
    redisFree(rc);
    assert_true(ok);
}

/* Subscribe on shard `port`, receive records n = 0..n-1 (produced here),
 * return the position of the last one. */
static void first_life(int port, const char *tok, const char *chan, int n,
                       int32_t *p, int64_t *seq)
{
    wsc *c = ws_open(port);
    subscribe(c, chan);
    await_live(c);
    produce_n(TOPIC, 0, tok, 0, n);
    assert_int_equal(rtsup_producer_flush(g_prod), 0);
    int next = 0;
    while (next < n) {
        json_t *j = recv_json(c, TW);
        assert_non_null(j);
        if (!is_marker(j)) {
            assert_int_equal(rec_n(j), next);
            next++;
            *p = (int32_t)json_integer_value(json_object_get(j, "p"));
            *seq = json_integer_value(json_object_get(j, "seq"));
            assert_null(json_object_get(j, "replay"));
        }
        json_decref(j);
    }
    assert_int_equal(*p, 0);
    wsc_free(c);
}

static void send_reconnect(wsc *c, const char *chan, int32_t p, int64_t seq)
{
    char req[512];
    snprintf(req, sizeof req,
             "{\"type\":\"reconnect\",\"data\":{\"channels\":{\"%s\":{\"p\":%d,\"seq\":%lld}}}}",
             chan, (int)p, (long long)seq);
    assert_int_equal(wsc_send_text(c, req), 0);
}

/* ---- the seam ---------------------------------------------------------- */

/*
 * A client leaves shard A at record 9; records 10..59 are published while it
 * is away; it comes back on shard B with its position while records 60..79
 * are published.  It must get exactly 10..79 in order: a prefix (at least
 * 10..59) marked replay, then reconnect_ack (replayed = that prefix), then
 * the rest live.  pre_routed: another client on B already holds the token,
 * so the 20 arrive live during the replay and are held.
 */
static void seam(int pre_routed)
{
    char tok[32], chan[64], tag[16];
    snprintf(tok, sizeof tok, "RS%c%d", pre_routed ? 'P' : 'N', (int)getpid());
    snprintf(chan, sizeof chan, "%s.trade", tok);
    snprintf(tag, sizeof tag, "seam%d", pre_routed);
    ssup_shard a, b;
    char ta[24], tb[24];
    snprintf(ta, sizeof ta, "%sa", tag);
    snprintf(tb, sizeof tb, "%sb", tag);
    start_shard(&a, ta, NULL);
    start_shard(&b, tb, NULL);

    int32_t p;
    int64_t seq;
    first_life(a.port, tok, chan, 10, &p, &seq);
    wait_route(tok, a.id, 0);

    produce_n(TOPIC, 0, tok, 10, 60);
    assert_int_equal(rtsup_producer_flush(g_prod), 0);

    /* `other` on B: holds the token in the pre_routed variant, and sees
     * markers.  Once it has the marker produced after 10..59, the router
     * has dispatched them (one partition, in order): none of them can
     * reach B live once the client reconnects, so exactly 10..59 must come
     * from the replay. */
    wsc *other = ws_open(b.port);
    if (pre_routed) {
        subscribe(other, chan);
        wait_route(tok, b.id, 1);
    }
    await_marker(other, 0, pre_routed ? "m50-p" : "m50-n");

    double dup0 = ssup_metric(b.port, "ws_replay_duplicates_dropped_total");
    wsc *c = ws_open(b.port);
    uint64_t t_sent = clock_mono_ms();
    send_reconnect(c, chan, p, seq);
    if (pre_routed) {
        /* B has read the reconnect (c's subscription joins other's; the
         * replay may even be over): 60..79 can only be held or replayed */
        assert_true(ssup_wait_metric(b.port, "ws_subscriptions_active", 2, TW));
        /* during the replay: they reach B live (held) and Kafka (replayed) */
        produce_n(TOPIC, 0, tok, 60, 80);
        assert_int_equal(rtsup_producer_flush(g_prod), 0);
    }

    long next = 10, ack_at = -1, replayed = -1;
    uint64_t end = clock_mono_ms() + TW;
    while (next < 80 || ack_at < 0) {
        assert_true(clock_mono_ms() < end);
        json_t *j = recv_json(c, 1000);
        if (!j)
            continue;
        const char *t = jtype(j);
        if (strcmp(t, "reconnect_ack") == 0) {
            assert_true(ack_at < 0);
            ack_at = next - 10;
            fprintf(stderr, "seam(pre_routed=%d): ack %llu ms after the request\n",
                    pre_routed, (unsigned long long)(clock_mono_ms() - t_sent));
            replayed = (long)json_integer_value(json_object_get(j, "replayed"));
            json_t *sub = json_object_get(j, "subscribed");
            assert_int_equal(json_array_size(sub), 1);
            assert_string_equal(json_string_value(json_array_get(sub, 0)), chan);
            assert_int_equal(json_integer_value(json_object_get(j, "count")), 1);
            if (!pre_routed) {
                /* after the ack: live only */
                produce_n(TOPIC, 0, tok, 60, 80);
                assert_int_equal(rtsup_producer_flush(g_prod), 0);
            }
        } else if (strcmp(t, "reconnect_error") == 0) {
            fail_msg("reconnect_error %s: %s",
                     json_string_value(json_object_get(j, "code")),
                     json_string_value(json_object_get(j, "message")));
        } else if (!is_marker(j)) {
            const char *ch = json_string_value(json_object_get(j, "channel"));
            assert_non_null(ch);
            assert_string_equal(ch, chan);
            if (rec_n(j) != next)
                fail_msg("want n=%ld, got n=%ld (seq %lld)", next, rec_n(j),
                         (long long)json_integer_value(json_object_get(j, "seq")));
            assert_int_equal(json_integer_value(json_object_get(j, "p")), p);
            assert_true(json_integer_value(json_object_get(j, "seq")) > seq);
            int is_replay = json_is_true(json_object_get(j, "replay"));
            /* replay strictly before the ack, live strictly after */
            assert_int_equal(is_replay, ack_at < 0);
            assert_string_equal(t, "price:update");
            next++;
        }
        json_decref(j);
    }
    fprintf(stderr, "seam(pre_routed=%d): %ld replayed, %ld live after the ack\n",
            pre_routed, replayed, 70 - replayed);
    assert_true(ack_at >= 50);            /* 10..59 were replayed */
    assert_int_equal(replayed, ack_at);
    expect_quiet_until_marker(c, chan, pre_routed ? "end-p" : "end-n");
    double dups = ssup_metric(b.port, "ws_replay_duplicates_dropped_total") - dup0;
    fprintf(stderr, "  live copies dropped as already replayed: %.0f\n", dups);
    /* Every live copy of 60..79 reached B after the reconnect began (the
     * end marker came after them): each was either dropped as already
     * replayed or sent after the ack. */
    assert_true(dups + (double)(70 - replayed) == 20);
    if (!pre_routed)
        assert_int_equal(replayed, 50);   /* 60..79 were produced after the ack */
    assert_true(ssup_metric(b.port, "ws_replayed_messages_total") == (double)replayed);
    assert_true(ssup_metric(b.port, "ws_reconnects_total{result=\"ok\"}") == 1);
    assert_true(ssup_metric(b.port, "ws_reconnects_active") == 0);

    wsc_free(c);
    wsc_free(other);
    stop_shard(&a);
    stop_shard(&b);
}

static void test_seam_new_route(void **st)
{
    seam(0);
}

static void test_seam_route_exists(void **st)
{
    seam(1);
}

/* RESUME_MAX_RECORDS (default 1000) records missed: all replayed, in
 * order, exactly once, then the ack (and the time it takes). */
static void test_replay_default_limit(void **st)
{
    char tok[32], chan[64];
    snprintf(tok, sizeof tok, "RM%d", (int)getpid());
    snprintf(chan, sizeof chan, "%s.trade", tok);
    ssup_shard a, b;
    start_shard(&a, "maxa", NULL);
    start_shard(&b, "maxb", NULL);
    int32_t p;
    int64_t seq;
    first_life(a.port, tok, chan, 1, &p, &seq);
    wait_route(tok, a.id, 0);
    produce_n(TOPIC, 0, tok, 1, 1001);
    assert_int_equal(rtsup_producer_flush(g_prod), 0);
    /* the router has dispatched them (to nobody) once a marker after them
     * reached a client: none of them can come live */
    wsc *watch = ws_open(b.port);
    await_marker(watch, 0, "m1000");
    wsc_free(watch);
    wsc *c = ws_open(b.port);
    uint64_t t0 = clock_mono_ms();
    send_reconnect(c, chan, p, seq);
    long next = 1;
    for (;;) {
        json_t *j = recv_json(c, TW);
        assert_non_null(j);
        if (strcmp(jtype(j), "reconnect_ack") == 0) {
            assert_int_equal(json_integer_value(json_object_get(j, "replayed")), 1000);
            json_decref(j);
            break;
        }
        if (strcmp(jtype(j), "reconnect_error") == 0)
            fail_msg("reconnect_error %s", json_string_value(json_object_get(j, "message")));
        if (!is_marker(j)) {
            assert_true(json_is_true(json_object_get(j, "replay")));
            if (rec_n(j) != next)
                fail_msg("want n=%ld, got %ld", next, rec_n(j));
            next++;
        }
        json_decref(j);
    }
    assert_int_equal(next, 1001);
    fprintf(stderr, "1000 records replayed, ack after %llu ms\n",
            (unsigned long long)(clock_mono_ms() - t0));
    expect_quiet_until_marker(c, chan, "end-max");
    wsc_free(c);
    stop_shard(&a);
    stop_shard(&b);
}

/* ---- errors ------------------------------------------------------------ */

static json_t *expect_rerror(wsc *c, const char *code)
{
    uint64_t end = clock_mono_ms() + TW;
    for (;;) {
        assert_true(clock_mono_ms() < end);
        json_t *j = recv_json(c, 1000);
        if (!j || is_marker(j)) {
            json_decref(j);
            continue;
        }
        if (strcmp(jtype(j), "reconnect_error") != 0)
            return j;   /* caller decides (replay records before the error) */
        const char *got = json_string_value(json_object_get(j, "code"));
        if (strcmp(got, code) != 0)
            fail_msg("want %s, got %s: %s", code, got,
                     json_string_value(json_object_get(j, "message")));
        assert_non_null(json_string_value(json_object_get(j, "message")));
        json_decref(j);
        return NULL;
    }
}

/* After a reconnect_error the client is subscribed live: a new record for
 * the token arrives (not marked replay). */
static void expect_live(wsc *c, const char *tok, int n)
{
    produce_n(TOPIC, 0, tok, n, n + 1);
    assert_int_equal(rtsup_producer_flush(g_prod), 0);
    uint64_t end = clock_mono_ms() + TW;
    for (;;) {
        assert_true(clock_mono_ms() < end);
        json_t *j = recv_json(c, 1000);
        if (!j)
            continue;
        int ok = !is_marker(j) && rec_n(j) == n;
        if (ok)
            assert_null(json_object_get(j, "replay"));
        json_decref(j);
        if (ok)
            return;
    }
}

static void test_too_far_behind(void **st)
{
    const char *env[] = { "RESUME_MAX_RECORDS=5", NULL };
    char tok[32], chan[64];
    snprintf(tok, sizeof tok, "RF%d", (int)getpid());
    snprintf(chan, sizeof chan, "%s.trade", tok);
    ssup_shard a, b;
    start_shard(&a, "tfa", NULL);
    start_shard(&b, "tfb", env);
    int32_t p;
    int64_t seq;
    first_life(a.port, tok, chan, 3, &p, &seq);

    /* exactly RESUME_MAX_RECORDS missed: fine */
    wsc *c = ws_open(b.port);
    produce_n(TOPIC, 0, tok, 3, 8);
    assert_int_equal(rtsup_producer_flush(g_prod), 0);
    send_reconnect(c, chan, p, seq);
    /* 3..7 exactly once and in order: replayed before the ack, or (when
     * the router was still behind and routed them to this shard live) after
     * it; the ack counts the replayed ones */
    int got = 0, before_ack = -1;
    while (got < 5 || before_ack < 0) {
        json_t *j = recv_json(c, TW);
        assert_non_null(j);
        if (strcmp(jtype(j), "reconnect_ack") == 0) {
            assert_int_equal(before_ack, -1);
            before_ack = got;
            assert_int_equal(json_integer_value(json_object_get(j, "replayed")), got);
        } else if (!is_marker(j)) {
            assert_int_equal(rec_n(j), 3 + got);
            assert_true((json_object_get(j, "replay") != NULL) == (before_ack < 0));
            got++;
        }
        json_decref(j);
    }
    assert_int_equal(got, 5);
    wsc_free(c);

    /* one more than that: TOO_FAR_BEHIND after at most 5 replayed.  The
     * router must have dispatched 8..13 before the reconnect: else it may
     * route them live to B once the reconnect registers the route, and the
     * replay legitimately stops at 7 where live takes over (seen on CI
     * under ASan: reconnect_ack, replayed 5). */
    c = ws_open(b.port);
    produce_n(TOPIC, 0, tok, 8, 14);    /* 3..13 = 11 records after seq */
    assert_int_equal(rtsup_producer_flush(g_prod), 0);
    await_marker(c, 0, "m13");
    send_reconnect(c, chan, p, seq);
    json_t *j;
    int partial = 0;
    while ((j = expect_rerror(c, "TOO_FAR_BEHIND"))) {
        assert_true(json_is_true(json_object_get(j, "replay")));
        partial++;
        json_decref(j);
    }
    assert_true(partial <= 5);
    assert_true(ssup_metric(b.port, "ws_reconnects_total{result=\"too_far_behind\"}") == 1);
    expect_live(c, tok, 14);
    wsc_free(c);
    stop_shard(&a);
    stop_shard(&b);
}

static void test_invalid_position(void **st)
{
    char tok[32], chan[64];
    snprintf(tok, sizeof tok, "RI%d", (int)getpid());
    snprintf(chan, sizeof chan, "%s.trade", tok);
    ssup_shard b;
    start_shard(&b, "inv", NULL);
    wsc *c = ws_open(b.port);
    /* a partition the topic does not have */
    send_reconnect(c, chan, 999, 5);
    assert_null(expect_rerror(c, "INVALID_POSITION"));
    /* beyond the high watermark */
    send_reconnect(c, chan, 0, (int64_t)1 << 40);
    assert_null(expect_rerror(c, "INVALID_POSITION"));
    /* a category without a Kafka topic */
    char other[64];
    snprintf(other, sizeof other, "%s.nosuchcat", tok);
    send_reconnect(c, other, 0, 1);
    assert_null(expect_rerror(c, "INVALID_POSITION"));
    assert_true(ssup_metric(b.port, "ws_reconnects_total{result=\"invalid_position\"}") == 3);
    /* still subscribed live */
    assert_true(ssup_metric(b.port, "ws_subscriptions_active") == 2);
    expect_live(c, tok, 0);
    /* bad input is a plain error, nothing subscribed */
    assert_int_equal(wsc_send_text(c, "{\"type\":\"reconnect\",\"data\":{\"channels\":"
                                      "{\"x.trade\":{\"p\":\"0\",\"seq\":1}}}}"), 0);
    json_t *e = recv_json(c, TW);
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "code")), "INVALID_JSON");
    json_decref(e);
    wsc_free(c);
    stop_shard(&b);
}

/* Grow partition 7 of odin.metadata past the mock's 5 MiB until its log
 * start passes `past`; returns the low watermark. */
static int64_t expire_until(const char *tok, int64_t past)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", tsup_env("ODIN_KAFKA_BROKERS"), err,
                      sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    assert_non_null(rk);
    size_t vl = 200 * 1024;
    char *v = malloc(vl + 64);
    int l = snprintf(v, 64, "{\"pad\":\"");
    memset(v + l, 'x', vl);
    memcpy(v + l + vl, "\"}", 3);
    int64_t lo = -1, hi = -1;
    for (int round = 0; round < 100; round++) {
        assert_int_equal(rd_kafka_query_watermark_offsets(rk, "odin.metadata", 7, &lo, &hi,
                                                          10000), 0);
        if (lo > past)
            break;
        for (int i = 0; i < 5; i++)
            rtsup_produce(g_prod, "odin.metadata", 7, tok, strlen(tok), v, strlen(v));
        assert_int_equal(rtsup_producer_flush(g_prod), 0);
    }
    free(v);
    rd_kafka_destroy(rk);
    assert_true(lo > past);
    return lo;
}

static void test_position_expired(void **st)
{
    char tok[32], chan[64];
    snprintf(tok, sizeof tok, "RX%d", (int)getpid());
    snprintf(chan, sizeof chan, "%s.metadata", tok);
    ssup_shard b;
    start_shard(&b, "exp", NULL);
    /* the first record of this token on partition 7 */
    rtsup_produce(g_prod, "odin.metadata", 7, tok, strlen(tok), "{}", 2);
    assert_int_equal(rtsup_producer_flush(g_prod), 0);
    const int32_t *parts;
    const int64_t *offs;
    size_t nd = rtsup_producer_delivered(g_prod, &parts, &offs);
    assert_true(nd > 0);
    int64_t first = offs[nd - 1];
    int64_t lo = expire_until(tok, first + 1);
    fprintf(stderr, "partition 7 now starts at %lld (our record was %lld)\n",
            (long long)lo, (long long)first);
    wsc *c = ws_open(b.port);
    send_reconnect(c, chan, 7, first);
    assert_null(expect_rerror(c, "POSITION_EXPIRED"));
    assert_true(ssup_metric(b.port, "ws_reconnects_total{result=\"position_expired\"}") == 1);
    assert_true(ssup_metric(b.port, "ws_subscriptions_active") == 1);
    wsc_free(c);
    stop_shard(&b);
}

static void test_unavailable_and_busy(void **st)
{
    char tok[32], chan[64];
    snprintf(tok, sizeof tok, "RU%d", (int)getpid());
    snprintf(chan, sizeof chan, "%s.trade", tok);
    /* no KAFKA_BROKERS */
    ssup_shard u;
    char id[64];
    snprintf(id, sizeof id, "resume-unav-%d", (int)getpid());
    const char *uenv[] = { "SHARD_LEASE_TTL=2", "LOG_LEVEL=info", NULL };
    assert_int_equal(ssup_shard_start(&u, id, NULL, uenv), 0);
    remember(u.pid);
    g_nshards++;
    assert_true(rtsup_wait_metric_eq(g_router.http_port, "router_shards_connected",
                                     g_nshards, TW));
    wsc *c = ws_open(u.port);
    send_reconnect(c, chan, 0, 0);
    assert_null(expect_rerror(c, "RESUME_UNAVAILABLE"));
    wait_route(tok, id, 1);    /* written after the answer */
    expect_live(c, tok, 0);
    wsc_free(c);
    stop_shard(&u);

    /* RESUME_MAX_CONCURRENT=1; a shard whose Redis is unreachable never
     * sees its route confirmed, so a replay of a quiet token waits for the
     * live seam until RESUME_TIMEOUT_MS: a second reconnect meanwhile is
     * refused, and the first ends TOO_FAR_BEHIND (timeout). */
    int dead = tsup_free_port();
    char redis[64], id2[64];
    snprintf(redis, sizeof redis, "redis://127.0.0.1:%d", dead);
    snprintf(id2, sizeof id2, "resume-busy-%d", (int)getpid());
    char brokers[512];
    snprintf(brokers, sizeof brokers, "KAFKA_BROKERS=%s", tsup_env("ODIN_KAFKA_BROKERS"));
    const char *benv[] = { brokers, "RESUME_MAX_CONCURRENT=1", "RESUME_TIMEOUT_MS=3000",
                           "LOG_LEVEL=info", NULL };
    ssup_shard b;
    assert_int_equal(ssup_shard_start(&b, id2, redis, benv), 0);
    remember(b.pid);
    wsc *c1 = ws_open(b.port);
    wsc *c2 = ws_open(b.port);
    uint64_t t0 = clock_mono_ms();
    send_reconnect(c1, chan, 0, -1 + 0);   /* seq -1: from offset 0 */
    assert_true(ssup_wait_metric(b.port, "ws_reconnects_active", 1, TW));
    send_reconnect(c2, chan, 0, 0);
    assert_null(expect_rerror(c2, "RESUME_BUSY"));
    /* c1: the records of tok on partition 0 (from the test above), then the
     * timeout */
    json_t *j;
    while ((j = expect_rerror(c1, "TOO_FAR_BEHIND")))
        json_decref(j);
    uint64_t took = clock_mono_ms() - t0;
    fprintf(stderr, "timeout after %llu ms\n", (unsigned long long)took);
    assert_true(took >= 2900);
    assert_true(ssup_metric(b.port, "ws_reconnects_total{result=\"busy\"}") == 1);
    assert_true(ssup_metric(b.port, "ws_reconnects_total{result=\"too_far_behind\"}") == 1);
    assert_true(ssup_wait_metric_eq(b.port, "ws_reconnects_active", 0, TW));
    wsc_free(c1);
    wsc_free(c2);
    int stb = ssup_shard_stop(&b, SIGTERM, 10000);
    assert_true(WIFEXITED(stb));
    assert_int_equal(WEXITSTATUS(stb), 0);

    /* SIGTERM while a replay runs: the shard stops it and exits 0 */
    const char *lenv[] = { brokers, "RESUME_TIMEOUT_MS=60000", "LOG_LEVEL=info", NULL };
    snprintf(id2, sizeof id2, "resume-term-%d", (int)getpid());
    assert_int_equal(ssup_shard_start(&b, id2, redis, lenv), 0);
    remember(b.pid);
    c1 = ws_open(b.port);
    send_reconnect(c1, chan, 0, -1);
    assert_true(ssup_wait_metric(b.port, "ws_reconnects_active", 1, TW));
    uint64_t t1 = clock_mono_ms();
    kill(b.pid, SIGTERM);
    assert_int_equal(wsc_wait_close(c1, TW), 1001);
    wsc_free(c1);   /* answer the close by closing */
    stb = tsup_stop(b.pid, 0, 10000);
    assert_true(WIFEXITED(stb));
    assert_int_equal(WEXITSTATUS(stb), 0);
    fprintf(stderr, "SIGTERM with a replay running: exit after %llu ms\n",
            (unsigned long long)(clock_mono_ms() - t1));
}

/* ---- odin-ws's form ------------------------------------------------------ */

/* Records are produced with the default partitioner (by key); the client
 * sends {"last_offset":{"odin.trades":seq}} and gets replay:message
 * envelopes for its current subscription, then reconnect_ack. */
static void test_odinws_form(void **st)
{
    char tok[32], chan[64];
    snprintf(tok, sizeof tok, "RW%d", (int)getpid());
    snprintf(chan, sizeof chan, "%s.trade", tok);
    ssup_shard a, b;
    start_shard(&a, "wsa", NULL);
    start_shard(&b, "wsb", NULL);
    wsc *c = ws_open(a.port);
    subscribe(c, chan);
    await_live(c);
    produce_n(TOPIC, -1, tok, 0, 5);
    assert_int_equal(rtsup_producer_flush(g_prod), 0);
    int next = 0;
    int32_t p = -1;
    int64_t seq = -1;
    while (next < 5) {
        json_t *j = recv_json(c, TW);
        assert_non_null(j);
        if (!is_marker(j)) {
            assert_int_equal(rec_n(j), next++);
            p = (int32_t)json_integer_value(json_object_get(j, "p"));
            seq = json_integer_value(json_object_get(j, "seq"));
        }
        json_decref(j);
    }
    wsc_free(c);
    wait_route(tok, a.id, 0);
    produce_n(TOPIC, -1, tok, 5, 12);
    assert_int_equal(rtsup_producer_flush(g_prod), 0);

    /* 5..11 dispatched (to nobody) before c subscribes on B: else a router
     * still behind sends them live, before the reconnect is read */
    c = ws_open(b.port);
    await_marker(c, p, "m11");
    subscribe(c, chan);
    char req[256];
    snprintf(req, sizeof req,
             "{\"type\":\"reconnect\",\"data\":{\"client_id\":\"cid-1\","
             "\"last_offset\":{\"" TOPIC "\":%lld}}}", (long long)seq);
    assert_int_equal(wsc_send_text(c, req), 0);
    next = 5;
    for (;;) {
        json_t *j = recv_json(c, TW);
        assert_non_null(j);
        if (strcmp(jtype(j), "reconnect_ack") == 0) {
            assert_int_equal(json_integer_value(json_object_get(j, "replayed")), 7);
            assert_string_equal(json_string_value(json_array_get(
                                    json_object_get(j, "subscribed"), 0)), chan);
            json_decref(j);
            break;
        }
        if (strcmp(jtype(j), "reconnect_error") == 0)
            fail_msg("reconnect_error %s", json_string_value(json_object_get(j, "message")));
        if (!is_marker(j)) {
            assert_string_equal(jtype(j), "replay:message");
            assert_true(json_is_true(json_object_get(j, "replay")));
            assert_int_equal(json_integer_value(json_object_get(j, "p")), p);
            assert_int_equal(rec_n(j), next++);
        }
        json_decref(j);
    }
    assert_int_equal(next, 12);
    /* a topic the client has no subscription of: nothing, acked */
    assert_int_equal(wsc_send_text(c, "{\"type\":\"reconnect\",\"data\":{\"last_offset\":"
                                      "{\"odin.balances\":3}}}"), 0);
    for (;;) {
        json_t *j = recv_json(c, TW);
        assert_non_null(j);
        int ack = strcmp(jtype(j), "reconnect_ack") == 0;
        if (ack)
            assert_int_equal(json_integer_value(json_object_get(j, "replayed")), 0);
        else
            assert_true(is_marker(j));
        json_decref(j);
        if (ack)
            break;
    }
    wsc_free(c);
    stop_shard(&a);
    stop_shard(&b);
}

/* ---- a crowd (issue 18) -------------------------------------------------- */

/* Read c's replay: records n = from..to-1 in order, each marked replay,
 * then reconnect_ack with replayed = to - from. */
static void expect_replay(wsc *c, long from, long to)
{
    long next = from;
    for (;;) {
        json_t *j = recv_json(c, TW);
        assert_non_null(j);
        const char *t = jtype(j);
        if (strcmp(t, "reconnect_ack") == 0) {
            assert_int_equal(next, to);
            assert_int_equal(json_integer_value(json_object_get(j, "replayed")),
                             to - from);
            json_decref(j);
            return;
        }
        if (strcmp(t, "reconnect_error") == 0)
            fail_msg("reconnect_error %s: %s",
                     json_string_value(json_object_get(j, "code")),
                     json_string_value(json_object_get(j, "message")));
        if (!is_marker(j)) {
            assert_true(json_is_true(json_object_get(j, "replay")));
            if (rec_n(j) != next)
                fail_msg("want n=%ld, got n=%ld", next, rec_n(j));
            next++;
        }
        json_decref(j);
    }
}

/*
 * 120 clients (ODIN_RESUME_CROWD) of one channel come back to one shard at once, half of them
 * 100 records behind and half 50 behind, interleaved (so some positions are
 * behind the reader when they arrive and must wait for the next pass).
 * Every client gets exactly its missing records, in order, then its ack;
 * the shard reads the partition a few times, not once per client (before
 * issue 18: one Kafka consumer per client, at most 16, the rest
 * RESUME_BUSY).
 */
/* ODIN_RESUME_CROWD=3000 for the figure (120 by default) */
static int crowd_size(void)
{
    const char *e = getenv("ODIN_RESUME_CROWD");
    int n = e ? atoi(e) : 0;
    return n >= 4 && n <= 10000 ? n : 120;
}
static void test_crowd_coalesced(void **st)
{
    char tok[32], chan[64];
    snprintf(tok, sizeof tok, "RC%d", (int)getpid());
    snprintf(chan, sizeof chan, "%s.trade", tok);
    ssup_shard a, b;
    const char *benv[] = { "WS_IP_RATE=0", "RESUME_IP_RATE=0", NULL };  /* all from 127.0.0.1 */
    start_shard(&a, "crowda", NULL);
    start_shard(&b, "crowdb", benv);
    int32_t p;
    int64_t seq;
    first_life(a.port, tok, chan, 1, &p, &seq);   /* n=0 at seq */
    wait_route(tok, a.id, 0);
    produce_n(TOPIC, 0, tok, 1, 101);              /* n=1..100 missed */
    assert_int_equal(rtsup_producer_flush(g_prod), 0);
    /* the 50th of them: its offset from what the producer saw delivered */
    const int32_t *parts;
    const int64_t *offs;
    size_t nd = rtsup_producer_delivered(g_prod, &parts, &offs);
    assert_true(nd >= 100);
    int64_t seq50 = offs[nd - 100 + 49];           /* n=50 */
    wsc *watch = ws_open(b.port);
    await_marker(watch, 0, "crowd");
    wsc_free(watch);
    double passes0 = ssup_metric(b.port, "ws_replay_passes_total");
    const int crowd = crowd_size();
    wsc **cs = calloc((size_t)crowd, sizeof(*cs));
    assert_non_null(cs);
    for (int i = 0; i < crowd; i++)
        cs[i] = ws_open(b.port);
    uint64_t t0 = clock_mono_ms();
    for (int i = 0; i < crowd; i++)
        send_reconnect(cs[i], chan, p, (i & 1) ? seq50 : seq);
    for (int i = 0; i < crowd; i++)
        expect_replay(cs[i], (i & 1) ? 51 : 1, 101);
    double passes = ssup_metric(b.port, "ws_replay_passes_total") - passes0;
    fprintf(stderr, "%d clients replayed in %llu ms; %.0f passes over the "
            "partition, %.0f requests served by them\n", crowd,
            (unsigned long long)(clock_mono_ms() - t0), passes,
            ssup_metric(b.port, "ws_replay_pass_requests_sum"));
    assert_true(ssup_metric(b.port, "ws_reconnects_total{result=\"ok\"}") == crowd);
    assert_true(ssup_metric(b.port, "ws_replay_requests_total") == crowd);
    assert_true(ssup_metric(b.port, "ws_replay_seconds_count") == crowd);
    assert_true(ssup_metric(b.port, "ws_replayed_messages_total") ==
                (crowd / 2) * 100 + (crowd / 2) * 50);
    assert_true(passes >= 1);
    assert_true(passes <= crowd / 4);
    assert_true(ssup_wait_metric_eq(b.port, "ws_replays_active", 0, TW));
    assert_true(ssup_wait_metric_eq(b.port, "ws_replay_partitions_active", 0, TW));
    assert_true(ssup_metric(b.port, "ws_replay_memory_bytes") == 0);
    for (int i = 0; i < crowd; i++)
        wsc_free(cs[i]);
    free(cs);
    stop_shard(&a);
    stop_shard(&b);
}

/*
 * Clients that come back one after the other, each behind where the reader
 * has already read (the crowd of a killed shard arrives over ~2 s): the
 * first one's records are read from Kafka; the later ones, at the same or a
 * later position, are served from the reader's history (kept after the
 * partition's last request left): every client exact, and not one byte more
 * read from Kafka (before: each of them read its range again).
 */
static void test_history_served(void **st)
{
    char tok[32], chan[64];
    snprintf(tok, sizeof tok, "RH%d", (int)getpid());
    snprintf(chan, sizeof chan, "%s.trade", tok);
    ssup_shard a, b;
    const char *benv[] = { "WS_IP_RATE=0", "RESUME_IP_RATE=0", NULL };
    start_shard(&a, "hista", NULL);
    start_shard(&b, "histb", benv);
    int32_t p;
    int64_t seq;
    first_life(a.port, tok, chan, 1, &p, &seq);   /* n=0 at seq */
    wait_route(tok, a.id, 0);
    produce_n(TOPIC, 0, tok, 1, 101);              /* n=1..100 missed */
    assert_int_equal(rtsup_producer_flush(g_prod), 0);
    const int32_t *parts;
    const int64_t *offs;
    size_t nd = rtsup_producer_delivered(g_prod, &parts, &offs);
    assert_true(nd >= 100);
    int64_t seq50 = offs[nd - 100 + 49];           /* n=50 */
    wsc *watch = ws_open(b.port);
    await_marker(watch, 0, "hist");
    wsc_free(watch);
    double kb0 = ssup_metric(b.port, "ws_replay_kafka_bytes_total");
    wsc *c = ws_open(b.port);
    send_reconnect(c, chan, p, seq);
    expect_replay(c, 1, 101);
    wsc_free(c);
    double kb1 = ssup_metric(b.port, "ws_replay_kafka_bytes_total") - kb0;
    assert_true(kb1 >= 100 * 20);                  /* the 100 records */
    for (int i = 0; i < 4; i++) {
        c = ws_open(b.port);
        send_reconnect(c, chan, p, (i & 1) ? seq : seq50);
        expect_replay(c, (i & 1) ? 1 : 51, 101);
        wsc_free(c);
    }
    double kb2 = ssup_metric(b.port, "ws_replay_kafka_bytes_total") - kb0;
    fprintf(stderr, "history: first client read %.0f bytes from Kafka, the "
            "4 later ones %.0f more\n", kb1, kb2 - kb1);
    assert_true(kb2 == kb1);
    assert_true(ssup_wait_metric_eq(b.port, "ws_replays_active", 0, TW));
    assert_true(ssup_wait_metric_eq(b.port, "ws_replay_memory_bytes", 0, TW));
    stop_shard(&a);
    stop_shard(&b);
}

/* RESUME_MAX_OFFSETS: a position further back than that from the end of
 * the partition is TOO_FAR_BEHIND at once, without reading a record. */
static void test_max_offsets(void **st)
{
    char tok[32], chan[64];
    snprintf(tok, sizeof tok, "RO%d", (int)getpid());
    snprintf(chan, sizeof chan, "%s.trade", tok);
    const char *env[] = { "RESUME_MAX_OFFSETS=10", NULL };
    ssup_shard b;
    start_shard(&b, "maxoff", env);
    produce_n(TOPIC, 0, tok, 0, 20);
    assert_int_equal(rtsup_producer_flush(g_prod), 0);
    wsc *c = ws_open(b.port);
    send_reconnect(c, chan, 0, -1);   /* from offset 0: far more than 10 back */
    assert_null(expect_rerror(c, "TOO_FAR_BEHIND"));
    assert_true(ssup_metric(b.port, "ws_reconnects_total{result=\"too_far_behind\"}") == 1);
    assert_true(ssup_metric(b.port, "ws_replayed_messages_total") == 0);
    assert_true(ssup_metric(b.port, "ws_replay_kafka_bytes_total") == 0);
    expect_live(c, tok, 20);
    wsc_free(c);
    stop_shard(&b);
}

/* Records the router would not deliver live are not replayed either:
 * invalid JSON, invalid UTF-8, over RESUME_MAX_RECORD_BYTES.  They are
 * counted, skipped, and the replay goes on past them. */
static void test_poison_skipped(void **st)
{
    char tok[32], chan[64];
    snprintf(tok, sizeof tok, "RP%d", (int)getpid());
    snprintf(chan, sizeof chan, "%s.trade", tok);
    const char *env[] = { "RESUME_MAX_RECORD_BYTES=1000", NULL };
    ssup_shard a, b;
    start_shard(&a, "poia", NULL);
    start_shard(&b, "poib", env);
    int32_t p;
    int64_t seq;
    first_life(a.port, tok, chan, 1, &p, &seq);
    wait_route(tok, a.id, 0);
    produce_n(TOPIC, 0, tok, 1, 2);
    const char *bad_json = "{\"type\":\"X\",\"data\":{\"n\":";
    rtsup_produce(g_prod, TOPIC, 0, tok, strlen(tok), bad_json, strlen(bad_json));
    const char *bad_utf8 = "{\"type\":\"X\",\"data\":{\"n\":-1,\"s\":\"\xff\xfe\"}}";
    rtsup_produce(g_prod, TOPIC, 0, tok, strlen(tok), bad_utf8, strlen(bad_utf8));
    char big[2100];
    int l = snprintf(big, sizeof big, "{\"type\":\"X\",\"data\":{\"n\":-2,\"pad\":\"");
    memset(big + l, 'x', 1900);
    memcpy(big + l + 1900, "\"}}", 4);
    rtsup_produce(g_prod, TOPIC, 0, tok, strlen(tok), big, strlen(big));
    produce_n(TOPIC, 0, tok, 2, 3);
    assert_int_equal(rtsup_producer_flush(g_prod), 0);
    wsc *c = ws_open(b.port);
    await_marker(c, 0, "poison");
    send_reconnect(c, chan, p, seq);
    expect_replay(c, 1, 3);
    assert_true(ssup_metric(b.port,
                "ws_replay_records_skipped_total{reason=\"invalid_json\"}") == 2);
    assert_true(ssup_metric(b.port,
                "ws_replay_records_skipped_total{reason=\"oversized\"}") == 1);
    expect_quiet_until_marker(c, chan, "poison-end");
    wsc_free(c);
    stop_shard(&a);
    stop_shard(&b);
}

/* Reconnect budgets: per connection (RESUME_CONN_RATE/BURST) and per
 * client address (RESUME_IP_RATE/BURST).  Over them: RESUME_RATE_LIMITED,
 * the channels still subscribed live. */
static void test_rate_limited(void **st)
{
    char tok[32], chan[64], bad[64];
    snprintf(tok, sizeof tok, "RL%d", (int)getpid());
    snprintf(chan, sizeof chan, "%s.trade", tok);
    snprintf(bad, sizeof bad, "%s.nosuchcat", tok);
    const char *env[] = { "RESUME_CONN_RATE=0.001", "RESUME_CONN_BURST=2", NULL };
    ssup_shard b;
    start_shard(&b, "rlconn", env);
    wsc *c = ws_open(b.port);
    /* answered at once (no topic for the category), but they count */
    send_reconnect(c, bad, 0, 1);
    assert_null(expect_rerror(c, "INVALID_POSITION"));
    send_reconnect(c, bad, 0, 1);
    assert_null(expect_rerror(c, "INVALID_POSITION"));
    send_reconnect(c, chan, 0, 1);
    assert_null(expect_rerror(c, "RESUME_RATE_LIMITED"));
    assert_true(ssup_metric(b.port, "ws_reconnects_total{result=\"rate_limited\"}") == 1);
    expect_live(c, tok, 0);
    /* another connection has its own budget */
    wsc *c2 = ws_open(b.port);
    send_reconnect(c2, bad, 0, 1);
    assert_null(expect_rerror(c2, "INVALID_POSITION"));
    wsc_free(c);
    wsc_free(c2);
    stop_shard(&b);

    const char *ienv[] = { "RESUME_CONN_RATE=0", "RESUME_IP_RATE=0.001",
                           "RESUME_IP_BURST=2", NULL };
    start_shard(&b, "rlip", ienv);
    wsc *cs[3];
    for (int i = 0; i < 3; i++)
        cs[i] = ws_open(b.port);
    send_reconnect(cs[0], bad, 0, 1);
    assert_null(expect_rerror(cs[0], "INVALID_POSITION"));
    send_reconnect(cs[1], bad, 0, 1);
    assert_null(expect_rerror(cs[1], "INVALID_POSITION"));
    send_reconnect(cs[2], bad, 0, 1);
    assert_null(expect_rerror(cs[2], "RESUME_RATE_LIMITED"));
    for (int i = 0; i < 3; i++)
        wsc_free(cs[i]);
    stop_shard(&b);
}

/* A client that leaves during its replay is forgotten at once: the reader
 * stops the partition nobody needs (no waiting for RESUME_TIMEOUT_MS). */
static void test_client_gone(void **st)
{
    char tok[32], chan[64];
    snprintf(tok, sizeof tok, "RG%d", (int)getpid());
    snprintf(chan, sizeof chan, "%s.trade", tok);
    /* Redis unreachable: the route is never confirmed, so the replay of a
     * quiet token waits at the end of the partition for the seam */
    int dead = tsup_free_port();
    char redis[64], id[64], brokers[512];
    snprintf(redis, sizeof redis, "redis://127.0.0.1:%d", dead);
    snprintf(id, sizeof id, "resume-gone-%d", (int)getpid());
    snprintf(brokers, sizeof brokers, "KAFKA_BROKERS=%s", tsup_env("ODIN_KAFKA_BROKERS"));
    const char *env[] = { brokers, "RESUME_TIMEOUT_MS=600000", "LOG_LEVEL=info", NULL };
    ssup_shard b;
    assert_int_equal(ssup_shard_start(&b, id, redis, env), 0);
    remember(b.pid);
    wsc *c = ws_open(b.port);
    send_reconnect(c, chan, 0, -1);
    assert_true(ssup_wait_metric(b.port, "ws_replay_partitions_active", 1, TW));
    assert_true(ssup_metric(b.port, "ws_replays_active") == 1);
    uint64_t t0 = clock_mono_ms();
    wsc_free(c);
    assert_true(ssup_wait_metric_eq(b.port, "ws_replays_active", 0, TW));
    assert_true(ssup_wait_metric_eq(b.port, "ws_replay_partitions_active", 0, TW));
    fprintf(stderr, "client gone: replay dropped and partition released after %llu ms\n",
            (unsigned long long)(clock_mono_ms() - t0));
    int stb = ssup_shard_stop(&b, SIGTERM, 10000);
    assert_true(WIFEXITED(stb));
    assert_int_equal(WEXITSTATUS(stb), 0);
}

/* RESUME_MEMORY_BYTES at its minimum (64 KiB) and 600 KB to replay: the
 * reader waits for the loop again and again, and every record still
 * arrives, in order; nothing stays held afterwards. */
static void test_memory_bounded(void **st)
{
    char tok[32], chan[64];
    snprintf(tok, sizeof tok, "RB%d", (int)getpid());
    snprintf(chan, sizeof chan, "%s.trade", tok);
    const char *env[] = { "RESUME_MEMORY_BYTES=65536", NULL };
    ssup_shard a, b;
    start_shard(&a, "mema", NULL);
    start_shard(&b, "memb", env);
    int32_t p;
    int64_t seq;
    first_life(a.port, tok, chan, 1, &p, &seq);
    wait_route(tok, a.id, 0);
    char v[2200];
    for (int i = 1; i <= 300; i++) {
        int l = snprintf(v, sizeof v, "{\"type\":\"T\",\"data\":{\"n\":%d,\"pad\":\"", i);
        memset(v + l, 'y', 2000);
        memcpy(v + l + 2000, "\"}}", 4);
        rtsup_produce(g_prod, TOPIC, 0, tok, strlen(tok), v, strlen(v));
    }
    assert_int_equal(rtsup_producer_flush(g_prod), 0);
    wsc *c = ws_open(b.port);
    await_marker(c, 0, "mem");
    assert_true(ssup_metric(b.port, "ws_replay_memory_limit_bytes") == 65536);
    send_reconnect(c, chan, p, seq);
    /* RESUME_MAX_RECORDS is 1000: all 300 fit */
    expect_replay(c, 1, 301);
    assert_true(ssup_wait_metric_eq(b.port, "ws_replay_memory_bytes", 0, TW));
    /* the history kept 600 KB read within the same 64 KiB */
    assert_true(ssup_metric(b.port, "ws_replay_history_bytes") <= 65536);
    wsc_free(c);
    stop_shard(&a);
    stop_shard(&b);
}

/* A "broker" that accepts connections (the kernel does) and never answers:
 * every Kafka call of a shard's replay reader waits its full timeout.
 * Returns the listening fd (close it when done). */
static int silent_broker(int *port)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 16), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    return lfd;
}

/* SIGTERM while the replay reader is stuck in a Kafka call (the brokers do
 * not answer): the shard waits RESUME_JOIN_MS (2 s) for it at most, logs
 * that it gave up, and exits 0 (before issue 18 it waited for the worker,
 * up to RESUME_TIMEOUT_MS). */
static void test_shutdown_bounded(void **st)
{
    char tok[32], chan[64];
    snprintf(tok, sizeof tok, "RT%d", (int)getpid());
    snprintf(chan, sizeof chan, "%s.trade", tok);
    int lport;
    int lfd = silent_broker(&lport);
    char id[64], brokers[128];
    snprintf(id, sizeof id, "resume-stuck-%d", (int)getpid());
    snprintf(brokers, sizeof brokers, "KAFKA_BROKERS=127.0.0.1:%d", lport);
    const char *env[] = { brokers, "RESUME_TIMEOUT_MS=60000", "SHARD_LEASE_TTL=2",
                          "LOG_LEVEL=info", NULL };
    ssup_shard b;
    assert_int_equal(ssup_shard_start(&b, id, NULL, env), 0);
    remember(b.pid);
    wsc *c = ws_open(b.port);
    send_reconnect(c, chan, 0, 5);
    assert_true(ssup_wait_metric(b.port, "ws_reconnects_active", 1, TW));
    /* the reader has taken the request: its handle connects to the broker
     * (then it waits in the metadata call) */
    struct pollfd pf = { .fd = lfd, .events = POLLIN };
    assert_int_equal(poll(&pf, 1, TW), 1);
    int afd = accept(lfd, NULL, NULL);
    assert_true(afd >= 0);
    uint64_t t0 = clock_mono_ms();
    kill(b.pid, SIGTERM);
    assert_int_equal(wsc_wait_close(c, TW), 1001);
    wsc_free(c);
    int stb = tsup_stop(b.pid, 0, 20000);
    uint64_t took = clock_mono_ms() - t0;
    fprintf(stderr, "SIGTERM with the reader stuck in Kafka: exit after %llu ms\n",
            (unsigned long long)took);
    assert_true(WIFEXITED(stb));
    assert_int_equal(WEXITSTATUS(stb), 0);
    assert_true(took < 8000);
    assert_true(tsup_log_has("odin-shard", b.pid, "replay reader did not stop in time", NULL));
    close(afd);
    close(lfd);
}

/*
 * More live records arrive during a replay than a client could take
 * (RESUME_MAX_RECORDS + WS_SEND_QUEUE_MSGS = 4 + 16): the client is told
 * (reconnect_error TOO_FAR_BEHIND), then gets every live record, the held
 * ones and the one that overflowed included, in order: no hole it cannot
 * place (before issue 18 the overflowing records were dropped before the
 * error).  The replay is kept from ending by a reader whose broker never
 * answers, while the router delivers live records normally.
 */
static void test_hold_overflow(void **st)
{
    char tok[32], chan[64];
    snprintf(tok, sizeof tok, "RH%d", (int)getpid());
    snprintf(chan, sizeof chan, "%s.trade", tok);
    int lport;
    int lfd = silent_broker(&lport);
    char brokers[128];
    snprintf(brokers, sizeof brokers, "KAFKA_BROKERS=127.0.0.1:%d", lport);
    const char *env[] = { brokers, "RESUME_TIMEOUT_MS=60000", "RESUME_MAX_RECORDS=4",
                          "WS_SEND_QUEUE_MSGS=16", NULL };
    ssup_shard b;
    start_shard(&b, "hold", env);
    wsc *c = ws_open(b.port);
    send_reconnect(c, chan, 0, 5);
    assert_true(ssup_wait_metric(b.port, "ws_reconnects_active", 1, TW));
    wait_route(tok, b.id, 1);
    produce_n(TOPIC, 0, tok, 0, 40);
    assert_int_equal(rtsup_producer_flush(g_prod), 0);
    int next = 0, erred = 0;
    uint64_t end = clock_mono_ms() + TW;
    while (next < 40) {
        assert_true(clock_mono_ms() < end);
        json_t *j = recv_json(c, 1000);
        if (!j || is_marker(j)) {
            json_decref(j);
            continue;
        }
        const char *t = jtype(j);
        if (strcmp(t, "reconnect_error") == 0) {
            assert_false(erred);
            assert_int_equal(next, 0);      /* before any record */
            assert_string_equal(json_string_value(json_object_get(j, "code")),
                                "TOO_FAR_BEHIND");
            erred = 1;
        } else if (strcmp(t, "reconnect_ack") == 0) {
            fail_msg("unexpected reconnect_ack");
        } else {
            assert_true(erred);
            if (rec_n(j) != next)
                fail_msg("want n=%d, got n=%ld", next, rec_n(j));
            assert_null(json_object_get(j, "replay"));
            next++;
        }
        json_decref(j);
    }
    assert_true(ssup_metric(b.port, "ws_reconnects_total{result=\"too_far_behind\"}") == 1);
    assert_true(ssup_wait_metric_eq(b.port, "ws_reconnects_active", 0, TW));
    assert_true(ssup_metric(b.port, "ws_replay_memory_bytes") == 0);
    wsc_free(c);
    stop_shard(&b);
    close(lfd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seam_new_route),
        cmocka_unit_test(test_seam_route_exists),
        cmocka_unit_test(test_replay_default_limit),
        cmocka_unit_test(test_too_far_behind),
        cmocka_unit_test(test_invalid_position),
        cmocka_unit_test(test_position_expired),
        cmocka_unit_test(test_unavailable_and_busy),
        cmocka_unit_test(test_odinws_form),
        cmocka_unit_test(test_crowd_coalesced),
        cmocka_unit_test(test_history_served),
        cmocka_unit_test(test_max_offsets),
        cmocka_unit_test(test_poison_skipped),
        cmocka_unit_test(test_rate_limited),
        cmocka_unit_test(test_client_gone),
        cmocka_unit_test(test_memory_bounded),
        cmocka_unit_test(test_shutdown_bounded),
        cmocka_unit_test(test_hold_overflow),
    };
    return TSUP_RUN_CASES("shard_resume", tests, group_setup, group_teardown);
}
