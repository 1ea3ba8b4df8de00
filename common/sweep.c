#include "common/sweep.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "common/buf.h"
#include "common/schema.h"

typedef struct sweep {
    char *prefix, *id;
    char *k_lease, *k_rev, *k_mark;
    int dead;
    char name[33];           /* this sweep's marker value */
    sweep_done_fn *done;
    void *arg;
    size_t parts;            /* replies still due in this phase */
    int tail;                /* the route removals are done: steps 3-5 sent */
    char **toks;             /* the reverse index BEGIN returned */
    size_t *tlens, ntoks;
    size_t next;             /* first token whose removal is not sent yet */
    long long removed;
    int failed;              /* a step failed or the connection went */
    char err[160];
} sweep;

static void sweep_free(sweep *s)
{
    free(s->prefix);
    free(s->id);
    free(s->k_lease);
    free(s->k_rev);
    free(s->k_mark);
    for (size_t i = 0; i < s->ntoks; i++)
        free(s->toks[i]);
    free(s->toks);
    free(s->tlens);
    free(s);
}

static void finish(sweep *s)
{
    s->done(s->failed ? -2 : s->removed, s->failed ? s->err : NULL, s->arg);
    sweep_free(s);
}

static void fail(sweep *s, const redisReply *rep)
{
    if (s->failed)
        return;
    s->failed = 1;
    snprintf(s->err, sizeof s->err, "%s",
             !rep ? "connection lost"
             : rep->type == REDIS_REPLY_ERROR ? rep->str
             : rep->type == REDIS_REPLY_INTEGER ? "sweep marker expired before the end"
                                                : "unexpected reply");
}

static void send_tail(redisAsyncContext *ac, sweep *s);
static void send_chunk(redisAsyncContext *ac, sweep *s);

/* Steps 3-5 go out only once every route removal succeeded: Redis runs a
 * pipeline's later commands whatever became of the earlier ones, and a
 * shard that left P shards (or its reverse index) with routes still
 * pointing at it would never be swept again. */
static void part_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    sweep *s = privdata;
    redisReply *rep = reply;
    if (!rep || rep->type == REDIS_REPLY_ERROR)
        fail(s, rep);
    else if (rep->type == REDIS_REPLY_INTEGER && rep->integer < 0)
        fail(s, rep);                    /* END: the marker expired meanwhile */
    if (--s->parts > 0)
        return;
    if (s->failed || s->tail)
        finish(s);
    else if (s->next < s->ntoks)
        send_chunk(ac, s);
    else
        send_tail(ac, s);
}

/* One SCHEMA_LUA_ROUTE_ONE 'del' reply: 1 if the shard left that route set. */
static void route_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    sweep *s = privdata;
    redisReply *rep = reply;
    if (rep && rep->type == REDIS_REPLY_INTEGER)
        s->removed += rep->integer;
    part_cb(ac, reply, privdata);
}

static int sweep_send(redisAsyncContext *ac, redisCallbackFn *fn, sweep *s, int argc,
                      const char **argv, const size_t *lens)
{
    if (redisAsyncCommandArgv(ac, fn, s, argc, argv, lens) != REDIS_OK)
        return -1;
    s->parts++;
    return 0;
}

/* Keep this sweep's marker alive while its route removals run (a reply
 * of 0, the marker already gone, is left to the end script to report). */
static int refresh_marker(redisAsyncContext *ac, sweep *s)
{
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%d", SCHEMA_SWEEP_TTL_MS);
    const char *argv[6] = { "EVAL", SCHEMA_LUA_SWEEP_REFRESH, "1", s->k_mark, s->name, ttl };
    size_t lens[6];
    for (int i = 0; i < 6; i++)
        lens[i] = strlen(argv[i]);
    return sweep_send(ac, part_cb, s, 6, argv, lens);
}

/* hiredis refused a command (connection going, or ENOMEM): what went out
 * still answers; report a failure then. */
static void not_sent(sweep *s)
{
    s->failed = 1;
    snprintf(s->err, sizeof s->err, "%s", "command not sent");
    if (s->parts == 0)
        finish(s);
}

/* Steps 3 to 5, after the route removals. */
static void send_tail(redisAsyncContext *ac, sweep *s)
{
    s->tail = 1;
    char channel[512], shards[512], down[300];
    snprintf(channel, sizeof channel, "%sroutes", s->prefix);
    snprintf(shards, sizeof shards, "%sshards", s->prefix);
    snprintf(down, sizeof down, "%s%s", SCHEMA_EVENT_SHARD_DOWN, s->id);
    const char *srem[3] = { "SREM", shards, s->id };
    size_t srem_l[3] = { 4, strlen(shards), strlen(s->id) };
    int sent_all = sweep_send(ac, part_cb, s, 3, srem, srem_l) == 0;
    if (sent_all) {
        size_t argc = 8 + s->ntoks;
        const char **argv = malloc(argc * sizeof *argv);
        size_t *lens = malloc(argc * sizeof *lens);
        sent_all = argv && lens;
        if (sent_all) {
            size_t k = 0;
            argv[k] = "EVAL";                   lens[k++] = 4;
            argv[k] = SCHEMA_LUA_SWEEP_END;     lens[k++] = strlen(SCHEMA_LUA_SWEEP_END);
            argv[k] = "3";                      lens[k++] = 1;
            argv[k] = s->k_lease;               lens[k++] = strlen(s->k_lease);
            argv[k] = s->k_rev;                 lens[k++] = strlen(s->k_rev);
            argv[k] = s->k_mark;                lens[k++] = strlen(s->k_mark);
            argv[k] = s->dead ? "dead" : "force"; lens[k++] = s->dead ? 4 : 5;
            argv[k] = s->name;                  lens[k++] = strlen(s->name);
            for (size_t i = 0; i < s->ntoks; i++) {
                argv[k] = s->toks[i];
                lens[k++] = s->tlens[i];
            }
            sent_all = sweep_send(ac, part_cb, s, (int)k, argv, lens) == 0;
        }
        free(argv);
        free(lens);
    }
    if (sent_all) {
        const char *argv[3] = { "PUBLISH", channel, down };
        size_t lens[3] = { 7, strlen(channel), strlen(down) };
        sent_all = sweep_send(ac, part_cb, s, 3, argv, lens) == 0;
    }
    if (!sent_all)
        not_sent(s);
}

