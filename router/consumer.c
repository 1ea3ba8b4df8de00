/*
 * The Kafka consumer (contract in consumer.h): configuration, rebalance,
 * the wake-up pipe, draining into the accumulator, offsets store, lag and
 * the bounded close.
 */
#include "router/consumer.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <pthread.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

struct consumer {
    const router_config *cfg;
    struct event_base *base;
    router_metrics *m;
    consumer_callbacks cb;
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    int pipe[2];
    struct event *ev;
    consumer_acc acc;
    int paused;
    int down;                       /* all brokers down reported */
    int commit_inflight;            /* consumer_commit_soon request outstanding */
    uint64_t assigned;
    long session_timeout_ms;
    log_ratelimit rl;
};

/* ---- accumulator ------------------------------------------------------- */

static void destroy_msg(rd_kafka_message_t *m)
{
    rd_kafka_message_destroy(m);
}

int consumer_acc_init(consumer_acc *a, size_t cap)
{
    memset(a, 0, sizeof *a);
    if (cap == 0)
        return -1;
    a->msgs = calloc(cap, sizeof *a->msgs);
    a->batch = calloc(cap, sizeof *a->batch);
    a->stale = calloc(cap, 1);
    if (!a->msgs || !a->batch || !a->stale) {
        free(a->msgs);
        free(a->batch);
        free(a->stale);
        memset(a, 0, sizeof *a);
        return -1;
    }
    a->cap = cap;
    a->destroy = destroy_msg;
    return 0;
}

void consumer_acc_clear(consumer_acc *a)
{
    for (size_t i = 0; i < a->n; i++)
        a->destroy(a->msgs[i]);
    a->n = 0;
}

void consumer_acc_free(consumer_acc *a)
{
    if (!a->msgs)
        return;
    consumer_acc_clear(a);
    free(a->msgs);
    free(a->batch);
    free(a->stale);
    a->msgs = a->batch = NULL;
    a->stale = NULL;
    a->cap = 0;
}

size_t consumer_acc_room(const consumer_acc *a)
{
    return a->cap - a->n;
}

size_t consumer_acc_take(consumer_acc *a, rd_kafka_message_t **out, size_t max)
{
    size_t k = a->n < max ? a->n : max;
    memcpy(out, a->msgs, k * sizeof *out);
    memmove(a->msgs, a->msgs + k, (a->n - k) * sizeof *a->msgs);
    a->n -= k;
    return k;
}

size_t consumer_acc_drop_if(consumer_acc *a,
                            int (*match)(const rd_kafka_message_t *m, void *arg), void *arg)
{
    size_t k = 0, dropped = 0;
    for (size_t i = 0; i < a->n; i++) {
        rd_kafka_message_t *m = a->msgs[i];
        if (match(m, arg)) {
            a->destroy(m);
            dropped++;
        } else {
            a->msgs[k++] = m;
        }
    }
    a->n = k;
    return dropped;
}

int consumer_msg_in(const rd_kafka_message_t *m, const rd_kafka_topic_partition_list_t *parts)
{
    const char *tn = rd_kafka_topic_name(m->rkt);
    for (int j = 0; j < parts->cnt; j++)
        if (parts->elems[j].partition == m->partition &&
            strcmp(parts->elems[j].topic, tn) == 0)
            return 1;
    return 0;
}

static int in_parts(const rd_kafka_message_t *m, void *arg)
{
    return !arg || consumer_msg_in(m, arg);   /* NULL: every partition */
}

