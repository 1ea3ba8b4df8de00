/*
 * Integration test for odin-devbroker (the harness's instance at
 * ODIN_KAFKA_BROKERS): a real librdkafka producer and consumer group.
 *
 *  - group_consume_and_resume: N keyed records to odin.trades arrive intact
 *    in a consumer group (earliest); after commit + close, a second member
 *    of the same group sees the committed offsets and resumes after them
 *    (only a second batch, never the first).
 *  - earliest_after_truncation: more than the mock's 5 MiB per partition
 *    is written; the low watermark moves, a group whose committed offset fell
 *    off the log resets to the new earliest, and a new group at "earliest"
 *    starts there and reads to the end.
 *
 * Records are tagged with a per-run id so traffic left on odin.trades by
 * other tests does not matter.  Consumers use session.timeout.ms=6000: after
 * a member leaves, the mock holds the group in JOINING for
 * session.timeout.ms - 1 s before a new member is admitted.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "common/clock.h"
#include "tests/support/support.h"

#define TOPIC "odin.trades"
#define WAIT_MS 90000

static char run_id[64];

/* ---- producer ----------------------------------------------------------- */

typedef struct dr_state {
    long delivered;
    long failed;
} dr_state;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    dr_state *st = opaque;
    if (m->err) {
        st->failed++;
        fprintf(stderr, "delivery failed: %s\n", rd_kafka_err2str(m->err));
    } else {
        st->delivered++;
    }
}

static rd_kafka_t *producer_new(dr_state *st)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(c, "bootstrap.servers",
                                       tsup_env("ODIN_KAFKA_BROKERS"), err,
                                       sizeof err), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(c, "linger.ms", "5", err, sizeof err),
                     RD_KAFKA_CONF_OK);
    rd_kafka_conf_set_dr_msg_cb(c, dr_cb);
    rd_kafka_conf_set_opaque(c, st);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
    if (!rk)
        fail_msg("producer: %s", err);
    return rk;
}

/* Produce one record (retrying on a full queue), key/value copied. */
static void produce(rd_kafka_t *rk, const char *topic, int32_t partition,
                    const char *key, const void *val, size_t vlen)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE((void *)val, vlen),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(rk, 50);
            continue;
        }
        if (e)
            fail_msg("produce: %s", rd_kafka_err2str(e));
        break;
    }
    rd_kafka_poll(rk, 0);
}

