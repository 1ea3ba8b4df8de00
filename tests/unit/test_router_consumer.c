/* router/consumer.c without a broker: the accumulator (take in order,
 * dropping revoked partitions' records, release), partition matching, and
 * a batch-consume step during which the rebalance callback shrinks the
 * accumulator (issue 19, item 7: run it under ASan too). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "router/consumer.h"

static int destroyed;
static rd_kafka_message_t msgs[8];

static void fake_destroy(rd_kafka_message_t *m)
{
    destroyed++;
    m->offset = -1;
}

static int odd_partition(const rd_kafka_message_t *m, void *arg)
{
    return m->partition % 2 == 1;
}

static void fill(consumer_acc *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].partition = (int32_t)i;
        msgs[i].offset = 100 + (int64_t)i;
        a->msgs[a->n++] = &msgs[i];
    }
}

static void test_free_null(void **state)
{
    consumer_free(NULL);
    consumer_acc a;
    memset(&a, 0, sizeof a);
    consumer_acc_free(&a);
    assert_int_equal(consumer_acc_init(&a, 0), -1);
}

static void test_take_in_order(void **state)
{
    consumer_acc a;
    assert_int_equal(consumer_acc_init(&a, 8), 0);
    a.destroy = fake_destroy;
    destroyed = 0;
    assert_int_equal(consumer_acc_room(&a), 8);
    fill(&a, 5);
    assert_int_equal(consumer_acc_room(&a), 3);
    rd_kafka_message_t *out[8];
    assert_int_equal(consumer_acc_take(&a, out, 2), 2);
    assert_ptr_equal(out[0], &msgs[0]);
    assert_ptr_equal(out[1], &msgs[1]);
    assert_int_equal(a.n, 3);
    assert_int_equal(consumer_acc_take(&a, out, 8), 3);
    assert_ptr_equal(out[0], &msgs[2]);
    assert_ptr_equal(out[2], &msgs[4]);
    assert_int_equal(consumer_acc_take(&a, out, 8), 0);
    assert_int_equal(destroyed, 0);     /* taken messages belong to the caller */
    consumer_acc_free(&a);
    assert_int_equal(destroyed, 0);
}

static void test_drop_if_keeps_order(void **state)
{
    consumer_acc a;
    assert_int_equal(consumer_acc_init(&a, 8), 0);
    a.destroy = fake_destroy;
    destroyed = 0;
    fill(&a, 7);
    assert_int_equal(consumer_acc_drop_if(&a, odd_partition, NULL), 3);
    assert_int_equal(destroyed, 3);
    assert_int_equal(a.n, 4);
    for (size_t i = 0; i < a.n; i++)
        assert_int_equal(a.msgs[i]->partition, (int32_t)(2 * i));
    assert_int_equal(msgs[1].offset, -1);            /* released */
    consumer_acc_clear(&a);
    assert_int_equal(destroyed, 7);
    assert_int_equal(a.n, 0);
    fill(&a, 2);
    consumer_acc_free(&a);                          /* releases what it holds */
    assert_int_equal(destroyed, 9);
}

static void test_msg_in(void **state)
{
    /* a producer handle without brokers only to get topic handles */
    char err[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), err, sizeof err);
    assert_non_null(rk);
    rd_kafka_topic_t *ta = rd_kafka_topic_new(rk, "odin.trades", NULL);
    rd_kafka_topic_t *tb = rd_kafka_topic_new(rk, "odin.social", NULL);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(parts, "odin.trades", 3);
    rd_kafka_topic_partition_list_add(parts, "odin.social", 0);
    rd_kafka_message_t m = { 0 };
    m.rkt = ta;
    m.partition = 3;
    assert_true(consumer_msg_in(&m, parts));
    m.partition = 0;
    assert_false(consumer_msg_in(&m, parts));
    m.rkt = tb;
    assert_true(consumer_msg_in(&m, parts));
    m.partition = 3;
    assert_false(consumer_msg_in(&m, parts));
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_topic_destroy(ta);
    rd_kafka_topic_destroy(tb);
    rd_kafka_destroy(rk);
}

/* ---- a revoke from inside the batch call (consumer_acc_fill) ------------ */

#define HEAP_MSGS 16

static struct {
    rd_kafka_message_t *m[HEAP_MSGS];
    int destroyed[HEAP_MSGS];
    int n;
    rd_kafka_topic_t *topic;
    consumer_acc *acc;
    rd_kafka_topic_partition_list_t *revoke;
    int calls;
} heap;

/* A heap message (ASan sees any use after its release) of partition p. */
static rd_kafka_message_t *heap_msg(int32_t p)
{
    rd_kafka_message_t *m = calloc(1, sizeof *m);
    assert_non_null(m);
    m->rkt = heap.topic;
    m->partition = p;
    m->offset = heap.n;
    heap.m[heap.n++] = m;
    return m;
}

