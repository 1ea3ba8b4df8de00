/* odin-loadgen pure parts: histogram, plan, channels, frame scan, upgrade,
 * report frames. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/lib/lg_hist.h"
#include "tools/lib/lg_plan.h"
#include "tools/lib/lg_report.h"
#include "tools/lib/lg_scan.h"
#include "tools/lib/lg_ws.h"
#include "common/wskey.h"

/* |got - want| <= 1 % of want (+1 for tiny values) */
static void assert_close(uint64_t got, double want)
{
    double tol = want * 0.01 + 1.0;
    if (fabs((double)got - want) > tol)
        fail_msg("got %llu, want %.1f +- %.1f", (unsigned long long)got, want, tol);
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

/* ---- histogram ------------------------------------------------------- */

static void test_hist_buckets(void **st)
{
    (void)st;
    size_t prev = 0;
    for (uint64_t v = 0; v <= LG_HIST_MAX_VALUE; v = v < 1000 ? v + 1 : v + v / 97) {
        size_t i = lg_hist_index(v);
        assert_true(i < LG_HIST_BUCKETS);
        assert_true(i >= prev);            /* monotonic */
        prev = i;
        uint64_t lo, hi;
        lg_hist_bucket_range(i, &lo, &hi);
        assert_true(lo <= v && v <= hi);
        assert_true((double)(hi - lo + 1) <= (double)lo / 128.0 + 1.0);
    }
    assert_int_equal(lg_hist_index(LG_HIST_MAX_VALUE), LG_HIST_BUCKETS - 1);
    assert_int_equal(lg_hist_index(UINT64_MAX), LG_HIST_BUCKETS - 1);
    /* 60 s fits without overflow */
    assert_true(60000000 <= LG_HIST_MAX_VALUE);
}

static void test_hist_uniform(void **st)
{
    (void)st;
    lg_hist *h = malloc(sizeof *h);
    lg_hist_reset(h);
    assert_int_equal(lg_hist_percentile(h, 50), 0);
    for (uint64_t v = 1; v <= 100000; v++)
        lg_hist_record(h, v);
    assert_int_equal(h->total, 100000);
    assert_int_equal(h->min, 1);
    assert_int_equal(h->max, 100000);
    assert_close(lg_hist_percentile(h, 50), 50000);
    assert_close(lg_hist_percentile(h, 90), 90000);
    assert_close(lg_hist_percentile(h, 99), 99000);
    assert_close(lg_hist_percentile(h, 99.9), 99900);
    assert_int_equal(lg_hist_percentile(h, 100), 100000);
    assert_close(lg_hist_percentile(h, 0.001), 1);
    assert_true(fabs(lg_hist_mean(h) - 50000.5) < 0.01);
    free(h);
}

static void test_hist_skewed(void **st)
{
    (void)st;
    /* 99 % at 2 ms, 0.9 % at 50 ms, 0.1 % at 3 s: percentiles land exactly
     * on those bands */
    lg_hist *h = calloc(1, sizeof *h);   /* zeroed struct works without reset */
    lg_hist_record_n(h, 2000, 99000);
    lg_hist_record_n(h, 50000, 900);
    lg_hist_record_n(h, 3000000, 100);
    assert_int_equal(h->min, 2000);
    assert_close(lg_hist_percentile(h, 50), 2000);
    assert_close(lg_hist_percentile(h, 99), 2000);
    assert_close(lg_hist_percentile(h, 99.5), 50000);
    assert_close(lg_hist_percentile(h, 99.9), 50000);
    assert_close(lg_hist_percentile(h, 99.95), 3000000);
    assert_int_equal(lg_hist_percentile(h, 100), 3000000);
    /* a value beyond the range is counted and max stays exact */
    lg_hist_record(h, 100000000);
    assert_int_equal(h->overflow, 1);
    assert_int_equal(h->max, 100000000);
    assert_int_equal(lg_hist_percentile(h, 100), 100000000);
    free(h);
}

static void test_hist_merge(void **st)
{
    (void)st;
    lg_hist *a = malloc(sizeof *a), *b = malloc(sizeof *b), *all = malloc(sizeof *all);
    lg_hist *empty = malloc(sizeof *empty);
    lg_hist_reset(a);
    lg_hist_reset(b);
    lg_hist_reset(all);
    lg_hist_reset(empty);
    uint64_t s = 42;
    uint64_t *vals = malloc(50000 * sizeof *vals);
    for (int i = 0; i < 50000; i++) {
        uint64_t v = lg_rand_next(&s) % 5000000;
        vals[i] = v;
        lg_hist_record(i % 3 ? a : b, v);
        lg_hist_record(all, v);
    }
    qsort(vals, 50000, sizeof *vals, cmp_u64);
    lg_hist_merge(a, empty);            /* no-op */
    lg_hist_merge(empty, b);            /* into an empty one */
    assert_int_equal(empty->min, b->min);
    lg_hist_merge(a, b);
    assert_memory_equal(a->counts, all->counts, sizeof a->counts);
    assert_int_equal(a->total, all->total);
    assert_int_equal(a->min, all->min);
    assert_int_equal(a->max, all->max);
    assert_true(fabs(a->sum - all->sum) < 1.0);
    double ps[] = { 50, 90, 99, 99.9 };
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(lg_hist_percentile(a, ps[i]), lg_hist_percentile(all, ps[i]));
        /* exact percentile of the samples: value at rank ceil(p * n) */
        size_t rank = (size_t)ceil(ps[i] / 100.0 * 50000 - 1e-6);
        assert_close(lg_hist_percentile(all, ps[i]), (double)vals[rank - 1]);
    }
    free(vals);
    free(a);
    free(b);
    free(all);
    free(empty);
}

