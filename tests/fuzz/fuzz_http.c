/* libFuzzer target for the shard's HTTP upgrade path: the request-head
 * parser (shard/httpreq.c over http-parser), the RFC 6455 handshake check,
 * the Origin allow-list and the 101 response.  Every field handed out must
 * lie inside the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "shard/httpreq.h"
#include "shard/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void inside(httpreq_str s, const char *base, size_t n)
{
    if (s.p && (s.p < base || s.p + s.len > base + n))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    httpreq r;
    int n = httpreq_parse(in, size, 8192, &r);
    if (n <= 0)
        return 0;
    if ((size_t)n > size || r.head_len != (size_t)n)
        abort();
    inside(r.url, in, size);
    inside(r.path, in, size);
    inside(r.host, in, size);
    inside(r.upgrade, in, size);
    inside(r.connection, in, size);
    inside(r.ws_key, in, size);
    inside(r.ws_version, in, size);
    inside(r.origin, in, size);
    (void)httpreq_has_token(r.connection, "upgrade");
    (void)ws_origin_allowed("https://a.example, https://*.odin.test,http://localhost:1", &r);
    const char *reason = NULL;
    if (ws_handshake_check(&r, &reason) == 0) {
        buf out = { 0 };
        if (ws_handshake_response(&out, r.ws_key.p, r.ws_key.len) != 0)
            abort();   /* a key that passed the check always has an answer */
        buf_free(&out);
    } else if (!reason) {
        abort();
    }
    return 0;
}
