/* odin-shard Redis registration against real redis-server: routes and the
 * reverse index follow local subscriptions exactly, the lease, published
 * events, cleanup of a previous life, SIGTERM deregistration, surviving a
 * Redis restart, bounded batching of many registrations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include "common/clock.h"
#include "common/schema.h"
#include "tests/support/support.h"
#include "tests/support/shardsup.h"
#include "tests/support/wsclient.h"

#define T 5000

static redisContext *R;   /* the shared test redis */

static int setup(void **state)
{
    R = tsup_redis_connect(tsup_env("ODIN_REDIS_URL"));
    return 0;
}

static int teardown(void **state)
{
    redisFree(R);
    return 0;
}

static void make_id(char *out, size_t n, const char *name)
{
    snprintf(out, n, "redis-%s-%d", name, (int)getpid());
}

static void stop_ok(ssup_shard *s)
{
    int st = ssup_shard_stop(s, SIGTERM, 10000);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static int wait_member(redisContext *c, const char *key, const char *member,
                       int want)
{
    return tsup_wait_member(c, key, member, want, 10000);
}

typedef struct card_q { redisContext *c; const char *key; long long want; } card_q;
static int card_is(void *arg)
{
    card_q *q = arg;
    return tsup_redis_int(q->c, "SCARD %s", q->key) == q->want;
}

static int wait_card(redisContext *c, const char *key, long long want)
{
    card_q q = { c, key, want };
    return tsup_wait_until(card_is, &q, 20000);
}

static wsc *sub(int port, const char *type, const char *chans)
{
    int st;
    wsc *c = wsc_connect("127.0.0.1", port, NULL, &st);
    assert_non_null(c);
    if (chans) {
        char m[512];
        snprintf(m, sizeof(m), "{\"type\":\"%s\",\"data\":{\"channels\":%s}}",
                 type, chans);
        assert_int_equal(wsc_send_text(c, m), 0);
        char *ack = NULL;
        assert_int_equal(wsc_recv_text(c, T, &ack, NULL), 1);
        assert_non_null(strstr(ack, "_ack"));
        free(ack);
    }
    return c;
}

static void send_ack(wsc *c, const char *type, const char *chans)
{
    char m[512];
    snprintf(m, sizeof(m), "{\"type\":\"%s\",\"data\":{\"channels\":%s}}", type,
             chans);
    assert_int_equal(wsc_send_text(c, m), 0);
    char *ack = NULL;
    assert_int_equal(wsc_recv_text(c, T, &ack, NULL), 1);
    assert_non_null(strstr(ack, "_ack"));
    free(ack);
}

/* Read pub/sub messages on odin:routes until `want` is seen (1) or timeout. */
static int saw_message(redisContext *ps, const char *want)
{
    for (int i = 0; i < 100; i++) {
        redisReply *r = NULL;
        if (redisGetReply(ps, (void **)&r) != REDIS_OK || !r)
            return 0;
        int hit = r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
                  r->element[2]->type == REDIS_REPLY_STRING &&
                  strcmp(r->element[2]->str, want) == 0;
        freeReplyObject(r);
        if (hit)
            return 1;
    }
    return 0;
}

static void test_routes_follow_subscriptions(void **state)
{
    char id[96], k_route_btc[64], k_route_eth[64], k_rev[160], k_lease[160];
    make_id(id, sizeof(id), "routes");
    snprintf(k_route_btc, sizeof(k_route_btc), "odin:route:BTC");
    snprintf(k_route_eth, sizeof(k_route_eth), "odin:route:ETH");
    snprintf(k_rev, sizeof(k_rev), "odin:shard:%s:tokens", id);
    snprintf(k_lease, sizeof(k_lease), "odin:shard:%s", id);

    /* watch the change channel from before the shard starts */
    redisContext *ps = tsup_redis_connect(tsup_env("ODIN_REDIS_URL"));
    struct timeval tv = { 5, 0 };
    redisSetTimeout(ps, tv);
    redisReply *r = redisCommand(ps, "SUBSCRIBE odin:routes");
    freeReplyObject(r);

    ssup_shard s;
    const char *env[] = { "SHARD_LEASE_TTL=3", NULL };
    assert_int_equal(ssup_shard_start(&s, id, NULL, env), 0);
    char up[160];
    snprintf(up, sizeof(up), "shard:up:%s", id);
    assert_true(saw_message(ps, up));

    /* lease */
    assert_true(wait_member(R, "odin:shards", id, 1));
    r = redisCommand(R, "HGETALL %s", k_lease);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    int have = 0;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const char *f = r->element[i]->str, *v = r->element[i + 1]->str;
        if (!strcmp(f, "endpoint")) {
            char want[600];
            snprintf(want, sizeof(want), "unix:%s", s.sock);
            assert_string_equal(v, want);
            have |= 1;
        } else if (!strcmp(f, "pid")) {
            assert_int_equal(atoi(v), s.pid);
            have |= 2;
        } else if (!strcmp(f, "host")) {
            have |= 4;
        } else if (!strcmp(f, "started_at")) {
            assert_true(atoll(v) > 1600000000000LL);
            have |= 8;
        } else if (!strcmp(f, "connections")) {
            have |= 16;
        } else if (!strcmp(f, "tokens")) {
            have |= 32;
        } else if (!strcmp(f, "ws_addr")) {
            char want[64];
            snprintf(want, sizeof(want), "127.0.0.1:%d", s.port);
            assert_string_equal(v, want);
            have |= 64;
        }
    }
    freeReplyObject(r);
    assert_int_equal(have, 127);
    long long ttl = tsup_redis_int(R, "PTTL %s", k_lease);
    assert_true(ttl > 0 && ttl <= 3000);

    /* first subscriber of BTC (any category) registers it */
    assert_int_equal(tsup_redis_int(R, "EXISTS %s", k_route_btc), 0);
    wsc *a = sub(s.port, "subscribe", "[\"BTC.trade\"]");
    assert_true(wait_member(R, k_route_btc, id, 1));
    assert_true(wait_member(R, k_rev, "BTC", 1));
    assert_true(saw_message(ps, "BTC"));
    wsc *b = sub(s.port, "subscribe", "[\"BTC.analytics\",\"ETH.trade\"]");
    assert_true(wait_member(R, k_route_eth, id, 1));
    assert_true(saw_message(ps, "ETH"));
    assert_int_equal(tsup_redis_int(R, "SCARD %s", k_rev), 2);

    /* BTC stays while any local channel of it has a subscriber */
    send_ack(a, "unsubscribe", "[\"BTC.trade\"]");
    send_ack(b, "unsubscribe", "[\"ETH.trade\"]");
    assert_true(wait_member(R, k_route_eth, id, 0));
    assert_true(saw_message(ps, "ETH"));
    assert_int_equal(tsup_redis_int(R, "SISMEMBER %s %s", k_route_btc, id), 1);
    /* the last one leaving (by disconnecting) removes it */
    wsc_free(b);
    assert_true(wait_member(R, k_route_btc, id, 0));
    assert_true(wait_member(R, k_rev, "BTC", 0));
    assert_true(saw_message(ps, "BTC"));
    assert_int_equal(tsup_redis_int(R, "EXISTS %s", k_rev), 0);

    /* the lease is refreshed (TTL 3 s, heartbeat every 1 s) */
    for (int i = 0; i < 8; i++) {
        poll(NULL, 0, 500);
        assert_true(tsup_redis_int(R, "PTTL %s", k_lease) > 0);
    }
    wsc_free(a);
    stop_ok(&s);
    redisFree(ps);
}

