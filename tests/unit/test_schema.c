/*
 * common/schema: key names of both layouts (the default one must stay what
 * operators and odin-ctl read), and the cluster layout's promise that a
 * shard's lease, reverse index and sweep marker share one slot (Redis's own
 * hash-slot function, CRC16/XMODEM of the hash tag, copied below).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/schema.h"

static uint16_t crc16(const char *p, size_t n)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)((uint8_t)p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

/* Redis cluster.c keyHashSlot: the first {...} with something inside. */
static unsigned slot(const char *key)
{
    size_t n = strlen(key), s, e;
    for (s = 0; s < n && key[s] != '{'; s++)
        ;
    if (s < n) {
        for (e = s + 1; e < n && key[e] != '}'; e++)
            ;
        if (e < n && e != s + 1)
            return crc16(key + s + 1, e - s - 1) & 16383;
    }
    return crc16(key, n) & 16383;
}

static void expect_key(const char *prefix, int cluster, const char *id, const char *kind,
                       const char *want)
{
    char *k = schema_shard_key(prefix, cluster, id, kind);
    assert_non_null(k);
    assert_string_equal(k, want);
    free(k);
}

/* Every key and channel name the daemons and odin-ctl use comes from
 * common/schema; these are the names operators and the contract know. */
static void expect_str(char *got, const char *want)
{
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_key_functions(void **st)
{
    (void)st;
    expect_str(schema_route_key("odin:", "user:42"), "odin:route:user:42");
    expect_str(schema_route_prefix("odin:"), "odin:route:");
    expect_str(schema_shards_key("odin:"), "odin:shards");
    expect_str(schema_epoch_key("odin:"), "odin:epoch");
    expect_str(schema_routes_channel("odin:"), "odin:routes");
    expect_str(schema_router_key("odin:", "r-1"), "odin:router:r-1");
    expect_str(schema_shards_key(""), "shards");
    for (int cluster = 0; cluster < 2; cluster++) {
        expect_str(schema_lease_key("p:", cluster, "s1"), cluster ? "p:shard:{s1}" : "p:shard:s1");
        expect_str(schema_tokens_key("p:", cluster, "s1"),
                   cluster ? "p:shard:{s1}:tokens" : "p:shard:s1:tokens");
        expect_str(schema_sweep_key("p:", cluster, "s1"),
                   cluster ? "p:shard:{s1}:sweep" : "p:shard:s1:sweep");
        /* route keys, the channel, P shards and P epoch: the same in both */
    }
    /* the lookup path: binary-safe token, scratch reused */
    buf b = { 0 };
    const char tok[] = { 'a', '\0', 'b' };
    const char *k = schema_route_key_buf(&b, "odin:", tok, sizeof tok);
    assert_non_null(k);
    assert_int_equal(b.len, 11 + sizeof tok);
    assert_memory_equal(k, "odin:route:a\0b", b.len);
    assert_int_equal(k[b.len], '\0');
    k = schema_route_key_buf(&b, "x", "t", 1);
    assert_string_equal(k, "xroute:t");
    assert_int_equal(b.len, 8);
    k = schema_route_key_buf(&b, "x", NULL, 0);
    assert_string_equal(k, "xroute:");
    buf_free(&b);
    /* the route key is the route prefix followed by the token */
    char *rp = schema_route_prefix("odin:"), *rk = schema_route_key("odin:", "tok");
    assert_int_equal(strncmp(rk, rp, strlen(rp)), 0);
    assert_string_equal(rk + strlen(rp), "tok");
    free(rp);
    free(rk);
}

static void test_default_names_unchanged(void **st)
{
    (void)st;
    expect_key("odin:", 0, "sh-1", "", "odin:shard:sh-1");
    expect_key("odin:", 0, "sh-1", ":tokens", "odin:shard:sh-1:tokens");
    expect_key("x", 0, "a.b_c", ":tokens", "xshard:a.b_c:tokens");
}

static void test_cluster_names(void **st)
{
    (void)st;
    expect_key("odin:", 1, "sh-1", "", "odin:shard:{sh-1}");
    expect_key("odin:", 1, "sh-1", ":tokens", "odin:shard:{sh-1}:tokens");
    expect_key("odin:", 1, "sh-1", ":sweep", "odin:shard:{sh-1}:sweep");
}

/* The check can fail: the default layout puts lease and index in different
 * slots (that is what REDIS_CLUSTER_KEYS is for). */
static void test_slots(void **st)
{
    (void)st;
    /* Redis documents these values */
    assert_int_equal(slot("foo"), 12182);
    assert_int_equal(slot("{user1000}.following"), slot("{user1000}.followers"));
    static const char *const ids[] = { "sh-1", "shard-0", "a", "e2e-k-1234-0", "Z_9.x" };
    static const char *const prefixes[] = { "odin:", "", "tenant-a:", "{ops}:" };
    int split = 0;
    for (size_t p = 0; p < sizeof prefixes / sizeof *prefixes; p++) {
        for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
            char *l = schema_shard_key(prefixes[p], 1, ids[i], "");
            char *t = schema_shard_key(prefixes[p], 1, ids[i], ":tokens");
            char *m = schema_shard_key(prefixes[p], 1, ids[i], ":sweep");
            assert_int_equal(slot(l), slot(t));
            assert_int_equal(slot(l), slot(m));
            free(l);
            free(t);
            free(m);
            l = schema_shard_key(prefixes[p], 0, ids[i], "");
            t = schema_shard_key(prefixes[p], 0, ids[i], ":tokens");
            split += slot(l) != slot(t);
            free(l);
            free(t);
        }
    }
    assert_true(split > 0);
}

/* Every cluster script declares "#!lua": Redis 7 then refuses keys outside
 * the declared keys' slot even on a one-node cluster (tests/it/
 * test_redis_cluster.c shows it); the default ones stay without. */
static void test_cluster_scripts_flagged(void **st)
{
    (void)st;
    const char *cl[] = { SCHEMA_LUA_ROUTE_ONE, SCHEMA_LUA_LEASE_CLUSTER,
                         SCHEMA_LUA_SWEEP_BEGIN, SCHEMA_LUA_SWEEP_NEXT,
                         SCHEMA_LUA_SWEEP_END };
    for (size_t i = 0; i < sizeof cl / sizeof *cl; i++)
        assert_int_equal(strncmp(cl[i], "#!lua\n", 6), 0);
    const char *def[] = { SCHEMA_LUA_ROUTE, SCHEMA_LUA_ROUTE_BATCH, SCHEMA_LUA_LEASE,
                          SCHEMA_LUA_EPOCH, SCHEMA_LUA_SWEEP_BEGIN_BODY,
                          SCHEMA_LUA_SWEEP_NEXT_BODY, SCHEMA_LUA_SWEEP_END_BODY };
    for (size_t i = 0; i < sizeof def / sizeof *def; i++)
        assert_int_not_equal(strncmp(def[i], "#!", 2), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_functions),
        cmocka_unit_test(test_default_names_unchanged),
        cmocka_unit_test(test_cluster_names),
        cmocka_unit_test(test_slots),
        cmocka_unit_test(test_cluster_scripts_flagged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
