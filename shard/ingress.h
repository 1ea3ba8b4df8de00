/*
 * Router ingress: a Unix-domain stream socket (SHARD_SOCKET) that routers
 * connect to (several at once).  Each side sends a HELLO first
 * (proto/frame.h; the shard's has role "shard" and id SHARD_ID); a peer with
 * another protocol version, a frame before its HELLO, or a malformed or
 * oversized frame is closed with a logged reason and counted in
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

int shard_ingress_routers(const shard_ingress *in);

#endif