static void test_cleans_previous_life(void **state)
{
    char id[96], k_rev[160], k_lease[160];
    make_id(id, sizeof(id), "prev");
    snprintf(k_rev, sizeof(k_rev), "odin:shard:%s:tokens", id);
    snprintf(k_lease, sizeof(k_lease), "odin:shard:%s", id);
    /* leftovers of a crashed shard with the same id */
    freeReplyObject(redisCommand(R, "SADD odin:route:OLD1 %s other-shard", id));
    freeReplyObject(redisCommand(R, "SADD odin:route:OLD2 %s", id));
    freeReplyObject(redisCommand(R, "SADD %s OLD1 OLD2", k_rev));
    freeReplyObject(redisCommand(R, "HSET %s endpoint unix:/nowhere pid 1", k_lease));
    freeReplyObject(redisCommand(R, "SADD odin:shards %s", id));

    ssup_shard s;
    assert_int_equal(ssup_shard_start(&s, id, NULL, NULL), 0);
    assert_true(wait_member(R, "odin:route:OLD1", id, 0));
    assert_true(wait_member(R, "odin:route:OLD2", id, 0));
    /* other shards' routes are untouched */
    assert_int_equal(tsup_redis_int(R, "SISMEMBER odin:route:OLD1 other-shard"), 1);
    assert_true(wait_card(R, k_rev, 0));
    assert_true(wait_member(R, "odin:shards", id, 1));
    char *ep = NULL;
    for (int i = 0; i < 500; i++) {
        redisReply *r = redisCommand(R, "HGET %s endpoint", k_lease);
        if (r->type == REDIS_REPLY_STRING && strncmp(r->str, "unix:/nowhere", 13) != 0)
            ep = strdup(r->str);
        freeReplyObject(r);
        if (ep)
            break;
        poll(NULL, 0, 10);
    }
    assert_non_null(ep);
    free(ep);
    stop_ok(&s);
}

