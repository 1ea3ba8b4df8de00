/* router/topicmap.c: KAFKA_TOPICS / BROADCAST_TOPICS parsing and lookup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "common/topics.h"
#include "router/topicmap.h"

static const router_topic *find(const router_topics *t, const char *name)
{
    return router_topics_find(t, name, strlen(name));
}

static void test_defaults(void **state)
{
    router_topics t;
    char err[256];
    assert_int_equal(router_topics_parse(&t, TOPICS_DEFAULT_LIST, "", err, sizeof err), 0);
    assert_int_equal(t.nsubscribe, 8);
    assert_string_equal(t.subscribe[0], "odin.trades");
    const router_topic *x = find(&t, "odin.trades");
    assert_non_null(x);
    assert_string_equal(x->category, "trade");
    assert_false(x->broadcast);
    assert_string_equal(find(&t, "odin.balances")->category, "balances");
    assert_null(find(&t, "odin.other"));
    assert_null(router_topics_find(&t, "odin.trade", 10));   /* prefix is not a match */
    router_topics_free(&t);
    router_topics_free(NULL);
}

static void test_custom_and_broadcast(void **state)
{
    router_topics t;
    char err[256];
    assert_int_equal(router_topics_parse(&t, " odin.trades , prices.v2=trade,,sys.x=system ",
                                         "odin.trades,announce=announcement", err,
                                         sizeof err), 0);
    assert_int_equal(t.nsubscribe, 4);   /* trades, prices.v2, sys.x, announce */
    assert_string_equal(find(&t, "prices.v2")->category, "trade");
    assert_false(find(&t, "prices.v2")->broadcast);
    assert_true(find(&t, "odin.trades")->broadcast);
    assert_true(find(&t, "announce")->broadcast);
    assert_string_equal(find(&t, "announce")->category, "announcement");
    assert_string_equal(t.subscribe[3], "announce");
    /* default topics not subscribed are still mapped (regex matches) */
    const router_topic *m = find(&t, "odin.metadata");
    assert_non_null(m);
    assert_false(m->subscribed);
    router_topics_free(&t);
}

static void test_regex(void **state)
{
    router_topics t;
    char err[256];
    assert_int_equal(router_topics_parse(&t, "^odin\\..*,x.y=cat", "", err, sizeof err), 0);
    assert_int_equal(t.nsubscribe, 2);
    assert_string_equal(t.subscribe[0], "^odin\\..*");
    assert_string_equal(find(&t, "odin.social")->category, "social");
    assert_null(find(&t, "odin.unknown"));
    router_topics_free(&t);
}

static void test_errors(void **state)
{
    router_topics t;
    char err[256];
    assert_int_equal(router_topics_parse(&t, "custom.topic", "", err, sizeof err), -1);
    assert_non_null(strstr(err, "custom.topic=<category>"));
    router_topics_free(&t);
    assert_int_equal(router_topics_parse(&t, "a=BadCat", "", err, sizeof err), -1);
    assert_non_null(strstr(err, "bad category"));
    router_topics_free(&t);
    assert_int_equal(router_topics_parse(&t, "a=x,a=y", "", err, sizeof err), -1);
    router_topics_free(&t);
    assert_int_equal(router_topics_parse(&t, "", "", err, sizeof err), -1);
    router_topics_free(&t);
    assert_int_equal(router_topics_parse(&t, "bad topic!=x", "", err, sizeof err), -1);
    router_topics_free(&t);
    assert_int_equal(router_topics_parse(&t, "odin.trades", "^x", err, sizeof err), -1);
    router_topics_free(&t);
    assert_int_equal(router_topics_parse(&t, "odin.trades", "nope", err, sizeof err), -1);
    router_topics_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_custom_and_broadcast),
        cmocka_unit_test(test_regex),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("router_topicmap", tests, NULL, NULL);
}
