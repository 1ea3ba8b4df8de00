/*
 * Sockets: the one module that listens, accepts, connects, resolves names,
 * sets keepalive and writes (Redis anet.c style).  EINTR, EAGAIN and
 * EMFILE/ENFILE are handled here, once, for every daemon.
 *
 * Status convention: 0 (or a fd / byte count) on success, a negative NET_E*
 * code on failure; every function lists the codes it returns.  Functions
 * without an object take an optional (err, errlen) buffer that receives a
 * human-readable reason (never a secret); long-lived objects keep their
 * last error on themselves (*_errstr).
 *
 * Name resolution happens off the event loop through libevent's evdns
 * (evdns_getaddrinfo); numeric addresses take a fast path that never
 * touches DNS.  The caller owns the evdns_base (net_dns_new makes one from
 * /etc/resolv.conf), so tests can inject their own.
 *
 * Users: shard/server.c (WebSocket listeners), shard/admin.c (ADMIN_ADDR),
 * shard/ingress.c (router socket, Unix and TCP), router/shards.c (links to
 * shards), common/redislink.c (Redis), router/http.c (HTTP_ADDR).
 * Tests: tests/unit/test_net.c.
 */
#ifndef ODIN_COMMON_NET_H
#define ODIN_COMMON_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <event2/event.h>
#include <event2/util.h>

struct evdns_base;

#define NET_OK        0
#define NET_ERR      -1   /* system call failed (errno / errstr say which) */
#define NET_EADDR    -2   /* address or endpoint does not parse */
#define NET_ERESOLVE -3   /* name resolution failed */
#define NET_EINUSE   -4   /* Unix socket path is in use by a live process */
#define NET_ENOMEM   -5   /* out of memory */

/* Defaults used by the daemons; what they mean for a peer that vanishes or
 * a process out of descriptors: docs/architecture.md, section 1b
 * ("Keepalive figures", "EMFILE behaviour"). */
#define NET_KEEPALIVE_IDLE_S   10
#define NET_KEEPALIVE_INTVL_S   5
#define NET_KEEPALIVE_CNT       3
#define NET_ACCEPT_BACKOFF_MS 100

/* ---- endpoints ---------------------------------------------------------- */

/* "unix:/path", "unix:///path", "tcp://host:port", "tcp://[v6]:port". */
typedef struct net_endpoint {
    int is_unix;
    char host[256];       /* tcp: host name or numeric address */
    int port;             /* tcp: 1..65535 */
    char path[108];       /* unix: absolute path (fits sun_path) */
} net_endpoint;

/* Parse an endpoint string.  Returns NET_OK or NET_EADDR (out unspecified). */
int net_endpoint_parse(const char *s, net_endpoint *out);

/* 1 if host is a literal IPv4/IPv6 address (no DNS needed), else 0. */
int net_is_numeric_host(const char *host);

/* ---- DNS ------------------------------------------------------------------ */

/*
 * An evdns_base for a daemon: nameservers and search list from
 * /etc/resolv.conf plus /etc/hosts; if resolv.conf cannot be read, falls
 * back to 127.0.0.1:53 (glibc's default) and /etc/hosts, logged once.
 * Inactive requests do not keep the loop alive.  NULL on ENOMEM.  The
 * caller frees it with net_dns_free after every resolve is done/cancelled.
 */
struct evdns_base *net_dns_new(struct event_base *base);

/* 1 if "host:port" names only this machine: "localhost", 127.0.0.0/8 or
 * [::1].  A wildcard (0.0.0.0, [::]) or any other name is not.  Pure. */
int net_addr_is_loopback(const char *hostport);
/* Free (pending requests are failed).  NULL is a no-op. */
void net_dns_free(struct evdns_base *dns);

typedef struct net_resolve net_resolve;

