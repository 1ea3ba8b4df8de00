/*
 * Process CPU and memory for /health (odin-ws's checks.cpu and
 * checks.memory).  The parsers are pure (tests feed them text); the
 * sampler reads /proc/self/stat, /proc/self/statm, the cgroup memory limit
 * (v2 memory.max, v1 memory.limit_in_bytes) and /proc/meminfo MemTotal.
 */
#ifndef ODIN_SHARD_SYSSTAT_H
#define ODIN_SHARD_SYSSTAT_H

#include <stddef.h>
#include <stdint.h>

/* utime + stime (clock ticks) from the text of /proc/<pid>/stat.  0 or -1. */
int sysstat_parse_stat(const char *text, uint64_t *ticks);

/* Resident pages (second field) from /proc/<pid>/statm.  0 or -1. */
int sysstat_parse_statm(const char *text, uint64_t *resident_pages);

/* A cgroup limit file: a number of bytes, or "max" (-> UINT64_MAX).  0/-1. */
int sysstat_parse_limit(const char *text, uint64_t *bytes);

/* MemTotal from the text of /proc/meminfo, in bytes.  0 or -1. */
int sysstat_parse_meminfo(const char *text, uint64_t *bytes);

typedef struct sysstat {
    double cpu_percent;     /* of one core, since the previous sample */
    uint64_t rss_bytes;
    uint64_t limit_bytes;   /* min(cgroup limit, MemTotal); 0 if unknown */
    double mem_percent;     /* rss / limit * 100 (0 if unknown) */
} sysstat;

/*
 * Sample now.  CPU is averaged since the previous call (or over the whole
 * uptime_s on the first call, or when the previous call is < 100 ms old).
 * A first call with uptime_s 0 only takes the baseline (CPU 0 until the
 * next call 100 ms later); the shard makes it at start.
 * Process-wide state; event-loop thread only.
 */
void sysstat_sample(sysstat *out, double uptime_s);

#endif
