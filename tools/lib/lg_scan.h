/*
 * odin-loadgen hot-path scan of a server text message.  One pass over the
 * bytes, no allocation, no full JSON parse: it tracks strings (with escapes),
 * nesting and object keys so that a key name inside a string value or at
 * the wrong level is never mistaken for the field.
 *
 * Extracted:
 *  - top level (depth 1): "type" (string), "channel" (string), "seq" and
 *    "ts" (integers);
 *  - anywhere inside the top-level "data" value: the first "publish_us" and
 *    the first "token_seq" key with an integer value (a JSON number; a
 *    fraction is truncated; a string of digits is accepted too).
 * Strings are returned as raw bytes between the quotes (escapes are not
 * decoded; `*_escaped` says whether there were any).  Pointers point into
 * the input.
 */
#ifndef ODIN_COMMON_LG_SCAN_H
#define ODIN_COMMON_LG_SCAN_H

#include <stddef.h>
#include <stdint.h>

typedef struct lg_msg {
    const char *type;      size_t type_len;
    const char *channel;   size_t channel_len;
    int channel_escaped;
    int has_type, has_channel, has_seq, has_ts, has_publish_us, has_token_seq;
    int64_t seq, ts, publish_us, token_seq;
} lg_msg;

#define LG_SCAN_MAX_DEPTH 64

/*
 * Scan one message.  Returns 0 when the input is a well-formed JSON object
 * as far as the scanner checks (balanced, strings closed, keys followed by
 * ':'), -1 otherwise (fields found before the error are still set).  Fields
 * not found have has_* = 0.
 */
int lg_scan(const char *p, size_t n, lg_msg *out);

/*
 * The same, but returns 0 as soon as every field above has been found
 * (type, channel, seq, ts, publish_us, token_seq): the rest of the message
 * (most of "data") is neither read nor checked.  The load generator's hot
 * path; a message missing one of them is scanned (and checked) to its end.
 */
int lg_scan_live(const char *p, size_t n, lg_msg *out);

/* Is this a live delivery (top-level channel and seq present)? */
static inline int lg_msg_is_live(const lg_msg *m) { return m->has_channel && m->has_seq; }

#endif
