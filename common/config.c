#include "common/config.h"
#include "common/log.h"
#include "common/procmetrics.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* "WS_MAX_CONNECTIONS" -> "ws-max-connections" */
static void flag_name(const char *env, char *out, size_t n)
{
    size_t i = 0;
    for (; env[i] && i + 1 < n; i++)
        out[i] = env[i] == '_' ? '-' : (char)tolower((unsigned char)env[i]);
    out[i] = '\0';
}

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = { "1", "true", "yes", "on" };
    static const char *const no[] = { "0", "false", "no", "off" };
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) { *out = 1; return 0; }
        if (strcasecmp(v, no[i]) == 0) { *out = 0; return 0; }
    }
    return -1;
}

/* A setting's value does not parse (only numbers and booleans fail, so the
 * value is never a secret). */
static void bad_value(const config_opt *o, const char *src, const char *v,
                      const char *why)
{
    log_kv(LOG_ERROR, "invalid setting", "s:setting", o->env, "s:source", src,
           "S:value", v, strlen(v), "s:reason", why, NULL);
}

/* CONFIG_STRICT, a setting of every binary: config_load adds it after the
 * table. */
static int g_strict = 1;
static const config_opt k_strict_opt = {
    "CONFIG_STRICT", CFG_BOOL, &g_strict, "true",
    "An environment variable that looks like a setting of this program (its "
    "first word, up to '_', starts one of its settings, or it is within 2 "
    "edits of one) but is not one stops the program with exit code 2 and a "
    "did_you_mean; false: log a warning and ignore it (an env file shared by "
    "several odin binaries).  Unknown flags always stop it", 0, 0
};

/* Option i of the table followed by CONFIG_STRICT (i == n). */
static const config_opt *opt_at(const config_opt *opts, size_t n, size_t i)
{
    return i < n ? &opts[i] : &k_strict_opt;
}

static int set_value(const config_opt *o, const char *v, const char *src)
{
    char *end;
    switch (o->type) {
    case CFG_STR: {
        char **dst = o->dst;
        char *copy = v ? strdup(v) : NULL;
        if (v && !copy)
            return -1;
        free(*dst);
        *dst = copy;
        return 0;
    }
    case CFG_INT: {
        errno = 0;
        long x = strtol(v, &end, 0);
        if (errno || end == v || *end) {
            bad_value(o, src, v, "not an integer");
            return -1;
        }
        if ((o->min != 0 || o->max != 0) && ((double)x < o->min || (double)x > o->max)) {
            char why[128];
            snprintf(why, sizeof why, "out of range [%.0f, %.0f]", o->min, o->max);
            bad_value(o, src, v, why);
            return -1;
        }
        *(long *)o->dst = x;
        return 0;
    }
    case CFG_DOUBLE: {
        errno = 0;
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x)) {
            bad_value(o, src, v, "not a number");
            return -1;
        }
        if ((o->min != 0 || o->max != 0) && (x < o->min || x > o->max)) {
            char why[128];
            snprintf(why, sizeof why, "out of range [%.15g, %.15g]", o->min, o->max);
            bad_value(o, src, v, why);
            return -1;
        }
        *(double *)o->dst = x;
        return 0;
    }
    case CFG_BOOL:
        if (parse_bool(v, o->dst) != 0) {
            bad_value(o, src, v, "not a boolean (true/false)");
            return -1;
        }
        return 0;
    }
    return -1;
}

void config_usage(const config_opt *opts, size_t n, const char *prog,
                  const char *summary)
{
    printf("Usage: %s [--setting=value ...]\n\n%s\n\n", prog, summary);
    printf("Every setting is an environment variable and the same long flag;\n"
           "a flag overrides the environment.\n\n");
    for (size_t i = 0; i <= n; i++) {
        const config_opt *o = opt_at(opts, n, i);
        char flag[96];
        flag_name(o->env, flag, sizeof flag);
        const char *t = o->type == CFG_INT ? "int" : o->type == CFG_BOOL ? "bool"
                      : o->type == CFG_DOUBLE ? "number" : "string";
        printf("  --%s, %s (%s)\n      %s\n", flag, o->env, t, o->help);
        if (o->def)
            printf("      default: %s\n", o->def[0] ? o->def : "(empty)");
        else
            printf("      default: (unset)\n");
        /* integers as integers (1099511627776, not 1.09951e+12): a range
         * must be something one can type back */
        if (o->type == CFG_INT && (o->min != 0 || o->max != 0))
            printf("      range: %.0f .. %.0f\n", o->min, o->max);
        else if (o->type == CFG_DOUBLE && (o->min != 0 || o->max != 0))
            printf("      range: %.15g .. %.15g\n", o->min, o->max);
    }
    printf("  --help\n      Print this text and exit.\n");
    printf("  --version\n      Print the build's version (git describe) and exit.\n");
}

