/*
 * odin-ctl: operator CLI over the shard registry in Redis and the daemons'
 * HTTP endpoints.  Blocking (hiredis sync, plain sockets): it is a CLI.
 *
 *   odin-ctl [--json] [--redis-url=...] [--redis-prefix=...] COMMAND [ARG]
 *     shards            every registered shard: lease, endpoint, clients, age
 *     routes TOKEN      the shards that hold subscribers of TOKEN
 *     tokens SHARD      the tokens SHARD registered
 *     health            /health of every live shard (and the router with
 *                       CTL_ROUTER_ADDR)
 *     drain SHARD       start a drain: SIGUSR1 to the shard's pid when it runs
 *                       on this host, else print how
 *     undrain SHARD     end a drain (the same signal, only if draining)
 *
 * Same settings as the daemons (REDIS_URL, REDIS_PASSWORD, REDIS_PREFIX), so
 * it works against `make run` (export REDIS_URL=... as run-stack.sh prints)
 * and inside a compose container alike.  docs/operations.md lists the
 * equivalent redis-cli commands.
 *
 * Exit status: 0 ok; 1 a check failed (unhealthy, unreachable, unknown
 * shard); 2 usage or settings; 3 drain must be done on another host.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/schema.h"

static char *o_redis_url, *o_redis_password, *o_prefix, *o_router;
static char *o_sentinels, *o_master_name;
static long o_timeout_ms;
static int o_json, o_cluster;
static const config_opt opts[] = {
    { "REDIS_URL", CFG_STR, &o_redis_url, "redis://127.0.0.1:6379",
      "Redis of the shard registry: redis://[[user]:password@]host:port[/db] or "
      "unix:/path (`make run` prints the one it started)", 0, 0 },
    { "REDIS_PASSWORD", CFG_STR, &o_redis_password, NULL,
      "Redis password (AUTH); overrides one in REDIS_URL", 0, 0 },
    { "REDIS_PREFIX", CFG_STR, &o_prefix, SCHEMA_DEFAULT_PREFIX,
      "Prefix of every registry key", 0, 0 },
    { "REDIS_CLUSTER_KEYS", CFG_BOOL, &o_cluster, "false",
      "Cluster-safe key layout: read shard keys as <prefix>shard:{<id>} (set as on "
      "the routers and shards)", 0, 0 },
    { "REDIS_SENTINELS", CFG_STR, &o_sentinels, NULL,
      "Redis Sentinel addresses host:port,host:port: the master is asked from the "
      "first that answers (REDIS_URL then gives only password and db; as on the "
      "routers and shards)", 0, 0 },
    { "REDIS_MASTER_NAME", CFG_STR, &o_master_name, "odin",
      "Name of the master the Sentinels monitor (with REDIS_SENTINELS)", 0, 0 },
    { "CTL_ROUTER_ADDR", CFG_STR, &o_router, NULL,
      "host:port of a router's HTTP_ADDR, checked by `health` (unset: shards only)",
      0, 0 },
    { "CTL_TIMEOUT_MS", CFG_INT, &o_timeout_ms, "3000",
      "Timeout of each Redis and HTTP request", 100, 600000 },
};
#define NOPTS (sizeof opts / sizeof opts[0])

static const char *k_summary =
    "Operator CLI of odin-dispatch.  Commands:\n"
    "  shards            registered shards: lease TTL, endpoint, clients, tokens, age\n"
    "  routes TOKEN      shards holding subscribers of TOKEN (odin:route:TOKEN)\n"
    "  tokens SHARD      tokens SHARD registered (odin:shard:SHARD:tokens)\n"
    "  health            GET /health of every live shard (and CTL_ROUTER_ADDR)\n"
    "  drain SHARD       SIGUSR1 to the shard's pid when it runs on this host\n"
    "  undrain SHARD     end a drain (SIGUSR1 again, only if draining)\n"
    "--json prints JSON instead of a table.  Exit: 0 ok, 1 check failed,\n"
    "2 usage, 3 drain must run on the shard's host";

static redisContext *rc;

/* ---- Redis ---------------------------------------------------------------- */

