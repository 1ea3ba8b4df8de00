/*
 * odin-loadgen: WebSocket load generator for odin-dispatch shards.
 *
 * The parent parses settings, computes the plan (tools/lib/lg_plan.h), forks
 * the workers (tools/loadgen/worker.c), merges their reports (counters and
 * latency histogram deltas over one pipe per worker), prints a live
 * progress line on stderr, stops the workers LG_DURATION_S after the ramp
 * (or on SIGINT/SIGTERM) and prints a JSON summary on stdout.
 *
 * Exit status: 0 ok; 1 a worker crashed or failed; 2 bad settings;
 * 3 LG_EXPECT_ALL was set and not every connection was subscribed (acked);
 * 4 connections were attempted and not one succeeded (wrong address, shards
 * down: a run that measured nothing must not look like a success).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/config.h"
#include "tools/lib/lg_hist.h"
#include "tools/lib/lg_report.h"
#include "common/log.h"
#include "tools/loadgen/lg.h"

static char *o_targets, *o_path, *o_addrs, *o_mode, *o_tokens, *o_prefix, *o_cats;
static char *o_summary_file, *o_log_level;
static long o_conns, o_procs, o_token_count, o_k, o_seed, o_max_msg;
static double o_rate, o_duration, o_heartbeat, o_timeout, o_grace;
static int o_progress, o_expect_all, o_deflate;

static const config_opt opts[] = {
    { "LG_TARGETS", CFG_STR, &o_targets, "127.0.0.1:3002",
      "Comma list of host:port WebSocket endpoints; connections go round-robin", 0, 0 },
    { "LG_PATH", CFG_STR, &o_path, "/ws", "Upgrade path", 0, 0 },
    { "LG_CONNECTIONS", CFG_INT, &o_conns, "1000", "Total connections", 1, 10000000 },
    { "LG_RATE", CFG_DOUBLE, &o_rate, "1000",
      "New connections per second in total, spread evenly over the workers (0 = as fast "
      "as possible)", 0, 10000000 },
    { "LG_PROCESSES", CFG_INT, &o_procs, "0",
      "Worker processes (0 = ceil(connections / 15000)); each must stay under the "
      "per-process fd limit", 0, LG_PLAN_MAX_WORKERS },
    { "LG_SOURCE_ADDRS", CFG_STR, &o_addrs, "",
      "IPv4 source addresses: list and/or ranges, e.g. 127.0.0.1-127.0.0.8; sockets bind "
      "to them round-robin with IP_BIND_ADDRESS_NO_PORT (empty = kernel's choice)", 0, 0 },
    { "LG_DURATION_S", CFG_DOUBLE, &o_duration, "30",
      "Hold time after the ramp (every connection resolved), then close and report", 0,
      1e9 },
    { "LG_MODE", CFG_STR, &o_mode, "single",
      "all | single | random: every channel of the set (max 128 per connection), one "
      "channel (connection i: token i % ntokens, category (i / ntokens) % ncategories), "
      "or LG_CHANNELS_PER_CONN random channels", 0, 0 },
    { "LG_TOKENS", CFG_STR, &o_tokens, NULL,
      "Comma list of tokens (overrides LG_TOKEN_COUNT/LG_TOKEN_PREFIX)", 0, 0 },
    { "LG_TOKEN_COUNT", CFG_INT, &o_token_count, "100",
      "Tokens <prefix>0 .. <prefix>N-1 when LG_TOKENS is unset", 1, 1000000 },
    { "LG_TOKEN_PREFIX", CFG_STR, &o_prefix, "TOK", "Prefix of generated tokens", 0, 0 },
    { "LG_CATEGORIES", CFG_STR, &o_cats, "trade,liquidity,analytics",
      "Comma list of channel categories", 0, 0 },
    { "LG_CHANNELS_PER_CONN", CFG_INT, &o_k, "5", "Channels per connection in random mode",
      1, LG_MAX_CHANNELS_PER_CONN },
    { "LG_HEARTBEAT_S", CFG_DOUBLE, &o_heartbeat, "25",
      "Send {\"type\":\"heartbeat\"} every N s per connection (0 = never); server pings "
      "are answered automatically", 0, 86400 },
    { "LG_CONNECT_TIMEOUT_S", CFG_DOUBLE, &o_timeout, "10",
      "Connect + upgrade timeout; the subscription ack gets the same time again", 0.1,
      3600 },
    { "LG_CLOSE_GRACE_S", CFG_DOUBLE, &o_grace, "3",
      "At the end, wait this long for close handshakes before dropping sockets", 0, 600 },
    { "LG_MAX_MESSAGE", CFG_INT, &o_max_msg, "1048576", "Largest accepted message (bytes)",
      1024, 1 << 30 },
    { "LG_SUMMARY_FILE", CFG_STR, &o_summary_file, NULL,
      "Also write the JSON summary to this file", 0, 0 },
    { "LG_PROGRESS", CFG_BOOL, &o_progress, "1",
      "Print a live progress line on stderr every second", 0, 0 },
    { "LG_EXPECT_ALL", CFG_BOOL, &o_expect_all, "0",
      "Exit 3 unless every connection opened and got its subscription ack", 0, 0 },
    { "LG_SEED", CFG_INT, &o_seed, "1", "Seed for random channel choice", 0, 0 },
    { "LG_DEFLATE", CFG_BOOL, &o_deflate, "0",
      "Offer permessage-deflate (RFC 7692) and inflate compressed messages", 0, 0 },
    { "LOG_LEVEL", CFG_STR, &o_log_level, "info", "debug | info | warn | error", 0, 0 },
};
#define NOPTS (sizeof opts / sizeof opts[0])

static const char summary_text[] =
    "WebSocket load generator for odin-dispatch: opens LG_CONNECTIONS client "
    "connections at LG_RATE per second over LG_PROCESSES worker processes and "
    "LG_SOURCE_ADDRS, subscribes them (LG_MODE), holds them for LG_DURATION_S, "
    "and prints a JSON summary (connections, errors, messages, gaps, latency "
    "from data.publish_us) on stdout.";

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    (void)sig;
    got_signal++;
}

typedef struct worker_slot {
    pid_t pid;
    int fd;             /* read end, -1 when closed */
    int final;          /* final report received */
    int status;         /* waitpid status */
    int reaped;
    buf in;
    lg_counters ct;     /* latest (cumulative) */
} worker_slot;

