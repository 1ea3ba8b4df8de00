/*
 * At-least-once across a router restart: router 1 consumes part of a stream
 * and is stopped with SIGTERM (graceful: drain, store, commit, exit 0);
 * more records are produced while no router runs; router 2 in the same
 * group, configured to start at "latest" if it had no committed offset,
 * resumes from the stored offsets.  Every produced offset must reach the
 * shard (duplicates are allowed, gaps are not).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tests/support/rtsup.h"
#include "tests/support/support.h"

#define T_WAIT 60000
#define NPART 4

static void produce_batch(rtsup_producer *p, const char *topic, int n, int base)
{
    for (int i = 0; i < n; i++) {
        char v[96];
        int l = snprintf(v, sizeof v, "{\"type\":\"TRADE_EXECUTED\",\"n\":%d}", base + i);
        rtsup_produce(p, topic, (base + i) % NPART, "RESUME", 6, v, (size_t)l);
    }
    assert_int_equal(rtsup_producer_flush(p), 0);
}

typedef struct all_arg {
    rtsup_producer *p;
    rtsup_shard *s;
    size_t missing;
} all_arg;

/* 1 when every delivered (partition, offset) was received by the shard. */
static int all_received(void *arg)
{
    all_arg *a = arg;
    const int32_t *parts;
    const int64_t *offs;
    size_t n = rtsup_producer_delivered(a->p, &parts, &offs);
    /* index the shard's records: partition -> bitmap of offsets */
    size_t cnt = rtsup_shard_count(a->s);
    int64_t maxoff = 0;
    for (size_t i = 0; i < n; i++)
        if (offs[i] > maxoff)
            maxoff = offs[i];
    unsigned char *seen = calloc((size_t)NPART * (size_t)(maxoff + 1), 1);
    rtsup_rec r;
    for (size_t i = 0; i < cnt && rtsup_shard_get(a->s, i, &r); i++) {
        if (r.partition >= 0 && r.partition < NPART && r.offset >= 0 && r.offset <= maxoff)
            seen[(size_t)r.partition * (size_t)(maxoff + 1) + (size_t)r.offset] = 1;
        rtsup_rec_free(&r);
    }
    size_t missing = 0;
    for (size_t i = 0; i < n; i++)
        missing += !seen[(size_t)parts[i] * (size_t)(maxoff + 1) + (size_t)offs[i]];
    free(seen);
    a->missing = missing;
    return missing == 0;
}

static void produce_big(rtsup_producer *p, const char *topic, int n, int base)
{
    char v[1100];
    for (int i = 0; i < n; i++) {
        int l = snprintf(v, sizeof v, "{\"type\":\"TRADE_EXECUTED\",\"n\":%d,\"pad\":\"", base + i);
        while (l < 1000)
            v[l++] = 'x';
        v[l++] = '"';
        v[l++] = '}';
        rtsup_produce(p, topic, (base + i) % NPART, "RESUME", 6, v, (size_t)l);
    }
    assert_int_equal(rtsup_producer_flush(p), 0);
}

static void test_restart_resumes_without_loss(void **state)
{
    redisContext *rc = tsup_redis_connect(tsup_env("ODIN_REDIS_URL"));
    redisReply *fl = redisCommand(rc, "FLUSHALL");
    freeReplyObject(fl);
    rtsup_shard *s = rtsup_shard_start(rtsup_unique("resume"));
    rtsup_shard_register(s, rc, 0);
    rtsup_route(rc, "add", s->id, "RESUME");

    rtsup_producer *p = rtsup_producer_new(tsup_env("ODIN_KAFKA_BROKERS"));
    char topic[128], topics[160], group[128];
    snprintf(topic, sizeof topic, "%s", rtsup_unique("rt-resume"));
    snprintf(topics, sizeof topics, "KAFKA_TOPICS=%s=trade", topic);
    snprintf(group, sizeof group, "KAFKA_GROUP=%s", rtsup_unique("g"));
    produce_batch(p, topic, NPART, 0);   /* creates the topic, one record per partition */

    rtsup_router r1;
    const char *env1[] = { topics, group, "KAFKA_OFFSET_RESET=earliest",
                           "KAFKA_COMMIT_INTERVAL_MS=200", "KAFKA_BATCH_SIZE=50",
                           "SHUTDOWN_TIMEOUT_MS=1000",
                           /* phase 2 is about the shutdown timeout: the
                            * stall timeout (5 s) must not drop first */
                           "SHARD_STALL_TIMEOUT_MS=60000", NULL };
    assert_int_equal(rtsup_router_start(&r1, tsup_env("ODIN_REDIS_URL"), env1), 0);
    assert_true(rtsup_wait_metric_eq(r1.http_port, "router_shards_connected", 1, T_WAIT));
    assert_true(rtsup_wait_metric(r1.http_port, "router_assigned_partitions", NPART, T_WAIT));

    /* phase 1: normal flow */
    produce_batch(p, topic, 1000, NPART);
    all_arg a = { p, s, 0 };
    assert_true(tsup_wait_until(all_received, &a, T_WAIT));

    /* phase 2: the shard stops reading, so ~2 MB pile up in the socket and
     * the router's queue; SIGTERM then gives up after SHUTDOWN_TIMEOUT_MS
     * without storing what was not written */
    s->paused = 1;
    produce_big(p, topic, 2000, NPART + 1000);
    assert_true(rtsup_wait_metric(r1.http_port, "router_records_total", NPART + 3000, T_WAIT));
    assert_true(rtsup_wait_metric(r1.http_port, "router_shard_queue_bytes", 1, T_WAIT));
    assert_true(rtsup_metric(r1.http_port, "router_drops_total{reason=\"stalled\"}") <= 0);
    int st = rtsup_router_stop(&r1);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    s->paused = 0;
    size_t got1 = rtsup_shard_count(s);

    /* phase 3: records produced while no router runs */
    produce_batch(p, topic, 1000, NPART + 3000);

    /* router 2, same group, would start at "latest" without stored offsets */
    rtsup_router r2;
    const char *env2[] = { topics, group, "KAFKA_OFFSET_RESET=latest", NULL };
    assert_int_equal(rtsup_router_start(&r2, tsup_env("ODIN_REDIS_URL"), env2), 0);
    int ok = tsup_wait_until(all_received, &a, T_WAIT);
    if (!ok)
        fprintf(stderr, "missing %zu of the produced offsets (router 1 delivered %zu)\n",
                a.missing, got1);
    assert_true(ok);
    /* records router 1 could not write were redelivered, not lost */
    assert_true(rtsup_shard_count(s) > (size_t)(NPART + 4000) - 1);
    st = rtsup_router_stop(&r2);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);

    rtsup_producer_free(p);
    rtsup_shard_deregister(s, rc);
    rtsup_shard_free(s);
    redisFree(rc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restart_resumes_without_loss),
    };
    return cmocka_run_group_tests_name("router_resume", tests, NULL, NULL);
}
