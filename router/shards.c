#include "router/shards.h"
#include "router/adminapi.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/net.h"
#include "proto/handshake.h"

/* Largest frame we accept from a shard: it only ever sends HELLO and AUTH. */
#define OUR_MAX_FRAME FRAME_HANDSHAKE_MAX
#define BACKOFF_MIN_MS 50
#define READ_CHUNK 16384
#define READS_PER_WAKEUP 8

struct router_shard {
    uint16_t slot;
    char *id;
    size_t id_len;
    char *endpoint;              /* from the lease; NULL if none */
    int live;                    /* lease present at last discovery, or in grace */
    uint64_t down_since_ms;      /* lease lapsed while connected (grace); 0 = no */
    enum router_shard_state state;
    int fd;
    struct event *rev, *wev, *timer;
    struct net_connect *nc;      /* resolve + connect in progress */
    struct handshake *hs;        /* link handshake (proto/handshake.h) until
                                    the link is up; NULL otherwise */
    int write_armed;
    router_outq q;
    frame_decoder *dec;
    uint32_t max_frame;          /* peer's max payload */
    uint64_t last_progress_ms;   /* last successful write (or queue empty) */
    long backoff_ms;
    uint64_t connects;
    int quiet;                   /* repeated failures are logged at debug */
    int abort_close;             /* next close is abortive (net_close_abort):
                                    given up on, not a graceful end */
    /* per-batch frame building */
    frame_batch fb;
    int fb_open;
    uint32_t fb_nrec;
    uint64_t fb_batch;           /* batch number fb belongs to */
    uint64_t flushed_batch;      /* batch in which the socket filled up */
    uint64_t bp_since_ms;        /* queue above half since then (0 = below) */
    int bp_slow;                 /* did not drain within the budget: not waited for */
    uint64_t drops[ROUTER_DROP_COUNT];   /* records this shard did not get
                                            (written by shards.c only) */
    struct router_shards *owner;
};

struct router_shards {
    struct event_base *base;
    router_shards_opts opts;
    char *router_id;
    char *secret;                /* NULL: links are not authenticated */
    size_t secret_len;
    router_shards_hooks hooks;
    router_metrics *m;
    router_shard **slots;
    size_t nslots;
    /* current batch */
    uint64_t batch_no;
    enum frame_mode mode;
    void *ticket;
    uint16_t *touched;
    size_t ntouched;
};

static void shard_connect(router_shards *s, router_shard *sh);
static void shard_close(router_shards *s, router_shard *sh, const char *why,
                        enum router_drop reason, int retry_ms);

router_shards *router_shards_new(struct event_base *base, const router_shards_opts *opts,
                                 const router_shards_hooks *hooks, router_metrics *m)
{
    router_shards *s = calloc(1, sizeof *s);
    if (!s)
        goto err;
    s->base = base;
    s->opts = *opts;
    s->hooks = *hooks;
    s->m = m;
    s->router_id = strdup(opts->router_id ? opts->router_id : "router");
    s->slots = calloc(ROUTER_SHARDS_MAX, sizeof *s->slots);
    s->touched = calloc(ROUTER_SHARDS_MAX, sizeof *s->touched);
    if (!s->router_id || !s->slots || !s->touched)
        goto err;
    s->opts.router_id = s->router_id;
    if (opts->secret && *opts->secret) {
        s->secret = strdup(opts->secret);
        if (!s->secret)
            goto err;
        s->secret_len = strlen(s->secret);
    }
    s->opts.secret = s->secret;
    return s;
err:
    router_shards_free(s);
    return NULL;
}

static void shard_free(router_shards *s, router_shard *sh)
{
    if (sh->state != RSH_IDLE)
        shard_close(s, sh, "shutdown", ROUTER_DROP_SHARD_DOWN, -1);
    if (sh->timer)
        event_free(sh->timer);
    router_outq_free(&sh->q);
    frame_decoder_free(sh->dec);
    free(sh->id);
    free(sh->endpoint);
    free(sh);
}

void router_shards_free(router_shards *s)
{
    if (!s)
        return;
    for (size_t i = 0; s->slots && i < s->nslots; i++)
        if (s->slots[i])
            shard_free(s, s->slots[i]);
    free(s->slots);
    free(s->touched);
    free(s->router_id);
    if (s->secret) {
        OPENSSL_cleanse(s->secret, s->secret_len);
        free(s->secret);
    }
    free(s);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg);

