/* Writes a few valid frames as seed inputs for the fuzzer corpus. */
#include <stdio.h>
#include <string.h>

#include "proto/frame.h"

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    buf out = { 0 };
    char path[1024];
    buf_append(&out, "\x05", 1);      /* chunk size selector */
    frame_encode_hello(&out, "router", "r1", 4096);
    frame_batch b;
    frame_batch_begin(&b, &out, FRAME_MODE_TARGETED);
    frame_record r = { "trade", 5, "BTC", 3, 1, 42, 1700000000000, "{\"a\":1}", 7, 0 };
    frame_batch_add(&b, &r);
    r.flags = FRAME_REC_ALL_CLIENTS;
    frame_batch_add(&b, &r);
    frame_batch_end(&b);
    snprintf(path, sizeof path, "%s/seed1", argv[1]);
    FILE *f = fopen(path, "wb");
    if (!f)
        return 1;
    fwrite(out.data, 1, out.len, f);
    fclose(f);
    /* seed2: a version-2 router HELLO (target, endpoint, nonce) + an AUTH,
     * odd chunk selector so the fuzzer's handshakes run with a secret */
    buf_reset(&out);
    buf_append(&out, "\x06", 1);
    static const uint8_t nonce[FRAME_NONCE_LEN] = { 1 }, mac[FRAME_MAC_LEN] = { 2 };
    frame_hello h = { .version = FRAME_PROTO_VERSION, .role = "router", .role_len = 6,
                      .id = "r1", .id_len = 2, .max_frame = 4096, .nonce = nonce,
                      .target = "s1", .target_len = 2, .endpoint = "unix:/s.sock",
                      .endpoint_len = 12 };
    frame_encode_hello_msg(&out, &h);
    frame_encode_auth(&out, mac);
    snprintf(path, sizeof path, "%s/seed2", argv[1]);
    f = fopen(path, "wb");
    if (!f)
        return 1;
    fwrite(out.data, 1, out.len, f);
    fclose(f);
    buf_free(&out);
    return 0;
}
