/*
 * Client envelope for one record, built once per shard:
 *   {"seq":<offset>,"ts":<kafka ts ms>,"type":"price:update","priority":1,
 *    "channel":"BTC.trade","data":<value verbatim>}
 * The result is a complete WebSocket text frame in a ws_chunk that every
 * subscriber's queue references.
 */
#ifndef ODIN_SHARD_ENVELOPE_H
#define ODIN_SHARD_ENVELOPE_H

#include "common/buf.h"
#include "proto/frame.h"
#include "shard/ws.h"

/* Append the JSON envelope of r to out (no frame header).  An empty value
 * becomes null; the value is otherwise copied byte for byte.  0 or -1. */
int envelope_json(buf *out, const frame_record *r);

/* Build the complete text frame for r.  `scratch` is a reusable buffer
 * (reset here).  Returns a chunk with refs = 1 (caller unrefs), or NULL on
 * ENOMEM. */
ws_chunk *envelope_frame(buf *scratch, const frame_record *r);

#endif