router_shard *router_shards_find(router_shards *s, const char *id, size_t len)
{
    for (size_t i = 0; i < s->nslots; i++) {
        router_shard *sh = s->slots[i];
        if (sh->id_len == len && memcmp(sh->id, id, len) == 0)
            return sh;
    }
    return NULL;
}

router_shard *router_shards_intern(router_shards *s, const char *id, size_t len)
{
    if (len == 0 || len > 255)
        return NULL;
    router_shard *found = router_shards_find(s, id, len);
    if (found)
        return found;
    if (s->nslots >= ROUTER_SHARDS_MAX) {
        static log_ratelimit rl = { .per_sec = 1 };
        uint64_t sup;
        if (log_rl_allow(&rl, &sup))
            log_kv(LOG_ERROR, "shard table full; ignoring shard id", "S:shard", id, len,
                   "u:suppressed", sup, NULL);
        return NULL;
    }
    router_shard *sh = calloc(1, sizeof *sh);
    if (!sh)
        return NULL;
    sh->id = malloc(len + 1);
    if (!sh->id) {
        free(sh);
        return NULL;
    }
    memcpy(sh->id, id, len);
    sh->id[len] = '\0';
    sh->id_len = len;
    sh->fd = -1;
    sh->owner = s;
    sh->slot = (uint16_t)s->nslots;
    sh->max_frame = FRAME_DEFAULT_MAX;
    sh->backoff_ms = BACKOFF_MIN_MS;
    sh->timer = evtimer_new(s->base, timer_cb, sh);
    if (!sh->timer) {
        free(sh->id);
        free(sh);
        return NULL;
    }
    router_outq_init(&sh->q);
    s->slots[s->nslots++] = sh;
    return sh;
}

router_shard *router_shards_get(router_shards *s, uint16_t slot)
{
    return slot < s->nslots ? s->slots[slot] : NULL;
}

size_t router_shards_nslots(const router_shards *s) { return s->nslots; }

size_t router_shards_live(const router_shards *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->nslots; i++)
        n += s->slots[i]->live != 0;
    return n;
}

size_t router_shards_ready(const router_shards *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->nslots; i++)
        n += s->slots[i]->state == RSH_READY;
    return n;
}

int router_shards_backpressure(router_shards *s, uint64_t now_ms, long budget_ms)
{
    if (budget_ms <= 0)
        return 0;
    int wait = 0;
    size_t high = s->opts.queue_bytes / 2, low = s->opts.queue_bytes / 4;
    for (size_t i = 0; i < s->nslots; i++) {
        router_shard *sh = s->slots[i];
        size_t pending = router_outq_pending(&sh->q);
        if (sh->state != RSH_READY || pending < low) {
            sh->bp_since_ms = 0;
            sh->bp_slow = 0;
            continue;
        }
        if (pending < high || sh->bp_slow) {
            sh->bp_since_ms = 0;
            continue;
        }
        if (sh->bp_since_ms == 0)
            sh->bp_since_ms = now_ms;
        if (now_ms - sh->bp_since_ms < (uint64_t)budget_ms) {
            wait = 1;
        } else {
            sh->bp_slow = 1;
            sh->bp_since_ms = 0;
            log_kv(LOG_WARN, "shard slower than the stream; not waiting for it "
                   "(its records are dropped while its queue is full)", "s:shard", sh->id,
                   "u:queued_bytes", (uint64_t)pending, "i:waited_ms", (int)budget_ms, NULL);
        }
    }
    return wait;
}

uint64_t router_shards_queued_bytes(const router_shards *s)
{
    uint64_t n = 0;
    for (size_t i = 0; i < s->nslots; i++)
        n += router_outq_pending(&s->slots[i]->q);
    return n;
}

int router_shards_sample(const void *shards, size_t i, router_shard_sample *out)
{
    const router_shards *s = shards;
    if (i >= s->nslots || !s->slots[i])
        return -1;
    const router_shard *sh = s->slots[i];
    out->id = sh->id;
    out->queue_bytes = router_outq_pending(&sh->q);
    memcpy(out->drops, sh->drops, sizeof out->drops);
    return 0;
}

