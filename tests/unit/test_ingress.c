/*
 * shard/ingress.c without a listener: each "router" is one end of a
 * socketpair() whose other end is handed to ingress through ingress_admit
 * (shard/ingress_private.h); the connection's reads, writes and closes go
 * through a fake ingress_io that passes them on and can split reads, fill
 * the socket or fail a call.  The router's side of the handshake is the
 * real proto/handshake.c state machine.  Covered: handshake with and
 * without SHARD_INGRESS_SECRET, refusals by reason (wrong secret, identity,
 * version, protocol, oversized, garbage), the handshake deadline, the
 * pre-auth pool and per-source limits, SHARD_MAX_ROUTERS, DELIVERY records
 * to the owner in order with every field, frames split across reads,
 * frames after the handshake, a close mid-frame, read and write errors,
 * stop and free, and the counters of each.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <event2/event.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/net.h"
#include "proto/frame.h"
#include "proto/handshake.h"
#include "shard/ctx.h"
#include "shard/ingress.h"
#include "shard/ingress_private.h"

#define SECRET "s3cret"
#define SHARD_ID "s1"
#define TCP_ENDPOINT "tcp://10.0.0.1:7001"
#define SOCK_PATH "/nonexistent/odin-test-ingress.sock"   /* never bound */
#define UNIX_ENDPOINT "unix:" SOCK_PATH

/* ---- fake I/O ------------------------------------------------------------ */

typedef struct fake_io {
    size_t max_read;        /* cap on each read (0: none) */
    size_t want_preauth;    /* largest read asked for before any router authenticated */
    size_t want_max;        /* largest read asked for */
    int reads, writes, closes;
    int full_writes;        /* the next n writes find the socket full */
    int read_errno;         /* the next read fails with this errno (0: none) */
    int intr_reads;         /* the next n reads fail with EINTR */
    int closed[32];         /* fds closed, in order */
} fake_io;

/* ---- records the owner got ------------------------------------------------ */

typedef struct got_rec {
    char category[16];
    uint8_t token[32];
    size_t token_len;
    int32_t partition;
    int64_t offset, timestamp_ms;
    char value[128];         /* the first 127 bytes */
    size_t value_len;
    uint32_t flags;
} got_rec;

typedef struct env {
    struct event_base *base;
    shard_settings set;
    shard_ctx ctx;
    shard_ingress *in;
    fake_io io;
    got_rec got[64];
    int ngot;
} env;

static env E;

static ssize_t f_read(void *ud, int fd, void *p, size_t n)
{
    fake_io *f = ud;
    f->reads++;
    if (n > f->want_max)
        f->want_max = n;
    if (shard_ingress_routers(E.in) == 0 && n > f->want_preauth)
        f->want_preauth = n;
    if (f->intr_reads > 0) {
        f->intr_reads--;
        errno = EINTR;
        return -1;
    }
    if (f->read_errno) {
        errno = f->read_errno;
        f->read_errno = 0;
        return -1;
    }
    if (f->max_read && n > f->max_read)
        n = f->max_read;
    return read(fd, p, n);
}

static ssize_t f_write(void *ud, int fd, const void *p, size_t n)
{
    fake_io *f = ud;
    f->writes++;
    if (f->full_writes > 0) {
        f->full_writes--;
        return 0;
    }
    return net_write_all(fd, p, n);
}

static void f_close(void *ud, int fd)
{
    fake_io *f = ud;
    assert_true(f->closes < 32);
    f->closed[f->closes++] = fd;
    close(fd);
}

static void on_record(void *ud, const frame_record *r)
{
    env *e = ud;
    assert_true(e->ngot < 64);
    got_rec *g = &e->got[e->ngot++];
    assert_true(r->category_len < sizeof g->category);
    memcpy(g->category, r->category, r->category_len);
    g->category[r->category_len] = 0;
    assert_true(r->token_len <= sizeof g->token);
    memcpy(g->token, r->token, r->token_len);
    g->token_len = r->token_len;
    g->partition = r->partition;
    g->offset = r->offset;
    g->timestamp_ms = r->timestamp_ms;
    size_t vn = r->value_len < sizeof g->value - 1 ? r->value_len : sizeof g->value - 1;
    memcpy(g->value, r->value, vn);
    g->value[vn] = 0;
    g->value_len = r->value_len;
    g->flags = r->flags;
}

/* ---- the shard under test ------------------------------------------------- */

static int setup(void **st)
{
    (void)st;
    memset(&E, 0, sizeof E);
    E.base = event_base_new();
    assert_non_null(E.base);
    E.set.shard_id = SHARD_ID;
    E.set.endpoint = TCP_ENDPOINT;
    E.set.socket_path = SOCK_PATH;
    E.set.router_max_frame = 4096;
    E.set.max_routers = 4;
    E.set.ingress_auth_timeout_ms = 10000;
    E.set.ingress_max_pending = 8;
    E.set.ingress_ip_max_pending = 0;
    E.set.ingress_secret = NULL;
    E.ctx.base = E.base;
    E.ctx.set = &E.set;
    return 0;
}

/* Make the ingress after the test changed E.set. */
static void start(int with_fake_io)
{
    ingress_callbacks cb = { .on_record = on_record, .ud = &E };
    ingress_io io = { .read = f_read, .write = f_write, .close = f_close, .ud = &E.io };
    E.in = ingress_new_unbound(&E.ctx, &cb, with_fake_io ? &io : NULL);
    assert_non_null(E.in);
}

