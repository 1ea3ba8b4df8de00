#include "shard/settings.h"
#include "common/addr.h"
#include "common/config.h"
#include "common/net.h"
#include "common/schema.h"
#include "shard/envelope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOPTS 96   /* room for the table below; table() aborts if it outgrows it */

static size_t table(shard_settings *s, config_opt *o)
{
    size_t n = 0;
/* bounds-checked: a table that outgrows NOPTS aborts before writing past it */
#define OPT(env, type, dst, def, help, lo, hi)                               \
    do {                                                                     \
        if (n >= NOPTS)                                                      \
            abort();                                                         \
        o[n++] = (config_opt){ env, type, dst, def, help, lo, hi };          \
    } while (0)
    OPT("SHARD_ID", CFG_STR, &s->cfg_shard_id, NULL,
        "Shard id in Redis and router hellos, [A-Za-z0-9_.-]{1,128} "
        "(default: <hostname>-<pid>)", 0, 0);
    OPT("WS_ADDR", CFG_STR, &s->ws_addr, "0.0.0.0:3002",
        "host:port for WebSocket clients (/ws), and /health and /metrics "
        "unless ADMIN_ADDR is set", 0, 0);
    OPT("WS_REUSEPORT", CFG_BOOL, &s->ws_reuseport, "false",
        "Set SO_REUSEPORT on WS_ADDR so several shards can bind the same "
        "port", 0, 0);
    OPT("WS_SHARED_ADDR", CFG_STR, &s->ws_shared_addr, NULL,
        "Optional second listener (always SO_REUSEPORT) shared by the shards "
        "of a host, besides each shard's own WS_ADDR", 0, 0);
    OPT("WS_MAX_CONNECTIONS", CFG_INT, &s->max_connections, "0",
        "Max WebSocket clients; 0 = RLIMIT_NOFILE - WS_FD_RESERVE - "
        "WS_MAX_PENDING (never above that); over it upgrades get 503",
        0, 10000000);
    OPT("WS_FD_RESERVE", CFG_INT, &s->fd_reserve, "64",
        "File descriptors kept for listeners, Redis, routers and logs",
        16, 100000);
    OPT("WS_MAX_PENDING", CFG_INT, &s->max_pending, "256",
        "Max connections in the HTTP phase (handshake, /health, /metrics); "
        "at the limit the shard stops accepting until one finishes (new "
        "clients wait in the listen backlog)", 1, 100000);
    OPT("WS_ACCEPT_BATCH", CFG_INT, &s->accept_batch, "64",
        "Max connections accepted per event-loop wake-up", 1, 100000);
    OPT("WS_HANDSHAKE_TIMEOUT", CFG_DOUBLE, &s->handshake_timeout, "5",
        "Seconds a connection may take to send its HTTP request", 0.01, 3600);
    OPT("WS_PING_INTERVAL", CFG_DOUBLE, &s->ping_interval, "27",
        "Seconds between server pings to each client", 0.01, 86400);
    OPT("WS_IDLE_TIMEOUT", CFG_DOUBLE, &s->idle_timeout, "30",
        "Close a client (1001) that sent nothing (not even a pong) for this "
        "many seconds", 0.01, 86400);
    OPT("WS_CLOSE_TIMEOUT", CFG_DOUBLE, &s->close_timeout, "5",
        "Seconds to wait for the peer after sending a close frame", 0.01,
        3600);
    OPT("SHARD_SHUTDOWN_TIMEOUT", CFG_DOUBLE, &s->shutdown_timeout, "5",
        "Seconds SIGTERM waits for deregistration and client closes", 0.01,
        3600);
    OPT("WS_MAX_MESSAGE", CFG_INT, &s->max_message, "16384",
        "Largest client message in bytes; longer ones get MESSAGE_TOO_LARGE",
        64, 1 << 30);
    OPT("WS_MAX_FRAME", CFG_INT, &s->max_frame, "65536",
        "Largest client message buffered at all; longer ones are closed with "
        "1009 (raised to WS_MAX_MESSAGE if lower)", 64, 1 << 30);
    OPT("WS_DEFLATE", CFG_BOOL, &s->ws_deflate, "true",
        "Offer permessage-deflate (RFC 7692) to clients that ask: each "
        "message is compressed once per shard and the same bytes go to "
        "every such client; false answers every upgrade without it", 0, 0);
    OPT("WS_DEFLATE_LEVEL", CFG_INT, &s->ws_deflate_level, "6",
        "zlib compression level for permessage-deflate (1 fastest .. 9 "
        "smallest)", 1, 9);
    OPT("WS_DEFLATE_MIN_SIZE", CFG_INT, &s->ws_deflate_min_size, "128",
        "Messages shorter than this many bytes go out uncompressed even to "
        "permessage-deflate clients", 0, 1 << 30);
    OPT("WS_ALLOWED_ORIGINS", CFG_STR, &s->allowed_origins, NULL,
        "Comma-separated browser origins allowed to open /ws (e.g. "
        "https://app.example.com,https://*.example.com); others get 403. "
        "Unset: every origin (requests without Origin are always allowed)",
        0, 0);
    OPT("WS_PARTIAL_BUDGET", CFG_INT, &s->partial_budget, "67108864",
        "Bytes of half-received client frames the whole shard may hold "
        "(wslay context + bytes arrived); over it a client that sends more of "
        "an incomplete frame is closed with 1013; 0 = no limit", 0,
        (double)(1L << 40));
    OPT("WS_PARTIAL_TIMEOUT", CFG_DOUBLE, &s->partial_timeout, "10",
        "Seconds a client may take to complete a frame it started; then "
        "closed with 1008", 0.01, 3600);
    OPT("WS_MAX_CHANNELS", CFG_INT, &s->max_channels, "128",
        "Max channel subscriptions per connection", 1, 1000000);
    OPT("WS_IP_MAX_CHANNELS", CFG_INT, &s->ip_max_channels, "4096",
        "Max channel subscriptions one client address holds across all its "
        "connections; more are refused with error TOO_MANY_SUBSCRIPTIONS (the "
        "message's other channels still subscribe); 0 = no limit", 0, 100000000);
    OPT("WS_MSG_RATE", CFG_DOUBLE, &s->msg_rate, "10",
        "Client messages per second allowed after the burst", 0.001, 1e9);
    OPT("WS_MSG_BURST", CFG_INT, &s->msg_burst, "100",
        "Client message burst (token bucket size)", 1, 1000000000);
    OPT("WS_MAX_ERRORS", CFG_INT, &s->max_errors, "10",
        "Error replies allowed per WS_ERROR_WINDOW before closing with 1008",
        1, 1000000);
    OPT("WS_ERROR_WINDOW", CFG_DOUBLE, &s->error_window, "60",
        "Seconds over which WS_MAX_ERRORS is counted", 0.01, 86400);
    OPT("WS_SEND_QUEUE_MSGS", CFG_INT, &s->queue_msgs, "1024",
        "Max frames queued to one client; over it the client is closed with "
        "1008", 1, 10000000);
    OPT("WS_SEND_QUEUE_BYTES", CFG_INT, &s->queue_bytes, "4194304",
        "Max bytes queued to one client; over it the client is closed with "
        "1008", 1024, (double)(1L << 40));
    OPT("WS_PROXY_PROTOCOL", CFG_STR, &s->cfg_proxy_protocol, "off",
        "PROXY protocol v2 (haproxy send-proxy-v2) on WS_ADDR and "
        "WS_SHARED_ADDR: off | optional (sources in WS_PROXY_TRUSTED may "
        "send the header) | required (they must).  The header's client "
        "address is then the one per-IP limits and logs see; a PROXY header "
        "from any other source is refused as a spoof", 0, 0);
    OPT("WS_PROXY_TRUSTED", CFG_STR, &s->proxy_trusted, NULL,
        "Comma-separated addresses/CIDRs of the load balancers allowed to send "
        "a PROXY header (e.g. 10.0.0.5,172.28.0.0/24); required with "
        "WS_PROXY_PROTOCOL", 0, 0);
    OPT("WS_IP_RATE", CFG_DOUBLE, &s->ip_rate, "50",
        "New WebSocket connections per second per client IP (0 = no limit); "
        "over it upgrades get 429", 0, 1e9);
    OPT("WS_IP_MAX_PENDING", CFG_INT, &s->ip_max_pending, "32",
        "Max connections one client address may hold in the HTTP phase (before "
        "the upgrade completes); more are closed at accept, so one address "
        "cannot fill WS_MAX_PENDING; 0 = no limit", 0, 100000);
    OPT("WS_IP_BURST", CFG_INT, &s->ip_burst, "200",
        "Per-IP connection burst", 1, 1000000000);
    OPT("WS_IP_TABLE_MAX", CFG_INT, &s->ip_table_max, "100000",
        "Most client addresses (IPv6: prefixes) the per-IP limits track; when "
        "full, a connection from an address not tracked yet is refused with "
        "503 (existing ones keep working) until idle entries are swept", 1,
        10000000);
    OPT("WS_IPV6_PREFIX", CFG_INT, &s->ipv6_prefix, "64",
        "Per-IP limits count an IPv6 client by its first this many bits (one "
        "/64 is one client); IPv4 and IPv4-mapped IPv6 by the full IPv4 "
        "address", 1, 128);
    OPT("ADMIN_ADDR", CFG_STR, &s->admin_addr, NULL,
        "host:port of an admin listener for /health and /metrics; when set "
        "they are served only there and WS_ADDR answers them 404 (unset: "
        "served on WS_ADDR).  The admin API (/admin/v1/...) is served only "
        "here", 0, 0);
    OPT("ADMIN_RATE", CFG_DOUBLE, &s->admin_rate, "100",
        "/health and /metrics requests per second, each (0 = no limit); over "
        "it 429", 0, 1e9);
    OPT("ADMIN_BURST", CFG_INT, &s->admin_burst, "200",
        "/health and /metrics request burst, each", 1, 1000000000);
    OPT("ADMIN_ALLOW", CFG_STR, &s->admin_allow, NULL,
        "Comma-separated addresses/CIDRs allowed to read /health and /metrics "
        "(on ADMIN_ADDR or WS_ADDR); others get 404.  Unset: anyone who "
        "reaches the port", 0, 0);
    OPT("ADMIN_TOKEN", CFG_STR, &s->admin_token, NULL,
        "Bearer token of the admin API (/admin/v1/... on ADMIN_ADDR): every "
        "request must send 'Authorization: Bearer <token>' (else 401).  Unset: "
        "the read-only endpoints are open (ADMIN_ALLOW still applies) and "
        "disconnect/drain/undrain are refused with 403", 0, 0);
    OPT("SHARD_SOCKET", CFG_STR, &s->cfg_socket_path, NULL,
        "Unix socket routers connect to (default: "
        "<SHARD_SOCKET_DIR>/odin-shard-<id>.sock)", 0, 0);
    OPT("SHARD_TCP_ADDR", CFG_STR, &s->tcp_addr, NULL,
        "Optional host:port where routers on other hosts connect over TCP "
        "(same frames as the Unix socket)", 0, 0);
    OPT("SHARD_ENDPOINT", CFG_STR, &s->cfg_endpoint, NULL,
        "Endpoint registered in the lease for routers: unix:/path or "
        "tcp://host:port (default: unix:<SHARD_SOCKET>; set "
        "tcp://<this host>:<port> with SHARD_TCP_ADDR for remote routers)", 0, 0);
    OPT("SHARD_SOCKET_DIR", CFG_STR, &s->cfg_socket_dir, "/tmp",
        "Directory for the default SHARD_SOCKET path (a volume shared with "
        "the routers when shards run in containers)", 0, 0);
    OPT("SHARD_MAX_FRAME", CFG_INT, &s->router_max_frame, "16777216",
        "Largest router frame payload accepted, bytes", 64, 1 << 30);
    OPT("SHARD_MAX_ROUTERS", CFG_INT, &s->max_routers, "64",
        "Max simultaneous authenticated router connections (connections still "
        "in the handshake count against SHARD_INGRESS_MAX_PENDING instead)",
        1, 100000);
    OPT("SHARD_INGRESS_AUTH_TIMEOUT_MS", CFG_INT, &s->ingress_auth_timeout_ms, "1000",
        "A router connection that has not completed HELLO (+ AUTH) within this "
        "is closed", 50, 600000);
    OPT("SHARD_INGRESS_MAX_PENDING", CFG_INT, &s->ingress_max_pending, "16",
        "Max router connections still in the handshake (not yet authenticated); "
        "more are closed at accept.  They never take a SHARD_MAX_ROUTERS slot",
        1, 100000);
    OPT("SHARD_INGRESS_IP_MAX_PENDING", CFG_INT, &s->ingress_ip_max_pending, "4",
        "Max router connections in the handshake from one source address (all "
        "Unix-socket peers are one source); 0 = no limit", 0, 100000);
    OPT("SHARD_INGRESS_SECRET", CFG_STR, &s->ingress_secret, NULL,
        "Shared secret of router <-> shard links: a router must prove it (HMAC "
        "over the whole HELLO transcript, which names this shard) before its "
        "records are accepted, and only then does the shard prove it back.  "
        "Required for a SHARD_TCP_ADDR that is not loopback; never logged", 0, 0);
    OPT("SHARD_INGRESS_INSECURE", CFG_BOOL, &s->ingress_insecure, "false",
        "Allow SHARD_TCP_ADDR on a non-loopback address without "
        "SHARD_INGRESS_SECRET (anyone who reaches it can push records)", 0, 0);
    OPT("REDIS_URL", CFG_STR, &s->redis_url, "redis://127.0.0.1:6379",
        "Redis endpoint: redis://[[user]:password@]host:port[/db] or unix:/path "
        "(the password is never logged)", 0, 0);
    OPT("REDIS_SENTINELS", CFG_STR, &s->redis_sentinels, NULL,
        "Redis Sentinel addresses host:port,host:port: the master is asked from "
        "them before every connect and followed across failovers (REDIS_URL then "
        "gives only password and db)", 0, 0);
    OPT("REDIS_MASTER_NAME", CFG_STR, &s->redis_master_name, "odin",
        "Name of the master the Sentinels monitor (with REDIS_SENTINELS)", 0, 0);
    OPT("REDIS_PASSWORD", CFG_STR, &s->redis_password, NULL,
        "Redis password (AUTH); overrides one in REDIS_URL; never logged", 0, 0);
    OPT("REDIS_PREFIX", CFG_STR, &s->redis_prefix, SCHEMA_DEFAULT_PREFIX,
        "Prefix of every Redis key and channel", 0, 0);
    OPT("REDIS_CLUSTER_KEYS", CFG_BOOL, &s->redis_cluster_keys, "false",
        "Cluster-safe Redis key layout (Redis Cluster, docs/scaling.md): shard keys "
        "hash-tagged as <prefix>shard:{<id>} and <prefix>shard:{<id>}:tokens, no "
        "script touching two slots; needs Redis 7. Same value on every router, "
        "shard and odin-ctl", 0, 0);
    OPT("REDIS_TIMEOUT", CFG_DOUBLE, &s->redis_timeout, "3",
        "Seconds before a Redis connect or reply is considered lost", 0.05,
        3600);
    OPT("SHARD_LEASE_TTL", CFG_DOUBLE, &s->lease_ttl, "6",
        "Lease TTL of odin:shard:<id> in seconds; refreshed every TTL/3",
        0.3, 86400);
    OPT("REDIS_MAX_INFLIGHT", CFG_INT, &s->redis_inflight, "256",
        "Max route updates sent to Redis and not yet answered (the lease "
        "refresh on the same connection waits behind at most these)", 1, 1000000);
    OPT("REDIS_ROUTE_BATCH", CFG_INT, &s->redis_route_batch, "128",
        "Route updates (tokens) per registration script call (EVALSHA)", 1, 4096);
    OPT("REDIS_ROUTE_RATE", CFG_DOUBLE, &s->redis_route_rate, "20000",
        "Route updates per second this shard sends to Redis (burst: one "
        "second's worth); more wait in the queue, where churn on the same "
        "token collapses; 0 = no limit", 0, 1e9);
    OPT("REDIS_CHUNK", CFG_INT, &s->redis_chunk, "256",
        "Tokens per step when the shard deregisters (SIGTERM) or pages through a "
        "previous life's reverse index (SSCAN COUNT): bounds how long one step "
        "holds Redis, whatever the size of the index", 1, 4096);
    OPT("SHARD_MAX_TOKENS", CFG_INT, &s->max_tokens, "200000",
        "Max distinct tokens this shard holds subscribers for (each is a route in "
        "Redis); a subscription that would add one more is refused with error "
        "TOO_MANY_TOKENS (the message's other channels still subscribe); 0 = no "
        "limit", 0, 100000000);
    OPT("LOG_LEVEL", CFG_STR, &s->log_level, "info",
        "debug | info | warn | error", 0, 0);
    OPT("ENVELOPE_TYPES", CFG_STR, &s->cfg_envelope_types, "legacy",
        "Envelope type/priority: legacy (odin-ws: \"price:update\"/1 for "
        "every category) | category (per category: liquidity:update/2, ...)",
        0, 0);
    OPT("KAFKA_BROKERS", CFG_STR, &s->kafka_brokers, NULL,
        "Kafka bootstrap servers the shard reads to replay records for a "
        "client reconnect (unset: reconnect answers RESUME_UNAVAILABLE)", 0, 0);
    OPT("KAFKA_OPTIONS", CFG_STR, &s->kafka_options, NULL,
        "Extra librdkafka properties 'key=value,...' for the resume consumer "
        "(e.g. security.protocol=ssl)", 0, 0);
    OPT("RESUME_MAX_RECORDS", CFG_INT, &s->resume_max_records, "1000",
        "Most records one reconnect may replay (matching records, over all "
        "its channels); more is TOO_FAR_BEHIND", 1, 10000000);
    OPT("RESUME_TIMEOUT_MS", CFG_INT, &s->resume_timeout_ms, "5000",
        "Longest a reconnect may spend reading Kafka; past it "
        "TOO_FAR_BEHIND", 100, 600000);
    OPT("RESUME_MAX_CONCURRENT", CFG_INT, &s->resume_max_concurrent, "20000",
        "Clients replaying at once per shard (they share one Kafka reader; "
        "memory is bounded by RESUME_MEMORY_BYTES); more get RESUME_BUSY",
        1, 1000000);
    OPT("RESUME_MAX_OFFSETS", CFG_INT, &s->resume_max_offsets, "100000",
        "Furthest back (partition offsets behind its end) a reconnect may "
        "start; further is TOO_FAR_BEHIND at once, without reading", 1,
        1000000000);
    OPT("RESUME_MEMORY_BYTES", CFG_INT, &s->resume_memory_bytes, "33554432",
        "Bytes held for replays per shard (records read and not yet sent, "
        "live records held for resuming clients, the reader's history of "
        "recent records, which gives way first); when full the reader waits",
        65536, 1L << 40);
    OPT("RESUME_CONN_RATE", CFG_DOUBLE, &s->resume_conn_rate, "1",
        "Reconnects per second one connection may send (token bucket); more "
        "are answered RESUME_RATE_LIMITED (still subscribed live); 0 = no limit",
        0, 1e6);
    OPT("RESUME_CONN_BURST", CFG_INT, &s->resume_conn_burst, "3",
        "Burst of RESUME_CONN_RATE", 1, 1000000);
    OPT("RESUME_IP_RATE", CFG_DOUBLE, &s->resume_ip_rate, "100",
        "Reconnects per second from one client address (token bucket); more "
        "are answered RESUME_RATE_LIMITED; 0 = no limit", 0, 1e9);
    OPT("RESUME_IP_BURST", CFG_INT, &s->resume_ip_burst, "1000",
        "Burst of RESUME_IP_RATE", 1, 100000000);
    OPT("RESUME_MAX_RECORD_BYTES", CFG_INT, &s->resume_max_record_bytes,
        "1048576",
        "Largest record value a replay sends; larger ones are skipped as the "
        "router skips them (keep it equal to the router's MAX_RECORD_BYTES)",
        1, 1L << 30);
#undef OPT
    return n;
}

