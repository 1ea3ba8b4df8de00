#include "shard/server.h"
#include "shard/admin.h"
#include "shard/adminsrv.h"
#include "shard/iptable.h"
#include "shard/envelope.h"
#include "shard/httpreq.h"
#include "shard/proxyproto.h"
#include "shard/resume.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/net.h"
#include "common/procmetrics.h"
#include "common/tbucket.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <http_parser.h>

#define IP_SWEEP_MS 10000
#define ACCEPT_BACKOFF_MS 100

struct shard_server {
    shard_ctx *ctx;
    client_io io;                /* the clients' socket calls (tests: fakes) */
    client_pool *pool;           /* the clients (shard/client.h) */
    shard_adminsrv *api;         /* the admin API (shard/adminsrv.h) */
    struct net_acceptor *lis[2]; /* WS_ADDR, WS_SHARED_ADDR (common/net.h) */
    int nlis;
    char ws_addr[96];            /* bound WS_ADDR (actual port) */
    int ws_port;
    struct event *sweep_ev;
    int accept_full;             /* listeners off: WS_MAX_PENDING reached */
    uint64_t accept_paused_ms;   /* pause start, or last accounted */
    uint64_t sweep_ms;
    uint64_t last_ipsweep_ms;
    iptable *ips;                /* per-IP limits' state (shard/iptable.h) */
    shard_admin *admin;          /* ADMIN_ADDR listener, NULL when unset */
    char admin_addr[96];         /* bound ADMIN_ADDR (actual port) */
    int admin_port;
    tbucket admin_rl[2];         /* ADMIN_RATE: [0] /metrics, [1] /health */
    buf scratch;                 /* pages */
    /* log rate limits (a flood must not flood the log): PROXY refusals,
     * a full per-IP table, admin pages, refused upgrades */
    log_ratelimit proxy_rl, iptable_rl, admin_rl_log, upgrade_rl;
};

/* a connection refused at accept */
static void close_fd(shard_server *srv, int fd)
{
    if (srv->io.close)
        srv->io.close(srv->io.ud, fd);
    else
        close(fd);
}

static long n_http(const shard_server *srv)
{
    return client_pool_counts(srv->pool)->http;
}

static int ip_pending_take(shard_server *srv, shard_client *c);
static void ip_table_refuse(shard_server *srv, shard_client *c, int err);

/* ---- listeners ------------------------------------------------------------ */

static int listen_on(const char *addr, int reuseport, char *bound,
                     size_t boundlen, int *port_out)
{
    char err[256];
    int fd = net_listen_tcp(addr, 4096, reuseport ? NET_LISTEN_REUSEPORT : 0, bound,
                            boundlen, port_out, err, sizeof(err));
    if (fd < 0)
        log_kv(LOG_ERROR, "cannot listen", "s:addr", addr, "s:error", err,
               "b:reuseport", reuseport, NULL);
    return fd;
}

static void listeners_enable(shard_server *srv, int on)
{
    for (int i = 0; i < srv->nlis; i++)
        if (srv->lis[i])
            net_acceptor_enable(srv->lis[i], on);
}

/* ---- accept pause (WS_MAX_PENDING) ---------------------------------------
 * With WS_MAX_PENDING connections in the HTTP phase the shard stops
 * accepting instead of accepting and closing (a close with the request
 * unread is a RST to the client).  New clients wait in the kernel's listen
 * backlog; past a full backlog the kernel drops their SYN and they retry
 * (tcp_abort_on_overflow=0), so nobody is reset.  Accepting resumes as soon
 * as a slot frees (an upgrade, or a pending connection closed). */

/* Fold the time paused so far into ws_accept_paused_seconds_total. */
static void accept_pause_account(shard_server *srv, uint64_t now)
{
    if (!srv->accept_full)
        return;
    srv->ctx->m.ws_accept_paused_seconds_total +=
        (double)(now - srv->accept_paused_ms) / 1000.0;
    srv->accept_paused_ms = now;
}

static void accept_pause(shard_server *srv)
{
    if (srv->accept_full)
        return;
    srv->accept_full = 1;
    srv->accept_paused_ms = clock_mono_ms();
    srv->ctx->m.ws_accept_paused_total++;
    listeners_enable(srv, 0);
}

static void accept_resume(shard_server *srv)
{
    if (!srv->accept_full || n_http(srv) >= srv->ctx->set->max_pending)
        return;
    accept_pause_account(srv, clock_mono_ms());
    srv->accept_full = 0;
    if (!srv->ctx->stopping)
        listeners_enable(srv, 1);
}

static void ip_pending_release(shard_server *srv, shard_client *c);

/* client_ops.http_leave (the pool has counted it out of n.http) */
static void on_http_leave(void *ud, shard_client *c)
{
    shard_server *srv = ud;
    ip_pending_release(srv, c);
    accept_resume(srv);
}

