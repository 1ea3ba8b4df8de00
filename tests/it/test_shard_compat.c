/*
 * odin-ws compatibility of a real shard (issue 12): envelope type/priority
 * defaults (ENVELOPE_TYPES=legacy) and the per-category opt-in, the
 * partition in every envelope, leniency (unknown types never close, binary
 * frames are ignored and counted), and odin-ws's /health fields.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tests/support/support.h"
#include "tests/support/shardsup.h"
#include "tests/support/wsclient.h"
#include "proto/frame.h"

#define T 5000

static ssup_shard *start(const char *name, const char *const env[])
{
    return ssup_start("compat", name, env);
}

static void stop(ssup_shard *s) { ssup_stop_ok(s); }

static char *recv_text(wsc *c) { return ssup_recv_text(c, T); }

static wsc *client(int port, const char *channels_json)
{
    return ssup_client(port, channels_json, T);
}

static const char *cats[] = { "trade", "liquidity", "metadata", "social", "community",
                              "creation", "analytics", "balances" };
static const char *cat_types[] = { "price:update", "liquidity:update", "metadata:update",
                                   "social:update", "community:update", "token:created",
                                   "analytics:update", "balance:update" };
static const int cat_prio[] = { 1, 2, 3, 3, 3, 2, 3, 2 };
#define NCATS 8

/* One record per category (partition 5, offsets 100..107); returns what the
 * subscriber got, in order, checking seq/p/channel. */
static void deliver_all(ssup_shard *s, wsc *c, json_t *got[NCATS])
{
    ssup_router r;
    assert_int_equal(ssup_router_connect(&r, s->sock, "compat-router", FRAME_PROTO_VERSION), 0);
    frame_record recs[NCATS];
    for (int i = 0; i < NCATS; i++) {
        recs[i] = ssup_rec(cats[i], "CMP", 100 + i, 1700000000000 + i, "{\"v\":1}");
        recs[i].partition = 5;
    }
    assert_int_equal(ssup_router_send(&r, recs, NCATS), 0);
    for (int i = 0; i < NCATS; i++) {
        char *m = recv_text(c);
        json_error_t e;
        got[i] = json_loads(m, 0, &e);
        assert_non_null(got[i]);
        free(m);
        assert_int_equal(json_integer_value(json_object_get(got[i], "seq")), 100 + i);
        assert_int_equal(json_integer_value(json_object_get(got[i], "p")), 5);
        char ch[64];
        snprintf(ch, sizeof ch, "CMP.%s", cats[i]);
        assert_string_equal(json_string_value(json_object_get(got[i], "channel")), ch);
        assert_null(json_object_get(got[i], "replay"));
    }
    ssup_router_close(&r);
}

static const char *all_channels =
    "[\"CMP.trade\",\"CMP.liquidity\",\"CMP.metadata\",\"CMP.social\","
    "\"CMP.community\",\"CMP.creation\",\"CMP.analytics\",\"CMP.balances\"]";

static void test_envelope_legacy_default(void **state)
{
    ssup_shard *s = start("legacy", NULL);
    wsc *c = client(s->port, all_channels);
    json_t *got[NCATS];
    deliver_all(s, c, got);
    for (int i = 0; i < NCATS; i++) {
        assert_string_equal(json_string_value(json_object_get(got[i], "type")),
                            "price:update");
        assert_int_equal(json_integer_value(json_object_get(got[i], "priority")), 1);
        json_decref(got[i]);
    }
    wsc_free(c);
    stop(s);
}

static void test_envelope_category(void **state)
{
    const char *env[] = { "ENVELOPE_TYPES=category", NULL };
    ssup_shard *s = start("category", env);
    wsc *c = client(s->port, all_channels);
    json_t *got[NCATS];
    deliver_all(s, c, got);
    for (int i = 0; i < NCATS; i++) {
        assert_string_equal(json_string_value(json_object_get(got[i], "type")),
                            cat_types[i]);
        assert_int_equal(json_integer_value(json_object_get(got[i], "priority")),
                         cat_prio[i]);
        json_decref(got[i]);
    }
    wsc_free(c);
    stop(s);
}

static void test_envelope_types_invalid(void **state)
{
    char *argv[] = { (char *)tsup_bin("odin-shard"), "--envelope-types", "fancy", NULL };
    pid_t pid = tsup_spawn(argv, NULL);
    assert_true(pid > 0);
    int st = tsup_stop(pid, 0, 5000);   /* exits by itself */
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 2);
}

