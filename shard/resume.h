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
 * partition, start offset, token).  Requests are grouped by partition; the
 * reader keeps what it has read of each partition as a bounded history, so
 * a request behind the reader is served from memory at once, and one below
 * the history makes the reader read only the range it lacks (a backfill).
 * A partition's missed window is read about once, whatever the number of
 * clients and the order in which they come back (resume_sched below is that
 * bookkeeping, pure).
 *
 * The thread posts one ordered stream to the loop (eventfd + queue): a
 * record once (not once per client), records of the history addressed to
 * one request, end of partition, "request attached" (from here on every
 * record of its token is posted; with the high watermark read after the
 * request was made: its replay may end at the end only past it), "pass
 * over" (for ws_replay_pass_requests) and refusals (POSITION_EXPIRED,
 * INVALID_POSITION, TOO_FAR_BEHIND, RESUME_UNAVAILABLE).  The loop delivers
 * a record to the attached requests of its partition whose token matches,
 * building the envelope once per record.  Records that fail the router's
 * checks (common/record.h) are skipped and counted, never replayed.
 *
 * Memory: records posted and not yet taken by the loop, live frames held
 * for resuming clients and the reader's histories are bounded by
 * RESUME_MEMORY_BYTES (the oldest history records go first; then the reader
 * waits).
 *
 * The seam: while a client's replay runs, live records of its resuming
 * channels are held for that client (a reference to the shared frame, in
 * arrival order).  The replay ends when, for every channel, it has read to
 * the end of the partition (an end at or past the high watermark read after
 * the request was made) and either a held live record starts at or below
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
#include "shard/ctx.h"
#include "shard/ws.h"

#include "common/tbucket.h"
#include "shard/subs.h"

/*
 * What resume keeps on a client connection (embedded in it by its owner,
 * shard/client.c): the replay state, the connection's subscriptions (for
 * the count in acks) and its RESUME_CONN_RATE bucket.  `owner` is the
 * connection itself, opaque here, handed back to the callbacks.
 */
typedef struct resume_conn {
    struct resume_client *rs;   /* replay or floors running (resume.c); NULL: none */
    const subs_conn *subs;
    void *owner;
    tbucket bucket;             /* RESUME_CONN_RATE, set at the first reconnect */
    uint8_t bucket_set;
} resume_conn;

#define RESUME_SETTLE_MS 250
/* fds the reader's librdkafka handle may use (reserved once) */
#define RESUME_READER_FDS 32
/* a partition's history is dropped when nobody read it for this long */
#define RESUME_HISTORY_IDLE_MS 30000
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

/* How resume reaches its owner (shard.c) and the connections (their
 * resume_conn.owner). */
typedef struct resume_callbacks {
    /* Take one reconnect from the RESUME_IP_RATE bucket of the address of
     * connection `owner`: 1 allowed, 0 over the rate
     * (shard_server_ip_reconnect_allow). */
    int (*ip_reconnect_allow)(void *ud, void *owner, uint64_t now);
    /* Queue a frame on the connection (takes its own reference): 0 queued,
     * -1 not (closed, or over its queue limits and now closing). */
    int (*push)(void *ud, void *owner, ws_chunk *ch);
    /* Queue a text reply (reconnect_ack / reconnect_error): 0 or -1. */
    int (*send_text)(void *ud, void *owner, const char *data, size_t len);
    void *ud;
} resume_callbacks;

/* NULL on ENOMEM (logged).  Works without KAFKA_BROKERS (every reconnect is
 * then answered RESUME_UNAVAILABLE).  The reader starts at the first
 * reconnect.  cb is copied. */
shard_resume *shard_resume_new(shard_ctx *ctx, const resume_callbacks *cb);
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
/* Bytes of the reader's histories (records kept to serve positions behind
 * it; they count against RESUME_MEMORY_BYTES too and give way first). */
long shard_resume_history(const shard_resume *rm);

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
void shard_resume_start(shard_resume *rm, resume_conn *c,
                        const resume_req_chan *ch, size_t n, int odinws);

/* Fan-out hook for a connection with c->rs set: 1 if the record was held (a
 * replay is running) or dropped (at or below the last replayed offset),
 * 0 if the caller should queue it as usual. */
int shard_resume_filter(shard_resume *rm, resume_conn *c,
                        const frame_record *r, ws_chunk *frame);

/* The client is going away (from client_free or a shutdown): its requests
 * are dropped at once. */
void shard_resume_client_gone(shard_resume *rm, resume_conn *c);

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

/*
 * The reader's bookkeeping of one partition (pure).
 *
 * Requests (id, start offset, token) and whether each is attached (every
 * record of its token from where it was attached on will be read and
 * posted).  The records the reader has read are kept as a history `h`,
 * contiguous: every record of [h.floor, h.top) (skipped ones as markers),
 * bounded by RESUME_MEMORY_BYTES (oldest dropped first, raising h.floor) and
 * kept after the last request leaves.  A request whose start is in the
 * history is served from it at once (HIST) and attached at its top.  A
 * request below the history makes the reader *backfill*: restart at its
 * start, read up to h.floor into `b`, join b to the history (the seam) and
 * go back to h.top.  So the partition is read about once, whatever the order
 * in which the crowd's positions arrive.
 */
