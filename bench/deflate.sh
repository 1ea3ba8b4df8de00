#!/usr/bin/env bash
# permessage-deflate (issue 22): bytes on the wire and CPU per delivery with
# compression off and on, side by side, in one run.
#
#   bench/deflate.sh             (full size; settings below, as environment)
#
# SHARDS shards with WS_DEFLATE=true (the default), one router (latency
# options as bench/latency.sh), odin-publish's generated trade records
# (linger 0).  Two shapes, each run twice with fresh clients: once with
# odin-loadgen not offering the extension ("off": the shard sends plain
# frames and never compresses, the same path as WS_DEFLATE=false), once
# with LG_DEFLATE=1 ("on": the browser offer, every client inflates).
#   peers: PEER_CLIENTS clients, one token each (client i holds TOK<i>.trade),
#          PEER_RATE records/s spread over those tokens: one delivery per record;
#   hot:   HOT_CLIENTS clients all on TOK0.trade (HOT_CLIENTS/SHARDS per shard),
#          HOT_RATE records/s for TOK0: HOT_CLIENTS deliveries per record.
# Per run: wire bytes per delivery (the shards' ws_bytes_sent_total over
# ws_messages_sent_total in the window, less the one /metrics page per shard
# read at its start; the loadgen's rx_bytes per message, which also holds
# each client's ack and pings, as a cross check), shard CPU (utime+stime) per delivery, loadgen CPU per delivery
# (the clients' inflate cost), and the shards' compressions per record.
# The ratios on/off are printed at the end, from this one run.
set -euo pipefail
SHARDS=${SHARDS:-3}
PEER_CLIENTS=${PEER_CLIENTS:-6000}
PEER_RATE=${PEER_RATE:-3000}
HOT_CLIENTS=${HOT_CLIENTS:-1200}
HOT_RATE=${HOT_RATE:-50}
RUN_S=${RUN_S:-10}
PARTITIONS=${PARTITIONS:-32}
LG_PROCS=${LG_PROCS:-1}
DRAIN_S=${DRAIN_S:-30}
LEVEL=${LEVEL:-6}

source "$(dirname "$0")/lib.sh"
bench_init deflate
start_redis
start_devbroker "$PARTITIONS"
start_shards "$SHARDS" WS_DEFLATE=true WS_DEFLATE_LEVEL="$LEVEL"
start_router router KAFKA_GROUP="deflate-$$" KAFKA_OFFSET_RESET=latest
wait_until 60 "partition assignment" router_assigned_log router

