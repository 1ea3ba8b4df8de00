#!/usr/bin/env bash
# Benchmark 5: end-to-end delivery latency of a live stream, one subscriber
# per token, with the router's default settings.
#
#   bench/latency.sh             (full size; settings below, as environment)
#
# SHARDS shards, CLIENTS WebSocket clients, client i subscribed to
# <TOK i>.trade (on shard i % SHARDS), so every record goes to exactly one
# client.  Per rate in RATES, odin-publish streams records (linger 0,
# publish_us in each value) uniformly over the CLIENTS tokens for RUN_S
# seconds, and odin-loadgen measures receive time - publish_us for every
# delivery.  Printed per rate: p50 / p99 / p99.9, deliveries lost, and the
# CPU of router + shards + Redis per delivery (utime+stime from /proc over
# the publishing window, divided by the records sent).  The shards' and the
# router's own latency histograms (shard_delivery_latency_seconds,
# router_delivery_latency_seconds) are read too, as their mean.
#
# Router settings are the defaults (KAFKA_BATCH_TIMEOUT_MS=0), with
# fetch.wait.max.ms=1 as `make run` sets for the dev broker (FETCH_WAIT_MS;
# empty = the router's own default, 10).  The pre-issue-13 defaults:
#   ROUTER_ENV="KAFKA_BATCH_TIMEOUT_MS=10" FETCH_WAIT_MS=10 bench/latency.sh
# PARTITIONS (per topic, default 32): the dev broker returns one producer
# batch per partition per fetch, so with 8 partitions a linger-0 stream of
# 3,000 records/s already outruns it on this machine (seconds of backlog).
set -euo pipefail
SHARDS=${SHARDS:-3}
CLIENTS=${CLIENTS:-6000}
RATES=${RATES:-3000 30000}
RUN_S=${RUN_S:-10}
PARTITIONS=${PARTITIONS:-32}
LG_PROCS=${LG_PROCS:-1}
ROUTER_ENV=${ROUTER_ENV:-}
FETCH_WAIT_MS=${FETCH_WAIT_MS-1}        # as make run; empty: the router's default (10)
DRAIN_S=${DRAIN_S:-20}                  # bound on waiting for the last deliveries
IDLE_S=${IDLE_S:-3}
LINGER_MS=${LINGER_MS:-0}               # publisher linger.ms (part of the measured latency)                     # idle CPU window (no records)

source "$(dirname "$0")/lib.sh"
bench_init latency
# fetch.wait.max.ms left to the router's default unless FETCH_WAIT_MS is set
ROUTER_LATENCY_OPTS="session.timeout.ms=6000,heartbeat.interval.ms=500"
[ -n "$FETCH_WAIT_MS" ] && ROUTER_LATENCY_OPTS="$ROUTER_LATENCY_OPTS,fetch.wait.max.ms=$FETCH_WAIT_MS"
start_redis
start_devbroker "$PARTITIONS"
start_shards "$SHARDS"
# shellcheck disable=SC2086
start_router router KAFKA_GROUP="latency-$$" KAFKA_OFFSET_RESET=latest $ROUTER_ENV
wait_until 60 "partition assignment" router_assigned_log router

# hist_sum_count NAME PORT...: "<sum> <count>" of a histogram over the ports
hist_sum_count() {
    local name=$1 p; shift
    for p in "$@"; do curl -s -m 5 "http://127.0.0.1:$p/metrics"; done |
        awk -v n="$name" '$1 == n "_sum" { s += $2 } $1 == n "_count" { c += $2 }
            END { printf "%.9f %d\n", s, c }'
}
mean_ms() { awk -v s="$(fsub "$1" "$2")" -v c="$3" 'BEGIN{ if (c > 0) printf "%.3f", s / c * 1000; else print "n/a" }'; }
us_per() { awk -v c="$1" -v hz="$CLK_TCK" -v m="$2" 'BEGIN{ if (m > 0) printf "%.2f", c / hz / m * 1e6; else print 0 }'; }