/*
 * Why the batch goes into a scratch array (issue 19, item 7).  The batch
 * call (rd_kafka_consume_batch_queue) serves the rebalance callback while
 * it runs, and the revoke path releases the accumulator's records of the
 * revoked partitions, compacting it: acc.n shrinks under the caller.  The
 * old loop consumed straight into msgs + n and then walked the batch from
 * the *new* n: it read (and dispatched, and released again) records
 * already released, while the real new records past the walked range
 * leaked, and later records of their partitions were dispatched and their
 * offsets stored past them.  So: no index or count captured before the
 * call is used after it; the batch has its own array, and whatever the
 * accumulator holds after the call is re-read.  librdkafka 2.0.2 also
 * returns records it had put in the batch before the revoke (later
 * versions purge them): consumer_acc_revoke marks those stale from inside
 * the call (the slots not yet written are NULL), and they are released
 * exactly once here, never accumulated, so never dispatched and never
 * stored; the new owner re-reads them from the committed offset.
 */
ssize_t consumer_acc_fill(consumer_acc *a, size_t want, consumer_batch_fn batch,
                          void *batch_arg,
                          void (*on_error)(const rd_kafka_message_t *m, void *arg),
                          void *err_arg)
{
    size_t got = 0;
    if (want > a->cap)
        want = a->cap;
    while (a->n < want) {
        size_t room = want - a->n;
        memset(a->batch, 0, room * sizeof *a->batch);
        memset(a->stale, 0, room);
        a->filling = 1;
        ssize_t n = batch(batch_arg, a->batch, room);
        a->filling = 0;
        if (n < 0)
            return got ? (ssize_t)got : -1;
        if ((size_t)n > room)
            n = (ssize_t)room;        /* never more than asked */
        /* a->n is read afresh: the call may have shrunk it, never grown */
        for (size_t i = 0; i < (size_t)n; i++) {
            rd_kafka_message_t *m = a->batch[i];
            a->batch[i] = NULL;
            if (!m)
                continue;
            if (a->stale[i]) {
                a->destroy(m);
                continue;
            }
            if (m->err) {
                if (on_error)
                    on_error(m, err_arg);
                a->destroy(m);
                continue;
            }
            a->msgs[a->n++] = m;
            got++;
        }
        if ((size_t)n < room)
            break;   /* queue empty: the IO event fires on the next record */
    }
    return (ssize_t)got;
}

size_t consumer_acc_revoke(consumer_acc *a, const rd_kafka_topic_partition_list_t *parts)
{
    size_t dropped = consumer_acc_drop_if(a, in_parts, (void *)parts);
    if (a->filling)
        for (size_t i = 0; i < a->cap && a->batch[i]; i++)
            if (in_parts(a->batch[i], (void *)parts))
                a->stale[i] = 1;
    return dropped;
}

/* ---- librdkafka callbacks (loop thread, except log_cb) ----------------- */

static void set_down(consumer *c, int down)
{
    if (c->down == down)
        return;
    c->down = down;
    if (c->cb.brokers_down)
        c->cb.brokers_down(down, c->cb.arg);
}

static int set_conf(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[512];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
        log_kv(LOG_ERROR, "bad Kafka setting", "s:key", k, "s:value", v, "s:error", err,
               NULL);
        return -1;
    }
    return 0;
}

/* librdkafka's threads: log_kv is thread-safe (one write() per line). */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *text)
{
    enum log_level lvl = level <= 3 ? LOG_ERROR : level == 4 ? LOG_WARN
                       : level <= 6 ? LOG_INFO : LOG_DEBUG;
    log_kv(lvl, "librdkafka", "s:fac", fac, "s:text", text, NULL);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    consumer *c = opaque;
    c->m->kafka_errors++;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof why);
        log_kv(LOG_ERROR, "fatal Kafka error; shutting down", "s:error",
               rd_kafka_err2str(orig), "s:reason", why, NULL);
        if (c->cb.fatal)
            c->cb.fatal(c->cb.arg);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        set_down(c, 1);
    uint64_t sup = 0;
    if (log_rl_allow(&c->rl, &sup))
        log_kv(LOG_WARN, "kafka error", "s:error", rd_kafka_err2str(err), "s:reason", reason,
               "u:suppressed", sup, NULL);
}

