/*
 * odin-resumestorm: a reconnect storm measured as an operator would
 * (docs/benchmarks.md "Resume storm", docs/tools.md).
 *
 * N WebSocket clients connect to one shard (STORM_WS), each subscribes to
 * one "<token>.trade" channel (tokens STORM_TOKEN_PREFIX0.. spread evenly)
 * and records every (p, seq) it receives, live or replayed.  Once every
 * client has a position, the shard is dropped: SIGKILL to STORM_KILL_PID,
 * or (STORM_DROP=close) each client closes its own connection, or
 * (STORM_DROP=wait) someone else kills it.  Each client then waits a random
 * STORM_JITTER_MIN_MS..+STORM_JITTER_MS and reconnects to one of
 * STORM_RESUME_TO with {"type":"reconnect"} and its last {p, seq}; the
 * time from the request to reconnect_ack / reconnect_error is measured.
 *
 * After every client was answered and STORM_AFTER_MS more of live
 * traffic, the tool reads the partitions back from Kafka itself and counts,
 * per client and exactly, the records missing and duplicated: expected is
 * every record of the client's token in its partition after the first
 * record the client received, up to the partition's end at read-back (the
 * clients are given STORM_DRAIN_MS to receive the last ones).
 *
 * Optional: STORM_ABUSE_CONNS connections from STORM_ABUSE_SRC send
 * reconnects (STORM_ABUSE_BURST at once, then STORM_ABUSE_RATE per second
 * each) to STORM_ABUSE_TO while the honest clients reconnect; their answers
 * and closes are counted.  STORM_WATCH_PIDS: processes whose ESTABLISHED
 * TCP connections to the Kafka brokers and RSS are sampled during the storm.
 *
 * Output: key=value lines on stdout (for scripts and tests), a readable
 * summary on stderr.  Exit 0 when the run completed (whatever the figures),
 * 1 when it could not (setup failed, Kafka unreadable), 2 on bad settings.
 */
#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/wsframe.h"
#include "tools/lib/lg_plan.h"
#include "tools/lib/lg_ws.h"
#include "tools/lib/rs_check.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_TARGETS 16
#define MAX_CODES 24
#define MAX_PARTS 4096
#define MAX_WATCH 8
#define IN_MAX (64u << 20)   /* one client's unparsed input, hard cap */

/* ---- settings ------------------------------------------------------------ */

static char *o_ws, *o_resume_to, *o_prefix, *o_topic, *o_category, *o_brokers;
static char *o_drop, *o_src_base, *o_abuse_src, *o_abuse_to, *o_watch, *o_log_level;
static long o_clients, o_tokens, o_kill_pid, o_warm_ms, o_jitter_ms, o_jitter_min_ms;
static long o_answer_timeout_ms, o_after_ms, o_drain_ms, o_setup_timeout_ms, o_src_count;
static long o_max_pending, o_abuse_conns, o_abuse_burst, o_abuse_back, o_seed;
static double o_abuse_rate;

