#include "proto/frame.h"

#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>


/* Deepest nesting a valid frame has: frame array (0) > records array (1) >
 * record (2) > field (3, a scalar). */
#define FRAME_MAX_DEPTH 3

/* Most elements a container may declare at each depth (see frame.h). */
static const uint32_t max_count[FRAME_MAX_DEPTH + 1] = {
    FRAME_MAX_FIELDS, FRAME_MAX_RECORDS, FRAME_MAX_FIELDS, 0,
};

struct frame_decoder {
    buf in;                 /* buffered bytes; in.data[pos..len) unread */
    size_t pos;
    uint32_t max_payload;
    int error;              /* sticky FRAME_E_* after a failure */
    frame_record *recs;
    size_t recs_cap;
    msgpack_unpacked unp;   /* zone reused frame after frame */
};

/* ---- structural pre-check ------------------------------------------------
 * msgpack-c allocates array/map storage from the declared element count
 * before it reads the elements, so a 10-byte payload declaring 2^32 elements
 * would make it attempt a huge allocation.  Walk the value first: every
 * declared count must fit in the remaining bytes (each element takes at
 * least one), stays under the cap of its depth, and nesting stays shallow.
 * Returns the value's length, -1 (malformed) or -2 (over a cap). */
static uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static int64_t walk(const unsigned char *p, size_t n, int depth)
{
    if (n == 0)
        return -1;
    if (depth > FRAME_MAX_DEPTH)
        return -2;
    unsigned char c = p[0];
    uint64_t len = 0, count = 0;
    size_t hdr = 1;
    int kind = 0;   /* 0 scalar (len bytes follow), 1 array, 2 map */

    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
        return 1;
    } else if (c >= 0x80 && c <= 0x8f) {
        kind = 2; count = c & 0x0f;
    } else if (c >= 0x90 && c <= 0x9f) {
        kind = 1; count = c & 0x0f;
    } else if (c >= 0xa0 && c <= 0xbf) {
        len = c & 0x1f;
    } else {
        static const signed char fixed[] = {
            /* c4..df: bin8/16/32, ext8/16/32, float32/64, uint8..64, int8..64,
             * fixext1/2/4/8/16, str8/16/32, array16/32, map16/32 */
            -1, -2, -4, -1, -2, -4, 4, 8, 1, 2, 4, 8, 1, 2, 4, 8,
            2, 3, 5, 9, 17, -1, -2, -4, -2, -4, -2, -4,
        };
        if (c < 0xc4 || c > 0xdf)
            return -1;   /* 0xc1 is never used */
        int f = fixed[c - 0xc4];
        if (f > 0) {
            len = (uint64_t)f;
        } else {
            hdr = 1 + (size_t)(-f);
            if (n < hdr)
                return -1;
            uint64_t v = be(p + 1, -f);
            if (c >= 0xdc) {
                kind = c >= 0xde ? 2 : 1;
                count = v;
            } else {
                len = v;
                if (c >= 0xc7 && c <= 0xc9)
                    len += 1;   /* ext type byte */
            }
        }
    }
    if (kind == 0) {
        if (len > n - hdr)
            return -1;
        return (int64_t)(hdr + len);
    }
    if (kind == 2)
        count *= 2;
    if (count > max_count[depth])
        return -2;
    if (count > n - hdr)
        return -1;
    size_t off = hdr;
    for (uint64_t i = 0; i < count; i++) {
        int64_t l = walk(p + off, n - off, depth + 1);
        if (l < 0)
            return l;
        off += (size_t)l;
    }
    return (int64_t)off;
}

frame_decoder *frame_decoder_new(uint32_t max_payload)
{
    frame_decoder *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->max_payload = max_payload < FRAME_MIN_MAX ? FRAME_MIN_MAX : max_payload;
    msgpack_unpacked_init(&d->unp);
    return d;
}

void frame_decoder_free(frame_decoder *d)
{
    if (!d)
        return;
    msgpack_unpacked_destroy(&d->unp);
    buf_free(&d->in);
    free(d->recs);
    free(d);
}

void frame_decoder_set_max(frame_decoder *d, uint32_t max_payload)
{
    d->max_payload = max_payload < FRAME_MIN_MAX ? FRAME_MIN_MAX : max_payload;
}

size_t frame_decoder_pending(const frame_decoder *d)
{
    return d->in.len - d->pos;
}