static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    consumer *c = opaque;
    c->commit_inflight = 0;
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        uint64_t sup;
        if (log_rl_allow(&c->rl, &sup))
            log_kv(LOG_WARN, "offset commit failed", "s:error", rd_kafka_err2str(err),
                   "u:suppressed", sup, NULL);
        return;
    }
    /* the group coordinator answered a commit: the cluster is reachable
     * (_NO_OFFSET is decided locally and proves nothing) */
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        set_down(c, 0);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    consumer *c = opaque;
    int coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (c->cb.assigned)
            c->cb.assigned(parts, c->cb.arg);
        log_kv(LOG_INFO, "partitions assigned", "i:count", parts->cnt, "b:cooperative", coop,
               NULL);
        if (coop) {
            rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
            if (e) {
                log_kv(LOG_ERROR, "incremental assign failed", "s:error",
                       rd_kafka_error_string(e), NULL);
                rd_kafka_error_destroy(e);
            }
            c->assigned += (uint64_t)parts->cnt;
        } else {
            rd_kafka_assign(rk, parts);
            c->assigned = (uint64_t)parts->cnt;
        }
        set_down(c, 0);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        if (c->cb.revoked)
            c->cb.revoked(parts, c->cb.arg);
        /* accumulated, not yet dispatched (and those of a batch call in
         * progress): the new owner re-reads them */
        consumer_acc_revoke(&c->acc, parts);
        log_kv(LOG_INFO, "partitions revoked", "i:count", parts->cnt, NULL);
        if (coop) {
            rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
            if (e)
                rd_kafka_error_destroy(e);
            c->assigned = c->assigned >= (uint64_t)parts->cnt
                        ? c->assigned - (uint64_t)parts->cnt : 0;
        } else {
            rd_kafka_assign(rk, NULL);
            c->assigned = 0;
        }
        return;
    }
    log_kv(LOG_ERROR, "rebalance error", "s:error", rd_kafka_err2str(err), NULL);
    if (c->cb.revoked)
        c->cb.revoked(NULL, c->cb.arg);
    consumer_acc_revoke(&c->acc, NULL);
    rd_kafka_assign(rk, NULL);
    c->assigned = 0;
}

/* ---- the loop side ----------------------------------------------------- */

static void pipe_cb(evutil_socket_t fd, short what, void *arg)
{
    consumer *c = arg;
    char tmp[256];
    while (read(fd, tmp, sizeof tmp) > 0)
        ;
    c->cb.available(c->cb.arg);
}

typedef struct drain_ctx {
    consumer *c;
    int got;                     /* a batch call returned records */
} drain_ctx;

static ssize_t batch_consume(void *arg, rd_kafka_message_t **out, size_t max)
{
    drain_ctx *d = arg;
    ssize_t n = rd_kafka_consume_batch_queue(d->c->q, 0, out, max);
    if (n > 0)
        d->got = 1;
    return n;
}

static void drained_error(const rd_kafka_message_t *m, void *arg)
{
    consumer *c = arg;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        return;
    uint64_t sup;
    c->m->kafka_errors++;
    if (log_rl_allow(&c->rl, &sup))
        log_kv(LOG_WARN, "consumer error", "s:error", rd_kafka_message_errstr(m), "s:topic",
               m->rkt ? rd_kafka_topic_name(m->rkt) : "", "u:suppressed", sup, NULL);
}

size_t consumer_drain(consumer *c, size_t want)
{
    if (!c->q || c->paused)
        return c->acc.n;
    drain_ctx d = { c, 0 };
    if (consumer_acc_fill(&c->acc, want, batch_consume, &d, drained_error, c) < 0) {
        uint64_t sup;
        if (log_rl_allow(&c->rl, &sup))
            log_kv(LOG_WARN, "consume failed", "s:error",
                   rd_kafka_err2str(rd_kafka_last_error()), NULL);
    }
    if (d.got)
        set_down(c, 0);
    return c->acc.n;
}

size_t consumer_pending(const consumer *c)
{
    return c->acc.n;
}

