/*
 * odin-loadgen worker: one libevent loop holding up to ~20,000 client
 * WebSockets.
 *
 * Per connection: socket -> nonblocking connect (bound to a source address
 * with IP_BIND_ADDRESS_NO_PORT, so the port is picked at connect time per
 * 4-tuple) -> HTTP upgrade (key/accept checked) -> wslay client context ->
 * subscribe -> ack -> live messages, heartbeats every LG_HEARTBEAT_S.
 *
 * Memory: the connection array is allocated once; per connection there is
 * the small lgw_conn, a libevent event, the wslay context (~8.8 KB, wslay's
 * own fixed frame buffers) and one lgw_chan (24 B) per subscribed channel.
 * The handshake is read into one shared buffer; only a partial response
 * head or bytes that follow it are kept per connection (rare).
 *
 * Receiving does not go through wslay: conn_read() reads up to 256 KiB per
 * recv() into one buffer shared by the worker's connections and handles
 * every complete server frame in place (no per-message allocation or copy;
 * one clock read per recv() stamps the latency of every message in it); only
 * a partial frame is kept per connection.  wslay is used for sending
 * (subscribe, heartbeats, pongs, the close handshake).
 *
 * Objects are never freed inside wslay's callbacks: the callbacks only
 * record what happened (errors) and conn_io() decides after
 * wslay_event_send returned.
 */
#include "tools/loadgen/lg.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>
#include <wslay/wslay.h>
#include <zlib.h>

#include "common/buf.h"
#include "common/clock.h"
#include "tools/lib/lg_hist.h"
#include "tools/lib/lg_report.h"
#include "tools/lib/lg_scan.h"
#include "tools/lib/lg_ws.h"
#include "common/log.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define RBUF_SIZE 65536
#define IBUF_MIN (256 * 1024)        /* frame read buffer, shared per worker */
#define READS_PER_WAKEUP 4
#define MAX_HEAD 8192               /* largest upgrade response head */
#define RAMP_TICK_MS 5
#define RAMP_MAX_PER_PASS 500

enum cstate {
    CS_IDLE = 0,      /* not opened yet */
    CS_CONNECTING,    /* connect() in progress */
    CS_UPGRADING,     /* request sent, waiting for 101 */
    CS_SUBSCRIBING,   /* WebSocket open, subscribe sent, waiting for the ack */
    CS_LIVE,          /* acked (or gave up waiting): receiving */
    CS_CLOSING,       /* we sent a close frame (shutdown) */
    CS_DONE           /* closed, resources released */
};

struct lgw_chan {
    int64_t seq;        /* last seq (Kafka offset) seen on this channel */
    int64_t tseq;       /* last data.token_seq seen */
    uint32_t id;        /* channel id in the chanset */
    uint8_t has_seq, has_tseq;
};

struct lgw;

typedef struct lgw_conn {
    struct lgw *w;
    struct event *ev;
    wslay_event_context_ptr ws;
    struct lgw_chan *chans;     /* sorted by id */
    char *stash;                /* handshake bytes kept across reads */
    uint32_t stash_len, stash_off;
    uint32_t idx;               /* global connection index */
    uint32_t t_state_ms;        /* when the current state began (worker ms) */
    uint32_t next_hb_ms;
    int fd;
    uint16_t nchan;
    uint16_t close_code;        /* from the peer's close frame */
    uint8_t state;
    uint8_t evflags;
    uint8_t resolved;           /* counted towards the ramp */
    uint8_t eof, peer_closed, io_failed;
    uint8_t frag;               /* inside a fragmented message (skipped) */
    uint8_t rd_more;            /* read cap hit with data left: re-activate */
    uint8_t deflate;            /* permessage-deflate negotiated */
    char key[LG_WS_KEY_LEN + 1];
} lgw_conn;

typedef struct lgw {
    const lg_cfg *cfg;
    const lg_plan_worker *pw;
    int wid;
    int report_fd;
    struct event_base *base;
    struct event *ramp_ev, *tick_ev, *sigint_ev, *sigterm_ev, *grace_ev;
    lgw_conn *conns;
    long count, next, resolved, live;   /* live = fd-holding connections */
    z_stream inf;               /* permessage-deflate: one per worker, reset per
                                   message (the shard answers
                                   server_no_context_takeover) */
    int inf_ready;
    uint8_t *zbuf;              /* inflated message, max_message bytes */
    uint64_t start_ms;
    uint64_t ramp_start_us;
    uint64_t rng;
    int stopping, finished;
    lg_counters ct;
    lg_hist *hist, *hist_sent;
    buf out;                /* report frame */
    buf msg;                /* subscribe message */
    char *rbuf;             /* shared handshake read buffer */
    uint8_t *ibuf;          /* shared frame read buffer (>= one max frame) */
    size_t icap;
    int64_t now_us;         /* wall clock of the current read (latency) */
    log_ratelimit rl;
} lgw;

