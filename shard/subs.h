/*
 * Local subscription index: channel -> connections, connection -> channels,
 * token -> number of local subscriptions.  Pure data structure, no I/O.
 *
 * A connection embeds a zeroed subs_conn and passes an opaque `owner`
 * pointer (the client) that is what fan-out gets back from
 * subs_channel_members().  Both directions are kept in arrays with
 * back-references, so add/remove are O(1) (plus the hash lookup) and a
 * channel's subscribers are one contiguous array for fan-out.
 *
 * The token callback fires when a token gets its first local subscription
 * (added = 1, on any category) and when its last one goes (added = 0); the
 * shard uses it to drive Redis registration.  The callback must not modify
 * the index.
 *
 * Do not add or remove subscriptions while iterating a member array.
 */
#ifndef ODIN_SHARD_SUBS_H
#define ODIN_SHARD_SUBS_H

#include <stddef.h>
#include <stdint.h>

typedef struct subs_index subs_index;
typedef struct subs_channel subs_channel;

/* One subscriber of a channel; `link` is its slot in the owner's links. */
typedef struct subs_member {
    void *owner;
    uint32_t link;
} subs_member;

/* One channel of a connection; `pos` is its slot in the channel's members. */
typedef struct subs_link {
    subs_channel *ch;
    uint32_t pos;
} subs_link;

/* Per-connection state; zero-initialise.  Freed by subs_remove_all(). */
typedef struct subs_conn {
    subs_link *links;
    uint32_t n, cap;
} subs_conn;

typedef void (*subs_token_cb)(void *ud, const char *token, size_t len,
                              int added);

/* Returns NULL on ENOMEM.  cb may be NULL. */
subs_index *subs_new(subs_token_cb cb, void *ud);

/* Frees channels and tokens; connections' link arrays are NOT freed (call
 * subs_remove_all for each first).  NULL is a no-op. */
void subs_free(subs_index *ix);

/* Status codes */
#define SUBS_ADDED     1
#define SUBS_EXISTS    0
#define SUBS_E_NOMEM (-1)
#define SUBS_E_INVALID (-2)   /* not a valid "<token>.<category>" */

/* Subscribe conn (owner) to channel.  Returns SUBS_ADDED, SUBS_EXISTS or a
 * negative SUBS_E_* code (index unchanged). */
int subs_add(subs_index *ix, subs_conn *c, void *owner, const char *ch,
             size_t len);

/* Unsubscribe.  Returns 1 if removed, 0 if conn was not subscribed. */
int subs_remove(subs_index *ix, subs_conn *c, const char *ch, size_t len);

/* Remove every subscription of conn and free its link array. */
void subs_remove_all(subs_index *ix, subs_conn *c);

/* Is conn subscribed to channel? */
int subs_has(const subs_index *ix, const subs_conn *c, const char *ch,
             size_t len);

static inline uint32_t subs_conn_count(const subs_conn *c) { return c->n; }

/* Channel lookup by full name or by its parts (no allocation). */
subs_channel *subs_find(const subs_index *ix, const char *ch, size_t len);
subs_channel *subs_find_parts(const subs_index *ix, const char *token,
                              size_t tlen, const char *cat, size_t clen);

/* The channel's subscribers; valid until the index is next modified. */
const subs_member *subs_channel_members(const subs_channel *ch, size_t *n);
const char *subs_channel_name(const subs_channel *ch, size_t *len);

/* Number of local subscriptions of token (0 if none). */
size_t subs_token_refs(const subs_index *ix, const char *token, size_t len);

/* Call fn for every token with at least one subscription. */
void subs_foreach_token(const subs_index *ix,
                        void (*fn)(void *ud, const char *tok, size_t len),
                        void *ud);

/* Call fn for every channel with its subscriber count.  fn must not modify
 * the index. */
void subs_foreach_channel(const subs_index *ix,
                          void (*fn)(void *ud, const char *ch, size_t len,
                                     size_t subscribers),
                          void *ud);

size_t subs_channels_count(const subs_index *ix);
size_t subs_tokens_count(const subs_index *ix);
size_t subs_total(const subs_index *ix);  /* (conn, channel) pairs */

#endif