static void on_accept_error(net_acceptor *a, int err, void *arg)
{
    shard_server *srv = arg;
    srv->ctx->m.ws_accept_errors_total++;    /* the acceptor logs it */
}

static void on_accept(net_acceptor *a, int fd, const struct sockaddr *sa,
                      socklen_t salen, void *arg)
{
    shard_server_accept(arg, fd, sa, salen);
}

void shard_server_accept(shard_server *srv, int fd, const struct sockaddr *sa,
                         socklen_t salen)
{
    shard_ctx *ctx = srv->ctx;
    /* reached only by a drain flushing the shared listener's queue (the
     * listeners are off while the pool is full) and while stopping */
    if (ctx->stopping || n_http(srv) >= ctx->set->max_pending) {
        ctx->m.ws_pending_rejections_total++;
        close_fd(srv, fd);
        return;
    }
    net_nodelay(fd);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (sa && salen <= sizeof(ss))
        memcpy(&ss, sa, salen);
    shard_client *c = client_new(srv->pool, fd, (struct sockaddr *)&ss);
    if (!c) {
        close_fd(srv, fd);
        return;
    }
    client_peer *pe = client_peer_of(c);
    if (ctx->set->proxy_mode != SHARD_PROXY_OFF) {
        pe->flags |= CLIENT_PEER_PROXY_WAIT;
        if (cidr_list_match(&ctx->set->proxy_nets, pe->ip, pe->ip_len))
            pe->flags |= CLIENT_PEER_TRUSTED;
    }
    /* one address may not fill the WS_MAX_PENDING pool with silent
     * connections: checked at accept, before any byte is read.  A trusted
     * balancer carries every client: its clients are counted by the address
     * in their PROXY header instead (shard_server_proxy). */
    if (!(pe->flags & CLIENT_PEER_TRUSTED)) {
        int r = ip_pending_take(srv, c);
        if (r == -1) {
            ctx->m.ws_ip_pending_rejections_total++;
            client_kill(c, "per-IP pending connections limit");
        } else if (r != 0) {
            ip_table_refuse(srv, c, r);
        }
    }
    if (n_http(srv) >= ctx->set->max_pending)
        accept_pause(srv);
}

/* ---- PROXY protocol v2 -------------------------------------------------- */


static void proxy_refuse(shard_server *srv, shard_client *c, int reason,
                         const char *why)
{
    srv->ctx->m.ws_proxy_rejections_total[reason]++;
    uint64_t supp = 0;
    if (log_rl_allow(&srv->proxy_rl, &supp)) {
        const client_peer *pe = client_peer_const(c);
        char ip[64];
        if (!inet_ntop(pe->ip_len == 16 ? AF_INET6 : AF_INET, pe->ip, ip, sizeof ip))
            snprintf(ip, sizeof ip, "?");
        log_kv(LOG_WARN, "PROXY protocol: connection refused", "s:peer", ip,
               "i:port", (int)pe->port, "s:reason", why, "u:suppressed", supp, NULL);
    }
    /* a clean close: no HTTP answer to a peer that is not speaking HTTP yet */
    client_kill(c, why);
}

/* client_ops.proxy: WS_PROXY_PROTOCOL, on the first bytes of a connection
 * flagged CLIENT_PEER_PROXY_WAIT (data/len: everything received so far).
 * 1 when decided (*used = bytes of PROXY header to drop, maybe 0; the
 * client's address is now the header's source), 0 to wait for more bytes,
 * -1 when the connection was refused and killed (a PROXY header from an
 * untrusted source, a missing or bad header from a trusted one; counted in
 * ws_proxy_rejections_total{reason}). */
