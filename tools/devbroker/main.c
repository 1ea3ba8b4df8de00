/*
 * odin-devbroker: a local Kafka-protocol broker for development and tests,
 * built on librdkafka's mock cluster (rdkafka_mock.h, librdkafka 2.0.2).
 *
 * It creates the configured topics, prints the bootstrap address the mock
 * picked (127.0.0.1:<random port>, comma-separated when DEVBROKER_BROKERS > 1)
 * on one line to stdout, optionally writes it to a file (atomically), and
 * runs until SIGTERM/SIGINT, then exits 0.
 *
 * What the mock is and is not (checked against librdkafka 2.0.2's
 * rdkafka_mock.c, rd_kafka_mock_partition_init / rd_kafka_mock_msgset_new):
 *  - Storage is in memory only.  Each partition keeps at most 5 MiB
 *    (max_size = 1024*1024*5) and at most 100000 message *sets* (producer
 *    batches, max_cnt); on every append the oldest message sets are dropped
 *    until the log is within both limits (the newest set is always kept).
 *    The log start offset (low watermark) moves forward accordingly, so a
 *    consumer starting at "earliest" after a lot of traffic simply starts at
 *    the first retained offset, and a group whose committed offset fell off
 *    the log gets OFFSET_OUT_OF_RANGE and follows auto.offset.reset.
 *    tests/it/test_devbroker.c checks both.  Neither limit is configurable.
 *  - Consumer groups work (the mock implements the group coordinator:
 *    JoinGroup/SyncGroup/Heartbeat/OffsetCommit/OffsetFetch); committed
 *    offsets live in memory as well.  Rebalance timing (measured here): the
 *    first member of an empty group is admitted after ~3 s; after a member
 *    leaves, the group sits in "joining" for session.timeout.ms - 1 s (44 s
 *    with the 45 s default) before a new member gets an assignment.  Tests
 *    that restart consumers should set session.timeout.ms low (e.g. 6000).
 *  - Topics not in DEVBROKER_TOPICS are auto-created on first use by a
 *    client that allows it (producers do by default), with the mock's
 *    default partition count (4), not DEVBROKER_PARTITIONS.
 *  - Nothing survives a restart, the port changes on every start.
 * That is fine for live streams, local runs and tests; production uses
 * Redpanda or Kafka.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "common/config.h"
#include "common/log.h"
#include "common/topics.h"

static long opt_brokers;
static long opt_partitions;
static char *opt_topics;
static char *opt_bootstrap_file;
static char *opt_log_level;
static char *opt_debug;

static const config_opt opts[] = {
    { "DEVBROKER_BROKERS", CFG_INT, &opt_brokers, "1",
      "Number of mock brokers in the cluster", 1, 16 },
    { "DEVBROKER_PARTITIONS", CFG_INT, &opt_partitions, "8",
      "Partitions per topic created at start (auto-created topics get 4)",
      1, 10000 },
    { "DEVBROKER_TOPICS", CFG_STR, &opt_topics, TOPICS_DEFAULT_LIST,
      "Comma-separated topics to create at start", 0, 0 },
    { "DEVBROKER_BOOTSTRAP_FILE", CFG_STR, &opt_bootstrap_file, NULL,
      "Also write the bootstrap address to this file (atomic: tmp + rename; "
      "removed on clean exit)", 0, 0 },
    { "DEVBROKER_DEBUG", CFG_STR, &opt_debug, NULL,
      "librdkafka debug contexts for the mock, e.g. \"mock\" (very verbose)",
      0, 0 },
    { "LOG_LEVEL", CFG_STR, &opt_log_level, "info",
      "debug | info | warn | error", 0, 0 },
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static const char summary[] =
    "Local Kafka-protocol broker for development and tests (librdkafka mock "
    "cluster).\n"
    "Prints its bootstrap address (host:port, chosen by the mock) on one line "
    "to stdout and runs until SIGTERM/SIGINT.\n"
    "Limits: in memory only; the mock keeps only a few MB per partition "
    "(5 MiB or 100000 producer batches, whichever is hit first; older data "
    "is dropped and the low watermark moves). Fine for live streams and "
    "tests, not for retention or replay. Production uses Redpanda or Kafka.\n"
    "--bootstrap-file is accepted as a short alias of "
    "--devbroker-bootstrap-file.";

/*
 * Rewrite the --bootstrap-file alias (used by tools/run-tests.sh) to the
 * derived flag name.  Returns a malloc'd argv copy whose rewritten entries
 * are malloc'd too (listed in *owned, NULL-ended); free with free_args.
 */
