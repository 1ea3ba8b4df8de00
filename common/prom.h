/* Prometheus text format helpers shared by the shard's and the router's
 * /metrics.  Each appends to `o` and returns 0, or -1 on ENOMEM. */
#ifndef ODIN_COMMON_PROM_H
#define ODIN_COMMON_PROM_H

#include <stdint.h>

#include "common/buf.h"

/* "# HELP name help\n# TYPE name type\n" (for labelled series that follow). */
int prom_head(buf *o, const char *name, const char *type, const char *help);
/* HELP, TYPE counter and the unlabelled sample. */
int prom_counter(buf *o, const char *name, const char *help, uint64_t v);
/* HELP, TYPE gauge and the unlabelled sample. */
int prom_gauge(buf *o, const char *name, const char *help, double v);

#endif
