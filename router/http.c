/* /health, /livez, /readyz and /metrics (contract in http.h). */
#include "router/http.h"
#include "router/adminapi.h"
#include "router/shards.h"
#include "common/adminauth.h"
#include "common/clock.h"
#include "common/net.h"
#include "common/procmetrics.h"
#include "common/prom.h"
#include "common/tbucket.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "common/log.h"

struct router_http {
    const router_config *cfg;
    router_http_callbacks cb;
    struct evhttp *http;
    tbucket rl[2];                 /* ADMIN_RATE: [0] /metrics, [1] /health */
    uint64_t rl_rejections[2];     /* router_http_ratelimit_rejections_total */
    tbucket rl_api;                /* ADMIN_RATE: the admin API */
    uint64_t api_requests;         /* router_admin_api_requests_total */
    uint64_t api_rejections[2];    /* router_admin_api_rejections_total: [0] 401 [1] 429 */
    log_ratelimit log_rl;
};

#define ROUTER_HTTP_MAX_HEAD 8192     /* request line + headers, bytes */
#define ROUTER_HTTP_TIMEOUT_S 5       /* read / write of one request */

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

static void health(router_http *h, struct evhttp_request *req)
{
    const router_config *cfg = h->cfg;
    router_stats *s = malloc(sizeof *s);
    if (!s) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    h->cb.stats(h->cb.ud, s);
    const router_gauges *g = &s->g;
    int kafka_ok = !s->kafka_down;
    const char *status = "healthy";
    int code = 200;
    if (s->stopping || !kafka_ok) {
        status = "unhealthy";
        code = 503;
    } else if ((cfg->mode == ROUTER_MODE_TARGETED && !s->redis_ok) || g->holding ||
               g->shards_known == 0 || g->shards_connected < g->shards_known) {
        status = "degraded";
    }
    buf b = { 0 };
    buf_appendf(&b, "{\"status\":\"%s\",\"id\":", status);
    buf_append_json_str(&b, cfg->id, strlen(cfg->id));
    buf_appendf(&b, ",\"mode\":\"%s\",\"stopping\":%s,\"uptime\":%llu,"
                "\"consumer_lag\":%lld,\"holding\":%s,\"backpressured\":%s,\"checks\":{",
                router_mode_name(s->mode), s->stopping ? "true" : "false",
                (unsigned long long)s->uptime_s, (long long)g->consumer_lag,
                g->holding ? "true" : "false", g->backpressured ? "true" : "false");
    buf_appendf(&b, "\"kafka\":{\"status\":\"%s\",\"assigned_partitions\":%llu,"
                "\"consumer_lag\":%lld,\"records\":%llu,\"group\":",
                kafka_ok ? "ok" : "down", (unsigned long long)g->assigned_partitions,
                (long long)g->consumer_lag, (unsigned long long)s->m.records);
    buf_append_json_str(&b, cfg->kafka_group, strlen(cfg->kafka_group));
    buf_appendf(&b, "},\"redis\":{\"status\":\"%s\",\"lookup_connected\":%s,"
                "\"subscribed\":%s,\"cache_entries\":%llu},",
                s->redis_ok ? "ok" : "down", s->lookup_connected ? "true" : "false",
                s->subscribed ? "true" : "false", (unsigned long long)g->cache_entries);
    buf_appendf(&b, "\"shards\":{\"status\":\"%s\",\"connected\":%llu,\"known\":%llu,"
                "\"queued_bytes\":%llu,\"list\":",
                g->shards_known && g->shards_connected == g->shards_known ? "ok" : "degraded",
                (unsigned long long)g->shards_connected, (unsigned long long)g->shards_known,
                (unsigned long long)g->queue_bytes);
    h->cb.shards_json(h->cb.ud, &b);
    buf_appendf(&b, "}}}\n");
    reply(req, code, code == 200 ? "OK" : "Service Unavailable", "application/json", &b);
    buf_free(&b);
    free(s);
}

/* /livez: 200 while the loop answers (draining on SIGTERM included: a
 * restart mid-drain would redeliver what it is committing).  /readyz: 503
 * while shutting down, with every Kafka broker down, or holding
 * consumption (it cannot know where records go); Redis down is not
 * "not ready": the router broadcasts meanwhile (http.h). */
static void probe(router_http *h, struct evhttp_request *req, int ready)
{
    router_stats *s = malloc(sizeof *s);
    if (!s) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    h->cb.stats(h->cb.ud, s);
    const char *reason = !ready ? NULL
                       : s->stopping ? "shutting down"
                       : s->kafka_down ? "kafka down"
                       : s->g.holding ? "holding consumption"
                       : NULL;
    buf b = { 0 };
    if (!ready)
        buf_appendf(&b, "{\"status\":\"live\",\"id\":");
    else
        buf_appendf(&b, "{\"status\":\"%s\",\"ready\":%s,\"reason\":%s%s%s,\"id\":",
                    reason ? "not ready" : "ready", reason ? "false" : "true",
                    reason ? "\"" : "", reason ? reason : "null", reason ? "\"" : "");
    buf_append_json_str(&b, h->cfg->id, strlen(h->cfg->id));
    buf_appendf(&b, ",\"stopping\":%s,\"redis\":\"%s\",\"uptime\":%llu}\n",
                s->stopping ? "true" : "false", s->redis_ok ? "up" : "down",
                (unsigned long long)s->uptime_s);
    int code = reason ? 503 : 200;
    reply(req, code, code == 200 ? "OK" : "Service Unavailable", "application/json", &b);
    buf_free(&b);
    free(s);
}

