#!/usr/bin/env bash
# Run odin-dispatch tests against real servers.
#   tools/run-tests.sh unit|it|all BUILD_DIR [FILTER]
# unit: every BUILD/tests/test_* (cmocka, no I/O) and tests/unit/*.sh, one
#       after the other.
# it:   every BUILD/it/test_* binary and every tests/it/*.sh script, up to
#       ODIN_TEST_JOBS (default 6) side by side.  Each job slot has its own
#       redis-server and odin-devbroker on free ports and its own scratch
#       dir, so tests that run at the same time share nothing; one test at a
#       time uses a slot (FLUSHALL before each).  A test sees ODIN_BUILD,
#       ODIN_TOP, ODIN_TMP, ODIN_REDIS_URL, ODIN_REDIS_PORT and
#       ODIN_KAFKA_BROKERS of its slot, and ODIN_TEST_SLOT/ODIN_TEST_SLOTS
#       (tsup_free_port and ports.sh pick ports in a window of their own per
#       slot).  A test whose source has the line "odin-test: alone" (one that
#       measures time, CPU or memory) runs after the others with nothing
#       beside it.  A test binary whose source has lines
#       "odin-test: part NAME [alone] case..." runs as several jobs: one
#       it/<file>:NAME per part with only those cmocka cases (ODIN_TEST_ONLY,
#       tests/support/cases.h), alone if the line says so, and it/<file> with
#       the other cases (ODIN_TEST_SKIP; alone if the file says "odin-test:
#       alone"); so only the cases that measure time keep the machine to
#       themselves.  An alone test whose source also says "odin-test: gate"
#       starts in a slot of its own beside the last other tests (once those
#       still to start are about GATE_LEAD, default 30, seconds of work per
#       slot) and waits in tsup_alone_wait()
#       (tests/support/support.h) before what it measures, until the runner
#       creates the file ODIN_TEST_GATE once nothing else runs.  Tests start
#       longest first (times of the last run, kept in BUILD/.it-times; when
#       each ran in BUILD/.it-timeline).  Everything is stopped by a trap on
#       exit.
# all:  both; the unit tests are jobs of the same pool (beside the
#       integration tests, not before them).
# FILTER: only tests whose name contains it.
# A test that exits 77 was skipped (the environment cannot run it, e.g. no
# network namespaces): printed as SKIP with its "SKIP: reason" line, not
# counted as passed or failed.
# Prints one line per test as it ends (with its time; a failure with the
# tail of its log) and, last, "tests: N passed, N failed" (and
# ", N skipped" when some were); the line before it has the wall time.
set -u
unset ODIN_TEST_GATE
mode=${1:-all}; build=${2:-build}; filter=${3:-}
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$top" && cd "$build" && pwd) || { echo "no build dir $2" >&2; exit 2; }
jobs=${ODIN_TEST_JOBS:-6}
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "ODIN_TEST_JOBS must be a positive integer" >&2; exit 2; }
passed=0; failed=0; skipped=0; failed_names=()
tmp=$(mktemp -d "${TMPDIR:-/tmp}/odin-test.XXXXXX")
pids=()                 # services (redis-server, odin-devbroker of each slot)
declare -A running=()   # test job pid -> slot
t_start=${EPOCHREALTIME/./}

cleanup() {
    for p in "${!running[@]}"; do pkill -TERM -P "$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null; done
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

# Run one test (in a job): its output to $tmp/<name>.log, its verdict block
# (PASS/FAIL/SKIP line, a failure's log tail) to $tmp/<name>.res, its time
# to $tmp/<name>.time.  Exit 0 pass, 77 skip, 1 fail.
run_one() { # name cmd...
    local name=$1; shift
    local log="$tmp/$name.log" res="$tmp/$name.res" start end rc
    mkdir -p "$(dirname "$log")"
    start=${EPOCHREALTIME/./}
    ( cd "$ODIN_TMP" && "$@" ) >"$log" 2>&1 </dev/null; rc=$?
    end=${EPOCHREALTIME/./}
    local dt=$(( (end - start) / 100000 )); dt="$((dt / 10)).$((dt % 10))"
    echo "$dt" >"$tmp/$name.time"
    echo "$name $(( (start - t_start) / 100000 )) $(( (end - t_start) / 100000 ))" >>"$tmp/timeline"
    if [ $rc -eq 0 ]; then
        printf 'PASS %-40s %6ss\n' "$name" "$dt" >"$res"; return 0
    elif [ $rc -eq 77 ]; then
        printf 'SKIP %-40s %6ss %s\n' "$name" "$dt" "$(grep -m1 '^SKIP: ' "$log" | cut -c7-)" >"$res"
        return 77
    fi
    {
        printf 'FAIL %-40s %6ss (exit %d)\n' "$name" "$dt" "$rc"
        # cmocka's verdict lines first: a sanitizer report at exit (e.g.
        # what a failed assertion left allocated) would push them out of
        # the tail
        grep -E '^\[ +(ERROR|LINE|FAILED) +\]|error: ' "$log" | head -n 20 | sed 's/^/    ! /'
        tail -n 40 "$log" | sed 's/^/    | /'
    } >"$res"
    return 1
}

# Count and print a finished test's verdict.
verdict() { # name rc
    cat "$tmp/$1.res" 2>/dev/null || printf 'FAIL %-40s (no verdict, exit %d)\n' "$1" "$2"
    case $2 in
        0) passed=$((passed + 1)) ;;
        77) skipped=$((skipped + 1)) ;;
        *) failed=$((failed + 1)); failed_names+=("$1") ;;
    esac
}

