/* common/net + common/redislink: EMFILE back-off, PING keepalive (plain and
 * subscribed), DNS resolved off the loop.  Loopback sockets, one in-process
 * event loop, a hand-made "Redis" and an evdns server as fake DNS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <sys/wait.h>
#include <signal.h>

#include <event2/dns.h>
#include <event2/dns_struct.h>
#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/net.h"
#include "common/redislink.h"

static void stop_loop(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

/* A one-shot timer that ends the loop (fail-safe or measuring window). */
static struct event *deadline(struct event_base *base, long ms)
{
    struct event *ev = evtimer_new(base, stop_loop, base);
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(ev, &tv);
    return ev;
}

/* ---- (a) EMFILE back-off --------------------------------------------------- */

typedef struct {
    struct event_base *base;
    int accepted, errors, want;
} acc_state;

static void count_accept(net_acceptor *a, int fd, const struct sockaddr *sa,
                         socklen_t salen, void *arg)
{
    acc_state *st = arg;
    close(fd);
    if (++st->accepted >= st->want)
        event_base_loopbreak(st->base);
}

static void count_error(net_acceptor *a, int err, void *arg)
{
    acc_state *st = arg;
    assert_true(err == EMFILE || err == ENFILE);
    st->errors++;
}

static int max_open_fd(void)
{
    int max = -1;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd > max)
            max = fd;
    }
    closedir(d);
    return max;
}

static void test_accept_emfile_backoff(void **st_)
{
    struct event_base *base = event_base_new();
    acc_state st = { base, 0, 0, 3 };
    int port = 0;
    char err[128];
    int lfd = net_listen_tcp("127.0.0.1:0", 16, 0, NULL, 0, &port, err, sizeof err);
    assert_true(lfd >= 0);
    net_acceptor *a = net_acceptor_new(base, lfd, "test", 16, 50, count_accept, count_error, &st);
    assert_non_null(a);
    net_acceptor_enable(a, 1);

    /* three clients wait in the backlog */
    int cl[3];
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < 3; i++) {
        cl[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(connect(cl[i], (struct sockaddr *)&sin, sizeof sin), 0);
    }

    /* no fd left: soft limit just above the highest fd, holes filled */
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)max_open_fd() + 1;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &lim), 0);
    int fill[256], nfill = 0;
    while (nfill < 256) {
        int fd = dup(0);
        if (fd < 0)
            break;
        fill[nfill++] = fd;
    }
    assert_true(nfill < 256);
    assert_int_equal(errno, EMFILE);

    /* 500 ms out of fds: accept fails, the acceptor pauses 50 ms each time */
    struct event *win = deadline(base, 500);
    event_base_dispatch(base);
    event_free(win);
    print_message("EMFILE window: %d accept errors in 500 ms, %d accepted\n", st.errors,
                  st.accepted);
    assert_int_equal(st.accepted, 0);
    assert_true(st.errors >= 3);      /* it did retry ... */
    assert_true(st.errors <= 12);     /* ... without spinning (500 / 50 + slack) */
    assert_true(net_acceptor_errors(a) == (uint64_t)st.errors);
    assert_non_null(strstr(net_acceptor_errstr(a), "open files"));

    /* fds freed: the next retry accepts all three */
    for (int i = 0; i < nfill; i++)
        close(fill[i]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    struct event *fs = deadline(base, 2000);
    event_base_dispatch(base);
    event_free(fs);
    assert_int_equal(st.accepted, 3);
    assert_false(net_acceptor_paused(a));

    for (int i = 0; i < 3; i++)
        close(cl[i]);
    net_acceptor_free(a);
    event_base_free(base);
}

/* ---- fake Redis --------------------------------------------------------------- */

enum fake_mode { FAKE_SILENT, FAKE_PONG, FAKE_PUBSUB, FAKE_PONG_LATE, FAKE_HANDSHAKE };

typedef struct {
    struct event_base *base;
    enum fake_mode mode;
    net_acceptor *acc;
    int fd;
    struct event *rev;
    int pings;
    int subscribed;
    struct event *late;   /* FAKE_PONG_LATE: the pong goes out 100 ms later */
    /* FAKE_HANDSHAKE: scripted AUTH / ROLE / SENTINEL answers, each maybe
     * delayed; every command and every handshake reply sent is logged in
     * order ("AUTH", "auth-replied", "ROLE", "role-replied", "GET", ...) */
    const char *auth_reply, *role_reply;
    long auth_delay_ms, role_delay_ms;
    int port;
    int accepts;
    char log[2048];
    char delayed[256];
    const char *delayed_tag;
    struct event *delay;
} fake_redis;

