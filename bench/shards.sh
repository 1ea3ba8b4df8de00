#!/usr/bin/env bash
# Shard-count sweep and plot: CPU per delivered message and latency
# percentiles, targeted vs broadcast, for SHARD_COUNTS shards.
#
#   bench/shards.sh              (full size; settings below, as environment)
#   PLOT_OUT=docs/bench-shards.png bench/shards.sh   (also copy the plot)
#
# Two client sets, each TOKENS connections with one channel: client i holds
# <TOK i>.trade (set A) or <LIVE i>.liquidity (set B) on shard i % shards, so every
# token lives on one shard and each record is delivered to exactly one client
# in both modes.  Once, before any router: RECORDS records over the TOK tokens
# (the backlog).  Per shard count and mode, a router with a fresh group
# (earliest offset; KAFKA_BATCH_TIMEOUT_MS=0, fetch.wait.max.ms=1) then
#   1. CPU: reads the backlog; CPU per message = (router + shards CPU until
#      the shards queued every record to its client) / RECORDS.  Backlog
#      batches are full, so this is the dispatch cost, not Kafka polling.
#   2. Latency: a second router (own group, latest offset, odin.liquidity
#      only) while odin-publish streams STREAM_RATE records/s over the LIVE
#      tokens on odin.liquidity for RUN_S seconds (linger 0); set B's
#      loadgen reports receive time - publish_us.
# The dev broker returns one producer batch per partition per fetch, so the
# topics get PARTITIONS partitions and each router reads only its topic.
set -euo pipefail
SHARD_COUNTS=${SHARD_COUNTS:-2 4 8}
MODES=${MODES:-targeted broadcast}
TOKENS=${TOKENS:-2000}
RECORDS=${RECORDS:-400000}
STREAM_RATE=${STREAM_RATE:-2000}
RUN_S=${RUN_S:-15}
PARTITIONS=${PARTITIONS:-64}
PLOT_OUT=${PLOT_OUT:-}
LG_HEARTBEAT=${LG_HEARTBEAT:-25}   # client heartbeat period (loadgen default)

source "$(dirname "$0")/lib.sh"
bench_init shards
command -v gnuplot >/dev/null || bench_die "gnuplot not found (apt-get install gnuplot-nox)"
start_redis
start_devbroker "$PARTITIONS"
bench_log "producing the backlog: $RECORDS records over $TOKENS tokens"
publish backlog PUBLISH_COUNT="$RECORDS" PUBLISH_TOPICS=odin.trades \
    PUBLISH_TOKEN_COUNT="$TOKENS" PUBLISH_SEED=44 PUBLISH_LINGER_MS=20
LIVE_TOKENS=$(seq -s, -f 'LIVE%g' 0 $((TOKENS - 1)))
DAT="$RUN_DIR/sweep.dat"
echo "# shards mode cpu_us_per_msg router_main_us router_rdkafka_us shards_us p50_ms p99_ms p999_ms backlog_msgs_per_s" >"$DAT"