size_t consumer_take(consumer *c, rd_kafka_message_t **out, size_t max)
{
    return consumer_acc_take(&c->acc, out, max);
}

void consumer_discard(consumer *c)
{
    consumer_acc_clear(&c->acc);
}

void consumer_pause(consumer *c)
{
    c->paused = 1;
    if (c->ev)
        event_del(c->ev);
}

void consumer_resume(consumer *c)
{
    if (!c->paused)
        return;
    c->paused = 0;
    if (c->ev) {
        event_add(c->ev, NULL);
        c->cb.available(c->cb.arg);
    }
}

int consumer_store_offsets(consumer *c, rd_kafka_topic_partition_list_t *l)
{
    if (!c->rk)
        return -1;
    rd_kafka_offsets_store(c->rk, l);
    return 0;
}

void consumer_commit_soon(consumer *c)
{
    if (!c->rk || !c->q || c->commit_inflight)
        return;
    if (rd_kafka_commit(c->rk, NULL, 1) == RD_KAFKA_RESP_ERR_NO_ERROR)
        c->commit_inflight = 1;
}

int64_t consumer_lag(consumer *c)
{
    if (!c->rk)
        return -1;
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(c->rk, &a) != RD_KAFKA_RESP_ERR_NO_ERROR || !a)
        return -1;
    rd_kafka_position(c->rk, a);
    int64_t lag = 0;
    int known = 0;
    for (int i = 0; i < a->cnt; i++) {
        int64_t lo = -1, hi = -1;
        if (rd_kafka_get_watermark_offsets(c->rk, a->elems[i].topic, a->elems[i].partition,
                                           &lo, &hi) != RD_KAFKA_RESP_ERR_NO_ERROR || hi < 0)
            continue;
        int64_t pos = a->elems[i].offset;
        if (pos < 0)
            continue;   /* nothing consumed yet on this partition */
        lag += hi > pos ? hi - pos : 0;
        known++;
    }
    int cnt = a->cnt;
    rd_kafka_topic_partition_list_destroy(a);
    return known || cnt == 0 ? lag : -1;
}

uint64_t consumer_assigned(const consumer *c)
{
    return c->assigned;
}

long consumer_partitions(consumer *c, consumer_partition *out, size_t max)
{
    if (!c->rk)
        return -1;
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(c->rk, &a) != RD_KAFKA_RESP_ERR_NO_ERROR || !a)
        return -1;
    rd_kafka_position(c->rk, a);
    for (int i = 0; i < a->cnt && (size_t)i < max; i++) {
        consumer_partition *p = &out[i];
        snprintf(p->topic, sizeof p->topic, "%s", a->elems[i].topic);
        p->partition = a->elems[i].partition;
        p->position = a->elems[i].offset >= 0 ? a->elems[i].offset : -1;
        p->stored = -1;
        p->low = p->high = -1;
        if (rd_kafka_get_watermark_offsets(c->rk, a->elems[i].topic, a->elems[i].partition,
                                           &p->low, &p->high) != RD_KAFKA_RESP_ERR_NO_ERROR)
            p->low = p->high = -1;
        p->lag = p->high >= 0 && p->position >= 0
                     ? (p->high > p->position ? p->high - p->position : 0) : -1;
    }
    long n = a->cnt;
    rd_kafka_topic_partition_list_destroy(a);
    return n;
}

char *consumer_member_id(consumer *c)
{
    if (!c->rk)
        return NULL;
    char *id = rd_kafka_memberid(c->rk);
    if (!id)
        return NULL;
    char *copy = *id ? strdup(id) : NULL;
    rd_kafka_mem_free(c->rk, id);
    return copy;
}

long consumer_session_timeout_ms(const consumer *c)
{
    return c->session_timeout_ms;
}

/* ---- lifecycle ---------------------------------------------------------- */

/* Handles whose destruction outlived its bound: still referenced here (the
 * process is exiting; leak checkers see them reachable). */