us_per() { awk -v c="$1" -v hz="$CLK_TCK" -v m="$2" 'BEGIN{ if (m > 0) printf "%.3f", c / hz / m * 1e6; else print 0 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }

# snap PREFIX: one /metrics page per shard (scrapes go through the WS port
# and count in ws_bytes_sent_total, so polling is kept out of the window):
# sets PREFIX_b, PREFIX_m, PREFIX_c and PREFIX_page (bytes of these pages)
snap() {
    local p page=0 out sz
    local -a sums=(0 0 0)
    for p in "${SHARD_PORTS[@]}"; do
        out=$(curl -s -m 5 -w '\n#SIZE %{size_download} %{size_header}\n' "http://127.0.0.1:$p/metrics")
        sz=$(awk '$1 == "#SIZE" { print $2 + $3 }' <<<"$out")
        page=$((page + sz))
        read -r b m c < <(awk '$1 == "ws_bytes_sent_total" { b = $2 } $1 == "ws_messages_sent_total" { m = $2 }
            $1 == "ws_deflate_compressions_total" { c = $2 } END { printf "%d %d %d\n", b, m, c }' <<<"$out")
        sums[0]=$((sums[0] + b)); sums[1]=$((sums[1] + m)); sums[2]=$((sums[2] + c))
    done
    printf -v "$1_b" %s "${sums[0]}"; printf -v "$1_m" %s "${sums[1]}"
    printf -v "$1_c" %s "${sums[2]}"; printf -v "$1_page" %s "$page"
}

declare -A V
# one_run NAME CLIENTS TOKENS RATE LG_DEFLATE
one_run() {
    local name=$1 clients=$2 tokens=$3 rate=$4 dfl=$5
    wait_until 60 "previous clients gone" subs_zero
    bench_log "$name: connecting $clients clients (LG_DEFLATE=$dfl)"
    start_loadgen "lg-$name" LG_CONNECTIONS="$clients" LG_MODE=single LG_TOKEN_COUNT="$tokens" \
        LG_CATEGORIES=trade LG_RATE=10000 LG_PROCESSES="$LG_PROCS" LG_DURATION_S=3600 \
        LG_HEARTBEAT_S=0 LG_DEFLATE="$dfl"
    wait_until 120 "$clients subscriptions" subs_active "$clients"
    wait_until 30 "routes registered" eval '[ "$(rcli --scan --pattern "odin:route:*" | wc -l)" -ge "$tokens" ]'
    sleep 1
    local s0 l0 s1 l1 sent want end
    local S0_b S0_m S0_c S0_page S1_b S1_m S1_c S1_page
    snap S0
    s0=$(cpu_ticks "${SHARD_PIDS[@]}"); l0=$(tree_ticks "$LOADGEN_PID")
    bench_log "$name: $rate records/s for ${RUN_S}s"
    publish "pub-$name" PUBLISH_TOKEN_COUNT="$tokens" PUBLISH_TOPICS=odin.trades \
        PUBLISH_RATE="$rate" PUBLISH_DURATION_S="$RUN_S" PUBLISH_LINGER_MS=0
    sent=$(jq .sent "$RUN_DIR/logs/pub-$name.out")
    want=$((sent * clients / tokens))
    end=$((SECONDS + DRAIN_S))
    while ! lg_total_ge "lg-$name" "$want" && [ "$SECONDS" -lt "$end" ]; do sleep 0.2; done
    s1=$(cpu_ticks "${SHARD_PIDS[@]}"); l1=$(tree_ticks "$LOADGEN_PID")
    snap S1
    kill -TERM "$LOADGEN_PID"; wait_loadgen 60 || bench_die "loadgen ($name) failed"
    local j="$RUN_DIR/lg-$name.json" d=$((S1_m - S0_m))
    V[$name.sent]=$sent; V[$name.deliv]=$d
    V[$name.msgs]=$(jq .messages "$j")
    V[$name.lost]=$((want - V[$name.msgs]))
    V[$name.bpd]=$(fdiv $((S1_b - S0_b - S0_page)) "$d")
    V[$name.rxpd]=$(fdiv "$(jq .rx_bytes "$j")" "${V[$name.msgs]}")
    V[$name.shard_us]=$(us_per $((s1 - s0)) "$d")
    V[$name.lg_us]=$(us_per $((l1 - l0)) "$d")
    V[$name.comp]=$(fdiv $((S1_c - S0_c)) "$sent")
    V[$name.dconn]=$(jq .deflate_connections "$j")
    V[$name.infl]=$(jq .inflated_messages "$j")
    bench_log "$name: records $sent, deliveries $d (lost ${V[$name.lost]}), ${V[$name.bpd]} B/delivery (loadgen ${V[$name.rxpd]}), shard ${V[$name.shard_us]} us/delivery, loadgen ${V[$name.lg_us]} us/delivery, compressions/record ${V[$name.comp]}, deflate conns ${V[$name.dconn]}, inflated ${V[$name.infl]}"
    extra "$name" "$(jq -n --argjson sent "$sent" --argjson d "$d" --argjson bpd "${V[$name.bpd]}" \
        --argjson su "${V[$name.shard_us]}" --argjson lu "${V[$name.lg_us]}" --argjson comp "${V[$name.comp]}" \
        --slurpfile lg "$j" '{records_sent: $sent, deliveries: $d, wire_bytes_per_delivery: $bpd,
          shard_cpu_us_per_delivery: $su, loadgen_cpu_us_per_delivery: $lu, compressions_per_record: $comp,
          loadgen: ($lg[0] | del(.definitions))}')"
}

one_run peers-off "$PEER_CLIENTS" "$PEER_CLIENTS" "$PEER_RATE" 0
one_run peers-on "$PEER_CLIENTS" "$PEER_CLIENTS" "$PEER_RATE" 1
one_run hot-off "$HOT_CLIENTS" 1 "$HOT_RATE" 0
one_run hot-on "$HOT_CLIENTS" 1 "$HOT_RATE" 1

for s in peers hot; do
    [ "$s" = peers ] && lbl="peers ($PEER_CLIENTS clients, $PEER_RATE rec/s)" ||
        lbl="hot ($HOT_CLIENTS subs/record, $HOT_RATE rec/s)"
    for m in off on; do
        n="$s-$m"
        row "$lbl $m: wire B/delivery (shard / loadgen rx)" "${V[$n.bpd]} / ${V[$n.rxpd]}"
        row "$lbl $m: shard CPU us/delivery" "${V[$n.shard_us]}"
        row "$lbl $m: loadgen CPU us/delivery" "${V[$n.lg_us]}"
        row "$lbl $m: deliveries / lost / compressions per record" \
            "${V[$n.deliv]} / ${V[$n.lost]} / ${V[$n.comp]}"
    done
    row "$lbl: ratio on/off wire bytes" "$(ratio "${V[$s-on.bpd]}" "${V[$s-off.bpd]}")"
    row "$lbl: ratio on/off shard CPU" "$(ratio "${V[$s-on.shard_us]}" "${V[$s-off.shard_us]}")"
    row "$lbl: ratio on/off loadgen CPU" "$(ratio "${V[$s-on.lg_us]}" "${V[$s-off.lg_us]}")"
done
finish_result