static void fake_log(fake_redis *f, const char *what)
{
    size_t n = strlen(f->log);
    snprintf(f->log + n, sizeof f->log - n, "%s%s", n ? " " : "", what);
}

static void fake_delayed(evutil_socket_t fd, short what, void *arg)
{
    fake_redis *f = arg;
    if (f->fd < 0)
        return;
    ssize_t n = net_write_all(f->fd, f->delayed, strlen(f->delayed));
    (void)n;
    fake_log(f, f->delayed_tag);
}

/* Reply now, or delay_ms later (the handshake step the link must wait for). */
static void fake_reply_tagged(fake_redis *f, int fd, const char *s, long delay_ms,
                              const char *tag)
{
    if (delay_ms <= 0) {
        ssize_t n = net_write_all(fd, s, strlen(s));
        (void)n;
        fake_log(f, tag);
        return;
    }
    snprintf(f->delayed, sizeof f->delayed, "%s", s);
    f->delayed_tag = tag;
    struct timeval tv = { delay_ms / 1000, (delay_ms % 1000) * 1000 };
    evtimer_add(f->delay, &tv);
}

static void fake_reply(fake_redis *f, int fd, const char *s)
{
    ssize_t n = net_write_all(fd, s, strlen(s));
    assert_int_equal(n, (ssize_t)strlen(s));
}

/* Answer one command (argv) the way Redis 7 does in RESP2, in order. */
static void fake_command(fake_redis *f, int fd, int argc, char argv[][64])
{
    char out[1024];
    if (f->mode == FAKE_HANDSHAKE) {
        char up[256];
        snprintf(up, sizeof up, "%s", argv[0]);
        for (char *p = up; *p; p++)
            *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        fake_log(f, up);
        if (strcmp(up, "AUTH") == 0)
            fake_reply_tagged(f, fd, f->auth_reply, f->auth_delay_ms, "auth-replied");
        else if (strcmp(up, "ROLE") == 0)
            fake_reply_tagged(f, fd, f->role_reply, f->role_delay_ms, "role-replied");
        else if (strcmp(up, "SENTINEL") == 0) {   /* "the master is me" */
            char port[16];
            snprintf(port, sizeof port, "%d", f->port);
            snprintf(out, sizeof out, "*2\r\n$9\r\n127.0.0.1\r\n$%zu\r\n%s\r\n",
                     strlen(port), port);
            fake_reply(f, fd, out);
        } else if (strcmp(up, "PING") == 0)
            fake_reply(f, fd, "+PONG\r\n");
        else
            fake_reply(f, fd, "$-1\r\n");       /* GET and the like */
        return;
    }
    if (strcasecmp(argv[0], "SUBSCRIBE") == 0 || strcasecmp(argv[0], "PSUBSCRIBE") == 0) {
        f->subscribed++;
        snprintf(out, sizeof out, "*3\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n:%d\r\n",
                 strlen(argv[0]), argv[0], strlen(argv[1]), argv[1], f->subscribed);
        for (char *p = out; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);   /* "subscribe" */
        fake_reply(f, fd, out);
        return;
    }
    if (strcasecmp(argv[0], "PING") != 0)
        return;
    f->pings++;
    if (f->mode == FAKE_PONG_LATE) {
        struct timeval tv = { 0, 100 * 1000 };
        evtimer_add(f->late, &tv);
        return;
    }
    if (!f->subscribed) {
        fake_reply(f, fd, "+PONG\r\n");
        return;
    }
    /* a publication that was in flight before the PING, then the pong */
    fake_reply(f, fd, "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nBTC\r\n");
    const char *arg = argc > 1 ? argv[1] : "";
    snprintf(out, sizeof out, "*2\r\n$4\r\npong\r\n$%zu\r\n%s\r\n", strlen(arg), arg);
    fake_reply(f, fd, out);
}

static void fake_read(evutil_socket_t fd, short what, void *arg)
{
    fake_redis *f = arg;
    char b[4096];
    ssize_t n = read(fd, b, sizeof b - 1);
    if (n <= 0) {
        event_del(f->rev);
        return;
    }
    b[n] = 0;
    if (f->mode == FAKE_SILENT)
        return;
    /* commands arrive whole on loopback: *N\r\n then N $len\r\narg\r\n */
    char *p = b;
    while (*p == '*') {
        int argc = atoi(p + 1);
        char argv[4][64] = { { 0 } };
        p = strstr(p, "\r\n") + 2;
        for (int i = 0; i < argc; i++) {
            int len = atoi(p + 1);
            p = strstr(p, "\r\n") + 2;
            if (i < 4)
                snprintf(argv[i], sizeof argv[i], "%.*s", len, p);
            p += len + 2;
        }
        fake_command(f, fd, argc, argv);
    }
}

