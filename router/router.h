/*
 * odin-router: the process.  One libevent loop thread owns everything.  The
 * router (router.c) is the batch pipeline and its wiring: the owner of the
 * objects it is built from, the offset store, the shutdown stages:
 *
 *   consumer   (consumer.c)   Kafka consumer, accumulator, offsets store
 *   lookup     (lookup.c)     batch arena, miss table, pipelined SMEMBERS
 *   discovery  (discovery.c)  odin:routes subscription, lease discovery,
 *                             dead-shard sweep; owns the Redis connections
 *   shards     (shards.c)     shard table, connections, frames
 *   tickets    (tickets.c)    completion tickets, offsets marked done
 *   hold       (hold.c)       the hold policy (targeted / fallback / hold)
 *   leavegroup (leavegroup.c) KAFKA_EVICT_PREVIOUS only
 *   route_cache, router_offsets, router_http (http.c: reads the router
 *                             through router_http_callbacks)
 *
 * Objects report back through callbacks; none of them sees this struct.
 * See docs/architecture.md for the pipeline and the module map.
 */
#ifndef ODIN_ROUTER_ROUTER_H
#define ODIN_ROUTER_ROUTER_H

#include <stdint.h>

#include "router/config.h"

typedef struct router router;

/* Build everything (consumer subscribed, HTTP bound, Redis connecting).
 * cfg must outlive the router.  NULL on failure (reason logged). */
router *router_new(const router_config *cfg);

/* Run until SIGTERM/SIGINT and the graceful shutdown finished (offsets
 * stored and committed, consumer closed).  Returns the exit code. */
int router_run(router *r);

void router_free(router *r);   /* NULL is a no-op */

#endif