static int heap_index(const rd_kafka_message_t *m)
{
    for (int i = 0; i < heap.n; i++)
        if (heap.m[i] == m)
            return i;
    return -1;
}

static void heap_destroy(rd_kafka_message_t *m)
{
    int i = heap_index(m);
    assert_true(i >= 0);
    heap.destroyed[i]++;
    free(m);
}

/* As rd_kafka_consume_batch_queue with the rebalance callback served in
 * the middle: two records, the revoke of partition 1 (the callback
 * releases the accumulator's records of it: the accumulator shrinks while
 * this call runs), two more records (partition 1 reassigned in between). */
static ssize_t batch_with_revoke(void *arg, rd_kafka_message_t **out, size_t max)
{
    if (heap.calls++ > 0)
        return 0;                       /* queue empty */
    assert_true(max >= 4);
    out[0] = heap_msg(1);               /* heap 4: stale after the revoke */
    out[1] = heap_msg(0);               /* heap 5 */
    size_t before = heap.acc->n;
    assert_int_equal(consumer_acc_revoke(heap.acc, heap.revoke), 2);
    assert_int_equal(heap.acc->n, before - 2);
    out[2] = heap_msg(1);               /* heap 6: after the reassignment */
    out[3] = heap_msg(0);               /* heap 7 */
    return 4;
}

static void test_revoke_during_batch(void **state)
{
    char err[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), err, sizeof err);
    assert_non_null(rk);
    memset(&heap, 0, sizeof heap);
    heap.topic = rd_kafka_topic_new(rk, "odin.trades", NULL);
    heap.revoke = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(heap.revoke, "odin.trades", 1);
    consumer_acc a;
    assert_int_equal(consumer_acc_init(&a, 8), 0);
    a.destroy = heap_destroy;
    heap.acc = &a;
    for (int i = 0; i < 4; i++)         /* heap 0..3: partitions 0 1 0 1 */
        a.msgs[a.n++] = heap_msg(i % 2);

    assert_int_equal(consumer_acc_fill(&a, 8, batch_with_revoke, NULL, NULL, NULL), 3);
    /* kept, in consume order: the accumulated partition-0 records, then the
     * batch's records except the one received before the revoke */
    int want[] = { 0, 2, 5, 6, 7 };
    assert_int_equal(a.n, 5);
    for (size_t i = 0; i < a.n; i++)
        assert_int_equal(heap_index(a.msgs[i]), want[i]);
    /* released exactly once: the revoked partition's accumulated records
     * and the batch's stale one; nothing else */
    for (int i = 0; i < heap.n; i++)
        assert_int_equal(heap.destroyed[i], i == 1 || i == 3 || i == 4);
    consumer_acc_free(&a);
    for (int i = 0; i < heap.n; i++)
        assert_int_equal(heap.destroyed[i], 1);
    rd_kafka_topic_partition_list_destroy(heap.revoke);
    rd_kafka_topic_destroy(heap.topic);
    rd_kafka_destroy(rk);
}

static ssize_t batch_err(void *arg, rd_kafka_message_t **out, size_t max)
{
    if (heap.calls++ > 0)
        return -1;
    out[0] = heap_msg(0);
    out[1] = heap_msg(0);
    out[1]->err = RD_KAFKA_RESP_ERR__PARTITION_EOF;
    return 2;
}

static int errors_seen;
static void count_error(const rd_kafka_message_t *m, void *arg)
{
    errors_seen++;
}

/* Error records are released (once) and reported, never accumulated; a
 * failing batch call after records were accumulated is not a failure. */
static void test_fill_errors(void **state)
{
    memset(&heap, 0, sizeof heap);
    consumer_acc a;
    assert_int_equal(consumer_acc_init(&a, 4), 0);
    a.destroy = heap_destroy;
    errors_seen = 0;
    assert_int_equal(consumer_acc_fill(&a, 2, batch_err, NULL, count_error, NULL), 1);
    assert_int_equal(a.n, 1);
    assert_int_equal(errors_seen, 1);
    assert_int_equal(heap.destroyed[1], 1);
    heap.calls = 1;
    assert_int_equal(consumer_acc_fill(&a, 4, batch_err, NULL, count_error, NULL), -1);
    assert_int_equal(a.n, 1);
    consumer_acc_free(&a);
    assert_int_equal(heap.destroyed[0], 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_take_in_order),
        cmocka_unit_test(test_drop_if_keeps_order),
        cmocka_unit_test(test_msg_in),
        cmocka_unit_test(test_revoke_during_batch),
        cmocka_unit_test(test_fill_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
