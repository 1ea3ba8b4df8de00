/*
 * Several routers in one consumer group, end to end (docs/scaling.md,
 * docs/reliability.md guarantee 7b): redis-server, odin-devbroker, three
 * odin-router processes in one group, four odin-shard processes and real
 * WebSocket clients on every shard.
 *
 * The stream (tests/support/stream.h) produces numbered records for 8
 * tokens, two per partition of a 4-partition topic; every token is held on
 * two shards (one also twice on one shard), every shard has clients.
 *
 *  phase A  the three routers split the partitions (router_assigned_partitions
 *           > 0 on each, sum 4); every client gets every record of its
 *           tokens exactly once.
 *  probe    one record per partition, with the stream paused, shows which
 *           router consumes it (router_records_total): the owner map.
 *  phase B  the router owning the most partitions is SIGKILLed mid-stream;
 *           the two survivors take every partition; every client still has
 *           every record (duplicates allowed and counted).  Recovery: from
 *           the kill until the first record produced after it, on each of the
 *           killed router's partitions, reached every client of its tokens.
 *
 * The devbroker (librdkafka 2.0.2's mock) moves a dead member's partitions
 * only after its session timeout, so the routers run with
 * session.timeout.ms=3000 (its lowest workable value, docs/reliability.md).
 * Waiting is on events only (metrics, Redis keys, records).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "tests/support/rtsup.h"
#include "tests/support/shardsup.h"
#include "tests/support/stream.h"
#include "tests/support/support.h"
#include "tests/support/cases.h"

#define T_WAIT 30000
#define RATE 40              /* records per second per token */
#define NRT 3                /* routers */
#define NSH 4                /* shards */
#define NPART 4              /* partitions of the auto-created topic */
#define NTOK 8               /* tokens: token t on partition t % 4 */

typedef struct group {
    rtsup_router r[NRT];
    int alive[NRT];
} group;

static double router_metric(const rtsup_router *r, const char *series)
{
    return rtsup_metric(r->http_port, series);
}

static double partitions(const rtsup_router *r)
{
    return router_metric(r, "router_assigned_partitions");
}

/* 1 if the live routers together own exactly the NPART partitions and
 * each owns at least one, else 0. */
static int split_over_live(void *arg)
{
    group *g = arg;
    double sum = 0;
    for (int i = 0; i < NRT; i++) {
        if (!g->alive[i])
            continue;
        double v = partitions(&g->r[i]);
        if (v < 1)
            return 0;
        sum += v;
    }
    return sum == NPART;
}

/* Partition counts of the routers as "2/1/1" ("-" for a dead one). */
static void partition_counts(group *g, char *out, size_t n)
{
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < NRT && len < n; i++) {
        if (g->alive[i])
            len += (size_t)snprintf(out + len, n - len, "%s%.0f", i ? "/" : "",
                                    partitions(&g->r[i]));
        else
            len += (size_t)snprintf(out + len, n - len, "%s-", i ? "/" : "");
    }
}

typedef struct probe_arg {
    group *g;
    double before[NRT];
    int owner;
} probe_arg;

/* 1 once a live router consumed one more record than before (sets owner). */
static int probe_consumed(void *arg)
{
    probe_arg *a = arg;
    for (int i = 0; i < NRT; i++)
        if (a->g->alive[i] && router_metric(&a->g->r[i], "router_records_total") > a->before[i]) {
            a->owner = i;
            return 1;
        }
    return 0;
}

/* With nothing else in flight, produce one record per partition and see
 * which router consumes it: owner[p]. */
static void probe_owners(stream *s, group *g, int owner[NPART])
{
    char key[32];
    snprintf(key, sizeof key, "PROBE%d", (int)getpid());
    for (int p = 0; p < NPART; p++) {
        probe_arg a = { g, { 0 }, -1 };
        for (int i = 0; i < NRT; i++)
            a.before[i] = g->alive[i] ? router_metric(&g->r[i], "router_records_total") : 0;
        rtsup_produce(s->p, s->topic, p, key, strlen(key), "{}", 2);
        assert_int_equal(rtsup_producer_flush(s->p), 0);
        assert_true(tsup_wait_until(probe_consumed, &a, T_WAIT));
        owner[p] = a.owner;
    }
}

typedef struct recovery_arg {
    stream *s;
    group *g;
    int mark[NTOK];              /* first number produced after the kill */
    int watch[NPART];            /* partitions of the killed router */
    uint64_t t_kill;
    long rec_ms[NPART];          /* -1 until that partition flows again */
} recovery_arg;

/* 1 if every live client of every token of partition p has record mark. */
static int partition_flows(recovery_arg *a, int p)
{
    stream *s = a->s;
    for (int t = 0; t < s->ntok; t++) {
        if (s->part[t] != p)
            continue;
        for (int i = 0; i < s->ncl; i++) {
            stream_client *c = s->cl[i];
            if (!c->gone && c->want[t] && !c->seen[t][a->mark[t]])
                return 0;
        }
    }
    return 1;
}

