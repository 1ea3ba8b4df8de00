#include "shard/httpreq.h"

#include <http_parser.h>
#include <string.h>
#include <strings.h>

enum hdr { H_NONE, H_HOST, H_UPGRADE, H_CONNECTION, H_KEY, H_VERSION, H_ORIGIN, H_EXT, H_OTHER };

typedef struct pstate {
    httpreq *req;
    enum hdr cur;
    int in_value;
    const char *fstart;
    size_t flen;
    httpreq_str *val;
    int done;
} pstate;

static enum hdr classify(const char *f, size_t n)
{
    static const struct { const char *name; enum hdr h; } names[] = {
        { "host", H_HOST },
        { "upgrade", H_UPGRADE },
        { "connection", H_CONNECTION },
        { "sec-websocket-key", H_KEY },
        { "sec-websocket-version", H_VERSION },
        { "origin", H_ORIGIN },
        { "sec-websocket-extensions", H_EXT },
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i].name) == n && strncasecmp(names[i].name, f, n) == 0)
            return names[i].h;
    return H_OTHER;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    pstate *s = p->data;
    if (!s->req->url.p)
        s->req->url.p = at;
    s->req->url.len += n;   /* pieces are contiguous: the head is one buffer */
    return 0;
}

static int on_field(http_parser *p, const char *at, size_t n)
{
    pstate *s = p->data;
    if (s->in_value || !s->fstart) {
        s->fstart = at;
        s->flen = 0;
        s->in_value = 0;
    }
    s->flen += n;
    return 0;
}

static int on_value(http_parser *p, const char *at, size_t n)
{
    pstate *s = p->data;
    httpreq *r = s->req;
    if (!s->in_value) {
        s->in_value = 1;
        s->cur = classify(s->fstart, s->flen);
        s->val = NULL;
        switch (s->cur) {
        case H_HOST: s->val = &r->host; break;
        case H_UPGRADE: s->val = &r->upgrade; break;
        case H_CONNECTION: s->val = &r->connection; break;
        case H_KEY: s->val = &r->ws_key; break;
        case H_VERSION: s->val = &r->ws_version; break;
        case H_ORIGIN: s->val = &r->origin; break;
        case H_EXT:    /* may repeat: each line is a list of offers */
            if (r->n_ws_ext < HTTPREQ_MAX_EXT)
                s->val = &r->ws_ext[r->n_ws_ext++];
            break;
        default: break;
        }
        if (s->val && s->val->p) {      /* repeated header: keep the first */
            if (s->cur == H_KEY)
                r->dup_ws_key = 1;
            s->val = NULL;
        }
        if (s->val) {
            s->val->p = at;
            s->val->len = 0;
        }
    }
    if (s->val)
        s->val->len += n;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    pstate *s = p->data;
    s->done = 1;
    if ((p->flags & F_CHUNKED) ||
        (p->content_length != (uint64_t)-1 && p->content_length > 0))
        s->req->has_body = 1;
    return 1;   /* skip any body: we only look at the head */
}

static const char *find_head_end(const char *d, size_t len)
{
    if (len < 4)
        return NULL;
    const char *end = d + len - 3;
    for (const char *q = d; q < end;) {
        q = memchr(q, '\r', (size_t)(end - q));
        if (!q)
            return NULL;
        if (q[1] == '\n' && q[2] == '\r' && q[3] == '\n')
            return q + 4;
        q++;
    }
    return NULL;
}

int httpreq_parse(const char *data, size_t len, size_t max_head,
                  httpreq *req)
{
    memset(req, 0, sizeof(*req));
    const char *end = find_head_end(data, len < max_head ? len : max_head);
    if (!end)
        return len >= max_head ? HTTPREQ_E_TOOBIG : HTTPREQ_INCOMPLETE;
    size_t head = (size_t)(end - data);

    http_parser_settings st;
    memset(&st, 0, sizeof(st));
    st.on_url = on_url;
    st.on_header_field = on_field;
    st.on_header_value = on_value;
    st.on_headers_complete = on_headers_complete;
    http_parser p;
    pstate s;
    memset(&s, 0, sizeof(s));
    s.req = req;
    http_parser_init(&p, HTTP_REQUEST);
    p.data = &s;
    http_parser_execute(&p, &st, data, head);
    if (!s.done || (HTTP_PARSER_ERRNO(&p) != HPE_OK &&
                    HTTP_PARSER_ERRNO(&p) != HPE_CB_headers_complete))
        return HTTPREQ_E_BAD;
    req->method = (int)p.method;
    req->http_major = p.http_major;
    req->http_minor = p.http_minor;
    req->head_len = head;
    req->path = req->url;
    for (size_t i = 0; i < req->url.len; i++) {
        if (req->url.p[i] == '?' || req->url.p[i] == '#') {
            req->path.len = i;
            break;
        }
    }
    return (int)head;
}

int httpreq_has_token(httpreq_str v, const char *token)
{
    size_t tl = strlen(token);
    size_t i = 0;
    while (i < v.len) {
        while (i < v.len && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ','))
            i++;
        size_t start = i;
        while (i < v.len && v.p[i] != ',')
            i++;
        size_t e = i;
        while (e > start && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t'))
            e--;
        if (e - start == tl && strncasecmp(v.p + start, token, tl) == 0)
            return 1;
    }
    return 0;
}
