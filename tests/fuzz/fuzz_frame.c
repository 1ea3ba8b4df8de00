/* libFuzzer target for the router<->shard frame decoder.
 * The input is split into chunks at positions taken from its first byte, so
 * the streaming path (partial headers, partial payloads) is fuzzed too. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)data[0] % 17 + 1;
    data++;
    size--;
    frame_decoder *d = frame_decoder_new(4096);
    if (!d)
        return 0;
    frame_msg m;
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        if (frame_decoder_feed(d, data + off, n) != FRAME_OK)
            break;
        int rc;
        while ((rc = frame_decoder_next(d, &m)) == 1) {
            /* touch every byte the decoder hands out */
            volatile unsigned sum = 0;
            for (size_t i = 0; i < m.nrecords; i++) {
                const frame_record *r = &m.records[i];
                for (size_t k = 0; k < r->value_len; k++) sum += (unsigned char)r->value[k];
                for (size_t k = 0; k < r->token_len; k++) sum += (unsigned char)r->token[k];
                for (size_t k = 0; k < r->category_len; k++) sum += (unsigned char)r->category[k];
            }
            for (size_t k = 0; k < m.hello.id_len; k++) sum += (unsigned char)m.hello.id[k];
            (void)sum;
        }
        if (rc < 0)
            break;
    }
    frame_decoder_free(d);
    return 0;
}
