/*
 * test_slow_shard_does_not_delay_others counts, against a 3 s
 * SHARD_STALL_TIMEOUT_MS, what a paused fake shard got or the router
 * dropped (it failed in 2 of 5 runs beside other tests, once alone, under
 * load): tools/run-tests.sh runs it with no other test beside it, the other
 * cases side by side:
 * odin-test: part slow alone test_slow_shard_does_not_delay_others
 * odin-router under faults: Redis killed mid-run (fallback broadcast, then
 * targeted again after a restart on the same port), a shard that stops
 * reading (only its own records are dropped), and a dead shard whose lease
 * expired (routes cleaned through the reverse index, never sent to), and
 * KAFKA_EVICT_PREVIOUS against a broker that speaks none of the request
 * versions the router implements (logged, skipped, the router runs on).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/frame.h"
#include "tests/support/cases.h"
#include "tests/support/rtsup.h"
#include "tests/support/support.h"

#define T_WAIT 30000

static const char *brokers(void) { return tsup_env("ODIN_KAFKA_BROKERS"); }

/* partition -2: spread over partitions 0-3 (the devbroker keeps only 5 MiB
 * per partition; bulk traffic must not push unread records out) */
static void produce_np(rtsup_producer *p, const char *topic, const char *key, int n,
                       size_t value_bytes, int partition)
{
    char *v = malloc(value_bytes + 64);
    for (int i = 0; i < n; i++) {
        int l = snprintf(v, 64, "{\"i\":%d,\"pad\":\"", i);
        size_t len = (size_t)l;
        while (len + 2 < value_bytes)
            v[len++] = 'x';
        v[len++] = '"';
        v[len++] = '}';
        rtsup_produce(p, topic, partition == -2 ? i % 4 : partition, key, strlen(key), v,
                      len);
    }
    free(v);
    assert_int_equal(rtsup_producer_flush(p), 0);
}

static void produce_n(rtsup_producer *p, const char *topic, const char *key, int n,
                      size_t value_bytes)
{
    produce_np(p, topic, key, n, value_bytes, 0);
}

static void flush_redis(void)
{
    redisContext *c = tsup_redis_connect(tsup_env("ODIN_REDIS_URL"));
    redisReply *r = redisCommand(c, "FLUSHALL");
    assert_non_null(r);
    freeReplyObject(r);
    redisFree(c);
}

static double metric(int port, const char *s) { return rtsup_metric(port, s); }

