#include "shard/ws.h"
#include "common/wskey.h"

#include <string.h>
#include <strings.h>
#include <stdio.h>
#include <openssl/evp.h>
#include <http_parser.h>
#include <wslay/wslay.h>

/* ---- handshake ------------------------------------------------------- */

static int b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int ws_key_valid(const char *key, size_t len)
{
    if (len != 24 || key[22] != '=' || key[23] != '=')
        return 0;
    for (size_t i = 0; i < 22; i++)
        if (!b64_char((unsigned char)key[i]))
            return 0;
    unsigned char out[24];
    return EVP_DecodeBlock(out, (const unsigned char *)key, 24) == 18;
}

int ws_handshake_check(const httpreq *req, const char **reason)
{
    if (req->method != HTTP_GET) {
        *reason = "WebSocket upgrade needs GET";
        return 405;
    }
    if (req->http_major < 1 || (req->http_major == 1 && req->http_minor < 1)) {
        *reason = "WebSocket upgrade needs HTTP/1.1";
        return 400;
    }
    if (!req->host.p) {
        *reason = "missing Host header";
        return 400;
    }
    if (!httpreq_has_token(req->upgrade, "websocket")) {
        *reason = "missing \"Upgrade: websocket\"";
        return 400;
    }
    if (!httpreq_has_token(req->connection, "upgrade")) {
        *reason = "missing \"Connection: Upgrade\"";
        return 400;
    }
    if (req->ws_version.len != 2 || memcmp(req->ws_version.p, "13", 2) != 0) {
        *reason = "unsupported Sec-WebSocket-Version (want 13)";
        return 426;
    }
    if (req->dup_ws_key || !ws_key_valid(req->ws_key.p, req->ws_key.len)) {
        *reason = "invalid Sec-WebSocket-Key";
        return 400;
    }
    if (req->has_body) {
        *reason = "upgrade request with a body";
        return 400;
    }
    *reason = NULL;
    return 0;
}

static int origin_match(const char *pat, size_t pl, const char *o, size_t ol)
{
    const char *star = memchr(pat, '*', pl);
    if (!star)
        return pl == ol && strncasecmp(pat, o, ol) == 0;
    /* wildcard host: same scheme and suffix, non-empty host labels between */
    size_t pre = (size_t)(star - pat), suf = pl - pre - 1;   /* suf starts at '.' */
    if (suf == 0 || star[1] != '.' || ol <= pre + suf)
        return 0;
    if (strncasecmp(pat, o, pre) != 0 || strncasecmp(star + 1, o + ol - suf, suf) != 0)
        return 0;
    for (size_t i = pre; i < ol - suf; i++)
        if (o[i] == '/' || o[i] == ':' || o[i] == '@')
            return 0;   /* the wildcard covers host labels only */
    return 1;
}

int ws_origin_allowed(const char *allowed, const httpreq *req)
{
    if (!allowed || !*allowed || !req->origin.p)
        return 1;
    const char *o = req->origin.p;
    size_t ol = req->origin.len;
    while (ol && (o[ol - 1] == ' ' || o[ol - 1] == '\t'))
        ol--;
    for (const char *p = allowed; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        size_t l = (size_t)(e - p);
        while (l && p[l - 1] == ' ')
            l--;
        if (l && origin_match(p, l, o, ol))
            return 1;
        p = e;
    }
    return 0;
}

int ws_handshake_response(buf *out, const char *key, size_t key_len)
{
    char acc[WSKEY_ACCEPT_LEN + 1];
    if (wskey_accept(key, key_len, acc) != 0)
        return -1;
    return buf_appendf(out,
                       "HTTP/1.1 101 Switching Protocols\r\n"
                       "Upgrade: websocket\r\n"
                       "Connection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: %s\r\n\r\n", acc);
}

static const char *status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

int ws_http_response(buf *out, int status, const char *ctype,
                     const char *body, size_t len, const char *extra)
{
    if (buf_appendf(out,
                    "HTTP/1.1 %d %s\r\n"
                    "Content-Type: %s\r\n"
                    "Content-Length: %zu\r\n"
                    "Cache-Control: no-store\r\n"
                    "Connection: close\r\n"
                    "%s\r\n",
                    status, status_text(status), ctype, len,
                    extra ? extra : "") != 0)
        return -1;
    return buf_append(out, body, len);
}

/* ---- outgoing frames ----------------------------------------------- */

ws_chunk *ws_chunk_new(size_t len)
{
    if (len > UINT32_MAX)
        return NULL;
    ws_chunk *c = malloc(sizeof(*c) + len);
    if (!c)
        return NULL;
    c->refs = 1;
    c->len = (uint32_t)len;
    c->ts_ms = 0;
    return c;
}