/* ---- plan ------------------------------------------------------------ */

static void test_plan_spread(void **st)
{
    (void)st;
    lg_plan *p = malloc(sizeof *p);
    char why[256];
    lg_plan_in in = { .connections = 100000, .rate = 2000, .ntargets = 4, .naddrs = 8,
                      .fd_limit = 20000, .port_range = 28232 };
    assert_int_equal(lg_plan_make(&in, p, why, sizeof why), 0);
    assert_int_equal(p->nworkers, 7);       /* ceil(100000 / 15000) */
    long sum = 0;
    double rsum = 0;
    for (long w = 0; w < p->nworkers; w++) {
        assert_int_equal(p->w[w].first, sum);
        assert_true(p->w[w].count == 14285 || p->w[w].count == 14286);
        assert_true(p->w[w].fds_needed <= 20000);
        sum += p->w[w].count;
        rsum += p->w[w].rate;
    }
    assert_int_equal(sum, 100000);
    assert_true(fabs(rsum - 2000) < 1e-6);
    assert_int_equal(p->max_per_pair, 3125);  /* 100000 / (4 * 8) */

    /* explicit process count; never more workers than connections */
    in.connections = 3;
    in.processes = 8;
    assert_int_equal(lg_plan_make(&in, p, why, sizeof why), 0);
    assert_int_equal(p->nworkers, 3);
    in.connections = 1;
    in.processes = 0;
    assert_int_equal(lg_plan_make(&in, p, why, sizeof why), 0);
    assert_int_equal(p->nworkers, 1);
    assert_int_equal(p->w[0].count, 1);
    in.connections = 0;
    assert_int_equal(lg_plan_make(&in, p, why, sizeof why), LG_PLAN_EINVAL);
    free(p);
}

