#include "shard/resume.h"
#include "shard/clientmsg.h"
#include "shard/envelope.h"
#include "shard/registry.h"
#include "shard/server.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/topics.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <event2/event.h>
#include <librdkafka/rdkafka.h>

#define CHECK_MS 20

_Static_assert(RESUME_CODE_N == SM_RESUME_N,
               "metrics.h SM_RESUME_N must match enum resume_code");

const char *resume_code_name(enum resume_code c)
{
    switch (c) {
    case RESUME_OK: return "OK";
    case RESUME_TOO_FAR_BEHIND: return "TOO_FAR_BEHIND";
    case RESUME_POSITION_EXPIRED: return "POSITION_EXPIRED";
    case RESUME_INVALID_POSITION: return "INVALID_POSITION";
    case RESUME_UNAVAILABLE: return "RESUME_UNAVAILABLE";
    case RESUME_BUSY: return "RESUME_BUSY";
    case RESUME_CODE_N: break;
    }
    return "INTERNAL_ERROR";
}

int resume_seam_ok(int64_t pos, int at_eof, int64_t first_held,
                   int pre_routed, int64_t routed_for_ms)
{
    if (pos < 0)
        return 0;              /* the replay has not located the channel */
    if (first_held >= 0 && first_held <= pos)
        return 1;              /* live already covers what follows pos */
    if (!at_eof)
        return 0;
    return pre_routed || routed_for_ms >= RESUME_SETTLE_MS;
}

/* ---- shared between the loop and the workers -------------------------- */

enum rmsg_type { RM_REC, RM_EOF, RM_DONE };

typedef struct rmsg {
    struct rmsg *next;
    struct resume_job *job;
    enum rmsg_type type;
    int chan;
    int32_t partition;
    int64_t offset;          /* REC: the record; EOF: next offset */
    int64_t ts;
    enum resume_code code;   /* DONE */
    size_t vlen;
    char value[];            /* REC: the value; DONE: message */
} rmsg;

/* worker-side description of one channel (immutable once started) */
typedef struct wchan {
    char *token;
    size_t tlen;
    const char *topic;
    int32_t partition;       /* -1: by key hash (resolved by the worker) */
    int64_t start;
} wchan;

/* loop-side state of one resuming channel */
typedef struct rs_chan {
    char *name;
    size_t nlen;
    size_t tlen;             /* name = token "." category */
    int32_t partition;       /* -1 until the worker says */
    int64_t last;            /* last offset replayed (or the client's seq) */
    int64_t pos;             /* replay position (next offset), -1 unknown */
    int at_eof;
    int pre_routed;
    uint64_t routed_ms;
    int64_t first_held;
    int floor;               /* after the replay: drop live <= last */
    int replayed_any;        /* last is an offset this replay sent */
} rs_chan;

typedef struct rs_held {
    ws_chunk *frame;
    int chan;
    int32_t partition;
    int64_t offset;
} rs_held;

typedef struct resume_job resume_job;

/* per-client state (c->rs) */
typedef struct resume_client {
    shard_client *c;
    resume_job *job;         /* NULL once the replay finished */
    rs_chan *ch;
    size_t n;
    rs_held *held;
    size_t nheld, capheld;
    uint64_t replayed;
    int odinws;
    int floors;              /* channels with floor set */
} resume_client;

struct resume_job {
    shard_resume *rm;
    resume_job *prev, *next;
    resume_client *rc;       /* NULL when the client went away */
    pthread_t th;
    int started;
    /* worker input */
    wchan *wch;
    size_t n;
    long max_records;
    uint64_t deadline_ms;
    /* shared, under rm->mu */
    int stop;
    size_t pending;
    pthread_cond_t cv;
    /* loop only */
    int stopping;
    enum resume_code fail;   /* set by the loop (timeout, held overflow) */
    uint64_t t0;
};

struct shard_resume {
    shard_ctx *ctx;
    int efd;
    struct event *ev, *check_ev;
    pthread_mutex_t mu;
    rmsg *head, *tail;       /* under mu */
    resume_job *jobs;        /* loop only */
    long active;
    buf scratch;
};

static void rs_free(resume_client *rc)
{
    if (!rc)
        return;
    for (size_t i = 0; i < rc->nheld; i++)
        ws_chunk_unref(rc->held[i].frame);
    free(rc->held);
    for (size_t i = 0; i < rc->n; i++)
        free(rc->ch[i].name);
    free(rc->ch);
    free(rc);
}