static void test_sigterm_deregisters(void **state)
{
    char id[96], k_rev[160], k_lease[160];
    make_id(id, sizeof(id), "term");
    snprintf(k_rev, sizeof(k_rev), "odin:shard:%s:tokens", id);
    snprintf(k_lease, sizeof(k_lease), "odin:shard:%s", id);
    ssup_shard s;
    assert_int_equal(ssup_shard_start(&s, id, NULL, NULL), 0);
    wsc *a = sub(s.port, "subscribe", "[\"TERM1.trade\",\"TERM2.social\"]");
    wsc *b = sub(s.port, "subscribe", "[\"TERM1.trade\"]");
    assert_true(wait_member(R, "odin:route:TERM1", id, 1));
    assert_true(wait_member(R, "odin:route:TERM2", id, 1));

    redisContext *ps = tsup_redis_connect(tsup_env("ODIN_REDIS_URL"));
    struct timeval tv = { 5, 0 };
    redisSetTimeout(ps, tv);
    freeReplyObject(redisCommand(ps, "SUBSCRIBE odin:routes"));

    kill(s.pid, SIGTERM);
    assert_int_equal(wsc_wait_close(a, T), 1001);
    assert_int_equal(wsc_wait_close(b, T), 1001);
    int st = ssup_shard_stop(&s, 0, 10000);   /* just wait: one SIGTERM only */
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(tsup_redis_int(R, "SISMEMBER odin:route:TERM1 %s", id), 0);
    assert_int_equal(tsup_redis_int(R, "SISMEMBER odin:route:TERM2 %s", id), 0);
    assert_int_equal(tsup_redis_int(R, "EXISTS %s", k_rev), 0);
    assert_int_equal(tsup_redis_int(R, "EXISTS %s", k_lease), 0);
    assert_int_equal(tsup_redis_int(R, "SISMEMBER odin:shards %s", id), 0);
    char down[160];
    snprintf(down, sizeof(down), "shard:down:%s", id);
    assert_true(saw_message(ps, down));
    assert_int_equal(access(s.sock, F_OK), -1);   /* socket file removed */
    redisFree(ps);
    wsc_free(a);
    wsc_free(b);
}

static void test_redis_restart(void **state)
{
    tsup_redis red;
    assert_int_equal(tsup_redis_start(&red), 0);
    char id[96], k_lease[160];
    make_id(id, sizeof(id), "restart");
    snprintf(k_lease, sizeof(k_lease), "odin:shard:%s", id);
    ssup_shard s;
    const char *env[] = { "REDIS_TIMEOUT=1", NULL };
    assert_int_equal(ssup_shard_start(&s, id, red.url, env), 0);
    wsc *a = sub(s.port, "subscribe", "[\"RR1.trade\",\"RR2.trade\"]");
    redisContext *c = tsup_redis_connect(red.url);
    assert_true(wait_member(c, "odin:route:RR1", id, 1));
    assert_true(wait_member(c, "odin:route:RR2", id, 1));
    redisFree(c);

    tsup_redis_stop(&red);
    assert_true(ssup_wait_metric_eq(s.port, "shard_redis_connected", 0, T));
    /* still serving: subscriptions change while Redis is down */
    send_ack(a, "unsubscribe", "[\"RR2.trade\"]");
    send_ack(a, "subscribe", "[\"RR3.analytics\"]");
    char *body = NULL;
    assert_int_equal(tsup_http_get(s.port, "/health", &body), 200);
    assert_non_null(strstr(body, "\"status\":\"degraded\""));
    assert_non_null(strstr(body, "\"redis\":{\"status\":\"down\""));
    free(body);

    /* Redis comes back empty on the same port: everything is re-registered */
    assert_int_equal(tsup_redis_start_on(&red, red.port), 0);
    c = tsup_redis_connect(red.url);
    assert_true(wait_member(c, "odin:route:RR1", id, 1));
    assert_true(wait_member(c, "odin:route:RR3", id, 1));
    assert_true(wait_member(c, "odin:shards", id, 1));
    assert_int_equal(tsup_redis_int(c, "EXISTS %s", k_lease), 1);
    assert_int_equal(tsup_redis_int(c, "EXISTS odin:route:RR2"), 0);
    char rev[160];
    snprintf(rev, sizeof(rev), "odin:shard:%s:tokens", id);
    assert_true(wait_card(c, rev, 2));
    assert_true(ssup_wait_metric(s.port, "shard_redis_connected", 1, T));
    assert_true(ssup_metric(s.port, "shard_redis_connects_total") >= 2);
    wsc_free(a);
    stop_ok(&s);
    assert_int_equal(tsup_redis_int(c, "EXISTS %s", k_lease), 0);
    redisFree(c);
    tsup_redis_stop(&red);
}

