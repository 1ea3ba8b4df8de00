/*
 * One client connection: HTTP phase input, WebSocket input through
 * ws_parser, the client protocol (clientmsg), the send queue and its
 * writev flushing, and the close handshake.
 */
#include "shard/client_private.h"
#include "shard/clientmsg.h"
#include "common/topics.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/net.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define READS_PER_WAKEUP 4
#define IOV_BATCH 64

/* The read buffer shared by every client and the per-client log rate
 * limits live on the pool (shard/client_private.h). */

static void client_on_event(evutil_socket_t fd, short what, void *arg);

static void client_ip_str(const shard_client *c, char *out, size_t n)
{
    if (!inet_ntop(c->peer.ip_len == 16 ? AF_INET6 : AF_INET, c->peer.ip, out,
                   (socklen_t)n))
        snprintf(out, n, "?");
}

static void log_client(enum log_level lvl, const shard_client *c,
                       const char *msg, const char *reason, int code)
{
    uint64_t supp = 0;
    if (!log_enabled(lvl) ||
        !log_rl_allow(lvl >= LOG_WARN ? &c->pool->warn_rl : &c->pool->log_rl, &supp))
        return;
    char ip[64];
    client_ip_str(c, ip, sizeof(ip));
    log_kv(lvl, msg, "s:ip", ip, "i:port", (int)c->peer.port, "i:fd", c->fd,
           "s:reason", reason, "i:code", code, "u:suppressed", supp,
           NULL);
}

shard_client *client_new(client_pool *p, int fd, const struct sockaddr *sa)
{
    shard_client *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->pool = p;
    c->fd = fd;
    c->state = CL_HTTP;
    c->q = c->q_inline;
    c->q_cap = CL_INLINE_Q;
    c->rs.subs = &c->subs;
    c->rs.owner = c;
    ws_parser_init(&c->parser, p->parsers);
    uint64_t now = clock_mono_ms();
    c->t_state_ms = now;
    c->last_rx_ms = now;
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const void *)sa;
        memcpy(c->peer.ip, &s6->sin6_addr, 16);
        c->peer.ip_len = 16;
        c->peer.port = ntohs(s6->sin6_port);
    } else {
        const struct sockaddr_in *s4 = (const void *)sa;
        memcpy(c->peer.ip, &s4->sin_addr, 4);
        c->peer.ip_len = 4;
        c->peer.port = ntohs(s4->sin_port);
    }
    event_assign(&c->ev, p->ctx->base, fd, EV_READ | EV_PERSIST,
                 client_on_event, c);
    if (event_add(&c->ev, NULL) != 0) {
        free(c);
        return NULL;
    }
    /* the live list stays in descending id order (the admin API pages it) */
    c->id = ++p->next_id;
    c->since_ms = clock_wall_ms();
    c->next = p->live;
    if (p->live)
        p->live->prev = c;
    p->live = c;
    p->n.http++;
    return c;
}

/* ---- accessors ----------------------------------------------------------- */

enum client_state client_state(const shard_client *c) { return (enum client_state)c->state; }
uint64_t client_id(const shard_client *c) { return c->id; }
uint64_t client_since_ms(const shard_client *c) { return c->since_ms; }
uint64_t client_queued_bytes(const shard_client *c) { return c->q_bytes; }
const subs_conn *client_subs(const shard_client *c) { return &c->subs; }
client_peer *client_peer_of(shard_client *c) { return &c->peer; }
const client_peer *client_peer_const(const shard_client *c) { return &c->peer; }
resume_conn *client_resume(shard_client *c) { return &c->rs; }

/* ---- socket calls (client_io) ------------------------------------------ */

static ssize_t io_read(shard_client *c, void *b, size_t n)
{
    const client_io *io = &c->pool->io;
    return io->read ? io->read(io->ud, c->fd, b, n) : read(c->fd, b, n);
}

static ssize_t io_writev(shard_client *c, const struct iovec *iov, int n)
{
    const client_io *io = &c->pool->io;
    return io->writev ? io->writev(io->ud, c->fd, iov, n) : writev(c->fd, iov, n);
}

static void io_shutdown_wr(shard_client *c)
{
    const client_io *io = &c->pool->io;
    if (io->shutdown_wr)
        io->shutdown_wr(io->ud, c->fd);
    else
        shutdown(c->fd, SHUT_WR);
}

static void io_close(shard_client *c)
{
    const client_io *io = &c->pool->io;
    if (io->close)
        io->close(io->ud, c->fd);
    else
        close(c->fd);
}

