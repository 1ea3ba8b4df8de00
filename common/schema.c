#include "common/schema.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

void schema_sha1_hex(const char *script, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    static const char hex[] = "0123456789abcdef";
    if (!EVP_Digest(script, strlen(script), md, &n, EVP_sha1(), NULL) || n != 20) {
        out[0] = '\0';   /* EVALSHA then fails with NOSCRIPT and EVAL is used */
        return;
    }
    for (unsigned i = 0; i < 20; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[40] = '\0';
}

void schema_random_hex(char out[33])
{
    uint8_t b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40);
        memcpy(b, &x, 8);
        memcpy(b + 8, &x, 8);
    }
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

char *schema_shard_key(const char *prefix, int cluster, const char *id,
                       const char *kind)
{
    const char *open = cluster ? "{" : "", *close = cluster ? "}" : "";
    size_t n = strlen(prefix) + strlen(id) + strlen(kind) + 16;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%sshard:%s%s%s%s", prefix, open, id, close, kind);
    return s;
}

char *schema_lease_key(const char *prefix, int cluster, const char *id)
{
    return schema_shard_key(prefix, cluster, id, SCHEMA_SHARD_LEASE);
}

char *schema_tokens_key(const char *prefix, int cluster, const char *id)
{
    return schema_shard_key(prefix, cluster, id, SCHEMA_SHARD_TOKENS);
}

char *schema_sweep_key(const char *prefix, int cluster, const char *id)
{
    return schema_shard_key(prefix, cluster, id, SCHEMA_SHARD_SWEEP);
}

/* prefix + name + arg, malloc'd. */
static char *cat(const char *prefix, const char *name, const char *arg)
{
    size_t a = strlen(prefix), b = strlen(name), c = strlen(arg);
    char *s = malloc(a + b + c + 1);
    if (!s)
        return NULL;
    memcpy(s, prefix, a);
    memcpy(s + a, name, b);
    memcpy(s + a + b, arg, c + 1);
    return s;
}

char *schema_route_key(const char *prefix, const char *token)
{
    return cat(prefix, "route:", token);
}

char *schema_route_prefix(const char *prefix)
{
    return cat(prefix, "route:", "");
}

const char *schema_route_key_buf(buf *b, const char *prefix, const char *token,
                                 size_t len)
{
    buf_reset(b);
    if (buf_append(b, prefix, strlen(prefix)) != 0 || buf_append(b, "route:", 6) != 0 ||
        (len && buf_append(b, token, len) != 0) || buf_reserve(b, 1) != 0)
        return NULL;
    b->data[b->len] = '\0';
    return b->data;
}

char *schema_shards_key(const char *prefix)
{
    return cat(prefix, "shards", "");
}

char *schema_epoch_key(const char *prefix)
{
    return cat(prefix, "epoch", "");
}

char *schema_routes_channel(const char *prefix)
{
    return cat(prefix, "routes", "");
}

char *schema_router_key(const char *prefix, const char *router_id)
{
    return cat(prefix, "router:", router_id);
}
