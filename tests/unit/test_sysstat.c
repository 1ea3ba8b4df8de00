/* shard/sysstat.c: /proc and cgroup parsers behind /health checks.cpu and
 * checks.memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "common/clock.h"
#include "shard/sysstat.h"

static void test_stat(void **state)
{
    uint64_t t = 0;
    /* comm with spaces and a ')' inside; utime 1500, stime 250 */
    const char *s = "1234 (odin shard) x) S 1 1234 1234 0 -1 4194560 500 0 0 0 "
                    "1500 250 0 0 20 0 3 0 100 1000000 300 18446744073709551615";
    assert_int_equal(sysstat_parse_stat(s, &t), 0);
    assert_int_equal(t, 1750);
    assert_int_equal(sysstat_parse_stat("1234 (x) S 1 2", &t), -1);
    assert_int_equal(sysstat_parse_stat("no parens", &t), -1);
    assert_int_equal(sysstat_parse_stat(NULL, &t), -1);
}

static void test_statm_limit_meminfo(void **state)
{
    uint64_t v = 0;
    assert_int_equal(sysstat_parse_statm("5000 1234 300 10 0 900 0\n", &v), 0);
    assert_int_equal(v, 1234);
    assert_int_equal(sysstat_parse_statm("5000", &v), -1);
    assert_int_equal(sysstat_parse_limit("max\n", &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(sysstat_parse_limit("536870912\n", &v), 0);
    assert_int_equal(v, 536870912);
    assert_int_equal(sysstat_parse_limit("x", &v), -1);
    assert_int_equal(sysstat_parse_meminfo("MemTotal:       16314532 kB\n"
                                           "MemFree:  1 kB\n", &v), 0);
    assert_int_equal(v, 16314532ULL * 1024);
    assert_int_equal(sysstat_parse_meminfo("MemFree: 1 kB\n", &v), -1);
}

static void test_sample(void **state)
{
    sysstat s;
    sysstat_cpu cpu = { 0 };
    sysstat_sample(&cpu, &s, 1.0);
    assert_true(s.rss_bytes > 0);
    assert_true(s.cpu_percent >= 0);
    assert_true(s.limit_bytes == 0 || s.mem_percent > 0);
    assert_true(cpu.ms > 0);
    /* no previous sample at all: averaged over the uptime */
    sysstat_sample(NULL, &s, 1.0);
    assert_true(s.rss_bytes > 0);
    assert_true(s.cpu_percent >= 0);
}

/* The previous sample is the caller's: two samplers do not disturb each
 * other, and a baseline taken with uptime 0 reports 0 until 100 ms later. */
static void test_sample_state_is_the_callers(void **state)
{
    sysstat s;
    sysstat_cpu a = { 0 }, b = { 0 };
    sysstat_sample(&a, &s, 0);
    assert_true(a.ms > 0);
    assert_true(s.cpu_percent == 0);
    assert_int_equal(b.ms, 0);            /* untouched by a's sample */
    sysstat_cpu a0 = a;
    sysstat_sample(&a, &s, 0);            /* < 100 ms later: the same figure */
    assert_int_equal(a.ms, a0.ms);
    assert_int_equal(a.ticks, a0.ticks);
    assert_true(s.cpu_percent == a0.pct);
    /* burn CPU for 150 ms: a's next figure covers it */
    uint64_t t0 = clock_mono_ms();
    volatile uint64_t x = 0;
    while (clock_mono_ms() - t0 < 150)
        for (int i = 0; i < 100000; i++)
            x += (uint64_t)i;
    sysstat_sample(&a, &s, 0);
    assert_true(a.ms >= a0.ms + 100);
    assert_true(a.ticks >= a0.ticks);
    assert_true(s.cpu_percent >= 0);
    assert_true(s.cpu_percent == a.pct);
    /* b's first sample with an uptime averages over it, a stays */
    sysstat_cpu a1 = a;
    sysstat_sample(&b, &s, 1000.0);
    assert_true(b.ms > 0);
    assert_int_equal(a.ms, a1.ms);
    assert_true(a.pct == a1.pct);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stat),
        cmocka_unit_test(test_statm_limit_meminfo),
        cmocka_unit_test(test_sample),
        cmocka_unit_test(test_sample_state_is_the_callers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
