#include "tests/support/shardsup.h"
#include "tests/support/support.h"

#include <errno.h>
#include <msgpack.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <cmocka.h>

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Shards still running when the test process exits (a failed assertion
 * skips the test's own stop) are killed by an atexit handler. */
#define MAX_LIVE 64
static pid_t g_live[MAX_LIVE];

static void kill_live(void)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (g_live[i] > 0) {
            tsup_stop(g_live[i], SIGKILL, 2000);
            g_live[i] = 0;
        }
}

static void track(pid_t pid, int add)
{
    static int registered;
    if (!registered) {
        atexit(kill_live);
        registered = 1;
    }
    for (int i = 0; i < MAX_LIVE; i++) {
        if (add && g_live[i] <= 0) {
            g_live[i] = pid;
            return;
        }
        if (!add && g_live[i] == pid) {
            g_live[i] = 0;
            return;
        }
    }
}

int ssup_shard_start(ssup_shard *s, const char *id, const char *redis_url,
                     const char *const extra_env[])
{
    memset(s, 0, sizeof(*s));
    snprintf(s->id, sizeof(s->id), "%s", id);
    s->port = tsup_free_port();
    char name[160];
    snprintf(name, sizeof(name), "%s.sock", id);
    char *sock = tsup_tmp(name);
    snprintf(s->sock, sizeof(s->sock), "%s", sock);
    free(sock);
    snprintf(s->redis_url, sizeof(s->redis_url), "%s",
             redis_url ? redis_url : tsup_env("ODIN_REDIS_URL"));

    /* defaults first, extras after: putenv in order, later wins */
    static char envs[48][600];
    char *env[49];
    int n = 0;
    snprintf(envs[n], sizeof(envs[n]), "SHARD_ID=%s", s->id), n++;
    snprintf(envs[n], sizeof(envs[n]), "WS_ADDR=127.0.0.1:%d", s->port), n++;
    snprintf(envs[n], sizeof(envs[n]), "SHARD_SOCKET=%s", s->sock), n++;
    snprintf(envs[n], sizeof(envs[n]), "REDIS_URL=%s", s->redis_url), n++;
    snprintf(envs[n], sizeof(envs[n]), "LOG_LEVEL=debug"), n++;
    for (int i = 0; extra_env && extra_env[i] && n < 48; i++) {
        snprintf(envs[n], sizeof(envs[n]), "%s", extra_env[i]), n++;
        /* an explicit WS_ADDR: wait on (and report) its port */
        if (strncmp(extra_env[i], "WS_ADDR=", 8) == 0) {
            const char *c = strrchr(extra_env[i], ':');
            if (c)
                s->port = atoi(c + 1);
        }
    }
    for (int i = 0; i < n; i++)
        env[i] = envs[i];
    env[n] = NULL;
    /* the socket (under ODIN_TMP) goes on the command line too, so the
     * harness's cleanup (pkill -f $ODIN_TMP) finds a stray shard */
    int sock_in_env = 0;
    for (int i = 0; extra_env && extra_env[i]; i++)
        if (strncmp(extra_env[i], "SHARD_SOCKET=", 13) == 0)
            sock_in_env = 1;
    char sockflag[600];
    snprintf(sockflag, sizeof(sockflag), "--shard-socket=%s", s->sock);
    char *argv[] = { (char *)tsup_bin("odin-shard"),
                     sock_in_env ? NULL : sockflag, NULL };
    s->pid = tsup_spawn(argv, env);
    if (s->pid < 0)
        return -1;
    track(s->pid, 1);
    if (!tsup_wait_tcp(s->port, 10000) || !tsup_wait_unix(s->sock, 10000)) {
        tsup_stop(s->pid, SIGKILL, 2000);
        track(s->pid, 0);
        s->pid = 0;
        return -1;
    }
    return 0;
}

int ssup_shard_stop(ssup_shard *s, int sig, int timeout_ms)
{
    if (s->pid <= 0)
        return -1;
    int st = tsup_stop(s->pid, sig, timeout_ms);
    track(s->pid, 0);
    s->pid = 0;
    return st;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd pf = { fd, POLLOUT, 0 };
                if (poll(&pf, 1, 5000) <= 0)
                    return -1;
                continue;
            }
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Our HELLO: at FRAME_PROTO_VERSION naming the shard we reached (target)
 * and the endpoint we dialed, as a real router does; other versions are
 * built by hand in version 1's layout. */
static int encode_hello_version(buf *out, const char *id, uint32_t version,
                                const char *target, const char *endpoint)
{
    if (version == FRAME_PROTO_VERSION) {
        frame_hello h = { .version = version, .role = "router", .role_len = 6,
                          .id = id, .id_len = strlen(id), .max_frame = FRAME_DEFAULT_MAX,
                          .target = target, .target_len = strlen(target),
                          .endpoint = endpoint, .endpoint_len = strlen(endpoint) };
        return frame_encode_hello_msg(out, &h);
    }
    buf body = { 0 };
    msgpack_packer pk;
    msgpack_packer_init(&pk, &body, buf_msgpack_write);
    msgpack_pack_array(&pk, 5);
    msgpack_pack_uint32(&pk, FRAME_HELLO);
    msgpack_pack_uint32(&pk, version);
    msgpack_pack_str(&pk, 6);
    msgpack_pack_str_body(&pk, "router", 6);
    msgpack_pack_str(&pk, strlen(id));
    msgpack_pack_str_body(&pk, id, strlen(id));
    msgpack_pack_uint32(&pk, FRAME_DEFAULT_MAX);
    uint8_t h[4] = { (uint8_t)(body.len >> 24), (uint8_t)(body.len >> 16),
                     (uint8_t)(body.len >> 8), (uint8_t)body.len };
    int rc = buf_append(out, h, 4) | buf_append(out, body.data, body.len);
    buf_free(&body);
    return rc;
}

