#!/usr/bin/env bash
# Smoke-sized run of every benchmark (seconds, small counts), so the scripts
# cannot rot: each must start the stack, measure, print its table and write
# a result file with non-zero deliveries.  Targets are not judged here (they
# are for the full runs).  Used by tests/it/bench_smoke.sh (make test).
#
#   bench/smoke.sh               BUILD=<dir with odin-*> (default build/)
#   SMOKE_ONLY="capacity router" bench/smoke.sh    only those benchmarks
#   SMOKE_EXCEPT="capacity router" bench/smoke.sh  all the others
#   (tests/it/bench_smoke*.sh each run a part, side by side)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export BENCH_OUT=${BENCH_OUT:-$(mktemp -d /tmp/odin-bench-smoke.XXXXXX)}
mkdir -p "$BENCH_OUT"
fails=0

selected() { # NAME: is it to run (SMOKE_ONLY, SMOKE_EXCEPT)?
    { [ -z "${SMOKE_ONLY:-}" ] || [[ " $SMOKE_ONLY " == *" $1 "* ]]; } &&
        [[ " ${SMOKE_EXCEPT:-} " != *" $1 "* ]]
}

# run NAME CHECK-JQ SETTINGS... : run bench/NAME.sh at smoke size, check its output
run() {
    local name=$1 check=$2; shift 2
    selected "$name" || return 0
    local dir="$BENCH_OUT/$name" out start rc=0
    rm -rf "$dir"
    out="$BENCH_OUT/$name.stdout"
    start=$SECONDS
    env "$@" RUN_DIR="$dir" "$here/$name.sh" >"$out" 2>"$BENCH_OUT/$name.stderr" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "FAIL $name: exit $rc"; tail -n 20 "$BENCH_OUT/$name.stderr" | sed 's/^/    /'
        fails=$((fails + 1)); return
    fi
    if ! grep -q '^metric ' "$out"; then
        echo "FAIL $name: no table on stdout"; fails=$((fails + 1)); return
    fi
    if ! jq -e '(.rows | length) > 0' "$dir/result.json" >/dev/null || [ ! -s "$dir/result.csv" ]; then
        echo "FAIL $name: no result.json / result.csv rows"; fails=$((fails + 1)); return
    fi
    if ! jq -e "$check" "$dir/result.json" >/dev/null; then
        echo "FAIL $name: check '$check' failed"; sed 's/^/    /' "$out"; fails=$((fails + 1)); return
    fi
    echo "ok   $name ($((SECONDS - start)) s)"
}

run capacity '.loadgen.subscribed == 300 and .loadgen.messages > 0 and .measured.hold_deliveries > 0' \
    CONNS=300 SHARDS=2 TOKENS=50 HOLD_S=3 STREAM_RATE=200 SOURCE_ADDRS=127.0.0.1-127.0.0.2 LG_PROCS=2
run dispatch '.targeted.delivered == 2000 and .broadcast.delivered == 2000 and .targeted.delivered_per_s > 0 and .broadcast.delivered_per_s > 0 and .ratios.cpu_broadcast_over_targeted > 0' \
    SHARDS=2 TOKENS=100 RECORDS=2000 PARTITIONS=8 LG_PROCS=1
run router '.targeted.records_per_s > 0 and .broadcast.records_per_s > 0 and .targeted.router_drops == 0' \
    SHARDS=2 TOKENS=100 RECORDS=5000 PARTITIONS=8
run fanout '.summary.max_deliveries_per_s > 0 and .["lat-50x20"].loadgen.messages > 0 and .["lat-50x20"].loadgen.latency_ms.samples > 0' \
    SHARDS=2 LAT_SHAPES=50x20 LAT_S=2 MAX_CONNS=100 MAX_RATES=50 MAX_S=2 LG_PROCS=1
run shards '(.sweep | length) == 2 and all(.sweep[]; .backlog_msgs_per_s > 0 and .cpu_us_per_msg >= 0 and .p99_ms > 0)' \
    SHARD_COUNTS=2 TOKENS=50 RECORDS=5000 PARTITIONS=8 STREAM_RATE=200 RUN_S=2
run latency '.r200.records_sent > 0 and .r200.loadgen.messages == .r200.records_sent and .r200.loadgen.latency_ms.samples > 0 and (.r200.shard_hist_observations > 0)' \
    SHARDS=2 CLIENTS=100 RATES=200 RUN_S=2 PARTITIONS=8 IDLE_S=1
run hostile '[.rows[] | select(.metric | startswith("well-behaved")) | .value] == ["ack"]' \
    CONNS=100
run resume '.storm.clients == 60 and .storm.expected_records > 0 and .abuse.clients == 10 and .abuse.abuse_sent > 0' \
    CLIENTS=60 TOKENS=20 RATE=100 WARM_MS=500 JITTER_MS=500 HONEST=10 ABUSE_CONNS=4 SRC_COUNT=4
run deflate '.["peers-on"].compressions_per_record == 1 and .["peers-on"].loadgen.inflated_messages == .["peers-on"].loadgen.messages and .["peers-on"].loadgen.messages > 0 and .["hot-on"].compressions_per_record == 2 and .["hot-on"].wire_bytes_per_delivery < .["hot-off"].wire_bytes_per_delivery and .["peers-off"].loadgen.inflated_messages == 0' \
    SHARDS=2 PEER_CLIENTS=100 PEER_RATE=100 HOT_CLIENTS=40 HOT_RATE=10 RUN_S=2 PARTITIONS=8
if selected shards; then
    [ -s "$BENCH_OUT/shards/bench-shards.png" ] || { echo "FAIL shards: no plot"; fails=$((fails + 1)); }
fi

if [ "$fails" -eq 0 ]; then
    echo "bench smoke: all ok"
    [ -n "${KEEP_SMOKE:-}" ] || rm -rf "$BENCH_OUT"
else
    echo "bench smoke: $fails failed; output in $BENCH_OUT"
    exit 1
fi
