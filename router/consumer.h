/*
 * The Kafka consumer: one high-level consumer in the group, polled from the
 * loop thread.  rd_kafka_queue_io_event_enable() makes librdkafka write a
 * byte to a pipe when the consumer queue goes from empty to non-empty; the
 * pipe is a libevent read event that calls back `available`; the owner then
 * drains with consumer_drain (rd_kafka_consume_batch_queue, timeout 0) into
 * the accumulator and takes batches out of it with consumer_take.  The main
 * queue is forwarded to the consumer queue, so rebalance, error and commit
 * callbacks run inside consumer_drain / consumer_close, on the loop thread.
 *
 * Offsets: enable.auto.offset.store=false, enable.auto.commit=true.  The
 * owner decides what is stored (consumer_store_offsets); librdkafka commits
 * it every KAFKA_COMMIT_INTERVAL_MS, on revoke, and at consumer_close.
 *
 * Owns: rd_kafka_t, the consumer queue, the pipe and its event, the
 * accumulator (messages drained and not yet taken).  Messages handed out by
 * consumer_take belong to the caller (rd_kafka_message_destroy them, before
 * consumer_free).
 */
#ifndef ODIN_ROUTER_CONSUMER_H
#define ODIN_ROUTER_CONSUMER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <event2/event.h>
#include <librdkafka/rdkafka.h>

#include "router/config.h"
#include "router/metrics.h"

/* ---- accumulator (pure: tests/unit/test_router_consumer.c) --------------- */

/* Messages drained from librdkafka and not yet handed to the pipeline, in
 * consume order, at most cap of them. */
typedef struct consumer_acc {
    rd_kafka_message_t **msgs;
    size_t n, cap;
    /* how a dropped message is released: rd_kafka_message_destroy unless a
     * test sets its own */
    void (*destroy)(rd_kafka_message_t *m);
    /* The batch being consumed (consumer_acc_fill): librdkafka writes it
     * while callbacks may run, so it is never the accumulator's own array.
     * cap slots each; stale[i] marks a record whose partition was revoked
     * after librdkafka had put it there. */
    rd_kafka_message_t **batch;
    unsigned char *stale;
    int filling;
} consumer_acc;

/* 0, or -1 on ENOMEM (cap 0 is refused too). */
int consumer_acc_init(consumer_acc *a, size_t cap);
/* Releases the held messages and the array.  Zeroed or freed: no-op. */
void consumer_acc_free(consumer_acc *a);
/* Room left. */
size_t consumer_acc_room(const consumer_acc *a);
/* Move up to max messages (oldest first) to out[]; ownership moves too.
 * Returns how many. */
size_t consumer_acc_take(consumer_acc *a, rd_kafka_message_t **out, size_t max);
/* Release every message for which match(m, arg) is 1, keeping the order of
 * the others.  Returns how many were released. */
size_t consumer_acc_drop_if(consumer_acc *a,
                            int (*match)(const rd_kafka_message_t *m, void *arg),
                            void *arg);
/* Release every message. */
void consumer_acc_clear(consumer_acc *a);

/*
 * One batch-consume step: put up to max records into out[] (in order, each
 * written before the next, as rd_kafka_consume_batch_queue does) and return
 * how many, or -1 on error.  It may run callbacks that call
 * consumer_acc_revoke on the same accumulator while it runs.
 */
typedef ssize_t (*consumer_batch_fn)(void *arg, rd_kafka_message_t **out, size_t max);

/*
 * Fill the accumulator up to `want` records (capped at cap) by calling
 * batch until it returns fewer than asked, 0 or -1.  Each batch goes into
 * a scratch array; after the call every record is either appended to the
 * accumulator (counted afresh: the call may have shrunk it), or released
 * exactly once: records with m->err (on_error(m, arg) is told first, may be
 * NULL) and records consumer_acc_revoke marked stale during the call.
 * Returns -1 if batch failed before anything was accumulated by this call,
 * else the number of records accumulated.
 */
ssize_t consumer_acc_fill(consumer_acc *a, size_t want, consumer_batch_fn batch,
                          void *batch_arg,
                          void (*on_error)(const rd_kafka_message_t *m, void *arg),
                          void *err_arg);

/*
 * Partitions are revoked (parts NULL: all of them, lost): release the
 * accumulated records of those partitions and, if called from inside a
 * consumer_acc_fill batch call, mark that batch's records of those
 * partitions received so far as stale (released, never accumulated, after
 * the call).  Records the batch call receives after this (a reassignment
 * within the same call) are kept.  Returns how many were released now.
 */
size_t consumer_acc_revoke(consumer_acc *a, const rd_kafka_topic_partition_list_t *parts);

/* 1 if m belongs to one of parts' (topic, partition)s. */
int consumer_msg_in(const rd_kafka_message_t *m,
                    const rd_kafka_topic_partition_list_t *parts);

/* ---- the consumer -------------------------------------------------------- */

typedef struct consumer consumer;

/* Default bound on leaving the group (consumer_free): the coordinator evicts
 * a silent member after session.timeout.ms (10 s here) anyway. */
#define CONSUMER_CLOSE_MS_DEFAULT 10000
/* Part of a close's time kept for destroying the handle. */
#define CONSUMER_DESTROY_MS 400

