/*
 * Kafka FindCoordinator v0 / LeaveGroup v0 codec (contract in kwire.h).
 */
#include "router/kwire.h"

#include <string.h>

/* ---- writer --------------------------------------------------------------- */

typedef struct wr {
    uint8_t *p;
    size_t n, cap;
    int bad;
} wr;

static void put(wr *w, const void *src, size_t len)
{
    if (w->bad || w->cap - w->n < len) {
        w->bad = 1;
        return;
    }
    memcpy(w->p + w->n, src, len);
    w->n += len;
}

static void put16(wr *w, int16_t v)
{
    uint8_t b[2] = { (uint8_t)((uint16_t)v >> 8), (uint8_t)v };
    put(w, b, 2);
}

static void put32(wr *w, int32_t v)
{
    uint32_t u = (uint32_t)v;
    uint8_t b[4] = { (uint8_t)(u >> 24), (uint8_t)(u >> 16), (uint8_t)(u >> 8), (uint8_t)u };
    put(w, b, 4);
}

/* NULL is written as the null string (length -1). */
static void putstr(wr *w, const char *s)
{
    if (!s) {
        put16(w, -1);
        return;
    }
    size_t len = strlen(s);
    if (len > INT16_MAX) {
        w->bad = 1;
        return;
    }
    put16(w, (int16_t)len);
    put(w, s, len);
}

/* Size placeholder + request header. */
static void begin(wr *w, uint8_t *out, size_t cap, int16_t api, int32_t corr,
                  const char *client_id)
{
    *w = (wr){ out, 0, cap, 0 };
    put32(w, 0);
    put16(w, api);
    put16(w, 0);            /* api_version */
    put32(w, corr);
    putstr(w, client_id);
}

static int end(wr *w)
{
    if (w->bad || w->n > INT32_MAX)
        return KWIRE_ESPACE;
    uint32_t size = (uint32_t)(w->n - 4);
    w->p[0] = (uint8_t)(size >> 24);
    w->p[1] = (uint8_t)(size >> 16);
    w->p[2] = (uint8_t)(size >> 8);
    w->p[3] = (uint8_t)size;
    return (int)w->n;
}

int kwire_find_coordinator_req(uint8_t *out, size_t cap, int32_t corr,
                               const char *client_id, const char *group)
{
    wr w;
    begin(&w, out, cap, KWIRE_API_FIND_COORDINATOR, corr, client_id);
    putstr(&w, group ? group : "");
    return end(&w);
}

int kwire_leave_group_req(uint8_t *out, size_t cap, int32_t corr, const char *client_id,
                          const char *group, const char *member_id)
{
    wr w;
    begin(&w, out, cap, KWIRE_API_LEAVE_GROUP, corr, client_id);
    putstr(&w, group ? group : "");
    putstr(&w, member_id ? member_id : "");
    return end(&w);
}

/* ---- reader --------------------------------------------------------------- */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

long kwire_frame_len(const uint8_t *buf, size_t len, size_t max)
{
    if (len < 4)
        return 0;
    int32_t size = (int32_t)be32(buf);
    if (size < 0 || (size_t)size > max)
        return KWIRE_EFRAME;
    return len - 4 >= (size_t)size ? (long)size + 4 : 0;
}

typedef struct rd {
    const uint8_t *p;
    size_t n, off;
    int bad;
} rd;

static const uint8_t *take(rd *r, size_t len)
{
    if (r->bad || r->n - r->off < len) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += len;
    return p;
}

static int16_t get16(rd *r)
{
    const uint8_t *p = take(r, 2);
    return p ? (int16_t)(uint16_t)((uint16_t)p[0] << 8 | p[1]) : 0;
}

static int32_t get32(rd *r)
{
    const uint8_t *p = take(r, 4);
    return p ? (int32_t)be32(p) : 0;
}

/* Opens a frame: checks the size prefix against len and the correlation id. */
static int open_frame(rd *r, const uint8_t *frame, size_t len, int32_t corr)
{
    *r = (rd){ frame, len, 0, 0 };
    int32_t size = get32(r);
    if (r->bad || size < 0 || (size_t)size > len - 4)
        return KWIRE_ESHORT;
    r->n = (size_t)size + 4;
    int32_t got = get32(r);
    if (r->bad)
        return KWIRE_ESHORT;
    return got == corr ? KWIRE_OK : KWIRE_ECORR;
}

int kwire_find_coordinator_resp(const uint8_t *frame, size_t len, int32_t corr,
                                kwire_coordinator *out)
{
    memset(out, 0, sizeof *out);
    rd r;
    int rc = open_frame(&r, frame, len, corr);
    if (rc != KWIRE_OK)
        return rc;
    out->error = get16(&r);
    out->node_id = get32(&r);
    int16_t hlen = get16(&r);
    if (r.bad)
        return KWIRE_ESHORT;
    if (hlen >= (int16_t)sizeof out->host)
        return KWIRE_ESPACE;
    if (hlen > 0) {
        const uint8_t *h = take(&r, (size_t)hlen);
        if (!h)
            return KWIRE_ESHORT;
        memcpy(out->host, h, (size_t)hlen);
    }
    out->host[hlen > 0 ? hlen : 0] = '\0';
    out->port = get32(&r);
    return r.bad ? KWIRE_ESHORT : KWIRE_OK;
}

int kwire_leave_group_resp(const uint8_t *frame, size_t len, int32_t corr, int16_t *error)
{
    rd r;
    int rc = open_frame(&r, frame, len, corr);
    if (rc != KWIRE_OK)
        return rc;
    *error = get16(&r);
    return r.bad ? KWIRE_ESHORT : KWIRE_OK;
}
