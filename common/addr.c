#include "common/addr.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int addr_split_hostport(const char *s, char *hostbuf, size_t hostlen, int *port)
{
    if (!s || !*s)
        return -1;
    const char *colon;
    const char *h = s;
    size_t hl;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':')
            return -1;
        h = s + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - s);
    }
    if (hl + 1 > hostlen)
        return -1;
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || p < 0 || p > 65535)
        return -1;
    memcpy(hostbuf, h, hl);
    hostbuf[hl] = '\0';
    if (hl == 0)
        snprintf(hostbuf, hostlen, "0.0.0.0");
    *port = (int)p;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decode s[0..n) into out[cap] (NUL-terminated).  0 or -1. */
static int pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= n || (hi = hexval(s[i + 1])) < 0 || (lo = hexval(s[i + 2])) < 0)
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (c == '\0' || o + 1 >= cap)
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

int addr_redis_set_sentinels(redis_endpoint *ep, const char *sentinels,
                             const char *master_name, char *why, size_t n)
{
    if (!sentinels || !*sentinels)
        return 0;
    if (strlen(sentinels) >= sizeof ep->sentinels) {
        snprintf(why, n, "REDIS_SENTINELS is longer than %zu bytes", sizeof ep->sentinels - 1);
        return -1;
    }
    if (!master_name || !*master_name || strlen(master_name) >= sizeof ep->master_name) {
        snprintf(why, n, "REDIS_MASTER_NAME must name the master Sentinel monitors");
        return -1;
    }
    char **v = NULL;
    size_t cnt = 0;
    if (addr_split_list(sentinels, &v, &cnt) != 0 || cnt == 0) {
        addr_list_free(v, cnt);
        snprintf(why, n, "REDIS_SENTINELS '%s' is not a host:port list", sentinels);
        return -1;
    }
    for (size_t i = 0; i < cnt; i++) {
        char host[256];
        int port;
        if (addr_split_hostport(v[i], host, sizeof host, &port) != 0 || port <= 0) {
            snprintf(why, n, "REDIS_SENTINELS entry '%s' is not host:port", v[i]);
            addr_list_free(v, cnt);
            return -1;
        }
    }
    addr_list_free(v, cnt);
    snprintf(ep->sentinels, sizeof ep->sentinels, "%s", sentinels);
    snprintf(ep->master_name, sizeof ep->master_name, "%s", master_name);
    return 0;
}

int addr_redis_set_password(redis_endpoint *ep, const char *password)
{
    if (!password || !*password)
        return 0;
    size_t l = strlen(password);
    if (l >= sizeof ep->password)
        return -1;
    memcpy(ep->password, password, l + 1);
    return 0;
}

void addr_redact_url(const char *url, char *out, size_t n)
{
    if (!n)
        return;
    if (!url) {
        snprintf(out, n, "(none)");
        return;
    }
    const char *scheme = strstr(url, "://");
    const char *hp = scheme ? scheme + 3 : url;
    const char *at = strrchr(hp, '@');
    if (!at) {
        snprintf(out, n, "%s", url);
        return;
    }
    const char *colon = memchr(hp, ':', (size_t)(at - hp));
    if (colon)   /* keep scheme and user, hide the password */
        snprintf(out, n, "%.*s:***%s", (int)(colon - url), url, at);
    else         /* a lone userinfo is a password */
        snprintf(out, n, "%.*s***%s", (int)(hp - url), url, at);
}

#define URL_ERR(...) do { if (err && errlen) snprintf(err, errlen, __VA_ARGS__); \
                          return -1; } while (0)

