#include "tests/support/rtsup.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/schema.h"
#include "proto/frame.h"
#include "tests/support/support.h"

static void rt_die(const char *what)
{
    fprintf(stderr, "rtsup: %s\n", what);
    abort();
}

/* ---- fake shard ---------------------------------------------------------- */

#define MAX_CONNS 16

typedef struct conn {
    int fd;
    frame_decoder *dec;
    buf out;
} conn;

static void conn_close(rtsup_shard *s, conn *c)
{
    close(c->fd);
    c->fd = -1;
    frame_decoder_free(c->dec);
    c->dec = NULL;
    buf_free(&c->out);
    pthread_mutex_lock(&s->mu);
    s->closes++;
    pthread_mutex_unlock(&s->mu);
}

static char *dupn(const char *p, size_t n)
{
    char *d = malloc(n + 1);
    memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

static void on_frame(rtsup_shard *s, conn *c, const frame_msg *m)
{
    pthread_mutex_lock(&s->mu);
    s->frames++;
    if (m->type == FRAME_HELLO) {
        if (m->hello.role_len == 6 && memcmp(m->hello.role, "router", 6) == 0 &&
            m->hello.version == FRAME_PROTO_VERSION)
            s->router_hellos++;
    } else if (m->type == FRAME_DELIVERY) {
        for (size_t i = 0; i < m->nrecords; i++) {
            const frame_record *r = &m->records[i];
            if (s->n == s->cap) {
                s->cap = s->cap ? s->cap * 2 : 256;
                s->recs = realloc(s->recs, s->cap * sizeof *s->recs);
            }
            rtsup_rec *x = &s->recs[s->n++];
            x->token = dupn(r->token, r->token_len);
            x->category = dupn(r->category, r->category_len);
            x->value = dupn(r->value, r->value_len);
            x->value_len = r->value_len;
            x->partition = r->partition;
            x->offset = r->offset;
            x->flags = r->flags;
            x->mode = m->mode;
        }
    }
    pthread_mutex_unlock(&s->mu);
    (void)c;
}

static void *shard_thread(void *arg)
{
    rtsup_shard *s = arg;
    conn conns[MAX_CONNS];
    for (int i = 0; i < MAX_CONNS; i++)
        conns[i].fd = -1;
    char chunk[65536];
    while (!s->stop) {
        struct pollfd pf[MAX_CONNS + 1];
        int map[MAX_CONNS + 1];
        int n = 0;
        pf[n].fd = s->lfd;
        pf[n].events = POLLIN;
        map[n++] = -1;
        for (int i = 0; i < MAX_CONNS; i++) {
            if (conns[i].fd < 0)
                continue;
            short ev = 0;
            if (!s->paused)
                ev |= POLLIN;
            if (conns[i].out.len)
                ev |= POLLOUT;
            pf[n].fd = conns[i].fd;
            pf[n].events = ev;
            map[n++] = i;
        }
        if (poll(pf, (nfds_t)n, 20) <= 0)
            continue;
        for (int k = 0; k < n; k++) {
            if (!pf[k].revents)
                continue;
            if (map[k] < 0) {
                int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                    continue;
                int slot = -1;
                for (int i = 0; i < MAX_CONNS && slot < 0; i++)
                    if (conns[i].fd < 0)
                        slot = i;
                if (slot < 0) {
                    close(fd);
                    continue;
                }
                conn *c = &conns[slot];
                c->fd = fd;
                c->dec = frame_decoder_new(FRAME_DEFAULT_MAX);
                memset(&c->out, 0, sizeof c->out);
                /* our HELLO, possibly with a wrong version */
                size_t start = c->out.len;
                frame_encode_hello(&c->out, "shard", s->id, s->max_frame);
                if (s->hello_version != FRAME_PROTO_VERSION) {
                    /* [1, version, ...]: the version is the byte after 0x95 0x01 */
                    unsigned char *p = (unsigned char *)c->out.data + start + 4;
                    if (p[0] == 0x95 && p[1] == 0x01 && p[2] < 0x80)
                        p[2] = (unsigned char)s->hello_version;
                }
                pthread_mutex_lock(&s->mu);
                s->accepts++;
                pthread_mutex_unlock(&s->mu);
                continue;
            }
            conn *c = &conns[map[k]];
            if (c->fd < 0)
                continue;
            if (pf[k].revents & POLLOUT) {
                ssize_t w = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
                if (w > 0)
                    buf_consume(&c->out, (size_t)w);
            }
            if (pf[k].revents & (POLLIN | POLLHUP | POLLERR)) {
                if (s->paused && !(pf[k].revents & (POLLHUP | POLLERR)))
                    continue;
                ssize_t r = recv(c->fd, chunk, sizeof chunk, 0);
                if (r <= 0) {
                    if (r < 0 && (errno == EAGAIN || errno == EINTR))
                        continue;
                    conn_close(s, c);
                    continue;
                }
                frame_decoder_feed(c->dec, chunk, (size_t)r);
                frame_msg m;
                int rc;
                while ((rc = frame_decoder_next(c->dec, &m)) == 1)
                    on_frame(s, c, &m);
                if (rc < 0) {
                    pthread_mutex_lock(&s->mu);
                    s->bad_frames++;
                    pthread_mutex_unlock(&s->mu);
                    conn_close(s, c);
                }
            }
        }
    }
    for (int i = 0; i < MAX_CONNS; i++)
        if (conns[i].fd >= 0)
            conn_close(s, &conns[i]);
    return NULL;
}

rtsup_shard *rtsup_shard_start(const char *id)
{
    rtsup_shard *s = calloc(1, sizeof *s);
    snprintf(s->id, sizeof s->id, "%s", id);
    char name[128];
    snprintf(name, sizeof name, "%s.sock", id);
    char *p = tsup_tmp(name);
    snprintf(s->path, sizeof s->path, "%s", p);
    free(p);
    snprintf(s->endpoint, sizeof s->endpoint, "unix:%s", s->path);
    s->hello_version = FRAME_PROTO_VERSION;
    s->max_frame = FRAME_DEFAULT_MAX;
    pthread_mutex_init(&s->mu, NULL);
    s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    if (strlen(s->path) >= sizeof a.sun_path)
        rt_die("fake shard: socket path too long");
    memcpy(a.sun_path, s->path, strlen(s->path) + 1);
    unlink(s->path);
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(s->lfd, 16) != 0)
        rt_die("fake shard: cannot listen");
    if (pthread_create(&s->th, NULL, shard_thread, s) != 0)
        rt_die("fake shard: pthread_create");
    return s;
}

