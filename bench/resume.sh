#!/usr/bin/env bash
# Resume for a crowd (issue 18): a reconnect storm measured as an operator
# would, then an abuse run.  docs/benchmarks.md "Resume storm".
#
# Storm: 3 shards (with KAFKA_BROKERS), a router, odin-publish producing
# RATE records/s over TOKENS tokens (odin.trades), CLIENTS clients on shard 1
# (one <token>.trade channel each).  Once every client has a record, shard 1
# is SIGKILLed; each client waits a random 0..JITTER_MS and reconnects to
# shard 2 or 3 with {"type":"reconnect"} and its last {p, seq}
# (odin-resumestorm).  Then the partitions are read back from Kafka and the
# records missing / duplicated are counted per client, exactly.
# Abuse: ABUSE_CONNS connections from 127.0.0.2 send reconnects to shard 3
# (a burst of ABUSE_BURST, then ABUSE_RATE/s each: the shard's message rate
# limit, WS_MSG_RATE 10/s; RESUME_CONN_RATE is 1/s burst 3) while HONEST clients from
# 127.0.0.3 leave shard 2 and reconnect once each to shard 3.
#
#   bench/resume.sh                                   (full size, a few minutes)
#   CLIENTS=600 TOKENS=60 RATE=200 bench/resume.sh    (CI size)
#
# Targets (issue 18): 100 % reconnect_ack, 0 missing, 0 duplicates, ack p99
# <= 1 s, every client answered within 5 s of the kill; each shard's Kafka
# connections <= brokers + 1; Kafka bytes read for replays <= 2 x the bytes
# of the partitions' missed windows; abuse: all HONEST answered
# reconnect_ack, no abuser closed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
CLIENTS=${CLIENTS:-6000}; TOKENS=${TOKENS:-600}; RATE=${RATE:-1000}
JITTER_MS=${JITTER_MS:-2000}; BROKERS=${BROKERS:-3}; PARTITIONS=${PARTITIONS:-8}
SRC_COUNT=${SRC_COUNT:-64}; WARM_MS=${WARM_MS:-3000}
ABUSE_CONNS=${ABUSE_CONNS:-64}; HONEST=${HONEST:-100}; ABUSE_BURST=${ABUSE_BURST:-10}
ABUSE_RATE=${ABUSE_RATE:-10}
PREFIX=${PREFIX:-RS}

bench_init resume
[ -x "$BUILD/odin-resumestorm" ] || bench_die "missing $BUILD/odin-resumestorm"
# USE_REDIS_URL / USE_KAFKA_BROKERS: run against servers already running
# (tests/it/resume_storm.sh: the test runner's); the router group and the
# token names (PREFIX) must then be unique to this run
if [ -n "${USE_REDIS_URL:-}" ] && [ -n "${USE_KAFKA_BROKERS:-}" ]; then
    export REDIS_URL=$USE_REDIS_URL KAFKA_BROKERS=$USE_KAFKA_BROKERS
else
    start_redis
    DEVBROKER_BROKERS=$BROKERS start_devbroker "$PARTITIONS"
fi
nbrokers=$(tr ',' '\n' <<<"$KAFKA_BROKERS" | grep -c .)
start_shards 3 KAFKA_BROKERS="$KAFKA_BROKERS" SHARD_LEASE_TTL=3 LOG_LEVEL=info
start_router router KAFKA_GROUP="bench-resume-$$-$PREFIX" KAFKA_OFFSET_RESET=latest
wait_until 60 "router partitions" router_assigned
tokens=$(seq 0 $((TOKENS - 1)) | sed "s/^/$PREFIX/" | paste -sd,)
bench_spawn publish env KAFKA_BROKERS="$KAFKA_BROKERS" PUBLISH_RATE="$RATE" \
    PUBLISH_TOKENS="$tokens" PUBLISH_TOPICS=odin.trades LOG_LEVEL=warn "$BUILD/odin-publish"
PUBLISH_PID=$BENCH_LAST_PID
s1=${SHARD_PORTS[0]} s2=${SHARD_PORTS[1]} s3=${SHARD_PORTS[2]}
p2=${SHARD_PIDS[1]} p3=${SHARD_PIDS[2]}

