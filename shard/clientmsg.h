/*
 * Client protocol messages (docs/protocol.md): parse one text
 * message from a WebSocket client, and build the JSON replies.  Pure: no
 * I/O, no shard state.
 *
 *   {"type":"subscribe","data":{"channels":["BTC.trade", ...]}}
 *   {"type":"unsubscribe","data":{"channels":[...]}}
 *   {"type":"heartbeat"}
 *   {"type":"reconnect","data":{"channels":{"BTC.trade":{"p":3,"seq":1042}}}}
 *   {"type":"reconnect","data":{"client_id":"..","last_offset":{"odin.trades":1042}}}
 */
#ifndef ODIN_SHARD_CLIENTMSG_H
#define ODIN_SHARD_CLIENTMSG_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "common/buf.h"

enum clientmsg_type {
    CLIENTMSG_NONE = 0,
    CLIENTMSG_SUBSCRIBE,
    CLIENTMSG_UNSUBSCRIBE,
    CLIENTMSG_HEARTBEAT,
    CLIENTMSG_RECONNECT,
};

/* Error codes sent to clients (0 = no error). */
enum clientmsg_err {
    CLIENTMSG_OK = 0,
    CLIENTMSG_E_INVALID_JSON,       /* "INVALID_JSON" */
    CLIENTMSG_E_UNKNOWN_TYPE,       /* "UNKNOWN_TYPE" */
    CLIENTMSG_E_INVALID_CHANNEL,    /* "INVALID_CHANNEL" */
    CLIENTMSG_E_TOO_MANY,           /* "TOO_MANY_SUBSCRIPTIONS" */
    CLIENTMSG_E_TOO_LARGE,          /* "MESSAGE_TOO_LARGE" */
    CLIENTMSG_E_RATE_LIMIT,         /* "RATE_LIMIT_EXCEEDED" */
    CLIENTMSG_E_TOO_MANY_TOKENS,    /* "TOO_MANY_TOKENS": SHARD_MAX_TOKENS */
};

/* Wire name of an error code ("INVALID_JSON", ...). */
const char *clientmsg_code(enum clientmsg_err e);

typedef struct clientmsg_chan {
    const char *s;      /* points into the parsed JSON (owned by the msg) */
    size_t len;
} clientmsg_chan;

/* reconnect: position of channels[i] (channel form) */
typedef struct clientmsg_pos {
    int32_t p;               /* Kafka partition, >= 0 */
    int64_t seq;             /* last offset the client has; >= -1 */
} clientmsg_pos;

/* reconnect, odin-ws form: one entry of data.last_offset */
typedef struct clientmsg_topic_off {
    const char *topic;       /* points into the parsed JSON */
    size_t len;
    int64_t offset;          /* last offset the client has; >= -1 */
} clientmsg_topic_off;

typedef struct clientmsg {
    enum clientmsg_type type;
    size_t nchannels;        /* subscribe/unsubscribe/reconnect: deduplicated, valid */
    clientmsg_chan *channels;
    clientmsg_pos *positions;      /* reconnect (channel form): nchannels */
    int odinws;                    /* reconnect in odin-ws's last_offset form */
    size_t ntopics;
    clientmsg_topic_off *topics;   /* odin-ws form */
    json_t *root;
    char errmsg[160];        /* human-readable reason when parse fails */
} clientmsg;

/*
 * Parse one message.  `max_channels` caps the channels one message may list
 * (more is CLIENTMSG_E_TOO_MANY).  Every channel must be a valid
 * "<token>.<category>" string (else CLIENTMSG_E_INVALID_CHANNEL; nothing is
 * returned for a partially valid list).  Returns CLIENTMSG_OK with *m
 * filled, or an error code with m->errmsg set.
 * reconnect: data.channels is an object of "<channel>":{"p":int,"seq":int}
 * (p >= 0, seq >= -1; anything else is INVALID_JSON), or (odin-ws) data has
 * a last_offset object of "<topic>":int; at most max_channels entries.  Always call
 * clientmsg_free(m) afterwards (also after an error).
 */
enum clientmsg_err clientmsg_parse(const char *data, size_t len,
                                   size_t max_channels, clientmsg *m);
void clientmsg_free(clientmsg *m);

/* Replies (append JSON text to out; 0 or -1 on ENOMEM). */
int clientmsg_build_ack(buf *out, enum clientmsg_type type,
                        const clientmsg_chan *ch, size_t n, size_t count);
int clientmsg_build_error(buf *out, enum clientmsg_err e, const char *msg);
int clientmsg_build_pong(buf *out, uint64_t ts_ms);
/* {"type":"reconnect_ack","replayed":N,"subscribed":[..],"count":N} */
int clientmsg_build_reconnect_ack(buf *out, uint64_t replayed,
                                  const clientmsg_chan *ch, size_t n,
                                  size_t count);
/* {"type":"reconnect_error","code":"..","message":".."} */
int clientmsg_build_reconnect_error(buf *out, const char *code,
                                    const char *msg);

#endif