static void fake_accept(net_acceptor *a, int fd, const struct sockaddr *sa,
                        socklen_t salen, void *arg)
{
    fake_redis *f = arg;
    if (f->fd >= 0) {
        event_free(f->rev);
        close(f->fd);
    }
    f->accepts++;
    if (f->delay)
        evtimer_del(f->delay);
    f->fd = fd;
    f->rev = event_new(f->base, fd, EV_READ | EV_PERSIST, fake_read, f);
    event_add(f->rev, NULL);
}

static void fake_late_pong(evutil_socket_t fd, short what, void *arg)
{
    fake_redis *f = arg;
    if (f->fd >= 0)
        fake_reply(f, f->fd, "+PONG\r\n");
}

static int fake_start(fake_redis *f, struct event_base *base, enum fake_mode mode)
{
    memset(f, 0, sizeof *f);
    f->base = base;
    f->mode = mode;
    f->fd = -1;
    f->late = evtimer_new(base, fake_late_pong, f);
    f->delay = evtimer_new(base, fake_delayed, f);
    int port = 0;
    int lfd = net_listen_tcp("127.0.0.1:0", 16, 0, NULL, 0, &port, NULL, 0);
    assert_true(lfd >= 0);
    f->port = port;
    f->acc = net_acceptor_new(base, lfd, "fake-redis", 4, 50, fake_accept, NULL, f);
    assert_non_null(f->acc);
    net_acceptor_enable(f->acc, 1);
    return port;
}

static void fake_stop(fake_redis *f)
{
    event_free(f->late);
    event_free(f->delay);
    if (f->fd >= 0) {
        event_free(f->rev);
        close(f->fd);
    }
    net_acceptor_free(f->acc);
}

typedef struct {
    struct event_base *base;
    int ups, downs;
    uint64_t up_ms, down_ms;
    int stop_on_down;
    int subscribe;
    int sub_confirms, sub_messages;
} link_state;

static void sub_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    link_state *ls = priv;
    redisReply *r = reply;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 3)
        return;
    if (strcmp(r->element[0]->str, "subscribe") == 0)
        ls->sub_confirms++;
    else if (strcmp(r->element[0]->str, "message") == 0)
        ls->sub_messages++;
}

static void on_link(redislink *l, int up, void *arg)
{
    link_state *ls = arg;
    if (up) {
        ls->ups++;
        ls->up_ms = clock_mono_ms();
        if (ls->subscribe)
            assert_int_equal(redisAsyncCommand(redislink_ctx(l), sub_cb, ls,
                                               "SUBSCRIBE ch"), REDIS_OK);
    } else {
        ls->downs++;
        ls->down_ms = clock_mono_ms();
        if (ls->stop_on_down)
            event_base_loopbreak(ls->base);
    }
}

/* ---- (b) PING keepalive -------------------------------------------------------- */

/* Link with PING every 100 ms, dead after 300 ms, against a fake Redis.
 * Silent: stops at "down" (3 s fail-safe); answering: watches 1.2 s. */
static void run_link(enum fake_mode mode)
{
    struct event_base *base = event_base_new();
    fake_redis f;
    int port = fake_start(&f, base, mode);
    redis_endpoint ep = { .port = port };
    snprintf(ep.host, sizeof ep.host, "127.0.0.1");
    link_state ls = { .base = base, .stop_on_down = 1,
                      .subscribe = mode == FAKE_PUBSUB };
    redislink *l = redislink_new(base, &ep, "test", 1000, 200, on_link, &ls);
    redislink_set_ping(l, 100, 300);
    redislink_start(l);
    struct event *win = deadline(base, mode == FAKE_SILENT ? 3000 : 1200);
    event_base_dispatch(base);
    event_free(win);
    assert_int_equal(ls.ups, 1);
    if (mode == FAKE_SILENT) {
        print_message("silent peer: up -> down after %llu ms\n",
                      (unsigned long long)(ls.down_ms - ls.up_ms));
        assert_int_equal(ls.downs, 1);
        /* first PING at "up", dead 300 ms later (timer slack allowed) */
        assert_true(ls.down_ms - ls.up_ms >= 280);
        assert_true(ls.down_ms - ls.up_ms <= 600);
        assert_non_null(strstr(redislink_errstr(l), "PING"));
        assert_null(redislink_ctx(l));
    } else {
        print_message("answering peer (%s): %d PINGs, %d downs, %d messages\n",
                      mode == FAKE_PUBSUB ? "subscribed" : "plain", f.pings, ls.downs,
                      ls.sub_messages);
        assert_int_equal(ls.downs, 0);
        assert_true(f.pings >= 8);
        assert_non_null(redislink_ctx(l));
    }
    if (mode == FAKE_PUBSUB) {
        /* pongs reach the link, and every publication still reaches the
         * subscriber (the first PING went out before SUBSCRIBE) */
        assert_int_equal(ls.sub_confirms, 1);
        assert_int_equal(ls.sub_messages, f.pings - 1);
    }
    redislink_free(l);
    fake_stop(&f);
    event_base_free(base);
}

