/* shard/iptable.c: per-IP table keys, full-table behaviour, buckets,
 * pending counts, sweep (no sockets, no clock). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>

#include "shard/iptable.h"

static void v4(const char *s, uint8_t out[4]) { assert_int_equal(inet_pton(AF_INET, s, out), 1); }
static void v6(const char *s, uint8_t out[16]) { assert_int_equal(inet_pton(AF_INET6, s, out), 1); }

static void test_keys(void **st)
{
    (void)st;
    uint8_t a[16], b[16];
    iptable_key ka, kb;
    /* IPv4: the full address */
    v4("203.0.113.7", a);
    iptable_key_of(a, 4, 64, &ka);
    assert_int_equal(ka.len, 4);
    assert_memory_equal(ka.b, a, 4);
    v4("203.0.113.8", b);
    iptable_key_of(b, 4, 64, &kb);
    assert_memory_not_equal(ka.b, kb.b, 4);
    /* IPv4-mapped IPv6 is the same key as the IPv4 address */
    v6("::ffff:203.0.113.7", b);
    iptable_key_of(b, 16, 64, &kb);
    assert_int_equal(kb.len, 4);
    assert_memory_equal(kb.b, ka.b, 4);
    /* IPv6: one /64 is one key, whatever the interface id */
    v6("2001:db8:1:2:aaaa:bbbb:cccc:dddd", a);
    v6("2001:db8:1:2::1", b);
    iptable_key_of(a, 16, 64, &ka);
    iptable_key_of(b, 16, 64, &kb);
    assert_int_equal(ka.len, 16);
    assert_memory_equal(ka.b, kb.b, 16);
    uint8_t want[16];
    v6("2001:db8:1:2::", want);
    assert_memory_equal(ka.b, want, 16);
    /* the next /64 is another key */
    v6("2001:db8:1:3::1", b);
    iptable_key_of(b, 16, 64, &kb);
    assert_memory_not_equal(ka.b, kb.b, 16);
    /* other prefix lengths, including one not on a byte boundary */
    iptable_key_of(a, 16, 48, &ka);
    v6("2001:db8:1::", want);
    assert_memory_equal(ka.b, want, 16);
    iptable_key_of(a, 16, 60, &ka);
    v6("2001:db8:1::", want);    /* ...:0002 masked to 4 bits of the 4th group: 0 */
    assert_memory_equal(ka.b, want, 16);
    v6("2001:db8:1:12::", a);
    iptable_key_of(a, 16, 60, &ka);
    v6("2001:db8:1:10::", want);
    assert_memory_equal(ka.b, want, 16);
    /* /128: each address */
    v6("2001:db8::1", a);
    v6("2001:db8::2", b);
    iptable_key_of(a, 16, 128, &ka);
    iptable_key_of(b, 16, 128, &kb);
    assert_memory_equal(ka.b, a, 16);
    assert_memory_not_equal(ka.b, kb.b, 16);
    /* a bad length is an empty key */
    iptable_key_of(a, 7, 64, &ka);
    assert_int_equal(ka.len, 0);
}

/* Many addresses of one /64 share one entry and its limits. */
static void test_v6_prefix_shares_entry(void **st)
{
    (void)st;
    iptable_conf c = { .max_entries = 8, .v6_prefix = 64, .rate = 1, .burst = 3 };
    iptable *t = iptable_new(&c);
    assert_non_null(t);
    char s[64];
    uint8_t ip[16];
    int allowed = 0;
    for (int i = 1; i <= 100; i++) {
        snprintf(s, sizeof s, "2001:db8:0:7::%x", i);
        v6(s, ip);
        int err = 0;
        iptable_entry *e = iptable_get(t, ip, 16, 1000, &err);
        assert_non_null(e);
        allowed += iptable_rate_take(t, e);
    }
    assert_int_equal(iptable_size(t), 1);
    assert_int_equal(allowed, 3);          /* the /64's burst, not 100 */
    /* IPv4 and its mapped form: one entry */
    uint8_t a4[4], m6[16];
    v4("198.51.100.1", a4);
    v6("::ffff:198.51.100.1", m6);
    iptable_entry *e1 = iptable_get(t, a4, 4, 1000, NULL);
    iptable_entry *e2 = iptable_get(t, m6, 16, 1000, NULL);
    assert_non_null(e1);
    assert_ptr_equal(e1, e2);
    assert_int_equal(iptable_size(t), 2);
    iptable_free(t);
}

/* A full table refuses a new address (fail closed) and keeps serving the
 * addresses it holds. */
