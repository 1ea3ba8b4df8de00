/*
 * The shard process: one event loop, one shard_ctx shared by its modules
 * (server = clients and HTTP, ingress = router links, registry = Redis,
 * subs = channel index, resume = reconnect replays, whose reader is the one
 * other thread).  main.c parses settings and calls shard_run().  Module map
 * and threads: docs/architecture.md, sections 16 and 8.
 */
#ifndef ODIN_SHARD_SHARD_H
#define ODIN_SHARD_SHARD_H

#include "shard/ctx.h"

/* Fill the gauges for /metrics and /health. */
void shard_gauges_fill(const shard_ctx *ctx, shard_gauges *g);

/*
 * Run a shard until SIGTERM/SIGINT: bind, register, serve, then deregister,
 * close clients with 1001 and return 0 (or 1 if startup failed).
 */
int shard_run(const shard_settings *set);

/*
 * Derive the connection cap: min(requested or unlimited, nofile - reserve -
 * pending), at least 1.  Pure, for tests.
 */
long shard_derive_max_connections(long requested, long nofile, long reserve,
                                  long pending);

#endif