static const config_opt opts[] = {
    { "STORM_WS", CFG_STR, &o_ws, NULL,
      "host:port of the shard the clients first connect to (required)", 0, 0 },
    { "STORM_RESUME_TO", CFG_STR, &o_resume_to, NULL,
      "Comma-separated host:port of the shards the clients reconnect to "
      "(client i goes to entry i mod n; required)", 0, 0 },
    { "STORM_CLIENTS", CFG_INT, &o_clients, "600", "Clients (one channel each)", 1, 15000 },
    { "STORM_TOKENS", CFG_INT, &o_tokens, "60",
      "Tokens PREFIX0..PREFIX<n-1>; client i subscribes to token i mod n", 1, 100000 },
    { "STORM_TOKEN_PREFIX", CFG_STR, &o_prefix, "STORM",
      "Token name prefix (the producer must use the same tokens)", 0, 0 },
    { "STORM_CATEGORY", CFG_STR, &o_category, "trade",
      "Channel category: channels are <token>.<category>", 0, 0 },
    { "STORM_TOPIC", CFG_STR, &o_topic, "odin.trades",
      "Kafka topic of that category, read back at the end", 0, 0 },
    { "KAFKA_BROKERS", CFG_STR, &o_brokers, NULL,
      "Kafka bootstrap servers (required): read back, and the broker ports "
      "STORM_WATCH_PIDS connections are counted against", 0, 0 },
    { "STORM_DROP", CFG_STR, &o_drop, "kill",
      "How the first shard goes away once every client has a position: kill "
      "(SIGKILL to STORM_KILL_PID), close (each client closes its connection), "
      "wait (someone else kills it; the first drop is the kill time)", 0, 0 },
    { "STORM_KILL_PID", CFG_INT, &o_kill_pid, "0",
      "Process to SIGKILL for STORM_DROP=kill", 0, 1e9 },
    { "STORM_WARM_MS", CFG_INT, &o_warm_ms, "1000",
      "Live traffic after every client subscribed before the drop (at least; "
      "it also waits until every client has received a record)", 0, 3600000 },
    { "STORM_JITTER_MS", CFG_INT, &o_jitter_ms, "2000",
      "Random back-off range after the drop: each client waits "
      "STORM_JITTER_MIN_MS + uniform(0..this) before reconnecting", 0, 600000 },
    { "STORM_JITTER_MIN_MS", CFG_INT, &o_jitter_min_ms, "0",
      "Smallest back-off", 0, 600000 },
    { "STORM_ANSWER_TIMEOUT_MS", CFG_INT, &o_answer_timeout_ms, "15000",
      "A reconnect not answered this long after it was sent counts as TIMEOUT",
      100, 600000 },
    { "STORM_AFTER_MS", CFG_INT, &o_after_ms, "1000",
      "Live traffic after the last answer before Kafka is read back", 0, 600000 },
    { "STORM_DRAIN_MS", CFG_INT, &o_drain_ms, "10000",
      "After the read-back, wait at most this long for every client to "
      "receive its token's last record", 0, 600000 },
    { "STORM_SETUP_TIMEOUT_MS", CFG_INT, &o_setup_timeout_ms, "60000",
      "Connecting, subscribing and getting a first record, for every client",
      1000, 3600000 },
    { "STORM_MAX_PENDING", CFG_INT, &o_max_pending, "200",
      "Connections being opened at once in the set-up (the reconnects are "
      "not limited: they follow the back-off)", 1, 100000 },
    { "STORM_SRC_BASE", CFG_STR, &o_src_base, "127.0.0.1",
      "First source IPv4 address of the clients", 0, 0 },
    { "STORM_SRC_COUNT", CFG_INT, &o_src_count, "1",
      "Source addresses: client i binds STORM_SRC_BASE + (i mod n) (spreads "
      "per-IP limits as clients behind many addresses would)", 1, 65536 },
    { "STORM_ABUSE_CONNS", CFG_INT, &o_abuse_conns, "0",
      "Abusive connections sending reconnects during the storm", 0, 10000 },
    { "STORM_ABUSE_SRC", CFG_STR, &o_abuse_src, "127.0.0.2",
      "Source IPv4 address of the abusive connections", 0, 0 },
    { "STORM_ABUSE_TO", CFG_STR, &o_abuse_to, NULL,
      "host:port the abusers connect to (default: the first STORM_RESUME_TO)", 0, 0 },
    { "STORM_ABUSE_BURST", CFG_INT, &o_abuse_burst, "10",
      "Reconnects each abuser sends at once when the drop happens", 0, 100000 },
    { "STORM_ABUSE_RATE", CFG_DOUBLE, &o_abuse_rate, "10",
      "Reconnects per second each abuser sends after its burst, until every "
      "honest client was answered (10: the shard's default WS_MSG_RATE, as "
      "fast as its message rate limit allows)", 0, 100000 },
    { "STORM_ABUSE_BACK", CFG_INT, &o_abuse_back, "100",
      "Abusers ask for the records after (a random honest client's "
      "position - this)", 0, 1e12 },
    { "STORM_WATCH_PIDS", CFG_STR, &o_watch, NULL,
      "Comma-separated pids (the shards): from the drop to the last answer, "
      "their ESTABLISHED TCP connections to the KAFKA_BROKERS ports are "
      "counted every 20 ms (max reported) and their RSS sampled", 0, 0 },
    { "STORM_SEED", CFG_INT, &o_seed, "0", "Random seed (0: from time and pid)", 0, 0 },
    { "LOG_LEVEL", CFG_STR, &o_log_level, "warn", "debug | info | warn | error", 0, 0 },
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

/* ---- state --------------------------------------------------------------- */

enum cst {
    C_IDLE = 0, C_CONNECTING, C_UPGRADING, C_OPEN, /* WS open: subscribing/live/... */
    C_DROPPED,   /* waiting for the back-off */
    C_CLOSED
};

enum role { R_FIRST = 0, R_RESUME, R_ABUSE };

typedef struct sclient {
    int fd;
    uint8_t st, role, answered, subscribed;
    uint8_t frag_op;
    int target;                 /* index in targets (R_RESUME) */
    int tok;
    int32_t p;                  /* partition of the token (first record) */
    int64_t first, last;        /* first and highest offset received */
    int has_pos;
    int64_t *offs;              /* every offset received (repeats kept) */
    size_t noffs, capoffs;
    long replayed_env, replayed_ack;
    int64_t req_seq;            /* position sent in the reconnect */
    uint64_t t_due, t_req, t_ans;
    int code;                   /* index in codes[] (0 = OK) or -1 */
    int closed_after;           /* closed by the server after its answer */
    uint8_t *in; size_t inlen, incap;
    uint8_t *out; size_t outlen, outoff, outcap;
    uint8_t *msg; size_t msglen, msgcap;
    char key[LG_WS_KEY_LEN + 1];
    uint64_t last_tx;           /* last message sent (heartbeats) */
    /* abusers */
    uint64_t next_send;
    long sent;
} sclient;

typedef struct target {
    char host[64];
    int port;
    struct sockaddr_in sa;
} target;

static struct {
    int ep;
    uint64_t rng;
    target first, tg[MAX_TARGETS], abuse_tg;
    int ntg;
    sclient *c, *ab;
    long n, nab;
    struct in_addr src_base, abuse_src;
    const char *codes[MAX_CODES];
    int ncodes;
    long bad_utf8, proto_err, setup_failed;
    long ab_answers[MAX_CODES], ab_acks, ab_closed, ab_sent, ab_replayed;
    int dropped;                /* the drop happened */
    uint64_t t_kill, t_last_answer;
    int storm_over;
    pid_t watch[MAX_WATCH];
    int nwatch;
    long kconn_max[MAX_WATCH], rss_start[MAX_WATCH], rss_max[MAX_WATCH];
    int broker_port[64];
    int nbroker;
    long kc_samples, kc_proc_samples;  /* Kafka connection samples; of them
                                        * from /proc/PID/net/tcp */
} g;

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

static int code_index(const char *s)
{
    for (int i = 0; i < g.ncodes; i++)
        if (strcmp(g.codes[i], s) == 0)
            return i;
    if (g.ncodes == MAX_CODES)
        return MAX_CODES - 1;
    g.codes[g.ncodes] = strdup(s);
    if (!g.codes[g.ncodes])
        return MAX_CODES - 1;
    return g.ncodes++;
}

static uint64_t rnd_below(uint64_t n) { return n ? lg_rand_next(&g.rng) % n : 0; }

/* ---- sockets and frames --------------------------------------------------- */

static int parse_target(const char *s, target *t)
{
    if (addr_split_hostport(s, t->host, sizeof t->host, &t->port) != 0)
        return -1;
    memset(&t->sa, 0, sizeof t->sa);
    t->sa.sin_family = AF_INET;
    t->sa.sin_port = htons((uint16_t)t->port);
    const char *h = strcmp(t->host, "localhost") == 0 ? "127.0.0.1" : t->host;
    return inet_pton(AF_INET, h, &t->sa.sin_addr) == 1 ? 0 : -1;
}

static int ep_set(sclient *c, uint32_t ev, int op)
{
    struct epoll_event e = { .events = ev, .data.ptr = c };
    return epoll_ctl(g.ep, op, c->fd, &e);
}

static void conn_close(sclient *c)
{
    if (c->fd >= 0) {
        epoll_ctl(g.ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->inlen = c->outlen = c->outoff = c->msglen = 0;
}

static int conn_open(sclient *c, const target *t, struct in_addr src)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr = src };
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        (connect(fd, (const struct sockaddr *)&t->sa, sizeof t->sa) != 0 &&
         errno != EINPROGRESS)) {
        close(fd);
        return -1;
    }
    c->fd = fd;
    c->st = C_CONNECTING;
    c->inlen = c->outlen = c->outoff = c->msglen = 0;
    if (ep_set(c, EPOLLOUT | EPOLLIN, EPOLL_CTL_ADD) != 0) {
        conn_close(c);
        return -1;
    }
    return 0;
}

static int reserve(uint8_t **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 4096;
    while (n < need)
        n *= 2;
    uint8_t *q = realloc(*p, n);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

static void conn_flush(sclient *c)
{
    while (c->outoff < c->outlen) {
        ssize_t w = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            return;        /* the read side sees the error */
        }
        c->outoff += (size_t)w;
    }
    if (c->outoff == c->outlen)
        c->outoff = c->outlen = 0;
    if (c->fd >= 0 && c->st != C_CONNECTING)
        ep_set(c, EPOLLIN | (c->outlen ? EPOLLOUT : 0), EPOLL_CTL_MOD);
}

static void send_frame(sclient *c, int op, const void *p, size_t n)
{
    uint32_t m = (uint32_t)lg_rand_next(&g.rng);
    uint8_t mk[4];
    memcpy(mk, &m, 4);
    if (reserve(&c->out, &c->outcap, c->outlen + WSFRAME_MAX_HEADER + n) != 0)
        return;
    uint8_t *o = c->out + c->outlen;
    size_t hl = wsframe_client_header(o, op, 1, n, mk);
    if (n)
        memcpy(o + hl, p, n);
    wsframe_mask(o + hl, n, mk, 0);
    c->outlen += hl + n;
    conn_flush(c);
}

static void send_text(sclient *c, const char *s)
{
    c->last_tx = clock_mono_ms();
    send_frame(c, 1, s, strlen(s));
}

/* ---- client logic ---------------------------------------------------------- */

static void chan_name(char *out, size_t n, int tok)
{
    snprintf(out, n, "%s%d.%s", o_prefix, tok, o_category);
}

static void send_reconnect(sclient *c, int32_t p, int64_t seq)
{
    char ch[128], m[384];
    chan_name(ch, sizeof ch, c->tok);
    snprintf(m, sizeof m,
             "{\"type\":\"reconnect\",\"data\":{\"channels\":{\"%s\":{\"p\":%d,\"seq\":%lld}}}}",
             ch, (int)p, (long long)seq);
    send_text(c, m);
}