int frame_decoder_feed(frame_decoder *d, const void *p, size_t n)
{
    if (d->error)
        return d->error;
    if (d->pos > 0 && (d->pos == d->in.len || d->pos >= d->in.cap / 2)) {
        buf_consume(&d->in, d->pos);
        d->pos = 0;
    }
    return buf_append(&d->in, p, n) == 0 ? FRAME_OK : FRAME_E_NOMEM;
}

static int get_str(const msgpack_object *o, const char **p, size_t *n)
{
    if (o->type == MSGPACK_OBJECT_STR) {
        *p = o->via.str.ptr;
        *n = o->via.str.size;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_BIN) {
        *p = o->via.bin.ptr;
        *n = o->via.bin.size;
        return 0;
    }
    return -1;
}

static int get_int(const msgpack_object *o, int64_t min, int64_t max, int64_t *out)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)max)
            return -1;
        *out = (int64_t)o->via.u64;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        if (o->via.i64 < min)
            return -1;
        *out = o->via.i64;
        return 0;
    }
    return -1;
}

static int decode_record(const msgpack_object *o, frame_record *r)
{
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 7)
        return FRAME_E_MALFORMED;
    const msgpack_object *e = o->via.array.ptr;
    int64_t part, off, ts, flags;
    if (get_str(&e[0], &r->category, &r->category_len) ||
        get_str(&e[1], &r->token, &r->token_len) ||
        get_int(&e[2], INT32_MIN, INT32_MAX, &part) ||
        get_int(&e[3], INT64_MIN, INT64_MAX, &off) ||
        get_int(&e[4], INT64_MIN, INT64_MAX, &ts) ||
        get_str(&e[5], &r->value, &r->value_len) ||
        get_int(&e[6], 0, UINT32_MAX, &flags))
        return FRAME_E_MALFORMED;
    r->partition = (int32_t)part;
    r->offset = off;
    r->timestamp_ms = ts;
    r->flags = (uint32_t)flags;
    return FRAME_OK;
}

int frame_decode_payload(frame_decoder *d, const void *p, size_t n, frame_msg *out)
{
    if (n == 0)
        return FRAME_E_EMPTY;
    int64_t l = walk(p, n, 0);
    if (l == -2)
        return FRAME_E_LIMIT;
    if (l < 0 || (size_t)l != n)
        return FRAME_E_MALFORMED;   /* truncated, bad byte or trailing bytes */

    size_t off = 0;
    msgpack_unpack_return rc = msgpack_unpack_next(&d->unp, p, n, &off);
    if (rc == MSGPACK_UNPACK_NOMEM_ERROR)
        return FRAME_E_NOMEM;
    if (rc != MSGPACK_UNPACK_SUCCESS || off != n)
        return FRAME_E_MALFORMED;
    const msgpack_object *o = &d->unp.data;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 1)
        return FRAME_E_MALFORMED;
    const msgpack_object *e = o->via.array.ptr;
    size_t ne = o->via.array.size;
    int64_t type;
    if (get_int(&e[0], 0, INT32_MAX, &type))
        return FRAME_E_MALFORMED;

    memset(out, 0, sizeof *out);
    out->raw = p;
    out->raw_len = n;
    if (type == FRAME_HELLO) {
        int64_t ver, maxf;
        if (ne < 5 || get_int(&e[1], 0, UINT32_MAX, &ver) ||
            get_str(&e[2], &out->hello.role, &out->hello.role_len) ||
            get_str(&e[3], &out->hello.id, &out->hello.id_len) ||
            get_int(&e[4], 0, UINT32_MAX, &maxf))
            return FRAME_E_MALFORMED;
        if (ne >= 6 && e[5].type != MSGPACK_OBJECT_NIL) {
            /* optional nonce (5 elements or nil: no secret configured) */
            if (e[5].type != MSGPACK_OBJECT_BIN || e[5].via.bin.size != FRAME_NONCE_LEN)
                return FRAME_E_MALFORMED;
            out->hello.nonce = (const uint8_t *)e[5].via.bin.ptr;
        }
        /* optional target and endpoint (the router's, version 2) */
        if (ne >= 7 && e[6].type != MSGPACK_OBJECT_NIL &&
            get_str(&e[6], &out->hello.target, &out->hello.target_len))
            return FRAME_E_MALFORMED;
        if (ne >= 8 && e[7].type != MSGPACK_OBJECT_NIL &&
            get_str(&e[7], &out->hello.endpoint, &out->hello.endpoint_len))
            return FRAME_E_MALFORMED;
        out->type = FRAME_HELLO;
        out->hello.version = (uint32_t)ver;
        out->hello.max_frame = (uint32_t)maxf;
        return FRAME_OK;
    }
    if (type == FRAME_AUTH) {
        if (ne < 2 || e[1].type != MSGPACK_OBJECT_BIN || e[1].via.bin.size != FRAME_MAC_LEN)
            return FRAME_E_MALFORMED;
        out->type = FRAME_AUTH;
        out->mac = (const uint8_t *)e[1].via.bin.ptr;
        return FRAME_OK;
    }
    if (type == FRAME_DELIVERY) {
        int64_t mode;
        if (ne < 3 || get_int(&e[1], 0, UINT32_MAX, &mode) ||
            e[2].type != MSGPACK_OBJECT_ARRAY)
            return FRAME_E_MALFORMED;
        size_t nr = e[2].via.array.size;
        if (nr > d->recs_cap) {
            size_t cap = d->recs_cap ? d->recs_cap : 64;
            while (cap < nr)
                cap *= 2;
            frame_record *r = realloc(d->recs, cap * sizeof *r);
            if (!r)
                return FRAME_E_NOMEM;
            d->recs = r;
            d->recs_cap = cap;
        }
        for (size_t i = 0; i < nr; i++) {
            int rc2 = decode_record(&e[2].via.array.ptr[i], &d->recs[i]);
            if (rc2 != FRAME_OK)
                return rc2;
        }
        out->type = FRAME_DELIVERY;
        out->mode = (uint32_t)mode;
        out->nrecords = nr;
        out->records = d->recs;
        return FRAME_OK;
    }
    return FRAME_E_TYPE;
}