/* ---- unknown settings in the environment ------------------------------- */

size_t config_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 128 || lb > 128)
        return la > lb ? la : lb;
    size_t row[129];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = toupper((unsigned char)a[i - 1]) ==
                          toupper((unsigned char)b[j - 1]) ? 0 : 1;
            size_t v = diag + cost;
            if (row[j] + 1 < v) v = row[j] + 1;
            if (row[j - 1] + 1 < v) v = row[j - 1] + 1;
            row[j] = v;
            diag = up;
        }
    }
    return row[lb];
}

/* Closest of the table and CONFIG_STRICT. */
static const char *closest_all(const config_opt *opts, size_t n, const char *name,
                               size_t *dist)
{
    const char *best = NULL;
    size_t bd = (size_t)-1;
    for (size_t i = 0; i <= n; i++) {
        size_t d = config_edit_distance(name, opt_at(opts, n, i)->env);
        if (d < bd) {
            bd = d;
            best = opt_at(opts, n, i)->env;
        }
    }
    if (dist)
        *dist = bd;
    return best;
}

const char *config_closest(const config_opt *opts, size_t n, const char *name,
                           size_t *dist)
{
    const char *best = NULL;
    size_t bd = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        size_t d = config_edit_distance(name, opts[i].env);
        if (d < bd) {
            bd = d;
            best = opts[i].env;
        }
    }
    if (dist)
        *dist = bd;
    return best;
}

/* Length of the first word of a name, its trailing '_' included
 * ("WS_MAX_CONNECTIONS" -> 3); 0 when there is no '_'. */
static size_t first_word(const char *name)
{
    const char *u = strchr(name, '_');
    return u && u != name ? (size_t)(u - name) + 1 : 0;
}

/* Kubernetes service links (<SVC>_SERVICE_HOST, <SVC>_SERVICE_PORT[_<name>],
 * <SVC>_PORT, <SVC>_PORT_<n>_<PROTO>[_PROTO|_PORT|_ADDR]) and Docker
 * links: a service called "redis" or "shard" in the namespace sets them in
 * every pod, so they are never taken for misspelt settings. */
static int service_link(const char *name)
{
    if (strstr(name, "_SERVICE_HOST") || strstr(name, "_SERVICE_PORT"))
        return 1;
    size_t l = strlen(name);
    if (l > 5 && strcmp(name + l - 5, "_PORT") == 0)
        return 1;
    const char *p = strstr(name, "_PORT_");
    if (!p || !isdigit((unsigned char)p[6]))
        return 0;
    p += 6;
    while (isdigit((unsigned char)*p))
        p++;
    return strncmp(p, "_TCP", 4) == 0 || strncmp(p, "_UDP", 4) == 0 ||
           strncmp(p, "_SCTP", 5) == 0;
}

int config_env_unknown(const config_opt *opts, size_t n, const char *name)
{
    for (size_t i = 0; i <= n; i++)
        if (strcmp(opt_at(opts, n, i)->env, name) == 0)
            return 0;
    if (service_link(name))
        return 0;
    size_t w = first_word(name);
    for (size_t i = 0; i <= n && w; i++) {
        const char *o = opt_at(opts, n, i)->env;
        if (first_word(o) == w && strncmp(o, name, w) == 0)
            return 1;
    }
    /* another first word but a near miss: RDIS_URL, HTPP_ADDR */
    size_t d;
    return strlen(name) >= 8 && closest_all(opts, n, name, &d) && d <= 2;
}

int config_check_env(const config_opt *opts, size_t n, char *const *env,
                     const char *prog, int strict)
{
    int found = 0;
    for (size_t e = 0; env && env[e]; e++) {
        const char *kv = env[e];
        const char *eq = strchr(kv, '=');
        size_t kl = eq ? (size_t)(eq - kv) : strlen(kv);
        char name[129];
        if (kl == 0 || kl >= sizeof name)
            continue;
        memcpy(name, kv, kl);
        name[kl] = '\0';
        if (!config_env_unknown(opts, n, name))
            continue;
        size_t d;
        const char *best = closest_all(opts, n, name, &d);
        if (best && d > 3 + strlen(name) / 8)
            best = NULL;
        char hint[512];
        if (best)
            snprintf(hint, sizeof hint, "%s is not a setting of %s; did you mean %s? (%s)",
                     name, prog, best, strict ? "CONFIG_STRICT=false only warns" : "ignored");
        else
            snprintf(hint, sizeof hint, "%s is not a setting of %s (see %s --help; %s)",
                     name, prog, prog, strict ? "CONFIG_STRICT=false only warns" : "ignored");
        log_kv(strict ? LOG_ERROR : LOG_WARN, "unknown setting", "s:setting", name,
               "s:did_you_mean", best, "s:source", "environment", "s:program", prog,
               "s:action", strict ? "exit" : "ignored", "s:hint", hint, NULL);
        found++;
    }
    return found;
}

