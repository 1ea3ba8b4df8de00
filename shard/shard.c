/* Process lifecycle: wiring of the shard's modules, signals, shutdown. */
#include "shard/shard.h"
#include "common/addr.h"
#include "common/net.h"
#include "shard/fanout.h"
#include "shard/ingress.h"
#include "shard/registry.h"
#include "shard/server.h"
#include "shard/resume.h"
#include "shard/sysstat.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"

#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <event2/event.h>

#define SHARD_MIN_SANE_CONNECTIONS 100

long shard_derive_max_connections(long requested, long nofile, long reserve,
                                  long pending)
{
    long cap = nofile - reserve - pending;
    if (cap < 1)
        cap = 1;
    if (requested > 0 && requested < cap)
        return requested;
    return cap;
}

void shard_gauges_fill(const shard_ctx *ctx, shard_gauges *g)
{
    memset(g, 0, sizeof(*g));
    if (ctx->srv) {
        shard_server_gauges sg;
        shard_server_gauges_get(ctx->srv, &sg);
        g->connections = sg.connections;
        g->pending = sg.pending;
        g->closing = sg.closing;
        g->queue_bytes = sg.queue_bytes;
        g->ip_table_entries = sg.ip_table_entries;
        g->parser_contexts = sg.parser_contexts;
        g->partial_bytes = sg.partial_bytes;
        g->inflated = sg.inflated;
        g->inflate_refused = sg.inflate_refused;
    }
    g->max_connections = ctx->max_connections;
    g->subscriptions = (long)subs_total(ctx->subs);
    g->tokens = (long)subs_tokens_count(ctx->subs);
    g->channels = (long)subs_channels_count(ctx->subs);
    g->routers = shard_ingress_routers(ctx->ing);
    g->routers_pending = shard_ingress_pending(ctx->ing);
    g->fd_limit = ctx->fd_limit;
    g->redis_connected = shard_registry_connected(ctx->reg);
    g->redis_pending = shard_registry_pending(ctx->reg);
    g->uptime_s = (double)(clock_mono_ms() - ctx->start_mono_ms) / 1000.0;
    g->stopping = ctx->stopping;
    g->draining = ctx->draining;
    g->shard_id = ctx->set->shard_id;
    g->resumes = shard_resume_active(ctx->resume);
    g->replay_memory = shard_resume_memory(ctx->resume);
    g->replay_memory_limit = ctx->set->resume_memory_bytes;
    g->replay_partitions = shard_resume_partitions(ctx->resume);
    g->replay_history = shard_resume_history(ctx->resume);
    sysstat st;
    sysstat_sample(ctx->cpu, &st, g->uptime_s);
    g->cpu_percent = st.cpu_percent;
    g->rss_bytes = st.rss_bytes;
    g->mem_limit_bytes = st.limit_bytes;
    g->mem_percent = st.mem_percent;
}

typedef struct run_state {
    shard_ctx *ctx;
    int reg_done, clients_done;
    struct event *deadline;
} run_state;

static void on_token(void *ud, const char *tok, size_t len, int added)
{
    shard_ctx *ctx = ud;
    shard_registry_token(ctx->reg, tok, len, added);
}

/* registry -> server: what the lease advertises (the server is freed
 * before the registry at exit) */
static void on_advert(void *ud, registry_advert *a)
{
    const shard_ctx *ctx = ud;
    if (!ctx->srv)
        return;
    a->connections = shard_server_connections(ctx->srv);
    a->ws_addr = shard_server_ws_addr(ctx->srv);
    a->admin_addr = shard_server_admin_addr(ctx->srv);
}

/* resume -> server: the per-address reconnect rate (RESUME_IP_RATE) */
static int on_ip_reconnect_allow(void *ud, void *owner, uint64_t now)
{
    const shard_ctx *ctx = ud;
    return shard_server_ip_reconnect_allow(
        ctx->srv, client_peer_const(client_from_owner(owner)), now);
}

/* resume -> a client: replayed and held records, acks and errors */
static int on_resume_push(void *ud, void *owner, ws_chunk *ch)
{
    return client_push(client_from_owner(owner), ch);
}

static int on_resume_text(void *ud, void *owner, const char *data, size_t len)
{
    return client_send_text(client_from_owner(owner), data, len);
}

/* ingress -> fanout: a router's record goes to the local subscribers */
static void on_record(void *ud, const frame_record *r)
{
    fanout_deliver(ud, r);
}

