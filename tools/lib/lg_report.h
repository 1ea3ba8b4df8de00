/*
 * odin-loadgen counters and the worker -> parent report frames.
 *
 * A worker keeps one lg_counters (cumulative) and one lg_hist.  Every
 * second, and once more at the end, it sends a report frame on its pipe:
 *   u32 payload length (host order; both ends are the same binary) |
 *   u8 kind | lg_counters | hist delta
 * where the hist delta carries only the buckets that changed since the
 * previous report, so the parent can merge every worker's histogram
 * incrementally (and show a live p99) without 20 KB per second per worker.
 */
#ifndef ODIN_COMMON_LG_REPORT_H
#define ODIN_COMMON_LG_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "tools/lib/lg_hist.h"

/* Connection failure kinds (each connection that never got to "open"
 * counts exactly once). */
enum lg_cerr {
    LG_CERR_REFUSED,       /* ECONNREFUSED */
    LG_CERR_HTTP503,       /* upgrade answered 503 (shard full) */
    LG_CERR_HTTP429,       /* upgrade answered 429 (rate limit) */
    LG_CERR_TIMEOUT,       /* connect + upgrade not done in time */
    LG_CERR_HTTP_OTHER,    /* any other non-101 status */
    LG_CERR_HANDSHAKE,     /* 101 with a bad accept / headers, garbage reply */
    LG_CERR_ADDRNOTAVAIL,  /* EADDRNOTAVAIL: out of ephemeral ports */
    LG_CERR_RESET,         /* reset (RST) during connect or upgrade */
    LG_CERR_EOF,           /* orderly close (FIN) before the upgrade answer */
    LG_CERR_OTHER,
    LG_CERR_N
};
const char *lg_cerr_name(int kind);

#define LG_CLOSE_SLOTS 16

typedef struct lg_counters {
    uint64_t target;            /* connections this worker should open */
    uint64_t attempted;         /* connect() calls */
    uint64_t connected;         /* upgrade completed (101 + valid accept) */
    uint64_t open_now;          /* currently open WebSockets */
    uint64_t subscribed;        /* got a subscription_ack */
    uint64_t ack_partial;       /* ack listed fewer channels than requested */
    uint64_t ack_timeouts;      /* open but no ack within the timeout */
    uint64_t connect_err[LG_CERR_N];
    uint64_t messages;          /* live deliveries (channel + seq) */
    uint64_t bytes;             /* payload bytes of all text messages */
    uint64_t acks, unsub_acks, pongs, errors_rx, other_msgs;
    uint64_t parse_errors;      /* text message the scanner rejected */
    uint64_t unknown_channel;   /* live message for a channel not subscribed */
    uint64_t duplicates;        /* seq <= last seq of (connection, channel) */
    uint64_t seq_backwards;     /* subset of duplicates: seq < last */
    uint64_t gaps;              /* token_seq jumped by more than 1 */
    uint64_t gaps_missing;      /* sum of (jump - 1) over those gaps */
    uint64_t token_seq_msgs;    /* live messages carrying data.token_seq */
    uint64_t no_publish_us;     /* live messages without data.publish_us */
    uint64_t negative_latency;  /* publish_us in the future (clock skew) */
    uint64_t heartbeats_sent;
    uint64_t disconnects_unexpected;
    uint64_t rx_bytes;          /* WebSocket bytes received after the upgrade */
    uint64_t deflate_conns;     /* upgrades that negotiated permessage-deflate */
    uint64_t inflated_msgs;     /* compressed messages inflated */
    uint64_t inflated_bytes;    /* their size after inflating */
    uint16_t close_code[LG_CLOSE_SLOTS];   /* by code received; 1006 = no close frame */
    uint64_t close_count[LG_CLOSE_SLOTS];
    uint64_t close_other;       /* codes beyond the slots */
    uint64_t ramp_done;         /* workers whose every connection is resolved */
    uint64_t ramp_us;           /* when this worker's ramp ended (us since start) */
    uint64_t last_connect_us;   /* when its last upgrade completed */
    uint64_t stopping;          /* 1 once the worker is shutting down */
} lg_counters;

/* Count one unexpected close with this code (1006 = no close frame). */
void lg_counters_close(lg_counters *c, uint16_t code);

/* dst += src (sums; max for the *_us times; close codes merged by code). */
void lg_counters_add(lg_counters *dst, const lg_counters *src);

enum lg_report_kind { LG_REPORT_PROGRESS = 1, LG_REPORT_FINAL = 2 };

/*
 * Append one report frame to out.  The histogram delta is cur - *sent;
 * *sent is updated to cur.  Returns 0 or -1 (ENOMEM).
 */
int lg_report_encode(buf *out, int kind, const lg_counters *c, const lg_hist *cur,
                     lg_hist *sent);

/*
 * Decode one frame from p[0..n).  Returns the bytes consumed (> 0), 0 if
 * the frame is incomplete, -1 if malformed.  On success *kind and *c (the
 * worker's cumulative counters) are set and the histogram delta is added
 * into acc.
 */
long lg_report_decode(const char *p, size_t n, int *kind, lg_counters *c, lg_hist *acc);

#endif