static int teardown(void **st)
{
    (void)st;
    shard_ingress_free(E.in);
    E.in = NULL;
    event_base_free(E.base);
    return 0;
}

/* Run what is ready now (no waiting). */
static void pump(void)
{
    for (int i = 0; i < 8; i++)
        event_base_loop(E.base, EVLOOP_NONBLOCK);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Run the loop, timers included, until *v == want or max_ms passed. */
static void run_until_int(const uint64_t *v, uint64_t want, int max_ms)
{
    uint64_t end = now_ms() + (uint64_t)max_ms;
    while (*v != want && now_ms() < end) {
        struct timeval tv = { 0, 5000 };
        event_base_loopexit(E.base, &tv);
        event_base_loop(E.base, 0);
    }
}

static uint64_t refused(enum shard_ingress_refusal_idx i)
{
    return E.ctx.m.shard_ingress_refused_total[i];
}

static uint64_t refused_all(void)
{
    uint64_t n = 0;
    for (int i = 0; i < SM_INGRESS_N; i++)
        n += E.ctx.m.shard_ingress_refused_total[i];
    return n;
}

/* ---- the router's end ------------------------------------------------------ */

typedef struct rlink {
    int fd;              /* the router's end */
    int shard_fd;        /* the end ingress got */
    handshake *hs;
    frame_decoder *dec;
    buf out;
    int state;           /* last handshake_on_frame result */
    int frames;          /* frames received from the shard */
    int auths;           /* of which AUTH */
    int eof;             /* the shard closed */
} rlink;

/* A connection from peer (NULL: a Unix-socket peer) handed to ingress.
 * Returns ingress_admit's result. */
static int rlink_open(rlink *r, const struct sockaddr *peer, socklen_t peerlen)
{
    memset(r, 0, sizeof *r);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    r->fd = sv[1];
    r->shard_fd = sv[0];
    r->dec = frame_decoder_new(FRAME_DEFAULT_MAX);
    assert_non_null(r->dec);
    return ingress_admit(E.in, sv[0], peer, peerlen);
}

static void rlink_free(rlink *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    handshake_free(r->hs);
    r->hs = NULL;
    frame_decoder_free(r->dec);
    r->dec = NULL;
    buf_free(&r->out);
}

static void rlink_send(rlink *r, const void *p, size_t n)
{
    ssize_t w = net_write_all(r->fd, p, n);
    if (w != (ssize_t)n)
        fprintf(stderr, "rlink_send fd %d: %zd (%s)\n", r->fd, w, strerror(errno));
    assert_int_equal(w, (ssize_t)n);
}

/* Send what the router's handshake queued (nothing once the shard closed). */
static void rlink_flush(rlink *r)
{
    if (r->out.len && !r->eof) {
        rlink_send(r, r->out.data, r->out.len);
        buf_reset(&r->out);
    }
}

/* Start the router's handshake (HELLO sent). */
static void rlink_hello(rlink *r, const char *secret, const char *target,
                        const char *endpoint)
{
    handshake_cfg c = { .role = HANDSHAKE_ROUTER, .id = "r1", .max_frame = 1u << 20,
                        .secret = secret, .target = target, .endpoint = endpoint };
    r->hs = handshake_new(&c);
    assert_non_null(r->hs);
    assert_int_equal(handshake_start(r->hs, &r->out), 0);
    r->state = HANDSHAKE_MORE;
    rlink_flush(r);
}

/* Read what the shard sent; handshake frames go to the router's state
 * machine and its answer (AUTH) is sent. */
static void rlink_poll(rlink *r)
{
    uint8_t b[8192];
    for (;;) {
        ssize_t n = read(r->fd, b, sizeof b);
        if (n == 0) {
            r->eof = 1;
            break;
        }
        if (n < 0) {
            assert_true(errno == EAGAIN || errno == ECONNRESET);
            if (errno == ECONNRESET)
                r->eof = 1;
            break;
        }
        assert_int_equal(frame_decoder_feed(r->dec, b, (size_t)n), FRAME_OK);
    }
    frame_msg m;
    int rc;
    while ((rc = frame_decoder_next(r->dec, &m)) == 1) {
        r->frames++;
        r->auths += m.type == FRAME_AUTH;
        if (r->hs && r->state == HANDSHAKE_MORE)
            r->state = handshake_on_frame(r->hs, &m, &r->out);
    }
    assert_int_equal(rc, 0);
    rlink_flush(r);
}

/* Run ingress and the router in turn until nothing moves. */
static void exchange(rlink *r)
{
    for (int i = 0; i < 4; i++) {
        pump();
        rlink_poll(r);
    }
}

/* A router through the whole handshake with `secret`. */
static void rlink_up(rlink *r, const char *secret)
{
    int routers = shard_ingress_routers(E.in);
    assert_int_equal(rlink_open(r, NULL, 0), 0);
    rlink_hello(r, secret, SHARD_ID, UNIX_ENDPOINT);
    exchange(r);
    assert_int_equal(r->state, HANDSHAKE_DONE);
    assert_false(r->eof);
    assert_int_equal(shard_ingress_routers(E.in), routers + 1);
}

/* One DELIVERY frame of n records; record k is built by mkrec. */
static void mkrec(frame_record *rec, int k, char *val, size_t vsz)
{
    static const char *cats[] = { "trade", "liquidity", "social" };
    static const uint8_t tok[] = { 0x00, 0xff, 'B', 'T', 'C' };   /* binary-safe */
    int n = snprintf(val, vsz, "{\"k\":%d}", k);
    *rec = (frame_record){
        .category = cats[k % 3], .category_len = strlen(cats[k % 3]),
        .token = (const char *)tok, .token_len = 2 + (size_t)(k % 4),
        .partition = k, .offset = 1000000000000LL + k,
        .timestamp_ms = 1700000000000LL + 7 * k,
        .value = val, .value_len = (size_t)n,
        .flags = (k % 2) ? FRAME_REC_ALL_CLIENTS : 0,
    };
}

static void delivery(buf *out, int first, int n)
{
    frame_batch b;
    assert_int_equal(frame_batch_begin(&b, out, FRAME_MODE_TARGETED), FRAME_OK);
    for (int k = first; k < first + n; k++) {
        frame_record rec;
        char val[32];
        mkrec(&rec, k, val, sizeof val);
        assert_int_equal(frame_batch_add(&b, &rec), FRAME_OK);
    }
    assert_int_equal(frame_batch_end(&b), FRAME_OK);
}

/* The owner got records first .. first+n-1, in order, every field right. */
static void expect_records(int at, int first, int n)
{
    assert_true(E.ngot >= at + n);
    for (int i = 0; i < n; i++) {
        frame_record want;
        char val[32];
        mkrec(&want, first + i, val, sizeof val);
        const got_rec *g = &E.got[at + i];
        assert_string_equal(g->category, want.category);
        assert_int_equal(g->token_len, want.token_len);
        assert_memory_equal(g->token, want.token, want.token_len);
        assert_int_equal(g->partition, want.partition);
        assert_int_equal(g->offset, want.offset);
        assert_int_equal(g->timestamp_ms, want.timestamp_ms);
        assert_int_equal(g->value_len, want.value_len);
        assert_string_equal(g->value, val);
        assert_int_equal(g->flags, want.flags);
    }
}

/* A frame holding `payload` as is. */
static void raw_frame(buf *out, const void *payload, uint32_t n)
{
    uint8_t h[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };
    assert_int_equal(buf_append(out, h, 4), 0);
    assert_int_equal(buf_append(out, payload, n), 0);
}

static socklen_t ip4(struct sockaddr_storage *ss, const char *a)
{
    struct sockaddr_in *s = (struct sockaddr_in *)ss;
    memset(ss, 0, sizeof *ss);
    s->sin_family = AF_INET;
    s->sin_port = htons(40000);
    assert_int_equal(inet_pton(AF_INET, a, &s->sin_addr), 1);
    return sizeof *s;
}

static socklen_t ip6(struct sockaddr_storage *ss, const char *a)
{
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof *ss);
    s->sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, a, &s->sin6_addr), 1);
    return sizeof *s;
}

