/*
 * Record classification: is a consumed record deliverable, and how (to the
 * shards holding its token, or to everyone)?  Pure (tests/unit/test_router_config.c).
 *
 * Checks, in order: topic known (else unknown_topic), then common/record.h
 * (record_check, the same function a shard's reconnect replay applies): key non-empty
 * (empty_key), value within MAX_RECORD_BYTES (oversized), key is the
 * broadcast key or a valid token [A-Za-z0-9_-]{1,64} (bad_key: no client
 * can subscribe to it), value is JSON (invalid_json; any JSON value, as
 * jansson's json_loadb with JSON_DECODE_ANY accepts it; see validate_json).
 */
#ifndef ODIN_ROUTER_DISPATCH_H
#define ODIN_ROUTER_DISPATCH_H

#include <stddef.h>

#include "router/metrics.h"
#include "router/topicmap.h"

/* VALIDATE_JSON */
enum dispatch_json {
    DISPATCH_JSON_OFF = 0,
    DISPATCH_JSON_FAST,      /* common/jsonval.c, jansson's verdicts, no allocation */
    DISPATCH_JSON_JANSSON    /* json_loadb + json_decref per record */
};

typedef struct dispatch_rules {
    const char *bcast_key;
    size_t bcast_key_len;
    size_t max_record;       /* value bytes */
    int validate_json;       /* enum dispatch_json */
} dispatch_rules;

/*
 * Returns 0 if the record is valid (then *all = 1 if it goes to every shard
 * and client: broadcast topic or broadcast key), or -1 if it is not, with
 * *why set to the enum router_invalid reason.  topic NULL = not a known
 * topic.  Both out-parameters are always written.
 */
int dispatch_classify(const dispatch_rules *rules, const router_topic *topic,
                      const void *key, size_t klen, const void *val, size_t vlen,
                      int *all, enum router_invalid *why);

/* 1 if p[0..n) is one JSON value: jansson json_loadb(JSON_DECODE_ANY). */
int dispatch_json_valid(const void *p, size_t n);

/* "fast" | "jansson" | "off" (also true = fast, false = off) -> enum
 * dispatch_json, or -1. */
int dispatch_json_mode_parse(const char *s);

#endif
