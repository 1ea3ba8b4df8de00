/*
 * Is a Kafka record deliverable to WebSocket clients?  The one check both
 * the router (router/dispatch.c, before it sends a record to shards) and a
 * shard's reconnect replay (shard/resume.c, before it replays a record read
 * from Kafka itself) apply, so a replay never sends what live delivery would
 * not have sent.  Pure.
 *
 * Checks, in order: key non-empty (RECORD_EMPTY_KEY), value within
 * max_value bytes (RECORD_OVERSIZED), key is the broadcast key or a valid
 * token [A-Za-z0-9_-]{1,64} (RECORD_BAD_KEY: no client can subscribe to
 * it), value is one JSON value (RECORD_INVALID_JSON; valid UTF-8 included,
 * see common/jsonval.h), per `json`.
 */
#ifndef ODIN_COMMON_RECORD_H
#define ODIN_COMMON_RECORD_H

#include <stddef.h>

enum record_json {
    RECORD_JSON_OFF = 0,
    RECORD_JSON_FAST,        /* common/jsonval.c: jansson's verdicts, no allocation */
    RECORD_JSON_JANSSON      /* json_loadb + json_decref per record */
};

enum record_invalid {
    RECORD_EMPTY_KEY = 0,
    RECORD_OVERSIZED,
    RECORD_BAD_KEY,
    RECORD_INVALID_JSON,
    RECORD_INVALID_N
};

typedef struct record_rules {
    const char *bcast_key;   /* NULL: no broadcast key */
    size_t bcast_key_len;
    size_t max_value;        /* value bytes */
    int json;                /* enum record_json */
} record_rules;

/*
 * 0 if the record passes (then *bkey = 1 if its key is the broadcast key),
 * or -1 with *why set.  Both out-parameters are always written (*why is
 * RECORD_INVALID_N on success).
 */
int record_check(const record_rules *rules, const void *key, size_t klen,
                 const void *val, size_t vlen, int *bkey,
                 enum record_invalid *why);

/* "empty_key" | "oversized" | "bad_key" | "invalid_json" (metric labels). */
const char *record_invalid_name(enum record_invalid why);

/* 1 if p[0..n) is one JSON value by jansson's json_loadb(JSON_DECODE_ANY),
 * else 0. */
int record_json_jansson(const void *p, size_t n);

#endif