for n in $SHARD_COUNTS; do
    start_shards "$n"
    for mode in $MODES; do
        name="$mode-$n"
        wait_until 60 "previous clients gone" subs_zero
        start_loadgen "lgA-$name" LG_CONNECTIONS="$TOKENS" LG_MODE=single LG_TOKEN_COUNT="$TOKENS" \
            LG_CATEGORIES=trade LG_RATE=4000 LG_PROCESSES=1 LG_DURATION_S=3600 LG_PROGRESS=0 LG_HEARTBEAT_S="$LG_HEARTBEAT"
        LGA=$LOADGEN_PID
        start_loadgen "lgB-$name" LG_CONNECTIONS="$TOKENS" LG_MODE=single LG_TOKENS="$LIVE_TOKENS" \
            LG_CATEGORIES=liquidity LG_RATE=4000 LG_PROCESSES=1 LG_DURATION_S=3600 LG_HEARTBEAT_S="$LG_HEARTBEAT"
        LGB=$LOADGEN_PID
        wait_until 60 "$((2 * TOKENS)) subscriptions" subs_active $((2 * TOKENS))
        base=$(shards_metric ws_messages_sent_total)
        start_router "router-$name" KAFKA_GROUP="sweep-$name-$$" KAFKA_OFFSET_RESET=earliest \
            DISPATCH_MODE="$mode" KAFKA_BATCH_TIMEOUT_MS=0 KAFKA_TOPICS=odin.trades \
            SHARD_QUEUE_BYTES=1073741824
        read -r rm0 ro0 < <(thread_ticks "$ROUTER_PID"); s0=$(cpu_ticks "${SHARD_PIDS[@]}")
        wait_until 60 "partition assignment" router_assigned_log "router-$name"
        t_start=$(log_ts_epoch "$RUN_DIR/logs/router-$name.log" "partitions assigned")
        perf_start "$name"
        end=$((SECONDS + 300))
        while :; do
            d=$(( $(shards_metric ws_messages_sent_total) - base )); t_end=$(now_s)
            [ "$d" -ge "$RECORDS" ] && break
            [ "$SECONDS" -lt "$end" ] || bench_die "$name: backlog not delivered ($d of $RECORDS)"
            sleep 0.2
        done
        read -r rm1 ro1 < <(thread_ticks "$ROUTER_PID"); s1=$(cpu_ticks "${SHARD_PIDS[@]}")
        perf_stop "$name"
        stop_router
        # live stream for latency: a second router, its own group, latest offset
        start_router "live-$name" KAFKA_GROUP="sweep-live-$name-$$" KAFKA_OFFSET_RESET=latest \
            DISPATCH_MODE="$mode" KAFKA_BATCH_TIMEOUT_MS=0 KAFKA_TOPICS=odin.liquidity
        wait_until 60 "partition assignment" router_assigned_log "live-$name"
        sleep 1   # positions resolved
        publish "pub-$name" PUBLISH_TOKENS="$LIVE_TOKENS" PUBLISH_TOPICS=odin.liquidity \
            PUBLISH_RATE="$STREAM_RATE" PUBLISH_DURATION_S="$RUN_S" PUBLISH_LINGER_MS=0
        sent=$(jq .sent "$RUN_DIR/logs/pub-$name.out")
        wait_until 60 "every live record delivered" lg_total_ge "lgB-$name" "$sent"
        stop_router
        kill -TERM "$LGA" "$LGB"
        LOADGEN_PID=$LGA; wait_loadgen 60 || bench_die "loadgen A ($name) failed"
        LOADGEN_PID=$LGB; wait_loadgen 60 || bench_die "loadgen B ($name) failed"
        ja="$RUN_DIR/lgA-$name.json"; jb="$RUN_DIR/lgB-$name.json"
        [ "$(jq .messages "$ja")" -eq "$RECORDS" ] || bench_die "$name: set A got $(jq .messages "$ja") of $RECORDS"
        [ "$(jq .messages "$jb")" -ge "$sent" ] || bench_die "$name: set B got $(jq .messages "$jb") of $sent"
        line=$(jq -r -n --argjson n "$n" --arg mode "$mode" --argjson rm $((rm1 - rm0)) \
            --argjson ro $((ro1 - ro0)) --argjson s $((s1 - s0)) --argjson hz "$CLK_TCK" \
            --argjson recs "$RECORDS" --argjson wall "$(fsub "$t_end" "$t_start")" --slurpfile b "$jb" '
            def us: (. / $hz / $recs * 1e6 * 100 | round) / 100;
            [$n, $mode, (($rm + $ro + $s) | us), ($rm | us), ($ro | us), ($s | us),
             $b[0].latency_ms.p50, $b[0].latency_ms.p99, $b[0].latency_ms.p999,
             ($recs / $wall | round)] | @tsv')
        echo "$line" | tr '\t' ' ' >>"$DAT"
        read -r _ _ us rmus rous sus p50 p99 p999 bps <<<"$line"
        bench_log "$name: backlog $bps msgs/s, CPU $us us/message (router main $rmus, librdkafka $rous, shards $sus); live $sent records: p50 $p50 p99 $p99 p99.9 $p999 ms"
        row "$n shards $mode: CPU us/msg (router main, rdkafka, shards)" "$us ($rmus, $rous, $sus)"
        row "$n shards $mode: latency p50 / p99 / p99.9 ms" "$p50 / $p99 / $p999"
    done
    stop_shards
done
for n in $SHARD_COUNTS; do
    t=$(awk -v n="$n" '$1 == n && $2 == "targeted" {print $3}' "$DAT")
    b=$(awk -v n="$n" '$1 == n && $2 == "broadcast" {print $3}' "$DAT")
    [ -n "$t" ] && [ -n "$b" ] && row "$n shards: CPU per message, broadcast / targeted" "$(printf %.2f "$(fdiv "$b" "$t")")"
done

# ---- plot
PNG="$RUN_DIR/bench-shards.png"
xt=$(echo "$SHARD_COUNTS" | awk '{ for (i = 1; i <= NF; i++) printf "%s\"%s\" %s", (i > 1 ? ", " : ""), $i, $i }')
gnuplot <<GP
set terminal pngcairo size 1280,520 font "sans,10"
set output "$PNG"
set multiplot layout 1,2 title "odin-dispatch, targeted vs broadcast: $TOKENS clients per set, one per token, each record to one client  ($(machine_info))"
set xlabel "shards"
set xtics ($xt)
set grid
set key below
set logscale x 2
set xrange [1.6:10]
set title "CPU per delivered message (router + shards; backlog of $RECORDS records)"
set ylabel "us CPU / message"
set yrange [0:*]
plot "< grep ' targeted ' $DAT" u 1:3 w lp lc rgb "#1b9e77" pt 7 lw 2 t "targeted, total", \
     "< grep ' broadcast ' $DAT" u 1:3 w lp lc rgb "#d95f02" pt 7 lw 2 t "broadcast, total", \
     "< grep ' targeted ' $DAT" u 1:(\$4+\$5) w lp lc rgb "#1b9e77" pt 4 dt 2 t "targeted, router", \
     "< grep ' broadcast ' $DAT" u 1:(\$4+\$5) w lp lc rgb "#d95f02" pt 4 dt 2 t "broadcast, router"
set title "latency publish -> client, $STREAM_RATE records/s live (ms)"
set ylabel "ms"
set logscale y
set yrange [*:*]
plot "< grep ' targeted ' $DAT" u 1:7 w lp lc rgb "#1b9e77" pt 7 dt 1 t "targeted p50", \
     "< grep ' targeted ' $DAT" u 1:8 w lp lc rgb "#1b9e77" pt 5 dt 2 t "targeted p99", \
     "< grep ' targeted ' $DAT" u 1:9 w lp lc rgb "#1b9e77" pt 9 dt 3 t "targeted p99.9", \
     "< grep ' broadcast ' $DAT" u 1:7 w lp lc rgb "#d95f02" pt 7 dt 1 t "broadcast p50", \
     "< grep ' broadcast ' $DAT" u 1:8 w lp lc rgb "#d95f02" pt 5 dt 2 t "broadcast p99", \
     "< grep ' broadcast ' $DAT" u 1:9 w lp lc rgb "#d95f02" pt 9 dt 3 t "broadcast p99.9"
unset multiplot
GP
[ -s "$PNG" ] || bench_die "gnuplot wrote no $PNG"
if [ -n "$PLOT_OUT" ]; then cp "$PNG" "$PLOT_OUT"; bench_log "plot copied to $PLOT_OUT"; fi
row "plot" "$PNG"
extra sweep "$(awk 'NR > 1 { printf "%s{\"shards\":%s,\"mode\":\"%s\",\"cpu_us_per_msg\":%s,\"router_main_us\":%s,\"router_rdkafka_us\":%s,\"shards_us\":%s,\"p50_ms\":%s,\"p99_ms\":%s,\"p999_ms\":%s,\"backlog_msgs_per_s\":%s}", (NR > 2 ? "," : "["), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 } END { print (NR > 1 ? "]" : "[]") }' "$DAT")"
extra params "$(jq -n --arg sc "$SHARD_COUNTS" --argjson t "$TOKENS" --argjson rec "$RECORDS" \
    --argjson r "$STREAM_RATE" --argjson s "$RUN_S" --argjson p "$PARTITIONS" \
    '{shard_counts: $sc, tokens: $t, backlog_records: $rec, stream_rate: $r, stream_seconds: $s, partitions: $p}')"
finish_result