typedef struct consumer_callbacks {
    /* The consumer queue went non-empty: schedule a drain.  From the pipe's
     * libevent callback; never from inside librdkafka. */
    void (*available)(void *arg);
    /* Partitions were assigned (before consumption starts on them). */
    void (*assigned)(const rd_kafka_topic_partition_list_t *parts, void *arg);
    /* Partitions are being revoked.  Called before they are unassigned, so
     * offsets stored now are part of the commit on revoke; the owner drops
     * its in-flight state of those partitions (the new owner re-reads from
     * the committed offset).  The accumulator's records of those
     * partitions are released by the consumer right after this returns.
     * parts NULL: every partition is lost (rebalance error). */
    void (*revoked)(const rd_kafka_topic_partition_list_t *parts, void *arg);
    /* All brokers down (down 1) / the cluster answers again (down 0).
     * Called on changes only. */
    void (*brokers_down)(int down, void *arg);
    /* librdkafka raised a fatal error (logged): the consumer is unusable,
     * the owner should shut down. */
    void (*fatal)(void *arg);
    void *arg;
} consumer_callbacks;

/*
 * Create the consumer, subscribe to cfg's topics and wire the queue's
 * wake-up pipe into base.  cfg, base and m (kafka_errors is counted there)
 * are borrowed and must outlive the consumer; cb is copied.  The
 * accumulator holds at most cfg->kafka_batch_size messages.  NULL on failure
 * (reason logged).  Records may already be queued: drain once after _new.
 */
consumer *consumer_new(struct event_base *base, const router_config *cfg,
                       router_metrics *m, const consumer_callbacks *cb);
/* Releases the accumulated messages, closes (consumer_close with
 * CONSUMER_CLOSE_MS_DEFAULT) if not closed yet, then frees.  NULL is a
 * no-op. */
void consumer_free(consumer *c);

/*
 * Drain the consumer queue into the accumulator until it holds `want`
 * messages (capped at its capacity) or the queue is empty.  Error messages
 * are counted, logged (rate-limited) and released.  Rebalance callbacks may
 * run from here.  Nothing is drained while paused or closed.  Returns the
 * number of messages accumulated.
 */
size_t consumer_drain(consumer *c, size_t want);
/* Messages accumulated. */
size_t consumer_pending(const consumer *c);
/* Move up to max accumulated messages to out[] (caller owns them). */
size_t consumer_take(consumer *c, rd_kafka_message_t **out, size_t max);
/* Release every accumulated message (they are not stored: redelivered). */
void consumer_discard(consumer *c);

/*
 * Stop handing out records: the wake-up event is removed and consumer_drain
 * returns without draining.  librdkafka keeps fetching up to its own queue
 * limits (partitions are not paused at the broker).  _resume undoes it and
 * signals `available`.
 */
void consumer_pause(consumer *c);
void consumer_resume(consumer *c);

/* Store next-offset positions (l->elems[i].offset) for commit.  Returns 0
 * if handed to librdkafka (per-partition failures, e.g. not assigned any
 * more, are in l->elems[i].err), -1 if the consumer is closed. */
int consumer_store_offsets(consumer *c, rd_kafka_topic_partition_list_t *l);

/* Commit what is stored now, asynchronously, unless a commit requested
 * this way is still in flight (then the next call after its result does).
 * No-op when closed. */
void consumer_commit_soon(consumer *c);

/* Sum of (high watermark - position) over the assignment, from cached
 * watermarks (no broker round trip); -1 unknown. */
int64_t consumer_lag(consumer *c);
/* Partitions currently assigned. */
uint64_t consumer_assigned(const consumer *c);

/* One assigned partition (admin API). */
typedef struct consumer_partition {
    char topic[128];
    int32_t partition;
    int64_t position;     /* next offset to consume; -1 none yet */
    int64_t low, high;    /* cached watermarks; -1 unknown */
    int64_t lag;          /* high - position; -1 unknown */
    int64_t stored;       /* filled by the router (router_offsets_position):
                             next offset stored for commit; -1 none yet */
} consumer_partition;

/*
 * Fill out[] with up to max assigned partitions (position and cached
 * watermarks: no broker round trip).  Returns how many are assigned (may
 * exceed max), or -1 when closed.
 */
long consumer_partitions(consumer *c, consumer_partition *out, size_t max);

/* The group member id the coordinator gave this consumer (malloc'd, the
 * caller frees it), or NULL while not a member or when closed. */
char *consumer_member_id(consumer *c);
/* session.timeout.ms in effect (the router's default or KAFKA_OPTIONS'). */
long consumer_session_timeout_ms(const consumer *c);

/*
 * Commit what was stored (asynchronously), leave the group and destroy the
 * handle, returning within about timeout_ms whatever the broker does: the
 * commit and the group leave get timeout_ms less CONSUMER_DESTROY_MS (the
 * revoke callback may run from here), the destruction what is left (at
 * least 100 ms; past it librdkafka's teardown is left running on a thread
 * and the process is expected to exit).  A member that did not leave is
 * reassigned after session.timeout.ms (or at once with static membership
 * when it comes back).  Idempotent; afterwards only _free is useful.
 * Returns 0, or -1 if the close or the teardown did not finish in time.
 */
int consumer_close(consumer *c, long timeout_ms);

#endif