static uint32_t now_ms(const lgw *w)
{
    return (uint32_t)(clock_mono_ms() - w->start_ms);
}

/* ---- reports ----------------------------------------------------------- */

static void send_report(lgw *w, int kind)
{
    w->out.len = 0;
    if (lg_report_encode(&w->out, kind, &w->ct, w->hist, w->hist_sent) != 0)
        return;
    size_t off = 0;
    while (off < w->out.len) {
        ssize_t n = write(w->report_fd, w->out.data + off, w->out.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* the parent is gone: nobody will read a summary, stop now */
            if (!w->finished)
                log_kv(LOG_ERROR, "report pipe failed, exiting", "i:worker", w->wid,
                       "s:error", strerror(errno), NULL);
            w->finished = 1;
            event_base_loopbreak(w->base);
            return;
        }
        off += (size_t)n;
    }
}

static void resolve(lgw *w, lgw_conn *c)
{
    if (c->resolved)
        return;
    c->resolved = 1;
    if (++w->resolved == w->count) {
        w->ct.ramp_done = 1;
        w->ct.ramp_us = clock_mono_us() - w->cfg->t0_us;
        send_report(w, LG_REPORT_PROGRESS);
    }
}

/* ---- connection teardown ---------------------------------------------- */

static void conn_release(lgw_conn *c)
{
    if (c->ev)
        event_free(c->ev);
    c->ev = NULL;
    if (c->ws)
        wslay_event_context_free(c->ws);
    c->ws = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->chans);
    c->chans = NULL;
    free(c->stash);
    c->stash = NULL;
    c->stash_len = c->stash_off = 0;
    c->state = CS_DONE;
    c->w->live--;
}

static void maybe_finish(lgw *w);

/* A connection that never opened. */
static void conn_fail(lgw_conn *c, int kind, int err)
{
    lgw *w = c->w;
    if (!w->stopping) {
        w->ct.connect_err[kind]++;
        uint64_t supp;
        if (log_enabled(LOG_DEBUG) || (log_enabled(LOG_WARN) && log_rl_allow(&w->rl, &supp)))
            log_kv(LOG_WARN, "connection failed", "i:worker", w->wid, "u:conn",
                   (uint64_t)c->idx, "s:kind", lg_cerr_name(kind), "s:error",
                   err ? strerror(err) : NULL, NULL);
    }
    conn_release(c);
    resolve(w, c);
    maybe_finish(w);
}

/* An open WebSocket went away. */
static void conn_closed(lgw_conn *c)
{
    lgw *w = c->w;
    w->ct.open_now--;
    if (!w->stopping) {
        uint16_t code = c->peer_closed ? c->close_code : 1006;
        w->ct.disconnects_unexpected++;
        lg_counters_close(&w->ct, code);
        uint64_t supp;
        if (log_rl_allow(&w->rl, &supp))
            log_kv(LOG_WARN, "unexpected disconnect", "i:worker", w->wid, "u:conn",
                   (uint64_t)c->idx, "i:code", (int)code, "b:eof", c->eof,
                   "u:suppressed", supp, NULL);
    }
    conn_release(c);
    resolve(w, c);
    maybe_finish(w);
}

static int classify_errno(int err)
{
    switch (err) {
    case ECONNREFUSED: return LG_CERR_REFUSED;
    case EADDRNOTAVAIL: return LG_CERR_ADDRNOTAVAIL;
    case ETIMEDOUT: return LG_CERR_TIMEOUT;
    case ECONNRESET: case EPIPE: return LG_CERR_RESET;
    default: return LG_CERR_OTHER;
    }
}

/* ---- event interest ---------------------------------------------------- */

static void conn_cb(evutil_socket_t fd, short what, void *arg);

static void conn_set_events(lgw_conn *c, short want)
{
    if (c->evflags == want)
        return;
    event_del(c->ev);
    event_assign(c->ev, c->w->base, c->fd, want | EV_PERSIST, conn_cb, c);
    if (want)
        event_add(c->ev, NULL);
    c->evflags = (uint8_t)want;
}

/* ---- wslay callbacks (record only, never free) ------------------------- */

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                          int flags, void *user)
{
    lgw_conn *c = user;
    ssize_t r;
    int f = MSG_NOSIGNAL | ((flags & WSLAY_MSG_MORE) ? MSG_MORE : 0);
    do
        r = send(c->fd, data, len, f);
    while (r < 0 && errno == EINTR);
    if (r >= 0)
        return r;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    } else {
        c->io_failed = 1;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    }
    return -1;
}

