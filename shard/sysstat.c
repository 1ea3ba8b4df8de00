#include "shard/sysstat.h"
#include "common/clock.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int sysstat_parse_stat(const char *text, uint64_t *ticks)
{
    /* comm may hold spaces and parens: fields restart after the last ')' */
    const char *p = text ? strrchr(text, ')') : NULL;
    if (!p)
        return -1;
    p++;
    uint64_t ut = 0, st = 0;
    /* after ')': field 3 (state) is token 0; utime (14) token 11, stime 12 */
    for (int tok = 0; tok <= 12; tok++) {
        while (*p == ' ')
            p++;
        if (!*p)
            return -1;
        if (tok == 11 || tok == 12) {
            char *end;
            unsigned long long v = strtoull(p, &end, 10);
            if (end == p)
                return -1;
            if (tok == 11)
                ut = v;
            else
                st = v;
        }
        while (*p && *p != ' ')
            p++;
    }
    *ticks = ut + st;
    return 0;
}

int sysstat_parse_statm(const char *text, uint64_t *resident_pages)
{
    unsigned long long size, res;
    if (!text || sscanf(text, "%llu %llu", &size, &res) != 2)
        return -1;
    *resident_pages = res;
    return 0;
}

int sysstat_parse_limit(const char *text, uint64_t *bytes)
{
    if (!text)
        return -1;
    while (*text == ' ')
        text++;
    if (strncmp(text, "max", 3) == 0) {
        *bytes = UINT64_MAX;
        return 0;
    }
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (end == text)
        return -1;
    *bytes = v;
    return 0;
}

int sysstat_parse_meminfo(const char *text, uint64_t *bytes)
{
    const char *p = text ? strstr(text, "MemTotal:") : NULL;
    unsigned long long kb;
    if (!p || sscanf(p + 9, "%llu", &kb) != 1)
        return -1;
    *bytes = kb * 1024;
    return 0;
}

static int read_small(const char *path, char *out, size_t n)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t r = fread(out, 1, n - 1, f);
    fclose(f);
    out[r] = 0;
    return r > 0 ? 0 : -1;
}

void sysstat_sample(sysstat_cpu *cpu, sysstat *out, double uptime_s)
{
    sysstat_cpu none = { 0 };
    if (!cpu)
        cpu = &none;
    memset(out, 0, sizeof(*out));
    char b[4096];
    long hz = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    uint64_t now = clock_mono_ms();
    uint64_t ticks;
    if (hz > 0 && read_small("/proc/self/stat", b, sizeof(b)) == 0 &&
        sysstat_parse_stat(b, &ticks) == 0) {
        if (cpu->ms == 0) {
            if (uptime_s > 0.05)
                cpu->pct = 100.0 * ((double)ticks / (double)hz) / uptime_s;
            cpu->ms = now;
            cpu->ticks = ticks;
        } else if (now - cpu->ms >= 100) {
            cpu->pct = 100.0 * ((double)(ticks - cpu->ticks) / (double)hz) /
                       ((double)(now - cpu->ms) / 1000.0);
            cpu->ms = now;
            cpu->ticks = ticks;
        }
        out->cpu_percent = cpu->pct;
    }
    uint64_t pages;
    if (page > 0 && read_small("/proc/self/statm", b, sizeof(b)) == 0 &&
        sysstat_parse_statm(b, &pages) == 0)
        out->rss_bytes = pages * (uint64_t)page;
    uint64_t limit = UINT64_MAX, v;
    if (read_small("/sys/fs/cgroup/memory.max", b, sizeof(b)) == 0 &&
        sysstat_parse_limit(b, &v) == 0 && v < limit)
        limit = v;
    if (read_small("/sys/fs/cgroup/memory/memory.limit_in_bytes", b,
                   sizeof(b)) == 0 &&
        sysstat_parse_limit(b, &v) == 0 && v < limit)
        limit = v;
    if (read_small("/proc/meminfo", b, sizeof(b)) == 0 &&
        sysstat_parse_meminfo(b, &v) == 0 && v < limit)
        limit = v;
    out->limit_bytes = limit == UINT64_MAX ? 0 : limit;
    if (out->limit_bytes)
        out->mem_percent = 100.0 * (double)out->rss_bytes /
                           (double)out->limit_bytes;
}
