/* shard/adminapi.c (routing, parameters, JSON), router/adminapi.c (JSON)
 * and common/adminauth.c (bearer token): pure, no sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include <jansson.h>

#include "common/adminauth.h"
#include "router/adminapi.h"
#include "shard/adminapi.h"

#define R(p, post, id) adminapi_route(p, strlen(p), post, id)

static void test_route(void **st)
{
    (void)st;
    uint64_t id = 0;
    assert_int_equal(R("/admin/v1/channels", 0, &id), ADMINAPI_CHANNELS);
    assert_int_equal(R("/admin/v1/clients", 0, &id), ADMINAPI_CLIENTS);
    assert_int_equal(R("/admin/v1/drain", 1, &id), ADMINAPI_DRAIN);
    assert_int_equal(R("/admin/v1/undrain", 1, &id), ADMINAPI_UNDRAIN);
    assert_int_equal(R("/admin/v1/clients/42/disconnect", 1, &id), ADMINAPI_DISCONNECT);
    assert_int_equal(id, 42);
    assert_int_equal(R("/admin/v1/clients/18446744073709551615/disconnect", 1, &id),
                     ADMINAPI_NOT_FOUND);   /* 20 digits */
    /* wrong method on a known path: 405, not 404 */
    assert_int_equal(R("/admin/v1/drain", 0, &id), ADMINAPI_BAD_METHOD);
    assert_int_equal(R("/admin/v1/channels", 1, &id), ADMINAPI_BAD_METHOD);
    assert_int_equal(R("/admin/v1/clients/7/disconnect", 0, &id), ADMINAPI_BAD_METHOD);
    /* not ids, not paths */
    assert_int_equal(R("/admin/v1/clients/0/disconnect", 1, &id), ADMINAPI_NOT_FOUND);
    assert_int_equal(R("/admin/v1/clients/x1/disconnect", 1, &id), ADMINAPI_NOT_FOUND);
    assert_int_equal(R("/admin/v1/clients//disconnect", 1, &id), ADMINAPI_NOT_FOUND);
    assert_int_equal(R("/admin/v1/clients/1/disconnectx", 1, &id), ADMINAPI_NOT_FOUND);
    assert_int_equal(R("/admin/v1/channelsx", 0, &id), ADMINAPI_NOT_FOUND);
    assert_int_equal(R("/admin/v2/channels", 0, &id), ADMINAPI_NOT_FOUND);
    assert_int_equal(R("/admin/v1/", 0, &id), ADMINAPI_NOT_FOUND);
    /* only the given length counts (the query is cut off by the caller) */
    assert_int_equal(adminapi_route("/admin/v1/clients?x", 17, 0, &id), ADMINAPI_CLIENTS);
    assert_true(adminapi_route_mutating(ADMINAPI_DISCONNECT));
    assert_true(adminapi_route_mutating(ADMINAPI_DRAIN));
    assert_true(adminapi_route_mutating(ADMINAPI_UNDRAIN));
    assert_false(adminapi_route_mutating(ADMINAPI_CHANNELS));
    assert_false(adminapi_route_mutating(ADMINAPI_CLIENTS));
}

static void test_params(void **st)
{
    (void)st;
    adminapi_params p;
    char err[128];
    assert_int_equal(adminapi_parse_params(NULL, &p, err, sizeof err), 0);
    assert_int_equal(p.limit, ADMINAPI_LIMIT_DEFAULT);
    assert_string_equal(p.cursor, "");
    assert_int_equal(p.code, 4000);
    assert_string_equal(p.reason, "disconnected by operator");
    assert_int_equal(adminapi_parse_params("limit=5&cursor=BTC%2Etrade&code=1008&reason=bye%20now",
                                           &p, err, sizeof err), 0);
    assert_int_equal(p.limit, 5);
    assert_string_equal(p.cursor, "BTC.trade");
    assert_int_equal(p.code, 1008);
    assert_string_equal(p.reason, "bye now");
    assert_int_equal(adminapi_parse_params("code=4999", &p, err, sizeof err), 0);
    assert_int_equal(p.code, 4999);
    static const char *const bad[] = {
        "limit=0", "limit=1001", "limit=-1", "limit=5x", "limit=", "code=1001",
        "code=3999", "code=5000", "code=abc",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(adminapi_parse_params(bad[i], &p, err, sizeof err), -1);
        assert_true(err[0] != '\0');
    }
    char q[600] = "cursor=";
    memset(q + 7, 'a', 300);
    q[307] = '\0';
    assert_int_equal(adminapi_parse_params(q, &p, err, sizeof err), -1);
    strcpy(q, "reason=");
    memset(q + 7, 'r', ADMINAPI_REASON_MAX + 1);
    q[7 + ADMINAPI_REASON_MAX + 1] = '\0';
    assert_int_equal(adminapi_parse_params(q, &p, err, sizeof err), -1);
    q[7 + ADMINAPI_REASON_MAX] = '\0';
    assert_int_equal(adminapi_parse_params(q, &p, err, sizeof err), 0);
    assert_int_equal(strlen(p.reason), ADMINAPI_REASON_MAX);
}

