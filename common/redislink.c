#include "common/redislink.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/adapters/libevent.h>

#include "common/log.h"
#include "common/net.h"

/* RL_CONNECTED: the TCP connection is up, the handshake (AUTH, ROLE in
 * Sentinel mode, SELECT) is under way and the context is not handed out;
 * RL_UP: ready, every handshake step answered well (redislink.h). */
enum rl_state { RL_DOWN, RL_SENTINEL, RL_RESOLVING, RL_CONNECTING, RL_CONNECTED, RL_UP };

#define SENTINELS_MAX 8

typedef struct sentinel_addr {
    char host[256];
    int port;
} sentinel_addr;

struct redislink {
    struct event_base *base;
    struct evdns_base *dns, *own_dns;
    redis_endpoint ep;
    char name[32];
    long timeout_ms, backoff_min_ms, backoff_max_ms, backoff_ms;
    long ping_interval_ms, ping_timeout_ms;
    redislink_cb cb;
    void *arg;
    redisAsyncContext *ac;
    net_resolve *res;
    enum rl_state state;
    int notified_up;          /* user was told "up" and not yet "down" */
    int pending_up;           /* deferred notification */
    int pending_down;
    int ping_outstanding;
    int pong_registered;      /* PONG_TOKEN pattern registered on this ac */
    struct event *retry;      /* reconnect timer / connect timeout */
    struct event *notify;     /* deferred user notification */
    struct event *ping;       /* PING interval (persistent) */
    struct event *dead;       /* PING reply timeout */
    int logged_failure;       /* log the first failed attempt only */
    int auth_sent, authed;    /* AUTH on this connection (ep.password set) */
    int auth_failed;          /* drop from the dead event: AUTH refused */
    /* Sentinel (ep.sentinels): ask one for the master before each connect */
    sentinel_addr sent[SENTINELS_MAX];
    size_t nsent, sent_next;
    redisAsyncContext *sac;   /* the one-shot query in flight */
    int role_sent, role_ok;   /* ROLE checked on this connection */
    int select_sent, select_ok;  /* SELECT <db> answered on this connection */
    int select_failed;        /* drop from the dead event: SELECT refused */
    int not_master;           /* drop from the dead event: a replica now */
    char errstr[160];
};

static void start_connect(redislink *l);
static void sentinel_ctx(redislink *l, const char *ip);

static void arm(struct event *ev, long ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(ev, &tv);
}

static void set_err(redislink *l, const char *what, const char *detail)
{
    snprintf(l->errstr, sizeof l->errstr, "%s%s%s", what, detail && *detail ? ": " : "",
             detail ? detail : "");
}

static void connect_failed(redislink *l, const char *detail)
{
    set_err(l, "connect failed", detail);
    if (!l->logged_failure)
        log_kv(LOG_WARN, "redis connect failed", "s:conn", l->name, "s:error", detail,
               NULL);
    l->logged_failure = 1;
}

static void schedule_retry(redislink *l)
{
    arm(l->retry, l->backoff_ms);
    l->backoff_ms *= 2;
    if (l->backoff_ms > l->backoff_max_ms)
        l->backoff_ms = l->backoff_max_ms;
}

/* Connection gone (for whatever reason): forget the context, plan a retry,
 * and tell the user if they had been told it was up. */
static void went_down(redislink *l)
{
    l->ac = NULL;
    l->state = RL_DOWN;
    l->ping_outstanding = 0;
    evtimer_del(l->ping);
    evtimer_del(l->dead);
    evtimer_del(l->retry);
    schedule_retry(l);
    l->pending_up = 0;
    if (l->notified_up) {
        l->pending_down = 1;
        event_active(l->notify, EV_TIMEOUT, 0);
    }
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
    redislink *l = ac->data;
    if (!l || l->ac != ac)
        return;
    if (status != REDIS_OK) {
        connect_failed(l, ac->errstr);
        went_down(l);    /* hiredis frees ac after this returns */
        return;
    }
    /* Connected, not ready: the handshake runs from notify_cb, bounded by
     * the connect timeout (retry_cb); the backoff is reset only at ready,
     * so a server that refuses AUTH is retried ever more slowly. */
    l->state = RL_CONNECTED;
    evtimer_del(l->retry);
    arm(l->retry, l->timeout_ms);
    l->pending_up = 1;
    l->auth_sent = l->authed = l->auth_failed = 0;
    l->role_sent = l->role_ok = l->not_master = 0;
    l->select_sent = l->select_ok = l->select_failed = 0;
    event_active(l->notify, EV_TIMEOUT, 0);
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    redislink *l = ac->data;
    if (!l || l->ac != ac)
        return;
    set_err(l, "connection lost", ac->errstr[0] ? ac->errstr : "closed");
    log_kv(LOG_WARN, "redis connection lost", "s:conn", l->name, "s:error",
           ac->errstr[0] ? ac->errstr : "closed", NULL);
    went_down(l);
}

