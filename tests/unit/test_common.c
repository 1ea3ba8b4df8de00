/* common/: config (env + flags + --help), buf, topics, log rate limiter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "common/buf.h"
#include "common/config.h"
#include "common/log.h"
#include "common/topics.h"

static char *s_url;
static long s_max;
static int s_flag;
static double s_ratio;
static long s_big;
static const config_opt opts[] = {
    { "TEST_REDIS_URL", CFG_STR, &s_url, "redis://127.0.0.1:6379", "Redis", 0, 0 },
    { "TEST_MAX_CONNECTIONS", CFG_INT, &s_max, "100", "max", 1, 1000 },
    { "TEST_REUSEPORT", CFG_BOOL, &s_flag, "false", "reuse", 0, 0 },
    { "TEST_RATIO", CFG_DOUBLE, &s_ratio, "0.5", "ratio", 0, 1 },
    { "TEST_BIG", CFG_INT, &s_big, "0", "big", 0, (double)(1L << 40) },
};
#define NOPTS (sizeof opts / sizeof opts[0])

static int load(int argc, char **argv)
{
    return config_load(opts, NOPTS, argc, argv, "test", "test program");
}

static void test_config_defaults_env_flags(void **st)
{
    (void)st;
    char *argv0[] = { "test", NULL };
    unsetenv("TEST_MAX_CONNECTIONS");
    assert_int_equal(load(1, argv0), 0);
    assert_string_equal(s_url, "redis://127.0.0.1:6379");
    assert_int_equal(s_max, 100);
    assert_int_equal(s_flag, 0);

    setenv("TEST_MAX_CONNECTIONS", "250", 1);
    setenv("TEST_REUSEPORT", "yes", 1);
    assert_int_equal(load(1, argv0), 0);
    assert_int_equal(s_max, 250);
    assert_int_equal(s_flag, 1);

    /* flag beats env; both --k=v and --k v; bare boolean flag means true */
    setenv("TEST_REUSEPORT", "0", 1);
    char *argv1[] = { "test", "--test-max-connections=7", "--test-redis-url", "unix:/x.sock",
                      "--test-reuseport", NULL };
    assert_int_equal(load(5, argv1), 0);
    assert_int_equal(s_max, 7);
    assert_string_equal(s_url, "unix:/x.sock");
    assert_int_equal(s_flag, 1);
    unsetenv("TEST_MAX_CONNECTIONS");
    unsetenv("TEST_REUSEPORT");
    config_free(opts, NOPTS);
    assert_null(s_url);
}

static void test_config_errors(void **st)
{
    (void)st;
    char *bad_int[] = { "test", "--test-max-connections=12x", NULL };
    assert_int_equal(load(2, bad_int), -1);
    char *range[] = { "test", "--test-max-connections=5000", NULL };
    assert_int_equal(load(2, range), -1);
    char *unknown[] = { "test", "--nope=1", NULL };
    assert_int_equal(load(2, unknown), -1);
    char *novalue[] = { "test", "--test-redis-url", NULL };
    assert_int_equal(load(2, novalue), -1);
    char *positional[] = { "test", "foo", NULL };
    assert_int_equal(load(2, positional), -1);
    char *badbool[] = { "test", "--test-reuseport=maybe", NULL };
    assert_int_equal(load(2, badbool), -1);
    char *baddouble[] = { "test", "--test-ratio=2", NULL };
    assert_int_equal(load(2, baddouble), -1);
    setenv("TEST_MAX_CONNECTIONS", "abc", 1);
    char *argv0[] = { "test", NULL };
    assert_int_equal(load(1, argv0), -1);
    unsetenv("TEST_MAX_CONNECTIONS");
    config_free(opts, NOPTS);
}

