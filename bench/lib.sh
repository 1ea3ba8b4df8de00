# shellcheck shell=bash disable=SC2034,SC2046
# bench/lib.sh: shared helpers of the odin-dispatch benchmarks (sourced).
#
# Starts the stack (redis-server, odin-devbroker, odin-shard xN, odin-router)
# on free 127.0.0.1 ports with everything under one run directory, and stops
# every process it started (reverse order, TERM then KILL) from an EXIT trap.
# Measurement helpers: Prometheus counters over HTTP, CPU ticks and RSS from
# /proc, polling with deadlines.  Every loop is bounded in count or time.
#
# Settings common to all benchmarks (environment):
#   BUILD     directory with the odin-* binaries (default: $ODIN_BUILD, else
#             <repo>/build)
#   BENCH_OUT parent of run directories (default /tmp/odin-bench)
#   RUN_DIR   this run's directory (default $BENCH_OUT/<bench>-<date>-<pid>)
#   KEEP_RUN  0: delete the run directory on success (default 1: keep logs)

BENCH_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-${ODIN_BUILD:-$BENCH_TOP/build}}
BENCH_OUT=${BENCH_OUT:-/tmp/odin-bench}
CLK_TCK=$(getconf CLK_TCK)
BENCH_PIDS=()
BENCH_NAMES=()
SHARD_PIDS=()
SHARD_PORTS=()
SHARD_IDS=()

# The benchmark's own knobs may come exported (`LG_PROCS=2 SHARD_COUNTS=1,2
# bench/shards.sh`), and odin binaries stop on a variable that looks like one of
# their settings but is not one (CONFIG_STRICT, docs/operations.md): every
# exported name whose first word (up to '_') is the first word of some odin
# setting, but which is no odin setting, stays in this shell only.
bench_env_hygiene() {
    local b n names=" " words=" "
    for b in odin-router odin-shard odin-devbroker odin-publish odin-loadgen; do
        names+="$("$BUILD/$b" --help | sed -n 's/^  --[a-z0-9-]*, \([A-Z0-9_]*\) (.*/\1/p' |
                  tr '\n' ' ')"
    done
    for n in $names; do words+="${n%%_*}_ "; done
    for n in $(compgen -e); do
        [[ $n == *_* ]] || continue
        [[ $words == *" ${n%%_*}_ "* ]] || continue
        [[ $names == *" $n "* ]] && continue
        export -n "$n"
    done
}

# bench_init NAME: run directory, trap, binary checks
bench_init() {
    BENCH_NAME=$1
    RUN_DIR=${RUN_DIR:-$BENCH_OUT/$BENCH_NAME-$(date +%Y%m%d-%H%M%S)-$$}
    mkdir -p "$RUN_DIR/logs"
    local b
    for b in odin-router odin-shard odin-devbroker odin-publish odin-loadgen; do
        [ -x "$BUILD/$b" ] || bench_die "missing $BUILD/$b (build first: make, or set BUILD=)"
    done
    for b in redis-server redis-cli curl jq python3; do
        command -v "$b" >/dev/null || bench_die "missing $b"
    done
    bench_env_hygiene
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    BG_T0=$(now_s); BG_M0=$(machine_ticks)
    bench_log "run dir $RUN_DIR (binaries: $BUILD)"
}

bench_log() { printf '[%s %s] %s\n' "$BENCH_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
bench_die() {
    printf '[%s] ERROR: %s\n' "${BENCH_NAME:-bench}" "$*" >&2
    exit 1
}

# bench_spawn NAME CMD...: start a process in the background, log to logs/NAME.*
bench_spawn() {
    local name=$1; shift
    "$@" >"$RUN_DIR/logs/$name.out" 2>"$RUN_DIR/logs/$name.log" &
    BENCH_LAST_PID=$!
    BENCH_PIDS+=("$BENCH_LAST_PID")
    BENCH_NAMES+=("$name")
}

# bench_stop PID [SECONDS]: TERM, wait (bounded), KILL
bench_stop() {
    local p=$1 secs=${2:-10} i
    kill -TERM "$p" 2>/dev/null || return 0
    for ((i = 0; i < secs * 20; i++)); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    return 0
}

bench_cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    set +e
    # reverse start order: clients, router, shards (deregister), broker, redis
    for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
        bench_stop "${BENCH_PIDS[$i]}" 10
    done
    if [ "$rc" -ne 0 ]; then
        echo "[$BENCH_NAME] failed (exit $rc); logs in $RUN_DIR/logs" >&2
    elif [ "${KEEP_RUN:-1}" = 0 ]; then
        rm -rf "$RUN_DIR"
    fi
    exit "$rc"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_until SECONDS WHAT CMD...: poll CMD every 100 ms until it succeeds
wait_until() {
    local secs=$1 what=$2; shift 2
    local end=$((SECONDS + secs))
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || bench_die "timed out after ${secs}s waiting for $what"
        sleep 0.1
    done
}

now_s() { echo "$EPOCHREALTIME"; }                 # wall clock, seconds.micro
fsub() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.6f", a - b}'; }
fdiv() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b == 0) print 0; else printf "%.6g", a / b}'; }

