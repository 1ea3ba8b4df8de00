/* The admin API over the shard's state (contract in adminsrv.h). */
#include "shard/adminsrv.h"
#include "shard/adminapi.h"
#include "shard/client.h"
#include "common/adminauth.h"
#include "shard/cidr.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/tbucket.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>


struct shard_adminsrv {
    shard_ctx *ctx;
    client_pool *clients;
    adminsrv_ops ops;
    tbucket rate;             /* ADMIN_RATE: the admin API's own bucket */
    log_ratelimit log_rl;     /* refusals */
};

shard_adminsrv *shard_adminsrv_new(shard_ctx *ctx, client_pool *clients,
                                   const adminsrv_ops *ops)
{
    shard_adminsrv *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->ctx = ctx;
    a->clients = clients;
    a->ops = *ops;
    tbucket_init(&a->rate, ctx->set->admin_rate, (double)ctx->set->admin_burst,
                 clock_mono_ms());
    a->log_rl.per_sec = 2;
    return a;
}

void shard_adminsrv_free(shard_adminsrv *a)
{
    free(a);
}

static void ip_str(const uint8_t *ip, size_t ip_len, char *out, size_t outlen)
{
    if (!inet_ntop(ip_len == 16 ? AF_INET6 : AF_INET, ip, out, (socklen_t)outlen))
        snprintf(out, outlen, "?");
}

/* ---- GET /admin/v1/channels ------------------------------------------ */

typedef struct chan_walk {
    adminapi_channel *v;
    size_t n;
} chan_walk;

static void chan_collect(void *ud, const char *ch, size_t len, size_t subscribers)
{
    chan_walk *w = ud;
    w->v[w->n++] = (adminapi_channel){ ch, len, subscribers };
}

static int chan_cmp(const void *a, const void *b)
{
    const adminapi_channel *x = a, *y = b;
    size_t m = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->name, y->name, m);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Channels in name order after p->cursor.  The whole index is sorted per
 * request (16 bytes a channel, freed before returning): an operator's
 * request, rate-limited by ADMIN_RATE. */
static int list_channels(shard_adminsrv *srv, const adminapi_params *p, buf *out)
{
    shard_ctx *ctx = srv->ctx;
    size_t total = subs_channels_count(ctx->subs);
    chan_walk w = { calloc(total ? total : 1, sizeof *w.v), 0 };
    if (!w.v)
        return -1;
    subs_foreach_channel(ctx->subs, chan_collect, &w);
    qsort(w.v, w.n, sizeof *w.v, chan_cmp);
    size_t from = 0;
    if (p->cursor[0]) {
        adminapi_channel key = { p->cursor, strlen(p->cursor), 0 };
        while (from < w.n && chan_cmp(&w.v[from], &key) <= 0)
            from++;
    }
    size_t n = w.n - from < p->limit ? w.n - from : p->limit;
    char next[ADMINAPI_CURSOR_MAX];
    const char *nx = NULL;
    if (from + n < w.n && n > 0 && w.v[from + n - 1].len < sizeof next) {
        memcpy(next, w.v[from + n - 1].name, w.v[from + n - 1].len);
        next[w.v[from + n - 1].len] = '\0';
        nx = next;
    }
    int rc = adminapi_channels_json(out, ctx->set->shard_id, w.v + from, n, w.n, nx);
    free(w.v);
    return rc;
}

/* ---- GET /admin/v1/clients ------------------------------------------- */

static int is_ws(const shard_client *c)
{
    return client_state(c) == CL_OPEN || client_state(c) == CL_CLOSING;
}

/* WebSocket clients (the HTTP phase excluded), newest first, with an id
 * below the cursor.  One walk of the live list, which is in descending id
 * order. */
static int list_clients(shard_adminsrv *srv, const adminapi_params *p, buf *out)
{
    uint64_t below = UINT64_MAX;
    if (p->cursor[0]) {
        char *end;
        below = strtoull(p->cursor, &end, 10);
        if (*end)
            return 1;
    }
    adminapi_client *v = calloc(p->limit, sizeof *v);
    char (*addr)[64] = calloc(p->limit, sizeof *addr);
    const char **names = NULL;
    size_t *lens = NULL;
    int rc = -1;
    if (!v || !addr)
        goto out;
    size_t n = 0, total = 0, nch = 0;
    int more = 0;
    for (shard_client *c = client_pool_next(srv->clients, NULL); c;
         c = client_pool_next(srv->clients, c)) {
        if (!is_ws(c))
            continue;
        total++;
        if (client_id(c) >= below)
            continue;
        if (n == p->limit) {
            more = 1;
            continue;
        }
        const client_peer *pe = client_peer_const(c);
        ip_str(pe->ip, pe->ip_len, addr[n], sizeof addr[n]);
        v[n] = (adminapi_client){ .id = client_id(c), .addr = addr[n], .port = pe->port,
                                  .since_ms = client_since_ms(c),
                                  .state = client_state(c) == CL_OPEN ? "open" : "closing",
                                  .queued_bytes = client_queued_bytes(c),
                                  .nchannels = subs_conn_count(client_subs(c)) };
        nch += v[n].nchannels;
        n++;
    }
    names = calloc(nch ? nch : 1, sizeof *names);
    lens = calloc(nch ? nch : 1, sizeof *lens);
    if (!names || !lens)
        goto out;
    /* second pass over the page only: point each client at its names */
    size_t k = 0, j = 0;
    for (shard_client *c = client_pool_next(srv->clients, NULL); c && k < n;
         c = client_pool_next(srv->clients, c)) {
        if (!is_ws(c) || client_id(c) != v[k].id)
            continue;
        v[k].channels = names + j;
        v[k].channel_lens = lens + j;
        const subs_conn *sc = client_subs(c);
        for (uint32_t i = 0; i < sc->n; i++, j++)
            names[j] = subs_channel_name(sc->links[i].ch, &lens[j]);
        k++;
    }
    rc = adminapi_clients_json(out, srv->ctx->set->shard_id, v, n, total,
                               more && n ? v[n - 1].id : 0);
out:
    free(names);
    free(lens);
    free(addr);
    free(v);
    return rc;
}

