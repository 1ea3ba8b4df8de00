/* Internal endpoints and the per-IP table against real processes (issue 19,
 * items 5 and 6): the shard's ADMIN_ADDR listener (/health and /metrics
 * there, 404 on WS_ADDR), ADMIN_RATE on the shard (both listeners) and the
 * router's HTTP_ADDR, ADMIN_ALLOW, and WS_IP_TABLE_MAX failing closed for
 * new addresses while existing ones keep working. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <poll.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "tests/support/rtsup.h"
#include "tests/support/shardsup.h"
#include "tests/support/support.h"
#include "tests/support/wsclient.h"

#define T 5000

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static ssup_shard *start(const char *name, const char *const env[])
{
    return ssup_start("admin", name, env);
}

static void stop(ssup_shard *s) { ssup_stop_ok(s); }

/* GET path from local address src (127.0.0.x) to 127.0.0.1:port: the HTTP
 * status (-1 on a network error); the body (malloc'd) in *body if asked. */
static int get_from(const char *src, int port, const char *path, char **body)
{
    if (body)
        *body = NULL;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in s = { .sin_family = AF_INET };
    inet_pton(AF_INET, src, &s.sin_addr);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(fd, (struct sockaddr *)&s, sizeof s) != 0 ||
        connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                     path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t cap = 1 << 20, len = 0;
    char *r = malloc(cap);
    struct pollfd pf = { fd, POLLIN, 0 };
    while (len + 1 < cap && poll(&pf, 1, T) == 1) {
        ssize_t k = read(fd, r + len, cap - len - 1);
        if (k <= 0)
            break;
        len += (size_t)k;
    }
    close(fd);
    r[len] = 0;
    int status = -1;
    if (sscanf(r, "HTTP/1.%*d %d", &status) != 1)
        status = -1;
    char *b = strstr(r, "\r\n\r\n");
    if (body && b)
        *body = strdup(b + 4);
    free(r);
    return status;
}

/* A metric read from a port whose /metrics may be rate limited: retries
 * (each refused attempt is counted in *refused) until it is served. */
static double metric_counting(const char *src, int port, const char *series, int *refused)
{
    int64_t end = now_ms() + 3 * T;
    while (now_ms() < end) {
        char *body = NULL;
        int st = get_from(src, port, "/metrics", &body);
        if (st == 200) {
            double v = tsup_prom_value(body, series);
            free(body);
            return v;
        }
        free(body);
        if (st == 429)
            (*refused)++;
        poll(NULL, 0, 50);   /* the bucket refills with time: nothing to wait on */
    }
    fail_msg("/metrics not served within %d ms", 3 * T);
    return -1;
}

/* ADMIN_ADDR: /health and /metrics are served there and answered 404 on
 * WS_ADDR, which still upgrades WebSocket clients. */
static void test_admin_listener(void **state)
{
    (void)state;
    char admin[64];
    int ap = tsup_free_port();
    snprintf(admin, sizeof admin, "ADMIN_ADDR=127.0.0.1:%d", ap);
    const char *env[] = { admin, NULL };
    ssup_shard *s = start("listener", env);
    assert_true(tsup_wait_tcp(ap, T));
    char *body = NULL;
    assert_int_equal(get_from("127.0.0.1", s->port, "/metrics", &body), 404);
    free(body);
    assert_int_equal(get_from("127.0.0.1", s->port, "/health", &body), 404);
    free(body);
    assert_int_equal(get_from("127.0.0.1", ap, "/metrics", &body), 200);
    assert_non_null(strstr(body, "# TYPE ws_connections_active gauge"));
    free(body);
    int st = get_from("127.0.0.1", ap, "/health", &body);
    assert_true(st == 200 || st == 503);
    assert_non_null(strstr(body, "\"checks\""));
    free(body);
    /* the admin port is not a WebSocket endpoint; WS_ADDR is */
    assert_int_equal(get_from("127.0.0.1", ap, "/ws", NULL), 404);
    int ws = 0;
    wsc *c = wsc_connect("127.0.0.1", s->port, NULL, &ws);
    assert_int_equal(ws, 101);
    wsc_free(c);
    /* the 404s on WS_ADDR were counted as refused requests, not pages */
    assert_true(ssup_wait_metric(ap, "ws_handshake_failures_total", 2, T));
    stop(s);
}

/* A burst of n requests of path from src: how many got 200 and 429, and
 * how long it took. */