static int was_closed(int fd)
{
    for (int i = 0; i < E.io.closes; i++)
        if (E.io.closed[i] == fd)
            return 1;
    return 0;
}

/* ---- tests ------------------------------------------------------------------ */

/* No secret on either side: HELLOs only, then the router counts. */
static void test_handshake_no_secret(void **st)
{
    (void)st;
    start(1);
    rlink r;
    assert_int_equal(rlink_open(&r, NULL, 0), 0);
    assert_int_equal(shard_ingress_pending(E.in), 1);
    assert_int_equal(shard_ingress_routers(E.in), 0);
    assert_int_equal(E.ctx.m.shard_router_connections_total, 1);
    rlink_hello(&r, NULL, SHARD_ID, TCP_ENDPOINT);
    exchange(&r);
    assert_int_equal(r.state, HANDSHAKE_DONE);
    assert_int_equal(r.auths, 0);
    assert_int_equal(shard_ingress_pending(E.in), 0);
    assert_int_equal(shard_ingress_routers(E.in), 1);
    assert_int_equal(E.ctx.m.shard_frames_received_total, 1);   /* HELLO */
    assert_int_equal(E.ctx.m.shard_frames_errors_total, 0);
    assert_int_equal(refused_all(), 0);
    assert_int_equal(E.io.closes, 0);
    rlink_free(&r);
}

/* With SHARD_INGRESS_SECRET: AUTH both ways, the shard's only after the
 * router's verified; the real syscalls (no io seam). */
static void test_handshake_secret(void **st)
{
    (void)st;
    E.set.ingress_secret = SECRET;
    start(0);
    rlink r;
    rlink_up(&r, SECRET);
    assert_int_equal(r.auths, 1);
    assert_int_equal(r.frames, 2);                               /* HELLO, AUTH */
    assert_int_equal(handshake_authenticated(r.hs), 1);
    assert_int_equal(shard_ingress_pending(E.in), 0);
    assert_int_equal(E.ctx.m.shard_frames_received_total, 2);   /* HELLO, AUTH */
    assert_int_equal(E.ctx.m.shard_ingress_auth_failures_total, 0);
    assert_int_equal(refused_all(), 0);
    rlink_free(&r);
}

/* A wrong secret: refused at the router's AUTH, counted, closed, and the
 * shard never sends its own AUTH. */