static int ws_genmask_cb(wslay_event_context_ptr ctx, uint8_t *mask, size_t len, void *user)
{
    lgw_conn *c = user;
    (void)ctx;
    while (len) {
        uint64_t r = lg_rand_next(&c->w->rng);
        size_t n = len < 8 ? len : 8;
        memcpy(mask, &r, n);
        mask += n;
        len -= n;
    }
    return 0;
}

static int chan_cmp(const void *key, const void *elem)
{
    uint32_t id = *(const uint32_t *)key;
    const struct lgw_chan *ch = elem;
    return id < ch->id ? -1 : id > ch->id;
}

static int type_is(const lg_msg *m, const char *lit)
{
    size_t l = strlen(lit);
    return m->has_type && m->type_len == l && memcmp(m->type, lit, l) == 0;
}

/* Live delivery: counters, seq/token_seq checks, latency.  Hot path. */
static void on_live(lgw_conn *c, const lg_msg *m)
{
    lgw *w = c->w;
    w->ct.messages++;
    if (m->has_publish_us) {
        int64_t lat = w->now_us - m->publish_us;   /* one clock read per recv() */
        if (lat < 0)
            w->ct.negative_latency++;
        else
            lg_hist_record(w->hist, (uint64_t)lat);
    } else {
        w->ct.no_publish_us++;
    }
    long id = m->channel_escaped ? -1
            : lg_chanset_find(w->cfg->cs, m->channel, m->channel_len);
    struct lgw_chan *ch = NULL;
    if (id >= 0) {
        uint32_t key = (uint32_t)id;
        ch = bsearch(&key, c->chans, c->nchan, sizeof *c->chans, chan_cmp);
    }
    if (!ch) {
        w->ct.unknown_channel++;
        return;
    }
    if (ch->has_seq && m->seq <= ch->seq) {
        w->ct.duplicates++;
        if (m->seq < ch->seq)
            w->ct.seq_backwards++;
    } else {
        ch->seq = m->seq;
        ch->has_seq = 1;
    }
    if (m->has_token_seq) {
        w->ct.token_seq_msgs++;
        if (ch->has_tseq && m->token_seq > ch->tseq + 1) {
            w->ct.gaps++;
            w->ct.gaps_missing += (uint64_t)(m->token_seq - ch->tseq - 1);
        }
        if (!ch->has_tseq || m->token_seq > ch->tseq) {
            ch->tseq = m->token_seq;
            ch->has_tseq = 1;
        }
    }
}

/* Control messages are rare: jansson is fine here. */
static void on_control(lgw_conn *c, const lg_msg *m, const uint8_t *p, size_t n)
{
    lgw *w = c->w;
    if (type_is(m, "subscription_ack")) {
        w->ct.acks++;
        json_t *j = json_loadb((const char *)p, n, 0, NULL);
        json_t *subs = j ? json_object_get(j, "subscribed") : NULL;
        if (!json_is_array(subs) || json_array_size(subs) < c->nchan)
            w->ct.ack_partial++;
        json_decref(j);
        if (c->state == CS_SUBSCRIBING) {
            c->state = CS_LIVE;
            w->ct.subscribed++;
            resolve(w, c);
        }
    } else if (type_is(m, "pong")) {
        w->ct.pongs++;
    } else if (type_is(m, "unsubscription_ack")) {
        w->ct.unsub_acks++;
    } else if (type_is(m, "error")) {
        w->ct.errors_rx++;
        uint64_t supp;
        if (log_rl_allow(&w->rl, &supp)) {
            json_t *j = json_loadb((const char *)p, n, 0, NULL);
            log_kv(LOG_WARN, "server error message", "i:worker", w->wid, "u:conn",
                   (uint64_t)c->idx, "s:code", json_string_value(json_object_get(j, "code")),
                   "s:message", json_string_value(json_object_get(j, "message")),
                   "u:suppressed", supp, NULL);
            json_decref(j);
        }
        if (c->state == CS_SUBSCRIBING) {   /* e.g. TOO_MANY_SUBSCRIPTIONS */
            c->state = CS_LIVE;
            resolve(w, c);
        }
    } else {
        w->ct.other_msgs++;
    }
}

static void conn_stash(lgw_conn *c, const char *p, size_t n);

static void on_text(lgw_conn *c, const uint8_t *p, size_t n)
{
    c->w->ct.bytes += n;
    lg_msg m;
    if (lg_scan_live((const char *)p, n, &m) != 0) {
        c->w->ct.parse_errors++;
        return;
    }
    if (lg_msg_is_live(&m))
        on_live(c, &m);
    else
        on_control(c, &m, p, n);
}

/* One complete server frame.  Text messages go to on_text in place (no
 * copy); fragmented messages (odin-shard never sends them) are counted and
 * skipped; pings are answered through wslay's send queue; a close frame is
 * echoed once. */
/* Inflate a compressed message into w->zbuf (RFC 7692 7.2.2: append
 * 00 00 ff ff); 0 and *out_len, or -1 (corrupt or over LG_MAX_MESSAGE). */
