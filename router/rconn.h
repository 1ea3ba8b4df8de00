/*
 * One hiredis async connection (libevent adapter) that reconnects itself
 * with exponential backoff.  hiredis 0.14 has no connect or command
 * timeouts and frees its context after the disconnect callback, so:
 *   - a connect timer drops attempts that take longer than timeout_ms;
 *   - every (re)connect creates a fresh redisAsyncContext;
 *   - user notifications (up/down) are delivered from a zero-delay event,
 *     never from inside hiredis' connect/disconnect callbacks, so the user
 *     may issue commands or drop the connection from them.
 * Pending command callbacks get a NULL reply when the connection goes away
 * (hiredis behaviour); they must only record the failure.
 */
#ifndef ODIN_ROUTER_RCONN_H
#define ODIN_ROUTER_RCONN_H

#include <event2/event.h>
#include <hiredis/async.h>

#include "common/config.h"

typedef struct router_rconn router_rconn;

/* up = 1: connected (and SELECTed); up = 0: connection lost / attempt
 * failed after having been up.  Called from the event loop. */
typedef void (*router_rconn_cb)(router_rconn *c, int up, void *arg);

/* name is for logs.  NULL on ENOMEM.  Nothing happens until _start. */
router_rconn *router_rconn_new(struct event_base *base, const redis_endpoint *ep,
                               const char *name, long timeout_ms, long backoff_max_ms,
                               router_rconn_cb cb, void *arg);
void router_rconn_start(router_rconn *c);

/* The live context, or NULL while not connected. */
redisAsyncContext *router_rconn_ctx(router_rconn *c);

/* Drop the connection now (pending callbacks get NULL replies before this
 * returns) and reconnect after the backoff.  Safe from event callbacks, not
 * from inside a hiredis reply callback of this connection. */
void router_rconn_drop(router_rconn *c, const char *why);

/* Disconnect and free; pending callbacks get NULL replies.  NULL no-op. */
void router_rconn_free(router_rconn *c);

#endif