static void job_free(resume_job *j)
{
    for (size_t i = 0; i < j->n; i++)
        free(j->wch[i].token);
    free(j->wch);
    pthread_cond_destroy(&j->cv);
    free(j);
}

/* ---- worker thread ---------------------------------------------------- */

static void post(shard_resume *rm, rmsg *m)
{
    m->next = NULL;
    pthread_mutex_lock(&rm->mu);
    int wake = rm->head == NULL;
    if (rm->tail)
        rm->tail->next = m;
    else
        rm->head = m;
    rm->tail = m;
    if (m->type == RM_REC)
        m->job->pending += m->vlen + sizeof(*m);
    pthread_mutex_unlock(&rm->mu);
    if (wake) {
        uint64_t one = 1;
        ssize_t w = write(rm->efd, &one, sizeof(one));
        (void)w;
    }
}

static void post_done(resume_job *j, enum resume_code code, const char *msg)
{
    size_t l = strlen(msg);
    rmsg *m = calloc(1, sizeof(*m) + l + 1);
    if (!m)
        abort();   /* the loop waits for this message: cannot lose it */
    m->job = j;
    m->type = RM_DONE;
    m->code = code;
    memcpy(m->value, msg, l + 1);
    m->vlen = 0;
    post(j->rm, m);
}

/* 1 if the worker should stop; waits while the loop is behind. */
static int worker_wait(resume_job *j)
{
    shard_resume *rm = j->rm;
    pthread_mutex_lock(&rm->mu);
    while (!j->stop && j->pending > RESUME_PENDING_BYTES) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&j->cv, &rm->mu, &ts);
    }
    int stop = j->stop;
    pthread_mutex_unlock(&rm->mu);
    return stop;
}

typedef struct wgroup {
    rd_kafka_topic_t *rkt;
    const char *topic;
    int32_t partition;
    int64_t start;
    int started;
} wgroup;

static int remaining_ms(const resume_job *j)
{
    uint64_t now = clock_mono_ms();
    if (now >= j->deadline_ms)
        return 0;
    uint64_t r = j->deadline_ms - now;
    return r > 60000 ? 60000 : (int)r;
}

static int set_conf(rd_kafka_conf_t *conf, const char *k, const char *v,
                    char *err, size_t errlen)
{
    return rd_kafka_conf_set(conf, k, v, err, errlen) == RD_KAFKA_CONF_OK
               ? 0 : -1;
}

