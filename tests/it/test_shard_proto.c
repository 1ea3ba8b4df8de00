/* odin-shard client protocol against a real shard: acks, errors, close
 * codes, rate limit, pings/idle timeout, HTTP endpoints, capacity, per-IP
 * rate, handshake timeout, accept pause at WS_MAX_PENDING. */
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
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <jansson.h>

#include "tests/support/support.h"
#include "tests/support/shardsup.h"
#include "tests/support/wsclient.h"

#define T 5000

static ssup_shard *start(const char *name, const char *const env[])
{
    return ssup_start("proto", name, env);
}

static void stop(ssup_shard *s) { ssup_stop_ok(s); }

static wsc *connect_ok(int port)
{
    int status = 0;
    wsc *c = wsc_connect("127.0.0.1", port, NULL, &status);
    assert_int_equal(status, 101);
    assert_non_null(c);
    return c;
}

static char *recv_text(wsc *c) { return ssup_recv_text(c, T); }

static void expect_text(wsc *c, const char *want) { ssup_expect_text(c, want, T); }

/* Next message must be an error with this code. */
static void expect_error(wsc *c, const char *code)
{
    char *m = recv_text(c);
    char want[96];
    snprintf(want, sizeof(want), "{\"type\":\"error\",\"code\":\"%s\",", code);
    if (strncmp(m, want, strlen(want)) != 0)
        fail_msg("expected %s error, got %s", code, m);
    assert_non_null(strstr(m, "\"message\":\""));
    free(m);
}

static void expect_pong(wsc *c)
{
    assert_int_equal(wsc_send_text(c, "{\"type\":\"heartbeat\"}"), 0);
    char *m = recv_text(c);
    assert_int_equal(strncmp(m, "{\"type\":\"pong\",\"ts\":", 20), 0);
    long long ts = atoll(m + 20);
    assert_true(ts > 1600000000000LL);
    free(m);
}

static void close_clean(wsc *c)
{
    assert_int_equal(wsc_send_close(c, 1000), 0);
    assert_int_equal(wsc_wait_close(c, T), 1000);
    assert_int_equal(wsc_wait_eof(c, T), 1);
    wsc_free(c);
}

static void test_roundtrip(void **state)
{
    ssup_shard *s = start("rt", NULL);
    wsc *c = connect_ok(s->port);
    assert_int_equal(wsc_send_text(c, "{\"type\":\"subscribe\",\"data\":{\"channels\":"
                                      "[\"BTC.trade\",\"ETH.analytics\"]}}"), 0);
    expect_text(c, "{\"type\":\"subscription_ack\",\"subscribed\":"
                   "[\"BTC.trade\",\"ETH.analytics\"],\"count\":2}");
    /* resubscribing is idempotent */
    assert_int_equal(wsc_send_text(c, "{\"type\":\"subscribe\",\"data\":{\"channels\":"
                                      "[\"BTC.trade\"]}}"), 0);
    expect_text(c, "{\"type\":\"subscription_ack\",\"subscribed\":[\"BTC.trade\"],"
                   "\"count\":2}");
    expect_pong(c);
    assert_int_equal(wsc_send_text(c, "{\"type\":\"unsubscribe\",\"data\":{\"channels\":"
                                      "[\"BTC.trade\",\"SOL.trade\"]}}"), 0);
    expect_text(c, "{\"type\":\"unsubscription_ack\",\"unsubscribed\":"
                   "[\"BTC.trade\",\"SOL.trade\"],\"count\":1}");
    assert_true(ssup_wait_metric(s->port, "ws_subscriptions_active", 1, T));
    assert_int_equal(ssup_metric(s->port, "ws_subscriptions_active"), 1);
    assert_int_equal(ssup_metric(s->port, "ws_connections_active"), 1);
    /* a message split over several frames */
    const char *hb = "{\"type\":\"heartbeat\"}";
    assert_int_equal(wsc_send_frame(c, 1, 0, hb, 5), 0);
    assert_int_equal(wsc_send_frame(c, 0, 0, hb + 5, 5), 0);
    assert_int_equal(wsc_send_frame(c, 9, 1, "hi", 2), 0);   /* ping between */
    assert_int_equal(wsc_send_frame(c, 0, 1, hb + 10, strlen(hb) - 10), 0);
    wsc_frame f;
    assert_int_equal(wsc_recv(c, T, &f), 1);
    assert_int_equal(f.opcode, 10);                          /* pong first */
    assert_string_equal((char *)f.data, "hi");
    wsc_frame_free(&f);
    char *m = recv_text(c);
    assert_int_equal(strncmp(m, "{\"type\":\"pong\"", 14), 0);
    free(m);
    close_clean(c);
    assert_true(ssup_wait_metric(s->port, "ws_connections_total", 1, T));
    stop(s);
}

