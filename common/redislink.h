/*
 * One hiredis async connection (libevent adapter) that reconnects itself
 * with exponential backoff and proves it is alive with PING.  Used by the
 * router (command and subscription links) and the shard registry.
 *
 * hiredis 0.14 has no connect or command timeouts, resolves host names
 * synchronously and frees its context after the disconnect callback, so:
 *   - a host name is resolved off the loop (common/net.h, evdns) and the
 *     numeric address is handed to redisAsyncConnect; unix: paths as is;
 *   - a connect timer drops attempts (resolve + connect) that take longer
 *     than timeout_ms;
 *   - every (re)connect creates a fresh redisAsyncContext;
 *   - states (sentinel + resolving + connecting are bounded by timeout_ms
 *     together, the handshake of connected by timeout_ms again):
 *       down        nothing in progress; a retry timer (the backoff) runs;
 *       sentinel    Sentinel mode (endpoint with REDIS_SENTINELS) only: one
 *                   short-lived connection to the next Sentinel of the list
 *                   (round robin across attempts) asks
 *                   SENTINEL get-master-addr-by-name REDIS_MASTER_NAME;
 *                   the answer is the host:port to connect to, so a
 *                   failover is followed at the next connect;
 *       resolving   a host name is being resolved (evdns), off the loop;
 *       connecting  redisAsyncConnect / redisAsyncConnectUnix under way;
 *       connected   TCP up, the handshake runs, one awaited step at a time:
 *                   AUTH [user] password if the endpoint has a password
 *                   (REDIS_URL userinfo or REDIS_PASSWORD; never logged),
 *                   ROLE in Sentinel mode (must answer "master"), SELECT
 *                   <db> if the endpoint has a db;
 *       ready       every step answered well: the context is handed out.
 *     Only a ready link hands out its context (redislink_ctx is NULL in
 *     every other state) and tells the user "up", so no command of a user
 *     can reach Redis before AUTH succeeded or go to a node not confirmed
 *     as master.  A refused step (AUTH error, a replica, SELECT error) drops
 *     the connection and retries with the backoff, which is reset only at
 *     ready, so a wrong password is retried ever more slowly;
 *   - in Sentinel mode a command link sends ROLE instead of PING as its
 *     keepalive: a master demoted by a failover no longer answers "master",
 *     the link is dropped within a ping interval and the Sentinels are asked again
 *     (docs/scaling.md, "Redis high availability with Sentinel");
 *   - while up, a PING goes out every ping interval; no reply within the
 *     ping timeout declares the link dead: it is dropped and reconnected, so
 *     a half-open TCP connection is noticed in seconds.  In SUBSCRIBE mode
 *     (Redis answers ["pong", x], which hiredis 0.14 would never hand to a
 *     command callback) the link PSUBSCRIBEs once to a private pattern,
 *     __odin_redislink_pong__, and sends PING with that name, so hiredis
 *     routes the pong to the link; the extra pattern matches no real
 *     channel and adds 1 to the subscription counts Redis reports;
 *   - user notifications (up/down) are delivered from a zero-delay event,
 *     never from inside hiredis' connect/disconnect callbacks, so the user
 *     may issue commands or drop the connection from them.
 * Pending command callbacks get a NULL reply when the connection goes away
 * (hiredis behaviour); they must only record the failure.
 *
 * ac->data of the contexts belongs to the link; reply callbacks get their
 * state through privdata (or redislink_ctx_arg).
 */
#ifndef ODIN_COMMON_REDISLINK_H
#define ODIN_COMMON_REDISLINK_H

#include <event2/event.h>
#include <hiredis/async.h>

#include "common/addr.h"

struct evdns_base;

#define REDISLINK_PING_INTERVAL_MS 1000   /* default */
#define REDISLINK_PING_TIMEOUT_MS  3000   /* default: dead without a reply */
#define REDISLINK_BACKOFF_MIN_MS     50   /* default first retry delay */

typedef struct redislink redislink;

/* up = 1: ready (AUTH, ROLE, SELECT answered well: redislink_ctx gives the
 * context now); up = 0: connection lost / declared dead after having been
 * ready.  Called from the event loop. */
typedef void (*redislink_cb)(redislink *l, int up, void *arg);

/*
 * name is for logs.  timeout_ms bounds resolve + connect; backoff doubles
 * from REDISLINK_BACKOFF_MIN_MS up to backoff_max_ms.  PING defaults to
 * REDISLINK_PING_INTERVAL_MS / REDISLINK_PING_TIMEOUT_MS.  NULL on ENOMEM.
 * Nothing happens until redislink_start.
 */
redislink *redislink_new(struct event_base *base, const redis_endpoint *ep,
                         const char *name, long timeout_ms, long backoff_max_ms,
                         redislink_cb cb, void *arg);

/* Options (before redislink_start). */
/* Resolver for host names (not owned; must outlive the link).  Without one
 * the link creates its own (net_dns_new) the first time it needs it. */
void redislink_set_dns(redislink *l, struct evdns_base *dns);
/* PING every interval_ms, dead after timeout_ms without a reply; 0 / 0
 * turns PING off. */
void redislink_set_ping(redislink *l, long interval_ms, long timeout_ms);
/* First retry delay (default REDISLINK_BACKOFF_MIN_MS) and the maximum. */
void redislink_set_backoff(redislink *l, long min_ms, long max_ms);
/* Start connecting (no-op if already started). */
void redislink_start(redislink *l);

/* The live context once ready, or NULL while not connected or while the
 * handshake (AUTH / ROLE / SELECT) is not done. */
redisAsyncContext *redislink_ctx(redislink *l);

/* The arg given to redislink_new, from a context this link created. */
void *redislink_ctx_arg(const redisAsyncContext *ac);

/* 1 while the user has been told "up" (ready) and not yet "down". */
int redislink_is_up(const redislink *l);

/*
 * 1 if bytes from Redis wait unread in the connection's socket.  A reply
 * timeout checked by a timer is only Redis's fault when nothing waits: a
 * process whose loop was starved (thousands of client closes on a busy
 * machine) finds its timer due while the reply sits in the socket, unread
 * because the loop had not got to it yet (epoll hands out a bounded number
 * of ready sockets per turn).  The PING timeout and the shard's registry
 * reply timeout consult this before dropping.  0 for NULL or no connection.
 */
int redislink_input_pending(const redislink *l);

/* How much later a timeout that found input pending looks again. */
#define REDISLINK_LATE_RECHECK_MS 50

/* The last error (connect failure, ping timeout, drop reason); "" if none. */
const char *redislink_errstr(const redislink *l);

/* Drop the connection now (pending callbacks get NULL replies before this
 * returns) and reconnect after the backoff.  Safe from event callbacks, not
 * from inside a hiredis reply callback of this connection. */
void redislink_drop(redislink *l, const char *why);

/* Disconnect and free; pending callbacks get NULL replies.  NULL no-op. */
void redislink_free(redislink *l);

#endif
