#include "shard/registry_redis.h"
#include "common/redislink.h"

#include <stdlib.h>
#include <hiredis/async.h>

/* The production connection (shard/registry_redis.h): one redislink. */
typedef struct rr_link {
    redislink *link;
    registry_state_fn *state;
    void *arg;
} rr_link;

/* What a command's hiredis callback needs to reach the registry's. */
typedef struct rr_cmd {
    registry_reply_fn *fn;
    void *priv;
    void *arg;
} rr_cmd;

/* From redislink's deferred notification, never inside hiredis. */
static void rr_state(redislink *l, int up, void *arg)
{
    rr_link *rl = arg;
    if (rl->state)
        rl->state(up, up ? "" : redislink_errstr(l), rl->arg);
}

/* hiredis calls this once per command: its reply, or NULL when the
 * connection goes away (drop, free). */
static void rr_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    rr_cmd *c = priv;
    c->fn(c->arg, reply, c->priv);
    free(c);
}

static void rr_start(void *impl, registry_state_fn *state, void *arg)
{
    rr_link *rl = impl;
    rl->state = state;
    rl->arg = arg;
    redislink_start(rl->link);
}

static int rr_send(void *impl, registry_reply_fn *fn, void *priv, int argc,
                   const char **argv, const size_t *lens)
{
    rr_link *rl = impl;
    redisAsyncContext *ac = redislink_ctx(rl->link);
    if (!ac)
        return -1;
    if (!fn)
        return redisAsyncCommandArgv(ac, NULL, NULL, argc, argv, lens) == REDIS_OK
             ? 0 : -1;
    rr_cmd *c = malloc(sizeof *c);
    if (!c)
        return -1;
    *c = (rr_cmd){ fn, priv, rl->arg };
    if (redisAsyncCommandArgv(ac, rr_reply, c, argc, argv, lens) != REDIS_OK) {
        free(c);
        return -1;
    }
    return 0;
}

static int rr_sweep(void *impl, const sweep_opts *opts, const char *id,
                    sweep_done_fn *done, void *arg)
{
    rr_link *rl = impl;
    redisAsyncContext *ac = redislink_ctx(rl->link);
    return ac ? sweep_shard(ac, opts, id, done, arg) : -1;
}

static int rr_input_pending(void *impl)
{
    return redislink_input_pending(((rr_link *)impl)->link);
}

static void rr_drop(void *impl, const char *why)
{
    redislink_drop(((rr_link *)impl)->link, why);
}

static void rr_free(void *impl)
{
    rr_link *rl = impl;
    if (!rl)
        return;
    redislink_free(rl->link);   /* pending callbacks get NULL replies */
    free(rl);
}

static const registry_redis_ops rr_ops = {
    rr_start, rr_send, rr_sweep, rr_input_pending, rr_drop, rr_free,
};

int registry_redis_link(registry_redis *out, struct event_base *base,
                        struct evdns_base *dns, const redis_endpoint *ep,
                        long timeout_ms, long backoff_min_ms,
                        long backoff_max_ms)
{
    rr_link *rl = calloc(1, sizeof *rl);
    if (!rl)
        return -1;
    rl->link = redislink_new(base, ep, "registry", timeout_ms, backoff_max_ms,
                             rr_state, rl);
    if (!rl->link) {
        free(rl);
        return -1;
    }
    redislink_set_dns(rl->link, dns);
    redislink_set_backoff(rl->link, backoff_min_ms, backoff_max_ms);
    out->ops = &rr_ops;
    out->impl = rl;
    return 0;
}
