/*
 * shard/ingress_private.h: the test seam of shard/ingress.c, private to
 * that module (docs/style.md, "Module-private headers and test seams").
 * Included only by shard/ingress.c and its unit test,
 * tests/unit/test_ingress.c; the daemon goes through shard/ingress.h.
 *
 * Two things let a test drive ingress without a listener: a constructor
 * that binds nothing (ingress_new_unbound) and an entry that takes a
 * connection someone else accepted (ingress_admit; the listeners of
 * shard_ingress_new call it for every accepted socket).  The connection's
 * bytes go through ingress_io, so a test can split reads, fill the socket
 * or fail a call; the fd is still what libevent watches for readiness (a
 * socketpair() end in the test).
 *
 * The two types it needs from shard/ingress.h are named by their struct
 * tags (the include graph, tests/it/include_graph.sh, counts this header
 * as part of module shard/ingress either way).
 */
#ifndef ODIN_SHARD_INGRESS_PRIVATE_H
#define ODIN_SHARD_INGRESS_PRIVATE_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/socket.h>

#include "shard/ctx.h"

struct shard_ingress;        /* shard_ingress, shard/ingress.h */
struct ingress_callbacks;    /* ingress_callbacks, shard/ingress.h */

/* How ingress moves a connection's bytes.  A NULL member (or a NULL
 * ingress_io) is the real call. */
typedef struct ingress_io {
    /* read(2): bytes read, 0 at end of stream, or -1 with errno (EAGAIN /
     * EWOULDBLOCK: nothing now; EINTR: try again). */
    ssize_t (*read)(void *ud, int fd, void *p, size_t n);
    /* net_write_all (common/net.h): bytes written, 0 when the socket is
     * full (ingress then waits for EV_WRITE on fd), or -1 with errno. */
    ssize_t (*write)(void *ud, int fd, const void *p, size_t n);
    /* close(2); called once per fd ingress was given. */
    void (*close)(void *ud, int fd);
    void *ud;
} ingress_io;

/* Like shard_ingress_new but binds and listens on nothing: connections
 * come only through ingress_admit.  ctx->set->socket_path, if set, only
 * names the "unix:" endpoint the handshake accepts besides
 * ctx->set->endpoint.  cb and io (NULL: real calls) are copied.  Free
 * with shard_ingress_free.  NULL on ENOMEM. */
struct shard_ingress *ingress_new_unbound(shard_ctx *ctx,
                                          const struct ingress_callbacks *cb,
                                          const ingress_io *io);

/*
 * Take an accepted, non-blocking connection fd from peer (peer/peerlen:
 * its address, NULL/0 or AF_UNIX for a Unix-socket peer; an IP address is
 * a source of its own for SHARD_INGRESS_IP_MAX_PENDING).  ingress owns fd
 * from now on, whatever the result.  0 if admitted to the pre-auth pool
 * (our HELLO queued; the connection may already be closed again if that
 * write failed), -1 if refused and closed: stopped, SHARD_INGRESS_MAX_PENDING
 * or SHARD_INGRESS_IP_MAX_PENDING reached (counted in
 * shard_ingress_refused_total), or out of memory.
 */
int ingress_admit(struct shard_ingress *in, int fd, const struct sockaddr *peer,
                  socklen_t peerlen);

#endif
