/*
 * Fan-out of router records to the shard's WebSocket clients
 * (shard/fanout.c): the one place a record goes from "arrived on a router
 * link" to "queued on its subscribers".  Path: ingress (on_record callback,
 * shard/ingress.h) -> fanout_deliver -> the owner's push op per client.
 *
 * fanout builds the client frame once per record (shard/envelope.h) and
 * hands the same refcounted ws_chunk to every subscriber.  It finds the
 * subscribers in the channel index (shard/subs.h; a member's owner is a
 * client) or, for FRAME_REC_ALL_CLIENTS, walks every client through the
 * next_client op.  It never touches a client's fields: clients are opaque
 * pointers here, reached only through fanout_ops, so tests drive it with
 * fake clients (tests/unit/test_shard_fanout.c).
 *
 * Counters (shard_metrics): shard_records_received_total,
 * shard_records_broadcast_total, shard_records_dropped_total{reason},
 * ws_messages_sent_total.
 */
#ifndef ODIN_SHARD_FANOUT_H
#define ODIN_SHARD_FANOUT_H

#include <stddef.h>
#include "proto/frame.h"
#include "shard/metrics.h"
#include "shard/subs.h"
#include "shard/ws.h"

struct shard_client;

/* What fanout needs from the owner of the clients (shard/server.c). */
typedef struct fanout_ops {
    /* Queue ch on client c (the op takes its own reference): 0 if queued,
     * -1 if not (c not open, or over its queue limits and now closed). */
    int (*push)(void *ud, struct shard_client *c, ws_chunk *ch);
    /* 1 if r must not be queued on c as usual (held for a reconnect
     * replay, or already replayed; shard/resume.h), else 0.  May be NULL
     * (no replays). */
    int (*resume_filter)(void *ud, struct shard_client *c,
                         const frame_record *r, ws_chunk *ch);
    /* Broadcast walk: the client after `prev` (the first one for NULL),
     * NULL at the end.  Called for the next client before c is pushed (a
     * push may close c). */
    struct shard_client *(*next_client)(void *ud, struct shard_client *prev);
    /* Open WebSocket connections now (0: a broadcast is dropped). */
    long (*n_open)(void *ud);
    /* A walk over member arrays starts (1) / ends (0): a client closed in
     * between must stay in the index until the walk is over.  May be NULL. */
    void (*walking)(void *ud, int on);
} fanout_ops;

typedef struct fanout fanout;

/* subs and m are borrowed (must outlive the fanout); ops is copied;
 * envelope_types is an enum envelope_types (shard/envelope.h).  NULL on
 * ENOMEM. */
fanout *fanout_new(subs_index *subs, shard_metrics *m, unsigned envelope_types,
                   const fanout_ops *ops, void *ud);

/* NULL is a no-op. */
void fanout_free(fanout *f);

/* Deliver one router record to the clients of its channel (or to every
 * client for FRAME_REC_ALL_CLIENTS); counted as above.  Builds the frame
 * once. */
void fanout_deliver(fanout *f, const frame_record *r);

#endif
