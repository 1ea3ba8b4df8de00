/*
 * Router ingress: where routers connect to a shard (several at once).
 *
 * Listeners: always a Unix-domain stream socket (SHARD_SOCKET; default
 * <SHARD_SOCKET_DIR>/odin-shard-<id>.sock), and with SHARD_TCP_ADDR also a
 * TCP listener (host:port) for routers on other hosts; TCP links get
 * TCP_NODELAY and SO_KEEPALIVE (NET_KEEPALIVE_*, common/net.h).  Both carry
 * the same frames (docs/protocol.md, "Router <-> shard frames") and hand
 * every accepted connection to the same path (ingress_admit, the module's
 * test seam in shard/ingress_private.h).  A non-loopback SHARD_TCP_ADDR
 * needs SHARD_INGRESS_SECRET (shard/settings.c refuses to start otherwise,
 * unless SHARD_INGRESS_INSECURE=true): without it a TCP link has no AUTH.
 *
 * Handshake: each connection runs the link handshake v2 of
 * proto/handshake.h (FRAME_PROTO_VERSION 2): HELLO both ways, the router's
 * naming this shard (target) and one of its endpoints, then, with
 * SHARD_INGRESS_SECRET, AUTH both ways (HMAC-SHA256 over both HELLOs; the
 * router proves first, the shard answers only a router that proved).  No
 * DELIVERY is accepted before the handshake is done.
 *
 * Pre-auth pool: until then a connection is "pending", in a pool of its own
 * (SHARD_INGRESS_MAX_PENDING, at most SHARD_INGRESS_IP_MAX_PENDING per
 * source address), with a decoder capped at FRAME_HANDSHAKE_MAX and
 * SHARD_INGRESS_AUTH_TIMEOUT_MS to finish; only authenticated routers count
 * against SHARD_MAX_ROUTERS.  Refusals are logged (rate-limited) and
 * counted by reason (shard_ingress_refused_total{reason},
 * shard_ingress_auth_failures_total); a malformed or oversized frame is
 * closed with a logged reason and counted in shard_frames_errors_total.
 *
 * After the handshake a link carries DELIVERY frames only (up to
 * SHARD_MAX_FRAME); a HELLO or AUTH then, or a bad frame, closes it
 * (shard_frames_errors_total).  A router that closes, even mid-frame, is
 * no error: the frames it completed were handed on, the partial one is
 * dropped.  DELIVERY records are handed to the owner through
 * ingress_callbacks (on_record, in the order of the link; shard.c passes
 * them to the fan-out, shard/fanout.h, where records for tokens without
 * local subscribers are dropped and counted).
 *
 * Tests: tests/unit/test_ingress.c (this module without a listener, over
 * socketpair() ends through the seam), tests/unit/test_handshake.c (the
 * state machine), tests/it/test_shard_proto.c, tests/it/test_e2e.c.
 */
#ifndef ODIN_SHARD_INGRESS_H
#define ODIN_SHARD_INGRESS_H

#include "proto/frame.h"
#include "shard/ctx.h"

typedef struct shard_ingress shard_ingress;

/* How ingress reaches its owner. */
typedef struct ingress_callbacks {
    /* One DELIVERY record of an authenticated router, in the order of the
     * link.  r and what it points to are valid during the call only. */
    void (*on_record)(void *ud, const frame_record *r);
    void *ud;
} ingress_callbacks;

/* Bind SHARD_SOCKET (a stale socket file is replaced; a live one is
 * refused) and, with SHARD_TCP_ADDR, the TCP listener, and listen.  cb is
 * copied.  NULL on failure (logged). */
shard_ingress *shard_ingress_new(shard_ctx *ctx, const ingress_callbacks *cb);

/* Close every router connection and the socket, unlink its path.  NULL is
 * a no-op. */
void shard_ingress_free(shard_ingress *in);

/* Stop reading from routers (shutdown), keep the structs. */
void shard_ingress_stop(shard_ingress *in);

/* Authenticated router connections / connections still in the handshake. */
int shard_ingress_routers(const shard_ingress *in);
int shard_ingress_pending(const shard_ingress *in);

#endif
