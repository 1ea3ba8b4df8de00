/*
 * Member-id record and eviction of a previous incarnation (contract in
 * leavegroup.h).
 */
#include "router/leavegroup.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/addr.h"
#include "common/log.h"
#include "common/net.h"
#include "router/kwire.h"
#include "common/schema.h"

/* Retry period while waiting for the Redis link. */
#define LEAVEGROUP_POLL_MS 50
/* The responses read here are a few hundred bytes. */
#define LEAVEGROUP_FRAME_MAX 4096

enum leavegroup_step {
    STEP_IDLE = 0,      /* nothing in flight */
    STEP_READ,          /* waiting for Redis to read the key */
    STEP_READING,       /* GET sent */
    STEP_FIND,          /* FindCoordinator to a bootstrap broker */
    STEP_LEAVE,         /* LeaveGroup to the coordinator */
};

/* On each broker connection: ApiVersions first, then the request in the
 * highest version both sides support. */
enum leavegroup_stage {
    STAGE_VERSIONS = 0, /* ApiVersions v0 sent */
    STAGE_REQUEST,      /* FindCoordinator / LeaveGroup sent */
};

struct leavegroup {
    struct event_base *base;
    struct evdns_base *dns;
    redislink *cmd;
    consumer *c;
    const router_config *cfg;
    char *key;
    char client_id[300];
    long ttl_ms, refresh_ms;

    /* the record */
    struct event *ev_record;
    char *recorded;                 /* member id last written */
    int writing;                    /* SET in flight */
    int dirty;                      /* the member changed while writing */

    /* the eviction */
    enum leavegroup_step step;
    uint64_t start_ms;
    struct event *ev_step;          /* poll for Redis / the overall deadline */
    char *victim;                   /* member id to remove */
    char **brokers;
    size_t nbrokers, bi;
    net_connect *conn;
    int fd;
    struct event *ev_io;            /* reads the response on fd */
    uint8_t out[1024];
    size_t outlen;
    uint8_t in[LEAVEGROUP_FRAME_MAX];
    size_t inlen;
    int32_t corr;
    enum leavegroup_stage stage;
    int version;                    /* of the request in flight */
    int find_version, leave_version; /* picked (-1: not yet), logged */
    char instance_id[300];          /* the group.instance.id of this ROUTER_ID */
};

static void arm(struct event *ev, long ms)
{
    if (ms < 0)
        ms = 0;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(ev, &tv);
}

/* ---- the record ------------------------------------------------------------ */

static void set_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    leavegroup *e = privdata;
    redisReply *r = reply;
    e->writing = 0;
    if (e->dirty && r) {
        e->dirty = 0;
        event_active(e->ev_record, EV_TIMEOUT, 0);   /* the newer id, now */
    }
    if (!r || r->type == REDIS_REPLY_ERROR) {
        if (r)
            log_kv(LOG_WARN, "cannot record the Kafka member id", "s:error", r->str, NULL);
        free(e->recorded);      /* written again at the next refresh */
        e->recorded = NULL;
    }
}

static void record_cb(evutil_socket_t fd, short what, void *arg)
{
    leavegroup *e = arg;
    arm(e->ev_record, e->refresh_ms);
    redisAsyncContext *ac = redislink_ctx(e->cmd);
    if (e->writing) {
        e->dirty = 1;       /* set_reply writes again */
        return;
    }
    if (!ac)
        return;
    char *id = consumer_member_id(e->c);
    if (!id)
        return;
    char ttl[32];
    snprintf(ttl, sizeof ttl, "%ld", e->ttl_ms);
    if (redisAsyncCommand(ac, set_reply, e, "SET %s %s PX %s", e->key, id, ttl) != REDIS_OK) {
        free(id);
        return;
    }
    e->writing = 1;
    if (!e->recorded || strcmp(e->recorded, id) != 0)
        log_kv(LOG_INFO, "Kafka member id recorded", "s:key", e->key, "s:member", id, NULL);
    free(e->recorded);
    e->recorded = id;
}

void leavegroup_member_changed(leavegroup *e)
{
    if (e)
        event_active(e->ev_record, EV_TIMEOUT, 0);
}

/* ---- the eviction ------------------------------------------------------------ */