static void test_full_fails_closed(void **st)
{
    (void)st;
    iptable_conf c = { .max_entries = 4, .v6_prefix = 64, .rate = 0.001, .burst = 10 };
    iptable *t = iptable_new(&c);
    uint8_t ip[4];
    iptable_entry *held[4];
    for (int i = 0; i < 4; i++) {
        uint8_t a[4] = { 10, 0, 0, (uint8_t)(i + 1) };
        held[i] = iptable_get(t, a, 4, 100, NULL);
        assert_non_null(held[i]);
        /* each has used a token: not idle, so not sweepable */
        assert_int_equal(iptable_rate_take(t, held[i]), 1);
    }
    assert_int_equal(iptable_size(t), 4);
    v4("10.0.0.99", ip);
    int err = 0;
    assert_null(iptable_get(t, ip, 4, 200, &err));
    assert_int_equal(err, IPTABLE_E_FULL);
    /* still refused a while later (the entries are busy) */
    err = 0;
    assert_null(iptable_get(t, ip, 4, 200 + 5 * IPTABLE_FULL_SWEEP_MS, &err));
    assert_int_equal(err, IPTABLE_E_FULL);
    assert_int_equal(iptable_size(t), 4);
    /* existing addresses keep working */
    for (int i = 0; i < 4; i++) {
        uint8_t a[4] = { 10, 0, 0, (uint8_t)(i + 1) };
        iptable_entry *e = iptable_get(t, a, 4, 300, NULL);
        assert_ptr_equal(e, held[i]);
        assert_int_equal(iptable_pending_take(e, 2), 0);
    }
    /* an IPv6 address of a new /64 is refused too */
    uint8_t ip6[16];
    v6("2001:db8::5", ip6);
    assert_null(iptable_get(t, ip6, 16, 300, &err));
    assert_int_equal(err, IPTABLE_E_FULL);
    iptable_free(t);
}

/* A full table makes room from idle entries (at most once per
 * IPTABLE_FULL_SWEEP_MS), never from busy ones. */
static void test_full_sweeps_idle(void **st)
{
    (void)st;
    iptable_conf c = { .max_entries = 2, .v6_prefix = 64, .rate = 10, .burst = 10 };
    iptable *t = iptable_new(&c);
    uint8_t a[4] = { 10, 0, 0, 1 }, b[4] = { 10, 0, 0, 2 }, n[4] = { 10, 0, 0, 3 };
    iptable_entry *ea = iptable_get(t, a, 4, 0, NULL);
    iptable_entry *eb = iptable_get(t, b, 4, 0, NULL);
    assert_int_equal(iptable_pending_take(ea, 1), 0);    /* a is busy */
    assert_int_equal(iptable_rate_take(t, eb), 1);       /* b refills in 100 ms */
    int err = 0;
    assert_null(iptable_get(t, n, 4, 50, &err));         /* b not idle yet */
    assert_int_equal(err, IPTABLE_E_FULL);
    /* b is idle at 200, but the last full-table sweep was at 50 */
    assert_null(iptable_get(t, n, 4, 200, &err));
    /* a second later the sweep runs: b goes, a (pending) stays */
    iptable_entry *en = iptable_get(t, n, 4, 50 + IPTABLE_FULL_SWEEP_MS, &err);
    assert_non_null(en);
    assert_ptr_equal(iptable_find(t, a, 4), ea);
    assert_null(iptable_find(t, b, 4));
    iptable_free(t);
}

static void test_bucket_pending_sweep(void **st)
{
    (void)st;
    iptable_conf c = { .max_entries = 100, .v6_prefix = 64, .rate = 2, .burst = 2 };
    iptable *t = iptable_new(&c);
    uint8_t a[4] = { 192, 0, 2, 1 };
    iptable_entry *e = iptable_get(t, a, 4, 1000, NULL);
    assert_int_equal(iptable_rate_take(t, e), 1);
    assert_int_equal(iptable_rate_take(t, e), 1);
    assert_int_equal(iptable_rate_take(t, e), 0);       /* burst 2 used */
    e = iptable_get(t, a, 4, 1499, NULL);               /* 0.998 tokens */
    assert_int_equal(iptable_rate_take(t, e), 0);
    e = iptable_get(t, a, 4, 1500, NULL);               /* 1 token */
    assert_int_equal(iptable_rate_take(t, e), 1);
    /* pending: cap, release, release of an unknown address is a no-op */
    assert_int_equal(iptable_pending_take(e, 2), 0);
    assert_int_equal(iptable_pending_take(e, 2), 0);
    assert_int_equal(iptable_pending_take(e, 2), -1);
    uint8_t other[4] = { 192, 0, 2, 2 };
    iptable_pending_release(t, other, 4);
    assert_int_equal(iptable_size(t), 1);
    /* a sweep keeps an entry that holds a slot, even with a full bucket */
    assert_int_equal(iptable_sweep(t, 100000, 0), 0);
    iptable_pending_release(t, a, 4);
    assert_int_equal(iptable_sweep(t, 100000, 0), 0);
    iptable_pending_release(t, a, 4);
    iptable_pending_release(t, a, 4);                  /* extra: stays 0 */
    assert_int_equal(e->pending, 0);
    /* bucket not full yet at 1500 (just took one): kept; full later: swept */
    assert_int_equal(iptable_sweep(t, 1500, 0), 0);
    assert_int_equal(iptable_sweep(t, 2499, 0), 0);
    assert_int_equal(iptable_sweep(t, 2500, 0), 1);
    assert_int_equal(iptable_size(t), 0);
    /* rate <= 0: no limit, entries are idle once nothing is held */
    iptable_conf c0 = { .max_entries = 1, .v6_prefix = 64, .rate = 0, .burst = 1 };
    iptable *t0 = iptable_new(&c0);
    e = iptable_get(t0, a, 4, 0, NULL);
    for (int i = 0; i < 10; i++)
        assert_int_equal(iptable_rate_take(t0, e), 1);
    assert_int_equal(iptable_sweep(t0, 0, 0), 1);
    iptable_free(t0);
    iptable_free(t);
    iptable_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_v6_prefix_shares_entry),
        cmocka_unit_test(test_full_fails_closed),
        cmocka_unit_test(test_full_sweeps_idle),
        cmocka_unit_test(test_bucket_pending_sweep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
