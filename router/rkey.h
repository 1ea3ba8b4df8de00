/*
 * Redis key and channel names of the router: REDIS_PREFIX + suffix + arg
 * (odin:route:<token>, odin:shard:<id>, odin:shards, odin:routes), built in
 * a caller-owned scratch buffer so tokens stay binary-safe.
 */
#ifndef ODIN_ROUTER_RKEY_H
#define ODIN_ROUTER_RKEY_H

#include <string.h>

#include "common/buf.h"

/* Build prefix + suffix + a[0..alen) into *b (NUL-terminated; b->len is the
 * key length without the NUL).  Returns b->data, or NULL on ENOMEM.  The
 * result is valid until *b is next changed. */
static inline const char *rkey_build(buf *b, const char *prefix, const char *suffix,
                                     const char *a, size_t alen)
{
    buf_reset(b);
    if (buf_append(b, prefix, strlen(prefix)) != 0 ||
        buf_append(b, suffix, strlen(suffix)) != 0 ||
        (alen && buf_append(b, a, alen) != 0) || buf_reserve(b, 1) != 0)
        return NULL;
    b->data[b->len] = '\0';
    return b->data;
}

#endif