static void test_bad_inputs(void **state)
{
    const char *env[] = { "WS_MAX_CHANNELS=3", "WS_MAX_MESSAGE=256",
                          "WS_MAX_FRAME=1024", "WS_MAX_ERRORS=100", NULL };
    ssup_shard *s = start("bad", env);
    wsc *good = connect_ok(s->port);
    wsc *c = connect_ok(s->port);

    wsc_send_text(c, "{not json");
    expect_error(c, "INVALID_JSON");
    wsc_send_text(c, "[1,2,3]");
    expect_error(c, "INVALID_JSON");
    wsc_send_text(c, "{\"type\":\"subscribe\"}");
    expect_error(c, "INVALID_JSON");
    wsc_send_text(c, "{\"type\":\"dance\"}");
    expect_error(c, "UNKNOWN_TYPE");
    wsc_send_text(c, "{\"data\":{}}");
    expect_error(c, "UNKNOWN_TYPE");
    wsc_send_text(c, "{\"type\":\"subscribe\",\"data\":{\"channels\":[\"BTC\"]}}");
    expect_error(c, "INVALID_CHANNEL");
    wsc_send_text(c, "{\"type\":\"subscribe\",\"data\":{\"channels\":[\"BTC.trade\","
                     "\"no/slash.trade\"]}}");
    expect_error(c, "INVALID_CHANNEL");
    wsc_send_text(c, "{\"type\":\"subscribe\",\"data\":{\"channels\":[7]}}");
    expect_error(c, "INVALID_CHANNEL");
    /* nothing of a rejected message was subscribed */
    assert_int_equal(ssup_metric(s->port, "ws_subscriptions_active"), 0);
    wsc_send_text(c, "{\"type\":\"subscribe\",\"data\":{\"channels\":"
                     "[\"A.trade\",\"B.trade\",\"C.trade\",\"D.trade\"]}}");
    expect_error(c, "TOO_MANY_SUBSCRIPTIONS");
    wsc_send_text(c, "{\"type\":\"subscribe\",\"data\":{\"channels\":"
                     "[\"A.trade\",\"B.trade\"]}}");
    expect_text(c, "{\"type\":\"subscription_ack\",\"subscribed\":[\"A.trade\","
                   "\"B.trade\"],\"count\":2}");
    wsc_send_text(c, "{\"type\":\"subscribe\",\"data\":{\"channels\":"
                     "[\"C.trade\",\"D.trade\"]}}");
    expect_error(c, "TOO_MANY_SUBSCRIPTIONS");
    char big[300];
    snprintf(big, sizeof(big), "{\"type\":\"heartbeat\",\"pad\":\"%0*d\"}", 250, 0);
    wsc_send_text(c, big);
    expect_error(c, "MESSAGE_TOO_LARGE");
    /* still served after all that */
    expect_pong(c);
    expect_pong(good);
    assert_true(ssup_metric(s->port,
                            "ws_client_errors_total{code=\"INVALID_JSON\"}") >= 3);
    assert_true(ssup_metric(s->port,
                            "ws_client_errors_total{code=\"MESSAGE_TOO_LARGE\"}") >= 1);
    wsc_free(c);

    /* protocol violations get RFC close codes; others keep working */
    /* as odin-ws: a binary message is ignored (counted), not closed */
    c = connect_ok(s->port);
    double bin0 = ssup_metric(s->port, "ws_binary_frames_ignored_total");
    assert_true(bin0 >= 0);
    wsc_send_frame(c, 2, 1, "\x01\x02", 2);
    expect_pong(c);                                          /* no reply to it */
    assert_true(ssup_metric(s->port, "ws_binary_frames_ignored_total") == bin0 + 1);
    wsc_free(c);
    expect_pong(good);

    c = connect_ok(s->port);
    char huge[2000];
    memset(huge, 'a', sizeof(huge));
    wsc_send_frame(c, 1, 1, huge, sizeof(huge));
    assert_int_equal(wsc_wait_close(c, T), 1009);            /* > WS_MAX_FRAME */
    wsc_free(c);

    c = connect_ok(s->port);
    wsc_send_raw(c, "\x81\x02hi", 4);                        /* unmasked */
    assert_int_equal(wsc_wait_close(c, T), 1002);
    wsc_free(c);

    c = connect_ok(s->port);
    wsc_send_frame(c, 1, 1, "\xc3\x28", 2);                  /* bad UTF-8 */
    assert_int_equal(wsc_wait_close(c, T), 1007);
    wsc_free(c);

    c = connect_ok(s->port);
    wsc_send_frame(c, 9, 1, huge, 200);                      /* ping > 125 */
    assert_int_equal(wsc_wait_close(c, T), 1002);
    wsc_free(c);

    c = connect_ok(s->port);
    wsc_send_frame(c, 0, 1, "x", 1);                         /* stray cont. */
    assert_int_equal(wsc_wait_close(c, T), 1002);
    wsc_free(c);

    expect_pong(good);
    assert_true(ssup_metric(s->port, "ws_disconnects_total{code=\"1003\"}") == 0);
    assert_true(ssup_metric(s->port, "ws_disconnects_total{code=\"1009\"}") >= 1);
    close_clean(good);
    stop(s);
}

static void test_rate_limit_and_1008(void **state)
{
    const char *env[] = { "WS_MSG_BURST=5", "WS_MSG_RATE=0.001",
                          "WS_MAX_ERRORS=3", NULL };
    ssup_shard *s = start("rate", env);
    wsc *c = connect_ok(s->port);
    wsc *other = connect_ok(s->port);
    for (int i = 0; i < 5; i++)
        expect_pong(c);
    int errors = 0, code = -1;
    for (int i = 0; i < 10 && code < 0; i++) {
        if (wsc_send_text(c, "{\"type\":\"heartbeat\"}") != 0)
            break;
        for (;;) {
            char *m = NULL;
            int r = wsc_recv_text(c, T, &m, NULL);
            if (r == -2) {
                code = c->close_code;
                break;
            }
            assert_int_equal(r, 1);
            assert_non_null(strstr(m, "\"code\":\"RATE_LIMIT_EXCEEDED\""));
            errors++;
            free(m);
            break;
        }
    }
    /* errors 1..3 are tolerated, the 4th is answered and then 1008 */
    if (code < 0)
        code = wsc_wait_close(c, T);
    assert_int_equal(code, 1008);
    assert_int_equal(errors, 4);
    wsc_free(c);
    expect_pong(other);
    assert_true(ssup_metric(s->port, "ws_message_ratelimit_total") >= 4);
    assert_true(ssup_metric(s->port, "ws_disconnects_total{code=\"1008\"}") >= 1);
    close_clean(other);
    stop(s);
}

