#include "common/prom.h"

#include <string.h>

#include <inttypes.h>

int prom_head(buf *o, const char *name, const char *type, const char *help)
{
    return buf_appendf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int prom_counter(buf *o, const char *name, const char *help, uint64_t v)
{
    return prom_head(o, name, "counter", help) | buf_appendf(o, "%s %" PRIu64 "\n", name, v);
}

int prom_gauge(buf *o, const char *name, const char *help, double v)
{
    return prom_head(o, name, "gauge", help) | buf_appendf(o, "%s %.17g\n", name, v);
}

const double prom_latency_bounds[] = { 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025,
                                       0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
const size_t prom_latency_nbounds = sizeof prom_latency_bounds / sizeof prom_latency_bounds[0];

void prom_hist_init(prom_hist *h, const double *bounds, size_t nbounds)
{
    memset(h, 0, sizeof *h);
    if (nbounds > PROM_HIST_MAX_BUCKETS)
        nbounds = PROM_HIST_MAX_BUCKETS;
    h->bounds = bounds;
    h->nbounds = nbounds;
}

void prom_hist_observe(prom_hist *h, double v)
{
    size_t i = 0;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += v;
}

int prom_hist_render(const prom_hist *h, buf *o, const char *name, const char *help)
{
    int rc = prom_head(o, name, "histogram", help);
    uint64_t cum = 0;
    for (size_t i = 0; i < h->nbounds; i++) {
        cum += h->counts[i];
        rc |= buf_appendf(o, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i],
                          (unsigned long long)cum);
    }
    cum += h->counts[h->nbounds];
    rc |= buf_appendf(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n",
                      name, (unsigned long long)cum, name, h->sum, name,
                      (unsigned long long)h->count);
    return rc ? -1 : 0;
}
