#include "shard/subs.h"
#include "shard/map.h"
#include "common/topics.h"

#include <stdlib.h>
#include <string.h>

typedef struct subs_token {
    shard_map_node node;
    size_t refs;            /* subscriptions over all its channels */
    char name[];
} subs_token;

struct subs_channel {
    shard_map_node node;
    subs_token *tok;
    /* m[] is what fan-out reads (owner, no extra pointer chase); mc[] holds
     * each member's subs_conn to fix its back-reference after a swap. */
    subs_member *m;
    subs_conn **mc;
    uint32_t n, cap;
    uint32_t len;
    char name[];
};

struct subs_index {
    shard_map channels;
    shard_map tokens;
    subs_token_cb cb;
    void *ud;
    size_t total;
};

subs_index *subs_new(subs_token_cb cb, void *ud)
{
    subs_index *ix = calloc(1, sizeof(*ix));
    if (!ix)
        return NULL;
    ix->cb = cb;
    ix->ud = ud;
    return ix;
}

void subs_free(subs_index *ix)
{
    if (!ix)
        return;
    size_t it = 0;
    shard_map_node *cur = NULL, *n;
    while ((n = shard_map_next(&ix->channels, &it, &cur))) {
        subs_channel *ch = SHARD_MAP_ENTRY(n, subs_channel, node);
        free(ch->m);
        free(ch->mc);
        free(ch);
    }
    it = 0;
    cur = NULL;
    while ((n = shard_map_next(&ix->tokens, &it, &cur)))
        free(SHARD_MAP_ENTRY(n, subs_token, node));
    shard_map_clear(&ix->channels);
    shard_map_clear(&ix->tokens);
    free(ix);
}

subs_channel *subs_find(const subs_index *ix, const char *ch, size_t len)
{
    shard_map_node *n = shard_map_find(&ix->channels, ch, len);
    return n ? SHARD_MAP_ENTRY(n, subs_channel, node) : NULL;
}

subs_channel *subs_find_parts(const subs_index *ix, const char *token,
                              size_t tlen, const char *cat, size_t clen)
{
    char key[160];
    if (tlen + 1 + clen > sizeof(key))
        return NULL;                 /* longer than any valid channel */
    memcpy(key, token, tlen);
    key[tlen] = '.';
    memcpy(key + tlen + 1, cat, clen);
    return subs_find(ix, key, tlen + 1 + clen);
}

static subs_token *token_find(const subs_index *ix, const char *t, size_t len)
{
    shard_map_node *n = shard_map_find(&ix->tokens, t, len);
    return n ? SHARD_MAP_ENTRY(n, subs_token, node) : NULL;
}

static int link_index(const subs_conn *c, const subs_channel *ch)
{
    for (uint32_t i = 0; i < c->n; i++)
        if (c->links[i].ch == ch)
            return (int)i;
    return -1;
}

int subs_has(const subs_index *ix, const subs_conn *c, const char *ch,
             size_t len)
{
    subs_channel *x = subs_find(ix, ch, len);
    return x && link_index(c, x) >= 0;
}

static int grow(void **arr, uint32_t *cap, uint32_t need, size_t elt)
{
    if (need <= *cap)
        return 0;
    uint32_t nc = *cap ? *cap : 2;
    while (nc < need)
        nc *= 2;
    void *p = realloc(*arr, (size_t)nc * elt);
    if (!p)
        return -1;
    *arr = p;
    *cap = nc;
    return 0;
}

static int channel_grow(subs_channel *ch, uint32_t need)
{
    if (need <= ch->cap)
        return 0;
    uint32_t nc = ch->cap ? ch->cap * 2 : 2;
    while (nc < need)
        nc *= 2;
    subs_member *m = realloc(ch->m, (size_t)nc * sizeof(*m));
    if (!m)
        return -1;
    ch->m = m;
    subs_conn **mc = realloc(ch->mc, (size_t)nc * sizeof(*mc));
    if (!mc)
        return -1;           /* m grew, cap unchanged: still consistent */
    ch->mc = mc;
    ch->cap = nc;
    return 0;
}

