#include "tools/lib/lg_scan.h"

#include <stdlib.h>
#include <string.h>

enum key_id { K_NONE, K_TYPE, K_CHANNEL, K_SEQ, K_TS, K_DATA, K_PUBLISH_US, K_TOKEN_SEQ };

static int keyeq(const char *s, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n == l && memcmp(s, lit, l) == 0;
}

/* Position after the closing quote of the string starting at p[i] == '"',
 * or 0 if unterminated.  *esc set if a backslash was seen. */
static size_t skip_string(const char *p, size_t n, size_t i, int *esc)
{
    for (i++; i < n; i++) {
        if (p[i] == '\\') {
            *esc = 1;
            i++;
            continue;
        }
        if (p[i] == '"')
            return i + 1;
    }
    return 0;
}

/* Parse a JSON number at p[i..n) into an integer (a fraction or exponent
 * goes through strtod and is truncated toward zero).  Returns the index
 * after the number token; *ok = 0 if there was no valid number. */
static size_t parse_int(const char *p, size_t n, size_t i, int64_t *out, int *ok)
{
    size_t start = i;
    int neg = 0, real = 0;
    *ok = 0;
    if (i < n && p[i] == '-') {
        neg = 1;
        i++;
    }
    uint64_t v = 0;
    size_t d0 = i;
    while (i < n && p[i] >= '0' && p[i] <= '9') {
        if (v < UINT64_C(922337203685477580))
            v = v * 10 + (uint64_t)(p[i] - '0');
        i++;
    }
    if (i == d0)
        return i;
    if (i < n && p[i] == '.') {
        real = 1;
        i++;
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        real = 1;
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
    }
    if (real) {
        char tmp[64];
        size_t l = i - start;
        if (l >= sizeof tmp)
            return i;
        memcpy(tmp, p + start, l);
        tmp[l] = '\0';
        double d = strtod(tmp, NULL);
        if (!(d > -9.2e18 && d < 9.2e18))
            return i;
        *out = (int64_t)d;
    } else {
        *out = neg ? -(int64_t)v : (int64_t)v;
    }
    *ok = 1;
    return i;
}

static int all_found(const lg_msg *m)
{
    return m->has_type && m->has_channel && m->has_seq && m->has_ts && m->has_publish_us &&
           m->has_token_seq;
}

static int scan(const char *p, size_t n, lg_msg *m, int early)
{
    memset(m, 0, sizeof *m);
    /* container stack: 1 = object, 0 = array */
    unsigned char obj[LG_SCAN_MAX_DEPTH + 1];
    int depth = 0;
    int expect_key = 0;            /* in an object, before a key */
    enum key_id pending = K_NONE;  /* key whose value comes next */
    int data_depth = 0;            /* >0: inside top-level data, which opened at this depth */
    int data_next = 0;             /* the next value is top-level data */
    int closed_top = 0;
    size_t i = 0;
    while (i < n) {
        char c = p[i];
        switch (c) {
        case ' ': case '\t': case '\r': case '\n': case ':':
            i++;
            continue;
        case ',':
            if (depth > 0 && obj[depth])
                expect_key = 1;
            pending = K_NONE;
            i++;
            continue;
        case '{':
        case '[':
            if (closed_top || depth >= LG_SCAN_MAX_DEPTH)
                return -1;
            depth++;
            obj[depth] = c == '{';
            expect_key = obj[depth];
            if (data_next) {
                data_depth = depth;
                data_next = 0;
            }
            pending = K_NONE;
            i++;
            continue;
        case '}':
        case ']':
            if (depth == 0 || obj[depth] != (c == '}'))
                return -1;
            if (data_depth == depth)
                data_depth = 0;
            depth--;
            expect_key = 0;
            pending = K_NONE;
            if (depth == 0)
                closed_top = 1;
            i++;
            continue;
        case '"': {
            int esc = 0;
            size_t end = skip_string(p, n, i, &esc);
            if (!end)
                return -1;
            const char *s = p + i + 1;
            size_t sl = end - i - 2;
            if (depth == 0)
                return -1;
            if (expect_key) {
                expect_key = 0;
                pending = K_NONE;
                /* the key must be followed by ':' */
                size_t j = end;
                while (j < n && (p[j] == ' ' || p[j] == '\t' || p[j] == '\r' || p[j] == '\n'))
                    j++;
                if (j >= n || p[j] != ':')
                    return -1;
                if (depth == 1 && !esc) {
                    if (keyeq(s, sl, "type")) pending = K_TYPE;
                    else if (keyeq(s, sl, "channel")) pending = K_CHANNEL;
                    else if (keyeq(s, sl, "seq")) pending = K_SEQ;
                    else if (keyeq(s, sl, "ts")) pending = K_TS;
                    else if (keyeq(s, sl, "data")) { pending = K_DATA; data_next = 1; }
                } else if (data_depth && !esc) {
                    if (keyeq(s, sl, "publish_us") && !m->has_publish_us)
                        pending = K_PUBLISH_US;
                    else if (keyeq(s, sl, "token_seq") && !m->has_token_seq)
                        pending = K_TOKEN_SEQ;
                }
                i = j + 1;
                continue;
            }
            /* a string value */
            if (pending == K_TYPE && !m->has_type) {
                m->type = s; m->type_len = sl; m->has_type = 1;
            } else if (pending == K_CHANNEL && !m->has_channel) {
                m->channel = s; m->channel_len = sl; m->has_channel = 1;
                m->channel_escaped = esc;
            } else if ((pending == K_PUBLISH_US || pending == K_TOKEN_SEQ) && !esc && sl > 0) {
                int64_t v; int ok;
                size_t e = parse_int(s, sl, 0, &v, &ok);
                if (ok && e == sl) {
                    if (pending == K_PUBLISH_US) { m->publish_us = v; m->has_publish_us = 1; }
                    else { m->token_seq = v; m->has_token_seq = 1; }
                }
            }
            data_next = 0;
            pending = K_NONE;
            i = end;
            if (early && all_found(m))
                return 0;
            continue;
        }
        default: {
            if (depth == 0)
                return -1;
            if (c == '-' || (c >= '0' && c <= '9')) {
                int64_t v; int ok;
                size_t e = parse_int(p, n, i, &v, &ok);
                if (!e || !ok)
                    return -1;
                switch (pending) {
                case K_SEQ: if (!m->has_seq) { m->seq = v; m->has_seq = 1; } break;
                case K_TS: if (!m->has_ts) { m->ts = v; m->has_ts = 1; } break;
                case K_PUBLISH_US: m->publish_us = v; m->has_publish_us = 1; break;
                case K_TOKEN_SEQ: m->token_seq = v; m->has_token_seq = 1; break;
                default: break;
                }
                i = e;
                if (early && pending != K_NONE && all_found(m))
                    return 0;
            } else if (c >= 'a' && c <= 'z') {
                /* true / false / null */
                size_t j = i;
                while (j < n && p[j] >= 'a' && p[j] <= 'z')
                    j++;
                if (!keyeq(p + i, j - i, "true") && !keyeq(p + i, j - i, "false") &&
                    !keyeq(p + i, j - i, "null"))
                    return -1;
                i = j;
            } else {
                return -1;
            }
            data_next = 0;
            pending = K_NONE;
            continue;
        }
        }
    }
    return depth == 0 && closed_top ? 0 : -1;
}

int lg_scan(const char *p, size_t n, lg_msg *m)
{
    return scan(p, n, m, 0);
}

int lg_scan_live(const char *p, size_t n, lg_msg *m)
{
    return scan(p, n, m, 1);
}
