# shellcheck shell=bash
# The shell integration tests' helpers (tests/it/*.sh), sourced:
#     . "${ODIN_TOP:?}/tests/support/stack.sh"
#     stack_init NAME        # $T, cleanup trap
# Everything a test starts with spawn/start_* (or hands to stack_track) is
# stopped by the EXIT trap: SIGCONT to what it SIGSTOPped (stack_stopped),
# SIGTERM, up to 5 s to exit (polled), then SIGKILL.
# Synchronisation is on events, polled with a deadline (wait_until and the
# helpers built on it), never a fixed sleep: the process answers, the log
# line is there, the metric has the value, the marker file exists.
#
# Settings a test may change after sourcing:
#   STACK_FAIL_PREFIX ("FAIL: ")  what fail prints before its message
#   STACK_LOGS ("*.log")          which files of $T fail shows the tail of
#   STACK_LOG_LINES (5)           how many lines of each
#   STACK_BROKERS                 Kafka of kafka_topic/produce/kafka_read
#                                 (default $KAFKA_BROKERS, $ODIN_KAFKA_BROKERS)
#   IN_NS=NS cmd                  spawn/start_*/metric* run in network namespace NS
. "$(dirname "${BASH_SOURCE[0]}")/ports.sh"

STACK_FAIL_PREFIX="FAIL: "
STACK_LOGS="*.log"
STACK_LOG_LINES=5
STACK_PIDS=()        # stopped by stack_cleanup
STACK_STOPPED=()     # SIGSTOPped: continued before they are stopped
STACK_HOOKS=()       # commands stack_cleanup runs last
T=${T:-}

# ---- set-up and clean-up ------------------------------------------------------

# stack_init NAME: $T = $ODIN_TMP/NAME.<pid> (made), stack_cleanup on EXIT
stack_init() {
    T="${ODIN_TMP:?run through tools/run-tests.sh}/$1.$$"
    mkdir -p "$T"
    trap stack_cleanup EXIT
}

# stack_cleanup: continue, stop and reap every tracked process, run the hooks
stack_cleanup() {
    set +e
    local p h
    for p in "${STACK_STOPPED[@]}"; do kill -CONT "$p" 2>/dev/null; done
    for p in "${STACK_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${STACK_PIDS[@]}"; do stack_reap "$p" 5; done
    for h in "${STACK_HOOKS[@]}"; do eval "$h"; done
    rm -f "$(stack_ports_file)"
}

stack_track() { STACK_PIDS+=("$@"); }
stack_stopped() { STACK_STOPPED+=("$@"); }

# fail MESSAGE: print it and the tail of the test's logs, exit 1
fail() {
    echo "${STACK_FAIL_PREFIX}$*" >&2
    if [ -n "$T" ] && [ -d "$T" ]; then
        local g f
        for g in $STACK_LOGS; do
            for f in "$T"/$g; do
                [ -f "$f" ] || continue
                echo "== $f"; tail -n "$STACK_LOG_LINES" "$f"
            done
        done >&2
    fi
    exit 1
}
skip() { echo "SKIP: $*"; exit 77; }

# ---- waiting on events ----------------------------------------------------------

# wait_until SECS CMD...: poll CMD (its output discarded) every 50 ms until
# it succeeds; 1 when SECS pass first
wait_until() {
    local end=$(( ${EPOCHREALTIME/./} + $1 * 1000000 )); shift
    until "$@" >/dev/null 2>&1; do
        [ "${EPOCHREALTIME/./}" -lt "$end" ] || return 1
        sleep 0.05
    done
}

# wait_for SECS WHAT CMD...: wait_until, or fail "timed out ... WHAT"
wait_for() {
    local secs=$1 what=$2; shift 2
    wait_until "$secs" "$@" || fail "timed out after $secs s waiting for $what"
}

stack_gone() { ! kill -0 "$1" 2>/dev/null; }
_stack_or_gone() { local pid=$1; shift; "$@" || stack_gone "$pid"; }

# wait_while_alive SECS PID CMD...: wait_until CMD, but give up as soon as
# process PID has ended: 0 CMD succeeded, 1 timed out, 2 PID ended first
wait_while_alive() {
    local secs=$1 pid=$2; shift 2
    wait_until "$secs" _stack_or_gone "$pid" "$@" || return 1
    "$@" >/dev/null 2>&1 || return 2
}

