#include "shard/resume.h"
#include "shard/clientmsg.h"
#include "shard/envelope.h"
#include "shard/map.h"
#include "shard/registry.h"
#include "common/addr.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/record.h"
#include "common/tbucket.h"
#include "common/topics.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <event2/event.h>
#include <librdkafka/rdkafka.h>

#define CHECK_MS 20
#define NOTIFY_BATCH 4096      /* reader messages handled per loop pass */
#define META_MAX_AGE_MS 30000  /* topic partition counts are re-read after */
#define KAFKA_CALL_MS 5000     /* longest one metadata / watermark call */
#define WM_MAX_AGE_MS 1000     /* admission's low watermark is re-read after */

_Static_assert(RESUME_CODE_N == SM_RESUME_N,
               "metrics.h SM_RESUME_N must match enum resume_code");
_Static_assert(RECORD_INVALID_N == SM_REPLAY_SKIP_N,
               "metrics.h SM_REPLAY_SKIP_N must match enum record_invalid");

const char *resume_code_name(enum resume_code c)
{
    switch (c) {
    case RESUME_OK: return "OK";
    case RESUME_TOO_FAR_BEHIND: return "TOO_FAR_BEHIND";
    case RESUME_POSITION_EXPIRED: return "POSITION_EXPIRED";
    case RESUME_INVALID_POSITION: return "INVALID_POSITION";
    case RESUME_UNAVAILABLE: return "RESUME_UNAVAILABLE";
    case RESUME_BUSY: return "RESUME_BUSY";
    case RESUME_RATE_LIMITED: return "RESUME_RATE_LIMITED";
    case RESUME_CODE_N: break;
    }
    return "INTERNAL_ERROR";
}

/* ---- pure parts ------------------------------------------------------- */

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

enum resume_code resume_admit(int64_t lo, int64_t hi, int64_t start,
                              long max_offsets)
{
    if (start < lo)
        return RESUME_POSITION_EXPIRED;
    if (start > hi)
        return RESUME_INVALID_POSITION;
    if (hi - start > (int64_t)max_offsets)
        return RESUME_TOO_FAR_BEHIND;
    return RESUME_OK;
}

/* ---- the schedule of one partition (pure) ---------------------------- */

static uint32_t tok_hash(const char *t, size_t l)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < l; i++)
        h = (h ^ (uint8_t)t[i]) * 16777619u;
    return h;
}

/* the slot of token t (used or the free one where it would go) */
static resume_sched_tok *tok_slot(resume_sched_tok *tab, size_t cap,
                                  const char *t, size_t l)
{
    size_t i = tok_hash(t, l) & (cap - 1);
    for (;;) {
        resume_sched_tok *e = &tab[i];
        if (!e->used || (e->tlen == l && memcmp(e->token, t, l) == 0))
            return e;
        i = (i + 1) & (cap - 1);
    }
}

/* count of attached requests of token t += d (the token gets a slot);
 * -1 on ENOMEM.  Never allocates for a token that has a slot. */
static int tok_add(resume_sched *s, const char *t, size_t l, int d)
{
    resume_sched_tok *e = s->ntok_cap ? tok_slot(s->tok, s->ntok_cap, t, l)
                                      : NULL;
    if (!e || !e->used) {
        if ((s->ntok + 1) * 2 > s->ntok_cap) {
            size_t nc = s->ntok_cap ? s->ntok_cap * 2 : 64;
            resume_sched_tok *nt = calloc(nc, sizeof(*nt));
            if (!nt)
                return -1;
            for (size_t i = 0; i < s->ntok_cap; i++)
                if (s->tok[i].used)
                    *tok_slot(nt, nc, s->tok[i].token, s->tok[i].tlen) =
                        s->tok[i];
            free(s->tok);
            s->tok = nt;
            s->ntok_cap = nc;
        }
        e = tok_slot(s->tok, s->ntok_cap, t, l);
        e->used = 1;
        e->tlen = (uint8_t)l;
        memcpy(e->token, t, l);
        e->count = 0;
        s->ntok++;
    }
    e->count = (uint32_t)((int64_t)e->count + d);
    return 0;
}

static int tok_wanted(const resume_sched *s, const char *t, size_t l)
{
    if (!s->ntok_cap || l > 64)
        return 0;
    const resume_sched_tok *e = tok_slot(s->tok, s->ntok_cap, t, l);
    return e->used && e->count > 0;
}

static void hist_drop_all(resume_hist *h, int64_t at)
{
    while (h->head) {
        resume_hrec *r = h->head;
        h->head = r->next;
        free(r);
    }
    h->tail = NULL;
    h->bytes = h->n = 0;
    h->floor = h->top = at;
}

static size_t hist_drop_head(resume_hist *h)
{
    resume_hrec *r = h->head;
    if (!r)
        return 0;
    h->head = r->next;
    if (!h->head)
        h->tail = NULL;
    h->floor = r->offset + 1;
    size_t b = r->mem;
    h->bytes -= b;
    h->n--;
    free(r);
    return b;
}

static size_t hist_append(resume_hist *h, int64_t offset, int64_t ts, int skip,
                          const char *key, size_t klen, const char *val,
                          size_t vlen)
{
    if (skip >= 0)
        vlen = 0;
    size_t mem = sizeof(resume_hrec) + klen + vlen;
    resume_hrec *r = malloc(mem);
    if (!r)
        return 0;
    r->next = NULL;
    r->offset = offset;
    r->ts = ts;
    r->skip = skip;
    r->klen = (uint32_t)klen;
    r->vlen = (uint32_t)vlen;
    r->mem = mem;
    if (klen)
        memcpy(r->data, key, klen);
    if (vlen)
        memcpy(r->data + klen, val, vlen);
    if (h->tail)
        h->tail->next = r;
    else
        h->head = r;
    h->tail = r;
    h->top = offset + 1;
    h->bytes += mem;
    h->n++;
    return mem;
}

/* the token has its slot since resume_sched_add: no allocation here */
static void attach_req(resume_sched *s, resume_sched_req *q, int how)
{
    if (!q->attached)
        (void)tok_add(s, q->token, q->tlen, 1);
    q->attached = how;
}

int resume_sched_add(resume_sched *s, uint64_t id, int64_t start,
                     const char *token, size_t tlen, resume_sched_step *st)
{
    if (tlen > sizeof(s->r[0].token))
        return -1;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 8;
        resume_sched_req *nr = realloc(s->r, nc * sizeof(*nr));
        if (!nr)
            return -1;
        s->r = nr;
        s->cap = nc;
    }
    if (tok_add(s, token, tlen, 0) != 0)
        return -1;
    resume_sched_req *q = &s->r[s->n++];
    memset(q, 0, sizeof(*q));
    q->id = id;
    q->start = start;
    q->tlen = (uint8_t)tlen;
    memcpy(q->token, token, tlen);
    st->from = NULL;
    st->attach = start;
    st->restart = -1;
    resume_hist *h = &s->h;
    if (!s->running) {
        s->running = 1;
        s->at_eof = 0;
        s->bf = 0;
        hist_drop_all(&s->b, start);
        if (h->n && start >= h->floor && start <= h->top) {
            /* what it needs is held: served now, reading goes on at top */
            st->act = RESUME_SCHED_HIST;
            st->from = h;
            st->attach = st->restart = s->pos = h->top;
        } else if (h->n && start < h->floor) {
            st->act = RESUME_SCHED_BACKFILL;
            s->bf = 1;
            st->restart = s->pos = start;
        } else {
            hist_drop_all(h, start);
            st->act = RESUME_SCHED_START;
            st->restart = s->pos = start;
        }
        attach_req(s, q, 1);
        return 0;
    }
    if (start >= s->pos && (!s->bf || start < h->floor)) {
        st->act = RESUME_SCHED_JOIN;
    } else if (start >= h->floor) {
        st->act = RESUME_SCHED_HIST;
        st->from = h;
        st->attach = h->top;
    } else if (!s->bf) {
        st->act = RESUME_SCHED_BACKFILL;
        s->bf = 1;
        s->at_eof = 0;
        hist_drop_all(&s->b, start);
        st->restart = s->pos = start;
    } else if (start >= s->b.floor) {
        /* backfilling past it: what b holds now, then the rest of b */
        st->act = RESUME_SCHED_HIST;
        st->from = &s->b;
        st->attach = s->pos;
    } else {
        st->act = RESUME_SCHED_WAIT;
        return 0;
    }
    attach_req(s, q, 1);
    return 0;
}

int resume_sched_record(resume_sched *s, int64_t offset, int64_t ts, int skip,
                        const char *key, size_t klen, const char *val,
                        size_t vlen, size_t *added)
{
    *added = 0;
    if (s->bf && offset >= s->h.floor)
        return RESUME_REC_SEAM;
    resume_hist *l = s->bf ? &s->b : &s->h;
    if (offset >= s->pos) {
        s->pos = offset + 1;
        s->at_eof = 0;
    }
    if (offset >= l->top) {
        *added = hist_append(l, offset, ts, skip, key, klen, val, vlen);
        if (!*added) {
            /* no memory: what is held stops here; start again after it */
            hist_drop_all(l, offset + 1);
        }
    }
    return tok_wanted(s, key, klen) ? RESUME_REC_POST : RESUME_REC_NONE;
}

