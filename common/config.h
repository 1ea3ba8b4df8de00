/*
 * Settings: every option is an environment variable and the same long flag
 * (WS_MAX_CONNECTIONS <=> --ws-max-connections).  Precedence: flag > env >
 * default.  Each binary declares a table of config_opt and calls
 * config_load(); `--help` prints every setting with its env name, default
 * and description, then exits 0.
 *
 *   static char *redis_url; static long max_conns;
 *   static const config_opt opts[] = {
 *     { "REDIS_URL", CFG_STR, &redis_url, "redis://127.0.0.1:6379",
 *       "Redis endpoint: redis://host:port or unix:/path", 0, 0 },
 *     { "WS_MAX_CONNECTIONS", CFG_INT, &max_conns, "0",
 *       "Max WebSocket clients (0 = derived from the fd limit)", 0, 1000000 },
 *   };
 *   if (config_load(opts, 2, argc, argv, "odin-shard", "WebSocket shard") != 0)
 *       exit(2);
 *
 * Strings are heap copies owned by the config module, released by
 * config_free(opts, n).  Booleans accept 1/0/true/false/yes/no/on/off.
 * A flag may be given as --name=value or --name value; a boolean flag alone
 * (--foo) means true.
 */
#ifndef ODIN_COMMON_CONFIG_H
#define ODIN_COMMON_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "common/addr.h"

enum config_type {
    CFG_STR,   /* dst: char **           */
    CFG_INT,   /* dst: long *, range [min,max] checked */
    CFG_BOOL,  /* dst: int *             */
    CFG_DOUBLE /* dst: double *, range [min,max] checked */
};

typedef struct config_opt {
    const char *env;        /* e.g. "WS_MAX_CONNECTIONS"; flag derived */
    enum config_type type;
    void *dst;
    const char *def;        /* default as text; NULL = unset (strings: NULL) */
    const char *help;
    double min, max;        /* numeric range; ignored if min == max == 0 */
} config_opt;

/*
 * Load settings.  Returns 0 on success, 1 if --help or --version was printed
 * (caller exits 0), -1 on a bad value, an unknown flag, or (CONFIG_STRICT,
 * the default) an unknown setting in the environment: each is one JSON log
 * line on stderr (common/log.h) naming the setting and, for a misspelling,
 * the closest real one ("did_you_mean"); the caller exits 2.
 *
 * Every table gets one more setting, CONFIG_STRICT (bool, default true),
 * listed by --help after the table's own.  It also sets the log component
 * to the program's name without "odin-" ("odin-shard" -> "shard").
 */
int config_load(const config_opt *opts, size_t n, int argc, char **argv,
                const char *prog, const char *summary);

/* A setting that parsed but cannot be used (a program's own checks after
 * config_load): one "invalid setting" JSON log line at error level with the
 * printf-formatted reason (name the setting in it; never a secret). */
void config_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The CONFIG_STRICT value of the last config_load (1 before any). */
int config_strict(void);

/*
 * 1 if the environment variable `name` looks like a setting of this table
 * but is none of its settings (nor CONFIG_STRICT), else 0.  It looks like
 * one when its first word, up to and including the first '_', is the first
 * word of one of the table's settings (WS_, SHARD_, ROUTE_, HTTP_, ...:
 * derived from the table, so a tool without REDIS_* settings ignores the
 * REDIS_URL a shell exported for the daemons), or when it is 8+ characters
 * and within 2 edits of a setting (RDIS_URL).  Kubernetes / Docker service
 * link variables (REDIS_SERVICE_HOST, REDIS_PORT, REDIS_PORT_6379_TCP, ...)
 * never do.  Pure.
 */
int config_env_unknown(const config_opt *opts, size_t n, const char *name);

/*
 * Log each environment entry (env: "NAME=value", NULL-ended, e.g. environ)
 * for which config_env_unknown is 1: one "unknown setting" line with the
 * closest option ("did_you_mean", null when none is close) at error level
 * when `strict`, else at warn level.  config_load runs it on environ.
 * Returns the number of such entries.
 */
int config_check_env(const config_opt *opts, size_t n, char *const *env,
                     const char *prog, int strict);

/* Levenshtein distance, ASCII case-insensitive (names over 128 bytes: the
 * longer length).  Pure. */
size_t config_edit_distance(const char *a, const char *b);

/* The option whose env name is closest to `name`; *dist (may be NULL) gets
 * the distance.  NULL when n is 0. */
const char *config_closest(const config_opt *opts, size_t n, const char *name,
                           size_t *dist);

/* Print the --help text to stdout (the table, CONFIG_STRICT, --help,
 * --version). */
void config_usage(const config_opt *opts, size_t n, const char *prog,
                  const char *summary);

/* Free the strings config_load allocated. */
void config_free(const config_opt *opts, size_t n);

#endif