static void burst(const char *src, int port, const char *path, int n, int *ok,
                  int *refused, int64_t *ms)
{
    *ok = *refused = 0;
    int64_t t0 = now_ms();
    for (int i = 0; i < n; i++) {
        int st = get_from(src, port, path, NULL);
        if (st == 200 || st == 503)   /* 503: /health of a shard not healthy */
            (*ok)++;
        else if (st == 429)
            (*refused)++;
        else
            fail_msg("%s: status %d", path, st);
    }
    *ms = now_ms() - t0;
}

/* ADMIN_RATE/ADMIN_BURST: one bucket per page; past the burst 429, every
 * refusal counted, and logged with the client's address. */
static void check_rate(int port, pid_t pid, const char *bin, const char *series_fmt,
                       double rate, int burst_n)
{
    enum { N = 20 };
    char series[128];
    int ok, refused;
    int64_t ms;
    /* /metrics: the burst is served, then 429 (at most rate*elapsed+1 more
     * served while the burst ran) */
    burst("127.0.0.1", port, "/metrics", N, &ok, &refused, &ms);
    assert_true(ok >= burst_n);
    assert_true(ok <= burst_n + 1 + (int)(rate * (double)ms / 1000.0));
    assert_int_equal(ok + refused, N);
    assert_true(refused >= 1);
    /* /health has its own bucket: its burst is whole */
    int hok, hrefused;
    int64_t hms;
    burst("127.0.0.1", port, "/health", N, &hok, &hrefused, &hms);
    assert_true(hok >= burst_n);
    assert_true(hok <= burst_n + 1 + (int)(rate * (double)hms / 1000.0));
    assert_true(hrefused >= 1);
    /* the counters match what the client saw (the metrics read itself may
     * be refused until the bucket refills: those count too) */
    int more = 0;
    snprintf(series, sizeof series, series_fmt, "/health");
    double h = metric_counting("127.0.0.1", port, series, &more);
    snprintf(series, sizeof series, series_fmt, "/metrics");
    double m = metric_counting("127.0.0.1", port, series, &more);
    assert_int_equal((int)h, hrefused);
    assert_int_equal((int)m, refused + more);
    tsup_log_q q = { bin, pid, "\"msg\":\"admin request refused\"", "\"peer\":\"127.0.0.1\"" };
    assert_true(tsup_wait_until(tsup_log_has_q, &q, T));
    tsup_log_q q2 = { bin, pid, "\"msg\":\"admin request refused\"", "\"status\":429" };
    assert_true(tsup_log_has_q(&q2));
}

static void test_admin_rate_shard(void **state)
{
    (void)state;
    char admin[64];
    int ap = tsup_free_port();
    snprintf(admin, sizeof admin, "ADMIN_ADDR=127.0.0.1:%d", ap);
    const char *env[] = { admin, "ADMIN_RATE=2", "ADMIN_BURST=5", NULL };
    ssup_shard *s = start("rate", env);
    assert_true(tsup_wait_tcp(ap, T));
    check_rate(ap, s->pid, "odin-shard", "ws_admin_ratelimit_rejections_total{path=\"%s\"}",
               2, 5);
    stop(s);
}

/* Without ADMIN_ADDR the pages stay on WS_ADDR (today's behaviour) under the
 * same limit, and ADMIN_ALLOW decides who may read them there. */
static void test_admin_public_port(void **state)
{
    (void)state;
    const char *env[] = { "ADMIN_RATE=2", "ADMIN_BURST=5", NULL };
    ssup_shard *s = start("public", env);
    check_rate(s->port, s->pid, "odin-shard",
               "ws_admin_ratelimit_rejections_total{path=\"%s\"}", 2, 5);
    stop(s);

    const char *env2[] = { "ADMIN_ALLOW=127.0.0.1/32,::1", NULL };
    s = start("allow", env2);
    char *body = NULL;
    assert_int_equal(get_from("127.0.0.3", s->port, "/metrics", &body), 404);
    free(body);
    assert_int_equal(get_from("127.0.0.3", s->port, "/health", &body), 404);
    free(body);
    assert_int_equal(get_from("127.0.0.1", s->port, "/health", &body), 200);
    free(body);
    assert_true(ssup_wait_metric_eq(s->port, "ws_admin_forbidden_total", 2, T));
    tsup_log_q q = { "odin-shard", s->pid, "\"msg\":\"admin request refused\"",
                "\"peer\":\"127.0.0.3\"" };
    assert_true(tsup_wait_until(tsup_log_has_q, &q, T));
    /* a WebSocket client from that address is served as ever */
    wsc_opts o = { .src_addr = "127.0.0.3" };
    int ws = 0;
    wsc *c = wsc_connect("127.0.0.1", s->port, &o, &ws);
    assert_int_equal(ws, 101);
    wsc_free(c);
    stop(s);
}

