/*
 * odin-ctl: operator CLI over the shard registry in Redis, the daemons'
 * HTTP endpoints and admin API, and Kafka.  Blocking (hiredis sync, plain
 * sockets, a librdkafka producer): it is a CLI.  Every Redis command and
 * HTTP request is bounded by CTL_TIMEOUT_MS.
 *
 *   odin-ctl [--json] [--redis-url=...] [--redis-prefix=...] COMMAND [ARG...]
 *     shards            every registered shard: lease, endpoint, clients, age
 *     routes TOKEN      the shards that hold subscribers of TOKEN
 *     tokens SHARD      the tokens SHARD registered
 *     health            /health of every live shard (and the router with
 *                       CTL_ROUTER_ADDR)
 *     drain SHARD       start a drain: POST /admin/v1/drain when the shard has
 *                       an ADMIN_ADDR and ADMIN_TOKEN is set, else SIGUSR1 to
 *                       the shard's pid when it runs on this host, else
 *                       print how
 *     undrain SHARD     end a drain (the same ways, only if draining)
 *     channels          channels and subscriber counts summed over every
 *                       shard listed in Redis (each shard's admin API)
 *     clients SHARD [CURSOR]  the shard's WebSocket clients
 *     kick SHARD CLIENT close one client (code 4000)
 *     publish TOKEN [CATEGORY] JSON  produce a test record (Kafka only)
 *
 * Same settings as the daemons (REDIS_URL, REDIS_PASSWORD, REDIS_PREFIX), so
 * it works against `make run` (export REDIS_URL=... as run-stack.sh prints)
 * and inside a compose container alike.  docs/operations.md lists the
 * equivalent redis-cli commands.
 *
 * Exit status: 0 ok; 1 a check failed (unhealthy, unreachable, unknown
 * token, shard or client, refused with 401/403, timed out); 2 usage or
 * settings; 3 drain must be done on another host.
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
#include <librdkafka/rdkafka.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/schema.h"
#include "common/topics.h"

static char *o_redis_url, *o_redis_password, *o_prefix, *o_router;
static char *o_admin_token, *o_brokers, *o_shards, *o_sentinels, *o_master_name;
static long o_timeout_ms, o_page;
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
      "Timeout of each Redis command, each HTTP request (connect to reply) and "
      "of a publish's acknowledgement", 100, 600000 },
    { "ADMIN_TOKEN", CFG_STR, &o_admin_token, NULL,
      "Bearer token sent to the admin API of shards and routers (the ADMIN_TOKEN "
      "they were started with); needed by kick, and by every command when they "
      "have one", 0, 0 },
    { "CTL_PAGE_SIZE", CFG_INT, &o_page, "100",
      "Entries asked per admin API request (channels, clients)", 1, 1000 },
    { "CTL_SHARDS", CFG_STR, &o_shards, NULL,
      "Comma-separated id=host:port of shards' ADMIN_ADDR: channels, clients and "
      "kick ask these instead of the registry, and work while Redis is down "
      "(unset: the shards listed in Redis)", 0, 0 },
    { "KAFKA_BROKERS", CFG_STR, &o_brokers, "127.0.0.1:9092",
      "Kafka bootstrap servers for `publish` (host:port list)", 0, 0 },
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
    "                    (drain/undrain use the shard's admin API instead when it has\n"
    "                    an ADMIN_ADDR and ADMIN_TOKEN is set: works from any host)\n"
    "  channels          channels and subscriber counts over every shard (admin API)\n"
    "  clients SHARD [CURSOR]  WebSocket clients of SHARD (all pages; from CURSOR: one)\n"
    "  kick SHARD CLIENT close client CLIENT of SHARD (code 4000, needs ADMIN_TOKEN)\n"
    "  publish TOKEN [CATEGORY] JSON  produce a test record (key TOKEN) to the\n"
    "                    topic of CATEGORY (default trade) on KAFKA_BROKERS\n"
    "--json prints JSON instead of a table.  Exit: 0 ok, 1 check failed, unknown\n"
    "token/shard/client, refused (401/403) or timed out, 2 usage, 3 drain must\n"
    "run on the shard's host";

static redisContext *rc;
static char g_url[600];   /* REDIS_URL, password redacted */

/* What went wrong on rc, with a timeout named as one (hiredis says
 * "Resource temporarily unavailable" for a server that does not answer). */
static const char *redis_why(void)
{
    static char m[1024];
    if (!rc)
        return "out of memory";
    if (rc->err == REDIS_ERR_IO || rc->err == REDIS_ERR_EOF) {
        if (strstr(rc->errstr, "temporarily unavailable") || strstr(rc->errstr, "timed out")) {
            snprintf(m, sizeof m, "%s did not answer: timed out after %ld ms (CTL_TIMEOUT_MS)",
                     g_url, o_timeout_ms);
            return m;
        }
    }
    snprintf(m, sizeof m, "%s: %s", g_url, rc->errstr);
    return m;
}