size_t ws_frame_header(uint8_t out[10], unsigned opcode, uint64_t len)
{
    out[0] = (uint8_t)(0x80u | (opcode & 0x0fu));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

ws_chunk *ws_chunk_frame(unsigned opcode, const void *payload, size_t len)
{
    uint8_t hdr[10];
    size_t h = ws_frame_header(hdr, opcode, len);
    ws_chunk *c = ws_chunk_new(h + len);
    if (!c)
        return NULL;
    memcpy(c->data, hdr, h);
    if (len)
        memcpy(c->data + h, payload, len);
    return c;
}

ws_chunk *ws_chunk_close(uint16_t code, const char *reason)
{
    uint8_t p[125];
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > 123)
        rl = 123;
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    if (rl)
        memcpy(p + 2, reason, rl);
    return ws_chunk_frame(WS_OP_CLOSE, p, 2 + rl);
}

/* ---- incoming frames ------------------------------------------------ */

/* The feed in progress.  wslay fixes user_data at context creation and the
 * context outlives one feed, so the per-call state lives here (the shard is
 * single-threaded and feeds never nest). */
typedef struct feed_state {
    ws_parser *p;
    const ws_parser_cb *cb;
    void *ud;
    const uint8_t *in;
    size_t len, off;
    uint8_t hdr[16];     /* frame header held until its payload comes */
    size_t nhdr;
} feed_state;

static feed_state *g_feed;
static long g_contexts;
static uint64_t g_partial, g_budget;

void ws_parser_set_budget(uint64_t bytes) { g_budget = bytes; }
uint64_t ws_parser_partial_bytes(void) { return g_partial; }

/* Move this parser's charge to `now` bytes. */
static void charge(ws_parser *p, uint64_t now)
{
    g_partial = g_partial - p->charged + now;
    p->charged = now;
}

long ws_parser_contexts(void) { return g_contexts; }

