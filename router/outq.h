/*
 * Per-shard output queue: the bytes waiting to be written to one shard's
 * socket, plus "marks" that say which delivery frame ends where, so the
 * router learns when a frame has been completely written (its records'
 * offsets may then be stored) or has to be dropped (connection lost).  Pure:
 * the caller does the write() and reports how many bytes went out
 * (tests/unit/test_router_outq.c).
 *
 * Frames are appended straight into the queue's buffer (frame_batch_* on
 * router_outq_buf()), then router_outq_mark() records the frame end.  Bytes
 * before the first mark (the HELLO) carry no mark.
 */
#ifndef ODIN_ROUTER_OUTQ_H
#define ODIN_ROUTER_OUTQ_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

typedef struct router_outq_entry {
    uint64_t end;        /* cumulative byte position just past the frame */
    void *ticket;        /* caller's object, handed back on completion/drop */
    uint32_t nrec;       /* records in the frame (for drop accounting) */
} router_outq_entry;

typedef struct router_outq {
    buf b;               /* b.data[off .. b.len) is unwritten */
    size_t off;
    uint64_t written;    /* bytes written since init (cumulative) */
    router_outq_entry *marks;  /* ring */
    size_t mcap, mhead, mcount;
} router_outq;

/* Called once per mark, with done = 1 (written) or 0 (dropped). */
typedef void (*router_outq_cb)(void *ticket, uint32_t nrec, int done, void *arg);

void router_outq_init(router_outq *q);
void router_outq_free(router_outq *q);   /* drops marks without callbacks */

/* Unwritten bytes. */
static inline size_t router_outq_pending(const router_outq *q)
{
    return q->b.len - q->off;
}

/* Buffer to append frames to.  Only append; never consume from it. */
buf *router_outq_buf(router_outq *q);

/* Record that the bytes appended so far end a frame.  0 or -1 (ENOMEM). */
int router_outq_mark(router_outq *q, void *ticket, uint32_t nrec);

/* Unwritten bytes to hand to write(). */
static inline const char *router_outq_data(const router_outq *q)
{
    return q->b.data + q->off;
}

/* n bytes were written: completes the marks now fully written (cb with
 * done = 1, in order) and reclaims space.  cb may be NULL. */
void router_outq_written(router_outq *q, size_t n, router_outq_cb cb, void *arg);

/* Drop everything unwritten (connection closed): cb(done = 0) per mark. */
void router_outq_clear(router_outq *q, router_outq_cb cb, void *arg);

#endif
