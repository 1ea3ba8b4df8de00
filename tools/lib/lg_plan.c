#include "tools/lib/lg_plan.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void why_set(char *why, size_t len, const char *fmt, long a, long b, long c)
{
    if (why && len)
        snprintf(why, len, fmt, a, b, c);
}

size_t lg_plan_target_of(long i, size_t ntargets)
{
    return ntargets ? (size_t)i % ntargets : 0;
}

size_t lg_plan_addr_of(long i, size_t ntargets, size_t naddrs)
{
    if (naddrs == 0 || ntargets == 0)
        return 0;
    return ((size_t)i / ntargets) % naddrs;
}

long lg_plan_pair_count(long total, size_t ntargets, size_t naddrs, size_t t, size_t a)
{
    if (naddrs == 0)
        naddrs = 1;
    if (total <= 0 || ntargets == 0 || (long)t >= total)
        return 0;
    long nt = (long)ntargets, na = (long)naddrs;
    long qt = (total - (long)t + nt - 1) / nt;     /* i = t + nt*j, j < qt */
    if ((long)a >= qt)
        return 0;
    return (qt - (long)a + na - 1) / na;           /* j % na == a */
}

int lg_plan_make(const lg_plan_in *in, lg_plan *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    if (in->connections < 1 || in->ntargets < 1 || in->processes < 0 || in->rate < 0) {
        why_set(why, whylen, "need connections >= 1 (got %ld), a target, processes >= 0",
                in->connections, 0, 0);
        return LG_PLAN_EINVAL;
    }
    long p = in->processes;
    if (p == 0)
        p = (in->connections + LG_PLAN_DEFAULT_PER_WORKER - 1) / LG_PLAN_DEFAULT_PER_WORKER;
    if (p > in->connections)
        p = in->connections;        /* no empty workers */
    if (p < 1)
        p = 1;
    if (p > LG_PLAN_MAX_WORKERS) {
        why_set(why, whylen, "%ld processes is more than the maximum %ld", p,
                LG_PLAN_MAX_WORKERS, 0);
        return LG_PLAN_EWORKERS;
    }
    long base = in->connections / p, rem = in->connections % p, first = 0;
    for (long w = 0; w < p; w++) {
        lg_plan_worker *pw = &out->w[w];
        pw->first = first;
        pw->count = base + (w < rem ? 1 : 0);
        pw->fds_needed = pw->count + LG_PLAN_FD_RESERVE;
        pw->rate = in->rate > 0 ? in->rate * (double)pw->count / (double)in->connections : 0;
        first += pw->count;
        if (in->fd_limit > 0 && pw->fds_needed > in->fd_limit) {
            long per = in->fd_limit - LG_PLAN_FD_RESERVE;
            long need = per > 0 ? (in->connections + per - 1) / per : -1;
            why_set(why, whylen,
                    "a worker would need %ld fds but the per-process limit is %ld; "
                    "use at least %ld processes", pw->fds_needed, in->fd_limit, need);
            return LG_PLAN_EFDBUDGET;
        }
    }
    out->nworkers = p;
    out->max_per_pair = lg_plan_pair_count(in->connections, in->ntargets, in->naddrs, 0, 0);
    if (in->port_range > 0 && out->max_per_pair > in->port_range) {
        why_set(why, whylen,
                "%ld connections share one (source address, target) pair but the "
                "ephemeral port range holds %ld; add source addresses or targets "
                "(need about %ld pairs)", out->max_per_pair, in->port_range,
                (in->connections + in->port_range - 1) / in->port_range);
        return LG_PLAN_EPORTS;
    }
    return 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

int lg_addrs_parse(const char *s, struct in_addr *out, size_t max, size_t *n)
{
    *n = 0;
    if (!s)
        return 0;
    char *copy = strdup(s), *save = NULL;
    if (!copy)
        return -1;
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        tok = trim(tok);
        if (!*tok)
            continue;
        char *dash = strchr(tok, '-');
        struct in_addr lo, hi;
        if (dash) {
            *dash = '\0';
            if (inet_pton(AF_INET, trim(tok), &lo) != 1 ||
                inet_pton(AF_INET, trim(dash + 1), &hi) != 1) {
                rc = -1;
                break;
            }
        } else {
            if (inet_pton(AF_INET, tok, &lo) != 1) {
                rc = -1;
                break;
            }
            hi = lo;
        }
        uint32_t a = ntohl(lo.s_addr), b = ntohl(hi.s_addr);
        if (a > b) {
            rc = -1;
            break;
        }
        for (uint64_t x = a; x <= b; x++) {
            if (*n >= max) {
                rc = -1;
                goto out;
            }
            out[(*n)++].s_addr = htonl((uint32_t)x);
        }
    }
out:
    free(copy);
    if (rc != 0)
        *n = 0;
    return rc;
}

