/*
 * JSON-lines logger shared by every binary.
 *
 * One line per event on stderr:
 *   {"ts":"2026-11-26T22:21:23.123Z","level":"info","component":"shard",
 *    "msg":"client closed","fd":12,"code":1008}
 *
 * Fields are typed key/value pairs so strings are always JSON-escaped:
 *   log_kv(LOG_INFO, "client closed", "i:fd", fd, "i:code", 1008, NULL);
 * Key prefixes: "s:" const char * (NULL prints null), "S:" (const char *, size_t)
 * pair for binary-safe strings, "i:" int, "I:" int64_t, "u:" uint64_t,
 * "f:" double, "b:" int printed as true/false.  The list ends with NULL.
 */
#ifndef ODIN_COMMON_LOG_H
#define ODIN_COMMON_LOG_H

#include <stdint.h>
#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* Set the component name (copied) and the minimum level printed. */
void log_init(const char *component, enum log_level min);

/* Set only the component name (copied), keeping the level: config_load
 * names the program before main() knows its LOG_LEVEL. */
void log_set_component(const char *component);

/* Parse "debug" | "info" | "warn" | "error"; returns 0 or -1 if unknown. */
int log_level_parse(const char *s, enum log_level *out);

/* Is a line at this level printed?  Use to skip expensive field building. */
int log_enabled(enum log_level lvl);

/* Print one line; see the header comment for the field convention. */
void log_kv(enum log_level lvl, const char *msg, ...)
    __attribute__((sentinel));

/*
 * Token bucket for messages that can repeat per record or per client
 * (bad records, protocol errors): at most `per_sec` lines a second, and the
 * number suppressed since the last printed line is reported through
 * log_rl_allow's *suppressed.  Zero-initialise, then set per_sec.
 */
typedef struct log_ratelimit {
    double per_sec;
    double tokens;
    uint64_t last_ms;
    uint64_t suppressed;
} log_ratelimit;

/* 1 if a line may be printed now (and *suppressed = lines skipped before). */
int log_rl_allow(log_ratelimit *rl, uint64_t *suppressed);

#define LOG_DEBUGF(msg, ...) log_kv(LOG_DEBUG, msg, ##__VA_ARGS__, NULL)
#define LOG_INFOF(msg, ...)  log_kv(LOG_INFO, msg, ##__VA_ARGS__, NULL)
#define LOG_WARNF(msg, ...)  log_kv(LOG_WARN, msg, ##__VA_ARGS__, NULL)
#define LOG_ERRORF(msg, ...) log_kv(LOG_ERROR, msg, ##__VA_ARGS__, NULL)

#endif