static int io_input_pending(shard_client *c)
{
    const client_io *io = &c->pool->io;
    if (io->input_pending)
        return io->input_pending(io->ud, c->fd);
    return net_input_pending(c->fd);
}

/* ---- send queue ------------------------------------------------------ */

static void q_release_all(shard_client *c, int keep_partial_head)
{
    client_pool *p = c->pool;
    uint32_t keep = (keep_partial_head && c->q_len && c->q_off) ? 1 : 0;
    while (c->q_len > keep) {
        uint32_t i = (c->q_head + c->q_len - 1) & (c->q_cap - 1);
        ws_chunk *ch = c->q[i];
        uint64_t b = ch->len - (c->q_len == 1 ? c->q_off : 0);
        c->q_bytes -= b;
        p->n.queue_bytes -= b;
        ws_chunk_unref(ch);
        c->q_len--;
    }
    if (c->q_len == 0)
        c->q_off = 0;
}

static void q_shrink(shard_client *c)
{
    if (c->q_len == 0 && c->q != c->q_inline) {
        free(c->q);
        c->q = c->q_inline;
        c->q_cap = CL_INLINE_Q;
        c->q_head = 0;
    }
}

static int q_grow(shard_client *c)
{
    uint32_t nc = c->q_cap * 2;
    ws_chunk **nq = malloc((size_t)nc * sizeof(*nq));
    if (!nq)
        return -1;
    for (uint32_t i = 0; i < c->q_len; i++)
        nq[i] = c->q[(c->q_head + i) & (c->q_cap - 1)];
    if (c->q != c->q_inline)
        free(c->q);
    c->q = nq;
    c->q_cap = nc;
    c->q_head = 0;
    return 0;
}

/* Append without limit checks (control frames, HTTP responses). */
static int q_append(shard_client *c, ws_chunk *ch)
{
    if (c->q_len == c->q_cap && q_grow(c) != 0)
        return -1;
    c->q[(c->q_head + c->q_len) & (c->q_cap - 1)] = ch;
    c->q_len++;
    ws_chunk_ref(ch);
    c->q_bytes += ch->len;
    c->pool->n.queue_bytes += ch->len;
    pool_schedule_flush(c->pool, c);
    return 0;
}

static void client_slow(shard_client *c)
{
    shard_ctx *ctx = c->pool->ctx;
    ctx->m.ws_slow_clients_disconnected_total++;
    log_client(LOG_WARN, c, "slow client: send queue full, closing",
               "queue_full", 1008);
    /* Free what it has not read yet; a frame already half written must be
     * finished so the close frame that follows is well framed. */
    q_release_all(c, 1);
    c->flags |= CLF_SLOW;
    client_close(c, 1008, "send queue full");
}

int client_push(shard_client *c, ws_chunk *ch)
{
    if (c->state != CL_OPEN)
        return -1;
    const shard_settings *s = c->pool->ctx->set;
    if (c->parser.deflate && (ch->flags & WS_CHUNK_MSG)) {
        /* compressed once per shard, shared by every deflate client */
        shard_metrics *m = &c->pool->ctx->m;
        ws_chunk *z = ws_deflate_chunk(c->pool->deflate, ch, &m->deflate);
        if (z != ch) {
            m->ws_deflate_messages_sent_total++;
            m->ws_deflate_saved_bytes_total += ch->len - z->len;
            ch = z;
        } else {
            m->ws_deflate_plain_messages_total++;
        }
    }
    if (c->q_len >= (uint64_t)s->queue_msgs ||
        c->q_bytes + ch->len > (uint64_t)s->queue_bytes) {
        client_slow(c);
        return -1;
    }
    if (q_append(c, ch) != 0) {
        client_slow(c);
        return -1;
    }
    /* A router batch can hold more records for one channel than a queue
     * takes: past half the limits, write now instead of at the end of the
     * batch, so only clients that really do not read hit the limit. */
    if (c->q_len >= (uint64_t)s->queue_msgs / 2 ||
        c->q_bytes >= (uint64_t)s->queue_bytes / 2)
        client_flush(c);
    return 0;
}

static void set_write_interest(shard_client *c, int on)
{
    if ((c->ev_write != 0) == (on != 0))
        return;
    event_del(&c->ev);
    event_assign(&c->ev, c->pool->ctx->base, c->fd,
                 EV_READ | EV_PERSIST | (on ? EV_WRITE : 0), client_on_event,
                 c);
    event_add(&c->ev, NULL);
    c->ev_write = on ? 1 : 0;
}

