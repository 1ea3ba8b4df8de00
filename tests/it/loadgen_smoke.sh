#!/usr/bin/env bash
# odin-loadgen against real odin-shard processes (and, for live messages,
# odin-router + the shared odin-devbroker).  Run by tools/run-tests.sh it,
# which exports ODIN_BUILD, ODIN_TMP, ODIN_REDIS_URL, ODIN_KAFKA_BROKERS.
#
# 1. 400 connections over 2 workers, 2 source addresses and 2 shards: every
#    connection upgrades and gets its subscription_ack (LG_EXPECT_ALL).
# 2. A target nobody listens on: exit 3, every connection counted "refused".
# 3. Live: 100 records (10 tokens x token_seq 1..10, publish_us) through
#    devbroker -> router -> shards -> 400 clients (40 per token): exactly
#    4000 deliveries, no gaps, no duplicates, 4000 latency samples.
# Waits poll real state (HTTP health, Prometheus counters), never fixed sleeps.
set -euo pipefail

B=${ODIN_BUILD:?}
# shellcheck source=../support/stack.sh
. "${ODIN_TOP:?}/tests/support/stack.sh"
stack_init loadgen_smoke
STACK_LOGS="*.log *.json"
STACK_LOG_LINES=15

# jq_check FILE EXPR : EXPR must be true on the summary
jq_check() {
    jq -e "$2" "$1" >/dev/null || fail "summary check '$2' failed: $(jq -c 'del(.definitions)' "$1")"
}

# ---- two shards ----------------------------------------------------------
start_shards 2 "lgsmoke$$" REDIS_URL="$ODIN_REDIS_URL" WS_IP_RATE=100000 WS_IP_BURST=100000 WS_IP_MAX_PENDING=0
P1=${SHARD_PORTS[0]}; P2=${SHARD_PORTS[1]}
wait_for 20 "shard 1 HTTP" http_up "$P1"
wait_for 20 "shard 2 HTTP" http_up "$P2"

TOKENS=$(seq -s, -f "lgs$$t%g" 0 9)
common_env=(LG_TARGETS="127.0.0.1:$P1,127.0.0.1:$P2" LG_PROCESSES=2
            LG_SOURCE_ADDRS=127.0.0.1-127.0.0.2 LG_TOKENS="$TOKENS" LG_CATEGORIES=trade
            LG_MODE=single LG_PROGRESS=0 LG_RATE=2000)

# ---- 1: ramp + acks ---------------------------------------------------------
rc=0
env "${common_env[@]}" LG_CONNECTIONS=400 LG_DURATION_S=0 LG_EXPECT_ALL=1 \
    LG_SUMMARY_FILE="$T/ramp.json" "$B/odin-loadgen" >"$T/ramp.out" 2>"$T/ramp.log" || rc=$?
[ "$rc" -eq 0 ] || fail "loadgen (ramp) exited $rc"
cmp -s "$T/ramp.out" "$T/ramp.json" || fail "stdout summary differs from LG_SUMMARY_FILE"
jq_check "$T/ramp.json" '.connections_target == 400 and .connected == 400 and .subscribed == 400'
jq_check "$T/ramp.json" '.acks == 400 and .ack_partial == 0 and .ack_timeouts == 0'
jq_check "$T/ramp.json" '[.connect_errors[]] | add == 0'
jq_check "$T/ramp.json" '.workers == 2 and .workers_failed == 0 and .disconnects_unexpected == 0'
jq_check "$T/ramp.json" '.errors_received == 0 and .source_addrs == 2'
echo "ramp ok: $(jq -c '{connected, subscribed, ramp_s, connect_rate_per_s}' "$T/ramp.json")"

# ---- 2: nobody listening -> counted, exit 3 --------------------------------------
DEAD=$(port)
rc=0
env "${common_env[@]}" LG_TARGETS="127.0.0.1:$DEAD" LG_CONNECTIONS=20 LG_DURATION_S=0 \
    LG_EXPECT_ALL=1 LOG_LEVEL=error "$B/odin-loadgen" >"$T/dead.json" 2>"$T/dead.log" || rc=$?
