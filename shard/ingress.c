#include "shard/ingress.h"
#include "shard/server.h"
#include "proto/frame.h"
#include "common/log.h"
#include "common/config.h"
#include "common/net.h"
#include <stdio.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#define INGRESS_READ 65536
#define INGRESS_READS_PER_WAKEUP 8
#define INGRESS_ACCEPTS_PER_WAKEUP 16
/* A router that connects and does not complete HELLO (+ AUTH) in this time
 * is closed, so silent or unauthenticated peers cannot hold the
 * SHARD_MAX_ROUTERS slots. */
#define HS_TIMEOUT_MS 5000

typedef struct router_conn {
    struct router_conn *prev, *next;
    struct shard_ingress *in;
    int fd;
    int dead;
    int hello_ok;
    int auth_ok;             /* AUTH verified (or no secret configured) */
    int want_write;
    struct event ev;
    struct event hs;         /* HELLO (+ AUTH) must arrive within HS_TIMEOUT_MS */
    uint8_t nonce[FRAME_NONCE_LEN];        /* ours, with a secret */
    uint8_t peer_nonce[FRAME_NONCE_LEN];
    frame_decoder *dec;
    buf out;                 /* our HELLO until written */
    char id[80];
} router_conn;

struct shard_ingress {
    shard_ctx *ctx;
    net_acceptor *lis;        /* SHARD_SOCKET */
    net_acceptor *tcp_lis;    /* SHARD_TCP_ADDR listener, or NULL */
    struct event *reap_ev;
    router_conn *conns, *grave;
    int n;
    int stopped;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static uint8_t g_ibuf[INGRESS_READ];

static void conn_on_event(evutil_socket_t fd, short what, void *arg);

static void conn_close(router_conn *c, const char *why, int error)
{
    if (c->dead)
        return;
    shard_ingress *in = c->in;
    if (error)
        in->ctx->m.shard_frames_errors_total++;
    log_kv(error ? LOG_WARN : LOG_INFO, "router connection closed",
           "s:router", c->id[0] ? c->id : NULL, "s:reason", why, NULL);
    c->dead = 1;
    event_del(&c->ev);
    event_del(&c->hs);
    close(c->fd);
    c->fd = -1;
    if (c->prev)
        c->prev->next = c->next;
    else
        in->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = NULL;
    c->next = in->grave;
    in->grave = c;
    in->n--;
    event_active(in->reap_ev, EV_TIMEOUT, 1);
}

static void conn_free(router_conn *c)
{
    frame_decoder_free(c->dec);
    buf_free(&c->out);
    free(c);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    shard_ingress *in = arg;
    while (in->grave) {
        router_conn *c = in->grave;
        in->grave = c->next;
        conn_free(c);
    }
}

static void set_write(router_conn *c, int on)
{
    if (c->want_write == on)
        return;
    event_del(&c->ev);
    event_assign(&c->ev, c->in->ctx->base, c->fd,
                 EV_READ | EV_PERSIST | (on ? EV_WRITE : 0), conn_on_event, c);
    if (!c->in->stopped || on)
        event_add(&c->ev, NULL);
    c->want_write = on;
}

static void conn_write(router_conn *c)
{
    while (c->out.len > 0) {
        ssize_t w = net_write_all(c->fd, c->out.data, c->out.len);
        if (w == 0) {
            set_write(c, 1);
            return;
        }
        if (w < 0) {
            conn_close(c, "write failed", 0);
            return;
        }
        buf_consume(&c->out, (size_t)w);
    }
    set_write(c, 0);
}

static const char *secret_of(const shard_ingress *in, size_t *len)
{
    const char *s = in->ctx->set->ingress_secret;
    if (!s || !*s)
        return NULL;
    *len = strlen(s);
    return s;
}

static void auth_failed(router_conn *c, const char *why)
{
    c->in->ctx->m.shard_ingress_auth_failures_total++;
    log_kv(LOG_WARN, "router refused", "s:router", c->id[0] ? c->id : NULL,
           "s:reason", why, NULL);
    conn_close(c, why, 1);
}

/* The router's AUTH: its HMAC over both nonces with the shared secret. */
static int handle_auth(router_conn *c, const uint8_t *mac)
{
    size_t sl = 0;
    const char *secret = secret_of(c->in, &sl);
    if (!secret)
        return 0;   /* no secret here: nothing to check */
    if (!c->hello_ok) {
        auth_failed(c, "AUTH before HELLO");
        return -1;
    }
    if (!frame_auth_verify(secret, sl, "router", c->nonce, c->peer_nonce, mac)) {
        auth_failed(c, "router failed authentication (SHARD_INGRESS_SECRET differs)");
        return -1;
    }
    c->auth_ok = 1;
    event_del(&c->hs);
    log_kv(LOG_INFO, "router authenticated", "s:router", c->id, NULL);
    return 0;
}

static int handle_hello(router_conn *c, const frame_hello *h)
{
    size_t n = h->id_len < sizeof(c->id) - 1 ? h->id_len : sizeof(c->id) - 1;
    memcpy(c->id, h->id, n);
    c->id[n] = 0;
    if (h->version != FRAME_PROTO_VERSION) {
        log_kv(LOG_WARN, "router protocol version mismatch", "s:router",
               c->id, "i:theirs", (int)h->version, "i:ours",
               (int)FRAME_PROTO_VERSION, NULL);
        conn_close(c, "protocol version mismatch", 1);
        return -1;
    }
    if (h->role_len != 6 || memcmp(h->role, "router", 6) != 0) {
        conn_close(c, "peer hello role is not \"router\"", 1);
        return -1;
    }
    c->hello_ok = 1;
    size_t sl = 0;
    const char *secret = secret_of(c->in, &sl);
    if (secret) {
        if (!h->nonce) {
            auth_failed(c, "router sent no challenge: SHARD_INGRESS_SECRET is not set on "
                           "the router");
            return -1;
        }
        memcpy(c->peer_nonce, h->nonce, FRAME_NONCE_LEN);
        uint8_t mac[FRAME_MAC_LEN];
        if (frame_auth_mac(secret, sl, "shard", c->peer_nonce, c->nonce, mac) != 0 ||
            frame_encode_auth(&c->out, mac) != FRAME_OK) {
            conn_close(c, "out of memory", 1);
            return -1;
        }
        conn_write(c);
        if (c->dead)
            return -1;
    } else {
        c->auth_ok = 1;
        event_del(&c->hs);
    }
    log_kv(LOG_INFO, "router connected", "s:router", c->id, "i:max_frame",
           (int)h->max_frame, "b:authenticating", secret != NULL, NULL);
    return 0;
}

static void on_hs_timeout(evutil_socket_t fd, short what, void *arg)
{
    router_conn *c = arg;
    if (c->dead || (c->hello_ok && c->auth_ok))
        return;
    if (c->hello_ok)
        auth_failed(c, "no AUTH from the router in time");
    else
        conn_close(c, "no HELLO from the router in time", 1);
}

static void conn_read(router_conn *c)
{
    shard_ingress *in = c->in;
    shard_ctx *ctx = in->ctx;
    for (int i = 0; i < INGRESS_READS_PER_WAKEUP && !c->dead; i++) {
        ssize_t n = read(c->fd, g_ibuf, sizeof(g_ibuf));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                conn_close(c, strerror(errno), 0);
            return;
        }
        if (n == 0) {
            conn_close(c, "router closed the connection", 0);
            return;
        }
        if (frame_decoder_feed(c->dec, g_ibuf, (size_t)n) != FRAME_OK) {
            conn_close(c, "out of memory", 1);
            return;
        }
        for (;;) {
            frame_msg m;
            int r = frame_decoder_next(c->dec, &m);
            if (r == 0)
                break;
            if (r < 0) {
                conn_close(c, frame_strerror(r), 1);
                return;
            }
            ctx->m.shard_frames_received_total++;
            if (m.type == FRAME_HELLO) {
                if (!c->hello_ok && handle_hello(c, &m.hello) != 0)
                    return;
                continue;
            }
            if (m.type == FRAME_AUTH) {
                if (handle_auth(c, m.mac) != 0)
                    return;
                continue;
            }
            if (!c->hello_ok) {
                conn_close(c, "delivery before hello", 1);
                return;
            }
            if (!c->auth_ok) {
                auth_failed(c, "delivery before authentication");
                return;
            }
            for (size_t k = 0; k < m.nrecords; k++)
                shard_server_deliver(ctx->srv, &m.records[k]);
        }
        if ((size_t)n < sizeof(g_ibuf))
            return;
    }
}

