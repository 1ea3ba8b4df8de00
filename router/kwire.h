/*
 * The few Kafka protocol messages the router sends itself, encoded and
 * decoded without I/O (tests/unit/test_router_kwire.c): FindCoordinator v0
 * and LeaveGroup v0, used by router/evict.c to remove a previous
 * incarnation of this router from the consumer group on brokers without
 * KIP-345 static membership (the devbroker).  librdkafka has no API for a
 * LeaveGroup on behalf of another member, and no Debian library sends one.
 *
 * Wire format (non-flexible versions): every message is an int32 size
 * followed by that many bytes.  A request body is the header
 *   int16 api_key, int16 api_version, int32 correlation_id,
 *   nullable string client_id
 * then the request fields; a response body is int32 correlation_id then
 * the response fields.  Strings are int16 length + bytes (-1 = null).
 *
 * Status convention: >= 0 on success, a negative KWIRE_E* code otherwise.
 */
#ifndef ODIN_ROUTER_KWIRE_H
#define ODIN_ROUTER_KWIRE_H

#include <stddef.h>
#include <stdint.h>

#define KWIRE_API_FIND_COORDINATOR 10
#define KWIRE_API_LEAVE_GROUP      13

/* Largest response accepted (FindCoordinator v0's is ~300 bytes): a frame
 * declaring more is refused before anything is buffered for it. */
#define KWIRE_MAX_FRAME 65536

#define KWIRE_OK        0
#define KWIRE_ESPACE   -1   /* the output buffer is too small / string too long */
#define KWIRE_ESHORT   -2   /* the response ends inside a field */
#define KWIRE_ECORR    -3   /* correlation id is not the one sent */
#define KWIRE_EFRAME   -4   /* frame size negative or over the cap */

/*
 * Encode a FindCoordinator v0 request for consumer group `group`, size
 * prefix included, into out[0..cap).  client_id may be NULL.  Returns the
 * length, or KWIRE_ESPACE.
 */
int kwire_find_coordinator_req(uint8_t *out, size_t cap, int32_t corr,
                               const char *client_id, const char *group);

/* Encode a LeaveGroup v0 request (group, member_id).  Same returns. */
int kwire_leave_group_req(uint8_t *out, size_t cap, int32_t corr, const char *client_id,
                          const char *group, const char *member_id);

/*
 * Given the bytes received so far, the length (size prefix included) of
 * the first complete frame, 0 if it has not all arrived yet, or
 * KWIRE_EFRAME if its declared size is negative or over max.
 */
long kwire_frame_len(const uint8_t *buf, size_t len, size_t max);

/* A FindCoordinator v0 response. */
typedef struct kwire_coordinator {
    int16_t error;          /* Kafka error code; 0 = the fields below are set */
    int32_t node_id;
    char host[256];
    int32_t port;
} kwire_coordinator;

/*
 * Decode a response frame (size prefix included, as kwire_frame_len
 * delimits it) expected to carry correlation id corr.  Returns KWIRE_OK,
 * KWIRE_ESHORT, KWIRE_ECORR or KWIRE_ESPACE (host longer than 255 bytes).
 */
int kwire_find_coordinator_resp(const uint8_t *frame, size_t len, int32_t corr,
                                kwire_coordinator *out);

/* Decode a LeaveGroup v0 response: *error gets its error code.  Returns
 * KWIRE_OK, KWIRE_ESHORT or KWIRE_ECORR. */
int kwire_leave_group_resp(const uint8_t *frame, size_t len, int32_t corr, int16_t *error);

#endif