void client_flush(shard_client *c)
{
    shard_ctx *ctx = c->pool->ctx;
    int64_t now_us = 0;   /* wall clock, read once per flush when needed */
    while (c->state != CL_DEAD && c->q_len > 0) {
        struct iovec iov[IOV_BATCH];
        int n = 0;
        for (uint32_t i = 0; i < c->q_len && n < IOV_BATCH; i++, n++) {
            ws_chunk *ch = c->q[(c->q_head + i) & (c->q_cap - 1)];
            uint32_t off = i == 0 ? c->q_off : 0;
            iov[n].iov_base = ch->data + off;
            iov[n].iov_len = ch->len - off;
        }
        ssize_t w = io_writev(c, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_write_interest(c, 1);
                return;
            }
            client_kill(c, "write failed");
            return;
        }
        ctx->m.ws_bytes_sent_total += (uint64_t)w;
        c->q_bytes -= (uint64_t)w;
        c->pool->n.queue_bytes -= (uint64_t)w;
        size_t left = (size_t)w;
        while (left > 0) {
            ws_chunk *ch = c->q[c->q_head];
            size_t rem = ch->len - c->q_off;
            if (left < rem) {
                c->q_off += (uint32_t)left;
                break;
            }
            left -= rem;
            if (ch->ts_ms > 0) {
                if (now_us == 0)
                    now_us = (int64_t)clock_wall_us();
                int64_t us = now_us - ch->ts_ms * 1000;
                prom_hist_observe(&ctx->m.shard_delivery_latency,
                                  us > 0 ? (double)us / 1e6 : 0.0);
            }
            ws_chunk_unref(ch);
            c->q_head = (c->q_head + 1) & (c->q_cap - 1);
            c->q_len--;
            c->q_off = 0;
        }
    }
    if (c->state == CL_DEAD)
        return;
    set_write_interest(c, 0);
    if (c->state == CL_CLOSING && !(c->flags & CLF_WR_SHUT)) {
        /* everything (close frame / HTTP response) is out: send FIN and
         * wait for the peer's EOF, bounded by WS_CLOSE_TIMEOUT */
        io_shutdown_wr(c);
        c->flags |= CLF_WR_SHUT;
    }
}

/* ---- closing ----------------------------------------------------------- */

static void ip_channels_release(shard_client *c, uint32_t n)
{
    client_pool *p = c->pool;
    if (n && p->ops.ip_channel_release)
        p->ops.ip_channel_release(p->ud, c, n);
}

/* c leaves the HTTP phase: counted once, then the owner gives back its
 * per-address slot (and may accept again). */
static void leave_http(shard_client *c)
{
    client_pool *p = c->pool;
    p->n.http--;
    if (p->ops.http_leave)
        p->ops.http_leave(p->ud, c);
}

static void enter_closing(shard_client *c)
{
    client_pool *p = c->pool;
    /* n.http counts never-upgraded connections until they are killed;
     * n.closing counts upgraded ones (they still hold a client slot) */
    if (c->state == CL_OPEN) {
        p->n.open--;
        p->n.closing++;
    }
    c->state = CL_CLOSING;
    c->t_state_ms = clock_mono_ms();
    /* Stop receiving data for it now, unless a fan-out is walking the
     * member arrays (the flush removes it then). */
    if (!p->in_fanout)
        subs_remove_all(p->ctx->subs, &c->subs);
    ip_channels_release(c, c->peer.ip_channels);
    pool_schedule_flush(p, c);
}

void client_close(shard_client *c, uint16_t code, const char *reason)
{
    if (c->state != CL_OPEN)
        return;
    shard_ctx *ctx = c->pool->ctx;
    ws_chunk *ch = ws_chunk_close(code, reason);
    if (!ch || q_append(c, ch) != 0) {
        ws_chunk_unref(ch);
        client_kill(c, "out of memory");
        return;
    }
    ws_chunk_unref(ch);
    shard_metrics_count_close(&ctx->m, code);
    ws_parser_stop(&c->parser);
    if (!(c->flags & CLF_IN_FEED))
        ws_parser_free(&c->parser);
    if (code != 1001 && code != 1000 && !(c->flags & CLF_SLOW))
        log_client(LOG_INFO, c, "closing client", reason, code);
    enter_closing(c);
}

void client_http_reply(shard_client *c, const char *data, size_t len,
                       int close_after)
{
    ws_chunk *ch = ws_chunk_new(len);
    if (!ch || q_append(c, ch) != 0) {
        ws_chunk_unref(ch);
        client_kill(c, "out of memory");
        return;
    }
    memcpy(ch->data, data, len);
    ws_chunk_unref(ch);
    if (close_after)
        enter_closing(c);
}

