#include "shard/clientmsg.h"
#include "common/topics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>

const char *clientmsg_code(enum clientmsg_err e)
{
    switch (e) {
    case CLIENTMSG_OK: return "OK";
    case CLIENTMSG_E_INVALID_JSON: return "INVALID_JSON";
    case CLIENTMSG_E_UNKNOWN_TYPE: return "UNKNOWN_TYPE";
    case CLIENTMSG_E_INVALID_CHANNEL: return "INVALID_CHANNEL";
    case CLIENTMSG_E_TOO_MANY: return "TOO_MANY_SUBSCRIPTIONS";
    case CLIENTMSG_E_TOO_LARGE: return "MESSAGE_TOO_LARGE";
    case CLIENTMSG_E_RATE_LIMIT: return "RATE_LIMIT_EXCEEDED";
    case CLIENTMSG_E_TOO_MANY_TOKENS: return "TOO_MANY_TOKENS";
    }
    return "INTERNAL_ERROR";
}

/* Longest prefix of s (at most max bytes) that does not cut a UTF-8
 * sequence, so quoting client input never produces invalid text (a browser
 * fails the connection on an invalid UTF-8 text frame). */
static size_t utf8_clip(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

static enum clientmsg_err fail(clientmsg *m, enum clientmsg_err e,
                               const char *fmt, const char *arg, size_t alen)
{
    if (arg) {
        /* quote at most 64 bytes of client input in the message */
        int n = (int)utf8_clip(arg, alen, 64);
        snprintf(m->errmsg, sizeof(m->errmsg), fmt, n, arg);
    } else {
        snprintf(m->errmsg, sizeof(m->errmsg), "%s", fmt);
    }
    return e;
}

static enum clientmsg_err parse_channels(clientmsg *m, json_t *data,
                                         size_t max_channels)
{
    json_t *arr = json_is_object(data) ? json_object_get(data, "channels")
                                       : NULL;
    if (!json_is_array(arr))
        return fail(m, CLIENTMSG_E_INVALID_JSON,
                    "data.channels must be an array of channel names",
                    NULL, 0);
    size_t n = json_array_size(arr);
    if (n > max_channels) {
        snprintf(m->errmsg, sizeof(m->errmsg),
                 "at most %zu channels per connection", max_channels);
        return CLIENTMSG_E_TOO_MANY;
    }
    m->channels = calloc(n ? n : 1, sizeof(*m->channels));
    if (!m->channels)
        return fail(m, CLIENTMSG_E_INVALID_JSON, "out of memory", NULL, 0);
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_string(v))
            return fail(m, CLIENTMSG_E_INVALID_CHANNEL,
                        "channel names must be strings", NULL, 0);
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        size_t tl, cl;
        const char *cat;
        if (!topics_channel_split(s, len, &tl, &cat, &cl))
            return fail(m, CLIENTMSG_E_INVALID_CHANNEL,
                        "invalid channel \"%.*s\" (want <token>.<category>)",
                        s, len);
        int dup = 0;
        for (size_t j = 0; j < m->nchannels && !dup; j++)
            dup = m->channels[j].len == len &&
                  memcmp(m->channels[j].s, s, len) == 0;
        if (!dup) {
            m->channels[m->nchannels].s = s;
            m->channels[m->nchannels].len = len;
            m->nchannels++;
        }
    }
    return CLIENTMSG_OK;
}

static int int_in(json_t *v, int64_t lo, int64_t hi, int64_t *out)
{
    if (!json_is_integer(v))
        return 0;
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return 0;
    *out = (int64_t)x;
    return 1;
}

