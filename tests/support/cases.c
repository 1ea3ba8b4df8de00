/* Running a chosen subset of a group's cmocka cases (cases.h). */
#include "tests/support/cases.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1 if `name` is a word of the space-separated list. */
static int listed(const char *list, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = list; *p;) {
        p += strspn(p, " \t\n");
        size_t w = strcspn(p, " \t\n");
        if (w == len && w && strncmp(p, name, len) == 0)
            return 1;
        p += w;
    }
    return 0;
}

/* Every word of the list names a case; else complain and return -1. */
static int check_names(const char *var, const char *list, const struct CMUnitTest *tests,
                       size_t n)
{
    int bad = 0;
    for (const char *p = list; *p;) {
        p += strspn(p, " \t\n");
        size_t w = strcspn(p, " \t\n");
        if (!w)
            break;
        size_t i;
        for (i = 0; i < n; i++)
            if (strlen(tests[i].name) == w && strncmp(tests[i].name, p, w) == 0)
                break;
        if (i == n) {
            fprintf(stderr, "%s: no case named %.*s in this test\n", var, (int)w, p);
            bad = 1;
        }
        p += w;
    }
    return bad ? -1 : 0;
}

int tsup_run_cases(const char *group_name, const struct CMUnitTest *tests, size_t n,
                   CMFixtureFunction group_setup, CMFixtureFunction group_teardown)
{
    const char *only = getenv("ODIN_TEST_ONLY");
    const char *skip = getenv("ODIN_TEST_SKIP");
    const char *filter = getenv("ODIN_TEST_FILTER");
    if (only && !*only)
        only = NULL;
    if (skip && !*skip)
        skip = NULL;
    if (filter && *filter)
        cmocka_set_test_filter(filter);
    if (!only && !skip)
        return _cmocka_run_group_tests(group_name, tests, n, group_setup, group_teardown);
    if ((only && check_names("ODIN_TEST_ONLY", only, tests, n) != 0) ||
        (skip && check_names("ODIN_TEST_SKIP", skip, tests, n) != 0))
        return 1;
    struct CMUnitTest *sel = calloc(n ? n : 1, sizeof *sel);
    if (!sel) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (only && !listed(only, tests[i].name))
            continue;
        if (skip && listed(skip, tests[i].name))
            continue;
        sel[k++] = tests[i];
    }
    int rc = 0;
    if (k == 0)
        printf("[==========] %s: no case selected (ODIN_TEST_ONLY/ODIN_TEST_SKIP)\n",
               group_name);
    else
        rc = _cmocka_run_group_tests(group_name, sel, k, group_setup, group_teardown);
    free(sel);
    return rc;
}