/* ---- actions ---------------------------------------------------------- */

static int disconnect(shard_adminsrv *srv, uint64_t id, const adminapi_params *p,
                      const char *peer, buf *out, int *status)
{
    shard_client *c = client_pool_find(srv->clients, id);
    if (!c || client_state(c) != CL_OPEN) {
        char msg[96];
        snprintf(msg, sizeof msg, "no open client %llu on this shard",
                 (unsigned long long)id);
        *status = 404;
        return adminapi_error_json(out, msg);
    }
    char addr[64];
    const client_peer *pe = client_peer_const(c);
    ip_str(pe->ip, pe->ip_len, addr, sizeof addr);
    log_kv(LOG_INFO, "admin: disconnecting client", "u:client", id, "s:addr", addr,
           "i:port", (int)pe->port, "i:code", p->code, "s:reason", p->reason,
           "s:by", peer, NULL);
    client_close(c, (uint16_t)p->code, p->reason);
    srv->ctx->m.ws_admin_api_disconnects_total++;
    *status = 200;
    return buf_appendf(out, "{\"disconnected\":%llu,\"code\":%d}\n",
                       (unsigned long long)id, p->code);
}

static int set_drain(shard_adminsrv *srv, int on, const char *peer, buf *out)
{
    shard_ctx *ctx = srv->ctx;
    int changed = !ctx->draining != !on;
    if (changed && !ctx->stopping) {
        ctx->draining = on;
        if (srv->ops.set_draining)
            srv->ops.set_draining(srv->ops.ud, on);
        log_kv(LOG_INFO, on ? "draining: refusing new clients (admin API)"
                            : "drain ended: accepting new clients (admin API)",
               "i:clients", (int)client_pool_counts(srv->clients)->open,
               "s:by", peer, NULL);
    }
    return buf_appendf(out, "{\"draining\":%s,\"changed\":%s}\n",
                       ctx->draining ? "true" : "false", changed ? "true" : "false");
}

/* ---- the request --------------------------------------------------------- */

static int refuse(shard_adminsrv *srv, int status, const char *why, const char *peer,
                  int port, const char *path, size_t len, buf *out)
{
    uint64_t supp = 0;
    if (log_rl_allow(&srv->log_rl, &supp))
        log_kv(LOG_WARN, "admin request refused", "s:peer", peer, "i:port", port,
               "S:path", path, len, "s:listener", "admin", "i:status", status,
               "s:reason", why, "u:suppressed", supp, NULL);
    return adminapi_error_json(out, why) == 0 ? status : -1;
}

int shard_adminsrv_api(void *ud, int post, const char *path, size_t len,
                       const char *query, const char *authorization,
                       const uint8_t *ip, size_t ip_len, int port, buf *out,
                       const char **ctype)
{
    shard_adminsrv *srv = ud;
    shard_ctx *ctx = srv->ctx;
    const shard_settings *s = ctx->set;
    *ctype = "application/json";
    char peer[64];
    ip_str(ip, ip_len, peer, sizeof peer);
    if (s->admin_nets.n && !cidr_list_match(&s->admin_nets, ip, ip_len)) {
        ctx->m.ws_admin_forbidden_total++;
        return refuse(srv, 404, "not in ADMIN_ALLOW", peer, port, path, len, out);
    }
    uint64_t id = 0;
    enum adminapi_route r = adminapi_route(path, len, post, &id);
    if (r == ADMINAPI_NOT_FOUND)
        return adminapi_error_json(out, "no such admin endpoint") == 0 ? 404 : -1;
    if (r == ADMINAPI_BAD_METHOD)
        return adminapi_error_json(out, post ? "use GET" : "use POST") == 0 ? 405 : -1;
    if (!tbucket_take(&srv->rate, clock_mono_ms())) {
        ctx->m.ws_admin_api_rejections_total[2]++;
        return refuse(srv, 429, "over ADMIN_RATE", peer, port, path, len, out);
    }
    const char *why;
    int st = adminauth_check(authorization, s->admin_token, adminapi_route_mutating(r), &why);
    if (st) {
        ctx->m.ws_admin_api_rejections_total[st == ADMINAUTH_UNAUTHORIZED ? 0 : 1]++;
        return refuse(srv, st, why, peer, port, path, len, out);
    }
    adminapi_params p;
    char err[128];
    if (adminapi_parse_params(query, &p, err, sizeof err) != 0)
        return adminapi_error_json(out, err) == 0 ? 400 : -1;
    ctx->m.ws_admin_api_requests_total++;
    int status = 200, rc;
    switch (r) {
    case ADMINAPI_CHANNELS:
        rc = list_channels(srv, &p, out);
        break;
    case ADMINAPI_CLIENTS:
        rc = list_clients(srv, &p, out);
        if (rc == 1)
            return adminapi_error_json(out, "cursor must be a client id") == 0 ? 400 : -1;
        break;
    case ADMINAPI_DISCONNECT:
        rc = disconnect(srv, id, &p, peer, out, &status);
        break;
    case ADMINAPI_DRAIN:
    case ADMINAPI_UNDRAIN:
        rc = set_drain(srv, r == ADMINAPI_DRAIN, peer, out);
        break;
    default:
        rc = adminapi_error_json(out, "no such admin endpoint");
        status = 404;
        break;
    }
    return rc == 0 ? status : -1;
}