static void conn_on_event(evutil_socket_t fd, short what, void *arg)
{
    router_conn *c = arg;
    if ((what & EV_WRITE) && !c->dead)
        conn_write(c);
    if ((what & EV_READ) && !c->dead && !c->in->stopped)
        conn_read(c);
}

static void on_accept(net_acceptor *a, int fd, const struct sockaddr *sa,
                      socklen_t salen, void *arg)
{
    shard_ingress *in = arg;
    shard_ctx *ctx = in->ctx;
    if (in->stopped || in->n >= ctx->set->max_routers) {
        log_kv(LOG_WARN, "router connection refused", "s:reason",
               in->stopped ? "shutting down" : "SHARD_MAX_ROUTERS reached",
               NULL);
        close(fd);
        return;
    }
    if (a == in->tcp_lis) {
        /* frames are batched already: don't delay them; and a router host
         * that vanished without a FIN must not hold a slot forever */
        net_nodelay(fd);
        net_keepalive(fd, NET_KEEPALIVE_IDLE_S, NET_KEEPALIVE_INTVL_S,
                      NET_KEEPALIVE_CNT);
    }
    router_conn *c = calloc(1, sizeof(*c));
    size_t sl;
    int with_secret = secret_of(in, &sl) != NULL;
    if (!c || !(c->dec = frame_decoder_new(
                    (uint32_t)ctx->set->router_max_frame)) ||
        (with_secret && frame_nonce(c->nonce) != 0) ||
        frame_encode_hello_nonce(&c->out, "shard", ctx->set->shard_id,
                                 (uint32_t)ctx->set->router_max_frame,
                                 with_secret ? c->nonce : NULL) != 0) {
        if (c)
            conn_free(c);
        close(fd);
        return;
    }
    c->in = in;
    c->fd = fd;
    event_assign(&c->ev, ctx->base, fd, EV_READ | EV_PERSIST,
                 conn_on_event, c);
    event_add(&c->ev, NULL);
    evtimer_assign(&c->hs, ctx->base, on_hs_timeout, c);
    struct timeval hs = { HS_TIMEOUT_MS / 1000, (HS_TIMEOUT_MS % 1000) * 1000 };
    evtimer_add(&c->hs, &hs);
    c->next = in->conns;
    if (in->conns)
        in->conns->prev = c;
    in->conns = c;
    in->n++;
    ctx->m.shard_router_connections_total++;
    conn_write(c);
}