int frame_decoder_next(frame_decoder *d, frame_msg *out)
{
    if (d->error)
        return d->error;
    size_t avail = d->in.len - d->pos;
    if (avail < FRAME_HEADER_LEN)
        return 0;
    const unsigned char *h = (const unsigned char *)d->in.data + d->pos;
    uint32_t len = (uint32_t)be(h, 4);
    int rc;
    if (len > d->max_payload) {
        rc = FRAME_E_TOOBIG;
    } else if (len == 0) {
        rc = FRAME_E_EMPTY;
    } else {
        if (avail - FRAME_HEADER_LEN < len)
            return 0;
        rc = frame_decode_payload(d, h + FRAME_HEADER_LEN, len, out);
        if (rc == FRAME_OK) {
            d->pos += FRAME_HEADER_LEN + len;
            return 1;
        }
    }
    d->error = rc;
    return rc;
}

/* ---- encoding ------------------------------------------------------------ */

static void put_be32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

int frame_encode_hello(buf *out, const char *role, const char *id, uint32_t max_frame)
{
    frame_hello h = { .version = FRAME_PROTO_VERSION, .role = role, .role_len = strlen(role),
                      .id = id, .id_len = strlen(id), .max_frame = max_frame };
    return frame_encode_hello_msg(out, &h);
}

static int pack_str_or_nil(msgpack_packer *pk, const char *p, size_t n)
{
    if (!p)
        return msgpack_pack_nil(pk);
    return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, p, n);
}

int frame_encode_hello_msg(buf *out, const frame_hello *h)
{
    size_t start = out->len;
    char hdr[4] = { 0 };
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_msgpack_write);
    int ext = h->target || h->endpoint;
    size_t ne = ext ? 8 : h->nonce ? 6 : 5;
    if (buf_append(out, hdr, 4) != 0 ||
        msgpack_pack_array(&pk, ne) || msgpack_pack_uint32(&pk, FRAME_HELLO) ||
        msgpack_pack_uint32(&pk, h->version) ||
        msgpack_pack_str(&pk, h->role_len) || msgpack_pack_str_body(&pk, h->role, h->role_len) ||
        msgpack_pack_str(&pk, h->id_len) || msgpack_pack_str_body(&pk, h->id, h->id_len) ||
        msgpack_pack_uint32(&pk, h->max_frame) ||
        (ne >= 6 && (h->nonce ? (msgpack_pack_bin(&pk, FRAME_NONCE_LEN) ||
                                 msgpack_pack_bin_body(&pk, h->nonce, FRAME_NONCE_LEN))
                              : msgpack_pack_nil(&pk))) ||
        (ext && (pack_str_or_nil(&pk, h->target, h->target_len) ||
                 pack_str_or_nil(&pk, h->endpoint, h->endpoint_len)))) {
        out->len = start;
        return FRAME_E_NOMEM;
    }
    put_be32(out->data + start, (uint32_t)(out->len - start - 4));
    return FRAME_OK;
}