static void metrics(router_http *h, struct evhttp_request *req)
{
    router_stats *s = malloc(sizeof *s);
    if (!s) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    h->cb.stats(h->cb.ud, s);
    buf b = { 0 };
    procmetrics pm;
    procmetrics_sample(&pm);
    if (router_metrics_render(&s->m, &s->g, &b) != 0 ||
        prom_head(&b, "router_http_ratelimit_rejections_total", "counter",
                  "/health and /metrics requests refused with 429 (ADMIN_RATE), "
                  "by path") != 0 ||
        buf_appendf(&b, "router_http_ratelimit_rejections_total{path=\"/metrics\"} %"
                    PRIu64 "\nrouter_http_ratelimit_rejections_total{path=\"/health\"} %"
                    PRIu64 "\n", h->rl_rejections[0], h->rl_rejections[1]) != 0 ||
        prom_counter(&b, "router_admin_api_requests_total",
                     "Admin API requests (/admin/v1/...) answered, refusals excluded",
                     h->api_requests) != 0 ||
        prom_head(&b, "router_admin_api_rejections_total", "counter",
                  "Admin API requests refused, by reason: unauthorized (401, "
                  "ADMIN_TOKEN), ratelimit (429)") != 0 ||
        buf_appendf(&b, "router_admin_api_rejections_total{reason=\"unauthorized\"} %"
                    PRIu64 "\nrouter_admin_api_rejections_total{reason=\"ratelimit\"} %"
                    PRIu64 "\n", h->api_rejections[0], h->api_rejections[1]) != 0 ||
        procmetrics_render(&b, &pm, "odin-router") != 0) {
        buf_free(&b);
        free(s);
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    reply(req, 200, "OK", "text/plain; version=0.0.4", &b);
    buf_free(&b);
    free(s);
}

/* A refused request: logged at a bounded rate with the peer. */
static void refused_log_path(router_http *h, struct evhttp_request *req, const char *path,
                             int status, const char *why)
{
    uint64_t supp = 0;
    if (!log_rl_allow(&h->log_rl, &supp))
        return;
    char ip[64] = "?";
    int port = 0;
    struct evhttp_connection *con = evhttp_request_get_connection(req);
    const struct sockaddr *sa = con ? evhttp_connection_get_addr(con) : NULL;
    if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const void *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
        port = ntohs(s6->sin6_port);
    } else if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const void *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
        port = ntohs(s4->sin_port);
    }
    log_kv(LOG_WARN, "admin request refused", "s:peer", ip, "i:port", port,
           "s:path", path, "s:listener", "http",
           "i:status", status, "s:reason", why, "u:suppressed", supp, NULL);
}

/* A request over ADMIN_RATE. */
static void refused_log(router_http *h, struct evhttp_request *req, const char *path)
{
    refused_log_path(h, req, path, 429, "over ADMIN_RATE");
}

static void reply_error(struct evhttp_request *req, int code, const char *reason,
                        const char *msg)
{
    buf b = { 0 };
    buf_appendf(&b, "{\"error\":");
    buf_append_json_str(&b, msg, strlen(msg));
    buf_appendf(&b, "}\n");
    reply(req, code, reason, "application/json", &b);
    buf_free(&b);
}

#define ADMIN_PARTITIONS_MAX 4096   /* partitions listed (the rest counted) */

