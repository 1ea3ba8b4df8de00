#include "proto/handshake.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define LABEL "odin-link-v2"
#define MAX_ENDPOINTS 8

enum hs_state { HS_INIT, HS_WAIT_HELLO, HS_WAIT_AUTH, HS_DONE, HS_REFUSED };

struct handshake {
    enum handshake_role role;
    enum hs_state state;
    char *id, *target, *endpoint;
    char *endpoints[MAX_ENDPOINTS];
    size_t nendpoints;
    char *secret;
    size_t secret_len;
    uint32_t max_frame;
    uint8_t nonce[FRAME_NONCE_LEN];
    uint8_t hello[FRAME_HANDSHAKE_MAX];        /* our HELLO payload as sent */
    size_t hello_len;
    uint8_t peer_hello[FRAME_HANDSHAKE_MAX];   /* theirs as received */
    size_t peer_hello_len;
    uint8_t router_mac[FRAME_MAC_LEN];         /* AUTH_r (sent or verified) */
    char peer_id[256];
    uint32_t peer_max_frame;
    int authenticated;
    enum handshake_refusal refusal;
    char reason[512];
};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

void handshake_free(handshake *h)
{
    if (!h)
        return;
    free(h->id);
    free(h->target);
    free(h->endpoint);
    for (size_t i = 0; i < h->nendpoints; i++)
        free(h->endpoints[i]);
    if (h->secret) {
        OPENSSL_cleanse(h->secret, h->secret_len);
        free(h->secret);
    }
    OPENSSL_cleanse(h->router_mac, sizeof h->router_mac);
    free(h);
}

handshake *handshake_new(const handshake_cfg *cfg)
{
    handshake *h = calloc(1, sizeof *h);
    if (!h || !cfg->id)
        goto err;
    h->role = cfg->role;
    h->max_frame = cfg->max_frame;
    h->id = strdup(cfg->id);
    if (!h->id)
        goto err;
    if (cfg->role == HANDSHAKE_ROUTER) {
        if (!cfg->target || !cfg->endpoint)
            goto err;
        h->target = strdup(cfg->target);
        h->endpoint = strdup(cfg->endpoint);
        if (!h->target || !h->endpoint)
            goto err;
    }
    for (size_t i = 0; cfg->endpoints && cfg->endpoints[i]; i++) {
        if (h->nendpoints == MAX_ENDPOINTS)
            break;
        if (!(h->endpoints[h->nendpoints++] = dup_or_null(cfg->endpoints[i])))
            goto err;
    }
    if (cfg->secret && *cfg->secret) {
        h->secret = strdup(cfg->secret);
        if (!h->secret)
            goto err;
        h->secret_len = strlen(h->secret);
    }
    if (cfg->nonce)
        memcpy(h->nonce, cfg->nonce, FRAME_NONCE_LEN);
    else if (h->secret && frame_nonce(h->nonce) != 0)
        goto err;
    /* encode our HELLO now: one too large for the peer's pre-auth limit is a
     * configuration error, reported here rather than by the peer */
    buf b = { 0 };
    frame_hello hl = {
        .version = FRAME_PROTO_VERSION,
        .role = cfg->role == HANDSHAKE_ROUTER ? "router" : "shard",
        .id = h->id, .id_len = strlen(h->id),
        .max_frame = h->max_frame,
        .nonce = h->secret ? h->nonce : NULL,
        .target = h->target, .target_len = h->target ? strlen(h->target) : 0,
        .endpoint = h->endpoint, .endpoint_len = h->endpoint ? strlen(h->endpoint) : 0,
    };
    hl.role_len = strlen(hl.role);
    if (frame_encode_hello_msg(&b, &hl) != FRAME_OK ||
        b.len - FRAME_HEADER_LEN > FRAME_HANDSHAKE_MAX) {
        buf_free(&b);
        goto err;
    }
    h->hello_len = b.len - FRAME_HEADER_LEN;
    memcpy(h->hello, b.data + FRAME_HEADER_LEN, h->hello_len);
    buf_free(&b);
    h->state = HS_INIT;
    return h;
err:
    handshake_free(h);
    return NULL;
}

int handshake_start(handshake *h, buf *out)
{
    if (h->state != HS_INIT)
        return -1;
    uint8_t hdr[4] = { (uint8_t)(h->hello_len >> 24), (uint8_t)(h->hello_len >> 16),
                       (uint8_t)(h->hello_len >> 8), (uint8_t)h->hello_len };
    size_t start = out->len;
    if (buf_append(out, hdr, 4) != 0 || buf_append(out, h->hello, h->hello_len) != 0) {
        out->len = start;
        return -1;
    }
    h->state = HS_WAIT_HELLO;
    return 0;
}

static int refuse(handshake *h, enum handshake_refusal r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(handshake *h, enum handshake_refusal r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->reason, sizeof h->reason, fmt, ap);
    va_end(ap);
    h->refusal = r;
    h->state = HS_REFUSED;
    return HANDSHAKE_REFUSED;
}