# wait_log SECS FILE PATTERN: a line of FILE matches PATTERN (grep BRE)
wait_log() { wait_until "$1" grep -q -e "$3" "$2"; }

# await_marker SECS FILE PID WHAT: the process PID (a test client) signals a
# phase by creating FILE; fail when it ends first or SECS pass
await_marker() {
    local rc=0
    wait_while_alive "$1" "$3" test -e "$2" || rc=$?
    [ "$rc" -ne 0 ] || return 0
    [ "$rc" -eq 2 ] || fail "$4: no ${2##*/} within $1 s"
    rc=0; wait "$3" || rc=$?
    fail "$4 ended (exit $rc) before ${2##*/}"
}

# ---- processes --------------------------------------------------------------------

stack_in_ns() { if [ -n "${IN_NS:-}" ]; then ip netns exec "$IN_NS" "$@"; else "$@"; fi; }

# spawn NAME CMD...: CMD in the background, stdout and stderr to
# $T/NAME.log, tracked; its pid in SPAWNED (call it directly, not in $(...))
# spawn_out NAME CMD...: the same with stdout to $T/NAME.out (a summary,
# what a client received) and stderr to $T/NAME.log
spawn() { _stack_spawn "$1" "" "${@:2}"; }
spawn_out() { _stack_spawn "$1" "$T/$1.out" "${@:2}"; }
_stack_spawn() {
    local name=$1 out=$2; shift 2
    local argv=("$@")
    [ -z "${IN_NS:-}" ] || argv=(ip netns exec "$IN_NS" "$@")
    if [ -n "$out" ]; then
        "${argv[@]}" >"$out" 2>"$T/$name.log" &
    else
        "${argv[@]}" >"$T/$name.log" 2>&1 &
    fi
    SPAWNED=$!
    STACK_PIDS+=("$SPAWNED")
}

# _stack_args [VAR=VALUE | -u VAR]... [--flag...]: STACK_UNSET (-u VAR, for
# env(1)), STACK_SETS (VAR=VALUE) and STACK_FLAGS (everything from the first
# word that is neither)
_stack_args() {
    STACK_UNSET=(); STACK_SETS=(); STACK_FLAGS=()
    while [ $# -gt 0 ]; do
        case $1 in
            -u) STACK_UNSET+=(-u "$2"); shift 2 ;;
            [A-Z_]*=*) STACK_SETS+=("$1"); shift ;;
            *) STACK_FLAGS=("$@"); break ;;
        esac
    done
}

# start_shard NAME ID ADDR [VAR=VALUE | -u VAR]... [--flag...]: odin-shard
# SHARD_ID=ID on WS_ADDR ADDR (a bare port: 127.0.0.1:PORT), SHARD_SOCKET
# $T/NAME.sock, log $T/NAME.log; pid in SPAWNED
start_shard() {
    local name=$1 id=$2 addr=$3; shift 3
    [[ "$addr" == *:* ]] || addr="127.0.0.1:$addr"
    _stack_args "$@"
    spawn "$name" env "${STACK_UNSET[@]}" SHARD_ID="$id" WS_ADDR="$addr" SHARD_SOCKET="$T/$name.sock" \
        "${STACK_SETS[@]}" "${ODIN_BUILD:?}/odin-shard" "${STACK_FLAGS[@]}"
}

# start_shards N PREFIX [VAR=VALUE | -u VAR]... [--flag...]: shards
# PREFIX-1..N, named shard1..N, on free ports; SHARD_PORTS, SHARD_PIDS,
# SHARD_URLS (ws://...) of each (index 0 is shard 1)
start_shards() {
    local n=$1 prefix=$2 i p; shift 2
    SHARD_PORTS=(); SHARD_PIDS=(); SHARD_URLS=()
    for i in $(seq "$n"); do
        p=$(port)
        start_shard "shard$i" "$prefix-$i" "$p" "$@"
        SHARD_PORTS+=("$p"); SHARD_PIDS+=("$SPAWNED"); SHARD_URLS+=("ws://127.0.0.1:$p/ws")
    done
}

