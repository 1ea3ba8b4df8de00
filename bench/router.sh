#!/usr/bin/env bash
# Benchmark 3: router throughput, records/s from the broker into shard sockets.
#
#   bench/router.sh              (full size; settings below, as environment)
#
# SHARDS shards, TOKENS idle WebSocket clients: client i holds <TOK i>.analytics
# on shard i % SHARDS, which registers route TOK i -> that shard.  RECORDS
# records (uniform over the tokens) are pre-produced on odin.trades, so every
# record has exactly one target shard, which receives it, decodes it and drops
# it (no client holds the .trade channel): the client write path is left out
# and the router is what is measured.  Per mode, a router with a fresh group
# reads the backlog from the earliest offset:
#   records/s = RECORDS / (shards have received every record - partitions assigned)
# (the ~3 s consumer-group join of the dev broker is excluded; the end is
# polled every 100 ms).  Broadcast (every record to all shards) is run on the
# same backlog for reference.
set -euo pipefail
SHARDS=${SHARDS:-8}
TOKENS=${TOKENS:-10000}
RECORDS=${RECORDS:-2000000}
PARTITIONS=${PARTITIONS:-256}
MODES=${MODES:-targeted broadcast}
SHARD_QUEUE=${SHARD_QUEUE:-1073741824}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
TARGET=300000

source "$(dirname "$0")/lib.sh"
bench_init router
start_redis
start_devbroker "$PARTITIONS"
start_shards "$SHARDS"

bench_log "producing $RECORDS records over $TOKENS tokens"
publish backlog PUBLISH_COUNT="$RECORDS" PUBLISH_TOPICS=odin.trades \
    PUBLISH_TOKEN_COUNT="$TOKENS" PUBLISH_SEED=43 PUBLISH_LINGER_MS=20
[ "$(jq .sent "$RUN_DIR/logs/backlog.out")" -eq "$RECORDS" ] || bench_die "backlog not fully produced"

bench_log "connecting $TOKENS clients (routes only)"
start_loadgen lg LG_CONNECTIONS="$TOKENS" LG_MODE=single LG_TOKEN_COUNT="$TOKENS" \
    LG_CATEGORIES=analytics LG_RATE=5000 LG_PROCESSES=2 LG_DURATION_S=3600 LG_PROGRESS=0
wait_until 120 "$TOKENS subscriptions" subs_active "$TOKENS"
wait_until 30 "routes registered" eval '[ "$(rcli --scan --pattern "odin:route:*" | wc -l)" -ge "$TOKENS" ]'
read -r nroutes maxcard < <(routes_check)
[ "$nroutes" -eq "$TOKENS" ] && [ "$maxcard" -eq 1 ] ||
    bench_die "routes: $nroutes tokens, max SCARD $maxcard (want $TOKENS, 1)"

