#!/usr/bin/env bash
# Hostile-input benchmark (issue 11): CONNS connections each announce a
# DECLARED-byte text frame and send SENT bytes of it, then hold.  Prints the
# shard's RSS rise (total and per connection), how many were held vs closed
# with 1013 (WS_PARTIAL_BUDGET), and whether a well-behaved client is still
# served (subscribe -> ack) while they hold.
#
#   CONNS=5000 DECLARED=60000 SENT=40000 bench/hostile.sh
# Target: RSS rise <= 96 MiB at CONNS=5000 with the default budget (64 MiB).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
CONNS=${CONNS:-5000}; DECLARED=${DECLARED:-60000}; SENT=${SENT:-40000}
bench_init hostile
start_redis
start_shards 1 WS_PARTIAL_TIMEOUT=600 WS_IDLE_TIMEOUT=600
port=${SHARD_PORTS[0]}; pid=${SHARD_PIDS[0]}
rss0=$(rss_kb "$pid")
coproc HOSTILE { python3 "$here/partial_client.py" "$port" "$CONNS" "$DECLARED" "$SENT"; }
# wait until every connection was either held or refused
settled() {
    local held closed
    held=$(metric "$port" ws_parser_contexts); closed=$(metric "$port" ws_partial_budget_closes_total)
    [ $((held + closed)) -ge "$CONNS" ]
}
wait_until 300 "all $CONNS partial senders accounted for" settled
rss1=$(rss_kb "$pid")
echo report >&"${HOSTILE[1]}"
read -r -t 60 report <&"${HOSTILE[0]}"
# a well-behaved client during the attack
ack=$(python3 - "$port" <<'PY'
import base64, os, socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
k = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % k).encode())
h = b""
while b"\r\n\r\n" not in h:
    h += s.recv(4096)
if not h.startswith(b"HTTP/1.1 101"):
    print("refused"); sys.exit()
m = b'{"type":"subscribe","data":{"channels":["BTC.trade"]}}'
s.sendall(bytes([0x81, 0x80 | len(m)]) + b"\0\0\0\0" + m)
d = h.split(b"\r\n\r\n", 1)[1]
while len(d) < 2 or len(d) < 2 + (d[1] & 0x7f):
    d += s.recv(4096)
print("ack" if b"subscription_ack" in d else "no-ack")
PY
)
budget_closes=$(metric "$port" ws_partial_budget_closes_total)
partial=$(metric "$port" ws_partial_bytes)
exec {HOSTILE[1]}>&-
rise=$((rss1 - rss0))
rise_mib=$(fdiv "$rise" 1024)
row "connections holding a half-sent frame (attempted)" "$CONNS" "" ""
row "declared / sent bytes per frame" "$DECLARED/$SENT" "" ""
row "clients: $report" "-" "" ""
row "closed with 1013 (ws_partial_budget_closes_total)" "$budget_closes" "" ""
row "ws_partial_bytes during the attack" "$partial" "" ""
row "shard RSS before, KiB" "$rss0" "" ""
row "shard RSS rise, MiB" "$rise_mib" "<= 96" "$(judge "$rise_mib" le 96)"
row "RSS rise per connection, bytes" "$(fdiv "$((rise * 1024))" "$CONNS")" "" ""
row "well-behaved client subscribed during the attack" "$ack" "ack" "$( [ "$ack" = ack ] && echo met || echo MISSED)"
finish_result
[ "$ack" = ack ]
