/*
 * HTTP/1.x request head parser for the shard's port (GET /ws upgrade,
 * /health, /metrics), wrapping http-parser.  Pure: bytes in, fields out.
 * Header values point into the caller's buffer.
 */
#ifndef ODIN_SHARD_HTTPREQ_H
#define ODIN_SHARD_HTTPREQ_H

#include <stddef.h>

typedef struct httpreq_str {
    const char *p;
    size_t len;
} httpreq_str;

#define HTTPREQ_MAX_EXT 4

typedef struct httpreq {
    int method;                /* http-parser enum http_method (HTTP_GET..) */
    unsigned short http_major, http_minor;
    httpreq_str url;           /* as sent, "/ws?x=1" */
    httpreq_str path;          /* url without query/fragment */
    httpreq_str host;
    httpreq_str upgrade;
    httpreq_str connection;
    httpreq_str ws_key;        /* Sec-WebSocket-Key */
    httpreq_str ws_version;    /* Sec-WebSocket-Version */
    httpreq_str origin;        /* Origin (browsers send it) */
    httpreq_str ws_ext[HTTPREQ_MAX_EXT]; /* Sec-WebSocket-Extensions lines, in
                                            order (more are ignored) */
    size_t n_ws_ext;
    int dup_ws_key;            /* Sec-WebSocket-Key given more than once */
    int has_body;              /* Content-Length > 0 or chunked */
    size_t head_len;           /* bytes of the request head incl. CRLFCRLF */
} httpreq;

#define HTTPREQ_INCOMPLETE 0
#define HTTPREQ_E_TOOBIG (-1)  /* no end of head within max_head bytes */
#define HTTPREQ_E_BAD    (-2)  /* not a valid HTTP/1.x request head */

/*
 * Parse the request head at the start of data[0..len).  Returns its length
 * (> 0) with *req filled, HTTPREQ_INCOMPLETE if more bytes are needed, or a
 * negative HTTPREQ_E_* code.  Bytes after the head (a pipelined WebSocket
 * frame) are not touched.
 */
int httpreq_parse(const char *data, size_t len, size_t max_head,
                  httpreq *req);

/* Case-insensitive: does the comma-separated header value contain token? */
int httpreq_has_token(httpreq_str v, const char *token);

#endif