# kv FILE KEY -> value (empty if absent)
kv() { sed -n "s/^$2=//p" "$1" | tail -n 1; }
# shard_m PORT NAME: the metric, or "absent" when the shard has no such series
shard_m() {
    local body
    body=$(curl -s -m 10 "http://127.0.0.1:$1/metrics") || true
    if grep -q "^$2[ {]" <<<"$body"; then
        awk -v m="$2" '$1 == m { v += $2 } index($1, m "{") == 1 { v += $2 }
            END { printf "%.0f\n", v }' <<<"$body"
    else
        echo absent
    fi
}
# ratio A B: A / B, "absent" when A is
ratio() { [ "$1" = absent ] && echo absent || fdiv "$1" "$2"; }
# judge_n VALUE OP TARGET: judge, MISSED for a value that is not a number
judge_n() { [[ "$1" =~ ^[0-9.]+$ ]] && judge "$@" || echo MISSED; }

# ---- the storm ----------------------------------------------------------------
bench_log "storm: $CLIENTS clients on shard 1, $TOKENS tokens, $RATE records/s, back-off 0-$JITTER_MS ms"
env KAFKA_BROKERS="$KAFKA_BROKERS" STORM_WS="127.0.0.1:$s1" \
    STORM_RESUME_TO="127.0.0.1:$s2,127.0.0.1:$s3" STORM_CLIENTS="$CLIENTS" STORM_TOKENS="$TOKENS" \
    STORM_TOKEN_PREFIX=$PREFIX STORM_KILL_PID="${SHARD_PIDS[0]}" STORM_JITTER_MS="$JITTER_MS" \
    STORM_WARM_MS="$WARM_MS" STORM_SRC_BASE=127.0.1.1 STORM_SRC_COUNT="$SRC_COUNT" \
    STORM_WATCH_PIDS="$p2,$p3" STORM_SETUP_TIMEOUT_MS=180000 \
    "$BUILD/odin-resumestorm" >"$RUN_DIR/storm.kv" 2>"$RUN_DIR/logs/storm.log" ||
    bench_die "odin-resumestorm failed: $(tail -n 3 "$RUN_DIR/logs/storm.log")"
cat "$RUN_DIR/logs/storm.log" >&2
st="$RUN_DIR/storm.kv"
acks=$(kv "$st" acks); missing=$(kv "$st" missing); dups=$(kv "$st" duplicates)
p99=$(kv "$st" ack_p99_ms); last=$(kv "$st" kill_to_last_answer_ms)
kb2=$(shard_m "$s2" ws_replay_kafka_bytes_total); kb3=$(shard_m "$s3" ws_replay_kafka_bytes_total)
w2=$(kv "$st" "window_bytes.$s2"); w3=$(kv "$st" "window_bytes.$s3")
printf 'replay_kafka_bytes.%s=%s\nreplay_kafka_bytes.%s=%s\n' "$s2" "$kb2" "$s3" "$kb3" \
    >"$RUN_DIR/shard_metrics.kv"
kc2=$(kv "$st" "kafka_conns_max.$p2"); kc3=$(kv "$st" "kafka_conns_max.$p3")
kcmax=$(( kc2 > kc3 ? kc2 : kc3 ))
ratio2=$(ratio "$kb2" "$w2"); ratio3=$(ratio "$kb3" "$w3")
if [ "$ratio2" = absent ] || [ "$ratio3" = absent ]; then ratio=absent
else ratio=$(awk -v a="$ratio2" -v b="$ratio3" 'BEGIN{print (a > b) ? a : b}'); fi
errs=$(grep '^errors\.' "$st" | sed 's/^errors\.//' | paste -sd' ' || true)
row "storm: clients on shard 1 (SIGKILLed)" "$CLIENTS"
row "storm: tokens / records per s" "$TOKENS/$RATE"
row "storm: reconnect_ack, % of clients" "$(fdiv "$((acks * 100))" "$CLIENTS")" ">= 100" "$(judge "$acks" ge "$CLIENTS")"
row "storm: reconnect_error by code" "${errs:-none}"
row "storm: records missing" "$missing" "0" "$(judge "$missing" le 0)"
row "storm: clients with gaps" "$(kv "$st" clients_with_gaps)"
row "storm: duplicates" "$dups" "0" "$(judge "$dups" le 0)"
row "storm: records expected (read back from Kafka)" "$(kv "$st" expected_records)"
row "storm: replayed envelopes" "$(kv "$st" replayed_envelopes)"
row "storm: ack latency p50, ms" "$(kv "$st" ack_p50_ms)"
row "storm: ack latency p99, ms" "$p99" "<= 1000" "$(judge "$p99" le 1000)"
row "storm: ack latency max, ms" "$(kv "$st" ack_max_ms)"
row "storm: kill to last answer, ms" "$last" "<= 5000" "$(judge "$last" le 5000)"
row "storm: Kafka connections per shard, max (brokers $nbrokers)" "$kcmax" "<= $((nbrokers + 1))" "$(judge "$kcmax" le $((nbrokers + 1)))"
row "storm: replay Kafka bytes shard 2 / missed windows" "$kb2/$w2"
row "storm: replay Kafka bytes shard 3 / missed windows" "$kb3/$w3"
row "storm: replay Kafka bytes / missed windows, worst shard" "$ratio" "<= 2" "$(judge_n "$ratio" le 2)"
row "storm: replay passes (shard 2 / shard 3)" "$(shard_m "$s2" ws_replay_passes_total)/$(shard_m "$s3" ws_replay_passes_total)"
row "storm: odin-resumestorm CPU (whole run), s" "$(kv "$st" tool_cpu_s)"
row "storm: shard 2 / 3 RSS start -> max, KiB" "$(kv "$st" "rss_kb_start.$p2")->$(kv "$st" "rss_kb_max.$p2") / $(kv "$st" "rss_kb_start.$p3")->$(kv "$st" "rss_kb_max.$p3")"
extra storm "$(sed -n 's/^\([A-Za-z0-9_.]*\)=\(-\{0,1\}[0-9.]*\)$/"\1": \2/p' "$st" | paste -sd, | sed 's/^/{/; s/$/}/')"