/* ---- PING keepalive ----------------------------------------------------- */

/* Pattern we PSUBSCRIBE to so that a subscribed-mode ["pong", PONG_TOKEN]
 * reaches ping_cb; it matches only a channel of exactly this name. */
#define PONG_TOKEN "__odin_redislink_pong__"

static void ping_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    redislink *l = priv;
    if (!reply || l->ac != ac)
        return;       /* connection going away, or an old context */
    /* Any reply proves the server alive: +PONG, ["pong", token], or the
     * ["psubscribe", token, n] confirmation. */
    l->ping_outstanding = 0;
    evtimer_del(l->dead);
}

/*
 * hiredis 0.14 in subscribed mode queues a regular command's callback on
 * ac->sub.invalid, which only non-array replies shift: the ["pong", x]
 * array would never reach it (and one callback per PING would pile up until
 * the disconnect).  hiredis routes arrays by their second element through
 * the pattern table when the first starts with 'p', so: register ping_cb
 * for PONG_TOKEN once with PSUBSCRIBE, then write "PING PONG_TOKEN" without
 * a callback entry (the bytes hiredis itself would append).
 */
static int send_subscribed_ping(redislink *l)
{
    redisAsyncContext *ac = l->ac;
    if (!l->pong_registered) {
        if (redisAsyncCommand(ac, ping_cb, l, "PSUBSCRIBE %s", PONG_TOKEN) != REDIS_OK)
            return -1;
        l->pong_registered = 1;
    }
    char *cmd = NULL;
    int len = redisFormatCommand(&cmd, "PING %s", PONG_TOKEN);
    if (len < 0)
        return -1;
    int rc = redisAppendFormattedCommand(&ac->c, cmd, (size_t)len);
    free(cmd);
    if (rc != REDIS_OK)
        return -1;
    if (ac->ev.addWrite)
        ac->ev.addWrite(ac->ev.data);
    return 0;
}

static int reply_is_master(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
           r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "master") == 0;
}

/* Sentinel mode keepalive of a command link: ROLE proves the node alive
 * and still the master; a demoted one is dropped and Sentinel asked again. */
static void role_ping_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    redislink *l = priv;
    if (!reply || l->ac != ac)
        return;
    l->ping_outstanding = 0;
    evtimer_del(l->dead);
    if (!reply_is_master(reply)) {
        set_err(l, "not the master any more", NULL);
        l->not_master = 1;
        event_active(l->dead, EV_TIMEOUT, 0);
    }
}

static void send_ping(redislink *l)
{
    if (l->state != RL_UP || !l->ac || l->ping_outstanding || l->ping_interval_ms <= 0)
        return;
    int rc = (l->ac->c.flags & REDIS_SUBSCRIBED)
                 ? send_subscribed_ping(l)
                 : l->nsent
                 ? (redisAsyncCommand(l->ac, role_ping_cb, l, "ROLE") == REDIS_OK ? 0 : -1)
                 : (redisAsyncCommand(l->ac, ping_cb, l, "PING") == REDIS_OK ? 0 : -1);
    if (rc != 0)
        return;       /* going away: the disconnect callback follows */
    l->ping_outstanding = 1;
    arm(l->dead, l->ping_timeout_ms);
}

static void ping_tick(evutil_socket_t fd, short what, void *arg)
{
    send_ping(arg);
}

