#include "shard/ingress.h"
#include "shard/ingress_private.h"
#include "proto/frame.h"
#include "proto/handshake.h"
#include "shard/metrics.h"
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
#include <netinet/in.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#define INGRESS_READ 65536
/* Before AUTH a router sends HELLO and AUTH only: read no more than fits. */
#define INGRESS_PREAUTH_READ (2 * (FRAME_HANDSHAKE_MAX + FRAME_HEADER_LEN))
#define INGRESS_READS_PER_WAKEUP 8
#define INGRESS_ACCEPTS_PER_WAKEUP 16

/* A peer's source for SHARD_INGRESS_IP_MAX_PENDING: its IP address, or
 * "a Unix-socket peer" (all of them are one source). */
typedef struct ingress_source {
    int family;
    uint8_t addr[16];
} ingress_source;

typedef struct router_conn {
    struct router_conn *prev, *next;
    struct shard_ingress *in;
    int fd;
    int dead;
    int authed;              /* handshake done: counts in SHARD_MAX_ROUTERS */
    int want_write;
    struct event ev;
    struct event hs_timer;   /* the handshake must be done within
                                SHARD_INGRESS_AUTH_TIMEOUT_MS */
    handshake *hs;           /* until the handshake is done */
    ingress_source src;
    frame_decoder *dec;      /* FRAME_HANDSHAKE_MAX until authed */
    buf out;                 /* our HELLO / AUTH until written */
    char id[80];
} router_conn;

