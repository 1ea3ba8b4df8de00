#include "common/prom.h"

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