static void test_plan_budgets(void **st)
{
    (void)st;
    lg_plan *p = malloc(sizeof *p);
    char why[256] = "";
    /* 40000 in 2 processes = 20000 + reserve > 20000 fds */
    lg_plan_in in = { .connections = 40000, .processes = 2, .ntargets = 2, .naddrs = 2,
                      .fd_limit = 20000, .port_range = 28232 };
    assert_int_equal(lg_plan_make(&in, p, why, sizeof why), LG_PLAN_EFDBUDGET);
    assert_non_null(strstr(why, "use at least 3 processes"));
    in.processes = 3;
    assert_int_equal(lg_plan_make(&in, p, why, sizeof why), 0);
    /* exactly at the budget is fine */
    in.connections = 2 * (20000 - LG_PLAN_FD_RESERVE);
    in.processes = 2;
    assert_int_equal(lg_plan_make(&in, p, why, sizeof why), 0);
    in.connections++;
    assert_int_equal(lg_plan_make(&in, p, why, sizeof why), LG_PLAN_EFDBUDGET);

    /* ports: 60000 connections to one target from one address */
    lg_plan_in in2 = { .connections = 60000, .ntargets = 1, .naddrs = 0,
                       .fd_limit = 20000, .port_range = 28232 };
    assert_int_equal(lg_plan_make(&in2, p, why, sizeof why), LG_PLAN_EPORTS);
    in2.naddrs = 2;      /* 30000 per pair: still too many */
    assert_int_equal(lg_plan_make(&in2, p, why, sizeof why), LG_PLAN_EPORTS);
    in2.naddrs = 3;
    assert_int_equal(lg_plan_make(&in2, p, why, sizeof why), 0);
    assert_int_equal(p->max_per_pair, 20000);
    in2.processes = 1000;
    in2.connections = 100000;
    in2.naddrs = 8;
    assert_int_equal(lg_plan_make(&in2, p, why, sizeof why), LG_PLAN_EWORKERS);
    free(p);
}

static void test_plan_pairs(void **st)
{
    (void)st;
    /* lg_plan_pair_count agrees with enumerating lg_plan_*_of */
    for (long total = 1; total < 60; total += 7) {
        for (size_t nt = 1; nt <= 4; nt++) {
            for (size_t na = 0; na <= 5; na++) {
                long cnt[4][5] = { { 0 } };
                for (long i = 0; i < total; i++)
                    cnt[lg_plan_target_of(i, nt)][lg_plan_addr_of(i, nt, na)]++;
                long mx = 0;
                for (size_t t = 0; t < nt; t++)
                    for (size_t a = 0; a < (na ? na : 1); a++) {
                        assert_int_equal(cnt[t][a], lg_plan_pair_count(total, nt, na, t, a));
                        if (cnt[t][a] > mx)
                            mx = cnt[t][a];
                    }
                assert_int_equal(mx, lg_plan_pair_count(total, nt, na, 0, 0));
            }
        }
    }
}

