/*
 * Process CPU and memory for /health (odin-ws's checks.cpu and
 * checks.memory).  The parsers are pure (tests feed them text); the
 * sampler reads /proc/self/stat, /proc/self/statm, the cgroup memory limit
 * (v2 memory.max, v1 memory.limit_in_bytes) and /proc/meminfo MemTotal.
 * The previous CPU sample is the caller's (sysstat_cpu): the module keeps
 * no state of its own.
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

/* The previous CPU sample (plain value type, owned by the caller; zero it
 * before the first sample). */
typedef struct sysstat_cpu {
    uint64_t ticks;         /* utime + stime at the sample */
    uint64_t ms;            /* its monotonic time; 0: no sample yet */
    double pct;             /* the figure it gave */
} sysstat_cpu;

/*
 * Sample now.  CPU is averaged since the sample in *cpu, which this call
 * updates (or over the whole uptime_s when *cpu has none yet; a sample
 * < 100 ms after the one in *cpu repeats its figure).  A first call with
 * uptime_s 0 only takes the baseline (CPU 0 until the next call 100 ms
 * later); the shard makes it at start.  cpu NULL: no previous sample, CPU
 * averaged over uptime_s.  The caller serialises calls on one *cpu.
 */
void sysstat_sample(sysstat_cpu *cpu, sysstat *out, double uptime_s);

#endif