static void test_bad_secret(void **st)
{
    (void)st;
    E.set.ingress_secret = SECRET;
    start(1);
    rlink r;
    assert_int_equal(rlink_open(&r, NULL, 0), 0);
    rlink_hello(&r, "wrong", SHARD_ID, UNIX_ENDPOINT);
    exchange(&r);
    assert_true(r.eof);
    assert_int_equal(r.auths, 0);
    assert_int_not_equal(r.state, HANDSHAKE_DONE);
    assert_int_equal(E.ctx.m.shard_ingress_auth_failures_total, 1);
    assert_int_equal(E.ctx.m.shard_frames_errors_total, 1);
    assert_int_equal(refused_all(), 0);              /* auth failures are their own counter */
    assert_int_equal(shard_ingress_routers(E.in), 0);
    assert_int_equal(shard_ingress_pending(E.in), 0);
    assert_int_equal(E.io.closes, 1);
    assert_true(was_closed(r.shard_fd));
    rlink_free(&r);

    /* a router without any secret at a shard that has one: refused too */
    rlink q;
    assert_int_equal(rlink_open(&q, NULL, 0), 0);
    rlink_hello(&q, NULL, SHARD_ID, UNIX_ENDPOINT);
    exchange(&q);
    assert_true(q.eof);
    assert_int_equal(E.ctx.m.shard_ingress_auth_failures_total, 2);
    assert_int_equal(shard_ingress_routers(E.in), 0);
    rlink_free(&q);
}

/* The router's HELLO names another shard, or an endpoint that is not ours:
 * a misrouted or relayed link, refused as "identity". */
static void test_identity_refused(void **st)
{
    (void)st;
    start(1);
    rlink r;
    assert_int_equal(rlink_open(&r, NULL, 0), 0);
    rlink_hello(&r, NULL, "s2", UNIX_ENDPOINT);
    exchange(&r);
    assert_true(r.eof);
    assert_int_equal(refused(SM_INGRESS_IDENTITY), 1);
    rlink_free(&r);

    assert_int_equal(rlink_open(&r, NULL, 0), 0);
    rlink_hello(&r, NULL, SHARD_ID, "unix:/elsewhere.sock");
    exchange(&r);
    assert_true(r.eof);
    assert_int_equal(refused(SM_INGRESS_IDENTITY), 2);
    assert_int_equal(E.ctx.m.shard_frames_errors_total, 2);
    assert_int_equal(shard_ingress_routers(E.in), 0);
    assert_int_equal(shard_ingress_pending(E.in), 0);
    rlink_free(&r);
}

/* A version-1 HELLO, a DELIVERY before the handshake and garbage: each
 * refused by its reason, nothing handed to the owner. */
static void test_protocol_refusals(void **st)
{
    (void)st;
    start(1);
    rlink r;
    buf b = { 0 };

    /* [1, 1, "router", "r1", 2048] */
    static const uint8_t v1[] = { 0x95, 0x01, 0x01, 0xa6, 'r', 'o', 'u', 't', 'e', 'r',
                                  0xa2, 'r', '1', 0xcd, 0x08, 0x00 };
    assert_int_equal(rlink_open(&r, NULL, 0), 0);
    raw_frame(&b, v1, sizeof v1);
    rlink_send(&r, b.data, b.len);
    exchange(&r);
    assert_true(r.eof);
    assert_int_equal(refused(SM_INGRESS_VERSION), 1);
    rlink_free(&r);

    buf_reset(&b);
    assert_int_equal(rlink_open(&r, NULL, 0), 0);
    delivery(&b, 0, 1);
    rlink_send(&r, b.data, b.len);
    exchange(&r);
    assert_true(r.eof);
    assert_int_equal(refused(SM_INGRESS_PROTOCOL), 1);
    rlink_free(&r);

    buf_reset(&b);
    assert_int_equal(rlink_open(&r, NULL, 0), 0);
    static const uint8_t junk[] = { 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1 };
    raw_frame(&b, junk, sizeof junk);
    rlink_send(&r, b.data, b.len);
    exchange(&r);
    assert_true(r.eof);
    assert_int_equal(refused(SM_INGRESS_PROTOCOL), 2);

    assert_int_equal(E.ngot, 0);
    assert_int_equal(E.ctx.m.shard_frames_errors_total, 3);
    assert_int_equal(shard_ingress_pending(E.in), 0);
    assert_int_equal(E.io.closes, 3);
    rlink_free(&r);
    buf_free(&b);
}

/* Before AUTH a frame may be no larger than a handshake, however big
 * SHARD_MAX_FRAME is; and ingress reads no more than two such frames at a
 * time. */
static void test_oversized_before_auth(void **st)
{
    (void)st;
    E.set.router_max_frame = 1 << 20;
    start(1);
    rlink r;
    assert_int_equal(rlink_open(&r, NULL, 0), 0);
    uint8_t h[4] = { 0, 0, (FRAME_HANDSHAKE_MAX + 1) >> 8, (FRAME_HANDSHAKE_MAX + 1) & 0xff };
    rlink_send(&r, h, 4);
    exchange(&r);
    assert_true(r.eof);
    assert_int_equal(refused(SM_INGRESS_OVERSIZED), 1);
    assert_int_equal(refused_all(), 1);
    assert_int_equal(E.ctx.m.shard_frames_errors_total, 1);
    assert_int_equal(E.ctx.m.shard_frames_received_total, 0);
    assert_true(E.io.want_preauth > 0);
    assert_true(E.io.want_preauth <= 2 * (FRAME_HANDSHAKE_MAX + FRAME_HEADER_LEN));
    rlink_free(&r);
}