static ssize_t cb_recv(wslay_event_context_ptr ctx, uint8_t *b, size_t len,
                       int flags, void *user)
{
    feed_state *f = g_feed;
    size_t n = f->len - f->off;
    if (n == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (n > len)
        n = len;
    memcpy(b, f->in + f->off, n);
    f->off += n;
    f->p->fed += n;
    return (ssize_t)n;
}

/* wslay writes a frame as header, then payload (WSLAY_MSG_MORE on the
 * header).  Hand the owner one call per complete frame, so a queue never
 * holds half a frame that could be dropped apart from its other half.  The
 * frames wslay sends here are control frames (payload <= 125 bytes). */
static ssize_t cb_send(wslay_event_context_ptr ctx, const uint8_t *d,
                       size_t len, int flags, void *user)
{
    feed_state *f = g_feed;
    if ((flags & WSLAY_MSG_MORE) && f->nhdr + len <= sizeof(f->hdr)) {
        memcpy(f->hdr + f->nhdr, d, len);
        f->nhdr += len;
        return (ssize_t)len;
    }
    int r;
    if (f->nhdr) {
        uint8_t frame[sizeof(f->hdr) + 125];
        if (f->nhdr + len > sizeof(frame)) {
            r = -1;
        } else {
            memcpy(frame, f->hdr, f->nhdr);
            memcpy(frame + f->nhdr, d, len);
            r = f->cb->send(f->ud, frame, f->nhdr + len);
        }
        f->nhdr = 0;
    } else {
        r = f->cb->send(f->ud, d, len);
    }
    if (r != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void cb_frame_start(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *a,
                           void *user)
{
    ws_parser *p = g_feed->p;
    uint64_t n = a->payload_length;
    /* client frames are always masked (wslay refuses others earlier) */
    uint64_t hdr = 2 + 4 + (n < 126 ? 0 : n <= 0xffff ? 2 : 8);
    p->cur = hdr + n;
    if (a->opcode == WS_OP_TEXT || a->opcode == WS_OP_BINARY ||
        a->opcode == WS_OP_CONT)
        p->frag = !a->fin;
}

static void cb_frame_end(wslay_event_context_ptr ctx, void *user)
{
    ws_parser *p = g_feed->p;
    p->done += p->cur;
    p->cur = 0;
}

static void cb_msg(wslay_event_context_ptr ctx,
                   const struct wslay_event_on_msg_recv_arg *a, void *user)
{
    feed_state *f = g_feed;
    if (f->p->stopped)
        return;
    /* RFC 6455 5.5.1: a close payload is empty or starts with a 2-byte
     * status.  wslay answers a 1-byte one with an empty close (it already
     * answers invalid status codes with 1002 itself); stop before its reply
     * goes out so the owner closes with 1002. */
    if (a->opcode == WS_OP_CLOSE && a->msg_length == 1) {
        f->p->bad_close = 1;
        f->p->stopped = 1;
        wslay_event_shutdown_read(ctx);
        return;
    }
    /* A data message is complete: everything fed up to its end is consumed
     * (wslay hands the message over and drops it after this callback).  A
     * control frame between fragments does not end the message. */
    if (a->opcode == WS_OP_TEXT || a->opcode == WS_OP_BINARY || !f->p->frag)
        f->p->msg_done = f->p->done + f->p->cur;
    /* Flush what wslay queued so far (a pong for this ping, a close reply)
     * before the owner reacts, so output order follows input order. */
    if (wslay_event_want_write(ctx) && wslay_event_send(ctx) != 0) {
        f->p->stopped = 1;
        wslay_event_shutdown_read(ctx);
        return;
    }
    if (a->opcode == WS_OP_TEXT || a->opcode == WS_OP_BINARY)
        f->cb->on_message(f->ud, f->p, a->opcode, a->msg, a->msg_length);
    else
        f->cb->on_control(f->ud, f->p, a->opcode,
                          a->opcode == WS_OP_CLOSE
                              ? (a->status_code ? a->status_code : 1005) : 0);
}

static const struct wslay_event_callbacks g_wscb = {
    .recv_callback = cb_recv,
    .send_callback = cb_send,
    .on_frame_recv_start_callback = cb_frame_start,
    .on_frame_recv_end_callback = cb_frame_end,
    .on_msg_recv_callback = cb_msg,
};

void ws_parser_free(ws_parser *p)
{
    if (p->ctx) {
        wslay_event_context_free(p->ctx);
        p->ctx = NULL;
        g_contexts--;
    }
    charge(p, 0);
    p->fed = p->done = p->cur = p->msg_done = 0;
    p->frag = 0;
}

void ws_parser_stop(ws_parser *p)
{
    p->stopped = 1;
    if (p->ctx)
        wslay_event_shutdown_read(p->ctx);
}

int ws_parser_feed(ws_parser *p, const ws_parser_cb *cb, void *ud,
                   const uint8_t *data, size_t len, uint64_t max_msg)
{
    if (p->stopped)
        return WS_FEED_STOPPED;
    if (len == 0)
        return WS_FEED_OK;
    if (!p->ctx) {
        wslay_event_context_ptr ctx;
        if (wslay_event_context_server_init(&ctx, &g_wscb, NULL) != 0)
            return WS_FEED_NOMEM;
        wslay_event_config_set_max_recv_msg_length(ctx, max_msg);
        p->ctx = ctx;
        g_contexts++;
        p->fed = p->done = p->cur = p->msg_done = 0;
        p->frag = 0;
    }
    uint64_t before = p->charged;
    feed_state f = { .p = p, .cb = cb, .ud = ud, .in = data, .len = len };
    feed_state *saved = g_feed;
    g_feed = &f;
    wslay_event_context_ptr ctx = p->ctx;
    int rc = WS_FEED_OK;
    int r = wslay_event_recv(ctx);
    if (r != 0) {
        rc = r == WSLAY_ERR_NOMEM ? WS_FEED_NOMEM : WS_FEED_ERROR;
    } else if (p->bad_close) {
        rc = WS_FEED_ERROR;
    } else if (p->stopped) {
        rc = WS_FEED_STOPPED;
    } else {
        if (wslay_event_want_write(ctx) && wslay_event_send(ctx) != 0)
            rc = WS_FEED_ERROR;
        else if (wslay_event_get_close_sent(ctx)) {
            p->close_code = wslay_event_get_status_code_sent(ctx);
            rc = WS_FEED_CLOSED;
        }
    }
    g_feed = saved;
    if (rc == WS_FEED_OK && p->fed == p->done && !p->frag) {
        ws_parser_free(p);   /* at a message boundary: keep nothing */
        return rc;
    }
    if (rc == WS_FEED_OK) {
        charge(p, WS_PARSER_CTX_COST + (p->fed - p->msg_done));
        if (g_budget && p->charged > before && g_partial > g_budget)
            rc = WS_FEED_BUDGET;
    }
    if (rc != WS_FEED_OK) {
        p->stopped = 1;
        ws_parser_free(p);
    }
    return rc;
}
