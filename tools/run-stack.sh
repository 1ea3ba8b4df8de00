#!/usr/bin/env bash
# `make run`: the whole odin-dispatch stack on this machine, on embedded
# defaults.  Starts redis-server (private port + data dir), odin-devbroker,
# one odin-router, SHARDS odin-shard processes (each on its own port and all
# sharing PUBLIC_PORT through SO_REUSEPORT), a demo publisher and a demo
# client that prints what it receives.  Ctrl-C stops everything, in stages:
# the services run in their own sessions (setsid), so the terminal's SIGINT
# reaches only this script and the demo clients; the script then stops the
# router (drains and commits), the shards (deregister), then the broker and
# Redis.  A closed terminal (SIGHUP), SIGTERM, or the death of the parent
# (make killed) does the same; if this script dies without cleaning up
# (SIGKILL), a watchdog holding a pipe from it sees the pipe close and stops
# every process the script started.
#
# Each process gets only its own settings: the script's settings below, and
# any environment variable that is a setting of another odin binary, are
# removed from its environment (odin binaries refuse unknown settings,
# docs/operations.md "Strict configuration"); a setting of its own that the
# caller exported (LOG_LEVEL=debug make run) still reaches it.
#
# Settings (environment):
#   SHARDS=3  PUBLIC_PORT=3002  SHARD_PORT_BASE=3101  ROUTER_HTTP_PORT=8080
#   REDIS_PORT=16379  PUBLISH_RATE=50 (records/s)  PUBLISH_TOKENS=BTC,ETH,SOL,ODIN,DOGE
#   WATCH_CHANNELS=BTC.trade,ETH.trade,SOL.trade  RUN_DIR=./run  BUILD=build
#   WATCH_SECONDS=0 (>0: stop after that long)
#   router: ROUTER_ID=router-1  KAFKA_EVICT_PREVIOUS=true
#   KAFKA_OPTIONS=fetch.wait.max.ms=1,session.timeout.ms=3000,heartbeat.interval.ms=300
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
SHARDS=${SHARDS:-3}
PUBLIC_PORT=${PUBLIC_PORT:-3002}
SHARD_PORT_BASE=${SHARD_PORT_BASE:-3101}
ROUTER_HTTP_PORT=${ROUTER_HTTP_PORT:-8080}
REDIS_PORT=${REDIS_PORT:-16379}
PUBLISH_RATE=${PUBLISH_RATE:-50}
PUBLISH_TOKENS=${PUBLISH_TOKENS:-BTC,ETH,SOL,ODIN,DOGE}
WATCH_CHANNELS=${WATCH_CHANNELS:-BTC.trade,ETH.trade,SOL.trade}
RUN_DIR=${RUN_DIR:-$top/run}
BUILD=${BUILD:-$top/build}
WATCH_SECONDS=${WATCH_SECONDS:-0}

mkdir -p "$RUN_DIR/redis" "$RUN_DIR/logs"
pids=()           # infrastructure: redis-server, odin-devbroker
router_pids=()    # odin-router
shard_pids=()     # odin-shard
client_pids=()    # odin-publish, odin-watch

# Environment hygiene: the names each binary takes (from its --help), and
# this script's own settings.  own_env BIN prints `env` arguments that
# remove every one of those names that is not BIN's.
knobs="SHARDS PUBLIC_PORT SHARD_PORT_BASE ROUTER_HTTP_PORT REDIS_PORT PUBLISH_RATE
PUBLISH_TOKENS WATCH_CHANNELS RUN_DIR BUILD WATCH_SECONDS ROUTER_ID
KAFKA_EVICT_PREVIOUS KAFKA_OPTIONS REDIS_URL KAFKA_BROKERS"
settings_of() { "$BUILD/$1" --help | sed -n 's/^  --[a-z0-9-]*, \([A-Z0-9_]*\) (.*/\1/p'; }
declare -A own=()
all_names=$knobs
for b in odin-router odin-shard odin-devbroker odin-publish odin-watch; do
    own[$b]=" $(settings_of "$b" | tr '\n' ' ') "
    all_names+=" ${own[$b]}"
done
own_env() {
    local n args=()
    for n in $(printf '%s\n' $all_names | sort -u); do
        [[ ${own[$1]} == *" $n "* ]] || args+=(-u "$n")
    done
    printf '%s\n' "${args[@]}"
}
mapfile -t env_router < <(own_env odin-router)
mapfile -t env_shard < <(own_env odin-shard)
mapfile -t env_devbroker < <(own_env odin-devbroker)
mapfile -t env_publish < <(own_env odin-publish)
mapfile -t env_watch < <(own_env odin-watch)

