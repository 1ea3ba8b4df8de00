#include "tools/lib/eventgen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/topics.h"

/* ---- PRNG: splitmix64 seeding, xoshiro256** ---------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void eventgen_rng_seed(eventgen_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t eventgen_rng_next(eventgen_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double eventgen_rng_double(eventgen_rng *r)
{
    return (double)(eventgen_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t eventgen_rng_below(eventgen_rng *r, uint64_t n)
{
    /* rejection sampling: no modulo bias */
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = eventgen_rng_next(r);
    while (x >= lim);
    return x % n;
}

/* ---- Zipf -------------------------------------------------------------- */

int eventgen_zipf_init(eventgen_zipf *z, size_t n, double s)
{
    z->n = 0;
    z->cdf = NULL;
    if (n == 0 || !(s > 0) || !isfinite(s) || n > SIZE_MAX / sizeof(double))
        return -1;
    double *cdf = malloc(n * sizeof(double));
    if (!cdf)
        return -1;
    double sum = 0;
    for (size_t k = 0; k < n; k++) {
        sum += 1.0 / pow((double)(k + 1), s);
        cdf[k] = sum;
    }
    for (size_t k = 0; k < n; k++)
        cdf[k] /= sum;
    cdf[n - 1] = 1.0;
    z->n = n;
    z->cdf = cdf;
    return 0;
}

