#include "common/record.h"

#include <string.h>

#include <jansson.h>

#include "common/jsonval.h"
#include "common/topics.h"

int record_json_jansson(const void *p, size_t n)
{
    if (!p || n == 0)
        return 0;
    json_error_t err;
    json_t *j = json_loadb(p, n, JSON_DECODE_ANY, &err);
    if (!j)
        return 0;
    json_decref(j);
    return 1;
}

static int invalid(enum record_invalid *why, enum record_invalid reason)
{
    *why = reason;
    return -1;
}

int record_check(const record_rules *rules, const void *key, size_t klen,
                 const void *val, size_t vlen, int *bkey,
                 enum record_invalid *why)
{
    *bkey = 0;
    *why = RECORD_INVALID_N;
    if (!key || klen == 0)
        return invalid(why, RECORD_EMPTY_KEY);
    if (vlen > rules->max_value)
        return invalid(why, RECORD_OVERSIZED);
    int b = rules->bcast_key && klen == rules->bcast_key_len &&
            memcmp(key, rules->bcast_key, klen) == 0;
    if (!b && !topics_token_valid(key, klen))
        return invalid(why, RECORD_BAD_KEY);
    if (rules->json == RECORD_JSON_FAST && !jsonval_valid(val, vlen))
        return invalid(why, RECORD_INVALID_JSON);
    if (rules->json == RECORD_JSON_JANSSON && !record_json_jansson(val, vlen))
        return invalid(why, RECORD_INVALID_JSON);
    *bkey = b;
    return 0;
}

const char *record_invalid_name(enum record_invalid why)
{
    switch (why) {
    case RECORD_EMPTY_KEY: return "empty_key";
    case RECORD_OVERSIZED: return "oversized";
    case RECORD_BAD_KEY: return "bad_key";
    case RECORD_INVALID_JSON: return "invalid_json";
    case RECORD_INVALID_N: break;
    }
    return "unknown";
}