static int on_proxy(void *ud, shard_client *c, const uint8_t *data, size_t len,
                    size_t *used)
{
    shard_server *srv = ud;
    const shard_settings *s = srv->ctx->set;
    client_peer *pe = client_peer_of(c);
    *used = 0;
    if (!(pe->flags & CLIENT_PEER_TRUSTED)) {
        /* anyone may connect directly, but only a trusted balancer may say
         * who the client is: a header from elsewhere is a spoof attempt */
        enum proxyproto_sniff k = proxyproto_sniff(data, len);
        if (k == PROXYPROTO_SNIFF_MAYBE && len < PROXYPROTO_SIG_LEN)
            return 0;
        if (k != PROXYPROTO_SNIFF_NO) {
            proxy_refuse(srv, c, SM_PROXY_UNTRUSTED,
                         "PROXY header from an untrusted source");
            return -1;
        }
        pe->flags &= (uint16_t)~CLIENT_PEER_PROXY_WAIT;
        return 1;
    }
    proxyproto_hdr h;
    int r = proxyproto_parse(data, len, &h);
    if (r == 0)
        return 0;
    if (r == PROXYPROTO_E_NOT_PROXY && s->proxy_mode == SHARD_PROXY_OPTIONAL) {
        pe->flags &= (uint16_t)~CLIENT_PEER_PROXY_WAIT;   /* a direct connection */
        return 1;
    }
    if (r < 0) {
        if (r == PROXYPROTO_E_NOT_PROXY)
            proxy_refuse(srv, c, SM_PROXY_MISSING,
                         "no PROXY header from a trusted source (WS_PROXY_PROTOCOL=required)");
        else
            proxy_refuse(srv, c, SM_PROXY_INVALID,
                         r == PROXYPROTO_E_V1 ? "PROXY v1 header (only v2 is accepted)"
                         : r == PROXYPROTO_E_VERSION ? "PROXY header: bad version or command"
                         : r == PROXYPROTO_E_TOOBIG ? "PROXY header too long"
                         : "PROXY header: bad address block");
        return -1;
    }
    srv->ctx->m.ws_proxy_headers_total++;
    pe->flags &= (uint16_t)~CLIENT_PEER_PROXY_WAIT;
    if (h.family == AF_INET || h.family == AF_INET6) {
        pe->ip_len = h.family == AF_INET ? 4 : 16;
        memcpy(pe->ip, h.src, pe->ip_len);
        pe->port = h.src_port;
        pe->flags |= CLIENT_PEER_VIA_PROXY;
        int ipr = ip_pending_take(srv, c);
        if (ipr == -1) {
            srv->ctx->m.ws_ip_pending_rejections_total++;
            client_kill(c, "per-IP pending connections limit");
            return -1;
        }
        if (ipr != 0) {
            ip_table_refuse(srv, c, ipr);
            return -1;
        }
    }
    *used = (size_t)r;
    return 1;
}

/* WS_SHARED_ADDR: bound at start and again when a drain ends. */
static int shared_open(shard_server *srv)
{
    shard_ctx *ctx = srv->ctx;
    const shard_settings *s = ctx->set;
    char b[96];
    int fd = listen_on(s->ws_shared_addr, 1, b, sizeof(b), NULL);
    if (fd < 0 || !(srv->lis[1] = net_acceptor_new(
                        ctx->base, fd, "ws-shared", (int)s->accept_batch,
                        ACCEPT_BACKOFF_MS, on_accept, on_accept_error, srv))) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    log_kv(LOG_INFO, "listening (shared, SO_REUSEPORT)", "s:addr", b, NULL);
    return 0;
}

int shard_server_set_draining(shard_server *srv, int on)
{
    const shard_settings *s = srv->ctx->set;
    if (!(s->ws_shared_addr && *s->ws_shared_addr))
        return 0;
    if (on && srv->lis[1]) {
        /* Accept what the kernel already queued on this socket (they get
         * 503 "draining" and retry) instead of resetting them, then close:
         * from now on the kernel hashes new clients over the other shards'
         * sockets only. */
        int lfd = net_acceptor_fd(srv->lis[1]);
        for (long i = 0; i < s->max_pending; i++) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            int fd = accept4(lfd, (struct sockaddr *)&ss, &sl,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0)
                break;
            shard_server_accept(srv, fd, (struct sockaddr *)&ss, sl);
        }
        net_acceptor_free(srv->lis[1]);
        srv->lis[1] = NULL;
        log_kv(LOG_INFO, "draining: shared listener closed", "s:addr",
               s->ws_shared_addr, NULL);
    } else if (!on && !srv->lis[1] && !srv->ctx->stopping) {
        if (shared_open(srv) != 0)
            return -1;
        net_acceptor_enable(srv->lis[1], !srv->accept_full);
    }
    return 0;
}

/* ---- per-IP limits (shard/iptable.h) --------------------------------- */


static void ip_text(const uint8_t *ip, size_t ip_len, char *out, size_t outlen)
{
    if (!inet_ntop(ip_len == 16 ? AF_INET6 : AF_INET, ip, out, (socklen_t)outlen))
        snprintf(out, outlen, "?");
}

static void ip_table_log(shard_server *srv, const shard_client *c, int err)
{
    uint64_t supp = 0;
    if (!log_rl_allow(&srv->iptable_rl, &supp))
        return;
    const client_peer *pe = client_peer_const(c);
    char ip[64];
    ip_text(pe->ip, pe->ip_len, ip, sizeof ip);
    log_kv(LOG_WARN, "per-IP table full: new address refused", "s:peer", ip,
           "i:port", (int)pe->port, "s:reason",
           err == IPTABLE_E_FULL ? "WS_IP_TABLE_MAX" : "out of memory",
           "u:entries", (uint64_t)iptable_size(srv->ips),
           "u:suppressed", supp, NULL);
}

/* A connection whose address has no entry and cannot get one (table full
 * or ENOMEM): refused at once, fail closed.  The 503 is written straight to
 * the fresh socket (its send buffer is empty) and the connection closed, so
 * it holds no WS_MAX_PENDING slot; what the client already sent is read and
 * dropped first so the close is a FIN, not a reset that could lose the
 * answer. */