/* The router's HTTP_ADDR: the same limit. */
static void test_admin_rate_router(void **state)
{
    (void)state;
    rtsup_router r;
    const char *extra[] = { "ADMIN_RATE=2", "ADMIN_BURST=5", NULL };
    assert_int_equal(rtsup_router_start(&r, tsup_env("ODIN_REDIS_URL"), extra), 0);
    check_rate(r.http_port, r.pid, "odin-router",
               "router_http_ratelimit_rejections_total{path=\"%s\"}", 2, 5);
    assert_true(WIFEXITED(rtsup_router_stop(&r)));
}

/* WS_IP_TABLE_MAX: once the table holds that many addresses, a connection
 * from a new address is refused with 503 (fail closed: before, the per-IP
 * limits were skipped for everyone), counted, logged; the addresses in the
 * table keep connecting. */
static void ip_table_full(const char *pending)
{
    enum { MAX = 4, NEW = 4 };
    char admin[64];
    int ap = tsup_free_port();
    snprintf(admin, sizeof admin, "ADMIN_ADDR=127.0.0.1:%d", ap);
    /* a bucket that refills in ~1000 s: an address that connected once
     * stays in the table (an entry goes when its bucket is full and it
     * holds nothing) */
    const char *env[] = { admin, "WS_IP_TABLE_MAX=4", "WS_IP_RATE=0.001",
                          "WS_IP_BURST=5", pending, NULL };
    ssup_shard *s = start("iptable", env);
    assert_true(tsup_wait_tcp(ap, T));
    wsc *held[MAX];
    char src[32];
    for (int i = 0; i < MAX; i++) {
        snprintf(src, sizeof src, "127.0.0.%d", 2 + i);
        wsc_opts o = { .src_addr = src };
        int st = 0;
        held[i] = wsc_connect("127.0.0.1", s->port, &o, &st);
        assert_int_equal(st, 101);
    }
    assert_true(ssup_wait_metric_eq(ap, "ws_ip_table_entries", MAX, T));
    /* new addresses: refused */
    for (int i = 0; i < NEW; i++) {
        snprintf(src, sizeof src, "127.0.0.%d", 2 + MAX + i);
        wsc_opts o = { .src_addr = src };
        wsc *c = wsc_connect_raw("127.0.0.1", s->port, &o);
        int st = c ? c->status : -1;
        if (st != 503)
            fail_msg("new address %s: status %d, want 503", src, st);
        assert_non_null(strstr(c->body, "too many client addresses"));
        wsc_free(c);
    }
    assert_true(ssup_wait_metric_eq(ap, "ws_ip_table_full_rejections_total", NEW, T));
    assert_int_equal((int)ssup_metric(ap, "ws_ip_table_entries"), MAX);
    /* existing addresses keep working */
    for (int i = 0; i < MAX; i++) {
        snprintf(src, sizeof src, "127.0.0.%d", 2 + i);
        wsc_opts o = { .src_addr = src };
        int st = 0;
        wsc *c = wsc_connect("127.0.0.1", s->port, &o, &st);
        assert_int_equal(st, 101);
        wsc_free(c);
    }
    assert_int_equal((int)ssup_metric(ap, "ws_ip_table_full_rejections_total"), NEW);
    /* grep-able, with the client's address */
    tsup_log_q q = { "odin-shard", s->pid, "\"msg\":\"per-IP table full: new address refused\"",
                "\"peer\":\"127.0.0.6\"" };
    assert_true(tsup_wait_until(tsup_log_has_q, &q, T));
    for (int i = 0; i < MAX; i++)
        wsc_free(held[i]);
    stop(s);
}

static void test_ip_table_full(void **state)
{
    (void)state;
    /* the entry is taken at accept (WS_IP_MAX_PENDING): refused there */
    ip_table_full("WS_IP_MAX_PENDING=32");
    /* no pending limit: the entry is taken at the upgrade (WS_IP_RATE) */
    ip_table_full("WS_IP_MAX_PENDING=0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admin_listener),
        cmocka_unit_test(test_admin_rate_shard),
        cmocka_unit_test(test_admin_public_port),
        cmocka_unit_test(test_admin_rate_router),
        cmocka_unit_test(test_ip_table_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
