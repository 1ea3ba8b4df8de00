/*
 * Kafka ApiVersions v0 / FindCoordinator v0-v3 / LeaveGroup v0-v4 codec
 * (contract in kwire.h).
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

static void put8(wr *w, int8_t v)
{
    uint8_t b = (uint8_t)v;
    put(w, &b, 1);
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

/* Unsigned varint: 7 bits a byte, low first, high bit = more follows. */
static void putuvar(wr *w, uint32_t v)
{
    while (v >= 0x80) {
        uint8_t b = (uint8_t)(v | 0x80);
        put(w, &b, 1);
        v >>= 7;
    }
    uint8_t b = (uint8_t)v;
    put(w, &b, 1);
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

/* Compact string: varint length + 1; NULL is 0. */
static void putcstr(wr *w, const char *s)
{
    if (!s) {
        putuvar(w, 0);
        return;
    }
    size_t len = strlen(s);
    if (len > INT16_MAX) {        /* Kafka's own bound on strings */
        w->bad = 1;
        return;
    }
    putuvar(w, (uint32_t)len + 1);
    put(w, s, len);
}

/* Either encoding of a string, by flexibility. */
static void putstrv(wr *w, int flexible, const char *s)
{
    if (flexible)
        putcstr(w, s);
    else
        putstr(w, s);
}

/* Empty tagged fields. */
static void puttags(wr *w)
{
    putuvar(w, 0);
}

/* Size placeholder + request header (v1, or v2 with tagged fields when
 * flexible). */
static void begin(wr *w, uint8_t *out, size_t cap, int16_t api, int16_t version,
                  int32_t corr, const char *client_id, int flexible)
{
    *w = (wr){ out, 0, cap, 0 };
    put32(w, 0);
    put16(w, api);
    put16(w, version);
    put32(w, corr);
    putstr(w, client_id);       /* a plain nullable string in header v2 too */
    if (flexible)
        puttags(w);
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

int kwire_api_versions_req(uint8_t *out, size_t cap, int32_t corr, const char *client_id)
{
    wr w;
    begin(&w, out, cap, KWIRE_API_API_VERSIONS, 0, corr, client_id, 0);
    return end(&w);
}

int kwire_find_coordinator_req(uint8_t *out, size_t cap, int32_t corr, int version,
                               const char *client_id, const char *group)
{
    if (version < KWIRE_FIND_COORDINATOR_MIN || version > KWIRE_FIND_COORDINATOR_MAX)
        return KWIRE_EVERSION;
    int flex = version >= 3;
    wr w;
    begin(&w, out, cap, KWIRE_API_FIND_COORDINATOR, (int16_t)version, corr, client_id, flex);
    putstrv(&w, flex, group ? group : "");
    if (version >= 1)
        put8(&w, 0);            /* key type: group */
    if (flex)
        puttags(&w);
    return end(&w);
}

int kwire_leave_group_req(uint8_t *out, size_t cap, int32_t corr, int version,
                          const char *client_id, const char *group, const char *member_id,
                          const char *group_instance_id)
{
    if (version < KWIRE_LEAVE_GROUP_MIN || version > KWIRE_LEAVE_GROUP_MAX)
        return KWIRE_EVERSION;
    int flex = version >= 4;
    wr w;
    begin(&w, out, cap, KWIRE_API_LEAVE_GROUP, (int16_t)version, corr, client_id, flex);
    putstrv(&w, flex, group ? group : "");
    if (version <= 2) {
        putstr(&w, member_id ? member_id : "");
        return end(&w);
    }
    if (flex)
        putuvar(&w, 1 + 1);     /* compact array of one */
    else
        put32(&w, 1);
    putstrv(&w, flex, member_id ? member_id : "");
    putstrv(&w, flex, group_instance_id);
    if (flex) {
        puttags(&w);            /* the member's */
        puttags(&w);            /* the request's */
    }
    return end(&w);
}

int kwire_pick_version(int our_min, int our_max, int broker_min, int broker_max)
{
    if (broker_min < 0 || broker_max < 0)
        return -1;
    int hi = our_max < broker_max ? our_max : broker_max;
    int lo = our_min > broker_min ? our_min : broker_min;
    return hi >= lo ? hi : -1;
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

/* Unsigned varint of at most 5 bytes (32 bits). */
static uint32_t getuvar(rd *r)
{
    uint32_t v = 0;
    for (int shift = 0; shift < 35; shift += 7) {
        const uint8_t *p = take(r, 1);
        if (!p)
            return 0;
        v |= (uint32_t)(*p & 0x7f) << shift;
        if (!(*p & 0x80))
            return v;
    }
    r->bad = 1;
    return 0;
}

/* Skip tagged fields. */
static void skiptags(rd *r)
{
    uint32_t n = getuvar(r);
    for (uint32_t i = 0; i < n && !r->bad; i++) {
        (void)getuvar(r);                  /* tag */
        uint32_t size = getuvar(r);
        (void)take(r, size);
    }
}

/*
 * A string of either encoding: *len gets its length, -1 for null; the
 * bytes are returned (NULL for null or on a short read, r->bad set then).
 */
static const uint8_t *getstrv(rd *r, int flexible, long *len)
{
    long l;
    if (flexible) {
        uint32_t u = getuvar(r);
        l = (long)u - 1;
    } else {
        l = get16(r);
    }
    *len = r->bad ? -1 : l < 0 ? -1 : l;
    if (r->bad || l < 0)
        return NULL;
    return take(r, (size_t)l);
}

/* Opens a frame: checks the size prefix against len and the correlation
 * id; a flexible response header carries tagged fields after it. */
static int open_frame(rd *r, const uint8_t *frame, size_t len, int32_t corr, int flexible)
{
    *r = (rd){ frame, len, 0, 0 };
    int32_t size = get32(r);
    if (r->bad || size < 0 || (size_t)size > len - 4)
        return KWIRE_ESHORT;
    r->n = (size_t)size + 4;
    int32_t got = get32(r);
    if (r->bad)
        return KWIRE_ESHORT;
    if (got != corr)
        return KWIRE_ECORR;
    if (flexible)
        skiptags(r);
    return r->bad ? KWIRE_ESHORT : KWIRE_OK;
}

int kwire_api_versions_resp(const uint8_t *frame, size_t len, int32_t corr,
                            kwire_versions *out)
{
    *out = (kwire_versions){ 0, -1, -1, -1, -1 };
    rd r;
    int rc = open_frame(&r, frame, len, corr, 0);   /* header v0 always */
    if (rc != KWIRE_OK)
        return rc;
    out->error = get16(&r);
    int32_t n = get32(&r);
    if (r.bad || n < 0 || (size_t)n > (r.n - r.off) / 6)
        return KWIRE_ESHORT;
    for (int32_t i = 0; i < n; i++) {
        int16_t key = get16(&r), min = get16(&r), max = get16(&r);
        if (key == KWIRE_API_FIND_COORDINATOR) {
            out->find_min = min;
            out->find_max = max;
        } else if (key == KWIRE_API_LEAVE_GROUP) {
            out->leave_min = min;
            out->leave_max = max;
        }
    }
    /* v0 has nothing after the list */
    return r.bad ? KWIRE_ESHORT : KWIRE_OK;
}

int kwire_find_coordinator_resp(const uint8_t *frame, size_t len, int32_t corr, int version,
                                kwire_coordinator *out)
{
    memset(out, 0, sizeof *out);
    if (version < KWIRE_FIND_COORDINATOR_MIN || version > KWIRE_FIND_COORDINATOR_MAX)
        return KWIRE_EVERSION;
    int flex = version >= 3;
    rd r;
    int rc = open_frame(&r, frame, len, corr, flex);
    if (rc != KWIRE_OK)
        return rc;
    if (version >= 1)
        (void)get32(&r);                   /* throttle_time_ms */
    out->error = get16(&r);
    long l;
    if (version >= 1)
        (void)getstrv(&r, flex, &l);       /* error_message */
    out->node_id = get32(&r);
    const uint8_t *h = getstrv(&r, flex, &l);
    if (r.bad)
        return KWIRE_ESHORT;
    if (l >= (long)sizeof out->host)
        return KWIRE_ESPACE;
    if (l > 0)
        memcpy(out->host, h, (size_t)l);
    out->host[l > 0 ? l : 0] = '\0';
    out->port = get32(&r);
    if (flex)
        skiptags(&r);
    return r.bad ? KWIRE_ESHORT : KWIRE_OK;
}

int kwire_leave_group_resp(const uint8_t *frame, size_t len, int32_t corr, int version,
                           int16_t *error)
{
    if (version < KWIRE_LEAVE_GROUP_MIN || version > KWIRE_LEAVE_GROUP_MAX)
        return KWIRE_EVERSION;
    int flex = version >= 4;
    rd r;
    int rc = open_frame(&r, frame, len, corr, flex);
    if (rc != KWIRE_OK)
        return rc;
    if (version >= 1)
        (void)get32(&r);                   /* throttle_time_ms */
    *error = get16(&r);
    if (version >= 3) {
        long n = flex ? (long)getuvar(&r) - 1 : (long)get32(&r);
        for (long i = 0; i < n && !r.bad; i++) {
            long l;
            (void)getstrv(&r, flex, &l);   /* member_id */
            (void)getstrv(&r, flex, &l);   /* group_instance_id */
            int16_t merr = get16(&r);
            if (flex)
                skiptags(&r);
            if (!*error && merr)
                *error = merr;
        }
        if (flex)
            skiptags(&r);
    }
    return r.bad ? KWIRE_ESHORT : KWIRE_OK;
}
