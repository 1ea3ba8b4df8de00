#!/usr/bin/env bash
# Benchmark 1: capacity.  Ramp to CONNS WebSocket connections over SHARDS
# shards, each subscribed to CHANNELS random channels (TOKENS tokens x the
# trade, liquidity and analytics categories), hold HOLD_S seconds while
# odin-publish streams STREAM_RATE records/s over the same tokens and topics.
#
#   bench/capacity.sh            (full size; settings below, as environment)
#
# Reports: connect rate (upgrade + subscription ack), unexpected disconnects
# (client side: closes the loadgen did not start; server side: closes the
# shards initiated), shard RSS per connection ((RSS at the end of the hold -
# RSS before the ramp) / connections, VmRSS from /proc), CPU of every
# component during the ramp and the hold, deliveries during the hold.
# Connections come from SOURCE_ADDRS (127.0.0.x) so no (source, shard) pair
# runs short of ephemeral ports; shards run with WS_IP_RATE=0 and
# WS_IP_MAX_PENDING=0 so the ramp is limited by work, not by the guards.
# Each shard holds at most 20,000 fds - WS_FD_RESERVE - resume reserve -
# MAX_PENDING (19,552 with MAX_PENDING=256): CONNS / SHARDS must stay under
# that (MAX_PENDING=2048 gave 17,760: 14 shards held at most 248,640).
set -euo pipefail
SHARDS=${SHARDS:-8}
CONNS=${CONNS:-100000}
CHANNELS=${CHANNELS:-3}
TOKENS=${TOKENS:-10000}
HOLD_S=${HOLD_S:-60}
RAMP_RATE=${RAMP_RATE:-0}          # new connections per second, 0 = as fast as possible
STREAM_RATE=${STREAM_RATE:-1000}
SOURCE_ADDRS=${SOURCE_ADDRS:-127.0.0.1-127.0.0.4}
MAX_PENDING=${MAX_PENDING:-256}     # a full pool pauses accepting (no resets): the default is enough
LG_PROCS=${LG_PROCS:-0}
# close handshakes at the end: 350,000 connections closing at once on 2
# vCPUs took the workers longer than the default 3 s (+10 s slack) and the
# loadgen killed them (no summary); allow 1 s per 25,000 connections more
CLOSE_GRACE=${CLOSE_GRACE:-$((3 + CONNS / 25000))}
RSS_TARGET_KIB=8

source "$(dirname "$0")/lib.sh"
bench_init capacity
start_redis
start_devbroker 8
start_shards "$SHARDS" WS_MAX_PENDING="$MAX_PENDING"
start_router router KAFKA_GROUP="capacity-$$" KAFKA_OFFSET_RESET=latest
wait_until 60 "partition assignment" router_assigned_log router

rss0=$(rss_kb "${SHARD_PIDS[@]}")
# kernel memory: TCP buffer pages (/proc/net/sockstat "mem") and slab
# (socket, inode, file, epoll structures) of the whole machine
tcp_mem_pages() { awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat; }
slab_kb() { awk '$1 == "Slab:" { print $2 }' /proc/meminfo; }
PAGE_KB=$(( $(getconf PAGESIZE) / 1024 ))
tcpmem0=$(tcp_mem_pages); slab0=$(slab_kb)
cpu_all() {   # router shards loadgen redis devbroker (ticks, one line)
    echo "$(cpu_ticks "$ROUTER_PID") $(cpu_ticks "${SHARD_PIDS[@]}") $(tree_ticks "${LOADGEN_PID:-0}") $(cpu_ticks "$REDIS_PID") $(cpu_ticks "$DEVBROKER_PID")"
}
read -r a_r a_s a_l a_x _ < <(cpu_all)
t_ramp0=$(now_s)
bench_log "ramping to $CONNS connections at $RAMP_RATE/s"
start_loadgen lg LG_CONNECTIONS="$CONNS" LG_MODE=random LG_CHANNELS_PER_CONN="$CHANNELS" \
    LG_TOKEN_COUNT="$TOKENS" LG_CATEGORIES=trade,liquidity,analytics LG_RATE="$RAMP_RATE" \
    LG_PROCESSES="$LG_PROCS" LG_SOURCE_ADDRS="$SOURCE_ADDRS" LG_DURATION_S=100000 \
    LG_CONNECT_TIMEOUT_S=30 LG_CLOSE_GRACE_S="$CLOSE_GRACE"