static enum clientmsg_err parse_reconnect(clientmsg *m, json_t *data,
                                          size_t max_channels)
{
    json_t *chans = json_is_object(data) ? json_object_get(data, "channels")
                                         : NULL;
    json_t *lo = json_is_object(data) ? json_object_get(data, "last_offset")
                                      : NULL;
    if (!json_is_object(chans) && json_is_object(lo)) {
        /* odin-ws: {"client_id":..,"last_offset":{"odin.trades":1042}} */
        size_t n = json_object_size(lo);
        if (n > max_channels) {
            snprintf(m->errmsg, sizeof(m->errmsg),
                     "at most %zu topics per reconnect", max_channels);
            return CLIENTMSG_E_TOO_MANY;
        }
        m->odinws = 1;
        m->topics = calloc(n ? n : 1, sizeof(*m->topics));
        if (!m->topics)
            return fail(m, CLIENTMSG_E_INVALID_JSON, "out of memory", NULL, 0);
        const char *k;
        json_t *v;
        json_object_foreach(lo, k, v) {
            int64_t off;
            if (!int_in(v, -1, INT64_MAX - 1, &off))
                return fail(m, CLIENTMSG_E_INVALID_JSON,
                            "last_offset values must be integers >= -1",
                            NULL, 0);
            m->topics[m->ntopics].topic = k;
            m->topics[m->ntopics].len = strlen(k);
            m->topics[m->ntopics].offset = off;
            m->ntopics++;
        }
        return CLIENTMSG_OK;
    }
    if (!json_is_object(chans))
        return fail(m, CLIENTMSG_E_INVALID_JSON,
                    "data.channels must be an object of "
                    "\"<channel>\":{\"p\":<partition>,\"seq\":<offset>}",
                    NULL, 0);
    size_t n = json_object_size(chans);
    if (n > max_channels) {
        snprintf(m->errmsg, sizeof(m->errmsg),
                 "at most %zu channels per connection", max_channels);
        return CLIENTMSG_E_TOO_MANY;
    }
    m->channels = calloc(n ? n : 1, sizeof(*m->channels));
    m->positions = calloc(n ? n : 1, sizeof(*m->positions));
    if (!m->channels || !m->positions)
        return fail(m, CLIENTMSG_E_INVALID_JSON, "out of memory", NULL, 0);
    const char *k;
    json_t *v;
    json_object_foreach(chans, k, v) {
        size_t len = strlen(k), tl, cl;
        const char *cat;
        if (!topics_channel_split(k, len, &tl, &cat, &cl))
            return fail(m, CLIENTMSG_E_INVALID_CHANNEL,
                        "invalid channel \"%.*s\" (want <token>.<category>)",
                        k, len);
        int64_t p, seq;
        if (!json_is_object(v) ||
            !int_in(json_object_get(v, "p"), 0, INT32_MAX, &p) ||
            !int_in(json_object_get(v, "seq"), -1, INT64_MAX - 1, &seq))
            return fail(m, CLIENTMSG_E_INVALID_JSON,
                        "position of \"%.*s\" must be {\"p\":<int >= 0>,"
                        "\"seq\":<int >= -1>}", k, len);
        /* JSON object keys are unique after parsing (jansson keeps the
         * last of duplicates), so no dedup is needed here */
        m->channels[m->nchannels].s = k;
        m->channels[m->nchannels].len = len;
        m->positions[m->nchannels].p = (int32_t)p;
        m->positions[m->nchannels].seq = seq;
        m->nchannels++;
    }
    return CLIENTMSG_OK;
}

