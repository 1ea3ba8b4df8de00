/*
 * WebSocket (RFC 6455) pieces of the shard, all without I/O:
 *  - the upgrade handshake check and Sec-WebSocket-Accept computation;
 *  - ws_chunk, a refcounted buffer holding complete server frames (header +
 *    payload).  Server frames are unmasked, so one chunk can be queued to any
 *    number of clients: fan-out shares bytes, it never copies them;
 *  - ws_parser, the input side, which drives wslay's event API with bytes
 *    the caller read.  The wslay context (about 8.8 KB) exists only while a
 *    frame or fragmented message is incomplete, so an idle connection holds
 *    no parser memory.  wslay's own output (pongs, close replies) is handed
 *    to the owner's send callback at the point it is generated, so it keeps
 *    its order with the owner's frames;
 *  - ws_parser_set, what a group of parsers shares: the partial-frame
 *    budget and its total, the count of live wslay contexts, and one
 *    inflate stream and buffer with its counters.  The shard's client pool
 *    owns one (shard/clientpool.c); nothing here is process-wide, so two
 *    sets (two pools, two tests) never see each other.
 */
#ifndef ODIN_SHARD_WS_H
#define ODIN_SHARD_WS_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "common/buf.h"
#include "shard/httpreq.h"

enum ws_opcode {
    WS_OP_CONT = 0x0, WS_OP_TEXT = 0x1, WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8, WS_OP_PING = 0x9, WS_OP_PONG = 0xA,
};


/* ---- handshake ------------------------------------------------------- */

/* 1 if key is base64 of 16 bytes (24 chars ending in "=="). */
int ws_key_valid(const char *key, size_t len);

/*
 * Check an upgrade request for /ws (RFC 6455 4.2.1).  Returns 0 if it may be
 * upgraded, else the HTTP status to answer with (400, 405, 426) and *reason
 * (static text).
 */
int ws_handshake_check(const httpreq *req, const char **reason);

/*
 * Cross-site WebSocket hijacking guard.  `allowed` is WS_ALLOWED_ORIGINS: a
 * comma-separated list of origins ("https://app.example.com"), each matched
 * whole and case-insensitively, or with a wildcard host: the scheme, then
 * "*.example.com", matches any subdomain of example.com (not the bare
 * domain, and only host labels: no port, path or user part).
 * NULL or empty allows every origin (the default).  A request without an
 * Origin header is not from a browser page and is allowed.  Returns 1 if
 * allowed, 0 if not (answer 403).
 */
int ws_origin_allowed(const char *allowed, const httpreq *req);

/* Append "101 Switching Protocols" with the accept value for key. */
int ws_handshake_response(buf *out, const char *key, size_t key_len);

/* The same with a "Sec-WebSocket-Extensions: <ext>" line (ext NULL: none). */
int ws_handshake_response_ext(buf *out, const char *key, size_t key_len,
                              const char *ext);

/* Append a complete "Connection: close" HTTP/1.1 response.  extra: more
 * header lines, each ending in \r\n (may be NULL). */
int ws_http_response(buf *out, int status, const char *ctype,
                     const char *body, size_t len, const char *extra);

/* ---- outgoing frames ----------------------------------------------- */

typedef struct ws_chunk {
    uint32_t refs;
    uint32_t len;
    int64_t ts_ms;        /* live record: its Kafka timestamp (latency); else 0 */
    struct ws_chunk *z;   /* permessage-deflate variant (owned), see ws_deflate_chunk */
    uint8_t flags;        /* WS_CHUNK_* */
    uint8_t hlen;         /* frame header length (WS_CHUNK_MSG chunks) */
    uint8_t data[];
} ws_chunk;

#define WS_CHUNK_MSG    0x1u  /* one unfragmented text/binary frame: may be
                                 compressed for permessage-deflate clients */
#define WS_CHUNK_TRIED  0x2u  /* compression tried; z is NULL if it did not pay */

/* New chunk with refs = 1 and `len` uninitialised bytes; NULL on ENOMEM or
 * len > UINT32_MAX. */
ws_chunk *ws_chunk_new(size_t len);

/* Write a FIN frame header for a payload of `len` (server: unmasked) into
 * out; returns its length (2, 4 or 10). */
size_t ws_frame_header(uint8_t out[10], unsigned opcode, uint64_t len);

/* The same with RSV1 set (a permessage-deflate compressed message). */
size_t ws_frame_header_rsv1(uint8_t out[10], unsigned opcode, uint64_t len);

/* Complete frame from payload bytes (copied).  NULL on ENOMEM. */
ws_chunk *ws_chunk_frame(unsigned opcode, const void *payload, size_t len);

/* Close frame with status code and reason (truncated to 123 bytes). */
ws_chunk *ws_chunk_close(uint16_t code, const char *reason);

static inline void ws_chunk_ref(ws_chunk *c) { c->refs++; }
static inline void ws_chunk_unref(ws_chunk *c)
{
    if (c && --c->refs == 0) {
        if (c->z && --c->z->refs == 0)
            free(c->z);   /* a variant has no variant of its own */
        free(c);
    }
}