/* A peer that never sends HELLO, and one that sends HELLO but never its
 * AUTH, are closed at SHARD_INGRESS_AUTH_TIMEOUT_MS and counted. */
static void test_deadline(void **st)
{
    (void)st;
    E.set.ingress_secret = SECRET;
    E.set.ingress_auth_timeout_ms = 60;
    start(1);
    rlink silent, stuck;
    assert_int_equal(rlink_open(&silent, NULL, 0), 0);
    assert_int_equal(rlink_open(&stuck, NULL, 0), 0);
    handshake_cfg c = { .role = HANDSHAKE_ROUTER, .id = "r1", .max_frame = 4096,
                        .secret = SECRET, .target = SHARD_ID, .endpoint = UNIX_ENDPOINT };
    stuck.hs = handshake_new(&c);
    assert_non_null(stuck.hs);
    assert_int_equal(handshake_start(stuck.hs, &stuck.out), 0);
    rlink_flush(&stuck);       /* HELLO, and then nothing: AUTH never sent */
    pump();
    assert_int_equal(shard_ingress_pending(E.in), 2);
    assert_int_equal(refused(SM_INGRESS_TIMEOUT), 0);
    run_until_int(&E.ctx.m.shard_ingress_refused_total[SM_INGRESS_TIMEOUT], 2, 3000);
    assert_int_equal(refused(SM_INGRESS_TIMEOUT), 2);
    assert_int_equal(shard_ingress_pending(E.in), 0);
    assert_int_equal(shard_ingress_routers(E.in), 0);
    assert_true(was_closed(silent.shard_fd));
    assert_true(was_closed(stuck.shard_fd));
    rlink_poll(&silent);
    rlink_poll(&stuck);
    assert_true(silent.eof);
    assert_true(stuck.eof);
    assert_int_equal(stuck.auths, 0);
    rlink_free(&silent);
    rlink_free(&stuck);
}

/* An authenticated router outlives the handshake deadline. */
static void test_deadline_not_after_auth(void **st)
{
    (void)st;
    E.set.ingress_secret = SECRET;
    E.set.ingress_auth_timeout_ms = 30;
    start(1);
    rlink r;
    rlink_up(&r, SECRET);
    uint64_t never = 1;
    run_until_int(&never, 0, 150);
    assert_int_equal(refused_all(), 0);
    assert_int_equal(shard_ingress_routers(E.in), 1);
    assert_int_equal(E.io.closes, 0);
    buf b = { 0 };
    delivery(&b, 0, 1);
    rlink_send(&r, b.data, b.len);
    pump();
    assert_int_equal(E.ngot, 1);
    buf_free(&b);
    rlink_free(&r);
}

/* SHARD_INGRESS_MAX_PENDING: the pool of unauthenticated links is full; a
 * link that authenticates leaves it. */
static void test_pending_pool(void **st)
{
    (void)st;
    E.set.ingress_max_pending = 2;
    start(1);
    rlink a, b, c, d;
    assert_int_equal(rlink_open(&a, NULL, 0), 0);
    assert_int_equal(rlink_open(&b, NULL, 0), 0);
    assert_int_equal(rlink_open(&c, NULL, 0), -1);
    assert_int_equal(refused(SM_INGRESS_PENDING_FULL), 1);
    assert_true(was_closed(c.shard_fd));
    rlink_poll(&c);
    assert_true(c.eof);
    assert_int_equal(c.frames, 0);      /* not even our HELLO */
    assert_int_equal(shard_ingress_pending(E.in), 2);
    assert_int_equal(E.ctx.m.shard_router_connections_total, 2);

    rlink_hello(&a, NULL, SHARD_ID, UNIX_ENDPOINT);
    exchange(&a);
    assert_int_equal(a.state, HANDSHAKE_DONE);
    assert_int_equal(shard_ingress_pending(E.in), 1);
    assert_int_equal(rlink_open(&d, NULL, 0), 0);
    assert_int_equal(shard_ingress_pending(E.in), 2);
    assert_int_equal(refused(SM_INGRESS_PENDING_FULL), 1);
    rlink_free(&a);
    rlink_free(&b);
    rlink_free(&c);
    rlink_free(&d);
}

/* SHARD_INGRESS_IP_MAX_PENDING: per source address; every Unix-socket peer
 * is one source. */