/* ---- loading ------------------------------------------------------------ */

/* An unknown --flag: its name back as a setting ("ws-max-conections" ->
 * "WS_MAX_CONECTIONS") to find the closest one, suggested as a flag. */
static void unknown_flag(const config_opt *opts, size_t n, const char *name, size_t nl,
                         const char *prog)
{
    char env[129], flag[129] = "";
    size_t l = nl < sizeof env - 1 ? nl : sizeof env - 1;
    for (size_t i = 0; i < l; i++)
        env[i] = name[i] == '-' ? '_' : (char)toupper((unsigned char)name[i]);
    env[l] = '\0';
    size_t d;
    const char *best = closest_all(opts, n, env, &d);
    if (best && d <= 3 + l / 8) {
        flag[0] = flag[1] = '-';
        flag_name(best, flag + 2, sizeof flag - 2);
    }
    char hint[512];
    if (flag[0])
        snprintf(hint, sizeof hint, "--%.*s is not an option of %s; did you mean %s?",
                 (int)l, name, prog, flag);
    else
        snprintf(hint, sizeof hint, "--%.*s is not an option of %s (see %s --help)",
                 (int)l, name, prog, prog);
    char given[131];
    snprintf(given, sizeof given, "--%.*s", (int)l, name);
    log_kv(LOG_ERROR, "unknown option", "s:option", given, "s:did_you_mean",
           flag[0] ? flag : NULL, "s:source", "flag", "s:program", prog,
           "s:action", "exit", "s:hint", hint, NULL);
}

int config_load(const config_opt *opts, size_t n, int argc, char **argv,
                const char *prog, const char *summary)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            config_usage(opts, n, prog, summary);
            return 1;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("%s %s\n", prog, procmetrics_version());
            return 1;
        }
    }
    /* log lines before main() calls log_init carry the program's name
     * ("odin-shard" -> "shard", the component its own lines use) */
    log_set_component(strncmp(prog, "odin-", 5) == 0 ? prog + 5 : prog);
    /* defaults, then environment */
    for (size_t i = 0; i <= n; i++) {
        const config_opt *o = opt_at(opts, n, i);
        if (o->type == CFG_STR) {   /* a second load replaces the first */
            free(*(char **)o->dst);
            *(char **)o->dst = NULL;
        }
        if (o->def && set_value(o, o->def, "default") != 0)
            return -1;
        const char *e = getenv(o->env);
        if (e && set_value(o, e, "environment") != 0)
            return -1;
    }
    /* flags */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            char hint[256];
            snprintf(hint, sizeof hint, "settings are --name=value flags (see %s --help)", prog);
            log_kv(LOG_ERROR, "unexpected argument", "S:argument", a, strlen(a),
                   "s:program", prog, "s:hint", hint, NULL);
            return -1;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        const config_opt *o = NULL;
        for (size_t k = 0; k <= n && !o; k++) {
            char flag[96];
            flag_name(opt_at(opts, n, k)->env, flag, sizeof flag);
            if (strlen(flag) == nl && strncmp(flag, name, nl) == 0)
                o = opt_at(opts, n, k);
        }
        if (!o) {
            unknown_flag(opts, n, name, nl, prog);
            return -1;
        }
        const char *v;
        if (eq) {
            v = eq + 1;
        } else if (o->type == CFG_BOOL &&
                   (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)) {
            v = "true";
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            log_kv(LOG_ERROR, "invalid setting", "s:setting", o->env, "s:source", "flag",
                   "s:reason", "the flag needs a value", NULL);
            return -1;
        }
        if (set_value(o, v, "flag") != 0)
            return -1;
    }
    /* after the flags: --config-strict=false relaxes it too */
    if (config_check_env(opts, n, environ, prog, g_strict) > 0 && g_strict)
        return -1;
    return 0;
}

void config_error(const char *fmt, ...)
{
    char why[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    log_kv(LOG_ERROR, "invalid setting", "s:reason", why, NULL);
}

int config_strict(void)
{
    return g_strict;
}

void config_free(const config_opt *opts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (opts[i].type == CFG_STR) {
            free(*(char **)opts[i].dst);
            *(char **)opts[i].dst = NULL;
        }
    }
}