/* Redis down at startup: clients are served, registration happens later. */
static void test_redis_down_at_start(void **state)
{
    tsup_redis red;
    memset(&red, 0, sizeof(red));
    int port = tsup_free_port();
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
    char id[96];
    make_id(id, sizeof(id), "late");
    ssup_shard s;
    assert_int_equal(ssup_shard_start(&s, id, url, NULL), 0);
    wsc *a = sub(s.port, "subscribe", "[\"LATE.trade\"]");
    assert_int_equal(tsup_redis_start_on(&red, port), 0);
    redisContext *c = tsup_redis_connect(red.url);
    assert_true(wait_member(c, "odin:route:LATE", id, 1));
    redisFree(c);
    wsc_free(a);
    stop_ok(&s);
    tsup_redis_stop(&red);
}

/* Redis AUTH: a password in REDIS_URL (percent-encoded) or REDIS_PASSWORD
 * registers; a wrong one is refused with a clear log line; the password is
 * never written to the log. */
static void test_redis_auth(void **state)
{
    tsup_redis red;
    assert_int_equal(tsup_redis_start(&red), 0);
    redisContext *c = tsup_redis_connect(red.url);
    redisReply *rp = redisCommand(c, "CONFIG SET requirepass %s", "s3cr@t-pw");
    assert_non_null(rp);
    assert_int_equal(rp->type, REDIS_REPLY_STATUS);
    freeReplyObject(rp);
    rp = redisCommand(c, "AUTH %s", "s3cr@t-pw");
    freeReplyObject(rp);

    /* the password in the URL, percent-encoded */
    char url[160], id[96];
    snprintf(url, sizeof url, "redis://:s3cr%%40t-pw@127.0.0.1:%d", red.port);
    make_id(id, sizeof id, "auth-url");
    ssup_shard s;
    assert_int_equal(ssup_shard_start(&s, id, url, NULL), 0);
    wsc *a = sub(s.port, "subscribe", "[\"AUTH.trade\"]");
    assert_true(wait_member(c, "odin:route:AUTH", id, 1));
    wsc_free(a);
    assert_true(wait_member(c, "odin:route:AUTH", id, 0));
    pid_t pid = s.pid;   /* ssup_shard_stop forgets it */
    stop_ok(&s);
    assert_true(tsup_log_has("odin-shard", pid, "shard started", NULL));
    assert_false(tsup_log_has("odin-shard", pid, "s3cr", NULL));

    /* REDIS_PASSWORD, with a URL that has none */
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", red.port);
    make_id(id, sizeof id, "auth-env");
    const char *env[] = { "REDIS_PASSWORD=s3cr@t-pw", NULL };
    assert_int_equal(ssup_shard_start(&s, id, url, env), 0);
    a = sub(s.port, "subscribe", "[\"AUTH2.trade\"]");
    assert_true(wait_member(c, "odin:route:AUTH2", id, 1));
    wsc_free(a);
    pid = s.pid;
    stop_ok(&s);
    assert_true(tsup_log_has("odin-shard", pid, "shard started", NULL));
    assert_false(tsup_log_has("odin-shard", pid, "s3cr", NULL));

    /* a wrong password: refused, said in the log, never registered */
    snprintf(url, sizeof url, "redis://app:wrong-pw@127.0.0.1:%d", red.port);
    make_id(id, sizeof id, "auth-bad");
    assert_int_equal(ssup_shard_start(&s, id, url, NULL), 0);
    a = sub(s.port, "subscribe", "[\"AUTH3.trade\"]");
    tsup_log_q q = { "odin-shard", s.pid, "redis AUTH failed", NULL };
    assert_int_equal(tsup_wait_until(tsup_log_has_q, &q, T), 1);
    assert_int_equal(tsup_redis_int(c, "EXISTS %s", "odin:route:AUTH3"), 0);
    wsc_free(a);
    pid = s.pid;
    stop_ok(&s);
    assert_false(tsup_log_has("odin-shard", pid, "wrong-pw", NULL));
    assert_true(tsup_log_has("odin-shard", pid, "redis://app:***@127.0.0.1", NULL));
    redisFree(c);
    tsup_redis_stop(&red);
}