/* ---- marks ---------------------------------------------------------------- */

struct mark_ctx {
    router_shards *s;
    router_shard *sh;
    enum router_drop reason;
};

/* The one writer of the drop counters, the router's (router_records_dropped_total
 * {reason}) and the shard's (its shard label, the admin API): every record a
 * shard does not get is counted here, once. */
static void count_drop(router_shards *s, router_shard *sh, enum router_drop reason,
                       uint64_t n)
{
    s->m->drops[reason] += n;
    sh->drops[reason] += n;
}

static void mark_cb(void *ticket, uint32_t nrec, int done, void *arg)
{
    struct mark_ctx *c = arg;
    if (done)
        c->s->m->frames_sent++;
    else
        count_drop(c->s, c->sh, c->reason, nrec);
    c->s->hooks.frame(ticket, nrec, done, c->reason, c->s->hooks.arg);
}

/* ---- connection ------------------------------------------------------------ */

static void notify_state(router_shards *s)
{
    if (s->hooks.state)
        s->hooks.state(s->hooks.arg);
}

static void arm_timer(router_shard *sh, long ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(sh->timer, &tv);
}

/* Close the connection (if any), drop the queue with `reason`, and retry in
 * retry_ms if the shard is live (-1: use and grow the backoff; -2: never). */
static void shard_close(router_shards *s, router_shard *sh, const char *why,
                        enum router_drop reason, int retry_ms)
{
    int was_ready = sh->state == RSH_READY;
    if (sh->state != RSH_IDLE) {
        /* A shard that keeps refusing is logged once, then at debug level
         * until it has been ready again. */
        enum log_level lvl = was_ready ? LOG_WARN : sh->quiet ? LOG_DEBUG : LOG_INFO;
        log_kv(lvl, "shard connection closed", "s:shard", sh->id, "s:reason", why,
               "u:queued_bytes", (uint64_t)router_outq_pending(&sh->q), NULL);
        if (!was_ready)
            sh->quiet = 1;
    }
    if (sh->nc) {
        net_connect_cancel(sh->nc);
        sh->nc = NULL;
    }
    if (sh->rev) {
        event_free(sh->rev);
        sh->rev = NULL;
    }
    if (sh->wev) {
        event_free(sh->wev);
        sh->wev = NULL;
    }
    sh->write_armed = 0;
    if (sh->fd >= 0) {
        if (sh->abort_close)
            net_close_abort(sh->fd);
        else
            close(sh->fd);
        sh->fd = -1;
    }
    sh->abort_close = 0;
    /* An open frame of the batch being built is abandoned with the queue. */
    if (sh->fb_open) {
        frame_batch_abort(&sh->fb);
        if (sh->fb_nrec) {
            count_drop(s, sh, reason, sh->fb_nrec);
        }
        sh->fb_open = 0;
        sh->fb_nrec = 0;
    }
    struct mark_ctx mc = { s, sh, reason };
    router_outq_clear(&sh->q, mark_cb, &mc);
    frame_decoder_free(sh->dec);
    sh->dec = NULL;
    handshake_free(sh->hs);
    sh->hs = NULL;
    sh->state = RSH_IDLE;
    evtimer_del(sh->timer);
    if (sh->live && retry_ms != -2) {
        long ms = retry_ms >= 0 ? retry_ms : sh->backoff_ms;
        if (retry_ms < 0) {
            sh->backoff_ms *= 2;
            if (sh->backoff_ms > s->opts.reconnect_max_ms)
                sh->backoff_ms = s->opts.reconnect_max_ms;
        }
        arm_timer(sh, ms);
    }
    if (was_ready)
        notify_state(s);
}

static void shard_flush(router_shards *s, router_shard *sh);

static void write_cb(evutil_socket_t fd, short what, void *arg);
static void read_cb(evutil_socket_t fd, short what, void *arg);

