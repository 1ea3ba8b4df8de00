/* Admin API routing, parameters and JSON (contract in adminapi.h). */
#include "shard/adminapi.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>

#define PFX "/admin/v1/"

static int eq(const char *p, size_t len, const char *s)
{
    size_t n = strlen(s);
    return len == n && memcmp(p, s, n) == 0;
}

/* A decimal id > 0 of at most 19 digits filling all of [p, p+len). */
static int parse_id(const char *p, size_t len, uint64_t *id)
{
    if (len == 0 || len > 19)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    if (v == 0)
        return -1;
    *id = v;
    return 0;
}

enum adminapi_route adminapi_route(const char *path, size_t len, int post,
                                   uint64_t *client_id)
{
    size_t pl = strlen(PFX);
    if (len < pl || memcmp(path, PFX, pl) != 0)
        return ADMINAPI_NOT_FOUND;
    const char *p = path + pl;
    size_t n = len - pl;
    enum adminapi_route r = ADMINAPI_NOT_FOUND;
    int want_post = 0;
    if (eq(p, n, "channels")) {
        r = ADMINAPI_CHANNELS;
    } else if (eq(p, n, "clients")) {
        r = ADMINAPI_CLIENTS;
    } else if (eq(p, n, "drain")) {
        r = ADMINAPI_DRAIN;
        want_post = 1;
    } else if (eq(p, n, "undrain")) {
        r = ADMINAPI_UNDRAIN;
        want_post = 1;
    } else if (n > 8 && memcmp(p, "clients/", 8) == 0) {
        static const char sfx[] = "/disconnect";
        size_t sl = sizeof sfx - 1;
        if (n > 8 + sl && memcmp(p + n - sl, sfx, sl) == 0 &&
            parse_id(p + 8, n - 8 - sl, client_id) == 0) {
            r = ADMINAPI_DISCONNECT;
            want_post = 1;
        }
    }
    if (r != ADMINAPI_NOT_FOUND && want_post != !!post)
        return ADMINAPI_BAD_METHOD;
    return r;
}

int adminapi_route_mutating(enum adminapi_route r)
{
    return r == ADMINAPI_DISCONNECT || r == ADMINAPI_DRAIN || r == ADMINAPI_UNDRAIN;
}

int adminapi_parse_params(const char *query, adminapi_params *p, char *err,
                          size_t errlen)
{
    memset(p, 0, sizeof *p);
    p->limit = ADMINAPI_LIMIT_DEFAULT;
    p->code = ADMINAPI_KICK_CODE;
    snprintf(p->reason, sizeof p->reason, "disconnected by operator");
    if (!query || !*query)
        return 0;
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    if (evhttp_parse_query_str(query, &q) != 0) {
        snprintf(err, errlen, "malformed query string");
        return -1;
    }
    int rc = 0;
    const char *v;
    if ((v = evhttp_find_header(&q, "limit"))) {
        char *end;
        errno = 0;
        long l = strtol(v, &end, 10);
        if (errno || end == v || *end || l < 1 || l > ADMINAPI_LIMIT_MAX) {
            snprintf(err, errlen, "limit must be 1..%d", ADMINAPI_LIMIT_MAX);
            rc = -1;
            goto out;
        }
        p->limit = (size_t)l;
    }
    if ((v = evhttp_find_header(&q, "cursor"))) {
        if (strlen(v) >= sizeof p->cursor) {
            snprintf(err, errlen, "cursor longer than %d bytes", ADMINAPI_CURSOR_MAX - 1);
            rc = -1;
            goto out;
        }
        snprintf(p->cursor, sizeof p->cursor, "%s", v);
    }
    if ((v = evhttp_find_header(&q, "code"))) {
        char *end;
        errno = 0;
        long c = strtol(v, &end, 10);
        if (errno || end == v || *end ||
            !(c == 1000 || c == 1008 || (c >= 4000 && c <= 4999))) {
            snprintf(err, errlen, "code must be 1000, 1008 or 4000..4999");
            rc = -1;
            goto out;
        }
        p->code = (int)c;
    }
    if ((v = evhttp_find_header(&q, "reason"))) {
        if (strlen(v) > ADMINAPI_REASON_MAX) {
            snprintf(err, errlen, "reason longer than %d bytes", ADMINAPI_REASON_MAX);
            rc = -1;
            goto out;
        }
        snprintf(p->reason, sizeof p->reason, "%s", v);
    }
out:
    evhttp_clear_headers(&q);
    return rc;
}

int adminapi_channels_json(buf *out, const char *shard_id,
                           const adminapi_channel *v, size_t n, size_t total,
                           const char *next)
{
    int e = buf_appendf(out, "{\"shard\":");
    e |= buf_append_json_str(out, shard_id, strlen(shard_id));
    e |= buf_appendf(out, ",\"channels\":[");
    for (size_t i = 0; i < n; i++) {
        e |= buf_appendf(out, "%s{\"channel\":", i ? "," : "");
        e |= buf_append_json_str(out, v[i].name, v[i].len);
        e |= buf_appendf(out, ",\"subscribers\":%zu}", v[i].subscribers);
    }
    e |= buf_appendf(out, "],\"total\":%zu,\"next\":", total);
    if (next)
        e |= buf_append_json_str(out, next, strlen(next));
    else
        e |= buf_appendf(out, "null");
    e |= buf_appendf(out, "}\n");
    return e ? -1 : 0;
}

int adminapi_clients_json(buf *out, const char *shard_id,
                          const adminapi_client *v, size_t n, size_t total,
                          uint64_t next)
{
    int e = buf_appendf(out, "{\"shard\":");
    e |= buf_append_json_str(out, shard_id, strlen(shard_id));
    e |= buf_appendf(out, ",\"clients\":[");
    for (size_t i = 0; i < n; i++) {
        const adminapi_client *c = &v[i];
        e |= buf_appendf(out, "%s{\"id\":%" PRIu64 ",\"address\":", i ? "," : "", c->id);
        e |= buf_append_json_str(out, c->addr, strlen(c->addr));
        e |= buf_appendf(out, ",\"port\":%d,\"since_ms\":%" PRIu64 ",\"state\":\"%s\","
                         "\"queued_bytes\":%" PRIu64 ",\"channels\":[",
                         c->port, c->since_ms, c->state, c->queued_bytes);
        for (size_t j = 0; j < c->nchannels; j++) {
            if (j)
                e |= buf_appendf(out, ",");
            e |= buf_append_json_str(out, c->channels[j], c->channel_lens[j]);
        }
        e |= buf_appendf(out, "]}");
    }
    e |= buf_appendf(out, "],\"total\":%zu,\"next\":", total);
    if (next)
        e |= buf_appendf(out, "\"%" PRIu64 "\"", next);
    else
        e |= buf_appendf(out, "null");
    e |= buf_appendf(out, "}\n");
    return e ? -1 : 0;
}

int adminapi_error_json(buf *out, const char *msg)
{
    int e = buf_appendf(out, "{\"error\":");
    e |= buf_append_json_str(out, msg, strlen(msg));
    e |= buf_appendf(out, "}\n");
    return e ? -1 : 0;
}