static void on_open(sclient *c)
{
    uint64_t now = clock_mono_ms();
    if (c->role == R_FIRST) {
        char ch[128], m[256];
        chan_name(ch, sizeof ch, c->tok);
        snprintf(m, sizeof m, "{\"type\":\"subscribe\",\"data\":{\"channels\":[\"%s\"]}}", ch);
        send_text(c, m);
    } else if (c->role == R_RESUME) {
        c->req_seq = c->last;
        c->t_req = now;
        send_reconnect(c, c->p, c->last);
    } else {
        c->next_send = 0;  /* abusers start at the drop */
    }
}

static void add_off(sclient *c, int64_t off)
{
    if (c->noffs == c->capoffs) {
        size_t n = c->capoffs ? c->capoffs * 2 : 16;
        int64_t *q = realloc(c->offs, n * sizeof *q);
        if (!q)
            return;
        c->offs = q;
        c->capoffs = n;
    }
    c->offs[c->noffs++] = off;
}

static void answer(sclient *c, int code)
{
    if (c->answered)
        return;
    c->answered = 1;
    c->code = code;
    c->t_ans = clock_mono_ms();
}

static void on_text(sclient *c, const uint8_t *p, size_t n)
{
    if (!rs_utf8_valid(p, n)) {
        g.bad_utf8++;
        return;
    }
    json_error_t je;
    json_t *j = json_loadb((const char *)p, n, 0, &je);
    if (!j) {
        g.proto_err++;
        return;
    }
    const char *type = json_string_value(json_object_get(j, "type"));
    json_t *ch = json_object_get(j, "channel");
    json_t *jp = json_object_get(j, "p"), *js = json_object_get(j, "seq");
    if (c->role == R_ABUSE) {
        if (type && strcmp(type, "reconnect_ack") == 0) {
            g.ab_acks++;
        } else if (type && strcmp(type, "reconnect_error") == 0) {
            const char *code = json_string_value(json_object_get(j, "code"));
            g.ab_answers[code_index(code ? code : "?")]++;
        } else if (json_is_true(json_object_get(j, "replay"))) {
            g.ab_replayed++;
        }
        json_decref(j);
        return;
    }
    if (ch && json_is_integer(jp) && json_is_integer(js)) {
        int32_t part = (int32_t)json_integer_value(jp);
        int64_t off = json_integer_value(js);
        if (json_is_true(json_object_get(j, "replay")))
            c->replayed_env++;
        if (!c->has_pos) {
            c->has_pos = 1;
            c->p = part;
            c->first = c->last = off;
        }
        if (part != c->p) {
            g.proto_err++;      /* a token stays on its partition */
        } else {
            add_off(c, off);
            if (off > c->last)
                c->last = off;
        }
    } else if (type && strcmp(type, "subscription_ack") == 0) {
        c->subscribed = 1;
    } else if (type && strcmp(type, "reconnect_ack") == 0 && c->role == R_RESUME) {
        c->replayed_ack = (long)json_integer_value(json_object_get(j, "replayed"));
        answer(c, 0);
    } else if (type && strcmp(type, "reconnect_error") == 0 && c->role == R_RESUME) {
        const char *code = json_string_value(json_object_get(j, "code"));
        answer(c, code_index(code ? code : "?"));
    } else if (type && strcmp(type, "error") == 0) {
        const char *code = json_string_value(json_object_get(j, "code"));
        if (c->role == R_RESUME && !c->answered)
            answer(c, code_index(code ? code : "ERROR"));
        else
            g.proto_err++;
    }
    json_decref(j);
}

/* Parse complete frames in c->in.  0, or -1 when the connection must end. */
static int on_frames(sclient *c)
{
    size_t off = 0;
    int rc = 0;
    while (c->inlen - off >= 2) {
        const uint8_t *h = c->in + off;
        size_t avail = c->inlen - off, hl = 2;
        uint64_t len = h[1] & 0x7f;
        if (h[1] & 0x80) {  /* a server never masks */
            g.proto_err++;
            rc = -1;
            break;
        }
        if (len == 126) {
            if (avail < 4)
                break;
            len = ((uint64_t)h[2] << 8) | h[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | h[2 + i];
            hl = 10;
        }
        if (len > IN_MAX) {
            g.proto_err++;
            rc = -1;
            break;
        }
        if (avail < hl + len)
            break;
        int fin = h[0] & 0x80, op = h[0] & 0x0f;
        const uint8_t *pl = h + hl;
        off += hl + (size_t)len;
        if (op == 8) {      /* close */
            rc = -1;
            break;
        } else if (op == 9) {
            send_frame(c, 10, pl, (size_t)len);
        } else if (op == 10) {
            /* pong */
        } else if (op == 1 && fin) {
            on_text(c, pl, (size_t)len);
        } else if (op == 1 || op == 0) {
            if (op == 1)
                c->msglen = 0, c->frag_op = 1;
            if (reserve(&c->msg, &c->msgcap, c->msglen + len) == 0) {
                memcpy(c->msg + c->msglen, pl, (size_t)len);
                c->msglen += (size_t)len;
            }
            if (fin && c->frag_op == 1)
                on_text(c, c->msg, c->msglen);
            if (fin)
                c->msglen = 0, c->frag_op = 0;
        }
    }
    if (off) {
        memmove(c->in, c->in + off, c->inlen - off);
        c->inlen -= off;
    }
    return rc;
}

static void on_ended(sclient *c, const char *why);

static void on_upgrade_bytes(sclient *c)
{
    lg_http_resp r;
    int hl = lg_http_response_parse((const char *)c->in, c->inlen, 8192, &r);
    if (hl == 0)
        return;
    if (hl < 0 || lg_ws_check(&r, c->key, strlen(c->key)) != LG_WS_OK) {
        if (c->role == R_RESUME && !c->answered) {
            char code[32];
            snprintf(code, sizeof code, "HTTP_%d", hl < 0 ? 0 : r.status);
            answer(c, code_index(code));
        }
        on_ended(c, NULL);
        return;
    }
    memmove(c->in, c->in + hl, c->inlen - (size_t)hl);
    c->inlen -= (size_t)hl;
    c->st = C_OPEN;
    on_open(c);
}

static void schedule_reconnect(sclient *c, uint64_t now)
{
    c->st = C_DROPPED;
    c->role = R_RESUME;
    c->t_due = now + (uint64_t)o_jitter_min_ms + rnd_below((uint64_t)o_jitter_ms + 1);
}

/* The connection ended.  why: the answer code for a reconnect not yet
 * answered (NULL: CLOSED once open, else CONNECT_FAILED). */
static void on_ended(sclient *c, const char *why)
{
    uint64_t now = clock_mono_ms();
    int was_open = c->st == C_OPEN;
    conn_close(c);
    if (c->role == R_ABUSE) {
        g.ab_closed++;
        c->st = C_CLOSED;
        return;
    }
    if (c->role == R_FIRST) {
        if (g.dropped || (was_open && c->has_pos && !strcmp(o_drop, "wait"))) {
            if (!g.dropped) {
                g.dropped = 1;
                g.t_kill = now;
            }
            schedule_reconnect(c, now);
        } else {
            g.setup_failed++;
            c->st = C_CLOSED;
        }
        return;
    }
    /* R_RESUME */
    if (!c->answered)
        answer(c, code_index(why ? why : was_open ? "CLOSED" : "CONNECT_FAILED"));
    else
        c->closed_after = 1;
    c->st = C_CLOSED;
}

static void conn_event(sclient *c, uint32_t ev)
{
    if (c->st == C_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) != 0 || err) {
            char why[64];
            const char *en = strerrorname_np(err ? err : errno);
            snprintf(why, sizeof why, "CONNECT_%s", en ? en : "ERROR");
            on_ended(c, why);
            return;
        }
        if (!(ev & (EPOLLOUT | EPOLLIN)))
            return;
        char req[512];
        const target *t = c->role == R_FIRST ? &g.first
                        : c->role == R_ABUSE ? &g.abuse_tg : &g.tg[c->target];
        lg_ws_key(&g.rng, c->key);
        int n = lg_ws_request(req, sizeof req, t->host, t->port, "/ws", c->key);
        c->st = C_UPGRADING;
        if (reserve(&c->out, &c->outcap, (size_t)n) == 0) {
            memcpy(c->out, req, (size_t)n);
            c->outlen = (size_t)n;
            c->outoff = 0;
        }
        conn_flush(c);
        return;
    }
    if (ev & EPOLLOUT)
        conn_flush(c);
    if (!(ev & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        return;
    for (int rounds = 0; rounds < 8 && c->fd >= 0; rounds++) {
        if (reserve(&c->in, &c->incap, c->inlen + 65536) != 0 || c->inlen > IN_MAX) {
            on_ended(c, NULL);
            return;
        }
        ssize_t r = recv(c->fd, c->in + c->inlen, c->incap - c->inlen, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            return;
        if (r <= 0) {
            char why[64];
            const char *en = r < 0 ? strerrorname_np(errno) : "EOF";
            snprintf(why, sizeof why, "%s_%s", c->st == C_UPGRADING ? "UPGRADE" : "CLOSED",
                     en ? en : "ERROR");
            on_ended(c, why);
            return;
        }
        c->inlen += (size_t)r;
        if (c->st == C_UPGRADING) {
            on_upgrade_bytes(c);
            if (c->st != C_OPEN)
                return;
        }
        if (on_frames(c) != 0) {
            on_ended(c, NULL);
            return;
        }
    }
}

/* ---- watched processes ----------------------------------------------------- */

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &v) == 1)
            break;
    fclose(f);
    return v;
}