static void on_connected(router_shards *s, router_shard *sh)
{
    sh->state = RSH_HELLO;
    handshake_cfg hc = {
        .role = HANDSHAKE_ROUTER,
        .id = s->router_id,
        .max_frame = OUR_MAX_FRAME,
        .secret = s->secret,
        .target = sh->id,
        .endpoint = sh->endpoint,
    };
    sh->dec = frame_decoder_new(OUR_MAX_FRAME);
    sh->hs = sh->dec ? handshake_new(&hc) : NULL;
    if (!sh->hs || handshake_start(sh->hs, router_outq_buf(&sh->q)) != 0) {
        shard_close(s, sh, "out of memory (or ROUTER_ID, shard id and endpoint too long "
                    "for a HELLO)", ROUTER_DROP_SHARD_DOWN, -1);
        return;
    }
    event_add(sh->rev, NULL);
    sh->last_progress_ms = clock_mono_ms();
    shard_flush(s, sh);
}

static void on_net_connect(int fd, int err, const char *errstr, void *arg)
{
    router_shard *sh = arg;
    router_shards *s = sh->owner;
    sh->nc = NULL;
    if (fd < 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "connect %s: %s", sh->endpoint, errstr);
        shard_close(s, sh, msg, ROUTER_DROP_SHARD_DOWN, -1);
        return;
    }
    sh->fd = fd;
    if (strncmp(sh->endpoint, "tcp://", 6) == 0) {
        /* frames are batched already: don't delay them; and notice a shard
         * host that vanished without a FIN */
        net_nodelay(fd);
        net_keepalive(fd, NET_KEEPALIVE_IDLE_S, NET_KEEPALIVE_INTVL_S, NET_KEEPALIVE_CNT);
    }
    sh->rev = event_new(s->base, fd, EV_READ | EV_PERSIST, read_cb, sh);
    sh->wev = event_new(s->base, fd, EV_WRITE | EV_PERSIST, write_cb, sh);
    if (!sh->rev || !sh->wev) {
        shard_close(s, sh, "out of memory", ROUTER_DROP_SHARD_DOWN, -1);
        return;
    }
    on_connected(s, sh);
}

static void shard_connect(router_shards *s, router_shard *sh)
{
    if (sh->state != RSH_IDLE || !sh->live || !sh->endpoint)
        return;
    net_endpoint ep;
    if (net_endpoint_parse(sh->endpoint, &ep) != NET_OK) {
        log_kv(LOG_ERROR, "cannot connect to shard", "s:shard", sh->id, "s:endpoint",
               sh->endpoint, "s:error",
               "endpoint is neither unix:/path nor tcp://host:port", NULL);
        sh->backoff_ms = s->opts.reconnect_max_ms;
        arm_timer(sh, sh->backoff_ms);
        return;
    }
    sh->connects++;
    sh->state = RSH_CONNECTING;
    arm_timer(sh, s->opts.hello_timeout_ms);   /* covers resolve + connect */
    sh->nc = net_connect_start(s->base, s->opts.dns, &ep, on_net_connect, sh);
    if (!sh->nc)
        shard_close(s, sh, "out of memory", ROUTER_DROP_SHARD_DOWN, -1);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    router_shard *sh = arg;
    router_shards *s = sh->owner;
    switch (sh->state) {
    case RSH_IDLE:
        shard_connect(s, sh);
        break;
    case RSH_CONNECTING:
    case RSH_HELLO:
        shard_close(s, sh, sh->state == RSH_CONNECTING ? "connect timeout" : "hello timeout",
                    ROUTER_DROP_SHARD_DOWN, -1);
        break;
    case RSH_READY:
        break;
    }
}

static void shard_flush(router_shards *s, router_shard *sh)
{
    if (sh->fd < 0 || sh->state == RSH_CONNECTING)
        return;
    while (router_outq_pending(&sh->q) > 0) {
        ssize_t n = net_write_all(sh->fd, router_outq_data(&sh->q),
                                  router_outq_pending(&sh->q));
        if (n == 0)
            break;    /* socket full: wait for EV_WRITE */
        if (n < 0) {
            char err[128];
            snprintf(err, sizeof err, "write: %s", strerror(errno));
            shard_close(s, sh, err, ROUTER_DROP_SHARD_DOWN, -1);
            return;
        }
        s->m->bytes_sent += (uint64_t)n;
        sh->last_progress_ms = clock_mono_ms();
        struct mark_ctx mc = { s, sh, ROUTER_DROP_SHARD_DOWN };
        router_outq_written(&sh->q, (size_t)n, mark_cb, &mc);
    }
    int want = router_outq_pending(&sh->q) > 0;
    if (want && !sh->write_armed) {
        event_add(sh->wev, NULL);
        sh->write_armed = 1;
    } else if (!want && sh->write_armed) {
        event_del(sh->wev);
        sh->write_armed = 0;
    }
}

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
    router_shard *sh = arg;
    shard_flush(sh->owner, sh);
}

