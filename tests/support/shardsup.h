/*
 * Shard integration-test support (tests/it/test_shard*.c, end-to-end tests):
 *  - spawn odin-shard on a free port with its own socket and wait until both
 *    accept connections;
 *  - a fake router: connect to a shard's Unix socket, exchange HELLO, send
 *    DELIVERY frames built with proto/frame.h;
 *  - read one series from a shard's /metrics, wait for a series to reach a
 *    value.
 */
#ifndef ODIN_TESTS_SHARDSUP_H
#define ODIN_TESTS_SHARDSUP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "common/buf.h"
#include "proto/frame.h"
#include "tests/support/support.h"
#include "tests/support/wsclient.h"

typedef struct ssup_shard {
    pid_t pid;
    int port;
    char id[96];
    char sock[512];
    char redis_url[128];
} ssup_shard;

/*
 * Start odin-shard with SHARD_ID=id, WS_ADDR=127.0.0.1:<free port>,
 * SHARD_SOCKET in ODIN_TMP, REDIS_URL=redis_url (NULL: ODIN_REDIS_URL),
 * LOG_LEVEL=debug, plus extra "K=V" entries (NULL-terminated, may be NULL;
 * they override the defaults; an extra WS_ADDR sets s->port).  Waits up to 10 s for the port and socket.
 * Returns 0, or -1 (the process is stopped).
 */
int ssup_shard_start(ssup_shard *s, const char *id, const char *redis_url,
                     const char *const extra_env[]);

/* Send sig and wait up to timeout_ms; returns the waitpid status or -1. */
int ssup_shard_stop(ssup_shard *s, int sig, int timeout_ms);

/* Value of one series on the shard's /metrics, or -1; wait until it is
 * >= want / exactly want (1, or 0 on timeout): support.h's tsup_metric. */
#define ssup_metric tsup_metric
#define ssup_wait_metric tsup_wait_metric
#define ssup_wait_metric_eq tsup_wait_metric_eq

typedef struct ssup_router {
    int fd;
    frame_decoder *dec;
    frame_hello hello;        /* the shard's HELLO (strings copied below) */
    char shard_role[32];
    char shard_id[128];
} ssup_router;

/* Connect to a shard socket, read the shard's HELLO, then send ours (role
 * "router", no secret) with `version` (FRAME_PROTO_VERSION normally: it
 * names the shard's id as target and unix:<sock> as endpoint).  0 or -1.
 * r->hello.nonce is only a pointer test (set when the shard challenges). */
int ssup_router_connect(ssup_router *r, const char *sock, const char *id,
                        uint32_t version);

/* Send one DELIVERY frame with n records (targeted mode). 0 or -1. */
int ssup_router_send(ssup_router *r, const frame_record *recs, size_t n);

/* Send raw bytes. 0 or -1. */
int ssup_router_send_raw(ssup_router *r, const void *p, size_t n);

/* Wait until the shard closes the connection: 1, or 0 on timeout. */
int ssup_router_wait_closed(ssup_router *r, int timeout_ms);

void ssup_router_close(ssup_router *r);

/* A record for tests: category, token, offset, value (strings). */
frame_record ssup_rec(const char *cat, const char *tok, int64_t off,
                      int64_t ts, const char *value);

/* ---- checks (cmocka assertions: for a test's own thread) ------------------ */

/* Start a shard "<prefix>-<name>-<pid>" (ssup_shard_start, ODIN_REDIS_URL,
 * extra env) into a static ssup_shard (one at a time) and assert it
 * started. */
ssup_shard *ssup_start(const char *prefix, const char *name, const char *const env[]);

/* SIGTERM; assert the shard exited 0 within 10 s. */
void ssup_stop_ok(ssup_shard *s);

/* The next text message (malloc'd); fails the test unless one arrives
 * within timeout_ms. */
char *ssup_recv_text(wsc *c, int timeout_ms);

/* The next text message is exactly want. */
void ssup_expect_text(wsc *c, const char *want, int timeout_ms);

/* A WebSocket client on 127.0.0.1:port (asserts the 101); unless
 * channels_json is NULL, subscribed to that JSON array of channels (asserts
 * the subscription_ack within timeout_ms). */
wsc *ssup_client(int port, const char *channels_json, int timeout_ms);

#endif