static int inflate_msg(lgw *w, const uint8_t *p, size_t n, size_t *out_len)
{
    static const uint8_t tail[4] = { 0x00, 0x00, 0xff, 0xff };
    size_t cap = (size_t)w->cfg->max_message;
    if (!w->inf_ready) {
        if (inflateInit2(&w->inf, -15) != Z_OK)
            return -1;
        w->inf_ready = 1;
    } else if (inflateReset(&w->inf) != Z_OK) {
        return -1;
    }
    if (!w->zbuf && !(w->zbuf = malloc(cap + 1)))
        return -1;
    w->inf.next_out = w->zbuf;
    w->inf.avail_out = (uInt)(cap + 1);
    for (int part = 0; part < 2; part++) {
        w->inf.next_in = (Bytef *)(part ? tail : p);
        w->inf.avail_in = (uInt)(part ? sizeof(tail) : n);
        int r = inflate(&w->inf, Z_SYNC_FLUSH);
        if (r == Z_STREAM_END)
            break;
        if ((r != Z_OK && r != Z_BUF_ERROR) || w->inf.avail_out == 0)
            return -1;
    }
    *out_len = cap + 1 - w->inf.avail_out;
    return *out_len > cap ? -1 : 0;
}

static void on_frame(lgw_conn *c, uint8_t b0, const uint8_t *p, size_t n)
{
    unsigned op = b0 & 0x0fu, fin = b0 & 0x80u;
    if (b0 & 0x40u && c->deflate && fin && (op == 0x1 || op == 0x2)) {
        size_t zl;
        if (inflate_msg(c->w, p, n, &zl) != 0) {
            c->io_failed = 1;
            return;
        }
        c->w->ct.inflated_msgs++;
        c->w->ct.inflated_bytes += zl;
        p = c->w->zbuf;
        n = zl;
        b0 &= (uint8_t)~0x40u;
    }
    if (b0 & 0x70u) {                    /* RSV bits not negotiated */
        c->io_failed = 1;
        return;
    }
    switch (op) {
    case 0x0:                            /* continuation */
        if (fin)
            c->frag = 0;
        return;
    case 0x1:
    case 0x2:
        if (!fin) {
            c->frag = 1;
            c->w->ct.other_msgs++;
        } else if (op == 0x1) {
            on_text(c, p, n);
        } else {
            c->w->ct.other_msgs++;
        }
        return;
    case 0x8:
        c->peer_closed = 1;
        c->close_code = n >= 2 ? (uint16_t)(p[0] << 8 | p[1]) : 1005;
        wslay_event_queue_close(c->ws, n >= 2 ? c->close_code : 0, NULL, 0);
        return;
    case 0x9: {
        struct wslay_event_msg m = { WSLAY_PONG, p, n };
        wslay_event_queue_msg(c->ws, &m);
        return;
    }
    default:                             /* pong, reserved */
        return;
    }
}

/* Handle the complete frames in p[0..n); returns the bytes consumed (a
 * partial frame is left).  Stops at a protocol error or the peer's close. */
static size_t conn_frames(lgw_conn *c, const uint8_t *p, size_t n)
{
    size_t off = 0;
    uint64_t max = (uint64_t)c->w->cfg->max_message;
    while (n - off >= 2 && !c->peer_closed && !c->io_failed) {
        const uint8_t *f = p + off;
        uint64_t len = f[1] & 0x7fu;
        size_t hl = 2;
        if (f[1] & 0x80u) {              /* a server must not mask */
            c->io_failed = 1;
            break;
        }
        if (len == 126) {
            if (n - off < 4)
                break;
            len = (uint64_t)f[2] << 8 | f[3];
            hl = 4;
        } else if (len == 127) {
            if (n - off < 10)
                break;
            len = 0;
            for (int i = 2; i < 10; i++)
                len = len << 8 | f[i];
            hl = 10;
        }
        if (len > max) {
            c->io_failed = 1;
            break;
        }
        if (n - off - hl < len)
            break;
        on_frame(c, f[0], f + hl, (size_t)len);
        off += hl + (size_t)len;
    }
    return off;
}

/* Read and handle frames: a few recv() calls per wake-up into the worker's
 * shared buffer; a short read means the socket is drained, so no extra
 * recv() just to see EAGAIN.  One clock read per recv() stamps every
 * message in it.  A partial frame is kept in the connection's stash. */
