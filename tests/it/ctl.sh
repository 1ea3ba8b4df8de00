#!/usr/bin/env bash
# odin-ctl against real redis-server, two odin-shard processes, a client and
# an odin-router: shards, routes, tokens, health (table and --json), drain and
# undrain by signal, a shard on another host (exit 3 with the command to run
# there), settings from flags and from the environment (REDIS_URL,
# REDIS_PREFIX) alike.  Also checks the router's process_* / build_info and
# per-shard series.
set -euo pipefail
B=${ODIN_BUILD:?}
# shellcheck source=../support/stack.sh
. "${ODIN_TOP:?}/tests/support/stack.sh"
stack_init ctl
export REDIS_URL="$ODIN_REDIS_URL" REDIS_PREFIX="ctl$$:"
ctl() { "$B/odin-ctl" "$@"; }

pa=$(port); pb=$(port); rp=$(port); pbadm=$(port)
A="ctl-a-$$"; Bid="ctl-b-$$"
start_shard a "$A" "$pa"
# B serves /health and /metrics on its admin listener: odin-ctl finds it
# through the lease's admin_addr
start_shard b "$Bid" "$pb" ADMIN_ADDR="127.0.0.1:$pbadm"
wait_until 10 health_ok "$pa" || fail "shard A did not start"
wait_until 10 health_ok "$pbadm" || fail "shard B did not start"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$pb/health")" = 404 ] \
    || fail "shard B serves /health on WS_ADDR despite ADMIN_ADDR"

# a client of A subscribed to BTC.trade
ws_watch watch "ws://127.0.0.1:$pa/ws" BTC.trade --watch-seconds 60 --watch-quiet
has_route() { [ "$(redis-cli -u "$REDIS_URL" SMEMBERS "${REDIS_PREFIX}route:BTC")" = "$A" ]; }
wait_until 10 has_route || fail "route BTC -> $A never registered"
has_leases() { [ "$(ctl shards | grep -c ' live ')" -eq 2 ]; }
wait_until 10 has_leases || fail "leases: $(ctl shards)"

