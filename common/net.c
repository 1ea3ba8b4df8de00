#include "common/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/dns.h>

#include "common/addr.h"
#include "common/log.h"

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- endpoints ---------------------------------------------------------- */

int net_endpoint_parse(const char *s, net_endpoint *out)
{
    memset(out, 0, sizeof *out);
    if (!s)
        return NET_EADDR;
    if (strncmp(s, "unix:", 5) == 0) {
        const char *p = s + 5;
        if (strncmp(p, "//", 2) == 0)
            p += 2;
        if (*p != '/' || strlen(p) >= sizeof out->path)
            return NET_EADDR;
        out->is_unix = 1;
        memcpy(out->path, p, strlen(p) + 1);
        return NET_OK;
    }
    if (strncmp(s, "tcp://", 6) == 0) {
        int port;
        if (addr_split_hostport(s + 6, out->host, sizeof out->host, &port) != 0 ||
            !out->host[0] || port < 1 || port > 65535)
            return NET_EADDR;
        out->port = port;
        return NET_OK;
    }
    return NET_EADDR;
}

int net_is_numeric_host(const char *host)
{
    unsigned char b[sizeof(struct in6_addr)];
    return host && (inet_pton(AF_INET, host, b) == 1 || inet_pton(AF_INET6, host, b) == 1);
}

/* ---- DNS ------------------------------------------------------------------ */

int net_addr_is_loopback(const char *hostport)
{
    char host[256];
    int port;
    if (!hostport || addr_split_hostport(hostport, host, sizeof host, &port) != 0)
        return 0;
    if (strcasecmp(host, "localhost") == 0)
        return 1;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

struct evdns_base *net_dns_new(struct event_base *base)
{
    struct evdns_base *dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!dns)
        return NULL;
    int rc = evdns_base_resolv_conf_parse(dns, DNS_OPTIONS_ALL, "/etc/resolv.conf");
    if (rc != 0 || evdns_base_count_nameservers(dns) == 0) {
        /* rc 1: file missing, 2..: unreadable / no nameserver: resolve like
         * glibc does without a resolv.conf */
        log_kv(LOG_WARN, "cannot use /etc/resolv.conf; DNS falls back to 127.0.0.1",
               "i:code", rc, NULL);
        evdns_base_nameserver_ip_add(dns, "127.0.0.1");
        evdns_base_load_hosts(dns, NULL);
    }
    return dns;
}

void net_dns_free(struct evdns_base *dns)
{
    if (dns)
        evdns_base_free(dns, 1);
}

struct net_resolve {
    struct event *ev;                     /* delivers the result */
    struct evdns_getaddrinfo_request *req;
    struct evutil_addrinfo *res;
    int err;
    int canceled;                         /* freed by gai_cb when it comes */
    int waiting;                          /* evdns owes us a callback */
    net_resolve_cb cb;
    void *arg;
    char errstr[160];
};

static void resolve_free(net_resolve *r)
{
    if (r->res)
        evutil_freeaddrinfo(r->res);
    if (r->ev)
        event_free(r->ev);
    free(r);
}

static void resolve_deliver(evutil_socket_t fd, short what, void *arg)
{
    net_resolve *r = arg;
    r->cb(r->err, r->err == NET_OK ? r->res : NULL, r->errstr, r->arg);
    resolve_free(r);
}

static void gai_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    net_resolve *r = arg;
    r->req = NULL;
    r->waiting = 0;
    if (r->canceled) {
        if (res)
            evutil_freeaddrinfo(res);
        resolve_free(r);
        return;
    }
    if (result == 0 && res) {
        r->res = res;
        r->err = NET_OK;
    } else {
        if (res)
            evutil_freeaddrinfo(res);
        r->err = NET_ERESOLVE;
        snprintf(r->errstr, sizeof r->errstr, "%s",
                 result ? evutil_gai_strerror(result) : "no address");
    }
    /* May run inside evdns_getaddrinfo (hosts file, errors): deliver from
     * our own event, never from the caller's stack or evdns' callback. */
    event_active(r->ev, EV_TIMEOUT, 1);
}

