/*
 * The shard's admin API (/admin/v1/...), the pure part: request routing,
 * paging parameters and the JSON bodies.  No I/O and no shard state: the
 * HTTP glue (shard/admin.c) and the server (shard/server.c) gather the data
 * into the plain views below and send what is rendered here.
 *
 *   GET  /admin/v1/channels?cursor=NAME&limit=N   channels, subscriber counts
 *   GET  /admin/v1/clients?cursor=ID&limit=N      WebSocket clients
 *   POST /admin/v1/clients/ID/disconnect?code=C&reason=R
 *   POST /admin/v1/drain, /admin/v1/undrain
 *
 * Channels are listed in name order, clients newest first (descending id);
 * a page holds at most `limit` entries (default ADMINAPI_LIMIT_DEFAULT, at
 * most ADMINAPI_LIMIT_MAX) and carries "next": the cursor of the next page,
 * or null after the last.
 */
#ifndef ODIN_SHARD_ADMINAPI_H
#define ODIN_SHARD_ADMINAPI_H

#include <stddef.h>
#include <stdint.h>
#include "common/buf.h"

#define ADMINAPI_LIMIT_DEFAULT 100
#define ADMINAPI_LIMIT_MAX     1000
#define ADMINAPI_CURSOR_MAX    256    /* bytes of a channel cursor */
#define ADMINAPI_REASON_MAX    120    /* close reason (fits a close frame) */
#define ADMINAPI_KICK_CODE     4000   /* default close code of a disconnect */

enum adminapi_route {
    ADMINAPI_NOT_FOUND = 0,
    ADMINAPI_CHANNELS,
    ADMINAPI_CLIENTS,
    ADMINAPI_DISCONNECT,
    ADMINAPI_DRAIN,
    ADMINAPI_UNDRAIN,
    ADMINAPI_BAD_METHOD,      /* a known path with the wrong method (405) */
};

/*
 * Route one request: path without the query, post = 1 for POST (GET and HEAD
 * otherwise).  For ADMINAPI_DISCONNECT *client_id is the id in the path.
 */
enum adminapi_route adminapi_route(const char *path, size_t len, int post,
                                   uint64_t *client_id);

/* 1 for the routes that change state (they need ADMIN_TOKEN). */
int adminapi_route_mutating(enum adminapi_route r);

/* Query parameters of one request, decoded. */
typedef struct adminapi_params {
    char cursor[ADMINAPI_CURSOR_MAX];   /* "" = from the start */
    size_t limit;
    int code;                           /* disconnect close code */
    char reason[ADMINAPI_REASON_MAX + 1];
} adminapi_params;

/*
 * Parse a query string (after '?', may be NULL) into *p with defaults.
 * 0, or -1 with a message in err: a limit not in 1..ADMINAPI_LIMIT_MAX, a
 * cursor too long, a code neither 1000, 1008 nor 4000..4999, a reason over
 * ADMINAPI_REASON_MAX bytes, a malformed escape.
 */
int adminapi_parse_params(const char *query, adminapi_params *p, char *err,
                          size_t errlen);

/* One channel of the listing. */
typedef struct adminapi_channel {
    const char *name;
    size_t len;
    size_t subscribers;
} adminapi_channel;

/* {"shard":ID,"channels":[{"channel":..,"subscribers":n},..],"total":T,
 * "next":CURSOR|null}.  0 or -1 (ENOMEM). */
int adminapi_channels_json(buf *out, const char *shard_id,
                           const adminapi_channel *v, size_t n, size_t total,
                           const char *next);

/* One client of the listing. */
typedef struct adminapi_client {
    uint64_t id;
    const char *addr;             /* text address */
    int port;
    uint64_t since_ms;            /* wall clock, ms since the epoch */
    const char *state;            /* "open" or "closing" */
    uint64_t queued_bytes;
    const char *const *channels;  /* names (not NUL-terminated) */
    const size_t *channel_lens;
    size_t nchannels;
} adminapi_client;

/* {"shard":ID,"clients":[{"id":N,"address":..,"port":..,"since_ms":..,
 * "state":..,"queued_bytes":..,"channels":[..]},..],"total":T,
 * "next":"ID"|null}.  next = 0: no next page.  0 or -1 (ENOMEM). */
int adminapi_clients_json(buf *out, const char *shard_id,
                          const adminapi_client *v, size_t n, size_t total,
                          uint64_t next);

/* {"error":MSG}.  0 or -1. */
int adminapi_error_json(buf *out, const char *msg);

#endif