static void dead_cb(evutil_socket_t fd, short what, void *arg)
{
    redislink *l = arg;
    if (l->auth_failed) {
        l->auth_failed = 0;
        redislink_drop(l, "AUTH refused");
        return;
    }
    if (l->select_failed) {
        l->select_failed = 0;
        redislink_drop(l, "SELECT refused");
        return;
    }
    if (l->not_master) {
        l->not_master = 0;
        redislink_drop(l, "not the master (Sentinel failover): asking Sentinel again");
        return;
    }
    if (redislink_input_pending(l)) {
        /* the answer is there; this loop was late to read it (see .h) */
        arm(l->dead, REDISLINK_LATE_RECHECK_MS);
        return;
    }
    char why[64];
    snprintf(why, sizeof why, "no PING reply in %ld ms", l->ping_timeout_ms);
    redislink_drop(l, why);
}

/* ---- notifications ------------------------------------------------------- */

/* SELECT answered: the last handshake step.  Inside hiredis: record. */
static void select_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    redislink *l = priv;
    redisReply *r = reply;
    if (!r || l->ac != ac)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        set_err(l, "SELECT failed", r->str);
        log_kv(LOG_ERROR, "redis SELECT failed", "s:conn", l->name, "s:error", r->str,
               NULL);
        l->select_failed = 1;
        event_active(l->dead, EV_TIMEOUT, 0);
        return;
    }
    l->select_ok = 1;
    event_active(l->notify, EV_TIMEOUT, 0);
}

/* AUTH answered.  Inside a hiredis callback: only record, and let the
 * notify / dead events act (hiredis 0.14 rules, docs/dependencies.md). */
static void auth_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    redislink *l = priv;
    redisReply *r = reply;
    if (!r || l->ac != ac)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        /* the reply names no credential; the password is never logged */
        set_err(l, "AUTH failed", r->str);
        log_kv(LOG_ERROR, "redis AUTH failed", "s:conn", l->name, "s:error", r->str,
               "b:user", l->ep.user[0] != 0, NULL);
        l->auth_failed = 1;
        event_active(l->dead, EV_TIMEOUT, 0);
        return;
    }
    l->authed = 1;
    event_active(l->notify, EV_TIMEOUT, 0);
}

static void send_auth(redislink *l)
{
    const char *argv[3] = { "AUTH" };
    size_t lens[3] = { 4 };
    int argc = 1;
    if (l->ep.user[0]) {
        argv[argc] = l->ep.user;
        lens[argc++] = strlen(l->ep.user);
    }
    argv[argc] = l->ep.password;
    lens[argc++] = strlen(l->ep.password);
    l->auth_sent = 1;
    if (redisAsyncCommandArgv(l->ac, auth_cb, l, argc, argv, lens) != REDIS_OK) {
        set_err(l, "AUTH not sent", NULL);
        l->auth_failed = 1;
        event_active(l->dead, EV_TIMEOUT, 0);
    }
}

/* Sentinel mode: the node Sentinel named must say it is the master (a
 * Sentinel can lag behind a failover).  Inside hiredis: record only. */
static void role_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    redislink *l = priv;
    if (!reply || l->ac != ac)
        return;
    if (reply_is_master(reply)) {
        l->role_ok = 1;
        event_active(l->notify, EV_TIMEOUT, 0);
    } else {
        set_err(l, "not the master", NULL);
        l->not_master = 1;
        event_active(l->dead, EV_TIMEOUT, 0);
    }
}