static void test_ping_and_idle(void **state)
{
    const char *env[] = { "WS_PING_INTERVAL=0.2", "WS_IDLE_TIMEOUT=2", NULL };
    ssup_shard *s = start("idle", env);
    wsc *silent = connect_ok(s->port);
    wsc *live = connect_ok(s->port);
    /* The live client answers every ping (raw frames, so pings are seen);
     * the silent one never sends anything and must be closed with 1001. */
    int pings = 0, code = -3;
    for (int i = 0; i < 300 && code == -3; i++) {
        wsc_frame f;
        while (wsc_recv(live, 0, &f) == 1) {
            assert_int_equal(f.opcode, 9);
            assert_int_equal(f.len, 0);
            pings++;
            assert_int_equal(wsc_send_frame(live, 10, 1, f.data, f.len), 0);
            wsc_frame_free(&f);
        }
        int r = wsc_recv(silent, 50, &f);
        if (r < 0)
            code = -1;
        if (r == 1) {
            if (f.opcode == 8)
                code = f.len >= 2 ? (f.data[0] << 8) | f.data[1] : 1005;
            wsc_frame_free(&f);
        }
    }
    assert_int_equal(code, 1001);
    assert_true(pings >= 3);
    wsc_free(silent);
    assert_true(ssup_metric(s->port, "ws_idle_timeouts_total") >= 1);
    expect_pong(live);
    close_clean(live);
    stop(s);
}

static void test_http(void **state)
{
    ssup_shard *s = start("http", NULL);
    char *body = NULL;
    assert_int_equal(tsup_http_get(s->port, "/health", &body), 200);
    assert_non_null(strstr(body, "\"status\":\""));
    assert_non_null(strstr(body, "\"capacity\":{"));
    assert_non_null(strstr(body, "\"current\":0"));
    assert_non_null(strstr(body, "\"redis\":{"));
    assert_non_null(strstr(body, "\"router\":{\"status\":\"down\",\"connections\":0}"));
    assert_non_null(strstr(body, "\"uptime\":"));
    free(body);
    assert_int_equal(tsup_http_get(s->port, "/metrics", &body), 200);
    assert_true(tsup_prom_value(body, "shard_fd_limit") > 0);
    assert_true(tsup_prom_value(body, "shard_max_connections") > 0);
    assert_true(tsup_prom_value(body, "shard_max_connections") <=
                tsup_prom_value(body, "shard_fd_limit"));
    assert_true(tsup_prom_value(body, "ws_connections_active") == 0);
    free(body);
    assert_int_equal(tsup_http_get(s->port, "/nope", NULL), 404);
    /* no upgrade: the reason holds quotes, the body is still valid JSON */
    assert_int_equal(tsup_http_get(s->port, "/ws", &body), 400);
    json_error_t jerr;
    json_t *j = json_loads(body, 0, &jerr);
    if (!j)
        fail_msg("error body is not JSON: %s (%s)", body, jerr.text);
    assert_string_equal(json_string_value(json_object_get(j, "error")),
                        "missing \"Upgrade: websocket\"");
    json_decref(j);
    free(body);
    wsc_opts o = { .extra_headers = "X-Test: 1\r\n" };
    wsc *c = wsc_connect_raw("127.0.0.1", s->port, &o);
    assert_non_null(c);
    assert_int_equal(c->status, 101);
    wsc_free(c);
    stop(s);
}

/* SHARD_TCP_ADDR on a non-loopback address needs SHARD_INGRESS_SECRET (or
 * an explicit SHARD_INGRESS_INSECURE=true): otherwise the shard refuses to
 * start, before it listens anywhere. */
static void test_tcp_ingress_needs_secret(void **state)
{
    char id[96], env_id[128], env_tcp[64], env_ws[64], env_sock[600], env_redis[160];
    snprintf(id, sizeof id, "proto-tcpsec-%d", (int)getpid());
    snprintf(env_id, sizeof env_id, "SHARD_ID=%s", id);
    snprintf(env_tcp, sizeof env_tcp, "SHARD_TCP_ADDR=0.0.0.0:%d", tsup_free_port());
    snprintf(env_ws, sizeof env_ws, "WS_ADDR=127.0.0.1:%d", tsup_free_port());
    char *sock = tsup_tmp("tcpsec.sock");
    snprintf(env_sock, sizeof env_sock, "SHARD_SOCKET=%s", sock);
    free(sock);
    snprintf(env_redis, sizeof env_redis, "REDIS_URL=%s", tsup_env("ODIN_REDIS_URL"));
    char *argv[] = { (char *)tsup_bin("odin-shard"), NULL };
    char *env[] = { env_id, env_tcp, env_ws, env_sock, env_redis, NULL };
    pid_t p = tsup_spawn(argv, env);
    int st = tsup_stop(p, 0, 10000);
    assert_true(WIFEXITED(st));
    assert_int_not_equal(WEXITSTATUS(st), 0);
    assert_int_equal(tsup_wait_tcp(atoi(strchr(env_ws, ':') + 1), 200), 0);
    /* explicitly allowed: it starts (on a port picked now) */
    snprintf(env_tcp, sizeof env_tcp, "SHARD_TCP_ADDR=0.0.0.0:%d", tsup_free_port());
    ssup_shard s;
    const char *ok[] = { env_tcp, "SHARD_INGRESS_INSECURE=true", NULL };
    assert_int_equal(ssup_shard_start(&s, id, NULL, ok), 0);
    stop(&s);
    /* with a secret: it starts */
    snprintf(env_tcp, sizeof env_tcp, "SHARD_TCP_ADDR=0.0.0.0:%d", tsup_free_port());
    const char *sec[] = { env_tcp, "SHARD_INGRESS_SECRET=x", NULL };
    assert_int_equal(ssup_shard_start(&s, id, NULL, sec), 0);
    stop(&s);
}

