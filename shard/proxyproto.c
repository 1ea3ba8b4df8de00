/* PROXY protocol v2 parser (contract in proxyproto.h). */
#include "shard/proxyproto.h"

#include <string.h>
#include <sys/socket.h>

static const uint8_t k_sig[PROXYPROTO_SIG_LEN] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
};
static const char k_v1[] = "PROXY ";

static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

enum proxyproto_sniff proxyproto_sniff(const uint8_t *p, size_t n)
{
    size_t k = min_sz(n, PROXYPROTO_SIG_LEN);
    if (n > 0 && memcmp(p, k_sig, k) == 0)
        return k == PROXYPROTO_SIG_LEN ? PROXYPROTO_SNIFF_V2 : PROXYPROTO_SNIFF_MAYBE;
    k = min_sz(n, sizeof k_v1 - 1);
    if (n > 0 && memcmp(p, k_v1, k) == 0)
        return k == sizeof k_v1 - 1 ? PROXYPROTO_SNIFF_V1 : PROXYPROTO_SNIFF_MAYBE;
    return n == 0 ? PROXYPROTO_SNIFF_MAYBE : PROXYPROTO_SNIFF_NO;
}

int proxyproto_parse(const uint8_t *p, size_t n, proxyproto_hdr *out)
{
    switch (proxyproto_sniff(p, n)) {
    case PROXYPROTO_SNIFF_MAYBE: return 0;
    case PROXYPROTO_SNIFF_V1:    return PROXYPROTO_E_V1;
    case PROXYPROTO_SNIFF_NO:    return PROXYPROTO_E_NOT_PROXY;
    case PROXYPROTO_SNIFF_V2:    break;
    }
    if (n < PROXYPROTO_HDR_LEN)
        return 0;
    uint8_t ver = p[12] >> 4, cmd = p[12] & 0x0F;
    if (ver != 2 || cmd > 1)
        return PROXYPROTO_E_VERSION;
    size_t len = ((size_t)p[14] << 8) | p[15];
    if (PROXYPROTO_HDR_LEN + len > PROXYPROTO_MAX_LEN)
        return PROXYPROTO_E_TOOBIG;
    uint8_t fam = p[13] >> 4, proto = p[13] & 0x0F;
    if (fam > 3 || proto > 2)
        return PROXYPROTO_E_ADDR;
    static const size_t need[4] = { 0, 12, 36, 216 };
    if (len < need[fam])
        return PROXYPROTO_E_ADDR;
    if (n < PROXYPROTO_HDR_LEN + len)
        return 0;
    proxyproto_hdr h;
    memset(&h, 0, sizeof h);
    h.local = cmd == 0;
    h.family = AF_UNSPEC;
    const uint8_t *a = p + PROXYPROTO_HDR_LEN;
    /* LOCAL keeps the peer's address whatever follows (the spec); so does
     * UNSPEC, UNIX, and a datagram transport we do not serve */
    if (!h.local && proto == 1 && fam == 1) {
        h.family = AF_INET;
        memcpy(h.src, a, 4);
        memcpy(h.dst, a + 4, 4);
        h.src_port = (uint16_t)((a[8] << 8) | a[9]);
        h.dst_port = (uint16_t)((a[10] << 8) | a[11]);
    } else if (!h.local && proto == 1 && fam == 2) {
        h.family = AF_INET6;
        memcpy(h.src, a, 16);
        memcpy(h.dst, a + 16, 16);
        h.src_port = (uint16_t)((a[32] << 8) | a[33]);
        h.dst_port = (uint16_t)((a[34] << 8) | a[35]);
    } else if (!h.local && proto == 2) {
        return PROXYPROTO_E_ADDR;   /* UDP in front of a TCP service */
    }
    *out = h;
    return (int)(PROXYPROTO_HDR_LEN + len);
}

int proxyproto_build(const proxyproto_hdr *h, uint8_t *out, size_t cap)
{
    size_t alen = h->family == AF_INET ? 12 : h->family == AF_INET6 ? 36 : 0;
    if (h->family != AF_INET && h->family != AF_INET6 && h->family != AF_UNSPEC)
        return -1;
    if (cap < PROXYPROTO_HDR_LEN + alen)
        return -1;
    memcpy(out, k_sig, PROXYPROTO_SIG_LEN);
    out[12] = h->family == AF_UNSPEC || h->local ? 0x20 : 0x21;
    out[13] = h->family == AF_INET ? 0x11 : h->family == AF_INET6 ? 0x21 : 0x00;
    out[14] = (uint8_t)(alen >> 8);
    out[15] = (uint8_t)alen;
    uint8_t *a = out + PROXYPROTO_HDR_LEN;
    size_t al = h->family == AF_INET ? 4 : 16;
    if (alen) {
        memcpy(a, h->src, al);
        memcpy(a + al, h->dst, al);
        a[2 * al] = (uint8_t)(h->src_port >> 8);
        a[2 * al + 1] = (uint8_t)h->src_port;
        a[2 * al + 2] = (uint8_t)(h->dst_port >> 8);
        a[2 * al + 3] = (uint8_t)h->dst_port;
    }
    return (int)(PROXYPROTO_HDR_LEN + alen);
}