void client_refuse_now(shard_client *c, const char *data, size_t len,
                       const char *why)
{
    /* nothing is queued on a fresh connection: write at once, after
     * reading what the client sent (a close with input unread is a RST
     * that can lose the answer); best effort, the close tells it anyway */
    for (int i = 0; i < 4 && io_input_pending(c) &&
                    io_read(c, c->pool->rbuf, sizeof c->pool->rbuf) > 0; i++)
        ;
    struct iovec iov = { (void *)data, len };
    ssize_t w = io_writev(c, &iov, 1);
    (void)w;
    client_kill(c, why);
}

void client_kill(shard_client *c, const char *why)
{
    if (c->state == CL_DEAD)
        return;
    client_pool *p = c->pool;
    if (!(c->flags & CLF_UPGRADED))
        leave_http(c);
    else if (c->state == CL_OPEN)
        p->n.open--;
    else
        p->n.closing--;
    if (log_enabled(LOG_DEBUG))
        log_client(LOG_DEBUG, c, "connection closed", why, 0);
    c->state = CL_DEAD;
    event_del(&c->ev);
    io_close(c);
    c->fd = -1;
    q_release_all(c, 0);
    if (!(c->flags & CLF_IN_FEED))
        ws_parser_free(&c->parser);
    else
        ws_parser_stop(&c->parser);
    if (c->http_in) {
        buf_free(c->http_in);
        free(c->http_in);
        c->http_in = NULL;
    }
    pool_bury(p, c);
}

void client_free(shard_client *c)
{
    if (!c)
        return;
    client_pool *p = c->pool;
    if (p->ops.gone)
        p->ops.gone(p->ud, c);
    subs_remove_all(p->ctx->subs, &c->subs);
    ip_channels_release(c, c->peer.ip_channels);
    ws_parser_free(&c->parser);
    q_release_all(c, 0);
    q_shrink(c);
    free(c);
}

/* ---- client protocol ------------------------------------------------ */

static void send_reply(shard_client *c)
{
    client_pool *p = c->pool;
    ws_chunk *ch = ws_chunk_frame(WS_OP_TEXT, p->scratch.data, p->scratch.len);
    if (!ch) {
        client_close(c, 1011, "out of memory");
        return;
    }
    if (client_push(c, ch) == 0)
        p->ctx->m.ws_replies_sent_total++;
    ws_chunk_unref(ch);
}

int client_send_text(shard_client *c, const char *data, size_t len)
{
    ws_chunk *ch = ws_chunk_frame(WS_OP_TEXT, data, len);
    if (!ch)
        return -1;
    int r = client_push(c, ch);
    if (r == 0)
        c->pool->ctx->m.ws_replies_sent_total++;
    ws_chunk_unref(ch);
    return r;
}

static void send_error(shard_client *c, enum clientmsg_err e, const char *msg);

/* An error reply that is not the client's misbehaviour (a shared limit). */
static void send_notice(shard_client *c, enum clientmsg_err e, const char *msg);

static void send_error_ex(shard_client *c, enum clientmsg_err e, const char *msg,
                          int misbehaviour)
{
    client_pool *p = c->pool;
    shard_ctx *ctx = p->ctx;
    ctx->m.ws_client_errors_total[e]++;
    buf_reset(&p->scratch);
    if (clientmsg_build_error(&p->scratch, e, msg) != 0) {
        client_close(c, 1011, "out of memory");
        return;
    }
    send_reply(c);
    /* as odin-ws: an unknown type is answered but is not misbehaviour (a
     * newer client may send types this server does not know yet) */
    if (c->state != CL_OPEN || e == CLIENTMSG_E_UNKNOWN_TYPE || !misbehaviour)
        return;
    uint64_t now = clock_mono_ms();
    if (now - c->err_window_ms > (uint64_t)(ctx->set->error_window * 1000)) {
        c->err_window_ms = now;
        c->errors = 0;
    }
    if (c->errors < UINT16_MAX)
        c->errors++;
    if (c->errors > ctx->set->max_errors)
        client_close(c, 1008, "too many errors");
}

static void send_error(shard_client *c, enum clientmsg_err e, const char *msg)
{
    send_error_ex(c, e, msg, 1);
}

static void send_notice(shard_client *c, enum clientmsg_err e, const char *msg)
{
    send_error_ex(c, e, msg, 0);
}