/* The link is up both ways (and authenticated when there is a secret). */
static void shard_ready(router_shards *s, router_shard *sh)
{
    uint32_t mf = handshake_peer_max_frame(sh->hs);
    if (mf == 0 || mf > FRAME_DEFAULT_MAX)
        mf = FRAME_DEFAULT_MAX;
    if (mf < FRAME_MIN_MAX)
        mf = FRAME_MIN_MAX;
    sh->max_frame = mf;
    int authed = handshake_authenticated(sh->hs);
    handshake_free(sh->hs);
    sh->hs = NULL;
    sh->state = RSH_READY;
    sh->backoff_ms = BACKOFF_MIN_MS;
    sh->quiet = 0;
    evtimer_del(sh->timer);
    log_kv(LOG_INFO, "shard connected", "s:shard", sh->id, "s:endpoint", sh->endpoint,
           "u:max_frame", (uint64_t)sh->max_frame, "b:authenticated", authed, NULL);
    notify_state(s);
}

/* One frame of the handshake; 0 to go on, -1 if the connection was closed. */
static int handle_handshake(router_shards *s, router_shard *sh, const frame_msg *m)
{
    size_t before = router_outq_pending(&sh->q);
    int r = handshake_on_frame(sh->hs, m, router_outq_buf(&sh->q));
    if (r == HANDSHAKE_REFUSED) {
        enum handshake_refusal why = handshake_refusal(sh->hs);
        char reason[600];
        snprintf(reason, sizeof reason, "%s", handshake_reason(sh->hs));
        if (why == HANDSHAKE_R_NOMEM) {
            shard_close(s, sh, "out of memory", ROUTER_DROP_SHARD_DOWN, -1);
            return -1;
        }
        if (why == HANDSHAKE_R_AUTH || why == HANDSHAKE_R_IDENTITY)
            s->m->shard_auth_failures++;
        log_kv(sh->quiet ? LOG_DEBUG : LOG_ERROR, "shard rejected", "s:shard", sh->id,
               "s:endpoint", sh->endpoint, "s:reason", reason,
               "s:refusal", handshake_refusal_name(why), NULL);
        shard_close(s, sh, reason, ROUTER_DROP_SHARD_DOWN, (int)s->opts.reconnect_max_ms);
        return -1;
    }
    if (router_outq_pending(&sh->q) != before) {
        shard_flush(s, sh);     /* our AUTH */
        if (sh->state == RSH_IDLE)
            return -1;
    }
    if (r == HANDSHAKE_DONE)
        shard_ready(s, sh);
    return 0;
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
    router_shard *sh = arg;
    router_shards *s = sh->owner;
    char chunk[READ_CHUNK];
    for (int i = 0; i < READS_PER_WAKEUP; i++) {
        ssize_t n = recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
        if (n == 0) {
            if (sh->hs && handshake_proved(sh->hs)) {
                /* it had our AUTH and said nothing: it refused it */
                s->m->shard_auth_failures++;
                const char *why = "shard closed the link after our AUTH (SHARD_INGRESS_SECRET "
                                  "differs, or it refused this router)";
                log_kv(sh->quiet ? LOG_DEBUG : LOG_ERROR, "shard rejected", "s:shard", sh->id,
                       "s:endpoint", sh->endpoint, "s:reason", why, "s:refusal", "auth", NULL);
                shard_close(s, sh, why, ROUTER_DROP_SHARD_DOWN, (int)s->opts.reconnect_max_ms);
                return;
            }
            shard_close(s, sh, "closed by shard", ROUTER_DROP_SHARD_DOWN, -1);
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            char err[128];
            snprintf(err, sizeof err, "read: %s", strerror(errno));
            shard_close(s, sh, err, ROUTER_DROP_SHARD_DOWN, -1);
            return;
        }
        if (frame_decoder_feed(sh->dec, chunk, (size_t)n) != FRAME_OK) {
            shard_close(s, sh, "out of memory", ROUTER_DROP_SHARD_DOWN, -1);
            return;
        }
        frame_msg msg;
        int rc;
        while ((rc = frame_decoder_next(sh->dec, &msg)) == 1) {
            if (sh->state == RSH_HELLO) {
                if (handle_handshake(s, sh, &msg) != 0)
                    return;
                continue;
            }
            /* an authenticated shard sends nothing after the handshake */
            shard_close(s, sh, "unexpected frame from shard after the handshake",
                        ROUTER_DROP_SHARD_DOWN, -1);
            return;
        }
        if (rc < 0) {
            char err[128];
            snprintf(err, sizeof err, "bad frame from shard: %s", frame_strerror(rc));
            shard_close(s, sh, err, ROUTER_DROP_SHARD_DOWN, -1);
            return;
        }
        if ((size_t)n < sizeof chunk)
            break;
    }
}

