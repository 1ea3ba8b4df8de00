/* router/consumer.c without a broker: the accumulator (take in order,
 * dropping revoked partitions' records, release) and partition matching. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_take_in_order),
        cmocka_unit_test(test_drop_if_keeps_order),
        cmocka_unit_test(test_msg_in),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
