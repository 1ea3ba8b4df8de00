#include "common/log.h"
#include "common/buf.h"
#include "common/clock.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char log_component[32] = "odin";
static enum log_level log_min = LOG_INFO;
static const char *const level_names[] = { "debug", "info", "warn", "error" };

void log_init(const char *component, enum log_level min)
{
    snprintf(log_component, sizeof log_component, "%s", component ? component : "odin");
    log_min = min;
}

void log_set_component(const char *component)
{
    snprintf(log_component, sizeof log_component, "%s", component ? component : "odin");
}

int log_level_parse(const char *s, enum log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (s && strcasecmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (s && strcasecmp(s, "warning") == 0) {
        *out = LOG_WARN;
        return 0;
    }
    return -1;
}

int log_enabled(enum log_level lvl) { return lvl >= log_min; }

void log_kv(enum log_level lvl, const char *msg, ...)
{
    if (lvl < log_min)
        return;
    char stack[1024];
    buf b = { 0 };
    /* Small lines are built in a stack buffer; buf grows only if needed. */
    b.data = stack;
    b.cap = sizeof stack;
    int on_heap = 0;

    uint64_t now = clock_wall_ms();
    time_t sec = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char ts[64];
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (unsigned)(now % 1000));

    va_list ap;
    va_start(ap, msg);
    /* Appending to the stack buffer must not realloc() it: copy to the heap
     * first if the line outgrows it. */
#define ENSURE(n)                                                         \
    do {                                                                  \
        if (!on_heap && b.cap - b.len < (size_t)(n)) {                    \
            buf h = { 0 };                                                \
            if (buf_append(&h, b.data, b.len) != 0) goto out;             \
            b = h;                                                        \
            on_heap = 1;                                                  \
        }                                                                 \
    } while (0)
    ENSURE(128);
    b.len += (size_t)snprintf(b.data + b.len, b.cap - b.len,
                              "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"%s\",\"msg\":",
                              ts, level_names[lvl], log_component);
    size_t ml = strlen(msg);
    ENSURE(ml * 6 + 2);
    buf_append_json_str(&b, msg, ml);
    for (;;) {
        const char *key = va_arg(ap, const char *);
        if (!key)
            break;
        if (strlen(key) < 3 || key[1] != ':')
            break;   /* malformed key: stop rather than misread varargs */
        const char *name = key + 2;
        size_t nl = strlen(name);
        ENSURE(nl * 6 + 64);
        buf_append(&b, ",", 1);
        buf_append_json_str(&b, name, nl);
        buf_append(&b, ":", 1);
        switch (key[0]) {
        case 's': {
            const char *v = va_arg(ap, const char *);
            if (!v) {
                buf_append(&b, "null", 4);
            } else {
                size_t vl = strlen(v);
                ENSURE(vl * 6 + 2);
                buf_append_json_str(&b, v, vl);
            }
            break;
        }
        case 'S': {
            const char *v = va_arg(ap, const char *);
            size_t vl = va_arg(ap, size_t);
            if (vl > 512)
                vl = 512;   /* log lines stay bounded */
            ENSURE(vl * 6 + 2);
            buf_append_json_str(&b, v ? v : "", v ? vl : 0);
            break;
        }
        case 'i': buf_appendf(&b, "%d", va_arg(ap, int)); break;
        case 'I': buf_appendf(&b, "%lld", (long long)va_arg(ap, int64_t)); break;
        case 'u': buf_appendf(&b, "%llu", (unsigned long long)va_arg(ap, uint64_t)); break;
        case 'f': buf_appendf(&b, "%.6g", va_arg(ap, double)); break;
        case 'b': {
            int v = va_arg(ap, int);
            buf_append(&b, v ? "true" : "false", v ? 4 : 5);
            break;
        }
        default: buf_append(&b, "null", 4); break;
        }
    }
    ENSURE(2);
    buf_append(&b, "}\n", 2);
    /* one write(2) per line so lines from several threads don't interleave */
    ssize_t w = write(STDERR_FILENO, b.data, b.len);
    (void)w;
out:
    va_end(ap);
#undef ENSURE
    if (on_heap)
        buf_free(&b);
}

int log_rl_allow(log_ratelimit *rl, uint64_t *suppressed)
{
    uint64_t now = clock_mono_ms();
    double rate = rl->per_sec > 0 ? rl->per_sec : 1;
    if (rl->last_ms == 0) {
        rl->tokens = rate;
    } else {
        rl->tokens += (double)(now - rl->last_ms) * rate / 1000.0;
        if (rl->tokens > rate)
            rl->tokens = rate;
    }
    rl->last_ms = now;
    if (rl->tokens < 1.0) {
        rl->suppressed++;
        return 0;
    }
    rl->tokens -= 1.0;
    if (suppressed)
        *suppressed = rl->suppressed;
    rl->suppressed = 0;
    return 1;
}
