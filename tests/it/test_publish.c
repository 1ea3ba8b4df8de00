/*
 * Integration test for odin-publish against the harness devbroker
 * (ODIN_KAFKA_BROKERS).  Each case uses its own topics (<run>.trades, ...)
 * and tokens so other tests' traffic does not matter, runs the real binary,
 * then reads everything back with a librdkafka consumer group and checks
 * the records: count, key from the token set, value is JSON with the type
 * of its topic, data.token == key, timestamp/publish_us.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "common/clock.h"
#include "tests/support/support.h"

#define WAIT_MS 90000

static char run_id[64];

/* ---- running odin-publish ---------------------------------------------- */

typedef struct pub_run {
    pid_t pid;
    char out[512]; /* stdout file: the JSON summary */
    char err[512]; /* stderr file: JSON log lines */
} pub_run;

/* Start odin-publish with env entries "K=V" (NULL-ended) added. */
static void pub_start(pub_run *p, const char *name, char *const env[])
{
    snprintf(p->out, sizeof p->out, "%s/publish-%s-%s.out",
             tsup_env("ODIN_TMP"), run_id, name);
    snprintf(p->err, sizeof p->err, "%s/publish-%s-%s.err",
             tsup_env("ODIN_TMP"), run_id, name);
    const char *bin = tsup_bin("odin-publish");
    p->pid = fork();
    assert_true(p->pid >= 0);
    if (p->pid == 0) {
        int o = open(p->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(p->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || e < 0)
            _exit(126);
        dup2(o, 1);
        dup2(e, 2);
        for (char *const *kv = env; *kv; kv++)
            putenv(*kv);
        execl(bin, bin, (char *)NULL);
        _exit(127);
    }
}

typedef struct waitarg {
    pid_t pid;
    int status;
    int done;
} waitarg;

static int exited(void *arg)
{
    waitarg *w = arg;
    if (!w->done && waitpid(w->pid, &w->status, WNOHANG) == w->pid)
        w->done = 1;
    return w->done;
}

/* Wait for the process to exit; returns its exit code (fails on timeout or
 * death by signal). */
static int pub_wait(pub_run *p)
{
    waitarg w = { p->pid, 0, 0 };
    if (!tsup_wait_until(exited, &w, WAIT_MS)) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
        fail_msg("odin-publish did not exit in time (log %s)", p->err);
    }
    if (!WIFEXITED(w.status))
        fail_msg("odin-publish died: status 0x%x (log %s)", w.status, p->err);
    return WEXITSTATUS(w.status);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *s = malloc(1 << 20);
    size_t n = s ? fread(s, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (s)
        s[n] = '\0';
    return s;
}

/* Parse the one-line JSON summary from stdout. */
static json_t *pub_summary(const pub_run *p)
{
    char *s = read_file(p->out);
    assert_non_null(s);
    json_error_t e;
    json_t *j = json_loads(s, JSON_DISABLE_EOF_CHECK, &e);
    if (!j)
        fail_msg("summary is not JSON (%s): %s", e.text, s);
    free(s);
    assert_true(json_is_integer(json_object_get(j, "sent")));
    assert_true(json_is_integer(json_object_get(j, "errors")));
    assert_true(json_is_number(json_object_get(j, "elapsed_s")));
    assert_true(json_is_number(json_object_get(j, "rate")));
    return j;
}

static long jint(json_t *o, const char *k)
{
    return (long)json_integer_value(json_object_get(o, k));
}

/* ---- reading the records back ----------------------------------------- */

typedef struct seen {
    long total;
    long per_topic[8];
    long per_token[8];
} seen;

#define NPART 64

static const char *topic_suffix[] = { "trades", "social", "balances" };
static const char *topic_type[] = { "TRADE_EXECUTED", "SOCIAL_POST",
                                    "BALANCE_CHANGED" };

/* Index in topic_suffix[] of a topic name by its last part, or -1. */
static int topic_index(const char *name, int ntopics)
{
    const char *dot = strrchr(name, '.');
    for (int k = 0; dot && k < ntopics; k++)
        if (strcmp(dot + 1, topic_suffix[k]) == 0)
            return k;
    return -1;
}

/* Consume all of `topics` (comma list of n topics) in a fresh group until
 * `want` records arrived and every assigned partition is at EOF; check each
 * record with the token list.  payload > 0: every value has that size. */
static void consume_check(const char *topics, int ntopics, char **tokens,
                          int ntokens, long want, size_t payload,
                          uint64_t min_us, seen *out)
{
    char err[512], group[160];
    snprintf(group, sizeof group, "it-publish-%s-%s", run_id, topics);
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    const char *kv[][2] = {
        { "bootstrap.servers", tsup_env("ODIN_KAFKA_BROKERS") },
        { "group.id", group },
        { "auto.offset.reset", "earliest" },
        { "enable.partition.eof", "true" },
        { "session.timeout.ms", "6000" },
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (rd_kafka_conf_set(c, kv[i][0], kv[i][1], err, sizeof err))
            fail_msg("conf %s: %s", kv[i][0], err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
    assert_non_null(rk);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
    char *copy = strdup(topics), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
        rd_kafka_topic_partition_list_add(l, t, RD_KAFKA_PARTITION_UA);
    free(copy);
    assert_int_equal(l->cnt, ntopics);
    assert_int_equal(rd_kafka_subscribe(rk, l), 0);
    rd_kafka_topic_partition_list_destroy(l);

    memset(out, 0, sizeof *out);
    int eof[8][NPART];
    memset(eof, 0, sizeof eof);
    uint64_t deadline = clock_mono_ms() + WAIT_MS;
    uint64_t max_us = clock_wall_us();
    for (;;) {
        if (out->total >= want) {
            rd_kafka_topic_partition_list_t *asg = NULL;
            assert_int_equal(rd_kafka_assignment(rk, &asg), 0);
            int all = asg->cnt > 0;
            for (int i = 0; i < asg->cnt && all; i++) {
                int ti = topic_index(asg->elems[i].topic, ntopics);
                all = ti >= 0 && asg->elems[i].partition < NPART &&
                      eof[ti][asg->elems[i].partition];
            }
            rd_kafka_topic_partition_list_destroy(asg);
            if (all)
                break;
        }
        if (clock_mono_ms() > deadline)
            fail_msg("timed out with %ld/%ld records", out->total, want);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        int ti = m->rkt ? topic_index(rd_kafka_topic_name(m->rkt), ntopics)
                        : -1;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (ti >= 0 && m->partition < NPART)
                eof[ti][m->partition] = 1;
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err) {
            fprintf(stderr, "consumer: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        assert_true(ti >= 0);
        eof[ti][m->partition] = 0;

        /* key is one of our tokens */
        int tok = -1;
        for (int k = 0; k < ntokens; k++)
            if (m->key_len == strlen(tokens[k]) &&
                memcmp(m->key, tokens[k], m->key_len) == 0)
                tok = k;
        if (tok < 0)
            fail_msg("unexpected key '%.*s'", (int)m->key_len,
                     (const char *)m->key);
        if (payload)
            assert_int_equal(m->len, payload);

        json_error_t je;
        json_t *v = json_loadb(m->payload, m->len, 0, &je);
        if (!v)
            fail_msg("value is not JSON (%s): %.*s", je.text, (int)m->len,
                     (const char *)m->payload);
        assert_string_equal(json_string_value(json_object_get(v, "type")),
                            topic_type[ti]);
        json_t *pu = json_object_get(v, "publish_us");
        json_t *ts = json_object_get(v, "timestamp");
        assert_true(json_is_integer(pu));
        assert_true(json_is_integer(ts));
        uint64_t us = (uint64_t)json_integer_value(pu);
        assert_true(us >= min_us && us <= max_us + 60000000ULL);
        assert_int_equal(json_integer_value(ts), (json_int_t)(us / 1000));
        json_t *data = json_object_get(v, "data");
        assert_true(json_is_object(data));
        assert_string_equal(json_string_value(json_object_get(data, "token")),
                            tokens[tok]);
        if (ti == 0) {
            assert_true(json_is_string(json_object_get(data, "price")));
            assert_true(json_is_string(json_object_get(data, "amount")));
            assert_true(json_is_string(json_object_get(data, "side")));
        }
        json_decref(v);

        out->total++;
        out->per_topic[ti]++;
        out->per_token[tok]++;
        rd_kafka_message_destroy(m);
    }
    assert_int_equal(rd_kafka_consumer_close(rk), 0);
    rd_kafka_destroy(rk);
}

/* topic list "<run>-<tag>.trades,<run>-<tag>.social,<run>-<tag>.balances" */
static void mk_topics(char *buf, size_t n, const char *tag, int count)
{
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; i < count; i++)
        off += (size_t)snprintf(buf + off, n - off, "%sit%s-%s.%s",
                                i ? "," : "", run_id, tag, topic_suffix[i]);
}

/* ---- tests -------------------------------------------------------------- */

static void test_publish_count_and_content(void **state)
{
    (void)state;
    char topics[512], toks[256], e_brokers[300], e_topics[600], e_tokens[300];
    char *tokens[3];
    char tk[3][32];
    mk_topics(topics, sizeof topics, "count", 3);
    for (int i = 0; i < 3; i++) {
        snprintf(tk[i], sizeof tk[i], "P%c%d", 'A' + i, (int)getpid());
        tokens[i] = tk[i];
    }
    snprintf(toks, sizeof toks, "%s, %s ,%s", tk[0], tk[1], tk[2]);
    snprintf(e_brokers, sizeof e_brokers, "KAFKA_BROKERS=%s",
             tsup_env("ODIN_KAFKA_BROKERS"));
    snprintf(e_topics, sizeof e_topics, "PUBLISH_TOPICS=%s", topics);
    snprintf(e_tokens, sizeof e_tokens, "PUBLISH_TOKENS=%s", toks);
    char *env[] = { e_brokers, e_topics, e_tokens, "PUBLISH_COUNT=500",
                    "PUBLISH_DISTRIBUTION=zipf", "PUBLISH_SEED=7", NULL };
    uint64_t start_us = clock_wall_us();
    pub_run p;
    pub_start(&p, "count", env);
    assert_int_equal(pub_wait(&p), 0);
    json_t *sum = pub_summary(&p);
    assert_int_equal(jint(sum, "sent"), 500);
    assert_int_equal(jint(sum, "errors"), 0);
    json_decref(sum);

    seen s;
    consume_check(topics, 3, tokens, 3, 500, 0, start_us, &s);
    assert_int_equal(s.total, 500);
    for (int i = 0; i < 3; i++) {
        assert_true(s.per_topic[i] > 0); /* topics picked per record */
        assert_true(s.per_token[i] > 0);
    }
    /* zipf: the first token is the most popular, the last the least */
    assert_true(s.per_token[0] > s.per_token[1]);
    assert_true(s.per_token[1] > s.per_token[2]);

    /* the log has the start line and is JSON lines */
    char *log = read_file(p.err);
    assert_non_null(log);
    assert_non_null(strstr(log, "\"msg\":\"publishing\""));
    free(log);
}

static void test_publish_payload_and_generated_tokens(void **state)
{
    (void)state;
    char topics[512], e_brokers[300], e_topics[600];
    mk_topics(topics, sizeof topics, "payload", 1);
    snprintf(e_brokers, sizeof e_brokers, "KAFKA_BROKERS=%s",
             tsup_env("ODIN_KAFKA_BROKERS"));
    snprintf(e_topics, sizeof e_topics, "PUBLISH_TOPICS=%s", topics);
    char *env[] = { e_brokers, e_topics, "PUBLISH_COUNT=60",
                    "PUBLISH_TOKEN_COUNT=4", "PUBLISH_PAYLOAD_BYTES=2048",
                    NULL };
    pub_run p;
    pub_start(&p, "payload", env);
    assert_int_equal(pub_wait(&p), 0);
    json_t *sum = pub_summary(&p);
    assert_int_equal(jint(sum, "sent"), 60);
    json_decref(sum);

    char *tokens[] = { "TOK0", "TOK1", "TOK2", "TOK3" };
    seen s;
    consume_check(topics, 1, tokens, 4, 60, 2048, 0, &s);
    assert_int_equal(s.total, 60);
    assert_int_equal(s.per_topic[0], 60);
}

static int has_progress(void *arg)
{
    char *log = read_file(((pub_run *)arg)->err);
    int ok = log && strstr(log, "\"msg\":\"progress\"") != NULL;
    free(log);
    return ok;
}

/* Unbounded run at a fixed rate, stopped by SIGTERM: exit 0, and every
 * record the summary counts as sent is in Kafka (nothing lost at stop). */
static void test_publish_rate_until_sigterm(void **state)
{
    (void)state;
    char topics[512], e_brokers[300], e_topics[600];
    mk_topics(topics, sizeof topics, "rate", 2);
    snprintf(e_brokers, sizeof e_brokers, "KAFKA_BROKERS=%s",
             tsup_env("ODIN_KAFKA_BROKERS"));
    snprintf(e_topics, sizeof e_topics, "PUBLISH_TOPICS=%s", topics);
    char *env[] = { e_brokers, e_topics, "PUBLISH_RATE=300",
                    "PUBLISH_TOKENS=BTC,ETH", NULL };
    pub_run p;
    pub_start(&p, "rate", env);
    /* running: at least one progress line (one per second) */
    assert_true(tsup_wait_until(has_progress, &p, WAIT_MS));
    int st = tsup_stop(p.pid, SIGTERM, WAIT_MS);
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    json_t *sum = pub_summary(&p);
    long sent = jint(sum, "sent");
    assert_true(sent > 0);
    assert_int_equal(jint(sum, "errors"), 0);
    assert_true(json_is_true(json_object_get(sum, "interrupted")));
    json_decref(sum);

    char *tokens[] = { "BTC", "ETH" };
    seen s;
    consume_check(topics, 2, tokens, 2, sent, 0, 0, &s);
    assert_int_equal(s.total, sent);
}

static void test_publish_bad_settings(void **state)
{
    (void)state;
    char e_brokers[300];
    snprintf(e_brokers, sizeof e_brokers, "KAFKA_BROKERS=%s",
             tsup_env("ODIN_KAFKA_BROKERS"));
    static char no_brokers[] = "KAFKA_BROKERS=";
    char *cases[][4] = {
        { no_brokers, "PUBLISH_COUNT=1", NULL, NULL },
        { e_brokers, "PUBLISH_TOPICS=odin.nosuchkind", "PUBLISH_COUNT=1", NULL },
        { e_brokers, "PUBLISH_TOKENS=BT C", "PUBLISH_COUNT=1", NULL },
        { e_brokers, "PUBLISH_DISTRIBUTION=pareto", "PUBLISH_COUNT=1", NULL },
        { e_brokers, "PUBLISH_RATE=-5", "PUBLISH_COUNT=1", NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pub_run p;
        char name[16];
        snprintf(name, sizeof name, "bad%zu", i);
        pub_start(&p, name, cases[i]);
        assert_int_equal(pub_wait(&p), 2);
        char *log = read_file(p.err);
        assert_non_null(log);
        assert_non_null(strstr(log, "error"));
        free(log);
    }
}

int main(void)
{
    snprintf(run_id, sizeof run_id, "%d-%" PRIu64, (int)getpid(),
             (uint64_t)(clock_wall_us() % 1000000000ULL));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_bad_settings),
        cmocka_unit_test(test_publish_count_and_content),
        cmocka_unit_test(test_publish_payload_and_generated_tokens),
        cmocka_unit_test(test_publish_rate_until_sigterm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