# The watchdog: its stdin is a pipe whose write end only this script holds
# (every child closes it), fed with the pid of each process started.  When
# the pipe closes without "done" (the script died, even by SIGKILL) it stops
# them all: SIGTERM, then SIGKILL after 3 s.  In its own session: neither
# Ctrl-C nor a closed terminal reaches it.
watchdog() {
    local line list=() p
    while IFS= read -r line; do
        [ "$line" = done ] && exit 0
        list+=("$line")
    done
    for p in "${list[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for _ in $(seq 30); do
        local alive=0
        for p in "${list[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && exit 0
        sleep 0.1
    done
    for p in "${list[@]}"; do kill -KILL "$p" 2>/dev/null; done
    exit 0
}
exec {wd}> >(exec setsid bash -c "$(declare -f watchdog); trap '' INT HUP TERM PIPE; watchdog" \
                 >/dev/null 2>&1)
watched() { echo "$1" >&"$wd"; }
# A service in its own session: Ctrl-C (SIGINT to the terminal's foreground
# process group) does not reach it; cleanup() stops it in its turn.  It does
# not hold the watchdog's pipe.
svc() { exec {wd}>&-; exec setsid "$@"; }
client() { exec {wd}>&-; exec "$@"; }
cleanup() {
    trap - EXIT INT TERM HUP
    # the terminal may be gone (SIGHUP): a failed echo must not stop the
    # cleanup, nor a closed pipe kill it
    set +e
    trap '' PIPE
    say() { echo "$@" 2>/dev/null; }
    say; say "stopping..."
    # In stages, so each process can finish cleanly against the ones it
    # talks to: clients and publisher; the router (drains its shard queues,
    # commits offsets to the broker); the shards (deregister from Redis);
    # then the broker and Redis.
    stop_group() {
        for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
        for p in "$@"; do
            for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$p" 2>/dev/null || true
        done
    }
    stop_group ${client_pids[@]+"${client_pids[@]}"}
    stop_group ${router_pids[@]+"${router_pids[@]}"}
    stop_group ${shard_pids[@]+"${shard_pids[@]}"}
    stop_group ${pids[@]+"${pids[@]}"}
    echo done >&"$wd" 2>/dev/null
    exec {wd}>&-
    wait 2>/dev/null || true
    say "stopped; logs in $RUN_DIR/logs"
}
trap cleanup EXIT
trap 'exit 0' INT TERM HUP

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$REDIS_PORT" "$PUBLIC_PORT" "$ROUTER_HTTP_PORT" \
         $(seq "$SHARD_PORT_BASE" $((SHARD_PORT_BASE + SHARDS - 1))); do
    if port_busy "$p"; then echo "port $p is in use; set the matching *_PORT setting" >&2; exit 1; fi
done

echo "starting redis-server on 127.0.0.1:$REDIS_PORT"
svc redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$RUN_DIR/redis" --save '' \
    --appendonly no --loglevel warning >"$RUN_DIR/logs/redis.log" 2>&1 &
pids+=($!); watched $!
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"

rm -f "$RUN_DIR/kafka.bootstrap"
svc env "${env_devbroker[@]}" "$BUILD/odin-devbroker" --bootstrap-file "$RUN_DIR/kafka.bootstrap" \
    >"$RUN_DIR/logs/devbroker.out" 2>"$RUN_DIR/logs/devbroker.log" &
pids+=($!); watched $!
for _ in $(seq 200); do [ -s "$RUN_DIR/kafka.bootstrap" ] && break; sleep 0.05; done
KAFKA_BROKERS=$(cat "$RUN_DIR/kafka.bootstrap")
echo "odin-devbroker (Kafka protocol) at $KAFKA_BROKERS"
# The dev broker parks an empty fetch for the whole fetch.wait.max.ms even when
# data arrives meanwhile: 1 ms is the measured best (docs/benchmarks.md, issue 13).
# A restarted router delivers again within ~2 s: a stable ROUTER_ID (Kafka
# group.instance.id and the key of its member-id record in Redis) with
# KAFKA_EVICT_PREVIOUS, since the devbroker ignores static membership, and
# the devbroker's lowest workable session timeout (docs/reliability.md,
# "Router restarts").
KAFKA_OPTIONS=${KAFKA_OPTIONS:-fetch.wait.max.ms=1,session.timeout.ms=3000,heartbeat.interval.ms=300}
ROUTER_ID=${ROUTER_ID:-router-1}
KAFKA_EVICT_PREVIOUS=${KAFKA_EVICT_PREVIOUS:-true}

svc env "${env_router[@]}" REDIS_URL="$REDIS_URL" KAFKA_BROKERS="$KAFKA_BROKERS" \
    KAFKA_OPTIONS="$KAFKA_OPTIONS" ROUTER_ID="$ROUTER_ID" \
    KAFKA_EVICT_PREVIOUS="$KAFKA_EVICT_PREVIOUS" \
    "$BUILD/odin-router" --http-addr "127.0.0.1:$ROUTER_HTTP_PORT" \
    >"$RUN_DIR/logs/router.out" 2>"$RUN_DIR/logs/router.log" &