enum clientmsg_err clientmsg_parse(const char *data, size_t len,
                                   size_t max_channels, clientmsg *m)
{
    memset(m, 0, sizeof(*m));
    json_error_t jerr;
    m->root = json_loadb(data, len, 0, &jerr);
    if (!m->root)
        return fail(m, CLIENTMSG_E_INVALID_JSON, "invalid JSON: %.*s",
                    jerr.text, strlen(jerr.text));
    if (!json_is_object(m->root))
        return fail(m, CLIENTMSG_E_INVALID_JSON,
                    "message must be a JSON object", NULL, 0);
    json_t *t = json_object_get(m->root, "type");
    if (!json_is_string(t))
        return fail(m, CLIENTMSG_E_UNKNOWN_TYPE,
                    "message needs a string \"type\"", NULL, 0);
    const char *ts = json_string_value(t);
    size_t tl = json_string_length(t);
    if (tl == 9 && memcmp(ts, "subscribe", 9) == 0)
        m->type = CLIENTMSG_SUBSCRIBE;
    else if (tl == 11 && memcmp(ts, "unsubscribe", 11) == 0)
        m->type = CLIENTMSG_UNSUBSCRIBE;
    else if (tl == 9 && memcmp(ts, "heartbeat", 9) == 0)
        m->type = CLIENTMSG_HEARTBEAT;
    else if (tl == 9 && memcmp(ts, "reconnect", 9) == 0)
        m->type = CLIENTMSG_RECONNECT;
    else
        return fail(m, CLIENTMSG_E_UNKNOWN_TYPE, "unknown type \"%.*s\"",
                    ts, tl);
    if (m->type == CLIENTMSG_HEARTBEAT)
        return CLIENTMSG_OK;
    if (m->type == CLIENTMSG_RECONNECT)
        return parse_reconnect(m, json_object_get(m->root, "data"),
                               max_channels);
    return parse_channels(m, json_object_get(m->root, "data"), max_channels);
}

void clientmsg_free(clientmsg *m)
{
    json_decref(m->root);
    free(m->channels);
    free(m->positions);
    free(m->topics);
    m->root = NULL;
    m->channels = NULL;
    m->positions = NULL;
    m->topics = NULL;
    m->ntopics = 0;
    m->nchannels = 0;
}

int clientmsg_build_ack(buf *out, enum clientmsg_type type,
                        const clientmsg_chan *ch, size_t n, size_t count)
{
    int sub = type == CLIENTMSG_SUBSCRIBE;
    if (buf_appendf(out, "{\"type\":\"%s\",\"%s\":[",
                    sub ? "subscription_ack" : "unsubscription_ack",
                    sub ? "subscribed" : "unsubscribed") != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if ((i && buf_append(out, ",", 1) != 0) ||
            buf_append_json_str(out, ch[i].s, ch[i].len) != 0)
            return -1;
    }
    return buf_appendf(out, "],\"count\":%zu}", count);
}

int clientmsg_build_error(buf *out, enum clientmsg_err e, const char *msg)
{
    if (buf_appendf(out, "{\"type\":\"error\",\"code\":\"%s\",\"message\":",
                    clientmsg_code(e)) != 0 ||
        buf_append_json_str(out, msg, strlen(msg)) != 0)
        return -1;
    return buf_append(out, "}", 1);
}

int clientmsg_build_pong(buf *out, uint64_t ts_ms)
{
    return buf_appendf(out, "{\"type\":\"pong\",\"ts\":%" PRIu64 "}", ts_ms);
}

int clientmsg_build_reconnect_ack(buf *out, uint64_t replayed,
                                  const clientmsg_chan *ch, size_t n,
                                  size_t count)
{
    if (buf_appendf(out, "{\"type\":\"reconnect_ack\",\"replayed\":%" PRIu64
                    ",\"subscribed\":[", replayed) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if ((i && buf_append(out, ",", 1) != 0) ||
            buf_append_json_str(out, ch[i].s, ch[i].len) != 0)
            return -1;
    }
    return buf_appendf(out, "],\"count\":%zu}", count);
}

int clientmsg_build_reconnect_error(buf *out, const char *code,
                                    const char *msg)
{
    if (buf_append(out, "{\"type\":\"reconnect_error\",\"code\":", 33) != 0 ||
        buf_append_json_str(out, code, strlen(code)) != 0 ||
        buf_append(out, ",\"message\":", 11) != 0 ||
        buf_append_json_str(out, msg, strlen(msg)) != 0)
        return -1;
    return buf_append(out, "}", 1);
}