static void test_redislink_silent_peer_declared_dead(void **st_)
{
    run_link(FAKE_SILENT);
}

static void test_redislink_answering_peer_stays_up(void **st_)
{
    run_link(FAKE_PONG);
}

static void test_redislink_subscribed_ping(void **st_)
{
    run_link(FAKE_PUBSUB);
}


/* ---- (b2) a late loop is not a dead Redis --------------------------------------- */

#define STARVE_FDS 64

typedef struct {
    struct event_base *base;
    redislink *l;
    int sp[STARVE_FDS][2];
    struct event *ev[STARVE_FDS];
    int drained;
} starve_state;

static void starve_read(evutil_socket_t fd, short what, void *arg)
{
    starve_state *s = arg;
    char c;
    if (read(fd, &c, 1) == 1)
        s->drained++;
}

/* Runs 20 ms after "up" (the first PING went out at "up"; its PONG comes
 * 100 ms after it): 64 sockets become readable, then the loop is blocked
 * for 600 ms, twice the PING timeout.  When it runs again the PONG waits in
 * the socket behind the 64 (epoll hands out 32 ready sockets in the first
 * turn) while the dead timer is due: the link must read the PONG, not
 * declare Redis dead. */
static void starve(evutil_socket_t fd, short what, void *arg)
{
    starve_state *s = arg;
    for (int i = 0; i < STARVE_FDS; i++) {
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, s->sp[i]), 0);
        s->ev[i] = event_new(s->base, s->sp[i][0], EV_READ | EV_PERSIST, starve_read, s);
        event_add(s->ev[i], NULL);
        assert_int_equal(write(s->sp[i][1], "x", 1), 1);
    }
    usleep(600 * 1000);
}

static void test_redislink_late_loop_not_dead(void **st_)
{
    (void)st_;
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {             /* the fake Redis, in its own process */
        close(pfd[0]);
        struct event_base *cb = event_base_new();
        fake_redis f;
        int port = fake_start(&f, cb, FAKE_PONG_LATE);
        if (write(pfd[1], &port, sizeof port) != sizeof port)
            _exit(1);
        close(pfd[1]);
        struct event *life = deadline(cb, 5000);   /* gone even if the parent fails */
        event_base_dispatch(cb);
        event_free(life);
        _exit(0);
    }
    close(pfd[1]);
    int port = 0;
    assert_int_equal(read(pfd[0], &port, sizeof port), (ssize_t)sizeof port);
    close(pfd[0]);

    struct event_base *base = event_base_new();
    redis_endpoint ep = { .port = port };
    snprintf(ep.host, sizeof ep.host, "127.0.0.1");
    link_state ls = { .base = base, .stop_on_down = 1 };
    redislink *l = redislink_new(base, &ep, "test", 1000, 200, on_link, &ls);
    redislink_set_ping(l, 100, 300);
    redislink_start(l);
    starve_state ss = { .base = base, .l = l };
    struct event *st = evtimer_new(base, starve, &ss);
    /* wait for "up", then starve once */
    while (ls.ups == 0)
        event_base_loop(base, EVLOOP_ONCE);
    struct timeval tv = { 0, 20 * 1000 };
    evtimer_add(st, &tv);
    struct event *win = deadline(base, 1500);
    event_base_dispatch(base);
    print_message("late loop: %d ups, %d downs, %d starving sockets read, error '%s'\n",
                  ls.ups, ls.downs, ss.drained, redislink_errstr(l));
    assert_int_equal(ss.drained, STARVE_FDS);
    assert_int_equal(ls.downs, 0);
    assert_non_null(redislink_ctx(l));
    event_free(win);
    event_free(st);
    for (int i = 0; i < STARVE_FDS; i++) {
        event_free(ss.ev[i]);
        close(ss.sp[i][0]);
        close(ss.sp[i][1]);
    }
    redislink_free(l);
    event_base_free(base);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
}