static int rate_allow(shard_client *c, uint64_t now)
{
    const shard_settings *s = c->pool->ctx->set;
    if (c->rl_ms == 0) {
        c->rl_tokens = (double)s->msg_burst;
    } else {
        c->rl_tokens += (double)(now - c->rl_ms) * s->msg_rate / 1000.0;
        if (c->rl_tokens > (double)s->msg_burst)
            c->rl_tokens = (double)s->msg_burst;
    }
    c->rl_ms = now;
    if (c->rl_tokens < 1.0)
        return 0;
    c->rl_tokens -= 1.0;
    return 1;
}

static void handle_subscribe(shard_client *c, clientmsg *m)
{
    shard_ctx *ctx = c->pool->ctx;
    size_t fresh = 0;
    for (size_t i = 0; i < m->nchannels; i++)
        if (!subs_has(ctx->subs, &c->subs, m->channels[i].s,
                      m->channels[i].len))
            fresh++;
    if (subs_conn_count(&c->subs) + fresh > (size_t)ctx->set->max_channels) {
        char msg[128];
        snprintf(msg, sizeof(msg),
                 "subscription limit is %ld channels per connection "
                 "(have %u, asked for %zu more)",
                 ctx->set->max_channels, subs_conn_count(&c->subs), fresh);
        send_error(c, CLIENTMSG_E_TOO_MANY, msg);
        return;
    }
    /* The shard's SHARD_MAX_TOKENS and the address's WS_IP_MAX_CHANNELS
     * are shared with others: past them a channel is left out and said so,
     * the message's other channels still subscribe. */
    clientmsg_chan *ok = calloc(m->nchannels ? m->nchannels : 1, sizeof *ok);
    if (!ok) {
        client_close(c, 1011, "out of memory");
        return;
    }
    size_t nok = 0, tok_refused = 0, ip_refused = 0;
    const clientmsg_chan *first_tok = NULL, *first_ip = NULL;
    long max_tokens = ctx->set->max_tokens;
    for (size_t i = 0; i < m->nchannels; i++) {
        const clientmsg_chan *ch = &m->channels[i];
        if (subs_has(ctx->subs, &c->subs, ch->s, ch->len)) {
            ok[nok++] = *ch;
            continue;
        }
        size_t tl, cl;
        const char *cat;
        if (max_tokens > 0 && topics_channel_split(ch->s, ch->len, &tl, &cat, &cl) &&
            subs_token_refs(ctx->subs, ch->s, tl) == 0 &&
            subs_tokens_count(ctx->subs) >= (size_t)max_tokens) {
            tok_refused++;
            first_tok = first_tok ? first_tok : ch;
            continue;
        }
        if (c->pool->ops.ip_channel_take &&
            c->pool->ops.ip_channel_take(c->pool->ud, c) != 0) {
            ip_refused++;
            first_ip = first_ip ? first_ip : ch;
            continue;
        }
        int r = subs_add(ctx->subs, &c->subs, c, ch->s, ch->len);
        if (r != SUBS_ADDED)
            ip_channels_release(c, 1);
        if (r == SUBS_E_NOMEM) {
            free(ok);
            client_close(c, 1011, "out of memory");
            return;
        }
        ok[nok++] = *ch;
    }
    if (tok_refused) {
        char msg[256];
        ctx->m.ws_token_limit_rejections_total += tok_refused;
        snprintf(msg, sizeof msg,
                 "this server holds its limit of %ld tokens; %zu channel(s) not "
                 "subscribed, e.g. %.*s (try again later or another server)",
                 max_tokens, tok_refused, (int)(first_tok->len > 80 ? 80 : first_tok->len),
                 first_tok->s);
        send_notice(c, CLIENTMSG_E_TOO_MANY_TOKENS, msg);
    }
    if (ip_refused && c->state == CL_OPEN) {
        char msg[256];
        ctx->m.ws_ip_channel_rejections_total += ip_refused;
        snprintf(msg, sizeof msg,
                 "subscription limit is %ld channels per client address across its "
                 "connections; %zu channel(s) not subscribed, e.g. %.*s",
                 ctx->set->ip_max_channels, ip_refused,
                 (int)(first_ip->len > 80 ? 80 : first_ip->len), first_ip->s);
        send_notice(c, CLIENTMSG_E_TOO_MANY, msg);
    }
    if (m->type == CLIENTMSG_RECONNECT || c->state != CL_OPEN) {
        free(ok);
        return;               /* the reconnect answers for itself */
    }
    buf_reset(&c->pool->scratch);
    int bad = clientmsg_build_ack(&c->pool->scratch, CLIENTMSG_SUBSCRIBE, ok, nok,
                                  subs_conn_count(&c->subs));
    free(ok);
    if (bad != 0) {
        client_close(c, 1011, "out of memory");
        return;
    }
    send_reply(c);
}

