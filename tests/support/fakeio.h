/*
 * Fake client connections for unit tests of the shard's client pool and
 * server (tests/unit/test_client.c, test_server.c): no sockets.  Each
 * connection is an eventfd that libevent watches like a socket (readable
 * while the fake peer has sent bytes not yet read) and two byte buffers;
 * the client_io ops (shard/client.h) read and write those buffers.
 */
#ifndef ODIN_TESTS_FAKEIO_H
#define ODIN_TESTS_FAKEIO_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <event2/event.h>
#include "common/buf.h"
#include "shard/client.h"
#include "shard/ctx.h"

#define FAKEIO_MAX 64

typedef struct fake_conn {
    int fd;             /* eventfd, the "socket" */
    buf in;             /* sent by the peer ... */
    size_t in_off;      /* ... and read up to here */
    int peer_closed;    /* read returns 0 once in is read */
    int read_errno;     /* read fails with this (0: no) */
    buf out;            /* everything the shard wrote */
    size_t out_off;     /* parsed up to here (fake_next_frame) */
    size_t write_room;  /* writev takes at most this many bytes more; then
                         * EAGAIN (SIZE_MAX: no limit) */
    int writes;         /* writev calls */
    int shut_wr;        /* shutdown(SHUT_WR) done */
    int closed;         /* close done */
    struct sockaddr_in sa;
} fake_conn;

typedef struct fakeio {
    fake_conn *c[FAKEIO_MAX];
    int n;
} fakeio;

/* Fill io with the fake ops over f. */
void fakeio_init(fakeio *f, client_io *io);
void fakeio_free(fakeio *f);
/* A new connection from 127.0.0.x:port. */
fake_conn *fakeio_conn(fakeio *f, uint8_t last_octet, uint16_t port);
fake_conn *fakeio_find(fakeio *f, int fd);

/* The peer sends bytes / a masked client frame / closes its side. */
void fake_send(fake_conn *c, const void *data, size_t len);
void fake_send_frame(fake_conn *c, int opcode, const void *payload, size_t len);
void fake_send_text(fake_conn *c, const char *text);
void fake_peer_close(fake_conn *c);
/* The upgrade request of a WebSocket client for /ws. */
void fake_send_upgrade(fake_conn *c);

/* Run 100 passes of the event loop without blocking. */
void fake_run(struct event_base *base);

/* The next whole server frame in c->out after what was parsed: 1 (opcode,
 * payload copied into *payload NUL-terminated, to free), 0 none. */
int fake_next_frame(fake_conn *c, int *opcode, char **payload, size_t *len);
/* Skip the HTTP response head at the start of out: its status, or -1. */
int fake_http_status(fake_conn *c);

/* A shard context for tests: event base, settings from argv (NULL-ended
 * flags, e.g. "--ws-send-queue-msgs=4"), channel index.  Returns 0. */
typedef struct fake_ctx {
    shard_ctx ctx;
    shard_settings set;
} fake_ctx;
int fake_ctx_init(fake_ctx *fc, const char *const *flags);
void fake_ctx_free(fake_ctx *fc);

#endif