static json_t *parse(const buf *b)
{
    json_error_t e;
    json_t *j = json_loadb(b->data, b->len, 0, &e);
    if (!j)
        fail_msg("not JSON: %s: %.*s", e.text, (int)b->len, b->data);
    return j;
}

static void test_channels_json(void **st)
{
    (void)st;
    adminapi_channel v[] = { { "BTC.trade", 9, 3 }, { "E\"T\\H.trade", 11, 1 } };
    buf b = { 0 };
    assert_int_equal(adminapi_channels_json(&b, "s-1", v, 2, 7, "E\"T\\H.trade"), 0);
    json_t *j = parse(&b);
    assert_string_equal(json_string_value(json_object_get(j, "shard")), "s-1");
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 7);
    json_t *a = json_object_get(j, "channels");
    assert_int_equal(json_array_size(a), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(a, 1), "channel")),
                        "E\"T\\H.trade");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(a, 0), "subscribers")), 3);
    assert_string_equal(json_string_value(json_object_get(j, "next")), "E\"T\\H.trade");
    json_decref(j);
    buf_reset(&b);
    assert_int_equal(adminapi_channels_json(&b, "s-1", NULL, 0, 0, NULL), 0);
    j = parse(&b);
    assert_true(json_is_null(json_object_get(j, "next")));
    assert_int_equal(json_array_size(json_object_get(j, "channels")), 0);
    json_decref(j);
    buf_free(&b);
}

static void test_clients_json(void **st)
{
    (void)st;
    const char *names[] = { "BTC.trade", "ETH.trade" };
    size_t lens[] = { 9, 9 };
    adminapi_client v[] = {
        { .id = 12, .addr = "::1", .port = 5000, .since_ms = 1700000000123ull,
          .state = "open", .queued_bytes = 77, .channels = names, .channel_lens = lens,
          .nchannels = 2 },
        { .id = 9, .addr = "10.0.0.1", .port = 1, .state = "closing" },
    };
    buf b = { 0 };
    assert_int_equal(adminapi_clients_json(&b, "s-1", v, 2, 5, 9), 0);
    json_t *j = parse(&b);
    json_t *a = json_object_get(j, "clients");
    assert_int_equal(json_array_size(a), 2);
    json_t *c = json_array_get(a, 0);
    assert_int_equal(json_integer_value(json_object_get(c, "id")), 12);
    assert_string_equal(json_string_value(json_object_get(c, "address")), "::1");
    assert_int_equal(json_integer_value(json_object_get(c, "since_ms")), 1700000000123ll);
    assert_int_equal(json_integer_value(json_object_get(c, "queued_bytes")), 77);
    assert_string_equal(json_string_value(json_array_get(json_object_get(c, "channels"), 1)),
                        "ETH.trade");
    assert_int_equal(json_array_size(json_object_get(json_array_get(a, 1), "channels")), 0);
    assert_string_equal(json_string_value(json_object_get(j, "next")), "9");
    assert_int_equal(json_integer_value(json_object_get(j, "total")), 5);
    json_decref(j);
    buf_reset(&b);
    assert_int_equal(adminapi_clients_json(&b, "s-1", v, 1, 1, 0), 0);
    j = parse(&b);
    assert_true(json_is_null(json_object_get(j, "next")));
    json_decref(j);
    buf_reset(&b);
    assert_int_equal(adminapi_error_json(&b, "a \"quoted\" reason"), 0);
    j = parse(&b);
    assert_string_equal(json_string_value(json_object_get(j, "error")), "a \"quoted\" reason");
    json_decref(j);
    buf_free(&b);
}

