/*
 * The shard's admin listener (shard/admin.c): GET/HEAD /health, /livez,
 * /readyz and /metrics, and the admin API under /admin/ (GET and POST,
 * shard/adminapi.h) on ADMIN_ADDR, an address apart from the public WS_ADDR (libevent evhttp:
 * small request heads, no body, a 5 s timeout, other methods 405, other
 * paths 404).  What a page holds, and whether it is served at all (the
 * ADMIN_RATE limit, ADMIN_ALLOW), is the owner's: the listener asks through
 * its callbacks struct.
 */
#ifndef ODIN_SHARD_ADMIN_H
#define ODIN_SHARD_ADMIN_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>
#include "common/buf.h"

/* The pages: /metrics; /health (the full JSON); /livez (200 while the
 * process answers); /readyz (200 when it takes new clients, 503 when
 * draining, shutting down or full). */
enum shard_admin_page {
    SHARD_PAGE_METRICS = 0,
    SHARD_PAGE_HEALTH = 1,
    SHARD_PAGE_LIVEZ = 2,
    SHARD_PAGE_READYZ = 3
};

/* The page of a request path (up to '?'), or -1 for another path. */
int shard_admin_page_of(const char *path, size_t len);

/* "/health", "/livez", ... for logs. */
const char *shard_admin_page_path(int page);

typedef struct shard_admin_callbacks {
    /*
     * Answer GET of page (enum shard_admin_page) from peer ip (ip_len 4 or
     * 16, network order) and port: append the body to `out`, set *ctype (a static
     * string) and return the HTTP status (200, 503, 404, 429 (sent with
     * Retry-After: 1), ...), or -1 on ENOMEM (answered 500).
     */
    int (*page)(void *ud, int page, const uint8_t *ip, size_t ip_len,
                int port, buf *out, const char **ctype);
    /*
     * Answer a request under /admin/ (path without the query, len bytes;
     * query after '?' or NULL; post = 1 for POST; authorization: the
     * Authorization header or NULL) from ip/port: as page, with api_ud
     * as ud.  NULL: /admin/ is 404.
     */
    int (*api)(void *ud, int post, const char *path, size_t len,
               const char *query, const char *authorization,
               const uint8_t *ip, size_t ip_len, int port, buf *out,
               const char **ctype);
    void *ud;        /* for page */
    void *api_ud;    /* for api */
} shard_admin_callbacks;

typedef struct shard_admin shard_admin;

/*
 * Listen on addr (host:port) on base.  base must outlive the listener; cb
 * is copied.  The bound address (actual port) goes to bound (if non-NULL)
 * and *port.  NULL on failure (logged).
 */
shard_admin *shard_admin_new(struct event_base *base, const char *addr,
                             const shard_admin_callbacks *cb, char *bound,
                             size_t boundlen, int *port);
void shard_admin_free(shard_admin *a);   /* NULL is a no-op */

#endif
