/*
 * Reconnect replay (docs/protocol.md "Resume", docs/architecture.md
 * "Reconnect replay"): a client comes back (to any shard) with the position
 * (partition, last offset) of each channel; the shard subscribes it, reads
 * every record of those channels after that position from Kafka, sends them
 * as envelopes with "replay":true, then {"type":"reconnect_ack",...}, then
 * live records, with no gap and no duplicate at the seam.
 *
 * One reader per shard process: one librdkafka handle (legacy simple
 * consumer, manual start offsets, no consumer group) and one thread, started
 * at the first reconnect.  Every channel to resume is a request (topic,
 * partition, start offset, token).  Requests are grouped by partition: a
 * partition is read once from the lowest waiting position to its end, and
 * each record goes to every request whose token it carries; a request that
 * arrives while the reader is past its position waits for the next pass
 * (the reader restarts at the lowest waiting position when a pass reaches
 * the end).  The cost grows with the records missed, not with the number of
 * clients reconnecting (resume_sched below is that bookkeeping, pure).
 *
 * The thread posts one ordered stream to the loop (eventfd + queue): a
 * record once (not once per client), end of partition, "request attached"
 * (from here on the reader's position is at or before its start), "pass
 * over" (for ws_replay_pass_requests) and refusals (POSITION_EXPIRED,
 * INVALID_POSITION, TOO_FAR_BEHIND, RESUME_UNAVAILABLE).  The loop delivers
 * a record to the attached requests of its partition whose token matches,
 * building the envelope once per record.  Records that fail the router's
 * checks (common/record.h) are skipped and counted, never replayed.
 *
 * Memory: records posted and not yet taken by the loop plus live frames held
 * for resuming clients are bounded by RESUME_MEMORY_BYTES (the reader waits).
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
 * Everything here except the reader thread runs on the loop thread.
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
/* fds the reader's librdkafka handle may use (reserved once) */
#define RESUME_READER_FDS 32
/* longest shard_resume_free waits for the reader thread */
#define RESUME_JOIN_MS 2000

/* Result codes (wire names in resume_code_name). */
enum resume_code {
    RESUME_OK = 0,
    RESUME_TOO_FAR_BEHIND,
    RESUME_POSITION_EXPIRED,
    RESUME_INVALID_POSITION,
    RESUME_UNAVAILABLE,
    RESUME_BUSY,
    RESUME_RATE_LIMITED,
    RESUME_CODE_N
};
const char *resume_code_name(enum resume_code c);

typedef struct shard_resume shard_resume;

/* NULL on ENOMEM (logged).  Works without KAFKA_BROKERS (every reconnect is
 * then answered RESUME_UNAVAILABLE).  The reader starts at the first
 * reconnect. */
shard_resume *shard_resume_new(shard_ctx *ctx);
/* Drop every replay, stop the reader (waiting RESUME_JOIN_MS at most; past
 * that the thread is left to the process exit, logged), free.  NULL is a
 * no-op. */
void shard_resume_free(shard_resume *rm);
/* Clients replaying now. */
long shard_resume_active(const shard_resume *rm);
/* Bytes held for replays now (RESUME_MEMORY_BYTES counts these) and
 * partitions the reader is reading. */
long shard_resume_memory(const shard_resume *rm);
long shard_resume_partitions(const shard_resume *rm);

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
 * replay already running for c, over the reconnect rate of the connection
 * or its address, a category without a Kafka topic); an empty list is
 * acknowledged at once.  `odinws` marks envelopes as odin-ws's
 * "replay:message".
 */
void shard_resume_start(shard_resume *rm, struct shard_client *c,
                        const resume_req_chan *ch, size_t n, int odinws);

/* Fan-out hook for a client with c->rs set: 1 if the record was held (a
 * replay is running) or dropped (at or below the last replayed offset),
 * 0 if the caller should queue it as usual. */
int shard_resume_filter(struct shard_client *c, const frame_record *r,
                        ws_chunk *frame);

/* The client is going away (from client_free or a shutdown): its requests
 * are dropped at once. */
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

/* Admission of a request from the partition's watermarks [lo, hi), without
 * reading: RESUME_POSITION_EXPIRED (start < lo), RESUME_INVALID_POSITION
 * (start > hi), RESUME_TOO_FAR_BEHIND (hi - start > max_offsets) or
 * RESUME_OK. */
enum resume_code resume_admit(int64_t lo, int64_t hi, int64_t start,
                              long max_offsets);

/* Token bucket (reconnects per connection / per address).  at_ms 0 = new
 * (starts full).  1 if a token was taken, 0 if empty; rate <= 0 = no
 * limit. */
typedef struct resume_bucket {
    double tokens;
    uint64_t at_ms;
} resume_bucket;
int resume_bucket_take(resume_bucket *b, uint64_t now_ms, double rate,
                       double burst);

/*
 * The reader's bookkeeping of one partition: requests (id, start offset,
 * token), whether each is attached (the reader's position is at or before
 * its start, so every record it needs will be read from here on), and the
 * reader's position.
 */
typedef struct resume_sched_req {
    uint64_t id;
    int64_t start;
    int attached;
    uint8_t tlen;
    char token[64];
} resume_sched_req;

typedef struct resume_sched {
    resume_sched_req *r;
    size_t n, cap;
    int running;             /* the partition is being read */
    int at_eof;              /* pos is the end of the partition */
    int64_t pos;             /* next offset the reader delivers */
} resume_sched;

enum resume_sched_act {
    RESUME_SCHED_WAIT = 0,   /* reader past start: waits for the next pass */
    RESUME_SCHED_JOIN,       /* attached to the running pass */
    RESUME_SCHED_SEEK,       /* reader idle at the end: restart at pos (= start) */
    RESUME_SCHED_START       /* not running: start reading at pos (= start) */
};

/* Add a request (tlen <= 64).  Returns an enum resume_sched_act, or -1 on
 * ENOMEM (nothing added). */
int resume_sched_add(resume_sched *s, uint64_t id, int64_t start,
                     const char *token, size_t tlen);
/* The reader read the record at `offset` with this key: 1 if an attached
 * request needs it (same token, offset >= its start), else 0. */
int resume_sched_record(resume_sched *s, int64_t offset, const char *key,
                        size_t klen);
/* The reader reached the end (`next` = the next offset).  When requests
 * wait, returns the lowest waiting start (the reader restarts there) and
 * marks them attached with attached = 2 (the caller announces them and sets
 * 1); else -1. */
int64_t resume_sched_eof(resume_sched *s, int64_t next);
/* Remove request `id`: 0, or -1 if absent.  s->n is what remains. */
int resume_sched_remove(resume_sched *s, uint64_t id);
/* Remove every request; frees the array.  The struct can be reused. */
void resume_sched_clear(resume_sched *s);

#endif