int ssup_router_connect(ssup_router *r, const char *sock, const char *id,
                        uint32_t version)
{
    memset(r, 0, sizeof(*r));
    r->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    if (r->fd < 0 || connect(r->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        goto fail;
    r->dec = frame_decoder_new(FRAME_DEFAULT_MAX);
    /* the shard's HELLO first (it sends it on accept): ours names it */
    int64_t end = mono_ms() + 5000;
    for (;;) {
        frame_msg m;
        int rc = frame_decoder_next(r->dec, &m);
        if (rc < 0)
            goto fail;
        if (rc == 1) {
            if (m.type != FRAME_HELLO)
                goto fail;
            r->hello = m.hello;
            snprintf(r->shard_role, sizeof(r->shard_role), "%.*s",
                     (int)m.hello.role_len, m.hello.role);
            snprintf(r->shard_id, sizeof(r->shard_id), "%.*s",
                     (int)m.hello.id_len, m.hello.id);
            r->hello.role = r->shard_role;
            r->hello.id = r->shard_id;
            break;
        }
        struct pollfd pf = { r->fd, POLLIN, 0 };
        int left = (int)(end - mono_ms());
        if (left <= 0 || poll(&pf, 1, left) <= 0)
            goto fail;
        char b[4096];
        ssize_t n = read(r->fd, b, sizeof(b));
        if (n <= 0 || frame_decoder_feed(r->dec, b, (size_t)n) != FRAME_OK)
            goto fail;
    }
    char endpoint[600];
    snprintf(endpoint, sizeof endpoint, "unix:%s", sock);
    buf out = { 0 };
    if (encode_hello_version(&out, id, version, r->shard_id, endpoint) != 0 ||
        write_all(r->fd, out.data, out.len) != 0) {
        buf_free(&out);
        goto fail;
    }
    buf_free(&out);
    return 0;
fail:
    ssup_router_close(r);
    return -1;
}

int ssup_router_send(ssup_router *r, const frame_record *recs, size_t n)
{
    buf out = { 0 };
    frame_batch b;
    int rc = frame_batch_begin(&b, &out, FRAME_MODE_TARGETED);
    for (size_t i = 0; i < n && rc == FRAME_OK; i++)
        rc = frame_batch_add(&b, &recs[i]);
    if (rc == FRAME_OK)
        rc = frame_batch_end(&b);
    if (rc == FRAME_OK)
        rc = write_all(r->fd, out.data, out.len);
    buf_free(&out);
    return rc == 0 ? 0 : -1;
}

int ssup_router_send_raw(ssup_router *r, const void *p, size_t n)
{
    return write_all(r->fd, p, n);
}

int ssup_router_wait_closed(ssup_router *r, int timeout_ms)
{
    int64_t end = mono_ms() + timeout_ms;
    for (;;) {
        struct pollfd pf = { r->fd, POLLIN, 0 };
        int left = (int)(end - mono_ms());
        if (left <= 0 || poll(&pf, 1, left) <= 0)
            return 0;
        char b[4096];
        ssize_t n = read(r->fd, b, sizeof(b));
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            return 1;
    }
}

void ssup_router_close(ssup_router *r)
{
    if (r->fd > 0)
        close(r->fd);
    r->fd = -1;
    frame_decoder_free(r->dec);
    r->dec = NULL;
}

frame_record ssup_rec(const char *cat, const char *tok, int64_t off,
                      int64_t ts, const char *value)
{
    frame_record rec = { .category = cat, .category_len = strlen(cat),
                         .token = tok, .token_len = strlen(tok),
                         .partition = 0, .offset = off, .timestamp_ms = ts,
                         .value = value, .value_len = strlen(value),
                         .flags = 0 };
    return rec;
}

/* ---- checks -------------------------------------------------------------- */

ssup_shard *ssup_start(const char *prefix, const char *name, const char *const env[])
{
    static ssup_shard s;
    char id[96];
    snprintf(id, sizeof(id), "%s-%s-%d", prefix, name, (int)getpid());
    assert_int_equal(ssup_shard_start(&s, id, NULL, env), 0);
    return &s;
}

void ssup_stop_ok(ssup_shard *s)
{
    int st = ssup_shard_stop(s, SIGTERM, 10000);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

char *ssup_recv_text(wsc *c, int timeout_ms)
{
    char *m = NULL;
    int r = wsc_recv_text(c, timeout_ms, &m, NULL);
    if (r != 1)
        fail_msg("expected a text message, got %d (close %d)", r, c->close_code);
    return m;
}

void ssup_expect_text(wsc *c, const char *want, int timeout_ms)
{
    char *m = NULL;
    int r = wsc_recv_text(c, timeout_ms, &m, NULL);
    if (r != 1)
        fail_msg("expected %s, got result %d (close %d)", want, r, c->close_code);
    assert_string_equal(m, want);
    free(m);
}

wsc *ssup_client(int port, const char *channels_json, int timeout_ms)
{
    int st = 0;
    wsc *c = wsc_connect("127.0.0.1", port, NULL, &st);
    assert_non_null(c);
    assert_int_equal(st, 101);
    if (channels_json) {
        char m[512];
        snprintf(m, sizeof(m), "{\"type\":\"subscribe\",\"data\":{\"channels\":%s}}",
                 channels_json);
        assert_int_equal(wsc_send_text(c, m), 0);
        char *ack = ssup_recv_text(c, timeout_ms);
        assert_non_null(strstr(ack, "subscription_ack"));
        free(ack);
    }
    return c;
}