match() { [ -z "$filter" ] || [[ "$1" == *"$filter"* ]]; }

run_unit() {
    local t n rc
    mkdir -p "$tmp/unit.d"
    for t in "$build"/tests/test_*; do
        [ -x "$t" ] || continue
        n=$(basename "$t"); match "$n" || continue
        ODIN_TMP="$tmp/unit.d" run_one "unit/$n" "$t"; rc=$?
        verdict "unit/$n" $rc
    done
    # scripted unit tests (tests/unit/*.sh: the JavaScript client library)
    for s in "$top"/tests/unit/*.sh; do
        [ -f "$s" ] || continue
        n=$(basename "$s" .sh); match "$n" || continue
        ODIN_TMP="$tmp/unit.d" run_one "unit/$n" bash "$s"; rc=$?
        verdict "unit/$n" $rc
    done
}

# Slot k: a redis-server and an odin-devbroker of its own, and $tmp/s<k>.
declare -a slot_rport=() slot_brokers=()
start_slot() { # k
    local k=$1 d="$tmp/s$1" rport
    mkdir -p "$d/redis"
    rport=$(free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --dir "$d/redis" \
        --save '' --appendonly no --daemonize no --loglevel warning \
        >"$d/redis.log" 2>&1 &
    pids+=($!)
    "$build/odin-devbroker" --bootstrap-file "$d/kafka.bootstrap" \
        >"$d/devbroker.out" 2>"$d/devbroker.log" &
    pids+=($!)
    slot_rport[$k]=$rport
}
wait_slot() { # k
    local k=$1 d="$tmp/s$1" rport=${slot_rport[$1]}
    for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
    redis-cli -p "$rport" ping >/dev/null || { echo "redis-server did not start" >&2; cat "$d/redis.log" >&2; exit 1; }
    for _ in $(seq 200); do [ -s "$d/kafka.bootstrap" ] && break; sleep 0.05; done
    [ -s "$d/kafka.bootstrap" ] || { echo "odin-devbroker did not start" >&2; cat "$d/devbroker.log" >&2; exit 1; }
    slot_brokers[$k]=$(cat "$d/kafka.bootstrap")
}

# Start test `name` (cmd...) in slot k as a background job; sel is its
# case selection ("ODIN_TEST_ONLY=..." or "ODIN_TEST_SKIP=...", or empty).
launch() { # k name sel cmd...
    local k=$1 name=$2 sel=$3; shift 3
    (
        [ -n "$sel" ] && export "${sel?}"
        [ -n "${ODIN_TEST_GATE:-}" ] && export ODIN_TEST_GATE
        export ODIN_BUILD="$build" ODIN_TOP="$top" ODIN_TMP="$tmp/s$k"
        export ODIN_REDIS_PORT="${slot_rport[$k]}" ODIN_REDIS_URL="redis://127.0.0.1:${slot_rport[$k]}"
        export ODIN_KAFKA_BROKERS="${slot_brokers[$k]}"
        export ODIN_TEST_SLOT="$k" ODIN_TEST_SLOTS="$nwin"
        redis-cli -p "${slot_rport[$k]}" flushall >/dev/null
        run_one "$name" "$@"
    ) &
    running[$!]="$k $name"
}

# Wait for one running test; print its verdict; echo nothing (frees a slot).
reap() {
    local p rc k name
    wait -n -p p "${!running[@]}"; rc=$?
    [ -n "${p:-}" ] || return 1
    read -r k name <<<"${running[$p]}"
    unset "running[$p]"
    free_slots+=("$k")
    verdict "$name" "$rc"
}

# A test (whole file, or a binary's remaining cases) that runs alone: its
# source has the line "odin-test: alone".
is_alone() { # name kind path
    local src=$3
    [ "$2" = sh ] || src="$top/tests/${1%%:*}.c"
    [ -f "$src" ] && grep -q 'odin-test: alone' "$src"
}

# Candidates of one test binary: its parts ("odin-test: part NAME [alone]
# case..." lines of its source, each a job it/<file>:NAME running only those
# cmocka cases, tests/support/cases.h) and the job it/<file> with the other
# cases (none when the parts name every case of the file).
add_bin() { # name path src
    local name=$1 path=$2 src=$3 pn al rest w
    local -A pcases=() palone=()
    local -a order=()
    if [ -f "$src" ]; then
        while read -r pn al rest; do
            [ -n "$pn" ] || continue
            if [ "$al" != alone ]; then rest="$al $rest"; al=""; fi
            [ -n "${pcases[$pn]+x}" ] || order+=("$pn")
            pcases[$pn]="${pcases[$pn]:-} $rest"
            [ -n "$al" ] && palone[$pn]=1
        done < <(grep -oE 'odin-test: part [A-Za-z0-9_-]+( [A-Za-z0-9_]+)+' "$src" \
                 | sed 's/^odin-test: part //')
    fi
    if [ ${#order[@]} -eq 0 ]; then
        all+=("$name"$'\t'bin$'\t'"$path"$'\t')
        return
    fi
    local parted=""
    for pn in "${order[@]}"; do
        all+=("$name:$pn"$'\t'"part${palone[$pn]:+-alone}"$'\t'"$path"$'\t'"ODIN_TEST_ONLY=${pcases[$pn]# }")
        parted="$parted${pcases[$pn]}"
    done
    # the rest, unless every case of the file is in a part
    local left=0
    for w in $(grep -oE 'cmocka_unit_test[a-z_]*\( *[A-Za-z0-9_]+' "$src" | sed 's/.*( *//'); do
        [[ " $parted " == *" $w "* ]] || left=1
    done
    [ $left -eq 1 ] && all+=("$name"$'\t'bin$'\t'"$path"$'\t'"ODIN_TEST_SKIP=${parted# }")
}

