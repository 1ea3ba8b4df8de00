/*
 * Test support for integration tests (tests/it/): spawn real processes,
 * wait for them to be ready by polling their sockets (never fixed sleeps),
 * private redis-server instances, and a blocking hiredis connection.
 *
 * Environment provided by tools/run-tests.sh to every integration test:
 *   ODIN_BUILD         absolute path of the build dir (binaries live there)
 *   ODIN_TMP           a private scratch dir, removed afterwards
 *   ODIN_REDIS_URL     redis://127.0.0.1:<port> of the shared redis-server
 *   ODIN_REDIS_PORT    its port
 *   ODIN_KAFKA_BROKERS bootstrap of the shared odin-devbroker
 * A test that needs to kill Redis starts its own with tsup_redis_start().
 */
#ifndef ODIN_TESTS_SUPPORT_H
#define ODIN_TESTS_SUPPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <hiredis/hiredis.h>

/* getenv or abort with a message (for the ODIN_* variables above). */
const char *tsup_env(const char *name);

/* Path of a binary in ODIN_BUILD, e.g. tsup_bin("odin-shard"); static buffer
 * rotated over 8 calls. */
const char *tsup_bin(const char *name);

/* Unique path in ODIN_TMP: tsup_tmp("shard1.sock"); malloc'd, caller frees. */
char *tsup_tmp(const char *name);

/* A free TCP port (bindable on every address when handed out, outside the
 * ephemeral range, never the same twice in one process; support.c). */
int tsup_free_port(void);

/*
 * Spawn argv[0] (a path) with extra environment entries "K=V" (NULL-ended
 * list, may be NULL) added to the current environment.  stdout/stderr go to
 * ODIN_TMP/<basename>.<pid>.log unless ODIN_TEST_VERBOSE is set.  Returns the
 * pid, or -1.
 */
pid_t tsup_spawn(char *const argv[], char *const extra_env[]);

/* Send sig and wait up to timeout_ms for exit; returns the exit status as
 * from waitpid (use WIFEXITED/WEXITSTATUS), or -1 on timeout (then SIGKILLed). */
int tsup_stop(pid_t pid, int sig, int timeout_ms);

/* Poll until a TCP connect to 127.0.0.1:port succeeds (1) or timeout (0). */
int tsup_wait_tcp(int port, int timeout_ms);
/* Poll until a Unix stream socket at path accepts a connection. */
int tsup_wait_unix(const char *path, int timeout_ms);
/* Poll until a file exists and is non-empty. */
int tsup_wait_file(const char *path, int timeout_ms);

/* Generic poll: call pred(arg) every 10 ms until it returns non-zero (then
 * returns 1) or timeout (returns 0).  This is how tests wait for events that
 * have no socket of their own (a Redis key appearing, a metric changing). */
int tsup_wait_until(int (*pred)(void *), void *arg, int timeout_ms);

/* For a test whose source has the lines "odin-test: alone" and
 * "odin-test: gate": tools/run-tests.sh may start it beside the last other
 * tests, with ODIN_TEST_GATE naming a file it creates once nothing else
 * runs.  Call this before what must run alone (set-up before it overlaps
 * the other tests): it waits for that file; at once without the variable.
 * Returns the milliseconds waited. */
long tsup_alone_wait(void);

/* A private redis-server on a free port with its own dir. */
typedef struct tsup_redis {
    pid_t pid;
    int port;
    char url[64];
    char dir[256];
} tsup_redis;
int  tsup_redis_start(tsup_redis *r);             /* 0 or -1 */
int  tsup_redis_start_on(tsup_redis *r, int port); /* restart on a known port */
void tsup_redis_stop(tsup_redis *r);               /* SIGKILL, wait */

/* Blocking hiredis connection to a redis:// URL (asserts on failure). */
redisContext *tsup_redis_connect(const char *url);

/* Run a command (printf-style, hiredis formatting) and return the integer
 * reply / the SCARD-style integer (asserting the reply type). */
long long tsup_redis_int(redisContext *c, const char *fmt, ...);

/* Predicate for tsup_wait_until and the like: SISMEMBER key member == want. */
typedef struct tsup_member_q {
    redisContext *c;
    const char *key, *member;
    int want;
} tsup_member_q;
int tsup_is_member(void *arg);

/* Wait until SISMEMBER key member == want (1 member, 0 not); 1, or 0 on
 * timeout. */
int tsup_wait_member(redisContext *c, const char *key, const char *member, int want,
                     int timeout_ms);

/* 1 if the log tsup_spawn gave process pid of binary bin
 * (ODIN_TMP/<bin>.<pid>.log, bin the basename, e.g. "odin-shard") has a
 * line holding a and, unless b is NULL, b; 0 otherwise (no log yet too). */
int tsup_log_has(const char *bin, pid_t pid, const char *a, const char *b);

/* The same as a predicate for tsup_wait_until. */
typedef struct tsup_log_q {
    const char *bin;
    pid_t pid;
    const char *a, *b;
} tsup_log_q;
int tsup_log_has_q(void *arg);

/* HTTP GET http://127.0.0.1:port/path; returns status (or -1) and puts the
 * body (NUL-terminated, malloc'd) into *body if non-NULL. */
int tsup_http_get(int port, const char *path, char **body);

/* Find a Prometheus sample "name{labels} value" / "name value" in text and
 * return its value, or -1 if absent.  `series` is matched exactly up to the
 * space, e.g. "router_dispatch_total{mode=\"targeted\"}".  Without an exact
 * match, the sum of the series of that name whose labels include all the
 * given ones (router_drops_total{reason="x"} sums over its shard label). */
double tsup_prom_value(const char *text, const char *series);

/* One series of http://127.0.0.1:port/metrics (tsup_prom_value), or -1 if
 * absent or the process does not answer. */
double tsup_metric(int port, const char *series);

/* Wait until the series is >= want (tsup_wait_metric) or exactly want
 * (tsup_wait_metric_eq; the process answers); 1, or 0 on timeout (with the
 * last value on stderr).  ssup_ and rtsup_ wait_metric are these. */
int tsup_wait_metric(int port, const char *series, double want, int timeout_ms);
int tsup_wait_metric_eq(int port, const char *series, double want, int timeout_ms);

#endif