static void ip_table_refuse(shard_server *srv, shard_client *c, int err)
{
    srv->ctx->m.ws_ip_table_full_rejections_total++;
    ip_table_log(srv, c, err);
    static const char body[] = "{\"error\":\"too many client addresses\"}\n";
    buf out = { 0 };
    if (ws_http_response(&out, 503, "application/json", body, sizeof body - 1,
                         "Retry-After: 1\r\n") == 0)
        client_refuse_now(c, out.data, out.len, "per-IP table full (WS_IP_TABLE_MAX)");
    else
        client_kill(c, "per-IP table full (WS_IP_TABLE_MAX)");
    buf_free(&out);
}

/* Take one of the address's WS_IP_MAX_PENDING HTTP-phase slots: 0, -1 when
 * it holds them all, or IPTABLE_E_FULL / IPTABLE_E_NOMEM when the address
 * has no entry and cannot get one (the caller refuses the connection). */
static int ip_pending_take(shard_server *srv, shard_client *c)
{
    long cap = srv->ctx->set->ip_max_pending;
    if (cap <= 0)
        return 0;
    client_peer *pe = client_peer_of(c);
    int err = 0;
    iptable_entry *e = iptable_get(srv->ips, pe->ip, pe->ip_len, clock_mono_ms(), &err);
    if (!e)
        return err;
    if (iptable_pending_take(e, (uint32_t)cap) != 0)
        return -1;
    pe->flags |= CLIENT_PEER_IP_PENDING;
    return 0;
}

static void ip_pending_release(shard_server *srv, shard_client *c)
{
    client_peer *pe = client_peer_of(c);
    if (!(pe->flags & CLIENT_PEER_IP_PENDING))
        return;
    pe->flags &= (uint16_t)~CLIENT_PEER_IP_PENDING;
    iptable_pending_release(srv->ips, pe->ip, pe->ip_len);
}

/* WS_IP_RATE at the upgrade: 1 if allowed, 0 if over the rate, or
 * IPTABLE_E_FULL / IPTABLE_E_NOMEM (no entry and none can be made). */
static int ip_allow(shard_server *srv, const client_peer *pe, uint64_t now)
{
    const shard_settings *s = srv->ctx->set;
    if (s->ip_rate <= 0)
        return 1;
    int err = 0;
    iptable_entry *e = iptable_get(srv->ips, pe->ip, pe->ip_len, now, &err);
    if (!e)
        return err;
    return iptable_rate_take(srv->ips, e);
}

/* RESUME_IP_RATE: 1 if this address may start a reconnect now, else 0
 * (over the rate, or no entry can be made: the table is full). */
int shard_server_ip_reconnect_allow(shard_server *srv, const client_peer *pe,
                                    uint64_t now)
{
    const shard_settings *s = srv->ctx->set;
    if (s->resume_ip_rate <= 0)
        return 1;
    int err = 0;
    iptable_entry *e = iptable_get(srv->ips, pe->ip, pe->ip_len, now, &err);
    if (!e)
        return 0;        /* table full: fail closed, as WS_IP_RATE */
    if (e->reconnects.burst <= 0)
        tbucket_init(&e->reconnects, s->resume_ip_rate,
                     (double)s->resume_ip_burst, now);
    return tbucket_take(&e->reconnects, now);
}

/* client_ops.ip_channel_take: WS_IP_MAX_CHANNELS, counted per client
 * address across its connections: take one channel slot for c (0), or -1
 * when its address holds them all (the client refuses the subscription),
 * also when the per-address table is full and has no entry for it (fail
 * closed). */
static int on_ip_channel_take(void *ud, shard_client *c)
{
    shard_server *srv = ud;
    long cap = srv->ctx->set->ip_max_channels;
    if (cap <= 0)
        return 0;
    client_peer *pe = client_peer_of(c);
    int err = 0;
    iptable_entry *e = iptable_get(srv->ips, pe->ip, pe->ip_len, clock_mono_ms(),
                                   &err);
    if (!e)
        return -1;    /* table full: fail closed, as the other per-IP limits */
    if (e->channels >= (uint32_t)cap)
        return -1;
    e->channels++;
    pe->ip_channels++;
    return 0;
}

/* client_ops.ip_channel_release: give back n of the slots c holds (more
 * than it holds are ignored). */
static void on_ip_channel_release(void *ud, shard_client *c, uint32_t n)
{
    shard_server *srv = ud;
    client_peer *pe = client_peer_of(c);
    if (n > pe->ip_channels)
        n = pe->ip_channels;
    if (n == 0)
        return;
    pe->ip_channels -= n;
    iptable_entry *e = iptable_find(srv->ips, pe->ip, pe->ip_len);
    if (e)
        e->channels = e->channels > n ? e->channels - n : 0;
}

/* ---- HTTP phase -------------------------------------------------------- */