static void conn_read(lgw_conn *c, int do_recv)
{
    lgw *w = c->w;
    size_t have = 0;
    if (c->stash_off < c->stash_len) {
        have = c->stash_len - c->stash_off;
        memcpy(w->ibuf, c->stash + c->stash_off, have);
    }
    free(c->stash);
    c->stash = NULL;
    c->stash_len = c->stash_off = 0;
    for (int i = 0; i < READS_PER_WAKEUP; i++) {
        int drained = !do_recv;
        if (do_recv) {
            size_t room = w->icap - have;
            ssize_t r;
            do
                r = recv(c->fd, w->ibuf + have, room, 0);
            while (r < 0 && errno == EINTR);
            if (r < 0) {
                if (errno != EAGAIN && errno != EWOULDBLOCK)
                    c->io_failed = 1;
                drained = 1;
            } else if (r == 0) {
                c->eof = 1;
                drained = 1;
            } else {
                have += (size_t)r;
                w->ct.rx_bytes += (uint64_t)r;
                drained = (size_t)r < room;
            }
        }
        w->now_us = (int64_t)clock_wall_us();
        size_t used = conn_frames(c, w->ibuf, have);
        if (used && used < have)
            memmove(w->ibuf, w->ibuf + used, have - used);
        have -= used;
        if (drained || c->eof || c->io_failed || c->peer_closed)
            break;
        if (i == READS_PER_WAKEUP - 1)   /* more is waiting: no new edge will come */
            c->rd_more = 1;
    }
    if (have && !c->io_failed && !c->peer_closed)
        conn_stash(c, (const char *)w->ibuf, have);
}

static const struct wslay_event_callbacks ws_callbacks = {
    NULL, ws_send_cb, ws_genmask_cb, NULL, NULL, NULL, NULL,   /* we read ourselves */
};

/* ---- WebSocket I/O ----------------------------------------------------- */

/* Read frames (our own reader, see conn_read), let wslay write what is
 * queued; closes the connection when it failed, ended, or both sides sent
 * a close.  The connection may be released on return. */
static void conn_io(lgw_conn *c, int rd, int wr)
{
    int rc = 0;
    if (rd && !c->peer_closed)
        conn_read(c, 1);
    if (!c->io_failed && wslay_event_want_write(c->ws))
        rc = wslay_event_send(c->ws);
    (void)wr;
    if (rc != 0 || c->eof || c->io_failed ||
        (c->peer_closed && !wslay_event_want_write(c->ws))) {
        conn_closed(c);
        return;
    }
    /* edge-triggered: conn_read() reads until a short read (the socket was
     * drained, new data makes a new edge) or re-activates itself, so epoll
     * does not poll every socket again after each wake-up */
    short want = EV_READ | EV_ET;
    if (wslay_event_want_write(c->ws))
        want |= EV_WRITE;
    conn_set_events(c, want);
    if (c->rd_more) {
        c->rd_more = 0;
        event_active(c->ev, EV_READ, 1);
    }
}

static void conn_queue_text(lgw_conn *c, const char *p, size_t n)
{
    struct wslay_event_msg m = { WSLAY_TEXT_FRAME, (const uint8_t *)p, n };
    wslay_event_queue_msg(c->ws, &m);   /* copies the bytes */
}

static void conn_subscribe(lgw_conn *c)
{
    lgw *w = c->w;
    uint32_t ids[LG_MAX_CHANNELS_PER_CONN];
    size_t n = lg_chanset_pick(w->cfg->cs, w->cfg->mode, w->cfg->k, w->cfg->seed, c->idx, ids);
    c->chans = calloc(n, sizeof *c->chans);
    if (!c->chans)
        n = 0;
    c->nchan = (uint16_t)n;
    w->msg.len = 0;
    buf_appendf(&w->msg, "{\"type\":\"subscribe\",\"data\":{\"channels\":[");
    for (size_t i = 0; i < n; i++) {
        size_t l;
        const char *name = lg_chanset_name(w->cfg->cs, ids[i], &l);
        c->chans[i].id = ids[i];
        if (i)
            buf_append(&w->msg, ",", 1);
        buf_append_json_str(&w->msg, name, l);
    }
    buf_appendf(&w->msg, "]}}");
    conn_queue_text(c, w->msg.data, w->msg.len);
}

/* ---- handshake ---------------------------------------------------------- */

static void conn_stash(lgw_conn *c, const char *p, size_t n)
{
    char *s = malloc(n ? n : 1);
    free(c->stash);
    c->stash = s;
    c->stash_len = s ? (uint32_t)n : 0;
    c->stash_off = 0;
    if (s)
        memcpy(s, p, n);
}

static void conn_send_request(lgw_conn *c)
{
    lgw *w = c->w;
    const lg_target *t = &w->cfg->targets[lg_plan_target_of(c->idx, w->cfg->ntargets)];
    char req[1024];
    lg_ws_key(&w->rng, c->key);
    int n = lg_ws_request_ext(req, sizeof req, t->host, t->port, w->cfg->path, c->key,
                              w->cfg->deflate);
    if (n < 0) {
        conn_fail(c, LG_CERR_OTHER, 0);
        return;
    }
    ssize_t r = send(c->fd, req, (size_t)n, MSG_NOSIGNAL);
    if (r != n) {  /* a fresh socket takes ~250 bytes at once; anything else is an error */
        int err = r < 0 ? errno : EAGAIN;
        conn_fail(c, classify_errno(err), err);
        return;
    }
    c->state = CS_UPGRADING;
    c->t_state_ms = now_ms(w);
    conn_set_events(c, EV_READ);
}

