#include "shard/envelope.h"
#include "common/topics.h"

#include <inttypes.h>
#include <string.h>

int envelope_types_parse(const char *s)
{
    if (s && strcmp(s, "legacy") == 0)
        return ENVELOPE_LEGACY;
    if (s && strcmp(s, "category") == 0)
        return ENVELOPE_CATEGORY;
    return -1;
}

int envelope_json(buf *out, const frame_record *r, enum envelope_types types,
                  unsigned flags)
{
    int prio = 1;
    const char *type = "price:update";
    if (flags & ENVELOPE_F_ODINWS)
        type = "replay:message";
    else if (types == ENVELOPE_CATEGORY)
        type = topics_msg_type(r->category, r->category_len, &prio);
    if (buf_appendf(out, "{\"seq\":%" PRId64 ",\"p\":%" PRId32
                    ",\"ts\":%" PRId64 ",\"type\":",
                    r->offset, r->partition, r->timestamp_ms) != 0)
        return -1;
    if (type) {
        if (buf_append_json_str(out, type, strlen(type)) != 0)
            return -1;
    } else {
        /* unknown category: "<category>:update" */
        char t[96];
        size_t cl = r->category_len > 80 ? 80 : r->category_len;
        memcpy(t, r->category, cl);
        memcpy(t + cl, ":update", 7);
        if (buf_append_json_str(out, t, cl + 7) != 0)
            return -1;
    }
    if (buf_appendf(out, ",\"priority\":%d,\"channel\":", prio) != 0)
        return -1;
    /* channel "<token>.<category>": one escaped string */
    size_t chl = r->token_len + 1 + r->category_len;
    char small[160];
    char *ch = small;
    buf tmp = { 0 };
    if (chl > sizeof(small)) {
        if (buf_reserve(&tmp, chl) != 0)
            return -1;
        ch = tmp.data;
    }
    memcpy(ch, r->token, r->token_len);
    ch[r->token_len] = '.';
    memcpy(ch + r->token_len + 1, r->category, r->category_len);
    int rc = buf_append_json_str(out, ch, chl);
    buf_free(&tmp);
    if (rc != 0 || ((flags & (ENVELOPE_F_REPLAY | ENVELOPE_F_ODINWS)) &&
                    buf_append(out, ",\"replay\":true", 14) != 0) ||
        buf_append(out, ",\"data\":", 8) != 0)
        return -1;
    if (r->value_len == 0)
        rc = buf_append(out, "null", 4);
    else
        rc = buf_append(out, r->value, r->value_len);
    return rc != 0 ? -1 : buf_append(out, "}", 1);
}

ws_chunk *envelope_frame(buf *scratch, const frame_record *r,
                         enum envelope_types types, unsigned flags)
{
    buf_reset(scratch);
    if (envelope_json(scratch, r, types, flags) != 0)
        return NULL;
    ws_chunk *ch = ws_chunk_frame(WS_OP_TEXT, scratch->data, scratch->len);
    /* live records carry their timestamp for shard_delivery_latency_seconds;
     * a replay's age is not a delivery latency */
    if (ch && !(flags & (ENVELOPE_F_REPLAY | ENVELOPE_F_ODINWS)))
        ch->ts_ms = r->timestamp_ms;
    return ch;
}