http_up() { [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/health")" != 000 ]; }

# metric PORT NAME[{labels}] -> value (0 if absent); sums every series of NAME
# when NAME has no labels and the metric has some.
metric() {
    curl -s -m 5 "http://127.0.0.1:$1/metrics" | awk -v m="$2" '
        $1 == m { v += $2; f = 1 }
        index(m, "{") == 0 && index($1, m "{") == 1 { v += $2; f = 1 }
        END { printf "%.0f\n", f ? v : 0 }'
}

# shards_metric NAME: sum over every started shard
shards_metric() {
    local p s=0 v
    for p in "${SHARD_PORTS[@]}"; do
        v=$(metric "$p" "$1"); s=$((s + v))
    done
    echo "$s"
}

# cpu_ticks PID...: utime+stime of the processes (clock ticks), 0 if gone
cpu_ticks() {
    local p s=0 f
    for p in "$@"; do
        f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        f=${f##*) }                      # fields from 3 on (state ...)
        set -- $f
        s=$((s + ${12} + ${13}))         # utime (14) stime (15)
    done
    echo "$s"
}
# thread_ticks PID: "<main thread ticks> <other threads ticks>" (the router's
# other threads are librdkafka's: broker I/O, fetch, timers)
thread_ticks() {
    local pid=$1 t f m=0 o=0
    for t in /proc/"$pid"/task/*; do
        f=$(cat "$t/stat" 2>/dev/null) || continue
        f=${f##*) }
        set -- $f
        if [ "${t##*/}" = "$pid" ]; then m=$((m + ${12} + ${13})); else o=$((o + ${12} + ${13})); fi
    done
    echo "$m $o"
}
# children_pids PID: direct children (loadgen workers)
children_pids() { cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | grep -v '^$'; }
# tree_ticks PID: the process and its direct children
tree_ticks() { cpu_ticks "$1" $(children_pids "$1"); }
ticks_to_s() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN{printf "%.2f", t / hz}'; }

rss_kb() {   # PID... -> sum of VmRSS in KiB
    local p s=0 v
    for p in "$@"; do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null)
        s=$((s + ${v:-0}))
    done
    echo "$s"
}

# machine_ticks: user+nice+system ticks of all CPUs (/proc/stat)
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4; exit }' /proc/stat; }
# my_ticks: CPU of this run: the script's waited children (from .times,
# written by background_pct) plus every started process still running and
# its children
my_ticks() {
    local t s=0 p
    t=$(tail -n 1 "$RUN_DIR/.times")   # children: "XmY.YYYs XmY.YYYs"
    s=$(echo "$t" | awk -v hz="$CLK_TCK" '{ n = 0; for (i = 1; i <= 2; i++) {
            split($i, a, "m"); sub("s", "", a[2]); n += a[1] * 60 + a[2] } printf "%.0f", n * hz }')
    for p in "${BENCH_PIDS[@]}"; do
        kill -0 "$p" 2>/dev/null || continue
        s=$((s + $(tree_ticks "$p")))
    done
    echo "$s"
}
# background_pct: sets BG_PCT, the CPU used outside this run's processes
# since bench_init in % of one core (other work on the machine, kernel
# threads such as ksoftirqd included): a noise indicator.  Must not run in a
# subshell (the times builtin reports the calling shell's children).
background_pct() {
    local m1 mine t1
    times >"$RUN_DIR/.times"
    m1=$(machine_ticks); mine=$(my_ticks); t1=$(now_s)
    BG_PCT=$(awk -v m=$((m1 - BG_M0)) -v mine="$mine" -v hz="$CLK_TCK" -v w="$(fsub "$t1" "$BG_T0")" \
        'BEGIN { v = (m - mine) / hz / w * 100; if (v < 0) v = 0; printf "%.0f", v }')
}