static void test_auth(void **st)
{
    (void)st;
    const char *why = NULL;
    /* no token configured: reads pass, writes 403 */
    assert_int_equal(adminauth_check(NULL, NULL, 0, &why), 0);
    assert_int_equal(adminauth_check("Bearer x", "", 0, &why), 0);
    assert_int_equal(adminauth_check(NULL, NULL, 1, &why), ADMINAUTH_FORBIDDEN);
    assert_non_null(strstr(why, "ADMIN_TOKEN is not set"));
    assert_int_equal(adminauth_check("Bearer x", "", 1, &why), ADMINAUTH_FORBIDDEN);
    /* token configured: exactly it, for reads and writes */
    assert_int_equal(adminauth_check("Bearer s3cret", "s3cret", 0, &why), 0);
    assert_int_equal(adminauth_check("bearer s3cret", "s3cret", 1, &why), 0);
    assert_int_equal(adminauth_check(NULL, "s3cret", 0, &why), ADMINAUTH_UNAUTHORIZED);
    assert_non_null(strstr(why, "missing"));
    assert_int_equal(adminauth_check("Basic czNjcmV0", "s3cret", 0, &why),
                     ADMINAUTH_UNAUTHORIZED);
    assert_int_equal(adminauth_check("Bearer s3cre", "s3cret", 0, &why),
                     ADMINAUTH_UNAUTHORIZED);
    assert_string_equal(why, "wrong bearer token");
    assert_int_equal(adminauth_check("Bearer s3cretX", "s3cret", 1, &why),
                     ADMINAUTH_UNAUTHORIZED);
    assert_int_equal(adminauth_check("Bearer ", "s3cret", 1, &why), ADMINAUTH_UNAUTHORIZED);
    assert_int_equal(adminauth_check("Bearer", "s3cret", 1, NULL), ADMINAUTH_UNAUTHORIZED);
}

static void test_router_json(void **st)
{
    (void)st;
    router_adminapi_state rs = { .router_id = "r\"1", .mode = "targeted", .holding = 1,
                                 .hold_ms = 250, .holds = 2, .hold_expired = 1,
                                 .backpressured = 0, .consumer_lag = -1 };
    router_adminapi_shard v[2] = {
        { .id = "a", .id_len = 1, .endpoint = "unix:/a.sock", .live = 1, .state = "ready",
          .authenticated = 1, .queued_bytes = 10, .queue_limit = 100, .connects = 1 },
        { .id = "bx", .id_len = 1, .endpoint = NULL, .live = 0, .state = "idle" },
    };
    v[0].drops[ROUTER_DROP_QUEUE_FULL] = 4;
    buf b = { 0 };
    assert_int_equal(router_adminapi_shards_json(&b, &rs, v, 2), 0);
    json_t *j = parse(&b);
    json_t *r = json_object_get(j, "router");
    assert_string_equal(json_string_value(json_object_get(r, "id")), "r\"1");
    assert_true(json_is_true(json_object_get(r, "holding")));
    assert_int_equal(json_integer_value(json_object_get(r, "consumer_lag")), -1);
    json_t *s0 = json_array_get(json_object_get(j, "shards"), 0);
    assert_true(json_is_true(json_object_get(s0, "connected")));
    assert_true(json_is_true(json_object_get(s0, "authenticated")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(s0, "drops"),
                                                        "queue_full")), 4);
    json_t *s1 = json_array_get(json_object_get(j, "shards"), 1);
    assert_string_equal(json_string_value(json_object_get(s1, "id")), "b");   /* id_len */
    assert_true(json_is_null(json_object_get(s1, "endpoint")));
    assert_true(json_is_false(json_object_get(s1, "connected")));
    json_decref(j);
    buf_reset(&b);
    consumer_partition p[1] = { { "odin.trades", 3, 17, 0, 20, 3, 15 } };
    assert_int_equal(router_adminapi_partitions_json(&b, &rs, p, 1, 1), 0);
    j = parse(&b);
    json_t *p0 = json_array_get(json_object_get(j, "partitions"), 0);
    assert_string_equal(json_string_value(json_object_get(p0, "topic")), "odin.trades");
    assert_int_equal(json_integer_value(json_object_get(p0, "partition")), 3);
    assert_int_equal(json_integer_value(json_object_get(p0, "position")), 17);
    assert_int_equal(json_integer_value(json_object_get(p0, "lag")), 3);
    assert_int_equal(json_integer_value(json_object_get(p0, "stored")), 15);
    assert_int_equal(json_integer_value(json_object_get(j, "assigned")), 1);
    json_decref(j);
    buf_reset(&b);
    assert_int_equal(router_adminapi_partitions_json(&b, &rs, NULL, 0, -1), 0);
    j = parse(&b);
    assert_int_equal(json_integer_value(json_object_get(j, "assigned")), -1);
    json_decref(j);
    buf_free(&b);
    assert_int_equal(router_adminapi_route("/admin/v1/shards", 16), RADMIN_SHARDS);
    assert_int_equal(router_adminapi_route("/admin/v1/partitions", 20), RADMIN_PARTITIONS);
    assert_int_equal(router_adminapi_route("/admin/v1/shard", 15), RADMIN_NOT_FOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_channels_json),
        cmocka_unit_test(test_clients_json),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_router_json),
    };
    return cmocka_run_group_tests_name("adminapi", tests, NULL, NULL);
}