net_resolve *net_resolve_start(struct event_base *base, struct evdns_base *dns,
                               const char *host, int port, net_resolve_cb cb, void *arg)
{
    net_resolve *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->cb = cb;
    r->arg = arg;
    r->ev = event_new(base, -1, 0, resolve_deliver, r);
    if (!r->ev) {
        free(r);
        return NULL;
    }
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = EVUTIL_AI_NUMERICSERV;
    if (net_is_numeric_host(host)) {
        /* fast path: no DNS, no evdns_base needed */
        hints.ai_flags |= EVUTIL_AI_NUMERICHOST;
        int rc = evutil_getaddrinfo(host, ps, &hints, &r->res);
        if (rc != 0 || !r->res) {
            r->err = NET_ERESOLVE;
            snprintf(r->errstr, sizeof r->errstr, "%s",
                     rc ? evutil_gai_strerror(rc) : "no address");
        }
        event_active(r->ev, EV_TIMEOUT, 1);
        return r;
    }
    if (!dns || !host || !*host) {
        r->err = NET_ERESOLVE;
        snprintf(r->errstr, sizeof r->errstr, "no resolver for host name");
        event_active(r->ev, EV_TIMEOUT, 1);
        return r;
    }
    r->waiting = 1;
    struct evdns_getaddrinfo_request *req =
        evdns_getaddrinfo(dns, host, ps, &hints, gai_cb, r);
    if (r->waiting)          /* gai_cb not called yet: it will be, later */
        r->req = req;
    return r;
}

void net_resolve_cancel(net_resolve *r)
{
    if (!r)
        return;
    if (r->waiting) {
        /* evdns still owes a callback (EVUTIL_EAI_CANCEL, delivered later
         * on the loop); gai_cb frees r then. */
        r->canceled = 1;
        event_del(r->ev);
        if (r->req)
            evdns_getaddrinfo_cancel(r->req);
        return;
    }
    resolve_free(r);
}

/* ---- listening ------------------------------------------------------------ */

static void format_bound(const struct sockaddr_storage *ss, char *bound, size_t boundlen,
                         int *port_out)
{
    char ip[INET6_ADDRSTRLEN];
    int p;
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const void *)ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
        p = ntohs(s6->sin6_port);
        if (bound)
            snprintf(bound, boundlen, "[%s]:%d", ip, p);
    } else {
        const struct sockaddr_in *s4 = (const void *)ss;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
        p = ntohs(s4->sin_port);
        if (bound)
            snprintf(bound, boundlen, "%s:%d", ip, p);
    }
    if (port_out)
        *port_out = p;
}

int net_listen_tcp(const char *hostport, int backlog, int flags, char *bound,
                   size_t boundlen, int *port_out, char *err, size_t errlen)
{
    char host[256];
    int port;
    if (!hostport || addr_split_hostport(hostport, host, sizeof host, &port) != 0) {
        seterr(err, errlen, "bad listen address (want host:port)");
        return NET_EADDR;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    /* startup only (documented): the loop is not running yet */
    int gr = getaddrinfo(*host ? host : NULL, ps, &hints, &res);
    if (gr != 0 || !res) {
        seterr(err, errlen, "cannot resolve listen address: %s", gai_strerror(gr));
        return NET_EADDR;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if ((flags & NET_LISTEN_REUSEPORT) &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        goto fail;
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, backlog) != 0)
        goto fail;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        format_bound(&ss, bound, boundlen, port_out);
    freeaddrinfo(res);
    return fd;
fail:
    seterr(err, errlen, "%s", strerror(errno));
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return NET_ERR;
}

static int unix_addr(const char *path, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (!path || !*path || strlen(path) >= sizeof sa->sun_path)
        return -1;
    memcpy(sa->sun_path, path, strlen(path));
    return 0;
}

int net_listen_unix(const char *path, int backlog, char *err, size_t errlen)
{
    struct sockaddr_un sa;
    if (unix_addr(path, &sa) != 0) {
        seterr(err, errlen, "socket path empty or too long (max %zu)",
               sizeof sa.sun_path - 1);
        return NET_EADDR;
    }
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            seterr(err, errlen, "path exists and is not a socket");
            return NET_EADDR;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int live = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0;
        if (probe >= 0)
            close(probe);
        if (live) {
            seterr(err, errlen, "socket is in use by another process");
            return NET_EINUSE;
        }
        unlink(path);    /* stale: nobody accepts on it */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, backlog) != 0) {
        seterr(err, errlen, "%s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return NET_ERR;
    }
    return fd;
}

