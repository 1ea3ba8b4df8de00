#include "router/rconn.h"

#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libevent.h>

#include "common/log.h"

#define BACKOFF_MIN_MS 50

enum rstate { RC_DOWN, RC_CONNECTING, RC_UP };

struct router_rconn {
    struct event_base *base;
    redis_endpoint ep;
    char name[32];
    long timeout_ms, backoff_max_ms, backoff_ms;
    router_rconn_cb cb;
    void *arg;
    redisAsyncContext *ac;
    enum rstate state;
    int notified_up;          /* user was told "up" and not yet "down" */
    int pending_up;           /* deferred notification */
    int pending_down;
    struct event *retry;      /* reconnect timer / connect timeout */
    struct event *notify;     /* deferred user notification */
    int logged_failure;       /* log the first failed attempt only */
};

static void start_connect(router_rconn *c);

static void arm(struct event *ev, long ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(ev, &tv);
}

static void schedule_retry(router_rconn *c)
{
    arm(c->retry, c->backoff_ms);
    c->backoff_ms *= 2;
    if (c->backoff_ms > c->backoff_max_ms)
        c->backoff_ms = c->backoff_max_ms;
}

/* Connection gone (for whatever reason): forget the context, plan a retry,
 * and tell the user if they had been told it was up. */
static void went_down(router_rconn *c)
{
    c->ac = NULL;
    c->state = RC_DOWN;
    evtimer_del(c->retry);
    schedule_retry(c);
    c->pending_up = 0;
    if (c->notified_up) {
        c->pending_down = 1;
        event_active(c->notify, EV_TIMEOUT, 0);
    }
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
    router_rconn *c = ac->data;
    if (!c)
        return;
    if (status != REDIS_OK) {
        if (!c->logged_failure)
            log_kv(LOG_WARN, "redis connect failed", "s:conn", c->name, "s:error",
                   ac->errstr, NULL);
        c->logged_failure = 1;
        went_down(c);    /* hiredis frees ac after this returns */
        return;
    }
    c->state = RC_UP;
    evtimer_del(c->retry);
    c->backoff_ms = BACKOFF_MIN_MS;
    c->logged_failure = 0;
    c->pending_up = 1;
    event_active(c->notify, EV_TIMEOUT, 0);
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    router_rconn *c = ac->data;
    if (!c)
        return;
    log_kv(LOG_WARN, "redis connection lost", "s:conn", c->name, "s:error",
           ac->errstr[0] ? ac->errstr : "closed", NULL);
    went_down(c);
}

static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
    router_rconn *c = arg;
    if (c->pending_down) {
        c->pending_down = 0;
        c->notified_up = 0;
        c->cb(c, 0, c->arg);
    }
    if (c->pending_up && c->state == RC_UP && c->ac) {
        c->pending_up = 0;
        if (c->ep.db)
            redisAsyncCommand(c->ac, NULL, NULL, "SELECT %d", c->ep.db);
        c->notified_up = 1;
        log_kv(LOG_INFO, "redis connected", "s:conn", c->name, NULL);
        c->cb(c, 1, c->arg);
    }
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    router_rconn *c = arg;
    if (c->state == RC_CONNECTING) {
        router_rconn_drop(c, "connect timeout");
        return;
    }
    if (c->state == RC_DOWN)
        start_connect(c);
}

static void start_connect(router_rconn *c)
{
    redisAsyncContext *ac = c->ep.path[0] ? redisAsyncConnectUnix(c->ep.path)
                                          : redisAsyncConnect(c->ep.host, c->ep.port);
    if (!ac || ac->err) {
        if (!c->logged_failure)
            log_kv(LOG_WARN, "redis connect failed", "s:conn", c->name, "s:error",
                   ac ? ac->errstr : "out of memory", NULL);
        c->logged_failure = 1;
        if (ac)
            redisAsyncFree(ac);
        c->state = RC_DOWN;
        schedule_retry(c);
        return;
    }
    ac->data = c;
    if (redisLibeventAttach(ac, c->base) != REDIS_OK) {
        redisAsyncFree(ac);
        c->state = RC_DOWN;
        schedule_retry(c);
        return;
    }
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    c->ac = ac;
    c->state = RC_CONNECTING;
    arm(c->retry, c->timeout_ms);
}

router_rconn *router_rconn_new(struct event_base *base, const redis_endpoint *ep,
                               const char *name, long timeout_ms, long backoff_max_ms,
                               router_rconn_cb cb, void *arg)
{
    router_rconn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->base = base;
    c->ep = *ep;
    snprintf(c->name, sizeof c->name, "%s", name);
    c->timeout_ms = timeout_ms;
    c->backoff_max_ms = backoff_max_ms < BACKOFF_MIN_MS ? BACKOFF_MIN_MS : backoff_max_ms;
    c->backoff_ms = BACKOFF_MIN_MS;
    c->cb = cb;
    c->arg = arg;
    c->retry = evtimer_new(base, retry_cb, c);
    c->notify = event_new(base, -1, 0, notify_cb, c);
    if (!c->retry || !c->notify) {
        router_rconn_free(c);
        return NULL;
    }
    return c;
}

void router_rconn_start(router_rconn *c)
{
    if (c->state == RC_DOWN && !evtimer_pending(c->retry, NULL))
        start_connect(c);
}

redisAsyncContext *router_rconn_ctx(router_rconn *c)
{
    return c->state == RC_UP ? c->ac : NULL;
}

void router_rconn_drop(router_rconn *c, const char *why)
{
    redisAsyncContext *ac = c->ac;
    if (!ac)
        return;
    log_kv(LOG_WARN, "redis connection dropped", "s:conn", c->name, "s:reason", why, NULL);
    ac->data = NULL;   /* our connect/disconnect callbacks ignore it now */
    c->ac = NULL;
    redisAsyncFree(ac);
    went_down(c);
}

void router_rconn_free(router_rconn *c)
{
    if (!c)
        return;
    if (c->ac) {
        redisAsyncContext *ac = c->ac;
        ac->data = NULL;
        c->ac = NULL;
        redisAsyncFree(ac);
    }
    if (c->retry)
        event_free(c->retry);
    if (c->notify)
        event_free(c->notify);
    free(c);
}
