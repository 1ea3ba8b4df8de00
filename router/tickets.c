#include "router/tickets.h"

#include <stdlib.h>

#include "common/clock.h"
#include "common/prom.h"

struct router_ticket {
    int refs;
    int dropped;            /* a frame of the batch was dropped */
    uint64_t batch_no;
    size_t cap;             /* nrec: segments and timestamps */
    size_t nsegs;
    int64_t *ts;            /* Kafka timestamps (ms) of the records sent */
    size_t nts;
    router_offsets_seg segs[];   /* then the ts array */
};

struct router_tickets {
    router_offsets *off;
    router_metrics *m;
    router_tickets_callbacks cb;
    uint64_t outstanding;
    int final;
};

router_tickets *router_tickets_new(router_offsets *off, router_metrics *m,
                                   const router_tickets_callbacks *cb)
{
    router_tickets *ts = calloc(1, sizeof *ts);
    if (!ts)
        return NULL;
    ts->off = off;
    ts->m = m;
    ts->cb = *cb;
    return ts;
}

void router_tickets_free(router_tickets *ts)
{
    free(ts);
}

router_ticket *router_tickets_open(router_tickets *ts, uint64_t batch_no, size_t nrec)
{
    router_ticket *t = malloc(sizeof *t + nrec * (sizeof t->segs[0] + sizeof t->ts[0]));
    if (!t)
        return NULL;
    t->ts = (int64_t *)(void *)&t->segs[nrec];
    t->nts = 0;
    t->dropped = 0;
    t->nsegs = 0;
    t->refs = 1;
    t->cap = nrec;
    t->batch_no = batch_no;
    ts->outstanding++;
    return t;
}

int router_ticket_add_range(router_tickets *ts, router_ticket *t, const char *topic,
                            int32_t partition, int64_t first, int64_t last)
{
    if (t->nsegs >= t->cap)
        return -1;
    int tp = router_offsets_tp(ts->off, topic, partition);
    if (tp < 0 || router_offsets_add(ts->off, tp, first, last, &t->segs[t->nsegs]) != 0)
        return -1;
    t->nsegs++;
    return 0;
}

void router_ticket_sent(router_ticket *t, int64_t ts_ms)
{
    if (t->nts < t->cap)
        t->ts[t->nts++] = ts_ms;
}

void router_ticket_ref(router_ticket *t)
{
    t->refs++;
}

void router_ticket_dropped(router_ticket *t)
{
    t->dropped = 1;
}

/* router_delivery_latency_seconds: Kafka timestamp -> every frame of the
 * record's batch written to its shards' sockets (one clock read per batch). */
static void observe_delivery(router_tickets *ts, const router_ticket *t)
{
    if (t->dropped || t->nts == 0)
        return;
    int64_t now_us = (int64_t)clock_wall_us();
    for (size_t i = 0; i < t->nts; i++) {
        int64_t d = now_us - t->ts[i] * 1000;
        prom_hist_observe(&ts->m->delivery_seconds, d > 0 ? (double)d / 1e6 : 0.0);
    }
}

void router_tickets_release(router_tickets *ts, router_ticket *t)
{
    if (--t->refs > 0)
        return;
    if (!ts->final) {
        observe_delivery(ts, t);
        for (size_t i = 0; i < t->nsegs; i++)
            router_offsets_done(ts->off, t->segs[i]);
    }
    ts->outstanding--;
    free(t);
    if (ts->cb.completed)
        ts->cb.completed(ts->cb.ud);
}

uint64_t router_tickets_outstanding(const router_tickets *ts)
{
    return ts->outstanding;
}

void router_tickets_set_final(router_tickets *ts)
{
    ts->final = 1;
}

void router_ticket_discard(router_tickets *ts, router_ticket *t)
{
    (void)ts;
    free(t);
}