/* WS_ALLOWED_ORIGINS: a browser page from another origin gets 403. */
static void test_origin(void **state)
{
    const char *env[] = { "WS_ALLOWED_ORIGINS=https://app.odin.test", NULL };
    ssup_shard *s = start("origin", env);
    wsc_opts bad = { .extra_headers = "Origin: https://evil.test\r\n" };
    wsc *c = wsc_connect_raw("127.0.0.1", s->port, &bad);
    assert_non_null(c);
    assert_int_equal(c->status, 403);
    assert_non_null(strstr(c->body, "origin not allowed"));
    wsc_free(c);
    wsc_opts good = { .extra_headers = "Origin: https://app.odin.test\r\n" };
    c = wsc_connect_raw("127.0.0.1", s->port, &good);
    assert_non_null(c);
    assert_int_equal(c->status, 101);
    wsc_free(c);
    c = connect_ok(s->port);   /* no Origin: a server-side client */
    wsc_free(c);
    assert_true(ssup_metric(s->port, "ws_origin_rejections_total") == 1);
    stop(s);
}

/* Send the header of a masked text frame declaring `declared` bytes and
 * the first `sent` bytes of its payload. */
static void send_partial(wsc *c, size_t declared, size_t sent)
{
    uint8_t *b = calloc(1, 14 + sent);
    size_t h = 0;
    b[h++] = 0x81;
    b[h++] = 0x80 | 126;
    b[h++] = (uint8_t)(declared >> 8);
    b[h++] = (uint8_t)declared;
    memset(b + h, 0, 4);   /* zero mask: payload as is */
    h += 4;
    memset(b + h, ' ', sent);
    assert_int_equal(wsc_send_raw(c, b, h + sent), 0);
    free(b);
}

static int partial_settled(void *arg)
{
    int port = *(int *)arg;
    return ssup_metric(port, "ws_partial_budget_closes_total") +
           ssup_metric(port, "ws_parser_contexts") >= 24;
}

/* Hostile input: half-sent frames are held up to WS_PARTIAL_BUDGET for the
 * whole shard (over it 1013), for at most WS_PARTIAL_TIMEOUT (then 1008),
 * and a well-behaved client is served throughout. */
static void test_partial_frames(void **state)
{
    enum { N = 24, SENT = 20000 };
    /* room for about 8 connections of (8790 + 20000) bytes */
    const char *env[] = { "WS_PARTIAL_BUDGET=240000", "WS_PARTIAL_TIMEOUT=4", NULL };
    ssup_shard *s = start("partial", env);
    wsc *cs[N];
    for (int i = 0; i < N; i++) {
        cs[i] = connect_ok(s->port);
        send_partial(cs[i], 60000, SENT);
    }
    /* every connection is either held or refused with 1013 */
    assert_int_equal(tsup_wait_until(partial_settled, &s->port, T), 1);
    int refused = 0, held = 0;
    for (int i = 0; i < N; i++) {
        int code = wsc_wait_close(cs[i], 50);
        if (code == 1013)
            refused++;
        else if (code == -2)
            held++;
        else
            fail_msg("connection %d: close %d", i, code);
    }
    printf("partial frames: %d held, %d refused with 1013\n", held, refused);
    assert_int_equal(held + refused, N);
    assert_true(held >= 6 && held <= 9);
    assert_true(ssup_metric(s->port, "ws_partial_budget_closes_total") == refused);
    double pb = ssup_metric(s->port, "ws_partial_bytes");
    assert_true(pb <= 240000 && pb >= held * (8790.0 + SENT));
    /* a well-behaved client still subscribes while the budget is full */
    wsc *good = connect_ok(s->port);
    assert_int_equal(wsc_send_text(good, "{\"type\":\"subscribe\",\"data\":{\"channels\":[\"BTC.trade\"]}}"), 0);
    char *m = recv_text(good);
    assert_non_null(strstr(m, "subscription_ack"));
    free(m);
    /* the held ones never finish: closed with 1008 by the partial timeout */
    for (int i = 0; i < N; i++) {
        if (cs[i]->close_code == 1013)
            continue;
        assert_int_equal(wsc_wait_close(cs[i], 5000), 1008);
    }
    assert_int_equal(ssup_wait_metric(s->port, "ws_partial_timeouts_total", held, 5000), 1);
    assert_true(ssup_metric(s->port, "ws_partial_bytes") == 0);
    assert_true(ssup_metric(s->port, "ws_parser_contexts") == 0);
    for (int i = 0; i < N; i++)
        wsc_free(cs[i]);
    /* a close frame with a 1-byte payload: 1002, not an empty close */
    wsc *c = connect_ok(s->port);
    assert_int_equal(wsc_send_frame(c, 8, 1, "\x03", 1), 0);
    assert_int_equal(wsc_wait_close(c, T), 1002);
    wsc_free(c);
    wsc_free(good);
    stop(s);
}