/* ---- (b3) the context is handed out only once ready ------------------------------ */

/* A user of the link that polls redislink_ctx() (as router/leavegroup.c and
 * router/discovery.c do): the first time it gets a context it sends GET;
 * it also notes whether it ever saw one. */
typedef struct poller {
    redislink *l;
    struct event *ev;
    int sent, saw_ctx, ups;
    fake_redis *f;
    int stop_after_accepts;
} poller;

static void poll_tick(evutil_socket_t fd, short what, void *arg)
{
    poller *p = arg;
    redisAsyncContext *ac = redislink_ctx(p->l);
    if (!ac)
        return;
    p->saw_ctx = 1;
    if (!p->sent && redisAsyncCommand(ac, NULL, NULL, "GET poll") == REDIS_OK)
        p->sent = 1;
}

static void poll_on_link(redislink *l, int up, void *arg)
{
    poller *p = arg;
    if (up)
        p->ups++;
}

/* Stops the loop once the user's GET reached the fake, or (refusing fake)
 * once it saw stop_after_accepts connections. */
static void poll_watch(evutil_socket_t fd, short what, void *arg)
{
    poller *p = arg;
    if (strstr(p->f->log, "GET") ||
        (p->stop_after_accepts && p->f->accepts >= p->stop_after_accepts))
        event_base_loopbreak(event_get_base(p->ev));
}

/* Runs a link against a FAKE_HANDSHAKE fake (password and/or Sentinel
 * set by the caller) until the GET arrives or enough reconnects were
 * seen (5 s fail-safe). */
static void run_handshake(fake_redis *f, struct event_base *base, redis_endpoint *ep,
                          poller *p, int stop_after_accepts)
{
    p->f = f;
    p->stop_after_accepts = stop_after_accepts;
    p->l = redislink_new(base, ep, "test", 1000, 100, poll_on_link, p);
    assert_non_null(p->l);
    redislink_set_backoff(p->l, 20, 100);
    redislink_start(p->l);
    p->ev = event_new(base, -1, EV_PERSIST, poll_tick, p);
    struct timeval tv = { 0, 2 * 1000 };
    event_add(p->ev, &tv);
    struct event *watch = event_new(base, -1, EV_PERSIST, poll_watch, p);
    event_add(watch, &tv);
    struct event *win = deadline(base, 5000);
    event_base_dispatch(base);
    event_free(win);
    event_free(watch);
    event_free(p->ev);
}

/* AUTH answered 200 ms late: a user polling redislink_ctx gets nothing
 * until then, so its GET reaches Redis after the AUTH reply went out. */
static void test_redislink_ready_after_auth(void **st_)
{
    struct event_base *base = event_base_new();
    fake_redis f;
    int port = fake_start(&f, base, FAKE_HANDSHAKE);
    f.auth_reply = "+OK\r\n";
    f.auth_delay_ms = 200;
    redis_endpoint ep = { .port = port };
    snprintf(ep.host, sizeof ep.host, "127.0.0.1");
    snprintf(ep.password, sizeof ep.password, "s3cret");
    poller p = { 0 };
    run_handshake(&f, base, &ep, &p, 0);
    print_message("delayed AUTH: fake saw '%s'\n", f.log);
    assert_non_null(strstr(f.log, "GET"));
    assert_true(strstr(f.log, "auth-replied") < strstr(f.log, "GET"));
    assert_int_equal(strncmp(f.log, "AUTH auth-replied", 17), 0);
    assert_int_equal(p.ups, 1);
    redislink_free(p.l);
    fake_stop(&f);
    event_base_free(base);
}

/* AUTH refused: the link never becomes ready (no context, no "up"), says
 * why, and tries again (3 connections seen). */