size_t eventgen_zipf_sample(const eventgen_zipf *z, eventgen_rng *r)
{
    double u = eventgen_rng_double(r);
    size_t lo = 0, hi = z->n - 1;
    while (lo < hi) { /* first k with cdf[k] > u */
        size_t mid = lo + (hi - lo) / 2;
        if (z->cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

void eventgen_zipf_free(eventgen_zipf *z)
{
    if (!z)
        return;
    free(z->cdf);
    z->cdf = NULL;
    z->n = 0;
}

/* ---- topic -> type ----------------------------------------------------- */

static const struct {
    const char *suffix, *type;
} type_map[] = {
    { "trades", "TRADE_EXECUTED" },      { "liquidity", "LIQUIDITY_ADDED" },
    { "metadata", "METADATA_UPDATED" },  { "social", "SOCIAL_POST" },
    { "community", "COMMUNITY_MESSAGE" }, { "creation", "TOKEN_CREATED" },
    { "analytics", "ANALYTICS_UPDATE" }, { "balances", "BALANCE_CHANGED" },
};
#define NTYPES (sizeof(type_map) / sizeof(type_map[0]))

const char *eventgen_type_for_topic(const char *topic)
{
    if (!topic)
        return NULL;
    const char *dot = strrchr(topic, '.');
    const char *suf = dot ? dot + 1 : topic;
    for (size_t i = 0; i < NTYPES; i++)
        if (strcmp(suf, type_map[i].suffix) == 0)
            return type_map[i].type;
    return NULL;
}

/* ---- field helpers ----------------------------------------------------- */

/* A stable reference price per token: known names get familiar values,
 * others a log-uniform price in [1e-4, 5e4) from a hash of the name. */
static double base_price(const char *token)
{
    static const struct {
        const char *t;
        double p;
    } known[] = {
        { "BTC", 43250.0 }, { "ETH", 2280.0 }, { "SOL", 98.5 },
        { "ODIN", 0.0425 }, { "DOGE", 0.081 },
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(token, known[i].t) == 0)
            return known[i].p;
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const char *p = token; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    double u = (double)(h >> 11) * 0x1.0p-53;
    return pow(10.0, -4.0 + u * 8.7);
}

/* Append "key":"<decimal>" with precision suited to the magnitude. */
static int put_dec(buf *b, const char *key, double v)
{
    int prec = fabs(v) >= 1000 ? 2 : fabs(v) >= 1 ? 4 : 8;
    return buf_appendf(b, ",\"%s\":\"%.*f\"", key, prec, v);
}

static const char *const words[] = {
    "moon", "hodl", "launch", "dev", "based", "chart", "pump", "community",
    "roadmap", "listing", "whale", "dip", "gm", "wagmi", "liquidity", "burn",
};
#define NWORDS (sizeof(words) / sizeof(words[0]))

static int put_text(buf *b, const char *key, eventgen_rng *r, int nwords)
{
    if (buf_appendf(b, ",\"%s\":\"", key) != 0)
        return -1;
    for (int i = 0; i < nwords; i++)
        if (buf_appendf(b, "%s%s", i ? " " : "",
                        words[eventgen_rng_below(r, NWORDS)]) != 0)
            return -1;
    return buf_append(b, "\"", 1);
}

static int put_user(buf *b, const char *key, eventgen_rng *r)
{
    return buf_appendf(b, ",\"%s\":\"user_%05llu\"", key,
                       (unsigned long long)eventgen_rng_below(r, 100000));
}

/* The data fields after "token" for each type. */
static int put_fields(buf *b, const char *type, const char *tok, uint64_t seq,
                      eventgen_rng *r)
{
    double price = base_price(tok) * (0.98 + 0.04 * eventgen_rng_double(r));
    double amount = 0.001 + 10.0 * eventgen_rng_double(r) *
                                eventgen_rng_double(r);
    unsigned long long sq = (unsigned long long)seq;
    int rc = 0;

    if (strcmp(type, "TRADE_EXECUTED") == 0) {
        rc |= buf_appendf(b, ",\"trade_id\":\"t-%llu\"", sq);
        rc |= put_dec(b, "price", price);
        rc |= put_dec(b, "amount", amount);
        rc |= buf_appendf(b, ",\"side\":\"%s\"",
                          eventgen_rng_below(r, 2) ? "buy" : "sell");
        rc |= put_dec(b, "value_usd", price * amount);
        rc |= put_user(b, "user", r);
    } else if (strcmp(type, "LIQUIDITY_ADDED") == 0) {
        rc |= buf_appendf(b, ",\"pool_id\":\"pool-%s\"", tok);
        rc |= put_user(b, "provider", r);
        rc |= put_dec(b, "amount_token", amount * 1000);
        rc |= put_dec(b, "amount_btc", amount * price * 1000 / 43250.0);
        rc |= put_dec(b, "lp_tokens", amount * 31.6);
    } else if (strcmp(type, "METADATA_UPDATED") == 0) {
        rc |= buf_appendf(b, ",\"name\":\"%s Token\"", tok);
        rc |= put_text(b, "description", r, 8);
        rc |= buf_appendf(b, ",\"website\":\"https://example.org/%s\"", tok);
        rc |= buf_appendf(b, ",\"updated_fields\":[\"description\"]");
    } else if (strcmp(type, "SOCIAL_POST") == 0) {
        rc |= buf_appendf(b, ",\"post_id\":\"p-%llu\"", sq);
        rc |= put_user(b, "author", r);
        rc |= put_text(b, "text", r, 6 + (int)eventgen_rng_below(r, 10));
        rc |= buf_appendf(b, ",\"likes\":%llu",
                          (unsigned long long)eventgen_rng_below(r, 500));
    } else if (strcmp(type, "COMMUNITY_MESSAGE") == 0) {
        rc |= buf_appendf(b, ",\"message_id\":\"m-%llu\"", sq);
        rc |= put_user(b, "author", r);
        rc |= put_text(b, "text", r, 3 + (int)eventgen_rng_below(r, 12));
    } else if (strcmp(type, "TOKEN_CREATED") == 0) {
        rc |= buf_appendf(b, ",\"name\":\"%s Token\",\"ticker\":\"%s\"", tok,
                          tok);
        rc |= put_user(b, "creator", r);
        rc |= buf_appendf(b, ",\"supply\":\"21000000\",\"decimals\":8");
        rc |= put_dec(b, "initial_price", price);
    } else if (strcmp(type, "ANALYTICS_UPDATE") == 0) {
        rc |= put_dec(b, "price", price);
        rc |= put_dec(b, "volume_24h", price * amount * 12345.0);
        rc |= put_dec(b, "market_cap", price * 21000000.0);
        rc |= buf_appendf(b, ",\"holders\":%llu",
                          (unsigned long long)(100 + eventgen_rng_below(r, 100000)));
        rc |= buf_appendf(b, ",\"change_24h\":\"%.2f\"",
                          -20.0 + 40.0 * eventgen_rng_double(r));
    } else if (strcmp(type, "BALANCE_CHANGED") == 0) {
        double delta = (eventgen_rng_below(r, 2) ? 1 : -1) * amount;
        rc |= put_user(b, "user", r);
        rc |= put_dec(b, "balance", amount * 100);
        rc |= put_dec(b, "delta", delta);
        rc |= buf_appendf(b, ",\"reason\":\"%s\"",
                          eventgen_rng_below(r, 2) ? "trade" : "transfer");
    } else {
        return -1;
    }
    return rc ? -1 : 0;
}

int eventgen_build(buf *out, const eventgen_event *ev, eventgen_rng *r)
{
    size_t start = out->len;
    if (!ev->type || !ev->token || !topics_token_valid(ev->token,
                                                       strlen(ev->token)))
        return -1;
    if (buf_appendf(out, "{\"type\":\"%s\",\"timestamp\":%llu,"
                    "\"publish_us\":%llu,\"data\":{\"token\":\"%s\"",
                    ev->type, (unsigned long long)(ev->publish_us / 1000),
                    (unsigned long long)ev->publish_us, ev->token) != 0 ||
        (ev->token_seq && buf_appendf(out, ",\"token_seq\":%llu",
                                      (unsigned long long)ev->token_seq) != 0) ||
        put_fields(out, ev->type, ev->token, ev->seq, r) != 0)
        goto err;

    /* ,"pad":"xxx"}} brings the value to exactly pad_to bytes */
    static const char pad_open[] = ",\"pad\":\"";
    size_t fixed = (sizeof(pad_open) - 1) + 1 /* " */ + 2 /* }} */;
    size_t cur = out->len - start;
    if (ev->pad_to >= cur + fixed) {
        size_t n = ev->pad_to - cur - fixed;
        if (buf_append(out, pad_open, sizeof(pad_open) - 1) != 0 ||
            buf_reserve(out, n + 3) != 0)
            goto err;
        for (size_t i = 0; i < n; i++) /* readable, compressible filler */
            out->data[out->len + i] = (char)('a' + i % 26);
        out->len += n;
        if (buf_append(out, "\"", 1) != 0)
            goto err;
    }
    if (buf_append(out, "}}", 2) != 0)
        goto err;
    return 0;
err:
    out->len = start;
    return -1;
}