# ---- the abuse run ------------------------------------------------------------
htok=$(( HONEST < TOKENS ? HONEST : TOKENS ))
bench_log "abuse: $ABUSE_CONNS abusers (127.0.0.2) on shard 3, $HONEST honest clients (127.0.0.3) shard 2 -> 3"
env KAFKA_BROKERS="$KAFKA_BROKERS" STORM_WS="127.0.0.1:$s2" STORM_RESUME_TO="127.0.0.1:$s3" \
    STORM_CLIENTS="$HONEST" STORM_TOKENS="$htok" STORM_TOKEN_PREFIX=$PREFIX STORM_DROP=close \
    STORM_SRC_BASE=127.0.0.3 STORM_ABUSE_CONNS="$ABUSE_CONNS" STORM_ABUSE_SRC=127.0.0.2 \
    STORM_ABUSE_BURST="$ABUSE_BURST" STORM_ABUSE_RATE="$ABUSE_RATE" STORM_WARM_MS=1000 \
    STORM_JITTER_MS="$JITTER_MS" STORM_WATCH_PIDS="$p3" \
    "$BUILD/odin-resumestorm" >"$RUN_DIR/abuse.kv" 2>"$RUN_DIR/logs/abuse.log" ||
    bench_die "odin-resumestorm (abuse) failed: $(tail -n 3 "$RUN_DIR/logs/abuse.log")"
cat "$RUN_DIR/logs/abuse.log" >&2
ab="$RUN_DIR/abuse.kv"
hacks=$(kv "$ab" acks); abclosed=$(kv "$ab" abuse_closed)
rss0=$(kv "$ab" "rss_kb_start.$p3"); rss1=$(kv "$ab" "rss_kb_max.$p3")
aberrs=$(grep '^abuse_errors\.' "$ab" | sed 's/^abuse_errors\.//' | paste -sd' ' || true)
row "abuse: abusive connections / reconnects sent" "$ABUSE_CONNS/$(kv "$ab" abuse_sent)"
row "abuse: abusers answered reconnect_ack" "$(kv "$ab" abuse_acks)"
row "abuse: abusers answered reconnect_error by code" "${aberrs:-none}"
row "abuse: abusers closed by the shard" "$abclosed" "0" "$(judge "$abclosed" le 0)"
row "abuse: honest clients answered reconnect_ack" "$hacks/$HONEST" "$HONEST/$HONEST" "$(judge "$hacks" ge "$HONEST")"
row "abuse: honest records missing / duplicates" "$(kv "$ab" missing)/$(kv "$ab" duplicates)"
row "abuse: honest ack latency p99, ms" "$(kv "$ab" ack_p99_ms)"
row "abuse: shard 3 RSS before -> max, KiB" "$rss0->$rss1"
row "abuse: shard 3 RSS growth, MiB" "$(fdiv "$((rss1 - rss0))" 1024)"
extra abuse "$(sed -n 's/^\([A-Za-z0-9_.]*\)=\(-\{0,1\}[0-9.]*\)$/"\1": \2/p' "$ab" | paste -sd, | sed 's/^/{/; s/$/}/')"
extra reconnects_total "$(jq -n --arg s2 "$(curl -s "http://127.0.0.1:$s2/metrics" | grep '^ws_reconnects_total' | paste -sd';')" \
    --arg s3 "$(curl -s "http://127.0.0.1:$s3/metrics" | grep '^ws_reconnects_total' | paste -sd';')" '{shard2: $s2, shard3: $s3}')"
bench_stop "$PUBLISH_PID" 10
finish_result
