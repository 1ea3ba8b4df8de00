/* common/procmetrics.c: /proc parsers, sampling this process, rendering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/procmetrics.h"

static void test_parse(void **st)
{
    (void)st;
    /* a command name with spaces and a ')' must not shift the fields */
    const char *stat = "1234 (odin ) shard) S 1 1234 1234 0 -1 4194560 900 0 0 0 "
                       "250 50 0 0 20 0 3 0 7777 123456789 2048 18446744073709551615";
    uint64_t cpu, start;
    assert_int_equal(procmetrics_parse_stat(stat, &cpu, &start), 0);
    assert_int_equal(cpu, 300);
    assert_int_equal(start, 7777);
    assert_int_equal(procmetrics_parse_stat("1234 (x) S 1 2 3", &cpu, &start), -1);
    assert_int_equal(procmetrics_parse_stat("no paren", &cpu, &start), -1);
    assert_int_equal(procmetrics_parse_stat(NULL, &cpu, &start), -1);
    uint64_t bt;
    assert_int_equal(procmetrics_parse_btime("cpu  1 2 3\nintr 5\nbtime 1700000000\n"
                                             "processes 9\n", &bt), 0);
    assert_int_equal(bt, 1700000000);
    assert_int_equal(procmetrics_parse_btime("cpu 1\n", &bt), -1);
}

static void test_sample_render(void **st)
{
    (void)st;
    procmetrics p;
    procmetrics_sample(&p);
    assert_true(p.open_fds >= 3);
    assert_true(p.rss_bytes > 0);
    double now = (double)time(NULL);
    assert_true(p.start_time_s > now - 3600 && p.start_time_s <= now + 2);
    buf b = { 0 };
    assert_int_equal(procmetrics_render(&b, &p, "odin-test"), 0);
    assert_int_equal(buf_append(&b, "", 1), 0);
    const char *t = b.data;
    assert_non_null(strstr(t, "\nprocess_open_fds "));
    assert_non_null(strstr(t, "\nprocess_max_fds "));
    assert_non_null(strstr(t, "\nprocess_resident_memory_bytes "));
    assert_non_null(strstr(t, "# TYPE process_cpu_seconds_total counter\n"));
    assert_non_null(strstr(t, "\nprocess_start_time_seconds "));
    assert_non_null(strstr(t, "odin_build_info{version=\""));
    assert_non_null(strstr(t, "\",program=\"odin-test\"} 1\n"));
    assert_true(strlen(procmetrics_version()) > 0);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_sample_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