/* ---- permessage-deflate (RFC 7692) ---------------------------------- */

/*
 * Outgoing messages are compressed without context takeover on our side
 * (server_no_context_takeover is always in our answer), so one compressed
 * frame is valid for every client that negotiated the extension: a chunk is
 * compressed at most once per shard, on its first push to such a client,
 * and the result is cached on the chunk (ws_chunk.z) for the others.
 * Compression uses a 2^15 window; offers that limit server_max_window_bits
 * below 15 are declined.  Incoming messages are inflated with the state
 * their parser set shares, reset per message: our answer always carries
 * client_no_context_takeover, so no client holds inflate memory.
 */

#define WS_PMD_RESPONSE_MAX 128

/*
 * Pick the first permessage-deflate offer we can honour from the
 * Sec-WebSocket-Extensions header values vals[0..n) (each a comma-separated
 * list of offers, RFC 7692 section 5).  An offer is declined when it has an
 * unknown or repeated parameter, a parameter value that is not allowed
 * (server_/client_no_context_takeover take none; server_max_window_bits
 * needs 8..15, client_max_window_bits allows none or 8..15), or
 * server_max_window_bits below 15.  Returns 1 and writes the NUL-terminated
 * response element ("permessage-deflate; server_no_context_takeover;
 * client_no_context_takeover" [+ "; server_max_window_bits=15" when the
 * offer had it]) to resp, or 0 when no offer is acceptable (answer without
 * the extension).  Pure.
 */
int ws_pmd_negotiate(const httpreq_str *vals, size_t n,
                     char resp[WS_PMD_RESPONSE_MAX]);

/* Counters of a ws_deflate (plain value type, embedded in the metrics). */
typedef struct ws_deflate_stats {
    uint64_t compressions;    /* messages compressed (once per shard each) */
    uint64_t skipped_small;   /* messages below the minimum size */
    uint64_t incompressible;  /* compressed output was not smaller */
    uint64_t in_bytes;        /* payload bytes given to the compressor */
    uint64_t out_bytes;       /* compressed payload bytes it produced */
} ws_deflate_stats;

typedef struct ws_deflate ws_deflate;

/* A compressor with zlib level 1..9 that leaves payloads shorter than
 * min_size uncompressed.  NULL on ENOMEM or a bad level. */
ws_deflate *ws_deflate_new(int level, size_t min_size);
void ws_deflate_free(ws_deflate *d);   /* NULL: no-op */

/*
 * The frame to send a permessage-deflate client for ch: ch->z (an RSV1
 * frame with the raw-deflate payload, the trailing 00 00 ff ff removed,
 * RFC 7692 7.2.1), built on the first call and cached on ch, or ch itself
 * when ch is not a WS_CHUNK_MSG chunk, is below the minimum size, did not
 * get smaller, or memory ran out.  The returned chunk is borrowed from ch
 * (take a reference to keep it).  Counts into *st.
 */
ws_chunk *ws_deflate_chunk(ws_deflate *d, ws_chunk *ch, ws_deflate_stats *st);

/* ---- parser sets ----------------------------------------------------- */

/*
 * What a group of parsers shares (opaque): the partial-frame budget and the
 * total charged against it, the number of live wslay contexts, and one
 * inflate stream and buffer (created on the first compressed message,
 * reset per message) with its counters.  One owner (the shard's client
 * pool); loop thread only.
 */
typedef struct ws_parser_set ws_parser_set;

/* A set whose parsers may hold `budget` bytes of half-received data
 * (WS_PARTIAL_BUDGET; 0: no limit).  NULL on ENOMEM. */
ws_parser_set *ws_parser_set_new(uint64_t budget);

/* Free the set, its inflate stream and buffer.  Every parser of the set
 * must have been freed first (ws_parser_free): they point to it.  NULL is
 * a no-op. */
void ws_parser_set_free(ws_parser_set *s);

/* Bytes the set's parsers hold against the budget now; wslay contexts
 * alive; compressed messages inflated so far, and those refused (too big
 * or corrupt).  For the metrics and tests. */
uint64_t ws_parser_partial_bytes(const ws_parser_set *s);
long ws_parser_contexts(const ws_parser_set *s);
uint64_t ws_inflate_messages(const ws_parser_set *s);
uint64_t ws_inflate_refused(const ws_parser_set *s);

/*
 * Inflate one permessage-deflate message (in = its payload as received,
 * without the 00 00 ff ff tail) with s's inflate state, reset first (no
 * context takeover).  On success returns 0 and *out and *out_len point to
 * s's buffer, valid until the next call on s (or ws_parser_set_free).
 * Returns WS_INFLATE_TOOBIG when the result would exceed max_len bytes (it
 * stops there: memory stays bounded by max_len), WS_INFLATE_BAD for
 * corrupt data, WS_INFLATE_NOMEM; each failure counts in
 * ws_inflate_refused(s).
 */
