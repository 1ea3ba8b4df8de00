#include "tests/support/support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"

extern char **environ;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "test support: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

const char *tsup_env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        die("%s is not set: run integration tests through tools/run-tests.sh it", name);
    return v;
}

const char *tsup_bin(const char *name)
{
    static char paths[8][512];
    static int slot;
    char *p = paths[slot++ & 7];
    snprintf(p, 512, "%s/%s", tsup_env("ODIN_BUILD"), name);
    return p;
}

char *tsup_tmp(const char *name)
{
    static int seq;
    char *p = malloc(512);
    if (!p)
        die("out of memory");
    snprintf(p, 512, "%s/%d-%d-%s", tsup_env("ODIN_TMP"), (int)getpid(), seq++, name);
    return p;
}

/* Where tsup_free_port picks: up to 12000 ports just below the ephemeral
 * range (net.ipv4.ip_local_port_range, 32768 60999 by default), else above
 * it, else (a range that leaves neither) anywhere above 1024. */
static void port_window(int *lo, int *n)
{
    int elo = 32768, ehi = 60999;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%d %d", &elo, &ehi) != 2) {
            elo = 32768;
            ehi = 60999;
        }
        fclose(f);
    }
    if (elo - 1 - 1024 >= 2000) {
        *n = elo - 1024 > 12000 ? 12000 : elo - 1024;
        *lo = elo - *n;
    } else if (65535 - ehi >= 2000) {
        *lo = ehi + 1;
        *n = 65535 - ehi > 12000 ? 12000 : 65535 - ehi;
    } else {
        *lo = 1025;
        *n = 64000;
    }
}

/*
 * A port outside Linux's ephemeral range (port_window): the kernel's
 * choice for bind(0) is an ephemeral port, which any outgoing connection
 * of the test's processes may take as its local port before the port is
 * used (seen: "Address already in use" for a SHARD_TCP_ADDR picked earlier
 * in the test).  Bindable on every address when handed out, and never
 * handed out twice by one process.
 */
int tsup_free_port(void)
{
    static unsigned char given[65536 / 8];
    static uint64_t x;
    static int lo, n;
    if (!x) {
        x = ((uint64_t)getpid() << 32) ^ (uint64_t)clock_mono_ms() ^ 0x9e3779b97f4a7c15ull;
        port_window(&lo, &n);
        /* tools/run-tests.sh runs tests side by side, one per slot: each
         * slot picks in its own part of the window, so two tests never
         * pick the same port */
        const char *ks = getenv("ODIN_TEST_SLOT"), *ns = getenv("ODIN_TEST_SLOTS");
        int k = ks ? atoi(ks) : 0, slots = ns ? atoi(ns) : 0;
        if (slots > 1 && k >= 1 && k <= slots && n / slots >= 500) {
            n /= slots;
            lo += (k - 1) * n;
        }
    }
    for (int tries = 0; tries < 4000; tries++) {
        x ^= x << 13;          /* xorshift64: rand() stays the tests' own */
        x ^= x >> 7;
        x ^= x << 17;
        int port = lo + (int)(x % (uint64_t)n);
        if (given[port / 8] & (1u << (port % 8)))
            continue;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            die("cannot find a free port: %s", strerror(errno));
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_ANY) };
        int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok) {
            given[port / 8] |= (unsigned char)(1u << (port % 8));
            return port;
        }
    }
    die("cannot find a free port in %d..%d", lo, lo + n - 1);
    return -1;
}

pid_t tsup_spawn(char *const argv[], char *const extra_env[])
{
    char log[512];
    const char *b = strrchr(argv[0], '/');
    b = b ? b + 1 : argv[0];
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (extra_env)
            for (char *const *e = extra_env; *e; e++)
                putenv(*e);
        if (!getenv("ODIN_TEST_VERBOSE")) {
            snprintf(log, sizeof log, "%s/%s.%d.log", getenv("ODIN_TMP") ? getenv("ODIN_TMP") : "/tmp",
                     b, (int)getpid());
            int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
                close(fd);
            }
        }
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

int tsup_stop(pid_t pid, int sig, int timeout_ms)
{
    if (pid <= 0)
        return -1;
    kill(pid, sig);
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0)
            return -1;
        if (clock_mono_ms() >= end)
            break;
        poll(NULL, 0, 5);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