/* Wrap a listening fd (closed on failure). */
static net_acceptor *acceptor(shard_ingress *in, int fd, const char *name)
{
    if (fd < 0)
        return NULL;
    net_acceptor *a = net_acceptor_new(in->ctx->base, fd, name,
                                       INGRESS_ACCEPTS_PER_WAKEUP,
                                       NET_ACCEPT_BACKOFF_MS, on_accept, NULL, in);
    if (!a) {
        close(fd);
        return NULL;
    }
    net_acceptor_enable(a, 1);
    return a;
}

shard_ingress *shard_ingress_new(shard_ctx *ctx)
{
    const char *path = ctx->set->socket_path;
    shard_ingress *in = calloc(1, sizeof(*in));
    if (!in)
        return NULL;
    in->ctx = ctx;
    in->reap_ev = event_new(ctx->base, -1, 0, on_reap, in);
    if (!in->reap_ev)
        goto err;
    char err[256];
    int fd = net_listen_unix(path, 64, err, sizeof(err));
    if (fd < 0) {
        log_kv(LOG_ERROR, "cannot listen on SHARD_SOCKET", "s:path", path,
               "s:error", err, NULL);
        goto err;
    }
    snprintf(in->path, sizeof(in->path), "%s", path);
    if (!(in->lis = acceptor(in, fd, "router-unix")))
        goto err;
    log_kv(LOG_INFO, "router socket listening", "s:path", path, NULL);
    if (ctx->set->tcp_addr && *ctx->set->tcp_addr) {
        fd = net_listen_tcp(ctx->set->tcp_addr, 64, 0, NULL, 0, NULL, err,
                            sizeof(err));
        if (fd < 0)
            log_kv(LOG_ERROR, "cannot listen on SHARD_TCP_ADDR", "s:addr",
                   ctx->set->tcp_addr, "s:error", err, NULL);
        if (!(in->tcp_lis = acceptor(in, fd, "router-tcp")))
            goto err;
        log_kv(LOG_INFO, "router TCP listener", "s:addr", ctx->set->tcp_addr,
               "s:endpoint", ctx->set->endpoint, NULL);
    }
    return in;
err:
    shard_ingress_free(in);
    return NULL;
}

void shard_ingress_stop(shard_ingress *in)
{
    if (!in || in->stopped)
        return;
    in->stopped = 1;
    if (in->lis)
        net_acceptor_enable(in->lis, 0);
    if (in->tcp_lis)
        net_acceptor_enable(in->tcp_lis, 0);
    for (router_conn *c = in->conns; c; c = c->next)
        if (!c->want_write)
            event_del(&c->ev);
}

void shard_ingress_free(shard_ingress *in)
{
    if (!in)
        return;
    while (in->conns)
        conn_close(in->conns, "shutting down", 0);
    on_reap(-1, 0, in);
    net_acceptor_free(in->tcp_lis);
    if (in->lis) {
        net_acceptor_free(in->lis);
        unlink(in->path);     /* ours: bound by this process */
    }
    if (in->reap_ev)
        event_free(in->reap_ev);
    free(in);
}

int shard_ingress_routers(const shard_ingress *in)
{
    return in ? in->n : 0;
}
