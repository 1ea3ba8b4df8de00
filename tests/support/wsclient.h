/*
 * Small blocking WebSocket client for tests (RFC 6455, text frames, masked
 * as a client must).  Every wait is bounded with poll(); nothing sleeps.
 *
 *   wsc *c = wsc_connect("127.0.0.1", port, NULL, &status);
 *   wsc_send_text(c, "{\"type\":\"heartbeat\"}");
 *   char *msg; wsc_recv_text(c, 2000, &msg); ... free(msg);
 *   wsc_send_close(c, 1000); wsc_wait_close(c, 2000); wsc_free(c);
 */
#ifndef ODIN_TESTS_WSCLIENT_H
#define ODIN_TESTS_WSCLIENT_H

#include <stddef.h>
#include <stdint.h>

typedef struct wsc_opts {
    const char *src_addr;       /* bind to this local IPv4 (127.0.0.x) */
    const char *path;           /* default "/ws" */
    int rcvbuf;                 /* SO_RCVBUF before connect if > 0 */
    int timeout_ms;             /* connect + handshake, default 5000 */
    const char *extra_headers;  /* more request header lines, each "\r\n"-ended */
} wsc_opts;

typedef struct wsc {
    int fd;
    int status;                 /* HTTP status of the upgrade response */
    uint8_t *in;                /* received, unparsed bytes */
    size_t in_len, in_cap;
    int close_code;             /* close frame received: its code (1005 none) */
    char *body;                 /* non-101 response: body (NUL-terminated) */
} wsc;

typedef struct wsc_frame {
    int opcode;                 /* 1 text, 2 binary, 8 close, 9 ping, 10 pong */
    int fin;
    uint8_t *data;              /* malloc'd, NUL-terminated; wsc_frame_free */
    size_t len;
} wsc_frame;

/*
 * Connect and upgrade.  Returns the client, or NULL if the TCP connect or
 * the upgrade failed; *status (if non-NULL) gets the HTTP status (101 on
 * success, e.g. 503/429 when refused) or -1 for network errors.  The
 * Sec-WebSocket-Accept value is checked against the key sent.
 */
wsc *wsc_connect(const char *host, int port, const wsc_opts *opts,
                 int *status);

/* Like wsc_connect but keeps the client when the server answered with a
 * non-101 status (c->status, c->body), for tests of refusals. */
wsc *wsc_connect_raw(const char *host, int port, const wsc_opts *opts);

/* Send one masked frame (fin = 1 unless told).  0 or -1. */
int wsc_send_frame(wsc *c, int opcode, int fin, const void *p, size_t n);
int wsc_send_text(wsc *c, const char *s);
/* Send bytes as they are (for malformed frames). */
int wsc_send_raw(wsc *c, const void *p, size_t n);
int wsc_send_close(wsc *c, uint16_t code);

/* Next frame.  1 with *f filled, 0 on timeout, -1 on EOF or error. */
int wsc_recv(wsc *c, int timeout_ms, wsc_frame *f);
void wsc_frame_free(wsc_frame *f);

/*
 * Next text message, answering pings and skipping pongs.  1 with *out
 * (malloc'd, NUL-terminated; *len if non-NULL), 0 on timeout, -1 on EOF,
 * -2 if a close frame arrived (c->close_code).
 */
int wsc_recv_text(wsc *c, int timeout_ms, char **out, size_t *len);

/* Read (and drop) frames until a close frame: returns its code, 1005 if it
 * had none, -1 on EOF/reset without one, -2 on timeout. */
int wsc_wait_close(wsc *c, int timeout_ms);

/* Wait for EOF from the server after the close handshake: 1 EOF, 0 timeout. */
int wsc_wait_eof(wsc *c, int timeout_ms);

void wsc_free(wsc *c);   /* closes the socket; NULL is a no-op */

#endif
