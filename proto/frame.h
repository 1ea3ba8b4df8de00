/*
 * Router <-> shard wire format (spec: docs/protocol.md, "Router-shard frames").
 *
 * A frame is a 4-byte big-endian payload length followed by exactly that many
 * bytes holding one msgpack value, an array whose first element is the frame
 * type:
 *
 *   HELLO    [1, version:uint, role:str, id:str, max_frame:uint,
 *             nonce:bin16|nil, target:str, endpoint:str]
 *   DELIVERY [2, mode:uint, records:array]
 *   AUTH     [3, mac:bin32]
 *            record = [category:str, token:str|bin, partition:int, offset:int,
 *                      timestamp_ms:int, value:str|bin, flags:uint]
 *
 * Both sides send HELLO first; a peer whose version differs from
 * FRAME_PROTO_VERSION is closed with a logged reason.  The router's HELLO
 * names the shard it meant to reach (target) and the endpoint it dialed;
 * the shard's has neither (and no nonce without a secret).  What the
 * handshake checks and the AUTH MACs over the whole transcript are
 * proto/handshake.h.  Unknown trailing elements in HELLO / DELIVERY /
 * record arrays are ignored (forward compatible); missing or mistyped ones
 * are FRAME_E_MALFORMED.
 *
 * Decoding is streaming and zero-copy: frame_decoder_feed() takes byte chunks
 * split anywhere; frame_decoder_next() yields one frame at a time, whose
 * string pointers point into the decoder's buffer and stay valid until the
 * next frame_decoder_next()/feed() call.  No I/O happens here.
 */
#ifndef ODIN_PROTO_FRAME_H
#define ODIN_PROTO_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include "common/buf.h"

/* 2: the router's HELLO carries target + endpoint and AUTH MACs the whole
 * transcript (proto/handshake.h); version 1 peers are refused. */
#define FRAME_PROTO_VERSION 2u
#define FRAME_HEADER_LEN 4u
#define FRAME_DEFAULT_MAX (16u * 1024u * 1024u)   /* payload bytes */
#define FRAME_MIN_MAX 64u
/* Largest HELLO or AUTH payload: what a decoder accepts before the peer has
 * authenticated (ids <= 255, endpoint <= 512 bytes fit with room). */
#define FRAME_HANDSHAKE_MAX 2048u

/* Status codes (0 / negative), shared by encoder and decoder. */
#define FRAME_OK 0
#define FRAME_E_NOMEM     (-1)  /* allocation failed */
#define FRAME_E_TOOBIG    (-2)  /* declared length > decoder max */
#define FRAME_E_MALFORMED (-3)  /* not msgpack, wrong shape or types, trailing bytes */
#define FRAME_E_TYPE      (-4)  /* well-formed but unknown frame type */
#define FRAME_E_EMPTY     (-5)  /* zero-length frame */
#define FRAME_E_LIMIT     (-6)  /* over a structural cap (records, elements, nesting) */

/* Structural caps, checked on the raw bytes BEFORE msgpack-c allocates
 * anything (like hiredis's maxelements): the frame array and each record
 * hold at most FRAME_MAX_FIELDS elements, a DELIVERY at most
 * FRAME_MAX_RECORDS records, and nothing nests deeper than a record's
 * fields.  So decoding a frame of n bytes allocates O(records) objects,
 * never O(declared counts) and never more than about
 * FRAME_MAX_RECORDS * FRAME_MAX_FIELDS msgpack objects (~25 MB). */
#define FRAME_MAX_RECORDS 65536u
#define FRAME_MAX_FIELDS  16u

enum frame_type { FRAME_HELLO = 1, FRAME_DELIVERY = 2, FRAME_AUTH = 3 };

#define FRAME_NONCE_LEN 16u
#define FRAME_MAC_LEN 32u

/* Delivery mode, carried so shards can count what the router decided. */
enum frame_mode { FRAME_MODE_TARGETED = 0, FRAME_MODE_BROADCAST = 1 };

/* Record flags. */
#define FRAME_REC_ALL_CLIENTS 0x1u  /* broadcast key/topic: every local client */

typedef struct frame_hello {
    uint32_t version;
    const char *role;  size_t role_len;   /* "router" | "shard" */
    const char *id;    size_t id_len;     /* router or shard id */
    uint32_t max_frame;                   /* largest payload the sender accepts */
    const uint8_t *nonce;                 /* FRAME_NONCE_LEN bytes, or NULL */
    const char *target; size_t target_len;     /* router: shard id it meant to
                                                  reach; NULL if absent */
    const char *endpoint; size_t endpoint_len; /* router: endpoint it dialed;
                                                  NULL if absent */
} frame_hello;