static void test_redis_down_fallback_and_back(void **state)
{
    tsup_redis red;
    assert_int_equal(tsup_redis_start(&red), 0);
    redisContext *rc = tsup_redis_connect(red.url);
    rtsup_shard *a = rtsup_shard_start(rtsup_unique("fbA"));
    rtsup_shard *b = rtsup_shard_start(rtsup_unique("fbB"));
    rtsup_shard_register(a, rc, 0);
    rtsup_shard_register(b, rc, 0);
    rtsup_route(rc, "add", a->id, "TOKA");

    rtsup_producer *p = rtsup_producer_new(brokers());
    rtsup_topic t;
    assert_int_equal(rtsup_topic_new(&t, p, "rt-fallback", "trade"), 0);
    const char *topic = t.name, *topics = t.topics_env, *group = t.group_env;
    rtsup_router r;
    const char *env[] = { topics, group, "KAFKA_OFFSET_RESET=earliest",
                          "REDIS_RECONNECT_MAX_MS=200", "REDIS_TIMEOUT_MS=500", NULL };
    assert_int_equal(rtsup_router_start(&r, red.url, env), 0);
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_shards_connected", 2, T_WAIT));
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_redis_connected", 1, T_WAIT));
    rtsup_shard *const ab[] = { a, b, NULL };

    /* targeted */
    produce_n(p, topic, "TOKA", 5, 50);
    assert_true(rtsup_marker(p, topic, 0, ab, 1, T_WAIT));
    assert_int_equal(rtsup_shard_count_token(a, "TOKA"), 5);
    assert_int_equal(rtsup_shard_count_token(b, "TOKA"), 0);

    /* Redis dies: every record goes to every shard known live */
    tsup_redis_stop(&red);
    redisFree(rc);
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_redis_connected", 0, T_WAIT));
    produce_n(p, topic, "TOKA", 6, 50);
    assert_true(rtsup_marker(p, topic, 0, ab, 2, T_WAIT));
    assert_int_equal(rtsup_shard_count_token(a, "TOKA"), 11);
    assert_int_equal(rtsup_shard_count_token(b, "TOKA"), 6);
    assert_true(metric(r.http_port, "router_dispatch_total{mode=\"fallback\"}") >= 6);
    assert_int_equal(metric(r.http_port, "router_fallback_active"), 1);
    char *body = NULL;
    assert_int_equal(tsup_http_get(r.http_port, "/health", &body), 200);
    assert_non_null(strstr(body, "\"status\":\"degraded\""));
    assert_non_null(strstr(body, "\"mode\":\"fallback\""));
    free(body);
    rtsup_rec rec;
    int seen_fallback = 0;
    for (size_t i = 0; rtsup_shard_get(b, i, &rec); i++) {
        if (strcmp(rec.token, "TOKA") == 0) {
            assert_int_equal(rec.mode, FRAME_MODE_BROADCAST);
            seen_fallback = 1;
        }
        rtsup_rec_free(&rec);
    }
    assert_true(seen_fallback);

    /* Redis is back (empty): shards re-register, the router returns to
     * targeted dispatch with a flushed cache */
    assert_int_equal(tsup_redis_start_on(&red, red.port), 0);
    rc = tsup_redis_connect(red.url);
    rtsup_shard_register(a, rc, 0);
    rtsup_shard_register(b, rc, 0);
    rtsup_route(rc, "add", a->id, "TOKA");
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_redis_connected", 1, T_WAIT));
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_shards_connected", 2, T_WAIT));
    assert_true(metric(r.http_port, "router_redis_reconnects_total") >= 2);
    double targeted = metric(r.http_port, "router_dispatch_total{mode=\"targeted\"}");
    produce_n(p, topic, "TOKA", 7, 50);
    assert_true(rtsup_marker(p, topic, 0, ab, 3, T_WAIT));
    assert_int_equal(rtsup_shard_count_token(a, "TOKA"), 18);
    assert_int_equal(rtsup_shard_count_token(b, "TOKA"), 6);
    assert_true(metric(r.http_port, "router_dispatch_total{mode=\"targeted\"}") >= targeted + 7);
    assert_int_equal(metric(r.http_port, "router_fallback_active"), 0);

    int st = rtsup_router_stop(&r);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    rtsup_producer_free(p);
    rtsup_shard_free(a);
    rtsup_shard_free(b);
    redisFree(rc);
    tsup_redis_stop(&red);
}

