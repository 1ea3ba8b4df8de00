/* shard/subs.c: channel index, back-references, token transitions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/subs.h"

typedef struct ev { char tok[80]; int added; } ev;
typedef struct evlog { ev e[64]; int n; } evlog;

static void on_tok(void *ud, const char *t, size_t len, int added)
{
    evlog *l = ud;
    assert_true(l->n < 64);
    snprintf(l->e[l->n].tok, sizeof(l->e[0].tok), "%.*s", (int)len, t);
    l->e[l->n].added = added;
    l->n++;
}

static int add(subs_index *ix, subs_conn *c, void *o, const char *ch)
{
    return subs_add(ix, c, o, ch, strlen(ch));
}

static int rem(subs_index *ix, subs_conn *c, const char *ch)
{
    return subs_remove(ix, c, ch, strlen(ch));
}

static void test_basic(void **state)
{
    evlog l = { .n = 0 };
    subs_index *ix = subs_new(on_tok, &l);
    assert_non_null(ix);
    subs_conn a = { 0 }, b = { 0 };
    int oa, ob;

    assert_int_equal(add(ix, &a, &oa, "BTC.trade"), SUBS_ADDED);
    assert_int_equal(add(ix, &a, &oa, "BTC.trade"), SUBS_EXISTS);
    assert_int_equal(add(ix, &a, &oa, "BTC"), SUBS_E_INVALID);
    assert_int_equal(add(ix, &a, &oa, "B TC.trade"), SUBS_E_INVALID);
    assert_int_equal(add(ix, &a, &oa, "BTC.Trade"), SUBS_E_INVALID);
    assert_int_equal(add(ix, &b, &ob, "BTC.trade"), SUBS_ADDED);
    assert_int_equal(add(ix, &b, &ob, "BTC.analytics"), SUBS_ADDED);
    assert_int_equal(add(ix, &b, &ob, "ETH.trade"), SUBS_ADDED);

    /* token callbacks: first subscriber of BTC (any category), ETH */
    assert_int_equal(l.n, 2);
    assert_string_equal(l.e[0].tok, "BTC");
    assert_int_equal(l.e[0].added, 1);
    assert_string_equal(l.e[1].tok, "ETH");

    assert_int_equal(subs_total(ix), 4);
    assert_int_equal(subs_channels_count(ix), 3);
    assert_int_equal(subs_tokens_count(ix), 2);
    assert_int_equal(subs_token_refs(ix, "BTC", 3), 3);
    assert_int_equal(subs_conn_count(&a), 1);
    assert_int_equal(subs_conn_count(&b), 3);
    assert_true(subs_has(ix, &b, "ETH.trade", 9));
    assert_false(subs_has(ix, &a, "ETH.trade", 9));

    subs_channel *ch = subs_find_parts(ix, "BTC", 3, "trade", 5);
    assert_non_null(ch);
    assert_ptr_equal(ch, subs_find(ix, "BTC.trade", 9));
    size_t n, nl;
    const subs_member *m = subs_channel_members(ch, &n);
    assert_int_equal(n, 2);
    assert_true((m[0].owner == &oa && m[1].owner == &ob) ||
                (m[0].owner == &ob && m[1].owner == &oa));
    const char *name = subs_channel_name(ch, &nl);
    assert_int_equal(nl, 9);
    assert_memory_equal(name, "BTC.trade", 9);
    assert_null(subs_find_parts(ix, "BTC", 3, "social", 6));

    /* removing BTC's channels one by one: callback only at the last */
    assert_int_equal(rem(ix, &a, "BTC.trade"), 1);
    assert_int_equal(rem(ix, &a, "BTC.trade"), 0);
    assert_int_equal(rem(ix, &b, "BTC.trade"), 1);
    assert_null(subs_find(ix, "BTC.trade", 9));
    assert_int_equal(l.n, 2);
    assert_int_equal(rem(ix, &b, "BTC.analytics"), 1);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.e[2].tok, "BTC");
    assert_int_equal(l.e[2].added, 0);
    assert_int_equal(subs_token_refs(ix, "BTC", 3), 0);

    subs_remove_all(ix, &b);
    assert_int_equal(l.n, 4);
    assert_string_equal(l.e[3].tok, "ETH");
    assert_int_equal(l.e[3].added, 0);
    assert_int_equal(subs_total(ix), 0);
    assert_int_equal(subs_channels_count(ix), 0);
    assert_int_equal(subs_tokens_count(ix), 0);
    assert_null(b.links);
    subs_remove_all(ix, &a);
    subs_free(ix);
    subs_free(NULL);
}

/* Random operations against a brute-force model; checks every member's
 * back-reference after each step. */
#define NCONN 12
#define NCH 9
static void check_invariants(subs_index *ix, subs_conn *c, int model[NCONN][NCH],
                             char names[NCH][16], int owners[NCONN])
{
    size_t total = 0;
    for (int j = 0; j < NCH; j++) {
        subs_channel *ch = subs_find(ix, names[j], strlen(names[j]));
        int cnt = 0;
        for (int i = 0; i < NCONN; i++)
            cnt += model[i][j];
        total += (size_t)cnt;
        if (cnt == 0) {
            assert_null(ch);
            continue;
        }
        assert_non_null(ch);
        size_t n;
        const subs_member *m = subs_channel_members(ch, &n);
        assert_int_equal(n, cnt);
        for (size_t k = 0; k < n; k++) {
            int i = (int)((int *)m[k].owner - owners);
            assert_true(i >= 0 && i < NCONN);
            assert_true(model[i][j]);
            /* the owner's link points back at this slot */
            assert_true(m[k].link < c[i].n);
            assert_ptr_equal(c[i].links[m[k].link].ch, ch);
            assert_int_equal(c[i].links[m[k].link].pos, k);
        }
    }
    assert_int_equal(subs_total(ix), total);
    for (int i = 0; i < NCONN; i++) {
        int cnt = 0;
        for (int j = 0; j < NCH; j++)
            cnt += model[i][j];
        assert_int_equal(subs_conn_count(&c[i]), cnt);
    }
}

