/*
 * Reconnect replay (docs/protocol.md "Resume"): a client comes back (to any
 * shard) with the position (partition, last offset) of each channel; the
 * shard subscribes it, reads every record of those channels after that
 * position from Kafka itself, sends them as envelopes with "replay":true,
 * then {"type":"reconnect_ack",...}, then live records, with no gap and no
 * duplicate at the seam.
 *
 * Threads: each replay runs on its own thread with its own librdkafka
 * consumer handle (legacy simple-consumer API, no consumer group, explicit
 * start offsets), so a slow broker never blocks the event loop or other
 * clients.  The thread posts records, end-of-partition notices and its
 * result to a queue that an eventfd wakes the loop for.  At most
 * RESUME_MAX_CONCURRENT replays run at once; a replay holds at most
 * RESUME_PENDING_BYTES of records the loop has not taken yet (the thread
 * waits), so memory is bounded.
 *
 * The seam: while a client's replay runs, live records of its resuming
 * channels are held for that client (a reference to the shared frame, in
 * arrival order).  The replay ends when, for every channel, it has read to
 * the end of the partition and either a held live record starts at or below
 * that point, or the token's route was already registered when the replay
 * began, or Redis confirmed the route RESUME_SETTLE_MS ago.  Held live
 * records with an offset <= the last replayed one are dropped, the rest go
 * out after the ack; and until a live record passes it, later live records
 * at or below that offset are dropped too (a router that lags behind the
 * replay).
 *
 * Everything here except the worker thread runs on the loop thread.
 */
#ifndef ODIN_SHARD_RESUME_H
#define ODIN_SHARD_RESUME_H

#include <stddef.h>
#include <stdint.h>
#include "proto/frame.h"
#include "shard/shard.h"
#include "shard/ws.h"

struct shard_client;

#define RESUME_SETTLE_MS 250
#define RESUME_PENDING_BYTES (1u << 20)

/* Result codes (wire names in resume_code_name). */
enum resume_code {
    RESUME_OK = 0,
    RESUME_TOO_FAR_BEHIND,
    RESUME_POSITION_EXPIRED,
    RESUME_INVALID_POSITION,
    RESUME_UNAVAILABLE,
    RESUME_BUSY,
    RESUME_CODE_N
};
const char *resume_code_name(enum resume_code c);

typedef struct shard_resume shard_resume;

/* NULL on ENOMEM (logged).  Works without KAFKA_BROKERS (every reconnect is
 * then answered RESUME_UNAVAILABLE). */
shard_resume *shard_resume_new(shard_ctx *ctx);
/* Stop every replay, join the threads, free.  NULL is a no-op. */
void shard_resume_free(shard_resume *rm);
long shard_resume_active(const shard_resume *rm);

/* One channel to resume.  partition -1: the partition the token hashes to
 * with librdkafka's default partitioner (odin-ws form). */
typedef struct resume_req_chan {
    const char *name;
    size_t len;
    int32_t partition;
    int64_t seq;            /* last offset the client has; replay from seq+1 */
} resume_req_chan;

/*
 * Start a replay for client c, already subscribed to every channel.  Sends
 * the reconnect_error itself when it cannot start (no brokers, cap, a
 * replay already running for c, a category without a Kafka topic); an
 * empty list is acknowledged at once.  `odinws` marks envelopes as odin-ws's
 * "replay:message".
 */
void shard_resume_start(shard_resume *rm, struct shard_client *c,
                        const resume_req_chan *ch, size_t n, int odinws);

/* Fan-out hook for a client with c->rs set: 1 if the record was held (a
 * replay is running) or dropped (at or below the last replayed offset),
 * 0 if the caller should queue it as usual. */
int shard_resume_filter(struct shard_client *c, const frame_record *r,
                        ws_chunk *frame);

/* The client is going away (from client_free or a shutdown). */
void shard_resume_client_gone(struct shard_client *c);

/* ---- pure parts (unit-tested) ---- */

/* Seam rule for one channel: the replay has read to `pos` (the next offset,
 * -1 if unknown) and is at the end of the partition (`at_eof`);
 * `first_held` is the offset of the first live record held for it (-1 if
 * none); `routed_for_ms` is how long the route has been confirmed (-1 if
 * not), `pre_routed` whether it already was when the replay began. */
int resume_seam_ok(int64_t pos, int at_eof, int64_t first_held,
                   int pre_routed, int64_t routed_for_ms);

/* A live record at `offset` after a replay that ended at `last` (the last
 * offset replayed or the client's own position): 1 keep, 0 duplicate. */
static inline int resume_keep_live(int64_t offset, int64_t last)
{
    return offset > last;
}

#endif