static int parse_targets(const char *csv, lg_cfg *cfg)
{
    char *copy = strdup(csv), *save = NULL;
    size_t cap = 1;
    for (const char *p = csv; *p; p++)
        cap += *p == ',';
    cfg->targets = calloc(cap, sizeof *cfg->targets);
    if (!copy || !cfg->targets) {
        free(copy);
        return -1;
    }
    int rc = 0;
    for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        lg_target *tg = &cfg->targets[cfg->ntargets];
        if (addr_split_hostport(t, tg->host, sizeof tg->host, &tg->port) != 0 ||
            tg->port <= 0 || tg->port > 65535) {
            config_error("LG_TARGETS: '%s' is not host:port", t);
            rc = -1;
            break;
        }
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
        char port[16];
        snprintf(port, sizeof port, "%d", tg->port);
        int g = getaddrinfo(tg->host, port, &hints, &res);
        if (g != 0 || !res) {
            config_error("LG_TARGETS: cannot resolve '%s': %s", tg->host,
                    gai_strerror(g));
            rc = -1;
            break;
        }
        memcpy(&tg->sa, res->ai_addr, res->ai_addrlen);
        tg->salen = res->ai_addrlen;
        freeaddrinfo(res);
        cfg->ntargets++;
    }
    free(copy);
    if (rc == 0 && cfg->ntargets == 0) {
        config_error("LG_TARGETS is empty");
        rc = -1;
    }
    return rc;
}

static long port_range_size(void)
{
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    long lo = 0, hi = -1;
    if (f) {
        if (fscanf(f, "%ld %ld", &lo, &hi) != 2)
            hi = -1;
        fclose(f);
    }
    return hi >= lo ? hi - lo + 1 : 0;
}