int tsup_wait_until(int (*pred)(void *), void *arg, int timeout_ms)
{
    uint64_t end = clock_mono_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (pred(arg))
            return 1;
        if (clock_mono_ms() >= end)
            return 0;
        poll(NULL, 0, 10);
    }
}

static int tcp_ready(void *arg)
{
    int port = *(int *)arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

int tsup_wait_tcp(int port, int timeout_ms)
{
    return tsup_wait_until(tcp_ready, &port, timeout_ms);
}

static int unix_ready(void *arg)
{
    const char *path = arg;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

int tsup_wait_unix(const char *path, int timeout_ms)
{
    return tsup_wait_until(unix_ready, (void *)path, timeout_ms);
}

static int file_ready(void *arg)
{
    struct stat st;
    return stat((const char *)arg, &st) == 0 && st.st_size > 0;
}

int tsup_wait_file(const char *path, int timeout_ms)
{
    return tsup_wait_until(file_ready, (void *)path, timeout_ms);
}

static int file_exists(void *arg)
{
    struct stat st;
    return stat((const char *)arg, &st) == 0;
}

long tsup_alone_wait(void)
{
    const char *gate = getenv("ODIN_TEST_GATE");
    if (!gate || !*gate)
        return 0;
    uint64_t t0 = clock_mono_ms();
    /* no bound of our own: the runner creates it when the other tests
     * ended, however long they take */
    while (!tsup_wait_until(file_exists, (void *)gate, 60000))
        ;
    long waited = (long)(clock_mono_ms() - t0);
    fprintf(stderr, "alone now (waited %ld ms for the other tests to end)\n", waited);
    return waited;
}

static int redis_pinged(void *arg)
{
    tsup_redis *r = arg;
    struct timeval tv = { 0, 200000 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    int ok = 0;
    if (c && !c->err) {
        redisReply *rep = redisCommand(c, "PING");
        ok = rep && rep->type == REDIS_REPLY_STATUS;
        freeReplyObject(rep);
    }
    redisFree(c);
    return ok;
}

int tsup_redis_start_on(tsup_redis *r, int port)
{
    r->port = port;
    snprintf(r->url, sizeof r->url, "redis://127.0.0.1:%d", port);
    if (!r->dir[0]) {
        char *d = tsup_tmp("redis");
        snprintf(r->dir, sizeof r->dir, "%s", d);
        free(d);
        mkdir(r->dir, 0755);
    }
    char portbuf[16];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    char *argv[] = { "/usr/bin/redis-server", "--port", portbuf, "--bind", "127.0.0.1",
                     "--dir", r->dir, "--save", "", "--appendonly", "no",
                     "--loglevel", "warning", NULL };
    r->pid = tsup_spawn(argv, NULL);
    if (r->pid < 0)
        return -1;
    if (!tsup_wait_until(redis_pinged, r, 10000)) {
        tsup_redis_stop(r);
        return -1;
    }
    return 0;
}

int tsup_redis_start(tsup_redis *r)
{
    memset(r, 0, sizeof *r);
    return tsup_redis_start_on(r, tsup_free_port());
}

void tsup_redis_stop(tsup_redis *r)
{
    if (r->pid > 0)
        tsup_stop(r->pid, SIGKILL, 5000);
    r->pid = 0;
}

redisContext *tsup_redis_connect(const char *url)
{
    int port = 6379;
    const char *colon = strrchr(url, ':');
    if (colon)
        port = atoi(colon + 1);
    redisContext *c = redisConnect("127.0.0.1", port);
    if (!c || c->err)
        die("cannot connect to %s: %s", url, c ? c->errstr : "alloc");
    return c;
}

long long tsup_redis_int(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r)
        die("redis command failed: %s", c->errstr);
    if (r->type != REDIS_REPLY_INTEGER)
        die("redis reply to '%s' is not an integer (type %d)", fmt, r->type);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

int tsup_is_member(void *arg)
{
    const tsup_member_q *q = arg;
    return tsup_redis_int(q->c, "SISMEMBER %s %s", q->key, q->member) == q->want;
}

int tsup_wait_member(redisContext *c, const char *key, const char *member, int want,
                     int timeout_ms)
{
    tsup_member_q q = { c, key, member, want };
    return tsup_wait_until(tsup_is_member, &q, timeout_ms);
}

int tsup_http_get(int port, const char *path, char **body)
{
    if (body)
        *body = NULL;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n",
                     path, port);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t cap = 65536, len = 0;
    char *resp = malloc(cap);
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    for (;;) {
        if (poll(&pfd, 1, 5000) <= 0)
            break;
        if (len + 4096 > cap) {
            cap *= 2;
            resp = realloc(resp, cap);
        }
        ssize_t r = read(fd, resp + len, cap - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    resp[len] = '\0';
    int status = -1;
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
        status = -1;
    char *sep = strstr(resp, "\r\n\r\n");
    if (body && sep)
        *body = strdup(sep + 4);
    free(resp);
    return status;
}

/* No series with exactly these labels: the sum of the series of that name
 * whose labels include every requested one (Prometheus's sum without the
 * other labels), so tests keep reading router_drops_total{reason="x"}
 * after a shard label was added.  -1 if none matches. */
static double prom_sum(const char *text, const char *series)
{
    const char *brace = strchr(series, '{');
    size_t nl = brace ? (size_t)(brace - series) : strlen(series);
    char want[512] = ",";
    if (brace) {
        size_t wl = strlen(brace + 1);
        if (wl == 0 || brace[wl] != '}' || wl + 2 > sizeof want)
            return -1;
        memcpy(want + 1, brace + 1, wl - 1);
        want[wl] = ',';
        want[wl + 1] = '\0';
    }
    double sum = 0;
    int found = 0;
    for (const char *p = text; p && *p; ) {
        const char *eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        if (ll > nl && strncmp(p, series, nl) == 0 && p[nl] == '{') {
            const char *close = memchr(p + nl, '}', ll - nl);
            char have[1024];
            size_t hl = close ? (size_t)(close - (p + nl + 1)) : 0;
            if (close && hl + 3 <= sizeof have) {
                have[0] = ',';
                memcpy(have + 1, p + nl + 1, hl);
                have[hl + 1] = ',';
                have[hl + 2] = '\0';
                int all = 1;
                /* every ",k=v," of want must be in have */
                for (const char *w = want; all && w[1]; ) {
                    const char *nx = strchr(w + 1, ',');
                    char one[256];
                    size_t ol = (size_t)(nx - w) + 1;
                    if (ol >= sizeof one)
                        return -1;
                    memcpy(one, w, ol);
                    one[ol] = '\0';
                    all = strstr(have, one) != NULL;
                    w = nx;
                }
                if (all) {
                    sum += strtod(close + 1, NULL);
                    found = 1;
                }
            }
        }
        p = eol ? eol + 1 : NULL;
    }
    return found ? sum : -1;
}

double tsup_prom_value(const char *text, const char *series)
{
    size_t sl = strlen(series);
    const char *p = text;
    while (p && *p) {
        if (strncmp(p, series, sl) == 0 && p[sl] == ' ')
            return strtod(p + sl + 1, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return prom_sum(text, series);
}

int tsup_log_has(const char *bin, pid_t pid, const char *a, const char *b)
{
    char path[512];
    const char *tmp = getenv("ODIN_TMP");
    snprintf(path, sizeof path, "%s/%s.%d.log", tmp ? tmp : "/tmp", bin, (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, a) && (!b || strstr(line, b));
    fclose(f);
    return found;
}

int tsup_log_has_q(void *arg)
{
    const tsup_log_q *q = arg;
    return tsup_log_has(q->bin, q->pid, q->a, q->b);
}

double tsup_metric(int port, const char *series)
{
    char *body = NULL;
    double v = -1;
    if (tsup_http_get(port, "/metrics", &body) == 200 && body)
        v = tsup_prom_value(body, series);
    free(body);
    return v;
}

typedef struct metric_q {
    int port;
    const char *series;
    double want;
    int eq;
} metric_q;

static int metric_reached(void *arg)
{
    const metric_q *q = arg;
    double v = tsup_metric(q->port, q->series);
    return q->eq ? v == q->want : v >= q->want;
}

static int wait_metric(int port, const char *series, double want, int eq, int timeout_ms)
{
    metric_q q = { port, series, want, eq };
    int ok = tsup_wait_until(metric_reached, &q, timeout_ms);
    if (!ok)
        fprintf(stderr, "tsup: timeout waiting for %s %s %g (now %g)\n", series,
                eq ? "==" : ">=", want, tsup_metric(port, series));
    return ok;
}

int tsup_wait_metric(int port, const char *series, double want, int timeout_ms)
{
    return wait_metric(port, series, want, 0, timeout_ms);
}

int tsup_wait_metric_eq(int port, const char *series, double want, int timeout_ms)
{
    return wait_metric(port, series, want, 1, timeout_ms);
}
