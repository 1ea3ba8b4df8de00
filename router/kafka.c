/*
 * The Kafka side: high-level consumer in one group, polled from the loop
 * thread.  rd_kafka_queue_io_event_enable() makes librdkafka write a byte to
 * a pipe whenever the consumer queue goes from empty to non-empty; the pipe
 * is a libevent read event, and the queue is drained with
 * rd_kafka_consume_batch_queue(timeout 0).  Rebalance, error and commit
 * callbacks are served from those calls, i.e. on the loop thread.
 */
#include "router/router_int.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *text)
{
    enum log_level lvl = level <= 3 ? LOG_ERROR : level == 4 ? LOG_WARN
                       : level <= 6 ? LOG_INFO : LOG_DEBUG;
    log_kv(lvl, "librdkafka", "s:fac", fac, "s:text", text, NULL);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    router *r = opaque;
    r->m.kafka_errors++;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        r->kafka_down = 1;
    uint64_t sup = 0;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof why);
        log_kv(LOG_ERROR, "fatal Kafka error; shutting down", "s:error",
               rd_kafka_err2str(orig), "s:reason", why, NULL);
        r->exit_code = 1;
        raise(SIGTERM);
        return;
    }
    if (log_rl_allow(&r->rl_kafka, &sup))
        log_kv(LOG_WARN, "kafka error", "s:error", rd_kafka_err2str(err), "s:reason", reason,
               "u:suppressed", sup, NULL);
}

static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    router *r = opaque;
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        uint64_t sup;
        if (log_rl_allow(&r->rl_kafka, &sup))
            log_kv(LOG_WARN, "offset commit failed", "s:error", rd_kafka_err2str(err),
                   "u:suppressed", sup, NULL);
        return;
    }
    /* the group coordinator answered a commit: the cluster is reachable
     * (_NO_OFFSET is decided locally and proves nothing) */
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        r->kafka_down = 0;
}

/* Drop accumulated (not yet dispatched) records of revoked partitions: the
 * new owner re-reads them from the last committed offset. */
static void drop_acc(router *r, const rd_kafka_topic_partition_list_t *parts)
{
    size_t k = 0;
    for (size_t i = 0; i < r->nacc; i++) {
        rd_kafka_message_t *m = r->acc[i];
        int revoked = 0;
        const char *tn = rd_kafka_topic_name(m->rkt);
        for (int j = 0; j < parts->cnt && !revoked; j++)
            revoked = parts->elems[j].partition == m->partition &&
                      strcmp(parts->elems[j].topic, tn) == 0;
        if (revoked)
            rd_kafka_message_destroy(m);
        else
            r->acc[k++] = m;
    }
    r->nacc = k;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    router *r = opaque;
    int coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++)
            router_offsets_reset(r->off, parts->elems[i].topic, parts->elems[i].partition);
        log_kv(LOG_INFO, "partitions assigned", "i:count", parts->cnt, "b:cooperative", coop,
               NULL);
        if (coop) {
            rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
            if (e) {
                log_kv(LOG_ERROR, "incremental assign failed", "s:error",
                       rd_kafka_error_string(e), NULL);
                rd_kafka_error_destroy(e);
            }
            r->assigned += (uint64_t)parts->cnt;
        } else {
            rd_kafka_assign(rk, parts);
            r->assigned = (uint64_t)parts->cnt;
        }
        r->kafka_down = 0;
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        /* Store what is complete now so the commit on revoke includes it. */
        router_store_offsets(r);
        for (int i = 0; i < parts->cnt; i++)
            router_offsets_reset(r->off, parts->elems[i].topic, parts->elems[i].partition);
        drop_acc(r, parts);
        log_kv(LOG_INFO, "partitions revoked", "i:count", parts->cnt, NULL);
        if (coop) {
            rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
            if (e)
                rd_kafka_error_destroy(e);
            r->assigned = r->assigned >= (uint64_t)parts->cnt ? r->assigned - (uint64_t)parts->cnt : 0;
        } else {
            rd_kafka_assign(rk, NULL);
            r->assigned = 0;
        }
        return;
    }
    log_kv(LOG_ERROR, "rebalance error", "s:error", rd_kafka_err2str(err), NULL);
    router_offsets_reset_all(r->off);
    rd_kafka_assign(rk, NULL);
    r->assigned = 0;
}

static void kafka_cb(evutil_socket_t fd, short what, void *arg)
{
    router *r = arg;
    char tmp[256];
    while (read(fd, tmp, sizeof tmp) > 0)
        ;
    router_pump_schedule(r);
}