static rd_kafka_t *worker_kafka(resume_job *j, char *err, size_t errlen)
{
    const shard_settings *s = j->rm->ctx->set;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char cid[200];
    snprintf(cid, sizeof(cid), "odin-shard-resume-%s", s->shard_id);
    if (set_conf(conf, "bootstrap.servers", s->kafka_brokers, err, errlen) ||
        set_conf(conf, "client.id", cid, err, errlen) ||
        set_conf(conf, "enable.partition.eof", "true", err, errlen) ||
        set_conf(conf, "fetch.wait.max.ms", "20", err, errlen) ||
        set_conf(conf, "queued.max.messages.kbytes", "1024", err, errlen) ||
        set_conf(conf, "log.connection.close", "false", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    if (s->kafka_options && *s->kafka_options) {
        char **items = NULL;
        size_t ni = 0;
        if (config_split_list(s->kafka_options, &items, &ni) != 0) {
            rd_kafka_conf_destroy(conf);
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        for (size_t i = 0; i < ni; i++) {
            char *eq = strchr(items[i], '=');
            if (!eq) {
                snprintf(err, errlen, "KAFKA_OPTIONS item '%s' lacks '='",
                         items[i]);
                config_list_free(items, ni);
                rd_kafka_conf_destroy(conf);
                return NULL;
            }
            *eq = 0;
            if (set_conf(conf, items[i], eq + 1, err, errlen)) {
                config_list_free(items, ni);
                rd_kafka_conf_destroy(conf);
                return NULL;
            }
        }
        config_list_free(items, ni);
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
    if (!rk)
        rd_kafka_conf_destroy(conf);
    return rk;
}

static void *worker(void *arg)
{
    resume_job *j = arg;
    char err[512] = "";
    char msg[600];
    enum resume_code code = RESUME_OK;
    msg[0] = 0;
    wgroup *g = calloc(j->n ? j->n : 1, sizeof(*g));
    int *gof = calloc(j->n ? j->n : 1, sizeof(*gof));   /* chan -> group */
    size_t ng = 0;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_t *rk = NULL;
    long count = 0;
    if (!g || !gof) {
        code = RESUME_UNAVAILABLE;
        snprintf(msg, sizeof(msg), "out of memory");
        goto out;
    }
    rk = worker_kafka(j, err, sizeof(err));
    if (!rk) {
        code = RESUME_UNAVAILABLE;
        snprintf(msg, sizeof(msg), "Kafka consumer: %s", err);
        goto out;
    }
    q = rd_kafka_queue_new(rk);
    /* locate every channel: topic, partition, watermarks */
    for (size_t i = 0; i < j->n && code == RESUME_OK; i++) {
        wchan *w = &j->wch[i];
        size_t k;
        rd_kafka_topic_t *rkt = NULL;
        for (k = 0; k < ng; k++)
            if (strcmp(g[k].topic, w->topic) == 0) {
                rkt = g[k].rkt;
                break;
            }
        int own = 0;
        if (!rkt) {
            rkt = rd_kafka_topic_new(rk, w->topic, NULL);
            own = 1;
        }
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md,
                                                  remaining_ms(j));
        int32_t cnt = 0;
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1) {
            e = md->topics[0].err;
            cnt = md->topics[0].partition_cnt;
        }
        if (md)
            rd_kafka_metadata_destroy(md);
        if (e == RD_KAFKA_RESP_ERR__TIMED_OUT || e == RD_KAFKA_RESP_ERR__TRANSPORT) {
            code = RESUME_UNAVAILABLE;
            snprintf(msg, sizeof(msg), "Kafka metadata for %s: %s", w->topic,
                     rd_kafka_err2str(e));
        } else if (e != RD_KAFKA_RESP_ERR_NO_ERROR || cnt <= 0) {
            code = RESUME_INVALID_POSITION;
            snprintf(msg, sizeof(msg), "topic %s does not exist (%s)",
                     w->topic, rd_kafka_err2str(e));
        } else if (w->partition < 0) {
            w->partition = rd_kafka_msg_partitioner_consistent(
                rkt, w->token, w->tlen, cnt, NULL, NULL);
        } else if (w->partition >= cnt) {
            code = RESUME_INVALID_POSITION;
            snprintf(msg, sizeof(msg),
                     "partition %d of %s does not exist (%d partitions)",
                     (int)w->partition, w->topic, (int)cnt);
        }
        int64_t lo = 0, hi = 0;
        if (code == RESUME_OK) {
            e = rd_kafka_query_watermark_offsets(rk, w->topic, w->partition,
                                                 &lo, &hi, remaining_ms(j));
            if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
                code = RESUME_UNAVAILABLE;
                snprintf(msg, sizeof(msg), "watermarks of %s/%d: %s",
                         w->topic, (int)w->partition, rd_kafka_err2str(e));
            } else if (w->start < lo) {
                code = RESUME_POSITION_EXPIRED;
                snprintf(msg, sizeof(msg),
                         "%s/%d starts at offset %" PRId64 " now; seq %" PRId64
                         " is gone", w->topic, (int)w->partition, lo,
                         w->start - 1);
            } else if (w->start > hi) {
                code = RESUME_INVALID_POSITION;
                snprintf(msg, sizeof(msg),
                         "seq %" PRId64 " is beyond the end of %s/%d (%" PRId64
                         ")", w->start - 1, w->topic, (int)w->partition, hi);
            }
        }
        /* group by (topic, partition) */
        for (k = 0; k < ng; k++)
            if (strcmp(g[k].topic, w->topic) == 0 &&
                g[k].partition == w->partition)
                break;
        if (k == ng) {
            g[ng].rkt = rkt;
            g[ng].topic = w->topic;
            g[ng].partition = w->partition;
            g[ng].start = w->start;
            ng++;
            own = 0;
        } else if (w->start < g[k].start) {
            g[k].start = w->start;
        }
        if (own)
            rd_kafka_topic_destroy(rkt);
        gof[i] = (int)k;
        if (code == RESUME_OK) {
            rmsg *m = calloc(1, sizeof(*m));   /* tell the loop the partition */
            if (m) {
                m->job = j;
                m->type = RM_EOF;
                m->chan = (int)i;
                m->partition = w->partition;
                m->offset = -1;
                post(j->rm, m);
            }
        }
    }
    for (size_t k = 0; k < ng && code == RESUME_OK; k++) {
        if (rd_kafka_consume_start_queue(g[k].rkt, g[k].partition, g[k].start,
                                         q) != 0) {
            code = RESUME_UNAVAILABLE;
            snprintf(msg, sizeof(msg), "consume %s/%d: %s", g[k].topic,
                     (int)g[k].partition,
                     rd_kafka_err2str(rd_kafka_last_error()));
        } else {
            g[k].started = 1;
        }
    }
    while (code == RESUME_OK) {
        if (worker_wait(j))
            break;
        if (clock_mono_ms() >= j->deadline_ms) {
            code = RESUME_TOO_FAR_BEHIND;
            snprintf(msg, sizeof(msg),
                     "replay did not finish within RESUME_TIMEOUT_MS");
            break;
        }
        rd_kafka_message_t *rkm = rd_kafka_consume_queue(q, 50);
        if (!rkm)
            continue;
        const char *tn = rkm->rkt ? rd_kafka_topic_name(rkm->rkt) : "";
        if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            for (size_t i = 0; i < j->n; i++) {
                wchan *w = &j->wch[i];
                if (w->partition != rkm->partition || strcmp(w->topic, tn))
                    continue;
                rmsg *m = calloc(1, sizeof(*m));
                if (!m)
                    continue;
                m->job = j;
                m->type = RM_EOF;
                m->chan = (int)i;
                m->partition = rkm->partition;
                m->offset = rkm->offset;
                post(j->rm, m);
            }
        } else if (rkm->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
            code = RESUME_POSITION_EXPIRED;
            snprintf(msg, sizeof(msg), "%s/%d: offset out of range", tn,
                     (int)rkm->partition);
        } else if (rkm->err) {
            /* transient (the consumer retries by itself); the deadline
             * bounds how long that may take */
        } else {
            for (size_t i = 0; i < j->n && code == RESUME_OK; i++) {
                wchan *w = &j->wch[i];
                if (w->partition != rkm->partition || rkm->offset < w->start ||
                    rkm->key_len != w->tlen ||
                    memcmp(rkm->key, w->token, w->tlen) != 0 ||
                    strcmp(w->topic, tn) != 0)
                    continue;
                if (++count > j->max_records) {
                    code = RESUME_TOO_FAR_BEHIND;
                    snprintf(msg, sizeof(msg),
                             "more than RESUME_MAX_RECORDS (%ld) records to "
                             "replay", j->max_records);
                    break;
                }
                rmsg *m = malloc(sizeof(*m) + rkm->len + 1);
                if (!m) {
                    code = RESUME_UNAVAILABLE;
                    snprintf(msg, sizeof(msg), "out of memory");
                    break;
                }
                memset(m, 0, sizeof(*m));
                m->job = j;
                m->type = RM_REC;
                m->chan = (int)i;
                m->partition = rkm->partition;
                m->offset = rkm->offset;
                m->ts = rd_kafka_message_timestamp(rkm, NULL);
                m->vlen = rkm->len;
                if (rkm->len)
                    memcpy(m->value, rkm->payload, rkm->len);
                post(j->rm, m);
            }
        }
        rd_kafka_message_destroy(rkm);
    }
out:
    for (size_t k = 0; k < ng; k++) {
        if (g[k].started)
            rd_kafka_consume_stop(g[k].rkt, g[k].partition);
    }
    /* topic handles are shared between groups of one topic */
    for (size_t k = 0; k < ng; k++) {
        int first = 1;
        for (size_t x = 0; x < k; x++)
            if (g[x].rkt == g[k].rkt)
                first = 0;
        if (first)
            rd_kafka_topic_destroy(g[k].rkt);
    }
    if (q)
        rd_kafka_queue_destroy(q);
    if (rk)
        rd_kafka_destroy(rk);
    free(g);
    free(gof);
    post_done(j, code, msg);
    return NULL;
}