void router_shards_set_live(router_shards *s, router_shard *sh, const char *endpoint)
{
    int changed = !sh->endpoint || !endpoint || strcmp(sh->endpoint, endpoint) != 0;
    if (changed) {
        char *e = endpoint ? strdup(endpoint) : NULL;
        if (endpoint && !e)
            return;
        if (sh->endpoint)
            log_kv(LOG_INFO, "shard endpoint changed", "s:shard", sh->id, "s:old",
                   sh->endpoint, "s:new", endpoint, NULL);
        free(sh->endpoint);
        sh->endpoint = e;
    }
    if (!sh->live) {
        log_kv(LOG_INFO, "shard live", "s:shard", sh->id, "s:endpoint", endpoint, NULL);
        sh->quiet = 0;
    }
    if (sh->down_since_ms)
        log_kv(LOG_WARN, "shard lease is back within its grace; nothing was dropped",
               "s:shard", sh->id, "I:lapsed_ms",
               (int64_t)(clock_mono_ms() - sh->down_since_ms), NULL);
    sh->down_since_ms = 0;
    sh->live = 1;
    if (changed && sh->state != RSH_IDLE) {
        shard_close(s, sh, "endpoint changed", ROUTER_DROP_SHARD_DOWN, 0);
    } else if (sh->state == RSH_IDLE && (changed || !evtimer_pending(sh->timer, NULL))) {
        evtimer_del(sh->timer);   /* a new endpoint is worth trying at once */
        shard_connect(s, sh);
    }
}

void router_shards_set_dead(router_shards *s, router_shard *sh, const char *why)
{
    if (sh->live)
        log_kv(LOG_INFO, "shard not live", "s:shard", sh->id, "s:reason", why, NULL);
    sh->live = 0;
    sh->down_since_ms = 0;
    sh->backoff_ms = BACKOFF_MIN_MS;
    if (sh->state != RSH_IDLE)
        shard_close(s, sh, why, ROUTER_DROP_SHARD_DOWN, -2);
    sh->abort_close = 0;     /* no connection to close: not for a later one */
    evtimer_del(sh->timer);
}

/* Unreachable or stalled past SHARD_DOWN_GRACE_MS: what the kernel still
 * holds for it must not arrive after a reconnect (net.h), so the close is
 * abortive. */
static void grace_over(router_shards *s, router_shard *sh)
{
    sh->abort_close = 1;
    router_shards_set_dead(s, sh, "lease still absent after SHARD_DOWN_GRACE_MS");
}

int router_shards_set_lapsed(router_shards *s, router_shard *sh, const char *why,
                             uint64_t now_ms)
{
    if (!sh->live || sh->state != RSH_READY || s->opts.down_grace_ms <= 0) {
        router_shards_set_dead(s, sh, why);
        return 0;
    }
    if (!sh->down_since_ms) {
        sh->down_since_ms = now_ms ? now_ms : 1;
        s->m->shard_grace++;
        log_kv(LOG_WARN, "shard lease lapsed but its connection is open; queueing its "
               "records during the grace", "s:shard", sh->id, "s:reason", why,
               "i:grace_ms", (int)s->opts.down_grace_ms, NULL);
    }
    if (now_ms - sh->down_since_ms >= (uint64_t)s->opts.down_grace_ms) {
        grace_over(s, sh);
        return 0;
    }
    return 1;
}

/* ---- batches --------------------------------------------------------------- */

