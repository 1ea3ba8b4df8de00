/*
 * Per-partition offset tracker for at-least-once consumption.  Pure: no
 * librdkafka, no I/O (tests/unit/test_router_offsets.c).
 *
 * The router registers, in consume order, the offset range each batch took
 * from a partition (a "segment"), and marks segments done when every record
 * in them has been written to all its shards or deliberately dropped.
 * Segments complete out of order (a slow shard holds an older batch back),
 * but Kafka stores one position per partition, so the tracker only ever
 * reports the end of the longest *contiguous* done prefix: the next offset
 * to consume, i.e. what rd_kafka_offsets_store() wants.
 *
 * Partitions are identified by (topic, partition) and mapped to a small
 * index by router_offsets_tp().  A rebalance that revokes a partition calls
 * router_offsets_reset(): its pending segments are forgotten and handles
 * still held by in-flight batches become stale (marking them done is a
 * no-op), because the new owner re-reads from the last stored offset.
 */
#ifndef ODIN_ROUTER_OFFSETS_H
#define ODIN_ROUTER_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

typedef struct router_offsets router_offsets;

/* Handle of one registered segment. */
typedef struct router_offsets_seg {
    uint32_t tp;     /* partition index */
    uint32_t gen;    /* partition generation (bumped by reset) */
    uint64_t seq;    /* segment number within the partition */
} router_offsets_seg;

router_offsets *router_offsets_new(void);           /* NULL on ENOMEM */
void router_offsets_free(router_offsets *t);        /* NULL is a no-op */

/* Index of (topic, partition), created on first use.  The topic string is
 * copied.  Returns >= 0, or -1 on ENOMEM. */
int router_offsets_tp(router_offsets *t, const char *topic, int32_t partition);

/*
 * Register records first..last (inclusive, first <= last) of partition tp,
 * consumed after every earlier registered segment of tp.  Returns 0 with
 * *seg set, or -1 on ENOMEM / bad tp / first > last.
 */
int router_offsets_add(router_offsets *t, int tp, int64_t first, int64_t last,
                       router_offsets_seg *seg);

/* Mark a segment done (idempotent; stale handles are ignored). */
void router_offsets_done(router_offsets *t, router_offsets_seg seg);

/*
 * Report every partition whose committable position advanced since the last
 * collect: cb(topic, partition, next_offset, arg) where next_offset = last
 * done contiguous offset + 1.  Returns the number reported.
 */
typedef void (*router_offsets_cb)(const char *topic, int32_t partition,
                                  int64_t next_offset, void *arg);
size_t router_offsets_collect(router_offsets *t, router_offsets_cb cb, void *arg);

/* Committable position of (topic, partition): next offset, or -1 if nothing
 * was completed since it was created/reset. */
int64_t router_offsets_position(const router_offsets *t, const char *topic,
                                int32_t partition);

/* Forget pending segments of one partition / of all (rebalance). */
void router_offsets_reset(router_offsets *t, const char *topic, int32_t partition);
void router_offsets_reset_all(router_offsets *t);

/* Segments registered and not yet popped off a contiguous prefix. */
size_t router_offsets_pending(const router_offsets *t);

#endif