/*
 * Resolution result: err is NET_OK with ai the address list (valid only
 * during the call; copy what you keep), or NET_ERESOLVE with ai NULL and
 * errstr saying why.  Always called from the event loop, never from inside
 * net_resolve_start.  The handle is gone once the callback returns.
 */
typedef void (*net_resolve_cb)(int err, const struct evutil_addrinfo *ai,
                               const char *errstr, void *arg);

/*
 * Resolve host:port for a TCP stream, off the loop.  Numeric hosts need no
 * DNS (dns may then be NULL); other names go through evdns_getaddrinfo on
 * dns (AF_UNSPEC: A and AAAA).  dns NULL with a name fails with
 * NET_ERESOLVE through the callback.  Returns NULL only on ENOMEM.
 */
net_resolve *net_resolve_start(struct event_base *base, struct evdns_base *dns,
                               const char *host, int port, net_resolve_cb cb,
                               void *arg);
/* Cancel: the callback will not be called.  Not from inside the callback.
 * NULL is a no-op.  A pending DNS query finishes freeing itself on the loop. */
void net_resolve_cancel(net_resolve *r);

/* ---- listening and accepting --------------------------------------------- */

#define NET_LISTEN_REUSEPORT 0x1   /* SO_REUSEPORT (several processes, one port) */

/*
 * Bind and listen on "host:port" (IPv6 as [::1]:port, empty host = any).
 * SO_REUSEADDR always, SO_REUSEPORT with NET_LISTEN_REUSEPORT.  The host is
 * resolved synchronously: call at startup, before the loop runs.  The fd is
 * non-blocking and close-on-exec; the caller owns it.  bound (may be NULL)
 * receives the actual "ip:port", *port_out (may be NULL) the actual port.
 * Returns the fd, NET_EADDR (bad address / unresolvable) or NET_ERR.
 */
int net_listen_tcp(const char *hostport, int backlog, int flags, char *bound,
                   size_t boundlen, int *port_out, char *err, size_t errlen);

/*
 * Bind and listen on a Unix stream socket path.  A stale socket file (no
 * process accepts on it) is replaced; a live one gives NET_EINUSE, a
 * non-socket file or a too-long path NET_EADDR, other failures NET_ERR.
 * Returns the fd (non-blocking, close-on-exec; caller owns it and unlinks
 * the path when done).
 */
int net_listen_unix(const char *path, int backlog, char *err, size_t errlen);

typedef struct net_acceptor net_acceptor;

/* A new connection: fd is non-blocking and close-on-exec, owned by the
 * callee from now on.  sa/salen are the peer address (salen 0 if unknown). */
typedef void (*net_accept_cb)(net_acceptor *a, int fd, const struct sockaddr *sa,
                              socklen_t salen, void *arg);
/* accept() failed with errno err and the acceptor paused for its backoff
 * (for metrics; the acceptor logs it, at most once a second).  May be NULL. */
typedef void (*net_accept_err_cb)(net_acceptor *a, int err, void *arg);

/*
 * Wrap a listening fd (the acceptor owns it from now on and closes it in
 * net_acceptor_free).  name is for logs (copied).  Each wake-up accepts at
 * most max_per_wakeup
 * connections.  When accept fails with anything but EAGAIN / EINTR /
 * ECONNABORTED / EPROTO (in practice EMFILE, ENFILE, ENOBUFS, ENOMEM) the
 * listener event is removed and re-added after backoff_ms, so a process out
 * of fds never spins; the pending connection waits in the kernel backlog.
 * Created disabled: call net_acceptor_enable(a, 1).  NULL on ENOMEM (the
 * fd is then not closed).
 */
net_acceptor *net_acceptor_new(struct event_base *base, int lfd, const char *name,
                               int max_per_wakeup,
                               long backoff_ms, net_accept_cb cb,
                               net_accept_err_cb err_cb, void *arg);
/* Start (1) or stop (0) accepting; stopping also cancels a pending backoff.
 * Safe from the accept callback.  Returns NET_OK or NET_ERR. */
