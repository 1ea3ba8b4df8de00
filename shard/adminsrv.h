/*
 * The shard's admin API served from its state (shard/adminsrv.c): the
 * shard_admin_callbacks.api of the ADMIN_ADDR listener.  Gathers channels
 * (the channel index) and clients (the client pool, shard/client.h) into shard/adminapi.h's views, runs the actions (disconnect,
 * drain, undrain) and renders the reply.  Loop thread only.
 *
 * Each request passes, in order: ADMIN_ALLOW (404), the admin API's own
 * ADMIN_RATE/ADMIN_BURST bucket (429), ADMIN_TOKEN (401/403,
 * common/adminauth.h); refusals are counted in
 * ws_admin_api_rejections_total{reason} and logged at a bounded rate.
 */
#ifndef ODIN_SHARD_ADMINSRV_H
#define ODIN_SHARD_ADMINSRV_H

#include <stddef.h>
#include <stdint.h>
#include "common/buf.h"
#include "shard/client.h"
#include "shard/ctx.h"

typedef struct shard_adminsrv shard_adminsrv;

/* What the admin API asks of its owner (shard/server.c). */
typedef struct adminsrv_ops {
    /* POST /admin/v1/drain, /undrain (ctx->draining already set):
     * shard_server_set_draining. */
    int (*set_draining)(void *ud, int on);
    void *ud;
} adminsrv_ops;

/* ctx and clients are borrowed; ops is copied.  NULL on ENOMEM. */
shard_adminsrv *shard_adminsrv_new(shard_ctx *ctx, client_pool *clients,
                                   const adminsrv_ops *ops);
void shard_adminsrv_free(shard_adminsrv *a);   /* NULL: no-op */

/* shard_admin_callbacks.api with ud = the shard_adminsrv. */
int shard_adminsrv_api(void *ud, int post, const char *path, size_t len,
                       const char *query, const char *authorization,
                       const uint8_t *ip, size_t ip_len, int port, buf *out,
                       const char **ctype);

#endif
