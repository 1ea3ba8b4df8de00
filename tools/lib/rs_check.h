/*
 * odin-resumestorm's pure parts (tools/resumestorm): the exact count of
 * records missing and duplicated for one client, UTF-8 validation of text
 * frames, percentiles.  No I/O.
 */
#ifndef ODIN_TOOLS_RS_CHECK_H
#define ODIN_TOOLS_RS_CHECK_H

#include <stddef.h>
#include <stdint.h>

typedef struct rs_gap_counts {
    long missing;       /* expected offsets never received */
    long dups;          /* receipts beyond the first of an offset */
    long unexpected;    /* received offsets not in the expected set */
} rs_gap_counts;

/*
 * Compare what a client received with what it should have received.
 * `expected` is sorted ascending without repeats (the offsets Kafka holds
 * for the client's token, in the window the client is answerable for);
 * `recv` is every offset the client received, in any order, repeats
 * included (sorted in place).  Fills *out.
 */
void rs_gaps(const int64_t *expected, size_t ne, int64_t *recv, size_t nr,
             rs_gap_counts *out);

/* 1 if p[0..n) is valid UTF-8 (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF), else 0. */
int rs_utf8_valid(const uint8_t *p, size_t n);

/* The q-quantile (0..1, nearest rank) of v[0..n) (sorted in place); 0 when
 * n is 0. */
double rs_quantile(double *v, size_t n, double q);

#endif
