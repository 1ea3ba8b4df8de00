/* Operations features of odin-shard against real processes: PROXY protocol
 * v2 on the WebSocket listener (real header, spoof attempt, missing and v1
 * headers, internal endpoints, per-IP limits on the real client address),
 * and a drain that hands the shared SO_REUSEPORT port to the other shards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "shard/proxyproto.h"
#include "tests/support/support.h"
#include "tests/support/shardsup.h"

#define T 5000
#define LB_IP "127.0.0.2"     /* the "load balancer": trusted */

static const char *k_upgrade =
    "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/* Connect from src_ip (NULL: any) to 127.0.0.1:port. */
static int dial(const char *src_ip, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    if (src_ip) {
        inet_pton(AF_INET, src_ip, &a.sin_addr);
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    }
    a.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Send pre (a PROXY header, may be NULL) and the request; read the response
 * head.  Returns the HTTP status, 0 if the server closed without answering,
 * -1 on timeout.  body (may be NULL) gets the rest read so far (malloc'd).
 * *keep (may be NULL) receives the open fd instead of closing it. */
static int exchange(int fd, const void *pre, size_t prelen, const char *req,
                    char **body, int *keep)
{
    if (pre)
        assert_int_equal(send(fd, pre, prelen, MSG_NOSIGNAL), (ssize_t)prelen);
    send(fd, req, strlen(req), MSG_NOSIGNAL);   /* may fail: refused */
    char b[8192];
    size_t n = 0;
    int st = -1;
    for (;;) {
        struct pollfd pf = { fd, POLLIN, 0 };
        if (poll(&pf, 1, T) <= 0)
            break;
        ssize_t r = recv(fd, b + n, sizeof b - 1 - n, 0);
        if (r <= 0) {
            st = 0;
            break;
        }
        n += (size_t)r;
        b[n] = '\0';
        /* a 101 keeps the connection open; anything else is closed after */
        if (strncmp(b, "HTTP/1.1 101", 12) == 0 && strstr(b, "\r\n\r\n"))
            break;
        if (n >= sizeof b - 1)
            break;
    }
    b[n] = '\0';
    if (n >= 12 && strncmp(b, "HTTP/1.1 ", 9) == 0)
        st = atoi(b + 9);
    if (body) {
        char *e = strstr(b, "\r\n\r\n");
        *body = strdup(e ? e + 4 : "");
    }
    if (keep && st == 101)
        *keep = fd;
    else
        close(fd);
    return st;
}

static int proxied(const char *src, uint16_t sport, int port, const char *req,
                   char **body, int *keep)
{
    proxyproto_hdr h;
    memset(&h, 0, sizeof h);
    h.family = AF_INET;
    inet_pton(AF_INET, src, h.src);
    inet_pton(AF_INET, "127.0.0.1", h.dst);
    h.src_port = sport;
    h.dst_port = (uint16_t)port;
    uint8_t hb[64];
    int hl = proxyproto_build(&h, hb, sizeof hb);
    return exchange(dial(LB_IP, port), hb, (size_t)hl, req, body, keep);
}

static double metric(int port, const char *series)
{
    return ssup_metric(port, series);
}

static void test_proxy_v2(void **st)
{
    (void)st;
    ssup_shard s;
    char id[64];
    snprintf(id, sizeof id, "ops-proxy-%d", (int)getpid());
    const char *env[] = { "WS_PROXY_PROTOCOL=required", "WS_PROXY_TRUSTED=" LB_IP "/32",
                          "WS_IP_RATE=0.001", "WS_IP_BURST=1", NULL };
    assert_int_equal(ssup_shard_start(&s, id, NULL, env), 0);

    /* a real v2 header in front of the upgrade: accepted, and the per-IP
     * limit (burst 1) is charged to 203.0.113.7, not to the balancer */
    int k1 = -1, k2 = -1, k3 = -1;
    assert_int_equal(proxied("203.0.113.7", 40001, s.port, k_upgrade, NULL, &k1), 101);
    assert_int_equal(proxied("203.0.113.7", 40002, s.port, k_upgrade, NULL, NULL), 429);
    assert_int_equal(proxied("203.0.113.8", 40003, s.port, k_upgrade, NULL, &k2), 101);
    /* a direct client from an untrusted source is served as itself */
    assert_int_equal(exchange(dial("127.0.0.1", s.port), NULL, 0, k_upgrade, NULL, &k3), 101);
    assert_int_equal(metric(s.port, "ws_proxy_headers_total"), 3);
    assert_int_equal(metric(s.port, "ws_ratelimit_rejections_total"), 1);
    assert_int_equal(metric(s.port, "ws_connections_active"), 3);

    /* spoof: an untrusted source sends a header claiming to be someone */
    proxyproto_hdr h;
    memset(&h, 0, sizeof h);
    h.family = AF_INET;
    inet_pton(AF_INET, "198.51.100.1", h.src);
    uint8_t hb[64];
    int hl = proxyproto_build(&h, hb, sizeof hb);
    assert_int_equal(exchange(dial("127.0.0.1", s.port), hb, (size_t)hl, k_upgrade,
                              NULL, NULL), 0);
    assert_int_equal(metric(s.port, "ws_proxy_rejections_total{reason=\"untrusted\"}"), 1);
    /* ... in the text form too */
    assert_int_equal(exchange(dial("127.0.0.1", s.port), "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
                              32, k_upgrade, NULL, NULL), 0);
    assert_int_equal(metric(s.port, "ws_proxy_rejections_total{reason=\"untrusted\"}"), 2);

    /* the balancer without a header (required), or with v1 / garbage */
    assert_int_equal(exchange(dial(LB_IP, s.port), NULL, 0, k_upgrade, NULL, NULL), 0);
    assert_int_equal(metric(s.port, "ws_proxy_rejections_total{reason=\"missing\"}"), 1);
    assert_int_equal(exchange(dial(LB_IP, s.port), "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
                              32, k_upgrade, NULL, NULL), 0);
    hb[12] = 0x11;   /* version 1 in the binary form */
    assert_int_equal(exchange(dial(LB_IP, s.port), hb, (size_t)hl, k_upgrade, NULL, NULL), 0);
    assert_int_equal(metric(s.port, "ws_proxy_rejections_total{reason=\"invalid\"}"), 2);

    /* internal endpoints: not for public clients of the balancer, but a
     * LOCAL header (haproxy's health checks) is served */
    assert_int_equal(proxied("203.0.113.9", 40004, s.port,
                             "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", NULL, NULL), 404);
    memset(&h, 0, sizeof h);
    h.family = AF_UNSPEC;
    hl = proxyproto_build(&h, hb, sizeof hb);
    char *body = NULL;
    assert_int_equal(exchange(dial(LB_IP, s.port), hb, (size_t)hl,
                              "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", &body, NULL), 200);
    assert_non_null(strstr(body, "\"shard_id\""));
    free(body);
    /* the header and the request may arrive in one segment or byte by byte */
    {
        memset(&h, 0, sizeof h);
        h.family = AF_INET;
        inet_pton(AF_INET, "203.0.113.10", h.src);
        hl = proxyproto_build(&h, hb, sizeof hb);
        int fd = dial(LB_IP, s.port);
        for (int i = 0; i < hl; i++) {
            assert_int_equal(send(fd, hb + i, 1, MSG_NOSIGNAL), 1);
            poll(NULL, 0, 1);
        }
        int k4 = -1;
        assert_int_equal(exchange(fd, NULL, 0, k_upgrade, NULL, &k4), 101);
        close(k4);
    }
    close(k1);
    close(k2);
    close(k3);
    int stv = ssup_shard_stop(&s, SIGTERM, 10000);
    assert_true(WIFEXITED(stv));
    assert_int_equal(WEXITSTATUS(stv), 0);
}

static int health_id(int port, char *id, size_t n)
{
    char *body = NULL;
    int stv = tsup_http_get(port, "/health", &body);
    id[0] = '\0';
    const char *p = body ? strstr(body, "\"shard_id\":\"") : NULL;
    if (p) {
        p += 12;
        size_t l = strcspn(p, "\"");
        snprintf(id, n, "%.*s", (int)l, p);
    }
    free(body);
    return stv;
}

static void test_drain_shared_port(void **st)
{
    (void)st;
    int shared = tsup_free_port();
    char envs[64];
    snprintf(envs, sizeof envs, "WS_SHARED_ADDR=127.0.0.1:%d", shared);
    const char *env[] = { envs, NULL };
    ssup_shard a, b;
    char ida[64], idb[64];
    snprintf(ida, sizeof ida, "ops-drain-a-%d", (int)getpid());
    snprintf(idb, sizeof idb, "ops-drain-b-%d", (int)getpid());
    assert_int_equal(ssup_shard_start(&a, ida, NULL, env), 0);
    assert_int_equal(ssup_shard_start(&b, idb, NULL, env), 0);
    assert_int_equal(metric(a.port, "shard_draining"), 0);
    /* process metrics and build info (common/procmetrics) */
    assert_true(metric(a.port, "process_open_fds") >= 5);
    assert_true(metric(a.port, "process_max_fds") >= metric(a.port, "process_open_fds"));
    assert_true(metric(a.port, "process_resident_memory_bytes") > 1e6);
    assert_true(metric(a.port, "process_cpu_seconds_total") >= 0);
    assert_true(metric(a.port, "process_start_time_seconds") > 1.6e9);
    assert_int_equal(metric(a.port, "odin_build_info{program=\"odin-shard\"}"), 1);
    char series[160];
    snprintf(series, sizeof series, "shard_info{shard_id=\"%s\"}", ida);
    assert_int_equal(metric(a.port, series), 1);

    /* both shards answer on the shared port */
    int on_a = 0, on_b = 0;
    char id[128];
    for (int i = 0; i < 40; i++) {
        assert_true(health_id(shared, id, sizeof id) > 0);
        on_a += strcmp(id, ida) == 0;
        on_b += strcmp(id, idb) == 0;
    }
    assert_int_equal(on_a + on_b, 40);
    assert_true(on_a > 0 && on_b > 0);

    kill(a.pid, SIGUSR1);
    assert_true(ssup_wait_metric(a.port, "shard_draining", 1, T));

    /* N new clients on the shared port: every one lands on B */
    int fds[24];
    for (int i = 0; i < 24; i++) {
        fds[i] = -1;
        assert_int_equal(exchange(dial(NULL, shared), NULL, 0, k_upgrade, NULL, &fds[i]), 101);
    }
    assert_int_equal(metric(b.port, "ws_connections_active"), 24);
    assert_int_equal(metric(a.port, "ws_connections_total"), 0);
    for (int i = 0; i < 12; i++) {
        assert_int_equal(health_id(shared, id, sizeof id), 200);
        assert_string_equal(id, idb);
    }
    /* A's own port answers 503, counted as a drain refusal, not capacity */
    assert_int_equal(exchange(dial(NULL, a.port), NULL, 0, k_upgrade, NULL, NULL), 503);
    assert_int_equal(metric(a.port, "ws_drain_rejections_total"), 1);
    assert_int_equal(metric(a.port, "ws_capacity_rejections_total"), 0);
    for (int i = 0; i < 24; i++)
        close(fds[i]);

    /* end the drain: A takes its share of the shared port again */
    kill(a.pid, SIGUSR1);
    assert_true(ssup_wait_metric_eq(a.port, "shard_draining", 0, T));
    on_a = 0;
    for (int i = 0; i < 40; i++) {
        health_id(shared, id, sizeof id);
        on_a += strcmp(id, ida) == 0;
    }
    assert_true(on_a > 0);

    int sa = ssup_shard_stop(&a, SIGTERM, 10000), sb = ssup_shard_stop(&b, SIGTERM, 10000);
    assert_true(WIFEXITED(sa) && WEXITSTATUS(sa) == 0);
    assert_true(WIFEXITED(sb) && WEXITSTATUS(sb) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proxy_v2),
        cmocka_unit_test(test_drain_shared_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