/* ---- acceptor --------------------------------------------------------------- */

struct net_acceptor {
    int fd;
    int enabled;          /* user wants accepts */
    int paused;           /* backoff after an accept error */
    int added;            /* ev is in the loop */
    int max_per_wakeup;
    long backoff_ms;
    struct event *ev, *resume;
    net_accept_cb cb;
    net_accept_err_cb err_cb;
    void *arg;
    uint64_t errors;
    log_ratelimit rl;
    char name[32];
    char errstr[128];
};

static void acceptor_sync(net_acceptor *a)
{
    int want = a->enabled && !a->paused;
    if (want == a->added)
        return;
    if (want)
        event_add(a->ev, NULL);
    else
        event_del(a->ev);
    a->added = want;
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    net_acceptor *a = arg;
    a->paused = 0;
    acceptor_sync(a);
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    net_acceptor *a = arg;
    for (int i = 0; i < a->max_per_wakeup && a->enabled && !a->paused; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EAGAIN || e == EWOULDBLOCK)
                return;
            if (e == EINTR || e == ECONNABORTED || e == EPROTO)
                continue;
            /* EMFILE, ENFILE, ENOBUFS, ENOMEM...: the connection stays in
             * the backlog; stop polling and retry after the backoff rather
             * than spin on a level-triggered readable listener. */
            a->errors++;
            snprintf(a->errstr, sizeof a->errstr, "accept: %s", strerror(e));
            a->paused = 1;
            acceptor_sync(a);
            struct timeval tv = { a->backoff_ms / 1000, (a->backoff_ms % 1000) * 1000 };
            evtimer_add(a->resume, &tv);
            uint64_t supp = 0;
            if (log_rl_allow(&a->rl, &supp))
                log_kv(LOG_WARN, "accept failed; pausing accepts", "s:listener", a->name,
                       "s:error", strerror(e), "i:retry_ms", (int)a->backoff_ms,
                       "u:suppressed", supp, NULL);
            if (a->err_cb)
                a->err_cb(a, e, a->arg);
            return;
        }
        if (sl > sizeof ss)
            sl = 0;
        a->cb(a, fd, sl ? (struct sockaddr *)&ss : NULL, sl, a->arg);
    }
}

net_acceptor *net_acceptor_new(struct event_base *base, int lfd, const char *name,
                               int max_per_wakeup, long backoff_ms, net_accept_cb cb,
                               net_accept_err_cb err_cb, void *arg)
{
    net_acceptor *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    snprintf(a->name, sizeof a->name, "%s", name ? name : "");
    a->rl.per_sec = 1;
    a->fd = lfd;
    a->max_per_wakeup = max_per_wakeup > 0 ? max_per_wakeup : 1;
    a->backoff_ms = backoff_ms > 0 ? backoff_ms : NET_ACCEPT_BACKOFF_MS;
    a->cb = cb;
    a->err_cb = err_cb;
    a->arg = arg;
    a->ev = event_new(base, lfd, EV_READ | EV_PERSIST, on_accept, a);
    a->resume = evtimer_new(base, on_resume, a);
    if (!a->ev || !a->resume) {
        if (a->ev)
            event_free(a->ev);
        if (a->resume)
            event_free(a->resume);
        free(a);
        return NULL;
    }
    return a;
}