/* GET /admin/v1/... (router/adminapi.h). */
static void admin_api(router_http *h, struct evhttp_request *req, const char *uri,
                      size_t plen)
{
    enum router_adminapi_route rt = router_adminapi_route(uri, plen);
    if (rt == RADMIN_NOT_FOUND) {
        reply_error(req, 404, "Not Found", "no such admin endpoint");
        return;
    }
    char path[32];
    snprintf(path, sizeof path, "%.*s", (int)(plen < 31 ? plen : 31), uri);
    if (!tbucket_take(&h->rl_api, clock_mono_ms())) {
        h->api_rejections[1]++;
        refused_log_path(h, req, path, 429, "over ADMIN_RATE");
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        reply_error(req, 429, "Too Many Requests", "over ADMIN_RATE");
        return;
    }
    const char *why;
    int st = adminauth_check(evhttp_find_header(evhttp_request_get_input_headers(req),
                                                "Authorization"),
                             h->cfg->admin_token, 0, &why);
    if (st) {
        h->api_rejections[0]++;
        refused_log_path(h, req, path, st, why);
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                          "Bearer");
        reply_error(req, st, "Unauthorized", why);
        return;
    }
    h->api_requests++;
    router_adminapi_state rs;
    h->cb.admin_state(h->cb.ud, &rs);
    buf b = { 0 };
    int rc = -1;
    if (rt == RADMIN_SHARDS) {
        router_adminapi_shard *v = calloc(ROUTER_SHARDS_MAX, sizeof *v);
        if (v) {
            size_t n = h->cb.admin_shards(h->cb.ud, v, ROUTER_SHARDS_MAX);
            rc = router_adminapi_shards_json(&b, &rs, v, n);
        }
        free(v);
    } else {
        consumer_partition *v = calloc(ADMIN_PARTITIONS_MAX, sizeof *v);
        if (v) {
            long n = h->cb.admin_partitions(h->cb.ud, v, ADMIN_PARTITIONS_MAX);
            rc = router_adminapi_partitions_json(&b, &rs, v,
                                                 n < 0 ? 0 : n > ADMIN_PARTITIONS_MAX
                                                     ? ADMIN_PARTITIONS_MAX : (size_t)n, n);
        }
        free(v);
    }
    if (rc != 0)
        evhttp_send_error(req, 500, "out of memory");
    else
        reply(req, 200, "OK", "application/json", &b);
    buf_free(&b);
}

static void http_cb(struct evhttp_request *req, void *arg)
{
    router_http *h = arg;
    const char *uri = evhttp_request_get_uri(req);
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
        evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
        evhttp_send_error(req, 405, "Method Not Allowed");
        return;
    }
    size_t plen = strcspn(uri, "?");
    int page, probe_kind = 0;   /* 1 /livez, 2 /readyz (page 1: /health's bucket) */
    if (plen > 7 && strncmp(uri, "/admin/", 7) == 0) {
        admin_api(h, req, uri, plen);
        return;
    }
    if (plen == 7 && strncmp(uri, "/health", 7) == 0)
        page = 1;
    else if (plen == 6 && strncmp(uri, "/livez", 6) == 0)
        page = 1, probe_kind = 1;
    else if (plen == 7 && strncmp(uri, "/readyz", 7) == 0)
        page = 1, probe_kind = 2;
    else if (plen == 8 && strncmp(uri, "/metrics", 8) == 0)
        page = 0;
    else {
        evhttp_send_error(req, 404, "Not Found");
        return;
    }
    if (!tbucket_take(&h->rl[page], clock_mono_ms())) {
        h->rl_rejections[page]++;
        refused_log(h, req, probe_kind == 1 ? "/livez" : probe_kind == 2 ? "/readyz"
                                    : page ? "/health" : "/metrics");
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        buf b = { 0 };
        buf_appendf(&b, "{\"error\":\"too many requests\"}\n");
        reply(req, 429, "Too Many Requests", "application/json", &b);
        buf_free(&b);
        return;
    }
    if (probe_kind)
        probe(h, req, probe_kind == 2);
    else if (page)
        health(h, req);
    else
        metrics(h, req);
}

router_http *router_http_new(struct event_base *base, const router_config *cfg,
                             const router_http_callbacks *cb)
{
    router_http *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->cfg = cfg;
    h->cb = *cb;
    h->log_rl.per_sec = 2;
    for (int i = 0; i < 2; i++)
        tbucket_init(&h->rl[i], cfg->admin_rate, (double)cfg->admin_burst, clock_mono_ms());
    tbucket_init(&h->rl_api, cfg->admin_rate, (double)cfg->admin_burst, clock_mono_ms());
    h->http = evhttp_new(base);
    if (!h->http)
        goto err;
    evhttp_set_gencb(h->http, http_cb, h);
    /* /health and /metrics only: GET (and HEAD), a small request head, no
     * body, and a short timeout, so a client cannot make the router buffer
     * (libevent's defaults take any method and an unbounded chunked body);
     * others get 405, 413 or 400 from libevent itself */
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_max_headers_size(h->http, ROUTER_HTTP_MAX_HEAD);
    evhttp_set_max_body_size(h->http, 0);
    evhttp_set_timeout(h->http, ROUTER_HTTP_TIMEOUT_S);
    /* common/net for the bind: its error says why (errno text) */
    char err[256];
    int fd = net_listen_tcp(cfg->http_addr, 128, 0, NULL, 0, NULL, err, sizeof err);
    if (fd < 0) {
        log_kv(LOG_ERROR, "cannot listen for HTTP", "s:addr", cfg->http_addr,
               "s:error", err, NULL);
        goto err;
    }
    if (!evhttp_accept_socket_with_handle(h->http, fd)) {
        log_kv(LOG_ERROR, "cannot listen for HTTP", "s:addr", cfg->http_addr,
               "s:error", "evhttp_accept_socket failed", NULL);
        close(fd);
        goto err;
    }
    return h;
err:
    router_http_free(h);
    return NULL;
}

void router_http_free(router_http *h)
{
    if (!h)
        return;
    if (h->http)
        evhttp_free(h->http);
    free(h);
}