static void producer_finish(rd_kafka_t *rk, dr_state *st, long expect)
{
    assert_int_equal(rd_kafka_flush(rk, 60000), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(st->failed, 0);
    assert_int_equal(st->delivered, expect);
}

/* ---- consumer ----------------------------------------------------------- */

static rd_kafka_t *consumer_new(const char *group)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    const char *kv[][2] = {
        { "bootstrap.servers", tsup_env("ODIN_KAFKA_BROKERS") },
        { "group.id", group },
        { "auto.offset.reset", "earliest" },
        { "enable.auto.commit", "false" },
        { "enable.partition.eof", "true" },
        { "session.timeout.ms", "6000" },
        { "heartbeat.interval.ms", "500" },
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (rd_kafka_conf_set(c, kv[i][0], kv[i][1], err, sizeof err))
            fail_msg("consumer conf %s: %s", kv[i][0], err);
    const char *dbg = getenv("ODIN_TEST_RDKAFKA_DEBUG");
    if (dbg && *dbg && rd_kafka_conf_set(c, "debug", dbg, err, sizeof err))
        fail_msg("consumer conf debug: %s", err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
    if (!rk)
        fail_msg("consumer: %s", err);
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

static void subscribe1(rd_kafka_t *rk, const char *topic)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(rk, l), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(l);
}

static void consumer_free(rd_kafka_t *rk)
{
    assert_int_equal(rd_kafka_consumer_close(rk), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
}

/* ---- records of this run ------------------------------------------------ */

static void rec_key(char *k, size_t n, int i)
{
    snprintf(k, n, "K%d-%s", i % 37, run_id);
}

static int rec_val(char *v, size_t n, const char *batch, int i)
{
    return snprintf(v, n, "{\"run\":\"%s\",\"batch\":\"%s\",\"i\":%d,"
                    "\"text\":\"tr\\u00e9s \\\"quoted\\\" %d\"}",
                    run_id, batch, i, i * 7);
}

/* Parse i from a value of this run's batch; -1 if it's not one of ours. */
static int rec_index(const rd_kafka_message_t *m, const char *batch)
{
    char prefix[160];
    int pl = snprintf(prefix, sizeof prefix,
                      "{\"run\":\"%s\",\"batch\":\"%s\",\"i\":", run_id, batch);
    if (!m->payload || m->len <= (size_t)pl ||
        memcmp(m->payload, prefix, (size_t)pl) != 0)
        return -1;
    return atoi((const char *)m->payload + pl);
}

/* Check a received record is exactly what was produced for index i. */
static void check_record(const rd_kafka_message_t *m, const char *batch, int i)
{
    char k[96], v[256];
    rec_key(k, sizeof k, i);
    int vl = rec_val(v, sizeof v, batch, i);
    assert_int_equal(m->key_len, strlen(k));
    assert_memory_equal(m->key, k, m->key_len);
    assert_int_equal(m->len, (size_t)vl);
    assert_memory_equal(m->payload, v, m->len);
}

#define NPART_MAX 64

/* Consume until `want` records of `batch` (indices 0..want-1) were seen
 * exactly once and, if need_eof, every assigned partition is at EOF.
 * Counts records of `forbidden` batch in *forbidden_seen. */
static void consume_batch(rd_kafka_t *rk, const char *batch, int want,
                          const char *forbidden, int *forbidden_seen,
                          int need_eof)
{
    char *seen = calloc((size_t)want, 1);
    int got = 0;
    int eof[NPART_MAX] = { 0 };
    assert_non_null(seen);
    uint64_t deadline = clock_mono_ms() + WAIT_MS;
    for (;;) {
        if (got == want) {
            if (!need_eof)
                break;
            rd_kafka_topic_partition_list_t *asg = NULL;
            assert_int_equal(rd_kafka_assignment(rk, &asg), 0);
            int all = asg->cnt > 0;
            for (int i = 0; i < asg->cnt; i++)
                if (asg->elems[i].partition >= NPART_MAX ||
                    !eof[asg->elems[i].partition])
                    all = 0;
            rd_kafka_topic_partition_list_destroy(asg);
            if (all)
                break;
        }
        if (clock_mono_ms() > deadline)
            fail_msg("batch %s: timed out with %d/%d records", batch, got,
                     want);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        int p = m->partition;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (p >= 0 && p < NPART_MAX)
                eof[p] = 1;
        } else if (m->err) {
            fprintf(stderr, "consumer error: %s\n", rd_kafka_message_errstr(m));
        } else {
            if (p >= 0 && p < NPART_MAX)
                eof[p] = 0;
            int i = rec_index(m, batch);
            if (i >= 0) {
                assert_true(i < want);
                assert_false(seen[i]); /* no duplicates */
                check_record(m, batch, i);
                seen[i] = 1;
                got++;
            } else if (forbidden && rec_index(m, forbidden) >= 0) {
                (*forbidden_seen)++;
            }
        }
        rd_kafka_message_destroy(m);
    }
    free(seen);
}

/* ---- tests -------------------------------------------------------------- */

static void test_group_consume_and_resume(void **state)
{
    (void)state;
    const int N = 1000, M = 100;
    char group[128], k[96], v[256];
    snprintf(group, sizeof group, "it-devbroker-%s", run_id);

    dr_state st = { 0, 0 };
    rd_kafka_t *prod = producer_new(&st);
    for (int i = 0; i < N; i++) {
        rec_key(k, sizeof k, i);
        int vl = rec_val(v, sizeof v, "b1", i);
        produce(prod, TOPIC, RD_KAFKA_PARTITION_UA, k, v, (size_t)vl);
    }
    producer_finish(prod, &st, N);

    /* First member: all N with keys and values intact, then commit. */
    rd_kafka_t *c1 = consumer_new(group);
    subscribe1(c1, TOPIC);
    consume_batch(c1, "b1", N, NULL, NULL, 1);
    assert_int_equal(rd_kafka_commit(c1, NULL, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_t *asg = NULL;
    assert_int_equal(rd_kafka_assignment(c1, &asg), 0);
    assert_true(asg->cnt > 0);
    assert_int_equal(rd_kafka_position(c1, asg), 0);
    /* Plain copy: lists from rd_kafka_assignment() reference c1's
     * partitions, and rd_kafka_destroy(c1) waits for those references. */
    rd_kafka_topic_partition_list_t *pos =
        rd_kafka_topic_partition_list_new(asg->cnt);
    for (int i = 0; i < asg->cnt; i++)
        rd_kafka_topic_partition_list_add(pos, asg->elems[i].topic,
                                          asg->elems[i].partition)->offset =
            asg->elems[i].offset;
    rd_kafka_topic_partition_list_destroy(asg);
    consumer_free(c1);

    /* The committed offsets are what the first member consumed up to. */
    rd_kafka_t *c2 = consumer_new(group);
    rd_kafka_topic_partition_list_t *com =
        rd_kafka_topic_partition_list_new(pos->cnt);
    for (int i = 0; i < pos->cnt; i++)
        rd_kafka_topic_partition_list_add(com, pos->elems[i].topic,
                                          pos->elems[i].partition);
    assert_int_equal(rd_kafka_committed(c2, com, 30000), 0);
    for (int i = 0; i < pos->cnt; i++) {
        rd_kafka_topic_partition_t *c = rd_kafka_topic_partition_list_find(
            com, pos->elems[i].topic, pos->elems[i].partition);
        assert_non_null(c);
        assert_int_equal(c->err, 0);
        if (pos->elems[i].offset > 0) /* partitions that had records */
            assert_int_equal(c->offset, pos->elems[i].offset);
    }
    rd_kafka_topic_partition_list_destroy(com);
    rd_kafka_topic_partition_list_destroy(pos);

    /* Second batch, then the second member: only batch 2, nothing of b1. */
    st.delivered = st.failed = 0;
    for (int i = 0; i < M; i++) {
        rec_key(k, sizeof k, i);
        int vl = rec_val(v, sizeof v, "b2", i);
        produce(prod, TOPIC, RD_KAFKA_PARTITION_UA, k, v, (size_t)vl);
    }
    producer_finish(prod, &st, M);
    rd_kafka_destroy(prod);

    int old_seen = 0;
    subscribe1(c2, TOPIC);
    consume_batch(c2, "b2", M, "b1", &old_seen, 1);
    assert_int_equal(old_seen, 0);
    consumer_free(c2);
}

#define BIG_VAL 20000
#define SMALL_N 10
#define BIG_N 360 /* 360 * 20 KB = 7.2 MB > the mock's 5 MiB per partition */

static void big_val(char *buf, const char *batch, int i)
{
    int n = snprintf(buf, BIG_VAL, "{\"run\":\"%s\",\"batch\":\"%s\",\"i\":%d,"
                     "\"pad\":\"", run_id, batch, i);
    memset(buf + n, 'a' + (i % 26), BIG_VAL - (size_t)n - 2);
    memcpy(buf + BIG_VAL - 2, "\"}", 2);
}

/* Read partition 0 of topic from a group; returns (first offset, count)
 * until offset hi-1 and checks each record's index matches its offset. */
static void read_to_end(const char *group, const char *topic, int64_t hi,
                        int64_t *first, long *count)
{
    rd_kafka_t *c = consumer_new(group);
    subscribe1(c, topic);
    char *want = malloc(BIG_VAL);
    assert_non_null(want);
    *first = -1;
    *count = 0;
    uint64_t deadline = clock_mono_ms() + WAIT_MS;
    int64_t last = -1;
    while (last < hi - 1) {
        if (clock_mono_ms() > deadline)
            fail_msg("group %s: timed out at offset %" PRId64 " of %" PRId64,
                     group, last, hi);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
        if (!m)
            continue;
        if (!m->err && m->partition == 0) {
            if (*first < 0)
                *first = m->offset;
            assert_true(m->offset > last);
            last = m->offset;
            (*count)++;
            /* offsets SMALL_N.. carry the big batch, index = offset - SMALL_N */
            assert_true(m->offset >= SMALL_N);
            big_val(want, "big", (int)(m->offset - SMALL_N));
            assert_int_equal(m->len, BIG_VAL);
            assert_memory_equal(m->payload, want, BIG_VAL);
        } else if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            fprintf(stderr, "consumer %s: %s\n", group,
                    rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
    }
    free(want);
    consumer_free(c);
}

static void test_earliest_after_truncation(void **state)
{
    (void)state;
    char topic[128], group[128], k[96], v[256];
    snprintf(topic, sizeof topic, "it-devbroker-ret-%s", run_id);
    snprintf(group, sizeof group, "it-devbroker-ret-%s", run_id);

    dr_state st = { 0, 0 };
    rd_kafka_t *prod = producer_new(&st);
    for (int i = 0; i < SMALL_N; i++) {
        rec_key(k, sizeof k, i);
        int vl = rec_val(v, sizeof v, "small", i);
        produce(prod, topic, 0, k, v, (size_t)vl);
    }
    producer_finish(prod, &st, SMALL_N);

    /* The group reads and commits the small batch (offset SMALL_N). */
    rd_kafka_t *c1 = consumer_new(group);
    subscribe1(c1, topic);
    consume_batch(c1, "small", SMALL_N, NULL, NULL, 0);
    assert_int_equal(rd_kafka_commit(c1, NULL, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
    consumer_free(c1);

    /* A lot of traffic: more than the mock keeps. */
    char *big = malloc(BIG_VAL);
    assert_non_null(big);
    st.delivered = st.failed = 0;
    for (int i = 0; i < BIG_N; i++) {
        big_val(big, "big", i);
        produce(prod, topic, 0, "big", big, BIG_VAL);
    }
    producer_finish(prod, &st, BIG_N);
    free(big);

    int64_t lo = -1, hi = -1;
    assert_int_equal(rd_kafka_query_watermark_offsets(prod, topic, 0, &lo, &hi,
                                                      10000), 0);
    rd_kafka_destroy(prod);
    fprintf(stderr, "watermarks after %d x %d bytes: lo=%" PRId64 " hi=%" PRId64
            " (retained %" PRId64 " records, ~%" PRId64 " bytes)\n",
            BIG_N, BIG_VAL, lo, hi, hi - lo, (hi - lo) * BIG_VAL);
    assert_int_equal(hi, SMALL_N + BIG_N);
    assert_true(lo > SMALL_N);                     /* committed offset is gone */
    assert_true((hi - lo) * BIG_VAL <= 6 * 1024 * 1024); /* a few MB kept */

    /* The group's committed offset is out of range: reset to earliest. */
    int64_t first = -1;
    long count = 0;
    read_to_end(group, topic, hi, &first, &count);
    assert_int_equal(first, lo);
    assert_int_equal(count, hi - lo);

    /* A new group at "earliest" starts at the first retained offset. */
    char group2[160];
    snprintf(group2, sizeof group2, "%s-new", group);
    read_to_end(group2, topic, hi, &first, &count);
    assert_int_equal(first, lo);
    assert_int_equal(count, hi - lo);
}

int main(void)
{
    snprintf(run_id, sizeof run_id, "%d-%" PRIu64, (int)getpid(),
             clock_wall_us());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_consume_and_resume),
        cmocka_unit_test(test_earliest_after_truncation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