/* ---- loop side -------------------------------------------------------- */

static void reply(shard_client *c, buf *b)
{
    client_send_text(c, b->data, b->len);
}

static void send_rerror(shard_resume *rm, shard_client *c,
                        enum resume_code code, const char *msg)
{
    rm->ctx->m.ws_reconnects_total[code]++;
    buf_reset(&rm->scratch);
    if (clientmsg_build_reconnect_error(&rm->scratch, resume_code_name(code),
                                        msg) == 0)
        reply(c, &rm->scratch);
}

static int chan_of(const resume_client *rc, const frame_record *r)
{
    for (size_t i = 0; i < rc->n; i++) {
        const rs_chan *x = &rc->ch[i];
        if (x->tlen == r->token_len &&
            x->nlen == r->token_len + 1 + r->category_len &&
            memcmp(x->name, r->token, r->token_len) == 0 &&
            memcmp(x->name + x->tlen + 1, r->category, r->category_len) == 0)
            return (int)i;
    }
    return -1;
}

static void job_stop(resume_job *j, enum resume_code fail)
{
    if (j->stopping)
        return;
    j->stopping = 1;
    if (fail != RESUME_OK && j->fail == RESUME_OK)
        j->fail = fail;
    pthread_mutex_lock(&j->rm->mu);
    j->stop = 1;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->rm->mu);
}

