/*
 * Synthetic Odin events for odin-publish and tests: a small PRNG, a Zipf
 * sampler over token ranks, topic -> event type, and the JSON builder for
 * record values.  Pure functions, no I/O.
 *
 * A value looks like
 *   {"type":"TRADE_EXECUTED","timestamp":<unix ms>,"publish_us":<unix us>,
 *    "data":{"token":"BTC","price":"43251.12","amount":"0.5123",
 *            "side":"buy",...}}
 * with "type" given by the topic (see eventgen_type_for_topic) and the data
 * fields by the type.  Every string written is built from safe characters
 * (tokens must pass topics_token_valid), so the output is always valid JSON.
 */
#ifndef ODIN_COMMON_EVENTGEN_H
#define ODIN_COMMON_EVENTGEN_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* xoshiro256** generator; any seed (0 included) is valid. */
typedef struct eventgen_rng {
    uint64_t s[4];
} eventgen_rng;

void eventgen_rng_seed(eventgen_rng *r, uint64_t seed);
uint64_t eventgen_rng_next(eventgen_rng *r);
/* Uniform in [0, 1). */
double eventgen_rng_double(eventgen_rng *r);
/* Uniform in [0, n); n > 0. */
uint64_t eventgen_rng_below(eventgen_rng *r, uint64_t n);

/*
 * Zipf over ranks 0..n-1: P(k) proportional to 1 / (k+1)^s.  Sampling is a
 * binary search in a precomputed CDF (n doubles).  init returns 0, or -1 on
 * n == 0, s <= 0 / not finite, or ENOMEM.  free releases the table and is a
 * no-op on a zeroed or already freed sampler.
 */
typedef struct eventgen_zipf {
    size_t n;
    double *cdf;
} eventgen_zipf;

int eventgen_zipf_init(eventgen_zipf *z, size_t n, double s);
size_t eventgen_zipf_sample(const eventgen_zipf *z, eventgen_rng *r);
void eventgen_zipf_free(eventgen_zipf *z);

/*
 * Event type for a topic, from the part after its last '.' (so "odin.trades"
 * and "bench.trades" both give TRADE_EXECUTED):
 *   trades TRADE_EXECUTED, liquidity LIQUIDITY_ADDED, metadata
 *   METADATA_UPDATED, social SOCIAL_POST, community COMMUNITY_MESSAGE,
 *   creation TOKEN_CREATED, analytics ANALYTICS_UPDATE, balances
 *   BALANCE_CHANGED.
 * Returns a static string, or NULL for any other suffix.
 */
const char *eventgen_type_for_topic(const char *topic);

/* Inputs of one event. */
typedef struct eventgen_event {
    const char *type;     /* from eventgen_type_for_topic */
    const char *token;    /* 1-64 of [A-Za-z0-9_-] */
    uint64_t publish_us;  /* unix microseconds; "timestamp" = publish_us/1000 */
    uint64_t seq;         /* used in ids (trade_id, post_id, ...) */
    uint64_t token_seq;   /* per (token, topic) counter from 1, for gap
                             detection by clients ("data.token_seq");
                             0 = not emitted */
    size_t pad_to;        /* 0, or total value size to pad up to */
} eventgen_event;

/*
 * Append the JSON value for ev to out.  Random fields come from r.  When
 * ev->pad_to is at least 9 bytes above the natural size, a "pad" string
 * field is added to the data object so the value is exactly pad_to bytes;
 * otherwise the value keeps its natural size.
 * Returns 0, or -1 (ENOMEM, unknown type, invalid token; out unchanged in
 * length on error).
 */
int eventgen_build(buf *out, const eventgen_event *ev, eventgen_rng *r);

#endif