static void start_resume(shard_client *c, const resume_req_chan *rq, size_t n,
                         int odinws)
{
    client_pool *p = c->pool;
    if (p->ops.resume_start)
        p->ops.resume_start(p->ud, c, rq, n, odinws);
}

/* reconnect: subscribe (same rules as subscribe), then replay from Kafka
 * (shard/resume.c answers with reconnect_ack or reconnect_error). */
static void handle_reconnect(shard_client *c, clientmsg *m)
{
    shard_ctx *ctx = c->pool->ctx;
    if (m->odinws) {
        /* odin-ws: last_offset per topic applies to the client's current
         * subscriptions of that topic's category */
        size_t n = 0, cap = subs_conn_count(&c->subs);
        resume_req_chan *rq = calloc(cap ? cap : 1, sizeof(*rq));
        if (!rq) {
            client_close(c, 1011, "out of memory");
            return;
        }
        for (uint32_t i = 0; i < c->subs.n; i++) {
            size_t len, tl, cl;
            const char *name = subs_channel_name(c->subs.links[i].ch, &len);
            const char *cat;
            if (!topics_channel_split(name, len, &tl, &cat, &cl))
                continue;
            const topic_info *ti = topics_by_category(cat, cl);
            for (size_t k = 0; ti && k < m->ntopics; k++) {
                if (strlen(ti->topic) == m->topics[k].len &&
                    memcmp(ti->topic, m->topics[k].topic, m->topics[k].len) == 0) {
                    rq[n].name = name;
                    rq[n].len = len;
                    rq[n].partition = -1;
                    rq[n].seq = m->topics[k].offset;
                    n++;
                    break;
                }
            }
        }
        start_resume(c, rq, n, 1);
        free(rq);
        return;
    }
    handle_subscribe(c, m);   /* validates, subscribes, acks nothing yet */
    if (c->state != CL_OPEN)
        return;
    for (size_t i = 0; i < m->nchannels; i++)
        if (!subs_has(ctx->subs, &c->subs, m->channels[i].s,
                      m->channels[i].len))
            return;           /* refused (error already sent) */
    resume_req_chan *rq = calloc(m->nchannels ? m->nchannels : 1, sizeof(*rq));
    if (!rq) {
        client_close(c, 1011, "out of memory");
        return;
    }
    for (size_t i = 0; i < m->nchannels; i++) {
        rq[i].name = m->channels[i].s;
        rq[i].len = m->channels[i].len;
        rq[i].partition = m->positions[i].p;
        rq[i].seq = m->positions[i].seq;
    }
    start_resume(c, rq, m->nchannels, 0);
    free(rq);
}

static void handle_unsubscribe(shard_client *c, clientmsg *m)
{
    shard_ctx *ctx = c->pool->ctx;
    for (size_t i = 0; i < m->nchannels; i++)
        if (subs_remove(ctx->subs, &c->subs, m->channels[i].s, m->channels[i].len) == 1)
            ip_channels_release(c, 1);
    buf_reset(&c->pool->scratch);
    if (clientmsg_build_ack(&c->pool->scratch, CLIENTMSG_UNSUBSCRIBE,
                            m->channels, m->nchannels,
                            subs_conn_count(&c->subs)) != 0) {
        client_close(c, 1011, "out of memory");
        return;
    }
    send_reply(c);
}

