/*
 * The shard process: one event loop, one shard_ctx shared by its modules
 * (server = clients and HTTP, ingress = router links, registry = Redis,
 * subs = channel index, resume = reconnect replays, whose reader is the one
 * other thread).  main.c parses settings and calls shard_run().  Module map
 * and threads: docs/architecture.md, sections 16 and 8.
 */
#ifndef ODIN_SHARD_SHARD_H
#define ODIN_SHARD_SHARD_H

#include <stdint.h>
#include "common/buf.h"
#include "shard/metrics.h"
#include "shard/settings.h"
#include "shard/subs.h"

struct event_base;
struct evdns_base;
struct shard_server;
struct shard_registry;
struct shard_ingress;
struct shard_resume;

typedef struct shard_ctx {
    struct event_base *base;
    struct evdns_base *dns;   /* resolver (common/net.h net_dns_new) */
    const shard_settings *set;
    shard_metrics m;
    subs_index *subs;
    struct shard_server *srv;
    struct shard_registry *reg;
    struct shard_ingress *ing;
    struct shard_resume *resume;   /* reconnect replays */
    uint64_t start_mono_ms;
    uint64_t start_wall_ms;
    long fd_limit;            /* RLIMIT_NOFILE (soft, raised to hard) */
    long max_connections;     /* effective WS_MAX_CONNECTIONS */
    int stopping;             /* SIGTERM received */
    int draining;             /* SIGUSR1: refuse new clients, keep the open ones */
    int exit_code;            /* non-zero: a module gave up (e.g. duplicate SHARD_ID) */
} shard_ctx;

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