static void test_pending_per_source(void **st)
{
    (void)st;
    E.set.ingress_ip_max_pending = 1;
    start(1);
    struct sockaddr_storage s1, s2, s6;
    socklen_t l1 = ip4(&s1, "10.0.0.1"), l2 = ip4(&s2, "10.0.0.2");
    socklen_t l6 = ip6(&s6, "2001:db8::1");
    rlink r[7];
    assert_int_equal(rlink_open(&r[0], (struct sockaddr *)&s1, l1), 0);
    assert_int_equal(rlink_open(&r[1], (struct sockaddr *)&s1, l1), -1);
    assert_int_equal(refused(SM_INGRESS_SOURCE), 1);
    assert_int_equal(rlink_open(&r[2], (struct sockaddr *)&s2, l2), 0);
    assert_int_equal(rlink_open(&r[3], (struct sockaddr *)&s6, l6), 0);
    assert_int_equal(rlink_open(&r[4], (struct sockaddr *)&s6, l6), -1);
    assert_int_equal(rlink_open(&r[5], NULL, 0), 0);
    assert_int_equal(rlink_open(&r[6], NULL, 0), -1);
    assert_int_equal(refused(SM_INGRESS_SOURCE), 3);
    assert_int_equal(refused_all(), 3);
    assert_int_equal(shard_ingress_pending(E.in), 4);
    /* once 10.0.0.1's link authenticated, that source may open another */
    rlink_hello(&r[0], NULL, SHARD_ID, TCP_ENDPOINT);
    exchange(&r[0]);
    assert_int_equal(r[0].state, HANDSHAKE_DONE);
    rlink_free(&r[1]);
    assert_int_equal(rlink_open(&r[1], (struct sockaddr *)&s1, l1), 0);
    assert_int_equal(refused(SM_INGRESS_SOURCE), 3);
    for (int i = 0; i < 7; i++)
        rlink_free(&r[i]);
}

/* SHARD_MAX_ROUTERS: one router too many is refused after its handshake;
 * the ones in keep working. */
static void test_max_routers(void **st)
{
    (void)st;
    E.set.max_routers = 1;
    start(1);
    rlink a, b;
    rlink_up(&a, NULL);
    assert_int_equal(rlink_open(&b, NULL, 0), 0);
    rlink_hello(&b, NULL, SHARD_ID, UNIX_ENDPOINT);
    exchange(&b);
    assert_true(b.eof);
    assert_int_equal(refused(SM_INGRESS_MAX_ROUTERS), 1);
    assert_int_equal(shard_ingress_routers(E.in), 1);
    assert_int_equal(shard_ingress_pending(E.in), 0);
    buf d = { 0 };
    delivery(&d, 0, 2);
    rlink_send(&a, d.data, d.len);
    pump();
    expect_records(0, 0, 2);
    /* a's slot frees when it leaves */
    rlink_free(&a);
    pump();
    assert_int_equal(shard_ingress_routers(E.in), 0);
    rlink_free(&b);
    rlink_up(&b, NULL);
    buf_free(&d);
    rlink_free(&b);
}

/* DELIVERY records reach the owner in the order of the link, every field
 * as sent, several frames in one read. */
static void test_records_in_order(void **st)
{
    (void)st;
    start(1);
    rlink r;
    rlink_up(&r, NULL);
    uint64_t frames = E.ctx.m.shard_frames_received_total;
    buf b = { 0 };
    delivery(&b, 0, 3);
    delivery(&b, 3, 1);
    delivery(&b, 4, 5);
    rlink_send(&r, b.data, b.len);
    pump();
    assert_int_equal(E.ngot, 9);
    expect_records(0, 0, 9);
    assert_int_equal(E.ctx.m.shard_frames_received_total, frames + 3);
    assert_int_equal(E.ctx.m.shard_frames_errors_total, 0);
    /* an authenticated link reads more than a handshake's worth at once */
    assert_true(E.io.want_max > 2 * (FRAME_HANDSHAKE_MAX + FRAME_HEADER_LEN));
    /* an empty DELIVERY is a frame with nothing to hand on */
    buf_reset(&b);
    delivery(&b, 0, 0);
    rlink_send(&r, b.data, b.len);
    pump();
    assert_int_equal(E.ngot, 9);
    assert_int_equal(E.ctx.m.shard_frames_received_total, frames + 4);
    assert_int_equal(shard_ingress_routers(E.in), 1);
    buf_free(&b);
    rlink_free(&r);
}

/* The router's last handshake frame and a DELIVERY larger than any
 * handshake frame in one write: the records are handed on once the link is
 * up, from the same read. */
static void test_delivery_behind_handshake(void **st)
{
    (void)st;
    E.set.ingress_secret = SECRET;
    start(1);
    rlink r;
    assert_int_equal(rlink_open(&r, NULL, 0), 0);
    rlink_hello(&r, SECRET, SHARD_ID, UNIX_ENDPOINT);
    pump();
    /* the shard's HELLO arrives; hold the router's AUTH back */
    uint8_t b[4096];
    ssize_t n = read(r.fd, b, sizeof b);
    assert_true(n > 0);
    assert_int_equal(frame_decoder_feed(r.dec, b, (size_t)n), FRAME_OK);
    frame_msg m;
    assert_int_equal(frame_decoder_next(r.dec, &m), 1);
    assert_int_equal(handshake_on_frame(r.hs, &m, &r.out), HANDSHAKE_MORE);
    assert_true(r.out.len > 0);                       /* AUTH_r */
    frame_batch fb;
    char big[3000];
    memset(big, 'v', sizeof big);
    frame_record rec = { .category = "trade", .category_len = 5, .token = "T",
                         .token_len = 1, .value = big, .value_len = sizeof big };
    assert_int_equal(frame_batch_begin(&fb, &r.out, FRAME_MODE_TARGETED), FRAME_OK);
    assert_int_equal(frame_batch_add(&fb, &rec), FRAME_OK);
    assert_int_equal(frame_batch_end(&fb), FRAME_OK);
    assert_true(frame_batch_size(&fb) > FRAME_HANDSHAKE_MAX);
    rlink_flush(&r);                                  /* AUTH_r + DELIVERY */
    pump();
    assert_int_equal(shard_ingress_routers(E.in), 1);
    assert_int_equal(E.ngot, 1);
    assert_int_equal(E.got[0].value_len, sizeof big);
    assert_string_equal(E.got[0].category, "trade");
    assert_int_equal(E.ctx.m.shard_frames_received_total, 3);
    assert_int_equal(E.ctx.m.shard_frames_errors_total, 0);
    rlink_free(&r);
}

