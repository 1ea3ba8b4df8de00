/*
 * odin-watch: a small WebSocket client that subscribes to channels and
 * prints every message it receives, one per line.  The demo client of
 * `make run`, and handy for operators: `odin-watch --watch-channels BTC.trade`.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/rand.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wslay/wslay.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/wskey.h"

static char *o_url, *o_channels, *o_log;
static long o_seconds, o_count;
static int o_quiet;
static const config_opt opts[] = {
    { "WATCH_URL", CFG_STR, &o_url, "ws://127.0.0.1:3002/ws",
      "WebSocket URL to connect to (ws://host:port/path)", 0, 0 },
    { "WATCH_CHANNELS", CFG_STR, &o_channels, "BTC.trade",
      "Comma-separated channels to subscribe to (<token>.<category>)", 0, 0 },
    { "WATCH_SECONDS", CFG_INT, &o_seconds, "0",
      "Exit after this many seconds (0 = run until Ctrl-C)", 0, 86400 * 365 },
    { "WATCH_COUNT", CFG_INT, &o_count, "0",
      "Exit after this many live messages (0 = no limit)", 0, 1e12 },
    { "WATCH_QUIET", CFG_BOOL, &o_quiet, "false",
      "Print only the final count line, not every message", 0, 0 },
    { "LOG_LEVEL", CFG_STR, &o_log, "info", "debug | info | warn | error", 0, 0 },
};

static volatile sig_atomic_t stop;
static void on_signal(int s) { (void)s; stop = 1; }

static int fd = -1;
static long live_msgs;
static int closed;

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *b, size_t n, int flags, void *u)
{
    (void)flags; (void)u;
    ssize_t r = recv(fd, b, n, 0);
    if (r > 0)
        return r;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    else
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *b, size_t n, int flags, void *u)
{
    (void)flags; (void)u;
    ssize_t r = send(fd, b, n, MSG_NOSIGNAL);
    if (r >= 0)
        return r;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    else
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *b, size_t n, void *u)
{
    (void)ctx; (void)u;
    return RAND_bytes(b, (int)n) == 1 ? 0 : -1;
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a, void *u)
{
    (void)ctx; (void)u;
    if (a->opcode == WSLAY_CONNECTION_CLOSE) {
        fprintf(stderr, "server closed the connection (code %u)\n", a->status_code);
        closed = 1;
        return;
    }
    if (a->opcode != WSLAY_TEXT_FRAME)
        return;
    int live = a->msg_length > 7 && memcmp(a->msg, "{\"seq\":", 7) == 0;
    if (live)
        live_msgs++;
    if (!o_quiet || !live) {
        fwrite(a->msg, 1, a->msg_length, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
}

static int parse_url(const char *url, char *host, size_t hl, char *port, size_t pl, const char **path)
{
    if (strncmp(url, "ws://", 5) != 0)
        return -1;
    const char *h = url + 5;
    const char *slash = strchr(h, '/');
    *path = slash ? slash : "/";
    const char *colon = memchr(h, ':', slash ? (size_t)(slash - h) : strlen(h));
    size_t n = colon ? (size_t)(colon - h) : (slash ? (size_t)(slash - h) : strlen(h));
    if (n == 0 || n >= hl)
        return -1;
    memcpy(host, h, n);
    host[n] = 0;
    if (colon) {
        size_t m = slash ? (size_t)(slash - colon - 1) : strlen(colon + 1);
        if (m == 0 || m >= pl)
            return -1;
        memcpy(port, colon + 1, m);
        port[m] = 0;
    } else {
        snprintf(port, pl, "80");
    }
    return 0;
}

/* Blocking RFC 6455 client handshake; returns 0 when the server answered 101
 * with the right Sec-WebSocket-Accept. */