static rd_kafka_t *abandoned[4];

typedef struct destroyer {
    rd_kafka_t *rk;
    int flags;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, orphan;
} destroyer;

static void *destroy_main(void *arg)
{
    destroyer *d = arg;
    rd_kafka_destroy_flags(d->rk, d->flags);
    pthread_mutex_lock(&d->mu);
    d->done = 1;
    int orphan = d->orphan;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    if (orphan)
        free(d);
    return NULL;
}

/* rd_kafka_destroy joins librdkafka's threads, which can take seconds with
 * an unreachable broker: run it on a thread and wait at most wait_ms.
 * Returns 0 if it finished, -1 if it was left running. */
static int destroy_bounded(rd_kafka_t *rk, int flags, long wait_ms)
{
    destroyer *d = calloc(1, sizeof *d);
    if (!d) {
        rd_kafka_destroy_flags(rk, flags);
        return 0;
    }
    d->rk = rk;
    d->flags = flags;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &at, destroy_main, d) != 0) {
        pthread_attr_destroy(&at);
        free(d);
        rd_kafka_destroy_flags(rk, flags);
        return 0;
    }
    pthread_attr_destroy(&at);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += wait_ms / 1000;
    ts.tv_nsec += (wait_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&d->mu);
    while (!d->done)
        if (pthread_cond_timedwait(&d->cv, &d->mu, &ts) != 0)
            break;
    int done = d->done;
    if (!done) {
        d->orphan = 1;
        for (size_t i = 0; i < sizeof abandoned / sizeof abandoned[0]; i++)
            if (!abandoned[i]) {
                abandoned[i] = rk;
                break;
            }
    }
    pthread_mutex_unlock(&d->mu);
    if (done) {
        pthread_mutex_destroy(&d->mu);
        pthread_cond_destroy(&d->cv);
        free(d);
        return 0;
    }
    log_kv(LOG_WARN, "Kafka client teardown is taking long; exiting without waiting",
           "i:waited_ms", (int)wait_ms, NULL);
    return -1;
}

/* Serve the close queue as events: the consumer queue is forwarded to it
 * during the close, so besides rebalance events it gets records fetched
 * after the last drain (released: they are not stored), which the
 * callback-style poll cannot serve (librdkafka asserts). */
static void serve_close_queue(consumer *c, rd_kafka_queue_t *cq, int wait_ms)
{
    for (rd_kafka_event_t *ev = rd_kafka_queue_poll(cq, wait_ms); ev;
         ev = rd_kafka_queue_poll(cq, 0)) {
        if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE)
            rebalance_cb(c->rk, rd_kafka_event_error(ev),
                         (rd_kafka_topic_partition_list_t *)
                             rd_kafka_event_topic_partition_list(ev), c);
        rd_kafka_event_destroy(ev);
    }
}