/* The master's address from the first Sentinel of ep->sentinels that
 * knows ep->master_name, into ep->host / ep->port.  0 or -1 (printed). */
static int sentinel_master(redis_endpoint *ep, struct timeval tv)
{
    char **v = NULL;
    size_t n = 0;
    if (config_split_list(ep->sentinels, &v, &n) != 0)
        return -1;
    int ok = -1;
    for (size_t i = 0; i < n && ok != 0; i++) {
        char host[256];
        int port;
        if (config_split_hostport(v[i], host, sizeof host, &port) != 0)
            continue;
        redisContext *s = redisConnectWithTimeout(host, port, tv);
        if (!s || s->err) {
            fprintf(stderr, "odin-ctl: sentinel %s: %s\n", v[i],
                    s ? s->errstr : "out of memory");
            redisFree(s);
            continue;
        }
        redisSetTimeout(s, tv);
        redisReply *r = redisCommand(s, "SENTINEL get-master-addr-by-name %s",
                                     ep->master_name);
        if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
            r->element[0]->type == REDIS_REPLY_STRING &&
            r->element[1]->type == REDIS_REPLY_STRING &&
            strlen(r->element[0]->str) < sizeof ep->host) {
            snprintf(ep->host, sizeof ep->host, "%s", r->element[0]->str);
            ep->port = atoi(r->element[1]->str);
            ok = 0;
        } else {
            fprintf(stderr, "odin-ctl: sentinel %s does not know master '%s'\n", v[i],
                    ep->master_name);
        }
        freeReplyObject(r);
        redisFree(s);
    }
    config_list_free(v, n);
    return ok;
}

/* 0, -1 (cannot connect / AUTH / SELECT; printed), -2 (bad settings). */
static int redis_open(void)
{
    redis_endpoint ep;
    char url[600];
    config_redact_url(o_redis_url, url, sizeof url);
    char uerr[300] = "REDIS_PASSWORD longer than 255 bytes";
    if (config_parse_redis_url_err(o_redis_url, &ep, uerr, sizeof uerr) != 0 ||
        config_redis_set_password(&ep, o_redis_password) != 0) {
        fprintf(stderr, "odin-ctl: REDIS_URL '%s' is not redis://[[user]:password@]host:port[/db] "
                        "or unix:/path: %s\n", url, uerr);
        return -2;   /* a settings mistake: exit 2 */
    }
    char why[300];
    if (config_redis_set_sentinels(&ep, o_sentinels, o_master_name, why, sizeof why) != 0) {
        config_error("%s", why);
        return -2;
    }
    struct timeval tv = { o_timeout_ms / 1000, (o_timeout_ms % 1000) * 1000 };
    if (ep.sentinels[0] && sentinel_master(&ep, tv) != 0)
        return -1;
    rc = ep.path[0] ? redisConnectUnixWithTimeout(ep.path, tv)
                    : redisConnectWithTimeout(ep.host, ep.port, tv);
    if (!rc || rc->err) {
        fprintf(stderr, "odin-ctl: cannot connect to Redis at %s: %s\n", url,
                rc ? rc->errstr : "out of memory");
        return -1;
    }
    redisSetTimeout(rc, tv);
    redisReply *r = NULL;
    if (ep.password[0]) {
        r = ep.user[0] ? redisCommand(rc, "AUTH %s %s", ep.user, ep.password)
                       : redisCommand(rc, "AUTH %s", ep.password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "odin-ctl: Redis AUTH failed: %s\n", r ? r->str : rc->errstr);
            freeReplyObject(r);
            return -1;
        }
        freeReplyObject(r);
    }
    if (ep.db) {
        r = redisCommand(rc, "SELECT %d", ep.db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "odin-ctl: SELECT %d failed: %s\n", ep.db, r ? r->str : rc->errstr);
            freeReplyObject(r);
            return -1;
        }
        freeReplyObject(r);
    }
    return 0;
}

