/*
 * Client envelope for one record, built once per shard:
 *   {"seq":<offset>,"p":<partition>,"ts":<kafka ts ms>,"type":"price:update",
 *    "priority":1,"channel":"BTC.trade","data":<value verbatim>}
 * (p, seq) is the channel's position, what a client sends back in a
 * reconnect.  `type`/`priority` are odin-ws's "price:update"/1 for every
 * category (ENVELOPE_TYPES=legacy, the default) or per category from
 * common/topics.h (ENVELOPE_TYPES=category).  Replayed records carry
 * "replay":true before "data".
 * The result is a complete WebSocket text frame in a ws_chunk that every
 * subscriber's queue references.
 */
#ifndef ODIN_SHARD_ENVELOPE_H
#define ODIN_SHARD_ENVELOPE_H

#include "common/buf.h"
#include "proto/frame.h"
#include "shard/ws.h"

enum envelope_types {
    ENVELOPE_LEGACY = 0,     /* odin-ws: "price:update", priority 1 always */
    ENVELOPE_CATEGORY = 1,   /* per category (common/topics.h) */
};

/* flags */
#define ENVELOPE_F_REPLAY  0x1u  /* add "replay":true */
#define ENVELOPE_F_ODINWS  0x2u  /* odin-ws replay: type "replay:message" */

/* Append the JSON envelope of r to out (no frame header).  An empty value
 * becomes null; the value is otherwise copied byte for byte.  0 or -1. */
int envelope_json(buf *out, const frame_record *r, enum envelope_types types,
                  unsigned flags);

/* Build the complete text frame for r.  `scratch` is a reusable buffer
 * (reset here).  Returns a chunk with refs = 1 (caller unrefs), or NULL on
 * ENOMEM. */
ws_chunk *envelope_frame(buf *scratch, const frame_record *r,
                         enum envelope_types types, unsigned flags);

/* "legacy" / "category" -> enum; -1 if neither. */
int envelope_types_parse(const char *s);

#endif