int64_t resume_sched_seam(resume_sched *s, int64_t at, int64_t *serve_from)
{
    resume_hist *h = &s->h, *b = &s->b;
    int64_t old = h->floor;
    *serve_from = old;
    /* b covers [b.floor, pos) and nothing exists in [pos, old) */
    if (b->head) {
        b->tail->next = h->head;
        if (!h->tail)
            h->tail = b->tail;
        h->head = b->head;
        h->bytes += b->bytes;
        h->n += b->n;
        b->head = b->tail = NULL;
        b->bytes = b->n = 0;
    }
    if (b->floor < h->floor)
        h->floor = b->floor;
    if (!h->n)
        h->top = h->top > at ? h->top : at;
    for (size_t i = 0; i < s->n; i++)
        if (s->r[i].attached && s->r[i].start < old)
            s->r[i].serve = 1;
    s->bf = 0;
    s->at_eof = 0;
    int64_t low = -1;
    for (size_t i = 0; i < s->n; i++)
        if (!s->r[i].attached && (low < 0 || s->r[i].start < low))
            low = s->r[i].start;
    if (low >= 0) {
        for (size_t i = 0; i < s->n; i++)
            if (!s->r[i].attached)
                attach_req(s, &s->r[i], 2);
        s->bf = 1;
        hist_drop_all(b, low);
        s->pos = low;
        return low;
    }
    if (at >= h->top) {
        s->pos = h->top;
        return -1;
    }
    s->pos = h->top;
    return h->top;
}

void resume_sched_eof(resume_sched *s, int64_t next)
{
    s->pos = next;
    s->at_eof = 1;
    if (!s->bf) {
        if (s->h.top < next) {
            if (!s->h.n)
                s->h.floor = next;
            s->h.top = next;
        }
    }
}

int resume_sched_remove(resume_sched *s, uint64_t id)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->r[i].id == id) {
            if (s->r[i].attached)
                tok_add(s, s->r[i].token, s->r[i].tlen, -1);
            s->r[i] = s->r[--s->n];
            if (s->n == 0) {
                s->running = 0;
                s->at_eof = 0;
                if (s->bf)
                    hist_drop_all(&s->b, s->pos);
                s->bf = 0;
                /* the index starts again empty */
                free(s->tok);
                s->tok = NULL;
                s->ntok = s->ntok_cap = 0;
            }
            return 0;
        }
    return -1;
}

size_t resume_sched_evict(resume_sched *s)
{
    if (s->b.head) {
        size_t n = hist_drop_head(&s->b);
        return n;
    }
    return hist_drop_head(&s->h);
}

size_t resume_sched_held(const resume_sched *s)
{
    return s->h.bytes + s->b.bytes;
}

void resume_sched_clear(resume_sched *s)
{
    hist_drop_all(&s->h, 0);
    hist_drop_all(&s->b, 0);
    free(s->r);
    free(s->tok);
    memset(s, 0, sizeof(*s));
}

/* ---- messages between the loop and the reader --------------------------- */

/* loop -> reader */
enum cmsg_type { CM_REQUEST, CM_CANCEL };

typedef struct cmsg {
    struct cmsg *next;
    enum cmsg_type type;
    uint64_t id;
    const topic_info *topic;
    int32_t partition;       /* -1: by key hash */
    int64_t start;
    uint8_t tlen;
    char token[64];
    void *part;              /* reader: its tpart once resolved */
} cmsg;

/* reader -> loop */
enum rmsg_type { RM_REC, RM_SKIP, RM_EOF, RM_ATTACH, RM_REFUSE, RM_PASS };

typedef struct rmsg {
    struct rmsg *next;
    enum rmsg_type type;
    const topic_info *topic;
    int32_t partition;
    uint64_t id;             /* ATTACH, REFUSE; REC/SKIP from the history:
                              * the one request it is for (else 0) */
    int64_t offset;          /* REC/SKIP: the record; EOF: next; ATTACH: where */
    int64_t ts;              /* REC: timestamp; ATTACH: the end it needs */
    int flag;                /* ATTACH: at eof; REFUSE: code; SKIP: reason;
                              * PASS: requests served */
    size_t mem;              /* bytes counted in sh->mem_posted */
    size_t klen, vlen;
    char data[];             /* REC: key, value; REFUSE: message */
} rmsg;

/* State shared by the loop and the reader.  Separate from shard_resume so a
 * reader that does not stop within RESUME_JOIN_MS can be left running on
 * it (leaked at exit) while the rest is freed. */
typedef struct rshared {
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* reader: control input or memory freed */
    cmsg *ctl_head, *ctl_tail;   /* under mu */
    rmsg *out_head, *out_tail;   /* under mu */
    int stop;                    /* under mu */
    int exited;                  /* under mu */
    int efd;
    _Atomic long mem_posted;     /* bytes of rmsgs not yet handled */
    _Atomic long mem_held;       /* bytes of live frames held for clients */
    _Atomic long partitions;     /* partitions being read */
    _Atomic uint64_t kafka_bytes;
    _Atomic long mem_hist;       /* bytes of the reader's histories */
    long mem_limit;
    long max_offsets;
    long max_record_bytes;
    char *brokers, *options, *shard_id;
} rshared;

static void rshared_free(rshared *sh)
{
    if (!sh)
        return;
    while (sh->ctl_head) {
        cmsg *m = sh->ctl_head;
        sh->ctl_head = m->next;
        free(m);
    }
    while (sh->out_head) {
        rmsg *m = sh->out_head;
        sh->out_head = m->next;
        free(m);
    }
    if (sh->efd >= 0)
        close(sh->efd);
    pthread_cond_destroy(&sh->cv);
    pthread_mutex_destroy(&sh->mu);
    free(sh->brokers);
    free(sh->options);
    free(sh->shard_id);
    free(sh);
}

/* ---- the reader thread ------------------------------------------------- */

typedef struct ttopic {
    const topic_info *ti;
    rd_kafka_topic_t *rkt;
    int32_t count;           /* partitions, 0 unknown */
    uint64_t count_ms;
} ttopic;

typedef struct tpart {
    ttopic *t;
    int32_t partition;
    resume_sched s;
    int started;             /* consume_start_queue done */
    int wm_ok;               /* lo/hi read ... */
    uint64_t wm_ms;          /* ... at (monotonic ms) */
    uint64_t ends_batch;     /* control batch `need` was read for */
    int ends_ok;
    int64_t need;            /* the end read after the batch's requests */
    int64_t lo, hi;
    int pass_open;
    int pass_reqs;
    long hist_mem;           /* bytes of s's history counted in mem_hist */
    uint64_t idle_ms;        /* stopped at (history kept since) */
    int64_t last_read;       /* offset + 1 of the last record read since
                              * the (re)start, -1 none */
} tpart;

typedef struct reader {
    rshared *sh;
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    ttopic *topics;
    size_t ntopics;
    tpart **parts;
    size_t nparts, capparts;
    record_rules rules;
    uint64_t batch;          /* control batches taken */
    int ends_warned;
    uint64_t hist_evicted;
    uint64_t hist_served;
    uint64_t ends_cached;    /* ends seen from the cached watermark */
} reader;

static void post(rshared *sh, rmsg *m)
{
    m->next = NULL;
    pthread_mutex_lock(&sh->mu);
    int wake = sh->out_head == NULL;
    if (sh->out_tail)
        sh->out_tail->next = m;
    else
        sh->out_head = m;
    sh->out_tail = m;
    pthread_mutex_unlock(&sh->mu);
    if (m->mem)
        atomic_fetch_add(&sh->mem_posted, (long)m->mem);
    if (wake) {
        uint64_t one = 1;
        ssize_t w = write(sh->efd, &one, sizeof(one));
        (void)w;
    }
}

/* A control message the loop waits for (attach, refuse) must not be lost:
 * allocation failure of a few bytes aborts as elsewhere in the shard. */
static rmsg *rmsg_new(enum rmsg_type type, size_t extra)
{
    rmsg *m = calloc(1, sizeof(*m) + extra + 1);
    if (!m)
        abort();
    m->type = type;
    return m;
}

