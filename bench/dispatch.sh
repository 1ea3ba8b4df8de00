#!/usr/bin/env bash
# Benchmark 2: targeted vs broadcast dispatch, same backlog, same clients.
#
#   bench/dispatch.sh            (full size; settings below, as environment)
#
# SHARDS shards; TOKENS WebSocket clients, client i subscribed to
# <TOK i>.trade on shard i % SHARDS, so every token lives on exactly one
# shard (checked in Redis: SCARD odin:route:* is 1).  RECORDS records
# (uniform over the TOKENS tokens, topic odin.trades) are produced once
# before any router runs.  Then, per mode, a router with a fresh consumer
# group reads the whole backlog from the earliest offset and the run ends
# when the shards have queued every record to its client.
#   throughput  = delivered / (last delivery - partition assignment)
#   CPU/message = (router + shards CPU time during the run) / delivered
# The loadgen (one connection per token) is restarted per mode so each mode
# gets its own summary (gaps, duplicates, latency of the backlog).
# SHARD_QUEUE_BYTES is raised (SHARD_QUEUE, 1 GiB) so that neither mode drops
# records because the router reads the backlog faster than shards write to
# clients; with SHARD_QUEUE=8388608 (the router's default) broadcast drops.
set -euo pipefail
SHARDS=${SHARDS:-8}
TOKENS=${TOKENS:-10000}
RECORDS=${RECORDS:-1000000}
PARTITIONS=${PARTITIONS:-128}
MODES=${MODES:-targeted broadcast}
LG_PROCS=${LG_PROCS:-2}
SHARD_QUEUE=${SHARD_QUEUE:-1073741824}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}        # seconds per mode, bound

source "$(dirname "$0")/lib.sh"
bench_init dispatch
start_redis
start_devbroker "$PARTITIONS"
start_shards "$SHARDS"

bench_log "producing $RECORDS records over $TOKENS tokens"
publish backlog PUBLISH_COUNT="$RECORDS" PUBLISH_TOPICS=odin.trades \
    PUBLISH_TOKEN_COUNT="$TOKENS" PUBLISH_SEED=42 PUBLISH_LINGER_MS=20
[ "$(jq .sent "$RUN_DIR/logs/backlog.out")" -eq "$RECORDS" ] || bench_die "backlog not fully produced"