/* Run a command; NULL (message printed) on a transport or error reply. */
static redisReply *cmd(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    if (!r) {
        fprintf(stderr, "odin-ctl: Redis: %s\n", rc->errstr);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "odin-ctl: Redis: %s\n", r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A SET's members, sorted (NULL-terminated, malloc'd; strings borrowed from
 * the reply, which the caller frees after).  NULL on error. */
static const char **sorted_members(redisReply *r, size_t *n)
{
    const char **v = calloc(r->elements + 1, sizeof *v);
    if (!v)
        return NULL;
    for (size_t i = 0; i < r->elements; i++)
        v[i] = r->element[i]->str;
    qsort(v, r->elements, sizeof *v, cmp_str);
    *n = r->elements;
    return v;
}

/* ---- shard leases ------------------------------------------------------- */

typedef struct lease {
    char id[160];
    int live;                 /* lease hash exists */
    long long ttl_ms;         /* PTTL */
    char endpoint[300], ws_addr[100], host[256];
    char admin_addr[100];     /* ADMIN_ADDR, "" when /health is on ws_addr */
    long pid;
    long long connections, tokens;
    long long started_ms;
} lease;

static int lease_get(const char *id, lease *l)
{
    memset(l, 0, sizeof *l);
    snprintf(l->id, sizeof l->id, "%s", id);
    l->pid = -1;
    l->connections = l->tokens = -1;
    char *key = schema_shard_key(o_prefix, o_cluster, id, "");
    redisReply *r = key ? cmd("HGETALL %s", key) : NULL;
    if (!r) {
        free(key);
        return -1;
    }
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const char *k = r->element[i]->str, *v = r->element[i + 1]->str;
        if (!k || !v)
            continue;
        if (strcmp(k, "endpoint") == 0) snprintf(l->endpoint, sizeof l->endpoint, "%s", v);
        else if (strcmp(k, "ws_addr") == 0) snprintf(l->ws_addr, sizeof l->ws_addr, "%s", v);
        else if (strcmp(k, "admin_addr") == 0) snprintf(l->admin_addr, sizeof l->admin_addr, "%s", v);
        else if (strcmp(k, "host") == 0) snprintf(l->host, sizeof l->host, "%s", v);
        else if (strcmp(k, "pid") == 0) l->pid = atol(v);
        else if (strcmp(k, "connections") == 0) l->connections = atoll(v);
        else if (strcmp(k, "tokens") == 0) l->tokens = atoll(v);
        else if (strcmp(k, "started_at") == 0) l->started_ms = atoll(v);
    }
    l->live = r->elements > 0;
    freeReplyObject(r);
    r = cmd("PTTL %s", key);
    free(key);
    if (!r)
        return -1;
    l->ttl_ms = r->integer;
    freeReplyObject(r);
    return 0;
}