static void post_refuse(reader *rd, uint64_t id, enum resume_code code,
                        const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void post_refuse(reader *rd, uint64_t id, enum resume_code code,
                        const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t l = strlen(msg);
    rmsg *m = rmsg_new(RM_REFUSE, l);
    m->id = id;
    m->flag = (int)code;
    memcpy(m->data, msg, l + 1);
    post(rd->sh, m);
}

/* Request id attached at `at` (it has every record of its token below
 * it); `need`: the high watermark read after the request was made.  At or
 * past it, `at` is an end the request can rely on. */
static void post_attach(reader *rd, tpart *p, uint64_t id, int64_t at,
                        int64_t need)
{
    rmsg *m = rmsg_new(RM_ATTACH, 0);
    m->id = id;
    m->topic = p->t->ti;
    m->partition = p->partition;
    m->offset = at;
    m->ts = need;
    m->flag = at >= need;
    post(rd->sh, m);
    if (!p->pass_open) {
        p->pass_open = 1;
        p->pass_reqs = 0;
    }
    p->pass_reqs++;
}

static int set_conf(rd_kafka_conf_t *conf, const char *k, const char *v,
                    char *err, size_t errlen)
{
    return rd_kafka_conf_set(conf, k, v, err, errlen) == RD_KAFKA_CONF_OK
               ? 0 : -1;
}

static rd_kafka_t *reader_kafka(const rshared *sh, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char cid[200];
    snprintf(cid, sizeof(cid), "odin-shard-resume-%s", sh->shard_id);
    if (set_conf(conf, "bootstrap.servers", sh->brokers, err, errlen) ||
        set_conf(conf, "client.id", cid, err, errlen) ||
        set_conf(conf, "enable.partition.eof", "true", err, errlen) ||
        set_conf(conf, "fetch.wait.max.ms", "20", err, errlen) ||
        set_conf(conf, "queued.max.messages.kbytes", "1024", err, errlen) ||
        set_conf(conf, "log.connection.close", "false", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    if (sh->options && *sh->options) {
        char **items = NULL;
        size_t ni = 0;
        if (addr_split_list(sh->options, &items, &ni) != 0) {
            rd_kafka_conf_destroy(conf);
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        for (size_t i = 0; i < ni; i++) {
            char *eq = strchr(items[i], '=');
            if (!eq) {
                snprintf(err, errlen, "KAFKA_OPTIONS item '%s' lacks '='",
                         items[i]);
                addr_list_free(items, ni);
                rd_kafka_conf_destroy(conf);
                return NULL;
            }
            *eq = 0;
            if (set_conf(conf, items[i], eq + 1, err, errlen)) {
                addr_list_free(items, ni);
                rd_kafka_conf_destroy(conf);
                return NULL;
            }
        }
        addr_list_free(items, ni);
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
    if (!rk)
        rd_kafka_conf_destroy(conf);
    return rk;
}

static ttopic *reader_topic(reader *rd, const topic_info *ti)
{
    for (size_t i = 0; i < rd->ntopics; i++)
        if (rd->topics[i].ti == ti)
            return &rd->topics[i];
    ttopic *nt = realloc(rd->topics, (rd->ntopics + 1) * sizeof(*nt));
    if (!nt)
        return NULL;
    rd->topics = nt;
    ttopic *t = &rd->topics[rd->ntopics];
    memset(t, 0, sizeof(*t));
    t->ti = ti;
    t->rkt = rd_kafka_topic_new(rd->rk, ti->topic, NULL);
    if (!t->rkt)
        return NULL;
    rd->ntopics++;
    return t;
}

static tpart *reader_part(reader *rd, ttopic *t, int32_t partition, int create)
{
    for (size_t i = 0; i < rd->nparts; i++)
        if (rd->parts[i]->t == t && rd->parts[i]->partition == partition)
            return rd->parts[i];
    if (!create)
        return NULL;
    if (rd->nparts == rd->capparts) {
        size_t nc = rd->capparts ? rd->capparts * 2 : 8;
        tpart **np = realloc(rd->parts, nc * sizeof(*np));
        if (!np)
            return NULL;
        rd->parts = np;
        rd->capparts = nc;
    }
    tpart *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->t = t;
    p->partition = partition;
    rd->parts[rd->nparts++] = p;
    return p;
}

static tpart *part_of_msg(reader *rd, const rd_kafka_message_t *rkm)
{
    for (size_t i = 0; i < rd->nparts; i++)
        if (rd->parts[i]->t->rkt == rkm->rkt &&
            rd->parts[i]->partition == rkm->partition)
            return rd->parts[i];
    return NULL;
}

/* Close p's open pass (ws_replay_passes_total, ws_replay_pass_requests). */
static void pass_close(reader *rd, tpart *p)
{
    if (p->pass_open) {
        rmsg *m = rmsg_new(RM_PASS, 0);
        m->flag = p->pass_reqs;
        post(rd->sh, m);
    }
    p->pass_open = 0;
}

/* Stop reading p (nobody needs it).  Its history is kept (until memory is
 * needed or RESUME_HISTORY_IDLE_MS passes). */
static void part_stop(reader *rd, tpart *p)
{
    if (p->started) {
        rd_kafka_consume_stop(p->t->rkt, p->partition);
        p->started = 0;
        atomic_fetch_sub(&rd->sh->partitions, 1);
    }
    pass_close(rd, p);
    p->wm_ok = 0;
    p->idle_ms = clock_mono_ms();
}

/* (Re)start reading p at `offset`.  A restart (consume_stop + start) rather
 * than a seek: it drops what was fetched for the old position and makes
 * librdkafka report the end of the partition again. */
static int part_restart(reader *rd, tpart *p, int64_t offset, int new_pass)
{
    if (new_pass)
        pass_close(rd, p);
    if (p->started) {
        rd_kafka_consume_stop(p->t->rkt, p->partition);
        p->started = 0;
        atomic_fetch_sub(&rd->sh->partitions, 1);
    }
    p->last_read = -1;
    if (rd_kafka_consume_start_queue(p->t->rkt, p->partition, offset,
                                     rd->q) != 0)
        return -1;
    p->started = 1;
    atomic_fetch_add(&rd->sh->partitions, 1);
    return 0;
}

static int part_start(reader *rd, tpart *p, int64_t offset)
{
    return part_restart(rd, p, offset, 1);
}

static void hist_account(reader *rd, tpart *p)
{
    long now = (long)resume_sched_held(&p->s);
    atomic_fetch_add(&rd->sh->mem_hist, now - p->hist_mem);
    p->hist_mem = now;
}

/* Every request of p refused (the partition cannot be read); its history
 * is dropped. */
static void part_fail(reader *rd, tpart *p, enum resume_code code,
                      const char *why)
{
    for (size_t i = 0; i < p->s.n; i++)
        post_refuse(rd, p->s.r[i].id, code, "%s/%d: %s", p->t->ti->topic,
                    (int)p->partition, why);
    part_stop(rd, p);
    resume_sched_clear(&p->s);
    hist_account(rd, p);
}

/* Keep the histories within RESUME_MEMORY_BYTES with what is posted and
 * held: the oldest records of the partition holding the most go first. */
static void hist_trim(reader *rd)
{
    rshared *sh = rd->sh;
    while (atomic_load(&sh->mem_posted) + atomic_load(&sh->mem_held) +
           atomic_load(&sh->mem_hist) > sh->mem_limit) {
        tpart *big = NULL;
        for (size_t i = 0; i < rd->nparts; i++)
            if (rd->parts[i]->hist_mem > 0 &&
                (!big || rd->parts[i]->hist_mem > big->hist_mem))
                big = rd->parts[i];
        if (!big)
            return;
        size_t n = 0;
        for (int k = 0; k < 64 && (n = resume_sched_evict(&big->s)); k++)
            ;
        hist_account(rd, big);
        rd->hist_evicted++;
    }
}

/* Post request id's records (its token) of list l from offset `from`:
 * addressed to it alone, before its ATTACH (or, after a backfill, before
 * anything read past the history). */
static void serve_hist(reader *rd, tpart *p, uint64_t id, const char *tok,
                       size_t tlen, const resume_hist *l, int64_t from)
{
    for (const resume_hrec *r = l->head; r; r = r->next) {
        if (r->offset < from || r->klen != tlen ||
            memcmp(r->data, tok, tlen) != 0)
            continue;
        rmsg *m;
        if (r->skip >= 0) {
            m = rmsg_new(RM_SKIP, 0);
            m->flag = r->skip;
        } else {
            m = malloc(sizeof(*m) + r->klen + r->vlen + 1);
            if (!m)
                abort();
            memset(m, 0, sizeof(*m));
            m->type = RM_REC;
            m->ts = r->ts;
            m->klen = r->klen;
            m->vlen = r->vlen;
            memcpy(m->data, r->data, (size_t)r->klen + r->vlen);
            m->mem = sizeof(*m) + m->klen + m->vlen;
        }
        m->id = id;
        m->topic = p->t->ti;
        m->partition = p->partition;
        m->offset = r->offset;
        post(rd->sh, m);
        rd->hist_served++;
    }
}

/* The backfill of p reached its history at `at`: serve the backfill's
 * requests the history, restart where the schedule says.  1 if the reader
 * restarted (or failed), 0 if it goes on from `at` as a normal read. */
static int part_seam(reader *rd, tpart *p, int64_t at)
{
    int64_t from;
    int64_t rs = resume_sched_seam(&p->s, at, &from);
    for (size_t i = 0; i < p->s.n; i++)
        if (p->s.r[i].serve) {
            p->s.r[i].serve = 0;
            serve_hist(rd, p, p->s.r[i].id, p->s.r[i].token, p->s.r[i].tlen,
                       &p->s.h, from);
        }
    if (rs < 0)
        return 0;
    if (part_start(rd, p, rs) != 0) {
        part_fail(rd, p, RESUME_UNAVAILABLE,
                  rd_kafka_err2str(rd_kafka_last_error()));
        return 1;
    }
    for (size_t i = 0; i < p->s.n; i++)
        if (p->s.r[i].attached == 2) {
            p->s.r[i].attached = 1;
            post_attach(rd, p, p->s.r[i].id, p->s.r[i].start,
                        p->s.r[i].need);
        }
    return 1;
}

static int reader_ensure_kafka(reader *rd, char *err, size_t errlen)
{
    if (rd->rk)
        return 0;
    rd->rk = reader_kafka(rd->sh, err, errlen);
    if (!rd->rk)
        return -1;
    rd->q = rd_kafka_queue_new(rd->rk);
    if (!rd->q) {
        rd_kafka_destroy(rd->rk);
        rd->rk = NULL;
        snprintf(err, errlen, "cannot create a queue");
        return -1;
    }
    return 0;
}

/* The partition of request c (metadata, key hash), or NULL (refused). */
static tpart *resolve_request(reader *rd, const cmsg *c)
{
    char err[512] = "";
    if (reader_ensure_kafka(rd, err, sizeof(err)) != 0) {
        post_refuse(rd, c->id, RESUME_UNAVAILABLE, "Kafka consumer: %s", err);
        return NULL;
    }
    ttopic *t = reader_topic(rd, c->topic);
    if (!t) {
        post_refuse(rd, c->id, RESUME_UNAVAILABLE, "out of memory");
        return NULL;
    }
    uint64_t now = clock_mono_ms();
    if (t->count <= 0 || now - t->count_ms > META_MAX_AGE_MS ||
        c->partition >= t->count) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t e = rd_kafka_metadata(rd->rk, 0, t->rkt, &md,
                                                  KAFKA_CALL_MS);
        int32_t cnt = 0;
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1) {
            e = md->topics[0].err;
            cnt = md->topics[0].partition_cnt;
        }
        if (md)
            rd_kafka_metadata_destroy(md);
        if (e == RD_KAFKA_RESP_ERR__TIMED_OUT ||
            e == RD_KAFKA_RESP_ERR__TRANSPORT) {
            post_refuse(rd, c->id, RESUME_UNAVAILABLE,
                        "Kafka metadata for %s: %s", t->ti->topic,
                        rd_kafka_err2str(e));
            return NULL;
        }
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR || cnt <= 0) {
            post_refuse(rd, c->id, RESUME_INVALID_POSITION,
                        "topic %s does not exist (%s)", t->ti->topic,
                        rd_kafka_err2str(e));
            return NULL;
        }
        t->count = cnt;
        t->count_ms = now;
    }
    int32_t part = c->partition;
    if (part < 0)
        part = rd_kafka_msg_partitioner_consistent(t->rkt, c->token, c->tlen,
                                                   t->count, NULL, NULL);
    if (part >= t->count) {
        post_refuse(rd, c->id, RESUME_INVALID_POSITION,
                    "partition %d of %s does not exist (%d partitions)",
                    (int)part, t->ti->topic, (int)t->count);
        return NULL;
    }
    tpart *p = reader_part(rd, t, part, 1);
    if (!p) {
        post_refuse(rd, c->id, RESUME_UNAVAILABLE, "out of memory");
        return NULL;
    }
    return p;
}

/* The ends of every partition asked for in this batch, read at once (one
 * ListOffsets per broker) after all its requests were made: each request
 * may end at the end only at or past it.  A partition left out (an error)
 * reads its own watermarks in admit_request. */
static void batch_ends(reader *rd, cmsg *ctl)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
    if (!l)
        return;
    for (cmsg *m = ctl; m; m = m->next) {
        tpart *p = m->part;
        if (m->type != CM_REQUEST || !p || p->ends_batch == rd->batch)
            continue;
        p->ends_batch = rd->batch;
        p->ends_ok = 0;
        rd_kafka_topic_partition_list_add(l, p->t->ti->topic, p->partition)->offset =
            RD_KAFKA_OFFSET_END;
    }
    rd_kafka_resp_err_t err = l->cnt > 0
        ? rd_kafka_offsets_for_times(rd->rk, l, KAFKA_CALL_MS)
        : RD_KAFKA_RESP_ERR__NOENT;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && l->cnt > 0 && !rd->ends_warned) {
        rd->ends_warned = 1;   /* once: each partition then reads its own */
        log_kv(LOG_WARN, "replay reader cannot read partition ends at once",
               "s:error", rd_kafka_err2str(err), NULL);
    }
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < l->cnt; i++) {
            rd_kafka_topic_partition_t *e = &l->elems[i];
            if (e->err || e->offset < 0)
                continue;
            for (size_t k = 0; k < rd->nparts; k++) {
                tpart *p = rd->parts[k];
                if (p->partition == e->partition &&
                    strcmp(p->t->ti->topic, e->topic) == 0) {
                    p->need = e->offset;
                    p->ends_ok = 1;
                    break;
                }
            }
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static void admit_request(reader *rd, const cmsg *c, tpart *p)
{
    ttopic *t = p->t;
    int32_t part = p->partition;
    /* watermarks for admission: at most every WM_MAX_AGE_MS (the low one
     * moves with retention only; the end is the batch's, or what the reader
     * has read), again if a request is past them or the batch's ends could
     * not be read */
    int fresh = p->ends_batch == rd->batch && p->ends_ok;
    if (fresh && p->need > p->hi)
        p->hi = p->need;
    if (p->wm_ok && p->s.running && p->s.pos > p->hi)
        p->hi = p->s.pos;
    if (!p->wm_ok || clock_mono_ms() - p->wm_ms > WM_MAX_AGE_MS || !fresh ||
        c->start > p->hi) {
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
            rd->rk, t->ti->topic, part, &p->lo, &p->hi, KAFKA_CALL_MS);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            p->wm_ok = 0;
            post_refuse(rd, c->id, RESUME_UNAVAILABLE, "watermarks of %s/%d: %s",
                        t->ti->topic, (int)part, rd_kafka_err2str(e));
            return;
        }
        p->wm_ok = 1;
        p->wm_ms = clock_mono_ms();
        p->need = p->hi;
        p->ends_batch = rd->batch;
        p->ends_ok = 1;
    }
    switch (resume_admit(p->lo, p->hi, c->start, rd->sh->max_offsets)) {
    case RESUME_POSITION_EXPIRED:
        post_refuse(rd, c->id, RESUME_POSITION_EXPIRED,
                    "%s/%d starts at offset %" PRId64 " now; seq %" PRId64
                    " is gone", t->ti->topic, (int)part, p->lo, c->start - 1);
        return;
    case RESUME_INVALID_POSITION:
        post_refuse(rd, c->id, RESUME_INVALID_POSITION,
                    "seq %" PRId64 " is beyond the end of %s/%d (%" PRId64 ")",
                    c->start - 1, t->ti->topic, (int)part, p->hi);
        return;
    case RESUME_TOO_FAR_BEHIND:
        post_refuse(rd, c->id, RESUME_TOO_FAR_BEHIND,
                    "%" PRId64 " offsets behind the end of %s/%d; "
                    "RESUME_MAX_OFFSETS is %ld", p->hi - c->start,
                    t->ti->topic, (int)part, rd->sh->max_offsets);
        return;
    default:
        break;
    }
    resume_sched_step st;
    if (resume_sched_add(&p->s, c->id, c->start, c->token, c->tlen, &st) != 0) {
        post_refuse(rd, c->id, RESUME_UNAVAILABLE, "out of memory");
        return;
    }
    p->s.r[p->s.n - 1].need = p->need;
    if (st.act == RESUME_SCHED_WAIT)
        return;
    if (st.act == RESUME_SCHED_HIST)
        serve_hist(rd, p, c->id, c->token, c->tlen, st.from, c->start);
    if (st.restart >= 0 && part_start(rd, p, st.restart) != 0) {
        part_fail(rd, p, RESUME_UNAVAILABLE,
                  rd_kafka_err2str(rd_kafka_last_error()));
        return;
    }
    hist_account(rd, p);     /* a fresh start drops what was held */
    /* The end the reader saw may be older than this request (a record
     * written since, sent live before the client subscribed, would be
     * lost): the request ends at an end >= the high watermark read after
     * it was made. */
    post_attach(rd, p, c->id, st.attach, p->need);
}