static void conn_open_ws(lgw_conn *c)
{
    lgw *w = c->w;
    if (wslay_event_context_client_init(&c->ws, &ws_callbacks, c) != 0) {
        conn_fail(c, LG_CERR_OTHER, ENOMEM);
        return;
    }
    wslay_event_config_set_max_recv_msg_length(c->ws, (uint64_t)w->cfg->max_message);
    w->ct.connected++;
    w->ct.open_now++;
    w->ct.last_connect_us = clock_mono_us() - w->cfg->t0_us;
    c->state = CS_SUBSCRIBING;
    c->t_state_ms = now_ms(w);
    c->next_hb_ms = c->t_state_ms + (uint32_t)w->cfg->heartbeat_ms;
    conn_subscribe(c);
    if (c->stash_off < c->stash_len)
        conn_read(c, 0);   /* frames that came with the 101 */
    conn_io(c, 0, 1);
}

static void conn_read_head(lgw_conn *c)
{
    lgw *w = c->w;
    size_t have = c->stash_len;
    if (have)
        memcpy(w->rbuf, c->stash, have);
    ssize_t r;
    do
        r = recv(c->fd, w->rbuf + have, MAX_HEAD + 1 - have, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (r == 0) {   /* a FIN: the server closed without answering */
        conn_fail(c, LG_CERR_EOF, 0);
        return;
    }
    if (r < 0) {
        conn_fail(c, classify_errno(errno), errno);
        return;
    }
    have += (size_t)r;
    lg_http_resp resp;
    int hl = lg_http_response_parse(w->rbuf, have, MAX_HEAD, &resp);
    if (hl == 0) {
        conn_stash(c, w->rbuf, have);
        return;
    }
    if (hl < 0) {
        conn_fail(c, LG_CERR_HANDSHAKE, 0);
        return;
    }
    int chk = lg_ws_check(&resp, c->key, LG_WS_KEY_LEN);
    if (chk == LG_WS_STATUS) {
        conn_fail(c, resp.status == 503 ? LG_CERR_HTTP503
                   : resp.status == 429 ? LG_CERR_HTTP429 : LG_CERR_HTTP_OTHER, 0);
        return;
    }
    if (chk != LG_WS_OK) {
        conn_fail(c, LG_CERR_HANDSHAKE, 0);
        return;
    }
    c->deflate = resp.deflate && w->cfg->deflate;
    if (c->deflate)
        w->ct.deflate_conns++;
    if (have > (size_t)hl)
        conn_stash(c, w->rbuf + hl, have - (size_t)hl);   /* first frames */
    else {
        free(c->stash);
        c->stash = NULL;
        c->stash_len = c->stash_off = 0;
    }
    conn_open_ws(c);
}

static void conn_cb(evutil_socket_t fd, short what, void *arg)
{
    lgw_conn *c = arg;
    (void)fd;
    switch (c->state) {
    case CS_CONNECTING: {
        int err = 0;
        socklen_t l = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) != 0)
            err = errno;
        if (err) {
            conn_fail(c, classify_errno(err), err);
            return;
        }
        conn_send_request(c);
        return;
    }
    case CS_UPGRADING:
        conn_read_head(c);
        return;
    case CS_SUBSCRIBING:
    case CS_LIVE:
    case CS_CLOSING:
        conn_io(c, (what & EV_READ) != 0, (what & EV_WRITE) != 0);
        return;
    default:
        return;
    }
}

/* ---- opening ------------------------------------------------------------ */

static void conn_start(lgw *w, long i)
{
    lgw_conn *c = &w->conns[i];
    const lg_cfg *cfg = w->cfg;
    long gi = w->pw->first + i;
    c->w = w;
    c->idx = (uint32_t)gi;
    c->fd = -1;
    c->t_state_ms = now_ms(w);
    w->ct.attempted++;
    w->live++;
    const lg_target *t = &cfg->targets[lg_plan_target_of(gi, cfg->ntargets)];
    int fd = socket(t->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        conn_fail(c, LG_CERR_OTHER, errno);
        return;
    }
    c->fd = fd;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (cfg->naddrs) {
        struct sockaddr_in src = { .sin_family = AF_INET, .sin_port = 0 };
        src.sin_addr = cfg->addrs[lg_plan_addr_of(gi, cfg->ntargets, cfg->naddrs)];
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0) {
            int err = errno;
            conn_fail(c, err == EADDRNOTAVAIL ? LG_CERR_ADDRNOTAVAIL : LG_CERR_OTHER, err);
            return;
        }
    }
    c->ev = event_new(w->base, fd, EV_WRITE | EV_PERSIST, conn_cb, c);
    if (!c->ev) {
        conn_fail(c, LG_CERR_OTHER, ENOMEM);
        return;
    }
    c->state = CS_CONNECTING;
    if (connect(fd, (const struct sockaddr *)&t->sa, t->salen) != 0 && errno != EINPROGRESS) {
        int err = errno;
        conn_fail(c, classify_errno(err), err);
        return;
    }
    c->evflags = EV_WRITE;
    event_add(c->ev, NULL);
}

