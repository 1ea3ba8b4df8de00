/*
 * Kafka topic -> channel category map for the router (KAFKA_TOPICS and
 * BROADCAST_TOPICS).  Pure parsing, unit-tested in tests/unit/test_router_topicmap.c.
 *
 * KAFKA_TOPICS is a comma-separated list; each entry is
 *   "odin.trades"          a default topic (common/topics.h), its category
 *   "custom.x=category"    any topic, with its channel category [a-z_]{1,32}
 *   "^regex"               a librdkafka regex subscription; records from
 *                          matching topics are mapped by name (explicit
 *                          entries, then the default table), others are
 *                          "unknown topic" records.
 * BROADCAST_TOPICS has the same syntax (no regex); every record of those
 * topics goes to every shard with FRAME_REC_ALL_CLIENTS.  A broadcast topic
 * not listed in KAFKA_TOPICS is subscribed too.
 * Whitespace around entries is ignored; empty entries are skipped.
 */
#ifndef ODIN_ROUTER_TOPICMAP_H
#define ODIN_ROUTER_TOPICMAP_H

#include <stddef.h>

typedef struct router_topic {
    char *topic;
    char *category;
    int broadcast;       /* every record goes to all shards / all clients */
    int subscribed;      /* named in the subscription (not only implied) */
} router_topic;

typedef struct router_topics {
    router_topic *v;     /* explicit entries, then the default table */
    size_t n;
    char **subscribe;    /* names and ^regexes for rd_kafka_subscribe */
    size_t nsubscribe;
} router_topics;

/*
 * Parse the two settings into *t (zeroed by the call).  Returns 0, or -1
 * with a one-line reason in err (unknown topic without "=category", bad
 * category, duplicate topic with a different category, empty list).
 * Free with router_topics_free (also after an error).
 */
int router_topics_parse(router_topics *t, const char *topics, const char *broadcast,
                        char *err, size_t errlen);

/* Entry for a topic name, or NULL (unknown topic). */
const router_topic *router_topics_find(const router_topics *t, const char *name,
                                       size_t len);

void router_topics_free(router_topics *t);

#endif