void rtsup_rec_free(rtsup_rec *r)
{
    free(r->token);
    free(r->category);
    free(r->value);
}

void rtsup_shard_free(rtsup_shard *s)
{
    if (!s)
        return;
    s->stop = 1;
    pthread_join(s->th, NULL);
    close(s->lfd);
    unlink(s->path);
    for (size_t i = 0; i < s->n; i++)
        rtsup_rec_free(&s->recs[i]);
    free(s->recs);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static void cmd_ok(redisContext *c, redisReply *r, const char *what)
{
    if (!r || r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "rtsup: %s: %s\n", what, r ? r->str : c->errstr);
        abort();
    }
    freeReplyObject(r);
}

void rtsup_shard_register(rtsup_shard *s, redisContext *c, long ttl_ms)
{
    char key[128];
    snprintf(key, sizeof key, "odin:shard:%s", s->id);
    cmd_ok(c, redisCommand(c, "HSET %s endpoint %s pid %d host test started_at %lld "
                           "connections 0 tokens 0", key, s->endpoint, (int)getpid(),
                           (long long)clock_wall_ms()), "HSET lease");
    if (ttl_ms > 0)
        cmd_ok(c, redisCommand(c, "PEXPIRE %s %ld", key, ttl_ms), "PEXPIRE");
    cmd_ok(c, redisCommand(c, "SADD odin:shards %s", s->id), "SADD shards");
    cmd_ok(c, redisCommand(c, "PUBLISH odin:routes %s%s", SCHEMA_EVENT_SHARD_UP, s->id),
           "PUBLISH");
}