int consumer_close(consumer *c, long timeout_ms)
{
    int rc = 0;
    if (c->ev) {
        event_free(c->ev);
        c->ev = NULL;
    }
    if (c->rk) {
        if (c->q)
            rd_kafka_queue_io_event_enable(c->q, -1, NULL, 0);
        /* the close gets the time less what the teardown may take */
        uint64_t start = clock_mono_ms();
        long close_ms = timeout_ms > CONSUMER_DESTROY_MS * 2 ? timeout_ms - CONSUMER_DESTROY_MS
                                                             : timeout_ms / 2;
        uint64_t deadline = start + (uint64_t)(close_ms > 0 ? close_ms : 0);
        /* The final commit is asynchronous and bounded with the close: a
         * synchronous rd_kafka_commit waits for an unreachable coordinator
         * without a bound (measured 10 s+).  Its result arrives on the
         * close queue below. */
        rd_kafka_queue_t *cq = rd_kafka_queue_new(c->rk);
        rd_kafka_queue_t *kq = rd_kafka_queue_new(c->rk);
        rd_kafka_resp_err_t e = kq ? rd_kafka_commit_queue(c->rk, NULL, kq, NULL, NULL)
                                   : RD_KAFKA_RESP_ERR__FAIL;
        int committed = e != RD_KAFKA_RESP_ERR_NO_ERROR;   /* nothing to wait for */
        if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
            log_kv(LOG_WARN, "final commit failed", "s:error", rd_kafka_err2str(e), NULL);
        if (c->q) {
            rd_kafka_queue_destroy(c->q);
            c->q = NULL;
        }
        /* rd_kafka_consumer_close() waits without a bound; the queue form
         * serves the same events (the revoke callback included) here, on
         * this thread, until the group is left or the time is up. */
        int closed = 0;
        rd_kafka_error_t *err = cq ? rd_kafka_consumer_close_queue(c->rk, cq) : NULL;
        if (cq && !err) {
            /* the group leave waits for the commit in flight */
            for (;;) {
                closed = rd_kafka_consumer_closed(c->rk);
                rd_kafka_event_t *ev = committed ? NULL : rd_kafka_queue_poll(kq, 0);
                if (!ev) {
                    if (closed || clock_mono_ms() >= deadline)
                        break;
                    serve_close_queue(c, cq, 20);
                    continue;
                }
                rd_kafka_resp_err_t ce = rd_kafka_event_error(ev);
                if (ce && ce != RD_KAFKA_RESP_ERR__NO_OFFSET)
                    log_kv(LOG_WARN, "final commit failed", "s:error",
                           rd_kafka_err2str(ce), NULL);
                else
                    log_kv(LOG_INFO, "offsets committed", "s:result",
                           ce ? "nothing to commit" : "ok", NULL);
                committed = 1;
                rd_kafka_event_destroy(ev);
            }
        } else if (err) {
            log_kv(LOG_WARN, "consumer close failed", "s:error", rd_kafka_error_string(err),
                   NULL);
            rd_kafka_error_destroy(err);
        }
        if (cq)
            rd_kafka_queue_destroy(cq);
        if (kq)
            rd_kafka_queue_destroy(kq);
        if (!committed && !closed)
            log_kv(LOG_WARN, "final commit did not complete in time; the next owner "
                   "re-reads from the last committed offsets", NULL);
        if (!closed) {
            log_kv(LOG_WARN, "consumer did not leave the group in time; the group "
                   "reassigns its partitions after the session timeout",
                   "i:timeout_ms", (int)timeout_ms, NULL);
            rc = -1;
        }
        int64_t left = (int64_t)(start + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0)) -
                       (int64_t)clock_mono_ms();
        if (destroy_bounded(c->rk, closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE,
                            left > 100 ? (long)left : 100) != 0)
            rc = -1;
        c->rk = NULL;
    }
    for (int i = 0; i < 2; i++) {
        if (c->pipe[i] >= 0)
            close(c->pipe[i]);
        c->pipe[i] = -1;
    }
    return rc;
}

