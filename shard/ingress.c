#include "shard/ingress.h"
#include "shard/server.h"
#include "proto/frame.h"
#include "common/log.h"
#include "common/config.h"
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

typedef struct router_conn {
    struct router_conn *prev, *next;
    struct shard_ingress *in;
    int fd;
    int dead;
    int hello_ok;
    int want_write;
    struct event ev;
    frame_decoder *dec;
    buf out;                 /* our HELLO until written */
    char id[80];
} router_conn;

struct shard_ingress {
    shard_ctx *ctx;
    int lfd;
    int tcp_fd;               /* SHARD_TCP_ADDR listener, or -1 */
    struct event *lev, *tcp_lev, *reap_ev;
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
        ssize_t w = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_write(c, 1);
                return;
            }
            conn_close(c, "write failed", 0);
            return;
        }
        buf_consume(&c->out, (size_t)w);
    }
    set_write(c, 0);
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
    log_kv(LOG_INFO, "router connected", "s:router", c->id, "i:max_frame",
           (int)h->max_frame, NULL);
    return 0;
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
            if (!c->hello_ok) {
                conn_close(c, "delivery before hello", 1);
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

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    shard_ingress *in = arg;
    shard_ctx *ctx = in->ctx;
    for (int i = 0; i < 16; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNABORTED)
                log_kv(LOG_WARN, "router accept failed", "s:error",
                       strerror(errno), NULL);
            return;
        }
        if (in->stopped || in->n >= ctx->set->max_routers) {
            log_kv(LOG_WARN, "router connection refused", "s:reason",
                   in->stopped ? "shutting down" : "SHARD_MAX_ROUTERS reached",
                   NULL);
            close(fd);
            continue;
        }
        if (lfd == in->tcp_fd) {
            int one = 1;   /* frames are batched already; don't delay them */
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        router_conn *c = calloc(1, sizeof(*c));
        if (!c || !(c->dec = frame_decoder_new(
                        (uint32_t)ctx->set->router_max_frame)) ||
            frame_encode_hello(&c->out, "shard", ctx->set->shard_id,
                               (uint32_t)ctx->set->router_max_frame) != 0) {
            if (c)
                conn_free(c);
            close(fd);
            continue;
        }
        c->in = in;
        c->fd = fd;
        event_assign(&c->ev, ctx->base, fd, EV_READ | EV_PERSIST,
                     conn_on_event, c);
        event_add(&c->ev, NULL);
        c->next = in->conns;
        if (in->conns)
            in->conns->prev = c;
        in->conns = c;
        in->n++;
        ctx->m.shard_router_connections_total++;
        conn_write(c);
    }
}

/* A socket file at path: in use by a live process (-1), stale (removed, 0)
 * or absent (0). */
static int clear_stale(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return 0;
    if (!S_ISSOCK(st.st_mode)) {
        log_kv(LOG_ERROR, "SHARD_SOCKET exists and is not a socket",
               "s:path", path, NULL);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));
    int live = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    if (live) {
        log_kv(LOG_ERROR, "SHARD_SOCKET is in use by another process",
               "s:path", path, NULL);
        return -1;
    }
    unlink(path);
    return 0;
}

/* TCP listener for routers on other hosts (SHARD_TCP_ADDR). */
static int listen_tcp(const char *addr)
{
    char host[256];
    int port;
    if (config_split_hostport(addr, host, sizeof(host), &port) != 0) {
        log_kv(LOG_ERROR, "bad SHARD_TCP_ADDR (want host:port)", "s:addr", addr,
               NULL);
        return -1;
    }
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE }, *ai = NULL;
    if (getaddrinfo(host, ps, &hints, &ai) != 0 || !ai) {
        log_kv(LOG_ERROR, "cannot resolve SHARD_TCP_ADDR", "s:addr", addr, NULL);
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0) {
        log_kv(LOG_ERROR, "cannot listen on SHARD_TCP_ADDR", "s:addr", addr,
               "s:error", strerror(errno), NULL);
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

shard_ingress *shard_ingress_new(shard_ctx *ctx)
{
    const char *path = ctx->set->socket_path;
    struct sockaddr_un sa;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        log_kv(LOG_ERROR, "SHARD_SOCKET path too long", "s:path", path,
               "i:max", (int)sizeof(sa.sun_path) - 1, NULL);
        return NULL;
    }
    shard_ingress *in = calloc(1, sizeof(*in));
    if (!in)
        return NULL;
    in->ctx = ctx;
    in->lfd = -1;
    in->tcp_fd = -1;
    if (clear_stale(path) != 0)
        goto err;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));
    in->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (in->lfd < 0 || bind(in->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(in->lfd, 64) != 0) {
        log_kv(LOG_ERROR, "cannot listen on SHARD_SOCKET", "s:path", path,
               "s:error", strerror(errno), NULL);
        goto err;
    }
    snprintf(in->path, sizeof(in->path), "%s", path);
    in->lev = event_new(ctx->base, in->lfd, EV_READ | EV_PERSIST, on_accept,
                        in);
    in->reap_ev = event_new(ctx->base, -1, 0, on_reap, in);
    if (!in->lev || !in->reap_ev || event_add(in->lev, NULL) != 0)
        goto err;
    log_kv(LOG_INFO, "router socket listening", "s:path", path, NULL);
    if (ctx->set->tcp_addr && *ctx->set->tcp_addr) {
        in->tcp_fd = listen_tcp(ctx->set->tcp_addr);
        if (in->tcp_fd < 0)
            goto err;
        in->tcp_lev = event_new(ctx->base, in->tcp_fd, EV_READ | EV_PERSIST,
                                on_accept, in);
        if (!in->tcp_lev || event_add(in->tcp_lev, NULL) != 0)
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
    if (in->lev)
        event_del(in->lev);
    if (in->tcp_lev)
        event_del(in->tcp_lev);
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
    if (in->lev)
        event_free(in->lev);
    if (in->tcp_lev)
        event_free(in->tcp_lev);
    if (in->tcp_fd >= 0)
        close(in->tcp_fd);
    if (in->reap_ev)
        event_free(in->reap_ev);
    if (in->lfd >= 0) {
        close(in->lfd);
        if (in->path[0])
            unlink(in->path);
    }
    free(in);
}

int shard_ingress_routers(const shard_ingress *in)
{
    return in ? in->n : 0;
}
