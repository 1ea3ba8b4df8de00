/*
 * odin-publish: a librdkafka producer that publishes realistic Odin events
 * (tools/lib/eventgen.h) for load tests and benchmarks.
 *
 * Each record: key = token, value = {"type":..,"timestamp":<ms>,
 * "publish_us":<us>,"data":{"token":..,...}} with the type matching the
 * topic.  Tokens are drawn uniformly or Zipf-distributed, the topic
 * uniformly from PUBLISH_TOPICS.
 *
 * Pacing: a token bucket (capacity 10 ms of rate) refilled from the
 * monotonic clock; when empty, the producer sleeps (nanosleep) until the
 * next token is due, never spins.  A full librdkafka queue is waited out
 * with rd_kafka_poll() and the same record retried: nothing is dropped,
 * retries are counted.  At the end everything is flushed; the summary
 * (stdout, one JSON line) counts only records the broker acknowledged as
 * "sent".  Exit 0 only when every produced record was delivered.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/config.h"
#include "tools/lib/eventgen.h"
#include "common/log.h"
#include "common/topics.h"

static char *opt_brokers;
static double opt_rate;
static long opt_count;
static double opt_duration;
static char *opt_tokens;
static long opt_token_count;
static char *opt_dist;
static double opt_zipf_s;
static char *opt_topics;
static long opt_payload;
static long opt_seed;
static long opt_linger;
static double opt_flush_timeout;
static char *opt_log_level;

static const config_opt opts[] = {
    { "KAFKA_BROKERS", CFG_STR, &opt_brokers, NULL,
      "Kafka bootstrap servers, host:port[,host:port] (required)", 0, 0 },
    { "PUBLISH_RATE", CFG_DOUBLE, &opt_rate, "0",
      "Records per second (0 = as fast as possible)", 0, 1e8 },
    { "PUBLISH_COUNT", CFG_INT, &opt_count, "0",
      "Records to publish (0 = until PUBLISH_DURATION_S or SIGINT/SIGTERM)",
      0, 1e15 },
    { "PUBLISH_DURATION_S", CFG_DOUBLE, &opt_duration, "0",
      "Stop producing after this many seconds (0 = no limit)", 0, 1e9 },
    { "PUBLISH_TOKENS", CFG_STR, &opt_tokens, "BTC,ETH,SOL,ODIN,DOGE",
      "Comma-separated token ids used as record keys", 0, 0 },
    { "PUBLISH_TOKEN_COUNT", CFG_INT, &opt_token_count, "0",
      "If > 0, use generated tokens TOK0..TOK<n-1> instead of PUBLISH_TOKENS",
      0, 10000000 },
    { "PUBLISH_DISTRIBUTION", CFG_STR, &opt_dist, "uniform",
      "Token popularity: uniform | zipf (first token most popular)", 0, 0 },
    { "PUBLISH_ZIPF_S", CFG_DOUBLE, &opt_zipf_s, "1.1",
      "Zipf exponent s: P(rank k) ~ 1/k^s", 0.01, 10 },
    { "PUBLISH_TOPICS", CFG_STR, &opt_topics, TOPICS_DEFAULT_LIST,
      "Comma-separated topics, one picked per record; the event type follows "
      "the name's last part (.trades -> TRADE_EXECUTED, ...)", 0, 0 },
    { "PUBLISH_PAYLOAD_BYTES", CFG_INT, &opt_payload, "0",
      "Pad each value (a \"pad\" field in data) to this many bytes "
      "(0 = natural size, ~200-300 bytes)", 0, 900000 },
    { "PUBLISH_SEED", CFG_INT, &opt_seed, "0",
      "Random seed (0 = from time and pid; the seed used is logged)", 0, 0 },
    { "PUBLISH_LINGER_MS", CFG_INT, &opt_linger, "5",
      "librdkafka linger.ms (batching delay)", 0, 10000 },
    { "PUBLISH_FLUSH_TIMEOUT_S", CFG_DOUBLE, &opt_flush_timeout, "30",
      "At the end, wait this long for outstanding deliveries", 0, 3600 },
    { "LOG_LEVEL", CFG_STR, &opt_log_level, "info",
      "debug | info | warn | error", 0, 0 },
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop++;
}

typedef struct stats {
    uint64_t queued;      /* accepted by rd_kafka_producev */
    uint64_t delivered;   /* acknowledged by the broker */
    uint64_t dr_errors;   /* delivery reports with an error */
    uint64_t prod_errors; /* rd_kafka_producev refused (not queue full) */
    uint64_t queue_full;  /* retries after RD_KAFKA_RESP_ERR__QUEUE_FULL */
    log_ratelimit rl;
} stats;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    stats *st = opaque;
    uint64_t supp;
    if (!m->err) {
        st->delivered++;
        return;
    }
    st->dr_errors++;
    if (log_rl_allow(&st->rl, &supp))
        log_kv(LOG_WARN, "delivery failed", "s:topic", rd_kafka_topic_name(m->rkt),
               "i:partition", (int)m->partition, "s:error",
               rd_kafka_err2str(m->err), "u:suppressed", supp, NULL);
}