# one_run NAME RATE: fresh clients (own latency histogram), stream, drain
declare -A V
one_run() {
    local name=$1 rate=$2
    wait_until 60 "previous clients gone" subs_zero
    bench_log "$name: connecting $CLIENTS clients, one per token"
    start_loadgen "lg-$name" LG_CONNECTIONS="$CLIENTS" LG_MODE=single LG_TOKEN_COUNT="$CLIENTS" \
        LG_CATEGORIES=trade LG_RATE=10000 LG_PROCESSES="$LG_PROCS" LG_DURATION_S=3600 \
        LG_HEARTBEAT_S=0
    wait_until 120 "$CLIENTS subscriptions" subs_active "$CLIENTS"
    wait_until 30 "routes registered" eval '[ "$(rcli --scan --pattern "odin:route:*" | wc -l)" -ge "$CLIENTS" ]'
    sleep 1
    local ss0 sc0 rs0 rc0 ss1 sc1 rs1 rc1 sut0 sut1 lg0 lg1 r0 r1 t0 t1 sent end
    read -r ss0 sc0 < <(hist_sum_count shard_delivery_latency_seconds "${SHARD_PORTS[@]}")
    read -r rs0 rc0 < <(hist_sum_count router_delivery_latency_seconds "$ROUTER_HTTP")
    sut0=$(cpu_ticks "$ROUTER_PID" "${SHARD_PIDS[@]}" "$REDIS_PID"); lg0=$(tree_ticks "$LOADGEN_PID")
    r0=$(cpu_ticks "$ROUTER_PID")
    bench_log "$name: streaming $rate records/s for ${RUN_S}s"
    perf_start "$name"
    t0=$(now_s)
    publish "pub-$name" PUBLISH_TOKEN_COUNT="$CLIENTS" PUBLISH_TOPICS=odin.trades \
        PUBLISH_RATE="$rate" PUBLISH_DURATION_S="$RUN_S" PUBLISH_LINGER_MS="$LINGER_MS"
    t1=$(now_s)
    sut1=$(cpu_ticks "$ROUTER_PID" "${SHARD_PIDS[@]}" "$REDIS_PID"); lg1=$(tree_ticks "$LOADGEN_PID")
    r1=$(cpu_ticks "$ROUTER_PID")
    perf_stop "$name"
    sent=$(jq .sent "$RUN_DIR/logs/pub-$name.out")
    end=$((SECONDS + DRAIN_S))
    while ! lg_total_ge "lg-$name" "$sent" && [ "$SECONDS" -lt "$end" ]; do sleep 0.2; done
    sleep 0.3
    read -r ss1 sc1 < <(hist_sum_count shard_delivery_latency_seconds "${SHARD_PORTS[@]}")
    read -r rs1 rc1 < <(hist_sum_count router_delivery_latency_seconds "$ROUTER_HTTP")
    kill -TERM "$LOADGEN_PID"; wait_loadgen 60 || bench_die "loadgen ($name) failed"
    local j="$RUN_DIR/lg-$name.json"
    V[$name.sent]=$sent
    V[$name.msgs]=$(jq .messages "$j")
    V[$name.lost]=$((sent - V[$name.msgs]))
    V[$name.p50]=$(jq .latency_ms.p50 "$j"); V[$name.p99]=$(jq .latency_ms.p99 "$j")
    V[$name.p999]=$(jq .latency_ms.p999 "$j")
    V[$name.disc]=$(jq .disconnects_unexpected "$j")
    V[$name.sut_us]=$(us_per $((sut1 - sut0)) "$sent")
    V[$name.router_us]=$(us_per $((r1 - r0)) "$sent")
    V[$name.lg_us]=$(us_per $((lg1 - lg0)) "$sent")
    V[$name.shard_ms]=$(mean_ms "$ss1" "$ss0" $((sc1 - sc0)))
    V[$name.router_ms]=$(mean_ms "$rs1" "$rs0" $((rc1 - rc0)))
    V[$name.shard_obs]=$((sc1 - sc0))
    bench_log "$name: sent $sent, received ${V[$name.msgs]}; p50/p99/p99.9 ${V[$name.p50]} / ${V[$name.p99]} / ${V[$name.p999]} ms; CPU router+shards+redis ${V[$name.sut_us]} us/delivery (router ${V[$name.router_us]}), loadgen ${V[$name.lg_us]}"
    extra "$name" "$(jq -n --argjson rate "$rate" --argjson sent "$sent" --argjson wall "$(fsub "$t1" "$t0")" \
        --argjson sut "${V[$name.sut_us]}" --argjson ru "${V[$name.router_us]}" --argjson lgu "${V[$name.lg_us]}" \
        --arg sm "${V[$name.shard_ms]}" --arg rm "${V[$name.router_ms]}" --argjson so "${V[$name.shard_obs]}" \
        --slurpfile lg "$j" '{records_per_s: $rate, records_sent: $sent, publish_s: $wall,
          sut_cpu_us_per_delivery: $sut, router_cpu_us_per_delivery: $ru, loadgen_cpu_us_per_delivery: $lgu,
          shard_hist_mean_ms: $sm, router_hist_mean_ms: $rm, shard_hist_observations: $so,
          loadgen: ($lg[0] | del(.definitions))}')"
}