static void put_be32(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

int handshake_mac(const char *secret, size_t secret_len, enum handshake_role prover,
                  const uint8_t *hr, size_t hr_len, const uint8_t *hs, size_t hs_len,
                  const uint8_t *router_mac, uint8_t out[FRAME_MAC_LEN])
{
    static const char label[] = LABEL;   /* sizeof counts the 0 */
    const char *role = prover == HANDSHAKE_ROUTER ? "router" : "shard";
    size_t rl = strlen(role) + 1;
    if (hr_len > FRAME_HANDSHAKE_MAX || hs_len > FRAME_HANDSHAKE_MAX ||
        (prover == HANDSHAKE_SHARD) != (router_mac != NULL))
        return -1;
    uint8_t msg[sizeof label + 8 + 8 + 2 * FRAME_HANDSHAKE_MAX + FRAME_MAC_LEN];
    size_t n = 0;
    memcpy(msg + n, label, sizeof label);
    n += sizeof label;
    memcpy(msg + n, role, rl);
    n += rl;
    put_be32(msg + n, hr_len);
    n += 4;
    memcpy(msg + n, hr, hr_len);
    n += hr_len;
    put_be32(msg + n, hs_len);
    n += 4;
    memcpy(msg + n, hs, hs_len);
    n += hs_len;
    if (router_mac) {
        memcpy(msg + n, router_mac, FRAME_MAC_LEN);
        n += FRAME_MAC_LEN;
    }
    unsigned int ol = 0;
    if (!HMAC(EVP_sha256(), secret, (int)secret_len, msg, n, out, &ol) ||
        ol != FRAME_MAC_LEN)
        return -1;
    return 0;
}

/* Hr and Hs in the canonical order, whoever we are. */
static int transcript_mac(const handshake *h, enum handshake_role prover,
                          const uint8_t *router_mac, uint8_t out[FRAME_MAC_LEN])
{
    const uint8_t *hr = h->role == HANDSHAKE_ROUTER ? h->hello : h->peer_hello;
    size_t hrl = h->role == HANDSHAKE_ROUTER ? h->hello_len : h->peer_hello_len;
    const uint8_t *hs = h->role == HANDSHAKE_ROUTER ? h->peer_hello : h->hello;
    size_t hsl = h->role == HANDSHAKE_ROUTER ? h->peer_hello_len : h->hello_len;
    return handshake_mac(h->secret, h->secret_len, prover, hr, hrl, hs, hsl, router_mac, out);
}

static int eq(const char *p, size_t n, const char *s)
{
    return p && strlen(s) == n && memcmp(p, s, n) == 0;
}

/* At most 128 bytes of a peer-chosen string for a reason, unprintable
 * bytes as '?'. */
static const char *show(char *dst, size_t cap, const char *p, size_t n)
{
    if (!p)
        return "(none)";
    size_t k = 0;
    for (size_t i = 0; i < n && i < 128 && k + 1 < cap; i++)
        dst[k++] = (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\') ? p[i] : '?';
    dst[k] = 0;
    return dst;
}

static int on_hello(handshake *h, const frame_msg *m, buf *out)
{
    const frame_hello *p = &m->hello;
    size_t n = p->id_len < sizeof h->peer_id - 1 ? p->id_len : sizeof h->peer_id - 1;
    memcpy(h->peer_id, p->id, n);
    h->peer_id[n] = 0;
    const char *me = h->role == HANDSHAKE_ROUTER ? "router" : "shard";
    const char *want = h->role == HANDSHAKE_ROUTER ? "shard" : "router";
    char a[160], b[160];
    if (p->version != FRAME_PROTO_VERSION)
        return refuse(h, HANDSHAKE_R_VERSION, "protocol version mismatch: %s speaks %u, %s %u",
                      want, p->version, me, FRAME_PROTO_VERSION);
    if (!eq(p->role, p->role_len, want))
        return refuse(h, HANDSHAKE_R_PROTOCOL, "peer role is '%s', want '%s'",
                      show(a, sizeof a, p->role, p->role_len), want);
    if (!m->raw || m->raw_len == 0 || m->raw_len > FRAME_HANDSHAKE_MAX)
        return refuse(h, HANDSHAKE_R_PROTOCOL, "HELLO larger than %u bytes",
                      FRAME_HANDSHAKE_MAX);
    memcpy(h->peer_hello, m->raw, m->raw_len);
    h->peer_hello_len = m->raw_len;
    h->peer_max_frame = p->max_frame;
    if (h->role == HANDSHAKE_ROUTER) {
        if (!eq(p->id, p->id_len, h->target))
            return refuse(h, HANDSHAKE_R_IDENTITY,
                          "endpoint %s answers as shard '%s', not '%s' (misrouted or relayed)",
                          h->endpoint, show(a, sizeof a, p->id, p->id_len), h->target);
    } else {
        if (!p->target)
            return refuse(h, HANDSHAKE_R_PROTOCOL, "router HELLO names no target shard");
        if (!eq(p->target, p->target_len, h->id))
            return refuse(h, HANDSHAKE_R_IDENTITY,
                          "router meant shard '%s', this is '%s' (misrouted or relayed)",
                          show(a, sizeof a, p->target, p->target_len), h->id);
        int known = 0;
        for (size_t i = 0; i < h->nendpoints && !known; i++)
            known = eq(p->endpoint, p->endpoint_len, h->endpoints[i]);
        if (!known)
            return refuse(h, HANDSHAKE_R_IDENTITY,
                          "router dialed endpoint '%s', not one of this shard's "
                          "(relayed, or a stale lease)",
                          show(b, sizeof b, p->endpoint, p->endpoint_len));
    }
    if (!h->secret) {
        if (p->nonce && h->role == HANDSHAKE_ROUTER)
            return refuse(h, HANDSHAKE_R_AUTH, "the shard requires authentication: "
                                               "SHARD_INGRESS_SECRET is not set on this router");
        h->state = HS_DONE;
        return HANDSHAKE_DONE;
    }
    if (!p->nonce)
        return refuse(h, HANDSHAKE_R_AUTH, "%s sent no challenge: SHARD_INGRESS_SECRET is "
                                           "not set on the %s", want, want);
    if (h->role == HANDSHAKE_ROUTER) {
        /* the dialer proves first, over the whole transcript */
        if (transcript_mac(h, HANDSHAKE_ROUTER, NULL, h->router_mac) != 0 ||
            frame_encode_auth(out, h->router_mac) != FRAME_OK)
            return refuse(h, HANDSHAKE_R_NOMEM, "out of memory");
    }
    h->state = HS_WAIT_AUTH;
    return HANDSHAKE_MORE;
}

static int on_auth(handshake *h, const uint8_t *mac, buf *out)
{
    uint8_t want[FRAME_MAC_LEN];
    enum handshake_role peer = h->role == HANDSHAKE_ROUTER ? HANDSHAKE_SHARD : HANDSHAKE_ROUTER;
    if (transcript_mac(h, peer, peer == HANDSHAKE_SHARD ? h->router_mac : NULL, want) != 0)
        return refuse(h, HANDSHAKE_R_NOMEM, "cannot compute the MAC");
    if (CRYPTO_memcmp(want, mac, FRAME_MAC_LEN) != 0)
        return refuse(h, HANDSHAKE_R_AUTH, "%s failed authentication (SHARD_INGRESS_SECRET "
                      "differs, or the link is relayed or altered)",
                      peer == HANDSHAKE_ROUTER ? "router" : "shard");
    if (h->role == HANDSHAKE_SHARD) {
        /* the router proved it; only now do we */
        memcpy(h->router_mac, mac, FRAME_MAC_LEN);
        uint8_t ours[FRAME_MAC_LEN];
        if (transcript_mac(h, HANDSHAKE_SHARD, h->router_mac, ours) != 0 ||
            frame_encode_auth(out, ours) != FRAME_OK)
            return refuse(h, HANDSHAKE_R_NOMEM, "out of memory");
    }
    h->authenticated = 1;
    h->state = HS_DONE;
    return HANDSHAKE_DONE;
}

int handshake_on_frame(handshake *h, const frame_msg *m, buf *out)
{
    switch (h->state) {
    case HS_REFUSED:
        return HANDSHAKE_REFUSED;
    case HS_INIT:
    case HS_DONE:
        return refuse(h, HANDSHAKE_R_PROTOCOL, "handshake misused (internal error)");
    case HS_WAIT_HELLO:
        if (m->type != FRAME_HELLO)
            return refuse(h, HANDSHAKE_R_PROTOCOL, "%s before HELLO",
                          m->type == FRAME_AUTH ? "AUTH" : "DELIVERY");
        return on_hello(h, m, out);
    case HS_WAIT_AUTH:
        if (m->type != FRAME_AUTH)
            return refuse(h, HANDSHAKE_R_PROTOCOL, "%s before AUTH",
                          m->type == FRAME_HELLO ? "a second HELLO" : "DELIVERY");
        return on_auth(h, m->mac, out);
    }
    return HANDSHAKE_REFUSED;
}

enum handshake_refusal handshake_refusal(const handshake *h) { return h->refusal; }
const char *handshake_reason(const handshake *h) { return h->reason; }
const char *handshake_peer_id(const handshake *h) { return h->peer_id; }
uint32_t handshake_peer_max_frame(const handshake *h) { return h->peer_max_frame; }
int handshake_authenticated(const handshake *h) { return h->authenticated; }

int handshake_proved(const handshake *h)
{
    return h->role == HANDSHAKE_ROUTER && h->state == HS_WAIT_AUTH;
}

const char *handshake_refusal_name(enum handshake_refusal r)
{
    switch (r) {
    case HANDSHAKE_R_NONE: return "none";
    case HANDSHAKE_R_VERSION: return "version";
    case HANDSHAKE_R_PROTOCOL: return "protocol";
    case HANDSHAKE_R_IDENTITY: return "identity";
    case HANDSHAKE_R_AUTH: return "auth";
    case HANDSHAKE_R_NOMEM: return "nomem";
    }
    return "unknown";
}