/* Subscribe a to <prefix>0.trade .. <prefix>(n-1).trade, `per` channels a
 * message, each answered with a subscription_ack. */
static void subscribe_range(wsc *a, const char *prefix, int n, int per)
{
    for (int first = 0; first < n; first += per) {
        buf m = { 0 };
        buf_appendf(&m, "{\"type\":\"subscribe\",\"data\":{\"channels\":[");
        for (int i = first; i < first + per && i < n; i++)
            buf_appendf(&m, "%s\"%s%d.trade\"", i > first ? "," : "", prefix, i);
        buf_appendf(&m, "]}}");
        buf_append(&m, "", 1);
        assert_int_equal(wsc_send_text(a, m.data), 0);
        buf_free(&m);
        char *ack = NULL;
        assert_int_equal(wsc_recv_text(a, T, &ack, NULL), 1);
        assert_non_null(strstr(ack, "subscription_ack"));
        free(ack);
    }
}

/* Many tokens at once with a tiny in-flight cap: all get registered, then
 * all removed. */
static void test_many_tokens_bounded(void **state)
{
    char id[96], rev[160];
    make_id(id, sizeof(id), "many");
    snprintf(rev, sizeof(rev), "odin:shard:%s:tokens", id);
    ssup_shard s;
    const char *env[] = { "REDIS_MAX_INFLIGHT=4", "WS_MAX_CHANNELS=2000",
                          "WS_MAX_MESSAGE=65536", "WS_MSG_BURST=1000", NULL };
    assert_int_equal(ssup_shard_start(&s, id, NULL, env), 0);
    int st;
    wsc *a = wsc_connect("127.0.0.1", s.port, NULL, &st);
    assert_non_null(a);
    subscribe_range(a, "MANY", 1500, 150);
    assert_true(wait_card(R, rev, 1500));
    assert_int_equal(tsup_redis_int(R, "SISMEMBER odin:route:MANY0 %s", id), 1);
    assert_int_equal(tsup_redis_int(R, "SISMEMBER odin:route:MANY1499 %s", id), 1);
    assert_true(ssup_wait_metric(s.port, "ws_tokens_active", 1500, T));
    /* a subscription that comes and goes before it is sent costs nothing;
     * whatever happened, the end state is exact */
    wsc_free(a);
    assert_true(wait_card(R, rev, 0));
    assert_int_equal(tsup_redis_int(R, "EXISTS odin:route:MANY7"), 0);
    stop_ok(&s);
}

/* Registration churn is batched (one EVALSHA per REDIS_ROUTE_BATCH tokens),
 * rate-limited (REDIS_ROUTE_RATE) and survives a script-cache flush
 * (NOSCRIPT -> EVAL once); the end state in Redis is exact throughout. */
static void test_batched_registration(void **state)
{
    enum { N = 1000 };
    char id[96], rev[160];
    make_id(id, sizeof id, "batch");
    snprintf(rev, sizeof rev, "odin:shard:%s:tokens", id);
    ssup_shard s;
    const char *env[] = { "REDIS_ROUTE_BATCH=100", "REDIS_ROUTE_RATE=2000",
                          "WS_MAX_CHANNELS=2000", "WS_MAX_MESSAGE=65536", "WS_MSG_BURST=1000",
                          NULL };
    assert_int_equal(ssup_shard_start(&s, id, NULL, env), 0);
    assert_true(ssup_wait_metric(s.port, "shard_redis_connected", 1, T));
    double cmds0 = ssup_metric(s.port, "shard_redis_commands_total");
    int st;
    wsc *a = wsc_connect("127.0.0.1", s.port, NULL, &st);
    assert_non_null(a);
    subscribe_range(a, "BAT", N, 250);
    assert_true(wait_card(R, rev, N));
    assert_int_equal(tsup_redis_int(R, "SISMEMBER odin:route:BAT999 %s", id), 1);
    assert_true(ssup_metric(s.port, "shard_redis_route_updates_total") == N);
    /* 1000 updates in batches of 100: ~10 calls, not 1000 (plus a few lease
     * refreshes and PINGs that happen meanwhile) */
    double cmds = ssup_metric(s.port, "shard_redis_commands_total") - cmds0;
    printf("batched registration: %d route updates in %.0f Redis commands\n", N, cmds);
    assert_true(cmds >= 10 && cmds < 60);
    /* the script is cached under the SHA the shard computed */
    char sha[41];
    schema_sha1_hex(SCHEMA_LUA_ROUTE_BATCH, sha);
    redisReply *rp = redisCommand(R, "SCRIPT EXISTS %s", sha);
    assert_non_null(rp);
    assert_int_equal(rp->type, REDIS_REPLY_ARRAY);
    assert_int_equal(rp->element[0]->integer, 1);
    freeReplyObject(rp);
    /* scripts flushed (as after a Redis restart): the next batch goes as EVAL */
    rp = redisCommand(R, "SCRIPT FLUSH");
    freeReplyObject(rp);
    assert_int_equal(wsc_send_text(a, "{\"type\":\"subscribe\",\"data\":{\"channels\":"
                                      "[\"BATNEW.trade\"]}}"), 0);
    assert_true(wait_member(R, "odin:route:BATNEW", id, 1));
    assert_true(ssup_metric(s.port, "shard_redis_script_loads_total") >= 1);
    wsc_free(a);
    assert_true(wait_card(R, rev, 0));
    stop_ok(&s);
}

