/*
 * Kafka topic <-> channel category <-> client message type (odin-ws
 * compatible).  The router maps a record's topic to its category and sends
 * the category in the frame; the shard builds the client envelope
 *   {"seq":..,"ts":..,"type":<type>,"priority":<p>,"channel":"BTC.trade","data":..}
 * from the category.
 */
#ifndef ODIN_COMMON_TOPICS_H
#define ODIN_COMMON_TOPICS_H

#include <stddef.h>

typedef struct topic_info {
    const char *topic;      /* "odin.trades"  */
    const char *category;   /* "trade"        */
    const char *msg_type;   /* "price:update" */
    int priority;           /* 1 = highest    */
} topic_info;

/* The eight default topics, in the order of docs/contract.md, "Kafka input". */
extern const topic_info topics_default[];
extern const size_t topics_default_count;

/* Comma-separated default KAFKA_TOPICS value. */
#define TOPICS_DEFAULT_LIST "odin.trades,odin.liquidity,odin.metadata,odin.social," \
    "odin.community,odin.creation,odin.analytics,odin.balances"

const topic_info *topics_by_topic(const char *topic, size_t len);       /* or NULL */
const topic_info *topics_by_category(const char *cat, size_t len);      /* or NULL */

/* Envelope type and priority for a category; unknown categories get
 * "<category>:update" semantics via *type_out = NULL (caller formats) and
 * priority 3. */
const char *topics_msg_type(const char *cat, size_t len, int *priority);

/* Token names on the client side: 1-64 of [A-Za-z0-9_-].  1 if valid. */
int topics_token_valid(const char *tok, size_t len);

/* Channel "<token>.<category>": splits at the last '.'; validates the token
 * and that the category is non-empty [a-z_]{1,32}.  Returns 1 if valid. */
int topics_channel_split(const char *ch, size_t len, size_t *token_len,
                         const char **cat, size_t *cat_len);

#endif
