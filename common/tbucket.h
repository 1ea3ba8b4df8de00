/*
 * Token bucket, a plain value type (common/tbucket.c): `rate` tokens a
 * second up to `burst`.  Pure: callers pass `now` in monotonic ms.  Used for
 * the /health and /metrics request limits (ADMIN_RATE, ADMIN_BURST) of the
 * shard and the router, and the reconnect rates per address (RESUME_IP_RATE)
 * and per connection (RESUME_CONN_RATE).  Unit test: tests/unit/test_tbucket.c.
 */
#ifndef ODIN_COMMON_TBUCKET_H
#define ODIN_COMMON_TBUCKET_H

#include <stdint.h>

typedef struct tbucket {
    double rate;        /* tokens per second; <= 0: unlimited */
    double burst;       /* bucket size (>= 1 to let anything through) */
    double tokens;
    uint64_t ms;        /* tokens as of this time */
} tbucket;

/* A full bucket at `now`. */
void tbucket_init(tbucket *b, double rate, double burst, uint64_t now);

/* 1 if a token was taken at `now`, else 0 (empty).  Always 1 if rate <= 0. */
int tbucket_take(tbucket *b, uint64_t now);

/* 1 if the bucket is full at `now` (taking from it changed nothing that
 * would last), else 0.  Always 1 if rate <= 0. */
int tbucket_full(const tbucket *b, uint64_t now);

#endif
