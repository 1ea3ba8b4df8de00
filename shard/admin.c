/* Admin listener for /health, /livez, /readyz and /metrics (contract in
 * admin.h). */
#include "shard/admin.h"
#include "common/log.h"
#include "common/net.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#define ADMIN_MAX_HEAD 8192      /* request line + headers, bytes */
#define ADMIN_TIMEOUT_S 5        /* read / write of one request */

struct shard_admin {
    shard_admin_callbacks cb;
    struct evhttp *http;
    buf page;
};

static const char *reason_of(int code)
{
    switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 405: return "Method Not Allowed";
    case 404: return "Not Found";
    case 429: return "Too Many Requests";
    case 503: return "Service Unavailable";
    default:  return "Error";
    }
}

static void peer_of(struct evhttp_request *req, uint8_t ip[16], size_t *ip_len,
                    int *port)
{
    memset(ip, 0, 16);
    *ip_len = 4;
    *port = 0;
    struct evhttp_connection *con = evhttp_request_get_connection(req);
    const struct sockaddr *sa = con ? evhttp_connection_get_addr(con) : NULL;
    if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const void *)sa;
        memcpy(ip, &s6->sin6_addr, 16);
        *ip_len = 16;
        *port = ntohs(s6->sin6_port);
    } else if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const void *)sa;
        memcpy(ip, &s4->sin_addr, 4);
        *port = ntohs(s4->sin_port);
    }
}

static const char *const k_page_paths[] = { "/metrics", "/health", "/livez", "/readyz" };

int shard_admin_page_of(const char *path, size_t len)
{
    for (int i = 0; i < 4; i++)
        if (strlen(k_page_paths[i]) == len && memcmp(path, k_page_paths[i], len) == 0)
            return i;
    return -1;
}

const char *shard_admin_page_path(int page)
{
    return page >= 0 && page < 4 ? k_page_paths[page] : "?";
}

static void on_request(struct evhttp_request *req, void *arg)
{
    shard_admin *a = arg;
    const char *uri = evhttp_request_get_uri(req);
    size_t plen = strcspn(uri, "?");
    int post = evhttp_request_get_command(req) == EVHTTP_REQ_POST;
    int page = -1;
    if (plen > 7 && strncmp(uri, "/admin/", 7) == 0 && a->cb.api) {
        /* the admin API, below */
    } else if (post) {
        evhttp_send_error(req, 405, "Method Not Allowed");
        return;
    } else if ((page = shard_admin_page_of(uri, plen)) < 0) {
        evhttp_send_error(req, 404, "Not Found");
        return;
    }
    uint8_t ip[16];
    size_t ip_len;
    int port;
    peer_of(req, ip, &ip_len, &port);
    buf_reset(&a->page);
    const char *ctype = "text/plain";
    int code;
    if (page < 0) {
        struct evkeyvalq *in = evhttp_request_get_input_headers(req);
        code = a->cb.api(a->cb.api_ud, post, uri, plen, uri[plen] ? uri + plen + 1 : NULL,
                         evhttp_find_header(in, "Authorization"), ip, ip_len, port,
                         &a->page, &ctype);
    } else {
        code = a->cb.page(a->cb.ud, page, ip, ip_len, port, &a->page, &ctype);
    }
    if (code < 0) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    struct evbuffer *out = evbuffer_new();
    if (!out) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    evbuffer_add(out, a->page.data ? a->page.data : "", a->page.len);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", ctype);
    if (code == 429)
        evhttp_add_header(h, "Retry-After", "1");
    if (code == 401)
        evhttp_add_header(h, "WWW-Authenticate", "Bearer");
    evhttp_send_reply(req, code, reason_of(code), out);
    evbuffer_free(out);
}

shard_admin *shard_admin_new(struct event_base *base, const char *addr,
                             const shard_admin_callbacks *cb, char *bound,
                             size_t boundlen, int *port)
{
    shard_admin *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->cb = *cb;
    a->http = evhttp_new(base);
    if (!a->http)
        goto err;
    evhttp_set_gencb(a->http, on_request, a);
    /* GET and HEAD (POST for the admin API's actions, which take their
     * arguments in the query), a small head, no body, a short timeout: a
     * client cannot make the shard buffer; others get 405, 413 or 400 */
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
    evhttp_set_max_headers_size(a->http, ADMIN_MAX_HEAD);
    evhttp_set_max_body_size(a->http, 0);
    evhttp_set_timeout(a->http, ADMIN_TIMEOUT_S);
    char err[256];
    int fd = net_listen_tcp(addr, 128, 0, bound, boundlen, port, err, sizeof err);
    if (fd < 0) {
        log_kv(LOG_ERROR, "cannot listen (ADMIN_ADDR)", "s:addr", addr,
               "s:error", err, NULL);
        goto err;
    }
    if (!evhttp_accept_socket_with_handle(a->http, fd)) {
        log_kv(LOG_ERROR, "cannot listen (ADMIN_ADDR)", "s:addr", addr,
               "s:error", "evhttp_accept_socket failed", NULL);
        close(fd);
        goto err;
    }
    return a;
err:
    shard_admin_free(a);
    return NULL;
}

void shard_admin_free(shard_admin *a)
{
    if (!a)
        return;
    if (a->http)
        evhttp_free(a->http);
    buf_free(&a->page);
    free(a);
}