static int handshake(const char *host, const char *port, const char *path)
{
    unsigned char nonce[16];
    char key[WSKEY_KEY_LEN + 1], expect[WSKEY_ACCEPT_LEN + 1];
    if (RAND_bytes(nonce, sizeof nonce) != 1)
        return -1;
    wskey_from_nonce(nonce, key);
    if (wskey_accept(key, WSKEY_KEY_LEN, expect) != 0)
        return -1;
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n", path, host, port, key);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        return -1;
    char resp[4096];
    size_t len = 0;
    while (len < sizeof resp - 1) {
        ssize_t r = recv(fd, resp + len, 1, 0);   /* byte-wise: stop exactly at the header end */
        if (r <= 0)
            return -1;
        len++;
        resp[len] = 0;
        if (len >= 4 && memcmp(resp + len - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    if (strncmp(resp, "HTTP/1.1 101", 12) != 0) {
        char *eol = strstr(resp, "\r\n");
        if (eol) *eol = 0;
        fprintf(stderr, "upgrade refused: %s\n", resp);
        return -1;
    }
    if (!strcasestr(resp, expect)) {
        fprintf(stderr, "bad Sec-WebSocket-Accept from server\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int rc = config_load(opts, sizeof opts / sizeof opts[0], argc, argv, "odin-watch",
                         "Subscribe to Odin channels over WebSocket and print every message.");
    if (rc)
        return rc > 0 ? 0 : 2;
    enum log_level lvl = LOG_INFO;
    log_level_parse(o_log, &lvl);
    log_init("watch", lvl);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    char host[256], port[16];
    const char *path;
    if (parse_url(o_url, host, sizeof host, port, sizeof port, &path) != 0) {
        config_error("WATCH_URL '%s' is not ws://host:port/path", o_url);
        return 2;
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
    if (getaddrinfo(host, port, &hints, &ai) != 0) {
        fprintf(stderr, "error: cannot resolve %s\n", host);
        return 1;
    }
    fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        fprintf(stderr, "error: connect %s:%s: %s\n", host, port, strerror(errno));
        freeaddrinfo(ai);
        return 1;
    }
    freeaddrinfo(ai);
    if (handshake(host, port, path) != 0)
        return 1;
    /* wslay_event_recv() reads until EAGAIN: the socket must not block */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

    struct wslay_event_callbacks cb = { recv_cb, send_cb, genmask_cb, NULL, NULL, NULL, on_msg };
    wslay_event_context_ptr ctx;
    wslay_event_context_client_init(&ctx, &cb, NULL);
    wslay_event_config_set_max_recv_msg_length(ctx, 1 << 20);

    buf sub = { 0 };
    buf_appendf(&sub, "{\"type\":\"subscribe\",\"data\":{\"channels\":[");
    char *chs = strdup(o_channels), *save = NULL;
    int first = 1;
    for (char *c = strtok_r(chs, ",", &save); c; c = strtok_r(NULL, ",", &save)) {
        if (!first) buf_append(&sub, ",", 1);
        buf_append_json_str(&sub, c, strlen(c));
        first = 0;
    }
    free(chs);
    buf_append(&sub, "]}}", 3);
    struct wslay_event_msg m = { WSLAY_TEXT_FRAME, (const uint8_t *)sub.data, sub.len };
    wslay_event_queue_msg(ctx, &m);

    uint64_t start = clock_mono_ms(), last_hb = start;
    while (!stop && !closed) {
        uint64_t now = clock_mono_ms();
        if (o_seconds && now - start >= (uint64_t)o_seconds * 1000)
            break;
        if (o_count && live_msgs >= o_count)
            break;
        if (now - last_hb >= 25000) {   /* like odin-ws clients */
            struct wslay_event_msg hb = { WSLAY_TEXT_FRAME, (const uint8_t *)"{\"type\":\"heartbeat\"}", 20 };
            wslay_event_queue_msg(ctx, &hb);
            last_hb = now;
        }
        struct pollfd p = { .fd = fd, .events = 0 };
        if (wslay_event_want_read(ctx)) p.events |= POLLIN;
        if (wslay_event_want_write(ctx)) p.events |= POLLOUT;
        if (!p.events)
            break;
        if (poll(&p, 1, 200) < 0)
            continue;
        if ((p.revents & (POLLIN | POLLHUP | POLLERR)) && wslay_event_recv(ctx) != 0)
            break;
        if ((p.revents & POLLOUT) && wslay_event_send(ctx) != 0)
            break;
    }
    if (!closed) {
        wslay_event_queue_close(ctx, WSLAY_CODE_NORMAL_CLOSURE, NULL, 0);
        wslay_event_send(ctx);
    }
    fprintf(stderr, "odin-watch: %ld live messages in %.1f s\n", live_msgs,
            (double)(clock_mono_ms() - start) / 1000.0);
    printf("received %ld\n", live_msgs);
    wslay_event_context_free(ctx);
    buf_free(&sub);
    close(fd);
    config_free(opts, sizeof opts / sizeof opts[0]);
    return 0;
}