static char **alias_args(int argc, char **argv, char ***owned)
{
    static const char alias[] = "--bootstrap-file", full[] =
        "--devbroker-bootstrap-file";
    char **out = calloc((size_t)argc + 1, sizeof(*out));
    char **own = calloc((size_t)argc + 1, sizeof(*own));
    size_t nown = 0;
    if (!out || !own)
        goto err;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        size_t al = sizeof(alias) - 1;
        out[i] = argv[i];
        if (i > 0 && strncmp(a, alias, al) == 0 &&
            (a[al] == '\0' || a[al] == '=')) {
            size_t n = sizeof(full) + strlen(a + al);
            char *r = malloc(n);
            if (!r)
                goto err;
            snprintf(r, n, "%s%s", full, a + al);
            out[i] = own[nown++] = r;
        }
    }
    *owned = own;
    return out;
err:
    for (size_t k = 0; own && k < nown; k++)
        free(own[k]);
    free(own);
    free(out);
    return NULL;
}

static void free_args(char **args, char **owned)
{
    for (size_t k = 0; owned && owned[k]; k++)
        free(owned[k]);
    free(owned);
    free(args);
}

/* librdkafka log lines, served from the main thread via the log queue. */
static void rk_log_cb(const rd_kafka_t *rk, int level, const char *fac,
                      const char *buf)
{
    enum log_level lvl = level <= 3 ? LOG_ERROR
                       : level == 4 ? LOG_WARN
                       : level <= 6 ? LOG_INFO : LOG_DEBUG;
    /* The hosting handle has no bootstrap.servers on purpose. */
    if (strcmp(fac, "CONFWARN") == 0 && strstr(buf, "bootstrap.servers"))
        lvl = LOG_DEBUG;
    log_kv(lvl, "librdkafka", "s:fac", fac, "s:text", buf, NULL);
}

/* Write s + "\n" to path via path.tmp.<pid> + rename.  0 or -1 (logged). */
static int write_file_atomic(const char *path, const char *s)
{
    size_t plen = strlen(path) + 32;
    char *tmp = malloc(plen);
    int fd = -1;
    if (!tmp)
        return -1;
    snprintf(tmp, plen, "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        goto err;
    size_t len = strlen(s), off = 0;
    while (off <= len) {
        /* the trailing newline is written as the last chunk */
        const char *p = off < len ? s + off : "\n";
        size_t n = off < len ? len - off : 1;
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            goto err;
        }
        off += (size_t)w;
    }
    if (close(fd) != 0) {
        fd = -1;
        goto err;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto err;
    free(tmp);
    return 0;
err:
    log_kv(LOG_ERROR, "cannot write bootstrap file", "s:path", path,
           "s:error", strerror(errno), NULL);
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    free(tmp);
    return -1;
}

/* Create every topic in the comma list.  Returns the count or -1. */
static int create_topics(rd_kafka_mock_cluster_t *mc, const char *list,
                         int partitions, int rf)
{
    char **names;
    size_t count;
    if (addr_split_list(list, &names, &count) != 0)
        return -1;
    int n = 0;
    for (size_t i = 0; i < count; i++) {
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, names[i], partitions,
                                                             rf);
        if (err) {
            log_kv(LOG_ERROR, "cannot create topic", "s:topic", names[i],
                   "s:error", rd_kafka_err2str(err), NULL);
            addr_list_free(names, count);
            return -1;
        }
        n++;
    }
    addr_list_free(names, count);
    return n;
}

