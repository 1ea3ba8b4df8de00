#include "common/sweep.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "common/buf.h"
#include "common/schema.h"

enum phase { PH_BEGIN, PH_NEXT, PH_ROUTES, PH_TAIL };

typedef struct sweep {
    char *prefix, *id;
    char *k_lease, *k_rev, *k_mark, *k_routes, *k_shards, *k_rprefix;
    int dead, cluster;
    size_t chunk;
    char name[33];           /* this sweep's marker value */
    sweep_done_fn *done;
    void (*step)(void *arg);
    void *arg;
    enum phase ph;
    size_t parts;            /* replies still due in this phase */
    char **toks;             /* the current chunk (at most `chunk`) */
    size_t *tlens, ntoks;
    long long removed;
    int failed;              /* a step failed or the connection went */
    char err[160];
} sweep;

static void drop_chunk(sweep *s)
{
    for (size_t i = 0; i < s->ntoks; i++)
        free(s->toks[i]);
    s->ntoks = 0;
}

static void sweep_free(sweep *s)
{
    drop_chunk(s);
    free(s->toks);
    free(s->tlens);
    free(s->prefix);
    free(s->id);
    free(s->k_lease);
    free(s->k_rev);
    free(s->k_mark);
    free(s->k_routes);
    free(s->k_shards);
    free(s->k_rprefix);
    free(s);
}

static void finish(sweep *s)
{
    s->done(s->failed ? -2 : s->removed, s->failed ? s->err : NULL, s->arg);
    sweep_free(s);
}

static void fail(sweep *s, const redisReply *rep, const char *why)
{
    if (s->failed)
        return;
    s->failed = 1;
    snprintf(s->err, sizeof s->err, "%s",
             why ? why
             : !rep ? "connection lost"
             : rep->type == REDIS_REPLY_ERROR ? rep->str
                                              : "unexpected reply");
}

static int sweep_send(redisAsyncContext *ac, redisCallbackFn *fn, sweep *s, int argc,
                      const char **argv, const size_t *lens)
{
    if (redisAsyncCommandArgv(ac, fn, s, argc, argv, lens) != REDIS_OK)
        return -1;
    s->parts++;
    return 0;
}

/* hiredis refused a command (connection going, or ENOMEM): what went out
 * still answers; report a failure then. */
static void not_sent(sweep *s)
{
    fail(s, NULL, "command not sent");
    if (s->parts == 0)
        finish(s);
}

/* A script in the layout's form: the cluster one declares "#!lua". */
static const char *script(const sweep *s, const char *cluster_form)
{
    return s->cluster ? cluster_form : cluster_form + strlen("#!lua\n");
}

/* A reply arrived and the sweep goes on: tell the owner. */
static void progressed(sweep *s)
{
    if (s->step && !s->failed)
        s->step(s->arg);
}

static void send_next(redisAsyncContext *ac, sweep *s);
static void send_routes(redisAsyncContext *ac, sweep *s);
static void send_tail(redisAsyncContext *ac, sweep *s);

/* Every reply of the phase is in: on to the next step. */
static void phase_done(redisAsyncContext *ac, sweep *s)
{
    if (s->failed || s->ph == PH_TAIL)
        finish(s);
    else if (s->ph == PH_ROUTES)
        send_next(ac, s);
}

/* Route removals and tail steps. */
static void part_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    sweep *s = privdata;
    redisReply *rep = reply;
    if (!rep || rep->type == REDIS_REPLY_ERROR)
        fail(s, rep, NULL);
    else if (rep->type == REDIS_REPLY_INTEGER && rep->integer < 0)
        fail(s, rep, "sweep marker expired before the end");   /* END */
    else if (s->ph == PH_ROUTES && rep->type == REDIS_REPLY_INTEGER)
        s->removed += rep->integer;
    if (--s->parts == 0)
        phase_done(ac, s);
    else
        progressed(s);
}

/* NEXT answered: -1 (the marker is not ours any more), or the next chunk
 * (empty: every route is gone). */
