#!/usr/bin/env bash
# `make run`: the whole odin-dispatch stack on this machine, on embedded
# defaults.  Starts redis-server (private port + data dir), odin-devbroker,
# one odin-router, SHARDS odin-shard processes (each on its own port and all
# sharing PUBLIC_PORT through SO_REUSEPORT), a demo publisher and a demo
# client that prints what it receives.  Ctrl-C stops everything, in stages:
# the services run in their own sessions (setsid), so the terminal's SIGINT
# reaches only this script and the demo clients; the script then stops the
# router (drains and commits), the shards (deregister), then the broker and
# Redis.
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
# A service in its own session: Ctrl-C (SIGINT to the terminal's foreground
# process group) does not reach it; cleanup() stops it in its turn.
svc() { exec setsid "$@"; }
cleanup() {
    trap - EXIT INT TERM
    echo; echo "stopping..."
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
    wait 2>/dev/null || true
    echo "stopped; logs in $RUN_DIR/logs"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$REDIS_PORT" "$PUBLIC_PORT" "$ROUTER_HTTP_PORT" \
         $(seq "$SHARD_PORT_BASE" $((SHARD_PORT_BASE + SHARDS - 1))); do
    if port_busy "$p"; then echo "port $p is in use; set the matching *_PORT setting" >&2; exit 1; fi
done

echo "starting redis-server on 127.0.0.1:$REDIS_PORT"
svc redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$RUN_DIR/redis" --save '' \
    --appendonly no --loglevel warning >"$RUN_DIR/logs/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"

rm -f "$RUN_DIR/kafka.bootstrap"
svc "$BUILD/odin-devbroker" --bootstrap-file "$RUN_DIR/kafka.bootstrap" \
    >"$RUN_DIR/logs/devbroker.out" 2>"$RUN_DIR/logs/devbroker.log" &
pids+=($!)
for _ in $(seq 200); do [ -s "$RUN_DIR/kafka.bootstrap" ] && break; sleep 0.05; done
export KAFKA_BROKERS; KAFKA_BROKERS=$(cat "$RUN_DIR/kafka.bootstrap")
echo "odin-devbroker (Kafka protocol) at $KAFKA_BROKERS"
# The dev broker parks an empty fetch for the whole fetch.wait.max.ms even when
# data arrives meanwhile: 1 ms is the measured best (docs/benchmarks.md, issue 13).
# A restarted router delivers again within ~2 s: a stable ROUTER_ID (Kafka
# group.instance.id and the key of its member-id record in Redis) with
# KAFKA_EVICT_PREVIOUS, since the devbroker ignores static membership, and
# the devbroker's lowest workable session timeout (docs/reliability.md,
# "Router restarts").
export KAFKA_OPTIONS=${KAFKA_OPTIONS:-fetch.wait.max.ms=1,session.timeout.ms=3000,heartbeat.interval.ms=300}
export ROUTER_ID=${ROUTER_ID:-router-1}
export KAFKA_EVICT_PREVIOUS=${KAFKA_EVICT_PREVIOUS:-true}

svc "$BUILD/odin-router" --http-addr "127.0.0.1:$ROUTER_HTTP_PORT" \
    >"$RUN_DIR/logs/router.out" 2>"$RUN_DIR/logs/router.log" &
router_pids+=($!)

for i in $(seq 1 "$SHARDS"); do
    port=$((SHARD_PORT_BASE + i - 1))
    svc "$BUILD/odin-shard" --shard-id "shard-$i" --ws-addr "127.0.0.1:$port" \
        --ws-shared-addr "0.0.0.0:$PUBLIC_PORT" \
        --shard-socket "$RUN_DIR/shard-$i.sock" \
        >"$RUN_DIR/logs/shard-$i.out" 2>"$RUN_DIR/logs/shard-$i.log" &
    shard_pids+=($!)
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

"$BUILD/odin-publish" --publish-rate "$PUBLISH_RATE" --publish-tokens "$PUBLISH_TOKENS" \
    >"$RUN_DIR/logs/publish.out" 2>"$RUN_DIR/logs/publish.log" &
client_pids+=($!)

# the live page (clients/web + the JS client library), on a free loopback port
python3 -u -m http.server --bind 127.0.0.1 --directory "$top/clients" 0 >"$RUN_DIR/logs/page.log" 2>&1 &
client_pids+=($!)
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
"$BUILD/odin-watch" "${watch_args[@]}" &
watch_pid=$!
client_pids+=($watch_pid)
wait "$watch_pid"