/* ---- Redis ---------------------------------------------------------------- */

/* The master's address from the first Sentinel of ep->sentinels that
 * knows ep->master_name, into ep->host / ep->port.  0 or -1 (printed). */
static int sentinel_master(redis_endpoint *ep, struct timeval tv)
{
    char **v = NULL;
    size_t n = 0;
    if (addr_split_list(ep->sentinels, &v, &n) != 0)
        return -1;
    int ok = -1;
    for (size_t i = 0; i < n && ok != 0; i++) {
        char host[256];
        int port;
        if (addr_split_hostport(v[i], host, sizeof host, &port) != 0)
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
    addr_list_free(v, n);
    return ok;
}

/* 0, -1 (cannot connect / AUTH / SELECT; printed), -2 (bad settings). */
static int redis_open(void)
{
    redis_endpoint ep;
    char *url = g_url;
    addr_redact_url(o_redis_url, g_url, sizeof g_url);
    char uerr[300] = "REDIS_PASSWORD longer than 255 bytes";
    if (addr_parse_redis_url_err(o_redis_url, &ep, uerr, sizeof uerr) != 0 ||
        addr_redis_set_password(&ep, o_redis_password) != 0) {
        fprintf(stderr, "odin-ctl: REDIS_URL '%s' is not redis://[[user]:password@]host:port[/db] "
                        "or unix:/path: %s\n", url, uerr);
        return -2;   /* a settings mistake: exit 2 */
    }
    char why[300];
    if (addr_redis_set_sentinels(&ep, o_sentinels, o_master_name, why, sizeof why) != 0) {
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
                !rc ? "out of memory" : strstr(rc->errstr, "timed out") ? "timed out"
                                                                         : rc->errstr);
        return -1;
    }
    redisSetTimeout(rc, tv);
    redisReply *r = NULL;
    if (ep.password[0]) {
        r = ep.user[0] ? redisCommand(rc, "AUTH %s %s", ep.user, ep.password)
                       : redisCommand(rc, "AUTH %s", ep.password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "odin-ctl: Redis AUTH failed: %s\n", r ? r->str : redis_why());
            freeReplyObject(r);
            return -1;
        }
        freeReplyObject(r);
    }
    if (ep.db) {
        r = redisCommand(rc, "SELECT %d", ep.db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "odin-ctl: SELECT %d failed: %s\n", ep.db, r ? r->str : redis_why());
            freeReplyObject(r);
            return -1;
        }
        freeReplyObject(r);
    }
    return 0;
}

/* Run a command; NULL (message printed) on a transport or error reply. */
/* P shards (common/schema.h), built once; "" on ENOMEM (the command then
 * fails as for a missing key). */
static const char *shards_key(void)
{
    static char *k;
    if (!k)
        k = schema_shards_key(o_prefix);
    return k ? k : "";
}

static redisReply *cmd(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    if (!r) {
        fprintf(stderr, "odin-ctl: Redis at %s\n", redis_why());
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
    char *key = schema_lease_key(o_prefix, o_cluster, id);
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
    redisReply *r = cmd("SMEMBERS %s", shards_key());
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
    if (addr_split_hostport(a, host, hl, port) != 0) {
        host[0] = '\0';
        return;
    }
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0 || !host[0])
        snprintf(host, hl, "%s", is_local_host(l->host) ? "127.0.0.1" : l->host);
}

/* ---- HTTP ------------------------------------------------------------------ */

#define HTTP_BODY_MAX (16u << 20)   /* bytes of a reply kept */

/* ms left until deadline (at least 0). */
static int ms_left(uint64_t deadline)
{
    uint64_t now = clock_mono_ms();
    return now >= deadline ? 0 : (int)(deadline - now);
}

/*
 * METHOD http://host:port/path (no body) with the admin bearer token when
 * ADMIN_TOKEN is set; the whole exchange (connect, send, reply) is bounded
 * by CTL_TIMEOUT_MS.  Returns the status (and the body, malloc'd), or -1
 * with err ("timed out after N ms" for a peer that does not answer).
 */
