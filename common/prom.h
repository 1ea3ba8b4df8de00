/* Prometheus text format helpers shared by the shard's and the router's
 * /metrics.  Each appends to `o` and returns 0, or -1 on ENOMEM. */
#ifndef ODIN_COMMON_PROM_H
#define ODIN_COMMON_PROM_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* "# HELP name help\n# TYPE name type\n" (for labelled series that follow). */
int prom_head(buf *o, const char *name, const char *type, const char *help);
/* HELP, TYPE counter and the unlabelled sample. */
int prom_counter(buf *o, const char *name, const char *help, uint64_t v);
/* HELP, TYPE gauge and the unlabelled sample. */
int prom_gauge(buf *o, const char *name, const char *help, double v);

/* A fixed-bucket histogram (one loop thread, no atomics). */
#define PROM_HIST_MAX_BUCKETS 16
typedef struct prom_hist {
    const double *bounds;    /* ascending upper bounds, +Inf implied (borrowed) */
    size_t nbounds;          /* <= PROM_HIST_MAX_BUCKETS */
    uint64_t counts[PROM_HIST_MAX_BUCKETS + 1];  /* non-cumulative */
    uint64_t count;
    double sum;
} prom_hist;

void prom_hist_init(prom_hist *h, const double *bounds, size_t nbounds);
void prom_hist_observe(prom_hist *h, double v);
/* "# HELP/# TYPE" and the _bucket/_sum/_count series. */
int prom_hist_render(const prom_hist *h, buf *o, const char *name, const char *help);

/* Buckets of the delivery-latency histograms (Kafka record timestamp to a
 * socket write), seconds: the timestamp has millisecond resolution, so
 * nothing finer than 1 ms.  Shared so router and shard series compare. */
extern const double prom_latency_bounds[];
extern const size_t prom_latency_nbounds;

#endif
