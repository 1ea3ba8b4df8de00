/*
 * Process metrics shared by every daemon's /metrics, in the names the
 * Prometheus client libraries use (process_open_fds, process_max_fds,
 * process_resident_memory_bytes, process_cpu_seconds_total,
 * process_start_time_seconds), plus odin_build_info{version,program}.
 * The parsers are pure (tests/unit/test_procmetrics.c); the sampler reads
 * /proc/self/stat, /proc/self/statm, /proc/stat (btime), /proc/self/fd
 * and RLIMIT_NOFILE.
 */
#ifndef ODIN_COMMON_PROCMETRICS_H
#define ODIN_COMMON_PROCMETRICS_H

#include <stdint.h>

#include "common/buf.h"

typedef struct procmetrics {
    long open_fds;          /* -1: unknown */
    long max_fds;           /* soft RLIMIT_NOFILE; -1: unknown / unlimited */
    uint64_t rss_bytes;
    double cpu_seconds;     /* user + system */
    double start_time_s;    /* Unix time the process started; 0: unknown */
} procmetrics;

/* From the text of /proc/<pid>/stat: utime + stime and starttime, in clock
 * ticks (fields 14, 15, 22; the command name may hold spaces and ')').
 * 0 or -1. */
int procmetrics_parse_stat(const char *text, uint64_t *cpu_ticks,
                           uint64_t *start_ticks);

/* "btime N" (boot time, Unix seconds) from the text of /proc/stat.  0/-1. */
int procmetrics_parse_btime(const char *text, uint64_t *btime);

/* Sample this process now.  Fields that cannot be read are -1 / 0. */
void procmetrics_sample(procmetrics *out);

/* The version built in (git describe at build time), or "unknown". */
const char *procmetrics_version(void);

/* Append the process_* series and odin_build_info{version,program} 1.
 * 0 or -1 (ENOMEM). */
int procmetrics_render(buf *o, const procmetrics *p, const char *program);

#endif
