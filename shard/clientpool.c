/*
 * The pool of the shard's clients (contract in shard/client.h): the live
 * list, the counts, the flush list, the graveyard and its reaper, and the
 * state every client shares.
 */
#include "shard/client_private.h"
#include "common/clock.h"

#include <stdlib.h>
#include <string.h>

static void on_flush(evutil_socket_t fd, short what, void *arg);
static void on_reap(evutil_socket_t fd, short what, void *arg);

client_pool *client_pool_new(shard_ctx *ctx, const client_ops *ops, void *ud,
                             const client_io *io)
{
    const shard_settings *s = ctx->set;
    client_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->ctx = ctx;
    p->ops = *ops;
    p->ud = ud;
    if (io)
        p->io = *io;
    p->log_rl.per_sec = 20;
    p->warn_rl.per_sec = 5;
    p->ping = ws_chunk_frame(WS_OP_PING, NULL, 0);
    p->flush_ev = event_new(ctx->base, -1, 0, on_flush, p);
    p->reap_ev = event_new(ctx->base, -1, 0, on_reap, p);
    p->parsers = ws_parser_set_new((uint64_t)s->partial_budget);
    if (!p->ping || !p->flush_ev || !p->reap_ev || !p->parsers)
        goto err;
    if (s->ws_deflate &&
        !(p->deflate = ws_deflate_new((int)s->ws_deflate_level,
                                      (size_t)s->ws_deflate_min_size)))
        goto err;
    return p;
err:
    client_pool_free(p);
    return NULL;
}

void client_pool_free(client_pool *p)
{
    if (!p)
        return;
    while (p->live)
        client_kill(p->live, "shutdown");
    p->flush_head = p->flush_tail = NULL;
    while (p->grave) {
        shard_client *c = p->grave;
        p->grave = c->next;
        c->flags &= (uint16_t)~CLF_IN_FLUSH;
        client_free(c);
    }
    if (p->flush_ev)
        event_free(p->flush_ev);
    if (p->reap_ev)
        event_free(p->reap_ev);
    ws_chunk_unref(p->ping);
    ws_deflate_free(p->deflate);
    ws_parser_set_free(p->parsers);   /* after the clients: their parsers count in it */
    buf_free(&p->scratch);
    free(p);
}

const client_counts *client_pool_counts(const client_pool *p)
{
    return &p->n;
}

const ws_parser_set *client_pool_parsers(const client_pool *p)
{
    return p->parsers;
}

shard_client *client_pool_next(const client_pool *p, const shard_client *prev)
{
    return prev ? prev->next : p->live;
}

shard_client *client_pool_find(const client_pool *p, uint64_t id)
{
    shard_client *c = p->live;   /* descending ids: stop once below */
    while (c && c->id > id)
        c = c->next;
    return c && c->id == id ? c : NULL;
}

void client_pool_walking(client_pool *p, int on)
{
    p->in_fanout = on;
}

void client_pool_tick(client_pool *p, uint64_t now)
{
    shard_client *c = p->live;
    while (c) {
        shard_client *next = c->next;
        client_tick(c, now);
        c = next;
    }
}

void client_pool_shutdown(client_pool *p, void (*cb)(void *), void *ud)
{
    p->on_drained = cb;
    p->drained_ud = ud;
    shard_client *c = p->live;
    while (c) {
        shard_client *next = c->next;
        if (c->state == CL_OPEN)
            client_close(c, 1001, "server shutting down");
        else if (c->state == CL_HTTP)
            client_kill(c, "shutting down");
        c = next;
    }
    event_active(p->reap_ev, EV_TIMEOUT, 1);
}

/* ---- flush list and graveyard (shard/client_private.h) ----------------- */

void pool_schedule_flush(client_pool *p, shard_client *c)
{
    if (c->flags & CLF_IN_FLUSH)
        return;
    c->flags |= CLF_IN_FLUSH;
    c->flush_next = NULL;
    if (p->flush_tail)
        p->flush_tail->flush_next = c;
    else
        p->flush_head = c;
    p->flush_tail = c;
    if (p->flush_head == c)
        event_active(p->flush_ev, EV_TIMEOUT, 1);
}

void pool_bury(client_pool *p, shard_client *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        p->live = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = NULL;
    c->next = p->grave;
    p->grave = c;
    event_active(p->reap_ev, EV_TIMEOUT, 1);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    client_pool *p = arg;
    shard_client *c = p->flush_head;
    p->flush_head = p->flush_tail = NULL;
    int dead = 0;
    while (c) {
        shard_client *next = c->flush_next;
        c->flush_next = NULL;
        c->flags &= (uint16_t)~CLF_IN_FLUSH;
        if (c->state == CL_DEAD) {
            dead = 1;
        } else {
            if (c->state == CL_CLOSING)   /* deferred by a fan-out */
                subs_remove_all(p->ctx->subs, &c->subs);
            client_flush(c);
        }
        c = next;
    }
    if (dead)
        event_active(p->reap_ev, EV_TIMEOUT, 1);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    client_pool *p = arg;
    shard_client **pp = &p->grave;
    while (*pp) {
        shard_client *c = *pp;
        if (c->flags & CLF_IN_FLUSH) {   /* on_flush still references it */
            pp = &c->next;
            continue;
        }
        *pp = c->next;
        client_free(c);
    }
    if (p->on_drained && !p->live) {
        void (*cb)(void *) = p->on_drained;
        p->on_drained = NULL;
        cb(p->drained_ud);
    }
}