static void on_ws_message(void *ud, ws_parser *p, unsigned opcode,
                          const uint8_t *msg, size_t len)
{
    shard_client *c = ud;
    shard_ctx *ctx = c->pool->ctx;
    if (c->state != CL_OPEN)
        return;
    ctx->m.ws_messages_received_total++;
    if (opcode == WS_OP_BINARY) {
        /* as odin-ws: ignored, not closed (and not rate limited: nothing is
         * answered, so there is nothing to amplify) */
        ctx->m.ws_binary_frames_ignored_total++;
        return;
    }
    uint64_t now = clock_mono_ms();
    if (!rate_allow(c, now)) {
        ctx->m.ws_message_ratelimit_total++;
        char m[96];
        snprintf(m, sizeof(m), "more than %g messages/s (burst %ld)",
                 ctx->set->msg_rate, ctx->set->msg_burst);
        send_error(c, CLIENTMSG_E_RATE_LIMIT, m);
        return;
    }
    if (len > (size_t)ctx->set->max_message) {
        char m[96];
        snprintf(m, sizeof(m), "message is %zu bytes; the limit is %ld",
                 len, ctx->set->max_message);
        send_error(c, CLIENTMSG_E_TOO_LARGE, m);
        return;
    }
    clientmsg cm;
    enum clientmsg_err e = clientmsg_parse((const char *)msg, len,
                                           (size_t)ctx->set->max_channels,
                                           &cm);
    if (e != CLIENTMSG_OK) {
        send_error(c, e, cm.errmsg);
    } else if (cm.type == CLIENTMSG_SUBSCRIBE) {
        handle_subscribe(c, &cm);
    } else if (cm.type == CLIENTMSG_UNSUBSCRIBE) {
        handle_unsubscribe(c, &cm);
    } else if (cm.type == CLIENTMSG_RECONNECT) {
        handle_reconnect(c, &cm);
    } else {
        buf_reset(&c->pool->scratch);
        if (clientmsg_build_pong(&c->pool->scratch, clock_wall_ms()) == 0)
            send_reply(c);
    }
    clientmsg_free(&cm);
}

static void on_ws_control(void *ud, ws_parser *p, unsigned opcode,
                          uint16_t code)
{
    /* pings are answered by wslay; pongs only prove liveness (last_rx) */
    (void)ud;
    (void)p;
    (void)opcode;
    (void)code;
}

static int on_ws_send(void *ud, const uint8_t *data, size_t len)
{
    shard_client *c = ud;
    if (c->state != CL_OPEN)
        return -1;
    /* pongs count against the queue too: a client that pings without
     * reading is a slow client */
    const shard_settings *s = c->pool->ctx->set;
    if (c->q_len >= (uint64_t)s->queue_msgs ||
        c->q_bytes + len > (uint64_t)s->queue_bytes) {
        client_slow(c);
        return -1;
    }
    ws_chunk *ch = ws_chunk_new(len);
    if (!ch)
        return -1;
    memcpy(ch->data, data, len);
    int r = q_append(c, ch);
    ws_chunk_unref(ch);
    return r;
}

static const ws_parser_cb g_parser_cb = {
    .on_message = on_ws_message,
    .on_control = on_ws_control,
    .send = on_ws_send,
};

static void ws_input(shard_client *c, const uint8_t *data, size_t len)
{
    shard_ctx *ctx = c->pool->ctx;
    c->flags |= CLF_IN_FEED;
    int r = ws_parser_feed(&c->parser, &g_parser_cb, c, data, len,
                           (uint64_t)ctx->set->max_frame);
    c->flags &= (uint16_t)~CLF_IN_FEED;
    if (c->state == CL_DEAD)
        return;
    if (!c->parser.ctx)
        c->partial_ms = 0;
    else if (!c->partial_ms)
        c->partial_ms = clock_mono_ms();
    switch (r) {
    case WS_FEED_OK:
    case WS_FEED_STOPPED:
        break;
    case WS_FEED_CLOSED:
        /* wslay answered the peer's close or closed for a violation */
        if (c->state == CL_OPEN) {
            uint16_t code = c->parser.close_code;
            if (code != 1000 && code != 1001 && code != 1005)
                shard_metrics_count_close(&ctx->m, code);
            if (code == 1002 || code == 1007 || code == 1009)
                log_client(LOG_INFO, c, "closing client", "protocol violation",
                           code);
            enter_closing(c);
        }
        break;
    case WS_FEED_ERROR:
        client_close(c, 1002, "protocol error");
        break;
    case WS_FEED_BUDGET:
        ctx->m.ws_partial_budget_closes_total++;
        log_client(LOG_INFO, c, "closing client", "partial-frame budget full", 1013);
        client_close(c, 1013, "try again later");
        break;
    default:
        client_close(c, 1011, "out of memory");
        break;
    }
}

void client_upgrade(shard_client *c, int deflate, const char *rest, size_t len)
{
    client_pool *p = c->pool;
    uint64_t now = clock_mono_ms();
    leave_http(c);
    p->n.open++;
    c->state = CL_OPEN;
    c->flags |= CLF_UPGRADED;
    c->last_rx_ms = now;
    c->next_ping_ms = now + (uint64_t)(p->ctx->set->ping_interval * 1000);
    p->ctx->m.ws_connections_total++;
    if (deflate) {
        c->parser.deflate = 1;
        p->ctx->m.ws_deflate_connections_total++;
    }
    /* `rest` may point into http_in: detach it, feed, then free */
    buf *hb = c->http_in;
    c->http_in = NULL;
    if (len > 0)
        ws_input(c, (const uint8_t *)rest, len);
    if (hb) {
        buf_free(hb);
        free(hb);
    }
}

