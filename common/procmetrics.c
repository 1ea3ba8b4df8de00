/* Process metrics and build info (contract in procmetrics.h). */
#include "common/procmetrics.h"
#include "common/prom.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>

#ifndef ODIN_VERSION
#define ODIN_VERSION "unknown"    /* the Makefile passes git describe */
#endif

const char *procmetrics_version(void)
{
    return ODIN_VERSION[0] ? ODIN_VERSION : "unknown";
}

int procmetrics_parse_stat(const char *text, uint64_t *cpu_ticks,
                           uint64_t *start_ticks)
{
    const char *p = text ? strrchr(text, ')') : NULL;   /* end of comm */
    if (!p)
        return -1;
    p++;
    /* fields after comm start at 3 (state); we want 14, 15 and 22 */
    unsigned long long v[23] = { 0 };
    int field = 3;
    while (*p && field <= 22) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        char *end;
        if (field >= 14) {
            errno = 0;
            v[field] = strtoull(p, &end, 10);
            if (errno || end == p)
                return -1;
            p = end;
        } else {
            while (*p && *p != ' ')
                p++;
        }
        field++;
    }
    if (field <= 22)
        return -1;
    *cpu_ticks = v[14] + v[15];
    *start_ticks = v[22];
    return 0;
}

int procmetrics_parse_btime(const char *text, uint64_t *btime)
{
    for (const char *p = text; p && *p; ) {
        if (strncmp(p, "btime ", 6) == 0) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(p + 6, &end, 10);
            if (errno || end == p + 6)
                return -1;
            *btime = v;
            return 0;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1;
}

/* Read a small /proc file into buf (NUL-terminated).  0 or -1. */
static int read_small(const char *path, char *b, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, b + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == cap - 1)
            break;
    }
    close(fd);
    b[n] = '\0';
    return n ? 0 : -1;
}

static long count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;   /* the directory stream's own fd */
}

void procmetrics_sample(procmetrics *out)
{
    memset(out, 0, sizeof *out);
    out->open_fds = count_fds();
    struct rlimit rl;
    out->max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                       ? (long)rl.rlim_cur : -1;
    long tick = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    if (tick <= 0)
        tick = 100;
    char b[4096];
    uint64_t cpu, start, btime;
    if (read_small("/proc/self/stat", b, sizeof b) == 0 &&
        procmetrics_parse_stat(b, &cpu, &start) == 0) {
        out->cpu_seconds = (double)cpu / (double)tick;
        char s[8192];
        if (read_small("/proc/stat", s, sizeof s) == 0 &&
            procmetrics_parse_btime(s, &btime) == 0)
            out->start_time_s = (double)btime + (double)start / (double)tick;
    }
    unsigned long long size, resident;
    if (read_small("/proc/self/statm", b, sizeof b) == 0 &&
        sscanf(b, "%llu %llu", &size, &resident) == 2 && page > 0)
        out->rss_bytes = resident * (uint64_t)page;
}

int procmetrics_render(buf *o, const procmetrics *p, const char *program)
{
    int e = 0;
    e |= prom_gauge(o, "process_open_fds", "Open file descriptors",
                    (double)p->open_fds);
    e |= prom_gauge(o, "process_max_fds", "Maximum open file descriptors (soft "
                    "RLIMIT_NOFILE; -1 unlimited)", (double)p->max_fds);
    e |= prom_gauge(o, "process_resident_memory_bytes", "Resident set size in bytes",
                    (double)p->rss_bytes);
    e |= prom_head(o, "process_cpu_seconds_total", "counter",
                   "User and system CPU time spent in seconds");
    e |= buf_appendf(o, "process_cpu_seconds_total %.2f\n", p->cpu_seconds);
    e |= prom_head(o, "process_start_time_seconds", "gauge",
                   "Start time of the process since the Unix epoch in seconds");
    e |= buf_appendf(o, "process_start_time_seconds %.2f\n", p->start_time_s);
    e |= prom_head(o, "odin_build_info", "gauge",
                   "Always 1; the labels say which build and program this is");
    e |= buf_appendf(o, "odin_build_info{version=\"%s\",program=\"%s\"} 1\n",
                     procmetrics_version(), program);
    return e ? -1 : 0;
}
