/* libFuzzer target for the PROXY protocol v2 parser (shard/proxyproto.c):
 * every prefix of the input must give "need more", a length within the
 * input, or an error; a parsed header must survive proxyproto_build. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "shard/proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    proxyproto_hdr h;
    for (size_t n = 0; n <= size; n++) {
        int r = proxyproto_parse(data, n, &h);
        if (r > 0 && ((size_t)r > n || r > PROXYPROTO_MAX_LEN))
            abort();
        if (r > 0 && h.family != AF_INET && h.family != AF_INET6 && h.family != AF_UNSPEC)
            abort();
        if (r > 0) {
            uint8_t b[64];
            proxyproto_hdr back;
            int l = proxyproto_build(&h, b, sizeof b);
            if (l < 16 || proxyproto_parse(b, (size_t)l, &back) != l ||
                back.family != h.family || memcmp(back.src, h.src, 16) != 0 ||
                back.src_port != h.src_port)
                abort();
            break;
        }
        if (r < 0)
            break;
        (void)proxyproto_sniff(data, n);
    }
    return 0;
}