static void maybe_exit(run_state *rs)
{
    if (rs->reg_done && rs->clients_done)
        event_base_loopexit(rs->ctx->base, NULL);
}

static void on_reg_done(void *ud)
{
    run_state *rs = ud;
    rs->reg_done = 1;
    maybe_exit(rs);
}

static void on_clients_done(void *ud)
{
    run_state *rs = ud;
    rs->clients_done = 1;
    maybe_exit(rs);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    run_state *rs = arg;
    log_kv(LOG_WARN, "shutdown timeout; exiting", "b:deregistered",
           rs->reg_done, "b:clients_closed", rs->clients_done, NULL);
    event_base_loopexit(rs->ctx->base, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    run_state *rs = arg;
    shard_ctx *ctx = rs->ctx;
    if (ctx->stopping) {
        log_kv(LOG_WARN, "second signal; exiting now", "i:signal", (int)sig,
               NULL);
        event_base_loopexit(ctx->base, NULL);
        return;
    }
    ctx->stopping = 1;
    log_kv(LOG_INFO, "shutting down", "i:signal", (int)sig, "i:clients",
           (int)shard_server_connections(ctx->srv), NULL);
    double t = ctx->set->shutdown_timeout;
    struct timeval tv = { (time_t)t, (suseconds_t)((t - (time_t)t) * 1e6) };
    event_add(rs->deadline, &tv);
    shard_ingress_stop(ctx->ing);
    shard_registry_shutdown(ctx->reg, on_reg_done, rs);
    shard_server_shutdown(ctx->srv, on_clients_done, rs);
}

/* SIGUSR1 toggles drain mode: /health turns 503 ("draining") so load
 * balancers stop sending new clients, and new upgrades get 503, while the
 * connected clients keep being served.  SIGTERM then closes the rest with
 * 1001.  A second SIGUSR1 ends the drain. */
static void on_drain(evutil_socket_t sig, short what, void *arg)
{
    (void)sig; (void)what;
    shard_ctx *ctx = ((run_state *)arg)->ctx;
    ctx->draining = !ctx->draining;
    if (!ctx->stopping)
        shard_server_set_draining(ctx->srv, ctx->draining);
    log_kv(LOG_INFO, ctx->draining ? "draining: refusing new clients"
                                   : "drain ended: accepting new clients",
           "i:clients", (int)shard_server_connections(ctx->srv), NULL);
}

int shard_run(const shard_settings *set)
{
    int rc = 1;
    shard_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    shard_metrics_init(&ctx.m);
    ctx.set = set;
    ctx.gauges_fill = shard_gauges_fill;
    ctx.start_mono_ms = clock_mono_ms();
    ctx.start_wall_ms = clock_wall_ms();
    /* CPU baseline: /health's first figure covers the run, not the start
     * before it (loader, sanitizer init, settings) */
    sysstat_cpu cpu = { 0 };
    sysstat cpu0;
    sysstat_sample(&cpu, &cpu0, 0);
    ctx.cpu = &cpu;
    signal(SIGPIPE, SIG_IGN);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            struct rlimit up = { rl.rlim_max, rl.rlim_max };
            if (setrlimit(RLIMIT_NOFILE, &up) == 0)
                rl = up;
        }
        ctx.fd_limit = rl.rlim_cur == RLIM_INFINITY ? 1048576
                                                    : (long)rl.rlim_cur;
    } else {
        ctx.fd_limit = 1024;
    }
    /* the one replay reader's librdkafka handle (sockets, pipes), once */
    long reserve = set->fd_reserve;
    if (set->kafka_brokers && *set->kafka_brokers)
        reserve += RESUME_READER_FDS;
    ctx.max_connections = shard_derive_max_connections(
        set->max_connections, ctx.fd_limit, reserve, set->max_pending);
    if (set->max_connections > ctx.max_connections)
        log_kv(LOG_WARN, "WS_MAX_CONNECTIONS is above what the fd limit "
               "allows; lowered", "I:requested",
               (int64_t)set->max_connections, "I:max_connections",
               (int64_t)ctx.max_connections, NULL);
    if (ctx.max_connections < SHARD_MIN_SANE_CONNECTIONS &&
        (set->max_connections == 0 || set->max_connections > ctx.max_connections))
        log_kv(LOG_WARN, "max connections is tiny: fd limit minus WS_FD_RESERVE "
               "and WS_MAX_PENDING leaves almost nothing; lower WS_MAX_PENDING or "
               "raise the fd limit (ulimit -n)", "I:max_connections",
               (int64_t)ctx.max_connections, "I:fd_limit", (int64_t)ctx.fd_limit,
               "I:fd_reserve", (int64_t)reserve, "I:max_pending",
               (int64_t)set->max_pending, NULL);
    log_kv(LOG_INFO, "capacity", "I:fd_limit", (int64_t)ctx.fd_limit,
           "I:max_connections", (int64_t)ctx.max_connections,
           "b:derived", set->max_connections == 0, "I:fd_reserve",
           (int64_t)set->fd_reserve, "I:max_pending",
           (int64_t)set->max_pending, NULL);

    run_state rs = { &ctx, 0, 0, NULL };
    struct event *sigterm = NULL, *sigint = NULL, *sigusr1 = NULL;
    fanout *fan = NULL;   /* between ingress and the server's clients */
    ctx.base = event_base_new();
    if (!ctx.base)
        goto out;
    /* Signals are caught from here on, before any port accepts: a SIGTERM
     * that arrives while starting is served once the loop runs, instead of
     * killing the process with the default action (a supervisor that
     * stops a shard as soon as its port answers). */
    rs.deadline = evtimer_new(ctx.base, on_deadline, &rs);
    sigterm = evsignal_new(ctx.base, SIGTERM, on_signal, &rs);
    sigint = evsignal_new(ctx.base, SIGINT, on_signal, &rs);
    sigusr1 = evsignal_new(ctx.base, SIGUSR1, on_drain, &rs);
    if (!rs.deadline || !sigterm || !sigint || !sigusr1 ||
        event_add(sigterm, NULL) || event_add(sigint, NULL) ||
        event_add(sigusr1, NULL))
        goto out;
    ctx.dns = net_dns_new(ctx.base);
    if (!ctx.dns)
        goto out;
    ctx.subs = subs_new(on_token, &ctx);
    if (!ctx.subs)
        goto out;
    ctx.srv = shard_server_new(&ctx, NULL);
    if (!ctx.srv || shard_server_listen(ctx.srv) != 0)
        goto out;
    fanout_ops fops;
    shard_server_fanout_ops(ctx.srv, &fops);
    fan = fanout_new(ctx.subs, &ctx.m, (unsigned)set->envelope_types, &fops,
                     ctx.srv);
    if (!fan)
        goto out;
    ingress_callbacks icb = { .on_record = on_record, .ud = fan };
    ctx.ing = shard_ingress_new(&ctx, &icb);
    if (!ctx.ing)
        goto out;
    registry_callbacks rcb = { .advert = on_advert, .ud = &ctx };
    ctx.reg = shard_registry_new(&ctx, &rcb);
    if (!ctx.reg)
        goto out;
    resume_callbacks mcb = { .ip_reconnect_allow = on_ip_reconnect_allow,
                             .push = on_resume_push, .send_text = on_resume_text,
                             .ud = &ctx };
    ctx.resume = shard_resume_new(&ctx, &mcb);
    if (!ctx.resume)
        goto out;

    char redis_url[600];
    addr_redact_url(set->redis_url, redis_url, sizeof redis_url);
    log_kv(LOG_INFO, "shard started", "s:id", set->shard_id, "s:ws_addr",
           shard_server_ws_addr(ctx.srv), "s:socket", set->socket_path, "s:redis",
           redis_url, NULL);
    event_base_dispatch(ctx.base);
    rc = ctx.exit_code;
    log_kv(LOG_INFO, "shard stopped", "s:id", set->shard_id, NULL);
out:
    if (rc != 0)
        log_kv(LOG_ERROR, "shard failed to start", "s:id", set->shard_id,
               NULL);
    ctx.stopping = 1;
    shard_ingress_free(ctx.ing);
    ctx.ing = NULL;
    shard_resume_free(ctx.resume);   /* joins replay threads */
    ctx.resume = NULL;
    fanout_free(fan);
    shard_server_free(ctx.srv);   /* unsubscribes everyone */
    ctx.srv = NULL;
    shard_registry_free(ctx.reg);
    ctx.reg = NULL;
    subs_free(ctx.subs);
    net_dns_free(ctx.dns);
    if (sigterm) event_free(sigterm);
    if (sigint) event_free(sigint);
    if (sigusr1) event_free(sigusr1);
    if (rs.deadline) event_free(rs.deadline);
    if (ctx.base) event_base_free(ctx.base);
    return rc;
}