static void http_reply(shard_server *srv, shard_client *c, int status,
                       const char *ctype, const char *body, size_t len,
                       const char *extra)
{
    buf out = { 0 };
    if (ws_http_response(&out, status, ctype, body, len, extra) != 0) {
        buf_free(&out);
        client_kill(c, "out of memory");
        return;
    }
    client_http_reply(c, out.data, out.len, 1);
    buf_free(&out);
}

static void http_error(shard_server *srv, shard_client *c, int status,
                       const char *msg, const char *extra)
{
    /* msg may hold quotes (reasons name headers): always escape it */
    buf body = { 0 };
    if (buf_append(&body, "{\"error\":", 9) != 0 ||
        buf_append_json_str(&body, msg, strlen(msg)) != 0 ||
        buf_append(&body, "}\n", 2) != 0) {
        buf_free(&body);
        client_kill(c, "out of memory");
        return;
    }
    http_reply(srv, c, status, "application/json", body.data, body.len, extra);
    buf_free(&body);
}

static int path_is(const httpreq *r, const char *p)
{
    size_t n = strlen(p);
    return r->path.len == n && memcmp(r->path.p, p, n) == 0;
}

/* ---- /health, /livez, /readyz and /metrics ---------------------------- */


/*
 * ADMIN_ALLOW, then ADMIN_RATE (one bucket per page, shared by ADMIN_ADDR
 * and WS_ADDR; /livez and /readyz share /health's) for one request of
 * page (enum shard_admin_page) from ip.  0 to serve it, else the status to answer: 404 (not allowed) or 429;
 * counted, and logged at a bounded rate with the peer's address.
 */
static int admin_gate(shard_server *srv, int page, const uint8_t *ip,
                      size_t ip_len, int port, const char *listener)
{
    shard_ctx *ctx = srv->ctx;
    const shard_settings *s = ctx->set;
    int st = 0;
    const char *why = NULL;
    if (s->admin_nets.n && !cidr_list_match(&s->admin_nets, ip, ip_len)) {
        ctx->m.ws_admin_forbidden_total++;
        st = 404;
        why = "not in ADMIN_ALLOW";
    } else if (!tbucket_take(&srv->admin_rl[page ? 1 : 0], clock_mono_ms())) {
        ctx->m.ws_admin_ratelimit_rejections_total[page ? 1 : 0]++;
        st = 429;
        why = "over ADMIN_RATE";
    }
    uint64_t supp = 0;
    if (st && log_rl_allow(&srv->admin_rl_log, &supp)) {
        char txt[64];
        ip_text(ip, ip_len, txt, sizeof txt);
        log_kv(LOG_WARN, "admin request refused", "s:peer", txt, "i:port", port,
               "s:path", shard_admin_page_path(page), "s:listener", listener,
               "i:status", st, "s:reason", why, "u:suppressed", supp, NULL);
    }
    return st;
}

/* Append the page to out: its HTTP status (200, or 503 for an unhealthy
 * /health or a /readyz not ready), or -1 on ENOMEM. */
static int render_page(shard_server *srv, int page, buf *out)
{
    shard_ctx *ctx = srv->ctx;
    shard_gauges g;
    ctx->gauges_fill(ctx, &g);
    int status = 200;
    int rc;
    if (page != SHARD_PAGE_METRICS) {
        rc = page == SHARD_PAGE_LIVEZ    ? shard_livez_render(out, &g)
           : page == SHARD_PAGE_READYZ   ? shard_readyz_render(out, &g)
                                         : shard_health_render(out, &g);
        if (rc > 0) {
            status = rc;
            rc = 0;
        }
    } else {
        accept_pause_account(srv, clock_mono_ms());
        procmetrics pm;
        procmetrics_sample(&pm);
        rc = shard_metrics_render(out, &ctx->m, &g);
        if (rc == 0)
            rc = procmetrics_render(out, &pm, "odin-shard");
    }
    if (rc != 0)
        return -1;
    ctx->m.ws_http_requests_total++;
    return status;
}

#define PROM_CTYPE "text/plain; version=0.0.4; charset=utf-8"

static void serve_page(shard_server *srv, shard_client *c, int page)
{
    const client_peer *pe = client_peer_const(c);
    int st = admin_gate(srv, page, pe->ip, pe->ip_len, pe->port, "ws");
    if (st == 429) {
        http_error(srv, c, 429, "too many requests", "Retry-After: 1\r\n");
        return;
    }
    if (st) {
        http_error(srv, c, st, "not found", NULL);
        return;
    }
    buf_reset(&srv->scratch);
    int status = render_page(srv, page, &srv->scratch);
    if (status < 0) {
        http_error(srv, c, 500, "out of memory", NULL);
        return;
    }
    http_reply(srv, c, status, page != SHARD_PAGE_METRICS ? "application/json" : PROM_CTYPE,
               srv->scratch.data, srv->scratch.len, NULL);
}

