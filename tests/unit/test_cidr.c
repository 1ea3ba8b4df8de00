/* shard/cidr: CIDR list parsing and matching (WS_PROXY_TRUSTED, ADMIN_ALLOW). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <arpa/inet.h>

#include "shard/cidr.h"

static void test_cidr(void **st)
{
    (void)st;
    cidr_list l;
    char err[128];
    assert_int_equal(cidr_list_parse("10.0.0.0/8, 192.168.1.7,2001:db8::/32,::1", &l,
                                     err, sizeof err), 0);
    assert_int_equal(l.n, 4);
    uint8_t a[16];
    inet_pton(AF_INET, "10.200.3.4", a);
    assert_int_equal(cidr_list_match(&l, a, 4), 1);
    inet_pton(AF_INET, "11.0.0.1", a);
    assert_int_equal(cidr_list_match(&l, a, 4), 0);
    inet_pton(AF_INET, "192.168.1.7", a);
    assert_int_equal(cidr_list_match(&l, a, 4), 1);
    inet_pton(AF_INET, "192.168.1.8", a);
    assert_int_equal(cidr_list_match(&l, a, 4), 0);
    inet_pton(AF_INET6, "::ffff:10.1.2.3", a);    /* v4-mapped */
    assert_int_equal(cidr_list_match(&l, a, 16), 1);
    inet_pton(AF_INET6, "2001:db8:ffff::1", a);
    assert_int_equal(cidr_list_match(&l, a, 16), 1);
    inet_pton(AF_INET6, "2001:db9::1", a);
    assert_int_equal(cidr_list_match(&l, a, 16), 0);
    inet_pton(AF_INET6, "::1", a);
    assert_int_equal(cidr_list_match(&l, a, 16), 1);
    cidr_list_free(&l);
    assert_int_equal(cidr_list_parse("172.28.0.0/12", &l, err, sizeof err), 0);
    inet_pton(AF_INET, "172.31.255.255", a);   /* host bits of the entry cleared */
    assert_int_equal(cidr_list_match(&l, a, 4), 1);
    inet_pton(AF_INET, "172.32.0.0", a);
    assert_int_equal(cidr_list_match(&l, a, 4), 0);
    cidr_list_free(&l);
    assert_int_equal(cidr_list_parse("0.0.0.0/0", &l, err, sizeof err), 0);
    assert_int_equal(cidr_list_match(&l, a, 4), 1);
    cidr_list_free(&l);
    assert_int_equal(cidr_list_parse("", &l, err, sizeof err), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(cidr_list_match(&l, a, 4), 0);
    assert_int_equal(cidr_list_parse("10.0.0.0/33", &l, err, sizeof err), -1);
    assert_int_equal(cidr_list_parse("10.0.0.0/8,nope", &l, err, sizeof err), -1);
    assert_non_null(strstr(err, "'nope'"));
    assert_int_equal(cidr_list_parse("::1/129", &l, err, sizeof err), -1);
    assert_int_equal(cidr_list_parse("10.0.0.0/", &l, err, sizeof err), -1);
    cidr_list_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cidr),
    };
    return cmocka_run_group_tests_name("cidr", tests, NULL, NULL);
}
