/*
 * odin-router against the real devbroker and redis-server, with fake shards
 * in this process: targeted routing, route changes via odin:routes, the
 * negative cache, broadcast key, broadcast mode, HELLO version mismatch,
 * /health, and bad records being counted, skipped and committed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "proto/frame.h"
#include "tests/support/rtsup.h"
#include "tests/support/support.h"
#include "tests/support/cases.h"

#define T_WAIT 30000

static const char *brokers(void) { return tsup_env("ODIN_KAFKA_BROKERS"); }

/* Create the topic (auto-create on produce) so the router's subscription
 * sees it at once. */
static void create_topic(rtsup_producer *p, const char *topic)
{
    assert_int_equal(rtsup_create_topic(p, topic), 0);
}

static void produce_n(rtsup_producer *p, const char *topic, const char *key, int n)
{
    for (int i = 0; i < n; i++) {
        char v[128];
        int l = snprintf(v, sizeof v, "{\"type\":\"TRADE_EXECUTED\",\"data\":{\"i\":%d}}", i);
        rtsup_produce(p, topic, 0, key, strlen(key), v, (size_t)l);
    }
    assert_int_equal(rtsup_producer_flush(p), 0);
}

static double metric(int port, const char *s) { return rtsup_metric(port, s); }

static int flush_redis(void **state)
{
    redisContext *c = tsup_redis_connect(tsup_env("ODIN_REDIS_URL"));
    redisReply *r = redisCommand(c, "FLUSHALL");
    assert_non_null(r);
    freeReplyObject(r);
    redisFree(c);
    return 0;
}