static void test_redislink_auth_refused_never_ready(void **st_)
{
    struct event_base *base = event_base_new();
    fake_redis f;
    int port = fake_start(&f, base, FAKE_HANDSHAKE);
    f.auth_reply = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";
    redis_endpoint ep = { .port = port };
    snprintf(ep.host, sizeof ep.host, "127.0.0.1");
    snprintf(ep.password, sizeof ep.password, "wrong");
    poller p = { 0 };
    run_handshake(&f, base, &ep, &p, 3);
    print_message("refused AUTH: %d connections, fake saw '%s', error '%s'\n", f.accepts,
                  f.log, redislink_errstr(p.l));
    assert_true(f.accepts >= 3);
    assert_false(p.saw_ctx);
    assert_null(strstr(f.log, "GET"));
    assert_int_equal(p.ups, 0);
    assert_non_null(strstr(redislink_errstr(p.l), "AUTH"));
    redislink_free(p.l);
    fake_stop(&f);
    event_base_free(base);
}

/* Sentinel mode: the node Sentinel names answers ROLE 200 ms late; nothing
 * of the user's is sent before ROLE said "master". */
static void test_redislink_sentinel_ready_after_role(void **st_)
{
    struct event_base *base = event_base_new();
    fake_redis f;
    int port = fake_start(&f, base, FAKE_HANDSHAKE);
    f.auth_reply = "+OK\r\n";
    f.role_reply = "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n";
    f.role_delay_ms = 200;
    redis_endpoint ep = { 0 };
    snprintf(ep.sentinels, sizeof ep.sentinels, "127.0.0.1:%d", port);
    snprintf(ep.master_name, sizeof ep.master_name, "odin");
    snprintf(ep.password, sizeof ep.password, "s3cret");
    poller p = { 0 };
    run_handshake(&f, base, &ep, &p, 0);
    print_message("sentinel, delayed ROLE: fake saw '%s'\n", f.log);
    assert_non_null(strstr(f.log, "GET"));
    assert_true(strstr(f.log, "role-replied") < strstr(f.log, "GET"));
    assert_true(strstr(f.log, "auth-replied") < strstr(f.log, "ROLE"));
    assert_int_equal(p.ups, 1);
    redislink_free(p.l);
    fake_stop(&f);
    event_base_free(base);
}

/* Sentinel mode: the named node says (50 ms late) it is a replica: never
 * ready, no context handed out meanwhile, Sentinel is asked again. */
static void test_redislink_sentinel_replica_never_ready(void **st_)
{
    struct event_base *base = event_base_new();
    fake_redis f;
    int port = fake_start(&f, base, FAKE_HANDSHAKE);
    f.role_reply = "*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n"
                   "$9\r\nconnected\r\n:0\r\n";
    f.role_delay_ms = 50;      /* a window for a user that polls too early */
    redis_endpoint ep = { 0 };
    snprintf(ep.sentinels, sizeof ep.sentinels, "127.0.0.1:%d", port);
    snprintf(ep.master_name, sizeof ep.master_name, "odin");
    poller p = { 0 };
    run_handshake(&f, base, &ep, &p, 5);   /* sentinel + node, twice and more */
    print_message("sentinel, replica: %d connections, error '%s'\n", f.accepts,
                  redislink_errstr(p.l));
    assert_true(f.accepts >= 5);
    assert_false(p.saw_ctx);
    assert_null(strstr(f.log, "GET"));
    assert_int_equal(p.ups, 0);
    redislink_free(p.l);
    fake_stop(&f);
    event_base_free(base);
}

/* ---- (c) DNS off the loop ------------------------------------------------------- */

#define DNS_DELAY_MS 2000

typedef struct {
    struct evdns_server_request *pending[8];
    int npending;
    struct event *later;
    int queries;
} fake_dns;

static void dns_answer(evutil_socket_t fd, short what, void *arg)
{
    fake_dns *d = arg;
    for (int i = 0; i < d->npending; i++) {
        struct evdns_server_request *req = d->pending[i];
        for (int q = 0; q < req->nquestions; q++) {
            const struct evdns_server_question *qu = req->questions[q];
            if (qu->type == EVDNS_TYPE_A && strcasecmp(qu->name, "redis.test") == 0) {
                struct in_addr a;
                a.s_addr = htonl(INADDR_LOOPBACK);
                evdns_server_request_add_a_reply(req, qu->name, 1, &a, 60);
            }
        }
        evdns_server_request_respond(req, 0);   /* AAAA: no answer */
    }
    d->npending = 0;
}

static void dns_query(struct evdns_server_request *req, void *arg)
{
    fake_dns *d = arg;
    d->queries++;
    assert_true(d->npending < 8);
    d->pending[d->npending++] = req;
    if (!evtimer_pending(d->later, NULL)) {
        struct timeval tv = { DNS_DELAY_MS / 1000, (DNS_DELAY_MS % 1000) * 1000 };
        evtimer_add(d->later, &tv);
    }
}