static void rk_log_cb(const rd_kafka_t *rk, int level, const char *fac,
                      const char *b)
{
    enum log_level lvl = level <= 3 ? LOG_ERROR : level == 4 ? LOG_WARN
                       : level <= 6 ? LOG_INFO : LOG_DEBUG;
    log_kv(lvl, "librdkafka", "s:fac", fac, "s:text", b, NULL);
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = { (time_t)(ns / 1000000000ULL),
                           (long)(ns % 1000000000ULL) };
    nanosleep(&ts, NULL); /* EINTR (a signal) just ends the sleep early */
}

typedef struct topic_slot {
    rd_kafka_topic_t *rkt;
    const char *type;
} topic_slot;

int main(int argc, char **argv)
{
    int rc = 1;
    char errstr[512];
    char **tokens = NULL, **topic_names = NULL;
    size_t ntokens = 0, ntopics = 0;
    topic_slot *topics = NULL;
    eventgen_zipf zipf = { 0, NULL };
    uint64_t *token_seq = NULL;   /* per (token, topic): last token_seq sent */
    int use_zipf = 0;
    rd_kafka_t *rk = NULL;
    buf val = { 0 };
    stats st;
    memset(&st, 0, sizeof st);
    st.rl.per_sec = 5;
    enum log_level lvl = LOG_INFO;

    int cr = config_load(opts, NOPTS, argc, argv, "odin-publish",
                         "Kafka publisher of synthetic Odin events (load "
                         "tests, benchmarks).\nPrints a progress line every "
                         "second (stderr, JSON) and a final summary on stdout:"
                         "\n  {\"sent\":N,\"errors\":N,\"elapsed_s\":..,"
                         "\"rate\":..,...}\nExit 0 when every record was "
                         "delivered, 1 otherwise, 2 on bad settings.");
    if (cr != 0) {
        config_free(opts, NOPTS);
        return cr == 1 ? 0 : 2;
    }
    if (log_level_parse(opt_log_level, &lvl) != 0) {
        config_error("LOG_LEVEL: unknown level '%s'", opt_log_level);
        config_free(opts, NOPTS);
        return 2;
    }
    log_init("publish", lvl);

    /* ---- validate settings (exit 2) ---- */
    rc = 2;
    if (!opt_brokers || !*opt_brokers) {
        config_error("KAFKA_BROKERS is required (host:port)");
        goto out;
    }
    if (strcmp(opt_dist, "zipf") == 0) {
        use_zipf = 1;
    } else if (strcmp(opt_dist, "uniform") != 0) {
        config_error("PUBLISH_DISTRIBUTION: '%s' is not uniform|zipf",
                opt_dist);
        goto out;
    }
    if (opt_token_count > 0) {
        ntokens = (size_t)opt_token_count;
        tokens = calloc(ntokens, sizeof(*tokens));
        if (!tokens)
            goto oom;
        for (size_t i = 0; i < ntokens; i++) {
            char name[32];
            snprintf(name, sizeof name, "TOK%zu", i);
            if (!(tokens[i] = strdup(name)))
                goto oom;
        }
    } else {
        if (addr_split_list(opt_tokens, &tokens, &ntokens) != 0)
            goto oom;
        for (size_t i = 0; i < ntokens; i++)
            if (!topics_token_valid(tokens[i], strlen(tokens[i]))) {
                config_error("PUBLISH_TOKENS: '%s' is not a valid token "
                        "(1-64 of A-Z a-z 0-9 _ -)", tokens[i]);
                goto out;
            }
    }
    if (ntokens == 0) {
        config_error("PUBLISH_TOKENS: no tokens");
        goto out;
    }
    if (addr_split_list(opt_topics, &topic_names, &ntopics) != 0)
        goto oom;
    if (ntopics == 0) {
        config_error("PUBLISH_TOPICS: no topics");
        goto out;
    }
    for (size_t i = 0; i < ntopics; i++)
        if (!eventgen_type_for_topic(topic_names[i])) {
            config_error("PUBLISH_TOPICS: cannot tell the event type of "
                    "'%s' (the name must end in .trades, .liquidity, .metadata, "
                    ".social, .community, .creation, .analytics or .balances)",
                    topic_names[i]);
            goto out;
        }
    if (use_zipf && eventgen_zipf_init(&zipf, ntokens, opt_zipf_s) != 0)
        goto oom;

    uint64_t seed = opt_seed ? (uint64_t)opt_seed
                             : clock_wall_us() ^ ((uint64_t)getpid() << 32);
    eventgen_rng rng;
    eventgen_rng_seed(&rng, seed);

    /* ---- producer ---- */
    rc = 1;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char linger[32];
    snprintf(linger, sizeof linger, "%ld", opt_linger);
    rd_kafka_conf_set_log_cb(conf, rk_log_cb);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_opaque(conf, &st);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", opt_brokers, errstr,
                          sizeof errstr) ||
        rd_kafka_conf_set(conf, "linger.ms", linger, errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "client.id", "odin-publish", errstr,
                          sizeof errstr) ||
        rd_kafka_conf_set(conf, "log.queue", "true", errstr, sizeof errstr)) {
        log_kv(LOG_ERROR, "librdkafka config", "s:error", errstr, NULL);
        rd_kafka_conf_destroy(conf);
        rc = 2;
        goto out;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        log_kv(LOG_ERROR, "cannot create producer", "s:error", errstr, NULL);
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    rd_kafka_set_log_queue(rk, NULL); /* log lines served by rd_kafka_poll */

    topics = calloc(ntopics, sizeof(*topics));
    token_seq = calloc(ntokens * ntopics, sizeof(*token_seq));
    if (!topics || !token_seq)
        goto oom;
    for (size_t i = 0; i < ntopics; i++) {
        topics[i].type = eventgen_type_for_topic(topic_names[i]);
        topics[i].rkt = rd_kafka_topic_new(rk, topic_names[i], NULL);
        if (!topics[i].rkt) {
            log_kv(LOG_ERROR, "cannot create topic handle", "s:topic",
                   topic_names[i], "s:error",
                   rd_kafka_err2str(rd_kafka_last_error()), NULL);
            goto out;
        }
    }

    /* Warm up: learn each topic's leaders (and so connect to the brokers)
     * before the first record is stamped, so publish_us does not carry the
     * producer's start-up into the first records' latency. */
    for (size_t i = 0; i < ntopics; i++) {
        const struct rd_kafka_metadata *md = NULL;
        if (rd_kafka_metadata(rk, 0, topics[i].rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR)
            rd_kafka_metadata_destroy(md);
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    log_kv(LOG_INFO, "publishing", "s:brokers", opt_brokers, "f:rate", opt_rate,
           "I:count", (int64_t)opt_count, "f:duration_s", opt_duration,
           "u:tokens", (uint64_t)ntokens, "s:distribution", opt_dist,
           "u:topics", (uint64_t)ntopics, "I:payload_bytes", (int64_t)opt_payload,
           "u:seed", seed, NULL);

    /* ---- produce loop ---- */
    const uint64_t t0 = clock_mono_ns();
    const uint64_t end_ns = opt_duration > 0
        ? t0 + (uint64_t)(opt_duration * 1e9) : UINT64_MAX;
    const double cap = opt_rate > 0 ? fmax(1.0, opt_rate / 100.0) : 0;
    double bucket = opt_rate > 0 ? 1.0 : 0; /* first record goes at once */
    uint64_t last_refill = t0, next_progress = t0 + 1000000000ULL;
    uint64_t last_delivered = 0, seq = 0;
    int interrupted = 0;

    for (;;) {
        uint64_t now = clock_mono_ns();
        if (g_stop) {
            interrupted = 1;
            break;
        }
        if ((opt_count > 0 && seq >= (uint64_t)opt_count) || now >= end_ns)
            break;
        if (now >= next_progress) {
            uint64_t d = st.delivered;
            log_kv(LOG_INFO, "progress", "u:queued", st.queued, "u:sent", d,
                   "u:errors", st.dr_errors + st.prod_errors, "u:queue_full",
                   st.queue_full, "u:last_1s", d - last_delivered, "i:outq",
                   rd_kafka_outq_len(rk), NULL);
            last_delivered = d;
            next_progress += 1000000000ULL;
            if (next_progress <= now)
                next_progress = now + 1000000000ULL;
        }
        if (opt_rate > 0) {
            bucket += (double)(now - last_refill) * opt_rate / 1e9;
            last_refill = now;
            if (bucket > cap)
                bucket = cap;
            if (bucket < 1.0) {
                uint64_t wait = (uint64_t)((1.0 - bucket) / opt_rate * 1e9);
                if (wait < 50000)
                    wait = 50000; /* 50 us: batch instead of syscall storms */
                if (wait > 100000000)
                    wait = 100000000; /* stay responsive to stop/progress */
                rd_kafka_poll(rk, 0);
                sleep_ns(wait);
                continue;
            }
            bucket -= 1.0;
        }

        size_t ti = ntokens == 1 ? 0
                  : use_zipf ? eventgen_zipf_sample(&zipf, &rng)
                  : (size_t)eventgen_rng_below(&rng, ntokens);
        size_t pi = ntopics == 1 ? 0 : (size_t)eventgen_rng_below(&rng, ntopics);
        const char *tok = tokens[ti];
        for (;;) { /* until queued, refused, or stopped */
            eventgen_event ev = { .type = topics[pi].type, .token = tok,
                                  .publish_us = clock_wall_us(), .seq = seq,
                                  .token_seq = token_seq[ti * ntopics + pi] + 1,
                                  .pad_to = (size_t)opt_payload };
            buf_reset(&val);
            if (eventgen_build(&val, &ev, &rng) != 0)
                goto oom;
            int r = rd_kafka_produce(topics[pi].rkt, RD_KAFKA_PARTITION_UA,
                                     RD_KAFKA_MSG_F_COPY, val.data, val.len,
                                     tok, strlen(tok), NULL);
            if (r == 0) {
                st.queued++;
                token_seq[ti * ntopics + pi]++;
                break;
            }
            rd_kafka_resp_err_t e = rd_kafka_last_error();
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                st.queue_full++;
                rd_kafka_poll(rk, 100); /* wait for deliveries to free room */
                if (g_stop || clock_mono_ns() >= end_ns)
                    break; /* not queued, so not counted as produced */
                continue;
            }
            uint64_t supp;
            st.prod_errors++;
            if (log_rl_allow(&st.rl, &supp))
                log_kv(LOG_WARN, "produce failed", "s:topic",
                       topic_names[pi], "s:error", rd_kafka_err2str(e),
                       "u:suppressed", supp, NULL);
            break;
        }
        seq++;
        if ((seq & 63) == 0)
            rd_kafka_poll(rk, 0);
    }

    /* ---- flush: wait for outstanding deliveries ---- */
    uint64_t flush_end = clock_mono_ns() + (uint64_t)(opt_flush_timeout * 1e9);
    int stop_seen = g_stop;
    while (rd_kafka_outq_len(rk) > 0 && clock_mono_ns() < flush_end) {
        rd_kafka_poll(rk, 100);
        if (g_stop > stop_seen && g_stop >= 2)
            break; /* a second signal: give up waiting */
    }
    int outq = rd_kafka_outq_len(rk);
    if (outq > 0) {
        log_kv(LOG_WARN, "undelivered records at exit, purging", "i:outq", outq,
               NULL);
        rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(rk, 1000); /* serves the purge delivery reports */
    }
    rd_kafka_poll(rk, 0);
    double elapsed = (double)(clock_mono_ns() - t0) / 1e9;
    uint64_t errors = st.dr_errors + st.prod_errors;
    uint64_t lost = st.queued - st.delivered - st.dr_errors;
    printf("{\"sent\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"elapsed_s\":%.3f,"
           "\"rate\":%.1f,\"queued\":%" PRIu64 ",\"queue_full_retries\":%" PRIu64
           ",\"undelivered\":%" PRIu64 ",\"interrupted\":%s}\n",
           st.delivered, errors, elapsed,
           elapsed > 0 ? (double)st.delivered / elapsed : 0.0, st.queued,
           st.queue_full, lost, interrupted ? "true" : "false");
    fflush(stdout);
    rc = (errors == 0 && lost == 0 && st.delivered == st.queued) ? 0 : 1;
    goto out;

oom:
    log_kv(LOG_ERROR, "out of memory", NULL);
    rc = 1;
out:
    if (topics) {
        for (size_t i = 0; i < ntopics; i++)
            if (topics[i].rkt)
                rd_kafka_topic_destroy(topics[i].rkt);
        free(topics);
    }
    if (rk) {
        rd_kafka_poll(rk, 0);
        rd_kafka_destroy(rk);
    }
    buf_free(&val);
    free(token_seq);
    eventgen_zipf_free(&zipf);
    addr_list_free(tokens, ntokens);
    addr_list_free(topic_names, ntopics);
    config_free(opts, NOPTS);
    return rc;
}