static void test_config_help(void **st)
{
    (void)st;
    fflush(stdout);
    char path[] = "/tmp/odin-help-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *saved = stdout;
    stdout = fdopen(fd, "w");
    char *argv[] = { "test", "--help", NULL };
    int rc = load(2, argv);
    fclose(stdout);
    stdout = saved;
    assert_int_equal(rc, 1);
    FILE *f = fopen(path, "r");
    char text[4096] = { 0 };
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    unlink(path);
    assert_true(n > 0);
    /* every setting with its env name, flag and default */
    assert_non_null(strstr(text, "--test-max-connections, TEST_MAX_CONNECTIONS"));
    assert_non_null(strstr(text, "default: 100"));
    assert_non_null(strstr(text, "--test-redis-url, TEST_REDIS_URL"));
    assert_non_null(strstr(text, "--test-reuseport, TEST_REUSEPORT"));
    assert_non_null(strstr(text, "range: 1 .. 1000"));
    assert_non_null(strstr(text, "range: 0 .. 1099511627776"));
    assert_null(strstr(text, "e+"));
}

/* Run fn with stderr (fd 2) going to a buffer; returns what was written. */
static void capture_stderr(void (*fn)(void *), void *arg, char *out, size_t cap)
{
    char path[] = "/tmp/odin-stderr-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, out, cap - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
}

static char *u_a, *u_b;
static long u_m;
static const config_opt u_opts[] = {
    { "WS_MAX_CONNECTIONS", CFG_INT, &u_m, "0", "max", 0, 0 },
    { "WS_ADDR", CFG_STR, &u_a, NULL, "addr", 0, 0 },
    { "REDIS_URL", CFG_STR, &u_b, NULL, "url", 0, 0 },
};

static void check_env_strict(void *arg)
{
    char **env = arg;
    assert_int_equal(config_check_env(u_opts, 3, env, "odin-shard", 1), 3);
}

static void test_config_unknown_env(void **st)
{
    (void)st;
    /* the first word of a setting, derived from the table */
    assert_int_equal(config_env_unknown(u_opts, 3, "WS_MAX_CONECTIONS"), 1);
    assert_int_equal(config_env_unknown(u_opts, 3, "WS_MAX_CONNECTIONS"), 0);
    assert_int_equal(config_env_unknown(u_opts, 3, "REDIS_PREFIX"), 1);
    assert_int_equal(config_env_unknown(u_opts, 3, "CONFIG_STRICT"), 0);
    assert_int_equal(config_env_unknown(u_opts, 3, "CONFIG_STRCT"), 1);
    /* KAFKA_ is not a first word of this table; PATH, WSX have none */
    assert_int_equal(config_env_unknown(u_opts, 3, "KAFKA_BROKERS"), 0);
    assert_int_equal(config_env_unknown(u_opts, 3, "PATH"), 0);
    assert_int_equal(config_env_unknown(u_opts, 3, "WSX"), 0);
    /* a near miss of the first word */
    assert_int_equal(config_env_unknown(u_opts, 3, "RDIS_URL"), 1);
    assert_int_equal(config_env_unknown(u_opts, 3, "WS-ADDR"), 0);   /* 7 chars */
    /* Kubernetes service links of services named redis / ws */
    assert_int_equal(config_env_unknown(u_opts, 3, "REDIS_SERVICE_HOST"), 0);
    assert_int_equal(config_env_unknown(u_opts, 3, "REDIS_SERVICE_PORT_CLIENT"), 0);
    assert_int_equal(config_env_unknown(u_opts, 3, "REDIS_PORT"), 0);
    assert_int_equal(config_env_unknown(u_opts, 3, "REDIS_PORT_6379_TCP_ADDR"), 0);
    assert_int_equal(config_env_unknown(u_opts, 3, "WS_PORT_80_TCP"), 0);
    assert_int_equal(config_env_unknown(u_opts, 3, "REDIS_PORTS"), 1);

    char *env[] = { "WS_MAX_CONECTIONS=5", "WS_ADDR=x", "PATH=/bin", "HOME=/",
                    "REDIS_PREFIX=odin:", "KAFKA_BROKERS=x:1", "WS_ZZZZZZZZZZZZZZZZZZZZ=1",
                    "WSX=1", NULL };
    char text[4096];
    capture_stderr(check_env_strict, env, text, sizeof text);
    /* JSON lines an operator can grep, with the suggestion */
    assert_non_null(strstr(text, "\"level\":\"error\",\"component\":"));
    assert_non_null(strstr(text, "\"msg\":\"unknown setting\",\"setting\":\"WS_MAX_CONECTIONS\","
                                 "\"did_you_mean\":\"WS_MAX_CONNECTIONS\""));
    assert_non_null(strstr(text, "\"setting\":\"REDIS_PREFIX\""));
    assert_non_null(strstr(text, "\"setting\":\"WS_ZZZZZZZZZZZZZZZZZZZZ\",\"did_you_mean\":null"));
    assert_null(strstr(text, "KAFKA"));
    assert_null(strstr(text, "PATH"));
    assert_null(strstr(text, "warning:"));
    for (char *l = text; *l; l = strchr(l, '\n') + 1) {   /* every line is JSON */
        assert_true(l[0] == '{');
        assert_non_null(strchr(l, '\n'));
    }
    assert_int_equal(config_edit_distance("WS_MAX_CONECTIONS", "WS_MAX_CONNECTIONS"), 1);
    assert_int_equal(config_edit_distance("abc", "ABC"), 0);
    assert_int_equal(config_edit_distance("", "abc"), 3);
    assert_int_equal(config_edit_distance("kitten", "sitting"), 3);
}