declare -A R   # results per mode: R[mode.key]
for mode in $MODES; do
    wait_until 60 "previous clients gone" subs_zero
    bench_log "$mode: connecting $TOKENS clients"
    start_loadgen "lg-$mode" LG_CONNECTIONS="$TOKENS" LG_MODE=single LG_TOKEN_COUNT="$TOKENS" \
        LG_CATEGORIES=trade LG_RATE=5000 LG_PROCESSES="$LG_PROCS" LG_DURATION_S=3600 \
        LG_HEARTBEAT_S=10
    wait_until 120 "$TOKENS subscriptions" subs_active "$TOKENS"
    wait_until 30 "routes registered" eval '[ "$(rcli --scan --pattern "odin:route:*" | wc -l)" -ge "$TOKENS" ]'
    read -r nroutes maxcard < <(routes_check)
    [ "$nroutes" -eq "$TOKENS" ] && [ "$maxcard" -eq 1 ] ||
        bench_die "routes: $nroutes tokens, max SCARD $maxcard (want $TOKENS, 1)"

    base=$(shards_metric ws_messages_sent_total)
    lg_c0=$(tree_ticks "$LOADGEN_PID")
    sys_c0=$(cpu_ticks "$DEVBROKER_PID" "$REDIS_PID")
    start_router "router-$mode" KAFKA_GROUP="bench-$mode-$$" KAFKA_OFFSET_RESET=earliest \
        DISPATCH_MODE="$mode" SHARD_QUEUE_BYTES="$SHARD_QUEUE"
    sut_c0=$(cpu_ticks "$ROUTER_PID" "${SHARD_PIDS[@]}")
    r_c0=$(cpu_ticks "$ROUTER_PID")
    wait_until 60 "partition assignment" router_assigned_log "router-$mode"
    t_start=$(log_ts_epoch "$RUN_DIR/logs/router-$mode.log" "partitions assigned")
    bench_log "$mode: consuming the backlog"
    perf_start "$mode"
    end=$((SECONDS + RUN_TIMEOUT)); delivered=0; last=-1; still=0
    while :; do
        delivered=$(( $(shards_metric ws_messages_sent_total) - base ))
        [ "$delivered" -ne "$last" ] && { t_end=$(now_s); last=$delivered; still=$SECONDS; }
        [ "$delivered" -ge "$RECORDS" ] && break
        # records dropped by the router (small SHARD_QUEUE): stop once the
        # router consumed everything, dropped some, holds nothing (a router
        # that holds records until discovery has run delivers them later),
        # its queues are empty and nothing moves
        if [ $((SECONDS - still)) -ge 3 ] &&
           [ "$(metric "$ROUTER_HTTP" router_drops_total)" -gt 0 ] &&
           [ "$(metric "$ROUTER_HTTP" router_hold_active)" -eq 0 ] &&
           [ "$(metric "$ROUTER_HTTP" router_records_total)" -ge "$RECORDS" ] &&
           [ "$(metric "$ROUTER_HTTP" router_shard_queue_bytes)" -eq 0 ]; then
            bench_log "$mode: the router dropped records; $delivered of $RECORDS delivered"
            break
        fi
        [ "$SECONDS" -lt "$end" ] || bench_die "$mode: only $delivered of $RECORDS delivered after ${RUN_TIMEOUT}s"
        sleep 0.2
    done
    sut_c1=$(cpu_ticks "$ROUTER_PID" "${SHARD_PIDS[@]}")
    r_c1=$(cpu_ticks "$ROUTER_PID")
    perf_stop "$mode"
    lg_c1=$(tree_ticks "$LOADGEN_PID")
    sys_c1=$(cpu_ticks "$DEVBROKER_PID" "$REDIS_PID")
    drops=$(metric "$ROUTER_HTTP" router_drops_total)
    recs=$(metric "$ROUTER_HTTP" router_records_total)
    curl -s "http://127.0.0.1:$ROUTER_HTTP/metrics" >"$RUN_DIR/router-$mode.metrics"
    for p in "${SHARD_PORTS[@]}"; do curl -s "http://127.0.0.1:$p/metrics"; done >"$RUN_DIR/shards-$mode.metrics"
    stop_router
    # the loadgen has the same messages once the socket buffers are read
    wait_until 60 "loadgen to read every message" lg_total_ge "lg-$mode" "$delivered"
    kill -TERM "$LOADGEN_PID"; wait_loadgen 60 || bench_die "loadgen ($mode) failed"
    lgj="$RUN_DIR/lg-$mode.json"

    wall=$(fsub "$t_end" "$t_start")
    R[$mode.rate]=$(fdiv "$delivered" "$wall")
    R[$mode.cpu]=$(ticks_to_s $((sut_c1 - sut_c0)))
    R[$mode.router_cpu]=$(ticks_to_s $((r_c1 - r_c0)))
    R[$mode.us]=$(awk -v c=$((sut_c1 - sut_c0)) -v hz="$CLK_TCK" -v d="$delivered" 'BEGIN{printf "%.2f", c / hz / d * 1e6}')
    R[$mode.us_all]=$(awk -v c=$((sut_c1 - sut_c0 + lg_c1 - lg_c0 + sys_c1 - sys_c0)) -v hz="$CLK_TCK" -v d="$delivered" 'BEGIN{printf "%.2f", c / hz / d * 1e6}')
    R[$mode.router_us]=$(awk -v c=$((r_c1 - r_c0)) -v hz="$CLK_TCK" -v d="$delivered" 'BEGIN{printf "%.2f", c / hz / d * 1e6}')
    R[$mode.wall]=$wall
    R[$mode.delivered]=$delivered
    R[$mode.drops]=$drops
    R[$mode.lg_messages]=$(jq .messages "$lgj")
    R[$mode.lg_dup]=$(jq '.duplicates + .gaps' "$lgj")
    R[$mode.lg_disc]=$(jq .disconnects_unexpected "$lgj")
    [ "$recs" -ge "$RECORDS" ] || bench_die "$mode: router consumed $recs of $RECORDS"
    bench_log "$mode: $delivered delivered in ${wall}s = ${R[$mode.rate]}/s; router+shards ${R[$mode.cpu]} s CPU = ${R[$mode.us]} us/message; drops $drops"
    extra "$mode" "$(jq -n --argjson rate "${R[$mode.rate]}" --argjson wall "$wall" \
        --argjson delivered "$delivered" --argjson cpu_s "${R[$mode.cpu]}" \
        --argjson router_cpu_s "${R[$mode.router_cpu]}" --argjson us "${R[$mode.us]}" \
        --argjson us_all "${R[$mode.us_all]}" --argjson drops "$drops" \
        --slurpfile lg "$lgj" '{delivered_per_s: $rate, wall_s: $wall, delivered: $delivered,
          sut_cpu_s: $cpu_s, router_cpu_s: $router_cpu_s, sut_cpu_us_per_msg: $us,
          all_cpu_us_per_msg: $us_all, router_drops: $drops,
          loadgen: ($lg[0] | del(.definitions))}')"
done

for mode in $MODES; do
    row "$mode: delivered messages/s (backlog)" "${R[$mode.rate]}"
    row "$mode: CPU us per delivered msg (router+shards)" "${R[$mode.us]}"
    row "$mode: CPU us per delivered msg (router only)" "${R[$mode.router_us]}"
    row "$mode: CPU us per delivered msg (+loadgen,broker)" "${R[$mode.us_all]}"
    row "$mode: router drops / client msgs lost+dup" "${R[$mode.drops]} / $((RECORDS - ${R[$mode.lg_messages]})) ${R[$mode.lg_dup]}" "0 / 0 0"
    row "$mode: unexpected client disconnects" "${R[$mode.lg_disc]}" "0" "$(judge "${R[$mode.lg_disc]}" le 0)"
done
if [ -n "${R[targeted.rate]:-}" ] && [ -n "${R[broadcast.rate]:-}" ]; then
    cpu_ratio=$(fdiv "${R[broadcast.us]}" "${R[targeted.us]}")
    rate_ratio=$(fdiv "${R[targeted.rate]}" "${R[broadcast.rate]}")
    row "CPU per message, broadcast / targeted" "$(printf %.2f "$cpu_ratio")" ">= 4" "$(judge "$cpu_ratio" ge 4)"
    row "max throughput, targeted / broadcast" "$(printf %.2f "$rate_ratio")" ">= 3" "$(judge "$rate_ratio" ge 3)"
    extra ratios "$(jq -n --argjson c "$cpu_ratio" --argjson r "$rate_ratio" '{cpu_broadcast_over_targeted: $c, throughput_targeted_over_broadcast: $r}')"
fi
extra params "$(jq -n --argjson s "$SHARDS" --argjson t "$TOKENS" --argjson r "$RECORDS" \
    --argjson p "$PARTITIONS" '{shards: $s, tokens: $t, records: $r, partitions_per_topic: $p}')"
finish_result