consumer *consumer_new(struct event_base *base, const router_config *cfg,
                       router_metrics *m, const consumer_callbacks *cb)
{
    consumer *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->cfg = cfg;
    c->base = base;
    c->m = m;
    c->cb = *cb;
    c->pipe[0] = c->pipe[1] = -1;
    c->rl.per_sec = 1;
    rd_kafka_conf_t *conf = NULL;
    if (consumer_acc_init(&c->acc, (size_t)cfg->kafka_batch_size) != 0) {
        log_kv(LOG_ERROR, "out of memory", NULL);
        goto err;
    }
    char err[512], num[32];
    conf = rd_kafka_conf_new();
    snprintf(num, sizeof num, "%ld", cfg->kafka_commit_interval_ms);
    char client_id[300];
    snprintf(client_id, sizeof client_id, "odin-router-%s", cfg->id);
    if (set_conf(conf, "bootstrap.servers", cfg->kafka_brokers) ||
        set_conf(conf, "group.id", cfg->kafka_group) ||
        set_conf(conf, "client.id", client_id) ||
        set_conf(conf, "enable.auto.offset.store", "false") ||
        set_conf(conf, "enable.auto.commit", "true") ||
        set_conf(conf, "auto.commit.interval.ms", num) ||
        set_conf(conf, "auto.offset.reset", cfg->offset_earliest ? "earliest" : "latest") ||
        set_conf(conf, "enable.partition.eof", "false") ||
        /* real-time defaults (KAFKA_OPTIONS may override): the broker
         * answers a fetch within 10 ms instead of librdkafka's 500 ms, which
         * otherwise dominates end-to-end latency at low rates; a dead router's
         * partitions move to the others after 10 s instead of 45 s */
        set_conf(conf, "fetch.wait.max.ms", "10") ||
        set_conf(conf, "session.timeout.ms", "10000"))
        goto err;
    /* Static membership (KIP-345): a router restarted with the same
     * ROUTER_ID rejoins as the same member and gets its partitions back at
     * once instead of after the session timeout (docs/reliability.md). */
    if (cfg->router_id && *cfg->router_id) {
        char iid[300];
        snprintf(iid, sizeof iid, "odin-router-%s", cfg->router_id);
        if (set_conf(conf, "group.instance.id", iid))
            goto err;
    }
    /* KAFKA_OPTIONS: k=v,k=v passed through */
    if (cfg->kafka_options && *cfg->kafka_options) {
        char *copy = strdup(cfg->kafka_options), *save = NULL;
        if (!copy)
            goto err;
        for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(kv, '=');
            if (!eq) {
                log_kv(LOG_ERROR, "KAFKA_OPTIONS entry is not key=value", "s:entry", kv, NULL);
                free(copy);
                goto err;
            }
            *eq = '\0';
            if (set_conf(conf, kv, eq + 1) != 0) {
                free(copy);
                goto err;
            }
        }
        free(copy);
    }
    char st[32];
    size_t stlen = sizeof st;
    c->session_timeout_ms = rd_kafka_conf_get(conf, "session.timeout.ms", st, &stlen) ==
                                    RD_KAFKA_CONF_OK ? atol(st) : 10000;
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_offset_commit_cb(conf, commit_cb);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!c->rk) {
        log_kv(LOG_ERROR, "cannot create Kafka consumer", "s:error", err, NULL);
        goto err;
    }
    conf = NULL;   /* owned by rk now */
    rd_kafka_poll_set_consumer(c->rk);

    const router_topics *t = &cfg->topics;
    rd_kafka_topic_partition_list_t *subs =
        rd_kafka_topic_partition_list_new((int)t->nsubscribe);
    for (size_t i = 0; i < t->nsubscribe; i++)
        rd_kafka_topic_partition_list_add(subs, t->subscribe[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (e) {
        log_kv(LOG_ERROR, "subscribe failed", "s:error", rd_kafka_err2str(e), NULL);
        goto err;
    }
    c->q = rd_kafka_queue_get_consumer(c->rk);
    if (!c->q || pipe2(c->pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        log_kv(LOG_ERROR, "cannot set up the consumer queue", "s:error", strerror(errno),
               NULL);
        goto err;
    }
    rd_kafka_queue_io_event_enable(c->q, c->pipe[1], "1", 1);
    c->ev = event_new(base, c->pipe[0], EV_READ | EV_PERSIST, pipe_cb, c);
    if (!c->ev)
        goto err;
    event_add(c->ev, NULL);
    return c;
err:
    if (conf)
        rd_kafka_conf_destroy(conf);
    consumer_free(c);
    return NULL;
}

void consumer_free(consumer *c)
{
    if (!c)
        return;
    consumer_acc_clear(&c->acc);
    consumer_close(c, CONSUMER_CLOSE_MS_DEFAULT);
    consumer_acc_free(&c->acc);
    free(c);
}
