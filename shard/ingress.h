/*
 * Router ingress: a Unix-domain stream socket (SHARD_SOCKET, and
 * SHARD_TCP_ADDR if set) that routers connect to (several at once).  Each
 * connection runs the link handshake (proto/handshake.h: HELLO both ways,
 * the router's naming this shard and one of its endpoints, then AUTH with
 * SHARD_INGRESS_SECRET) before any DELIVERY is accepted.  Until then it is
 * "pending": in a pool of its own (SHARD_INGRESS_MAX_PENDING, at most
 * SHARD_INGRESS_IP_MAX_PENDING per source address), with a decoder capped
 * at FRAME_HANDSHAKE_MAX and SHARD_INGRESS_AUTH_TIMEOUT_MS to finish; only
 * authenticated routers count against SHARD_MAX_ROUTERS.  Refusals are
 * logged (rate-limited) and counted by reason; a malformed or oversized
 * frame is closed with a logged reason and counted in
 * shard_frames_errors_total.  DELIVERY records are handed to the server's
 * fan-out; records for tokens without local subscribers are dropped there
 * and counted.
 */
#ifndef ODIN_SHARD_INGRESS_H
#define ODIN_SHARD_INGRESS_H

#include "shard/shard.h"

typedef struct shard_ingress shard_ingress;

/* Bind SHARD_SOCKET (a stale socket file is replaced) and listen.  NULL on
 * failure (logged). */
shard_ingress *shard_ingress_new(shard_ctx *ctx);

/* Close every router connection and the socket, unlink its path.  NULL is
 * a no-op. */
void shard_ingress_free(shard_ingress *in);

/* Stop reading from routers (shutdown), keep the structs. */
void shard_ingress_stop(shard_ingress *in);

/* Authenticated router connections / connections still in the handshake. */
int shard_ingress_routers(const shard_ingress *in);
int shard_ingress_pending(const shard_ingress *in);

#endif