machine_info() {
    local model cores mem
    model=$(lscpu | awk -F: '/^Model name/ {gsub(/^ +/, "", $2); print $2; exit}')
    cores=$(nproc)
    mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
    echo "$model, $cores cores, $mem, Linux $(uname -r)"
}

# ---------------------------------------------------------------- services
start_redis() {
    REDIS_PORT=$(free_port)
    mkdir -p "$RUN_DIR/redis"
    bench_spawn redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
        --dir "$RUN_DIR/redis" --save '' --appendonly no --loglevel warning
    REDIS_PID=$BENCH_LAST_PID
    wait_until 10 "redis-server" redis_up
    export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
}

rcli() { redis-cli -p "$REDIS_PORT" "$@"; }
redis_up() { redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; }

# start_devbroker [PARTITIONS]: odin-devbroker with the eight odin.* topics
start_devbroker() {
    local parts=${1:-8}
    rm -f "$RUN_DIR/kafka.bootstrap"
    DEVBROKER_PARTITIONS=$parts bench_spawn devbroker "$BUILD/odin-devbroker" \
        --bootstrap-file "$RUN_DIR/kafka.bootstrap"
    DEVBROKER_PID=$BENCH_LAST_PID
    wait_until 20 "odin-devbroker" test -s "$RUN_DIR/kafka.bootstrap"
    export KAFKA_BROKERS; KAFKA_BROKERS=$(cat "$RUN_DIR/kafka.bootstrap")
}

# start_shards N [ENV=VAL...]: N shards, ids bench-1..N, WS_IP_RATE=0,
# WS_IP_MAX_PENDING=0 and WS_IP_MAX_CHANNELS=0 (the load generator connects
# from few addresses: thousands of clients share one, which the per-IP guards
# would refuse) and WS_MAX_PENDING=2048 (fast ramps); ENV=VAL overrides
start_shards() {
    local n=$1 i port id; shift
    for ((i = 1; i <= n; i++)); do
        port=$(free_port); id="bench-$i"
        bench_spawn "shard-$i" env WS_IP_RATE=0 WS_IP_MAX_PENDING=0 WS_IP_MAX_CHANNELS=0 WS_MAX_PENDING=2048 SHARD_ID="$id" WS_ADDR="127.0.0.1:$port" \
            SHARD_SOCKET="$RUN_DIR/shard-$i.sock" REDIS_URL="$REDIS_URL" LOG_LEVEL=warn \
            "$@" "$BUILD/odin-shard"
        SHARD_PIDS+=("$BENCH_LAST_PID"); SHARD_PORTS+=("$port"); SHARD_IDS+=("$id")
    done
    for port in "${SHARD_PORTS[@]}"; do wait_until 20 "shard on port $port" http_up "$port"; done
    SHARD_TARGETS=$(printf '127.0.0.1:%s,' "${SHARD_PORTS[@]}"); SHARD_TARGETS=${SHARD_TARGETS%,}
}

stop_shards() {
    local p
    for p in "${SHARD_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${SHARD_PIDS[@]}"; do bench_stop "$p" 10; done
    SHARD_PIDS=(); SHARD_PORTS=(); SHARD_IDS=()
}

# start_router NAME [ENV=VAL...]: router with HTTP on a free port; waits for
# its HTTP server and for every started shard to be connected.
ROUTER_LATENCY_OPTS="session.timeout.ms=6000,heartbeat.interval.ms=500,fetch.wait.max.ms=1"
start_router() {
    local name=$1; shift
    ROUTER_HTTP=$(free_port)
    bench_spawn "$name" env KAFKA_BROKERS="$KAFKA_BROKERS" REDIS_URL="$REDIS_URL" \
        HTTP_ADDR="127.0.0.1:$ROUTER_HTTP" LOG_LEVEL=info \
        KAFKA_OPTIONS="$ROUTER_LATENCY_OPTS" "$@" "$BUILD/odin-router"
    ROUTER_PID=$BENCH_LAST_PID
    wait_until 20 "router HTTP" http_up "$ROUTER_HTTP"
    wait_until 30 "router connected to ${#SHARD_PORTS[@]} shards" router_has_shards
}
router_has_shards() {
    [ "$(metric "$ROUTER_HTTP" router_shards_connected)" -ge "${#SHARD_PORTS[@]}" ]
}
router_assigned() { [ "$(metric "$ROUTER_HTTP" router_assigned_partitions)" -gt 0 ]; }