static void test_prefix(void **state)
{
    char id[96];
    make_id(id, sizeof(id), "prefix");
    ssup_shard s;
    const char *env[] = { "REDIS_PREFIX=t1:", NULL };
    assert_int_equal(ssup_shard_start(&s, id, NULL, env), 0);
    wsc *a = sub(s.port, "subscribe", "[\"PFX.trade\"]");
    assert_true(wait_member(R, "t1:route:PFX", id, 1));
    assert_true(wait_member(R, "t1:shards", id, 1));
    assert_int_equal(tsup_redis_int(R, "EXISTS odin:route:PFX"), 0);
    wsc_free(a);
    stop_ok(&s);
    assert_int_equal(tsup_redis_int(R, "EXISTS t1:route:PFX"), 0);
}

/* ---- duplicate SHARD_ID: only the lease's `instance` decides --------------- */

/* odin-shard as pid 1 of a PID namespace of its own (unshare, as root),
 * on this host name: what two containers of one image look like. */
static pid_t spawn_ns_shard(const char *id, char *sock, size_t socklen)
{
    static char e_id[160], e_ws[64], e_sock[600], e_url[160];
    char name[64];
    snprintf(name, sizeof name, "ns-%d.sock", tsup_free_port());
    char *path = tsup_tmp(name);
    snprintf(sock, socklen, "%s", path);
    free(path);
    snprintf(e_id, sizeof e_id, "SHARD_ID=%s", id);
    snprintf(e_ws, sizeof e_ws, "WS_ADDR=127.0.0.1:%d", tsup_free_port());
    snprintf(e_sock, sizeof e_sock, "SHARD_SOCKET=%s", sock);
    snprintf(e_url, sizeof e_url, "REDIS_URL=%s", tsup_env("ODIN_REDIS_URL"));
    char *env[] = { e_id, e_ws, e_sock, e_url, "SHARD_LEASE_TTL=2", "LOG_LEVEL=info", NULL };
    char *argv[] = { "/usr/bin/unshare", "--pid", "--kill-child", (char *)tsup_bin("odin-shard"),
                     NULL };
    return tsup_spawn(argv, env);
}

typedef struct field_q { const char *key, *field, *want; int differ; } field_q;

/* 1 if HGET key field equals want (differ = 0) or exists and differs (1). */
static int field_is(void *arg)
{
    field_q *q = arg;
    redisReply *r = redisCommand(R, "HGET %s %s", q->key, q->field);
    int ok = r && r->type == REDIS_REPLY_STRING &&
             (strcmp(r->str, q->want) == 0) != q->differ;
    freeReplyObject(r);
    return ok;
}

static char *hget(const char *key, const char *field)
{
    redisReply *r = redisCommand(R, "HGET %s %s", key, field);
    char *v = r && r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    freeReplyObject(r);
    return v;
}

typedef struct exit_q { pid_t pid; int status, done; } exit_q;
static int exited(void *arg)
{
    exit_q *e = arg;
    if (!e->done && waitpid(e->pid, &e->status, WNOHANG) == e->pid)
        e->done = 1;
    return e->done;
}

/*
 * Two shards with one SHARD_ID, both pid 1 (own PID namespaces) on the same
 * host name: the second refuses to start (exit 1) and the first keeps its
 * lease.  Then the first is SIGKILLed (its lease left behind) and started
 * again: it takes the id once the dead lease lapses, as after any crash.
 * (The decision used to read pid and host: the second took the live
 * lease over.)
 */