int net_acceptor_enable(net_acceptor *a, int on)
{
    a->enabled = on ? 1 : 0;
    if (!on) {
        a->paused = 0;
        evtimer_del(a->resume);
    }
    acceptor_sync(a);
    return NET_OK;
}

int net_acceptor_fd(const net_acceptor *a)
{
    return a->fd;
}

int net_acceptor_paused(const net_acceptor *a)
{
    return a->paused;
}

uint64_t net_acceptor_errors(const net_acceptor *a)
{
    return a->errors;
}

const char *net_acceptor_errstr(const net_acceptor *a)
{
    return a->errstr;
}

void net_acceptor_free(net_acceptor *a)
{
    if (!a)
        return;
    event_free(a->ev);
    event_free(a->resume);
    if (a->fd >= 0)
        close(a->fd);
    free(a);
}

/* ---- connect ------------------------------------------------------------------ */

struct net_connect {
    struct event_base *base;
    net_resolve *res;            /* while resolving */
    struct evutil_addrinfo *ai;  /* copy of the addresses; next to try */
    struct evutil_addrinfo *ai_all;
    int fd;
    struct event *wev;           /* connect completion */
    struct event *done;          /* deferred result */
    int result_fd, result_err;
    net_connect_cb cb;
    void *arg;
    char errstr[160];
};

static void connect_free(net_connect *c)
{
    if (c->res)
        net_resolve_cancel(c->res);
    if (c->wev)
        event_free(c->wev);
    if (c->done)
        event_free(c->done);
    if (c->fd >= 0)
        close(c->fd);
    if (c->result_fd >= 0)
        close(c->result_fd);
    while (c->ai_all) {
        struct evutil_addrinfo *n = c->ai_all->ai_next;
        free(c->ai_all->ai_addr);
        free(c->ai_all);
        c->ai_all = n;
    }
    free(c);
}

static void connect_deliver(evutil_socket_t fd, short what, void *arg)
{
    net_connect *c = arg;
    int rfd = c->result_fd;
    c->result_fd = -1;       /* the callee owns it now */
    c->cb(rfd, c->result_err, c->errstr, c->arg);
    connect_free(c);
}

static void connect_finish(net_connect *c, int fd, int err)
{
    if (c->wev) {
        event_free(c->wev);
        c->wev = NULL;
    }
    c->result_fd = fd;
    c->result_err = err;
    event_active(c->done, EV_TIMEOUT, 1);
}

static void connect_next(net_connect *c);

static void on_connect_writable(evutil_socket_t fd, short what, void *arg)
{
    net_connect *c = arg;
    int e = 0;
    socklen_t l = sizeof e;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l) != 0)
        e = errno;
    event_free(c->wev);
    c->wev = NULL;
    if (e == 0) {
        c->fd = -1;
        connect_finish(c, (int)fd, NET_OK);
        return;
    }
    snprintf(c->errstr, sizeof c->errstr, "connect: %s", strerror(e));
    close(c->fd);
    c->fd = -1;
    connect_next(c);
}

/* Try the address at c->ai (then the ones after it). */
static void connect_next(net_connect *c)
{
    while (c->ai) {
        struct evutil_addrinfo *ai = c->ai;
        c->ai = ai->ai_next;
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            snprintf(c->errstr, sizeof c->errstr, "socket: %s", strerror(errno));
            continue;
        }
        int rc;
        do
            rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        while (rc != 0 && errno == EINTR);
        if (rc == 0) {
            connect_finish(c, fd, NET_OK);
            return;
        }
        if (errno == EINPROGRESS) {
            c->fd = fd;
            c->wev = event_new(c->base, fd, EV_WRITE, on_connect_writable, c);
            if (c->wev && event_add(c->wev, NULL) == 0)
                return;
            snprintf(c->errstr, sizeof c->errstr, "out of memory");
            c->fd = -1;
            close(fd);
            break;
        }
        snprintf(c->errstr, sizeof c->errstr, "connect: %s", strerror(errno));
        close(fd);
    }
    if (!c->errstr[0])
        snprintf(c->errstr, sizeof c->errstr, "no address to connect to");
    connect_finish(c, -1, NET_ERR);
}

