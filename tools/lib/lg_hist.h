/*
 * odin-loadgen latency histogram: HDR-like log-linear buckets with fixed
 * memory (no allocation after lg_hist_new), values in microseconds.
 *
 * Values 0..127 us get exact buckets; above that every power of two is
 * split into 128 linear sub-buckets, so a bucket is at most 1/128 (0.78 %)
 * of its values wide.  The range is 0 .. 2^26 us (67 s, covers the 60 s the
 * load generator cares about); larger values are counted in `overflow` and
 * recorded in the last bucket; `max` stays exact.  Percentiles report the
 * midpoint of the bucket that holds the requested rank (clamped to
 * [min, max]), so their relative error is below 0.4 % + clamping.
 */
#ifndef ODIN_COMMON_LG_HIST_H
#define ODIN_COMMON_LG_HIST_H

#include <stddef.h>
#include <stdint.h>

#define LG_HIST_SUB_BITS 7
#define LG_HIST_SUB (1u << LG_HIST_SUB_BITS)       /* 128 */
#define LG_HIST_MAX_BITS 26                          /* 2^26 us = 67 s */
#define LG_HIST_BUCKETS (LG_HIST_SUB * (LG_HIST_MAX_BITS - LG_HIST_SUB_BITS + 1))
#define LG_HIST_MAX_VALUE ((UINT64_C(1) << LG_HIST_MAX_BITS) - 1)

typedef struct lg_hist {
    uint64_t counts[LG_HIST_BUCKETS];
    uint64_t total;      /* values recorded (including overflow) */
    uint64_t overflow;   /* values > LG_HIST_MAX_VALUE */
    uint64_t min, max;   /* exact; min is UINT64_MAX while empty */
    double sum;          /* for the mean */
} lg_hist;

/* Zero a histogram (also valid on a fresh zeroed struct; no allocation). */
void lg_hist_reset(lg_hist *h);

/* Record `n` occurrences of value v (microseconds). */
void lg_hist_record_n(lg_hist *h, uint64_t v, uint64_t n);
static inline void lg_hist_record(lg_hist *h, uint64_t v) { lg_hist_record_n(h, v, 1); }

/* Bucket index of a value, and the [lo, hi] value range of a bucket. */
size_t lg_hist_index(uint64_t v);
void lg_hist_bucket_range(size_t idx, uint64_t *lo, uint64_t *hi);

/* Add every count of src into dst. */
void lg_hist_merge(lg_hist *dst, const lg_hist *src);

/* Value at percentile p (0 < p <= 100) or 0 if empty.  p = 100 -> max. */
uint64_t lg_hist_percentile(const lg_hist *h, double p);

/* Mean (0 if empty). */
double lg_hist_mean(const lg_hist *h);

#endif
