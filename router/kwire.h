/*
 * The few Kafka protocol messages the router sends itself, encoded and
 * decoded without I/O (tests/unit/test_router_kwire.c): ApiVersions v0,
 * FindCoordinator v0-v3 and LeaveGroup v0-v4, used by router/leavegroup.c to
 * remove a previous incarnation of this router from the consumer group on
 * brokers without KIP-345 static membership (the devbroker).  librdkafka
 * has no API for a LeaveGroup on behalf of another member, and no Debian
 * library sends one.
 *
 * Versions are negotiated: ApiVersions v0 (which every broker answers)
 * first, then kwire_pick_version picks the highest version both sides
 * support.  Kafka 4.0 removed FindCoordinator v0 and LeaveGroup v0-v2
 * (KIP-896); the librdkafka 2.0.2 mock cluster has no v3+ of either.
 *
 * Wire format: every message is an int32 size followed by that many bytes.
 * A request body is the header
 *   int16 api_key, int16 api_version, int32 correlation_id,
 *   nullable string client_id
 *   [flexible versions: tagged fields]
 * then the request fields; a response body is int32 correlation_id
 * [flexible versions except ApiVersions: tagged fields] then the response
 * fields.  Strings are int16 length + bytes (-1 = null); in flexible
 * versions (FindCoordinator v3+, LeaveGroup v4+) strings and arrays are
 * "compact": unsigned varint length + 1 (0 = null), and every structure
 * ends with tagged fields (an unsigned varint count, then tag, size,
 * bytes each; we send none and skip those we get).
 *
 * Status convention: >= 0 on success, a negative KWIRE_E* code otherwise.
 */
#ifndef ODIN_ROUTER_KWIRE_H
#define ODIN_ROUTER_KWIRE_H

#include <stddef.h>
#include <stdint.h>

#define KWIRE_API_FIND_COORDINATOR 10
#define KWIRE_API_LEAVE_GROUP      13
#define KWIRE_API_API_VERSIONS     18

/* The versions this codec implements. */
#define KWIRE_FIND_COORDINATOR_MIN 0
#define KWIRE_FIND_COORDINATOR_MAX 3
#define KWIRE_LEAVE_GROUP_MIN      0
#define KWIRE_LEAVE_GROUP_MAX      4

/* Largest response accepted (an ApiVersions response of a recent broker is
 * a few hundred bytes): a frame declaring more is refused before anything
 * is buffered for it. */
#define KWIRE_MAX_FRAME 65536

#define KWIRE_OK        0
#define KWIRE_ESPACE   -1   /* the output buffer is too small / string too long */
#define KWIRE_ESHORT   -2   /* the response ends inside a field */
#define KWIRE_ECORR    -3   /* correlation id is not the one sent */
#define KWIRE_EFRAME   -4   /* frame size negative or over the cap */
#define KWIRE_EVERSION -5   /* a version this codec does not implement */

/* Encode an ApiVersions v0 request (empty body), size prefix included.
 * Returns the length, or KWIRE_ESPACE. */
int kwire_api_versions_req(uint8_t *out, size_t cap, int32_t corr, const char *client_id);

/* What an ApiVersions response says of the two APIs used here; min/max -1
 * when the broker does not list the API. */
typedef struct kwire_versions {
    int16_t error;          /* Kafka error code (the list may be set anyway) */
    int16_t find_min, find_max;
    int16_t leave_min, leave_max;
} kwire_versions;

/* Decode an ApiVersions v0 response.  Returns KWIRE_OK, KWIRE_ESHORT or
 * KWIRE_ECORR. */
int kwire_api_versions_resp(const uint8_t *frame, size_t len, int32_t corr,
                            kwire_versions *out);

/* The highest version in both [our_min, our_max] and [broker_min,
 * broker_max], or -1 if none (broker_min < 0: the broker lacks the API). */
int kwire_pick_version(int our_min, int our_max, int broker_min, int broker_max);

/*
 * Encode a FindCoordinator request (version 0-3) for consumer group
 * `group` (key type 0 from v1), size prefix included, into out[0..cap).
 * client_id may be NULL.  Returns the length, KWIRE_ESPACE or
 * KWIRE_EVERSION.
 */
int kwire_find_coordinator_req(uint8_t *out, size_t cap, int32_t corr, int version,
                               const char *client_id, const char *group);

/* Encode a LeaveGroup request (version 0-4) removing member_id; from v3
 * the member goes in the members array with group_instance_id (NULL: the
 * null string).  Same returns. */
int kwire_leave_group_req(uint8_t *out, size_t cap, int32_t corr, int version,
                          const char *client_id, const char *group, const char *member_id,
                          const char *group_instance_id);

/*
 * Given the bytes received so far, the length (size prefix included) of
 * the first complete frame, 0 if it has not all arrived yet, or
 * KWIRE_EFRAME if its declared size is negative or over max.
 */
long kwire_frame_len(const uint8_t *buf, size_t len, size_t max);

/* A FindCoordinator response. */
typedef struct kwire_coordinator {
    int16_t error;          /* Kafka error code; 0 = the fields below are set */
    int32_t node_id;
    char host[256];
    int32_t port;
} kwire_coordinator;

/*
 * Decode a FindCoordinator response of `version` (the request's) from a
 * frame (size prefix included, as kwire_frame_len delimits it) expected to
 * carry correlation id corr.  Returns KWIRE_OK, KWIRE_ESHORT, KWIRE_ECORR,
 * KWIRE_EVERSION or KWIRE_ESPACE (host longer than 255 bytes).
 */
int kwire_find_coordinator_resp(const uint8_t *frame, size_t len, int32_t corr, int version,
                                kwire_coordinator *out);

/* Decode a LeaveGroup response of `version`: *error gets the top-level
 * error code or, if that is 0, the first member's non-zero one (v3+).
 * Returns KWIRE_OK, KWIRE_ESHORT, KWIRE_ECORR or KWIRE_EVERSION. */
int kwire_leave_group_resp(const uint8_t *frame, size_t len, int32_t corr, int version,
                           int16_t *error);

#endif