static void handle_cancel(reader *rd, uint64_t id)
{
    for (size_t i = 0; i < rd->nparts; i++) {
        tpart *p = rd->parts[i];
        if (resume_sched_remove(&p->s, id) == 0) {
            if (p->s.n == 0) {
                part_stop(rd, p);
                hist_account(rd, p);    /* an unfinished backfill goes */
            }
            return;
        }
    }
}

static void post_rec(reader *rd, tpart *p, const rd_kafka_message_t *rkm,
                     int skip, int64_t ts)
{
    rmsg *m;
    if (skip >= 0) {
        m = rmsg_new(RM_SKIP, 0);
        m->flag = skip;
    } else {
        m = malloc(sizeof(*m) + rkm->key_len + rkm->len + 1);
        if (!m)
            abort();
        memset(m, 0, sizeof(*m));
        m->type = RM_REC;
        m->ts = ts;
        m->klen = rkm->key_len;
        m->vlen = rkm->len;
        memcpy(m->data, rkm->key, rkm->key_len);
        if (rkm->len)
            memcpy(m->data + rkm->key_len, rkm->payload, rkm->len);
        m->mem = sizeof(*m) + m->klen + m->vlen;
    }
    m->topic = p->t->ti;
    m->partition = p->partition;
    m->offset = rkm->offset;
    post(rd->sh, m);
}

/* p is at its end, `next`: EOF to the loop (the requests' seams), the
 * pass closes. */
static void part_eof(reader *rd, tpart *p, int64_t next)
{
    rmsg *m = rmsg_new(RM_EOF, 0);
    m->topic = p->t->ti;
    m->partition = p->partition;
    m->offset = next;
    post(rd->sh, m);
    pass_close(rd, p);
    resume_sched_eof(&p->s, next);
}

/* librdkafka reports PARTITION_EOF only for a fetch that came back empty
 * at the end.  With records arriving faster than a fetch round trip (a
 * partition taking a record every few ms, a loaded machine) every fetch
 * carries some and the reader, though caught up, may never be told it is
 * at the end: every replay of the partition then waits until
 * RESUME_TIMEOUT_MS.
 * The high watermark of the last fetch response (librdkafka's cached one:
 * no round trip) says the same as an EOF: once the queue is drained and
 * the last record read is the one before it, the reader was at the end of
 * the partition when that response was made. */
static void reader_ends(reader *rd)
{
    for (size_t i = 0; i < rd->nparts; i++) {
        tpart *p = rd->parts[i];
        if (!p->started || p->s.bf || p->last_read < 0 || p->s.at_eof ||
            p->s.pos != p->last_read)
            continue;
        int64_t lo = -1, hi = -1;
        if (rd_kafka_get_watermark_offsets(rd->rk, p->t->ti->topic,
                                           p->partition, &lo, &hi) !=
                RD_KAFKA_RESP_ERR_NO_ERROR ||
            hi != p->last_read)
            continue;
        part_eof(rd, p, hi);
        rd->ends_cached++;
    }
}

