/*
 * PROXY protocol v2 (haproxy's "send-proxy-v2"): the binary header a TCP
 * load balancer puts in front of a connection to pass on the client's
 * address.  Pure: bytes in, result out, no I/O (tests/unit/test_proxyproto.c).
 * Spec: https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt
 *
 *   12-byte signature \r\n\r\n\0\r\nQUIT\n, ver/cmd (0x20 LOCAL, 0x21
 *   PROXY), family/transport, 16-bit length, then the addresses and TLVs.
 *
 * The text form (v1, "PROXY TCP4 ...") is recognised only to be refused.
 */
#ifndef ODIN_SHARD_PROXYPROTO_H
#define ODIN_SHARD_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROXYPROTO_SIG_LEN 12
#define PROXYPROTO_HDR_LEN 16          /* fixed part, before addresses */
/* Longest header accepted (addresses + TLVs); the spec allows 65535, a
 * load balancer sends a few dozen bytes.  Checked before buffering more. */
#define PROXYPROTO_MAX_LEN (PROXYPROTO_HDR_LEN + 1024)

/* proxyproto_parse errors */
#define PROXYPROTO_E_NOT_PROXY -1   /* does not start with a PROXY header */
#define PROXYPROTO_E_V1        -2   /* a v1 (text) header: not supported */
#define PROXYPROTO_E_VERSION   -3   /* version is not 2, or unknown command */
#define PROXYPROTO_E_ADDR      -4   /* family/transport unknown, or the block
                                     * is shorter than its family's addresses */
#define PROXYPROTO_E_TOOBIG    -5   /* declared length over PROXYPROTO_MAX_LEN */

typedef struct proxyproto_hdr {
    int local;            /* LOCAL command (health check): no client address */
    int family;           /* AF_INET / AF_INET6, or AF_UNSPEC: keep the TCP
                           * peer's address (LOCAL, UNSPEC or UNIX family) */
    uint8_t src[16], dst[16];   /* network order; 4 bytes used for AF_INET */
    uint16_t src_port, dst_port;  /* host order */
} proxyproto_hdr;

/*
 * Parse a v2 header at the start of p[0..n).  Returns the header length
 * (> 0; the bytes after it belong to the application), 0 if more bytes are
 * needed to decide, or a negative PROXYPROTO_E_* code.  *out is filled
 * only on success.
 */
int proxyproto_parse(const uint8_t *p, size_t n, proxyproto_hdr *out);

/* What the first bytes of a connection look like (not an error code). */
enum proxyproto_sniff {
    PROXYPROTO_SNIFF_NO = 0,   /* not a PROXY header (e.g. "GET /ws ...") */
    PROXYPROTO_SNIFF_MAYBE,    /* a prefix of one: need more bytes */
    PROXYPROTO_SNIFF_V1,       /* "PROXY " */
    PROXYPROTO_SNIFF_V2        /* the v2 signature */
};
enum proxyproto_sniff proxyproto_sniff(const uint8_t *p, size_t n);

/* Build a v2 header (PROXY command, or LOCAL when family is AF_UNSPEC)
 * into out[cap] for tests and tools.  Returns its length, or -1 if cap is
 * too small or family unknown. */
int proxyproto_build(const proxyproto_hdr *h, uint8_t *out, size_t cap);

#endif
