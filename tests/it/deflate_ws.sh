#!/usr/bin/env bash
# permessage-deflate (RFC 7692) with a second client implementation: Node's
# `ws` (tests/it/node, installed by tools/deps.sh with `npm ci`) against a
# real odin-shard fed by odin-router from the shared odin-devbroker.  Run by
# tools/run-tests.sh it (ODIN_BUILD, ODIN_TMP, ODIN_REDIS_URL,
# ODIN_KAFKA_BROKERS).  The checks themselves are in
# tests/it/node/deflate_check.js: negotiation (default offer,
# client_no_context_takeover, server_max_window_bits 15 accepted / 10
# declined, no offer), compressed subscribe, every envelope byte for byte,
# RSV1 on every compressed frame, identical JSON for plain clients, and a
# decompression bomb closed with 1009 at bounded memory.  This script adds
# the shard's own counters.  Waits poll real state, never fixed sleeps.
set -euo pipefail

B=${ODIN_BUILD:?}
top=$(cd "$(dirname "$0")/../.." && pwd)
NODE_DIR="$top/tests/it/node"
if ! command -v node >/dev/null || [ ! -d "$NODE_DIR/node_modules/ws" ]; then
    echo "FAIL: node or tests/it/node/node_modules/ws missing (tools/deps.sh installs nodejs and runs npm ci)" >&2
    exit 1
fi
T="$ODIN_TMP/deflate_ws.$$"
mkdir -p "$T"
pids=()

cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    for f in "$T"/*.log; do
        [ -f "$f" ] || continue
        echo "== $f" >&2
        tail -n 20 "$f" >&2
    done
    exit 1
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

metric() {
    curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1==m {print $2; f=1} END {if (!f) print 0}'
}

wait_for() {
    local secs=$1 what=$2; shift 2
    local deadline=$((SECONDS + secs))
    until "$@"; do
        [ $SECONDS -lt $deadline ] || fail "timed out waiting for $what"
        sleep 0.1
    done
}

http_up() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/health")" != 000 ]; }

P=$(free_port); HP=$(free_port)
SHARD_ID="deflate$$" WS_ADDR="127.0.0.1:$P" SHARD_SOCKET="$T/shard.sock" \
REDIS_URL="$ODIN_REDIS_URL" WS_DEFLATE=true WS_DEFLATE_MIN_SIZE=128 \
    "$B/odin-shard" >"$T/shard.out" 2>"$T/shard.log" &
pids+=($!)
wait_for 20 "shard HTTP" http_up "$P"

TOPIC="deflate-$$.trades"
printf 'deflate-setup\t{}\n' | kcat -P -b "$ODIN_KAFKA_BROKERS" -t "$TOPIC" -K $'\t' 2>"$T/kcat-setup.log" \
    || fail "kcat could not create $TOPIC"
KAFKA_BROKERS="$ODIN_KAFKA_BROKERS" KAFKA_GROUP="deflate-$$" KAFKA_TOPICS="$TOPIC=trade" \
KAFKA_OFFSET_RESET=earliest KAFKA_OPTIONS="fetch.wait.max.ms=10" REDIS_URL="$ODIN_REDIS_URL" \
HTTP_ADDR="127.0.0.1:$HP" "$B/odin-router" >"$T/router.out" 2>"$T/router.log" &
pids+=($!)
wait_for 20 "router HTTP" http_up "$HP"
assigned() { [ "$(metric "$HP" router_assigned_partitions)" -gt 0 ]; }
wait_for 60 "router partition assignment" assigned

# 3 tokens x 20 records; values of a few hundred bytes (compressible JSON,
# with quotes and non-ASCII text that must survive byte for byte)
python3 - "$$" >"$T/records.tsv" <<'PY'
import json, sys
pid = sys.argv[1]
for n in range(20):
    for t in range(3):
        v = {"type": "TRADE_EXECUTED", "timestamp": 1700000000000 + n,
             "data": {"token": "dfl%st%d" % (pid, t), "price": 1.5 + n, "amount": n * 1000,
                      "note": "x \"quoted\" caf\u00e9 \u2713", "side": "buy" if n % 2 else "sell",
                      "trader": "0x" + "ab" * 20, "seq": n}}
        print("dfl%st%d\t%s" % (pid, t, json.dumps(v, ensure_ascii=False)))
PY

READY="$T/ready"
node "$NODE_DIR/deflate_check.js" "$P" "$T/records.tsv" "$READY" >"$T/node.log" 2>&1 &
NODE=$!
pids+=($NODE)
node_ready() { [ -f "$READY" ] || ! kill -0 "$NODE" 2>/dev/null; }
wait_for 30 "node clients subscribed" node_ready
[ -f "$READY" ] || { wait "$NODE" || true; fail "node clients failed before subscribing"; }
routes_ready() { [ "$(redis-cli -u "$ODIN_REDIS_URL" SCARD "odin:shard:deflate$$:tokens")" = 3 ]; }
wait_for 30 "the shard's routes in Redis" routes_ready

kcat -P -b "$ODIN_KAFKA_BROKERS" -t "$TOPIC" -K $'\t' -l "$T/records.tsv" 2>"$T/kcat.log" \
    || fail "kcat could not produce"
rc=0
wait "$NODE" || rc=$?
cat "$T/node.log"
[ "$rc" -eq 0 ] || fail "node checks failed (exit $rc)"

# the shard's side: 3 deflate clients x 60 records compressed, each record
# compressed once; 4 compressed subscribes inflated (3 + the bomb's
# connection sends none before the bomb), the bomb refused
[ "$(metric "$P" ws_deflate_connections_total)" = 4 ] || fail "ws_deflate_connections_total $(metric "$P" ws_deflate_connections_total), want 4"
[ "$(metric "$P" ws_deflate_messages_sent_total)" = 180 ] || fail "ws_deflate_messages_sent_total $(metric "$P" ws_deflate_messages_sent_total), want 180"
[ "$(metric "$P" ws_deflate_compressions_total)" = 60 ] || fail "ws_deflate_compressions_total $(metric "$P" ws_deflate_compressions_total), want 60 (once per record)"
[ "$(metric "$P" ws_deflate_inflated_messages_total)" = 3 ] || fail "ws_deflate_inflated_messages_total $(metric "$P" ws_deflate_inflated_messages_total), want 3"
[ "$(metric "$P" ws_deflate_inflate_refused_total)" = 1 ] || fail "ws_deflate_inflate_refused_total $(metric "$P" ws_deflate_inflate_refused_total), want 1"
[ "$(metric "$P" ws_messages_sent_total)" = 300 ] || fail "ws_messages_sent_total $(metric "$P" ws_messages_sent_total), want 300"
echo "shard counters ok: in=$(metric "$P" ws_deflate_in_bytes_total) out=$(metric "$P" ws_deflate_out_bytes_total) saved=$(metric "$P" ws_deflate_saved_bytes_total)"