static void handle_message(reader *rd, rd_kafka_message_t *rkm)
{
    tpart *p = part_of_msg(rd, rkm);
    if (!p || !p->started)
        return;                /* stale: the partition was stopped */
    rshared *sh = rd->sh;
    if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (p->s.bf && part_seam(rd, p, rkm->offset)) {
            hist_account(rd, p);
            return;
        }
        if (!p->s.bf && p->s.at_eof && p->s.pos == rkm->offset)
            return;            /* reported already (reader_ends) */
        part_eof(rd, p, rkm->offset);
        return;
    }
    if (rkm->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
        part_fail(rd, p, RESUME_POSITION_EXPIRED,
                  "offset out of range (the log start moved past it)");
        return;
    }
    if (rkm->err)
        return;                /* transient: the consumer retries; clients
                                * have their RESUME_TIMEOUT_MS */
    atomic_fetch_add(&sh->kafka_bytes, (uint64_t)(rkm->key_len + rkm->len));
    p->last_read = rkm->offset + 1;
    int bkey;
    enum record_invalid why;
    int skip = record_check(&rd->rules, rkm->key, rkm->key_len, rkm->payload,
                            rkm->len, &bkey, &why) != 0 ? (int)why : -1;
    int64_t ts = rd_kafka_message_timestamp(rkm, NULL);
    for (;;) {
        size_t added;
        int r = resume_sched_record(&p->s, rkm->offset, ts, skip, rkm->key,
                                    rkm->key_len, rkm->payload, rkm->len,
                                    &added);
        if (r == RESUME_REC_SEAM) {
            int restarted = part_seam(rd, p, rkm->offset);
            hist_account(rd, p);
            if (restarted)
                return;        /* this record is in the history */
            continue;          /* the reader is at the top: a normal read */
        }
        hist_account(rd, p);
        if (r == RESUME_REC_POST)
            post_rec(rd, p, rkm, skip, ts);
        break;
    }
    hist_trim(rd);
}

static int any_started(const reader *rd)
{
    for (size_t i = 0; i < rd->nparts; i++)
        if (rd->parts[i]->started)
            return 1;
    return 0;
}

/* The reader waits while what is posted and held is over
 * RESUME_MEMORY_BYTES and the loop has records of it still to take.  Not
 * for held live frames alone: they go only when replays end, which needs
 * the reader (each client's are capped by the hold overflow). */
static int reader_full(rshared *sh)
{
    long posted = atomic_load(&sh->mem_posted);
    return posted > 0 && posted + atomic_load(&sh->mem_held) > sh->mem_limit;
}

/* Histories of partitions nobody has read for RESUME_HISTORY_IDLE_MS go. */
static void hist_expire(reader *rd)
{
    uint64_t now = clock_mono_ms();
    for (size_t i = 0; i < rd->nparts; i++) {
        tpart *p = rd->parts[i];
        if (!p->started && p->s.n == 0 && p->hist_mem > 0 &&
            now - p->idle_ms >= RESUME_HISTORY_IDLE_MS) {
            resume_sched_clear(&p->s);
            hist_account(rd, p);
        }
    }
}

static void timed_wait(rshared *sh, long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&sh->cv, &sh->mu, &ts);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void *reader_main(void *arg)
{
    rshared *sh = arg;
    reader rd;
    memset(&rd, 0, sizeof(rd));
    rd.sh = sh;
    rd.rules.max_value = (size_t)sh->max_record_bytes;
    rd.rules.json = RECORD_JSON_FAST;
    for (;;) {
        pthread_mutex_lock(&sh->mu);
        int idle = !any_started(&rd);
        int full = reader_full(sh);
        if (!sh->stop && !sh->ctl_head && (idle || full))
            timed_wait(sh, idle ? 1000 : 50);
        int stop = sh->stop;
        cmsg *ctl = sh->ctl_head;
        sh->ctl_head = sh->ctl_tail = NULL;
        pthread_mutex_unlock(&sh->mu);
        if (stop) {
            while (ctl) {
                cmsg *next = ctl->next;
                free(ctl);
                ctl = next;
            }
            break;
        }
        /* a request cancelled in the same batch (its client left before
         * the reader got to it) costs no Kafka call */
        size_t nc = 0;
        for (cmsg *m = ctl; m; m = m->next)
            nc += m->type == CM_CANCEL;
        uint64_t *gone = nc ? malloc(nc * sizeof(*gone)) : NULL;
        size_t ng = 0;
        for (cmsg *m = ctl; gone && m; m = m->next)
            if (m->type == CM_CANCEL)
                gone[ng++] = m->id;
        if (gone)
            qsort(gone, ng, sizeof(*gone), cmp_u64);
        rd.batch++;
        for (cmsg *m = ctl; m; m = m->next)
            if (m->type == CM_REQUEST &&
                (!gone || !bsearch(&m->id, gone, ng, sizeof(*gone), cmp_u64)))
                m->part = resolve_request(&rd, m);
        if (rd.rk)
            batch_ends(&rd, ctl);
        while (ctl) {
            cmsg *next = ctl->next;
            if (ctl->type == CM_REQUEST) {
                if (ctl->part)
                    admit_request(&rd, ctl, ctl->part);
            } else {
                handle_cancel(&rd, ctl->id);
            }
            free(ctl);
            ctl = next;
        }
        free(gone);
        hist_expire(&rd);
        hist_trim(&rd);
        if (!any_started(&rd) || reader_full(sh))
            continue;
        /* a bounded burst, then look at control input again */
        for (int k = 0; k < 256; k++) {
            rd_kafka_message_t *rkm = rd_kafka_consume_queue(rd.q, k ? 0 : 20);
            if (!rkm) {
                reader_ends(&rd);      /* drained: what is at its end */
                break;
            }
            handle_message(&rd, rkm);
            rd_kafka_message_destroy(rkm);
            if (reader_full(sh))
                break;
        }
    }
    /* teardown: no consumer close, nothing committed (no group) */
    for (size_t i = 0; i < rd.nparts; i++) {
        if (rd.parts[i]->started)
            rd_kafka_consume_stop(rd.parts[i]->t->rkt, rd.parts[i]->partition);
        resume_sched_clear(&rd.parts[i]->s);
        free(rd.parts[i]);
    }
    free(rd.parts);
    for (size_t i = 0; i < rd.ntopics; i++)
        rd_kafka_topic_destroy(rd.topics[i].rkt);
    free(rd.topics);
    if (rd.q)
        rd_kafka_queue_destroy(rd.q);
    if (rd.rk)
        rd_kafka_destroy_flags(rd.rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    atomic_store(&sh->partitions, 0);
    pthread_mutex_lock(&sh->mu);
    sh->exited = 1;
    pthread_mutex_unlock(&sh->mu);
    return NULL;
}

/* ---- loop side -------------------------------------------------------- */

/* loop-side state of one resuming channel: one request to the reader */
typedef struct rs_chan {
    struct resume_client *rc;
    shard_map_node node;     /* rm->reqs, by id (while the request lives) */
    uint64_t id;
    struct lpart *lp;        /* attached to this partition, or NULL */
    struct ltok *lt;         /* ... in the list of its token there */
    struct rs_chan *lprev, *lnext;
    const topic_info *topic;
    char *name;
    size_t nlen;
    size_t tlen;             /* name = token "." category */
    int32_t partition;       /* -1 until attached */
    int64_t last;            /* last offset replayed (or the client's seq) */
    int64_t pos;             /* replay position (next offset), -1 unknown */
    int at_eof;
    int64_t need;            /* at_eof counts from this position on (the
                              * high watermark read after the request) */
    int pre_routed;
    uint64_t routed_ms;
    int64_t first_held;
    int floor;               /* after the replay: drop live <= last */
    int replayed_any;        /* last is an offset this replay sent */
    int live;                /* the request is known to the reader */
} rs_chan;

/* the attached requests of one token on one partition: a record reaches
 * only the requests of its key */
typedef struct ltok {
    shard_map_node node;     /* lpart.toks, by token */
    rs_chan *head;
    char tok[64];
} ltok;

/* a partition the loop has attached requests on */
typedef struct lpart {
    const topic_info *topic;
    int32_t partition;
    shard_map toks;          /* token -> ltok */
    int64_t rpos;            /* the reader's position as last posted (goes
                              * back when it restarts the partition) */
    int at_eof;
} lpart;

typedef struct rs_held {
    ws_chunk *frame;
    int chan;
    int32_t partition;
    int64_t offset;
} rs_held;

/* per-client state (c->rs) */
typedef struct resume_client {
    resume_conn *c;
    struct resume_client *prev, *next;   /* rm->clients while replaying */
    int replaying;
    enum resume_code fail;   /* decided, to be finished after the batch */
    char fail_msg[200];
    struct resume_client *fnext;         /* rm->fin list */
    int on_fin;
    rs_chan *ch;
    size_t n;
    rs_held *held;
    size_t nheld, capheld;
    long held_bytes;
    uint64_t replayed;
    uint64_t t0, deadline_ms;
    int odinws;
    int floors;              /* channels with floor set */
} resume_client;

struct shard_resume {
    shard_ctx *ctx;
    resume_callbacks cb;     /* ip_reconnect_allow: the server's per-IP table */
    rshared *sh;
    pthread_t th;
    int th_started;
    struct event *ev, *check_ev;
    shard_map reqs;          /* id -> rs_chan */
    uint64_t next_id;
    lpart **lparts;
    size_t nlparts, caplparts;
    resume_client *clients;  /* replaying */
    resume_client *fin;      /* to finish after the current batch */
    long active;
    uint64_t kbytes_seen;
    buf scratch;
};

static void reply(shard_resume *rm, resume_conn *c, buf *b)
{
    rm->cb.send_text(rm->cb.ud, c->owner, b->data, b->len);
}

static void send_rerror(shard_resume *rm, resume_conn *c,
                        enum resume_code code, const char *msg)
{
    rm->ctx->m.ws_reconnects_total[code]++;
    buf_reset(&rm->scratch);
    if (clientmsg_build_reconnect_error(&rm->scratch, resume_code_name(code),
                                        msg) == 0)
        reply(rm, c, &rm->scratch);
}

static void ctl_post(shard_resume *rm, cmsg *m)
{
    rshared *sh = rm->sh;
    m->next = NULL;
    pthread_mutex_lock(&sh->mu);
    if (sh->ctl_tail)
        sh->ctl_tail->next = m;
    else
        sh->ctl_head = m;
    sh->ctl_tail = m;
    pthread_cond_signal(&sh->cv);
    pthread_mutex_unlock(&sh->mu);
}

static lpart *lpart_get(shard_resume *rm, const topic_info *t, int32_t p)
{
    for (size_t i = 0; i < rm->nlparts; i++)
        if (rm->lparts[i]->topic == t && rm->lparts[i]->partition == p)
            return rm->lparts[i];
    if (rm->nlparts == rm->caplparts) {
        size_t nc = rm->caplparts ? rm->caplparts * 2 : 8;
        lpart **np = realloc(rm->lparts, nc * sizeof(*np));
        if (!np)
            return NULL;
        rm->lparts = np;
        rm->caplparts = nc;
    }
    lpart *lp = calloc(1, sizeof(*lp));
    if (!lp)
        return NULL;
    lp->topic = t;
    lp->partition = p;
    rm->lparts[rm->nlparts++] = lp;
    return lp;
}

static lpart *lpart_find(shard_resume *rm, const topic_info *t, int32_t p)
{
    for (size_t i = 0; i < rm->nlparts; i++)
        if (rm->lparts[i]->topic == t && rm->lparts[i]->partition == p)
            return rm->lparts[i];
    return NULL;
}

/* Forget x's request: off its partition, out of the id map, and the reader
 * is told (it stops a partition nobody needs any more). */
static void req_drop(shard_resume *rm, rs_chan *x)
{
    if (x->lp) {
        ltok *lt = x->lt;
        if (x->lprev)
            x->lprev->lnext = x->lnext;
        else
            lt->head = x->lnext;
        if (x->lnext)
            x->lnext->lprev = x->lprev;
        if (!lt->head) {
            shard_map_remove(&x->lp->toks, &lt->node);
            free(lt);
        }
        x->lp = NULL;
        x->lt = NULL;
        x->lprev = x->lnext = NULL;
    }
    if (x->live) {
        x->live = 0;
        shard_map_remove(&rm->reqs, &x->node);
        cmsg *m = calloc(1, sizeof(*m));
        if (!m)
            abort();   /* a lost cancel would keep a partition read for ever */
        m->type = CM_CANCEL;
        m->id = x->id;
        ctl_post(rm, m);
    }
}

static void held_release(shard_resume *rm, resume_client *rc)
{
    for (size_t i = 0; i < rc->nheld; i++)
        ws_chunk_unref(rc->held[i].frame);
    free(rc->held);
    rc->held = NULL;
    rc->nheld = rc->capheld = 0;
    if (rc->held_bytes && rm)
        atomic_fetch_sub(&rm->sh->mem_held, rc->held_bytes);
    rc->held_bytes = 0;
}

static void rc_unlink(shard_resume *rm, resume_client *rc)
{
    if (!rc->replaying)
        return;
    rc->replaying = 0;
    for (size_t i = 0; i < rc->n; i++)
        req_drop(rm, &rc->ch[i]);
    if (rc->prev)
        rc->prev->next = rc->next;
    else
        rm->clients = rc->next;
    if (rc->next)
        rc->next->prev = rc->prev;
    rc->prev = rc->next = NULL;
    rm->active--;
    if (rc->on_fin) {
        resume_client **pp = &rm->fin;
        while (*pp && *pp != rc)
            pp = &(*pp)->fnext;
        if (*pp)
            *pp = rc->fnext;
        rc->on_fin = 0;
    }
}

static void rs_free(shard_resume *rm, resume_client *rc)
{
    if (!rc)
        return;
    rc_unlink(rm, rc);
    held_release(rm, rc);
    for (size_t i = 0; i < rc->n; i++)
        free(rc->ch[i].name);
    free(rc->ch);
    free(rc);
}

/* Decide rc's end (first decision wins); finished after the current batch
 * of reader messages so lists being walked stay intact. */
static void rc_fail(shard_resume *rm, resume_client *rc, enum resume_code code,
                    const char *msg)
{
    if (!rc->replaying || rc->on_fin)
        return;
    rc->fail = code;
    snprintf(rc->fail_msg, sizeof(rc->fail_msg), "%s", msg);
    rc->on_fin = 1;
    rc->fnext = rm->fin;
    rm->fin = rc;
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

/* The replay of rc is over: ack or error, then the held live records (and
 * none is lost: an error goes out before them, so the client can place
 * them). */
static void finish_client(shard_resume *rm, resume_client *rc,
                          enum resume_code code, const char *msg)
{
    resume_conn *c = rc->c;
    shard_ctx *ctx = rm->ctx;
    rc_unlink(rm, rc);
    prom_hist_observe(&ctx->m.ws_replay_seconds,
                      (double)(clock_mono_ms() - rc->t0) / 1000.0);
    ctx->m.ws_reconnect_seconds_total +=
        (double)(clock_mono_ms() - rc->t0) / 1000.0;
    if (code != RESUME_OK)
        log_kv(LOG_INFO, "reconnect replay failed", "s:code",
               resume_code_name(code), "s:reason", msg, NULL);
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
                                              subs_conn_count(c->subs)) == 0)
                reply(rm, c, &rm->scratch);
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
            if (rm->cb.push(rm->cb.ud, c->owner, h->frame) == 0)
                ctx->m.ws_messages_sent_total++;
        } else {
            ctx->m.ws_replay_duplicates_dropped_total++;
        }
    }
    held_release(rm, rc);
    rc->floors = 0;
    for (size_t i = 0; i < rc->n; i++) {
        rc->ch[i].floor = rc->ch[i].partition >= 0;
        rc->floors += rc->ch[i].floor;
    }
    if (rc->floors == 0) {
        c->rs = NULL;
        rs_free(rm, rc);
    }
}