static void test_capacity(void **state)
{
    const char *env[] = { "WS_MAX_CONNECTIONS=2", NULL };
    ssup_shard *s = start("cap", env);
    assert_true(ssup_metric(s->port, "shard_max_connections") == 2);
    wsc *a = connect_ok(s->port);
    wsc *b = connect_ok(s->port);
    int status = 0;
    wsc *c = wsc_connect("127.0.0.1", s->port, NULL, &status);
    assert_null(c);
    assert_int_equal(status, 503);
    assert_true(ssup_metric(s->port, "ws_capacity_rejections_total") == 1);
    char *body = NULL;
    assert_int_equal(tsup_http_get(s->port, "/health", &body), 503);
    assert_non_null(strstr(body, "\"status\":\"unhealthy\""));
    free(body);
    expect_pong(a);
    close_clean(b);
    /* the slot frees once the close handshake is over */
    int ok = 0;
    for (int i = 0; i < 500 && !ok; i++) {
        c = wsc_connect("127.0.0.1", s->port, NULL, &status);
        ok = c != NULL;
        if (!ok) {
            assert_int_equal(status, 503);
            poll(NULL, 0, 20);
        }
    }
    assert_true(ok);
    expect_pong(c);
    wsc_free(c);
    wsc_free(a);
    stop(s);
}

static int health_is(void *arg)
{
    const int *a = arg;   /* {port, want status} */
    return tsup_http_get(a[0], "/health", NULL) == a[1];
}

/* SIGUSR1 drains: /health 503 "draining", new upgrades 503, open clients
 * keep being served; a second SIGUSR1 ends the drain. */
static void test_drain(void **state)
{
    (void)state;
    ssup_shard *s = start("drain", NULL);
    wsc *a = connect_ok(s->port);
    assert_int_equal(kill(s->pid, SIGUSR1), 0);
    int want503[2] = { s->port, 503 };
    assert_true(tsup_wait_until(health_is, want503, T));
    char *body = NULL;
    assert_int_equal(tsup_http_get(s->port, "/health", &body), 503);
    assert_non_null(strstr(body, "\"status\":\"draining\""));
    free(body);
    int status = 0;
    wsc *b = wsc_connect("127.0.0.1", s->port, NULL, &status);
    assert_null(b);
    assert_int_equal(status, 503);
    expect_pong(a);   /* the open client is still served */
    assert_int_equal(kill(s->pid, SIGUSR1), 0);
    int want200[2] = { s->port, 200 };
    assert_true(tsup_wait_until(health_is, want200, T));
    b = connect_ok(s->port);
    expect_pong(b);
    wsc_free(b);
    wsc_free(a);
    stop(s);
}

static void test_ip_rate(void **state)
{
    const char *env[] = { "WS_IP_RATE=0.001", "WS_IP_BURST=2", NULL };
    ssup_shard *s = start("iprate", env);
    wsc_opts o2 = { .src_addr = "127.0.0.2" };
    wsc_opts o3 = { .src_addr = "127.0.0.3" };
    int st = 0;
    wsc *a = wsc_connect("127.0.0.1", s->port, &o2, &st);
    assert_non_null(a);
    wsc *b = wsc_connect("127.0.0.1", s->port, &o2, &st);
    assert_non_null(b);
    wsc *c = wsc_connect("127.0.0.1", s->port, &o2, &st);
    assert_null(c);
    assert_int_equal(st, 429);
    c = wsc_connect("127.0.0.1", s->port, &o3, &st);   /* another IP */
    assert_non_null(c);
    assert_true(ssup_metric(s->port, "ws_ratelimit_rejections_total") == 1);
    /* /health is not rate limited */
    assert_int_equal(tsup_http_get(s->port, "/health", NULL), 200);
    wsc_free(a);
    wsc_free(b);
    wsc_free(c);
    stop(s);
}

static int raw_connect(int port, const char *src)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in s = { .sin_family = AF_INET };
    inet_pton(AF_INET, src, &s.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&s, sizeof s), 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* 1 if the server closed fd within ms (EOF or reset), 0 if it is still open. */
static int closed_within(int fd, int ms)
{
    struct pollfd pf = { fd, POLLIN, 0 };
    if (poll(&pf, 1, ms) != 1)
        return 0;
    char b[64];
    return read(fd, b, sizeof b) <= 0;
}

/* Handshake pool fairness: one address holding WS_IP_MAX_PENDING silent
 * connections cannot take more, while other addresses still upgrade; its
 * slots come back when its connections go. */