static void test_duplicate_same_pid_host(void **state)
{
    if (system("unshare --pid --fork true >/dev/null 2>&1") != 0) {
        fprintf(stderr, "no PID namespaces here (unshare needs root): nothing tested\n");
        skip();
    }
    char id[96], lease[160], socka[600], sockb[600], sockc[600];
    make_id(id, sizeof id, "dup-ns");
    snprintf(lease, sizeof lease, "odin:shard:%s", id);
    exit_q a = { spawn_ns_shard(id, socka, sizeof socka), 0, 0 };
    assert_true(a.pid > 0);
    char ep_a[620];
    snprintf(ep_a, sizeof ep_a, "unix:%s", socka);
    field_q qa = { lease, "endpoint", ep_a, 0 };
    assert_true(tsup_wait_until(field_is, &qa, 15000));
    char *inst_a = hget(lease, "instance"), *pid_a = hget(lease, "pid");
    assert_non_null(inst_a);
    assert_string_equal(pid_a, "1");

    exit_q b = { spawn_ns_shard(id, sockb, sizeof sockb), 0, 0 };
    assert_true(b.pid > 0);
    assert_true(tsup_wait_until(exited, &b, 20000));
    assert_true(WIFEXITED(b.status));
    assert_int_equal(WEXITSTATUS(b.status), 1);
    /* the first still holds its lease, renewed */
    assert_true(field_is(&qa));
    char *inst = hget(lease, "instance");
    assert_string_equal(inst, inst_a);
    free(inst);
    assert_true(tsup_redis_int(R, "PTTL %s", lease) > 0);

    /* a crash and a restart with the same id: the lease left behind is
     * not renewed any more, so the new process claims it once it lapses */
    kill(a.pid, SIGKILL);
    assert_true(tsup_wait_until(exited, &a, 10000));
    exit_q c = { spawn_ns_shard(id, sockc, sizeof sockc), 0, 0 };
    assert_true(c.pid > 0);
    field_q qc = { lease, "instance", inst_a, 1 };
    assert_true(tsup_wait_until(field_is, &qc, 15000));
    char ep_c[620];
    snprintf(ep_c, sizeof ep_c, "unix:%s", sockc);
    field_q qce = { lease, "endpoint", ep_c, 0 };
    assert_true(field_is(&qce));
    assert_false(exited(&c));
    kill(c.pid, SIGKILL);
    assert_true(tsup_wait_until(exited, &c, 10000));
    free(inst_a);
    free(pid_a);
    freeReplyObject(redisCommand(R, "DEL %s %s:tokens", lease, lease));
    freeReplyObject(redisCommand(R, "SREM odin:shards %s", id));
}

/* ---- caps on what clients make the shard store ---------------------------- */

/* Send a subscribe and read the replies up to its ack: the ack's text in
 * *ack, the first error's text (if any) in *err (both malloc'd). */
static void subscribe_reply(wsc *c, const char *chans, char **ack, char **err)
{
    char m[512];
    snprintf(m, sizeof m, "{\"type\":\"subscribe\",\"data\":{\"channels\":%s}}", chans);
    assert_int_equal(wsc_send_text(c, m), 0);
    *ack = *err = NULL;
    while (!*ack) {
        char *msg = NULL;
        assert_int_equal(wsc_recv_text(c, T, &msg, NULL), 1);
        if (strstr(msg, "\"subscription_ack\""))
            *ack = msg;
        else if (strstr(msg, "\"error\"") && !*err)
            *err = msg;
        else
            free(msg);
    }
}

/*
 * SHARD_MAX_TOKENS: a subscription that would add a token past the cap is
 * refused with TOO_MANY_TOKENS while the message's other channels (and
 * other categories of held tokens) subscribe; WS_IP_MAX_CHANNELS counts
 * one address's channels across its connections, given back on
 * unsubscribe and close.  Redis never holds more routes than the cap.
 */