static void on_resolved(int err, const struct evutil_addrinfo *ai, const char *errstr,
                        void *arg)
{
    net_connect *c = arg;
    c->res = NULL;
    if (err != NET_OK) {
        snprintf(c->errstr, sizeof c->errstr, "resolve: %s", errstr);
        connect_finish(c, -1, NET_ERESOLVE);
        return;
    }
    /* copy the list: evdns frees its own after this callback */
    struct evutil_addrinfo **tail = &c->ai_all;
    for (; ai; ai = ai->ai_next) {
        struct evutil_addrinfo *n = calloc(1, sizeof *n);
        void *a = n ? malloc(ai->ai_addrlen) : NULL;
        if (!n || !a) {
            free(n);
            break;
        }
        n->ai_family = ai->ai_family;
        n->ai_addrlen = ai->ai_addrlen;
        memcpy(a, ai->ai_addr, ai->ai_addrlen);
        n->ai_addr = a;
        *tail = n;
        tail = &n->ai_next;
    }
    c->ai = c->ai_all;
    connect_next(c);
}

net_connect *net_connect_start(struct event_base *base, struct evdns_base *dns,
                               const net_endpoint *ep, net_connect_cb cb, void *arg)
{
    net_connect *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->base = base;
    c->fd = -1;
    c->result_fd = -1;
    c->cb = cb;
    c->arg = arg;
    c->done = event_new(base, -1, 0, connect_deliver, c);
    if (!c->done)
        goto err;
    if (ep->is_unix) {
        struct evutil_addrinfo *n = calloc(1, sizeof *n);
        struct sockaddr_un *sa = calloc(1, sizeof *sa);
        if (!n || !sa || unix_addr(ep->path, sa) != 0) {
            free(n);
            free(sa);
            goto err;
        }
        n->ai_family = AF_UNIX;
        n->ai_addrlen = sizeof *sa;
        n->ai_addr = (struct sockaddr *)sa;
        c->ai_all = c->ai = n;
        connect_next(c);   /* results are delivered from c->done */
        return c;
    }
    c->res = net_resolve_start(base, dns, ep->host, ep->port, on_resolved, c);
    if (!c->res)
        goto err;
    return c;
err:
    connect_free(c);
    return NULL;
}

void net_connect_cancel(net_connect *c)
{
    if (c)
        connect_free(c);
}

/* ---- options and I/O ------------------------------------------------------------ */

int net_keepalive(int fd, int idle_s, int intvl_s, int cnt)
{
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl_s, sizeof intvl_s) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) != 0)
        return NET_ERR;
    return NET_OK;
}

int net_nodelay(int fd)
{
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0 ? NET_OK
                                                                          : NET_ERR;
}

int net_linger_zero(int fd)
{
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    return setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0 ? NET_OK : NET_ERR;
}

int net_input_pending(int fd)
{
    if (fd < 0)
        return 0;
    struct pollfd p = { .fd = fd, .events = POLLIN };
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLIN | POLLHUP | POLLERR));
}

void net_close_abort(int fd)
{
    (void)net_linger_zero(fd);   /* harmless on AF_UNIX */
    close(fd);
}

ssize_t net_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t n = send(fd, p + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == ENOTSOCK)
            n = write(fd, p + done, len - done);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n == 0)
            errno = EPIPE;
        /* report what went out; the error repeats on the next call */
        return done > 0 ? (ssize_t)done : -1;
    }
    return (ssize_t)done;
}
