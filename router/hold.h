/*
 * router/hold: the hold policy (docs/reliability.md "hold").  Decides how
 * the batch in hand goes out: targeted when "no route" can be trusted;
 * fallback broadcast when Redis is down after routes were known
 * (docs/contract.md) or a hold reached ROUTER_HOLD_MAX_MS; otherwise hold
 * (consume nothing further, commit nothing, decide again later).
 *
 * Pure: no events, no I/O; the clock is the caller's (now_ms).  It logs the
 * start, the expiry and the end of a hold and is the only writer of
 * router_holds_total, router_hold_expired_total and the time held
 * (router_metrics holds, hold_expired, hold_ms).  Unit tests:
 * tests/unit/test_router_hold.c.
 */
#ifndef ODIN_ROUTER_HOLD_H
#define ODIN_ROUTER_HOLD_H

#include <stddef.h>
#include <stdint.h>

#include "router/metrics.h"

/* router_hold_decide's answer besides ROUTER_MODE_TARGETED / _FALLBACK. */
#define ROUTER_HOLD ((int)ROUTER_MODE_COUNT)

typedef struct router_hold router_hold;

/* hold_max_ms: ROUTER_HOLD_MAX_MS.  m is borrowed (outlives the object).
 * NULL on ENOMEM. */
router_hold *router_hold_new(uint64_t hold_max_ms, router_metrics *m);
void router_hold_free(router_hold *h);   /* NULL is a no-op */

/* The inputs of one decision (DISPATCH_MODE=targeted; broadcast needs no
 * decision). */
typedef struct router_hold_view {
    int trusted;             /* discovery_trusted: "no route" can be believed */
    int cmd_connected;       /* the Redis command link is up */
    size_t live_shards;      /* for the expiry's log line */
} router_hold_view;

/* ROUTER_MODE_TARGETED, ROUTER_MODE_FALLBACK or ROUTER_HOLD.  Starts a hold
 * (counted, logged) when the first ROUTER_HOLD is answered, expires it
 * after hold_max_ms (FALLBACK from then on, counted once) and ends it on
 * the first TARGETED or FALLBACK-for-Redis-down (time held added). */
int router_hold_decide(router_hold *h, const router_hold_view *v, uint64_t now_ms);

/* A hold is running (started, not ended); expired ones included. */
int router_hold_active(const router_hold *h);
/* The running hold passed hold_max_ms (batches go out as fallback). */
int router_hold_expired(const router_hold *h);
/* How long the running hold has lasted at now_ms; 0 when none runs. */
uint64_t router_hold_elapsed_ms(const router_hold *h, uint64_t now_ms);

#endif
