#!/usr/bin/env bash
# Redis over TLS through the stunnel sidecar of
# compose/docker-compose.redis-tls.yml, for real: hiredis 0.14 (Debian 12)
# has no TLS, so the daemons speak plain Redis protocol to stunnel, which
# speaks TLS to the Redis.  Here: redis-server with TLS only (port 0,
# tls-port, a generated CA and server certificate for "localhost",
# requirepass), compose/stunnel/redis-tunnel.sh (the sidecar's own script)
# in front of it, and an odin-shard with REDIS_URL at the tunnel and
# REDIS_PASSWORD: its lease and shard set entry must appear in the TLS
# Redis (read with redis-cli --tls), and its /health must say Redis is
# connected.  Also: the shard pointed straight at the TLS port never
# registers (why the tunnel exists), and a tunnel that does not trust the
# server's CA, or checks another host name, passes nothing.
# Skips (77) if stunnel4 is not installed (tools/deps.sh installs it).
set -euo pipefail
top=${ODIN_TOP:?run through tools/run-tests.sh}
: "${ODIN_BUILD:?}"
# shellcheck source=../support/stack.sh
. "$top/tests/support/stack.sh"
stack_init redis-tls
STACK_LOG_LINES=15
command -v stunnel4 >/dev/null || command -v stunnel >/dev/null \
    || { echo "SKIP: stunnel4 not installed (apt-get install stunnel4; tools/deps.sh)"; exit 77; }
ST=$(command -v stunnel4 || command -v stunnel)
redis-server --version | grep -Eq "v=([6-9]|[1-9][0-9])\." \
    || { echo "SKIP: redis-server without TLS"; exit 77; }
PW=tunnel-test-pw

# a CA, a server certificate for localhost signed by it, and an unrelated CA
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=odin test CA" \
    -keyout "$T/ca.key" -out "$T/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$T/redis.key" -out "$T/redis.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$T/san.ext"
openssl x509 -req -in "$T/redis.csr" -CA "$T/ca.crt" -CAkey "$T/ca.key" -CAcreateserial \
    -days 2 -extfile "$T/san.ext" -out "$T/redis.crt" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=other CA" \
    -keyout "$T/other.key" -out "$T/other.crt" 2>/dev/null

# Redis with TLS only, a password, no client certificates (as managed ones)
rp=$(port)
mkdir -p "$T/redis"
spawn redis redis-server --port 0 --tls-port "$rp" --bind 127.0.0.1 --dir "$T/redis" \
    --tls-cert-file "$T/redis.crt" --tls-key-file "$T/redis.key" --tls-ca-cert-file "$T/ca.crt" \
    --tls-auth-clients no --requirepass "$PW" --save '' --appendonly no
rcli() { REDISCLI_AUTH=$PW redis-cli --tls --cacert "$T/ca.crt" -h localhost -p "$rp" "$@"; }
wait_until 10 rcli ping || fail "redis-server with TLS did not start (built without TLS?)"
[ "$(rcli ping)" = PONG ] || fail "no PONG over TLS"

# the sidecar's script, as the compose service runs it
tunnel() { # name accept ca verify_host
    spawn "$1" env -i PATH="$PATH" REDIS_TLS_HOST=localhost REDIS_TLS_PORT="$rp" TUNNEL_ACCEPT="127.0.0.1:$2" \
        REDIS_TLS_CA="$3" REDIS_TLS_VERIFY_HOST="$4" TUNNEL_CONF="$T/$1.conf" STUNNEL="$ST" \
        TUNNEL_DEBUG=info sh "$top/compose/stunnel/redis-tunnel.sh"
    wait_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$2" || fail "stunnel $1 does not listen"
}
tp=$(port); tunnel good "$tp" "$T/ca.crt" localhost
[ "$(REDISCLI_AUTH=$PW redis-cli -h 127.0.0.1 -p "$tp" ping)" = PONG ] \
    || fail "no PONG through the tunnel"
echo "redis_tls_tunnel: PING through stunnel to redis-server over TLS: PONG"

# a tunnel that does not trust the server's CA, or checks another name: nothing
bp=$(port); tunnel badca "$bp" "$T/other.crt" localhost
hp=$(port); tunnel badhost "$hp" "$T/ca.crt" redis.example.com
for p in "$bp" "$hp"; do
    out=$(REDISCLI_AUTH=$PW timeout 10 redis-cli -h 127.0.0.1 -p "$p" ping 2>&1 || true)
    [ "$out" != PONG ] || fail "a tunnel on $p without a valid chain/name passed traffic"
done
grep -qi 'certificate verify failed\|verify.*fail\|CERT_' "$T/badca.log" || fail "badca: no verification failure logged"
echo "redis_tls_tunnel: wrong CA and wrong host name refused by stunnel"

# a shard through the tunnel registers its lease in the TLS Redis
wp=$(port); ap=$(port); SID="tls-shard-$$"
start_shard shard "$SID" "$wp" ADMIN_ADDR="127.0.0.1:$ap" \
    REDIS_URL="redis://127.0.0.1:$tp" REDIS_PASSWORD="$PW" REDIS_PREFIX="tls:"
wait_until 20 bash -c "[ \"\$(REDISCLI_AUTH=$PW redis-cli --tls --cacert '$T/ca.crt' -h localhost -p $rp SISMEMBER tls:shards $SID)\" = 1 ]" \
    || fail "the shard never registered through the tunnel"
ttl=$(rcli PTTL "tls:shard:$SID")
[ "$ttl" -gt 0 ] || fail "no lease TTL on tls:shard:$SID ($ttl)"
wait_until 10 bash -c "curl -sS http://127.0.0.1:$ap/health | jq -e '.checks.redis.connected == true'" \
    || { curl -sS "http://127.0.0.1:$ap/health" >&2 || true; fail "shard /health does not report Redis"; }
grep -q "$PW" "$T/shard.log" && fail "the password appears in the shard's log"
echo "redis_tls_tunnel: odin-shard registered ($SID, lease PTTL ${ttl} ms) through the tunnel"

# without the tunnel: plain hiredis against the TLS port never registers
wp2=$(port); ap2=$(port); SID2="tls-direct-$$"
start_shard direct "$SID2" "$wp2" ADMIN_ADDR="127.0.0.1:$ap2" \
    REDIS_URL="redis://127.0.0.1:$rp" REDIS_PASSWORD="$PW" REDIS_PREFIX="tls:"
# wait for the shard's own verdict: a logged Redis failure, not a sleep
wait_until 20 grep -qi 'redis' "$T/direct.log" || fail "direct shard logged nothing about Redis"
wait_until 20 grep -Eqi 'redis.*(fail|lost|error|closed|timeout|refused)|(fail|lost|error|closed|timeout).*redis' "$T/direct.log" \
    || fail "direct shard: no Redis failure logged"
[ "$(rcli SISMEMBER tls:shards "$SID2")" = 0 ] || fail "a plain client registered on the TLS port?"
echo "redis_tls_tunnel: odin-shard straight at the TLS port: no registration (hiredis 0.14 has no TLS)"