static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
    redislink *l = arg;
    if (l->pending_down) {
        l->pending_down = 0;
        l->notified_up = 0;
        l->cb(l, 0, l->arg);
    }
    /* The handshake, one step at a time, each reply coming back here:
     * nothing of the user's can be sent before it is done, since the
     * context is handed out (redislink_ctx) only at RL_UP. */
    if (l->pending_up && l->state == RL_CONNECTED && l->ac) {
        if (l->ep.password[0] && !l->authed) {
            if (!l->auth_sent)
                send_auth(l);   /* auth_cb comes back here */
            return;
        }
        if (l->nsent && !l->role_ok) {
            if (!l->role_sent) {   /* role_cb comes back here */
                l->role_sent = 1;
                if (redisAsyncCommand(l->ac, role_cb, l, "ROLE") != REDIS_OK) {
                    l->not_master = 1;
                    event_active(l->dead, EV_TIMEOUT, 0);
                }
            }
            return;
        }
        if (l->ep.db && !l->select_ok) {
            if (!l->select_sent) {   /* select_cb comes back here */
                l->select_sent = 1;
                if (redisAsyncCommand(l->ac, select_cb, l, "SELECT %d", l->ep.db) != REDIS_OK) {
                    l->select_failed = 1;
                    event_active(l->dead, EV_TIMEOUT, 0);
                }
            }
            return;
        }
        /* ready */
        l->pending_up = 0;
        l->state = RL_UP;
        evtimer_del(l->retry);           /* the handshake timeout */
        l->backoff_ms = l->backoff_min_ms;
        l->logged_failure = 0;
        if (l->ping_interval_ms > 0) {
            struct timeval tv = { l->ping_interval_ms / 1000,
                                  (l->ping_interval_ms % 1000) * 1000 };
            event_add(l->ping, &tv);
            send_ping(l);
        }
        l->notified_up = 1;
        log_kv(LOG_INFO, "redis connected", "s:conn", l->name, NULL);
        l->cb(l, 1, l->arg);
    }
}

/* ---- connecting ------------------------------------------------------------ */

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    redislink *l = arg;
    if (l->state == RL_CONNECTED) {
        const char *why = l->ep.password[0] && !l->authed ? "AUTH not answered in time"
                          : l->nsent && !l->role_ok       ? "ROLE not answered in time"
                                                          : "SELECT not answered in time";
        set_err(l, "handshake timeout", why);
        redislink_drop(l, why);
        return;
    }
    if (l->state == RL_CONNECTING || l->state == RL_RESOLVING || l->state == RL_SENTINEL) {
        set_err(l, "connect timeout", NULL);
        redislink_drop(l, "connect timeout");
        return;
    }
    if (l->state == RL_DOWN)
        start_connect(l);
}

static void connect_ctx(redislink *l, const char *host)
{
    redisAsyncContext *ac = l->ep.path[0] ? redisAsyncConnectUnix(l->ep.path)
                                          : redisAsyncConnect(host, l->ep.port);
    if (!ac || ac->err) {
        connect_failed(l, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        went_down(l);
        return;
    }
    ac->data = l;
    if (redisLibeventAttach(ac, l->base) != REDIS_OK) {
        redisAsyncFree(ac);
        connect_failed(l, "cannot attach to the event loop");
        went_down(l);
        return;
    }
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    l->ac = ac;
    l->pong_registered = 0;
    l->state = RL_CONNECTING;
}

static void on_resolved(int err, const struct evutil_addrinfo *ai, const char *errstr,
                        void *arg)
{
    redislink *l = arg;
    l->res = NULL;
    if (err != NET_OK) {
        connect_failed(l, errstr);
        went_down(l);
        return;
    }
    const struct evutil_addrinfo *pick = ai;
    for (const struct evutil_addrinfo *p = ai; p; p = p->ai_next)
        if (p->ai_family == AF_INET) {
            pick = p;
            break;
        }
    char ip[INET6_ADDRSTRLEN] = "";
    const void *a = pick->ai_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)pick->ai_addr)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)pick->ai_addr)->sin_addr;
    if (!evutil_inet_ntop(pick->ai_family, a, ip, sizeof ip)) {
        connect_failed(l, "unusable address");
        went_down(l);
        return;
    }
    if (l->state == RL_SENTINEL)
        sentinel_ctx(l, ip);
    else
        connect_ctx(l, ip);   /* numeric: hiredis does no DNS */
}

/* Resolve host off the loop (on_resolved continues), or go straight on
 * with a numeric one. */
static void resolve(redislink *l, const char *host, int port)
{
    if (!l->dns) {
        l->own_dns = net_dns_new(l->base);
        l->dns = l->own_dns;
    }
    l->res = net_resolve_start(l->base, l->dns, host, port, on_resolved, l);
    if (!l->res) {
        connect_failed(l, "out of memory");
        went_down(l);
    }
}

static void connect_master(redislink *l)
{
    if (l->ep.path[0] || net_is_numeric_host(l->ep.host)) {
        connect_ctx(l, l->ep.host);
        return;
    }
    l->state = RL_RESOLVING;
    resolve(l, l->ep.host, l->ep.port);
}

/* ---- Sentinel ---------------------------------------------------------------- */