static char *token_list(void)
{
    if (o_tokens && *o_tokens)
        return strdup(o_tokens);
    buf b = { 0 };
    for (long i = 0; i < o_token_count; i++)
        buf_appendf(&b, "%s%s%ld", i ? "," : "", o_prefix ? o_prefix : "", i);
    buf_append(&b, "", 1);
    return b.data;
}

static void fmt_count(char *out, size_t n, uint64_t v)
{
    if (v >= 10000000)
        snprintf(out, n, "%.1fM", (double)v / 1e6);
    else if (v >= 100000)
        snprintf(out, n, "%.1fk", (double)v / 1e3);
    else
        snprintf(out, n, "%llu", (unsigned long long)v);
}

static void progress_line(int tty, double el, const lg_counters *t, double rate,
                          const lg_hist *h, int nworkers)
{
    char tot[32];
    fmt_count(tot, sizeof tot, t->messages);
    uint64_t errs = 0;
    for (int k = 0; k < LG_CERR_N; k++)
        errs += t->connect_err[k];
    fprintf(stderr,
            "%s[%6.1fs] conns %llu/%llu up, %llu subscribed, %llu failed | %.0f msg/s, "
            "%s total | gaps %llu dup %llu | disc %llu | p99 %.2f ms | workers %d%s",
            tty ? "\r\033[K" : "", el, (unsigned long long)t->open_now,
            (unsigned long long)t->target, (unsigned long long)t->subscribed,
            (unsigned long long)errs, rate, tot, (unsigned long long)t->gaps,
            (unsigned long long)t->duplicates, (unsigned long long)t->disconnects_unexpected,
            (double)lg_hist_percentile(h, 99) / 1000.0, nworkers, tty ? "" : "\n");
    fflush(stderr);
}

static json_t *ms(uint64_t us) { return json_real(round((double)us) / 1000.0); }