static void test_ip_max_pending(void **state)
{
    enum { CAP = 4, TRY = 10 };
    const char *env[] = { "WS_IP_MAX_PENDING=4", "WS_MAX_PENDING=16", "WS_HANDSHAKE_TIMEOUT=30",
                          NULL };
    ssup_shard *s = start("ippend", env);
    int fds[TRY], held = 0, refused = 0;
    for (int i = 0; i < TRY; i++)
        fds[i] = raw_connect(s->port, "127.0.0.4");
    /* the refused ones are closed at once; the held ones stay open */
    assert_true(ssup_wait_metric(s->port, "ws_ip_pending_rejections_total", TRY - CAP, T));
    for (int i = 0; i < TRY; i++) {
        if (closed_within(fds[i], 100))
            refused++;
        else
            held++;
    }
    assert_int_equal(held, CAP);
    assert_int_equal(refused, TRY - CAP);
    /* another address is served */
    wsc_opts o5 = { .src_addr = "127.0.0.5" };
    int st = 0;
    wsc *good = wsc_connect("127.0.0.1", s->port, &o5, &st);
    assert_non_null(good);
    assert_int_equal(st, 101);
    /* the same address upgrades once its silent connections are gone */
    for (int i = 0; i < TRY; i++)
        close(fds[i]);
    wsc_opts o4 = { .src_addr = "127.0.0.4" };
    /* the shard has noticed the closes: in the HTTP phase, only the
     * metrics request itself */
    assert_true(ssup_wait_metric_eq(s->port, "ws_connections_pending", 1, T));
    wsc *again = wsc_connect("127.0.0.1", s->port, &o4, &st);
    assert_non_null(again);
    assert_int_equal(st, 101);
    wsc_free(again);
    wsc_free(good);
    stop(s);
}

/* Connections the process `pid` has accepted on TCP `port` and holds open:
 * its fds that are sockets ESTABLISHED with that local port
 * (/proc/net/tcp, IPv4).  Connections still in the listen backlog are
 * ESTABLISHED too but belong to no process yet. */
static int accepted_on(pid_t pid, int port)
{
    enum { MAXI = 4096 };
    static unsigned long inodes[MAXI];
    int n = 0;
    FILE *f = fopen("/proc/net/tcp", "r");
    assert_non_null(f);
    char line[512];
    while (fgets(line, sizeof line, f)) {
        unsigned lport, st;
        unsigned long ino;
        if (sscanf(line, " %*d: %*x:%x %*x:%*x %x %*x:%*x %*x:%*x %*x %*u %*d %lu",
                   &lport, &st, &ino) == 3 && (int)lport == port && st == 0x01 && ino &&
            n < MAXI)
            inodes[n++] = ino;
    }
    fclose(f);
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    int held = 0;
    for (int fd = 0; fd < 1024; fd++) {
        char path[96], target[64];
        snprintf(path, sizeof path, "%s/%d", dir, fd);
        ssize_t l = readlink(path, target, sizeof target - 1);
        if (l <= 0)
            continue;
        target[l] = 0;
        unsigned long ino;
        if (sscanf(target, "socket:[%lu]", &ino) != 1)
            continue;
        for (int i = 0; i < n; i++)
            if (inodes[i] == ino) {
                held++;
                break;
            }
    }
    return held;
}

/* WS_MAX_PENDING full: the shard stops accepting instead of accepting and
 * closing (a close with the request unread is a RST).  The clients past the
 * cap wait in the listen backlog, none is closed, the shard never holds more
 * than the cap, and every one upgrades once slots free. */
static const char upgrade_req[] =
    "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/* Reads the answer to upgrade_req on fd (connection number i): 1 if it is
 * 101; fails the test on no answer, a close or another status. */
static int expect_upgraded(int fd, int i)
{
    char head[1024];
    size_t have = 0;
    while (have < sizeof head - 1) {
        struct pollfd p1 = { fd, POLLIN, 0 };
        if (poll(&p1, 1, T) != 1)
            fail_msg("connection %d: no answer to its upgrade", i);
        ssize_t r = read(fd, head + have, sizeof head - 1 - have);
        if (r <= 0)
            fail_msg("connection %d: %s during the upgrade", i,
                     r == 0 ? "closed" : strerror(errno));
        have += (size_t)r;
        head[have] = 0;
        if (strstr(head, "\r\n\r\n"))
            break;
    }
    if (strncmp(head, "HTTP/1.1 101 ", 13) != 0)
        fail_msg("connection %d: %.40s", i, head);
    return 1;
}

static void test_pending_pause(void **state)
{
    enum { CAP = 8, N = 40 };
    const char *env[] = { "WS_MAX_PENDING=8", "WS_HANDSHAKE_TIMEOUT=30", NULL };
    ssup_shard *s = start("pendpause", env);
    int fds[N];
    for (int i = 0; i < N; i++)
        fds[i] = raw_connect(s->port, "127.0.0.6");   /* silent for now */
    /* the shard takes CAP of them and no more */
    int held = 0;
    for (int i = 0; i < 500 && held < CAP; i++) {
        held = accepted_on(s->pid, s->port);
        assert_in_range(held, 0, CAP);
        if (held < CAP)
            poll(NULL, 0, 10);
    }
    assert_int_equal(held, CAP);
    /* nobody is closed or reset, and the shard still holds exactly CAP */
    struct pollfd pf[N];
    for (int i = 0; i < N; i++)
        pf[i] = (struct pollfd){ fds[i], POLLIN, 0 };
    int ready = poll(pf, N, 300);
    for (int i = 0; i < N && ready > 0; i++)
        if (pf[i].revents)
            fail_msg("connection %d was closed or answered while silent (revents %#x)", i,
                     (unsigned)pf[i].revents);
    assert_int_equal(ready, 0);
    assert_int_equal(accepted_on(s->pid, s->port), CAP);
    /* now every one asks for the upgrade: all N complete, those past the
     * cap as slots free */
    for (int i = 0; i < N; i++)
        assert_int_equal(write(fds[i], upgrade_req, sizeof upgrade_req - 1),
                         (ssize_t)(sizeof upgrade_req - 1));
    int upgraded = 0;
    for (int i = 0; i < N; i++)
        upgraded += expect_upgraded(fds[i], i);
    assert_int_equal(upgraded, N);
    assert_int_equal((int)ssup_metric(s->port, "ws_connections_active"), N);
    assert_int_equal((int)ssup_metric(s->port, "ws_connections_total"), N);
    assert_int_equal((int)ssup_metric(s->port, "ws_pending_rejections_total"), 0);
    assert_true(ssup_metric(s->port, "ws_accept_paused_total") >= 1);
    assert_true(ssup_metric(s->port, "ws_accept_paused_seconds_total") > 0);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    stop(s);
}

