/* WebSocket frame headers, client side (contract in common/wsframe.h). */
#include "common/wsframe.h"

#include <string.h>

size_t wsframe_client_header(uint8_t out[WSFRAME_MAX_HEADER], int opcode, int fin,
                             uint64_t len, const uint8_t mask[4])
{
    size_t h = 0;
    out[h++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & (WSFRAME_RSV1 | 0x0f)));
    if (len < 126) {
        out[h++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        out[h++] = 0x80 | 126;
        out[h++] = (uint8_t)(len >> 8);
        out[h++] = (uint8_t)len;
    } else {
        out[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            out[h++] = (uint8_t)(len >> (8 * i));
    }
    memcpy(out + h, mask, 4);
    return h + 4;
}

void wsframe_mask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t off)
{
    for (size_t i = 0; i < n; i++)
        p[i] ^= mask[(off + i) & 3];
}

int wsframe_parse(const uint8_t *b, size_t n, wsframe *f)
{
    if (n < 2)
        return 0;
    memset(f, 0, sizeof *f);
    size_t h = 2;
    uint64_t len = b[1] & 0x7f;
    if (len == 126) {
        if (n < 4)
            return 0;
        len = ((uint64_t)b[2] << 8) | b[3];
        h = 4;
    } else if (len == 127) {
        if (n < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = (len << 8) | b[2 + i];
        h = 10;
    }
    f->masked = (b[1] & 0x80) != 0;
    if (f->masked) {
        if (n < h + 4)
            return 0;
        memcpy(f->mask, b + h, 4);
        h += 4;
    }
    f->opcode = b[0] & 0x0f;
    f->fin = (b[0] & 0x80) != 0;
    f->rsv1 = (b[0] & 0x40) != 0;
    f->len = len;
    f->header_len = h;
    return 1;
}