static json_t *build_summary(const lg_counters *t, const lg_hist *h, double duration,
                             long nworkers, int failed, const lg_cfg *cfg)
{
    json_t *j = json_object();
    json_t *errs = json_object(), *codes = json_object(), *lat = json_object();
    json_t *defs = json_object(), *targets = json_array();
    double ramp = (double)t->ramp_us / 1e6;
    double conn_span = (double)t->last_connect_us / 1e6;
    json_object_set_new(j, "connections_target", json_integer((json_int_t)t->target));
    json_object_set_new(j, "connected", json_integer((json_int_t)t->connected));
    json_object_set_new(j, "subscribed", json_integer((json_int_t)t->subscribed));
    for (int k = 0; k < LG_CERR_N; k++)
        json_object_set_new(errs, lg_cerr_name(k), json_integer((json_int_t)t->connect_err[k]));
    json_object_set_new(j, "connect_errors", errs);
    json_object_set_new(j, "connect_rate_per_s",
                        json_real(conn_span > 0 ? round((double)t->connected / conn_span * 10) / 10
                                                : 0));
    json_object_set_new(j, "ramp_s", json_real(round(ramp * 1000) / 1000));
    json_object_set_new(j, "messages", json_integer((json_int_t)t->messages));
    json_object_set_new(j, "messages_per_s",
                        json_real(duration > 0 ? round((double)t->messages / duration * 10) / 10
                                               : 0));
    json_object_set_new(j, "bytes", json_integer((json_int_t)t->bytes));
    json_object_set_new(j, "gaps", json_integer((json_int_t)t->gaps));
    json_object_set_new(j, "gaps_missing", json_integer((json_int_t)t->gaps_missing));
    json_object_set_new(j, "duplicates", json_integer((json_int_t)t->duplicates));
    json_object_set_new(j, "seq_backwards", json_integer((json_int_t)t->seq_backwards));
    json_object_set_new(j, "disconnects_unexpected",
                        json_integer((json_int_t)t->disconnects_unexpected));
    for (int i = 0; i < LG_CLOSE_SLOTS; i++) {
        if (!t->close_count[i])
            continue;
        char k[16];
        snprintf(k, sizeof k, "%u", t->close_code[i]);
        json_object_set_new(codes, k, json_integer((json_int_t)t->close_count[i]));
    }
    if (t->close_other)
        json_object_set_new(codes, "other", json_integer((json_int_t)t->close_other));
    json_object_set_new(j, "close_codes", codes);
    json_object_set_new(lat, "p50", ms(lg_hist_percentile(h, 50)));
    json_object_set_new(lat, "p90", ms(lg_hist_percentile(h, 90)));
    json_object_set_new(lat, "p99", ms(lg_hist_percentile(h, 99)));
    json_object_set_new(lat, "p999", ms(lg_hist_percentile(h, 99.9)));
    json_object_set_new(lat, "max", ms(h->total ? h->max : 0));
    json_object_set_new(lat, "mean", json_real(round(lg_hist_mean(h)) / 1000.0));
    json_object_set_new(lat, "samples", json_integer((json_int_t)h->total));
    json_object_set_new(j, "latency_ms", lat);
    json_object_set_new(j, "duration_s", json_real(round(duration * 1000) / 1000));
    json_object_set_new(j, "workers", json_integer(nworkers));
    json_object_set_new(j, "workers_failed", json_integer(failed));
    json_object_set_new(j, "acks", json_integer((json_int_t)t->acks));
    json_object_set_new(j, "ack_partial", json_integer((json_int_t)t->ack_partial));
    json_object_set_new(j, "ack_timeouts", json_integer((json_int_t)t->ack_timeouts));
    json_object_set_new(j, "errors_received", json_integer((json_int_t)t->errors_rx));
    json_object_set_new(j, "pongs", json_integer((json_int_t)t->pongs));
    json_object_set_new(j, "heartbeats_sent", json_integer((json_int_t)t->heartbeats_sent));
    json_object_set_new(j, "other_messages", json_integer((json_int_t)t->other_msgs));
    json_object_set_new(j, "unknown_channel", json_integer((json_int_t)t->unknown_channel));
    json_object_set_new(j, "parse_errors", json_integer((json_int_t)t->parse_errors));
    json_object_set_new(j, "rx_bytes", json_integer((json_int_t)t->rx_bytes));
    json_object_set_new(j, "deflate_connections", json_integer((json_int_t)t->deflate_conns));
    json_object_set_new(j, "inflated_messages", json_integer((json_int_t)t->inflated_msgs));
    json_object_set_new(j, "inflated_bytes", json_integer((json_int_t)t->inflated_bytes));
    json_object_set_new(j, "token_seq_messages", json_integer((json_int_t)t->token_seq_msgs));
    json_object_set_new(j, "no_publish_us", json_integer((json_int_t)t->no_publish_us));
    json_object_set_new(j, "negative_latency", json_integer((json_int_t)t->negative_latency));
    json_object_set_new(j, "latency_overflow", json_integer((json_int_t)h->overflow));
    json_object_set_new(j, "mode", json_string(lg_mode_name(cfg->mode)));
    json_object_set_new(j, "channels_total", json_integer((json_int_t)lg_chanset_count(cfg->cs)));
    for (size_t i = 0; i < cfg->ntargets; i++) {
        char s[300];
        snprintf(s, sizeof s, "%s:%d", cfg->targets[i].host, cfg->targets[i].port);
        json_array_append_new(targets, json_string(s));
    }
    json_object_set_new(j, "targets", targets);
    json_object_set_new(j, "source_addrs", json_integer((json_int_t)cfg->naddrs));
    json_object_set_new(defs, "gaps",
        json_string("per (connection, channel): data.token_seq (a per-channel publisher "
                    "counter, if present) jumped by more than 1; gaps_missing sums the "
                    "skipped values. Without token_seq gaps stay 0: seq is the Kafka "
                    "offset of a partition shared by many tokens, so its jumps are normal"));
    json_object_set_new(defs, "duplicates",
        json_string("per (connection, channel): seq (Kafka offset) not greater than the "
                    "last seen (redelivery or reordering); seq_backwards counts the "
                    "strictly smaller ones"));
    json_object_set_new(defs, "latency",
        json_string("receive wall clock minus data.publish_us, per delivery, in ms; "
                    "log-linear histogram with <1% bucket error, merged over workers"));
    json_object_set_new(defs, "ramp_s",
        json_string("start until every connection was resolved (acked, failed or timed "
                    "out); connect_rate_per_s = connected / time of the last upgrade"));
    json_object_set_new(defs, "messages_per_s", json_string("messages / duration_s (whole run)"));
    json_object_set_new(j, "definitions", defs);
    return j;
}

