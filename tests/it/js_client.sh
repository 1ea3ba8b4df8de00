#!/usr/bin/env bash
# The JavaScript client library (clients/js) resumes across a shard crash
# with no gap and no duplicate: odin-router + 3 odin-shards (KAFKA_BROKERS
# set, so they can replay), JS_CLIENTS Node clients (OdinClient with the
# `ws` package) subscribed to JS_TOKENS tokens, all on shard 1; odin-publish
# produces at a steady rate; once the clients have received some records
# shard 1 is SIGKILLed; the clients back off, reconnect to shard 2 or 3 and
# resume there.  After the producer finished, what Kafka holds for the
# tokens is read back with kcat and each client's stream, per token, must be
# exactly that list of (partition, offset): nothing missing, nothing twice,
# in order, no refetch.
set -euo pipefail
B=${ODIN_BUILD:?}
top=${ODIN_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
js=${JS_CLIENT_DIR:-$top/clients/js}   # another copy: to check the test fails on a broken library
# shellcheck source=../support/stack.sh
. "$top/tests/support/stack.sh"
stack_init js_client
N=${JS_CLIENTS:-6}
NTOK=${JS_TOKENS:-4}
RATE=${JS_RATE:-150}
COUNT=${JS_COUNT:-1500}
command -v node >/dev/null || fail "node is not installed (tools/deps.sh)"
[ -d "$js/node_modules/ws" ] || fail "clients/js/node_modules missing (tools/deps.sh runs npm ci)"

export REDIS_URL="$ODIN_REDIS_URL" REDIS_PREFIX="jsc$$:" KAFKA_BROKERS="$ODIN_KAFKA_BROKERS"
tokens=$(for i in $(seq 0 $((NTOK - 1))); do printf 'JSC%s_%s,' "$$" "$i"; done); tokens=${tokens%,}

rp=$(port)
# earliest: a new group starts at the beginning, so no record produced
# between the assignment and the first fetch can be skipped (the tokens are
# new: nothing of theirs is in Kafka before the test produces)
start_router router "$rp" --kafka-group "jsc-$$" \
    --discovery-interval-ms 200 --kafka-offset-reset earliest \
    --kafka-options "fetch.wait.max.ms=1,topic.metadata.refresh.interval.ms=1000,session.timeout.ms=6000"
start_shards 3 "jsc-$$" SHARD_LEASE_TTL=2
for p in "${SHARD_PORTS[@]}"; do wait_until 15 health_ok "$p" || fail "shard on $p did not start"; done
wait_until 20 health_ok "$rp" || fail "router did not start"
# the router has its partitions and serves the three shards
wait_until 30 router_serves "$rp" 3 || fail "router not ready: $(metrics "$rp" | grep -E 'assigned|queue_bytes')"

spawn_out clients bash -c 'cd "$1" && exec node test/it/resume_clients.mjs "${@:2}"' _ \
    "$js" "$T" "$N" "$tokens" "$(IFS=,; echo "${SHARD_URLS[*]}")"
cpid=$SPAWNED
await_marker 30 "$T/ready" "$cpid" "clients (ready)"
routes_on_1() {
    local t
    for t in ${tokens//,/ }; do
        [ "$(redis-cli -u "$REDIS_URL" SMEMBERS "${REDIS_PREFIX}route:$t")" = "jsc-$$-1" ] || return 1
    done
}
wait_until 10 routes_on_1 || fail "routes of the tokens are not on shard 1"

spawn_out publish "$B/odin-publish" --publish-rate "$RATE" --publish-count "$COUNT" --publish-tokens "$tokens" \
    --publish-topics odin.trades --publish-linger-ms 1
ppid=$SPAWNED
# mid-stream: once the clients have a quarter of what will be produced
progress() { [ "$(cat "$T/progress" 2>/dev/null || echo 0)" -ge $((N * COUNT / 4)) ]; }
wait_until 60 progress || fail "clients received too little: $(cat "$T/progress" 2>/dev/null)"
kill -KILL "${SHARD_PIDS[0]}"
echo "shard 1 killed after $(cat "$T/progress") messages"
wait "$ppid" || fail "odin-publish failed: $(tail -3 "$T/publish.log")"
cat "$T/publish.out"

# what Kafka holds for our tokens: key, partition, offset
kafka_expected odin.trades "^JSC$$_[0-9]+ " "$COUNT"

rc=0; wait "$cpid" || rc=$?
cat "$T/clients.out"
[ $rc -eq 0 ] || fail "clients: exit $rc; $(tail -5 "$T/clients.log")"
jq -e '.ok and .missing == 0 and .extra == 0 and .duplicates_delivered == 0 and .refetches == 0' \
    "$T/clients.out" >/dev/null || fail "summary"
echo "resume: $(jq -c '{clients, tokens, produced_per_client, received, missing, extra, duplicates_delivered, duplicates_dropped, resumes, replayed, refetches}' "$T/clients.out")"

# Refusals: real shards answer reconnect_error and the library emits exactly
# one refetch per channel with that code, then goes live.  Shard 4 reads
# Kafka but replays at most 10 records; shard 5 has no Kafka.
p4=$(port); p5=$(port)
start_shard shard4 "jsc-$$-4" "$p4" RESUME_MAX_RECORDS=10
start_shard shard5 "jsc-$$-5" "$p5" -u KAFKA_BROKERS
for p in "$p4" "$p5"; do wait_until 15 health_ok "$p" || fail "shard on $p did not start"; done
read -r t0 part0 _ < <(grep "^JSC$$_0 " "$T/expected" | head -1)
read -r t1 part1 _ < <(grep "^JSC$$_1 " "$T/expected" | head -1)
cases=$(jq -cn --arg u4 "ws://127.0.0.1:$p4/ws" --arg u5 "ws://127.0.0.1:$p5/ws" \
    --arg c0 "$t0.trade" --arg c1 "$t1.trade" --argjson p0 "$part0" --argjson p1 "$part1" '[
  {url: $u4, want: "TOO_FAR_BEHIND",     channels: {($c0): {p: $p0, seq: -1}, ($c1): {p: $p1, seq: -1}}},
  {url: $u4, want: "INVALID_POSITION",   channels: {($c0): {p: 9999, seq: 0}}},
  {url: $u5, want: "RESUME_UNAVAILABLE", channels: {($c0): {p: $p0, seq: 0}, ($c1): {p: $p1, seq: 0}}}
]')
(cd "$js" && node test/it/refetch_codes.mjs "$cases") >"$T/refetch.out" 2>"$T/refetch.log" ||
    { cat "$T/refetch.out"; fail "refetch codes: $(tail -3 "$T/refetch.log")"; }
cat "$T/refetch.out"
echo "PASS: $(jq -c '{clients, tokens, produced_per_client, received, missing, extra, duplicates_delivered, duplicates_dropped, resumes, replayed, refetches}' "$T/clients.out")"