static void test_slow_shard_does_not_delay_others(void **state)
{
    flush_redis();
    redisContext *rc = tsup_redis_connect(tsup_env("ODIN_REDIS_URL"));
    rtsup_shard *slow = rtsup_shard_start(rtsup_unique("slow"));
    rtsup_shard *fast = rtsup_shard_start(rtsup_unique("fast"));
    rtsup_shard_register(slow, rc, 0);
    rtsup_shard_register(fast, rc, 0);
    rtsup_route(rc, "add", slow->id, "SLOWTOK");
    rtsup_route(rc, "add", fast->id, "FASTTOK");

    rtsup_producer *p = rtsup_producer_new(brokers());
    rtsup_topic t;
    assert_int_equal(rtsup_topic_new(&t, p, "rt-slow", "trade"), 0);
    const char *topic = t.name, *topics = t.topics_env, *group = t.group_env;
    rtsup_router r;
    const char *env[] = { topics, group, "KAFKA_OFFSET_RESET=earliest",
                          "SHARD_QUEUE_BYTES=262144", "SHARD_STALL_TIMEOUT_MS=3000",
                          "SHARD_RECONNECT_MAX_MS=200", NULL };
    assert_int_equal(rtsup_router_start(&r, tsup_env("ODIN_REDIS_URL"), env), 0);
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_shards_connected", 2, T_WAIT));

    slow->paused = 1;   /* stops reading: its socket buffer, then its queue fill */
    /* ~3 MB for the slow shard (far beyond its socket buffer and 256 KiB
     * queue), interleaved with as much for the fast shard.  Each round waits
     * for the fast shard to have everything so far: it keeps getting its
     * records while the slow one is stuck (and the test's own reader thread
     * is never the bottleneck). */
    for (int round = 0; round < 30; round++) {
        produce_np(p, topic, "SLOWTOK", 100, 1000, -2);
        produce_np(p, topic, "FASTTOK", 100, 1000, -2);
        assert_true(rtsup_wait_count(fast, "FASTTOK", (size_t)(round + 1) * 100, T_WAIT));
    }
    /* (normally its queue filled up first: queue_full drops) */
    /* the stalled shard is disconnected; what it had queued is dropped and
     * counted, so every batch completes and its offsets are stored */
    assert_true(rtsup_wait_metric(r.http_port, "router_drops_total{reason=\"stalled\"}", 1,
                                  T_WAIT));
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_pending_segments", 0, T_WAIT));
    assert_true(metric(r.http_port, "router_offsets_stored_total") >= 1);
    assert_int_equal(rtsup_shard_count_token(fast, "SLOWTOK"), 0);
    double drops = metric(r.http_port, "router_drops_total{reason=\"queue_full\"}") +
                   metric(r.http_port, "router_drops_total{reason=\"stalled\"}");
    /* every record for the slow shard was delivered or counted as dropped */
    assert_true(drops + (double)rtsup_shard_count_token(slow, "SLOWTOK") >= 3000);
    assert_int_equal(rtsup_shard_count_token(fast, "FASTTOK"), 3000);

    /* it recovers: reading again, it is reconnected and gets new records */
    slow->paused = 0;
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_shards_connected", 2, T_WAIT));
    size_t before = rtsup_shard_count_token(slow, "SLOWTOK");
    produce_n(p, topic, "SLOWTOK", 3, 100);
    rtsup_shard *const both[] = { slow, fast, NULL };
    assert_true(rtsup_marker(p, topic, 0, both, 1, T_WAIT));
    assert_true(rtsup_shard_count_token(slow, "SLOWTOK") >= before + 3);

    int st = rtsup_router_stop(&r);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    rtsup_producer_free(p);
    rtsup_shard_deregister(slow, rc);
    rtsup_shard_deregister(fast, rc);
    rtsup_shard_free(slow);
    rtsup_shard_free(fast);
    redisFree(rc);
}

typedef struct dead_arg {
    redisContext *c;
    const char *id, *tok1, *tok2;
} dead_arg;

static int cleaned(void *arg)
{
    dead_arg *d = arg;
    return tsup_redis_int(d->c, "SISMEMBER odin:route:%s %s", d->tok1, d->id) == 0 &&
           tsup_redis_int(d->c, "SISMEMBER odin:route:%s %s", d->tok2, d->id) == 0 &&
           tsup_redis_int(d->c, "SISMEMBER odin:shards %s", d->id) == 0 &&
           tsup_redis_int(d->c, "EXISTS odin:shard:%s:tokens", d->id) == 0;
}

