#include "router/outq.h"

#include <stdlib.h>
#include <string.h>

/* Compact the buffer once this much has been written from its front. */
#define COMPACT_MIN (64u * 1024u)

void router_outq_init(router_outq *q)
{
    memset(q, 0, sizeof *q);
}

void router_outq_free(router_outq *q)
{
    buf_free(&q->b);
    free(q->marks);
    memset(q, 0, sizeof *q);
}

buf *router_outq_buf(router_outq *q)
{
    return &q->b;
}

int router_outq_mark(router_outq *q, void *ticket, uint32_t nrec)
{
    if (q->mcount == q->mcap) {
        size_t cap = q->mcap ? q->mcap * 2 : 16;
        router_outq_entry *m = malloc(cap * sizeof *m);
        if (!m)
            return -1;
        for (size_t i = 0; i < q->mcount; i++)
            m[i] = q->marks[(q->mhead + i) % q->mcap];
        free(q->marks);
        q->marks = m;
        q->mcap = cap;
        q->mhead = 0;
    }
    router_outq_entry *m = &q->marks[(q->mhead + q->mcount) % q->mcap];
    m->end = q->written + router_outq_pending(q);
    m->ticket = ticket;
    m->nrec = nrec;
    q->mcount++;
    return 0;
}

void router_outq_written(router_outq *q, size_t n, router_outq_cb cb, void *arg)
{
    if (n > router_outq_pending(q))
        n = router_outq_pending(q);
    q->off += n;
    q->written += n;
    while (q->mcount) {
        router_outq_entry *m = &q->marks[q->mhead];
        if (m->end > q->written)
            break;
        router_outq_entry done = *m;
        q->mhead = (q->mhead + 1) % q->mcap;
        q->mcount--;
        if (cb)
            cb(done.ticket, done.nrec, 1, arg);
    }
    if (q->off == q->b.len) {
        q->b.len = 0;
        q->off = 0;
    } else if (q->off >= COMPACT_MIN && q->off >= q->b.len / 2) {
        buf_consume(&q->b, q->off);
        q->off = 0;
    }
}

void router_outq_clear(router_outq *q, router_outq_cb cb, void *arg)
{
    q->written += router_outq_pending(q);
    q->b.len = 0;
    q->off = 0;
    while (q->mcount) {
        router_outq_entry m = q->marks[q->mhead];
        q->mhead = (q->mhead + 1) % q->mcap;
        q->mcount--;
        if (cb)
            cb(m.ticket, m.nrec, 0, arg);
    }
}
