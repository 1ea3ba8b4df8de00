#!/usr/bin/env bash
# Benchmark 4: fan-out of hot tokens to thousands of subscribers.
#
#   bench/fanout.sh              (full size; settings below, as environment)
#
# SHARDS shards, one router (targeted, KAFKA_BATCH_TIMEOUT_MS=0 and
# fetch.wait.max.ms=1 so that batching adds no fixed delay), HOT hot tokens
# HOT0..: every client subscribes to <HOTi>.trade for all of them, so every
# record goes to every client.  odin-publish sends records for the hot tokens
# at a fixed rate (linger 0, publish_us in each value); odin-loadgen measures
# receive time - publish_us for every delivery.
#
# 1. Latency at LAT_DELIVERIES/s (default 50,000/s), one run per shape
#    "<subscribers>x<records/s>" in LAT_SHAPES: the same delivery rate made of
#    big bursts (5000 subscribers x 10 records/s) or small ones.
# 2. Maximum deliveries/s: MAX_CONNS subscribers, rates MAX_RATES records/s
#    for MAX_S seconds each (offered = rate x MAX_CONNS).  Achieved =
#    deliveries received / (last delivery - publisher start); the last
#    delivery is when the loadgen workers go idle (CPU sampled every 100 ms).
#    A fresh loadgen per step gives each step its own latency histogram.
set -euo pipefail
SHARDS=${SHARDS:-4}
HOT=${HOT:-5}
LAT_SHAPES=${LAT_SHAPES:-5000x10 1000x50 250x200}
LAT_S=${LAT_S:-20}
MAX_CONNS=${MAX_CONNS:-20000}
MAX_RATES=${MAX_RATES:-5 10 25 50}
MAX_S=${MAX_S:-10}
LG_PROCS=${LG_PROCS:-2}
LAT_TARGET_MS=5
MAX_TARGET=500000

source "$(dirname "$0")/lib.sh"
bench_init fanout
start_redis
start_devbroker 8
start_shards "$SHARDS"
start_router router KAFKA_GROUP="fanout-$$" KAFKA_OFFSET_RESET=latest KAFKA_BATCH_TIMEOUT_MS=0
wait_until 60 "partition assignment" router_assigned_log router
HOT_TOKENS=$(seq -s, -f 'HOT%g' 0 $((HOT - 1)))

# lg_wait_idle: sample the loadgen workers' CPU every 100 ms until the
# publisher ($PUB_PID) has exited and the workers were idle (< 2 ticks per
# sample) for 1 s, or MAX_DRAIN seconds; sets T_LAST_BUSY.
lg_wait_idle() {
    local prev cur t idle=0 end=$((SECONDS + ${MAX_DRAIN:-120}))
    prev=$(tree_ticks "$LOADGEN_PID"); T_LAST_BUSY=$(now_s)
    while [ "$SECONDS" -lt "$end" ]; do
        sleep 0.1
        cur=$(tree_ticks "$LOADGEN_PID"); t=$(now_s)
        if [ $((cur - prev)) -ge 2 ]; then T_LAST_BUSY=$t; idle=0; else idle=$((idle + 1)); fi
        prev=$cur
        if ! kill -0 "$PUB_PID" 2>/dev/null && [ "$idle" -ge 10 ]; then return 0; fi
    done
    bench_log "loadgen still busy after ${MAX_DRAIN:-120}s"
}