typedef struct {
    struct event_base *base;
    int ticks, ticks_at_done;
    int done, fd, err, accepted;
    uint64_t t0, done_ms;
} dns_state;

static void tick(evutil_socket_t fd, short what, void *arg)
{
    dns_state *s = arg;
    if (!s->done)
        s->ticks++;
}

static void connected(int fd, int err, const char *errstr, void *arg)
{
    dns_state *s = arg;
    s->done = 1;
    s->fd = fd;
    s->err = err;
    s->done_ms = clock_mono_ms() - s->t0;
    s->ticks_at_done = s->ticks;
    if (fd < 0)
        print_message("connect failed: %s\n", errstr);
    if (fd < 0 || s->accepted)
        event_base_loopbreak(s->base);
}

static void dns_accept(net_acceptor *a, int fd, const struct sockaddr *sa,
                       socklen_t salen, void *arg)
{
    dns_state *s = arg;
    s->accepted++;
    close(fd);
    if (s->done)
        event_base_loopbreak(s->base);
}

static void test_connect_resolves_off_loop(void **st_)
{
    struct event_base *base = event_base_new();

    /* fake DNS server on a loopback UDP port, answering after 2 s */
    fake_dns d = { .npending = 0 };
    d.later = evtimer_new(base, dns_answer, &d);
    int ufd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET };
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(ufd, (struct sockaddr *)&sin, sizeof sin), 0);
    socklen_t sl = sizeof sin;
    assert_int_equal(getsockname(ufd, (struct sockaddr *)&sin, &sl), 0);
    struct evdns_server_port *sp = evdns_add_server_port_with_base(base, ufd, 0, dns_query, &d);
    assert_non_null(sp);

    /* a resolver that knows only that server (no /etc/resolv.conf) */
    struct evdns_base *dns = evdns_base_new(base, 0);
    char ns[64];
    snprintf(ns, sizeof ns, "127.0.0.1:%d", ntohs(sin.sin_port));
    assert_int_equal(evdns_base_nameserver_ip_add(dns, ns), 0);

    /* the service the name points at */
    dns_state s = { .base = base, .fd = -1 };
    int port = 0;
    int lfd = net_listen_tcp("127.0.0.1:0", 16, 0, NULL, 0, &port, NULL, 0);
    assert_true(lfd >= 0);
    net_acceptor *a = net_acceptor_new(base, lfd, "target", 4, 50, dns_accept, NULL, &s);
    net_acceptor_enable(a, 1);

    struct event *t = event_new(base, -1, EV_PERSIST, tick, &s);
    struct timeval hundred = { 0, 100000 };
    event_add(t, &hundred);

    net_endpoint ep;
    char eps[64];
    snprintf(eps, sizeof eps, "tcp://redis.test:%d", port);
    assert_int_equal(net_endpoint_parse(eps, &ep), NET_OK);
    s.t0 = clock_mono_ms();
    net_connect *c = net_connect_start(base, dns, &ep, connected, &s);
    assert_non_null(c);
    assert_int_equal(s.done, 0);          /* never completes inside start */

    struct event *fs = deadline(base, 8000);
    event_base_dispatch(base);
    event_free(fs);
    print_message("resolve+connect took %llu ms; the 100 ms timer fired %d times meanwhile\n",
                  (unsigned long long)s.done_ms, s.ticks_at_done);
    assert_int_equal(s.done, 1);
    assert_int_equal(s.err, NET_OK);
    assert_true(s.fd >= 0);
    assert_true(d.queries >= 1);
    assert_true(s.done_ms >= DNS_DELAY_MS - 50);
    assert_true(s.ticks_at_done >= 15);   /* the loop kept running */
    assert_int_equal(s.accepted, 1);

    close(s.fd);
    event_free(t);
    net_acceptor_free(a);
    evdns_base_free(dns, 0);
    evdns_close_server_port(sp);
    event_free(d.later);
    event_base_free(base);
}

/* ---- small contracts ------------------------------------------------------------- */

