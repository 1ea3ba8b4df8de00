/* Liveness and readiness probes against real processes: /livez answers 200
 * while the process answers at all, /readyz 503 when a shard should get no
 * new clients (draining, full) or a router is shutting down; on WS_ADDR,
 * and only on ADMIN_ADDR when that is set.  /health is unchanged. */
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
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "tests/support/support.h"
#include "tests/support/shardsup.h"

#define T 5000

static const char *k_upgrade =
    "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/* Open a WebSocket client on port; returns the fd (101 seen) or -1. */
static int ws_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    send(fd, k_upgrade, strlen(k_upgrade), MSG_NOSIGNAL);
    char b[1024];
    size_t n = 0;
    while (n < sizeof b - 1) {
        struct pollfd pf = { fd, POLLIN, 0 };
        if (poll(&pf, 1, T) <= 0)
            break;
        ssize_t r = recv(fd, b + n, sizeof b - 1 - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
        b[n] = '\0';
        if (strstr(b, "\r\n\r\n"))
            break;
    }
    b[n] = '\0';
    if (strncmp(b, "HTTP/1.1 101", 12) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* GET path; the status, and whether the body holds `want` (NULL: skip). */
static int get_has(int port, const char *path, const char *want)
{
    char *body = NULL;
    int st = tsup_http_get(port, path, &body);
    if (want && (!body || !strstr(body, want))) {
        fprintf(stderr, "GET %s -> %d, body lacks %s: %s\n", path, st, want,
                body ? body : "(none)");
        st = -2;
    }
    free(body);
    return st;
}

static void test_shard_probes_drain(void **st)
{
    (void)st;
    ssup_shard s;
    char id[64];
    snprintf(id, sizeof id, "probe-drain-%d", (int)getpid());
    assert_int_equal(ssup_shard_start(&s, id, NULL, NULL), 0);
    assert_int_equal(get_has(s.port, "/livez", "\"status\":\"live\""), 200);
    assert_int_equal(get_has(s.port, "/readyz", "\"status\":\"ready\""), 200);
    assert_int_equal(get_has(s.port, "/readyz?verbose=1", "\"ready\":true"), 200);

    kill(s.pid, SIGUSR1);   /* drain */
    assert_true(ssup_wait_metric(s.port, "shard_draining", 1, T));
    /* not ready: the load balancer stops sending clients; still live: the
     * orchestrator must not restart it */
    assert_int_equal(get_has(s.port, "/readyz", "\"reason\":\"draining\""), 503);
    assert_int_equal(get_has(s.port, "/livez", "\"draining\":true"), 200);
    assert_int_equal(get_has(s.port, "/health", "\"status\":\"draining\""), 503);

    kill(s.pid, SIGUSR1);   /* drain ends */
    assert_true(ssup_wait_metric_eq(s.port, "shard_draining", 0, T));
    assert_int_equal(get_has(s.port, "/readyz", "\"ready\":true"), 200);
    int stv = ssup_shard_stop(&s, SIGTERM, 10000);
    assert_true(WIFEXITED(stv) && WEXITSTATUS(stv) == 0);
}

static void test_shard_probes_full(void **st)
{
    (void)st;
    ssup_shard s;
    char id[64];
    snprintf(id, sizeof id, "probe-full-%d", (int)getpid());
    const char *env[] = { "WS_MAX_CONNECTIONS=2", NULL };
    assert_int_equal(ssup_shard_start(&s, id, NULL, env), 0);
    int c1 = ws_open(s.port);
    assert_true(c1 >= 0);
    assert_true(ssup_wait_metric(s.port, "ws_connections_active", 1, T));
    assert_int_equal(get_has(s.port, "/readyz", "\"ready\":true"), 200);
    int c2 = ws_open(s.port);
    assert_true(c2 >= 0);
    assert_true(ssup_wait_metric(s.port, "ws_connections_active", 2, T));
    /* full: the next upgrade gets 503, and /readyz says so; /livez does not */
    assert_int_equal(ws_open(s.port), -1);
    assert_int_equal(get_has(s.port, "/readyz", "\"reason\":\"at capacity\""), 503);
    assert_int_equal(get_has(s.port, "/livez", "\"status\":\"live\""), 200);
    close(c2);
    assert_true(ssup_wait_metric_eq(s.port, "ws_connections_active", 1, T));
    /* a slot free again: ready once the closed client is gone */
    for (int i = 0; i < 500 && get_has(s.port, "/readyz", NULL) != 200; i++)
        poll(NULL, 0, 10);
    assert_int_equal(get_has(s.port, "/readyz", "\"ready\":true"), 200);
    close(c1);
    int stv = ssup_shard_stop(&s, SIGTERM, 10000);
    assert_true(WIFEXITED(stv) && WEXITSTATUS(stv) == 0);
}

/* With ADMIN_ADDR the probes are served there, and WS_ADDR answers 404. */
static void test_shard_probes_admin_addr(void **st)
{
    (void)st;
    ssup_shard s;
    char id[64], admin[64];
    snprintf(id, sizeof id, "probe-admin-%d", (int)getpid());
    int ap = tsup_free_port();
    snprintf(admin, sizeof admin, "ADMIN_ADDR=127.0.0.1:%d", ap);
    const char *env[] = { admin, NULL };
    assert_int_equal(ssup_shard_start(&s, id, NULL, env), 0);
    assert_true(tsup_wait_tcp(ap, T));
    assert_int_equal(get_has(ap, "/livez", "\"status\":\"live\""), 200);
    assert_int_equal(get_has(ap, "/readyz", "\"ready\":true"), 200);
    assert_int_equal(get_has(s.port, "/livez", NULL), 404);
    assert_int_equal(get_has(s.port, "/readyz", NULL), 404);
    kill(s.pid, SIGUSR1);
    for (int i = 0; i < 500 && get_has(ap, "/readyz", NULL) != 503; i++)
        poll(NULL, 0, 10);
    assert_int_equal(get_has(ap, "/readyz", "\"reason\":\"draining\""), 503);
    assert_int_equal(get_has(ap, "/livez", NULL), 200);
    int stv = ssup_shard_stop(&s, SIGTERM, 10000);
    assert_true(WIFEXITED(stv) && WEXITSTATUS(stv) == 0);
}

static int ready200(void *arg)
{
    return get_has(*(int *)arg, "/readyz", NULL) == 200;
}

static void test_router_probes(void **st)
{
    (void)st;
    int hp = tsup_free_port();
    char addr[64], group[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", hp);
    snprintf(group, sizeof group, "probes-%d", (int)getpid());
    char *argv[] = { (char *)tsup_bin("odin-router"), "--kafka-brokers",
                     (char *)tsup_env("ODIN_KAFKA_BROKERS"), "--redis-url",
                     (char *)tsup_env("ODIN_REDIS_URL"), "--kafka-group", group,
                     "--http-addr", addr, NULL };
    pid_t pid = tsup_spawn(argv, NULL);
    assert_true(pid > 0);
    assert_true(tsup_wait_tcp(hp, 10000));
    assert_int_equal(get_has(hp, "/livez", "\"status\":\"live\""), 200);
    /* ready once it consumes (after the start-up hold, if any) */
    assert_true(tsup_wait_until(ready200, &hp, 20000));
    assert_int_equal(get_has(hp, "/readyz", "\"ready\":true"), 200);
    assert_int_equal(get_has(hp, "/nope", NULL), 404);
    int stv = tsup_stop(pid, SIGTERM, 10000);
    assert_true(WIFEXITED(stv) && WEXITSTATUS(stv) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shard_probes_drain),
        cmocka_unit_test(test_shard_probes_full),
        cmocka_unit_test(test_shard_probes_admin_addr),
        cmocka_unit_test(test_router_probes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
