#include "router/topicmap.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/topics.h"

static void seterr(char *err, size_t n, const char *fmt, ...)
{
    if (!err || !n)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

static int category_valid(const char *c, size_t n)
{
    if (n == 0 || n > 32)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((c[i] >= 'a' && c[i] <= 'z') || c[i] == '_'))
            return 0;
    return 1;
}

/* Topic names as Kafka allows them: [A-Za-z0-9._-]{1,249}. */
static int topic_valid(const char *s, size_t n)
{
    if (n == 0 || n > 249)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static router_topic *find_mut(router_topics *t, const char *name, size_t len)
{
    for (size_t i = 0; i < t->n; i++)
        if (strlen(t->v[i].topic) == len && memcmp(t->v[i].topic, name, len) == 0)
            return &t->v[i];
    return NULL;
}

const router_topic *router_topics_find(const router_topics *t, const char *name,
                                       size_t len)
{
    return find_mut((router_topics *)t, name, len);
}

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static int push_topic(router_topics *t, const char *name, size_t nl, const char *cat,
                      size_t cl, int broadcast, int subscribed)
{
    router_topic *v = realloc(t->v, (t->n + 1) * sizeof *v);
    if (!v)
        return -1;
    t->v = v;
    router_topic *x = &t->v[t->n];
    x->topic = dupn(name, nl);
    x->category = dupn(cat, cl);
    x->broadcast = broadcast;
    x->subscribed = subscribed;
    if (!x->topic || !x->category) {
        free(x->topic);
        free(x->category);
        return -1;
    }
    t->n++;
    return 0;
}

static int push_sub(router_topics *t, const char *s, size_t n)
{
    for (size_t i = 0; i < t->nsubscribe; i++)
        if (strlen(t->subscribe[i]) == n && memcmp(t->subscribe[i], s, n) == 0)
            return 0;
    char **v = realloc(t->subscribe, (t->nsubscribe + 1) * sizeof *v);
    if (!v)
        return -1;
    t->subscribe = v;
    if (!(t->subscribe[t->nsubscribe] = dupn(s, n)))
        return -1;
    t->nsubscribe++;
    return 0;
}

static int parse_list(router_topics *t, const char *list, int broadcast, char *err,
                      size_t errlen)
{
    const char *p = list ? list : "";
    const char *what = broadcast ? "BROADCAST_TOPICS" : "KAFKA_TOPICS";
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        p = *end ? end + 1 : end;
        if (a == b)
            continue;
        size_t len = (size_t)(b - a);
        if (*a == '^') {
            if (broadcast) {
                seterr(err, errlen, "%s: regex '%.*s' not allowed here", what, (int)len, a);
                return -1;
            }
            if (push_sub(t, a, len) != 0)
                goto nomem;
            continue;
        }
        const char *eq = memchr(a, '=', len);
        size_t nl = eq ? (size_t)(eq - a) : len;
        const char *cat = NULL;
        size_t cl = 0;
        if (!topic_valid(a, nl)) {
            seterr(err, errlen, "%s: bad topic name '%.*s'", what, (int)nl, a);
            return -1;
        }
        if (eq) {
            cat = eq + 1;
            cl = (size_t)(b - cat);
            if (!category_valid(cat, cl)) {
                seterr(err, errlen, "%s: bad category '%.*s' for topic '%.*s' "
                       "(want [a-z_]{1,32})", what, (int)cl, cat, (int)nl, a);
                return -1;
            }
        }
        router_topic *x = find_mut(t, a, nl);
        if (x) {
            if (cat && (strlen(x->category) != cl || memcmp(x->category, cat, cl) != 0)) {
                seterr(err, errlen, "%s: topic '%.*s' mapped to two categories", what,
                       (int)nl, a);
                return -1;
            }
            if (broadcast)
                x->broadcast = 1;
        } else {
            if (!cat) {
                const topic_info *ti = topics_by_topic(a, nl);
                if (!ti) {
                    seterr(err, errlen, "%s: unknown topic '%.*s': give its category as "
                           "'%.*s=<category>'", what, (int)nl, a, (int)nl, a);
                    return -1;
                }
                cat = ti->category;
                cl = strlen(cat);
            }
            if (push_topic(t, a, nl, cat, cl, broadcast, 1) != 0)
                goto nomem;
        }
        if (push_sub(t, a, nl) != 0)
            goto nomem;
    }
    return 0;
nomem:
    seterr(err, errlen, "out of memory");
    return -1;
}

int router_topics_parse(router_topics *t, const char *topics, const char *broadcast,
                        char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    if (parse_list(t, topics, 0, err, errlen) != 0 ||
        parse_list(t, broadcast, 1, err, errlen) != 0)
        return -1;
    if (t->nsubscribe == 0) {
        seterr(err, errlen, "KAFKA_TOPICS: no topics");
        return -1;
    }
    /* Default topics reachable through a regex keep their categories. */
    for (size_t i = 0; i < topics_default_count; i++) {
        const topic_info *ti = &topics_default[i];
        if (find_mut(t, ti->topic, strlen(ti->topic)))
            continue;
        if (push_topic(t, ti->topic, strlen(ti->topic), ti->category,
                       strlen(ti->category), 0, 0) != 0) {
            seterr(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

void router_topics_free(router_topics *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].topic);
        free(t->v[i].category);
    }
    for (size_t i = 0; i < t->nsubscribe; i++)
        free(t->subscribe[i]);
    free(t->v);
    free(t->subscribe);
    memset(t, 0, sizeof *t);
}