int shard_resume_filter(shard_client *c, const frame_record *r,
                        ws_chunk *frame)
{
    resume_client *rc = c->rs;
    int i = chan_of(rc, r);
    if (i < 0)
        return 0;
    rs_chan *x = &rc->ch[i];
    if (rc->job) {
        if (rc->nheld == rc->capheld) {
            size_t nc = rc->capheld ? rc->capheld * 2 : 16;
            const shard_settings *s = c->srv->ctx->set;
            if (rc->nheld >= (size_t)(s->resume_max_records + s->queue_msgs)) {
                /* more live than a client could take: give up */
                job_stop(rc->job, RESUME_TOO_FAR_BEHIND);
                return 1;
            }
            rs_held *nh = realloc(rc->held, nc * sizeof(*nh));
            if (!nh) {
                job_stop(rc->job, RESUME_UNAVAILABLE);
                return 1;
            }
            rc->held = nh;
            rc->capheld = nc;
        }
        ws_chunk_ref(frame);
        rc->held[rc->nheld++] = (rs_held){ frame, i, r->partition, r->offset };
        if (x->first_held < 0 && r->partition == x->partition)
            x->first_held = r->offset;
        return 1;
    }
    if (!x->floor)
        return 0;
    if (r->partition == x->partition && !resume_keep_live(r->offset, x->last)) {
        c->srv->ctx->m.ws_replay_duplicates_dropped_total++;
        return 1;
    }
    x->floor = 0;
    if (--rc->floors == 0) {
        c->rs = NULL;
        rs_free(rc);
    }
    return 0;
}

/* The replay of rc is over: ack or error, then the held live records. */
static void finish_client(shard_resume *rm, resume_client *rc,
                          enum resume_code code, const char *msg)
{
    shard_client *c = rc->c;
    shard_ctx *ctx = rm->ctx;
    rc->job = NULL;
    if (code == RESUME_OK) {
        ctx->m.ws_reconnects_total[RESUME_OK]++;
        clientmsg_chan *chs = calloc(rc->n ? rc->n : 1, sizeof(*chs));
        buf_reset(&rm->scratch);
        if (chs) {
            for (size_t i = 0; i < rc->n; i++) {
                chs[i].s = rc->ch[i].name;
                chs[i].len = rc->ch[i].nlen;
            }
            if (clientmsg_build_reconnect_ack(&rm->scratch, rc->replayed, chs,
                                              rc->n,
                                              subs_conn_count(&c->subs)) == 0)
                reply(c, &rm->scratch);
            free(chs);
        }
    } else {
        send_rerror(rm, c, code, msg);
    }
    /* After an error the client's own position may be bogus (beyond the
     * end, another partition): dedup only against what was replayed. */
    for (size_t i = 0; i < rc->n; i++)
        if (code != RESUME_OK && !rc->ch[i].replayed_any)
            rc->ch[i].partition = -1;
    for (size_t k = 0; k < rc->nheld; k++) {
        rs_held *h = &rc->held[k];
        rs_chan *x = &rc->ch[h->chan];
        if (h->partition != x->partition || resume_keep_live(h->offset, x->last)) {
            if (client_push(c, h->frame) == 0)
                ctx->m.ws_messages_sent_total++;
        } else {
            ctx->m.ws_replay_duplicates_dropped_total++;
        }
        ws_chunk_unref(h->frame);
    }
    rc->nheld = 0;
    free(rc->held);
    rc->held = NULL;
    rc->capheld = 0;
    rc->floors = 0;
    for (size_t i = 0; i < rc->n; i++) {
        rc->ch[i].floor = rc->ch[i].partition >= 0;
        rc->floors += rc->ch[i].floor;
    }
    if (rc->floors == 0) {
        c->rs = NULL;
        rs_free(rc);
    }
}