static void conn_close(leavegroup *e)
{
    net_connect_cancel(e->conn);
    e->conn = NULL;
    if (e->ev_io)
        event_del(e->ev_io);
    if (e->fd >= 0)
        close(e->fd);
    e->fd = -1;
}

static void finish(leavegroup *e, int evicted, const char *why)
{
    conn_close(e);
    evtimer_del(e->ev_step);
    long ms = (long)(clock_mono_ms() - e->start_ms);
    if (evicted)
        log_kv(LOG_INFO, "evicted the previous member of this router id from the group",
               "s:member", e->victim, "s:router_id", e->cfg->router_id, "s:group",
               e->cfg->kafka_group, "i:ms", (int)ms, "i:find_coordinator_version",
               e->find_version, "i:leave_group_version", e->leave_version, NULL);
    else
        log_kv(LOG_INFO, "previous member of this router id not evicted", "s:reason", why,
               "s:member", e->victim ? e->victim : "", "s:router_id", e->cfg->router_id,
               "i:ms", (int)ms, NULL);
    e->step = STEP_IDLE;
}

static void try_broker(leavegroup *e);
static void connect_to(leavegroup *e, const char *host, int port);

/* A broker did not answer usefully: the next bootstrap address, if any. */
static void broker_failed(leavegroup *e, const char *why)
{
    log_kv(LOG_DEBUG, "eviction: broker failed", "s:reason", why, NULL);
    conn_close(e);
    if (e->step == STEP_FIND && ++e->bi < e->nbrokers) {
        try_broker(e);
        return;
    }
    finish(e, 0, why);
}

/* Send the next request on the open connection (the previous response
 * was read whole; nothing else is in flight). */
static int send_more(leavegroup *e)
{
    ssize_t n = net_write_all(e->fd, e->out, e->outlen);
    if (n != (ssize_t)e->outlen) {
        broker_failed(e, n < 0 ? strerror(errno) : "request not written at once");
        return -1;
    }
    return 0;
}

/* The broker's ApiVersions answer: pick the version of this step's request
 * and send it.  No usable version: an error an operator must see (the
 * eviction cannot work against this broker), and the eviction is skipped. */
static void on_versions(leavegroup *e, long flen)
{
    kwire_versions v;
    if (kwire_api_versions_resp(e->in, (size_t)flen, e->corr, &v) != KWIRE_OK) {
        broker_failed(e, "malformed ApiVersions response");
        return;
    }
    int find = e->step == STEP_FIND;
    int ours_min = find ? KWIRE_FIND_COORDINATOR_MIN : KWIRE_LEAVE_GROUP_MIN;
    int ours_max = find ? KWIRE_FIND_COORDINATOR_MAX : KWIRE_LEAVE_GROUP_MAX;
    int bmin = find ? v.find_min : v.leave_min, bmax = find ? v.find_max : v.leave_max;
    int ver = kwire_pick_version(ours_min, ours_max, bmin, bmax);
    if (ver < 0) {
        log_kv(LOG_ERROR, "KAFKA_EVICT_PREVIOUS: the broker supports no version of this "
               "request that the router implements; eviction skipped", "s:api",
               find ? "FindCoordinator" : "LeaveGroup", "i:broker_min", bmin, "i:broker_max",
               bmax, "i:router_min", ours_min, "i:router_max", ours_max, "i:error",
               v.error, NULL);
        finish(e, 0, "no usable protocol version");
        return;
    }
    e->corr++;
    int n = find ? kwire_find_coordinator_req(e->out, sizeof e->out, e->corr, ver,
                                              e->client_id, e->cfg->kafka_group)
                 : kwire_leave_group_req(e->out, sizeof e->out, e->corr, ver, e->client_id,
                                         e->cfg->kafka_group, e->victim, e->instance_id);
    if (n < 0) {
        finish(e, 0, find ? "FindCoordinator request does not fit"
                          : "LeaveGroup request does not fit");
        return;
    }
    log_kv(LOG_DEBUG, "eviction: version picked", "s:api",
           find ? "FindCoordinator" : "LeaveGroup", "i:version", ver, NULL);
    e->outlen = (size_t)n;
    e->version = ver;
    if (find)
        e->find_version = ver;
    else
        e->leave_version = ver;
    e->stage = STAGE_REQUEST;
    send_more(e);
}

