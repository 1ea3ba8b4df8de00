/*
 * The registry's Redis connection as shard/registry.c sees it: send a
 * command and get its reply later, start the shard's deregistration sweep
 * (common/sweep.h), and hear when the connection becomes usable or is lost.
 * registry.c calls nothing of hiredis or common/redislink itself, only these
 * ops, so it can be tested without a socket or a redis-server:
 *
 *   production  registry_redis_link: one common/redislink (reconnect with
 *               backoff, off-loop DNS, AUTH / Sentinel / SELECT, PING
 *               keepalive) and common/sweep.c on its context;
 *   unit test   tests/unit/test_registry.c: a fake that records every
 *               command and answers from the test's script.
 *
 * Reply order is Redis's: replies come back in the order the commands were
 * sent (one connection).  Replies are hiredis's redisReply values (a plain
 * data type; the fake builds them itself).
 */
#ifndef ODIN_SHARD_REGISTRY_REDIS_H
#define ODIN_SHARD_REGISTRY_REDIS_H

#include <stddef.h>
#include <hiredis/hiredis.h>

#include "common/addr.h"
#include "common/sweep.h"

struct event_base;
struct evdns_base;

/* A command's answer.  arg: the one given to start; priv: the command's.
 * reply is NULL when the connection was lost (dropped, freed) before the
 * answer came; it is valid during the call only.  Called exactly once for
 * every command sent with a callback, never from inside send. */
typedef void registry_reply_fn(void *arg, const redisReply *reply, void *priv);

/* The connection became usable (up = 1: the handshake is done, commands may
 * go out) or was lost after having been usable (up = 0; why: the reason, for
 * logs).  Always from the event loop, never inside a reply callback or an
 * ops call, so the callee may send or drop from it. */
typedef void registry_state_fn(int up, const char *why, void *arg);

typedef struct registry_redis_ops {
    /* Start connecting; state and every reply callback get arg from now on. */
    void (*start)(void *impl, registry_state_fn *state, void *arg);
    /* Send argv[0..argc) (binary-safe, lens given).  fn NULL: no reply
     * wanted.  0 sent, -1 not sent (not connected, or out of memory): fn
     * is then never called. */
    int (*send)(void *impl, registry_reply_fn *fn, void *priv, int argc,
                const char **argv, const size_t *lens);
    /* sweep_shard (common/sweep.h) on the connection; 0, or -1 (not
     * connected, out of memory): done is then never called. */
    int (*sweep)(void *impl, const sweep_opts *opts, const char *id,
                 sweep_done_fn *done, void *arg);
    /* 1 if Redis's answers wait unread (redislink_input_pending): a reply
     * timeout is then the loop's lateness, not Redis's.  Else 0. */
    int (*input_pending)(void *impl);
    /* Drop the connection now and reconnect later: pending callbacks get
     * NULL before this returns; state(0) may follow.  Not from inside a
     * reply callback. */
    void (*drop)(void *impl, const char *why);
    /* Disconnect and free; pending callbacks get NULL replies. */
    void (*free)(void *impl);
} registry_redis_ops;

/* A connection: its ops and their object (a value type; whoever holds it
 * frees it once, with ops->free(impl)). */
typedef struct registry_redis {
    const registry_redis_ops *ops;
    void *impl;
} registry_redis;

/*
 * The production connection: a common/redislink named "registry" to ep
 * (copied), connect timeout timeout_ms, backoff backoff_min_ms ..
 * backoff_max_ms, host names resolved with dns (borrowed; must outlive the
 * connection; NULL: the link makes its own).  Nothing happens until
 * ops->start.  0, or -1 on ENOMEM (*out untouched).
 */
int registry_redis_link(registry_redis *out, struct event_base *base,
                        struct evdns_base *dns, const redis_endpoint *ep,
                        long timeout_ms, long backoff_min_ms,
                        long backoff_max_ms);

#endif
