#include "common/jsonval.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef const unsigned char *cur;

static inline cur skip_ws(cur s, cur end)
{
    while (s < end && (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t'))
        s++;
    return s;
}

static int hex4(cur s, cur end, unsigned *out)
{
    if (end - s < 4)
        return 0;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = s[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return 0;
        v = (v << 4) | d;
    }
    *out = v;
    return 1;
}

/* One UTF-8 sequence starting at s (s[0] >= 0x80); returns its length or 0. */
static int utf8_seq(cur s, cur end)
{
    unsigned c = s[0];
    int n;
    uint32_t v;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        v = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        v = c & 0x07;
    } else {
        return 0;
    }
    if (end - s < n)
        return 0;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10FFFF ||
        (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    return n;
}

/* Non-zero if any of the 8 bytes in w is '"', '\\', < 0x20 or >= 0x80
 * (SWAR; false positives only after a true one, which the byte loop sorts
 * out). */
static inline uint64_t special8(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
    return ((q - ones) & ~q & high) | ((b - ones) & ~b & high) |
           ((w - ones * 0x20) & ~w & high) | (w & high);
}

/* s at the opening quote; returns the position after the closing one, or
 * NULL. */
static cur scan_string(cur s, cur end)
{
    s++;
    for (;;) {
        while (end - s >= 8) {
            uint64_t w;
            memcpy(&w, s, 8);
            if (special8(w))
                break;
            s += 8;
        }
        while (s < end && *s >= 0x20 && *s < 0x80 && *s != '"' && *s != '\\')
            s++;
        if (s >= end)
            return NULL;
        unsigned c = *s;
        if (c == '"')
            return s + 1;
        if (c < 0x20)
            return NULL;
        if (c == '\\') {
            if (++s >= end)
                return NULL;
            switch (*s) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                s++;
                break;
            case 'u': {
                unsigned v;
                if (!hex4(s + 1, end, &v))
                    return NULL;
                s += 5;
                if (v == 0)
                    return NULL;   /* JSON_ALLOW_NUL is not set */
                if (v >= 0xD800 && v <= 0xDBFF) {
                    unsigned lo;
                    if (end - s < 6 || s[0] != '\\' || s[1] != 'u' || !hex4(s + 2, end, &lo) ||
                        lo < 0xDC00 || lo > 0xDFFF)
                        return NULL;
                    s += 6;
                } else if (v >= 0xDC00 && v <= 0xDFFF) {
                    return NULL;
                }
                break;
            }
            default:
                return NULL;
            }
            continue;
        }
        int l = utf8_seq(s, end);   /* c >= 0x80 */
        if (!l)
            return NULL;
        s += l;
    }
}

static int is_digit(unsigned c) { return c >= '0' && c <= '9'; }

static cur scan_number(cur s, cur end)
{
    cur start = s;
    int neg = 0;
    if (*s == '-') {
        neg = 1;
        if (++s >= end)
            return NULL;
    }
    cur int_start = s;
    if (*s == '0') {
        s++;
    } else if (*s >= '1' && *s <= '9') {
        while (s < end && is_digit(*s))
            s++;
    } else {
        return NULL;
    }
    size_t int_digits = (size_t)(s - int_start);
    int real = 0, exp = 0;
    if (s < end && *s == '.') {
        s++;
        if (s >= end || !is_digit(*s))
            return NULL;
        while (s < end && is_digit(*s))
            s++;
        real = 1;
    }
    if (s < end && (*s == 'e' || *s == 'E')) {
        s++;
        if (s < end && (*s == '+' || *s == '-'))
            s++;
        if (s >= end || !is_digit(*s))
            return NULL;
        while (s < end && is_digit(*s))
            s++;
        real = exp = 1;
    }
    if (!real) {
        /* must fit int64 (jansson uses strtoll and refuses ERANGE) */
        if (int_digits < 19)
            return s;
        if (int_digits > 19)
            return NULL;
        const char *lim = neg ? "9223372036854775808" : "9223372036854775807";
        return memcmp(int_start, lim, 19) <= 0 ? s : NULL;
    }
    if (!exp && int_digits < 300)
        return s;   /* cannot overflow a double */
    /* rare: let strtod decide whether it overflows */
    size_t len = (size_t)(s - start);
    char stackbuf[128];
    char *tmp = len < sizeof stackbuf ? stackbuf : malloc(len + 1);
    if (!tmp)
        return NULL;
    memcpy(tmp, start, len);
    tmp[len] = '\0';
    double d = strtod(tmp, NULL);
    if (tmp != stackbuf)
        free(tmp);
    return isinf(d) ? NULL : s;
}

static cur scan_literal(cur s, cur end, const char *lit, size_t n)
{
    if ((size_t)(end - s) < n || memcmp(s, lit, n) != 0)
        return NULL;
    return s + n;
}

int jsonval_valid(const char *p, size_t n)
{
    if (!p)
        return 0;
    cur s = (cur)p, end = s + n;
    unsigned char is_obj[JSONVAL_MAX_DEPTH / 8 + 1];
    int depth = 0;   /* open containers */
#define SET_OBJ(d, v) \
    (is_obj[(d) >> 3] = (unsigned char)((is_obj[(d) >> 3] & ~(1u << ((d) & 7))) | ((v) << ((d) & 7))))
#define IS_OBJ(d) ((is_obj[(d) >> 3] >> ((d) & 7)) & 1u)

    s = skip_ws(s, end);
value:
    if (depth + 1 > JSONVAL_MAX_DEPTH || s >= end)
        return 0;
    switch (*s) {
    case '{':
        SET_OBJ(depth, 1u);
        depth++;
        s = skip_ws(s + 1, end);
        if (s < end && *s == '}') {
            s++;
            depth--;
            goto after;
        }
        goto key;
    case '[':
        SET_OBJ(depth, 0u);
        depth++;
        s = skip_ws(s + 1, end);
        if (s < end && *s == ']') {
            s++;
            depth--;
            goto after;
        }
        goto value;
    case '"':
        s = scan_string(s, end);
        break;
    case 't':
        s = scan_literal(s, end, "true", 4);
        break;
    case 'f':
        s = scan_literal(s, end, "false", 5);
        break;
    case 'n':
        s = scan_literal(s, end, "null", 4);
        break;
    default:
        if (*s == '-' || is_digit(*s)) {
            s = scan_number(s, end);
            break;
        }
        return 0;
    }
    if (!s)
        return 0;
after:
    s = skip_ws(s, end);
    if (depth == 0)
        return s == end;
    if (s >= end)
        return 0;
    if (IS_OBJ(depth - 1)) {
        if (*s == ',') {
            s = skip_ws(s + 1, end);
            goto key;
        }
        if (*s == '}') {
            s++;
            depth--;
            goto after;
        }
        return 0;
    }
    if (*s == ',') {
        s = skip_ws(s + 1, end);
        goto value;
    }
    if (*s == ']') {
        s++;
        depth--;
        goto after;
    }
    return 0;
key:
    if (s >= end || *s != '"')
        return 0;
    s = scan_string(s, end);
    if (!s)
        return 0;
    s = skip_ws(s, end);
    if (s >= end || *s != ':')
        return 0;
    s = skip_ws(s + 1, end);
    goto value;
#undef SET_OBJ
#undef IS_OBJ
}