/* Open a connection for this step: ApiVersions goes first. */
static void begin_step(leavegroup *e, const char *host, int port)
{
    e->corr++;
    int n = kwire_api_versions_req(e->out, sizeof e->out, e->corr, e->client_id);
    if (n < 0) {
        finish(e, 0, "ApiVersions request does not fit");
        return;
    }
    e->outlen = (size_t)n;
    e->stage = STAGE_VERSIONS;
    connect_to(e, host, port);
}

static void on_frame(leavegroup *e, long flen)
{
    char why[320];
    if (e->stage == STAGE_VERSIONS) {
        on_versions(e, flen);
        return;
    }
    if (e->step == STEP_FIND) {
        kwire_coordinator co;
        if (kwire_find_coordinator_resp(e->in, (size_t)flen, e->corr, e->version, &co) !=
            KWIRE_OK) {
            broker_failed(e, "malformed FindCoordinator response");
            return;
        }
        if (co.error) {
            snprintf(why, sizeof why, "FindCoordinator: %s",
                     rd_kafka_err2name((rd_kafka_resp_err_t)co.error));
            broker_failed(e, why);
            return;
        }
        conn_close(e);
        e->step = STEP_LEAVE;
        begin_step(e, co.host, co.port);
        return;
    }
    int16_t err = 0;
    if (kwire_leave_group_resp(e->in, (size_t)flen, e->corr, e->version, &err) != KWIRE_OK) {
        finish(e, 0, "malformed LeaveGroup response");
        return;
    }
    if (err) {
        /* UNKNOWN_MEMBER_ID: it already left or timed out */
        snprintf(why, sizeof why, "LeaveGroup: %s",
                 rd_kafka_err2name((rd_kafka_resp_err_t)err));
        finish(e, 0, why);
        return;
    }
    finish(e, 1, NULL);
}

static void io_cb(evutil_socket_t fd, short what, void *arg)
{
    leavegroup *e = arg;
    ssize_t n = read(e->fd, e->in + e->inlen, sizeof e->in - e->inlen);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        broker_failed(e, n == 0 ? "connection closed" : strerror(errno));
        return;
    }
    e->inlen += (size_t)n;
    long flen = kwire_frame_len(e->in, e->inlen, sizeof e->in - 4);
    if (flen < 0) {
        broker_failed(e, "response frame too large");
        return;
    }
    if (flen > 0) {
        /* one response per request, none pipelined: the buffer restarts */
        e->inlen = 0;
        on_frame(e, flen);
    }
}

/* The request (a few hundred bytes) goes out in one write on the fresh
 * connection; then the response is read. */
static void connected(int fd, int err, const char *errstr, void *arg)
{
    leavegroup *e = arg;
    e->conn = NULL;
    if (fd < 0) {
        broker_failed(e, errstr);
        return;
    }
    e->fd = fd;
    e->inlen = 0;
    ssize_t n = net_write_all(fd, e->out, e->outlen);
    if (n != (ssize_t)e->outlen) {
        broker_failed(e, n < 0 ? strerror(errno) : "request not written at once");
        return;
    }
    event_assign(e->ev_io, e->base, fd, EV_READ | EV_PERSIST, io_cb, e);
    event_add(e->ev_io, NULL);
}

static void connect_to(leavegroup *e, const char *host, int port)
{
    net_endpoint ep;
    memset(&ep, 0, sizeof ep);
    snprintf(ep.host, sizeof ep.host, "%s", host);
    ep.port = port;
    e->conn = net_connect_start(e->base, e->dns, &ep, connected, e);
    if (!e->conn)
        finish(e, 0, "out of memory");
}

static void try_broker(leavegroup *e)
{
    const char *b = e->brokers[e->bi];
    const char *hp = strstr(b, "://");
    hp = hp ? hp + 3 : b;
    char host[256];
    int port;
    e->step = STEP_FIND;
    if (addr_split_hostport(hp, host, sizeof host, &port) != 0) {
        broker_failed(e, "bad broker address");
        return;
    }
    begin_step(e, host, port);
}