static int g_rc;
static void load_argv(void *arg)
{
    char **argv = arg;
    int argc = 0;
    while (argv[argc])
        argc++;
    g_rc = load(argc, argv);
}

/* config_load: strict by default (an unknown TEST_ variable fails it),
 * CONFIG_STRICT=false or --config-strict=false only warns; a misspelt flag
 * always fails, with the closest flag. */
static void test_config_strict(void **st)
{
    (void)st;
    char text[4096];
    char *argv0[] = { "test", NULL };
    setenv("TEST_MAX_CONECTIONS", "5", 1);
    capture_stderr(load_argv, argv0, text, sizeof text);
    assert_int_equal(g_rc, -1);
    assert_int_equal(config_strict(), 1);
    assert_non_null(strstr(text, "\"did_you_mean\":\"TEST_MAX_CONNECTIONS\""));
    assert_non_null(strstr(text, "\"action\":\"exit\""));

    setenv("CONFIG_STRICT", "false", 1);
    capture_stderr(load_argv, argv0, text, sizeof text);
    assert_int_equal(g_rc, 0);
    assert_int_equal(s_max, 100);   /* the default: the misspelt one is ignored */
    assert_non_null(strstr(text, "\"level\":\"warn\""));
    assert_non_null(strstr(text, "\"action\":\"ignored\""));
    unsetenv("CONFIG_STRICT");

    char *relaxed[] = { "test", "--config-strict=false", NULL };
    capture_stderr(load_argv, relaxed, text, sizeof text);
    assert_int_equal(g_rc, 0);
    unsetenv("TEST_MAX_CONECTIONS");

    char *flag[] = { "test", "--test-max-conections=5", NULL };
    setenv("CONFIG_STRICT", "false", 1);   /* does not relax flags */
    capture_stderr(load_argv, flag, text, sizeof text);
    unsetenv("CONFIG_STRICT");
    assert_int_equal(g_rc, -1);
    assert_non_null(strstr(text, "\"msg\":\"unknown option\",\"option\":\"--test-max-conections\","
                                 "\"did_you_mean\":\"--test-max-connections\""));
    char *bad[] = { "test", "--test-max-connections=many", NULL };
    capture_stderr(load_argv, bad, text, sizeof text);
    assert_int_equal(g_rc, -1);
    assert_non_null(strstr(text, "\"msg\":\"invalid setting\",\"setting\":\"TEST_MAX_CONNECTIONS\""));
    config_free(opts, NOPTS);
}