/* shard_admin_callbacks.page: a request on ADMIN_ADDR. */
static int admin_page(void *ud, int page, const uint8_t *ip, size_t ip_len,
                      int port, buf *out, const char **ctype)
{
    shard_server *srv = ud;
    *ctype = "application/json";
    int st = admin_gate(srv, page, ip, ip_len, port, "admin");
    if (st)
        return buf_appendf(out, "{\"error\":\"%s\"}\n", st == 429 ? "too many requests"
                                                                   : "not found") == 0
                   ? st : -1;
    if (page == SHARD_PAGE_METRICS)
        *ctype = PROM_CTYPE;
    return render_page(srv, page, out);
}

/* Refused upgrades (403, 429, 503), logged with the client's address (the
 * PROXY header's when there is one) at most UPGRADE_LOG_PER_SEC lines a
 * second; "suppressed" counts the lines skipped since the last one. */
#define UPGRADE_LOG_PER_SEC 10

static void refuse_upgrade(shard_server *srv, shard_client *c, const httpreq *req,
                           int status, const char *reason, const char *extra)
{
    uint64_t supp = 0;
    if (log_rl_allow(&srv->upgrade_rl, &supp)) {
        const client_peer *pe = client_peer_const(c);
        char ip[64];
        ip_text(pe->ip, pe->ip_len, ip, sizeof ip);
        log_kv(LOG_WARN, "upgrade refused", "s:peer", ip, "i:port", (int)pe->port,
               "i:status", status, "s:reason", reason,
               "S:origin", req->origin.p ? req->origin.p : "",
               req->origin.p ? req->origin.len : (size_t)0,
               "u:suppressed", supp, NULL);
    }
    http_error(srv, c, status, reason, extra);
}

static void upgrade(shard_server *srv, shard_client *c, const httpreq *req,
                    const char *data, size_t len)
{
    shard_ctx *ctx = srv->ctx;
    const char *reason = NULL;
    int st = ws_handshake_check(req, &reason);
    if (st != 0) {
        ctx->m.ws_handshake_failures_total++;
        http_error(srv, c, st, reason,
                   st == 426 ? "Sec-WebSocket-Version: 13\r\n" : NULL);
        return;
    }
    if (!ws_origin_allowed(ctx->set->allowed_origins, req)) {
        ctx->m.ws_origin_rejections_total++;
        refuse_upgrade(srv, c, req, 403, "origin not allowed", NULL);
        return;
    }
    if (ctx->stopping) {
        refuse_upgrade(srv, c, req, 503, "shutting down", NULL);
        return;
    }
    if (ctx->draining) {
        ctx->m.ws_drain_rejections_total++;
        refuse_upgrade(srv, c, req, 503, "draining", "Retry-After: 1\r\n");
        return;
    }
    int allow = ip_allow(srv, client_peer_const(c), clock_mono_ms());
    if (allow < 0) {
        ctx->m.ws_ip_table_full_rejections_total++;
        ip_table_log(srv, c, allow);
        refuse_upgrade(srv, c, req, 503, "too many client addresses", "Retry-After: 1\r\n");
        return;
    }
    if (!allow) {
        ctx->m.ws_ratelimit_rejections_total++;
        refuse_upgrade(srv, c, req, 429, "connection rate limit exceeded",
                       "Retry-After: 1\r\n");
        return;
    }
    const client_counts *n = client_pool_counts(srv->pool);
    if (n->open + n->closing >= ctx->max_connections) {
        ctx->m.ws_capacity_rejections_total++;
        refuse_upgrade(srv, c, req, 503, "at capacity", "Retry-After: 1\r\n");
        return;
    }
    char pmd[WS_PMD_RESPONSE_MAX];
    int deflate = ctx->set->ws_deflate && ws_pmd_negotiate(req->ws_ext, req->n_ws_ext, pmd);
    buf out = { 0 };
    if (ws_handshake_response_ext(&out, req->ws_key.p, req->ws_key.len,
                                  deflate ? pmd : NULL) != 0) {
        buf_free(&out);
        http_error(srv, c, 500, "internal error", NULL);
        return;
    }
    client_http_reply(c, out.data, out.len, 0);
    buf_free(&out);
    if (client_state(c) != CL_HTTP)
        return;
    client_upgrade(c, deflate, data + req->head_len, len - req->head_len);
}

