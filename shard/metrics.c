#include "shard/metrics.h"
#include "common/prom.h"
#include "shard/clientmsg.h"
#include "common/record.h"

#include <inttypes.h>
#include <string.h>

void shard_metrics_count_close(shard_metrics *m, unsigned code)
{
    int i;
    switch (code) {
    case 1000: i = SM_CLOSE_1000; break;
    case 1001: i = SM_CLOSE_1001; break;
    case 1002: i = SM_CLOSE_1002; break;
    case 1003: i = SM_CLOSE_1003; break;
    case 1007: i = SM_CLOSE_1007; break;
    case 1008: i = SM_CLOSE_1008; break;
    case 1009: i = SM_CLOSE_1009; break;
    case 1011: i = SM_CLOSE_1011; break;
    default: i = SM_CLOSE_OTHER; break;
    }
    m->ws_disconnects_total[i]++;
}

static const double replay_seconds_bounds[] = {
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30
};
static const double pass_requests_bounds[] = {
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000
};

void shard_metrics_init(shard_metrics *m)
{
    memset(m, 0, sizeof *m);
    prom_hist_init(&m->shard_delivery_latency, prom_latency_bounds, prom_latency_nbounds);
    prom_hist_init(&m->ws_replay_seconds, replay_seconds_bounds,
                   sizeof(replay_seconds_bounds) / sizeof(replay_seconds_bounds[0]));
    prom_hist_init(&m->ws_replay_pass_requests, pass_requests_bounds,
                   sizeof(pass_requests_bounds) / sizeof(pass_requests_bounds[0]));
}

/* Label values of the LABELLED entries of shard/metrics_list.h, indexed
 * like the counters. */
