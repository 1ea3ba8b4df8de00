#include "tools/lib/lg_ws.h"
#include "tools/lib/lg_plan.h"
#include "common/wskey.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

void lg_ws_key(uint64_t *rng, char out[LG_WS_KEY_LEN + 1])
{
    unsigned char raw[16];
    uint64_t a = lg_rand_next(rng), b = lg_rand_next(rng);
    memcpy(raw, &a, 8);
    memcpy(raw + 8, &b, 8);
    wskey_from_nonce(raw, out);
}

int lg_ws_request(char *out, size_t cap, const char *host, int port, const char *path,
                  const char *key)
{
    return lg_ws_request_ext(out, cap, host, port, path, key, 0);
}

int lg_ws_request_ext(char *out, size_t cap, const char *host, int port, const char *path,
                      const char *key, int deflate)
{
    int n = snprintf(out, cap,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s:%d\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s"
                     "User-Agent: odin-loadgen\r\n"
                     "\r\n",
                     path, host, port, key,
                     deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                               "client_max_window_bits\r\n" : "");
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* Case-insensitive search for a token in a header value. */
static int value_has_token(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; i + tl <= n; i++)
        if (strncasecmp(v + i, tok, tl) == 0)
            return 1;
    return 0;
}

int lg_http_response_parse(const char *p, size_t n, size_t max, lg_http_resp *r)
{
    memset(r, 0, sizeof *r);
    /* status line first, as far as we have it */
    const char *end = NULL;
    for (size_t i = 0; i + 3 < n; i++) {
        if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n') {
            end = p + i + 4;
            break;
        }
    }
    size_t check = n < 12 ? n : 12;
    if (memcmp(p, "HTTP/1.", check < 7 ? check : 7) != 0)
        return -1;
    if (!end)
        return n >= max ? -1 : 0;
    if (n < 12 || p[8] != ' ' || p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' ||
        p[11] < '0' || p[11] > '9')
        return -1;
    r->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    /* headers */
    const char *line = memchr(p, '\n', (size_t)(end - p));
    line = line ? line + 1 : end;
    while (line < end - 2) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            break;
        size_t ll = (size_t)(eol - line);
        if (ll && line[ll - 1] == '\r')
            ll--;
        const char *colon = memchr(line, ':', ll);
        if (colon) {
            size_t nl = (size_t)(colon - line);
            const char *v = colon + 1;
            const char *ve = line + ll;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            size_t vl = (size_t)(ve - v);
            if (nl == 20 && strncasecmp(line, "Sec-WebSocket-Accept", 20) == 0) {
                r->accept = v;
                r->accept_len = vl;
            } else if (nl == 7 && strncasecmp(line, "Upgrade", 7) == 0) {
                r->upgrade_websocket = value_has_token(v, vl, "websocket");
            } else if (nl == 10 && strncasecmp(line, "Connection", 10) == 0) {
                r->connection_upgrade = value_has_token(v, vl, "upgrade");
            } else if (nl == 24 && strncasecmp(line, "Sec-WebSocket-Extensions", 24) == 0) {
                r->deflate = value_has_token(v, vl, "permessage-deflate");
            }
        }
        line = eol + 1;
    }
    return (int)(end - p);
}

int lg_ws_check(const lg_http_resp *r, const char *key, size_t keylen)
{
    if (r->status != 101)
        return LG_WS_STATUS;
    if (!r->upgrade_websocket || !r->connection_upgrade)
        return LG_WS_NOUPGRADE;
    char want[WSKEY_ACCEPT_LEN + 1];
    if (wskey_accept(key, keylen, want) != 0 || r->accept_len != WSKEY_ACCEPT_LEN ||
        memcmp(r->accept, want, WSKEY_ACCEPT_LEN) != 0)
        return LG_WS_BADACCEPT;
    return LG_WS_OK;
}