int main(int argc, char **argv)
{
    rd_kafka_t *rk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    int rc = 1, wrote_file = 0;
    char errstr[512];
    enum log_level lvl = LOG_INFO;

    char **owned = NULL;
    char **args = alias_args(argc, argv, &owned);
    if (!args) {
        fprintf(stderr, "odin-devbroker: out of memory\n");
        return 1;
    }
    int cr = config_load(opts, NOPTS, argc, args, "odin-devbroker", summary);
    free_args(args, owned);
    if (cr != 0) {
        config_free(opts, NOPTS);
        return cr == 1 ? 0 : 2;
    }
    if (log_level_parse(opt_log_level, &lvl) != 0) {
        config_error("LOG_LEVEL: unknown level \"%s\"",
                opt_log_level);
        config_free(opts, NOPTS);
        return 2;
    }
    log_init("devbroker", lvl);

    /* Block the stop signals before librdkafka starts its threads, so they
     * inherit the mask and only the main thread's sigtimedwait sees them. */
    sigset_t stopset;
    sigemptyset(&stopset);
    sigaddset(&stopset, SIGINT);
    sigaddset(&stopset, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stopset, NULL);
    signal(SIGPIPE, SIG_IGN);

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, rk_log_cb);
    if (rd_kafka_conf_set(conf, "log.queue", "true", errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "client.id", "odin-devbroker", errstr,
                          sizeof(errstr)) ||
        (opt_debug && *opt_debug &&
         rd_kafka_conf_set(conf, "debug", opt_debug, errstr, sizeof(errstr)))) {
        log_kv(LOG_ERROR, "librdkafka config", "s:error", errstr, NULL);
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    /* The handle only hosts the mock (logging, timers); it never produces. */
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        log_kv(LOG_ERROR, "cannot create librdkafka handle", "s:error", errstr,
               NULL);
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    rd_kafka_set_log_queue(rk, NULL); /* logs -> main queue -> rd_kafka_poll */

    mc = rd_kafka_mock_cluster_new(rk, (int)opt_brokers);
    if (!mc) {
        log_kv(LOG_ERROR, "cannot create mock cluster", NULL);
        goto out;
    }
    int rf = opt_brokers < 3 ? (int)opt_brokers : 3;
    int ntopics = create_topics(mc, opt_topics, (int)opt_partitions, rf);
    if (ntopics < 0)
        goto out;

    const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
    if (opt_bootstrap_file && *opt_bootstrap_file) {
        if (write_file_atomic(opt_bootstrap_file, bootstraps) != 0)
            goto out;
        wrote_file = 1;
    }
    printf("%s\n", bootstraps);
    fflush(stdout);
    log_kv(LOG_INFO, "devbroker ready", "s:bootstrap", bootstraps,
           "i:brokers", (int)opt_brokers, "i:partitions", (int)opt_partitions,
           "i:topics", ntopics, "s:topic_list", opt_topics,
           "s:retention", "in-memory, 5 MiB or 100000 batches per partition",
           NULL);

    for (;;) {
        struct timespec ts = { 0, 200 * 1000 * 1000 };
        int sig = sigtimedwait(&stopset, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            log_kv(LOG_INFO, "stopping", "s:signal",
                   sig == SIGINT ? "SIGINT" : "SIGTERM", NULL);
            break;
        }
        rd_kafka_poll(rk, 0); /* serve queued librdkafka log lines */
    }
    rc = 0;

out:
    if (wrote_file)
        unlink(opt_bootstrap_file);
    if (mc)
        rd_kafka_mock_cluster_destroy(mc); /* must precede rd_kafka_destroy */
    if (rk) {
        rd_kafka_poll(rk, 0);
        rd_kafka_destroy(rk);
    }
    config_free(opts, NOPTS);
    return rc;
}