static void next_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    sweep *s = privdata;
    redisReply *rep = reply;
    s->parts--;
    drop_chunk(s);
    if (!rep || rep->type == REDIS_REPLY_ERROR ||
        (rep->type != REDIS_REPLY_ARRAY && rep->type != REDIS_REPLY_INTEGER)) {
        fail(s, rep, NULL);
        finish(s);
        return;
    }
    if (rep->type == REDIS_REPLY_INTEGER) {
        fail(s, rep, "sweep marker expired before the end");
        finish(s);
        return;
    }
    size_t n = rep->elements < s->chunk ? rep->elements : s->chunk;
    for (size_t i = 0; i < n; i++) {
        const redisReply *t = rep->element[i];
        if (t->type != REDIS_REPLY_STRING)
            continue;
        if (!(s->toks[s->ntoks] = malloc(t->len + 1))) {
            not_sent(s);
            return;
        }
        memcpy(s->toks[s->ntoks], t->str, t->len + 1);
        s->tlens[s->ntoks++] = t->len;
    }
    progressed(s);
    if (s->ntoks)
        send_routes(ac, s);
    else
        send_tail(ac, s);
}

/* Step 2: the previous chunk leaves the index, the next one comes back. */
static void send_next(redisAsyncContext *ac, sweep *s)
{
    s->ph = PH_NEXT;
    char ttl[24], cnt[24];
    snprintf(ttl, sizeof ttl, "%d", SCHEMA_SWEEP_TTL_MS);
    snprintf(cnt, sizeof cnt, "%zu", s->chunk);
    size_t argc = 9 + s->ntoks;
    const char **argv = malloc(argc * sizeof *argv);
    size_t *lens = malloc(argc * sizeof *lens);
    int ok = argv && lens;
    if (ok) {
        size_t k = 0;
        argv[k++] = "EVAL";
        argv[k++] = script(s, SCHEMA_LUA_SWEEP_NEXT);
        argv[k++] = "2";
        argv[k++] = s->k_rev;
        argv[k++] = s->k_mark;
        argv[k++] = s->dead ? "dead" : "force";
        argv[k++] = s->name;
        argv[k++] = ttl;
        argv[k++] = cnt;
        for (size_t i = 0; i < k; i++)
            lens[i] = strlen(argv[i]);
        for (size_t i = 0; i < s->ntoks; i++, k++) {
            argv[k] = s->toks[i];
            lens[k] = s->tlens[i];
        }
        ok = sweep_send(ac, next_cb, s, (int)k, argv, lens) == 0;
    }
    free(argv);
    free(lens);
    if (!ok)
        not_sent(s);
}

/* Step 3: the chunk's route removals (the table in common/sweep.h). */
static void send_routes(redisAsyncContext *ac, sweep *s)
{
    s->ph = PH_ROUTES;
    size_t idlen = strlen(s->id), clen = strlen(s->k_routes);
    int ok = 1;
    if (!s->cluster) {
        size_t argc = 8 + s->ntoks;
        const char **argv = malloc(argc * sizeof *argv);
        size_t *lens = malloc(argc * sizeof *lens);
        ok = argv && lens;
        if (ok) {
            size_t k = 0;
            argv[k++] = "EVAL";
            argv[k++] = SCHEMA_LUA_ROUTE_BATCH;
            argv[k++] = "2";
            argv[k++] = s->k_rev;
            argv[k++] = s->k_routes;
            argv[k++] = "del";
            argv[k++] = s->id;
            argv[k++] = s->k_rprefix;
            for (size_t i = 0; i < k; i++)
                lens[i] = strlen(argv[i]);
            for (size_t i = 0; i < s->ntoks; i++, k++) {
                argv[k] = s->toks[i];
                lens[k] = s->tlens[i];
            }
            ok = sweep_send(ac, part_cb, s, (int)k, argv, lens) == 0;
        }
        free(argv);
        free(lens);
    } else {
        buf key = { 0 };
        for (size_t i = 0; i < s->ntoks && ok; i++) {
            const char *k = schema_route_key_buf(&key, s->prefix, s->toks[i], s->tlens[i]);
            if (!k) {
                ok = 0;
                break;
            }
            const char *argv[8] = { "EVAL", SCHEMA_LUA_ROUTE_ONE, "1", k, "del", s->id,
                                    s->k_routes, s->toks[i] };
            size_t lens[8] = { 4, strlen(SCHEMA_LUA_ROUTE_ONE), 1, key.len, 3, idlen, clen,
                               s->tlens[i] };
            ok = sweep_send(ac, part_cb, s, 8, argv, lens) == 0;
        }
        buf_free(&key);
    }
    if (!ok)
        not_sent(s);
}

