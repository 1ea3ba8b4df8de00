/*
 * odin-shard settings: every field is an environment variable and the same
 * long flag (common/config.h).  `odin-shard --help` prints them all.
 */
#ifndef ODIN_SHARD_SETTINGS_H
#define ODIN_SHARD_SETTINGS_H

#include "shard/cidr.h"

/* WS_PROXY_PROTOCOL */
enum shard_proxy_mode {
    SHARD_PROXY_OFF = 0,     /* no PROXY header expected; one is a bad request */
    SHARD_PROXY_OPTIONAL,    /* trusted sources may send one */
    SHARD_PROXY_REQUIRED     /* trusted sources must send one */
};

typedef struct shard_settings {
    char *shard_id;           /* SHARD_ID (default <hostname>-<pid>), own copy */
    char *ws_addr;            /* WS_ADDR */
    char *ws_shared_addr;     /* WS_SHARED_ADDR (extra SO_REUSEPORT listener) */
    int ws_reuseport;         /* WS_REUSEPORT */
    long max_connections;     /* WS_MAX_CONNECTIONS (0 = derived) */
    long fd_reserve;          /* WS_FD_RESERVE */
    long max_pending;         /* WS_MAX_PENDING */
    long accept_batch;        /* WS_ACCEPT_BATCH */
    double handshake_timeout; /* WS_HANDSHAKE_TIMEOUT, seconds */
    double ping_interval;     /* WS_PING_INTERVAL */
    double idle_timeout;      /* WS_IDLE_TIMEOUT */
    double close_timeout;     /* WS_CLOSE_TIMEOUT */
    double shutdown_timeout;  /* SHARD_SHUTDOWN_TIMEOUT */
    long max_message;         /* WS_MAX_MESSAGE */
    long ip_max_pending;      /* WS_IP_MAX_PENDING */
    long redis_route_batch;   /* REDIS_ROUTE_BATCH */
    double redis_route_rate;  /* REDIS_ROUTE_RATE, updates/s (0: no limit) */
    long partial_budget;      /* WS_PARTIAL_BUDGET, bytes */
    char *allowed_origins;    /* WS_ALLOWED_ORIGINS, NULL: any */
    int ws_deflate;           /* WS_DEFLATE */
    long ws_deflate_level;    /* WS_DEFLATE_LEVEL, zlib 1..9 */
    long ws_deflate_min_size; /* WS_DEFLATE_MIN_SIZE, bytes */
    double partial_timeout;   /* WS_PARTIAL_TIMEOUT, seconds */
    long max_frame;           /* WS_MAX_FRAME (wslay limit, 1009 above) */
    long max_channels;        /* WS_MAX_CHANNELS */
    double msg_rate;          /* WS_MSG_RATE */
    long msg_burst;           /* WS_MSG_BURST */
    long max_errors;          /* WS_MAX_ERRORS */
    double error_window;      /* WS_ERROR_WINDOW */
    long queue_msgs;          /* WS_SEND_QUEUE_MSGS */
    long queue_bytes;         /* WS_SEND_QUEUE_BYTES */
    char *cfg_proxy_protocol; /* WS_PROXY_PROTOCOL: off | optional | required */
    int proxy_mode;           /* enum shard_proxy_mode, from the above */
    char *proxy_trusted;      /* WS_PROXY_TRUSTED: CIDR list */
    cidr_list proxy_nets;     /* parsed WS_PROXY_TRUSTED (own) */
    double ip_rate;           /* WS_IP_RATE (0 = off) */
    long ip_burst;            /* WS_IP_BURST */
    long ip_table_max;        /* WS_IP_TABLE_MAX */
    long ipv6_prefix;         /* WS_IPV6_PREFIX, bits */
    char *admin_addr;         /* ADMIN_ADDR: /health, /metrics listener (NULL: WS_ADDR) */
    double admin_rate;        /* ADMIN_RATE, requests/s per page (0 = no limit) */
    long admin_burst;         /* ADMIN_BURST */
    char *admin_allow;        /* ADMIN_ALLOW: CIDR list */
    char *admin_token;        /* ADMIN_TOKEN: admin API bearer token (NULL: read-only API) */
    cidr_list admin_nets;     /* parsed ADMIN_ALLOW (own; empty: anyone) */
    char *socket_path;        /* SHARD_SOCKET, own copy */
    char *tcp_addr;           /* SHARD_TCP_ADDR: routers over TCP (optional) */
    char *endpoint;           /* SHARD_ENDPOINT as registered (derived copy) */
    long router_max_frame;    /* SHARD_MAX_FRAME */
    long max_routers;         /* SHARD_MAX_ROUTERS (authenticated routers) */
    long ingress_auth_timeout_ms;   /* SHARD_INGRESS_AUTH_TIMEOUT_MS */
    long ingress_max_pending;       /* SHARD_INGRESS_MAX_PENDING */
    long ingress_ip_max_pending;    /* SHARD_INGRESS_IP_MAX_PENDING */
    char *ingress_secret;     /* SHARD_INGRESS_SECRET, never logged */
    int ingress_insecure;     /* SHARD_INGRESS_INSECURE */
    char *redis_url;          /* REDIS_URL (may hold a password: log it redacted) */
    char *redis_password;     /* REDIS_PASSWORD, never logged */
    char *redis_sentinels;    /* REDIS_SENTINELS */
    char *redis_master_name;  /* REDIS_MASTER_NAME */
    char *redis_prefix;       /* REDIS_PREFIX */
    int redis_cluster_keys;   /* REDIS_CLUSTER_KEYS */
    double redis_timeout;     /* REDIS_TIMEOUT */
    double lease_ttl;         /* SHARD_LEASE_TTL, seconds */
    long redis_inflight;      /* REDIS_MAX_INFLIGHT */
    long redis_chunk;         /* REDIS_CHUNK */
    long max_tokens;          /* SHARD_MAX_TOKENS (0: no limit) */
    long ip_max_channels;     /* WS_IP_MAX_CHANNELS (0: no limit) */
    char *log_level;          /* LOG_LEVEL */
    char *cfg_envelope_types; /* ENVELOPE_TYPES: legacy | category */
    int envelope_types;       /* enum envelope_types, from the above */
    char *kafka_brokers;      /* KAFKA_BROKERS: resume reads Kafka (optional) */
    char *kafka_options;      /* KAFKA_OPTIONS for the resume consumer */
    long resume_max_records;  /* RESUME_MAX_RECORDS */
    long resume_timeout_ms;   /* RESUME_TIMEOUT_MS */
    long resume_max_concurrent; /* RESUME_MAX_CONCURRENT */
    long resume_max_offsets;  /* RESUME_MAX_OFFSETS */
    long resume_memory_bytes; /* RESUME_MEMORY_BYTES */
    double resume_conn_rate;  /* RESUME_CONN_RATE, reconnects/s per connection */
    long resume_conn_burst;   /* RESUME_CONN_BURST */
    double resume_ip_rate;    /* RESUME_IP_RATE, reconnects/s per address */
    long resume_ip_burst;     /* RESUME_IP_BURST */
    long resume_max_record_bytes; /* RESUME_MAX_RECORD_BYTES */
    /* raw strings as given (owned by common/config) */
    char *cfg_shard_id, *cfg_socket_path, *cfg_socket_dir, *cfg_endpoint;
} shard_settings;

/*
 * Load from argv + environment and fill derived defaults (SHARD_ID,
 * SHARD_SOCKET).  Returns 0, 1 if --help was printed (exit 0), or -1 after
 * printing why a value is bad (exit 2).  Always call shard_settings_free.
 */
int shard_settings_load(shard_settings *s, int argc, char **argv);
void shard_settings_free(shard_settings *s);

#endif