/* Records each partition's recovery time; 1 once the watched ones flow. */
static int recovered(void *arg)
{
    recovery_arg *a = arg;
    int done = 1;
    for (int p = 0; p < NPART; p++) {
        if (a->rec_ms[p] < 0 && partition_flows(a, p))
            a->rec_ms[p] = (long)(clock_mono_ms() - a->t_kill);
        if (a->watch[p] && a->rec_ms[p] < 0)
            done = 0;
    }
    return done;
}

/* Tracks recovery; 1 once the live routers own every partition. */
static int survivors_own_all(void *arg)
{
    recovery_arg *a = arg;
    recovered(a);
    return split_over_live(a->g);
}

/* Every live client got every number of its tokens (0 gaps); with `once`,
 * each exactly one time. */
static void assert_complete(stream *s, int once)
{
    for (int i = 0; i < s->ncl; i++) {
        stream_client *c = s->cl[i];
        assert_false(c->gone);
        for (int t = 0; t < s->ntok; t++) {
            if (!c->want[t])
                continue;
            assert_int_equal(stream_distinct(c, t, s->next[t]), s->next[t]);
            if (once) {
                assert_int_equal(c->recv[t], s->next[t]);
                assert_int_equal(c->dups[t], 0);
            }
        }
    }
}

static void test_three_routers_one_killed(void **state)
{
    tsup_redis red;
    assert_int_equal(tsup_redis_start(&red), 0);
    stream s;
    assert_int_equal(stream_init(&s, tsup_env("ODIN_KAFKA_BROKERS"), "mr", NTOK, RATE), 0);
    ssup_shard sh[NSH];
    for (int i = 0; i < NSH; i++)
        assert_int_equal(stream_shard_start(&sh[i], "mr", red.url), 0);

    /* three routers, one group, each with its own ROUTER_ID */
    char grp[128];
    snprintf(grp, sizeof grp, "%s", rtsup_unique("g"));
    const char *opts = "KAFKA_OPTIONS=topic.metadata.refresh.interval.ms=1000,"
                       "session.timeout.ms=3000,heartbeat.interval.ms=300";
    group g;
    uint64_t t_start = clock_mono_ms();
    for (int i = 0; i < NRT; i++) {
        char id[64];
        snprintf(id, sizeof id, "ROUTER_ID=mr-%d-%d", (int)getpid(), i + 1);
        const char *more[] = { id, opts, NULL };
        assert_int_equal(stream_router_start(&g.r[i], &s, red.url, grp, more), 0);
        g.alive[i] = 1;
    }

    /* clients on every shard; every token on two shards, TA twice on s0 */
    static const struct { const char *name; int shard; int toks[4]; } cls[] = {
        { "s0:TA+TB+TC", 0, { 0, 1, 2, -1 } },
        { "s0:TA+TE", 0, { 0, 4, -1 } },
        { "s1:TC+TD", 1, { 2, 3, -1 } },
        { "s1:TF+TG", 1, { 5, 6, -1 } },
        { "s2:TE+TF", 2, { 4, 5, -1 } },
        { "s2:TA+TH", 2, { 0, 7, -1 } },
        { "s3:TG+TH", 3, { 6, 7, -1 } },
        { "s3:TB+TD", 3, { 1, 3, -1 } },
    };
    const int ncls = (int)(sizeof cls / sizeof cls[0]);
    for (int i = 0; i < ncls; i++) {
        assert_non_null(stream_client_new(&s, cls[i].name, sh[cls[i].shard].port, cls[i].toks));
        for (int k = 0; cls[i].toks[k] >= 0; k++)
            assert_true(stream_wait_route(red.url, s.tok[cls[i].toks[k]], sh[cls[i].shard].id,
                                          T_WAIT));
    }
    for (int i = 0; i < NRT; i++)
        assert_true(rtsup_wait_metric_eq(g.r[i].http_port, "router_shards_connected", NSH,
                                         T_WAIT));
    /* the partitions are split: every router owns some, together all */
    assert_true(tsup_wait_until(split_over_live, &g, 2 * T_WAIT));
    long group_ms = (long)(clock_mono_ms() - t_start);
    char before[64];
    partition_counts(&g, before, sizeof before);

    /* ---- phase A: all three routers up, exactly once --------------------- */
    stream_start(&s);
    stream_for(&s, 3000);
    assert_true(split_over_live(&g));     /* no rebalance meanwhile */
    long gaps_a = stream_finish(&s, "multi_router_phase_a", 0);
    stream_totals ta;
    stream_totals_get(&s, &ta);
    assert_int_equal(gaps_a, 0);
    assert_int_equal(ta.dups, 0);
    assert_int_equal(ta.received, ta.sent);
    assert_complete(&s, 1);

    /* which router owns which partition */
    int owner[NPART], owned[NRT] = { 0 };
    probe_owners(&s, &g, owner);
    for (int p = 0; p < NPART; p++)
        owned[owner[p]]++;
    int victim = 0;
    for (int i = 0; i < NRT; i++) {
        assert_int_equal(owned[i], partitions(&g.r[i]));   /* the probe agrees */
        assert_true(owned[i] >= 1);
        if (owned[i] > owned[victim])
            victim = i;
    }
    char owners[64];
    size_t ol = 0;
    for (int p = 0; p < NPART; p++)
        ol += (size_t)snprintf(owners + ol, sizeof owners - ol, "%sp%d:r%d", p ? "," : "", p,
                               owner[p] + 1);

    /* ---- phase B: the router owning the most partitions is SIGKILLed ------- */
    stream_start(&s);
    stream_for(&s, 1500);
    recovery_arg ra = { .s = &s, .g = &g };
    for (int p = 0; p < NPART; p++) {
        ra.watch[p] = owner[p] == victim;
        ra.rec_ms[p] = -1;
    }
    for (int t = 0; t < s.ntok; t++)
        ra.mark[t] = s.next[t];
    assert_int_equal(kill(g.r[victim].pid, SIGKILL), 0);
    ra.t_kill = clock_mono_ms();
    rtsup_router_stop(&g.r[victim]);       /* reaps it */
    g.alive[victim] = 0;
    /* the survivors own every partition */
    assert_true(stream_until(&s, survivors_own_all, &ra, T_WAIT));
    long moved_ms = (long)(clock_mono_ms() - ra.t_kill);
    assert_true(stream_until(&s, recovered, &ra, T_WAIT));
    long recovery_ms = 0;
    for (int p = 0; p < NPART; p++)
        if (ra.watch[p] && ra.rec_ms[p] > recovery_ms)
            recovery_ms = ra.rec_ms[p];
    stream_for(&s, 1500);
    char after[64];
    partition_counts(&g, after, sizeof after);
    long gaps = stream_finish(&s, "multi_router_phase_b", recovery_ms);
    stream_totals tb;
    stream_totals_get(&s, &tb);

    char recs[128];
    size_t rl = 0;
    for (int p = 0; p < NPART; p++)
        rl += (size_t)snprintf(recs + rl, sizeof recs - rl, "%sp%d:%ld%s", p ? "," : "", p,
                               ra.rec_ms[p], ra.watch[p] ? "*" : "");
    printf("figures: test=multi_router routers=%d shards=%d clients=%d tokens=%d rate=%d/s "
           "group_formed_ms=%ld partitions_before=%s owners=%s killed=r%d\n",
           NRT, NSH, s.ncl, NTOK, RATE, group_ms, before, owners, victim + 1);
    printf("figures: test=multi_router phase=A sent=%ld received=%ld gaps=%ld duplicates=%ld\n",
           ta.sent, ta.received, ta.gaps, ta.dups);
    printf("figures: test=multi_router phase=B sent=%ld received=%ld gaps=%ld duplicates=%ld "
           "partitions_after=%s survivors_own_all_ms=%ld recovery_ms=%ld "
           "per_partition_ms=%s (* = killed router's)\n",
           tb.sent - ta.sent, tb.received - ta.received, tb.gaps, tb.dups - ta.dups, after,
           moved_ms, recovery_ms, recs);
    for (int i = 0; i < NRT; i++)
        if (g.alive[i])
            printf("router: test=multi_router r%d records=%.0f drops_shard_down=%.0f "
                   "drops_no_shard=%.0f fallback=%.0f holds=%.0f\n", i + 1,
                   router_metric(&g.r[i], "router_records_total"),
                   router_metric(&g.r[i], "router_drops_total{reason=\"shard_down\"}"),
                   router_metric(&g.r[i], "router_drops_total{reason=\"no_shard\"}"),
                   router_metric(&g.r[i], "router_dispatch_total{mode=\"fallback\"}"),
                   router_metric(&g.r[i], "router_holds_total"));
    fflush(stdout);
    assert_int_equal(gaps, 0);
    assert_int_equal(tb.gaps, 0);
    assert_complete(&s, 0);
    assert_true(split_over_live(&g));      /* the survivors still own all */

    for (int i = 0; i < NRT; i++)
        if (g.alive[i])
            assert_int_equal(rtsup_router_stop(&g.r[i]), 0);
    stream_free(&s);                       /* clients first: shards drain them */
    for (int i = 0; i < NSH; i++)
        ssup_shard_stop(&sh[i], SIGTERM, 5000);
    tsup_redis_stop(&red);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_routers_one_killed),
    };
    signal(SIGPIPE, SIG_IGN);
    return TSUP_RUN_CASES("multi_router", tests, NULL, NULL);
}
