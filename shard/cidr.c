/* CIDR lists (contract in cidr.h). */
#include "shard/cidr.h"
#include "common/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_one(const char *s, cidr *out)
{
    char a[64];
    const char *slash = strchr(s, '/');
    size_t al = slash ? (size_t)(slash - s) : strlen(s);
    if (al == 0 || al >= sizeof a)
        return -1;
    memcpy(a, s, al);
    a[al] = '\0';
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, a, out->addr) == 1)
        out->len = 4;
    else if (inet_pton(AF_INET6, a, out->addr) == 1)
        out->len = 16;
    else
        return -1;
    long bits = out->len * 8;
    if (slash) {
        char *end;
        errno = 0;
        bits = strtol(slash + 1, &end, 10);
        if (errno || end == slash + 1 || *end || bits < 0 || bits > out->len * 8)
            return -1;
    }
    out->bits = (uint8_t)bits;
    for (int i = 0; i < out->len; i++) {   /* clear host bits */
        int keep = (int)bits - i * 8;
        if (keep <= 0)
            out->addr[i] = 0;
        else if (keep < 8)
            out->addr[i] &= (uint8_t)(0xFF << (8 - keep));
    }
    return 0;
}

int cidr_list_parse(const char *s, cidr_list *out, char *err, size_t errlen)
{
    char **items = NULL;
    size_t n = 0;
    out->v = NULL;
    out->n = 0;
    if (addr_split_list(s, &items, &n) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (n == 0)
        return 0;
    out->v = calloc(n, sizeof *out->v);
    if (!out->v) {
        snprintf(err, errlen, "out of memory");
        addr_list_free(items, n);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (parse_one(items[i], &out->v[i]) != 0) {
            snprintf(err, errlen, "'%s' is not an address or address/bits", items[i]);
            addr_list_free(items, n);
            cidr_list_free(out);
            return -1;
        }
    }
    out->n = n;
    addr_list_free(items, n);
    return 0;
}

void cidr_list_free(cidr_list *l)
{
    if (!l)
        return;
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int in_net(const cidr *c, const uint8_t *ip)
{
    int full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr, ip, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xFF << (8 - rest));
    return (ip[full] & mask) == c->addr[full];
}

int cidr_list_match(const cidr_list *l, const uint8_t *ip, size_t ip_len)
{
    static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF };
    const uint8_t *v4 = ip_len == 4 ? ip
                      : ip_len == 16 && memcmp(ip, mapped, 12) == 0 ? ip + 12 : NULL;
    for (size_t i = 0; l && i < l->n; i++) {
        const cidr *c = &l->v[i];
        if (c->len == 16 && ip_len == 16 && in_net(c, ip))
            return 1;
        if (c->len == 4 && v4 && in_net(c, v4))
            return 1;
    }
    return 0;
}