/* Every shard id: the shards SET plus any lease the SET lacks (SCAN). */
static redisReply *shard_ids(const char ***ids, size_t *n)
{
    redisReply *r = cmd("SMEMBERS %sshards", o_prefix);
    if (!r)
        return NULL;
    *ids = sorted_members(r, n);
    if (!*ids) {
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

static int is_local_host(const char *host)
{
    char me[256] = "";
    gethostname(me, sizeof me - 1);
    return host[0] && strcmp(host, me) == 0;
}

/* Where the shard serves /health (admin_addr when it has an ADMIN_ADDR,
 * else ws_addr) as something to connect to: a wildcard becomes loopback
 * when the shard is on this host, else its host name. */
static void reach_addr(const lease *l, char *host, size_t hl, int *port)
{
    *port = 0;
    const char *a = l->admin_addr[0] ? l->admin_addr : l->ws_addr;
    if (config_split_hostport(a, host, hl, port) != 0) {
        host[0] = '\0';
        return;
    }
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0 || !host[0])
        snprintf(host, hl, "%s", is_local_host(l->host) ? "127.0.0.1" : l->host);
}

/* ---- HTTP ------------------------------------------------------------------ */

/* GET http://host:port/path; status (or -1 with err) and the body. */
static int http_get(const char *host, int port, const char *path, char **body,
                    char *err, size_t errlen)
{
    *body = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
    int g = getaddrinfo(host, ps, &hints, &ai);
    if (g != 0) {
        snprintf(err, errlen, "%s: %s", host, gai_strerror(g));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        struct timeval tv = { o_timeout_ms / 1000, (o_timeout_ms % 1000) * 1000 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            snprintf(err, errlen, "connect %s:%d: %s", host, port, strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0)
        return -1;
    char req[512];
    int rl = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n"
                      "Connection: close\r\n\r\n", path, host, port);
    if (send(fd, req, (size_t)rl, MSG_NOSIGNAL) != rl) {
        snprintf(err, errlen, "send: %s", strerror(errno));
        close(fd);
        return -1;
    }
    size_t cap = 65536, n = 0;
    char *b = malloc(cap);
    if (!b) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (;;) {
        ssize_t r = recv(fd, b + n, cap - 1 - n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || (n += (size_t)r) >= cap - 1)
            break;
    }
    close(fd);
    b[n] = '\0';
    int status = -1;
    if (n > 12 && strncmp(b, "HTTP/1.", 7) == 0)
        status = atoi(b + 9);
    char *sep = strstr(b, "\r\n\r\n");
    if (status < 0 || !sep) {
        snprintf(err, errlen, "no HTTP response from %s:%d", host, port);
        free(b);
        return -1;
    }
    memmove(b, sep + 4, strlen(sep + 4) + 1);
    *body = b;
    return status;
}

/* ---- commands ---------------------------------------------------------- */

static void fmt_age(long long ms, char *out, size_t n)
{
    long long s = ms / 1000;
    if (s < 120) snprintf(out, n, "%llds", s);
    else if (s < 7200) snprintf(out, n, "%lldm", s / 60);
    else if (s < 172800) snprintf(out, n, "%lldh%02lldm", s / 3600, s / 60 % 60);
    else snprintf(out, n, "%lldd", s / 86400);
}

static int do_shards(void)
{
    const char **ids;
    size_t n;
    redisReply *set = shard_ids(&ids, &n);
    if (!set)
        return 1;
    long long now = (long long)clock_wall_ms();
    json_t *arr = json_array();
    if (!o_json)
        printf("%-28s %-7s %8s %8s %7s %8s %-24s %-22s %s\n", "SHARD", "LEASE", "TTL_MS",
               "CLIENTS", "TOKENS", "AGE", "WS_ADDR", "HOST/PID", "ENDPOINT");
    int rcode = 0;
    for (size_t i = 0; i < n; i++) {
        lease l;
        if (lease_get(ids[i], &l) != 0) {
            rcode = 1;
            break;
        }
        char age[32] = "-";
        if (l.started_ms > 0)
            fmt_age(now - l.started_ms, age, sizeof age);
        if (o_json) {
            json_array_append_new(arr, json_pack(
                "{s:s,s:b,s:I,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I}",
                "shard", l.id, "live", l.live, "ttl_ms", (json_int_t)l.ttl_ms,
                "endpoint", l.endpoint, "ws_addr", l.ws_addr, "host", l.host,
                "pid", (json_int_t)l.pid, "connections", (json_int_t)l.connections,
                "tokens", (json_int_t)l.tokens, "started_at", (json_int_t)l.started_ms,
                "age_s", (json_int_t)(l.started_ms > 0 ? (now - l.started_ms) / 1000 : -1)));
        } else {
            char hp[300];
            snprintf(hp, sizeof hp, "%s/%ld", l.host[0] ? l.host : "-", l.pid);
            printf("%-28s %-7s %8lld %8lld %7lld %8s %-24s %-22s %s\n", l.id,
                   l.live ? "live" : "expired", l.ttl_ms, l.connections, l.tokens, age,
                   l.ws_addr[0] ? l.ws_addr : "-", hp, l.endpoint[0] ? l.endpoint : "-");
        }
    }
    if (o_json) {
        json_dumpf(arr, stdout, JSON_INDENT(2));
        printf("\n");
    } else if (n == 0) {
        printf("(no shard registered under %sshards)\n", o_prefix);
    }
    json_decref(arr);
    free(ids);
    freeReplyObject(set);
    return rcode;
}

/* SMEMBERS key (malloc'd, freed here; NULL: out of memory). */
static int print_set(char *key, const char *arg, const char *label)
{
    redisReply *r = key ? cmd("SMEMBERS %s", key) : NULL;
    free(key);
    if (!r)
        return 1;
    size_t n;
    const char **v = sorted_members(r, &n);
    if (!v) {
        freeReplyObject(r);
        return 1;
    }
    if (o_json) {
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(a, json_string(v[i]));
        json_t *o = json_pack("{s:s,s:o}", label, arg, "members", a);
        json_dumpf(o, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(o);
    } else {
        for (size_t i = 0; i < n; i++)
            printf("%s\n", v[i]);
    }
    free(v);
    freeReplyObject(r);
    return 0;
}

static int do_routes(const char *token)
{
    size_t n = strlen(o_prefix) + strlen(token) + 8;
    char *key = malloc(n);
    if (key)
        snprintf(key, n, "%sroute:%s", o_prefix, token);
    return print_set(key, token, "token");
}

static int do_tokens(const char *shard)
{
    return print_set(schema_shard_key(o_prefix, o_cluster, shard, ":tokens"), shard, "shard");
}

/* /health status string of a shard ("" when unreachable). */
static int shard_health(const lease *l, int *http, char *status, size_t sl, json_t **doc,
                        char *err, size_t errlen)
{
    char host[256];
    int port;
    reach_addr(l, host, sizeof host, &port);
    status[0] = '\0';
    *doc = NULL;
    if (!host[0] || port <= 0) {
        snprintf(err, errlen, "no ws_addr in the lease");
        return -1;
    }
    char *body = NULL;
    *http = http_get(host, port, "/health", &body, err, errlen);
    if (*http < 0)
        return -1;
    json_error_t je;
    *doc = json_loads(body, 0, &je);
    free(body);
    const char *st = *doc ? json_string_value(json_object_get(*doc, "status")) : NULL;
    snprintf(status, sl, "%s", st ? st : "?");
    return 0;
}

static int do_health(void)
{
    const char **ids;
    size_t n;
    redisReply *set = shard_ids(&ids, &n);
    if (!set)
        return 1;
    int bad = 0;
    json_t *out = json_object(), *arr = json_array();
    if (!o_json)
        printf("%-28s %-10s %5s %8s %s\n", "SHARD", "STATUS", "HTTP", "CLIENTS", "DETAIL");
    for (size_t i = 0; i < n; i++) {
        lease l;
        if (lease_get(ids[i], &l) != 0) {
            bad = 1;
            break;
        }
        if (!l.live) {
            if (o_json)
                json_array_append_new(arr, json_pack("{s:s,s:s}", "shard", l.id,
                                                     "status", "expired"));
            else
                printf("%-28s %-10s %5s %8s %s\n", l.id, "expired", "-", "-",
                       "lease gone; routers clean its routes");
            continue;
        }
        int http = -1;
        char status[32], err[300] = "";
        json_t *doc = NULL;
        int ok = shard_health(&l, &http, status, sizeof status, &doc, err, sizeof err) == 0;
        if (!ok || (strcmp(status, "healthy") != 0 && strcmp(status, "degraded") != 0 &&
                    strcmp(status, "draining") != 0))
            bad = 1;
        json_int_t conns = doc ? json_integer_value(json_object_get(doc, "connections")) : -1;
        if (o_json) {
            json_t *e = json_pack("{s:s,s:s,s:i}", "shard", l.id,
                                  "status", ok ? status : "unreachable", "http", http);
            if (doc)
                json_object_set(e, "health", doc);
            if (!ok)
                json_object_set_new(e, "error", json_string(err));
            json_array_append_new(arr, e);
        } else {
            printf("%-28s %-10s %5d %8lld %s\n", l.id, ok ? status : "unreachable", http,
                   (long long)conns, ok ? l.ws_addr : err);
        }
        json_decref(doc);
    }
    json_object_set_new(out, "shards", arr);
    if (o_router && *o_router) {
        char host[256], err[300] = "", *body = NULL;
        int port = 0, http = -1;
        if (config_split_hostport(o_router, host, sizeof host, &port) == 0)
            http = http_get(host, port, "/health", &body, err, sizeof err);
        else
            snprintf(err, sizeof err, "CTL_ROUTER_ADDR '%s' is not host:port", o_router);
        json_t *doc = body ? json_loads(body, 0, NULL) : NULL;
        const char *st = doc ? json_string_value(json_object_get(doc, "status")) : NULL;
        if (http != 200)
            bad = 1;
        if (o_json) {
            json_t *e = json_pack("{s:s,s:s,s:i}", "addr", o_router, "status",
                                  st ? st : http < 0 ? "unreachable" : "?", "http", http);
            if (doc)
                json_object_set(e, "health", doc);
            if (http < 0)
                json_object_set_new(e, "error", json_string(err));
            json_object_set_new(out, "router", e);
        } else {
            printf("%-28s %-10s %5d %8s %s\n", "router", st ? st : http < 0 ? "unreachable" : "?",
                   http, "-", http < 0 ? err : o_router);
        }
        json_decref(doc);
        free(body);
    }
    if (o_json) {
        json_object_set_new(out, "ok", json_boolean(!bad));
        json_dumpf(out, stdout, JSON_INDENT(2));
        printf("\n");
    }
    json_decref(out);
    free(ids);
    freeReplyObject(set);
    return bad;
}

/* 1 if /proc/<pid>/cmdline names odin-shard (a reused pid must not get a
 * SIGUSR1: its default action kills). */
static int pid_is_shard(long pid)
{
    char p[64], b[4096];
    snprintf(p, sizeof p, "/proc/%ld/cmdline", pid);
    FILE *f = fopen(p, "r");
    if (!f)
        return 0;
    size_t n = fread(b, 1, sizeof b - 1, f);
    fclose(f);
    b[n] = '\0';
    return strstr(b, "odin-shard") != NULL;
}

static int do_drain(const char *id, int want_draining)
{
    lease l;
    if (lease_get(id, &l) != 0)
        return 1;
    const char *verb = want_draining ? "drain" : "undrain";
    if (!l.live) {
        fprintf(stderr, "odin-ctl: no live lease for shard '%s' (see odin-ctl shards)\n", id);
        return 1;
    }
    int http = -1;
    char status[32], err[300];
    json_t *doc = NULL;
    int reachable = shard_health(&l, &http, status, sizeof status, &doc, err, sizeof err) == 0;
    json_decref(doc);
    if (reachable && (strcmp(status, "draining") == 0) == want_draining) {
        if (o_json)
            printf("{\"shard\":\"%s\",\"action\":\"none\",\"status\":\"%s\"}\n", id, status);
        else
            printf("shard %s is already %s\n", id, want_draining ? "draining" : "not draining");
        return 0;
    }
    if (!is_local_host(l.host) || !pid_is_shard(l.pid)) {
        fprintf(stderr,
                "odin-ctl: shard %s runs on host '%s' (pid %ld), not here: run there\n"
                "  kill -USR1 %ld\n"
                "or in its container: docker exec %s odin-ctl %s %s\n"
                "(docker-compose: docker-compose -f compose/docker-compose.yml exec <replica> "
                "odin-ctl %s %s)\n",
                id, l.host, l.pid, l.pid, l.host, verb, id, verb, id);
        if (o_json)
            printf("{\"shard\":\"%s\",\"action\":\"remote\",\"host\":\"%s\",\"pid\":%ld}\n",
                   id, l.host, l.pid);
        return 3;
    }
    if (kill((pid_t)l.pid, SIGUSR1) != 0) {
        fprintf(stderr, "odin-ctl: kill -USR1 %ld: %s\n", l.pid, strerror(errno));
        return 1;
    }
    /* wait until /health says so */
    uint64_t end = clock_mono_ms() + (uint64_t)o_timeout_ms;
    int done = 0;
    while (!done && clock_mono_ms() < end) {
        doc = NULL;
        if (shard_health(&l, &http, status, sizeof status, &doc, err, sizeof err) == 0)
            done = (strcmp(status, "draining") == 0) == want_draining;
        json_decref(doc);
        if (!done)
            poll(NULL, 0, 20);
    }
    if (o_json)
        printf("{\"shard\":\"%s\",\"action\":\"%s\",\"pid\":%ld,\"confirmed\":%s}\n", id, verb,
               l.pid, done ? "true" : "false");
    else
        printf("shard %s (pid %ld): %s%s\n", id, l.pid,
               want_draining ? "draining: shared port closed, new upgrades get 503; "
                               "open clients stay until SIGTERM"
                             : "drain ended: accepting new clients",
               done ? "" : " (not yet confirmed by /health)");
    return done ? 0 : 1;
}

int main(int argc, char **argv)
{
    /* options go to config_load; positional words are the command */
    char **cargv = calloc((size_t)argc + 1, sizeof *cargv);
    const char *words[3] = { NULL, NULL, NULL };
    int cargc = 0, nw = 0;
    if (!cargv)
        return 2;
    cargv[cargc++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            o_json = 1;
        } else if (strncmp(argv[i], "--", 2) == 0 || strcmp(argv[i], "-h") == 0) {
            cargv[cargc++] = argv[i];
            /* "--name value": keep the value with its flag */
            if (!strchr(argv[i], '=') && strcmp(argv[i], "--help") != 0 &&
                strcmp(argv[i], "-h") != 0 && strcmp(argv[i], "--version") != 0 &&
                i + 1 < argc)
                cargv[cargc++] = argv[++i];
        } else if (nw < 3) {
            words[nw++] = argv[i];
        } else {
            fprintf(stderr, "odin-ctl: too many arguments (see odin-ctl --help)\n");
            free(cargv);
            return 2;
        }
    }
    int lrc = config_load(opts, NOPTS, cargc, cargv, "odin-ctl", k_summary);
    free(cargv);
    if (lrc != 0) {
        config_free(opts, NOPTS);
        return lrc > 0 ? 0 : 2;
    }
    const char *c = words[0];
    int need = !c ? -1 : strcmp(c, "shards") == 0 || strcmp(c, "health") == 0 ? 0
             : strcmp(c, "routes") == 0 || strcmp(c, "tokens") == 0 ||
               strcmp(c, "drain") == 0 || strcmp(c, "undrain") == 0 ? 1 : -1;
    if (need < 0 || (need == 1) != (words[1] != NULL) || words[2]) {
        fprintf(stderr, "usage: odin-ctl [--json] [--redis-url=URL] "
                        "shards|health|routes TOKEN|tokens SHARD|drain SHARD|undrain SHARD\n"
                        "(odin-ctl --help for the settings)\n");
        config_free(opts, NOPTS);
        return 2;
    }
    int code = 1, ro = redis_open();
    if (ro == -2)
        code = 2;
    if (ro == 0) {
        if (strcmp(c, "shards") == 0) code = do_shards();
        else if (strcmp(c, "health") == 0) code = do_health();
        else if (strcmp(c, "routes") == 0) code = do_routes(words[1]);
        else if (strcmp(c, "tokens") == 0) code = do_tokens(words[1]);
        else if (strcmp(c, "drain") == 0) code = do_drain(words[1], 1);
        else code = do_drain(words[1], 0);
    }
    if (rc)
        redisFree(rc);
    config_free(opts, NOPTS);
    return code;
}