#define WS_INFLATE_TOOBIG (-1)
#define WS_INFLATE_BAD    (-2)
#define WS_INFLATE_NOMEM  (-3)
int ws_inflate_msg(ws_parser_set *s, const uint8_t *in, size_t len,
                   size_t max_len, const uint8_t **out, size_t *out_len);

/* ---- incoming frames (wslay glue) --------------------------------- */

struct ws_feed;

/*
 * One connection's input side, embedded in its owner (plain struct: the
 * owner reads ctx, close_code and deflate).  Start it with ws_parser_init;
 * while a wslay context is open (ctx non-NULL) wslay holds the parser's
 * address, so it must not move.
 */
typedef struct ws_parser {
    ws_parser_set *set;   /* borrowed: the set it counts in (must outlive it) */
    struct ws_feed *feed; /* the ws_parser_feed call in progress, else NULL */
    void *ctx;            /* wslay_event_context_ptr while a frame is open */
    uint64_t fed;         /* bytes given to the current context */
    uint64_t done;        /* bytes of frames it completed */
    uint64_t cur;         /* header + payload length of the frame in progress */
    uint16_t close_code;  /* close status sent (after WS_FEED_CLOSED) */
    uint64_t msg_done;    /* bytes fed up to the end of the last complete message */
    uint64_t charged;     /* what this parser counts against the partial budget */
    uint8_t frag;         /* inside a fragmented data message */
    uint8_t stopped;      /* owner called ws_parser_stop() */
    uint8_t bad_close;    /* peer's close payload broke RFC 6455 5.5.1 */
    uint8_t deflate;      /* permessage-deflate negotiated: RSV1 messages are
                             inflated (set by the owner at the upgrade) */
} ws_parser;

typedef struct ws_parser_cb {
    /* A complete text or binary message (opcode WS_OP_TEXT/BINARY). */
    void (*on_message)(void *ud, ws_parser *p, unsigned opcode,
                       const uint8_t *msg, size_t len);
    /* A ping, pong or close arrived (wslay already queued the pong or the
     * close reply; close_code is the received status or 1005). */
    void (*on_control)(void *ud, ws_parser *p, unsigned opcode,
                       uint16_t close_code);
    /* One complete frame wslay sends (pong, close reply).  Must take all
     * of it; return 0, or -1 to fail the parse. */
    int (*send)(void *ud, const uint8_t *data, size_t len);
} ws_parser_cb;

#define WS_FEED_OK       0
#define WS_FEED_CLOSED   1   /* a close frame went out (reply to the peer's
                                close, or 1002/1007/1009 for a violation) */
#define WS_FEED_STOPPED  2   /* owner called ws_parser_stop() */
#define WS_FEED_ERROR  (-1)  /* broken framing, or a close frame with a 1-byte
                                payload: caller closes with 1002 (also: a
                                parser without a set, or fed from inside
                                its own feed) */
#define WS_FEED_NOMEM  (-2)
#define WS_FEED_BUDGET (-3)  /* this feed grew half-received data while the
                                process is over its partial budget: caller
                                closes with 1013 (try again later) */

/*
 * Half-received data (a frame or fragmented message not yet complete) is the
 * one input a client can make the shard hold.  wslay buffers only what has
 * arrived (never the declared length) but needs a context of
 * WS_PARSER_CTX_COST bytes while a message is open, so each parser with an
 * open message is charged that plus the bytes fed since its last complete
 * message.  The total of a parser set is kept under the set's budget: a
 * feed that makes its parser's charge grow while the set's total is over
 * the budget fails with WS_FEED_BUDGET, and its memory is released at once.
 * Complete messages that arrive whole in one read charge nothing, so
 * well-behaved clients keep flowing while slow-loris senders are refused.
 */
#define WS_PARSER_CTX_COST 8790u   /* wslay 1.1.1 context, measured (mallinfo2) */

/* Zero p and make it count in set (borrowed, must outlive p's contexts). */
void ws_parser_init(ws_parser *p, ws_parser_set *set);

/*
 * Feed bytes read from the peer.  Messages longer than max_msg bytes make
 * wslay close with 1009; so does a compressed message (p->deflate) whose
 * inflated size exceeds max_msg, and one that does not inflate closes with
 * 1007.  Callbacks run synchronously inside this call, with p->feed
 * pointing to the call's state; the parser must not be fed recursively
 * (other parsers may be).  After any result other than WS_FEED_OK, further
 * feeds return WS_FEED_STOPPED without parsing.
 */
int ws_parser_feed(ws_parser *p, const ws_parser_cb *cb, void *ud,
                   const uint8_t *data, size_t len, uint64_t max_msg);

/* From a callback: stop parsing; wslay's queued output is discarded (the
 * owner sends its own close frame). */
void ws_parser_stop(ws_parser *p);

/* Free the wslay context if any and give back the parser's charge to its
 * set (call when the connection goes away; not from inside its feed). */
void ws_parser_free(ws_parser *p);

#endif