# shards: table and JSON (env settings)
out=$(ctl shards)
grep -q "^$A .* live .*127.0.0.1:$pa" <<<"$out" || fail "shards table: $out"
[ "$(ctl --json shards | jq length)" -eq 2 ] || fail "shards --json"
# (the lease's counts are refreshed by the heartbeat, every SHARD_LEASE_TTL/3)
a_conns() { [ "$(ctl --json shards | jq -r ".[] | select(.shard==\"$A\") | .connections")" -eq 1 ]; }
wait_until 10 a_conns || fail "connections of A: $(ctl --json shards)"
[ "$(ctl --json shards | jq -r ".[] | select(.shard==\"$A\") | .pid")" -gt 1 ] || fail pid
# the same with flags instead of the environment
out=$(env -u REDIS_URL -u REDIS_PREFIX "$B/odin-ctl" --redis-url "$ODIN_REDIS_URL" \
      --redis-prefix="ctl$$:" shards)
grep -q "^$Bid " <<<"$out" || fail "flags: $out"
# ... and what the docs give as the redis-cli equivalent agrees
[ "$(redis-cli -u "$REDIS_URL" SMEMBERS "${REDIS_PREFIX}shards" | sort | xargs)" = \
  "$(ctl --json shards | jq -r '.[].shard' | sort | xargs)" ] || fail "redis-cli vs odin-ctl"

# routes / tokens
[ "$(ctl routes BTC)" = "$A" ] || fail "routes BTC: $(ctl routes BTC)"
[ "$(ctl --json routes BTC | jq -r '.members[0]')" = "$A" ] || fail "routes --json"
[ "$(ctl tokens "$A")" = "BTC" ] || fail "tokens A: $(ctl tokens "$A")"
[ -z "$(ctl tokens "$Bid")" ] || fail "tokens B not empty"
# unknown names: exit 1 and a message (the old odin-ctl printed nothing and
# exited 0)
rc=0; out=$(ctl routes NOPE 2>"$T/nope.err") || rc=$?
[ $rc -eq 1 ] && [ -z "$out" ] && grep -q "unknown token 'NOPE'" "$T/nope.err" \
    || fail "routes NOPE: exit $rc, $(cat "$T/nope.err")"
rc=0; out=$(ctl tokens no-such-shard 2>"$T/nope.err") || rc=$?
[ $rc -eq 1 ] && grep -q "unknown shard 'no-such-shard'" "$T/nope.err" \
    || fail "tokens no-such-shard: exit $rc, $(cat "$T/nope.err")"

# a router, so health has one to check and the routes have a consumer
start_router router "$rp" --kafka-brokers "$ODIN_KAFKA_BROKERS" --kafka-group "ctl-$$"
wait_until 15 health_ok "$rp" || fail "router did not start"
router_sees() { metrics "$rp" | grep "router_shard_queue_bytes{shard=\"$A\"}"; }
wait_until 10 router_sees || fail "router has no per-shard series"
m=$(metrics "$rp")
grep -q '^process_open_fds [0-9]' <<<"$m" || fail "router process_open_fds"
grep -q '^process_resident_memory_bytes [0-9]' <<<"$m" || fail "router rss"
grep -q '^odin_build_info{version="[^"]*",program="odin-router"} 1$' <<<"$m" || fail "router build_info"
grep -q "^router_drops_total{reason=\"queue_full\",shard=\"$A\"} 0$" <<<"$m" || fail "per-shard drops"

# health: both shards and the router
connected() { ctl --json health | jq -e "[.shards[] | select(.health.checks.router.status==\"up\")] | length == 2"; }
wait_until 10 connected || fail "shards never saw the router: $(ctl health)"
out=$(CTL_ROUTER_ADDR=127.0.0.1:$rp ctl health) || fail "health exit $?: $out"
grep -q "^$A .*healthy" <<<"$out" || fail "health table: $out"
grep -q "^$Bid .*healthy" <<<"$out" || fail "health table (B, ADMIN_ADDR): $out"
grep -q "^router .*200" <<<"$out" || fail "router health: $out"
[ "$(CTL_ROUTER_ADDR=127.0.0.1:$rp ctl --json health | jq -r .ok)" = true ] || fail "health --json"

# drain A through its pid (this host), then undrain
out=$(ctl drain "$A") || fail "drain exit: $out"
grep -q "draining" <<<"$out" || fail "drain: $out"
metric_is "$pa" shard_draining 1 || fail "not draining"
[ "$(ctl --json health | jq -r ".shards[] | select(.shard==\"$A\") | .status")" = draining ] || fail "health draining"
out=$(ctl drain "$A") && grep -q "already draining" <<<"$out" || fail "second drain toggled it back: $out"
ctl undrain "$A" >/dev/null || fail "undrain"
metric_is "$pa" shard_draining 0 || fail "still draining"

# a shard on another host: exit 3 and the command to run there
redis-cli -u "$REDIS_URL" HSET "${REDIS_PREFIX}shard:far-1" host otherhost pid 4242 \
    ws_addr 10.9.9.9:3002 endpoint unix:/x.sock >/dev/null
redis-cli -u "$REDIS_URL" PEXPIRE "${REDIS_PREFIX}shard:far-1" 60000 >/dev/null
rc=0; ctl drain far-1 >"$T/far.out" 2>"$T/far.err" || rc=$?
[ $rc -eq 3 ] || fail "remote drain exited $rc"
grep -q "kill -USR1 4242" "$T/far.err" || fail "remote drain hint: $(cat "$T/far.err")"
rc=0; ctl drain no-such-shard 2>/dev/null || rc=$?
[ $rc -eq 1 ] || fail "unknown shard exited $rc"

# usage and a dead Redis
rc=0; ctl 2>/dev/null || rc=$?; [ $rc -eq 2 ] || fail "no command: $rc"
rc=0; ctl routes 2>/dev/null || rc=$?; [ $rc -eq 2 ] || fail "routes without token: $rc"
rc=0; REDIS_URL=redis://127.0.0.1:1 ctl shards 2>"$T/dead.err" || rc=$?
[ $rc -eq 1 ] && grep -q "cannot connect to Redis at redis://127.0.0.1:1" "$T/dead.err" \
    || fail "dead redis: $rc $(cat "$T/dead.err")"
rc=0; REDIS_URL=localhost:6379 ctl shards 2>"$T/bad.err" || rc=$?
[ $rc -eq 2 ] && grep -q "no scheme" "$T/bad.err" || fail "bad REDIS_URL: $rc $(cat "$T/bad.err")"
# Redis Sentinel, as on the daemons (inside a compose container of the
# Sentinel override, odin-ctl sees their REDIS_SENTINELS): the master comes
# from the Sentinel, REDIS_URL pointing nowhere
sport=$(port)
printf 'port %s\nbind 127.0.0.1\nsentinel monitor odin 127.0.0.1 %s 1\n' "$sport" \
    "${ODIN_REDIS_URL##*:}" >"$T/sentinel.conf"
spawn sentinel redis-server "$T/sentinel.conf" --sentinel
wait_until 10 redis-cli -p "$sport" ping || fail "sentinel did not start"
REDIS_URL=redis://127.0.0.1:1 REDIS_SENTINELS="127.0.0.1:$sport" ctl shards >"$T/sent.out" 2>"$T/sent.err" ||
    fail "odin-ctl through Sentinel: $(cat "$T/sent.err")"
grep -q -e "$A" -e "$Bid" "$T/sent.out" || fail "odin-ctl through Sentinel: $(cat "$T/sent.out")"
echo "ctl: ok"