/* Steps 4 to 6, after the last route removal. */
static void send_tail(redisAsyncContext *ac, sweep *s)
{
    s->ph = PH_TAIL;
    char down[300];
    snprintf(down, sizeof down, "%s%s", SCHEMA_EVENT_SHARD_DOWN, s->id);
    const char *srem[3] = { "SREM", s->k_shards, s->id };
    size_t srem_l[3] = { 4, strlen(s->k_shards), strlen(s->id) };
    const char *end[8] = { "EVAL", script(s, SCHEMA_LUA_SWEEP_END), "3", s->k_lease,
                           s->k_rev, s->k_mark, s->dead ? "dead" : "force", s->name };
    size_t end_l[8];
    for (int i = 0; i < 8; i++)
        end_l[i] = strlen(end[i]);
    const char *pub[3] = { "PUBLISH", s->k_routes, down };
    size_t pub_l[3] = { 7, strlen(s->k_routes), strlen(down) };
    if (sweep_send(ac, part_cb, s, 3, srem, srem_l) != 0 ||
        sweep_send(ac, part_cb, s, 8, end, end_l) != 0 ||
        sweep_send(ac, part_cb, s, 3, pub, pub_l) != 0)
        not_sent(s);
}

static void begin_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    sweep *s = privdata;
    redisReply *rep = reply;
    s->parts--;
    if (!rep || rep->type != REDIS_REPLY_INTEGER) {
        fail(s, rep, NULL);
        finish(s);
        return;
    }
    if (rep->integer < 0) {        /* alive, or swept by another */
        s->removed = -1;
        finish(s);
        return;
    }
    progressed(s);
    send_next(ac, s);
}

int sweep_shard(redisAsyncContext *ac, const sweep_opts *o, const char *id,
                sweep_done_fn *done, void *arg)
{
    sweep *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    s->chunk = o->chunk < 1 ? 1 : o->chunk > SCHEMA_CHUNK_MAX ? SCHEMA_CHUNK_MAX : o->chunk;
    s->prefix = strdup(o->prefix);
    s->id = strdup(id);
    s->cluster = o->cluster;
    s->k_lease = schema_lease_key(o->prefix, o->cluster, id);
    s->k_rev = schema_tokens_key(o->prefix, o->cluster, id);
    s->k_mark = schema_sweep_key(o->prefix, o->cluster, id);
    s->k_routes = schema_routes_channel(o->prefix);
    s->k_shards = schema_shards_key(o->prefix);
    s->k_rprefix = schema_route_prefix(o->prefix);
    s->toks = calloc(s->chunk, sizeof *s->toks);
    s->tlens = calloc(s->chunk, sizeof *s->tlens);
    s->dead = o->dead;
    s->done = done;
    s->step = o->step;
    s->arg = arg;
    schema_random_hex(s->name);
    if (!s->prefix || !s->id || !s->k_lease || !s->k_rev || !s->k_mark || !s->k_routes ||
        !s->k_shards || !s->k_rprefix || !s->toks || !s->tlens)
        goto err;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%d", SCHEMA_SWEEP_TTL_MS);
    const char *argv[9] = { "EVAL", script(s, SCHEMA_LUA_SWEEP_BEGIN), "3", s->k_lease,
                            s->k_rev, s->k_mark, o->dead ? "dead" : "force", s->name, ttl };
    size_t lens[9];
    for (int i = 0; i < 9; i++)
        lens[i] = strlen(argv[i]);
    s->ph = PH_BEGIN;
    if (sweep_send(ac, begin_cb, s, 9, argv, lens) != 0)
        goto err;
    return 0;
err:
    sweep_free(s);
    return -1;
}
