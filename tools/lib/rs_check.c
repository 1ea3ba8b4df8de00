#include "tools/lib/rs_check.h"

#include <math.h>
#include <stdlib.h>

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void rs_gaps(const int64_t *expected, size_t ne, int64_t *recv, size_t nr,
             rs_gap_counts *out)
{
    out->missing = out->dups = out->unexpected = 0;
    if (nr > 1)
        qsort(recv, nr, sizeof *recv, cmp_i64);
    size_t i = 0, j = 0;
    while (i < ne || j < nr) {
        if (j >= nr || (i < ne && expected[i] < recv[j])) {
            out->missing++;
            i++;
            continue;
        }
        /* recv[j] and its repeats */
        size_t k = j + 1;
        while (k < nr && recv[k] == recv[j])
            k++;
        out->dups += (long)(k - j - 1);
        if (i < ne && expected[i] == recv[j])
            i++;
        else
            out->unexpected++;
        j = k;
    }
}

int rs_utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) {
            len = 2; cp = c & 0x1f; min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3; cp = c & 0x0f; min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4; cp = c & 0x07; min = 0x10000;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

double rs_quantile(double *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_dbl);
    size_t rank = (size_t)ceil(q * (double)n);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}