static void run_fin(shard_resume *rm)
{
    while (rm->fin) {
        resume_client *rc = rm->fin;
        rm->fin = rc->fnext;
        rc->on_fin = 0;
        finish_client(rm, rc, rc->fail, rc->fail_msg);
    }
}

int shard_resume_filter(shard_resume *rm, resume_conn *c,
                        const frame_record *r, ws_chunk *frame)
{
    resume_client *rc = c->rs;
    int i = chan_of(rc, r);
    if (i < 0)
        return 0;
    rs_chan *x = &rc->ch[i];
    if (rc->replaying) {
        const shard_settings *s = rm->ctx->set;
        if (rc->nheld >= (size_t)(s->resume_max_records + s->queue_msgs)) {
            /* more live than a client could take: tell it, then hand over
             * what was held and this one, in order (no silent hole) */
            finish_client(rm, rc, RESUME_TOO_FAR_BEHIND,
                          "more live records arrived during the replay than "
                          "RESUME_MAX_RECORDS + WS_SEND_QUEUE_MSGS");
            if (c->rs != rc)
                return 0;
            /* fall through to the floor rule for this record */
        } else {
            if (rc->nheld == rc->capheld) {
                size_t nc = rc->capheld ? rc->capheld * 2 : 16;
                rs_held *nh = realloc(rc->held, nc * sizeof(*nh));
                if (!nh) {
                    finish_client(rm, rc, RESUME_UNAVAILABLE, "out of memory");
                    return c->rs == rc ? shard_resume_filter(rm, c, r, frame) : 0;
                }
                rc->held = nh;
                rc->capheld = nc;
            }
            ws_chunk_ref(frame);
            rc->held[rc->nheld++] = (rs_held){ frame, i, r->partition, r->offset };
            long b = (long)(sizeof(ws_chunk) + frame->len);
            rc->held_bytes += b;
            atomic_fetch_add(&rm->sh->mem_held, b);
            if (x->first_held < 0 && r->partition == x->partition)
                x->first_held = r->offset;
            return 1;
        }
    }
    if (!x->floor)
        return 0;
    if (r->partition == x->partition && !resume_keep_live(r->offset, x->last)) {
        rm->ctx->m.ws_replay_duplicates_dropped_total++;
        return 1;
    }
    x->floor = 0;
    if (--rc->floors == 0) {
        c->rs = NULL;
        rs_free(rm, rc);
    }
    return 0;
}

