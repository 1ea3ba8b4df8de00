/* router/discovery.c without Redis: odin:routes messages become the right
 * callbacks (token invalidation, shard:down, shard:up), counted; nothing is
 * ready before the connections are up. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "router/discovery.h"

typedef struct seen {
    int flush, invalidate, down, shards, cmd_down;
    char last[64];
} seen;

static void on_flush(void *arg) { ((seen *)arg)->flush++; }
static void on_invalidate(const char *t, size_t n, void *arg)
{
    seen *s = arg;
    s->invalidate++;
    memcpy(s->last, t, n);
    s->last[n] = '\0';
}
static void on_down(const char *id, size_t n, void *arg)
{
    seen *s = arg;
    s->down++;
    memcpy(s->last, id, n);
    s->last[n] = '\0';
}
static void on_shards(discovery_shard *l, size_t n, void *arg)
{
    ((seen *)arg)->shards++;
}
static void on_cmd_down(void *arg) { ((seen *)arg)->cmd_down++; }

static void test_free_null(void **state)
{
    discovery_free(NULL);
}

static void test_messages(void **state)
{
    unsetenv("REDIS_URL");
    unsetenv("REDIS_PREFIX");
    router_config cfg;
    char *argv[] = { "odin-router", "--kafka-brokers=127.0.0.1:9092",
                     "--redis-url=redis://127.0.0.1:1", NULL };
    assert_int_equal(router_config_load(&cfg, 3, argv), 0);
    struct event_base *base = event_base_new();
    router_metrics m;
    router_metrics_init(&m);
    seen s = { 0 };
    discovery_callbacks cb = { on_flush, on_invalidate, on_down, on_shards, on_cmd_down, &s };
    discovery *d = discovery_new(base, &cfg, &m, &cb);
    assert_non_null(d);
    assert_non_null(discovery_cmd(d));
    assert_false(discovery_cmd_connected(d));
    assert_false(discovery_subscribed(d));
    assert_false(discovery_ready(d));

    discovery_handle_message(d, "BTC", 3);
    assert_int_equal(s.invalidate, 1);
    assert_string_equal(s.last, "BTC");

    discovery_handle_message(d, "shard:down:shA-1", 16);
    assert_int_equal(s.down, 1);
    assert_string_equal(s.last, "shA-1");
    assert_int_equal(s.invalidate, 1);

    discovery_handle_message(d, "shard:up:shB-2", 14);   /* a discovery round soon */
    assert_int_equal(s.down, 1);
    assert_int_equal(s.invalidate, 1);

    /* binary-safe tokens */
    discovery_handle_message(d, "A\0B", 3);
    assert_int_equal(s.invalidate, 2);
    assert_int_equal(m.invalidations, 4);

    /* the kicked round finds no connection and does nothing */
    event_base_loop(base, EVLOOP_NONBLOCK);
    assert_int_equal(s.shards, 0);
    assert_int_equal(s.flush, 0);

    discovery_free(d);
    event_base_free(base);
    router_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