typedef struct resume_hrec {
    struct resume_hrec *next;
    int64_t offset;
    int64_t ts;
    int skip;                /* -1 valid, else enum record_invalid */
    uint32_t klen, vlen;
    size_t mem;              /* bytes counted for it */
    char data[];             /* key, value */
} resume_hrec;

typedef struct resume_hist {
    resume_hrec *head, *tail;    /* offset order */
    int64_t floor, top;          /* every record of [floor, top) is here */
    size_t bytes, n;
} resume_hist;

typedef struct resume_sched_req {
    uint64_t id;
    int64_t start;
    int attached;            /* 0 waits, 1 attached, 2 attached by a restart
                              * (the caller announces it and sets 1) */
    int serve;               /* the caller serves it h[serve_from, h.top) */
    int64_t need;            /* the caller's (not used here) */
    uint8_t tlen;
    char token[64];
} resume_sched_req;

typedef struct resume_sched_tok {   /* attached requests per token */
    uint8_t tlen, used;
    uint32_t count;
    char token[64];
} resume_sched_tok;

typedef struct resume_sched {
    resume_sched_req *r;
    size_t n, cap;
    resume_sched_tok *tok;   /* open addressing, ntok_cap a power of two */
    size_t ntok, ntok_cap;
    int running;             /* the partition is being read */
    int at_eof;              /* pos is the end of the partition */
    int bf;                  /* backfilling: pos < h.floor, reading into b */
    int64_t pos;             /* next offset the reader delivers */
    resume_hist h, b;
} resume_sched;

enum resume_sched_act {
    RESUME_SCHED_WAIT = 0,   /* below everything read: waits for the seam */
    RESUME_SCHED_JOIN,       /* attached at its start, to the running read */
    RESUME_SCHED_HIST,       /* served from st.from [start, st.attach), then
                              * attached at st.attach */
    RESUME_SCHED_BACKFILL,   /* attached at start; the reader restarts there */
    RESUME_SCHED_START       /* not running: start reading at start */
};

typedef struct resume_sched_step {
    int act;                     /* enum resume_sched_act */
    const resume_hist *from;     /* HIST: the records to serve */
    int64_t attach;              /* where the request is attached */
    int64_t restart;             /* >= 0: (re)start the reader here */
} resume_sched_step;

/* Add a request (tlen <= 64).  0 (what to do in *st), or -1 on ENOMEM or a
 * too long token (nothing added). */
int resume_sched_add(resume_sched *s, uint64_t id, int64_t start,
                     const char *token, size_t tlen, resume_sched_step *st);

enum resume_sched_rec {
    RESUME_REC_NONE = 0,     /* kept (history); no attached request wants it */
    RESUME_REC_POST,         /* kept; an attached request has its token */
    RESUME_REC_SEAM          /* backfill reached the history: call
                              * resume_sched_seam (nothing kept) */
};
/* The reader read the record at `offset` (skip: -1 or why it fails the
 * checks; the value is not kept for a skipped record).  Returns an enum
 * resume_sched_rec; *added gets the bytes now held for it (0 if not kept:
 * ENOMEM drops the history, which then restarts after this record). */
int resume_sched_record(resume_sched *s, int64_t offset, int64_t ts, int skip,
                        const char *key, size_t klen, const char *val,
                        size_t vlen, size_t *added);
/* The backfill reached the history at `at` (a record at or past h.floor, or
 * the end of the partition, `at` = its next offset).  b is joined to h;
 * requests attached below the old floor get serve = 1 (the caller posts
 * their records of h from *serve_from and clears it).  Returns where the
 * reader restarts: the lowest waiting start (a new backfill; those requests
 * get attached = 2), h.top, or -1 when the reader is already there (`at` >=
 * h.top: the caller handles the record or the end as a normal one). */
int64_t resume_sched_seam(resume_sched *s, int64_t at, int64_t *serve_from);
/* The reader reached the end (`next` = the next offset), not backfilling. */
void resume_sched_eof(resume_sched *s, int64_t next);
/* Remove request `id`: 0, or -1 if absent.  s->n is what remains; at 0 the
 * reader stops: running = 0, the history h is kept (b is dropped). */
int resume_sched_remove(resume_sched *s, uint64_t id);
/* Drop the oldest record held (of b, else of h); its bytes, 0 if none. */
size_t resume_sched_evict(resume_sched *s);
/* Bytes held in b and h. */
size_t resume_sched_held(const resume_sched *s);
/* Remove every request and drop the history; frees everything.  The struct
 * can be reused. */
void resume_sched_clear(resume_sched *s);

#endif
