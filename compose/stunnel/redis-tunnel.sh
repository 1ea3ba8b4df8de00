#!/bin/sh
# Plain TCP on TUNNEL_ACCEPT -> TLS to REDIS_TLS_HOST:REDIS_TLS_PORT, the
# server's chain checked against REDIS_TLS_CA and its name against
# REDIS_TLS_VERIFY_HOST (default REDIS_TLS_HOST; SNI too).  Optional client
# certificate (mutual TLS): REDIS_TLS_CLIENT_CERT, REDIS_TLS_CLIENT_KEY.
# Runs stunnel in the foreground, logging to stderr.  The same script runs
# in the compose sidecar and in tests/it/redis_tls_tunnel.sh.
set -eu
: "${REDIS_TLS_HOST:?REDIS_TLS_HOST: the Redis host name}"
port=${REDIS_TLS_PORT:-6379}
accept=${TUNNEL_ACCEPT:-0.0.0.0:6379}
ca=${REDIS_TLS_CA:-/etc/ssl/certs/ca-certificates.crt}
vhost=${REDIS_TLS_VERIFY_HOST:-$REDIS_TLS_HOST}
conf=${TUNNEL_CONF:-/tmp/redis-tunnel.conf}
{
    echo "foreground = yes"
    echo "pid ="
    echo "debug = ${TUNNEL_DEBUG:-notice}"
    echo "[redis]"
    echo "client = yes"
    echo "accept = $accept"
    echo "connect = $REDIS_TLS_HOST:$port"
    # resolve at each connect: a managed endpoint's address moves on failover
    echo "delay = yes"
    echo "sni = $vhost"
    echo "verifyChain = yes"
    echo "CAfile = $ca"
    echo "checkHost = $vhost"
    echo "sslVersionMin = TLSv1.2"
    if [ -n "${REDIS_TLS_CLIENT_CERT:-}" ]; then
        echo "cert = $REDIS_TLS_CLIENT_CERT"
        echo "key = ${REDIS_TLS_CLIENT_KEY:?REDIS_TLS_CLIENT_KEY with REDIS_TLS_CLIENT_CERT}"
    fi
} >"$conf"
exec "${STUNNEL:-stunnel}" "$conf"
