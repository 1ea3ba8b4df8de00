/* Refused WebSocket upgrades (403 origin, 429 per-IP rate, 503 draining)
 * are logged as JSON lines with the client's address, status and reason,
 * at a bounded rate with a count of the lines suppressed. */
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

#include "common/clock.h"
#include "tests/support/support.h"
#include "tests/support/shardsup.h"

#define T 5000

/* Send an upgrade (with Origin: origin unless NULL); the status, and the
 * open fd in *keep on 101. */
static int upgrade(int port, const char *origin, int *keep)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[512];
    snprintf(req, sizeof req,
             "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
             "%s%s%s\r\n", origin ? "Origin: " : "", origin ? origin : "", origin ? "\r\n" : "");
    send(fd, req, strlen(req), MSG_NOSIGNAL);
    char b[2048];
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
        if (strstr(b, "\r\n\r\n") && strncmp(b, "HTTP/1.1 101", 12) == 0)
            break;
    }
    b[n] = '\0';
    int st = n >= 12 ? atoi(b + 9) : -1;
    if (st == 101 && keep)
        *keep = fd;
    else
        close(fd);
    return st;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    buf b = { 0 };
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    buf_append(&b, "", 1);
    return b.data;
}

static size_t count(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static char g_log[600];
static int g_port;

/* One more refusal, then: has a line reported suppressed ones? */
static int suppressed_reported(void *arg)
{
    (void)arg;
    upgrade(g_port, "https://evil.example", NULL);
    char *t = slurp(g_log);
    int found = 0;
    for (const char *p = t; (p = strstr(p, "\"msg\":\"upgrade refused\"")); p++) {
        const char *e = strchr(p, '\n');
        const char *s = strstr(p, "\"suppressed\":");
        if (s && (!e || s < e) && atoi(s + 13) > 0)
            found = 1;
    }
    free(t);
    return found;
}

static void test_refused_upgrades_logged(void **st)
{
    (void)st;
    ssup_shard s;
    char id[64];
    snprintf(id, sizeof id, "refusal-log-%d", (int)getpid());
    const char *env[] = { "WS_ALLOWED_ORIGINS=https://ok.example", "WS_IP_RATE=0.001",
                          "WS_IP_BURST=2", NULL };
    assert_int_equal(ssup_shard_start(&s, id, NULL, env), 0);
    snprintf(g_log, sizeof g_log, "%s/odin-shard.%d.log", tsup_env("ODIN_TMP"), (int)s.pid);
    g_port = s.port;

    assert_int_equal(upgrade(s.port, "https://evil.example", NULL), 403);
    int k1 = -1, k2 = -1;
    assert_int_equal(upgrade(s.port, NULL, &k1), 101);
    assert_int_equal(upgrade(s.port, NULL, &k2), 101);
    assert_int_equal(upgrade(s.port, NULL, NULL), 429);
    kill(s.pid, SIGUSR1);
    assert_true(ssup_wait_metric(s.port, "shard_draining", 1, T));
    assert_int_equal(upgrade(s.port, "https://ok.example", NULL), 503);

    char *t = slurp(g_log);
    assert_non_null(strstr(t, "\"msg\":\"upgrade refused\",\"peer\":\"127.0.0.1\""));
    assert_non_null(strstr(t, "\"status\":403,\"reason\":\"origin not allowed\","
                              "\"origin\":\"https://evil.example\""));
    assert_non_null(strstr(t, "\"status\":429,\"reason\":\"connection rate limit exceeded\""));
    assert_non_null(strstr(t, "\"status\":503,\"reason\":\"draining\""));
    assert_int_equal(count(t, "\"msg\":\"upgrade refused\""), 3);
    free(t);

    /* a flood: the lines stay bounded (10 a second), the refusals counted */
    uint64_t t0 = clock_mono_ms();
    for (int i = 0; i < 300; i++)
        assert_int_equal(upgrade(s.port, "https://evil.example", NULL), 403);
    double secs = (double)(clock_mono_ms() - t0) / 1000.0;
    assert_int_equal(ssup_metric(s.port, "ws_origin_rejections_total"), 301);
    t = slurp(g_log);
    size_t lines = count(t, "\"msg\":\"upgrade refused\"");
    free(t);
    assert_true(lines >= 3 + 1);
    assert_true((double)lines <= 3 + 10 + 10 * secs + 1);
    /* the next line that gets through says how many were skipped */
    assert_true(tsup_wait_until(suppressed_reported, NULL, 10000));
    close(k1);
    close(k2);
    int stv = ssup_shard_stop(&s, SIGTERM, 10000);
    assert_true(WIFEXITED(stv) && WEXITSTATUS(stv) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_upgrades_logged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