router_pids+=($!); watched $!

# shards: Redis, and Kafka for client reconnects (replay)
for i in $(seq 1 "$SHARDS"); do
    port=$((SHARD_PORT_BASE + i - 1))
    svc env "${env_shard[@]}" REDIS_URL="$REDIS_URL" KAFKA_BROKERS="$KAFKA_BROKERS" \
        KAFKA_OPTIONS="$KAFKA_OPTIONS" \
        "$BUILD/odin-shard" --shard-id "shard-$i" --ws-addr "127.0.0.1:$port" \
        --ws-shared-addr "0.0.0.0:$PUBLIC_PORT" \
        --shard-socket "$RUN_DIR/shard-$i.sock" \
        >"$RUN_DIR/logs/shard-$i.out" 2>"$RUN_DIR/logs/shard-$i.log" &
    shard_pids+=($!); watched $!
done
for i in $(seq 1 "$SHARDS"); do
    port=$((SHARD_PORT_BASE + i - 1))
    for _ in $(seq 100); do port_busy "$port" && break; sleep 0.05; done
    if ! port_busy "$port"; then
        echo "shard-$i did not start; its log:" >&2
        tail -n 5 "$RUN_DIR/logs/shard-$i.log" >&2
        exit 1
    fi
done

client env "${env_publish[@]}" KAFKA_BROKERS="$KAFKA_BROKERS" \
    "$BUILD/odin-publish" --publish-rate "$PUBLISH_RATE" --publish-tokens "$PUBLISH_TOKENS" \
    >"$RUN_DIR/logs/publish.out" 2>"$RUN_DIR/logs/publish.log" &
client_pids+=($!); watched $!

# the live page (clients/web + the JS client library), on a free loopback port
# (through client(): it must not hold the watchdog's pipe, or the watchdog
# would never see this script die)
client python3 -u -m http.server --bind 127.0.0.1 --directory "$top/clients" 0 >"$RUN_DIR/logs/page.log" 2>&1 &
client_pids+=($!); watched $!
for _ in $(seq 100); do page_port=$(sed -n 's/.* port \([0-9]*\) .*/\1/p' "$RUN_DIR/logs/page.log" 2>/dev/null || true); [ -n "$page_port" ] && break; sleep 0.05; done
page_ws=$(for i in $(seq 1 "$SHARDS"); do printf 'ws://127.0.0.1:%s/ws,' $((SHARD_PORT_BASE + i - 1)); done)
page_url="http://127.0.0.1:${page_port:-?}/web/?ws=${page_ws%,}&channels=$WATCH_CHANNELS"

cat <<INFO

odin-dispatch is running ($SHARDS shards, publishing $PUBLISH_RATE events/s for $PUBLISH_TOKENS)
  WebSocket (any shard):  ws://127.0.0.1:$PUBLIC_PORT/ws
  WebSocket per shard:    ws://127.0.0.1:$SHARD_PORT_BASE/ws ... ws://127.0.0.1:$((SHARD_PORT_BASE + SHARDS - 1))/ws
  subscribe with:         {"type":"subscribe","data":{"channels":["BTC.trade"]}}
  router health/metrics:  http://127.0.0.1:$ROUTER_HTTP_PORT/health  /metrics
  live page (browser):    $page_url
  logs:                   $RUN_DIR/logs/

In another shell, for odin-ctl and every redis-cli recipe of docs/operations.md:
  export REDIS_URL=$REDIS_URL
  $BUILD/odin-ctl shards        # routes BTC, tokens shard-1, health, drain shard-2
  redis-cli -u "\$REDIS_URL" SMEMBERS odin:shards

demo client subscribed to $WATCH_CHANNELS on ws://127.0.0.1:$PUBLIC_PORT/ws (Ctrl-C stops everything):
INFO

watch_args=(--watch-url "ws://127.0.0.1:$PUBLIC_PORT/ws" --watch-channels "$WATCH_CHANNELS")
[ "$WATCH_SECONDS" -gt 0 ] && watch_args+=(--watch-seconds "$WATCH_SECONDS")
client env "${env_watch[@]}" "$BUILD/odin-watch" "${watch_args[@]}" &
watch_pid=$!
watched "$watch_pid"
client_pids+=($watch_pid)
# Until the demo client ends; and stop when our parent (make, the shell) is
# killed: we would be left in the background, out of reach of Ctrl-C.
# (sleep in the background: a trapped signal interrupts `wait` at once.)
parent=$PPID
while kill -0 "$watch_pid" 2>/dev/null; do
    if ! kill -0 "$parent" 2>/dev/null; then
        echo "parent process $parent is gone" 2>/dev/null || true
        exit 0
    fi
    sleep 0.5 {wd}>&- &
    wait $! || true
done
wait "$watch_pid"