/* Every frame, handshake included, arriving a few bytes per read; and a
 * frame sent in two halves is handed on only when complete. */
static void test_split_reads(void **st)
{
    (void)st;
    E.set.ingress_secret = SECRET;
    E.io.max_read = 3;
    start(1);
    rlink r;
    rlink_up(&r, SECRET);
    buf b = { 0 };
    delivery(&b, 0, 4);
    delivery(&b, 4, 2);
    rlink_send(&r, b.data, b.len);
    int reads = E.io.reads;
    for (int i = 0; i < 200 && E.ngot < 6; i++)
        pump();
    assert_int_equal(E.ngot, 6);
    expect_records(0, 0, 6);
    assert_true(E.io.reads - reads >= (int)(b.len / 3));

    E.io.max_read = 0;
    buf_reset(&b);
    delivery(&b, 6, 3);
    size_t half = b.len / 2;
    rlink_send(&r, b.data, half);
    pump();
    assert_int_equal(E.ngot, 6);
    rlink_send(&r, b.data + half, b.len - half);
    pump();
    assert_int_equal(E.ngot, 9);
    expect_records(6, 6, 3);
    assert_int_equal(E.ctx.m.shard_frames_errors_total, 0);
    buf_free(&b);
    rlink_free(&r);
}

/* After the handshake: a frame over SHARD_MAX_FRAME, garbage, a second
 * HELLO or an AUTH each close the link as a frame error, without a
 * refusal (the router was in) and without records. */
static void test_bad_frames_after_auth(void **st)
{
    (void)st;
    E.set.router_max_frame = 4096;
    start(1);
    buf b = { 0 };
    rlink r;

    rlink_up(&r, NULL);
    uint8_t h[4] = { 0, 0, 0x10, 0x01 };                   /* 4097 > 4096 */
    rlink_send(&r, h, 4);
    exchange(&r);
    assert_true(r.eof);
    assert_int_equal(E.ctx.m.shard_frames_errors_total, 1);
    assert_int_equal(shard_ingress_routers(E.in), 0);
    rlink_free(&r);

    /* a frame of exactly SHARD_MAX_FRAME is fine */
    rlink_up(&r, NULL);
    frame_batch fb;
    char big[4096];
    memset(big, 'x', sizeof big);
    frame_record rec = { .category = "t", .category_len = 1, .token = "T", .token_len = 1,
                         .value = big };
    /* the value length that makes the payload exactly 4096 bytes */
    for (size_t v = 3900; v < 4096; v++) {
        buf_reset(&b);
        rec.value_len = v;
        assert_int_equal(frame_batch_begin(&fb, &b, FRAME_MODE_BROADCAST), FRAME_OK);
        assert_int_equal(frame_batch_add(&fb, &rec), FRAME_OK);
        assert_int_equal(frame_batch_end(&fb), FRAME_OK);
        if (b.len - 4 == 4096)
            break;
    }
    assert_int_equal(b.len - 4, 4096);
    rlink_send(&r, b.data, b.len);
    pump();
    assert_int_equal(E.ngot, 1);
    assert_int_equal(E.ctx.m.shard_frames_errors_total, 1);
    assert_int_equal(shard_ingress_routers(E.in), 1);

    buf_reset(&b);
    static const uint8_t junk[] = { 0x92, 0x02, 0xc1 };
    raw_frame(&b, junk, sizeof junk);
    rlink_send(&r, b.data, b.len);
    exchange(&r);
    assert_true(r.eof);
    assert_int_equal(E.ctx.m.shard_frames_errors_total, 2);
    rlink_free(&r);

    rlink_up(&r, NULL);
    buf_reset(&b);
    assert_int_equal(frame_encode_hello(&b, "router", "r1", 4096), FRAME_OK);
    rlink_send(&r, b.data, b.len);
    exchange(&r);
    assert_true(r.eof);
    assert_int_equal(E.ctx.m.shard_frames_errors_total, 3);
    rlink_free(&r);

    rlink_up(&r, NULL);
    buf_reset(&b);
    uint8_t mac[FRAME_MAC_LEN] = { 0 };
    assert_int_equal(frame_encode_auth(&b, mac), FRAME_OK);
    rlink_send(&r, b.data, b.len);
    exchange(&r);
    assert_true(r.eof);
    assert_int_equal(E.ctx.m.shard_frames_errors_total, 4);

    assert_int_equal(E.ngot, 1);
    assert_int_equal(refused_all(), 0);
    assert_int_equal(shard_ingress_routers(E.in), 0);
    assert_int_equal(E.io.closes, 4);
    rlink_free(&r);
    buf_free(&b);
}

/* The router closes in the middle of a frame: the complete frames before
 * it were handed on, the half one is not, the slot is freed, and a peer
 * closing is no frame error. */