void router_shards_batch_begin(router_shards *s, uint64_t batch_no, enum frame_mode mode,
                               void *ticket)
{
    s->batch_no = batch_no;
    s->mode = mode;
    s->ticket = ticket;
    s->ntouched = 0;
}

static void close_frame(router_shards *s, router_shard *sh)
{
    if (!sh->fb_open)
        return;
    sh->fb_open = 0;
    if (sh->fb_nrec == 0) {
        frame_batch_abort(&sh->fb);
        return;
    }
    uint32_t nrec = sh->fb_nrec;
    sh->fb_nrec = 0;
    if (frame_batch_end(&sh->fb) != FRAME_OK) {
        count_drop(s, sh, ROUTER_DROP_TOO_BIG, nrec);
        return;
    }
    if (router_outq_mark(&sh->q, s->ticket, nrec) != 0) {
        /* Bytes go out unmarked: they are delivered, but nothing waits for
         * them; the batch's offsets depend only on its other frames. */
        log_kv(LOG_ERROR, "out of memory marking a frame", "s:shard", sh->id, NULL);
        return;
    }
    s->hooks.ticket_ref(s->ticket, s->hooks.arg);
}

static int dropped(router_shards *s, router_shard *sh, enum router_drop *why,
                   enum router_drop reason)
{
    count_drop(s, sh, reason, 1);
    *why = reason;
    return -1;
}

int router_shards_add(router_shards *s, router_shard *sh, const frame_record *r,
                      enum router_drop *why)
{
    if (!sh->live || sh->state != RSH_READY)
        return dropped(s, sh, why, ROUTER_DROP_SHARD_DOWN);
    size_t est = r->category_len + r->token_len + r->value_len + 64;
    if (est + 16 > sh->max_frame)
        return dropped(s, sh, why, ROUTER_DROP_TOO_BIG);
    if (sh->fb_batch != s->batch_no) {
        sh->fb_batch = s->batch_no;
        sh->fb_open = 0;
        sh->fb_nrec = 0;
        s->touched[s->ntouched++] = sh->slot;
    }
    if (sh->fb_open && frame_batch_size(&sh->fb) + est > sh->max_frame)
        close_frame(s, sh);
    size_t pending = router_outq_pending(&sh->q);
    if (pending + est + (sh->fb_open ? 0 : 16) > (size_t)s->opts.queue_bytes &&
        sh->flushed_batch != s->batch_no) {
        /* The batch alone may outgrow a small queue: write what is complete
         * now.  Once the socket refuses bytes we stop trying for the rest
         * of the batch, so a stuck shard costs one syscall, not one per
         * record. */
        close_frame(s, sh);
        shard_flush(s, sh);
        if (sh->state != RSH_READY)
            return dropped(s, sh, why, ROUTER_DROP_SHARD_DOWN);
        pending = router_outq_pending(&sh->q);
        if (pending > 0)
            sh->flushed_batch = s->batch_no;
    }
    if (pending + est + (sh->fb_open ? 0 : 16) > (size_t)s->opts.queue_bytes)
        return dropped(s, sh, why, ROUTER_DROP_QUEUE_FULL);
    if (pending == 0)
        sh->last_progress_ms = clock_mono_ms();
    if (!sh->fb_open) {
        if (frame_batch_begin(&sh->fb, router_outq_buf(&sh->q), s->mode) != FRAME_OK)
            return dropped(s, sh, why, ROUTER_DROP_QUEUE_FULL);
        sh->fb_open = 1;
        sh->fb_nrec = 0;
    }
    if (frame_batch_add(&sh->fb, r) != FRAME_OK)
        return dropped(s, sh, why, ROUTER_DROP_QUEUE_FULL);
    sh->fb_nrec++;
    return 0;
}

void router_shards_batch_end(router_shards *s)
{
    for (size_t i = 0; i < s->ntouched; i++) {
        router_shard *sh = s->slots[s->touched[i]];
        close_frame(s, sh);
    }
    /* Frames are complete everywhere before the first write, so a write
     * error that closes one shard cannot disturb another's open frame. */
    for (size_t i = 0; i < s->ntouched; i++) {
        router_shard *sh = s->slots[s->touched[i]];
        if (sh->state == RSH_READY)
            shard_flush(s, sh);
    }
    s->ntouched = 0;
    s->ticket = NULL;
}