static void test_dead_shard_routes_cleaned(void **state)
{
    flush_redis();
    redisContext *rc = tsup_redis_connect(tsup_env("ODIN_REDIS_URL"));
    rtsup_shard *dead = rtsup_shard_start(rtsup_unique("dead"));
    rtsup_shard *live = rtsup_shard_start(rtsup_unique("live"));
    rtsup_shard_register(live, rc, 0);
    rtsup_shard_register(dead, rc, 60000);
    char t1[64], t2[64];
    snprintf(t1, sizeof t1, "DT1_%d", (int)getpid());
    snprintf(t2, sizeof t2, "DT2_%d", (int)getpid());
    rtsup_route(rc, "add", dead->id, t1);
    rtsup_route(rc, "add", dead->id, t2);
    rtsup_route(rc, "add", live->id, t2);

    rtsup_producer *p = rtsup_producer_new(brokers());
    rtsup_topic t;
    assert_int_equal(rtsup_topic_new(&t, p, "rt-dead", "trade"), 0);
    const char *topic = t.name, *topics = t.topics_env, *group = t.group_env;
    rtsup_router r;
    const char *env[] = { topics, group, "KAFKA_OFFSET_RESET=earliest", NULL };
    assert_int_equal(rtsup_router_start(&r, tsup_env("ODIN_REDIS_URL"), env), 0);
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_shards_connected", 2, T_WAIT));
    produce_n(p, topic, t1, 2, 40);
    rtsup_shard *const both[] = { dead, live, NULL };
    assert_true(rtsup_marker(p, topic, 0, both, 1, T_WAIT));
    assert_int_equal(rtsup_shard_count_token(dead, t1), 2);

    /* the shard "dies": its lease runs out (no heartbeat) */
    char key[128];
    snprintf(key, sizeof key, "odin:shard:%s", dead->id);
    assert_int_equal(tsup_redis_int(rc, "PEXPIRE %s 300", key), 1);
    dead_arg d = { rc, dead->id, t1, t2 };
    assert_true(tsup_wait_until(cleaned, &d, T_WAIT));
    assert_true(rtsup_wait_metric(r.http_port, "router_shards_cleaned_total", 1, T_WAIT));
    assert_true(rtsup_wait_metric_eq(r.http_port, "router_shards_connected", 1, T_WAIT));
    assert_int_equal(tsup_redis_int(rc, "SISMEMBER odin:route:%s %s", t2, live->id), 1);

    /* never sent to again, even through a stale route naming it */
    rtsup_route(rc, "add", dead->id, t1);
    double down = metric(r.http_port, "router_drops_total{reason=\"shard_down\"}");
    size_t before = rtsup_shard_count(dead);
    produce_n(p, topic, t1, 3, 40);
    produce_n(p, topic, t2, 2, 40);
    rtsup_shard *const l[] = { live, NULL };
    assert_true(rtsup_marker(p, topic, 0, l, 2, T_WAIT));
    assert_int_equal(rtsup_shard_count_token(live, t2), 2);
    assert_true(rtsup_wait_metric(r.http_port, "router_drops_total{reason=\"shard_down\"}",
                                  down + 3, T_WAIT));
    assert_int_equal(rtsup_shard_count(dead), before);

    int st = rtsup_router_stop(&r);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    rtsup_producer_free(p);
    rtsup_shard_deregister(live, rc);
    rtsup_shard_free(dead);
    rtsup_shard_free(live);
    redisFree(rc);
}

/* A "shard" that answers the router's connection with a frame header of
 * 1,000,000 bytes (under the 1 MiB the router used to accept from a shard)
 * and streams its body, never a HELLO. */
typedef struct hostile_shard {
    int lfd;
    char path[256];
    pthread_t th;
    volatile int stop;
    pthread_mutex_t mu;
    size_t written;
    int done;
} hostile_shard;

#define HOSTILE_FRAME 1000000u

static void *hostile_thread(void *arg)
{
    hostile_shard *h = arg;
    static char junk[16384];
    memset(junk, 0xc1, sizeof junk);   /* never valid msgpack */
    int fd = -1;
    while (!h->stop && fd < 0) {
        struct pollfd pf = { h->lfd, POLLIN, 0 };
        if (poll(&pf, 1, 50) == 1)
            fd = accept4(h->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    }
    size_t written = 0, total = HOSTILE_FRAME + 4;
    unsigned char hdr[4] = { HOSTILE_FRAME >> 24, (HOSTILE_FRAME >> 16) & 0xff,
                             (HOSTILE_FRAME >> 8) & 0xff, HOSTILE_FRAME & 0xff };
    int refused = 0;
    while (!h->stop && fd >= 0 && written < total && !refused) {
        struct pollfd pf = { fd, POLLOUT, 0 };
        if (poll(&pf, 1, 100) <= 0)
            continue;
        const void *p = written < 4 ? (const void *)(hdr + written) : (const void *)junk;
        size_t n = written < 4 ? 4 - written : sizeof junk;
        if (n > total - written)
            n = total - written;
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0)
            written += (size_t)w;
        else if (w < 0 && errno != EAGAIN)
            refused = 1;   /* the router closed the connection */
    }
    pthread_mutex_lock(&h->mu);
    h->written = written;
    h->done = 1;
    pthread_mutex_unlock(&h->mu);
    if (fd >= 0)
        close(fd);
    return NULL;
}