static void test_client_caps(void **state)
{
    char id[96], rev[160];
    make_id(id, sizeof id, "caps");
    snprintf(rev, sizeof rev, "odin:shard:%s:tokens", id);
    const char *env[] = { "SHARD_MAX_TOKENS=3", "WS_IP_MAX_CHANNELS=5", NULL };
    ssup_shard s;
    assert_int_equal(ssup_shard_start(&s, id, NULL, env), 0);
    int st;
    wsc *a = wsc_connect("127.0.0.1", s.port, NULL, &st);
    assert_non_null(a);
    char *ack, *err;
    subscribe_reply(a, "[\"CAP1.trade\",\"CAP2.trade\",\"CAP3.trade\",\"CAP4.trade\","
                       "\"CAP1.social\"]", &ack, &err);
    assert_non_null(err);
    assert_non_null(strstr(err, "\"code\":\"TOO_MANY_TOKENS\""));
    assert_non_null(strstr(err, "CAP4.trade"));
    assert_null(strstr(ack, "CAP4.trade"));
    assert_non_null(strstr(ack, "\"CAP1.social\""));
    assert_non_null(strstr(ack, "\"count\":4"));
    free(ack);
    free(err);
    assert_true(wait_card(R, rev, 3));
    assert_int_equal(tsup_redis_int(R, "EXISTS odin:route:CAP4"), 0);
    assert_int_equal(ssup_metric(s.port, "ws_token_limit_rejections_total"), 1);

    /* a second connection of the same address: one slot left of 5 */
    wsc *b = wsc_connect("127.0.0.1", s.port, NULL, &st);
    assert_non_null(b);
    subscribe_reply(b, "[\"CAP1.liquidity\",\"CAP2.liquidity\"]", &ack, &err);
    assert_non_null(err);
    assert_non_null(strstr(err, "\"code\":\"TOO_MANY_SUBSCRIPTIONS\""));
    assert_non_null(strstr(ack, "\"CAP1.liquidity\""));
    assert_null(strstr(ack, "CAP2.liquidity"));
    free(ack);
    free(err);
    assert_int_equal(ssup_metric(s.port, "ws_ip_channel_rejections_total"), 1);
    /* given back on unsubscribe ... */
    send_ack(a, "unsubscribe", "[\"CAP2.trade\"]");
    subscribe_reply(b, "[\"CAP2.liquidity\"]", &ack, &err);
    assert_null(err);
    assert_non_null(strstr(ack, "\"CAP2.liquidity\""));
    free(ack);
    /* ... and on close, as do tokens left without a subscriber (CAP3) */
    wsc_free(a);
    wsc *c = NULL;
    for (int i = 0; i < 200 && !c; i++) {
        c = wsc_connect("127.0.0.1", s.port, NULL, &st);
        subscribe_reply(c, "[\"CAP5.trade\",\"CAP1.trade\"]", &ack, &err);
        int both = !err && strstr(ack, "\"count\":2");
        free(ack);
        free(err);
        if (!both) {      /* a's close not processed yet: wait for it */
            wsc_free(c);
            c = NULL;
            poll(NULL, 0, 20);
        }
    }
    assert_non_null(c);
    assert_true(wait_card(R, rev, 3));
    wsc_free(b);
    wsc_free(c);
    stop_ok(&s);
}

/* A router's sweep of this id runs (its marker, default layout): the
 * shard's claim waits until the marker is gone, so it never races the
 * sweep's route removals. */
static int lease_exists(void *arg)
{
    return tsup_redis_int(R, "EXISTS %s", (const char *)arg) == 1;
}

static void test_claim_waits_for_sweep(void **state)
{
    char id[96], lease[160], mark[160];
    make_id(id, sizeof id, "swmark");
    snprintf(lease, sizeof lease, "odin:shard:%s", id);
    snprintf(mark, sizeof mark, "odin:shard:%s:sweep", id);
    freeReplyObject(redisCommand(R, "SET %s some-router PX 2000", mark));
    uint64_t t0 = clock_mono_ms();
    const char *env[] = { "SHARD_LEASE_TTL=1.5", NULL };
    ssup_shard s;
    assert_int_equal(ssup_shard_start(&s, id, NULL, env), 0);
    assert_true(tsup_wait_until(lease_exists, lease, 15000));
    long waited = (long)(clock_mono_ms() - t0);
    fprintf(stderr, "lease written %ld ms after a 2000 ms sweep marker\n", waited);
    assert_true(waited >= 1950);
    assert_int_equal(tsup_redis_int(R, "EXISTS %s", mark), 0);
    stop_ok(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_follow_subscriptions),
        cmocka_unit_test(test_cleans_previous_life),
        cmocka_unit_test(test_sigterm_deregisters),
        cmocka_unit_test(test_redis_restart),
        cmocka_unit_test(test_redis_down_at_start),
        cmocka_unit_test(test_redis_auth),
        cmocka_unit_test(test_many_tokens_bounded),
        cmocka_unit_test(test_batched_registration),
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_duplicate_same_pid_host),
        cmocka_unit_test(test_client_caps),
        cmocka_unit_test(test_claim_waits_for_sweep),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