# idle cost of the pipeline (empty fetches, heartbeats): no records, IDLE_S s
bench_log "idle: ${IDLE_S}s without records"
i0=$(cpu_ticks "$ROUTER_PID" "${SHARD_PIDS[@]}" "$REDIS_PID"); ir0=$(cpu_ticks "$ROUTER_PID"); it0=$(now_s)
sleep "$IDLE_S"
i1=$(cpu_ticks "$ROUTER_PID" "${SHARD_PIDS[@]}" "$REDIS_PID"); ir1=$(cpu_ticks "$ROUTER_PID"); it1=$(now_s)
IDLE_PCT=$(awk -v c=$((i1 - i0)) -v hz="$CLK_TCK" -v w="$(fsub "$it1" "$it0")" 'BEGIN{printf "%.1f", c / hz / w * 100}')
IDLE_R_PCT=$(awk -v c=$((ir1 - ir0)) -v hz="$CLK_TCK" -v w="$(fsub "$it1" "$it0")" 'BEGIN{printf "%.1f", c / hz / w * 100}')

for rate in $RATES; do one_run "r$rate" "$rate"; done

# ---- table (targets: issue 13)
for rate in $RATES; do
    n="r$rate"
    if [ "$rate" = 3000 ]; then t50=2; t99=4; tcpu=25; else t50=; t99=5; tcpu=10; fi
    row "$rate rec/s: p50 ms" "${V[$n.p50]}" "${t50:+<= $t50}" "${t50:+$(judge "${V[$n.p50]}" le "$t50")}"
    row "$rate rec/s: p99 ms" "${V[$n.p99]}" "<= $t99" "$(judge "${V[$n.p99]}" le "$t99")"
    row "$rate rec/s: p99.9 ms" "${V[$n.p999]}"
    row "$rate rec/s: deliveries lost / disconnects" "${V[$n.lost]} / ${V[$n.disc]}" "0 / 0" \
        "$( [ "${V[$n.lost]}" -eq 0 ] && [ "${V[$n.disc]}" -eq 0 ] && echo met || echo MISSED)"
    row "$rate rec/s: CPU us/delivery router+shards+redis" "${V[$n.sut_us]}" "<= $tcpu" "$(judge "${V[$n.sut_us]}" le "$tcpu")"
    row "$rate rec/s: CPU us/delivery router / loadgen" "${V[$n.router_us]} / ${V[$n.lg_us]}"
    row "$rate rec/s: mean ms shard hist / router hist" "${V[$n.shard_ms]} / ${V[$n.router_ms]}"
done
row "idle CPU % of a core: router+shards+redis / router" "$IDLE_PCT / $IDLE_R_PCT"
extra idle "$(jq -n --argjson a "$IDLE_PCT" --argjson r "$IDLE_R_PCT" '{sut_cpu_pct: $a, router_cpu_pct: $r}')"
extra params "$(jq -n --argjson s "$SHARDS" --argjson c "$CLIENTS" --arg r "$RATES" --argjson t "$RUN_S" \
    --argjson p "$PARTITIONS" --arg re "$ROUTER_ENV" --arg fw "$FETCH_WAIT_MS" \
    '{shards: $s, clients: $c, rates: $r, seconds: $t, partitions_per_topic: $p,
      router_env: $re, fetch_wait_max_ms: $fw}')"
finish_result