static void ramp_cb(evutil_socket_t fd, short what, void *arg)
{
    lgw *w = arg;
    (void)fd;
    (void)what;
    if (w->stopping) {
        event_del(w->ramp_ev);
        return;
    }
    long due = w->count;
    if (w->pw->rate > 0) {
        double el = (double)(clock_mono_us() - w->ramp_start_us) / 1e6;
        double d = el * w->pw->rate + 1.0;
        if (d < (double)due)
            due = (long)d;
    }
    for (int n = 0; w->next < due && n < RAMP_MAX_PER_PASS && !w->stopping; n++)
        conn_start(w, w->next++);
    if (w->next >= w->count)
        event_del(w->ramp_ev);
}

/* ---- periodic work ------------------------------------------------------ */

static const char heartbeat_msg[] = "{\"type\":\"heartbeat\"}";

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    lgw *w = arg;
    (void)fd;
    (void)what;
    uint32_t now = now_ms(w);
    uint32_t tmo = (uint32_t)w->cfg->connect_timeout_ms;
    for (long i = 0; i < w->next && !w->stopping; i++) {
        lgw_conn *c = &w->conns[i];
        switch (c->state) {
        case CS_CONNECTING:
        case CS_UPGRADING:
            if (now - c->t_state_ms >= tmo)
                conn_fail(c, LG_CERR_TIMEOUT, 0);
            break;
        case CS_SUBSCRIBING:
            if (now - c->t_state_ms >= tmo && !c->resolved) {
                w->ct.ack_timeouts++;
                c->state = CS_LIVE;
                resolve(w, c);
            }
            /* fall through */
        case CS_LIVE:
            /* due within half a tick: the 1 s timer itself drifts a little */
            if (w->cfg->heartbeat_ms > 0 && (int32_t)(now + 500 - c->next_hb_ms) >= 0) {
                /* keep the period from the schedule, not from the tick */
                c->next_hb_ms += (uint32_t)w->cfg->heartbeat_ms;
                if ((int32_t)(now - c->next_hb_ms) >= 0)
                    c->next_hb_ms = now + (uint32_t)w->cfg->heartbeat_ms;
                conn_queue_text(c, heartbeat_msg, sizeof heartbeat_msg - 1);
                w->ct.heartbeats_sent++;
                conn_io(c, 0, 1);
            }
            break;
        default:
            break;
        }
    }
    if (!w->finished)
        send_report(w, LG_REPORT_PROGRESS);
}

/* ---- shutdown ----------------------------------------------------------- */

static void finish(lgw *w)
{
    if (w->finished)
        return;
    w->ct.stopping = 1;
    send_report(w, LG_REPORT_FINAL);
    w->finished = 1;
    event_base_loopbreak(w->base);
}

static void maybe_finish(lgw *w)
{
    if (w->stopping && w->live == 0)
        finish(w);
}

static void grace_cb(evutil_socket_t fd, short what, void *arg)
{
    lgw *w = arg;
    (void)fd;
    (void)what;
    for (long i = 0; i < w->next; i++)
        if (w->conns[i].state != CS_DONE && w->conns[i].state != CS_IDLE) {
            if (w->conns[i].ws)
                w->ct.open_now--;
            conn_release(&w->conns[i]);
        }
    finish(w);
}

static void stop(lgw *w, const char *why)
{
    if (w->stopping)
        return;
    w->stopping = 1;
    w->ct.stopping = 1;
    log_kv(LOG_DEBUG, "worker stopping", "i:worker", w->wid, "s:reason", why,
           "i:open", (int)w->ct.open_now, NULL);
    event_del(w->ramp_ev);
    event_del(w->tick_ev);
    for (long i = 0; i < w->next; i++) {
        lgw_conn *c = &w->conns[i];
        switch (c->state) {
        case CS_CONNECTING:
        case CS_UPGRADING:
            conn_release(c);
            break;
        case CS_SUBSCRIBING:
        case CS_LIVE:
            c->state = CS_CLOSING;
            wslay_event_queue_close(c->ws, WSLAY_CODE_NORMAL_CLOSURE, NULL, 0);
            conn_io(c, 0, 1);
            break;
        default:
            break;
        }
    }
    struct timeval tv = { w->cfg->close_grace_ms / 1000, (w->cfg->close_grace_ms % 1000) * 1000 };
    event_add(w->grace_ev, &tv);
    maybe_finish(w);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    stop(arg, sig == SIGINT ? "SIGINT" : "SIGTERM");
}