static void expect_pong(wsc *c)
{
    assert_int_equal(wsc_send_text(c, "{\"type\":\"heartbeat\"}"), 0);
    char *m = recv_text(c);
    assert_int_equal(strncmp(m, "{\"type\":\"pong\",\"ts\":", 20), 0);
    free(m);
}

static void test_leniency(void **state)
{
    const char *env[] = { "WS_MAX_ERRORS=3", NULL };
    ssup_shard *s = start("lenient", env);
    wsc *c = client(s->port, NULL);
    /* far more unknown types than the error budget: each answered, no close */
    for (int i = 0; i < 15; i++) {
        char m[64];
        snprintf(m, sizeof m, "{\"type\":\"future_type_%d\"}", i);
        assert_int_equal(wsc_send_text(c, m), 0);
        char *r = recv_text(c);
        const char *want = "{\"type\":\"error\",\"code\":\"UNKNOWN_TYPE\",";
        if (strncmp(r, want, strlen(want)) != 0)
            fail_msg("want UNKNOWN_TYPE, got %s", r);
        free(r);
    }
    expect_pong(c);
    assert_true(ssup_metric(s->port, "ws_client_errors_total{code=\"UNKNOWN_TYPE\"}") == 15);
    /* binary frames: ignored and counted, never closed */
    for (int i = 0; i < 12; i++)
        assert_int_equal(wsc_send_frame(c, 2, 1, "\x00\x01\x02", 3), 0);
    expect_pong(c);
    assert_true(ssup_metric(s->port, "ws_binary_frames_ignored_total") == 12);
    assert_true(ssup_metric(s->port, "ws_disconnects_total{code=\"1003\"}") == 0);
    assert_true(ssup_metric(s->port, "ws_connections_active") == 1);
    /* other errors still count toward the 1008 close */
    int closed = 0;
    for (int i = 0; i < 5 && !closed; i++) {
        assert_int_equal(wsc_send_text(c, "{nope"), 0);
        char *m = NULL;
        int r = wsc_recv_text(c, T, &m, NULL);
        if (r == -2)
            closed = c->close_code;
        else
            assert_int_equal(r, 1);
        free(m);
    }
    if (!closed)
        closed = wsc_wait_close(c, T);
    assert_int_equal(closed, 1008);
    wsc_free(c);
    stop(s);
}

static void test_health_fields(void **state)
{
    ssup_shard *s = start("health", NULL);
    char *body = NULL;
    assert_int_equal(tsup_http_get(s->port, "/health", &body), 200);
    json_error_t e;
    json_t *j = json_loads(body, 0, &e);
    if (!j)
        fail_msg("health is not JSON: %s", body);
    free(body);
    /* today's fields */
    assert_non_null(json_object_get(j, "status"));
    assert_non_null(json_object_get(json_object_get(j, "checks"), "capacity"));
    assert_non_null(json_object_get(j, "uptime"));
    /* odin-ws's */
    assert_true(json_is_true(json_object_get(j, "healthy")));
    json_t *cpu = json_object_get(json_object_get(j, "checks"), "cpu");
    json_t *mem = json_object_get(json_object_get(j, "checks"), "memory");
    /* the figure, not its level: a shard busy starting (ASan) may read "high" */
    const char *cst = json_string_value(json_object_get(cpu, "status"));
    assert_non_null(cst);
    assert_true(strcmp(cst, "ok") == 0 || strcmp(cst, "high") == 0);
    assert_true(json_is_number(json_object_get(cpu, "usage_percent")));
    assert_true(json_number_value(json_object_get(cpu, "usage_percent")) >= 0);
    assert_string_equal(json_string_value(json_object_get(mem, "status")), "ok");
    json_int_t rss = json_integer_value(json_object_get(mem, "rss_bytes"));
    assert_true(rss > 100000);   /* a running shard has more than 100 kB resident */
    json_int_t lim = json_integer_value(json_object_get(mem, "limit_bytes"));
    assert_true(lim > rss);
    double pct = json_number_value(json_object_get(mem, "percentage"));
    double want = 100.0 * (double)rss / (double)lim;
    assert_true(pct >= 0 && pct < 100);
    assert_true(pct > want - 0.01 && pct < want + 0.01);
    json_decref(j);
    stop(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope_legacy_default),
        cmocka_unit_test(test_envelope_category),
        cmocka_unit_test(test_envelope_types_invalid),
        cmocka_unit_test(test_leniency),
        cmocka_unit_test(test_health_fields),
    };
    return cmocka_run_group_tests_name("shard_compat", tests, NULL, NULL);
}
