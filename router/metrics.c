#include "router/metrics.h"
#include "common/prom.h"

#include <inttypes.h>
#include <string.h>

static const double fanout_bounds[] = { 0, 1, 2, 4, 8, 16, 32, 64, 128 };
static const double lookup_bounds[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1 };
static const double batch_bounds[] = { 1, 10, 50, 100, 250, 500, 1000, 5000 };

const char *router_invalid_name(enum router_invalid r)
{
    static const char *const n[] = { "empty_key", "bad_key", "unknown_topic",
                                     "invalid_json", "oversized" };
    return (unsigned)r < ROUTER_INV_COUNT ? n[r] : "unknown";
}

const char *router_drop_name(enum router_drop r)
{
    static const char *const n[] = { "queue_full", "shard_down", "stalled", "too_big",
                                     "no_shard" };
    return (unsigned)r < ROUTER_DROP_COUNT ? n[r] : "unknown";
}

const char *router_mode_name(enum router_mode m)
{
    static const char *const n[] = { "targeted", "broadcast", "fallback" };
    return (unsigned)m < ROUTER_MODE_COUNT ? n[m] : "unknown";
}

void router_metrics_init(router_metrics *m)
{
    memset(m, 0, sizeof *m);
    prom_hist_init(&m->fanout, fanout_bounds, sizeof fanout_bounds / sizeof(double));
    prom_hist_init(&m->lookup_seconds, lookup_bounds, sizeof lookup_bounds / sizeof(double));
    prom_hist_init(&m->batch_size, batch_bounds, sizeof batch_bounds / sizeof(double));
    prom_hist_init(&m->delivery_seconds, prom_latency_bounds, prom_latency_nbounds);
}

/* One statement per entry of the list, `o`, `m`, `g`, `ss` and `e` in scope. */
#define RM_RENDER_COUNTER(f, name, help) e |= prom_counter(o, name, help, m->f);
#define RM_RENDER_LABELLED(f, name, help, label, n, names)                 \
    e |= prom_head(o, name, "counter", help);                             \
    for (int i = 0; i < (n); i++)                                          \
        e |= buf_appendf(o, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label,   \
                         names(i), m->f[i]);
#define RM_RENDER_SHARD_DROPS(f, name, help, n, names)                     \
    e |= render_shard_drops(o, g, m->f, n, name, help, names);
#define RM_RENDER_HIST(f, name, help) e |= prom_hist_render(&m->f, o, name, help);
#define RM_RENDER_FIELD(type, f)
#define RM_RENDER_VALUE_counter(expr, name, help)                          \
    e |= prom_counter(o, name, help, (uint64_t)(expr));
#define RM_RENDER_VALUE_gauge(expr, name, help)                            \
    e |= prom_gauge(o, name, help, (double)(expr));
#define RM_RENDER_VALUE(type, expr, name, help) RM_RENDER_VALUE_##type(expr, name, help)
#define RM_RENDER_SHARD_GAUGE(member, name, help)                          \
    e |= prom_head(o, name, "gauge", help);                               \
    for (size_t k = 0; g->shard_at && k < g->nshards; k++)                 \
        if (g->shard_at(g->shard_ctx, k, &ss) == 0)                        \
            e |= buf_appendf(o, "%s{shard=\"%s\"} %" PRIu64 "\n", name,   \
                             ss.id, ss.member);
#define RM_RENDER(kind, ...) RM_RENDER_##kind(__VA_ARGS__)

/* A SHARD_DROPS entry: per shard and reason, then what the shard table no
 * longer holds (forgotten shards) under shard="" so the sum is the total. */
static int render_shard_drops(buf *o, const router_gauges *g, const uint64_t *total,
                              int n, const char *name, const char *help,
                              const char *(*names)(enum router_drop))
{
    int e = prom_head(o, name, "counter", help);
    uint64_t left[ROUTER_DROP_COUNT];
    memcpy(left, total, sizeof left);
    router_shard_sample ss;
    for (size_t k = 0; g->shard_at && k < g->nshards; k++) {
        if (g->shard_at(g->shard_ctx, k, &ss) != 0)
            continue;
        for (int i = 0; i < n; i++) {
            e |= buf_appendf(o, "%s{reason=\"%s\",shard=\"%s\"} %" PRIu64 "\n",
                             name, names((enum router_drop)i), ss.id, ss.drops[i]);
            left[i] -= ss.drops[i] <= left[i] ? ss.drops[i] : left[i];
        }
    }
    for (int i = 0; i < n; i++)
        e |= buf_appendf(o, "%s{reason=\"%s\",shard=\"\"} %" PRIu64 "\n",
                         name, names((enum router_drop)i), left[i]);
    return e;
}

int router_metrics_render(const router_metrics *m, const router_gauges *g, buf *o)
{
    int e = 0;
    router_shard_sample ss;
    ROUTER_METRICS(RM_RENDER)
    return e ? -1 : 0;
}

/* --metrics-list: name, type, labels, the first label's values, help. */
static int list_row(buf *o, const char *name, const char *type, const char *labels,
                    int n, const char *(*names)(int), const char *help)
{
    int e = buf_appendf(o, "%s\t%s\t%s\t", name, type, labels);
    for (int i = 0; i < n; i++)
        e |= buf_appendf(o, "%s%s", i ? "," : "", names(i));
    return e | buf_appendf(o, "\t%s\n", help);
}
/* the list names each enum's name function; list_row wants an int one */
static const char *rm_router_invalid_name(int i)
{
    return router_invalid_name((enum router_invalid)i);
}
static const char *rm_router_mode_name(int i)
{
    return router_mode_name((enum router_mode)i);
}
static const char *rm_router_drop_name(int i)
{
    return router_drop_name((enum router_drop)i);
}
#define RM_LIST_COUNTER(f, name, help) e |= list_row(o, name, "counter", "", 0, NULL, help);
#define RM_LIST_LABELLED(f, name, help, label, n, names)                   \
    e |= list_row(o, name, "counter", label, n, rm_##names, help);
#define RM_LIST_SHARD_DROPS(f, name, help, n, names)                       \
    e |= list_row(o, name, "counter", "reason,shard", n, rm_##names, help);
#define RM_LIST_HIST(f, name, help) e |= list_row(o, name, "histogram", "", 0, NULL, help);
#define RM_LIST_FIELD(type, f)
#define RM_LIST_VALUE(type, expr, name, help) e |= list_row(o, name, #type, "", 0, NULL, help);
#define RM_LIST_SHARD_GAUGE(member, name, help) e |= list_row(o, name, "gauge", "shard", 0, NULL, help);
#define RM_LIST(kind, ...) RM_LIST_##kind(__VA_ARGS__)

int router_metrics_list(buf *o)
{
    int e = 0;
    ROUTER_METRICS(RM_LIST)
    return e ? -1 : 0;
}
