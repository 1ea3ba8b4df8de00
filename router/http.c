/*
 * GET /health and GET /metrics on HTTP_ADDR (libevent evhttp, loop thread).
 *
 * /health status:
 *   unhealthy (503): shutting down, or Kafka reports all brokers down
 *   degraded  (200): Redis unavailable (fallback broadcast), DISPATCH_MODE
 *                    targeted but no shard known, or a live shard not connected
 *   healthy   (200): otherwise
 */
#include "router/router_int.h"

#include <string.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "common/clock.h"

void router_fill_gauges(router *r, router_gauges *g)
{
    memset(g, 0, sizeof *g);
    const route_cache_stats *cs = route_cache_get_stats(r->cache);
    g->cache_hits = cs->hits;
    g->cache_misses = cs->misses;
    g->cache_evictions = cs->evictions;
    g->cache_entries = route_cache_count(r->cache);
    g->shards_connected = router_shards_ready(r->shards);
    g->shards_known = router_shards_live(r->shards);
    g->redis_connected = router_targeted_ready(r);
    g->consumer_lag = router_kafka_lag(r);
    g->assigned_partitions = r->assigned;
    g->queue_bytes = router_shards_queued_bytes(r->shards);
    g->pending_segments = router_offsets_pending(r->off);
    g->fallback = r->cfg->mode == ROUTER_MODE_TARGETED && !router_targeted_ready(r);
    g->backpressured = r->backpressured;
}

static void reply(struct evhttp_request *req, int code, const char *reason,
                  const char *ctype, const buf *body)
{
    struct evbuffer *out = evbuffer_new();
    if (!out) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    evbuffer_add(out, body->data ? body->data : "", body->len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    evhttp_send_reply(req, code, reason, out);
    evbuffer_free(out);
}

static void health(router *r, struct evhttp_request *req)
{
    router_gauges g;
    router_fill_gauges(r, &g);
    int redis_ok = router_targeted_ready(r);
    int kafka_ok = !r->kafka_down;
    const char *status = "healthy";
    int code = 200;
    if (r->stopping || !kafka_ok) {
        status = "unhealthy";
        code = 503;
    } else if ((r->cfg->mode == ROUTER_MODE_TARGETED && !redis_ok) ||
               g.shards_known == 0 || g.shards_connected < g.shards_known) {
        status = "degraded";
    }
    enum router_mode mode = r->cfg->mode == ROUTER_MODE_BROADCAST ? ROUTER_MODE_BROADCAST
                          : redis_ok ? ROUTER_MODE_TARGETED : ROUTER_MODE_FALLBACK;
    buf b = { 0 };
    buf_appendf(&b, "{\"status\":\"%s\",\"id\":", status);
    buf_append_json_str(&b, r->cfg->id, strlen(r->cfg->id));
    buf_appendf(&b, ",\"mode\":\"%s\",\"stopping\":%s,\"uptime\":%llu,"
                "\"consumer_lag\":%lld,\"checks\":{",
                router_mode_name(mode), r->stopping ? "true" : "false",
                (unsigned long long)((clock_mono_ms() - r->started_ms) / 1000),
                (long long)g.consumer_lag);
    buf_appendf(&b, "\"kafka\":{\"status\":\"%s\",\"assigned_partitions\":%llu,"
                "\"consumer_lag\":%lld,\"records\":%llu,\"group\":",
                kafka_ok ? "ok" : "down", (unsigned long long)g.assigned_partitions,
                (long long)g.consumer_lag, (unsigned long long)r->m.records);
    buf_append_json_str(&b, r->cfg->kafka_group, strlen(r->cfg->kafka_group));
    buf_appendf(&b, "},\"redis\":{\"status\":\"%s\",\"lookup_connected\":%s,"
                "\"subscribed\":%s,\"cache_entries\":%llu},",
                redis_ok ? "ok" : "down",
                redislink_ctx(r->cmd) ? "true" : "false",
                r->subscribed ? "true" : "false", (unsigned long long)g.cache_entries);
    buf_appendf(&b, "\"shards\":{\"status\":\"%s\",\"connected\":%llu,\"known\":%llu,"
                "\"queued_bytes\":%llu,\"list\":",
                g.shards_known && g.shards_connected == g.shards_known ? "ok" : "degraded",
                (unsigned long long)g.shards_connected, (unsigned long long)g.shards_known,
                (unsigned long long)g.queue_bytes);
    router_shards_json(r->shards, &b);
    buf_appendf(&b, "}}}\n");
    reply(req, code, code == 200 ? "OK" : "Service Unavailable", "application/json", &b);
    buf_free(&b);
}

static void metrics(router *r, struct evhttp_request *req)
{
    router_gauges g;
    router_fill_gauges(r, &g);
    buf b = { 0 };
    if (router_metrics_render(&r->m, &g, &b) != 0) {
        buf_free(&b);
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    reply(req, 200, "OK", "text/plain; version=0.0.4", &b);
    buf_free(&b);
}

static void http_cb(struct evhttp_request *req, void *arg)
{
    router *r = arg;
    const char *uri = evhttp_request_get_uri(req);
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
        evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
        evhttp_send_error(req, 405, "Method Not Allowed");
        return;
    }
    size_t plen = strcspn(uri, "?");
    if (plen == 7 && strncmp(uri, "/health", 7) == 0)
        health(r, req);
    else if (plen == 8 && strncmp(uri, "/metrics", 8) == 0)
        metrics(r, req);
    else
        evhttp_send_error(req, 404, "Not Found");
}

int router_http_start(router *r)
{
    r->http = evhttp_new(r->base);
    if (!r->http)
        return -1;
    evhttp_set_gencb(r->http, http_cb, r);
    evhttp_set_timeout(r->http, 10);
    if (!evhttp_bind_socket_with_handle(r->http, r->cfg->http_host,
                                        (ev_uint16_t)r->cfg->http_port)) {
        log_kv(LOG_ERROR, "cannot listen for HTTP", "s:addr", r->cfg->http_addr, NULL);
        return -1;
    }
    return 0;
}

void router_http_free(router *r)
{
    if (r->http)
        evhttp_free(r->http);
    r->http = NULL;
}