run_it() {
    local t n s cmd
    # candidates: "name<TAB>kind<TAB>path", kind bin or sh
    local -a all=()
    for t in "$build"/it/test_*; do
        [ -x "$t" ] || continue
        n=$(basename "$t"); match "$n" || continue
        add_bin "it/$n" "$t" "$top/tests/it/$n.c"
    done
    for s in "$top"/tests/it/*.sh; do
        [ -f "$s" ] || continue
        n=$(basename "$s" .sh); match "$n" || continue
        all+=("it/$n"$'\t'sh$'\t'"$s")
    done
    if [ "${1:-}" = with-unit ]; then   # the unit tests as jobs of the same pool
        for t in "$build"/tests/test_*; do
            [ -x "$t" ] || continue
            n=$(basename "$t"); match "$n" || continue
            all+=("unit/$n"$'\t'bin$'\t'"$t")
        done
        for s in "$top"/tests/unit/*.sh; do
            [ -f "$s" ] || continue
            n=$(basename "$s" .sh); match "$n" || continue
            all+=("unit/$n"$'\t'sh$'\t'"$s")
        done
    fi
    [ ${#all[@]} -gt 0 ] || return 0
    # longest first (last run's times; a new test counts as long)
    local times="$build/.it-times"
    local -A prev=()
    if [ -f "$times" ]; then
        while read -r n s; do prev[$n]=$s; done <"$times"
    fi
    local -a shared=() alone=()
    local line src e sel
    while IFS= read -r line; do
        IFS=$'\t' read -r n kind path sel <<<"${line#*$'\t'}"
        e="$n"$'\t'"$kind"$'\t'"$path"$'\t'"$sel"
        if [ "$kind" = part-alone ] || { [ "$kind" != part ] && is_alone "$n" "$kind" "$path"; }; then
            alone+=("$e")
        else
            shared+=("$e")
        fi
    done < <(for l in "${all[@]}"; do
                 n=${l%%$'\t'*}; printf '%s\t%s\n' "${prev[$n]:-999}" "$l"
             done | sort -t$'\t' -k1,1 -rn)
    nslots=$jobs
    [ ${#shared[@]} -lt "$nslots" ] && nslots=${#shared[@]}
    [ "$nslots" -ge 1 ] || nslots=1
    nwin=$nslots    # slots with a port window (ODIN_TEST_SLOTS)
    # A gated alone test (its source says "odin-test: gate") starts in a
    # slot of its own once the others still to start are about GATE_LEAD
    # seconds of work per slot, does its set-up beside them, and waits in
    # tsup_alone_wait() for the file ODIN_TEST_GATE before the part it
    # measures: the runner creates it once nothing else runs.
    local gi="" gated="" gate="" g=0 i
    for i in "${!alone[@]}"; do
        IFS=$'\t' read -r n kind path sel <<<"${alone[$i]}"
        [ "$kind" = sh ] && continue
        src="$top/tests/${n%%:*}.c"
        [ -f "$src" ] && grep -q 'odin-test: gate' "$src" || continue
        gi=$i; g=$((nslots + 1)); nwin=$g
        break
    done
    local k
    for k in $(seq "$nwin"); do start_slot "$k"; done
    for k in $(seq "$nwin"); do wait_slot "$k"; done
    free_slots=($(seq "$nslots"))
    # work still to start, in tenths of a second (last run's times)
    local left=0 lead=$(( ${GATE_LEAD:-30} * 10 * nslots ))
    tenths() { local t=${1:-999}; [[ "$t" == *.* ]] || t="$t.0"; echo $(( 10#${t%.*} * 10 + 10#${t#*.} )); }
    for line in "${shared[@]}"; do
        n=${line%%$'\t'*}; left=$(( left + $(tenths "${prev[$n]:-}") ))
    done
    launch_gated() {
        local gn gkind gpath gsel
        IFS=$'\t' read -r gn gkind gpath gsel <<<"${alone[$gi]}"
        gate="$tmp/gate.$g"
        ODIN_TEST_GATE="$gate" launch "$g" "$gn" "$gsel" "$gpath"
        gated=$gn
        unset "alone[$gi]"
        gi=""
    }
    for line in "${shared[@]}"; do
        IFS=$'\t' read -r n kind path sel <<<"$line"
        [ -n "$gi" ] && [ "$left" -le "$lead" ] && launch_gated
        left=$(( left - $(tenths "${prev[$n]:-}") ))
        while [ ${#free_slots[@]} -eq 0 ]; do reap; done
        k=${free_slots[0]}; free_slots=("${free_slots[@]:1}")
        if [ "$kind" = sh ]; then launch "$k" "$n" "" bash "$path"; else launch "$k" "$n" "$sel" "$path"; fi
    done
    [ -n "$gi" ] && launch_gated
    local p
    while :; do
        local others=0
        for p in "${!running[@]}"; do [[ "${running[$p]}" == *" $gated" ]] || others=1; done
        [ $others -eq 1 ] || break
        reap
    done
    [ -n "$gate" ] && : >"$gate"
    while [ ${#running[@]} -gt 0 ]; do reap; done
    for line in "${alone[@]}"; do
        IFS=$'\t' read -r n kind path sel <<<"$line"
        k=1
        if [ "$kind" = sh ]; then launch "$k" "$n" "" bash "$path"; else launch "$k" "$n" "$sel" "$path"; fi
        reap
    done
    # remember the times for the next run's order
    {
        [ -f "$times" ] && cat "$times"
        for line in "${all[@]}"; do
            n=${line%%$'\t'*}
            [ -f "$tmp/$n.time" ] && printf '%s %s\n' "$n" "$(cat "$tmp/$n.time")"
        done
    } | awk '{ t[$1] = $2 } END { for (n in t) print n, t[n] }' | sort >"$times.new" \
        && mv "$times.new" "$times"
    # when each job ran (start and end, tenths of a second into the run)
    [ -f "$tmp/timeline" ] && sort -k2,2n "$tmp/timeline" >"$build/.it-timeline"
}

case "$mode" in
    unit) run_unit ;;
    it) run_it ;;
    all) run_it with-unit ;;
    *) echo "usage: $0 unit|it|all BUILD_DIR [FILTER]" >&2; exit 2 ;;
esac

t_end=${EPOCHREALTIME/./}
wall=$(( (t_end - t_start) / 100000 ))
echo "== $(basename "$build") == wall $((wall / 10)).$((wall % 10))s (ODIN_TEST_JOBS=$jobs)"
echo "tests: $passed passed, $failed failed$([ "$skipped" -eq 0 ] || echo ", $skipped skipped")"
[ "$failed" -eq 0 ] || { printf 'failed: %s\n' "${failed_names[@]}"; exit 1; }
