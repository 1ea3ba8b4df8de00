#include "tools/lib/lg_report.h"

#include <string.h>

static const char *const cerr_names[LG_CERR_N] = {
    "refused", "503", "429", "timeout", "http_other", "handshake",
    "addr_unavailable", "reset", "eof", "other",
};

const char *lg_cerr_name(int kind)
{
    return kind >= 0 && kind < LG_CERR_N ? cerr_names[kind] : "?";
}

static void close_add(lg_counters *c, uint16_t code, uint64_t n)
{
    for (int i = 0; i < LG_CLOSE_SLOTS; i++) {
        if (c->close_count[i] && c->close_code[i] == code) {
            c->close_count[i] += n;
            return;
        }
        if (!c->close_count[i]) {
            c->close_code[i] = code;
            c->close_count[i] = n;
            return;
        }
    }
    c->close_other += n;
}

void lg_counters_close(lg_counters *c, uint16_t code)
{
    close_add(c, code, 1);
}

#define MAXF(f) do { if (src->f > dst->f) dst->f = src->f; } while (0)

void lg_counters_add(lg_counters *dst, const lg_counters *src)
{
    /* everything up to close_code is a run of uint64_t sums */
    uint64_t *d = (uint64_t *)dst;
    const uint64_t *s = (const uint64_t *)src;
    size_t nsum = offsetof(lg_counters, close_code) / sizeof(uint64_t);
    for (size_t i = 0; i < nsum; i++)
        d[i] += s[i];
    for (int i = 0; i < LG_CLOSE_SLOTS; i++)
        if (src->close_count[i])
            close_add(dst, src->close_code[i], src->close_count[i]);
    dst->close_other += src->close_other;
    dst->ramp_done += src->ramp_done;
    dst->stopping += src->stopping;
    MAXF(ramp_us);
    MAXF(last_connect_us);
}

struct delta_head {
    uint64_t total, overflow, min, max;
    double sum;
    uint32_t nbuckets;
    uint32_t pad;
};

struct delta_bucket {
    uint32_t idx;
    uint32_t pad;
    uint64_t n;
};

int lg_report_encode(buf *out, int kind, const lg_counters *c, const lg_hist *cur,
                     lg_hist *sent)
{
    struct delta_head h = { 0 };
    h.total = cur->total - sent->total;
    h.overflow = cur->overflow - sent->overflow;
    h.sum = cur->sum - sent->sum;
    h.min = cur->min;
    h.max = cur->max;
    for (size_t i = 0; i < LG_HIST_BUCKETS; i++)
        if (cur->counts[i] != sent->counts[i])
            h.nbuckets++;
    uint32_t len = (uint32_t)(1 + sizeof *c + sizeof h + h.nbuckets * sizeof(struct delta_bucket));
    if (buf_reserve(out, 4 + len) != 0)
        return -1;
    uint8_t k = (uint8_t)kind;
    buf_append(out, &len, 4);
    buf_append(out, &k, 1);
    buf_append(out, c, sizeof *c);
    buf_append(out, &h, sizeof h);
    for (size_t i = 0; i < LG_HIST_BUCKETS; i++) {
        if (cur->counts[i] != sent->counts[i]) {
            struct delta_bucket b = { (uint32_t)i, 0, cur->counts[i] - sent->counts[i] };
            buf_append(out, &b, sizeof b);
        }
    }
    *sent = *cur;
    return 0;
}

long lg_report_decode(const char *p, size_t n, int *kind, lg_counters *c, lg_hist *acc)
{
    uint32_t len;
    if (n < 4)
        return 0;
    memcpy(&len, p, 4);
    size_t fixed = 1 + sizeof *c + sizeof(struct delta_head);
    if (len < fixed || len > fixed + LG_HIST_BUCKETS * sizeof(struct delta_bucket))
        return -1;
    if (n < 4 + (size_t)len)
        return 0;
    const char *q = p + 4;
    uint8_t k = (uint8_t)q[0];
    if (k != LG_REPORT_PROGRESS && k != LG_REPORT_FINAL)
        return -1;
    struct delta_head h;
    memcpy(&h, q + 1 + sizeof *c, sizeof h);
    if (len != fixed + (size_t)h.nbuckets * sizeof(struct delta_bucket))
        return -1;
    const char *b = q + fixed;
    for (uint32_t i = 0; i < h.nbuckets; i++) {
        struct delta_bucket db;
        memcpy(&db, b + (size_t)i * sizeof db, sizeof db);
        if (db.idx >= LG_HIST_BUCKETS)
            return -1;
    }
    /* valid: apply */
    *kind = k;
    memcpy(c, q + 1, sizeof *c);
    if (acc->total == 0)
        acc->min = UINT64_MAX;
    for (uint32_t i = 0; i < h.nbuckets; i++) {
        struct delta_bucket db;
        memcpy(&db, b + (size_t)i * sizeof db, sizeof db);
        acc->counts[db.idx] += db.n;
    }
    acc->total += h.total;
    acc->overflow += h.overflow;
    acc->sum += h.sum;
    if (h.total) {          /* min/max are the worker's absolute values */
        if (h.min < acc->min)
            acc->min = h.min;
        if (h.max > acc->max)
            acc->max = h.max;
    }
    return (long)(4 + len);
}