static void test_targeted_routes_changes_negative_cache(void **state)
{
    redisContext *rc = tsup_redis_connect(tsup_env("ODIN_REDIS_URL"));
    rtsup_shard *a = rtsup_shard_start(rtsup_unique("shA"));
    rtsup_shard *b = rtsup_shard_start(rtsup_unique("shB"));
    rtsup_shard *x = rtsup_shard_start(rtsup_unique("shX"));
    x->hello_version = 99;   /* speaks another protocol version */
    rtsup_shard_register(a, rc, 0);
    rtsup_shard_register(b, rc, 0);
    rtsup_shard_register(x, rc, 0);
    char ta[64], tb[64], tn[64], tx[64];
    snprintf(ta, sizeof ta, "TA%d", (int)getpid());
    snprintf(tb, sizeof tb, "TB%d", (int)getpid());
    snprintf(tn, sizeof tn, "TN%d", (int)getpid());
    snprintf(tx, sizeof tx, "TX%d", (int)getpid());
    rtsup_route(rc, "add", a->id, ta);
    rtsup_route(rc, "add", b->id, tb);
    rtsup_route(rc, "add", x->id, tx);

    rtsup_producer *p = rtsup_producer_new(brokers());
    rtsup_topic t;
    assert_int_equal(rtsup_topic_new(&t, p, "rt-targeted", "trade"), 0);
    const char *topic = t.name, *topics = t.topics_env, *group = t.group_env;

    rtsup_router r;
    const char *env[] = { topics, group, "KAFKA_OFFSET_RESET=earliest",
                          "SHARD_RECONNECT_MAX_MS=200", NULL };
    assert_int_equal(rtsup_router_start(&r, tsup_env("ODIN_REDIS_URL"), env), 0);
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_shards_connected", 2, T_WAIT));
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_shards_known", 3, T_WAIT));

    /* 1. each record reaches only the shard registered for its token */
    produce_n(p, topic, ta, 10);
    produce_n(p, topic, tb, 7);
    produce_n(p, topic, tx, 3);    /* its shard is not connected: dropped */
    rtsup_shard *const ab[] = { a, b, NULL };
    assert_true(rtsup_marker(p, topic, 0, ab, 1, T_WAIT));
    assert_int_equal(rtsup_shard_count_token(a, ta), 10);
    assert_int_equal(rtsup_shard_count_token(a, tb), 0);
    assert_int_equal(rtsup_shard_count_token(b, tb), 7);
    assert_int_equal(rtsup_shard_count_token(b, ta), 0);
    assert_int_equal(rtsup_shard_count(x), 0);
    assert_true(metric(r.http_port, "router_drops_total{reason=\"shard_down\"}") >= 3);
    rtsup_rec rec;
    for (size_t i = 0; rtsup_shard_get(a, i, &rec); i++) {
        if (strcmp(rec.token, ta) == 0) {
            assert_string_equal(rec.category, "trade");
            assert_int_equal(rec.mode, FRAME_MODE_TARGETED);
            assert_int_equal(rec.flags, 0);
            assert_int_equal(rec.partition, 0);
            assert_non_null(strstr(rec.value, "TRADE_EXECUTED"));
        } else if (strcmp(rec.token, "*") == 0) {
            assert_int_equal(rec.flags, FRAME_REC_ALL_CLIENTS);
        }
        rtsup_rec_free(&rec);
    }
    /* the version-mismatch shard was refused and retried */
    assert_true(x->accepts >= 1);
    assert_int_equal(metric(r.http_port, "router_shards_connected"), 2);

    /* 2. a token no shard holds costs one lookup, then none */
    produce_n(p, topic, tn, 1);
    assert_true(rtsup_marker(p, topic, 0, ab, 2, T_WAIT));
    double lookups = metric(r.http_port, "router_redis_lookups_total");
    double misses = metric(r.http_port, "router_cache_misses_total");
    double hits = metric(r.http_port, "router_cache_hits_total");
    assert_true(lookups >= 1);
    for (int round = 0; round < 5; round++)
        produce_n(p, topic, tn, 10);
    assert_true(rtsup_marker(p, topic, 0, ab, 3, T_WAIT));
    assert_int_equal(metric(r.http_port, "router_redis_lookups_total"), lookups);
    assert_int_equal(metric(r.http_port, "router_cache_misses_total"), misses);
    assert_true(metric(r.http_port, "router_cache_hits_total") >= hits + 50);
    assert_int_equal(rtsup_shard_count_token(a, tn) + rtsup_shard_count_token(b, tn), 0);

    /* 3. route change through odin:routes, no restart */
    double inv = metric(r.http_port, "router_route_invalidations_total");
    rtsup_route(rc, "del", a->id, ta);
    rtsup_route(rc, "add", b->id, ta);
    assert_true(rtsup_wait_metric(r.http_port, "router_route_invalidations_total", inv + 2,
                                  T_WAIT));
    produce_n(p, topic, ta, 4);
    assert_true(rtsup_marker(p, topic, 0, ab, 4, T_WAIT));
    assert_int_equal(rtsup_shard_count_token(a, ta), 10);
    assert_int_equal(rtsup_shard_count_token(b, ta), 4);
    /* a subscriber for the unrouted token appears: invalidates its negative entry */
    rtsup_route(rc, "add", a->id, tn);
    assert_true(rtsup_wait_metric(r.http_port, "router_route_invalidations_total", inv + 3,
                                  T_WAIT));
    produce_n(p, topic, tn, 2);
    assert_true(rtsup_marker(p, topic, 0, ab, 5, T_WAIT));
    assert_int_equal(rtsup_shard_count_token(a, tn), 2);

    /* 4. /health */
    char *body = NULL;
    assert_int_equal(tsup_http_get(r.http_port, "/health", &body), 200);
    assert_non_null(body);
    assert_non_null(strstr(body, "\"status\":\"degraded\""));   /* shX not connected */
    assert_non_null(strstr(body, "\"kafka\":{\"status\":\"ok\""));
    assert_non_null(strstr(body, "\"redis\":{\"status\":\"ok\""));
    assert_non_null(strstr(body, "\"connected\":2,\"known\":3"));
    assert_non_null(strstr(body, "\"consumer_lag\":"));
    free(body);
    assert_true(metric(r.http_port, "router_dispatch_total{mode=\"targeted\"}") >= 30);
    assert_true(metric(r.http_port, "router_batches_total") >= 1);
    assert_true(metric(r.http_port, "router_redis_lookup_seconds_count") >= 1);

    int st = rtsup_router_stop(&r);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    rtsup_producer_free(p);
    rtsup_shard_deregister(a, rc);
    rtsup_shard_deregister(b, rc);
    rtsup_shard_deregister(x, rc);
    rtsup_shard_free(a);
    rtsup_shard_free(b);
    rtsup_shard_free(x);
    redisFree(rc);
}

/* Send raw bytes to 127.0.0.1:port and return the HTTP status of the
 * answer (0 if the connection closed without one within timeout_ms). */