static int is_broker_port(int port)
{
    for (int i = 0; i < g.nbroker; i++)
        if (g.broker_port[i] == port)
            return 1;
    return 0;
}

static int cmp_ul(const void *a, const void *b)
{
    unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;
    return x < y ? -1 : x > y;
}

/* The same from /proc/pid/fd and /proc/pid/net/tcp{,6} (when sock_diag
 * cannot be used): ESTABLISHED TCP connections of pid to a broker port,
 * -1 if gone. */
static long kafka_conns_proc(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    unsigned long inodes[4096];
    size_t ni = 0;
    struct dirent *e;
    while ((e = readdir(d)) && ni < 4096) {
        char lp[320], tgt[64];
        snprintf(lp, sizeof lp, "%s/%s", path, e->d_name);
        ssize_t l = readlink(lp, tgt, sizeof tgt - 1);
        if (l <= 0)
            continue;
        tgt[l] = 0;
        unsigned long ino;
        if (sscanf(tgt, "socket:[%lu]", &ino) == 1)
            inodes[ni++] = ino;
    }
    closedir(d);
    qsort(inodes, ni, sizeof inodes[0], cmp_ul);
    long n = 0;
    static const char *const files[] = { "tcp", "tcp6" };
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "/proc/%d/net/%s", (int)pid, files[k]);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        char line[512];
        while (fgets(line, sizeof line, f)) {
            char rem[64];
            unsigned st;
            unsigned long ino;
            /* sl local rem st tx:rx tr:tm retr uid timeout inode */
            if (sscanf(line, " %*s %*s %63s %x %*s %*s %*s %*s %*s %lu", rem, &st, &ino) != 3)
                continue;
            char *colon = strrchr(rem, ':');
            if (!colon || st != 1)
                continue;
            int port = (int)strtol(colon + 1, NULL, 16);
            if (is_broker_port(port) &&
                bsearch(&ino, inodes, ni, sizeof inodes[0], cmp_ul))
                n++;
        }
        fclose(f);
    }
    return n;
}

/* The socket inodes of pid, sorted (at most max); -1 if pid is gone. */
static long pid_sockets(pid_t pid, unsigned long *inodes, size_t max)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    size_t ni = 0;
    struct dirent *e;
    while ((e = readdir(d)) && ni < max) {
        char lp[320], tgt[64];
        snprintf(lp, sizeof lp, "%s/%s", path, e->d_name);
        ssize_t l = readlink(lp, tgt, sizeof tgt - 1);
        if (l <= 0)
            continue;
        tgt[l] = 0;
        unsigned long ino;
        if (sscanf(tgt, "socket:[%lu]", &ino) == 1)
            inodes[ni++] = ino;
    }
    closedir(d);
    qsort(inodes, ni, sizeof inodes[0], cmp_ul);
    return (long)ni;
}

/* The inodes of the ESTABLISHED TCP sockets of any process whose remote
 * port is a broker's (at most max): one sock_diag dump per address family,
 * filtered in the kernel by a bytecode on the remote port.  -1 if sock_diag
 * cannot be used.  (Reading /proc/<pid>/net/tcp instead makes the kernel
 * format every TCP socket of the machine: with the 12 000 sockets of the
 * full-size storm, sampled every 20 ms, that was two thirds of this tool's
 * CPU and starved the clients it measures.) */
static long diag_broker_inodes(unsigned long *out, size_t max)
{
    if (g.nbroker <= 0 || g.nbroker > 16)
        return -1;
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0)
        return -1;
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 r;
        struct rtattr rta;
        struct inet_diag_bc_op bc[5 * 16];
    } req;
    /* per port P, 20 bytes: D_GE P (no: the next port), D_LE P (no: the
     * next port), JMP to the end (accept); the next port after the last is
     * past the end (reject).  Every op is on the chain of "yes" jumps, as
     * the kernel's check of the bytecode requires. */
    int nb = g.nbroker, len = 20 * nb;
    struct inet_diag_bc_op *bc = req.bc;
    for (int i = 0; i < nb; i++) {
        int rest = len - 20 * i;          /* bytes from this port's GE */
        int last = i == nb - 1;
        unsigned short port = (unsigned short)g.broker_port[i];
        *bc++ = (struct inet_diag_bc_op){ INET_DIAG_BC_D_GE, 8,
                                          (unsigned short)(last ? rest + 4 : 20) };
        *bc++ = (struct inet_diag_bc_op){ 0, 0, port };
        *bc++ = (struct inet_diag_bc_op){ INET_DIAG_BC_D_LE, 8,
                                          (unsigned short)(last ? rest - 8 + 4 : 12) };
        *bc++ = (struct inet_diag_bc_op){ 0, 0, port };
        *bc++ = (struct inet_diag_bc_op){ INET_DIAG_BC_JMP, 4,
                                          (unsigned short)(rest - 16) };
    }
    long n = 0;
    static const int fams[] = { AF_INET, AF_INET6 };
    for (int k = 0; k < 2 && n >= 0; k++) {
        memset(&req.nlh, 0, sizeof req.nlh);
        memset(&req.r, 0, sizeof req.r);
        req.nlh.nlmsg_len = (unsigned)(NLMSG_LENGTH(sizeof req.r) + RTA_LENGTH(len));
        req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
        req.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
        req.r.sdiag_family = (unsigned char)fams[k];
        req.r.sdiag_protocol = IPPROTO_TCP;
        req.r.idiag_states = 1u << 1;            /* TCP_ESTABLISHED */
        req.rta.rta_type = INET_DIAG_REQ_BYTECODE;
        req.rta.rta_len = (unsigned short)RTA_LENGTH(len);
        if (send(fd, &req, req.nlh.nlmsg_len, 0) < 0) {
            n = -1;
            break;
        }
        for (int done = 0; !done;) {
            static char rb[32768] __attribute__((aligned(8)));
            ssize_t r = recv(fd, rb, sizeof rb, 0);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                n = -1;
                break;
            }
            for (struct nlmsghdr *h = (struct nlmsghdr *)rb; NLMSG_OK(h, (size_t)r);
                 h = NLMSG_NEXT(h, r)) {
                if (h->nlmsg_type == NLMSG_DONE) {
                    done = 1;
                    break;
                }
                if (h->nlmsg_type == NLMSG_ERROR) {
                    n = -1;
                    done = 1;
                    break;
                }
                const struct inet_diag_msg *d = NLMSG_DATA(h);
                if (is_broker_port(ntohs(d->id.idiag_dport)) && (size_t)n < max)
                    out[n++] = d->idiag_inode;
            }
        }
    }
    close(fd);
    return n;
}