int frame_encode_auth(buf *out, const uint8_t mac[FRAME_MAC_LEN])
{
    size_t start = out->len;
    char hdr[4] = { 0 };
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_msgpack_write);
    if (buf_append(out, hdr, 4) != 0 || msgpack_pack_array(&pk, 2) ||
        msgpack_pack_uint32(&pk, FRAME_AUTH) || msgpack_pack_bin(&pk, FRAME_MAC_LEN) ||
        msgpack_pack_bin_body(&pk, mac, FRAME_MAC_LEN)) {
        out->len = start;
        return FRAME_E_NOMEM;
    }
    put_be32(out->data + start, (uint32_t)(out->len - start - 4));
    return FRAME_OK;
}

int frame_nonce(uint8_t nonce[FRAME_NONCE_LEN])
{
    size_t got = 0;
    while (got < FRAME_NONCE_LEN) {
        ssize_t r = getrandom(nonce + got, FRAME_NONCE_LEN - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

int frame_batch_begin(frame_batch *b, buf *out, enum frame_mode mode)
{
    /* [2, mode, array32(count)] with the count patched in _end */
    unsigned char head[4 + 1 + 1 + 1 + 5] = { 0, 0, 0, 0, 0x93, FRAME_DELIVERY,
                                               (unsigned char)mode, 0xdd, 0, 0, 0, 0 };
    b->out = out;
    b->start = out->len;
    b->count = 0;
    b->count_at = out->len + 8;
    if (buf_append(out, head, sizeof head) != 0)
        return FRAME_E_NOMEM;
    return FRAME_OK;
}

int frame_batch_add(frame_batch *b, const frame_record *r)
{
    buf *out = b->out;
    size_t before = out->len;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_msgpack_write);
    /* one reservation for the whole record keeps the packer from reallocating */
    if (buf_reserve(out, r->category_len + r->token_len + r->value_len + 64) != 0 ||
        msgpack_pack_array(&pk, 7) ||
        msgpack_pack_str(&pk, r->category_len) ||
        msgpack_pack_str_body(&pk, r->category, r->category_len) ||
        msgpack_pack_str(&pk, r->token_len) ||
        msgpack_pack_str_body(&pk, r->token, r->token_len) ||
        msgpack_pack_int32(&pk, r->partition) ||
        msgpack_pack_int64(&pk, r->offset) ||
        msgpack_pack_int64(&pk, r->timestamp_ms) ||
        msgpack_pack_str(&pk, r->value_len) ||
        msgpack_pack_str_body(&pk, r->value, r->value_len) ||
        msgpack_pack_uint32(&pk, r->flags)) {
        out->len = before;
        return FRAME_E_NOMEM;
    }
    b->count++;
    return FRAME_OK;
}

size_t frame_batch_size(const frame_batch *b)
{
    return b->out->len - b->start - FRAME_HEADER_LEN;
}

int frame_batch_end(frame_batch *b)
{
    size_t payload = frame_batch_size(b);
    if (payload > UINT32_MAX) {
        frame_batch_abort(b);
        return FRAME_E_TOOBIG;
    }
    put_be32(b->out->data + b->start, (uint32_t)payload);
    put_be32(b->out->data + b->count_at, b->count);
    return FRAME_OK;
}

void frame_batch_abort(frame_batch *b)
{
    b->out->len = b->start;
    b->count = 0;
}

const char *frame_strerror(int code)
{
    switch (code) {
    case FRAME_OK: return "ok";
    case FRAME_E_NOMEM: return "out of memory";
    case FRAME_E_TOOBIG: return "frame too big";
    case FRAME_E_MALFORMED: return "malformed frame";
    case FRAME_E_TYPE: return "unknown frame type";
    case FRAME_E_EMPTY: return "empty frame";
    case FRAME_E_LIMIT: return "over a frame limit";
    default: return "unknown error";
    }
}