/* ---- reading ------------------------------------------------------------ */

static void http_input(shard_client *c, const uint8_t *data, size_t n)
{
    if (!c->http_in) {
        c->http_in = calloc(1, sizeof(buf));
        if (!c->http_in) {
            client_kill(c, "out of memory");
            return;
        }
    }
    if (buf_append(c->http_in, data, n) != 0) {
        client_kill(c, "out of memory");
        return;
    }
    if (c->peer.flags & CLIENT_PEER_PROXY_WAIT) {
        size_t used = 0;
        if (c->pool->ops.proxy(c->pool->ud, c, (const uint8_t *)c->http_in->data,
                               c->http_in->len, &used) <= 0)
            return;   /* refused (c is dead), or waiting for more bytes */
        buf_consume(c->http_in, used);
        if (c->http_in->len == 0)
            return;
        data = (const uint8_t *)c->http_in->data;   /* look at what is left */
        n = c->http_in->len;
    }
    /* the head ends with "\r\n\r\n": parse only when a line ended (or
     * when the head is already too long), not on every byte of a slow one */
    if (memchr(data, '\n', n) || c->http_in->len > SHARD_HTTP_MAX_HEAD)
        c->pool->ops.http_request(c->pool->ud, c, c->http_in->data,
                                  c->http_in->len);
}

static void client_read(shard_client *c)
{
    for (int i = 0; i < READS_PER_WAKEUP && c->state != CL_DEAD; i++) {
        ssize_t n = io_read(c, c->pool->rbuf, sizeof(c->pool->rbuf));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                client_kill(c, "read failed");
            return;
        }
        if (n == 0) {
            client_kill(c, "peer closed");
            return;
        }
        c->last_rx_ms = clock_mono_ms();
        switch (c->state) {
        case CL_HTTP:
            http_input(c, c->pool->rbuf, (size_t)n);
            break;
        case CL_OPEN:
            ws_input(c, c->pool->rbuf, (size_t)n);
            break;
        default:
            break;   /* closing: discard until EOF */
        }
        if ((size_t)n < sizeof(c->pool->rbuf))
            return;
    }
}

static void client_on_event(evutil_socket_t fd, short what, void *arg)
{
    shard_client *c = arg;
    if ((what & EV_WRITE) && c->state != CL_DEAD)
        client_flush(c);
    if ((what & EV_READ) && c->state != CL_DEAD)
        client_read(c);
}

/* ---- timers -------------------------------------------------------------- */

void client_tick(shard_client *c, uint64_t now)
{
    shard_ctx *ctx = c->pool->ctx;
    const shard_settings *s = ctx->set;
    switch (c->state) {
    case CL_HTTP:
        if (now - c->t_state_ms >= (uint64_t)(s->handshake_timeout * 1000)) {
            /* what the client sent may wait unread behind a late loop
             * (net_input_pending): read it first, so a complete request
             * is answered, and the close of a slow one carries no unread
             * input (which the kernel answers with a RST, not a FIN) */
            if (io_input_pending(c)) {
                client_read(c);
                if (c->state != CL_HTTP)
                    break;
            }
            ctx->m.ws_handshake_timeouts_total++;
            client_kill(c, "handshake timeout");
        }
        break;
    case CL_OPEN:
        if (now - c->last_rx_ms >= (uint64_t)(s->idle_timeout * 1000)) {
            ctx->m.ws_idle_timeouts_total++;
            client_close(c, 1001, "idle timeout");
            break;
        }
        if (c->partial_ms && c->parser.ctx &&
            now - c->partial_ms >= (uint64_t)(s->partial_timeout * 1000)) {
            ctx->m.ws_partial_timeouts_total++;
            log_client(LOG_INFO, c, "closing client", "incomplete frame timeout", 1008);
            client_close(c, 1008, "incomplete frame timeout");
            break;
        }
        if (now >= c->next_ping_ms) {
            c->next_ping_ms = now + (uint64_t)(s->ping_interval * 1000);
            client_push(c, c->pool->ping);
        }
        if (c->q_len == 0)
            q_shrink(c);
        break;
    case CL_CLOSING:
        if (now - c->t_state_ms >= (uint64_t)(s->close_timeout * 1000))
            client_kill(c, "close timeout");
        break;
    default:
        break;
    }
}