[ "$rc" -eq 3 ] || fail "loadgen against a closed port exited $rc, want 3"
jq_check "$T/dead.json" '.connect_errors.refused == 20 and .connected == 0'
echo "refused ok"

# ---- 3: live messages through devbroker + router ---------------------------------
HP=$(port)
# A topic of our own (category trade), so records other tests left on the
# shared broker (e.g. broadcast-key markers) cannot reach these clients.
TOPIC="lgsmoke-$$.trades"
topic_router router "$HP" "lgsmoke-$$" "$TOPIC" REDIS_URL="$ODIN_REDIS_URL"

# both shards' sum of one series
sum2() { echo $(( $(metric0 "$P1" "$1") + $(metric0 "$P2" "$1") )); }
replies_base=$(sum2 ws_replies_sent_total)
spawn_out live env "${common_env[@]}" LG_CONNECTIONS=400 LG_DURATION_S=600 LG_HEARTBEAT_S=1 \
    LG_SUMMARY_FILE="$T/live.json" "$B/odin-loadgen"
LG=$SPAWNED
subs_ready() { [ "$(sum2 ws_subscriptions_active)" -eq 400 ]; }
wait_for 30 "400 subscriptions on the shards" subs_ready
# the shards write their routes after the acks: every token each one holds
# is in its reverse index before anything is produced
routes_ready() {
    local i port held
    for i in 1 2; do
        port=$([ $i = 1 ] && echo "$P1" || echo "$P2")
        held=$(metric0 "$port" ws_tokens_active)
        [ "$held" -gt 0 ] || return 1
        [ "$(redis-cli -u "$ODIN_REDIS_URL" SCARD "odin:shard:lgsmoke$$-$i:tokens")" = "$held" ] || return 1
    done
}
wait_for 30 "the shards' routes in Redis" routes_ready

base=$(sum2 ws_messages_sent_total)
python3 - "$$" >"$T/records.tsv" <<'PY'
import json, sys, time
pid = sys.argv[1]
for n in range(1, 11):
    for t in range(10):
        v = {"type": "TRADE_EXECUTED", "timestamp": int(time.time() * 1000),
             "data": {"price": 1.5, "note": "x \"channel\":\"EVIL.trade\" y",
                      "token_seq": n, "publish_us": int(time.time() * 1e6)}}
        print("lgs%st%d\t%s" % (pid, t, json.dumps(v)))
PY
produce "$TOPIC" "$T/records.tsv" || fail "kcat could not produce"
delivered() { [ $(( $(sum2 ws_messages_sent_total) - base )) -ge 4000 ]; }
wait_for 60 "4000 deliveries by the shards" delivered
# 400 acks + at least one pong per connection (heartbeat every second)
replied() { [ $(( $(sum2 ws_replies_sent_total) - replies_base )) -ge 800 ]; }
wait_for 30 "heartbeat replies" replied

kill -TERM "$LG"
rc=0
wait "$LG" || rc=$?
[ "$rc" -eq 0 ] || fail "loadgen (live) exited $rc after SIGTERM"
jq_check "$T/live.json" '.subscribed == 400 and .disconnects_unexpected == 0'
jq_check "$T/live.json" '.messages == 4000 and .token_seq_messages == 4000'
jq_check "$T/live.json" '.gaps == 0 and .duplicates == 0 and .unknown_channel == 0 and .parse_errors == 0'
jq_check "$T/live.json" '.latency_ms.samples == 4000 and .no_publish_us == 0 and .latency_ms.max > 0'
jq_check "$T/live.json" '.heartbeats_sent > 0 and .pongs > 0'
echo "live ok: $(jq -c '{messages, gaps, duplicates, latency_ms}' "$T/live.json")"