/* client_ops.http_request: a complete (or too long) request head. */
static void on_http_request(void *ud, shard_client *c, const char *data,
                            size_t len)
{
    shard_server *srv = ud;
    httpreq req;
    int r = httpreq_parse(data, len, SHARD_HTTP_MAX_HEAD, &req);
    if (r == HTTPREQ_INCOMPLETE)
        return;
    if (r == HTTPREQ_E_TOOBIG) {
        srv->ctx->m.ws_handshake_failures_total++;
        http_error(srv, c, 431, "request head too large", NULL);
        return;
    }
    if (r < 0) {
        srv->ctx->m.ws_handshake_failures_total++;
        http_error(srv, c, 400, "bad request", NULL);
        return;
    }
    if (path_is(&req, "/ws")) {
        upgrade(srv, c, &req, data, len);
    } else if (shard_admin_page_of(req.path.p, req.path.len) >= 0) {
        if ((client_peer_const(c)->flags & CLIENT_PEER_VIA_PROXY) || srv->admin) {
            /* internal endpoints are not served to clients of the public
             * load balancer (they arrive with a PROXY header), nor on
             * WS_ADDR at all when ADMIN_ADDR is their listener */
            srv->ctx->m.ws_handshake_failures_total++;
            http_error(srv, c, 404, "not found", NULL);
        } else if (req.method != HTTP_GET) {
            srv->ctx->m.ws_handshake_failures_total++;
            http_error(srv, c, 405, "method not allowed", "Allow: GET\r\n");
        } else {
            serve_page(srv, c, shard_admin_page_of(req.path.p, req.path.len));
        }
    } else {
        srv->ctx->m.ws_handshake_failures_total++;
        http_error(srv, c, 404, "not found", NULL);
    }
}

/* ---- timers ------------------------------------------------------------ */

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    shard_server *srv = arg;
    uint64_t now = clock_mono_ms();
    client_pool_tick(srv->pool, now);
    if (now - srv->last_ipsweep_ms >= IP_SWEEP_MS) {
        srv->last_ipsweep_ms = now;
        iptable_sweep(srv->ips, now, 0);
    }
}

/* ---- client ops: resume (shard/resume.h) ------------------------------- */

static void on_resume_start(void *ud, shard_client *c, const resume_req_chan *ch,
                            size_t n, int odinws)
{
    shard_server *srv = ud;
    if (srv->ctx->resume)
        shard_resume_start(srv->ctx->resume, client_resume(c), ch, n, odinws);
}

static void on_client_gone(void *ud, shard_client *c)
{
    shard_server *srv = ud;
    if (srv->ctx->resume)
        shard_resume_client_gone(srv->ctx->resume, client_resume(c));
}

/* ---- getters ------------------------------------------------------------ */

client_pool *shard_server_clients(shard_server *srv)
{
    return srv->pool;
}

void shard_server_gauges_get(const shard_server *srv, shard_server_gauges *g)
{
    const client_counts *n = client_pool_counts(srv->pool);
    g->pending = n->http;
    g->connections = n->open;
    g->closing = n->closing;
    g->queue_bytes = (long)n->queue_bytes;
    g->ip_table_entries = (long)iptable_size(srv->ips);
    const ws_parser_set *ps = client_pool_parsers(srv->pool);
    g->parser_contexts = ws_parser_contexts(ps);
    g->partial_bytes = (long)ws_parser_partial_bytes(ps);
    g->inflated = ws_inflate_messages(ps);
    g->inflate_refused = ws_inflate_refused(ps);
}

long shard_server_connections(const shard_server *srv)
{
    return client_pool_counts(srv->pool)->open;
}

const char *shard_server_ws_addr(const shard_server *srv)
{
    return srv->ws_addr;
}

const char *shard_server_admin_addr(const shard_server *srv)
{
    return srv->admin ? srv->admin_addr : "";
}

/* ---- fan-out ops (shard/fanout.h) ------------------------------------- */

static int fo_push(void *ud, shard_client *c, ws_chunk *ch)
{
    return client_push(c, ch);
}

static int fo_resume_filter(void *ud, shard_client *c, const frame_record *r,
                            ws_chunk *ch)
{
    shard_server *srv = ud;
    resume_conn *rc = client_resume(c);
    return rc->rs && srv->ctx->resume &&
           shard_resume_filter(srv->ctx->resume, rc, r, ch);
}

static shard_client *fo_next_client(void *ud, shard_client *prev)
{
    return client_pool_next(((shard_server *)ud)->pool, prev);
}

static long fo_n_open(void *ud)
{
    return shard_server_connections(ud);
}

static void fo_walking(void *ud, int on)
{
    client_pool_walking(((shard_server *)ud)->pool, on);
}

void shard_server_fanout_ops(shard_server *srv, fanout_ops *ops)
{
    *ops = (fanout_ops){ .push = fo_push, .resume_filter = fo_resume_filter,
                         .next_client = fo_next_client, .n_open = fo_n_open,
                         .walking = fo_walking };
}

/* ---- lifecycle ---------------------------------------------------------- */

static int api_set_draining(void *ud, int on)
{
    return shard_server_set_draining(ud, on);
}

