#include "tests/support/stream.h"

#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "tests/support/support.h"

#define FINISH_WAIT_MS 30000

/* ---- clients ----------------------------------------------------------- */

static int tok_index(const stream *s, const char *tok, size_t len)
{
    for (int i = 0; i < s->ntok; i++)
        if (strlen(s->tok[i]) == len && memcmp(s->tok[i], tok, len) == 0)
            return i;
    return -1;
}

static void on_msg(stream *s, stream_client *c, const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    if (!j)
        return;
    json_t *ch = json_object_get(j, "channel");
    if (ch && json_is_string(ch)) {
        const char *name = json_string_value(ch);
        const char *dot = strchr(name, '.');
        int t = dot ? tok_index(s, name, (size_t)(dot - name)) : -1;
        json_t *n = json_object_get(json_object_get(json_object_get(j, "data"), "data"), "n");
        if (t >= 0 && n && json_is_integer(n)) {
            long k = (long)json_integer_value(n);
            if (k >= 0 && k < STREAM_MAXN) {
                uint64_t now = clock_mono_ms();
                if (s->producing && c->last_rx_ms && now - c->last_rx_ms > c->max_stall_ms)
                    c->max_stall_ms = now - c->last_rx_ms;
                c->last_rx_ms = now;
                c->recv[t]++;
                if (c->seen[t][k]++)
                    c->dups[t]++;
            }
        }
    }
    json_decref(j);
}

/* Read what client c has within timeout_ms (then what is buffered). */
static void pump_client(stream *s, stream_client *c, int timeout_ms)
{
    if (c->gone)
        return;
    for (;;) {
        char *msg = NULL;
        int rc = wsc_recv_text(c->ws, timeout_ms, &msg, NULL);
        if (rc != 1) {
            if (rc < 0)
                c->gone = 1;
            return;
        }
        on_msg(s, c, msg);
        free(msg);
        timeout_ms = 0;
    }
}

static void client_free(stream_client *c)
{
    if (!c)
        return;
    wsc_free(c->ws);
    for (int i = 0; i < STREAM_MAXTOK; i++)
        free(c->seen[i]);
    free(c);
}

stream_client *stream_client_new(stream *s, const char *name, int port, const int toks[])
{
    if (s->ncl >= STREAM_MAXCL)
        return NULL;
    stream_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    snprintf(c->name, sizeof c->name, "%s", name);
    char req[1024] = "{\"type\":\"subscribe\",\"data\":{\"channels\":[";
    size_t len = strlen(req);
    for (int i = 0; toks[i] >= 0; i++) {
        if (toks[i] >= s->ntok)
            goto err;
        c->want[toks[i]] = 1;
        len += (size_t)snprintf(req + len, sizeof req - len, "%s\"%s.trade\"", i ? "," : "",
                                s->tok[toks[i]]);
    }
    snprintf(req + len, sizeof req - len, "]}}");
    for (int i = 0; i < STREAM_MAXTOK; i++)
        if (!(c->seen[i] = calloc(STREAM_MAXN, 1)))
            goto err;
    int status = 0;
    c->ws = wsc_connect("127.0.0.1", port, NULL, &status);
    if (!c->ws || status != 101 || wsc_send_text(c->ws, req) != 0)
        goto err;
    char *ack = NULL;
    int rc = wsc_recv_text(c->ws, 5000, &ack, NULL);
    int ok = rc == 1 && strstr(ack, "\"subscription_ack\"") != NULL;
    free(ack);
    if (!ok)
        goto err;
    s->cl[s->ncl++] = c;
    return c;
err:
    fprintf(stderr, "stream: client %s on port %d could not subscribe\n", name, port);
    client_free(c);
    return NULL;
}

/* ---- the stream --------------------------------------------------------- */

int stream_init(stream *s, const char *brokers, const char *tag, int ntok, int rate)
{
    memset(s, 0, sizeof *s);
    if (ntok < 1 || ntok > STREAM_MAXTOK || rate < 1)
        return -1;
    if (!(s->p = rtsup_producer_new(brokers)))
        return -1;
    snprintf(s->topic, sizeof s->topic, "%s", rtsup_unique(tag));
    s->ntok = ntok;
    s->rate = rate;
    for (int i = 0; i < ntok; i++) {
        snprintf(s->tok[i], sizeof s->tok[i], "T%c%d", 'A' + i, (int)getpid());
        s->part[i] = i % 4;
    }
    /* create the topic (auto-created with 4 partitions) */
    rtsup_produce(s->p, s->topic, 0, "WARMUP", 6, "{}", 2);
    if (rtsup_producer_flush(s->p) != 0) {
        rtsup_producer_free(s->p);
        s->p = NULL;
        return -1;
    }
    return 0;
}

void stream_tick(stream *s, int wait_ms)
{
    if (s->producing) {
        uint64_t now = clock_mono_ms();
        long due = (long)((now - s->t0) * (uint64_t)s->rate / 1000) + 1;
        for (int t = 0; t < s->ntok; t++)
            while (s->next[t] < s->base[t] + due && s->next[t] < STREAM_MAXN)
                rtsup_produce_trade(s->p, s->topic, s->part[t], s->tok[t], s->next[t]++);
    }
    /* wait on the first live client's socket, then drain the others */
    int waited = 0;
    for (int i = 0; i < s->ncl; i++) {
        pump_client(s, s->cl[i], waited ? 0 : wait_ms);
        if (!s->cl[i]->gone)
            waited = 1;
    }
    if (!waited && wait_ms > 0)
        poll(NULL, 0, wait_ms);   /* no client: pace the producer only */
}