int subs_add(subs_index *ix, subs_conn *c, void *owner, const char *name,
             size_t len)
{
    size_t tlen, clen;
    const char *cat;
    if (!topics_channel_split(name, len, &tlen, &cat, &clen))
        return SUBS_E_INVALID;

    subs_channel *ch = subs_find(ix, name, len);
    if (ch && link_index(c, ch) >= 0)
        return SUBS_EXISTS;
    if (grow((void **)&c->links, &c->cap, c->n + 1, sizeof(*c->links)) != 0)
        return SUBS_E_NOMEM;

    subs_token *tok = NULL, *newtok = NULL;
    subs_channel *newch = NULL;
    if (!ch) {
        tok = token_find(ix, name, tlen);
        if (!tok) {
            newtok = calloc(1, sizeof(*newtok) + tlen + 1);
            if (!newtok)
                return SUBS_E_NOMEM;
            memcpy(newtok->name, name, tlen);
            newtok->node.key = newtok->name;
            newtok->node.klen = (uint32_t)tlen;
            tok = newtok;
        }
        newch = calloc(1, sizeof(*newch) + len + 1);
        if (!newch)
            goto nomem;
        memcpy(newch->name, name, len);
        newch->len = (uint32_t)len;
        newch->node.key = newch->name;
        newch->node.klen = (uint32_t)len;
        newch->tok = tok;
        ch = newch;
    }
    if (channel_grow(ch, ch->n + 1) != 0)
        goto nomem;
    if (newtok && shard_map_insert(&ix->tokens, &newtok->node) != 0)
        goto nomem;
    if (newch && shard_map_insert(&ix->channels, &newch->node) != 0) {
        if (newtok)
            shard_map_remove(&ix->tokens, &newtok->node);
        goto nomem;
    }

    uint32_t pos = ch->n++;
    uint32_t li = c->n++;
    ch->m[pos].owner = owner;
    ch->m[pos].link = li;
    ch->mc[pos] = c;
    c->links[li].ch = ch;
    c->links[li].pos = pos;
    ix->total++;
    if (ch->tok->refs++ == 0 && ix->cb)
        ix->cb(ix->ud, ch->tok->name, ch->tok->node.klen, 1);
    return SUBS_ADDED;

nomem:
    if (newch) {
        free(newch->m);
        free(newch->mc);
        free(newch);
    }
    free(newtok);
    return SUBS_E_NOMEM;
}

/* Remove link i of c, keeping both arrays dense and back-references right. */
static void remove_link(subs_index *ix, subs_conn *c, uint32_t i)
{
    subs_channel *ch = c->links[i].ch;
    uint32_t pos = c->links[i].pos;

    uint32_t last = ch->n - 1;
    if (pos != last) {
        ch->m[pos] = ch->m[last];
        ch->mc[pos] = ch->mc[last];
        ch->mc[pos]->links[ch->m[pos].link].pos = pos;
    }
    ch->n--;

    uint32_t lastl = c->n - 1;
    if (i != lastl) {
        c->links[i] = c->links[lastl];
        subs_channel *mv = c->links[i].ch;
        mv->m[c->links[i].pos].link = i;
    }
    c->n--;
    ix->total--;

    subs_token *tok = ch->tok;
    if (ch->n == 0) {
        shard_map_remove(&ix->channels, &ch->node);
        free(ch->m);
        free(ch->mc);
        free(ch);
    }
    if (--tok->refs == 0) {
        shard_map_remove(&ix->tokens, &tok->node);
        if (ix->cb)
            ix->cb(ix->ud, tok->name, tok->node.klen, 0);
        free(tok);
    }
}

int subs_remove(subs_index *ix, subs_conn *c, const char *name, size_t len)
{
    subs_channel *ch = subs_find(ix, name, len);
    if (!ch)
        return 0;
    int i = link_index(c, ch);
    if (i < 0)
        return 0;
    remove_link(ix, c, (uint32_t)i);
    return 1;
}

void subs_remove_all(subs_index *ix, subs_conn *c)
{
    while (c->n > 0)
        remove_link(ix, c, c->n - 1);
    free(c->links);
    c->links = NULL;
    c->cap = 0;
}

const subs_member *subs_channel_members(const subs_channel *ch, size_t *n)
{
    *n = ch->n;
    return ch->m;
}

const char *subs_channel_name(const subs_channel *ch, size_t *len)
{
    *len = ch->len;
    return ch->name;
}

size_t subs_token_refs(const subs_index *ix, const char *token, size_t len)
{
    subs_token *t = token_find(ix, token, len);
    return t ? t->refs : 0;
}

void subs_foreach_token(const subs_index *ix,
                        void (*fn)(void *ud, const char *tok, size_t len),
                        void *ud)
{
    size_t it = 0;
    shard_map_node *cur = NULL, *n;
    while ((n = shard_map_next(&ix->tokens, &it, &cur))) {
        subs_token *t = SHARD_MAP_ENTRY(n, subs_token, node);
        fn(ud, t->name, t->node.klen);
    }
}

void subs_foreach_channel(const subs_index *ix,
                          void (*fn)(void *ud, const char *ch, size_t len,
                                     size_t subscribers),
                          void *ud)
{
    size_t it = 0;
    shard_map_node *cur = NULL, *n;
    while ((n = shard_map_next(&ix->channels, &it, &cur))) {
        subs_channel *c = SHARD_MAP_ENTRY(n, subs_channel, node);
        fn(ud, c->name, c->len, c->n);
    }
}

size_t subs_channels_count(const subs_index *ix) { return ix->channels.n; }
size_t subs_tokens_count(const subs_index *ix) { return ix->tokens.n; }
size_t subs_total(const subs_index *ix) { return ix->total; }
