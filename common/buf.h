/*
 * Growable byte buffer.  A zeroed struct is an empty buffer; buf_free()
 * releases the storage and leaves an empty buffer (so it can be reused).
 * Growth is geometric; functions that grow return 0 or -1 on ENOMEM (the
 * buffer is unchanged on failure).
 */
#ifndef ODIN_COMMON_BUF_H
#define ODIN_COMMON_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct buf {
    char *data;
    size_t len;
    size_t cap;
} buf;

int  buf_reserve(buf *b, size_t extra);        /* room for `extra` more bytes */
int  buf_append(buf *b, const void *p, size_t n);
int  buf_appendf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int  buf_append_json_str(buf *b, const char *s, size_t n); /* "..." escaped */
void buf_consume(buf *b, size_t n);            /* drop n bytes from the front */
void buf_reset(buf *b);                        /* len = 0, keep storage */
void buf_free(buf *b);

/* msgpack_packer write callback: `data` is a buf *. */
int  buf_msgpack_write(void *data, const char *p, size_t n);

#endif
