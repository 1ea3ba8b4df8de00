/*
 * Allocation-free JSON validator with the acceptance rules of jansson's
 * json_loadb(buf, len, JSON_DECODE_ANY, &err) (jansson 2.14):
 *   - any JSON value at the top level, surrounded by optional whitespace;
 *   - strings: valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF), no
 *     raw control characters, escapes \" \\ \/ \b \f \n \r \t \uXXXX, UTF-16
 *     surrogates only as valid pairs, \u0000 refused;
 *   - numbers per RFC 8259; integers must fit int64, reals must not
 *     overflow a double (underflow is fine);
 *   - nesting deeper than JSONVAL_MAX_DEPTH refused.
 *
 * Why: validating every record with json_loadb builds and frees a whole
 * tree per record; measured on the 2-core box it was over half of the
 * router's CPU (see docs/architecture.md, "Cost of JSON validation").  This
 * scanner gives the same verdicts (tests/unit/test_router_json.c compares
 * both on a corpus and on random mutations) at a fraction of the cost.
 * VALIDATE_JSON=jansson keeps the json_loadb path.
 */
#ifndef ODIN_COMMON_JSONVAL_H
#define ODIN_COMMON_JSONVAL_H

#include <stddef.h>

#define JSONVAL_MAX_DEPTH 2048

/* 1 if p[0..n) is exactly one JSON value (plus whitespace), else 0. */
int jsonval_valid(const char *p, size_t n);

#endif