static int hostile_done(void *arg)
{
    hostile_shard *h = arg;
    pthread_mutex_lock(&h->mu);
    int d = h->done;
    pthread_mutex_unlock(&h->mu);
    return d;
}

/* Before the handshake a shard can make the router hold no more than a
 * handshake's frame (FRAME_HANDSHAKE_MAX): a larger declared length is
 * refused from its header, so the hostile shard cannot even write its
 * whole frame. */
static void test_shard_preauth_bounded(void **state)
{
    flush_redis();
    redisContext *rc = tsup_redis_connect(tsup_env("ODIN_REDIS_URL"));
    hostile_shard h;
    memset(&h, 0, sizeof h);
    pthread_mutex_init(&h.mu, NULL);
    char *path = tsup_tmp("hostile.sock");
    snprintf(h.path, sizeof h.path, "%s", path);
    free(path);
    h.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un ua = { .sun_family = AF_UNIX };
    assert_true(strlen(h.path) < sizeof ua.sun_path);
    memcpy(ua.sun_path, h.path, strlen(h.path) + 1);
    assert_int_equal(bind(h.lfd, (struct sockaddr *)&ua, sizeof ua), 0);
    assert_int_equal(listen(h.lfd, 4), 0);
    assert_int_equal(pthread_create(&h.th, NULL, hostile_thread, &h), 0);
    rtsup_shard fake;
    memset(&fake, 0, sizeof fake);
    snprintf(fake.id, sizeof fake.id, "%s", rtsup_unique("hostile"));
    snprintf(fake.endpoint, sizeof fake.endpoint, "unix:%s", h.path);
    rtsup_shard_register(&fake, rc, 0);

    char group[128];
    snprintf(group, sizeof group, "KAFKA_GROUP=%s", rtsup_unique("g"));
    const char *env[] = { group, NULL };
    rtsup_router r;
    assert_int_equal(rtsup_router_start(&r, tsup_env("ODIN_REDIS_URL"), env), 0);
    assert_true(tsup_wait_until(hostile_done, &h, T_WAIT));
    fprintf(stderr, "hostile shard wrote %zu of %u bytes before the router closed\n",
            h.written, HOSTILE_FRAME + 4);
    assert_true(h.written < HOSTILE_FRAME + 4);
    assert_true(rtsup_metric(r.http_port, "router_shards_connected") == 0);

    int st = rtsup_router_stop(&r);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    h.stop = 1;
    pthread_join(h.th, NULL);
    close(h.lfd);
    unlink(h.path);
    pthread_mutex_destroy(&h.mu);
    redisFree(rc);
}

/* ---- KAFKA_EVICT_PREVIOUS against a broker with no usable version ------- */

/* A "broker" (own process) that answers every request with an ApiVersions
 * v0 response listing FindCoordinator 5-6 and LeaveGroup 6-7 only: newer
 * than anything router/kwire.c implements.  librdkafka's consumer gets the
 * same nonsense and keeps retrying; that is not what is tested. */