/* Step 2, SCHEMA_SWEEP_REFRESH_STEPS removals at a time: the next chunk
 * (after a marker refresh) goes out from part_cb once this one has been
 * answered, so hiredis's output buffer stays small whatever the index size
 * and the router's lookups on the same connection wait one chunk at most. */
static void send_chunk(redisAsyncContext *ac, sweep *s)
{
    int sent_all = 1;
    if (s->next > 0 && s->dead)
        sent_all = refresh_marker(ac, s) == 0;
    buf key = { 0 };
    char channel[512];
    snprintf(channel, sizeof channel, "%sroutes", s->prefix);
    size_t plen = strlen(s->prefix), idlen = strlen(s->id), clen = strlen(channel);
    size_t end = s->next + SCHEMA_SWEEP_REFRESH_STEPS;
    if (end > s->ntoks)
        end = s->ntoks;
    for (; s->next < end && sent_all; s->next++) {
        size_t i = s->next;
        buf_reset(&key);
        if (buf_append(&key, s->prefix, plen) != 0 || buf_append(&key, "route:", 6) != 0 ||
            buf_append(&key, s->toks[i], s->tlens[i]) != 0) {
            sent_all = 0;
            break;
        }
        const char *argv[8] = { "EVAL", SCHEMA_LUA_ROUTE_ONE, "1", key.data, "del", s->id,
                                channel, s->toks[i] };
        size_t lens[8] = { 4, strlen(SCHEMA_LUA_ROUTE_ONE), 1, key.len, 3, idlen, clen,
                           s->tlens[i] };
        sent_all = sweep_send(ac, route_cb, s, 8, argv, lens) == 0;
    }
    buf_free(&key);
    if (!sent_all)
        not_sent(s);
}

/* Keeps the reverse index `toks` (for the end script), then step 2. */
static void sweep_rest(redisAsyncContext *ac, sweep *s, const redisReply *toks)
{
    size_t n = toks->elements;
    s->toks = calloc(n ? n : 1, sizeof *s->toks);
    s->tlens = calloc(n ? n : 1, sizeof *s->tlens);
    if (!s->toks || !s->tlens) {
        not_sent(s);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *t = toks->element[i];
        if (t->type != REDIS_REPLY_STRING)
            continue;
        if (!(s->toks[s->ntoks] = malloc(t->len + 1))) {
            not_sent(s);
            return;
        }
        memcpy(s->toks[s->ntoks], t->str, t->len + 1);
        s->tlens[s->ntoks++] = t->len;
    }
    if (s->ntoks)
        send_chunk(ac, s);
    else
        send_tail(ac, s);            /* an empty index */
}

static void begin_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    sweep *s = privdata;
    redisReply *rep = reply;
    if (!rep || rep->type == REDIS_REPLY_ERROR ||
        (rep->type != REDIS_REPLY_ARRAY && rep->type != REDIS_REPLY_INTEGER)) {
        fail(s, rep);
        finish(s);
        return;
    }
    if (rep->type == REDIS_REPLY_INTEGER) {   /* -1: alive, or swept by another */
        s->removed = -1;
        finish(s);
        return;
    }
    sweep_rest(ac, s, rep);
}

int sweep_shard(redisAsyncContext *ac, const char *prefix, const char *id,
                int dead, sweep_done_fn *done, void *arg)
{
    sweep *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    s->prefix = strdup(prefix);
    s->id = strdup(id);
    s->k_lease = schema_shard_key(prefix, 1, id, "");
    s->k_rev = schema_shard_key(prefix, 1, id, ":tokens");
    s->k_mark = schema_shard_key(prefix, 1, id, ":sweep");
    s->dead = dead;
    s->done = done;
    s->arg = arg;
    schema_random_hex(s->name);
    if (!s->prefix || !s->id || !s->k_lease || !s->k_rev || !s->k_mark)
        goto err;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%d", SCHEMA_SWEEP_TTL_MS);
    const char *argv[9] = { "EVAL", SCHEMA_LUA_SWEEP_BEGIN, "3", s->k_lease, s->k_rev,
                            s->k_mark, dead ? "dead" : "force", s->name, ttl };
    size_t lens[9];
    for (int i = 0; i < 9; i++)
        lens[i] = strlen(argv[i]);
    if (redisAsyncCommandArgv(ac, begin_cb, s, 9, argv, lens) != REDIS_OK)
        goto err;
    return 0;
err:
    sweep_free(s);
    return -1;
}