static void test_close_mid_frame(void **st)
{
    (void)st;
    start(1);
    rlink r;
    rlink_up(&r, NULL);
    buf b = { 0 };
    delivery(&b, 0, 2);
    size_t first = b.len;
    delivery(&b, 2, 2);
    rlink_send(&r, b.data, first + (b.len - first) / 2);
    int shard_fd = r.shard_fd;
    rlink_free(&r);
    pump();
    assert_int_equal(E.ngot, 2);
    expect_records(0, 0, 2);
    assert_int_equal(shard_ingress_routers(E.in), 0);
    assert_int_equal(shard_ingress_pending(E.in), 0);
    assert_true(was_closed(shard_fd));
    assert_int_equal(E.io.closes, 1);
    assert_int_equal(E.ctx.m.shard_frames_errors_total, 0);
    buf_free(&b);
}

/* A read error closes the link (not a frame error); EINTR is retried. */
static void test_read_errors(void **st)
{
    (void)st;
    start(1);
    rlink r;
    rlink_up(&r, NULL);
    buf b = { 0 };
    delivery(&b, 0, 1);
    E.io.intr_reads = 2;
    rlink_send(&r, b.data, b.len);
    pump();
    assert_int_equal(E.ngot, 1);
    assert_int_equal(shard_ingress_routers(E.in), 1);

    E.io.read_errno = ECONNRESET;
    rlink_send(&r, b.data, b.len);
    exchange(&r);
    assert_true(r.eof);
    assert_int_equal(E.ngot, 1);
    assert_int_equal(shard_ingress_routers(E.in), 0);
    assert_int_equal(E.ctx.m.shard_frames_errors_total, 0);
    assert_int_equal(E.io.closes, 1);
    buf_free(&b);
    rlink_free(&r);
}

/* The socket is full when our HELLO is due: it waits for EV_WRITE and goes
 * out then, and the handshake completes. */
static void test_write_would_block(void **st)
{
    (void)st;
    E.set.ingress_secret = SECRET;
    start(1);
    E.io.full_writes = 1;
    rlink r;
    assert_int_equal(rlink_open(&r, NULL, 0), 0);
    assert_int_equal(E.io.writes, 1);
    rlink_hello(&r, SECRET, SHARD_ID, UNIX_ENDPOINT);
    rlink_poll(&r);
    assert_int_equal(r.frames, 0);       /* nothing went out yet */
    pump();
    rlink_poll(&r);
    assert_int_equal(r.frames, 1);       /* our HELLO, on EV_WRITE */
    assert_int_equal(E.io.writes, 2);
    E.io.full_writes = 1;                /* and our AUTH finds it full too */
    int writes = E.io.writes;
    exchange(&r);
    assert_true(E.io.writes >= writes + 2);
    assert_int_equal(r.state, HANDSHAKE_DONE);
    assert_int_equal(r.auths, 1);
    assert_int_equal(shard_ingress_routers(E.in), 1);
    rlink_free(&r);
    pump();
    assert_int_equal(shard_ingress_routers(E.in), 0);
}

/* A write that fails at once: the connection is closed inside
 * ingress_admit, which still took the fd. */
static void test_write_error(void **st)
{
    (void)st;
    start(1);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    close(sv[1]);                        /* the router is gone already: EPIPE */
    assert_int_equal(ingress_admit(E.in, sv[0], NULL, 0), 0);
    assert_true(was_closed(sv[0]));
    assert_int_equal(shard_ingress_pending(E.in), 0);
    assert_int_equal(E.ctx.m.shard_router_connections_total, 1);
    assert_int_equal(E.ctx.m.shard_frames_errors_total, 0);
    assert_int_equal(refused_all(), 0);
    pump();
}

/* Stopped: no new links, no more reads; free closes every link. */
static void test_stop_and_free(void **st)
{
    (void)st;
    start(1);
    rlink a, p;
    rlink_up(&a, NULL);
    assert_int_equal(rlink_open(&p, NULL, 0), 0);
    shard_ingress_stop(E.in);
    rlink q;
    assert_int_equal(rlink_open(&q, NULL, 0), -1);
    assert_true(was_closed(q.shard_fd));
    assert_int_equal(refused_all(), 0);          /* shutting down is not counted */
    buf b = { 0 };
    delivery(&b, 0, 1);
    rlink_send(&a, b.data, b.len);
    pump();
    assert_int_equal(E.ngot, 0);
    assert_int_equal(shard_ingress_routers(E.in), 1);
    assert_int_equal(shard_ingress_pending(E.in), 1);
    int closes = E.io.closes;
    shard_ingress_free(E.in);
    E.in = NULL;
    assert_int_equal(E.io.closes, closes + 2);
    assert_true(was_closed(a.shard_fd));
    assert_true(was_closed(p.shard_fd));
    rlink_poll(&a);
    assert_true(a.eof);
    shard_ingress_free(NULL);
    assert_int_equal(shard_ingress_routers(NULL), 0);
    assert_int_equal(shard_ingress_pending(NULL), 0);
    buf_free(&b);
    rlink_free(&a);
    rlink_free(&p);
    rlink_free(&q);
}

int main(void)
{
    log_init("test", LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_handshake_no_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handshake_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protocol_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_before_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_not_after_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_per_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_routers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_behind_handshake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_frames_after_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_mid_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_would_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_and_free, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