static void test_handshake_timeout(void **state)
{
    const char *env[] = { "WS_HANDSHAKE_TIMEOUT=0.3", NULL };
    ssup_shard *s = start("hs", env);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)s->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(write(fd, "GET /ws HTTP/1.1\r\n", 18), 18);  /* never ends */
    struct pollfd pf = { fd, POLLIN, 0 };
    assert_int_equal(poll(&pf, 1, 10000), 1);
    char b[16];
    assert_true(read(fd, b, sizeof(b)) <= 0);    /* closed by the shard */
    close(fd);
    assert_true(ssup_metric(s->port, "ws_handshake_timeouts_total") >= 1);
    stop(s);
}

/*
 * The handshake timeout meets a late loop: the shard is stopped (SIGSTOP)
 * for twice WS_HANDSHAKE_TIMEOUT (1.5 s: the 120 connections are accepted
 * well within it) while 100 clients send a whole upgrade
 * request and 20 a partial one.  When it resumes, epoll hands out 32 ready
 * sockets per turn and the timer runs after them, so most deadlines pass
 * with the request unread.  The shard reads before it judges: all 100 are
 * upgraded, and the 20 slow ones are closed with a FIN (EOF), not the RST
 * that a close with unread input sends.  Fails on a timeout that kills
 * without reading (about 68 resets).
 */
static void test_handshake_late_loop(void **state)
{
    enum { N = 100, SLOW = 20 };
    const char *env[] = { "WS_HANDSHAKE_TIMEOUT=1.5", "WS_IP_MAX_PENDING=0", NULL };
    ssup_shard *s = start("hslate", env);
    int fds[N + SLOW];
    for (int i = 0; i < N + SLOW; i++)
        fds[i] = raw_connect(s->port, "127.0.0.7");
    int held = 0;
    for (int i = 0; i < 500 && held < N + SLOW; i++) {
        held = accepted_on(s->pid, s->port);
        if (held < N + SLOW)
            poll(NULL, 0, 10);
    }
    assert_int_equal(held, N + SLOW);
    assert_int_equal(kill(s->pid, SIGSTOP), 0);
    for (int i = 0; i < N + SLOW; i++) {
        size_t len = i < N ? sizeof upgrade_req - 1 : 40;   /* the slow: a part */
        assert_int_equal(write(fds[i], upgrade_req, len), (ssize_t)len);
    }
    poll(NULL, 0, 3000);   /* the stall itself: twice the handshake timeout */
    assert_int_equal(kill(s->pid, SIGCONT), 0);
    int upgraded = 0, fin = 0;
    for (int i = 0; i < N; i++)
        upgraded += expect_upgraded(fds[i], i);
    for (int i = N; i < N + SLOW; i++) {
        struct pollfd p1 = { fds[i], POLLIN, 0 };
        assert_int_equal(poll(&p1, 1, T), 1);
        char b[64];
        ssize_t r = read(fds[i], b, sizeof b);
        if (r != 0)
            fail_msg("slow connection %d: %s, want EOF", i,
                     r < 0 ? strerror(errno) : "data");
        fin++;
    }
    fprintf(stderr, "after the stall: %d upgraded, %d slow ones closed with a FIN\n",
            upgraded, fin);
    assert_int_equal(upgraded, N);
    assert_int_equal(fin, SLOW);
    assert_int_equal((int)ssup_metric(s->port, "ws_handshake_timeouts_total"), SLOW);
    for (int i = 0; i < N + SLOW; i++)
        close(fds[i]);
    stop(s);
}