static void test_random_model(void **state)
{
    evlog l = { .n = 0 };
    subs_index *ix = subs_new(NULL, &l);
    subs_conn c[NCONN];
    int owners[NCONN];
    int model[NCONN][NCH];
    char names[NCH][16];
    memset(c, 0, sizeof(c));
    memset(model, 0, sizeof(model));
    static const char *toks[] = { "BTC", "ETH", "SOL" };
    static const char *cats[] = { "trade", "analytics", "social" };
    for (int j = 0; j < NCH; j++)
        snprintf(names[j], sizeof(names[j]), "%s.%s", toks[j / 3], cats[j % 3]);
    unsigned seed = 12345;
    for (int step = 0; step < 4000; step++) {
        seed = seed * 1103515245u + 12345u;
        int i = (int)((seed >> 8) % NCONN);
        int j = (int)((seed >> 16) % NCH);
        int op = (int)((seed >> 24) % 7);
        if (op < 4) {
            int r = add(ix, &c[i], &owners[i], names[j]);
            assert_int_equal(r, model[i][j] ? SUBS_EXISTS : SUBS_ADDED);
            model[i][j] = 1;
        } else if (op < 6) {
            assert_int_equal(rem(ix, &c[i], names[j]), model[i][j]);
            model[i][j] = 0;
        } else {
            subs_remove_all(ix, &c[i]);
            memset(model[i], 0, sizeof(model[i]));
        }
        check_invariants(ix, c, model, names, owners);
        for (int t = 0; t < 3; t++) {
            size_t want = 0;
            for (int a = 0; a < NCONN; a++)
                for (int k = 0; k < 3; k++)
                    want += (size_t)model[a][t * 3 + k];
            assert_int_equal(subs_token_refs(ix, toks[t], 3), want);
        }
    }
    for (int i = 0; i < NCONN; i++)
        subs_remove_all(ix, &c[i]);
    assert_int_equal(subs_tokens_count(ix), 0);
    subs_free(ix);
}

static void count_tok(void *ud, const char *t, size_t len)
{
    (*(int *)ud)++;
}

static void test_many_and_foreach(void **state)
{
    subs_index *ix = subs_new(NULL, NULL);
    subs_conn c = { 0 };
    int o;
    char ch[32];
    for (int i = 0; i < 500; i++) {
        snprintf(ch, sizeof(ch), "T%d.trade", i);
        assert_int_equal(add(ix, &c, &o, ch), SUBS_ADDED);
    }
    int n = 0;
    subs_foreach_token(ix, count_tok, &n);
    assert_int_equal(n, 500);
    for (int i = 0; i < 500; i += 2) {
        snprintf(ch, sizeof(ch), "T%d.trade", i);
        assert_int_equal(rem(ix, &c, ch), 1);
    }
    assert_int_equal(subs_tokens_count(ix), 250);
    /* subs_free with subscriptions left frees index memory; the conn's
     * link array is the caller's */
    free(c.links);
    subs_free(ix);
}

typedef struct chan_sum {
    size_t channels, subscribers, btc;
} chan_sum;

static void count_chan(void *ud, const char *ch, size_t len, size_t n)
{
    chan_sum *s = ud;
    s->channels++;
    s->subscribers += n;
    if (len == 9 && memcmp(ch, "BTC.trade", 9) == 0)
        s->btc = n;
}

/* subs_foreach_channel (the admin API's channel listing): every channel
 * once, with its subscriber count, gone when its last subscriber goes. */
static void test_foreach_channel(void **state)
{
    (void)state;
    subs_index *ix = subs_new(NULL, NULL);
    subs_conn c[3] = { { 0 } };
    int o[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(add(ix, &c[i], &o[i], "BTC.trade"), SUBS_ADDED);
    assert_int_equal(add(ix, &c[0], &o[0], "ETH.trade"), SUBS_ADDED);
    assert_int_equal(add(ix, &c[1], &o[1], "BTC.liquidity"), SUBS_ADDED);
    chan_sum s = { 0 };
    subs_foreach_channel(ix, count_chan, &s);
    assert_int_equal(s.channels, 3);
    assert_int_equal(s.subscribers, 5);
    assert_int_equal(s.btc, 3);
    subs_remove_all(ix, &c[1]);
    memset(&s, 0, sizeof s);
    subs_foreach_channel(ix, count_chan, &s);
    assert_int_equal(s.channels, 2);
    assert_int_equal(s.subscribers, 3);
    assert_int_equal(s.btc, 2);
    subs_remove_all(ix, &c[0]);
    subs_remove_all(ix, &c[2]);
    memset(&s, 0, sizeof s);
    subs_foreach_channel(ix, count_chan, &s);
    assert_int_equal(s.channels, 0);
    subs_free(ix);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_random_model),
        cmocka_unit_test(test_many_and_foreach),
        cmocka_unit_test(test_foreach_channel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
