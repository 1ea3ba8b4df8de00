/* libFuzzer target for the router<->shard frame decoder and the link
 * handshake (every decoded frame is also fed to a shard-side and a
 * router-side handshake, with and without a secret, until they finish).
 * The input is split into chunks at positions taken from its first byte, so
 * the streaming path (partial headers, partial payloads) is fuzzed too. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto/frame.h"
#include "proto/handshake.h"

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
    static const uint8_t nonce[FRAME_NONCE_LEN] = { 1 };
    static const char *const eps[] = { "unix:/s.sock", NULL };
    int with_secret = chunk & 1;
    handshake_cfg sc = { .role = HANDSHAKE_SHARD, .id = "s1", .max_frame = 4096,
                         .secret = with_secret ? "k" : NULL, .endpoints = eps,
                         .nonce = nonce };
    handshake_cfg rc_ = { .role = HANDSHAKE_ROUTER, .id = "r1", .max_frame = 4096,
                          .secret = with_secret ? "k" : NULL, .target = "s1",
                          .endpoint = "unix:/s.sock", .nonce = nonce };
    handshake *hs[2] = { handshake_new(&sc), handshake_new(&rc_) };
    int live[2] = { 1, 1 };
    buf out = { 0 };
    for (int k = 0; k < 2; k++)
        if (!hs[k] || handshake_start(hs[k], &out) != 0)
            live[k] = 0;
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
            for (int k = 0; k < 2; k++)
                if (live[k] && handshake_on_frame(hs[k], &m, &out) != HANDSHAKE_MORE)
                    live[k] = 0;
            buf_reset(&out);
        }
        if (rc < 0)
            break;
    }
    frame_decoder_free(d);
    handshake_free(hs[0]);
    handshake_free(hs[1]);
    buf_free(&out);
    return 0;
}