a_l=0   # loadgen counted from its start
ramp_done() {
    lg_resolved_ge lg "$CONNS" || ! kill -0 "$LOADGEN_PID" 2>/dev/null
}
wait_until $((CONNS / 1000 + 300)) "ramp" ramp_done
kill -0 "$LOADGEN_PID" 2>/dev/null || bench_die "loadgen exited during the ramp: $(tail -n 3 "$RUN_DIR/logs/lg.log")"
t_ramp1=$(now_s)
# the subscriptions of the connections the loadgen holds open (failed or
# dropped ones are reported below, not waited for)
held=$(lg_open lg)
wait_until 60 "shards to count $((held * CHANNELS)) subscriptions" subs_active $((held * CHANNELS))
read -r b_r b_s b_l b_x b_d < <(cpu_all)
ramp_s=$(fsub "$t_ramp1" "$t_ramp0")
bench_log "ramp done in ${ramp_s}s; holding ${HOLD_S}s with $STREAM_RATE records/s"

# ---- hold with a live stream
d0=$(shards_metric ws_messages_sent_total)
disc0=$(shards_metric ws_disconnects_total)
bench_spawn publisher env KAFKA_BROKERS="$KAFKA_BROKERS" LOG_LEVEL=warn \
    PUBLISH_TOKEN_COUNT="$TOKENS" PUBLISH_TOPICS=odin.trades,odin.liquidity,odin.analytics \
    PUBLISH_RATE="$STREAM_RATE" PUBLISH_DURATION_S="$HOLD_S" "$BUILD/odin-publish"
PUB_PID=$BENCH_LAST_PID
t_hold0=$(now_s)
rss_peak=0
for ((i = 0; i < HOLD_S * 2 + 120; i++)); do
    kill -0 "$PUB_PID" 2>/dev/null || break
    r=$(rss_kb "${SHARD_PIDS[@]}"); [ "$r" -gt "$rss_peak" ] && rss_peak=$r
    sleep 0.5
done
wait "$PUB_PID" || bench_die "publisher failed"
t_hold1=$(now_s)
read -r c_r c_s c_l c_x c_d < <(cpu_all)
rss1=$(rss_kb "${SHARD_PIDS[@]}")
tcpmem1=$(tcp_mem_pages); slab1=$(slab_kb)
# shellcheck disable=SC2046
lg_rss=$(rss_kb $(children_pids "$LOADGEN_PID"))
sleep 1   # last deliveries
d1=$(shards_metric ws_messages_sent_total)
disc1=$(shards_metric ws_disconnects_total)
active=$(shards_metric ws_connections_active)
slow=$(shards_metric ws_slow_clients_disconnected_total)
idle=$(shards_metric ws_idle_timeouts_total)
rej=$(( $(shards_metric ws_capacity_rejections_total) + $(shards_metric ws_ratelimit_rejections_total) + $(shards_metric ws_pending_rejections_total) ))
for p in "${SHARD_PORTS[@]}"; do curl -s "http://127.0.0.1:$p/metrics"; done >"$RUN_DIR/shards.metrics"
per_shard_rss=$(for p in "${SHARD_PIDS[@]}"; do printf '%s ' "$(( $(rss_kb "$p") / 1024 ))"; done)
kill -TERM "$LOADGEN_PID"; wait_loadgen 180 || bench_die "loadgen failed"
j="$RUN_DIR/lg.json"
hold_s=$(fsub "$t_hold1" "$t_hold0")

pct() { awk -v c="$1" -v hz="$CLK_TCK" -v w="$2" 'BEGIN{printf "%.0f", c / hz / w * 100}'; }
subscribed=$(jq .subscribed "$j")
per_conn=$(awk -v a="$rss1" -v b="$rss0" -v n="$subscribed" 'BEGIN{printf "%.2f", (a - b) / n}')
per_conn_total=$(awk -v a="$rss1" -v n="$subscribed" 'BEGIN{printf "%.2f", a / n}')
delivered=$((d1 - d0))
lg_disc=$(jq .disconnects_unexpected "$j")
srv_disc=$((disc1 - disc0))
hold_sut=$(( (c_r - b_r) + (c_s - b_s) ))

