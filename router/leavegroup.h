/*
 * leavegroup: evicting a router's previous incarnation from the consumer group
 * with LeaveGroup, for
 * brokers without KIP-345 static membership (the devbroker: librdkafka
 * 2.0.2's mock cluster ignores group.instance.id).  There a router that was
 * killed stays a member, with its partitions, until its session times out;
 * the restarted one joins as a new member and the group's rebalance waits
 * for the dead one (docs/reliability.md "Router restarts").
 *
 * With ROUTER_ID and KAFKA_EVICT_PREVIOUS set (and only then: the record
 * serves nothing else) the router records its current Kafka member id in
 * Redis, key <REDIS_PREFIX>router:<ROUTER_ID> (schema_router_key,
 * common/schema.h), a string
 * with a TTL of 3 x session.timeout.ms, written whenever partitions are
 * assigned and refreshed every session.timeout.ms while it is a member.
 * A starting router reads that key and, if it names another member, sends
 * the group coordinator a LeaveGroup for it: to each KAFKA_BROKERS address
 * in turn ApiVersions v0, then FindCoordinator, then to the coordinator
 * ApiVersions v0 and LeaveGroup, each request in the highest version both
 * the broker and router/kwire.h support (a broker with none: logged as an
 * error, eviction skipped).  Plaintext only: config.c refuses the setting
 * with another security.protocol.  The coordinator then rebalances without
 * waiting for the dead member.
 *
 * Everything runs on the event loop (net.c connects and resolves off the
 * loop) and is bounded by LEAVEGROUP_TIMEOUT_MS; the outcome is logged at info
 * and never stops the router.
 *
 * Borrows the loop, the resolver, the Redis command link and the consumer;
 * all must outlive it.
 */
#ifndef ODIN_ROUTER_LEAVEGROUP_H
#define ODIN_ROUTER_LEAVEGROUP_H

#include <event2/event.h>

#include "common/redislink.h"
#include "router/config.h"
#include "router/consumer.h"

struct evdns_base;

/* Bound of the whole eviction: reading the key (waiting for Redis) and the
 * FindCoordinator + LeaveGroup exchange. */
#define LEAVEGROUP_TIMEOUT_MS  3000

typedef struct leavegroup leavegroup;

/* NULL without KAFKA_EVICT_PREVIOUS or ROUTER_ID (nothing to do, nothing
 * recorded) or on ENOMEM (logged).  Starts at once: the key is read as
 * soon as the Redis link is ready. */
leavegroup *leavegroup_new(struct event_base *base, struct evdns_base *dns, redislink *cmd,
                 consumer *c, const router_config *cfg);

/* Partitions were assigned: record the (possibly new) member id now. */
void leavegroup_member_changed(leavegroup *e);

/* Cancels what is in flight and frees.  NULL is a no-op. */
void leavegroup_free(leavegroup *e);

#endif
