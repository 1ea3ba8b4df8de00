/*
 * Addresses in settings, parsed without I/O: "host:port" (IPv6 as
 * [::1]:port), comma-separated lists, KAFKA_BROKERS, Redis URLs (with
 * credentials, Sentinel and redaction for logs).  Used by the settings
 * loaders (common/config.c's callers), common/net.c and common/redislink.c,
 * which therefore do not depend on the settings loader.  Pure
 * (tests/unit/test_common.c, tests/unit/test_net.c).
 */
#ifndef ODIN_COMMON_ADDR_H
#define ODIN_COMMON_ADDR_H

#include <stddef.h>

/* "host:port" -> host (copy into hostbuf) and port.  IPv6 as [::1]:port.
 * Returns 0 or -1. */
int addr_split_hostport(const char *s, char *hostbuf, size_t hostlen,
                        int *port);

/*
 * Redis endpoint: "redis://[[user]:password@]host:port[/db]" (port default
 * 6379; user and password percent-decoded, as in redis-cli -u), or
 * "unix:/path" / "unix:///path".  Returns 0 or -1.  path non-empty for unix.
 * With a password the link sends AUTH [user] password before anything else.
 * Never log a URL as given: use addr_redact_url().
 */
typedef struct redis_endpoint {
    char host[256];
    int port;
    char path[256];
    int db;
    char user[128];         /* empty: AUTH with the password only */
    char password[256];     /* empty: no AUTH */
    char sentinels[512];    /* "host:port,host:port": master found through
                               Redis Sentinel (host/port above unused) */
    char master_name[128];  /* Sentinel's name of the master */
} redis_endpoint;
int addr_parse_redis_url(const char *url, redis_endpoint *out);
/* The same, with why it does not parse in err (never the password). */
int addr_parse_redis_url_err(const char *url, redis_endpoint *out, char *err,
                             size_t errlen);

/* REDIS_SENTINELS / REDIS_MASTER_NAME: find the master through Sentinel.
 * `sentinels` is a comma-separated host:port list (NULL or empty: no
 * Sentinel).  0, or -1 with a reason in why[n] (bad list, no name). */
int addr_redis_set_sentinels(redis_endpoint *ep, const char *sentinels,
                             const char *master_name, char *why, size_t n);

/* REDIS_PASSWORD: set (or replace) the endpoint's password.  0 or -1 (too
 * long).  NULL or empty leaves it as the URL gave it. */
int addr_redis_set_password(redis_endpoint *ep, const char *password);

/* Copy `url` into out[n] with any userinfo password replaced by "***", for
 * logs and errors ("redis://app:***@redis:6379").  Always NUL-terminates. */
void addr_redact_url(const char *url, char *out, size_t n);

/* Split a comma-separated list into trimmed, non-empty items (each
 * malloc'd; the caller frees with addr_list_free).  *out is NULL when
 * there are none.  Returns 0, or -1 on ENOMEM (nothing to free then). */
int addr_split_list(const char *s, char ***out, size_t *n);
void addr_list_free(char **v, size_t n);   /* NULL is a no-op */

/*
 * KAFKA_BROKERS syntax: a comma-separated list of [scheme://]host:port
 * (IPv6 as [::1]:9092, port 1-65535).  0, or -1 with the reason in err.
 * Pure: says nothing about whether the brokers answer.
 */
int addr_check_brokers(const char *s, char *err, size_t errlen);

#endif