row "connections subscribed / target" "$subscribed / $CONNS" "$CONNS" "$(judge "$subscribed" ge "$CONNS")"
row "connect errors (loadgen) / shard rejections" "$(jq '[.connect_errors[]] | add' "$j") / $rej" "0 / 0"
row "connect errors by kind (loadgen)" "$(jq -c '.connect_errors | with_entries(select(.value > 0))' "$j")"
row "shard accept pauses (WS_MAX_PENDING full): count / seconds" "$(shards_metric ws_accept_paused_total) / $(shards_metric ws_accept_paused_seconds_total)"
row "connect rate (upgrades/s, loadgen)" "$(jq .connect_rate_per_s "$j")"
row "ramp time s (until all $((CONNS * CHANNELS)) subscriptions)" "$ramp_s"
row "unexpected disconnects during hold (client)" "$lg_disc" "0" "$(judge "$lg_disc" le 0)"
row "server-initiated closes during hold (slow, idle)" "$srv_disc ($slow, $idle)" "0" "$(judge "$srv_disc" le 0)"
row "connections active at end of hold" "$active"
row "shard RSS per connection KiB (growth)" "$per_conn" "<= $RSS_TARGET_KIB" "$(judge "$per_conn" le $RSS_TARGET_KIB)"
row "shard RSS per connection KiB (total RSS)" "$per_conn_total"
row "shard RSS MiB total (before ramp -> hold, peak)" "$((rss0 / 1024)) -> $((rss1 / 1024)) ($((rss_peak / 1024)))"
row "shard RSS MiB per shard" "$per_shard_rss"
row "kernel TCP buffers KiB per connection (sockstat mem, both ends, end of hold)" "$(awk -v a="$tcpmem1" -v b="$tcpmem0" -v p="$PAGE_KB" -v n="$subscribed" 'BEGIN{printf "%.2f", (a - b) * p / n}')"
row "kernel slab growth KiB per connection (both ends)" "$(awk -v a="$slab1" -v b="$slab0" -v n="$subscribed" 'BEGIN{printf "%.2f", (a - b) / n}')"
row "loadgen RSS MiB (workers)" "$((lg_rss / 1024))"
row "ramp CPU s: router / shards / loadgen / redis" "$(ticks_to_s $((b_r - a_r))) / $(ticks_to_s $((b_s - a_s))) / $(ticks_to_s $((b_l - a_l))) / $(ticks_to_s $((b_x - a_x)))"
row "hold CPU % of 1 core: router / shards / loadgen / redis / broker" "$(pct $((c_r - b_r)) "$hold_s") / $(pct $((c_s - b_s)) "$hold_s") / $(pct $((c_l - b_l)) "$hold_s") / $(pct $((c_x - b_x)) "$hold_s") / $(pct $((c_d - b_d)) "$hold_s")"
row "hold deliveries/s (records/s x subscribers)" "$(fdiv "$delivered" "$hold_s")"
row "hold CPU us per delivery (router+shards)" "$(awk -v c="$hold_sut" -v hz="$CLK_TCK" -v d="$delivered" 'BEGIN{ if (d) printf "%.2f", c / hz / d * 1e6; else print "n/a" }')"
row "messages received / gaps / duplicates" "$(jq -r '"\(.messages) / \(.gaps) / \(.duplicates)"' "$j")" "- / 0 / 0"
extra loadgen "$(jq 'del(.definitions)' "$j")"
extra params "$(jq -n --argjson s "$SHARDS" --argjson c "$CONNS" --argjson ch "$CHANNELS" \
    --argjson t "$TOKENS" --argjson h "$HOLD_S" --argjson rr "$RAMP_RATE" --argjson sr "$STREAM_RATE" \
    --arg sa "$SOURCE_ADDRS" '{shards: $s, connections: $c, channels_per_conn: $ch, tokens: $t,
      hold_s: $h, ramp_rate: $rr, stream_rate: $sr, source_addrs: $sa}')"
extra measured "$(jq -n --argjson rss0 "$rss0" --argjson rss1 "$rss1" --argjson peak "$rss_peak" \
    --argjson pc "$per_conn" --argjson delivered "$delivered" --argjson hold "$hold_s" \
    --argjson ramp "$ramp_s" --argjson srv "$srv_disc" \
    '{shard_rss_kib_before: $rss0, shard_rss_kib_hold: $rss1, shard_rss_kib_peak: $peak,
      shard_rss_kib_per_conn: $pc, hold_deliveries: $delivered, hold_s: $hold, ramp_s: $ramp,
      server_closes_during_hold: $srv}')"
finish_result