/* ---- entry -------------------------------------------------------------- */

int lgw_run(const lg_cfg *cfg, int wid, const lg_plan_worker *pw, int report_fd)
{
    lgw *w = calloc(1, sizeof *w);
    int rc = 2;
    if (!w)
        return 2;
    w->cfg = cfg;
    w->pw = pw;
    w->wid = wid;
    w->report_fd = report_fd;
    w->count = pw->count;
    w->start_ms = clock_mono_ms();
    w->rng = cfg->seed ^ ((uint64_t)(wid + 1) * UINT64_C(0x9E3779B97F4A7C15)) ^ (uint64_t)getpid();
    w->rl.per_sec = 5;
    w->ct.target = (uint64_t)pw->count;

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)pw->fds_needed > rl.rlim_cur) {
        log_kv(LOG_ERROR, "fd budget exceeded", "i:worker", wid, "I:needed",
               (int64_t)pw->fds_needed, "u:limit", (uint64_t)rl.rlim_cur, NULL);
        goto out;
    }

    w->conns = calloc((size_t)(pw->count ? pw->count : 1), sizeof *w->conns);
    w->hist = malloc(sizeof *w->hist);
    w->hist_sent = malloc(sizeof *w->hist_sent);
    w->rbuf = malloc(RBUF_SIZE);
    w->icap = (size_t)cfg->max_message + 16 > IBUF_MIN ? (size_t)cfg->max_message + 16 : IBUF_MIN;
    w->ibuf = malloc(w->icap);
    w->base = event_base_new();
    if (!w->conns || !w->hist || !w->hist_sent || !w->rbuf || !w->ibuf || !w->base)
        goto out;
    lg_hist_reset(w->hist);
    lg_hist_reset(w->hist_sent);
    for (long i = 0; i < pw->count; i++)
        w->conns[i].fd = -1;
    w->ramp_ev = event_new(w->base, -1, EV_PERSIST, ramp_cb, w);
    w->tick_ev = event_new(w->base, -1, EV_PERSIST, tick_cb, w);
    w->grace_ev = event_new(w->base, -1, 0, grace_cb, w);
    w->sigint_ev = evsignal_new(w->base, SIGINT, signal_cb, w);
    w->sigterm_ev = evsignal_new(w->base, SIGTERM, signal_cb, w);
    if (!w->ramp_ev || !w->tick_ev || !w->grace_ev || !w->sigint_ev || !w->sigterm_ev)
        goto out;
    event_add(w->sigint_ev, NULL);
    event_add(w->sigterm_ev, NULL);
    /* the parent blocked these around fork(); libevent now owns them */
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGINT);
    sigaddset(&ss, SIGTERM);
    sigprocmask(SIG_UNBLOCK, &ss, NULL);

    struct timeval ramp_tv = { 0, RAMP_TICK_MS * 1000 }, tick_tv = { 1, 0 };
    w->ramp_start_us = clock_mono_us();
    event_add(w->ramp_ev, &ramp_tv);
    event_add(w->tick_ev, &tick_tv);
    log_kv(LOG_DEBUG, "worker started", "i:worker", wid, "I:first", (int64_t)pw->first,
           "I:count", (int64_t)pw->count, "f:rate", pw->rate, NULL);
    ramp_cb(-1, 0, w);
    event_base_dispatch(w->base);
    if (!w->finished) {          /* loop ran dry: should not happen */
        w->stopping = 1;
        finish(w);
    }
    rc = 0;
out:
    if (w->conns)
        for (long i = 0; i < pw->count; i++)
            if (w->conns[i].state != CS_IDLE && w->conns[i].state != CS_DONE)
                conn_release(&w->conns[i]);
    if (w->ramp_ev)
        event_free(w->ramp_ev);
    if (w->tick_ev)
        event_free(w->tick_ev);
    if (w->grace_ev)
        event_free(w->grace_ev);
    if (w->sigint_ev)
        event_free(w->sigint_ev);
    if (w->sigterm_ev)
        event_free(w->sigterm_ev);
    if (w->base)
        event_base_free(w->base);
    free(w->conns);
    free(w->hist);
    free(w->hist_sent);
    free(w->rbuf);
    free(w->ibuf);
    free(w->zbuf);
    if (w->inf_ready)
        inflateEnd(&w->inf);
    buf_free(&w->out);
    buf_free(&w->msg);
    free(w);
    return rc;
}