size_t router_shards_compact(router_shards *s)
{
    size_t k = 0, freed = 0;
    for (size_t i = 0; i < s->nslots; i++) {
        router_shard *sh = s->slots[i];
        if (!sh->live && sh->state == RSH_IDLE && router_outq_pending(&sh->q) == 0 &&
            sh->q.mcount == 0 && !sh->fb_open) {
            shard_free(s, sh);
            freed++;
            continue;
        }
        sh->slot = (uint16_t)k;
        s->slots[k++] = sh;
    }
    for (size_t i = k; i < s->nslots; i++)
        s->slots[i] = NULL;
    s->nslots = k;
    return freed;
}

void router_shards_tick(router_shards *s, uint64_t now_ms)
{
    for (size_t i = 0; i < s->nslots; i++) {
        router_shard *sh = s->slots[i];
        if (sh->down_since_ms &&
            now_ms - sh->down_since_ms >= (uint64_t)s->opts.down_grace_ms) {
            grace_over(s, sh);
            continue;
        }
        if (sh->state != RSH_READY || router_outq_pending(&sh->q) == 0)
            continue;
        if (now_ms - sh->last_progress_ms >= (uint64_t)s->opts.stall_timeout_ms) {
            char why[128];
            snprintf(why, sizeof why, "stalled: no bytes accepted for %ld ms",
                     s->opts.stall_timeout_ms);
            sh->abort_close = 1;
            shard_close(s, sh, why, ROUTER_DROP_STALLED, -1);
        }
    }
}

void router_shards_close_all(router_shards *s, const char *why)
{
    for (size_t i = 0; i < s->nslots; i++) {
        router_shard *sh = s->slots[i];
        if (sh->state != RSH_IDLE)
            shard_close(s, sh, why, ROUTER_DROP_SHARD_DOWN, -2);
        evtimer_del(sh->timer);
    }
}

int router_shards_json(const router_shards *s, buf *out)
{
    static const char *const st[] = { "idle", "connecting", "hello", "ready" };
    int rc = buf_append(out, "[", 1);
    for (size_t i = 0; i < s->nslots; i++) {
        const router_shard *sh = s->slots[i];
        rc |= buf_appendf(out, "%s{\"id\":", i ? "," : "");
        rc |= buf_append_json_str(out, sh->id, sh->id_len);
        rc |= buf_appendf(out, ",\"live\":%s,\"state\":\"%s\",\"queued_bytes\":%zu,"
                          "\"connects\":%llu}", sh->live ? "true" : "false", st[sh->state],
                          router_outq_pending(&sh->q), (unsigned long long)sh->connects);
    }
    rc |= buf_append(out, "]", 1);
    return rc ? -1 : 0;
}

size_t router_shards_admin(const router_shards *s, struct router_adminapi_shard *out,
                           size_t max)
{
    static const char *const st[] = { "idle", "connecting", "hello", "ready" };
    size_t n = 0;
    for (size_t i = 0; i < s->nslots && n < max; i++) {
        const router_shard *sh = s->slots[i];
        if (!sh)
            continue;
        router_adminapi_shard *v = &out[n++];
        memset(v, 0, sizeof *v);
        v->id = sh->id;
        v->id_len = sh->id_len;
        v->endpoint = sh->endpoint;
        v->live = sh->live;
        v->state = st[sh->state];
        v->authenticated = sh->state == RSH_READY && s->secret != NULL;
        v->queued_bytes = router_outq_pending(&sh->q);
        v->queue_limit = (uint64_t)s->opts.queue_bytes;
        v->backpressured = sh->bp_since_ms != 0;
        v->connects = sh->connects;
        memcpy(v->drops, sh->drops, sizeof v->drops);
    }
    return n;
}

uint16_t router_shard_slot(const router_shard *sh) { return sh->slot; }
int router_shard_live(const router_shard *sh) { return sh->live; }
enum router_shard_state router_shard_state(const router_shard *sh) { return sh->state; }
int router_shard_slow(const router_shard *sh) { return sh->bp_slow; }
router_outq *router_shard_queue(router_shard *sh) { return &sh->q; }

void router_shard_test_set_state(router_shard *sh, enum router_shard_state st)
{
    sh->state = st;
}