shard_server *shard_server_new(shard_ctx *ctx, const client_io *io)
{
    const shard_settings *s = ctx->set;
    shard_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return NULL;
    srv->ctx = ctx;
    if (io)
        srv->io = *io;
    srv->proxy_rl.per_sec = 5;
    srv->iptable_rl.per_sec = 2;
    srv->admin_rl_log.per_sec = 2;
    srv->upgrade_rl.per_sec = UPGRADE_LOG_PER_SEC;
    srv->nlis = 2;   /* lis[0]: WS_ADDR; lis[1]: the shared listener, NULL when closed */
    client_ops ops = { .http_request = on_http_request, .proxy = on_proxy,
                       .http_leave = on_http_leave,
                       .ip_channel_take = on_ip_channel_take,
                       .ip_channel_release = on_ip_channel_release,
                       .resume_start = on_resume_start, .gone = on_client_gone };
    adminsrv_ops aops = { .set_draining = api_set_draining, .ud = srv };
    iptable_conf ic = { .max_entries = (size_t)s->ip_table_max,
                        .v6_prefix = (unsigned)s->ipv6_prefix,
                        .rate = s->ip_rate, .burst = (double)s->ip_burst };
    if (!(srv->pool = client_pool_new(ctx, &ops, srv, io)) ||
        !(srv->api = shard_adminsrv_new(ctx, srv->pool, &aops)) ||
        !(srv->ips = iptable_new(&ic)) ||
        !(srv->sweep_ev = event_new(ctx->base, -1, EV_PERSIST, on_sweep, srv))) {
        log_kv(LOG_ERROR, "cannot set up the client server", "s:error",
               "out of memory", NULL);
        shard_server_free(srv);
        return NULL;
    }
    uint64_t t0 = clock_mono_ms();
    for (int i = 0; i < 2; i++)
        tbucket_init(&srv->admin_rl[i], s->admin_rate, (double)s->admin_burst, t0);
    srv->last_ipsweep_ms = t0;
    return srv;
}

int shard_server_listen(shard_server *srv)
{
    shard_ctx *ctx = srv->ctx;
    const shard_settings *s = ctx->set;
    if (s->admin_addr && *s->admin_addr) {
        shard_admin_callbacks acb = { .page = admin_page, .api = shard_adminsrv_api,
                                      .ud = srv, .api_ud = srv->api };
        if (!(srv->admin = shard_admin_new(ctx->base, s->admin_addr, &acb,
                                           srv->admin_addr, sizeof srv->admin_addr,
                                           &srv->admin_port)))
            return -1;
        log_kv(LOG_INFO, "admin listener (/health, /livez, /readyz, /metrics, /admin/v1)", "s:addr",
               srv->admin_addr, "b:admin_token", s->admin_token && *s->admin_token, NULL);
    } else if (s->admin_token && *s->admin_token) {
        log_kv(LOG_WARN, "ADMIN_TOKEN is set but ADMIN_ADDR is not: the admin API is "
               "served only on ADMIN_ADDR, so there is none", NULL);
    }

    int fd = listen_on(s->ws_addr, s->ws_reuseport, srv->ws_addr,
                       sizeof(srv->ws_addr), &srv->ws_port);
    if (fd < 0 || !(srv->lis[0] = net_acceptor_new(
                        ctx->base, fd, "ws", (int)s->accept_batch, ACCEPT_BACKOFF_MS,
                        on_accept, on_accept_error, srv))) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (s->ws_shared_addr && *s->ws_shared_addr && shared_open(srv) != 0)
        return -1;
    listeners_enable(srv, 1);

    double m = s->ping_interval;
    if (s->idle_timeout < m) m = s->idle_timeout;
    if (s->handshake_timeout < m) m = s->handshake_timeout;
    if (s->close_timeout < m) m = s->close_timeout;
    srv->sweep_ms = (uint64_t)(m * 1000 / 4);
    if (srv->sweep_ms < 10) srv->sweep_ms = 10;
    if (srv->sweep_ms > 1000) srv->sweep_ms = 1000;
    struct timeval tv = { (time_t)(srv->sweep_ms / 1000),
                          (suseconds_t)(srv->sweep_ms % 1000) * 1000 };
    event_add(srv->sweep_ev, &tv);
    log_kv(LOG_INFO, "listening", "s:addr", srv->ws_addr, "b:reuseport",
           s->ws_reuseport, NULL);
    return 0;
}

static void close_listeners(shard_server *srv)
{
    for (int i = 0; i < srv->nlis; i++) {
        net_acceptor_free(srv->lis[i]);
        srv->lis[i] = NULL;
    }
}

void shard_server_shutdown(shard_server *srv, void (*cb)(void *), void *ud)
{
    close_listeners(srv);
    client_pool_shutdown(srv->pool, cb, ud);
}

void shard_server_free(shard_server *srv)
{
    if (!srv)
        return;
    close_listeners(srv);
    client_pool_free(srv->pool);   /* clients first: they release per-IP slots */
    if (srv->sweep_ev)
        event_free(srv->sweep_ev);
    iptable_free(srv->ips);
    shard_admin_free(srv->admin);
    shard_adminsrv_free(srv->api);
    buf_free(&srv->scratch);
    free(srv);
}