int net_acceptor_enable(net_acceptor *a, int on);
int net_acceptor_fd(const net_acceptor *a);
/* 1 while paused by an accept error (waiting for the backoff timer). */
int net_acceptor_paused(const net_acceptor *a);
/* accept() errors that caused a pause so far, and the last one's text. */
uint64_t net_acceptor_errors(const net_acceptor *a);
const char *net_acceptor_errstr(const net_acceptor *a);
/* Stop, close the fd, free.  Not from its own callback.  NULL is a no-op. */
void net_acceptor_free(net_acceptor *a);

/* ---- connecting ------------------------------------------------------------- */

typedef struct net_connect net_connect;

/*
 * Connect result: fd >= 0 is a connected non-blocking close-on-exec socket
 * now owned by the callee (err NET_OK); fd -1 with err NET_ERESOLVE or
 * NET_ERR and errstr (valid during the call).  Called from the event loop,
 * never from inside net_connect_start; the handle is gone once it returns.
 */
typedef void (*net_connect_cb)(int fd, int err, const char *errstr, void *arg);

/*
 * Non-blocking connect to an endpoint.  tcp: the host is resolved off the
 * loop (net_resolve_start, dns may be NULL for numeric hosts) and every
 * address is tried in turn.  No timeout: the caller runs its own timer and
 * calls net_connect_cancel.  No socket options are set (see net_nodelay,
 * net_keepalive).  Returns NULL only on ENOMEM.
 */
net_connect *net_connect_start(struct event_base *base, struct evdns_base *dns,
                               const net_endpoint *ep, net_connect_cb cb, void *arg);
/* Abandon a connect (closes its socket; no callback).  Not from inside the
 * callback.  NULL is a no-op. */
void net_connect_cancel(net_connect *c);

/* ---- socket options and I/O ------------------------------------------------- */

/* SO_KEEPALIVE with TCP_KEEPIDLE / TCP_KEEPINTVL / TCP_KEEPCNT (seconds,
 * count): a silent peer is declared dead after idle + intvl * cnt.
 * Returns NET_OK or NET_ERR (errno). */
int net_keepalive(int fd, int idle_s, int intvl_s, int cnt);

/* TCP_NODELAY.  NET_OK or NET_ERR (errno). */
int net_nodelay(int fd);

/*
 * Abortive close of a connection we give up on (peer unreachable, stalled,
 * declared dead): SO_LINGER 0 then close(2), so the kernel discards what is
 * still unsent or unacknowledged and answers the peer with a RST instead of
 * retransmitting those bytes when the path comes back.  Without it a lease
 * write or a delivery frame queued before a link cut arrives seconds later,
 * after newer ones sent over the replacement connection.  Not for graceful
 * ends (shutdown, drain), where the tail must still arrive.
 */
void net_close_abort(int fd);

/* Only the SO_LINGER 0 part, for an fd that another library closes
 * (hiredis).  NET_OK or NET_ERR (errno). */
int net_linger_zero(int fd);

/*
 * 1 if fd has input waiting to be read (or an EOF / error to report), else
 * 0.  A timeout that finds the peer's bytes unread is the loop's lateness,
 * not the peer's: epoll hands out a few ready sockets per turn and timers
 * run after them, so a busy process can see a deadline pass while the
 * answer sits in the socket.  Callers read first, then judge.
 */
int net_input_pending(int fd);

/*
 * Write as much of buf as the (non-blocking) socket takes: retries on EINTR,
 * stops on EAGAIN.  Never raises SIGPIPE.  Returns the bytes written (0 when
 * the socket is full), or -1 with errno on an error (EPIPE, ECONNRESET...).
 * Like write(2), an error after some bytes went out returns that count; the
 * error is reported by the next call.  So: loop while it returns > 0 and
 * bytes remain; 0 means wait for EV_WRITE.
 */
ssize_t net_write_all(int fd, const void *buf, size_t len);

#endif
