/*
 * Running a chosen subset of a test file's cmocka cases, so that
 * tools/run-tests.sh can run one file as several jobs ("parts"): a file
 * whose source has lines
 *
 *   odin-test: part NAME [alone] test_a test_b ...
 *
 * becomes one job it/<file>:NAME per such line (with nothing beside it when
 * "alone"), which runs only those cases (ODIN_TEST_ONLY="test_a test_b"),
 * and one job it/<file> with the remaining cases (ODIN_TEST_SKIP = every
 * case named in a part line; run alone when the file also has the line
 * "odin-test: alone").
 *
 * Environment read by tsup_run_cases:
 *   ODIN_TEST_ONLY    space-separated case names: run only these
 *   ODIN_TEST_SKIP    space-separated case names: run all but these
 *   ODIN_TEST_FILTER  a cmocka pattern (cmocka_set_test_filter), as before
 * A name in ODIN_TEST_ONLY or ODIN_TEST_SKIP that is no case of the group is
 * an error (exit status 1): a renamed case cannot silently stop running.
 * When nothing is left to run, the group's setup is not run either and the
 * status is 0.
 */
#ifndef ODIN_TESTS_CASES_H
#define ODIN_TESTS_CASES_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

int tsup_run_cases(const char *group_name, const struct CMUnitTest *tests, size_t n,
                   CMFixtureFunction group_setup, CMFixtureFunction group_teardown);

/* cmocka_run_group_tests_name with the selection above. */
#define TSUP_RUN_CASES(group_name, tests, group_setup, group_teardown)                     \
    tsup_run_cases(group_name, tests, sizeof(tests) / sizeof((tests)[0]), group_setup,     \
                   group_teardown)

#endif