static void check_client(shard_resume *rm, resume_client *rc, uint64_t now)
{
    if (rc->on_fin)
        return;
    if (now >= rc->deadline_ms) {
        /* what the replay was waiting for: the first channel not at its
         * seam (an operator's grep: "reconnect replay timed out") */
        for (size_t i = 0; i < rc->n; i++) {
            const rs_chan *x = &rc->ch[i];
            int64_t rf = x->routed_ms ? (int64_t)(now - x->routed_ms) : -1;
            if (x->lp && resume_seam_ok(x->pos, x->at_eof && x->pos >= x->need,
                                        x->first_held, x->pre_routed, rf))
                continue;
            log_kv(LOG_INFO, "reconnect replay timed out", "S:channel",
                   x->name, x->nlen, "i:partition", (int)x->partition,
                   "I:pos", x->pos, "I:need", x->need, "b:at_eof", x->at_eof,
                   "I:first_held", x->first_held, "b:pre_routed",
                   x->pre_routed, "I:routed_for_ms", rf, "I:reader_pos",
                   x->lp ? x->lp->rpos : -1, "b:attached", x->lp != NULL,
                   NULL);
            break;
        }
        rc_fail(rm, rc, RESUME_TOO_FAR_BEHIND,
                "replay did not catch up with the live stream within "
                "RESUME_TIMEOUT_MS");
        return;
    }
    for (size_t i = 0; i < rc->n; i++) {
        rs_chan *x = &rc->ch[i];
        if (!x->routed_ms &&
            shard_registry_token_routed(rm->ctx->reg, x->name, x->tlen))
            x->routed_ms = now;
        int64_t rf = x->routed_ms ? (int64_t)(now - x->routed_ms) : -1;
        if (x->lp && x->lp->rpos > x->pos) {
            /* records of other tokens moved the reader past x's position */
            x->pos = x->lp->rpos;
            x->at_eof = x->lp->at_eof;
        }
        if (!x->lp || !resume_seam_ok(x->pos, x->at_eof && x->pos >= x->need,
                                      x->first_held, x->pre_routed, rf))
            return;
    }
    rc_fail(rm, rc, RESUME_OK, "");
}

static void sync_kbytes(shard_resume *rm)
{
    uint64_t kb = atomic_load(&rm->sh->kafka_bytes);
    rm->ctx->m.ws_replay_kafka_bytes_total += kb - rm->kbytes_seen;
    rm->kbytes_seen = kb;
}

static void on_check(evutil_socket_t fd, short what, void *arg)
{
    shard_resume *rm = arg;
    uint64_t now = clock_mono_ms();
    for (resume_client *rc = rm->clients; rc; rc = rc->next)
        check_client(rm, rc, now);
    run_fin(rm);
    sync_kbytes(rm);
    if (rm->clients) {
        struct timeval tv = { 0, CHECK_MS * 1000 };
        event_add(rm->check_ev, &tv);
    }
}

/* Record m to channel x (env: the envelopes built so far for m). */
static void deliver(shard_resume *rm, rs_chan *x, const rmsg *m, ws_chunk **env)
{
    resume_client *rc = x->rc;
    shard_ctx *ctx = rm->ctx;
    if (m->offset >= x->pos) {
        x->pos = m->offset + 1;
        x->at_eof = 0;
    }
    if (rc->on_fin || m->offset <= x->last)
        return;
    if ((long)rc->replayed >= ctx->set->resume_max_records) {
        char msg[120];
        snprintf(msg, sizeof(msg), "more than RESUME_MAX_RECORDS (%ld) "
                 "records to replay", ctx->set->resume_max_records);
        rc_fail(rm, rc, RESUME_TOO_FAR_BEHIND, msg);
        return;
    }
    int f = rc->odinws ? 1 : 0;
    if (!env[f]) {
        frame_record r;
        memset(&r, 0, sizeof(r));
        r.token = x->name;
        r.token_len = x->tlen;
        r.category = x->name + x->tlen + 1;
        r.category_len = x->nlen - x->tlen - 1;
        r.partition = m->partition;
        r.offset = m->offset;
        r.timestamp_ms = m->ts;
        r.value = m->data + m->klen;
        r.value_len = m->vlen;
        env[f] = envelope_frame(&rm->scratch, &r,
                                (enum envelope_types)ctx->set->envelope_types,
                                f ? ENVELOPE_F_ODINWS : ENVELOPE_F_REPLAY);
        if (!env[f]) {
            rc_fail(rm, rc, RESUME_UNAVAILABLE, "out of memory");
            return;
        }
    }
    if (rm->cb.push(rm->cb.ud, rc->c->owner, env[f]) == 0) {
        ctx->m.ws_replayed_messages_total++;
        rc->replayed++;
        x->last = m->offset;
        x->replayed_any = 1;
    } else {
        rc_fail(rm, rc, RESUME_TOO_FAR_BEHIND, "the client is being closed");
    }
}

/* A record from the history for one request (m->id): before its ATTACH,
 * or after a backfill. */
static void handle_hrec(shard_resume *rm, rmsg *m)
{
    shard_map_node *n = shard_map_find(&rm->reqs, &m->id, sizeof(m->id));
    if (!n)
        return;                /* dropped meanwhile */
    rs_chan *x = SHARD_MAP_ENTRY(n, rs_chan, node);
    x->partition = m->partition;
    if (m->type != RM_REC)
        return;
    ws_chunk *env[2] = { NULL, NULL };
    deliver(rm, x, m, env);
    for (int f = 0; f < 2; f++)
        if (env[f])
            ws_chunk_unref(env[f]);
}

static void handle_rec(shard_resume *rm, rmsg *m)
{
    lpart *lp = lpart_find(rm, m->topic, m->partition);
    if (!lp)
        return;
    lp->rpos = m->offset + 1;
    lp->at_eof = 0;
    if (m->type != RM_REC)
        return;                /* skipped: the position moved, nothing sent */
    const char *key = m->data;
    shard_map_node *n = shard_map_find(&lp->toks, key, m->klen);
    if (!n)
        return;
    ws_chunk *env[2] = { NULL, NULL };   /* replay form, odin-ws form */
    for (rs_chan *x = SHARD_MAP_ENTRY(n, ltok, node)->head; x; x = x->lnext)
        deliver(rm, x, m, env);
    for (int f = 0; f < 2; f++)
        if (env[f])
            ws_chunk_unref(env[f]);
}

static void handle_attach(shard_resume *rm, rmsg *m)
{
    shard_map_node *rn = shard_map_find(&rm->reqs, &m->id, sizeof(m->id));
    if (!rn)
        return;                /* dropped meanwhile (its cancel is queued) */
    rs_chan *x = SHARD_MAP_ENTRY(rn, rs_chan, node);
    lpart *lp = lpart_get(rm, m->topic, m->partition);
    if (!lp) {
        rc_fail(rm, x->rc, RESUME_UNAVAILABLE, "out of memory");
        return;
    }
    shard_map_node *n = shard_map_find(&lp->toks, x->name, x->tlen);
    ltok *lt;
    if (n) {
        lt = SHARD_MAP_ENTRY(n, ltok, node);
    } else {
        lt = calloc(1, sizeof(*lt));
        if (!lt) {
            rc_fail(rm, x->rc, RESUME_UNAVAILABLE, "out of memory");
            return;
        }
        memcpy(lt->tok, x->name, x->tlen);
        lt->node.key = lt->tok;
        lt->node.klen = (uint32_t)x->tlen;
        if (shard_map_insert(&lp->toks, &lt->node) != 0) {
            free(lt);
            rc_fail(rm, x->rc, RESUME_UNAVAILABLE, "out of memory");
            return;
        }
    }
    /* the reader is at or before start here: a position left from an
     * earlier read of this partition must not speak for this request */
    if (m->offset < lp->rpos) {
        lp->rpos = m->offset;
        lp->at_eof = m->flag;
    }
    x->lp = lp;
    x->lt = lt;
    x->lprev = NULL;
    x->lnext = lt->head;
    if (lt->head)
        lt->head->lprev = x;
    lt->head = x;
    x->partition = m->partition;
    /* records before start are the client's own: covered */
    x->pos = m->offset;
    x->at_eof = m->flag;
    x->need = m->ts;
    /* live records held before the partition was known */
    resume_client *rc = x->rc;
    int ci = (int)(x - rc->ch);
    if (x->first_held < 0)
        for (size_t k = 0; k < rc->nheld; k++)
            if (rc->held[k].chan == ci && rc->held[k].partition == x->partition) {
                x->first_held = rc->held[k].offset;
                break;
            }
}

static void handle_eof(shard_resume *rm, rmsg *m)
{
    lpart *lp = lpart_find(rm, m->topic, m->partition);
    if (!lp)
        return;
    lp->rpos = m->offset;
    lp->at_eof = 1;
    /* eager for every request: a restart may follow at once */
    size_t it = 0;
    shard_map_node *cur = NULL, *n;
    while ((n = shard_map_next(&lp->toks, &it, &cur)))
        for (rs_chan *x = SHARD_MAP_ENTRY(n, ltok, node)->head; x; x = x->lnext)
            if (m->offset >= x->pos) {
                x->pos = m->offset;
                x->at_eof = 1;
            }
}

static void on_notify(evutil_socket_t fd, short what, void *arg)
{
    shard_resume *rm = arg;
    rshared *sh = rm->sh;
    uint64_t v;
    ssize_t rr = read(sh->efd, &v, sizeof(v));
    (void)rr;
    shard_ctx *ctx = rm->ctx;
    int eofs = 0;
    for (int k = 0; k < NOTIFY_BATCH; k++) {
        pthread_mutex_lock(&sh->mu);
        rmsg *m = sh->out_head;
        if (m) {
            sh->out_head = m->next;
            if (!sh->out_head)
                sh->out_tail = NULL;
        }
        pthread_mutex_unlock(&sh->mu);
        if (!m)
            break;
        switch (m->type) {
        case RM_REC:
            if (m->id)
                handle_hrec(rm, m);
            else
                handle_rec(rm, m);
            break;
        case RM_SKIP:
            ctx->m.ws_replay_records_skipped_total[m->flag]++;
            if (m->id)
                handle_hrec(rm, m);
            else
                handle_rec(rm, m); /* advances the position, sends nothing */
            break;
        case RM_EOF:
            handle_eof(rm, m);
            eofs = 1;
            break;
        case RM_ATTACH:
            handle_attach(rm, m);
            break;
        case RM_REFUSE: {
            shard_map_node *n = shard_map_find(&rm->reqs, &m->id, sizeof(m->id));
            if (n) {
                rs_chan *x = SHARD_MAP_ENTRY(n, rs_chan, node);
                x->live = 0;          /* the reader has forgotten it */
                shard_map_remove(&rm->reqs, &x->node);
                rc_fail(rm, x->rc, (enum resume_code)m->flag, m->data);
            }
            break;
        }
        case RM_PASS:
            ctx->m.ws_replay_passes_total++;
            prom_hist_observe(&ctx->m.ws_replay_pass_requests, (double)m->flag);
            break;
        }
        if (m->mem) {
            atomic_fetch_sub(&sh->mem_posted, (long)m->mem);
            pthread_mutex_lock(&sh->mu);
            pthread_cond_signal(&sh->cv);
            pthread_mutex_unlock(&sh->mu);
        }
        free(m);
    }
    pthread_mutex_lock(&sh->mu);
    int more = sh->out_head != NULL;
    pthread_mutex_unlock(&sh->mu);
    if (more)
        event_active(rm->ev, EV_READ, 1);   /* the rest on the next pass */
    run_fin(rm);
    if (eofs)
        on_check(-1, 0, rm);
    else
        sync_kbytes(rm);
}

