/* libFuzzer target for the client message parser (shard/clientmsg.c) and
 * the replies built from what it returns: every accepted channel is a valid
 * "<token>.<category>" inside the parsed document, and every error carries
 * a reason. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shard/clientmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    clientmsg m;
    buf out = { 0 };
    enum clientmsg_err e = clientmsg_parse((const char *)data, size, 16, &m);
    if (e == CLIENTMSG_OK) {
        if (m.nchannels > 16)
            abort();
        for (size_t i = 0; i < m.nchannels; i++) {
            const clientmsg_chan *c = &m.channels[i];
            if (c->len < 3 || !memchr(c->s, '.', c->len))
                abort();
        }
        if (clientmsg_build_ack(&out, m.type, m.channels, m.nchannels, m.nchannels) != 0)
            abort();
    } else {
        if (!m.errmsg[0] || !clientmsg_code(e))
            abort();
        if (clientmsg_build_error(&out, e, m.errmsg) != 0)
            abort();
    }
    clientmsg_free(&m);
    buf_free(&out);
    return 0;
}