static void sentinel_abort(redislink *l)
{
    if (l->sac) {
        redisAsyncContext *ac = l->sac;
        l->sac = NULL;
        redisAsyncFree(ac);
    }
}

static void sentinel_reply_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    redislink *l = priv;
    if (l->sac != ac)
        return;
    redisReply *r = reply;
    l->sac = NULL;   /* hiredis frees ac once this callback returns */
    ac->data = NULL;
    redisAsyncDisconnect(ac);
    if (l->state != RL_SENTINEL)
        return;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[0]->len >= sizeof l->ep.host) {
        connect_failed(l, r && r->type == REDIS_REPLY_ERROR ? r->str
                          : "sentinel does not know REDIS_MASTER_NAME");
        went_down(l);
        return;
    }
    int port = atoi(r->element[1]->str);
    if (strcmp(l->ep.host, r->element[0]->str) != 0 || l->ep.port != port)
        log_kv(LOG_INFO, "redis master from sentinel", "s:conn", l->name, "s:master",
               l->ep.master_name, "s:host", r->element[0]->str, "i:port", port, NULL);
    snprintf(l->ep.host, sizeof l->ep.host, "%s", r->element[0]->str);
    l->ep.port = port;
    connect_master(l);
}

static void sentinel_connect_cb(const redisAsyncContext *ac, int status)
{
    redislink *l = ac->data;
    if (!l || l->sac != ac || status == REDIS_OK)
        return;
    l->sac = NULL;   /* hiredis frees ac */
    connect_failed(l, ac->errstr);
    went_down(l);
}

static void sentinel_disconnect_cb(const redisAsyncContext *ac, int status)
{
    redislink *l = ac->data;
    if (!l || l->sac != ac)
        return;
    l->sac = NULL;
    connect_failed(l, "sentinel closed the connection");
    went_down(l);
}

static void sentinel_ctx(redislink *l, const char *ip)
{
    const sentinel_addr *s = &l->sent[(l->sent_next - 1) % l->nsent];
    redisAsyncContext *ac = redisAsyncConnect(ip, s->port);
    if (!ac || ac->err || (ac->data = l, redisLibeventAttach(ac, l->base) != REDIS_OK)) {
        connect_failed(l, ac && ac->err ? ac->errstr : "cannot connect to sentinel");
        if (ac)
            redisAsyncFree(ac);
        went_down(l);
        return;
    }
    redisAsyncSetConnectCallback(ac, sentinel_connect_cb);
    redisAsyncSetDisconnectCallback(ac, sentinel_disconnect_cb);
    l->sac = ac;
    if (redisAsyncCommand(ac, sentinel_reply_cb, l, "SENTINEL get-master-addr-by-name %s",
                          l->ep.master_name) != REDIS_OK) {
        sentinel_abort(l);
        connect_failed(l, "cannot query sentinel");
        went_down(l);
    }
}

/* Ask the next Sentinel (round robin across attempts) where the master is. */
static void sentinel_ask(redislink *l)
{
    const sentinel_addr *s = &l->sent[l->sent_next++ % l->nsent];
    l->state = RL_SENTINEL;
    if (net_is_numeric_host(s->host))
        sentinel_ctx(l, s->host);
    else
        resolve(l, s->host, s->port);
}

static void start_connect(redislink *l)
{
    arm(l->retry, l->timeout_ms);   /* covers sentinel + resolve + connect */
    if (l->nsent)
        sentinel_ask(l);
    else
        connect_master(l);
}

/* ---- public ------------------------------------------------------------------ */