#define SM_NAMES(fn, n, ...)                                               \
    static const char *const fn##_v[] = { __VA_ARGS__ };                   \
    _Static_assert(sizeof fn##_v / sizeof fn##_v[0] == (n),                \
                   #fn ": one label value per counter");                   \
    static const char *fn(int i) { return fn##_v[i]; }
SM_NAMES(sm_proxy_name, SM_PROXY_N, "untrusted", "missing", "invalid")
SM_NAMES(sm_admin_path_name, 2, "/metrics", "/health")
SM_NAMES(sm_admin_api_reason_name, 3, "unauthorized", "forbidden", "ratelimit")
SM_NAMES(sm_resume_name, SM_RESUME_N, "ok", "too_far_behind", "position_expired",
         "invalid_position", "unavailable", "busy", "rate_limited")
SM_NAMES(sm_close_name, SM_CLOSE_N, "1000", "1001", "1002", "1003", "1007", "1008",
         "1009", "1011", "other")
SM_NAMES(sm_drop_name, SM_DROP_N, "no_subscribers", "no_channel", "nomem")
SM_NAMES(sm_ingress_name, SM_INGRESS_N, "pending_full", "source_pending", "timeout",
         "oversized", "max_routers", "version", "identity", "protocol")
static const char *sm_client_err_name(int i)
{
    return clientmsg_code((enum clientmsg_err)i);
}
static const char *sm_replay_skip_name(int i)
{
    return record_invalid_name((enum record_invalid)i);
}

/* One statement per entry of the list, `o`, `m`, `g` and `e` in scope. */
#define SM_RENDER_COUNTER(f, name, help) e |= prom_counter(o, name, help, m->f);
#define SM_RENDER_SECONDS(f, name, help)                                   \
    e |= prom_head(o, name, "counter", help);                             \
    e |= buf_appendf(o, "%s %.3f\n", name, m->f);
#define SM_RENDER_LABELLED(f, name, help, label, n, first, names)          \
    e |= prom_head(o, name, "counter", help);                             \
    for (int i = (first); i < (n); i++)                                    \
        e |= buf_appendf(o, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label,   \
                         names(i), m->f[i]);
#define SM_RENDER_HIST(f, name, help) e |= prom_hist_render(&m->f, o, name, help);
#define SM_RENDER_FIELD(type, f)
#define SM_RENDER_VALUE_counter(expr, name, help)                          \
    e |= prom_counter(o, name, help, (uint64_t)(expr));
#define SM_RENDER_VALUE_gauge(expr, name, help)                            \
    e |= prom_gauge(o, name, help, (double)(expr));
#define SM_RENDER_VALUE(type, expr, name, help) SM_RENDER_VALUE_##type(expr, name, help)
#define SM_RENDER_INFO(expr, name, help, label)                            \
    if (expr) {                                                            \
        e |= prom_head(o, name, "gauge", help);                            \
        e |= buf_appendf(o, "%s{%s=\"%s\"} 1\n", name, label, expr);       \
    }
#define SM_RENDER(kind, ...) SM_RENDER_##kind(__VA_ARGS__)

int shard_metrics_render(buf *o, const shard_metrics *m, const shard_gauges *g)
{
    int e = 0;
    SHARD_METRICS(SM_RENDER)
    return e ? -1 : 0;
}

/* --metrics-list: name, type, label, label values, help. */
static int list_row(buf *o, const char *name, const char *type, const char *label,
                    int first, int n, const char *(*names)(int), const char *help)
{
    int e = buf_appendf(o, "%s\t%s\t%s\t", name, type, label);
    for (int i = first; i < n; i++)
        e |= buf_appendf(o, "%s%s", i > first ? "," : "", names(i));
    return e | buf_appendf(o, "\t%s\n", help);
}
#define SM_LIST_COUNTER(f, name, help) e |= list_row(o, name, "counter", "", 0, 0, NULL, help);
#define SM_LIST_SECONDS(f, name, help) e |= list_row(o, name, "counter", "", 0, 0, NULL, help);
#define SM_LIST_LABELLED(f, name, help, label, n, first, names)            \
    e |= list_row(o, name, "counter", label, first, n, names, help);
#define SM_LIST_HIST(f, name, help) e |= list_row(o, name, "histogram", "", 0, 0, NULL, help);
#define SM_LIST_FIELD(type, f)
#define SM_LIST_VALUE(type, expr, name, help) e |= list_row(o, name, #type, "", 0, 0, NULL, help);
#define SM_LIST_INFO(expr, name, help, label) e |= list_row(o, name, "gauge", label, 0, 0, NULL, help);
#define SM_LIST(kind, ...) SM_LIST_##kind(__VA_ARGS__)

int shard_metrics_list(buf *o)
{
    int e = 0;
    SHARD_METRICS(SM_LIST)
    return e ? -1 : 0;
}

int shard_health_render(buf *o, const shard_gauges *g)
{
    double pct = g->max_connections > 0
                     ? 100.0 * (double)g->connections / (double)g->max_connections
                     : 100.0;
    const char *status = "healthy";
    if (g->draining && !g->stopping)
        status = "draining";
    else if (g->stopping || g->connections >= g->max_connections)
        status = "unhealthy";
    else if (!g->redis_connected || g->routers == 0 || pct >= 90.0)
        status = "degraded";
    int code = strcmp(status, "healthy") == 0 ||
               strcmp(status, "degraded") == 0 ? 200 : 503;
    int e = buf_appendf(o, "{\"status\":\"%s\",\"healthy\":%s,"
                        "\"shard_id\":", status,
                        code == 200 ? "true" : "false");
    e |= buf_append_json_str(o, g->shard_id, strlen(g->shard_id));
    e |= buf_appendf(o,
        ",\"checks\":{\"capacity\":{\"status\":\"%s\",\"current\":%ld,"
        "\"max\":%ld,\"percentage\":%.1f},"
        "\"redis\":{\"status\":\"%s\",\"connected\":%s,\"pending\":%ld},"
        "\"router\":{\"status\":\"%s\",\"connections\":%ld},"
        "\"cpu\":{\"status\":\"%s\",\"usage_percent\":%.1f},"
        "\"memory\":{\"status\":\"%s\",\"rss_bytes\":%" PRIu64
        ",\"limit_bytes\":%" PRIu64 ",\"percentage\":%.2f}},"
        "\"uptime\":%.0f,\"connections\":%ld,\"fd_limit\":%ld,"
        "\"max_connections\":%ld}",
        g->connections >= g->max_connections ? "full"
            : pct >= 90.0 ? "high" : "ok",
        g->connections, g->max_connections, pct,
        g->redis_connected ? "up" : "down",
        g->redis_connected ? "true" : "false", g->redis_pending,
        g->routers > 0 ? "up" : "down", g->routers,
        g->cpu_percent >= 90.0 ? "high" : "ok", g->cpu_percent,
        g->mem_percent >= 90.0 ? "high" : "ok", g->rss_bytes,
        g->mem_limit_bytes, g->mem_percent,
        g->uptime_s, g->connections, g->fd_limit, g->max_connections);
    if (e)
        return -1;
    return code;
}

int shard_livez_render(buf *o, const shard_gauges *g)
{
    int e = buf_appendf(o, "{\"status\":\"live\",\"shard_id\":");
    e |= buf_append_json_str(o, g->shard_id, strlen(g->shard_id));
    e |= buf_appendf(o, ",\"uptime\":%.0f,\"draining\":%s,\"stopping\":%s}\n",
                     g->uptime_s, g->draining ? "true" : "false",
                     g->stopping ? "true" : "false");
    return e ? -1 : 200;
}

int shard_readyz_render(buf *o, const shard_gauges *g)
{
    const char *reason = g->stopping ? "shutting down"
                       : g->draining ? "draining"
                       : g->connections + g->closing >= g->max_connections ? "at capacity"
                       : NULL;
    int e = buf_appendf(o, "{\"status\":\"%s\",\"ready\":%s,\"reason\":",
                        reason ? "not ready" : "ready", reason ? "false" : "true");
    e |= reason ? buf_append_json_str(o, reason, strlen(reason)) : buf_appendf(o, "null");
    e |= buf_appendf(o, ",\"shard_id\":");
    e |= buf_append_json_str(o, g->shard_id, strlen(g->shard_id));
    e |= buf_appendf(o, ",\"connections\":%ld,\"max_connections\":%ld,"
                     "\"redis\":\"%s\",\"routers\":%ld}\n",
                     g->connections, g->max_connections,
                     g->redis_connected ? "up" : "down", g->routers);
    return e ? -1 : reason ? 503 : 200;
}