static void test_redis_url_reasons(void **st)
{
    (void)st;
    redis_endpoint ep;
    char err[256];
    assert_int_equal(addr_parse_redis_url_err("rediss://h:1", &ep, err, sizeof err), -1);
    assert_non_null(strstr(err, "scheme 'rediss'"));
    assert_int_equal(addr_parse_redis_url_err("localhost:6379", &ep, err, sizeof err), -1);
    assert_non_null(strstr(err, "no scheme"));
    assert_int_equal(addr_parse_redis_url_err("redis://h:70000", &ep, err, sizeof err), -1);
    assert_non_null(strstr(err, "port 0-65535"));
    assert_int_equal(addr_parse_redis_url_err("redis://h/x", &ep, err, sizeof err), -1);
    assert_non_null(strstr(err, "database 'x'"));
    assert_int_equal(addr_parse_redis_url_err("redis://:p%zz@h", &ep, err, sizeof err), -1);
    assert_null(strstr(err, "zz"));
    assert_int_equal(addr_parse_redis_url_err("unix:rel.sock", &ep, err, sizeof err), -1);
    assert_non_null(strstr(err, "absolute path"));
    assert_int_equal(addr_parse_redis_url_err("redis://", &ep, err, sizeof err), -1);
    assert_non_null(strstr(err, "no host"));
    assert_int_equal(addr_parse_redis_url_err("redis://h:1/2", &ep, err, sizeof err), 0);
    assert_int_equal(ep.db, 2);
}

static void test_brokers(void **st)
{
    (void)st;
    char err[256];
    assert_int_equal(addr_check_brokers("127.0.0.1:9092", err, sizeof err), 0);
    assert_int_equal(addr_check_brokers("a:1, b.example.com:9093,[::1]:9094", err,
                                        sizeof err), 0);
    assert_int_equal(addr_check_brokers("SSL://kafka-1:9093", err, sizeof err), 0);
    assert_int_equal(addr_check_brokers("garbage", err, sizeof err), -1);
    assert_non_null(strstr(err, "'garbage' is not host:port"));
    assert_int_equal(addr_check_brokers("a:1,b", err, sizeof err), -1);
    assert_int_equal(addr_check_brokers("a:0", err, sizeof err), -1);
    assert_int_equal(addr_check_brokers("a:99999", err, sizeof err), -1);
    assert_int_equal(addr_check_brokers(":9092", err, sizeof err), -1);
    assert_int_equal(addr_check_brokers("a b:9092", err, sizeof err), -1);
    assert_int_equal(addr_check_brokers("", err, sizeof err), -1);
    assert_int_equal(addr_check_brokers(",", err, sizeof err), -1);
}