static void test_endpoint_parse_and_numeric(void **st_)
{
    net_endpoint ep;
    assert_int_equal(net_endpoint_parse("unix:/tmp/a.sock", &ep), NET_OK);
    assert_true(ep.is_unix);
    assert_string_equal(ep.path, "/tmp/a.sock");
    assert_int_equal(net_endpoint_parse("unix:///tmp/b.sock", &ep), NET_OK);
    assert_string_equal(ep.path, "/tmp/b.sock");
    assert_int_equal(net_endpoint_parse("tcp://[::1]:7000", &ep), NET_OK);
    assert_string_equal(ep.host, "::1");
    assert_int_equal(ep.port, 7000);
    assert_int_equal(net_endpoint_parse("tcp://shard-3.local:7000", &ep), NET_OK);
    assert_int_equal(net_endpoint_parse("tcp://host", &ep), NET_EADDR);
    assert_int_equal(net_endpoint_parse("tcp://h:0", &ep), NET_EADDR);
    assert_int_equal(net_endpoint_parse("unix:relative", &ep), NET_EADDR);
    assert_int_equal(net_endpoint_parse("http://x:1", &ep), NET_EADDR);
    assert_true(net_is_numeric_host("10.0.0.1"));
    assert_true(net_is_numeric_host("::1"));
    assert_false(net_is_numeric_host("redis"));
    net_acceptor_free(NULL);
    net_connect_cancel(NULL);
    net_resolve_cancel(NULL);
    redislink_free(NULL);
}

static void test_listen_unix_stale_and_in_use(void **st_)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/odin-test-net-%d.sock", (int)getpid());
    unlink(path);
    int fd = net_listen_unix(path, 4, NULL, 0);
    assert_true(fd >= 0);
    char err[128];
    assert_int_equal(net_listen_unix(path, 4, err, sizeof err), NET_EINUSE);
    close(fd);                                /* now stale */
    fd = net_listen_unix(path, 4, NULL, 0);
    assert_true(fd >= 0);
    close(fd);
    unlink(path);
}

static void test_addr_is_loopback(void **st)
{
    (void)st;
    assert_true(net_addr_is_loopback("127.0.0.1:7000"));
    assert_true(net_addr_is_loopback("127.8.9.10:1"));
    assert_true(net_addr_is_loopback("localhost:1"));
    assert_true(net_addr_is_loopback("[::1]:1"));
    assert_false(net_addr_is_loopback("0.0.0.0:7000"));
    assert_false(net_addr_is_loopback(":7000"));
    assert_false(net_addr_is_loopback("[::]:7000"));
    assert_false(net_addr_is_loopback("10.0.0.1:7000"));
    assert_false(net_addr_is_loopback("shard-1.internal:7000"));
    assert_false(net_addr_is_loopback("garbage"));
    assert_false(net_addr_is_loopback(NULL));
}

/* A connected loopback TCP pair: *a the connecting end, *b the accepted. */
static void tcp_pair(int *a, int *b)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(l >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
    *a = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(*a, (struct sockaddr *)&sa, sizeof sa), 0);
    *b = accept(l, NULL, NULL);
    assert_true(*b >= 0);
    close(l);
}

/* net_close_abort ends with a RST (the peer reads ECONNRESET), close(2)
 * with a FIN after the data (the peer reads the data, then EOF). */
static void test_close_abort_sends_rst(void **st)
{
    (void)st;
    int a, b;
    char buf[16];
    tcp_pair(&a, &b);
    assert_int_equal(net_write_all(a, "abc", 3), 3);
    close(a);
    assert_int_equal(read(b, buf, sizeof buf), 3);
    assert_int_equal(read(b, buf, sizeof buf), 0);
    close(b);

    tcp_pair(&a, &b);
    assert_int_equal(net_write_all(a, "abc", 3), 3);
    net_close_abort(a);
    ssize_t n;
    while ((n = read(b, buf, sizeof buf)) > 0)
        ;
    assert_int_equal(n, -1);
    assert_int_equal(errno, ECONNRESET);
    close(b);
}

int main(void)
{
    log_init("test", LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoint_parse_and_numeric),
        cmocka_unit_test(test_listen_unix_stale_and_in_use),
        cmocka_unit_test(test_accept_emfile_backoff),
        cmocka_unit_test(test_redislink_silent_peer_declared_dead),
        cmocka_unit_test(test_redislink_answering_peer_stays_up),
        cmocka_unit_test(test_redislink_subscribed_ping),
        cmocka_unit_test(test_redislink_late_loop_not_dead),
        cmocka_unit_test(test_redislink_ready_after_auth),
        cmocka_unit_test(test_redislink_auth_refused_never_ready),
        cmocka_unit_test(test_redislink_sentinel_ready_after_role),
        cmocka_unit_test(test_redislink_sentinel_replica_never_ready),
        cmocka_unit_test(test_connect_resolves_off_loop),
        cmocka_unit_test(test_addr_is_loopback),
        cmocka_unit_test(test_close_abort_sends_rst),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