static void job_done(shard_resume *rm, resume_job *j, enum resume_code code,
                     const char *msg)
{
    if (j->fail != RESUME_OK) {
        code = j->fail;
        msg = code == RESUME_TOO_FAR_BEHIND
                  ? "replay did not catch up with the live stream within "
                    "RESUME_TIMEOUT_MS / RESUME_MAX_RECORDS"
                  : "replay failed";
    }
    if (code != RESUME_OK)
        log_kv(LOG_INFO, "reconnect replay failed", "s:code",
               resume_code_name(code), "s:reason", msg, NULL);
    if (j->rc)
        finish_client(rm, j->rc, code, msg);
    else if (code == RESUME_OK)
        rm->ctx->m.ws_reconnects_total[RESUME_OK]++;
    else
        rm->ctx->m.ws_reconnects_total[code]++;
    if (j->started)
        pthread_join(j->th, NULL);
    rm->ctx->m.ws_reconnect_seconds_total +=
        (double)(clock_mono_ms() - j->t0) / 1000.0;
    if (j->prev)
        j->prev->next = j->next;
    else
        rm->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    rm->active--;
    job_free(j);
}

static void check_job(shard_resume *rm, resume_job *j, uint64_t now)
{
    resume_client *rc = j->rc;
    if (j->stopping)
        return;
    if (!rc) {
        job_stop(j, RESUME_OK);
        return;
    }
    if (now >= j->deadline_ms) {
        job_stop(j, RESUME_TOO_FAR_BEHIND);
        return;
    }
    int all = 1;
    for (size_t i = 0; i < rc->n; i++) {
        rs_chan *x = &rc->ch[i];
        if (!x->routed_ms &&
            shard_registry_token_routed(rm->ctx->reg, x->name, x->tlen))
            x->routed_ms = now;
        int64_t rf = x->routed_ms ? (int64_t)(now - x->routed_ms) : -1;
        if (!resume_seam_ok(x->pos, x->at_eof, x->first_held, x->pre_routed,
                            rf)) {
            all = 0;
            break;
        }
    }
    if (all)
        job_stop(j, RESUME_OK);
}

static void on_check(evutil_socket_t fd, short what, void *arg)
{
    shard_resume *rm = arg;
    uint64_t now = clock_mono_ms();
    for (resume_job *j = rm->jobs; j; j = j->next)
        check_job(rm, j, now);
    if (rm->jobs) {
        struct timeval tv = { 0, CHECK_MS * 1000 };
        event_add(rm->check_ev, &tv);
    }
}

static void handle_rec(shard_resume *rm, resume_job *j, rmsg *m)
{
    resume_client *rc = j->rc;
    if (!rc || m->chan < 0 || (size_t)m->chan >= rc->n)
        return;
    rs_chan *x = &rc->ch[m->chan];
    shard_client *c = rc->c;
    x->pos = m->offset + 1;
    x->at_eof = 0;
    if (m->offset <= x->last)
        return;
    frame_record r;
    memset(&r, 0, sizeof(r));
    r.token = x->name;
    r.token_len = x->tlen;
    r.category = x->name + x->tlen + 1;
    r.category_len = x->nlen - x->tlen - 1;
    r.partition = m->partition;
    r.offset = m->offset;
    r.timestamp_ms = m->ts;
    r.value = m->value;
    r.value_len = m->vlen;
    ws_chunk *ch = envelope_frame(&rm->scratch, &r,
                                  (enum envelope_types)rm->ctx->set->envelope_types,
                                  rc->odinws ? ENVELOPE_F_ODINWS
                                             : ENVELOPE_F_REPLAY);
    if (!ch) {
        job_stop(j, RESUME_UNAVAILABLE);
        return;
    }
    if (client_push(c, ch) == 0) {
        rm->ctx->m.ws_replayed_messages_total++;
        rc->replayed++;
        x->last = m->offset;
        x->replayed_any = 1;
    } else {
        job_stop(j, RESUME_TOO_FAR_BEHIND);   /* the client is being closed */
    }
    ws_chunk_unref(ch);
}

