#include "tools/lib/lg_hist.h"

#include <string.h>

void lg_hist_reset(lg_hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

size_t lg_hist_index(uint64_t v)
{
    if (v > LG_HIST_MAX_VALUE)
        v = LG_HIST_MAX_VALUE;
    if (v < LG_HIST_SUB)
        return (size_t)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);          /* >= 7 */
    unsigned shift = e - LG_HIST_SUB_BITS;
    size_t sub = (size_t)((v >> shift) & (LG_HIST_SUB - 1));
    return (size_t)(shift + 1) * LG_HIST_SUB + sub;
}

void lg_hist_bucket_range(size_t idx, uint64_t *lo, uint64_t *hi)
{
    if (idx < LG_HIST_SUB) {
        *lo = *hi = idx;
        return;
    }
    unsigned shift = (unsigned)(idx / LG_HIST_SUB) - 1;
    uint64_t sub = idx % LG_HIST_SUB;
    uint64_t base = (UINT64_C(1) << (shift + LG_HIST_SUB_BITS)) + (sub << shift);
    *lo = base;
    *hi = base + (UINT64_C(1) << shift) - 1;
}

void lg_hist_record_n(lg_hist *h, uint64_t v, uint64_t n)
{
    if (n == 0)
        return;
    if (h->total == 0 && h->min == 0 && h->max == 0)
        h->min = UINT64_MAX;            /* zeroed struct without reset */
    h->counts[lg_hist_index(v)] += n;
    h->total += n;
    if (v > LG_HIST_MAX_VALUE)
        h->overflow += n;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->sum += (double)v * (double)n;
}

void lg_hist_merge(lg_hist *dst, const lg_hist *src)
{
    if (src->total == 0)
        return;
    if (dst->total == 0)
        dst->min = UINT64_MAX;
    for (size_t i = 0; i < LG_HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    dst->overflow += src->overflow;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t lg_hist_percentile(const lg_hist *h, double p)
{
    if (h->total == 0)
        return 0;
    if (p >= 100.0)
        return h->max;
    if (p < 0)
        p = 0;
    /* rank = ceil(p% of total), at least 1 */
    /* the epsilon keeps 99.9 % of 100000 at rank 99900 despite rounding */
    double r = p / 100.0 * (double)h->total - 1e-6;
    uint64_t rank = r <= 0 ? 0 : (uint64_t)r;
    if ((double)rank < r)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t cum = 0;
    for (size_t i = 0; i < LG_HIST_BUCKETS; i++) {
        cum += h->counts[i];
        if (cum >= rank) {
            uint64_t lo, hi;
            lg_hist_bucket_range(i, &lo, &hi);
            uint64_t v = lo + (hi - lo) / 2;
            if (v < h->min)
                v = h->min;
            if (v > h->max)
                v = h->max;
            return v;
        }
    }
    return h->max;
}

double lg_hist_mean(const lg_hist *h)
{
    return h->total ? h->sum / (double)h->total : 0.0;
}
