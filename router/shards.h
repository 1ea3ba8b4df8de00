/*
 * The router's shard table and shard connections.
 *
 * Every shard id the router has heard of (from discovery or from a route
 * set) gets a small integer "slot"; the route cache stores slots.  A shard
 * is "live" while its lease hash existed at the last discovery; only live
 * shards are connected to and sent to.
 *
 * One non-blocking stream per live shard (endpoint "unix:/path" or
 * "tcp://host:port", connected through common/net.h: host names resolved
 * off the loop, TCP keepalive on): connect, the link handshake
 * (proto/handshake.h: our HELLO names the shard id we mean and the endpoint
 * we dialed; the shard must answer with that id, and with a secret both
 * sides prove it over the whole transcript, we first), then DELIVERY
 * frames.  Until the link is up the shard can make us hold only a decoder
 * capped at FRAME_HANDSHAKE_MAX and the handshake state, for at most
 * SHARD_HELLO_TIMEOUT_MS.  Per Kafka batch, records for a shard are appended to
 * one frame in that shard's bounded output queue (split at the peer's
 * max_frame) and each touched shard gets one write() at the end of the
 * batch; what the socket does not take waits for EV_WRITE.  A full queue
 * drops the record for that shard only; a shard that accepts nothing for
 * SHARD_STALL_TIMEOUT_MS is disconnected; a lost connection drops what was
 * queued.  Drops and completions are reported through the hooks, frame by
 * frame, with the ticket the router attached to the batch.  Reconnects use
 * exponential backoff while the lease says the shard is alive.
 *
 * Shard structs live until router_shards_free (or a slot sweep when the
 * table is full); closing a connection never frees the struct, so it is
 * safe from the shard's own callbacks.
 */
#ifndef ODIN_ROUTER_SHARDS_H
#define ODIN_ROUTER_SHARDS_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "proto/frame.h"
#include "router/metrics.h"
#include "router/outq.h"

#define ROUTER_SHARDS_MAX 4096u   /* slots; ids beyond are ignored (logged) */
#define ROUTER_SHARDS_GC_DEAD 64u /* compact when this many slots are dead */

enum router_shard_state {
    RSH_IDLE = 0,       /* no connection (waiting for backoff or lease) */
    RSH_CONNECTING,     /* non-blocking connect in progress */
    RSH_HELLO,          /* connected, in the handshake (HELLO / AUTH) */
    RSH_READY           /* deliveries flow */
};

/* One slot of the table; its fields are private to shards.c (every counter
 * in it has shards.c as its one writer). */
typedef struct router_shard router_shard;

uint16_t router_shard_slot(const router_shard *sh);
int router_shard_live(const router_shard *sh);     /* lease present or in grace */
enum router_shard_state router_shard_state(const router_shard *sh);

/* White-box tests only (tests/unit/test_router_shards.c: no sockets): the
 * backpressure state, the output queue, and forcing a connection state. */
int router_shard_slow(const router_shard *sh);
router_outq *router_shard_queue(router_shard *sh);
void router_shard_test_set_state(router_shard *sh, enum router_shard_state st);

typedef struct router_shards_hooks {
    /* A frame holding nrec records for `ticket` was fully written (done 1)
     * or dropped (done 0, reason says why).  Called once per frame. */
    void (*frame)(void *ticket, uint32_t nrec, int done, enum router_drop reason,
                  void *arg);
    /* A frame for `ticket` was queued (one more frame() call will follow). */
    void (*ticket_ref)(void *ticket, void *arg);
    /* Connected-shard count changed (may be NULL). */
    void (*state)(void *arg);
    void *arg;
} router_shards_hooks;

typedef struct router_shards_opts {
    const char *router_id;
    size_t queue_bytes;
    long stall_timeout_ms;
    long hello_timeout_ms;
    long reconnect_max_ms;
    long down_grace_ms;          /* SHARD_DOWN_GRACE_MS */
    struct evdns_base *dns;      /* resolver for tcp:// host names (not owned) */
    const char *secret;          /* SHARD_INGRESS_SECRET or NULL (copied): links
                                    authenticate both ways (proto/frame.h) */
} router_shards_opts;