void rtsup_shard_deregister(rtsup_shard *s, redisContext *c)
{
    /* a fake shard's handful of tokens in one script (the real shard
     * deregisters in chunks, common/sweep.h) */
    static const char clean[] =
        "local p, id = 'odin:', ARGV[1]\n"
        "local lease = p .. 'shard:' .. id\n"
        "for _, t in ipairs(redis.call('SMEMBERS', lease .. ':tokens')) do\n"
        "  redis.call('SREM', p .. 'route:' .. t, id)\n"
        "  redis.call('PUBLISH', p .. 'routes', t)\n"
        "end\n"
        "redis.call('DEL', lease .. ':tokens', lease)\n"
        "redis.call('SREM', p .. 'shards', id)\n"
        "redis.call('PUBLISH', p .. 'routes', 'shard:down:' .. id)\n"
        "return 1\n";
    cmd_ok(c, redisCommand(c, "EVAL %s 0 %s", clean, s->id), "EVAL clean");
}

void rtsup_route(redisContext *c, const char *op, const char *shard_id, const char *token)
{
    char k1[256], k2[256];
    snprintf(k1, sizeof k1, "odin:route:%s", token);
    snprintf(k2, sizeof k2, "odin:shard:%s:tokens", shard_id);
    cmd_ok(c, redisCommand(c, "EVAL %s 3 %s %s odin:routes %s %s %s", SCHEMA_LUA_ROUTE, k1,
                           k2, op, shard_id, token), "EVAL route");
}

size_t rtsup_shard_count(rtsup_shard *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

size_t rtsup_shard_count_token(rtsup_shard *s, const char *token)
{
    size_t k = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->n; i++)
        k += strcmp(s->recs[i].token, token) == 0;
    pthread_mutex_unlock(&s->mu);
    return k;
}

int rtsup_shard_has(rtsup_shard *s, int32_t partition, int64_t offset)
{
    int found = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->n && !found; i++)
        found = s->recs[i].partition == partition && s->recs[i].offset == offset;
    pthread_mutex_unlock(&s->mu);
    return found;
}

int rtsup_shard_get(rtsup_shard *s, size_t i, rtsup_rec *out)
{
    int ok = 0;
    pthread_mutex_lock(&s->mu);
    if (i < s->n) {
        *out = s->recs[i];
        out->token = strdup(s->recs[i].token);
        out->category = strdup(s->recs[i].category);
        out->value = dupn(s->recs[i].value, s->recs[i].value_len);
        ok = 1;
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

/* ---- producer ----------------------------------------------------------------- */

struct rtsup_producer {
    rd_kafka_t *rk;
    pthread_mutex_t mu;
    int32_t *parts;
    int64_t *offs;
    size_t n, cap;
    int failed;
};

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    rtsup_producer *p = opaque;
    pthread_mutex_lock(&p->mu);
    if (m->err) {
        p->failed++;
        fprintf(stderr, "rtsup: delivery failed: %s\n", rd_kafka_err2str(m->err));
    } else {
        if (p->n == p->cap) {
            p->cap = p->cap ? p->cap * 2 : 1024;
            p->parts = realloc(p->parts, p->cap * sizeof *p->parts);
            p->offs = realloc(p->offs, p->cap * sizeof *p->offs);
        }
        p->parts[p->n] = m->partition;
        p->offs[p->n] = m->offset;
        p->n++;
    }
    pthread_mutex_unlock(&p->mu);
}

rtsup_producer *rtsup_producer_new(const char *brokers)
{
    rtsup_producer *p = calloc(1, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err) ||
        rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof err) ||
        rd_kafka_conf_set(conf, "acks", "all", err, sizeof err))
        rt_die(err);
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!p->rk)
        rt_die(err);
    return p;
}

