#!/usr/bin/env bash
# Run odin-dispatch tests against real servers.
#   tools/run-tests.sh unit|it|all BUILD_DIR [FILTER]
# unit: every BUILD/tests/test_* (cmocka, no I/O) and tests/unit/*.sh.
# it:   starts a private redis-server and odin-devbroker on free ports, then
#       runs every BUILD/it/test_* binary and every tests/it/*.sh script with
#       ODIN_BUILD, ODIN_TMP, ODIN_REDIS_URL, ODIN_REDIS_PORT and
#       ODIN_KAFKA_BROKERS set.  Everything is stopped by a trap on exit.
# FILTER: only tests whose name contains it.
# A test that exits 77 was skipped (the environment cannot run it, e.g. no
# network namespaces): printed as SKIP with its "SKIP: reason" line, not
# counted as passed or failed.
# Prints one line per test and, last, "tests: N passed, N failed" (and
# ", N skipped" when some were).
set -u
mode=${1:-all}; build=${2:-build}; filter=${3:-}
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$top" && cd "$build" && pwd) || { echo "no build dir $2" >&2; exit 2; }
passed=0; failed=0; skipped=0; failed_names=()
tmp=$(mktemp -d /tmp/odin-test.XXXXXX)
pids=()

cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null
    done
    # stray children of tests (shards, routers) left by a crashed test
    pkill -KILL -f "$tmp" 2>/dev/null
    if [ "$failed" -gt 0 ] || [ -n "${ODIN_KEEP_TMP:-}" ]; then
        echo "logs kept in $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 - <<'PY' 2>/dev/null || echo $(( 20000 + RANDOM % 20000 ))
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

run_one() { # name cmd...
    local name=$1; shift
    local log="$tmp/$name.log" start end rc
    mkdir -p "$(dirname "$log")"
    start=${EPOCHREALTIME/./}
    ( cd "$tmp" && "$@" ) >"$log" 2>&1; rc=$?
    end=${EPOCHREALTIME/./}
    local dt=$(( (end - start) / 100000 )); dt="$((dt / 10)).$((dt % 10))"
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1)); printf 'PASS %-40s %6ss\n' "$name" "$dt"
    elif [ $rc -eq 77 ]; then
        skipped=$((skipped + 1))
        printf 'SKIP %-40s %6ss %s\n' "$name" "$dt" "$(grep -m1 '^SKIP: ' "$log" | cut -c7-)"
    else
        failed=$((failed + 1)); failed_names+=("$name")
        printf 'FAIL %-40s %6ss (exit %d)\n' "$name" "$dt" "$rc"
        # cmocka's verdict lines first: a sanitizer report at exit (e.g.
        # what a failed assertion left allocated) would push them out of
        # the tail
        grep -E '^\[ +(ERROR|LINE|FAILED) +\]|error: ' "$log" | head -n 20 | sed 's/^/    ! /'
        tail -n 40 "$log" | sed 's/^/    | /'
    fi
}

match() { [ -z "$filter" ] || [[ "$1" == *"$filter"* ]]; }

run_unit() {
    for t in "$build"/tests/test_*; do
        [ -x "$t" ] || continue
        n=$(basename "$t"); match "$n" || continue
        run_one "unit/$n" "$t"
    done
    # scripted unit tests (tests/unit/*.sh: the JavaScript client library)
    for s in "$top"/tests/unit/*.sh; do
        [ -f "$s" ] || continue
        n=$(basename "$s" .sh); match "$n" || continue
        run_one "unit/$n" bash "$s"
    done
}

start_services() {
    local rport; rport=$(free_port)
    mkdir -p "$tmp/redis"
    redis-server --port "$rport" --bind 127.0.0.1 --dir "$tmp/redis" \
        --save '' --appendonly no --daemonize no --loglevel warning \
        >"$tmp/redis.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
    redis-cli -p "$rport" ping >/dev/null || { echo "redis-server did not start" >&2; exit 1; }
    "$build/odin-devbroker" --bootstrap-file "$tmp/kafka.bootstrap" \
        >"$tmp/devbroker.out" 2>"$tmp/devbroker.log" &
    pids+=($!)
    for _ in $(seq 200); do [ -s "$tmp/kafka.bootstrap" ] && break; sleep 0.05; done
    [ -s "$tmp/kafka.bootstrap" ] || { echo "odin-devbroker did not start" >&2; cat "$tmp/devbroker.log" >&2; exit 1; }
    export ODIN_BUILD="$build" ODIN_TMP="$tmp" ODIN_TOP="$top"
    export ODIN_REDIS_PORT="$rport" ODIN_REDIS_URL="redis://127.0.0.1:$rport"
    export ODIN_KAFKA_BROKERS; ODIN_KAFKA_BROKERS=$(cat "$tmp/kafka.bootstrap")
}

run_it() {
    start_services
    for t in "$build"/it/test_*; do
        [ -x "$t" ] || continue
        n=$(basename "$t"); match "$n" || continue
        redis-cli -p "$ODIN_REDIS_PORT" flushall >/dev/null
        run_one "it/$n" "$t"
    done
    for s in "$top"/tests/it/*.sh; do
        [ -f "$s" ] || continue
        n=$(basename "$s" .sh); match "$n" || continue
        redis-cli -p "$ODIN_REDIS_PORT" flushall >/dev/null
        run_one "it/$n" bash "$s"
    done
}

case "$mode" in
    unit) run_unit ;;
    it) run_it ;;
    all) run_unit; run_it ;;
    *) echo "usage: $0 unit|it|all BUILD_DIR [FILTER]" >&2; exit 2 ;;
esac

echo "== $(basename "$build") =="
echo "tests: $passed passed, $failed failed$([ "$skipped" -eq 0 ] || echo ", $skipped skipped")"
[ "$failed" -eq 0 ] || { printf 'failed: %s\n' "${failed_names[@]}"; exit 1; }