static void get_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    leavegroup *e = privdata;
    redisReply *r = reply;
    if (e->step != STEP_READING)
        return;
    if (!r) {
        /* the link dropped (or is being freed; no consumer access here):
         * read again once it is back, within the deadline */
        e->step = STEP_READ;
        arm(e->ev_step, LEAVEGROUP_POLL_MS);
        return;
    }
    if (r->type == REDIS_REPLY_NIL) {
        finish(e, 0, "no previous member recorded");
        return;
    }
    if (r->type != REDIS_REPLY_STRING) {
        finish(e, 0, r->type == REDIS_REPLY_ERROR ? r->str : "unexpected Redis reply");
        return;
    }
    e->victim = strndup(r->str, r->len);
    char *self = consumer_member_id(e->c);
    int same = self && e->victim && strcmp(self, e->victim) == 0;
    free(self);
    if (!e->victim || same) {
        finish(e, 0, same ? "the recorded member is this process" : "out of memory");
        return;
    }
    if (addr_split_list(e->cfg->kafka_brokers, &e->brokers, &e->nbrokers) != 0 ||
        e->nbrokers == 0) {
        finish(e, 0, "no broker address");
        return;
    }
    e->bi = 0;
    try_broker(e);
}

/* Polls for the Redis link, then is the deadline of the whole eviction. */
static void step_cb(evutil_socket_t fd, short what, void *arg)
{
    leavegroup *e = arg;
    long spent = (long)(clock_mono_ms() - e->start_ms);
    if (spent >= LEAVEGROUP_TIMEOUT_MS) {
        finish(e, 0, e->step <= STEP_READING ? "Redis did not answer in time"
                                             : "the broker did not answer in time");
        return;
    }
    if (e->step == STEP_READ) {
        redisAsyncContext *ac = redislink_ctx(e->cmd);
        if (ac && redisAsyncCommand(ac, get_reply, e, "GET %s", e->key) == REDIS_OK)
            e->step = STEP_READING;
    }
    arm(e->ev_step, e->step == STEP_READ ? LEAVEGROUP_POLL_MS : LEAVEGROUP_TIMEOUT_MS - spent);
}

/* ---- lifecycle ------------------------------------------------------------------ */

leavegroup *leavegroup_new(struct event_base *base, struct evdns_base *dns, redislink *cmd,
                 consumer *c, const router_config *cfg)
{
    /* the record serves the eviction only: without it nothing is written
     * (config.c refuses KAFKA_EVICT_PREVIOUS without ROUTER_ID) */
    if (!cfg->kafka_evict_previous || !cfg->router_id || !*cfg->router_id)
        return NULL;
    leavegroup *e = calloc(1, sizeof *e);
    if (!e)
        goto err;
    e->base = base;
    e->dns = dns;
    e->cmd = cmd;
    e->c = c;
    e->cfg = cfg;
    e->fd = -1;
    e->find_version = e->leave_version = -1;
    snprintf(e->client_id, sizeof e->client_id, "odin-router-%s", cfg->id);
    /* as consumer.c sets group.instance.id: LeaveGroup v3+ names it */
    snprintf(e->instance_id, sizeof e->instance_id, "odin-router-%s", cfg->router_id);
    long session = consumer_session_timeout_ms(c);
    e->refresh_ms = session > 100 ? session : 100;
    e->ttl_ms = 3 * e->refresh_ms;
    e->key = schema_router_key(cfg->redis_prefix, cfg->router_id);
    e->ev_record = evtimer_new(base, record_cb, e);
    e->ev_step = evtimer_new(base, step_cb, e);
    e->ev_io = event_new(base, -1, 0, io_cb, e);
    if (!e->key || !e->ev_record || !e->ev_step || !e->ev_io)
        goto err;
    arm(e->ev_record, e->refresh_ms);
    e->step = STEP_READ;
    e->start_ms = clock_mono_ms();
    event_active(e->ev_step, EV_TIMEOUT, 0);
    return e;
err:
    log_kv(LOG_ERROR, "out of memory", NULL);
    leavegroup_free(e);
    return NULL;
}

void leavegroup_free(leavegroup *e)
{
    if (!e)
        return;
    conn_close(e);
    if (e->ev_record)
        event_free(e->ev_record);
    if (e->ev_step)
        event_free(e->ev_step);
    if (e->ev_io)
        event_free(e->ev_io);
    addr_list_free(e->brokers, e->nbrokers);
    free(e->victim);
    free(e->recorded);
    free(e->key);
    free(e);
}