# start_router NAME HTTP_ADDR [VAR=VALUE | -u VAR]... [--flag...]: odin-router
# with HTTP_ADDR (a bare port: 127.0.0.1:PORT), log $T/NAME.log; pid in SPAWNED
start_router() {
    local name=$1 addr=$2; shift 2
    [[ "$addr" == *:* ]] || addr="127.0.0.1:$addr"
    _stack_args "$@"
    spawn "$name" env "${STACK_UNSET[@]}" HTTP_ADDR="$addr" "${STACK_SETS[@]}" \
        "${ODIN_BUILD:?}/odin-router" "${STACK_FLAGS[@]}"
}

# stack_reap PID [SECS]: wait up to SECS (5) for PID to exit, then SIGKILL it
stack_reap() {
    wait_until "${2:-5}" stack_gone "$1" || kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null || true
    return 0
}

# stack_stop PID [SECS]: SIGTERM, then stack_reap; no longer tracked
stack_stop() { kill -TERM "$1" 2>/dev/null; stack_reap "$@"; stack_forget "$1"; }
stack_forget() {
    local keep=() p
    for p in "${STACK_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    STACK_PIDS=("${keep[@]}")
}

# stop_ok NAME PID [SECS]: SIGTERM; the process must exit 0 within SECS (10)
# (sanitizer builds report leaks and errors through the exit status)
stop_ok() {
    local secs=${3:-10} rc=0
    kill -TERM "$2"
    wait_until "$secs" stack_gone "$2" || kill -KILL "$2" 2>/dev/null
    wait "$2" || rc=$?
    stack_forget "$2"
    [ "$rc" -eq 0 ] || { tail -20 "$T/$1.log" >&2; fail "$1 exited $rc after SIGTERM (137: not within $secs s)"; }
}

# ---- ports, HTTP, metrics -----------------------------------------------------------

stack_ports_file() { echo "${ODIN_TMP:-${TMPDIR:-/tmp}}/.stack-ports.$$"; }
# port: a free TCP port (ports.sh: below the ephemeral range, in this job
# slot's window), never one this test was given before
port() {
    local f p
    f=$(stack_ports_file)
    while :; do
        p=$(free_port)
        grep -qx "$p" "$f" 2>/dev/null || break
    done
    echo "$p" >>"$f"
    echo "$p"
}

# run_stack_env NAME: tools/run-stack.sh (make run) of this test on free
# ports: RUN_STACK_ENV (VAR=VALUE words: BUILD, RUN_DIR, the ports),
# RUN_STACK_PORTS (every port it listens on but the broker's), run_dir
# ($ODIN_TMP/NAME) and out ($ODIN_TMP/NAME.out, for its output)
run_stack_env() {
    run_dir="$ODIN_TMP/$1"; out="$ODIN_TMP/$1.out"
    local base pub rhp rp
    base=$(free_port 3)
    printf '%s\n' "$base" $((base + 1)) $((base + 2)) >>"$(stack_ports_file)"
    pub=$(port); rhp=$(port); rp=$(port)
    # shellcheck disable=SC2034   # for the caller
    RUN_STACK_ENV=(BUILD="$ODIN_BUILD" RUN_DIR="$run_dir" PUBLIC_PORT="$pub" SHARD_PORT_BASE="$base"
                   ROUTER_HTTP_PORT="$rhp" REDIS_PORT="$rp")
    # shellcheck disable=SC2034
    RUN_STACK_PORTS=("$rp" "$pub" "$rhp" "$base" $((base + 1)) $((base + 2)))
}