typedef struct router_shards router_shards;

/* NULL on ENOMEM.  opts and hooks are copied (router_id too). */
router_shards *router_shards_new(struct event_base *base, const router_shards_opts *opts,
                                 const router_shards_hooks *hooks, router_metrics *m);
/* Closes every connection (drops reported through hooks) and frees. */
void router_shards_free(router_shards *s);

/* Slot for a shard id, created (not live) on first sight.  NULL if the id is
 * empty/too long or the table is full. */
router_shard *router_shards_intern(router_shards *s, const char *id, size_t len);
router_shard *router_shards_get(router_shards *s, uint16_t slot);
/* Existing slot for an id, or NULL (never creates). */
router_shard *router_shards_find(router_shards *s, const char *id, size_t len);
size_t router_shards_nslots(const router_shards *s);

/* Discovery results: the lease exists with this endpoint (connect or
 * reconnect if it changed) / does not exist (close, stop sending). */
void router_shards_set_live(router_shards *s, router_shard *sh, const char *endpoint);
void router_shards_set_dead(router_shards *s, router_shard *sh, const char *why);

/*
 * The lease is gone (expired, or the shard is not registered any more) but
 * the shard may only be stalled or Redis emptied: a shard with a ready
 * connection stays live for down_grace_ms from the first call (its records
 * keep being queued, bounded by queue_bytes) and 1 is returned ("keep its
 * routes"); router_shards_set_live ends the grace.  Past the grace, or
 * without a ready connection, this is router_shards_set_dead and 0 is
 * returned.
 */
int router_shards_set_lapsed(router_shards *s, router_shard *sh, const char *why,
                             uint64_t now_ms);

size_t router_shards_live(const router_shards *s);

/*
 * Backpressure: 1 if consumption should pause because a ready shard's queue
 * is above half of its limit and has been for less than budget_ms.  A shard
 * over the budget is marked slow (logged) and not waited for again until its
 * queue falls below a quarter.  budget_ms 0: never pause.
 */
int router_shards_backpressure(router_shards *s, uint64_t now_ms, long budget_ms);
size_t router_shards_ready(const router_shards *s);
uint64_t router_shards_queued_bytes(const router_shards *s);
/* router_gauges.shard_at for /metrics: slot i's id, queue and drops.  0, or
 * -1 past the last slot.  shards is a router_shards *. */
int router_shards_sample(const void *shards, size_t i, router_shard_sample *out);

/*
 * Batch building.  begin() starts batch `batch_no` with `ticket`;
 * add() appends a record for one shard and returns 0 if queued, or -1 if it
 * was dropped for that shard with *why set to the router_drop reason
 * (counted here, as every drop: router_metrics drops and the shard's own
 * drops have this module as their one writer); end() closes the open frames, attaches the marks and
 * writes once to every touched shard.
 */
void router_shards_batch_begin(router_shards *s, uint64_t batch_no, enum frame_mode mode,
                               void *ticket);
int router_shards_add(router_shards *s, router_shard *sh, const frame_record *r,
                      enum router_drop *why);
void router_shards_batch_end(router_shards *s);

/*
 * Free the slots of shards that are not live and not connected (shard ids
 * default to hostname-pid, so every restart brings a new id).  Renumbers the
 * remaining slots: the caller must flush the route cache and hold no slot
 * numbers (no batch in flight).  Returns the number freed.
 */
size_t router_shards_compact(router_shards *s);

/* Periodic (1 s): disconnect stalled shards and shards past their grace. */
void router_shards_tick(router_shards *s, uint64_t now_ms);

/* Close every connection now, dropping their queues (shutdown timeout). */
void router_shards_close_all(router_shards *s, const char *why);

/* The admin API's view of up to max slots (GET /admin/v1/shards,
 * router/adminapi.h; strings borrowed until the table next changes).
 * Returns how many were filled. */
struct router_adminapi_shard;
size_t router_shards_admin(const router_shards *s, struct router_adminapi_shard *out,
                           size_t max);

/* Append a JSON array describing every slot (for /health). */
int router_shards_json(const router_shards *s, buf *out);

#endif