static int id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 128)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

int shard_settings_load(shard_settings *s, int argc, char **argv)
{
    config_opt o[NOPTS];
    memset(s, 0, sizeof(*s));
    size_t n = table(s, o);
    int rc = config_load(o, n, argc, argv, "odin-shard",
                         "WebSocket shard of odin-dispatch: clients on /ws, "
                         "records from routers on a Unix socket");
    if (rc != 0)
        return rc;
    if (s->cfg_shard_id && *s->cfg_shard_id) {
        s->shard_id = strdup(s->cfg_shard_id);
    } else {
        char host[256] = "shard";
        gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = 0;
        for (char *p = host; *p; p++)   /* keep the id a valid id */
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
                *p = '_';
        char id[300];
        snprintf(id, sizeof(id), "%.100s-%ld", host, (long)getpid());
        s->shard_id = strdup(id);
    }
    if (!s->shard_id || !id_valid(s->shard_id)) {
        config_error("SHARD_ID must be 1-128 of "
                        "[A-Za-z0-9_.-]");
        return -1;
    }
    if (s->cfg_socket_path && *s->cfg_socket_path) {
        s->socket_path = strdup(s->cfg_socket_path);
    } else {
        char p[400];
        int pl = snprintf(p, sizeof(p), "%s/odin-shard-%s.sock",
                         s->cfg_socket_dir ? s->cfg_socket_dir : "/tmp", s->shard_id);
        if (pl < 0 || (size_t)pl >= 108) {   /* sun_path limit */
            config_error("socket path %s is longer than 107 bytes; "
                            "set SHARD_SOCKET or a shorter SHARD_SOCKET_DIR", p);
            return -1;
        }
        s->socket_path = strdup(p);
    }
    if (!s->socket_path)
        return -1;
    if (s->cfg_endpoint && *s->cfg_endpoint) {
        if (strncmp(s->cfg_endpoint, "unix:", 5) != 0 &&
            strncmp(s->cfg_endpoint, "tcp://", 6) != 0) {
            config_error("SHARD_ENDPOINT must be unix:/path or "
                            "tcp://host:port, not '%s'", s->cfg_endpoint);
            return -1;
        }
        if (strncmp(s->cfg_endpoint, "tcp://", 6) == 0 &&
            !(s->tcp_addr && *s->tcp_addr)) {
            config_error("SHARD_ENDPOINT is tcp:// but "
                            "SHARD_TCP_ADDR is not set");
            return -1;
        }
        s->endpoint = strdup(s->cfg_endpoint);
    } else {
        size_t el = strlen(s->socket_path) + 6;
        s->endpoint = malloc(el);
        if (s->endpoint)
            snprintf(s->endpoint, el, "unix:%s", s->socket_path);
    }
    if (!s->endpoint)
        return -1;
    int et = envelope_types_parse(s->cfg_envelope_types);
    if (et < 0) {
        config_error("ENVELOPE_TYPES must be legacy or "
                        "category, not '%s'", s->cfg_envelope_types);
        return -1;
    }
    s->envelope_types = et;
    if (strcmp(s->cfg_proxy_protocol, "off") == 0) {
        s->proxy_mode = SHARD_PROXY_OFF;
    } else if (strcmp(s->cfg_proxy_protocol, "optional") == 0) {
        s->proxy_mode = SHARD_PROXY_OPTIONAL;
    } else if (strcmp(s->cfg_proxy_protocol, "required") == 0) {
        s->proxy_mode = SHARD_PROXY_REQUIRED;
    } else {
        config_error("WS_PROXY_PROTOCOL must be off, optional or "
                        "required, not '%s'", s->cfg_proxy_protocol);
        return -1;
    }
    char cerr[300];
    if (cidr_list_parse(s->proxy_trusted, &s->proxy_nets, cerr, sizeof cerr) != 0) {
        config_error("WS_PROXY_TRUSTED: %s", cerr);
        return -1;
    }
    if (cidr_list_parse(s->admin_allow, &s->admin_nets, cerr, sizeof cerr) != 0) {
        config_error("ADMIN_ALLOW: %s", cerr);
        return -1;
    }
    if (s->proxy_mode != SHARD_PROXY_OFF && s->proxy_nets.n == 0) {
        config_error("WS_PROXY_PROTOCOL=%s needs WS_PROXY_TRUSTED "
                        "(the load balancers' addresses)", s->cfg_proxy_protocol);
        return -1;
    }
    char berr[300];
    if (s->kafka_brokers && *s->kafka_brokers &&
        addr_check_brokers(s->kafka_brokers, berr, sizeof berr) != 0) {
        config_error("KAFKA_BROKERS must be a host:port list (%s)",
                berr);
        return -1;
    }
    redis_endpoint rep;
    char uerr[300];
    if (addr_parse_redis_url_err(s->redis_url, &rep, uerr, sizeof uerr) != 0) {
        char url[600];
        addr_redact_url(s->redis_url, url, sizeof url);
        config_error("REDIS_URL '%s' is not "
                        "redis://[[user]:password@]host:port[/db] or unix:/path: %s",
                url, uerr);
        return -1;
    }
    if (addr_redis_set_password(&rep, s->redis_password) != 0) {
        config_error("REDIS_PASSWORD is longer than 255 bytes");
        return -1;
    }
    if (s->max_frame < s->max_message)
        s->max_frame = s->max_message;
    if (s->tcp_addr && *s->tcp_addr && !(s->ingress_secret && *s->ingress_secret) &&
        !s->ingress_insecure && !net_addr_is_loopback(s->tcp_addr)) {
        config_error("SHARD_TCP_ADDR %s is not a loopback address: "
                        "set SHARD_INGRESS_SECRET (on shards and routers), or "
                        "SHARD_INGRESS_INSECURE=true on a network you trust", s->tcp_addr);
        return -1;
    }
    return 0;
}

void shard_settings_free(shard_settings *s)
{
    free(s->shard_id);
    free(s->socket_path);
    free(s->endpoint);
    cidr_list_free(&s->proxy_nets);
    cidr_list_free(&s->admin_nets);
    config_opt o[NOPTS];
    size_t n = table(s, o);
    config_free(o, n);
    memset(s, 0, sizeof(*s));
}
