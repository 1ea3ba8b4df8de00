#include "shard/fanout.h"
#include "shard/envelope.h"
#include "common/buf.h"

#include <stdlib.h>

struct fanout {
    subs_index *subs;        /* borrowed */
    shard_metrics *m;        /* borrowed */
    unsigned envelope_types;
    fanout_ops ops;
    void *ud;
    buf scratch;             /* the envelope of the record being delivered */
};

fanout *fanout_new(subs_index *subs, shard_metrics *m, unsigned envelope_types,
                   const fanout_ops *ops, void *ud)
{
    fanout *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->subs = subs;
    f->m = m;
    f->envelope_types = envelope_types;
    f->ops = *ops;
    f->ud = ud;
    return f;
}

void fanout_free(fanout *f)
{
    if (!f)
        return;
    buf_free(&f->scratch);
    free(f);
}

static void walking(fanout *f, int on)
{
    if (f->ops.walking)
        f->ops.walking(f->ud, on);
}

static void broadcast(fanout *f, const frame_record *r)
{
    f->m->shard_records_broadcast_total++;
    if (f->ops.n_open(f->ud) == 0) {
        f->m->shard_records_dropped_total[SM_DROP_NO_SUBSCRIBERS]++;
        return;
    }
    ws_chunk *ch = envelope_frame(&f->scratch, r,
                                  (enum envelope_types)f->envelope_types, 0);
    if (!ch) {
        f->m->shard_records_dropped_total[SM_DROP_NOMEM]++;
        return;
    }
    walking(f, 1);
    for (struct shard_client *c = f->ops.next_client(f->ud, NULL), *next; c;
         c = next) {
        next = f->ops.next_client(f->ud, c);   /* a push may close c */
        if (f->ops.push(f->ud, c, ch) == 0)
            f->m->ws_messages_sent_total++;
    }
    walking(f, 0);
    ws_chunk_unref(ch);
}

void fanout_deliver(fanout *f, const frame_record *r)
{
    f->m->shard_records_received_total++;
    if (r->flags & FRAME_REC_ALL_CLIENTS) {
        broadcast(f, r);
        return;
    }
    subs_channel *sc = subs_find_parts(f->subs, r->token, r->token_len,
                                       r->category, r->category_len);
    if (!sc) {
        int known = subs_token_refs(f->subs, r->token, r->token_len) > 0;
        f->m->shard_records_dropped_total[known ? SM_DROP_NO_CHANNEL
                                                : SM_DROP_NO_SUBSCRIBERS]++;
        return;
    }
    ws_chunk *ch = envelope_frame(&f->scratch, r,
                                  (enum envelope_types)f->envelope_types, 0);
    if (!ch) {
        f->m->shard_records_dropped_total[SM_DROP_NOMEM]++;
        return;
    }
    size_t n;
    const subs_member *mem = subs_channel_members(sc, &n);
    walking(f, 1);
    for (size_t i = 0; i < n; i++) {
        struct shard_client *mc = mem[i].owner;
        if (f->ops.resume_filter && f->ops.resume_filter(f->ud, mc, r, ch))
            continue;   /* held for a reconnect replay, or already replayed */
        if (f->ops.push(f->ud, mc, ch) == 0)
            f->m->ws_messages_sent_total++;
    }
    walking(f, 0);
    ws_chunk_unref(ch);
}
