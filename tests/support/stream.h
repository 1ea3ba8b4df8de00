/*
 * Numbered streams for end-to-end reliability tests (tests/it/
 * test_reliability.c, test_multi_router.c): real WebSocket clients on real
 * shards, records produced through the real broker and router.
 *
 * A stream produces, per token, records with value
 * {"type":"TRADE_EXECUTED","data":{"n":k}}, k = 0, 1, 2, ... at a steady
 * rate (token i on partition i % 4 of its own topic).  Every client counts,
 * per token, what it received, the numbers it never got (gaps) and the ones
 * it got twice (duplicates), and the longest silence while records were
 * being produced.  The only pacing is the producer's rate: every wait reads
 * the clients' sockets.
 *
 *   stream s;  stream_init(&s, brokers, "tag", 2, 40);
 *   stream_client_new(&s, "a:TA", shard.port, (int[]){ 0, -1 });
 *   stream_start(&s);  stream_for(&s, 1000);  ...inject a fault...
 *   long gaps = stream_finish(&s, "test", recovery_ms);   (prints figures)
 *   stream_free(&s);
 */
#ifndef ODIN_TESTS_STREAM_H
#define ODIN_TESTS_STREAM_H

#include <stdint.h>

#include "tests/support/rtsup.h"
#include "tests/support/shardsup.h"
#include "tests/support/wsclient.h"

#define STREAM_MAXTOK 8         /* tokens per stream */
#define STREAM_MAXCL 16         /* clients per stream */
#define STREAM_MAXN 8192        /* records per token */

typedef struct stream_client {
    wsc *ws;
    char name[32];
    int want[STREAM_MAXTOK];            /* subscribed to token i */
    uint8_t *seen[STREAM_MAXTOK];       /* seen[i][n]: times record n arrived */
    long recv[STREAM_MAXTOK], dups[STREAM_MAXTOK];
    uint64_t last_rx_ms, max_stall_ms;
    int gone;                           /* connection ended (shard killed) */
} stream_client;

typedef struct stream {
    rtsup_producer *p;
    char topic[128];
    int ntok;
    int rate;                           /* records per second per token */
    char tok[STREAM_MAXTOK][32];
    int part[STREAM_MAXTOK];
    int next[STREAM_MAXTOK];            /* next number to produce */
    int base[STREAM_MAXTOK];            /* next[] when producing (re)started */
    int producing;
    uint64_t t0;
    stream_client *cl[STREAM_MAXCL];
    int ncl;
} stream;

/* Totals over the live clients (gone ones left out). */
typedef struct stream_totals {
    long sent;                          /* records due, summed over clients */
    long received;                      /* arrivals, duplicates included */
    long gaps, dups;
} stream_totals;

/*
 * A producer on brokers, a fresh topic "<tag>-..." (auto-created by a
 * WARMUP record on partition 0, 4 partitions), ntok (<= STREAM_MAXTOK)
 * tokens "TA<pid>", "TB<pid>", ... produced at `rate` records per second
 * each.  0, or -1 (nothing to free).
 */
int stream_init(stream *s, const char *brokers, const char *tag, int ntok, int rate);

/*
 * Connect a WebSocket client to 127.0.0.1:port and subscribe it to
 * "<tok>.trade" for the token indexes in toks (ended by -1); waits for the
 * subscription_ack.  The stream owns the client.  NULL on failure.
 */
stream_client *stream_client_new(stream *s, const char *name, int port, const int toks[]);

/* Start (or restart) producing; numbering goes on from where it stopped. */
void stream_start(stream *s);

/* Produce what is due; read every client (waiting up to wait_ms). */
void stream_tick(stream *s, int wait_ms);

/* Stream for ms milliseconds. */
void stream_for(stream *s, int ms);

/* Stream until pred(arg) is non-zero (1) or timeout_ms (0). */
int stream_until(stream *s, int (*pred)(void *), void *arg, int timeout_ms);

/* Distinct numbers below upto that client c received of token t. */
long stream_distinct(const stream_client *c, int t, int upto);

/*
 * Stop producing, flush, read until every live client has every number of
 * its tokens (or 30 s), and print one "figures:" line per client.  Returns
 * the total gaps of the live clients, or -1 if the producer failed to
 * deliver a record.
 */
long stream_finish(stream *s, const char *test, long recovery_ms);

/* Sums over the live clients as stream_finish printed them. */
void stream_totals_get(const stream *s, stream_totals *out);

/* Close every client, free the producer.  NULL-safe for an unset stream. */
void stream_free(stream *s);

/* ---- the processes a stream goes through --------------------------------- */

/* odin-shard tagged `tag` on the Redis at url, SHARD_LEASE_TTL=2.  0 or -1. */
int stream_shard_start(ssup_shard *sh, const char *tag, const char *url);

/*
 * odin-router consuming the stream's topic (category trade) in `group` from
 * earliest, with short Redis/shard reconnect backoffs, ROUTER_SETTLE_MS=4000,
 * plus `more` "K=V" settings (NULL-ended, may be NULL; they override).
 * 0 or -1.
 */
int stream_router_start(rtsup_router *r, const stream *s, const char *url, const char *group,
                        const char *const more[]);

/* Wait until odin:route:<tok> in the Redis at url holds shard_id: 1 or 0. */
int stream_wait_route(const char *url, const char *tok, const char *shard_id, int timeout_ms);

#endif