# one_run NAME CONNS RATE SECONDS: clients up, publish, wait, summary -> sets V[...]
declare -A V
one_run() {
    local name=$1 conns=$2 rate=$3 secs=$4
    wait_until 60 "previous clients gone" subs_zero
    start_loadgen "lg-$name" LG_CONNECTIONS="$conns" LG_MODE=all LG_TOKENS="$HOT_TOKENS" \
        LG_CATEGORIES=trade LG_RATE=10000 LG_PROCESSES="$LG_PROCS" LG_DURATION_S=3600 \
        LG_HEARTBEAT_S=0
    wait_until 120 "$conns clients subscribed" subs_active $((conns * HOT))
    local sut0 lg0 sut1 lg1 t0 sent
    sut0=$(cpu_ticks "$ROUTER_PID" "${SHARD_PIDS[@]}"); lg0=$(tree_ticks "$LOADGEN_PID")
    perf_start "$name"
    t0=$(now_s)
    bench_spawn "pub-$name" env KAFKA_BROKERS="$KAFKA_BROKERS" LOG_LEVEL=warn \
        PUBLISH_TOKENS="$HOT_TOKENS" PUBLISH_TOPICS=odin.trades PUBLISH_RATE="$rate" \
        PUBLISH_DURATION_S="$secs" PUBLISH_LINGER_MS=0 "$BUILD/odin-publish"
    PUB_PID=$BENCH_LAST_PID
    lg_wait_idle
    wait "$PUB_PID" || bench_die "odin-publish ($name) failed"
    sut1=$(cpu_ticks "$ROUTER_PID" "${SHARD_PIDS[@]}"); lg1=$(tree_ticks "$LOADGEN_PID")
    perf_stop "$name"
    sent=$(jq .sent "$RUN_DIR/logs/pub-$name.out")
    wait_until 60 "loadgen to count every delivery" lg_total_ge "lg-$name" $((sent * conns))
    kill -TERM "$LOADGEN_PID"; wait_loadgen 120 || bench_die "loadgen ($name) failed"
    local j="$RUN_DIR/lg-$name.json" wall
    # flow time: until the loadgen went idle, at least the publishing time
    wall=$(awk -v a="$(fsub "$T_LAST_BUSY" "$t0")" -v b="$(jq .elapsed_s "$RUN_DIR/logs/pub-$name.out")" \
        'BEGIN{printf "%.3f", (a + 0 > b + 0 ? a : b)}')
    V[$name.offered]=$((rate * conns))
    V[$name.expected]=$((sent * conns))
    V[$name.msgs]=$(jq .messages "$j")
    V[$name.achieved]=$(awk -v m="${V[$name.msgs]}" -v w="$wall" 'BEGIN{printf "%.0f", m / w}')
    V[$name.p50]=$(jq .latency_ms.p50 "$j"); V[$name.p99]=$(jq .latency_ms.p99 "$j")
    V[$name.p999]=$(jq .latency_ms.p999 "$j"); V[$name.max]=$(jq .latency_ms.max "$j")
    V[$name.disc]=$(jq .disconnects_unexpected "$j")
    V[$name.sut_pct]=$(awk -v c=$((sut1 - sut0)) -v hz="$CLK_TCK" -v w="$wall" 'BEGIN{printf "%.0f", c / hz / w * 100}')
    V[$name.lg_pct]=$(awk -v c=$((lg1 - lg0)) -v hz="$CLK_TCK" -v w="$wall" 'BEGIN{printf "%.0f", c / hz / w * 100}')
    V[$name.us]=$(awk -v c=$((sut1 - sut0)) -v hz="$CLK_TCK" -v m="${V[$name.msgs]}" 'BEGIN{printf "%.2f", c / hz / m * 1e6}')
    bench_log "$name: offered ${V[$name.offered]}/s, received ${V[$name.msgs]}/${V[$name.expected]} in ${wall}s = ${V[$name.achieved]}/s; latency p50 ${V[$name.p50]} p99 ${V[$name.p99]} p99.9 ${V[$name.p999]} ms; CPU router+shards ${V[$name.sut_pct]}% loadgen ${V[$name.lg_pct]}%"
    extra "$name" "$(jq -n --argjson conns "$conns" --argjson rate "$rate" --argjson wall "$wall" \
        --argjson sent "$sent" --argjson achieved "${V[$name.achieved]}" \
        --argjson sut "${V[$name.sut_pct]}" --argjson lgp "${V[$name.lg_pct]}" --argjson us "${V[$name.us]}" \
        --slurpfile lg "$j" '{subscribers: $conns, records_per_s: $rate, records_sent: $sent,
          offered_deliveries_per_s: ($conns * $rate), achieved_deliveries_per_s: $achieved,
          flow_s: $wall, sut_cpu_pct: $sut, loadgen_cpu_pct: $lgp, sut_cpu_us_per_delivery: $us,
          loadgen: ($lg[0] | del(.definitions))}')"
}

for shape in $LAT_SHAPES; do
    subs=${shape%x*}; rate=${shape#*x}
    bench_log "latency: $subs subscribers x $rate records/s = $((subs * rate)) deliveries/s"
    one_run "lat-$shape" "$subs" "$rate" "$LAT_S"
done
for rate in $MAX_RATES; do
    bench_log "max: $MAX_CONNS subscribers x $rate records/s"
    one_run "max-$rate" "$MAX_CONNS" "$rate" "$MAX_S"
done

# ---- table
first=1
for shape in $LAT_SHAPES; do
    n="lat-$shape"; subs=${shape%x*}; rate=${shape#*x}
    label="latency $subs subs x $rate rec/s"
    if [ "$first" = 1 ]; then tgt="<= $LAT_TARGET_MS"; st=$(judge "${V[$n.p99]}" le $LAT_TARGET_MS); first=0
    else tgt=""; st="($(judge "${V[$n.p99]}" le $LAT_TARGET_MS))"; fi
    row "$label: deliveries/s" "${V[$n.achieved]}"
    row "$label: p50 / p99.9 ms" "${V[$n.p50]} / ${V[$n.p999]}"
    row "$label: p99 ms" "${V[$n.p99]}" "$tgt" "$st"
    row "$label: lost / disconnects" "$((V[$n.expected] - V[$n.msgs])) / ${V[$n.disc]}" "0 / 0"
done
best=0; best_name=
for rate in $MAX_RATES; do
    n="max-$rate"
    row "max $MAX_CONNS subs x $rate rec/s: offered -> achieved/s" "${V[$n.offered]} -> ${V[$n.achieved]}"
    row "max $MAX_CONNS subs x $rate rec/s: p50 / p99 ms" "${V[$n.p50]} / ${V[$n.p99]}"
    row "max $MAX_CONNS subs x $rate rec/s: CPU % sut / loadgen" "${V[$n.sut_pct]} / ${V[$n.lg_pct]}"
    [ "${V[$n.achieved]}" -gt "$best" ] && { best=${V[$n.achieved]}; best_name=$n; }
    [ "$((V[$n.expected] - V[$n.msgs]))" -eq 0 ] && [ "${V[$n.disc]}" -eq 0 ] ||
        row "max $MAX_CONNS subs x $rate rec/s: lost / disconnects" "$((V[$n.expected] - V[$n.msgs])) / ${V[$n.disc]}" "0 / 0" "MISSED"
done
row "max client deliveries/s (best step)" "$best" ">= $MAX_TARGET" "$(judge "$best" ge $MAX_TARGET)"
extra summary "$(jq -n --argjson best "$best" --arg step "$best_name" '{max_deliveries_per_s: $best, best_step: $step}')"
extra params "$(jq -n --argjson s "$SHARDS" --argjson h "$HOT" --arg shapes "$LAT_SHAPES" \
    --argjson mc "$MAX_CONNS" --arg mr "$MAX_RATES" --argjson ls "$LAT_S" --argjson ms "$MAX_S" \
    '{shards: $s, hot_tokens: $h, latency_shapes: $shapes, latency_seconds: $ls,
      max_connections: $mc, max_rates: $mr, max_seconds: $ms}')"
finish_result