stop_router() { bench_stop "$ROUTER_PID" 15; }

# publish NAME ENV=VAL...: odin-publish in the foreground (summary in logs/NAME.out)
publish() {
    local name=$1; shift
    env KAFKA_BROKERS="$KAFKA_BROKERS" LOG_LEVEL=warn "$@" "$BUILD/odin-publish" \
        >"$RUN_DIR/logs/$name.out" 2>"$RUN_DIR/logs/$name.log" \
        || bench_die "odin-publish ($name) failed: $(tail -n 3 "$RUN_DIR/logs/$name.log")"
}

# start_loadgen NAME ENV=VAL...: odin-loadgen in the background, summary in NAME.json
start_loadgen() {
    local name=$1; shift
    bench_spawn "$name" env LG_TARGETS="$SHARD_TARGETS" LG_PROGRESS=1 LOG_LEVEL=warn \
        LG_SUMMARY_FILE="$RUN_DIR/$name.json" "$@" "$BUILD/odin-loadgen"
    LOADGEN_PID=$BENCH_LAST_PID
}
# wait for loadgen to exit on its own (bounded), return its status
wait_loadgen() {
    local secs=$1 i
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$LOADGEN_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$LOADGEN_PID" 2>/dev/null && bench_die "loadgen did not finish in ${secs}s"
    wait "$LOADGEN_PID"
}
subs_zero() { [ "$(shards_metric ws_subscriptions_active)" -eq 0 ]; }
# lg_total_ge NAME N: the loadgen's progress line reports >= N messages
lg_total_ge() {   # the line shows 12345, 123.4k or 12.35M
    grep -a ' total |' "$RUN_DIR/logs/$1.log" 2>/dev/null | tail -n 1 |
        awk -v want="$2" '{ for (i = 1; i < NF; i++) if ($(i + 1) == "total") v = $i }
            END { m = 1; if (v ~ /k$/) m = 1e3; if (v ~ /M$/) m = 1e6; if (v ~ /G$/) m = 1e9;
                  sub(/[kMG]$/, "", v); n = v * m;
                  # k/M are rounded to 0.1: accept within that precision
                  exit !(n + (m > 1 ? 0.05 * m : 0) >= want) }'
}
# lg_resolved_ge NAME N: progress line shows subscribed + failed >= N
lg_resolved_ge() {
    grep -a ' subscribed, ' "$RUN_DIR/logs/$1.log" 2>/dev/null | tail -n 1 |
        awk -v want="$2" '{ for (i = 2; i <= NF; i++) {
                               if ($i == "subscribed,") s = $(i - 1);
                               if ($i == "failed") f = $(i - 1) } }
            END { exit !(s + f >= want) }'
}
# lg_open NAME: connections open now ("conns N/T up") in the loadgen's last
# progress line
lg_open() {
    grep -a ' subscribed, ' "$RUN_DIR/logs/$1.log" 2>/dev/null | tail -n 1 |
        awk '{ for (i = 2; i <= NF; i++) if ($i == "up,") { split($(i - 1), a, "/"); s = a[1] } }
             END { print s + 0 }'
}
subs_active() { [ "$(shards_metric ws_subscriptions_active)" -ge "$1" ]; }

# routes_single_shard: every odin:route:* set has exactly one member
routes_check() {   # prints "<routes> <max members>"
    rcli --scan --pattern 'odin:route:*' | sort -u >"$RUN_DIR/routes.txt"
    local n max
    n=$(wc -l <"$RUN_DIR/routes.txt")
    max=$(sed 's/^/SCARD /' "$RUN_DIR/routes.txt" | rcli | sort -n | tail -1)
    echo "$n ${max:-0}"
}

# log_ts_epoch FILE MSG: epoch seconds (ms precision) of the first JSON log
# line of FILE whose "msg" is MSG (empty if none yet)
log_ts_epoch() {
    local ts
    ts=$(grep -m1 -F "\"msg\":\"$2\"" "$1" 2>/dev/null | sed -n 's/^{"ts":"\([^"]*\)".*/\1/p')
    [ -n "$ts" ] && date -d "$ts" +%s.%N
}
router_assigned_log() { [ -n "$(log_ts_epoch "$RUN_DIR/logs/$1.log" "partitions assigned")" ]; }

