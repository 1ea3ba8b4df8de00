/*
 * The context the shard's modules share (shard/ctx.h): the event base, the
 * resolver, the settings, the counters, the channel index and the
 * long-lived objects.  Plain data: shard.c (the wiring, shard/shard.h)
 * fills it and owns everything it points to; a module reads what it needs
 * and reaches the others only through the pointers' own headers.  Kept out
 * of shard/shard.h so that a module including it does not depend on the
 * wiring that includes the module (tests/it/include_graph.sh).
 */
#ifndef ODIN_SHARD_CTX_H
#define ODIN_SHARD_CTX_H

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
struct sysstat_cpu;

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
    /* The wiring's sample for /health and /metrics (shard_gauges_fill,
     * shard/shard.h), for the pages the server renders, and the previous
     * CPU sample it averages from (shard/sysstat.h; shard_run's, NULL:
     * CPU over the whole uptime). */
    void (*gauges_fill)(const struct shard_ctx *ctx, shard_gauges *g);
    struct sysstat_cpu *cpu;
} shard_ctx;

#endif