static void on_notify(evutil_socket_t fd, short what, void *arg)
{
    shard_resume *rm = arg;
    uint64_t v;
    ssize_t r = read(rm->efd, &v, sizeof(v));
    (void)r;
    pthread_mutex_lock(&rm->mu);
    rmsg *m = rm->head;
    rm->head = rm->tail = NULL;
    pthread_mutex_unlock(&rm->mu);
    uint64_t now = clock_mono_ms();
    while (m) {
        rmsg *next = m->next;
        resume_job *j = m->job;
        switch (m->type) {
        case RM_REC:
            handle_rec(rm, j, m);
            pthread_mutex_lock(&rm->mu);
            j->pending -= m->vlen + sizeof(*m);
            pthread_cond_signal(&j->cv);
            pthread_mutex_unlock(&rm->mu);
            break;
        case RM_EOF:
            if (j->rc && m->chan >= 0 && (size_t)m->chan < j->rc->n) {
                rs_chan *x = &j->rc->ch[m->chan];
                x->partition = m->partition;
                if (m->offset >= 0) {
                    x->pos = m->offset;
                    x->at_eof = 1;
                }
                /* live records held before the partition was known */
                if (x->first_held < 0)
                    for (size_t k = 0; k < j->rc->nheld; k++)
                        if (j->rc->held[k].chan == m->chan &&
                            j->rc->held[k].partition == x->partition) {
                            x->first_held = j->rc->held[k].offset;
                            break;
                        }
            }
            break;
        case RM_DONE:
            job_done(rm, j, m->code, m->value);
            j = NULL;
            break;
        }
        if (j)
            check_job(rm, j, now);
        free(m);
        m = next;
    }
}

void shard_resume_start(shard_resume *rm, shard_client *c,
                        const resume_req_chan *ch, size_t n, int odinws)
{
    shard_ctx *ctx = rm->ctx;
    const shard_settings *s = ctx->set;
    if (c->rs && ((resume_client *)c->rs)->job) {
        send_rerror(rm, c, RESUME_BUSY, "a reconnect is already replaying");
        return;
    }
    if (n == 0) {
        /* odin-ws form without a matching subscription: nothing to replay */
        ctx->m.ws_reconnects_total[RESUME_OK]++;
        buf_reset(&rm->scratch);
        if (clientmsg_build_reconnect_ack(&rm->scratch, 0, NULL, 0,
                                          subs_conn_count(&c->subs)) == 0)
            reply(c, &rm->scratch);
        return;
    }
    if (!s->kafka_brokers || !*s->kafka_brokers) {
        send_rerror(rm, c, RESUME_UNAVAILABLE,
                    "this shard has no KAFKA_BROKERS; subscribed live only");
        return;
    }
    if (rm->active >= s->resume_max_concurrent) {
        send_rerror(rm, c, RESUME_BUSY,
                    "too many reconnects replaying on this shard; subscribed "
                    "live only");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        size_t tl, cl;
        const char *cat;
        topics_channel_split(ch[i].name, ch[i].len, &tl, &cat, &cl);
        if (!topics_by_category(cat, cl)) {
            char m[160];
            snprintf(m, sizeof(m), "no Kafka topic for category \"%.*s\"",
                     (int)(cl > 32 ? 32 : cl), cat);
            send_rerror(rm, c, RESUME_INVALID_POSITION, m);
            return;
        }
    }
    /* a previous replay's floors are replaced */
    if (c->rs) {
        rs_free(c->rs);
        c->rs = NULL;
    }
    resume_client *rc = calloc(1, sizeof(*rc));
    resume_job *j = calloc(1, sizeof(*j));
    if (!rc || !j || pthread_cond_init(&j->cv, NULL) != 0) {
        free(rc);
        free(j);
        send_rerror(rm, c, RESUME_UNAVAILABLE, "out of memory");
        return;
    }
    rc->c = c;
    rc->odinws = odinws;
    rc->ch = calloc(n ? n : 1, sizeof(*rc->ch));
    j->wch = calloc(n ? n : 1, sizeof(*j->wch));
    j->n = n;
    rc->n = n;
    int ok = rc->ch && j->wch;
    for (size_t i = 0; ok && i < n; i++) {
        size_t tl, cl;
        const char *cat;
        topics_channel_split(ch[i].name, ch[i].len, &tl, &cat, &cl);
        rs_chan *x = &rc->ch[i];
        x->name = malloc(ch[i].len + 1);
        j->wch[i].token = malloc(tl + 1);
        if (!x->name || !j->wch[i].token) {
            ok = 0;
            break;
        }
        memcpy(x->name, ch[i].name, ch[i].len);
        x->name[ch[i].len] = 0;
        x->nlen = ch[i].len;
        x->tlen = tl;
        x->partition = ch[i].partition;
        x->last = ch[i].seq;
        x->pos = -1;
        x->first_held = -1;
        x->pre_routed = shard_registry_token_routed(ctx->reg, x->name, tl);
        memcpy(j->wch[i].token, ch[i].name, tl);
        j->wch[i].token[tl] = 0;
        j->wch[i].tlen = tl;
        j->wch[i].topic = topics_by_category(cat, cl)->topic;
        j->wch[i].partition = ch[i].partition;
        j->wch[i].start = ch[i].seq + 1;
    }
    if (!ok) {
        rs_free(rc);
        job_free(j);
        send_rerror(rm, c, RESUME_UNAVAILABLE, "out of memory");
        return;
    }
    j->rm = rm;
    j->rc = rc;
    j->max_records = s->resume_max_records;
    j->t0 = clock_mono_ms();
    j->deadline_ms = j->t0 + (uint64_t)s->resume_timeout_ms;
    rc->job = j;
    c->rs = rc;
    j->next = rm->jobs;
    if (rm->jobs)
        rm->jobs->prev = j;
    rm->jobs = j;
    rm->active++;
    if (pthread_create(&j->th, NULL, worker, j) != 0) {
        /* report through the normal path so the client gets its answer */
        post_done(j, RESUME_UNAVAILABLE, "cannot start a replay thread");
    } else {
        j->started = 1;
    }
    struct timeval tv = { 0, CHECK_MS * 1000 };
    if (!event_pending(rm->check_ev, EV_TIMEOUT, NULL))
        event_add(rm->check_ev, &tv);
}

