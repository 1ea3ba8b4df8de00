#include "router/dispatch.h"

#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "common/topics.h"
#include "router/jsonval.h"
#include "router/metrics.h"

int dispatch_json_valid(const void *p, size_t n)
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

static int invalid(enum router_invalid *why, enum router_invalid reason)
{
    *why = reason;
    return -1;
}

int dispatch_classify(const dispatch_rules *rules, const router_topic *topic,
                      const void *key, size_t klen, const void *val, size_t vlen,
                      int *all, enum router_invalid *why)
{
    *all = 0;
    *why = ROUTER_INV_COUNT;
    if (!topic)
        return invalid(why, ROUTER_INV_UNKNOWN_TOPIC);
    if (!key || klen == 0)
        return invalid(why, ROUTER_INV_EMPTY_KEY);
    if (vlen > rules->max_record)
        return invalid(why, ROUTER_INV_OVERSIZED);
    int bkey = klen == rules->bcast_key_len && memcmp(key, rules->bcast_key, klen) == 0;
    if (!bkey && !topics_token_valid(key, klen))
        return invalid(why, ROUTER_INV_BAD_KEY);
    if (rules->validate_json == DISPATCH_JSON_FAST && !router_json_valid(val, vlen))
        return invalid(why, ROUTER_INV_INVALID_JSON);
    if (rules->validate_json == DISPATCH_JSON_JANSSON && !dispatch_json_valid(val, vlen))
        return invalid(why, ROUTER_INV_INVALID_JSON);
    *all = bkey || topic->broadcast;
    return 0;
}
