#include "shard/ws.h"
#include "common/wskey.h"

#include <string.h>
#include <strings.h>
#include <stdio.h>
#include <openssl/evp.h>
#include <http_parser.h>
#include <wslay/wslay.h>
#include <zlib.h>

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
    return ws_handshake_response_ext(out, key, key_len, NULL);
}

int ws_handshake_response_ext(buf *out, const char *key, size_t key_len,
                              const char *ext)
{
    char acc[WSKEY_ACCEPT_LEN + 1];
    if (wskey_accept(key, key_len, acc) != 0)
        return -1;
    return buf_appendf(out,
                       "HTTP/1.1 101 Switching Protocols\r\n"
                       "Upgrade: websocket\r\n"
                       "Connection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: %s\r\n"
                       "%s%s%s\r\n", acc,
                       ext ? "Sec-WebSocket-Extensions: " : "",
                       ext ? ext : "", ext ? "\r\n" : "");
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
    c->z = NULL;
    c->flags = 0;
    c->hlen = 0;
    return c;
}

size_t ws_frame_header_rsv1(uint8_t out[10], unsigned opcode, uint64_t len)
{
    size_t h = ws_frame_header(out, opcode, len);
    out[0] |= 0x40u;
    return h;
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
    if (opcode == WS_OP_TEXT || opcode == WS_OP_BINARY) {
        c->flags |= WS_CHUNK_MSG;
        c->hlen = (uint8_t)h;
    }
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

/* ---- permessage-deflate: negotiation ---------------------------------- */

typedef struct pmd_cursor {
    const char *p, *e;
} pmd_cursor;

static void skip_ows(pmd_cursor *c)
{
    while (c->p < c->e && (*c->p == ' ' || *c->p == '\t'))
        c->p++;
}

static int tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* A token; returns its length (0: none). */
static size_t take_token(pmd_cursor *c, const char **t)
{
    *t = c->p;
    while (c->p < c->e && tchar((unsigned char)*c->p))
        c->p++;
    return (size_t)(c->p - *t);
}

/* A token or a quoted-string (RFC 7230 3.2.6), unquoted into v (at most
 * cap - 1 bytes, NUL-terminated).  -1 on bad syntax or a value too long. */
static int take_value(pmd_cursor *c, char *v, size_t cap)
{
    size_t n = 0;
    if (c->p < c->e && *c->p == '"') {
        c->p++;
        for (;;) {
            if (c->p >= c->e)
                return -1;
            char ch = *c->p++;
            if (ch == '"')
                break;
            if (ch == '\\') {
                if (c->p >= c->e)
                    return -1;
                ch = *c->p++;
            }
            if (n + 1 >= cap)
                return -1;
            v[n++] = ch;
        }
    } else {
        const char *t;
        size_t l = take_token(c, &t);
        if (l == 0 || l >= cap)
            return -1;
        memcpy(v, t, l);
        n = l;
    }
    v[n] = 0;
    return 0;
}

static int name_is(const char *t, size_t l, const char *name)
{
    return strlen(name) == l && strncasecmp(t, name, l) == 0;
}

/* RFC 7692 7.1.2: 1*DIGIT 8..15 without leading zeros. */
static int window_bits(const char *v)
{
    if (!v[0] || v[0] == '0' || strlen(v) > 2)
        return -1;
    for (const char *q = v; *q; q++)
        if (*q < '0' || *q > '9')
            return -1;
    int b = atoi(v);
    return b >= 8 && b <= 15 ? b : -1;
}

/* Skip to just after the next ',' outside a quoted string (or the end). */
static void skip_element(pmd_cursor *c)
{
    int q = 0;
    while (c->p < c->e) {
        char ch = *c->p++;
        if (q && ch == '\\' && c->p < c->e)
            c->p++;
        else if (ch == '"')
            q = !q;
        else if (!q && ch == ',')
            return;
    }
}

/* Parse one list element at c.  1 if it is an acceptable permessage-deflate
 * offer (*smwb: it had server_max_window_bits), else 0.  Leaves c after
 * the element's comma. */
static int pmd_offer(pmd_cursor *c, int *smwb)
{
    enum { SNCT = 1, CNCT = 2, SMWB = 4, CMWB = 8 };
    unsigned seen = 0;
    const char *t;
    skip_ows(c);
    size_t l = take_token(c, &t);
    if (!name_is(t, l, "permessage-deflate"))
        goto bad;
    for (;;) {
        skip_ows(c);
        if (c->p >= c->e || *c->p == ',') {
            if (c->p < c->e)
                c->p++;
            *smwb = (seen & SMWB) != 0;
            return 1;
        }
        if (*c->p != ';')
            goto bad;
        c->p++;
        skip_ows(c);
        l = take_token(c, &t);
        if (l == 0)
            goto bad;
        skip_ows(c);
        char v[16];
        int has_v = 0;
        if (c->p < c->e && *c->p == '=') {
            c->p++;
            skip_ows(c);
            if (take_value(c, v, sizeof(v)) != 0)
                goto bad;
            has_v = 1;
        }
        unsigned bit;
        if (name_is(t, l, "server_no_context_takeover")) {
            bit = SNCT;
            if (has_v)
                goto bad;
        } else if (name_is(t, l, "client_no_context_takeover")) {
            bit = CNCT;
            if (has_v)
                goto bad;
        } else if (name_is(t, l, "server_max_window_bits")) {
            bit = SMWB;
            /* we compress with a 2^15 window: a smaller limit is declined */
            if (!has_v || window_bits(v) != 15)
                goto bad;
        } else if (name_is(t, l, "client_max_window_bits")) {
            bit = CMWB;
            if (has_v && window_bits(v) < 0)
                goto bad;
        } else {
            goto bad;   /* unknown parameter: decline this offer */
        }
        if (seen & bit)
            goto bad;   /* a parameter given twice */
        seen |= bit;
    }
bad:
    skip_element(c);
    return 0;
}

int ws_pmd_negotiate(const httpreq_str *vals, size_t n,
                     char resp[WS_PMD_RESPONSE_MAX])
{
    for (size_t i = 0; i < n; i++) {
        if (!vals[i].p)
            continue;
        pmd_cursor c = { vals[i].p, vals[i].p + vals[i].len };
        while (c.p < c.e) {
            int smwb = 0;
            if (pmd_offer(&c, &smwb)) {
                snprintf(resp, WS_PMD_RESPONSE_MAX,
                         "permessage-deflate; server_no_context_takeover; "
                         "client_no_context_takeover%s",
                         smwb ? "; server_max_window_bits=15" : "");
                return 1;
            }
        }
    }
    resp[0] = 0;
    return 0;
}

/* ---- permessage-deflate: compression --------------------------------- */

struct ws_deflate {
    z_stream zs;
    size_t min_size;
    uint8_t *out;
    size_t out_cap;
};

ws_deflate *ws_deflate_new(int level, size_t min_size)
{
    if (level < 1 || level > 9)
        return NULL;
    ws_deflate *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    /* raw deflate (negative window bits), 2^15 window, default memLevel */
    if (deflateInit2(&d->zs, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(d);
        return NULL;
    }
    d->min_size = min_size;
    return d;
}

void ws_deflate_free(ws_deflate *d)
{
    if (!d)
        return;
    deflateEnd(&d->zs);
    free(d->out);
    free(d);
}

/* Compress payload into d->out; returns the payload length without the
 * 00 00 ff ff tail, or 0 on failure. */
static size_t deflate_payload(ws_deflate *d, const uint8_t *in, size_t len)
{
    size_t need = deflateBound(&d->zs, len) + 16;   /* + sync flush marker */
    if (need > d->out_cap) {
        uint8_t *o = realloc(d->out, need);
        if (!o)
            return 0;
        d->out = o;
        d->out_cap = need;
    }
    if (deflateReset(&d->zs) != Z_OK)
        return 0;
    d->zs.next_in = (Bytef *)in;
    d->zs.avail_in = (uInt)len;
    d->zs.next_out = d->out;
    d->zs.avail_out = (uInt)d->out_cap;
    int r = deflate(&d->zs, Z_SYNC_FLUSH);
    if ((r != Z_OK && r != Z_BUF_ERROR) || d->zs.avail_in != 0 ||
        d->zs.avail_out == 0)
        return 0;   /* all output must be out: room was left over */
    size_t n = d->out_cap - d->zs.avail_out;
    if (n < 4 || memcmp(d->out + n - 4, "\x00\x00\xff\xff", 4) != 0)
        return 0;
    return n - 4;
}

ws_chunk *ws_deflate_chunk(ws_deflate *d, ws_chunk *ch, ws_deflate_stats *st)
{
    if (!d || !(ch->flags & WS_CHUNK_MSG))
        return ch;
    if (ch->flags & WS_CHUNK_TRIED)
        return ch->z ? ch->z : ch;
    ch->flags |= WS_CHUNK_TRIED;
    size_t plen = ch->len - ch->hlen;
    if (plen < d->min_size) {
        st->skipped_small++;
        return ch;
    }
    size_t zl = deflate_payload(d, ch->data + ch->hlen, plen);
    if (zl == 0)
        return ch;
    st->compressions++;
    st->in_bytes += plen;
    st->out_bytes += zl;
    uint8_t hdr[10];
    size_t h = ws_frame_header_rsv1(hdr, ch->data[0] & 0x0fu, zl);
    if (h + zl >= ch->len) {
        st->incompressible++;
        return ch;
    }
    ws_chunk *z = ws_chunk_new(h + zl);
    if (!z)
        return ch;
    memcpy(z->data, hdr, h);
    memcpy(z->data + h, d->out, zl);
    z->ts_ms = ch->ts_ms;
    z->hlen = (uint8_t)h;
    z->flags = WS_CHUNK_TRIED;   /* not WS_CHUNK_MSG: never compressed again */
    ch->z = z;
    return z;
}

/* ---- permessage-deflate: decompression --------------------------------- */

/* RFC 3629 UTF-8 (no overlongs, surrogates or code points past U+10FFFF):
 * wslay checks text frames itself, but not compressed ones (the check has
 * to wait for the inflated text). */
static int utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2; cp = c & 0x1fu; min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3; cp = c & 0x0fu; min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4; cp = c & 0x07u; min = 0x10000;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

/* ---- the parser set ------------------------------------------------- */

/* The feed in progress (p->feed during ws_parser_feed): wslay fixes
 * user_data (the parser) at context creation and the context outlives one
 * feed, so the per-call state hangs off the parser while the call runs. */
typedef struct ws_feed {
    const ws_parser_cb *cb;
    void *ud;
    const uint8_t *in;
    size_t len, off;
    uint8_t hdr[16];     /* frame header held until its payload comes */
    size_t nhdr;
    uint64_t max_msg;
} ws_feed;

struct ws_parser_set {
    uint64_t budget;           /* WS_PARTIAL_BUDGET; 0: no limit */
    uint64_t partial;          /* sum of the parsers' charges */
    long contexts;             /* wslay contexts alive */
    /* the inflate state shared by the set's parsers (reset per message) */
    z_stream inf;
    int inf_ready;
    uint8_t *inf_buf;
    size_t inf_cap;
    uint64_t inf_msgs, inf_refused;
};

ws_parser_set *ws_parser_set_new(uint64_t budget)
{
    ws_parser_set *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->budget = budget;
    return s;
}

void ws_parser_set_free(ws_parser_set *s)
{
    if (!s)
        return;
    if (s->inf_ready)
        inflateEnd(&s->inf);
    free(s->inf_buf);
    free(s);
}

uint64_t ws_parser_partial_bytes(const ws_parser_set *s) { return s->partial; }
long ws_parser_contexts(const ws_parser_set *s) { return s->contexts; }
uint64_t ws_inflate_messages(const ws_parser_set *s) { return s->inf_msgs; }
uint64_t ws_inflate_refused(const ws_parser_set *s) { return s->inf_refused; }

int ws_inflate_msg(ws_parser_set *s, const uint8_t *in, size_t len,
                   size_t max_len, const uint8_t **out, size_t *out_len)
{
    static const uint8_t tail[4] = { 0x00, 0x00, 0xff, 0xff };
    if (!s->inf_ready) {
        memset(&s->inf, 0, sizeof(s->inf));
        if (inflateInit2(&s->inf, -15) != Z_OK)
            return WS_INFLATE_NOMEM;
        s->inf_ready = 1;
    } else if (inflateReset(&s->inf) != Z_OK) {
        return WS_INFLATE_NOMEM;
    }
    size_t n = 0;
    int rc = 0, ended = 0;
    for (int part = 0; part < 2 && !ended && rc == 0; part++) {
        s->inf.next_in = (Bytef *)(part ? tail : in);
        s->inf.avail_in = (uInt)(part ? sizeof(tail) : len);
        while (s->inf.avail_in > 0 || part == 1) {
            /* the buffer grows in steps up to max_len + 1: one byte more
             * than allowed tells "too big" without inflating further */
            if (n == s->inf_cap) {
                if (s->inf_cap > max_len) {
                    rc = WS_INFLATE_TOOBIG;
                    break;
                }
                size_t cap = s->inf_cap ? s->inf_cap * 2 : 4096;
                if (cap > max_len + 1)
                    cap = max_len + 1;
                uint8_t *b = realloc(s->inf_buf, cap);
                if (!b) {
                    rc = WS_INFLATE_NOMEM;
                    break;
                }
                s->inf_buf = b;
                s->inf_cap = cap;
            }
            s->inf.next_out = s->inf_buf + n;
            s->inf.avail_out = (uInt)(s->inf_cap - n);
            int r = inflate(&s->inf, Z_SYNC_FLUSH);
            n = s->inf_cap - s->inf.avail_out;
            if (n > max_len) {
                rc = WS_INFLATE_TOOBIG;
                break;
            }
            if (r == Z_STREAM_END) {
                ended = 1;   /* a final block: anything after it is ignored */
                break;
            }
            if (r == Z_BUF_ERROR && s->inf.avail_out > 0)
                break;       /* all input used */
            if (r != Z_OK && r != Z_BUF_ERROR) {
                rc = WS_INFLATE_BAD;
                break;
            }
            if (s->inf.avail_in == 0 && s->inf.avail_out > 0)
                break;
        }
    }
    if (rc != 0) {
        s->inf_refused++;
        return rc;
    }
    s->inf_msgs++;
    *out = s->inf_buf;
    *out_len = n;
    return 0;
}

/* ---- incoming frames ------------------------------------------------ */

void ws_parser_init(ws_parser *p, ws_parser_set *set)
{
    memset(p, 0, sizeof(*p));
    p->set = set;
}

/* Move this parser's charge to `now` bytes. */
static void charge(ws_parser *p, uint64_t now)
{
    p->set->partial = p->set->partial - p->charged + now;
    p->charged = now;
}

static ssize_t cb_recv(wslay_event_context_ptr ctx, uint8_t *b, size_t len,
                       int flags, void *user)
{
    ws_parser *p = user;
    ws_feed *f = p->feed;
    size_t n = f->len - f->off;
    if (n == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (n > len)
        n = len;
    memcpy(b, f->in + f->off, n);
    f->off += n;
    p->fed += n;
    return (ssize_t)n;
}

/* wslay writes a frame as header, then payload (WSLAY_MSG_MORE on the
 * header).  Hand the owner one call per complete frame, so a queue never
 * holds half a frame that could be dropped apart from its other half.  The
 * frames wslay sends here are control frames (payload <= 125 bytes). */
static ssize_t cb_send(wslay_event_context_ptr ctx, const uint8_t *d,
                       size_t len, int flags, void *user)
{
    ws_feed *f = ((ws_parser *)user)->feed;
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
    ws_parser *p = user;
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
    ws_parser *p = user;
    p->done += p->cur;
    p->cur = 0;
}

static void cb_msg(wslay_event_context_ptr ctx,
                   const struct wslay_event_on_msg_recv_arg *a, void *user)
{
    ws_parser *p = user;
    ws_feed *f = p->feed;
    if (p->stopped)
        return;
    /* RFC 6455 5.5.1: a close payload is empty or starts with a 2-byte
     * status.  wslay answers a 1-byte one with an empty close (it already
     * answers invalid status codes with 1002 itself); stop before its reply
     * goes out so the owner closes with 1002. */
    if (a->opcode == WS_OP_CLOSE && a->msg_length == 1) {
        p->bad_close = 1;
        p->stopped = 1;
        wslay_event_shutdown_read(ctx);
        return;
    }
    /* A data message is complete: everything fed up to its end is consumed
     * (wslay hands the message over and drops it after this callback).  A
     * control frame between fragments does not end the message. */
    if (a->opcode == WS_OP_TEXT || a->opcode == WS_OP_BINARY || !p->frag)
        p->msg_done = p->done + p->cur;
    /* Flush what wslay queued so far (a pong for this ping, a close reply)
     * before the owner reacts, so output order follows input order. */
    if (wslay_event_want_write(ctx) && wslay_event_send(ctx) != 0) {
        p->stopped = 1;
        wslay_event_shutdown_read(ctx);
        return;
    }
    if ((a->opcode == WS_OP_TEXT || a->opcode == WS_OP_BINARY) &&
        (a->rsv & WSLAY_RSV1_BIT)) {
        /* permessage-deflate (wslay allows RSV1 only when negotiated, and
         * never on control or continuation frames) */
        const uint8_t *m;
        size_t ml;
        int r = ws_inflate_msg(p->set, a->msg, a->msg_length,
                               (size_t)f->max_msg, &m, &ml);
        if (r == 0 && a->opcode == WS_OP_TEXT && !utf8_valid(m, ml))
            r = WS_INFLATE_BAD;   /* 1007, as wslay for a plain text frame */
        if (r != 0) {
            /* 1009 as for any message over the limit (a decompression bomb
             * stops at max_msg bytes), 1007 for corrupt data.  Reading
             * stops; the close goes out through the owner's send callback
             * and the feed returns WS_FEED_CLOSED. */
            wslay_event_shutdown_read(ctx);
            wslay_event_queue_close(ctx, r == WS_INFLATE_TOOBIG ? 1009
                                         : r == WS_INFLATE_BAD ? 1007 : 1011,
                                    NULL, 0);
            return;
        }
        f->cb->on_message(f->ud, p, a->opcode, m, ml);
    } else if (a->opcode == WS_OP_TEXT || a->opcode == WS_OP_BINARY)
        f->cb->on_message(f->ud, p, a->opcode, a->msg, a->msg_length);
    else
        f->cb->on_control(f->ud, p, a->opcode,
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
        p->set->contexts--;
    }
    if (p->set)
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
    if (!p->set || p->feed)
        return WS_FEED_ERROR;   /* no set, or a nested feed: the owner's bug */
    if (len == 0)
        return WS_FEED_OK;
    ws_parser_set *set = p->set;
    if (!p->ctx) {
        wslay_event_context_ptr ctx;
        if (wslay_event_context_server_init(&ctx, &g_wscb, p) != 0)
            return WS_FEED_NOMEM;
        wslay_event_config_set_max_recv_msg_length(ctx, max_msg);
        if (p->deflate)
            wslay_event_config_set_allowed_rsv_bits(ctx, WSLAY_RSV1_BIT);
        p->ctx = ctx;
        set->contexts++;
        p->fed = p->done = p->cur = p->msg_done = 0;
        p->frag = 0;
    }
    uint64_t before = p->charged;
    ws_feed f = { .cb = cb, .ud = ud, .in = data, .len = len,
                  .max_msg = max_msg };
    p->feed = &f;
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
    p->feed = NULL;
    if (rc == WS_FEED_OK && p->fed == p->done && !p->frag) {
        ws_parser_free(p);   /* at a message boundary: keep nothing */
        return rc;
    }
    if (rc == WS_FEED_OK) {
        charge(p, WS_PARSER_CTX_COST + (p->fed - p->msg_done));
        if (set->budget && p->charged > before && set->partial > set->budget)
            rc = WS_FEED_BUDGET;
    }
    if (rc != WS_FEED_OK) {
        p->stopped = 1;
        ws_parser_free(p);
    }
    return rc;
}
