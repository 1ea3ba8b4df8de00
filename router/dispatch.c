#include "router/dispatch.h"

#include <string.h>
#include <strings.h>

#include "common/record.h"
#include "router/metrics.h"

int dispatch_json_valid(const void *p, size_t n)
{
    return record_json_jansson(p, n);
}

int dispatch_json_mode_parse(const char *s)
{
    if (!s)
        return -1;
    if (!strcasecmp(s, "fast") || !strcasecmp(s, "true") || !strcasecmp(s, "on") ||
        !strcmp(s, "1") || !strcasecmp(s, "yes"))
        return DISPATCH_JSON_FAST;
    if (!strcasecmp(s, "jansson"))
        return DISPATCH_JSON_JANSSON;
    if (!strcasecmp(s, "off") || !strcasecmp(s, "false") || !strcmp(s, "0") ||
        !strcasecmp(s, "no"))
        return DISPATCH_JSON_OFF;
    return -1;
}

_Static_assert((int)DISPATCH_JSON_OFF == (int)RECORD_JSON_OFF &&
               (int)DISPATCH_JSON_FAST == (int)RECORD_JSON_FAST &&
               (int)DISPATCH_JSON_JANSSON == (int)RECORD_JSON_JANSSON,
               "enum dispatch_json mirrors enum record_json");

int dispatch_classify(const dispatch_rules *rules, const router_topic *topic,
                      const void *key, size_t klen, const void *val, size_t vlen,
                      int *all, enum router_invalid *why)
{
    *all = 0;
    *why = ROUTER_INV_COUNT;
    if (!topic) {
        *why = ROUTER_INV_UNKNOWN_TOPIC;
        return -1;
    }
    /* the same check a shard's reconnect replay applies (common/record.h) */
    record_rules rr = { rules->bcast_key, rules->bcast_key_len, rules->max_record,
                        rules->validate_json };
    int bkey;
    enum record_invalid rw;
    if (record_check(&rr, key, klen, val, vlen, &bkey, &rw) != 0) {
        static const enum router_invalid map[RECORD_INVALID_N] = {
            [RECORD_EMPTY_KEY] = ROUTER_INV_EMPTY_KEY,
            [RECORD_OVERSIZED] = ROUTER_INV_OVERSIZED,
            [RECORD_BAD_KEY] = ROUTER_INV_BAD_KEY,
            [RECORD_INVALID_JSON] = ROUTER_INV_INVALID_JSON,
        };
        *why = map[rw];
        return -1;
    }
    *all = bkey || topic->broadcast;
    return 0;
}