void router_kafka_drain(router *r)
{
    if (!r->q)
        return;
    size_t cap = (size_t)r->cfg->kafka_batch_size;
    while (r->nacc < cap) {
        size_t want = cap - r->nacc;
        ssize_t n = rd_kafka_consume_batch_queue(r->q, 0, r->acc + r->nacc, want);
        if (n < 0) {
            uint64_t sup;
            if (log_rl_allow(&r->rl_kafka, &sup))
                log_kv(LOG_WARN, "consume failed", "s:error",
                       rd_kafka_err2str(rd_kafka_last_error()), NULL);
            break;
        }
        if (n == 0)
            break;
        size_t k = r->nacc;
        for (size_t i = r->nacc; i < r->nacc + (size_t)n; i++) {
            rd_kafka_message_t *m = r->acc[i];
            if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                    uint64_t sup;
                    r->m.kafka_errors++;
                    if (log_rl_allow(&r->rl_kafka, &sup))
                        log_kv(LOG_WARN, "consumer error", "s:error",
                               rd_kafka_message_errstr(m), "s:topic",
                               m->rkt ? rd_kafka_topic_name(m->rkt) : "", "u:suppressed",
                               sup, NULL);
                }
                rd_kafka_message_destroy(m);
                continue;
            }
            r->acc[k++] = m;
        }
        r->nacc = k;
        r->kafka_down = 0;
        if ((size_t)n < want)
            break;   /* queue empty: the IO event fires on the next record */
    }
}

int64_t router_kafka_lag(router *r)
{
    if (!r->rk)
        return -1;
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(r->rk, &a) != RD_KAFKA_RESP_ERR_NO_ERROR || !a)
        return -1;
    rd_kafka_position(r->rk, a);
    int64_t lag = 0;
    int known = 0;
    for (int i = 0; i < a->cnt; i++) {
        int64_t lo = -1, hi = -1;
        if (rd_kafka_get_watermark_offsets(r->rk, a->elems[i].topic, a->elems[i].partition,
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

int router_kafka_start(router *r)
{
    const router_config *cfg = r->cfg;
    char err[512], num[32];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
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
    rd_kafka_conf_set_opaque(conf, r);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_offset_commit_cb(conf, commit_cb);
    r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!r->rk) {
        log_kv(LOG_ERROR, "cannot create Kafka consumer", "s:error", err, NULL);
        goto err;
    }
    conf = NULL;   /* owned by rk now */
    rd_kafka_poll_set_consumer(r->rk);

    const router_topics *t = &cfg->topics;
    rd_kafka_topic_partition_list_t *subs =
        rd_kafka_topic_partition_list_new((int)t->nsubscribe);
    for (size_t i = 0; i < t->nsubscribe; i++)
        rd_kafka_topic_partition_list_add(subs, t->subscribe[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(r->rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (e) {
        log_kv(LOG_ERROR, "subscribe failed", "s:error", rd_kafka_err2str(e), NULL);
        return -1;
    }
    r->q = rd_kafka_queue_get_consumer(r->rk);
    if (!r->q || pipe2(r->kpipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        log_kv(LOG_ERROR, "cannot set up the consumer queue", "s:error", strerror(errno), NULL);
        return -1;
    }
    rd_kafka_queue_io_event_enable(r->q, r->kpipe[1], "1", 1);
    r->ev_kafka = event_new(r->base, r->kpipe[0], EV_READ | EV_PERSIST, kafka_cb, r);
    if (!r->ev_kafka)
        return -1;
    event_add(r->ev_kafka, NULL);
    router_pump_schedule(r);   /* records may already be queued */
    return 0;
err:
    if (conf)
        rd_kafka_conf_destroy(conf);
    return -1;
}

void router_kafka_close(router *r)
{
    if (r->ev_kafka) {
        event_free(r->ev_kafka);
        r->ev_kafka = NULL;
    }
    if (r->rk) {
        if (r->q)
            rd_kafka_queue_io_event_enable(r->q, -1, NULL, 0);
        router_store_offsets(r);
        rd_kafka_resp_err_t e = rd_kafka_commit(r->rk, NULL, 0);
        if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
            log_kv(LOG_WARN, "final commit failed", "s:error", rd_kafka_err2str(e), NULL);
        else
            log_kv(LOG_INFO, "offsets committed", "s:result", e ? "nothing to commit" : "ok",
                   NULL);
        if (r->q) {
            rd_kafka_queue_destroy(r->q);
            r->q = NULL;
        }
        rd_kafka_consumer_close(r->rk);
        rd_kafka_destroy(r->rk);
        r->rk = NULL;
    }
    for (int i = 0; i < 2; i++) {
        if (r->kpipe[i] >= 0)
            close(r->kpipe[i]);
        r->kpipe[i] = -1;
    }
}
