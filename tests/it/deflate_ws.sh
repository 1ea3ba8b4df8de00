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

: "${ODIN_BUILD:?}"
top=$(cd "$(dirname "$0")/../.." && pwd)
NODE_DIR="$top/tests/it/node"
if ! command -v node >/dev/null || [ ! -d "$NODE_DIR/node_modules/ws" ]; then
    echo "FAIL: node or tests/it/node/node_modules/ws missing (tools/deps.sh installs nodejs and runs npm ci)" >&2
    exit 1
fi
# shellcheck source=../support/stack.sh
. "$top/tests/support/stack.sh"
stack_init deflate_ws
STACK_LOG_LINES=20

P=$(port); HP=$(port)
start_shard shard "deflate$$" "$P" REDIS_URL="$ODIN_REDIS_URL" WS_DEFLATE=true WS_DEFLATE_MIN_SIZE=128
wait_for 20 "shard HTTP" http_up "$P"

TOPIC="deflate-$$.trades"
topic_router router "$HP" "deflate-$$" "$TOPIC" REDIS_URL="$ODIN_REDIS_URL"

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
spawn node node "$NODE_DIR/deflate_check.js" "$P" "$T/records.tsv" "$READY"
NODE=$SPAWNED
await_marker 30 "$READY" "$NODE" "node clients (subscribing)"
routes_ready() { [ "$(redis-cli -u "$ODIN_REDIS_URL" SCARD "odin:shard:deflate$$:tokens")" = 3 ]; }
wait_for 30 "the shard's routes in Redis" routes_ready

produce "$TOPIC" "$T/records.tsv" || fail "kcat could not produce"
rc=0
wait "$NODE" || rc=$?
cat "$T/node.log"
[ "$rc" -eq 0 ] || fail "node checks failed (exit $rc)"

# the shard's side: 3 deflate clients x 60 records compressed, each record
# compressed once; 4 compressed subscribes inflated (3 + the bomb's
# connection sends none before the bomb), the bomb refused
[ "$(metric0 "$P" ws_deflate_connections_total)" = 4 ] || fail "ws_deflate_connections_total $(metric0 "$P" ws_deflate_connections_total), want 4"
[ "$(metric0 "$P" ws_deflate_messages_sent_total)" = 180 ] || fail "ws_deflate_messages_sent_total $(metric0 "$P" ws_deflate_messages_sent_total), want 180"
[ "$(metric0 "$P" ws_deflate_compressions_total)" = 60 ] || fail "ws_deflate_compressions_total $(metric0 "$P" ws_deflate_compressions_total), want 60 (once per record)"
[ "$(metric0 "$P" ws_deflate_inflated_messages_total)" = 3 ] || fail "ws_deflate_inflated_messages_total $(metric0 "$P" ws_deflate_inflated_messages_total), want 3"
[ "$(metric0 "$P" ws_deflate_inflate_refused_total)" = 1 ] || fail "ws_deflate_inflate_refused_total $(metric0 "$P" ws_deflate_inflate_refused_total), want 1"
[ "$(metric0 "$P" ws_messages_sent_total)" = 300 ] || fail "ws_messages_sent_total $(metric0 "$P" ws_messages_sent_total), want 300"
echo "shard counters ok: in=$(metric0 "$P" ws_deflate_in_bytes_total) out=$(metric0 "$P" ws_deflate_out_bytes_total) saved=$(metric0 "$P" ws_deflate_saved_bytes_total)"