void shard_resume_client_gone(shard_client *c)
{
    resume_client *rc = c->rs;
    if (!rc)
        return;
    c->rs = NULL;
    if (rc->job) {
        rc->job->rc = NULL;
        job_stop(rc->job, RESUME_OK);
    }
    rs_free(rc);
}

long shard_resume_active(const shard_resume *rm)
{
    return rm ? rm->active : 0;
}

shard_resume *shard_resume_new(shard_ctx *ctx)
{
    shard_resume *rm = calloc(1, sizeof(*rm));
    if (!rm)
        return NULL;
    rm->ctx = ctx;
    rm->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&rm->mu, NULL);
    if (rm->efd < 0)
        goto err;
    rm->ev = event_new(ctx->base, rm->efd, EV_READ | EV_PERSIST, on_notify, rm);
    rm->check_ev = evtimer_new(ctx->base, on_check, rm);
    if (!rm->ev || !rm->check_ev || event_add(rm->ev, NULL) != 0)
        goto err;
    return rm;
err:
    log_kv(LOG_ERROR, "cannot set up reconnect replays", "s:error",
           strerror(errno), NULL);
    shard_resume_free(rm);
    return NULL;
}

void shard_resume_free(shard_resume *rm)
{
    if (!rm)
        return;
    /* stop every worker, then drain messages until each posted DONE */
    for (resume_job *j = rm->jobs; j; j = j->next) {
        if (j->rc) {
            j->rc->c->rs = NULL;
            j->rc->job = NULL;
            rs_free(j->rc);
            j->rc = NULL;
        }
        job_stop(j, RESUME_OK);
    }
    while (rm->jobs) {
        pthread_mutex_lock(&rm->mu);
        rmsg *m = rm->head;
        rm->head = rm->tail = NULL;
        pthread_mutex_unlock(&rm->mu);
        if (!m) {
            usleep(1000);   /* shutdown only: workers exit within ~50 ms */
            continue;
        }
        while (m) {
            rmsg *next = m->next;
            if (m->type == RM_DONE)
                job_done(rm, m->job, m->code, m->value);
            else if (m->type == RM_REC) {
                pthread_mutex_lock(&rm->mu);
                m->job->pending -= m->vlen + sizeof(*m);
                pthread_cond_signal(&m->job->cv);
                pthread_mutex_unlock(&rm->mu);
            }
            free(m);
            m = next;
        }
    }
    if (rm->ev)
        event_free(rm->ev);
    if (rm->check_ev)
        event_free(rm->check_ev);
    if (rm->efd >= 0)
        close(rm->efd);
    pthread_mutex_destroy(&rm->mu);
    buf_free(&rm->scratch);
    free(rm);
}
