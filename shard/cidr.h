/*
 * CIDR lists ("10.0.0.0/8,172.28.0.10,::1/128"): parse once at startup,
 * match peer addresses on accept.  Pure (tests/unit/test_cidr.c); used by the shard only (WS_PROXY_TRUSTED, ADMIN_ALLOW).
 */
#ifndef ODIN_SHARD_CIDR_H
#define ODIN_SHARD_CIDR_H

#include <stddef.h>
#include <stdint.h>

typedef struct cidr {
    uint8_t len;          /* 4 (IPv4) or 16 (IPv6) */
    uint8_t bits;         /* prefix length */
    uint8_t addr[16];     /* network order, host bits cleared */
} cidr;

typedef struct cidr_list {
    cidr *v;              /* owned; freed by cidr_list_free */
    size_t n;
} cidr_list;

/*
 * Parse a comma-separated list; a bare address means /32 or /128.  Returns
 * 0, or -1 with the offending item in err (out is then empty).  An empty
 * or NULL string gives an empty list.
 */
int cidr_list_parse(const char *s, cidr_list *out, char *err, size_t errlen);
void cidr_list_free(cidr_list *l);   /* NULL or empty: no-op */

/* 1 if ip (ip_len 4 or 16 bytes, network order) is in one of the networks,
 * else 0.  An IPv4-mapped IPv6 address (::ffff:a.b.c.d) also matches the
 * IPv4 entries. */
int cidr_list_match(const cidr_list *l, const uint8_t *ip, size_t ip_len);

#endif
