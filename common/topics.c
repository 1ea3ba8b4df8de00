#include "common/topics.h"

#include <string.h>

const topic_info topics_default[] = {
    { "odin.trades", "trade", "price:update", 1 },
    { "odin.liquidity", "liquidity", "liquidity:update", 2 },
    { "odin.metadata", "metadata", "metadata:update", 3 },
    { "odin.social", "social", "social:update", 3 },
    { "odin.community", "community", "community:update", 3 },
    { "odin.creation", "creation", "token:created", 2 },
    { "odin.analytics", "analytics", "analytics:update", 3 },
    { "odin.balances", "balances", "balance:update", 2 },
};
const size_t topics_default_count = sizeof topics_default / sizeof topics_default[0];

static int eq(const char *a, const char *b, size_t blen)
{
    return strlen(a) == blen && memcmp(a, b, blen) == 0;
}

const topic_info *topics_by_topic(const char *topic, size_t len)
{
    for (size_t i = 0; i < topics_default_count; i++)
        if (eq(topics_default[i].topic, topic, len))
            return &topics_default[i];
    return NULL;
}

const topic_info *topics_by_category(const char *cat, size_t len)
{
    for (size_t i = 0; i < topics_default_count; i++)
        if (eq(topics_default[i].category, cat, len))
            return &topics_default[i];
    return NULL;
}

const char *topics_msg_type(const char *cat, size_t len, int *priority)
{
    const topic_info *t = topics_by_category(cat, len);
    if (priority)
        *priority = t ? t->priority : 3;
    return t ? t->msg_type : NULL;
}

int topics_token_valid(const char *tok, size_t len)
{
    if (len == 0 || len > 64)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = tok[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int topics_channel_split(const char *ch, size_t len, size_t *token_len,
                         const char **cat, size_t *cat_len)
{
    const char *dot = NULL;
    for (size_t i = len; i > 0; i--) {
        if (ch[i - 1] == '.') {
            dot = ch + i - 1;
            break;
        }
    }
    if (!dot)
        return 0;
    size_t tl = (size_t)(dot - ch);
    size_t cl = len - tl - 1;
    if (!topics_token_valid(ch, tl) || cl == 0 || cl > 32)
        return 0;
    for (size_t i = 0; i < cl; i++) {
        char c = dot[1 + i];
        if (!((c >= 'a' && c <= 'z') || c == '_'))
            return 0;
    }
    if (token_len) *token_len = tl;
    if (cat) *cat = dot + 1;
    if (cat_len) *cat_len = cl;
    return 1;
}