static void test_head_too_large(void **state)
{
    ssup_shard *s = start("431", NULL);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)s->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char req[10000];
    int n = snprintf(req, sizeof(req), "GET /ws HTTP/1.1\r\nX-Big: ");
    memset(req + n, 'a', sizeof(req) - (size_t)n);
    assert_int_equal(write(fd, req, sizeof(req)), (ssize_t)sizeof(req));
    char resp[256] = "";
    size_t got = 0;
    struct pollfd pf = { fd, POLLIN, 0 };
    while (got < sizeof(resp) - 1 && poll(&pf, 1, 5000) == 1) {
        ssize_t r = read(fd, resp + got, sizeof(resp) - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    resp[got] = 0;
    assert_int_equal(strncmp(resp, "HTTP/1.1 431 ", 13), 0);
    close(fd);
    stop(s);
}

/* WS_SHARED_ADDR: two shards, each with its own port, share one more port
 * through SO_REUSEPORT; WS_REUSEPORT does the same for WS_ADDR itself. */
static void test_reuseport(void **state)
{
    int shared = tsup_free_port();
    char env_shared[64];
    snprintf(env_shared, sizeof(env_shared), "WS_SHARED_ADDR=127.0.0.1:%d", shared);
    const char *env[] = { env_shared, NULL };
    ssup_shard a, b;
    char id[96];
    snprintf(id, sizeof(id), "proto-rpa-%d", (int)getpid());
    assert_int_equal(ssup_shard_start(&a, id, NULL, env), 0);
    snprintf(id, sizeof(id), "proto-rpb-%d", (int)getpid());
    assert_int_equal(ssup_shard_start(&b, id, NULL, env), 0);
    wsc *c1 = connect_ok(shared);
    wsc *c2 = connect_ok(a.port);
    wsc *c3 = connect_ok(b.port);
    expect_pong(c1);
    expect_pong(c2);
    expect_pong(c3);
    wsc_free(c1);
    wsc_free(c2);
    wsc_free(c3);
    stop(&a);
    stop(&b);

    /* same WS_ADDR twice: refused without WS_REUSEPORT, fine with it */
    char env_addr[64];
    snprintf(env_addr, sizeof(env_addr), "WS_ADDR=127.0.0.1:%d", shared);
    const char *e1[] = { env_addr, "WS_REUSEPORT=1", NULL };
    snprintf(id, sizeof(id), "proto-rpc-%d", (int)getpid());
    assert_int_equal(ssup_shard_start(&a, id, NULL, e1), 0);
    snprintf(id, sizeof(id), "proto-rpd-%d", (int)getpid());
    assert_int_equal(ssup_shard_start(&b, id, NULL, e1), 0);
    stop(&a);
    stop(&b);
}

static void test_bind_conflict_fails(void **state)
{
    ssup_shard *s = start("bind1", NULL);
    char env_addr[64];
    snprintf(env_addr, sizeof(env_addr), "WS_ADDR=127.0.0.1:%d", s->port);
    char id[96], env_id[128], *sock = tsup_tmp("bind2.sock");
    snprintf(id, sizeof(id), "proto-bind2-%d", (int)getpid());
    snprintf(env_id, sizeof(env_id), "SHARD_ID=%s", id);
    char env_sock[600];
    snprintf(env_sock, sizeof(env_sock), "SHARD_SOCKET=%s", sock);
    free(sock);
    char env_redis[160];
    snprintf(env_redis, sizeof(env_redis), "REDIS_URL=%s", tsup_env("ODIN_REDIS_URL"));
    char *env[] = { env_addr, env_id, env_sock, env_redis, NULL };
    char *argv[] = { (char *)tsup_bin("odin-shard"), NULL };
    pid_t p = tsup_spawn(argv, env);
    int st = tsup_stop(p, 0, 10000);   /* wait for it to give up */
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    /* same socket path as a live shard: refused too */
    char env_sock2[600];
    snprintf(env_sock2, sizeof(env_sock2), "SHARD_SOCKET=%s", s->sock);
    char env_addr2[64];
    snprintf(env_addr2, sizeof(env_addr2), "WS_ADDR=127.0.0.1:%d", tsup_free_port());
    char *env2[] = { env_addr2, env_id, env_sock2, env_redis, NULL };
    p = tsup_spawn(argv, env2);
    st = tsup_stop(p, 0, 10000);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    wsc *c = connect_ok(s->port);
    expect_pong(c);
    wsc_free(c);
    stop(s);
}

static void test_help(void **state)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "%s --help", tsup_bin("odin-shard"));
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    buf out = { 0 };
    char b[4096];
    size_t n;
    while ((n = fread(b, 1, sizeof(b), f)) > 0)
        buf_append(&out, b, n);
    buf_append(&out, "", 1);
    assert_int_equal(pclose(f), 0);
    static const char *names[] = {
        "SHARD_ID", "WS_ADDR", "WS_MAX_CONNECTIONS", "SHARD_SOCKET", "REDIS_URL",
        "REDIS_PREFIX", "LOG_LEVEL", "WS_PING_INTERVAL", "WS_IDLE_TIMEOUT",
        "WS_HANDSHAKE_TIMEOUT", "WS_MAX_MESSAGE", "WS_MAX_CHANNELS",
        "WS_MSG_RATE", "WS_MSG_BURST", "WS_SEND_QUEUE_MSGS", "WS_SEND_QUEUE_BYTES",
        "WS_IP_RATE", "WS_REUSEPORT", "SHARD_LEASE_TTL", "--ws-max-connections",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strstr(out.data, names[i]))
            fail_msg("--help does not mention %s", names[i]);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_rate_limit_and_1008),
        cmocka_unit_test(test_ping_and_idle),
        cmocka_unit_test(test_http),
        cmocka_unit_test(test_capacity),
        cmocka_unit_test(test_drain),
        cmocka_unit_test(test_ip_rate),
        cmocka_unit_test(test_handshake_timeout),
        cmocka_unit_test(test_head_too_large),
        cmocka_unit_test(test_reuseport),
        cmocka_unit_test(test_bind_conflict_fails),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_partial_frames),
        cmocka_unit_test(test_origin),
        cmocka_unit_test(test_ip_max_pending),
        cmocka_unit_test(test_pending_pause),
        cmocka_unit_test(test_handshake_late_loop),
        cmocka_unit_test(test_tcp_ingress_needs_secret),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