uint64_t lg_rand_next(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* ---- channels -------------------------------------------------------- */

int lg_mode_parse(const char *s, enum lg_mode *out)
{
    if (!s)
        return -1;
    if (strcmp(s, "all") == 0)
        *out = LG_MODE_ALL;
    else if (strcmp(s, "single") == 0)
        *out = LG_MODE_SINGLE;
    else if (strcmp(s, "random") == 0)
        *out = LG_MODE_RANDOM;
    else
        return -1;
    return 0;
}

const char *lg_mode_name(enum lg_mode m)
{
    return m == LG_MODE_ALL ? "all" : m == LG_MODE_SINGLE ? "single" : "random";
}

struct lg_chanset {
    size_t ntok, ncat, count;
    char *arena;          /* "TOK.cat\0" names back to back */
    uint32_t *off;        /* name offset in arena per id */
    uint16_t *len;        /* name length per id */
    uint32_t *slots;      /* open addressing: id + 1, 0 = empty */
    size_t mask;
};

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = UINT64_C(1469598103934665603);
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}

/* Split a comma list into a NULL-free array of trimmed non-empty items. */
static char **split_csv(const char *csv, size_t *n, char **storage)
{
    *n = 0;
    *storage = NULL;
    if (!csv)
        return NULL;
    char *copy = strdup(csv);
    if (!copy)
        return NULL;
    size_t cap = 1;
    for (const char *p = csv; *p; p++)
        cap += *p == ',';
    char **items = calloc(cap, sizeof *items);
    if (!items) {
        free(copy);
        return NULL;
    }
    char *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        t = trim(t);
        if (*t)
            items[(*n)++] = t;
    }
    *storage = copy;
    return items;
}

lg_chanset *lg_chanset_new(const char *tokens_csv, const char *cats_csv)
{
    size_t nt = 0, nc = 0;
    char *ts = NULL, *cstore = NULL;
    char **toks = split_csv(tokens_csv, &nt, &ts);
    char **cats = split_csv(cats_csv, &nc, &cstore);
    lg_chanset *cs = NULL;
    if (!toks || !cats || nt == 0 || nc == 0 || nt * nc > UINT32_MAX / 4)
        goto err;
    cs = calloc(1, sizeof *cs);
    if (!cs)
        goto err;
    cs->ntok = nt;
    cs->ncat = nc;
    cs->count = nt * nc;
    size_t bytes = 0;
    for (size_t t = 0; t < nt; t++)
        for (size_t c = 0; c < nc; c++)
            bytes += strlen(toks[t]) + 1 + strlen(cats[c]) + 1;
    size_t slots = 16;
    while (slots < cs->count * 2)
        slots <<= 1;
    cs->mask = slots - 1;
    cs->arena = malloc(bytes);
    cs->off = calloc(cs->count, sizeof *cs->off);
    cs->len = calloc(cs->count, sizeof *cs->len);
    cs->slots = calloc(slots, sizeof *cs->slots);
    if (!cs->arena || !cs->off || !cs->len || !cs->slots || bytes > UINT32_MAX)
        goto err;
    size_t pos = 0;
    for (size_t t = 0; t < nt; t++) {
        for (size_t c = 0; c < nc; c++) {
            size_t id = t * nc + c;
            int w = sprintf(cs->arena + pos, "%s.%s", toks[t], cats[c]);
            if (w > UINT16_MAX)
                goto err;
            cs->off[id] = (uint32_t)pos;
            cs->len[id] = (uint16_t)w;
            /* duplicates (same token listed twice) keep the first id */
            if (lg_chanset_find(cs, cs->arena + pos, (size_t)w) < 0) {
                size_t h = (size_t)fnv1a(cs->arena + pos, (size_t)w) & cs->mask;
                while (cs->slots[h])
                    h = (h + 1) & cs->mask;
                cs->slots[h] = (uint32_t)id + 1;
            }
            pos += (size_t)w + 1;
        }
    }
    free(toks);
    free(cats);
    free(ts);
    free(cstore);
    return cs;
err:
    free(toks);
    free(cats);
    free(ts);
    free(cstore);
    lg_chanset_free(cs);
    return NULL;
}