static void test_hostport_and_redis_url(void **st)
{
    (void)st;
    char host[64];
    int port;
    assert_int_equal(addr_split_hostport("0.0.0.0:3002", host, sizeof host, &port), 0);
    assert_string_equal(host, "0.0.0.0");
    assert_int_equal(port, 3002);
    assert_int_equal(addr_split_hostport(":80", host, sizeof host, &port), 0);
    assert_string_equal(host, "0.0.0.0");
    assert_int_equal(addr_split_hostport("[::1]:9", host, sizeof host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(addr_split_hostport("nohost", host, sizeof host, &port), -1);
    assert_int_equal(addr_split_hostport("h:99999", host, sizeof host, &port), -1);
    assert_int_equal(addr_split_hostport("h:12a", host, sizeof host, &port), -1);

    redis_endpoint e;
    assert_int_equal(addr_parse_redis_url("redis://10.0.0.5:6380", &e), 0);
    assert_string_equal(e.host, "10.0.0.5");
    assert_int_equal(e.port, 6380);
    assert_int_equal(addr_parse_redis_url("redis://redis", &e), 0);
    assert_string_equal(e.host, "redis");
    assert_int_equal(e.port, 6379);
    assert_int_equal(addr_parse_redis_url("redis://h:1/3", &e), 0);
    assert_int_equal(e.db, 3);
    assert_int_equal(addr_parse_redis_url("unix:/run/redis.sock", &e), 0);
    assert_string_equal(e.path, "/run/redis.sock");
    assert_int_equal(addr_parse_redis_url("unix:///run/r.sock", &e), 0);
    assert_string_equal(e.path, "/run/r.sock");
    assert_int_equal(addr_parse_redis_url("http://x", &e), -1);
    assert_int_equal(addr_parse_redis_url("unix:relative", &e), -1);
    assert_int_equal(addr_parse_redis_url("redis://", &e), -1);
    assert_int_equal(addr_parse_redis_url("redis://h:1/x", &e), -1);
    assert_string_equal(e.password, "");
}

static void test_redis_credentials(void **st)
{
    (void)st;
    redis_endpoint e;
    assert_int_equal(addr_parse_redis_url("redis://app:s3cr%40t%3A@db.internal:6380/2", &e), 0);
    assert_string_equal(e.user, "app");
    assert_string_equal(e.password, "s3cr@t:");
    assert_string_equal(e.host, "db.internal");
    assert_int_equal(e.port, 6380);
    assert_int_equal(e.db, 2);
    assert_int_equal(addr_parse_redis_url("redis://:pw@h", &e), 0);   /* password only */
    assert_string_equal(e.user, "");
    assert_string_equal(e.password, "pw");
    assert_int_equal(addr_parse_redis_url("redis://lonepw@h:1", &e), 0);   /* redis-cli: a password */
    assert_string_equal(e.user, "");
    assert_string_equal(e.password, "lonepw");
    assert_int_equal(addr_parse_redis_url("redis://u:bad%zz@h", &e), -1);
    assert_int_equal(addr_parse_redis_url("redis://u:cut%4@h", &e), -1);
    assert_int_equal(addr_parse_redis_url("redis://u:nul%00@h", &e), -1);
    /* REDIS_PASSWORD fills or replaces it */
    assert_int_equal(addr_parse_redis_url("redis://h", &e), 0);
    assert_int_equal(addr_redis_set_password(&e, "fromenv"), 0);
    assert_string_equal(e.password, "fromenv");
    assert_int_equal(addr_redis_set_password(&e, NULL), 0);
    assert_string_equal(e.password, "fromenv");
    /* redaction: the password never reaches a log line */
    char out[128];
    addr_redact_url("redis://app:s3cr%40t@db:6380/2", out, sizeof out);
    assert_string_equal(out, "redis://app:***@db:6380/2");
    addr_redact_url("redis://lonepw@h:1", out, sizeof out);
    assert_string_equal(out, "redis://***@h:1");
    addr_redact_url("redis://h:1", out, sizeof out);
    assert_string_equal(out, "redis://h:1");
    addr_redact_url("unix:/run/r.sock", out, sizeof out);
    assert_string_equal(out, "unix:/run/r.sock");
    addr_redact_url(NULL, out, sizeof out);
    assert_string_equal(out, "(none)");
}

static void test_redis_sentinels(void **st)
{
    (void)st;
    redis_endpoint e;
    char why[256];
    assert_int_equal(addr_parse_redis_url("redis://:pw@ignored:1/2", &e), 0);
    assert_int_equal(addr_redis_set_sentinels(&e, NULL, "odin", why, sizeof why), 0);
    assert_string_equal(e.sentinels, "");
    assert_int_equal(addr_redis_set_sentinels(&e, "s1:26379, 10.0.0.2:26380", "odin", why,
                                              sizeof why), 0);
    assert_string_equal(e.sentinels, "s1:26379, 10.0.0.2:26380");
    assert_string_equal(e.master_name, "odin");
    assert_string_equal(e.password, "pw");    /* the URL still gives password and db */
    assert_int_equal(e.db, 2);
    assert_int_equal(addr_redis_set_sentinels(&e, "s1", "odin", why, sizeof why), -1);
    assert_non_null(strstr(why, "'s1'"));
    assert_int_equal(addr_redis_set_sentinels(&e, "s1:x", "odin", why, sizeof why), -1);
    assert_int_equal(addr_redis_set_sentinels(&e, "s1:26379", "", why, sizeof why), -1);
    assert_non_null(strstr(why, "REDIS_MASTER_NAME"));
}

static void test_split_list(void **st)
{
    (void)st;
    char **v;
    size_t n;
    assert_int_equal(addr_split_list(" BTC, ETH ,,\tSOL\t,", &v, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(v[0], "BTC");
    assert_string_equal(v[1], "ETH");
    assert_string_equal(v[2], "SOL");
    addr_list_free(v, n);
    assert_int_equal(addr_split_list(" , ", &v, &n), 0);
    assert_int_equal(n, 0);
    assert_null(v);
    addr_list_free(v, n);
    addr_list_free(NULL, 0);
}

static void test_buf(void **st)
{
    (void)st;
    buf b = { 0 };
    for (int i = 0; i < 1000; i++)
        assert_int_equal(buf_appendf(&b, "%d,", i), 0);
    assert_memory_equal(b.data, "0,1,2,", 6);
    buf_consume(&b, 2);
    assert_memory_equal(b.data, "1,2,", 4);
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    char big[1000];
    memset(big, 'x', sizeof big);
    assert_int_equal(buf_appendf(&b, "%.*s!", 1000, big), 0);
    assert_int_equal(b.len, 1001);
    buf_reset(&b);
    assert_int_equal(buf_append_json_str(&b, "a\"b\\c\n\x01\xc3\xa9", 9), 0);
    assert_int_equal(b.len, strlen("\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\""));
    assert_memory_equal(b.data, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\"", b.len);
    buf_free(&b);
    buf_free(&b);   /* idempotent */
}

static void test_topics(void **st)
{
    (void)st;
    assert_int_equal(topics_default_count, 8);
    const topic_info *t = topics_by_topic("odin.trades", 11);
    assert_non_null(t);
    assert_string_equal(t->category, "trade");
    assert_null(topics_by_topic("odin.trade", 10));
    int prio;
    assert_string_equal(topics_msg_type("trade", 5, &prio), "price:update");
    assert_int_equal(prio, 1);
    assert_null(topics_msg_type("weird", 5, &prio));
    assert_int_equal(prio, 3);
    assert_true(topics_token_valid("BTC", 3));
    assert_true(topics_token_valid("a_b-9", 5));
    assert_false(topics_token_valid("", 0));
    assert_false(topics_token_valid("B.C", 3));
    assert_false(topics_token_valid("*", 1));
    char long_tok[66];
    memset(long_tok, 'A', 65);
    assert_true(topics_token_valid(long_tok, 64));
    assert_false(topics_token_valid(long_tok, 65));
    size_t tl, cl;
    const char *cat;
    assert_true(topics_channel_split("BTC.trade", 9, &tl, &cat, &cl));
    assert_int_equal(tl, 3);
    assert_int_equal(cl, 5);
    assert_memory_equal(cat, "trade", 5);
    assert_false(topics_channel_split("BTC", 3, &tl, &cat, &cl));
    assert_false(topics_channel_split(".trade", 6, &tl, &cat, &cl));
    assert_false(topics_channel_split("BTC.", 4, &tl, &cat, &cl));
    assert_false(topics_channel_split("BTC.Trade", 9, &tl, &cat, &cl));
    assert_false(topics_channel_split("B$C.trade", 9, &tl, &cat, &cl));
}

static void test_log_ratelimit(void **st)
{
    (void)st;
    log_ratelimit rl = { .per_sec = 5 };
    uint64_t sup = 99;
    int allowed = 0;
    for (int i = 0; i < 100; i++)
        allowed += log_rl_allow(&rl, &sup);
    /* a burst of 100 in well under a second passes the bucket size only */
    assert_true(allowed >= 5 && allowed <= 6);
    assert_true(rl.suppressed >= 94);
    enum log_level l;
    assert_int_equal(log_level_parse("WARN", &l), 0);
    assert_int_equal(l, LOG_WARN);
    assert_int_equal(log_level_parse("verbose", &l), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults_env_flags),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_config_help),
        cmocka_unit_test(test_config_unknown_env),
        cmocka_unit_test(test_config_strict),
        cmocka_unit_test(test_redis_url_reasons),
        cmocka_unit_test(test_brokers),
        cmocka_unit_test(test_hostport_and_redis_url),
        cmocka_unit_test(test_redis_credentials),
        cmocka_unit_test(test_redis_sentinels),
        cmocka_unit_test(test_split_list),
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_topics),
        cmocka_unit_test(test_log_ratelimit),
    };
    return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