void rtsup_produce(rtsup_producer *p, const char *topic, int32_t partition,
                   const char *key, size_t klen, const char *val, size_t vlen)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(topic),
            RD_KAFKA_V_PARTITION(partition < 0 ? RD_KAFKA_PARTITION_UA : partition),
            RD_KAFKA_V_KEY(key, key ? klen : 0), RD_KAFKA_V_VALUE((void *)val, vlen),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(p->rk, 10);
            continue;
        }
        if (e)
            rt_die(rd_kafka_err2str(e));
        break;
    }
    rd_kafka_poll(p->rk, 0);
}

int rtsup_producer_flush(rtsup_producer *p)
{
    if (rd_kafka_flush(p->rk, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        rt_die("producer flush timed out");
    pthread_mutex_lock(&p->mu);
    int f = p->failed;
    pthread_mutex_unlock(&p->mu);
    return f;
}

size_t rtsup_producer_delivered(rtsup_producer *p, const int32_t **parts,
                                const int64_t **offsets)
{
    pthread_mutex_lock(&p->mu);
    size_t n = p->n;
    *parts = p->parts;
    *offsets = p->offs;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void rtsup_producer_free(rtsup_producer *p)
{
    if (!p)
        return;
    rd_kafka_flush(p->rk, 10000);
    rd_kafka_destroy(p->rk);
    free(p->parts);
    free(p->offs);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int64_t rtsup_committed(const char *brokers, const char *group, const char *topic,
                        int32_t partition)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err) ||
        rd_kafka_conf_set(conf, "group.id", group, err, sizeof err))
        rt_die(err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk)
        rt_die(err);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition);
    int64_t off = -1;
    if (rd_kafka_committed(rk, l, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR && !l->elems[0].err)
        off = l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    return off;
}

/* ---- router process ---------------------------------------------------------------- */

/* Routers still running when the test process exits (a failed assertion
 * skips the test's own stop) are killed, so nothing outlives the test. */
static pid_t running[32];

static void kill_running(void)
{
    for (int i = 0; i < 32; i++)
        if (running[i] > 0)
            tsup_stop(running[i], SIGKILL, 5000);
}

static void track(pid_t pid, int add)
{
    static int registered;
    if (!registered) {
        atexit(kill_running);
        registered = 1;
    }
    for (int i = 0; i < 32; i++) {
        if (add && running[i] <= 0) {
            running[i] = pid;
            return;
        }
        if (!add && running[i] == pid) {
            running[i] = 0;
            return;
        }
    }
}

int rtsup_router_start(rtsup_router *r, const char *redis_url, const char *const extra[])
{
    static char env[64][1024];
    int n = 0;
    r->http_port = tsup_free_port();
    snprintf(env[n++], sizeof env[0], "KAFKA_BROKERS=%s", tsup_env("ODIN_KAFKA_BROKERS"));
    snprintf(env[n++], sizeof env[0], "REDIS_URL=%s", redis_url);
    snprintf(env[n++], sizeof env[0], "HTTP_ADDR=127.0.0.1:%d", r->http_port);
    snprintf(env[n++], sizeof env[0], "LOG_LEVEL=debug");
    snprintf(env[n++], sizeof env[0], "DISCOVERY_INTERVAL_MS=200");
    /* a registry epoch younger than this holds the first batches (tests
     * flush Redis before each test); tests of the settle override it */
    snprintf(env[n++], sizeof env[0], "ROUTER_SETTLE_MS=1000");
    snprintf(env[n++], sizeof env[0], "KAFKA_OPTIONS=topic.metadata.refresh.interval.ms=1000,"
             "session.timeout.ms=6000");
    for (int i = 0; extra && extra[i] && n < 62; i++)
        snprintf(env[n++], sizeof env[0], "%s", extra[i]);
    char *envp[64];
    for (int i = 0; i < n; i++)
        envp[i] = env[i];
    envp[n] = NULL;
    char *argv[] = { (char *)tsup_bin("odin-router"), NULL };
    r->pid = tsup_spawn(argv, envp);
    if (r->pid < 0)
        return -1;
    track(r->pid, 1);
    if (!tsup_wait_tcp(r->http_port, 15000)) {
        tsup_stop(r->pid, SIGKILL, 2000);
        track(r->pid, 0);
        r->pid = -1;
        return -1;
    }
    return 0;
}

int rtsup_router_stop(rtsup_router *r)
{
    if (r->pid <= 0)
        return -1;
    int st = tsup_stop(r->pid, SIGTERM, 20000);
    track(r->pid, 0);
    r->pid = -1;
    return st;
}

typedef struct count_arg {
    rtsup_shard *s;
    const char *token;
    size_t n;
} count_arg;

static int count_reached(void *arg)
{
    count_arg *c = arg;
    size_t got = c->token ? rtsup_shard_count_token(c->s, c->token) : rtsup_shard_count(c->s);
    return got >= c->n;
}

int rtsup_wait_count(rtsup_shard *s, const char *token, size_t n, int timeout_ms)
{
    count_arg c = { s, token, n };
    int ok = tsup_wait_until(count_reached, &c, timeout_ms);
    if (!ok)
        fprintf(stderr, "rtsup: timeout: shard %s has %zu records of %s, want %zu\n", s->id,
                token ? rtsup_shard_count_token(s, token) : rtsup_shard_count(s),
                token ? token : "(any)", n);
    return ok;
}

int rtsup_marker(rtsup_producer *p, const char *topic, int32_t partition,
                 rtsup_shard *const shards[], size_t nth, int timeout_ms)
{
    char v[64];
    int n = snprintf(v, sizeof v, "{\"marker\":%zu}", nth);
    rtsup_produce(p, topic, partition, "*", 1, v, (size_t)n);
    if (rtsup_producer_flush(p) != 0)
        return 0;
    for (size_t i = 0; shards[i]; i++)
        if (!rtsup_wait_count(shards[i], "*", nth, timeout_ms))
            return 0;
    return 1;
}

const char *rtsup_unique(const char *prefix)
{
    static char bufs[8][128];
    static int slot, seq;
    char *b = bufs[slot++ & 7];
    snprintf(b, sizeof bufs[0], "%s-%d-%d-%ld", prefix, (int)getpid(), seq++,
             (long)(clock_wall_ms() % 100000));
    return b;
}

void rtsup_produce_trade(rtsup_producer *p, const char *topic, int32_t partition,
                         const char *tok, long n)
{
    char v[128];
    int l = snprintf(v, sizeof v, "{\"type\":\"TRADE_EXECUTED\",\"data\":{\"n\":%ld}}", n);
    rtsup_produce(p, topic, partition, tok, strlen(tok), v, (size_t)l);
}

void rtsup_produce_marker(rtsup_producer *p, const char *topic, int32_t partition,
                          const char *id)
{
    char v[256];
    int l = snprintf(v, sizeof v, "{\"type\":\"SYSTEM\",\"data\":{\"marker\":\"%s\"}}", id);
    rtsup_produce(p, topic, partition, "*", 1, v, (size_t)l);
}

int rtsup_create_topic(rtsup_producer *p, const char *topic)
{
    rtsup_produce(p, topic, 0, "WARMUP", 6, "{}", 2);
    return rtsup_producer_flush(p) == 0 ? 0 : -1;
}

int rtsup_topic_new(rtsup_topic *t, rtsup_producer *p, const char *prefix,
                    const char *category)
{
    snprintf(t->name, sizeof t->name, "%s", rtsup_unique(prefix));
    snprintf(t->topics_env, sizeof t->topics_env, "KAFKA_TOPICS=%s=%s", t->name, category);
    snprintf(t->group_env, sizeof t->group_env, "KAFKA_GROUP=%s", rtsup_unique("g"));
    return rtsup_create_topic(p, t->name);
}