static void test_addrs_parse(void **st)
{
    (void)st;
    struct in_addr a[16];
    size_t n = 99;
    char s[32];
    assert_int_equal(lg_addrs_parse("127.0.0.1-127.0.0.8", a, 16, &n), 0);
    assert_int_equal(n, 8);
    inet_ntop(AF_INET, &a[7], s, sizeof s);
    assert_string_equal(s, "127.0.0.8");
    assert_int_equal(lg_addrs_parse(" 127.0.0.5 , 127.0.1.254-127.0.2.1,", a, 16, &n), 0);
    assert_int_equal(n, 5);
    inet_ntop(AF_INET, &a[2], s, sizeof s);
    assert_string_equal(s, "127.0.1.255");
    inet_ntop(AF_INET, &a[4], s, sizeof s);
    assert_string_equal(s, "127.0.2.1");
    assert_int_equal(lg_addrs_parse("", a, 16, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(lg_addrs_parse(NULL, a, 16, &n), 0);
    assert_int_equal(lg_addrs_parse("127.0.0.9-127.0.0.1", a, 16, &n), -1);
    assert_int_equal(lg_addrs_parse("127.0.0.300", a, 16, &n), -1);
    assert_int_equal(lg_addrs_parse("localhost", a, 16, &n), -1);
    assert_int_equal(lg_addrs_parse("127.0.0.1-127.0.0.100", a, 16, &n), -1);
    assert_int_equal(n, 0);
}

/* ---- channels -------------------------------------------------------- */

static void test_chanset(void **st)
{
    (void)st;
    assert_null(lg_chanset_new("", "trade"));
    assert_null(lg_chanset_new("BTC", " , "));
    lg_chanset *cs = lg_chanset_new("BTC, ETH,SOL", "trade,liquidity");
    assert_non_null(cs);
    assert_int_equal(lg_chanset_count(cs), 6);
    size_t len;
    assert_string_equal(lg_chanset_name(cs, 0, &len), "BTC.trade");
    assert_int_equal(len, 9);
    assert_string_equal(lg_chanset_name(cs, 3, NULL), "ETH.liquidity");
    assert_null(lg_chanset_name(cs, 6, NULL));
    for (uint32_t id = 0; id < 6; id++) {
        const char *nm = lg_chanset_name(cs, id, &len);
        assert_int_equal(lg_chanset_find(cs, nm, len), id);
    }
    assert_int_equal(lg_chanset_find(cs, "BTC.trad", 8), -1);
    assert_int_equal(lg_chanset_find(cs, "DOGE.trade", 10), -1);

    uint32_t ids[LG_MAX_CHANNELS_PER_CONN];
    /* single: token i % 3, category (i / 3) % 2 */
    assert_int_equal(lg_chanset_pick(cs, LG_MODE_SINGLE, 0, 1, 0, ids), 1);
    assert_int_equal(ids[0], 0);
    assert_int_equal(lg_chanset_pick(cs, LG_MODE_SINGLE, 0, 1, 2, ids), 1);
    assert_string_equal(lg_chanset_name(cs, ids[0], NULL), "SOL.trade");
    assert_int_equal(lg_chanset_pick(cs, LG_MODE_SINGLE, 0, 1, 4, ids), 1);
    assert_string_equal(lg_chanset_name(cs, ids[0], NULL), "ETH.liquidity");
    /* all */
    assert_int_equal(lg_chanset_pick(cs, LG_MODE_ALL, 0, 1, 17, ids), 6);
    for (uint32_t j = 0; j < 6; j++)
        assert_int_equal(ids[j], j);
    /* random: distinct, sorted, deterministic per (seed, i), capped */
    uint32_t ids2[LG_MAX_CHANNELS_PER_CONN];
    assert_int_equal(lg_chanset_pick(cs, LG_MODE_RANDOM, 4, 7, 5, ids), 4);
    assert_int_equal(lg_chanset_pick(cs, LG_MODE_RANDOM, 4, 7, 5, ids2), 4);
    assert_memory_equal(ids, ids2, 4 * sizeof ids[0]);
    for (int j = 1; j < 4; j++)
        assert_true(ids[j - 1] < ids[j]);
    assert_int_equal(lg_chanset_pick(cs, LG_MODE_RANDOM, 50, 7, 5, ids), 6);
    lg_chanset_free(cs);
    lg_chanset_free(NULL);
}

static void test_chanset_large(void **st)
{
    (void)st;
    /* 1000 tokens x 3 categories: "all" windows of 128 cover everything */
    buf b = { 0 };
    for (int t = 0; t < 1000; t++)
        buf_appendf(&b, "%sTOK%d", t ? "," : "", t);
    buf_append(&b, "", 1);
    lg_chanset *cs = lg_chanset_new(b.data, "trade,liquidity,analytics");
    buf_free(&b);
    assert_non_null(cs);
    assert_int_equal(lg_chanset_count(cs), 3000);
    assert_int_equal(lg_chanset_find(cs, "TOK999.analytics", 16), 2999);
    uint32_t ids[LG_MAX_CHANNELS_PER_CONN];
    char *seen = calloc(3000, 1);
    for (long i = 0; i < 24; i++) {   /* 24 * 128 >= 3000 */
        size_t n = lg_chanset_pick(cs, LG_MODE_ALL, 0, 1, i, ids);
        assert_int_equal(n, LG_MAX_CHANNELS_PER_CONN);
        for (size_t j = 0; j < n; j++) {
            if (j)
                assert_true(ids[j - 1] < ids[j]);
            seen[ids[j]] = 1;
        }
    }
    for (int j = 0; j < 3000; j++)
        assert_true(seen[j]);
    /* random over a large universe: rejection path */
    long hits[3] = { 0 };
    for (long i = 0; i < 300; i++) {
        size_t n = lg_chanset_pick(cs, LG_MODE_RANDOM, 10, 99, i, ids);
        assert_int_equal(n, 10);
        for (size_t j = 0; j < n; j++) {
            assert_true(ids[j] < 3000);
            if (j)
                assert_true(ids[j - 1] < ids[j]);
            hits[ids[j] % 3]++;
        }
    }
    for (int c = 0; c < 3; c++)       /* roughly uniform over categories */
        assert_true(hits[c] > 700 && hits[c] < 1300);
    free(seen);
    lg_chanset_free(cs);
}

/* ---- frame scan ------------------------------------------------------ */

static void scan_ok(const char *s, lg_msg *m)
{
    assert_int_equal(lg_scan(s, strlen(s), m), 0);
}

static void test_scan_live(void **st)
{
    (void)st;
    lg_msg m;
    scan_ok("{\"seq\":1234,\"ts\":1732665683123,\"type\":\"price:update\",\"priority\":1,"
            "\"channel\":\"BTC.trade\",\"data\":{\"type\":\"TRADE_EXECUTED\","
            "\"timestamp\":1732665683000,\"data\":{\"price\":1.5,\"publish_us\":1732665683123456,"
            "\"token_seq\":77}}}", &m);
    assert_true(lg_msg_is_live(&m));
    assert_int_equal(m.seq, 1234);
    assert_int_equal(m.ts, 1732665683123LL);
    assert_int_equal(m.channel_len, 9);
    assert_memory_equal(m.channel, "BTC.trade", 9);
    assert_int_equal(m.type_len, 12);
    assert_memory_equal(m.type, "price:update", 12);
    assert_true(m.has_publish_us);
    assert_int_equal(m.publish_us, 1732665683123456LL);
    assert_true(m.has_token_seq);
    assert_int_equal(m.token_seq, 77);

    /* other key order, whitespace, publish_us directly in data, no token_seq */
    scan_ok(" { \"data\" : { \"publish_us\" : 5 } , \"channel\" : \"ETH.analytics\" ,"
            " \"seq\" : 0 }\n", &m);
    assert_true(lg_msg_is_live(&m));
    assert_int_equal(m.seq, 0);
    assert_int_equal(m.publish_us, 5);
    assert_false(m.has_token_seq);
    assert_false(m.has_type);
}

static void test_scan_tricky(void **st)
{
    (void)st;
    lg_msg m;
    /* "channel"/"seq" inside data (as keys and inside strings, with escaped
     * quotes) must not win over the top-level ones, wherever they appear */
    const char *s =
        "{\"data\":{\"channel\":\"EVIL.trade\",\"seq\":999,"
        "\"note\":\"he said \\\"channel\\\":\\\"X.y\\\", \\\"publish_us\\\":1\\\\\","
        "\"arr\":[\"channel\",{\"seq\":5}],\"inner\":{\"publish_us\":1700000000000001}},"
        "\"seq\":42,\"channel\":\"BTC.trade\",\"ts\":7}";
    scan_ok(s, &m);
    assert_int_equal(m.seq, 42);
    assert_int_equal(m.channel_len, 9);
    assert_memory_equal(m.channel, "BTC.trade", 9);
    assert_false(m.channel_escaped);
    assert_int_equal(m.ts, 7);
    assert_int_equal(m.publish_us, 1700000000000001LL);

    /* "channel" as a top-level *value* is not a key */
    scan_ok("{\"type\":\"channel\",\"x\":\"seq\",\"data\":\"publish_us\"}", &m);
    assert_false(m.has_channel);
    assert_false(m.has_seq);
    assert_false(m.has_publish_us);
    assert_int_equal(m.type_len, 7);

    /* publish_us outside data is ignored; a float or a string in data works */
    scan_ok("{\"publish_us\":1,\"seq\":1,\"channel\":\"A.b\",\"data\":{\"publish_us\":1.7e15}}",
            &m);
    assert_int_equal(m.publish_us, 1700000000000000LL);
    scan_ok("{\"seq\":1,\"channel\":\"A.b\",\"data\":{\"publish_us\":\"123\",\"token_seq\":-1}}",
            &m);
    assert_int_equal(m.publish_us, 123);
    assert_int_equal(m.token_seq, -1);
    /* a string that is not a number is not taken */
    scan_ok("{\"seq\":1,\"channel\":\"A.b\",\"data\":{\"publish_us\":\"soon\"}}", &m);
    assert_false(m.has_publish_us);

    /* escaped channel is flagged (it will not match any subscribed name) */
    scan_ok("{\"seq\":1,\"channel\":\"A\\\".b\",\"data\":null}", &m);
    assert_true(m.channel_escaped);

    /* data value of other kinds, nested arrays, literals */
    scan_ok("{\"seq\":3,\"channel\":\"A.b\",\"data\":[[1,2,{\"publish_us\":9}],true,false,null]}",
            &m);
    assert_int_equal(m.publish_us, 9);

    /* control messages */
    scan_ok("{\"type\":\"subscription_ack\",\"subscribed\":[\"BTC.trade\"],\"count\":1}", &m);
    assert_false(lg_msg_is_live(&m));
    assert_memory_equal(m.type, "subscription_ack", 16);
    scan_ok("{\"type\":\"pong\",\"ts\":1732665683123}", &m);
    assert_int_equal(m.ts, 1732665683123LL);
}

static void test_scan_malformed(void **st)
{
    (void)st;
    lg_msg m;
    const char *good =
        "{\"seq\":12,\"channel\":\"BTC.trade\",\"data\":{\"s\":\"a\\\"}\",\"publish_us\":1}}";
    size_t n = strlen(good);
    /* every proper prefix is rejected and never read past its end (ASan) */
    for (size_t i = 0; i < n; i++) {
        char *p = malloc(i ? i : 1);
        memcpy(p, good, i);
        assert_int_equal(lg_scan(p, i, &m), -1);
        free(p);
    }
    static const char *bad[] = {
        "", "[1,2]x", "{\"a\" 1}", "{\"a\":1]", "{\"a\":tru}", "{\"a\":-}", "}{",
        "{\"a\":1}{\"b\":2}", "{\"a\":@}", "\"str\"", "{\"a\":1}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(lg_scan(bad[i], strlen(bad[i]), &m), -1);
    /* lg_scan_live stops once every field is found: a bad tail after them
     * is not read, the fields are the same */
    const char *tail = "{\"seq\":7,\"ts\":5,\"type\":\"price:update\",\"channel\":\"BTC.trade\","
                       "\"data\":{\"publish_us\":11,\"token_seq\":3,\"x\":@@@";
    assert_int_equal(lg_scan(tail, strlen(tail), &m), -1);
    assert_int_equal(lg_scan_live(tail, strlen(tail), &m), 0);
    assert_int_equal(m.seq, 7);
    assert_int_equal(m.publish_us, 11);
    assert_int_equal(m.token_seq, 3);
    assert_true(lg_msg_is_live(&m));
    /* without token_seq it reads to the end and checks */
    const char *notok = "{\"seq\":7,\"ts\":5,\"type\":\"t\",\"channel\":\"B.trade\","
                        "\"data\":{\"publish_us\":11,\"x\":@}}";
    assert_int_equal(lg_scan_live(notok, strlen(notok), &m), -1);
    for (size_t i = 0; i < n; i++) {   /* prefixes: never past the end (ASan) */
        char *q = malloc(i ? i : 1);
        memcpy(q, good, i);
        assert_int_equal(lg_scan_live(q, i, &m), -1);
        free(q);
    }
    /* too deep */
    char deep[200];
    size_t d = 0;
    deep[d++] = '{';
    deep[d++] = '"';
    deep[d++] = 'a';
    deep[d++] = '"';
    deep[d++] = ':';
    for (int i = 0; i < LG_SCAN_MAX_DEPTH + 2; i++)
        deep[d++] = '[';
    assert_int_equal(lg_scan(deep, d, &m), -1);
}

/* ---- upgrade --------------------------------------------------------- */

static void test_ws_handshake(void **st)
{
    (void)st;
    char acc[WSKEY_ACCEPT_LEN + 1];
    /* RFC 6455 section 1.3 example */
    assert_int_equal(wskey_accept("dGhlIHNhbXBsZSBub25jZQ==", 24, acc), 0);
    assert_string_equal(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    uint64_t rng = 1;
    char key[LG_WS_KEY_LEN + 1], key2[LG_WS_KEY_LEN + 1];
    lg_ws_key(&rng, key);
    lg_ws_key(&rng, key2);
    assert_int_equal(strlen(key), 24);
    assert_string_not_equal(key, key2);
    assert_int_equal(key[22], '=');

    char req[512];
    int rl = lg_ws_request(req, sizeof req, "127.0.0.1", 3002, "/ws", key);
    assert_true(rl > 0);
    assert_non_null(strstr(req, "GET /ws HTTP/1.1\r\n"));
    assert_non_null(strstr(req, "Sec-WebSocket-Version: 13\r\n"));
    assert_int_equal(memcmp(req + rl - 4, "\r\n\r\n", 4), 0);
    assert_int_equal(lg_ws_request(req, 20, "127.0.0.1", 3002, "/ws", key), -1);
    assert_null(strstr(req, "Extensions"));
    /* LG_DEFLATE: the offer browsers send */
    rl = lg_ws_request_ext(req, sizeof req, "127.0.0.1", 3002, "/ws", key, 1);
    assert_true(rl > 0);
    assert_non_null(strstr(req, "\r\nSec-WebSocket-Extensions: permessage-deflate; "
                                "client_max_window_bits\r\n"));

    wskey_accept(key, 24, acc);
    char resp[512];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n"
                     "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Accept:  %s \r\n\r\n"
                     "\x81\x02hi", acc);
    lg_http_resp r;
    /* incomplete until the blank line */
    for (int i = 0; i < n - 4; i++)
        assert_int_equal(lg_http_response_parse(resp, (size_t)i, 4096, &r), 0);
    int hl = lg_http_response_parse(resp, (size_t)n, 4096, &r);
    assert_int_equal(hl, n - 4);          /* frame bytes follow the head */
    assert_int_equal(r.status, 101);
    assert_int_equal(lg_ws_check(&r, key, 24), LG_WS_OK);
    assert_int_equal(lg_ws_check(&r, key2, 24), LG_WS_BADACCEPT);
    assert_int_equal(r.deflate, 0);
    const char *pmd = "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Extensions: "
                      "permessage-deflate; server_no_context_takeover\r\n\r\n";
    assert_true(lg_http_response_parse(pmd, strlen(pmd), 4096, &r) > 0);
    assert_int_equal(r.deflate, 1);

    const char *full = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
    assert_true(lg_http_response_parse(full, strlen(full), 4096, &r) > 0);
    assert_int_equal(r.status, 503);
    assert_int_equal(lg_ws_check(&r, key, 24), LG_WS_STATUS);
    const char *noup = "HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: x\r\n\r\n";
    assert_true(lg_http_response_parse(noup, strlen(noup), 4096, &r) > 0);
    assert_int_equal(lg_ws_check(&r, key, 24), LG_WS_NOUPGRADE);

    assert_int_equal(lg_http_response_parse("SSH-2.0", 7, 4096, &r), -1);
    assert_int_equal(lg_http_response_parse("HTTP/1.1 abc\r\n\r\n", 16, 4096, &r), -1);
    assert_int_equal(lg_http_response_parse("HTTP/1.1 200 OK\r\nX: y", 21, 16, &r), -1);
}

/* ---- report frames --------------------------------------------------- */

static void test_report_roundtrip(void **st)
{
    (void)st;
    lg_hist *cur = malloc(sizeof *cur), *sent = malloc(sizeof *sent);
    lg_hist *acc = malloc(sizeof *acc), *want = malloc(sizeof *want);
    lg_hist_reset(cur);
    lg_hist_reset(sent);
    lg_hist_reset(acc);
    lg_hist_reset(want);
    lg_counters c = { 0 }, got;
    buf b = { 0 };
    int kind;

    /* an empty first report */
    c.target = 10;
    assert_int_equal(lg_report_encode(&b, LG_REPORT_PROGRESS, &c, cur, sent), 0);
    /* then two batches of samples */
    uint64_t s = 5;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 1000; i++) {
            uint64_t v = 100 + lg_rand_next(&s) % 100000;
            lg_hist_record(cur, v);
        }
        c.messages += 1000;
        lg_counters_close(&c, 1008);
        assert_int_equal(lg_report_encode(&b, round ? LG_REPORT_FINAL : LG_REPORT_PROGRESS,
                                          &c, cur, sent), 0);
    }
    lg_hist_merge(want, cur);
    /* feed byte by byte boundaries: an incomplete frame returns 0 */
    size_t off = 0;
    int frames = 0;
    while (off < b.len) {
        assert_int_equal(lg_report_decode(b.data + off, 3, &kind, &got, acc), 0);
        long l = lg_report_decode(b.data + off, b.len - off, &kind, &got, acc);
        assert_true(l > 0);
        off += (size_t)l;
        frames++;
    }
    assert_int_equal(frames, 3);
    assert_int_equal(kind, LG_REPORT_FINAL);
    assert_int_equal(got.messages, 2000);
    assert_int_equal(got.target, 10);
    assert_int_equal(got.close_code[0], 1008);
    assert_int_equal(got.close_count[0], 2);
    assert_memory_equal(acc->counts, want->counts, sizeof acc->counts);
    assert_int_equal(acc->total, 2000);
    assert_int_equal(acc->min, want->min);
    assert_int_equal(acc->max, want->max);
    assert_int_equal(lg_hist_percentile(acc, 99), lg_hist_percentile(want, 99));

    /* corrupt frames are rejected */
    uint32_t bogus = 3;
    memcpy(b.data, &bogus, 4);
    assert_int_equal(lg_report_decode(b.data, b.len, &kind, &got, acc), -1);
    buf_free(&b);
    free(cur);
    free(sent);
    free(acc);
    free(want);
}

static void test_counters_add(void **st)
{
    (void)st;
    lg_counters a = { 0 }, b = { 0 };
    a.messages = 5;
    a.connect_err[LG_CERR_HTTP503] = 2;
    a.ramp_us = 100;
    a.ramp_done = 1;
    lg_counters_close(&a, 1001);
    b.messages = 7;
    b.connect_err[LG_CERR_HTTP503] = 1;
    b.ramp_us = 300;
    b.ramp_done = 1;
    lg_counters_close(&b, 1006);
    lg_counters_close(&b, 1001);
    for (int i = 0; i < LG_CLOSE_SLOTS + 3; i++)
        lg_counters_close(&b, (uint16_t)(4000 + i));
    lg_counters_add(&a, &b);
    assert_int_equal(a.messages, 12);
    assert_int_equal(a.connect_err[LG_CERR_HTTP503], 3);
    assert_int_equal(a.ramp_us, 300);
    assert_int_equal(a.ramp_done, 2);
    assert_int_equal(a.close_code[0], 1001);
    assert_int_equal(a.close_count[0], 2);
    assert_int_equal(a.close_code[1], 1006);
    uint64_t total = a.close_other;
    for (int i = 0; i < LG_CLOSE_SLOTS; i++)
        total += a.close_count[i];
    assert_int_equal(total, 2 + 1 + LG_CLOSE_SLOTS + 3);
    assert_string_equal(lg_cerr_name(LG_CERR_HTTP429), "429");
    assert_string_equal(lg_cerr_name(LG_CERR_RESET), "reset");
    assert_string_equal(lg_cerr_name(LG_CERR_EOF), "eof");
    assert_string_equal(lg_cerr_name(LG_CERR_OTHER), "other");
    assert_string_equal(lg_cerr_name(99), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_buckets),
        cmocka_unit_test(test_hist_uniform),
        cmocka_unit_test(test_hist_skewed),
        cmocka_unit_test(test_hist_merge),
        cmocka_unit_test(test_plan_spread),
        cmocka_unit_test(test_plan_budgets),
        cmocka_unit_test(test_plan_pairs),
        cmocka_unit_test(test_addrs_parse),
        cmocka_unit_test(test_chanset),
        cmocka_unit_test(test_chanset_large),
        cmocka_unit_test(test_scan_live),
        cmocka_unit_test(test_scan_tricky),
        cmocka_unit_test(test_scan_malformed),
        cmocka_unit_test(test_ws_handshake),
        cmocka_unit_test(test_report_roundtrip),
        cmocka_unit_test(test_counters_add),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