/* ESTABLISHED TCP connections of each watched process to a broker port
 * (out[i], -1 if gone).  The broker connections of the machine come from
 * sock_diag; whose they are from the processes' fd tables, read again only
 * when a connection not seen before appears. */
static void kafka_conns_all(long *out)
{
    static struct { unsigned long ino; int who; } known[256];
    static size_t nknown;
    static unsigned long fds[20480];
    unsigned long cur[256];
    long nc = diag_broker_inodes(cur, 256);
    g.kc_samples++;
    if (nc < 0) {
        g.kc_proc_samples++;
        for (int i = 0; i < g.nwatch; i++)
            out[i] = kafka_conns_proc(g.watch[i]);
        return;
    }
    int who[256];
    int unknown = 0;
    for (long j = 0; j < nc; j++) {
        who[j] = -2;
        for (size_t k = 0; k < nknown; k++)
            if (known[k].ino == cur[j])
                who[j] = known[k].who;
        unknown |= who[j] == -2;
    }
    for (int i = 0; i < g.nwatch; i++)
        out[i] = 0;
    if (unknown) {
        for (long j = 0; j < nc; j++)
            if (who[j] == -2)
                who[j] = -1;     /* another process's (router, publisher) */
        for (int i = 0; i < g.nwatch; i++) {
            long ni = pid_sockets(g.watch[i], fds, sizeof fds / sizeof fds[0]);
            if (ni < 0) {
                out[i] = -1;
                continue;
            }
            for (long j = 0; j < nc; j++)
                if (bsearch(&cur[j], fds, (size_t)ni, sizeof fds[0], cmp_ul))
                    who[j] = i;
        }
        nknown = 0;
        for (long j = 0; j < nc; j++)
            known[nknown++] = (typeof(known[0])){ cur[j], who[j] };
    }
    for (long j = 0; j < nc; j++)
        if (who[j] >= 0 && out[who[j]] >= 0)
            out[who[j]]++;
    for (int i = 0; i < g.nwatch; i++)
        if (out[i] == 0 && kill(g.watch[i], 0) != 0)
            out[i] = -1;
}

static void watch_sample(void)
{
    long kc[MAX_WATCH];
    kafka_conns_all(kc);
    for (int i = 0; i < g.nwatch; i++) {
        long k = kc[i];
        if (k > g.kconn_max[i])
            g.kconn_max[i] = k;
        long r = rss_kb(g.watch[i]);
        if (r > g.rss_max[i])
            g.rss_max[i] = r;
    }
}

/* ---- Kafka read-back -------------------------------------------------------- */

typedef struct tokrec {      /* one token's offsets in the read-back */
    int64_t *off;
    size_t n, cap;
} tokrec;

static rd_kafka_t *kafka_new(void)
{
    char err[512], gid[96];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    snprintf(gid, sizeof gid, "odin-resumestorm-%d-%llu", (int)getpid(),
             (unsigned long long)clock_wall_us());
    if (rd_kafka_conf_set(conf, "bootstrap.servers", o_brokers, err, sizeof err) ||
        rd_kafka_conf_set(conf, "group.id", gid, err, sizeof err) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err) ||
        rd_kafka_conf_set(conf, "enable.partition.eof", "false", err, sizeof err) ||
        rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err)) {
        fprintf(stderr, "error: kafka config: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk)
        fprintf(stderr, "error: kafka: %s\n", err);
    return rk;
}

/* Token index of a key "PREFIX<i>", or -1. */
static int key_token(const void *k, size_t kl)
{
    size_t pl = strlen(o_prefix);
    if (!k || kl <= pl || kl > pl + 9 || memcmp(k, o_prefix, pl) != 0)
        return -1;
    long v = 0;
    for (size_t i = pl; i < kl; i++) {
        char ch = ((const char *)k)[i];
        if (ch < '0' || ch > '9')
            return -1;
        v = v * 10 + (ch - '0');
    }
    if (kl > pl + 1 && ((const char *)k)[pl] == '0')
        return -1;
    return v < o_tokens ? (int)v : -1;
}

/* Partition ends: high watermarks now.  0 or -1. */
static int query_hw(rd_kafka_t *rk, const int *used, int64_t *hw)
{
    for (int p = 0; p < MAX_PARTS; p++) {
        if (!used[p])
            continue;
        int64_t lo, hi;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, o_topic, p, &lo, &hi, 10000);
        if (e) {
            fprintf(stderr, "error: watermarks of %s/%d: %s\n", o_topic, p, rd_kafka_err2str(e));
            return -1;
        }
        hw[p] = hi;
    }
    return 0;
}

/*
 * Read [start[p], end[p]) of every used partition: the offsets of our
 * tokens into toks[], and per target t the key+value bytes of every record
 * with offset in (minreq[t][p], hw_ans[p]) into wbytes[t].  0 or -1.
 */