static int raw_http(int port, const char *req, size_t len, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, req + off, len - off);
        if (w <= 0)
            break;   /* the router may close early: the status says why */
        off += (size_t)w;
    }
    char b[256] = { 0 };
    size_t got = 0;
    struct pollfd pf = { fd, POLLIN, 0 };
    while (got < sizeof b - 1 && poll(&pf, 1, timeout_ms) == 1) {
        ssize_t n = read(fd, b + got, sizeof b - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    int status = 0;
    if (sscanf(b, "HTTP/1.%*d %d", &status) != 1)
        status = 0;
    return status;
}

/* Router HTTP: GET only, a small head, no body, a timeout (libevent's
 * defaults took any method and an unbounded chunked body). */
static void test_http_limits(void **state)
{
    char group[128];
    snprintf(group, sizeof group, "KAFKA_GROUP=%s", rtsup_unique("g"));
    const char *env[] = { group, NULL };
    rtsup_router r;
    assert_int_equal(rtsup_router_start(&r, tsup_env("ODIN_REDIS_URL"), env), 0);
    const char *get = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int st = raw_http(r.http_port, get, strlen(get), 5000);
    assert_true(st == 200 || st == 503);
    const char *post = "POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "10\r\n0123456789abcdef\r\n";
    st = raw_http(r.http_port, post, strlen(post), 5000);
    assert_true(st == 405 || st == 413);   /* the body is refused first */
    const char *del = "DELETE /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    st = raw_http(r.http_port, del, strlen(del), 5000);
    assert_true(st == 405 || st == 501);   /* libevent answers 501 Not Implemented */
    const char *body = "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 64\r\n\r\n"
                       "0123456789012345678901234567890123456789012345678901234567890123";
    assert_int_equal(raw_http(r.http_port, body, strlen(body), 5000), 413);
    /* a 32 KiB header: refused, not buffered */
    size_t big = 32768;
    char *hdr = malloc(big + 128);
    int n = snprintf(hdr, 128, "GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: ");
    memset(hdr + n, 'a', big);
    memcpy(hdr + n + big, "\r\n\r\n", 4);
    st = raw_http(r.http_port, hdr, (size_t)n + big + 4, 5000);
    free(hdr);
    assert_true(st == 400 || st == 413 || st == 431 || st == 0);
    assert_true(st != 200);
    /* the router is still serving */
    st = raw_http(r.http_port, get, strlen(get), 5000);
    assert_true(st == 200 || st == 503);
    int rst = rtsup_router_stop(&r);
    assert_true(WIFEXITED(rst));
    assert_int_equal(WEXITSTATUS(rst), 0);
}

static void test_broadcast_mode(void **state)
{
    redisContext *rc = tsup_redis_connect(tsup_env("ODIN_REDIS_URL"));
    rtsup_shard *a = rtsup_shard_start(rtsup_unique("bcA"));
    rtsup_shard *b = rtsup_shard_start(rtsup_unique("bcB"));
    rtsup_shard_register(a, rc, 0);
    rtsup_shard_register(b, rc, 0);
    rtsup_route(rc, "add", a->id, "ONLYA");

    rtsup_producer *p = rtsup_producer_new(brokers());
    rtsup_topic t;
    assert_int_equal(rtsup_topic_new(&t, p, "rt-bcast", "social"), 0);
    const char *topic = t.name, *topics = t.topics_env, *group = t.group_env;
    rtsup_router r;
    const char *env[] = { topics, group, "KAFKA_OFFSET_RESET=earliest",
                          "DISPATCH_MODE=broadcast", NULL };
    assert_int_equal(rtsup_router_start(&r, tsup_env("ODIN_REDIS_URL"), env), 0);
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_shards_connected", 2, T_WAIT));
    produce_n(p, topic, "ONLYA", 5);
    produce_n(p, topic, "NOBODY", 3);
    rtsup_shard *const ab[] = { a, b, NULL };
    assert_true(rtsup_marker(p, topic, 0, ab, 1, T_WAIT));
    assert_int_equal(rtsup_shard_count_token(a, "ONLYA"), 5);
    assert_int_equal(rtsup_shard_count_token(b, "ONLYA"), 5);
    assert_int_equal(rtsup_shard_count_token(b, "NOBODY"), 3);
    rtsup_rec rec;
    assert_true(rtsup_shard_get(b, 0, &rec));
    assert_int_equal(rec.mode, FRAME_MODE_BROADCAST);
    assert_string_equal(rec.category, "social");
    rtsup_rec_free(&rec);
    assert_true(metric(r.http_port, "router_dispatch_total{mode=\"broadcast\"}") >= 9);
    assert_int_equal(metric(r.http_port, "router_dispatch_total{mode=\"targeted\"}"), 0);
    assert_int_equal(metric(r.http_port, "router_redis_lookups_total"), 0);
    int st = rtsup_router_stop(&r);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    rtsup_producer_free(p);
    rtsup_shard_deregister(a, rc);
    rtsup_shard_deregister(b, rc);
    rtsup_shard_free(a);
    rtsup_shard_free(b);
    redisFree(rc);
}

typedef struct commit_arg {
    const char *group, *topic;
    int64_t want;
} commit_arg;

static int committed_reached(void *arg)
{
    commit_arg *c = arg;
    return rtsup_committed(brokers(), c->group, c->topic, 0) >= c->want;
}

static void test_bad_records(void **state)
{
    redisContext *rc = tsup_redis_connect(tsup_env("ODIN_REDIS_URL"));
    rtsup_shard *a = rtsup_shard_start(rtsup_unique("badA"));
    rtsup_shard_register(a, rc, 0);
    rtsup_route(rc, "add", a->id, "GOOD");

    rtsup_producer *p = rtsup_producer_new(brokers());
    char base[96], good[128], other[128], topics[400], group[128], gname[96];
    snprintf(base, sizeof base, "%s", rtsup_unique("rtbad"));
    snprintf(good, sizeof good, "%s.good", base);
    snprintf(other, sizeof other, "%s.other", base);
    /* the regex also matches .other, which has no category: unknown topic */
    snprintf(topics, sizeof topics, "KAFKA_TOPICS=%s=trade,^%s\\..*", good, base);
    snprintf(gname, sizeof gname, "%s", rtsup_unique("g"));
    snprintf(group, sizeof group, "KAFKA_GROUP=%s", gname);
    create_topic(p, good);
    create_topic(p, other);
    rtsup_router r;
    const char *env[] = { topics, group, "KAFKA_OFFSET_RESET=earliest", "MAX_RECORD_BYTES=1024",
                          "KAFKA_COMMIT_INTERVAL_MS=100", NULL };
    assert_int_equal(rtsup_router_start(&r, tsup_env("ODIN_REDIS_URL"), env), 0);
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_shards_connected", 1, T_WAIT));

    rtsup_produce(p, good, 0, NULL, 0, "{}", 2);                  /* empty key */
    rtsup_produce(p, good, 0, "GOOD", 4, "{not json", 9);         /* invalid JSON */
    rtsup_produce(p, good, 0, "GOOD", 4, NULL, 0);                /* no value */
    char big[2000];
    memset(big, 'x', sizeof big);
    big[0] = '"';
    big[sizeof big - 1] = '"';
    rtsup_produce(p, good, 0, "GOOD", 4, big, sizeof big);        /* oversized */
    rtsup_produce(p, good, 0, "BAD KEY", 7, "{}", 2);             /* bad key */
    produce_n(p, good, "GOOD", 3);
    rtsup_shard *const aa[] = { a, NULL };
    assert_true(rtsup_marker(p, good, 0, aa, 1, T_WAIT));
    assert_int_equal(rtsup_shard_count_token(a, "GOOD"), 3);
    assert_int_equal(rtsup_shard_count_token(a, "BAD KEY"), 0);
    assert_true(rtsup_wait_metric(r.http_port,
                                  "router_records_invalid_total{reason=\"unknown_topic\"}", 1,
                                  T_WAIT));
    assert_int_equal(metric(r.http_port, "router_records_invalid_total{reason=\"empty_key\"}"), 1);
    assert_int_equal(metric(r.http_port, "router_records_invalid_total{reason=\"invalid_json\"}"), 2);
    assert_int_equal(metric(r.http_port, "router_records_invalid_total{reason=\"oversized\"}"), 1);
    assert_int_equal(metric(r.http_port, "router_records_invalid_total{reason=\"bad_key\"}"), 1);
    assert_int_equal(metric(r.http_port,
                            "router_records_invalid_total{reason=\"unknown_topic\"}"), 1);

    /* skipped records' offsets are stored: the committed position covers the
     * marker, which is the last record of partition 0 */
    const int32_t *parts;
    const int64_t *offs;
    size_t n = rtsup_producer_delivered(p, &parts, &offs);
    int64_t last = -1;
    for (size_t i = 0; i < n; i++)
        if (parts[i] == 0 && offs[i] > last)
            last = offs[i];   /* .other's record has a lower offset on its own topic */
    commit_arg ca = { gname, good, last + 1 };
    assert_true(tsup_wait_until(committed_reached, &ca, T_WAIT));

    int st = rtsup_router_stop(&r);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    rtsup_producer_free(p);
    rtsup_shard_deregister(a, rc);
    rtsup_shard_free(a);
    redisFree(rc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_targeted_routes_changes_negative_cache, flush_redis),
        cmocka_unit_test_setup(test_broadcast_mode, flush_redis),
        cmocka_unit_test_setup(test_bad_records, flush_redis),
        cmocka_unit_test_setup(test_http_limits, flush_redis),
    };
    return TSUP_RUN_CASES("router_targeted", tests, NULL, NULL);
}