redislink *redislink_new(struct event_base *base, const redis_endpoint *ep,
                         const char *name, long timeout_ms, long backoff_max_ms,
                         redislink_cb cb, void *arg)
{
    redislink *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->base = base;
    l->ep = *ep;
    snprintf(l->name, sizeof l->name, "%s", name);
    l->timeout_ms = timeout_ms;
    l->backoff_min_ms = REDISLINK_BACKOFF_MIN_MS;
    l->backoff_max_ms = backoff_max_ms < l->backoff_min_ms ? l->backoff_min_ms
                                                           : backoff_max_ms;
    l->backoff_ms = l->backoff_min_ms;
    l->ping_interval_ms = REDISLINK_PING_INTERVAL_MS;
    l->ping_timeout_ms = REDISLINK_PING_TIMEOUT_MS;
    l->cb = cb;
    l->arg = arg;
    if (ep->sentinels[0]) {
        char **v = NULL;
        size_t n = 0;
        if (addr_split_list(ep->sentinels, &v, &n) == 0)
            for (size_t i = 0; i < n && l->nsent < SENTINELS_MAX; i++)
                if (addr_split_hostport(v[i], l->sent[l->nsent].host,
                                        sizeof l->sent[0].host, &l->sent[l->nsent].port) == 0)
                    l->nsent++;
        addr_list_free(v, n);
        l->ep.host[0] = '\0';   /* the master comes from Sentinel */
        l->ep.path[0] = '\0';
    }
    l->retry = evtimer_new(base, retry_cb, l);
    l->notify = event_new(base, -1, 0, notify_cb, l);
    l->ping = event_new(base, -1, EV_PERSIST, ping_tick, l);
    l->dead = evtimer_new(base, dead_cb, l);
    if (!l->retry || !l->notify || !l->ping || !l->dead) {
        redislink_free(l);
        return NULL;
    }
    return l;
}

void redislink_set_dns(redislink *l, struct evdns_base *dns)
{
    if (dns)
        l->dns = dns;
}

void redislink_set_ping(redislink *l, long interval_ms, long timeout_ms)
{
    l->ping_interval_ms = interval_ms > 0 ? interval_ms : 0;
    l->ping_timeout_ms = timeout_ms > 0 ? timeout_ms : REDISLINK_PING_TIMEOUT_MS;
}

void redislink_set_backoff(redislink *l, long min_ms, long max_ms)
{
    l->backoff_min_ms = min_ms > 0 ? min_ms : REDISLINK_BACKOFF_MIN_MS;
    l->backoff_max_ms = max_ms < l->backoff_min_ms ? l->backoff_min_ms : max_ms;
    l->backoff_ms = l->backoff_min_ms;
}

void redislink_start(redislink *l)
{
    if (l->state == RL_DOWN && !evtimer_pending(l->retry, NULL))
        start_connect(l);
}

redisAsyncContext *redislink_ctx(redislink *l)
{
    return l->state == RL_UP ? l->ac : NULL;
}

void *redislink_ctx_arg(const redisAsyncContext *ac)
{
    const redislink *l = ac ? ac->data : NULL;
    return l ? l->arg : NULL;
}

int redislink_is_up(const redislink *l)
{
    return l->notified_up;
}

int redislink_input_pending(const redislink *l)
{
    return l && l->ac ? net_input_pending(l->ac->c.fd) : 0;
}

const char *redislink_errstr(const redislink *l)
{
    return l->errstr;
}

void redislink_drop(redislink *l, const char *why)
{
    if (l->sac) {
        sentinel_abort(l);
        if (!l->res && !l->ac) {
            went_down(l);
            return;
        }
    }
    if (l->res) {
        net_resolve_cancel(l->res);
        l->res = NULL;
        went_down(l);
        return;
    }
    redisAsyncContext *ac = l->ac;
    if (!ac)
        return;
    set_err(l, "dropped", why);
    log_kv(LOG_WARN, "redis connection dropped", "s:conn", l->name, "s:reason", why, NULL);
    l->ac = NULL;     /* our connect/disconnect callbacks ignore it now */
    /* Given up on: commands still in the kernel's send buffer (a lease
     * write, a route change) must not reach Redis after the replacement
     * connection's (net_close_abort).  hiredis closes the fd in Free. */
    if (ac->c.fd >= 0)
        (void)net_linger_zero(ac->c.fd);
    redisAsyncFree(ac);
    went_down(l);
}

void redislink_free(redislink *l)
{
    if (!l)
        return;
    if (l->res)
        net_resolve_cancel(l->res);
    sentinel_abort(l);
    if (l->ac) {
        redisAsyncContext *ac = l->ac;
        l->ac = NULL;
        redisAsyncFree(ac);
    }
    struct event *evs[] = { l->retry, l->notify, l->ping, l->dead };
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i])
            event_free(evs[i]);
    net_dns_free(l->own_dns);
    free(l);
}
