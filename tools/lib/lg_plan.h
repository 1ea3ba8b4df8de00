/*
 * odin-loadgen connection plan: how N connections are spread over worker
 * processes, target endpoints and loopback source addresses, and which
 * channels each connection subscribes to.  Pure functions, no I/O.
 *
 * Connection numbering is global (0..connections-1) so the result does not
 * depend on how many workers there are: worker w gets the contiguous range
 * [first, first+count); connection i goes to target i % ntargets and binds
 * source address (i / ntargets) % naddrs, so every (source, target) pair
 * gets an equal share of the ephemeral port range.
 */
#ifndef ODIN_COMMON_LG_PLAN_H
#define ODIN_COMMON_LG_PLAN_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

/* Default connections per worker when LG_PROCESSES is 0 (auto). */
#define LG_PLAN_DEFAULT_PER_WORKER 15000
/* fds a worker needs besides its connections (pipe, epoll, signals, stdio). */
#define LG_PLAN_FD_RESERVE 64
#define LG_PLAN_MAX_WORKERS 256
#define LG_PLAN_MAX_ADDRS 256

/* Error codes of lg_plan_make (negative). */
#define LG_PLAN_EINVAL    (-1)  /* connections < 0, no targets, ... */
#define LG_PLAN_EFDBUDGET (-2)  /* a worker would need more fds than allowed */
#define LG_PLAN_EPORTS    (-3)  /* a (source, target) pair needs more ports
                                   than the ephemeral range holds */
#define LG_PLAN_EWORKERS  (-4)  /* more than LG_PLAN_MAX_WORKERS */

typedef struct lg_plan_in {
    long connections;     /* total */
    long processes;       /* 0 = ceil(connections / 15000), at least 1 */
    double rate;          /* new connections / s in total; 0 = unlimited */
    size_t ntargets;      /* >= 1 */
    size_t naddrs;        /* 0 = let the kernel pick (counts as one) */
    long fd_limit;        /* per-process hard fd limit (e.g. 20000) */
    long port_range;      /* ephemeral ports per (source, target); 0 = no check */
} lg_plan_in;

typedef struct lg_plan_worker {
    long first;           /* first global connection index */
    long count;           /* connections of this worker */
    double rate;          /* its share of the rate (0 = unlimited) */
    long fds_needed;      /* count + LG_PLAN_FD_RESERVE */
} lg_plan_worker;

typedef struct lg_plan {
    long nworkers;
    lg_plan_worker w[LG_PLAN_MAX_WORKERS];
    long max_per_pair;    /* largest connection count of a (source, target) pair */
} lg_plan;

/* Compute the plan.  Returns 0 or an LG_PLAN_E* code; `why` (may be NULL)
 * gets a one-line explanation for errors. */
int lg_plan_make(const lg_plan_in *in, lg_plan *out, char *why, size_t whylen);

/* Target and source-address index of global connection i. */
size_t lg_plan_target_of(long i, size_t ntargets);
size_t lg_plan_addr_of(long i, size_t ntargets, size_t naddrs);

/* Number of connections among 0..total-1 that use (target t, source a). */
long lg_plan_pair_count(long total, size_t ntargets, size_t naddrs, size_t t, size_t a);

/*
 * Parse IPv4 source addresses: a comma list of addresses and inclusive
 * ranges "127.0.0.1-127.0.0.8" (any octet may differ; the range is numeric).
 * Empty string -> *n = 0.  Returns 0, or -1 on a syntax error, an inverted
 * range, or more than `max` addresses.
 */
int lg_addrs_parse(const char *s, struct in_addr *out, size_t max, size_t *n);

/* splitmix64: small, seedable PRNG used for masks, keys and channel picks. */
uint64_t lg_rand_next(uint64_t *state);

/* ---- channels -------------------------------------------------------- */

enum lg_mode { LG_MODE_ALL, LG_MODE_SINGLE, LG_MODE_RANDOM };
int lg_mode_parse(const char *s, enum lg_mode *out);   /* 0 or -1 */
const char *lg_mode_name(enum lg_mode m);

#define LG_MAX_CHANNELS_PER_CONN 128

/*
 * The channel universe: every token x category, channel id
 * = token_index * ncats + category_index, name "<token>.<category>".
 * Built once per process; lookup by name is a hash probe.
 */
typedef struct lg_chanset lg_chanset;

/* Split the comma lists (empty items skipped).  Returns NULL on ENOMEM,
 * no tokens or no categories.  Free with lg_chanset_free. */
lg_chanset *lg_chanset_new(const char *tokens_csv, const char *cats_csv);
void lg_chanset_free(lg_chanset *cs);
size_t lg_chanset_count(const lg_chanset *cs);
size_t lg_chanset_ntokens(const lg_chanset *cs);
size_t lg_chanset_ncats(const lg_chanset *cs);
/* Name of channel id (NUL-terminated, owned by the set) and its length. */
const char *lg_chanset_name(const lg_chanset *cs, uint32_t id, size_t *len);
/* Channel id for a name, or -1 if not in the set. */
long lg_chanset_find(const lg_chanset *cs, const char *name, size_t len);

/*
 * Channels of global connection i, written sorted ascending into
 * ids[0..return).  `k` is the random-mode count (capped at the universe
 * and LG_MAX_CHANNELS_PER_CONN).
 *  - single: one channel, token i % ntokens, category (i / ntokens) % ncats;
 *  - all: every channel when there are at most 128, otherwise a window of
 *    128 consecutive ids starting at (i * 128) % total, so connections
 *    together still cover the whole set;
 *  - random: k distinct ids, uniformly, from a PRNG seeded with
 *    (seed, i), so the choice does not depend on the worker split.
 * `ids` must hold LG_MAX_CHANNELS_PER_CONN entries.
 */
size_t lg_chanset_pick(const lg_chanset *cs, enum lg_mode mode, size_t k,
                       uint64_t seed, long i, uint32_t *ids);

#endif