static void fake_broker(int lfd)
{
    struct pollfd p[32];
    uint8_t in[32][4096];
    size_t have[32];
    int n = 1;
    p[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
    for (;;) {
        if (poll(p, (nfds_t)n, -1) < 0)
            _exit(1);
        if ((p[0].revents & POLLIN) && n < 32) {
            int fd = accept(lfd, NULL, NULL);
            if (fd >= 0) {
                p[n] = (struct pollfd){ .fd = fd, .events = POLLIN };
                have[n++] = 0;
            }
        }
        for (int i = 1; i < n; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t r = read(p[i].fd, in[i] + have[i], sizeof in[i] - have[i]);
            if (r <= 0 || (have[i] += (size_t)r) == sizeof in[i]) {
                close(p[i].fd);
                p[i--] = p[--n];
                continue;
            }
            while (have[i] >= 12) {       /* size, api key, version, corr */
                uint32_t size = (uint32_t)in[i][0] << 24 | (uint32_t)in[i][1] << 16 |
                                (uint32_t)in[i][2] << 8 | in[i][3];
                if (have[i] < size + 4)
                    break;
                uint8_t out[] = {
                    0, 0, 0, 22, 0, 0, 0, 0,          /* size, correlation id */
                    0, 0, 0, 0, 0, 2,                 /* no error, two APIs */
                    0, 10, 0, 5, 0, 6,                /* FindCoordinator 5-6 */
                    0, 13, 0, 6, 0, 7,                /* LeaveGroup 6-7 */
                };
                memcpy(out + 4, in[i] + 8, 4);
                if (write(p[i].fd, out, sizeof out) != (ssize_t)sizeof out)
                    break;
                memmove(in[i], in[i] + size + 4, have[i] - size - 4);
                have[i] -= size + 4;
            }
        }
    }
}

static void test_evict_no_usable_version(void **state)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET };
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(lfd, 16), 0);
    socklen_t sl = sizeof sin;
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &sl), 0);
    pid_t fb = fork();
    assert_true(fb >= 0);
    if (fb == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);   /* gone with the test, even failed */
        fake_broker(lfd);
    }
    close(lfd);

    flush_redis();
    char id[64], key[128], brokers_env[64];
    snprintf(id, sizeof id, "nv-%d", (int)getpid());
    snprintf(key, sizeof key, "odin:router:%s", id);
    redisContext *c = tsup_redis_connect(tsup_env("ODIN_REDIS_URL"));
    redisReply *r = redisCommand(c, "SET %s previous-member-1 PX 60000", key);
    assert_non_null(r);
    freeReplyObject(r);
    snprintf(brokers_env, sizeof brokers_env, "KAFKA_BROKERS=127.0.0.1:%d", ntohs(sin.sin_port));
    char rid[96];
    snprintf(rid, sizeof rid, "ROUTER_ID=%s", id);
    const char *extra[] = { brokers_env, rid, "KAFKA_EVICT_PREVIOUS=true", NULL };
    rtsup_router rt;
    assert_int_equal(rtsup_router_start(&rt, tsup_env("ODIN_REDIS_URL"), extra), 0);
    tsup_log_q skipped = { "odin-router", rt.pid, "previous member of this router id not evicted",
                            NULL };
    assert_true(tsup_wait_until(tsup_log_has_q, &skipped, T_WAIT));
    tsup_log_q why = { "odin-router", rt.pid,
                        "supports no version of this request that the router implements", NULL };
    assert_true(tsup_log_has_q(&why));
    tsup_log_q reason = { "odin-router", rt.pid, "no usable protocol version", NULL };
    assert_true(tsup_log_has_q(&reason));
    /* never fatal: the router is alive and answers */
    assert_int_equal(waitpid(rt.pid, NULL, WNOHANG), 0);
    assert_true(rtsup_metric(rt.http_port, "router_assigned_partitions") >= 0);
    assert_int_equal(rtsup_router_stop(&rt), 0);
    redisFree(c);
    kill(fb, SIGKILL);
    waitpid(fb, NULL, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redis_down_fallback_and_back),
        cmocka_unit_test(test_slow_shard_does_not_delay_others),
        cmocka_unit_test(test_dead_shard_routes_cleaned),
        cmocka_unit_test(test_shard_preauth_bounded),
        cmocka_unit_test(test_evict_no_usable_version),
    };
    return TSUP_RUN_CASES("router_faults", tests, NULL, NULL);
}
