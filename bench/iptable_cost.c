/* What the per-IP table costs at its bound (issue 19, attack 5): memory and
 * time of WS_IP_TABLE_MAX (default 100,000) entries, the sweep a full table
 * runs at most once a second, a refused new address, a lookup; and how many
 * entries one IPv6 /64 takes (one).  Not built by make:
 *   cc -O2 -std=gnu11 -D_GNU_SOURCE -I. bench/iptable_cost.c build/libodin_shard.a \
 *      build/libodin_common.a -lcrypto -o /tmp/iptable_cost && /tmp/iptable_cost [N]
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "shard/iptable.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)atol(argv[1]) : 100000;
    iptable_conf c = { .max_entries = n, .v6_prefix = 64, .rate = 50, .burst = 200 };
    struct mallinfo2 m0 = mallinfo2();
    iptable *t = iptable_new(&c);
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        uint8_t ip[4] = { 10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i };
        iptable_entry *e = iptable_get(t, ip, 4, 1000, NULL);
        if (!e || !iptable_rate_take(t, e))   /* busy: not sweepable */
            return 1;
    }
    double t1 = now_s();
    struct mallinfo2 m1 = mallinfo2();
    printf("%zu entries: %.1f MiB heap (%.0f bytes each), inserted in %.1f ms\n", n,
           (double)(m1.uordblks - m0.uordblks) / 1048576.0,
           (double)(m1.uordblks - m0.uordblks) / (double)n, (t1 - t0) * 1e3);
    /* a new address against the full table: the first one sweeps (nothing
     * is idle), the next ones within the second are refused at once */
    uint8_t nip[4] = { 11, 0, 0, 1 };
    int err = 0;
    t0 = now_s();
    iptable_entry *e = iptable_get(t, nip, 4, 1001, &err);
    t1 = now_s();
    printf("new address, table full: %s, %.2f ms (with the full-table sweep)\n",
           e ? "ADMITTED" : err == IPTABLE_E_FULL ? "refused" : "?", (t1 - t0) * 1e3);
    enum { R = 1000000 };
    t0 = now_s();
    for (int i = 0; i < R; i++)
        if (iptable_get(t, nip, 4, 1002, &err))
            return 1;
    t1 = now_s();
    printf("new address, table full, no sweep due: refused in %.0f ns\n", (t1 - t0) * 1e9 / R);
    uint8_t kip[4] = { 10, 0, 1, 2 };
    t0 = now_s();
    for (int i = 0; i < R; i++)
        if (!iptable_get(t, kip, 4, 1002, NULL))
            return 1;
    t1 = now_s();
    printf("known address, table full: found in %.0f ns\n", (t1 - t0) * 1e9 / R);
    /* one /64: 65,536 addresses, one entry */
    iptable_conf c6 = { .max_entries = n, .v6_prefix = 64, .rate = 50, .burst = 200 };
    iptable *t6 = iptable_new(&c6);
    int allowed = 0;
    for (int i = 0; i < 65536; i++) {
        uint8_t ip6[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0,
                            (uint8_t)(i >> 8), (uint8_t)i };
        iptable_entry *e6 = iptable_get(t6, ip6, 16, 5000, NULL);
        allowed += e6 && iptable_rate_take(t6, e6);
    }
    printf("65536 addresses of one /64: %zu entry, %d connections allowed (the burst)\n",
           iptable_size(t6), allowed);
    t0 = now_s();
    size_t swept = iptable_sweep(t, 1000000, 0);
    t1 = now_s();
    printf("sweep of %zu idle entries: %.1f ms\n", swept, (t1 - t0) * 1e3);
    iptable_free(t6);
    iptable_free(t);
    return 0;
}