typedef struct frame_record {
    const char *category; size_t category_len;  /* "trade", ... (router maps topic) */
    const char *token;  size_t token_len;
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms;
    const char *value;  size_t value_len;
    uint32_t flags;
} frame_record;

typedef struct frame_msg {
    enum frame_type type;
    frame_hello hello;           /* type == FRAME_HELLO */
    const uint8_t *mac;          /* type == FRAME_AUTH: FRAME_MAC_LEN bytes */
    uint32_t mode;               /* type == FRAME_DELIVERY */
    size_t nrecords;
    const frame_record *records; /* owned by the decoder */
    const uint8_t *raw;          /* the frame's payload bytes as received (no */
    size_t raw_len;              /* length header): the handshake MACs them */
} frame_msg;

/* ---- decoding ----------------------------------------------------------- */

typedef struct frame_decoder frame_decoder;

/* max_payload: frames longer than this are FRAME_E_TOOBIG (clamped to at
 * least FRAME_MIN_MAX).  Returns NULL on ENOMEM.  Free with _free. */
frame_decoder *frame_decoder_new(uint32_t max_payload);
void frame_decoder_free(frame_decoder *d);   /* NULL is a no-op */

/* Append bytes.  Returns FRAME_OK or FRAME_E_NOMEM.  Never buffers more than
 * one maximal frame plus the chunk being fed. */
int frame_decoder_feed(frame_decoder *d, const void *p, size_t n);

/*
 * Take the next complete frame.  Returns 1 with *out filled, 0 if more bytes
 * are needed, or a negative FRAME_E_* code.  After an error the decoder is
 * poisoned (every later call returns the same error): close the connection.
 */
int frame_decoder_next(frame_decoder *d, frame_msg *out);

/* Change the largest payload accepted from the next frame on (clamped to
 * at least FRAME_MIN_MAX): a link decodes with FRAME_HANDSHAKE_MAX until
 * the peer authenticated, then with the negotiated maximum. */
void frame_decoder_set_max(frame_decoder *d, uint32_t max_payload);

/* Bytes buffered but not yet returned as frames. */
size_t frame_decoder_pending(const frame_decoder *d);

/* Decode one complete payload (no length prefix) into *out, using `d`'s
 * scratch space.  For tests and fuzzing; returns FRAME_OK (0) with *out
 * filled, or a negative FRAME_E_* code. */
int frame_decode_payload(frame_decoder *d, const void *p, size_t n,
                         frame_msg *out);

/* ---- encoding ----------------------------------------------------------- */

/* Append a complete HELLO frame (header included) of FRAME_PROTO_VERSION
 * with role, id and max_frame only (no nonce, target or endpoint). */
int frame_encode_hello(buf *out, const char *role, const char *id,
                       uint32_t max_frame);

/* Append a HELLO frame from h: version, role, id, max_frame, nonce (NULL:
 * nil), target and endpoint (NULL: left out).  Elements are written up to
 * the last one present: 5 without nonce/target/endpoint, 6 with a nonce
 * only, else 8 (nonce nil if absent).  FRAME_OK or FRAME_E_NOMEM. */
int frame_encode_hello_msg(buf *out, const frame_hello *h);

/* Append an AUTH frame carrying `mac` (FRAME_MAC_LEN bytes). */
int frame_encode_auth(buf *out, const uint8_t mac[FRAME_MAC_LEN]);

/* Fill nonce with FRAME_NONCE_LEN random bytes (getrandom).  0 or -1. */
int frame_nonce(uint8_t nonce[FRAME_NONCE_LEN]);

/*
 * Delivery batch builder: appends one DELIVERY frame to `out`.
 *   frame_batch b; frame_batch_begin(&b, out, FRAME_MODE_TARGETED);
 *   frame_batch_add(&b, &rec); ...; frame_batch_end(&b);
 * The frame's length and record count are patched in _end().  A batch with
 * no records may be abandoned with frame_batch_abort() (truncates `out` back).
 * `out` must not be modified by anyone else between _begin and _end.
 */
typedef struct frame_batch {
    buf *out;
    size_t start;      /* offset of the length header in out */
    size_t count_at;   /* offset of the array32 count */
    uint32_t count;
} frame_batch;

int  frame_batch_begin(frame_batch *b, buf *out, enum frame_mode mode);
int  frame_batch_add(frame_batch *b, const frame_record *r);
/* Returns FRAME_OK, or FRAME_E_TOOBIG if the payload exceeds 4 GiB - 1. */
int  frame_batch_end(frame_batch *b);
void frame_batch_abort(frame_batch *b);
/* Payload bytes so far (to split batches before a peer's max_frame). */
size_t frame_batch_size(const frame_batch *b);

/* Human-readable name of a FRAME_E_* code ("malformed", ...). */
const char *frame_strerror(int code);

#endif
