/*
 * odin-router: the process.  One libevent loop thread owns everything:
 * the Kafka consumer (polled through rd_kafka_queue_io_event_enable's pipe,
 * drained with rd_kafka_consume_batch_queue(timeout 0)), the two Redis
 * connections, the shard connections and the HTTP server.  See
 * docs/architecture.md for the pipeline.
 */
#ifndef ODIN_ROUTER_ROUTER_H
#define ODIN_ROUTER_ROUTER_H

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