void stream_start(stream *s)
{
    s->producing = 1;
    s->t0 = clock_mono_ms();
    memcpy(s->base, s->next, sizeof s->base);
    for (int i = 0; i < s->ncl; i++)
        s->cl[i]->last_rx_ms = s->t0;
}

void stream_for(stream *s, int ms)
{
    uint64_t end = clock_mono_ms() + (uint64_t)ms;
    while (clock_mono_ms() < end)
        stream_tick(s, 5);
}

int stream_until(stream *s, int (*pred)(void *), void *arg, int timeout_ms)
{
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    while (!pred(arg)) {
        if (clock_mono_ms() >= end)
            return 0;
        stream_tick(s, 5);
    }
    return 1;
}

long stream_distinct(const stream_client *c, int t, int upto)
{
    long d = 0;
    for (int k = 0; k < upto; k++)
        d += c->seen[t][k] != 0;
    return d;
}

/* 1 if every live client has every number of its tokens, else 0. */
static int all_delivered(const stream *s)
{
    for (int i = 0; i < s->ncl; i++) {
        const stream_client *c = s->cl[i];
        if (c->gone)
            continue;
        for (int t = 0; t < s->ntok; t++)
            if (c->want[t] && stream_distinct(c, t, s->next[t]) < s->next[t])
                return 0;
    }
    return 1;
}

/* One client's sums over its tokens. */
static void client_totals(const stream *s, const stream_client *c, stream_totals *o)
{
    memset(o, 0, sizeof *o);
    for (int t = 0; t < s->ntok; t++) {
        if (!c->want[t])
            continue;
        o->sent += s->next[t];
        o->received += c->recv[t];
        o->gaps += s->next[t] - stream_distinct(c, t, s->next[t]);
        o->dups += c->dups[t];
    }
}

void stream_totals_get(const stream *s, stream_totals *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < s->ncl; i++) {
        if (s->cl[i]->gone)
            continue;
        stream_totals o;
        client_totals(s, s->cl[i], &o);
        out->sent += o.sent;
        out->received += o.received;
        out->gaps += o.gaps;
        out->dups += o.dups;
    }
}

long stream_finish(stream *s, const char *test, long recovery_ms)
{
    s->producing = 0;
    int failed = rtsup_producer_flush(s->p);
    uint64_t end = clock_mono_ms() + FINISH_WAIT_MS;
    while (!all_delivered(s) && clock_mono_ms() < end)
        stream_tick(s, 20);
    long total_gaps = 0;
    for (int i = 0; i < s->ncl; i++) {
        stream_client *c = s->cl[i];
        stream_totals o;
        client_totals(s, c, &o);
        printf("figures: test=%s client=%s%s sent=%ld received=%ld gaps=%ld duplicates=%ld "
               "max_silence_ms=%llu recovery_ms=%ld\n", test, c->name,
               c->gone ? "(disconnected)" : "", o.sent, o.received, o.gaps, o.dups,
               (unsigned long long)c->max_stall_ms, recovery_ms);
        if (!c->gone)
            total_gaps += o.gaps;
    }
    fflush(stdout);
    if (failed) {
        printf("figures: test=%s producer_failed=%d\n", test, failed);
        return -1;
    }
    return total_gaps;
}

void stream_free(stream *s)
{
    for (int i = 0; i < s->ncl; i++)
        client_free(s->cl[i]);
    s->ncl = 0;
    rtsup_producer_free(s->p);
    s->p = NULL;
}

/* ---- processes ------------------------------------------------------------ */

int stream_shard_start(ssup_shard *sh, const char *tag, const char *url)
{
    const char *env[] = { "SHARD_LEASE_TTL=2", NULL };
    return ssup_shard_start(sh, rtsup_unique(tag), url, env);
}

int stream_router_start(rtsup_router *r, const stream *s, const char *url, const char *group,
                        const char *const more[])
{
    char topics[200], grp[160];
    snprintf(topics, sizeof topics, "KAFKA_TOPICS=%s=trade", s->topic);
    snprintf(grp, sizeof grp, "KAFKA_GROUP=%s", group);
    const char *env[24] = { topics, grp, "KAFKA_OFFSET_RESET=earliest",
                            "REDIS_RECONNECT_MAX_MS=200", "REDIS_TIMEOUT_MS=500",
                            "ROUTER_SETTLE_MS=4000", "SHARD_RECONNECT_MAX_MS=200" };
    int n = 7;
    for (int i = 0; more && more[i]; i++) {
        if (n >= 23)
            return -1;
        env[n++] = more[i];
    }
    env[n] = NULL;
    return rtsup_router_start(r, url, env);
}

int stream_wait_route(const char *url, const char *tok, const char *shard_id, int timeout_ms)
{
    redisContext *c = tsup_redis_connect(url);
    char key[128];
    snprintf(key, sizeof key, "odin:route:%s", tok);
    int ok = tsup_wait_member(c, key, shard_id, 1, timeout_ms);
    redisFree(c);
    return ok;
}