/* Read what a worker sent; returns 0, or -1 at EOF/error (fd closed). */
static int drain_worker(worker_slot *ws, lg_hist *acc, int wid)
{
    char tmp[65536];
    for (;;) {
        ssize_t n = read(ws->fd, tmp, sizeof tmp);
        if (n > 0) {
            buf_append(&ws->in, tmp, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        close(ws->fd);
        ws->fd = -1;
        break;
    }
    size_t off = 0;
    for (;;) {
        int kind;
        long l = lg_report_decode(ws->in.data + off, ws->in.len - off, &kind, &ws->ct, acc);
        if (l == 0)
            break;
        if (l < 0) {
            log_kv(LOG_ERROR, "bad report frame from worker", "i:worker", wid, NULL);
            ws->in.len = off = 0;
            break;
        }
        off += (size_t)l;
        if (kind == LG_REPORT_FINAL)
            ws->final = 1;
    }
    buf_consume(&ws->in, off);
    return ws->fd < 0 ? -1 : 0;
}

static void signal_workers(worker_slot *ws, long n, int sig)
{
    for (long i = 0; i < n; i++)
        if (ws[i].pid > 0 && !ws[i].reaped)
            kill(ws[i].pid, sig);
}

int main(int argc, char **argv)
{
    int rc = config_load(opts, NOPTS, argc, argv, "odin-loadgen", summary_text);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    enum log_level lvl = LOG_INFO;
    if (log_level_parse(o_log_level, &lvl) != 0) {
        config_error("LOG_LEVEL: unknown level '%s'", o_log_level);
        return 2;
    }
    log_init("loadgen", lvl);

    lg_cfg cfg = { 0 };
    int exit_code = 2;
    worker_slot *slots = NULL;
    lg_hist *hist = NULL;
    lg_plan *plan = NULL;
    char *tokens = NULL;
    long nworkers = 0;

    if (parse_targets(o_targets, &cfg) != 0)
        goto out;
    if (lg_addrs_parse(o_addrs, cfg.addrs, LG_PLAN_MAX_ADDRS, &cfg.naddrs) != 0) {
        config_error("LG_SOURCE_ADDRS: '%s' is not a list of IPv4 addresses/ranges "
                "(at most %d)", o_addrs, LG_PLAN_MAX_ADDRS);
        goto out;
    }
    for (size_t i = 0; cfg.naddrs && i < cfg.ntargets; i++) {
        if (cfg.targets[i].sa.ss_family != AF_INET) {
            config_error("LG_SOURCE_ADDRS are IPv4 but target %s is not",
                    cfg.targets[i].host);
            goto out;
        }
    }
    if (lg_mode_parse(o_mode, &cfg.mode) != 0) {
        config_error("LG_MODE: '%s' is not all, single or random", o_mode);
        goto out;
    }
    tokens = token_list();
    cfg.cs = tokens ? lg_chanset_new(tokens, o_cats) : NULL;
    if (!cfg.cs) {
        config_error("need at least one token (LG_TOKENS / LG_TOKEN_COUNT) and one "
                "category (LG_CATEGORIES)");
        goto out;
    }
    cfg.path = o_path;
    cfg.k = (size_t)o_k;
    cfg.heartbeat_ms = (long)(o_heartbeat * 1000);
    cfg.connect_timeout_ms = (long)(o_timeout * 1000);
    cfg.close_grace_ms = (long)(o_grace * 1000);
    cfg.max_message = o_max_msg;
    cfg.seed = (uint64_t)o_seed;
    cfg.deflate = o_deflate;

    struct rlimit rl = { 0, 0 };
    getrlimit(RLIMIT_NOFILE, &rl);
    lg_plan_in pin = {
        .connections = o_conns, .processes = o_procs, .rate = o_rate,
        .ntargets = cfg.ntargets, .naddrs = cfg.naddrs,
        .fd_limit = rl.rlim_max == RLIM_INFINITY ? 0 : (long)rl.rlim_max,
        .port_range = port_range_size(),
    };
    plan = calloc(1, sizeof *plan);
    hist = malloc(sizeof *hist);
    if (!plan || !hist)
        goto out;
    lg_hist_reset(hist);
    char why[512] = "";
    int prc = lg_plan_make(&pin, plan, why, sizeof why);
    if (prc != 0) {
        config_error("cannot plan %ld connections: %s", o_conns, why);
        goto out;
    }
    nworkers = plan->nworkers;
    log_kv(LOG_INFO, "starting", "I:connections", (int64_t)o_conns, "I:workers",
           (int64_t)nworkers, "I:per_worker_max", (int64_t)plan->w[0].count, "f:rate", o_rate,
           "I:targets", (int64_t)cfg.ntargets, "I:source_addrs", (int64_t)cfg.naddrs,
           "I:max_per_pair", (int64_t)plan->max_per_pair, "s:mode", lg_mode_name(cfg.mode),
           "I:channels", (int64_t)lg_chanset_count(cfg.cs), "I:fd_limit",
           (int64_t)pin.fd_limit, NULL);

    slots = calloc((size_t)nworkers, sizeof *slots);
    if (!slots)
        goto out;
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &old);
    fflush(NULL);
    cfg.t0_us = clock_mono_us();
    for (long i = 0; i < nworkers; i++) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) {
            log_kv(LOG_ERROR, "pipe failed", "s:error", strerror(errno), NULL);
            break;
        }
        pid_t pid = fork();
        if (pid < 0) {
            log_kv(LOG_ERROR, "fork failed", "s:error", strerror(errno), NULL);
            close(p[0]);
            close(p[1]);
            break;
        }
        if (pid == 0) {
            close(p[0]);
            for (long j = 0; j < i; j++)
                close(slots[j].fd);
            signal(SIGINT, SIG_DFL);
            signal(SIGTERM, SIG_DFL);
            int wrc = lgw_run(&cfg, (int)i, &plan->w[i], p[1]);
            close(p[1]);
            for (long j = 0; j < i; j++)
                buf_free(&slots[j].in);
            free(slots);
            free(hist);
            free(plan);
            free(tokens);
            lg_chanset_free(cfg.cs);
            free(cfg.targets);
            config_free(opts, NOPTS);
            exit(wrc);
        }
        close(p[1]);
        fcntl(p[0], F_SETFL, O_NONBLOCK);
        slots[i].pid = pid;
        slots[i].fd = p[0];
    }
    sigprocmask(SIG_SETMASK, &old, NULL);

    int tty = isatty(2);
    uint64_t last_line = clock_mono_us(), last_msgs = 0, hold_start = 0, stop_sent_at = 0;
    int stop_sent = 0, killed = 0, signals_seen = 0;
    lg_counters tot;
    for (;;) {
        struct pollfd pfd[LG_PLAN_MAX_WORKERS];
        int map[LG_PLAN_MAX_WORKERS], np = 0;
        for (long i = 0; i < nworkers; i++) {
            if (slots[i].fd >= 0) {
                pfd[np].fd = slots[i].fd;
                pfd[np].events = POLLIN;
                map[np++] = (int)i;
            }
        }
        if (np == 0)
            break;
        int pr = poll(pfd, (nfds_t)np, 200);
        for (int k = 0; pr > 0 && k < np; k++)
            if (pfd[k].revents)
                drain_worker(&slots[map[k]], hist, map[k]);
        for (long i = 0; i < nworkers; i++) {   /* reap early exits */
            if (slots[i].pid > 0 && !slots[i].reaped &&
                waitpid(slots[i].pid, &slots[i].status, WNOHANG) == slots[i].pid)
                slots[i].reaped = 1;
        }
        memset(&tot, 0, sizeof tot);
        long done = 0;
        for (long i = 0; i < nworkers; i++) {
            lg_counters_add(&tot, &slots[i].ct);
            if (slots[i].ct.ramp_done || slots[i].fd < 0 || slots[i].pid <= 0)
                done++;
        }
        uint64_t now = clock_mono_us();
        if (got_signal != signals_seen) {
            signals_seen = got_signal;
            if (!stop_sent) {
                log_kv(LOG_INFO, "signal: stopping workers", NULL);
                signal_workers(slots, nworkers, SIGTERM);
                stop_sent = 1;
                stop_sent_at = now;
            } else if (signals_seen > 1 && !killed) {
                log_kv(LOG_WARN, "second signal: killing workers", NULL);
                signal_workers(slots, nworkers, SIGKILL);
                killed = 1;
            }
        }
        if (!stop_sent && done == nworkers && !hold_start) {
            hold_start = now;
            log_kv(LOG_INFO, "ramp done", "f:ramp_s", (double)tot.ramp_us / 1e6, "u:connected",
                   tot.connected, "u:subscribed", tot.subscribed, "f:hold_s", o_duration, NULL);
        }
        if (!stop_sent && hold_start && (double)(now - hold_start) >= o_duration * 1e6) {
            signal_workers(slots, nworkers, SIGTERM);
            stop_sent = 1;
            stop_sent_at = now;
        }
        /* workers get the grace period plus slack to report, then are killed */
        if (stop_sent && !killed &&
            (double)(now - stop_sent_at) > (o_grace + 10.0) * 1e6) {
            log_kv(LOG_WARN, "workers did not stop in time: killing", NULL);
            signal_workers(slots, nworkers, SIGKILL);
            killed = 1;
        }
        if (o_progress && now - last_line >= 1000000) {
            double dt = (double)(now - last_line) / 1e6;
            progress_line(tty, (double)(now - cfg.t0_us) / 1e6, &tot,
                          (double)(tot.messages - last_msgs) / dt, hist, (int)nworkers);
            last_line = now;
            last_msgs = tot.messages;
        }
    }
    double duration = (double)(clock_mono_us() - cfg.t0_us) / 1e6;
    if (o_progress && tty)
        fputc('\n', stderr);

    int failed = 0;
    for (long i = 0; i < nworkers; i++) {
        if (slots[i].pid <= 0) {
            failed++;
            continue;
        }
        if (!slots[i].reaped) {
            while (waitpid(slots[i].pid, &slots[i].status, 0) < 0 && errno == EINTR)
                ;
            slots[i].reaped = 1;
        }
        int st = slots[i].status;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !slots[i].final) {
            failed++;
            log_kv(LOG_ERROR, "worker failed", "i:worker", (int)i, "i:pid", (int)slots[i].pid,
                   "i:exit", WIFEXITED(st) ? WEXITSTATUS(st) : -1, "i:signal",
                   WIFSIGNALED(st) ? WTERMSIG(st) : 0, "b:final_report", slots[i].final, NULL);
        }
    }
    memset(&tot, 0, sizeof tot);
    for (long i = 0; i < nworkers; i++)
        lg_counters_add(&tot, &slots[i].ct);
    tot.target = (uint64_t)o_conns;   /* also counts workers that never reported */

    json_t *sum = build_summary(&tot, hist, duration, nworkers, failed, &cfg);
    char *text = json_dumps(sum, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
    json_decref(sum);
    if (text) {
        printf("%s\n", text);
        fflush(stdout);
        if (o_summary_file && *o_summary_file) {
            FILE *f = fopen(o_summary_file, "w");
            if (!f || fprintf(f, "%s\n", text) < 0 || fclose(f) != 0)
                log_kv(LOG_ERROR, "cannot write summary file", "s:path", o_summary_file,
                       "s:error", strerror(errno), NULL);
        }
        free(text);
    }
    exit_code = failed ? 1 : 0;
    if (!failed && o_expect_all && tot.subscribed < (uint64_t)o_conns)
        exit_code = 3;
    if (exit_code == 0 && o_conns > 0 && tot.connected == 0) {
        log_kv(LOG_ERROR, "no connection succeeded", "I:attempted", (int64_t)o_conns, NULL);
        exit_code = 4;
    }
out:
    if (slots)
        for (long i = 0; i < nworkers; i++) {
            if (slots[i].fd >= 0)
                close(slots[i].fd);
            buf_free(&slots[i].in);
        }
    free(slots);
    free(hist);
    free(plan);
    free(tokens);
    lg_chanset_free(cfg.cs);
    free(cfg.targets);
    config_free(opts, NOPTS);
    return exit_code;
}