static int reader_start(shard_resume *rm)
{
    if (rm->th_started)
        return 0;
    if (pthread_create(&rm->th, NULL, reader_main, rm->sh) != 0)
        return -1;
    rm->th_started = 1;
    return 0;
}

void shard_resume_start(shard_resume *rm, resume_conn *c,
                        const resume_req_chan *ch, size_t n, int odinws)
{
    shard_ctx *ctx = rm->ctx;
    const shard_settings *s = ctx->set;
    uint64_t now = clock_mono_ms();
    ctx->m.ws_replay_requests_total++;
    if (c->rs && ((resume_client *)c->rs)->replaying) {
        send_rerror(rm, c, RESUME_BUSY, "a reconnect is already replaying");
        return;
    }
    if (n == 0) {
        /* odin-ws form without a matching subscription: nothing to replay */
        ctx->m.ws_reconnects_total[RESUME_OK]++;
        buf_reset(&rm->scratch);
        if (clientmsg_build_reconnect_ack(&rm->scratch, 0, NULL, 0,
                                          subs_conn_count(c->subs)) == 0)
            reply(rm, c, &rm->scratch);
        return;
    }
    if (!s->kafka_brokers || !*s->kafka_brokers) {
        send_rerror(rm, c, RESUME_UNAVAILABLE,
                    "this shard has no KAFKA_BROKERS; subscribed live only");
        return;
    }
    if (!c->bucket_set) {
        tbucket_init(&c->bucket, s->resume_conn_rate,
                     (double)s->resume_conn_burst, now);
        c->bucket_set = 1;
    }
    if (!tbucket_take(&c->bucket, now)) {
        send_rerror(rm, c, RESUME_RATE_LIMITED,
                    "over RESUME_CONN_RATE reconnects for this connection; "
                    "subscribed live only");
        return;
    }
    if (!rm->cb.ip_reconnect_allow(rm->cb.ud, c->owner, now)) {
        send_rerror(rm, c, RESUME_RATE_LIMITED,
                    "over RESUME_IP_RATE reconnects from this address; "
                    "subscribed live only");
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
    if (reader_start(rm) != 0) {
        send_rerror(rm, c, RESUME_UNAVAILABLE, "cannot start the replay reader");
        return;
    }
    /* a previous replay's floors are replaced */
    if (c->rs) {
        rs_free(rm, c->rs);
        c->rs = NULL;
    }
    resume_client *rc = calloc(1, sizeof(*rc));
    if (!rc || !(rc->ch = calloc(n, sizeof(*rc->ch)))) {
        free(rc);
        send_rerror(rm, c, RESUME_UNAVAILABLE, "out of memory");
        return;
    }
    rc->c = c;
    rc->odinws = odinws;
    rc->n = n;
    for (size_t i = 0; i < n; i++) {
        size_t tl, cl;
        const char *cat;
        topics_channel_split(ch[i].name, ch[i].len, &tl, &cat, &cl);
        rs_chan *x = &rc->ch[i];
        x->rc = rc;
        x->name = malloc(ch[i].len + 1);
        if (!x->name) {
            rs_free(rm, rc);
            send_rerror(rm, c, RESUME_UNAVAILABLE, "out of memory");
            return;
        }
        memcpy(x->name, ch[i].name, ch[i].len);
        x->name[ch[i].len] = 0;
        x->nlen = ch[i].len;
        x->tlen = tl;
        x->topic = topics_by_category(cat, cl);
        x->partition = -1;
        x->last = ch[i].seq;
        x->pos = -1;
        x->first_held = -1;
        x->pre_routed = shard_registry_token_routed(ctx->reg, x->name, tl);
    }
    rc->t0 = now;
    rc->deadline_ms = now + (uint64_t)s->resume_timeout_ms;
    rc->replaying = 1;
    rc->next = rm->clients;
    if (rm->clients)
        rm->clients->prev = rc;
    rm->clients = rc;
    rm->active++;
    c->rs = rc;
    for (size_t i = 0; i < n; i++) {
        rs_chan *x = &rc->ch[i];
        cmsg *m = calloc(1, sizeof(*m));
        x->id = ++rm->next_id;
        x->node.key = &x->id;
        x->node.klen = sizeof(x->id);
        if (!m || shard_map_insert(&rm->reqs, &x->node) != 0) {
            free(m);
            rc_fail(rm, rc, RESUME_UNAVAILABLE, "out of memory");
            break;
        }
        x->live = 1;
        m->type = CM_REQUEST;
        m->id = x->id;
        m->topic = x->topic;
        m->partition = ch[i].partition;
        m->start = ch[i].seq + 1;
        m->tlen = (uint8_t)x->tlen;
        memcpy(m->token, x->name, x->tlen);
        ctl_post(rm, m);
    }
    run_fin(rm);
    struct timeval tv = { 0, CHECK_MS * 1000 };
    if (!event_pending(rm->check_ev, EV_TIMEOUT, NULL))
        event_add(rm->check_ev, &tv);
}

void shard_resume_client_gone(shard_resume *rm, resume_conn *c)
{
    resume_client *rc = c->rs;
    if (!rc)
        return;
    c->rs = NULL;
    if (rc->replaying) {
        rm->ctx->m.ws_reconnects_total[RESUME_OK]++;   /* counted as before */
        prom_hist_observe(&rm->ctx->m.ws_replay_seconds,
                          (double)(clock_mono_ms() - rc->t0) / 1000.0);
    }
    rs_free(rm, rc);
}

long shard_resume_active(const shard_resume *rm)
{
    return rm ? rm->active : 0;
}

long shard_resume_memory(const shard_resume *rm)
{
    return rm ? atomic_load(&rm->sh->mem_posted) + atomic_load(&rm->sh->mem_held)
              : 0;
}

long shard_resume_history(const shard_resume *rm)
{
    return rm ? atomic_load(&rm->sh->mem_hist) : 0;
}

long shard_resume_partitions(const shard_resume *rm)
{
    return rm ? atomic_load(&rm->sh->partitions) : 0;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

shard_resume *shard_resume_new(shard_ctx *ctx, const resume_callbacks *cb)
{
    shard_resume *rm = calloc(1, sizeof(*rm));
    if (!rm)
        return NULL;
    rm->ctx = ctx;
    rm->cb = *cb;
    const shard_settings *s = ctx->set;
    rshared *sh = rm->sh = calloc(1, sizeof(*sh));
    if (!sh)
        goto err;
    sh->efd = -1;
    pthread_mutex_init(&sh->mu, NULL);
    pthread_cond_init(&sh->cv, NULL);
    sh->mem_limit = s->resume_memory_bytes;
    sh->max_offsets = s->resume_max_offsets;
    sh->max_record_bytes = s->resume_max_record_bytes;
    sh->brokers = dup_or_null(s->kafka_brokers);
    sh->options = dup_or_null(s->kafka_options);
    sh->shard_id = dup_or_null(s->shard_id ? s->shard_id : "");
    sh->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (sh->efd < 0 || !sh->shard_id)
        goto err;
    rm->ev = event_new(ctx->base, sh->efd, EV_READ | EV_PERSIST, on_notify, rm);
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
    /* every client forgets its replay (their requests are cancelled) */
    while (rm->clients) {
        resume_client *rc = rm->clients;
        rc->c->rs = NULL;
        rs_free(rm, rc);
    }
    int leak = 0;
    if (rm->th_started) {
        pthread_mutex_lock(&rm->sh->mu);
        rm->sh->stop = 1;
        pthread_cond_signal(&rm->sh->cv);
        pthread_mutex_unlock(&rm->sh->mu);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += RESUME_JOIN_MS / 1000;
        ts.tv_nsec += (long)(RESUME_JOIN_MS % 1000) * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        if (pthread_timedjoin_np(rm->th, NULL, &ts) != 0) {
            log_kv(LOG_WARN, "replay reader did not stop in time; left to "
                   "the process exit", "i:waited_ms", RESUME_JOIN_MS, NULL);
            pthread_detach(rm->th);
            leak = 1;        /* the thread still uses rm->sh */
        }
    }
    for (size_t i = 0; i < rm->nlparts; i++) {
        shard_map_clear(&rm->lparts[i]->toks);   /* empty: no client left */
        free(rm->lparts[i]);
    }
    free(rm->lparts);
    shard_map_clear(&rm->reqs);
    if (rm->ev)
        event_free(rm->ev);
    if (rm->check_ev)
        event_free(rm->check_ev);
    if (!leak)
        rshared_free(rm->sh);
    buf_free(&rm->scratch);
    free(rm);
}