static int read_back(rd_kafka_t *rk, const int *used, const int64_t *start, const int64_t *end,
                     int64_t (*minreq)[MAX_PARTS], const int64_t *hw_ans, tokrec *toks,
                     long long *wbytes)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
    int want = 0;
    static int64_t next[MAX_PARTS];
    for (int p = 0; p < MAX_PARTS; p++) {
        if (!used[p] || start[p] >= end[p])
            continue;
        rd_kafka_topic_partition_list_add(l, o_topic, p)->offset = start[p];
        next[p] = start[p];
        want++;
    }
    int rc = 0;
    if (want && rd_kafka_assign(rk, l) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "error: kafka assign failed\n");
        rc = -1;
    }
    uint64_t deadline = clock_mono_ms() + 60000;
    while (rc == 0 && want > 0) {
        if (clock_mono_ms() > deadline) {
            fprintf(stderr, "error: read-back did not reach the partitions' ends in 60 s\n");
            rc = -1;
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "warn: read-back: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        int p = m->partition;
        int64_t off = m->offset;
        if (p >= 0 && p < MAX_PARTS && used[p] && off < end[p] && off >= next[p]) {
            next[p] = off + 1;
            int t = key_token(m->key, m->key_len);
            if (t >= 0) {
                tokrec *tr = &toks[t];
                if (tr->n == tr->cap) {
                    size_t nc = tr->cap ? tr->cap * 2 : 64;
                    int64_t *q = realloc(tr->off, nc * sizeof *q);
                    if (q)
                        tr->off = q, tr->cap = nc;
                }
                if (tr->n < tr->cap)
                    tr->off[tr->n++] = ((int64_t)p << 40) | off;
            }
            for (int k = 0; k < g.ntg; k++)
                if (minreq[k][p] >= -1 && off > minreq[k][p] && off < hw_ans[p])
                    wbytes[k] += (long long)(m->key_len + m->len);
            if (off + 1 >= end[p])
                want--;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_assign(rk, NULL);
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

/* ---- run ------------------------------------------------------------------- */

static int all(int (*pred)(const sclient *))
{
    for (long i = 0; i < g.n; i++)
        if (!pred(&g.c[i]))
            return 0;
    return 1;
}
static int ready(const sclient *c) { return c->st == C_OPEN && c->subscribed && c->has_pos; }
static int subscribed(const sclient *c) { return c->st == C_OPEN && c->subscribed; }
static int answered(const sclient *c) { return c->answered; }

#define HEARTBEAT_MS 10000

/* A heartbeat from every open connection silent for HEARTBEAT_MS (the
 * shard closes a client silent for WS_IDLE_TIMEOUT, 30 s by default). */
static void heartbeats(void)
{
    static uint64_t last;
    uint64_t now = clock_mono_ms();
    if (now - last < 1000)
        return;
    last = now;
    for (int k = 0; k < 2; k++) {
        sclient *v = k ? g.ab : g.c;
        long n = k ? g.nab : g.n;
        for (long i = 0; i < n; i++) {
            sclient *c = &v[i];
            if (c->st != C_OPEN)
                continue;
            if (!c->last_tx)
                c->last_tx = now;
            else if (now - c->last_tx >= HEARTBEAT_MS)
                send_text(c, "{\"type\":\"heartbeat\"}");
        }
    }
}

static void loop_once(int timeout_ms)
{
    heartbeats();
    struct epoll_event ev[512];
    int n = epoll_wait(g.ep, ev, 512, timeout_ms);
    for (int i = 0; i < n; i++)
        conn_event(ev[i].data.ptr, ev[i].events);
}

static struct in_addr addr_plus(struct in_addr a, long k)
{
    struct in_addr r = { .s_addr = htonl(ntohl(a.s_addr) + (uint32_t)k) };
    return r;
}

static void abuse_tick(uint64_t now)
{
    if (!g.dropped || g.storm_over || g.n == 0)
        return;
    double gap = o_abuse_rate > 0 ? 1000.0 / o_abuse_rate : 0;
    for (long i = 0; i < g.nab; i++) {
        sclient *a = &g.ab[i];
        if (a->st != C_OPEN)
            continue;
        int k = 0;
        if (a->sent == 0) {
            k = (int)o_abuse_burst;
            a->next_send = now + (uint64_t)gap;
        } else if (gap > 0 && now >= a->next_send) {
            k = 1;
            a->next_send += (uint64_t)gap;
        }
        for (int j = 0; j < k; j++) {
            const sclient *h = &g.c[rnd_below((uint64_t)g.n)];
            int64_t seq = h->last - o_abuse_back;
            a->tok = h->tok;
            send_reconnect(a, h->p, seq < -1 ? -1 : seq);
            a->sent++;
            g.ab_sent++;
        }
        if (a->sent == 0)
            a->sent = -1;     /* burst 0: the rate alone from now on */
    }
}

static int setup(void)
{
    uint64_t deadline = clock_mono_ms() + (uint64_t)o_setup_timeout_ms;
    long next = 0, pending = 0;
    for (long i = 0; i < g.nab; i++) {
        g.ab[i].role = R_ABUSE;
        if (conn_open(&g.ab[i], &g.abuse_tg, g.abuse_src) != 0) {
            fprintf(stderr, "error: abuser %ld: connect: %s\n", i, strerror(errno));
            return -1;
        }
    }
    uint64_t t_sub = 0;
    while (!g_stop) {
        uint64_t now = clock_mono_ms();
        if (now > deadline) {
            long nr = 0, ns = 0;
            for (long i = 0; i < g.n; i++)
                nr += ready(&g.c[i]), ns += subscribed(&g.c[i]);
            fprintf(stderr, "error: set-up: %ld/%ld clients subscribed, %ld with a record "
                    "after %ld ms\n", ns, g.n, nr, o_setup_timeout_ms);
            return -1;
        }
        pending = 0;
        for (long i = 0; i < next; i++)
            pending += g.c[i].st == C_CONNECTING || g.c[i].st == C_UPGRADING ||
                       (g.c[i].st == C_OPEN && !g.c[i].subscribed);
        while (next < g.n && pending < o_max_pending) {
            sclient *c = &g.c[next];
            if (conn_open(c, &g.first, addr_plus(g.src_base, next % o_src_count)) != 0) {
                fprintf(stderr, "error: client %ld: connect: %s\n", next, strerror(errno));
                return -1;
            }
            next++;
            pending++;
        }
        if (g.setup_failed) {
            fprintf(stderr, "error: %ld clients lost their connection during the set-up\n",
                    g.setup_failed);
            return -1;
        }
        if (next == g.n && !t_sub && all(subscribed))
            t_sub = now;
        if (t_sub && now - t_sub >= (uint64_t)o_warm_ms && all(ready)) {
            int ab_ok = 1;
            for (long i = 0; i < g.nab; i++)
                ab_ok &= g.ab[i].st == C_OPEN;
            if (ab_ok)
                return 0;
        }
        loop_once(5);
    }
    return -1;
}

static void drop(void)
{
    uint64_t now = clock_mono_ms();
    long kc[MAX_WATCH];
    kafka_conns_all(kc);
    for (int i = 0; i < g.nwatch; i++) {
        g.rss_start[i] = g.rss_max[i] = rss_kb(g.watch[i]);
        g.kconn_max[i] = kc[i];
    }
    if (!strcmp(o_drop, "kill")) {
        g.dropped = 1;
        g.t_kill = now;
        if (kill((pid_t)o_kill_pid, SIGKILL) != 0)
            fprintf(stderr, "warn: kill %ld: %s\n", o_kill_pid, strerror(errno));
    } else if (!strcmp(o_drop, "close")) {
        g.dropped = 1;
        g.t_kill = now;
        for (long i = 0; i < g.n; i++) {
            conn_close(&g.c[i]);
            schedule_reconnect(&g.c[i], now);
        }
    }
    /* wait: the first EOF sets t_kill */
}

static void storm(void)
{
    uint64_t last_watch = 0, hard_end = 0;
    while (!g_stop) {
        uint64_t now = clock_mono_ms();
        if (!g.dropped) {
            loop_once(5);
            continue;
        }
        if (!hard_end)
            hard_end = now + (uint64_t)(o_jitter_min_ms + o_jitter_ms + o_answer_timeout_ms) + 30000;
        for (long i = 0; i < g.n; i++) {
            sclient *c = &g.c[i];
            if (c->st == C_DROPPED && now >= c->t_due) {
                c->target = (int)(i % g.ntg);
                c->t_due = now;         /* from here: when the connect began */
                if (conn_open(c, &g.tg[c->target], addr_plus(g.src_base, i % o_src_count)) != 0) {
                    char why[64];
                    const char *en = strerrorname_np(errno);
                    snprintf(why, sizeof why, "OPEN_%s", en ? en : "ERROR");
                    on_ended(c, why);
                }
            } else if (c->role == R_RESUME && !c->answered && !c->t_req &&
                       (c->st == C_CONNECTING || c->st == C_UPGRADING) &&
                       now - c->t_due > (uint64_t)o_answer_timeout_ms) {
                on_ended(c, c->st == C_CONNECTING ? "CONNECT_TIMEOUT" : "UPGRADE_TIMEOUT");
            } else if (c->role == R_RESUME && !c->answered && c->t_req &&
                       now - c->t_req > (uint64_t)o_answer_timeout_ms) {
                answer(c, code_index("TIMEOUT"));
            }
        }
        abuse_tick(now);
        if (now - last_watch >= 20) {
            watch_sample();
            last_watch = now;
        }
        if (all(answered)) {
            g.storm_over = 1;
            for (long i = 0; i < g.n; i++)
                if (g.c[i].t_ans > g.t_last_answer)
                    g.t_last_answer = g.c[i].t_ans;
            watch_sample();
            return;
        }
        if (now > hard_end) {
            for (long i = 0; i < g.n; i++)
                if (!g.c[i].answered)
                    answer(&g.c[i], code_index("TIMEOUT"));
        }
        loop_once(2);
    }
}

static void run_for(uint64_t ms)
{
    uint64_t end = clock_mono_ms() + ms;
    while (!g_stop && clock_mono_ms() < end)
        loop_once(5);
}

static int cmp_tokoff(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int rc = 2;
    rd_kafka_t *rk = NULL;
    tokrec *toks = NULL;
    static int used[MAX_PARTS];
    static int64_t start[MAX_PARTS], end[MAX_PARTS], hw_ans[MAX_PARTS];
    static int64_t minreq[MAX_TARGETS][MAX_PARTS];
    long long wbytes[MAX_TARGETS] = { 0 };
    char **list = NULL;
    size_t nlist = 0;

    int cr = config_load(opts, NOPTS, argc, argv, "odin-resumestorm",
        "Reconnect storm against odin-shard resume (docs/tools.md): N clients on one "
        "shard, the shard dropped, every client reconnecting to the others with its "
        "last {p, seq}; answers, latency and, read back from Kafka, the exact "
        "records missing and duplicated per client.\nkey=value lines on stdout, a "
        "summary on stderr.  Exit 0 when the run completed, 1 when it could not, 2 on "
        "bad settings.");
    if (cr != 0) {
        config_free(opts, NOPTS);
        return cr == 1 ? 0 : 2;
    }
    enum log_level lvl;
    if (log_level_parse(o_log_level, &lvl) != 0) {
        fprintf(stderr, "error: LOG_LEVEL: unknown level '%s'\n", o_log_level);
        goto out;
    }
    log_init("resumestorm", lvl);
    if (!o_ws || parse_target(o_ws, &g.first) != 0) {
        fprintf(stderr, "error: STORM_WS: host:port (IPv4) required\n");
        goto out;
    }
    if (!o_resume_to || addr_split_list(o_resume_to, &list, &nlist) != 0 || nlist == 0 ||
        nlist > MAX_TARGETS) {
        fprintf(stderr, "error: STORM_RESUME_TO: 1-%d host:port required\n", MAX_TARGETS);
        goto out;
    }
    for (size_t i = 0; i < nlist; i++)
        if (parse_target(list[i], &g.tg[i]) != 0) {
            fprintf(stderr, "error: STORM_RESUME_TO: bad entry '%s'\n", list[i]);
            goto out;
        }
    g.ntg = (int)nlist;
    addr_list_free(list, nlist);
    list = NULL;
    if (o_abuse_to ? parse_target(o_abuse_to, &g.abuse_tg) != 0 : (g.abuse_tg = g.tg[0], 0)) {
        fprintf(stderr, "error: STORM_ABUSE_TO: bad host:port\n");
        goto out;
    }
    if (!o_brokers || !*o_brokers) {
        fprintf(stderr, "error: KAFKA_BROKERS is required\n");
        goto out;
    }
    if (inet_pton(AF_INET, o_src_base, &g.src_base) != 1 ||
        inet_pton(AF_INET, o_abuse_src, &g.abuse_src) != 1) {
        fprintf(stderr, "error: STORM_SRC_BASE / STORM_ABUSE_SRC: IPv4 address required\n");
        goto out;
    }
    if (strcmp(o_drop, "kill") && strcmp(o_drop, "close") && strcmp(o_drop, "wait")) {
        fprintf(stderr, "error: STORM_DROP: kill | close | wait\n");
        goto out;
    }
    if (!strcmp(o_drop, "kill") && o_kill_pid <= 0) {
        fprintf(stderr, "error: STORM_DROP=kill needs STORM_KILL_PID\n");
        goto out;
    }
    if (addr_split_list(o_brokers, &list, &nlist) == 0) {
        for (size_t i = 0; i < nlist && g.nbroker < 64; i++) {
            char h[256];
            int port;
            const char *s = strstr(list[i], "://") ? strstr(list[i], "://") + 3 : list[i];
            if (addr_split_hostport(s, h, sizeof h, &port) == 0)
                g.broker_port[g.nbroker++] = port;
        }
        addr_list_free(list, nlist);
        list = NULL;
    }
    if (o_watch && addr_split_list(o_watch, &list, &nlist) == 0) {
        for (size_t i = 0; i < nlist && g.nwatch < MAX_WATCH; i++)
            g.watch[g.nwatch++] = (pid_t)atol(list[i]);
        addr_list_free(list, nlist);
        list = NULL;
    }

    rc = 1;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    g.rng = o_seed ? (uint64_t)o_seed : (clock_wall_us() ^ ((uint64_t)getpid() << 32));
    g.n = o_clients;
    g.nab = o_abuse_conns;
    g.c = calloc((size_t)g.n, sizeof *g.c);
    g.ab = calloc((size_t)(g.nab ? g.nab : 1), sizeof *g.ab);
    toks = calloc((size_t)o_tokens, sizeof *toks);
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    if (!g.c || !g.ab || !toks || g.ep < 0) {
        fprintf(stderr, "error: out of memory\n");
        goto out;
    }
    code_index("OK");
    for (long i = 0; i < g.n; i++) {
        g.c[i].fd = -1;
        g.c[i].tok = (int)(i % o_tokens);
        g.c[i].code = -1;
    }
    for (long i = 0; i < g.nab; i++)
        g.ab[i].fd = -1;
    rk = kafka_new();
    if (!rk)
        goto out;

    if (setup() != 0)
        goto out;
    fprintf(stderr, "storm: %ld clients subscribed with a position; dropping (%s)\n",
            g.n, o_drop);
    drop();
    storm();
    if (g_stop)
        goto out;
    /* partition ends when the last client was answered */
    for (long i = 0; i < g.n; i++)
        if (g.c[i].has_pos && g.c[i].p >= 0 && g.c[i].p < MAX_PARTS)
            used[g.c[i].p] = 1;
    if (query_hw(rk, used, hw_ans) != 0)
        goto out;
    run_for((uint64_t)o_after_ms);
    for (int t = 0; t < MAX_TARGETS; t++)
        for (int p = 0; p < MAX_PARTS; p++)
            minreq[t][p] = -2;     /* no request */
    for (int p = 0; p < MAX_PARTS; p++)
        start[p] = INT64_MAX;
    for (long i = 0; i < g.n; i++) {
        sclient *c = &g.c[i];
        if (c->first + 1 < start[c->p])
            start[c->p] = c->first + 1;
        if (c->t_req && (minreq[c->target][c->p] == -2 || c->req_seq < minreq[c->target][c->p]))
            minreq[c->target][c->p] = c->req_seq;
    }
    if (query_hw(rk, used, end) != 0)
        goto out;
    if (read_back(rk, used, start, end, minreq, hw_ans, toks, wbytes) != 0)
        goto out;
    for (long t = 0; t < o_tokens; t++)
        qsort(toks[t].off, toks[t].n, sizeof(int64_t), cmp_tokoff);

    /* drain: every client gets its token's last record (<= end) */
    uint64_t drain_end = clock_mono_ms() + (uint64_t)o_drain_ms;
    for (;;) {
        int done = 1;
        for (long i = 0; i < g.n && done; i++) {
            sclient *c = &g.c[i];
            tokrec *tr = &toks[c->tok];
            int64_t lastexp = -1;
            for (size_t k = tr->n; k-- > 0;)
                if ((tr->off[k] >> 40) == c->p) {
                    lastexp = tr->off[k] & ((1LL << 40) - 1);
                    break;
                }
            if (c->st == C_OPEN && c->last < lastexp)
                done = 0;
        }
        if (done || g_stop || clock_mono_ms() >= drain_end)
            break;
        loop_once(5);
    }

    /* ---- figures ---- */
    long acks = 0, missing = 0, dups = 0, unexpected = 0, gap_clients = 0, closed_after = 0;
    long replayed = 0, expected_total = 0, answers[MAX_CODES] = { 0 };
    double *lat = calloc((size_t)g.n, sizeof *lat);
    int64_t *exp = NULL;
    size_t expcap = 0;
    size_t nlat = 0;
    uint64_t last_ans = 0;
    for (long i = 0; i < g.n; i++) {
        sclient *c = &g.c[i];
        tokrec *tr = &toks[c->tok];
        size_t ne = 0;
        if (expcap < tr->n + 1) {
            int64_t *q = realloc(exp, (tr->n + 1) * sizeof *q);
            if (!q)
                break;
            exp = q;
            expcap = tr->n + 1;
        }
        for (size_t k = 0; k < tr->n; k++) {
            int64_t p = tr->off[k] >> 40, off = tr->off[k] & ((1LL << 40) - 1);
            if (p == c->p && off > c->first)
                exp[ne++] = off;
        }
        /* received after the first, within what was read back */
        size_t nr = 0;
        for (size_t k = 0; k < c->noffs; k++)
            if (c->offs[k] > c->first && c->offs[k] < end[c->p])
                c->offs[nr++] = c->offs[k];
            else if (c->offs[k] == c->first && k > 0)
                dups++;       /* the first record again */
        rs_gap_counts gc;
        rs_gaps(exp, ne, c->offs, nr, &gc);
        expected_total += (long)ne;
        missing += gc.missing;
        dups += gc.dups;
        unexpected += gc.unexpected;
        gap_clients += gc.missing > 0;
        closed_after += c->closed_after;
        replayed += c->replayed_env;
        if (c->code >= 0)
            answers[c->code]++;
        if (c->code == 0) {
            acks++;
            if (lat)
                lat[nlat++] = (double)(c->t_ans - c->t_req);
        }
        if (c->answered && c->t_ans > last_ans)
            last_ans = c->t_ans;
    }
    free(exp);
    double p50 = rs_quantile(lat, nlat, 0.50), p99 = rs_quantile(lat, nlat, 0.99);
    double pmax = rs_quantile(lat, nlat, 1.0);
    free(lat);
    long long wtotal = 0;
    for (int t = 0; t < g.ntg; t++)
        wtotal += wbytes[t];

    printf("clients=%ld\ntokens=%ld\nacks=%ld\n", g.n, o_tokens, acks);
    for (int k = 1; k < g.ncodes; k++)
        if (answers[k])
            printf("errors.%s=%ld\n", g.codes[k], answers[k]);
    printf("errors=%ld\nmissing=%ld\nduplicates=%ld\nunexpected=%ld\nclients_with_gaps=%ld\n"
           "expected_records=%ld\nreplayed_envelopes=%ld\nclosed_after_answer=%ld\n"
           "bad_utf8_frames=%ld\nprotocol_errors=%ld\n",
           g.n - acks, missing, dups, unexpected, gap_clients, expected_total, replayed,
           closed_after, g.bad_utf8, g.proto_err);
    printf("ack_p50_ms=%.0f\nack_p99_ms=%.0f\nack_max_ms=%.0f\nkill_to_last_answer_ms=%lld\n",
           p50, p99, pmax, (long long)(last_ans - g.t_kill));
    for (int t = 0; t < g.ntg; t++)
        printf("window_bytes.%d=%lld\n", g.tg[t].port, wbytes[t]);
    printf("window_bytes=%lld\n", wtotal);
    for (int i = 0; i < g.nwatch; i++)
        printf("kafka_conns_max.%d=%ld\nrss_kb_start.%d=%ld\nrss_kb_max.%d=%ld\n",
               (int)g.watch[i], g.kconn_max[i], (int)g.watch[i], g.rss_start[i],
               (int)g.watch[i], g.rss_max[i]);
    printf("brokers=%d\n", g.nbroker);
    if (g.nwatch > 0)
        printf("kafka_conns_samples=%ld\nkafka_conns_proc_samples=%ld\n",
               g.kc_samples, g.kc_proc_samples);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)   /* the tool's own CPU: it shares the machine */
        printf("tool_cpu_s=%.2f\n", (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
               (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
    if (g.nab) {
        long ab_err = 0;
        for (int k = 1; k < g.ncodes; k++)
            if (g.ab_answers[k]) {
                printf("abuse_errors.%s=%ld\n", g.codes[k], g.ab_answers[k]);
                ab_err += g.ab_answers[k];
            }
        printf("abuse_conns=%ld\nabuse_sent=%ld\nabuse_acks=%ld\nabuse_errors=%ld\n"
               "abuse_replayed_envelopes=%ld\nabuse_closed=%ld\n",
               g.nab, g.ab_sent, g.ab_acks, ab_err, g.ab_replayed, g.ab_closed);
    }
    fflush(stdout);

    fprintf(stderr, "storm: %ld clients, %ld tokens: %ld reconnect_ack (%.1f %%)", g.n,
            o_tokens, acks, 100.0 * (double)acks / (double)g.n);
    for (int k = 1; k < g.ncodes; k++)
        if (answers[k])
            fprintf(stderr, ", %ld %s", answers[k], g.codes[k]);
    fprintf(stderr, "\nstorm: %ld records missing over %ld clients, %ld duplicates (of %ld "
            "expected, read back from Kafka)\nstorm: ack latency p50 %.0f ms p99 %.0f ms max "
            "%.0f ms; kill to last answer %lld ms\n",
            missing, gap_clients, dups, expected_total, p50, p99, pmax,
            (long long)(last_ans - g.t_kill));
    rc = 0;
out:
    if (list)
        addr_list_free(list, nlist);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    if (toks) {
        for (long t = 0; t < o_tokens; t++)
            free(toks[t].off);
        free(toks);
    }
    for (long i = 0; g.c && i < g.n; i++) {
        conn_close(&g.c[i]);
        free(g.c[i].offs), free(g.c[i].in), free(g.c[i].out), free(g.c[i].msg);
    }
    for (long i = 0; g.ab && i < g.nab; i++) {
        conn_close(&g.ab[i]);
        free(g.ab[i].offs), free(g.ab[i].in), free(g.ab[i].out), free(g.ab[i].msg);
    }
    free(g.c);
    free(g.ab);
    for (int k = 0; k < g.ncodes; k++)
        free((void *)g.codes[k]);
    if (g.ep > 0)
        close(g.ep);
    config_free(opts, NOPTS);
    return rc;
}