struct shard_ingress {
    shard_ctx *ctx;
    ingress_callbacks cb;     /* on_record: to the owner (shard.c -> fanout) */
    ingress_io io;            /* a connection's bytes (NULL members: syscalls) */
    net_acceptor *lis;        /* SHARD_SOCKET */
    net_acceptor *tcp_lis;    /* SHARD_TCP_ADDR listener, or NULL */
    struct event *reap_ev;
    router_conn *conns, *grave;
    int n;                    /* authenticated */
    int npending;             /* in the handshake */
    int stopped;
    char unix_endpoint[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    uint8_t ibuf[INGRESS_READ];   /* read buffer shared by all links */
    /* log rate limits: a flood of refused links must not flood the log */
    log_ratelimit rl_close, rl_refuse, rl_auth, rl_accept;
};

static void conn_on_event(evutil_socket_t fd, short what, void *arg);

/* A connection's I/O, through the seam of shard/ingress_private.h. */
static ssize_t io_read(shard_ingress *in, int fd, void *p, size_t n)
{
    return in->io.read ? in->io.read(in->io.ud, fd, p, n) : read(fd, p, n);
}

static ssize_t io_write(shard_ingress *in, int fd, const void *p, size_t n)
{
    return in->io.write ? in->io.write(in->io.ud, fd, p, n) : net_write_all(fd, p, n);
}

static void io_close(shard_ingress *in, int fd)
{
    if (in->io.close)
        in->io.close(in->io.ud, fd);
    else
        close(fd);
}

static void conn_close(router_conn *c, const char *why, int error)
{
    if (c->dead)
        return;
    shard_ingress *in = c->in;
    if (error)
        in->ctx->m.shard_frames_errors_total++;
    /* a flood of refused handshakes must not flood the log */
    uint64_t sup = 0;
    if (c->authed || log_rl_allow(&in->rl_close, &sup))
        log_kv(error ? LOG_WARN : LOG_INFO, "router connection closed",
               "s:router", c->id[0] ? c->id : NULL, "s:reason", why,
               "b:authenticated", c->authed, "u:suppressed", sup, NULL);
    c->dead = 1;
    event_del(&c->ev);
    event_del(&c->hs_timer);
    io_close(in, c->fd);
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
    if (c->authed)
        in->n--;
    else
        in->npending--;
    event_active(in->reap_ev, EV_TIMEOUT, 1);
}

static void conn_free(router_conn *c)
{
    handshake_free(c->hs);
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
        ssize_t w = io_write(c->in, c->fd, c->out.data, c->out.len);
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

/* Refused before or at authentication: counted by reason and closed. */
static void refuse(router_conn *c, enum shard_ingress_refusal_idx why, const char *reason)
{
    c->in->ctx->m.shard_ingress_refused_total[why]++;
    uint64_t sup = 0;
    if (log_rl_allow(&c->in->rl_refuse, &sup))
        log_kv(LOG_WARN, "router refused", "s:router", c->id[0] ? c->id : NULL,
               "s:reason", reason, "u:suppressed", sup, NULL);
    conn_close(c, reason, 1);
}

static void handshake_refused(router_conn *c)
{
    const char *reason = handshake_reason(c->hs);
    switch (handshake_refusal(c->hs)) {
    case HANDSHAKE_R_AUTH: {
        c->in->ctx->m.shard_ingress_auth_failures_total++;
        uint64_t sup = 0;
        if (log_rl_allow(&c->in->rl_auth, &sup))
            log_kv(LOG_WARN, "router refused", "s:router", c->id[0] ? c->id : NULL,
                   "s:reason", reason, "u:suppressed", sup, NULL);
        conn_close(c, reason, 1);
        return;
    }
    case HANDSHAKE_R_VERSION:
        refuse(c, SM_INGRESS_VERSION, reason);
        return;
    case HANDSHAKE_R_IDENTITY:
        refuse(c, SM_INGRESS_IDENTITY, reason);
        return;
    case HANDSHAKE_R_NOMEM:
        conn_close(c, "out of memory", 1);
        return;
    default:
        refuse(c, SM_INGRESS_PROTOCOL, reason);
        return;
    }
}

/* One HELLO / AUTH of the handshake.  0 to go on, -1 if c was closed. */
static int handle_handshake(router_conn *c, const frame_msg *m)
{
    shard_ingress *in = c->in;
    shard_ctx *ctx = in->ctx;
    if (m->type == FRAME_HELLO) {
        size_t n = m->hello.id_len < sizeof(c->id) - 1 ? m->hello.id_len : sizeof(c->id) - 1;
        memcpy(c->id, m->hello.id, n);
        c->id[n] = 0;
    }
    int r = handshake_on_frame(c->hs, m, &c->out);
    if (r == HANDSHAKE_REFUSED) {
        handshake_refused(c);
        return -1;
    }
    if (r == HANDSHAKE_DONE) {
        if (in->n >= ctx->set->max_routers) {
            refuse(c, SM_INGRESS_MAX_ROUTERS, "SHARD_MAX_ROUTERS reached");
            return -1;
        }
        int authed = handshake_authenticated(c->hs);
        c->authed = 1;
        in->npending--;
        in->n++;
        event_del(&c->hs_timer);
        frame_decoder_set_max(c->dec, (uint32_t)ctx->set->router_max_frame);
        log_kv(LOG_INFO, authed ? "router authenticated" : "router connected",
               "s:router", c->id, "u:max_frame",
               (uint64_t)handshake_peer_max_frame(c->hs), "b:authenticated", authed, NULL);
        handshake_free(c->hs);
        c->hs = NULL;
    }
    if (c->out.len > 0) {
        conn_write(c);      /* our AUTH, once the router's verified */
        if (c->dead)
            return -1;
    }
    return 0;
}

static void on_hs_timeout(evutil_socket_t fd, short what, void *arg)
{
    router_conn *c = arg;
    if (c->dead || c->authed)
        return;
    refuse(c, SM_INGRESS_TIMEOUT, c->id[0] ? "handshake not completed in "
           "SHARD_INGRESS_AUTH_TIMEOUT_MS" : "no HELLO within SHARD_INGRESS_AUTH_TIMEOUT_MS");
}

static void conn_read(router_conn *c)
{
    shard_ingress *in = c->in;
    shard_ctx *ctx = in->ctx;
    for (int i = 0; i < INGRESS_READS_PER_WAKEUP && !c->dead; i++) {
        size_t want = c->authed ? sizeof(in->ibuf) : INGRESS_PREAUTH_READ;
        ssize_t n = io_read(in, c->fd, in->ibuf, want);
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
        if (frame_decoder_feed(c->dec, in->ibuf, (size_t)n) != FRAME_OK) {
            conn_close(c, "out of memory", 1);
            return;
        }
        for (;;) {
            frame_msg m;
            int r = frame_decoder_next(c->dec, &m);
            if (r == 0)
                break;
            if (r < 0) {
                if (!c->authed && r == FRAME_E_TOOBIG)
                    refuse(c, SM_INGRESS_OVERSIZED, "frame larger than a handshake "
                           "before authentication");
                else if (!c->authed)
                    refuse(c, SM_INGRESS_PROTOCOL, frame_strerror(r));
                else
                    conn_close(c, frame_strerror(r), 1);
                return;
            }
            ctx->m.shard_frames_received_total++;
            if (!c->authed) {
                if (handle_handshake(c, &m) != 0)
                    return;
                continue;
            }
            if (m.type != FRAME_DELIVERY) {
                conn_close(c, m.type == FRAME_HELLO ? "HELLO after the handshake"
                                                    : "AUTH after the handshake", 1);
                return;
            }
            for (size_t k = 0; k < m.nrecords; k++)
                in->cb.on_record(in->cb.ud, &m.records[k]);
        }
        if ((size_t)n < want)
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

static void source_of(const struct sockaddr *sa, socklen_t salen, ingress_source *src)
{
    memset(src, 0, sizeof(*src));
    if (sa && sa->sa_family == AF_INET && salen >= (socklen_t)sizeof(struct sockaddr_in)) {
        src->family = AF_INET;
        memcpy(src->addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa && sa->sa_family == AF_INET6 &&
               salen >= (socklen_t)sizeof(struct sockaddr_in6)) {
        src->family = AF_INET6;
        memcpy(src->addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    } else {
        src->family = AF_UNIX;   /* every Unix-socket peer: one source */
    }
}

static int pending_from(const shard_ingress *in, const ingress_source *src)
{
    int n = 0;
    for (const router_conn *c = in->conns; c; c = c->next)
        n += !c->authed && memcmp(&c->src, src, sizeof(*src)) == 0;
    return n;
}

static void refuse_accept(shard_ingress *in, int fd, enum shard_ingress_refusal_idx why,
                          const char *reason)
{
    uint64_t sup = 0;
    if (why < SM_INGRESS_N)
        in->ctx->m.shard_ingress_refused_total[why]++;
    if (log_rl_allow(&in->rl_accept, &sup))
        log_kv(LOG_WARN, "router connection refused", "s:reason", reason,
               "u:suppressed", sup, NULL);
    io_close(in, fd);
}

int ingress_admit(shard_ingress *in, int fd, const struct sockaddr *sa, socklen_t salen)
{
    shard_ctx *ctx = in->ctx;
    if (in->stopped) {
        refuse_accept(in, fd, SM_INGRESS_N, "shutting down");
        return -1;
    }
    /* Unauthenticated peers have their own small pool: they can never take
     * an authenticated router's slot, and one source cannot fill it. */
    if (in->npending >= ctx->set->ingress_max_pending) {
        refuse_accept(in, fd, SM_INGRESS_PENDING_FULL, "SHARD_INGRESS_MAX_PENDING reached");
        return -1;
    }
    ingress_source src;
    source_of(sa, salen, &src);
    if (ctx->set->ingress_ip_max_pending > 0 &&
        pending_from(in, &src) >= ctx->set->ingress_ip_max_pending) {
        refuse_accept(in, fd, SM_INGRESS_SOURCE, "SHARD_INGRESS_IP_MAX_PENDING reached");
        return -1;
    }
    router_conn *c = calloc(1, sizeof(*c));
    const char *endpoints[] = { ctx->set->endpoint,
                                in->unix_endpoint[0] ? in->unix_endpoint : NULL, NULL };
    handshake_cfg hc = {
        .role = HANDSHAKE_SHARD,
        .id = ctx->set->shard_id,
        .max_frame = (uint32_t)ctx->set->router_max_frame,
        .secret = ctx->set->ingress_secret,
        .endpoints = endpoints,
    };
    if (!c || !(c->dec = frame_decoder_new(FRAME_HANDSHAKE_MAX)) ||
        !(c->hs = handshake_new(&hc)) || handshake_start(c->hs, &c->out) != 0) {
        if (c)
            conn_free(c);
        io_close(in, fd);
        return -1;
    }
    c->in = in;
    c->fd = fd;
    c->src = src;
    event_assign(&c->ev, ctx->base, fd, EV_READ | EV_PERSIST,
                 conn_on_event, c);
    event_add(&c->ev, NULL);
    evtimer_assign(&c->hs_timer, ctx->base, on_hs_timeout, c);
    long ms = ctx->set->ingress_auth_timeout_ms;
    struct timeval hs = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(&c->hs_timer, &hs);
    c->next = in->conns;
    if (in->conns)
        in->conns->prev = c;
    in->conns = c;
    in->npending++;
    ctx->m.shard_router_connections_total++;
    conn_write(c);
    return 0;
}

static void on_accept(net_acceptor *a, int fd, const struct sockaddr *sa,
                      socklen_t salen, void *arg)
{
    shard_ingress *in = arg;
    if (a == in->tcp_lis) {
        /* frames are batched already: don't delay them; and a router host
         * that vanished without a FIN must not hold a slot forever */
        net_nodelay(fd);
        net_keepalive(fd, NET_KEEPALIVE_IDLE_S, NET_KEEPALIVE_INTVL_S,
                      NET_KEEPALIVE_CNT);
    }
    ingress_admit(in, fd, sa, salen);
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

shard_ingress *ingress_new_unbound(shard_ctx *ctx, const ingress_callbacks *cb,
                                   const ingress_io *io)
{
    const char *path = ctx->set->socket_path;
    shard_ingress *in = calloc(1, sizeof(*in));
    if (!in)
        return NULL;
    in->ctx = ctx;
    in->cb = *cb;
    if (io)
        in->io = *io;
    in->rl_close.per_sec = in->rl_refuse.per_sec = 5;
    in->rl_auth.per_sec = in->rl_accept.per_sec = 5;
    if (path && *path)
        snprintf(in->unix_endpoint, sizeof(in->unix_endpoint), "unix:%s", path);
    in->reap_ev = event_new(ctx->base, -1, 0, on_reap, in);
    if (!in->reap_ev)
        goto err;
    return in;
err:
    shard_ingress_free(in);
    return NULL;
}

shard_ingress *shard_ingress_new(shard_ctx *ctx, const ingress_callbacks *cb)
{
    const char *path = ctx->set->socket_path;
    shard_ingress *in = ingress_new_unbound(ctx, cb, NULL);
    if (!in)
        return NULL;
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

int shard_ingress_pending(const shard_ingress *in)
{
    return in ? in->npending : 0;
}