void lg_chanset_free(lg_chanset *cs)
{
    if (!cs)
        return;
    free(cs->arena);
    free(cs->off);
    free(cs->len);
    free(cs->slots);
    free(cs);
}

size_t lg_chanset_count(const lg_chanset *cs) { return cs->count; }
size_t lg_chanset_ntokens(const lg_chanset *cs) { return cs->ntok; }
size_t lg_chanset_ncats(const lg_chanset *cs) { return cs->ncat; }

const char *lg_chanset_name(const lg_chanset *cs, uint32_t id, size_t *len)
{
    if (id >= cs->count)
        return NULL;
    if (len)
        *len = cs->len[id];
    return cs->arena + cs->off[id];
}

long lg_chanset_find(const lg_chanset *cs, const char *name, size_t len)
{
    size_t h = (size_t)fnv1a(name, len) & cs->mask;
    while (cs->slots[h]) {
        uint32_t id = cs->slots[h] - 1;
        if (cs->len[id] == len && memcmp(cs->arena + cs->off[id], name, len) == 0)
            return (long)id;
        h = (h + 1) & cs->mask;
    }
    return -1;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

size_t lg_chanset_pick(const lg_chanset *cs, enum lg_mode mode, size_t k,
                       uint64_t seed, long i, uint32_t *ids)
{
    size_t total = cs->count;
    size_t ui = (size_t)(i < 0 ? 0 : i);
    switch (mode) {
    case LG_MODE_SINGLE: {
        size_t t = ui % cs->ntok, c = (ui / cs->ntok) % cs->ncat;
        ids[0] = (uint32_t)(t * cs->ncat + c);
        return 1;
    }
    case LG_MODE_ALL: {
        if (total <= LG_MAX_CHANNELS_PER_CONN) {
            for (size_t j = 0; j < total; j++)
                ids[j] = (uint32_t)j;
            return total;
        }
        size_t start = (ui % total) * LG_MAX_CHANNELS_PER_CONN % total;
        for (size_t j = 0; j < LG_MAX_CHANNELS_PER_CONN; j++)
            ids[j] = (uint32_t)((start + j) % total);
        qsort(ids, LG_MAX_CHANNELS_PER_CONN, sizeof *ids, cmp_u32);
        return LG_MAX_CHANNELS_PER_CONN;
    }
    case LG_MODE_RANDOM:
        break;
    }
    if (k == 0)
        k = 1;
    if (k > LG_MAX_CHANNELS_PER_CONN)
        k = LG_MAX_CHANNELS_PER_CONN;
    if (k > total)
        k = total;
    uint64_t st = seed ^ ((uint64_t)ui * UINT64_C(0xD1B54A32D192ED03));
    lg_rand_next(&st);
    if (total <= 2 * LG_MAX_CHANNELS_PER_CONN) {
        /* small universe: partial Fisher-Yates on the stack */
        uint32_t all[2 * LG_MAX_CHANNELS_PER_CONN];
        for (size_t j = 0; j < total; j++)
            all[j] = (uint32_t)j;
        for (size_t j = 0; j < k; j++) {
            size_t r = j + (size_t)(lg_rand_next(&st) % (total - j));
            uint32_t tmp = all[j];
            all[j] = all[r];
            all[r] = tmp;
            ids[j] = all[j];
        }
    } else {
        /* large universe, k <= total / 2: rejection of duplicates */
        size_t n = 0;
        while (n < k) {
            uint32_t c = (uint32_t)(lg_rand_next(&st) % total);
            size_t j = 0;
            while (j < n && ids[j] != c)
                j++;
            if (j == n)
                ids[n++] = c;
        }
    }
    qsort(ids, k, sizeof *ids, cmp_u32);
    return k;
}