# perf_start NAME [SECONDS]: with PERF=1, a system-wide perf profile
# (call graphs) of the measured window into $RUN_DIR/perf-NAME.data;
# perf_stop NAME writes perf-NAME.txt (CPU by process and DSO, top symbols
# of odin-router / odin-shard).  A no-op without PERF=1.
perf_start() {
    [ "${PERF:-0}" = 1 ] || return 0
    command -v perf >/dev/null || { bench_log "perf not found; PERF ignored"; return 0; }
    perf record -a -g -F "${PERF_FREQ:-499}" -o "$RUN_DIR/perf-$1.data" -- sleep "${2:-600}" \
        >"$RUN_DIR/logs/perf-$1.log" 2>&1 &
    PERF_PID=$!
    sleep 0.5
}
perf_stop() {
    [ "${PERF:-0}" = 1 ] && [ -n "${PERF_PID:-}" ] || return 0
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=
    # only this run's processes (other work on the machine is left out)
    local d="$RUN_DIR/perf-$1.data" p pids="" c
    for p in "${BENCH_PIDS[@]}"; do
        kill -0 "$p" 2>/dev/null || continue
        pids="$pids,$p"
        for c in $(children_pids "$p"); do pids="$pids,$c"; done
    done
    pids=${pids#,}
    {
        echo "== CPU samples by process and DSO (perf record -a -g, cpu-clock; % of all samples, idle included)"
        perf report -i "$d" --pid "$pids" --no-children --sort comm,dso -g none --stdio 2>/dev/null | grep '%' | head -30 || true
        for c in odin-router odin-shard odin-loadgen; do
            echo; echo "== $c: top symbols (self)"
            perf report -i "$d" --pid "$pids" --no-children --comm "$c" --sort dso,sym -g none --stdio 2>/dev/null |
                grep '%' | head -30 || true
        done
    } >"$RUN_DIR/perf-$1.txt"
    bench_log "profile: $RUN_DIR/perf-$1.txt"
}

# ---------------------------------------------------------------- output
# Every benchmark collects rows "metric<TAB>value<TAB>target<TAB>status" in
# $RUN_DIR/rows.tsv (row) and extra JSON fields in $RUN_DIR/extra.json, then
# finish_result prints the table and writes result.json / result.csv.

row() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "${3:-}" "${4:-}" >>"$RUN_DIR/rows.tsv"; }

# judge VALUE OP TARGET: "met" or "MISSED"; OP is ge or le
judge() {
    awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
        ok = (op == "ge") ? (v + 0 >= t + 0) : (v + 0 <= t + 0);
        print ok ? "met" : "MISSED" }'
}

# extra KEY JSON: add a field to extra.json
extra() {
    [ -s "$RUN_DIR/extra.json" ] || echo '{}' >"$RUN_DIR/extra.json"
    jq --arg k "$1" --argjson v "$2" '.[$k] = $v' "$RUN_DIR/extra.json" >"$RUN_DIR/extra.json.tmp" &&
        mv "$RUN_DIR/extra.json.tmp" "$RUN_DIR/extra.json"
}

finish_result() {
    local rows="$RUN_DIR/rows.tsv"
    background_pct
    row "CPU outside this run (other processes, kernel threads), % of 1 core" "$BG_PCT"
    [ -s "$RUN_DIR/extra.json" ] || echo '{}' >"$RUN_DIR/extra.json"
    jq -R -s --arg bench "$BENCH_NAME" --arg machine "$(machine_info)" \
        --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --slurpfile extra "$RUN_DIR/extra.json" '
        { bench: $bench, date: $date, machine: $machine,
          rows: (split("\n") | map(select(length > 0) | split("\t")
                 | { metric: .[0], value: (.[1] as $v | ($v | tonumber? // $v)),
                     target: .[2], status: .[3] })) } + $extra[0]' \
        "$rows" >"$RUN_DIR/result.json"
    { echo "metric,value,target,status"
      awk -F'\t' '{ printf "\"%s\",%s,\"%s\",%s\n", $1, $2, $3, $4 }' "$rows"; } >"$RUN_DIR/result.csv"
    {
        echo "== $BENCH_NAME: $(machine_info)"
        awk -F'\t' 'BEGIN { printf "%-50s %14s  %-12s %s\n", "metric", "value", "target", "status" }
                    { printf "%-50s %14s  %-12s %s\n", $1, $2, $3, $4 }' "$rows"
        echo "result: $RUN_DIR/result.json (also .csv); logs: $RUN_DIR/logs"
    } | tee "$RUN_DIR/table.txt"
}