declare -A R
for mode in $MODES; do
    want=$RECORDS
    [ "$mode" = broadcast ] && want=$((RECORDS * SHARDS))
    base=$(shards_metric shard_records_received_total)
    start_router "router-$mode" KAFKA_GROUP="bench3-$mode-$$" KAFKA_OFFSET_RESET=earliest \
        DISPATCH_MODE="$mode" SHARD_QUEUE_BYTES="$SHARD_QUEUE"
    r_c0=$(cpu_ticks "$ROUTER_PID"); s_c0=$(cpu_ticks "${SHARD_PIDS[@]}")
    wait_until 60 "partition assignment" router_assigned_log "router-$mode"
    t_start=$(log_ts_epoch "$RUN_DIR/logs/router-$mode.log" "partitions assigned")
    bench_log "$mode: consuming the backlog"
    # probe the router's own HTTP server while it works (bounded loop)
    ( for ((k = 0; k < 3000; k++)); do
          curl -s -o /dev/null -m 10 -w '%{time_total}\n' "http://127.0.0.1:$ROUTER_HTTP/health"
          sleep 0.1
      done ) >"$RUN_DIR/health-$mode.txt" 2>/dev/null &
    PROBE_PID=$!
    perf_start "r-$mode"
    end=$((SECONDS + RUN_TIMEOUT))
    while :; do
        got=$(( $(shards_metric shard_records_received_total) - base ))
        t_end=$(now_s)
        [ "$got" -ge "$want" ] && break
        [ "$SECONDS" -lt "$end" ] || bench_die "$mode: shards got $got of $want after ${RUN_TIMEOUT}s"
        sleep 0.1
    done
    r_c1=$(cpu_ticks "$ROUTER_PID"); s_c1=$(cpu_ticks "${SHARD_PIDS[@]}")
    perf_stop "r-$mode"
    kill "$PROBE_PID" 2>/dev/null || true; wait "$PROBE_PID" 2>/dev/null || true
    R[$mode.health_ms]=$(sort -g "$RUN_DIR/health-$mode.txt" | tail -n 1 | awk '{printf "%.0f", $1 * 1000}')
    curl -s "http://127.0.0.1:$ROUTER_HTTP/metrics" >"$RUN_DIR/router-$mode.metrics"
    drops=$(metric "$ROUTER_HTTP" router_drops_total)
    recs=$(metric "$ROUTER_HTTP" router_records_total)
    batches=$(metric "$ROUTER_HTTP" router_batches_total)
    frames=$(metric "$ROUTER_HTTP" router_frames_sent_total)
    stop_router
    [ "$recs" -ge "$RECORDS" ] || bench_die "$mode: router consumed $recs of $RECORDS"
    wall=$(fsub "$t_end" "$t_start")
    R[$mode.rate]=$(fdiv "$RECORDS" "$wall")
    R[$mode.router_us]=$(awk -v c=$((r_c1 - r_c0)) -v hz="$CLK_TCK" -v n="$RECORDS" 'BEGIN{printf "%.2f", c / hz / n * 1e6}')
    R[$mode.shard_us]=$(awk -v c=$((s_c1 - s_c0)) -v hz="$CLK_TCK" -v n="$RECORDS" 'BEGIN{printf "%.2f", c / hz / n * 1e6}')
    R[$mode.router_core]=$(awk -v c=$((r_c1 - r_c0)) -v hz="$CLK_TCK" -v n="$RECORDS" 'BEGIN{printf "%.0f", n / (c / hz)}')
    R[$mode.drops]=$drops
    bench_log "$mode: $RECORDS records in ${wall}s = ${R[$mode.rate]}/s; router ${R[$mode.router_us]} us/record; drops $drops"
    extra "$mode" "$(jq -n --argjson rate "${R[$mode.rate]}" --argjson wall "$wall" \
        --argjson ru "${R[$mode.router_us]}" --argjson su "${R[$mode.shard_us]}" \
        --argjson drops "$drops" --argjson batches "$batches" --argjson frames "$frames" \
        --argjson got "$got" '{records_per_s: $rate, wall_s: $wall, router_cpu_us_per_record: $ru,
          shards_cpu_us_per_record: $su, router_drops: $drops, batches: $batches,
          frames_sent: $frames, shard_records_received: $got}')"
done
kill -TERM "$LOADGEN_PID"; wait_loadgen 60 || bench_die "loadgen failed"

for mode in $MODES; do
    if [ "$mode" = targeted ]; then
        row "targeted: records/s into shard sockets" "${R[$mode.rate]}" ">= $TARGET" "$(judge "${R[$mode.rate]}" ge $TARGET)"
    else
        row "$mode: records/s into shard sockets (x$SHARDS copies)" "${R[$mode.rate]}"
    fi
    row "$mode: router CPU us per record" "${R[$mode.router_us]}"
    row "$mode: shards CPU us per record (decode, drop)" "${R[$mode.shard_us]}"
    row "$mode: records per router CPU second" "${R[$mode.router_core]}"
    row "$mode: router drops" "${R[$mode.drops]}" "0" "$(judge "${R[$mode.drops]}" le 0)"
    row "$mode: slowest router /health answer during the run, ms" "${R[$mode.health_ms]}"
done
extra params "$(jq -n --argjson s "$SHARDS" --argjson t "$TOKENS" --argjson r "$RECORDS" \
    --argjson p "$PARTITIONS" '{shards: $s, tokens: $t, records: $r, partitions_per_topic: $p}')"
finish_result