static int http_req(const char *method, const char *host, int port, const char *path,
                    char **body, char *err, size_t errlen)
{
    *body = NULL;
    uint64_t deadline = clock_mono_ms() + (uint64_t)o_timeout_ms;
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
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            continue;
        int c = connect(fd, a->ai_addr, a->ai_addrlen);
        if (c != 0 && errno == EINPROGRESS) {
            struct pollfd pf = { fd, POLLOUT, 0 };
            int pr = poll(&pf, 1, ms_left(deadline));
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (pr == 0) {
                snprintf(err, errlen, "connect %s:%d: timed out after %ld ms", host, port,
                         o_timeout_ms);
                c = -1;
                errno = ETIMEDOUT;
            } else if (pr < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 ||
                       soerr) {
                errno = soerr ? soerr : errno;
                c = -1;
                snprintf(err, errlen, "connect %s:%d: %s", host, port, strerror(errno));
            } else {
                c = 0;
            }
        } else if (c != 0) {
            snprintf(err, errlen, "connect %s:%d: %s", host, port, strerror(errno));
        }
        if (c != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0)
        return -1;
    char req[1024];
    int rl = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: %s:%d\r\n%s%s%s"
                      "Content-Length: 0\r\nConnection: close\r\n\r\n", method, path, host,
                      port, o_admin_token && *o_admin_token ? "Authorization: Bearer " : "",
                      o_admin_token && *o_admin_token ? o_admin_token : "",
                      o_admin_token && *o_admin_token ? "\r\n" : "");
    if (rl < 0 || (size_t)rl >= sizeof req) {
        snprintf(err, errlen, "request too long");
        close(fd);
        return -1;
    }
    size_t off = 0;
    while (off < (size_t)rl) {
        ssize_t w = send(fd, req + off, (size_t)rl - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        struct pollfd pf = { fd, POLLOUT, 0 };
        if (w < 0 && errno == EAGAIN && poll(&pf, 1, ms_left(deadline)) > 0)
            continue;
        snprintf(err, errlen, "send to %s:%d: %s", host, port,
                 w < 0 && errno == EAGAIN ? "timed out" : strerror(errno));
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
        if (n + 1 >= cap) {
            if (cap >= HTTP_BODY_MAX)
                break;
            char *nb = realloc(b, cap * 2);
            if (!nb)
                break;
            b = nb;
            cap *= 2;
        }
        ssize_t r = recv(fd, b + n, cap - 1 - n, 0);
        if (r > 0) {
            n += (size_t)r;
            continue;
        }
        if (r == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            struct pollfd pf = { fd, POLLIN, 0 };
            int left = ms_left(deadline);
            if (left > 0 && poll(&pf, 1, left) > 0)
                continue;
            snprintf(err, errlen, "did not answer: timed out after %ld ms "
                     "(CTL_TIMEOUT_MS)", o_timeout_ms);
        } else {
            snprintf(err, errlen, "recv from %s:%d: %s", host, port, strerror(errno));
        }
        close(fd);
        free(b);
        return -1;
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

static int http_get(const char *host, int port, const char *path, char **body,
                    char *err, size_t errlen)
{
    return http_req("GET", host, port, path, body, err, errlen);
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
        printf("(no shard registered under %s)\n", shards_key());
    }
    json_decref(arr);
    free(ids);
    freeReplyObject(set);
    return rcode;
}

/* Every member of set `key`, read with SSCAN (COUNT CTL_SCAN_COUNT per
 * call: a reverse index of millions of tokens never holds Redis for long,
 * as one SMEMBERS would), into *out (malloc'd strings; the caller frees
 * each and the array).  0, or 1 (Redis error or out of memory; logged). */
#define CTL_SCAN_COUNT "1000"
static int scan_set(const char *key, char ***out, size_t *n)
{
    char **v = NULL;
    size_t len = 0, cap = 0;
    char cursor[32] = "0";
    *out = NULL;
    *n = 0;
    do {
        redisReply *r = cmd("SSCAN %s %s COUNT " CTL_SCAN_COUNT, key, cursor);
        if (!r)
            goto err;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            fprintf(stderr, "odin-ctl: Redis: unexpected SSCAN reply\n");
            freeReplyObject(r);
            goto err;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        redisReply *page = r->element[1];
        for (size_t i = 0; i < page->elements; i++) {
            if (len == cap) {
                size_t nc = cap ? cap * 2 : 64;
                char **nv = realloc(v, nc * sizeof *nv);
                if (!nv) {
                    freeReplyObject(r);
                    goto err;
                }
                v = nv;
                cap = nc;
            }
            if (!(v[len] = strdup(page->element[i]->str))) {
                freeReplyObject(r);
                goto err;
            }
            len++;
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    *out = v;
    *n = len;
    return 0;
err:
    for (size_t i = 0; i < len; i++)
        free(v[i]);
    free(v);
    return 1;
}

/* The members of set `key` (malloc'd, freed here; NULL: out of memory),
 * sorted; *count gets the number of members. */
static int print_set(char *key, const char *arg, const char *label, size_t *count)
{
    char **v = NULL;
    size_t n = 0;
    int bad = key ? scan_set(key, &v, &n) : 1;
    free(key);
    if (bad)
        return 1;
    if (n > 1)       /* v is NULL for an empty set: qsort(NULL, 0) is UB */
        qsort(v, n, sizeof *v, cmp_str);
    *count = n;
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
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
    return 0;
}

static int do_routes(const char *token)
{
    size_t count = 0;
    char *key = schema_route_key(o_prefix, token);
    char *shown = key ? strdup(key) : NULL;   /* print_set frees key */
    int code = print_set(key, token, "token", &count);
    if (code == 0 && count == 0) {
        fprintf(stderr, "odin-ctl: unknown token '%s': no shard holds a subscriber of it "
                        "(%s is empty)\n", token, shown ? shown : "its route set");
        code = 1;
    }
    free(shown);
    return code;
}

/* 1 if the shard is known to Redis (a lease, or a member of the shards
 * SET), 0 if not, -1 on error (printed). */
static int shard_known(const char *id)
{
    char *key = schema_lease_key(o_prefix, o_cluster, id);
    redisReply *r = key ? cmd("EXISTS %s", key) : NULL;
    free(key);
    if (!r)
        return -1;
    int known = r->integer > 0;
    freeReplyObject(r);
    if (known)
        return 1;
    r = cmd("SISMEMBER %s %s", shards_key(), id);
    if (!r)
        return -1;
    known = r->integer > 0;
    freeReplyObject(r);
    return known;
}

static void unknown_shard(const char *id)
{
    fprintf(stderr, "odin-ctl: unknown shard '%s': no lease and not in %s "
                    "(see odin-ctl shards)\n", id, shards_key());
}

static int do_tokens(const char *shard)
{
    int known = shard_known(shard);
    if (known < 0)
        return 1;
    if (!known) {
        unknown_shard(shard);
        return 1;
    }
    size_t count = 0;
    return print_set(schema_tokens_key(o_prefix, o_cluster, shard), shard, "shard",
                     &count);
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
        if (addr_split_hostport(o_router, host, sizeof host, &port) == 0)
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

/* ---- admin API ---------------------------------------------------------- */

/* CTL_SHARDS, parsed: ids[i] -> addrs[i] (host:port). */
static char **g_static_ids, **g_static_addrs;
static size_t g_nstatic;

/* 0, or -1 (printed) for an entry that is not id=host:port. */
static int static_shards_parse(void)
{
    char **items = NULL;
    size_t n = 0;
    if (addr_split_list(o_shards, &items, &n) != 0)
        return -1;
    g_static_ids = calloc(n + 1, sizeof *g_static_ids);
    g_static_addrs = calloc(n + 1, sizeof *g_static_addrs);
    int st = g_static_ids && g_static_addrs ? 0 : -1;
    for (size_t i = 0; i < n && st == 0; i++) {
        char *eq = strchr(items[i], '=');
        char host[256];
        int port;
        if (!eq || eq == items[i] ||
            addr_split_hostport(eq + 1, host, sizeof host, &port) != 0) {
            fprintf(stderr, "odin-ctl: CTL_SHARDS entry '%s' is not id=host:port\n", items[i]);
            st = -1;
            break;
        }
        *eq = '\0';
        g_static_ids[g_nstatic] = strdup(items[i]);
        g_static_addrs[g_nstatic] = strdup(eq + 1);
        g_nstatic++;
        if (!g_static_ids[g_nstatic - 1] || !g_static_addrs[g_nstatic - 1])
            st = -1;
    }
    addr_list_free(items, n);
    return st;
}

static void static_shards_free(void)
{
    for (size_t i = 0; i < g_nstatic; i++) {
        free(g_static_ids[i]);
        free(g_static_addrs[i]);
    }
    free(g_static_ids);
    free(g_static_addrs);
}

/* The admin listener of shard id: 0, or 1 (printed: unknown shard, no
 * live lease, no ADMIN_ADDR, Redis error). */
static int admin_target(const char *id, lease *l, char *host, size_t hl, int *port)
{
    if (o_shards && *o_shards) {
        memset(l, 0, sizeof *l);
        for (size_t i = 0; i < g_nstatic; i++) {
            if (strcmp(g_static_ids[i], id) != 0)
                continue;
            snprintf(l->id, sizeof l->id, "%s", id);
            snprintf(l->admin_addr, sizeof l->admin_addr, "%s", g_static_addrs[i]);
            l->live = 1;
            if (addr_split_hostport(l->admin_addr, host, hl, port) != 0)
                return 1;
            return 0;
        }
        fprintf(stderr, "odin-ctl: unknown shard '%s': not in CTL_SHARDS\n", id);
        return 1;
    }
    if (lease_get(id, l) != 0)
        return 1;
    if (!l->live) {
        int known = shard_known(id);
        if (known == 0)
            unknown_shard(id);
        else if (known > 0)
            fprintf(stderr, "odin-ctl: shard '%s' has no live lease (expired or stopped)\n", id);
        return 1;
    }
    if (!l->admin_addr[0]) {
        fprintf(stderr, "odin-ctl: shard '%s' has no ADMIN_ADDR: the admin API is served "
                        "only on the admin listener\n", id);
        return 1;
    }
    reach_addr(l, host, hl, port);
    if (!host[0] || *port <= 0) {
        fprintf(stderr, "odin-ctl: shard '%s': admin_addr '%s' is not host:port\n", id,
                l->admin_addr);
        return 1;
    }
    return 0;
}

/*
 * One admin API request to a shard (or the router: id "router").  Returns
 * the parsed JSON reply of a 2xx answer in *doc (caller decrefs) and 0; or
 * prints why not (unreachable, timed out, 401/403 with the server's
 * message, other statuses) and returns 1.  *status: the HTTP status (-1:
 * no answer).
 */
static int admin_call(const char *what, const char *method, const char *host, int port,
                      const char *path, json_t **doc, int *status)
{
    char err[400] = "", *body = NULL;
    *doc = NULL;
    *status = http_req(method, host, port, path, &body, err, sizeof err);
    if (*status < 0) {
        fprintf(stderr, "odin-ctl: %s: %s\n", what, err);
        return 1;
    }
    json_t *j = json_loads(body, 0, NULL);
    free(body);
    if (*status / 100 == 2 && j) {
        *doc = j;
        return 0;
    }
    const char *msg = j ? json_string_value(json_object_get(j, "error")) : NULL;
    if (*status == 401 || *status == 403)
        fprintf(stderr, "odin-ctl: %s refused the request (%d): %s%s\n", what, *status,
                msg ? msg : "no reason given",
                *status == 401 ? (o_admin_token && *o_admin_token
                                      ? " (check ADMIN_TOKEN)" : " (set ADMIN_TOKEN)")
                               : "");
    else
        fprintf(stderr, "odin-ctl: %s answered %d: %s\n", what, *status,
                msg ? msg : "(not JSON)");
    json_decref(j);
    return 1;
}

/* cursor as a query value: [A-Za-z0-9._-] kept, the rest %XX. */
static void url_escape(const char *in, char *out, size_t n)
{
    size_t o = 0;
    for (; *in && o + 4 < n; in++) {
        unsigned char c = (unsigned char)*in;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '.' || c == '_' || c == '-')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, n - o, "%%%02X", c);
    }
    out[o] = '\0';
}

static int cmp_json_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* channels: every page of every live shard's /admin/v1/channels, summed. */
static int do_channels(void)
{
    const char **ids = NULL;
    size_t n = 0;
    redisReply *set = NULL;
    int fixed = o_shards && *o_shards;
    if (fixed) {
        ids = (const char **)g_static_ids;
        n = g_nstatic;
    } else if (!(set = shard_ids(&ids, &n))) {
        return 1;
    }
    json_t *agg = json_object();     /* channel -> {"subscribers":n,"shards":{id:n}} */
    json_t *errors = json_array();
    int bad = 0;
    size_t queried = 0;
    for (size_t i = 0; i < n; i++) {
        lease l;
        char host[256];
        int port;
        if (!fixed && lease_get(ids[i], &l) != 0) {
            bad = 1;
            break;
        }
        if (!fixed && !l.live)
            continue;   /* listed but expired: nothing to ask */
        if (admin_target(ids[i], &l, host, sizeof host, &port) != 0) {
            bad = 1;
            json_array_append_new(errors, json_pack("{s:s,s:s}", "shard", ids[i], "error",
                                                    "no admin listener"));
            continue;
        }
        char cursor[800] = "", what[300];
        snprintf(what, sizeof what, "shard %s (%s)", ids[i], l.admin_addr);
        for (;;) {
            char path[1024];
            snprintf(path, sizeof path, "/admin/v1/channels?limit=%ld%s%s", o_page,
                     cursor[0] ? "&cursor=" : "", cursor);
            json_t *doc;
            int st;
            if (admin_call(what, "GET", host, port, path, &doc, &st) != 0) {
                bad = 1;
                json_array_append_new(errors, json_pack("{s:s,s:i}", "shard", ids[i],
                                                        "http", st));
                break;
            }
            size_t k;
            json_t *e;
            json_array_foreach(json_object_get(doc, "channels"), k, e) {
                const char *ch = json_string_value(json_object_get(e, "channel"));
                json_int_t subs = json_integer_value(json_object_get(e, "subscribers"));
                if (!ch)
                    continue;
                json_t *a = json_object_get(agg, ch);
                if (!a) {
                    a = json_pack("{s:I,s:{}}", "subscribers", (json_int_t)0, "shards");
                    json_object_set_new(agg, ch, a);
                }
                json_object_set_new(a, "subscribers", json_integer(
                    json_integer_value(json_object_get(a, "subscribers")) + subs));
                json_object_set_new(json_object_get(a, "shards"), ids[i], json_integer(subs));
            }
            const char *next = json_string_value(json_object_get(doc, "next"));
            if (next)
                url_escape(next, cursor, sizeof cursor);
            json_decref(doc);
            if (!next)
                break;
        }
        queried++;
    }
    /* in channel order */
    size_t nk = json_object_size(agg), k = 0;
    const char **keys = calloc(nk ? nk : 1, sizeof *keys);
    const char *key;
    json_t *val;
    json_object_foreach(agg, key, val)
        if (keys)
            keys[k++] = key;
    if (keys)
        qsort(keys, k, sizeof *keys, cmp_json_key);
    if (o_json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < k; i++) {
            json_t *a = json_object_get(agg, keys[i]);
            json_array_append_new(arr, json_pack("{s:s,s:O,s:O}", "channel", keys[i],
                                                 "subscribers", json_object_get(a, "subscribers"),
                                                 "shards", json_object_get(a, "shards")));
        }
        json_t *out = json_pack("{s:o,s:I,s:o,s:b}", "channels", arr, "shards_queried",
                                (json_int_t)queried, "errors", errors, "ok", !bad);
        errors = NULL;
        json_dumpf(out, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(out);
    } else {
        printf("%-40s %11s  %s\n", "CHANNEL", "SUBSCRIBERS", "SHARDS");
        for (size_t i = 0; i < k; i++) {
            json_t *a = json_object_get(agg, keys[i]);
            printf("%-40s %11lld  ", keys[i],
                   (long long)json_integer_value(json_object_get(a, "subscribers")));
            const char *sid;
            json_t *sv;
            int first = 1;
            json_object_foreach(json_object_get(a, "shards"), sid, sv) {
                printf("%s%s=%lld", first ? "" : ",", sid, (long long)json_integer_value(sv));
                first = 0;
            }
            printf("\n");
        }
        if (k == 0)
            printf("(no channel has a subscriber on the %zu shard(s) asked)\n", queried);
    }
    free(keys);
    json_decref(errors);
    json_decref(agg);
    if (!fixed) {
        free(ids);
        freeReplyObject(set);
    }
    return bad;
}

/* clients SHARD [CURSOR]: every page, or the one page from CURSOR. */
static int do_clients(const char *id, const char *from)
{
    lease l;
    char host[256], what[300];
    int port;
    if (admin_target(id, &l, host, sizeof host, &port) != 0)
        return 1;
    snprintf(what, sizeof what, "shard %s (%s)", id, l.admin_addr);
    char cursor[64] = "";
    if (from)
        url_escape(from, cursor, sizeof cursor);
    json_t *all = json_array();
    long long now = (long long)clock_wall_ms();
    const char *next = NULL;
    json_t *doc = NULL;
    int bad = 0, header = 0;
    for (;;) {
        char path[256];
        snprintf(path, sizeof path, "/admin/v1/clients?limit=%ld%s%s", o_page,
                 cursor[0] ? "&cursor=" : "", cursor);
        int st;
        if (admin_call(what, "GET", host, port, path, &doc, &st) != 0) {
            bad = 1;
            break;
        }
        size_t k;
        json_t *e;
        if (!o_json && !header++)
            printf("%-10s %-40s %8s %-8s %10s  %s\n", "ID", "ADDRESS", "AGE", "STATE",
                   "QUEUED", "CHANNELS");
        json_array_foreach(json_object_get(doc, "clients"), k, e) {
            if (o_json) {
                json_array_append(all, e);
                continue;
            }
            char addr[120], age[32];
            snprintf(addr, sizeof addr, "%s:%lld",
                     json_string_value(json_object_get(e, "address")),
                     (long long)json_integer_value(json_object_get(e, "port")));
            fmt_age(now - (long long)json_integer_value(json_object_get(e, "since_ms")), age,
                    sizeof age);
            printf("%-10lld %-40s %8s %-8s %10lld  ",
                   (long long)json_integer_value(json_object_get(e, "id")), addr, age,
                   json_string_value(json_object_get(e, "state")),
                   (long long)json_integer_value(json_object_get(e, "queued_bytes")));
            size_t c;
            json_t *ch;
            json_array_foreach(json_object_get(e, "channels"), c, ch)
                printf("%s%s", c ? "," : "", json_string_value(ch));
            printf("\n");
        }
        next = json_string_value(json_object_get(doc, "next"));
        if (!next || from)
            break;
        url_escape(next, cursor, sizeof cursor);
        json_decref(doc);
        doc = NULL;
    }
    if (!bad && o_json) {
        json_t *out = json_pack("{s:s,s:O,s:O?,s:s?}", "shard", id, "clients", all, "total",
                                json_object_get(doc, "total"), "next", from ? next : NULL);
        json_dumpf(out, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(out);
    } else if (!bad && from && next) {
        fprintf(stderr, "(more: odin-ctl clients %s %s)\n", id, next);
    }
    json_decref(doc);
    json_decref(all);
    return bad;
}

/* kick SHARD CLIENT: POST .../disconnect; the client gets close code 4000. */
static int do_kick(const char *id, const char *client)
{
    char *end;
    errno = 0;
    unsigned long long cid = strtoull(client, &end, 10);
    if (errno || end == client || *end || cid == 0) {
        fprintf(stderr, "odin-ctl: CLIENT must be a client id (odin-ctl clients %s)\n", id);
        return 2;
    }
    lease l;
    char host[256], what[300], path[128];
    int port, st;
    if (admin_target(id, &l, host, sizeof host, &port) != 0)
        return 1;
    snprintf(what, sizeof what, "shard %s (%s)", id, l.admin_addr);
    snprintf(path, sizeof path, "/admin/v1/clients/%llu/disconnect", cid);
    json_t *doc;
    if (admin_call(what, "POST", host, port, path, &doc, &st) != 0)
        return 1;
    if (o_json) {
        json_dumpf(doc, stdout, 0);
        printf("\n");
    } else {
        printf("client %llu of shard %s: closed with code %lld\n", cid, id,
               (long long)json_integer_value(json_object_get(doc, "code")));
    }
    json_decref(doc);
    return 0;
}

/* drain/undrain through the admin API: 0, 1 (printed). */
static int drain_api(const lease *l, int want_draining)
{
    char host[256], what[300];
    int port, st;
    reach_addr(l, host, sizeof host, &port);
    snprintf(what, sizeof what, "shard %s (%s)", l->id, l->admin_addr);
    json_t *doc;
    if (admin_call(what, "POST", host, port, want_draining ? "/admin/v1/drain"
                                                          : "/admin/v1/undrain", &doc, &st))
        return 1;
    int changed = json_is_true(json_object_get(doc, "changed"));
    if (o_json)
        printf("{\"shard\":\"%s\",\"action\":\"%s\",\"via\":\"admin_api\",\"changed\":%s}\n",
               l->id, changed ? (want_draining ? "drain" : "undrain") : "none",
               changed ? "true" : "false");
    else if (!changed)
        printf("shard %s is already %s\n", l->id, want_draining ? "draining" : "not draining");
    else
        printf("shard %s: %s (admin API)\n", l->id,
               want_draining ? "draining: shared port closed, new upgrades get 503; "
                               "open clients stay until SIGTERM"
                             : "drain ended: accepting new clients");
    json_decref(doc);
    return 0;
}

/* ---- publish --------------------------------------------------------------- */

typedef struct dr_state {
    int done;
    rd_kafka_resp_err_t err;
    int32_t partition;
    int64_t offset;
} dr_state;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    dr_state *d = opaque;
    d->done = 1;
    d->err = m->err;
    d->partition = m->partition;
    d->offset = m->offset;
}

static int do_publish(const char *token, const char *category, const char *json)
{
    if (!topics_token_valid(token, strlen(token))) {
        fprintf(stderr, "odin-ctl: '%s' is not a token (1-64 of [A-Za-z0-9_-])\n", token);
        return 2;
    }
    const topic_info *ti = topics_by_category(category, strlen(category));
    if (!ti) {
        fprintf(stderr, "odin-ctl: unknown category '%s'; one of:", category);
        for (size_t i = 0; i < topics_default_count; i++)
            fprintf(stderr, " %s", topics_default[i].category);
        fprintf(stderr, "\n");
        return 1;
    }
    json_error_t jerr;
    json_t *v = json_loads(json, JSON_DECODE_ANY, &jerr);
    if (!v) {
        fprintf(stderr, "odin-ctl: the record is not JSON: %s (column %d)\n", jerr.text,
                jerr.column);
        return 2;
    }
    json_decref(v);
    char errstr[512];
    dr_state d = { 0 };
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char tmo[32];
    snprintf(tmo, sizeof tmo, "%ld", o_timeout_ms);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", o_brokers, errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "message.timeout.ms", tmo, errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof errstr)) {
        fprintf(stderr, "odin-ctl: KAFKA_BROKERS: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 2;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, &d);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "odin-ctl: cannot create a Kafka producer: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    rd_kafka_resp_err_t e = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(ti->topic), RD_KAFKA_V_KEY(token, strlen(token)),
        RD_KAFKA_V_VALUE((void *)json, strlen(json)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_END);
    int code = 0;
    if (e) {
        fprintf(stderr, "odin-ctl: cannot produce to %s: %s\n", ti->topic, rd_kafka_err2str(e));
        code = 1;
    } else {
        uint64_t deadline = clock_mono_ms() + (uint64_t)o_timeout_ms + 500;
        while (!d.done && clock_mono_ms() < deadline)
            rd_kafka_poll(rk, 50);
        if (!d.done || d.err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT) {
            fprintf(stderr, "odin-ctl: Kafka at %s did not acknowledge the record: timed out "
                            "after %ld ms (CTL_TIMEOUT_MS)\n", o_brokers, o_timeout_ms);
            code = 1;
        } else if (d.err) {
            fprintf(stderr, "odin-ctl: Kafka refused the record: %s\n", rd_kafka_err2str(d.err));
            code = 1;
        } else if (o_json) {
            printf("{\"topic\":\"%s\",\"key\":\"%s\",\"partition\":%d,\"offset\":%lld}\n",
                   ti->topic, token, (int)d.partition, (long long)d.offset);
        } else {
            printf("published to %s [partition %d, offset %lld], key %s: channel %s.%s\n",
                   ti->topic, (int)d.partition, (long long)d.offset, token, token,
                   ti->category);
        }
    }
    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    return code;
}

static int do_drain(const char *id, int want_draining)
{
    lease l;
    if (lease_get(id, &l) != 0)
        return 1;
    const char *verb = want_draining ? "drain" : "undrain";
    if (!l.live) {
        if (shard_known(id) == 0)
            unknown_shard(id);
        else
            fprintf(stderr, "odin-ctl: no live lease for shard '%s' (see odin-ctl shards)\n", id);
        return 1;
    }
    /* the admin API works from any host */
    if (l.admin_addr[0] && o_admin_token && *o_admin_token)
        return drain_api(&l, want_draining);
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
    const char *words[4] = { NULL, NULL, NULL, NULL };
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
        } else if (nw < 4) {
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
    /* command, fewest and most arguments */
    static const struct { const char *name; int min, max; } cmds[] = {
        { "shards", 0, 0 }, { "health", 0, 0 }, { "channels", 0, 0 },
        { "routes", 1, 1 }, { "tokens", 1, 1 }, { "drain", 1, 1 }, { "undrain", 1, 1 },
        { "clients", 1, 2 }, { "kick", 2, 2 }, { "publish", 2, 3 },
    };
    const char *c = words[0];
    int args = nw - 1, ok = 0;
    for (size_t i = 0; c && i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(c, cmds[i].name) == 0)
            ok = args >= cmds[i].min && args <= cmds[i].max;
    if (!ok) {
        fprintf(stderr, "usage: odin-ctl [--json] [--redis-url=URL] "
                        "shards|health|channels|routes TOKEN|tokens SHARD|drain SHARD|"
                        "undrain SHARD|clients SHARD [CURSOR]|kick SHARD CLIENT|"
                        "publish TOKEN [CATEGORY] JSON\n"
                        "(odin-ctl --help for the settings)\n");
        config_free(opts, NOPTS);
        return 2;
    }
    int code = 1;
    if (strcmp(c, "publish") == 0) {
        /* Kafka only: works while Redis is down */
        code = do_publish(words[1], nw == 4 ? words[2] : "trade", words[nw - 1]);
        config_free(opts, NOPTS);
        return code;
    }
    if (o_shards && *o_shards && static_shards_parse() != 0) {
        static_shards_free();
        config_free(opts, NOPTS);
        return 2;
    }
    /* with CTL_SHARDS, the admin API commands need no Redis */
    int no_redis = o_shards && *o_shards &&
                   (strcmp(c, "channels") == 0 || strcmp(c, "clients") == 0 ||
                    strcmp(c, "kick") == 0);
    int ro = no_redis ? 0 : redis_open();
    if (ro == -2)
        code = 2;
    if (ro == 0) {
        if (strcmp(c, "shards") == 0) code = do_shards();
        else if (strcmp(c, "health") == 0) code = do_health();
        else if (strcmp(c, "channels") == 0) code = do_channels();
        else if (strcmp(c, "routes") == 0) code = do_routes(words[1]);
        else if (strcmp(c, "tokens") == 0) code = do_tokens(words[1]);
        else if (strcmp(c, "clients") == 0) code = do_clients(words[1], words[2]);
        else if (strcmp(c, "kick") == 0) code = do_kick(words[1], words[2]);
        else if (strcmp(c, "drain") == 0) code = do_drain(words[1], 1);
        else code = do_drain(words[1], 0);
    }
    if (rc)
        redisFree(rc);
    static_shards_free();
    config_free(opts, NOPTS);
    return code;
}