int addr_parse_redis_url_err(const char *url, redis_endpoint *out, char *err,
                             size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!url)
        URL_ERR("not set");
    if (strncmp(url, "unix:", 5) == 0) {
        const char *p = url + 5;
        if (strncmp(p, "//", 2) == 0)
            p += 2;
        if (*p != '/')
            URL_ERR("a unix: URL needs an absolute path (unix:/run/redis.sock)");
        if (strlen(p) >= sizeof out->path)
            URL_ERR("the socket path is longer than %zu bytes", sizeof out->path - 1);
        snprintf(out->path, sizeof out->path, "%s", p);
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0) {
        if (strstr(url, "://"))
            URL_ERR("scheme '%.*s' is not redis:// or unix: (TLS, rediss://, is not "
                    "supported)", (int)(strstr(url, "://") - url), url);
        URL_ERR("no scheme: write redis://host:port or unix:/path");
    }
    const char *hp = url + 8;
    const char *at = strrchr(hp, '@');
    if (at) {
        /* userinfo: [user][:password], percent-encoded */
        const char *colon = memchr(hp, ':', (size_t)(at - hp));
        const char *uend = colon ? colon : at;
        if (pct_decode(hp, (size_t)(uend - hp), out->user, sizeof out->user) != 0 ||
            (colon && pct_decode(colon + 1, (size_t)(at - colon - 1), out->password,
                                 sizeof out->password) != 0))
            URL_ERR("bad user or password: a %% not followed by two hex digits, %%00, "
                    "or too long");
        if (!colon && out->user[0]) {
            /* "redis://secret@host": redis-cli reads a lone userinfo as the
             * password */
            memcpy(out->password, out->user, sizeof out->user);
            out->user[0] = '\0';
        }
        hp = at + 1;
    }
    const char *slash = strchr(hp, '/');
    char tmp[300];
    size_t l = slash ? (size_t)(slash - hp) : strlen(hp);
    if (l == 0)
        URL_ERR("no host");
    if (l >= sizeof tmp)
        URL_ERR("host:port is too long");
    memcpy(tmp, hp, l);
    tmp[l] = '\0';
    if (strchr(tmp, ':') && !(tmp[0] == '[' && !strstr(tmp, "]:"))) {
        if (addr_split_hostport(tmp, out->host, sizeof out->host, &out->port) != 0)
            URL_ERR("'%s' is not host:port with a port 0-65535", tmp);
    } else {
        const char *h = tmp;
        size_t hl = strlen(tmp);
        if (tmp[0] == '[') { h++; hl -= 2; }
        if (hl >= sizeof out->host)
            URL_ERR("host name too long");
        memcpy(out->host, h, hl);
        out->host[hl] = '\0';
        out->port = 6379;
    }
    if (slash && slash[1]) {
        char *end;
        long db = strtol(slash + 1, &end, 10);
        if (*end || db < 0 || db > 255)
            URL_ERR("database '%s' is not a number 0-255", slash + 1);
        out->db = (int)db;
    }
    return 0;
}
#undef URL_ERR

int addr_parse_redis_url(const char *url, redis_endpoint *out)
{
    return addr_parse_redis_url_err(url, out, NULL, 0);
}

int addr_split_list(const char *s, char ***out, size_t *n)
{
    char *copy = strdup(s ? s : ""), *save = NULL, *t;
    char **v = NULL;
    size_t cnt = 0;
    if (!copy)
        return -1;
    for (t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ' || *t == '\t')
            t++;
        size_t l = strlen(t);
        while (l > 0 && (t[l - 1] == ' ' || t[l - 1] == '\t'))
            t[--l] = '\0';
        if (l == 0)
            continue;
        char **nv = realloc(v, (cnt + 1) * sizeof(*v));
        if (!nv)
            goto err;
        v = nv;
        if (!(v[cnt] = strdup(t)))
            goto err;
        cnt++;
    }
    free(copy);
    *out = v;
    *n = cnt;
    return 0;
err:
    addr_list_free(v, cnt);
    free(copy);
    return -1;
}

void addr_list_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* One broker: [scheme://]host:port, host a name, IPv4 or [IPv6]. */
static int broker_valid(const char *b, char *err, size_t errlen)
{
    const char *hp = strstr(b, "://");
    if (hp) {
        for (const char *p = b; p < hp; p++)
            if (!isalnum((unsigned char)*p) && *p != '_') {
                snprintf(err, errlen, "'%s': bad scheme", b);
                return -1;
            }
        hp += 3;
    } else {
        hp = b;
    }
    char host[256];
    int port;
    if (addr_split_hostport(hp, host, sizeof host, &port) != 0 || port < 1 ||
        hp[0] == ':') {
        snprintf(err, errlen, "'%s' is not host:port (port 1-65535)", b);
        return -1;
    }
    for (const char *p = host; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr(".-_:", *p)) {
            snprintf(err, errlen, "'%s': '%c' cannot be in a host name", b, *p);
            return -1;
        }
    return 0;
}

int addr_check_brokers(const char *s, char *err, size_t errlen)
{
    char **v = NULL;
    size_t n = 0;
    if (!s || !*s) {
        snprintf(err, errlen, "empty list");
        return -1;
    }
    if (addr_split_list(s, &v, &n) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = n ? 0 : -1;
    if (!n)
        snprintf(err, errlen, "empty list");
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = broker_valid(v[i], err, errlen);
    addr_list_free(v, n);
    return rc;
}