# http_up PORT: something answers HTTP on 127.0.0.1:PORT/health (any status;
# IN_NS=NS: in that network namespace, as health_ok, metrics, metric*)
http_up() { [ "$(stack_in_ns curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$1/health")" != 000 ]; }
# health_ok PORT: /health on 127.0.0.1:PORT answers 2xx
health_ok() { stack_in_ns curl -fsS -o /dev/null -m 5 "http://127.0.0.1:$1/health"; }

# health_code PORT ERE: the status of /health on 127.0.0.1:PORT matches ERE
health_code() { [[ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$1/health")" =~ $2 ]]; }

# metrics PORT: the /metrics page of 127.0.0.1:PORT
metrics() { stack_in_ns curl -fsS -m 5 "http://127.0.0.1:$1/metrics"; }
# metric PORT SERIES: the value of one series (nothing when absent);
# metric0: 0 when absent
metric() {
    stack_in_ns curl -s -m 5 "http://127.0.0.1:$1/metrics" |
        awk -v s="$2" '$1 == s && !seen { print $2; seen = 1 }'   # no early exit: SIGPIPE + pipefail
}
metric0() { local v; v=$(metric "$@"); echo "${v:-0}"; }
metric_is() { [ "$(metric "$1" "$2")" = "$3" ]; }
metric_ge() { local v; v=$(metric "$1" "$2"); [ -n "$v" ] && [ "${v%.*}" -ge "$3" ]; }

# router_serves PORT N: the router has partitions assigned and a queue for
# at least N shards
router_serves() {
    local m; m=$(metrics "$1") || return 1
    [ "$(grep -c '^router_shard_queue_bytes{' <<<"$m")" -ge "$2" ] &&
        grep -qE '^router_assigned_partitions [1-9]' <<<"$m"
}

# ---- Kafka ----------------------------------------------------------------------------

stack_brokers() { echo "${STACK_BROKERS:-${KAFKA_BROKERS:-${ODIN_KAFKA_BROKERS:?}}}"; }
# produce TOPIC FILE: one record a line, KEY<TAB>VALUE
produce() { kcat -P -b "$(stack_brokers)" -t "$1" -K $'\t' -l "$2" 2>>"$T/kcat.log"; }
# kafka_topic TOPIC: create TOPIC with one record ("setup", {})
kafka_topic() { printf 'setup\t{}\n' | kcat -P -b "$(stack_brokers)" -t "$1" -K $'\t' 2>>"$T/kcat.log"; }
# kafka_read TOPIC FORMAT: every record of TOPIC from the beginning (kcat -f)
kafka_read() { kcat -C -b "$(stack_brokers)" -t "$1" -o beginning -e -q -f "$2" 2>>"$T/kcat.log"; }

# kafka_expected TOPIC KEY_ERE WANT: what Kafka holds for the keys matching
# KEY_ERE ("key partition offset" lines) into $T/expected, then
# $T/expected.done (the signal test clients wait for); fail unless it is
# WANT records
kafka_expected() {
    kafka_read "$1" '%k %p %o\n' >"$T/kafka.all" || fail "kcat: $(tail -3 "$T/kcat.log")"
    grep -E "$2" "$T/kafka.all" >"$T/expected" || true
    local got; got=$(wc -l <"$T/expected")
    [ "$got" -eq "$3" ] || fail "Kafka holds $got records of our tokens, $3 were published"
    touch "$T/expected.done"
}

# topic_router NAME HTTP_PORT GROUP TOPIC [VAR=VALUE...]: a router of its own
# consumer group on a topic of its own (category trade; created first with one
# record, so that it exists when the router subscribes; records other tests
# leave on the shared broker cannot reach this test's clients), from the
# earliest offset; waits until it has its partitions
topic_router() {
    local name=$1 hp=$2 group=$3 topic=$4; shift 4
    kafka_topic "$topic" || fail "kcat could not create $topic"
    start_router "$name" "$hp" KAFKA_BROKERS="$(stack_brokers)" KAFKA_GROUP="$group" \
        KAFKA_TOPICS="$topic=trade" KAFKA_OFFSET_RESET=earliest KAFKA_OPTIONS="fetch.wait.max.ms=10" "$@"
    wait_for 20 "router HTTP" http_up "$hp"
    wait_for 60 "router partition assignment" router_serves "$hp" 0
}

# ---- WebSocket clients -------------------------------------------------------------

# ws_watch NAME URL CHANNELS [--flag...]: an odin-watch client subscribed to
# CHANNELS; what it receives in $T/NAME.out, its log in $T/NAME.log
ws_watch() {
    spawn_out "$1" "${ODIN_BUILD:?}/odin-watch" --watch-url "$2" --watch-channels "$3" "${@:4}"
}
# ws_got NAME PATTERN: client NAME received a line matching PATTERN
ws_got() { grep -q -e "$2" "$T/$1.out" 2>/dev/null; }
# ws_count NAME PATTERN: how many lines matching PATTERN client NAME received
ws_count() { grep -c -e "$2" "$T/$1.out" 2>/dev/null || true; }
# ws_acked NAME: client NAME got its subscription_ack
ws_acked() { ws_got "$1" '"type":"subscription_ack"'; }
