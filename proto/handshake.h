/*
 * Router <-> shard link handshake (spec: docs/protocol.md, "Handshake").
 * One state machine used by both ends; it takes decoded frames and appends
 * the frames to send to a buffer.  No I/O, no clock: the caller owns the
 * socket and the timeout.
 *
 *   router (dials)                              shard (accepts)
 *   HELLO_r [1, 2, "router", router_id, max,    HELLO_s [1, 2, "shard", shard_id,
 *            nonce_r, target, endpoint]  --><--          max, nonce_s]
 *   checks HELLO_s: id == target
 *   AUTH_r = MAC("router", Hr, Hs)       -->
 *                                               checks HELLO_r: target == own id,
 *                                               endpoint is one of its own;
 *                                               verifies AUTH_r, only then:
 *                                       <--     AUTH_s = MAC("shard", Hr, Hs, AUTH_r)
 *   verifies AUTH_s: link up                    link up
 *
 * Hr / Hs are the two HELLO payloads byte for byte as sent (the msgpack
 * value, without the length header), so every field of both HELLOs, the
 * nonces included, is covered, and a relay that changes one byte (or
 * splices two connections) makes the MAC fail:
 *
 *   MAC(role, ...) = HMAC-SHA256(secret, "odin-link-v2" 0x00 role 0x00
 *                                be32(|Hr|) Hr be32(|Hs|) Hs [AUTH_r])
 *
 * The dialer proves first: it has the shard's fresh nonce by then, and the
 * shard, which reveals its proof only to a router that proved knowledge of
 * the secret over this very transcript, never answers a peer that has not.
 * Without a secret (both sides) nothing is MACed and the link is up once
 * the HELLOs passed their checks; a secret on one side only is refused by
 * both.
 */
#ifndef ODIN_PROTO_HANDSHAKE_H
#define ODIN_PROTO_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "proto/frame.h"

enum handshake_role { HANDSHAKE_ROUTER = 0, HANDSHAKE_SHARD = 1 };

/* Why a handshake was refused (a metric label each). */
enum handshake_refusal {
    HANDSHAKE_R_NONE = 0,
    HANDSHAKE_R_VERSION,     /* the peer speaks another FRAME_PROTO_VERSION */
    HANDSHAKE_R_PROTOCOL,    /* wrong role, missing field, frame out of order */
    HANDSHAKE_R_IDENTITY,    /* not the shard meant / not our target or endpoint:
                                a misrouted or relayed link */
    HANDSHAKE_R_AUTH,        /* MAC does not verify, or a secret on one side only */
    HANDSHAKE_R_NOMEM,
};

/* Results of handshake_on_frame. */
#define HANDSHAKE_MORE 0       /* waiting for the peer's next frame */
#define HANDSHAKE_DONE 1       /* link up: deliveries may flow */
#define HANDSHAKE_REFUSED (-1) /* close the connection; see _refusal / _reason */

typedef struct handshake_cfg {
    enum handshake_role role;
    const char *id;             /* our router id or shard id */
    uint32_t max_frame;         /* largest payload we accept (in our HELLO) */
    const char *secret;         /* SHARD_INGRESS_SECRET; NULL or "": no AUTH */
    const char *target;         /* router: the shard id it means to reach */
    const char *endpoint;       /* router: the endpoint it dialed */
    const char *const *endpoints; /* shard: the endpoints it is reached at
                                     (NULL-ended); a router HELLO naming
                                     another one is refused */
    const uint8_t *nonce;       /* FRAME_NONCE_LEN bytes (tests); NULL: random */
} handshake_cfg;

typedef struct handshake handshake;

/* Everything in cfg is copied.  NULL on ENOMEM, when no random nonce could
 * be drawn, or when our HELLO would exceed FRAME_HANDSHAKE_MAX. */
handshake *handshake_new(const handshake_cfg *cfg);
void handshake_free(handshake *h);   /* NULL is a no-op; wipes the secret */

/* Append our HELLO frame to out (once, first).  0 or -1 (ENOMEM). */
int handshake_start(handshake *h, buf *out);

/*
 * Feed one frame received from the peer (m->raw must be its payload, as
 * frame_decoder_next gives it).  Appends what we must send (an AUTH) to
 * out.  Returns HANDSHAKE_MORE, HANDSHAKE_DONE, or HANDSHAKE_REFUSED (and
 * every later call returns it too).  Must not be called after DONE.
 */
int handshake_on_frame(handshake *h, const frame_msg *m, buf *out);

enum handshake_refusal handshake_refusal(const handshake *h);
/* Why it was refused, for the log ("" if not refused).  Owned by h. */
const char *handshake_reason(const handshake *h);
/* The peer's id from its HELLO ("" before it), at most 255 bytes, and the
 * largest payload it accepts (0 before its HELLO). */
const char *handshake_peer_id(const handshake *h);
uint32_t handshake_peer_max_frame(const handshake *h);
/* 1 if we sent our AUTH and wait for the peer's (the router, after the
 * shard's HELLO): a peer that closes now refused our proof.  Else 0. */
int handshake_proved(const handshake *h);
/* 1 if the link was authenticated with the secret, else 0. */
int handshake_authenticated(const handshake *h);
/* Short name of a refusal ("version", "protocol", "identity", "auth",
 * "nomem", "none"). */
const char *handshake_refusal_name(enum handshake_refusal r);

/*
 * The MAC `prover` sends over the transcript (Hr, Hs: HELLO payloads as
 * sent; router_mac: AUTH_r, only for the shard's MAC, else NULL).  Exposed
 * for tests.  0 or -1.
 */
int handshake_mac(const char *secret, size_t secret_len, enum handshake_role prover,
                  const uint8_t *hr, size_t hr_len, const uint8_t *hs, size_t hs_len,
                  const uint8_t *router_mac, uint8_t out[FRAME_MAC_LEN]);

#endif
