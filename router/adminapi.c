/* The router's admin API: routing and JSON (contract in adminapi.h). */
#include "router/adminapi.h"

#include <inttypes.h>
#include <string.h>

static int eq(const char *p, size_t len, const char *s)
{
    size_t n = strlen(s);
    return len == n && memcmp(p, s, n) == 0;
}

enum router_adminapi_route router_adminapi_route(const char *path, size_t len)
{
    if (eq(path, len, "/admin/v1/shards"))
        return RADMIN_SHARDS;
    if (eq(path, len, "/admin/v1/partitions"))
        return RADMIN_PARTITIONS;
    return RADMIN_NOT_FOUND;
}

static const char *tf(int b)
{
    return b ? "true" : "false";
}

static int state_json(buf *out, const router_adminapi_state *st)
{
    int e = buf_appendf(out, "{\"router\":{\"id\":");
    e |= buf_append_json_str(out, st->router_id, strlen(st->router_id));
    e |= buf_appendf(out, ",\"mode\":\"%s\",\"holding\":%s,\"hold_ms\":%" PRIu64
                     ",\"holds_total\":%" PRIu64 ",\"hold_expired_total\":%" PRIu64
                     ",\"backpressured\":%s,\"consumer_lag\":%" PRId64 "}",
                     st->mode, tf(st->holding), st->hold_ms, st->holds, st->hold_expired,
                     tf(st->backpressured), st->consumer_lag);
    return e;
}

int router_adminapi_shards_json(buf *out, const router_adminapi_state *st,
                                const router_adminapi_shard *v, size_t n)
{
    int e = state_json(out, st);
    e |= buf_appendf(out, ",\"shards\":[");
    for (size_t i = 0; i < n; i++) {
        const router_adminapi_shard *s = &v[i];
        e |= buf_appendf(out, "%s{\"id\":", i ? "," : "");
        e |= buf_append_json_str(out, s->id, s->id_len);
        e |= buf_appendf(out, ",\"endpoint\":");
        if (s->endpoint)
            e |= buf_append_json_str(out, s->endpoint, strlen(s->endpoint));
        else
            e |= buf_appendf(out, "null");
        e |= buf_appendf(out, ",\"live\":%s,\"state\":\"%s\",\"connected\":%s,"
                         "\"authenticated\":%s,\"queued_bytes\":%" PRIu64
                         ",\"queue_limit\":%" PRIu64 ",\"backpressured\":%s,"
                         "\"connects\":%" PRIu64 ",\"drops\":{",
                         tf(s->live), s->state, tf(strcmp(s->state, "ready") == 0),
                         tf(s->authenticated), s->queued_bytes, s->queue_limit,
                         tf(s->backpressured), s->connects);
        for (int d = 0; d < ROUTER_DROP_COUNT; d++)
            e |= buf_appendf(out, "%s\"%s\":%" PRIu64, d ? "," : "",
                             router_drop_name((enum router_drop)d), s->drops[d]);
        e |= buf_appendf(out, "}}");
    }
    e |= buf_appendf(out, "]}\n");
    return e ? -1 : 0;
}

int router_adminapi_partitions_json(buf *out, const router_adminapi_state *st,
                                    const consumer_partition *v, size_t n,
                                    long assigned)
{
    int e = state_json(out, st);
    e |= buf_appendf(out, ",\"assigned\":%ld,\"partitions\":[", assigned);
    for (size_t i = 0; i < n; i++) {
        const consumer_partition *p = &v[i];
        e |= buf_appendf(out, "%s{\"topic\":", i ? "," : "");
        e |= buf_append_json_str(out, p->topic, strlen(p->topic));
        e |= buf_appendf(out, ",\"partition\":%d,\"position\":%" PRId64 ",\"stored\":%" PRId64
                         ",\"low\":%" PRId64 ",\"high\":%" PRId64 ",\"lag\":%" PRId64 "}",
                         (int)p->partition, p->position, p->stored, p->low, p->high, p->lag);
    }
    e |= buf_appendf(out, "]}\n");
    return e ? -1 : 0;
}
