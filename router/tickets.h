/*
 * router/tickets: completion tickets and offset completion.  A consumed
 * batch gets one ticket holding the offset ranges ("segments", router/
 * offsets.h) it took and the Kafka timestamps of the records sent.  The
 * ticket holds one reference for the dispatch plus one per queued frame
 * (router_shards hooks); when the last is released every record of the
 * batch reached its shards (or was dropped on purpose): the segments are
 * marked done in the offset tracker, router_delivery_latency_seconds is
 * observed (not for a batch with a dropped frame) and the owner's
 * `completed` callback stores what advanced.
 *
 * After router_tickets_set_final (shutdown timeout, second signal,
 * teardown) completions mark nothing done: what was dropped is redelivered.
 *
 * Pure: no I/O, no librdkafka (tests/unit/test_router_tickets.c).  Only
 * writer of router_metrics delivery_seconds.
 */
#ifndef ODIN_ROUTER_TICKETS_H
#define ODIN_ROUTER_TICKETS_H

#include <stddef.h>
#include <stdint.h>

#include "router/metrics.h"
#include "router/offsets.h"

typedef struct router_tickets router_tickets;
typedef struct router_ticket router_ticket;

typedef struct router_tickets_callbacks {
    /* A ticket completed (and was freed): store the advanced positions. */
    void (*completed)(void *ud);
    void *ud;
} router_tickets_callbacks;

/* off and m are borrowed and must outlive the object.  NULL on ENOMEM. */
router_tickets *router_tickets_new(router_offsets *off, router_metrics *m,
                                   const router_tickets_callbacks *cb);
/* Tickets still referenced are not completed (their owner, the shard
 * queues, must be gone first).  NULL is a no-op. */
void router_tickets_free(router_tickets *ts);

/* A ticket for a batch of up to nrec records (and as many segments), with
 * one reference (the dispatch's).  NULL on ENOMEM. */
router_ticket *router_tickets_open(router_tickets *ts, uint64_t batch_no, size_t nrec);

/* Register the batch's offsets [first, last] of topic/partition as one
 * segment (call in consume order, at most nrec times).  0 or -1 (ENOMEM). */
int router_ticket_add_range(router_tickets *ts, router_ticket *t, const char *topic,
                            int32_t partition, int64_t first, int64_t last);

/* A record of the batch was queued to a shard; ts_ms its Kafka timestamp
 * (> 0).  At most nrec times. */
void router_ticket_sent(router_ticket *t, int64_t ts_ms);

void router_ticket_ref(router_ticket *t);       /* one more frame queued */
void router_ticket_dropped(router_ticket *t);   /* a frame of it was dropped */

/* Drop one reference; the last completes the ticket (see above). */
void router_tickets_release(router_tickets *ts, router_ticket *t);

/* Tickets opened and not completed. */
uint64_t router_tickets_outstanding(const router_tickets *ts);

/* From now on completions mark nothing done and observe nothing. */
void router_tickets_set_final(router_tickets *ts);

/* Free a ticket that was never dispatched, completing nothing (teardown).
 * NULL is a no-op. */
void router_ticket_discard(router_tickets *ts, router_ticket *t);

#endif
